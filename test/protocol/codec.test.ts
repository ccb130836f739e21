import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  array,
  Batch,
  batchDigestOf,
  batchDigestOfBytes,
  bool,
  bytes,
  Certificate,
  type Codec,
  CodecError,
  type CodecErrorCode,
  decode,
  decodeShared,
  encode,
  fixed,
  fromJson,
  Genesis,
  type Infer,
  NodeMessage,
  option,
  Policy,
  RequestAnswers,
  RequestList,
  ResultBatch,
  remembered,
  resultsDigestOf,
  resultsDigestOfParts,
  SignedRequest,
  SignedResults,
  sint,
  sortedArray,
  str,
  struct,
  toJson,
  uint,
  union,
} from '../../src/protocol/index.ts';

const RUNS = { numRuns: 200 };

// ---------------------------------------------------------------------------------------------------------
// Helpers

function expectCodecError(fn: () => unknown, code: CodecErrorCode): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, `expected a CodecError ${code}`).toBeInstanceOf(CodecError);
  expect((err as CodecError).code).toBe(code);
}

const u8 = (...b: number[]) => new Uint8Array(b);
const cat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

/** JSON as it travels: through a string, so only JSON-representable values survive. */
function viaJson<T>(codec: Codec<T>, v: T): T {
  return fromJson(codec, JSON.parse(JSON.stringify(toJson(codec, v))));
}

/** encode → decode gives the value back; JSON → value too; both re-encode to the same bytes. */
function checkRoundTrip<T>(codec: Codec<T>, v: T): void {
  const b = encode(codec, v);
  expect(encode(codec, v)).toEqual(b); // deterministic
  const d = decode(codec, b);
  expect(d).toEqual(v);
  expect(encode(codec, d)).toEqual(b);
  const j = viaJson(codec, v);
  expect(j).toEqual(v);
  expect(encode(codec, j)).toEqual(b);
  expect(toJson(codec, j)).toEqual(toJson(codec, v));
}

/** Decoding arbitrary bytes either fails with a CodecError or yields a value whose encoding is those bytes. */
function checkCanonical<T>(codec: Codec<T>, b: Uint8Array): void {
  let v: T;
  try {
    v = decode(codec, b);
  } catch (e) {
    expect(e).toBeInstanceOf(CodecError);
    return;
  }
  expect(encode(codec, v)).toEqual(b);
}

// ---------------------------------------------------------------------------------------------------------
// Arbitraries

const arbUint = fc.oneof(fc.nat({ max: 300 }), fc.nat(), fc.maxSafeNat());
const arbSint = fc.oneof(
  fc.integer({ min: -300, max: 300 }),
  fc.integer({ min: -(2 ** 52 - 1), max: 2 ** 52 - 1 }),
);
const arbBytes = (max: number) => fc.uint8Array({ maxLength: max });
const arbFixed = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const arbHash = arbFixed(32);
const arbSig = arbFixed(64);
const arbText = fc.string({ unit: 'binary', maxLength: 40 });
const arbNode = fc.nat({ max: 255 });

function sortedBy<T>(arb: fc.Arbitrary<T>, key: (v: T) => number, maxLength: number): fc.Arbitrary<T[]> {
  return fc
    .uniqueArray(arb, { selector: key, maxLength })
    .map((xs) => [...xs].sort((a, b) => key(a) - key(b)));
}
function sortedByBytes<T>(
  arb: fc.Arbitrary<T>,
  key: (v: T) => Uint8Array,
  maxLength: number,
): fc.Arbitrary<T[]> {
  return fc
    .uniqueArray(arb, { selector: (v) => Buffer.from(key(v)).toString('hex'), maxLength })
    .map((xs) => [...xs].sort((a, b) => Buffer.compare(key(a), key(b))));
}

