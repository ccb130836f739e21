/**
 * A node whose view-change timer fired alone (in the crash soak, bench/soak.ts, a CPU-starved node) while
 * the group went on in its view. PBFT's rule (Castro and Liskov, §4.5.2): a node that asked for view v+1
 * moves on to v+2 only once a quorum asked for v+1 and that view still did not start. Before, it moved on
 * at every timeout whether or not anyone had joined it, alone from view to view (to view 8 while the
 * group was in view 4, in one soak run): when the primary then crashed, the other nodes' view changes had
 * to climb through every view up to its own, timeout after doubling timeout, before a quorum met (the
 * group executed nothing for 14 and 24 s in two soak runs). Now it waits in view v+1, where the others
 * come when their primary fails.
 */
import { describe, expect, it } from 'vitest';
import { checkRun } from '../../src/sim/checks.ts';
import { Simulation } from '../../src/sim/world.ts';

describe('a node alone in a view change', () => {
  it('waits in the next view instead of climbing alone, and the group meets it there when its primary fails', () => {
    const s = new Simulation({ nodes: 4, requests: 3000, seed: 11, rate: 0.1, maxTimeMs: 120_000 });
    // Node 3's timer fires alone at 1 s: the group goes on in view 0 without it.
    s.at(1000, () => s.nodes[3].replica.startViewChange(1));
    let viewAlone = -1;
    let executedAtCrash = 0;
    let executedAfter = 0;
    s.at(15_000, () => {
      viewAlone = s.nodes[3].replica.view;
      executedAtCrash = Math.max(...s.nodes.map((n) => n.replica.lastExecuted));
      s.crash(0);
    });
    // Five view-change timeouts (1 s) after the primary's crash.
    s.at(20_000, () => {
      executedAfter = Math.max(...[1, 2, 3].map((i) => s.nodes[i].replica.lastExecuted));
    });
    // Back with its disk, so that what the client sent to it alone is certified too and the run ends.
    s.at(25_000, () => s.restart(0, false));
    const r = s.run();
    s.close();
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    // Still asking for view 1 after 14 s alone (before: view 4 or more, one more per doubled timeout).
    expect(viewAlone).toBe(1);
    // The others join it in view 1 (node 1 its primary) and the group executes again within 5 s.
    expect(executedAfter).toBeGreaterThan(executedAtCrash);
  });
});
