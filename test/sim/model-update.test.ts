/**
 * Model updates (DESIGN.md "Model updates", PROTOCOL.md rule 5): an owner submits a signed ModelUpdate;
 * it is ordered like a request; from the batch that carries it on only votes with the new digest count;
 * requests voted on with the old model and not yet ordered are inferred again; certificates name the
 * digests that produced them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyCertificate } from '../../src/certificate/index.ts';
import {
  type Certificate,
  equalBytes,
  hex,
  type Result,
  sha256,
  signModelUpdate,
} from '../../src/protocol/index.ts';
import { registerScript } from '../../src/sim/byzantine.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { standInResult, trueLabel } from '../../src/sim/standin.ts';
import { EPOCH_MS, type SimNode, type SimOptions, Simulation } from '../../src/sim/world.ts';

const enc = new TextEncoder();
const NEW = sha256(enc.encode('stand-in-model-2, version 2'));
const OTHER = sha256(enc.encode('stand-in-model-2, another version 2'));
const UPDATED = 2;

/** Node 2's new model answers differently on about a quarter of the inputs (label +7 from the truth). */
function differs(input: Uint8Array): boolean {
  return sha256(input)[0] < 64;
}

/** The hook: a node's answer depends on the digest it runs. Records which digests ran on which input. */
function makeClassify(ran: Map<string, Set<string>>): NonNullable<SimOptions['classify']> {
  return (node, digest, input) => {
    if (node === UPDATED) {
      const k = hex(input);
      let s = ran.get(k);
      if (!s) ran.set(k, (s = new Set()));
      s.add(hex(digest));
      if (equalBytes(digest, NEW) && differs(input))
        return { kind: 'class', top: [{ label: (trueLabel(input) + 7) % 1000, score: 900_000 }] };
    }
    return standInResult(node, input, { disagreement: 0.1 });
  };
}

const labelOf = (r: Result) => (r.kind === 'class' ? r.top[0].label : -1);

