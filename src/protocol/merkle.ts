/**
 * Merkle tree over a batch's outcomes, RFC 9162 (Certificate Transparency v2) style:
 * leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖ left ‖ right), the tree over n leaves splits at
 * the largest power of two below n. The size is not part of a proof: the verifier takes it from the
 * signed receipt, because an audit path alone does not pin down the tree size.
 */
import { equalBytes, hex, sha256, sha256Of2, sha256Of3 } from './crypto.ts';

const LEAF = new Uint8Array([0]);
const NODE = new Uint8Array([1]);
const EMPTY_ROOT = sha256(new Uint8Array(0));

export function leafHash(data: Uint8Array): Uint8Array {
  return sha256Of2(LEAF, data);
}
/** Interior-node hashes computed so far in this process (for tests and profiles). */
export const merkleStats = { nodeHashes: 0 };

export function nodeHash(l: Uint8Array, r: Uint8Array): Uint8Array {
  merkleStats.nodeHashes++;
  return sha256Of3(NODE, l, r);
}

export interface MerkleTree {
  root: Uint8Array;
  size: number;
  /** Audit path for leaf i, from the leaf's sibling up to the root's child. */
  path(i: number): Uint8Array[];
}

/**
 * Builds the tree bottom-up: pair neighbours, carry an unpaired last node up unchanged. This gives the
 * same root and paths as RFC 9162's recursive definition (tested against it).
 */
export function buildTree(leaves: Uint8Array[]): MerkleTree {
  const size = leaves.length;
  if (size === 0) return { root: EMPTY_ROOT, size, path: () => [] };
  const levels: Uint8Array[][] = [leaves];
  let cur = leaves;
  while (cur.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i + 1 < cur.length; i += 2) next.push(nodeHash(cur[i], cur[i + 1]));
    if (cur.length % 2 === 1) next.push(cur[cur.length - 1]);
    levels.push(next);
    cur = next;
  }
  return {
    root: cur[0],
    size,
    path(i: number) {
      if (!Number.isInteger(i) || i < 0 || i >= size)
        throw new RangeError(`leaf ${i} outside tree of ${size}`);
      const out: Uint8Array[] = [];
      let idx = i;
      for (let l = 0; l < levels.length - 1; l++) {
        const sib = idx ^ 1;
        if (sib < levels[l].length) out.push(levels[l][sib]);
        idx >>= 1;
      }
      return out;
    },
  };
}

/**
 * The length of the audit path of leaf `index` in a tree of `size` leaves (RFC 9162's recursive split:
 * one element per level of the subtrees that contain the leaf). -1 when the index is outside the tree.
 */
export function pathLength(index: number, size: number): number {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return -1;
  let len = 0;
  let i = index;
  let n = size;
  while (n > 1) {
    let k = 1;
    while (k * 2 < n) k *= 2; // the largest power of two below n
    if (i < k) n = k;
    else {
      i -= k;
      n -= k;
    }
    len++;
  }
  return len;
}

/** RFC 9162 §2.1.3.2: does `path` prove leaf hash `leaf` at `index` in a tree of `size` with `root`? */
export function verifyPath(
  leaf: Uint8Array,
  index: number,
  size: number,
  path: Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of path) {
    if (p.length !== 32 || sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0 || r.length !== root.length) return false;
  for (let i = 0; i < r.length; i++) if (r[i] !== root[i]) return false;
  return true;
}

/**
 * What is already proven of one tree (one root and size): for a position of RFC 9162's walk (fn, sn),
 * the hash of the node there (`nodes`) and of its sibling (`siblings`), each learned from a path that
 * reached the root. A position (fn, sn) names one node: sn = ⌊(size − 1) / 2^level⌋ differs between
 * levels except at the root, and a node with no sibling at its level goes by its position at the first
 * level above where it has one (verifyPathKnown). Keys are fn · 2^16 + sn (sizes stay far below 2^16).
 */
export interface KnownNodes {
  nodes: Map<number, Uint8Array>;
  siblings: Map<number, Uint8Array>;
}

export function knownNodes(): KnownNodes {
  return { nodes: new Map(), siblings: new Map() };
}

/** Largest tree verifyPathKnown shares work in (larger ones are checked by verifyPath alone). */
const KNOWN_MAX_SIZE = 1 << 16;

