/**
 * Replacing a small file whole or not at all, durably: what the ledger's boot marker and the CLI's output
 * files (genesis, configs, certificates, pages) are written with.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * Writes `data` to `tmp`, fsyncs it and renames it over `file`, so a full disk, a crash or a power cut
 * leaves the old file or none, never half of the new one; on a failure after `tmp` was opened it is
 * removed, and the error is thrown as it came. Then the folder is fsynced, so the rename itself is durable: with `dirSync`
 * 'required' a failure of that is thrown too, with 'best-effort' it is ignored (some file systems cannot
 * sync a folder; the file is whole under its name either way).
 */
export function replaceFile(
  file: string,
  data: string,
  tmp: string,
  dirSync: 'required' | 'best-effort',
): void {
  // Not created here if it cannot be opened: nothing of ours to remove (`tmp` may be someone else's folder).
  const fd = openSync(tmp, 'w');
  try {
    try {
      writeFileSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  try {
    const dir = openSync(dirname(resolve(file)), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch (e) {
    if (dirSync === 'required') throw e;
  }
}
