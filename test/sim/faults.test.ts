import { describe, expect, it } from 'vitest';
import { randomSchedule, runSchedule, shrink } from '../../src/sim/faults.ts';

describe('fault schedules', () => {
  it('the same seed gives the same schedule, and schedules keep at most f nodes Byzantine or crashed', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const s = randomSchedule(seed);
      expect(randomSchedule(seed)).toEqual(s);
      const f = Math.floor((s.nodes - 1) / 3);
      const faulty = new Set([
        ...s.byzantine.map(([id]) => id),
        ...s.faults.flatMap((x) => (x.kind === 'crash' ? [x.node] : [])),
      ]);
      expect(faulty.size).toBeLessThanOrEqual(f);
      // Everything heals by healAt: each crash has a restart before it.
      for (const x of s.faults) {
        if (x.kind !== 'crash') continue;
        expect(
          s.faults.some((y) => y.kind === 'restart' && y.node === x.node && y.at > x.at && y.at <= s.healAt),
        ).toBe(true);
      }
    }
  });

  it('a failing schedule shrinks to a shorter one that still fails', () => {
    // A liveness bound nothing can meet makes every schedule fail: shrinking must strip it down.
    const s = { ...randomSchedule(5), requests: 80 };
    const opts = { livenessBoundMs: 0, sqlite: false };
    expect(runSchedule(s, opts).ok).toBe(false);
    const small = shrink(s, opts, 30);
    expect(runSchedule(small, opts).ok).toBe(false);
    expect(small.faults.length + small.byzantine.length + small.requests).toBeLessThan(
      s.faults.length + s.byzantine.length + s.requests,
    );
  });
});
