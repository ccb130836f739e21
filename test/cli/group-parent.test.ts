// Nodes started by `group start` stop when that process ends, even when it is killed with SIGKILL.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { initGroup } from '../../src/cli/group.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/group-parent.ts', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'dropbear-parent-'));
const pids: number[] = [];
let parent: ChildProcess | null = null;

// Running (a process that exited but is not yet reaped by whoever adopted it counts as gone).
const alive = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
};

afterAll(() => {
  // A failed run must not leave the fixture or its nodes behind.
  if (parent?.pid && alive(parent.pid)) parent.kill('SIGKILL');
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

describe('group start', () => {
  // Starts the fixture; resolves with its nodes' PIDs.
  async function start(dir: string, mode: 'ready' | 'early'): Promise<ChildProcess> {
    const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE, dir, mode], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    parent = proc;
    const started = await new Promise<number[]>((resolve, reject) => {
      let out = '';
      proc.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        const line = out.split('\n').find((l) => l.startsWith('['));
        if (line) resolve(JSON.parse(line) as number[]);
      });
      proc.once('exit', (code) => reject(new Error(`the parent exited (${code}) before printing its nodes`)));
    });
    pids.push(...started);
    return proc;
  }

  async function allGone(nodes: number[]): Promise<number[]> {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && nodes.some(alive)) await new Promise((r) => setTimeout(r, 100));
    return nodes.filter(alive);
  }

  it('its nodes stop by themselves when the process that started them is killed', async () => {
    const dir = join(root, 'group');
    await initGroup({ dir, nodes: 4, models: Array(4).fill(STANDIN_MODEL) });
    const proc = await start(dir, 'ready');
    const nodes = pids.slice(-4);
    expect(nodes).toHaveLength(4);
    expect(nodes.every(alive)).toBe(true);
    proc.kill('SIGKILL');
    expect(await allGone(nodes)).toEqual([]);
  });

  it('and when it ends while they are still starting', async () => {
    const dir = join(root, 'group-early');
    await initGroup({ dir, nodes: 4, models: Array(4).fill(STANDIN_MODEL) });
    await start(dir, 'early');
    const nodes = pids.slice(-4);
    expect(nodes).toHaveLength(4);
    expect(await allGone(nodes)).toEqual([]);
  });
});
