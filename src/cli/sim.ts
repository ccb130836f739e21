import { mkdtempSync, renameSync, rmdirSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { certificateToJson, verifyCertificate } from '../certificate/index.ts';
import { DropbearError, Genesis, hex, LIMITS, toJson, writeFailure } from '../protocol/index.ts';
import { checkRun } from '../sim/checks.ts';
import { scriptNames } from '../sim/scripts.ts';
import { type Behaviour, type SimResult, simulate } from '../sim/world.ts';
import { usageError } from './errors.ts';
import { runRandomFaults, runScheduleFile } from './faults.ts';
import { makeOutputDir, stableJson } from './io.ts';
import { parseDecimal } from './numbers.ts';

export interface SimCliOptions {
  nodes: string;
  requests: string;
  seed: string;
  out?: string;
  f?: string;
  byzantine: string[];
  disagreement: string;
  batchSize?: string;
  batchTimeout?: string;
  clientBatch?: string;
  delay: string;
  jitter: string;
  loss: string;
  duplicate: string;
}

function int(name: string, v: string, min: number): number {
  const x = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(x) || x < min)
    throw usageError(`--${name} must be a decimal integer ≥ ${min}, got "${v}"`);
  return x;
}
function frac(name: string, v: string, max = 1): number {
  return parseDecimal(`--${name}`, v, 0, max);
}

export function parseByzantine(specs: string[], n: number): Map<number, Behaviour> {
  const m = new Map<number, Behaviour>();
  for (const s of specs) {
    const parts = s.split(':');
    if (parts.length !== 2) throw usageError(`--byzantine ${s}: expected ID:BEHAVIOUR, e.g. 0:silent`);
    const [idText, name] = parts;
    const id = Number(idText);
    if (!/^\d+$/.test(idText) || id >= n)
      throw usageError(`--byzantine ${s}: node id must be in [0, ${n - 1}]`);
    if (!scriptNames().includes(name))
      throw usageError(`--byzantine ${s}: behaviour must be one of ${scriptNames().join(', ')}`);
    m.set(id, name as Behaviour);
  }
  return m;
}

/**
 * Writes genesis.json and certificates/ into `dir` all or nothing. They are written into a hidden folder
 * inside `dir` (`.sim-partial-*`: the same file system, so the last step is a rename), then moved into place;
 * until then a previous run's output there stays as it was. Before 2026-12-06 they were written straight
 * into `dir`: a Ctrl-C, a SIGTERM or a failed write half-way left genesis.json and some certificates, which
 * looked like a complete output of fewer requests.
 *
 * Staging in `dir` rather than renaming a whole new folder over it: `dir` may hold other files (`--out out`
 * or `--out .`), which the command never touched and must not remove. The writes are asynchronous so that a
 * SIGINT or SIGTERM is seen between two of them: the writing stops, the hidden folder is removed and the
 * signal raised again (the process ends as it would have). The handler only takes note; removing the folder
 * from it could race a write in flight. A failed write removes the folder too, and is FILE_UNWRITABLE saying
 * why (a full disk; until 2026-12-06 the system's bare `ENOSPC`). The move is synchronous (a
 * signal during it is taken after, the output then complete) and renames genesis.json last: a folder with
 * genesis.json has every certificate of its run. Only a SIGKILL or a crash can leave the hidden folder
 * behind, never a partial output.
 */
export async function writeOutputs(dir: string, r: SimResult): Promise<void> {
  // A write that fails (a full disk) is FILE_UNWRITABLE saying why; it was the system's bare "ENOSPC".
  const unwritable = (e: unknown) => {
    if (e instanceof DropbearError) return e;
    const { errno, why } = writeFailure(e);
    return new DropbearError(
      'FILE_UNWRITABLE',
      `cannot write the output to ${dir}: ${why}; nothing was written there`,
      {
        path: dir,
        errno,
      },
    );
  };
  let stage: string;
  try {
    stage = mkdtempSync(join(dir, '.sim-partial-'));
  } catch (e) {
    throw unwritable(e);
  }
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    signalled = sig;
  };
  const signals = ['SIGINT', 'SIGTERM'] as const;
  for (const s of signals) process.on(s, onSignal);
  let moved = false;
  try {
    await mkdir(join(stage, 'certificates'));
    await writeFile(join(stage, 'genesis.json'), stableJson(toJson(Genesis, r.group.genesis)));
    for (const [id, c] of r.certificates) {
      if (signalled) break;
      await writeFile(join(stage, 'certificates', `${id}.json`), stableJson(certificateToJson(c)));
    }
    if (!signalled) {
      rmSync(join(dir, 'genesis.json'), { force: true });
      rmSync(join(dir, 'certificates'), { recursive: true, force: true });
      renameSync(join(stage, 'certificates'), join(dir, 'certificates'));
      renameSync(join(stage, 'genesis.json'), join(dir, 'genesis.json'));
      moved = true;
      rmdirSync(stage);
      // A signal that came during the move is delivered on the next turn of the event loop: take it here
      // (with its listener gone it would be lost, and the command would go on as if never interrupted).
      await new Promise((r) => setImmediate(r));
    }
  } catch (e) {
    throw unwritable(e);
  } finally {
    if (!moved) rmSync(stage, { recursive: true, force: true });
    for (const s of signals) process.off(s, onSignal);
  }
  if (signalled) {
    // No listener now: the default action, as if the signal had come when no output was being written.
    process.kill(process.pid, signalled);
    process.exit(128 + constants.signals[signalled]);
  }
}

