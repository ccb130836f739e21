/** CPU time of processes (Linux /proc), to say where the CPU went during a step. */
import { readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** User + system CPU ms of a process so far, or NaN when it cannot be read (gone, not Linux). */
export function cpuMsOf(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS; // fields 14 and 15 (utime, stime)
  } catch {
    return Number.NaN;
  }
}

export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** CPU ms used by this process and by `pids` between start() and the returned function's call. */
export function cpuMeter(pids: number[]): () => { self: number; others: number[] } {
  const s0 = selfCpuMs();
  const o0 = pids.map(cpuMsOf);
  return () => ({ self: selfCpuMs() - s0, others: pids.map((p, i) => cpuMsOf(p) - o0[i]) });
}
