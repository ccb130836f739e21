/**
 * npm run bench [-- <part>… ] [--quick] [--write] [part flags]
 *
 * Runs the benchmark parts (bench/parts/<part>.ts) by name, in the suite's order when none is named;
 * each prints a table, writes bench/results/<part>.json and its plots (bench/results/<part>-*.svg) and
 * rewrites its section of BENCHMARKS.md (between `<!-- part:begin -->` and `<!-- part:end -->`).
 * --quick: a smoke run (short steps, few runs) that writes nothing unless --write is given too; what it
 * writes is labelled as a quick run.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BenchArgError, type FlagSpecs, flagHelp, parseArgs } from './lib/args.ts';
import { cleanupAll } from './lib/cleanup.ts';
import { atEnd, describeMachine, machine } from './lib/machine.ts';
import { rewriteSection } from './lib/markdown.ts';
import { COMMON_FLAGS, type Part, type PartOptions } from './lib/part.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS = join(ROOT, 'bench', 'results');
const PARTS_DIR = join(ROOT, 'bench', 'parts');
/** The suite, in the order `npm run bench` runs it. */
const SUITE = ['e2e', 'protocol', 'wan', 'verify', 'sweep'];
/**
 * Each part is bounded: past this, child processes are stopped and the run exits 124. Per part rather than
 * for the whole run, which once had an hour: on 2026-12-03's slow spells e2e took ~11 minutes, protocol ~11,
 * wan ~7, and the sweep 1,012 s without its confirmation pairs and 1,675 s with them (bench/results,
 * `seconds`), so the suite came within minutes of the hour.
 */
const PART_LIMIT_MS = 90 * 60_000;
let watchdog: NodeJS.Timeout | null = null;

/** (Re)starts the bound for the part `name`. */
function armWatchdog(name: string): void {
  if (watchdog) clearTimeout(watchdog);
  watchdog = setTimeout(async () => {
    process.stderr.write(`bench: part ${name} still running after ${PART_LIMIT_MS / 60_000} min; stopping\n`);
    await cleanupAll();
    process.exit(124);
  }, PART_LIMIT_MS);
  watchdog.unref();
}

function availableParts(): string[] {
  const files = existsSync(PARTS_DIR) ? readdirSync(PARTS_DIR) : [];
  const have = new Set(files.filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)));
  return [...SUITE.filter((p) => have.has(p)), ...[...have].filter((p) => !SUITE.includes(p)).sort()];
}

/** The runner's own flags. */
const RUN_FLAGS: FlagSpecs = {
  quick: {
    kind: 'switch',
    help: 'smoke run: short and few runs; writes results only with --write (labelled quick)',
  },
  write: { kind: 'switch', help: 'write bench/results and BENCHMARKS.md even for a quick run' },
  help: { kind: 'switch', help: 'this text' },
};