export async function runSimCommand(
  o: SimCliOptions,
): Promise<{ result: SimResult; summary: string; ok: boolean }> {
  const nodes = int('nodes', o.nodes, 1);
  // A million made a million keys before the genesis (at most 256 nodes) refused them: a hang.
  if (nodes > LIMITS.nodes)
    throw usageError(`--nodes must be at most ${LIMITS.nodes} (the nodes a genesis holds), got ${nodes}`);
  const f = o.f === undefined ? Math.floor((nodes - 1) / 3) : int('f', o.f, 0);
  if (nodes < 3 * f + 1) throw usageError(`--nodes ${nodes} is below 3f+1 = ${3 * f + 1}`);
  const byzantine = parseByzantine(o.byzantine, nodes);
  if (byzantine.size > f) throw usageError(`${byzantine.size} Byzantine nodes exceed f = ${f}`);
  if (o.out) makeOutputDir('--out', o.out);
  const result = simulate({
    nodes,
    f,
    // No request ended the run at once, nothing certified: FAILED, exit 1, as a broken safety check.
    requests: int('requests', o.requests, 1),
    seed: int('seed', o.seed, 0),
    byzantine,
    disagreement: frac('disagreement', o.disagreement),
    ...(o.clientBatch ? { clientBatch: int('client-batch', o.clientBatch, 1) } : {}),
    replica: {
      ...(o.batchSize ? { batchSize: int('batch-size', o.batchSize, 1) } : {}),
      ...(o.batchTimeout ? { batchTimeoutMs: frac('batch-timeout', o.batchTimeout, 60_000) } : {}),
    },
    link: {
      delayMs: frac('delay', o.delay, 60_000),
      jitterMs: frac('jitter', o.jitter, 60_000),
      loss: frac('loss', o.loss, 0.9),
      duplicate: frac('duplicate', o.duplicate),
    },
  });
  const check = checkRun(result);
  let invalid = 0;
  for (const c of result.certificates.values()) if (!verifyCertificate(c, result.group.genesis).ok) invalid++;
  if (o.out) await writeOutputs(o.out, result);
  const decided = [...result.certificates.values()].filter(
    (c) => c.outcome.decision.kind !== 'noAgreement',
  ).length;
  const ok = result.done && check.ok && invalid === 0;
  const summary =
    `${ok ? 'ok' : 'FAILED'} n=${nodes} f=${f} seed=${o.seed} requests=${result.requests.size} ` +
    `certified=${result.certificates.size} agreed=${decided} invalid=${invalid} batches=${result.batches} ` +
    `virtual_ms=${result.virtualMs.toFixed(1)} messages=${result.messages} ` +
    `group=${hex(result.nodes[0].replica.groupId).slice(0, 16)}` +
    (byzantine.size ? ` byzantine=${o.byzantine.join(',')}` : '') +
    (check.ok ? '' : ` problems=${JSON.stringify(check.problems)}`);
  return { result, summary, ok };
}

/** The options each kind of `sim` run reads (commander's names), its selecting option first. */
const SIM_RUN_OPTIONS = {
  schedule: ['schedule', 'keep'],
  faults: ['faults', 'seeds', 'keep', 'sizes', 'clockSteps'],
  plain: [
    'nodes',
    'f',
    'requests',
    'seed',
    'out',
    'byzantine',
    'disagreement',
    'batchSize',
    'batchTimeout',
    'clientBatch',
    'delay',
    'jitter',
    'loss',
    'duplicate',
  ],
} as const;

