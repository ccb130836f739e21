/**
 * The simulation the pruned-log tests share: 4 nodes on real SQLite ledgers in a fresh temp folder, seed 5,
 * requests arriving at 0.2 per virtual ms. `removeSimDirs` (call it in afterAll) deletes the folders.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Simulation } from '../../src/sim/world.ts';

const dirs: string[] = [];

export function removeSimDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** The simulation and its ledgers' folder (node i's ledger is `node-i.sqlite` there). */
export function simOnDisk(prefix: string, requests: number): { s: Simulation; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  const s = new Simulation({
    nodes: 4,
    requests,
    seed: 5,
    rate: 0.2,
    keepAllCertificates: false,
    maxTimeMs: 120_000,
    ledgerDir: dir,
  });
  return { s, dir };
}
