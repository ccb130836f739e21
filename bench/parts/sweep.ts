/**
 * Part `sweep`: the batching knobs and their throughput/latency trade-off, on real node processes
 * (4 nodes on loopback, SQLite ledgers, every certificate verified by the client).
 *
 *  - Consensus batching, with the stand-in model (no inference cost, so the protocol's own batching is what
 *    moves): replica `batchSize` {16, 128, 1024} × `batchTimeoutMs` {1, 20, 60} (60: what `group init` writes).
 *  - Pipeline depth, with the stand-in model: replica `maxInFlightBatches` {1, 2, 4, 16} at the current batch
 *    size and timeout; its latency is taken at a middling rate (MID_RATE), where the CPUs are busy and the
 *    depth decides how batches form, rather than at the low rate.
 *  - Inference batching, with the e2e part's four ImageNet models (node k runs the k-th, E2E_MODELS) on the
 *    val JPEGs, which every node decodes and preprocesses for its own model: engine `maxBatch` {1, 8, 32}
 *    (maxDelayMs 2), consensus at its defaults. (Until 2026-12-03 these rows ran the catalogue's smallest
 *    model, mobilenet_v1_0.25_128_quant, on all four nodes with pre-made tensors; they picked 32 where
 *    pairs of e2e runs with 32 on both sides gave a worse p99 ratio.) With the stand-in there is nothing
 *    to batch in inference, and with real models the consensus batch hardly matters next to inference,
 *    which is why the grid is split this way rather than crossed.
 *
 * For every setting a fresh group is started and measured twice per run: open loop at a low fixed rate, the
 * same for every setting (the latency a lightly loaded group adds: a batch timeout shows here in full),
 * then closed loop at a high concurrency (its peak throughput); a peak step that overloads the group (view
 * changes, unanswered requests) is followed by a fresh group. The stand-in rows' client batches requests
 * (64 per signature, 2 ms linger); the real-model rows run the e2e part's client (the SDK sending each call
 * to every node, coalescing the calls of one event-loop turn). Then the defaults: the setting with the
 * highest peak whose low-load p50 is within 25 % (or 10 ms) of the best low-load p50 of its sweep; for the
 * inference rows the p99 at about half of their peak instead (INFERENCE_RATE_SHARE: where the e2e target is
 * read; until 2026-12-03 these rows took the p50 at 20/s with the forwarding batch client, and picked
 * maxBatch 1 where pairs of e2e runs gave 8 the lower p99 ratio).
 *
 * Then each pick that is not the current default is checked against that default in interleaved pairs
 * (`--confirm-pairs`, 3; the current default first in odd pairs, the pick first in even ones), each
 * setting on a fresh group measured once as above: the rule applied to each pair alone
 * (bench/lib/pick.ts) must take the pick in every pair for the run to support changing the default. The
 * grid's two runs per setting, back to back on one group, could not rank settings this close: picks
 * flipped from run to run by more than a row's own spread (BENCHMARKS.md, the sweep's reading).
 *
 * Every group first runs a discarded closed loop (`--warmup-ms`, 30 s; warmupMs in bench/lib/part.ts).
 *
 * Flags: --runs=N --step-ms=MS --warmup-ms=MS --confirm-pairs=N --no-confirm --sweeps=…
 */
