/**
 * Amounts and counters of the ledger state stay within 2^53 − 1: a genesis whose balances add up to more
 * is refused (genesisProblem, LedgerState); with the total at most that, all money may end up earned by one
 * node and the state digest still encodes it; the vote counts stop at 2^53 − 1 instead of breaking the
 * checkpoint of every honest node.
 */
import { describe, expect, it } from 'vitest';
import { LedgerState, type ResolvedEntry } from '../../src/ledger/state.ts';
import {
  type Batch,
  batchDigestOf,
  DropbearError,
  type Genesis,
  genesisProblem,
  groupIdOf,
  keyPairFromSeed,
  type Request,
  requestIdOf,
  sha256,
  signRequest,
} from '../../src/protocol/index.ts';

const MAX = Number.MAX_SAFE_INTEGER;
const seed = (t: number, i: number) => {
  const s = new Uint8Array(32);
  s[0] = t;
  s[1] = i;
  return s;
};
const keys = [0, 1, 2, 3].map((i) => keyPairFromSeed(seed(1, i)));
const clients = [0, 1, 2].map((i) => keyPairFromSeed(seed(2, i)));

function genesisWith(amounts: number[], fee: number): Genesis {
  return {
    version: 1,
    name: 'g',
    f: 1,
    nodes: keys.map((k, i) => ({
      id: i,
      publicKey: k.publicKey,
      address: `n${i}`,
      owner: `o${i}`,
      modelName: 'm',
      modelDigest: sha256(new Uint8Array([i])),
      fee,
    })),
    policy: { kind: 'top1', minAgree: 2 },
    treasury: keys[0].publicKey,
    balances: amounts
      .map((amount, i) => ({ client: clients[i].publicKey, amount }))
      .sort((a, b) => Buffer.compare(a.client, b.client)),
    params: { expiryMs: 60_000, maxClockSkewMs: 1000, maxInputBytes: 1024, inputType: 'image/png' },
  };
}

let nonce = 0;
/** One batch in which `client` asks once, voted for by all four nodes (each with its genesis model). */
function execOne(l: LedgerState, client: number, maxFee = MAX) {
  const g = l.genesis;
  const input = new Uint8Array([nonce & 0xff, nonce >> 8]);
  const request: Request = {
    groupId: groupIdOf(g),
    client: clients[client].publicKey,
    nonce: nonce++,
    timestamp: 1000,
    inputDigest: sha256(input),
    policy: null,
    maxFee,
  };
  const entries: ResolvedEntry[] = [
    {
      requestId: requestIdOf(signRequest(request, input, clients[client])),
      request,
      votes: [0, 1, 2, 3].map((node) => ({
        node,
        modelDigest: g.nodes[node].modelDigest,
        result: { kind: 'class' as const, top: [{ label: 1, score: 1 }] },
      })),
    },
  ];
  const batch: Batch = {
    timestamp: 2000 + l.seq,
    entries: entries.map((e) => ({
      requestId: e.requestId,
      votes: e.votes.map((v) => ({ node: v.node, results: sha256(new Uint8Array([v.node])), index: 0 })),
    })),
    txs: [],
  };
  return l.execute(l.seq + 1, batchDigestOf(batch), batch, entries);
}

describe('money and counters within 2^53 − 1', () => {
  it('genesisProblem refuses balances that add up to more than 2^53 − 1, accepts exactly that', () => {
    expect(genesisProblem(genesisWith([MAX, 1], 1))).toMatch(/add up to 9007199254740992, more than 2\^53/);
    expect(genesisProblem(genesisWith([MAX, MAX, MAX], 1))).toMatch(/more than 2\^53/);
    expect(genesisProblem(genesisWith([MAX - 10, 10], 1))).toBeNull();
    expect(genesisProblem(genesisWith([MAX], MAX))).toBeNull();
  });

  it('a LedgerState refuses such a genesis, typed, instead of failing at its first checkpoint', () => {
    let err: unknown;
    try {
      new LedgerState(genesisWith([MAX, 1], 1));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DropbearError);
    expect((err as DropbearError).code).toBe('GENESIS_INVALID');
  });

  it('money flows to the nodes exactly, up to the 2^53 − 1 in all: the state digest is computed', () => {
    const fee = 2 ** 49;
    // Two clients hold 2^53 − 1 together; each request costs 4 · 2^49 = 2^51.
    const l = new LedgerState(genesisWith([2 ** 52 + 5, 2 ** 52 - 6], fee));
    const total = l.totalMoney();
    expect(total).toBe(MAX);
    for (const c of [0, 0, 1]) {
      expect(execOne(l, c).outcomes).toHaveLength(1);
      expect(l.totalMoney()).toBe(total);
      expect(l.stateDigest()).toHaveLength(32);
    }
    expect(l.stats.map((s) => s.earned)).toEqual([1, 2, 3, 4].map(() => 3 * fee));
    expect(l.balanceOf(clients[0].publicKey)).toBe(5);
    expect(l.balanceOf(clients[1].publicKey)).toBe(2 ** 51 - 6);
    // Not enough left to pay with: skipped, deterministically.
    expect(execOne(l, 1).skipped.map((s) => s.reason)).toEqual(['insufficient-balance']);
    expect(l.totalMoney()).toBe(total);
    // Fees summing past 2^53 − 1 are over any maxFee: skipped, not charged inexactly.
    const big = new LedgerState(genesisWith([MAX], MAX));
    expect(execOne(big, 0).skipped.map((s) => s.reason)).toEqual(['over-max-fee']);
    expect(big.stateDigest()).toHaveLength(32);
  });

  it('the vote counts stop at 2^53 − 1 (free requests): the state digest keeps working', () => {
    const l = new LedgerState(genesisWith([1000], 0));
    for (const s of l.stats) {
      s.counted = MAX - 1;
      s.agreed = MAX - 1;
    }
    execOne(l, 0);
    execOne(l, 0);
    expect(l.stats.map((s) => [s.counted, s.agreed])).toEqual([
      [MAX, MAX],
      [MAX, MAX],
      [MAX, MAX],
      [MAX, MAX],
    ]);
    expect(l.stateDigest()).toHaveLength(32);
  });
});
