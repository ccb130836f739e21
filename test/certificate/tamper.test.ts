/**
 * Tampering with real certificates. Every certificate here comes out of a simulated run (real consensus,
 * ledger and certificate assembly); the properties then change one thing (or a few) and check that
 * verifyCertificate refuses the result, whether it is handed the decoded object, its JSON, or that JSON
 * after a trip through a string, and that all three forms give the same reason.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { decide } from '../../src/agreement/index.ts';
import {
  buildCertificates,
  certificateToJson,
  SignatureCache,
  type VerifyFailure,
  type VerifyOptions,
  type VerifyResult,
  verifyCertificate,
} from '../../src/certificate/index.ts';
import {
  buildTree,
  type Certificate,
  Certificate as CertificateCodec,
  type CountedVote,
  type Decision,
  encode,
  fromJson,
  type Genesis,
  hex,
  type Json,
  keyPairFromSeed,
  leafHash,
  merkleStats,
  type Outcome,
  Outcome as OutcomeCodec,
  type Policy,
  type Receipt,
  Receipt as ReceiptCodec,
  type Result,
  requestIdOf,
  type SignedRequest,
  sha256,
  signRequest,
  signRequestBatch,
  signTagged,
  TAGS,
} from '../../src/protocol/index.ts';
import { makeGroup, type SimResult, simulate } from '../../src/sim/world.ts';

const RUNS = 300;

// ---------------------------------------------------------------------------------------------------------
// The runs

interface Run {
  name: string;
  result: SimResult;
  genesis: Genesis;
  n: number;
  f: number;
  q: number;
  certs: Certificate[];
  /** Every certificate's JSON, to recognise a mutation that happens to rebuild a genuine certificate. */
  genuine: Set<string>;
}

interface Sample {
  run: Run;
  cert: Certificate;
  /** Certificates of the same batch (same receipt), this one excluded. */
  sameBatch: Certificate[];
  /** Certificates of other batches of the same run. */
  otherBatches: Certificate[];
}

let runs: Run[] = [];
let samples: Sample[] = [];

function makeRun(name: string, result: SimResult): Run {
  const genesis = result.group.genesis;
  const certs = [...result.certificates.values()];
  const n = genesis.nodes.length;
  const f = genesis.f;
  return {
    name,
    result,
    genesis,
    n,
    f,
    q: 2 * f + 1,
    certs,
    genuine: new Set(certs.map((c) => JSON.stringify(certificateToJson(c)))),
  };
}

beforeAll(() => {
  runs = [
    makeRun('n=4 seed 11', simulate({ nodes: 4, requests: 40, seed: 11 })),
    makeRun('n=7 seed 12', simulate({ nodes: 7, requests: 20, seed: 12 })),
    makeRun(
      'n=4 seed 13, node 2 silent',
      simulate({ nodes: 4, requests: 20, seed: 13, byzantine: new Map([[2, 'silent']]) }),
    ),
  ];
  samples = runs.flatMap((run) =>
    run.certs.map((cert) => ({
      run,
      cert,
      sameBatch: run.certs.filter((c) => c !== cert && c.receipt.seq === cert.receipt.seq),
      otherBatches: run.certs.filter((c) => c.receipt.seq !== cert.receipt.seq),
    })),
  );
});

// ---------------------------------------------------------------------------------------------------------
// Helpers

const clone = <T>(x: T): T => structuredClone(x);
const reasonOf = (r: VerifyResult) => (r.ok ? 'ok' : r.reason);
const roundTrip = (j: unknown): unknown => JSON.parse(JSON.stringify(j));

function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const out = new Uint8Array(b);
  const i = bit % (out.length * 8);
  out[i >> 3] ^= 1 << (i & 7);
  return out;
}
const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');
const unb64u = (s: string) => new Uint8Array(Buffer.from(s, 'base64url'));

/**
 * Verifies a (possibly tampered) certificate in every form it can take: decoded (when it decodes), as
 * JSON, and as JSON after stringify/parse. All forms must agree on ok and on the reason.
 */
function verifyEveryForm(
  x: { cert: Certificate } | { json: unknown },
  genesis: Genesis,
  opts?: VerifyOptions,
) {
  let decoded: Certificate | undefined;
  let json: unknown;
  if ('cert' in x) {
    decoded = x.cert;
    json = certificateToJson(x.cert);
  } else {
    json = x.json;
    try {
      decoded = fromJson(CertificateCodec, json);
    } catch {
      decoded = undefined;
    }
  }
  const results: [string, VerifyResult][] = [];
  if (decoded) results.push(['decoded', verifyCertificate(decoded, genesis, opts)]);
  results.push(['json', verifyCertificate(json, genesis, opts)]);
  results.push(['json text', verifyCertificate(roundTrip(json), genesis, opts)]);
  const first = reasonOf(results[0][1]);
  for (const [form, r] of results) expect(`${form}: ${reasonOf(r)}`).toBe(`${form}: ${first}`);
  return results[0][1];
}

function expectRejected(r: VerifyResult, reasons?: readonly VerifyFailure[]): void {
  expect(r.ok).toBe(false);
  if (!r.ok && reasons) expect(reasons).toContain(r.reason);
}

/** Same as a genuine certificate of its run (a combination of mutations may undo itself). */
function isGenuine(run: Run, c: Certificate): boolean {
  return run.genuine.has(JSON.stringify(certificateToJson(c)));
}
function isDecodedCert(c: unknown): c is Certificate {
  return (c as Certificate).receipt?.groupId instanceof Uint8Array;
}

/** The decision a forger would write to make the votes and the decision consistent again. */
function consistent(c: Certificate): Certificate {
  c.outcome.decision = decide(
    c.outcome.policy,
    c.outcome.votes.map((v) => v.result),
  );
  return c;
}

function insertSorted<T extends { node: number }>(xs: T[], x: T): T[] {
  return [...xs, x].sort((a, b) => a.node - b.node);
}

const sampleArb = () => fc.constantFrom(...samples);
const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

// ---------------------------------------------------------------------------------------------------------
// JSON leaves

type Seg = string | number;
interface Leaf {
  path: Seg[];
  value: Json;
}

function leavesOf(j: Json, path: Seg[] = []): Leaf[] {
  if (Array.isArray(j)) return j.flatMap((x, i) => leavesOf(x, [...path, i]));
  if (j !== null && typeof j === 'object')
    return Object.entries(j).flatMap(([k, v]) => leavesOf(v, [...path, k]));
  return [{ path, value: j }];
}

function setAt(j: Json, path: Seg[], value: unknown): Json {
  const out = clone(j);
  let cur = out as Record<Seg, unknown>;
  for (const s of path.slice(0, -1)) cur = cur[s] as Record<Seg, unknown>;
  cur[path[path.length - 1]] = value;
  return out;
}

/** The kinds of each union in a certificate, keyed by the field that holds the union. */
const KINDS: Record<string, readonly string[]> = {
  policy: ['top1', 'tolerance'],
  result: ['class', 'vector'],
  decision: ['label', 'vector', 'noAgreement'],
};

