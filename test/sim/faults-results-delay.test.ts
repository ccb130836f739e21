import { describe, it } from 'vitest';
import { runSeeds, TOTAL_SEEDS } from './faults.helpers.ts';

// The same random fault schedules with RESULTS spaced 10 ms apart (replica `resultsDelayMs`, off by
// default): answers wait for a node's next RESULTS through crashes, restarts, partitions and view
// changes. A tenth as many seeds as the default files.
const count = Math.ceil(TOTAL_SEEDS / 10);

describe('random fault schedules with resultsDelayMs 10', () => {
  it(`seeds 1..${count}: safety, valid certificates, no double certification, money conserved, liveness after healing`, () => {
    runSeeds(1, count, undefined, { resultsDelayMs: 10 });
  }, 900_000);
});
