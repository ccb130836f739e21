/**
 * The batching sweep's rule for choosing a setting (bench/parts/sweep.ts), and its check of a pick in
 * interleaved pairs against the current default.
 *
 * The rule: among the settings measured without view changes or failures (all of them if none was), those
 * whose low-load latency is within `slack` times, or `slackMs` above, the best low-load latency qualify;
 * of those, the one with the highest peak throughput wins, the earlier one on a tie.
 */

export interface Measured {
  /** Peak certified requests per second (closed loop). */
  peak: number;
  /** The latency the rule weighs at low load, ms. */
  latency: number;
  /** Measured without view changes or failed requests. */
  clean: boolean;
}

export interface PickRule {
  slack: number;
  slackMs: number;
}

/** The index of the setting the rule picks from `ms`, or −1 when `ms` is empty. */
export function pickIndex(ms: readonly Measured[], rule: PickRule): number {
  const idx = ms.map((_, i) => i);
  const clean = idx.filter((i) => ms[i].clean);
  const pool = clean.length > 0 ? clean : idx;
  if (pool.length === 0) return -1;
  const best = Math.min(...pool.map((i) => ms[i].latency));
  const limit = Math.max(rule.slack * best, best + rule.slackMs);
  let pick = -1;
  for (const i of pool) {
    if (!(ms[i].latency <= limit)) continue;
    if (pick === -1 || ms[i].peak > ms[pick].peak) pick = i;
  }
  return pick;
}

/** One interleaved pair: the current default and the sweep's pick, each on a fresh group. */
export interface Pair {
  current: Measured;
  pick: Measured;
  /** Which of the two ran first in this pair. */
  pickFirst: boolean;
}

export interface Verdict {
  /** Pairs in which the rule, applied to that pair alone, chose the pick over the current default. */
  wins: number;
  pairs: number;
  /** The pick replaces the default only if it won every pair (and there was at least one). */
  adopt: boolean;
}

/** Whether the rule, applied to this pair alone, takes the pick (a tie goes to the current default). */
export function pickTaken(p: Pair, rule: PickRule): boolean {
  return pickIndex([p.current, p.pick], rule) === 1;
}

/**
 * Whether the pick beat the current default in each pair (ties go to the current default: it is listed
 * first), and whether that happened in every pair. If the two settings in truth perform alike and the
 * pairs are independent, each pair is a coin toss at best, so the pick is adopted by chance with
 * probability at most 2^−pairs.
 */
export function verdict(pairs: readonly Pair[], rule: PickRule): Verdict {
  const wins = pairs.filter((p) => pickTaken(p, rule)).length;
  return { wins, pairs: pairs.length, adopt: pairs.length > 0 && wins === pairs.length };
}
