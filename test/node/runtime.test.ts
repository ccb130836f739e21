import { describe, expect, it } from 'vitest';
import { missingRuntimeFlags, NODE_EXEC_ARGV } from '../../src/node/runtime.ts';

describe('missingRuntimeFlags', () => {
  it('names every flag a bare `node` lacks, and none when all are given', () => {
    expect(missingRuntimeFlags([], '')).toEqual([...NODE_EXEC_ARGV]);
    expect(missingRuntimeFlags([...NODE_EXEC_ARGV], '')).toEqual([]);
  });

  it('counts flags from NODE_OPTIONS, with another value, or spelled with underscores', () => {
    expect(missingRuntimeFlags(['--initial-old-space-size=200'], '--max-semi-space-size=16')).toEqual([]);
    expect(missingRuntimeFlags(['--max_semi_space_size=32'], '')).toEqual(['--initial-old-space-size=100']);
    expect(missingRuntimeFlags(['--import', 'tsx'], '  --max-semi-space-size=32  ')).toEqual([
      '--initial-old-space-size=100',
    ]);
  });
});
