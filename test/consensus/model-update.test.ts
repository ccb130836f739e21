/**
 * Model-update transactions at the replica: submission (checked against the genesis key and the current
 * version), spreading, ordering by the primary, checks on proposals, and re-inference when the node's own
 * model changes at execution.
 */
import { describe, expect, it } from 'vitest';
import {
  type Action,
  type Event,
  MAX_TXS_PER_NODE,
  Replica,
  type ReplicaConfig,
} from '../../src/consensus/replica.ts';
import { LedgerState } from '../../src/ledger/state.ts';
import {
  type Batch,
  hex,
  type NodeMessage,
  requestIdOf,
  type SignedViewChange,
  sha256,
  signModelUpdate,
  type Tx,
  txIdOf,
} from '../../src/protocol/index.ts';
import { broadcasts, SMALL_CFG as CFG, G, GID, makePP, mkReq, only, phase, T0, wire } from './fixtures.ts';

const OLD2 = G.genesis.nodes[2].modelDigest;
const NEW2 = sha256(new TextEncoder().encode('model 2, version 1'));

const update = (node: number, version: number, newDigest: Uint8Array, signer = node): Tx =>
  signModelUpdate(GID, { node, version, newDigest }, G.keys[signer]);

const inferredIds = (as: Action[]) =>
  only(as, 'infer').flatMap((a) => a.requests.map((r) => hex(r.requestId)));

class One {
  readonly r: Replica;
  readonly ledger = new LedgerState(G.genesis);
  now = T0;
  constructor(
    readonly id: number,
    cfg: Partial<ReplicaConfig> = {},
  ) {
    this.r = new Replica(G.genesis, id, G.keys[id], { ...CFG, ...cfg });
  }
  step(ev: Event, at = this.now): Action[] {
    this.now = at;
    return this.r.step(ev, at);
  }
  msg(from: number, m: NodeMessage, at?: number): Action[] {
    return this.step({ type: 'message', from, msg: wire(m) }, at);
  }
  submit(tx: Tx, at?: number): Action[] {
    return this.step({ type: 'submitTx', tx }, at);
  }
  /** Drives a pre-prepare from the primary (node 0) to execution with PREPAREs and COMMITs of 1 and 3. */
  order(seq: number, batch: Batch): Action[] {
    const pp = makePP(seq, batch);
    const out = [...this.msg(0, { kind: 'prePrepare', pp })];
    for (const from of [1, 3].filter((x) => x !== this.id))
      out.push(...this.msg(from, phase('prepare', from, seq, pp.digest)));
    for (const from of [0, 1, 3].filter((x) => x !== this.id))
      out.push(...this.msg(from, phase('commit', from, seq, pp.digest)));
    return this.runExecution(out);
  }
  /** Runs the one `execute` action among `out` on the ledger and reports it executed (at `at`). */
  runExecution(out: Action[], at?: number): Action[] {
    const exec = only(out, 'execute');
    expect(exec).toHaveLength(1);
    const a = exec[0];
    const ex = this.ledger.execute(a.seq, a.digest, a.batch, a.entries);
    return this.step(
      {
        type: 'executed',
        seq: a.seq,
        receipt: ex.receipt,
        requeued: ex.requeued,
        models: ex.models,
        modelVersions: ex.modelVersions,
      },
      at,
    );
  }
}

