/**
 * The entry of an inference worker thread (started through worker-boot.mjs). `session` workers own one
 * onnxruntime session and run batches on it (session-worker.ts); `prep` workers decode and preprocess
 * inputs (prep-worker.ts). Errors go back as {code, message}.
 */
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { DropbearError } from '../protocol/errors.ts';
import type { Decoder } from './decode.ts';
import type { ModelSpec } from './spec.ts';

export interface SessionWorkerData {
  role: 'session';
  modelPath: string;
  spec: ModelSpec;
  intraOpThreads: number;
  interOpThreads: number;
  executionProviders: string[];
  /** This thread's nice value (EngineOptions.workerNice). */
  nice: number;
  /** When given, the bytes loaded must hash to this SHA-256 (hex), or the thread refuses to start. */
  sha256?: string;
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
  | { type: 'prep'; id: number; bytes: Uint8Array; out?: ArrayBuffer; half?: boolean }
  /**
   * End the thread once it has answered every call it began (WorkerHandle.close): it exits by itself,
   * between calls, never inside onnxruntime's or libvips' native code (see `Track`).
   */
  | { type: 'close' };

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

/** Answers call `id` (-1: the worker's start) with an error. */
export type Fail = (id: number, e: unknown) => void;

const fail: Fail = (id, e) => {
  const code = e instanceof DropbearError ? e.code : 'INFERENCE_FAILED';
  port.postMessage({
    type: 'error',
    id,
    code,
    message: e instanceof Error ? e.message : String(e),
  } satisfies WorkerReply);
};

/**
 * Runs one call's work and counts it while it runs. A thread asked to close exits when the last call it
 * began has been answered (at once when none is running). Ending a thread from outside (`Worker.terminate`)
 * while onnxruntime runs a batch, or while libvips decodes on the thread pool, aborts the whole process when
 * the native call returns into the torn-down thread (`terminate called after throwing an instance of
 * 'Napi::Error'`, status 134: a terminate racing a batch did within the first few tries here, 2026-12-05).
 * A thread that exits by itself does so from its own event loop, where no native call is running.
 */
export type Track = (work: () => Promise<void>) => Promise<void>;

let busy = 0;
let closing = false;
const exitIfDone = () => {
  if (closing && busy === 0) process.exit(0);
};
const track: Track = async (work) => {
  busy++;
  try {
    await work();
  } finally {
    busy--;
    exitIfDone();
  }
};
// Registered before the role's code loads: a close that comes while a session loads its model ends the
// thread after the load (the load is one native call; this runs between event-loop turns).
port.on('message', (m: WorkerRequest) => {
  if (m.type !== 'close') return;
  closing = true;
  exitIfDone();
});

// Each role's code is its own module, loaded for that role alone: a prep worker does not load onnxruntime
// (its import took ~40 ms of CPU per thread here, 2026-12-05), nor a session worker sharp and jpeg-js.
// Imported after this module's own setup, and taking what they need from it as arguments: a role module
// that imported this one back would wait on this module's top-level await, which waits on it.
if (data.role === 'session')
  await (await import('./session-worker.ts')).serveSession(data, port, fail, track);
else (await import('./prep-worker.ts')).servePrep(data, port, fail, track);
