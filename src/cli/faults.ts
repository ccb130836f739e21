import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DropbearError } from '../protocol/index.ts';
import { describe, randomSchedule, runSchedule, type Schedule, shrink } from '../sim/faults.ts';
import { scriptNames } from '../sim/scripts.ts';
import { usageError } from './errors.ts';
import { makeOutputDir, readJsonFile } from './io.ts';

export function parseSeeds(text: string): [number, number] {
  const m = /^(\d+)(?:\.\.(\d+))?$/.exec(text);
  if (!m) throw usageError(`--seeds must look like A..B (or one seed), got "${text}"`);
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (b < a) throw usageError(`--seeds ${text}: the range is empty`);
  return [a, b];
}

/** `--sizes 5,6`: group sizes from 1 to 64 (LIMITS.nodes is higher; the simulator is not meant for more). */
export function parseSizes(text: string): number[] {
  const sizes = text.split(',').map((t) => t.trim());
  if (sizes.length === 0 || sizes.some((t) => !/^\d+$/.test(t) || Number(t) < 1 || Number(t) > 64))
    throw usageError(`--sizes must be a comma-separated list of group sizes from 1 to 64, got "${text}"`);
  return sizes.map(Number);
}

/**
 * `sim --faults random --seeds A..B [--keep DIR] [--clock-steps]`: one line per seed; a failing seed is shrunk, written
 * as JSON and printed with the command that replays it. Returns the number of failing seeds.
 */
export function runRandomFaults(
  seeds: string,
  keep: string | undefined,
  write: (s: string) => void,
  sizesText?: string,
  clockSteps = false,
): number {
  const [a, b] = parseSeeds(seeds);
  const sizes = sizesText === undefined ? undefined : parseSizes(sizesText);
  if (keep) makeOutputDir('--keep', keep);
  const sizesFlag =
    (sizesText === undefined ? '' : ` --sizes ${sizes?.join(',')}`) + (clockSteps ? ' --clock-steps' : '');
  let failed = 0;
  const started = Date.now();
  for (let seed = a; seed <= b; seed++) {
    const schedule = randomSchedule(seed, sizes, { clockSteps });
    const keepDir = keep ? join(keep, `seed-${seed}`) : undefined;
    if (keepDir) mkdirSync(keepDir, { recursive: true });
    const o = runSchedule(schedule, { keepDir });
    if (o.ok) {
      write(
        `ok   seed ${seed}: ${o.certified} certified, view ${o.views}, ${(o.virtualMs / 1000).toFixed(1)} s virtual · ${describe(schedule)}\n`,
      );
      continue;
    }
    failed++;
    write(`FAIL seed ${seed}: ${describe(schedule)}\n`);
    for (const p of o.problems) write(`     ${p}\n`);
    const small = shrink(schedule);
    const file = join(keep ?? '.', `failing-seed-${seed}.json`);
    writeFileSync(file, `${JSON.stringify(small, null, 2)}\n`);
    write(`     shrunk to: ${describe(small)}\n`);
    write(
      `     replay: npx dropbear sim --faults random --seeds ${seed}..${seed}${sizesFlag}   (shrunk: npx dropbear sim --schedule ${file})\n`,
    );
  }
  write(
    `${failed === 0 ? 'ok' : 'FAILED'}: ${b - a + 1 - failed}/${b - a + 1} seeds passed in ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
  );
  return failed;
}

const isWhole = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
const isObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x);

/**
 * What is wrong with a value read as a fault schedule (the shape `--faults random` writes), or null. Before
 * 2026-12-06 any JSON was run: `{}` ended with "Cannot read properties of undefined (reading 'length')".
 */
export function scheduleProblem(v: unknown): string | null {
  if (!isObject(v)) return 'a schedule is a JSON object';
  for (const k of ['seed', 'nodes', 'requests', 'healAt'])
    if (!isWhole(v[k])) return `"${k}" must be a whole number`;
  const n = v.nodes as number;
  if (n < 1 || n > 64) return '"nodes" must be from 1 to 64';
  const node = (x: unknown) => isWhole(x) && x < n;
  if (!Array.isArray(v.byzantine)) return '"byzantine" must be a list of [node, behaviour] pairs';
  for (const b of v.byzantine)
    if (!(Array.isArray(b) && b.length === 2 && node(b[0]) && scriptNames().includes(b[1])))
      return `"byzantine" holds ${JSON.stringify(b)}; each is [node id below ${n}, one of ${scriptNames().join(', ')}]`;
  if (!isObject(v.link)) return '"link" must be an object';
  if (!Array.isArray(v.faults)) return '"faults" must be a list';
  for (const f of v.faults) {
    const ok =
      isObject(f) &&
      typeof f.at === 'number' &&
      Number.isFinite(f.at) &&
      ((f.kind === 'crash' && node(f.node)) ||
        (f.kind === 'restart' && node(f.node) && typeof f.diskLost === 'boolean') ||
        (f.kind === 'partition' && Array.isArray(f.side) && f.side.every(node)) ||
        f.kind === 'heal' ||
        (f.kind === 'link' &&
          node(f.from) &&
          node(f.to) &&
          typeof f.delayMs === 'number' &&
          typeof f.loss === 'number') ||
        (f.kind === 'clock' && node(f.node) && Number.isSafeInteger(f.offsetMs)));
    if (!ok)
      return `"faults" holds ${JSON.stringify(f)}; each has "at" and a "kind" (crash, restart, partition, heal, link, clock) with its fields`;
  }
  return null;
}

/** `sim --schedule FILE`: replays one (shrunk) schedule. */
export function runScheduleFile(file: string, keep: string | undefined, write: (s: string) => void): boolean {
  const value = readJsonFile(file);
  const problem = scheduleProblem(value);
  if (problem)
    throw new DropbearError(
      'SCHEDULE_INVALID',
      `${file} is not a fault schedule: ${problem} (\`sim --faults random\` writes them as failing-seed-N.json)`,
    );
  const s = value as Schedule;
  if (keep) makeOutputDir('--keep', keep);
  const o = runSchedule(s, { keepDir: keep });
  write(`${o.ok ? 'ok' : 'FAIL'} ${describe(s)}\n`);
  for (const p of o.problems) write(`     ${p}\n`);
  return o.ok;
}