describe('submitting a model update', () => {
  it('a valid one is accepted, spread to every node and kept once', () => {
    const h = new One(2);
    const tx = update(2, 1, NEW2);
    const out = h.submit(tx);
    expect(only(out, 'txAccepted').map((a) => hex(a.txId))).toEqual([hex(txIdOf(tx))]);
    expect(broadcasts(out, 'tx')).toHaveLength(1);
    expect(h.r.pendingTxs).toHaveLength(1);
    const again = h.submit(tx);
    expect(only(again, 'txRejected').map((a) => a.code)).toEqual(['TX_DUPLICATE']);
    expect(h.r.pendingTxs).toHaveLength(1);
  });

  it('a forged one (another node key), an unknown node or a stale version is rejected, typed', () => {
    const h = new One(1);
    const codes = [update(2, 1, NEW2, 3), update(7, 1, NEW2, 0), update(2, 0, NEW2)].map(
      (tx) => only(h.submit(tx), 'txRejected')[0]?.code,
    );
    expect(codes).toEqual(['TX_BAD_SIGNATURE', 'TX_UNKNOWN_NODE', 'TX_STALE_VERSION']);
    expect(h.r.pendingTxs).toEqual([]);
  });

  it('a forged one spread by a peer is not taken and is counted against the peer', () => {
    const h = new One(1);
    h.msg(3, { kind: 'tx', tx: update(2, 1, NEW2, 3) });
    expect(h.r.pendingTxs).toEqual([]);
    expect(h.r.misbehaviour.get(3)?.get('bad-tx')).toBe(1);
    h.msg(3, { kind: 'tx', tx: update(2, 1, NEW2) });
    expect(h.r.pendingTxs).toHaveLength(1);
  });

  // The signature is checked before anything that depends on this node's state (the version applied, the
  // ones held): a forged one was refused as stale or TX_TOO_MANY, and the peer that spread it went free.
  it('a forged one is counted against the peer that spread it even when stale or past MAX_TXS_PER_NODE held', () => {
    const peerMisbehaved = (as: Action[]) => only(as, 'peerMisbehaved').map((a) => a.peer);
    const h = new One(1);
    // Stale: node 2's model is at version 0.
    const stale = update(2, 0, NEW2, 3);
    expect(peerMisbehaved(h.msg(3, { kind: 'tx', tx: stale }))).toEqual([3]);
    expect(h.r.misbehaviour.get(3)?.get('bad-tx')).toBe(1);
    expect(only(h.submit(stale), 'txRejected').map((a) => a.code)).toEqual(['TX_BAD_SIGNATURE']);
    // MAX_TXS_PER_NODE of node 2's updates held.
    for (let i = 0; i < MAX_TXS_PER_NODE; i++)
      h.msg(2, { kind: 'tx', tx: update(2, 1, sha256(new TextEncoder().encode(`model 2, try ${i}`))) });
    expect(h.r.pendingTxs).toHaveLength(MAX_TXS_PER_NODE);
    const forged = update(2, 1, NEW2, 0);
    expect(peerMisbehaved(h.msg(0, { kind: 'tx', tx: forged }))).toEqual([0]);
    expect(h.r.misbehaviour.get(0)?.get('bad-tx')).toBe(1);
    expect(only(h.submit(forged), 'txRejected').map((a) => a.code)).toEqual(['TX_BAD_SIGNATURE']);
    // A valid one of them is still TX_TOO_MANY, and a valid stale one TX_STALE_VERSION, the sender unblamed.
    const valid = update(2, 1, NEW2);
    expect(peerMisbehaved(h.msg(3, { kind: 'tx', tx: valid }))).toEqual([]);
    expect(only(h.submit(valid), 'txRejected').map((a) => a.code)).toEqual(['TX_TOO_MANY']);
    expect(only(h.submit(update(2, 0, NEW2)), 'txRejected').map((a) => a.code)).toEqual(['TX_STALE_VERSION']);
    expect(h.r.misbehaviour.get(3)?.get('bad-tx')).toBe(1);
    expect(h.r.pendingTxs).toHaveLength(MAX_TXS_PER_NODE);
  });
});

