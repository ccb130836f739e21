/**
 * A request that only some nodes accept before its timestamp expires: it can never gather q votes. It
 * must not start view changes and must not stay in the pool for good. A client can no longer cause one
 * (a node takes a client's request only while the skew bound twice over plus a view-change timeout remain
 * before its expiry), but a faulty peer still can: it forwards a request that expires a millisecond later.
 */
import { describe, expect, it } from 'vitest';
import { hex, requestIdOf, type SignedRequest, sha256, signRequest } from '../../src/protocol/index.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { randomSchedule, runSchedule } from '../../src/sim/faults.ts';
import { Simulation } from '../../src/sim/world.ts';

const REQUESTS = 1500;
const INJECT_AT_MS = 2000;

/**
 * Runs a 4-node group under steady load and hands each node in `at` its own request with `left(guard)` ms
 * before its expiry (guard: the skew bound twice over plus a view-change timeout): from the client
 * (`via: 'client'`) or in a FORWARD in node 3's name (`via: 'peer'`).
 */
function run(at: number[], via: 'client' | 'peer', left: (guard: number) => number = () => 1) {
  const s = new Simulation({ nodes: 4, requests: REQUESTS, seed: 3, rate: 0.05, keepAllCertificates: true });
  const { expiryMs, maxClockSkewMs } = s.group.genesis.params;
  const guard = 2 * maxClockSkewMs + s.nodes[0].replica.cfg.viewChangeTimeoutMs;
  const answers: string[] = [];
  const held: boolean[] = [];
  const ids: string[] = [];
  s.at(INJECT_AT_MS, () => {
    const input = new Uint8Array(64).fill(7);
    for (const node of at) {
      const request = {
        groupId: s.nodes[node].replica.groupId,
        client: s.group.client.publicKey,
        nonce: 1_000_000 + node,
        timestamp: Math.floor(s.now) - expiryMs + left(guard),
        inputDigest: sha256(input),
        policy: null,
        maxFee: 1_000_000,
      };
      const sr: SignedRequest = signRequest(request, input, s.group.client);
      const acts = s.stepNode(
        s.nodes[node],
        via === 'client'
          ? { type: 'request', request: sr }
          : { type: 'message', from: 3, msg: { kind: 'forward', requests: [sr] } },
      );
      for (const a of acts)
        if (a.type === 'accepted') answers.push('accepted');
        else if (a.type === 'rejected') answers.push(`rejected ${a.code}`);
      ids.push(hex(requestIdOf(sr)));
      held.push(s.nodes[node].replica.awaitsExecution(ids[ids.length - 1]));
    }
  });
  // Five seconds later, which nodes have executed them (an executed id is forgotten once it expires).
  const executed: boolean[] = [];
  s.at(INJECT_AT_MS + 5_000, () => {
    for (const n of s.nodes)
      executed.push(ids.every((id) => n.replica.holdsRequest(id) && !n.replica.awaitsExecution(id)));
  });
  const r = s.run();
  return {
    s,
    r,
    answers,
    held,
    executed,
    sweptBy: INJECT_AT_MS + guard,
  };
}

describe('a request that expires before enough nodes accepted it', () => {
  it('forwarded by a faulty peer to the primary and f + 1 backups: no view change, forgotten in time, everything else certified', () => {
    const { s, r, held, sweptBy } = run([0, 1, 2], 'peer');
    // Each node takes it (by its own clock it has a millisecond left); its peers would not.
    expect(held).toEqual([true, true, true]);
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    expect(r.certificates.size).toBe(REQUESTS);
    // Before, each node holding one ran its request timer on it: node 1 or 2 alone went to view 5, and
    // together they took the group to view 1.
    expect(s.viewLog).toEqual([]);
    for (const n of s.nodes) expect(n.replica.view).toBe(0);
    // The run lasts well beyond the time they are forgotten by (the load alone takes ~30 s).
    expect(r.virtualMs).toBeGreaterThan(sweptBy + 5_000);
    expect(s.nodes.map((n) => n.replica.forgottenExpired)).toEqual([1, 1, 1, 0]);
    for (const n of s.nodes) expect(n.replica.pendingRequests).toBe(0);
  });

  it('sent by a client a millisecond before its expiry: refused at once, nothing held', () => {
    const { s, r, answers, held } = run([0, 1, 2], 'client');
    expect(answers).toEqual([
      'rejected REQUEST_EXPIRED',
      'rejected REQUEST_EXPIRED',
      'rejected REQUEST_EXPIRED',
    ]);
    expect(held).toEqual([false, false, false]);
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    expect(r.certificates.size).toBe(REQUESTS);
    expect(s.viewLog).toEqual([]);
    expect(s.nodes.map((n) => n.replica.forgottenExpired)).toEqual([0, 0, 0, 0]);
  });

  it("a client's request with the guard plus a second left is taken and executed everywhere", () => {
    const { s, r, answers, held, executed } = run([1], 'client', (guard) => guard + 1_000);
    expect(answers).toEqual(['accepted']);
    expect(held).toEqual([true]);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    // Forwarded, voted on and executed by every node (the run's certificates count its own load only).
    expect(executed).toEqual([true, true, true, true]);
    expect(s.viewLog).toEqual([]);
    // A millisecond inside the guard instead: refused.
    const inside = run([1], 'client', (guard) => guard - 1);
    expect(inside.answers).toEqual(['rejected REQUEST_EXPIRED']);
  });

  it('random fault schedules with a 100 ms expiry: requests expire unordered all over, and nothing unsafe', () => {
    // Crashes, partitions and slow links hold requests past their expiry at some nodes and not others.
    // Liveness is not asked (an expired request is never certified); every other check of the random
    // fault runs is: one batch per sequence number, money conserved, every certificate valid and unique.
    let forgotten = 0;
    const problems: string[] = [];
    for (let seed = 1; seed <= 12; seed++) {
      const o = runSchedule(randomSchedule(seed), { expiryMs: 100, livenessBoundMs: 20_000 });
      forgotten += o.forgottenExpired;
      for (const p of o.problems) if (!p.startsWith('liveness')) problems.push(`seed ${seed}: ${p}`);
    }
    expect(problems).toEqual([]);
    expect(forgotten).toBeGreaterThan(100);
  });
});
