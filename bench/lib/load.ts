/**
 * Load generators, bounded in time. Open loop: requests are issued at a fixed rate whatever the answers
 * do, and each latency runs from the request's *scheduled* time (so a stalled generator or server shows
 * up as latency, not as fewer requests). Closed loop: `concurrency` callers, each sending its next request
 * when its last one is answered.
 *
 * After the window, requests still in flight get `drainMs` to finish; what is left then counts as
 * unfinished (a failure). Throughput counts requests answered successfully inside the window; in open loop
 * only after its first second (`openRampMs`): no answer can come before its request's latency has passed,
 * so counting from the window's start read a step that kept up with its rate at latency L as L/duration
 * short of it (a 500 ms latency at 100/s over 2 s read 75/s with every request answered). In closed loop
 * from the first turn of the event loop that brought answers to the last one (`closedLoopRate`).
 */
import { type Percentiles, percentiles } from './stats.ts';

/** Sends request number `i`; resolves when it is answered successfully, rejects (with a `code`) if not. */
export type Send = (i: number) => Promise<void>;

/**
 * Coalescing by turn of the event loop: calls made in the same turn become one call of `run` on all their
 * items (in call order), and each settles with its own answer; `run` failing fails every call of its turn.
 * Nothing waits for more calls. The fan-out baseline of the e2e part coalesces with this as the SDK's
 * `coalesce` does for the certified side.
 */
