/**
 * npm run bench:core — certified requests per CPU-second in the simulator (n=4, stand-in model), swept
 * over the consensus batch size, with the client signing each request alone (client batch 1) or 64 at a
 * time (one signature over the batch's Merkle root, signRequestBatch). The whole group runs in this one
 * process on one core, so the figure is the CPU cost of certifying a request summed over all four nodes
 * (plus the client's signing).
 * Baseline, measured in the same run: the work no design can avoid per request with one signature per
 * request — the client signs once and each of the n nodes verifies that signature once. The batch
 * baseline is the same floor with client batches of 64: per batch the client signs once and each node
 * verifies once; per request everyone hashes the request and its inclusion path.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { verifyCertificate } from '../src/certificate/index.ts';
import {
  cryptoStats,
  encode,
  keyPairFromSeed,
  Request,
  RequestAuthCache,
  sha256,
  signRequest,
  signRequestBatch,
  verifyRequestAuth,
} from '../src/protocol/index.ts';
import { simulate } from '../src/sim/world.ts';
import { scriptFlags } from './lib/args.ts';
import { describeMachine, machine as machineNow } from './lib/machine.ts';

const args = scriptFlags(
  process.argv.slice(2),
  {
    quick: {
      kind: 'switch',
      help: 'a smoke run: 1 run per row, fewer requests; BENCHMARKS.md left as it is',
    },
  },
  'npm run bench:core',
);
const quick = args.includes('--quick');
const RUNS = quick ? 1 : 3;
// Measured first, before this process loads the CPU (the speed reference, the load average, the commit).
const started = machineNow();
const N = 4;
/** Rows: consensus batch size × client batch size. */
const ROWS: { batchSize: number; clientBatch: number }[] = [
  { batchSize: 1, clientBatch: 1 },
  { batchSize: 16, clientBatch: 1 },
  { batchSize: 128, clientBatch: 1 },
  { batchSize: 1024, clientBatch: 1 },
  { batchSize: 128, clientBatch: 64 },
  { batchSize: 1024, clientBatch: 64 },
];
const CLIENT_BATCH = 64;

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function baseline(requests: number): number {
  const client = keyPairFromSeed(new Uint8Array(32).fill(9));
  const start = cpuMs();
  for (let i = 0; i < requests; i++) {
    const input = new Uint8Array(48).fill(i & 0xff);
    const sr = signRequest(
      {
        groupId: new Uint8Array(32),
        client: client.publicKey,
        nonce: i,
        timestamp: 1,
        inputDigest: sha256(input),
        policy: null,
        maxFee: 1,
      },
      input,
      client,
    );
    for (let k = 0; k < N; k++) if (!verifyRequestAuth(sr)) throw new Error('baseline verify failed');
  }
  void encode(Request, {
    groupId: new Uint8Array(32),
    client: client.publicKey,
    nonce: 0,
    timestamp: 0,
    inputDigest: new Uint8Array(32),
    policy: null,
    maxFee: 0,
  });
  return requests / ((cpuMs() - start) / 1000);
}

/** The same floor with client batches of `per`: one signature and n checks per batch, hashing per request. */
function batchBaseline(requests: number, per: number): number {
  const client = keyPairFromSeed(new Uint8Array(32).fill(9));
  const caches = Array.from({ length: N }, () => new RequestAuthCache());
  const start = cpuMs();
  for (let b = 0; b < requests; b += per) {
    const reqs = [];
    for (let i = b; i < b + per; i++) {
      const input = new Uint8Array(48).fill(i & 0xff);
      const request = {
        groupId: new Uint8Array(32),
        client: client.publicKey,
        nonce: i,
        timestamp: 1,
        inputDigest: sha256(input),
        policy: null,
        maxFee: 1,
      };
      reqs.push({ request, input });
    }
    for (const sr of signRequestBatch(reqs, client))
      for (const cache of caches)
        if (!verifyRequestAuth(sr, cache)) throw new Error('baseline verify failed');
  }
  return requests / ((cpuMs() - start) / 1000);
}

