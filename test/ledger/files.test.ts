// The ledger file as an operator meets it: one process at a time, a file that lost its contents, a file
// SQLite finds damaged, a ledger the auditor may only read, and progress on a long verification.
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { certificateFromFile } from '../../src/ledger/extract.ts';
import { ledgerWriteFailure, SqliteLedger } from '../../src/ledger/sqlite.ts';
import { verifyLedgerFile } from '../../src/ledger/verify.ts';
import { type Batch, batchDigestOf, DropbearError, decode, uint } from '../../src/protocol/index.ts';
import { EPOCH_MS, makeGroup } from '../../src/sim/world.ts';
import { ROOT } from '../cli/run-cli.ts';
import { smallDisk } from '../support/tmpfs.ts';

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

  it('one lock per file, whatever path reaches it: a symbolic link to a ledger in use is LEDGER_LOCKED', () => {
    const path = freshPath();
    const first = SqliteLedger.open(path, genesis);
    const other = join(dir, `elsewhere-${fileNo}`);
    mkdirSync(other);
    const link = join(other, 'ledger.sqlite');
    symlinkSync(path, link);
    // SQLite follows the link (its -wal and -shm are the file's own); the lock was `<the link>.lock`, a
    // file of its own: a second node on a data folder whose ledger links to the first's ran on it.
    expect(codeOf(() => SqliteLedger.open(link, genesis).close())).toBe('LEDGER_LOCKED');
    expect(cleanClose(path)).toBe(0);
    first.close();
    SqliteLedger.open(link, genesis).close();
  });
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

  it('rejoin (`dropbear node --rejoin`) makes the new ledger, logged as forgotten; a ledger that holds one is refused it', () => {
    const path = freshPath();
    SqliteLedger.open(path, genesis).close();
    rmSync(path);
    const before = Date.now();
    const l = SqliteLedger.open(path, genesis, { rejoin: true });
    expect(l.created).toBe(true);
    // The replica restored from it is forgetful (test/node/restart-results.test.ts): it signs in no view
    // before 2f + 1 peers have told it theirs, and votes on no request as old as the loss.
    expect(l.writesMayBeLost).toBe(true);
    const forgotten = l.signedLog().filter((r) => r.kind === 'forgotten');
    expect(forgotten).toHaveLength(1);
    expect(decode(uint, forgotten[0].body!)).toBeGreaterThanOrEqual(before);
    l.close();
    // Reopened plainly it is this node's ledger again (the record stays until the group's view is learned).
    const again = SqliteLedger.open(path, genesis);
    expect(again.created).toBe(false);
    again.close();
    expect(codeOf(() => SqliteLedger.open(path, genesis, { rejoin: true }))).toBe('LEDGER_BAD_OPTION');
  });

  it('rejoin beside a marker of another boot (or another machine: a folder moved) still forgets up to now', () => {
    const path = freshPath();
    SqliteLedger.open(path, genesis).close();
    rmSync(path);
    // A boot id this machine never had: the marker came with the folder from another machine, whose lost
    // session may have ended long after this machine booted. Before, the record carried this boot's start,
    // and the node voted again on requests its lost session may have voted on.
    const marker = JSON.parse(readFileSync(`${path}.boot`, 'utf8'));
    writeFileSync(
      `${path}.boot`,
      JSON.stringify({ ...marker, bootId: '00000000-0000-4000-8000-000000000000' }),
    );
    const before = Date.now();
    const l = SqliteLedger.open(path, genesis, { rejoin: true });
    const forgotten = l.signedLog().filter((r) => r.kind === 'forgotten');
    expect(forgotten).toHaveLength(1);
    expect(decode(uint, forgotten[0].body!)).toBeGreaterThanOrEqual(before);
    l.close();
  });

  it('a zero-byte file without a marker (a create that never finished) becomes a new ledger', () => {
    const path = freshPath();
    writeFileSync(path, '');
    const l = SqliteLedger.open(path, genesis);
    expect(l.created).toBe(true);
    l.close();
    expect(existsSync(`${path}.boot`)).toBe(true);
  });

  it('the file alone, copied while its node ran (its records all in the -wal), is LEDGER_LOST without a marker too', () => {
    // An operator's backup or move of `ledger.sqlite` without `ledger.sqlite-wal`, taken before the WAL's
    // first checkpoint: the file is a WAL-mode database with no table. Until 2026-12-07 a node started on
    // it (in a new folder: no marker) made a new ledger and ran as a new node at view 0, seq 0, where it
    // had signed before; `ledger verify` called it "not a Dropbear ledger".
    const path = freshPath();
    const copy = freshPath();
    const running = SqliteLedger.open(path, genesis);
    const batch: Batch = { timestamp: EPOCH_MS + 1, entries: [], txs: [] };
    running.execute(1, 0, batchDigestOf(batch), batch, []);
    writeFileSync(copy, readFileSync(path));
    running.close();
    expect(existsSync(`${copy}-wal`) || existsSync(`${copy}.boot`)).toBe(false);
    let err: unknown;
    try {
      SqliteLedger.open(copy, genesis).close();
    } catch (e) {
      err = e;
    }
    expect((err as DropbearError).code).toBe('LEDGER_LOST');
    expect((err as DropbearError).message).toContain(`${copy}-wal`);
    expect(existsSync(`${copy}.boot`)).toBe(false);
    expect(codeOf(() => verifyLedgerFile(copy))).toBe('LEDGER_UNREADABLE');
    expect(() => verifyLedgerFile(copy)).toThrow(`${copy}-wal`);
    expect(() => certificateFromFile(copy, new Uint8Array(32))).toThrow(`${copy}-wal`);
    // --rejoin takes it, as it takes a lost file beside its marker.
    const rejoined = SqliteLedger.open(copy, genesis, { rejoin: true });
    expect(rejoined.created).toBe(true);
    expect(rejoined.writesMayBeLost).toBe(true);
    rejoined.close();
  });
});

