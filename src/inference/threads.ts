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

/** How long `close` waits for a worker to answer its calls and exit by itself before it ends the thread anyway. */
const CLOSE_DRAIN_MS = 5000;

/**
 * The same wait for a thread still starting: it acts on the close only once its start (module loading, the
 * model's load: native, blocking the thread) is over. Ending a session thread from outside during its start
 * aborted the process too (status 134, twice in a few dozen tries, 2026-12-05), and under load a start took
 * up to 4.9 s, near the drain bound. So a starting thread gets this long; only a start hung past it is ended.
 */
const CLOSE_START_MS = 60_000;

/**
 * How long `close` waits in all for a thread still inside a call it was sent (a model run, a decode: native
 * code) to answer and exit by itself: past the drain, such a thread (one set aside as hung, most often) is not
 * ended from outside. Ending it does not stop the call (a thread's termination only stops JavaScript) and
 * aborts the process when the call returns into the torn-down thread (status 134: a set-aside thread in a
 * 64-image batch when a runner closed, 2 of 3 tries on 2026-12-06, test/inference/close.test.ts). Past this
 * bound `close` returns and the thread, told to close, exits by itself once its call returns.
 */
const CLOSE_BUSY_MS = 60_000;

/**
 * How long one call to a worker may take before it fails with WORKER_TIMEOUT (EngineOptions.requestTimeoutMs;
 * 0 turns the bound off). Generous: a CPU batch of a large model takes seconds, not tens of them. The hung
 * thread is not ended (ending it inside a native call aborts the process, see WorkerHandle.close): its
 * timed-out calls keep counting as in flight until it answers, so the pool sends it nothing more meanwhile.
 * The error's details name the call (`{ call: 'prep' | 'run' }`): a preprocessing call decodes one input,
 * whose cost the input bounds keep to seconds (preprocess.ts, checkDeclaredSize), so the node host takes
 * its timeout as the input's and does not retry it (host.ts, isTransientInference).
 */
export const REQUEST_TIMEOUT_MS = 30_000;

/** The shortest wait before a dead worker is replaced; doubled per replacement that fails to start, to 30 s. */
const RESPAWN_MIN_MS = 1000;
const RESPAWN_MAX_MS = 30_000;

/**
 * Starts in a row that a session slot tries before it gives up (WORKER_START_FAILED): a replacement thread
 * that cannot load the model (MODEL_LOAD_FAILED: the file briefly unreadable; MODEL_DIGEST_MISMATCH: read
 * while being copied over) is tried again after 1, 2, 4 and 8 s, ~15 s in all, while the slot's calls wait
 * for it. Until 2026-12-06 every call that came meanwhile failed at once with the load's error (voted empty,
 * not retried by the host) and the slot tried again every 30 s for ever, telling nobody.
 */
export const SESSION_START_ATTEMPTS = 5;

/** Where a worker slot reports its failed starts (a node passes its pino logger). */
export interface WorkerLog {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
  error(fields: object, msg: string): void;
}

/** Without a logger: one line on stderr per event (serve-model, scripts). */
const STDERR_LOG: WorkerLog = {
  info: () => {},
  warn: (f, m) => process.stderr.write(`dropbear: ${m} ${JSON.stringify(f)}\n`),
  error: (f, m) => process.stderr.write(`dropbear: ${m} ${JSON.stringify(f)}\n`),
};

/** How a LiveWorker retries a thread that fails to start, and where it says so. */
interface RestartPolicy {
  /** Failed starts in a row after which the slot gives up (Infinity: never, the preprocessing slots). */
  attempts: number;
  /** The first wait before a failed start is tried again; doubled per failure, to RESPAWN_MAX_MS. */
  retryMs: number;
  log: WorkerLog;
}

/**
 * Threads one worker slot sets aside because a call on them timed out (hung) and that have not exited yet.
 * A set-aside thread is told to close (it exits once its calls are answered) and a replacement takes the
 * slot's calls; past this many still running, a hung thread is kept and its calls time out as before, so
 * that an input that hangs every thread it reaches cannot make the node start threads without bound.
 */
const MAX_SET_ASIDE = 2;

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
  timer?: ReturnType<typeof setTimeout>;
  /** Already failed with WORKER_TIMEOUT: a late answer only ends its count. */
  timedOut?: boolean;
}

