/**
 * A node process whose log reader goes away (its stdout pipe closed, as when piped to `head` or to a log
 * shipper that died) keeps serving and still stops cleanly on SIGTERM. It used to die on the next line
 * and then hang in process.exit for ever, retrying the failed write, deaf to every signal but SIGKILL.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initGroup } from '../../src/cli/group.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';

const root = mkdtempSync(join(tmpdir(), 'dropbear-stdout-'));
let child: ChildProcess | null = null;

afterAll(() => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

describe('a node with a closed stdout', () => {
  it('keeps serving after its log reader goes away and exits 0 on SIGTERM', async () => {
    const file = await initGroup({
      dir: join(root, 'group'),
      nodes: 4,
      models: Array(4).fill(STANDIN_MODEL),
    });
    const proc = spawn(
      process.execPath,
      ['bin/dropbear.mjs', 'node', '--config', join(root, 'group', 'node-0.json')],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    child = proc;
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    // The first line out, then the reader goes away: every later write meets a closed pipe (EPIPE).
    await new Promise<void>((resolve, reject) => {
      proc.stdout?.once('data', () => resolve());
      proc.once('exit', (code) => reject(new Error(`node exited (${code}) before its first line`)));
    });
    proc.stdout?.destroy();

    const health = `${file.nodes[0].api}/healthz`;
    const deadline = Date.now() + 30_000;
    let status = 0;
    while (Date.now() < deadline && proc.exitCode === null) {
      status = await fetch(health, { signal: AbortSignal.timeout(1000) }).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(proc.exitCode, 'the node died when its stdout closed').toBeNull();
    expect(status).toBe(200);

    proc.kill('SIGTERM');
    const code = await Promise.race([
      exited,
      new Promise<string>((r) => setTimeout(() => r('still running'), 15_000)),
    ]);
    expect(code).toBe(0);
  });
});