/** The seq at which node `n`'s ledger moved `node` to `version`, or null. */
function switchSeq(n: SimNode, node: number, version: number): number | null {
  return n.modelLog.find((m) => m.versions[node] === version)?.seq ?? null;
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('model updates', () => {
  it("replaces node 2's model while 1,000 requests flow: one switch seq, right digests, no loss, no duplicates", () => {
    const ran = new Map<string, Set<string>>();
    const s = new Simulation({
      nodes: 4,
      requests: 1000,
      seed: 11,
      keepAllCertificates: true,
      classify: makeClassify(ran),
    });
    const OLD = s.group.genesis.nodes[UPDATED].modelDigest;
    // Certificates handed out, per node and request: each exactly once.
    const handedOut = new Map<number, Map<string, number>>();
    s.observer.certified = (node, certs) => {
      let m = handedOut.get(node.id);
      if (!m) handedOut.set(node.id, (m = new Map()));
      for (const c of certs) m.set(hex(c.outcome.requestId), (m.get(hex(c.outcome.requestId)) ?? 0) + 1);
    };
    s.submitModelUpdateAt(40, UPDATED, NEW); // requests arrive over 0..100 ms
    const r = s.run();
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    expect(s.txLog.map((t) => [t.node, t.accepted])).toEqual([[UPDATED, true]]);

    // The switch: the same seq on every honest node, and every ledger ends at version 1 with NEW.
    const honest = r.nodes.filter((n) => r.honest.includes(n.id));
    const S = switchSeq(honest[0], UPDATED, 1);
    expect(S).not.toBeNull();
    for (const n of honest) {
      expect(switchSeq(n, UPDATED, 1)).toBe(S);
      expect(n.modelLog).toHaveLength(2); // genesis, then this one update
      const m = s.models(n.id);
      expect(m.versions).toEqual([0, 0, 1, 0]);
      expect(hex(m.digests[UPDATED])).toBe(hex(NEW));
      expect(n.replica.pendingTxs).toEqual([]);
    }

    // No loss, no duplicates: every request certified, once, in the same batch on every honest node.
    expect(r.certificates.size).toBe(1000);
    expect(r.duplicateCertificates).toEqual([]);
    for (const n of honest) {
      const m = handedOut.get(n.id)!;
      expect(m.size).toBe(1000);
      expect([...m.values()].every((c) => c === 1)).toBe(true);
      for (const [id, c] of r.certificates) expect(n.certificates.get(id)?.receipt.seq).toBe(c.receipt.seq);
    }

    // Every certificate's votes carry the digests current at its execution seq (on every honest node).
    const before: Certificate[] = [];
    const after: Certificate[] = [];
    for (const n of honest)
      for (const c of n.certificates.values()) {
        const models = n.modelsAt(c.receipt.seq).digests;
        for (const v of c.outcome.votes) expect(hex(v.modelDigest)).toBe(hex(models[v.node]));
        if (n.id === honest[0].id) (c.receipt.seq < S! ? before : after).push(c);
      }
    // The update went in while requests flowed: certificates on both sides of it, node 2 voting in both.
    const node2 = (c: Certificate) => c.outcome.votes.find((v) => v.node === UPDATED);
    const beforeVotes = before.map(node2).filter((v) => v !== undefined);
    const afterVotes = after.map(node2).filter((v) => v !== undefined);
    expect(beforeVotes.length).toBeGreaterThan(50);
    expect(afterVotes.length).toBeGreaterThan(50);
    for (const v of beforeVotes) expect(hex(v.modelDigest)).toBe(hex(OLD));
    for (const v of afterVotes) expect(hex(v.modelDigest)).toBe(hex(NEW));
    // The new model's answers are what the certificates show (it differs from the old one observably).
    let changed = 0;
    for (const c of after) {
      const v = node2(c);
      if (!v) continue;
      const input = r.requests.get(hex(c.outcome.requestId))!.input;
      const want = differs(input)
        ? (trueLabel(input) + 7) % 1000
        : labelOf(standInResult(UPDATED, input, { disagreement: 0.1 }));
      expect(labelOf(v.result)).toBe(want);
      if (differs(input)) changed++;
    }
    expect(changed).toBeGreaterThan(0);
    // Requests node 2 had answered with the old model and that were ordered after the switch were
    // inferred again with the new one (the old vote would not have counted).
    const reinferred = after.filter((c) => {
      const input = hex(r.requests.get(hex(c.outcome.requestId))!.input);
      return node2(c) && ran.get(input)?.has(hex(OLD));
    });
    expect(reinferred.length).toBeGreaterThan(0);
    // Certificates verify against the genesis.
    for (const [id, c] of r.certificates) {
      const v = verifyCertificate(c, r.group.genesis, { request: r.requests.get(id) });
      expect(v.ok).toBe(true);
    }
  });

  it('a forged update (signed with another key) is rejected and never changes a model', () => {
    const s = new Simulation({ nodes: 4, requests: 100, seed: 12, keepAllCertificates: true });
    const genesis = s.group.genesis;
    s.at(5, () => {
      const forged = s.submitModelUpdate(UPDATED, NEW, { signer: s.group.keys[3] });
      expect(forged).toMatchObject({ accepted: false, code: 'TX_BAD_SIGNATURE' });
      // Submitted at another node, for a node that does not exist, or signed by the client: all refused.
      expect(s.submitModelUpdate(UPDATED, NEW, { via: 0, signer: s.group.client })?.code).toBe(
        'TX_BAD_SIGNATURE',
      );
      const ghost = signModelUpdate(
        s.nodes[0].replica.groupId,
        { node: 9, version: 1, newDigest: NEW },
        s.group.keys[0],
      );
      expect(s.submitTx(1, ghost)?.code).toBe('TX_UNKNOWN_NODE');
    });
    const r = s.run();
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    for (const n of r.nodes) {
      expect(n.modelLog).toHaveLength(1);
      expect(s.models(n.id).digests.map(hex)).toEqual(genesis.nodes.map((x) => hex(x.modelDigest)));
      expect(n.replica.pendingTxs).toEqual([]);
      for (const c of n.certificates.values())
        for (const v of c.outcome.votes)
          expect(hex(v.modelDigest)).toBe(hex(genesis.nodes[v.node].modelDigest));
    }
    expect(s.txLog.every((t) => !t.accepted)).toBe(true);
  });

  it('a replayed update (same version) has no effect, whether refused on submission or ordered twice', () => {
    const s = new Simulation({ nodes: 4, requests: 300, seed: 13, rate: 1, keepAllCertificates: true });
    let first: ReturnType<Simulation['submitModelUpdate']> = null;
    s.at(20, () => {
      first = s.submitModelUpdate(UPDATED, NEW);
      expect(first?.accepted).toBe(true);
      // The same transaction again while it waits: a duplicate.
      expect(s.submitTx(UPDATED, first!.tx)?.code).toBe('TX_DUPLICATE');
      // A second, validly signed version 1 with another digest, submitted at another node before the first
      // is ordered: both are taken and ordered; the ledger applies the first in order and ignores the other.
      expect(s.submitModelUpdate(UPDATED, OTHER, { via: 1, version: 1 })?.accepted).toBe(true);
    });
    s.at(200, () => {
      // Long executed: the same transaction, and the other version 1 (the same bytes: ordered too, and
      // superseded), are already executed (the node remembers their ids); a version not above the current
      // one that was never ordered is stale.
      expect(s.submitTx(UPDATED, first!.tx)?.code).toBe('TX_ALREADY_EXECUTED');
      expect(s.submitModelUpdate(UPDATED, OTHER, { via: 3, version: 1 })?.code).toBe('TX_ALREADY_EXECUTED');
      expect(s.submitModelUpdate(UPDATED, OTHER, { via: 3, version: 0 })?.code).toBe('TX_STALE_VERSION');
    });
    const r = s.run();
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    const honest = r.nodes.filter((n) => r.honest.includes(n.id));
    const winner = hex(s.models(0).digests[UPDATED]);
    expect([hex(NEW), hex(OTHER)]).toContain(winner);
    const S = switchSeq(honest[0], UPDATED, 1);
    for (const n of honest) {
      // One change only, at the same seq, to the same digest, everywhere.
      expect(n.modelLog).toHaveLength(2);
      expect(switchSeq(n, UPDATED, 1)).toBe(S);
      expect(hex(s.models(n.id).digests[UPDATED])).toBe(winner);
      expect(s.models(n.id).versions[UPDATED]).toBe(1);
      expect(n.replica.pendingTxs).toEqual([]);
      for (const c of n.certificates.values()) {
        const models = n.modelsAt(c.receipt.seq).digests;
        for (const v of c.outcome.votes) expect(hex(v.modelDigest)).toBe(hex(models[v.node]));
      }
    }
  });

  it('an update submitted at a backup while the primary is down is ordered after the view change', () => {
    const s = new Simulation({ nodes: 4, requests: 0, seed: 14 });
    s.crash(0);
    s.submitModelUpdateAt(5, UPDATED, NEW);
    const up = [1, 2, 3];
    const r = s.run({ until: () => up.every((i) => s.models(i).versions[UPDATED] === 1) });
    expect(r.done).toBe(true);
    expect(s.txLog[0]).toMatchObject({ node: UPDATED, accepted: true });
    const S = switchSeq(s.nodes[1], UPDATED, 1);
    for (const i of up) {
      expect(s.nodes[i].replica.view).toBeGreaterThanOrEqual(1);
      expect(switchSeq(s.nodes[i], UPDATED, 1)).toBe(S);
      expect(hex(s.models(i).digests[UPDATED])).toBe(hex(NEW));
    }
  });

  it('a primary that never orders the update (it ignores it) is replaced, and the update goes through', () => {
    registerScript('test-ignore-txs', () => ({
      inbound: (_ctx, _from, msg) => (msg.kind === 'tx' ? [] : null),
    }));
    const s = new Simulation({
      nodes: 4,
      requests: 300,
      seed: 15,
      byzantine: new Map([[0, 'test-ignore-txs']]),
    });
    s.submitModelUpdateAt(10, UPDATED, NEW, { via: 1 });
    const honest = [1, 2, 3];
    const r = s.run({
      until: () => honest.every((i) => s.models(i).versions[UPDATED] === 1) && s.certificates.size === 300,
    });
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    const S = switchSeq(s.nodes[1], UPDATED, 1);
    for (const i of honest) {
      expect(s.nodes[i].replica.view).toBeGreaterThanOrEqual(1);
      expect(switchSeq(s.nodes[i], UPDATED, 1)).toBe(S);
    }
  });

  it('an executed update survives a restart from disk; the node keeps voting with the new model', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dropbear-model-update-'));
    dirs.push(dir);
    const ran = new Map<string, Set<string>>();
    const s = new Simulation({
      nodes: 4,
      requests: 400,
      seed: 16,
      rate: 1,
      ledgerDir: dir,
      keepAllCertificates: true,
      classify: makeClassify(ran),
    });
    s.submitModelUpdateAt(20, UPDATED, NEW);
    s.at(250, () => {
      expect(s.models(UPDATED).versions[UPDATED]).toBe(1);
      s.crash(UPDATED);
      s.restart(UPDATED, false);
      // Replayed from the SQLite file: the update is there, and the replica starts from it.
      expect(s.models(UPDATED).versions[UPDATED]).toBe(1);
      expect(hex(s.nodes[UPDATED].replica.currentModels[UPDATED])).toBe(hex(NEW));
      expect(s.nodes[UPDATED].replica.currentModelVersions[UPDATED]).toBe(1);
      // A replay of the update is refused by the restarted replica too.
      expect(s.submitModelUpdate(UPDATED, OTHER, { version: 1 })?.code).toBe('TX_STALE_VERSION');
    });
    const r = s.run();
    s.close();
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    const S = switchSeq(s.nodes[0], UPDATED, 1)!;
    let lateWithNode2 = 0;
    for (const c of r.certificates.values()) {
      const v = c.outcome.votes.find((x) => x.node === UPDATED);
      if (!v) continue;
      const old = hex(s.group.genesis.nodes[UPDATED].modelDigest);
      expect(hex(v.modelDigest)).toBe(c.receipt.seq >= S ? hex(NEW) : old);
      // Requests sent after the restart: node 2 voted on them with the new model (and was counted).
      if (r.requests.get(hex(c.outcome.requestId))!.request.timestamp >= EPOCH_MS + 260) lateWithNode2++;
    }
    expect(lateWithNode2).toBeGreaterThan(50);
  });
});
