/** The e2e part's peak: read from a step the side sustained. */
import { describe, expect, it } from 'vitest';
import { peakCell } from '../../bench/lib/stats.ts';

describe('e2e: the peak', () => {
  const cell = (median: number, failed = 0, viewChanges = 0) => ({
    throughput: { median, min: median, max: median, runs: [median] },
    failed,
    viewChanges,
  });
  it('is not read from the step where the ladder collapsed (failed requests or view changes)', () => {
    const cells = [cell(40), cell(50), cell(56, 12, 1)];
    expect(peakCell(cells)).toBe(cells[1]);
    expect(peakCell([cell(40), cell(58, 0, 2)])).toEqual(cell(40));
  });
  it('is not read from a cell with fewer runs than the rest (the baseline beside a collapse)', () => {
    const cells = [
      cell(50),
      cell(52),
      { ...cell(60), throughput: { median: 60, min: 60, max: 60, runs: [60] } },
    ];
    for (const c of cells.slice(0, 2)) c.throughput.runs = [c.throughput.median - 1, c.throughput.median, 70];
    expect(peakCell(cells)).toBe(cells[1]);
  });
  it('is the highest clean cell, the earlier on a tie, and any cell when none is clean', () => {
    const cells = [cell(52), cell(56), cell(56)];
    expect(peakCell(cells)).toBe(cells[1]);
    const unclean = [cell(30, 1), cell(35, 0, 1)];
    expect(peakCell(unclean)).toBe(unclean[1]);
  });
});
