/**
 * Every file Dropbear writes besides the ledger (test/e2e/disk-full.test.ts), on a really full file system:
 * a small tmpfs that a filler file fills. The model store (`models import|pull`) and the CLI's outputs
 * (`keygen`, `group init`, `verify-page --out`, `infer --out`) must fail with a coded error and exit code,
 * leave no half-written file that a later command would take for a whole one, and succeed once there is
 * room.
 *
 * Mounting a tmpfs needs root (CAP_SYS_ADMIN); elsewhere the tests are skipped with a warning, unless
 * DROPBEAR_REQUIRE_TMPFS is set, where they fail instead.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect } from 'vitest';
import { type GroupProcesses, initGroup, loadGroup, startGroup } from '../../src/cli/group.ts';
import { catalogByName } from '../../src/inference/catalog.ts';
import {
  importModels,
  modelsDir,
  pullModel,
  readIndex,
  storedPath,
  verifyStoredModel,
} from '../../src/inference/store.ts';
import { STANDIN_MODEL, standInInput } from '../../src/node/standin-backend.ts';
import { runCli } from '../cli/run-cli.ts';
import { failsWith, serve, strays } from '../inference/store-fixtures.ts';
import { MODELS_DIR } from '../shared.ts';
import { smallDisk } from '../support/tmpfs.ts';

const disk = smallDisk('disk-full-files.test.ts', '2m');
const { root, full, onTmpfs } = disk;
const fillUp = (_dir: string, leave = 0) => disk.fillUp(leave);

// A test that failed with the disk full must not leave it full for the next.
afterEach(() => rmSync(join(full, 'filler'), { force: true }));
let procs: GroupProcesses | undefined;
afterAll(async () => {
  await procs?.stop();
  disk.remove();
});

/** A folder of its own on the small file system. */
let folders = 0;
function folder(): string {
  const d = join(full, `t${folders++}`);
  mkdirSync(d);
  return d;
}

// A catalog model (no spec to derive) of 489,904 bytes: seven 64 KiB chunks of a read stream and a last one
// of 31,152 bytes.
const MODEL = catalogByName('mobilenet_v1_0.25_128_quant')!;
const MODEL_FILE = join(MODELS_DIR, `${MODEL.name}.onnx`);
/** Room for the seven whole chunks and four pages of the last: that write is short, not an error. */
const SHORT_BY_TAIL = 7 * 65536 + 4 * 4096;

describe('the model store on a full disk', () => {
  onTmpfs(
    'an import that fills the disk part-way through a write leaves no truncated file under the digest',
    async () => {
      const home = folder();
      mkdirSync(modelsDir(home), { recursive: true });
      const filler = fillUp(full, SHORT_BY_TAIL);
      const e = await failsWith(importModels(MODEL_FILE, home), 'MODEL_STORE_WRITE_FAILED');
      expect(e.details).toMatchObject({ errno: 'ENOSPC' });
      expect(e.message).toMatch(/the disk is full/);
      // Before: the short write was taken as whole, the copy hashed from the source and renamed under its
      // digest, 16 KiB short.
      expect(existsSync(storedPath(MODEL.sha256, home))).toBe(false);
      expect(strays(home)).toEqual([]); // no temp file, no index.lock
      expect((await readIndex(home)).models).toEqual({});

      unlinkSync(filler);
      const [r] = await importModels(MODEL_FILE, home);
      expect(r).toMatchObject({ name: MODEL.name, added: true });
      await verifyStoredModel(MODEL.name, home);
      rmSync(home, { recursive: true });
    },
  );

  onTmpfs(
    'a pull that fills the disk part-way through a write leaves no truncated file under the digest',
    async () => {
      const bytes = readFileSync(MODEL_FILE);
      // One write of the whole body: the disk fills part-way through it.
      const server = await serve((_req, res) => {
        res.writeHead(200, { 'content-length': bytes.length }).end(bytes);
      });
      try {
        const home = folder();
        mkdirSync(modelsDir(home), { recursive: true });
        const filler = fillUp(full, SHORT_BY_TAIL);
        const url = `${server.base}${MODEL.name}.onnx`;
        const e = await failsWith(
          pullModel(MODEL.name, home, { urlOverride: url }),
          'MODEL_STORE_WRITE_FAILED',
        );
        expect(e.details).toMatchObject({ errno: 'ENOSPC' });
        expect(existsSync(storedPath(MODEL.sha256, home))).toBe(false);
        expect(strays(home)).toEqual([]);

        unlinkSync(filler);
        const r = await pullModel(MODEL.name, home, { urlOverride: url });
        expect(r.downloaded).toBe(true);
        await verifyStoredModel(MODEL.name, home);
        rmSync(home, { recursive: true });
      } finally {
        await server.close();
      }
    },
  );

  onTmpfs(
    'an import onto a disk with no room at all releases index.lock and leaves nothing behind',
    async () => {
      const home = folder();
      const filler = fillUp(full);
      await failsWith(importModels(MODEL_FILE, home), 'MODEL_STORE_WRITE_FAILED');
      expect(existsSync(modelsDir(home)) ? readdirSync(modelsDir(home)) : []).toEqual([]);
      unlinkSync(filler);
      expect((await importModels(MODEL_FILE, home))[0].added).toBe(true);
      rmSync(home, { recursive: true });
    },
  );
});

