import { spawnSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir, uptime } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCertificates, verifyCertificate } from '../../src/certificate/index.ts';
import { ResolvedEntries as ResolvedEntriesCodec } from '../../src/ledger/codec.ts';
import {
  LEDGER_SCHEMA_VERSION,
  ledgerWriteFailure,
  type ReplayProgress,
  SourceRequests,
  SqliteLedger,
  StoredOutcomes,
  WAL_SIZE_LIMIT,
} from '../../src/ledger/sqlite.ts';
import type { Execution, ResolvedEntry } from '../../src/ledger/state.ts';
import { verifyLedgerFile } from '../../src/ledger/verify.ts';
import {
  type Batch,
  type BatchEntry,
  batchDigestOf,
  type CountedVote,
  DropbearError,
  decode,
  encode,
  Genesis,
  groupIdOf,
  hex,
  ModelUpdate,
  Outcome,
  PhaseBody,
  Receipt,
  type Request,
  receiptHashOf,
  requestIdOf,
  resultsDigestOf,
  SignedResults,
  sha256,
  signReceiptAs,
  signRequest,
  signResults,
  signTagged,
  TAGS,
  type Tx,
  toJson,
  uint,
  verifyRequestAuth,
} from '../../src/protocol/index.ts';
import { standInResult } from '../../src/sim/standin.ts';
import { EPOCH_MS, makeGroup } from '../../src/sim/world.ts';

// ---------------------------------------------------------------------------------------------------------
// Fixture: n = 4, f = 1, q = 3, real signed requests, stand-in results as votes, real SQLite files.

const group = makeGroup(4, 1, 7);
const { genesis, keys, client } = group;
const groupId = groupIdOf(genesis);
const q = 3;
const NEW_MODEL_3 = sha256(new TextEncoder().encode('stand-in-model-3 v1'));

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dropbear-ledger-'));
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

let nonce = 0;
function entry(timestamp: number, voters: number[], models?: Uint8Array[]): ResolvedEntry {
  const input = new TextEncoder().encode(`input ${nonce}`);
  const request: Request = {
    groupId,
    client: client.publicKey,
    nonce: nonce++,
    timestamp,
    inputDigest: sha256(input),
    policy: null,
    maxFee: 1_000,
  };
  const sr = signRequest(request, input, client);
  const votes: CountedVote[] = voters.map((node) => ({
    node,
    modelDigest: models?.[node] ?? genesis.nodes[node].modelDigest,
    result: standInResult(node, input, { disagreement: 0.2 }),
  }));
  return { requestId: requestIdOf(sr), request, votes };
}

function plan(seq: number, entries: ResolvedEntry[], txs: Tx[] = [], view = 0): Planned {
  const timestamp = EPOCH_MS + seq * 1000;
  const batchEntries: BatchEntry[] = entries.map((e, i) => ({
    requestId: e.requestId,
    votes: e.votes.map((v) => ({ node: v.node, results: sha256(new Uint8Array([v.node, i])), index: i })),
  }));
  const batch: Batch = { timestamp, entries: batchEntries, txs };
  return { seq, view, digest: batchDigestOf(batch), batch, entries };
}

function modelUpdateTx(): Tx {
  const update = { node: 3, version: 1, newDigest: NEW_MODEL_3 };
  const signature = signTagged(TAGS.modelUpdate, groupId, encode(ModelUpdate, update), keys[3]);
  return { kind: 'modelUpdate', update, signature };
}

/** Six batches: plain, with a requeued entry, a duplicate, a model update, a null batch, more after it. */
function makePlans(): Planned[] {
  const all = [0, 1, 2, 3];
  const t = (s: number) => EPOCH_MS + s * 1000 - 10;
  const e1 = Array.from({ length: 5 }, () => entry(t(1), all));
  const e2 = [entry(t(2), all), entry(t(2), [0, 1]), entry(t(2), [1, 2, 3])];
  const dup = e1[0];
  const e3 = [dup, entry(t(3), all)];
  const models = genesis.nodes.map((x) => x.modelDigest);
  models[3] = NEW_MODEL_3;
  // After the update, node 3's old-digest votes no longer count; the new digest does.
  const e4 = [entry(t(4), all), entry(t(4), all, models)];
  const e6 = Array.from({ length: 7 }, () => entry(t(6), all, models));
  return [
    plan(1, e1),
    plan(2, e2),
    plan(3, e3),
    plan(4, e4, [modelUpdateTx()]),
    {
      seq: 5,
      view: 1,
      digest: batchDigestOf({ timestamp: 0, entries: [], txs: [] }),
      batch: { timestamp: 0, entries: [], txs: [] },
      entries: [],
    },
    plan(6, e6, [], 1),
  ];
}
const plans = makePlans();

function signReceipt(receipt: Receipt, node: number) {
  return {
    node,
    signature: signTagged(TAGS.receipt, groupId, encode(Receipt, receipt), keys[node]),
    view: null,
  };
}

/** Executes every plan, adds q (batch 4: all n) receipt signatures; returns the executions. */
function fill(ledger: SqliteLedger, upTo = plans.length): Execution[] {
  const out: Execution[] = [];
  for (const p of plans.slice(0, upTo)) {
    const ex = ledger.execute(p.seq, p.view, p.digest, p.batch, p.entries);
    const signers = p.seq === 4 ? [3, 2, 1, 0] : [0, 1, 2];
    ledger.addReceiptSignatures(
      p.seq,
      signers.map((i) => signReceipt(ex.receipt, i)),
      ex.receiptHash,
    );
    out.push(ex);
  }
  return out;
}

let goodPath: string;
let executions: Execution[];
beforeAll(() => {
  goodPath = freshPath();
  const l = SqliteLedger.open(goodPath, genesis);
  executions = fill(l);
  l.saveCheckpoint(4, digestAfter(4), new Uint8Array([1, 2, 3]));
  l.close();
});

function digestAfter(seq: number): Uint8Array {
  const l = SqliteLedger.open(':memory:', genesis);
  fill(l, seq);
  const d = l.state.stateDigest();
  l.close();
  return d;
}

function copyOfGood(): string {
  const p = freshPath();
  copyFileSync(goodPath, p);
  return p;
}

function tamper(sql: string, ...params: unknown[]): string {
  const p = copyOfGood();
  const db = new Database(p);
  const r = db.prepare(sql).run(...params);
  expect(r.changes).toBeGreaterThan(0);
  db.close();
  return p;
}

/** Rewrites a ledger file as schema 10 stored it: no table of transaction fates. */
function asSchema10(p: string): string {
  const db = new Database(p);
  db.exec('DROP TABLE txs');
  db.prepare('UPDATE meta SET schema_version = 10').run();
  db.close();
  return p;
}

/** Rewrites a ledger file as schema 6 stored it: no state snapshots. */
function asSchema6(p: string): string {
  asSchema10(p);
  const db = new Database(p);
  db.exec('DROP TABLE snapshots');
  db.prepare('UPDATE meta SET schema_version = 6').run();
  db.close();
  return p;
}

/** Rewrites a ledger file as schema 5 stored it: no table of the node's own RESULTS. */
function asSchema5(p: string): string {
  asSchema6(p);
  const db = new Database(p);
  db.exec('DROP TABLE own_results');
  db.prepare('UPDATE meta SET schema_version = 5').run();
  db.close();
  return p;
}

/** Rewrites a ledger file as schema 3 stored it: receipt signatures without their kind (all plain). */
/** Rewrites a ledger file as schema 4 stored it: no prepared receipt signatures in a batch's proof. */
function asSchema4(p: string): string {
  asSchema5(p);
  const db = new Database(p);
  db.exec('ALTER TABLE batch_sources DROP COLUMN commit_receipt_sigs');
  db.prepare('UPDATE meta SET schema_version = 4').run();
  db.close();
  return p;
}

function asSchema3(p: string): string {
  asSchema4(p);
  const db = new Database(p);
  db.exec('ALTER TABLE receipt_sigs DROP COLUMN view');
  db.prepare('UPDATE meta SET schema_version = 3').run();
  db.close();
  return p;
}

/** Rewrites a ledger file as schema 2 stored it: one outcome row per request, keyed by request id. */
function asSchema2(p: string): string {
  asSchema3(p);
  const db = new Database(p);
  const rows = db.prepare('SELECT seq, outcomes FROM outcomes ORDER BY seq').all() as {
    seq: number;
    outcomes: Buffer;
  }[];
  db.exec(`DROP TABLE outcomes;
    CREATE TABLE outcomes (request_id BLOB PRIMARY KEY, seq INTEGER NOT NULL, leaf_index INTEGER NOT NULL,
      outcome BLOB NOT NULL);
    CREATE UNIQUE INDEX outcomes_by_seq ON outcomes (seq, leaf_index);`);
  const ins = db.prepare('INSERT INTO outcomes (request_id, seq, leaf_index, outcome) VALUES (?, ?, ?, ?)');
  for (const r of rows)
    decode(StoredOutcomes, new Uint8Array(r.outcomes)).forEach((bytes, i) => {
      ins.run(decode(Outcome, bytes).requestId, r.seq, i, bytes);
    });
  db.prepare('UPDATE meta SET schema_version = 2').run();
  db.close();
  return p;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as DropbearError).code;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------

/** Node 2's signed RESULTS for one stand-in request (n names it), as it stores its own. */
function ownSigned(n: number) {
  return signResults(
    groupId,
    {
      node: 2,
      modelDigest: genesis.nodes[2].modelDigest,
      entries: [
        {
          requestId: sha256(new Uint8Array([n])),
          result: standInResult(2, new Uint8Array([n]), { disagreement: 0 }),
        },
      ],
    },
    keys[2],
  );
}

