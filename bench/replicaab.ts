/**
 * npm run bench:replicaab — two stand-in groups that differ in replica settings, at saturation (or, with
 * `--rate`, at a fixed open-loop rate), interleaved. Group A runs the protocol part's settings (bench/parts/protocol.ts `withGroup`: `group
 * init`'s replica settings and durability, the stand-in model); group B the same plus `--b-replica` (a
 * JSON object of replica settings, e.g. `{"receiptCommits":true}`), and `--a-replica` likewise for A.
 * Each round starts a fresh group of `--n` nodes for A, then for B (B first in every other round), warms
 * it up for `--warm-ms` and measures `--ms` of closed loop at `--in-flight` requests (with `--rate R`, of
 * open loop at R requests/s, after the same closed-loop warm-up) with the protocol
 * part's client (the SDK, client batch signing on 64 requests or what arrives within 2 ms, or one signature
 * per request with `--single`; every certificate verified). With `--wan`, each group is the wan part's
 * instead (bench/parts/wan.ts `startWanGroup`: 4 nodes over three emulated sites, 10, 30 and 60 ms one
 * way, its replica settings), the client at site A sending to the nodes there.
 *
 * Per round and group: certified requests/s, p50 and p99, the nodes' and the generator's CPU. Then per
 * group the median and range over rounds, and in how many rounds B certified more than A. Prints a
 * markdown table and writes no results file: a reading goes into BENCHMARKS.md by hand.
 */
import type { LoadedGroup } from '../src/cli/group.ts';
import { STANDIN_MODEL, standInInput } from '../src/node/standin-backend.ts';
import { type FlagSpecs, scriptFlagParsed, scriptFlags, scriptUsage } from './lib/args.ts';
import { Batcher, BenchClient, makeVerifier, sdkBatch, sdkSender } from './lib/dropbear-load.ts';
import { tempDir } from './lib/extra.ts';
import { lightFetch } from './lib/http.ts';
import { atEnd, describeMachine, machine } from './lib/machine.ts';
import { mdTable } from './lib/markdown.ts';
import { flag } from './lib/part.ts';
import { median } from './lib/stats.ts';
import { replicaPatch } from './lib/variant.ts';
import {
  CLIENT_BATCH,
  counters,
  LINGER_MS,
  peerTrafficPerRequest,
  settleGroup,
  step,
  type Target,
  withGroup,
} from './parts/protocol.ts';
import { atClientSite, startWanGroup } from './parts/wan.ts';

const FLAGS: FlagSpecs = {
  n: { kind: 'count', help: 'nodes per group (10)' },
  rounds: { kind: 'count', help: 'rounds, each A and B in alternating order (3)' },
  'in-flight': { kind: 'count', help: 'closed-loop requests in flight (256)' },
  rate: {
    kind: 'count',
    help: 'measure an open-loop step at this many requests/s instead of the closed loop (warm-up stays closed)',
  },
  ms: { kind: 'ms', help: 'measured closed loop per group and round (10000)' },
  'warm-ms': { kind: 'ms', help: 'closed-loop warm-up of each fresh group, discarded (15000)' },
  'a-replica': { kind: 'text', value: 'JSON', help: "replica settings over group A's (none)" },
  'b-replica': {
    kind: 'text',
    value: 'JSON',
    help: "replica settings over group B's (required unless --b-node-args)",
  },
  'a-node-args': {
    kind: 'text',
    value: 'FLAGS',
    help: "Node.js flags for group A's nodes, space-separated (none)",
  },
  'b-node-args': {
    kind: 'text',
    value: 'FLAGS',
    help: "Node.js flags for group B's nodes after the usual ones, e.g. '--max-semi-space-size=8' (none)",
  },
  single: { kind: 'switch', help: 'one client signature per request instead of batch signing' },
  wan: { kind: 'switch', help: "the wan part's groups: 4 nodes over three emulated sites" },
  quick: { kind: 'switch', help: 'a short run (n = 4, 1 round of 4 s, 4 s warm-up)' },
};
const COMMAND = 'npm run bench:replicaab';
const given = scriptFlags(process.argv.slice(2), FLAGS, COMMAND);
const quick = given.includes('--quick');
const SINGLE = given.includes('--single');
const WAN = given.includes('--wan');
const num = (name: string, dflt: number): number => Number(flag(given, name) ?? dflt);
if (WAN && flag(given, 'n') !== undefined && Number(flag(given, 'n')) !== 4) {
  process.stderr.write("--wan runs the wan part's 4 nodes: leave out --n\n");
  process.exit(2);
}
const N = WAN ? 4 : num('n', quick ? 4 : 10);
const ROUNDS = num('rounds', quick ? 1 : 3);
const IN_FLIGHT = num('in-flight', SINGLE ? 32 : 256);
/** An open-loop rate for the measured step (--rate): latency below saturation instead of the peak. */
const RATE = flag(given, 'rate') === undefined ? null : num('rate', 0);
const MS = num('ms', quick ? 4000 : 10_000);
const WARM_MS = num('warm-ms', quick ? 4000 : 15_000);

