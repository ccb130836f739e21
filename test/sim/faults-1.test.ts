import { describe, it } from 'vitest';
import { runSeeds, TOTAL_SEEDS } from './faults.helpers.ts';

// The first half of the random fault seeds (faults-2 runs the rest, so both cores work).
const half = Math.ceil(TOTAL_SEEDS / 2);
describe('random fault schedules', () => {
  it(`seeds 1..${half}: safety, valid certificates, no double certification, money conserved, liveness after healing`, () => {
    runSeeds(1, half);
  }, 1_500_000);
});
