/**
 * Replica.restore and the ledger counters it is given (src/consensus/replica.ts): each node's model version,
 * fee, fee version and withdrawals, and the treasury's deposits. They were optional and a missing one was
 * the genesis's value (the simulator's restart once left the withdrawals out, and a restarted node would
 * have applied a withdrawal serial the ledger had already applied); now every one is required, and each
 * list must have one entry per node of the group, else a clear Error naming the field.
 */
import { describe, expect, it } from 'vitest';
import { Replica } from '../../src/consensus/replica.ts';
import { G, GID, SMALL_CFG } from './fixtures.ts';

const n = G.genesis.nodes.length;

/** What the ledger of a group that executed nothing holds, for Replica.restore. */
function disk(): Parameters<typeof Replica.restore>[4] {
  return {
    lastExecuted: 0,
    lastReceiptHash: GID,
    lastTimestamp: 0,
    models: G.genesis.nodes.map((x) => x.modelDigest),
    modelVersions: Array(n).fill(0),
    deposits: 0,
    fees: G.genesis.nodes.map((x) => x.fee),
    feeVersions: Array(n).fill(0),
    withdrawals: Array(n).fill(0),
    refunds: new Map(),
    recent: [],
    log: [],
  };
}

const restore = (d: unknown) =>
  Replica.restore(G.genesis, 0, G.keys[0], SMALL_CFG, d as Parameters<typeof Replica.restore>[4]);

describe('Replica.restore: the ledger counters', () => {
  it('restores them as given', () => {
    const d = {
      ...disk(),
      modelVersions: [1, 0, 2, 0],
      deposits: 3,
      fees: [5, 6, 7, 8],
      withdrawals: [0, 4, 0, 0],
    };
    const r = restore(d) as unknown as Record<string, unknown>;
    expect(r.modelVersions).toEqual([1, 0, 2, 0]);
    expect(r.deposits).toBe(3);
    expect(r.fees).toEqual([5, 6, 7, 8]);
    expect(r.withdrawals).toEqual([0, 4, 0, 0]);
  });

  for (const field of ['modelVersions', 'deposits', 'fees', 'feeVersions', 'withdrawals'])
    it(`refuses a disk without ${field}, naming it`, () => {
      const d: Record<string, unknown> = { ...disk() };
      delete d[field];
      expect(() => restore(d)).toThrow(new RegExp(`\\b${field}\\b`));
    });

  for (const field of ['models', 'modelVersions', 'fees', 'feeVersions', 'withdrawals'])
    it(`refuses ${field} of another length than the group's ${n} nodes, naming it`, () => {
      for (const len of [n - 1, n + 1]) {
        const d: Record<string, unknown> = { ...disk() };
        d[field] = (d[field] as unknown[]).concat(Array(n).fill(0)).slice(0, len);
        expect(() => restore(d)).toThrow(new RegExp(`\\b${field}\\b.*${len}.*${n}`));
      }
    });
});
