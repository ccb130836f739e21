/**
 * Refunds in the simulator (the real replica and ledger): a client takes back part of its balance while its
 * requests flow, through several nodes, across a restart and under a primary that replays them; the
 * simulator's own checks count the money that left the group.
 */
import { describe, expect, it } from 'vitest';
import { hex, signRefund, type Tx } from '../../src/protocol/index.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { Simulation } from '../../src/sim/world.ts';
import { fundedSimulation, simRequest } from './funded.helpers.ts';
import { registerReplayingPrimary, runReplayingPrimary } from './tx-replay.helpers.ts';

// A primary that carries again, in each of its proposals, every refund it proposed before, and its own
// batch's twice (tx-replay.helpers.ts).
registerReplayingPrimary('test:refunds-replaying-primary', 'refund');

describe('refunds in the simulator', () => {
  it('a node restarted from its ledger knows the refunds applied; of two rivals of one serial through two nodes one applies', () => {
    const s = new Simulation({ nodes: 4, requests: 60, seed: 52, rate: 0.3, keepAllCertificates: true });
    const gid = s.nodes[0].replica.groupId;
    const client = s.group.client;
    const rf = (serial: number, amount: number): Tx =>
      signRefund(gid, { client: client.publicKey, serial, amount }, client);
    const serialEverywhere = (k: number) =>
      s.nodes.every((n) => n.ledger.refundSerialOf(client.publicKey) === k);
    let phase = 0;
    const r = s.run({
      until: () => {
        if (phase === 0 && s.nodes.every((n) => n.ledger.seq >= 3)) {
          phase = 1;
          expect(s.submitTx(1, rf(1, 40))?.accepted).toBe(true);
        }
        if (phase === 1 && serialEverywhere(1)) {
          phase = 2;
          s.crash(2);
          s.restart(2, false);
          // Restarted from its ledger, the replica counts what the ledger applied.
          expect(s.nodes[2].replica.currentRefundSerial(client.publicKey)).toBe(1);
          expect(s.submitTx(2, rf(1, 3))?.code).toBe('TX_STALE_VERSION');
          // Two rivals of serial 2 (the client ran the command twice, through two nodes): one applies.
          expect(s.submitTx(2, rf(2, 5))).toMatchObject({ accepted: true, code: null });
          expect(s.submitTx(0, rf(2, 7))).toMatchObject({ accepted: true, code: null });
        }
        return (
          phase === 2 &&
          s.certificates.size === s.requests.size &&
          s.nodes.every(
            (n) =>
              n.ledger.refundSerialOf(client.publicKey) === 2 &&
              n.ledger.seq === s.nodes[0].ledger.seq &&
              n.replica.pendingTxs.length === 0,
          )
        );
      },
    });
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    const refunded = s.nodes[0].ledger.refunded;
    expect([45, 47]).toContain(refunded);
    for (const n of s.nodes) {
      expect(n.ledger.refunded).toBe(refunded);
      expect(n.replica.currentRefundSerial(client.publicKey)).toBe(2);
      expect(hex(n.ledger.stateDigest())).toBe(hex(s.nodes[0].ledger.stateDigest()));
    }
  });

  it('a faulty primary that proposes executed refunds again (and each twice) takes none out twice', () => {
    // The client takes back 3 whenever the last one applied everywhere, three times, through node 3.
    const { s, honest } = runReplayingPrimary(
      { seed: 53, requests: 150, script: 'test:refunds-replaying-primary', kind: 'refund' },
      ({ gid, client }) => ({
        tx: (serial, amount) => signRefund(gid, { client: client.publicKey, serial, amount }, client),
        serialOf: (n) => n.ledger.refundSerialOf(client.publicKey),
      }),
    );
    for (const n of honest) {
      expect(n.ledger.refunded).toBe(9);
      expect(n.ledger.totalMoney()).toBe(n.ledger.genesisMoney - 9);
      expect(hex(n.ledger.stateDigest())).toBe(hex(s.nodes[1].ledger.stateDigest()));
    }
  });
});

describe('a refund the primary would refuse by its own balance check', () => {
  it('one a peer spreads is taken whatever this node holds (the ledger decides): a client cannot make the group change view with a refund only some nodes take', () => {
    const { s, gid, client, all } = fundedSimulation({ seed: 54, maxTimeMs: 30_000 });
    // The client sends a request to the primary and, at the same moment, a refund of everything to node 1:
    // the primary holds the request's maxFee when the refund reaches it; node 1 held nothing of it.
    const sr = simRequest(s, client, 1, 'free?', 1_000_000);
    s.stepNode(s.nodes[0], { type: 'request', request: sr });
    expect(
      s.submitTx(1, signRefund(gid, { client: client.publicKey, serial: 1, amount: all }, client))?.accepted,
    ).toBe(true);
    const r = s.run({
      until: () => s.nodes.every((n) => n.ledger.refundSerialOf(client.publicKey) === 1),
    });
    expect(r.done).toBe(true);
    expect(s.nodes.map((n) => n.replica.view)).toEqual([0, 0, 0, 0]);
    for (const n of s.nodes) expect(n.ledger.refunded).toBe(all);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
  });
});
