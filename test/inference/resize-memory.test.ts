/**
 * What the resizer keeps between inputs stays bounded whatever the inputs' sizes. A model that resizes the
 * whole image (MNIST's grey 28×28 path) needs taps as wide as the downscale factor: a tall, one-pixel-wide
 * uint8 DBT1 tensor (accepted up to 40 MP, no side bound) made a cache entry of tens of MB per height, kept
 * up to 257 entries, and a scratch buffer of the whole image's rows, kept for good.
 */
import { describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { imageToInput } from '../../src/inference/decode.ts';
import { encodeTensorInput } from '../../src/inference/preprocess.ts';
import { resizeRetainedBytes } from '../../src/inference/resize.ts';

const MNIST = catalogByName('mnist-winml')!;

/** A uint8 [h, 1, 3] image, white on its lower half. */
function tall(h: number): Uint8Array {
  const data = new Uint8Array(h * 3);
  data.fill(255, Math.floor(h / 2) * 3);
  return encodeTensorInput({ dtype: 'uint8', dims: [h, 1, 3], data });
}

describe('resize memory', () => {
  it('tall inputs of many heights leave at most 16 MiB behind, and still resize right', async () => {
    const out = new Float32Array(28 * 28);
    for (let i = 0; i < 6; i++) {
      await imageToInput(tall(300_000 + i), MNIST, 'fast', out, 0);
      // Top rows black, bottom rows white; every column alike.
      expect(out[0]).toBe(0);
      expect(out[27 * 28 + 27]).toBe(1);
      expect(out[27 * 28]).toBe(1);
    }
    expect(resizeRetainedBytes()).toBeLessThanOrEqual(16 * 2 ** 20);
  });
});
