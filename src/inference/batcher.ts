/**
 * A dynamic batcher: items queue until `maxBatch` are waiting or the oldest has waited `maxDelayMs`, then go
 * to the runner as one batch. At most `maxInFlight` batches run at once (2 lets the next batch form and
 * cross to the worker while one runs). The queue is bounded: past `maxQueue` waiting items a submit is
 * refused at once with OVERLOADED instead of growing without bound.
 */
import { DropbearError } from '../protocol/errors.ts';
import { INFERENCE_SKIPPED } from './backend.ts';
import { toHalf } from './preprocess.ts';

export interface BatcherOptions {
  maxBatch: number;
  maxDelayMs: number;
  maxQueue: number;
  maxInFlight: number;
  /**
   * The model takes float16: each batch is built as IEEE half bits, so the session's thread spends its
   * time in the model only. Items submitted as half bits (a Uint16Array: the engine's own inputs,
   * converted on its preprocessing workers) are copied; float items are converted here, on the caller's
   * thread.
   */
  half?: boolean;
  /**
   * Called with the input of an item submitted as `owned` once it has been copied into its batch: the
   * caller may reuse its buffer (the engine hands it back to its preprocessing workers).
   */
  release?: (x: Float32Array | Uint16Array) => void;
}

/**
 * Runs a batch; `data` may be transferred away. A runner that hands the batch's buffer back (`input`, the
 * whole ArrayBuffer of `data`) lets the batcher build a later batch in it.
 */
export type BatchRunner = (
  data: Float32Array | Uint16Array,
  n: number,
) => Promise<{ data: Float32Array; ms: number; input?: ArrayBuffer }>;

/** Batch buffers kept for reuse beyond those in flight. */
const SPARE_BUFFERS = 2;

interface Item {
  x: Float32Array | Uint16Array;
  owned: boolean;
  at: number;
  wanted: (() => boolean) | undefined;
  resolve: (y: Float32Array) => void;
  reject: (e: Error) => void;
}

export interface BatcherStats {
  queued: number;
  inFlight: number;
  batches: number;
  items: number;
  rejected: number;
  /** Items refused with INFERENCE_SKIPPED when their batch formed: their caller no longer wanted them. */
  skipped: number;
  /** Batch size → number of batches of that size. */
  sizes: Map<number, number>;
  /** Sum of worker run times, ms. */
  runMs: number;
}

export class DynamicBatcher {
  private readonly queue: Item[] = [];
  /**
   * Buffers of batches that ran, handed back by the runner: the next batches are built in them. A fresh
   * buffer per batch (megabytes: 8 images of 224×224×3 floats are 4.8 MB) cost its zero-fill and a page
   * fault per 4 KB page on the thread that builds batches (a node's event loop), every time.
   */
  private readonly spare: ArrayBuffer[] = [];
  /** Batches built in a buffer handed back by the runner. */
  reusedBuffers = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  readonly stats: BatcherStats = {
    queued: 0,
    inFlight: 0,
    batches: 0,
    items: 0,
    rejected: 0,
    skipped: 0,
    sizes: new Map(),
    runMs: 0,
  };

  constructor(
    private readonly itemSize: number,
    private readonly outSize: number,
    private readonly run: BatchRunner,
    private readonly opts: BatcherOptions,
  ) {
    if (opts.maxBatch < 1 || opts.maxQueue < 1 || opts.maxInFlight < 1 || opts.maxDelayMs < 0)
      throw new DropbearError('CONFIG_INVALID', 'batcher limits must be positive');
  }

  get queued(): number {
    return this.queue.length;
  }