const BIG = [2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 64, 1e21, -1, -(2 ** 53), 0.5, Number.NaN];

/**
 * `nullable`: an option(uint) leaf (a signature's view), where NaN would not stay NaN in the JSON text but
 * become null, another valid value; every form would refuse it, though for different reasons.
 */
function numberMutation(v: number, nullable = false): fc.Arbitrary<unknown> {
  return fc
    .oneof(
      fc.constant(v + 1),
      fc.constant(v - 1),
      fc.constant(0),
      fc.constantFrom(...BIG),
      fc.nat(),
      fc.constant(String(v)), // a numeric string
    )
    .filter((x) => x !== v && !(nullable && Number.isNaN(x)));
}

function stringMutation(path: Seg[], v: string): fc.Arbitrary<unknown> {
  if (path[path.length - 1] === 'kind') {
    const kinds = KINDS[String(path[path.length - 2])];
    if (!kinds) throw new Error(`unexpected union at ${path.join('.')}`);
    return fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...kinds.filter((k) => k !== v)) },
      { weight: 1, arbitrary: fc.constantFrom(v.toUpperCase(), `${v} `, '', 'unknown') },
    );
  }
  const b = unb64u(v);
  expect(b64u(b)).toBe(v); // every string leaf that is not a kind is canonical base64url
  return fc.oneof(
    { weight: 4, arbitrary: fc.nat({ max: b.length * 8 - 1 }).map((bit) => b64u(flipBit(b, bit))) },
    { weight: 1, arbitrary: fc.constant(b64u(b.subarray(0, b.length - 1))) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }).map((x) => b64u(new Uint8Array([...b, x]))) },
    { weight: 1, arbitrary: fc.constantFrom(`${v}=`, `${v}A`) }, // padding, or one character more
  );
}

/** The null leaves are the signatures' `view`s (plain signatures): a view makes them claim another message. */
function nullMutation(): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.nat({ max: 1000 }) },
    { weight: 1, arbitrary: fc.constantFrom(-1, 0.5, '0', false, 'null') },
  );
}

function leafMutation(s: Sample): fc.Arbitrary<{ path: Seg[]; json: Json }> {
  const json = certificateToJson(s.cert);
  return fc.constantFrom(...leavesOf(json)).chain(({ path, value }) => {
    const m =
      value === null
        ? nullMutation()
        : typeof value === 'number'
          ? numberMutation(value, path[path.length - 1] === 'view')
          : stringMutation(path, value as string);
    return m.map((v) => ({ path, json: setAt(json, path, v) }));
  });
}

// ---------------------------------------------------------------------------------------------------------
// Mutations of the decoded certificate, each with the reasons it may give

interface Mutated {
  cert: Certificate;
  what: string;
  reasons?: readonly VerifyFailure[];
}
type Mutation = (s: Sample) => fc.Arbitrary<Mutated>;

const signatureBitFlip: Mutation = (s) =>
  fc
    .record({ i: fc.nat({ max: s.cert.signatures.length - 1 }), bit: fc.nat({ max: 511 }) })
    .map(({ i, bit }) => {
      const c = clone(s.cert);
      c.signatures[i].signature = flipBit(c.signatures[i].signature, bit);
      return { cert: c, what: `flip bit ${bit} of signature ${i}`, reasons: ['bad-signature'] };
    });

const pathBitFlip: Mutation = (s) =>
  fc.record({ i: fc.nat({ max: s.cert.path.length - 1 }), bit: fc.nat({ max: 255 }) }).map(({ i, bit }) => {
    const c = clone(s.cert);
    c.path[i] = flipBit(c.path[i], bit);
    return { cert: c, what: `flip bit ${bit} of path[${i}]`, reasons: ['bad-proof'] };
  });

const pathShape: Mutation = (s) =>
  fc
    .record({
      op:
        s.cert.path.length === 0 // a one-leaf batch: the path is empty
          ? fc.constantFrom('append-random', 'prepend-random')
          : fc.constantFrom('remove', 'duplicate', 'append-copy', 'append-random', 'prepend-random', 'swap'),
      i: fc.nat({ max: Math.max(0, s.cert.path.length - 1) }),
      j: fc.nat({ max: Math.max(0, s.cert.path.length - 1) }),
      extra: bytes32,
    })
    .filter(({ op, i, j }) => op !== 'swap' || hex(s.cert.path[i]) !== hex(s.cert.path[j]))
    .map(({ op, i, j, extra }) => {
      const c = clone(s.cert);
      if (op === 'remove') c.path.splice(i, 1);
      else if (op === 'duplicate') c.path.splice(i, 0, c.path[i]);
      else if (op === 'append-copy') c.path.push(c.path[i]);
      else if (op === 'append-random') c.path.push(extra);
      else if (op === 'prepend-random') c.path.unshift(extra);
      else [c.path[i], c.path[j]] = [c.path[j], c.path[i]];
      return { cert: c, what: `path ${op} ${i} ${j}`, reasons: ['bad-proof'] };
    });

const leafIndexChange: Mutation = (s) =>
  fc
    .oneof(
      fc.integer({ min: 0, max: s.cert.receipt.resultsCount + 2 }),
      fc.constantFrom(s.cert.leafIndex + 1, s.cert.leafIndex - 1, 2 ** 53 - 1, 2 ** 32 + s.cert.leafIndex),
      fc.nat(),
    )
    .filter((x) => x !== s.cert.leafIndex && x >= 0)
    .map((x) => {
      const c = clone(s.cert);
      c.leafIndex = x;
      return { cert: c, what: `leafIndex ${s.cert.leafIndex} -> ${x}`, reasons: ['bad-proof'] };
    });

const signatureRemoved: Mutation = (s) =>
  fc.nat({ max: s.cert.signatures.length - 1 }).map((i) => {
    const c = clone(s.cert);
    c.signatures.splice(i, 1);
    return { cert: c, what: `remove signature ${i}`, reasons: ['insufficient-signatures'] };
  });

const signatureDuplicated: Mutation = (s) =>
  fc
    .record({ i: fc.nat({ max: s.cert.signatures.length - 1 }), replace: fc.boolean() })
    .map(({ i, replace }) => {
      const c = clone(s.cert);
      // Either one more entry (q+1 with a repeat) or a repeat in place of the next signer (still q entries).
      if (replace && i + 1 < c.signatures.length) c.signatures[i + 1] = clone(c.signatures[i]);
      else c.signatures.splice(i, 0, clone(c.signatures[i]));
      return {
        cert: c,
        what: `duplicate signature ${i} (replace ${replace})`,
        reasons: ['duplicate-signer'],
      };
    });

const receiptBytes = (r: Receipt) => encode(ReceiptCodec, r);

const foreignKeySignature: Mutation = (s) =>
  fc.record({ i: fc.nat({ max: s.cert.signatures.length - 1 }), seed: bytes32 }).map(({ i, seed }) => {
    const c = clone(s.cert);
    const key = keyPairFromSeed(seed);
    c.signatures[i].signature = signTagged(TAGS.receipt, c.receipt.groupId, receiptBytes(c.receipt), key);
    return { cert: c, what: `signature ${i} by a key outside the genesis`, reasons: ['bad-signature'] };
  });

