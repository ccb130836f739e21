/**
 * The model store's integrity under the two things that go wrong in the field: two imports at once that
 * both claim one name, and a stored model file whose bytes no longer hash to its name (a bit flip, a
 * hand edit). Real model files, real onnxruntime-node sessions, a local HTTP server for pulls.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import {
  type ImportedModel,
  importModels,
  pullModel,
  readIndex,
  storedPath,
  verifyStoredModel,
} from '../../src/inference/store.ts';
import { DropbearError } from '../../src/protocol/errors.ts';
import { MODELS_DIR } from '../shared.ts';
import { serve } from './store-fixtures.ts';

const MNIST = catalogByName('mnist-winml')!;
const MNIST_BYTES = readFileSync(join(MODELS_DIR, 'mnist-winml.onnx'));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let tmp: string;
let n = 0;
const freshHome = () => join(tmp, `home${n++}`);

/** A valid ONNX model outside the catalog: MNIST plus a ModelProto doc_string (field 6) of `doc`. */
function privateModel(path: string, doc: string): Buffer {
  const d = Buffer.from(doc);
  const bytes = Buffer.concat([MNIST_BYTES, Buffer.from([0x32, d.length]), d]);
  writeFileSync(path, bytes);
  return bytes;
}

/** Flips one bit of the stored copy of `digest`, as a bad disk or a hand edit would. */
function corrupt(home: string, digest: string): void {
  const p = storedPath(digest, home);
  const b = readFileSync(p);
  b[b.length - 1] ^= 1;
  writeFileSync(p, b);
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'dropbear-store-integrity-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('two imports at once under one name', () => {
  it('one lands, the other is MODEL_NAME_CONFLICT (both said "added" and the index kept only the last)', async () => {
    const a = join(tmp, 'a');
    const b = join(tmp, 'b');
    mkdirSync(a);
    mkdirSync(b);
    const bytesA = privateModel(join(a, 'digits.onnx'), 'owner A');
    const bytesB = privateModel(join(b, 'digits.onnx'), 'owner B');
    const h = freshHome();
    const got = await Promise.allSettled([importModels(a, h), importModels(b, h)]);
    const ok = got.filter((g) => g.status === 'fulfilled') as PromiseFulfilledResult<ImportedModel[]>[];
    const failed = got.filter((g) => g.status === 'rejected') as PromiseRejectedResult[];
    expect(ok).toHaveLength(1);
    expect(failed).toHaveLength(1);
    expect(failed[0].reason).toBeInstanceOf(DropbearError);
    expect((failed[0].reason as DropbearError).code).toBe('MODEL_NAME_CONFLICT');
    const [m] = ok[0].value;
    expect(m.added).toBe(true);
    expect([sha(bytesA), sha(bytesB)]).toContain(m.sha256);
    // The index names the model that was reported as imported.
    expect((await readIndex(h)).models.digits.sha256).toBe(m.sha256);
  });
});

describe('a stored model whose bytes changed', () => {
  it('importing the right file again repairs it (it said "already present" and kept the bad copy)', async () => {
    const h = freshHome();
    await importModels(join(MODELS_DIR, 'mnist-winml.onnx'), h);
    corrupt(h, MNIST.sha256);
    await expect(verifyStoredModel('mnist-winml', h)).rejects.toMatchObject({
      code: 'MODEL_DIGEST_MISMATCH',
    });
    const [again] = await importModels(join(MODELS_DIR, 'mnist-winml.onnx'), h);
    expect(again).toMatchObject({ name: 'mnist-winml', added: false, repaired: true });
    await verifyStoredModel('mnist-winml', h);
    // A sound copy is left as it is, and said to be present.
    const [third] = await importModels(join(MODELS_DIR, 'mnist-winml.onnx'), h);
    expect(third.added).toBe(false);
    expect(third.repaired).toBeUndefined();
    expect(sha(readFileSync(storedPath(MNIST.sha256, h)))).toBe(MNIST.sha256);
  });

  it('importing it under a second file name repairs it too', async () => {
    const h = freshHome();
    await importModels(join(MODELS_DIR, 'mnist-winml.onnx'), h);
    corrupt(h, MNIST.sha256);
    const d = join(tmp, 'renamed');
    mkdirSync(d);
    writeFileSync(join(d, 'digits-copy.onnx'), MNIST_BYTES);
    await importModels(d, h);
    await verifyStoredModel('mnist-winml', h);
  });

  it('pulling it again downloads it anew (it said "already present" and kept the bad copy)', async () => {
    const server = await serve((req, res) => {
      if (req.url === '/mirror/mnist.onnx')
        res
          .writeHead(200, {
            'content-type': 'application/octet-stream',
            'content-length': MNIST_BYTES.length,
          })
          .end(MNIST_BYTES);
      else res.writeHead(404).end('not found');
    });
    try {
      const h = freshHome();
      expect((await pullModel('mnist-winml', h, { baseUrl: server.base })).downloaded).toBe(true);
      corrupt(h, MNIST.sha256);
      const again = await pullModel('mnist-winml', h, { baseUrl: server.base });
      expect(again.downloaded).toBe(true);
      await verifyStoredModel('mnist-winml', h);
      expect(server.hits).toEqual(['/mirror/mnist.onnx', '/mirror/mnist.onnx']);
    } finally {
      await server.close();
    }
  });
});
