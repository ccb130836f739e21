import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

/** bench/run.ts as `npm run bench` starts it, with only a command line that must not start any part. */
function bench(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/run.ts', ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

describe('npm run bench: the command line is checked before anything runs', () => {
  it('--help lists every part and its flags', () => {
    const r = bench('--help');
    expect(r.status).toBe(0);
    for (const p of ['e2e', 'protocol', 'wan', 'verify', 'sweep']) expect(r.out).toContain(`${p}`);
    expect(r.out).toContain('--conc-standin=A,B,…');
    expect(r.out).toContain('--durability=full|relaxed');
    expect(r.out).toContain('--max-batch=N');
    expect(r.out).toContain('--sweeps=consensus|pipeline|inference');
  });

  it('refuses a flag of another part, a misspelt flag and a bad value with status 2', () => {
    const other = bench('verify', '--conc=4');
    expect(other.status).toBe(2);
    expect(other.err).toContain('--conc is a flag of e2e, not of verify');
    const typo = bench('protocol', '--step=5000');
    expect(typo.status).toBe(2);
    expect(typo.err).toContain('unknown flag --step');
    const bad = bench('protocol', '--n', 'four');
    expect(bad.status).toBe(2);
    expect(bad.err).toContain('--n takes positive integers');
    const zero = bench('e2e', '--max-batch=0');
    expect(zero.status).toBe(2);
    expect(zero.err).toContain('--max-batch takes a positive integer, not "0"');
    const sweeps = bench('sweep', '--sweeps=inference,consensu');
    expect(sweeps.status).toBe(2);
    expect(sweeps.err).toContain('consensu');
    const part = bench('protocl');
    expect(part.status).toBe(2);
    expect(part.err).toContain('unknown part "protocl"');
  });
});