describe('ordering a model update', () => {
  it('the primary cuts a batch with the transaction and no entries after the batch timeout (idle: idleBatchTimeoutMs)', () => {
    const h = new One(0);
    const tx = update(2, 1, NEW2);
    h.msg(2, { kind: 'tx', tx });
    expect(h.r.nextWake).toBe(T0 + 10);
    expect(broadcasts(h.step({ type: 'tick' }, T0 + 9), 'prePrepare')).toEqual([]);
    const pps = broadcasts(h.step({ type: 'tick' }, T0 + 10), 'prePrepare');
    expect(pps).toHaveLength(1);
    expect(pps[0].pp.batch.entries).toEqual([]);
    expect(pps[0].pp.batch.txs.map((t) => hex(txIdOf(t)))).toEqual([hex(txIdOf(tx))]);
    // Not proposed twice.
    expect(broadcasts(h.step({ type: 'tick' }, T0 + 30), 'prePrepare')).toEqual([]);
  });

  it('the batch timeouts: idleBatchTimeoutMs with nothing in flight, batchTimeoutMs behind a batch in flight, and at once when that batch executes', () => {
    const h = new One(0, { batchTimeoutMs: 10, idleBatchTimeoutMs: 3 });
    const tx1 = update(2, 1, NEW2);
    h.msg(2, { kind: 'tx', tx: tx1 }, T0);
    expect(h.r.nextWake).toBe(T0 + 3);
    expect(broadcasts(h.step({ type: 'tick' }, T0 + 2.9), 'prePrepare')).toEqual([]);
    const first = broadcasts(h.step({ type: 'tick' }, T0 + 3), 'prePrepare');
    expect(first.map((m) => m.pp.seq)).toEqual([1]);
    // Seq 1 in flight: the next transaction waits the full batchTimeoutMs.
    const tx2 = update(1, 1, sha256(new TextEncoder().encode('model 1, version 1')));
    h.msg(1, { kind: 'tx', tx: tx2 }, T0 + 4);
    expect(h.r.nextWake).toBe(T0 + 14);
    // Seq 1 executes at T0+8 (PREPAREs and COMMITs of 1 and 2): nothing is in flight any more, and the
    // waiting transaction (4 ms) has waited longer than idleBatchTimeoutMs: it goes out in the same step.
    const d = first[0].pp.digest;
    for (const from of [1, 2]) h.msg(from, phase('prepare', from, 1, d), T0 + 8);
    const out: Action[] = [];
    for (const from of [1, 2]) out.push(...h.msg(from, phase('commit', from, 1, d), T0 + 8));
    expect(only(out, 'execute').map((a) => a.seq)).toEqual([1]);
    const after = h.runExecution(out, T0 + 8);
    const second = broadcasts(after, 'prePrepare');
    expect(second.map((m) => m.pp.seq)).toEqual([2]);
    expect(second[0].pp.batch.txs.map((t) => hex(txIdOf(t)))).toEqual([hex(txIdOf(tx2))]);
  });

  it('a primary-to-be changing views sets no due wake-up for what waits to be proposed (no spinning)', () => {
    const h = new One(1, { batchTimeoutMs: 2, idleBatchTimeoutMs: 0 });
    h.step({ type: 'tick' }, T0);
    h.r.startViewChange(1);
    expect([h.r.viewChanging, h.r.isPrimary]).toEqual([true, true]);
    h.submit(update(2, 1, NEW2), T0 + 1);
    expect(h.r.pendingTxs).toHaveLength(1);
    // Before the fix the wake-up was T0+1 (the transaction's arrival plus 0) and every tick set it again.
    expect(h.r.nextWake).toBeGreaterThan(T0 + 1000);
    // The view change completes (VIEW-CHANGEs of nodes 2 and 3): the new primary proposes what waited.
    const vcs = [2, 3].map((id) => {
      const o = new One(id);
      o.step({ type: 'tick' }, T0);
      o.r.startViewChange(1); // outside a step: its broadcast is not returned, the message is kept
      const vc = (o.r as unknown as { myViewChange: SignedViewChange }).myViewChange;
      expect(vc.body.newView).toBe(1);
      return { from: id, vc };
    });
    const out = vcs.flatMap(({ from, vc }) => h.msg(from, { kind: 'viewChange', vc }, T0 + 3));
    expect(h.r.viewChanging).toBe(false);
    expect(broadcasts(out, 'newView')).toHaveLength(1);
    const pps = broadcasts(out, 'prePrepare');
    expect(pps.map((m) => [m.pp.view, m.pp.batch.txs.length])).toEqual([[1, 1]]);
  });

  it('a backup refuses a proposal carrying a forged transaction', () => {
    const h = new One(1);
    const pp = makePP(1, { timestamp: T0, entries: [], txs: [update(2, 1, NEW2, 3)] });
    const out = h.msg(0, { kind: 'prePrepare', pp });
    expect(broadcasts(out, 'prepare')).toEqual([]);
    expect(h.r.misbehaviour.get(0)?.get('bad-proposal')).toBe(1);
    expect(h.r.misbehaviour.get(0)?.get('bad-tx')).toBe(1);
    // The same batch with a valid transaction is accepted.
    const ok = makePP(1, { timestamp: T0, entries: [], txs: [update(2, 1, NEW2)] });
    expect(broadcasts(h.msg(0, { kind: 'prePrepare', pp: ok }), 'prepare')).toHaveLength(1);
  });

  it('after execution the transaction is dropped, the version moves; a replay is TX_ALREADY_EXECUTED, another of that version stale', () => {
    const h = new One(1);
    const tx = update(2, 1, NEW2);
    h.submit(tx);
    // Another version 1 for node 2, validly signed: superseded once the first executes.
    h.msg(2, { kind: 'tx', tx: update(2, 1, sha256(new TextEncoder().encode('other'))) });
    expect(h.r.pendingTxs).toHaveLength(2);
    h.order(1, { timestamp: T0, entries: [], txs: [tx] });
    expect(h.r.pendingTxs).toEqual([]);
    expect(h.r.currentModelVersions).toEqual([0, 0, 1, 0]);
    expect(hex(h.r.currentModels[2])).toBe(hex(NEW2));
    // The very same transaction: already executed (it was TX_STALE_VERSION, and TX_ALREADY_EXECUTED, though
    // documented, was never answered). The other version 1, never ordered, is stale; so is a copy from a peer.
    expect(only(h.submit(tx), 'txRejected')[0]).toMatchObject({ code: 'TX_ALREADY_EXECUTED' });
    const other = update(2, 1, sha256(new TextEncoder().encode('other')));
    expect(only(h.submit(other), 'txRejected')[0].code).toBe('TX_STALE_VERSION');
    h.msg(2, { kind: 'tx', tx });
    expect(h.r.pendingTxs).toEqual([]);
  });
});

