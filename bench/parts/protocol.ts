/**
 * Part `protocol`: the capacity of a real group — n node processes on loopback (TCP between nodes, HTTP
 * for the client, SQLite ledgers with fsync), each running the stand-in model (`"model": {"standin":
 * true}`: no inference cost) — for n = 4, 7 and 10.
 *
 * Load: one load-generator process (this one), open loop at fixed rates from low to saturation (each step
 * `--step-ms`, 5 s by default; the curve stops at the first step that falls 15 % short of its rate, fails
 * more than 1 % of requests or has p99 over 1 s), then one open-loop step at half the peak (the latency
 * target) and one closed-loop step. Two clients:
 *  - single: the SDK (`DropbearClient.infer`), one signature and one HTTP call per request, `sendTo: 1`
 *    round-robin (the node that takes a request forwards it to the others; a fair client does not make
 *    every node parse and answer every request);
 *  - shared: one signature per request as well, but requests arriving within 2 ms, up to 64, are posted
 *    together to one node (`inferBatch(…, { signing: 'each' })`, round-robin): what a client sending many
 *    requests that must each stand alone does;
 *  - batch: client batch signing with the SDK's `inferBatch`: requests arriving within 2 ms, up to 64,
 *    are signed with one signature (a Merkle root over them) and posted together to one node
 *    (round-robin, `sendTo: 1`).
 * (The three modes are the ones the target rows read: single and shared are "without batch signing".)
 * Every certificate is verified by the client (SignatureCache: receipt signatures once per consensus
 * batch). The SDK is given a node:http-based fetch (bench/lib/http.ts): the platform fetch alone would
 * saturate the generator first.
 *
 * Baseline, in the same run and with the same generator and clients: one plain HTTP server (fastify,
 * bench/lib/baseline-server.ts) that checks each request's client signature and answers its id.
 *
 * Before each curve (each mode of the baseline and of each group) a closed loop warms the processes up for
 * `--warmup-ms` (30 s; why: warmupMs in bench/lib/part.ts), discarded.
 *
 * --n=4,7,10 --modes=single,shared,batch --step-ms=5000 --warmup-ms=30000 --verify-every=1 --profile (CPU profiles of the nodes
 * and of the generator at saturation, n = 4, top frames in the results).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GROUP_DURABILITY,
  GROUP_REPLICA,
  type GroupProcesses,
  initGroup,
  type LoadedGroup,
  loadGroup,
  NODE_EXEC_ARGV,
  startGroup,
  stopChild,
} from '../../src/cli/group.ts';
import { DURABILITIES, type Durability } from '../../src/ledger/sqlite.ts';
import { STANDIN_MODEL, standInInput } from '../../src/node/standin-backend.ts';
import { LIMITS } from '../../src/protocol/index.ts';
import type { FlagSpecs } from '../lib/args.ts';
import { onCleanup } from '../lib/cleanup.ts';
import {
  Batcher,
  BenchClient,
  baselineBatch,
  baselineSingleSender,
  makeVerifier,
  sdkBatch,
  sdkSender,
} from '../lib/dropbear-load.ts';
import { lightFetch } from '../lib/http.ts';
import { closedLoop, openLoop, type Send, type StepResult } from '../lib/load.ts';
import { atEnd, describeMachine, machine } from '../lib/machine.ts';
import { mdTable } from '../lib/markdown.ts';
import { flag, type PartOptions, type PartResult, type Plot, warmupMs } from '../lib/part.ts';
import { cpuMeter } from '../lib/procs.ts';
import { callersOf, categories, type Frame, profilesIn, topFrames } from '../lib/profile.ts';
import { fmt, median } from '../lib/stats.ts';
import { linePlot, type Series } from '../lib/svg.ts';

/** How the client signs and sends (see the header): one call per request, signed alone; several signed alone, posted together; signed and posted together. */
const MODES = ['single', 'shared', 'batch'] as const;
type Mode = (typeof MODES)[number];

/** The issue's targets at n = 4; `shared` is one signature per request too, so it has `single`'s. */
const TARGETS = { batch: 10_000, single: 5_000, shared: 5_000, p99AtHalfPeakMs: 50 };
/** The machine line's words for each durability (docs/ledger.md). */
const DURABILITY_TEXT: Record<Durability, string> = {
  full: 'full durability (`--durability=full`: a node fsyncs what it signs before sending it, and its executions)',
  prepared:
    "prepared durability (`group init`'s: a node fsyncs its prepared certificate before COMMIT, view changes and a view's first vote; docs/ledger.md)",
  relaxed: 'relaxed durability (`--durability=relaxed`: no fsync before signing; docs/ledger.md)',
};
export const CLIENT_BATCH = 64;
export const LINGER_MS = 2;

const RATES: Record<'group' | 'baseline', Record<Mode, number[]>> = {
  group: {
    single: [50, 100, 200, 400, 700, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10000],
    shared: [100, 250, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10000],
    batch: [
      100, 250, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5000, 6000, 8000, 10000, 12000, 15000, 20000,
    ],
  },
  baseline: {
    single: [1000, 2000, 3000, 4000, 6000, 8000, 10000, 12000, 15000],
    shared: [2000, 4000, 6000, 8000, 10000, 12000, 15000, 20000, 25000],
    batch: [2000, 4000, 6000, 8000, 10000, 15000, 20000, 25000, 30000, 40000],
  },
};
const QUICK_RATES: Record<'group' | 'baseline', Record<Mode, number[]>> = {
  group: { single: [100, 400, 1500], shared: [200, 1000, 3000], batch: [200, 1000, 4000] },
  baseline: { single: [1000, 4000], shared: [2000, 8000], batch: [2000, 10000] },
};
const CLOSED_CONCURRENCY: Record<Mode, number> = { single: 128, shared: 1024, batch: 1024 };
/**
 * In flight during the warm-up (warmupMs, bench/lib/part.ts): a closed loop never offers more than the
 * servers answer, and these stay within the client's timeout (the run at 7f43079: no failed request in any
 * warm-up, p99 at most 1.1 s, at n = 10 without batch signing; bench/results/protocol.json, `warmup`).
 */
