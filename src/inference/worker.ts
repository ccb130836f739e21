/**
 * The code inside an inference worker thread. `session` workers own one onnxruntime session and run
 * batches on it (session.run blocks its thread, never the node's event loop); `prep` workers decode and
 * preprocess inputs. Errors go back as {code, message}.
 */
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { DropbearError } from '../protocol/errors.ts';
import { type Decoder, toModelInput } from './decode.ts';
import { fillsInput, halfToFloat, inputElements, toHalf } from './preprocess.ts';
import { fixedBatchOne, type ModelSpec, ORT_SESSION_CONFIG } from './spec.ts';

export interface SessionWorkerData {
  role: 'session';
  modelPath: string;
  spec: ModelSpec;
  intraOpThreads: number;
  interOpThreads: number;
  executionProviders: string[];
  /** This thread's nice value (EngineOptions.workerNice). */
  nice: number;
}

export interface PrepWorkerData {
  role: 'prep';
  spec: ModelSpec;
  decoder: Decoder;
  /** This thread's nice value (EngineOptions.workerNice). */
  nice: number;
}

export type WorkerRequest =
  | { type: 'run'; id: number; data: Float32Array | Uint16Array; n: number }
  /**
   * `out`: a buffer of one input's size to write the result into (handed back by the pool), if any.
   * `half`: answer with the input as IEEE half bits (a Uint16Array), for a float16 model's batches.
   */
  | { type: 'prep'; id: number; bytes: Uint8Array; out?: ArrayBuffer; half?: boolean };

export type WorkerReply =
  | { type: 'ready' }
  /** `input`: a run's batch buffer, handed back for the next batch. `data` is half bits only for a `half` prep. */
  | { type: 'ok'; id: number; data: Float32Array | Uint16Array; ms: number; input?: ArrayBuffer }
  | { type: 'error'; id: number; code: string; message: string };

const port = parentPort!;
const data = workerData as SessionWorkerData | PrepWorkerData;

// Below the node's own threads (EngineOptions.workerNice): on Linux a nice value belongs to one thread,
// and setPriority with no pid sets the calling thread's alone. Elsewhere it would set the whole process's,
// so there the worker keeps the process's. Best effort: a failure leaves the thread as it was.
if (data.nice > 0 && process.platform === 'linux') {
  try {
    setPriority(data.nice);
  } catch {}
}

function fail(id: number, e: unknown): void {
  const code = e instanceof DropbearError ? e.code : 'INFERENCE_FAILED';
  port.postMessage({
    type: 'error',
    id,
    code,
    message: e instanceof Error ? e.message : String(e),
  } satisfies WorkerReply);
}

if (data.role === 'session') {
  const { spec } = data;
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(data.modelPath, {
      intraOpNumThreads: data.intraOpThreads,
      interOpNumThreads: data.interOpThreads,
      graphOptimizationLevel: 'all',
      executionProviders: data.executionProviders,
      // Exact int8 kernels on CPUs without VNNI: see ORT_SESSION_CONFIG.
      extra: ORT_SESSION_CONFIG,
    });
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
  port.on('message', async (m: WorkerRequest) => {
    if (m.type !== 'run') return;
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
  });
  port.postMessage({ type: 'ready' } satisfies WorkerReply);
} else {
  const { spec, decoder } = data;
  const item = inputElements(spec);
  const fills = fillsInput(spec);
  // The floats of `half` inputs before conversion, reused: decoding is asynchronous, so two calls can be
  // in this worker at once and each takes its own (every value is written before it is read where
  // `fills`; zeroed first otherwise).
  const staging: Float32Array[] = [];
  port.on('message', async (m: WorkerRequest) => {
    if (m.type !== 'prep') return;
    const t0 = performance.now();
    try {
      let out: Float32Array | Uint16Array;
      if (m.half) {
        // Half bits for a float16 model's batches, converted on this thread rather than on the node's
        // main thread (where the conversion was ~15 % of the four nodes' main-thread time in the e2e
        // part's profile at 32 in flight). toHalf writes every value, so a handed-back buffer always
        // serves (the staging floats are what preprocessing may leave partly unwritten).
        const x = staging.pop() ?? new Float32Array(item);
        try {
          if (!fills) x.fill(0);
          await toModelInput(m.bytes, spec, decoder, x, 0);
          out = toHalf(x, m.out?.byteLength === 2 * item ? new Uint16Array(m.out) : new Uint16Array(item));
        } finally {
          staging.push(x);
        }
      } else {
        out = fills && m.out?.byteLength === 4 * item ? new Float32Array(m.out) : new Float32Array(item);
        await toModelInput(m.bytes, spec, decoder, out, 0);
      }
      port.postMessage(
        { type: 'ok', id: m.id, data: out, ms: performance.now() - t0 } satisfies WorkerReply,
        [out.buffer as ArrayBuffer],
      );
    } catch (e) {
      fail(m.id, e);
    }
  });
  port.postMessage({ type: 'ready' } satisfies WorkerReply);
}
