/**
 * The part of node:crypto that protocol/crypto.ts uses, for the browser bundle (web/bundle.ts resolves
 * `node:crypto` here): SHA-256 and Ed25519 verification with the @noble libraries, nothing secret (the
 * browser signs nothing). `verify` checks as OpenSSL and libsodium do (RFC 8032 without the cofactor: the
 * encoding of [S]B − [k]A must be R's bytes exactly, S below the group order, A a canonical point);
 * protocol/crypto.ts applies libsodium's further rules (small-order and non-canonical keys and R) before
 * calling it, so the browser takes exactly the signatures the nodes take. noble's own `verify` uses the
 * cofactored equation, which takes some signatures with a mixed-order R that those refuse.
 */
import { Point } from '@noble/ed25519';
import { sha256, sha512 } from '@noble/hashes/sha2.js';

const L = 2n ** 252n + 27742317777372353535851937790883648493n;

function leToBigint(b: Uint8Array): bigint {
  let x = 0n;
  for (let i = b.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(b[i]);
  return x;
}

export function hash(algorithm: string, data: Uint8Array, _out?: string): Uint8Array {
  if (algorithm !== 'sha256') throw new Error(`hash ${algorithm} is not in the browser bundle`);
  return sha256(data);
}

/** A public key: the raw 32 bytes behind a DER SubjectPublicKeyInfo (the last 32 bytes of it). */
export interface KeyObject {
  raw: Uint8Array;
}

export function createPublicKey(opts: { key: Uint8Array; format: string; type: string }): KeyObject {
  if (!(opts?.key instanceof Uint8Array) || opts.format !== 'der' || opts.type !== 'spki')
    throw new Error('only DER SPKI Ed25519 public keys are in the browser bundle');
  return { raw: opts.key.slice(opts.key.length - 32) };
}

export function verify(_algorithm: null, msg: Uint8Array, key: KeyObject, signature: Uint8Array): boolean {
  if (signature.length !== 64 || key.raw.length !== 32) return false;
  const s = leToBigint(signature.subarray(32));
  if (s >= L) return false;
  let A: Point;
  try {
    A = Point.fromBytes(key.raw, false);
  } catch {
    throw new Error('public key is not a point of the curve');
  }
  const r = signature.subarray(0, 32);
  const buf = new Uint8Array(64 + msg.length);
  buf.set(r, 0);
  buf.set(key.raw, 32);
  buf.set(msg, 64);
  const k = leToBigint(sha512(buf)) % L;
  const check = Point.BASE.multiply(s, false).subtract(A.multiply(k, false)).toBytes();
  if (check.length !== 32) return false;
  for (let i = 0; i < 32; i++) if (check[i] !== r[i]) return false;
  return true;
}

export function createPrivateKey(): never {
  throw new Error('the browser bundle signs nothing');
}

export function sign(): never {
  throw new Error('the browser bundle signs nothing');
}
