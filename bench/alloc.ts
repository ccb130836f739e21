/**
 * npm run bench:alloc — where the simulated group's memory allocation goes, per certified request.
 *
 * Runs the whole n = 4 group in this process (as bench:core does: stand-in model, client batches of 64,
 * consensus batches of 1,024) once to warm up, then once under V8's sampling heap profiler with the objects
 * that garbage collection already reclaimed kept in the profile, so it counts every allocation, not only
 * what is still alive at the end. Prints the bytes allocated per certified request, by function: self (the
 * function's own allocations) and inclusive (with everything it calls). Garbage collection is about a
 * quarter of the simulator's CPU (BENCHMARKS.md, "Core"); this names what it collects.
 *
 * Flags (`--name=value`): --requests (16000), --client-batch (64), --batch (1024), --top (30), --out FILE
 * (also write the raw profile, loadable in Chrome DevTools' Memory tab as a .heapprofile).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { simulate } from '../src/sim/world.ts';
import { type FlagSpecs, scriptFlags } from './lib/args.ts';
import { flag } from './lib/part.ts';

interface CallFrame {
  functionName: string;
  url: string;
}
interface ProfileNode {
  callFrame: CallFrame;
  selfSize: number;
  children: ProfileNode[];
}

const FLAGS: FlagSpecs = {
  requests: { kind: 'count', help: 'requests in the measured run (16000)' },
  'client-batch': { kind: 'count', help: 'requests a client signs together (64)' },
  batch: { kind: 'count', help: 'consensus batch size (1024)' },
  top: { kind: 'count', help: 'functions listed in each table (30)' },
  out: { kind: 'text', help: 'also write the raw profile here (a .heapprofile, for DevTools)' },
};
const given = scriptFlags(process.argv.slice(2), FLAGS, 'npm run bench:alloc');
const requests = Number(flag(given, 'requests') ?? 16_000);
const clientBatch = Number(flag(given, 'client-batch') ?? 64);
const batchSize = Number(flag(given, 'batch') ?? 1024);
const top = Number(flag(given, 'top') ?? 30);
const out = flag(given, 'out');

const run = (seed: number) => {
  const r = simulate({
    nodes: 4,
    requests,
    // Every node's own checks: the figure is what certifying costs all four of them.
    sharedChecks: false,
    seed,
    rate: 50,
    inferBatch: 64,
    clientBatch,
    replica: { batchSize, batchTimeoutMs: 2, window: 64 },
  });
  if (!r.done || r.certificates.size !== requests) throw new Error('the simulated run did not finish');
  return r;
};

run(1);
const session = new Session();
session.connect();
await session.post('HeapProfiler.enable');
// Both flags are V8's (Node 20 has them): without them the profile holds only objects still alive.
await session.post('HeapProfiler.startSampling', {
  samplingInterval: 4096,
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: true,
} as never);
run(2);
const { profile } = (await session.post('HeapProfiler.stopSampling')) as { profile: { head: ProfileNode } };
session.disconnect();
if (out) writeFileSync(out, JSON.stringify(profile));

const label = (n: ProfileNode) => {
  const file = n.callFrame.url.split('/').slice(-2).join('/');
  return `${n.callFrame.functionName || '(anonymous)'}${file ? ` ${file}` : ''}`;
};
const self = new Map<string, number>();
const inclusive = new Map<string, number>();
let total = 0;
/** Adds the node's subtree to `inclusive` once per stack (recursion counted once) and returns its size. */
function walk(n: ProfileNode, onStack: Set<string>): number {
  const key = label(n);
  total += n.selfSize;
  self.set(key, (self.get(key) ?? 0) + n.selfSize);
  const first = !onStack.has(key);
  if (first) onStack.add(key);
  let sum = n.selfSize;
  for (const c of n.children) sum += walk(c, onStack);
  if (first) {
    onStack.delete(key);
    inclusive.set(key, (inclusive.get(key) ?? 0) + sum);
  }
  return sum;
}
walk(profile.head, new Set());

const perRequest = (b: number) => `${(b / requests).toFixed(0).padStart(7)} B`;
const share = (b: number) => `${((100 * b) / total).toFixed(1).padStart(5)} %`;
console.log(
  `n = 4, ${requests} requests, client batches of ${clientBatch}, consensus batches of ${batchSize}: ` +
    `${(total / requests / 1024).toFixed(1)} KB allocated per certified request (sampled every 4 KB)`,
);
for (const [title, m] of [
  ['self', self],
  ['inclusive', inclusive],
] as const) {
  console.log(`\n${title}:`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${perRequest(v)} ${share(v)}  ${k}`);
}
