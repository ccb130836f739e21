import { describe, expect, it } from 'vitest';
import { Replica } from '../../src/consensus/replica.ts';
import { genesisProblem, quorumSize } from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';

describe('quorumSize', () => {
  it('is 2f + 1 when n = 3f + 1', () => {
    for (let f = 0; f <= 20; f++) expect(quorumSize(3 * f + 1, f)).toBe(2 * f + 1);
  });

  it('grows with n beyond 3f + 1: two quorums of five nodes share two (f + 1), not just one', () => {
    expect(quorumSize(5, 1)).toBe(4);
    expect(quorumSize(6, 1)).toBe(4);
    expect(quorumSize(7, 1)).toBe(5);
    expect(quorumSize(7, 2)).toBe(5);
    expect(quorumSize(9, 2)).toBe(6);
  });

  it('for every n ≤ 64 and f ≤ (n − 1) / 3: the smallest q whose quorums overlap in f + 1, and no more than n − f', () => {
    for (let n = 1; n <= 64; n++)
      for (let f = 0; 3 * f + 1 <= n; f++) {
        const q = quorumSize(n, f);
        expect(2 * q - n, `n=${n} f=${f}`).toBeGreaterThanOrEqual(f + 1); // any two quorums share an honest node
        expect(2 * (q - 1) - n, `n=${n} f=${f}`).toBeLessThan(f + 1); // and q − 1 would not
        expect(q, `n=${n} f=${f}`).toBeLessThanOrEqual(n - f); // live with f nodes silent
      }
  });
});

describe('genesisProblem', () => {
  const { genesis } = makeGroup(4, 1, 3);
  it('accepts a genesis that group init would write', () => {
    expect(genesisProblem(genesis)).toBeNull();
    expect(genesisProblem(makeGroup(5, 1, 3).genesis)).toBeNull();
  });
  it('refuses no nodes, n < 3f + 1, ids out of place, and one key for two nodes; so does a replica', () => {
    const nodes = genesis.nodes;
    expect(genesisProblem({ ...genesis, nodes: [] })).toMatch(/no nodes/);
    expect(genesisProblem({ ...genesis, f: 2 })).toMatch(/n=4 < 3f\+1 with f=2/);
    const swapped = [nodes[1], nodes[0], nodes[2], nodes[3]];
    expect(genesisProblem({ ...genesis, nodes: swapped })).toMatch(/position 0 has id 1/);
    const twice = [nodes[0], { ...nodes[1], publicKey: nodes[0].publicKey }, nodes[2], nodes[3]];
    expect(genesisProblem({ ...genesis, nodes: twice })).toMatch(
      /node 1 has the public key of an earlier node/,
    );
    const g = makeGroup(4, 1, 3);
    expect(() => new Replica({ ...g.genesis, f: 2 }, 0, g.keys[0])).toThrow(/GENESIS_INVALID|3f\+1/);
  });
  it('refuses a node key no signature verifies under: the identity point, or a non-canonical encoding', () => {
    const nodes = genesis.nodes;
    const identity = new Uint8Array(32);
    identity[0] = 1;
    const withKey = (publicKey: Uint8Array) => ({
      ...genesis,
      nodes: [nodes[0], nodes[1], { ...nodes[2], publicKey }, nodes[3]],
    });
    expect(genesisProblem(withKey(identity))).toMatch(/node 2's public key is a point of small order/);
    const nonCanonical = new Uint8Array(32).fill(0xff); // y = 2^255 − 1 ≥ p
    expect(genesisProblem(withKey(nonCanonical))).toMatch(/node 2's public key is a non-canonical point/);
  });
});