const small = smallDisk('files.test.ts', '1m');
afterAll(() => small.remove());

describe('a first open that fails part-way (a full disk)', () => {
  small.onTmpfs(
    'leaves no WAL-mode file without a table behind: once there is room the retry makes the ledger',
    () => {
      // The switch to WAL writes the file's header before the schema's transaction: a full disk failing that
      // transaction left a WAL-mode file with no table, which an open takes for a ledger whose -wal is lost
      // (LEDGER_LOST, since 2026-12-07), though the node never signed anything.
      const path = join(small.full, 'first.sqlite');
      const filler = small.fillUp(128 * 1024);
      expect(codeOf(() => SqliteLedger.open(path, genesis).close())).toMatch(/^LEDGER_(DISK_FULL|IO_ERROR)$/);
      rmSync(filler);
      const l = SqliteLedger.open(path, genesis);
      expect(l.created).toBe(true);
      l.close();
    },
  );
});

describe('the boot marker', () => {
  it("names the node that opened the ledger: another node's open is LEDGER_WRONG_NODE and writes nothing", () => {
    // A config whose "data" names another node's folder (node 2's id and key, node 3's folder): until
    // 2026-12-07 node 2 ran on node 3's ledger, restored node 3's signed log as its own and signed on
    // without its own history (on a real group: "node 2 serving", nothing said).
    const path = freshPath();
    SqliteLedger.open(path, genesis, { node: 3 }).close();
    const marker = readFileSync(`${path}.boot`, 'utf8');
    const before = readFileSync(path);
    let err: unknown;
    try {
      SqliteLedger.open(path, genesis, { node: 2 }).close();
    } catch (e) {
      err = e;
    }
    expect((err as DropbearError).code).toBe('LEDGER_WRONG_NODE');
    expect((err as DropbearError).message).toMatch(/node 3's ledger, not node 2's/);
    expect(readFileSync(`${path}.boot`, 'utf8')).toBe(marker);
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(codeOf(() => SqliteLedger.open(path, genesis, { node: 2, rejoin: true }))).toBe(
      'LEDGER_WRONG_NODE',
    );
    SqliteLedger.open(path, genesis, { node: 3 }).close();
    // A marker of a build that wrote no node (or an open that named none) is taken, and names it from then.
    writeFileSync(`${path}.boot`, JSON.stringify({ ...JSON.parse(marker), node: undefined }));
    SqliteLedger.open(path, genesis, { node: 3 }).close();
    expect(JSON.parse(readFileSync(`${path}.boot`, 'utf8')).node).toBe(3);
  });

  it('a marker write that fails leaves no `<ledger>.boot.tmp` behind', () => {
    // The write's failure made real without a full disk: the marker's place is taken by a folder that is
    // not empty, so the rename over it fails once the temporary file is written. A full disk fails the
    // write before it; both left the temporary file until 2026-12-06.
    const path = freshPath();
    SqliteLedger.open(path, genesis).close();
    rmSync(`${path}.boot`);
    mkdirSync(`${path}.boot`);
    writeFileSync(join(`${path}.boot`, 'x'), 'x');
    expect(codeOf(() => SqliteLedger.open(path, genesis).close())).toBeDefined();
    expect(existsSync(`${path}.boot.tmp`)).toBe(false);
    // With the marker's place free again the ledger opens, writing its marker.
    rmSync(`${path}.boot`, { recursive: true });
    SqliteLedger.open(path, genesis).close();
    expect(existsSync(`${path}.boot`)).toBe(true);
    expect(existsSync(`${path}.boot.tmp`)).toBe(false);
  });
});

