/**
 * A small, really fillable file system for the disk-full tests (test/e2e/disk-full*.test.ts): a tmpfs
 * mounted under a fresh temporary folder. Mounting needs root (CAP_SYS_ADMIN); elsewhere `onTmpfs` skips
 * its tests with a warning, unless DROPBEAR_REQUIRE_TMPFS is set, where they run and fail instead.
 */
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';

export interface SmallDisk {
  /** A temporary folder for the test (the tmpfs is `full`, inside it). */
  root: string;
  /** Where the tmpfs is mounted. */
  full: string;
  mounted: boolean;
  /** `it`, skipped where no tmpfs could be mounted (unless DROPBEAR_REQUIRE_TMPFS is set). */
  onTmpfs: ReturnType<typeof it.skipIf>;
  /**
   * Fills the file system at `dir` (default `full`) with one file, `filler`, up to its last free byte, then
   * gives back `leave` bytes (a multiple of the 4 KiB page tmpfs counts in); returns the file.
   */
  fillUp(leave?: number, dir?: string): string;
  /** Unmounts and removes everything (after the processes using it stopped). */
  remove(): void;
}

export function smallDisk(test: string, size: string): SmallDisk {
  const root = mkdtempSync(join(tmpdir(), `dropbear-${test}-`));
  const full = join(root, 'full');
  mkdirSync(full);
  const mounted =
    process.getuid?.() === 0 &&
    spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', full]).status === 0;
  const required = process.env.DROPBEAR_REQUIRE_TMPFS !== undefined;
  if (!mounted && !required)
    console.warn(`${test}: cannot mount a tmpfs here (needs root): the real-disk tests are skipped`);
  return {
    root,
    full,
    mounted,
    onTmpfs: it.skipIf(!mounted && !required),
    fillUp(leave = 0, dir = full) {
      expect(mounted, 'DROPBEAR_REQUIRE_TMPFS is set but no tmpfs could be mounted (run as root)').toBe(true);
      const file = join(dir, 'filler');
      const fd = openSync(file, 'w');
      const chunk = Buffer.alloc(4096, 0xaa);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (e) {
        if ((e as { code?: string }).code !== 'ENOSPC') throw e;
        ftruncateSync(fd, fstatSync(fd).size - leave);
      } finally {
        closeSync(fd);
      }
      return file;
    },
    remove() {
      if (mounted) spawnSync('umount', [full]);
      rmSync(root, { recursive: true, force: true });
    },
  };
}
