// Secret key files are created, never replaced: `group init` into a folder that already holds some of
// its files refuses before writing anything, and writeKeyFile refuses an existing file. They are read only
// when their owner alone may read and write them: a seed that group or others can read is refused
// (KEY_FILE_PERMISSIONS) before a byte of it is read, and a node started on one exits saying so. The
// node's TLS private key is held to the same rule.
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { initGroup } from '../../src/cli/group.ts';
import { startNode } from '../../src/node/run.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';
import { keyPairFromSeed } from '../../src/protocol/index.ts';
import { readKeyFile, writeKeyFile } from '../../src/protocol/keyfile.ts';
import { haveOpenssl, selfSignedCert } from '../support/tls.ts';

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

// Windows' mode bits do not describe its ACLs: the rule is POSIX only.
describe.skipIf(process.platform === 'win32')('secret key files others can read are refused', () => {
  const seed = new Uint8Array(32).fill(3);
  const k = keyPairFromSeed(seed);

  // A key file with exactly `mode` (chmod, so the umask does not decide).
  function keyFileWithMode(name: string, mode: number, text?: string): string {
    const file = join(tmp, name);
    if (text === undefined) writeKeyFile(file, k);
    else writeFileSync(file, text);
    chmodSync(file, mode);
    return file;
  }

  it.each(['0644', '0640', '0604', '0620'])(
    'mode %s: KEY_FILE_PERMISSIONS naming the file, its mode and the fix',
    (octal) => {
      const file = keyFileWithMode(`open-${octal}.json`, Number.parseInt(octal, 8));
      let err: unknown;
      try {
        readKeyFile(file);
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: 'KEY_FILE_PERMISSIONS', details: { file, mode: octal } });
      const message = (err as Error).message;
      expect(message).toContain(`${file} has mode ${octal}`);
      expect(message).toContain(`chmod 600 ${file}`);
      expect(message).not.toContain(Buffer.from(seed).toString('hex'));
    },
  );

  it('refuses before reading: an open file that is not even JSON is refused for its mode, not its content', () => {
    const file = keyFileWithMode('open-garbage.json', 0o644, 'not a key file at all');
    expect(() => readKeyFile(file)).toThrow(expect.objectContaining({ code: 'KEY_FILE_PERMISSIONS' }));
    chmodSync(file, 0o600);
    expect(() => readKeyFile(file)).toThrow(expect.objectContaining({ code: 'KEY_FILE_UNREADABLE' }));
  });

  // A folder opened for reading, and its mode 0755 was reported as the problem.
  it('refuses a folder as KEY_FILE_UNREADABLE saying it is a folder, not for its mode', () => {
    const folder = join(tmp, 'a-folder');
    mkdirSync(folder, { mode: 0o755 });
    expect(() => readKeyFile(folder)).toThrow(
      expect.objectContaining({
        code: 'KEY_FILE_UNREADABLE',
        message: `cannot read key file ${folder}: it is a folder, not a file`,
      }),
    );
  });

  // `null` read `.kind` of null: Node's "Cannot read properties of null", no code. A seed given twice read
  // as the last one here and as the first in other readers (a key that signs as another party).
  it('refuses JSON that is not a key file object (null) and a key given twice, KEY_FILE_INVALID naming the file', () => {
    const hexSeed = Buffer.from(seed).toString('hex');
    const other = '04'.repeat(32);
    for (const [name, text, why] of [
      ['null.json', 'null', /is not an ed25519 key file/],
      [
        'twice.json',
        `{"kind":"ed25519","seed":"${other}","seed":"${hexSeed}"}`,
        /repeats a key \("seed" twice/,
      ],
    ] as const) {
      const file = keyFileWithMode(name, 0o600, text);
      expect(() => readKeyFile(file)).toThrow(expect.objectContaining({ code: 'KEY_FILE_INVALID' }));
      expect(() => readKeyFile(file)).toThrow(why);
      expect(() => readKeyFile(file)).toThrow(file);
    }
  });

  it('loads a key only its owner can read (0600, 0400; execute bits alone expose nothing)', () => {
    for (const mode of [0o600, 0o400, 0o700, 0o711]) {
      const file = keyFileWithMode(`closed-${mode.toString(8)}.json`, mode);
      expect(readKeyFile(file).publicKey).toEqual(k.publicKey);
    }
  });

  it('follows a symbolic link and checks the file it points to', () => {
    const closed = keyFileWithMode('link-target-closed.json', 0o600);
    const open = keyFileWithMode('link-target-open.json', 0o644);
    symlinkSync(closed, join(tmp, 'link-closed.json'));
    symlinkSync(open, join(tmp, 'link-open.json'));
    expect(readKeyFile(join(tmp, 'link-closed.json')).publicKey).toEqual(k.publicKey);
    expect(() => readKeyFile(join(tmp, 'link-open.json'))).toThrow(
      expect.objectContaining({ code: 'KEY_FILE_PERMISSIONS' }),
    );
  });

  it('puts a path with spaces or quotes in the suggested chmod as one shell word', () => {
    const file = keyFileWithMode("it's my key.json", 0o644);
    expect(() => readKeyFile(file)).toThrow(`chmod 600 '${file.replace("it's", "it'\\''s")}'`);
  });

  it('group init writes every key 0600 (so they load), even under a permissive umask', async () => {
    const dir = join(tmp, 'group-modes');
    const before = process.umask(0o000);
    try {
      await initGroup({ dir, nodes: 4, models: Array(4).fill(STANDIN_MODEL) });
    } finally {
      process.umask(before);
    }
    const keys = readdirSync(join(dir, 'keys')).sort();
    expect(keys).toEqual([
      'client.json',
      'node-0.json',
      'node-1.json',
      'node-2.json',
      'node-3.json',
      'treasury.json',
    ]);
    for (const f of keys) {
      expect(statSync(join(dir, 'keys', f)).mode & 0o777).toBe(0o600);
      expect(() => readKeyFile(join(dir, 'keys', f))).not.toThrow();
    }
  });

  it('a node started on a key file others can read exits 2 with the code, the file and the fix', async () => {
    const dir = join(tmp, 'group-open-key');
    await initGroup({ dir, nodes: 4, models: Array(4).fill(STANDIN_MODEL) });
    const key = join(dir, 'keys', 'node-0.json');
    chmodSync(key, 0o644);
    const r = spawnSync(
      process.execPath,
      ['bin/dropbear.mjs', 'node', '--config', join(dir, 'node-0.json')],
      {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(
      `error [KEY_FILE_PERMISSIONS]: ${key} has mode 0644: group or others can read or write this secret key, so it is refused; make it the owner's alone with \`chmod 600 ${key}\`\n`,
    );
    // Nothing was started: no ledger.
    expect(readdirSync(dir)).not.toContain('data');
  });
});

/** A group of `nodes` stand-in nodes in `dir` whose configs log errors only, on ports 0, with `extra` in each. */
async function quietGroup(dir: string, nodes: number, extra: Record<string, unknown>): Promise<void> {
  await initGroup({
    dir,
    nodes,
    models: Array(nodes).fill(STANDIN_MODEL),
    nodeConfig: {
      log: { level: 'error' },
      p2p: { host: '127.0.0.1', port: 0 },
      api: { host: '127.0.0.1', port: 0 },
      ...extra,
    },
  });
}

// A custodial account's key (`custodial.accounts[].key`) is a client's secret seed, read under the same
// rule; until 2026-12-06 it was read after the models were loaded and the ledger made, so a node refusing
// it had first created its data folder and ledger.
describe.skipIf(process.platform === 'win32')('a custodial account key follows the key files rule', () => {
  it('a node whose custodial key others can read fails with the code and the file, before a ledger', async () => {
    const dir = join(tmp, 'group-open-custodial-key');
    await quietGroup(dir, 4, {
      custodial: { accounts: [{ apiKeySha256: 'a'.repeat(64), key: 'keys/client.json', maxFee: 10 }] },
    });
    const key = join(dir, 'keys', 'client.json');
    chmodSync(key, 0o644);
    await expect(startNode(join(dir, 'node-0.json'))).rejects.toMatchObject({
      code: 'KEY_FILE_PERMISSIONS',
      details: { file: key, mode: '0644' },
    });
    expect(readdirSync(dir)).not.toContain('data');
  });
});

// The node's TLS private key (`tls.key`) is a secret too, read under the same rule; until 2026-12-06 it was
// read whatever its mode. Certificates (`cert`, `ca`) are public. Nothing in the CLI writes TLS files:
// openssl (3.x) writes a private key 0600, and such files are taken.
describe.skipIf(process.platform === 'win32')('the TLS private key follows the key files rule', () => {
  /** A group of 2 stand-in nodes whose configs name tls/node.key and tls/node.crt (ports 0). */
  async function groupWithTls(name: string): Promise<{ dir: string; key: string; cert: string }> {
    const dir = join(tmp, name);
    await quietGroup(dir, 2, { tls: { key: 'tls/node.key', cert: 'tls/node.crt', ca: 'tls/node.crt' } });
    mkdirSync(join(dir, 'tls'));
    return { dir, key: join(dir, 'tls', 'node.key'), cert: join(dir, 'tls', 'node.crt') };
  }

  it('a node whose TLS key group can read exits 2 with the code, the file and the fix, before a ledger', async () => {
    const { dir, key, cert } = await groupWithTls('group-open-tls-key');
    // Refused before a byte is read: the content does not matter here.
    writeFileSync(key, 'not even PEM');
    chmodSync(key, 0o640);
    writeFileSync(cert, 'not even PEM', { mode: 0o644 });
    const r = spawnSync(
      process.execPath,
      ['bin/dropbear.mjs', 'node', '--config', join(dir, 'node-0.json')],
      { cwd: ROOT, encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(
      `error [KEY_FILE_PERMISSIONS]: ${key} has mode 0640: group or others can read or write this secret key, so it is refused; make it the owner's alone with \`chmod 600 ${key}\`\n`,
    );
    expect(readdirSync(dir)).not.toContain('data');
  });

  it('a node whose TLS certificate file is missing exits 2 with TLS_FILE_UNREADABLE naming it, before a ledger', async () => {
    const { dir, key, cert } = await groupWithTls('group-missing-tls-cert');
    writeFileSync(key, 'not even PEM', { mode: 0o600 });
    const r = spawnSync(
      process.execPath,
      ['bin/dropbear.mjs', 'node', '--config', join(dir, 'node-0.json')],
      { cwd: ROOT, encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      new RegExp(
        `^error \\[TLS_FILE_UNREADABLE\\]: cannot read TLS certificate file ${cert.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ENOENT`,
      ),
    );
    expect(readdirSync(dir)).not.toContain('data');
  });

  it.skipIf(!haveOpenssl)(
    'a TLS key as openssl writes it (0600) is taken, with a certificate anyone can read (0644)',
    async () => {
      const { dir, key, cert } = await groupWithTls('group-closed-tls-key');
      // Written where the config names them: tls/node.key and tls/node.crt.
      selfSignedCert(dirname(key), 'node');
      expect(statSync(key).mode & 0o777).toBe(0o600);
      chmodSync(cert, 0o644);
      const node = await startNode(join(dir, 'node-0.json'));
      try {
        expect(node.p2pPort).toBeGreaterThan(0);
      } finally {
        await node.stop();
      }
    },
  );
});
