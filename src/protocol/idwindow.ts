/**
 * Compact in-memory indexes keyed by 32-byte ids (request ids), kept in typed arrays instead of `Map`s
 * of hex strings.
 *
 * Why: a node keeps every request id of the group's expiry window (replay protection, twice: the replica
 * and the ledger) and, for its whole life, which batch holds each executed request. As `Map<string, …>`
 * these cost ~125 bytes an id in the replica and ~190 in the ledger (hex key, map entry, heap entry), a
 * lookup that misses ~0.5–0.8 µs (hex key, then cache misses), and a `Map` holds at most 2^24
 * (16,777,216) entries: past that `set` throws, which a node serving 4,000 requests/s reaches in ~70
 * minutes for the lifetime index (and then again in the replay at every restart). `npm run bench:ids`
 * measures both (BENCHMARKS.md, "In-memory request-id indexes").
 *
 * Ids are SHA-256 outputs, but a client chooses what it hashes, so it can grind ids that share a prefix
 * (2^32 hashes for each id sharing a 32-bit word with another). `IdWindow` hashes the first two words
 * (64 bits) through a per-instance random key: a shared probe chain needs a 64-bit collision. `SeqIndex`
 * stores one word per id, so ids ground to share it share a chain and come back as candidates together
 * (each one then costs its owner a fee; the old 30-bit `Map` key had the same property, unkeyed).
 */
import { randomBytes } from 'node:crypto';
import { DropbearError } from './errors.ts';

const ID = 32;
/** A record of `IdWindow.records`: 8 bytes of timestamp, then the id. */
export const RECORD = 8 + ID;

