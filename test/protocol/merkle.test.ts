/**
 * buildTree / verifyPath against an independent transcription of RFC 9162 §2.1.1 (MTH) and §2.1.3.1 (PATH).
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  addLearned,
  buildTree,
  clearLearned,
  type KnownNodes,
  knownNodes,
  leafHash,
  learnedNodes,
  merkleStats,
  nodeHash,
  pathLength,
  verifyPath,
  verifyPathKnown,
} from '../../src/protocol/index.ts';

// ---------------------------------------------------------------------------------------------------------
// Reference (RFC 9162), written without the code under test

function H(...parts: Uint8Array[]): Uint8Array {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}
const refLeaf = (d: Uint8Array) => H(new Uint8Array([0x00]), d);
const refNode = (l: Uint8Array, r: Uint8Array) => H(new Uint8Array([0x01]), l, r);

/** The largest power of two smaller than n (n > 1). */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH(D[n]) */
function mth(d: Uint8Array[]): Uint8Array {
  if (d.length === 0) return H();
  if (d.length === 1) return refLeaf(d[0]);
  const k = split(d.length);
  return refNode(mth(d.slice(0, k)), mth(d.slice(k)));
}

/** PATH(m, D[n]) */
function refPath(m: number, d: Uint8Array[]): Uint8Array[] {
  if (d.length === 1) return [];
  const k = split(d.length);
  if (m < k) return [...refPath(m, d.slice(0, k)), mth(d.slice(k))];
  return [...refPath(m - k, d.slice(k)), mth(d.slice(0, k))];
}

/** MTH over leaf data, memoised by range: the same as mth() but fast enough for larger trees. */
function mthMemo(d: Uint8Array[]): (lo: number, hi: number) => Uint8Array {
  const memo = new Map<string, Uint8Array>();
  const f = (lo: number, hi: number): Uint8Array => {
    const key = `${lo}:${hi}`;
    let v = memo.get(key);
    if (!v) {
      if (hi - lo === 1) v = refLeaf(d[lo]);
      else {
        const k = split(hi - lo);
        v = refNode(f(lo, lo + k), f(lo + k, hi));
      }
      memo.set(key, v);
    }
    return v;
  };
  return f;
}
function refPathMemo(
  m: number,
  lo: number,
  hi: number,
  f: (lo: number, hi: number) => Uint8Array,
): Uint8Array[] {
  if (hi - lo === 1) return [];
  const k = split(hi - lo);
  if (m < k) return [...refPathMemo(m, lo, lo + k, f), f(lo + k, hi)];
  return [...refPathMemo(m - k, lo + k, hi, f), f(lo, lo + k)];
}

const bytesEq = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;
const pathsEq = (a: Uint8Array[], b: Uint8Array[]) =>
  a.length === b.length && a.every((x, i) => bytesEq(x, b[i]));

/** Leaf data: distinct, and of varying length. */
function leafData(n: number, salt = 0): Uint8Array[] {
  return Array.from(
    { length: n },
    (_, i) => new Uint8Array(Buffer.from(`leaf ${salt}/${i}${'.'.repeat(i % 5)}`)),
  );
}

// ---------------------------------------------------------------------------------------------------------

describe('buildTree matches RFC 9162', () => {
  it('leaf and node hashes', () => {
    const a = new Uint8Array([1, 2, 3]);
    const b = new Uint8Array(32).fill(7);
    expect(leafHash(a)).toEqual(refLeaf(a));
    expect(nodeHash(b, a)).toEqual(refNode(b, a));
    expect(leafHash(new Uint8Array(0))).toEqual(
      new Uint8Array(Buffer.from('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d', 'hex')),
    );
  });

  it('the empty tree has the hash of the empty string as root', () => {
    const t = buildTree([]);
    expect(t.size).toBe(0);
    expect(t.root).toEqual(H());
    expect(Buffer.from(t.root).toString('hex')).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
  });

  it('root and every path, sizes 0..70', () => {
    for (let n = 0; n <= 70; n++) {
      const d = leafData(n);
      const t = buildTree(d.map(leafHash));
      expect(t.size).toBe(n);
      expect(t.root, `root of ${n}`).toEqual(mth(d));
      for (let m = 0; m < n; m++) {
        const p = t.path(m);
        expect(pathsEq(p, refPath(m, d)), `path ${m} of ${n}`).toBe(true);
        expect(verifyPath(leafHash(d[m]), m, n, p, t.root)).toBe(true);
      }
    }
  });

  it('random larger sizes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 71, max: 3000 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 8 }),
        (n, picks) => {
          const d = leafData(n, n);
          const f = mthMemo(d);
          const t = buildTree(d.map(leafHash));
          expect(t.root).toEqual(f(0, n));
          for (const m of [0, n - 1, ...picks.map((x) => x % n)]) {
            const p = t.path(m);
            expect(pathsEq(p, refPathMemo(m, 0, n, f))).toBe(true);
            expect(verifyPath(leafHash(d[m]), m, n, p, t.root)).toBe(true);
          }
        },
      ),
      { numRuns: 15 },
    );
    for (const n of [1024, 1025, 2047, 4096, 4097]) {
      const d = leafData(n, 1);
      const f = mthMemo(d);
      expect(buildTree(d.map(leafHash)).root).toEqual(f(0, n));
    }
  });

  it('path() refuses indices outside the tree', () => {
    const t = buildTree(leafData(5).map(leafHash));
    for (const i of [-1, 5, 6, 1.5, Number.NaN]) expect(() => t.path(i)).toThrow(RangeError);
    // (the empty tree's path() returns [] for any index; no verifier accepts anything against size 0)
    expect(verifyPath(H(), 0, 0, buildTree([]).path(0), buildTree([]).root)).toBe(false);
  });
});