import { GROUP_REPLICA } from '../../src/cli/group.ts';
import { DEFAULT_REPLICA_CONFIG } from '../../src/consensus/replica.ts';
import { ENGINE_DEFAULTS as ENGINE } from '../../src/inference/engine.ts';
import { STANDIN_MODEL, standInInput } from '../../src/node/standin-backend.ts';
import type { FlagSpecs } from '../lib/args.ts';
import { BatchSender, BenchClient, makeVerifier, sdkSender } from '../lib/dropbear-load.ts';
import {
  E2E_MODELS,
  homeWithModels,
  loadVal,
  type NodeGroup,
  nodeCounters,
  settleNodes,
  startNodeGroup,
  tempDir,
} from '../lib/extra.ts';
import { lightFetch } from '../lib/http.ts';
import { closedLoop, openLoop, type Send, type StepResult } from '../lib/load.ts';
import { atEnd, describeMachine, machine } from '../lib/machine.ts';
import { mdTable } from '../lib/markdown.ts';
import { flag, type PartOptions, type PartResult, warmupMs } from '../lib/part.ts';
import { type Measured, type PickRule, pickIndex, pickTaken, type Verdict, verdict } from '../lib/pick.ts';
import { cpuMeter } from '../lib/procs.ts';
import { fmtSpread, type Spread, spread } from '../lib/stats.ts';
import { linePlot } from '../lib/svg.ts';

/** The engine settings a node runs with when its config names none (src/inference/engine.ts). */
const ENGINE_DEFAULTS = {
  intraOpThreads: ENGINE.intraOpThreads,
  maxBatch: ENGINE.maxBatch,
  maxDelayMs: ENGINE.maxDelayMs,
};
const CLIENT_BATCH = 64;
const LINGER_MS = 2;
/** The open-loop rate at which the pipeline-depth settings' latency is taken (~40 % of the peak here). */
const MID_RATE = 1000;
/**
 * A setting qualifies for the defaults when its low-load p50 is within this factor, or LATENCY_SLACK_MS,
 * of the sweep's best (whichever is looser: a few ms are noise at these latencies).
 */
const LATENCY_SLACK = 1.25;
const LATENCY_SLACK_MS = 10;
/**
 * The inference rows' open-loop rate, as a share of the peak the first of them reached in its warm-up
 * (closed loop at the rows' concurrency): about where the e2e part reads its p99 target (half of the
 * baseline's peak, which the certified peak is within ~10 % of). Taken from the run rather than fixed
 * because the machine's speed moves by up to ~2× between runs: a fixed 35/s, half of a fast spell's
 * peak, overloaded the group on a slow one (2026-12-03, failures and view changes). Their pick weighs the
 * p99 there, not the p50.
 */
const INFERENCE_RATE_SHARE = 0.5;

interface Setting {
  sweep: 'consensus' | 'pipeline' | 'inference';
  batchSize: number;
  batchTimeoutMs: number;
  /** Replica maxInFlightBatches: proposals the primary keeps unexecuted at most. */
  maxInFlight: number;
  maxBatch: number;
}

interface Row extends Setting {
  peak: Spread;
  peakP50: Spread;
  lowRate: number;
  lowP50: Spread;
  lowP99: Spread;
  /** Node 0's mean consensus batch at the peak, and node CPU ms per certified request there. */
  consensusBatch: number;
  nodeCpuMs: number;
  viewChanges: number;
  failed: number;
}

const label = (s: Setting) =>
  s.sweep === 'consensus'
    ? `batchSize ${s.batchSize}, batchTimeoutMs ${s.batchTimeoutMs}`
    : s.sweep === 'pipeline'
      ? `maxInFlightBatches ${s.maxInFlight}`
      : `maxBatch ${s.maxBatch}`;

/** The consensus settings a group runs with: the replica defaults as \`group init\` overrides them. */
const CURRENT = { ...DEFAULT_REPLICA_CONFIG, ...GROUP_REPLICA };

const SWEEPS = ['consensus', 'pipeline', 'inference'] as const;

/** The sweep's rule (bench/lib/pick.ts) with this part's slack. */
const PICK_RULE: PickRule = { slack: LATENCY_SLACK, slackMs: LATENCY_SLACK_MS };

/** The latency a sweep's pick weighs: the p99 for the inference rows (the e2e target's), else the p50. */
const weighed = (r: Row) => (r.sweep === 'inference' ? r.lowP99.median : r.lowP50.median);

/** What the rule reads of a row. */
const measured = (r: Row): Measured => ({
  peak: r.peak.median,
  latency: weighed(r),
  clean: r.failed === 0 && r.viewChanges === 0,
});

