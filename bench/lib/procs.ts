/** CPU time of processes (Linux /proc), to say where the CPU went during a step. */
import { readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** User + system CPU ms of a process so far, or NaN when it cannot be read (gone, not Linux). */
export function cpuMsOf(pid: number): number {
  return statCpuMs(`/proc/${pid}/stat`);
}

/**
 * The same for the process's main thread alone (its event loop: for a node the consensus, the ledger and
 * the HTTP API; the worker threads that decode and run the model are left out).
 */
export function mainThreadCpuMsOf(pid: number): number {
  return statCpuMs(`/proc/${pid}/task/${pid}/stat`);
}

function statCpuMs(path: string): number {
  try {
    const s = readFileSync(path, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS; // fields 14 and 15 (utime, stime)
  } catch {
    return Number.NaN;
  }
}

/**
 * Context switches of a process's main thread so far: voluntary (it waited: for the next event, the disk)
 * and involuntary (the scheduler took its core while it could run); NaN when they cannot be read.
 */
export function mainThreadSwitchesOf(pid: number): { voluntary: number; involuntary: number } {
  try {
    const s = readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8');
    const get = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)$`, 'm').exec(s)?.[1] ?? Number.NaN);
    return { voluntary: get('voluntary_ctxt_switches'), involuntary: get('nonvoluntary_ctxt_switches') };
  } catch {
    return { voluntary: Number.NaN, involuntary: Number.NaN };
  }
}

export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * CPU ms used by this process and by `pids` between start() and the returned function's call; `mains`:
 * of `others`, what each process's main thread used.
 */
export function cpuMeter(pids: number[]): () => { self: number; others: number[]; mains: number[] } {
  const s0 = selfCpuMs();
  const o0 = pids.map(cpuMsOf);
  const m0 = pids.map(mainThreadCpuMsOf);
  // At the end the main threads are read before their processes (at the start after them), so no CPU
  // spent between two reads counts for a main thread and not for its process. The two can still differ by
  // a few clock ticks the other way: the kernel reports user and system time separately, each in whole
  // ticks and each split from the entity's own run time, so a thread's sum is not bounded by its
  // process's sum to the tick.
  return () => {
    const mains = pids.map((p, i) => mainThreadCpuMsOf(p) - m0[i]);
    const others = pids.map((p, i) => cpuMsOf(p) - o0[i]);
    return { self: selfCpuMs() - s0, others, mains };
  };
}