  /**
   * `wanted` is asked when the item's batch forms; false refuses it with INFERENCE_SKIPPED, unrun. `owned`:
   * nothing else uses `x` once it is in a batch (see BatcherOptions.release). Half bits (a Uint16Array)
   * only where the batcher is `half`.
   */
  submit(x: Float32Array | Uint16Array, wanted?: () => boolean, owned = false): Promise<Float32Array> {
    if (this.closed)
      return Promise.reject(new DropbearError('ENGINE_CLOSED', 'the inference engine is closed'));
    if (x instanceof Uint16Array && !this.opts.half)
      return Promise.reject(
        new DropbearError('INPUT_SHAPE', 'half-precision input for a model that takes float32'),
      );
    if (x.length !== this.itemSize)
      return Promise.reject(
        new DropbearError('INPUT_SHAPE', `an input needs ${this.itemSize} values, got ${x.length}`),
      );
    if (this.queue.length >= this.opts.maxQueue) {
      this.stats.rejected++;
      return Promise.reject(
        new DropbearError('OVERLOADED', `inference queue full (${this.opts.maxQueue} waiting); retry later`),
      );
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ x, owned, at: performance.now(), wanted, resolve, reject });
      this.stats.queued = this.queue.length;
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length > 0 && this.stats.inFlight < this.opts.maxInFlight) {
      const waited = performance.now() - this.queue[0].at;
      if (this.queue.length < this.opts.maxBatch && waited < this.opts.maxDelayMs) {
        if (!this.timer)
          this.timer = setTimeout(() => {
            this.timer = null;
            this.pump();
          }, this.opts.maxDelayMs - waited);
        return;
      }
      const items = this.take();
      if (items.length > 0) this.flush(items);
    }
    this.stats.queued = this.queue.length;
  }

  /** Up to `maxBatch` items from the front; those no longer wanted are refused on the way, never run. */
  private take(): Item[] {
    const items: Item[] = [];
    let i = 0;
    while (i < this.queue.length && items.length < this.opts.maxBatch) {
      const it = this.queue[i++];
      if (it.wanted === undefined || it.wanted()) items.push(it);
      else {
        this.stats.skipped++;
        it.reject(INFERENCE_SKIPPED);
      }
    }
    this.queue.splice(0, i);
    return items;
  }

  private flush(items: Item[]): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const n = items.length;
    const size = this.itemSize;
    let data: Float32Array | Uint16Array;
    if (this.opts.half) {
      const h = new Uint16Array(this.buffer(n * size * 2), 0, n * size);
      items.forEach((it, i) => {
        if (it.x instanceof Uint16Array) h.set(it.x, i * size);
        else toHalf(it.x, h.subarray(i * size, (i + 1) * size));
      });
      data = h;
    } else {
      const f = new Float32Array(this.buffer(n * size * 4), 0, n * size);
      items.forEach((it, i) => {
        f.set(it.x, i * size);
      });
      data = f;
    }
    const release = this.opts.release;
    if (release) for (const it of items) if (it.owned) release(it.x);
    this.stats.inFlight++;
    this.stats.batches++;
    this.stats.items += n;
    this.stats.sizes.set(n, (this.stats.sizes.get(n) ?? 0) + 1);
    this.run(data, n).then(
      (r) => {
        this.stats.inFlight--;
        this.stats.runMs += r.ms;
        if (r.input) this.keep(r.input);
        if (r.data.length !== n * this.outSize) {
          const e = new DropbearError('MODEL_OUTPUT', `model gave ${r.data.length} values for ${n} items`);
          for (const it of items) it.reject(e);
        } else
          for (let i = 0; i < n; i++)
            items[i].resolve(r.data.subarray(i * this.outSize, (i + 1) * this.outSize));
        this.pump();
      },
      (e: Error) => {
        this.stats.inFlight--;
        for (const it of items) it.reject(e);
        this.pump();
      },
    );
    this.stats.queued = this.queue.length;
  }

  /**
   * An ArrayBuffer of at least `bytes` for the next batch (every byte the batch uses is written before it
   * runs): a spare one if one is large enough, else a new one, not zero-filled.
   */
  private buffer(bytes: number): ArrayBuffer {
    // The smallest spare that fits: the large ones stay for large batches.
    let best = -1;
    for (let i = 0; i < this.spare.length; i++)
      if (
        this.spare[i].byteLength >= bytes &&
        (best < 0 || this.spare[i].byteLength < this.spare[best].byteLength)
      )
        best = i;
    if (best >= 0) {
      this.reusedBuffers++;
      return this.spare.splice(best, 1)[0];
    }
    // allocUnsafeSlow: a Buffer with an ArrayBuffer of its own (transferable), not from the shared pool.
    return Buffer.allocUnsafeSlow(bytes).buffer as ArrayBuffer;
  }

  /**
   * Keeps a handed-back buffer for a later batch: at most maxInFlight + SPARE_BUFFERS of them (each at most
   * a full batch: ~4.8 MB for 8 images of 224×224×3 floats), a larger one replacing the smallest.
   */
  private keep(b: ArrayBuffer): void {
    if (this.spare.length < this.opts.maxInFlight + SPARE_BUFFERS) {
      this.spare.push(b);
      return;
    }
    let smallest = 0;
    for (let i = 1; i < this.spare.length; i++)
      if (this.spare[i].byteLength < this.spare[smallest].byteLength) smallest = i;
    if (b.byteLength > this.spare[smallest].byteLength) this.spare[smallest] = b;
  }

  /** Refuses new items and fails the waiting ones; batches already running finish. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const e = new DropbearError('ENGINE_CLOSED', 'the inference engine is closed');
    for (const it of this.queue.splice(0)) it.reject(e);
  }
}
