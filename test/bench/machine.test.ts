import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { describeMachine, machine } from '../../bench/lib/machine.ts';

describe('machine', () => {
  it('names the commit the figures were measured on, and says when the working tree differed from it', () => {
    const m = machine();
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
    expect(m.code?.commit).toBe(head);
    const dirty =
      execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }) !== '';
    expect(m.code?.modified).toBe(dirty);
    const line = describeMachine(m);
    expect(line).toContain(`code at ${head.slice(0, 7)}`);
    expect(line.includes('uncommitted changes')).toBe(dirty);
    expect(describeMachine({ ...m, code: null })).not.toContain('code at');
    expect(m.cores).toBeGreaterThan(0);
  });
});
