/**
 * npm run bench:rates — what a certified request costs the group at each offered rate, below the peak.
 *
 * One group of real node processes (4 nodes; `--n` up to 10) with the stand-in model
 * (bench/parts/protocol.ts `withGroup`: `group init`'s settings, no inference cost), driven as the protocol
 * part's batch mode drives it (the SDK, client batch signing, requests arriving within the linger signed and
 * posted together, each batch to one node, which forwards it). After a closed-loop warm-up it steps
 * open-loop rates from low to high and prints, per rate: certified/s, p50 and p99, requests per consensus
 * batch and per client batch, the messages the nodes sent each other per request (by kind), and the CPU per
 * request of the nodes' main threads, of their other threads and of the load generator, with the cores the
 * nodes kept busy.
 *
 * What it is for: the protocol part's p99 target is read at half of the peak, and the e2e part's at half of
 * the fan-out's; this shows how the group's CPU and batching behave there (BENCHMARKS.md, "CPU against the
 * offered rate").
 *
 * `--rates R1,R2,…` (250,500,1000,1500), `--n N` (4), `--ms M` per rate (8000; 4000 with --quick),
 * `--warm-ms M` (20000; 8000 with --quick), `--linger MS` (the client's batch linger, 2 as the protocol
 * part), `--replica JSON` (replica settings over the bench's, e.g. `{"batchTimeoutMs":20}`), `--stages` (the
 * nodes trace their steps, DROPBEAR_TRACE_STEPS, and each rate gets the latency stages of bench/stages.ts;
 * tracing costs the nodes some CPU of its own), `--quick`. Writes no results file.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { standInInput } from '../src/node/standin-backend.ts';
import { type FlagSpecs, scriptFlagParsed, scriptFlags } from './lib/args.ts';
import { BatchSender, makeVerifier } from './lib/dropbear-load.ts';
import { tempDir } from './lib/extra.ts';
import { lightFetch } from './lib/http.ts';
import { describeMachine, machine } from './lib/machine.ts';
import { flag } from './lib/part.ts';
import { type RateRow, rateRow, rowsAcceptedIn } from './lib/rates.ts';
import { STAGES, stageGroups, stageRows, traceQuorum } from './lib/stages.ts';
import { replicaPatch } from './lib/variant.ts';
import {
  CLIENT_BATCH,
  counters,
  LINGER_MS,
  settleGroup,
  step,
  type Target,
  withGroup,
} from './parts/protocol.ts';

const COMMAND = 'npm run bench:rates';
const FLAGS: FlagSpecs = {
  rates: { kind: 'counts', help: 'open-loop rates, requests/s (250,500,1000,1500)' },
  n: {
    kind: 'count',
    help: 'nodes in the group (4)',
    min: { value: 4, why: 'a group that tolerates a fault' },
    max: { value: 10, why: 'the protocol part goes up to 10 on two cores' },
  },
  ms: { kind: 'ms', help: 'measured window per rate (8000, 4000 with --quick)' },
  'warm-ms': { kind: 'ms', help: 'closed-loop warm-up before the first rate (20000, 8000 with --quick)' },
  linger: { kind: 'ms', help: `the client's batch linger (${LINGER_MS}, as the protocol part)` },
  replica: { kind: 'text', value: 'JSON', help: "replica settings over the bench's (none)" },
  stages: { kind: 'switch', help: 'trace the nodes and print latency stages per rate' },
  quick: { kind: 'switch', help: 'a short run' },
};
const given = scriptFlags(process.argv.slice(2), FLAGS, COMMAND);
const quick = given.includes('--quick');
const num = (name: string, dflt: number): number => Number(flag(given, name) ?? dflt);
const RATES = (flag(given, 'rates') ?? '250,500,1000,1500').split(',').map(Number);
const N = num('n', 4);
const MS = num('ms', quick ? 4000 : 8000);
const WARM_MS = num('warm-ms', quick ? 8000 : 20_000);
const LINGER = num('linger', LINGER_MS);
const REPLICA = scriptFlagParsed(given, 'replica', replicaPatch, FLAGS, COMMAND);
const STAGES_ON = given.includes('--stages');
const WARM_CONCURRENCY = 512;

/** The flags as a shell would take them back (JSON settings quoted). */
const ARGS = process.argv
  .slice(2)
  .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`))
  .join(' ');
const m = machine();
console.log(`Machine: ${describeMachine(m)}.`);
console.log(
  `Command: ${COMMAND}${ARGS ? ` -- ${ARGS}` : ''}. ${N} nodes, stand-in model, client batches of up to ${CLIENT_BATCH} (linger ${LINGER} ms) each posted to one node in turn; ${WARM_MS / 1000} s closed loop at ${WARM_CONCURRENCY} in flight, then each rate open loop for ${MS / 1000} s; replica settings: group init's${REPLICA ? ` with ${JSON.stringify(REPLICA)}` : ''}.`,
);

