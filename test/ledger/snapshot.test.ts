import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LEDGER_SCHEMA_VERSION,
  type ReplayProgress,
  SqliteLedger,
  StoredOutcomes,
  storedOutcomeIds,
} from '../../src/ledger/sqlite.ts';
import { type Execution, LedgerState, type ResolvedEntry } from '../../src/ledger/state.ts';
import { verifyLedgerFile } from '../../src/ledger/verify.ts';
import { IdWindow, RECORD } from '../../src/protocol/idwindow.ts';
import {
  type Batch,
  batchDigestOf,
  Certificate,
  type CountedVote,
  type DropbearError,
  decode,
  encode,
  equalBytes,
  type Genesis,
  groupIdOf,
  hex,
  type KeyPair,
  keyPairFromSeed,
  ModelUpdate,
  Receipt,
  type Request,
  requestIdOf,
  sha256,
  signDeposit,
  signFeeChange,
  signRefund,
  signRequest,
  signTagged,
  signWithdrawal,
  TAGS,
  type Tx,
} from '../../src/protocol/index.ts';
import { EPOCH_MS, makeGroup } from '../../src/sim/world.ts';

// ---------------------------------------------------------------------------------------------------------
// Fixture: n = 4, f = 1, q = 3; three clients (one rich, two that run out of money), a 20 s expiry window,
// and random histories: duplicates (in the window, in one batch, and after it: expired), requests older
// than the window, model updates (votes of an old model stop counting: requeues), too few votes, fees over
// a request's maximum, null batches, timestamps out of order, and the treasury's deposits (to a client the
// genesis does not have, now and then a replayed serial), whose client then sends requests too, and
// owners' fee changes (now and then a replayed version).

const group = makeGroup(4, 1, 11, undefined, 1e9, undefined, 20_000);
const { keys } = group;
const poor = [1, 2].map((i) => {
  const s = new Uint8Array(32);
  s[0] = 0xc1;
  s[1] = i;
  return keyPairFromSeed(s);
});
const clients: KeyPair[] = [group.client, ...poor];
/** Funded only by deposits. */
const late = (() => {
  const s = new Uint8Array(32);
  s[0] = 0xc2;
  return keyPairFromSeed(s);
})();
const genesis: Genesis = {
  ...group.genesis,
  balances: [
    { client: group.client.publicKey, amount: 1e9 },
    { client: poor[0].publicKey, amount: 40 },
    { client: poor[1].publicKey, amount: 25 },
  ].sort((a, b) => Buffer.compare(a.client, b.client)),
};
const groupId = groupIdOf(genesis);
const EXPIRY = genesis.params.expiryMs;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dropbear-snap-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
const freshPath = () => join(dir, `ledger-${++fileNo}.db`);

interface Planned {
  seq: number;
  view: number;
  digest: Uint8Array;
  batch: Batch;
  entries: ResolvedEntry[];
}

/** A deterministic generator (an LCG, as state.test.ts uses). */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return (n: number) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return (x >>> 8) % n;
  };
}

/** A random history of `count` batches (see the fixture). */
function history(seed: number, count: number): Planned[] {
  const r = rng(seed);
  const models = genesis.nodes.map((x) => x.modelDigest);
  const versions = genesis.nodes.map(() => 0);
  const earlier: ResolvedEntry[] = [];
  const out: Planned[] = [];
  // Deposits draw from a stream of their own: the rest of each history is what it was before them.
  const rd = rng(seed + 7_777);
  let deposits = 0;
  const feeVersions = genesis.nodes.map(() => 0);
  const rw = rng(seed + 9_999);
  const withdrawals = genesis.nodes.map(() => 0);
  const rr = rng(seed + 13_131);
  const refundSerials = new Map<KeyPair, number>();
  let clock = EPOCH_MS;
  let nonce = seed * 1_000_000;
  for (let seq = 1; seq <= count; seq++) {
    if (r(12) === 0) {
      // A null batch (timestamp 0: the clock does not move).
      const batch: Batch = { timestamp: 0, entries: [], txs: [] };
      out.push({ seq, view: r(3), digest: batchDigestOf(batch), batch, entries: [] });
      continue;
    }
    clock += r(4_000);
    const txs: Tx[] = [];
    if (r(8) === 0) {
      const node = r(4);
      // Now and then a stale version (no effect) instead of the next.
      const version = r(5) === 0 ? versions[node] : versions[node] + 1;
      const update = { node, version, newDigest: sha256(new TextEncoder().encode(`m${node} v${version}`)) };
      txs.push({
        kind: 'modelUpdate',
        update,
        signature: signTagged(TAGS.modelUpdate, groupId, encode(ModelUpdate, update), keys[node]),
      });
    }
    if (rd(6) === 0) {
      const serial = rd(4) === 0 ? deposits : deposits + 1;
      deposits = Math.max(deposits, serial);
      txs.push(signDeposit(groupId, { client: late.publicKey, amount: 5 + rd(30), serial }, group.treasury));
    }
    if (rd(7) === 0) {
      const node = rd(4);
      const version = rd(4) === 0 ? feeVersions[node] : feeVersions[node] + 1;
      feeVersions[node] = Math.max(feeVersions[node], version);
      txs.push(signFeeChange(groupId, { node, version, fee: rd(7) }, keys[node]));
    }
    // Withdrawals from a stream of their own too: amounts from 1 to 40, so some take more than the node
    // has earned (the serial used, nothing taken), and now and then a replayed serial.
    if (rw(9) === 0) {
      const node = rw(4);
      const serial = rw(4) === 0 ? withdrawals[node] : withdrawals[node] + 1;
      withdrawals[node] = Math.max(withdrawals[node], serial);
      txs.push(signWithdrawal(groupId, { node, serial, amount: 1 + rw(40) }, keys[node]));
    }
    // Refunds from a stream of their own: a poor client's, the funded one's, or the late one's (an account
    // only once a deposit made it); amounts up to 60, so some take more than the balance (the serial used,
    // nothing taken), now and then a replayed serial, and a forged one (no effect, the serial not used).
    if (rr(7) === 0) {
      const who = [clients[0], clients[1], late][rr(3)];
      const was = refundSerials.get(who) ?? 0;
      const serial = rr(4) === 0 ? was : was + 1;
      const forged = rr(6) === 0;
      if (!forged) refundSerials.set(who, Math.max(was, serial));
      txs.push(
        signRefund(
          groupId,
          { client: who.publicKey, serial, amount: 1 + rr(60) },
          forged ? (who === late ? clients[1] : late) : who,
        ),
      );
    }
    // Votes are cast with the models before this batch's update: the update makes some of them stale.
    const voteModels = [...models];
    for (const tx of txs)
      if (tx.kind === 'modelUpdate' && tx.update.version === versions[tx.update.node] + 1) {
        models[tx.update.node] = tx.update.newDigest;
        versions[tx.update.node] = tx.update.version;
      }
    const entries: ResolvedEntry[] = [];
    const size = r(7);
    for (let i = 0; i < size; i++) {
      const pick = r(10);
      if (pick === 0 && earlier.length > 0) {
        entries.push(earlier[r(earlier.length)]); // a replay: duplicate, or expired after the window
        continue;
      }
      if (pick === 1 && entries.length > 0) {
        entries.push(entries[r(entries.length)]); // twice in one batch
        continue;
      }
      const client = rd(5) === 0 ? late : clients[r(5) < 3 ? 0 : 1 + r(2)];
      const input = new TextEncoder().encode(`input ${nonce}`);
      const request: Request = {
        groupId,
        client: client.publicKey,
        nonce: nonce++,
        // Mostly recent, some far in the past (expired), some ahead of the batch.
        timestamp: clock - (r(10) === 0 ? EXPIRY + 1 + r(5_000) : r(8_000)) + r(500),
        inputDigest: sha256(input),
        policy: null,
        maxFee: r(6) === 0 ? 5 : 1_000,
      };
      const requestId = requestIdOf(signRequest(request, input, client));
      const nodes = [0, 1, 2, 3].filter(() => r(6) !== 0);
      const votes: CountedVote[] = nodes.map((node) => ({
        node,
        modelDigest: r(4) === 0 ? models[node] : voteModels[node],
        result: { kind: 'class', top: [{ label: r(3), score: 500_000 }] },
      }));
      const e = { requestId, request, votes };
      entries.push(e);
      earlier.push(e);
    }
    const batch: Batch = {
      timestamp: clock,
      entries: entries.map((e, i) => ({
        requestId: e.requestId,
        votes: e.votes.map((v) => ({ node: v.node, results: sha256(new Uint8Array([v.node, i])), index: i })),
      })),
      txs,
    };
    out.push({ seq, view: r(3), digest: batchDigestOf(batch), batch, entries });
  }
  return out;
}

