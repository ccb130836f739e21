/**
 * runCli runs the real `dropbear` CLI (bin/dropbear.mjs) as a child process, without colours, and collects
 * what it wrote. A child still running after `killAfterMs` is killed (its code is then null, which the calling
 * test sees as a failure): a command that never ends must not hang the suite. `started` gets the child, for
 * a test that signals it; `signal` is the signal that ended it, if one did; `env` is added to this process's
 * environment for the child.
 *
 * runCliInProcess runs the same program (src/cli/program.ts) in the test's own process, for a case that
 * checks only what a command says and its exit status (a usage error, a file it cannot read): a spawned CLI
 * costs about a second of CPU (tsx and the imports) per case.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  killAfterMs: number,
  started?: (child: ChildProcess) => void,
  env: Record<string, string> = {},
): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/dropbear.mjs', ...args], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    started?.(child);
  });
}

/** What process.exit throws while runCliInProcess runs: the status the process would have ended with. */
class Exited extends Error {
  constructor(readonly code: number) {
    super(`process.exit(${code})`);
  }
}

let inProcessRunning = false;

/**
 * Runs `dropbear ...args` as bin/dropbear.mjs would (src/cli/main.ts: the program from buildProgram, an
 * error it throws through reportAndExit), in this process: process.stdout and process.stderr's write are
 * collected instead of written, process.exit throws the status instead of ending the process (so nothing
 * after it runs, as in the binary), and an action that ends without one gives process.exitCode (else 0),
 * as a process ending on its own does. Everything is put back afterwards, process.exitCode included. The
 * environment is the spawned CLI's for the run: NO_COLOR, FORCE_COLOR=0, and stdout and stderr not terminals
 * (pipes: commander's help is 80 columns wide, progress comes as lines). Not for a command that serves,
 * starts processes or waits for a signal: what it left running would go on in the test's process, and a
 * process that would not end (a timer or socket left behind) is not seen here. One run at a time (the
 * writes and process.exit are this process's own).
 */
export async function runCliInProcess(args: string[]): Promise<Ran> {
  const [{ buildProgram }, { reportAndExit }] = await Promise.all([
    import('../../src/cli/program.ts'),
    import('../../src/cli/errors.ts'),
  ]);
  if (inProcessRunning) throw new Error('runCliInProcess: one run at a time');
  inProcessRunning = true;
  let stdout = '';
  let stderr = '';
  const collect =
    (append: (s: string) => void) =>
    (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
      const encoding = typeof rest[0] === 'string' ? (rest[0] as BufferEncoding) : 'utf8';
      append(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString(encoding));
      const done = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
      if (done) process.nextTick(done);
      return true;
    };
  const saved = {
    out: process.stdout.write,
    err: process.stderr.write,
    exit: process.exit,
    exitCode: process.exitCode,
    noColor: process.env.NO_COLOR,
    forceColor: process.env.FORCE_COLOR,
  };
  const ttys = [process.stdout, process.stderr].map(
    (stream) => [stream, Object.getOwnPropertyDescriptor(stream, 'isTTY')] as const,
  );
  for (const [stream] of ttys)
    Object.defineProperty(stream, 'isTTY', { value: undefined, configurable: true, writable: true });
  process.stdout.write = collect((s) => (stdout += s)) as typeof process.stdout.write;
  process.stderr.write = collect((s) => (stderr += s)) as typeof process.stderr.write;
  process.exit = ((code?: number | string | null) => {
    throw new Exited(Number(code ?? process.exitCode ?? 0));
  }) as typeof process.exit;
  process.exitCode = undefined;
  process.env.NO_COLOR = '1';
  process.env.FORCE_COLOR = '0';
  // Stays null (a failure to the calling test) if reportAndExit ever returned.
  let code: number | null = null;
  try {
    try {
      await buildProgram().parseAsync([process.execPath, join(ROOT, 'bin', 'dropbear.mjs'), ...args]);
      code = Number(process.exitCode ?? 0);
    } catch (e) {
      if (e instanceof Exited) throw e;
      reportAndExit(e);
    }
  } catch (e) {
    if (!(e instanceof Exited)) throw e;
    code = e.code;
  } finally {
    process.stdout.write = saved.out;
    process.stderr.write = saved.err;
    process.exit = saved.exit;
    process.exitCode = saved.exitCode;
    for (const [stream, isTTY] of ttys)
      if (isTTY) Object.defineProperty(stream, 'isTTY', isTTY);
      else delete (stream as { isTTY?: boolean }).isTTY;
    for (const [key, value] of [
      ['NO_COLOR', saved.noColor],
      ['FORCE_COLOR', saved.forceColor],
    ] as const)
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    inProcessRunning = false;
  }
  return { code, signal: null, stdout, stderr };
}
