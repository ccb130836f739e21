/**
 * A node that changed view alone (cut off long enough for its view-change timer to fire, then healed)
 * cannot go back to the group's lower view (README, "Known limit"). It still takes clients' requests and
 * forwards them, and the group orders and certifies them in its view; the lone node must then learn the
 * batch and hand out the certificate soon, not only when its (doubling) view-change timer next fires.
 * Before: a client that sent its request to that node alone (sendTo 1, no hedge) waited for that timer, up
 * to 1 s · 2^attempts (test/client/sdk.test.ts, "inferMany with concurrency", timed out at 20 s on a
 * loaded machine with the node alone in view 5 and the group in view 4).
 */
import { describe, expect, it } from 'vitest';
import { hex, type Request, requestIdOf, sha256, signRequest } from '../../src/protocol/index.ts';
import { EPOCH_MS, Simulation } from '../../src/sim/world.ts';

describe('a node alone in a higher view', () => {
  it('hands out the certificate of a request only it got, once the group certified it, without waiting for its view-change timer', () => {
    const s = new Simulation({ nodes: 4, requests: 0, seed: 5, keepAllCertificates: true });
    const lone = s.nodes[3];
    let nonce = 0;
    const sentAt = new Map<string, number>();
    const send = (to: number) => {
      const input = new Uint8Array(48).fill(nonce + 1);
      const request: Request = {
        groupId: lone.replica.groupId,
        client: s.group.client.publicKey,
        nonce: nonce++,
        timestamp: Math.floor(s.now),
        inputDigest: sha256(input),
        policy: null,
        maxFee: 1_000_000,
      };
      const sr = signRequest(request, input, s.group.client);
      const id = hex(requestIdOf(sr));
      s.requests.set(id, sr);
      sentAt.set(id, s.now);
      s.stepNode(s.nodes[to], { type: 'request', request: sr });
      return id;
    };
    const cut = (loss: number) => {
      for (let i = 0; i < 3; i++) {
        s.links.set(`3->${i}`, { loss });
        s.links.set(`${i}->3`, { loss });
      }
    };
    const latency = new Map<string, number>();
    s.observer.certified = (node, certs) => {
      if (node !== lone) return;
      for (const c of certs) {
        const id = hex(c.outcome.requestId);
        latency.set(id, s.now - (sentAt.get(id) ?? Number.NaN));
      }
    };
    // Cut off, it changes view alone. (It did so on a request of its own that the cut kept from the others;
    // since 2026-12-07 a request with fewer than q votes, which no primary could propose, no longer makes a
    // node suspect the primary: test/sim/split-requests.test.ts. A timer that fired on a request the group
    // could have ordered does the same.)
    s.at(0, () => {
      cut(1);
      lone.replica.startViewChange(1);
    });
    s.at(20_000, () => cut(0));
    // Healed, the group idle in view 0: one request at a time, to the lone node only, far apart (each the
    // last batch the group executes for a while, so no later batch tells the lone node of it).
    const ids: string[] = [];
    for (let k = 0; k < 4; k++) s.at(25_000 + k * 10_000, () => ids.push(send(3)));
    const views: string[] = [];
    s.run({ until: () => s.now >= EPOCH_MS + 70_000 });
    views.push(...s.nodes.map((n) => `${n.replica.view}${n.replica.viewChanging ? '*' : ''}`));
    // The scenario: the group stayed in view 0, the lone node above it, still changing view (since
    // 2026-12-06 it waits in view 1, the view it asked for, instead of climbing further alone:
    // test/sim/lone-view-change.test.ts; before, it reached view 3 or more here).
    expect(views.slice(0, 3)).toEqual(['0', '0', '0']);
    expect(lone.replica.viewChanging).toBe(true);
    expect(lone.replica.view).toBeGreaterThanOrEqual(1);
    // Every request certified by the group and by the lone node, within a few retransmission rounds of
    // the group's own certificate (virtual time: the simulator runs no faster or slower under load).
    for (const id of ids) {
      expect(s.nodes[0].certificates.has(id)).toBe(true);
      expect(latency.get(id), `request ${id.slice(0, 8)}`).toBeLessThan(500);
    }
  });
});
