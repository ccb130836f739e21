/** The p99 targets' verdicts: a step whose requests failed cannot show a p99 target met. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openLoop } from '../../bench/lib/load.ts';
import { p99TargetMet as e2eMet } from '../../bench/parts/e2e.ts';
import { p99TargetMet as protocolMet } from '../../bench/parts/protocol.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe('p99 target verdicts', () => {
  it('protocol: a half-peak step whose slowest requests timed out is not met', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'performance'] });
    // 95 % answered in 10 ms; every 20th request fails after 3 s (a client timeout): the slowest 5 %.
    const send = (i: number) =>
      new Promise<void>((resolve, reject) =>
        setTimeout(
          () => (i % 20 === 0 ? reject(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })) : resolve()),
          i % 20 === 0 ? 3000 : 10,
        ),
      );
    const p = openLoop(send, { rate: 100, durationMs: 2000, drainMs: 5000 });
    await vi.advanceTimersByTimeAsync(10_000);
    const step = await p;
    // The percentiles are over the answers alone: the p99 reads 10 ms with 10 of 200 requests failed.
    expect(step.failed).toBe(10);
    expect(step.latency.p99).toBe(10);
    expect(protocolMet(step, 50)).toBe(false);
    expect(protocolMet({ ...step, failed: 0 }, 50)).toBe(true);
    expect(protocolMet({ ...step, failed: 0, latency: { ...step.latency, p99: 50 } }, 50)).toBe(false);
  });

  it('e2e: a ratio within the target with certified requests failed is not met', () => {
    expect(e2eMet(1.2, 1.5, 0)).toBe(true);
    expect(e2eMet(1.5, 1.5, 0)).toBe(true);
    expect(e2eMet(1.2, 1.5, 3)).toBe(false);
    expect(e2eMet(1.6, 1.5, 0)).toBe(false);
  });
});