export function sameTurn<T, R>(run: (items: T[]) => Promise<R[]>): (item: T) => Promise<R> {
  let calls: { item: T; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  const flush = () => {
    const mine = calls;
    calls = [];
    let p: Promise<R[]>;
    try {
      p = run(mine.map((c) => c.item));
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (out) => {
        mine.forEach((c, k) => {
          if (k < out.length) c.resolve(out[k]);
          else c.reject(new Error(`${out.length} answers for ${mine.length} items`));
        });
      },
      (e: unknown) => {
        for (const c of mine) c.reject(e);
      },
    );
  };
  return (item) =>
    new Promise<R>((resolve, reject) => {
      calls.push({ item, resolve, reject });
      if (calls.length === 1) setImmediate(flush);
    });
}

export interface StepResult {
  mode: 'open' | 'closed';
  /** Requests per second offered (open loop). */
  offered: number | null;
  concurrency: number | null;
  durationMs: number;
  issued: number;
  ok: number;
  failed: number;
  /** Still unanswered when the drain time ran out. */
  unfinished: number;
  /** Open loop: not issued because `maxInFlight` requests were already waiting (counted as failed too). */
  dropped: number;
  /**
   * Successful answers inside the window, per second (open loop: after its first second, openRampMs;
   * closed loop: between its first and last answers, closedLoopRate).
   */
  throughput: number;
  /** Successful answers in each whole second of the window (the spread of `throughput`). */
  perSecond: number[];
  /** Latency in ms of every successful answer to a request issued in the window. */
  latency: Percentiles;
  /** Open loop: the most the generator fell behind its schedule, in ms (large: the generator saturated). */
  maxLagMs: number;
  errors: Record<string, number>;
}

/**
 * The start of an open-loop step that its throughput leaves out: answers arrive from a request's latency
 * after the first send, so the answers counted over the whole window fall short of a rate the servers keep
 * up with by the requests still in flight at its end. Counted from here on, the figure is the rate the
 * answers came at over the rest of the window: the offered rate for a step whose latencies stay steady and
 * under this, more where the servers catch up on a backlog from a slow first second (offered + the fall
 * in requests in flight over the rest of the window), and past the servers' capacity the rate at which
 * they answered under load (the answers of the drain, when the generator has stopped, are not counted).
 */
export function openRampMs(durationMs: number): number {
  return Math.min(1000, durationMs / 2);
}

/**
 * What closed loop's throughput is read from: the answers inside the window, grouped by the turn of the
 * event loop they came in (the answers of one HTTP response, or of one server batch, come in one turn).
 */
export interface AnswerTurns {
  /** Successful answers inside the window. */
  n: number;
  /** Of those, the ones of the first turn that brought any, and when its last one came (ms, any origin). */
  firstN: number;
  firstAt: number;
  /** When the last answer inside the window came. */
  lastAt: number;
  /** The longest time between two answers inside the window after the first turn's last one. */
  maxGapMs: number;
}

/**
 * Closed loop's throughput, answers per second: those after the first turn that brought answers, up to
 * the last one, over the time between that turn and the last answer,
 *
 *   (n − firstN) / (lastAt − firstAt),
 *
 * with the time to the window's end instead of to the last answer where the window ends with a silence
 * longer than any gap between answers before it (the servers stalled: their silence counts).
 *
 * Why not the answers inside the window over its length (as until 2026-12-05): at the start every caller
 * sends at once and nothing can be answered before a first latency (a batch's time) has passed, and where
 * answers come in batches the count moves by whole batches. A server answering 32 at a time every 600 ms
 * (53.3/s) read 52 over 8 s, 32 every 700 ms (45.7/s) 44: the count is whole batches, the first one a
 * period in, so the figure fell short by about half a batch per window on average (32 / 8 s / 2 = 2/s at
 * the e2e part's coalesced batches), and no more finely than one batch per window (4/s). Counted from a
 * batch to a batch, every batch in between and the last one over the whole periods between them, the
 * figure is the servers' rate for steady batches of any size and phase, and for unbatched answers
 * (n − 1 answers over the n − 1 gaps between n answers). The time before the first answers (the
 * pipeline's fill, as openRampMs in open loop) is left out; so is the time from the last answer to the
 * window's end when it is no longer than a gap seen before it (part of the next batch's period).
 * Fewer than two turns with answers: the answers inside the window over its length. A batch whose answers
 * come over several turns (a client resolving them one by one across timers or I/O) puts the rest of the
 * first one into the count: high by less than one batch over the time measured.
 */
export function closedLoopRate(t: AnswerTurns, windowEnd: number, durationMs: number): number {
  const after = t.n - t.firstN;
  // A window of 0 ms (`--warmup-ms=0`) read NaN/s (0 answers over 0 s).
  if (after <= 0 || !(t.lastAt > t.firstAt)) return durationMs > 0 ? t.n / (durationMs / 1000) : 0;
  const until = windowEnd - t.lastAt > t.maxGapMs ? windowEnd : t.lastAt;
  return after / ((until - t.firstAt) / 1000);
}

function wholeSeconds(buckets: number[], durationMs: number): number[] {
  return Array.from({ length: Math.floor(durationMs / 1000) }, (_, i) => buckets[i] ?? 0);
}

function codeOf(e: unknown): string {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' ? c : ((e as Error)?.name ?? 'ERROR');
}

/** One answered request: when it was scheduled (ms from the step's start) and its latency in ms. */
export interface LatencySample {
  at: number;
  ms: number;
}

class Tally {
  readonly lat: number[] = [];
  ok = 0;
  okInWindow = 0;
  /** Answered inside the window after `rampEnd` (open loop's throughput). */
  okAfterRamp = 0;
  failed = 0;
  inFlight = 0;
  readonly errors: Record<string, number> = {};
  readonly perSecond: number[] = [];
  /** Closed loop: the answers inside the window by turn (AnswerTurns), when `byTurn`. */
  readonly turns: AnswerTurns = { n: 0, firstN: 0, firstAt: 0, lastAt: 0, maxGapMs: 0 };
  private turnNo = 0;
  private inTurn = false;
  private idle: (() => void) | null = null;
  constructor(
    readonly start: number,
    readonly windowEnd: number,
    private readonly samples?: LatencySample[],
    readonly rampEnd = start,
    private readonly byTurn = false,
  ) {}
  private answeredInWindow(now: number): void {
    // A turn lasts until the loop's check phase: answers of one response (or of one expiring timer) and
    // of the callbacks run with it belong to it.
    if (!this.inTurn) {
      this.inTurn = true;
      this.turnNo++;
      setImmediate(() => {
        this.inTurn = false;
      });
    }
    const t = this.turns;
    if (this.turnNo === 1) {
      t.firstN++;
      t.firstAt = now;
    } else t.maxGapMs = Math.max(t.maxGapMs, now - t.lastAt);
    t.n++;
    t.lastAt = now;
  }
  track(p: Promise<void>, scheduled: number): void {
    this.inFlight++;
    p.then(
      () => {
        const now = performance.now();
        this.ok++;
        if (now <= this.windowEnd) {
          this.okInWindow++;
          if (now > this.rampEnd) this.okAfterRamp++;
          if (this.byTurn) this.answeredInWindow(now);
          const b = Math.floor((now - this.start) / 1000);
          this.perSecond[b] = (this.perSecond[b] ?? 0) + 1;
        }
        this.lat.push(now - scheduled);
        this.samples?.push({ at: scheduled - this.start, ms: now - scheduled });
      },
      (e: unknown) => {
        this.failed++;
        const c = codeOf(e);
        this.errors[c] = (this.errors[c] ?? 0) + 1;
      },
    ).finally(() => {
      this.inFlight--;
      if (this.inFlight === 0) this.idle?.();
    });
  }
  /** Waits until nothing is in flight or `ms` have passed; returns how many are left. */
  async drain(ms: number): Promise<number> {
    if (this.inFlight === 0) return 0;
    await new Promise<void>((res) => {
      const t = setTimeout(res, ms);
      this.idle = () => {
        clearTimeout(t);
        res();
      };
    });
    this.idle = null;
    return this.inFlight;
  }
}

export interface OpenLoopOptions {
  rate: number;
  durationMs: number;
  drainMs?: number;
  maxInFlight?: number;
  /** Numbering of the requests starts here (distinct inputs across steps). */
  firstIndex?: number;
  /**
   * Receives every answered request's scheduled time and latency (kept out of the StepResult, which is
   * written to the results JSON): for percentiles pooled over runs and their block bootstrap.
   */
  samples?: LatencySample[];
}

export async function openLoop(send: Send, o: OpenLoopOptions): Promise<StepResult> {
  const t0 = performance.now();
  const end = t0 + o.durationMs;
  const ramp = openRampMs(o.durationMs);
  const tally = new Tally(t0, end, o.samples, t0 + ramp);
  const total = Math.floor((o.rate * o.durationMs) / 1000);
  const interval = 1000 / o.rate;
  const maxInFlight = o.maxInFlight ?? 50_000;
  let issued = 0;
  let dropped = 0;
  let maxLag = 0;
  const base = o.firstIndex ?? 0;
  await new Promise<void>((done) => {
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - t0) / interval) + 1);
      for (; issued < due; issued++) {
        const scheduled = t0 + issued * interval;
        maxLag = Math.max(maxLag, now - scheduled);
        if (tally.inFlight >= maxInFlight) {
          dropped++;
          continue;
        }
        tally.track(send(base + issued), scheduled);
      }
      // The next wake-up at the next request's time: waking every millisecond (as this did until 2026-12-02)
      // cost the generator ~2.5 CPU-ms per image at the e2e part's half load, on the cores it measures.
      if (issued >= total) done();
      else setTimeout(tick, Math.max(0, t0 + issued * interval - performance.now()));
    };
    tick();
  });
  const wait = end - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const unfinished = await tally.drain(o.drainMs ?? 10_000);
  return {
    mode: 'open',
    offered: o.rate,
    concurrency: null,
    durationMs: o.durationMs,
    issued,
    ok: tally.ok,
    failed: tally.failed + dropped + unfinished,
    unfinished,
    dropped,
    throughput: tally.okAfterRamp / ((o.durationMs - ramp) / 1000),
    perSecond: wholeSeconds(tally.perSecond, o.durationMs),
    latency: percentiles(tally.lat),
    maxLagMs: maxLag,
    errors: {
      ...tally.errors,
      ...(dropped ? { DROPPED: dropped } : {}),
      ...(unfinished ? { UNFINISHED: unfinished } : {}),
    },
  };
}

