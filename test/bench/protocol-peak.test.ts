/** The protocol part's peaks where a curve never saturated within the rates it offered. */
import { describe, expect, it } from 'vitest';
import { peakRatio, unsaturated } from '../../bench/parts/protocol.ts';

/** A curve over `rates` whose last sustained rate is `sustained` and whose peak is `peak`. */
const curve = (rates: number[], sustained: number | null, peak: number) => ({
  steps: rates.map((offered) => ({ offered })) as never[],
  sustained,
  peak,
});

describe('protocol peaks that never saturated', () => {
  it('knows a curve whose last rate was sustained', () => {
    expect(unsaturated(curve([100, 400, 1500], 1500, 1497))).toBe(true);
    expect(unsaturated(curve([100, 400, 1500], 400, 1200))).toBe(false);
  });

  it("marks the group's ratio as the bound it is", () => {
    const base = curve([1000, 4000], 1000, 3500); // saturated at 4,000/s
    const baseOpen = curve([1000, 4000], 4000, 3990); // never saturated
    const group = curve([100, 400, 1500], 400, 1200);
    const groupOpen = curve([100, 400, 1500], 1500, 1497); // never saturated: its peak a lower bound
    expect(peakRatio(group, base)).toBe('0.34');
    // Before, only the baseline was looked at: the group's lower bound printed as a plain 0.43.
    expect(peakRatio(groupOpen, base)).toBe('≥ 0.43');
    expect(peakRatio(group, baseOpen)).toBe('≤ 0.30');
    expect(peakRatio(groupOpen, baseOpen)).toBe('? (0.38, neither saturated)');
  });
});
