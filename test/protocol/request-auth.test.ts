/**
 * Client request authentication: one signature per request, or one per batch of requests (a signature
 * over the RFC 9162 Merkle root of the batch's canonical Requests, each request carrying its leaf index,
 * the batch size and its inclusion path). And the request id, which names the Request alone.
 */
import { describe, expect, it } from 'vitest';
import {
  buildTree,
  CodecError,
  cryptoStats,
  DropbearError,
  decode,
  encode,
  fromJson,
  hex,
  keyPairFromSeed,
  LIMITS,
  leafHash,
  merkleStats,
  pathLength,
  type Request,
  RequestAuthCache,
  RequestBatchRoot,
  Request as RequestCodec,
  requestAuthProblem,
  requestIdOf,
  type SignedRequest,
  SignedRequest as SignedRequestCodec,
  sha256,
  signRequest,
  signRequestBatch,
  signTagged,
  TAGS,
  toJson,
  verifyRequestAuth,
} from '../../src/protocol/index.ts';

const client = keyPairFromSeed(new Uint8Array(32).fill(21));
const other = keyPairFromSeed(new Uint8Array(32).fill(22));
const GID = sha256(new TextEncoder().encode('group'));

function req(nonce: number, o: Partial<Request> = {}): { request: Request; input: Uint8Array } {
  const input = new TextEncoder().encode(`input ${nonce}`);
  return {
    request: {
      groupId: GID,
      client: client.publicKey,
      nonce,
      timestamp: 1_000_000,
      inputDigest: sha256(input),
      policy: null,
      maxFee: 100,
      ...o,
    },
    input,
  };
}
const reqs = (k: number, from = 0) => Array.from({ length: k }, (_, i) => req(from + i));

type BatchAuth = Extract<SignedRequest['auth'], { kind: 'batch' }>;
function batchAuth(sr: SignedRequest): BatchAuth {
  if (sr.auth.kind !== 'batch') throw new Error('expected a batch member');
  return sr.auth;
}
const withAuth = (sr: SignedRequest, auth: Partial<BatchAuth>): SignedRequest => ({
  ...sr,
  auth: { ...batchAuth(sr), ...auth },
});
const flip = (b: Uint8Array, i = 0) => {
  const c = new Uint8Array(b);
  c[i] ^= 1;
  return c;
};
const verifiesDuring = (f: () => void): number => {
  const v0 = cryptoStats.verifies;
  f();
  return cryptoStats.verifies - v0;
};

describe('single signatures', () => {
  it('sign, round trip, verify; a flipped bit or another key is refused', () => {
    const { request, input } = req(1);
    const sr = signRequest(request, input, client);
    expect(sr.auth.kind).toBe('single');
    const back = decode(SignedRequestCodec, encode(SignedRequestCodec, sr));
    expect(back).toEqual(sr);
    expect(fromJson(SignedRequestCodec, toJson(SignedRequestCodec, sr))).toEqual(sr);
    expect(verifyRequestAuth(sr)).toBe(true);
    if (sr.auth.kind !== 'single') throw new Error('single');
    expect(
      verifyRequestAuth({ ...sr, auth: { kind: 'single', signature: flip(sr.auth.signature, 9) } }),
    ).toBe(false);
    expect(verifyRequestAuth(signRequest(request, input, other))).toBe(false);
    expect(verifyRequestAuth({ ...sr, request: { ...request, nonce: 2 } })).toBe(false);
  });
});

