/**
 * A genesis whose keys let one party hold several votes proves nothing, and every verifier refuses it:
 * - one secret a behind three distinct keys a·B, a·B + T₂ and a·B + T₄ (T₂, T₄ of order 2 and 4). Signatures
 *   are checked without the cofactor, so a signature by a under a·B + T verifies whenever the challenge is
 *   a multiple of T's order, which the signer gets by retrying its nonce. Such keys are canonical and not
 *   of small order, so they passed every check before ed25519HasTorsion;
 * - one key listed for two nodes, which genesisProblem refused but verifyCertificate and the SDK's client
 *   never asked.
 * Both backends (libsodium and node:crypto) take those signatures: the attack is real, the check is what
 * stops it.
 */
import { createHash } from 'node:crypto';
import { Point } from '@noble/ed25519';
import { describe, expect, it } from 'vitest';
import {
  buildCertificates,
  certificateToJson,
  type VerifyResult,
  verifyCertificate,
} from '../../src/certificate/index.ts';
import { DropbearClient } from '../../src/client/index.ts';
import {
  buildTree,
  ed25519HasTorsion,
  encode,
  type Genesis,
  genesisProblem,
  groupIdOf,
  keyPairFromSeed,
  leafHash,
  type Outcome,
  Outcome as OutcomeCodec,
  type Receipt,
  Receipt as ReceiptCodec,
  sha256,
  signedBytes,
  signTagged,
  TAGS,
  verifyTagged,
} from '../../src/protocol/index.ts';

const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const littleEndian = (b: Uint8Array): bigint => b.reduceRight((x, byte) => (x << 8n) | BigInt(byte), 0n);
const bytes32 = (x: bigint): Uint8Array => {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++, x >>= 8n) out[i] = Number(x & 0xffn);
  return out;
};
const sha512 = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};

/** The secret scalar behind keyPairFromSeed(seed)'s key, as RFC 8032 derives it. */
function secretScalar(seed: Uint8Array): bigint {
  const h = sha512(seed).slice(0, 32);
  h[0] &= 248;
  h[31] &= 127;
  h[31] |= 64;
  return littleEndian(h) % L;
}

// Order 2: (0, −1). Order 4: (√−1, 0), whose encoding is all zeros.
const T2 = Point.fromBytes(bytes32(2n ** 255n - 19n - 1n));
const T4 = Point.fromBytes(new Uint8Array(32));

/** A signature by secret `a` under `key` = a·B + T (T of order `order`): retry the nonce until h ≡ 0 (mod order). */
function signUnder(a: bigint, key: Uint8Array, order: bigint, message: Uint8Array): Uint8Array {
  for (let i = 0; ; i++) {
    const r = littleEndian(sha512(new Uint8Array([i & 0xff, i >> 8]), message)) % L;
    const R = Point.BASE.multiply(r).toBytes();
    const h = littleEndian(sha512(R, key, message)) % L;
    if (h % order !== 0n) continue;
    const sig = new Uint8Array(64);
    sig.set(R, 0);
    sig.set(bytes32((r + h * a) % L), 32);
    return sig;
  }
}

function genesisWith(keys: Uint8Array[]): Genesis {
  return {
    version: 1,
    name: 'keys',
    f: 1,
    nodes: keys.map((publicKey, id) => ({
      id,
      publicKey,
      address: `127.0.0.1:${7000 + id}`,
      owner: `owner${id}`,
      modelName: `m${id}`,
      modelDigest: sha256(new Uint8Array([id])),
      fee: 1,
    })),
    policy: { kind: 'top1', minAgree: 2 },
    treasury: keyPairFromSeed(new Uint8Array(32).fill(90)).publicKey,
    balances: [],
    params: { expiryMs: 60_000, maxClockSkewMs: 1000, maxInputBytes: 1 << 20, inputType: 'image/jpeg' },
  };
}

