/**
 * Deposits in the simulator (the real replica and ledger): the treasury funds a client the genesis does not
 * list while other requests flow, with serials submitted out of order, at several nodes, twice for one
 * serial, replayed; through a primary crash (view change) and a backup restarted from its SQLite file; and
 * against a faulty primary that puts forged or replayed deposits into its proposals. Every check is on exact
 * amounts: each deposit credits once, at one seq, the same on every node.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyCertificate } from '../../src/certificate/index.ts';
import { verifyLedgerFile } from '../../src/ledger/verify.ts';
import {
  type Certificate,
  hex,
  type KeyPair,
  keyPairFromSeed,
  type PrePrepare,
  type Request,
  requestIdOf,
  sha256,
  signDeposit,
  signRequest,
  type Tx,
  txIdOf,
} from '../../src/protocol/index.ts';
import { signedPrePrepare } from '../../src/sim/attacks.ts';
import { type ByzantineScript, registerScript, type ScriptContext } from '../../src/sim/byzantine.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { EPOCH_MS, type SimNode, Simulation } from '../../src/sim/world.ts';

const enc = new TextEncoder();
/** A client the genesis does not list (makeGroup funds only `group.client`). */
const NEWCOMER = keyPairFromSeed(sha256(enc.encode('deposits test: a client the genesis does not list')));

/** A deposit of 10^6 to the newcomer at serial 1 signed with the node's own key, not the treasury's. */
const forgedBy = (ctx: ScriptContext): Tx =>
  signDeposit(ctx.groupId, { client: NEWCOMER.publicKey, amount: 1_000_000, serial: 1 }, ctx.key);

/**
 * A primary that adds `extra(ctx, pp)` to each of its proposals (PRE-PREPAREs and FETCHED answers alike),
 * re-signed: the same forged proposal for every copy of one (view, seq, digest).
 */
function addingTxs(extra: (ctx: ScriptContext, pp: PrePrepare) => Tx[]): ByzantineScript {
  const made = new Map<string, PrePrepare>();
  const rewrite = (ctx: ScriptContext, pp: PrePrepare): PrePrepare => {
    if (pp.view % ctx.n !== ctx.id) return pp;
    const key = `${pp.view}:${pp.seq}:${hex(pp.digest)}`;
    let out = made.get(key);
    if (!out) {
      const txs = [...pp.batch.txs, ...extra(ctx, pp)];
      out =
        txs.length === pp.batch.txs.length
          ? pp
          : signedPrePrepare(ctx, pp.view, pp.seq, { ...pp.batch, txs });
      made.set(key, out);
    }
    return out;
  };
  return {
    outbound: (ctx, to, msg) => {
      if (msg.kind === 'prePrepare') return [{ to, msg: { kind: 'prePrepare', pp: rewrite(ctx, msg.pp) } }];
      if (msg.kind === 'fetched')
        return [{ to, msg: { ...msg, prePrepares: msg.prePrepares.map((pp) => rewrite(ctx, pp)) } }];
      return [{ to, msg }];
    },
  };
}

// Every proposal carries a deposit signed with the primary's own key.
registerScript('test:deposits-forging-primary', () => addingTxs((ctx) => [forgedBy(ctx)]));

// Every proposal carries again every deposit the primary proposed before, and its own deposits twice: all
// validly signed by the treasury, so the backups accept them; the ledger must credit each serial once.
registerScript('test:deposits-replaying-primary', () => {
  const proposed = new Map<string, Tx>();
  return addingTxs((_ctx, pp) => {
    const own = pp.batch.txs.filter((t) => t.kind === 'deposit');
    const again = [...proposed.values(), ...own];
    for (const t of own) proposed.set(hex(txIdOf(t)), t);
    return again;
  });
});