const arbPolicy = fc.oneof(
  fc.record({ kind: fc.constant('top1' as const), minAgree: arbUint }),
  fc.record({ kind: fc.constant('tolerance' as const), minAgree: arbUint, epsilon: arbUint }),
);
const arbResult = fc.oneof(
  fc.record({
    kind: fc.constant('class' as const),
    top: fc.array(fc.record({ label: arbUint, score: arbUint }), { maxLength: 5 }),
  }),
  fc.record({ kind: fc.constant('vector' as const), values: fc.array(arbSint, { maxLength: 6 }) }),
);
const arbDecision = fc.oneof(
  fc.record({ kind: fc.constant('label' as const), label: arbUint }),
  fc.record({ kind: fc.constant('vector' as const), values: fc.array(arbSint, { maxLength: 6 }) }),
  fc.constant({ kind: 'noAgreement' as const }),
);
const arbRequest = fc.record({
  groupId: arbHash,
  client: arbHash,
  nonce: arbUint,
  timestamp: arbUint,
  inputDigest: arbHash,
  policy: fc.option(arbPolicy, { nil: null }),
  maxFee: arbUint,
});
const arbRequestAuth = fc.oneof(
  fc.record({ kind: fc.constant('single' as const), signature: arbSig }),
  fc.record({
    kind: fc.constant('batch' as const),
    root: arbHash,
    size: arbUint,
    index: arbUint,
    path: fc.array(arbHash, { maxLength: 12 }),
    signature: arbSig,
  }),
);
const arbSignedRequest = fc.record({ request: arbRequest, auth: arbRequestAuth, input: arbBytes(48) });
const arbResultBatch = fc.record({
  node: arbNode,
  modelDigest: arbHash,
  entries: fc.array(fc.record({ requestId: arbHash, result: arbResult }), { maxLength: 4 }),
});
const arbSignedResults = fc.record({ batch: arbResultBatch, signature: arbSig });
const arbVote = fc.record({ node: arbNode, results: arbHash, index: arbUint });
const arbBatchEntry = fc.record({ requestId: arbHash, votes: sortedBy(arbVote, (v) => v.node, 6) });
const arbTx = fc.record({
  kind: fc.constant('modelUpdate' as const),
  update: fc.record({ node: arbNode, version: arbUint, newDigest: arbHash }),
  signature: arbSig,
});
const arbBatch = fc.record({
  timestamp: arbUint,
  entries: fc.array(arbBatchEntry, { maxLength: 3 }),
  txs: fc.array(arbTx, { maxLength: 2 }),
});
const arbReceipt = fc.record({
  groupId: arbHash,
  seq: arbUint,
  batchDigest: arbHash,
  prevReceipt: arbHash,
  resultsRoot: arbHash,
  resultsCount: arbUint,
});
const arbCountedVote = fc.record({ node: arbNode, modelDigest: arbHash, result: arbResult });
const arbOutcome = fc.record({
  requestId: arbHash,
  client: arbHash,
  inputDigest: arbHash,
  policy: arbPolicy,
  votes: sortedBy(arbCountedVote, (v) => v.node, 6),
  decision: arbDecision,
  fee: arbUint,
});
const arbCertificate = fc.record({
  version: arbUint,
  outcome: arbOutcome,
  leafIndex: arbUint,
  path: fc.array(arbHash, { maxLength: 8 }),
  receipt: arbReceipt,
  signatures: sortedBy(
    fc.record({ node: arbNode, signature: arbSig, view: fc.option(arbUint, { nil: null }) }),
    (s) => s.node,
    6,
  ),
});
const arbGenesisNode = fc.record({
  id: arbUint,
  publicKey: arbHash,
  address: arbText,
  owner: arbText,
  modelName: arbText,
  modelDigest: arbHash,
  fee: arbUint,
});
const arbGenesis = fc.record({
  version: arbUint,
  name: arbText,
  f: arbUint,
  nodes: fc.array(arbGenesisNode, { maxLength: 5 }),
  policy: arbPolicy,
  treasury: arbHash,
  balances: sortedByBytes(fc.record({ client: arbHash, amount: arbUint }), (b) => b.client, 5),
  params: fc.record({
    expiryMs: arbUint,
    maxClockSkewMs: arbUint,
    maxInputBytes: arbUint,
    inputType: arbText,
  }),
});
const arbPhase = (kind: 'prepare' | 'commit') =>
  fc.record({
    kind: fc.constant(kind),
    from: arbNode,
    view: arbUint,
    seq: arbUint,
    digest: arbHash,
    signature: arbSig,
  });
const arbPrePrepare = fc.record({
  view: arbUint,
  seq: arbUint,
  digest: arbHash,
  signature: arbSig,
  batch: arbBatch,
});
const arbNodeMessage = fc.oneof(
  fc.record({
    kind: fc.constant('forward' as const),
    requests: fc.array(arbSignedRequest, { maxLength: 3 }),
  }),
  fc.record({ kind: fc.constant('results' as const), signed: arbSignedResults }),
  fc.record({ kind: fc.constant('prePrepare' as const), pp: arbPrePrepare }),
  arbPhase('prepare'),
  arbPhase('commit'),
  fc.record({
    kind: fc.constant('receiptSig' as const),
    from: arbNode,
    seq: arbUint,
    receiptHash: arbHash,
    signature: arbSig,
    view: fc.option(arbUint, { nil: null }),
  }),
  fc.record({
    kind: fc.constant('checkpoint' as const),
    from: arbNode,
    seq: arbUint,
    stateDigest: arbHash,
    signature: arbSig,
  }),
  fc.record({
    kind: fc.constant('fetch' as const),
    from: arbNode,
    requests: fc.array(arbHash, { maxLength: 3 }),
    results: fc.array(arbHash, { maxLength: 3 }),
    seqs: fc.array(arbUint, { maxLength: 3 }),
    prePrepares: fc.array(arbUint, { maxLength: 3 }),
  }),
  fc.record({
    kind: fc.constant('fetched' as const),
    requests: fc.array(arbSignedRequest, { maxLength: 2 }),
    results: fc.array(arbSignedResults, { maxLength: 2 }),
    prePrepares: fc.array(arbPrePrepare, { maxLength: 2 }),
  }),
  fc.record({ kind: fc.constant('tx' as const), tx: arbTx }),
);

/** A valid encoding with one random edit: a byte changed, inserted or deleted, or the tail cut. */
function arbMutated<T>(codec: Codec<T>, arb: fc.Arbitrary<T>): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(arb, fc.nat(), fc.nat({ max: 255 }), fc.constantFrom('set', 'insert', 'delete', 'cut'))
    .map(([v, at, byte, op]) => {
      const b = Array.from(encode(codec, v));
      const i = at % (b.length + 1);
      if (op === 'set' && i < b.length) b[i] = byte;
      else if (op === 'insert') b.splice(i, 0, byte);
      else if (op === 'delete') b.splice(i, 1);
      else b.length = i;
      return new Uint8Array(b);
    });
}

// ---------------------------------------------------------------------------------------------------------
// Round trips of the primitive codecs

const Pair = struct({ a: uint, b: str(64), c: option(bytes(16)) });
const Shape = union({
  circle: struct({ r: uint }),
  rect: struct({ w: uint, h: sint }),
  empty: struct({}),
});
const Entry = struct({ key: fixed(4), value: uint });
const ByBytes = sortedArray(Entry, 32, (e) => e.key);
const ByNumber = sortedArray(struct({ id: uint, ok: bool }), 32, (e) => e.id);

