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
    expect(r.out).toContain('--durability=full|prepared|relaxed');
    expect(r.out).toContain('--max-batch=N');
    expect(r.out).toContain('--sweeps=consensus|pipeline|inference');
    expect(r.out).toContain('--confirm-pairs=COUNT');
    expect(r.out).toContain('--no-confirm ');
  });

  it('refuses a flag of another part, a misspelt flag and a bad value with status 2', () => {
    /** The command line `args` is refused with status 2 and a message containing `message`. */
    const refused = (message: string, ...args: string[]) => {
      const r = bench(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.err).toContain(message);
    };
    refused('--conc is a flag of e2e, not of verify', 'verify', '--conc=4');
    refused('unknown flag --step', 'protocol', '--step=5000');
    refused('--n takes positive integers', 'protocol', '--n', 'four');
    refused('--max-batch takes a positive integer, not "0"', 'e2e', '--max-batch=0');
    refused('consensu', 'sweep', '--sweeps=inference,consensu');
    refused('unknown part "protocl"', 'protocl');
  });
});