/** A certificate for an outcome nobody asked for, "voted" and signed by nodes 1–3 with `sign`. */
function madeUp(
  genesis: Genesis,
  sign: (node: number, message: Uint8Array, groupId: Uint8Array, body: Uint8Array) => Uint8Array,
) {
  const groupId = groupIdOf(genesis);
  const outcome: Outcome = {
    requestId: sha256(new TextEncoder().encode('never sent')),
    client: keyPairFromSeed(new Uint8Array(32).fill(91)).publicKey,
    inputDigest: sha256(new TextEncoder().encode('any input')),
    policy: { kind: 'top1', minAgree: 2 },
    votes: [1, 2, 3].map((node) => ({
      node,
      modelDigest: genesis.nodes[node].modelDigest,
      result: { kind: 'class' as const, top: [{ label: 666, score: 1_000_000 }] },
    })),
    decision: { kind: 'label', label: 666 },
    fee: 3,
  };
  const tree = buildTree([leafHash(encode(OutcomeCodec, outcome))]);
  const receipt: Receipt = {
    groupId,
    seq: 1,
    batchDigest: sha256(new Uint8Array([9])),
    prevReceipt: groupId,
    resultsRoot: tree.root,
    resultsCount: 1,
  };
  const body = encode(ReceiptCodec, receipt);
  const message = signedBytes(TAGS.receipt, groupId, body);
  const signatures = [1, 2, 3].map((node) => ({
    node,
    signature: sign(node, message, groupId, body),
    view: null,
  }));
  const [cert] = buildCertificates([outcome], tree, receipt, signatures, 3);
  return { cert, groupId, body, signatures };
}

const reasonOf = (r: VerifyResult) => (r.ok ? 'ok' : r.reason);

describe('one secret behind three keys (small-order components)', () => {
  const honest = keyPairFromSeed(new Uint8Array(32).fill(1));
  const seed = new Uint8Array(32).fill(2);
  const a = secretScalar(seed);
  const A = Point.BASE.multiply(a);
  const variants = [
    { key: A.toBytes(), order: 1n },
    { key: A.add(T2).toBytes(), order: 2n },
    { key: A.add(T4).toBytes(), order: 4n },
  ];
  const genesis = genesisWith([honest.publicKey, ...variants.map((v) => v.key)]);
  const { cert, groupId, body, signatures } = madeUp(genesis, (node, message) =>
    signUnder(a, variants[node - 1].key, variants[node - 1].order, message),
  );

  it('the keys are distinct and each signature verifies under its key (the attack is real)', () => {
    expect(A.toBytes()).toEqual(keyPairFromSeed(seed).publicKey);
    expect(new Set(variants.map((v) => Buffer.from(v.key).toString('hex'))).size).toBe(3);
    for (const s of signatures)
      expect(verifyTagged(TAGS.receipt, groupId, body, s.signature, genesis.nodes[s.node].publicKey)).toBe(
        true,
      );
  });

  it('genesisProblem names the small-order component, and the verifier refuses with bad-genesis', () => {
    expect(ed25519HasTorsion(variants[0].key)).toBe(false);
    expect(ed25519HasTorsion(variants[1].key)).toBe(true);
    expect(ed25519HasTorsion(variants[2].key)).toBe(true);
    expect(genesisProblem(genesis)).toMatch(/node 2's public key has a component of small order/);
    const r = verifyCertificate(cert, genesis);
    expect(reasonOf(r)).toBe('bad-genesis');
    const json = JSON.parse(JSON.stringify(certificateToJson(cert)));
    expect(reasonOf(verifyCertificate(json, genesis))).toBe('bad-genesis');
  });
});

describe('one key listed for three nodes', () => {
  const honest = keyPairFromSeed(new Uint8Array(32).fill(1));
  const one = keyPairFromSeed(new Uint8Array(32).fill(3));
  const genesis = genesisWith([honest.publicKey, one.publicKey, one.publicKey, one.publicKey]);
  const { cert, groupId, body, signatures } = madeUp(genesis, (_node, _message, groupId, body) =>
    signTagged(TAGS.receipt, groupId, body, one),
  );

  it('the verifier refuses it (bad-genesis) although each signature verifies under its node key', () => {
    for (const s of signatures)
      expect(verifyTagged(TAGS.receipt, groupId, body, s.signature, genesis.nodes[s.node].publicKey)).toBe(
        true,
      );
    const r = verifyCertificate(cert, genesis);
    expect(reasonOf(r)).toBe('bad-genesis');
    expect(r.ok ? '' : r.message).toMatch(/public key of an earlier node/);
  });

  it("the SDK's client refuses the genesis: CLIENT_CONFIG", () => {
    expect(
      () =>
        new DropbearClient({
          genesis,
          nodes: [{ id: 0, api: 'http://127.0.0.1:1' }],
          key: keyPairFromSeed(new Uint8Array(32).fill(4)),
        }),
    ).toThrow(/CLIENT_CONFIG|the genesis cannot run a group/);
  });
});

describe('keys made from secrets', () => {
  it('have no small-order component (64 seeds)', () => {
    for (let i = 0; i < 64; i++)
      expect(ed25519HasTorsion(keyPairFromSeed(new Uint8Array(32).fill(i + 100)).publicKey)).toBe(false);
  });
});