/**
 * Per-tree state (what is proven of a tree, for instance) for the most recently used trees, keyed by root
 * and size, least recently used dropped first. The members or certificates of one batch arrive one after
 * another, so the most recent tree answers without building a key.
 */
export class TreeLru<T> {
  private readonly byKey = new Map<string, T>();
  private last: { root: Uint8Array; size: number; value: T } | null = null;
  constructor(private readonly capacity: number) {}

  /** The state of the tree with this root and size, if any (it becomes the most recent). */
  get(root: Uint8Array, size: number): T | undefined {
    const last = this.last;
    if (last !== null && last.size === size && equalBytes(last.root, root)) return last.value;
    const key = `${hex(root)}:${size}`;
    const value = this.byKey.get(key);
    if (value === undefined) return undefined;
    this.byKey.delete(key);
    this.byKey.set(key, value);
    this.last = { root: Uint8Array.from(root), size, value };
    return value;
  }

  /** The state of the tree with this root and size, made by `make` the first time; the most recent. */
  getOrAdd(root: Uint8Array, size: number, make: () => T): T {
    const have = this.get(root, size);
    if (have !== undefined) return have;
    const value = make();
    this.byKey.set(`${hex(root)}:${size}`, value);
    while (this.byKey.size > this.capacity) this.byKey.delete(this.byKey.keys().next().value as string);
    this.last = { root: Uint8Array.from(root), size, value };
    return value;
  }
}

/**
 * Nodes and siblings a path proved, not yet added to a KnownNodes (see verifyPathKnown's `learned`): the
 * positions (keys) and hashes as parallel arrays, not a [key, hash] pair per entry. Only the first
 * `nodeCount` and `siblingCount` entries count: a scratch reused for every check is emptied by
 * clearLearned, which keeps the arrays' storage. (Emptied by `length = 0`, V8 dropped the four backing
 * stores and grew them again on every check: ~1.4 KB per certified request in the simulator, 3 % of all it
 * allocated, `npm run bench:alloc`.) Entries past the counts may keep a few 8 KiB slabs of hashes alive.
 */
export interface LearnedNodes {
  nodeKeys: number[];
  nodes: Uint8Array[];
  nodeCount: number;
  siblingKeys: number[];
  siblings: Uint8Array[];
  siblingCount: number;
}

export function learnedNodes(): LearnedNodes {
  return { nodeKeys: [], nodes: [], nodeCount: 0, siblingKeys: [], siblings: [], siblingCount: 0 };
}

/** Empties `learned` for reuse (its arrays keep their storage). */
export function clearLearned(learned: LearnedNodes): void {
  learned.nodeCount = 0;
  learned.siblingCount = 0;
}

function learnNode(into: LearnedNodes, key: number, hash: Uint8Array): void {
  into.nodeKeys[into.nodeCount] = key;
  into.nodes[into.nodeCount++] = hash;
}

function learnSibling(into: LearnedNodes, key: number, hash: Uint8Array): void {
  into.siblingKeys[into.siblingCount] = key;
  into.siblings[into.siblingCount++] = hash;
}

/** Adds what a path proved (verifyPathKnown with `learned`) to `known`. */
export function addLearned(known: KnownNodes, learned: LearnedNodes): void {
  for (let i = 0; i < learned.nodeCount; i++) known.nodes.set(learned.nodeKeys[i], learned.nodes[i]);
  for (let i = 0; i < learned.siblingCount; i++)
    known.siblings.set(learned.siblingKeys[i], learned.siblings[i]);
}

// The sibling copies verifyPathKnown keeps are 32-byte views into shared 8 KiB slabs (as the codec's
// decoded fields and the digests are), not an ArrayBuffer each for V8 to allocate, track and sweep. A kept
// copy keeps its slab (at most 8 KiB) alive; the trees that keep them are bounded (TreeLru).
const KEPT_SLAB_BYTES = 8192;
let keptSlab = new ArrayBuffer(KEPT_SLAB_BYTES);
let keptSlabUsed = 0;
function keptCopy(p: Uint8Array): Uint8Array {
  if (keptSlabUsed + p.length > KEPT_SLAB_BYTES) {
    keptSlab = new ArrayBuffer(KEPT_SLAB_BYTES);
    keptSlabUsed = 0;
  }
  const out = new Uint8Array(keptSlab, keptSlabUsed, p.length);
  out.set(p);
  keptSlabUsed += p.length;
  return out;
}