function signReceipt(receipt: Receipt, node: number) {
  return {
    node,
    signature: signTagged(TAGS.receipt, groupId, encode(Receipt, receipt), keys[node]),
    view: null,
  };
}

/** Executes `plans` on `l`, each batch certified by q receipt signatures; returns the executions. */
function feed(l: SqliteLedger, plans: Planned[]): Execution[] {
  return plans.map((p) => {
    const ex = l.execute(p.seq, p.view, p.digest, p.batch, p.entries);
    l.addReceiptSignatures(
      p.seq,
      [0, 1, 2].map((i) => signReceipt(ex.receipt, i)),
      ex.receiptHash,
    );
    return ex;
  });
}

/** The state after `upTo` batches of `plans`, by a plain in-memory replay. */
function stateAfter(plans: Planned[], upTo: number): LedgerState {
  const s = new LedgerState(genesis);
  for (const p of plans.slice(0, upTo)) s.execute(p.seq, p.digest, p.batch, p.entries);
  return s;
}

function windowOf(s: LedgerState): Map<string, number> {
  return new Map([...s.recent.entries()].map(([id, t]) => [hex(id), t]));
}

/** Everything a restored state must share with a replayed one. */
function expectSameState(a: LedgerState, b: LedgerState): void {
  expect(hex(a.stateDigest())).toBe(hex(b.stateDigest()));
  expect(hex(a.snapshot())).toBe(hex(b.snapshot()));
  expect(windowOf(a)).toEqual(windowOf(b));
  expect([...a.balances.entries()]).toEqual([...b.balances.entries()]);
  expect(a.models).toEqual(b.models);
  expect(a.modelVersions).toEqual(b.modelVersions);
  expect(a.stats).toEqual(b.stats);
  expect(a.fees).toEqual(b.fees);
  expect(a.feeVersions).toEqual(b.feeVersions);
  expect([a.deposits, a.minted]).toEqual([b.deposits, b.minted]);
  expect([a.withdrawals, a.withdrawn]).toEqual([b.withdrawals, b.withdrawn]);
  expect([a.seq, a.clock, hex(a.lastReceipt)]).toEqual([b.seq, b.clock, hex(b.lastReceipt)]);
}

/** Every certificate of `executions`, as canonical bytes (hex), from `l`. */
function certificates(l: SqliteLedger, executions: Execution[]): string[] {
  const out: string[] = [];
  for (const ex of executions)
    for (const o of ex.outcomes) {
      const c = l.certificate(o.requestId);
      out.push(c ? hex(encode(Certificate, c)) : 'none');
    }
  return out;
}

/** Stores the snapshot of `state` in the file at `path`, as `execute` does. */
function putSnapshot(path: string, state: LedgerState, seq = state.seq, bytes = state.snapshot()): void {
  const db = new Database(path);
  db.prepare('INSERT OR REPLACE INTO snapshots (seq, state, hash) VALUES (?, ?, ?)').run(
    seq,
    bytes,
    sha256(bytes),
  );
  db.close();
}

function snapshotSeqs(path: string): number[] {
  const db = new Database(path, { readonly: true });
  const seqs = db.prepare('SELECT seq FROM snapshots ORDER BY seq').pluck().all() as number[];
  db.close();
  return seqs;
}

/** A ledger of `plans` without snapshots, closed; its path. */
function written(plans: Planned[]): { path: string; executions: Execution[] } {
  const l = SqliteLedger.open(freshPath(), genesis, { snapshotEvery: 0 });
  const executions = feed(l, plans);
  const path = l.path;
  l.close();
  return { path, executions };
}

/**
 * An upgraded file of the first 30 batches of `plans`, holding no snapshot: its open replays them all (the
 * state and certificates of a plain replay), the next execution writes the first snapshot, and the file is
 * at this build's schema.
 */
