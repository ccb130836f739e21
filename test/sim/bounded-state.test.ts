/**
 * Memory: what a replica and its ledger keep does not grow with the requests, batches and view changes
 * they have been through. A guard against a leak like those found before (2026-12-07: the RESULTS an
 * executed slot pinned across a NEW-VIEW, kept for the node's life) and against a new field that only
 * ever grows: every collection reachable from the replica and the ledger through their fields (Map, Set,
 * array, or anything with a numeric `size`, up to three objects deep), found by walking them, not listed
 * here, is sampled through a run that spans seven expiry windows and three view changes, and its median
 * size late in the run must stay within its median early on (the expiry window full in both). Growth
 * with the run (a leak of one entry per batch or per 20 requests, or the RESULTS an executed slot kept
 * across a NEW-VIEW: this fails with that fix undone, `replica0.results: 12 early, 36 late`) fails it.
 * Collections bounded by a count larger than this run reaches are checked against that count instead
 * (the signature cache and the phases signed, here; RateWindow's log, which a backup once kept whole, in
 * test/consensus/rate.test.ts).
 *
 * Real processes, measured on 2026-12-07 (4 stand-in nodes on loopback, 100 requests/s in client
 * batches, 9 and 14 minutes, heap used after a forced full GC through the inspector): 34–36 MB per node
 * from minute 3 to the end, through 6 and 21 view changes; this is the cheap form of that check, on the
 * simulator (deterministic: a seed, no clock).
 */
import { describe, expect, it } from 'vitest';
import { Simulation } from '../../src/sim/world.ts';

/**
 * The sizes of the collections reachable from `o` through its own fields, by path (`replica.votes`,
 * `replica.executedRate.log`), `depth` objects deep. Typed arrays and byte strings are data, not
 * collections; each object is visited once.
 */
function collectionSizes(
  o: object,
  path: string,
  depth: number,
  out = new Map<string, number>(),
  seen = new Set<object>(),
): Map<string, number> {
  for (const [k, v] of Object.entries(o)) {
    if (v === null || typeof v !== 'object' || seen.has(v) || ArrayBuffer.isView(v)) continue;
    seen.add(v);
    const p = `${path}.${k}`;
    if (v instanceof Map || v instanceof Set) out.set(p, v.size);
    else if (Array.isArray(v)) out.set(p, v.length);
    else {
      const size = (v as { size?: unknown }).size;
      if (typeof size === 'number') out.set(p, size);
      if (depth > 0) collectionSizes(v, p, depth - 1, out, seen);
    }
  }
  return out;
}

describe('memory: a replica and its ledger keep a bounded state', () => {
  it('over 7 expiry windows and 3 view changes, no collection grows with the run', () => {
    const n = 4;
    const expiryMs = 1000;
    const rate = 0.2; // requests per virtual ms: 200 a window
    const requests = 1500; // 7.5 s
    const sim = new Simulation({
      nodes: n,
      requests,
      seed: 5,
      rate,
      expiryMs,
      clientBatch: 8,
      // Checkpoints every 4 batches and a window of 8: what is kept per checkpoint interval (archive,
      // signed, myReceiptSigs) turns over several times in the run instead of filling up once.
      replica: { checkpointInterval: 4, window: 8, maxInFlightBatches: 8, viewChangeTimeoutMs: 200 },
      maxTimeMs: 60_000,
    });
    // View changes: the primary of the moment is cut off from the others for 600 ms, three times.
    const cut = (p: number, on: boolean) => {
      for (let q = 0; q < n; q++) {
        if (q === p) continue;
        for (const k of [`${p}->${q}`, `${q}->${p}`])
          if (on) sim.links.set(k, { loss: 1 });
          else sim.links.delete(k);
      }
    };
    for (const at of [1000, 3000, 5000])
      sim.at(at, () => {
        // The primary of the view most nodes are in.
        const views = sim.nodes.map((x) => x.replica.view).sort((a, b) => a - b);
        const p = sim.nodes[0].replica.primaryOf(views[n >> 1]);
        cut(p, true);
        sim.at(at + 600, () => cut(p, false));
      });
    // Sizes every 50 virtual ms, each node's replica and ledger.
    const samples: { at: number; sizes: Map<string, number> }[] = [];
    for (let at = 50; at < 7500; at += 50)
      sim.at(at, () => {
        const sizes = new Map<string, number>();
        for (const node of sim.nodes) {
          collectionSizes(node.replica, `replica${node.id}`, 3, sizes);
          collectionSizes(node.ledger, `ledger${node.id}`, 3, sizes);
        }
        samples.push({ at, sizes });
      });
    const r = sim.run();
    expect(r.done).toBe(true);
    expect(r.certificates.size).toBe(requests);
    // Three view changes (a primary cut off may stay in its old view until the next one: the median).
    expect(sim.nodes.map((x) => x.replica.view).sort((a, b) => a - b)[n >> 1]).toBeGreaterThanOrEqual(3);

    // Each collection's median size over two stretches in the same phase of the cuts (from 500 ms after
    // a heal to the next cut: the normal case again), the expiry window full in both: early, 2.1–3 s,
    // after one view change; late, 6.1–7 s, 4 s (800 requests, two view changes) later.
    const median = (from: number, to: number) => {
      const all = new Map<string, number[]>();
      for (const s of samples)
        if (s.at >= from && s.at < to) for (const [k, v] of s.sizes) all.set(k, [...(all.get(k) ?? []), v]);
      return new Map([...all].map(([k, xs]) => [k, xs.sort((a, b) => a - b)[xs.length >> 1]]));
    };
    const early = median(2100, 3000);
    const late = median(6100, 7000);
    // Bounded by design, by a count rather than by the window, so their medians depend on where in
    // their cycle they are: the request-signature cache (an LRU of `capacity` good and `badCapacity` bad
    // checks, above what this run reaches), the executed-rate window's log (trimmed by time, compacted
    // past 1,024 consumed records: test/consensus/rate.test.ts) and the phases signed (pruned to the
    // stable checkpoint past 16 × (window + checkpointInterval) entries: checked here).
    const capped = (path: string) => /^replica\d\.(authCache|executedRate|signed)\b/.test(path);
    for (const node of sim.nodes) {
      const c = node.replica.authCache;
      expect(c.size).toBeLessThanOrEqual(c.capacity + c.badCapacity);
    }
    const signedMax = Math.max(
      ...samples.flatMap((s) =>
        [...s.sizes].filter(([k]) => /^replica\d\.signed$/.test(k)).map(([, v]) => v),
      ),
    );
    expect(signedMax).toBeGreaterThan(0);
    expect(signedMax).toBeLessThanOrEqual(16 * (8 + 4));
    const grown: string[] = [];
    for (const [k, v] of late) {
      if (capped(k)) continue;
      const e = early.get(k) ?? 0;
      if (v > 1.25 * e + 16) grown.push(`${k}: ${e} early, ${v} late`);
    }
    expect(grown).toEqual([]);
    // The walk found what it is meant to watch (a rename must not make it vacuous).
    for (const k of [
      'replica1.done',
      'replica1.archive',
      'replica1.results',
      'replica1.slots',
      'ledger1.recent',
    ])
      expect(late.get(k), k).toBeGreaterThan(0);
    expect(late.has('replica1.executedRate.log')).toBe(true);
  });
});
