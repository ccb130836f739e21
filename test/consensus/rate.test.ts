import { describe, expect, it } from 'vitest';
import { RateWindow } from '../../src/consensus/rate.ts';

describe('RateWindow', () => {
  it('counts what was added in the last windowMs, per second, and forgets older records', () => {
    const w = new RateWindow(2000);
    expect(w.perSecond(0)).toBe(0);
    w.add(0, 100);
    w.add(500, 300);
    expect(w.perSecond(1000)).toBe(200);
    // At 2,000 the record at 0 is still inside [now − 2000, now]; at 2,001 it is gone.
    expect(w.perSecond(2000)).toBe(200);
    expect(w.perSecond(2001)).toBe(150);
    expect(w.perSecond(2501)).toBe(0);
    w.add(3000, 0); // nothing recorded
    w.add(3000, 40);
    expect(w.perSecond(3000)).toBe(20);
  });

  it('stays exact over many records (the consumed front is dropped in chunks)', () => {
    const w = new RateWindow(1000);
    for (let t = 0; t < 20_000; t++) w.add(t, 1);
    // Records at 18,999 .. 19,999 are inside the window at 19,999: 1,001 of them.
    expect(w.perSecond(19_999)).toBe(1001);
    expect(w.perSecond(30_000)).toBe(0);
  });

  it('keeps a bounded log when it is only added to: a backup adds each batch it executes, only the primary reads its rate', () => {
    const w = new RateWindow(1000);
    // A day at 20 batches a second, one record per batch, and perSecond never called (until 2026-12-07
    // the log was trimmed only there: a backup's replica and an idle node's host kept every record).
    for (let t = 0; t < 200_000; t++) w.add(t * 50, 1);
    const kept = (w as unknown as { log: unknown[] }).log.length;
    expect(kept).toBeLessThan(2 * 1024 + 2 * 21);
    // Still exact: records at 9,998,950 .. 9,999,950 are in the window at 9,999,950 (21 of them).
    expect(w.perSecond(9_999_950)).toBe(21);
  });

  it('refuses a window that is not positive', () => {
    expect(() => new RateWindow(0)).toThrow(RangeError);
    expect(() => new RateWindow(Number.NaN)).toThrow(RangeError);
  });
});