class WorkerHandle {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private dead: Error | null = null;
  /** The thread has exited (by itself, when told to close, or dead). */
  private exited = false;
  /** Set while `close` waits for the thread to exit. */
  private onExit: (() => void) | null = null;
  /** The one shutdown (`close` is idempotent: every caller waits for the same drain). */
  private closing: Promise<void> | null = null;
  readonly ready: Promise<void>;
  /** Fails `ready` (a no-op once it settled): `close` during the start, when no exit event reports it. */
  private rejectReady: (e: Error) => void = () => {};
  /** The worker said it was ready (a handle that never was is not replaced at once, see LiveWorker). */
  wasReady = false;
  /** Called once when the thread dies on its own (not through `close`), after its calls were failed. */
  onDeath: (() => void) | null = null;
  /**
   * Called when a call that failed with WORKER_TIMEOUT is answered late: the thread has room again, and no
   * caller hears of it otherwise (the call's promise settled at its timeout).
   */
  onLateAnswer: (() => void) | null = null;
  /** Called when a call fails with WORKER_TIMEOUT (the thread may be hung: LiveWorker sets it aside). */
  onTimeout: (() => void) | null = null;
  /** Settles when the thread has exited, whatever the reason. */
  readonly gone: Promise<void>;
  private markGone: () => void = () => {};
  /** The error the thread reported for its start (a model it could not load), kept as its death's. */
  private startError: Error | null = null;
  inFlight = 0;

  constructor(
    data: SessionWorkerData | PrepWorkerData,
    private readonly timeoutMs = REQUEST_TIMEOUT_MS,
  ) {
    this.worker = new Worker(BOOT, { workerData: data });
    this.gone = new Promise((resolve) => {
      this.markGone = resolve;
    });
    this.ready = new Promise((resolve, reject) => {
      this.rejectReady = reject;
      this.worker.on('message', (m: WorkerReply) => {
        if (m.type === 'ready') {
          this.wasReady = true;
          return resolve();
        }
        if (m.type === 'error' && m.id === -1) {
          this.startError = new DropbearError(m.code, m.message);
          return reject(this.startError);
        }
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        this.inFlight--;
        if (p.timer) clearTimeout(p.timer);
        if (!p.timedOut) {
          if (m.type === 'ok') p.resolve({ data: m.data, ms: m.ms, input: m.input });
          else p.reject(new DropbearError(m.code, m.message));
        }
        if (p.timedOut) this.onLateAnswer?.();
      });
      const die = (e: Error) => {
        if (this.dead) return;
        this.dead = e;
        reject(e);
        this.rejectPending(e);
        if (!this.closing) this.onDeath?.();
      };
      this.worker.on('error', (e) =>
        die(new DropbearError('WORKER_FAILED', `inference worker failed: ${e.message}`)),
      );
      this.worker.on('exit', (code) => {
        this.exited = true;
        this.markGone();
        this.onExit?.();
        // A thread that could not start (its model failed to load or to match its digest) exits after
        // saying why: calls that reach it while it is dead fail with that, not a bare exit status.
        if (!this.dead)
          die(
            this.startError ??
              new DropbearError('WORKER_EXITED', `inference worker exited with status ${code}`),
          );
      });
    });
    // A failed start is reported through `ready`; keep it from also being an unhandled rejection.
    this.ready.catch(() => {});
  }

  /** The error the thread died with (or ENGINE_CLOSED once closing), null while it lives. */
  get deadWith(): Error | null {
    return this.dead;
  }

