/**
 * Crash and network faults, each a named scenario on real SQLite ledgers: restarts with the disk kept
 * or lost, a primary crash, partitions that heal, asymmetric links, delays above the timeouts, a node
 * that dies between persisting and sending.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyCertificate } from '../../src/certificate/index.ts';
import type { Replica } from '../../src/consensus/replica.ts';
import { verifyLedgerFile } from '../../src/ledger/verify.ts';
import { hex, type SignedRequest, type SignedResults } from '../../src/protocol/index.ts';
import { registerScript } from '../../src/sim/byzantine.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { type SimOptions, type SimResult, Simulation } from '../../src/sim/world.ts';

// A faulty node that answers state requests with every request's client signature replaced: the ids
// (hashes of the requests alone) still match the batch.
const forged = (sr: SignedRequest): SignedRequest => ({
  ...sr,
  auth: { ...sr.auth, signature: new Uint8Array(64).fill(7) },
});
registerScript('test:forged-state-auth', () => ({
  outbound: (_ctx, to, msg) =>
    msg.kind === 'stateResponse'
      ? [
          {
            to,
            msg: { ...msg, batches: msg.batches.map((b) => ({ ...b, requests: b.requests.map(forged) })) },
          },
        ]
      : [{ to, msg }],
}));

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function sim(opts: Partial<SimOptions> = {}): { sim: Simulation; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'dropbear-crash-'));
  dirs.push(dir);
  const s = new Simulation({
    nodes: 4,
    requests: 400,
    seed: 7,
    rate: 0.5, // requests keep arriving for 800 virtual ms
    keepAllCertificates: true,
    maxTimeMs: 60_000,
    ledgerDir: dir,
    ...opts,
  });
  return { sim: s, dir };
}

function finish(s: Simulation, dir: string): SimResult {
  const r = s.run();
  s.close();
  expect(r.done).toBe(true);
  expect(checkRun(r)).toEqual({ ok: true, problems: [] });
  for (const n of r.nodes) {
    if (!r.honest.includes(n.id)) continue;
    // Every honest node serves a valid certificate for every request, the same as everyone else.
    expect(n.certificates.size).toBe(r.requests.size);
    for (const [id, c] of n.certificates) {
      expect(verifyCertificate(c, r.group.genesis).ok).toBe(true);
      expect(hex(c.receipt.batchDigest)).toBe(hex(r.certificates.get(id)!.receipt.batchDigest));
    }
    // Its SQLite file re-verifies end to end: chain, signatures, Merkle roots, replay.
    const v = verifyLedgerFile(join(dir, `node-${n.id}.sqlite`));
    expect(v.problems).toEqual([]);
    expect(v.batches).toBe(r.batches);
  }
  return r;
}

/**
 * The RESULTS a replica keeps whose count of holds (`open`: its votes for requests not executed, and the
 * proposals that name it) is more than the votes and proposals that still hold it: nothing will release
 * them, so they stay for the node's life (until 2026-12-07: a slot executed before a NEW-VIEW re-proposed
 * it pinned its RESULTS again, and was dropped at the next stable checkpoint still pinning them).
 */
function unreleasedResults(replica: Replica): string[] {
  const r = replica as unknown as {
    results: Map<string, { open: number; signed: SignedResults }>;
    votes: Map<string, Map<number, { digestHex: string }>>;
    slots: Map<number, { refs: string[] }>;
  };
  const holds = new Map<string, number>();
  for (const m of r.votes.values())
    for (const v of m.values()) holds.set(v.digestHex, (holds.get(v.digestHex) ?? 0) + 1);
  for (const slot of r.slots.values()) for (const d of slot.refs) holds.set(d, (holds.get(d) ?? 0) + 1);
  const out: string[] = [];
  for (const [d, st] of r.results)
    if (st.open > (holds.get(d) ?? 0))
      out.push(
        `${d.slice(0, 12)} of node ${st.signed.batch.node}: open ${st.open}, held ${holds.get(d) ?? 0}`,
      );
  return out;
}