/** The setting a group runs with by default (\`group init\`'s replica settings, the engine's defaults). */
const currentSetting = (sweep: Setting['sweep']): Setting => ({
  sweep,
  batchSize: CURRENT.batchSize,
  batchTimeoutMs: CURRENT.batchTimeoutMs,
  maxInFlight: CURRENT.maxInFlightBatches,
  maxBatch: ENGINE_DEFAULTS.maxBatch,
});

const settingOf = (r: Setting): Setting => ({
  sweep: r.sweep,
  batchSize: r.batchSize,
  batchTimeoutMs: r.batchTimeoutMs,
  maxInFlight: r.maxInFlight,
  maxBatch: r.maxBatch,
});

const sameSetting = (a: Setting, b: Setting) =>
  a.batchSize === b.batchSize &&
  a.batchTimeoutMs === b.batchTimeoutMs &&
  a.maxInFlight === b.maxInFlight &&
  a.maxBatch === b.maxBatch;

interface ConfirmPair {
  pickFirst: boolean;
  current: Row;
  pick: Row;
}

/** A sweep's pick against the current default: no pairs when the pick is the default. */
interface Confirmation {
  sweep: Setting['sweep'];
  pick: Setting;
  current: Setting;
  pairs: ConfirmPair[];
  verdict: Verdict | null;
}

/** The flags this part takes (checked by bench/run.ts before anything runs). */
export const flags: FlagSpecs = {
  runs: { kind: 'count', help: 'runs per setting' },
  'step-ms': { kind: 'number', value: 'MS', help: 'run length' },
  'confirm-pairs': {
    kind: 'count',
    help: 'interleaved pairs, each setting on a fresh group, of every pick that is not the current default against that default (3, 1 with --quick); the pick is adopted only if it wins every pair',
  },
  'no-confirm': { kind: 'switch', help: 'no confirmation pairs (the picks stand unconfirmed)' },
  sweeps: {
    kind: 'choice',
    list: true,
    choices: ['consensus', 'pipeline', 'inference'],
    help: 'which sweeps to run (all three); a subset prints its tables and writes nothing',
  },
};