const patch = (name: string) => scriptFlagParsed(given, name, replicaPatch, FLAGS, COMMAND);
const A = patch('a-replica');
const B = patch('b-replica');
/** Node.js flags per group (--a-node-args, --b-node-args): each must look like a flag. */
const nodeArgs = (name: string): string[] => {
  const words = (flag(given, name) ?? '').split(/\s+/).filter(Boolean);
  const bad = words.find((w) => !/^--[a-z0-9-_]+(=\S+)?$/i.test(w));
  if (bad !== undefined)
    scriptUsage(
      `--${name}: ${JSON.stringify(bad)} is not a Node.js flag (--name or --name=value)`,
      FLAGS,
      COMMAND,
    );
  return words;
};
const A_ARGS = nodeArgs('a-node-args');
const B_ARGS = nodeArgs('b-node-args');
if (B === undefined && B_ARGS.length === 0)
  scriptUsage('--b-replica or --b-node-args is required', FLAGS, COMMAND);

interface Row {
  round: number;
  group: 'A' | 'B';
  perSec: number;
  p50: number;
  p99: number;
  failed: number;
  nodesPct: number;
  generatorPct: number;
  viewChanges: number | null;
  /** Encoded bytes the nodes sent each other per certified request (peerTrafficPerRequest). */
  peerBytes: number | null;
  /**
   * PRE-PREPAREs the nodes sent per batch executed and per peer: 1 when every proposal went once to each
   * peer, more with re-sends (the primary re-sends a slot still unexecuted after retransmitMs).
   */
  proposalsPerBatch: number | null;
}

/** A fresh group of the kind asked for, stopped after `fn`. */
async function inGroup<T>(
  replica: Record<string, number | boolean> | undefined,
  execArgv: string[],
  fn: (g: LoadedGroup, nodes: { id: number; api: string }[], pids: number[]) => Promise<T>,
): Promise<T> {
  if (!WAN)
    return withGroup(N, { log: () => {}, replica, execArgv }, ({ g, pids }) => fn(g, g.file.nodes, pids));
  const tmp = tempDir('replicaab');
  try {
    const w = await startWanGroup({
      dir: tmp.dir,
      models: Array(4).fill(STANDIN_MODEL),
      replica,
      execArgv,
      log: () => {},
    });
    try {
      return await fn(w.group.group, atClientSite(w.clientNodes), w.pids);
    } finally {
      await w.stop();
    }
  } finally {
    tmp.remove();
  }
}

