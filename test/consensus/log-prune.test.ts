/**
 * Restore from a pruned signed log: since 2026-12-06 the ledger drops the records of the seqs up to each
 * stable checkpoint, so the view a node stood in comes from the checkpoint record (its `view`, written
 * unless the node was changing view) and the VIEW-CHANGE records, which are kept.
 */
import { describe, expect, it } from 'vitest';
import type { PersistRecord, Replica } from '../../src/consensus/replica.ts';
import { encode, sha256, uint } from '../../src/protocol/index.ts';
import { CHECKPOINT_PROOF, restoreNode, SMALL_CFG } from './fixtures.ts';

const proof = CHECKPOINT_PROOF;
const digest = sha256(new Uint8Array([6]));

/** Node 1 restored from `log`, 6 batches executed. */
function restoreFrom(log: PersistRecord[]): Replica {
  return restoreNode(1, SMALL_CFG, log, { lastExecuted: 6 });
}

function restore(log: PersistRecord[]) {
  const r = restoreFrom(log);
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

describe('restore from a pruned signed log, a node that lost writes (forgotten, signFloor)', () => {
  // Changing view below its sign floor, it signs no VIEW-CHANGE and persists none: a checkpoint stable then
  // names no view, and pruning drops its votes, the only records of view 3. The restored view is lower
  // than from the whole log; what it may sign is not: the floor (above every view it signed in) is kept.
  function restored(log: PersistRecord[]) {
    const r = restoreFrom(log);
    return { view: r.view, floor: r.signFloorView, stable: r.stable };
  }
  const votes: PersistRecord[] = [
    { kind: 'prepare', view: 3, seq: 5, digest },
    { kind: 'commit', view: 3, seq: 5, digest },
  ];
  const forgotten: PersistRecord = { kind: 'forgotten', body: encode(uint, 1_000) };
  const cp: PersistRecord = { kind: 'checkpoint', seq: 6, digest, body: proof };

  it('with its floor learned: the floor stands, whatever view the pruned log gives', () => {
    const floor: PersistRecord = { kind: 'signFloor', view: 5 };
    expect(restored([...votes, forgotten, floor, cp])).toEqual({ view: 3, floor: 5, stable: 6 });
    expect(restored([forgotten, floor, cp])).toEqual({ view: 0, floor: 5, stable: 6 });
  });

  it('before its floor is learned: it signs in no view either way', () => {
    expect(restored([...votes, forgotten, cp])).toEqual({ view: 3, floor: Infinity, stable: 6 });
    expect(restored([forgotten, cp])).toEqual({ view: 0, floor: Infinity, stable: 6 });
  });
});
