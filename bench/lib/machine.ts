/** What every figure states about where it was measured. */
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';

export interface Machine {
  cores: number;
  cpu: string;
  memGiB: number;
  node: string;
  platform: string;
  /** 1-minute load average when the part started: above the core count, other work shared the CPUs. */
  loadAvg1: number;
  /** The code measured: the commit checked out, and whether tracked files differed from it (null outside git). */
  code: { commit: string; modified: boolean } | null;
}

function codeVersion(): Machine['code'] {
  try {
    const git = (...args: string[]) =>
      execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return {
      commit: git('rev-parse', 'HEAD'),
      modified: git('status', '--porcelain', '--untracked-files=no') !== '',
    };
  } catch {
    return null;
  }
}

export function machine(): Machine {
  const c = cpus();
  return {
    cores: c.length,
    cpu: c[0]?.model?.trim() ?? 'unknown CPU',
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadAvg1: Math.round(loadavg()[0] * 100) / 100,
    code: codeVersion(),
  };
}

/** One line for BENCHMARKS.md: "2 cores (AMD EPYC …), 24 GiB, Node v20…; load average 1.2 at start". */
export function describeMachine(m: Machine): string {
  const code = m.code
    ? `; code at ${m.code.commit.slice(0, 7)}${m.code.modified ? ' with uncommitted changes' : ''}`
    : '';
  return `${m.cores} cores (${m.cpu}), ${m.memGiB} GiB, Node ${m.node}, ${m.platform}; 1-min load average ${m.loadAvg1} at start${code}`;
}