describe('codec round trips', () => {
  it('uint', () =>
    fc.assert(
      fc.property(arbUint, (v) => checkRoundTrip(uint, v)),
      RUNS,
    ));
  it('sint', () =>
    fc.assert(
      fc.property(arbSint, (v) => checkRoundTrip(sint, v)),
      RUNS,
    ));
  it('bool', () =>
    fc.assert(
      fc.property(fc.boolean(), (v) => checkRoundTrip(bool, v)),
      RUNS,
    ));
  it('bytes', () =>
    fc.assert(
      fc.property(arbBytes(100), (v) => checkRoundTrip(bytes(100), v)),
      RUNS,
    ));
  it('fixed', () =>
    fc.assert(
      fc.property(arbFixed(7), (v) => checkRoundTrip(fixed(7), v)),
      RUNS,
    ));
  it('str', () =>
    fc.assert(
      fc.property(arbText, (v) => checkRoundTrip(str(256), v)),
      RUNS,
    ));
  it('array', () =>
    fc.assert(
      fc.property(fc.array(arbUint, { maxLength: 20 }), (v) => checkRoundTrip(array(uint, 20), v)),
      RUNS,
    ));
  it('struct', () =>
    fc.assert(
      fc.property(
        fc.record({
          a: arbUint,
          b: fc.string({ unit: 'binary', maxLength: 16 }),
          c: fc.option(arbBytes(16), { nil: null }),
        }),
        (v) => checkRoundTrip(Pair, v),
      ),
      RUNS,
    ));
  it('option', () =>
    fc.assert(
      fc.property(fc.option(arbUint, { nil: null }), (v) => checkRoundTrip(option(uint), v)),
      RUNS,
    ));
  it('union', () =>
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({ kind: fc.constant('circle' as const), r: arbUint }),
          fc.record({ kind: fc.constant('rect' as const), w: arbUint, h: arbSint }),
          fc.constant({ kind: 'empty' as const }),
        ),
        (v) => checkRoundTrip(Shape, v),
      ),
      RUNS,
    ));
  it('sortedArray (byte keys and number keys)', () => {
    fc.assert(
      fc.property(
        sortedByBytes(fc.record({ key: arbFixed(4), value: arbUint }), (e) => e.key, 32),
        (v) => checkRoundTrip(ByBytes, v),
      ),
      RUNS,
    );
    fc.assert(
      fc.property(
        sortedBy(fc.record({ id: arbUint, ok: fc.boolean() }), (e) => e.id, 32),
        (v) => checkRoundTrip(ByNumber, v),
      ),
      RUNS,
    );
  });

  it('known encodings', () => {
    expect(encode(uint, 0)).toEqual(u8(0));
    expect(encode(uint, 127)).toEqual(u8(0x7f));
    expect(encode(uint, 128)).toEqual(u8(0x80, 0x01));
    expect(encode(uint, 300)).toEqual(u8(0xac, 0x02));
    expect(encode(uint, 2 ** 53 - 1)).toEqual(u8(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f));
    expect(encode(sint, 0)).toEqual(u8(0));
    expect(encode(sint, -1)).toEqual(u8(1));
    expect(encode(sint, 1)).toEqual(u8(2));
    expect(encode(sint, -64)).toEqual(u8(0x7f));
    expect(encode(sint, 64)).toEqual(u8(0x80, 0x01));
    expect(encode(bool, true)).toEqual(u8(1));
    expect(encode(str(8), 'hé')).toEqual(u8(3, 0x68, 0xc3, 0xa9));
    expect(encode(option(uint), null)).toEqual(u8(0));
    expect(encode(option(uint), 5)).toEqual(u8(1, 5));
    expect(encode(Shape, { kind: 'rect', w: 2, h: -2 })).toEqual(u8(1, 2, 3));
    expect(encode(Policy, { kind: 'top1', minAgree: 3 })).toEqual(u8(0, 3));
    expect(toJson(bytes(8), u8(0xfb, 0xff))).toBe('-_8');
  });

  it('sint extremes', () => {
    for (const v of [2 ** 52 - 1, -(2 ** 52 - 1), 2 ** 52 - 2, -(2 ** 52 - 2)]) checkRoundTrip(sint, v);
  });

  it('a leading byte-order mark is kept, not stripped', () => {
    checkRoundTrip(str(16), '\ufeffa');
    expect(decode(str(16), u8(4, 0xef, 0xbb, 0xbf, 0x61))).toBe('\ufeffa');
  });
});

// ---------------------------------------------------------------------------------------------------------
// Round trips of real messages

describe('message round trips', () => {
  it('SignedRequest', () =>
    fc.assert(
      fc.property(arbSignedRequest, (v) => checkRoundTrip(SignedRequest, v)),
      RUNS,
    ));
  it('SignedResults', () =>
    fc.assert(
      fc.property(arbSignedResults, (v) => checkRoundTrip(SignedResults, v)),
      RUNS,
    ));
  it('Batch', () =>
    fc.assert(
      fc.property(arbBatch, (v) => checkRoundTrip(Batch, v)),
      RUNS,
    ));
  it('Certificate', () =>
    fc.assert(
      fc.property(arbCertificate, (v) => checkRoundTrip(Certificate, v)),
      RUNS,
    ));
  it('Genesis', () =>
    fc.assert(
      fc.property(arbGenesis, (v) => checkRoundTrip(Genesis, v)),
      RUNS,
    ));
  it('NodeMessage (every variant)', () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(arbNodeMessage, (v) => {
        seen.add(v.kind);
        checkRoundTrip(NodeMessage, v);
      }),
      RUNS,
    );
    expect(seen.size).toBe(10);
  });
  it('union JSON puts kind beside the fields', () => {
    expect(toJson(Policy, { kind: 'tolerance', minAgree: 2, epsilon: 5 })).toEqual({
      kind: 'tolerance',
      minAgree: 2,
      epsilon: 5,
    });
  });
});

// ---------------------------------------------------------------------------------------------------------
// Canonicity: every accepted byte string is the encoding of what it decodes to

