/**
 * A client that spends its balance twice over disjoint sets of nodes: a request to f + 1 backups and
 * another of the same maxFee (its whole balance) to the other nodes. Each set refuses the other's forwards
 * (its balance less the maxFee its own request holds no longer covers them), so neither request can gather
 * the q votes a primary needs to propose it. Its holders must not blame the primary for that: their
 * request timers made the group change view again and again, at the client's will, until the requests
 * expired (views 4, 4, 4, 4 in 30 s, found by the review of 2026-12-07).
 */
import { describe, expect, it } from 'vitest';
import { hex, requestIdOf, sha256, signRequest } from '../../src/protocol/index.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { Simulation } from '../../src/sim/world.ts';

describe('requests no primary can propose (fewer than q nodes took them)', () => {
  it('do not make their holders change view; the group goes on ordering', () => {
    const s = new Simulation({
      nodes: 4,
      requests: 0,
      seed: 54,
      keepAllCertificates: true,
      maxTimeMs: 60_000,
    });
    for (const node of s.nodes) node.replica.fundsOf = (c) => node.ledger.balanceOf(c);
    const gid = s.nodes[0].replica.groupId;
    const client = s.group.client;
    const all = s.nodes[0].ledger.balanceOf(client.publicKey);
    const mk = (nonce: number) => {
      const input = new TextEncoder().encode(`split ${nonce}`);
      const sr = signRequest(
        {
          groupId: gid,
          client: client.publicKey,
          nonce,
          timestamp: Math.floor(s.now),
          inputDigest: sha256(input),
          policy: null,
          maxFee: all,
        },
        input,
        client,
      );
      s.requests.set(hex(requestIdOf(sr)), sr);
      return sr;
    };
    const q1 = mk(1);
    const q2 = mk(2);
    for (const i of [1, 2]) s.stepNode(s.nodes[i], { type: 'request', request: q1 });
    for (const i of [0, 3]) s.stepNode(s.nodes[i], { type: 'request', request: q2 });
    const t0 = s.now;
    const r = s.run({ until: () => s.now - t0 > 30_000 });
    // Each set refused the other's: the attack ran. A node that asked for the other set's request (it holds
    // its votes) asks again only after a timeout (it was ten times a second: 300 refusals each in 30 s).
    const refused = s.nodes.map((n) => n.replica.unfundedForwards);
    expect(refused.every((c) => c > 0 && c < 60)).toBe(true);
    expect(s.nodes.map((n) => n.replica.view)).toEqual([0, 0, 0, 0]);
    // The backups' timers fired, and left the requests alone (the primary runs no timer against itself).
    expect(s.nodes.slice(1).every((n) => n.replica.unproposable > 0)).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
  });
});
