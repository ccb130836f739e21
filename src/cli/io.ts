import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { replaceFile } from '../protocol/files.ts';
import {
  CodecError,
  DropbearError,
  fromJson,
  Genesis,
  genesisProblem,
  kindHint,
  parseJsonFile,
  writeFailure,
} from '../protocol/index.ts';
import { usageError } from './errors.ts';

export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new DropbearError('FILE_UNREADABLE', `cannot read ${path}: ${(e as Error).message}`);
  }
  let parsed: ReturnType<typeof parseJsonFile>;
  try {
    parsed = parseJsonFile(text);
  } catch (e) {
    throw new DropbearError('FILE_BAD_JSON', `${path} is not JSON: ${(e as Error).message}`);
  }
  // JSON.parse keeps the last of two equal keys, other readers the first: such a file reads two ways.
  if (parsed.repeated)
    throw new DropbearError(
      'FILE_BAD_JSON',
      `${path} repeats a key (${parsed.repeated}), so it reads two ways`,
    );
  return parsed.value;
}

export function readGenesis(path: string): Genesis {
  let genesis: Genesis;
  const value = readJsonFile(path);
  try {
    genesis = fromJson(Genesis, value);
  } catch (e) {
    if (e instanceof CodecError)
      throw new DropbearError(
        'GENESIS_INVALID',
        `${path}: ${e.message}${kindHint(value, 'a group genesis')}`,
      );
    throw e;
  }
  const problem = genesisProblem(genesis);
  if (problem) throw new DropbearError('GENESIS_INVALID', `${path}: ${problem}`);
  return genesis;
}

/**
 * Output paths, checked before the work that fills them: a folder given where a file goes, a file where a
 * folder goes, or a folder that does not exist ended `sim --out`, `eval --json`, `group init --dir` and
 * `infer --out` with a bare `ENOTDIR`/`ENOENT` and no code, `sim` and `eval` after the whole run.
 */

/** Makes `dir` and its parents for output; FILE_UNWRITABLE naming the option when it cannot. */
export function makeOutputDir(option: string, dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'EEXIST'
        ? 'is a file, not a folder'
        : code === 'ENOTDIR'
          ? 'cannot be made: a folder above it is a file'
          : `cannot be made (${(e as Error).message})`;
    throw new DropbearError('FILE_UNWRITABLE', `${option} ${dir} ${why}; name a folder, or a new path`);
  }
}

/** That `file` can be written later: its folder exists and it is not itself a folder; else FILE_UNWRITABLE. */
export function checkOutputFile(option: string, file: string): void {
  const parent = dirname(resolve(file));
  let isDir = false;
  try {
    isDir = statSync(parent).isDirectory();
  } catch {}
  if (!isDir)
    throw new DropbearError(
      'FILE_UNWRITABLE',
      `${option} ${file}: ${parent} is not a folder; create it first, or name a file in an existing folder`,
    );
  if (existsSync(file) && statSync(file).isDirectory())
    throw new DropbearError('FILE_UNWRITABLE', `${option} ${file} is a folder; name a file`);
}

/**
 * Writes `file` whole or not at all: a temporary file beside it, synced and renamed over it, then the
 * folder synced, so a full disk, a Ctrl-C or a power cut leaves the old file or none, never half of the new
 * one. FILE_UNWRITABLE when it cannot, saying why (ENOSPC: "the disk is full") with the system's code in
 * `details.errno`.
 */
export function writeOutputFile(file: string, data: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    replaceFile(file, data, tmp, 'best-effort');
  } catch (e) {
    // The error names the temporary file: say the file asked for, and why.
    const { errno, why } = writeFailure(e);
    throw new DropbearError('FILE_UNWRITABLE', `cannot write ${file}: ${why.split(tmp).join(file)}`, {
      path: file,
      errno,
    });
  }
}

export function stableJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/**
 * `--home`: a folder. An empty one (`--home "$UNSET"`) was the current folder: `models pull` wrote a store
 * into ./models, where the node config's `"home": ""` is refused.
 */
export function parseHome(text: string): string {
  if (text.trim() === '')
    throw usageError(
      `--home must name a folder, got ${JSON.stringify(text)}; leave it out for $DROPBEAR_HOME (else ~/.dropbear)`,
    );
  return text;
}