describe('SqliteLedger', () => {
  it('the fixture exercises requeue, duplicates, model updates and a null batch', () => {
    expect(executions.map((e) => e.outcomes.length)).toEqual([5, 2, 1, 2, 0, 7]);
    expect(executions[1].requeued).toHaveLength(1);
    expect(executions[2].skipped.map((s) => s.reason)).toEqual(['duplicate']);
    // Batch 4: the entry voted with node 3's old digest counts 3 votes, the one with the new digest 4.
    expect(executions[3].outcomes.map((o) => o.votes.length)).toEqual([3, 4]);
  });

  it('restarts at the same seq and state digest, with the receipts chained', () => {
    const fresh = SqliteLedger.open(freshPath(), genesis);
    fill(fresh);
    const digest = fresh.state.stateDigest();
    const money = fresh.state.totalMoney();
    const path = fresh.path;
    fresh.close();

    const again = SqliteLedger.open(path, genesis);
    expect(again.created).toBe(false);
    expect(again.uncleanShutdown).toBe(false);
    expect(again.lastSeq).toBe(6);
    expect(hex(again.state.stateDigest())).toBe(hex(digest));
    expect(again.state.totalMoney()).toBe(money);
    expect(again.state.totalMoney()).toBe(1e12);
    expect(hex(again.state.lastReceipt)).toBe(hex(executions[5].receiptHash));
    expect(again.receipt(1)?.receipt.prevReceipt).toEqual(groupId);
    expect(again.receipt(2)?.receipt.prevReceipt).toEqual(executions[0].receiptHash);
    // It carries on from there.
    const next = plan(7, [entry(EPOCH_MS + 7000 - 10, [0, 1, 2, 3])], [], 1);
    const ex = again.execute(next.seq, next.view, next.digest, next.batch, next.entries);
    expect(ex.receipt.prevReceipt).toEqual(executions[5].receiptHash);
    expect(again.batch(7)?.entries).toEqual(next.entries);
    again.close();
  });

  it('reports the progress of a replay when asked: batches in order up to the highest, requests counted, then done', () => {
    const fresh = SqliteLedger.open(freshPath(), genesis);
    const written = fill(fresh);
    const path = fresh.path;
    fresh.close();
    const requests = written.reduce((n, ex) => n + ex.outcomes.length, 0);
    expect(requests).toBeGreaterThan(0);

    const seen: ReplayProgress[] = [];
    const again = SqliteLedger.open(path, genesis, {
      replayProgressMs: 0,
      onReplayProgress: (p) => seen.push(p),
    });
    expect(seen.map((p) => p.batches)).toEqual([1, 2, 3, 4, 5, 6, 6]);
    expect(seen.every((p) => p.total === 6)).toBe(true);
    expect(seen.map((p) => p.done)).toEqual([false, false, false, false, false, false, true]);
    expect(seen.at(-1)?.requests).toBe(requests);
    for (let i = 1; i < seen.length; i++)
      expect(seen[i].elapsedMs).toBeGreaterThanOrEqual(seen[i - 1].elapsedMs);
    again.close();

    // A replay shorter than the interval says nothing; a bad interval is refused.
    const quiet: ReplayProgress[] = [];
    SqliteLedger.open(path, genesis, {
      replayProgressMs: 60_000,
      onReplayProgress: (p) => quiet.push(p),
    }).close();
    expect(quiet).toEqual([]);
    expect(codeOf(() => SqliteLedger.open(path, genesis, { replayProgressMs: -1 }))).toBe(
      'LEDGER_BAD_OPTION',
    );
    // A fresh file has nothing to replay.
    const none: ReplayProgress[] = [];
    SqliteLedger.open(freshPath(), genesis, {
      replayProgressMs: 0,
      onReplayProgress: (p) => none.push(p),
    }).close();
    expect(none).toEqual([
      { batches: 0, total: 0, requests: 0, elapsedMs: expect.any(Number), done: true, snapshot: 0 },
    ]);
  });

  it('serves certificates after a restart that verify and equal buildCertificates', () => {
    const l = SqliteLedger.open(goodPath, genesis);
    let checked = 0;
    for (const ex of executions) {
      const sigs = l.receiptSignatures(ex.seq);
      const expected =
        ex.outcomes.length > 0 ? buildCertificates(ex.outcomes, ex.tree, ex.receipt, sigs, q) : [];
      ex.outcomes.forEach((o, i) => {
        const c = l.certificate(o.requestId);
        expect(c).not.toBeNull();
        expect(verifyCertificate(c, genesis)).toMatchObject({ ok: true });
        expect(c).toEqual(expected[i]);
        expect(l.certificate(hex(o.requestId))).toEqual(c);
        checked++;
      });
    }
    expect(checked).toBe(17);
    // Batch 4 has all four signatures; its certificates carry exactly q, the lowest node ids.
    const c4 = l.certificate(executions[3].outcomes[0].requestId)!;
    expect(c4.signatures.map((s) => s.node)).toEqual([0, 1, 2]);
    // Unknown, requeued and skipped requests have none.
    expect(l.certificate(new Uint8Array(32))).toBeNull();
    expect(l.certificate('zz')).toBeNull();
    expect(l.certificate(executions[1].requeued[0])).toBeNull();
    // An id with the same index key (first 30 bits) as a certified request is looked up in that request's
    // batch and not found there: no certificate, not the other request's.
    const twin = new Uint8Array(executions[3].outcomes[0].requestId);
    twin[31] ^= 1;
    expect(l.certificate(twin)).toBeNull();
    l.close();
  });

  /**
   * Opens an older file (which `ledger verify` reports as such) and checks it now serves the same
   * certificates as the good one; returns it open, for checks of its own.
   */
  function openUpgraded(p: string, version: number): SqliteLedger {
    expect(() => verifyLedgerFile(p)).toThrow(
      new RegExp(`ledger schema ${version}; this build reads ${LEDGER_SCHEMA_VERSION} \\(a node`),
    );
    const l = SqliteLedger.open(p, genesis);
    const good = SqliteLedger.open(goodPath, genesis);
    for (const ex of executions)
      for (const o of ex.outcomes) expect(l.certificate(o.requestId)).toEqual(good.certificate(o.requestId));
    good.close();
    return l;
  }

  it('upgrades a schema-4 file (batch proofs without receipt signatures) in place when it opens it', () => {
    const p = asSchema4(copyOfGood());
    openUpgraded(p, 4).close();
    expect(verifyLedgerFile(p)).toMatchObject({ ok: true, batches: 6 });
    const db = new Database(p, { readonly: true });
    expect(db.prepare('SELECT schema_version FROM meta').pluck().get()).toBe(LEDGER_SCHEMA_VERSION);
    expect(
      db.prepare('SELECT count(*) FROM batch_sources WHERE commit_receipt_sigs IS NOT NULL').pluck().get(),
    ).toBe(0);
    db.close();
  });

  it('upgrades a schema-8 file in place: the version alone (its NEW-VIEW records have no message)', () => {
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis);
    l.persist({ kind: 'viewChange', view: 1 });
    l.persist({ kind: 'newView', view: 1 });
    const before = l.signedLog();
    l.close();
    asSchema10(path);
    const db = new Database(path);
    db.prepare('UPDATE meta SET schema_version = 8').run();
    db.close();
    expect(() => verifyLedgerFile(path)).toThrow(
      new RegExp(`ledger schema 8; this build reads ${LEDGER_SCHEMA_VERSION} \\(a node`),
    );
    const again = SqliteLedger.open(path, genesis);
    expect(again.signedLog()).toEqual(before);
    again.close();
    const check = new Database(path, { readonly: true });
    expect(check.prepare('SELECT schema_version FROM meta').pluck().get()).toBe(LEDGER_SCHEMA_VERSION);
    check.close();
  });

  it('upgrades a schema-7 file (whole signed log, checkpoint records without a view) in place: the version alone, and the log is pruned at its next stable checkpoint', () => {
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis);
    const d = sha256(new Uint8Array([2]));
    for (let seq = 1; seq <= 6; seq++) {
      l.persist({ kind: 'prepare', view: 1, seq, digest: d });
      l.persist({ kind: 'commit', view: 1, seq, digest: d, body: new Uint8Array([seq]) });
    }
    const before = l.signedLog();
    l.close();
    asSchema10(path);
    const db = new Database(path);
    db.prepare('UPDATE meta SET schema_version = 7').run();
    db.close();
    expect(() => verifyLedgerFile(path)).toThrow(
      new RegExp(`ledger schema 7; this build reads ${LEDGER_SCHEMA_VERSION} \\(a node`),
    );
    const again = SqliteLedger.open(path, genesis);
    // The log as it was (the restore reads it as the earlier release did), then pruned with a stable checkpoint.
    expect(again.signedLog()).toEqual(before);
    again.persist({ kind: 'checkpoint', view: 1, seq: 4, digest: d, body: new Uint8Array([9]) });
    expect(again.signedLog().map((r) => `${r.kind}:${r.seq}`)).toEqual([
      'prepare:5',
      'commit:5',
      'prepare:6',
      'commit:6',
      'checkpoint:4',
    ]);
    again.close();
    const check = new Database(path, { readonly: true });
    expect(check.prepare('SELECT schema_version FROM meta').pluck().get()).toBe(LEDGER_SCHEMA_VERSION);
    check.close();
  });

  it('upgrades a schema-5 file (no own RESULTS kept) in place when it opens it', () => {
    const p = asSchema5(copyOfGood());
    const l = openUpgraded(p, 5);
    expect(l.ownResults()).toEqual([]);
    l.close();
    expect(verifyLedgerFile(p)).toMatchObject({ ok: true, batches: 6 });
    const db = new Database(p, { readonly: true });
    expect(db.prepare('SELECT schema_version FROM meta').pluck().get()).toBe(LEDGER_SCHEMA_VERSION);
    expect(db.prepare('SELECT count(*) FROM own_results').pluck().get()).toBe(0);
    db.close();
  });

  it('serves a batch committed by prepared receipt signatures with them as its proof, before it is certified', () => {
    const p = plans[0];
    // The receipt the batch executes to, from a ledger of its own (execution is deterministic).
    const twin = SqliteLedger.open(':memory:', genesis);
    const receipt = twin.execute(p.seq, p.view, p.digest, p.batch, p.entries).receipt;
    twin.close();
    const rh = receiptHashOf(receipt);
    const prepared = (node: number, view = 0) => ({
      node,
      signature: signReceiptAs(groupId, receipt, rh, view, keys[node]),
      view,
    });
    const commit = (node: number) => ({
      node,
      signature: signTagged(
        TAGS.commit,
        groupId,
        encode(PhaseBody, { from: node, view: 0, seq: 1, digest: p.digest }),
        keys[node],
      ),
    });
    const served = (proof: {
      sigs: ReturnType<typeof commit>[];
      receiptSigs: ReturnType<typeof prepared>[];
      receiptHash: Uint8Array;
    }) => {
      const l = SqliteLedger.open(freshPath(), genesis);
      l.execute(p.seq, p.view, p.digest, p.batch, p.entries, {
        requests: [],
        results: [],
        commitProof: { view: 0, ...proof },
      });
      const sb = l.stateBatch(1);
      l.close();
      return (
        sb && {
          commits: sb.commitSigs.map((x) => x.node),
          receipt: sb.receiptSigs.map((x) => [x.node, x.view]),
        }
      );
    };
    // Node 0's COMMIT and two prepared receipt signatures of view 0: three signers, q.
    expect(served({ sigs: [commit(0)], receiptSigs: [prepared(1), prepared(2)], receiptHash: rh })).toEqual({
      commits: [0],
      receipt: [
        [1, 0],
        [2, 0],
      ],
    });
    // Two signers only; prepared in another view than the COMMITs; over another receipt: no proof yet.
    expect(served({ sigs: [commit(0)], receiptSigs: [prepared(1)], receiptHash: rh })).toBeNull();
    expect(
      served({ sigs: [commit(0)], receiptSigs: [prepared(1, 1), prepared(2, 1)], receiptHash: rh }),
    ).toBeNull();
    expect(
      served({ sigs: [commit(0)], receiptSigs: [prepared(1), prepared(2)], receiptHash: new Uint8Array(32) }),
    ).toBeNull();
  });

  it('upgrades a schema-3 file (receipt signatures without their kind) in place when it opens it', () => {
    const p = asSchema3(copyOfGood());
    const l = openUpgraded(p, 3);
    expect(l.receiptSignatures(1).map((x) => x.view)).toEqual([null, null, null]);
    l.close();
    expect(verifyLedgerFile(p)).toMatchObject({ ok: true, batches: 6 });
  });

  it('upgrades a schema-2 file (one outcome row per request) in place when it opens it', () => {
    const p = asSchema2(copyOfGood());
    expect(() => verifyLedgerFile(p)).toThrow(
      new RegExp(`ledger schema 2; this build reads ${LEDGER_SCHEMA_VERSION} \\(a node`),
    );
    const l = SqliteLedger.open(p, genesis);
    const good = SqliteLedger.open(goodPath, genesis);
    let checked = 0;
    for (const ex of executions)
      for (const o of ex.outcomes) {
        expect(l.certificate(o.requestId)).toEqual(good.certificate(o.requestId));
        checked++;
      }
    expect(checked).toBe(17);
    good.close();
    l.close();
    expect(verifyLedgerFile(p)).toMatchObject({ ok: true, batches: 6 });
    // Leaf indices with a gap: the upgrade is refused and the file stays at version 2.
    const bad = asSchema2(copyOfGood());
    const db = new Database(bad);
    db.prepare('DELETE FROM outcomes WHERE seq = 1 AND leaf_index = 1').run();
    db.close();
    expect(codeOf(() => SqliteLedger.open(bad, genesis))).toBe('LEDGER_CORRUPT');
    const again = new Database(bad, { readonly: true });
    expect(again.prepare('SELECT schema_version FROM meta').pluck().get()).toBe(2);
    again.close();
  });

  it('verify names the quorum it counts: q, which is not 2f+1 when n > 3f+1 (n = 5, f = 1: q = 4)', () => {
    const g5 = makeGroup(5, 1, 7);
    const path = freshPath();
    const l = SqliteLedger.open(path, g5.genesis);
    const empty: Batch = { timestamp: 0, entries: [], txs: [] };
    const ex = l.execute(1, 0, batchDigestOf(empty), empty, []);
    const gid = groupIdOf(g5.genesis);
    const rh = receiptHashOf(ex.receipt);
    l.addReceiptSignatures(
      1,
      [0, 1, 2].map((node) => ({
        node,
        signature: signReceiptAs(gid, ex.receipt, rh, null, g5.keys[node]),
        view: null,
      })),
    );
    l.close();
    expect(verifyLedgerFile(path).problems).toEqual([
      'batch 1: 3 valid receipt signatures < 4 (q = ⌊(n+f)/2⌋+1)',
    ]);
  });

  it('stores each signature with its kind; serves a certificate only from q plain or prepared in one view', () => {
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis);
    const p = plans[0];
    const ex = l.execute(p.seq, p.view, p.digest, p.batch, p.entries);
    const id = ex.outcomes[0].requestId;
    const rh = receiptHashOf(ex.receipt);
    const prepared = (node: number, view: number) => ({
      node,
      signature: signReceiptAs(groupId, ex.receipt, rh, view, keys[node]),
      view,
    });
    // A prepared signature claimed for another view than it was signed for is refused, nothing stored.
    expect(codeOf(() => l.addReceiptSignatures(1, [{ ...prepared(0, 0), view: 1 }]))).toBe(
      'LEDGER_BAD_SIGNATURE',
    );
    // Three valid signatures, prepared in three views: no quorum, no certificate, and `ledger verify` says so.
    expect(l.addReceiptSignatures(1, [prepared(0, 0), prepared(1, 1), prepared(2, 2)])).toBe(3);
    expect(l.receiptSignatures(1).map((x) => x.view)).toEqual([0, 1, 2]);
    expect(l.certificate(id)).toBeNull();
    l.close();
    expect(verifyLedgerFile(path).problems).toEqual([
      'batch 1: 3 valid receipt signatures, no 3 (2f+1) of them plain or prepared in one view',
    ]);
    // A fourth, plain: still one plain and one of each view, no three of one kind.
    const again = SqliteLedger.open(path, genesis);
    expect(again.addReceiptSignatures(1, [signReceipt(ex.receipt, 3)])).toBe(4);
    expect(again.certificate(id)).toBeNull();
    // Node 0's plain signature replaces its prepared one (another prepared one would not): two plain
    // ones make a quorum with either view's, the highest first.
    again.addReceiptSignatures(1, [prepared(1, 5)]);
    expect(again.receiptSignatures(1).map((x) => x.view)).toEqual([0, 1, 2, null]);
    again.addReceiptSignatures(1, [signReceipt(ex.receipt, 0)]);
    expect(again.receiptSignatures(1).map((x) => x.view)).toEqual([null, 1, 2, null]);
    const cert = again.certificate(id)!;
    expect(cert.signatures.map((x) => [x.node, x.view])).toEqual([
      [0, null],
      [2, 2],
      [3, null],
    ]);
    expect(verifyCertificate(cert, genesis)).toMatchObject({ ok: true });
    again.close();
    expect(verifyLedgerFile(path)).toMatchObject({ ok: true });
  });

  it('serves no certificate while a batch has fewer than q receipt signatures', () => {
    const l = SqliteLedger.open(freshPath(), genesis);
    const p = plans[0];
    const ex = l.execute(p.seq, p.view, p.digest, p.batch, p.entries);
    const id = ex.outcomes[0].requestId;
    expect(l.addReceiptSignatures(1, [signReceipt(ex.receipt, 1), signReceipt(ex.receipt, 1)])).toBe(1);
    expect(l.certificate(id)).toBeNull();
    expect(l.addReceiptSignatures(1, [signReceipt(ex.receipt, 3), signReceipt(ex.receipt, 0)])).toBe(3);
    expect(verifyCertificate(l.certificate(id), genesis)).toMatchObject({ ok: true });
    l.close();
  });

  it('keeps the signed requests of a batch for state transfer, without their inputs', () => {
    const l = SqliteLedger.open(freshPath(), genesis);
    const p = plans[0];
    const signed = p.entries.map((e, i) =>
      signRequest(e.request, new TextEncoder().encode(`input ${i} `.repeat(1000)), client),
    );
    const ex = l.execute(p.seq, p.view, p.digest, p.batch, p.entries, {
      requests: signed,
      results: [],
      commitProof: null,
    });
    l.addReceiptSignatures(
      1,
      [0, 1, 2].map((n) => signReceipt(ex.receipt, n)),
    );
    const sb = l.stateBatch(1);
    expect(sb?.requests).toHaveLength(signed.length);
    sb?.requests.forEach((sr, i) => {
      expect(sr.input).toHaveLength(0);
      expect(sr.request).toEqual(signed[i].request);
      expect(sr.auth).toEqual(signed[i].auth);
      // the client's signature still verifies: it covers the input's digest, not its bytes
      expect(verifyRequestAuth(sr)).toBe(true);
    });
    expect(signed[0].input.length).toBeGreaterThan(1000); // the caller's requests are left as they were
    l.close();
  });

  it('serves the requests of a ledger written before inputs were dropped without their inputs', () => {
    // Until 2026-11-29 batch_sources kept each request's input: a batch of many images served from such a
    // ledger was over a frame, and the node catching up needs none of them.
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis);
    const p = plans[0];
    const signed = p.entries.map((e, i) =>
      signRequest(e.request, new TextEncoder().encode(`input ${i} `.repeat(1000)), client),
    );
    const ex = l.execute(p.seq, p.view, p.digest, p.batch, p.entries, {
      requests: signed,
      results: [],
      commitProof: null,
    });
    l.addReceiptSignatures(
      1,
      [0, 1, 2].map((n) => signReceipt(ex.receipt, n)),
    );
    l.close();
    const db = new Database(path);
    db.prepare('UPDATE batch_sources SET requests = ? WHERE seq = 1').run(encode(SourceRequests, signed));
    db.close();
    const old = SqliteLedger.open(path, genesis);
    const sb = old.stateBatch(1);
    expect(sb?.requests.map((sr) => sr.input.length)).toEqual(signed.map(() => 0));
    expect(sb?.requests.map((sr) => sr.request)).toEqual(signed.map((sr) => sr.request));
    expect(sb?.requests.every((sr) => verifyRequestAuth(sr))).toBe(true);
    old.close();
  });

  it('refuses bad receipt signatures, storing none of the call', () => {
    const l = SqliteLedger.open(freshPath(), genesis);
    const p = plans[0];
    const ex = l.execute(p.seq, p.view, p.digest, p.batch, p.entries);
    const good = signReceipt(ex.receipt, 0);
    const forged = { node: 1, signature: signReceipt(ex.receipt, 2).signature, view: null };
    expect(codeOf(() => l.addReceiptSignatures(1, [good, forged]))).toBe('LEDGER_BAD_SIGNATURE');
    expect(
      codeOf(() => l.addReceiptSignatures(1, [{ node: 9, signature: good.signature, view: null }])),
    ).toBe('LEDGER_BAD_SIGNATURE');
    expect(codeOf(() => l.addReceiptSignatures(2, [good]))).toBe('LEDGER_UNKNOWN_SEQ');
    expect(codeOf(() => l.addReceiptSignatures(1, [good], new Uint8Array(32)))).toBe(
      'LEDGER_RECEIPT_MISMATCH',
    );
    expect(l.receiptSignatures(1)).toEqual([]);
    l.close();
  });

  it('refuses a file of another group', () => {
    const other = makeGroup(4, 1, 8).genesis;
    let err: unknown;
    try {
      SqliteLedger.open(goodPath, other);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DropbearError);
    expect((err as DropbearError).code).toBe('LEDGER_WRONG_GROUP');
    // The refused open changed nothing.
    expect(verifyLedgerFile(goodPath).ok).toBe(true);
    // Nor does it upgrade an older file of that other group before refusing it (it did: the file then
    // read as schema 9, which the build that wrote it refuses).
    const old = freshPath();
    copyFileSync(goodPath, old);
    asSchema10(old);
    const db = new Database(old);
    db.prepare('UPDATE meta SET schema_version = 8').run();
    db.close();
    expect(codeOf(() => SqliteLedger.open(old, other))).toBe('LEDGER_WRONG_GROUP');
    const check = new Database(old, { readonly: true });
    expect(check.prepare('SELECT schema_version FROM meta').pluck().get()).toBe(8);
    check.close();
  });

  it('refuses a SQLite file that is not a ledger, and a file that is not SQLite', () => {
    const p = freshPath();
    const db = new Database(p);
    db.exec('CREATE TABLE something (x)');
    db.close();
    expect(codeOf(() => SqliteLedger.open(p, genesis))).toBe('LEDGER_NOT_A_LEDGER');
    const junk = freshPath();
    writeFileSync(junk, 'this is not a database, not at all, not even close to one........');
    expect(codeOf(() => SqliteLedger.open(junk, genesis))).toBe('LEDGER_UNREADABLE');
  });

  it('executes strictly in order and refuses a batch that does not match its digest or entries', () => {
    const l = SqliteLedger.open(freshPath(), genesis);
    const [p1, p2, p3] = plans;
    expect(codeOf(() => l.execute(2, 0, p2.digest, p2.batch, p2.entries))).toBe('LEDGER_OUT_OF_ORDER');
    l.execute(p1.seq, p1.view, p1.digest, p1.batch, p1.entries);
    expect(codeOf(() => l.execute(1, 0, p1.digest, p1.batch, p1.entries))).toBe('LEDGER_OUT_OF_ORDER');
    expect(codeOf(() => l.execute(3, 0, p3.digest, p3.batch, p3.entries))).toBe('LEDGER_OUT_OF_ORDER');
    expect(codeOf(() => l.execute(2, 0, p3.digest, p2.batch, p2.entries))).toBe('LEDGER_BAD_DIGEST');
    expect(codeOf(() => l.execute(2, 0, p2.digest, p2.batch, p3.entries))).toBe('LEDGER_ENTRIES_MISMATCH');
    const wrongVotes = p2.entries.map((e, i) => (i === 0 ? { ...e, votes: e.votes.slice(1) } : e));
    expect(codeOf(() => l.execute(2, 0, p2.digest, p2.batch, wrongVotes))).toBe('LEDGER_ENTRIES_MISMATCH');
    expect(l.lastSeq).toBe(1);
    const before = hex(l.state.stateDigest());
    l.close();
    const again = SqliteLedger.open(l.path, genesis);
    expect(again.lastSeq).toBe(1);
    expect(hex(again.state.stateDigest())).toBe(before);
    again.execute(p2.seq, p2.view, p2.digest, p2.batch, p2.entries);
    expect(again.lastSeq).toBe(2);
    again.close();
  });

  it('rolls back a batch whose write fails and rebuilds the state to match the file', () => {
    const path = freshPath();
    const replays: ReplayProgress[] = [];
    const l = SqliteLedger.open(path, genesis, {
      replayProgressMs: 0,
      onReplayProgress: (p) => {
        if (p.done) replays.push(p);
      },
    });
    fill(l, 1);
    const before = hex(l.state.stateDigest());
    // Another connection plants a row that collides with the outcomes of batch 2.
    const db = new Database(path);
    db.prepare('INSERT INTO outcomes (seq, outcomes) VALUES (2, ?)').run(new Uint8Array([0]));
    db.close();
    const p2 = plans[1];
    replays.length = 0;
    expect(codeOf(() => l.execute(2, 0, p2.digest, p2.batch, p2.entries))).toBe('LEDGER_DUPLICATE');
    // Rebuilt when next read, not in the failing call (a node stops after a failed write: on a long ledger
    // the replay held up its report of the failure for minutes).
    expect(replays).toHaveLength(0);
    expect(l.lastSeq).toBe(1);
    expect(replays).toHaveLength(1);
    expect(replays[0].batches).toBe(1);
    expect(hex(l.state.stateDigest())).toBe(before);
    expect(l.batch(2)).toBeNull();
    expect(l.receipt(2)).toBeNull();
    // The in-memory request index did not keep the failed batch's requests: once the row is gone the
    // batch executes again and its certificates are cut from what was written this time.
    const db2 = new Database(path);
    db2.prepare('DELETE FROM outcomes WHERE seq = 2').run();
    db2.close();
    const ex = l.execute(2, 0, p2.digest, p2.batch, p2.entries);
    l.addReceiptSignatures(
      2,
      [0, 1, 2].map((node) => signReceipt(ex.receipt, node)),
    );
    const c = l.certificate(ex.outcomes[0].requestId);
    expect(verifyCertificate(c, genesis)).toMatchObject({ ok: true });
    expect(c?.leafIndex).toBe(0);
    l.close();
  });

  it('names a full or failing disk (LEDGER_DISK_FULL, LEDGER_IO_ERROR); a group whose write failed is dropped whole, and abort() closes without a clean mark', () => {
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis);
    fill(l, 2);
    const digest = hex(l.state.stateDigest());
    // The file may not grow by one more page: SQLite's own SQLITE_FULL, as on a full disk.
    const sqlite = (l as unknown as { db: Database.Database }).db;
    sqlite.pragma(`max_page_count = ${sqlite.pragma('page_count', { simple: true })}`);
    l.beginGroup();
    l.persist({ kind: 'prepare', view: 0, seq: 3, digest: plans[2].digest });
    let thrown: unknown;
    try {
      // A record larger than the free room in the file's pages.
      l.persist({ kind: 'viewChange', view: 1, body: new Uint8Array(256 * 1024) });
      l.commitGroupUnsynced();
    } catch (e) {
      thrown = e;
    }
    expect((thrown as { code?: string }).code).toBe('SQLITE_FULL');
    const named = ledgerWriteFailure(path, thrown);
    expect(named?.code).toBe('LEDGER_DISK_FULL');
    expect(named?.message).toContain(path);
    expect(l.lastSeq).toBe(2);
    expect(hex(l.state.stateDigest())).toBe(digest);
    l.abandonGroup();
    expect(l.inGroup).toBe(false);
    l.abort();
    l.abort(); // idempotent
    const again = SqliteLedger.open(path, genesis);
    expect(again.uncleanShutdown).toBe(true);
    expect(again.lastSeq).toBe(2);
    // Nothing of the dropped group: not the PREPARE record written before the failing execution.
    expect(again.signedLog().filter((r) => r.kind === 'prepare' && r.seq === 3)).toEqual([]);
    again.close();

    const coded = (code: string) => Object.assign(new Error(`${code}: test`), { code });
    expect(ledgerWriteFailure(path, coded('ENOSPC'))?.code).toBe('LEDGER_DISK_FULL');
    expect(ledgerWriteFailure(path, coded('EDQUOT'))?.code).toBe('LEDGER_DISK_FULL');
    expect(ledgerWriteFailure(path, coded('SQLITE_IOERR_WRITE'))?.code).toBe('LEDGER_IO_ERROR');
    expect(ledgerWriteFailure(path, coded('EIO'))?.code).toBe('LEDGER_IO_ERROR');
    expect(ledgerWriteFailure(path, coded('SQLITE_CONSTRAINT'))).toBeNull();
    expect(ledgerWriteFailure(path, new DropbearError('LEDGER_CLOSED', 'x'))).toBeNull();
    expect(ledgerWriteFailure(path, 'not an error')).toBeNull();
  });

  it('can be verified while a node has it open', () => {
    const l = SqliteLedger.open(freshPath(), genesis, { synchronous: 'NORMAL' });
    fill(l);
    expect(verifyLedgerFile(l.path)).toEqual({ ok: true, batches: 6, ownResults: 0, problems: [] });
    l.close();
  });

  it('keeps persisted records across a restart, in order', () => {
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis, { synchronous: 'NORMAL' });
    const d = sha256(new Uint8Array([1]));
    const records = [
      { kind: 'prePrepare', view: 0, seq: 1, digest: d },
      { kind: 'prepare', view: 0, seq: 1, digest: d },
      { kind: 'commit', view: 0, seq: 1, digest: d },
      { kind: 'executed', seq: 1 },
      { kind: 'viewChange', view: 1 },
      { kind: 'newView', view: 1 },
      { kind: 'prepare', view: 1, seq: 2, digest: d },
    ];
    for (const r of records) l.persist(r);
    expect(codeOf(() => l.persist({ kind: 'prepare', view: -1 }))).toBe('LEDGER_BAD_VALUE');
    l.close();
    const again = SqliteLedger.open(path, genesis);
    expect(again.signedLog()).toEqual(records);
    expect(again.pruneSignedLog(1)).toBe(4);
    expect(again.signedLog()).toEqual(records.slice(4));
    again.close();
  });

  it('a stable checkpoint record drops the records of the seqs up to it, in every durability; an unstable one drops none', () => {
    for (const durability of ['full', 'prepared', 'relaxed'] as const) {
      const l = SqliteLedger.open(freshPath(), genesis, { durability });
      const d = sha256(new Uint8Array([2]));
      for (let seq = 1; seq <= 6; seq++) {
        l.persist({ kind: 'prepare', view: 1, seq, digest: d });
        l.persist({ kind: 'commit', view: 1, seq, digest: d, body: new Uint8Array([seq]) });
      }
      l.persist({ kind: 'viewChange', view: 2 });
      l.persist({ kind: 'checkpoint', seq: 2, digest: d }); // own vote, not stable: nothing goes
      expect(l.signedLog()).toHaveLength(14);
      const cp4 = { kind: 'checkpoint', view: 2, seq: 4, digest: d, body: new Uint8Array([9]) };
      l.persist(cp4);
      expect(l.signedLog().map((r) => `${r.kind}:${r.seq ?? '-'}`)).toEqual([
        'prepare:5',
        'commit:5',
        'prepare:6',
        'commit:6',
        'viewChange:-',
        'checkpoint:4',
      ]);
      l.persist({ kind: 'checkpoint', view: 2, seq: 6, digest: d, body: new Uint8Array([9]) });
      expect(
        l.signedLog().map((r) => `${r.kind}:${r.seq ?? '-'}`),
        durability,
      ).toEqual(['viewChange:-', 'checkpoint:6']);
      l.close();
    }
  });

  it('a NEW-VIEW record keeps its message only while it is the latest; older ones keep their view', () => {
    const l = SqliteLedger.open(freshPath(), genesis);
    l.persist({ kind: 'newView', view: 1, body: new Uint8Array([1]) });
    l.persist({ kind: 'viewChange', view: 2 });
    l.persist({ kind: 'newView', view: 2, body: new Uint8Array([2]) });
    expect(l.signedLog()).toEqual([
      { kind: 'newView', view: 1 },
      { kind: 'viewChange', view: 2 },
      { kind: 'newView', view: 2, body: new Uint8Array([2]) },
    ]);
    // One without a message (as written before 2026-12-06) drops nothing.
    l.persist({ kind: 'newView', view: 3 });
    expect(l.signedLog().filter((r) => r.body !== undefined)).toEqual([
      { kind: 'newView', view: 2, body: new Uint8Array([2]) },
    ]);
    l.close();
  });

  it('a stable checkpoint record and the pruning it does are one transaction: a failed delete leaves neither, in every durability', () => {
    for (const durability of ['full', 'prepared', 'relaxed'] as const) {
      const l = SqliteLedger.open(freshPath(), genesis, { durability });
      const d = sha256(new Uint8Array([2]));
      for (let seq = 1; seq <= 6; seq++) l.persist({ kind: 'prepare', view: 1, seq, digest: d });
      const before = l.signedLog();
      // biome-ignore lint/suspicious/noExplicitAny: the prepared statement, made to fail
      const st = (l as any).st;
      const prune = st.pruneLog;
      st.pruneLog = {
        run: () => {
          throw new Error('injected: the delete fails');
        },
      };
      expect(() =>
        l.persist({ kind: 'checkpoint', view: 1, seq: 4, digest: d, body: new Uint8Array([9]) }),
      ).toThrow(/injected/);
      expect(l.signedLog(), durability).toEqual(before);
      st.pruneLog = prune;
      l.persist({ kind: 'checkpoint', view: 1, seq: 4, digest: d, body: new Uint8Array([9]) });
      expect(
        l.signedLog().map((r) => `${r.kind}:${r.seq}`),
        durability,
      ).toEqual(['prepare:5', 'prepare:6', 'checkpoint:4']);
      l.close();
    }
  });

  it('the WAL file is cut back to WAL_SIZE_LIMIT after a transaction larger than that', () => {
    const l = SqliteLedger.open(freshPath(), genesis);
    const d = sha256(new Uint8Array([3]));
    // One record as large as a big snapshot or the first pruning of an old log, then ordinary writes.
    l.persist({ kind: 'viewChange', view: 1, body: new Uint8Array(WAL_SIZE_LIMIT + (16 << 20)).fill(7) });
    const wal = `${l.path}-wal`;
    expect(statSync(wal).size).toBeGreaterThan(WAL_SIZE_LIMIT);
    for (let seq = 1; seq <= 50; seq++) l.persist({ kind: 'prepare', view: 1, seq, digest: d });
    // SQLite's automatic checkpoint ran after the large commit; the WAL restarted and was truncated.
    expect(statSync(wal).size).toBeLessThanOrEqual(WAL_SIZE_LIMIT);
    l.close();
  });

  it('group commit: writes between beginGroup and commitGroup land together, or not at all', () => {
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis);
    const d = sha256(new Uint8Array([2]));
    l.beginGroup();
    expect(l.inGroup).toBe(true);
    l.persist({ kind: 'prepare', view: 0, seq: 1, digest: d });
    fill(l, 2);
    // A write that fails inside the group rolls back alone; the group goes on.
    const p3 = plans[2];
    expect(codeOf(() => l.execute(3, 0, sha256(new Uint8Array([9])), p3.batch, p3.entries))).toBe(
      'LEDGER_BAD_DIGEST',
    );
    l.persist({ kind: 'commit', view: 0, seq: 1, digest: d });
    // Not committed yet: another session (as after a crash now) sees none of it.
    const other = new Database(path, { readonly: true });
    const count = (t: string) => (other.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n;
    expect(count('batches')).toBe(0);
    expect(count('consensus_log')).toBe(0);
    expect(count('receipt_sigs')).toBe(0);
    l.commitGroup();
    expect(l.inGroup).toBe(false);
    expect(count('batches')).toBe(2);
    expect(count('consensus_log')).toBe(2);
    expect(count('receipt_sigs')).toBe(6);
    other.close();
    // A group left open is committed by close().
    l.beginGroup();
    const p3b = plans[2];
    const ex3 = l.execute(p3b.seq, p3b.view, p3b.digest, p3b.batch, p3b.entries);
    expect(ex3.receipt.seq).toBe(3);
    l.close();
    const again = SqliteLedger.open(path, genesis);
    expect(again.lastSeq).toBe(3);
    expect(again.signedLog().map((r) => r.kind)).toEqual(['prepare', 'commit']);
    again.close();
  });

  it('group commit with synchronous NORMAL: a group holding a persist commits, and survives a crash', () => {
    // SQLite refuses to change the level inside a transaction: commitGroup used to try, and threw.
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis, { synchronous: 'NORMAL' });
    const d = sha256(new Uint8Array([4]));
    l.beginGroup();
    fill(l, 1);
    l.persist({ kind: 'prepare', view: 0, seq: 2, digest: d });
    l.commitGroup();
    expect(l.inGroup).toBe(false);
    const level = (l as unknown as { db: Database.Database }).db.pragma('synchronous', { simple: true });
    expect(level).toBe(1);
    // And a group without one.
    l.beginGroup();
    l.persist({ kind: 'commit', view: 0, seq: 2, digest: d });
    l.commitGroup();
    (l as unknown as { db: Database.Database }).db.close(); // a crash: no clean close
    const again = SqliteLedger.open(path, genesis, { synchronous: 'NORMAL' });
    expect(again.uncleanShutdown).toBe(true);
    expect(again.lastSeq).toBe(1);
    expect(again.signedLog().map((r) => r.kind)).toEqual(['prepare', 'commit']);
    again.close();
  });

  it('group commit with synchronous FULL: fsynced when it holds a persist, an execution, a checkpoint or evidence; not for receipt signatures alone', () => {
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis);
    const db = (l as unknown as { db: Database.Database }).db;
    const level = () => db.pragma('synchronous', { simple: true });
    const synced = (write: () => void): number => {
      const before = l.walSyncs;
      l.beginGroup();
      expect(level()).toBe(1); // NORMAL while the group is open: its commit is synced by hand, or not
      write();
      l.commitGroup();
      expect(level()).toBe(2); // FULL again for writes outside a group
      return l.walSyncs - before;
    };
    const p1 = plans[0];
    let ex1: Execution | null = null;
    expect(synced(() => (ex1 = l.execute(p1.seq, p1.view, p1.digest, p1.batch, p1.entries)))).toBe(1);
    const ex = ex1 as unknown as Execution;
    expect(
      synced(() =>
        l.addReceiptSignatures(
          1,
          [0, 1, 2].map((i) => signReceipt(ex.receipt, i)),
          ex.receiptHash,
        ),
      ),
    ).toBe(0);
    expect(synced(() => l.persist({ kind: 'prepare', view: 0, seq: 2, digest: p1.digest }))).toBe(1);
    expect(synced(() => l.saveCheckpoint(1, sha256(new Uint8Array([5])), new Uint8Array([1])))).toBe(1);
    expect(synced(() => l.saveEvidence(2, 'equivocation', new Uint8Array([7])))).toBe(1);
    // Receipt signatures beside an execution: one fsync for the group.
    const p2 = plans[1];
    expect(
      synced(() => {
        const ex2 = l.execute(p2.seq, p2.view, p2.digest, p2.batch, p2.entries);
        l.addReceiptSignatures(
          2,
          [0, 1, 2].map((i) => signReceipt(ex2.receipt, i)),
          ex2.receiptHash,
        );
      }),
    ).toBe(1);
    // What an unsynced group wrote is committed all the same: a crash of the process loses none of it.
    l.beginGroup();
    l.addReceiptSignatures(2, [signReceipt(l.receipt(2)!.receipt, 3)]);
    l.commitGroup();
    db.close(); // a crash: no clean close
    const again = SqliteLedger.open(path, genesis);
    expect(again.lastSeq).toBe(2);
    expect(again.receiptSignatures(1).map((s) => s.node)).toEqual([0, 1, 2]);
    expect(again.receiptSignatures(2).map((s) => s.node)).toEqual([0, 1, 2, 3]);
    // A NORMAL ledger syncs a group only for a persist (as before).
    again.close();
    const n = SqliteLedger.open(freshPath(), genesis, { synchronous: 'NORMAL' });
    const before = n.walSyncs;
    n.beginGroup();
    n.execute(p1.seq, p1.view, p1.digest, p1.batch, p1.entries);
    n.commitGroup();
    expect(n.walSyncs).toBe(before);
    n.beginGroup();
    n.persist({ kind: 'prepare', view: 0, seq: 2, digest: p1.digest });
    n.commitGroup();
    expect(n.walSyncs).toBe(before + 1);
    n.close();
  });

  it('group commit off the event loop: commitGroupUnsynced says whether to sync, syncWalAsync calls back once durable, close waits for it', async () => {
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis);
    const d = sha256(new Uint8Array([6]));
    // Receipt signatures alone need no sync; a persist does.
    const p1 = plans[0];
    const ex1 = l.execute(p1.seq, p1.view, p1.digest, p1.batch, p1.entries);
    l.beginGroup();
    l.addReceiptSignatures(
      1,
      [0, 1, 2].map((i) => signReceipt(ex1.receipt, i)),
      ex1.receiptHash,
    );
    expect(l.commitGroupUnsynced()).toBe(false);
    expect(l.commitGroupUnsynced()).toBe(false); // no open group
    l.beginGroup();
    l.persist({ kind: 'prepare', view: 0, seq: 2, digest: d });
    const before = l.walSyncs;
    expect(l.commitGroupUnsynced()).toBe(true);
    expect(l.inGroup).toBe(false);
    expect(l.walSyncs).toBe(before); // not synced by the commit itself
    // Committed all the same: another connection sees it before the sync.
    const other = new Database(path, { readonly: true });
    const logged = () => (other.prepare('SELECT count(*) AS n FROM consensus_log').get() as { n: number }).n;
    expect(logged()).toBe(1);
    other.close();
    // The event loop runs while the sync does: a write between the call and its callback.
    const order: string[] = [];
    const synced = new Promise<Error | null>((res) => l.syncWalAsync(res));
    order.push('called');
    l.persist({ kind: 'commit', view: 0, seq: 2, digest: d });
    order.push('wrote');
    expect(await synced).toBeNull();
    expect(order).toEqual(['called', 'wrote']);
    expect(l.walSyncs).toBe(before + 1);
    // Close while two syncs run: the descriptor stays open until both have called back.
    l.beginGroup();
    l.persist({ kind: 'prepare', view: 0, seq: 3, digest: d });
    expect(l.commitGroupUnsynced()).toBe(true);
    const both = [0, 1].map(() => new Promise<Error | null>((res) => l.syncWalAsync(res)));
    l.close();
    expect(await Promise.all(both)).toEqual([null, null]);
    expect((l as unknown as { walFd: number | null }).walFd).toBeNull();
    expect(codeOf(() => l.syncWalAsync(() => {}))).toBe('LEDGER_CLOSED');
    const again = SqliteLedger.open(path, genesis);
    expect(again.signedLog().map((r) => `${r.kind}:${r.seq}`)).toEqual([
      'prepare:2',
      'commit:2',
      'prepare:3',
    ]);
    again.close();
  });

  it("out of file descriptors at the first sync (EMFILE opening the WAL): syncWalAsync calls back with it, named LEDGER_TOO_MANY_FILES, instead of throwing into the caller's turn", async () => {
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis);
    l.beginGroup();
    l.persist({ kind: 'prepare', view: 0, seq: 1, digest: sha256(new Uint8Array([9])) });
    expect(l.commitGroupUnsynced()).toBe(true);
    // Every descriptor this process may have taken (synchronously: nothing else runs meanwhile), then the
    // sync, which opens the WAL file for the first time; all given back before anything else runs.
    const held: number[] = [];
    let result: Promise<Error | null> | undefined;
    let thrown: unknown = null;
    try {
      for (;;) held.push(openSync('/dev/null', 'r'));
    } catch (e) {
      expect((e as { code?: string }).code).toBe('EMFILE');
      try {
        result = new Promise<Error | null>((res) => l.syncWalAsync(res));
      } catch (t) {
        thrown = t;
      }
    } finally {
      for (const fd of held) closeSync(fd);
    }
    expect(thrown).toBeNull();
    const err = await result;
    expect((err as { code?: string } | null)?.code).toBe('EMFILE');
    expect(ledgerWriteFailure(path, err)?.code).toBe('LEDGER_TOO_MANY_FILES');
    // With descriptors free again, the next sync opens it.
    expect(await new Promise<Error | null>((res) => l.syncWalAsync(res))).toBeNull();
    l.close();
  });

  it('relaxed durability: no fsync for the signed log or executions; a crash of the process loses nothing', () => {
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis, { durability: 'relaxed' });
    expect(l.durability).toBe('relaxed');
    expect(l.synchronous).toBe('NORMAL');
    const d = sha256(new Uint8Array([8]));
    const db = (l as unknown as { db: Database.Database }).db;
    // A group holding a persist and an execution needs no sync, and none runs.
    const before = l.walSyncs;
    l.beginGroup();
    fill(l, 1);
    l.persist({ kind: 'prepare', view: 0, seq: 2, digest: d });
    expect(l.commitGroupUnsynced()).toBe(false);
    // Nor outside a group: the persist commits at NORMAL, and the connection stays there.
    l.persist({ kind: 'commit', view: 0, seq: 2, digest: d });
    expect(db.pragma('synchronous', { simple: true })).toBe(1);
    expect(l.walSyncs).toBe(before);
    // Committed: another connection reads both records before any fsync.
    const other = new Database(path, { readonly: true });
    expect((other.prepare('SELECT count(*) AS n FROM consensus_log').get() as { n: number }).n).toBe(2);
    other.close();
    db.close(); // the process dies: no clean close, but the machine keeps running
    const again = SqliteLedger.open(path, genesis, { durability: 'relaxed' });
    expect(again.uncleanShutdown).toBe(true);
    expect(again.writesMayBeLost).toBe(false); // same boot: the kernel kept every written page
    expect(again.lastSeq).toBe(1);
    expect(again.signedLog().map((r) => `${r.kind}:${r.seq}`)).toEqual(['prepare:2', 'commit:2']);
    again.close();
    expect(
      codeOf(() => SqliteLedger.open(path, genesis, { durability: 'relaxed', synchronous: 'FULL' })),
    ).toBe('LEDGER_BAD_OPTION');
    expect(
      codeOf(() => SqliteLedger.open(path, genesis, { durability: 'lazy' as unknown as 'relaxed' })),
    ).toBe('LEDGER_BAD_OPTION');
  });

  it('relaxed durability: after an unclean stop and a reboot the ledger says its last writes may be lost', () => {
    const marker = (path: string) => JSON.parse(readFileSync(`${path}.boot`, 'utf8'));
    const rebooted = (path: string) =>
      writeFileSync(`${path}.boot`, JSON.stringify({ ...marker(path), bootId: 'another-boot' }));
    const crash = (l: SqliteLedger) => (l as unknown as { db: Database.Database }).db.close();
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis, { durability: 'relaxed' });
    expect(marker(path).durability).toBe('relaxed');
    expect(marker(path).bootId).toBe(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    // Clean close, then a reboot: nothing can have been lost.
    l.close();
    rebooted(path);
    const a = SqliteLedger.open(path, genesis, { durability: 'relaxed' });
    expect(a.writesMayBeLost).toBe(false);
    // Unclean stop, then a reboot: the page cache may have held the last records.
    crash(a);
    rebooted(path);
    const b = SqliteLedger.open(path, genesis, { durability: 'relaxed' });
    expect(b.uncleanShutdown).toBe(true);
    expect(b.writesMayBeLost).toBe(true);
    // Opening made everything durable and rewrote the marker for this boot: the next unclean stop without
    // a reboot loses nothing, whatever the durability of the session after it.
    crash(b);
    const c = SqliteLedger.open(path, genesis);
    expect(c.writesMayBeLost).toBe(false);
    expect(marker(path).durability).toBe('full');
    // A session with full durability fsyncs what it signs: an unclean stop and a reboot lose nothing signed.
    crash(c);
    rebooted(path);
    const e = SqliteLedger.open(path, genesis, { durability: 'relaxed' });
    expect(e.writesMayBeLost).toBe(false);
    // An unreadable marker counts as relaxed on an unknown boot: the safe side.
    crash(e);
    writeFileSync(`${path}.boot`, 'not json');
    const f = SqliteLedger.open(path, genesis, { durability: 'relaxed' });
    expect(f.writesMayBeLost).toBe(true);
    f.close();
  });

  it('prepared durability: a NEW-VIEW record is fsynced even where a durable record names its view already', () => {
    // Its pins are what a restored backup relies on: it must be on disk before any PREPARE of the view leaves.
    const l = SqliteLedger.open(freshPath(), genesis, { durability: 'prepared' });
    const needsSync = (write: () => void): boolean => {
      l.beginGroup();
      write();
      return l.commitGroupUnsynced();
    };
    expect(needsSync(() => l.persist({ kind: 'viewChange', view: 1 }))).toBe(true);
    expect(needsSync(() => l.persist({ kind: 'newView', view: 1, body: new Uint8Array([1]) }))).toBe(true);
    // The votes after it in the same group share its fsync; later ones of that view need none.
    expect(
      needsSync(() => {
        l.persist({ kind: 'newView', view: 2, body: new Uint8Array([2]) });
        l.persist({ kind: 'prepare', view: 2, seq: 1, digest: sha256(new Uint8Array([9])) });
      }),
    ).toBe(true);
    expect(
      needsSync(() => l.persist({ kind: 'prepare', view: 2, seq: 2, digest: sha256(new Uint8Array([9])) })),
    ).toBe(false);
    l.close();
  });

  it('prepared durability: fsyncs the prepared certificate, view changes, checkpoints and each view’s first vote, not the other votes', () => {
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis, { durability: 'prepared' });
    expect(l.durability).toBe('prepared');
    expect(l.synchronous).toBe('NORMAL');
    const d = sha256(new Uint8Array([9]));
    /** Whether a group holding these writes needs an fsync before its messages may leave. */
    const needsSync = (write: () => void): boolean => {
      l.beginGroup();
      write();
      return l.commitGroupUnsynced();
    };
    const vote = (kind: 'prePrepare' | 'prepare', view: number, seq: number) => () =>
      l.persist({ kind, view, seq, digest: d });
    // The first vote of view 0: the ledger must durably name every view its node signed in.
    expect(needsSync(vote('prepare', 0, 2))).toBe(true);
    // Later votes of the view go to the operating system only, and an execution at NORMAL needs none.
    expect(needsSync(vote('prepare', 0, 3))).toBe(false);
    expect(needsSync(vote('prePrepare', 0, 4))).toBe(false);
    expect(needsSync(() => fill(l, 1))).toBe(false);
    // The prepared certificate before COMMIT is what a quorum relies on through a view change.
    expect(needsSync(() => l.persist({ kind: 'commit', view: 0, seq: 2, digest: d }))).toBe(true);
    expect(needsSync(() => l.persist({ kind: 'checkpoint', seq: 1, digest: d }))).toBe(true);
    // A new view: its first vote is synced, or the VIEW-CHANGE that named it was.
    expect(needsSync(vote('prepare', 1, 5))).toBe(true);
    expect(needsSync(vote('prepare', 1, 6))).toBe(false);
    expect(needsSync(() => l.persist({ kind: 'viewChange', view: 2 }))).toBe(true);
    expect(needsSync(vote('prePrepare', 2, 7))).toBe(false);
    // A vote beside a synced record shares its fsync (WAL commits are durable in order).
    const voteAndCommit = () => {
      vote('prepare', 2, 8)();
      l.persist({ kind: 'commit', view: 2, seq: 7, digest: d });
    };
    expect(needsSync(voteAndCommit)).toBe(true);
    // A crash of the process loses nothing, and the reopened ledger knows which views are durable: the
    // file's records are (opening fsyncs them).
    (l as unknown as { db: Database.Database }).db.close();
    const again = SqliteLedger.open(path, genesis, { durability: 'prepared' });
    expect(again.uncleanShutdown).toBe(true);
    expect(again.writesMayBeLost).toBe(false); // same boot
    expect(again.signedLog().map((r) => `${r.kind}:${r.view ?? ''}:${r.seq ?? ''}`)).toEqual([
      'prepare:0:2',
      'prepare:0:3',
      'prePrepare:0:4',
      'commit:0:2',
      'checkpoint::1',
      'prepare:1:5',
      'prepare:1:6',
      'viewChange:2:',
      'prePrepare:2:7',
      'prepare:2:8',
      'commit:2:7',
    ]);
    again.beginGroup();
    again.persist({ kind: 'prepare', view: 2, seq: 9, digest: d });
    expect(again.commitGroupUnsynced()).toBe(false);
    again.beginGroup();
    again.persist({ kind: 'prepare', view: 3, seq: 10, digest: d });
    expect(again.commitGroupUnsynced()).toBe(true);
    // An unclean stop and a reboot: the unsynced votes may be gone, so the node must not sign in any
    // view it may have used (the same rule as relaxed durability).
    (again as unknown as { db: Database.Database }).db.close();
    const marker = JSON.parse(readFileSync(`${path}.boot`, 'utf8'));
    expect(marker.durability).toBe('prepared');
    writeFileSync(`${path}.boot`, JSON.stringify({ ...marker, bootId: 'another-boot' }));
    const rebooted = SqliteLedger.open(path, genesis, { durability: 'prepared' });
    expect(rebooted.writesMayBeLost).toBe(true);
    expect(rebooted.signedLog().at(-1)?.kind).toBe('forgotten');
    rebooted.close();
    // Executions may be fsynced too; a durability nobody knows is refused, naming the three.
    const full = SqliteLedger.open(freshPath(), genesis, { durability: 'prepared', synchronous: 'FULL' });
    full.beginGroup();
    fill(full, 1);
    expect(full.commitGroupUnsynced()).toBe(true);
    full.close();
    expect(() =>
      SqliteLedger.open(freshPath(), genesis, { durability: 'lazy' as unknown as 'full' }),
    ).toThrow(/full, prepared, relaxed/);
  });

  it("keeps the node's own RESULTS across restarts until dropped; fsynced only with full durability", () => {
    const [a, b, c] = [1, 2, 3].map(ownSigned);
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis);
    l.beginGroup();
    l.saveOwnResults(resultsDigestOf(a), a, EPOCH_MS + 1);
    l.saveOwnResults(resultsDigestOf(b), b, EPOCH_MS + 2);
    // With full durability they are on disk before the RESULTS leaves, like a signed-log record.
    expect(l.commitGroupUnsynced()).toBe(true);
    l.saveOwnResults(resultsDigestOf(a), a, EPOCH_MS + 1); // a second copy changes nothing
    expect(codeOf(() => l.saveOwnResults(resultsDigestOf(c), c, -1))).toBe('LEDGER_BAD_VALUE');
    // Dropping never needs a sync: a lost deletion only brings the row back.
    l.beginGroup();
    l.dropOwnResults([resultsDigestOf(a)]);
    expect(l.commitGroupUnsynced()).toBe(false);
    (l as unknown as { db: Database.Database }).db.close(); // a crash of the process
    const again = SqliteLedger.open(path, genesis);
    expect(again.ownResults()).toEqual([{ signed: b, newest: EPOCH_MS + 2 }]);
    again.close();
    const raw = new Database(path);
    raw.prepare('UPDATE own_results SET signed = ?').run(Buffer.from([1, 2, 3]));
    raw.close();
    const broken = SqliteLedger.open(path, genesis);
    expect(codeOf(() => broken.ownResults())).toBe('LEDGER_CORRUPT');
    broken.close();
    // A `newest` that is not a uint (what saveOwnResults refuses to write) is refused when read back too:
    // the restored replica drops a vote by it (-1: at once, so it could sign another RESULTS for a request
    // it voted on; text: never).
    for (const bad of [-1, 1.5, 'soon']) {
      const q = freshPath();
      const w = SqliteLedger.open(q, genesis);
      w.saveOwnResults(resultsDigestOf(b), b, EPOCH_MS + 2);
      w.close();
      const db = new Database(q);
      db.prepare('UPDATE own_results SET newest = ?').run(bad);
      db.close();
      const r = SqliteLedger.open(q, genesis);
      expect(codeOf(() => r.ownResults())).toBe('LEDGER_CORRUPT');
      r.close();
    }
    for (const durability of ['prepared', 'relaxed'] as const) {
      const x = SqliteLedger.open(freshPath(), genesis, { durability });
      x.beginGroup();
      x.saveOwnResults(resultsDigestOf(c), c, EPOCH_MS + 3);
      expect(x.commitGroupUnsynced()).toBe(false);
      expect(x.ownResults()).toEqual([{ signed: c, newest: EPOCH_MS + 3 }]);
      x.close();
    }
  });

  it('a forgotten record carries a time by which the lost session had ended: the start of the boot, or now', () => {
    const forgottenAt = (markerBoot: string | null): number => {
      const path = freshPath();
      const l = SqliteLedger.open(path, genesis, { durability: 'relaxed' });
      (l as unknown as { db: Database.Database }).db.close();
      const marker = JSON.parse(readFileSync(`${path}.boot`, 'utf8'));
      writeFileSync(`${path}.boot`, JSON.stringify({ ...marker, bootId: markerBoot }));
      const rebooted = SqliteLedger.open(path, genesis, { durability: 'relaxed' });
      expect(rebooted.writesMayBeLost).toBe(true);
      const rec = rebooted.signedLog().at(-1);
      expect(rec?.kind).toBe('forgotten');
      rebooted.close();
      return decode(uint, rec!.body!);
    };
    // Another boot named: that session ended before this boot began (the clock now less the uptime).
    const bootAt = Date.now() - uptime() * 1000;
    const at = forgottenAt('another-boot');
    expect(Math.abs(at - bootAt)).toBeLessThan(2000);
    // No boot named: nothing tells when it ended but that it did before this open.
    const before = Date.now();
    const now = forgottenAt(null);
    expect(now).toBeGreaterThanOrEqual(before);
    expect(now).toBeLessThanOrEqual(Date.now());
  });

  it('group commit: an uncommitted group is lost whole on a crash, and the file replays cleanly', () => {
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis);
    fill(l, 1);
    l.beginGroup();
    const p2 = plans[1];
    l.execute(p2.seq, p2.view, p2.digest, p2.batch, p2.entries);
    l.persist({ kind: 'commit', view: 0, seq: 3, digest: p2.digest });
    // The process dies here: the connection goes away without COMMIT (SQLite rolls the group back).
    (l as unknown as { db: Database.Database }).db.close();
    const again = SqliteLedger.open(path, genesis);
    expect(again.uncleanShutdown).toBe(true);
    expect(again.lastSeq).toBe(1);
    expect(again.signedLog()).toEqual([]);
    again.execute(p2.seq, p2.view, p2.digest, p2.batch, p2.entries);
    expect(again.lastSeq).toBe(2);
    again.close();
  });

  it('keeps checkpoints and evidence, and reports an unclean shutdown', () => {
    const path = freshPath();
    const l = SqliteLedger.open(path, genesis);
    expect(l.created).toBe(true);
    fill(l, 4);
    expect(codeOf(() => l.saveCheckpoint(5, new Uint8Array(32), new Uint8Array()))).toBe(
      'LEDGER_UNKNOWN_SEQ',
    );
    l.saveCheckpoint(4, l.state.stateDigest(), new Uint8Array([9, 9]));
    l.saveEvidence(2, 'equivocation', new Uint8Array([7]));
    const digest = l.state.stateDigest();
    // The first session ends without close(), as in a crash (a second open while it runs is LEDGER_LOCKED).
    (l as unknown as { db: Database.Database }).db.close();
    const crashed = SqliteLedger.open(path, genesis);
    expect(crashed.uncleanShutdown).toBe(true);
    expect(crashed.latestCheckpoint()).toEqual({
      seq: 4,
      stateDigest: digest,
      proof: new Uint8Array([9, 9]),
    });
    expect(crashed.evidence()).toEqual([
      { id: 1, node: 2, kind: 'equivocation', proof: new Uint8Array([7]) },
    ]);
    crashed.close();
    const clean = SqliteLedger.open(path, genesis);
    expect(clean.uncleanShutdown).toBe(false);
    clean.close();
    expect(() => clean.lastSeq).not.toThrow();
    expect(codeOf(() => clean.persist({ kind: 'commit' }))).toBe('LEDGER_CLOSED');
  });
});

