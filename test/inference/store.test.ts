/**
 * The model store against the real model files in shared/models, real onnxruntime-node sessions and a real
 * HTTP server on 127.0.0.1 standing in for the public hosts. Homes live under the OS temp folder.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOG, catalogByName } from '../../src/inference/catalog.ts';
import {
  importModels,
  indexPath,
  listModels,
  modelsDir,
  pullModel,
  readIndex,
  requireDigest,
  resolveModel,
  storedPath,
  verifyStoredModel,
} from '../../src/inference/store.ts';
import type { DropbearError } from '../../src/protocol/index.ts';
import { MODELS_DIR } from '../shared.ts';
import { failsWith, type Handler, serve, strays, type TestServer } from './store-fixtures.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SHARED = MODELS_DIR;
const MNIST = catalogByName('mnist-winml')!;
const SQUEEZE = catalogByName('squeezenet1.1-fp16-winml')!;
const MNV2 = catalogByName('mobilenetv2-12-int8')!;

let tmp: string;
let n = 0;
const freshHome = () => join(tmp, `home${n++}`);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A valid ONNX file that is not in the catalog: the real MNIST model plus a ModelProto doc_string (field 6). */
function unknownModel(path: string): Buffer {
  const doc = Buffer.from('a private copy of the MNIST model');
  const bytes = Buffer.concat([
    readFileSync(join(SHARED, 'mnist-winml.onnx')),
    Buffer.from([0x32, doc.length]),
    doc,
  ]);
  writeFileSync(path, bytes);
  return bytes;
}

