/**
 * The main-thread side of the worker threads: a handle that sends requests and matches replies, a pool of
 * preprocessing workers, and the session runner.
 */
import { Worker } from 'node:worker_threads';
import './ort-env.ts';
import { DropbearError } from '../protocol/errors.ts';
import { INFERENCE_SKIPPED } from './backend.ts';
import type { Decoder } from './decode.ts';
import { inputElements } from './preprocess.ts';
import type { ModelSpec } from './spec.ts';
import type { PrepWorkerData, SessionWorkerData, WorkerReply, WorkerRequest } from './worker.ts';

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

const BOOT = new URL('./worker-boot.mjs', import.meta.url);

/** How long `close` waits for a worker's outstanding calls before it ends the thread anyway. */
const CLOSE_DRAIN_MS = 5000;

/**
 * A worker's answer: the output, its run time and, for a model run, the batch buffer handed back. The
 * output is half bits only for a preprocessing call that asked for them (PrepPool.prep's `half`).
 */
export type WorkerAnswer = { data: Float32Array | Uint16Array; ms: number; input?: ArrayBuffer };

/** A model run's answer: its outputs are always floats. */
export type RunAnswer = { data: Float32Array; ms: number; input?: ArrayBuffer };

/** A preprocessed input: floats, or half bits for a float16 model when asked for. */
export type ModelInput = Float32Array | Uint16Array;

interface Pending {
  resolve: (r: WorkerAnswer) => void;
  reject: (e: Error) => void;
}

class WorkerHandle {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private dead: Error | null = null;
  /** Set while `close` waits for the outstanding calls; called when the last one is answered. */
  private onDrained: (() => void) | null = null;
  /** The one shutdown (`close` is idempotent: every caller waits for the same drain). */
  private closing: Promise<void> | null = null;
  readonly ready: Promise<void>;
  inFlight = 0;

  constructor(data: SessionWorkerData | PrepWorkerData) {
    this.worker = new Worker(BOOT, { workerData: data });
    this.ready = new Promise((resolve, reject) => {
      this.worker.on('message', (m: WorkerReply) => {
        if (m.type === 'ready') return resolve();
        if (m.type === 'error' && m.id === -1) return reject(new DropbearError(m.code, m.message));
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        this.inFlight--;
        if (m.type === 'ok') p.resolve({ data: m.data, ms: m.ms, input: m.input });
        else p.reject(new DropbearError(m.code, m.message));
        if (this.pending.size === 0) this.onDrained?.();
      });
      const die = (e: Error) => {
        this.dead = e;
        reject(e);
        this.rejectPending(e);
      };
      this.worker.on('error', (e) =>
        die(new DropbearError('WORKER_FAILED', `inference worker failed: ${e.message}`)),
      );
      this.worker.on('exit', (code) => {
        if (!this.dead)
          die(new DropbearError('WORKER_EXITED', `inference worker exited with status ${code}`));
      });
    });
    // A failed start is reported through `ready`; keep it from also being an unhandled rejection.
    this.ready.catch(() => {});
  }

  request(msg: WithoutId<WorkerRequest>, transfer: ArrayBuffer[] = []): Promise<WorkerAnswer> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    this.inFlight++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...msg, id }, transfer);
    });
  }

  private rejectPending(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.inFlight = 0;
    this.onDrained?.();
  }

  /**
   * Refuses new calls, waits (at most `drainMs`) for the answers to those already sent, then ends the
   * thread. Ending it while onnxruntime (or libvips) still runs one of its calls aborts the whole process:
   * the native call completes into a torn-down thread (`terminate called after throwing an instance of
   * 'Napi::Error'`, exit status 134; a node stopped under load did, test/inference/close.test.ts).
   */
  close(drainMs = CLOSE_DRAIN_MS): Promise<void> {
    this.closing ??= this.shutDown(drainMs);
    return this.closing;
  }

  private async shutDown(drainMs: number): Promise<void> {
    this.dead ??= new DropbearError('ENGINE_CLOSED', 'the inference engine is closed');
    if (this.pending.size > 0)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, drainMs);
        this.onDrained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    this.onDrained = null;
    await this.worker.terminate();
    // Calls still unanswered after the wait (a hung worker) fail instead of never settling.
    this.rejectPending(this.dead);
  }
}

export interface SessionOptions {
  intraOpThreads: number;
  interOpThreads: number;
  /** onnxruntime execution providers in order of preference, e.g. ['cuda', 'cpu']. */
  executionProviders: string[];
  /** The worker thread's nice value, 0–19 (EngineOptions.workerNice; 0 when not given). */
  workerNice?: number;
}

/** One onnxruntime session in its own worker thread. */
export class SessionRunner {
  private readonly handle: WorkerHandle;

  private constructor(handle: WorkerHandle) {
    this.handle = handle;
  }

  static async start(modelPath: string, spec: ModelSpec, opts: SessionOptions): Promise<SessionRunner> {
    const handle = new WorkerHandle({
      role: 'session',
      modelPath,
      spec,
      intraOpThreads: opts.intraOpThreads,
      interOpThreads: opts.interOpThreads,
      executionProviders: opts.executionProviders,
      nice: opts.workerNice ?? 0,
    });
    try {
      await handle.ready;
    } catch (e) {
      await handle.close();
      throw e;
    }
    return new SessionRunner(handle);
  }

  get inFlight(): number {
    return this.handle.inFlight;
  }

