/**
 * A uint8 [H, W, 3] DBT1 tensor (an already-decoded image) gets the side bound JPEGs and PNGs have
 * (MAX_IMAGE_SIDE, 65,500), in the node's input check and in decoding. Before, only 40 MP applied: on the
 * grey 28×28 path (MNIST resizes the whole image) a [2,000,000, 1, 3] tensor of 6 MB took ~256 MB of
 * scratch and taps and ~1.2 s of CPU for one preprocessing call, on every node.
 */
import { describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { imageToInput, toModelInput } from '../../src/inference/decode.ts';
import { copyModelTensor, encodeTensorInput, MAX_IMAGE_SIDE } from '../../src/inference/preprocess.ts';
import { checkInput } from '../../src/node/api.ts';

const MNIST = catalogByName('mnist-winml')!;
const MOBILENET = catalogByName('mobilenetv2-12-int8')!;
const SQUEEZE_FP16 = catalogByName('squeezenet1.1-fp16-winml')!;

/** A uint8 [h, w, 3] image, white on its lower half. */
function image(h: number, w: number): Uint8Array {
  const data = new Uint8Array(h * w * 3);
  data.fill(255, Math.floor(h / 2) * w * 3);
  return encodeTensorInput({ dtype: 'uint8', dims: [h, w, 3], data });
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string } | 'accepted'> {
  try {
    await p;
    return 'accepted';
  } catch (e) {
    return { code: (e as { code: string }).code, message: (e as Error).message };
  }
}

describe('uint8 image tensor bounds', () => {
  it.each([
    [2_000_000, 1],
    [1, 2_000_000],
    [MAX_IMAGE_SIDE + 1, 1],
    [1, MAX_IMAGE_SIDE + 1],
  ])('refuses [%i, %i, 3] for its side, in the input check and in decoding', async (h, w) => {
    const bytes = image(h, w);
    for (const spec of [MNIST, MOBILENET]) {
      const want = {
        code: 'INPUT_TOO_LARGE',
        message: `image tensor of ${w}×${h} pixels: a side is over the limit of ${MAX_IMAGE_SIDE}`,
      };
      expect(await refusal(checkInput(bytes, spec))).toEqual(want);
      const out = new Float32Array(3 * 224 * 224);
      expect(await refusal(imageToInput(bytes, spec, 'fast', out, 0))).toEqual(want);
    }
  });

  it('still refuses over 40 MP, naming the limit', async () => {
    const bytes = encodeTensorInput({
      dtype: 'uint8',
      dims: [6400, 6400, 3],
      data: new Uint8Array(6400 * 6400 * 3),
    });
    const msg = 'image of 6400×6400 pixels is over the limit of 40000000';
    expect(await refusal(checkInput(bytes, MNIST))).toEqual({ code: 'INPUT_TOO_LARGE', message: msg });
    expect(await refusal(imageToInput(bytes, MNIST, 'fast', new Float32Array(784), 0))).toEqual({
      code: 'INPUT_TOO_LARGE',
      message: msg,
    });
  });

  it('accepts sides of 65,500 and resizes them right', async () => {
    for (const [h, w] of [
      [MAX_IMAGE_SIDE, 1],
      [1, MAX_IMAGE_SIDE],
    ]) {
      const bytes = image(h, w);
      await checkInput(bytes, MNIST);
      await checkInput(bytes, MOBILENET);
      const out = new Float32Array(784);
      await imageToInput(bytes, MNIST, 'fast', out, 0);
      if (h > 1) {
        // Top rows black, bottom rows white; every column alike.
        expect(out[0]).toBe(0);
        expect(out[27 * 28]).toBe(1);
        expect(out[27 * 28 + 27]).toBe(1);
      } else expect(out.every((v) => v === 1)).toBe(true); // one row, white
      await imageToInput(bytes, MOBILENET, 'fast', new Float32Array(3 * 224 * 224), 0);
    }
  });
});

describe("a float tensor of the model's input with values the model cannot be run on", () => {
  // A NaN or an infinity (or, for an FP16 model, an FP32 value beyond ±65504, which its conversion makes
  // infinite) sent as a DBT1 tensor was taken and run: every score came out 0 (NaN cast to the score).
  const mnist = (dtype: 'float32' | 'float16', at: number, set: (dv: DataView, at: number) => void) => {
    const data = new Uint8Array(784 * (dtype === 'float32' ? 4 : 2));
    set(new DataView(data.buffer), at);
    return encodeTensorInput({ dtype, dims: [1, 1, 28, 28], data });
  };
  it.each([
    [
      'float32',
      3,
      (dv: DataView, at: number) => dv.setFloat32(at * 4, Number.NaN, true),
      'is NaN, not a finite number',
    ],
    [
      'float32',
      0,
      (dv: DataView, at: number) => dv.setFloat32(at * 4, Number.NEGATIVE_INFINITY, true),
      'is -Infinity, not a finite number',
    ],
    [
      'float16',
      783,
      (dv: DataView, at: number) => dv.setUint16(at * 2, 0x7c00, true),
      'is Infinity, not a finite number',
    ],
    [
      'float16',
      9,
      (dv: DataView, at: number) => dv.setUint16(at * 2, 0x7e00, true),
      'is NaN, not a finite number',
    ],
  ] as const)(
    '%s element %i: INPUT_TENSOR_MALFORMED naming it, in the input check and in copying',
    async (dtype, at, set, what) => {
      const bytes = mnist(dtype, at, set);
      const want = { code: 'INPUT_TENSOR_MALFORMED', message: `tensor element ${at} ${what}` };
      expect(await refusal(checkInput(bytes, MNIST))).toEqual(want);
      expect(await refusal(toModelInput(bytes, MNIST, 'fast', new Float32Array(784), 0))).toEqual(want);
      // Finite: taken as before.
      const ok = mnist(dtype, at, () => {});
      await checkInput(ok, MNIST);
      expect(copyModelTensor(ok, MNIST, new Float32Array(784), 0)).toBe(true);
    },
  );

  it('an FP16 model: FP32 values beyond ±65504 refused, naming the element; ±65504 taken', async () => {
    const size = 3 * 224 * 224;
    const t = (v: number) => {
      const data = new Uint8Array(size * 4);
      new DataView(data.buffer).setFloat32(7 * 4, v, true);
      return encodeTensorInput({ dtype: 'float32', dims: [1, 3, 224, 224], data });
    };
    const want = {
      code: 'INPUT_TENSOR_MALFORMED',
      message: "tensor element 7 is -100000, outside the range of FP16 (±65504), the model's input datatype",
    };
    expect(await refusal(checkInput(t(-1e5), SQUEEZE_FP16))).toEqual(want);
    const copy = Promise.resolve().then(() =>
      copyModelTensor(t(-1e5), SQUEEZE_FP16, new Float32Array(size), 0),
    );
    expect(await refusal(copy)).toEqual(want);
    await checkInput(t(-65504), SQUEEZE_FP16);
    expect(copyModelTensor(t(65504), SQUEEZE_FP16, new Float32Array(size), 0)).toBe(true);
    // The same values are finite FP32 for an FP32 model.
    await checkInput(t(-1e5), MOBILENET);
  });
});
