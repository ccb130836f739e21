/**
 * Withdrawals in the simulator (the real replica and ledger): an owner takes out what its node earned while
 * requests flow, and the simulator's own checks count the money that left the group.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteLedger } from '../../src/ledger/sqlite.ts';
import { hex, signWithdrawal, type Tx } from '../../src/protocol/index.ts';
import { registerScript } from '../../src/sim/byzantine.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { runSchedule, type Schedule, scheduleSimulation } from '../../src/sim/faults.ts';
import { EPOCH_MS, Simulation } from '../../src/sim/world.ts';
import { registerReplayingPrimary, runReplayingPrimary } from './tx-replay.helpers.ts';

// A faulty node whose owner takes out 1 at a time, serials 1 to 8, spread again on every tick from 100 ms on
// (those ordered before the node earned anything use their serial and take nothing): legitimate for an
// owner, so the money the group holds goes down by what they took and nothing else is wrong.
registerScript('test:withdrawing-owner', () => ({
  onTick: (ctx) => {
    if (ctx.now() < EPOCH_MS + 100) return [];
    return Array.from({ length: 8 }, (_, i) => ({
      to: 'all' as const,
      msg: {
        kind: 'tx' as const,
        tx: signWithdrawal(ctx.groupId, { node: ctx.id, serial: i + 1, amount: 1 }, ctx.key),
      },
    }));
  },
}));

// A primary that carries again, in each of its proposals, every withdrawal it proposed before, and its own
// batch's twice (tx-replay.helpers.ts).
registerReplayingPrimary('test:withdrawals-replaying-primary', 'withdrawal');

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('withdrawals in the simulator', () => {
  it("a fault schedule's money check counts what withdrawals took out (runSchedule)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'dropbear-withdrawals-'));
    dirs.push(dir);
    const s: Schedule = {
      seed: 41,
      nodes: 4,
      requests: 60,
      byzantine: [[3, 'test:withdrawing-owner']],
      faults: [],
      healAt: 400,
      link: { delayMs: 1 },
    };
    const out = runSchedule(s, { keepDir: dir });
    expect(out.problems).toEqual([]);
    expect(out.ok).toBe(true);
    // The owner did take money out: every honest ledger paid out the same, and holds the rest.
    const genesis = scheduleSimulation(s).group.genesis;
    const paid = [0, 1, 2].map((id) => {
      const l = SqliteLedger.open(join(dir, `node-${id}.sqlite`), genesis);
      const x = [l.state.paidOut(), l.state.totalMoney() - (l.state.genesisMoney - l.state.paidOut())];
      l.close();
      return x;
    });
    expect(paid[0][0]).toBeGreaterThan(0);
    expect(paid).toEqual([paid[0], paid[0], paid[0]]);
    expect(paid[0][1]).toBe(0);
  });

  it('a node restarted from its ledger knows the withdrawals applied: it takes the next serial and refuses a stale one', () => {
    const s = new Simulation({ nodes: 4, requests: 60, seed: 42, rate: 0.3, keepAllCertificates: true });
    const gid = s.nodes[0].replica.groupId;
    const w = (serial: number, amount: number): Tx =>
      signWithdrawal(gid, { node: 1, serial, amount }, s.group.keys[1]);
    let phase = 0;
    const r = s.run({
      until: () => {
        if (phase === 0 && s.nodes.every((n) => n.ledger.stats[1].earned >= 10)) {
          phase = 1;
          expect(s.submitTx(1, w(1, 4))?.accepted).toBe(true);
        }
        if (phase === 1 && s.nodes.every((n) => n.ledger.withdrawals[1] === 1)) {
          phase = 2;
          s.crash(2);
          s.restart(2, false);
          // Restarted from its ledger, the replica counts what the ledger applied.
          expect(s.nodes[2].replica.currentWithdrawals).toEqual(s.nodes[2].ledger.withdrawals);
          expect(s.submitTx(2, w(1, 3))?.code).toBe('TX_STALE_VERSION');
          expect(s.submitTx(2, w(2, 5))).toMatchObject({ accepted: true, code: null });
        }
        return (
          phase === 2 &&
          s.certificates.size === s.requests.size &&
          s.nodes.every(
            (n) =>
              n.ledger.withdrawals[1] === 2 &&
              n.ledger.seq === s.nodes[0].ledger.seq &&
              n.replica.pendingTxs.length === 0,
          )
        );
      },
    });
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    for (const n of s.nodes) {
      expect([n.ledger.withdrawn[1], n.ledger.paidOut()]).toEqual([9, 9]);
      expect(n.replica.currentWithdrawals).toEqual([0, 2, 0, 0]);
      expect(n.ledger.totalMoney()).toBe(n.ledger.genesisMoney - 9);
    }
  });
  it('a faulty primary that proposes executed withdrawals again (and each twice) takes none out twice', () => {
    // Node 2's owner takes out 3 whenever the last one applied everywhere, three times, through node 3.
    const { s, honest } = runReplayingPrimary(
      { seed: 43, requests: 150, script: 'test:withdrawals-replaying-primary', kind: 'withdrawal' },
      ({ s, gid }) => ({
        tx: (serial, amount) => signWithdrawal(gid, { node: 2, serial, amount }, s.group.keys[2]),
        serialOf: (n) => n.ledger.withdrawals[2],
        ready: (n) => n.ledger.payable(2) >= 3,
      }),
    );
    for (const n of honest) {
      expect([n.ledger.withdrawn, n.ledger.paidOut()]).toEqual([[0, 0, 9, 0], 9]);
      expect(n.replica.currentWithdrawals).toEqual([0, 0, 3, 0]);
      expect(hex(n.ledger.stateDigest())).toBe(hex(s.nodes[1].ledger.stateDigest()));
    }
  });
});
