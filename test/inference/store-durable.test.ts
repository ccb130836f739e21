/**
 * A model or index lands durably: temp file synced, renamed, then the models folder synced, and the model's
 * rename is durable before the index that names it is written. A power cut cannot be staged in a test, so
 * node:fs/promises is wrapped to record, in order, every rename and every sync with the path it was on.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { importModels, modelsDir, pullModel } from '../../src/inference/store.ts';
import { MODELS_DIR } from '../shared.ts';
import { serve } from './store-fixtures.ts';

/** `rename:<destination file name>` and `sync:<path>` in the order they happened. */
const events = vi.hoisted(() => [] as string[]);
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const open = (async (path: Parameters<typeof real.open>[0], ...rest: unknown[]) => {
    const fh = await (real.open as (...a: unknown[]) => Promise<Awaited<ReturnType<typeof real.open>>>)(
      path,
      ...rest,
    );
    const sync = fh.sync.bind(fh);
    fh.sync = async () => {
      await sync();
      events.push(`sync:${String(path)}`);
    };
    return fh;
  }) as typeof real.open;
  const rename = (async (from: string, to: string) => {
    await real.rename(from, to);
    events.push(`rename:${basename(String(to))}`);
  }) as typeof real.rename;
  return { ...real, open, rename, default: { ...real, open, rename } };
});

const MNIST = catalogByName('mnist-winml')!;

let tmp: string;
let n = 0;
const freshHome = () => join(tmp, `home${n++}`);

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'dropbear-store-durable-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  events.length = 0;
});

/** What a write into `home`'s store must show: the model renamed and its folder synced, then the index. */
function expectDurable(home: string): void {
  const dir = modelsDir(home);
  const model = events.indexOf(`rename:${MNIST.sha256}.onnx`);
  const index = events.indexOf('rename:index.json');
  expect(model, events.join('\n')).toBeGreaterThanOrEqual(0);
  expect(index).toBeGreaterThan(model);
  // The folder is synced after the model's rename and before the index's: the index never names a model
  // whose name a power cut could take back.
  expect(events.slice(model + 1, index)).toContain(`sync:${dir}`);
  expect(events.slice(index + 1)).toContain(`sync:${dir}`);
}

describe('a model lands durably', () => {
  it('import: model renamed, folder synced, index renamed, folder synced', async () => {
    const h = freshHome();
    await importModels(join(MODELS_DIR, 'mnist-winml.onnx'), h);
    expectDurable(h);
  });

  it('pull: the same', async () => {
    const bytes = readFileSync(join(MODELS_DIR, 'mnist-winml.onnx'));
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': bytes.length }).end(bytes);
    });
    try {
      const h = freshHome();
      expect((await pullModel('mnist-winml', h, { baseUrl: server.base })).downloaded).toBe(true);
      expectDurable(h);
    } finally {
      await server.close();
    }
  });
});
