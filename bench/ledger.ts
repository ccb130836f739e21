/**
 * npm run bench:ledger — write throughput of the durable ledger (src/ledger/sqlite.ts) on a real file
 * under os.tmpdir(), synchronous FULL vs NORMAL, consensus batch sizes 1, 128 and 1024.
 *
 * One "write" is what a node does per committed batch: `execute` (LedgerState execution + one SQLite
 * transaction: batch, resolved entries, receipt, one outcome row per request) and then
 * `addReceiptSignatures` with q = 3 signatures (verified, one more transaction). Requests, votes and
 * receipt signatures are made outside the timed region. Also measured: `persist` (one fsynced commit per
 * signed consensus message, in both modes) and `open` of the written file (replay of every batch).
 * Wall-clock time, 3 runs per row (fresh file each; FULL and NORMAL runs alternate), median and min–max.
 * `--quick`: 1 run, fewer batches (a smoke test).
 */
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteLedger, type Synchronous } from '../src/ledger/sqlite.ts';
import type { ResolvedEntry } from '../src/ledger/state.ts';
import {
  type Batch,
  batchDigestOf,
  encode,
  groupIdOf,
  Receipt,
  requestIdOf,
  sha256,
  signRequest,
  signTagged,
  TAGS,
} from '../src/protocol/index.ts';
import { standInResult } from '../src/sim/standin.ts';
import { EPOCH_MS, makeGroup } from '../src/sim/world.ts';
import { scriptFlags } from './lib/args.ts';
import { benchTempDir } from './lib/cleanup.ts';

const quick = scriptFlags(
  process.argv.slice(2),
  { quick: { kind: 'switch', help: '1 run, fewer batches (a smoke test); nothing written' } },
  'npm run bench:ledger',
).includes('--quick');
const RUNS = quick ? 1 : 3;
const SIZES = [1, 128, 1024];
const MODES: Synchronous[] = ['FULL', 'NORMAL'];
const batchesFor = (size: number) =>
  quick ? (size === 1 ? 100 : 4) : size === 1 ? 1000 : size === 128 ? 100 : 50;
const PERSISTS = quick ? 100 : 1000;

const group = makeGroup(4, 1, 42);
const { genesis, keys, client } = group;
const groupId = groupIdOf(genesis);
const Q = 2 * genesis.f + 1;

interface Planned {
  seq: number;
  digest: Uint8Array;
  batch: Batch;
  entries: ResolvedEntry[];
}

/** `count` batches of `size` distinct signed requests, each voted by all four nodes. */
function makeBatches(size: number, count: number): Planned[] {
  let nonce = 0;
  const out: Planned[] = [];
  for (let seq = 1; seq <= count; seq++) {
    const entries: ResolvedEntry[] = [];
    for (let i = 0; i < size; i++) {
      const input = new TextEncoder().encode(`bench input ${size}/${nonce}`);
      const request = {
        groupId,
        client: client.publicKey,
        nonce: nonce++,
        timestamp: EPOCH_MS,
        inputDigest: sha256(input),
        policy: null,
        maxFee: 100,
      };
      const sr = signRequest(request, input, client);
      const votes = genesis.nodes.map((n) => ({
        node: n.id,
        modelDigest: n.modelDigest,
        result: standInResult(n.id, input, { disagreement: 0.05 }),
      }));
      entries.push({ requestId: requestIdOf(sr), request, votes });
    }
    const batch: Batch = {
      timestamp: EPOCH_MS + seq,
      entries: entries.map((e, i) => ({
        requestId: e.requestId,
        votes: e.votes.map((v) => ({ node: v.node, results: sha256(new Uint8Array([v.node])), index: i })),
      })),
      txs: [],
    };
    out.push({ seq, digest: batchDigestOf(batch), batch, entries });
  }
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
const stat = (xs: number[]) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), runs: xs });
type Stat = ReturnType<typeof stat>;

const dir = benchTempDir('dropbear-bench-ledger-');
const sec = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

interface Row {
  synchronous: Synchronous;
  batchSize: number;
  batches: number;
  requests: number;
  /** execute + addReceiptSignatures, per second of wall time spent in them. */
  batchesPerS: Stat;
  requestsPerS: Stat;
  /** execute alone. */
  executeBatchesPerS: Stat;
  /** Reopening the written file: replay of every batch. */
  replayRequestsPerS: Stat;
  fileBytes: number;
}

const rows: Row[] = [];
const receiptSigs = new Map<string, { node: number; signature: Uint8Array; view: number | null }[]>();

/** One run: a fresh file, every batch written, then reopened. Returns rates in batches/s. */
function writeRun(size: number, plans: Planned[], mode: Synchronous, run: number) {
  const path = join(dir, `ledger-${size}-${mode}-${run}.db`);
  const ledger = SqliteLedger.open(path, genesis, { synchronous: mode });
  let tExec = 0;
  let tSigs = 0;
  for (const p of plans) {
    let t0 = process.hrtime.bigint();
    const ex = ledger.execute(p.seq, 0, p.digest, p.batch, p.entries);
    tExec += sec(t0);
    // Receipts are deterministic, so each is signed once (untimed) and reused by later runs.
    const key = `${size}:${p.seq}`;
    let sigs = receiptSigs.get(key);
    if (!sigs) {
      const body = encode(Receipt, ex.receipt);
      sigs = [0, 1, 2].map((node) => ({
        node,
        signature: signTagged(TAGS.receipt, groupId, body, keys[node]),
        view: null,
      }));
      receiptSigs.set(key, sigs);
    }
    t0 = process.hrtime.bigint();
    if (ledger.addReceiptSignatures(p.seq, sigs, ex.receiptHash) !== Q) throw new Error('signatures lost');
    tSigs += sec(t0);
  }
  ledger.close();
  const fileBytes = statSync(path).size;
  const t0 = process.hrtime.bigint();
  const again = SqliteLedger.open(path, genesis, { synchronous: mode });
  const tOpen = sec(t0);
  if (again.lastSeq !== plans.length) throw new Error('reopen lost batches');
  again.close();
  rmSync(path, { force: true });
  const count = plans.length;
  return { both: count / (tExec + tSigs), exOnly: count / tExec, replay: (count * size) / tOpen, fileBytes };
}