function opensAsReplayed(path: string, plans: Planned[], executions: Execution[]): void {
  const l = SqliteLedger.open(path, genesis, { snapshotEvery: 5 });
  expect(snapshotSeqs(path)).toEqual([]);
  const reference = SqliteLedger.open(':memory:', genesis, { snapshotEvery: 0 });
  feed(reference, plans.slice(0, 30));
  expectSameState(l.state, reference.state);
  expect(certificates(l, executions)).toEqual(certificates(reference, executions));
  // It replayed more than 5 requests: the next execution writes the first snapshot.
  feed(l, [plans[30]]);
  expect(snapshotSeqs(path)).toEqual([31]);
  l.close();
  reference.close();
  const check = new Database(path, { readonly: true });
  expect(check.prepare('SELECT schema_version FROM meta').pluck().get()).toBe(LEDGER_SCHEMA_VERSION);
  check.close();
}

// ---------------------------------------------------------------------------------------------------------

describe('IdWindow records', () => {
  it('are in expiry order, equal for equal windows whatever their layout, and build the same window back', () => {
    const r = rng(5);
    const a = new IdWindow(16, 1);
    const b = new IdWindow(16, 2);
    const ids: Uint8Array[] = [];
    for (let i = 0; i < 3000; i++) {
      const id = sha256(new Uint8Array([i & 255, i >> 8]));
      ids.push(id);
      // Few distinct timestamps: many runs of equal ones, ordered by id.
      a.add(id, 1000 + r(40));
      if (r(3) === 0) a.shift(); // entries freed and reused, the heap reshaped
    }
    // b gets the same live entries, in another order.
    const live = [...a.entries()].reverse();
    for (const [id, t] of live) b.add(id, t);
    const rec = a.records();
    expect(hex(b.records())).toBe(hex(rec));
    expect(rec.length).toBe(a.size * RECORD);
    const back = IdWindow.fromRecords(rec, 3);
    expect(hex(back.records())).toBe(hex(rec));
    // It expires in the same order as the original and goes on growing and shrinking like one.
    const more = sha256(new Uint8Array([1, 2, 3]));
    a.add(more, 1010);
    back.add(more, 1010);
    const drained = (w: IdWindow) => {
      const out: string[] = [];
      const id = new Uint8Array(32);
      while (w.shift(id) !== undefined) out.push(hex(id));
      return out;
    };
    expect(drained(back)).toEqual(drained(a));
    expect(ids.length).toBe(3000);
  });

  it('refuse records that are not whole, not ascending, repeat an id, or hold a timestamp over 2^53 − 1', () => {
    const w = new IdWindow();
    w.add(sha256(new Uint8Array([1])), 5);
    w.add(sha256(new Uint8Array([2])), 7);
    const rec = w.records();
    const code = (bytes: Uint8Array) => {
      try {
        IdWindow.fromRecords(bytes);
        return 'ok';
      } catch (e) {
        return (e as DropbearError).code;
      }
    };
    expect(code(rec)).toBe('ok');
    expect(code(rec.subarray(0, rec.length - 1))).toBe('SNAPSHOT_INVALID');
    const swapped = new Uint8Array([...rec.subarray(RECORD), ...rec.subarray(0, RECORD)]);
    expect(code(swapped)).toBe('SNAPSHOT_INVALID');
    const sameId = new Uint8Array(rec);
    sameId.set(rec.subarray(8, RECORD), RECORD + 8); // the second record's id := the first's (later ts)
    expect(code(sameId)).toBe('SNAPSHOT_INVALID');
    const huge = new Uint8Array(rec);
    huge[RECORD] = 0xff;
    expect(code(huge)).toBe('SNAPSHOT_INVALID');
  });
});

describe('LedgerState snapshots', () => {
  it('restore a state indistinguishable from the replayed one at every batch of random histories', () => {
    for (const seed of [1, 2, 3]) {
      const plans = history(seed, 90);
      const replayed = new LedgerState(genesis);
      let restored = new LedgerState(genesis);
      for (const p of plans) {
        const a = replayed.execute(p.seq, p.digest, p.batch, p.entries);
        const b = restored.execute(p.seq, p.digest, p.batch, p.entries);
        expect(hex(b.receiptHash)).toBe(hex(a.receiptHash));
        expect(b.skipped).toEqual(a.skipped);
        expect(b.requeued).toEqual(a.requeued);
        // Restored from its own snapshot after every batch: a snapshot of a restored state too.
        restored = LedgerState.restore(genesis, restored.snapshot());
        expectSameState(restored, replayed);
      }
    }
  });

  it('the random histories exercise every way a request can go', () => {
    const seen = new Map<string, number>();
    let requeued = 0;
    let expiredIds = 0;
    let updates = 0;
    let lateServed = 0;
    let feeChanges = 0;
    let lateDeposits = 0;
    for (const seed of [1, 2, 3]) {
      const s = new LedgerState(genesis);
      for (const p of history(seed, 90)) {
        const before = s.recent.size;
        const versions = [...s.modelVersions];
        const ex = s.execute(p.seq, p.digest, p.batch, p.entries);
        for (const k of ex.skipped) seen.set(k.reason, (seen.get(k.reason) ?? 0) + 1);
        requeued += ex.requeued.length;
        expiredIds += before + ex.outcomes.length - s.recent.size;
        if (s.modelVersions.some((v, i) => v !== versions[i])) updates++;
        for (const o of ex.outcomes) if (equalBytes(o.client, late.publicKey)) lateServed++;
      }
      // The poor clients ran out.
      expect(s.balanceOf(poor[0].publicKey)).toBeLessThan(10);
      lateDeposits += s.deposits;
      feeChanges += s.feeVersions.reduce((a, b) => a + b, 0);
    }
    for (const reason of ['duplicate', 'expired', 'over-max-fee', 'insufficient-balance'])
      expect(seen.get(reason) ?? 0, reason).toBeGreaterThan(0);
    expect(requeued).toBeGreaterThan(0);
    expect(expiredIds).toBeGreaterThan(10);
    expect(updates).toBeGreaterThan(1);
    // The client the genesis does not have was funded and served.
    expect(lateDeposits).toBeGreaterThan(3);
    expect(lateServed).toBeGreaterThan(3);
    expect(feeChanges).toBeGreaterThan(5);
  });

  it('restore refuses a snapshot of another group shape or that conserves no money (SNAPSHOT_INVALID)', () => {
    const plans = history(4, 20);
    const s = stateAfter(plans, 20);
    const other = new LedgerState({ ...genesis, nodes: genesis.nodes.slice(0, 3) } as Genesis);
    expect(() => LedgerState.restore(other.genesis, s.snapshot())).toThrow(
      expect.objectContaining({ code: 'SNAPSHOT_INVALID' }),
    );
    const rich = [...s.balances.values()].find((b) => b.amount > 1000)!;
    rich.amount += 1;
    expect(() => LedgerState.restore(genesis, s.snapshot())).toThrow(
      expect.objectContaining({ code: 'SNAPSHOT_INVALID' }),
    );
    expect(() => LedgerState.restore(genesis, new Uint8Array([1, 2, 3]))).toThrow(
      expect.objectContaining({ code: 'SNAPSHOT_INVALID' }),
    );
  });
});