/**
 * verifyPath with the same answer for every input, sharing work across the leaves of one tree: once a
 * climb reaches a proven node, each further path element is compared with the proven sibling instead of
 * hashed, and hashing resumes at the first one that differs. A path that reaches the root teaches `known`
 * its nodes and siblings (copies of the path's elements, in compact storage: a caller may change its path
 * afterwards), or, with `learned`, appends
 * them there for the caller to add later (addLearned), for instance once a signature over the root checked.
 * Reaching a proven node along a different chain, or a wrong sibling leading to the root, would take a
 * SHA-256 collision.
 */
export function verifyPathKnown(
  leaf: Uint8Array,
  index: number,
  size: number,
  path: Uint8Array[],
  root: Uint8Array,
  known: KnownNodes,
  learned?: LearnedNodes,
): boolean {
  if (path.length !== pathLength(index, size)) return false;
  if (size > KNOWN_MAX_SIZE) return verifyPath(leaf, index, size, path, root);
  const { nodes, siblings } = known;
  // What this path proves goes straight into `learned` (its additions taken back if the path fails), or,
  // without it, into one of our own, added to `known` only once the path reached the root.
  const into = learned ?? learnedNodes();
  const nodes0 = into.nodeCount;
  const siblings0 = into.siblingCount;
  let fn = index;
  let sn = size - 1;
  // Positions are kept canonical: a last node with no sibling at its level (fn = sn, even) is the same node
  // as its parent, so it is named by the level where it has a sibling (RFC 9162's climb, done as soon as a
  // position is reached). Every path through a node then names it alike, whichever side it comes from.
  while (fn === sn && fn % 2 === 0 && fn !== 0) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let r = leaf;
  // r is a proven node: the leaf itself may be, as the sibling of a leaf whose path was proven before.
  const leafKnown = nodes.get(fn * 65536 + sn);
  let proven = leafKnown !== undefined && equalBytes(leafKnown, leaf);
  let ok = true;
  for (let i = 0; i < path.length; i++) {
    const p = path[i];
    if (p.length !== 32 || sn === 0) {
      ok = false;
      break;
    }
    const here = fn * 65536 + sn;
    // At a canonical position fn = sn only when odd: p is the left sibling exactly when fn is odd.
    const left = fn % 2 === 1;
    // p's own position: beside fn at this level.
    const sibAt = left ? here - 65536 : here + 65536;
    // The next position: fn, sn halved, made canonical.
    let nf = Math.floor(fn / 2);
    let ns = Math.floor(sn / 2);
    while (nf === ns && nf % 2 === 0 && nf !== 0) {
      nf = Math.floor(nf / 2);
      ns = Math.floor(ns / 2);
    }
    const there = nf * 65536 + ns;
    if (proven) {
      const sib = siblings.get(here);
      const parent = nodes.get(there);
      if (sib !== undefined && parent !== undefined && equalBytes(sib, p)) {
        r = parent;
        fn = nf;
        sn = ns;
        continue;
      }
      proven = false;
    }
    // Both children are proven once the path reaches the root: r at its position with p as its sibling,
    // and p at its own with r as its sibling. Learning p's side too lets a later path through p (its leaf
    // the sibling of this one, or a leaf below it) stop climbing there: a client batch of 64 requests
    // checked in order took 126 node hashes, and takes 63 (one per interior node, in any order). The leaf
    // is learned as a node too (r above it already is, as the last step's parent), so a request checked
    // again costs no node hash. The caller's leaf is copied (it may change it afterwards).
    const pKept = keptCopy(p);
    const rKept = i === 0 ? keptCopy(r) : r;
    learnSibling(into, here, pKept);
    learnSibling(into, sibAt, rKept);
    if (i === 0) learnNode(into, here, rKept);
    learnNode(into, sibAt, pKept);
    r = left ? nodeHash(p, r) : nodeHash(r, p);
    fn = nf;
    sn = ns;
    const have = nodes.get(there);
    if (have !== undefined && equalBytes(have, r)) proven = true;
    else learnNode(into, there, r);
  }
  if (!ok || sn !== 0 || !equalBytes(r, root)) {
    into.nodeCount = nodes0;
    into.siblingCount = siblings0;
    return false;
  }
  if (!learned) addLearned(known, into);
  return true;
}
