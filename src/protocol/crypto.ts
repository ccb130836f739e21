/**
 * Hashing and Ed25519 signatures (node:crypto). Every signed payload is
 *   len(tag) ‖ tag ‖ groupId ‖ canonical bytes
 * so a signature made for one purpose or one group can never be replayed as another.
 */
import { createPrivateKey, createPublicKey, hash, type KeyObject, sign, verify } from 'node:crypto';
import { createRequire } from 'node:module';
import { Point } from '@noble/ed25519';
import { DropbearError } from './errors.ts';

export type Hash = Uint8Array;

/** The part of libsodium (the optional dependency sodium-native) that hashing, signing and verifying use. */
interface Sodium {
  crypto_hash_sha256(out: Uint8Array, input: Uint8Array): void;
  crypto_sign_detached(sig: Uint8Array, msg: Uint8Array, sk: Uint8Array): void;
  crypto_sign_verify_detached(sig: Uint8Array, msg: Uint8Array, pk: Uint8Array): boolean;
}

function loadSodium(): Sodium | null {
  if (process.env.DROPBEAR_CRYPTO === 'node') return null;
  try {
    return createRequire(import.meta.url)('sodium-native') as Sodium;
  } catch {
    return null;
  }
}

/**
 * Ed25519 (and SHA-256 of short inputs) through libsodium when sodium-native is installed, else node:crypto
 * (DROPBEAR_CRYPTO=node forces it). Ed25519 is about twice as fast here through libsodium: ~50 µs against
 * ~105 µs per verification, ~17 against ~36 µs per signature. Ed25519 signing is deterministic, so both
 * give the same bytes. libsodium also refuses a non-canonical public key and a public key or R of small
 * order, which OpenSSL accepts: the holder of any key can sign with R = identity and S = k·a (its secret
 * scalar times the challenge), which OpenSSL takes and libsodium refuses. Nodes of one group may run
 * either (sodium-native is optional), and a model update is checked again at execution, so the two must
 * agree on every signature or honest nodes execute to different states: node:crypto's path applies
 * libsodium's extra rules first (ed25519Refused).
 */
const sodium = loadSodium();
export const cryptoBackend: 'libsodium' | 'node:crypto' = sodium ? 'libsodium' : 'node:crypto';

// Short inputs (Merkle nodes are 65 bytes, request bodies ~110, tagged hashes of small bodies, the
// ~340-byte outcome leaves of every executed batch) are hashed by libsodium into a shared 8 KiB slab of
// digests, as the codec does for decoded fields: node:crypto's `hash` costs ~1.5 µs a call however short
// the input, plus an ArrayBuffer per digest for V8 to allocate, track and sweep, where libsodium into the
// slab costs ~0.5 µs at 64 bytes, ~1.0 µs at 256 and ~1.2 µs at 320. libsodium's SHA-256 is plain C, though,
// and node:crypto's (OpenSSL) uses the CPU's SHA instructions: the two cost the same at ~512 bytes
// (~1.7 µs), and past that node:crypto is faster (1 KiB: ~2.1 µs against ~3.1 µs; 4 KiB: ~3 µs against
// ~12 µs), so longer inputs go there. (Probe on this machine, 2026-12-07. Up to 2026-12-07 the switch was at
// 128 bytes, which sent the outcome leaves to node:crypto: leafHash of 340 bytes, in one process beside the
// old code, took 1.46 µs against 1.57, and bench:alloc lost node:crypto's ~1 KB of digests per certified
// request.) A live digest in the slab keeps the slab (at most 8 KiB) alive.
const SODIUM_HASH_MAX_INPUT = 448;
const HASH_SLAB_BYTES = 8192;
let hashSlab = new ArrayBuffer(HASH_SLAB_BYTES);
let hashSlabUsed = 0;
function shortDigest(s: Sodium, data: Uint8Array): Hash {
  if (hashSlabUsed + 32 > HASH_SLAB_BYTES) {
    hashSlab = new ArrayBuffer(HASH_SLAB_BYTES);
    hashSlabUsed = 0;
  }
  const out = new Uint8Array(hashSlab, hashSlabUsed, 32);
  hashSlabUsed += 32;
  s.crypto_hash_sha256(out, data);
  return out;
}

