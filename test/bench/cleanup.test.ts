/**
 * bench/lib/cleanup.ts benchTempDir: bench:restart and bench:ledger run synchronously, so Ctrl-C ends them
 * before any handler runs and their temporary folders stayed (239 MB and 17 MB seen). Each run now removes
 * the folders of its kind whose process is gone.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { benchTempDir } from '../../bench/lib/cleanup.ts';

const root = mkdtempSync(join(tmpdir(), 'dropbear-cleanup-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('benchTempDir', () => {
  it("removes the folders of its prefix whose process has exited, keeps a live process's and others'", () => {
    // A process id that is surely gone: a child that ran and exited.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    expect(dead).toBeGreaterThan(0);
    const left = join(root, `dropbear-bench-restart-${dead}-abc123`);
    mkdirSync(left);
    writeFileSync(join(left, 'ledger.sqlite'), 'x'.repeat(1000));
    const live = join(root, `dropbear-bench-restart-${process.pid}-def456`);
    mkdirSync(live);
    const other = join(root, `dropbear-bench-ledger-${dead}-ghi789`);
    mkdirSync(other);
    const made = benchTempDir('dropbear-bench-restart-', root);
    expect(existsSync(left)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(existsSync(other)).toBe(true);
    expect(made.startsWith(join(root, `dropbear-bench-restart-${process.pid}-`))).toBe(true);
    expect(readdirSync(root).sort()).toEqual([made, live, other].map((p) => p.slice(root.length + 1)).sort());
  });
});
