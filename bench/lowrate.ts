/**
 * npm run bench:lowrate — where a lightly loaded group's CPU goes. A 4-node group of real node processes
 * with the stand-in model (bench/parts/protocol.ts `withGroup`: group init's settings, no inference cost)
 * takes open-loop load at a low fixed rate (default 25 requests/s, about the e2e part's half-load rate)
 * after a warm-up, in six settings, interleaved round by round:
 *
 * - as configured (`group init`'s replica settings and durability: at this rate one request per consensus batch);
 * - with 200 ms batch timeouts (both `batchTimeoutMs` and `idleBatchTimeoutMs`): several requests per
 *   batch, so the difference to the first row is what a batch costs beyond its requests;
 * - without receipt commits (replica `receiptCommits` false: each node sends its COMMIT as well as its
 *   prepared receipt signature, as before 2026-12-04 ~06:00 UTC, instead of letting the signature stand for
 *   the COMMIT; README, "Prepared receipts");
 * - without prepared receipts (replica `preparedReceipts` false: every node signs the receipt after it
 *   executed the batch, a fourth all-to-all round, instead of with its COMMIT; README, "Prepared receipts");
 * - with full durability (every signed record and execution fsynced; `group init` writes prepared since
 *   2026-12-03, full before);
 * - with relaxed durability (no fsync before a node signs; docs/ledger.md).
 *
 * Per request (the 4 nodes together): CPU of the main threads and of the other threads (libuv's pool,
 * which runs the WAL fsyncs, and V8's), and the main threads' context switches. The machine line carries
 * the speed reference with its figure right after a sleep (bench/lib/machine.ts, `wakeUs`).
 *
 * `--rate R` (requests/s), `--ms M` (measured window per row), `--rounds K`, `--quick` (1 round, 5 s),
 * `--send-to-all` (the client sends each request to every node, as the e2e part's does, instead of to one
 * node that forwards it).
 */

import { GROUP_DURABILITY } from '../src/cli/group.ts';
import type { Durability } from '../src/ledger/sqlite.ts';
import { standInInput } from '../src/node/standin-backend.ts';
import { type FlagSpecs, scriptFlags } from './lib/args.ts';
import { BenchClient, makeVerifier, sdkSender } from './lib/dropbear-load.ts';
import { lightFetch } from './lib/http.ts';
import { describeMachine, machine } from './lib/machine.ts';
import { flag } from './lib/part.ts';
import { mainThreadSwitchesOf } from './lib/procs.ts';
import { median } from './lib/stats.ts';
import { counters, settleGroup, step, type Target, withGroup } from './parts/protocol.ts';

const FLAGS: FlagSpecs = {
  rate: { kind: 'number', help: 'requests per second (25)' },
  ms: { kind: 'number', value: 'MS', help: 'measured window per round (12000, 5000 with --quick)' },
  rounds: { kind: 'count', help: 'interleaved rounds (2, 1 with --quick)' },
  quick: { kind: 'switch', help: 'a short run' },
  'send-to-all': { kind: 'switch', help: 'the client sends every request to every node' },
};
const given = scriptFlags(process.argv.slice(2), FLAGS, 'npm run bench:lowrate');
const arg = (name: string, dflt: number): number => Number(flag(given, name) ?? dflt);

const quick = given.includes('--quick');
const SEND_TO_ALL = given.includes('--send-to-all');
const RATE = arg('rate', 25);
const MS = arg('ms', quick ? 5000 : 12_000);
const ROUNDS = arg('rounds', quick ? 1 : 2);
const WARM_MS = quick ? 3000 : 8000;

interface Setting {
  label: string;
  durability: Durability;
  replica?: Record<string, number | boolean>;
}
const SETTINGS: Setting[] = [
  { label: 'as configured', durability: GROUP_DURABILITY },
  {
    label: 'batch timeouts 200 ms',
    durability: GROUP_DURABILITY,
    replica: { batchTimeoutMs: 200, idleBatchTimeoutMs: 200 },
  },
  {
    label: 'without receipt commits',
    durability: GROUP_DURABILITY,
    replica: { receiptCommits: false },
  },
  {
    label: 'without prepared receipts',
    durability: GROUP_DURABILITY,
    replica: { preparedReceipts: false },
  },
  { label: 'full durability', durability: 'full' },
  { label: 'relaxed durability', durability: 'relaxed' },
];