describe('batch signatures', () => {
  for (const size of [1, 2, 3, 7, 64, 1000]) {
    it(`a batch of ${size}: one signature, every member verifies and round-trips`, () => {
      const s0 = cryptoStats.signs;
      const signed = signRequestBatch(reqs(size), client);
      expect(cryptoStats.signs - s0).toBe(1);
      expect(signed).toHaveLength(size);
      const roots = new Set(signed.map((sr) => hex(batchAuth(sr).root)));
      expect(roots.size).toBe(1);
      for (const [i, sr] of signed.entries()) {
        const a = batchAuth(sr);
        expect(a.index).toBe(i);
        expect(a.size).toBe(size);
        expect(a.path).toHaveLength(pathLength(i, size));
        expect(a.path.length).toBeLessThanOrEqual(Math.ceil(Math.log2(size)));
        if (size <= 64 || i % 97 === 0) {
          expect(decode(SignedRequestCodec, encode(SignedRequestCodec, sr))).toEqual(sr);
          expect(
            fromJson(SignedRequestCodec, JSON.parse(JSON.stringify(toJson(SignedRequestCodec, sr)))),
          ).toEqual(sr);
        }
      }
      // Without a cache each member costs one signature check; with one the whole batch costs one.
      if (size <= 64) expect(verifiesDuring(() => signed.every((sr) => verifyRequestAuth(sr)))).toBe(size);
      const cache = new RequestAuthCache();
      let ok = true;
      expect(verifiesDuring(() => (ok = signed.every((sr) => verifyRequestAuth(sr, cache))))).toBe(1);
      expect(ok).toBe(true);
      expect(cache.misses).toBe(1);
      expect(cache.hits).toBe(size - 1);
    });
  }

  it('a batch of 1: no path, the root is the leaf hash of the request', () => {
    const [sr] = signRequestBatch([req(5)], client);
    const a = batchAuth(sr);
    expect(a).toMatchObject({ kind: 'batch', size: 1, index: 0, path: [] });
    expect(hex(a.root)).toBe(hex(leafHash(encode(RequestCodec, sr.request))));
    expect(verifyRequestAuth(sr)).toBe(true);
  });

  it('the signature is plain Ed25519 over TAGS.requestBatch ‖ groupId ‖ RequestBatchRoot{root, size}', () => {
    const signed = signRequestBatch(reqs(5), client);
    const a = batchAuth(signed[0]);
    const expected = signTagged(
      TAGS.requestBatch,
      GID,
      encode(RequestBatchRoot, { root: a.root, size: 5 }),
      client,
    );
    expect(hex(a.signature)).toBe(hex(expected));
  });

  it('4096 is the largest batch; 0 and 4097 are refused, as are mixed or repeated requests', () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e instanceof DropbearError ? e.code : String(e);
      }
      return null;
    };
    expect(LIMITS.requestBatch).toBe(4096);
    const big = signRequestBatch(reqs(4096), client);
    expect(batchAuth(big[4095]).path).toHaveLength(12);
    expect(verifyRequestAuth(big[4095]) && verifyRequestAuth(big[0])).toBe(true);
    expect(code(() => signRequestBatch([], client))).toBe('REQUEST_BATCH_SIZE');
    expect(code(() => signRequestBatch(reqs(4097), client))).toBe('REQUEST_BATCH_SIZE');
    expect(code(() => signRequestBatch([req(1), req(2, { groupId: sha256(GID) })], client))).toBe(
      'REQUEST_BATCH_MIXED',
    );
    expect(code(() => signRequestBatch([req(1), req(2, { client: other.publicKey })], client))).toBe(
      'REQUEST_BATCH_MIXED',
    );
    expect(code(() => signRequestBatch([req(1), req(2), req(1)], client))).toBe('REQUEST_BATCH_DUPLICATE');
  });

  describe('tampering with any part of a member is refused', () => {
    const size = 11;
    const signed = signRequestBatch(reqs(size), client);
    const byOther = signRequestBatch(reqs(size), other); // the same requests signed by another key
    const cases: [string, (sr: SignedRequest, i: number) => SignedRequest | null, RegExp][] = [
      [
        'a bit of the path',
        (sr) => withAuth(sr, { path: [flip(batchAuth(sr).path[0], 5), ...batchAuth(sr).path.slice(1)] }),
        /path/,
      ],
      ['the path one element short', (sr) => withAuth(sr, { path: batchAuth(sr).path.slice(1) }), /path/],
      [
        'the path one element long',
        (sr) => withAuth(sr, { path: [...batchAuth(sr).path, new Uint8Array(32)] }),
        /path/,
      ],
      [
        'the path of another member',
        (sr, i) => withAuth(sr, { path: batchAuth(signed[(i + 1) % size]).path }),
        /path/,
      ],
      ['the index (another member’s)', (sr, i) => withAuth(sr, { index: (i + 1) % size }), /path|index/],
      ['the index at the size', (sr) => withAuth(sr, { index: size }), /index/],
      ['the size one more', (sr) => withAuth(sr, { size: size + 1 }), /path|signature/],
      [
        'the size one less',
        (sr, i) => (i < size - 1 ? withAuth(sr, { size: size - 1 }) : null),
        /path|signature/,
      ],
      ['the size 0', (sr) => withAuth(sr, { size: 0 }), /size/],
      ['the size 4097', (sr) => withAuth(sr, { size: 4097 }), /size/],
      ['a bit of the root', (sr) => withAuth(sr, { root: flip(batchAuth(sr).root, 31) }), /path/],
      [
        'a bit of the signature',
        (sr) => withAuth(sr, { signature: flip(batchAuth(sr).signature, 40) }),
        /signature/,
      ],
      ['a signature by another key', (_sr, i) => byOther[i], /signature/],
      [
        'the signature under the single form',
        (sr) => ({ ...sr, auth: { kind: 'single', signature: batchAuth(sr).signature } }),
        /signature/,
      ],
      [
        'the nonce of the request',
        (sr) => ({ ...sr, request: { ...sr.request, nonce: sr.request.nonce + 1000 } }),
        /path/,
      ],
      ['the fee limit of the request', (sr) => ({ ...sr, request: { ...sr.request, maxFee: 101 } }), /path/],
      [
        'the input digest',
        (sr) => ({ ...sr, request: { ...sr.request, inputDigest: flip(sr.request.inputDigest) } }),
        /path/,
      ],
      [
        'the client (with its own key unchanged)',
        (sr) => ({ ...sr, request: { ...sr.request, client: other.publicKey } }),
        /path/,
      ],
    ];
    for (const [name, tamper, why] of cases)
      it(name, () => {
        const cache = new RequestAuthCache();
        // Honest members first, so the cache holds the batch's verified root.
        expect(signed.every((sr) => verifyRequestAuth(sr, cache))).toBe(true);
        for (let i = 0; i < size; i++) {
          const bad = tamper(signed[i], i);
          if (!bad) continue;
          expect(requestAuthProblem(bad), `member ${i}`).toMatch(why);
          expect(requestAuthProblem(bad, cache), `member ${i}, cached`).toMatch(why);
          expect(verifyRequestAuth(bad, cache)).toBe(false);
        }
        // The honest members still pass, from the cache.
        expect(
          verifiesDuring(() => expect(signed.every((sr) => verifyRequestAuth(sr, cache))).toBe(true)),
        ).toBe(0);
      });

    it('a path over 12 elements does not even decode', () => {
      const sr = withAuth(signed[0], { path: Array.from({ length: 13 }, () => new Uint8Array(32)) });
      expect(() => encode(SignedRequestCodec, sr)).toThrow(CodecError);
    });
  });
});

