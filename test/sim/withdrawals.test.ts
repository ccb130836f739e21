/**
 * Withdrawals in the simulator (the real replica and ledger): an owner takes out what its node earned while
 * requests flow, and the simulator's own checks count the money that left the group.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteLedger } from '../../src/ledger/sqlite.ts';
import { signWithdrawal } from '../../src/protocol/index.ts';
import { registerScript } from '../../src/sim/byzantine.ts';
import { runSchedule, type Schedule, scheduleSimulation } from '../../src/sim/faults.ts';
import { EPOCH_MS } from '../../src/sim/world.ts';

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
});