const WARMUP_CONCURRENCY: Record<Mode, number> = { single: 32, shared: 256, batch: 256 };

export interface Step extends StepResult {
  /**
   * CPU used during the window, in % of one core: the generator (this process), the servers (sum) and, of
   * that, the servers' main threads (sum).
   */
  cpu: { generator: number; servers: number; serverMains: number };
  /** Consensus batches executed during the step (node 0's count; null for the baseline). */
  batches: number | null;
  /** Node 0's inference calls during the step: each signs and broadcasts one result batch. */
  inferCalls: number | null;
  /** View changes node 0 saw during the step (a healthy step has none). */
  viewChanges: number | null;
  /**
   * Peer messages the nodes sent each other during the step, all nodes together, by message kind
   * (dropbear_peer_messages_sent_total and dropbear_peer_bytes_sent_total); null for the baseline.
   */
  peerSent: PeerTraffic | null;
}

/** Peer messages and their encoded bytes, by message kind. */
export type PeerTraffic = Record<string, { messages: number; bytes: number }>;

export interface Curve {
  steps: Step[];
  /** Highest throughput of any open-loop step, and that step's per-second spread. */
  peak: number;
  peakSpread: { min: number; max: number };
  /** Highest offered rate that was sustained (not saturated). */
  sustained: number | null;
  halfPeak: Step | null;
  closed: Step | null;
  /** The discarded warm-up (closed loop, WARMUP_CONCURRENCY) before the curve; null with --warmup-ms=0. */
  warmup: Step | null;
}

/** The curve never saturated: its peak is only a lower bound (the highest rate offered). */
export function unsaturated(c: Pick<Curve, 'steps' | 'sustained'>): boolean {
  return c.steps.length > 0 && c.sustained === c.steps[c.steps.length - 1].offered;
}

/**
 * A group's peak over the baseline's (same signing), marked as the bound it is where a curve never
 * saturated: the group's peak a lower bound makes the ratio one (≥), the baseline's an upper bound (≤), and
 * both together leave it unknown.
 */
export function peakRatio(
  group: Pick<Curve, 'steps' | 'sustained' | 'peak'>,
  base: Pick<Curve, 'steps' | 'sustained' | 'peak'>,
): string {
  const r = (group.peak / base.peak).toFixed(2);
  const g = unsaturated(group);
  const b = unsaturated(base);
  if (g && b) return `? (${r}, neither saturated)`;
  return `${g ? '≥ ' : b ? '≤ ' : ''}${r}`;
}

/** CPU per successful request in the step: the servers' (all processes, ms) and the generator's (µs). */
function perRequest(s: Step): { serversMs: number; generatorUs: number } {
  if (s.throughput < 1) return { serversMs: Number.NaN, generatorUs: Number.NaN };
  return {
    serversMs: (10 * s.cpu.servers) / s.throughput,
    generatorUs: (1e4 * s.cpu.generator) / s.throughput,
  };
}

function saturated(s: StepResult): string | null {
  if (s.failed > 0.01 * Math.max(1, s.issued)) return `${s.failed} of ${s.issued} failed`;
  if (s.offered !== null && s.throughput < 0.85 * s.offered)
    return `throughput ${s.throughput.toFixed(0)} < 85 % of ${s.offered}`;
  if (s.latency.p99 > 1000) return `p99 ${s.latency.p99.toFixed(0)} ms`;
  return null;
}

/**
 * The p99 target's verdict on a half-peak step. Its percentiles are over the answered requests only: a
 * request that failed (a client timeout), was dropped or was left unfinished has no latency and would have
 * been among the slowest, so a step with any of them cannot show the target met however low that p99 reads.
 */
export function p99TargetMet(s: Pick<StepResult, 'latency' | 'failed'>, targetMs: number): boolean {
  return s.failed === 0 && s.latency.p99 < targetMs;
}

/** How the generator sends to a group in `mode` (see the header). */
function groupSender(client: BenchClient, mode: Mode, inputs: Uint8Array[]): Send {
  if (mode === 'single') return sdkSender(client, inputs);
  return new Batcher(sdkBatch(client, mode === 'shared' ? 'each' : 'batch'), inputs, CLIENT_BATCH, LINGER_MS)
    .send;
}

export interface Target {
  label: string;
  send: Send;
  pids: () => number[];
  /** Waits until the servers hold no more work from the last step. */
  settle: () => Promise<void>;
  /** Node 0's counters (Dropbear: from its /metrics). */
  counters?: () => Promise<Counters>;
}

interface Counters {
  batches: number;
  inferCalls: number;
  viewChanges: number;
  /** Every node's, summed. */
  peerSent: PeerTraffic;
}

let nextIndex = 0;

export async function step(
  t: Target,
  kind: { rate: number } | { concurrency: number },
  ms: number,
): Promise<Step> {
  await t.settle();
  const c0 = t.counters ? await t.counters() : null;
  // CPU over the step's sending window: read when it ends, or when the loop returns if that is sooner.
  // (Only a timer used to read it: a light step whose last answers came back before the timer fired
  // returned first, cleared it and reported 0 % CPU.)
  const meter = cpuMeter(t.pids());
  const t0 = performance.now();
  let cpu: Step['cpu'] | null = null;
  const take = (): Step['cpu'] => {
    if (cpu) return cpu;
    const c = meter();
    const el = Math.max(1, performance.now() - t0);
    cpu = {
      generator: (100 * c.self) / el,
      servers: (100 * c.others.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0)) / el,
      serverMains: (100 * c.mains.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0)) / el,
    };
    return cpu;
  };
  const read = setTimeout(take, ms);
  const first = nextIndex;
  nextIndex += 1_000_000;
  const drainMs = Math.max(3000, ms);
  const r =
    'rate' in kind
      ? await openLoop(t.send, { rate: kind.rate, durationMs: ms, drainMs, firstIndex: first })
      : await closedLoop(t.send, {
          concurrency: kind.concurrency,
          durationMs: ms,
          drainMs,
          firstIndex: first,
        });
  clearTimeout(read);
  const used = take();
  const c1 = t.counters && c0 ? await t.counters() : null;
  return {
    ...r,
    cpu: used,
    batches: c0 && c1 ? c1.batches - c0.batches : null,
    inferCalls: c0 && c1 ? c1.inferCalls - c0.inferCalls : null,
    viewChanges: c0 && c1 ? c1.viewChanges - c0.viewChanges : null,
    peerSent: c0 && c1 ? trafficSince(c0.peerSent, c1.peerSent) : null,
  };
}

