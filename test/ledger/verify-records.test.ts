/**
 * `ledger verify` and the replay at open on real ledgers written by the simulator: requests that no longer
 * hash to their ids, the node's stable checkpoint records (the signed log's `checkpoint` records, not the
 * `checkpoints` table, which the node never writes), and the batch sources state transfer ships.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ResolvedEntries } from '../../src/ledger/codec.ts';
import { SourceRequests, SourceResults, SqliteLedger } from '../../src/ledger/sqlite.ts';
import { verifyLedgerFile } from '../../src/ledger/verify.ts';
import { array, Batch, DropbearError, decode, encode, hex, NodeSignature } from '../../src/protocol/index.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { Simulation } from '../../src/sim/world.ts';
import { codeOf } from '../support/errors.ts';

let dir: string;
let genesis: Simulation['group']['genesis'];
let good: string;
let fileNo = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dropbear-verify-records-'));
  const s = new Simulation({
    nodes: 4,
    requests: 160,
    seed: 11,
    rate: 0.5,
    maxTimeMs: 60_000,
    ledgerDir: dir,
    replica: { checkpointInterval: 4 },
  });
  // Node 3 loses its disk and comes back: what it holds afterwards came by state transfer.
  s.at(120, () => s.crash(3));
  s.at(200, () => s.restart(3, true));
  const r = s.run();
  s.close();
  expect(r.done).toBe(true);
  expect(checkRun(r).ok).toBe(true);
  genesis = s.group.genesis;
  good = join(dir, 'node-1.sqlite');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function copyOf(path = good): string {
  const p = join(dir, `copy-${++fileNo}.sqlite`);
  copyFileSync(path, p);
  return p;
}
function withDb<T>(path: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}
/** A batch with at least one entry (the first), and its seq. */
const firstFullBatch = (db: Database.Database): number =>
  db
    .prepare('SELECT seq FROM batches WHERE length(entries) > 8 ORDER BY seq LIMIT 1')
    .pluck()
    .get() as number;

