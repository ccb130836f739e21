/**
 * npm run bench:groupab — two e2e groups that differ in one thing, at the same fixed load, interleaved.
 * Group A runs as `group init` writes it (the e2e part's four models and engine settings, group init's
 * ledger durability: prepared since 2026-12-03, full before); group B the same plus `--b-config` (JSON merged into every node config; a `replica` or
 * `engine` object in it is merged into group init's replica settings or the engine settings below) and `--b-env` (VAR=VALUE pairs, comma-separated,
 * added to B's node processes' environment: a switch read by a probe in the code under test). Both start
 * side by side and each is idle while the other runs. After a closed-loop warm-up of each (8 in flight,
 * `--warm-ms`), every round drives A then B, or B then A (ABBA…), at `--rate` images/s open loop for
 * `--ms`, with the e2e part's certified client (the SDK, coalescing, every certificate verified).
 *
 * Per round: answered, p50 and p99, the nodes' CPU per image (all threads, main threads). Per group, all
 * rounds pooled: p50 / p90 / p99, and the ratio of B's p99 to A's with a 95 % interval from a block
 * bootstrap (one-second blocks, bench/lib/stats.ts), plus the WAL fsyncs (count and mean, from each node's
 * /metrics). Prints a markdown table and writes no results file: a reading goes into BENCHMARKS.md by hand.
 * What an A/B of node code needs (e.g. a probe behind an environment switch) is the caller's to add.
 */
import { GROUP_REPLICA } from '../src/cli/group.ts';
import { DropbearClient } from '../src/client/index.ts';
import { ENGINE_DEFAULTS } from '../src/inference/engine.ts';
import { type FlagSpecs, scriptFlagParsed, scriptFlags } from './lib/args.ts';
import {
  E2E_MODELS,
  homeWithModels,
  loadVal,
  type NodeGroup,
  settleNodes,
  startNodeGroup,
  tempDir,
} from './lib/extra.ts';
import { lightFetch } from './lib/http.ts';
import { closedLoop, type LatencySample, openLoop } from './lib/load.ts';
import { atEnd, describeMachine, machine } from './lib/machine.ts';
import { mdTable } from './lib/markdown.ts';
import { flag } from './lib/part.ts';
import { cpuMeter } from './lib/procs.ts';
import { blocksBySecond, bootstrapPercentileRatio, median, percentiles } from './lib/stats.ts';
import { nodeConfigPatch, parseEnvPairs } from './lib/variant.ts';

const FLAGS: FlagSpecs = {
  rate: { kind: 'number', help: 'images per second, open loop (18: about half of the e2e baseline peak)' },
  ms: { kind: 'ms', help: 'each round per group (30000)' },
  rounds: { kind: 'count', help: 'rounds, each A and B in alternating order (4)' },
  'warm-ms': { kind: 'ms', help: 'closed-loop warm-up per group, discarded (20000)' },
  'b-config': { kind: 'text', value: 'JSON', help: "merged into group B's node configs" },
  'b-env': { kind: 'text', value: 'VAR=VALUE,…', help: "added to group B's node processes' environment" },
  quick: { kind: 'switch', help: 'a short run (2 rounds of 5 s, 5 s warm-up)' },
};
const COMMAND = 'npm run bench:groupab';
const given = scriptFlags(process.argv.slice(2), FLAGS, COMMAND);
const quick = given.includes('--quick');
const num = (name: string, dflt: number): number => Number(flag(given, name) ?? dflt);
const RATE = num('rate', 18);
const MS = num('ms', quick ? 5000 : 30_000);
const ROUNDS = num('rounds', quick ? 2 : 4);
const WARM_MS = num('warm-ms', quick ? 5000 : 20_000);

/** A flag's value through `parse` (a clear error and exit status 2 for a bad one), or `dflt`. */
const parsed = <T>(name: string, parse: (text: string) => T, dflt: T): T =>
  scriptFlagParsed(given, name, parse, FLAGS, COMMAND) ?? dflt;

