import { describe, expect, it } from 'vitest';
import { checkRun } from '../../src/sim/checks.ts';
import { simulate } from '../../src/sim/world.ts';

describe('maxInFlightBatches', () => {
  it('bounds the proposals not yet executed, so batches fill under load; everything is still certified', () => {
    const base = { nodes: 4, requests: 2000, seed: 3, rate: 50, link: { delayMs: 5, jitterMs: 1 } };
    const wide = simulate({ ...base, replica: { batchTimeoutMs: 1 } });
    const narrow = simulate({ ...base, replica: { batchTimeoutMs: 1, maxInFlightBatches: 1 } });
    for (const r of [wide, narrow]) {
      expect(r.done).toBe(true);
      expect(checkRun(r).ok).toBe(true);
      expect(r.certificates.size).toBe(2000);
    }
    // One batch at a time: far fewer, larger batches than with 64 in flight.
    expect(narrow.batches).toBeLessThan(wide.batches / 2);
  });
});
