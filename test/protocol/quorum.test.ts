import { describe, expect, it } from 'vitest';
import { quorumSize } from '../../src/protocol/index.ts';

describe('quorumSize', () => {
  it('is 2f + 1 when n = 3f + 1', () => {
    for (let f = 0; f <= 20; f++) expect(quorumSize(3 * f + 1, f)).toBe(2 * f + 1);
  });

  it('grows with n beyond 3f + 1: two quorums of five nodes share two (f + 1), not just one', () => {
    expect(quorumSize(5, 1)).toBe(4);
    expect(quorumSize(6, 1)).toBe(4);
    expect(quorumSize(7, 1)).toBe(5);
    expect(quorumSize(7, 2)).toBe(5);
    expect(quorumSize(9, 2)).toBe(6);
  });

  it('for every n ≤ 64 and f ≤ (n − 1) / 3: the smallest q whose quorums overlap in f + 1, and no more than n − f', () => {
    for (let n = 1; n <= 64; n++)
      for (let f = 0; 3 * f + 1 <= n; f++) {
        const q = quorumSize(n, f);
        expect(2 * q - n, `n=${n} f=${f}`).toBeGreaterThanOrEqual(f + 1); // any two quorums share an honest node
        expect(2 * (q - 1) - n, `n=${n} f=${f}`).toBeLessThan(f + 1); // and q − 1 would not
        expect(q, `n=${n} f=${f}`).toBeLessThanOrEqual(n - f); // live with f nodes silent
      }
  });
});
