/**
 * The model store as an operator meets it: a hand-edited or damaged index, a folder of symlinked model files,
 * a download that ends early or announces another size, a file imported while it is still being written. Real model files from shared/models, a real HTTP server on 127.0.0.1, homes
 * under the OS temp folder.
 */
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import {
  importModels,
  indexPath,
  listModels,
  pullModel,
  readIndex,
  resolveModel,
} from '../../src/inference/store.ts';
import { runCliInProcess } from '../cli/run-cli.ts';
import { MODELS_DIR } from '../shared.ts';
import { failsWith, serve, strays } from './store-fixtures.ts';

const MNIST = catalogByName('mnist-winml')!;

let tmp: string;
let n = 0;
const freshHome = () => join(tmp, `home${n++}`);

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'dropbear-store-operator-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('a damaged index', () => {
  /** A home whose index holds `models` as written, beside a valid MNIST entry. */
  function homeWith(models: Record<string, unknown> | unknown[]): string {
    const h = freshHome();
    mkdirSync(join(h, 'models'), { recursive: true });
    writeFileSync(indexPath(h), JSON.stringify({ version: 1, models }));
    return h;
  }
  const good = {
    sha256: MNIST.sha256,
    bytes: MNIST.bytes,
    spec: MNIST,
    importedAt: '2026-12-06T00:00:00.000Z',
  };

  it('an entry without a spec, a null entry or a sha256 that is a path is MODEL_STORE_UNREADABLE naming it', async () => {
    const cases: [string, unknown][] = [
      ['no-spec', { sha256: MNIST.sha256, bytes: MNIST.bytes, importedAt: good.importedAt }],
      ['null', null],
      ['escape', { ...good, sha256: '../../../etc/passwd' }],
      ['bad-input', { ...good, spec: { ...MNIST, input: { name: 'x', dtype: 'int8', shape: [1] } } }],
      ['bad-pre', { ...good, spec: { ...MNIST, preprocess: { kind: 'image' } } }],
    ];
    for (const [name, entry] of cases) {
      const h = homeWith({ 'mnist-winml': good, [name]: entry });
      const e = await failsWith(listModels(h), 'MODEL_STORE_UNREADABLE');
      expect(e.message).toContain(`"${name}"`);
      expect(e.message).toContain(indexPath(h));
      // The node reads models through the same index: it gets the same code, never a path outside the store.
      await failsWith(resolveModel(name, h), 'MODEL_STORE_UNREADABLE');
    }
    // `models` as an array is no index either (it listed "no models").
    await failsWith(listModels(homeWith([good])), 'MODEL_STORE_UNREADABLE');
    // A valid index still reads.
    expect((await listModels(homeWith({ 'mnist-winml': good }))).map((r) => r.name)).toEqual(['mnist-winml']);
  });

  it('`models list` prints the code and exits 2, not a TypeError', async () => {
    const h = homeWith({ a: {} });
    const r = await runCliInProcess(['models', 'list', '--home', h]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('MODEL_STORE_UNREADABLE');
    expect(r.stderr).not.toMatch(/Cannot read properties/);
  });

  it('an import into a store with a damaged index refuses and leaves the index as it was', async () => {
    const h = homeWith({ a: {} });
    const before = readFileSync(indexPath(h), 'utf8');
    await failsWith(importModels(join(MODELS_DIR, 'mnist-winml.onnx'), h), 'MODEL_STORE_UNREADABLE');
    expect(readFileSync(indexPath(h), 'utf8')).toBe(before);
  });
});

