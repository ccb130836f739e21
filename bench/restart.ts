/**
 * npm run bench:restart — how long `SqliteLedger.open` takes on a long ledger with state snapshots and
 * without (docs/ledger.md, "Snapshots"), in the same run, and what one snapshot costs.
 *
 * 1. A snapshot of a window of 600,000 ids (10 minutes at 1,000 requests/s; what a snapshot's size is set
 *    by): `LedgerState.snapshot()` (sort and encode), its SHA-256, the row written in an fsynced (FULL)
 *    transaction of a real file, and `LedgerState.restore` of it. 3 runs, median (min–max).
 * 2. A ledger of `--requests` requests (default 300,000; batches of 256 distinct requests, four votes
 *    each, request ids from the request bytes: no signatures to make) written with `snapshotEvery` =
 *    `--every` (default 100,000), then opened 3 times each, alternating: as written (the latest snapshot
 *    restored, the batches after it replayed) and from a copy without its snapshots (every batch replayed).
 * Bounded: the write stops early once `--seconds` (default 120) have passed, and says so.
 * Wall-clock times on whatever the machine does meanwhile: run it on a quiet machine for numbers to keep.
 */
import { copyFileSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteLedger } from '../src/ledger/sqlite.ts';
import { LedgerState, type ResolvedEntry } from '../src/ledger/state.ts';
import {
  type Batch,
  batchDigestOf,
  encode,
  groupIdOf,
  Request,
  requestIdOfBody,
  sha256,
} from '../src/protocol/index.ts';
import { EPOCH_MS, makeGroup } from '../src/sim/world.ts';
import { type FlagSpecs, scriptFlags } from './lib/args.ts';
import { benchTempDir } from './lib/cleanup.ts';
import { flag } from './lib/part.ts';

const FLAGS: FlagSpecs = {
  requests: { kind: 'count', help: 'requests in the ledger (300000)' },
  every: { kind: 'count', help: 'snapshotEvery (100000)' },
  seconds: { kind: 'count', help: 'the write stops early past this (120)' },
};
const given = scriptFlags(process.argv.slice(2), FLAGS, 'npm run bench:restart');
function arg(name: string, fallback: number): number {
  return Number(flag(given, name) ?? fallback);
}
const REQUESTS = arg('requests', 300_000);
const EVERY = arg('every', 100_000);
const SECONDS = arg('seconds', 120);
const WINDOW = 600_000;
const BATCH = 256;
const RUNS = 3;

