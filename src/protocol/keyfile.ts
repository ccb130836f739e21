/**
 * Key files: JSON `{kind: "ed25519", publicKey: <base64url>, seed: <hex>}`, written with mode 0600. Not
 * exported from the protocol index (it touches the file system; the browser bundle never needs it).
 *
 * The seed is the secret, so reading one refuses a file that group or others may read or write
 * (`KEY_FILE_PERMISSIONS`, naming the file, its mode and `chmod 600`), the way ssh refuses an
 * unprotected private key: a seed left 0644 by a copy, an archive or a umask was loaded silently until
 * 2026-12-05. The mode checked is that of the file actually opened (fstat on its descriptor, before a byte
 * is read), so a file swapped for another between a check and the read cannot slip through. A symbolic
 * link is followed: the mode checked is its target's (a link's own mode means nothing on Linux), so a
 * link never loosens the rule, and keys mounted through links (a Kubernetes secret volume) still load
 * when the target is 0600 or 0400. Not checked on Windows, whose POSIX mode bits do not describe its ACLs.
 * The node's TLS private key (`tls.key` in its config) is read under the same rule (readSecretFile); until
 * 2026-12-06 it was read whatever its mode.
 */
import {
  closeSync,
  fstatSync,
  fsyncSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { toB64u } from './codec.ts';
import { type KeyPair, keyPairFromSeed } from './crypto.ts';
import { DropbearError, writeFailure } from './errors.ts';
import { parseJsonFile } from './json-text.ts';

export function keyFileJson(k: KeyPair): string {
  return `${JSON.stringify({ kind: 'ed25519', publicKey: toB64u(k.publicKey), seed: Buffer.from(k.seed).toString('hex') }, null, 2)}\n`;
}

/**
 * Creates the file; never replaces one. (`mode` applies only to a file being created: writing over an
 * existing world-readable file kept its mode, and destroyed the key that was there.) A write that fails
 * (a full disk) removes the file it created: an empty or cut key file was left, which the next `keygen`
 * or `group init` refused as existing, and a reader as not JSON.
 */
export function writeKeyFile(path: string, k: KeyPair): void {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EEXIST')
      throw new DropbearError('KEY_FILE_EXISTS', `${path} exists; keys are never overwritten`);
    throw keyFileUnwritable(path, e);
  }
  try {
    try {
      writeFileSync(fd, keyFileJson(k));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    // Created above ('wx'), so ours to remove.
    rmSync(path, { force: true });
    throw keyFileUnwritable(path, e);
  }
}

function keyFileUnwritable(path: string, e: unknown): DropbearError {
  const { errno, why } = writeFailure(e);
  return new DropbearError('KEY_FILE_UNWRITABLE', `cannot write key file ${path}: ${why}`, { path, errno });
}

/** Bits that let group or others read or write a file (execute alone exposes nothing). */
const GROUP_OTHER_RW = 0o066;

/** The path as one shell word, so the `chmod` the message suggests can be pasted as it is. */
function shellWord(path: string): string {
  return /^[\w./@%+=:,-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`;
}

/**
 * The contents of open file `fd`, or null once it holds more than `maxBytes` (read no further: a huge file,
 * or a device such as /dev/zero that never ends, costs at most maxBytes + 1 bytes).
 */
export function readAtMost(fd: number, maxBytes: number): Buffer | null {
  const buf = Buffer.alloc(maxBytes + 1);
  let n = 0;
  while (n < buf.length) {
    const got = readSync(fd, buf, n, buf.length - n, null);
    if (got === 0) break;
    n += got;
  }
  return n > maxBytes ? null : buf.subarray(0, n);
}

/**
 * Reads a secret file (a key file here, the node's TLS private key in node/transport.ts) under the rule
 * above: refused with KEY_FILE_PERMISSIONS, before a byte is read, when group or others may read or write
 * it; KEY_FILE_UNREADABLE (`cannot read <what> <path>`) when it cannot be opened or read; with `limit`,
 * `limit.code` when it holds more than `limit.maxBytes` (readAtMost).
 */
export function readSecretFile(
  path: string,
  what: string,
  limit?: { maxBytes: number; code: string },
): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new DropbearError('KEY_FILE_UNREADABLE', `cannot read ${what} ${path}: ${(e as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    // A folder opens for reading on Linux; its mode (0755) was then reported as the problem. (A pipe stays
    // readable: `--key <(…)` hands a secret over without a file.)
    if (st.isDirectory())
      throw new DropbearError(
        'KEY_FILE_UNREADABLE',
        `cannot read ${what} ${path}: it is a folder, not a file`,
      );
    if (process.platform !== 'win32') {
      const mode = st.mode & 0o7777;
      if ((mode & GROUP_OTHER_RW) !== 0) {
        const octal = mode.toString(8).padStart(4, '0');
        throw new DropbearError(
          'KEY_FILE_PERMISSIONS',
          `${path} has mode ${octal}: group or others can read or write this secret key, so it is refused; ` +
            `make it the owner's alone with \`chmod 600 ${shellWord(path)}\``,
          { file: path, mode: octal },
        );
      }
    }
    try {
      if (!limit) return readFileSync(fd);
      const b = readAtMost(fd, limit.maxBytes);
      if (b === null)
        throw new DropbearError(
          limit.code,
          `${what} ${path} is larger than ${limit.maxBytes} bytes: not read`,
          { file: path, maxBytes: limit.maxBytes },
        );
      return b;
    } catch (e) {
      if (e instanceof DropbearError) throw e;
      throw new DropbearError('KEY_FILE_UNREADABLE', `cannot read ${what} ${path}: ${(e as Error).message}`);
    }
  } finally {
    closeSync(fd);
  }
}

export function readKeyFile(path: string): KeyPair {
  const text = readSecretFile(path, 'key file').toString('utf8');
  let parsed: ReturnType<typeof parseJsonFile>;
  try {
    parsed = parseJsonFile(text);
  } catch (e) {
    throw new DropbearError('KEY_FILE_UNREADABLE', `cannot read key file ${path}: ${(e as Error).message}`);
  }
  // A seed given twice read as the last one here, the first in other readers: another party's key.
  if (parsed.repeated)
    throw new DropbearError(
      'KEY_FILE_INVALID',
      `${path} repeats a key (${parsed.repeated}), so it reads two ways`,
    );
  const json = parsed.value as { kind?: unknown; seed?: unknown; publicKey?: unknown } | null;
  // `null` (or any non-object) has no fields: it read `.kind` of null, Node's TypeError with no code.
  if (
    typeof json !== 'object' ||
    json === null ||
    json.kind !== 'ed25519' ||
    typeof json.seed !== 'string' ||
    !/^[0-9a-f]{64}$/.test(json.seed)
  )
    throw new DropbearError(
      'KEY_FILE_INVALID',
      `${path} is not an ed25519 key file (kind, 64-hex-digit seed)`,
    );
  const k = keyPairFromSeed(Uint8Array.from(Buffer.from(json.seed, 'hex')));
  if (json.publicKey !== undefined && json.publicKey !== toB64u(k.publicKey))
    throw new DropbearError('KEY_FILE_INVALID', `${path}: publicKey does not match the seed`);
  return k;
}
