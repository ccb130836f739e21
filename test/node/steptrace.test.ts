// The step trace's line format (what bench/lib/stages.ts parses) and its file writing.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stageRows } from '../../bench/lib/stages.ts';
import type { Action, Event } from '../../src/consensus/replica.ts';
import { describeStep, StepTrace } from '../../src/node/steptrace.ts';

const id = (first: number) => Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? first : i));
const dir = mkdtempSync(join(tmpdir(), 'dropbear-trace-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('step trace lines', () => {
  it('names the event and every action but timers, with seqs, counts and short ids', () => {
    const digest = new Uint8Array(32);
    const event = {
      type: 'message',
      from: 2,
      msg: { kind: 'prepare', from: 2, view: 0, seq: 7, digest, signature: new Uint8Array(64) },
    } as unknown as Event;
    const actions = [
      { type: 'persist', record: { kind: 'commit', view: 0, seq: 7, digest } },
      {
        type: 'broadcast',
        msg: { kind: 'commit', from: 1, view: 0, seq: 7, digest, signature: new Uint8Array(64) },
      },
      { type: 'timer', at: 5 },
      { type: 'send', to: 3, msg: { kind: 'forward', requests: [{}, {}] } },
      { type: 'execute', seq: 7, entries: [{ requestId: id(0xab) }, { requestId: id(0x01) }] },
      { type: 'certified', seq: 6 },
    ] as unknown as Action[];
    expect(describeStep(1234.56, 1, event, actions)).toBe(
      '1234.6 1 msg<2 prepare:7 => persist bc commit:7 send>3 forward#2 exec:7#2[ab010203,01010203] cert:6',
    );
    const request = { type: 'request' } as unknown as Event;
    const acc = [
      { type: 'accepted', requestId: id(0xff) },
      { type: 'infer', requests: [{ requestId: id(0xff) }] },
    ];
    expect(describeStep(1, 0, request, acc as unknown as Action[])).toBe(
      '1.0 0 request => acc:ff010203 infer#1[ff010203]',
    );
    const inferred = { type: 'inferred', results: [{ requestId: id(0xff) }] } as unknown as Event;
    expect(describeStep(2, 0, inferred, [])).toBe('2.0 0 inferred#1[ff010203] => ');
  });

  it('writes 256 lines at a time and the rest on close; the stage parser reads them back', () => {
    const path = join(dir, 'trace.0');
    const t = new StepTrace(path, 0, 60_000);
    const tick = { type: 'tick' } as unknown as Event;
    for (let i = 0; i < 255; i++) t.step(tick, []);
    expect(() => readFileSync(path, 'utf8')).toThrow(); // nothing written yet
    t.step(tick, []);
    expect(readFileSync(path, 'utf8').split('\n').filter(Boolean)).toHaveLength(256);
    t.step(
      { type: 'request' } as unknown as Event,
      [{ type: 'accepted', requestId: id(1) }] as unknown as Action[],
    );
    t.close();
    const lines = readFileSync(path, 'utf8').split('\n').filter(Boolean);
    expect(lines).toHaveLength(257);
    expect(lines[256]).toMatch(/^\d+\.\d 0 request => acc:01010203$/);
    expect(stageRows(lines, 1)).toEqual([]); // accepted, never executed: no row
  });
});