const { genesis } = makeGroup(4, 1, 42);
const groupId = groupIdOf(genesis);
const dir = benchTempDir('dropbear-bench-restart-');
const ms = (t0: number) => performance.now() - t0;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1];
const show = (xs: number[]) =>
  `${median(xs).toFixed(0)} ms (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;

let nonce = 0;
function request(timestamp: number): ResolvedEntry {
  const request = {
    groupId,
    client: genesis.balances[0].client,
    nonce: nonce++,
    timestamp,
    inputDigest: sha256(new Uint8Array([nonce & 255, (nonce >> 8) & 255, nonce >> 16])),
    policy: null,
    maxFee: 100,
  };
  const votes = genesis.nodes.map((n) => ({
    node: n.id,
    modelDigest: n.modelDigest,
    result: { kind: 'class' as const, top: [{ label: nonce % 3 === 0 ? 1 : 2, score: 900_000 }] },
  }));
  return { requestId: requestIdOfBody(encode(Request, request)), request, votes };
}

function snapshotCost(): void {
  const state = new LedgerState(genesis);
  // The window as a replay leaves it: ids of distinct requests over 10 minutes, ~1 per millisecond.
  for (let i = 0; i < WINDOW; i++) state.recent.add(request(EPOCH_MS + i).requestId, EPOCH_MS + i);
  const enc: number[] = [];
  const hash: number[] = [];
  const write: number[] = [];
  const restore: number[] = [];
  let size = 0;
  const path = join(dir, 'snapshot-cost.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE snapshots (seq INTEGER PRIMARY KEY, state BLOB NOT NULL, hash BLOB NOT NULL)');
  const ins = db.prepare('INSERT OR REPLACE INTO snapshots (seq, state, hash) VALUES (?, ?, ?)');
  for (let run = 0; run < RUNS; run++) {
    let t = performance.now();
    const bytes = state.snapshot();
    enc.push(ms(t));
    t = performance.now();
    const h = sha256(bytes);
    hash.push(ms(t));
    t = performance.now();
    db.transaction(() => ins.run(run % 2, bytes, h))();
    write.push(ms(t));
    t = performance.now();
    LedgerState.restore(genesis, bytes);
    restore.push(ms(t));
    size = bytes.length;
  }
  db.close();
  const total = enc.map((x, i) => x + hash[i] + write[i]);
  console.log(`snapshot of a window of ${WINDOW} ids: ${(size / 1e6).toFixed(1)} MB`);
  console.log(
    `  encode ${show(enc)}, hash ${show(hash)}, write (FULL) ${show(write)}; restore ${show(restore)}`,
  );
  console.log(
    `  encode + hash + write: ${show(total)} = ${((median(total) * 1000) / EVERY).toFixed(2)} µs a request at --every ${EVERY}`,
  );
}

function restartTimes(): void {
  const path = join(dir, 'ledger.db');
  const l = SqliteLedger.open(path, genesis, { synchronous: 'NORMAL', snapshotEvery: EVERY });
  const started = performance.now();
  let written = 0;
  let seq = 0;
  let snapshotMs = 0;
  while (written < REQUESTS) {
    if (ms(started) > SECONDS * 1000) {
      console.log(`(stopped writing after ${SECONDS} s: --seconds)`);
      break;
    }
    seq++;
    const clock = EPOCH_MS + seq * 250;
    const entries = Array.from({ length: BATCH }, (_, i) => request(clock - (i % 50)));
    const batch: Batch = {
      timestamp: clock,
      entries: entries.map((e, i) => ({
        requestId: e.requestId,
        votes: e.votes.map((v) => ({ node: v.node, results: sha256(new Uint8Array([v.node])), index: i })),
      })),
      txs: [],
    };
    const before = written;
    const t = performance.now();
    l.execute(seq, 0, batchDigestOf(batch), batch, entries);
    // The executions that wrote a snapshot (the counter passed --every): their extra time, roughly.
    if (Math.floor((before + BATCH) / EVERY) > Math.floor(before / EVERY)) snapshotMs += ms(t);
    written += BATCH;
  }
  l.close();
  const db = new Database(path, { readonly: true });
  const snaps = db.prepare('SELECT seq, length(state) AS bytes FROM snapshots ORDER BY seq').all() as {
    seq: number;
    bytes: number;
  }[];
  db.close();
  const bare = join(dir, 'bare.db');
  copyFileSync(path, bare);
  const b = new Database(bare);
  b.exec('DELETE FROM snapshots');
  b.close();
  console.log(
    `ledger: ${written} requests in ${seq} batches (${(statSync(path).size / 1e6).toFixed(0)} MB), written in ${(ms(started) / 1000).toFixed(1)} s; snapshots kept at batches ${snaps.map((s) => `${s.seq} (${(s.bytes / 1e6).toFixed(1)} MB)`).join(', ')}; executions that wrote one took ${snapshotMs.toFixed(0)} ms together`,
  );
  const withSnap: number[] = [];
  const without: number[] = [];
  for (let run = 0; run < RUNS; run++)
    for (const [p, out] of [
      [path, withSnap],
      [bare, without],
    ] as const) {
      let from = -1;
      const t = performance.now();
      const o = SqliteLedger.open(p, genesis, {
        replayProgressMs: 0,
        onReplayProgress: (x) => {
          if (x.done) from = x.snapshot;
        },
      });
      out.push(ms(t));
      if (o.lastSeq !== seq) throw new Error(`reopened at ${o.lastSeq}, not ${seq}`);
      o.close();
      if (p === path && from !== (snaps.at(-1)?.seq ?? 0)) throw new Error(`restored ${from}`);
    }
  console.log(`open with snapshots (latest restored, the rest replayed): ${show(withSnap)}`);
  console.log(`open without (every batch replayed):                    ${show(without)}`);
}

console.log(`Node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}); ${tmpdir()}`);
try {
  snapshotCost();
  restartTimes();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
