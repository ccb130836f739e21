import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LogRecord, SqliteLedger } from '../../src/ledger/sqlite.ts';
import { verifyLedgerFile } from '../../src/ledger/verify.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { removeSimDirs, simOnDisk } from './on-disk.helpers.ts';

afterAll(removeSimDirs);

/** Makes this open ledger write as releases before 2026-12-06 did: no view on checkpoints, no pruning. */
function writeAsBefore(db: SqliteLedger): void {
  // biome-ignore lint/suspicious/noExplicitAny: replacing a private prepared statement for the test
  (db as any).st.pruneLog = { run: () => ({ changes: 0 }) };
  const persist = db.persist.bind(db);
  db.persist = (record: LogRecord) => {
    if (record.kind !== 'checkpoint') return persist(record);
    const { view: _, ...old } = record;
    persist(old);
  };
}

describe('a ledger written before the signed log was pruned', () => {
  it('opens with its whole log, restores its view, and is pruned at its next stable checkpoint', () => {
    const { s, dir } = simOnDisk('dropbear-oldlog-', 1200);
    const cfg = s.nodes[0].replica.cfg;
    for (const n of s.nodes) writeAsBefore(n.db!);
    // The primary of view 0 goes early (the others go on in view 1) and comes back late.
    s.at(100, () => s.crash(0));
    s.at(6_000, () => s.restart(0, false));
    // Each backup restarts in turn (at once) on this release; the checkpoint records it finds have no view.
    const seen: { id: number; before: number; reopened: number; view: number; changing: boolean }[] = [];
    for (const [k, id] of [1, 2, 3].entries()) {
      s.at(2_500 + 400 * k, () => {
        const before = s.nodes[id].db!.signedLog();
        expect(before.some((r) => r.kind === 'checkpoint' && r.body && r.view === undefined)).toBe(true);
        s.crash(id);
        s.restart(id, false);
        seen.push({
          id,
          before: before.length,
          reopened: s.nodes[id].db!.signedLog().length,
          view: s.nodes[id].replica.view,
          changing: s.nodes[id].replica.viewChanging,
        });
      });
    }
    const r = s.run();
    const logs = [0, 1, 2, 3].map((id) => s.nodes[id].db!.signedLog());
    s.close();
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    const bound = 2 * (cfg.checkpointInterval + cfg.window) + 10;
    for (const x of seen) {
      // The whole log of the earlier release is read back as it was, and the node is back in view 1.
      expect(x.before, `node ${x.id}`).toBeGreaterThan(2 * bound);
      expect(x.reopened, `node ${x.id}`).toBeGreaterThanOrEqual(x.before);
      expect({ view: x.view, changing: x.changing }, `node ${x.id}`).toEqual({ view: 1, changing: false });
    }
    for (const id of [1, 2, 3]) {
      const log = logs[id];
      expect(log.length, `node ${id}`).toBeLessThan(bound);
      // The latest stable checkpoint's record alone is left, and it names the view.
      const cps = log.filter((x) => x.kind === 'checkpoint');
      expect(cps.length, `node ${id}`).toBe(1);
      expect(cps[0].view, `node ${id}`).toBe(1);
      expect(verifyLedgerFile(join(dir, `node-${id}.sqlite`)).problems).toEqual([]);
    }
  }, 120_000);
});