/** Every file under `dir` (paths relative to it), folders left out. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => !d.isDirectory())
    .map((d) => join(d.parentPath, d.name).slice(dir.length + 1))
    .sort();
}

const cli = (...args: string[]) => runCli(args, 60_000);

/** A coded error on stderr and exit code 2: no stack trace, no bare system error. */
function codedFailure(r: { code: number | null; stderr: string }, code: string): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr).toMatch(new RegExp(`^error \\[${code}\\]: .*the disk is full`));
  expect(r.stderr).not.toMatch(/^\s+at /m);
}

describe('the CLI on a full disk', () => {
  onTmpfs(
    'keygen: KEY_FILE_UNWRITABLE and no empty key file left; a second try works once there is room',
    async () => {
      const d = folder();
      const key = join(d, 'key.json');
      const filler = fillUp(full);
      codedFailure(await cli('keygen', '--out', key), 'KEY_FILE_UNWRITABLE');
      // Before: an empty key file stayed, and the next keygen said it exists (keys are never overwritten).
      expect(filesUnder(d)).toEqual([]);
      unlinkSync(filler);
      const r = await cli('keygen', '--out', key);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(readFileSync(key, 'utf8')).kind).toBe('ed25519');
    },
  );

  onTmpfs(
    'group init: the disk fills after the keys, and the folder is left as it was; once there is room it works',
    async () => {
      const d = folder();
      const group = join(d, 'group');
      const args = ['group', 'init', '--dir', group, '--models', Array(4).fill(STANDIN_MODEL).join(',')];
      // Room for the six key files (a page each), not for the genesis.
      const filler = fillUp(full, 6 * 4096);
      const r = await cli(...args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^error \[FILE_UNWRITABLE\]: cannot write .*genesis\.json: the disk is full/);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      // Before: six keys and an empty genesis.json stayed; the next init said the folder holds a group.
      expect(filesUnder(group)).toEqual([]);
      unlinkSync(filler);
      const again = await cli(...args);
      expect(again.code, again.stderr).toBe(0);
      expect(filesUnder(group)).toContain('genesis.json');
      expect(filesUnder(group)).toContain('group.json');
    },
  );

  onTmpfs(
    'verify-page --out: FILE_UNWRITABLE, the page there before is kept whole, no temp file left',
    async () => {
      const g = join(root, 'vp-group');
      await initGroup({ dir: g, nodes: 4, models: Array(4).fill(STANDIN_MODEL), name: 'vp' });
      const d = folder();
      const page = join(d, 'verify.html');
      writeFileSync(page, 'the page from before\n');
      const filler = fillUp(full);
      codedFailure(
        await cli('verify-page', '--genesis', join(g, 'genesis.json'), '--out', page),
        'FILE_UNWRITABLE',
      );
      expect(readFileSync(page, 'utf8')).toBe('the page from before\n');
      expect(filesUnder(d)).toEqual(['verify.html']);
      unlinkSync(filler);
      const r = await cli('verify-page', '--genesis', join(g, 'genesis.json'), '--out', page);
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(page, 'utf8')).toMatch(/<html/i);
    },
  );

  onTmpfs(
    'infer --out: FILE_UNWRITABLE, no certificate file, and no request sent after the one it could not save',
    async () => {
      const g = join(root, 'infer-group');
      await initGroup({ dir: g, nodes: 4, models: Array(4).fill(STANDIN_MODEL), name: 'inferfull' });
      const log: string[] = [];
      procs = startGroup(loadGroup(g), (l) => log.push(l));
      await procs.ready(60_000);
      const inputs = [0, 1].map((i) => {
        const f = join(root, `input-${i}.bin`);
        writeFileSync(f, standInInput(i));
        return f;
      });
      const certs = join(folder(), 'certs');
      mkdirSync(certs);
      const filler = fillUp(full);
      const r = await cli('infer', '--group', g, '--out', certs, ...inputs);
      codedFailure(r, 'FILE_UNWRITABLE');
      expect(r.stderr).toMatch(
        /input-0\.bin \(request [0-9a-f]+\) is not saved, and the 1 image\(s\) after it were not sent/,
      );
      // Before: an empty certificate file for each image, each reported as `error [ERROR]: ENOSPC`.
      expect(r.stdout.match(/ request /g)).toHaveLength(1);
      expect(filesUnder(certs)).toEqual([]);
      unlinkSync(filler);
      const again = await cli('infer', '--group', g, '--out', certs, ...inputs);
      expect(again.code, again.stderr).toBe(0);
      const saved = filesUnder(certs);
      expect(saved).toHaveLength(2);
      for (const f of saved)
        expect(JSON.parse(readFileSync(join(certs, f), 'utf8'))).toHaveProperty('receipt');
    },
    120_000,
  );

  onTmpfs('sim --out: FILE_UNWRITABLE and nothing written there', async () => {
    const out = join(folder(), 'sim');
    mkdirSync(out);
    const filler = fillUp(full);
    codedFailure(await cli('sim', '--requests', '3', '--out', out), 'FILE_UNWRITABLE');
    expect(filesUnder(out)).toEqual([]);
    expect(readdirSync(out)).toEqual([]); // nor the staging folder
    unlinkSync(filler);
    const r = await cli('sim', '--requests', '3', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(filesUnder(out)).toContain('genesis.json');
  });
});