describe('SqliteLedger snapshots', () => {
  it('an open from a snapshot at any batch equals one by full replay: state, window, certificates, next receipts', () => {
    for (const seed of [7, 8]) {
      const plans = history(seed, 70);
      const head = plans.slice(0, 60);
      const tail = plans.slice(60);
      const { path, executions } = written(head);
      const refPath = freshPath();
      copyFileSync(path, refPath);
      const reference = SqliteLedger.open(refPath, genesis, { snapshotEvery: 0 });
      const certs = certificates(reference, executions);
      expect(certs.filter((c) => c !== 'none').length).toBeGreaterThan(30);
      const refState = stateAfter(plans, 60);
      expectSameState(reference.state, refState);
      const refNext = feed(reference, tail);
      reference.close();
      for (let cut = 1; cut <= 60; cut += seed === 7 ? 3 : 5) {
        const p = freshPath();
        copyFileSync(path, p);
        putSnapshot(p, stateAfter(plans, cut));
        const ignored: string[] = [];
        const seen: ReplayProgress[] = [];
        const l = SqliteLedger.open(p, genesis, {
          snapshotEvery: 0,
          onSnapshotIgnored: (m) => ignored.push(m),
          replayProgressMs: 0,
          onReplayProgress: (x) => seen.push(x),
        });
        expect(ignored).toEqual([]);
        // Batches after the snapshot only were replayed.
        const replayedSeqs = seen.filter((x) => !x.done && x.batches > cut).map((x) => x.batches);
        expect(replayedSeqs).toEqual(head.slice(cut).map((x) => x.seq));
        expect(seen.at(-1)).toMatchObject({ batches: 60, total: 60, done: true, snapshot: cut });
        expectSameState(l.state, refState);
        expect(certificates(l, executions)).toEqual(certs);
        const next = feed(l, tail);
        expect(next.map((x) => hex(x.receiptHash))).toEqual(refNext.map((x) => hex(x.receiptHash)));
        expect(certificates(l, next)).toEqual(certificates(l, refNext));
        l.close();
      }
    }
  });

  it('execute writes a snapshot every snapshotEvery requests, keeps the latest two, and a reopen restores the latest', () => {
    const plans = history(9, 80);
    const full = written(plans);
    const l = SqliteLedger.open(freshPath(), genesis, { snapshotEvery: 10 });
    const path = l.path;
    // Where snapshots must come: once the requests since the last one (a batch counts its entries, at
    // least one) reach 10.
    const expected: number[] = [];
    let since = 0;
    for (const p of plans) {
      since += Math.max(1, p.entries.length);
      if (since >= 10) {
        expected.push(p.seq);
        since = 0;
      }
      feed(l, [p]);
      expect(snapshotSeqs(path)).toEqual(expected.slice(-2));
    }
    expect(expected.length).toBeGreaterThan(10);
    l.close();
    expect(verifyLedgerFile(path)).toMatchObject({ ok: true, batches: 80 });
    const seen: ReplayProgress[] = [];
    const again = SqliteLedger.open(path, genesis, {
      snapshotEvery: 10,
      replayProgressMs: 0,
      onReplayProgress: (x) => seen.push(x),
    });
    const reference = SqliteLedger.open(full.path, genesis);
    expectSameState(again.state, reference.state);
    expect(certificates(again, full.executions)).toEqual(certificates(reference, full.executions));
    const last = expected.at(-1)!;
    expect(seen.filter((x) => !x.done && x.batches > last).map((x) => x.batches)).toEqual(
      plans.slice(last).map((x) => x.seq),
    );
    expect(seen.at(-1)?.snapshot).toBe(last);
    // The count goes on from the batches replayed after the snapshot: snapshots keep their spacing.
    const more = history(9, 100).slice(80);
    feed(again, more);
    feed(reference, more);
    expectSameState(again.state, reference.state);
    again.close();
    reference.close();
    expect(snapshotSeqs(path).at(-1)).toBeGreaterThan(80);
    expect(verifyLedgerFile(path)).toMatchObject({ ok: true, batches: 100 });
  });

  it('ignores a corrupted snapshot (flipped byte, wrong seq, ahead of the batches, another receipt) and opens right', () => {
    const plans = history(10, 50);
    const { path, executions } = written(plans);
    const refPath = freshPath();
    copyFileSync(path, refPath);
    const reference = SqliteLedger.open(refPath, genesis, { snapshotEvery: 0 });
    const certs = certificates(reference, executions);
    const refState = reference.state;
    reference.close();
    const at40 = stateAfter(plans, 40);
    const at30 = stateAfter(plans, 30);
    const cases: [string, (p: string) => void, RegExp][] = [
      [
        'a flipped byte (hash column kept)',
        (p) => {
          putSnapshot(p, at40);
          const db = new Database(p);
          const row = db.prepare('SELECT state FROM snapshots WHERE seq = 40').pluck().get() as Buffer;
          row[row.length >> 1] ^= 1;
          db.prepare('UPDATE snapshots SET state = ? WHERE seq = 40').run(row);
          db.close();
        },
        /batch 40: its state does not hash to its stored hash/,
      ],
      [
        'a flipped byte with its hash recomputed',
        (p) => {
          const bytes = new Uint8Array(at40.snapshot());
          bytes[0] ^= 1; // the seq (a one-byte uint at 40)
          putSnapshot(p, at40, 40, bytes);
        },
        /batch 40: it holds the state after batch 41/,
      ],
      ['a wrong seq', (p) => putSnapshot(p, at30, 40), /batch 40: it holds the state after batch 30/],
      [
        'ahead of the batches',
        (p) => {
          const ahead = stateAfter(history(10, 55), 55);
          putSnapshot(p, ahead);
        },
        /batch 55: batch 55 is not in the ledger/,
      ],
      [
        'the state of another history at that seq',
        (p) => putSnapshot(p, stateAfter(history(11, 45), 45)),
        /batch 45: its last receipt is not the stored receipt of batch 45/,
      ],
      [
        'not a blob',
        (p) => {
          const db = new Database(p);
          db.prepare("INSERT INTO snapshots (seq, state, hash) VALUES (45, 'text', 'text')").run();
          db.close();
        },
        /batch 45: its state or hash is not a blob/,
      ],
    ];
    for (const [what, damage, message] of cases) {
      for (const withOlder of [false, true]) {
        const p = freshPath();
        copyFileSync(path, p);
        if (withOlder) putSnapshot(p, stateAfter(plans, 20));
        damage(p);
        const ignored: string[] = [];
        const seen: ReplayProgress[] = [];
        const l = SqliteLedger.open(p, genesis, {
          snapshotEvery: 0,
          onSnapshotIgnored: (m) => ignored.push(m),
          replayProgressMs: 0,
          onReplayProgress: (x) => seen.push(x),
        });
        expect(ignored, what).toHaveLength(1);
        expect(ignored[0], what).toMatch(message);
        // From the older snapshot when there is one, else from the genesis.
        expect(seen.at(-1)?.snapshot, what).toBe(withOlder ? 20 : 0);
        expectSameState(l.state, refState);
        expect(certificates(l, executions), what).toEqual(certs);
        l.close();
        // Verify reports the damaged row (the flipped byte with its hash recomputed decodes to another state).
        expect(verifyLedgerFile(p).ok, what).toBe(false);
      }
    }
  });

  it('an open that restores a snapshot checks and replays the batches after it as before', () => {
    const plans = history(12, 30);
    const { path } = written(plans);
    putSnapshot(path, stateAfter(plans, 20));
    const db = new Database(path);
    db.prepare('UPDATE receipts SET hash = ? WHERE seq = 25').run(new Uint8Array(32));
    db.close();
    // The batches after the snapshot do not replay: the snapshot is set aside, and the replay from the
    // genesis fails at the same batch.
    const ignored: string[] = [];
    expect(() => SqliteLedger.open(path, genesis, { onSnapshotIgnored: (m) => ignored.push(m) })).toThrow(
      expect.objectContaining({
        code: 'LEDGER_CORRUPT',
        message: expect.stringMatching(/batch 25 does not/),
      }),
    );
    expect(ignored).toEqual([expect.stringMatching(/batch 20: the batches after it do not replay from it/)]);
  });

  it('a snapshot the later batches do not replay from is set aside: the open replays from the genesis', () => {
    // Hash, seq and last receipt are right, but a balance moved from one client to another: a later
    // request is decided otherwise, and its batch's receipt is not reproduced.
    const plans = history(12, 60);
    const { path, executions } = written(plans);
    const refPath = freshPath();
    copyFileSync(path, refPath);
    const reference = SqliteLedger.open(refPath, genesis);
    const moved = stateAfter(plans, 10);
    const accounts = [...moved.balances.values()].sort((x, y) => y.amount - x.amount);
    for (const b of accounts.slice(1)) {
      accounts[0].amount += b.amount;
      b.amount = 0;
    }
    putSnapshot(path, moved);
    const ignored: string[] = [];
    const seen: ReplayProgress[] = [];
    const l = SqliteLedger.open(path, genesis, {
      onSnapshotIgnored: (m) => ignored.push(m),
      replayProgressMs: 0,
      onReplayProgress: (x) => seen.push(x),
    });
    expect(ignored).toEqual([expect.stringMatching(/batch 10: the batches after it do not replay from it/)]);
    expect(seen.at(-1)?.snapshot).toBe(0);
    expectSameState(l.state, reference.state);
    expect(certificates(l, executions)).toEqual(certificates(reference, executions));
    l.close();
    reference.close();
  });

  it('upgrades a schema-6 file (no snapshots) in place: the first open replays all, the next execution snapshots', () => {
    const plans = history(13, 40);
    const { path, executions } = written(plans.slice(0, 30));
    asSchema10(path);
    const db = new Database(path);
    db.exec('DROP TABLE snapshots');
    db.prepare('UPDATE meta SET schema_version = 6').run();
    db.close();
    expect(() => verifyLedgerFile(path)).toThrow(
      expect.objectContaining({
        code: 'LEDGER_SCHEMA_VERSION',
        message: `${path}: ledger schema 6; this build reads ${LEDGER_SCHEMA_VERSION} (a node opening the file upgrades it; verification only reads)`,
      }),
    );
    opensAsReplayed(path, plans, executions);
    expect(verifyLedgerFile(path)).toMatchObject({ ok: true, batches: 31 });
  });

  it.each([
    [9, 'deposits'],
    [10, 'withdrawals'],
    [11, 'refunds'],
  ])(
    'upgrades a schema-%i file in place: its snapshots (the layout before %s) go, the open replays, the next execution snapshots',
    (version) => {
      const plans = history(8 + version, 40);
      const l0 = SqliteLedger.open(freshPath(), genesis, { snapshotEvery: 5 });
      const executions = feed(l0, plans.slice(0, 30));
      const path = l0.path;
      l0.close();
      expect(snapshotSeqs(path).length).toBeGreaterThan(0);
      if (version < 11) asSchema10(path);
      const db = new Database(path);
      db.prepare('UPDATE meta SET schema_version = ?').run(version);
      db.close();
      opensAsReplayed(path, plans, executions);
    },
  );

  it('verify reports a snapshot that differs from the state the replay reaches, one whose hash does not match, and one ahead of the batches', () => {
    const plans = history(14, 30);
    const { path } = written(plans);
    expect(verifyLedgerFile(path)).toMatchObject({ ok: true });
    const good = freshPath();
    copyFileSync(path, good);
    putSnapshot(good, stateAfter(plans, 20));
    expect(verifyLedgerFile(good)).toMatchObject({ ok: true });

    // A snapshot that passes every check of the open (hash, seq, last receipt) but holds another state
    // that executes the later batches alike: one more agreeing vote counted for node 2.
    const off = stateAfter(plans, 20);
    off.stats[2].agreed++;
    const p1 = freshPath();
    copyFileSync(path, p1);
    putSnapshot(p1, off);
    expect(verifyLedgerFile(p1).problems).toEqual([
      'batch 20: the stored snapshot is not the state the replay reaches',
    ]);
    // The open cannot see it (this is what verify is for).
    const opened = SqliteLedger.open(p1, genesis, { onSnapshotIgnored: () => expect.fail('not ignored') });
    expect(opened.state.stats[2].agreed).toBe(stateAfter(plans, 30).stats[2].agreed + 1);
    opened.close();

    const p2 = freshPath();
    copyFileSync(path, p2);
    putSnapshot(p2, stateAfter(plans, 20));
    const db = new Database(p2);
    db.prepare('UPDATE snapshots SET hash = ? WHERE seq = 20').run(new Uint8Array(32));
    db.close();
    expect(verifyLedgerFile(p2).problems).toEqual([
      'snapshot of batch 20: its state does not hash to its stored hash',
    ]);

    const p3 = freshPath();
    copyFileSync(path, p3);
    putSnapshot(p3, stateAfter(history(14, 33), 33));
    expect(verifyLedgerFile(p3).problems).toEqual(['snapshots for batches not in the ledger: 33']);
  });

  it('rebuilds the certificate index from stored outcomes as decoding them would, and refuses what decoding refuses', () => {
    const plans = history(15, 40);
    const { path, executions } = written(plans);
    const db = new Database(path);
    const rows = db.prepare('SELECT seq, outcomes FROM outcomes ORDER BY seq').all() as {
      seq: number;
      outcomes: Buffer;
    }[];
    expect(rows.length).toBeGreaterThan(10);
    const codes = (b: Uint8Array) => {
      const code = (fn: () => unknown) => {
        try {
          fn();
          return 'ok';
        } catch (e) {
          return (e as DropbearError).code;
        }
      };
      return [code(() => storedOutcomeIds(b, () => {})), code(() => decode(StoredOutcomes, b))];
    };
    for (const r of rows) {
      const bytes = new Uint8Array(r.outcomes);
      const ids: string[] = [];
      expect(storedOutcomeIds(bytes, (id) => ids.push(hex(id)))).toBe(ids.length);
      expect(ids).toEqual(executions[r.seq - 1].outcomes.map((o) => hex(o.requestId)));
      expect(codes(bytes.subarray(0, bytes.length - 1))).toEqual(['CODEC_TRUNCATED', 'CODEC_TRUNCATED']);
      expect(codes(new Uint8Array([...bytes, 0]))).toEqual(['CODEC_TRAILING_BYTES', 'CODEC_TRAILING_BYTES']);
      // The count written with a needless continuation byte.
      const padded = new Uint8Array([0x80 | bytes[0], 0, ...bytes.subarray(1)]);
      expect(codes(padded)).toEqual(['CODEC_NON_CANONICAL', 'CODEC_NON_CANONICAL']);
    }
    // A snapshot whose batches' outcomes do not read: the open replays from the genesis, and is right.
    putSnapshot(path, stateAfter(plans, 30));
    const damaged = rows[3];
    db.prepare('UPDATE outcomes SET outcomes = ? WHERE seq = ?').run(
      damaged.outcomes.subarray(0, damaged.outcomes.length - 2),
      damaged.seq,
    );
    db.close();
    const ignored: string[] = [];
    const seen: ReplayProgress[] = [];
    const l = SqliteLedger.open(path, genesis, {
      onSnapshotIgnored: (m) => ignored.push(m),
      replayProgressMs: 0,
      onReplayProgress: (x) => seen.push(x),
    });
    expect(ignored).toEqual([
      expect.stringMatching(new RegExp(`batch 30: batch ${damaged.seq}'s stored outcomes do not decode`)),
    ]);
    expect(seen.at(-1)).toMatchObject({ snapshot: 0, done: true });
    expectSameState(l.state, stateAfter(plans, 40));
    l.close();
  });

  it('refuses a snapshotEvery that is not a non-negative integer', () => {
    for (const bad of [-1, 1.5, Number.NaN])
      expect(() => SqliteLedger.open(':memory:', genesis, { snapshotEvery: bad })).toThrow(
        expect.objectContaining({ code: 'LEDGER_BAD_OPTION' }),
      );
  });

  it('refuses a bad option before it opens the file: an older schema is left as it was, not upgraded', () => {
    const { path } = written(history(14, 3));
    asSchema10(path);
    const db = new Database(path);
    db.exec('DROP TABLE snapshots');
    db.prepare('UPDATE meta SET schema_version = 6').run();
    db.close();
    const bytes = () => readFileSync(path);
    const before = bytes();
    for (const opts of [{ snapshotEvery: -1 }, { certificateIndexRequests: 0 }, { replayProgressMs: -1 }])
      expect(() => SqliteLedger.open(path, genesis, opts)).toThrow(
        expect.objectContaining({ code: 'LEDGER_BAD_OPTION' }),
      );
    expect(bytes().equals(before)).toBe(true);
    const after = new Database(path, { readonly: true });
    expect(after.prepare('SELECT schema_version FROM meta').pluck().get()).toBe(6);
    after.close();
  });
});

