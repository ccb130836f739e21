/** Percentiles of one run, and the median with its spread (min–max) over several runs. */

/** Nearest-rank percentile (p in 0..100) of `xs`; NaN when empty. Sorts a copy unless `sorted`. */
export function percentile(xs: readonly number[], p: number, sorted = false): number {
  if (xs.length === 0) return Number.NaN;
  const s = sorted ? xs : [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))];
}

export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function percentiles(xs: readonly number[]): Percentiles {
  const s = [...xs].sort((a, b) => a - b);
  return {
    count: s.length,
    p50: percentile(s, 50, true),
    p90: percentile(s, 90, true),
    p99: percentile(s, 99, true),
    max: s.length ? s[s.length - 1] : Number.NaN,
  };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A figure measured over several runs: the median, the min–max spread and every run. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function spread(runs: readonly number[]): Spread {
  return { median: median(runs), min: Math.min(...runs), max: Math.max(...runs), runs: [...runs] };
}

/** "1234 (1180–1290)" with `digits` decimals. */
export function fmtSpread(s: Spread, digits = 0): string {
  if (s.runs.length <= 1) return s.median.toFixed(digits);
  return `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;
}

/** A number for a table: fixed decimals, or "–" when not a finite number. */
export function fmt(x: number | null | undefined, digits = 0): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits);
}

/**
 * A ratio against a target for a report: two decimals, or as many more (up to six) as it takes for the
 * printed figure to fall on the same side of the target as the ratio itself (0.8994 against ≥ 0.9 prints
 * 0.899, not 0.90). `atLeast`: the target is a floor (≥), else a ceiling (≤).
 */
export function ratioAgainst(r: number, target: number, atLeast: boolean): string {
  const met = (x: number) => (atLeast ? x >= target : x <= target);
  for (let d = 2; d < 6; d++) if (met(Number(r.toFixed(d))) === met(r)) return r.toFixed(d);
  return r.toFixed(6);
}

/** A percentage for "missed by": whole percents, one decimal under 1 %, "< 0.1" where that would read 0.0. */
export function missPercent(x: number): string {
  if (x < 0.05) return '< 0.1';
  return x < 1 ? x.toFixed(1) : x.toFixed(0);
}