describe('verifyPath rejects', () => {
  const sizes = [...Array.from({ length: 40 }, (_, i) => i + 1), 63, 64, 65, 70];

  it('a wrong index', () => {
    for (const n of sizes) {
      const d = leafData(n);
      const t = buildTree(d.map(leafHash));
      for (let m = 0; m < n; m++) {
        const p = t.path(m);
        const leaf = leafHash(d[m]);
        for (let j = 0; j < n; j++)
          if (j !== m) expect(verifyPath(leaf, j, n, p, t.root), `${m}→${j} of ${n}`).toBe(false);
      }
    }
  });

  it('an index at or beyond the size, or not a safe integer', () => {
    for (const n of [1, 2, 3, 7, 8, 9]) {
      const d = leafData(n);
      const t = buildTree(d.map(leafHash));
      for (let m = 0; m < n; m++) {
        const leaf = leafHash(d[m]);
        const p = t.path(m);
        for (const i of [n, n + 1, 2 * n, -1, m + 0.5, Number.NaN, 2 ** 53])
          expect(verifyPath(leaf, i, n, p, t.root)).toBe(false);
      }
    }
    expect(verifyPath(H(), 0, 0, [], H())).toBe(false);
  });

  it('a wrong size: the path must be the genuine one for the signed size', () => {
    // For every (leaf m, tree size n) and every other size s, the path of tree n is accepted against the
    // root of the tree of size s (same leaves) exactly when it is also that tree's genuine path.
    // Against tree n's own root a different size is accepted only when the shapes coincide, which is why
    // the verifier must take the size from signed data (the receipt), never from the proof.
    const all = leafData(80);
    const f = mthMemo(all);
    let coincidences = 0;
    for (let n = 1; n <= 40; n++) {
      const t = buildTree(all.slice(0, n).map(leafHash));
      for (let m = 0; m < n; m++) {
        const p = t.path(m);
        const leaf = leafHash(all[m]);
        for (let s = m + 1; s <= n + 8; s++) {
          if (s === n) continue;
          const genuine = refPathMemo(m, 0, s, f);
          expect(verifyPath(leaf, m, s, p, f(0, s)), `${m} of ${n} as size ${s}`).toBe(pathsEq(p, genuine));
          const sameRoot = verifyPath(leaf, m, s, p, t.root);
          if (sameRoot) {
            coincidences++;
            expect(p.length).toBe(genuine.length); // a shape that happens to fold the same way
          }
        }
      }
    }
    // The documented example: leaf 0 of a 3-leaf tree folds to the same root when read as size 4.
    const t3 = buildTree(all.slice(0, 3).map(leafHash));
    expect(verifyPath(leafHash(all[0]), 0, 4, t3.path(0), t3.root)).toBe(true);
    expect(coincidences).toBeGreaterThan(0);
  });

  it('a flipped byte in any path element', () => {
    for (const n of [2, 3, 5, 8, 13, 33, 70]) {
      const d = leafData(n);
      const t = buildTree(d.map(leafHash));
      for (let m = 0; m < n; m++) {
        const p = t.path(m);
        for (let k = 0; k < p.length; k++) {
          for (const byte of [0, 13, 31]) {
            const q = p.map((x) => new Uint8Array(x));
            q[k][byte] ^= 0x01;
            expect(verifyPath(leafHash(d[m]), m, n, q, t.root)).toBe(false);
          }
        }
      }
    }
  });

  it('a truncated, extended or reordered path, or a path element of the wrong length', () => {
    for (const n of [2, 3, 4, 5, 9, 16, 17, 70]) {
      const d = leafData(n);
      const t = buildTree(d.map(leafHash));
      for (let m = 0; m < n; m++) {
        const leaf = leafHash(d[m]);
        const p = t.path(m);
        expect(verifyPath(leaf, m, n, p.slice(0, -1), t.root)).toBe(false);
        expect(verifyPath(leaf, m, n, p.slice(1), t.root)).toBe(false);
        expect(verifyPath(leaf, m, n, [...p, t.root], t.root)).toBe(false);
        expect(verifyPath(leaf, m, n, [...p, new Uint8Array(32)], t.root)).toBe(false);
        expect(verifyPath(leaf, m, n, [new Uint8Array(32), ...p], t.root)).toBe(false);
        if (p.length > 1) expect(verifyPath(leaf, m, n, [...p].reverse(), t.root)).toBe(false);
        const short = [...p];
        short[0] = short[0].subarray(0, 31);
        expect(verifyPath(leaf, m, n, short, t.root)).toBe(false);
      }
    }
  });

  it('a wrong leaf or a wrong root', () => {
    for (const n of [1, 2, 3, 6, 31, 70]) {
      const d = leafData(n);
      const t = buildTree(d.map(leafHash));
      for (let m = 0; m < n; m++) {
        const p = t.path(m);
        expect(verifyPath(leafHash(d[(m + 1) % n]), m, n, p, t.root)).toBe(n === 1);
        expect(verifyPath(d[m], m, n, p, t.root)).toBe(false); // the data rather than its leaf hash
        const leaf = leafHash(d[m]);
        const wrongLeaf = new Uint8Array(leaf);
        wrongLeaf[0] ^= 0x80;
        expect(verifyPath(wrongLeaf, m, n, p, t.root)).toBe(false);
        const wrongRoot = new Uint8Array(t.root);
        wrongRoot[31] ^= 0x01;
        expect(verifyPath(leaf, m, n, p, wrongRoot)).toBe(false);
        expect(verifyPath(leaf, m, n, p, t.root.subarray(0, 31))).toBe(false);
      }
    }
    // n === 1 above: the leaf is the root, so "another leaf" is the same leaf. A different one fails:
    const t1 = buildTree([leafHash(new Uint8Array([1]))]);
    expect(verifyPath(leafHash(new Uint8Array([2])), 0, 1, [], t1.root)).toBe(false);
  });
});

