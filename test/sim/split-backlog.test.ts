/**
 * A backlogged group (inference the bottleneck: requests wait in the pool over several timeouts while
 * batches execute all along) and a client's split pair (test/sim/split-requests.test.ts: two requests of
 * its whole balance to disjoint sets of nodes, neither able to gather q votes). The request timer leaves
 * the split request alone and tracks the oldest request the primary could propose instead; that one's
 * timer must follow the rule every tracked request's does (viewTimerDeadline: progressPatience timeouts
 * while batches execute), started no earlier than the group's last progress. It blamed the primary at once
 * when the request had waited a timeout since it came, so the pair changed the view of a backlogged group
 * at the client's will (views 2, 2, 2, 2 at 0.45 requests/ms; none without the pair); started from when it
 * came, a backlog over progressPatience timeouts old still did (views 1, 1, 1, 1 at 0.55 requests/ms).
 */
import { describe, expect, it } from 'vitest';
import { hex, keyPairFromSeed } from '../../src/protocol/index.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { Simulation } from '../../src/sim/world.ts';
import { simRequest } from './funded.helpers.ts';

function backlogged(split: boolean) {
  const requests = 6000;
  const s = new Simulation({
    nodes: 4,
    requests,
    rate: 0.55,
    seed: 56,
    inferBaseMs: 20,
    inferPerItemMs: 2,
    keepAllCertificates: true,
    maxTimeMs: 60_000,
  });
  // Only the attacker's balance is checked (the load client's requests each hold a large maxFee).
  const bob = keyPairFromSeed(new Uint8Array(32).fill(6));
  const bobHex = hex(bob.publicKey);
  for (const node of s.nodes)
    node.replica.fundsOf = (c) => (hex(c) === bobHex ? node.ledger.balanceOf(c) : Number.MAX_SAFE_INTEGER);
  expect(s.submitDeposit(bob.publicKey, 1000)?.accepted).toBe(true);
  const mk = (nonce: number) => simRequest(s, bob, nonce, `split ${nonce}`, 1000);
  const loadIds: string[] = [];
  let sent = false;
  let maxWait = 0;
  const r = s.run({
    until: () => {
      if (split && !sent && s.nodes.every((n) => n.ledger.balanceOf(bob.publicKey) === 1000)) {
        sent = true;
        const q1 = mk(1);
        const q2 = mk(2);
        for (const i of [1, 2]) s.stepNode(s.nodes[i], { type: 'request', request: q1 });
        for (const i of [0, 3]) s.stepNode(s.nodes[i], { type: 'request', request: q2 });
      }
      // How long the oldest waiting load request at a backup has waited.
      const pool = (
        s.nodes[1].replica as unknown as {
          pool: Map<string, { sr: { request: { client: Uint8Array } }; acceptedAt: number }>;
        }
      ).pool;
      for (const p of pool.values())
        if (hex(p.sr.request.client) !== bobHex) {
          maxWait = Math.max(maxWait, s.now - p.acceptedAt);
          break;
        }
      if (loadIds.length === 0 && s.requests.size >= requests + (sent ? 2 : 0))
        for (const [id, sr] of s.requests) if (hex(sr.request.client) !== bobHex) loadIds.push(id);
      return (
        loadIds.length === requests && s.nodes.every((n) => loadIds.every((id) => n.certificates.has(id)))
      );
    },
  });
  return { r, s, maxWait };
}

describe('a split pair in a backlogged group', () => {
  it('changes no view: the oldest request the primary could propose gets the backlog patience', () => {
    // Without the pair: requests wait over progressPatience timeouts (4 × 1 s) since they came, and no view
    // changes (each one's timer starts when it becomes the oldest).
    const base = backlogged(false);
    expect(base.r.done).toBe(true);
    expect(base.maxWait).toBeGreaterThan(4_000);
    expect(base.s.nodes.map((n) => n.replica.view)).toEqual([0, 0, 0, 0]);
    const { r, s } = backlogged(true);
    expect(r.done).toBe(true);
    // The backups' timers fired on the split request and left it alone.
    expect(s.nodes.slice(1).some((n) => n.replica.unproposable > 0)).toBe(true);
    expect(s.nodes.map((n) => n.replica.view)).toEqual([0, 0, 0, 0]);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
  });
});
