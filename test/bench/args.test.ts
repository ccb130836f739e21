import { describe, expect, it, vi } from 'vitest';
import {
  BenchArgError,
  type FlagSpecs,
  flagHelp,
  parseArgs,
  scriptFlags,
  valueProblem,
} from '../../bench/lib/args.ts';
import * as e2e from '../../bench/parts/e2e.ts';
import { partialOf, check as protocolCheck, flags as protocolFlags } from '../../bench/parts/protocol.ts';
import * as wan from '../../bench/parts/wan.ts';

const SPECS: FlagSpecs = {
  n: { kind: 'counts', help: 'group sizes' },
  runs: { kind: 'count', help: 'runs' },
  'step-ms': { kind: 'number', value: 'MS', help: 'step' },
  'warmup-ms': { kind: 'ms', help: 'warm-up' },
  modes: { kind: 'choice', choices: ['single', 'batch'], list: true, help: 'modes' },
  durability: { kind: 'choice', choices: ['full', 'relaxed'], help: 'durability' },
  'data-dir': { kind: 'text', help: 'dir' },
  profile: { kind: 'switch', help: 'profile' },
};

const problem = (argv: string[]): string => {
  try {
    parseArgs(argv, SPECS);
  } catch (e) {
    expect(e).toBeInstanceOf(BenchArgError);
    return (e as Error).message;
  }
  throw new Error('no error');
};

