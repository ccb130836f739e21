import { expect } from 'vitest';
import type { ReplicaConfig } from '../../src/consensus/replica.ts';
import { describe as describeSchedule, randomSchedule, runSchedule } from '../../src/sim/faults.ts';

/**
 * Runs seeds [from, to] of random fault schedules (real SQLite ledgers, invariants checked after every
 * step) and expects every one to pass. DROPBEAR_SEEDS=N raises the total count on demand.
 */
export function runSeeds(
  from: number,
  to: number,
  sizes?: readonly number[],
  replica?: Partial<ReplicaConfig>,
  clockSteps = false,
): void {
  const failures: string[] = [];
  const sizesFlag = (sizes ? ` --sizes ${sizes.join(',')}` : '') + (clockSteps ? ' --clock-steps' : '');
  for (let seed = from; seed <= to; seed++) {
    const s = randomSchedule(seed, sizes, { clockSteps });
    const o = runSchedule(s, replica ? { replica } : {});
    if (!o.ok)
      failures.push(
        `${describeSchedule(s)}\n    ${o.problems.join('\n    ')}\n    replay: ${
          replica
            ? `runSchedule(randomSchedule(${seed}, ${sizes ? `[${sizes.join(', ')}]` : 'undefined'}, { clockSteps: ${clockSteps} }), { replica: ${JSON.stringify(replica)} }) (src/sim/faults.ts; the CLI takes no replica settings)`
            : `npx dropbear sim --faults random --seeds ${seed}..${seed}${sizesFlag}`
        }`,
      );
  }
  expect(failures).toEqual([]);
}

export const TOTAL_SEEDS = Number(process.env.DROPBEAR_SEEDS ?? 200);
