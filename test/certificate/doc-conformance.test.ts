/**
 * docs/certificate.md is written so that a verifier in another language gets exactly the verdicts of
 * verifyCertificate. This file holds a second verifier written from the document alone (`docVerify`:
 * its own strict JSON reading, its own canonical encoder for Outcome, Receipt and PreparedReceipt, the
 * §6 path algorithm, the §7 decision rules, Ed25519 through @noble/ed25519, an RFC 8032 library) and
 * checks it against the reference on genuine certificates and on the places where the document used to
 * leave room for another reading (review of 2026-12-05):
 * - Ed25519: RFC 8032 lets a verifier check the cofactored equation [8]SB = [8]R + [8]kA, and libraries
 *   do (noble does, in both of its modes); the reference (libsodium, OpenSSL) checks SB − kA = R by
 *   encoding. A faulty node's signature with R = rB + T (T of small order) splits the two readings.
 * - bad-genesis also covers balances that add up to more than 2^53 − 1 and a genesis with no nodes.
 * - Which failure the strict reader reports when a certificate has several problems.
 * - JSON numbers are read as JSON.parse reads them: 1.0, 1e0 and -0 are integers.
 * - fee, scores and the order of `top` are not checked.
 * The document now says each of these; the tests pin the reference's behaviour to what it says.
 */
import { createHash } from 'node:crypto';
import { hashes, verify as nobleVerify, Point } from '@noble/ed25519';
import { beforeAll, describe, expect, it } from 'vitest';
import { certificateToJson, type VerifyFailure, verifyCertificate } from '../../src/certificate/index.ts';
import {
  buildTree,
  type Certificate,
  encode,
  type Genesis,
  groupIdOf,
  type KeyPair,
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
} from '../../src/protocol/index.ts';
import { simulate } from '../../src/sim/world.ts';

const sha512 = (m: Uint8Array): Uint8Array<ArrayBuffer> =>
  new Uint8Array(createHash('sha512').update(m).digest());
hashes.sha512 = sha512;

// ---------------------------------------------------------------------------------------------------------
// A verifier from docs/certificate.md alone

type Obj = Record<string, unknown>;
class Refused extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}
const malformed = (): never => {
  throw new Refused('malformed');
};

function obj(j: unknown, fields: string[]): Obj {
  if (typeof j !== 'object' || j === null || Array.isArray(j)) return malformed();
  for (const k of Object.keys(j)) if (!fields.includes(k)) malformed();
  for (const k of fields) if (!Object.hasOwn(j, k)) malformed();
  return j as Obj;
}
function uintJ(j: unknown): number {
  return typeof j === 'number' && Number.isInteger(j) && j >= 0 && j <= 2 ** 53 - 1 ? j : malformed();
}
function sintJ(j: unknown): number {
  return typeof j === 'number' && Number.isInteger(j) && Math.abs(j) <= 2 ** 52 - 1 ? j : malformed();
}
function bytesJ(j: unknown, n: number): Uint8Array {
  if (typeof j !== 'string' || !/^[A-Za-z0-9_-]*$/.test(j) || j.length % 4 === 1) return malformed();
  const b = Buffer.from(j, 'base64url');
  if (b.toString('base64url') !== j || b.length !== n) malformed();
  return new Uint8Array(b);
}
function arrJ(j: unknown, max: number): unknown[] {
  return Array.isArray(j) && j.length <= max ? j : malformed();
}
/** A sortedArray read the way a streaming reader does: each item, then its order against the one before. */
function sortedJ<T extends { node: number }>(j: unknown, item: (x: unknown) => T, dup: string): T[] {
  const out: T[] = [];
  for (const x of arrJ(j, 256)) {
    const v = item(x);
    if (out.length > 0 && out[out.length - 1].node >= v.node) throw new Refused(dup);
    out.push(v);
  }
  return out;
}
function unionJ(j: unknown, variants: Record<string, string[]>): Obj & { kind: string } {
  const kind = (j as Obj | null)?.kind;
  if (typeof kind !== 'string' || !Object.hasOwn(variants, kind)) return malformed();
  return obj(j, ['kind', ...variants[kind]]) as Obj & { kind: string };
}