interface Row {
  batchSize: number;
  clientBatch: number;
  requests: number;
  runs: number[];
  median: number;
  min: number;
  max: number;
  ratioToBaseline: number;
  batches: number;
  signsPerRequest: number;
  verifiesPerRequest: number;
  virtualMs: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const baseRuns: number[] = [];
const batchBaseRuns: number[] = [];
const rows: Row[] = [];
for (const { batchSize, clientBatch } of ROWS) {
  const requests = quick ? 500 : batchSize === 1 ? 1000 : 4000;
  const runs: number[] = [];
  let last: { batches: number; signs: number; verifies: number; virtualMs: number } | null = null;
  for (let i = 0; i < RUNS; i++) {
    baseRuns.push(baseline(2000));
    batchBaseRuns.push(batchBaseline(2048, CLIENT_BATCH));
    const s0 = { ...cryptoStats };
    const start = cpuMs();
    const r = simulate({
      nodes: N,
      // Every node's own checks: the figure is what certifying costs all four of them.
      sharedChecks: false,
      requests,
      seed: 100 + i,
      rate: 50,
      inferBatch: 64,
      clientBatch,
      replica: { batchSize, batchTimeoutMs: 2, window: 64 },
    });
    const spent = (cpuMs() - start) / 1000;
    if (!r.done || r.certificates.size !== requests)
      throw new Error(`batch ${batchSize}, client batch ${clientBatch}: run did not finish`);
    runs.push(requests / spent);
    last = {
      batches: r.batches,
      signs: cryptoStats.signs - s0.signs,
      verifies: cryptoStats.verifies - s0.verifies,
      virtualMs: r.virtualMs,
    };
    // Spot-check outside the timed region: the certificates are real.
    const sample = [...r.certificates.values()].slice(0, 5);
    for (const c of sample)
      if (!verifyCertificate(c, r.group.genesis).ok) throw new Error('invalid certificate');
  }
  const med = median(runs);
  rows.push({
    batchSize,
    clientBatch,
    requests,
    runs,
    median: med,
    min: Math.min(...runs),
    max: Math.max(...runs),
    ratioToBaseline: 0,
    batches: last!.batches,
    signsPerRequest: last!.signs / requests,
    verifiesPerRequest: last!.verifies / requests,
    virtualMs: last!.virtualMs,
  });
  console.log(
    `batch ${batchSize}, client batch ${clientBatch}: ${med.toFixed(0)} certified req/CPU-s (runs ${runs.map((x) => x.toFixed(0)).join(', ')})`,
  );
}
const base = median(baseRuns);
const batchBase = median(batchBaseRuns);
for (const r of rows) r.ratioToBaseline = r.median / base;

const machine = describeMachine(started);
const out = {
  part: 'core',
  machine,
  command: 'npm run bench:core',
  runs: RUNS,
  n: N,
  baseline: { median: base, runs: baseRuns },
  batchBaseline: { clientBatch: CLIENT_BATCH, median: batchBase, runs: batchBaseRuns },
  rows,
};
// A --quick run (one run per row, fewer requests) is a smoke test: it rewrites neither the results nor
// BENCHMARKS.md (it overwrote core.json with its figures).
if (!quick) {
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/core.json', `${JSON.stringify(out, null, 2)}\n`);
}

const table = [
  '| consensus batch size | client batch | requests per run | certified req / CPU-s (median) | spread (min–max) | × baseline | batches | signatures made / req | signatures verified / req |',
  '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.batchSize} | ${r.clientBatch} | ${r.requests} | ${r.median.toFixed(0)} | ${r.min.toFixed(0)}–${r.max.toFixed(0)} | ${r.ratioToBaseline.toFixed(2)} | ${r.batches} | ${r.signsPerRequest.toFixed(3)} | ${r.verifiesPerRequest.toFixed(2)} |`,
  ),
].join('\n');
const section = [
  '<!-- core:begin -->',
  `Machine: ${machine}. Command: \`npm run bench:core\`. ${RUNS} run(s) per row (seeds 100…); the spread is min–max over them.`,
  `Baseline in the same run (client signs once, each of the ${N} nodes verifies once): **${base.toFixed(0)} req/CPU-s** (median of ${baseRuns.length}).`,
  `Batch baseline (client batches of ${CLIENT_BATCH}: one signature and one check per node per batch, hashing per request): **${batchBase.toFixed(0)} req/CPU-s** (median of ${batchBaseRuns.length}). "× baseline" is against the first.`,
  '',
  table,
  '<!-- core:end -->',
].join('\n');
let md = '';
try {
  md = readFileSync('BENCHMARKS.md', 'utf8');
} catch {
  md = '# Benchmarks\n';
}
if (!quick) {
  md = md.includes('<!-- core:begin -->')
    ? md.replace(/<!-- core:begin -->[\s\S]*<!-- core:end -->/, section)
    : `${md.trimEnd()}\n\n## Core: certified requests per CPU-second (simulator)\n\n${section}\n`;
  writeFileSync('BENCHMARKS.md', md);
}
console.log(table);
console.log(
  `baseline ${base.toFixed(0)} req/CPU-s; batch baseline (client batch ${CLIENT_BATCH}) ${batchBase.toFixed(0)} req/CPU-s`,
);
