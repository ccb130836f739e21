/**
 * What the resizer keeps between inputs stays bounded whatever the inputs' sizes. A model that resizes the
 * whole image (MNIST's grey 28×28 path) needs taps as wide as the downscale factor: a tall, one-pixel-wide
 * input made a cache entry of tens of MB per height, kept up to 257 entries, and a scratch buffer of the
 * whole image's rows, kept for good. Inputs now have at most 65,500 rows (a uint8 DBT1 tensor too:
 * tensor-bounds.test.ts), so this drives the resizer itself with taller ones.
 */
import { describe, expect, it } from 'vitest';
import { resizeCrop, resizeRetainedBytes } from '../../src/inference/resize.ts';

/** A grey 1×h image, white on its lower half. */
function tall(h: number): Uint8Array {
  const data = new Uint8Array(h);
  data.fill(255, Math.floor(h / 2));
  return data;
}

describe('resize memory', () => {
  it('tall inputs of many heights leave at most 16 MiB behind, and still resize right', () => {
    for (let i = 0; i < 6; i++) {
      const h = 300_000 + i;
      const out = resizeCrop(tall(h), 1, h, 1, 28, 28, 0, 0, 28);
      // Top rows black, bottom rows white; every column alike.
      expect(out[0]).toBe(0);
      expect(out[27 * 28 + 27]).toBe(255);
      expect(out[27 * 28]).toBe(255);
    }
    expect(resizeRetainedBytes()).toBeLessThanOrEqual(16 * 2 ** 20);
  });
});
