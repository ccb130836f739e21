/**
 * A primary whose system clock was stepped forward and then corrected (Replica.step's `wall`): once the
 * clock is right again, its batches are stamped with the right time, also those of a later view in which
 * it is primary again (src/consensus/replica.ts, lastBatchTimestamp).
 */
import { describe, expect, it } from 'vitest';
import { EPOCH_MS, Simulation } from '../../src/sim/world.ts';

describe('a primary whose clock was stepped forward and corrected', () => {
  it('leads again once the view comes back to it, without another view change', () => {
    const STEP = 60_000; // over the skew bound (5 s), inside the expiry window (10 min)
    const sim = new Simulation({ nodes: 4, requests: 4000, seed: 11, rate: 0.2, maxTimeMs: 40_000 });
    const [n0, n1, n2, n3] = sim.nodes;
    // In view `v` at every node up that is not changing view.
    const settled = (v: number) =>
      sim.nodes.every((n) => n.crashed || (n.replica.view === v && !n.replica.viewChanging));
    let phase = 0;
    let backAt = 0;
    let executedAtBack = 0;
    sim.at(200, () => {
      n0.clockOffsetMs = STEP;
    });
    const steer = () => {
      if (phase === 0 && settled(1)) {
        // Node 0's batches were refused as ahead of every clock: view 1. Its clock is put right.
        n0.clockOffsetMs = 0;
        sim.crash(1);
        phase = 1;
      } else if (phase === 1 && settled(2)) {
        sim.restart(1, false);
        sim.crash(2);
        phase = 2;
      } else if (phase === 2 && settled(3)) {
        sim.restart(2, false);
        sim.crash(3);
        phase = 3;
      } else if (phase === 3 && settled(4)) {
        // View 4: node 0 is primary again, its clock right for seconds now.
        sim.restart(3, false);
        backAt = sim.now;
        executedAtBack = n1.replica.lastExecuted;
        phase = 4;
      }
      if (phase < 4) sim.at(sim.now - EPOCH_MS + 10, steer);
    };
    sim.at(300, steer);
    sim.run({ until: () => phase === 4 && sim.now > backAt + 5_000 });
    expect(phase).toBe(4);
    expect(backAt - EPOCH_MS).toBeLessThan(200 + STEP);
    expect(n0.replica.isPrimary).toBe(true);
    // It leads view 4: no further view change, and the group executes its batches.
    for (const n of [n0, n1, n2, n3]) expect([n.replica.view, n.replica.viewChanging]).toEqual([4, false]);
    expect(n1.replica.lastExecuted).toBeGreaterThan(executedAtBack + 5);
    // Its batch timestamps are the corrected clock's, not the stepped one's.
    expect(n1.replica.lastExecutedTimestamp).toBeLessThan(sim.now + 5_000);
  });
});
