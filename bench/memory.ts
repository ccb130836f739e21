import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { GROUP_REPLICA } from '../src/cli/group.ts';
import { readGenesis } from '../src/cli/io.ts';
import { STANDIN_MODEL, standInInput } from '../src/node/standin-backend.ts';
import { groupIdOf, hex } from '../src/protocol/index.ts';
import { type FlagSpecs, scriptFlags } from './lib/args.ts';
import { BatchSender, makeVerifier } from './lib/dropbear-load.ts';
import { startNodeGroup } from './lib/extra.ts';
import { openLoop } from './lib/load.ts';
import { flag } from './lib/part.ts';

const FLAGS: FlagSpecs = {
  minutes: { kind: 'number', help: 'how long the load runs (8)' },
  rate: { kind: 'number', help: 'requests per second, open loop (100)' },
  every: { kind: 'number', help: 'seconds between samples (30)' },
  expiry: { kind: 'count', help: "the genesis's expiry window in seconds (group init's 600 when absent)" },
  certindex: { kind: 'count', help: "each node's certificateIndexRequests (10,000,000 when absent)" },
  stalls: {
    kind: 'count',
    min: { value: 0, why: 'no stalls' },
    help: 'times the primary is SIGSTOPped for 5 s (0)',
  },
  snap: { kind: 'counts', help: 'seconds into the run at which node 3 writes a heap snapshot' },
  out: { kind: 'text', help: 'the TSV of samples (out/memory.tsv)' },
  keep: { kind: 'switch', help: 'keep the run folder (logs, snapshots, ledgers)' },
};
const given = scriptFlags(process.argv.slice(2), FLAGS, 'npm run bench:memory');
const MINUTES = Number(flag(given, 'minutes') ?? 8);
const RATE = Number(flag(given, 'rate') ?? 100);
const EVERY = Number(flag(given, 'every') ?? 30);
const EXPIRY = Number(flag(given, 'expiry') ?? 0);
const CERTINDEX = Number(flag(given, 'certindex') ?? 0);
const STALLS = Number(flag(given, 'stalls') ?? 0);
const SNAPS = (flag(given, 'snap') ?? '').split(',').filter(Boolean).map(Number);
const KEEP = given.includes('--keep');
const N = 4;
const SNAP_NODE = 3;
const log = (l: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${l}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MB = (x: number) => (x / 1048576).toFixed(1);

// ---- the group ----
const root = mkdtempSync(join(tmpdir(), 'dropbear-memory-'));
const OUT = flag(given, 'out') ?? 'out/memory.tsv';
mkdirSync(dirname(resolve(OUT)), { recursive: true });
const editJson = (path: string, edit: (j: Record<string, unknown>) => void) => {
  const j = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  edit(j);
  writeFileSync(path, JSON.stringify(j, null, 2));
};
/** Each node's inspector (`--inspect` on a port of its own choosing), from the line it prints at start. */
const inspectUrls: string[] = [];
const group = await startNodeGroup({
  dir: join(root, 'group'),
  models: Array.from({ length: N }, () => STANDIN_MODEL),
  name: 'memory',
  nodeConfig: { replica: { ...GROUP_REPLICA } },
  // Heap snapshots (SIGUSR2) go to the run folder.
  execArgv: ['--inspect=127.0.0.1:0', '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${root}`],
  beforeStart(_file, groupDir) {
    if (EXPIRY > 0) {
      const gp = join(groupDir, 'genesis.json');
      editJson(gp, (j) => {
        (j.params as { expiryMs: number }).expiryMs = EXPIRY * 1000;
      });
      editJson(join(groupDir, 'group.json'), (j) => {
        j.groupId = hex(groupIdOf(readGenesis(gp)));
      });
    }
    if (CERTINDEX > 0)
      for (let id = 0; id < N; id++)
        editJson(join(groupDir, `node-${id}.json`), (j) => {
          j.certificateIndexRequests = CERTINDEX;
        });
  },
  log(line) {
    const m = /^\[node (\d+)\] Debugger listening on (ws:\S+)/.exec(line);
    if (m) inspectUrls[Number(m[1])] = m[2];
    // The inspector's other lines (its help link, "Debugger ending" at exit) say nothing here.
    else if (!/^\[node \d+\] (Debugger ending on|For help, see:)/.test(line)) log(line);
  },
});
const g = group.group;
const procs = group.children;
log(`run folder ${root}; expiry ${g.genesis.params.expiryMs / 1000} s; node pids ${group.pids.join(' ')}`);
let stopped = false;
async function stopAll(): Promise<void> {
  if (stopped) return;
  stopped = true;
  for (const c of procs) if (c.exitCode === null && c.signalCode === null) c.kill('SIGCONT');
  await group.stop();
}
const onSignal = () => void stopAll().then(() => process.exit(130));
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

// ---- the inspector: a full GC, then process.memoryUsage() ----
class Inspector {
  private ws!: WebSocket;
  private next = 1;
  private readonly waiting = new Map<number, (r: unknown) => void>();
  async open(url: string): Promise<void> {
    this.ws = new WebSocket(url);
    await new Promise((res, rej) => {
      this.ws.onopen = res;
      this.ws.onerror = rej;
    });
    this.ws.onmessage = (ev) => {
      const m = JSON.parse(String(ev.data)) as { id?: number; result?: unknown; error?: unknown };
      if (m.id === undefined) return;
      this.waiting.get(m.id)?.(m.error ? { error: m.error } : m.result);
      this.waiting.delete(m.id);
    };
  }
  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.next++;
    this.ws.send(JSON.stringify({ id, method, params }));
    return new Promise((r) => this.waiting.set(id, r));
  }
  close(): void {
    this.ws.close();
  }
}
const inspectors: Inspector[] = [];
for (let id = 0; id < N; id++) {
  const i = new Inspector();
  const url = inspectUrls[id];
  if (url === undefined) {
    await stopAll();
    throw new Error(`node ${id} printed no inspector address (run folder ${root})`);
  }
  await i.open(url);
  inspectors.push(i);
}

interface Sample {
  t: number;
  node: number;
  heapUsed: number;
  heapTotal: number;
  rss: number;
  external: number;
  anon: number;
  lastExecuted: number | null;
  view: number | null;
}
const samples: Sample[] = [];
/** The node SIGSTOPped at the moment (not sampled: its inspector cannot answer). */
let stalled = -1;
async function statusOf(id: number): Promise<{ view: number; primary: number; lastExecuted: number } | null> {
  try {
    const r = await fetch(`${g.file.nodes[id].api}/v1/status`, { signal: AbortSignal.timeout(2000) });
    return (await r.json()) as { view: number; primary: number; lastExecuted: number };
  } catch {
    return null;
  }
}
async function sampleNode(id: number, t: number): Promise<Sample | null> {
  if (stalled === id || procs[id].exitCode !== null) return null;
  await inspectors[id].call('HeapProfiler.collectGarbage');
  const r = (await inspectors[id].call('Runtime.evaluate', {
    expression: 'JSON.stringify(process.memoryUsage())',
    returnByValue: true,
  })) as { result?: { value?: string } };
  if (typeof r.result?.value !== 'string') return null;
  const mu = JSON.parse(r.result.value) as NodeJS.MemoryUsage;
  let anon = Number.NaN;
  try {
    const sm = readFileSync(`/proc/${procs[id].pid}/smaps_rollup`, 'utf8');
    anon = Number(/^Anonymous:\s+(\d+)/m.exec(sm)?.[1]) * 1024;
  } catch {
    // not Linux
  }
  const st = await statusOf(id);
  return {
    t,
    node: id,
    heapUsed: mu.heapUsed,
    heapTotal: mu.heapTotal,
    rss: mu.rss,
    external: mu.external,
    anon,
    lastExecuted: st?.lastExecuted ?? null,
    view: st?.view ?? null,
  };
}
const t0 = Date.now();
writeFileSync(OUT, 't_s\tnode\theapUsedMB\theapTotalMB\trssMB\texternalMB\tanonMB\tlastExecuted\tview\n');
async function sampleAll(): Promise<void> {
  const t = Math.round((Date.now() - t0) / 1000);
  const parts: string[] = [];
  for (let id = 0; id < N; id++) {
    const s = await sampleNode(id, t);
    if (!s) continue;
    samples.push(s);
    appendFileSync(
      OUT,
      `${t}\t${id}\t${MB(s.heapUsed)}\t${MB(s.heapTotal)}\t${MB(s.rss)}\t${MB(s.external)}\t${MB(s.anon)}\t${s.lastExecuted}\t${s.view}\n`,
    );
    parts.push(
      `n${id} heap ${MB(s.heapUsed)} ext ${MB(s.external)} rss ${MB(s.rss)} (anon ${MB(s.anon)}) exec ${s.lastExecuted ?? '?'} v${s.view ?? '?'}`,
    );
  }
  log(`t=${t}s ${parts.join(' | ')}`);
}

await sampleAll();
// ---- the load, the samples, the stalls and the snapshots ----
const sender = new BatchSender({
  genesis: g.genesis,
  key: g.clientKey(),
  nodes: g.file.nodes,
  fetch,
  inputs: Array.from({ length: 1000 }, (_, i) => standInInput(i)),
  maxBatch: 32,
  lingerMs: 20,
  timeoutMs: 30_000,
  verifier: makeVerifier(16),
});
const durationMs = MINUTES * 60_000;
let running = true;
const until = async (at: number) => {
  while (running && Date.now() < at) await sleep(Math.min(500, Math.max(1, at - Date.now())));
  return running;
};
const sampler = (async () => {
  for (let k = 1; await until(t0 + k * EVERY * 1000); k++) await sampleAll();
})();
const stalls = (async () => {
  for (let k = 1; k <= STALLS; k++) {
    if (!(await until(t0 + (k * durationMs) / (STALLS + 1)))) return;
    const s = await statusOf(stalled === 0 ? 1 : 0);
    const p = s?.primary ?? 0;
    stalled = p;
    log(`SIGSTOP the primary, node ${p} (view ${s?.view})`);
    procs[p].kill('SIGSTOP');
    await sleep(5000);
    procs[p].kill('SIGCONT');
    stalled = -1;
    log(`SIGCONT node ${p}`);
  }
})();
const snaps = (async () => {
  for (const s of SNAPS) {
    if (!(await until(t0 + s * 1000))) return;
    log(`heap snapshot of node ${SNAP_NODE} at ${s} s`);
    procs[SNAP_NODE].kill('SIGUSR2');
  }
})();
const res = await openLoop(sender.send, { rate: RATE, durationMs, drainMs: 30_000, maxInFlight: 5000 });
log(
  `load: ${res.issued} issued, ${res.ok} certified, ${res.failed} failed, ${res.throughput.toFixed(0)}/s; latency p50 ${res.latency.p50.toFixed(0)} ms, p99 ${res.latency.p99.toFixed(0)} ms${res.failed ? `; ${JSON.stringify(res.errors)}` : ''}`,
);
running = false;
await Promise.all([sampler, stalls, snaps]);
await sampleAll();
for (const i of inspectors) i.close();
await stopAll();

// ---- the summary: warm (a third in) against the end ----
const warmFrom = Math.round(durationMs / 3000);
for (let id = 0; id < N; id++) {
  const mine = samples.filter((s) => s.node === id);
  const warm = mine.find((s) => s.t >= warmFrom);
  const last = mine.at(-1);
  if (!warm || !last) continue;
  log(
    `node ${id}: heap after GC ${MB(warm.heapUsed)} MB at ${warm.t} s -> ${MB(last.heapUsed)} MB at ${last.t} s; external ${MB(warm.external)} -> ${MB(last.external)}; RSS ${MB(warm.rss)} -> ${MB(last.rss)}; view ${last.view ?? '?'}`,
  );
}
log(`samples: ${OUT}`);
if (KEEP) log(`run folder kept: ${root}`);
else rmSync(root, { recursive: true, force: true });
process.exit(0);
