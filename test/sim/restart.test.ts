/**
 * What a restart must bring back (PROTOCOL.md, durability and restarts): what the node prepared (its
 * next VIEW-CHANGE must carry it), its stable checkpoint, a view change in progress; and a node that lost
 * its disk must not sign in a view it may have taken part in.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { PersistRecord } from '../../src/consensus/replica.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { Simulation } from '../../src/sim/world.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'dropbear-restart-'));
  dirs.push(d);
  return d;
}
// Private state, read for the assertions only.
type Internals = {
  preparedCerts: Map<number, { view: number }>;
  stableProof: { seq: number; sigs: unknown[] };
};
const internals = (r: unknown) => r as Internals;

/**
 * A group of 4 where node 1 crashes at 150 ms and restarts with its disk lost at 300 ms; returns the
 * simulation and the length of node 1's signed log right after that restart (read once it has run).
 */
function nodeOneLosesItsDisk(requests: number, seed: number) {
  const s = new Simulation({ nodes: 4, requests, seed, rate: 0.5, maxTimeMs: 60_000 });
  s.at(150, () => s.crash(1));
  let logAtRestart = 0;
  s.at(300, () => {
    s.restart(1, true);
    logAtRestart = s.nodes[1].log.length;
  });
  return { s, logAtRestart: () => logAtRestart };
}

describe('restarts', () => {
  it('a node restarted from its SQLite file still holds what it prepared and its stable checkpoint', () => {
    const s = new Simulation({
      nodes: 4,
      requests: 400,
      seed: 41,
      rate: 0.5,
      maxTimeMs: 60_000,
      ledgerDir: tmp(),
      replica: { checkpointInterval: 8 },
    });
    let before: { prepared: number[]; stable: number } | null = null;
    let after: { prepared: number[]; stable: number; proof: number } | null = null;
    s.at(300, () => {
      const r = internals(s.nodes[2].replica);
      before = {
        prepared: [...r.preparedCerts.keys()].sort((a, b) => a - b),
        stable: s.nodes[2].replica.stable,
      };
      s.crash(2);
      s.restart(2, false);
      const q = internals(s.nodes[2].replica);
      after = {
        prepared: [...q.preparedCerts.keys()].sort((a, b) => a - b),
        stable: s.nodes[2].replica.stable,
        proof: q.stableProof.sigs.length,
      };
    });
    const r = s.run();
    s.close();
    expect(r.done).toBe(true);
    expect(checkRun(r).ok).toBe(true);
    expect(before!.stable).toBeGreaterThanOrEqual(8);
    expect(after!.stable).toBe(before!.stable);
    expect(after!.proof).toBeGreaterThanOrEqual(3);
    expect(before!.prepared.length).toBeGreaterThan(0);
    expect(after!.prepared).toEqual(before!.prepared);
  });

  it('a node that stopped in the middle of a view change resumes it and the group completes it', () => {
    const s = new Simulation({
      nodes: 4,
      requests: 200,
      seed: 42,
      rate: 0.5,
      maxTimeMs: 60_000,
      ledgerDir: tmp(),
    });
    s.at(100, () => s.crash(0)); // the primary dies: the backups will change view
    let resumed = false;
    s.crashAfterPersist = (node, rec) => node.id === 3 && rec.kind === 'viewChange' && !resumed;
    s.at(2500, () => {
      expect(s.nodes[3].crashed).toBe(true);
      resumed = true; // (the restart re-sends the VIEW-CHANGE at once: do not fail it again)
      s.restart(3, false);
      expect(s.nodes[3].replica.viewChanging).toBe(true);
      expect(s.nodes[3].replica.view).toBe(1);
    });
    s.at(9000, () => s.restart(0, false));
    const r = s.run();
    s.close();
    expect(r.done).toBe(true);
    expect(checkRun(r).ok).toBe(true);
    for (const id of [1, 2, 3]) expect(r.nodes[id].replica.view).toBeGreaterThanOrEqual(1);
  });

  it('a node that lost its disk signs no phase message in a view it may already have signed in', () => {
    const { s, logAtRestart } = nodeOneLosesItsDisk(300, 43);
    const r = s.run();
    expect(r.done).toBe(true);
    expect(checkRun(r).ok).toBe(true);
    const floor = r.nodes[1].replica.signFloorView;
    expect(floor).toBeGreaterThanOrEqual(1);
    const signedAfter = r.nodes[1].log
      .slice(logAtRestart())
      .filter((x: PersistRecord) => x.kind === 'prepare' || x.kind === 'commit' || x.kind === 'prePrepare');
    // Everything it signed since the restart is in a view it cannot have taken part in before.
    for (const x of signedAfter) if ('view' in x) expect(x.view).toBeGreaterThanOrEqual(floor);
    // And it still serves every certificate, caught up by state transfer.
    expect(r.nodes[1].replica.lastExecuted).toBe(r.batches);
  });

  it('a forgetful node restarted again keeps its floor: it never signs below it, whatever restarts in between', () => {
    // The group stays in view 0 all along here, so a floor forgotten by the second restart would let node 1
    // sign in view 0 again, where it may have signed before its disk was lost.
    const { s, logAtRestart } = nodeOneLosesItsDisk(600, 44);
    let floorBefore = 0;
    s.at(500, () => {
      floorBefore = s.nodes[1].replica.signFloorView;
      s.crash(1);
    });
    let restored = 0;
    s.at(600, () => {
      s.restart(1, false);
      restored = s.nodes[1].replica.signFloorView;
    });
    const r = s.run();
    expect(r.done).toBe(true);
    expect(checkRun(r).ok).toBe(true);
    expect(floorBefore).toBeGreaterThanOrEqual(1);
    expect(Number.isFinite(floorBefore)).toBe(true);
    // The floor came back from the signed log (a `signFloor` record), not from a fresh state transfer.
    expect(restored).toBe(floorBefore);
    const after = r.nodes[1].log.slice(logAtRestart());
    expect(after.filter((x: PersistRecord) => x.kind === 'signFloor').length).toBeGreaterThanOrEqual(1);
    for (const x of after)
      if (x.kind === 'prepare' || x.kind === 'commit' || x.kind === 'prePrepare')
        expect(x.view).toBeGreaterThanOrEqual(floorBefore);
    expect(r.nodes[1].replica.lastExecuted).toBe(r.batches);
  });
});