// A node that once spreads a deposit it signed itself, as if the treasury had.
registerScript('test:deposits-spreading-forged', () => {
  let sent = false;
  return {
    onTick: (ctx) => {
      if (sent || ctx.now() < EPOCH_MS + 5) return [];
      sent = true;
      return [{ to: 'all', msg: { kind: 'tx', tx: forgedBy(ctx) } }];
    },
  };
});

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * At `ms`, the client `key` sends requests with these nonces (signed by it), each to nodes `via` (f+1 of
 * them, skipping crashed ones). They join `s.requests`, so that certificates are found as the sim's own.
 */
function sendAs(s: Simulation, key: KeyPair, ms: number, nonces: number[], via: number[]): void {
  s.at(ms, () => {
    for (const nonce of nonces) {
      const input = enc.encode(`input of ${hex(key.publicKey).slice(0, 8)} #${nonce}`);
      const request: Request = {
        groupId: s.nodes[0].replica.groupId,
        client: key.publicKey,
        nonce,
        timestamp: Math.floor(s.now),
        inputDigest: sha256(input),
        policy: null,
        maxFee: 1_000,
      };
      const sr = signRequest(request, input, key);
      s.requests.set(hex(requestIdOf(sr)), sr);
      for (const v of via) if (!s.nodes[v].crashed) s.stepNode(s.nodes[v], { type: 'request', request: sr });
    }
  });
}

/** Every node in `nodes` holds a certificate for every request in `ids`. */
const allCertified = (nodes: SimNode[], ids: string[]) =>
  nodes.every((n) => ids.every((id) => n.certificates.has(id)));

/** The fees the certificates charged `client` (one certificate per request: the first handed out). */
function feesOf(certs: Iterable<Certificate>, client: Uint8Array): number {
  let t = 0;
  for (const c of certs) if (hex(c.outcome.client) === hex(client)) t += c.outcome.fee;
  return t;
}

/** The requests of `client` in `s.requests`, by id (hex). */
function requestsOf(s: Simulation, client: Uint8Array): string[] {
  return [...s.requests].filter(([, sr]) => hex(sr.request.client) === hex(client)).map(([id]) => id);
}

const amountOf = (tx: Tx) => (tx.kind === 'deposit' ? tx.deposit.amount : Number.NaN);

/**
 * The ledger checks every deposit test ends with, on each of `nodes`: one state digest, the treasury's
 * last serial `serials`, minted = `minted`, money = genesis + minted, nothing held.
 */
function expectAgreed(nodes: SimNode[], serials: number, minted: number): void {
  const digest = hex(nodes[0].ledger.stateDigest());
  for (const n of nodes) {
    const l = n.ledger;
    expect({ node: n.id, seq: l.seq, digest: hex(l.stateDigest()) }).toEqual({
      node: n.id,
      seq: nodes[0].ledger.seq,
      digest,
    });
    expect(l.deposits).toBe(serials);
    expect(n.replica.currentDeposits).toBe(serials);
    expect(l.minted).toBe(minted);
    expect(l.totalMoney()).toBe(l.genesisMoney + minted);
    expect(n.replica.pendingTxs).toEqual([]);
  }
}