interface Row {
  perSec: number;
  p50: number;
  p99: number;
  perBatch: number;
  mainMs: number;
  otherMs: number;
  voluntary: number;
  involuntary: number;
}

async function measure(s: Setting): Promise<Row> {
  const http = lightFetch({ maxSockets: 256 });
  const inputs = Array.from({ length: 1024 }, (_, i) => standInInput(i));
  try {
    return await withGroup(
      4,
      { log: () => {}, durability: s.durability, replica: s.replica },
      async ({ g, pids }) => {
        const client = new BenchClient(
          {
            genesis: g.genesis,
            nodes: g.file.nodes,
            key: g.clientKey(),
            sendTo: SEND_TO_ALL ? 'all' : 1,
            timeoutMs: 5000,
            fetch: http.fetch,
          },
          makeVerifier(1),
        );
        const t: Target = {
          label: s.label,
          send: sdkSender(client, inputs),
          pids: () => pids,
          settle: () => settleGroup(g, http.fetch),
          counters: () => counters(g, http.fetch),
        };
        await step(t, { concurrency: 8 }, WARM_MS);
        const before = pids.map(mainThreadSwitchesOf);
        const r = await step(t, { rate: RATE }, MS);
        const after = pids.map(mainThreadSwitchesOf);
        const n = r.ok;
        if (n === 0) throw new Error(`${s.label}: no request answered`);
        const switches = (k: 'voluntary' | 'involuntary') =>
          after.reduce((a, x, i) => a + x[k] - before[i][k], 0) / n;
        // % of a core over the window, at `throughput` requests/s: 10 × % / throughput = ms per request.
        const perRequest = (pct: number) => (10 * pct) / r.throughput;
        return {
          perSec: r.throughput,
          p50: r.latency.p50,
          p99: r.latency.p99,
          perBatch: r.batches ? n / r.batches : Number.NaN,
          mainMs: perRequest(r.cpu.serverMains),
          otherMs: perRequest(r.cpu.servers - r.cpu.serverMains),
          voluntary: switches('voluntary'),
          involuntary: switches('involuntary'),
        };
      },
    );
  } finally {
    http.close();
  }
}

const m = machine();
console.log(`Machine: ${describeMachine(m)}.`);
console.log(
  `Command: npm run bench:lowrate -- --rate ${RATE} --ms ${MS} --rounds ${ROUNDS}${quick ? ' --quick' : ''}${SEND_TO_ALL ? ' --send-to-all' : ''}. 4 nodes, stand-in model, ${SEND_TO_ALL ? 'each request sent to every node' : 'each request sent to one node (round robin), which forwards it'}, open loop at ${RATE} requests/s for ${MS / 1000} s per row after ${WARM_MS / 1000} s at 8 in flight; settings interleaved round by round; median and min–max over ${ROUNDS} round(s).`,
);
const rows = new Map<string, Row[]>(SETTINGS.map((s) => [s.label, []]));
for (let round = 0; round < ROUNDS; round++)
  for (const s of SETTINGS) {
    const r = await measure(s);
    rows.get(s.label)?.push(r);
    console.error(
      `round ${round + 1} ${s.label}: ${r.perSec.toFixed(1)}/s, main ${r.mainMs.toFixed(2)} + other ${r.otherMs.toFixed(2)} CPU-ms per request`,
    );
  }

const cell = (xs: number[], digits: number) => {
  const ok = xs.filter(Number.isFinite);
  if (ok.length === 0) return 'n/a';
  const med = median(ok).toFixed(digits);
  return ok.length === 1
    ? med
    : `${med} (${Math.min(...ok).toFixed(digits)}–${Math.max(...ok).toFixed(digits)})`;
};
console.log('');
console.log(
  "| setting | answered/s | p50 ms | p99 ms | requests per batch | main threads CPU-ms / request | other threads CPU-ms / request | main threads' switches / request, voluntary | involuntary |",
);
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const [label, rs] of rows) {
  const col = (f: (r: Row) => number, d: number) => cell(rs.map(f), d);
  console.log(
    `| ${label} | ${col((r) => r.perSec, 1)} | ${col((r) => r.p50, 1)} | ${col((r) => r.p99, 1)} | ${col((r) => r.perBatch, 2)} | ${col((r) => r.mainMs, 2)} | ${col((r) => r.otherMs, 2)} | ${col((r) => r.voluntary, 1)} | ${col((r) => r.involuntary, 1)} |`,
  );
}
process.exit(0);
