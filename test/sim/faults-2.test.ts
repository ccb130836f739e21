import { describe, it } from 'vitest';
import { runSeeds, TOTAL_SEEDS } from './faults.helpers.ts';

// The second half of the random fault seeds.
const half = Math.ceil(TOTAL_SEEDS / 2);
describe('random fault schedules', () => {
  it(`seeds ${half + 1}..${TOTAL_SEEDS}: safety, valid certificates, no double certification, money conserved, liveness after healing`, () => {
    runSeeds(half + 1, TOTAL_SEEDS);
  }, 1_500_000);
});
