/**
 * What a node restarted after a kill -9 (or a crash) tells its operator. Until 2026-12-07 nothing: the log
 * of a node restarted after `kill -9` read as after a clean stop ("node started"), and only `group start`'s
 * own line said it had died. The kill is made as the ledger sees it: its clean-close mark left unset.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeHost } from '../../src/node/host.ts';
import { startStandIn } from '../../src/node/standin-backend.ts';
import { makeGroup } from '../../src/sim/world.ts';

const dir = mkdtempSync(join(tmpdir(), 'dropbear-restart-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const group = makeGroup(4, 1, 21);
const ledgerPath = join(dir, 'n1.sqlite');

/**
 * Opens node 1 on the ledger, closes it cleanly, and returns what it warned of at the open. `wrongModel`: the
 * open fails (MODEL_MISMATCH: the stand-in of node 2 loaded), after the ledger was opened.
 */
function openAndClose(wrongModel = false): string[] {
  const warned: string[] = [];
  const host = NodeHost.open({
    id: 1,
    genesis: group.genesis,
    key: group.keys[1],
    ledgerPath,
    backends: [startStandIn(wrongModel ? 2 : 1)],
    wire: { send: () => {}, broadcast: () => {}, onFrame: () => {}, reportBad: () => {} },
    logger: { info() {}, error() {}, warn: (_obj: unknown, msg?: string) => warned.push(String(msg)) },
  });
  host.stop();
  host.close();
  return warned;
}

describe('a node restarted after it was killed', () => {
  it('says the previous run did not stop cleanly and that it restored from its ledger; after a clean stop, nothing', () => {
    expect(openAndClose()).toEqual([]);
    expect(openAndClose()).toEqual([]);
    // kill -9: the mark the open set (clean_close = 0) is never reset by a close.
    const db = new Database(ledgerPath);
    db.prepare('UPDATE meta SET clean_close = 0').run();
    db.close();
    const warned = openAndClose();
    expect(warned).toEqual([
      expect.stringMatching(/previous run of this node did not stop cleanly.*restored from its ledger/),
    ]);
    expect(openAndClose()).toEqual([]);
  });

  it('a start that fails before it could say so (the wrong model) leaves the mark for the next start', () => {
    const kill = () => {
      const db = new Database(ledgerPath);
      db.prepare('UPDATE meta SET clean_close = 0').run();
      db.close();
    };
    kill();
    expect(() => openAndClose(true)).toThrow(/must run the model/);
    // It closed the ledger as cleanly stopped: the start after it said nothing of the kill.
    expect(openAndClose()).toEqual([expect.stringMatching(/previous run of this node did not stop cleanly/)]);
    // After a clean stop, a failed start does not make the next one read as after a kill.
    expect(() => openAndClose(true)).toThrow(/must run the model/);
    expect(openAndClose()).toEqual([]);
  });
});