const trace = STAGES_ON ? tempDir('rates-trace') : null;
const savedTrace = process.env.DROPBEAR_TRACE_STEPS;
if (trace) process.env.DROPBEAR_TRACE_STEPS = join(trace.dir, 't');
const http = lightFetch({ maxSockets: 256 });
const inputs = Array.from({ length: 1024 }, (_, i) => standInInput(i));
const rows: RateRow[] = [];
const windows: { from: number; to: number }[] = [];
try {
  await withGroup(N, { log: () => {}, replica: REPLICA }, async ({ g, pids }) => {
    if (trace) {
      if (savedTrace === undefined) delete process.env.DROPBEAR_TRACE_STEPS;
      else process.env.DROPBEAR_TRACE_STEPS = savedTrace;
    }
    const batcher = new BatchSender({
      genesis: g.genesis,
      key: g.clientKey(),
      nodes: g.file.nodes,
      fetch: http.fetch,
      inputs,
      maxBatch: CLIENT_BATCH,
      lingerMs: LINGER,
      timeoutMs: Math.max(5000, MS),
      verifier: makeVerifier(1),
    });
    const t: Target = {
      label: 'rates',
      send: batcher.send,
      pids: () => pids,
      settle: () => settleGroup(g, http.fetch),
      counters: () => counters(g, http.fetch),
    };
    const warm = await step(t, { concurrency: WARM_CONCURRENCY }, WARM_MS);
    console.error(`warm-up: ${warm.throughput.toFixed(0)} certified/s closed loop`);
    for (const rate of RATES) {
      const before = batcher.batches;
      const from = Date.now();
      const s = await step(t, { rate }, MS);
      windows.push({ from, to: from + MS });
      const row = rateRow({ ...s, offered: rate }, batcher.batches - before);
      rows.push(row);
      console.error(
        `${rate}/s: ${row.perSec.toFixed(0)} certified/s, p99 ${row.p99.toFixed(1)} ms, nodes ${row.nodeCores.toFixed(2)} cores`,
      );
    }
  });
} finally {
  http.close();
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
console.log('');
console.log(
  '| offered /s | certified /s | failed | p50 ms | p99 ms | requests per consensus batch | per client batch | peer messages per request | nodes CPU-ms per request: main threads | other threads | generator CPU-ms per request | nodes busy, cores |',
);
console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  const msgs = `${f2(r.messagesTotal)} (${r.messages.map(([k, v]) => `${k} ${f2(v)}`).join(', ')})`;
  console.log(
    `| ${r.offered} | ${r.perSec.toFixed(0)} | ${r.failed} | ${f1(r.p50)} | ${f1(r.p99)} | ${f1(r.perBatch)} | ${f1(r.perClientBatch)} | ${msgs} | ${f2(r.mainMs)} | ${f2(r.otherMs)} | ${f2(r.generatorMs)} | ${f2(r.nodeCores)} |`,
  );
}

if (trace) {
  const files = readdirSync(trace.dir)
    .filter((f) => /^t\.\d+$/.test(f))
    .map((f) => join(trace.dir, f));
  const lines = files.flatMap((p) => readFileSync(p, 'utf8').split('\n'));
  const all = stageRows(lines, traceQuorum(files.length).q);
  console.log('');
  console.log(`Latency stages by rate (ms, means; bench/stages.ts), from ${files.length} node traces:`);
  console.log(`| offered /s | group | requests | ${STAGES.join(' | ')} |`);
  console.log(`| ---: | --- | ---: |${STAGES.map(() => ' ---: |').join('')}`);
  windows.forEach((w, i) => {
    for (const gr of stageGroups(rowsAcceptedIn(all, w.from, w.to)))
      console.log(
        `| ${rows[i].offered} | ${gr.label} | ${gr.count} | ${STAGES.map((k) => gr.mean[k].toFixed(1)).join(' | ')} |`,
      );
  });
  trace.remove();
}
process.exit(0);
