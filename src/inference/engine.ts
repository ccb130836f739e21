/**
 * One model's inference engine: inputs are decoded and preprocessed on worker threads, gathered by the
 * dynamic batcher, and run by one onnxruntime session in its own worker thread; outputs become Results.
 * Nothing here blocks the caller's event loop for longer than a copy.
 */
import { DropbearError } from '../protocol/errors.ts';
import type { Result } from '../protocol/index.ts';
import { type ClassifyOptions, INFERENCE_SKIPPED, type ModelBackend } from './backend.ts';
import { type BatcherOptions, DynamicBatcher } from './batcher.ts';
import type { Decoder } from './decode.ts';
import { toResult } from './postprocess.ts';
import { copyModelTensor, inputElements, sniffInput } from './preprocess.ts';
import { fixedBatchOne, type ModelSpec } from './spec.ts';
import { requireDigest } from './store.ts';
import {
  type ModelInput,
  PrepPool,
  REQUEST_TIMEOUT_MS,
  type SessionOptions,
  SessionRunner,
} from './threads.ts';

export interface EngineOptions extends Partial<SessionOptions>, Partial<BatcherOptions> {
  modelPath: string;
  spec: ModelSpec;
  /** When given, the file must hash to this SHA-256 (hex) or the engine refuses to start. */
  expectDigest?: string;
  /** Preprocessing worker threads (default 1). */
  prepWorkers?: number;
  /** Session worker threads, each with its own copy of the session (default 1). */
  sessionWorkers?: number;
  decoder?: Decoder;
}

export const ENGINE_DEFAULTS = {
  intraOpThreads: 1,
  interOpThreads: 1,
  executionProviders: ['cpu'],
  // 8, measured against 1 and 32 on 2026-12-03 (BENCHMARKS.md, batching sweep). With the e2e part's four
  // models on both sides (`npm run bench -- e2e --max-batch=N`), pairs of runs gave a lower p99 ratio at
  // half load with 8 than with 32 in three of three (4.0, 4.7, 4.0 against 11.6, 8.2, 4.8) and than with 1
  // in three of three (3.4, 3.7, 3.9 against 4.4, 5.0, 6.4; 1 cost the nodes 4-10 CPU-ms more per image
  // there). The sweep, on the same four models with the e2e client, picks 1 by the p99 at a lighter load
  // (~42 % of the group's peak: 83 against 153 ms at 963cdf0), where a lone image never waits behind a
  // model batch; the target is read at the e2e's load, so 8. `serve-model` and the benches use 8 too. A model
  // whose batch dimension is fixed at 1 runs one input at a time whatever this says (start()).
  maxBatch: 8,
  maxDelayMs: 2,
  maxQueue: 512,
  maxInFlight: 2,
  prepWorkers: 1,
  sessionWorkers: 1,
  decoder: 'fast' as Decoder,
  // The preprocessing and session worker threads run at this nice value (Linux only: elsewhere a nice
  // value is the whole process's); above 0 they run below the thread that owns the engine, so a node's
  // short protocol steps take a core when they wake instead of waiting behind a model run. Measured on
  // 2026-12-04 (`npm run bench:groupab`, BENCHMARKS.md "Two e2e groups side by side"), 10 against 0: the
  // pooled p99 0.78 and 0.71 at 25 images/s, 0.97 at 18/s; at 30/s, near the group's saturation, one
  // round of the niced group fell 8 s behind (its models starved while its event loops caught up, the
  // likely reading) where the other kept up. A lower tail at one load is not worth a collapse at a
  // higher one: 0 (the process's own priority), the setting an operator may raise.
  workerNice: 0,
  // A call to a worker thread (a batch's run, an input's preprocessing) that takes longer fails with
  // WORKER_TIMEOUT; 0 turns the bound off (threads.ts, REQUEST_TIMEOUT_MS).
  requestTimeoutMs: REQUEST_TIMEOUT_MS,
};

/** A nice value a worker thread may take (EngineOptions.workerNice): an integer from 0 (the process's) to 19. */
export function isWorkerNice(n: unknown): n is number {
  return Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 19;
}

export interface EngineStats {
  queued: number;
  preprocessing: number;
  inFlight: number;
  batches: number;
  items: number;
  rejected: number;
  /** Inputs refused with INFERENCE_SKIPPED before decoding or their batch (their caller stopped waiting). */
  skipped: number;
  batchSizes: Record<number, number>;
  runMs: number;
  prepMs: number;
  /** Inputs decoded and preprocessed on the workers (model tensors are copied, not counted). */
  decoded: number;
  /** Batches built in the buffer of an earlier batch, handed back by its worker (none allocated). */
  reusedBuffers: number;
  /** Inputs handed the buffer of an earlier input (once that one was in a batch) to be preprocessed into. */
  reusedInputBuffers: number;
  /**
   * Session worker slots that gave up starting a thread (threads.ts, SESSION_START_ATTEMPTS): their calls fail
   * with WORKER_START_FAILED, and with every slot failed the node votes empty answers until it restarts.
   */
  failedWorkers: number;
  /** The first failed slot's error message, null while none failed. */
  workerFailure: string | null;
  /** Session worker slots (EngineOptions.sessionWorkers). */
  sessionWorkers: number;
}

