/**
 * A client that spends its balance twice over disjoint sets of nodes: a request to f + 1 backups and
 * another of the same maxFee (its whole balance) to the other nodes. Each set refuses the other's forwards
 * (its balance less the maxFee its own request holds no longer covers them), so neither request can gather
 * the q votes a primary needs to propose it. Its holders must not blame the primary for that: their
 * request timers made the group change view again and again, at the client's will, until the requests
 * expired (views 4, 4, 4, 4 in 30 s, found by the review of 2026-12-07).
 */
import { describe, expect, it } from 'vitest';
import { hex, keyPairFromSeed, requestIdOf } from '../../src/protocol/index.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { fundedSimulation, simRequest } from './funded.helpers.ts';

describe('requests no primary can propose (fewer than q nodes took them)', () => {
  it('do not make their holders change view; the group goes on ordering', () => {
    const { s, client, all } = fundedSimulation({ seed: 54, maxTimeMs: 60_000 });
    const mk = (nonce: number) => simRequest(s, client, nonce, `split ${nonce}`, all);
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

describe('a dead primary behind a row of requests no primary can propose', () => {
  it('is replaced in a few timeouts, not one timeout per such request ahead of the one it could propose', () => {
    const { s, client } = fundedSimulation({ seed: 55, maxTimeMs: 120_000 });
    const bob = keyPairFromSeed(new Uint8Array(32).fill(5));
    expect(s.submitDeposit(bob.publicKey, 1000)?.accepted).toBe(true);
    expect(
      s.run({ until: () => s.nodes.every((n) => n.ledger.balanceOf(bob.publicKey) === 1000) }).done,
    ).toBe(true);
    const all = s.nodes[0].ledger.balanceOf(client.publicKey);
    let nonce = 0;
    const mk = (who: typeof client, maxFee: number) => {
      const n = nonce++;
      return simRequest(s, who, n, `row ${n}`, maxFee);
    };
    // Ten pairs, each set holding the whole balance: twenty requests no primary can propose.
    for (let i = 0; i < 10; i++) {
      const a = mk(client, Math.floor(all / 10));
      const b = mk(client, Math.floor(all / 10));
      for (const k of [1, 2]) s.stepNode(s.nodes[k], { type: 'request', request: a });
      for (const k of [0, 3]) s.stepNode(s.nodes[k], { type: 'request', request: b });
    }
    // Then the primary dies, and bob's request reaches the three others.
    s.crash(0);
    const crashedAt = s.now;
    const q = mk(bob, 10);
    for (const k of [1, 2, 3]) s.stepNode(s.nodes[k], { type: 'request', request: q });
    const id = hex(requestIdOf(q));
    const r = s.run({ until: () => [1, 2, 3].every((k) => s.nodes[k].certificates.has(id)) });
    expect(r.done).toBe(true);
    expect(s.nodes.slice(1).map((n) => n.replica.view)).toEqual([1, 1, 1]);
    // The timeout is 1 s (doubling per view change without progress): one request at a time would have
    // taken ten timeouts or more.
    expect(s.now - crashedAt).toBeLessThan(5_000);
  });
});
