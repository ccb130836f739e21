/** The wan part's peak: read from a ladder point the group sustained. */
import { describe, expect, it } from 'vitest';
import { ladderPeak } from '../../bench/parts/wan.ts';

describe('wan: the peak', () => {
  const point = (median: number, failed = 0, viewChanges = 0, runs = [median, median, median]) => ({
    label: `${median}`,
    throughput: { median, min: Math.min(...runs), max: Math.max(...runs), runs },
    failed,
    viewChanges,
  });
  it('is not read from the point where the ladder collapsed (failed requests or view changes)', () => {
    // The ladder stops at the first run that changed views or failed more than 1 % of its requests: that
    // point may hold a single run, and its rate is not one the group kept up.
    const failing = [point(1664), point(3008), point(3300, 900, 0, [3300])];
    expect(ladderPeak(failing)).toBe(failing[1]);
    const viewChange = [point(118), point(210), point(230, 0, 2)];
    expect(ladderPeak(viewChange)).toBe(viewChange[1]);
  });
  it('is not read from a point with fewer runs than the rest', () => {
    const points = [point(1664), point(3008), point(3100, 0, 0, [3100])];
    expect(ladderPeak(points)).toBe(points[1]);
  });
  it('is the highest clean point, the earlier on a tie, and any point when none is clean', () => {
    const points = [point(1664), point(3008), point(3008), point(2736)];
    expect(ladderPeak(points)).toBe(points[1]);
    const unclean = [point(100, 3), point(120, 0, 1)];
    expect(ladderPeak(unclean)).toBe(unclean[1]);
  });
});