/** The engine settings the e2e part runs (as a node runs them by default). */
const ENGINE = {
  intraOpThreads: ENGINE_DEFAULTS.intraOpThreads,
  maxBatch: ENGINE_DEFAULTS.maxBatch,
  maxDelayMs: ENGINE_DEFAULTS.maxDelayMs,
};
const B_CONFIG = parsed(
  'b-config',
  (t) => nodeConfigPatch(t, { replica: GROUP_REPLICA, engine: ENGINE }),
  {},
);
const B_ENV = parsed('b-env', parseEnvPairs, {});

interface Round {
  round: number;
  group: 'A' | 'B';
  ok: number;
  failed: number;
  p50: number;
  p99: number;
  cpuMs: number;
  mainMs: number;
}

/** WAL fsyncs of one node since it started, from its Prometheus text (dropbear_ledger_sync_seconds). */
async function syncsOf(api: string, fetchImpl: typeof fetch): Promise<{ count: number; sumS: number }> {
  const text = await (await fetchImpl(`${api}/metrics`)).text();
  const read = (name: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`dropbear_ledger_sync_seconds_${name} `));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };
  return { count: read('count'), sumS: read('sum') };
}

const started = machine();
const images = loadVal();
const tmp = tempDir('groupab');
const http = lightFetch({ maxSockets: 512 });
const groups: Partial<Record<'A' | 'B', NodeGroup>> = {};
try {
  const home = await homeWithModels(`${tmp.dir}/home`, E2E_MODELS);
  const start = (sub: string, patch: Record<string, unknown>, env?: Record<string, string>) =>
    startNodeGroup({
      dir: `${tmp.dir}/${sub}`,
      models: E2E_MODELS,
      home,
      name: 'groupab',
      // B's `engine`, if any, is ENGINE with its changes (nodeConfigPatch).
      nodeConfig: { engine: ENGINE, ...patch },
      env,
      log: (l) => console.log(l),
    });
  console.log(`starting group A and group B (${JSON.stringify(B_CONFIG)}, env ${JSON.stringify(B_ENV)})`);
  groups.A = await start('a', {});
  groups.B = await start('b', B_CONFIG, B_ENV);
  const clientOf = (g: NodeGroup) =>
    new DropbearClient({
      genesis: g.group.genesis,
      nodes: g.file.nodes,
      key: g.group.clientKey(),
      fetch: http.fetch,
      coalesce: true,
    });
  const clients = { A: clientOf(groups.A), B: clientOf(groups.B) };
  const send = (k: 'A' | 'B') => async (i: number) => {
    await clients[k].infer(images[i % images.length]);
  };
  let next = 0;
  for (const k of ['A', 'B'] as const) {
    if (WARM_MS > 0) await closedLoop(send(k), { concurrency: 8, durationMs: WARM_MS, firstIndex: next });
    next += 1_000_000;
  }
  const rounds: Round[] = [];
  const samples: Record<'A' | 'B', LatencySample[][]> = { A: [], B: [] };
  for (let r = 0; r < ROUNDS; r++)
    for (const k of r % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const)) {
      const g = groups[k]!;
      await settleNodes(
        g.file.nodes.map((n) => n.api),
        http.fetch,
      );
      const meter = cpuMeter(g.pids);
      const got: LatencySample[] = [];
      const x = await openLoop(send(k), { rate: RATE, durationMs: MS, firstIndex: next, samples: got });
      next += 1_000_000;
      const c = meter();
      const sum = (a: number[]) => a.reduce((s, v) => s + v, 0);
      const answered = Math.max(1, x.ok);
      samples[k].push(got);
      const row: Round = {
        round: r + 1,
        group: k,
        ok: x.ok,
        failed: x.failed,
        p50: x.latency.p50,
        p99: x.latency.p99,
        cpuMs: sum(c.others) / answered,
        mainMs: sum(c.mains) / answered,
      };
      rounds.push(row);
      console.log(
        `round ${row.round} ${k}: ${row.ok} answered, ${row.failed} failed, p50 ${row.p50.toFixed(1)} p99 ${row.p99.toFixed(1)} ms, nodes ${row.cpuMs.toFixed(1)} CPU-ms/image (main threads ${row.mainMs.toFixed(1)})`,
      );
    }
  const syncs: Record<'A' | 'B', { count: number; meanMs: number }> = {
    A: { count: 0, meanMs: 0 },
    B: { count: 0, meanMs: 0 },
  };
  for (const k of ['A', 'B'] as const) {
    const all = await Promise.all(groups[k]!.file.nodes.map((n) => syncsOf(n.api, http.fetch)));
    const count = all.reduce((s, x) => s + x.count, 0);
    syncs[k] = { count, meanMs: count > 0 ? (1000 * all.reduce((s, x) => s + x.sumS, 0)) / count : 0 };
  }
  const end = atEnd(started);
  const blocks = (k: 'A' | 'B') => samples[k].flatMap((run) => blocksBySecond(run));
  const interval = bootstrapPercentileRatio(blocks('B'), blocks('A'), 99);
  const pooled = (k: 'A' | 'B') => percentiles(samples[k].flat().map((s) => s.ms));
  const of = (k: 'A' | 'B') => rounds.filter((r) => r.group === k);
  console.log('');
  console.log(
    `Machine: ${describeMachine(end)}. Command: \`${COMMAND} -- ${process.argv.slice(2).join(' ')}\`. Group B: config ${JSON.stringify(B_CONFIG)}, environment ${JSON.stringify(B_ENV)}. ${ROUNDS} round(s) of ${MS} ms per group at ${RATE} images/s (open loop), order A B, B A, …, after ${WARM_MS} ms at 8 in flight per group (discarded). Models ${E2E_MODELS.join(', ')}; engine ${JSON.stringify(ENGINE)}.`,
  );
  console.log('');
  console.log(
    mdTable(
      [
        'round',
        '<group',
        'answered',
        'failed',
        'p50 ms',
        'p99 ms',
        'nodes CPU-ms / image',
        'of it, main threads',
      ],
      rounds.map((r) => [
        String(r.round),
        r.group,
        String(r.ok),
        String(r.failed),
        r.p50.toFixed(1),
        r.p99.toFixed(1),
        r.cpuMs.toFixed(1),
        r.mainMs.toFixed(1),
      ]),
    ),
  );
  console.log('');
  console.log(
    mdTable(
      [
        '<group',
        'answers',
        'p50 / p90 / p99 ms, pooled',
        'rounds with the lower p99',
        'CPU-ms / image (median of rounds)',
        'main threads',
        'WAL fsyncs, mean ms',
      ],
      (['A', 'B'] as const).map((k) => {
        const p = pooled(k);
        const other = k === 'A' ? 'B' : 'A';
        const wins = of(k).filter((r, i) => r.p99 < of(other)[i].p99).length;
        return [
          k,
          String(samples[k].flat().length),
          `${p.p50.toFixed(1)} / ${p.p90.toFixed(1)} / ${p.p99.toFixed(1)}`,
          `${wins} of ${ROUNDS}`,
          median(of(k).map((r) => r.cpuMs)).toFixed(1),
          median(of(k).map((r) => r.mainMs)).toFixed(1),
          `${syncs[k].count} (${syncs[k].meanMs.toFixed(2)})`,
        ];
      }),
    ),
  );
  console.log('');
  console.log(
    `p99 of B over A, pooled: ${interval.ratio.toFixed(2)} (95 % interval ${interval.lo.toFixed(2)}–${interval.hi.toFixed(2)}, block bootstrap).`,
  );
} finally {
  await groups.A?.stop();
  await groups.B?.stop();
  tmp.remove();
}
