import { describe, expect, it } from 'vitest';
import { missPercent, ratioAgainst } from '../../bench/lib/stats.ts';

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
