/**
 * A node drops the input of a request whose votes are already fixed (proposed in a batch, or executed):
 * its own vote could not count. The simulator does what a real node does (skipUnwanted). These runs check
 * that the dropping saves the slow node's model work, and that a view change which puts such a request
 * back has the node infer it after all: here the request cannot be certified without that vote.
 */
import { describe, expect, it } from 'vitest';
import { registerScript } from '../../src/sim/byzantine.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { type SimResult, Simulation, simulate } from '../../src/sim/world.ts';

// Node 0, primary of view 0, courts node 3 alone: its result batches and its PRE-PREPAREs reach node 3
// and nobody else, and it never prepares or commits. Nodes 1 and 2 never see its votes.
registerScript('test:primary-courts-node-3', () => ({
  outbound: (_ctx, to, msg) => {
    if (msg.kind === 'results' || msg.kind === 'prePrepare')
      return to === 'all' || to === 3 ? [{ to: 3, msg }] : [];
    if (msg.kind === 'prepare' || msg.kind === 'commit') return [];
    return [{ to, msg }];
  },
}));

const REQUESTS = 40;

function healthy(r: SimResult): void {
  const honest = r.nodes.filter((n) => r.honest.includes(n.id));
  const stuck = honest.map((n) => `node ${n.id}: view ${n.replica.view}, executed ${n.executed.length}`);
  expect(r.done, stuck.join('; ')).toBe(true);
  expect(checkRun(r)).toEqual({ ok: true, problems: [] });
  expect(r.certificates.size).toBe(REQUESTS);
  expect(r.duplicateCertificates).toEqual([]);
}

describe('inputs of requests whose votes are fixed are dropped unrun', () => {
  it('a slow node drops what the group ordered without it, and everything is still certified', () => {
    const opts = {
      nodes: 4,
      requests: REQUESTS,
      seed: 7,
      rate: 1, // a request per virtual ms
      inferBatch: 4,
      inferCostFactor: [1, 1, 1, 40], // node 3's model: 20 ms per batch, the others' 0.5
    };
    const skip = simulate(opts);
    healthy(skip);
    const slow = skip.nodes[3];
    // It ran only what could still count, and dropped the rest.
    expect(slow.inferSkipped).toBeGreaterThan(REQUESTS / 2);
    expect(slow.inferRan).toBeLessThan(REQUESTS / 2);
    // (The run ends when everything is certified: node 3 may still hold a few inputs then.)
    expect(slow.inferRan + slow.inferSkipped).toBeLessThanOrEqual(REQUESTS);
    for (const n of skip.nodes.slice(0, 3)) expect(n.inferSkipped).toBe(0);
    // Without dropping, the same node is still working through the inputs when the run ends: it would
    // run every one of them.
    const all = simulate({ ...opts, skipUnwanted: false });
    healthy(all);
    expect(all.nodes[3].inferSkipped).toBe(0);
    expect(all.nodes[3].inferQueue.length).toBeGreaterThan(REQUESTS / 2);
    expect(slow.inferQueue.length).toBeLessThan(all.nodes[3].inferQueue.length);
  });

  it('after a view change, a request put back is inferred again by the node that dropped it', () => {
    // Node 3 is cut off from nodes 1 and 2 for 4 s, and hears only node 0, which proposes to it alone
    // (votes of 0, 1 and 2): node 3 drops those inputs, its model being slow. Nodes 1 and 2 never see
    // the proposals, nor node 0's votes, and change views. Then the links heal and node 0 crashes: the
    // primaries of the views after it hold the votes of 1 and 2 only, so every request node 3 dropped
    // needs node 3's vote after all (without inferring it again, the group would stall).
    const cut = new Map<string, { loss: number }>();
    for (const b of [1, 2]) {
      cut.set(`3->${b}`, { loss: 1 });
      cut.set(`${b}->3`, { loss: 1 });
    }
    const s = new Simulation({
      nodes: 4,
      requests: REQUESTS,
      seed: 11,
      rate: 1,
      inferBatch: 4,
      inferCostFactor: [1, 1, 1, 40],
      byzantine: new Map([[0, 'test:primary-courts-node-3']]),
      links: cut,
      maxTimeMs: 60_000,
    });
    let droppedBeforeHeal = 0;
    s.at(4000, () => {
      droppedBeforeHeal = s.nodes[3].inferSkipped;
      s.links.clear();
      s.crash(0);
    });
    const r = s.run();
    healthy(r);
    expect(droppedBeforeHeal).toBeGreaterThan(REQUESTS / 2);
    for (const n of r.nodes.slice(1)) expect(n.replica.view).toBeGreaterThan(0);
    // Every certificate counts node 3's vote: no quorum of votes existed without it.
    for (const c of r.certificates.values()) expect(c.outcome.votes.map((v) => v.node)).toContain(3);
  });
});