describe('the cache', () => {
  it('remembers failures too: a bad signature is checked once, and cannot push out good entries', () => {
    const cache = new RequestAuthCache(2, 1);
    const batches = [0, 1].map((b) => signRequestBatch(reqs(4, b * 100), client));
    for (const b of batches) expect(b.every((sr) => verifyRequestAuth(sr, cache))).toBe(true);
    const forged = batches[0].map((sr) => withAuth(sr, { signature: flip(batchAuth(sr).signature, 1) }));
    expect(
      verifiesDuring(() => {
        for (const sr of forged) expect(verifyRequestAuth(sr, cache)).toBe(false);
      }),
    ).toBe(1);
    // A flood of other bad signatures takes only the failure slots.
    for (let k = 2; k < 10; k++)
      expect(
        verifyRequestAuth(
          withAuth(batches[1][0], { signature: flip(batchAuth(batches[1][0]).signature, k) }),
          cache,
        ),
      ).toBe(false);
    expect(
      verifiesDuring(() => {
        for (const sr of batches.flat()) verifyRequestAuth(sr, cache);
      }),
    ).toBe(0);
    expect(cache.size).toBe(3);
  });

  it('is bounded: least recently used roots go first', () => {
    const cache = new RequestAuthCache(2);
    const bs = [0, 1, 2].map((b) => signRequestBatch(reqs(2, b * 10), client));
    verifyRequestAuth(bs[0][0], cache);
    verifyRequestAuth(bs[1][0], cache);
    verifyRequestAuth(bs[0][1], cache); // touches batch 0
    verifyRequestAuth(bs[2][0], cache); // evicts batch 1
    expect(verifiesDuring(() => verifyRequestAuth(bs[0][0], cache))).toBe(0);
    expect(verifiesDuring(() => verifyRequestAuth(bs[1][1], cache))).toBe(1);

    // Trees (proven Merkle nodes, signers seen) may outlive their good check: a signer remembered by a
    // tree counts only while the check itself is still in the LRU.
    const wide = new RequestAuthCache(2, 1, 8);
    for (const b of bs) verifyRequestAuth(b[0], wide); // batch 0's check is evicted, its tree is not
    expect(verifiesDuring(() => verifyRequestAuth(bs[0][1], wide))).toBe(1);
    expect(verifiesDuring(() => verifyRequestAuth(bs[0][0], wide))).toBe(0);
    expect(wide.hits).toBe(1);
  });
});

