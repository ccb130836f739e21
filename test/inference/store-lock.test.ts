/**
 * The model index lock (`models/index.lock`) against the two ways it went wrong: a holder killed with
 * SIGKILL left a lock that made the next import wait 60 s (STALE_LOCK_MS), and two waiters that both
 * judged a lock stale could both unlink it, the second removing the lock the first had just taken (two
 * writers at once, one index update lost). Real files, a real child process, real concurrent waiters.
 */
import { spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import type { ModelSpec } from '../../src/inference/spec.ts';
import {
  importModels,
  indexPath,
  lockIndex,
  modelsDir,
  pullModel,
  readIndex,
  storedPath,
} from '../../src/inference/store.ts';
import { MODELS_DIR } from '../shared.ts';
import { failsWith } from './store-fixtures.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MNIST = catalogByName('mnist-winml')!;
const MNIST_FILE = join(MODELS_DIR, 'mnist-winml.onnx');

let tmp: string;
let n = 0;
const freshHome = () => join(tmp, `home${n++}`);
const lockOf = (home: string) => join(modelsDir(home), 'index.lock');

/** Sets a file's times `ms` into the past. */
function age(path: string, ms: number): void {
  const t = (Date.now() - ms) / 1000;
  utimesSync(path, t, t);
}

/** An index of `count` filler entries: rewriting it takes the holder long enough to be caught holding the lock. */
function bigIndex(home: string, count: number): void {
  mkdirSync(modelsDir(home), { recursive: true });
  const models: Record<string, unknown> = {};
  for (let i = 0; i < count; i++)
    models[`filler-${i}`] = {
      sha256: i.toString(16).padStart(64, '0'),
      bytes: MNIST.bytes,
      spec: MNIST,
      importedAt: '2026-01-01T00:00:00.000Z',
    };
  writeFileSync(indexPath(home), JSON.stringify({ version: 1, models }));
}

/** A pid that no process has: a child that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const c = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((r) => c.once('exit', r));
  return c.pid!;
}

/** A home whose store holds MNIST's file but whose index does not name it (a pull then only indexes it). */
function storeWithFile(home: string): void {
  mkdirSync(modelsDir(home), { recursive: true });
  copyFileSync(MNIST_FILE, storedPath(MNIST.sha256, home));
}

/**
 * Leaves `index.lock` held as a real acquisition does (lockIndex, never released), then rewrites its owner
 * record with `patch`: another pid, host or pid namespace.
 */
async function heldBy(home: string, patch: Record<string, unknown>): Promise<void> {
  await lockIndex(home);
  const owner = JSON.parse(readFileSync(lockOf(home), 'utf8'));
  writeFileSync(lockOf(home), JSON.stringify({ ...owner, ...patch }));
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'dropbear-store-lock-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('a holder killed with SIGKILL while it holds index.lock', () => {
  it('the next import breaks the lock at once (it waited STALE_LOCK_MS, 60 s)', async () => {
    const h = freshHome();
    bigIndex(h, 5000);
    const lock = lockOf(h);
    // A real import in a child process, killed as soon as it is seen holding the lock.
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `const { importModels } = await import(${JSON.stringify(join(ROOT, 'src/inference/store.ts'))});
         await importModels(${JSON.stringify(MNIST_FILE)}, ${JSON.stringify(h)});`,
      ],
      { cwd: ROOT, stdio: 'ignore' },
    );
    const exited = new Promise((r) => child.once('exit', r));
    let seen = false;
    for (let i = 0; i < 4000 && !seen && child.exitCode === null; i++) {
      if (existsSync(lock)) seen = true;
      else await new Promise((r) => setTimeout(r, 2));
    }
    child.kill('SIGKILL');
    await exited;
    expect(seen, 'the child was never seen holding index.lock').toBe(true);
    expect(existsSync(lock)).toBe(true);
    const owner = JSON.parse(readFileSync(lock, 'utf8'));
    expect(owner).toMatchObject({ pid: child.pid, host: hostname() });
    expect(owner.token).toMatch(/^[0-9a-f]{32}$/);

    const t0 = Date.now();
    const [r] = await importModels(MNIST_FILE, h);
    const took = Date.now() - t0;
    expect(r).toMatchObject({ name: 'mnist-winml', added: true });
    expect(took).toBeLessThan(5_000); // not the 60 s stale age
    expect(existsSync(lock)).toBe(false);
    expect(Object.keys((await readIndex(h)).models)).toHaveLength(5001);
  }, 20_000);
});

