// Nodes started by `group start` stop when that process ends, even when it is killed with SIGKILL.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { initGroup } from '../../src/cli/group.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/group-parent.ts', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'dropbear-parent-'));
let pids: number[] = [];

// Running (a process that exited but is not yet reaped by whoever adopted it counts as gone).
const alive = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
};

afterAll(() => {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

describe('group start', () => {
  it('its nodes stop by themselves when the process that started them is killed', async () => {
    const dir = join(root, 'group');
    await initGroup({ dir, nodes: 4, models: Array(4).fill(STANDIN_MODEL) });
    const parent = spawn(process.execPath, ['--import', 'tsx', FIXTURE, dir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    pids = await new Promise<number[]>((resolve, reject) => {
      let out = '';
      parent.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const line = out.split('\n').find((l) => l.startsWith('['));
        if (line) resolve(JSON.parse(line) as number[]);
      });
      parent.once('exit', (code) =>
        reject(new Error(`the parent exited (${code}) before its nodes were ready`)),
      );
    });
    expect(pids).toHaveLength(4);
    expect(pids.every(alive)).toBe(true);

    parent.kill('SIGKILL');
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && pids.some(alive)) await new Promise((r) => setTimeout(r, 100));
    expect(pids.filter(alive)).toEqual([]);
  }, 90_000);
});