describe('verifyLedgerFile', () => {
  it('verifies a good ledger from the file alone', () => {
    const r = verifyLedgerFile(goodPath);
    expect(r).toEqual({ ok: true, batches: 6, ownResults: 0, problems: [] });
    expect(verifyLedgerFile(goodPath, genesis).ok).toBe(true);
  });

  it('refuses a ledger of another group when given a genesis', () => {
    const r = verifyLedgerFile(goodPath, makeGroup(4, 1, 8).genesis);
    expect(r.ok).toBe(false);
    expect(r.problems[0]).toMatch(/belongs to group/);
  });

  it('throws LEDGER_NOT_FOUND for a missing file', () => {
    expect(codeOf(() => verifyLedgerFile(join(dir, 'nope.db')))).toBe('LEDGER_NOT_FOUND');
  });

  const cases: [string, () => string, RegExp][] = [
    [
      'a changed outcome byte',
      () =>
        tamper(
          'UPDATE outcomes SET outcomes = ? WHERE seq = 1',
          storedOutcomes(1, (os) => os.map((o, i) => (i === 2 ? flipLast(o) : o))),
        ),
      /batch 1: .*(Merkle root|outcomes)/,
    ],
    [
      'a deleted receipt signature',
      () => tamper('DELETE FROM receipt_sigs WHERE seq = 2 AND node = 1'),
      /batch 2: 2 valid receipt signatures < 3/,
    ],
    [
      'a forged receipt signature',
      () =>
        tamper(
          'UPDATE receipt_sigs SET signature = (SELECT signature FROM receipt_sigs WHERE seq = 1 AND node = 0) WHERE seq = 3 AND node = 0',
        ),
      /batch 3: receipt signature of node 0 is invalid/,
    ],
    [
      'a changed prev hash',
      () => tamper('UPDATE receipts SET prev_hash = ? WHERE seq = 3', new Uint8Array(32)),
      /batch 3: stored prev hash/,
    ],
    [
      'a re-chained receipt',
      () => tamper('UPDATE receipts SET receipt = ? WHERE seq = 3', rechained(3)),
      /batch 3: .*(chain|hash)/,
    ],
    [
      "swapped batches' bytes",
      () => swapBatchBytes(1, 2),
      /batch 1: stored digest is not the digest of the batch(.|\n)*batch 2: stored digest is not the digest/,
    ],
    [
      'a deleted batch',
      () => tamper('DELETE FROM batches WHERE seq = 3'),
      /batches 3\.\.3 are missing|receipts for batches not in the ledger: 3/,
    ],
    [
      'a deleted outcome',
      () =>
        tamper(
          'UPDATE outcomes SET outcomes = ? WHERE seq = 6',
          storedOutcomes(6, (os) => os.slice(0, 6)),
        ),
      /batch 6: 6 stored outcomes, receipt says 7/,
    ],
    [
      'an outcomes row that does not decode',
      () => tamper('UPDATE outcomes SET outcomes = ? WHERE seq = 2', new Uint8Array([0xff, 0xff, 0xff])),
      /batch 2: stored outcomes do not decode/,
    ],
    [
      'a wrong checkpoint digest',
      () => tamper('UPDATE checkpoints SET state_digest = ? WHERE seq = 4', new Uint8Array(32)),
      /batch 4: replay does not reproduce the checkpoint/,
    ],
    [
      'changed votes in the resolved entries',
      () => tamper('UPDATE batches SET entries = ? WHERE seq = 6', entriesWithChangedVote(6)),
      /batch 6: replay does not reproduce the stored receipt/,
    ],
    [
      'a replaced genesis',
      () => tamper('UPDATE meta SET genesis = ?', encode(Genesis, makeGroup(4, 1, 8).genesis)),
      /stored group id/,
    ],
  ];
  for (const [what, make, problem] of cases) {
    it(`reports ${what}`, () => {
      const r = verifyLedgerFile(make());
      expect(r.ok).toBe(false);
      expect(r.problems.join('\n')).toMatch(problem);
    });
  }

  describe('a value that is not a blob where the node wrote bytes', () => {
    // SQLite keeps whatever type was written into a column of a table that is not STRICT. Each is a problem
    // of its row, naming the table and column, and the rest of the file is still checked: the deleted
    // receipt signature of batch 5 is reported too, and every batch is counted.
    const cases: [string, string, unknown, string[]][] = [
      [
        'batches.digest',
        'UPDATE batches SET digest = ? WHERE seq = 2',
        'text',
        ['batch 2: batches.digest is text, not a blob', 'replay stopped at batch 2'],
      ],
      [
        'batches.batch',
        'UPDATE batches SET batch = ? WHERE seq = 2',
        7,
        ['batch 2: batches.batch is a number, not a blob', 'replay stopped at batch 2'],
      ],
      [
        'batches.entries',
        'UPDATE batches SET entries = ? WHERE seq = 3',
        1.5,
        ['batch 3: batches.entries is a number, not a blob', 'replay stopped at batch 3'],
      ],
      [
        'receipts.receipt',
        'UPDATE receipts SET receipt = ? WHERE seq = 2',
        'text',
        [
          'batch 2: receipts.receipt is text, not a blob',
          'batch 2: replay does not reproduce the stored receipt',
          'replay stopped at batch 2: the state diverges from the stored ledger',
        ],
      ],
      [
        'receipts.hash',
        'UPDATE receipts SET hash = ? WHERE seq = 3',
        3,
        ['batch 3: receipts.hash is a number, not a blob'],
      ],
      [
        'receipts.prev_hash',
        'UPDATE receipts SET prev_hash = ? WHERE seq = 3',
        'text',
        ['batch 3: receipts.prev_hash is text, not a blob'],
      ],
      [
        'receipt_sigs.signature',
        'UPDATE receipt_sigs SET signature = ? WHERE seq = 4 AND node = 2',
        'text',
        ['batch 4: receipt_sigs.signature of node 2 is text, not a blob'],
      ],
      [
        'outcomes.outcomes',
        'UPDATE outcomes SET outcomes = ? WHERE seq = 1',
        'text',
        [
          'batch 1: outcomes.outcomes is text, not a blob',
          'batch 1: 0 stored outcomes, receipt says 5',
          'batch 1: replay does not reproduce the stored outcomes',
          'replay stopped at batch 1: the state diverges from the stored ledger',
        ],
      ],
      [
        'checkpoints.state_digest',
        'UPDATE checkpoints SET state_digest = ? WHERE seq = 4',
        9,
        ['batch 4: checkpoints.state_digest is a number, not a blob'],
      ],
    ];
    for (const [column, sql, value, problems] of cases)
      it(`in ${column}`, () => {
        const p = tamper(sql, value);
        const db = new Database(p);
        db.prepare('DELETE FROM receipt_sigs WHERE seq = 5 AND node = 1').run();
        db.close();
        const r = verifyLedgerFile(p);
        expect(r).toMatchObject({ ok: false, batches: 6, ownResults: 0 });
        expect(r.problems).toEqual([...problems, 'batch 5: 2 valid receipt signatures < 3 (2f+1)']);
      });
  });

  it('reports a stored batch view that is not a non-negative integer; the ledger refuses to open it', () => {
    // The view is no input of execution, but state transfer ships it: verify said ok and the node served it.
    for (const [value, shown] of [
      ['x', 'x'],
      [-1, '-1'],
      [1.5, '1.5'],
      [2n ** 60n, '1152921504606847000'],
    ] as const) {
      const p = tamper('UPDATE batches SET view = ? WHERE seq = 2', value);
      const r = verifyLedgerFile(p);
      expect(r).toMatchObject({ ok: false, batches: 6 });
      expect(r.problems).toEqual([`batch 2: batches.view is not a non-negative integer (${shown})`]);
      expect(codeOf(() => SqliteLedger.open(p, genesis).close())).toBe('LEDGER_CORRUPT');
    }
  });

  describe("the node's own RESULTS (own_results)", () => {
    /** Node `node`'s signed RESULTS for one request (`n` tells them apart), signed with `key`. */
    const own = (node: number, n: number, key = keys[node]) =>
      signResults(
        groupId,
        {
          node,
          modelDigest: genesis.nodes[node]?.modelDigest ?? genesis.nodes[0].modelDigest,
          entries: [
            {
              requestId: sha256(new Uint8Array([node, n])),
              result: standInResult(node, new Uint8Array([n]), { disagreement: 0 }),
            },
          ],
        },
        key,
      );
    // The good ledger with three of node 2's own RESULTS (rows 1..3), written by the ledger itself.
    let ownPath: string;
    beforeAll(() => {
      ownPath = copyOfGood();
      const l = SqliteLedger.open(ownPath, genesis);
      for (const n of [1, 2, 3]) {
        const s = own(2, n);
        l.saveOwnResults(resultsDigestOf(s), s, EPOCH_MS + n);
      }
      expect(l.ownResults()).toHaveLength(3);
      l.close();
    });
    /** A copy of that ledger changed by `fn` through another connection. */
    const changed = (fn: (db: Database.Database) => void): string => {
      const p = freshPath();
      copyFileSync(ownPath, p);
      const db = new Database(p);
      try {
        fn(db);
      } finally {
        db.close();
      }
      return p;
    };
    const signedOf = (db: Database.Database, row: number): SignedResults =>
      decode(
        SignedResults,
        new Uint8Array(
          db.prepare('SELECT signed FROM own_results WHERE rowid = ?').pluck().get(row) as Buffer,
        ),
      );
    const insert = (db: Database.Database, s: SignedResults, newest = EPOCH_MS) =>
      db
        .prepare('INSERT INTO own_results (digest, signed, newest) VALUES (?, ?, ?)')
        .run(resultsDigestOf(s), encode(SignedResults, s), newest);

    it('verifies and counts them', () => {
      expect(verifyLedgerFile(ownPath)).toEqual({ ok: true, batches: 6, ownResults: 3, problems: [] });
      const out = spawnSync(process.execPath, ['bin/dropbear.mjs', 'ledger', 'verify', ownPath], {
        encoding: 'utf8',
      });
      expect(out.stdout).toBe(
        'ok: 6 batches, 3 own RESULTS, chain, signatures, Merkle roots and replay verified\n',
      );
      expect(out.status).toBe(0);
    });

    it('with node: every row must be that node’s; a row of another node is a problem naming both', () => {
      expect(verifyLedgerFile(ownPath, undefined, { node: 2 })).toEqual({
        ok: true,
        batches: 6,
        ownResults: 3,
        problems: [],
      });
      expect(verifyLedgerFile(ownPath, undefined, { node: 1 })).toEqual({
        ok: false,
        batches: 6,
        ownResults: 3,
        problems: [1, 2, 3].map(
          (row) => `own RESULTS row ${row}: signed by node 2, not by node 1 whose ledger this is`,
        ),
      });
      // One row of node 1 among node 2's: only that row, not the "more than one node" summary.
      const other = changed((db) => insert(db, own(1, 4)));
      expect(verifyLedgerFile(other, undefined, { node: 2 }).problems).toEqual([
        'own RESULTS row 4: signed by node 1, not by node 2 whose ledger this is',
      ]);
      // Rows that are no one's are reported as without it.
      const misnamed = changed((db) => insert(db, own(1, 4, keys[2])));
      expect(verifyLedgerFile(misnamed, undefined, { node: 2 }).problems).toEqual([
        'own RESULTS row 4: the signature of node 1 is invalid',
      ]);
    });

    it('with node: refuses one that is not a non-negative integer or not a node of the ledger’s group, typed', () => {
      for (const node of [-1, 1.5, Number.NaN, 2 ** 53])
        expect(
          codeOf(() => verifyLedgerFile(ownPath, undefined, { node })),
          String(node),
        ).toBe('LEDGER_BAD_NODE');
      const outside = () => verifyLedgerFile(ownPath, undefined, { node: 4 });
      expect(codeOf(outside)).toBe('LEDGER_BAD_NODE');
      expect(outside).toThrow(/^node 4 is not a node of the ledger's group \(nodes 0\.\.3\)$/);
    });

    it('dropbear ledger verify --node: exit 0 for the ledger’s node, 1 for another, 2 for a bad or unknown id', () => {
      const run = (...args: string[]) =>
        spawnSync(process.execPath, ['bin/dropbear.mjs', 'ledger', 'verify', ownPath, ...args], {
          encoding: 'utf8',
        });
      const mine = run('--node', '2');
      expect(mine.stdout).toBe(
        'ok: 6 batches, 3 own RESULTS of node 2, chain, signatures, Merkle roots and replay verified\n',
      );
      expect(mine.status).toBe(0);
      const another = run('--node', '0');
      expect(another.stdout.trim().split('\n')).toEqual(
        [1, 2, 3].map(
          (row) => `own RESULTS row ${row}: signed by node 2, not by node 0 whose ledger this is`,
        ),
      );
      expect(another.status).toBe(1);
      for (const [arg, message] of [
        ['x', /^error \[CLI_USAGE\]: --node must be a node id \(0, 1, …\), not "x"$/],
        ['-1', /^error \[CLI_USAGE\]: --node must be a node id \(0, 1, …\), not "-1"$/],
        ['1.5', /^error \[CLI_USAGE\]: --node must be a node id \(0, 1, …\), not "1.5"$/],
        ['4', /^error \[LEDGER_BAD_NODE\]: node 4 is not a node of the ledger's group \(nodes 0\.\.3\)$/],
      ] as const) {
        const bad = run(`--node=${arg}`);
        expect(bad.stdout, arg).toBe('');
        expect(bad.stderr.trim(), arg).toMatch(message);
        expect(bad.status, arg).toBe(2);
      }
    });

    it('reports signed bytes changed under their digest and signature', () => {
      const p = changed((db) => {
        const s = signedOf(db, 2);
        const entries = s.batch.entries.map((e) => ({
          ...e,
          result: { kind: 'class' as const, top: [{ label: 12_345, score: 1 }] },
        }));
        const bytes = encode(SignedResults, { ...s, batch: { ...s.batch, entries } });
        db.prepare('UPDATE own_results SET signed = ? WHERE rowid = 2').run(bytes);
      });
      expect(verifyLedgerFile(p)).toMatchObject({
        ok: false,
        ownResults: 3,
        problems: [
          'own RESULTS row 2: stored digest is not the digest of the signed RESULTS',
          'own RESULTS row 2: the signature of node 2 is invalid',
        ],
      });
    });

    it('reports a bad signature (the digest column recomputed to match)', () => {
      const p = changed((db) => {
        const s = signedOf(db, 1);
        const signature = new Uint8Array(s.signature);
        signature[5] ^= 1;
        const forged = { ...s, signature };
        db.prepare('UPDATE own_results SET digest = ?, signed = ? WHERE rowid = 1').run(
          resultsDigestOf(forged),
          encode(SignedResults, forged),
        );
      });
      expect(verifyLedgerFile(p).problems).toEqual(['own RESULTS row 1: the signature of node 2 is invalid']);
    });

    it('reports a digest column that is not the digest of the signed RESULTS', () => {
      const p = changed((db) => {
        db.prepare('UPDATE own_results SET digest = ? WHERE rowid = 3').run(sha256(new Uint8Array([7])));
        db.prepare('UPDATE own_results SET digest = ? WHERE rowid = 1').run(new Uint8Array(5));
      });
      expect(verifyLedgerFile(p).problems).toEqual([
        'own RESULTS row 1: the digest column is not a 32-byte digest',
        'own RESULTS row 3: stored digest is not the digest of the signed RESULTS',
      ]);
    });

    it('reports rows signed by another node, by an unknown node, or not by the node they name', () => {
      const other = changed((db) => insert(db, own(1, 4)));
      expect(verifyLedgerFile(other)).toMatchObject({
        ok: false,
        ownResults: 4,
        problems: [
          "own RESULTS signed by more than one node (node 1: 1 row, node 2: 3 rows); a ledger holds one node's",
        ],
      });
      const unknown = changed((db) => insert(db, own(9, 4, keys[2])));
      expect(verifyLedgerFile(unknown).problems).toEqual(['own RESULTS row 4: signed by unknown node 9']);
      const misnamed = changed((db) => insert(db, own(1, 4, keys[2])));
      expect(verifyLedgerFile(misnamed).problems).toEqual([
        'own RESULTS row 4: the signature of node 1 is invalid',
      ]);
    });

    it('reports a blob that does not decode, or a value that is not a blob, without stopping', () => {
      const p = changed((db) => {
        db.prepare('UPDATE own_results SET digest = 5 WHERE rowid = 1').run();
        db.prepare('UPDATE own_results SET signed = ? WHERE rowid = 2').run(Buffer.from([1, 2, 3]));
        db.prepare("UPDATE own_results SET signed = 'text' WHERE rowid = 3").run();
      });
      const r = verifyLedgerFile(p);
      expect(r).toMatchObject({ ok: false, batches: 6, ownResults: 3 });
      expect(r.problems).toHaveLength(3);
      expect(r.problems[0]).toBe('own RESULTS row 1: own_results.digest is a number, not a blob');
      expect(r.problems[1]).toMatch(/^own RESULTS row 2: signed RESULTS do not decode: /);
      expect(r.problems[2]).toBe('own RESULTS row 3: own_results.signed is text, not a blob');
    });

    it('reports a newest that is not a non-negative integer', () => {
      const p = changed((db) => {
        const set = db.prepare('UPDATE own_results SET newest = ? WHERE rowid = ?');
        set.run(-1, 1);
        set.run(1.5, 2);
        set.run('soon', 3);
      });
      expect(verifyLedgerFile(p).problems).toEqual([
        'own RESULTS row 1: newest is not a non-negative integer (-1)',
        'own RESULTS row 2: newest is not a non-negative integer (1.5)',
        'own RESULTS row 3: newest is not a non-negative integer (soon)',
      ]);
    });
  });
});

function swapBatchBytes(a: number, b: number): string {
  const p = copyOfGood();
  const db = new Database(p);
  const get = db.prepare('SELECT batch FROM batches WHERE seq = ?');
  const [ba, bb] = [get.get(a), get.get(b)] as { batch: Buffer }[];
  const set = db.prepare('UPDATE batches SET batch = ? WHERE seq = ?');
  set.run(bb.batch, a);
  set.run(ba.batch, b);
  db.close();
  return p;
}
function readRow(sql: string, ...params: unknown[]): Record<string, unknown> {
  const db = new Database(goodPath, { readonly: true });
  const r = db.prepare(sql).get(...params) as Record<string, unknown>;
  db.close();
  return r;
}
/** Batch `seq`'s stored outcomes, changed by `change` and encoded again. */
function storedOutcomes(seq: number, change: (outcomes: Uint8Array[]) => Uint8Array[]): Uint8Array {
  const row = readRow('SELECT outcomes FROM outcomes WHERE seq = ?', seq).outcomes as Buffer;
  return encode(StoredOutcomes, change(decode(StoredOutcomes, new Uint8Array(row))));
}
function flipLast(b: Uint8Array): Uint8Array {
  const c = new Uint8Array(b);
  c[c.length - 1] ^= 1; // the fee's last byte: still decodes
  return c;
}
/** Receipt s re-encoded with a wrong previous-receipt hash (and the prev-hash column left alone). */
function rechained(seq: number): Uint8Array {
  const r = { ...executions[seq - 1].receipt, prevReceipt: new Uint8Array(32) };
  return encode(Receipt, r);
}
function entriesWithChangedVote(seq: number): Uint8Array {
  const p = plans[seq - 1];
  const changed = p.entries.map((e, i) =>
    i === 0
      ? {
          ...e,
          votes: e.votes.map((v) =>
            v.node === 0 ? { ...v, result: { kind: 'class' as const, top: [{ label: 999, score: 1 }] } } : v,
          ),
        }
      : e,
  );
  return encode(ResolvedEntriesCodec, changed);
}

// ---------------------------------------------------------------------------------------------------------

describe('dropbear ledger verify', () => {
  const run = (...args: string[]) =>
    spawnSync(process.execPath, ['bin/dropbear.mjs', 'ledger', 'verify', ...args], { encoding: 'utf8' });

  it('exits 0 on a good ledger and 1, one line per problem, on a tampered one', () => {
    const good = run(goodPath);
    expect(good.stderr).toBe('');
    expect(good.stdout).toBe(
      'ok: 6 batches, 0 own RESULTS, chain, signatures, Merkle roots and replay verified\n',
    );
    expect(good.status).toBe(0);

    const bad = run(tamper('DELETE FROM receipt_sigs WHERE seq = 2 AND node = 1'));
    expect(bad.status).toBe(1);
    expect(bad.stdout.trim().split('\n')).toEqual(['batch 2: 2 valid receipt signatures < 3 (2f+1)']);
  });

  it('reports a value that is not a blob as a line of problems (exit 1), not as an unreadable ledger', () => {
    const bad = run(tamper("UPDATE receipts SET hash = 'text' WHERE seq = 3"));
    expect(bad.stderr).toBe('');
    expect(bad.stdout).toBe('batch 3: receipts.hash is text, not a blob\n');
    expect(bad.status).toBe(1);
  });

  it('checks the group against --genesis and exits 2 for a missing file', () => {
    const g = join(dir, 'genesis.json');
    writeFileSync(g, JSON.stringify(toJson(Genesis, genesis)));
    expect(run(goodPath, '--genesis', g).status).toBe(0);
    const other = join(dir, 'other.json');
    writeFileSync(other, JSON.stringify(toJson(Genesis, makeGroup(4, 1, 8).genesis)));
    expect(run(goodPath, '--genesis', other).status).toBe(1);
    const missing = run(join(dir, 'missing.db'));
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/LEDGER_NOT_FOUND/);
  });

  it('exits 2 with LEDGER_UNREADABLE for a file that is not a database (the help: 2 for unreadable)', () => {
    const junk = join(dir, 'junk.sqlite');
    writeFileSync(junk, 'this is not a database, only text long enough to have a header'.repeat(20));
    const r = run(junk);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /^error \[LEDGER_UNREADABLE\]: .*junk\.sqlite is not a ledger: file is not a database/,
    );
    expect(r.status).toBe(2);
  });
});