const flag = (name: string) => `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/**
 * What is wrong with the options given on the command line (`given`, commander's names) for the kind of run
 * they select (`--schedule`, else `--faults`, else a plain simulation), or null. An option of another kind
 * was ignored without a word: `sim --clock-steps` ran a plain simulation with no clock stepped, `sim --keep
 * DIR` kept nothing, `sim --faults random --nodes 7` ran the schedules' own sizes.
 */
export function simOptionsProblem(given: readonly string[]): string | null {
  const run = given.includes('schedule') ? 'schedule' : given.includes('faults') ? 'faults' : 'plain';
  const fits: readonly string[] = SIM_RUN_OPTIONS[run];
  const stray = given.filter((k) => !fits.includes(k));
  if (stray.length === 0) return null;
  const names = stray.map(flag).join(', ');
  if (run === 'plain') {
    // Only options of the other two kinds get here: --seeds, --sizes, --clock-steps and --keep.
    const also = stray.every((k) => k === 'keep') ? ' and `sim --schedule`' : '';
    return `${names} ${stray.length > 1 ? 'apply' : 'applies'} to \`sim --faults random\`${also} only, not to a plain simulation`;
  }
  const takes = fits.slice(1).map(flag).join(', ');
  const what = run === 'schedule' ? '`sim --schedule`' : '`sim --faults random`';
  return `${names} ${stray.length > 1 ? 'do' : 'does'} not apply to ${what} (it takes ${takes})`;
}

export function registerSim(program: Command): void {
  program
    .command('sim')
    .description('run a simulated group (real consensus, ledger and certificates; virtual clock and network)')
    .option('--nodes <n>', 'group size', '4')
    .option('--f <f>', 'faults tolerated (default: floor((n-1)/3))')
    .option('--requests <r>', 'client requests to certify', '100')
    .option('--seed <s>', 'seed: the same seed gives byte-identical output', '1')
    .option('--out <dir>', 'write genesis.json and certificates/<requestId>.json here')
    .option(
      '--byzantine <id:behaviour>',
      `a Byzantine node (${scriptNames().join(', ')}); repeatable`,
      (v: string, a: string[]) => [...a, v],
      [] as string[],
    )
    .option('--disagreement <p>', 'fraction of inputs on which an honest model gives another label', '0.1')
    .option('--batch-size <n>', 'consensus batch size')
    .option(
      '--batch-timeout <ms>',
      'consensus batch timeout while a batch is in flight (virtual ms; with none in flight a batch is cut at once)',
    )
    .option('--client-batch <n>', 'the client signs its requests in batches of n (one signature per batch)')
    .option('--delay <ms>', 'one-way link delay', '1')
    .option('--jitter <ms>', 'uniform extra delay (reorders messages)', '0.5')
    .option('--loss <p>', 'message loss probability', '0')
    .option('--duplicate <p>', 'message duplication probability', '0')
    .option('--faults <mode>', 'random: run random fault schedules (with --seeds) on real SQLite ledgers')
    .option('--seeds <A..B>', 'seed range for --faults random', '1..20')
    .option('--sizes <n,n,…>', 'with --faults: group sizes a schedule picks from (default 4,4,4,7)')
    .option(
      '--clock-steps',
      "with --faults random: also step nodes' system clocks (honest ones within the skew bound, faulty ones by up to 2 h)",
    )
    .option('--keep <dir>', "with --faults: keep each seed's SQLite ledgers (and failing schedules) here")
    .option('--schedule <file>', 'replay one fault schedule written by a failing --faults run')
    .addHelpText(
      'after',
      '\nExamples:\n  npx dropbear sim --nodes 4 --requests 1000 --seed 7 --out out --byzantine 2:wrong-results\n' +
        '  npx dropbear sim --faults random --seeds 1..200 --keep /tmp/ledgers\n',
    )
    .addHelpText(
      'after',
      '\nExit status: 0 the run passed its checks, 1 it did not (FAILED; with --faults or --schedule: a failing\n' +
        'seed or schedule), 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument).\n',
    )
    .action(
      async (
        o: SimCliOptions & {
          faults?: string;
          seeds: string;
          keep?: string;
          schedule?: string;
          sizes?: string;
          clockSteps?: boolean;
        },
        cmd: Command,
      ) => {
        const given = Object.keys(cmd.opts()).filter((k) => cmd.getOptionValueSource(k) === 'cli');
        const problem = simOptionsProblem(given);
        if (problem) throw usageError(problem);
        const write = (s: string) => process.stdout.write(s);
        if (o.schedule) {
          if (!runScheduleFile(o.schedule, o.keep, write)) process.exitCode = 1;
          return;
        }
        if (o.faults !== undefined) {
          if (o.faults !== 'random') throw usageError(`--faults must be "random", got "${o.faults}"`);
          if (runRandomFaults(o.seeds, o.keep, write, o.sizes, o.clockSteps === true) > 0)
            process.exitCode = 1;
          return;
        }
        const { summary, ok } = await runSimCommand(o);
        process.stdout.write(`${summary}\n`);
        if (!ok) process.exitCode = 1;
      },
    );
}