describe('certificateIndexRequests', () => {
  it('serves the certificates of at least the latest N requests and forgets older ones, before and after a reopen; an open from a snapshot reads about N', () => {
    const plans = history(81, 300);
    const N = 40;
    const full = written(plans);
    const ref = SqliteLedger.open(full.path, genesis, { snapshotEvery: 0 });
    const reference = certificates(ref, full.executions);
    ref.close();
    const ids = full.executions.flatMap((ex) => ex.outcomes.map((o) => hex(o.requestId)));
    expect(ids.length).toBeGreaterThan(4 * N);
    const lastAt = new Map(ids.map((id, i) => [id, i]));
    const check = (got: string[]) => {
      ids.forEach((id, i) => {
        // The latest N are all served, as the full index serves them.
        if (i >= ids.length - N) expect(got[i], `outcome ${i}`).toBe(reference[i]);
        // What was last seen over 2N requests ago is not.
        if ((lastAt.get(id) as number) < ids.length - 2 * N) expect(got[i], `outcome ${i}`).toBe('none');
      });
    };
    for (const snapshotEvery of [0, 30]) {
      const l = SqliteLedger.open(freshPath(), genesis, { snapshotEvery, certificateIndexRequests: N });
      const executions = feed(l, plans);
      check(certificates(l, executions));
      const path = l.path;
      l.close();
      const reports: ReplayProgress[] = [];
      const again = SqliteLedger.open(path, genesis, {
        snapshotEvery,
        certificateIndexRequests: N,
        replayProgressMs: 0,
        onReplayProgress: (p) => reports.push(p),
      });
      check(certificates(again, executions));
      const last = reports[reports.length - 1];
      expect(last.done).toBe(true);
      if (snapshotEvery > 0) {
        // The index rebuilt from about N stored requests (and the replay after the snapshot), not all.
        expect(last.snapshot).toBeGreaterThan(0);
        expect(last.requests).toBeLessThan(ids.length / 2);
      } else expect(last.requests).toBe(ids.length);
      again.close();
    }
    expect(() => SqliteLedger.open(freshPath(), genesis, { certificateIndexRequests: 0 })).toThrow(
      /certificateIndexRequests must be an integer ≥ 1/,
    );
  });
});