describe('deposits', () => {
  it('fund a client the genesis does not list, out of order and replayed, while requests flow', () => {
    const s = new Simulation({ nodes: 4, requests: 200, seed: 31, rate: 1, keepAllCertificates: true });
    const client = s.group.client.publicKey;
    const newcomer = NEWCOMER.publicKey;
    // Before any deposit: the newcomer has no account, its request is ordered and charged nothing (skipped).
    sendAs(s, NEWCOMER, 2, [0], [1, 2]);
    const got: Record<string, Tx> = {};
    s.at(10, () => {
      for (const n of s.nodes) expect(n.ledger.balances.has(hex(newcomer))).toBe(false);
      // Serial 2 first, at a node that holds no serial 1: refused (the treasury sends it again below).
      expect(s.submitDeposit(newcomer, 300, { via: 2, serial: 2 })?.code).toBe('TX_VERSION_GAP');
      // 1 and 2 at node 1 (it holds 1 when 2 comes); node 3 holds neither yet: 3 is a gap there.
      const d1 = s.submitDeposit(newcomer, 500, { via: 1 });
      const d2 = s.submitDeposit(newcomer, 300, { via: 1 });
      expect([d1?.accepted, d2?.accepted]).toEqual([true, true]);
      expect(s.submitDeposit(newcomer, 200, { via: 3, serial: 3 })?.code).toBe('TX_VERSION_GAP');
      got.d1 = d1!.tx;
    });
    s.at(20, () => {
      // At node 3 now, which heard 1 and 2 (held or executed): 3 for the newcomer, 4 for the genesis client.
      const d3 = s.submitDeposit(newcomer, 200, { via: 3 });
      const d4 = s.submitDeposit(client, 40, { via: 3 });
      expect([d3?.tx, d4?.tx].map((t) => (t?.kind === 'deposit' ? t.deposit.serial : 0))).toEqual([3, 4]);
      expect([d3?.accepted, d4?.accepted]).toEqual([true, true]);
    });
    // Funded by now: twenty requests signed by the newcomer, spread over the nodes.
    for (let i = 0; i < 20; i++) sendAs(s, NEWCOMER, 60 + i, [1 + i], [i % 4, (i + 1) % 4]);
    const early = () => requestsOf(s, newcomer).find((id) => s.requests.get(id)!.request.nonce === 0)!;
    const served = () => [...s.requests.keys()].filter((id) => id !== early());
    const replays = () => {
      // Replays, once executed everywhere: the same bytes are refused, a new signature on a used serial is stale.
      expect(s.submitTx(0, got.d1)?.code).toBe('TX_ALREADY_EXECUTED');
      expect(s.submitTx(3, got.d1)?.code).toBe('TX_ALREADY_EXECUTED');
      for (const t of [got.d5a, got.d5b])
        expect(['TX_ALREADY_EXECUTED', 'TX_STALE_VERSION']).toContain(s.submitTx(1, t)?.code);
      expect(s.submitDeposit(newcomer, 501, { via: 2, serial: 1 })?.code).toBe('TX_STALE_VERSION');
      expect(s.submitDeposit(newcomer, 0, { via: 2 })?.code).toBe('TX_BAD_AMOUNT');
    };
    // Once serial 4 is executed everywhere (a peer that hears 4 before 3 refuses it as a gap, and node 3
    // spreads it again: with this seed that takes until ~200 ms): two deposits of serial 5, validly signed, taken at two nodes at once. Both may be ordered;
    // one credits. Once that is executed, replays.
    let phase = 0;
    const everywhere = (serials: number) => s.nodes.every((n) => n.ledger.deposits === serials);
    const r = s.run({
      until: () => {
        if (phase === 0 && everywhere(4)) {
          phase = 1;
          const a = s.submitDeposit(newcomer, 100, { via: 0 });
          const b = s.submitDeposit(newcomer, 7, { via: 2, serial: 5 });
          expect([a?.accepted, b?.accepted]).toEqual([true, true]);
          got.d5a = a!.tx;
          got.d5b = b!.tx;
        }
        if (phase === 1 && everywhere(5) && s.nodes.every((n) => n.replica.pendingTxs.length === 0)) {
          phase = 2;
          replays();
        }
        return (
          phase === 2 &&
          s.requests.size === 221 &&
          allCertified(s.nodes, served()) &&
          s.nodes.every((n) => n.ledger.seq === s.nodes[0].ledger.seq && n.replica.pendingTxs.length === 0)
        );
      },
    });
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    expect(r.duplicateCertificates).toEqual([]);
    // Of the two serial-5 deposits, the first a batch carried credits (the other, if ordered, does nothing).
    const carried = [...s.nodes[0].history.values()].flatMap((h) => h.batch.txs);
    const fives = carried.filter((t) => t.kind === 'deposit' && t.deposit.serial === 5);
    expect(fives.length).toBeGreaterThanOrEqual(1);
    const fifth = amountOf(fives[0]);
    expect([amountOf(got.d5a), amountOf(got.d5b)]).toContain(fifth);
    const minted = 500 + 300 + 200 + 40 + fifth;
    expectAgreed(s.nodes, 5, minted);
    // The newcomer: its first request (sent before any deposit) was never served; the twenty after were,
    // each with a certificate that verifies against the genesis; it holds its deposits less their fees.
    const mine = requestsOf(s, newcomer).filter((id) => id !== early());
    expect(mine).toHaveLength(20);
    for (const n of s.nodes) {
      expect(n.certificates.has(early())).toBe(false);
      expect(n.replica.awaitsExecution(early())).toBe(false); // ordered and skipped, not stuck
      const batches = [...n.history.values()];
      expect(batches.some((h) => h.batch.entries.some((e) => hex(e.requestId) === early()))).toBe(true);
      for (const id of mine) {
        const c = n.certificates.get(id)!;
        expect(hex(c.outcome.client)).toBe(hex(newcomer));
        expect(verifyCertificate(c, s.group.genesis, { request: s.requests.get(id) }).ok).toBe(true);
      }
    }
    const newcomerFees = feesOf(r.certificates.values(), newcomer);
    expect(newcomerFees).toBeGreaterThanOrEqual(20 * 6); // at least q = 3 votes each (fees 1..4)
    for (const n of s.nodes) {
      expect(n.ledger.balanceOf(newcomer)).toBe(1000 + fifth - newcomerFees);
      expect(n.ledger.balanceOf(s.group.client.publicKey)).toBe(
        1e12 + 40 - feesOf(r.certificates.values(), s.group.client.publicKey),
      );
    }
    expect(r.certificates.size).toBe(220);
  });

  it('survive a backup restarted from its SQLite file and a primary crash: none lost, none twice', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dropbear-deposits-'));
    dirs.push(dir);
    const s = new Simulation({
      nodes: 4,
      requests: 40,
      seed: 32,
      rate: 0.2, // requests arrive over 200 virtual ms
      keepAllCertificates: true,
      maxTimeMs: 30_000,
      ledgerDir: dir,
    });
    const newcomer = NEWCOMER.publicKey;
    const client = s.group.client.publicKey;
    const txs: Tx[] = [];
    const deposit = (to: Uint8Array, amount: number, via: number) => {
      const d = s.submitDeposit(to, amount, { via });
      expect(d).toMatchObject({ accepted: true, code: null });
      expect(d!.tx.kind === 'deposit' && d!.tx.deposit.serial).toBe(txs.length + 1);
      txs.push(d!.tx);
    };
    s.at(10, () => deposit(newcomer, 1000, 2));
    s.at(40, () => {
      expect(s.nodes[2].ledger.deposits).toBe(1);
      s.crash(2);
    });
    s.at(50, () => deposit(newcomer, 200, 1)); // while node 2 is down
    s.at(150, () => {
      s.restart(2, false);
      // Resumed from its file: the ledger's deposits, and its replica starts from them.
      expect(s.nodes[2].ledger.deposits).toBe(1);
      expect(s.nodes[2].replica.currentDeposits).toBe(1);
    });
    const everywhere = (ids: number[], serials: number) =>
      ids.every((i) => s.nodes[i].ledger.deposits === serials);
    let phase = 0;
    let viewAfter = 0;
    const r = s.run({
      until: () => {
        // Node 2 caught up (state transfer): a deposit submitted through it is taken at the next serial.
        if (phase === 0 && s.now > EPOCH_MS + 150 && everywhere([0, 1, 2, 3], 2)) {
          phase = 1;
          deposit(client, 30, 2);
        }
        // The primary crashes; two deposits at node 3 wait through the view change, and the newcomer
        // (funded) sends ten requests.
        if (phase === 1 && everywhere([0, 1, 2, 3], 3)) {
          phase = 2;
          s.crash(0);
          deposit(newcomer, 400, 3);
          deposit(newcomer, 50, 3);
          sendAs(
            s,
            NEWCOMER,
            s.now - EPOCH_MS,
            Array.from({ length: 10 }, (_, i) => i),
            [1, 3],
          );
        }
        // Ordered by the new primary: node 0 comes back from its file and catches up.
        if (phase === 2 && everywhere([1, 2, 3], 5)) {
          phase = 3;
          viewAfter = s.nodes[1].replica.view;
          s.restart(0, false);
          expect(s.nodes[0].ledger.deposits).toBe(3);
          expect(s.nodes[0].replica.currentDeposits).toBe(3);
        }
        // Caught up: the restarted node refuses a replay (not in its memory, but stale by its ledger) and
        // takes the next deposit.
        if (phase === 3 && everywhere([0], 5) && s.nodes[0].replica.view === s.nodes[1].replica.view) {
          phase = 4;
          expect(s.submitTx(0, txs[3])?.code).toBe('TX_ALREADY_EXECUTED'); // it executed it catching up
          expect(s.submitDeposit(newcomer, 9, { via: 0, serial: 5 })?.code).toBe('TX_STALE_VERSION');
          deposit(newcomer, 5, 0);
        }
        return (
          phase === 4 &&
          everywhere([0, 1, 2, 3], 6) &&
          s.certificates.size === s.requests.size &&
          s.nodes.every((n) => n.ledger.seq === s.nodes[1].ledger.seq && n.replica.pendingTxs.length === 0)
        );
      },
    });
    s.close();
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    expect(r.duplicateCertificates).toEqual([]);
    expect(viewAfter).toBeGreaterThanOrEqual(1);
    expect(s.certificates.size).toBe(50);
    expectAgreed(s.nodes, 6, 1000 + 200 + 30 + 400 + 50 + 5);
    const certs = [...s.certificates.values()];
    expect(certs.filter((c) => hex(c.outcome.client) === hex(newcomer))).toHaveLength(10);
    for (const n of s.nodes) {
      expect(n.ledger.balanceOf(newcomer)).toBe(1000 + 200 + 400 + 50 + 5 - feesOf(certs, newcomer));
      expect(n.ledger.balanceOf(client)).toBe(1e12 + 30 - feesOf(certs, client));
      // Each file replays to the same state: the deposits are in the batches it holds, once.
      const v = verifyLedgerFile(join(dir, `node-${n.id}.sqlite`));
      expect(v.problems).toEqual([]);
    }
  });

  it('a deposit not signed by the treasury is refused at submission and its spreader punished', () => {
    const s = new Simulation({
      nodes: 4,
      requests: 100,
      seed: 33,
      rate: 1,
      keepAllCertificates: true,
      byzantine: new Map([[3, 'test:deposits-spreading-forged']]),
    });
    const newcomer = NEWCOMER.publicKey;
    s.at(5, () => {
      // Signed by a node's key, by the client's own, through any node: refused, nothing held.
      for (const [via, signer] of [
        [0, s.group.keys[0]],
        [1, s.group.keys[0]],
        [2, s.group.client],
        [1, NEWCOMER],
      ] as const)
        expect(s.submitDeposit(newcomer, 1000, { via, signer })?.code).toBe('TX_BAD_SIGNATURE');
      expect(s.submitDeposit(newcomer, 0, { via: 1 })?.code).toBe('TX_BAD_AMOUNT');
      for (const n of s.nodes) expect(n.replica.pendingTxs).toEqual([]);
    });
    s.submitDepositAt(50, s.group.client.publicKey, 25, { via: 2 }); // a real one, after
    const r = s.run({
      until: () =>
        s.certificates.size === 100 &&
        s.nodes.every((n) => n.ledger.deposits === 1 && n.ledger.seq === s.nodes[0].ledger.seq),
    });
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    const honest = s.nodes.filter((n) => r.honest.includes(n.id));
    for (const n of honest) {
      // Node 3 spread a forged deposit: every honest peer dropped it and counted it.
      expect(n.dropped.map((d) => d.peer)).toEqual([3]);
      expect(n.replica.misbehaviour.get(3)?.get('bad-tx')).toBe(1);
    }
    expectAgreed(s.nodes, 1, 25);
    for (const n of s.nodes) {
      expect(n.ledger.balances.has(hex(newcomer))).toBe(false);
      expect(n.ledger.balanceOf(s.group.client.publicKey)).toBe(
        1e12 + 25 - feesOf(r.certificates.values(), s.group.client.publicKey),
      );
    }
  });

  it("a faulty primary's proposal carrying a deposit it signed is refused; the next primary goes on", () => {
    const s = new Simulation({
      nodes: 4,
      requests: 100,
      seed: 34,
      rate: 1,
      keepAllCertificates: true,
      maxTimeMs: 20_000,
      byzantine: new Map([[0, 'test:deposits-forging-primary']]),
    });
    s.submitDepositAt(20, s.group.client.publicKey, 77, { via: 2 });
    const honestIds = [1, 2, 3];
    const r = s.run({
      until: () =>
        s.certificates.size === 100 &&
        honestIds.every(
          (i) => s.nodes[i].ledger.deposits === 1 && s.nodes[i].replica.pendingTxs.length === 0,
        ),
    });
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    const honest = honestIds.map((i) => s.nodes[i]);
    const forgedId = hex(
      txIdOf(forgedBy({ groupId: s.nodes[0].replica.groupId, key: s.group.keys[0] } as ScriptContext)),
    );
    for (const n of honest) {
      expect(n.replica.view).toBeGreaterThanOrEqual(1);
      expect(n.replica.misbehaviour.get(0)?.get('bad-tx') ?? 0).toBeGreaterThan(0);
      // No batch any honest node executed carries it.
      for (const h of n.history.values())
        expect(h.batch.txs.map((t) => hex(txIdOf(t)))).not.toContain(forgedId);
      expect(n.ledger.balances.has(hex(NEWCOMER.publicKey))).toBe(false);
    }
    // The honest nodes agree (node 0, voted out, may lag).
    expectAgreed(honest, 1, 77);
    for (const n of honest)
      expect(n.ledger.balanceOf(s.group.client.publicKey)).toBe(
        1e12 + 77 - feesOf(r.certificates.values(), s.group.client.publicKey),
      );
  });

  it('a faulty primary that proposes executed deposits again (and each twice) credits none twice', () => {
    const s = new Simulation({
      nodes: 4,
      requests: 150,
      seed: 35,
      rate: 1,
      keepAllCertificates: true,
      maxTimeMs: 20_000,
      byzantine: new Map([[0, 'test:deposits-replaying-primary']]),
    });
    const newcomer = NEWCOMER.publicKey;
    s.submitDepositAt(5, newcomer, 300, { via: 1 });
    s.submitDepositAt(30, newcomer, 20, { via: 2 });
    s.submitDepositAt(60, s.group.client.publicKey, 4, { via: 3 });
    sendAs(s, NEWCOMER, 90, [1, 2, 3, 4, 5], [1, 2]);
    const honestIds = [1, 2, 3];
    const r = s.run({
      until: () =>
        s.certificates.size === 155 &&
        honestIds.every(
          (i) =>
            s.nodes[i].ledger.deposits === 3 &&
            s.nodes[i].replica.pendingTxs.length === 0 &&
            s.nodes[i].ledger.seq === s.nodes[1].ledger.seq,
        ),
    });
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    const honest = honestIds.map((i) => s.nodes[i]);
    // The attack ran: the honest nodes executed batches carrying deposits already credited (or twice).
    for (const n of honest) {
      let carried = 0;
      for (const h of n.history.values()) carried += h.batch.txs.filter((t) => t.kind === 'deposit').length;
      expect(carried).toBeGreaterThan(3 + 3);
    }
    expectAgreed(honest, 3, 324);
    const certs = [...r.certificates.values()];
    expect(certs.filter((c) => hex(c.outcome.client) === hex(newcomer))).toHaveLength(5);
    for (const n of honest) {
      expect(n.ledger.balanceOf(newcomer)).toBe(320 - feesOf(certs, newcomer));
      expect(n.ledger.balanceOf(s.group.client.publicKey)).toBe(
        1e12 + 4 - feesOf(certs, s.group.client.publicKey),
      );
    }
  });
});