describe('canonicity', () => {
  it('random bytes as NodeMessage', () =>
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => checkCanonical(NodeMessage, b)),
      RUNS,
    ));
  it('random bytes as Certificate', () =>
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (b) => checkCanonical(Certificate, b)),
      RUNS,
    ));
  it('random bytes with a valid union tag in front', () => {
    fc.assert(
      fc.property(fc.nat({ max: 8 }), fc.uint8Array({ maxLength: 200 }), (tag, b) =>
        checkCanonical(NodeMessage, cat(u8(tag), b)),
      ),
      RUNS,
    );
  });
  it('mutated NodeMessage encodings', () =>
    fc.assert(
      fc.property(arbMutated(NodeMessage, arbNodeMessage), (b) => checkCanonical(NodeMessage, b)),
      RUNS,
    ));
  it('mutated Certificate encodings', () =>
    fc.assert(
      fc.property(arbMutated(Certificate, arbCertificate), (b) => checkCanonical(Certificate, b)),
      RUNS,
    ));
  it('mutated Genesis encodings', () =>
    fc.assert(
      fc.property(arbMutated(Genesis, arbGenesis), (b) => checkCanonical(Genesis, b)),
      RUNS,
    ));
  it('random uint / sint / str encodings', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 10 }), (b) => {
        checkCanonical(uint, b);
        checkCanonical(sint, b);
        checkCanonical(str(8), b);
      }),
      { numRuns: 1000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------------------
// Rejections (binary)

describe('decoding rejects', () => {
  it('trailing bytes', () => {
    expectCodecError(() => decode(uint, u8(1, 0)), 'CODEC_TRAILING_BYTES');
    expectCodecError(() => decode(struct({}), u8(0)), 'CODEC_TRAILING_BYTES');
    fc.assert(
      fc.property(arbNodeMessage, fc.uint8Array({ minLength: 1, maxLength: 4 }), (m, extra) =>
        expectCodecError(
          () => decode(NodeMessage, cat(encode(NodeMessage, m), extra)),
          'CODEC_TRAILING_BYTES',
        ),
      ),
      RUNS,
    );
  });

  it('truncation (every proper prefix of a valid encoding)', () => {
    expectCodecError(() => decode(uint, u8()), 'CODEC_TRUNCATED');
    expectCodecError(() => decode(uint, u8(0x80)), 'CODEC_TRUNCATED');
    expectCodecError(() => decode(fixed(4), u8(1, 2, 3)), 'CODEC_TRUNCATED');
    expectCodecError(() => decode(bytes(10), u8(3, 1, 2)), 'CODEC_TRUNCATED');
    fc.assert(
      fc.property(arbCertificate, (c) => {
        const b = encode(Certificate, c);
        for (let n = 0; n < b.length; n += 1 + (n >> 4))
          expectCodecError(() => decode(Certificate, b.subarray(0, n)), 'CODEC_TRUNCATED');
        expectCodecError(() => decode(Certificate, b.subarray(0, b.length - 1)), 'CODEC_TRUNCATED');
      }),
      { numRuns: 50 },
    );
    fc.assert(
      fc.property(arbNodeMessage, fc.nat(), (m, at) => {
        const b = encode(NodeMessage, m);
        expectCodecError(() => decode(NodeMessage, b.subarray(0, at % b.length)), 'CODEC_TRUNCATED');
      }),
      RUNS,
    );
  });

  it('non-minimal varints', () => {
    expectCodecError(() => decode(uint, u8(0x80, 0x00)), 'CODEC_NON_CANONICAL');
    expectCodecError(() => decode(uint, u8(0x81, 0x00)), 'CODEC_NON_CANONICAL');
    expectCodecError(() => decode(uint, u8(0xff, 0x80, 0x00)), 'CODEC_NON_CANONICAL');
    expectCodecError(() => decode(sint, u8(0x82, 0x00)), 'CODEC_NON_CANONICAL');
    // A length or a union tag is a varint too.
    expectCodecError(() => decode(bytes(4), u8(0x81, 0x00, 0xaa)), 'CODEC_NON_CANONICAL');
    expectCodecError(() => decode(Policy, u8(0x80, 0x00, 3)), 'CODEC_NON_CANONICAL');
    fc.assert(
      fc.property(arbUint, (v) => {
        const b = Array.from(encode(uint, v));
        b[b.length - 1] |= 0x80;
        b.push(0x00); // the same value with a redundant zero group
        if (b.length <= 8) expectCodecError(() => decode(uint, new Uint8Array(b)), 'CODEC_NON_CANONICAL');
        else expect(() => decode(uint, new Uint8Array(b))).toThrow(CodecError);
      }),
      RUNS,
    );
  });

  it('integers above 2^53-1', () => {
    expect(decode(uint, u8(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f))).toBe(2 ** 53 - 1);
    expectCodecError(
      () => decode(uint, u8(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10)),
      'CODEC_OVERSIZE',
    ); // 2^53
    expectCodecError(
      () => decode(uint, u8(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f)),
      'CODEC_OVERSIZE',
    );
    expectCodecError(
      () => decode(uint, u8(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)),
      'CODEC_OVERSIZE',
    );
    expectCodecError(
      () => decode(uint, u8(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01)),
      'CODEC_OVERSIZE',
    );
    // zigzag 2^53-1 would be -2^52, outside the sint range
    expectCodecError(
      () => decode(sint, u8(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f)),
      'CODEC_OVERSIZE',
    );
    // and the encoder refuses them too
    expectCodecError(() => encode(uint, 2 ** 53), 'CODEC_BAD_VALUE');
    expectCodecError(() => encode(uint, -1), 'CODEC_BAD_VALUE');
    expectCodecError(() => encode(uint, 1.5), 'CODEC_BAD_VALUE');
    expectCodecError(() => encode(sint, 2 ** 52), 'CODEC_BAD_VALUE');
  });

  it('bool byte other than 0 or 1', () => {
    expectCodecError(() => decode(bool, u8(2)), 'CODEC_NON_CANONICAL');
    expectCodecError(() => decode(bool, u8(0xff)), 'CODEC_NON_CANONICAL');
  });

  it('option tag other than 0 or 1', () => {
    expectCodecError(() => decode(option(uint), u8(2, 0)), 'CODEC_BAD_TAG');
    expectCodecError(() => decode(option(uint), u8(0xff)), 'CODEC_BAD_TAG');
  });

  it('union tag out of range', () => {
    expectCodecError(() => decode(Policy, u8(2, 3)), 'CODEC_BAD_TAG');
    expectCodecError(() => decode(Shape, u8(3)), 'CODEC_BAD_TAG');
    expectCodecError(() => decode(NodeMessage, u8(50)), 'CODEC_BAD_TAG');
    expectCodecError(() => decode(NodeMessage, u8(0x80, 0x01)), 'CODEC_BAD_TAG');
  });

  it('invalid UTF-8', () => {
    expectCodecError(() => decode(str(8), u8(2, 0xc3, 0x28)), 'CODEC_BAD_UTF8'); // bad continuation
    expectCodecError(() => decode(str(8), u8(2, 0xc0, 0x80)), 'CODEC_BAD_UTF8'); // overlong NUL
    expectCodecError(() => decode(str(8), u8(3, 0xed, 0xa0, 0x80)), 'CODEC_BAD_UTF8'); // surrogate
    expectCodecError(() => decode(str(8), u8(1, 0xff)), 'CODEC_BAD_UTF8');
    expectCodecError(() => decode(str(8), u8(4, 0xf4, 0x90, 0x80, 0x80)), 'CODEC_BAD_UTF8'); // > U+10FFFF
    expectCodecError(() => decode(str(8), u8(1, 0xe2)), 'CODEC_BAD_UTF8'); // cut inside a character
  });

  it('oversize bytes, arrays and strings', () => {
    expectCodecError(() => decode(bytes(4), u8(5, 1, 2, 3, 4, 5)), 'CODEC_OVERSIZE');
    expectCodecError(() => decode(bytes(4), u8(0xff, 0xff, 0xff, 0x7f)), 'CODEC_OVERSIZE');
    expectCodecError(() => decode(array(uint, 2), u8(3, 1, 2, 3)), 'CODEC_OVERSIZE');
    expectCodecError(() => decode(str(3), u8(4, 0x61, 0x61, 0x61, 0x61)), 'CODEC_OVERSIZE');
    expectCodecError(() => decode(ByNumber, u8(33)), 'CODEC_OVERSIZE');
    // at the limit is fine
    expect(decode(bytes(4), u8(4, 1, 2, 3, 4))).toEqual(u8(1, 2, 3, 4));
    expect(decode(str(3), u8(3, 0x61, 0x61, 0x61))).toBe('aaa');
    // the limit is in bytes, not characters
    expectCodecError(() => encode(str(3), 'éé'), 'CODEC_OVERSIZE');
    expectCodecError(() => encode(bytes(4), new Uint8Array(5)), 'CODEC_OVERSIZE');
    expectCodecError(() => encode(array(uint, 2), [1, 2, 3]), 'CODEC_OVERSIZE');
    expectCodecError(() => encode(str(3), 'aaaa'), 'CODEC_OVERSIZE');
    // real limits: a path of 65 hashes does not fit in a certificate
    expectCodecError(() => decode(array(fixed(32), 64), u8(65)), 'CODEC_OVERSIZE');
  });

  it('unsorted or duplicate sortedArray entries', () => {
    const e = (k: number, v: number) => ({ key: u8(0, 0, 0, k), value: v });
    const good = encode(ByBytes, [e(1, 7), e(2, 8)]);
    // swap the two entries (each 5 bytes after the count)
    const swapped = cat(good.subarray(0, 1), good.subarray(6, 11), good.subarray(1, 6));
    expectCodecError(() => decode(ByBytes, swapped), 'CODEC_NON_CANONICAL');
    const dup = cat(u8(2), good.subarray(1, 6), good.subarray(1, 6));
    expectCodecError(() => decode(ByBytes, dup), 'CODEC_NON_CANONICAL');
    // number keys: ids 2, 1 and 1, 1
    expectCodecError(() => decode(ByNumber, u8(2, 2, 0, 1, 0)), 'CODEC_NON_CANONICAL');
    expectCodecError(() => decode(ByNumber, u8(2, 1, 0, 1, 1)), 'CODEC_NON_CANONICAL');
    // the encoder and the JSON reader refuse them as bad values
    expectCodecError(() => encode(ByBytes, [e(2, 1), e(1, 1)]), 'CODEC_BAD_VALUE');
    expectCodecError(() => encode(ByBytes, [e(1, 1), e(1, 2)]), 'CODEC_BAD_VALUE');
    expectCodecError(
      () => fromJson(ByBytes, toJson(array(Entry, 32), [e(2, 1), e(1, 1)])),
      'CODEC_BAD_VALUE',
    );
    // in real messages: a certificate whose signers repeat
    fc.assert(
      fc.property(arbCertificate, arbNode, (c, node) => {
        const sig = { node, signature: new Uint8Array(64), view: null };
        const bad = { ...c, signatures: [sig, sig] };
        const sigList = array(struct({ node: uint, signature: fixed(64), view: option(uint) }), 8);
        const b = encode(sigList, bad.signatures);
        const good1 = encode(Certificate, { ...c, signatures: [sig] });
        const prefixLen = good1.length - encode(sigList, [sig]).length;
        expectCodecError(
          () => decode(Certificate, cat(good1.subarray(0, prefixLen), b)),
          'CODEC_NON_CANONICAL',
        );
        expectCodecError(() => encode(Certificate, bad), 'CODEC_BAD_VALUE');
      }),
      { numRuns: 50 },
    );
  });
});

// ---------------------------------------------------------------------------------------------------------
// Rejections (JSON)

describe('JSON rejects', () => {
  const cert = fc.sample(arbCertificate, { numRuns: 1, seed: 42 })[0];
  const certJson = () => JSON.parse(JSON.stringify(toJson(Certificate, cert)));

  it('accepts the canonical JSON', () => {
    expect(fromJson(Certificate, certJson())).toEqual(cert);
  });

  it('unknown fields', () => {
    expectCodecError(() => fromJson(Pair, { a: 1, b: '', c: null, d: 1 }), 'CODEC_BAD_JSON');
    for (const k of ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'kind']) {
      expectCodecError(
        () => fromJson(Pair, JSON.parse(`{"a":1,"b":"","c":null,"${k}":1}`)),
        'CODEC_BAD_JSON',
      );
    }
    const j = certJson();
    j.receipt.extra = 1;
    expectCodecError(() => fromJson(Certificate, j), 'CODEC_BAD_JSON');
    expectCodecError(() => fromJson(Policy, { kind: 'top1', minAgree: 3, epsilon: 1 }), 'CODEC_BAD_JSON');
  });

  it('missing fields', () => {
    expectCodecError(() => fromJson(Pair, { a: 1, b: '' }), 'CODEC_BAD_JSON');
    expectCodecError(() => fromJson(Policy, { kind: 'tolerance', minAgree: 3 }), 'CODEC_BAD_JSON');
    for (const k of Object.keys(certJson())) {
      const j = certJson();
      delete j[k];
      expectCodecError(() => fromJson(Certificate, j), 'CODEC_BAD_JSON');
    }
    const j = certJson();
    delete j.outcome.decision;
    expectCodecError(() => fromJson(Certificate, j), 'CODEC_BAD_JSON');
  });

  it('non-canonical or invalid base64url', () => {
    const B = bytes(8);
    expect(fromJson(B, 'AA')).toEqual(u8(0));
    expect(fromJson(B, '')).toEqual(u8());
    expect(fromJson(B, '-_8')).toEqual(u8(0xfb, 0xff));
    for (const s of ['AB', 'AAF', 'AA==', 'AA=', 'A', 'AAAAA', '+/8', 'A A', 'AA\n', '=', 'ÄA']) {
      expectCodecError(() => fromJson(B, s), 'CODEC_BAD_JSON');
    }
    expect(fromJson(fixed(2), 'AAE')).toEqual(u8(0, 1));
    expectCodecError(() => fromJson(fixed(2), 'AAF'), 'CODEC_BAD_JSON');
    expectCodecError(() => fromJson(fixed(2), 'AA'), 'CODEC_BAD_JSON'); // wrong length
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 20 }), (b) => {
        const s = Buffer.from(b).toString('base64');
        if (/[+/]/.test(s) || s.endsWith('='))
          expectCodecError(() => fromJson(bytes(32), s), 'CODEC_BAD_JSON');
      }),
      RUNS,
    );
  });

  it('wrong types', () => {
    for (const j of ['1', 1.5, -1, 2 ** 53, null, true, [], {}, Number.NaN]) {
      expectCodecError(() => fromJson(uint, j), 'CODEC_BAD_JSON');
    }
    for (const j of ['1', 1.5, 2 ** 52, null]) expectCodecError(() => fromJson(sint, j), 'CODEC_BAD_JSON');
    for (const j of [0, 1, 'true', null]) expectCodecError(() => fromJson(bool, j), 'CODEC_BAD_JSON');
    for (const j of [1, null, [], {}]) expectCodecError(() => fromJson(bytes(4), j), 'CODEC_BAD_JSON');
    for (const j of [1, null, ['a'], {}]) expectCodecError(() => fromJson(str(4), j), 'CODEC_BAD_JSON');
    for (const j of [1, null, 'x', {}]) expectCodecError(() => fromJson(array(uint, 4), j), 'CODEC_BAD_JSON');
    for (const j of [1, null, 'x', [], [1, '', null]])
      expectCodecError(() => fromJson(Pair, j), 'CODEC_BAD_JSON');
    expectCodecError(() => fromJson(Pair, { a: 1, b: '', c: 5 }), 'CODEC_BAD_JSON');
    expectCodecError(() => fromJson(array(uint, 4), [1, 'x']), 'CODEC_BAD_JSON');
    // a lone surrogate cannot be encoded as UTF-8
    expectCodecError(() => fromJson(str(8), JSON.parse('"\\ud800"')), 'CODEC_BAD_JSON');
    // unions need a known kind
    for (const j of [
      { minAgree: 3 },
      { kind: 'majority', minAgree: 3 },
      { kind: 0, minAgree: 3 },
      [],
      'top1',
      null,
    ]) {
      expectCodecError(() => fromJson(Policy, j), 'CODEC_BAD_JSON');
    }
    const j = certJson();
    j.leafIndex = '0';
    expectCodecError(() => fromJson(Certificate, j), 'CODEC_BAD_JSON');
  });

  it('oversize values in JSON', () => {
    expectCodecError(() => fromJson(bytes(2), 'AAAA'), 'CODEC_OVERSIZE');
    expectCodecError(() => fromJson(array(uint, 2), [1, 2, 3]), 'CODEC_OVERSIZE');
    expectCodecError(() => fromJson(str(2), 'aaa'), 'CODEC_OVERSIZE');
  });
});

