/**
 * Transfers in the simulator (the real replica and ledger): a client pays part of its balance to a new key,
 * whose requests the group then charges to the account the transfer opened, across a restart and under a
 * primary that replays executed transfers; the simulator's own checks count the money (it stays in the
 * group).
 */
import { describe, expect, it } from 'vitest';
import { hex, keyPairFromSeed, requestIdOf, signTransfer, type Tx } from '../../src/protocol/index.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { Simulation } from '../../src/sim/world.ts';
import { fundedSimulation, requestOf, simRequest } from './funded.helpers.ts';
import { registerReplayingPrimary, runReplayingPrimary } from './tx-replay.helpers.ts';

registerReplayingPrimary('test:transfers-replaying-primary', 'transfer');

const dave = keyPairFromSeed(new Uint8Array(32).fill(91)); // no account in the genesis

describe('transfers in the simulator', () => {
  it('opens the payee an account its requests are then charged to; a restarted node knows the serial; the money stays in the group', () => {
    const s = new Simulation({ nodes: 4, requests: 30, seed: 61, rate: 0.3, keepAllCertificates: true });
    for (const node of s.nodes) node.replica.fundsOf = (c) => node.ledger.balanceOf(c);
    const gid = s.nodes[0].replica.groupId;
    const client = s.group.client;
    const tf = (serial: number, amount: number): Tx =>
      signTransfer(gid, { client: client.publicKey, to: dave.publicKey, serial, amount }, client);
    const daveRequest = (nonce: number) => requestOf(s, dave, nonce, 'paid by a transfer', 100);
    let daveReq = '';
    let phase = 0;
    const r = s.run({
      until: () => {
        if (phase === 0 && s.nodes.every((n) => n.ledger.seq >= 2)) {
          phase = 1;
          // Before the transfer the key has no account: its request is refused.
          const early = s.stepNode(s.nodes[1], { type: 'request', request: daveRequest(1) });
          expect(
            early.filter((a) => a.type === 'rejected').map((a) => a.type === 'rejected' && a.code),
          ).toEqual(['INSUFFICIENT_FUNDS']);
          expect(s.submitTx(1, tf(1, 500))?.accepted).toBe(true);
        }
        if (phase === 1 && s.nodes.every((n) => n.ledger.balanceOf(dave.publicKey) === 500)) {
          phase = 2;
          s.crash(2);
          s.restart(2, false);
          expect(s.nodes[2].replica.currentRefundSerial(client.publicKey)).toBe(1);
          expect(s.submitTx(2, tf(1, 5))?.code).toBe('TX_STALE_VERSION');
          const now = daveRequest(2);
          daveReq = hex(requestIdOf(now));
          s.requests.set(daveReq, now);
          for (const n of s.nodes) s.stepNode(n, { type: 'request', request: now });
        }
        return (
          phase === 2 &&
          s.certificates.size === s.requests.size &&
          s.nodes.every(
            (n) => n.ledger.seq === s.nodes[0].ledger.seq && n.ledger.balanceOf(dave.publicKey) < 500,
          )
        );
      },
    });
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    expect(s.certificates.has(daveReq)).toBe(true);
    const left = s.nodes[0].ledger.balanceOf(dave.publicKey);
    expect(left).toBeGreaterThan(400);
    for (const n of s.nodes) {
      expect(n.ledger.balanceOf(dave.publicKey)).toBe(left);
      expect(n.ledger.totalMoney()).toBe(n.ledger.genesisMoney);
      expect(n.ledger.refunded).toBe(0);
      expect(hex(n.ledger.stateDigest())).toBe(hex(s.nodes[0].ledger.stateDigest()));
    }
  });

  it('a faulty primary that proposes executed transfers again (and each twice) moves none twice', () => {
    const { s, honest } = runReplayingPrimary(
      { seed: 62, requests: 100, script: 'test:transfers-replaying-primary', kind: 'transfer' },
      ({ gid, client }) => ({
        tx: (serial, amount) =>
          signTransfer(gid, { client: client.publicKey, to: dave.publicKey, serial, amount }, client),
        serialOf: (n) => n.ledger.refundSerialOf(client.publicKey),
      }),
    );
    for (const n of honest) {
      expect(n.ledger.balanceOf(dave.publicKey)).toBe(9);
      expect(n.ledger.totalMoney()).toBe(n.ledger.genesisMoney);
      expect(hex(n.ledger.stateDigest())).toBe(hex(s.nodes[1].ledger.stateDigest()));
    }
  });
});

describe('a request some nodes took before the client transferred its balance away', () => {
  it('is dropped where the balance no longer covers it, not held until its timer makes the group change view (the primary, holding the transfer, refused it)', () => {
    const { s, gid, client, all } = fundedSimulation({ seed: 54, maxTimeMs: 60_000 });
    const other = keyPairFromSeed(new Uint8Array(32).fill(9));
    // The client sends a request to nodes 1 and 2 (f + 1 of them) and, at the same moment, a transfer of
    // everything to its other key through the primary: the primary and node 3 hold the transfer when the
    // request's forwards reach them, and refuse it (its maxFee is not covered once the transfer is counted).
    const sr = simRequest(s, client, 1, 'free?', 10);
    s.stepNode(s.nodes[1], { type: 'request', request: sr });
    s.stepNode(s.nodes[2], { type: 'request', request: sr });
    const tx = signTransfer(
      gid,
      { client: client.publicKey, to: other.publicKey, serial: 1, amount: all },
      client,
    );
    expect(s.submitTx(0, tx)?.accepted).toBe(true);
    const t0 = s.now;
    const r = s.run({ until: () => s.now - t0 > 20_000 });
    expect(s.nodes.map((n) => n.ledger.balanceOf(other.publicKey))).toEqual([all, all, all, all]);
    expect(s.nodes.map((n) => n.replica.view)).toEqual([0, 0, 0, 0]);
    expect(s.nodes.map((n) => n.replica.holdsRequest(hex(requestIdOf(sr))))).toEqual([
      false,
      false,
      false,
      false,
    ]);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
  });
});