// `models list` read only the index: a stored file cut short, deleted or replaced by a folder was listed like
// a good one, and the operator learnt of it when a node refused to start.
describe('a store whose files are damaged', () => {
  /** A home whose index names `files` (name → bytes on disk, or null for none; 'dir' for a folder), all with MNIST's spec. */
  function store(files: Record<string, { bytes: Buffer; onDisk: Buffer | null | 'dir' }>): string {
    const h = freshHome();
    mkdirSync(join(h, 'models'), { recursive: true });
    const models: Record<string, unknown> = {};
    for (const [name, f] of Object.entries(files)) {
      const digest = createHash('sha256').update(f.bytes).digest('hex');
      models[name] = {
        sha256: digest,
        bytes: f.bytes.length,
        spec: MNIST,
        importedAt: '2026-12-06T00:00:00.000Z',
      };
      const path = join(h, 'models', `${digest}.onnx`);
      if (f.onDisk === 'dir') mkdirSync(path);
      else if (f.onDisk) writeFileSync(path, f.onDisk);
    }
    writeFileSync(indexPath(h), JSON.stringify({ version: 1, models }));
    // A temp file a killed pull left behind: not a model, not listed.
    writeFileSync(join(h, 'models', '.download-bd5891fdd798.123.0123456789ab.tmp'), 'half');
    return h;
  }
  const bytes = (s: string) => Buffer.from(s.repeat(64));

  it('lists every entry and names what is wrong with each damaged one; --verify re-hashes', async () => {
    const flipped = bytes('d');
    flipped[3] ^= 1;
    const h = store({
      good: { bytes: bytes('a'), onDisk: bytes('a') },
      short: { bytes: bytes('b'), onDisk: bytes('b').subarray(0, 10) },
      gone: { bytes: bytes('c'), onDisk: null },
      flipped: { bytes: bytes('d'), onDisk: flipped },
      folder: { bytes: bytes('e'), onDisk: 'dir' },
    });
    const rows = await listModels(h);
    const problems = Object.fromEntries(rows.map((r) => [r.name, r.problem]));
    expect(problems).toEqual({
      flipped: undefined, // same size: only a re-hash sees it
      folder: expect.stringContaining('not a file'),
      gone: expect.stringContaining('missing'),
      good: undefined,
      short: expect.stringContaining('10 bytes on disk, not 64'),
    });
    const verified = await listModels(h, { verify: true });
    expect(verified.find((r) => r.name === 'flipped')?.problem).toContain('does not hash to its digest');
    expect(verified.find((r) => r.name === 'good')?.problem).toBeUndefined();

    const r = await runCliInProcess(['models', 'list', '--home', h]);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').filter((l) => /^(good|short|gone|flipped|folder) /.test(l))).toHaveLength(5);
    expect(r.stdout).toMatch(/^short .*DAMAGED/m);
    expect(r.stdout).not.toMatch(/^good .*DAMAGED/m);
    expect(r.stderr).toContain('3 of 5 models in the store are damaged: folder, gone, short');
    expect(r.stderr).toContain('models import');
    const v = await runCliInProcess(['models', 'list', '--verify', '--json', '--home', h]);
    expect(v.code).toBe(0);
    const json = JSON.parse(v.stdout) as { name: string; problem?: string }[];
    expect(json.filter((x) => x.problem).map((x) => x.name)).toEqual(['flipped', 'folder', 'gone', 'short']);
  });
});

// A folder with one bad file stopped at it: the files after it were not imported and those before it were,
// without a line saying so (the operator saw only the error).
describe('a folder with one bad file among good ones', () => {
  it('`models import` imports the others, names each bad file with its code, and exits 2', async () => {
    const d = join(tmp, 'one-bad');
    mkdirSync(d);
    writeFileSync(join(d, 'a-empty.onnx'), '');
    writeFileSync(join(d, 'mnist-winml.onnx'), readFileSync(join(MODELS_DIR, 'mnist-winml.onnx')));
    // A subfolder of models is not searched: said so (it was skipped without a word), not imported.
    mkdirSync(join(d, 'more'));
    writeFileSync(join(d, 'more', 'x.onnx'), '');
    mkdirSync(join(d, 'notes'));
    const h = freshHome();
    const r = await runCliInProcess(['models', 'import', d, '--home', h]);
    expect(r.stderr).toContain(
      `note: only ${d} itself is searched; its subfolder more/ holds .onnx files (import it by itself)\n`,
    );
    expect(r.stderr).not.toContain('notes/');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('error [MODEL_INVALID]:');
    expect(r.stderr).toContain(join(d, 'a-empty.onnx'));
    expect(r.stdout).toContain('imported: mnist-winml');
    expect(r.stdout).toContain('1 added, 0 already present, 1 failed');
    expect(Object.keys((await readIndex(h)).models)).toEqual(['mnist-winml']);
    expect(strays(h)).toEqual([]);
  });
});

describe('a folder of symbolic links to model files', () => {
  it('imports the files the links point at (it said "holds no .onnx files"); a broken link is named', async () => {
    const dir = join(tmp, 'links');
    mkdirSync(dir);
    symlinkSync(resolve(MODELS_DIR, 'mnist-winml.onnx'), join(dir, 'mnist-winml.onnx'));
    symlinkSync(resolve(MODELS_DIR, 'squeezenet1.1-fp16-winml.onnx'), join(dir, 'squeeze.onnx'));
    writeFileSync(join(dir, 'README.txt'), 'not a model');
    const h = freshHome();
    const got = await importModels(dir, h);
    expect(got.map((m) => [m.name, m.added])).toEqual([
      ['mnist-winml', true],
      ['squeezenet1.1-fp16-winml', true],
    ]);
    // The store holds a copy, not a link: it stays when the source goes.
    const { path } = await resolveModel('mnist-winml', h);
    expect(lstatSync(path).isFile()).toBe(true);

    symlinkSync(join(tmp, 'no-such-model.onnx'), join(dir, 'broken.onnx'));
    const e = await failsWith(importModels(dir, freshHome()), 'MODEL_PATH_NOT_FOUND');
    expect(e.message).toContain(join(dir, 'broken.onnx'));
  });
});