/** Mixes a 32-bit word with a secret (a bijection of 32-bit words, so distinct words stay distinct). */
function mix(x: number, key: number): number {
  let h = (x ^ key) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

function randomKey(): number {
  return randomBytes(4).readUInt32LE(0);
}

function word(b: Uint8Array, off: number): number {
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}

function checkId(id: Uint8Array): void {
  if (id.length !== ID) throw new DropbearError('INTERNAL', `an id is ${ID} bytes, got ${id.length}`);
}

/** Largest hash table: 2^31 slots (a mask that still fits a non-negative int32). */
const MAX_TABLE = 2 ** 31;

function tooBig(what: string): never {
  throw new DropbearError('INDEX_FULL', `${what} is full (its table would exceed ${MAX_TABLE} slots)`);
}

/**
 * A set of 32-byte ids, each with a timestamp, that gives them back in expiry order: lowest timestamp
 * first, equal timestamps by id bytes (a total order, so nodes that add the same ids expire them alike).
 * Entries live in typed arrays (id bytes, timestamps, a binary heap of entry numbers, an open-addressing
 * hash table with linear probing): 44 bytes per entry of capacity plus 4 per table slot (at least two
 * slots per entry); capacity grows by half when full, so 52–90 bytes an id, and halves (down to the
 * initial capacity) once three quarters are free. Nothing in it for the GC to trace.
 */
export class IdWindow {
  private cap: number;
  private ids: Uint8Array;
  private ts: Float64Array;
  /**
   * Entry numbers by expiry order (a binary min-heap) in [0, count), and entry numbers free for reuse (a
   * stack growing down from the end) in [cap − nFree, cap): count + nFree ≤ cap, so the two never meet.
   */
  private heap: Int32Array;
  private nFree = 0;
  /** Entries ever allocated (free ones included). */
  private used = 0;
  private count = 0;
  /** entry + 1; 0 empty, -1 deleted. */
  private table: Int32Array;
  private mask: number;
  private tombstones = 0;
  private readonly key: number;
  private readonly key2: number;
  /** The capacity it starts with and never shrinks below. */
  private readonly minCap: number;

  /** `hashKey` fixes the hash key (tests that need a reproducible layout); by default it is random. */
  constructor(initialCapacity = 1024, hashKey?: number) {
    this.key = hashKey ?? randomKey();
    this.key2 = mix(this.key, 0x9e3779b9);
    this.cap = Math.max(16, initialCapacity);
    this.minCap = this.cap;
    this.ids = new Uint8Array(this.cap * ID);
    this.ts = new Float64Array(this.cap);
    this.heap = new Int32Array(this.cap);
    this.table = new Int32Array(tableSizeFor(this.cap));
    this.mask = this.table.length - 1;
  }

  get size(): number {
    return this.count;
  }

  has(id: Uint8Array): boolean {
    return id.length === ID && this.find(id) >= 0;
  }

  /** The timestamp stored with `id`, or undefined. */
  get(id: Uint8Array): number | undefined {
    const s = id.length === ID ? this.find(id) : -1;
    return s < 0 ? undefined : this.ts[this.table[s] - 1];
  }

  /** Adds `id` with timestamp `ts`. False (and no change) when the id is already in. */
  add(id: Uint8Array, ts: number): boolean {
    checkId(id);
    if (this.find(id) >= 0) return false;
    if (this.nFree === 0 && this.used === this.cap) this.grow();
    else if (this.count + this.tombstones + 1 > this.table.length * 0.75) this.rehash(this.table.length);
    const e = this.nFree > 0 ? this.heap[this.cap - this.nFree--] : this.used++;
    this.ids.set(id, e * ID);
    this.ts[e] = ts;
    this.insertSlot(id, e);
    this.heapPush(e);
    this.count++;
    return true;
  }

  /** The timestamp of the entry that expires first, or undefined when empty. */
  firstTs(): number | undefined {
    return this.count === 0 ? undefined : this.ts[this.heap[0]];
  }

  /**
   * Removes the entry that expires first and returns its timestamp (undefined when empty); its id is
   * copied into `into` when given.
   */
  shift(into?: Uint8Array): number | undefined {
    if (into && into.length < ID)
      throw new DropbearError('INTERNAL', `shift needs ${ID} bytes to write the id into`);
    if (this.count === 0) return undefined;
    const e = this.heapPop();
    const off = e * ID;
    const id = this.ids.subarray(off, off + ID);
    if (into) into.set(id);
    const ts = this.ts[e];
    // Find the entry's slot (it is there: every entry has one) and leave a tombstone.
    let s = this.home(id, 0);
    for (let probes = 0; this.table[s] !== e + 1; probes++) {
      if (probes > this.mask) throw new DropbearError('INTERNAL', 'IdWindow: an entry without a slot');
      s = (s + 1) & this.mask;
    }
    this.table[s] = -1;
    this.tombstones++;
    this.heap[this.cap - ++this.nFree] = e;
    this.count--;
    // After a burst: give memory back once three quarters of the capacity are free (to half of it, so
    // that a window hovering around one size does not shrink and grow again and again).
    if (this.count < this.cap / 4 && this.cap > this.minCap) this.shrink();
    return ts;
  }

  /**
   * Removes, in expiry order, every entry whose timestamp `expired` says yes to, handing each one's id (a
   * copy) to `each`; returns how many went.
   */
  expire(expired: (ts: number) => boolean, each?: (id: Uint8Array) => void): number {
    let n = 0;
    for (let ts = this.firstTs(); ts !== undefined && expired(ts); ts = this.firstTs()) {
      if (each) {
        const id = new Uint8Array(ID);
        this.shift(id);
        each(id);
      } else this.shift();
      n++;
    }
    return n;
  }

  /** Every entry as [id (a copy), timestamp], in no particular order. */
  *entries(): IterableIterator<[Uint8Array, number]> {
    for (const v of this.table)
      if (v > 0) {
        const off = (v - 1) * ID;
        yield [this.ids.slice(off, off + ID), this.ts[v - 1]];
      }
  }

  /** Bytes held by the typed arrays. */
  get bytes(): number {
    return this.ids.byteLength + this.ts.byteLength + this.heap.byteLength + this.table.byteLength;
  }

  /**
   * Every entry in expiry order (timestamp, then id bytes) as one buffer of 40-byte records: the timestamp
   * as 8 big-endian bytes, then the id. So the records ascend strictly as byte strings, and equal windows
   * give equal bytes whatever their layout (hash key, insertion order, reused entries): what a ledger
   * snapshot stores (LedgerState.snapshot); `fromRecords` builds the window back.
   */
  records(): Uint8Array {
    const n = this.count;
    const live = this.heap.slice(0, n);
    // A counting sort by timestamp (a native sort of the timestamps gives each its first place), then a
    // comparison sort by id within each run of equal timestamps (short: one millisecond's requests). A
    // comparison sort of them all took ~1 s for 600,000 ids here, this ~0.1 s.
    const tsOf = new Float64Array(n);
    for (let i = 0; i < n; i++) tsOf[i] = this.ts[live[i]];
    const sorted = tsOf.slice().sort();
    const filled = new Int32Array(n);
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const t = tsOf[i];
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (sorted[mid] < t) lo = mid + 1;
        else hi = mid;
      }
      order[lo + filled[lo]++] = live[i];
    }
    for (let i = 0; i < n; ) {
      let j = i + 1;
      while (j < n && sorted[j] === sorted[i]) j++;
      if (j - i > 1) {
        const run = Array.from(order.subarray(i, j)).sort((a, b) => (this.before(a, b) ? -1 : 1));
        order.set(run, i);
      }
      i = j;
    }
    const out = new Uint8Array(n * RECORD);
    const view = new DataView(out.buffer);
    for (let i = 0; i < n; i++) {
      const e = order[i];
      const ts = this.ts[e];
      const off = i * RECORD;
      view.setUint32(off, Math.floor(ts / 0x100000000));
      view.setUint32(off + 4, ts >>> 0);
      out.set(this.ids.subarray(e * ID, e * ID + ID), off + 8);
    }
    return out;
  }

  /**
   * The window `records` wrote. Records must ascend strictly, hold distinct ids and timestamps of at most
   * 2^53 − 1 (SNAPSHOT_INVALID otherwise). Built directly, not by `add`: ascending records are already a
   * heap in expiry order, so it only copies them and fills the hash table (600,000 ids by `add`, growing
   * and rehashing, took ~1 s here).
   */
  static fromRecords(records: Uint8Array, hashKey?: number): IdWindow {
    const bad = (msg: string) => new DropbearError('SNAPSHOT_INVALID', `window records: ${msg}`);
    if (records.length % RECORD !== 0)
      throw bad(`${records.length} bytes are not whole ${RECORD}-byte records`);
    const n = records.length / RECORD;
    const w = new IdWindow(1024, hashKey);
    if (n > w.cap) {
      if (tableSizeFor(n) > MAX_TABLE) tooBig('IdWindow');
      w.cap = n;
      w.ids = new Uint8Array(n * ID);
      w.ts = new Float64Array(n);
      w.heap = new Int32Array(n);
      w.table = new Int32Array(tableSizeFor(n));
      w.mask = w.table.length - 1;
    }
    for (let e = 0; e < n; e++) {
      const off = e * RECORD;
      if (e > 0) {
        let d = 0;
        for (let k = 0; k < RECORD && d === 0; k++) d = records[off - RECORD + k] - records[off + k];
        if (d >= 0) throw bad('not strictly ascending');
      }
      const hi = (records[off] << 24) | (records[off + 1] << 16) | (records[off + 2] << 8) | records[off + 3];
      if (hi >>> 0 > 0x1fffff) throw bad('a timestamp above 2^53 − 1');
      const lo =
        (records[off + 4] << 24) | (records[off + 5] << 16) | (records[off + 6] << 8) | records[off + 7];
      const id = records.subarray(off + 8, off + RECORD);
      if (w.find(id) >= 0) throw bad(`id ${Buffer.from(id).toString('hex')} twice`);
      w.ids.set(id, e * ID);
      w.ts[e] = (hi >>> 0) * 0x100000000 + (lo >>> 0);
      w.heap[e] = e;
      w.place(e + 1);
      w.used = w.count = e + 1;
    }
    return w;
  }

  // ------------------------------------------------------------------ internals

  /** The id's home slot: its first two words (at `off` in `b`) mixed with the secret keys. */
  private home(b: Uint8Array, off: number): number {
    return mix(word(b, off) ^ mix(word(b, off + 4), this.key2), this.key) & this.mask;
  }

  private find(id: Uint8Array): number {
    const ids = this.ids;
    const table = this.table;
    const w0 = word(id, 0);
    let s = this.home(id, 0);
    // A table without an empty slot would make this loop forever: fail loudly instead (never expected).
    for (let probes = 0; probes <= this.mask; probes++) {
      const v = table[s];
      if (v === 0) return -1;
      if (v > 0) {
        const off = (v - 1) * ID;
        if (word(ids, off) === w0 && sameRest(ids, off, id)) return s;
      }
      s = (s + 1) & this.mask;
    }
    throw new DropbearError('INTERNAL', 'IdWindow: a full table');
  }

  private insertSlot(id: Uint8Array, e: number): void {
    let s = this.home(id, 0);
    for (let probes = 0; this.table[s] > 0; probes++) {
      if (probes > this.mask) throw new DropbearError('INTERNAL', 'IdWindow: a full table');
      s = (s + 1) & this.mask;
    }
    if (this.table[s] === -1) this.tombstones--;
    this.table[s] = e + 1;
  }

  private grow(): void {
    const cap = Math.ceil(this.cap * 1.5);
    if (tableSizeFor(cap) > MAX_TABLE) tooBig('IdWindow');
    const ids = new Uint8Array(cap * ID);
    ids.set(this.ids);
    const ts = new Float64Array(cap);
    ts.set(this.ts);
    const heap = new Int32Array(cap);
    heap.set(this.heap.subarray(0, this.count)); // nothing is free: grow() runs only then
    this.ids = ids;
    this.ts = ts;
    this.heap = heap;
    this.cap = cap;
    this.rehash(tableSizeFor(cap));
  }

  /**
   * Moves the live entries into arrays of half the capacity (at least the initial one). Entry i of the
   * new arrays is the entry at heap position i, so the heap stays a heap as it is: heap[i] = i.
   */
  private shrink(): void {
    const cap = Math.max(this.minCap, Math.ceil(this.cap / 2));
    const ids = new Uint8Array(cap * ID);
    const ts = new Float64Array(cap);
    const heap = new Int32Array(cap);
    for (let i = 0; i < this.count; i++) {
      const e = this.heap[i];
      ids.set(this.ids.subarray(e * ID, e * ID + ID), i * ID);
      ts[i] = this.ts[e];
      heap[i] = i;
    }
    this.ids = ids;
    this.ts = ts;
    this.heap = heap;
    this.cap = cap;
    this.used = this.count;
    this.nFree = 0;
    // The old table's entry numbers mean nothing now: index the new entries afresh.
    this.table = new Int32Array(tableSizeFor(cap));
    this.mask = this.table.length - 1;
    this.tombstones = 0;
    for (let e = 0; e < this.count; e++) this.place(e + 1);
  }

  /** Rebuilds the hash table at `size` slots from the live entries (drops the tombstones). */
  private rehash(size: number): void {
    const old = this.table;
    this.table = new Int32Array(size);
    this.mask = size - 1;
    this.tombstones = 0;
    for (const v of old) if (v > 0) this.place(v);
  }

  /** Puts table value `v` (entry v − 1) in the first empty slot of its probe chain (a fresh table). */
  private place(v: number): void {
    let s = this.home(this.ids, (v - 1) * ID);
    while (this.table[s] !== 0) s = (s + 1) & this.mask;
    this.table[s] = v;
  }

  /** Entry a expires before entry b. */
  private before(a: number, b: number): boolean {
    const ta = this.ts[a];
    const tb = this.ts[b];
    if (ta !== tb) return ta < tb;
    const ids = this.ids;
    const oa = a * ID;
    const ob = b * ID;
    for (let i = 0; i < ID; i++) {
      const d = ids[oa + i] - ids[ob + i];
      if (d !== 0) return d < 0;
    }
    return false;
  }

  private heapPush(e: number): void {
    const h = this.heap;
    let i = this.count; // count is incremented by the caller afterwards
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(e, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = e;
  }

  private heapPop(): number {
    const h = this.heap;
    const top = h[0];
    const n = this.count - 1;
    const last = h[n];
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.before(h[r], h[l]) ? r : l;
      if (!this.before(h[c], last)) break;
      h[i] = h[c];
      i = c;
    }
    h[i] = last;
    return top;
  }
}

