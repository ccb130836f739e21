/**
 * Restore from a pruned signed log: since 2026-12-06 the ledger drops the records of the seqs up to each
 * stable checkpoint, so the view a node stood in comes from the checkpoint record (its `view`, written
 * unless the node was changing view) and the VIEW-CHANGE records, which are kept.
 */
import { describe, expect, it } from 'vitest';
import { type PersistRecord, Replica } from '../../src/consensus/replica.ts';
import { array, encode, NodeSignature, sha256 } from '../../src/protocol/index.ts';
import { G, GID, SMALL_CFG } from './fixtures.ts';

const proof = encode(
  array(NodeSignature, 256),
  [0, 1, 2].map((node) => ({ node, signature: new Uint8Array(64).fill(node + 1) })),
);
const digest = sha256(new Uint8Array([6]));

function restore(log: PersistRecord[]) {
  const r = Replica.restore(G.genesis, 1, G.keys[1], SMALL_CFG, {
    lastExecuted: 6,
    lastReceiptHash: GID,
    lastTimestamp: 0,
    models: G.genesis.nodes.map((n) => n.modelDigest),
    recent: [],
    log,
  });
  return { view: r.view, changing: r.viewChanging, stable: r.stable };
}

describe('restore from a pruned signed log', () => {
  it('takes the view from the stable checkpoint record when the votes of that view are gone', () => {
    // Entered view 1 (its VIEW-CHANGE for 1 is kept), voted in it, the votes pruned at checkpoint 6.
    expect(
      restore([
        { kind: 'viewChange', view: 1 },
        { kind: 'checkpoint', view: 1, seq: 6, digest, body: proof },
      ]),
    ).toEqual({ view: 1, changing: false, stable: 6 });
    // The same log before pruning, for comparison: a vote of view 1 after its VIEW-CHANGE.
    expect(
      restore([
        { kind: 'viewChange', view: 1 },
        { kind: 'prepare', view: 1, seq: 3, digest },
        { kind: 'checkpoint', seq: 6, digest, body: proof },
      ]),
    ).toEqual({ view: 1, changing: false, stable: 6 });
  });

  it('still knows a view change under way: one started after the checkpoint, or one it became stable during', () => {
    expect(
      restore([
        { kind: 'checkpoint', view: 1, seq: 6, digest, body: proof },
        { kind: 'viewChange', view: 2 },
      ]),
    ).toEqual({ view: 2, changing: true, stable: 6 });
    // Stable while changing to view 2: the record names no view, so the VIEW-CHANGE stands.
    expect(
      restore([
        { kind: 'viewChange', view: 2 },
        { kind: 'checkpoint', seq: 6, digest, body: proof },
      ]),
    ).toEqual({ view: 2, changing: true, stable: 6 });
  });
});