describe('crash faults', () => {
  it('a backup restarted from its SQLite file resumes where it stopped, then catches up', () => {
    const { sim: s, dir } = sim();
    let atCrash = 0;
    s.at(200, () => {
      atCrash = s.nodes[2].replica.lastExecuted;
      s.crash(2);
    });
    let atRestart = -1;
    s.at(500, () => {
      s.restart(2, false);
      atRestart = s.nodes[2].replica.lastExecuted;
    });
    const r = finish(s, dir);
    expect(atCrash).toBeGreaterThan(0);
    expect(atRestart).toBe(atCrash); // resumed from the file, not from zero
    expect(r.nodes[2].replica.lastExecuted).toBe(r.batches);
  });

  it('a backup whose disk is lost catches up by state transfer and serves certificates for what it missed', () => {
    const { sim: s, dir } = sim();
    const certifiedWhileAway = new Set<string>();
    s.at(200, () => s.crash(1));
    s.observer.certified = (node, certs) => {
      if (node.id === 0 && s.nodes[1].crashed)
        for (const c of certs) certifiedWhileAway.add(hex(c.outcome.requestId));
    };
    s.at(500, () => {
      s.restart(1, true);
      expect(s.nodes[1].replica.lastExecuted).toBe(0);
    });
    const r = finish(s, dir);
    expect(certifiedWhileAway.size).toBeGreaterThan(20);
    for (const id of certifiedWhileAway) expect(r.nodes[1].certificates.has(id)).toBe(true);
  });

  it('the primary crashing (disk kept) causes a view change; certification continues', () => {
    const { sim: s, dir } = sim();
    s.at(150, () => s.crash(0));
    s.at(3000, () => s.restart(0, false));
    const r = finish(s, dir);
    for (const n of r.nodes.slice(1)) expect(n.replica.view).toBeGreaterThanOrEqual(1);
    expect(r.nodes[0].replica.lastExecuted).toBe(r.batches);
    // No RESULTS is held open by a hold nothing will release (unreleasedResults): the NEW-VIEW re-proposed
    // batches the nodes had executed already, and each such re-proposal pinned the RESULTS its votes name.
    for (const n of r.nodes.slice(1)) expect(unreleasedResults(n.replica), `node ${n.id}`).toEqual([]);
  });

  it('a NEW-VIEW that re-proposes batches the nodes executed leaves no RESULTS pinned once a checkpoint covers them', () => {
    // Checkpoints every 4 batches: the view change comes with executed batches above the stable checkpoint,
    // and more checkpoints follow it. No ledger files: the replicas' memory is what is looked at.
    const s = new Simulation({
      nodes: 4,
      requests: 100,
      seed: 7,
      rate: 0.5,
      maxTimeMs: 60_000,
      replica: { checkpointInterval: 4, window: 8 },
    });
    s.at(100, () => s.crash(0));
    s.at(1500, () => s.restart(0, false));
    const r = s.run();
    s.close();
    expect(r.done).toBe(true);
    for (const n of r.nodes.slice(1)) expect(n.replica.view).toBeGreaterThanOrEqual(1);
    for (const n of r.nodes) expect(unreleasedResults(n.replica), `node ${n.id}`).toEqual([]);
  });

  it('the primary losing its disk rejoins as a backup of the new view', () => {
    const { sim: s, dir } = sim();
    s.at(150, () => s.crash(0));
    s.at(3000, () => s.restart(0, true));
    const r = finish(s, dir);
    expect(r.nodes[0].replica.lastExecuted).toBe(r.batches);
  });

  it('a node that dies between persisting its PREPARE and sending it never signs a conflicting one', () => {
    const { sim: s, dir } = sim();
    let crashed = false;
    s.crashAfterPersist = (node, rec) => {
      if (crashed || node.id !== 3 || rec.kind !== 'prepare' || rec.seq !== 3) return false;
      crashed = true;
      return true;
    };
    s.at(600, () => s.restart(3, false));
    const r = finish(s, dir);
    expect(crashed).toBe(true);
    for (const n of r.nodes) expect(n.replica.evidence.filter((e) => e.node === 3)).toEqual([]);
  });
});

describe('network faults', () => {
  it('a partition that isolates the primary heals; nothing is lost', () => {
    const { sim: s, dir } = sim();
    s.at(100, () => {
      for (const b of [1, 2, 3]) {
        s.links.set(`0->${b}`, { loss: 1 });
        s.links.set(`${b}->0`, { loss: 1 });
      }
    });
    s.at(2500, () => s.links.clear());
    const r = finish(s, dir);
    expect(Math.max(...r.nodes.map((n) => n.replica.view))).toBeGreaterThanOrEqual(1);
  });

  it('a partition splitting the group 2–2 stops progress without harm, and it resumes when healed', () => {
    const { sim: s, dir } = sim();
    let during = 0;
    s.at(100, () => {
      for (const a of [0, 1])
        for (const b of [2, 3]) {
          s.links.set(`${a}->${b}`, { loss: 1 });
          s.links.set(`${b}->${a}`, { loss: 1 });
        }
    });
    s.at(400, () => {
      during = Math.max(...s.nodes.map((n) => n.replica.lastExecuted));
    });
    s.at(1500, () => {
      // No quorum on either side: nothing new was executed.
      expect(Math.max(...s.nodes.map((n) => n.replica.lastExecuted))).toBe(during);
      s.links.clear();
    });
    finish(s, dir);
  });

  it('asymmetric links: one node hears everyone but nobody hears it', () => {
    const { sim: s, dir } = sim();
    for (const b of [0, 1, 3]) s.links.set(`2->${b}`, { loss: 1 });
    s.at(1500, () => s.links.clear());
    finish(s, dir);
  });

  it('delays above the view change timeout on the primary links', () => {
    const { sim: s, dir } = sim();
    s.at(100, () => {
      for (const b of [1, 2, 3]) s.links.set(`0->${b}`, { delayMs: 1500 });
    });
    s.at(3000, () => s.links.clear());
    finish(s, dir);
  });

  it('a node catching up takes no request whose client signature a faulty peer forged (its ledger verifies)', () => {
    const { sim: s, dir } = sim({ byzantine: new Map([[2, 'test:forged-state-auth']]) });
    s.at(200, () => s.crash(1));
    s.at(500, () => s.restart(1, true));
    const r = finish(s, dir);
    expect(r.nodes[1].replica.lastExecuted).toBe(r.batches);
    expect(r.nodes[1].replica.misbehaviour.get(2)?.get('bad-state') ?? 0).toBeGreaterThan(0);
  });
});
