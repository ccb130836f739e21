import { describe, expect, it } from 'vitest';
import { IdWindow, RecentSeqIndex, SeqIndex } from '../../src/protocol/idwindow.ts';
import { hex } from '../../src/protocol/index.ts';

/** A small deterministic generator (the tests must not depend on Math.random). */
function prng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function idOf(rnd: () => number): Uint8Array {
  const id = new Uint8Array(32);
  for (let i = 0; i < 32; i += 4) new DataView(id.buffer).setUint32(i, rnd());
  return id;
}

/** The reference: what IdWindow must behave like, written the obvious way. */
class Model {
  readonly m = new Map<string, number>();
  first(): [string, number] | undefined {
    let best: [string, number] | undefined;
    for (const [k, t] of this.m) if (!best || t < best[1] || (t === best[1] && k < best[0])) best = [k, t];
    return best;
  }
}

describe('IdWindow', () => {
  it('behaves like a map with an expiry order over a long random run (growth, reuse, rehashes)', () => {
    const rnd = prng(42);
    const w = new IdWindow(16);
    const model = new Model();
    const pool: Uint8Array[] = [];
    for (let step = 0; step < 30_000; step++) {
      const r = rnd() % 10;
      if (r < 6) {
        // Add a new id (timestamps from a small range, so ties are frequent) or an old one again.
        const id = pool.length > 0 && r === 0 ? pool[rnd() % pool.length] : idOf(rnd);
        const ts = 1000 + (rnd() % 50);
        const fresh = !model.m.has(hex(id));
        expect(w.add(id, ts)).toBe(fresh);
        if (fresh) {
          model.m.set(hex(id), ts);
          pool.push(id);
        }
      } else if (r < 8) {
        const want = model.first();
        expect(w.firstTs()).toBe(want?.[1]);
        const into = new Uint8Array(32);
        expect(w.shift(into)).toBe(want?.[1]);
        if (want) {
          expect(hex(into)).toBe(want[0]);
          model.m.delete(want[0]);
        }
      } else {
        const id = pool.length > 0 && r === 8 ? pool[rnd() % pool.length] : idOf(rnd);
        expect(w.has(id)).toBe(model.m.has(hex(id)));
        expect(w.get(id)).toBe(model.m.get(hex(id)));
      }
      expect(w.size).toBe(model.m.size);
    }
    expect(pool.length).toBeGreaterThan(10_000);
    const all = new Map([...w.entries()].map(([id, t]) => [hex(id), t]));
    expect(all).toEqual(model.m);
  });

  it('gives memory back after a burst, keeping its contents and order', () => {
    const rnd = prng(11);
    const w = new IdWindow(64, 0x0badf00d);
    const model = new Model();
    const empty = w.bytes;
    for (let i = 0; i < 20_000; i++) {
      const id = idOf(rnd);
      const ts = 5000 + (rnd() % 300);
      w.add(id, ts);
      model.m.set(hex(id), ts);
    }
    const full = w.bytes;
    expect(full).toBeGreaterThan(20_000 * 52);
    const into = new Uint8Array(32);
    const byExpiry = () => [...model.m].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
    for (const [k, t] of byExpiry().slice(0, 20_000 - 100)) {
      expect(w.shift(into)).toBe(t);
      expect(hex(into)).toBe(k);
      model.m.delete(k);
    }
    // Three quarters free: halved, again and again, down to what 100 ids need (not to the initial 64).
    expect(w.bytes).toBeLessThan(full / 32);
    expect(w.bytes).toBeGreaterThan(empty);
    expect(new Map([...w.entries()].map(([id, t]) => [hex(id), t]))).toEqual(model.m);
    // And it grows again from there.
    for (let i = 0; i < 1000; i++) {
      const id = idOf(rnd);
      expect(w.add(id, 6000 + i)).toBe(true);
      model.m.set(hex(id), 6000 + i);
    }
    for (const k of model.m.keys()) expect(w.has(Buffer.from(k, 'hex'))).toBe(true);
    for (const [k] of byExpiry()) {
      w.shift(into);
      expect(hex(into)).toBe(k);
    }
    expect(w.size).toBe(0);
    expect(w.bytes).toBe(empty);
  });

  it('gives ids back by timestamp, then by id bytes', () => {
    const w = new IdWindow();
    const a = new Uint8Array(32).fill(9);
    const b = new Uint8Array(32).fill(9);
    b[31] = 1; // the same timestamp as a, and lower bytes (its last byte is 1, a's is 9): b comes first
    const c = new Uint8Array(32).fill(1);
    w.add(a, 5);
    w.add(b, 5);
    w.add(c, 7);
    const out: string[] = [];
    const into = new Uint8Array(32);
    while (w.size > 0) {
      w.shift(into);
      out.push(hex(into));
    }
    expect(out).toEqual([hex(b), hex(a), hex(c)]);
    expect(w.shift()).toBeUndefined();
    expect(w.firstTs()).toBeUndefined();
  });

  it('tells apart ids that share the hashed word (one long probe chain)', () => {
    const w = new IdWindow(16);
    const ids = Array.from({ length: 600 }, (_, i) => {
      const id = new Uint8Array(32).fill(0xab);
      id[30] = i >> 8;
      id[31] = i & 0xff;
      return id;
    });
    ids.forEach((id, i) => {
      expect(w.add(id, i)).toBe(true);
    });
    for (const id of ids) expect(w.has(id)).toBe(true);
    const other = new Uint8Array(32).fill(0xab);
    other[29] = 1;
    expect(w.has(other)).toBe(false);
    // Expire half: the rest stay findable past the tombstones.
    for (let i = 0; i < 300; i++) w.shift();
    ids.forEach((id, i) => {
      expect(w.has(id)).toBe(i >= 300);
    });
  });

  it('copies what it is given and what it gives back', () => {
    const w = new IdWindow();
    const id = new Uint8Array(32).fill(3);
    w.add(id, 1);
    id[0] = 4; // the caller's buffer changes afterwards
    expect(w.has(new Uint8Array(32).fill(3))).toBe(true);
    const [[copy]] = [...w.entries()];
    copy[1] = 99;
    expect(w.has(new Uint8Array(32).fill(3))).toBe(true);
  });

  it('refuses an id that is not 32 bytes, and finds none', () => {
    const w = new IdWindow();
    expect(() => w.add(new Uint8Array(31), 1)).toThrow(/32 bytes/);
    w.add(new Uint8Array(32).fill(5), 1);
    const longer = new Uint8Array(33).fill(5);
    expect(w.has(longer)).toBe(false);
    expect(w.get(longer)).toBeUndefined();
    expect(w.has(longer.subarray(0, 32))).toBe(true);
  });

  it('stays usable at a constant size: expired slots are reclaimed, not only added to', () => {
    // The replay window's steady state: each batch adds ids and expires as many. Without reclaiming the
    // deleted slots the table fills up with them and a lookup never finds an empty slot (it would hang).
    const rnd = prng(3);
    const w = new IdWindow(16, 0x12345678);
    for (let i = 0; i < 16; i++) w.add(idOf(rnd), i);
    for (let round = 0; round < 20_000; round++) {
      w.shift();
      const id = idOf(rnd);
      expect(w.add(id, 16 + round)).toBe(true);
      expect(w.has(id)).toBe(true);
    }
    expect(w.size).toBe(16);
    expect(w.bytes).toBeLessThan(4096); // the capacity did not grow: the window never held more than 16
  });

  it('refuses to shift into a buffer too small for an id, and stays intact', () => {
    const w = new IdWindow();
    const ids = [1, 2, 3].map((k) => new Uint8Array(32).fill(k));
    for (const [k, id] of ids.entries()) w.add(id, k);
    expect(() => w.shift(new Uint8Array(16))).toThrow(/32 bytes/);
    expect(w.size).toBe(3);
    const into = new Uint8Array(32);
    for (const id of ids) {
      w.shift(into);
      expect(hex(into)).toBe(hex(id));
    }
    expect(w.size).toBe(0);
  });
});

