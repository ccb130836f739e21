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

/**
 * The closed-loop ladder step a peak is read from (the e2e part's cells, the wan part's points): the
 * highest median throughput among the steps measured in every run without failed requests or view changes
 * (among all of them only if none was). The step at which a ladder stops for a collapse (view changes,
 * failures) is kept in the tables, but its answered rate is not one the group sustained, and the runs there
 * stop at the collapse, so the step may hold fewer runs than the rest (a median of one run, not of
 * `--runs`). The earlier step wins a tie.
 */
export function peakCell<C extends { throughput: Spread; failed: number; viewChanges: number }>(
  cells: readonly C[],
): C {
  const runs = Math.max(...cells.map((c) => c.throughput.runs.length));
  const clean = cells.filter(
    (c) => c.failed === 0 && c.viewChanges === 0 && c.throughput.runs.length === runs,
  );
  const pool = clean.length > 0 ? clean : cells;
  return pool.reduce((a, c) => (c.throughput.median > a.throughput.median ? c : a));
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

/** A small seeded generator (mulberry32): uniform in [0, 1), the same sequence for the same seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface RatioInterval {
  /** The ratio of the two sides' percentiles over all their samples. */
  ratio: number;
  /** The central `level` of the resampled ratios. */
  lo: number;
  hi: number;
  level: number;
  iterations: number;
}

/**
 * The ratio percentile(a) / percentile(b), with an interval from a block bootstrap: each side's samples
 * come in blocks (here: the answers to the requests scheduled within one second of one run), and every
 * iteration draws as many blocks as the side has, with replacement, and takes the percentile of what it
 * drew. Resampling whole blocks keeps the slow spells that hit several requests in a row together, which
 * resampling single requests would break up (and so report too narrow an interval). Seeded: the same
 * samples give the same interval.
 */
export function bootstrapPercentileRatio(
  a: readonly (readonly number[])[],
  b: readonly (readonly number[])[],
  p: number,
  o: { iterations?: number; level?: number; seed?: number } = {},
): RatioInterval {
  const iterations = o.iterations ?? 2000;
  const level = o.level ?? 0.95;
  const rnd = seededRandom(o.seed ?? 1);
  const full = (blocks: readonly (readonly number[])[]) => percentile(blocks.flat(), p);
  const ratio = full(a) / full(b);
  const blocksOf = (blocks: readonly (readonly number[])[]) => blocks.filter((x) => x.length > 0);
  const aa = blocksOf(a);
  const bb = blocksOf(b);
  if (aa.length === 0 || bb.length === 0) return { ratio, lo: Number.NaN, hi: Number.NaN, level, iterations };
  const draw = (blocks: readonly (readonly number[])[]) => {
    const out: number[] = [];
    for (let i = 0; i < blocks.length; i++) {
      const blk = blocks[Math.floor(rnd() * blocks.length)];
      for (const x of blk) out.push(x);
    }
    return percentile(out, p);
  };
  const ratios: number[] = [];
  for (let i = 0; i < iterations; i++) ratios.push(draw(aa) / draw(bb));
  ratios.sort((x, y) => x - y);
  const tail = (1 - level) / 2;
  return {
    ratio,
    lo: percentile(ratios, 100 * tail, true),
    hi: percentile(ratios, 100 * (1 - tail), true),
    level,
    iterations,
  };
}

/** Samples grouped into blocks by whole seconds of their scheduled time (`at`, ms), empty seconds dropped. */
export function blocksBySecond(samples: readonly { at: number; ms: number }[]): number[][] {
  const by = new Map<number, number[]>();
  for (const s of samples) {
    const k = Math.floor(s.at / 1000);
    const blk = by.get(k);
    if (blk) blk.push(s.ms);
    else by.set(k, [s.ms]);
  }
  return [...by.keys()].sort((x, y) => x - y).map((k) => by.get(k) as number[]);
}
