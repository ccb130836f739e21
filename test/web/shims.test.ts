/**
 * The browser bundle's stand-ins for Node's Buffer and node:crypto (src/web/shims) against the real ones,
 * run here in Node: the dashboard must take exactly the signatures and encodings the nodes take.
 */
import { createPublicKey, verify as nodeVerify, randomBytes } from 'node:crypto';
import { Point } from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import { describe, expect, it } from 'vitest';
import { keyPairFromSeed, signedBytes, signTagged, TAGS } from '../../src/protocol/index.ts';
import { dashboardScript } from '../../src/web/bundle.ts';
import { Buffer as ShimBuffer } from '../../src/web/shims/buffer.ts';
import * as shim from '../../src/web/shims/node-crypto.ts';

const SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const L = 2n ** 252n + 27742317777372353535851937790883648493n;

function le(x: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++, x >>= 8n) out[i] = Number(x & 0xffn);
  return out;
}

function both(msg: Uint8Array, sig: Uint8Array, pub: Uint8Array): [boolean, boolean] {
  const key = Buffer.concat([SPKI, pub]);
  let openssl: boolean;
  try {
    openssl = nodeVerify(null, msg, createPublicKey({ key, format: 'der', type: 'spki' }), sig);
  } catch {
    openssl = false;
  }
  let mine: boolean;
  try {
    mine = shim.verify(null, msg, shim.createPublicKey({ key, format: 'der', type: 'spki' }), sig);
  } catch {
    mine = false;
  }
  return [openssl, mine];
}

describe('the browser bundle', () => {
  it('builds, and pulls in nothing of Node (no require, no process, no node: import left)', async () => {
    const js = await dashboardScript();
    expect(js.length).toBeGreaterThan(10_000);
    expect(js).not.toMatch(/\brequire\(|\bprocess\.|["']node:/);
    // The shims are in, the Node backends are not.
    expect(js).toContain('only DER SPKI Ed25519 public keys are in the browser bundle');
  });
});

describe('Buffer stand-in', () => {
  it('encodes and decodes hex, base64, base64url and utf8 as Node does', () => {
    for (let i = 0; i < 200; i++) {
      const b = randomBytes(i % 70);
      for (const enc of ['hex', 'base64', 'base64url'] as const) {
        const s = Buffer.from(b).toString(enc);
        expect(ShimBuffer.from(b).toString(enc)).toBe(s);
        expect([...ShimBuffer.from(s, enc)]).toEqual([...b]);
      }
    }
    expect(ShimBuffer.from('dropbear/v1/receipt ✓', 'utf8').toString('hex')).toBe(
      Buffer.from('dropbear/v1/receipt ✓', 'utf8').toString('hex'),
    );
    // Lenient where Node is: a trailing odd hex digit or a lone base64 character carries no byte.
    for (const h of ['abc', '0g12', 'g012', '12 34', 'ABcd'])
      expect([...ShimBuffer.from(h, 'hex')], h).toEqual([...Buffer.from(h, 'hex')]);
    expect([...ShimBuffer.from('QUJD1', 'base64url')]).toEqual([...Buffer.from('QUJD1', 'base64url')]);
  });

  it('compares, concatenates and views like Node', () => {
    for (let i = 0; i < 300; i++) {
      const a = randomBytes(i % 5);
      const b = randomBytes((i * 7) % 5);
      expect(ShimBuffer.compare(a, b)).toBe(Buffer.compare(a, b));
    }
    const ab = new Uint8Array([1, 2, 3, 4, 5]).buffer;
    expect([...ShimBuffer.from(ab, 1, 3)]).toEqual([2, 3, 4]);
    expect([...ShimBuffer.concat([new Uint8Array([1]), new Uint8Array([2, 3])])]).toEqual([1, 2, 3]);
  });
});

describe('node:crypto stand-in', () => {
  it('SHA-256 as node:crypto', async () => {
    const { hash } = await import('node:crypto');
    for (const n of [0, 1, 55, 56, 64, 1000]) {
      const d = randomBytes(n);
      expect(Buffer.from(shim.hash('sha256', d)).toString('hex')).toBe(hash('sha256', d, 'hex'));
    }
  });

  it('takes every good signature and refuses corrupted ones, as OpenSSL does', () => {
    for (let i = 0; i < 40; i++) {
      const k = keyPairFromSeed(randomBytes(32));
      const body = randomBytes(i * 3);
      const sig = signTagged(TAGS.receipt, new Uint8Array(32), body, k);
      const msg = signedBytes(TAGS.receipt, new Uint8Array(32), body);
      expect(both(msg, sig, k.publicKey)).toEqual([true, true]);
      const bad = Uint8Array.from(sig);
      bad[i % 64] ^= 1 << (i % 8);
      expect(both(msg, bad, k.publicKey)).toEqual([false, false]);
      const other = Uint8Array.from(msg);
      if (other.length > 0) other[0] ^= 1;
      expect(both(other, sig, k.publicKey)).toEqual([false, false]);
    }
  });

  it('refuses S at or above the group order (S + L), as OpenSSL does', () => {
    const k = keyPairFromSeed(new Uint8Array(32).fill(5));
    const msg = new Uint8Array([1, 2, 3]);
    const sig = signTagged(TAGS.receipt, new Uint8Array(32), msg, k);
    const full = signedBytes(TAGS.receipt, new Uint8Array(32), msg);
    let s = 0n;
    for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]);
    const malleable = Uint8Array.from(sig);
    malleable.set(le(s + L), 32);
    expect(both(full, malleable, k.publicKey)).toEqual([false, false]);
  });

  it('checks without the cofactor: R with a small-order part added is refused (noble alone would take it)', async () => {
    const { verify: nobleVerify, hashes } = await import('@noble/ed25519');
    hashes.sha512 = sha512;
    // A point of order 8 (the torsion part): one of the encodings on libsodium's small-order list.
    const T = Point.fromBytes(
      Uint8Array.from(Buffer.from('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', 'hex')),
      false,
    );
    expect(T.isSmallOrder()).toBe(true);
    expect(T.multiply(4n, false).is0()).toBe(false);
    const seed = new Uint8Array(32).fill(9);
    const k = keyPairFromSeed(seed);
    // Sign by hand with R' = R + T: S = r + k·a as usual, k over R' (so the equation is off by T only).
    const digest = sha512(seed);
    const a = digest.slice(0, 32);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    let aInt = 0n;
    for (let i = 31; i >= 0; i--) aInt = (aInt << 8n) | BigInt(a[i]);
    const rInt = 123456789n;
    const R2 = Point.BASE.multiply(rInt).add(T).toBytes();
    const msg = new Uint8Array([7, 7, 7]);
    const h = sha512(new Uint8Array([...R2, ...k.publicKey, ...msg]));
    let hInt = 0n;
    for (let i = 63; i >= 0; i--) hInt = (hInt << 8n) | BigInt(h[i]);
    const S = (rInt + (hInt % L) * aInt) % L;
    const sig = new Uint8Array([...R2, ...le(S)]);
    expect(nobleVerify(sig, msg, k.publicKey)).toBe(true); // cofactored: [8]R' = [8]R
    expect(both(msg, sig, k.publicKey)).toEqual([false, false]);
  });
});
