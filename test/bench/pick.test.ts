import { describe, expect, it } from 'vitest';
import { type Measured, pickIndex, verdict } from '../../bench/lib/pick.ts';

const rule = { slack: 1.25, slackMs: 10 };
const m = (peak: number, latency: number, clean = true): Measured => ({ peak, latency, clean });

describe('the batching sweep: its pick rule', () => {
  it('takes the highest peak among the settings within the latency slack of the best', () => {
    // best latency 40: the limit is max(1.25 × 40, 40 + 10) = 50
    expect(pickIndex([m(1000, 40), m(1500, 50), m(3000, 50.5)], rule)).toBe(1);
    // at low latencies the slack in ms is the looser one: 8 + 10 = 18 > 1.25 × 8
    expect(pickIndex([m(1000, 8), m(1200, 18), m(1400, 18.1)], rule)).toBe(1);
  });

  it('keeps the earlier setting on a tie of peaks', () => {
    expect(pickIndex([m(2000, 30), m(2000, 20)], rule)).toBe(0);
    expect(pickIndex([m(2000, 20), m(2000, 30)], rule)).toBe(0);
  });

  it('passes over settings measured with view changes or failures, unless none was clean', () => {
    expect(pickIndex([m(1000, 30), m(5000, 10, false)], rule)).toBe(0);
    // the unclean setting's low latency does not tighten the limit for the clean ones
    expect(pickIndex([m(1000, 30), m(2000, 37), m(5000, 1, false)], rule)).toBe(1);
    expect(pickIndex([m(1000, 30, false), m(2000, 31, false)], rule)).toBe(1);
    expect(pickIndex([], rule)).toBe(-1);
  });
});

describe('the batching sweep: a pick against the current default in pairs', () => {
  it('adopts the pick only if the rule takes it in every pair', () => {
    const won = { current: m(2000, 40), pick: m(2400, 42), pickFirst: false };
    const lost = { current: m(2500, 40), pick: m(2400, 42), pickFirst: true };
    expect(verdict([won, { ...won, pickFirst: true }, won], rule)).toEqual({
      wins: 3,
      pairs: 3,
      adopt: true,
    });
    expect(verdict([won, lost, won], rule)).toEqual({ wins: 2, pairs: 3, adopt: false });
    expect(verdict([], rule)).toEqual({ wins: 0, pairs: 0, adopt: false });
  });

  it('counts a higher peak bought with latency beyond the slack as a loss, and a tie for the default', () => {
    const slower = { current: m(2000, 40), pick: m(4000, 51), pickFirst: false };
    const tie = { current: m(2000, 40), pick: m(2000, 30), pickFirst: false };
    expect(verdict([slower], rule).wins).toBe(0);
    expect(verdict([tie], rule).wins).toBe(0);
  });

  it('lets a clean pick beat a default that changed views, and not the other way round', () => {
    const viewChange = { current: m(3000, 20, false), pick: m(2000, 40), pickFirst: false };
    const pickFailed = { current: m(2000, 40), pick: m(3000, 20, false), pickFirst: false };
    expect(verdict([viewChange], rule).wins).toBe(1);
    expect(verdict([pickFailed], rule).wins).toBe(0);
  });
});
