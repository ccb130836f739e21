import { describe, expect, it } from 'vitest';
import { BenchArgError } from '../../bench/lib/args.ts';
import { nodeConfigPatch, parseEnvPairs, replicaPatch } from '../../bench/lib/variant.ts';

const message = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(BenchArgError);
    return (e as Error).message;
  }
  throw new Error('no error');
};

describe('what sets group B apart (bench:groupab)', () => {
  it('reads VAR=VALUE pairs, values empty or holding "="', () => {
    expect(parseEnvPairs('A=1')).toEqual({ A: '1' });
    expect(parseEnvPairs('PROBE_X=1,UV_THREADPOOL_SIZE=8,EMPTY=,EQ=a=b')).toEqual({
      PROBE_X: '1',
      UV_THREADPOOL_SIZE: '8',
      EMPTY: '',
      EQ: 'a=b',
    });
  });

  it('refuses a pair without "=" or with a name no shell takes', () => {
    expect(message(() => parseEnvPairs('A=1,B'))).toContain('"B"');
    expect(message(() => parseEnvPairs('1X=2'))).toContain('"1X=2"');
    expect(message(() => parseEnvPairs(''))).toContain('VAR=VALUE');
  });

  it('merges a replica or engine patch into the defaults and keeps the other keys as given', () => {
    const defaults = { replica: { voteWaitMs: 25, batchTimeoutMs: 60 }, engine: { maxBatch: 8 } };
    expect(nodeConfigPatch('{"replica":{"voteWaitMs":2}}', defaults)).toEqual({
      replica: { voteWaitMs: 2, batchTimeoutMs: 60 },
    });
    expect(nodeConfigPatch('{"engine":{"maxBatch":1},"durability":"relaxed"}', defaults)).toEqual({
      engine: { maxBatch: 1 },
      durability: 'relaxed',
    });
    expect(nodeConfigPatch('{"engine":{"maxDelayMs":0}}', defaults)).toEqual({
      engine: { maxBatch: 8, maxDelayMs: 0 },
    });
    // The defaults are not changed by a merge.
    expect(defaults).toEqual({ replica: { voteWaitMs: 25, batchTimeoutMs: 60 }, engine: { maxBatch: 8 } });
  });

  it('refuses anything but a JSON object, and a merged key that does not hold one', () => {
    const defaults = { replica: {} };
    expect(message(() => nodeConfigPatch('{durability', defaults))).toContain('is not JSON');
    expect(message(() => nodeConfigPatch('[1]', defaults))).toContain('must be a JSON object');
    expect(message(() => nodeConfigPatch('null', defaults))).toContain('must be a JSON object');
    expect(message(() => nodeConfigPatch('{"replica":3}', defaults))).toContain(
      '"replica" must be a JSON object',
    );
  });
});

describe('replica settings of group B (bench:replicaab)', () => {
  it('takes a JSON object of numbers and switches', () => {
    expect(replicaPatch('{"receiptCommits":true,"window":8}')).toEqual({ receiptCommits: true, window: 8 });
    expect(replicaPatch('{}')).toEqual({});
  });

  it('refuses anything else, naming what is wrong', () => {
    expect(message(() => replicaPatch('{receiptCommits:true}'))).toContain('not JSON');
    expect(message(() => replicaPatch('[1]'))).toContain('JSON object');
    expect(message(() => replicaPatch('null'))).toContain('JSON object');
    expect(message(() => replicaPatch('{"window":"8"}'))).toContain('"window"');
    expect(message(() => replicaPatch('{"replica":{"window":8}}'))).toContain('"replica"');
  });
});
