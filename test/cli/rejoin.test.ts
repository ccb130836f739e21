/**
 * `dropbear node` on a data folder whose ledger is gone, as real processes: a plain start is refused with
 * LEDGER_LOST (the boot marker says a node ran there), and `--rejoin` starts it with a new ledger as a node
 * that may have signed before (forgetful: docs/ledger.md; what it then signs is tested in
 * test/node/restart-results.test.ts). A node already running on the folder is LEDGER_LOCKED.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGroup } from '../../src/cli/group.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';
import { type Ran, runCli } from './run-cli.ts';

const KILL_AFTER_MS = 60_000;
const root = mkdtempSync(join(tmpdir(), 'dropbear-rejoin-'));
const group = join(root, 'group');
const config = join(group, 'node-3.json');
const ledger = join(group, 'data', 'node-3', 'ledger.sqlite');

/** Starts node 3 with `extra` flags; resolves with the child once it says it serves, and its end. */
function startNode(extra: string[] = []): Promise<{ child: ChildProcess; ended: Promise<Ran> }> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess | undefined;
    const ended = runCli(['node', '--config', config, ...extra], KILL_AFTER_MS, (c) => {
      child = c;
      // All of stdout so far: the line may come split over two reads.
      let out = '';
      c.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('node 3 serving ')) resolve({ child: c, ended });
      });
    });
    ended.then((r) => {
      if (child) reject(new Error(`node ended before serving (${r.code}): ${r.stderr}`));
    }, reject);
  });
}

describe('a node whose ledger is lost', () => {
  beforeAll(async () => {
    await initGroup({ dir: group, nodes: 4, models: Array(4).fill(STANDIN_MODEL), name: 'rejoin' });
  }, 60_000);
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('is refused a plain start (LEDGER_LOST) and starts with --rejoin; a second node on the folder is LEDGER_LOCKED', async () => {
    const first = await startNode();
    expect(existsSync(`${ledger}.boot`)).toBe(true);
    // Another node on the same folder while the first runs.
    const second = await runCli(['node', '--config', config], KILL_AFTER_MS);
    expect(second.code).toBe(2);
    expect(second.stderr).toContain('LEDGER_LOCKED');
    first.child.kill('SIGTERM');
    expect((await first.ended).code).toBe(0);

    for (const s of ['', '-wal', '-shm']) rmSync(`${ledger}${s}`, { force: true });
    const plain = await runCli(['node', '--config', config], KILL_AFTER_MS);
    expect(plain.code).toBe(2);
    expect(plain.stderr).toMatch(/LEDGER_LOST.*--rejoin/);
    // Nothing written (SQLite's open may leave an empty file: still LEDGER_LOST next time).
    expect(existsSync(ledger) ? statSync(ledger).size : 0).toBe(0);

    const rejoined = await startNode(['--rejoin']);
    rejoined.child.kill('SIGTERM');
    const r = await rejoined.ended;
    expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({
      code: 0,
      signal: null,
      stderr: '',
    });
    expect(r.stdout).toContain('rejoining with a new ledger (--rejoin)');
    // Its ledger now holds records: --rejoin again is refused, a plain start is fine.
    const again = await runCli(['node', '--config', config, '--rejoin'], KILL_AFTER_MS);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('LEDGER_BAD_OPTION');
  }, 120_000);
});