describe('domain separation of leaves and inner nodes', () => {
  it('a leaf holding 0x01‖a‖b is not the inner node of a and b', () => {
    const a = leafHash(new Uint8Array([1]));
    const b = leafHash(new Uint8Array([2]));
    const forged = new Uint8Array([0x01, ...a, ...b]);
    expect(leafHash(forged)).not.toEqual(nodeHash(a, b));
    expect(leafHash(new Uint8Array([...a, ...b]))).not.toEqual(nodeHash(a, b));
    // so a one-leaf tree over a‖b does not share its root with the two-leaf tree [a, b]
    const two = buildTree([a, b]);
    const one = buildTree([leafHash(new Uint8Array([...a, ...b]))]);
    expect(one.root).not.toEqual(two.root);
    // and a verifier that hashes the data itself (leafHash) cannot be fooled into a one-leaf proof of it
    expect(verifyPath(leafHash(forged), 0, 1, [], two.root)).toBe(false);
    expect(verifyPath(leafHash(new Uint8Array([...a, ...b])), 0, 1, [], two.root)).toBe(false);
  });
});

describe('pathLength', () => {
  it('is the length of every audit path, sizes 1..300, and -1 outside the tree', () => {
    for (let size = 1; size <= 300; size++) {
      const tree = buildTree(
        Array.from({ length: size }, (_, i) => leafHash(new Uint8Array([i & 0xff, i >> 8]))),
      );
      for (let i = 0; i < size; i++) expect(pathLength(i, size)).toBe(tree.path(i).length);
      expect(pathLength(size, size)).toBe(-1);
      expect(pathLength(-1, size)).toBe(-1);
    }
    expect(pathLength(0, 4096)).toBe(12);
    expect(pathLength(4095, 4096)).toBe(12);
    expect(pathLength(4096, 4097)).toBe(1);
  });
});