export function sha256(data: Uint8Array): Hash {
  if (sodium && data.length <= SODIUM_HASH_MAX_INPUT) return shortDigest(sodium, data);
  return opensslDigest(data);
}

/**
 * node:crypto's one-shot SHA-256, as a plain Uint8Array over the 32-byte ArrayBuffer `hash` made for it
 * (not a copy of it: a second ArrayBuffer per digest for V8 to allocate, track and sweep).
 */
function opensslDigest(data: Uint8Array): Hash {
  const d = hash('sha256', data, 'buffer');
  return new Uint8Array(d.buffer, d.byteOffset, d.length);
}

const matchScratch = new Uint8Array(32);
/**
 * Whether SHA-256(data) is `digest`: sha256 and equalBytes, without keeping the digest (no slab space, no
 * view, for a digest only compared).
 */
export function sha256Matches(data: Uint8Array, digest: Uint8Array): boolean {
  if (sodium && data.length <= SODIUM_HASH_MAX_INPUT) {
    sodium.crypto_hash_sha256(matchScratch, data);
    return equalBytes(matchScratch, digest);
  }
  return equalBytes(hash('sha256', data, 'buffer'), digest);
}

/** Reused concatenation buffer of sha256Parts for short inputs (hashing is synchronous). */
const partsScratch = new Uint8Array(SODIUM_HASH_MAX_INPUT);
/** partsScratch's first n bytes, one view per length made once (not a subarray per hash). */
const scratchViews: Uint8Array[] = [];
function scratchView(n: number): Uint8Array {
  let v = scratchViews[n];
  if (v === undefined) {
    v = partsScratch.subarray(0, n);
    scratchViews[n] = v;
  }
  return v;
}
/** Reused concatenation buffer for the longer inputs (up to its size) that node:crypto hashes. */
const LONG_SCRATCH_BYTES = 1 << 16;
const longScratch = new Uint8Array(LONG_SCRATCH_BYTES);

export function sha256Parts(...parts: Uint8Array[]): Hash {
  // One copy into a single buffer and a one-shot hash: cheaper than an incremental hash for the small
  // parts this hashes (tags, 32-byte nodes, encoded messages).
  let n = 0;
  for (const p of parts) n += p.length;
  const short = sodium !== null && n <= SODIUM_HASH_MAX_INPUT;
  const all = short ? partsScratch : n <= LONG_SCRATCH_BYTES ? longScratch : new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  if (short) return shortDigest(sodium, scratchView(n));
  return opensslDigest(all.length === n ? all : all.subarray(0, n));
}

/** sha256Parts(a, b) without the rest parameter's array (leaf hashes, tagged hashes: once per request). */
export function sha256Of2(a: Uint8Array, b: Uint8Array): Hash {
  const n = a.length + b.length;
  if (sodium !== null && n <= SODIUM_HASH_MAX_INPUT) {
    partsScratch.set(a, 0);
    partsScratch.set(b, a.length);
    return shortDigest(sodium, scratchView(n));
  }
  if (n > LONG_SCRATCH_BYTES) return sha256Parts(a, b);
  longScratch.set(a, 0);
  longScratch.set(b, a.length);
  return opensslDigest(longScratch.subarray(0, n));
}

/** sha256Parts(a, b, c) without the rest parameter's array (Merkle interior nodes). */
export function sha256Of3(a: Uint8Array, b: Uint8Array, c: Uint8Array): Hash {
  const n = a.length + b.length + c.length;
  if (sodium === null || n > SODIUM_HASH_MAX_INPUT) return sha256Parts(a, b, c);
  partsScratch.set(a, 0);
  partsScratch.set(b, a.length);
  partsScratch.set(c, a.length + b.length);
  return shortDigest(sodium, scratchView(n));
}