describe('certificateIndexRequests, edge cases', () => {
  it('N = 1 and a few: the latest N are served after execute and after reopens from snapshots taken every batch or every few (null and empty batches among them)', () => {
    const plans = history(82, 120);
    const full = written(plans);
    const ref = SqliteLedger.open(full.path, genesis, { snapshotEvery: 0 });
    const reference = certificates(ref, full.executions);
    ref.close();
    expect(plans.some((p) => p.batch.entries.length === 0)).toBe(true);
    for (const N of [1, 2, 5])
      for (const snapshotEvery of [1, 4, 0]) {
        const l = SqliteLedger.open(freshPath(), genesis, { snapshotEvery, certificateIndexRequests: N });
        const executions = feed(l, plans);
        const latest = (got: string[]) =>
          expect(got.slice(got.length - N), `N ${N} snapshotEvery ${snapshotEvery}`).toEqual(
            reference.slice(reference.length - N),
          );
        latest(certificates(l, executions));
        const path = l.path;
        l.close();
        const again = SqliteLedger.open(path, genesis, { snapshotEvery, certificateIndexRequests: N });
        latest(certificates(again, executions));
        again.close();
        // Reopened with a larger N than it ran with: the snapshot's rows still give the latest N.
        const wider = SqliteLedger.open(path, genesis, { snapshotEvery, certificateIndexRequests: 4 * N });
        const got = certificates(wider, executions);
        expect(got.slice(got.length - 4 * N)).toEqual(reference.slice(reference.length - 4 * N));
        wider.close();
      }
  });
});