describe('re-inference when the own model changes', () => {
  it('re-queues pending requests voted with the old model and drops results of the old model', () => {
    const h = new One(2);
    const [a, b, c] = [mkReq(1), mkReq(2), mkReq(3)];
    const [ia, ib, ic] = [a, b, c].map(requestIdOf);
    const first = h.msg(0, { kind: 'forward', requests: [a, b, c] });
    expect(inferredIds(first)).toEqual([ia, ib, ic].map(hex));
    // a and b are answered with the old model; c's inference is still running when the update executes.
    const voted = h.step({
      type: 'inferred',
      modelDigest: OLD2,
      results: [ia, ib].map((requestId) => ({
        requestId,
        result: { kind: 'class', top: [{ label: 1, score: 1 }] },
      })),
    });
    expect(broadcasts(voted, 'results')).toHaveLength(1);
    const afterSwitch = h.order(1, { timestamp: T0, entries: [], txs: [update(2, 1, NEW2)] });
    expect(hex(h.r.currentModels[2])).toBe(hex(NEW2));
    expect(inferredIds(afterSwitch).sort()).toEqual([ia, ib].map(hex).sort());
    // The old model's answer for c arrives now: not signed, not sent; c goes back for inference.
    const late = h.step({
      type: 'inferred',
      modelDigest: OLD2,
      results: [{ requestId: ic, result: { kind: 'class', top: [{ label: 1, score: 1 }] } }],
    });
    expect(broadcasts(late, 'results')).toEqual([]);
    expect(inferredIds(late)).toEqual([hex(ic)]);
    // The new model's answers are signed with the new digest.
    const fresh = h.step({
      type: 'inferred',
      modelDigest: NEW2,
      results: [ia, ib, ic].map((requestId) => ({
        requestId,
        result: { kind: 'class', top: [{ label: 2, score: 1 }] },
      })),
    });
    const res = broadcasts(fresh, 'results');
    expect(res).toHaveLength(1);
    expect(hex(res[0].signed.batch.modelDigest)).toBe(hex(NEW2));
    expect(inferredIds(fresh)).toEqual([]);

    // Back to the old model (A, B, A): all three are inferred again. For a and b this node signed an answer
    // with it already, and a peer may still hold those votes: it signs the same answers, not the new ones
    // (inference is not bit-exact; a different one would be double-vote evidence). c has none: its new one.
    const back = h.order(2, { timestamp: T0 + 1, entries: [], txs: [update(2, 2, OLD2)] });
    expect(hex(h.r.currentModels[2])).toBe(hex(OLD2));
    expect(inferredIds(back).sort()).toEqual([ia, ib, ic].map(hex).sort());
    const again = h.step({
      type: 'inferred',
      modelDigest: OLD2,
      results: [ia, ib, ic].map((requestId) => ({
        requestId,
        result: { kind: 'class', top: [{ label: 9, score: 1 }] },
      })),
    });
    const resent = broadcasts(again, 'results');
    expect(resent).toHaveLength(1);
    const labels = resent[0].signed.batch.entries.map((e) => [
      hex(e.requestId),
      e.result.kind === 'class' ? e.result.top[0].label : -1,
    ]);
    expect(labels).toEqual([
      [hex(ia), 1],
      [hex(ib), 1],
      [hex(ic), 9],
    ]);
  });
});

describe('model updates a faulty owner signs without end', () => {
  // Node 2, faulty, signs update after update of its own model to version 1, each to another digest: each
  // was a new transaction, taken and relayed to the primary, and the checks of the next one went through all
  // held (a Map without bound, and work quadratic in it).
  it('are held at most MAX_TXS_PER_NODE per node; the rest are turned away, by peers and by the API', () => {
    const h = new One(3);
    let relayed = 0;
    for (let i = 0; i < 3 * MAX_TXS_PER_NODE; i++) {
      const tx = update(2, 1, sha256(new TextEncoder().encode(`model 2, try ${i}`)));
      relayed += h.msg(2, { kind: 'tx', tx }).filter((a) => a.type === 'send' && a.msg.kind === 'tx').length;
    }
    expect(h.r.pendingTxs.length).toBe(MAX_TXS_PER_NODE);
    expect(relayed).toBe(MAX_TXS_PER_NODE);
    const more = h.submit(update(2, 1, sha256(new TextEncoder().encode('one more'))));
    expect(only(more, 'txRejected').map((a) => a.code)).toEqual(['TX_TOO_MANY']);
    // Another node's update is not held back by node 2's.
    const other = h.submit(update(1, 1, sha256(new TextEncoder().encode('model 1, version 1'))));
    expect(only(other, 'txAccepted')).toHaveLength(1);
  });
});
