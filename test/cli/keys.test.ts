// Secret key files are created, never replaced: `group init` into a folder that already holds some of
// its files refuses before writing anything, and writeKeyFile refuses an existing file.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { keyPairFromSeed } from '../../src/protocol/index.ts';
import { readKeyFile, writeKeyFile } from '../../src/protocol/keyfile.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'dropbear-keys-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('key files are never replaced', () => {
  it('group init refuses a folder holding one of its key files and leaves it as it was', () => {
    const dir = join(tmp, 'group');
    mkdirSync(join(dir, 'keys'), { recursive: true });
    const mine = join(dir, 'keys', 'client.json');
    writeFileSync(mine, '{"mine": true}\n', { mode: 0o644 });
    const r = spawnSync(
      process.execPath,
      ['bin/dropbear.mjs', 'group', 'init', '--dir', dir, '--models', 'standin,standin,standin,standin'],
      { cwd: ROOT, encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /^error \[CLI_USAGE\]: .* already holds keys\/client\.json; choose an empty folder/,
    );
    expect(readFileSync(mine, 'utf8')).toBe('{"mine": true}\n');
    expect(statSync(mine).mode & 0o777).toBe(0o644);
    expect(readdirSync(dir).sort()).toEqual(['keys']);
    expect(readdirSync(join(dir, 'keys'))).toEqual(['client.json']);
  });

  it('writeKeyFile refuses an existing file (KEY_FILE_EXISTS) and writes new ones 0600', () => {
    const a = keyPairFromSeed(new Uint8Array(32).fill(1));
    const b = keyPairFromSeed(new Uint8Array(32).fill(2));
    const file = join(tmp, 'k.json');
    writeKeyFile(file, a);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(() => writeKeyFile(file, b)).toThrow(expect.objectContaining({ code: 'KEY_FILE_EXISTS' }));
    expect(readKeyFile(file).publicKey).toEqual(a.publicKey);
    expect(() => writeKeyFile(join(tmp, 'no-such-dir', 'k.json'), a)).toThrow(
      expect.objectContaining({ code: 'KEY_FILE_UNWRITABLE' }),
    );
  });
});
