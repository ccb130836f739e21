/**
 * The arithmetic of `npm run bench:rates` (bench/rates.ts): what one open-loop step cost per certified
 * request, from the step's counters (bench/parts/protocol.ts `step`).
 */
import type { PeerTraffic } from '../parts/protocol.ts';
import type { StageRow } from './stages.ts';

/** One rate's figures, per certified request unless named otherwise. */
export interface RateRow {
  offered: number;
  perSec: number;
  p50: number;
  p99: number;
  failed: number;
  /** Requests per consensus batch executed (node 0's count); NaN without counters. */
  perBatch: number;
  /** Requests per client batch (one signature, one POST). */
  perClientBatch: number;
  /** CPU-ms per certified request: the nodes' main threads, their other threads, the load generator. */
  mainMs: number;
  otherMs: number;
  generatorMs: number;
  /** Cores the nodes kept busy over the step (all their threads). */
  nodeCores: number;
  /** Messages the nodes sent each other, by kind, largest first. */
  messages: [string, number][];
  messagesTotal: number;
}

/** Messages per certified request by kind, largest first (kinds under 0.005 per request left out). */
export function messagesPerRequest(sent: PeerTraffic | null, ok: number): [string, number][] {
  if (!sent || ok <= 0) return [];
  return Object.entries(sent)
    .map(([kind, t]): [string, number] => [kind, t.messages / ok])
    .filter(([, m]) => m >= 0.005)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
}

export interface StepFigures {
  offered: number;
  ok: number;
  failed: number;
  throughput: number;
  latency: { p50: number; p99: number };
  /** % of one core over the step (bench/lib/load.ts cpuMeter): all node threads, their main threads. */
  cpu: { generator: number; servers: number; serverMains: number };
  batches: number | null;
  peerSent: PeerTraffic | null;
}

/** The row of one step; `clientBatches`: the client batches sent during it. */
export function rateRow(s: StepFigures, clientBatches: number): RateRow {
  // % of a core at `throughput` requests/s: 10 × % / throughput = CPU-ms per request.
  const per = (pct: number) => (s.throughput > 0 ? (10 * pct) / s.throughput : Number.NaN);
  const messages = messagesPerRequest(s.peerSent, s.ok);
  return {
    offered: s.offered,
    perSec: s.throughput,
    p50: s.latency.p50,
    p99: s.latency.p99,
    failed: s.failed,
    perBatch: s.batches ? s.ok / s.batches : Number.NaN,
    perClientBatch: clientBatches > 0 ? s.ok / clientBatches : Number.NaN,
    mainMs: per(s.cpu.serverMains),
    otherMs: per(s.cpu.servers - s.cpu.serverMains),
    generatorMs: per(s.cpu.generator),
    nodeCores: s.cpu.servers / 100,
    messages,
    messagesTotal: messages.reduce((a, [, m]) => a + m, 0),
  };
}

/** The stage rows of requests first accepted in [from, to) (epoch ms, the traces' clock). */
export function rowsAcceptedIn(rows: readonly StageRow[], from: number, to: number): StageRow[] {
  return rows.filter((r) => r.accept >= from && r.accept < to);
}
