/**
 * Reads V8 .cpuprofile files (node --cpu-prof, or the inspector's Profiler) and names the frames with the
 * most self time. V8 samples the thread at fixed intervals of wall time: a frame blocked in a system call
 * (SQLite's fsync inside a transaction, a synchronous socket write) is counted as it waits.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface Frame {
  frame: string;
  selfMs: number;
  percent: number;
}

function short(url: string): string {
  const u = url.replace(/^file:\/\//, '');
  const i = u.indexOf('/src/');
  if (i >= 0) return u.slice(i + 1);
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) return u.slice(nm + 'node_modules/'.length);
  return u || '(native)';
}

/** One .cpuprofile with its nodes by id and each node's parent. */
export function loadProfile(file: string): {
  p: CpuProfile;
  byId: Map<number, ProfileNode>;
  parent: Map<number, ProfileNode>;
} {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, ProfileNode>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n);
  return { p, byId, parent };
}

function frameName(n: ProfileNode): string {
  const cf = n.callFrame;
  return cf.url
    ? `${cf.functionName || '(anonymous)'} ${short(cf.url)}:${cf.lineNumber + 1}`
    : cf.functionName;
}

/**
 * A sample's frame, named for self-time tables. A native leaf (crypto's SignJob.run, SQLite's statements,
 * writev) is named with the JS frames that called it (at most `depth`), up to the first one in our code,
 * so that "run" says whose signature it was.
 */
export function frameKey(n: ProfileNode, parent: Map<number, ProfileNode>, depth = 4): string {
  if (n.callFrame.url) return frameName(n);
  const chain: string[] = [];
  for (let q = parent.get(n.id); q && chain.length < depth; q = parent.get(q.id)) {
    chain.push(frameName(q));
    if (q.callFrame.url.includes('/src/')) break;
  }
  return chain.length ? `${n.callFrame.functionName} ← ${chain.join(' ← ')}` : n.callFrame.functionName;
}

/** Self time per frame over every profile in `files`, largest first. */
export function topFrames(files: string[], limit = 15): { totalMs: number; frames: Frame[] } {
  const self = new Map<string, number>();
  let total = 0;
  for (const f of files) {
    const { p, byId, parent } = loadProfile(f);
    for (let i = 0; i < p.samples.length; i++) {
      const n = byId.get(p.samples[i]);
      if (!n) continue;
      const dt = (p.timeDeltas[i] ?? 0) / 1000;
      const cf = n.callFrame;
      if (cf.functionName === '(idle)' || cf.functionName === '(program)') continue;
      const key = frameKey(n, parent);
      if (key.includes('node:inspector')) continue; // the profiler's own start-up call
      self.set(key, (self.get(key) ?? 0) + dt);
      total += dt;
    }
  }
  const frames = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([frame, ms]) => ({ frame, selfMs: Math.round(ms), percent: Math.round((1000 * ms) / total) / 10 }));
  return { totalMs: Math.round(total), frames };
}

export function profilesIn(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f));
}

/**
 * Time spent under `fn` (inclusive), by its nearest caller in our code (src/): e.g. which replica step the
 * signature checks (`verifyTagged`) or SQLite commits (`sqliteTransaction`) belong to.
 */
export function callersOf(
  files: string[],
  fn: string,
  limit = 8,
): { caller: string; ms: number; percent: number }[] {
  const by = new Map<string, number>();
  let total = 0;
  for (const f of files) {
    const { p, byId, parent } = loadProfile(f);
    for (let i = 0; i < p.samples.length; i++) {
      const dt = (p.timeDeltas[i] ?? 0) / 1000;
      const n = byId.get(p.samples[i]);
      if (!n || n.callFrame.functionName === '(idle)') continue;
      total += dt;
      let under = false;
      for (let q: ProfileNode | undefined = n; q; q = parent.get(q.id)) {
        if (q.callFrame.functionName === fn) {
          under = true;
          continue;
        }
        if (under && q.callFrame.url.includes('/src/')) {
          by.set(q.callFrame.functionName, (by.get(q.callFrame.functionName) ?? 0) + dt);
          break;
        }
      }
    }
  }
  return [...by.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([caller, ms]) => ({ caller, ms: Math.round(ms), percent: Math.round((1000 * ms) / total) / 10 }));
}

/** Where the samples went, by kind of work (a rough split by the frames on top of each stack). */
export function categories(files: string[]): { category: string; percent: number }[] {
  const by = new Map<string, number>();
  let total = 0;
  for (const f of files) {
    const { p, byId, parent } = loadProfile(f);
    for (let i = 0; i < p.samples.length; i++) {
      const n = byId.get(p.samples[i]);
      if (!n || n.callFrame.functionName === '(idle)' || n.callFrame.functionName === '(program)') continue;
      const stack: string[] = [];
      for (let q: ProfileNode | undefined = n; q; q = parent.get(q.id))
        stack.push(`${q.callFrame.functionName}@${q.callFrame.url}`);
      const all = stack.join(' ');
      if (all.includes('node:inspector')) continue;
      const top = (k: number) => stack.slice(0, k).join(' ');
      let c = 'other';
      if (n.callFrame.functionName.includes('garbage')) c = 'garbage collection';
      else if (all.includes('verifyTagged@')) c = 'Ed25519 verify';
      else if (all.includes('signTagged@')) c = 'Ed25519 sign';
      else if (/better-sqlite3|ledger\/sqlite/.test(top(6))) c = 'SQLite (incl. fsync waits)';
      else if (/sha256|Hash@|digest@|nodeHash/.test(top(3))) c = 'SHA-256';
      else if (/codec\.ts|toB64u|fromB64u|stringify|parse@/.test(top(2)))
        c = 'encoding (codec, JSON, base64)';
      else if (/fastify|_http_|node\/api\.ts|find-my-way/.test(top(4))) c = 'HTTP API (fastify)';
      else if (/stream_base|node:net|transport\.ts|frames\.ts/.test(top(3))) c = 'TCP between nodes';
      else if (/consensus\//.test(stack[0])) c = 'replica logic';
      const dt = (p.timeDeltas[i] ?? 0) / 1000;
      total += dt;
      by.set(c, (by.get(c) ?? 0) + dt);
    }
  }
  return [...by.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([category, ms]) => ({ category, percent: Math.round((1000 * ms) / total) / 10 }));
}
