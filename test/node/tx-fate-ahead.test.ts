/**
 * A transaction a batch carried without effect because it was ordered ahead of the version it follows is not
 * done: it waits again and may yet apply (replica.settleTxs). The ledger keeps its fate (`txs`: without
 * effect), and a node restarted since must still take it when it is submitted again, not refuse it as
 * already executed (an Ed25519 signature is deterministic: the owner signing the same change again gets the
 * very same transaction).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { SqliteLedger } from '../../src/ledger/sqlite.ts';
import { NodeHost } from '../../src/node/host.ts';
import { startStandIn } from '../../src/node/standin-backend.ts';
import {
  type Batch,
  batchDigestOf,
  groupIdOf,
  hex,
  signFeeChange,
  txIdOf,
} from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';

const dir = mkdtempSync(join(tmpdir(), 'tx-fate-ahead-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('a transaction carried ahead of its version, without effect, is taken again after a restart', () => {
  const group = makeGroup(4, 1, 31);
  const gid = groupIdOf(group.genesis);
  const v1 = signFeeChange(gid, { node: 1, version: 1, fee: 12 }, group.keys[1]);
  const v2 = signFeeChange(gid, { node: 1, version: 2, fee: 13 }, group.keys[1]);
  const path = join(dir, 'n0.sqlite');
  // Batch 1 carried version 2 before version 1 was ordered: without effect, still ahead.
  const l = SqliteLedger.open(path, group.genesis);
  const batch: Batch = { timestamp: 1, entries: [], txs: [v2] };
  const ex = l.execute(1, 0, batchDigestOf(batch), batch, []);
  expect(ex.txs.map((t) => t.applied)).toEqual([false]);
  l.close();

  const host = NodeHost.open({
    id: 0,
    genesis: group.genesis,
    key: group.keys[0],
    ledgerPath: path,
    backends: [startStandIn(0)],
    wire: { send: () => {}, broadcast: () => {}, onFrame: () => {}, reportBad: () => {} },
  });
  host.start();
  try {
    expect(host.txStatus(hex(txIdOf(v2)))).toEqual({ status: 'executed', seq: 1, applied: false });
    expect(host.submitTx(v1)).toMatchObject({ ok: true });
    // Version 2 follows the waiting version 1: taken, as a node that never saw batch 1 would take it.
    expect(host.submitTx(v2)).toMatchObject({ ok: true });
    // Waiting again: its fate is pending (it may yet apply), not the earlier batch's "without effect".
    expect(host.txStatus(hex(txIdOf(v2)))).toEqual({ status: 'pending' });
  } finally {
    host.stop();
    host.close();
  }
});