describe('SeqIndex', () => {
  it('keeps every seq of ids that share their first word, in the order added', () => {
    const idx = new SeqIndex();
    const a = new Uint8Array(32).fill(7);
    const b = new Uint8Array(32).fill(7);
    b[31] = 1; // the same first four bytes: the same key
    const c = new Uint8Array(32).fill(7);
    c[2] = 8; // another key
    idx.add(a, 3);
    idx.add(b, 9);
    idx.add(c, 4);
    expect(idx.candidates(a)).toEqual([3, 9]);
    expect(idx.candidates(b)).toEqual([3, 9]);
    expect(idx.candidates(c)).toEqual([4]);
    expect(idx.candidates(new Uint8Array(32))).toEqual([]);
    expect(idx.candidates(new Uint8Array(5))).toEqual([]);
    expect(() => idx.add(a, 0)).toThrow(/positive integer/);
  });

  it('finds every id after many growths, shared words included', () => {
    const rnd = prng(7);
    const idx = new SeqIndex(16);
    const model = new Map<number, number[]>();
    const ids: Uint8Array[] = [];
    for (let seq = 1; seq <= 50_000; seq++) {
      // One id in eight reuses an earlier id's first word.
      const id = idOf(rnd);
      if (ids.length > 0 && rnd() % 8 === 0) id.set(ids[rnd() % ids.length].subarray(0, 4));
      const w = new DataView(id.buffer).getUint32(0, true);
      idx.add(id, seq);
      model.set(w, [...(model.get(w) ?? []), seq]);
      ids.push(id);
    }
    expect(idx.size).toBe(50_000);
    for (const id of ids)
      expect(idx.candidates(id)).toEqual(model.get(new DataView(id.buffer).getUint32(0, true)));
  });

  it('holds more ids than a Map can (2^24 entries)', () => {
    // A Map of the previous index threw "Map maximum size exceeded" at 16,777,216 requests: a node at
    // 4,000 requests/s got there in ~70 minutes, and again in the replay at each restart.
    const idx = new SeqIndex();
    const id = new Uint8Array(32);
    const dv = new DataView(id.buffer);
    const n = 2 ** 24 + 1000;
    for (let i = 0; i < n; i++) {
      dv.setUint32(0, i, true);
      idx.add(id, 1 + (i >> 7));
    }
    expect(idx.size).toBe(n);
    dv.setUint32(0, n - 1, true);
    expect(idx.candidates(id)).toEqual([1 + ((n - 1) >> 7)]);
    dv.setUint32(0, 12345, true);
    expect(idx.candidates(id)).toEqual([1 + (12345 >> 7)]);
  });
});

