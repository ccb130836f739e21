import { describe, expect, it } from 'vitest';
import { step, type Target } from '../../bench/parts/protocol.ts';

const busyFor = (ms: number) => {
  const t = performance.now();
  while (performance.now() - t < ms) {}
};

describe('protocol bench step', () => {
  it('reads the CPU of a step whose load loop returns before the window timer fires', async () => {
    // 15 requests at 50/s over a 300 ms window. The last one (sent at 280 ms) keeps this process busy past
    // the window's end, so the loop finds nothing left to wait for and returns within the same turn, before
    // any timer runs: the meter used to read only on its timer, which the loop's return then cleared (0 %).
    let sent = 0;
    const send = async () => {
      busyFor(++sent === 15 ? 40 : 1);
    };
    const t: Target = { label: 'light', send, pids: () => [process.pid], settle: async () => {} };
    const s = await step(t, { rate: 50 }, 300);
    expect(s.ok).toBe(15);
    expect(s.cpu.generator).toBeGreaterThan(0);
    expect(s.cpu.servers).toBeGreaterThan(0);
    // The busy loops ran on this process's main thread: its share is there, and within the process's (to
    // two 10 ms clock ticks over the window; see cpuMeter).
    expect(s.cpu.serverMains).toBeGreaterThan(0);
    expect(s.cpu.serverMains).toBeLessThanOrEqual(s.cpu.servers + (100 * 20) / 300);
  });
});
