import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Things to undo however the bench ends (child processes, temp folders): run by bench/run.ts. */
const hooks = new Set<() => Promise<void> | void>();

/** Registers `fn`; call the returned function once it has been done the normal way. */
export function onCleanup(fn: () => Promise<void> | void): () => void {
  hooks.add(fn);
  return () => {
    hooks.delete(fn);
  };
}

export async function cleanupAll(): Promise<void> {
  const fns = [...hooks];
  hooks.clear();
  await Promise.allSettled(fns.map(async (f) => f()));
}

/** Whether a process with this id is alive (signal 0: EPERM means it is, someone else's). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A fresh temporary folder `<dir>/<prefix><pid>-XXXXXX` for a bench that cannot clean up when interrupted
 * (bench:restart and bench:ledger run synchronously: a signal ends them before any handler runs, and Ctrl-C
 * left 239 MB and 17 MB behind). First removes the folders of this prefix that a process no longer running
 * made: each run clears what an interrupted one left. Returns the new folder's path.
 */
export function benchTempDir(prefix: string, dir: string = tmpdir()): string {
  const own = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\d+)-`);
  for (const name of readdirSync(dir)) {
    const m = own.exec(name);
    if (m && !alive(Number(m[1]))) rmSync(join(dir, name), { recursive: true, force: true });
  }
  return mkdtempSync(join(dir, `${prefix}${process.pid}-`));
}