export async function run(o: PartOptions): Promise<PartResult> {
  const runs = Number(flag(o.args, 'runs') ?? (o.quick ? 1 : 2));
  const confirmPairs = o.args.includes('--no-confirm')
    ? 0
    : Number(flag(o.args, 'confirm-pairs') ?? (o.quick ? 1 : 3));
  const stepMs = Number(flag(o.args, 'step-ms') ?? (o.quick ? 1500 : 5000));
  const warmMs = warmupMs(o);
  const m = machine();
  const sizes = o.quick ? [16, 1024] : [16, 128, 1024];
  const timeouts = o.quick ? [1, 60] : [1, 20, 60];
  const maxBatches = o.quick ? [1, 32] : [1, 8, 32];
  const inFlights = o.quick ? [1, 4] : [1, 2, 4, 16];
  const only = flag(o.args, 'sweeps')?.split(',');
  const all: Setting[] = [
    ...sizes.flatMap((batchSize) =>
      timeouts.map((batchTimeoutMs) => ({
        sweep: 'consensus' as const,
        batchSize,
        batchTimeoutMs,
        maxInFlight: CURRENT.maxInFlightBatches,
        maxBatch: ENGINE_DEFAULTS.maxBatch,
      })),
    ),
    ...inFlights.map((maxInFlight) => ({
      sweep: 'pipeline' as const,
      batchSize: CURRENT.batchSize,
      batchTimeoutMs: CURRENT.batchTimeoutMs,
      maxInFlight,
      maxBatch: ENGINE_DEFAULTS.maxBatch,
    })),
    ...maxBatches.map((maxBatch) => ({
      sweep: 'inference' as const,
      batchSize: CURRENT.batchSize,
      batchTimeoutMs: CURRENT.batchTimeoutMs,
      maxInFlight: CURRENT.maxInFlightBatches,
      maxBatch,
    })),
  ];
  const settings = only ? all.filter((x) => only.includes(x.sweep)) : all;
  // The real models certify ~80× fewer requests per second: fewer in flight, no client batches of their
  // own (clientBatch 0: the SDK coalesces instead) and longer steps, so that several batches complete
  // inside each window.
  const load = {
    consensus: { conc: 1024, lowRate: 100, clientBatch: CLIENT_BATCH, stepMs },
    // The pipeline depth matters once the CPUs are busy: its latency is taken at a middling rate instead.
    pipeline: { conc: 1024, lowRate: MID_RATE, clientBatch: CLIENT_BATCH, stepMs },
    // The e2e part's client, concurrency and rate: the SDK coalescing one turn's calls and sending to every
    // node, 32 in flight for the peak (the e2e part's highest; the turn's calls go as one client batch, so
    // a consensus batch holds up to that many), the latency read at about half of the peak (set from the
    // first row's warm-up, INFERENCE_RATE_SHARE), over longer steps (its p99 decides).
    inference: {
      conc: 32,
      lowRate: 0,
      clientBatch: 0,
      stepMs: Math.max(stepMs, o.quick ? 3000 : 8000),
      lowStepMs: o.quick ? 5000 : 20_000,
    },
  };

  const tmp = tempDir('sweep');
  const light = lightFetch({ maxSockets: 1024 });
  let group: NodeGroup | null = null;
  const rows: Row[] = [];
  const picks: Partial<Record<Setting['sweep'], Row>> = {};
  const confirmations: Confirmation[] = [];
  let next = 0;
  try {
    const realInputs: Uint8Array[] = loadVal(64);
    const standinInputs = Array.from({ length: 4096 }, (_, i) => standInInput(i));
    const home = await homeWithModels(`${tmp.dir}/home`, E2E_MODELS);

    /** One setting on a fresh group (a fresh one again after a peak step that went wrong): `runs` runs. */
    const measure = async (s: Setting, key: string, runs: number): Promise<Row> => {
      const models = s.sweep === 'inference' ? E2E_MODELS : Array(4).fill(STANDIN_MODEL);
      const inputs = s.sweep === 'inference' ? realInputs : standinInputs;
      const L = load[s.sweep];
      let starts = 0;
      let g!: NodeGroup;
      let apis: string[] = [];
      let send!: Send;
      const open = async () => {
        g = await startNodeGroup({
          dir: `${tmp.dir}/${key}-${starts++}`,
          models,
          home,
          name: 'sweep',
          nodeConfig: {
            engine: { ...ENGINE_DEFAULTS, maxBatch: s.maxBatch },
            replica: {
              ...GROUP_REPLICA,
              batchSize: s.batchSize,
              batchTimeoutMs: s.batchTimeoutMs,
              maxInFlightBatches: s.maxInFlight,
            },
          },
          log: o.log,
        });
        group = g;
        apis = g.file.nodes.map((n) => n.api);
        send =
          s.sweep === 'inference'
            ? sdkSender(
                new BenchClient(
                  {
                    genesis: g.group.genesis,
                    key: g.group.clientKey(),
                    nodes: g.file.nodes,
                    fetch: light.fetch,
                    coalesce: true,
                  },
                  makeVerifier(1),
                ),
                inputs,
              )
            : new BatchSender({
                genesis: g.group.genesis,
                key: g.group.clientKey(),
                nodes: g.file.nodes,
                fetch: light.fetch,
                inputs,
                maxBatch: L.clientBatch,
                lingerMs: LINGER_MS,
                timeoutMs: 30_000,
                verifier: makeVerifier(1),
              }).send;
        // Warm-up, discarded (warmupMs, bench/lib/part.ts: V8 compiles over the first minutes under load).
        const warm = await closedLoop(send, {
          concurrency: Math.min(L.conc, 256),
          durationMs: warmMs,
          firstIndex: 1,
        });
        if (s.sweep === 'inference' && load.inference.lowRate === 0) {
          // The inference rows' rate, from the first one's closed loop (a step of its own if the warm-up
          // was too short to tell).
          const ref =
            warmMs >= 10_000
              ? warm
              : await closedLoop(send, { concurrency: L.conc, durationMs: L.stepMs, firstIndex: 5_000_000 });
          load.inference.lowRate = Math.max(1, Math.round(ref.throughput * INFERENCE_RATE_SHARE));
          o.log(
            `  the inference rows' open-loop rate: ${load.inference.lowRate}/s (${INFERENCE_RATE_SHARE} of ${ref.throughput.toFixed(1)}/s in this row's closed loop at ${L.conc} in flight)`,
          );
        }
      };
      await open();
      const peaks: StepResult[] = [];
      const lows: StepResult[] = [];
      let batch = 0;
      let cpu = 0;
      let vc = 0;
      // Low load first (on a group that has not been overloaded yet), then the peak; a peak step that
      // changed views or left requests unanswered is followed by a fresh group.
      for (let r = 0; r < runs; r++) {
        await settleNodes(apis, light.fetch);
        next += 10_000_000;
        const c0 = await nodeCounters(apis, light.fetch);
        lows.push(
          await openLoop(send, {
            rate: L.lowRate,
            durationMs: 'lowStepMs' in L ? L.lowStepMs : L.stepMs,
            firstIndex: next,
          }),
        );
        const c1 = await nodeCounters(apis, light.fetch);
        vc += c1.viewChanges - c0.viewChanges;
        await settleNodes(apis, light.fetch);
        const c2 = await nodeCounters(apis, light.fetch);
        const meter = cpuMeter(g.pids);
        next += 10_000_000;
        const p = await closedLoop(send, {
          concurrency: L.conc,
          durationMs: L.stepMs,
          firstIndex: next,
        });
        const used = meter();
        const c3 = await nodeCounters(apis, light.fetch);
        peaks.push(p);
        batch += (c3.entries - c2.entries) / Math.max(1, c3.batches - c2.batches) / runs;
        cpu += used.others.reduce((a, b) => a + b, 0) / Math.max(1, p.ok) / runs;
        vc += c3.viewChanges - c2.viewChanges;
        if (r + 1 < runs && (c3.viewChanges > c2.viewChanges || p.unfinished > 0)) {
          o.log('  the peak step changed views or left requests unanswered: a fresh group for the next run');
          await g.stop();
          group = null;
          await open();
        }
      }
      await g.stop();
      group = null;
      const row: Row = {
        ...s,
        peak: spread(peaks.map((x) => x.throughput)),
        peakP50: spread(peaks.map((x) => x.latency.p50)),
        lowRate: L.lowRate,
        lowP50: spread(lows.map((x) => x.latency.p50)),
        lowP99: spread(lows.map((x) => x.latency.p99)),
        consensusBatch: batch,
        nodeCpuMs: cpu,
        viewChanges: vc,
        failed: [...peaks, ...lows].reduce((a, x) => a + x.failed, 0),
      };
      o.log(
        `  peak ${row.peak.median.toFixed(0)}/s (p50 ${row.peakP50.median.toFixed(0)} ms, consensus batches of ${batch.toFixed(0)}), ` +
          `at ${L.lowRate}/s p50 ${row.lowP50.median.toFixed(1)} ms p99 ${row.lowP99.median.toFixed(1)} ms` +
          `${vc ? `, ${vc} view change(s)` : ''}${row.failed ? `, ${row.failed} failed` : ''}`,
      );
      return row;
    };

    for (const [k, s] of settings.entries()) {
      o.log(`${k + 1}/${settings.length}: ${s.sweep}, ${label(s)}`);
      rows.push(await measure(s, `g${k}`, runs));
    }

    // The rule's picks, then each pick that is not the current default against it in interleaved pairs.
    for (const sweep of SWEEPS) {
      const rs = rows.filter((r) => r.sweep === sweep);
      const i = pickIndex(rs.map(measured), PICK_RULE);
      if (i >= 0) picks[sweep] = rs[i];
    }
    for (const sweep of SWEEPS) {
      const pick = picks[sweep];
      if (!pick) continue; // not run (--sweeps)
      const cur = currentSetting(sweep);
      const challenger = settingOf(pick);
      if (sameSetting(challenger, cur)) {
        confirmations.push({ sweep, pick: challenger, current: cur, pairs: [], verdict: null });
        continue;
      }
      if (confirmPairs === 0) continue;
      const pairs: ConfirmPair[] = [];
      for (let i = 0; i < confirmPairs; i++) {
        const pickFirst = i % 2 === 1;
        o.log(
          `confirming ${sweep}: pair ${i + 1}/${confirmPairs}, ${label(challenger)} against the current ${label(cur)}, ${pickFirst ? 'the pick' : 'the current default'} first`,
        );
        const first = await measure(pickFirst ? challenger : cur, `c-${sweep}-${i}-a`, 1);
        const second = await measure(pickFirst ? cur : challenger, `c-${sweep}-${i}-b`, 1);
        pairs.push(
          pickFirst
            ? { pickFirst, pick: first, current: second }
            : { pickFirst, pick: second, current: first },
        );
      }
      const v = verdict(
        pairs.map((x) => ({ pickFirst: x.pickFirst, pick: measured(x.pick), current: measured(x.current) })),
        PICK_RULE,
      );
      o.log(
        `  ${sweep}: the pick won ${v.wins} of ${v.pairs} pairs: ${v.adopt ? 'adopt it' : 'keep the default'}`,
      );
      confirmations.push({ sweep, pick: challenger, current: cur, pairs, verdict: v });
    }
  } finally {
    light.close();
    await (group as NodeGroup | null)?.stop();
    tmp.remove();
  }

  // ------------------------------------------------------------------ the defaults
  const consensusPick = picks.consensus;
  const pipelinePick = picks.pipeline;
  const inferencePick = picks.inference;
  const picked = (r: Row) => r === consensusPick || r === pipelinePick || r === inferencePick;
  const current = `replica batchSize ${CURRENT.batchSize}, batchTimeoutMs ${CURRENT.batchTimeoutMs} (idleBatchTimeoutMs ${CURRENT.idleBatchTimeoutMs} with nothing in flight), maxInFlightBatches ${CURRENT.maxInFlightBatches} (what \`group init\` writes); engine maxBatch ${ENGINE_DEFAULTS.maxBatch}, maxDelayMs ${ENGINE_DEFAULTS.maxDelayMs}`;

  const table = (sweep: Setting['sweep']) =>
    mdTable(
      [
        '<setting',
        'peak certified req/s',
        'p50 ms at peak',
        `p50 ms at ${load[sweep].lowRate}/s`,
        `p99 ms at ${load[sweep].lowRate}/s`,
        'consensus batch at peak',
        'node CPU-ms / req',
        'view changes',
        'failed',
      ],
      rows
        .filter((r) => r.sweep === sweep)
        .map((r) => [
          `${label(r)}${picked(r) ? ' ←' : ''}`,
          fmtSpread(r.peak, 0),
          fmtSpread(r.peakP50, 0),
          fmtSpread(r.lowP50, 1),
          fmtSpread(r.lowP99, 1),
          r.consensusBatch.toFixed(0),
          r.nodeCpuMs.toFixed(2),
          r.viewChanges,
          r.failed,
        ]),
    );
  const plot = linePlot({
    title: 'Batching: peak throughput against latency at low load',
    xLabel: 'peak certified requests per second (closed loop)',
    yLabel: 'p50 latency at a low fixed rate, ms',
    logY: true,
    series: [
      ...timeouts.map((t) => ({
        name: `stand-in, timeout ${t} ms`,
        points: rows
          .filter((r) => r.sweep === 'consensus' && r.batchTimeoutMs === t)
          .map((r) => ({ x: r.peak.median, y: r.lowP50.median })),
      })),
    ],
    caption: [
      `${m.cores} cores; ${o.command}; ${runs} run(s) per point (median); points along a line: batchSize ${sizes.join(', ')}`,
    ],
  });
  const plotInference = linePlot({
    title: 'Inference batching (four ImageNet models, one per node)',
    xLabel: 'peak certified requests per second (closed loop)',
    yLabel: `p99 latency at ${load.inference.lowRate}/s, ms`,
    series: [
      {
        name: 'maxBatch 1 → 32',
        points: rows
          .filter((r) => r.sweep === 'inference')
          .map((r) => ({ x: r.peak.median, y: r.lowP99.median })),
      },
    ],
    caption: [
      `${m.cores} cores; ${o.command}; ${runs} run(s) per point (median); points: maxBatch ${maxBatches.join(', ')}`,
    ],
  });

  // The confirmation pairs: each pick that is not the current default against it.
  const paired = confirmations.filter((c) => c.pairs.length > 0);
  const side = (r: Row) =>
    `${r.peak.median.toFixed(0)} / ${weighed(r).toFixed(1)}${r.viewChanges ? `, ${r.viewChanges} view change(s)` : ''}${r.failed ? `, ${r.failed} failed` : ''}`;
  const confirmTable = mdTable(
    [
      '<sweep',
      '<pick against the current default',
      'pair',
      '<first',
      'current: peak req/s / low-load ms',
      'pick: peak req/s / low-load ms',
      '<the rule takes',
    ],
    paired.flatMap((c) =>
      c.pairs.map((p, i) => [
        c.sweep,
        `${label(c.pick)} against ${label(c.current)}`,
        i + 1,
        p.pickFirst ? 'pick' : 'current',
        side(p.current),
        side(p.pick),
        pickTaken({ pickFirst: p.pickFirst, current: measured(p.current), pick: measured(p.pick) }, PICK_RULE)
          ? 'the pick'
          : 'the current',
      ]),
    ),
  );
  const outcome = (c: Confirmation): string =>
    c.verdict === null
      ? `${c.sweep}: the pick is the current default (${label(c.current)})`
      : c.verdict.adopt
        ? `${c.sweep}: **${label(c.pick)}** (won ${c.verdict.wins} of ${c.verdict.pairs} pairs: the run supports changing the default to it)`
        : `${c.sweep}: **${label(c.current)}** kept (the pick, ${label(c.pick)}, won ${c.verdict.wins} of ${c.verdict.pairs} pairs)`;
  const confirmText =
    confirmations.length === 0
      ? 'The picks were not checked against the current defaults (`--no-confirm`).'
      : [
          ...(paired.length > 0
            ? [
                `Each pick that is not the current default, against that default in ${confirmPairs} interleaved pair(s) (the current default first in odd pairs, the pick first in even ones), each setting on a fresh group measured once as above (the low-load figure is the one the rule weighs: the p50, for the real models the p99). The rule above, applied to each pair alone, takes one of the two; a pick replaces the default only if the rule takes it in every pair (if the two in truth perform alike, by chance with probability at most 2^−${confirmPairs}):`,
                '',
                confirmTable,
                '',
              ]
            : []),
          `Defaults this run supports: ${confirmations.map(outcome).join('; ')}.`,
        ].join('\n');

  const body = [
    `Machine: ${describeMachine(atEnd(m))}. Command: \`${o.command}\`${o.quick ? ' (quick run: a smaller grid, short steps, one run; not for comparison)' : ''}.`,
    `Each setting: a fresh 4-node group on loopback${warmMs > 0 ? `, first warmed up for ${warmMs / 1000} s (closed loop, discarded: V8 compiles the nodes' functions over the first minutes under load; warmupMs in bench/lib/part.ts)` : ''}; open loop at ${load.consensus.lowRate}/s (stand-in), ${load.pipeline.lowRate}/s (stand-in, pipeline depth) or ${load.inference.lowRate}/s ` +
      `(real models: ${INFERENCE_RATE_SHARE} of the throughput the first real-model row reached in its warm-up at ${load.inference.conc} in flight, about where the e2e part reads its p99 target) for the latency below the peak, then closed loop with ${load.consensus.conc} or ${load.inference.conc} requests in ` +
      `flight for the peak (a peak step that changed views is followed by a fresh group); ${runs} run(s) of ${load.consensus.stepMs / 1000} s each (real models: ${load.inference.lowStepMs / 1000} s at ${load.inference.lowRate}/s, ${load.inference.stepMs / 1000} s at the peak), ` +
      `median and min–max. Stand-in rows: client batches of up to ${load.consensus.clientBatch} ` +
      `(${LINGER_MS} ms linger), round-robin over the nodes. Real-model rows: the e2e part's client, the SDK sending each call to every node and coalescing the calls of one event-loop turn (\`coalesce\`). Every certificate verified.`,
    '',
    `**Consensus batching** (stand-in model; engine at its defaults):`,
    '',
    table('consensus'),
    '',
    '{plot:consensus}',
    '',
    `**Pipeline depth** (stand-in model; replica batchSize ${CURRENT.batchSize}, batchTimeoutMs ${CURRENT.batchTimeoutMs}; the primary proposes a new batch only while fewer than maxInFlightBatches of its proposals are unexecuted, so under load requests wait and batches grow):`,
    '',
    table('pipeline'),
    '',
    `**Inference batching** (the e2e part's four models, node k running ${E2E_MODELS.map((x) => `\`${x}\``).join(', ')} in turn, on val JPEGs; replica batchSize ${CURRENT.batchSize}, batchTimeoutMs ${CURRENT.batchTimeoutMs}):`,
    '',
    table('inference'),
    '',
    '{plot:inference}',
    '',
    `Chosen from this run (← above; the highest peak among the settings whose low-load p50 (for the real models: the p99 at ${load.inference.lowRate}/s, the e2e target's figure) is within ${Math.round((LATENCY_SLACK - 1) * 100)} % ` +
      `or ${LATENCY_SLACK_MS} ms of the best, without view changes or failures): ${[consensusPick, pipelinePick, inferencePick].map((r) => (r ? `**${label(r)}**` : '(not run)')).join(', ')}. Current defaults: ${current}.`,
    '',
    confirmText,
  ].join('\n');

  return {
    ...(only && only.length < 3 ? { partial: `--sweeps=${only.join(',')}` } : {}),
    json: {
      runs,
      stepMs,
      warmupMs: warmMs,
      load,
      rows,
      chosen: { consensus: consensusPick, pipeline: pipelinePick, inference: inferencePick },
      confirmPairs,
      confirmations,
      currentDefaults: { replica: { ...DEFAULT_REPLICA_CONFIG, ...GROUP_REPLICA }, engine: ENGINE_DEFAULTS },
    },
    table: `${table('consensus')}\n\n${table('pipeline')}\n\n${table('inference')}\n\n${confirmText}`,
    section: {
      heading: 'Batching sweep: consensus batch, batch timeout, inference batch',
      intro:
        'Consensus batch size × batch timeout and the pipeline depth (maxInFlightBatches) with the stand-in model, and the ' +
        "inference batch with the e2e part's four real models, each setting on a fresh 4-node group (`npm run bench -- sweep`).",
      body,
    },
    plots: [
      {
        name: 'consensus',
        svg: plot,
        alt: 'peak throughput against low-load latency per consensus batching setting',
      },
      {
        name: 'inference',
        svg: plotInference,
        alt: 'peak throughput against low-load latency per inference batch',
      },
    ],
  };
}
