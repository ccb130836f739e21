import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { verifyEvidence } from '../../src/consensus/evidence.ts';
import { EVIDENCE_PER_NODE_KIND, Replica } from '../../src/consensus/replica.ts';
import { decode, Evidence, encode } from '../../src/protocol/index.ts';
import { simulate } from '../../src/sim/world.ts';
import { G, NEVER, resultsOf, T0, wire } from './fixtures.ts';

describe('misbehaviour evidence', () => {
  it('a double vote is stored as a proof anyone can check against the genesis', () => {
    const r = simulate({ nodes: 4, requests: 60, seed: 3, byzantine: new Map([[2, 'double-vote']]) });
    const proofs = r.nodes.filter((n) => n.id !== 2).flatMap((n) => n.replica.evidence);
    expect(proofs.length).toBeGreaterThan(0);
    for (const e of proofs) {
      expect(e.node).toBe(2);
      expect(e.proof.kind).toBe('doubleVote');
      // It survives the canonical codec (what the ledger stores) and convicts node 2.
      const back = decode(Evidence, encode(Evidence, e.proof));
      expect(verifyEvidence(back, r.group.genesis)).toBe(2);
    }
    // Each offence is recorded once per observer, however often it is seen again.
    for (const n of r.nodes) {
      const keys = n.replica.evidence.map((e) => e.detail);
      expect(new Set(keys).size).toBe(keys.length);
    }
  });

  it('an equivocating primary is convicted by its two signed pre-prepares', () => {
    const r = simulate({
      nodes: 4,
      requests: 40,
      seed: 4,
      byzantine: new Map([[0, 'equivocating-primary']]),
    });
    const proofs = r.nodes.filter((n) => n.id !== 0).flatMap((n) => n.replica.evidence);
    const eq = proofs.filter((e) => e.proof.kind === 'equivocation');
    expect(eq.length).toBeGreaterThan(0);
    for (const e of eq) expect(verifyEvidence(e.proof, r.group.genesis)).toBe(0);
  });

  it('forged or inconsistent evidence convicts nobody', () => {
    const r = simulate({ nodes: 4, requests: 60, seed: 3, byzantine: new Map([[2, 'double-vote']]) });
    const e = r.nodes[0].replica.evidence[0].proof;
    if (e.kind !== 'doubleVote') throw new Error('expected a double vote');
    const flipped = { ...e, b: { ...e.b, signature: e.b.signature.map((x, i) => (i === 0 ? x ^ 1 : x)) } };
    expect(verifyEvidence(flipped, r.group.genesis)).toBeNull();
    expect(verifyEvidence({ ...e, b: e.a }, r.group.genesis)).toBeNull(); // the same statement twice
    const other = simulate({ nodes: 4, requests: 5, seed: 99 }).group.genesis;
    expect(verifyEvidence(e, other)).toBeNull(); // another group's keys
    const eqv = {
      kind: 'equivocation' as const,
      node: 0,
      view: 0,
      seq: 1,
      digestA: new Uint8Array(32),
      signatureA: new Uint8Array(64),
      digestB: new Uint8Array(32).fill(1),
      signatureB: new Uint8Array(64),
    };
    expect(verifyEvidence(eqv, r.group.genesis)).toBeNull();
  });

  it('a peer double-voting on many requests at once costs a bounded number of proofs, not one per request', () => {
    // Two RESULTS of node 2 over the same 300 request ids (none held here: orphan votes), every answer
    // different. Each double-vote proof holds both whole batches: one proof per request made the node
    // store (and log) 300 proofs of both batches, quadratic in what the peer sent (65,536 entries a batch
    // fit a frame: ~5 MiB a proof, 65,536 proofs), and keep them in memory for good.
    const r = new Replica(G.genesis, 0, G.keys[0], { retransmitMs: NEVER, viewChangeTimeoutMs: NEVER });
    const ids = Array.from({ length: 300 }, () => new Uint8Array(randomBytes(32)));
    const acts = [7, 8].flatMap((label, i) =>
      r.step(
        { type: 'message', from: 2, msg: wire({ kind: 'results', signed: resultsOf(2, ids, label) }) },
        T0 + i,
      ),
    );
    const stored = acts.filter((a) => a.type === 'evidence');
    expect(stored.length).toBeGreaterThan(0);
    expect(stored.length).toBeLessThanOrEqual(EVIDENCE_PER_NODE_KIND);
    expect(r.evidence.length).toBe(stored.length);
    for (const e of r.evidence) expect(verifyEvidence(e.proof, G.genesis)).toBe(2);
    // Still counted, every one of them.
    expect(r.misbehaviour.get(2)?.get('double-vote')).toBe(300);
  });
});