// ---------------------------------------------------------------------------------------------------------
// Transaction fates (`txs`, schema 11): what GET /v1/txs/:txId answers once the node has forgotten it.

/**
 * Each transaction's fate as the node answers it (NodeHost.noteTxs): the batch that first applied it, else
 * the latest batch that carried it, without effect.
 */
function fatesOf(executions: Execution[]): Map<string, { seq: number; applied: boolean }> {
  const m = new Map<string, { seq: number; applied: boolean }>();
  for (const ex of executions)
    for (const t of ex.txs) {
      const k = hex(t.id);
      if (!m.get(k)?.applied) m.set(k, { seq: ex.seq, applied: t.applied });
    }
  return m;
}

/** The `txs` rows of the file at `path`, by id (hex). */
function txRows(path: string): Map<string, { seq: number; applied: boolean }> {
  const db = new Database(path, { readonly: true });
  const rows = db.prepare('SELECT id, seq, applied FROM txs ORDER BY id').all() as {
    id: Buffer;
    seq: number;
    applied: number;
  }[];
  db.close();
  return new Map(rows.map((r) => [hex(new Uint8Array(r.id)), { seq: r.seq, applied: r.applied === 1 }]));
}

/** What `l.txFate` answers for every id of `fates`, in their order. */
function fatesAt(l: SqliteLedger, fates: Map<string, unknown>): Map<string, unknown> {
  return new Map([...fates.keys()].map((k) => [k, l.txFate(k)]));
}

/** Rewrites a ledger file as schema 10 stored it: no table of transaction fates. */
function asSchema10(path: string): void {
  const db = new Database(path);
  db.exec('DROP TABLE txs');
  db.prepare('UPDATE meta SET schema_version = 10').run();
  db.close();
}