describe('digests and lists built from canonical bytes a caller already has', () => {
  it('batchDigestOfBytes and resultsDigestOfParts equal the digests of the values', () => {
    fc.assert(
      fc.property(arbBatch, arbSignedResults, (b, r) => {
        expect(batchDigestOfBytes(encode(Batch, b))).toEqual(batchDigestOf(b));
        expect(resultsDigestOfParts(encode(ResultBatch, r.batch), r.signature)).toEqual(resultsDigestOf(r));
      }),
      { numRuns: 50 },
    );
  });

  it('a RequestList is its count then its requests back to back; RequestAnswers round-trip', () => {
    fc.assert(
      fc.property(fc.array(arbSignedRequest, { maxLength: 5 }), (srs) => {
        const parts = [encode(uint, srs.length), ...srs.map((sr) => encode(SignedRequest, sr))];
        expect(encode(RequestList, srs)).toEqual(new Uint8Array(Buffer.concat(parts)));
        expect(decode(RequestList, encode(RequestList, srs))).toEqual(srs);
      }),
      { numRuns: 30 },
    );
    const cert = fc.sample(arbCertificate, { numRuns: 1, seed: 7 })[0];
    const answers = [
      { kind: 'certificate' as const, certificate: cert },
      { kind: 'pending' as const, requestId: new Uint8Array(32).fill(1) },
      { kind: 'error' as const, requestId: null, code: 'REQUEST_EXPIRED', message: 'too old' },
    ];
    expect(decode(RequestAnswers, encode(RequestAnswers, answers))).toEqual(answers);
  });
});

