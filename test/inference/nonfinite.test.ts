/**
 * A crafted input that drives a real model's logits to +Infinity (mnist-winml, float32): the Result must
 * still encode. Softmax of +Infinity logits was NaN, signing the node's RESULTS then threw outside any
 * handler, and the node process exited; the input was forwarded, so every node with a float model went down.
 */
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { InferenceEngine } from '../../src/inference/engine.ts';
import { encodeTensorInput } from '../../src/inference/preprocess.ts';
import { encode, Result } from '../../src/protocol/index.ts';
import { MODELS_DIR } from '../shared.ts';

const MODEL = join(MODELS_DIR, 'mnist-winml.onnx');

/** A float32 [1, 1, 28, 28] input whose logits hold +Infinity and no NaN (a fixed pseudo-random search). */
async function infiniteLogitsInput(): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(MODEL, { intraOpNumThreads: 1 });
  try {
    let seed = 1;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    for (let t = 0; t < 3000; t++) {
      const x = new Float32Array(784);
      const v = 10 ** (30 + rnd() * 8.5) * (rnd() < 0.5 ? -1 : 1);
      const k = 1 + Math.floor(rnd() * 20);
      for (let j = 0; j < k; j++) x[Math.floor(rnd() * 784)] = v * rnd();
      const feeds = { [s.inputNames[0]]: new ort.Tensor('float32', x, [1, 1, 28, 28]) };
      const out = (await s.run(feeds))[s.outputNames[0]].data as Float32Array;
      if (out.some((z) => z === Number.POSITIVE_INFINITY) && !out.some(Number.isNaN)) return x;
    }
    throw new Error('no input with +Infinity logits found');
  } finally {
    await s.release();
  }
}

describe('non-finite model outputs', () => {
  it('an input that makes mnist-winml answer +Infinity gives a Result that encodes', async () => {
    const x = await infiniteLogitsInput();
    const engine = await InferenceEngine.start({ modelPath: MODEL, spec: catalogByName('mnist-winml')! });
    try {
      const input = encodeTensorInput({
        dtype: 'float32',
        dims: [1, 1, 28, 28],
        data: new Uint8Array(x.buffer),
      });
      const r = await engine.classify(input);
      expect(() => encode(Result, r)).not.toThrow();
      expect(r.kind === 'class' && r.top[0].score).toBe(1_000_000);
    } finally {
      await engine.close();
    }
  });
});
