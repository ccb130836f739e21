/**
 * npm run bench:viewchange — how long a view change takes in the simulator, in virtual time and in
 * round trips. The primary crashes mid-run; we measure (a) from the first VIEW-CHANGE sent to the last
 * honest node entering the new view (the protocol's own cost), and (b) from the crash to the first batch
 * executed in the new view (what a client sees, dominated by the request timeout). Deterministic: the
 * figures are virtual, so one run per configuration is exact.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { EPOCH_MS, Simulation } from '../src/sim/world.ts';
import { scriptFlags } from './lib/args.ts';

// No flags: the figures are virtual and exact; a flag given is refused (exit 2), not ignored.
scriptFlags(process.argv.slice(2), {}, 'npm run bench:viewchange');

interface Row {
  n: number;
  oneWayMs: number;
  rttMs: number;
  protocolMs: number;
  protocolRtts: number;
  outageMs: number;
  timeoutMs: number;
}

const rows: Row[] = [];
for (const n of [4, 7, 10]) {
  for (const oneWayMs of [1, 5, 20]) {
    const timeoutMs = 1000;
    const s = new Simulation({
      nodes: n,
      requests: 400,
      seed: 1,
      rate: 0.5,
      link: { delayMs: oneWayMs, jitterMs: 0 },
      replica: { viewChangeTimeoutMs: timeoutMs },
      maxTimeMs: 60_000,
    });
    const crashAt = 200;
    s.at(crashAt, () => s.crash(0));
    s.at(6000, () => s.restart(0, false));
    let firstAfter = Number.NaN;
    s.observer.executed = (node) => {
      if (Number.isNaN(firstAfter) && s.now - EPOCH_MS > crashAt && node.replica.view > 0) firstAfter = s.now;
    };
    const r = s.run();
    if (!r.done) throw new Error(`n=${n} delay=${oneWayMs}: did not finish`);
    const v1 = s.viewLog.filter((e) => e.view === 1 && e.node !== 0);
    const start = Math.min(...v1.map((e) => e.started));
    const end = Math.max(...v1.map((e) => e.entered ?? Number.NaN));
    const rtt = 2 * oneWayMs;
    rows.push({
      n,
      oneWayMs,
      rttMs: rtt,
      protocolMs: end - start,
      protocolRtts: (end - start) / rtt,
      outageMs: firstAfter - (EPOCH_MS + crashAt),
      timeoutMs,
    });
  }
}

const table = [
  '| n | one-way delay | VIEW-CHANGE → all in new view | in round trips | crash → first batch in new view | request timeout |',
  '| ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.n} | ${r.oneWayMs} ms | ${r.protocolMs.toFixed(1)} ms | ${r.protocolRtts.toFixed(2)} | ${r.outageMs.toFixed(0)} ms | ${r.timeoutMs} ms |`,
  ),
].join('\n');
console.log(table);
mkdirSync('bench/results', { recursive: true });
writeFileSync(
  'bench/results/viewchange.json',
  `${JSON.stringify({ part: 'viewchange', command: 'npm run bench:viewchange', rows }, null, 2)}\n`,
);
const section = `<!-- viewchange:begin -->\nCommand: \`npm run bench:viewchange\` (virtual time: deterministic, one run per row; no jitter).\n\n${table}\n<!-- viewchange:end -->`;
let md = readFileSync('BENCHMARKS.md', 'utf8');
md = md.includes('<!-- viewchange:begin -->')
  ? md.replace(/<!-- viewchange:begin -->[\s\S]*<!-- viewchange:end -->/, section)
  : `${md.trimEnd()}\n\n## View change time (simulator)\n\n${section}\n`;
writeFileSync('BENCHMARKS.md', md);