  request(msg: WithoutId<WorkerRequest>, transfer: ArrayBuffer[] = []): Promise<WorkerAnswer> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    this.inFlight++;
    return new Promise((resolve, reject) => {
      const p: Pending = { resolve, reject };
      if (this.timeoutMs > 0) {
        p.timer = setTimeout(() => {
          p.timedOut = true;
          this.onTimeout?.();
          reject(
            new DropbearError(
              'WORKER_TIMEOUT',
              `inference worker did not answer within ${this.timeoutMs} ms (${msg.type})`,
              { call: msg.type },
            ),
          );
        }, this.timeoutMs);
        p.timer.unref?.();
      }
      this.pending.set(id, p);
      this.worker.postMessage({ ...msg, id }, transfer);
    });
  }

  private rejectPending(e: Error): void {
    for (const p of this.pending.values()) {
      if (p.timer) clearTimeout(p.timer);
      if (!p.timedOut) p.reject(e);
    }
    this.pending.clear();
    this.inFlight = 0;
  }

  /**
   * Refuses new calls and asks the thread to end: it answers the calls it was sent, then exits by itself
   * (worker.ts, `Track`). A thread that has not exited within `drainMs` (or CLOSE_START_MS when it had not
   * finished starting) is ended from outside only when none of its calls is under way; one still inside a
   * call is waited for up to `busyMs` in all and otherwise left to exit by itself (`leftRunning`). Ending a
   * thread while onnxruntime (or libvips) still runs one of its calls aborts the whole process: the native
   * call completes into a torn-down thread (`terminate called after throwing an instance of 'Napi::Error'`,
   * exit status 134; a node stopped under load did, test/inference/close.test.ts; so did ending a thread
   * racing a batch, scratch runs 2026-12-05, and, until 2026-12-06, one set aside as hung). Before, `close`
   * waited for the answers and then ended the thread from outside.
   */
  close(drainMs = CLOSE_DRAIN_MS, busyMs = CLOSE_BUSY_MS): Promise<void> {
    this.closing ??= this.shutDown(drainMs, busyMs);
    return this.closing;
  }

  /** `close` returned with the thread still inside a call (past `busyMs`): it exits once the call returns. */
  leftRunning = false;

  /**
   * Asks a thread set aside as hung to exit once it has answered what it began (worker.ts, `Track`), without
   * ever ending it from outside (that aborts the process inside a native call). `close` may still follow.
   */
  retire(): void {
    if (!this.exited) this.worker.postMessage({ type: 'close' } satisfies WorkerRequest);
  }

  /** Settles when the thread has exited or `ms` have passed. */
  private exitWithin(ms: number): Promise<void> {
    if (this.exited || ms <= 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.onExit = () => {
        clearTimeout(timer);
        resolve();
      };
    }).finally(() => {
      this.onExit = null;
    });
  }

  private async shutDown(drainMs: number, busyMs: number): Promise<void> {
    this.dead ??= new DropbearError('ENGINE_CLOSED', 'the inference engine is closed');
    if (!this.exited) {
      this.worker.postMessage({ type: 'close' } satisfies WorkerRequest);
      const bound = this.wasReady ? drainMs : Math.max(drainMs, CLOSE_START_MS);
      await this.exitWithin(bound);
      // Still inside a call it was sent (timed-out calls count until answered): never ended from outside.
      if (!this.exited && this.inFlight > 0) await this.exitWithin(busyMs - bound);
      if (!this.exited) {
        if (this.inFlight > 0) this.leftRunning = true;
        else await this.worker.terminate();
      }
    }
    // Calls still unanswered after the wait (a hung worker) fail instead of never settling, and so do those
    // waiting for a start that will not come (LiveWorker.request): `die` ignores the exit of a closed thread.
    this.rejectPending(this.dead);
    this.rejectReady(this.dead);
  }
}

/**
 * A worker thread that is replaced when it dies: a new thread with the same setup starts (at once if the
 * dead one had started; after a wait doubling from 1 s to 30 s while replacements fail to start). Calls in
 * flight on the dead thread fail with its error (WORKER_EXITED or WORKER_FAILED); a dead thread is never
 * chosen (`inFlight` is Infinity until its replacement is there). Replies' order is the thread's own.
 */
