/**
 * Key files: JSON `{kind: "ed25519", publicKey: <base64url>, seed: <hex>}`, written with mode 0600. Not
 * exported from the protocol index (it touches the file system; the browser bundle never needs it).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { toB64u } from './codec.ts';
import { type KeyPair, keyPairFromSeed } from './crypto.ts';
import { DropbearError } from './errors.ts';

export function keyFileJson(k: KeyPair): string {
  return `${JSON.stringify({ kind: 'ed25519', publicKey: toB64u(k.publicKey), seed: Buffer.from(k.seed).toString('hex') }, null, 2)}\n`;
}

/**
 * Creates the file; never replaces one. (`mode` applies only to a file being created: writing over an
 * existing world-readable file kept its mode, and destroyed the key that was there.)
 */
export function writeKeyFile(path: string, k: KeyPair): void {
  try {
    writeFileSync(path, keyFileJson(k), { mode: 0o600, flag: 'wx' });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EEXIST')
      throw new DropbearError('KEY_FILE_EXISTS', `${path} exists; keys are never overwritten`);
    throw new DropbearError('KEY_FILE_UNWRITABLE', `cannot write key file ${path}: ${err.message}`);
  }
}

export function readKeyFile(path: string): KeyPair {
  let json: { kind?: unknown; seed?: unknown; publicKey?: unknown };
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new DropbearError('KEY_FILE_UNREADABLE', `cannot read key file ${path}: ${(e as Error).message}`);
  }
  if (json.kind !== 'ed25519' || typeof json.seed !== 'string' || !/^[0-9a-f]{64}$/.test(json.seed))
    throw new DropbearError(
      'KEY_FILE_INVALID',
      `${path} is not an ed25519 key file (kind, 64-hex-digit seed)`,
    );
  const k = keyPairFromSeed(Uint8Array.from(Buffer.from(json.seed, 'hex')));
  if (json.publicKey !== undefined && json.publicKey !== toB64u(k.publicKey))
    throw new DropbearError('KEY_FILE_INVALID', `${path}: publicKey does not match the seed`);
  return k;
}
