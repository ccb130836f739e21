/**
 * A backup that dies right after it persisted the NEW-VIEW it enters a view by (before any vote in that
 * view left) restarts with its disk kept in that view, not changing view, with the re-proposals above its
 * last executed batch pinned again (Replica.restore, restorePins); its first catchUp step prepares them,
 * and the group, which needs it for a quorum while the old primary is down, goes on safely.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hex } from '../../src/protocol/index.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { Simulation } from '../../src/sim/world.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'dropbear-newview-restart-'));
  dirs.push(d);
  return d;
}
// Private state, read for the assertions only.
type Internals = { slots: Map<number, { pinned?: { view: number; digest: Uint8Array } }> };
/** The seqs above its last executed batch that view 1's NEW-VIEW pins at node `r`, with their digests. */
const pins = (r: { lastExecuted: number }) =>
  [...(r as unknown as Internals).slots]
    .filter(([seq, s]) => s.pinned?.view === 1 && seq > r.lastExecuted)
    .map(([seq, s]) => `${seq}:${hex(s.pinned!.digest)}`)
    .sort();

describe('a backup that crashes right after persisting its NEW-VIEW record', () => {
  for (const ledger of ['in-memory log', 'SQLite ledger'] as const)
    it(`restarts in that view with its pins and the group stays safe and live (${ledger})`, () => {
      const s = new Simulation({
        nodes: 4,
        requests: 200,
        seed: 43,
        rate: 0.5,
        maxTimeMs: 60_000,
        ...(ledger === 'SQLite ledger' ? { ledgerDir: tmp() } : {}),
      });
      // Node 3 hears nobody from 95 ms to 1.5 s, so it has not executed the last batches the others
      // prepared when the primary dies at 100 ms: view 1's NEW-VIEW re-proposes them above its last one.
      s.at(95, () => {
        for (const a of [0, 1, 2]) s.links.set(`${a}->3`, { loss: 1 });
      });
      s.at(100, () => s.crash(0));
      s.at(1500, () => {
        for (const a of [0, 1, 2]) s.links.delete(`${a}->3`);
      });
      let pinsBefore: string[] | null = null;
      let restarted = false;
      const prepared: string[] = [];
      s.crashAfterPersist = (node, rec) => {
        if (node.id !== 3) return false;
        // What node 3 prepares in view 1 once restarted (its log is pruned later at a stable checkpoint).
        if (restarted && rec.kind === 'prepare' && rec.view === 1)
          prepared.push(`${rec.seq}:${hex(rec.digest)}`);
        if (rec.kind !== 'newView' || pinsBefore) return false;
        pinsBefore = pins(node.replica);
        return true;
      };
      let restored: { view: number; changing: boolean; pins: string[] } | null = null;
      s.at(4000, () => {
        expect(s.nodes[3].crashed).toBe(true);
        restarted = true;
        s.restart(3, false);
        const r = s.nodes[3].replica;
        restored = { view: r.view, changing: r.viewChanging, pins: pins(r) };
      });
      s.at(9000, () => s.restart(0, false));
      const r = s.run();
      s.close();
      // Not vacuous: the NEW-VIEW re-proposed batches above node 3's last executed one.
      expect(pinsBefore!.length).toBeGreaterThan(0);
      expect(restored).toEqual({ view: 1, changing: false, pins: pinsBefore });
      // Once restarted, it prepared the re-proposals in view 1 (once it fetched their requests).
      for (const p of pinsBefore!) expect(prepared).toContain(p);
      expect(r.done).toBe(true);
      expect(checkRun(r)).toEqual({ ok: true, problems: [] });
      for (const id of [1, 2, 3]) expect(r.nodes[id].replica.view).toBeGreaterThanOrEqual(1);
    }, 60_000);
});