describe('what verify checks on a real ledger', () => {
  it('every node’s ledger verifies, with stable checkpoint records, batch sources and own RESULTS in it', () => {
    let own = 0;
    for (const id of [0, 1, 2, 3]) {
      const path = join(dir, `node-${id}.sqlite`);
      const v = verifyLedgerFile(path);
      expect(v.problems).toEqual([]);
      expect(v.batches).toBeGreaterThan(8);
      withDb(path, (db) => {
        // The signed log keeps the latest stable checkpoint's record alone (older ones are pruned with it).
        const cps = db
          .prepare("SELECT count(*) FROM consensus_log WHERE kind = 'checkpoint' AND body IS NOT NULL")
          .pluck()
          .get();
        expect(cps).toBe(1);
        expect(db.prepare('SELECT count(*) FROM batch_sources').pluck().get()).toBe(v.batches);
        expect(db.prepare('SELECT count(*) FROM checkpoints').pluck().get()).toBe(0);
        expect(db.prepare('SELECT count(*) FROM own_results').pluck().get()).toBe(v.ownResults);
      });
      own += v.ownResults;
      // Every own RESULTS row is the node's own: verified as node id's ledger, and as no other node's.
      expect(verifyLedgerFile(path, undefined, { node: id }).problems).toEqual([]);
      const other = (id + 1) % 4;
      const as = verifyLedgerFile(path, undefined, { node: other });
      expect(as.problems).toHaveLength(v.ownResults);
      for (const p of as.problems)
        expect(p).toMatch(
          new RegExp(
            `^own RESULTS row \\d+: signed by node ${id}, not by node ${other} whose ledger this is$`,
          ),
        );
    }
    // The nodes that kept their disks still hold own RESULTS at the end of the run: they were checked.
    expect(own).toBeGreaterThan(0);
  });

  it('a stable checkpoint record whose state digest was altered is reported', () => {
    const p = copyOf();
    const seq = withDb(p, (db) => {
      const row = db
        .prepare("SELECT id, seq, digest FROM consensus_log WHERE kind = 'checkpoint' ORDER BY id LIMIT 1")
        .get() as { id: number; seq: number; digest: Buffer };
      const d = Buffer.from(row.digest);
      d[0] ^= 1;
      db.prepare('UPDATE consensus_log SET digest = ? WHERE id = ?').run(d, row.id);
      return row.seq;
    });
    const v = verifyLedgerFile(p);
    expect(v.ok).toBe(false);
    expect(v.problems).toContain(
      `batch ${seq}: replay does not reproduce the state digest of stable checkpoint ${seq} (signed log)`,
    );
    // Its proof no longer signs it either.
    expect(v.problems.join('\n')).toMatch(
      new RegExp(`batch ${seq}: CHECKPOINT signature of node \\d is invalid`),
    );
  });

  it('a stable checkpoint record whose proof was altered is reported', () => {
    const p = copyOf();
    withDb(p, (db) => {
      const row = db
        .prepare("SELECT id, body FROM consensus_log WHERE kind = 'checkpoint' ORDER BY id LIMIT 1")
        .get() as { id: number; body: Buffer };
      // Every signature of the proof altered (one byte each).
      const Proof = array(NodeSignature, 256);
      const sigs = decode(Proof, new Uint8Array(row.body)).map((x) => {
        const signature = Uint8Array.from(x.signature);
        signature[0] ^= 1;
        return { node: x.node, signature };
      });
      db.prepare('UPDATE consensus_log SET body = ? WHERE id = ?').run(encode(Proof, sigs), row.id);
    });
    const v = verifyLedgerFile(p);
    expect(v.ok).toBe(false);
    expect(v.problems.join('\n')).toMatch(/CHECKPOINT signature of node \d is invalid/);
    expect(v.problems.join('\n')).toMatch(/0 valid CHECKPOINT signatures < 3/);
  });

  it('a request rewritten in the stored entries (no outcome holds the field) is reported, and the node refuses to open the file', () => {
    const before = SqliteLedger.open(copyOf(), genesis);
    const digest = hex(before.state.stateDigest());
    before.close();
    for (const change of [{ timestamp: 1 }, { nonce: 999_999 }, { maxFee: 123_456 }]) {
      const p = copyOf();
      const seq = withDb(p, (db) => {
        const seq = firstFullBatch(db);
        const bytes = db.prepare('SELECT entries FROM batches WHERE seq = ?').pluck().get(seq) as Buffer;
        const entries = decode(ResolvedEntries, new Uint8Array(bytes));
        entries[0] = { ...entries[0], request: { ...entries[0].request, ...change } };
        db.prepare('UPDATE batches SET entries = ? WHERE seq = ?').run(encode(ResolvedEntries, entries), seq);
        return seq;
      });
      const v = verifyLedgerFile(p);
      expect(v.ok).toBe(false);
      expect(v.problems[0]).toMatch(
        new RegExp(
          `^batch ${seq}: resolved entries do not match the batch's entries: entry 0's request does not hash to its id`,
        ),
      );
      let err: unknown;
      try {
        SqliteLedger.open(p, genesis).close();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DropbearError);
      expect((err as DropbearError).code).toBe('LEDGER_CORRUPT');
      expect((err as Error).message).toMatch(
        new RegExp(`batch ${seq}: entry 0's request does not hash to its id`),
      );
    }
    // The untouched file still opens to the same state.
    const again = SqliteLedger.open(copyOf(), genesis);
    expect(hex(again.state.stateDigest())).toBe(digest);
    again.close();
  });

  it('a batch rewritten under its stored digest (its timestamp) makes the open fail, typed', () => {
    const p = copyOf();
    const seq = withDb(p, (db) => {
      const seq = firstFullBatch(db);
      const b = decode(
        Batch,
        new Uint8Array(db.prepare('SELECT batch FROM batches WHERE seq = ?').pluck().get(seq) as Buffer),
      );
      db.prepare('UPDATE batches SET batch = ? WHERE seq = ?').run(
        encode(Batch, { ...b, timestamp: b.timestamp + 1 }),
        seq,
      );
      return seq;
    });
    expect(codeOf(() => SqliteLedger.open(p, genesis).close())).toBe('LEDGER_CORRUPT');
    expect(verifyLedgerFile(p).problems[0]).toBe(
      `batch ${seq}: stored digest is not the digest of the batch`,
    );
  });

  it('batch sources that are not the batch’s are reported', () => {
    // A stored source request changed (its id changes with it).
    const p1 = copyOf();
    const seq1 = withDb(p1, (db) => {
      const seq = firstFullBatch(db);
      const srs = decode(
        SourceRequests,
        new Uint8Array(
          db.prepare('SELECT requests FROM batch_sources WHERE seq = ?').pluck().get(seq) as Buffer,
        ),
      );
      srs[0] = { ...srs[0], request: { ...srs[0].request, maxFee: srs[0].request.maxFee + 1 } };
      db.prepare('UPDATE batch_sources SET requests = ? WHERE seq = ?').run(encode(SourceRequests, srs), seq);
      return seq;
    });
    const v1 = verifyLedgerFile(p1).problems.join('\n');
    expect(v1).toMatch(new RegExp(`batch ${seq1}: entry \\d+: its request is not among the stored sources`));

    // A stored source request whose client authorisation is another request's (its id does not cover it).
    const p3 = copyOf();
    const seq3 = withDb(p3, (db) => {
      const seq = firstFullBatch(db);
      const get = db.prepare('SELECT requests FROM batch_sources WHERE seq = ?').pluck();
      const srs = decode(SourceRequests, new Uint8Array(get.get(seq) as Buffer));
      const other = decode(SourceRequests, new Uint8Array(get.get(seq + 1) as Buffer));
      srs[0] = { ...srs[0], auth: other[0].auth };
      db.prepare('UPDATE batch_sources SET requests = ? WHERE seq = ?').run(encode(SourceRequests, srs), seq);
      return seq;
    });
    expect(verifyLedgerFile(p3).problems).toEqual([
      `batch ${seq3}: entry 0: stored source request: client signature invalid`,
    ]);

    // A stored RESULTS changed: it no longer hashes to the digest its votes name.
    const p2 = copyOf();
    const seq2 = withDb(p2, (db) => {
      const seq = firstFullBatch(db);
      const rs = decode(
        SourceResults,
        new Uint8Array(
          db.prepare('SELECT results FROM batch_sources WHERE seq = ?').pluck().get(seq) as Buffer,
        ),
      );
      const r = rs[0];
      const entries = r.batch.entries.map((e, i) =>
        i === 0 ? { ...e, result: { kind: 'class' as const, top: [{ label: 12_345, score: 1 }] } } : e,
      );
      rs[0] = { ...r, batch: { ...r.batch, entries } };
      db.prepare('UPDATE batch_sources SET results = ? WHERE seq = ?').run(encode(SourceResults, rs), seq);
      return seq;
    });
    const v2 = verifyLedgerFile(p2).problems.join('\n');
    expect(v2).toMatch(
      new RegExp(
        `batch ${seq2}: entry \\d+: the RESULTS of node \\d's vote are not among the stored sources`,
      ),
    );
  });

  it('a value that is not a blob in a batch’s sources, or a receipt signature view that is not a view, is a problem of its row', () => {
    const p = copyOf();
    const [a, b, c] = withDb(p, (db) => {
      const seqs = db
        .prepare('SELECT seq FROM batches WHERE length(entries) > 8 ORDER BY seq LIMIT 3')
        .pluck()
        .all() as number[];
      db.prepare("UPDATE batch_sources SET requests = 'text' WHERE seq = ?").run(seqs[0]);
      db.prepare('UPDATE batch_sources SET results = 12 WHERE seq = ?').run(seqs[1]);
      db.prepare(
        "UPDATE receipt_sigs SET view = 'text' WHERE seq = ? AND node = (SELECT min(node) FROM receipt_sigs WHERE seq = ?)",
      ).run(seqs[2], seqs[2]);
      return seqs;
    });
    const node = withDb(p, (db) =>
      db.prepare('SELECT min(node) FROM receipt_sigs WHERE seq = ?').pluck().get(c),
    );
    const v = verifyLedgerFile(p);
    expect(v.batches).toBe(verifyLedgerFile(good).batches);
    expect(v.problems).toEqual([
      `batch ${a}: batch_sources.requests is text, not a blob`,
      `batch ${b}: batch_sources.results is a number, not a blob`,
      `batch ${c}: receipt_sigs.view of node ${node} is neither null nor a non-negative integer (text)`,
      `batch ${c}: 2 valid receipt signatures < 3 (2f+1)`,
    ]);
  });
});

describe('pruneSignedLog', () => {
  it('keeps the stable checkpoint’s own record', () => {
    const p = copyOf();
    const l = SqliteLedger.open(p, genesis);
    const cps = l.signedLog().filter((r) => r.kind === 'checkpoint');
    const stable = cps[cps.length - 1];
    expect(stable.seq).toBeGreaterThan(0);
    l.pruneSignedLog(stable.seq!);
    // Of the records at or below the stable checkpoint, only its own is left.
    const below = l.signedLog().filter((r) => r.seq !== undefined && r.seq <= stable.seq!);
    expect(below).toEqual([stable]);
    l.close();
    expect(verifyLedgerFile(p).problems).toEqual([]);
  });
});
