/**
 * A request's latency taken apart by protocol stage, from the step traces the nodes of a group write with
 * DROPBEAR_TRACE_STEPS (src/node/steptrace.ts). Per request (keyed by the first 8 bytes of its id):
 * - accept: the earliest step in which a node accepted it from a client (`request` → `acc:ID`);
 * - inferQ / inferAll: when the q-th and the last node first finished inferring it (`inferred#N[…ID…]`);
 * - proposed: when the primary broadcast the PRE-PREPARE of the batch (seq and digest) that executed it;
 * - executed / certified: the first node to decide to execute that batch, the first to hold its
 *   certificate.
 * Stages: acceptToInferQ, inferQToPropose (result signatures and broadcast, the vote wait, the batch
 * timeout, the pipeline), proposeToExecute (PREPARE, COMMIT and their fsyncs), executeToCertify (receipt
 * signatures), and the total from accept to certified. All from the nodes' clocks (one machine).
 */

import { quorumSize } from '../../src/protocol/messages.ts';

/**
 * The f and q of a group of `n` nodes (the number of trace files, or --n when some are missing), f the
 * most n allows unless given (--f): q is the group's quorum, quorumSize(n, f) = ⌊(n + f)/2⌋ + 1, which is
 * 2f + 1 only at n = 3f + 1 (until 2026-12-06 this table took 2f + 1, the q-th inference too early at n = 5
 * or 6).
 */
export function traceQuorum(n: number, f = Math.floor((n - 1) / 3)): { f: number; q: number } {
  return { f, q: quorumSize(n, f) };
}

export interface StageRow {
  id: string;
  accept: number;
  total: number;
  acceptToInferQ: number;
  inferQToInferAll: number;
  inferQToPropose: number;
  proposeToExecute: number;
  executeToCertify: number;
}

export const STAGES = [
  'total',
  'acceptToInferQ',
  'inferQToInferAll',
  'inferQToPropose',
  'proposeToExecute',
  'executeToCertify',
] as const;

const LINE = /^(\d+(?:\.\d+)?) (\d+) (.*?) => ?(.*)$/;

/**
 * Rows for every request seen from acceptance to certificate with inferences from at least q nodes, and
 * accepted at least `skipMs` after the trace's first line (warm-up); sorted by total. A batch is (seq, digest): a sequence number proposed again in a new view, or reused by another
 * run appended to the same files, is another batch. A batch re-proposed inside a NEW-VIEW has no traced
 * PRE-PREPARE of its own, so its requests get no row.
 */
export function stageRows(lines: Iterable<string>, q: number, skipMs = 0): StageRow[] {
  const accept = new Map<string, number>();
  /** Per request, when each node first finished inferring it. */
  const inferred = new Map<string, Map<number, number>>();
  const proposed = new Map<string, number>();
  const executed = new Map<string, { seq: number; at: number; ids: string[] }>();
  const certified = new Map<number, number[]>();
  const steps: { t: number; node: number; event: string; out: string }[] = [];
  for (const line of lines) {
    const m = LINE.exec(line);
    if (!m) continue;
    steps.push({ t: Number(m[1]), node: Number(m[2]), event: m[3], out: m[4] });
  }
  steps.sort((a, b) => a.t - b.t);
  const ids = (s: string) => (s === '' ? [] : s.split(','));
  for (const { t, node, event, out } of steps) {
    if (event === 'request')
      for (const a of out.matchAll(/acc:([0-9a-f]+)/g)) if (!accept.has(a[1])) accept.set(a[1], t);
    const inf = /^inferred#\d+\[([0-9a-f,]*)\]/.exec(event);
    if (inf)
      for (const id of ids(inf[1])) {
        let byNode = inferred.get(id);
        if (!byNode) inferred.set(id, (byNode = new Map()));
        if (!byNode.has(node)) byNode.set(node, t);
      }
    for (const p of out.matchAll(/bc prePrepare:(\d+\/[0-9a-f]+)/g))
      if (!proposed.has(p[1])) proposed.set(p[1], t);
    for (const e of out.matchAll(/exec:((\d+)\/[0-9a-f]+)#\d+\[([0-9a-f,]*)\]/g))
      if (!executed.has(e[1])) executed.set(e[1], { seq: Number(e[2]), at: t, ids: ids(e[3]) });
    for (const c of out.matchAll(/cert:(\d+)/g)) {
      const seq = Number(c[1]);
      const list = certified.get(seq);
      if (list) list.push(t);
      else certified.set(seq, [t]);
    }
  }
  const from = (steps[0]?.t ?? 0) + skipMs;
  const rows: StageRow[] = [];
  for (const [batch, ex] of executed) {
    const pp = proposed.get(batch);
    // The first certificate for that seq from the batch's first execution on (times are sorted).
    const cert = certified.get(ex.seq)?.find((t) => t >= ex.at);
    if (pp === undefined || cert === undefined) continue;
    for (const id of ex.ids) {
      const t0 = accept.get(id);
      const byNode = inferred.get(id);
      if (t0 === undefined || t0 < from || !byNode || byNode.size < q) continue;
      const sorted = [...byNode.values()].sort((a, b) => a - b);
      const infQ = sorted[q - 1];
      rows.push({
        id,
        accept: t0,
        total: cert - t0,
        acceptToInferQ: infQ - t0,
        inferQToInferAll: sorted[sorted.length - 1] - infQ,
        inferQToPropose: pp - infQ,
        proposeToExecute: ex.at - pp,
        executeToCertify: cert - ex.at,
      });
    }
  }
  return rows.sort((a, b) => a.total - b.total);
}

export interface StageGroup {
  label: string;
  count: number;
  /** Mean of each stage over the group's requests, ms. */
  mean: Record<(typeof STAGES)[number], number>;
}

/** Means over the fastest half, p50–p90, p90–p99, the slowest 1 % and all (rows sorted by total). */
export function stageGroups(rows: StageRow[]): StageGroup[] {
  const n = rows.length;
  const parts: [string, number, number][] = [
    ['all', 0, n],
    ['fastest half', 0, Math.floor(n / 2)],
    ['p50–p90', Math.floor(n / 2), Math.floor(0.9 * n)],
    ['p90–p99', Math.floor(0.9 * n), Math.floor(0.99 * n)],
    ['slowest 1 %', Math.floor(0.99 * n), n],
  ];
  const groups: StageGroup[] = [];
  for (const [label, from, to] of parts) {
    const part = rows.slice(from, to);
    if (part.length === 0) continue;
    const mean = {} as StageGroup['mean'];
    for (const k of STAGES) mean[k] = part.reduce((s, r) => s + r[k], 0) / part.length;
    groups.push({ label, count: part.length, mean });
  }
  return groups;
}