const foreignSigner: Mutation = (s) =>
  fc
    .record({ node: fc.integer({ min: s.run.n, max: 300 }), seed: bytes32, replace: fc.boolean() })
    .map(({ node, seed, replace }) => {
      const c = clone(s.cert);
      const key = keyPairFromSeed(seed);
      const signature = signTagged(TAGS.receipt, c.receipt.groupId, receiptBytes(c.receipt), key);
      if (replace) c.signatures.pop();
      c.signatures.push({ node, signature, view: null });
      return { cert: c, what: `signer ${node} not in the genesis`, reasons: ['unknown-signer'] };
    });

/** A genuine signature of a genesis node, but over another receipt. */
const signatureOverOtherReceipt: Mutation = (s) => {
  const fromOtherBatch = s.otherBatches.flatMap((o) => o.signatures);
  const resign = fc
    .record({
      i: fc.nat({ max: s.cert.signatures.length - 1 }),
      field: fc.constantFrom('seq', 'resultsCount', 'batchDigest', 'prevReceipt', 'resultsRoot'),
      bit: fc.nat({ max: 255 }),
    })
    .map(({ i, field, bit }) => {
      const other: Receipt = clone(s.cert.receipt);
      if (field === 'seq' || field === 'resultsCount') other[field] += 1 + (bit % 5);
      else other[field] = flipBit(other[field], bit);
      const node = s.cert.signatures[i].node;
      const key = s.run.result.group.keys[node] ?? s.run.result.group.keys[0];
      return {
        node,
        signature: signTagged(TAGS.receipt, other.groupId, receiptBytes(other), key),
        view: null,
      };
    });
  const arb =
    fromOtherBatch.length > 0
      ? fc.oneof(
          fc.constantFrom(...fromOtherBatch).map((x) => clone(x)),
          resign,
        )
      : resign;
  return arb.map((sig) => {
    const c = clone(s.cert);
    c.signatures = insertSorted(
      c.signatures.filter((x) => x.node !== sig.node),
      sig,
    );
    return { cert: c, what: `node ${sig.node}'s signature over another receipt`, reasons: ['bad-signature'] };
  });
};

const signatureMoved: Mutation = (s) =>
  fc
    .record({
      i: fc.nat({ max: s.cert.signatures.length - 1 }),
      to: fc.nat({ max: s.run.n + 2 }),
      sort: fc.boolean(),
    })
    .filter(({ i, to }) => s.cert.signatures[i].node !== to)
    .map(({ i, to, sort }) => {
      const c = clone(s.cert);
      c.signatures[i].node = to;
      if (sort) c.signatures.sort((a, b) => a.node - b.node);
      return {
        cert: c,
        what: `signature ${i} moved to node ${to} (sorted ${sort})`,
        reasons: ['bad-signature', 'duplicate-signer', 'unknown-signer'],
      };
    });

type ClassResult = Extract<Result, { kind: 'class' }>;
/** The vote's top-1 label, turning any other result into a one-entry class result first. */
function classOf(v: CountedVote): ClassResult {
  if (v.result.kind !== 'class' || v.result.top.length === 0)
    v.result = { kind: 'class', top: [{ label: 0, score: 500_000 }] };
  return v.result as ClassResult;
}

function otherLabel(label: number): fc.Arbitrary<number> {
  return fc
    .oneof(fc.nat({ max: 1100 }), fc.constantFrom(label + 1, label + 500, 2 ** 53 - 1))
    .filter((l) => l !== label);
}

const voteLabelChanged: Mutation = (s) =>
  fc
    .integer({ min: 0, max: s.cert.outcome.votes.length - 1 })
    .chain((i) => {
      const r = classOf(clone(s.cert.outcome.votes[i]));
      return fc.record({ i: fc.constant(i), label: otherLabel(r.top[0].label), fix: fc.boolean() });
    })
    .map(({ i, label, fix }) => {
      const c = clone(s.cert);
      classOf(c.outcome.votes[i]).top[0].label = label;
      if (fix) consistent(c);
      return {
        cert: c,
        what: `vote ${i} says label ${label} (decision recomputed: ${fix})`,
        reasons: fix ? ['bad-proof'] : ['wrong-decision', 'bad-proof'],
      };
    });

const voteOtherChange: Mutation = (s) =>
  fc
    .record({
      i: fc.nat({ max: s.cert.outcome.votes.length - 1 }),
      what: fc.constantFrom('modelDigest', 'score', 'runner-up', 'drop-runner-up', 'vector'),
      bit: fc.nat({ max: 255 }),
      fix: fc.boolean(),
    })
    .map(({ i, what, bit, fix }) => {
      const c = clone(s.cert);
      const v = c.outcome.votes[i];
      const r = classOf(v);
      if (what === 'modelDigest') v.modelDigest = flipBit(v.modelDigest, bit);
      else if (what === 'score') r.top[0].score += 1 + bit;
      else if (what === 'runner-up' && r.top.length > 1) r.top[1].label += 1 + bit;
      else if (what === 'drop-runner-up' || what === 'runner-up') r.top.pop();
      else v.result = { kind: 'vector', values: [bit, -bit] };
      if (fix) consistent(c);
      return {
        cert: c,
        what: `vote ${i}: ${what} (decision recomputed: ${fix})`,
        reasons: fix ? ['bad-proof'] : ['wrong-decision', 'bad-proof'],
      };
    });

const voteRemoved: Mutation = (s) =>
  fc.record({ i: fc.nat({ max: s.cert.outcome.votes.length - 1 }), fix: fc.boolean() }).map(({ i, fix }) => {
    const c = clone(s.cert);
    c.outcome.votes.splice(i, 1);
    if (fix) consistent(c);
    // (The fee still counts the removed voter, but a consistent forger would fix that too; the proof fails
    // either way.)
    const enough = c.outcome.votes.length >= s.run.q;
    return {
      cert: c,
      what: `remove vote ${i} (decision recomputed: ${fix})`,
      reasons: !enough ? ['insufficient-votes'] : fix ? ['bad-proof'] : ['wrong-decision', 'bad-proof'],
    };
  });

const voteDuplicated: Mutation = (s) =>
  fc.nat({ max: s.cert.outcome.votes.length - 1 }).map((i) => {
    const c = clone(s.cert);
    c.outcome.votes.splice(i, 0, clone(c.outcome.votes[i]));
    return { cert: c, what: `duplicate vote ${i}`, reasons: ['duplicate-voter'] };
  });

