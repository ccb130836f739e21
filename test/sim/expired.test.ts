/**
 * A request that only some nodes accept before its timestamp expires: a client sends it to one node just
 * before the expiry, that node accepts it and forwards it, and its peers already find it expired. It can
 * never gather q votes. It must not start view changes and must not stay in the pool for good.
 */
import { describe, expect, it } from 'vitest';
import { sha256, signRequest } from '../../src/protocol/index.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { randomSchedule, runSchedule } from '../../src/sim/faults.ts';
import { Simulation } from '../../src/sim/world.ts';

const REQUESTS = 1500;
const INJECT_AT_MS = 2000;

/** Runs a 4-node group under steady load and hands each node in `at` its own request about to expire. */
function run(at: number[]) {
  const s = new Simulation({ nodes: 4, requests: REQUESTS, seed: 3, rate: 0.05, keepAllCertificates: true });
  const { expiryMs, maxClockSkewMs } = s.group.genesis.params;
  const answers: string[] = [];
  s.at(INJECT_AT_MS, () => {
    const input = new Uint8Array(64).fill(7);
    for (const node of at) {
      const request = {
        groupId: s.nodes[node].replica.groupId,
        client: s.group.client.publicKey,
        nonce: 1_000_000 + node,
        // Expires 1 ms from now: the node itself accepts it, the peers it forwards it to do not.
        timestamp: Math.floor(s.now) - expiryMs + 1,
        inputDigest: sha256(input),
        policy: null,
        maxFee: 1_000_000,
      };
      const acts = s.stepNode(s.nodes[node], {
        type: 'request',
        request: signRequest(request, input, s.group.client),
      });
      for (const a of acts) if (a.type === 'accepted' || a.type === 'rejected') answers.push(a.type);
    }
  });
  const r = s.run();
  return {
    s,
    r,
    answers,
    sweptBy: INJECT_AT_MS + 2 * maxClockSkewMs + s.nodes[0].replica.cfg.viewChangeTimeoutMs,
  };
}

describe('a request that expires before enough nodes accepted it', () => {
  it('at the primary and at f + 1 backups: no view change, forgotten in time, everything else certified', () => {
    const { s, r, answers, sweptBy } = run([0, 1, 2]);
    expect(answers).toEqual(['accepted', 'accepted', 'accepted']);
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