function sameRest(ids: Uint8Array, off: number, id: Uint8Array): boolean {
  for (let i = 4; i < ID; i++) if (ids[off + i] !== id[i]) return false;
  return true;
}

/** A power of two at least twice `n`: the table stays at most half full between rehashes of growth. */
function tableSizeFor(n: number): number {
  let s = 16;
  while (s < 2 * n) s *= 2;
  return s;
}

/**
 * A lifetime index from id to the number of the batch that holds it, for ids that are never removed:
 * the 32-bit word `id[0..3]` (little-endian) → seq, with several seqs under a word that several ids share
 * (the caller confirms the full id where the seq leads). 12 bytes a slot, between 3/8 and 3/4 full; at
 * most 2^31 slots (~1.6 G ids, 24 GiB), past which `add` throws INDEX_FULL.
 */
export class SeqIndex {
  private keys: Uint32Array;
  /** 0: empty (seqs start at 1). */
  private seqs: Float64Array;
  private mask: number;
  private count = 0;
  private readonly key: number;

  /** `hashKey` fixes the hash key (tests that need a reproducible layout); by default it is random. */
  constructor(initialSlots = 1024, hashKey?: number) {
    this.key = hashKey ?? randomKey();
    let s = 16;
    while (s < initialSlots) s *= 2;
    this.keys = new Uint32Array(s);
    this.seqs = new Float64Array(s);
    this.mask = s - 1;
  }

