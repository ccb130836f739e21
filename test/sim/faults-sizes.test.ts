import { describe, it } from 'vitest';
import { runSeeds, TOTAL_SEEDS } from './faults.helpers.ts';

// Groups larger than 3f + 1 (n = 5 and 6 with f = 1: a quorum is 4, not 2f + 1), under the same random
// faults as the other files: a quarter as many seeds.
const count = Math.ceil(TOTAL_SEEDS / 4);

describe('random fault schedules, n = 5 and 6 (f = 1)', () => {
  it(`seeds 1..${count}: safety, valid certificates, no double certification, money conserved, liveness after healing`, () => {
    runSeeds(1, count, [5, 6]);
  }, 1_500_000);
});
