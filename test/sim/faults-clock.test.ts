import { describe, expect, it } from 'vitest';
import { scheduleProblem } from '../../src/cli/faults.ts';
import { HONEST_CLOCK_STEP_MS, randomSchedule, runSchedule } from '../../src/sim/faults.ts';
import { runSeeds, TOTAL_SEEDS } from './faults.helpers.ts';

// The random fault schedules with nodes' system clocks stepped and corrected during the faulty period
// (randomSchedule's `clockSteps`): honest nodes within the skew bound, faulty ones by up to two hours
// either way. Timers run on the simulation's clock, timestamps on each node's own (Replica.step). A tenth
// as many seeds as the default files (CI's time; `sim --faults random --clock-steps` runs more).
const count = Math.ceil(TOTAL_SEEDS / 10);

describe('random fault schedules with clock steps', () => {
  it('add clock faults to the schedule of the same seed and change nothing else; honest clocks stay within the bound', () => {
    let wild = 0;
    for (let seed = 1; seed <= 50; seed++) {
      const plain = randomSchedule(seed);
      const stepped = randomSchedule(seed, undefined, { clockSteps: true });
      const clocks = stepped.faults.filter((f) => f.kind === 'clock');
      expect(clocks.length).toBeGreaterThan(0);
      expect({ ...stepped, faults: stepped.faults.filter((f) => f.kind !== 'clock') }).toEqual(plain);
      // At most f nodes are faulty at all: the Byzantine, the crashing and those with a wild clock.
      const faulty = new Set([
        ...plain.byzantine.map(([id]) => id),
        ...plain.faults.flatMap((f) => (f.kind === 'crash' ? [f.node] : [])),
      ]);
      for (const f of clocks) {
        if (f.kind !== 'clock') continue;
        expect(f.at).toBeLessThanOrEqual(stepped.healAt);
        if (Math.abs(f.offsetMs) > HONEST_CLOCK_STEP_MS) {
          wild++;
          faulty.add(f.node);
        }
      }
      expect(faulty.size).toBeLessThanOrEqual(Math.floor((plain.nodes - 1) / 3));
    }
    expect(wild).toBeGreaterThan(5);
  });

  it('a schedule file may hold clock faults; a malformed one is refused', () => {
    const s = randomSchedule(3, undefined, { clockSteps: true });
    expect(scheduleProblem(JSON.parse(JSON.stringify(s)))).toBeNull();
    const bad = { ...s, faults: [{ at: 5, kind: 'clock', node: 1, offsetMs: 'soon' }] };
    expect(scheduleProblem(bad)).toMatch(/"faults" holds .*clock/);
    expect(
      scheduleProblem({ ...s, faults: [{ at: 5, kind: 'clock', node: 99, offsetMs: 1 }] }),
    ).not.toBeNull();
  });

  it('the primary stepped back by over an hour is replaced by a view change, and everything is certified', () => {
    const s = randomSchedule(6, undefined, { clockSteps: true });
    // Seed 6: node 0, the first primary, gets a wild backward step (its batches are stale to every peer).
    expect(s.faults).toContainEqual(expect.objectContaining({ kind: 'clock', node: 0 }));
    const o = runSchedule(s);
    expect(o.problems).toEqual([]);
    expect(o.views).toBeGreaterThan(0);
    expect(o.certified).toBe(s.requests);
  });

  it(`seeds 1..${count}: safety, valid certificates, no double certification, money conserved, liveness after healing`, () => {
    runSeeds(1, count, undefined, undefined, true);
  }, 900_000);
});