/** A fabricated vote: from a genesis node that did not vote (if any), or from a node id outside the group. */
const voteAdded: Mutation = (s) => {
  const voters = new Set(s.cert.outcome.votes.map((v) => v.node));
  const absent = s.run.genesis.nodes.map((n) => n.id).filter((id) => !voters.has(id));
  const label = classOf(clone(s.cert.outcome.votes[0])).top[0].label;
  const node =
    absent.length > 0
      ? fc.oneof(fc.constantFrom(...absent), fc.integer({ min: s.run.n, max: 255 }))
      : fc.integer({ min: s.run.n, max: 255 });
  return fc
    .record({
      node,
      label: fc.oneof(fc.constant(label), fc.nat({ max: 999 })),
      score: fc.nat({ max: 1_000_000 }),
      fix: fc.boolean(),
    })
    .map(({ node, label, score, fix }) => {
      const c = clone(s.cert);
      const vote: CountedVote = {
        node,
        modelDigest: node < s.run.n ? s.run.genesis.nodes[node].modelDigest : new Uint8Array(32).fill(7),
        result: { kind: 'class', top: [{ label, score }] },
      };
      c.outcome.votes = insertSorted(c.outcome.votes, vote);
      if (fix) consistent(c);
      return {
        cert: c,
        what: `fabricated vote from node ${node} for label ${label} (decision recomputed: ${fix})`,
        reasons: node >= s.run.n ? ['unknown-voter'] : fix ? ['bad-proof'] : ['wrong-decision', 'bad-proof'],
      };
    });
};

function otherDecision(d: Decision): fc.Arbitrary<Decision> {
  return fc
    .oneof(
      fc.nat({ max: 1100 }).map((label): Decision => ({ kind: 'label', label })),
      fc.constant<Decision>({ kind: 'noAgreement' }),
      fc
        .array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 4 })
        .map((values): Decision => ({ kind: 'vector', values })),
    )
    .filter((x) => JSON.stringify(x) !== JSON.stringify(d));
}

const decisionChanged: Mutation = (s) =>
  otherDecision(s.cert.outcome.decision).map((d) => {
    const c = clone(s.cert);
    c.outcome.decision = d;
    return { cert: c, what: `decision ${JSON.stringify(d)}`, reasons: ['wrong-decision'] };
  });

/** Another policy that is valid for the group, the decision recomputed under it. */
const policyChanged: Mutation = (s) =>
  fc
    .record({
      minAgree: fc.integer({ min: s.run.f + 1, max: s.run.n }),
      tolerance: fc.boolean(),
      epsilon: fc.nat({ max: 10 }),
    })
    .map(
      ({ minAgree, tolerance, epsilon }): Policy =>
        tolerance ? { kind: 'tolerance', minAgree, epsilon } : { kind: 'top1', minAgree },
    )
    .filter((p) => JSON.stringify(p) !== JSON.stringify(s.cert.outcome.policy))
    .map((p) => {
      const c = clone(s.cert);
      c.outcome.policy = p;
      consistent(c);
      return { cert: c, what: `policy ${JSON.stringify(p)}`, reasons: ['bad-proof'] };
    });

const otherOutcome: Mutation = (s) =>
  fc
    .record({ j: fc.nat({ max: Math.max(0, s.sameBatch.length - 1) }), withIndex: fc.boolean() })
    .map(({ j, withIndex }) => {
      const other = s.sameBatch[j];
      const c = clone(s.cert);
      c.outcome = clone(other.outcome);
      if (withIndex) c.leafIndex = other.leafIndex;
      return {
        cert: c,
        what: `outcome of leaf ${other.leafIndex} with the proof of leaf ${s.cert.leafIndex} (index moved: ${withIndex})`,
        reasons: ['bad-proof'],
      };
    });

const receiptChanged: Mutation = (s) =>
  fc
    .record({
      field: fc.constantFrom('seq', 'resultsCount', 'batchDigest', 'prevReceipt', 'resultsRoot', 'groupId'),
      delta: fc.integer({ min: 1, max: 100 }),
      bit: fc.nat({ max: 255 }),
    })
    .map(({ field, delta, bit }) => {
      const c = clone(s.cert);
      const r = c.receipt;
      if (field === 'seq') r.seq += delta;
      else if (field === 'resultsCount') r.resultsCount += delta;
      else r[field] = flipBit(r[field], bit);
      const reasons: Record<string, VerifyFailure[]> = {
        seq: ['bad-signature'],
        resultsCount: ['bad-proof', 'bad-signature'],
        batchDigest: ['bad-signature'],
        prevReceipt: ['bad-signature'],
        resultsRoot: ['bad-proof'],
        groupId: ['wrong-group'],
      };
      return { cert: c, what: `receipt.${field}`, reasons: reasons[field] };
    });

const MUTATIONS: Record<string, Mutation> = {
  signatureBitFlip,
  pathBitFlip,
  pathShape,
  leafIndexChange,
  signatureRemoved,
  signatureDuplicated,
  foreignKeySignature,
  foreignSigner,
  signatureOverOtherReceipt,
  signatureMoved,
  voteLabelChanged,
  voteOtherChange,
  voteRemoved,
  voteDuplicated,
  voteAdded,
  decisionChanged,
  policyChanged,
  otherOutcome,
  receiptChanged,
};

/** Whether a mutation has something to act on in this certificate. */
function applies(name: string, s: Sample): boolean {
  const { path, signatures, outcome } = s.cert;
  if (signatures.length === 0 || outcome.votes.length === 0) return false;
  if (name === 'pathBitFlip') return path.length > 0;
  if (name === 'otherOutcome') return s.sameBatch.length > 0;
  return true;
}

const anyMutation = () =>
  sampleArb().chain((s) =>
    fc
      .constantFrom(...Object.keys(MUTATIONS).filter((name) => applies(name, s)))
      .chain((name) => MUTATIONS[name](s).map((mut) => ({ s, mut }))),
  );

function checkMutation(s: Sample, mut: Mutated, opts?: VerifyOptions): void {
  const r = verifyEveryForm({ cert: mut.cert }, s.run.genesis, opts);
  expect(r.ok, `accepted: ${mut.what}`).toBe(false);
  if (!r.ok && mut.reasons) expect(mut.reasons, `${mut.what}: ${r.reason}: ${r.message}`).toContain(r.reason);
}

// ---------------------------------------------------------------------------------------------------------

describe('the genuine certificates', () => {
  it('come from complete runs', () => {
    for (const run of runs) {
      expect(run.result.done, run.name).toBe(true);
      expect(run.certs.length, run.name).toBe(run.result.requests.size);
    }
    // Some certificate has another batch to borrow signatures from.
    expect(samples.some((s) => s.otherBatches.length > 0)).toBe(true);
    // The silent run has certificates with fewer than n votes, so a vote can be fabricated.
    expect(runs[2].certs.every((c) => c.outcome.votes.length < runs[2].n)).toBe(true);
  });

  it('all verify: decoded, as JSON, and as JSON text', () => {
    for (const run of runs)
      for (const c of run.certs) {
        const json = certificateToJson(c);
        for (const input of [c, json, roundTrip(json)]) {
          const r = verifyCertificate(input, run.genesis);
          expect(r.ok, r.ok ? '' : `${run.name}: ${r.reason}: ${r.message}`).toBe(true);
          if (r.ok) expect(encode(CertificateCodec, r.certificate)).toEqual(encode(CertificateCodec, c));
        }
        expect(fromJson(CertificateCodec, roundTrip(json))).toEqual(c);
      }
  });

  it('all verify against their own signed request, with a cache too', () => {
    const cache = new SignatureCache();
    for (const run of runs)
      for (const c of run.certs) {
        const request = run.result.requests.get(hex(c.outcome.requestId));
        expect(request).toBeDefined();
        expect(verifyCertificate(c, run.genesis, { request }).ok).toBe(true);
        expect(verifyCertificate(certificateToJson(c), run.genesis, { request, cache }).ok).toBe(true);
      }
  });
});