describe('bench command-line flags', () => {
  it('takes --name=value and --name value alike and hands on --name=value', () => {
    const r = parseArgs(
      ['protocol', '--n', '4,7', '--step-ms=2500', 'wan', '--profile', '--modes', 'batch', '--warmup-ms=0'],
      SPECS,
    );
    expect(r.words).toEqual(['protocol', 'wan']);
    expect(r.flags).toEqual(['--n=4,7', '--step-ms=2500', '--profile', '--modes=batch', '--warmup-ms=0']);
  });

  it('refuses an unknown flag, naming it and the known ones', () => {
    const m = problem(['--step=5000']);
    expect(m).toContain('unknown flag --step');
    expect(m).toContain('--step-ms');
  });

  it('refuses values a flag does not take', () => {
    expect(problem(['--runs=0'])).toContain('--runs takes a positive integer');
    expect(problem(['--runs=2.5'])).toContain('--runs takes a positive integer');
    expect(problem(['--n=4,,7'])).toContain('--n takes positive integers');
    expect(problem(['--step-ms=abc'])).toContain('--step-ms takes a positive number');
    expect(problem(['--step-ms=0'])).toContain('--step-ms takes a positive number');
    expect(problem(['--warmup-ms=-1'])).toContain('--warmup-ms takes milliseconds');
    expect(problem(['--modes=single,bach'])).toContain('not "bach"');
    expect(problem(['--durability=single'])).toContain('one of full, relaxed');
    expect(problem(['--durability=full,relaxed'])).toContain('one of full, relaxed');
    expect(problem(['--profile=yes'])).toContain('--profile takes no value');
    expect(problem(['--data-dir='])).toContain('--data-dir takes a value');
  });

  it('refuses a value flag without its value, and what is not a flag', () => {
    expect(problem(['--runs'])).toContain('--runs needs a value');
    expect(problem(['--runs', '--profile'])).toContain('--runs needs a value');
    expect(problem(['-n'])).toContain('not a flag');
  });

  // `--n=4 --n=7` ran n = 4 alone: the parts read the first of a repeated flag.
  it('refuses a flag given twice', () => {
    expect(problem(['--n=4', '--n', '7'])).toContain('--n is given twice');
    expect(problem(['--profile', '--profile'])).toContain('--profile is given twice');
  });

  // `npm run bench -- protocol --n=2` ran the baseline for minutes, then a group with f = 0.
  it("refuses protocol's group sizes below 4 or past what a genesis holds", () => {
    const n = (v: string) => valueProblem('n', protocolFlags.n, v);
    expect(n('2')).toContain('--n takes 4 or more (n = 3f + 1 with f ≥ 1), not 2');
    expect(n('4,3')).toContain('not 3');
    expect(n('4,100000')).toContain('at most');
    expect(n('4,7,10')).toBeNull();
    expect(n('abc')).toContain('positive integers');
  });

  // The default, 0, was refused ("a positive number"); 2.5 and 25 went through to fail in the nodes.
  it("e2e's --worker-nice takes the nice values 0 to 19", () => {
    const nice = (v: string) => valueProblem('worker-nice', e2e.flags['worker-nice'], v);
    expect(nice('0')).toBeNull();
    expect(nice('19')).toBeNull();
    expect(nice('20')).toContain('at most 19');
    expect(nice('2.5')).toContain('an integer ≥ 0');
    expect(nice('-1')).toContain('an integer ≥ 0');
  });

  // Both were refused only once the part ran: in a suite run, after the parts before it.
  it("e2e's --models and wan's --model are checked before any part runs", () => {
    expect(e2e.check?.(['--models=a,b'])).toContain('--models needs four models');
    expect(e2e.check?.(['--models=a,b,c,d'])).toBeNull();
    expect(e2e.check?.([])).toBeNull();
    expect(wan.check?.(['--model=nosuch'])).toContain('nosuch is not an ImageNet model');
    expect(wan.check?.(['--model=mobilenet_v1_0.25_128_quant'])).toBeNull();
    expect(wan.check?.([])).toBeNull();
  });

  // Both went unnoticed until the groups: --data-dir failed in mkdtemp after the baseline's minutes, and
  // --profile-dir without --profile was ignored.
  it("protocol's --data-dir must be a folder and --profile-dir needs --profile", () => {
    expect(protocolCheck?.(['--data-dir=/nonexistent/dropbear'])).toContain('is not a folder');
    expect(protocolCheck?.(['--data-dir=/tmp'])).toBeNull();
    expect(protocolCheck?.(['--profile-dir=/tmp/x'])).toContain('--profile-dir needs --profile');
    expect(protocolCheck?.(['--profile', '--profile-dir=/tmp/x'])).toBeNull();
  });

  it('accepts the edge values', () => {
    expect(valueProblem('warmup-ms', SPECS['warmup-ms'], '0')).toBeNull();
    expect(valueProblem('step-ms', SPECS['step-ms'], '0.5')).toBeNull();
    expect(valueProblem('modes', SPECS.modes, 'single,batch')).toBeNull();
  });

  it('lists every flag in the help with its value', () => {
    const help = flagHelp(SPECS).join('\n');
    expect(help).toContain('--step-ms=MS');
    expect(help).toContain('--durability=full|relaxed');
    expect(help).toContain('--n=A,B,…');
    expect(help).toMatch(/--profile\s+profile/);
  });

  // A script's --help was an unknown flag: the usage on stderr, status 2 (`npm run bench:soak -- --help`).
  it('--help (or -h) of a standalone script prints its usage on stdout with status 0', () => {
    for (const help of ['--help', '-h']) {
      const out: string[] = [];
      const write = vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
        out.push(String(s));
        return true;
      });
      const exit = vi.spyOn(process, 'exit').mockImplementation(((code?: number) => {
        throw new Error(`exit ${code}`);
      }) as never);
      try {
        expect(() =>
          scriptFlags(
            ['--rate', '5', help],
            { rate: { kind: 'count', help: 'per second' } },
            'npm run bench:x',
          ),
        ).toThrow('exit 0');
      } finally {
        write.mockRestore();
        exit.mockRestore();
      }
      expect(out.join('')).toBe('usage: npm run bench:x -- [flags]\n  --rate=COUNT  per second\n');
    }
  });
});

describe('protocol: a run of some group sizes or modes writes nothing', () => {
  // Two runs of `--n=4 --modes=batch` each rewrote the table of n = 4, 7 and 10 in three modes with one row.
  it('is partial unless it ran every mode at every size the whole run has', () => {
    expect(partialOf([4, 7, 10], ['single', 'shared', 'batch'], false)).toBeNull();
    expect(partialOf([10, 4, 7], ['batch', 'single', 'shared'], false)).toBeNull();
    expect(partialOf([4], ['single', 'shared', 'batch'], true)).toBeNull();
    expect(partialOf([4], ['batch'], false)).toBe('--n=4 --modes=batch');
    expect(partialOf([4, 7, 10], ['batch'], false)).toBe('--n=4,7,10 --modes=batch');
    expect(partialOf([4, 7], ['single', 'shared', 'batch'], false)).toBe(
      '--n=4,7 --modes=single,shared,batch',
    );
  });
});