describe('verifyPathKnown (paths of one tree sharing what earlier paths proved)', () => {
  it('answers exactly as verifyPath for genuine and forged paths in any order', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 70 }),
        fc.array(
          fc.record({
            leaf: fc.nat(),
            kind: fc.constantFrom('genuine', 'index', 'element', 'data', 'short', 'long', 'other-size'),
            at: fc.nat(),
            bit: fc.integer({ min: 0, max: 255 }),
          }),
          { minLength: 1, maxLength: 120 },
        ),
        (n, queries) => {
          const d = leafData(n, 7);
          const t = buildTree(d.map(leafHash));
          const known: KnownNodes = knownNodes();
          for (const q of queries) {
            const m = q.leaf % n;
            let leaf: Uint8Array = leafHash(d[m]);
            let index = m;
            let size = n;
            let p: Uint8Array[] = t.path(m).map((x) => new Uint8Array(x));
            if (q.kind === 'index') index = (m + 1 + (q.at % n)) % n;
            if (q.kind === 'element' && p.length > 0) p[q.at % p.length][q.bit % 32] ^= 1 + (q.bit % 255);
            if (q.kind === 'data') leaf = leafHash(new Uint8Array([...d[m], q.bit]));
            if (q.kind === 'short') p = p.slice(1);
            if (q.kind === 'long') p = [...p, leaf];
            if (q.kind === 'other-size') size = n + 1 + (q.at % 3);
            const want = verifyPath(leaf, index, size, p, t.root);
            // a set of proven nodes belongs to one root and size
            const got = verifyPathKnown(leaf, index, size, p, t.root, size === n ? known : knownNodes());
            expect(got, `${q.kind} leaf ${m} of ${n}`).toBe(want);
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('checks the 64 paths of a 64-leaf tree with one hash each instead of six', () => {
    const d = leafData(64, 3);
    const t = buildTree(d.map(leafHash));
    const known: KnownNodes = knownNodes();
    const before = merkleStats.nodeHashes;
    for (let m = 0; m < 64; m++)
      expect(verifyPathKnown(leafHash(d[m]), m, 64, t.path(m), t.root, known)).toBe(true);
    const cached = merkleStats.nodeHashes - before;
    const plain0 = merkleStats.nodeHashes;
    for (let m = 0; m < 64; m++) expect(verifyPath(leafHash(d[m]), m, 64, t.path(m), t.root)).toBe(true);
    expect(merkleStats.nodeHashes - plain0).toBe(64 * 6);
    // A path proves both children at every level it climbs, its own node and its sibling: a later leaf
    // that is one of them is proven from the start, and any other climbs only to the first proven node.
    // Each of the 63 interior nodes is computed once: what building the tree from its leaves takes.
    expect(cached).toBe(63);
  });

  it('computes each interior node at most once, in any order of the leaves, whatever the size', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer(), (n, seed) => {
        const d = leafData(n, 5);
        const t = buildTree(d.map(leafHash));
        const order = Array.from({ length: n }, (_, i) => i);
        let x = seed >>> 0;
        for (let i = n - 1; i > 0; i--) {
          x = (Math.imul(x, 1103515245) + 12345) >>> 0;
          const j = x % (i + 1);
          [order[i], order[j]] = [order[j], order[i]];
        }
        const known: KnownNodes = knownNodes();
        const before = merkleStats.nodeHashes;
        for (const m of order)
          expect(verifyPathKnown(leafHash(d[m]), m, n, t.path(m), t.root, known)).toBe(true);
        expect(merkleStats.nodeHashes - before).toBe(n - 1);
      }),
      { numRuns: 60 },
    );
  });

  it('reuses one scratch of learned nodes: a failed path takes back its additions, a cleared one keeps none', () => {
    const d = leafData(40, 9);
    const t = buildTree(d.map(leafHash));
    const known: KnownNodes = knownNodes();
    const scratch = learnedNodes();
    for (let m = 0; m < 40; m++) {
      clearLearned(scratch);
      const bad = t.path(m).map((x) => new Uint8Array(x));
      if (bad.length > 0) bad[bad.length - 1][0] ^= 1;
      // A forged path first: it fails, and leaves nothing learned.
      expect(verifyPathKnown(leafHash(d[m]), m, 40, bad, t.root, known, scratch)).toBe(false);
      expect([scratch.nodeCount, scratch.siblingCount]).toEqual([0, 0]);
      expect(verifyPathKnown(leafHash(d[m]), m, 40, t.path(m), t.root, known, scratch)).toBe(true);
      addLearned(known, scratch);
    }
    // Everything the scratch held counted: each member checked again is proven without a node hash, and
    // a forged path still fails against what was learned.
    const before = merkleStats.nodeHashes;
    for (let m = 0; m < 40; m++) {
      clearLearned(scratch);
      expect(verifyPathKnown(leafHash(d[m]), m, 40, t.path(m), t.root, known, scratch)).toBe(true);
      const bad = t.path(m).map((x) => new Uint8Array(x));
      bad[0][5] ^= 1;
      expect(verifyPathKnown(leafHash(d[m]), m, 40, bad, t.root, known, scratch)).toBe(false);
    }
    expect(merkleStats.nodeHashes - before).toBeGreaterThan(0); // the forged paths hash
    const again = merkleStats.nodeHashes;
    for (let m = 0; m < 40; m++)
      expect(verifyPathKnown(leafHash(d[m]), m, 40, t.path(m), t.root, known)).toBe(true);
    expect(merkleStats.nodeHashes - again).toBe(0);
  });
});