/** A ledger of `count` empty batches, closed (its WAL checkpointed into the file). */
function ledgerOf(count: number, path = freshPath()): string {
  const l = SqliteLedger.open(path, genesis);
  for (let seq = 1; seq <= count; seq++) {
    const batch: Batch = { timestamp: EPOCH_MS + seq, entries: [], txs: [] };
    l.execute(seq, 0, batchDigestOf(batch), batch, []);
  }
  l.close();
  return path;
}

const PAGE = 16 * 1024;

describe('a damaged file', () => {
  it("verify runs SQLite's own check: a garbled page no row read touches is LEDGER_CORRUPT (exit 2)", () => {
    const path = ledgerOf(3);
    // The root page of an index that verify never reads (own_results is empty and read by rowid).
    const db = new Database(path, { readonly: true });
    const { rootpage } = db
      .prepare("SELECT rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = 'own_results'")
      .get() as { rootpage: number };
    db.close();
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.alloc(PAGE, 0xa5), 0, PAGE, (rootpage - 1) * PAGE);
    closeSync(fd);
    // Before 2026-12-06: "ok: 3 batches ...".
    let err: unknown;
    try {
      verifyLedgerFile(path);
    } catch (e) {
      err = e;
    }
    expect((err as DropbearError).code).toBe('LEDGER_CORRUPT');
    expect((err as DropbearError).message).toMatch(/SQLite finds the file damaged/);
    const r = spawnSync(process.execPath, ['bin/dropbear.mjs', 'ledger', 'verify', path], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^error \[LEDGER_CORRUPT\]: .* SQLite finds the file damaged/);
  }, 30_000);

  // An empty file (a lost disk's zero-length copy) or another program's SQLite database was a line of
  // problems, "not a Dropbear ledger (no meta row)", exit 1: the status of a tampered ledger. A file that is
  // not SQLite at all was already LEDGER_UNREADABLE (exit 2), as `ledger certificate` says of both.
  it('an empty file or a SQLite database without a ledger is LEDGER_UNREADABLE for verify, not a line of problems', () => {
    const empty = join(dir, 'empty.sqlite');
    writeFileSync(empty, '');
    const other = join(dir, 'other-app.sqlite');
    const db = new Database(other);
    db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)');
    db.close();
    for (const path of [empty, other]) {
      let err: unknown;
      try {
        verifyLedgerFile(path);
      } catch (e) {
        err = e;
      }
      expect((err as DropbearError)?.code).toBe('LEDGER_UNREADABLE');
      expect((err as DropbearError).message).toBe(`${path} is not a Dropbear ledger (no meta row)`);
    }
  });

  it('a truncated file is LEDGER_CORRUPT for verify and for a node, not a line of problems', () => {
    const path = ledgerOf(3);
    truncateSync(path, PAGE + 100);
    // Before: "cannot read ledger: database disk image is malformed" (exit 1) and LEDGER_UNREADABLE.
    expect(codeOf(() => verifyLedgerFile(path))).toBe('LEDGER_CORRUPT');
    expect(codeOf(() => SqliteLedger.open(path, genesis))).toBe('LEDGER_CORRUPT');
  });
});

