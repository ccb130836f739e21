/**
 * In-memory id indexes: what a node holds per request id, and what a lookup costs, for the typed-array
 * tables of src/protocol/idwindow.ts against the Maps they replaced (same ids, same process, one after the
 * other). `npm run bench:ids` (needs --expose-gc, which the script passes; under a minute). Each
 * structure and size runs in a process of its own.
 *
 * - replay window, replica: Map<hex id, timestamp> against IdWindow;
 * - replay window, ledger: Map<hex id, timestamp> plus a heap of {timestamp, hex id} against IdWindow;
 * - lifetime index: Map<30-bit prefix, seq> against SeqIndex.
 * Bytes per id: heap used plus array buffers after forced full GCs, before and after filling.
 * Lookups: 200,000 hits (ids in a scattered order) and 200,000 misses (fresh random ids), best of 3.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { IdWindow, SeqIndex } from '../src/protocol/idwindow.ts';
import { hex } from '../src/protocol/index.ts';
import { describeMachine, machine } from './lib/machine.ts';

const gcFn = (globalThis as { gc?: () => void }).gc;
if (!gcFn) {
  console.error('run with node --expose-gc (npm run bench:ids does)');
  process.exit(2);
}
const gc = gcFn;

function live(): number {
  for (let i = 0; i < 3; i++) gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

interface Variant {
  name: string;
  build(ids: Uint8Array[]): (id: Uint8Array) => boolean;
}

const variants: Variant[] = [
  {
    name: 'replica window: Map<hex, ts>',
    build(ids) {
      const m = new Map<string, number>();
      for (let i = 0; i < ids.length; i++) m.set(hex(ids[i]), 1e12 + i);
      return (id) => m.has(hex(id));
    },
  },
  {
    name: 'ledger window: Map<hex, ts> + heap of {ts, hex}',
    build(ids) {
      const m = new Map<string, number>();
      const heap: { ts: number; id: string }[] = [];
      for (let i = 0; i < ids.length; i++) {
        const h = hex(ids[i]);
        m.set(h, 1e12 + i);
        heap.push({ ts: 1e12 + i, id: h });
      }
      return (id) => m.has(hex(id)) && heap.length > 0;
    },
  },
  {
    name: 'either window: IdWindow',
    build(ids) {
      const w = new IdWindow();
      for (let i = 0; i < ids.length; i++) w.add(ids[i], 1e12 + i);
      return (id) => w.has(id);
    },
  },
  {
    name: 'lifetime index: Map<30-bit prefix, seq>',
    build(ids) {
      const m = new Map<number, number | number[]>();
      const key = (id: Uint8Array) => id[0] * 0x400000 + id[1] * 0x4000 + id[2] * 0x40 + (id[3] >> 2);
      for (let i = 0; i < ids.length; i++) {
        const k = key(ids[i]);
        const have = m.get(k);
        if (have === undefined) m.set(k, 1 + (i >> 7));
        else if (typeof have === 'number') m.set(k, [have, 1 + (i >> 7)]);
        else have.push(1 + (i >> 7));
      }
      return (id) => m.has(key(id));
    },
  },
  {
    name: 'lifetime index: SeqIndex',
    build(ids) {
      const x = new SeqIndex();
      for (let i = 0; i < ids.length; i++) x.add(ids[i], 1 + (i >> 7));
      return (id) => x.candidates(id).length > 0;
    },
  },
];

function nsPerLookup(has: (id: Uint8Array) => boolean, ids: Uint8Array[]): number {
  let best = Number.POSITIVE_INFINITY;
  let found = 0;
  for (let rep = 0; rep < 3; rep++) {
    const t = performance.now();
    for (let i = 0; i < ids.length; i++) if (has(ids[i])) found++;
    best = Math.min(best, ((performance.now() - t) * 1e6) / ids.length);
  }
  if (found < 0) console.log(found);
  return best;
}

if (process.argv[2] === 'one') {
  // One structure at one size, alone in this process: nothing else of the probe is alive around it.
  const v = variants[Number(process.argv[3])];
  const n = Number(process.argv[4]);
  // One contiguous slab for the ids, so the probe's own objects cost neither memory nor cache misses.
  const slab = new Uint8Array(randomBytes(32 * n));
  const ids = Array.from({ length: n }, (_, i) => slab.subarray(32 * i, 32 * i + 32));
  const hits = Array.from({ length: 200_000 }, (_, i) => ids[(i * 7919) % n]);
  const missSlab = new Uint8Array(randomBytes(32 * 200_000));
  const misses = Array.from({ length: 200_000 }, (_, i) => missSlab.subarray(32 * i, 32 * i + 32));
  const before = live();
  const has = v.build(ids);
  const bytes = (live() - before) / n;
  const hit = nsPerLookup(has, hits);
  const miss = nsPerLookup(has, misses);
  console.log(JSON.stringify({ bytes, hit, miss }));
} else {
  console.log(`Machine: ${describeMachine(machine())}.`);
  console.log('Command: `npm run bench:ids`. Each row: a fresh process.');
  console.log();
  console.log('| structure | ids | bytes per id | lookup, hit ns | lookup, miss ns |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const n of [100_000, 1_000_000])
    variants.forEach((v, i) => {
      const out = execFileSync(
        process.execPath,
        [...process.execArgv, fileURLToPath(import.meta.url), 'one', String(i), String(n)],
        {
          encoding: 'utf8',
        },
      );
      const r = JSON.parse(out.trim().split('\n').at(-1) as string) as {
        bytes: number;
        hit: number;
        miss: number;
      };
      console.log(
        `| ${v.name} | ${n.toLocaleString('en-US')} | ${r.bytes.toFixed(0)} | ${r.hit.toFixed(0)} | ${r.miss.toFixed(0)} |`,
      );
    });
}