interface DResult {
  kind: string;
  labels: number[];
  values: number[];
  scores: number[];
}
function resultJ(j: unknown): DResult {
  const u = unionJ(j, { class: ['top'], vector: ['values'] });
  if (u.kind === 'class') {
    const top = arrJ(u.top, 16).map((t) => obj(t, ['label', 'score']));
    return {
      kind: 'class',
      labels: top.map((t) => uintJ(t.label)),
      scores: top.map((t) => uintJ(t.score)),
      values: [],
    };
  }
  return { kind: 'vector', labels: [], scores: [], values: arrJ(u.values, 4096).map(sintJ) };
}
function decisionJ(j: unknown): { kind: string; label: number; values: number[] } {
  const u = unionJ(j, { label: ['label'], vector: ['values'], noAgreement: [] });
  return {
    kind: u.kind,
    label: u.kind === 'label' ? uintJ(u.label) : 0,
    values: u.kind === 'vector' ? arrJ(u.values, 4096).map(sintJ) : [],
  };
}

class W {
  b: number[] = [];
  u(v: number): this {
    while (v >= 128) {
      this.b.push((v % 128) | 128);
      v = Math.floor(v / 128);
    }
    this.b.push(v);
    return this;
  }
  s(v: number): this {
    return this.u(v >= 0 ? 2 * v : -2 * v - 1);
  }
  raw(x: Uint8Array): this {
    for (const y of x) this.b.push(y);
    return this;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.b);
  }
}
const sha = (...parts: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;
const tagged = (tag: string, groupId: Uint8Array, body: Uint8Array) =>
  new W().u(tag.length).raw(new TextEncoder().encode(tag)).raw(groupId).raw(body).bytes();

const L = 2n ** 252n + 27742317777372353535851937790883648493n;
/** Ed25519 as RFC 8032 allows it (noble: cofactored), plus the refusals the document lists. */
function edVerifyRfc(sig: Uint8Array, msg: Uint8Array, pk: Uint8Array): boolean {
  try {
    if (Point.fromBytes(sig.subarray(0, 32), true).isSmallOrder()) return false;
    return nobleVerify(sig, msg, pk, { zip215: false });
  } catch {
    return false;
  }
}

function genesisOk(g: Genesis): boolean {
  const n = g.nodes.length;
  if (n < 3 * g.f + 1) return false;
  const seen = new Set<string>();
  for (const [i, node] of g.nodes.entries()) {
    if (node.id !== i) return false;
    try {
      const A = Point.fromBytes(node.publicKey, false);
      if (A.isSmallOrder() || !A.isTorsionFree()) return false;
    } catch {
      return false;
    }
    const k = Buffer.from(node.publicKey).toString('hex');
    if (seen.has(k)) return false;
    seen.add(k);
  }
  return true;
}

/** docs/certificate.md §8, steps 0–11, on a certificate's JSON (as JSON.parse gives it). */
function docVerify(
  j: unknown,
  genesis: Genesis,
  edVerify: (sig: Uint8Array, msg: Uint8Array, pk: Uint8Array) => boolean = edVerifyRfc,
): 'ok' | string {
  try {
    if (!genesisOk(genesis)) return 'bad-genesis';
    const top = j as Obj;
    const v1 =
      top?.version === 1 &&
      Array.isArray(top.signatures) &&
      top.signatures.every((s) => typeof s === 'object' && s !== null && !Object.hasOwn(s, 'view'));
    const c = obj(j, ['version', 'outcome', 'leafIndex', 'path', 'receipt', 'signatures']);
    const version = uintJ(c.version);
    const o = obj(c.outcome, ['requestId', 'client', 'inputDigest', 'policy', 'votes', 'decision', 'fee']);
    const requestId = bytesJ(o.requestId, 32);
    const client = bytesJ(o.client, 32);
    const inputDigest = bytesJ(o.inputDigest, 32);
    const p = unionJ(o.policy, { top1: ['minAgree'], tolerance: ['minAgree', 'epsilon'] });
    const policy = {
      kind: p.kind,
      minAgree: uintJ(p.minAgree),
      epsilon: p.kind === 'tolerance' ? uintJ(p.epsilon) : 0,
    };
    const votes = sortedJ(
      o.votes,
      (x) => {
        const v = obj(x, ['node', 'modelDigest', 'result']);
        return { node: uintJ(v.node), modelDigest: bytesJ(v.modelDigest, 32), result: resultJ(v.result) };
      },
      'duplicate-voter',
    );
    const decision = decisionJ(o.decision);
    const fee = uintJ(o.fee);
    const leafIndex = uintJ(c.leafIndex);
    const path = arrJ(c.path, 64).map((x) => bytesJ(x, 32));
    const r = obj(c.receipt, ['groupId', 'seq', 'batchDigest', 'prevReceipt', 'resultsRoot', 'resultsCount']);
    const receipt = {
      groupId: bytesJ(r.groupId, 32),
      seq: uintJ(r.seq),
      batchDigest: bytesJ(r.batchDigest, 32),
      prevReceipt: bytesJ(r.prevReceipt, 32),
      resultsRoot: bytesJ(r.resultsRoot, 32),
      resultsCount: uintJ(r.resultsCount),
    };
    const sigs = sortedJ(
      c.signatures,
      (x) => {
        const s = obj(x, v1 ? ['node', 'signature'] : ['node', 'signature', 'view']);
        return {
          node: uintJ(s.node),
          signature: bytesJ(s.signature, 64),
          view: v1 || s.view === null ? null : uintJ(s.view),
        };
      },
      'duplicate-signer',
    );
    if (version !== 2 && !v1) return 'unsupported-version';
    const n = genesis.nodes.length;
    const f = genesis.f;
    const q = Math.floor((n + f) / 2) + 1;
    if (!same(receipt.groupId, groupIdOf(genesis))) return 'wrong-group';
    if (votes.some((v) => v.node >= n)) return 'unknown-voter';
    if (votes.length < q) return 'insufficient-votes';
    if (policy.minAgree < f + 1 || policy.minAgree > n) return 'bad-policy';
    // §7
    let want: { kind: string; label: number; values: number[] } = {
      kind: 'noAgreement',
      label: 0,
      values: [],
    };
    if (policy.kind === 'top1') {
      const counts = new Map<number, number>();
      for (const v of votes)
        if (v.result.kind === 'class' && v.result.labels.length > 0)
          counts.set(v.result.labels[0], (counts.get(v.result.labels[0]) ?? 0) + 1);
      const most = Math.max(0, ...counts.values());
      const winners = [...counts].filter(([, k]) => k === most);
      if (counts.size > 0 && winners.length === 1 && most >= policy.minAgree)
        want = { kind: 'label', label: winners[0][0], values: [] };
    } else {
      const vs = votes.filter((v) => v.result.kind === 'vector').map((v) => v.result.values);
      const close = (a: number[], b: number[]) =>
        a.length === b.length && a.every((x, k) => Math.abs(x - b[k]) <= policy.epsilon);
      const cs = vs.map((a) => vs.filter((b) => close(a, b)).length);
      const best = cs.indexOf(Math.max(...cs));
      if (vs.length > 0 && cs[best] >= policy.minAgree) want = { kind: 'vector', label: 0, values: vs[best] };
    }
    if (
      want.kind !== decision.kind ||
      want.label !== decision.label ||
      want.values.length !== decision.values.length ||
      want.values.some((x, i) => x !== decision.values[i])
    )
      return 'wrong-decision';
    // §6
    const ow = new W().raw(requestId).raw(client).raw(inputDigest);
    ow.u(policy.kind === 'top1' ? 0 : 1).u(policy.minAgree);
    if (policy.kind === 'tolerance') ow.u(policy.epsilon);
    ow.u(votes.length);
    for (const v of votes) {
      ow.u(v.node).raw(v.modelDigest);
      if (v.result.kind === 'class') {
        ow.u(0).u(v.result.labels.length);
        for (let i = 0; i < v.result.labels.length; i++) ow.u(v.result.labels[i]).u(v.result.scores[i]);
      } else {
        ow.u(1).u(v.result.values.length);
        for (const x of v.result.values) ow.s(x);
      }
    }
    ow.u(['label', 'vector', 'noAgreement'].indexOf(decision.kind));
    if (decision.kind === 'label') ow.u(decision.label);
    if (decision.kind === 'vector') {
      ow.u(decision.values.length);
      for (const x of decision.values) ow.s(x);
    }
    ow.u(fee);
    let rr = sha(Uint8Array.of(0), ow.bytes());
    let fn = leafIndex;
    let sn = receipt.resultsCount - 1;
    if (leafIndex >= receipt.resultsCount) return 'bad-proof';
    for (const p of path) {
      if (sn === 0) return 'bad-proof';
      if (fn % 2 === 1 || fn === sn) {
        rr = sha(Uint8Array.of(1), p, rr);
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      } else rr = sha(Uint8Array.of(1), rr, p);
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    if (sn !== 0 || !same(rr, receipt.resultsRoot)) return 'bad-proof';
    const views = new Set(sigs.filter((s) => s.view !== null).map((s) => s.view));
    if (views.size > 1) return 'mixed-views';
    const rb = new W()
      .raw(receipt.groupId)
      .u(receipt.seq)
      .raw(receipt.batchDigest)
      .raw(receipt.prevReceipt)
      .raw(receipt.resultsRoot)
      .u(receipt.resultsCount)
      .bytes();
    for (const s of sigs) {
      if (s.node >= n) return 'unknown-signer';
      const msg =
        s.view === null
          ? tagged('dropbear/v1/receipt', receipt.groupId, rb)
          : tagged('dropbear/v1/prepared-receipt', receipt.groupId, new W().u(s.view).raw(sha(rb)).bytes());
      if (!edVerify(s.signature, msg, genesis.nodes[s.node].publicKey)) return 'bad-signature';
    }
    if (sigs.length < q) return 'insufficient-signatures';
    return 'ok';
  } catch (e) {
    if (e instanceof Refused) return e.reason;
    throw e;
  }
}

const reference = (j: unknown, g: Genesis): VerifyFailure | 'ok' => {
  const r = verifyCertificate(j, g);
  return r.ok ? 'ok' : r.reason;
};

// ---------------------------------------------------------------------------------------------------------
// Certificates made here: a group of four (f = 1, q = 3) with known keys, one batch of two outcomes

const seed = (i: number) => {
  const s = new Uint8Array(32);
  s[0] = 7;
  s[1] = i;
  return s;
};
const keys: KeyPair[] = [0, 1, 2, 3].map((i) => keyPairFromSeed(seed(i)));
const te = (s: string) => new TextEncoder().encode(s);

function genesisOf(balances: { client: Uint8Array; amount: number }[] = []): Genesis {
  return {
    version: 1,
    name: 'conformance',
    f: 1,
    nodes: keys.map((k, id) => ({
      id,
      publicKey: k.publicKey,
      address: `n${id}`,
      owner: `o${id}`,
      modelName: `m${id}`,
      modelDigest: sha256(te(`m${id}`)),
      fee: 1,
    })),
    policy: { kind: 'top1', minAgree: 2 },
    treasury: keyPairFromSeed(new Uint8Array(32).fill(9)).publicKey,
    balances,
    params: { expiryMs: 60_000, maxClockSkewMs: 1000, maxInputBytes: 1 << 20, inputType: 'x' },
  };
}

/** A certificate for `outcome` (leaf 0 of 2), signed plainly by nodes 0, 1, 2 with `sign`. */
function certify(
  genesis: Genesis,
  outcome: Outcome,
  sign: (node: number, msg: Uint8Array) => Uint8Array = (node, msg) =>
    signTagged(TAGS.receipt, groupIdOf(genesis), msg, keys[node]),
): Certificate {
  const groupId = groupIdOf(genesis);
  const tree = buildTree([leafHash(encode(OutcomeCodec, outcome)), sha256(te('other leaf'))]);
  const receipt: Receipt = {
    groupId,
    seq: 1,
    batchDigest: sha256(te('batch')),
    prevReceipt: groupId,
    resultsRoot: tree.root,
    resultsCount: 2,
  };
  const rb = encode(ReceiptCodec, receipt);
  return {
    version: 2,
    outcome,
    leafIndex: 0,
    path: tree.path(0),
    receipt,
    signatures: [0, 1, 2].map((node) => ({ node, signature: sign(node, rb), view: null })),
  };
}

function outcomeOf(over: Partial<Outcome> = {}): Outcome {
  const vote = (node: number, label: number, score: number) => ({
    node,
    modelDigest: sha256(te(`m${node}`)),
    result: { kind: 'class' as const, top: [{ label, score }] },
  });
  return {
    requestId: sha256(te('request')),
    client: keyPairFromSeed(new Uint8Array(32).fill(8)).publicKey,
    inputDigest: sha256(te('input')),
    policy: { kind: 'top1', minAgree: 2 },
    votes: [vote(0, 7, 900_000), vote(1, 7, 800_000), vote(2, 3, 700_000)],
    decision: { kind: 'label', label: 7 },
    fee: 3,
    ...over,
  };
}

const asJson = (c: Certificate) => JSON.parse(JSON.stringify(certificateToJson(c)));

// ---------------------------------------------------------------------------------------------------------

describe('a verifier written from docs/certificate.md agrees with verifyCertificate', () => {
  let sim: ReturnType<typeof simulate>;
  beforeAll(() => {
    sim = simulate({ nodes: 4, requests: 12, seed: 21 });
  });

  it('on genuine certificates of a simulated run, and on single changes to them', () => {
    const g = sim.group.genesis;
    expect(sim.certificates.size).toBeGreaterThan(0);
    for (const c of sim.certificates.values()) {
      const j = asJson(c);
      expect(reference(j, g)).toBe('ok');
      expect(docVerify(j, g)).toBe('ok');
      const changes: unknown[] = [
        { ...j, foo: 1 },
        { ...j, version: 3 },
        { ...j, leafIndex: j.leafIndex + 1 },
        { ...j, signatures: j.signatures.slice(1) },
        { ...j, signatures: [j.signatures[0], ...j.signatures] },
        { ...j, outcome: { ...j.outcome, votes: [j.outcome.votes[0], ...j.outcome.votes] } },
        { ...j, outcome: { ...j.outcome, fee: j.outcome.fee + 1 } },
        { ...j, receipt: { ...j.receipt, seq: j.receipt.seq + 1 } },
        { ...j, outcome: { ...j.outcome, decision: { kind: 'noAgreement' } } },
        { ...j, outcome: { ...j.outcome, policy: { kind: 'top1', minAgree: 5 } } },
      ];
      for (const x of changes) expect(docVerify(x, g)).toBe(reference(x, g));
    }
  });
});

describe('where the document used to leave room (now stated, pinned here)', () => {
  const genesis = genesisOf();

  it('Ed25519 is checked cofactorless: a signature with R = rB + T2 is refused, though RFC 8032 (cofactored) takes it', () => {
    const groupId = groupIdOf(genesis);
    // Node 0 (faulty) signs with a nonce point that has a component of order 2.
    const a = (() => {
      const h = sha512(keys[0].seed).slice(0, 32);
      h[0] &= 248;
      h[31] &= 127;
      h[31] |= 64;
      return h.reduceRight((x, b) => (x << 8n) | BigInt(b), 0n) % L;
    })();
    const T2 = Point.fromBytes(
      Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 0xec : i === 31 ? 0x7f : 0xff)),
    );
    const torsionSign = (msg: Uint8Array): Uint8Array => {
      const r = 12345678901234567890n;
      const R = Point.BASE.multiply(r).add(T2).toBytes();
      const k =
        sha512(Buffer.concat([R, keys[0].publicKey, msg])).reduceRight((x, b) => (x << 8n) | BigInt(b), 0n) %
        L;
      const S = (r + k * a) % L;
      const sig = new Uint8Array(64);
      sig.set(R, 0);
      for (let i = 0, s = S; i < 32; i++, s >>= 8n) sig[32 + i] = Number(s & 0xffn);
      return sig;
    };
    const cert = certify(genesis, outcomeOf(), (node, rb) =>
      node === 0
        ? torsionSign(signedBytes(TAGS.receipt, groupId, rb))
        : signTagged(TAGS.receipt, groupId, rb, keys[node]),
    );
    const j = asJson(cert);
    // An RFC 8032 verifier that checks the cofactored equation (noble, either mode) takes it ...
    expect(docVerify(j, genesis)).toBe('ok');
    // ... the reference does not (libsodium and OpenSSL compare the encoding of SB − kA with R).
    expect(reference(j, genesis)).toBe('bad-signature');
    // A verifier following the document as it now reads (SB − kA encoded, compared byte for byte with R).
    const cofactorless = (sig: Uint8Array, msg: Uint8Array, pk: Uint8Array) => {
      const A = Point.fromBytes(pk);
      const k =
        sha512(Buffer.concat([sig.subarray(0, 32), pk, msg])).reduceRight(
          (x, b) => (x << 8n) | BigInt(b),
          0n,
        ) % L;
      const S = sig.subarray(32).reduceRight((x, b) => (x << 8n) | BigInt(b), 0n);
      if (S >= L) return false;
      if (Point.fromBytes(sig.subarray(0, 32), true).isSmallOrder()) return false;
      const R = Point.BASE.multiplyUnsafe(S).subtract(A.multiplyUnsafe(k));
      return same(R.toBytes(), sig.subarray(0, 32));
    };
    expect(docVerify(j, genesis, cofactorless)).toBe('bad-signature');
    expect(docVerify(asJson(certify(genesis, outcomeOf())), genesis, cofactorless)).toBe('ok');
  });

  it('bad-genesis: balances adding up to more than 2^53 − 1', () => {
    const client = keyPairFromSeed(new Uint8Array(32).fill(8)).publicKey;
    const rich = genesisOf(
      [
        { client, amount: 2 ** 53 - 1 },
        { client: new Uint8Array(32).fill(0xee), amount: 1 },
      ].sort((x, y) => Buffer.compare(x.client, y.client)),
    );
    const j = asJson(certify(rich, outcomeOf()));
    expect(reference(j, rich)).toBe('bad-genesis');
    // The steps of §8 before this review did not name it: a verifier that followed them took it.
    expect(docVerify(j, rich)).toBe('ok');
  });

  it('which failure is reported when the strict reading finds several problems', () => {
    const j = asJson(certify(genesis, outcomeOf()));
    const [v0, v1, v2] = j.outcome.votes;
    // Out of order at [1], and [2] malformed: the reference reads every item before the order.
    const c1 = { ...j, outcome: { ...j.outcome, votes: [v1, v0, { ...v2, modelDigest: 'x' }] } };
    expect(reference(c1, genesis)).toBe('malformed');
    expect(docVerify(c1, genesis)).toBe('duplicate-voter'); // a reader that checks the order item by item
    // An unknown field anywhere in an object is found before any of that object's fields is read.
    const c2 = { ...j, extra: 1, outcome: { ...j.outcome, votes: [v0, v0, v2] } };
    expect(reference(c2, genesis)).toBe('malformed');
    // A missing field is found in its place in schema order: here after the votes.
    const { signatures: _, ...noSigs } = { ...j, outcome: { ...j.outcome, votes: [v0, v0, v2] } };
    expect(reference(noSigs, genesis)).toBe('duplicate-voter');
    // Version is checked after the whole reading.
    expect(reference({ ...j, version: 3, outcome: { ...j.outcome, votes: [v0, v0, v2] } }, genesis)).toBe(
      'duplicate-voter',
    );
  });

  it('JSON numbers are read as JSON.parse reads them: 1.0, 1e0 and -0 are integers', () => {
    const text = JSON.stringify(certificateToJson(certify(genesis, outcomeOf())));
    expect(text).toContain('"leafIndex":0');
    const spellings: [string, string][] = [
      ['0.0', '1.0'],
      ['-0', '1e0'],
      ['0e5', '10E-1'],
      ['0E+0', '0.99999999999999999'],
    ];
    for (const [index, seq] of spellings) {
      const t = text.replace('"leafIndex":0', `"leafIndex":${index}`).replace('"seq":1', `"seq":${seq}`);
      expect(reference(JSON.parse(t), genesis)).toBe('ok');
    }
    // A fraction that stays one is refused.
    expect(reference(JSON.parse(text.replace('"seq":1', '"seq":1.5')), genesis)).toBe('malformed');
  });

  it('fee, scores and the order of `top` are not checked: only the signatures vouch for them', () => {
    const odd = outcomeOf({
      fee: 999_999, // not the voters' fees (1 each)
      votes: outcomeOf().votes.map((v, i) =>
        i === 0
          ? {
              ...v,
              result: {
                kind: 'class' as const,
                top: [
                  { label: 7, score: 5 },
                  { label: 3, score: 2_000_000 },
                ],
              },
            }
          : v,
      ),
    });
    const j = asJson(certify(genesis, odd));
    expect(reference(j, genesis)).toBe('ok');
    expect(docVerify(j, genesis)).toBe('ok');
  });
});