  get size(): number {
    return this.count;
  }

  add(id: Uint8Array, seq: number): void {
    checkId(id);
    if (!Number.isSafeInteger(seq) || seq < 1)
      throw new DropbearError('INTERNAL', `a batch number is a positive integer, got ${seq}`);
    if (this.count + 1 > this.seqs.length * 0.75) this.grow();
    this.put(word(id, 0), seq);
    this.count++;
  }

  /** The seqs of batches that may hold `id` (most ids: none or one), in the order they were added. */
  candidates(id: Uint8Array): number[] {
    if (id.length !== ID) return [];
    const w = word(id, 0);
    const out: number[] = [];
    let s = mix(w, this.key) & this.mask;
    for (;;) {
      const q = this.seqs[s];
      if (q === 0) return out;
      if (this.keys[s] === w) out.push(q);
      s = (s + 1) & this.mask;
    }
  }

  get bytes(): number {
    return this.keys.byteLength + this.seqs.byteLength;
  }

  private put(w: number, seq: number): void {
    let s = mix(w, this.key) & this.mask;
    while (this.seqs[s] !== 0) s = (s + 1) & this.mask;
    this.keys[s] = w;
    this.seqs[s] = seq;
  }

  private grow(): void {
    const keys = this.keys;
    const seqs = this.seqs;
    const size = seqs.length * 2;
    if (size > MAX_TABLE) tooBig('SeqIndex');
    this.keys = new Uint32Array(size);
    this.seqs = new Float64Array(size);
    this.mask = size - 1;
    // In slot order: entries of one word keep their relative (insertion) order along the probe chain.
    // Re-inserting a chain that wrapped past the table's end starts from its wrapped part, so gather
    // each word's seqs in the order a lookup sees them instead.
    const start = firstEmpty(seqs);
    for (let k = 0; k < seqs.length; k++) {
      const i = (start + k) & (seqs.length - 1);
      if (seqs[i] !== 0) this.put(keys[i], seqs[i]);
    }
  }
}