describe('decoded bytes are copies', () => {
  it('owned by the value: changing the input or another field afterwards changes nothing', () => {
    const codec = struct({ a: fixed(32), b: bytes(1000), c: fixed(64), d: bytes(300) });
    const v = {
      a: new Uint8Array(32).fill(1),
      b: new Uint8Array(40).fill(2),
      c: new Uint8Array(64).fill(3),
      d: new Uint8Array(300).fill(4), // longer than a slab field: a copy of its own
    };
    const wire = encode(codec, v);
    const got = decode(codec, wire);
    const again = decode(codec, wire);
    wire.fill(0xee);
    got.a.fill(9);
    got.b.fill(9);
    got.d.fill(9);
    expect(again).toEqual(v);
    expect(got.c).toEqual(v.c);
    for (const x of [again.a, again.b, again.c, again.d]) expect(x).toBeInstanceOf(Uint8Array);
    // encode's result is a copy too: encoding again does not overwrite it
    const first = encode(codec, v);
    const snapshot = Array.from(first);
    encode(codec, { ...v, a: new Uint8Array(32).fill(7) });
    expect(Array.from(first)).toEqual(snapshot);
  });

  it('copies out of a Buffer too (whose own slice() is a view): a long field owns exactly its bytes', () => {
    const codec = struct({ a: fixed(32), d: bytes(100_000) });
    const v = { a: new Uint8Array(32).fill(1), d: new Uint8Array(5000).fill(4) };
    // As the transport and the HTTP API hand frames and bodies over: a Buffer, here a view into a larger one.
    const big = Buffer.alloc(70_000, 0xaa);
    const wire = encode(codec, v);
    big.set(wire, 1000);
    const got = decode(codec, big.subarray(1000, 1000 + wire.length));
    big.fill(0);
    expect(got).toEqual(v);
    expect(got.d.byteOffset).toBe(0);
    expect(got.d.buffer.byteLength).toBe(5000);
  });

  it('decodeShared: equal fixed fields of one decode share one copy (not a view of the input); two decodes share none, nor does plain decode', () => {
    const item = struct({ group: fixed(32), id: fixed(32), sig: fixed(64), path: array(fixed(32), 12) });
    const codec = array(item, 100);
    const g = new Uint8Array(32).fill(7);
    const sig = new Uint8Array(64).fill(8);
    const node = (k: number) => new Uint8Array(32).fill(k);
    const v = Array.from({ length: 20 }, (_, i) => ({
      group: g,
      id: Uint8Array.from({ length: 32 }, (_, j) => (i * 31 + j) & 0xff),
      sig,
      path: [node(100 + i), node(200 + (i >> 1)), node(220 + (i >> 2))],
    }));
    // Same first two bytes as g (the table's slot) but other bytes, and a fixed(64) starting as g does.
    const twin = Uint8Array.from(g);
    twin[31] = 0;
    v[3].id = twin;
    v[4].sig = Uint8Array.from({ length: 64 }, () => 7);
    const wire = encode(codec, v);
    const got = decodeShared(codec, wire);
    const again = decodeShared(codec, wire);
    // Plain decode: every field its own copy (a caller may change one without changing the others).
    const own = decode(codec, wire);
    expect(own).toEqual(v);
    expect(own[1].group).not.toBe(own[0].group);
    own[0].sig[0] ^= 1;
    expect(own[19].sig).toEqual(sig);
    expect(got).toEqual(v);
    expect(got[1].group).toBe(got[0].group);
    expect(got[19].sig).toBe(got[0].sig);
    expect(got[2].path[1]).toBe(got[3].path[1]);
    expect(got[3].id).not.toBe(got[0].group);
    expect(got[3].id).toEqual(twin);
    expect(got[4].sig.length).toBe(64);
    expect(got[4].sig).toEqual(v[4].sig);
    // Not the input: a Buffer view or the wire changed afterwards changes nothing.
    expect(got[0].group.buffer).not.toBe(wire.buffer);
    wire.fill(0xee);
    expect(got).toEqual(v);
    // Another decode's values are its own: changing one leaves the other decode's intact.
    expect(again[0].group).not.toBe(got[0].group);
    again[0].group.fill(1);
    expect(got[5].group).toEqual(g);
    expect(decodeShared(codec, encode(codec, v))).toEqual(v);
  });

  it('decodes fixed fields right whatever repeats and table collisions a message holds', () => {
    // Two-byte and three-byte values from a small alphabet: many repeats, many values per table slot.
    const codec = array(struct({ a: fixed(2), b: fixed(3), c: array(fixed(2), 4) }), 64);
    const small = (n: number) => fc.uint8Array({ minLength: n, maxLength: n, min: 0, max: 2 });
    fc.assert(
      fc.property(
        fc.array(fc.record({ a: small(2), b: small(3), c: fc.array(small(2), { maxLength: 4 }) }), {
          maxLength: 64,
        }),
        (v) => {
          expect(decodeShared(codec, encode(codec, v))).toEqual(v);
        },
      ),
    );
  });
});