class LiveWorker {
  private handle: WorkerHandle;
  private closed = false;
  private delay: number;
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** A thread of this slot was ready once: a later failed start is retried for its calls (not the engine's start). */
  private started = false;
  /** Starts that failed in a row (since the last thread that was ready). */
  private startFailures = 0;
  /** The slot gave up starting a thread (WORKER_START_FAILED): every call fails with this. */
  failed: DropbearError | null = null;
  /** Calls waiting for the next start after a failed one; woken when it begins, the slot gives up, or closes. */
  private waiters: (() => void)[] = [];
  /** Threads started to replace dead or hung ones. */
  replaced = 0;
  /** Threads set aside as hung (a call on them timed out) that have not exited yet. */
  private readonly setAside = new Set<WorkerHandle>();
  /** Threads ever set aside as hung. */
  hung = 0;

  constructor(
    private readonly data: SessionWorkerData | PrepWorkerData,
    private readonly timeoutMs: number,
    /**
     * Told when the thread can take more calls without a call of its own settling: a replacement is ready,
     * or a call that timed out was answered late (the prep pool sends it the inputs that waited).
     */
    private readonly onFree: () => void = () => {},
    private readonly policy: RestartPolicy = {
      attempts: Number.POSITIVE_INFINITY,
      retryMs: RESPAWN_MIN_MS,
      log: STDERR_LOG,
    },
  ) {
    this.delay = policy.retryMs;
    this.handle = this.spawn();
  }

  private spawn(): WorkerHandle {
    const h = new WorkerHandle(this.data, this.timeoutMs);
    h.onDeath = () => this.replaceLater(h);
    h.onTimeout = () => this.setAsideHung(h);
    h.onLateAnswer = () => {
      if (h === this.handle && !this.closed) this.onFree();
    };
    h.ready.then(
      () => {
        if (this.startFailures > 0)
          this.policy.log.info(
            { attempts: this.startFailures + 1 },
            'inference worker thread started again after failed starts',
          );
        this.delay = this.policy.retryMs;
        this.startFailures = 0;
        this.started = true;
        this.onFree();
      },
      () => {},
    );
    return h;
  }

  /**
   * A call on the slot's thread timed out: the thread may be hung in a native call that never returns, and
   * until 2026-12-06 it kept the slot for good (its timed-out calls count as in flight, so a preprocessing
   * worker took nothing more and the inputs behind it waited for ever; a session worker was sent every
   * later batch, each failing after the timeout). It is set aside now: told to exit once it answers, and a
   * replacement starts at once and takes the slot's calls. At most MAX_SET_ASIDE set-aside threads of a
   * slot may still be running; past that the hung thread keeps the slot as before.
   */
  private setAsideHung(h: WorkerHandle): void {
    if (this.closed || h !== this.handle || h.deadWith || this.timer) return;
    if (this.setAside.size >= MAX_SET_ASIDE) return;
    this.setAside.add(h);
    this.hung++;
    h.gone.then(() => this.setAside.delete(h));
    h.retire();
    this.replaced++;
    this.handle = this.spawn();
  }

  private replaceLater(dead: WorkerHandle): void {
    if (this.closed || this.timer || this.failed || dead !== this.handle) return;
    const wait = dead.wasReady ? 0 : this.delay;
    if (!dead.wasReady) {
      this.delay = Math.min(RESPAWN_MAX_MS, this.delay * 2);
      this.startFailures++;
      const cause = dead.deadWith;
      const fields = {
        attempt: this.startFailures,
        code: cause instanceof DropbearError ? cause.code : 'WORKER_FAILED',
        err: cause?.message,
      };
      if (this.started && this.startFailures >= this.policy.attempts) return this.giveUp(cause);
      if (this.started)
        this.policy.log.warn(
          { ...fields, retryInMs: wait },
          'inference worker thread failed to start; trying again',
        );
    }
    const go = () => {
      this.timer = null;
      if (this.closed) return;
      this.replaced++;
      this.handle = this.spawn();
      this.wake();
    };
    if (wait === 0) go();
    else {
      this.timer = setTimeout(go, wait);
      this.timer.unref?.();
    }
  }

  /**
   * A thread of this slot failed to start `policy.attempts` times in a row: the slot stops trying, and its
   * calls (those waiting and every later one) fail with WORKER_START_FAILED, which the node host does not
   * retry (it votes empty) and the engine's stats show (`failedWorkers`). Only a thread that was ready once
   * gives up this way; the engine's own start fails with the load's error instead.
   */
  private giveUp(cause: Error | null): void {
    const code = cause instanceof DropbearError ? cause.code : 'WORKER_FAILED';
    this.failed = new DropbearError(
      'WORKER_START_FAILED',
      `inference worker thread failed to start ${this.startFailures} times in a row; gave up: ${code}: ${cause?.message ?? 'unknown'}`,
      { attempts: this.startFailures, cause: code },
    );
    this.policy.log.error(
      { attempts: this.startFailures, code, err: cause?.message },
      'inference worker thread failed to start; gave up (the node votes empty answers for this model until restarted)',
    );
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  get ready(): Promise<void> {
    return this.handle.ready;
  }

  get dead(): Error | null {
    return this.handle.deadWith;
  }

  /** Calls waiting on the thread; Infinity while it is dead or its replacement starts (not to be chosen). */
  get inFlight(): number {
    const h = this.handle;
    return h.deadWith || !h.wasReady ? Number.POSITIVE_INFINITY : h.inFlight;
  }

  /** Whether a call waits through failed starts (a slot with a bound on them, whose thread was ready once). */
  private get retries(): boolean {
    return this.started && Number.isFinite(this.policy.attempts) && !this.closed && !this.failed;
  }

  request(msg: WithoutId<WorkerRequest>, transfer: ArrayBuffer[] = []): Promise<WorkerAnswer> {
    if (this.closed)
      return Promise.reject(new DropbearError('ENGINE_CLOSED', 'the inference engine is closed'));
    if (this.failed) return Promise.reject(this.failed);
    const h = this.handle;
    // A failed start, the next one due: wait for it rather than fail (the host would vote the call empty).
    if (this.timer && this.retries)
      return new Promise<void>((resolve) => this.waiters.push(resolve)).then(() =>
        this.request(msg, transfer),
      );
    // A replacement still starting: send once it is ready. Should its start fail, a slot that retries sends
    // the call on once the thread has exited (the retry is scheduled by then); otherwise the call fails, with
    // WORKER_START_FAILED where that start was the last the slot tries: the thread's exit may give up before
    // this runs, and the call failed with the start's own error (MODEL_DIGEST_MISMATCH, say) instead, which
    // the node host does not read as a slot given up (a CI run on 2026-12-07, test/inference/worker-death).
    if (!h.wasReady && !h.deadWith)
      return h.ready.then(
        () => h.request(msg, transfer),
        (e) =>
          this.retries ? h.gone.then(() => this.request(msg, transfer)) : Promise.reject(this.failed ?? e),
      );
    return h.request(msg, transfer);
  }

  close(drainMs?: number, busyMs?: number): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const handles = [this.handle, ...this.setAside];
    const closing = Promise.all(handles.map((h) => h.close(drainMs, busyMs))).then(() => {
      const left = handles.filter((h) => h.leftRunning).length;
      // A process that exits now cannot do so cleanly: Node ends its worker threads at exit and waits for the
      // native call, and onnxruntime aborts the process when it returns (or the exit waits for ever).
      if (left > 0)
        this.policy.log.error(
          { code: 'WORKER_LEFT_RUNNING', threads: left },
          'inference worker thread still inside a call at close; left to exit by itself when the call returns (a process exit before then aborts or waits for it)',
        );
    });
    // Calls waiting for a start that will not come now fail with ENGINE_CLOSED (request).
    this.wake();
    return closing;
  }
}

export interface SessionOptions {
  intraOpThreads: number;
  interOpThreads: number;
  /** onnxruntime execution providers in order of preference, e.g. ['cuda', 'cpu']. */
  executionProviders: string[];
  /** The worker thread's nice value, 0–19 (EngineOptions.workerNice; 0 when not given). */
  workerNice?: number;
  /** A call's bound in ms before it fails with WORKER_TIMEOUT; 0: none (REQUEST_TIMEOUT_MS when not given). */
  requestTimeoutMs?: number;
  /**
   * SHA-256 (hex) the model file must have each time a thread loads it (its first start and every
   * replacement's): the engine passes the digest it checked at start, the one the node votes with.
   */
  modelSha256?: string;
  /** Where a replacement thread's failed starts are reported (a node passes its logger; stderr otherwise). */
  log?: WorkerLog;
  /**
   * The first wait before a replacement thread that failed to start is tried again, doubled per failure,
   * SESSION_START_ATTEMPTS starts in all (RESPAWN_MIN_MS, 1 s, when not given; tests shorten it).
   */
  startRetryMs?: number;
}

/** One onnxruntime session in its own worker thread. */
export class SessionRunner {
  private readonly handle: LiveWorker;