describe('a download that ends early', () => {
  const bytes = readFileSync(join(MODELS_DIR, 'mnist-winml.onnx'));

  it('a body cut short without a declared length is MODEL_DOWNLOAD_FAILED, not a digest mismatch', async () => {
    // HTTP/1.0 without Content-Length: the body ends where the server closes, so a cut looks like an end.
    const server = await serve((_req, res) => {
      res.socket?.end(Buffer.concat([Buffer.from('HTTP/1.0 200 OK\r\n\r\n'), bytes.subarray(0, 10_000)]));
    });
    try {
      const h = freshHome();
      const e = await failsWith(
        pullModel('mnist-winml', h, { baseUrl: server.base }),
        'MODEL_DOWNLOAD_FAILED',
      );
      expect(e.message).toContain(`ended after 10000 of the catalog's ${MNIST.bytes} bytes`);
      expect(e.message).toMatch(/run the pull again/);
      expect(strays(h)).toEqual([]);
      expect((await readIndex(h)).models).toEqual({});
    } finally {
      await server.close();
    }
  });

  it('a server that declares a shorter length and sends all of it serves another file: MODEL_DIGEST_MISMATCH', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': 10_000 }).end(bytes.subarray(0, 10_000));
    });
    try {
      const h = freshHome();
      await failsWith(pullModel('mnist-winml', h, { baseUrl: server.base }), 'MODEL_DIGEST_MISMATCH');
      expect(strays(h)).toEqual([]);
    } finally {
      await server.close();
    }
  });
});

describe('a server that announces another size than the catalog', () => {
  it('is refused before the body is read; progress counts against the catalog size', async () => {
    const big = Buffer.alloc(MNIST.bytes * 10, 7);
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': big.length }).end(big);
    });
    try {
      const h = freshHome();
      const seen: [number, number][] = [];
      const e = await failsWith(
        pullModel('mnist-winml', h, { baseUrl: server.base, onProgress: (d, t) => seen.push([d, t]) }),
        'MODEL_DIGEST_MISMATCH',
      );
      expect(e.message).toContain(`announces ${big.length} bytes`);
      // Nothing of it was read (the bar showed 0/260 KiB and was cut at 26 KiB).
      expect(seen.filter(([d]) => d > 0)).toEqual([]);
      expect(strays(h)).toEqual([]);
    } finally {
      await server.close();
    }
  });

  it('a pull that succeeds reports progress up to the catalog size', async () => {
    const bytes = readFileSync(join(MODELS_DIR, 'mnist-winml.onnx'));
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': bytes.length }).end(bytes);
    });
    try {
      const seen: [number, number][] = [];
      const r = await pullModel('mnist-winml', freshHome(), {
        baseUrl: server.base,
        onProgress: (d, t) => seen.push([d, t]),
      });
      expect(r.downloaded).toBe(true);
      expect(seen.at(-1)).toEqual([MNIST.bytes, MNIST.bytes]);
      expect(new Set(seen.map(([, t]) => t))).toEqual(new Set([MNIST.bytes]));
    } finally {
      await server.close();
    }
  });
});

describe('importing a file that is still being written', () => {
  it("is MODEL_SOURCE_CHANGED, nothing stored (it stored the moment's prefix, or called it no model)", async () => {
    // A valid model outside the catalog that keeps growing while it is imported: each append is one more
    // ModelProto doc_string (field 6), so every prefix that ends between appends still loads.
    const dir = join(tmp, 'growing');
    mkdirSync(dir);
    const file = join(dir, 'growing.onnx');
    writeFileSync(file, readFileSync(join(MODELS_DIR, 'squeezenet1.1-fp16-winml.onnx')));
    const doc = Buffer.from([0x32, 4, 0x61, 0x62, 0x63, 0x64]);
    const h = freshHome();
    let settled = false;
    const writer = (async () => {
      while (!settled) {
        appendFileSync(file, doc);
        await new Promise((r) => setImmediate(r));
      }
    })();
    const result = importModels(file, h).finally(() => {
      settled = true;
    });
    const e = await failsWith(result, 'MODEL_SOURCE_CHANGED');
    await writer;
    expect(e.message).toContain(file);
    expect(strays(h)).toEqual([]);
    expect((await readIndex(h)).models).toEqual({});
    // Once the file is complete it imports.
    expect((await importModels(file, h)).map((m) => [m.name, m.added])).toEqual([['growing', true]]);
  });
});

// DROPBEAR_CATALOG_BASE_URL (or `baseUrl`) that is not a URL threw the URL parser's TypeError: `models pull`
// printed "error: Invalid URL" with no code and no word of the variable, and stopped before the other names.
describe('a mirror base that is not a URL', () => {
  it('is CATALOG_URL_INVALID naming the variable and the value, nothing written', async () => {
    const h = freshHome();
    for (const base of ['notaurl', 'http://']) {
      const e = await failsWith(pullModel('mnist-winml', h, { baseUrl: base }), 'CATALOG_URL_INVALID');
      expect(e.message).toContain('DROPBEAR_CATALOG_BASE_URL');
      expect(e.message).toContain(JSON.stringify(base));
    }
    expect(strays(h)).toEqual([]);
  });
});
