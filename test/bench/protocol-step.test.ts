import { describe, expect, it } from 'vitest';
import { step, type Target } from '../../bench/parts/protocol.ts';

describe('protocol bench step', () => {
  it('reads the CPU of a light step whose load loop returns before the window ends', async () => {
    // Each send keeps this process busy for 2 ms; at 50/s over 300 ms the last answer is back ~20 ms
    // before the window's end, so the loop returns first (the meter used to read only on a timer then,
    // which the loop's return cleared: 0 %).
    const busy = async () => {
      const t = performance.now();
      while (performance.now() - t < 2) {}
    };
    const t: Target = { label: 'light', send: busy, pids: () => [process.pid], settle: async () => {} };
    const s = await step(t, { rate: 50 }, 300);
    expect(s.ok).toBe(15);
    expect(s.cpu.generator).toBeGreaterThan(0);
    expect(s.cpu.servers).toBeGreaterThan(0);
  });
});
