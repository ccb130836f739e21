import { expect } from 'vitest';
import { describe as describeSchedule, randomSchedule, runSchedule } from '../../src/sim/faults.ts';

/**
 * Runs seeds [from, to] of random fault schedules (real SQLite ledgers, invariants checked after every
 * step) and expects every one to pass. DROPBEAR_SEEDS=N raises the total count on demand.
 */
export function runSeeds(from: number, to: number): void {
  const failures: string[] = [];
  for (let seed = from; seed <= to; seed++) {
    const s = randomSchedule(seed);
    const o = runSchedule(s);
    if (!o.ok)
      failures.push(
        `${describeSchedule(s)}\n    ${o.problems.join('\n    ')}\n    replay: npx dropbear sim --faults random --seeds ${seed}..${seed}`,
      );
  }
  expect(failures).toEqual([]);
}

export const TOTAL_SEEDS = Number(process.env.DROPBEAR_SEEDS ?? 200);