describe('the cache, members arriving interleaved', () => {
  it('answers each member of two interleaved batches, and a forged path or size, as an uncached check would', () => {
    const cache = new RequestAuthCache();
    const [a, b] = [0, 1].map((k) => signRequestBatch(reqs(8, k * 100), client));
    const forgedPath = withAuth(a[3], { path: batchAuth(a[3]).path.map((p, i) => (i === 1 ? flip(p) : p)) });
    const otherSize = withAuth(a[5], { size: 9 });
    const otherIndex = withAuth(b[2], { index: 3 });
    const sequence = [
      a[0],
      b[0],
      a[1],
      forgedPath,
      a[2],
      b[1],
      otherSize,
      b[2],
      otherIndex,
      a[3],
      ...a,
      ...b,
    ];
    for (const sr of sequence) expect(verifyRequestAuth(sr, cache)).toBe(verifyRequestAuth(sr));
    expect(verifyRequestAuth(forgedPath, cache)).toBe(false);
    expect(verifyRequestAuth(otherSize, cache)).toBe(false);
    expect(verifyRequestAuth(otherIndex, cache)).toBe(false);
  });

  it('a batch whose members come one after another costs one signature check and ~1 node hash each', () => {
    const cache = new RequestAuthCache();
    const batch = signRequestBatch(reqs(64), client);
    const h0 = merkleStats.nodeHashes;
    expect(verifiesDuring(() => expect(batch.every((sr) => verifyRequestAuth(sr, cache))).toBe(true))).toBe(
      1,
    );
    const perMember = (merkleStats.nodeHashes - h0) / batch.length;
    // Each interior node of the tree once (verifyPathKnown): 63 for 64 members.
    expect(perMember).toBe(63 / 64);
  });
});

describe('the cache learns only from members whose batch signature checked', () => {
  it('members with made-up roots (more than the cache keeps trees) do not push a genuine tree out', () => {
    const cache = new RequestAuthCache(4096, 1024, 8);
    const batch = signRequestBatch(reqs(64), client);
    for (const sr of batch) expect(verifyRequestAuth(sr, cache)).toBe(true);
    for (let k = 0; k < 20; k++) {
      // A path that does lead to its root, but the root was never signed.
      const sr = batch[40 + (k % 8)];
      const a = batchAuth(sr);
      const leaves = Array.from({ length: 64 }, (_, i) => sha256(new Uint8Array([k, i])));
      leaves[a.index] = leafHash(encode(RequestCodec, sr.request));
      const fake = buildTree(leaves);
      const forged = withAuth(sr, { root: fake.root, path: fake.path(a.index) });
      expect(requestAuthProblem(forged, cache)).toBe('client batch signature invalid');
    }
    // Checked again, each genuine member costs no node hash (its leaf is proven); a tree pushed out would
    // cost the whole path again for the first and ~1 for the others.
    const h0 = merkleStats.nodeHashes;
    expect(
      verifiesDuring(() => expect(batch.slice(0, 16).every((sr) => verifyRequestAuth(sr, cache))).toBe(true)),
    ).toBe(0);
    expect(merkleStats.nodeHashes - h0).toBe(0);
  });

  it('keeps its own copies of path elements: a caller changing a checked path afterwards changes nothing', () => {
    const cache = new RequestAuthCache();
    const batch = signRequestBatch(reqs(16), client).map((sr) => structuredClone(sr));
    for (const sr of batch.slice(0, 8)) expect(verifyRequestAuth(sr, cache)).toBe(true);
    const a = batchAuth(batch[0]);
    const top = a.path.length - 1;
    a.path[top][3] ^= 1;
    expect(verifyRequestAuth(batch[0], cache)).toBe(verifyRequestAuth(batch[0]));
    expect(verifyRequestAuth(batch[0], cache)).toBe(false);
    const other = structuredClone(batch[9]);
    batchAuth(other).path[top] = a.path[top];
    expect(verifyRequestAuth(other, cache)).toBe(false);
  });
});

describe('request ids', () => {
  it('are SHA-256 of the canonical Request, whichever way it was signed', () => {
    const r = req(3);
    const alone = signRequest(r.request, r.input, client);
    const inBatch = signRequestBatch([req(1), req(2), r, req(4)], client)[2];
    const inOtherBatch = signRequestBatch([r], client)[0];
    const expected = hex(sha256(encode(RequestCodec, r.request)));
    for (const sr of [alone, inBatch, inOtherBatch]) expect(hex(requestIdOf(sr))).toBe(expected);
    // A forged authentication does not change the id either (nodes refuse it; see test/consensus).
    expect(hex(requestIdOf(withAuth(inBatch, { index: 0 })))).toBe(expected);
  });

  it('are distinct for distinct requests: 1000 members of a batch, and any changed field', () => {
    const signed = signRequestBatch(reqs(1000), client);
    expect(new Set(signed.map((sr) => hex(requestIdOf(sr)))).size).toBe(1000);
    const base = req(7).request;
    const variants: Request[] = [
      base,
      { ...base, nonce: 8 },
      { ...base, timestamp: base.timestamp + 1 },
      { ...base, maxFee: 101 },
      { ...base, policy: { kind: 'top1', minAgree: 2 } },
      { ...base, inputDigest: flip(base.inputDigest) },
      { ...base, client: other.publicKey },
      { ...base, groupId: flip(GID) },
    ];
    expect(new Set(variants.map((request) => hex(requestIdOf({ request })))).size).toBe(variants.length);
  });
});
