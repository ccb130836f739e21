/**
 * `npm run stages -- <prefix> [--skip-ms=N] [--n=N] [--f=F]`: reads the step traces `<prefix>.<node>` that nodes
 * started with DROPBEAR_TRACE_STEPS=<prefix> wrote (src/node/steptrace.ts) and prints each latency stage's
 * mean for the fastest half of the requests, p50–p90, p90–p99 and the slowest 1 % (bench/lib/stages.ts).
 * --skip-ms drops requests accepted in the first N ms of the trace (warm-up); n defaults to the number of
 * trace files, f to what n allows (n ≥ 3f + 1), and q is the group's quorum, ⌊(n + f)/2⌋ + 1 (traceQuorum).
 * Use a fresh prefix per run (the files are appended to).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { STAGES, stageGroups, stageRows, traceQuorum } from './lib/stages.ts';

const args = process.argv.slice(2);
const prefix = args.find((a) => !a.startsWith('--'));
const opt = (k: string) => args.find((a) => a.startsWith(`--${k}=`))?.split('=')[1];
if (!prefix) {
  console.error('usage: npm run stages -- <trace prefix> [--skip-ms=N] [--n=N] [--f=F]');
  process.exit(2);
}
const dir = dirname(prefix);
const base = basename(prefix);
const files = readdirSync(dir)
  .filter((f) => f.startsWith(`${base}.`) && /^\d+$/.test(f.slice(base.length + 1)))
  .map((f) => join(dir, f));
if (files.length === 0) {
  console.error(`no trace files ${prefix}.<node> found`);
  process.exit(1);
}
const num = (k: string, d: number): number => {
  const v = opt(k);
  if (v === undefined) return d;
  const x = Number(v);
  if (!Number.isFinite(x) || x < 0) {
    console.error(`--${k} must be a number ≥ 0, not ${v}`);
    process.exit(2);
  }
  return x;
};
// n from the number of trace files and f from n: pass --n (and --f) when some node's trace is missing.
const n = num('n', files.length);
const { q } = traceQuorum(n, opt('f') === undefined ? undefined : num('f', 0));
const lines = files.flatMap((p) => readFileSync(p, 'utf8').split('\n'));
const rows = stageRows(lines, q, num('skip-ms', 0));
console.log(`${files.length} traces, q = ${q}, ${rows.length} requests from acceptance to certificate`);
console.log(['group', 'requests', ...STAGES.map((s) => `${s} ms`)].join('\t'));
for (const g of stageGroups(rows))
  console.log([g.label, g.count, ...STAGES.map((s) => g.mean[s].toFixed(1))].join('\t'));