for (const size of SIZES) {
  const count = batchesFor(size);
  const plans = makeBatches(size, count);
  const results = new Map(MODES.map((m) => [m, [] as ReturnType<typeof writeRun>[]]));
  // Modes alternate run by run, so that drifting load on a shared machine hits both alike.
  for (let run = 0; run < RUNS; run++)
    for (const mode of MODES) results.get(mode)!.push(writeRun(size, plans, mode, run));
  for (const mode of MODES) {
    const rs = results.get(mode)!;
    const both = rs.map((r) => r.both);
    const row: Row = {
      synchronous: mode,
      batchSize: size,
      batches: count,
      requests: count * size,
      batchesPerS: stat(both),
      requestsPerS: stat(both.map((b) => b * size)),
      executeBatchesPerS: stat(rs.map((r) => r.exOnly)),
      replayRequestsPerS: stat(rs.map((r) => r.replay)),
      fileBytes: rs[0].fileBytes,
    };
    rows.push(row);
    console.log(
      `${mode.padEnd(6)} batch ${String(size).padStart(4)}: ${row.batchesPerS.median.toFixed(0)} batches/s, ` +
        `${row.requestsPerS.median.toFixed(0)} req/s (runs ${both.map((x) => x.toFixed(0)).join(', ')} batches/s)`,
    );
  }
}

// persist(): one fsynced commit per call, whatever the configured synchronous level.
const persisted = new Map(MODES.map((m) => [m, [] as number[]]));
for (let run = 0; run < RUNS; run++)
  for (const mode of MODES) {
    const path = join(dir, `persist-${mode}-${run}.db`);
    const ledger = SqliteLedger.open(path, genesis, { synchronous: mode });
    const d = new Uint8Array(32);
    const t0 = process.hrtime.bigint();
    for (let i = 1; i <= PERSISTS; i++) ledger.persist({ kind: 'commit', view: 0, seq: i, digest: d });
    persisted.get(mode)!.push(PERSISTS / sec(t0));
    ledger.close();
    rmSync(path, { force: true });
  }
const persistRows = MODES.map((m) => ({ synchronous: m, perS: stat(persisted.get(m)!) }));
for (const p of persistRows)
  console.log(`${p.synchronous.padEnd(6)} persist: ${p.perS.median.toFixed(0)} records/s`);
rmSync(dir, { recursive: true, force: true });

const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}`;
const out = {
  part: 'ledger',
  machine,
  command: 'npm run bench:ledger',
  tmpdir: tmpdir(),
  runs: RUNS,
  q: Q,
  rows,
  persist: persistRows,
};
if (!quick) {
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/ledger.json', `${JSON.stringify(out, null, 2)}\n`);
}

const f0 = (x: number) => x.toFixed(0);
const cell = (s: Stat, scale = 1) => `${f0(s.median * scale)} (${f0(s.min * scale)}–${f0(s.max * scale)})`;
const table = [
  '| synchronous | batch size | batches × runs | batches/s | requests/s | execute only, batches/s | replay on open, requests/s |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.synchronous} | ${r.batchSize} | ${r.batches} × ${RUNS} | ${cell(r.batchesPerS)} | ${cell(r.requestsPerS)} | ${cell(r.executeBatchesPerS)} | ${cell(r.replayRequestsPerS)} |`,
  ),
].join('\n');
const persistTable = [
  '| synchronous (configured) | persist() records/s |',
  '| --- | ---: |',
  ...persistRows.map((p) => `| ${p.synchronous} | ${cell(p.perS)} |`),
].join('\n');
const section = [
  '<!-- ledger-bench:begin -->',
  `Machine: ${machine}; file system of \`${tmpdir()}\`. Command: \`npm run bench:ledger\`. ` +
    `${RUNS} runs per row, each on a fresh file; median (min–max).`,
  '',
  table,
  '',
  persistTable,
  '<!-- ledger-bench:end -->',
].join('\n');
if (!quick) {
  const doc = 'docs/ledger.md';
  try {
    const md = readFileSync(doc, 'utf8');
    if (md.includes('<!-- ledger-bench:begin -->'))
      writeFileSync(doc, md.replace(/<!-- ledger-bench:begin -->[\s\S]*<!-- ledger-bench:end -->/, section));
    // BENCHMARKS.md carries the same table between its own markers.
    const bench = readFileSync('BENCHMARKS.md', 'utf8');
    const mine = section
      .replace('ledger-bench:begin', 'ledger:begin')
      .replace('ledger-bench:end', 'ledger:end');
    if (bench.includes('<!-- ledger:begin -->'))
      writeFileSync('BENCHMARKS.md', bench.replace(/<!-- ledger:begin -->[\s\S]*<!-- ledger:end -->/, mine));
  } catch {
    // no doc to update
  }
}
console.log(`\n${table}\n\n${persistTable}`);
