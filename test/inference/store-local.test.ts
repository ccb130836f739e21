/**
 * The model store's local side: a download or import whose write into the store fails (disk full and
 * the like) is a local storage error, not a network one; and temp files left by killed downloads are
 * removed when the store is next opened, without touching a download that is still being written.
 *
 * The write failures are real ones: `open` in node:fs/promises is wrapped so that a store temp file of
 * the kind a test names opens `/dev/full` (every write fails with ENOSPC) or a path in a missing folder.
 */
import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import {
  importModels,
  listModels,
  modelsDir,
  pullModel,
  readIndex,
  removeStaleTemps,
  STALE_TEMP_MS,
} from '../../src/inference/store.ts';
import { MODELS_DIR } from '../shared.ts';
import { failsWith, serve, strays } from './store-fixtures.ts';

/** Where `open` sends a store temp file whose name holds `match` (null: nowhere else). */
const redirect = vi.hoisted(() => ({ match: '', to: null as string | null }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const open = ((path: Parameters<typeof real.open>[0], ...rest: unknown[]) =>
    (real.open as (...a: unknown[]) => unknown)(
      redirect.to !== null && redirect.match !== '' && String(path).includes(redirect.match)
        ? redirect.to
        : path,
      ...rest,
    )) as typeof real.open;
  return { ...real, open, default: { ...real, open } };
});

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MNIST = catalogByName('mnist-winml')!;
const MNIST_BYTES = readFileSync(join(MODELS_DIR, 'mnist-winml.onnx'));

let tmp: string;
let n = 0;
const freshHome = () => join(tmp, `home${n++}`);

/** Sets a file's times `ms` into the past. */
function age(path: string, ms: number): void {
  const t = (Date.now() - ms) / 1000;
  utimesSync(path, t, t);
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'dropbear-store-local-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});
afterEach(() => {
  redirect.match = '';
  redirect.to = null;
});

describe('a local write failure is a storage error, not a network one', () => {
  let server: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': MNIST_BYTES.length }).end(MNIST_BYTES);
    });
  });
  afterAll(async () => {
    await server.close();
  });

  it.skipIf(!existsSync('/dev/full'))(
    'a download onto a full disk (ENOSPC) is MODEL_STORE_WRITE_FAILED',
    async () => {
      redirect.match = '.download-';
      redirect.to = '/dev/full';
      const h = freshHome();
      const e = await failsWith(
        pullModel('mnist-winml', h, { baseUrl: server.base }),
        'MODEL_STORE_WRITE_FAILED',
      );
      expect(e.message).toContain('ENOSPC');
      expect(e.message).toMatch(/disk.*full/i);
      expect(e.message).not.toMatch(/connection|network/i);
      expect(e.details).toMatchObject({ errno: 'ENOSPC' });
      expect(strays(h)).toEqual([]);
      expect((await readIndex(h)).models).toEqual({});
    },
  );

  it('a temp file that cannot be created is MODEL_STORE_WRITE_FAILED naming the cause', async () => {
    redirect.match = '.download-';
    redirect.to = join(tmp, 'no-such-folder', 'x.tmp');
    const h = freshHome();
    const e = await failsWith(
      pullModel('mnist-winml', h, { baseUrl: server.base }),
      'MODEL_STORE_WRITE_FAILED',
    );
    expect(e.message).toContain('ENOENT');
    expect(e.details).toMatchObject({ errno: 'ENOENT' });
  });

  it('a connection that breaks mid-body is still MODEL_DOWNLOAD_FAILED', async () => {
    const broken = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': MNIST_BYTES.length });
      res.write(MNIST_BYTES.subarray(0, 1000), () => res.destroy());
    });
    try {
      const h = freshHome();
      const e = await failsWith(
        pullModel('mnist-winml', h, { baseUrl: broken.base }),
        'MODEL_DOWNLOAD_FAILED',
      );
      expect(e.message).toContain('connection broke');
      expect(strays(h)).toEqual([]);
    } finally {
      await broken.close();
    }
  });

  it.skipIf(!existsSync('/dev/full'))(
    'an import onto a full disk is MODEL_STORE_WRITE_FAILED, not an unreadable source',
    async () => {
      redirect.match = '.import.';
      redirect.to = '/dev/full';
      const h = freshHome();
      const e = await failsWith(
        importModels(join(MODELS_DIR, 'mnist-winml.onnx'), h),
        'MODEL_STORE_WRITE_FAILED',
      );
      expect(e.message).toContain('ENOSPC');
      expect(strays(h)).toEqual([]);
    },
  );
});

