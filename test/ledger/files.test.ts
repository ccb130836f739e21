// The ledger file as an operator meets it: one process at a time, a file that lost its contents, a file
// SQLite finds damaged, a ledger the auditor may only read, and progress on a long verification.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteLedger } from '../../src/ledger/sqlite.ts';
import { DropbearError } from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';

const { genesis } = makeGroup(4, 1, 11);
const dir = mkdtempSync(join(tmpdir(), 'dropbear-ledger-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
const freshPath = () => join(dir, `ledger-${++fileNo}.sqlite`);

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof DropbearError) return e.code;
    throw e;
  }
  return undefined;
}

const cleanClose = (path: string): number => {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT clean_close FROM meta WHERE id = 0').get() as { clean_close: number })
      .clean_close;
  } finally {
    db.close();
  }
};

describe('one process at a time', () => {
  it('a second open of a ledger in use is refused (LEDGER_LOCKED) and writes nothing to it', () => {
    const path = freshPath();
    const first = SqliteLedger.open(path, genesis);
    const marker = readFileSync(`${path}.boot`, 'utf8');
    let err: unknown;
    try {
      SqliteLedger.open(path, genesis).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DropbearError);
    expect((err as DropbearError).code).toBe('LEDGER_LOCKED');
    expect((err as DropbearError).message).toContain(`${path} is in use by another open ledger`);
    // Before 2026-12-06 the second open replayed the file, marked it open, rewrote the boot marker and, on
    // its close (a node refused its port), marked it cleanly closed under the running node.
    expect(cleanClose(path)).toBe(0);
    expect(readFileSync(`${path}.boot`, 'utf8')).toBe(marker);
    first.close();
    // Free once closed, and once the holder's connection is gone without a close (a crash).
    const again = SqliteLedger.open(path, genesis);
    (again as unknown as { db: Database.Database }).db.close();
    const third = SqliteLedger.open(path, genesis);
    expect(third.uncleanShutdown).toBe(true);
    third.close();
  });

  it('another process holding the ledger keeps it; its kill -9 frees it', async () => {
    const path = freshPath();
    SqliteLedger.open(path, genesis).close();
    // A child that opens the ledger as the node does and then waits (tsx: the ledger is TypeScript).
    const script = [
      "import { readFileSync } from 'node:fs';",
      "import { SqliteLedger } from './src/ledger/sqlite.ts';",
      "import { makeGroup } from './src/sim/world.ts';",
      `SqliteLedger.open(${JSON.stringify(path)}, makeGroup(4, 1, 11).genesis);`,
      "process.stdout.write('open\\n');",
      'setInterval(() => {}, 1000);',
    ].join('\n');
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: new URL('../..', import.meta.url),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => d.toString().includes('open') && resolve());
        child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
      });
      expect(codeOf(() => SqliteLedger.open(path, genesis).close())).toBe('LEDGER_LOCKED');
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.on('close', r));
    }
    const l = SqliteLedger.open(path, genesis);
    expect(l.uncleanShutdown).toBe(true);
    l.close();
  }, 20_000);
});

describe('a ledger that lost its contents is not started over silently', () => {
  it('an emptied or deleted ledger file with its boot marker beside it is LEDGER_LOST, and stays so', () => {
    const path = freshPath();
    SqliteLedger.open(path, genesis).close();
    writeFileSync(path, ''); // truncated to zero bytes (a botched copy, `> ledger.sqlite`)
    let err: unknown;
    try {
      SqliteLedger.open(path, genesis);
    } catch (e) {
      err = e;
    }
    expect((err as DropbearError).code).toBe('LEDGER_LOST');
    expect((err as DropbearError).message).toContain(`${path}.boot`);
    // Nothing was written: still empty, so a second start is refused too (before, it made a new ledger).
    expect(readFileSync(path).length).toBe(0);
    expect(codeOf(() => SqliteLedger.open(path, genesis))).toBe('LEDGER_LOST');
    rmSync(path);
    expect(codeOf(() => SqliteLedger.open(path, genesis))).toBe('LEDGER_LOST');
    // A new ledger needs the folder clean of the old one's marker too.
    rmSync(`${path}.boot`);
    const fresh = SqliteLedger.open(path, genesis);
    expect(fresh.created).toBe(true);
    fresh.close();
  });

  it('a zero-byte file without a marker (a create that never finished) becomes a new ledger', () => {
    const path = freshPath();
    writeFileSync(path, '');
    const l = SqliteLedger.open(path, genesis);
    expect(l.created).toBe(true);
    l.close();
    expect(existsSync(`${path}.boot`)).toBe(true);
  });
});
