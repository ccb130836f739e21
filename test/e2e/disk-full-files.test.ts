/**
 * Every file Dropbear writes besides the ledger (test/e2e/disk-full.test.ts), on a really full file system:
 * a small tmpfs that a filler file fills. The model store (`models import|pull`) and the CLI's outputs
 * (`keygen`, `group init`, `verify-page --out`) must fail with a coded error and exit code, leave no
 * half-written file that a later command would take for a whole one, and succeed once there is room.
 *
 * Mounting a tmpfs needs root (CAP_SYS_ADMIN); elsewhere the tests are skipped with a warning, unless
 * DROPBEAR_REQUIRE_TMPFS is set, where they fail instead.
 */
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import {
  importModels,
  modelsDir,
  pullModel,
  readIndex,
  storedPath,
  verifyStoredModel,
} from '../../src/inference/store.ts';
import { failsWith, serve, strays } from '../inference/store-fixtures.ts';
import { MODELS_DIR } from '../shared.ts';

const root = mkdtempSync(join(tmpdir(), 'dropbear-diskfull-files-'));
const full = join(root, 'full');
mkdirSync(full);
const mounted =
  process.getuid?.() === 0 &&
  spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', full]).status === 0;
const required = process.env.DROPBEAR_REQUIRE_TMPFS !== undefined;
if (!mounted && !required)
  console.warn(
    'disk-full-files.test.ts: cannot mount a tmpfs here (needs root): the real-disk tests are skipped',
  );
const onTmpfs = it.skipIf(!mounted && !required);

afterAll(() => {
  if (mounted) spawnSync('umount', [full]);
  rmSync(root, { recursive: true, force: true });
});

/**
 * Fills the file system at `dir` with one file up to its last free byte, then gives back `leave` bytes (a
 * multiple of the 4 KiB page tmpfs counts in); returns the file.
 */
function fillUp(dir: string, leave = 0): string {
  expect(mounted, 'DROPBEAR_REQUIRE_TMPFS is set but no tmpfs could be mounted (run as root)').toBe(true);
  const file = join(dir, 'filler');
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(4096, 0xaa);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOSPC') throw e;
    ftruncateSync(fd, fstatSync(fd).size - leave);
  } finally {
    closeSync(fd);
  }
  return file;
}

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