describe('stale temp files are removed when the store opens', () => {
  const OLD = STALE_TEMP_MS + 60_000;

  it('removes only our own old temp files', async () => {
    const h = freshHome();
    const dir = modelsDir(h);
    mkdirSync(dir, { recursive: true });
    const files = {
      oldDownload: `.download-${MNIST.sha256.slice(0, 12)}.4242.0123456789ab.tmp`,
      oldImport: '.import.4242.0123456789ab.tmp',
      oldIndex: '.index.json.4242.0123456789ab.tmp',
      freshDownload: `.download-${MNIST.sha256.slice(0, 12)}.4243.0123456789ab.tmp`,
      otherTmp: '.download-notes.tmp',
      userFile: 'notes.txt',
    };
    for (const f of Object.values(files)) writeFileSync(join(dir, f), 'x');
    for (const f of [files.oldDownload, files.oldImport, files.oldIndex, files.otherTmp, files.userFile])
      age(join(dir, f), OLD);

    // The first use of the store in this process opens it.
    expect(await listModels(h)).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual([files.freshDownload, files.otherTmp, files.userFile].sort());
  });

  it('a pull does not lose its own temp file to a sweep while it downloads', async () => {
    // Sends half the file, then waits until told to send the rest.
    let finish: () => void = () => {};
    const slow = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': MNIST_BYTES.length });
      const half = MNIST_BYTES.length >> 1;
      res.write(MNIST_BYTES.subarray(0, half));
      finish = () => res.end(MNIST_BYTES.subarray(half));
    });
    try {
      const h = freshHome();
      const pull = pullModel('mnist-winml', h, { baseUrl: slow.base, idleTimeoutMs: 30_000 });
      pull.catch(() => {}); // awaited below; kept from being unhandled should an earlier check fail
      const dir = modelsDir(h);
      let temp: string | undefined;
      for (let i = 0; i < 200 && !temp; i++) {
        await new Promise((r) => setTimeout(r, 20));
        temp = existsSync(dir) ? readdirSync(dir).find((f) => f.startsWith('.download-')) : undefined;
      }
      expect(temp).toBeDefined();
      // Even when it looks abandoned by its age, a download of this process keeps its file.
      age(join(dir, temp!), OLD);
      expect(await removeStaleTemps(h)).toEqual([]);
      expect(existsSync(join(dir, temp!))).toBe(true);
      finish();
      expect(await pull).toMatchObject({ sha256: MNIST.sha256, downloaded: true });
      expect(strays(h)).toEqual([]);
    } finally {
      await slow.close();
    }
  });

  it('a pull killed mid-download leaves its temp file; the next open of the store removes it once stale', async () => {
    const stall = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': MNIST_BYTES.length });
      res.write(MNIST_BYTES.subarray(0, 1000));
    });
    try {
      const h = freshHome();
      const dir = modelsDir(h);
      const child = spawn(process.execPath, ['bin/dropbear.mjs', 'models', 'pull', 'mnist-winml'], {
        cwd: ROOT,
        env: { ...process.env, DROPBEAR_HOME: h, DROPBEAR_CATALOG_BASE_URL: stall.base, NO_COLOR: '1' },
        stdio: 'ignore',
      });
      const exited = new Promise((r) => child.once('exit', r));
      let temp: string | undefined;
      for (let i = 0; i < 1500 && !temp; i++) {
        await new Promise((r) => setTimeout(r, 20));
        temp = existsSync(dir) ? readdirSync(dir).find((f) => f.startsWith('.download-')) : undefined;
      }
      child.kill('SIGKILL');
      await exited;
      expect(temp).toMatch(/^\.download-[0-9a-f]{12}\.\d+\.[0-9a-f]{12}\.tmp$/);
      expect(strays(h)).toEqual([temp]);

      // Recent: it may be another process's live download, so it stays.
      expect(await removeStaleTemps(h)).toEqual([]);
      age(join(dir, temp!), OLD);
      // The next pull opens the store, removes the leftover, then fails on the stalled server.
      await failsWith(
        pullModel('mnist-winml', h, { baseUrl: stall.base, idleTimeoutMs: 200 }),
        'MODEL_DOWNLOAD_FAILED',
      );
      expect(strays(h)).toEqual([]);
    } finally {
      await stall.close();
    }
  }, 60_000);
});