async function measure(round: number, group: 'A' | 'B'): Promise<Row> {
  const http = lightFetch({ maxSockets: 256 });
  const inputs = Array.from({ length: 1024 }, (_, i) => standInInput(i));
  try {
    return await inGroup(group === 'A' ? A : B, group === 'A' ? A_ARGS : B_ARGS, async (g, nodes, pids) => {
      const client = new BenchClient(
        {
          genesis: g.genesis,
          nodes,
          key: g.clientKey(),
          sendTo: 1,
          timeoutMs: Math.max(10_000, MS),
          fetch: http.fetch,
        },
        makeVerifier(1),
      );
      const t: Target = {
        label: group,
        send: SINGLE
          ? sdkSender(client, inputs)
          : new Batcher(sdkBatch(client), inputs, CLIENT_BATCH, LINGER_MS).send,
        pids: () => pids,
        settle: () => settleGroup(g, http.fetch),
        counters: () => counters(g, http.fetch),
      };
      await step(t, { concurrency: IN_FLIGHT }, WARM_MS);
      const r = await step(t, RATE === null ? { concurrency: IN_FLIGHT } : { rate: RATE }, MS);
      return {
        round,
        group,
        perSec: r.throughput,
        p50: r.latency.p50,
        p99: r.latency.p99,
        failed: r.failed,
        nodesPct: r.cpu.servers,
        generatorPct: r.cpu.generator,
        viewChanges: r.viewChanges,
        peerBytes: peerTrafficPerRequest(r)?.total ?? null,
        proposalsPerBatch:
          r.peerSent && r.batches ? (r.peerSent.prePrepare?.messages ?? 0) / r.batches / (N - 1) : null,
      };
    });
  } finally {
    http.close();
  }
}

const started = machine();
console.log(
  `Command: ${COMMAND} -- ${process.argv.slice(2).join(' ')}. ${N} nodes${WAN ? " over the wan part's three sites" : ''}, stand-in model, ${SINGLE ? 'one client signature per request' : `client batch signing (${CLIENT_BATCH} requests or ${LINGER_MS} ms)`}, ${RATE === null ? `closed loop at ${IN_FLIGHT} in flight` : `open loop at ${RATE}/s`}, ${MS / 1000} s per group and round after ${WARM_MS / 1000} s of closed-loop warm-up at ${IN_FLIGHT} in flight on a fresh group; A: ${JSON.stringify(A ?? {})}${A_ARGS.length ? ` ${A_ARGS.join(' ')}` : ''}, B: ${JSON.stringify(B ?? {})}${B_ARGS.length ? ` ${B_ARGS.join(' ')}` : ''}; ${ROUNDS} round(s), ABBA….`,
);
const rows: Row[] = [];
for (let round = 1; round <= ROUNDS; round++)
  for (const group of round % 2 === 1 ? (['A', 'B'] as const) : (['B', 'A'] as const)) {
    const r = await measure(round, group);
    rows.push(r);
    console.error(
      `round ${round} ${group}: ${r.perSec.toFixed(0)}/s, p50 ${r.p50.toFixed(1)} p99 ${r.p99.toFixed(1)} ms, nodes ${r.nodesPct.toFixed(0)} % generator ${r.generatorPct.toFixed(0)} %, failed ${r.failed}`,
    );
  }
console.log(`Machine: ${describeMachine(atEnd(started))}.`);
console.log('');
console.log(
  mdTable(
    [
      'round',
      'group',
      'certified/s',
      'p50 ms',
      'p99 ms',
      'nodes CPU %',
      'generator CPU %',
      'failed',
      'view changes',
      'bytes between nodes / request',
      'proposals sent / batch and peer',
    ],
    rows.map((r) => [
      String(r.round),
      r.group,
      r.perSec.toFixed(0),
      r.p50.toFixed(1),
      r.p99.toFixed(1),
      r.nodesPct.toFixed(0),
      r.generatorPct.toFixed(0),
      String(r.failed),
      r.viewChanges === null ? '–' : String(r.viewChanges),
      r.peerBytes === null ? '–' : r.peerBytes.toFixed(0),
      r.proposalsPerBatch === null ? '–' : r.proposalsPerBatch.toFixed(2),
    ]),
  ),
);
const of = (g: 'A' | 'B', f: (r: Row) => number) => {
  const xs = rows.filter((r) => r.group === g).map(f);
  return `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;
};
const wins = rows.filter(
  (b) =>
    b.group === 'B' &&
    b.perSec > (rows.find((a) => a.group === 'A' && a.round === b.round)?.perSec ?? Infinity),
).length;
console.log('');
for (const g of ['A', 'B'] as const)
  console.log(
    `- ${g}: certified/s ${of(g, (r) => r.perSec)}, p99 ms ${of(g, (r) => r.p99)} (median and range over rounds)`,
  );
console.log(`- B certified more than A in ${wins} of ${ROUNDS} round(s).`);
process.exit(0);