export class InferenceEngine implements ModelBackend {
  readonly spec: ModelSpec;
  readonly digest: string;
  readonly itemSize: number;
  readonly outSize: number;
  private readonly runners: SessionRunner[];
  private readonly prepPool: PrepPool;
  private readonly batcher: DynamicBatcher;
  private readonly maxQueue: number;
  /** The model takes float16: classify's inputs come from the preprocessing workers as half bits. */
  private readonly half: boolean;
  private preparing = 0;
  private prepMs = 0;
  private rejected = 0;
  private skipped = 0;
  private decoded = 0;

  private constructor(
    spec: ModelSpec,
    digest: string,
    runners: SessionRunner[],
    prepPool: PrepPool,
    o: Omit<Required<BatcherOptions>, 'half' | 'release'>,
  ) {
    this.spec = spec;
    this.digest = digest;
    this.runners = runners;
    this.prepPool = prepPool;
    this.itemSize = inputElements(spec);
    this.outSize = spec.output.shape.slice(1).reduce<number>((a, d) => a * (d ?? 1), 1);
    this.maxQueue = o.maxQueue;
    this.half = spec.input.dtype === 'float16';
    this.batcher = new DynamicBatcher(this.itemSize, this.outSize, (d, n) => this.leastLoaded().run(d, n), {
      ...o,
      maxInFlight: o.maxInFlight * runners.length,
      half: this.half,
      // classify's inputs, once in a batch: their buffers go back to the preprocessing workers.
      release: (x) => this.prepPool.giveBack(x.buffer as ArrayBuffer),
    });
  }

  static async start(opts: EngineOptions): Promise<InferenceEngine> {
    const digest = await requireDigest(opts.modelPath, opts.expectDigest ?? opts.spec.sha256);
    const o = {
      ...ENGINE_DEFAULTS,
      ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
    };
    for (const k of [
      'intraOpThreads',
      'interOpThreads',
      'maxBatch',
      'maxQueue',
      'maxInFlight',
      'prepWorkers',
    ] as const)
      if (!Number.isInteger(o[k]) || o[k] < 1)
        throw new DropbearError('CONFIG_INVALID', `${k} must be a positive integer, got ${o[k]}`);
    if (!Number.isInteger(o.requestTimeoutMs) || o.requestTimeoutMs < 0)
      throw new DropbearError(
        'CONFIG_INVALID',
        `requestTimeoutMs must be a non-negative integer, got ${o.requestTimeoutMs}`,
      );
    if (!isWorkerNice(o.workerNice))
      throw new DropbearError(
        'CONFIG_INVALID',
        `workerNice must be an integer from 0 to 19, got ${o.workerNice}`,
      );
    // A model whose batch dimension is fixed at 1 takes one input per run, whatever maxBatch says: batching
    // its inputs saves nothing (its worker would run them one by one) and every input of a batch would wait
    // for the last one's run. Measured (BENCHMARKS.md, inference pipeline): at 30 images/s, ShuffleNet's p99
    // 35-37 ms against 45-57 with batches of up to 8, the CPU per image the same; in three e2e pairs the
    // certified p99 at half load 177-213 ms against 221-256 (the fan-out's servers get it too).
    const maxBatch = fixedBatchOne(opts.spec) ? 1 : o.maxBatch;
    const started = await Promise.allSettled([
      PrepPool.start(opts.spec, o.decoder, o.prepWorkers, o.workerNice, o.requestTimeoutMs, opts.log),
      ...Array.from({ length: o.sessionWorkers }, () =>
        SessionRunner.start(opts.modelPath, opts.spec, {
          ...o,
          modelSha256: digest,
          log: opts.log,
          startRetryMs: opts.startRetryMs,
        }),
      ),
    ]);
    const failed = started.find((x) => x.status === 'rejected');
    if (failed) {
      await Promise.all(started.map((x) => (x.status === 'fulfilled' ? x.value.close() : undefined)));
      throw (failed as PromiseRejectedResult).reason;
    }
    const values = started.map((x) => (x as PromiseFulfilledResult<PrepPool | SessionRunner>).value);
    const prep = values[0] as PrepPool;
    const runners = values.slice(1) as SessionRunner[];
    return new InferenceEngine(opts.spec, digest, runners, prep, {
      maxBatch,
      maxDelayMs: o.maxDelayMs,
      maxQueue: o.maxQueue,
      maxInFlight: o.maxInFlight,
    });
  }

