import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { verifyLedgerFile } from '../../src/ledger/verify.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { removeSimDirs, simOnDisk } from './on-disk.helpers.ts';

afterAll(removeSimDirs);

describe('the signed log', () => {
  it('holds the records since the last stable checkpoint, not the node’s life; a backup restarted from it is back in view 1', () => {
    const { s, dir } = simOnDisk('dropbear-logprune-', 1200);
    const cfg = s.nodes[0].replica.cfg;
    // The primary of view 0 crashes early and comes back late: the group goes on in view 1.
    s.at(100, () => s.crash(0));
    s.at(5_000, () => s.restart(0, false));
    let restored: { view: number; changing: boolean } | null = null;
    s.at(3_000, () => s.crash(2));
    s.at(3_200, () => {
      s.restart(2, false);
      restored = { view: s.nodes[2].replica.view, changing: s.nodes[2].replica.viewChanging };
    });
    const r = s.run();
    const logs = [0, 1, 2, 3].map((id) => s.nodes[id].db!.signedLog());
    s.close();
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    expect(r.batches).toBeGreaterThan(4 * cfg.checkpointInterval);
    expect(restored).toEqual({ view: 1, changing: false });
    for (const id of [1, 2, 3]) {
      const log = logs[id];
      // Two records a batch above the stable checkpoint at most, the checkpoint, and the view records.
      expect(log.length, `node ${id}`).toBeLessThan(2 * (cfg.checkpointInterval + cfg.window) + 10);
      expect(verifyLedgerFile(join(dir, `node-${id}.sqlite`)).problems).toEqual([]);
    }
  }, 120_000);
});
