/** What every figure states about where it was measured. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import {
  cryptoBackend,
  cryptoStats,
  keyPairFromSeed,
  signTagged,
  TAGS,
  verifyTagged,
} from '../../src/protocol/crypto.ts';

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
  /**
   * How fast this machine's cores were when the part started: µs per Ed25519 signature check with the
   * backend the nodes use (the fastest of 3 rounds of 300). Machines of the same kind have differed by 2×
   * (99 against 49 µs with libsodium, same code and packages), so absolute figures from two runs compare
   * only when this does; ratios measured in one run compare anyway.
   */
  verifyUs: number;
  /**
   * The same reference measured again as the part ended (after its processes stopped), when the part says
   * so (`atEnd`): the machine's speed changes from hour to hour (2026-12-01: 45.6 µs at the start of one
   * e2e run, 95 at the start of a protocol run two hours later), so it may within a run too, and a figure
   * far from `verifyUs` says it did.
   */
  verifyUsEnd?: number;
  /**
   * The same check right after the thread slept 20 ms (median of 50): what a node pays for its first work
   * after waiting for the next message. On this project's shared 2-core machines it costs 2-3× the back
   * to back figure, and a SHA-256 of 100 bytes ~20× (2026-12-02: 111 against 45 µs, 48 against 2.4 µs;
   * 60 and 13 µs after 5 ms), so at low load every wake-up of a node costs far more CPU than the same work
   * under load. Absent in results files written before it was measured.
   */
  wakeUs?: number;
  cryptoBackend: string;
}

/**
 * Runs `fn` with the reference check: one Ed25519 signature check (the backend the nodes use) of a fixed
 * 100-byte message, throwing if it fails. Leaves cryptoStats as it found them (the core bench counts
 * signatures).
 */
function withReferenceCheck<T>(fn: (check: () => void) => T): T {
  const saved = { ...cryptoStats };
  try {
    const key = keyPairFromSeed(new Uint8Array(32).fill(7));
    const group = new Uint8Array(32);
    const body = new Uint8Array(100).fill(1);
    const sig = signTagged(TAGS.prepare, group, body, key);
    return fn(() => {
      if (!verifyTagged(TAGS.prepare, group, body, sig, key.publicKey))
        throw new Error('reference signature did not verify');
    });
  } finally {
    Object.assign(cryptoStats, saved);
  }
}

/** See Machine.verifyUs: the fastest of `rounds` rounds of `per` checks back to back, µs per check. */
export function verifyMicros(rounds = 3, per = 300): number {
  return withReferenceCheck((check) => {
    let best = Number.POSITIVE_INFINITY;
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      for (let i = 0; i < per; i++) check();
      best = Math.min(best, ((performance.now() - t0) * 1000) / per);
    }
    return Math.round(best * 10) / 10;
  });
}

/**
 * See Machine.wakeUs: the median µs of one reference check made right after the thread slept `sleepMs`
 * (Atomics.wait: the thread blocks in the kernel, as an idle event loop does), over `sleeps` sleeps.
 */
export function wakeMicros(sleeps = 50, sleepMs = 20): number {
  return withReferenceCheck((check) => {
    const cell = new Int32Array(new SharedArrayBuffer(4));
    const took: number[] = [];
    for (let i = 0; i < sleeps; i++) {
      Atomics.wait(cell, 0, 0, sleepMs);
      const t0 = performance.now();
      check();
      took.push((performance.now() - t0) * 1000);
    }
    took.sort((a, b) => a - b);
    return Math.round(took[took.length >> 1] * 10) / 10;
  });
}

/**
 * machine() runs twice as a part starts (bench/run.ts for the results file, the part for its text): one
 * measurement serves both, so the two never disagree; a part starting a minute later measures again.
 */
let lastSpeed: { at: number; us: number; wakeUs: number } | null = null;
function speedNow(): { us: number; wakeUs: number } {
  const t = performance.now();
  if (!lastSpeed || t - lastSpeed.at > 60_000)
    lastSpeed = { at: t, us: verifyMicros(), wakeUs: wakeMicros() };
  return lastSpeed;
}

/**
 * The machine as a part ends: `m` with the speed reference measured now (once for the part's text and its
 * results file, which ask within seconds of each other).
 */
let lastEnd: { at: number; us: number } | null = null;
export function atEnd(m: Machine): Machine {
  const t = performance.now();
  if (!lastEnd || t - lastEnd.at > 5_000) lastEnd = { at: t, us: verifyMicros() };
  return { ...m, verifyUsEnd: lastEnd.us };
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
  const speed = speedNow();
  return {
    cores: c.length,
    cpu: c[0]?.model?.trim() ?? 'unknown CPU',
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadAvg1: Math.round(loadavg()[0] * 100) / 100,
    code: codeVersion(),
    verifyUs: speed.us,
    wakeUs: speed.wakeUs,
    cryptoBackend,
  };
}

/**
 * The x86 vector extensions the quantized kernels depend on, as in /proc/cpuinfo: "AVX2, no AVX-512, no
 * VNNI" (the int8 models ran 4–7× slower on this project's machine without VNNI than on an earlier one,
 * presumably with it, whose cores were also ~2× faster: BENCHMARKS.md, inference).
 * "unknown" where /proc/cpuinfo cannot be read.
 */
export function cpuFlags(): string {
  let flags: Set<string>;
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    if (!line) return 'unknown';
    flags = new Set(
      line
        .slice(line.indexOf(':') + 1)
        .trim()
        .split(/\s+/),
    );
  } catch {
    return 'unknown';
  }
  const has = (name: string, ...any: string[]) => (any.some((f) => flags.has(f)) ? name : `no ${name}`);
  return [has('AVX2', 'avx2'), has('AVX-512', 'avx512f'), has('VNNI', 'avx512_vnni', 'avx_vnni')].join(', ');
}

/** One line for BENCHMARKS.md: "2 cores (AMD EPYC …), 24 GiB, Node v20…; Ed25519 check 49 µs …; load average 1.2 at start". */
export function describeMachine(m: Machine): string {
  const code = m.code
    ? `; code at ${m.code.commit.slice(0, 7)}${m.code.modified ? ' with uncommitted changes' : ''}`
    : '';
  const speed =
    m.verifyUsEnd === undefined
      ? `${m.verifyUs} µs`
      : `${m.verifyUs} µs at the start, ${m.verifyUsEnd} at the end`;
  const wake = m.wakeUs === undefined ? '' : `, ${m.wakeUs} µs right after a 20 ms sleep`;
  return `${m.cores} cores (${m.cpu}), ${m.memGiB} GiB, Node ${m.node}, ${m.platform}; Ed25519 check ${speed}${wake} (${m.cryptoBackend}; speed reference, see bench/lib/machine.ts); 1-min load average ${m.loadAvg1} at start${code}`;
}
