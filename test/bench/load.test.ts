/** The open-loop generator: every request issued, none before its time, one wake-up per request. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { closedLoop, openLoop } from '../../bench/lib/load.ts';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('openLoop', () => {
  it('issues each request at its scheduled time, never early, waking about once per request', async () => {
    const rate = 50;
    const durationMs = 1000;
    const sentAt: number[] = [];
    const timers = vi.spyOn(globalThis, 'setTimeout');
    const t0 = performance.now();
    const r = await openLoop(
      async () => {
        sentAt.push(performance.now());
      },
      { rate, durationMs, drainMs: 100 },
    );
    expect(r.issued).toBe(50);
    expect(r.ok).toBe(50);
    expect(r.failed).toBe(0);
    const interval = 1000 / rate;
    sentAt.forEach((t, k) => {
      // Timers may fire up to a millisecond before their time is due by performance.now() (their clock
      // rounds); a request issued earlier than that would be a generator bug.
      expect(t - (t0 + k * interval)).toBeGreaterThan(-1.5);
    });
    // One timer per request (and a few for the end of the step), not one per millisecond (~1,000).
    expect(timers.mock.calls.length).toBeLessThan(3 * 50);
  });
});

describe('openLoop throughput', () => {
  afterEach(() => {
    vi.useRealTimers();
  });
  const fake = () =>
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'performance'] });

  it('reads the offered rate for servers that keep up with it, whatever their latency', async () => {
    fake();
    // Every request answered 500 ms after it was sent, however many are in flight: the servers keep up
    // with any rate. Counted from the window's start this read 75.5/s (the first 500 ms have no answers).
    const send = () => new Promise<void>((r) => setTimeout(r, 500));
    const p = openLoop(send, { rate: 100, durationMs: 2000, drainMs: 5000 });
    await vi.advanceTimersByTimeAsync(10_000);
    const r = await p;
    expect(r.ok).toBe(200);
    expect(r.failed).toBe(0);
    expect(r.throughput).toBe(100);
  });

  it('reads the servers’ capacity past it, not the offered rate', async () => {
    fake();
    // One request at a time, 20 ms each: 50/s at most, offered 100/s.
    let queue = Promise.resolve();
    const send = () => {
      queue = queue.then(() => new Promise<void>((r) => setTimeout(r, 20)));
      return queue;
    };
    const p = openLoop(send, { rate: 100, durationMs: 4000, drainMs: 10_000 });
    await vi.advanceTimersByTimeAsync(20_000);
    const r = await p;
    expect(r.ok).toBe(400);
    expect(r.throughput).toBe(50);
  });
});

describe('closedLoop throughput', () => {
  afterEach(() => {
    vi.useRealTimers();
  });
  const fake = () =>
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'performance'] });

  /**
   * A server that answers in batches: it takes up to `batch` waiting requests, works `periodMs` on them
   * and answers them all at once, then takes the next ones (`periodMs(k)` for its k-th batch). With
   * `stallAfterMs` it takes nothing more after that time (the requests wait until `resumeAtMs`).
   */
  const batched = (
    batch: number,
    periodMs: (k: number) => number,
    stall?: { after: number; resumeAt: number },
  ) => {
    const t0 = performance.now();
    const queue: (() => void)[] = [];
    let busy = false;
    let k = 0;
    const next = () => {
      if (busy || queue.length === 0) return;
      const now = performance.now() - t0;
      if (stall && now >= stall.after && now < stall.resumeAt) {
        busy = true;
        setTimeout(() => {
          busy = false;
          next();
        }, stall.resumeAt - now);
        return;
      }
      busy = true;
      const mine = queue.splice(0, batch);
      setTimeout(() => {
        for (const r of mine) r();
        busy = false;
        next();
      }, periodMs(k++));
    };
    return () =>
      new Promise<void>((r) => {
        queue.push(r);
        queueMicrotask(next);
      });
  };
  const run = async (send: () => Promise<void>, concurrency: number, durationMs: number) => {
    const p = closedLoop(send, { concurrency, durationMs, drainMs: 20_000 });
    await vi.advanceTimersByTimeAsync(durationMs + 30_000);
    return p;
  };

  it('reads a batched server’s rate, not whole batches per window', async () => {
    // 32 answers every 600 ms (53.3/s) and every 700 ms (45.7/s) over 8 s. Counting the answers inside the
    // window read 52 and 44: the first batch only comes after a period, and the window holds whole ones.
    for (const periodMs of [600, 700]) {
      fake();
      const r = await run(
        batched(32, () => periodMs),
        64,
        8000,
      );
      expect(r.failed).toBe(0);
      expect(r.throughput / ((32 * 1000) / periodMs)).toBeCloseTo(1, 3);
      vi.useRealTimers();
    }
  });

  it('reads a batched server with uneven periods within 1 %', async () => {
    fake();
    // Periods of 500, 600 and 700 ms in turn: 32 answers per 600 ms on average (53.3/s).
    const r = await run(
      batched(32, (k) => [500, 600, 700][k % 3]),
      64,
      8000,
    );
    expect(Math.abs(r.throughput / ((32 * 1000) / 600) - 1)).toBeLessThan(0.01);
  });

  it('reads an unbatched server’s rate as before', async () => {
    fake();
    // One request at a time, 20 ms each: 50/s.
    const r = await run(
      batched(1, () => 20),
      4,
      4000,
    );
    expect(r.ok).toBeGreaterThanOrEqual(200);
    expect(r.throughput).toBeCloseTo(50, 6);
  });

  it('a window of 0 ms (--warmup-ms=0) reads 0/s, not NaN', async () => {
    fake();
    const r = await run(
      batched(1, () => 20),
      8,
      0,
    );
    expect(r.throughput).toBe(0);
  });

  it('counts a stall at the window’s end', async () => {
    fake();
    // 32 answers every 500 ms (64/s) until 4 s, then nothing until after the window: the 7 batches after
    // the first over the 7.5 s from it to the window's end (29.9/s), not over the 3.5 s to the last (64/s).
    const r = await run(
      batched(32, () => 500, { after: 4000, resumeAt: 9000 }),
      64,
      8000,
    );
    expect(r.failed).toBe(0);
    expect(r.throughput).toBeCloseTo((7 * 32) / 7.5, 6);
  });
});
