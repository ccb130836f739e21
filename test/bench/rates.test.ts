import { describe, expect, it } from 'vitest';
import { messagesPerRequest, rateRow, rowsAcceptedIn, type StepFigures } from '../../bench/lib/rates.ts';
import type { StageRow } from '../../bench/lib/stages.ts';

const step = (o: Partial<StepFigures> = {}): StepFigures => ({
  offered: 1000,
  ok: 8000,
  failed: 0,
  throughput: 1000,
  latency: { p50: 40, p99: 150 },
  cpu: { generator: 25, servers: 160, serverMains: 130 },
  batches: 200,
  peerSent: {
    results: { messages: 16_000, bytes: 1 },
    forward: { messages: 4000, bytes: 1 },
    prepare: { messages: 1800, bytes: 1 },
    fetch: { messages: 8, bytes: 1 },
  },
  ...o,
});

describe('messagesPerRequest', () => {
  it('divides by the certified requests, largest first, and leaves out kinds under 0.005 per request', () => {
    expect(messagesPerRequest(step().peerSent, 8000)).toEqual([
      ['results', 2],
      ['forward', 0.5],
      ['prepare', 0.225],
    ]);
  });
  it('is empty without counters or certified requests', () => {
    expect(messagesPerRequest(null, 10)).toEqual([]);
    expect(messagesPerRequest(step().peerSent, 0)).toEqual([]);
  });
  it('orders equal counts by kind, so the table does not depend on the counters order', () => {
    const sent = { b: { messages: 10, bytes: 0 }, a: { messages: 10, bytes: 0 } };
    expect(messagesPerRequest(sent, 10).map(([k]) => k)).toEqual(['a', 'b']);
  });
});

describe('rateRow', () => {
  it('turns % of a core at the certified rate into CPU-ms per request, and counts batches', () => {
    const r = rateRow(step(), 1600);
    // 130 % of a core at 1,000/s: 1.3 CPU-ms per request; 30 % more in the other threads.
    expect(r.mainMs).toBeCloseTo(1.3);
    expect(r.otherMs).toBeCloseTo(0.3);
    expect(r.generatorMs).toBeCloseTo(0.25);
    expect(r.nodeCores).toBeCloseTo(1.6);
    expect(r.perBatch).toBe(40);
    expect(r.perClientBatch).toBe(5);
    expect(r.messagesTotal).toBeCloseTo(2.725);
    expect(r.messages[0]).toEqual(['results', 2]);
  });
  it('reads n/a (NaN) rather than a number it does not have', () => {
    const r = rateRow(step({ batches: null, throughput: 0, peerSent: null }), 0);
    expect(r.perBatch).toBeNaN();
    expect(r.perClientBatch).toBeNaN();
    expect(r.mainMs).toBeNaN();
    expect(r.messagesTotal).toBe(0);
  });
});

describe('rowsAcceptedIn', () => {
  it('keeps the requests first accepted inside [from, to)', () => {
    const row = (accept: number): StageRow => ({
      id: String(accept),
      accept,
      total: 1,
      acceptToInferQ: 0,
      inferQToInferAll: 0,
      inferQToPropose: 0,
      proposeToExecute: 0,
      executeToCertify: 0,
    });
    const rows = [99, 100, 150, 199.9, 200].map(row);
    expect(rowsAcceptedIn(rows, 100, 200).map((r) => r.accept)).toEqual([100, 150, 199.9]);
  });
});