/** Serves the real model files under /mirror/<catalog URL file name>. */
const realFiles: Record<string, string> = {
  'mnist.onnx': join(SHARED, 'mnist-winml.onnx'),
  'SqueezeNet_fp16.onnx': join(SHARED, 'squeezenet1.1-fp16-winml.onnx'),
};
const mirror: Handler = (req, res) => {
  const file = realFiles[(req.url ?? '').replace(/^\/mirror\//, '')];
  if (!file) {
    res.writeHead(404).end('not found');
    return;
  }
  const body = readFileSync(file);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
};

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'dropbear-store-test-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('import', () => {
  let home: string;
  beforeAll(() => {
    home = freshHome();
  });

  it('imports the real folder: all 9 models under their catalog names and digests', async () => {
    const got = await importModels(SHARED, home);
    expect(got).toHaveLength(9);
    expect(got.every((m) => m.added && m.specFrom === 'catalog')).toBe(true);
    expect(got.map((m) => m.name).sort()).toEqual(CATALOG.map((m) => m.name).sort());
    const index = await readIndex(home);
    expect(Object.keys(index.models).sort()).toEqual(CATALOG.map((m) => m.name).sort());
    for (const spec of CATALOG) {
      const e = index.models[spec.name];
      expect(e.sha256).toBe(spec.sha256);
      expect(e.bytes).toBe(spec.bytes);
      expect(e.spec).toEqual(JSON.parse(JSON.stringify(spec)));
      // The stored bytes really hash to the name they are stored under.
      expect(sha(readFileSync(storedPath(spec.sha256, home)))).toBe(spec.sha256);
    }
    expect(readdirSync(modelsDir(home)).sort()).toEqual(
      ['index.json', ...CATALOG.map((m) => `${m.sha256}.onnx`)].sort(),
    );
  });

  it('a second import of the same folder changes nothing', async () => {
    const before = readFileSync(indexPath(home), 'utf8');
    const got = await importModels(SHARED, home);
    expect(got).toHaveLength(9);
    expect(got.filter((m) => m.added)).toEqual([]);
    expect(readFileSync(indexPath(home), 'utf8')).toBe(before);
    expect(readdirSync(modelsDir(home))).toHaveLength(10);
  });

  it('a catalog model under another file name still gets its catalog name', async () => {
    const d = join(tmp, 'renamed');
    mkdirSync(d);
    copyFileSync(join(SHARED, 'mnist-winml.onnx'), join(d, 'digits.onnx'));
    const h = freshHome();
    const [m] = await importModels(join(d, 'digits.onnx'), h);
    expect(m).toMatchObject({ name: 'mnist-winml', sha256: MNIST.sha256, added: true, specFrom: 'catalog' });
    expect(Object.keys((await readIndex(h)).models)).toEqual(['mnist-winml']);
  });

  it('lists name, digest, input, size and preprocessing', async () => {
    const rows = await listModels(home);
    expect(rows.map((r) => r.name)).toEqual(CATALOG.map((m) => m.name).sort((a, b) => a.localeCompare(b)));
    const by = (name: string) => rows.find((r) => r.name === name)!;
    expect(by('mobilenetv2-12-int8')).toMatchObject({
      sha256: MNV2.sha256,
      bytes: 3_655_033,
      input: 'float32[N,3,224,224]',
      preprocess: 'RGB resize 256 crop 224, (p/255-[0.485,0.456,0.406])/[0.229,0.224,0.225]',
      labels: 'imagenet1k',
    });
    expect(by('squeezenet1.1-fp16-winml')).toMatchObject({
      input: 'float16[1,3,224,224]',
      preprocess: 'BGR resize 256 crop 224, p-[103.939,116.779,123.68]',
    });
    expect(by('mobilenet_v1_0.25_128_quant')).toMatchObject({
      input: 'float32[N,3,128,128]',
      preprocess: 'RGB resize 146 crop 128, raw 0..255',
    });
    expect(by('mnist-winml')).toMatchObject({ input: 'float32[1,1,28,28]', preprocess: 'grey 28x28, p/255' });
    expect(await listModels(freshHome())).toEqual([]);
  });

  it('resolves by name, full digest and digest prefix; unknown names say how to add them', async () => {
    const r = await resolveModel('shufflenet-v2-12-qdq', home);
    expect(r.sha256).toBe('7c536d02e2f6af9569e5f3c7a4d8282060072119524c93c8da71e63876b4722b');
    expect(r.path).toBe(storedPath(r.sha256, home));
    expect(r.spec.input.shape).toEqual([1, 3, 224, 224]);
    expect((await resolveModel(r.sha256, home)).spec.name).toBe('shufflenet-v2-12-qdq');
    expect((await resolveModel(r.sha256.slice(0, 10), home)).spec.name).toBe('shufflenet-v2-12-qdq');
    const e = await failsWith(resolveModel('resnet50', home), 'MODEL_NOT_FOUND');
    expect(e.message).toContain('models import');
    expect(e.message).toContain('models pull');
    await failsWith(resolveModel('deadbeefdeadbeef', home), 'MODEL_NOT_FOUND');
  });

  it('requireDigest passes the right digest and refuses another, naming both', async () => {
    const path = storedPath(MNIST.sha256, home);
    expect(await requireDigest(path, MNIST.sha256)).toBe(MNIST.sha256);
    const e = await failsWith(requireDigest(path, SQUEEZE.sha256), 'MODEL_DIGEST_MISMATCH');
    expect(e.message).toContain(MNIST.sha256);
    expect(e.message).toContain(SQUEEZE.sha256);
  });

  it('verifyStoredModel catches a stored file that was changed on disk', async () => {
    const h = freshHome();
    await importModels(join(SHARED, 'mnist-winml.onnx'), h);
    await verifyStoredModel('mnist-winml', h);
    const p = storedPath(MNIST.sha256, h);
    const b = readFileSync(p);
    b[b.length - 1] ^= 1;
    writeFileSync(p, b);
    const e = await failsWith(verifyStoredModel('mnist-winml', h), 'MODEL_DIGEST_MISMATCH');
    expect(e.message).toContain(sha(b));
  });
});

