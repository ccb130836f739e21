/**
 * The scenarios PROTOCOL.md calls out: a NEW-VIEW that leaves out a prepared batch, a primary that
 * equivocates right at a view change, a checkpoint whose state digest is wrong on one node.
 */
import { describe, expect, it } from 'vitest';
import { verifyCertificate } from '../../src/certificate/index.ts';
import {
  batchDigestOf,
  CheckpointBody,
  encode,
  NULL_BATCH,
  PhaseBody,
  signTagged,
  TAGS,
} from '../../src/protocol/index.ts';
import { registerScript } from '../../src/sim/byzantine.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { type SimResult, Simulation } from '../../src/sim/world.ts';

// The new primary drops the first real batch of its re-proposals in favour of the null batch (re-signed,
// so only the recomputation of O from the VIEW-CHANGEs can catch it).
registerScript('new-view-omits-prepared', () => ({
  outbound(ctx, to, msg) {
    if (msg.kind !== 'newView') return [{ to, msg }];
    const nullDigest = batchDigestOf(NULL_BATCH);
    const i = msg.proposals.findIndex((p) => !p.digest.every((b, k) => b === nullDigest[k]));
    if (i < 0) return [{ to, msg }];
    const p = msg.proposals[i];
    const signature = signTagged(
      TAGS.prePrepare,
      ctx.groupId,
      encode(PhaseBody, { from: ctx.id, view: msg.newView, seq: p.seq, digest: nullDigest }),
      ctx.key,
    );
    const proposals = msg.proposals.map((x, k) =>
      k === i ? { seq: x.seq, digest: nullDigest, signature } : x,
    );
    return [{ to, msg: { ...msg, proposals } }];
  },
}));

// Signs checkpoints over a state digest nobody else has.
registerScript('wrong-checkpoint', () => ({
  outbound(ctx, to, msg) {
    if (msg.kind !== 'checkpoint') return [{ to, msg }];
    const stateDigest = new Uint8Array(32).fill(0xee);
    const signature = signTagged(
      TAGS.checkpoint,
      ctx.groupId,
      encode(CheckpointBody, { from: ctx.id, seq: msg.seq, stateDigest }),
      ctx.key,
    );
    return [{ to, msg: { ...msg, stateDigest, signature } }];
  },
}));

function expectHealthy(r: SimResult): void {
  expect(r.done).toBe(true);
  expect(checkRun(r)).toEqual({ ok: true, problems: [] });
  for (const c of r.certificates.values()) expect(verifyCertificate(c, r.group.genesis).ok).toBe(true);
}

describe('rules PROTOCOL.md calls out', () => {
  it('a NEW-VIEW that leaves out a prepared batch is rejected; the next view re-proposes it', () => {
    const s = new Simulation({
      nodes: 4,
      requests: 300,
      seed: 21,
      rate: 0.5,
      maxTimeMs: 60_000,
      byzantine: new Map([[1, 'new-view-omits-prepared']]),
    });
    s.at(150, () => s.crash(0));
    s.at(8000, () => s.restart(0, false));
    const r = s.run();
    // Both honest backups refused view 1's NEW-VIEW and blamed its primary...
    for (const id of [2, 3])
      expect(r.nodes[id].replica.misbehaviour.get(1)?.get('bad-new-view') ?? 0).toBeGreaterThan(0);
    // ...so the group moved on to view 2 (node 2) and nothing prepared was lost.
    expect(r.nodes[2].replica.view).toBeGreaterThanOrEqual(2);
    expectHealthy(r);
  });

  it('a primary that equivocates right at a view change (n=7: the old primary crashed, the new one lies)', () => {
    const s = new Simulation({
      nodes: 7,
      requests: 250,
      seed: 22,
      rate: 0.5,
      maxTimeMs: 60_000,
      byzantine: new Map([[1, 'equivocating-primary']]),
    });
    s.at(120, () => s.crash(0));
    s.at(9000, () => s.restart(0, false));
    const r = s.run();
    expectHealthy(r);
    const honest = r.nodes.filter((n) => n.id !== 1);
    expect(Math.max(...honest.map((n) => n.replica.view))).toBeGreaterThanOrEqual(2);
    // Somebody saw both of node 1's proposals for one slot and kept the proof.
    expect(
      honest.some((n) => n.replica.evidence.some((e) => e.node === 1 && e.kind === 'conflicting-proposal')),
    ).toBe(true);
  });

  it('a checkpoint whose state digest is wrong on one node does not count; the others still stabilise', () => {
    const s = new Simulation({
      nodes: 4,
      requests: 600,
      seed: 23,
      rate: 2,
      maxTimeMs: 60_000,
      replica: { checkpointInterval: 4, batchSize: 16 },
      byzantine: new Map([[3, 'wrong-checkpoint']]),
    });
    const r = s.run();
    expectHealthy(r);
    for (const id of [0, 1, 2]) {
      expect(r.nodes[id].replica.stable).toBeGreaterThanOrEqual(8);
      expect(r.nodes[id].replica.stable % 4).toBe(0);
    }
  });

  for (const [n, id] of [
    [4, 0],
    [4, 2],
    [7, 0],
    [7, 4],
  ] as const) {
    it(`twins: two honest copies of node ${id} (same key) on two halves of an n=${n} network`, () => {
      const s = new Simulation({
        nodes: n,
        requests: 300,
        seed: 30 + n + id,
        rate: 0.5,
        maxTimeMs: 60_000,
        byzantine: new Map([[id, 'twins']]),
      });
      const r = s.run();
      expectHealthy(r);
    });
  }
});
