/**
 * Command-line flags of the bench commands, checked before anything runs: a misspelt or misplaced flag,
 * or a value that is not what the flag takes, stops the command with a message naming it (exit 2) instead
 * of being ignored or read as NaN an hour into a run. Both `--name=value` and `--name value` are
 * accepted; what the commands hand on is always `--name=value` (bench/lib/part.ts, `flag`).
 */

export type FlagKind =
  /** A positive integer (or ≥ `min`, which may be 0). */
  | 'count'
  /** Milliseconds: a number ≥ 0. */
  | 'ms'
  /** A positive number. */
  | 'number'
  /** Positive integers, comma-separated. */
  | 'counts'
  /** Any non-empty text (a path, a name, a comma-separated list of names). */
  | 'text'
  /** One of `choices`, or several of them comma-separated with `list`. */
  | 'choice'
  /** No value. */
  | 'switch';

export interface FlagSpec {
  kind: FlagKind;
  help: string;
  choices?: readonly string[];
  /** With kind 'choice': a comma-separated list of choices. */
  list?: boolean;
  /** What the help shows for the value (default from the kind, e.g. COUNT). */
  value?: string;
  /** With kind 'count' or 'counts': the least value taken (default 1; 0 lets 0 through), and why. */
  min?: { value: number; why: string };
  /** With kind 'count' or 'counts': the largest value taken, and why. */
  max?: { value: number; why: string };
}

export type FlagSpecs = Record<string, FlagSpec>;

export class BenchArgError extends Error {
  readonly code = 'BENCH_BAD_ARGUMENT';
}

/** Why `value` is not what `spec` takes, or null. */
export function valueProblem(name: string, spec: FlagSpec, value: string): string | null {
  const isCount = (s: string) => /^\d+$/.test(s) && Number(s) >= (spec.min?.value === 0 ? 0 : 1);
  /** Why the count `s` is out of the spec's range, or null. */
  const outOfRange = (s: string): string | null => {
    const v = Number(s);
    if (spec.min && v < spec.min.value) return `${spec.min.value} or more (${spec.min.why}), not ${s}`;
    if (spec.max && v > spec.max.value) return `at most ${spec.max.value} (${spec.max.why}), not ${s}`;
    return null;
  };
  switch (spec.kind) {
    case 'count':
    case 'counts': {
      const counts = spec.kind === 'count' ? [value] : value.split(',');
      const integer = spec.min?.value === 0 ? 'an integer ≥ 0' : 'a positive integer';
      if (!counts.every(isCount))
        return spec.kind === 'count'
          ? `--${name} takes ${integer}, not "${value}"`
          : `--${name} takes positive integers separated by commas, not "${value}"`;
      const why = counts.map(outOfRange).find((w) => w !== null);
      return why ? `--${name} takes ${why}` : null;
    }
    case 'ms':
    case 'number': {
      const v = value.trim() === '' ? Number.NaN : Number(value);
      const ok = Number.isFinite(v) && (spec.kind === 'ms' ? v >= 0 : v > 0);
      return ok
        ? null
        : `--${name} takes ${spec.kind === 'ms' ? 'milliseconds (a number ≥ 0)' : 'a positive number'}, not "${value}"`;
    }
    case 'text':
      return value === '' ? `--${name} takes a value` : null;
    case 'choice': {
      const choices = spec.choices ?? [];
      const given = spec.list ? value.split(',') : [value];
      const bad = given.filter((g) => !choices.includes(g));
      return bad.length === 0
        ? null
        : `--${name} takes ${spec.list ? 'a comma-separated list of ' : 'one of '}${choices.join(', ')}; not "${bad.join(',')}"`;
    }
    case 'switch':
      return `--${name} takes no value`;
  }
}

/**
 * Splits a command line into positional words and flags, checking every flag against `specs`; returns
 * the flags as `--name=value` (or `--name` for switches). Throws BenchArgError for an unknown flag, a
 * missing value or a value the flag does not take.
 */