  private constructor(handle: LiveWorker) {
    this.handle = handle;
  }

  static async start(modelPath: string, spec: ModelSpec, opts: SessionOptions): Promise<SessionRunner> {
    const handle = new LiveWorker(
      {
        role: 'session',
        modelPath,
        spec,
        intraOpThreads: opts.intraOpThreads,
        interOpThreads: opts.interOpThreads,
        executionProviders: opts.executionProviders,
        nice: opts.workerNice ?? 0,
        sha256: opts.modelSha256,
      },
      opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
      undefined,
      {
        attempts: SESSION_START_ATTEMPTS,
        retryMs: opts.startRetryMs ?? RESPAWN_MIN_MS,
        log: opts.log ?? STDERR_LOG,
      },
    );
    try {
      await handle.ready;
    } catch (e) {
      await handle.close();
      throw e;
    }
    return new SessionRunner(handle);
  }

  /** Calls on the thread; Infinity while it is dead and not yet replaced. */
  get inFlight(): number {
    return this.handle.inFlight;
  }

  /** Threads started to replace dead or hung ones. */
  get replaced(): number {
    return this.handle.replaced;
  }

  /** Threads set aside because a call on them timed out. */
  get hung(): number {
    return this.handle.hung;
  }

  /** WORKER_START_FAILED once the slot gave up starting a thread (its calls all fail with it); else null. */
  get failed(): DropbearError | null {
    return this.handle.failed;
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
  private readonly handles: LiveWorker[];
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
    handles: LiveWorker[],
    private readonly outBytes: number,
  ) {
    this.handles = handles;
  }