export interface ClosedLoopOptions {
  concurrency: number;
  durationMs: number;
  drainMs?: number;
  firstIndex?: number;
}

export async function closedLoop(send: Send, o: ClosedLoopOptions): Promise<StepResult> {
  const t0 = performance.now();
  const end = t0 + o.durationMs;
  const tally = new Tally(t0, end, undefined, t0, true);
  let issued = 0;
  const base = o.firstIndex ?? 0;
  const worker = async () => {
    while (performance.now() < end) {
      const scheduled = performance.now();
      const p = send(base + issued++);
      tally.track(p, scheduled);
      await p.catch(() => {});
    }
  };
  // The callers stop issuing at the window's end; answers after it count for latency, not throughput.
  const workers = Array.from({ length: o.concurrency }, worker);
  const all = Promise.all(workers);
  await Promise.race([all, new Promise((r) => setTimeout(r, o.durationMs + (o.drainMs ?? 10_000)))]);
  const unfinished = await tally.drain(0);
  return {
    mode: 'closed',
    offered: null,
    concurrency: o.concurrency,
    durationMs: o.durationMs,
    issued,
    ok: tally.ok,
    failed: tally.failed + unfinished,
    unfinished,
    dropped: 0,
    throughput: closedLoopRate(tally.turns, end, o.durationMs),
    perSecond: wholeSeconds(tally.perSecond, o.durationMs),
    latency: percentiles(tally.lat),
    maxLagMs: 0,
    errors: { ...tally.errors, ...(unfinished ? { UNFINISHED: unfinished } : {}) },
  };
}