function usage(parts: string[], flagsOf: Map<string, FlagSpecs>): string {
  const missing = SUITE.filter((p) => !parts.includes(p));
  return [
    'usage: npm run bench [-- <part>…] [--quick] [--write] [part flags]',
    `parts: ${parts.join(', ')}${missing.length ? ` (not written yet: ${missing.join(', ')})` : ''}`,
    ...flagHelp(RUN_FLAGS),
    'every part:',
    ...flagHelp(COMMON_FLAGS),
    ...parts.flatMap((p) => {
      const f = flagsOf.get(p) ?? {};
      return Object.keys(f).length ? [`${p}:`, ...flagHelp(f)] : [];
    }),
    '(--name=value or --name value)',
  ].join('\n');
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const parts = availableParts();
  const modules = new Map<string, Part>();
  for (const p of parts) modules.set(p, (await import(join(PARTS_DIR, `${p}.ts`))) as Part);
  const flagsOf = new Map(parts.map((p) => [p, modules.get(p)?.flags ?? {}] as const));
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage(parts, flagsOf)}\n`);
    return 0;
  }
  // Every flag is checked against what the parts take before anything runs (bench/lib/args.ts).
  const all: FlagSpecs = { ...RUN_FLAGS, ...COMMON_FLAGS };
  for (const f of flagsOf.values()) Object.assign(all, f);
  let named: string[];
  let given: string[];
  try {
    ({ words: named, flags: given } = parseArgs(argv, all));
  } catch (e) {
    if (!(e instanceof BenchArgError)) throw e;
    process.stderr.write(`${e.message}\n${usage(parts, flagsOf)}\n`);
    return 2;
  }
  const quick = given.includes('--quick');
  const write = !quick || given.includes('--write');
  const args = given.filter((a) => a !== '--quick' && a !== '--write');
  for (const p of named)
    if (!parts.includes(p)) {
      const why = SUITE.includes(p) ? `part "${p}" is not implemented yet` : `unknown part "${p}"`;
      process.stderr.write(`${why}\n${usage(parts, flagsOf)}\n`);
      return 2;
    }
  const todo = named.length > 0 ? named : parts;
  // A flag none of the parts to run reads would be silently ignored: refuse it.
  for (const a of args) {
    const name = a.slice(2).split('=')[0];
    if (name in COMMON_FLAGS || todo.some((p) => name in (flagsOf.get(p) ?? {}))) continue;
    const owners = parts.filter((p) => name in (flagsOf.get(p) ?? {}));
    process.stderr.write(
      `--${name} is a flag of ${owners.join(', ')}, not of ${todo.join(', ')}\n${usage(parts, flagsOf)}\n`,
    );
    return 2;
  }
  for (const p of todo) {
    const problem = modules.get(p)?.check?.(args);
    if (problem) {
      process.stderr.write(`${problem}\n${usage(parts, flagsOf)}\n`);
      return 2;
    }
  }
  const m = machine();
  process.stderr.write(`machine: ${describeMachine(m)}\n`);
  let failed = 0;
  for (const name of todo) {
    const command = `npm run bench -- ${name}${quick ? ' --quick' : ''}${args.length ? ` ${args.join(' ')}` : ''}`;
    const opts: PartOptions = {
      quick,
      args,
      command,
      log: (l) => process.stderr.write(`[${name}] ${l}\n`),
    };
    const started = Date.now();
    armWatchdog(name);
    process.stderr.write(`\n== ${name}${quick ? ' (quick)' : ''} ==\n`);
    try {
      const mod = modules.get(name) as Part;
      const pm = machine(); // the load average as this part starts
      const r = await mod.run(opts);
      const seconds = (Date.now() - started) / 1000;
      process.stdout.write(`\n${name}${quick ? ' (quick)' : ''}: ${seconds.toFixed(0)} s\n${r.table}\n`);
      if (!write) {
        process.stderr.write(`[${name}] quick run: nothing written (add --write to write it)\n`);
        continue;
      }
      if (r.partial) {
        process.stderr.write(`[${name}] a partial run (${r.partial}): nothing written\n`);
        continue;
      }
      mkdirSync(RESULTS, { recursive: true });
      const links = new Map<string, string>();
      for (const p of r.plots ?? []) {
        const file = `${name}-${p.name}.svg`;
        writeFileSync(join(RESULTS, file), p.svg);
        links.set(p.name, `![${p.alt}](bench/results/${file})`);
      }
      const json = {
        part: name,
        quick,
        date: new Date().toISOString(),
        machine: atEnd(pm),
        command,
        seconds,
        ...r.json,
      };
      writeFileSync(join(RESULTS, `${name}.json`), `${JSON.stringify(json, null, 2)}\n`);
      const body = r.section.body.replace(
        /\{plot:([\w-]+)\}/g,
        (_, p: string) => links.get(p) ?? `(plot ${p})`,
      );
      rewriteSection(join(ROOT, 'BENCHMARKS.md'), name, body, r.section.heading, r.section.intro);
      process.stderr.write(
        `[${name}] wrote bench/results/${name}.json${links.size ? ` and ${links.size} plot(s)` : ''}; BENCHMARKS.md section "${name}"\n`,
      );
    } catch (e) {
      failed++;
      process.stderr.write(`[${name}] FAILED: ${(e as Error).stack ?? e}\n`);
      await cleanupAll();
    }
  }
  return failed > 0 ? 1 : 0;
}

let stopping = false;
/** Stops the child processes and removes the temp folders (cleanupAll), then exits with `code`. */
async function stopAndExit(why: string, code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  try {
    process.stderr.write(`bench: ${why}; stopping child processes\n`);
  } catch {} // stderr may be the pipe that broke
  await cleanupAll();
  process.exit(code);
}

// 128 + the signal's number, as a shell reports a process the signal ended (SIGTERM was 130 too).
for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const)
  process.on(sig, () => void stopAndExit(sig, code));
// An error nothing caught — EPIPE on stdout or stderr when the reader of a pipe left (`npm run bench 2>&1 |
// head`) is one — ended the bench at once, leaving its baseline servers and temp folders behind.
for (const event of ['uncaughtException', 'unhandledRejection'] as const)
  process.on(event, (e: unknown) => void stopAndExit(`${event}: ${(e as Error)?.stack ?? e}`, 1));

const code = await main();
await cleanupAll();
process.exit(code);