export const TAGS = {
  genesis: 'dropbear/v1/genesis',
  request: 'dropbear/v1/request',
  /** A client's one signature over the Merkle root of a batch of its requests (RequestBatchRoot). */
  requestBatch: 'dropbear/v1/request-batch',
  results: 'dropbear/v1/results',
  prePrepare: 'dropbear/v1/pre-prepare',
  prepare: 'dropbear/v1/prepare',
  commit: 'dropbear/v1/commit',
  receipt: 'dropbear/v1/receipt',
  /** A receipt signed before its batch committed, bound to the view the signer prepared it in. */
  preparedReceipt: 'dropbear/v1/prepared-receipt',
  checkpoint: 'dropbear/v1/checkpoint',
  viewChange: 'dropbear/v1/view-change',
  newView: 'dropbear/v1/new-view',
  modelUpdate: 'dropbear/v1/model-update',
  /** The treasury's credit of a client account (Deposit). */
  deposit: 'dropbear/v1/deposit',
  /** A node owner's change of its per-request fee (FeeChange). */
  feeChange: 'dropbear/v1/fee-change',
  /** A node owner's payout from what its node earned (Withdrawal). */
  withdrawal: 'dropbear/v1/withdrawal',
  /** A client's payback of its unused balance (Refund). */
  refund: 'dropbear/v1/refund',
  /** A client's payment of part of its balance to another account (Transfer). */
  transfer: 'dropbear/v1/transfer',
  batch: 'dropbear/v1/batch',
  handshake: 'dropbear/v1/handshake',
} as const;
export type Tag = (typeof TAGS)[keyof typeof TAGS];

const tagPrefix = new Map<string, Uint8Array>();
function prefixOf(tag: Tag): Uint8Array {
  let p = tagPrefix.get(tag);
  if (!p) {
    const t = Buffer.from(tag, 'utf8');
    p = new Uint8Array(1 + t.length);
    p[0] = t.length;
    p.set(t, 1);
    tagPrefix.set(tag, p);
  }
  return p;
}

export function signedBytes(tag: Tag, groupId: Uint8Array, body: Uint8Array): Uint8Array {
  const p = prefixOf(tag);
  const out = new Uint8Array(p.length + groupId.length + body.length);
  out.set(p, 0);
  out.set(groupId, p.length);
  out.set(body, p.length + groupId.length);
  return out;
}

/** SHA-256 over a domain-separated payload (no group id: used for the genesis itself). */
export function taggedHash(tag: Tag, body: Uint8Array): Hash {
  return sha256Of2(prefixOf(tag), body);
}

const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');

export interface KeyPair {
  publicKey: Uint8Array; // 32 raw bytes
  privateKey: KeyObject;
  seed: Uint8Array; // 32 raw bytes; keep secret
  /** seed ‖ publicKey: libsodium's form of the secret key (64 bytes); keep secret. */
  secretKey: Uint8Array;
}

/** A key pair from a 32-byte seed (deterministic: the simulator derives keys from its seed). */
export function keyPairFromSeed(seed: Uint8Array): KeyPair {
  if (seed.length !== 32) throw new DropbearError('KEY_BAD_SEED', 'an Ed25519 seed is 32 bytes');
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const publicKey = new Uint8Array(spki.subarray(SPKI_ED25519.length));
  const secretKey = new Uint8Array(64);
  secretKey.set(seed, 0);
  secretKey.set(publicKey, 32);
  return { publicKey, privateKey, seed: new Uint8Array(seed), secretKey };
}

const pubCache = new Map<string, KeyObject>();
function publicKeyObject(raw: Uint8Array): KeyObject {
  const k = Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString('hex');
  let key = pubCache.get(k);
  if (!key) {
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: 'der', type: 'spki' });
    if (pubCache.size > 100_000) pubCache.clear();
    pubCache.set(k, key);
  }
  return key;
}

/** Process-wide counts of signature operations (benchmarks report them per certified request). */
export const cryptoStats = { signs: 0, verifies: 0 };

