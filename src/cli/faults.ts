import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, randomSchedule, runSchedule, type Schedule, shrink } from '../sim/faults.ts';
import { usageError } from './errors.ts';

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
 * `sim --faults random --seeds A..B [--keep DIR]`: one line per seed; a failing seed is shrunk, written
 * as JSON and printed with the command that replays it. Returns the number of failing seeds.
 */
export function runRandomFaults(
  seeds: string,
  keep: string | undefined,
  write: (s: string) => void,
  sizesText?: string,
): number {
  const [a, b] = parseSeeds(seeds);
  const sizes = sizesText === undefined ? undefined : parseSizes(sizesText);
  const sizesFlag = sizesText === undefined ? '' : ` --sizes ${sizes?.join(',')}`;
  let failed = 0;
  const started = Date.now();
  for (let seed = a; seed <= b; seed++) {
    const schedule = randomSchedule(seed, sizes);
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

/** `sim --schedule FILE`: replays one (shrunk) schedule. */
export function runScheduleFile(file: string, keep: string | undefined, write: (s: string) => void): boolean {
  let s: Schedule;
  try {
    s = JSON.parse(readFileSync(file, 'utf8')) as Schedule;
  } catch (e) {
    throw usageError(`cannot read schedule ${file}: ${(e as Error).message}`);
  }
  const o = runSchedule(s, { keepDir: keep });
  write(`${o.ok ? 'ok' : 'FAIL'} ${describe(s)}\n`);
  for (const p of o.problems) write(`     ${p}\n`);
  return o.ok;
}
