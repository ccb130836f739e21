import { describe, expect, it } from 'vitest';
import {
  blocksBySecond,
  bootstrapPercentileRatio,
  missPercent,
  ratioAgainst,
  seededRandom,
} from '../../bench/lib/stats.ts';

describe('report figures against a target', () => {
  it('prints enough decimals that a ratio never appears on the wrong side of its target', () => {
    expect(ratioAgainst(0.8994, 0.9, true)).toBe('0.899'); // 0.90 would read as met
    expect(ratioAgainst(0.89999, 0.9, true)).toBe('0.89999');
    expect(ratioAgainst(0.9012, 0.9, true)).toBe('0.90');
    expect(ratioAgainst(0.86, 0.9, true)).toBe('0.86');
    expect(ratioAgainst(1.5004, 1.5, false)).toBe('1.5004'); // 1.50 and 1.500 would read as met
    expect(ratioAgainst(1.4996, 1.5, false)).toBe('1.50'); // met, and 1.50 is met too
    expect(ratioAgainst(1.33, 1.5, false)).toBe('1.33');
  });
  it('a miss under 1 % keeps a decimal', () => {
    expect(missPercent(0.0667)).toBe('0.1');
    expect(missPercent(0.04)).toBe('< 0.1');
    expect(missPercent(12.4)).toBe('12');
  });
});

describe('pooled percentiles and their block bootstrap', () => {
  const fill = (n: number, x: number) => Array.from({ length: n }, () => x);

  it('the seeded generator repeats its sequence for a seed and stays in [0, 1)', () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    const c = seededRandom(8);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(Array.from({ length: 1000 }, () => b())).toEqual(xs);
    expect(Array.from({ length: 1000 }, () => c())).not.toEqual(xs);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(xs.reduce((s, x) => s + x, 0) / xs.length).toBeGreaterThan(0.45);
    expect(xs.reduce((s, x) => s + x, 0) / xs.length).toBeLessThan(0.55);
  });

  it('groups samples by the second they were scheduled in', () => {
    const blocks = blocksBySecond([
      { at: 1500, ms: 3 },
      { at: 10, ms: 1 },
      { at: 999.9, ms: 2 },
      { at: 3000, ms: 4 },
    ]);
    expect(blocks).toEqual([[1, 2], [3], [4]]);
  });

  it('a slow spell inside one block widens the interval; split into single requests it would not', () => {
    // Side a: ten one-second blocks of ten requests, one of them a slow spell (all 500 ms); side b: 100 ms.
    const a = [fill(10, 500), ...Array.from({ length: 9 }, () => fill(10, 100))];
    const b = Array.from({ length: 10 }, () => fill(10, 100));
    const r = bootstrapPercentileRatio(a, b, 99, { seed: 3 });
    expect(r.ratio).toBe(5);
    // A resample misses the slow block with probability 0.9^10 (~35 %): the lower end is 1.
    expect(r.lo).toBe(1);
    expect(r.hi).toBe(5);
    // The same samples as single-request blocks: 10 % of the requests are slow in almost every resample.
    const single = bootstrapPercentileRatio(
      a.flat().map((x) => [x]),
      b.flat().map((x) => [x]),
      99,
      { seed: 3 },
    );
    expect(single.lo).toBe(5);
    expect(single.hi).toBe(5);
  });

  it('identical sides give 1 inside the interval, and the same seed the same interval', () => {
    const rnd = seededRandom(11);
    const blocks = Array.from({ length: 30 }, () => Array.from({ length: 9 }, () => 60 + 40 * rnd()));
    const r = bootstrapPercentileRatio(blocks, blocks, 99, { seed: 5, iterations: 500 });
    expect(r.ratio).toBe(1);
    expect(r.lo).toBeLessThan(1);
    expect(r.hi).toBeGreaterThan(1);
    expect(bootstrapPercentileRatio(blocks, blocks, 99, { seed: 5, iterations: 500 })).toEqual(r);
    const twice = bootstrapPercentileRatio(
      blocks.map((blk) => blk.map((x) => 2 * x)),
      blocks,
      99,
      { seed: 5 },
    );
    expect(twice.ratio).toBeCloseTo(2, 12);
    expect(twice.lo).toBeLessThan(2);
    expect(twice.hi).toBeGreaterThan(2);
  });

  it('no samples on a side: the ratio is NaN and so is the interval', () => {
    const r = bootstrapPercentileRatio([], [[1, 2]], 99);
    expect(r.ratio).toBeNaN();
    expect(r.lo).toBeNaN();
  });
});
