import { describe, expect, it } from 'vitest';
import { verifyEvidence } from '../../src/consensus/evidence.ts';
import { decode, Evidence, encode } from '../../src/protocol/index.ts';
import { simulate } from '../../src/sim/world.ts';

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
});