  /** Threads started to replace dead or hung ones. */
  get replaced(): number {
    return this.handles.reduce((a, h) => a + h.replaced, 0);
  }

  /** Threads set aside because a call on them timed out. */
  get hung(): number {
    return this.handles.reduce((a, h) => a + h.hung, 0);
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
  /** `timeoutMs`: a call's bound before WORKER_TIMEOUT (0: none). `log`: where failed starts are reported. */
  static async start(
    spec: ModelSpec,
    decoder: Decoder,
    size: number,
    nice = 0,
    timeoutMs = REQUEST_TIMEOUT_MS,
    log: WorkerLog = STDERR_LOG,
  ): Promise<PrepPool> {
    let pool: PrepPool | undefined;
    // A preprocessing thread loads no model: one that fails to start is tried again for as long as it takes
    // (its calls fail meanwhile, PrepPool.prep), as before 2026-12-06; its failures are logged.
    const policy = { attempts: Number.POSITIVE_INFINITY, retryMs: RESPAWN_MIN_MS, log };
    const handles = Array.from(
      { length: Math.max(1, size) },
      () => new LiveWorker({ role: 'prep', spec, decoder, nice }, timeoutMs, () => pool?.pump(), policy),
    );
    try {
      await Promise.all(handles.map((h) => h.ready));
    } catch (e) {
      await Promise.all(handles.map((h) => h.close()));
      throw e;
    }
    pool = new PrepPool(handles, 4 * inputElements(spec));
    return pool;
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
    // Every thread dead, their replacements not yet there: fail now rather than wait for them.
    const dead = this.allDead();
    if (dead) return Promise.reject(dead);
    return new Promise((resolve, reject) => {
      this.waiting.push({ bytes, wanted, half, resolve, reject });
    });
  }

  /** The least-loaded worker with room for another call, if any. */
  private free(): LiveWorker | undefined {
    let best: LiveWorker | undefined;
    for (const x of this.handles)
      if (x.inFlight < PREP_PER_WORKER && (best === undefined || x.inFlight < best.inFlight)) best = x;
    return best;
  }

  /** The error of a dead thread when every thread is dead, else null. */
  private allDead(): Error | null {
    let e: Error | null = null;
    for (const x of this.handles) {
      if (!x.dead) return null;
      e = x.dead;
    }
    return e;
  }

  private send(h: LiveWorker, bytes: Uint8Array, half: boolean): Promise<{ data: ModelInput; ms: number }> {
    const out = (half ? this.spareHalf : this.spare).pop();
    if (out) this.reusedOutputs++;
    const p = h.request({ type: 'prep', bytes, out, half }, out ? [out] : []);
    p.then(this.pump, this.pump);
    return p;
  }

  private readonly pump = (): void => {
    if (this.closed) return;
    while (this.waiting.length > 0) {
      const h = this.free();
      if (!h) {
        const dead = this.allDead();
        if (dead) for (const w of this.waiting.splice(0)) w.reject(dead);
        return;
      }
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
