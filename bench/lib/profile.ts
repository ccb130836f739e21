/** Reads V8 .cpuprofile files (node --cpu-prof) and names the frames with the most self time. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
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

/** Self time per frame over every profile in `files`, largest first. */
export function topFrames(files: string[], limit = 15): { totalMs: number; frames: Frame[] } {
  const self = new Map<string, number>();
  let total = 0;
  for (const f of files) {
    const p = JSON.parse(readFileSync(f, 'utf8')) as CpuProfile;
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, ProfileNode>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n);
    const name = (n: ProfileNode) => {
      const cf = n.callFrame;
      return cf.url ? `${cf.functionName || '(anonymous)'} ${short(cf.url)}:${cf.lineNumber + 1}` : cf.functionName;
    };
    // A native leaf (crypto's SignJob.run, SQLite's statements, writev) is named with the JS frames that
    // called it, up to the first one in our code, so that "run" says whose signature it was.
    const keyOf = (n: ProfileNode): string => {
      if (n.callFrame.url) return name(n);
      const chain: string[] = [];
      for (let q = parent.get(n.id); q && chain.length < 4; q = parent.get(q.id)) {
        chain.push(name(q));
        if (q.callFrame.url.includes('/src/')) break;
      }
      return chain.length ? `${n.callFrame.functionName} ← ${chain.join(' ← ')}` : n.callFrame.functionName;
    };
    for (let i = 0; i < p.samples.length; i++) {
      const n = byId.get(p.samples[i]);
      if (!n) continue;
      const dt = (p.timeDeltas[i] ?? 0) / 1000;
      const cf = n.callFrame;
      if (cf.functionName === '(idle)' || cf.functionName === '(program)') continue;
      const key = keyOf(n);
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
