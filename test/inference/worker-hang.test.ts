// A worker thread hung in a call (a model run or a decode that does not return in time) is set aside and
// replaced, so that the calls after it are served; until 2026-12-06 it kept its slot and every later call
// on it waited behind the hang (and, past requestTimeoutMs, failed with WORKER_TIMEOUT).
// The "hang" here is a real onnxruntime run far longer than the call bound (a batch of 128 images of
// MobileNetV2 224, ~0.7 s each on the 2-core machine, against a 300 ms bound): nothing in the thread can
// tell it from a run that never returns, and it ends, so the test leaves no thread running.
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { InferenceEngine } from '../../src/inference/engine.ts';
import { inputElements } from '../../src/inference/preprocess.ts';
import { SessionRunner } from '../../src/inference/threads.ts';
import { DATA_DIR, MODELS_DIR } from '../shared.ts';

const NAME = 'mobilenet_v2_1.0_224_quant';
const spec = catalogByName(NAME)!;
const modelPath = `${MODELS_DIR}/${NAME}.onnx`;
const n = inputElements(spec);
const img = readFileSync(`${DATA_DIR}/sample/n01440764_tench.JPEG`);

const closers: { close(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(closers.map((c) => c.close()));
});

const code = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: { code?: string }) => e.code ?? String(e),
  );

// biome-ignore lint/suspicious/noExplicitAny: reaching into private fields
const handleOf = (slot: any) => slot.handle;

describe('a hung worker thread', () => {
  it('a session thread whose run timed out is set aside: the next run goes to a replacement and is answered', async () => {
    const r = await SessionRunner.start(modelPath, spec, {
      intraOpThreads: 1,
      interOpThreads: 1,
      executionProviders: ['cpu'],
      requestTimeoutMs: 300,
    });
    closers.push(r);
    // biome-ignore lint/suspicious/noExplicitAny: private
    const slot = (r as any).handle;
    const first = handleOf(slot);
    // Two long runs occupy the thread well past the bound (the second waits behind the first).
    const long = [r.run(new Float32Array(128 * n), 128), r.run(new Float32Array(128 * n), 128)].map(code);
    expect(await long[0]).toBe('WORKER_TIMEOUT');
    // Before the fix this run went to the same thread, behind both, and timed out in turn.
    expect(await code(r.run(new Float32Array(n), 1))).toBe('ok');
    expect(r.hung).toBe(1);
    expect(r.replaced).toBe(1);
    expect(handleOf(slot)).not.toBe(first);
    expect(await long[1]).toBe('WORKER_TIMEOUT');
    // The set-aside thread was told to close: it exits by itself once its runs are over.
    await first.gone;
  }, 30_000);

  it('a preprocessing thread whose calls timed out is set aside: the inputs behind them are decoded by a replacement', async () => {
    const e = await InferenceEngine.start({
      modelPath: `${MODELS_DIR}/mobilenet_v1_0.25_128_quant.onnx`,
      spec: catalogByName('mobilenet_v1_0.25_128_quant')!,
      prepWorkers: 1,
      requestTimeoutMs: 300,
    });
    closers.push(e);
    // biome-ignore lint/suspicious/noExplicitAny: private
    const slot = (e as any).prepPool.handles[0];
    const first = handleOf(slot);
    // Two large images fill the thread's two places (the pool keeps the rest) and take longer than the bound.
    const big = await sharp({ create: { width: 6000, height: 6000, channels: 3, background: 'blue' } })
      .png()
      .toBuffer();
    const slow = [e.classify(big), e.classify(big)].map(code);
    const after = code(e.classify(img));
    expect(await slow[0]).toBe('WORKER_TIMEOUT');
    expect(await after).toBe('ok');
    expect(e.hungWorkers).toBe(1);
    expect(handleOf(slot)).not.toBe(first);
    await first.gone;
  }, 30_000);
});
