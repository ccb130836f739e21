import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { type PersistRecord, Replica } from '../../src/consensus/replica.ts';
import { LEDGER_SCHEMA_VERSION } from '../../src/ledger/sqlite.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { removeSimDirs, simOnDisk } from './on-disk.helpers.ts';

afterAll(removeSimDirs);

describe('a pruned signed log and a release that predates pruning', () => {
  it('that release would restore the node into a view it left; the file says a later schema, which it refuses', () => {
    const { s, dir } = simOnDisk('dropbear-downgrade-', 600);
    // The primary of view 0 goes early and comes back (disk kept) once the others are in view 1: it joins
    // view 1 by state transfer (the NEW-VIEW a state response carries), writing no VIEW-CHANGE of its own.
    s.at(100, () => s.crash(0));
    s.at(3_000, () => s.restart(0, false));
    const r = s.run();
    const n0 = s.nodes[0];
    const log = n0.db!.signedLog() as PersistRecord[];
    const now = { view: n0.replica.view, changing: n0.replica.viewChanging };
    const l = n0.db!.state;
    s.close();
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    expect(now).toEqual({ view: 1, changing: false });
    // Read as the earlier release reads it (a checkpoint record's view means nothing to it), the log
    // holds nothing of view 1 any more: it restores node 0 into view 0, the view it left, as its primary.
    const restore = (records: PersistRecord[]) => {
      const x = Replica.restore(s.group.genesis, 0, n0.key, n0.cfg, {
        ...l.replicaState(),
        recent: [],
        log: records,
      });
      return { view: x.view, changing: x.viewChanging };
    };
    // (As that release wrote it, too: without the NEW-VIEW record node 0, not view 1's primary, writes
    // since schema 9 on entering view 1.)
    const asBefore = log
      .filter((x) => !(x.kind === 'newView' && x.view % 4 !== 0))
      .map((x) => (x.kind === 'checkpoint' ? { ...x, view: undefined } : x)) as PersistRecord[];
    expect(log.some((x) => x.kind === 'newView' && x.view === 1 && x.body !== undefined)).toBe(true);
    expect(restore(log)).toEqual({ view: 1, changing: false });
    expect(restore(asBefore)).toEqual({ view: 0, changing: false });
    // So the file must not open there: its schema is above the 7 that release reads.
    expect(LEDGER_SCHEMA_VERSION).toBeGreaterThan(7);
    const db = new Database(join(dir, 'node-0.sqlite'), { readonly: true });
    expect(db.prepare('SELECT schema_version FROM meta').pluck().get()).toBe(LEDGER_SCHEMA_VERSION);
    db.close();
  }, 120_000);
});
