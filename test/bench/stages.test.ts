// Latency stages from step traces (bench/lib/stages.ts) on a hand-written trace of a 4-node group.
import { describe, expect, it } from 'vitest';
import { stageGroups, stageRows, traceQuorum } from '../../bench/lib/stages.ts';

// Request aa.. reaches node 1 at t=100; the four nodes finish inferring it at 104, 106, 110, 130 (node 1
// again at 108: counted once); the primary (0) proposes seq 5 (digest d5) at 115; node 0 executes first at
// 119; node 1 holds the certificate at 126. Request bb.. is accepted and inferred but never executed: no row.
const TRACE = [
  '100.0 1 request => acc:aaaaaaaa infer#1[aaaaaaaa]',
  '101.0 1 request => acc:bbbbbbbb infer#1[bbbbbbbb]',
  '104.0 1 inferred#2[aaaaaaaa,bbbbbbbb] => bc results#2',
  '106.0 2 inferred#1[aaaaaaaa] => bc results#1',
  '108.0 1 inferred#1[aaaaaaaa] => bc results#1',
  '110.0 0 inferred#1[aaaaaaaa] => bc results#1',
  '115.0 0 tick => persist bc prePrepare:5/d5',
  '119.0 0 msg<2 commit:5 => exec:5/d5#1[aaaaaaaa]',
  '121.0 2 msg<1 commit:5 => exec:5/d5#1[aaaaaaaa]',
  '126.0 1 msg<3 receiptSig:5 => cert:5',
  '127.0 2 msg<3 receiptSig:5 => cert:5',
  '130.0 3 inferred#1[aaaaaaaa] => bc results#1',
  'garbage line',
];

describe('stageRows', () => {
  it('takes one request apart: accept, q-th and last inference, proposal, first execution, first certificate', () => {
    // Lines out of order across nodes are sorted by time.
    const rows = stageRows([...TRACE].reverse(), 3);
    expect(rows).toEqual([
      {
        id: 'aaaaaaaa',
        accept: 100,
        total: 26,
        acceptToInferQ: 10,
        inferQToInferAll: 20,
        inferQToPropose: 5,
        proposeToExecute: 4,
        executeToCertify: 7,
      },
    ]);
    // skipMs counts from the trace's first line (t=100): the request accepted then is warm-up at 1 ms.
    expect(stageRows(TRACE, 3, 1)).toEqual([]);
  });

  it('needs q inferences: with q = 4 the same request still counts (four nodes answered), with q = 5 not', () => {
    expect(stageRows(TRACE, 4)[0].acceptToInferQ).toBe(30);
    expect(stageRows(TRACE, 5)).toEqual([]);
  });

  it('tells a seq proposed again in a new view apart by its digest, and finds the certificate after execution', () => {
    const lines = [
      '90.0 0 tick => persist bc prePrepare:7/0dd', // view 0's batch 7, never executed
      '91.0 0 msg<1 receiptSig:7 => cert:7', // a certificate from an earlier run of the same files
      '100.0 1 request => acc:cc',
      '101.0 1 inferred#1[cc] => ',
      '102.0 2 inferred#1[cc] => ',
      '103.0 3 inferred#1[cc] => ',
      '150.0 1 msg<1 newView => persist bc prePrepare:7/ee7', // view 1's primary proposes 7 anew
      '153.0 1 msg<2 commit:7 => exec:7/ee7#1[cc]',
      '160.0 2 msg<3 receiptSig:7 => cert:7',
    ];
    const [r] = stageRows(lines, 3);
    expect([r.inferQToPropose, r.proposeToExecute, r.executeToCertify, r.total]).toEqual([47, 3, 7, 60]);
  });

  it('groups by total: means per group, the slowest 1 % last', () => {
    const lines: string[] = [];
    for (let i = 0; i < 100; i++) {
      const id = i.toString(16).padStart(8, '0');
      const t = 1000 * i;
      const slow = i === 99 ? 50 : 0;
      lines.push(
        `${t} 0 request => acc:${id}`,
        `${t + 1} 0 inferred#1[${id}] => `,
        `${t + 2} 0 tick => bc prePrepare:${i + 1}/ab`,
        `${t + 3 + slow} 0 msg<1 commit:${i + 1} => exec:${i + 1}/ab#1[${id}]`,
        `${t + 4 + slow} 0 msg<1 receiptSig:${i + 1} => cert:${i + 1}`,
      );
    }
    const groups = stageGroups(stageRows(lines, 1));
    expect(groups.map((g) => [g.label, g.count])).toEqual([
      ['all', 100],
      ['fastest half', 50],
      ['p50–p90', 40],
      ['p90–p99', 9],
      ['slowest 1 %', 1],
    ]);
    expect(groups[4].mean.total).toBe(54);
    expect(groups[4].mean.proposeToExecute).toBe(51);
    expect(groups[1].mean.total).toBe(4);
    expect(groups[0].mean.total).toBeCloseTo(4.5, 10);
  });
});

describe('traceQuorum', () => {
  it("is the group's quorum, ⌊(n + f)/2⌋ + 1 (quorumSize), also for groups larger than 3f + 1", () => {
    expect(traceQuorum(4)).toEqual({ f: 1, q: 3 });
    expect(traceQuorum(7)).toEqual({ f: 2, q: 5 });
    expect(traceQuorum(5)).toEqual({ f: 1, q: 4 });
    expect(traceQuorum(6)).toEqual({ f: 1, q: 4 });
    expect(traceQuorum(7, 1)).toEqual({ f: 1, q: 5 });
  });
});
