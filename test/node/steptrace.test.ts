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
      {
        type: 'execute',
        seq: 7,
        digest: id(0xd7),
        entries: [{ requestId: id(0xab) }, { requestId: id(0x01) }],
      },
      { type: 'certified', seq: 6 },
      { type: 'broadcast', msg: { kind: 'prePrepare', pp: { seq: 8, digest: id(0xd8) } } },
      { type: 'broadcast', msg: { kind: 'receiptSig', from: 1, seq: 7 } },
      { type: 'send', to: 0, msg: { kind: 'checkpoint', from: 1, seq: 8 } },
    ] as unknown as Action[];
    expect(describeStep(1234.56, 1, event, actions)).toBe(
      '1234.6 1 msg<2 prepare:7 => persist bc commit:7 send>3 forward#2 ' +
        'exec:7/d701020304050607#2[ab01020304050607,0101020304050607] cert:6 ' +
        'bc prePrepare:8/d801020304050607 bc receiptSig:7 send>0 checkpoint:8',
    );
    const request = { type: 'request' } as unknown as Event;
    const acc = [
      { type: 'accepted', requestId: id(0xff) },
      { type: 'infer', requests: [{ requestId: id(0xff) }] },
    ];
    expect(describeStep(1, 0, request, acc as unknown as Action[])).toBe(
      '1.0 0 request => acc:ff01020304050607 infer#1[ff01020304050607]',
    );
    const inferred = { type: 'inferred', results: [{ requestId: id(0xff) }] } as unknown as Event;
    expect(describeStep(2, 0, inferred, [])).toBe('2.0 0 inferred#1[ff01020304050607] => ');
  });

  it('writes 256 lines at a time and the rest on close; the stage parser reads them back', () => {
    const path = join(dir, 'trace.0');
    const t = new StepTrace(path, 0, 60_000);
    const tick = { type: 'tick' } as unknown as Event;
    for (let i = 0; i < 255; i++) t.step(tick, []);
    expect(readFileSync(path, 'utf8')).toBe(''); // created at start, nothing written yet
    t.step(tick, []);
    expect(readFileSync(path, 'utf8').split('\n').filter(Boolean)).toHaveLength(256);
    t.step(
      { type: 'request' } as unknown as Event,
      [{ type: 'accepted', requestId: id(1) }] as unknown as Action[],
    );
    t.close();
    const lines = readFileSync(path, 'utf8').split('\n').filter(Boolean);
    expect(lines).toHaveLength(257);
    expect(lines[256]).toMatch(/^\d+\.\d 0 request => acc:0101020304050607$/);
    expect(stageRows(lines, 1)).toEqual([]); // accepted, never executed: no row
  });

  it('creates its folder; refuses a path it cannot write at start; a later failed write ends the trace only', () => {
    const made = new StepTrace(join(dir, 'new', 'deeper', 'trace.0'), 0, 60_000);
    made.close();
    expect(readFileSync(made.path, 'utf8')).toBe('');
    const file = join(dir, 'a-file');
    new StepTrace(file, 0, 60_000).close();
    expect(() => new StepTrace(join(file, 'trace.0'), 0)).toThrow(
      expect.objectContaining({ code: 'TRACE_UNWRITABLE' }),
    );
    const sub = mkdtempSync(join(dir, 'gone-'));
    const errors: Error[] = [];
    const t = new StepTrace(join(sub, 'trace.1'), 1, 60_000, (e) => errors.push(e));
    rmSync(sub, { recursive: true });
    const tick = { type: 'tick' } as unknown as Event;
    for (let i = 0; i < 600; i++) t.step(tick, []); // two flushes due; the first fails
    t.close();
    expect(errors).toHaveLength(1);
    expect(errors[0].message).toMatch(/ENOENT/);
  });
});