describe('import of models not in the catalog', () => {
  it('names it after the file and reads the spec from the model; idempotent', async () => {
    const d = join(tmp, 'unknown');
    mkdirSync(d);
    const bytes = unknownModel(join(d, 'my-digits.onnx'));
    writeFileSync(join(d, 'notes.txt'), 'not a model'); // ignored: not *.onnx
    const h = freshHome();
    const [m] = await importModels(d, h);
    expect(m).toMatchObject({
      name: 'my-digits',
      sha256: sha(bytes),
      bytes: bytes.length,
      specFrom: 'derived',
    });
    const r = await resolveModel('my-digits', h);
    expect(r.spec).toMatchObject({
      name: 'my-digits',
      sha256: sha(bytes),
      input: { name: 'Input3', dtype: 'float32', shape: [1, 1, 28, 28] },
      output: { name: 'Plus214_Output_0', dtype: 'float32', shape: [1, 10] },
      preprocess: { kind: 'tensor' },
      labels: 'none',
    });
    expect(r.spec.url).toBeUndefined();
    const before = readFileSync(indexPath(h), 'utf8');
    const [again] = await importModels(join(d, 'my-digits.onnx'), h);
    expect(again.added).toBe(false);
    expect(readFileSync(indexPath(h), 'utf8')).toBe(before);
    expect((await listModels(h))[0]).toMatchObject({
      input: 'float32[1,1,28,28]',
      preprocess: 'tensor (client sends the input)',
    });
  });

  it('with a catalog that lacks them, real models get derived specs (symbolic batch → N, float16)', async () => {
    const h = freshHome();
    const got = await importModels(join(SHARED, 'squeezenet1.1-fp16-winml.onnx'), h, { catalog: [] });
    expect(got[0]).toMatchObject({ name: 'squeezenet1.1-fp16-winml', specFrom: 'derived' });
    await importModels(join(SHARED, 'mobilenetv2-12-int8.onnx'), h, { catalog: [] });
    const rows = await listModels(h);
    expect(rows.map((r) => [r.name, r.input])).toEqual([
      ['mobilenetv2-12-int8', 'float32[N,3,224,224]'],
      ['squeezenet1.1-fp16-winml', 'float16[1,3,224,224]'],
    ]);
  });

  it('refuses a model with a symbolic dimension past the batch one ([N, C]: inputs were cut to one value)', async () => {
    // A minimal ONNX model (protobuf written by hand): y = Softmax(x), x and y of shape [N, C].
    const varint = (n: number) => {
      const o: number[] = [];
      while (n > 127) {
        o.push((n & 127) | 128);
        n >>>= 7;
      }
      o.push(n);
      return o;
    };
    const key = (f: number, wt: number) => varint((f << 3) | wt);
    const ld = (f: number, b: number[]) => [...key(f, 2), ...varint(b.length), ...b];
    const str = (f: number, t: string) => ld(f, [...Buffer.from(t)]);
    const int = (f: number, v: number) => [...key(f, 0), ...varint(v)];
    const dim = (p: string) => ld(1, str(2, p));
    const valueInfo = (name: string) => [
      ...str(1, name),
      ...ld(2, ld(1, [...int(1, 1), ...ld(2, [...dim('N'), ...dim('C')])])),
    ];
    const axis = ld(5, [...str(1, 'axis'), ...key(3, 0), ...varint(1), ...int(20, 2)]);
    const node = [...str(1, 'x'), ...str(2, 'y'), ...str(4, 'Softmax'), ...axis];
    const graph = [...ld(1, node), ...str(2, 'g'), ...ld(11, valueInfo('x')), ...ld(12, valueInfo('y'))];
    const model = [...int(1, 7), ...ld(8, [...str(1, ''), ...int(2, 13)]), ...ld(7, graph)];
    const d = join(tmp, 'symbolic');
    mkdirSync(d);
    writeFileSync(join(d, 'symsoftmax.onnx'), Buffer.from(model));
    const h = freshHome();
    const e = await importModels(join(d, 'symsoftmax.onnx'), h).then(
      () => null,
      (err: unknown) => err as DropbearError,
    );
    expect(e?.code).toBe('MODEL_UNSUPPORTED');
    expect(e?.message).toMatch(
      /the input x has shape \[\?, \?\]; only its first \(batch\) dimension may be symbolic/,
    );
    expect(await listModels(h)).toEqual([]);
  });

  it('refuses a file name that is not a model name ("__proto__" keyed the index\'s prototype); an unknown name is MODEL_NOT_FOUND', async () => {
    const d = join(tmp, 'badname');
    mkdirSync(d);
    unknownModel(join(d, '__proto__.onnx'));
    const h = freshHome();
    const e = await importModels(join(d, '__proto__.onnx'), h).then(
      () => null,
      (err: unknown) => err as DropbearError,
    );
    expect(e?.code).toBe('MODEL_NAME_INVALID');
    for (const n of ['__proto__', 'toString'])
      expect(
        await resolveModel(n, h).then(
          () => 'ok',
          (err: DropbearError) => err.code,
        ),
      ).toBe('MODEL_NOT_FOUND');
  });

  it('two imports at once both land in the index (each wrote back the index it had read first: one was lost)', async () => {
    const h = freshHome();
    const got = await Promise.all([
      importModels(join(SHARED, 'mnist-winml.onnx'), h),
      importModels(join(SHARED, 'mobilenet_v1_0.25_128_quant.onnx'), h),
    ]);
    expect(got.map((g) => g[0].added)).toEqual([true, true]);
    expect(Object.keys((await readIndex(h)).models).sort()).toEqual([
      'mnist-winml',
      'mobilenet_v1_0.25_128_quant',
    ]);
    expect(existsSync(join(h, 'models', 'index.lock'))).toBe(false);
  });

  it('refuses a file that is not ONNX and leaves nothing behind', async () => {
    const p = join(tmp, 'junk.onnx');
    writeFileSync(p, 'this is not a protobuf at all');
    const h = freshHome();
    const e = await failsWith(importModels(p, h), 'MODEL_INVALID');
    expect(e.message).toContain(p);
    // Not the store's temp file, which onnxruntime's own message named (and which is gone by now).
    expect(e.message).not.toMatch(/\.import\.\d+\.[0-9a-f]{12}\.tmp/);
    expect(readdirSync(modelsDir(h))).toEqual([]);
  });

  it('refuses a different file that carries a catalog name', async () => {
    const d = join(tmp, 'impostor');
    mkdirSync(d);
    unknownModel(join(d, 'mnist-winml.onnx'));
    const h = freshHome();
    const e = await failsWith(importModels(d, h), 'MODEL_NAME_CONFLICT');
    expect(e.message).toContain(MNIST.sha256);
    expect(readdirSync(modelsDir(h))).toEqual([]);
  });

  // An empty file got onnxruntime's "model.cc:187 onnxruntime::Model::Model(...)"; a copy of a catalog model
  // cut short (a download that stopped) was told "it is not that model — rename the file", which imports a
  // broken prefix under another name or fails again.
  it('an empty file says it is empty; a cut-short copy of a catalog model says to get it again, not to rename it', async () => {
    const d = join(tmp, 'damaged-copies');
    mkdirSync(d);
    writeFileSync(join(d, 'empty.onnx'), '');
    const h = freshHome();
    const e = await failsWith(importModels(join(d, 'empty.onnx'), h), 'MODEL_INVALID');
    expect(e.message).toContain('is empty');
    writeFileSync(
      join(d, 'mnist-winml.onnx'),
      readFileSync(join(SHARED, 'mnist-winml.onnx')).subarray(0, 1000),
    );
    const c = await failsWith(importModels(join(d, 'mnist-winml.onnx'), h), 'MODEL_NAME_CONFLICT');
    expect(c.message).toContain(`1000 bytes, the catalog's file has ${MNIST.bytes}`);
    expect(c.message).toContain('npx dropbear models pull mnist-winml');
    expect(readdirSync(modelsDir(h))).toEqual([]);
  });

  it('a missing path or a folder without models is a clear error', async () => {
    await failsWith(importModels(join(tmp, 'nope'), freshHome()), 'MODEL_PATH_NOT_FOUND');
    const empty = join(tmp, 'empty');
    mkdirSync(empty);
    await failsWith(importModels(empty, freshHome()), 'MODEL_NONE_FOUND');
  });
});