describe('remembered codecs', () => {
  it('encode a decoded or already encoded value from its remembered bytes, which are the canonical ones', () => {
    let encodes = 0;
    const base = struct({ n: uint, h: fixed(32), xs: array(uint, 100) });
    const counted: Codec<Infer<typeof base>> = {
      ...base,
      enc(w, v) {
        encodes++;
        base.enc(w, v);
      },
    };
    const codec = remembered(counted);
    const outer = struct({ tag: uint, inner: codec });
    fc.assert(
      fc.property(
        fc.nat(),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.array(fc.nat(), { maxLength: 100 }),
        (n, h, xs) => {
          const v = { n, h, xs };
          const wire = encode(codec, v);
          expect(wire).toEqual(encode(base, v));
          encodes = 0;
          // Decoded: never encoded again, alone or inside another value, and the bytes are the canonical ones.
          const got = decode(codec, wire);
          expect(encode(codec, got)).toEqual(wire);
          expect(encode(outer, { tag: 1, inner: got })).toEqual(
            encode(struct({ tag: uint, inner: base }), { tag: 1, inner: v }),
          );
          // Encoded once: the second encoding is remembered too.
          expect(encode(codec, v)).toEqual(wire);
          expect(encodes).toBe(0);
          // A structurally equal value that is a new object is encoded (once).
          expect(encode(codec, { ...v })).toEqual(wire);
          expect(encodes).toBe(1);
          // encode hands back the remembered bytes themselves (no copy each time), which later encodes of
          // other values (through the shared writer) leave intact.
          expect(encode(codec, got)).toBe(encode(codec, got));
          const fresh = { n: n + 1, h, xs };
          const freshBytes = encode(codec, fresh);
          expect(encode(codec, fresh)).toBe(freshBytes);
          encode(codec, { n: n + 2, h: new Uint8Array(32), xs: [] });
          encode(base, { n: 0, h: new Uint8Array(32).fill(9), xs: [1, 2, 3] });
          expect(freshBytes).toEqual(encode(base, fresh));
          expect(encode(codec, got)).toEqual(wire);
          // Remembered bytes are copies: changing the input afterwards changes nothing.
          const copy = wire.slice();
          const again = decode(codec, copy);
          copy.fill(0);
          expect(encode(codec, again)).toEqual(wire);
          // Also out of a Buffer (as frames and bodies arrive), whose own slice() would be a view.
          const frame = Buffer.alloc(wire.length + 64, 0x55);
          frame.set(wire, 64);
          const fromBuffer = decode(codec, frame.subarray(64));
          frame.fill(0);
          expect(encode(codec, fromBuffer)).toEqual(wire);
        },
      ),
      { numRuns: 50 },
    );
  });

  it('Batch and ResultBatch are remembered: digests of received values come from the bytes they arrived as', () => {
    fc.assert(
      fc.property(arbBatch, arbSignedResults, (b, r) => {
        const bb = decode(Batch, encode(Batch, b));
        const rb = decode(ResultBatch, encode(ResultBatch, r.batch));
        expect(batchDigestOf(bb)).toEqual(batchDigestOf(b));
        expect(encode(ResultBatch, rb)).toEqual(encode(ResultBatch, r.batch));
      }),
      { numRuns: 30 },
    );
  });
});

