/**
 * npm run bench:overload — does an honest group stay in its view when offered more than it can certify,
 * and serve again once the load falls? A fresh group of real node processes with the stand-in model
 * (bench/parts/protocol.ts `withGroup`: `group init`'s settings) per run: a closed-loop warm-up (256 in
 * flight), then open loop at `--high` requests/s (default 2,000: about twice a 10-node group's capacity
 * on 2 cores) and twice at `--low` (500/s). Client batches of up to 64 requests under one signature, sent
 * to one node (round robin), every certificate checked. Each run is repeated with each in-flight budget
 * of `--budgets` (the replica's `inFlightBudgetMs`; "default" is what `group init` writes, 0 turns the cap
 * off), interleaved round by round: the view changes per step are the figure that matters, and on this
 * shared machine they come in some runs and not in others, so count over rounds.
 *
 * Per step: certified requests, failures by code (OVERLOADED: refused by the nodes, never taken;
 * NO_CERTIFICATE: taken, not certified within the client's 5 s), p50 / p99 from each request's scheduled
 * send time, view changes (the most any node counted) and the requests the nodes refused with OVERLOADED
 * (all nodes, a refused request counted again at each retry).
 */

import { GROUP_REPLICA } from '../src/cli/group.ts';
import { standInInput } from '../src/node/standin-backend.ts';
import { type FlagSpecs, scriptFlags } from './lib/args.ts';
import { BatchSender, makeVerifier } from './lib/dropbear-load.ts';
import { nodeCounters } from './lib/extra.ts';
import { lightFetch } from './lib/http.ts';
import { closedLoop, openLoop } from './lib/load.ts';
import { describeMachine, machine } from './lib/machine.ts';
import { mdTable } from './lib/markdown.ts';
import { flag } from './lib/part.ts';
import { settleGroup, withGroup } from './parts/protocol.ts';

const FLAGS: FlagSpecs = {
  n: { kind: 'count', help: 'nodes in the group (10)' },
  high: { kind: 'number', value: 'RATE', help: 'the overload step, requests/s (2000)' },
  low: { kind: 'number', value: 'RATE', help: 'the two steps after it, requests/s (500)' },
  ms: { kind: 'number', value: 'MS', help: 'length of each step (5000)' },
  rounds: { kind: 'count', help: 'interleaved rounds (3, 1 with --quick)' },
  budgets: {
    kind: 'text',
    value: 'LIST',
    help: 'in-flight budgets to compare, ms or "default", comma-separated (default,0)',
  },
  quick: { kind: 'switch', help: 'one round, a short warm-up' },
};
const COMMAND = 'npm run bench:overload';
const given = scriptFlags(process.argv.slice(2), FLAGS, COMMAND);
const arg = (name: string, dflt: number): number => Number(flag(given, name) ?? dflt);
const quick = given.includes('--quick');
const N = arg('n', 10);
const HIGH = arg('high', 2000);
const LOW = arg('low', 500);
const MS = arg('ms', 5000);
const ROUNDS = arg('rounds', quick ? 1 : 3);
const WARM_MS = quick ? 5000 : 20_000;
const DRAIN_MS = 5000;

/** A budget: null for `group init`'s own. */
function parseBudgets(text: string): (number | null)[] {
  return text.split(',').map((b) => {
    if (b === 'default') return null;
    const v = b.trim() === '' ? Number.NaN : Number(b);
    if (!Number.isFinite(v) || v < 0) {
      console.error(`${COMMAND}: --budgets takes milliseconds ≥ 0 or "default", not "${b}"`);
      process.exit(2);
    }
    return v;
  });
}
const BUDGETS = parseBudgets(flag(given, 'budgets') ?? 'default,0');
const budgetLabel = (b: number | null) =>
  b === null ? `default (${GROUP_REPLICA.inFlightBudgetMs} ms)` : b === 0 ? 'off (0)' : `${b} ms`;

interface StepRow {
  budget: string;
  round: number;
  rate: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
  p50: number;
  p99: number;
  viewChanges: number;
  refused: number;
}