describe('transaction fates', () => {
  it('execute writes each transaction’s fate with its batch: the first batch that applied it, else the latest that carried it', () => {
    const plans = history(100, 60);
    const l = SqliteLedger.open(freshPath(), genesis, { snapshotEvery: 0 });
    const executions: Execution[] = [];
    for (const p of plans) {
      executions.push(...feed(l, [p]));
      // At once, from the file (the host reads it for an id it no longer holds in memory).
      for (const t of executions.at(-1)!.txs)
        expect(l.txFate(t.id)).toEqual(fatesOf(executions).get(hex(t.id)));
    }
    const fates = fatesOf(executions);
    // The history holds applied ones, ones without effect, and one applied and then carried again (a stale
    // model update is the same signed bytes as the one applied before it): that keeps its first answer.
    const carried = executions.flatMap((ex) => ex.txs.map((t) => ({ seq: ex.seq, ...t })));
    expect(carried.some((t) => t.applied)).toBe(true);
    expect([...fates.values()].some((f) => !f.applied)).toBe(true);
    const again = carried.filter((t) => !t.applied && fates.get(hex(t.id))?.applied);
    expect(again.length).toBeGreaterThan(0);
    for (const t of again) expect(fates.get(hex(t.id))!.seq).toBeLessThan(t.seq);
    expect(txRows(l.path)).toEqual(new Map([...fates].sort(([a], [b]) => (a < b ? -1 : 1))));
    expect(fatesAt(l, fates)).toEqual(fates);
    // An id no batch carried, and ones that are not ids.
    expect(l.txFate(new Uint8Array(32))).toBeNull();
    expect(l.txFate('zz')).toBeNull();
    expect(l.txFate(new Uint8Array(31))).toBeNull();
    // Batches without transactions write no row: only those that carried one.
    expect(new Set([...fates.values()].map((f) => f.seq)).size).toBeLessThan(plans.length);
    l.close();
  });

  it('survive close and reopen, from a snapshot and from the genesis; a replay fills rows the file lacks', () => {
    const plans = history(94, 50);
    const l = SqliteLedger.open(freshPath(), genesis, { snapshotEvery: 5 });
    const executions = feed(l, plans.slice(0, 45));
    const path = l.path;
    l.close();
    // The last five batches without snapshots: the latest is at most batch 45.
    const l2 = SqliteLedger.open(path, genesis, { snapshotEvery: 0 });
    executions.push(...feed(l2, plans.slice(45)));
    l2.close();
    const fates = fatesOf(executions);
    const snaps = snapshotSeqs(path);
    expect(snaps.length).toBeGreaterThan(0);
    const latest = snaps.at(-1)!;
    // Some transactions in batches after the latest snapshot, some before.
    expect([...fates.values()].some((f) => f.seq > latest)).toBe(true);
    expect([...fates.values()].some((f) => f.seq <= latest)).toBe(true);

    const reopened = SqliteLedger.open(path, genesis, { snapshotEvery: 5 });
    expect(fatesAt(reopened, fates)).toEqual(fates);
    reopened.close();

    // Rows of the batches after the snapshot gone (as a file upgraded from schema 10 lacks them): the replay
    // after the snapshot writes them back, the same.
    const db = new Database(path);
    db.prepare('DELETE FROM txs WHERE seq > ?').run(latest);
    db.close();
    SqliteLedger.open(path, genesis, { snapshotEvery: 5 }).close();
    expect(txRows(path).size).toBe(fates.size);
    const after = SqliteLedger.open(path, genesis, { snapshotEvery: 0 });
    expect(fatesAt(after, fates)).toEqual(fates);
    after.close();

    // Every row gone and no snapshot: the replay from the genesis writes them all back.
    const db2 = new Database(path);
    db2.exec('DELETE FROM txs; DELETE FROM snapshots');
    db2.close();
    const replayed = SqliteLedger.open(path, genesis, { snapshotEvery: 0 });
    expect(fatesAt(replayed, fates)).toEqual(fates);
    replayed.close();
    expect(txRows(path).size).toBe(fates.size);
    expect(verifyLedgerFile(path)).toMatchObject({ ok: true, batches: 50 });
  });

  it('upgrades a schema-10 file in place: the table is added, its snapshots go, and the first open fills in every fate', () => {
    const plans = history(93, 40);
    const l0 = SqliteLedger.open(freshPath(), genesis, { snapshotEvery: 5 });
    const executions = feed(l0, plans.slice(0, 30));
    const fates = fatesOf(executions);
    expect(fates.size).toBeGreaterThan(0);
    const path = l0.path;
    l0.close();
    expect(snapshotSeqs(path).length).toBeGreaterThan(0);
    asSchema10(path);
    expect(() => verifyLedgerFile(path)).toThrow(
      expect.objectContaining({
        code: 'LEDGER_SCHEMA_VERSION',
        message: `${path}: ledger schema 10; this build reads ${LEDGER_SCHEMA_VERSION} (a node opening the file upgrades it; verification only reads)`,
      }),
    );
    opensAsReplayed(path, plans, executions);
    // opensAsReplayed executed batch 31 on it too.
    const reference = SqliteLedger.open(':memory:', genesis, { snapshotEvery: 0 });
    const fatesAfter = fatesOf(feed(reference, plans.slice(0, 31)));
    reference.close();
    expect(txRows(path)).toEqual(new Map([...fatesAfter].sort(([a], [b]) => (a < b ? -1 : 1))));
    const again = SqliteLedger.open(path, genesis, { snapshotEvery: 5 });
    expect(fatesAt(again, fates)).toEqual(new Map([...fates.keys()].map((k) => [k, fatesAfter.get(k)])));
    again.close();
    expect(verifyLedgerFile(path)).toMatchObject({ ok: true, batches: 31 });
  });

  it('verify checks each fate against the replay: one changed, one missing (the next open writes it), one no batch carries', () => {
    const plans = history(100, 40);
    const { path, executions } = written(plans);
    const fates = fatesOf(executions);
    expect(verifyLedgerFile(path)).toMatchObject({ ok: true, batches: 40 });
    const [k, f] = [...fates].find(([, x]) => x.applied)!;
    const copy = (sql: string, ...params: unknown[]) => {
      const p = freshPath();
      copyFileSync(path, p);
      const db = new Database(p);
      expect(db.prepare(sql).run(...params).changes).toBe(1);
      db.close();
      return p;
    };
    const flipped = copy('UPDATE txs SET applied = 0 WHERE id = ?', Buffer.from(k, 'hex'));
    expect(verifyLedgerFile(flipped).problems).toEqual([
      `transaction ${k}: its stored fate (batch ${f.seq}, without effect) is not the replay's (batch ${f.seq}, applied)`,
    ]);
    const gone = copy('DELETE FROM txs WHERE id = ?', Buffer.from(k, 'hex'));
    expect(verifyLedgerFile(gone).problems).toEqual([
      `transactions without a stored fate (a node's next open writes them): ${k} (batch ${f.seq})`,
    ]);
    SqliteLedger.open(gone, genesis, { snapshotEvery: 0 }).close();
    expect(verifyLedgerFile(gone)).toMatchObject({ ok: true, problems: [] });
    const stray = 'ab'.repeat(32);
    const extra = copy('INSERT INTO txs (id, seq, applied) VALUES (?, 41, 1)', Buffer.from(stray, 'hex'));
    expect(verifyLedgerFile(extra).problems).toEqual([
      'transaction fates for batches not in the ledger: 41',
      `transaction ${stray}: a stored fate, but no batch carries it`,
    ]);
  });
});
