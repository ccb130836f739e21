import { createHash, createPublicKey, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import {
  cryptoBackend,
  DropbearError,
  ed25519KeyProblem,
  ed25519Refused,
  hex,
  keyPairFromSeed,
  sha256,
  sha256Matches,
  sha256Of2,
  sha256Of3,
  sha256Parts,
  signedBytes,
  signTagged,
  TAGS,
  taggedHash,
  verifyNodeCrypto,
  verifyTagged,
} from '../../src/protocol/index.ts';

const fromHex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));
const seed = (i: number) => new Uint8Array(32).fill(i);
const groupA = sha256(new TextEncoder().encode('group A'));
const groupB = sha256(new TextEncoder().encode('group B'));
const body = new TextEncoder().encode('the body that is signed');

describe('keys', () => {
  it('keyPairFromSeed is deterministic', () => {
    const a = keyPairFromSeed(seed(1));
    const b = keyPairFromSeed(seed(1));
    expect(a.publicKey).toEqual(b.publicKey);
    expect(a.publicKey.length).toBe(32);
    expect(a.seed).toEqual(seed(1));
    expect(signTagged(TAGS.request, groupA, body, a)).toEqual(signTagged(TAGS.request, groupA, body, b)); // Ed25519 is deterministic
    expect(keyPairFromSeed(seed(2)).publicKey).not.toEqual(a.publicKey);
  });

  it('keeps a copy of the seed', () => {
    const s = seed(3);
    const kp = keyPairFromSeed(s);
    s.fill(0);
    expect(kp.seed).toEqual(seed(3));
  });

  it('matches the RFC 8032 test vectors', () => {
    const t1 = keyPairFromSeed(fromHex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60'));
    expect(Buffer.from(t1.publicKey).toString('hex')).toBe(
      'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    );
    const t2 = keyPairFromSeed(fromHex('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb'));
    expect(Buffer.from(t2.publicKey).toString('hex')).toBe(
      '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    );
    expect(nodeSign(null, fromHex('72'), t2.privateKey).toString('hex')).toBe(
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da' +
        '085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
    );
  });

  it('refuses a seed that is not 32 bytes', () => {
    for (const n of [0, 31, 33, 64]) {
      let err: unknown;
      try {
        keyPairFromSeed(new Uint8Array(n));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DropbearError);
      expect((err as DropbearError).code).toBe('KEY_BAD_SEED');
    }
  });
});

describe('signed payloads', () => {
  it('are len(tag) ‖ tag ‖ groupId ‖ body', () => {
    const tag = Buffer.from(TAGS.receipt, 'utf8');
    expect(signedBytes(TAGS.receipt, groupA, body)).toEqual(
      new Uint8Array(Buffer.concat([Buffer.from([tag.length]), tag, groupA, body])),
    );
    // The signature is plain Ed25519 over those bytes: any Ed25519 implementation can check it.
    const kp = keyPairFromSeed(seed(4));
    const sig = signTagged(TAGS.receipt, groupA, body, kp);
    expect(sig.length).toBe(64);
    expect(nodeVerify(null, signedBytes(TAGS.receipt, groupA, body), kp.privateKey, sig)).toBe(true);
  });

  it('taggedHash is SHA-256 over len(tag) ‖ tag ‖ body', () => {
    const tag = Buffer.from(TAGS.genesis, 'utf8');
    const expected = createHash('sha256')
      .update(Buffer.from([tag.length]))
      .update(tag)
      .update(body)
      .digest();
    expect(taggedHash(TAGS.genesis, body)).toEqual(new Uint8Array(expected));
  });
});

describe('sign / verify', () => {
  const kp = keyPairFromSeed(seed(5));
  const other = keyPairFromSeed(seed(6));
  const sig = signTagged(TAGS.results, groupA, body, kp);

  it('a genuine signature verifies', () => {
    expect(verifyTagged(TAGS.results, groupA, body, sig, kp.publicKey)).toBe(true);
    const empty = signTagged(TAGS.prepare, groupB, new Uint8Array(0), other);
    expect(verifyTagged(TAGS.prepare, groupB, new Uint8Array(0), empty, other.publicKey)).toBe(true);
  });

  it('fails for another tag', () => {
    for (const tag of Object.values(TAGS)) {
      if (tag !== TAGS.results) expect(verifyTagged(tag, groupA, body, sig, kp.publicKey)).toBe(false);
    }
  });

  it('fails for another group id', () => {
    expect(verifyTagged(TAGS.results, groupB, body, sig, kp.publicKey)).toBe(false);
  });

  it('fails for a flipped signature byte', () => {
    for (let i = 0; i < 64; i++) {
      for (const bit of [0x01, 0x80]) {
        const bad = new Uint8Array(sig);
        bad[i] ^= bit;
        expect(verifyTagged(TAGS.results, groupA, body, bad, kp.publicKey), `byte ${i} bit ${bit}`).toBe(
          false,
        );
      }
    }
  });

  it('fails for a flipped body byte, or a longer or shorter body', () => {
    for (let i = 0; i < body.length; i++) {
      const bad = new Uint8Array(body);
      bad[i] ^= 0x01;
      expect(verifyTagged(TAGS.results, groupA, bad, sig, kp.publicKey)).toBe(false);
    }
    expect(verifyTagged(TAGS.results, groupA, body.subarray(1), sig, kp.publicKey)).toBe(false);
    expect(verifyTagged(TAGS.results, groupA, new Uint8Array([...body, 0]), sig, kp.publicKey)).toBe(false);
  });

  it('fails for the wrong key', () => {
    expect(verifyTagged(TAGS.results, groupA, body, sig, other.publicKey)).toBe(false);
  });

  it('returns false (does not throw) for a signature of the wrong length', () => {
    expect(verifyTagged(TAGS.results, groupA, body, sig.subarray(0, 63), kp.publicKey)).toBe(false);
    expect(verifyTagged(TAGS.results, groupA, body, new Uint8Array([...sig, 0]), kp.publicKey)).toBe(false);
    expect(verifyTagged(TAGS.results, groupA, body, new Uint8Array(0), kp.publicKey)).toBe(false);
  });

  it('returns false (does not throw) for invalid public key bytes', () => {
    const candidates: Uint8Array[] = [
      new Uint8Array(32).fill(0xff), // y >= p: not a canonical encoding
      fromHex('edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'), // y = p
      kp.publicKey.subarray(0, 31), // wrong lengths
      new Uint8Array([...kp.publicKey, 0]),
      new Uint8Array(0),
    ];
    for (let y = 2; y < 12; y++) {
      const k = new Uint8Array(32);
      k[0] = y; // small y values, several of them not on the curve
      candidates.push(k);
    }
    const flipped = new Uint8Array(kp.publicKey);
    flipped[31] ^= 0x80; // the sign bit of x
    candidates.push(flipped);
    for (const pk of candidates) {
      expect(() => verifyTagged(TAGS.results, groupA, body, sig, pk)).not.toThrow();
      expect(verifyTagged(TAGS.results, groupA, body, sig, pk)).toBe(false);
    }
  });
});

describe('hex', () => {
  it('is lowercase hex of exactly the view, for any offset and length', () => {
    const backing = new Uint8Array(300).map((_, i) => (i * 89 + 7) & 0xff);
    for (const [off, len] of [
      [0, 0],
      [0, 32],
      [1, 31],
      [17, 64],
      [250, 50],
      [0, 300],
    ]) {
      const view = backing.subarray(off, off + len);
      expect(hex(view)).toBe(Buffer.from(backing.slice(off, off + len)).toString('hex'));
    }
    expect(hex(Uint8Array.of(0, 0x0f, 0xa0, 0xff))).toBe('000fa0ff');
    expect(hex(Buffer.from([1, 2]))).toBe('0102');
  });
});

describe('the Ed25519 backend', () => {
  it('is libsodium where sodium-native is installed (it is, in this repository)', () => {
    expect(cryptoBackend).toBe(process.env.DROPBEAR_CRYPTO === 'node' ? 'node:crypto' : 'libsodium');
  });

  it('signs exactly as node:crypto does and verifies alike on real keys, flipped bits and other keys', () => {
    for (let k = 0; k < 40; k++) {
      const kp = keyPairFromSeed(seed(100 + k));
      const other = keyPairFromSeed(seed(200 + k));
      const msg = new Uint8Array(k * 13).map((_, i) => (i * 7 + k) & 0xff);
      const sig = signTagged(TAGS.prepare, groupA, msg, kp);
      const bytes = signedBytes(TAGS.prepare, groupA, msg);
      expect(hex(sig)).toBe(hex(nodeSign(null, bytes, kp.privateKey)));
      const flipped = new Uint8Array(sig);
      flipped[k % 64] ^= 1 << (k % 8);
      const highS = new Uint8Array(sig);
      highS[63] |= 0xf0; // S ≥ L: refused by both
      for (const [s, pk] of [
        [sig, kp],
        [flipped, kp],
        [sig, other],
        [highS, kp],
      ] as const)
        expect(verifyTagged(TAGS.prepare, groupA, msg, s, pk.publicKey)).toBe(
          nodeVerify(null, bytes, pk.privateKey, s),
        );
    }
  });

  it('refuses the identity-point key and its trivial forgery, which node:crypto would accept', () => {
    const identity = new Uint8Array(32);
    identity[0] = 1;
    const forged = new Uint8Array(64);
    forged[0] = 1; // R = identity, S = 0: "verifies" any message under the identity key
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), identity]);
    const openssl = nodeVerify(
      null,
      Buffer.from('x'),
      createPublicKey({ key: spki, format: 'der', type: 'spki' }),
      forged,
    );
    expect(openssl).toBe(true);
    if (cryptoBackend === 'libsodium')
      expect(verifyTagged(TAGS.request, groupA, body, forged, identity)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------------
// The node:crypto path must refuse what libsodium refuses: nodes of one group may run either backend.

const sodium = createRequire(import.meta.url)('sodium-native') as {
  crypto_sign_verify_detached(sig: Uint8Array, msg: Uint8Array, pk: Uint8Array): boolean;
};
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const P = 2n ** 255n - 19n;
const leInt = (b: Uint8Array) => b.reduceRight((x, v) => (x << 8n) | BigInt(v), 0n);
const le32 = (x: bigint) => {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++, x >>= 8n) out[i] = Number(x & 0xffn);
  return out;
};
const sha512 = (...parts: Uint8Array[]) => {
  const h = createHash('sha512');
  for (const x of parts) h.update(x);
  return new Uint8Array(h.digest());
};
const concat = (a: Uint8Array, b: Uint8Array) => {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
};
/** OpenSSL's plain RFC 8032 check (what node:crypto's path ran before), false for a key it cannot load. */
const opensslVerifies = (msg: Uint8Array, sig: Uint8Array, pk: Uint8Array) => {
  try {
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pk]);
    return nodeVerify(null, msg, createPublicKey({ key: spki, format: 'der', type: 'spki' }), sig);
  } catch {
    return false;
  }
};
const nodePathVerifies = (msg: Uint8Array, sig: Uint8Array, pk: Uint8Array) => {
  try {
    return verifyNodeCrypto(msg, sig, pk);
  } catch {
    return false;
  }
};
/** The identity point as R (y = 1). */
const IDENTITY = le32(1n);
/**
 * The y encodings of the points of small order (RFC 8032's curve: orders 1, 2, 4, 8, 8) and the
 * non-canonical p and p + 1, written out here rather than taken from the code under test.
 */
const SMALL_ORDER = [
  1n,
  P - 1n,
  0n,
  leInt(Buffer.from('26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05', 'hex')),
  leInt(Buffer.from('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', 'hex')),
  P,
  P + 1n,
].map(le32);
const withSignBit = (e: Uint8Array) => {
  const x = new Uint8Array(e);
  x[31] |= 0x80;
  return x;
};

describe("libsodium's rules on the node:crypto path", () => {
  it('refuses R = identity with S = k·a, which the holder of any key can make and OpenSSL accepts', () => {
    for (let i = 0; i < 8; i++) {
      const kp = keyPairFromSeed(seed(60 + i));
      const msg = signedBytes(TAGS.modelUpdate, groupA, new Uint8Array([i, 1, 2, 3]));
      // The secret scalar (RFC 8032 5.1.5) and the challenge k = H(R ‖ A ‖ M) mod L.
      const h = sha512(kp.seed).subarray(0, 32);
      h[0] &= 248;
      h[31] &= 127;
      h[31] |= 64;
      const a = leInt(h);
      const k = leInt(sha512(IDENTITY, kp.publicKey, msg)) % L;
      const forged = concat(IDENTITY, le32((k * a) % L));
      expect(opensslVerifies(msg, forged, kp.publicKey)).toBe(true);
      expect(sodium.crypto_sign_verify_detached(forged, msg, kp.publicKey)).toBe(false);
      expect(nodePathVerifies(msg, forged, kp.publicKey)).toBe(false);
      expect(ed25519Refused(forged, kp.publicKey)).toBe(true);
      expect(verifyTagged(TAGS.modelUpdate, groupA, new Uint8Array([i, 1, 2, 3]), forged, kp.publicKey)).toBe(
        false,
      );
    }
  });

  it('refuses every key of small order, under which OpenSSL accepts R = identity, S = 0 for some message', () => {
    const zeroS = concat(IDENTITY, new Uint8Array(32));
    let opensslTook = 0;
    for (const base of SMALL_ORDER)
      for (const pk of [base, withSignBit(base)]) {
        expect(ed25519KeyProblem(pk)).not.toBeNull();
        // With S = 0 the equation reads k·A = identity: true for one challenge in ord(A).
        for (let m = 0; m < 64; m++) {
          const msg = new Uint8Array([m, 7]);
          expect(sodium.crypto_sign_verify_detached(zeroS, msg, pk)).toBe(false);
          expect(nodePathVerifies(msg, zeroS, pk)).toBe(false);
          if (opensslVerifies(msg, zeroS, pk)) {
            opensslTook++;
            break;
          }
        }
      }
    // At least the five canonical encodings (sign bit clear) are points OpenSSL loads and accepts.
    expect(opensslTook).toBeGreaterThanOrEqual(5);
  });

  it('refuses R of small order and S at or above the group order, as libsodium does', () => {
    const kp = keyPairFromSeed(seed(90));
    const msg = signedBytes(TAGS.prepare, groupA, body);
    const good = nodeSign(null, msg, kp.privateKey);
    expect(nodePathVerifies(msg, good, kp.publicKey)).toBe(true);
    for (const base of SMALL_ORDER)
      for (const r of [base, withSignBit(base)]) {
        const sig = concat(r, good.subarray(32));
        expect(ed25519Refused(sig, kp.publicKey)).toBe(true);
        expect(nodePathVerifies(msg, sig, kp.publicKey)).toBe(false);
      }
    const highS = concat(good.subarray(0, 32), le32(leInt(good.subarray(32)) + L));
    expect(sodium.crypto_sign_verify_detached(highS, msg, kp.publicKey)).toBe(false);
    expect(nodePathVerifies(msg, highS, kp.publicKey)).toBe(false);
  });

  it('agrees with libsodium on real keys: good, flipped and cross-key signatures, and non-canonical keys', () => {
    for (let k = 0; k < 40; k++) {
      const kp = keyPairFromSeed(seed(120 + k));
      const other = keyPairFromSeed(seed(180 + k));
      const msg = new Uint8Array(k * 11 + 1).map((_, i) => (i * 5 + k) & 0xff);
      const sig = new Uint8Array(nodeSign(null, msg, kp.privateKey));
      const flipped = new Uint8Array(sig);
      flipped[(k * 3) % 64] ^= 1 << (k % 8);
      // y + p where that still fits in 255 bits: the same point, encoded non-canonically.
      const y = leInt(kp.publicKey) & ((1n << 255n) - 1n);
      const nonCanonical = y + P < 1n << 255n ? le32(y + P) : null;
      for (const [s, pk] of [
        [sig, kp.publicKey],
        [flipped, kp.publicKey],
        [sig, other.publicKey],
        ...(nonCanonical ? [[sig, nonCanonical] as const] : []),
      ] as const)
        expect(nodePathVerifies(msg, s, pk)).toBe(sodium.crypto_sign_verify_detached(s, msg, pk));
      expect(nodePathVerifies(msg, sig, kp.publicKey)).toBe(true);
      expect(ed25519KeyProblem(kp.publicKey)).toBeNull();
    }
    // Every y below 19 has a non-canonical twin y + p: those that are points are refused as keys.
    for (let y = 2n; y < 19n; y++)
      expect(ed25519KeyProblem(le32(y + P))).toBe('a non-canonical point encoding');
  });
});

describe('SHA-256', () => {
  const nodeSha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
  const bytesOf = (n: number, k: number) => new Uint8Array(n).map((_, i) => (i * 31 + k * 7) & 0xff);

  it('equals node:crypto on inputs from 0 bytes to 1 MiB, whole or in parts', () => {
    // 447–449 straddle the switch from libsodium to node:crypto (127–129 the one before it).
    const sizes = [
      0,
      1,
      31,
      32,
      55,
      56,
      63,
      64,
      65,
      97,
      127,
      128,
      129,
      255,
      256,
      447,
      448,
      449,
      1000,
      4096,
      4097,
      70_000,
      (1 << 20) + 1,
    ];
    for (const [k, n] of sizes.entries()) {
      const b = bytesOf(n, k);
      expect(hex(sha256(b))).toBe(nodeSha(b));
      const cut = [0, n >> 2, n >> 1, n];
      const parts = [
        b.subarray(cut[0], cut[1]),
        b.subarray(cut[1], cut[2]),
        new Uint8Array(0),
        b.subarray(cut[2]),
      ];
      expect(hex(sha256Parts(...parts))).toBe(nodeSha(b));
      expect(hex(sha256Of2(b.subarray(0, cut[1]), b.subarray(cut[1])))).toBe(nodeSha(b));
      expect(hex(sha256Of3(parts[0], parts[1], b.subarray(cut[2])))).toBe(nodeSha(b));
      const digest = new Uint8Array(Buffer.from(nodeSha(b), 'hex'));
      expect(sha256Matches(b, digest)).toBe(true);
      digest[k % 32] ^= 1;
      expect(sha256Matches(b, digest)).toBe(false);
    }
    expect(hex(sha256Parts())).toBe(nodeSha(new Uint8Array(0)));
  });

  it('gives every digest bytes of its own: later hashes (past many 8 KiB slabs) leave earlier ones intact', () => {
    const kept: [Uint8Array, string][] = [];
    for (let k = 0; k < 1000; k++) {
      const b = bytesOf(40 + (k % 90), k);
      const d = k % 2 === 0 ? sha256(b) : sha256Parts(b.subarray(0, 7), b.subarray(7));
      expect(d.length).toBe(32);
      kept.push([d, nodeSha(b)]);
    }
    for (const [d, want] of kept) expect(hex(d)).toBe(want);
    // A digest used as an input (the scratch buffer of sha256Parts is reused) hashes as its own bytes.
    const a = sha256(bytesOf(10, 1));
    expect(hex(sha256Parts(a, a))).toBe(nodeSha(new Uint8Array([...a, ...a])));
    // And one mutated by its holder changes nothing else.
    const x = sha256(bytesOf(5, 2));
    const y = sha256(bytesOf(5, 3));
    const yHex = hex(y);
    x.fill(0);
    expect(hex(y)).toBe(yHex);
  });
});