describe('verify on a long ledger', () => {
  it('reports its progress, batch by batch, against the number of batches', () => {
    const path = ledgerOf(5);
    const seen: [number, number][] = [];
    const r = verifyLedgerFile(path, undefined, { onProgress: (done, total) => seen.push([done, total]) });
    expect(r.ok).toBe(true);
    expect(seen).toEqual([
      [1, 5],
      [2, 5],
      [3, 5],
      [4, 5],
      [5, 5],
    ]);
  });
});

// Root reads any file: the check runs the CLI as nobody where this runs as root.
const asRoot = process.getuid?.() === 0;
describe.skipIf(process.platform === 'win32')('a ledger the auditor may only read', () => {
  it('verify of a ledger in a folder it may not write is LEDGER_READ_ONLY (SQLite must write the -shm)', () => {
    const folder = join(dir, 'read-only');
    mkdirSync(folder);
    const path = ledgerOf(2, join(folder, 'ledger.sqlite'));
    chmodSync(dir, 0o755);
    chmodSync(folder, 0o555);
    try {
      const r = spawnSync(
        asRoot ? 'setpriv' : process.execPath,
        [
          ...(asRoot ? ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath] : []),
          'bin/dropbear.mjs',
          'ledger',
          'verify',
          path,
        ],
        { cwd: ROOT, encoding: 'utf8', timeout: 30_000 },
      );
      // Before 2026-12-06: "cannot read ledger: attempt to write a readonly database", exit 1 (problems).
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(
        /^error \[LEDGER_READ_ONLY\]: cannot read .*ledger\.sqlite without writing .*ledger\.sqlite-shm beside it .*copy the file/,
      );
      expect(r.status).toBe(2);
    } finally {
      chmodSync(folder, 0o755);
    }
  }, 30_000);
});

// SQLite does not always report a write that found no space as SQLITE_FULL: on a tmpfs filled to 10 levels,
// 3 of the failed first opens were SQLITE_IOERR (LEDGER_IO_ERROR: "check the disk"), where freeing space
// was the cure (a review helper, 2026-12-07).
describe('an I/O error where the disk is full', () => {
  small.onTmpfs(
    'is LEDGER_DISK_FULL when the file system holding the ledger has no space left, else LEDGER_IO_ERROR',
    () => {
      const path = join(small.full, 'ioerr.sqlite');
      const ioerr = Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_WRITE' });
      expect(ledgerWriteFailure(path, ioerr)?.code).toBe('LEDGER_IO_ERROR');
      const filler = small.fillUp();
      try {
        const e = ledgerWriteFailure(path, ioerr);
        expect(e?.code).toBe('LEDGER_DISK_FULL');
        expect(e?.message).toMatch(/disk I\/O error.*free/);
      } finally {
        rmSync(filler);
      }
      expect(ledgerWriteFailure(path, ioerr)?.code).toBe('LEDGER_IO_ERROR');
    },
  );
});