describe('any changed JSON leaf is refused', () => {
  it('property: one random leaf, one random change', () => {
    fc.assert(
      fc.property(
        sampleArb().chain((s) => leafMutation(s).map((m) => ({ s, ...m }))),
        ({ s, path, json }) => {
          const r = verifyEveryForm({ json }, s.run.genesis);
          expect(r.ok, `accepted a change at ${path.join('.')}`).toBe(false);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('exhaustively: every leaf of one certificate per run, under fixed changes', () => {
    let checked = 0;
    for (const run of runs) {
      const json = certificateToJson(run.certs[run.certs.length - 1]);
      for (const { path, value } of leavesOf(json)) {
        const changes: unknown[] = [];
        if (value === null) changes.push(0, 1, -1, '0', false);
        else if (typeof value === 'number')
          changes.push(value + 1, value === 0 ? 1 : 0, 2 ** 53, -1, String(value));
        else if (path[path.length - 1] === 'kind')
          changes.push(...KINDS[String(path[path.length - 2])].filter((k) => k !== value));
        else {
          const b = unb64u(value as string);
          changes.push(
            b64u(flipBit(b, 0)),
            b64u(flipBit(b, b.length * 8 - 1)),
            b64u(b.subarray(1)),
            b64u(new Uint8Array([...b, 0])),
          );
        }
        for (const v of changes) {
          const r = verifyEveryForm({ json: setAt(json, path, v) }, run.genesis);
          expect(r.ok, `accepted ${path.join('.')} = ${JSON.stringify(v)}`).toBe(false);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(500);
  });

  it('an extra or a missing field is malformed, at every level', () => {
    for (const run of runs) {
      const json = certificateToJson(run.certs[0]);
      const objects: Seg[][] = [];
      (function walk(j: Json, path: Seg[]) {
        if (Array.isArray(j)) for (const [i, x] of j.entries()) walk(x, [...path, i]);
        else if (j !== null && typeof j === 'object') {
          objects.push(path);
          for (const [k, v] of Object.entries(j)) walk(v, [...path, k]);
        }
      })(json, []);
      expect(objects.length).toBeGreaterThan(10);
      for (const p of objects) {
        const extra = clone(json);
        const target = p.reduce<Json>((o, s) => (o as Record<Seg, Json>)[s], extra) as Record<string, Json>;
        target.foo = 1;
        expectRejected(verifyCertificate(extra, run.genesis), ['malformed']);
        for (const k of Object.keys(target).filter((k) => k !== 'foo')) {
          const missing = clone(json);
          const t = p.reduce<Json>((o, s) => (o as Record<Seg, Json>)[s], missing) as Record<string, Json>;
          delete t[k];
          expectRejected(verifyCertificate(missing, run.genesis), ['malformed']);
        }
      }
    }
  });
});

describe('tampered certificates are refused', () => {
  for (const [name, mutation] of Object.entries(MUTATIONS)) {
    it(`property: ${name}`, () => {
      const pool = samples.filter((s) => applies(name, s));
      expect(pool.length).toBeGreaterThan(0);
      fc.assert(
        fc.property(
          fc.constantFrom(...pool).chain((s) => mutation(s).map((mut) => ({ s, mut }))),
          ({ s, mut }) => checkMutation(s, mut),
        ),
        { numRuns: RUNS },
      );
    });
  }

  it('property: a fabricated vote from the silent node, decision made consistent, fails the proof', () => {
    const silent = samples.filter((s) => s.run === runs[2]);
    fc.assert(
      fc.property(
        fc.constantFrom(...silent),
        fc.nat({ max: 999 }),
        fc.nat({ max: 1_000_000 }),
        (s, label, score) => {
          const c = clone(s.cert);
          c.outcome.votes = insertSorted(c.outcome.votes, {
            node: 2,
            modelDigest: s.run.genesis.nodes[2].modelDigest,
            result: { kind: 'class', top: [{ label, score }] },
          });
          c.outcome.fee += s.run.genesis.nodes[2].fee;
          consistent(c);
          expectRejected(verifyEveryForm({ cert: c }, s.run.genesis), ['bad-proof']);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('property: two or three mutations at once (unless they rebuild a genuine certificate)', () => {
    fc.assert(
      fc.property(
        sampleArb().chain((s) =>
          fc
            .array(fc.constantFrom(...Object.keys(MUTATIONS).filter((k) => k !== 'otherOutcome')), {
              minLength: 2,
              maxLength: 3,
            })
            .chain((names) => {
              // Apply the mutations in turn, each to the result of the previous one.
              let arb: fc.Arbitrary<Sample> = fc.constant(s);
              for (const nm of names)
                arb = arb.chain((cur) =>
                  // A step with nothing to act on (say, every signature removed already) is skipped.
                  applies(nm, cur)
                    ? MUTATIONS[nm](cur).map((m) => ({ ...cur, cert: m.cert }))
                    : fc.constant(cur),
                );
              return arb.map((res) => ({ s, cert: res.cert, names }));
            }),
        ),
        ({ s, cert, names }) => {
          fc.pre(!isGenuine(s.run, cert));
          const r = verifyEveryForm({ cert }, s.run.genesis);
          expect(r.ok, `accepted after ${names.join(', ')}`).toBe(false);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('specific reasons', () => {
  const first = () => runs[0].certs[0];
  const g = () => runs[0].genesis;
  const reason = (c: Certificate | unknown, genesis = g(), opts?: VerifyOptions) =>
    reasonOf(
      isDecodedCert(c)
        ? verifyEveryForm({ cert: c }, genesis, opts)
        : verifyEveryForm({ json: c }, genesis, opts),
    );

  it('the examples of docs/certificate.md §9.3', () => {
    const json = certificateToJson(first()) as Record<string, Json> & {
      outcome: Record<string, Json> & { votes: Json[] };
      signatures: Json[];
      receipt: Record<string, Json> & { resultsCount: number };
    };
    expect(reason({ ...json, foo: 1 })).toBe('malformed');
    expect(reason(setAt(json, ['outcome', 'client'], `${json.outcome.client}=`))).toBe('malformed');
    expect(reason({ ...json, version: 3 })).toBe('unsupported-version');
    expect(reason({ ...json, signatures: [json.signatures[0], ...json.signatures] })).toBe(
      'duplicate-signer',
    );
    expect(reason(setAt(json, ['outcome', 'votes'], [json.outcome.votes[0], ...json.outcome.votes]))).toBe(
      'duplicate-voter',
    );
    expect(['bad-proof', 'bad-signature']).toContain(
      reason(setAt(json, ['receipt', 'resultsCount'], json.receipt.resultsCount + 1)),
    );
    const sig9 = { node: 9, signature: b64u(new Uint8Array(64).fill(1)), view: null };
    expect(reason({ ...json, signatures: [...json.signatures, sig9] })).toBe('unknown-signer');
    expect(reason({ ...json, signatures: json.signatures.slice(0, -1) })).toBe('insufficient-signatures');
  });

  it('targeted mutations of the decoded certificate', () => {
    const c = first();
    let m = clone(c);
    m.signatures[1].signature = flipBit(m.signatures[1].signature, 77);
    expect(reason(m)).toBe('bad-signature');

    m = clone(c);
    const d = m.outcome.decision;
    m.outcome.decision =
      d.kind === 'label' ? { kind: 'label', label: d.label + 1 } : { kind: 'label', label: 1 };
    expect(reason(m)).toBe('wrong-decision'); // checked before the proof (step 7 < step 8)

    m = clone(c);
    m.path[0] = flipBit(m.path[0], 3);
    expect(reason(m)).toBe('bad-proof');

    m = clone(c);
    m.signatures.splice(1, 0, clone(m.signatures[1]));
    expect(reason(m)).toBe('duplicate-signer');

    m = clone(c);
    m.outcome.votes.splice(1, 0, clone(m.outcome.votes[1]));
    expect(reason(m)).toBe('duplicate-voter');

    m = clone(c);
    m.signatures.pop();
    expect(reason(m)).toBe('insufficient-signatures');

    m = clone(c);
    m.signatures.push({ node: 9, signature: new Uint8Array(64), view: null });
    expect(reason(m)).toBe('unknown-signer');

    m = clone(c);
    m.outcome.votes.push({ ...clone(m.outcome.votes[0]), node: 9 });
    expect(reason(m)).toBe('unknown-voter');

    m = clone(c);
    m.outcome.votes = m.outcome.votes.slice(0, runs[0].q - 1);
    expect(reason(m)).toBe('insufficient-votes');

    for (const minAgree of [0, runs[0].f, runs[0].n + 1]) {
      m = clone(c);
      m.outcome.policy = { kind: 'top1', minAgree };
      expect(reason(m)).toBe('bad-policy');
    }

    m = clone(c);
    m.version = 3;
    expect(reason(m)).toBe('unsupported-version');

    m = clone(c);
    m.version = 1; // a decoded certificate is read as version 2 only
    expect(reason(m)).toBe('unsupported-version');

    m = clone(c);
    m.path.push(...Array.from({ length: 65 - m.path.length }, () => new Uint8Array(32)));
    expect(reason(m)).toBe('malformed'); // over array(Hash32, 64)
  });

  it('the reasons follow the documented order when several steps fail', () => {
    const c = first();
    // Bad decision and bad proof: wrong-decision (step 7) before bad-proof (step 8).
    let m = clone(c);
    m.path[0] = flipBit(m.path[0], 0);
    m.outcome.decision = { kind: 'noAgreement' };
    if (c.outcome.decision.kind !== 'noAgreement') expect(reason(m)).toBe('wrong-decision');
    // Bad proof and bad signature: bad-proof first.
    m = clone(c);
    m.path[0] = flipBit(m.path[0], 0);
    m.signatures[0].signature = flipBit(m.signatures[0].signature, 0);
    expect(reason(m)).toBe('bad-proof');
    // Bad signature and too few signatures: bad-signature first.
    m = clone(c);
    m.signatures.pop();
    m.signatures[0].signature = flipBit(m.signatures[0].signature, 0);
    expect(reason(m)).toBe('bad-signature');
    // Wrong group beats everything after it.
    m = clone(c);
    m.signatures.pop();
    expect(reason(m, runs[1].genesis)).toBe('wrong-group');
  });

  it('a non-canonical Ed25519 signature (S + L) is refused: certificates are not malleable', () => {
    const L = 2n ** 252n + 27742317777372353535851937790883648493n;
    for (const run of runs) {
      const c = clone(run.certs[0]);
      const sig = c.signatures[0].signature;
      let s = 0n;
      for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(sig[32 + i]);
      let t = s + L; // < 2^253: still fits in 32 bytes
      const out = new Uint8Array(sig);
      for (let i = 0; i < 32; i++) {
        out[32 + i] = Number(t & 0xffn);
        t >>= 8n;
      }
      c.signatures[0].signature = out;
      expect(reason(c, run.genesis)).toBe('bad-signature');
    }
  });
});

describe('another group', () => {
  it("every certificate is refused with 'wrong-group' against another group's genesis", () => {
    for (const run of runs) {
      const others = [
        makeGroup(run.n, run.f, 999).genesis,
        makeGroup(4, 1, 12).genesis,
        ...runs.filter((r) => r !== run).map((r) => r.genesis),
      ];
      for (const other of others)
        for (const c of run.certs) expect(reasonOf(verifyCertificate(c, other))).toBe('wrong-group');
    }
  });

  it('property: a genesis from another seed, or differing in one field, gives wrong-group', () => {
    fc.assert(
      fc.property(
        sampleArb(),
        fc.oneof(
          fc.integer({ min: 1000, max: 1_000_000 }).map((seed) => ({ seed, field: undefined })),
          fc
            .constantFrom('name', 'fee', 'address', 'treasury', 'f', 'expiryMs')
            .map((field) => ({ seed: 0, field })),
        ),
        (s, { seed, field }) => {
          let other: Genesis;
          if (field === undefined) other = makeGroup(s.run.n, s.run.f, seed).genesis;
          else {
            other = clone(s.run.genesis);
            if (field === 'name') other.name += 'x';
            else if (field === 'fee') other.nodes[0].fee += 1;
            else if (field === 'address') other.nodes[1].address = 'elsewhere';
            else if (field === 'treasury') other.treasury = flipBit(other.treasury, 5);
            else if (field === 'f') other.f = 0;
            else other.params.expiryMs += 1;
          }
          expect(reasonOf(verifyEveryForm({ cert: s.cert }, other))).toBe('wrong-group');
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('SignatureCache', () => {
  it('property: a cache (warm with every genuine signature, or shared across attempts) changes no answer', () => {
    const warm = new SignatureCache();
    for (const run of runs)
      for (const c of run.certs) expect(verifyCertificate(c, run.genesis, { cache: warm }).ok).toBe(true);
    const shared = new SignatureCache();
    fc.assert(
      fc.property(anyMutation(), ({ s, mut }) => {
        const plain = reasonOf(verifyCertificate(mut.cert, s.run.genesis));
        expect(plain).not.toBe('ok');
        expect(reasonOf(verifyEveryForm({ cert: mut.cert }, s.run.genesis, { cache: warm }))).toBe(plain);
        expect(reasonOf(verifyEveryForm({ cert: mut.cert }, s.run.genesis, { cache: shared }))).toBe(plain);
        // The genuine certificate still passes with the shared cache (nothing was poisoned).
        expect(reasonOf(verifyCertificate(s.cert, s.run.genesis, { cache: shared }))).toBe('ok');
      }),
      { numRuns: RUNS },
    );
  });

  it('a cached good signature does not make a tampered receipt pass', () => {
    for (const run of runs) {
      const cache = new SignatureCache();
      const c = run.certs[0];
      expect(verifyCertificate(c, run.genesis, { cache }).ok).toBe(true);
      const tamper: ((r: Receipt) => void)[] = [
        (r) => (r.seq += 1),
        (r) => (r.batchDigest = flipBit(r.batchDigest, 9)),
        (r) => (r.prevReceipt = flipBit(r.prevReceipt, 200)),
        (r) => (r.resultsCount += 1),
        (r) => (r.resultsRoot = flipBit(r.resultsRoot, 1)),
      ];
      for (const t of tamper) {
        const m = clone(c);
        t(m.receipt);
        const withCache = verifyCertificate(m, run.genesis, { cache });
        expect(withCache.ok).toBe(false);
        expect(reasonOf(withCache)).toBe(reasonOf(verifyCertificate(m, run.genesis)));
      }
      // A cached signature under another node id, or a tampered signature of a cached signer.
      const moved = clone(c);
      [moved.signatures[0].node, moved.signatures[1].node] = [
        moved.signatures[1].node,
        moved.signatures[0].node,
      ];
      moved.signatures.sort((a, b) => a.node - b.node);
      expect(reasonOf(verifyCertificate(moved, run.genesis, { cache }))).toBe('bad-signature');
      const flipped = clone(c);
      flipped.signatures[2].signature = flipBit(flipped.signatures[2].signature, 300);
      expect(reasonOf(verifyCertificate(flipped, run.genesis, { cache }))).toBe('bad-signature');
      expect(verifyCertificate(c, run.genesis, { cache }).ok).toBe(true);
    }
  });

  it('shares proven Merkle nodes across one batch: each interior node hashed once, and forged paths still fail', () => {
    const run = runs[0];
    const bySeq = new Map<number, Certificate[]>();
    for (const c of run.certs) bySeq.set(c.receipt.seq, [...(bySeq.get(c.receipt.seq) ?? []), c]);
    const batch = [...bySeq.values()].sort((a, b) => b.length - a.length)[0];
    expect(batch.length).toBeGreaterThanOrEqual(8);
    const cache = new SignatureCache();
    const h0 = merkleStats.nodeHashes;
    for (const c of batch) expect(verifyCertificate(c, run.genesis, { cache }).ok).toBe(true);
    const perCert = (merkleStats.nodeHashes - h0) / batch.length;
    const depth = Math.ceil(Math.log2(batch[0].receipt.resultsCount));
    // The run keeps every certificate, so the batch covers its whole results tree: each of its size − 1
    // interior nodes is hashed once (until 2026-12-07 about two node hashes per certificate: only the
    // climbing side of each level was learned).
    expect(batch.length).toBe(batch[0].receipt.resultsCount);
    expect(merkleStats.nodeHashes - h0).toBe(batch.length - 1);
    expect(perCert).toBeLessThan(1);
    expect(depth).toBeGreaterThan(2.5); // without the sharing each certificate would hash its whole path
    // Forged paths and indexes, checked between genuine ones with the warm cache, fail as they do uncached.
    for (const [i, c] of batch.entries()) {
      const forged = clone(c);
      if (i % 2 === 0) forged.path[i % forged.path.length] = flipBit(forged.path[i % forged.path.length], i);
      else forged.leafIndex = (forged.leafIndex + 1) % forged.receipt.resultsCount;
      const plain = reasonOf(verifyCertificate(forged, run.genesis));
      expect(plain).toBe('bad-proof');
      expect(reasonOf(verifyCertificate(forged, run.genesis, { cache }))).toBe(plain);
      expect(verifyCertificate(c, run.genesis, { cache }).ok).toBe(true);
    }
  });

  it('learns from whole certificates only: changing a verified path afterwards, or made-up roots, changes nothing', () => {
    const run = runs[0];
    const bySeq = new Map<number, Certificate[]>();
    for (const c of run.certs) bySeq.set(c.receipt.seq, [...(bySeq.get(c.receipt.seq) ?? []), c]);
    const batch = [...bySeq.values()].sort((a, b) => b.length - a.length)[0].map(clone);
    const cache = new SignatureCache(10_000, 16);
    const half = batch.length >> 1;
    for (const c of batch) expect(verifyCertificate(c, run.genesis, { cache }).ok).toBe(true);
    // The caller changes a verified certificate's path in place: the cache kept its own copies.
    const victim = batch[0];
    const top = victim.path.length - 1;
    victim.path[top][0] ^= 1;
    expect(reasonOf(verifyCertificate(victim, run.genesis, { cache }))).toBe('bad-proof');
    const other = clone(batch[1]);
    other.path[other.path.length - 1] = victim.path[top];
    expect(reasonOf(verifyCertificate(other, run.genesis, { cache }))).toBe(
      reasonOf(verifyCertificate(other, run.genesis)),
    );
    victim.path[top][0] ^= 1;
    // Forged certificates whose paths lead to made-up roots (their signatures cannot match): more of them
    // than the cache keeps trees. They must not push the genuine tree out.
    const size = batch[0].receipt.resultsCount;
    for (let k = 0; k < 40; k++) {
      const f = clone(batch[half]);
      const leaves = Array.from({ length: size }, (_, i) => sha256(new Uint8Array([k, i, 7])));
      leaves[f.leafIndex] = leafHash(encode(OutcomeCodec, f.outcome));
      const fake = buildTree(leaves);
      f.receipt.resultsRoot = fake.root;
      f.path = fake.path(f.leafIndex);
      expect(reasonOf(verifyCertificate(f, run.genesis, { cache }))).toBe('bad-signature');
    }
    // Checked again, a genuine certificate costs no node hash (its leaf is proven, and every node above
    // it); a tree pushed out would cost the whole path again for the first and ~1 for the others.
    const h0 = merkleStats.nodeHashes;
    for (const c of batch.slice(half)) expect(verifyCertificate(c, run.genesis, { cache }).ok).toBe(true);
    expect(merkleStats.nodeHashes - h0).toBe(0);
  });

  it('an evicted receipt is simply checked again', () => {
    const cache = new SignatureCache(1);
    const [a, b] = [
      runs[0].certs[0],
      runs[0].certs.find((c) => c.receipt.seq !== runs[0].certs[0].receipt.seq)!,
    ];
    for (let i = 0; i < 3; i++) {
      expect(verifyCertificate(a, runs[0].genesis, { cache }).ok).toBe(true);
      expect(verifyCertificate(b, runs[0].genesis, { cache }).ok).toBe(true);
    }
  });
});

describe('the request option', () => {
  const requestFor = (run: Run, c: Certificate): SignedRequest =>
    run.result.requests.get(hex(c.outcome.requestId))!;

  it('property: the right request passes; any other request, or the right one with another input, fails', () => {
    const allRequests = () => runs.flatMap((r) => [...r.result.requests.values()]);
    fc.assert(
      fc.property(
        sampleArb(),
        fc.nat(),
        fc.nat({ max: 8 * 48 - 1 }),
        fc.constantFrom('other', 'input', 'client', 'nonce'),
        (s, k, bit, how) => {
          const right = requestFor(s.run, s.cert);
          expect(reasonOf(verifyEveryForm({ cert: s.cert }, s.run.genesis, { request: right }))).toBe('ok');
          let wrong: SignedRequest;
          if (how === 'other') {
            const pool = allRequests().filter((r) => r !== right);
            wrong = pool[k % pool.length];
          } else if (how === 'input') wrong = { ...right, input: flipBit(right.input, bit) };
          else if (how === 'client')
            wrong = { ...right, request: { ...right.request, client: flipBit(right.request.client, bit) } };
          // The same authentication over another request (a higher nonce): another id.
          else wrong = { ...right, request: { ...right.request, nonce: right.request.nonce + 1 + k } };
          expect(reasonOf(verifyEveryForm({ cert: s.cert }, s.run.genesis, { request: wrong }))).toBe(
            'request-mismatch',
          );
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('names the request, not its signature: the same request signed alone or in a batch both match', () => {
    const run = runs[0];
    const client = run.result.group.client;
    const reqs = run.certs.slice(0, 5).map((c) => requestFor(run, c));
    const batch = signRequestBatch(reqs, client);
    for (let i = 0; i < reqs.length; i++) {
      const alone = signRequest(reqs[i].request, reqs[i].input, client);
      for (const form of [reqs[i], alone, batch[i]]) {
        expect(hex(requestIdOf(form))).toBe(hex(run.certs[i].outcome.requestId));
        expect(reasonOf(verifyCertificate(run.certs[i], run.genesis, { request: form }))).toBe('ok');
      }
      // Another member of the same batch is another request.
      const other = batch[(i + 1) % reqs.length];
      expect(reasonOf(verifyCertificate(run.certs[i], run.genesis, { request: other }))).toBe(
        'request-mismatch',
      );
    }
  });

  it('a tampered certificate fails for its own reason, not request-mismatch', () => {
    const run = runs[0];
    const c = clone(run.certs[3]);
    c.path[0] = flipBit(c.path[0], 0);
    expect(reasonOf(verifyCertificate(c, run.genesis, { request: requestFor(run, run.certs[3]) }))).toBe(
      'bad-proof',
    );
  });
});

/**
 * A quorum that signs whatever it is given (more than f colluding nodes, outside the threat model) still
 * cannot get a certificate past the checks that do not rest on signatures: the verifier recomputes the
 * decision and checks voters, policy and the request itself. Signing with the group's own keys isolates
 * those checks from the proof and signature checks that would otherwise catch the change first.
 */
describe('checks that hold even against a quorum that signs anything', () => {
  function certify(run: Run, outcomes: Outcome[], base: Receipt): Certificate[] {
    const tree = buildTree(outcomes.map((o) => leafHash(encode(OutcomeCodec, o))));
    const receipt: Receipt = {
      ...base,
      seq: base.seq + 1000,
      resultsRoot: tree.root,
      resultsCount: outcomes.length,
    };
    const body = encode(ReceiptCodec, receipt);
    const sigs = run.result.group.keys.map((k, node) => ({
      node,
      signature: signTagged(TAGS.receipt, receipt.groupId, body, k),
      view: null,
    }));
    return buildCertificates(outcomes, tree, receipt, sigs, run.q);
  }
  const batchOf = (s: Sample) => [s.cert, ...s.sameBatch].sort((a, b) => a.leafIndex - b.leafIndex);

  it('re-certifying a batch unchanged gives valid certificates (the harness is sound)', () => {
    for (const run of runs) {
      const s = samples.find((x) => x.run === run)!;
      const batch = batchOf(s);
      const certs = certify(
        run,
        batch.map((c) => c.outcome),
        s.cert.receipt,
      );
      for (const c of certs) expect(reasonOf(verifyEveryForm({ cert: c }, run.genesis))).toBe('ok');
    }
  });

  it('property: a signed outcome whose decision does not follow, or with bad voters or policy, is refused', () => {
    fc.assert(
      fc.property(
        sampleArb(),
        fc.constantFrom(
          'decision',
          'unknown-voter',
          'too-few-votes',
          'policy-low',
          'policy-high',
          'duplicate',
        ),
        fc.nat({ max: 1000 }),
        (s, how, k) => {
          const batch = batchOf(s);
          const outcomes = batch.map((c) => clone(c.outcome));
          const i = k % outcomes.length;
          const o = outcomes[i];
          let expected: VerifyFailure;
          if (how === 'decision') {
            const d = o.decision;
            o.decision =
              d.kind === 'label' ? { kind: 'label', label: d.label + 1 + k } : { kind: 'label', label: k };
            expected = 'wrong-decision';
          } else if (how === 'unknown-voter') {
            o.votes.push({ ...clone(o.votes[0]), node: s.run.n + (k % 10) });
            expected = 'unknown-voter';
          } else if (how === 'too-few-votes') {
            o.votes = o.votes.slice(0, s.run.q - 1);
            o.decision = decide(
              o.policy,
              o.votes.map((v) => v.result),
            );
            expected = 'insufficient-votes';
          } else if (how === 'policy-low' || how === 'policy-high') {
            o.policy = { kind: 'top1', minAgree: how === 'policy-low' ? k % (s.run.f + 1) : s.run.n + 1 + k };
            o.decision = decide(
              o.policy,
              o.votes.map((v) => v.result),
            );
            expected = 'bad-policy';
          } else {
            o.votes.splice(1, 0, clone(o.votes[1]));
            expected = 'duplicate-voter';
          }
          // (A duplicated vote cannot even be hashed into the tree: the codec refuses to encode it.)
          if (how === 'duplicate') {
            const c = clone(batch[i]);
            c.outcome = o;
            expect(reasonOf(verifyEveryForm({ cert: c }, s.run.genesis))).toBe(expected);
            return;
          }
          const certs = certify(s.run, outcomes, s.cert.receipt);
          expect(reasonOf(verifyEveryForm({ cert: certs[i] }, s.run.genesis))).toBe(expected);
          // The untouched neighbours in the same re-signed batch are fine (one receipt: check its signatures once).
          const cache = new SignatureCache();
          for (const [j, c] of certs.entries())
            if (j !== i) expect(reasonOf(verifyCertificate(c, s.run.genesis, { cache }))).toBe('ok');
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('property: a signed outcome for another client or input fails against the real request', () => {
    fc.assert(
      fc.property(
        sampleArb(),
        fc.constantFrom('client', 'inputDigest', 'requestId'),
        fc.nat({ max: 255 }),
        (s, field, bit) => {
          const batch = batchOf(s);
          const outcomes = batch.map((c) => clone(c.outcome));
          const i = batch.indexOf(s.cert);
          outcomes[i][field] = flipBit(outcomes[i][field], bit);
          const c = certify(s.run, outcomes, s.cert.receipt)[i];
          const request = s.run.result.requests.get(hex(s.cert.outcome.requestId))!;
          expect(reasonOf(verifyCertificate(c, s.run.genesis))).toBe('ok'); // signed by the quorum
          expect(reasonOf(verifyEveryForm({ cert: c }, s.run.genesis, { request }))).toBe('request-mismatch');
        },
      ),
      { numRuns: RUNS },
    );
  });
});