  /**
   * Runs `n` items laid out back to back in `data` (its buffer is transferred); returns the n outputs and
   * hands the buffer back (`input`) for the next batch.
   */
  run(data: Float32Array | Uint16Array, n: number): Promise<RunAnswer> {
    return this.handle.request({ type: 'run', data, n }, [data.buffer as ArrayBuffer]) as Promise<RunAnswer>;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/**
 * Calls posted to one preprocessing worker before the pool keeps the rest itself. Two keep the next input
 * in the worker's own queue while one decodes; the rest wait here, where an input whose caller no longer
 * wants it (`wanted`) can still be dropped unread. Posted, it would be decoded whatever happened meanwhile.
 */
const PREP_PER_WORKER = 2;

interface WaitingPrep {
  bytes: Uint8Array;
  wanted: (() => boolean) | undefined;
  half: boolean;
  resolve: (r: { data: ModelInput; ms: number }) => void;
  reject: (e: Error) => void;
}

/** Output buffers kept for reuse per worker (see PrepPool.giveBack). */
const SPARE_OUTPUTS_PER_WORKER = 4;

/** Decoding and preprocessing on worker threads, least-loaded first, in arrival order. */
export class PrepPool {
  private readonly handles: WorkerHandle[];
  private readonly waiting: WaitingPrep[] = [];
  private closed = false;
  /** Inputs refused with INFERENCE_SKIPPED at their turn, before a worker saw them. */
  skipped = 0;
  /**
   * Output buffers handed back once their contents were copied into a batch: each call takes one to the
   * worker to write into. A new one per input (600 KB for 224×224×3 floats) cost its zero-fill and a page
   * fault per 4 KB page on the worker, every time. Floats' buffers and half bits' buffers apart (a
   * float16 model's classify calls ask for half bits, its `preprocess` calls for floats).
   */
  private readonly spare: ArrayBuffer[] = [];
  private readonly spareHalf: ArrayBuffer[] = [];
  /** Inputs written into a handed-back buffer. */
  reusedOutputs = 0;

  private constructor(
    handles: WorkerHandle[],
    private readonly outBytes: number,
  ) {
    this.handles = handles;
  }

  /**
   * A buffer a call returned (its `data`) whose contents are no longer needed; it must not be used after
   * this. Kept if it is one input's size and there is room.
   */
  giveBack(b: ArrayBuffer): void {
    const list =
      b.byteLength === this.outBytes
        ? this.spare
        : b.byteLength === this.outBytes / 2
          ? this.spareHalf
          : null;
    if (list && list.length < SPARE_OUTPUTS_PER_WORKER * this.handles.length) list.push(b);
  }

  /** `nice`: the worker threads' nice value, 0–19 (EngineOptions.workerNice). */
  static async start(spec: ModelSpec, decoder: Decoder, size: number, nice = 0): Promise<PrepPool> {
    const handles = Array.from(
      { length: Math.max(1, size) },
      () => new WorkerHandle({ role: 'prep', spec, decoder, nice }),
    );
    try {
      await Promise.all(handles.map((h) => h.ready));
    } catch (e) {
      await Promise.all(handles.map((h) => h.close()));
      throw e;
    }
    return new PrepPool(handles, 4 * inputElements(spec));
  }

  /**
   * `wanted` is asked when the input's turn comes; false refuses it with INFERENCE_SKIPPED, unread.
   * `half`: the input as IEEE half bits (a Uint16Array), converted on the worker: for a float16 model.
   */
  prep(bytes: Uint8Array, wanted?: () => boolean, half = false): Promise<{ data: ModelInput; ms: number }> {
    if (this.closed)
      return Promise.reject(new DropbearError('ENGINE_CLOSED', 'the inference engine is closed'));
    const h = this.waiting.length === 0 ? this.free() : undefined;
    if (h) return this.send(h, bytes, half);
    return new Promise((resolve, reject) => {
      this.waiting.push({ bytes, wanted, half, resolve, reject });
    });
  }

  /** The least-loaded worker with room for another call, if any. */
  private free(): WorkerHandle | undefined {
    let best: WorkerHandle | undefined;
    for (const x of this.handles)
      if (x.inFlight < PREP_PER_WORKER && (best === undefined || x.inFlight < best.inFlight)) best = x;
    return best;
  }

  private send(h: WorkerHandle, bytes: Uint8Array, half: boolean): Promise<{ data: ModelInput; ms: number }> {
    const out = (half ? this.spareHalf : this.spare).pop();
    if (out) this.reusedOutputs++;
    const p = h.request({ type: 'prep', bytes, out, half }, out ? [out] : []);
    p.then(this.pump, this.pump);
    return p;
  }

  private readonly pump = (): void => {
    while (this.waiting.length > 0) {
      const h = this.free();
      if (!h) return;
      const w = this.waiting.shift()!;
      if (w.wanted !== undefined && !w.wanted()) {
        this.skipped++;
        w.reject(INFERENCE_SKIPPED);
        continue;
      }
      this.send(h, w.bytes, w.half).then(w.resolve, w.reject);
    }
  };

  async close(): Promise<void> {
    this.closed = true;
    const e = new DropbearError('ENGINE_CLOSED', 'the inference engine is closed');
    for (const w of this.waiting.splice(0)) w.reject(e);
    await Promise.all(this.handles.map((h) => h.close()));
  }
}
