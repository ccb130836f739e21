import { describe, expect, it } from 'vitest';
import {
  connectionLimit,
  missingRuntimeFlags,
  NODE_EXEC_ARGV,
  openFileLimit,
  reservedFds,
} from '../../src/node/runtime.ts';

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

describe('connectionLimit', () => {
  const LIMITS = [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max processes             63448                63448                processes ',
    'Max open files            256                  524288               files     ',
    'Max locked memory         8388608              8388608              bytes     ',
  ].join('\n');

  it('reads the soft open-file limit (none when unlimited or unknown)', () => {
    expect(openFileLimit(LIMITS)).toBe(256);
    expect(openFileLimit(LIMITS.replace('256  ', 'unlimited'))).toBeNull();
    expect(openFileLimit('')).toBeNull();
    expect(openFileLimit()).toSatisfy((n: number | null) => n === null || n > 0); // this process's
  });

  it('lowers the configured connections to what the limit leaves beside the reserve, never below 1', () => {
    expect(connectionLimit(1024, null, 4)).toEqual({ max: 1024, lowered: false });
    expect(connectionLimit(1024, 65536, 4)).toEqual({ max: 1024, lowered: false });
    expect(connectionLimit(1024, 1024, 4)).toEqual({ max: 1024 - reservedFds(4), lowered: true });
    expect(connectionLimit(100, 256, 4)).toEqual({ max: 100, lowered: false });
    expect(connectionLimit(1024, 64, 4)).toEqual({ max: 1, lowered: true });
  });
});
