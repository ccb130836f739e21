/**
 * `dropbear ledger verify` and a ledger whose `meta` row holds values of other types than the node writes
 * there (SQLite keeps any value in a column of a table that is not STRICT): a text or a number where the
 * genesis or the group id is a blob, a schema version that is text or not a whole number. Each is a problem
 * naming the column (exit 1), as for the other tables (docs/ledger.md, "Verification"). They read as a
 * genesis that "does not decode: NaN trailing bytes", "cannot read ledger: argument must be a buffer" (which
 * ended the check), or LEDGER_SCHEMA_VERSION "ledger schema 11.5 … written by a newer build" (exit 2).
 * Real SQLite files: an empty ledger the node's code writes, then its meta row rewritten by hand.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteLedger } from '../../src/ledger/sqlite.ts';
import { verifyLedgerFile } from '../../src/ledger/verify.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { runCliInProcess } from '../cli/run-cli.ts';

const G = makeGroup(4, 1, 7);
let dir: string;
let fileNo = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dropbear-verify-meta-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A ledger of G's genesis, its meta row then changed by `sql`. */
function ledgerWith(sql: string): string {
  const path = join(dir, `ledger-${++fileNo}.sqlite`);
  SqliteLedger.open(path, G.genesis).close();
  const db = new Database(path);
  try {
    db.exec(sql);
  } finally {
    db.close();
  }
  return path;
}

describe('ledger verify: a meta row with values of other types', () => {
  it('the file as written verifies', () => {
    expect(verifyLedgerFile(ledgerWith('SELECT 1')).problems).toEqual([]);
  });

  for (const [value, found] of [
    ["'a genesis'", 'text'],
    ['5', 'a number'],
  ])
    it(`meta.genesis ${found}: a problem naming the column, nothing else checked`, () => {
      const v = verifyLedgerFile(ledgerWith(`UPDATE meta SET genesis = ${value}`));
      expect(v.ok).toBe(false);
      expect(v.problems).toEqual([`meta.genesis is ${found}, not a blob`]);
    });

  it('meta.group_id text: a problem naming the column; the rest is still checked', () => {
    const v = verifyLedgerFile(ledgerWith("UPDATE meta SET group_id = 'a group id'"));
    expect(v.problems).toEqual(['meta.group_id is text, not a blob']);
  });

  for (const [value, found] of [
    ["'11x'", 'text'],
    ['11.5', 'a number that is not a whole one'],
    ["x'0b'", 'a blob'],
  ])
    it(`meta.schema_version ${found}: a problem naming the column (not LEDGER_SCHEMA_VERSION)`, () => {
      const v = verifyLedgerFile(ledgerWith(`UPDATE meta SET schema_version = ${value}`));
      expect(v.problems).toEqual([`meta.schema_version is ${found}, not a schema version (an integer)`]);
    });

  it('the CLI: the problem on stdout, exit 1', async () => {
    const path = ledgerWith("UPDATE meta SET group_id = 'a group id', genesis = 7");
    const r = await runCliInProcess(['ledger', 'verify', path]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('meta.group_id is text, not a blob\nmeta.genesis is a number, not a blob\n');
    expect(r.code).toBe(1);
  });
});

describe('a node opening a ledger whose meta row holds values of other types', () => {
  // Until 2026-12-07 the open took the values as the node writes them: a text group id read as 'argument must
  // be a buffer' (LEDGER_UNREADABLE), a text schema version as LEDGER_SCHEMA_VERSION "ledger schema 12x", and a
  // number for the genesis opened unnoticed.
  for (const [sql, column, found] of [
    ["UPDATE meta SET group_id = 'a group id'", 'group_id', 'text'],
    ['UPDATE meta SET genesis = 5', 'genesis', 'a number'],
    ["UPDATE meta SET schema_version = '12x'", 'schema_version', 'text'],
    ['UPDATE meta SET schema_version = 11.5', 'schema_version', 'a number that is not a whole one'],
  ] as const)
    it(`meta.${column} ${found}: LEDGER_CORRUPT naming the column, the file left as it was`, () => {
      const path = ledgerWith(sql);
      let err: unknown;
      try {
        SqliteLedger.open(path, G.genesis).close();
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: 'LEDGER_CORRUPT' });
      expect((err as Error).message).toContain(`meta.${column} is ${found}`);
      expect((err as Error).message).toContain(path);
      const db = new Database(path, { readonly: true });
      try {
        const row = db.prepare('SELECT * FROM meta').get() as Record<string, unknown>;
        expect(verifyLedgerFile(path).ok).toBe(false);
        expect(row[column]).not.toBeUndefined();
      } finally {
        db.close();
      }
    });

  it('the file as written opens, after a clean close', () => {
    const path = ledgerWith('SELECT 1');
    const l = SqliteLedger.open(path, G.genesis);
    expect(l.created).toBe(false);
    expect(l.uncleanShutdown).toBe(false);
    l.close();
  });

  for (const value of ["'yes'", '2', "x'01'"])
    it(`meta.clean_close ${value} opens as a shutdown that was not clean (the careful reading)`, () => {
      const l = SqliteLedger.open(ledgerWith(`UPDATE meta SET clean_close = ${value}`), G.genesis);
      expect(l.uncleanShutdown).toBe(true);
      l.close();
    });
});