  /**
   * The runner with the fewest calls. A dead runner counts as Infinity until its thread is replaced, so it
   * is chosen only when every runner is dead or starting (its call then fails, or waits for the start).
   */
  private leastLoaded(): SessionRunner {
    let best = this.runners[0];
    for (const r of this.runners) if (r.inFlight < best.inFlight) best = r;
    return best;
  }

  /** Worker threads started to replace dead or hung ones (session and preprocessing). */
  get replacedWorkers(): number {
    return this.prepPool.replaced + this.runners.reduce((a, r) => a + r.replaced, 0);
  }

  /** Worker threads set aside because a call on them timed out (threads.ts, LiveWorker). */
  get hungWorkers(): number {
    return this.prepPool.hung + this.runners.reduce((a, r) => a + r.hung, 0);
  }

  private admit(): void {
    if (this.preparing + this.batcher.queued >= this.maxQueue) {
      this.rejected++;
      throw new DropbearError('OVERLOADED', `inference queue full (${this.maxQueue} waiting); retry later`);
    }
  }

  /** Input bytes (JPEG, PNG, DBT1 tensor) to the model's preprocessed input, as floats. */
  async preprocess(input: Uint8Array, wanted?: () => boolean): Promise<Float32Array> {
    return (await this.prepare(input, wanted, false)) as Float32Array;
  }

  /**
   * The same as the batch takes it: for a float16 model, half bits converted on the preprocessing worker
   * (a model tensor is copied as floats here and converted when its batch forms).
   */
  private modelInput(input: Uint8Array, wanted?: () => boolean): Promise<ModelInput> {
    return this.prepare(input, wanted, this.half);
  }

  private async prepare(
    input: Uint8Array,
    wanted: (() => boolean) | undefined,
    half: boolean,
  ): Promise<ModelInput> {
    // Only a raw tensor is copied here: for an image (every request in practice) this buffer was allocated,
    // zero-filled and dropped per input, ~3 % of a node's main thread under load (perf, e2e).
    if (sniffInput(input) === 'tensor') {
      const direct = new Float32Array(this.itemSize);
      if (copyModelTensor(input, this.spec, direct, 0)) return direct;
    }
    this.preparing++;
    try {
      const r = await this.prepPool.prep(input, wanted, half);
      this.prepMs += r.ms;
      this.decoded++;
      return r.data;
    } finally {
      this.preparing--;
    }
  }

  /** Raw scores for one preprocessed input (through the batcher). */
  scores(x: Float32Array): Promise<Float32Array> {
    return this.batcher.submit(x);
  }

  /**
   * Raw scores for input bytes (JPEG, PNG, DBT1 tensor) the way classify runs them: a float16 model's
   * input converted on the preprocessing worker, its buffer handed back once in its batch.
   */
  async scoresFor(input: Uint8Array): Promise<Float32Array> {
    this.admit();
    return this.batcher.submit(await this.modelInput(input), undefined, true);
  }

  /**
   * One input to its Result (top-5, scores in millionths). `opts.wanted` is asked before decoding and when
   * the input's batch forms (ModelBackend says why).
   */
  async classify(input: Uint8Array, opts?: ClassifyOptions): Promise<Result> {
    const wanted = opts?.wanted;
    if (wanted !== undefined && !wanted()) {
      this.skipped++;
      throw INFERENCE_SKIPPED;
    }
    this.admit();
    const x = await this.modelInput(input, wanted);
    return toResult(await this.batcher.submit(x, wanted, true), this.spec.output.meaning);
  }

  stats(): EngineStats {
    const b = this.batcher.stats;
    return {
      queued: b.queued,
      preprocessing: this.preparing,
      inFlight: b.inFlight,
      batches: b.batches,
      items: b.items,
      rejected: b.rejected + this.rejected,
      skipped: this.skipped + this.prepPool.skipped + b.skipped,
      batchSizes: Object.fromEntries(b.sizes),
      runMs: b.runMs,
      prepMs: this.prepMs,
      decoded: this.decoded,
      reusedBuffers: this.batcher.reusedBuffers,
      reusedInputBuffers: this.prepPool.reusedOutputs,
      sessionWorkers: this.runners.length,
      failedWorkers: this.runners.filter((r) => r.failed).length,
      workerFailure: this.runners.find((r) => r.failed)?.failed?.message ?? null,
    };
  }

  async close(): Promise<void> {
    this.batcher.close();
    await Promise.all([...this.runners.map((r) => r.close()), this.prepPool.close()]);
  }
}