describe('pull', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await serve(mirror);
  });
  afterAll(async () => {
    await server.close();
  });

  it('downloads from the (stand-in) host, checks the digest and stores it; a second pull fetches nothing', async () => {
    const h = freshHome();
    const progress: [number, number][] = [];
    const r = await pullModel('squeezenet1.1-fp16-winml', h, {
      baseUrl: server.base,
      onProgress: (done, total) => progress.push([done, total]),
    });
    expect(r).toMatchObject({ sha256: SQUEEZE.sha256, bytes: SQUEEZE.bytes, downloaded: true });
    expect(r.url).toBe(`${server.base}SqueezeNet_fp16.onnx`);
    expect(server.hits).toContain('/mirror/SqueezeNet_fp16.onnx');
    expect(sha(readFileSync(storedPath(SQUEEZE.sha256, h)))).toBe(SQUEEZE.sha256);
    expect((await resolveModel('squeezenet1.1-fp16-winml', h)).spec.preprocess).toEqual(SQUEEZE.preprocess);
    expect(progress.length).toBeGreaterThan(2);
    expect(progress.at(-1)).toEqual([SQUEEZE.bytes, SQUEEZE.bytes]);
    expect(strays(h)).toEqual([]);

    const hits = server.hits.length;
    const again = await pullModel('squeezenet1.1-fp16-winml', h, { baseUrl: server.base });
    expect(again.downloaded).toBe(false);
    expect(server.hits.length).toBe(hits);
  });

  it('does not download a model that was imported from a folder', async () => {
    const h = freshHome();
    await importModels(join(SHARED, 'mnist-winml.onnx'), h);
    const hits = server.hits.length;
    expect((await pullModel('mnist-winml', h, { baseUrl: server.base })).downloaded).toBe(false);
    expect(server.hits.length).toBe(hits);
  });

  it('refuses bytes whose digest differs from the catalog: temp file gone, nothing indexed', async () => {
    const wrong = Buffer.from(readFileSync(join(SHARED, 'mnist-winml.onnx')));
    wrong[100] ^= 0xff; // same size, other digest
    const evil = await serve((_req, res) =>
      res.writeHead(200, { 'content-length': wrong.length }).end(wrong),
    );
    try {
      const h = freshHome();
      const e = await failsWith(pullModel('mnist-winml', h, { baseUrl: evil.base }), 'MODEL_DIGEST_MISMATCH');
      expect(e.message).toContain(MNIST.sha256);
      expect(e.message).toContain(sha(wrong));
      expect(readdirSync(modelsDir(h))).toEqual([]);
      expect((await readIndex(h)).models).toEqual({});
    } finally {
      await evil.close();
    }
  });

  it('stops a download that runs past the catalog size', async () => {
    const big = Buffer.alloc(MNIST.bytes * 4, 7);
    const evil = await serve((_req, res) => res.writeHead(200).end(big));
    try {
      const h = freshHome();
      await failsWith(pullModel('mnist-winml', h, { baseUrl: evil.base }), 'MODEL_DIGEST_MISMATCH');
      expect(readdirSync(modelsDir(h))).toEqual([]);
    } finally {
      await evil.close();
    }
  });

  it('HTTP 404 is MODEL_DOWNLOAD_FAILED naming the status and URL', async () => {
    const h = freshHome();
    const e = await failsWith(
      pullModel('mnist-winml', h, { urlOverride: `${server.base}missing.onnx` }),
      'MODEL_DOWNLOAD_FAILED',
    );
    expect(e.message).toContain('HTTP 404');
    expect(e.message).toContain(`${server.base}missing.onnx`);
    expect(strays(h)).toEqual([]);
    expect((await readIndex(h)).models).toEqual({});
  });

  it('a server that is down is MODEL_DOWNLOAD_FAILED (connection refused)', async () => {
    const gone = await serve(mirror);
    await gone.close();
    const h = freshHome();
    const e = await failsWith(pullModel('mnist-winml', h, { baseUrl: gone.base }), 'MODEL_DOWNLOAD_FAILED');
    expect(e.message).toContain('ECONNREFUSED');
    expect(strays(h)).toEqual([]);
  });

  it('a server that stops sending is MODEL_DOWNLOAD_FAILED after the idle timeout', async () => {
    const stall = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': MNIST.bytes });
      res.write(Buffer.alloc(1000));
    });
    try {
      const h = freshHome();
      const t0 = Date.now();
      const e = await failsWith(
        pullModel('mnist-winml', h, { baseUrl: stall.base, idleTimeoutMs: 300 }),
        'MODEL_DOWNLOAD_FAILED',
      );
      expect(e.message).toContain('no data for 300 ms');
      expect(Date.now() - t0).toBeLessThan(30_000); // not the 60 s default
      expect(strays(h)).toEqual([]);
    } finally {
      await stall.close();
    }
  });

  it('a model without a public download says to import it from a folder, and why', async () => {
    const e = await failsWith(
      pullModel('mobilenet_v1_0.25_128_quant', freshHome(), { baseUrl: server.base }),
      'MODEL_NO_DOWNLOAD',
    );
    expect(e.message).toContain('npx dropbear models import DIR');
    expect(e.message).toContain('TFLite');
    const u = await failsWith(pullModel('resnet50', freshHome()), 'MODEL_UNKNOWN');
    expect(u.message).toContain('mobilenetv2-12-int8');
  });
});

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}
function cli(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/dropbear.mjs', ...args], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('dropbear models (child process)', () => {
  it('import, then list as a table and as JSON', async () => {
    const h = freshHome();
    const imp = await cli(['models', 'import', SHARED, '--home', h]);
    expect(imp.stderr).toBe('');
    expect(imp.code).toBe(0);
    expect(imp.stdout).toContain('9 added, 0 already present');
    const list = await cli(['models', 'list', '--home', h]);
    expect(list.code).toBe(0);
    const lines = list.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+SHA256\s+INPUT\s+SIZE\s+PREPROCESS$/);
    expect(lines).toHaveLength(10);
    expect(lines.find((l) => l.startsWith('mobilenetv2-12-int8 '))).toMatch(
      /^mobilenetv2-12-int8\s+cc028fe6cae7bc11\s+float32\[N,3,224,224\]\s+3\.5 MiB\s+RGB resize 256 crop 224/,
    );
    const json = await cli(['models', 'list', '--json'], { DROPBEAR_HOME: h });
    const rows = JSON.parse(json.stdout) as { name: string; sha256: string }[];
    expect(rows.map((r) => r.sha256).sort()).toEqual(CATALOG.map((m) => m.sha256).sort());
  });

  it('pull through DROPBEAR_CATALOG_BASE_URL prints a few progress lines (not a TTY); errors say what to do', async () => {
    const server = await serve(mirror);
    try {
      const h = freshHome();
      const r = await cli(
        ['models', 'pull', 'squeezenet1.1-fp16-winml', 'mobilenet_v1_0.25_128_quant', '--home', h],
        {
          DROPBEAR_CATALOG_BASE_URL: server.base,
        },
      );
      expect(r.code).toBe(2); // the second has no download
      expect(r.stdout).toBe(
        `pulled: squeezenet1.1-fp16-winml  sha256 ${SQUEEZE.sha256}  ${SQUEEZE.bytes} bytes\n`,
      );
      const progress = r.stderr.split('\n').filter((l) => l.startsWith('squeezenet1.1-fp16-winml: '));
      expect(progress.length).toBeGreaterThanOrEqual(2);
      expect(progress.length).toBeLessThanOrEqual(5);
      expect(progress.at(-1)).toBe('squeezenet1.1-fp16-winml: 2.4/2.4 MiB 100%');
      expect(r.stderr).not.toContain('\r');
      expect(r.stderr).toMatch(
        /error \[MODEL_NO_DOWNLOAD\]: mobilenet_v1_0\.25_128_quant .*models import DIR/,
      );
      expect(sha(readFileSync(storedPath(SQUEEZE.sha256, h)))).toBe(SQUEEZE.sha256);
    } finally {
      await server.close();
    }
  });

  it('every models command has --help with an example; a bad path is a coded error', async () => {
    for (const sub of ['import', 'list', 'pull']) {
      const r = await cli(['models', sub, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Example:\n {2}npx dropbear models /);
    }
    const bad = await cli(['models', 'import', join(tmp, 'nope'), '--home', freshHome()]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error \[MODEL_PATH_NOT_FOUND\]: /);
  });
});