export function parseArgs(argv: readonly string[], specs: FlagSpecs): { words: string[]; flags: string[] } {
  const words: string[] = [];
  const flags: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('-')) {
      words.push(a);
      continue;
    }
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/s.exec(a);
    if (!m) throw new BenchArgError(`not a flag: "${a}" (flags are --name or --name=value)`);
    const [, name, inline] = m;
    const spec = specs[name];
    if (!spec) {
      const known = Object.keys(specs).sort();
      throw new BenchArgError(`unknown flag --${name}; flags here: ${known.map((k) => `--${k}`).join(' ')}`);
    }
    // The parts read the first of a repeated flag (bench/lib/part.ts, `flag`): `--n=4 --n=7` ran n = 4 alone.
    if (seen.has(name)) throw new BenchArgError(`--${name} is given twice`);
    seen.add(name);
    if (spec.kind === 'switch') {
      if (inline !== undefined) throw new BenchArgError(`--${name} takes no value`);
      flags.push(`--${name}`);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new BenchArgError(`--${name} needs a value`);
      value = next;
      i++;
    }
    const problem = valueProblem(name, spec, value);
    if (problem) throw new BenchArgError(problem);
    flags.push(`--${name}=${value}`);
  }
  return { words, flags };
}

/** One help line per flag, `  --name=VALUE  help`. */
export function flagHelp(specs: FlagSpecs, indent = '  '): string[] {
  const shown = (n: string, s: FlagSpec) =>
    s.kind === 'switch'
      ? `--${n}`
      : `--${n}=${s.value ?? (s.kind === 'choice' ? (s.choices ?? []).join('|') : s.kind === 'counts' ? 'A,B,…' : s.kind.toUpperCase())}`;
  const rows = Object.entries(specs).map(([n, s]) => [shown(n, s), s.help] as const);
  const w = Math.max(0, ...rows.map((r) => r[0].length));
  return rows.map(([f, h]) => `${indent}${f.padEnd(w)}  ${h}`);
}

/**
 * For a standalone bench script (no positional words): its flags as `--name=value`, or, on a bad command
 * line, the problem and a usage text on stderr and exit status 2.
 */
export function scriptFlags(argv: readonly string[], specs: FlagSpecs, command: string): string[] {
  // `--help` (or `-h`) asks for the usage: printed on stdout, status 0 (it was an unknown flag, status 2).
  if (!('help' in specs) && argv.some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(`${scriptHelp(specs, command)}\n`);
    process.exit(0);
  }
  try {
    const { words, flags } = parseArgs(argv, specs);
    if (words.length > 0) throw new BenchArgError(`unexpected argument "${words[0]}"`);
    return flags;
  } catch (e) {
    if (!(e instanceof BenchArgError)) throw e;
    scriptUsage(e.message, specs, command);
  }
}

/** A standalone bench script's usage text: the command and one line per flag. */
export function scriptHelp(specs: FlagSpecs, command: string): string {
  return `usage: ${command} -- [flags]\n${flagHelp(specs).join('\n')}`;
}

/** A standalone bench script's bad command line: `message` and a usage text on stderr, exit status 2. */
export function scriptUsage(message: string, specs: FlagSpecs, command: string): never {
  process.stderr.write(`${message}\n${scriptHelp(specs, command)}\n`);
  process.exit(2);
}

/**
 * The value of `--name` among a standalone script's flags (what scriptFlags returned) read through `parse`,
 * undefined when it is not given; a BenchArgError from `parse` ends the script as scriptUsage does.
 */
export function scriptFlagParsed<T>(
  given: readonly string[],
  name: string,
  parse: (text: string) => T,
  specs: FlagSpecs,
  command: string,
): T | undefined {
  const p = `--${name}=`;
  const text = given.find((a) => a.startsWith(p))?.slice(p.length);
  if (text === undefined) return undefined;
  try {
    return parse(text);
  } catch (e) {
    if (!(e instanceof BenchArgError)) throw e;
    scriptUsage(`--${name} ${e.message}`, specs, command);
  }
}
