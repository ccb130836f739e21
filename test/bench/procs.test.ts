import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cpuMeter, cpuMsOf, mainThreadCpuMsOf } from '../../bench/lib/procs.ts';

/**
 * A child whose CPU goes into a worker thread (`where` 'worker') or its main thread, `ms` of CPU time in
 * all (the process's: the other thread idles). Spun by CPU time, not wall time: a 600 ms wall-time spin got
 * under 250 ms of CPU while other tests loaded both cores (2026-12-05).
 */
async function busyChild(where: 'worker' | 'main', ms: number) {
  const spin = `const t = process.cpuUsage(); while (process.cpuUsage(t).user < ${ms * 1000}) {}`;
  const code =
    where === 'worker'
      ? `const { Worker } = require('node:worker_threads'); const w = new Worker(${JSON.stringify(spin)}, { eval: true }); w.on('exit', () => { console.log('done'); setInterval(() => {}, 1000); });`
      : `setTimeout(() => { ${spin}; console.log('done'); setInterval(() => {}, 1000); }, 200);`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res) => child.stdout.once('data', () => res()));
  return child;
}

describe('CPU per process and per main thread (/proc)', () => {
  it("a worker thread's CPU counts for the process, not for its main thread", async () => {
    const meter = cpuMeter([process.pid]);
    const child = await busyChild('worker', 400);
    try {
      const whole = cpuMsOf(child.pid!);
      const main = mainThreadCpuMsOf(child.pid!);
      expect(whole).toBeGreaterThanOrEqual(250);
      expect(main).toBeLessThan(whole / 2);
    } finally {
      child.kill();
    }
    const m = meter();
    // Each figure is user plus system time, each in whole clock ticks (10 ms), each split separately from
    // the thread's or the process's run time: a main thread may read up to ~2 ticks more per read, so 4
    // for a difference of two reads (CI saw 30 ms against 10 and 20).
    expect(m.mains[0]).toBeLessThanOrEqual(m.others[0] + 40);
  });

  it("a busy main thread's CPU is the main thread's", async () => {
    const child = await busyChild('main', 400);
    try {
      const whole = cpuMsOf(child.pid!);
      const main = mainThreadCpuMsOf(child.pid!);
      expect(main).toBeGreaterThanOrEqual(250);
      expect(main).toBeGreaterThan(0.8 * whole);
    } finally {
      child.kill();
    }
  });

  it('a process that is gone reads NaN', () => {
    expect(mainThreadCpuMsOf(2 ** 22 + 12345)).toBeNaN();
    expect(cpuMsOf(2 ** 22 + 12345)).toBeNaN();
  });
});