function trafficSince(before: PeerTraffic, after: PeerTraffic): PeerTraffic {
  const out: PeerTraffic = {};
  for (const [kind, a] of Object.entries(after)) {
    const b = before[kind] ?? { messages: 0, bytes: 0 };
    if (a.messages > b.messages) out[kind] = { messages: a.messages - b.messages, bytes: a.bytes - b.bytes };
  }
  return out;
}

/** What the nodes sent each other per certified request in `s`: encoded bytes in all and by message kind, and messages. */
export function peerTrafficPerRequest(
  s: Step,
): { total: number; byKind: [string, number][]; messages: number } | null {
  if (!s.peerSent || s.ok === 0) return null;
  const byKind = Object.entries(s.peerSent)
    .map(([kind, t]): [string, number] => [kind, t.bytes / s.ok])
    .sort((a, b) => b[1] - a[1]);
  const messages = Object.values(s.peerSent).reduce((x, t) => x + t.messages, 0) / s.ok;
  return { total: byKind.reduce((x, [, b]) => x + b, 0), byKind, messages };
}

export function stepLine(label: string, s: Step, why?: string | null): string {
  const what = s.mode === 'open' ? `open ${s.offered}/s` : `closed ×${s.concurrency}`;
  const per =
    s.batches !== null
      ? `, ${s.batches} batches, ${s.inferCalls} result batches${s.viewChanges ? `, ${s.viewChanges} VIEW CHANGES` : ''}`
      : '';
  return `${label} ${what}: ${s.throughput.toFixed(0)}/s ok${per}, p50 ${fmt(s.latency.p50, 1)} p99 ${fmt(s.latency.p99, 1)} ms, failed ${s.failed}, lag ${s.maxLagMs.toFixed(0)} ms, cpu gen ${s.cpu.generator.toFixed(0)}% servers ${s.cpu.servers.toFixed(0)}%${why ? ` — saturated: ${why}` : ''}${Object.keys(s.errors).length ? ` ${JSON.stringify(s.errors)}` : ''}`;
}

async function curve(
  t: Target,
  rates: number[],
  ms: number,
  mode: Mode,
  warmMs: number,
  log: (l: string) => void,
): Promise<Curve> {
  // Warm-up (discarded): the JIT (see warmupMs), then the connections at the first rate.
  let warmup: Step | null = null;
  if (warmMs > 0) {
    warmup = await step(t, { concurrency: WARMUP_CONCURRENCY[mode] }, warmMs);
    log(stepLine(`${t.label} (warm-up, discarded)`, warmup));
  }
  await step(t, { rate: rates[0] }, Math.min(ms, 1500));
  const steps: Step[] = [];
  let sustained: number | null = null;
  for (const rate of rates) {
    const s = await step(t, { rate }, ms);
    steps.push(s);
    const why = saturated(s);
    log(stepLine(t.label, s, why));
    if (why) break;
    sustained = rate;
  }
  const best = steps.reduce((a, b) => (b.throughput > a.throughput ? b : a), steps[0]);
  const peak = best.throughput;
  // The spread of the seconds the peak counts: the first second of an open-loop step is its ramp (answers
  // only from a latency after the first send; openRampMs, bench/lib/load.ts), not a slow second.
  const steady = best.perSecond.length > 1 ? best.perSecond.slice(1) : best.perSecond;
  const halfRate = Math.max(50, Math.round(peak / 2 / 50) * 50);
  const halfPeak = await step(t, { rate: halfRate }, ms);
  log(stepLine(`${t.label} (half of peak)`, halfPeak));
  const closed = await step(t, { concurrency: CLOSED_CONCURRENCY[mode] }, ms);
  log(stepLine(t.label, closed));
  return {
    steps,
    peak,
    peakSpread: { min: Math.min(...steady), max: Math.max(...steady) },
    sustained,
    halfPeak,
    closed,
    warmup,
  };
}

// ------------------------------------------------------------------ the processes

interface Running {
  g: LoadedGroup;
  procs: GroupProcesses;
  pids: number[];
  tail: () => string;
}