describe('RecentSeqIndex', () => {
  const idAt = (i: number) => {
    const id = new Uint8Array(32);
    new DataView(id.buffer).setUint32(0, i, true);
    id[31] = 1;
    return id;
  };

  it('always finds the latest `retain` ids, holds at most twice as many, and drops older ones a generation at a time', () => {
    const retain = 100;
    const idx = new RecentSeqIndex(retain);
    for (let i = 0; i < 1_000; i++) {
      idx.add(idAt(i), 1 + i);
      expect(idx.size).toBeLessThanOrEqual(2 * retain);
      for (const back of [0, 1, retain - 1]) {
        const j = i - back;
        if (j >= 0) expect(idx.candidates(idAt(j))).toEqual([1 + j]);
      }
      // What is beyond two generations is gone.
      if (i >= 2 * retain) expect(idx.candidates(idAt(i - 2 * retain))).toEqual([]);
    }
    expect(idx.added).toBe(1_000);
    // 1,000 ids in generations of 100: the last two whole ones.
    expect(idx.size).toBe(200);
    expect(idx.candidates(idAt(799))).toEqual([]);
    expect(idx.candidates(idAt(800))).toEqual([801]);
  });

  it('holds at most two tables of the power of two of slots that keeps `retain` ids at most 3/4 full (docs/ledger.md: ~400 MB at the default 10,000,000)', () => {
    const bytesAtMost = (retain: number) => {
      let slots = 1024;
      while (retain > 0.75 * slots) slots *= 2;
      return 2 * 12 * slots;
    };
    // The default: 2^24 slots a generation, 201 MB; two of them, ~403 MB (it said ~320 MB until 2026-12-07).
    expect(bytesAtMost(10_000_000)).toBe(2 * 12 * 2 ** 24);
    for (const retain of [10_000, 13_000]) {
      const idx = new RecentSeqIndex(retain);
      let peak = 0;
      for (let i = 0; i < 3 * retain; i++) {
        idx.add(idAt(i), 1 + i);
        peak = Math.max(peak, idx.bytes);
      }
      expect(peak).toBe(bytesAtMost(retain));
    }
  });

  it('gives the candidates of a shared first word oldest first across its generations', () => {
    const idx = new RecentSeqIndex(2);
    const a = idAt(5);
    const b = idAt(5);
    b[30] = 9; // the same key as a
    idx.add(a, 1);
    idx.add(idAt(6), 2);
    idx.add(b, 3); // a new generation
    expect(idx.candidates(a)).toEqual([1, 3]);
    expect(() => new RecentSeqIndex(0)).toThrow(/at least one/);
  });
});