describe('struct codecs where code may not be made from strings (a browser page without unsafe-eval)', () => {
  it('fall back to field-by-field code with the same bytes, values and errors', async () => {
    const { struct, option, bytes, uint, str, encode, decode } = await import('../../src/protocol/codec.ts');
    const fields = () => ({ a: uint, b: bytes(4), c: option(uint), d: str(8) });
    const compiled = struct(fields());
    const real = globalThis.Function;
    let refused = 0;
    // As a content security policy without 'unsafe-eval' does: `new Function(…)` throws an EvalError.
    globalThis.Function = new Proxy(real, {
      construct() {
        refused++;
        throw new EvalError('code generation from strings disallowed');
      },
    });
    let loop: typeof compiled;
    try {
      loop = struct(fields());
    } finally {
      globalThis.Function = real;
    }
    expect(refused).toBe(1);
    const values = [
      { a: 0, b: new Uint8Array(0), c: null, d: '' },
      { a: 2 ** 40, b: new Uint8Array([1, 2, 3, 4]), c: 7, d: 'dropbear' },
    ];
    for (const v of values) {
      const e = encode(compiled, v);
      expect(encode(loop, v)).toEqual(e);
      expect(decode(loop, e)).toEqual(decode(compiled, e));
    }
    const errorOf = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return `${(e as { code?: string }).code} ${(e as Error).message}`;
      }
      return 'no error';
    };
    const bad = [
      { a: 1, b: new Uint8Array(5), c: null, d: '' },
      { a: -1, b: new Uint8Array(1), c: null, d: '' },
      { a: 1, b: new Uint8Array(1), c: 1.5, d: '' },
      null,
    ];
    for (const v of bad) {
      const expected = errorOf(() => encode(compiled, v as never));
      expect(expected).not.toBe('no error');
      expect(errorOf(() => encode(loop, v as never))).toBe(expected);
    }
    const good = encode(compiled, values[1]);
    for (let cut = 0; cut < good.length; cut++) {
      const expected = errorOf(() => decode(compiled, good.subarray(0, cut)));
      expect(expected).not.toBe('no error');
      expect(errorOf(() => decode(loop, good.subarray(0, cut)))).toBe(expected);
    }
  });

  it('as union variants: the same values, with the kind first, as the compiled ones and a non-struct variant', async () => {
    const { struct, union, remembered, uint, bytes, encode, decode } = await import(
      '../../src/protocol/codec.ts'
    );
    const fields = () => ({ a: uint, b: bytes(4) });
    const real = globalThis.Function;
    globalThis.Function = new Proxy(real, {
      construct() {
        throw new EvalError('code generation from strings disallowed');
      },
    });
    let loopUnion: ReturnType<typeof union>;
    try {
      loopUnion = union({ x: struct(fields()), y: remembered(struct({ c: uint })) });
    } finally {
      globalThis.Function = real;
    }
    // A compiled struct, and a variant that is no plain struct (remembered wraps it): its value is copied
    // after the kind.
    const compiledUnion = union({ x: struct(fields()), y: remembered(struct({ c: uint })) });
    for (const v of [
      { kind: 'x', a: 5, b: new Uint8Array([9, 8]) },
      { kind: 'y', c: 300 },
    ]) {
      const e = encode(compiledUnion, v as never);
      expect(encode(loopUnion, v as never)).toEqual(e);
      for (const u of [compiledUnion, loopUnion]) {
        const d = decode(u, e) as Record<string, unknown>;
        expect(d).toEqual(v);
        expect(Object.keys(d)[0]).toBe('kind');
      }
    }
    expect(() => decode(compiledUnion, new Uint8Array([2]))).toThrow(/unknown variant 2/);
  });
});