export async function withGroup<T>(
  n: number,
  opts: {
    profileDir?: string;
    dataDir?: string;
    /** The nodes' ledger durability (docs/ledger.md); default `group init`'s (prepared). */
    durability?: Durability;
    log: (l: string) => void;
    /** Replica settings over the bench's own (for probes). */
    replica?: Record<string, number | boolean>;
    /** Node.js flags for the nodes after NODE_EXEC_ARGV (for probes: a later flag wins). */
    execArgv?: readonly string[];
  },
  fn: (r: Running) => Promise<T>,
): Promise<T> {
  const root = mkdtempSync(join(opts.dataDir ?? tmpdir(), 'dropbear-bench-'));
  const removeDir = onCleanup(() => rmSync(root, { recursive: true, force: true }));
  try {
    await initGroup({
      dir: join(root, 'group'),
      nodes: n,
      models: Array.from({ length: n }, () => STANDIN_MODEL),
      name: `bench-${n}`,
      // What group init writes, except the vote wait (25 ms there, for slow real models' votes; the
      // stand-in answers at once), and warnings only in the logs. (Until 2026-11-29 this replaced the whole
      // replica section with the vote wait alone, so the bench ran the replica's in-process defaults:
      // 64 batches in flight and a 2 ms batch timeout.)
      nodeConfig: {
        log: { level: 'warn' },
        durability: opts.durability ?? GROUP_DURABILITY,
        replica: { ...GROUP_REPLICA, voteWaitMs: 2, ...opts.replica },
      },
    });
    const g = loadGroup(join(root, 'group'));
    const lines: string[] = [];
    const sink = (l: string) => {
      if (/FSTDEP|trace-warnings|serving http/.test(l)) return;
      lines.push(l);
      if (lines.length > 200) lines.shift();
    };
    // Node 20 refuses --cpu-prof in NODE_OPTIONS: DROPBEAR_CPU_PROF makes each node profile itself
    // (src/node/run.ts) and write its profile when it stops.
    const saved = process.env.DROPBEAR_CPU_PROF;
    if (opts.profileDir) {
      mkdirSync(opts.profileDir, { recursive: true });
      process.env.DROPBEAR_CPU_PROF = opts.profileDir;
    }
    let procs: GroupProcesses;
    try {
      procs = startGroup(g, sink, { execArgv: opts.execArgv });
    } finally {
      if (saved === undefined) delete process.env.DROPBEAR_CPU_PROF;
      else process.env.DROPBEAR_CPU_PROF = saved;
    }
    const stop = onCleanup(() => procs.stop());
    try {
      await procs.ready(60_000);
      const pids = [...procs.children.values()].map((c) => c.pid!).filter(Boolean);
      opts.log(`group n = ${n} ready (pids ${pids.join(', ')})`);
      return await fn({ g, procs, pids, tail: () => lines.slice(-20).join('\n') });
    } catch (e) {
      opts.log(`node output:\n${lines.slice(-30).join('\n')}`);
      throw e;
    } finally {
      await procs.stop();
      stop();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
    removeDir();
  }
}

export async function settleGroup(g: LoadedGroup, fetchImpl: typeof fetch): Promise<void> {
  const deadline = Date.now() + 15_000;
  await new Promise((r) => setTimeout(r, 300));
  for (;;) {
    let pending = 0;
    for (const node of g.file.nodes) {
      try {
        const r = await fetchImpl(`${node.api}/v1/status`);
        const s = (await r.json()) as { pendingRequests?: number; waitingForCertificates?: number };
        pending += (s.pendingRequests ?? 0) + (s.waitingForCertificates ?? 0);
      } catch {}
    }
    if (pending === 0 || Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function counters(g: LoadedGroup, fetchImpl: typeof fetch): Promise<Counters> {
  const texts = await Promise.all(
    g.file.nodes.map(async (n) => (await fetchImpl(`${n.api}/metrics`)).text()),
  );
  const get = (name: string) =>
    Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(texts[0])?.[1] ?? Number.NaN);
  const peerSent: PeerTraffic = {};
  for (const text of texts)
    for (const m of text.matchAll(/^dropbear_peer_(messages|bytes)_sent_total\{kind="(\w+)"\} (\S+)$/gm)) {
      const t = (peerSent[m[2]] ??= { messages: 0, bytes: 0 });
      t[m[1] as 'messages' | 'bytes'] += Number(m[3]);
    }
  return {
    batches: get('dropbear_consensus_batch_size_count'),
    inferCalls: get('dropbear_inference_batch_size_count'),
    viewChanges: get('dropbear_view_changes_total'),
    peerSent,
  };
}

export async function withBaseline<T>(
  log: (l: string) => void,
  fn: (url: string, pid: number) => Promise<T>,
): Promise<T> {
  const script = new URL('../lib/baseline-server.ts', import.meta.url).pathname;
  // The nodes' runtime flags (NODE_EXEC_ARGV) for the baseline server too: the same runtime on both sides.
  const child: ChildProcess = spawn(
    process.execPath,
    [...NODE_EXEC_ARGV, '--import', 'tsx', script, '1800'],
    // With an IPC channel, which it watches: it stops when the bench process ends, even killed outright
    // (it ran on for its 1800 s after `kill -9`, or after the bench died of an uncaught error).
    { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] },
  );
  const stop = () => stopChild(child, 5000);
  const off = onCleanup(stop);
  try {
    const url = await new Promise<string>((res, rej) => {
      child.stdout!.once('data', (d: Buffer) => res(String(d).trim().split('\n')[0]));
      child.once('exit', (c) => rej(new Error(`baseline server exited (${c})`)));
    });
    log(`baseline server ${url} (pid ${child.pid})`);
    return await fn(url, child.pid!);
  } finally {
    await stop();
    off();
  }
}

// ------------------------------------------------------------------ profiles

async function profileGenerator<T>(
  fn: () => Promise<T>,
  keepIn?: string,
): Promise<{ result: T; frames: Frame[]; totalMs: number }> {
  const s = new Session();
  s.connect();
  await s.post('Profiler.enable');
  await s.post('Profiler.start');
  const result = await fn();
  const { profile } = await s.post('Profiler.stop');
  s.disconnect();
  const dir = keepIn ?? mkdtempSync(join(tmpdir(), 'dropbear-genprof-'));
  try {
    const file = join(dir, 'generator.cpuprofile');
    writeFileSync(file, JSON.stringify(profile));
    const top = topFrames([file], 12);
    return { result, frames: top.frames, totalMs: top.totalMs };
  } finally {
    if (!keepIn) rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ the part

interface NodeProfile {
  totalMs: number;
  frames: Frame[];
  signatureChecksBy: { caller: string; ms: number; percent: number }[];
  sqliteCommitsBy: { caller: string; ms: number; percent: number }[];
  categories: { category: string; percent: number }[];
}

interface GroupResult {
  n: number;
  f: number;
  modes: Partial<Record<Mode, Curve>>;
}

/** The flags this part takes (checked by bench/run.ts before anything runs). */
export const flags: FlagSpecs = {
  n: {
    kind: 'counts',
    help: 'group sizes (4,7,10)',
    // Refused before anything runs: n = 2 or 3 (f = 0, no fault tolerated) ran the baseline for minutes
    // first and then measured a group that is not Byzantine fault tolerant; past LIMITS.nodes initGroup
    // threw only after the baseline.
    min: { value: 4, why: 'n = 3f + 1 with f ≥ 1' },
    max: { value: LIMITS.nodes, why: 'the nodes a genesis holds' },
  },
  modes: {
    kind: 'choice',
    choices: [...MODES],
    list: true,
    help: 'how the client signs and sends (single,shared,batch)',
  },
  'step-ms': { kind: 'number', value: 'MS', help: 'load step length (5000)' },
  'verify-every': { kind: 'count', help: 'the client verifies every k-th certificate (1)' },
  'data-dir': { kind: 'text', help: "where the nodes' ledgers live (the OS temp folder)" },
  durability: {
    kind: 'choice',
    choices: DURABILITIES,
    help: `the nodes' ledger durability (${GROUP_DURABILITY}, group init's)`,
  },
  profile: { kind: 'switch', help: 'CPU profiles of the nodes and the generator at saturation, n = 4' },
  'profile-dir': {
    kind: 'text',
    help: 'with --profile: keep the .cpuprofile files in a folder made under DIR',
  },
};

/**
 * Checked before any part runs: a --data-dir that is not a folder failed only at the first group, after
 * the baseline's minutes, and --profile-dir without --profile was ignored.
 */
export function check(args: string[]): string | null {
  const dataDir = flag(args, 'data-dir');
  if (dataDir !== undefined && !statSync(dataDir, { throwIfNoEntry: false })?.isDirectory())
    return `--data-dir: ${dataDir} is not a folder`;
  if (flag(args, 'profile-dir') !== undefined && !args.includes('--profile'))
    return '--profile-dir needs --profile';
  return null;
}

/**
 * Why a run of these group sizes and modes is partial (null: the whole table): its section would hold only
 * their rows. Two runs of `--n=4 --modes=batch` on 2026-12-07 each rewrote BENCHMARKS.md's table of n = 4,
 * 7 and 10 in three modes with their one row (restored by hand); run.ts writes nothing for a partial run.
 */
export function partialOf(ns: number[], modes: string[], quick: boolean): string | null {
  const full = (quick ? [4] : [4, 7, 10]).join(',');
  if ([...ns].sort((a, b) => a - b).join(',') === full && MODES.every((m) => modes.includes(m))) return null;
  return `--n=${ns.join(',')} --modes=${modes.join(',')}`;
}

export async function run(o: PartOptions): Promise<PartResult> {
  const ns = (flag(o.args, 'n') ?? (o.quick ? '4' : '4,7,10')).split(',').map(Number);
  const modes = (flag(o.args, 'modes') ?? MODES.join(',')).split(',') as Mode[];
  const ms = Number(flag(o.args, 'step-ms') ?? (o.quick ? 2000 : 5000));
  const warmMs = warmupMs(o);
  const verifyEvery = Number(flag(o.args, 'verify-every') ?? 1);
  const profile = o.args.includes('--profile');
  /** Where the nodes' ledgers live (default: the OS temp folder, on disk here; /dev/shm takes fsync out). */
  const dataDir = flag(o.args, 'data-dir');
  /** The nodes' ledger durability (docs/ledger.md): group init's (prepared) unless --durability says. */
  const durability = (flag(o.args, 'durability') ?? GROUP_DURABILITY) as Durability;
  if (!DURABILITIES.includes(durability))
    throw new Error(`--durability is one of ${DURABILITIES.join(', ')}`);
  const rates = o.quick ? QUICK_RATES : RATES;
  const inputs = Array.from({ length: 1024 }, (_, i) => standInInput(i));
  const http = lightFetch({ maxSockets: 512 });
  const m = machine();
  const verifiers: Record<string, { full: number; light: number }> = {};

  try {
    // ---- baseline
    const baseline: Partial<Record<Mode, Curve>> = {};
    await withBaseline(o.log, async (url, pid) => {
      // The baseline only needs a genesis-shaped client to sign with: a throwaway n = 4 group's files.
      const root = mkdtempSync(join(tmpdir(), 'dropbear-bench-base-'));
      // Removed on SIGINT/SIGTERM too (bench/run.ts): it was left in the temp folder.
      const removeRoot = onCleanup(() => rmSync(root, { recursive: true, force: true }));
      try {
        await initGroup({
          dir: join(root, 'g'),
          nodes: 4,
          models: Array(4).fill(STANDIN_MODEL),
          name: 'baseline',
        });
        const g = loadGroup(join(root, 'g'));
        const client = new BenchClient(
          { genesis: g.genesis, nodes: [{ id: 0, api: url }], key: g.clientKey(), fetch: http.fetch },
          makeVerifier(),
        );
        for (const mode of modes) {
          const send =
            mode === 'single'
              ? baselineSingleSender(client, url, http.fetch, inputs)
              : new Batcher(
                  baselineBatch(client, url, http.fetch, mode === 'shared' ? 'each' : 'batch'),
                  inputs,
                  CLIENT_BATCH,
                  LINGER_MS,
                ).send;
          const t: Target = {
            label: `baseline ${mode}`,
            send,
            pids: () => [pid],
            settle: () => new Promise((r) => setTimeout(r, 300)),
          };
          baseline[mode] = await curve(t, rates.baseline[mode], ms, mode, warmMs, o.log);
        }
      } finally {
        rmSync(root, { recursive: true, force: true });
        removeRoot();
      }
    });

    // ---- groups
    const groups: GroupResult[] = [];
    for (const n of ns) {
      const res: GroupResult = { n, f: Math.floor((n - 1) / 3), modes: {} };
      await withGroup(n, { log: o.log, dataDir, durability }, async ({ g, pids }) => {
        for (const mode of modes) {
          const verifier = makeVerifier(verifyEvery);
          const client = new BenchClient(
            {
              genesis: g.genesis,
              nodes: g.file.nodes,
              key: g.clientKey(),
              sendTo: 1,
              timeoutMs: Math.max(3000, ms),
              fetch: http.fetch,
            },
            verifier,
          );
          const send = groupSender(client, mode, inputs);
          const t: Target = {
            label: `n=${n} ${mode}`,
            send,
            pids: () => pids,
            settle: () => settleGroup(g, http.fetch),
            counters: () => counters(g, http.fetch),
          };
          res.modes[mode] = await curve(t, rates.group[mode], ms, mode, warmMs, o.log);
          verifiers[`n${n}-${mode}`] = { full: verifier.full, light: verifier.light };
        }
      });
      groups.push(res);
    }

    // ---- profiles (n = 4, closed loop at saturation, one fresh group per mode)
    const profiles: Record<
      string,
      {
        nodes: NodeProfile;
        generator: { totalMs: number; frames: Frame[] };
        throughput: number;
      }
    > = {};
    if (profile)
      for (const mode of modes) {
        const keepIn = flag(o.args, 'profile-dir');
        if (keepIn) mkdirSync(keepIn, { recursive: true });
        const dir = mkdtempSync(join(keepIn ?? tmpdir(), `dropbear-prof-${mode}-`));
        let throughput = 0;
        let gen: Awaited<ReturnType<typeof profileGenerator>> | null = null;
        await withGroup(4, { log: o.log, profileDir: dir, dataDir, durability }, async ({ g, pids }) => {
          const client = new BenchClient(
            { genesis: g.genesis, nodes: g.file.nodes, key: g.clientKey(), sendTo: 1, fetch: http.fetch },
            makeVerifier(verifyEvery),
          );
          const send = groupSender(client, mode, inputs);
          const t: Target = {
            label: `profile n=4 ${mode}`,
            send,
            pids: () => pids,
            settle: () => settleGroup(g, http.fetch),
          };
          await step(t, { concurrency: CLOSED_CONCURRENCY[mode] }, Math.max(1500, warmMs));
          gen = await profileGenerator(
            () => step(t, { concurrency: CLOSED_CONCURRENCY[mode] }, ms),
            keepIn ? dir : undefined,
          );
          throughput = (gen.result as Step).throughput;
          o.log(stepLine(t.label, gen.result as Step));
        });
        const files = profilesIn(dir);
        const nodes = {
          ...topFrames(files, 15),
          signatureChecksBy: callersOf(files, 'verifyTagged'),
          sqliteCommitsBy: callersOf(files, 'sqliteTransaction'),
          categories: categories(files),
        };
        const g2 = gen as unknown as { frames: Frame[]; totalMs: number };
        profiles[mode] = { nodes, generator: { totalMs: g2.totalMs, frames: g2.frames }, throughput };
        o.log(
          `profile ${mode}: nodes ${nodes.totalMs} ms sampled; top: ${nodes.frames
            .slice(0, 6)
            .map((f) => `${f.frame} ${f.percent}%`)
            .join('; ')}`,
        );
        o.log(
          `profile ${mode}: generator top: ${g2.frames
            .slice(0, 6)
            .map((f) => `${f.frame} ${f.percent}%`)
            .join('; ')}`,
        );
        if (keepIn) o.log(`profile ${mode}: the .cpuprofile files kept in ${dir}`);
        else rmSync(dir, { recursive: true, force: true });
      }

    const r = report(
      o,
      m,
      ms,
      verifyEvery,
      dataDir ?? tmpdir(),
      durability,
      baseline,
      groups,
      profiles,
      verifiers,
    );
    const partial = partialOf(ns, modes, o.quick);
    return partial ? { ...r, partial } : r;
  } finally {
    http.close();
  }
}

// ------------------------------------------------------------------ the report

function report(
  o: PartOptions,
  m: ReturnType<typeof machine>,
  ms: number,
  verifyEvery: number,
  dataDir: string,
  durability: Durability,
  baseline: Partial<Record<Mode, Curve>>,
  groups: GroupResult[],
  profiles: Record<
    string,
    {
      nodes: NodeProfile;
      generator: { totalMs: number; frames: Frame[] };
      throughput: number;
    }
  >,
  verifiers: Record<string, { full: number; light: number }>,
): PartResult {
  const warmMs = warmupMs(o);
  const summaryRows: (string | number)[][] = [];
  const spreadOf = (c: Curve) => `${c.peakSpread.min}–${c.peakSpread.max}`;
  const peakStep = (c: Curve) => c.steps.reduce((a, b) => (b.throughput > a.throughput ? b : a), c.steps[0]);
  const cpuOf = (c: Curve) => {
    const p = perRequest(peakStep(c));
    return [fmt(p.serversMs, 2), fmt(p.generatorUs)];
  };
  for (const mode of MODES) {
    const b = baseline[mode];
    if (b)
      summaryRows.push([
        'baseline (fastify + signature check)',
        '–',
        mode,
        `${unsaturated(b) ? '≥ ' : ''}${b.peak.toFixed(0)}`,
        spreadOf(b),
        fmt(b.sustained),
        `${fmt(b.halfPeak?.latency.p50, 1)} / ${fmt(b.halfPeak?.latency.p90, 1)} / ${fmt(b.halfPeak?.latency.p99, 1)}`,
        fmt(b.closed?.throughput),
        ...cpuOf(b),
        '1.00',
      ]);
  }
  for (const g of groups)
    for (const mode of MODES) {
      const c = g.modes[mode];
      if (!c) continue;
      const b = baseline[mode];
      summaryRows.push([
        'Dropbear group (processes)',
        g.n,
        mode,
        `${unsaturated(c) ? '≥ ' : ''}${c.peak.toFixed(0)}`,
        spreadOf(c),
        fmt(c.sustained),
        `${fmt(c.halfPeak?.latency.p50, 1)} / ${fmt(c.halfPeak?.latency.p90, 1)} / ${fmt(c.halfPeak?.latency.p99, 1)}`,
        fmt(c.closed?.throughput),
        ...cpuOf(c),
        b ? peakRatio(c, b) : '–',
      ]);
    }
  const summary = mdTable(
    [
      '<system',
      'n',
      '<client signing',
      'peak certified req/s (open loop)',
      'per-second spread at peak',
      'highest rate sustained',
      'p50 / p90 / p99 ms at half of peak',
      'closed loop req/s',
      'server CPU ms / request at peak',
      'generator CPU µs / request at peak',
      '× baseline (same signing)',
    ],
    summaryRows,
  );

  const stepRows: (string | number)[][] = [];
  const addSteps = (sys: string, n: number | string, mode: Mode, c: Curve) => {
    const all = [
      ...c.steps.map((s) => ({ s, tag: '' })),
      ...(c.halfPeak ? [{ s: c.halfPeak, tag: ' (½ peak)' }] : []),
      ...(c.closed ? [{ s: c.closed, tag: '' }] : []),
    ];
    for (const { s, tag } of all)
      stepRows.push([
        sys,
        n,
        mode,
        s.mode === 'open' ? `open ${s.offered}/s${tag}` : `closed, ${s.concurrency} in flight`,
        s.throughput.toFixed(0),
        fmt(s.latency.p50, 1),
        fmt(s.latency.p90, 1),
        fmt(s.latency.p99, 1),
        s.failed,
        s.batches ? (s.ok / s.batches).toFixed(1) : '–',
        s.inferCalls ? (s.ok / s.inferCalls).toFixed(1) : '–',
        s.viewChanges ?? '–',
        s.cpu.generator.toFixed(0),
        s.cpu.servers.toFixed(0),
        fmt(perRequest(s).serversMs, 2),
      ]);
  };
  for (const mode of MODES) if (baseline[mode]) addSteps('baseline', '–', mode, baseline[mode]!);
  for (const g of groups)
    for (const mode of MODES) if (g.modes[mode]) addSteps('group', g.n, mode, g.modes[mode]!);
  const steps = mdTable(
    [
      '<system',
      'n',
      '<signing',
      '<load',
      'ok req/s',
      'p50 ms',
      'p90 ms',
      'p99 ms',
      'failed',
      'requests per consensus batch',
      'requests per result batch (node 0)',
      'view changes',
      'generator CPU %',
      'servers CPU %',
      'server CPU ms / request',
    ],
    stepRows,
  );

  // What the nodes send each other per certified request, at saturation (the closed-loop step).
  const trafficRows: (string | number)[][] = [];
  for (const g of groups)
    for (const mode of MODES) {
      const s = g.modes[mode]?.closed;
      const t = s ? peerTrafficPerRequest(s) : null;
      if (!s || !t) continue;
      trafficRows.push([
        g.n,
        mode,
        s.throughput.toFixed(0),
        t.messages.toFixed(2),
        t.total.toFixed(0),
        t.byKind
          .filter(([, b]) => b >= 0.01 * t.total)
          .map(([kind, b]) => `${kind} ${((100 * b) / t.total).toFixed(0)} %`)
          .join(', '),
      ]);
    }
  const traffic =
    trafficRows.length === 0
      ? ''
      : `Traffic between the nodes in the closed-loop step (the nodes' \`dropbear_peer_bytes_sent_total\`, all nodes together, encoded message bytes without frame headers or TCP/IP, and \`dropbear_peer_messages_sent_total\`: a message to each peer counts once), per certified request:\n\n${mdTable(
          [
            'n',
            '<signing',
            'closed loop req/s',
            'messages between nodes / request',
            'bytes sent between nodes / request',
            '<by message kind (≥ 1 %)',
          ],
          trafficRows,
        )}`;

  // Targets (n = 4).
  const g4 = groups.find((g) => g.n === 4);
  const verdicts: string[] = [];
  for (const mode of ['batch', 'shared', 'single'] as Mode[]) {
    const c = g4?.modes[mode];
    if (!c) continue;
    const target = TARGETS[mode];
    const miss =
      c.peak >= target
        ? 'met'
        : unsaturated(c)
          ? `not settled: the curve never saturated up to the highest rate offered (≥ ${c.peak.toFixed(0)} of ${target})`
          : `missed by ${(100 * (1 - c.peak / target)).toFixed(0)} % (${c.peak.toFixed(0)} of ${target})`;
    verdicts.push(
      `- n = 4, ${mode === 'batch' ? 'with client batch signing' : mode === 'shared' ? 'without client batch signing (one signature per request), posted together' : 'without client batch signing, one HTTP call per request'}: ≥ ${target} certified req/s — **${miss}**.`,
    );
    const h = c.halfPeak;
    if (h)
      verdicts.push(
        `- n = 4, ${mode}: p99 at half of peak (${h.offered}/s) ${h.latency.p99.toFixed(1)} ms${h.failed ? ` over the answered requests (${h.failed} of ${h.issued} failed or unanswered)` : ''} — target < ${TARGETS.p99AtHalfPeakMs} ms **${p99TargetMet(h, TARGETS.p99AtHalfPeakMs) ? 'met' : 'missed'}**.`,
      );
  }

  const plots: Plot[] = [];
  const caption = [
    `${m.cores} cores (${m.cpu}), Node ${m.node}; ${o.command}`,
    `open loop, one run of ${ms / 1000} s per rate; one load-generator process on the same machine${o.quick ? '; QUICK smoke run' : ''}`,
  ];
  for (const g of groups) {
    const series: Series[] = [];
    const color = { single: '#1f77b4', shared: '#2ca02c', batch: '#d62728' };
    const baseColor = { single: '#7f7f7f', shared: '#bcbd22', batch: '#8c564b' };
    for (const mode of MODES) {
      const c = g.modes[mode];
      if (!c) continue;
      series.push({
        name: `${mode}: p99`,
        color: color[mode],
        points: c.steps.map((s) => ({ x: s.throughput, y: s.latency.p99 })),
      });
      series.push({
        name: `${mode}: p50`,
        color: color[mode],
        dashed: true,
        points: c.steps.map((s) => ({ x: s.throughput, y: s.latency.p50 })),
      });
    }
    for (const mode of MODES) {
      const b = baseline[mode];
      if (b)
        series.push({
          name: `baseline ${mode}: p99`,
          color: baseColor[mode],
          dashed: true,
          points: b.steps.map((s) => ({ x: s.throughput, y: s.latency.p99 })),
        });
    }
    plots.push({
      name: `n${g.n}`,
      alt: `latency against certified throughput, n = ${g.n}`,
      svg: linePlot({
        title: `n = ${g.n}: latency vs certified throughput (stand-in model)`,
        xLabel: 'successful requests per second',
        yLabel: 'latency, ms',
        logY: true,
        series,
        caption,
      }),
    });
  }

  const profileText: string[] = [];
  for (const [mode, p] of Object.entries(profiles)) {
    profileText.push(
      `Profile, n = 4, ${mode}, closed loop (${p.throughput.toFixed(0)} req/s): ${p.nodes.totalMs} ms sampled on the 4 nodes' main threads (V8 samples wall time: a frame blocked in fsync counts); top frames by self time:`,
      '',
      mdTable(
        ['<frame', 'self ms', '%'],
        p.nodes.frames.map((f) => [`\`${f.frame}\``, f.selfMs, f.percent]),
      ),
      '',
      `By kind of work: ${p.nodes.categories.map((c) => `${c.category} ${c.percent} %`).join(', ')}.`,
      '',
      `Signature checks (\`verifyTagged\`) by caller: ${p.nodes.signatureChecksBy.map((c) => `${c.caller} ${c.percent} %`).join(', ')}. SQLite transactions (commit and fsync) by caller: ${p.nodes.sqliteCommitsBy.map((c) => `${c.caller} ${c.percent} %`).join(', ')} (of all samples).`,
      '',
      `Load generator (same step), ${p.generator.totalMs} ms of CPU:`,
      '',
      mdTable(
        ['<frame', 'self ms', '%'],
        p.generator.frames.map((f) => [`\`${f.frame}\``, f.selfMs, f.percent]),
      ),
      '',
    );
  }

  const verifyNote =
    verifyEvery === 1
      ? 'The client verifies every certificate (SignatureCache: q receipt signatures once per consensus batch).'
      : `The client fully verifies one certificate in ${verifyEvery} (signatures with a SignatureCache, Merkle path, decision); every one is matched to its request id and input.`;
  const body = [
    `${o.quick ? '**Quick (smoke) run: not a measurement** (short steps, few rates, n = 4 only by default). ' : ''}Machine: ${describeMachine(atEnd(m))}. Command: \`${o.command}\`.`,
    `One run per load step (${ms / 1000} s each; open loop at a fixed rate, latency from each request's scheduled send time;` +
      `${warmMs > 0 ? ` before each curve, ${warmMs / 1000} s of closed loop (${WARMUP_CONCURRENCY.single} in flight for single, ${WARMUP_CONCURRENCY.shared} for shared, ${WARMUP_CONCURRENCY.batch} for batch) warm the processes up, discarded: V8 compiles a node's functions over the first minutes under load (bench/lib/part.ts, warmupMs);` : ' no warm-up;'}` +
      ` the curve stops at the first step that falls 15 % short of its rate, fails > 1 % or has p99 > 1 s; an open-loop step's rate counts the answers after its first second, which is the ramp: none comes before its request's latency). Spread: the certified requests in each second of the peak step after its first (min–max). A peak marked ≥ never saturated within the rates offered (a lower bound: a ratio with it above the line is a lower bound too, below it an upper bound). The servers and the single load-generator process share the machine's ${m.cores} cores; "CPU %" is per core (${m.cores * 100} % is the whole machine). ${verifyNote}`,
    `Ledgers (SQLite) in \`${dataDir}\`${dataDir.startsWith('/dev/shm') ? ' (tmpfs: fsync costs nothing)' : ''}, ${DURABILITY_TEXT[durability]}.`,
    `single: the SDK, one signature and one HTTP call per request, sendTo 1 (round-robin; the node forwards to its peers). shared: one signature per request too, but the SDK's \`inferBatch(…, { signing: 'each' })\` posts ${CLIENT_BATCH} of them (or what arrived within ${LINGER_MS} ms) together to one node. batch: the SDK's \`inferBatch\` on ${CLIENT_BATCH} requests (or what arrived within ${LINGER_MS} ms): one signature, posted together to one node. The baseline server gets the same three from the same client.`,
    '',
    summary,
    '',
    ...verdicts,
    '',
    ...plots.map((p) => `{plot:${p.name}}`),
    '',
    ...(traffic ? [traffic, ''] : []),
    '<details><summary>Every step</summary>',
    '',
    steps,
    '',
    '</details>',
    '',
    ...profileText,
  ].join('\n');

  return {
    json: {
      ns: groups.map((g) => g.n),
      dataDir,
      durability,
      stepMs: ms,
      warmupMs: warmMs,
      clientBatch: CLIENT_BATCH,
      lingerMs: LINGER_MS,
      verifyEvery,
      verifiedCertificates: verifiers,
      targets: TARGETS,
      baseline,
      groups,
      profiles,
      medianGeneratorCpuAtPeak: median(
        groups.flatMap((g) => Object.values(g.modes).map((c) => c!.steps.at(-1)!.cpu.generator)),
      ),
    },
    table: `${summary}\n\n${verdicts.join('\n')}`,
    section: {
      heading: 'Protocol capacity: a real group of node processes (stand-in model)',
      intro:
        'n node processes on loopback (TCP between nodes, HTTP API, SQLite ledgers with fsync) run the stand-in model (no inference cost), so this is the protocol alone: client signature checks, dissemination, three-phase ordering, execution, receipts and certificates. Baseline: one plain fastify server that checks each client signature and answers, driven by the same load generator in the same run. `npm run bench -- protocol`.',
      body,
    },
    plots,
  };
}