async function run(budget: number | null, round: number): Promise<StepRow[]> {
  const http = lightFetch({ maxSockets: 512 });
  const inputs = Array.from({ length: 1024 }, (_, i) => standInInput(i));
  const replica = budget === null ? undefined : { inFlightBudgetMs: budget };
  try {
    return await withGroup(N, { log: () => {}, replica }, async ({ g }) => {
      const apis = g.file.nodes.map((x) => x.api);
      const sender = new BatchSender({
        genesis: g.genesis,
        key: g.clientKey(),
        nodes: g.file.nodes,
        fetch: http.fetch,
        inputs,
        maxBatch: 64,
        lingerMs: 2,
        timeoutMs: 5000,
        verifier: makeVerifier(1),
      });
      await closedLoop(sender.send, { concurrency: 256, durationMs: WARM_MS, firstIndex: 1 });
      const rows: StepRow[] = [];
      let first = 1_000_000;
      for (const rate of [HIGH, LOW, LOW]) {
        await settleGroup(g, http.fetch);
        const c0 = await nodeCounters(apis, http.fetch);
        const r = await openLoop(sender.send, { rate, durationMs: MS, drainMs: DRAIN_MS, firstIndex: first });
        first += 1_000_000;
        const c1 = await nodeCounters(apis, http.fetch);
        const row: StepRow = {
          budget: budgetLabel(budget),
          round,
          rate,
          ok: r.ok,
          failed: r.failed,
          errors: r.errors,
          p50: r.latency.p50,
          p99: r.latency.p99,
          viewChanges: c1.viewChanges - c0.viewChanges,
          refused: c1.overloadRefusals - c0.overloadRefusals,
        };
        rows.push(row);
        console.error(
          `round ${round} budget ${row.budget} ${rate}/s: ${row.ok} certified, ${row.failed} failed, ${row.viewChanges} view changes`,
        );
      }
      return rows;
    });
  } finally {
    http.close();
  }
}

const m = machine();
console.log(`Machine: ${describeMachine(m)}.`);
console.log(
  `Command: ${COMMAND} -- --n ${N} --high ${HIGH} --low ${LOW} --ms ${MS} --rounds ${ROUNDS} --budgets ${BUDGETS.map((b) => (b === null ? 'default' : b)).join(',')}${quick ? ' --quick' : ''}. ${N} nodes, stand-in model; per run a fresh group, ${WARM_MS / 1000} s closed loop at 256 in flight, then ${MS / 1000} s open loop at ${HIGH}/s and twice at ${LOW}/s (each step drained for up to ${DRAIN_MS / 1000} s); client batches of up to 64 requests; budgets interleaved round by round.`,
);
const all: StepRow[] = [];
for (let round = 1; round <= ROUNDS; round++) for (const b of BUDGETS) all.push(...(await run(b, round)));

const num = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
console.log('');
console.log(
  mdTable(
    [
      '<in-flight budget',
      'round',
      'offered req/s',
      'certified',
      '<failed (by code)',
      'p50 ms',
      'p99 ms',
      'view changes',
      'requests refused OVERLOADED',
    ],
    all.map((r) => {
      const codes = Object.entries(r.errors)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ');
      return [
        r.budget,
        r.round,
        r.rate,
        r.ok,
        `${r.failed}${codes ? ` (${codes})` : ''}`,
        num(r.p50),
        num(r.p99),
        r.viewChanges,
        r.refused,
      ];
    }),
  ),
);
console.log('');
for (const b of BUDGETS) {
  const rows = all.filter((r) => r.budget === budgetLabel(b));
  const runsWithChange = new Set(rows.filter((r) => r.viewChanges > 0).map((r) => r.round)).size;
  const lowFailed = rows.filter((r) => r.rate === LOW).reduce((a, r) => a + r.failed, 0);
  console.log(
    `- ${budgetLabel(b)}: view changes in ${runsWithChange} of ${ROUNDS} run(s) (${rows.reduce((a, r) => a + r.viewChanges, 0)} in all); ${lowFailed} requests failed at ${LOW}/s after the overload.`,
  );
}
process.exit(0);
