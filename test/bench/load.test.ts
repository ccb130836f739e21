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