/** The first empty slot (one exists: the table is never full). */
function firstEmpty(seqs: Float64Array): number {
  for (let i = 0; i < seqs.length; i++) if (seqs[i] === 0) return i;
  throw new DropbearError('INTERNAL', 'a full index table');
}

/**
 * A SeqIndex of the latest `retain` ids or more: two generations of at most `retain` ids each. When the
 * newer one is full it becomes the older one and the older one is dropped whole, so memory stays at most
 * two generations (16–32 bytes an id, as SeqIndex) and no entry is ever deleted one by one from the
 * open-addressing tables. The latest min(added, retain) ids are always present; older ones go a generation
 * at a time. A SeqIndex alone grew for the node's life: ~1.6 G ids (24 GiB) at most, a node at the
 * protocol part's peak rate (~2,000 requests/s) out of memory on this machine within days.
 */
export class RecentSeqIndex {
  private newer = new SeqIndex();
  private older: SeqIndex | null = null;
  /** Ids added in all (including those dropped since). */
  added = 0;

  constructor(readonly retain: number) {
    if (!Number.isSafeInteger(retain) || retain < 1)
      throw new DropbearError('INTERNAL', `an index retains at least one id, got ${retain}`);
  }

  get size(): number {
    return this.newer.size + (this.older?.size ?? 0);
  }

  get bytes(): number {
    return this.newer.bytes + (this.older?.bytes ?? 0);
  }

  add(id: Uint8Array, seq: number): void {
    if (this.newer.size >= this.retain) {
      this.older = this.newer;
      this.newer = new SeqIndex();
    }
    this.newer.add(id, seq);
    this.added++;
  }

  /** As SeqIndex.candidates: in the order they were added (the older generation's first). */
  candidates(id: Uint8Array): number[] {
    const n = this.newer.candidates(id);
    if (this.older === null) return n;
    const o = this.older.candidates(id);
    return o.length === 0 ? n : n.length === 0 ? o : [...o, ...n];
  }
}
