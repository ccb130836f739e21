/**
 * A preprocessing worker's code (worker.ts imports it in prep workers only): decodes inputs and turns them
 * into model inputs. It must not load onnxruntime-node (test/inference/worker-modules.test.ts).
 */
import type { MessagePort } from 'node:worker_threads';
import { toModelInput } from './decode.ts';
import { fillsInput, inputElements, toHalf } from './preprocess.ts';
import type { Fail, PrepWorkerData, Track, WorkerReply, WorkerRequest } from './worker.ts';

export function servePrep(data: PrepWorkerData, port: MessagePort, fail: Fail, track: Track): void {
  const { spec, decoder } = data;
  const item = inputElements(spec);
  const fills = fillsInput(spec);
  // The floats of `half` inputs before conversion, reused: decoding is asynchronous, so two calls can be
  // in this worker at once and each takes its own (every value is written before it is read where
  // `fills`; zeroed first otherwise).
  const staging: Float32Array[] = [];
  port.on('message', (m: WorkerRequest) => {
    if (m.type === 'prep') void track(() => prep(m));
  });
  const prep = async (m: Extract<WorkerRequest, { type: 'prep' }>): Promise<void> => {
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
  };
  port.postMessage({ type: 'ready' } satisfies WorkerReply);
}
