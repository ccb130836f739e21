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
import { cleanupAll } from './lib/cleanup.ts';
import { atEnd, describeMachine, machine } from './lib/machine.ts';
import { rewriteSection } from './lib/markdown.ts';
import type { Part, PartOptions } from './lib/part.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS = join(ROOT, 'bench', 'results');
const PARTS_DIR = join(ROOT, 'bench', 'parts');
/** The suite, in the order `npm run bench` runs it. */
const SUITE = ['e2e', 'protocol', 'wan', 'verify', 'sweep'];
/** The whole run is bounded: past this, child processes are stopped and the run exits 124. */
const WATCHDOG_MS = 60 * 60_000;

function availableParts(): string[] {
  const files = existsSync(PARTS_DIR) ? readdirSync(PARTS_DIR) : [];
  const have = new Set(files.filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)));
  return [...SUITE.filter((p) => have.has(p)), ...[...have].filter((p) => !SUITE.includes(p)).sort()];
}

function usage(parts: string[]): string {
  const missing = SUITE.filter((p) => !parts.includes(p));
  return [
    'usage: npm run bench [-- <part>…] [--quick] [--write] [part flags]',
    `parts: ${parts.join(', ')}${missing.length ? ` (not written yet: ${missing.join(', ')})` : ''}`,
    '  --quick  smoke run: short and few runs; writes results only with --write (labelled quick)',
    '  --write  write bench/results and BENCHMARKS.md even for a quick run',
    '  protocol flags: --n=4,7,10 --modes=single,batch --step-ms=5000 --verify-every=1 --data-dir=DIR --durability=full|relaxed --profile',
  ].join('\n');
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const parts = availableParts();
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage(parts)}\n`);
    return 0;
  }
  const quick = argv.includes('--quick');
  const write = !quick || argv.includes('--write');
  const named = argv.filter((a) => !a.startsWith('-'));
  const args = argv.filter((a) => a.startsWith('-') && a !== '--quick' && a !== '--write');
  for (const p of named)
    if (!parts.includes(p)) {
      const why = SUITE.includes(p) ? `part "${p}" is not implemented yet` : `unknown part "${p}"`;
      process.stderr.write(`${why}\n${usage(parts)}\n`);
      return 2;
    }
  const todo = named.length > 0 ? named : parts;
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
    process.stderr.write(`\n== ${name}${quick ? ' (quick)' : ''} ==\n`);
    try {
      const mod = (await import(join(PARTS_DIR, `${name}.ts`))) as Part;
      const pm = machine(); // the load average as this part starts
      const r = await mod.run(opts);
      const seconds = (Date.now() - started) / 1000;
      process.stdout.write(`\n${name}${quick ? ' (quick)' : ''}: ${seconds.toFixed(0)} s\n${r.table}\n`);
      if (!write) {
        process.stderr.write(`[${name}] quick run: nothing written (add --write to write it)\n`);
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

const watchdog = setTimeout(async () => {
  process.stderr.write(`bench: still running after ${WATCHDOG_MS / 60_000} min; stopping\n`);
  await cleanupAll();
  process.exit(124);
}, WATCHDOG_MS);
watchdog.unref();
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, async () => {
    process.stderr.write(`bench: ${sig}; stopping child processes\n`);
    await cleanupAll();
    process.exit(130);
  });

const code = await main();
await cleanupAll();
process.exit(code);
