/** The open-loop generator: every request issued, none before its time, one wake-up per request. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openLoop } from '../../bench/lib/load.ts';

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
