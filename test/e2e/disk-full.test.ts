/**
 * A node whose disk fills, with real processes and a really full file system: node 3's data folder lives on
 * a small tmpfs that a filler file fills while the group serves. Node 3 stops with LEDGER_DISK_FULL (until
 * 2026-12-06: SQLite's bare "database or disk is full", thrown out of the group commit, and at the next start
 * LEDGER_UNREADABLE), the other three go on certifying, a start while the disk is still full says
 * LEDGER_DISK_FULL again, and once there is room the node starts, catches up and serves as before: nothing
 * it recorded was lost.
 *
 * Mounting a tmpfs needs root (CAP_SYS_ADMIN); elsewhere the test is skipped with a warning, unless
 * DROPBEAR_REQUIRE_TMPFS is set, where it fails instead. The host and ledger tests cover the same path with
 * SQLite's page limit (test/node/host.test.ts, test/ledger/sqlite.test.ts).
 */
import { mkdirSync, symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect } from 'vitest';
import { type GroupProcesses, initGroup, loadGroup, startGroup } from '../../src/cli/group.ts';
import { DropbearClient } from '../../src/client/index.ts';
import { STANDIN_MODEL, standInInput } from '../../src/node/standin-backend.ts';
import { smallDisk } from '../support/tmpfs.ts';

const disk = smallDisk('disk-full.test.ts', '3m');
const { root, full, onTmpfs } = disk;

let procs: GroupProcesses | undefined;
afterAll(async () => {
  await procs?.stop();
  disk.remove();
});

async function until(what: string, ok: () => Promise<boolean> | boolean, log: string[], ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms\n${log.slice(-40).join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('a node whose disk fills', () => {
  onTmpfs(
    'stops with LEDGER_DISK_FULL while the others go on, refuses to start until there is room, then catches up',
    async () => {
      const dir = join(root, 'group');
      await initGroup({ dir, nodes: 4, models: Array(4).fill(STANDIN_MODEL), name: 'diskfull' });
      // Node 3's data folder (data/node-3, as `group init` writes its config) on the small file system.
      mkdirSync(join(dir, 'data'), { recursive: true });
      mkdirSync(join(full, 'node-3'));
      symlinkSync(join(full, 'node-3'), join(dir, 'data', 'node-3'));
      const g = loadGroup(dir);
      const log: string[] = [];
      procs = startGroup(g, (l) => log.push(l));
      await procs.ready(60_000);
      const client = new DropbearClient({ genesis: g.genesis, nodes: g.file.nodes, key: g.clientKey() });
      const status = async (id: number) =>
        (await (await fetch(`${g.file.nodes[id].api}/v1/status`)).json()) as { lastExecuted: number };
      let nonce = 0;
      const infer = async (count: number) => {
        for (let i = 0; i < count; i++) {
          const r = await client.infer(standInInput(nonce++));
          expect(r.certificate).toBeDefined();
        }
      };
      await infer(3);
      await until('node 3 executed the first requests', async () => (await status(3)).lastExecuted > 0, log);

      const filler = disk.fillUp();
      const node3 = procs.children.get(3);
      // The group goes on certifying with three nodes while node 3 meets the full disk and stops.
      for (let round = 0; round < 200 && node3?.exitCode === null; round++) await infer(2);
      await until('node 3 stopped', () => node3?.exitCode !== null, log);
      expect(node3?.exitCode).toBe(2);
      const lines = log.filter((l) => l.startsWith('[node 3]')).join('\n');
      expect(lines).toMatch(/error \[LEDGER_DISK_FULL\]: the disk holding ledger .* is full/);
      expect(lines).not.toMatch(/database or disk is full\)?$/m);
      await infer(3); // three nodes are a quorum

      // Started again on the still-full disk: the same code, not LEDGER_UNREADABLE.
      const again = procs.restart(3);
      await until('the start on a full disk failed', () => again.exitCode !== null, log);
      expect(again.exitCode).toBe(2);
      const restartLines = log.filter((l) => l.startsWith('[node 3]')).join('\n');
      expect(restartLines.match(/error \[LEDGER_DISK_FULL\]/g)?.length).toBeGreaterThanOrEqual(2);
      expect(restartLines).not.toMatch(/LEDGER_UNREADABLE/);

      // Room again: it starts, catches up with what the others certified meanwhile, and votes on.
      unlinkSync(filler);
      procs.restart(3);
      await procs.ready(60_000);
      await infer(3);
      await until(
        'node 3 caught up',
        async () => {
          const [a, b] = await Promise.all([status(0), status(3)]);
          return b.lastExecuted === a.lastExecuted;
        },
        log,
      );
    },
    120_000,
  );
});