export function signTagged(tag: Tag, groupId: Uint8Array, body: Uint8Array, key: KeyPair): Uint8Array {
  cryptoStats.signs++;
  const msg = signedBytes(tag, groupId, body);
  if (sodium) {
    const sig = new Uint8Array(64);
    sodium.crypto_sign_detached(sig, msg, key.secretKey);
    return sig;
  }
  return new Uint8Array(sign(null, msg, key.privateKey));
}

export function verifyTagged(
  tag: Tag,
  groupId: Uint8Array,
  body: Uint8Array,
  signature: Uint8Array,
  publicKey: Uint8Array,
): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  let memoKey: string | null = null;
  try {
    const msg = signedBytes(tag, groupId, body);
    if (sharedChecks !== null) {
      memoKey = hash('sha256', Buffer.concat([publicKey, signature, msg]), 'base64');
      if (sharedChecks.has(memoKey)) return true;
    }
    cryptoStats.verifies++;
    const ok = sodium
      ? sodium.crypto_sign_verify_detached(signature, msg, publicKey)
      : verifyNodeCrypto(msg, signature, publicKey);
    if (ok && memoKey !== null) sharedChecks?.add(memoKey);
    return ok;
  } catch {
    return false; // a point that is not on the curve, for instance
  }
}

/**
 * The signatures found valid while `withSharedChecks` runs, by SHA-256 of key ‖ signature ‖ signed bytes;
 * null outside it.
 */
let sharedChecks: Set<string> | null = null;

/**
 * Runs `fn` with the outcome of every successful signature check remembered, so that checking the same
 * signature over the same bytes with the same key again costs a hash instead of an Ed25519 check. For the
 * simulator, whose nodes share one process and each check what every peer signed (a node process checks a
 * signature once, and gains nothing): an Ed25519 check is a pure function of its inputs, so the nodes
 * decide exactly as they would have, a forgery still fails every check, and only the CPU changes.
 * `cryptoStats.verifies` counts the checks made. Nested calls share the outer memo.
 */
export function withSharedChecks<T>(fn: () => T): T {
  if (sharedChecks !== null) return fn();
  sharedChecks = new Set();
  try {
    return fn();
  } finally {
    sharedChecks = null;
  }
}

/**
 * The node:crypto backend's check of an Ed25519 signature over `msg`: libsodium's extra rules
 * (ed25519Refused), then OpenSSL's RFC 8032 check. Throws for a key that is not a point of the curve.
 */
export function verifyNodeCrypto(msg: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (ed25519Refused(signature, publicKey)) return false;
  return verify(null, msg, publicKeyObject(publicKey), signature);
}

// ---------------------------------------------------------------- libsodium's rules beyond RFC 8032

/** The field prime of Curve25519 and Ed25519's group order. */
const P25519 = 2n ** 255n - 19n;
const L25519 = 2n ** 252n + 27742317777372353535851937790883648493n;

function le32(x: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++, x >>= 8n) out[i] = Number(x & 0xffn);
  return out;
}

/**
 * The y coordinates, as 32 little-endian bytes, of the curve's eight points of small order (order 1, 2, 4
 * and 8: y = 1, p − 1, 0 and the two roots below), plus p and p + 1, the non-canonical encodings of 0 and
 * 1: the encodings libsodium refuses as a key or as R, whatever the sign bit. An order-8 point doubles to
 * one of order 4, (±√−1, 0), so x² = −y², which on −x² + y² = 1 + d·x²·y² gives d·y⁴ + 2y² − 1 = 0.
 */
const SMALL_ORDER_Y: readonly Uint8Array[] = (() => {
  const p = P25519;
  const mod = (a: bigint) => ((a % p) + p) % p;
  const pow = (b: bigint, e: bigint) => {
    let r = 1n;
    for (b = mod(b); e > 0n; e >>= 1n, b = (b * b) % p) if (e & 1n) r = (r * b) % p;
    return r;
  };
  const inv = (a: bigint) => pow(a, p - 2n);
  const sqrtM1 = pow(2n, (p - 1n) / 4n);
  // Square roots mod p (p ≡ 5 mod 8), or null for a non-square.
  const sqrt = (a: bigint): bigint | null => {
    const c = pow(a, (p + 3n) / 8n);
    if ((c * c) % p === mod(a)) return c;
    const c2 = (c * sqrtM1) % p;
    return (c2 * c2) % p === mod(a) ? c2 : null;
  };
  const d = mod(-121665n * inv(121666n));
  const ys = new Set<bigint>([0n, 1n, p - 1n, p, p + 1n]);
  const s = sqrt(1n + d) ?? 0n;
  for (const sign of [s, p - s]) {
    const y = sqrt(mod((sign - 1n) * inv(d)));
    if (y !== null) ys.add(y).add(p - y);
  }
  return [...ys].map(le32);
})();