describe('who may break a lock', () => {
  it('a dead owner on this host: broken at once, even when fresh', async () => {
    const h = freshHome();
    storeWithFile(h);
    await heldBy(h, { pid: await deadPid() });
    const t0 = Date.now();
    const r = await pullModel('mnist-winml', h, { lockWaitMs: 2_000 });
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(r.downloaded).toBe(false);
    expect(existsSync(lockOf(h))).toBe(false);
  });

  it('a live owner is waited for (MODEL_STORE_BUSY), then broken only once older than the stale age', async () => {
    const h = freshHome();
    storeWithFile(h);
    await heldBy(h, {}); // this very process, alive
    const e = await failsWith(pullModel('mnist-winml', h, { lockWaitMs: 300 }), 'MODEL_STORE_BUSY');
    expect(e.message).toContain(`by pid ${process.pid} on ${hostname()}`);
    expect(existsSync(lockOf(h))).toBe(true);
    age(lockOf(h), 2_000);
    expect((await pullModel('mnist-winml', h, { staleLockMs: 1_000 })).downloaded).toBe(false);
    expect(existsSync(lockOf(h))).toBe(false);
  });

  it('a dead pid on another host (or another pid namespace) proves nothing: age-based', async () => {
    for (const other of [{ host: `not-${hostname()}` }, { pidns: 'pid:[1]' }]) {
      const h = freshHome();
      storeWithFile(h);
      await heldBy(h, { pid: await deadPid(), ...other });
      await failsWith(pullModel('mnist-winml', h, { lockWaitMs: 300 }), 'MODEL_STORE_BUSY');
      age(lockOf(h), 2_000);
      expect((await pullModel('mnist-winml', h, { staleLockMs: 1_000 })).downloaded).toBe(false);
    }
  });

  it('an empty lock of the old format is age-based too', async () => {
    const h = freshHome();
    storeWithFile(h);
    writeFileSync(lockOf(h), '');
    const e = await failsWith(pullModel('mnist-winml', h, { lockWaitMs: 300 }), 'MODEL_STORE_BUSY');
    expect(e.message).toContain('index.lock');
    age(lockOf(h), 2_000);
    expect((await pullModel('mnist-winml', h, { staleLockMs: 1_000 })).downloaded).toBe(false);
    expect(existsSync(lockOf(h))).toBe(false);
  });

  it('a holder whose lock was broken does not remove the next holder’s lock', async () => {
    const h = freshHome();
    mkdirSync(modelsDir(h), { recursive: true });
    const a = await lockIndex(h);
    age(lockOf(h), 5_000); // A looks stale (a holder stopped for longer than the stale age)
    const b = await lockIndex(h, { staleLockMs: 1_000 });
    const bToken = JSON.parse(readFileSync(lockOf(h), 'utf8')).token;
    await a.release();
    expect(JSON.parse(readFileSync(lockOf(h), 'utf8')).token).toBe(bToken);
    await b.release();
    expect(existsSync(lockOf(h))).toBe(false);
  });
});

describe('many waiters that all find one stale lock', () => {
  it('every update lands: no two of them hold the lock at once (one unlinked the lock another had just taken)', async () => {
    const WAITERS = 12;
    // Twelve catalog names for MNIST's bytes: each pull only adds its name to the index, under the lock.
    const catalog: ModelSpec[] = Array.from({ length: WAITERS }, (_, i) => ({ ...MNIST, name: `m${i}` }));
    for (let round = 0; round < 10; round++) {
      const h = freshHome();
      storeWithFile(h);
      writeFileSync(indexPath(h), JSON.stringify({ version: 1, models: {} }));
      writeFileSync(lockOf(h), '');
      age(lockOf(h), 120_000);
      // Each waiter reaches the store through its own symbolic link: this process's queue (by folder name)
      // then does not order them, only the lock file does, as between processes.
      const homes = catalog.map((_, i) => {
        const link = `${h}-link${i}`;
        symlinkSync(h, link);
        return link;
      });
      await Promise.all(catalog.map((m, i) => pullModel(m.name, homes[i], { catalog })));
      const names = Object.keys((await readIndex(h)).models).sort();
      expect(names, `round ${round}`).toEqual(catalog.map((m) => m.name).sort());
      expect(existsSync(lockOf(h))).toBe(false);
    }
  }, 20_000);
});
