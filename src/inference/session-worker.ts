/**
 * A session worker's code (worker.ts imports it in session workers only): one onnxruntime session, batches
 * run on it. session.run blocks this thread, never the node's event loop.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { MessagePort } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { DropbearError } from '../protocol/errors.ts';
import { halfToFloat, inputElements, toHalf } from './preprocess.ts';
import { fixedBatchOne, ORT_SESSION_CONFIG } from './spec.ts';
import type { Fail, SessionWorkerData, Track, WorkerReply, WorkerRequest } from './worker.ts';

export async function serveSession(
  data: SessionWorkerData,
  port: MessagePort,
  fail: Fail,
  track: Track,
): Promise<void> {
  const { spec } = data;
  let session: ort.InferenceSession;
  // The bytes loaded are the bytes hashed: a replacement thread (after a death or a hang) loads the file
  // again, and until 2026-12-06 it loaded whatever the path held then, unchecked, so a model file changed
  // on disk after the engine's start (a bad disk, a hand edit, another model copied over it) was run and
  // voted under the old digest. Hashing a 4 MB model costs ~10 ms per start.
  let model: Uint8Array | string = data.modelPath;
  if (data.sha256 !== undefined) {
    try {
      model = await readFile(data.modelPath);
    } catch (e) {
      fail(
        -1,
        new DropbearError('MODEL_LOAD_FAILED', `cannot read ${data.modelPath}: ${(e as Error).message}`),
      );
      process.exit(1);
    }
    const actual = createHash('sha256').update(model).digest('hex');
    if (actual !== data.sha256.toLowerCase()) {
      fail(
        -1,
        new DropbearError(
          'MODEL_DIGEST_MISMATCH',
          `${data.modelPath} has sha256 ${actual}, but ${data.sha256} is required (the file changed since the engine started); refusing to load it`,
          { path: data.modelPath, expected: data.sha256, actual },
        ),
      );
      process.exit(1);
    }
  }
  try {
    const options: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: data.intraOpThreads,
      interOpNumThreads: data.interOpThreads,
      graphOptimizationLevel: 'all',
      executionProviders: data.executionProviders,
      // Exact int8 kernels on CPUs without VNNI: see ORT_SESSION_CONFIG.
      extra: ORT_SESSION_CONFIG,
    };
    session =
      typeof model === 'string'
        ? await ort.InferenceSession.create(model, options)
        : await ort.InferenceSession.create(model, options);
  } catch (e) {
    fail(
      -1,
      new DropbearError('MODEL_LOAD_FAILED', `cannot load ${data.modelPath}: ${(e as Error).message}`),
    );
    process.exit(1);
  }
  const item = inputElements(spec);
  const itemDims = spec.input.shape.slice(1).map((d) => d ?? 1);
  const one = fixedBatchOne(spec);
  const runOnce = async (x: Float32Array | Uint16Array, n: number): Promise<Float32Array> => {
    const dims = [n, ...itemDims];
    // Half bits arrive ready-made from the batcher; float input to a float16 model is converted here.
    const t =
      x instanceof Uint16Array
        ? new ort.Tensor('float16', x, dims)
        : spec.input.dtype === 'float16'
          ? new ort.Tensor('float16', toHalf(x), dims)
          : new ort.Tensor('float32', x, dims);
    const out = (await session.run({ [spec.input.name]: t }))[spec.output.name];
    const od = out.data as Float32Array | Uint16Array;
    if (out.type === 'float16') {
      const f = new Float32Array(od.length);
      for (let i = 0; i < od.length; i++) f[i] = halfToFloat(od[i]);
      return f;
    }
    if (out.type !== 'float32')
      throw new DropbearError('MODEL_OUTPUT', `unsupported output type ${out.type}`);
    return od as Float32Array;
  };
  port.on('message', (m: WorkerRequest) => {
    if (m.type === 'run') void track(() => run(m));
  });
  const run = async (m: Extract<WorkerRequest, { type: 'run' }>): Promise<void> => {
    const t0 = performance.now();
    try {
      if (m.data.length !== m.n * item)
        throw new DropbearError(
          'INPUT_SHAPE',
          `batch of ${m.n} needs ${m.n * item} values, got ${m.data.length}`,
        );
      // The engine sends a model whose batch dimension is fixed at 1 one input per run (engine.ts).
      if (one && m.n !== 1)
        throw new DropbearError('INPUT_SHAPE', `this model takes one input per run, got a batch of ${m.n}`);
      const result = await runOnce(m.data, m.n);
      // The runtime may own the output's memory: send a copy (4 KB per item, negligible). The batch's
      // buffer goes back too: the batcher builds a later batch in it (the run is over, nothing holds it).
      const copy = result.slice();
      const input = m.data.buffer as ArrayBuffer;
      port.postMessage(
        { type: 'ok', id: m.id, data: copy, ms: performance.now() - t0, input } satisfies WorkerReply,
        [copy.buffer as ArrayBuffer, input],
      );
    } catch (e) {
      fail(m.id, e);
    }
  };
  port.postMessage({ type: 'ready' } satisfies WorkerReply);
}