/** Whether a point encoding (its first 32 bytes), sign bit aside, is one of SMALL_ORDER_Y. */
function smallOrder(point: Uint8Array): boolean {
  outer: for (const y of SMALL_ORDER_Y) {
    for (let i = 0; i < 31; i++) if (point[i] !== y[i]) continue outer;
    if ((point[31] & 0x7f) === y[31]) return true;
  }
  return false;
}

/** Whether 32 little-endian bytes at `at` (with `mask` on the last) read as a number below `bound`. */
function below(bytes: Uint8Array, at: number, bound: Uint8Array, mask = 0xff): boolean {
  for (let i = 31; i >= 0; i--) {
    const b = i === 31 ? bytes[at + i] & mask : bytes[at + i];
    if (b !== bound[i]) return b < bound[i];
  }
  return false;
}
const P_BYTES = le32(P25519);
const L_BYTES = le32(L25519);

/**
 * Whether libsodium refuses this signature and key before it checks the equation, where RFC 8032 (and
 * OpenSSL) may not: S is not below the group order, R or the key has small order, or the key's y is not
 * below p. node:crypto's verification applies it first, so that both backends agree on every signature.
 */
export function ed25519Refused(signature: Uint8Array, publicKey: Uint8Array): boolean {
  return !below(signature, 32, L_BYTES) || smallOrder(signature) || ed25519KeyProblem(publicKey) !== null;
}

/** Why `publicKey` can never verify a signature under either backend (ed25519Refused), or null. */
export function ed25519KeyProblem(publicKey: Uint8Array): string | null {
  if (publicKey.length !== 32) return 'not 32 bytes';
  if (!below(publicKey, 0, P_BYTES, 0x7f)) return 'a non-canonical point encoding';
  if (smallOrder(publicKey)) return 'a point of small order';
  return null;
}

/**
 * Whether a public key (one ed25519KeyProblem passes) has a component of small order: A = a·B + T with T a
 * torsion point other than the identity. Both backends check signatures without the cofactor, and the
 * holder of a can still sign under a·B + T (by retrying the nonce until the challenge is a multiple of
 * T's order), so a·B, a·B + T₂ and a·B + T₄ are three different keys one party can sign under. Keys made
 * from a secret (a·B) never have one. Pure JavaScript, a few ms per key (remembered): for the genesis's
 * keys (genesisProblem), not per signature.
 */
export function ed25519HasTorsion(publicKey: Uint8Array): boolean {
  const key = hex(publicKey);
  let has = torsionChecked.get(key);
  if (has === undefined) {
    has = !Point.fromBytes(publicKey).isTorsionFree();
    if (torsionChecked.size >= 4096) torsionChecked.clear();
    torsionChecked.set(key, has);
  }
  return has;
}
/** Keys already checked by ed25519HasTorsion (a process checks the same genesis many times: replicas, tools). */
const torsionChecked = new Map<string, boolean>();

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// Buffer's own hex encoder, called on the Uint8Array itself: a third cheaper than wrapping it in a Buffer
// first (ids and digests are hexed for map keys on every hot path). Fallback if a Node lacks it.
const hexSlice = (
  Buffer.prototype as unknown as { hexSlice?: (this: Uint8Array, s: number, e: number) => string }
).hexSlice;

export function hex(b: Uint8Array): string {
  return hexSlice
    ? hexSlice.call(b, 0, b.length)
    : Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');
}
