/**
 * Model updates of one node arriving out of version order: the ledger applies an update only at the
 * version after the node's current one, so the primary proposes waiting updates sorted by (node, version),
 * a replica keeps an update that a batch carried but execution did not apply (its version still ahead)
 * waiting instead of marking it done, and a version that skips one nobody holds is refused on arrival.
 */
import { describe, expect, it } from 'vitest';
import { type Action, type Event, MAX_TXS_PER_NODE, Replica } from '../../src/consensus/replica.ts';
import { LedgerState } from '../../src/ledger/state.ts';
import {
  type Batch,
  groupIdOf,
  hex,
  keyPairFromSeed,
  type NodeMessage,
  type PrePrepare,
  requestIdOf,
  type SignedRequest,
  sha256,
  signDeposit,
  signFeeChange,
  signModelUpdate,
  signRefund,
  signTransfer,
  signWithdrawal,
  type Tx,
  txIdOf,
} from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import {
  broadcasts,
  SMALL_CFG as CFG,
  cls,
  G,
  GID,
  genesisCounters,
  makePP,
  mkReq,
  only,
  phase,
  resultsOf,
  T0,
  wire,
} from './fixtures.ts';

const model = (node: number, version: number, variant = '') =>
  sha256(new TextEncoder().encode(`model ${node} v${version}${variant}`));
const update = (node: number, version: number, variant = ''): Tx =>
  signModelUpdate(GID, { node, version, newDigest: model(node, version, variant) }, G.keys[node]);
const tag = (t: Tx) =>
  t.kind === 'modelUpdate'
    ? `${t.update.node}:v${t.update.version}`
    : t.kind === 'feeChange'
      ? `${t.change.node}:f${t.change.version}=${t.change.fee}`
      : t.kind === 'withdrawal'
        ? `${t.withdrawal.node}:w${t.withdrawal.serial}=${t.withdrawal.amount}`
        : t.kind === 'refund'
          ? `r${t.refund.serial}=${t.refund.amount}`
          : t.kind === 'transfer'
            ? `t${t.transfer.serial}=${t.transfer.amount}`
            : `d${t.deposit.serial}`;

const prePrepares = (as: Action[]) => broadcasts(as, 'prePrepare');

const withdrawOf = (node: number, serial: number, amount = 5): Tx =>
  signWithdrawal(GID, { node, serial, amount }, G.keys[node]);

/** One replica and its ledger, driven by hand. */
class One {
  readonly r: Replica;
  readonly ledger = new LedgerState(G.genesis);
  now = T0;
  constructor(readonly id: number) {
    this.r = new Replica(G.genesis, id, G.keys[id], CFG);
  }
  step(ev: Event, at = this.now): Action[] {
    this.now = at;
    return this.r.step(ev, at);
  }
  msg(from: number, m: NodeMessage, at?: number): Action[] {
    return this.step({ type: 'message', from, msg: wire(m) }, at);
  }
  /** The primary (node 0): cuts its next batch now and returns its PRE-PREPARE. */
  propose(): PrePrepare {
    const pps = prePrepares(this.step({ type: 'tick' }, this.now + 10));
    expect(pps).toHaveLength(1);
    return pps[0].pp;
  }
  /** Drives `pp` to execution here with PREPAREs and COMMITs of the other nodes (not 2, the owner). */
  commit(pp: PrePrepare): Action[] {
    const out: Action[] = [];
    if (this.id !== 0) out.push(...this.msg(0, { kind: 'prePrepare', pp }));
    const others = [0, 1, 3].filter((x) => x !== this.id);
    for (const from of others.filter((x) => x !== 0))
      out.push(...this.msg(from, phase('prepare', from, pp.seq, pp.digest)));
    for (const from of others) out.push(...this.msg(from, phase('commit', from, pp.seq, pp.digest)));
    const exec = only(out, 'execute');
    expect(exec).toHaveLength(1);
    const a = exec[0];
    const ex = this.ledger.execute(a.seq, a.digest, a.batch, a.entries);
    return this.step({
      type: 'executed',
      seq: a.seq,
      receipt: ex.receipt,
      requeued: ex.requeued,
      models: ex.models,
      modelVersions: ex.modelVersions,
      deposits: ex.deposits,
      fees: ex.fees,
      feeVersions: ex.feeVersions,
      withdrawals: this.derive ? undefined : ex.withdrawals,
      refunds: this.derive ? undefined : ex.refunds,
    });
  }
  /** Leave the withdrawals out of `executed` (the replica derives them from the batch, as without a host). */
  derive = false;
  get pending(): string[] {
    return this.r.pendingTxs.map(tag);
  }
}

describe('model updates out of version order', () => {
  it('versions 2 then 1 at the primary: both end up applied, in order (version 2 is not lost)', () => {
    const p = new One(0);
    const [v1, v2] = [update(2, 1), update(2, 2)];
    p.msg(2, { kind: 'tx', tx: v2 });
    p.msg(2, { kind: 'tx', tx: v1 });
    p.commit(p.propose());
    expect(p.r.currentModelVersions[2]).toBe(1);
    expect(hex(p.r.currentModels[2])).toBe(hex(model(2, 1)));
    // The owner's node spreads version 2 again: taken now, ordered, applied.
    p.msg(2, { kind: 'tx', tx: v2 });
    expect(p.pending).toEqual(['2:v2']);
    const pp = p.propose();
    expect(pp.batch.txs.map(tag)).toEqual(['2:v2']);
    p.commit(pp);
    expect(p.r.currentModelVersions[2]).toBe(2);
    expect(hex(p.r.currentModels[2])).toBe(hex(model(2, 2)));
    expect(p.pending).toEqual([]);
  });

  it('the primary proposes waiting updates sorted by node, version and id, whatever their arrival order', () => {
    const p = new One(0);
    const arrivals = [update(3, 1), update(2, 1), update(1, 1), update(2, 2), update(2, 1, ' again')];
    for (const tx of arrivals) p.msg(tx.kind === 'modelUpdate' ? tx.update.node : 0, { kind: 'tx', tx });
    expect(p.pending).toEqual(['3:v1', '2:v1', '1:v1', '2:v2', '2:v1']);
    const pp = p.propose();
    const [a, b] = [update(2, 1), update(2, 1, ' again')].sort((x, y) =>
      Buffer.compare(txIdOf(x), txIdOf(y)),
    );
    expect(pp.batch.txs.map((t) => hex(txIdOf(t)))).toEqual(
      [update(1, 1), a, b, update(2, 2), update(3, 1)].map((t) => hex(txIdOf(t))),
    );
    p.commit(pp);
    // Every node's update applied; node 2 at version 2, over the first of its two versions 1.
    expect(p.r.currentModelVersions).toEqual([0, 1, 2, 1]);
    expect(hex(p.r.currentModels[2])).toBe(hex(model(2, 2)));
    expect(p.pending).toEqual([]);
  });

  it('a batch carrying [v2, v1] (another primary’s order): v1 applies and v2 waits again instead of being marked done', () => {
    const [v1, v2] = [update(2, 1), update(2, 2)];
    const batch: Batch = { timestamp: T0, entries: [], txs: [v2, v1] };
    // Node 1 held both; node 3 held neither (it takes v2 from the batch, as the next version).
    const held = new One(1);
    held.msg(2, { kind: 'tx', tx: v1 });
    held.msg(2, { kind: 'tx', tx: v2 });
    const none = new One(3);
    for (const h of [held, none]) {
      h.commit(makePP(1, batch));
      expect(h.r.currentModelVersions[2]).toBe(1);
      expect(h.pending).toEqual(['2:v2']);
      // A peer spreading it again finds it waiting (not refused as done).
      h.msg(2, { kind: 'tx', tx: v2 });
      expect(h.pending).toEqual(['2:v2']);
      h.commit(makePP(2, { timestamp: T0 + 1, entries: [], txs: [v2] }));
      expect(h.r.currentModelVersions[2]).toBe(2);
      expect(h.pending).toEqual([]);
    }
  });

  it('an update superseded by another of its version is dropped, not kept waiting', () => {
    const h = new One(1);
    const [a, b] = [update(2, 1), update(2, 1, ' other')];
    h.msg(2, { kind: 'tx', tx: a });
    h.msg(2, { kind: 'tx', tx: b });
    h.commit(makePP(1, { timestamp: T0, entries: [], txs: [a, b] }));
    expect(h.r.currentModelVersions[2]).toBe(1);
    expect(hex(h.r.currentModels[2])).toBe(hex(model(2, 1)));
    expect(h.pending).toEqual([]);
  });

  it('a version that skips one nobody here holds is refused; taken once the one before it waits', () => {
    const h = new One(2);
    const refused = only(h.step({ type: 'submitTx', tx: update(2, 2) }), 'txRejected');
    expect(refused.map((a) => a.code)).toEqual(['TX_VERSION_GAP']);
    expect(refused[0].message).toMatch(/skips version 1 of node 2/);
    expect(h.pending).toEqual([]);
    expect(only(h.step({ type: 'submitTx', tx: update(2, 1) }), 'txAccepted')).toHaveLength(1);
    expect(only(h.step({ type: 'submitTx', tx: update(2, 2) }), 'txAccepted')).toHaveLength(1);
    expect(only(h.step({ type: 'submitTx', tx: update(2, 4) }), 'txRejected')).toHaveLength(1);
    expect(h.pending).toEqual(['2:v1', '2:v2']);
  });
});

describe("deposits (the treasury's serials, ordered as a node's versions are)", () => {
  const client = G.client.publicKey;
  const deposit = (serial: number, amount = 10, signer = G.treasury): Tx =>
    signDeposit(GID, { client, amount, serial }, signer);

  it('the primary proposes deposits in serial order beside model updates; all apply', () => {
    const p = new One(0);
    p.msg(3, { kind: 'tx', tx: update(3, 1) });
    p.msg(1, { kind: 'tx', tx: deposit(1) });
    p.msg(1, { kind: 'tx', tx: deposit(2) });
    expect(p.pending).toEqual(['3:v1', 'd1', 'd2']);
    const pp = p.propose();
    expect(pp.batch.txs.map(tag)).toEqual(['d1', 'd2', '3:v1']);
    p.commit(pp);
    expect(p.r.currentDeposits).toBe(2);
    expect(p.ledger.deposits).toBe(2);
    expect(p.r.currentModelVersions[3]).toBe(1);
    expect(p.pending).toEqual([]);
    // Spread again later: a replay.
    const late = only(p.step({ type: 'submitTx', tx: deposit(1) }), 'txRejected');
    expect(late.map((a) => a.code)).toEqual(['TX_ALREADY_EXECUTED']);
  });

  it("a batch carrying [2, 1] (another primary's order): 1 applies and 2 waits again", () => {
    const h = new One(3);
    h.commit(makePP(1, { timestamp: T0, entries: [], txs: [deposit(2), deposit(1)] }));
    expect(h.r.currentDeposits).toBe(1);
    expect(h.pending).toEqual(['d2']);
    h.commit(makePP(2, { timestamp: T0 + 1, entries: [], txs: [deposit(2)] }));
    expect(h.r.currentDeposits).toBe(2);
    expect(h.ledger.balanceOf(client)).toBe(1e12 + 20);
    expect(h.pending).toEqual([]);
  });

  it('refuses a gap, a stale serial, a zero and one not signed by the treasury, with their codes', () => {
    const h = new One(2);
    const code = (tx: Tx) => only(h.step({ type: 'submitTx', tx }), 'txRejected').map((a) => a.code);
    expect(code(deposit(2))).toEqual(['TX_VERSION_GAP']);
    expect(code(deposit(1, 0))).toEqual(['TX_BAD_AMOUNT']);
    expect(code(deposit(1, 10, G.client))).toEqual(['TX_BAD_SIGNATURE']);
    expect(code(deposit(1, 10, G.keys[0]))).toEqual(['TX_BAD_SIGNATURE']);
    expect(code(deposit(1))).toEqual([]);
    expect(code(deposit(2))).toEqual([]);
    expect(code(deposit(1))).toEqual(['TX_DUPLICATE']);
    expect(h.pending).toEqual(['d1', 'd2']);
    h.commit(makePP(1, { timestamp: T0, entries: [], txs: [deposit(1), deposit(2)] }));
    expect(code(deposit(2, 11))).toEqual(['TX_STALE_VERSION']);
    const m = only(h.step({ type: 'submitTx', tx: deposit(1, 12) }), 'txRejected')[0].message;
    expect(m).toMatch(/serial 1 is not above the treasury's last applied deposit, serial 2/);
  });

  it("a peer spreading a forged deposit is punished; the treasury's own is relayed to the primary", () => {
    const h = new One(2);
    const forged = h.msg(1, { kind: 'tx', tx: deposit(1, 10, G.keys[1]) });
    expect(only(forged, 'peerMisbehaved').map((a) => a.peer)).toEqual([1]);
    expect(h.pending).toEqual([]);
    const good = h.msg(1, { kind: 'tx', tx: deposit(1) });
    expect(only(good, 'peerMisbehaved')).toEqual([]);
    expect(only(good, 'send').map((a) => a.to)).toEqual([0]);
    expect(h.pending).toEqual(['d1']);
  });

  it('holds at most MAX_TXS_PER_NODE deposits waiting', () => {
    const h = new One(1);
    for (let s = 1; s <= MAX_TXS_PER_NODE; s++)
      expect(only(h.step({ type: 'submitTx', tx: deposit(s) }), 'txAccepted')).toHaveLength(1);
    const more = only(h.step({ type: 'submitTx', tx: deposit(MAX_TXS_PER_NODE + 1) }), 'txRejected');
    expect(more.map((a) => a.code)).toEqual(['TX_TOO_MANY']);
    // A model update is another sequence: still taken.
    expect(only(h.step({ type: 'submitTx', tx: update(2, 1) }), 'txAccepted')).toHaveLength(1);
  });
});

const change = (node: number, version: number, fee: number, signer = G.keys[node]): Tx =>
  signFeeChange(GID, { node, version, fee }, signer);

/** The primary `p` takes `sr` and every node's vote on it (its own inference, three peers' RESULTS). */
function allVoted(p: One, sr: SignedRequest): void {
  const id = requestIdOf(sr);
  p.step({ type: 'request', request: sr });
  p.step({
    type: 'inferred',
    modelDigest: G.genesis.nodes[0].modelDigest,
    results: [{ requestId: id, result: cls(7) }],
  });
  for (const v of [1, 2, 3]) p.msg(v, { kind: 'results', signed: resultsOf(v, [id]) });
}

describe("fee changes (a node's own sequence, beside its model updates)", () => {
  it('after a raise the primary proposes the votes the new fees allow under a maxFee (the dearest dropped)', () => {
    const p = new One(0);
    p.msg(3, { kind: 'tx', tx: change(3, 1, 100) });
    p.commit(p.propose());
    expect(p.r.currentFees).toEqual([1, 2, 3, 100]);
    expect(p.r.currentFeeVersions).toEqual([0, 0, 0, 1]);
    // maxFee 10: the genesis fees (1 + 2 + 3 + 4) of all four votes; with node 3 at 100, only three fit.
    allVoted(p, mkReq(77, T0, 10));
    const pp = p.propose();
    expect(pp.batch.entries.map((e) => e.votes.map((v) => v.node))).toEqual([[0, 1, 2]]);
    p.commit(pp);
    expect(p.ledger.balanceOf(G.client.publicKey)).toBe(1e12 - 6);
  });

  it("refuses a gap, a stale version and another node's key, naming the fee sequence", () => {
    const h = new One(1);
    const rejected = (tx: Tx) => only(h.step({ type: 'submitTx', tx }), 'txRejected');
    expect(rejected(change(2, 2, 9)).map((a) => [a.code, a.message])).toEqual([
      [
        'TX_VERSION_GAP',
        "version 2 skips version 1 of node 2's fee (current 0); they apply one at a time: submit 1 first",
      ],
    ]);
    expect(rejected(change(2, 1, 9, G.keys[1])).map((a) => a.code)).toEqual(['TX_BAD_SIGNATURE']);
    expect(rejected(change(2, 1, 9))).toEqual([]);
    // A model update of node 2 at version 1 is another sequence: taken beside it.
    expect(rejected(update(2, 1))).toEqual([]);
    h.commit(makePP(1, { timestamp: T0, entries: [], txs: [change(2, 1, 9), update(2, 1)] }));
    expect(h.r.currentFees[2]).toBe(9);
    expect(h.r.currentModelVersions[2]).toBe(1);
    expect(rejected(change(2, 1, 11)).map((a) => [a.code, a.message])).toEqual([
      ['TX_STALE_VERSION', "version 1 is not above node 2's fee's current version 1"],
    ]);
  });

  it('a node spreading a forged fee change of its own is punished for a bad signature on its own transaction', () => {
    const h = new One(1);
    const out = h.msg(2, { kind: 'tx', tx: change(2, 1, 9, G.keys[0]) });
    expect(only(out, 'peerMisbehaved').map((a) => [a.peer, a.reason])).toEqual([
      [2, 'bad signature on its own transaction'],
    ]);
  });
});

describe("withdrawals (a node's own serials, beside its model and fee sequences)", () => {
  const withdraw = (node: number, serial: number, amount = 5, signer = G.keys[node]): Tx =>
    signWithdrawal(GID, { node, serial, amount }, signer);

  it("refuses a gap, a zero and another node's key, takes serial 1 beside the node's model and fee version 1, and names the sequence when stale", () => {
    const h = new One(1);
    const rejected = (tx: Tx) => only(h.step({ type: 'submitTx', tx }), 'txRejected');
    expect(rejected(withdraw(2, 2)).map((a) => [a.code, a.message])).toEqual([
      [
        'TX_VERSION_GAP',
        "serial 2 skips serial 1 of node 2's withdrawals (current 0); they apply one at a time: submit 1 first",
      ],
    ]);
    expect(rejected(withdraw(2, 1, 0)).map((a) => a.code)).toEqual(['TX_BAD_AMOUNT']);
    expect(rejected(withdraw(2, 1, 5, G.keys[3])).map((a) => a.code)).toEqual(['TX_BAD_SIGNATURE']);
    expect(rejected(withdraw(2, 1))).toEqual([]);
    expect(rejected(change(2, 1, 9))).toEqual([]);
    expect(rejected(update(2, 1))).toEqual([]);
    expect(h.pending).toEqual(['2:w1=5', '2:f1=9', '2:v1']);
    h.commit(makePP(1, { timestamp: T0, entries: [], txs: [withdraw(2, 1), change(2, 1, 9), update(2, 1)] }));
    // Ordered, it uses its serial (node 2 had earned nothing, so it took nothing): the replica counts it.
    expect(h.r.currentWithdrawals).toEqual([0, 0, 1, 0]);
    expect(h.ledger.withdrawn).toEqual([0, 0, 0, 0]);
    expect([h.r.currentFeeVersions[2], h.r.currentModelVersions[2]]).toEqual([1, 1]);
    expect(h.pending).toEqual([]);
    expect(rejected(withdraw(2, 1, 6)).map((a) => [a.code, a.message])).toEqual([
      ['TX_STALE_VERSION', "serial 1 is not above node 2's withdrawals' last applied, serial 1"],
    ]);
  });

  it("without the counts from its host, the replica derives each node's withdrawals from the batch", () => {
    const h = new One(3);
    h.derive = true;
    h.commit(
      makePP(1, {
        timestamp: T0,
        entries: [],
        txs: [withdraw(1, 2), withdraw(1, 1)],
      }),
    );
    // Serial 1 of node 1 applies; its serial 2 came first and waits again.
    expect(h.r.currentWithdrawals).toEqual([0, 1, 0, 0]);
    expect(h.pending).toEqual(['1:w2=5']);
  });

  it('a node spreading a forged withdrawal of its own is punished for a bad signature on its own transaction', () => {
    const h = new One(1);
    const out = h.msg(2, { kind: 'tx', tx: withdraw(2, 1, 5, G.keys[0]) });
    expect(only(out, 'peerMisbehaved').map((a) => [a.peer, a.reason])).toEqual([
      [2, 'bad signature on its own transaction'],
    ]);
    expect(h.pending).toEqual([]);
  });

  it('a node spreading its own withdrawal of 0, validly signed, is punished for a bad transaction, not a bad signature', () => {
    const h = new One(1);
    const out = h.msg(2, { kind: 'tx', tx: withdraw(2, 1, 0) });
    expect(only(out, 'peerMisbehaved').map((a) => [a.peer, a.reason])).toEqual([
      [2, 'spread a bad transaction (TX_BAD_AMOUNT)'],
    ]);
    expect(h.pending).toEqual([]);
  });
});

describe("refunds (each client's own serials)", () => {
  const alice = G.client;
  const bob = keyPairFromSeed(new Uint8Array(32).fill(77));
  const refund = (serial: number, amount = 5, who = alice, signer = who): Tx =>
    signRefund(GID, { client: who.publicKey, serial, amount }, signer);

  it("refuses a gap, a zero and another key's signature, keeps each client's serials apart, and names the sequence when stale", () => {
    const h = new One(1);
    const rejected = (tx: Tx) => only(h.step({ type: 'submitTx', tx }), 'txRejected');
    const name = alice.publicKey;
    const of = `client ${Buffer.from(name).toString('base64url')}'s refunds and transfers`;
    expect(rejected(refund(2)).map((a) => [a.code, a.message])).toEqual([
      [
        'TX_VERSION_GAP',
        `serial 2 skips serial 1 of ${of} (current 0); they apply one at a time: submit 1 first`,
      ],
    ]);
    expect(rejected(refund(1, 0)).map((a) => a.code)).toEqual(['TX_BAD_AMOUNT']);
    expect(rejected(refund(1, 5, alice, bob)).map((a) => [a.code, a.message])).toEqual([
      ['TX_BAD_SIGNATURE', "not signed by the client's key"],
    ]);
    expect(rejected(refund(1))).toEqual([]);
    expect(rejected(refund(2))).toEqual([]);
    expect(rejected(refund(1, 3, bob))).toEqual([]);
    expect(rejected(withdrawOf(2, 1))).toEqual([]);
    h.commit(makePP(1, { timestamp: T0, entries: [], txs: [refund(1), refund(2), refund(1, 3, bob)] }));
    // Bob has no account: his refund has no effect and uses no serial (the ledger's count, which the host
    // passes); held here without a balance to check it against (no fundsOf), it waits again.
    expect([h.r.currentRefundSerial(alice.publicKey), h.r.currentRefundSerial(bob.publicKey)]).toEqual([
      2, 0,
    ]);
    expect(h.ledger.refunded).toBe(10);
    expect(h.pending).toEqual(['r1=3', '2:w1=5']);
    expect(rejected(refund(2, 6)).map((a) => [a.code, a.message])).toEqual([
      ['TX_STALE_VERSION', `serial 2 is not above ${of}' last applied, serial 2`],
    ]);
  });

  it("the primary proposes refunds after the nodes' sequences, by client and serial, whatever their arrival order", () => {
    const p = new One(0);
    const [first, second] = [alice, bob].sort((a, b) => Buffer.compare(a.publicKey, b.publicKey));
    p.msg(1, { kind: 'tx', tx: refund(1, 5, second) });
    p.msg(1, { kind: 'tx', tx: refund(1, 5, first) });
    p.msg(1, { kind: 'tx', tx: refund(2, 5, first) });
    p.msg(1, { kind: 'tx', tx: withdrawOf(3, 1) });
    const pp = p.propose();
    const who = (t: Tx) =>
      t.kind === 'refund'
        ? `${Buffer.compare(t.refund.client, first.publicKey) === 0 ? 'A' : 'B'}${tag(t)}`
        : tag(t);
    expect(pp.batch.txs.map(who)).toEqual(['3:w1=5', 'Ar1=5', 'Ar2=5', 'Br1=5']);
  });

  it("without the counts from its host, the replica derives each client's refunds from the batch; one ahead waits again", () => {
    const h = new One(3);
    h.derive = true;
    h.commit(makePP(1, { timestamp: T0, entries: [], txs: [refund(2), refund(1)] }));
    expect(h.r.currentRefundSerial(alice.publicKey)).toBe(1);
    expect(h.pending).toEqual(['r2=5']);
    h.commit(makePP(2, { timestamp: T0 + 1, entries: [], txs: [refund(2)] }));
    expect(h.r.currentRefundSerial(alice.publicKey)).toBe(2);
    expect(h.pending).toEqual([]);
  });

  it("with the balance known (fundsOf), refuses one over the balance less its requests' maxFee and its refunds waiting, from a client or a peer, without blame", () => {
    const h = new One(1);
    h.r.fundsOf = (c) => (Buffer.compare(c, alice.publicKey) === 0 ? 100 : 0);
    const rejected = (tx: Tx) => only(h.step({ type: 'submitTx', tx }), 'txRejected');
    expect(rejected(refund(1, 101)).map((a) => [a.code, a.message])).toEqual([
      ['TX_REFUND_TOO_LARGE', "the client's balance is 100: it may take back 100, not 101"],
    ]);
    expect(rejected(refund(1, 60))).toEqual([]);
    // A rival of serial 1 replaces nothing: it is counted apart from the waiting serial 1 (its own serial).
    expect(rejected(refund(2, 41)).map((a) => [a.code, a.message])).toEqual([
      [
        'TX_REFUND_TOO_LARGE',
        "the client's balance is 100, 60 more in its refunds and transfers waiting to be ordered: it may take back 40, not 41",
      ],
    ]);
    expect(rejected(refund(1, 100, alice))).toEqual([]); // a rival of serial 1: only one of them applies
    expect(rejected(refund(1, 1, bob)).map((a) => a.code)).toEqual(['TX_REFUND_TOO_LARGE']);
    const out = h.msg(2, { kind: 'tx', tx: refund(1, 1, bob) });
    expect(only(out, 'peerMisbehaved')).toEqual([]);
    expect(h.pending).toEqual(['r1=60', 'r1=100']);
    // One a peer spreads is held to the balance alone: the peer's requests and refunds waiting are not these.
    h.msg(2, { kind: 'tx', tx: refund(2, 101) });
    h.msg(2, { kind: 'tx', tx: refund(2, 100) });
    expect(h.pending).toEqual(['r1=60', 'r1=100', 'r2=100']);
  });

  it('with a refund waiting, a request is taken only under the balance less it (from the client or a peer): else it is inferred and skipped uncharged once the refund is ordered first', () => {
    const h = new One(1);
    h.r.fundsOf = (c) => (Buffer.compare(c, alice.publicKey) === 0 ? 100 : 0);
    expect(only(h.step({ type: 'submitTx', tx: refund(1, 70) }), 'txRejected')).toEqual([]);
    expect(only(h.step({ type: 'submitTx', tx: refund(1, 80) }), 'txRejected')).toEqual([]); // a rival
    const own = h.step({ type: 'request', request: mkReq(1, h.now, 21) }, h.now);
    expect(only(own, 'rejected').map((a) => [a.code, a.message])).toEqual([
      [
        'INSUFFICIENT_FUNDS',
        "balance 100, less the maxFee of 0 held by this client's requests waiting to be ordered here and 80 in its refunds and transfers waiting, is 1 below the request's maxFee 21",
      ],
    ]);
    expect(only(h.step({ type: 'request', request: mkReq(2, h.now, 20) }, h.now), 'accepted')).toHaveLength(
      1,
    );
    // A peer's forward of one the balance no longer covers: not taken (not blamed).
    const out = h.msg(2, { kind: 'forward', requests: [mkReq(3, h.now, 1)] });
    expect(only(out, 'peerMisbehaved')).toEqual([]);
    expect(h.r.feesHeldFor(alice.publicKey)).toBe(20);
  });

  it('one waiting that the balance no longer covers once a batch executed is dropped, as the primary refuses it from a peer (its timer would run against every primary)', () => {
    let balance = 100;
    const b = new One(1);
    const p = new One(0);
    for (const h of [b, p]) h.r.fundsOf = () => balance;
    b.msg(2, { kind: 'tx', tx: refund(1, 90) });
    b.msg(2, { kind: 'tx', tx: refund(2, 5) });
    b.msg(2, { kind: 'tx', tx: refund(1, 30, bob) });
    expect(b.pending).toEqual(['r1=90', 'r2=5', 'r1=30']);
    balance = 50; // the client's requests were charged in the batch that executes next
    b.commit(makePP(1, { timestamp: T0, entries: [], txs: [withdrawOf(2, 1)] }));
    // Serial 2 goes with serial 1: without it, it could only be proposed again and again to no effect.
    expect(b.pending).toEqual(['r1=30']);
    // Where the balance covers none of them, the primary takes none from a peer either.
    p.msg(1, { kind: 'tx', tx: refund(1, 90) });
    expect(p.pending).toEqual([]);
  });

  it('a peer spreading a forged refund is punished', () => {
    const h = new One(1);
    const out = h.msg(2, { kind: 'tx', tx: refund(1, 5, alice, bob) });
    expect(only(out, 'peerMisbehaved').map((a) => [a.peer, a.reason])).toEqual([
      [2, 'spread a bad transaction (TX_BAD_SIGNATURE)'],
    ]);
    expect(h.pending).toEqual([]);
  });
});

describe('fees the primary trims votes under (withinMaxFee)', () => {
  it('a request proposed while a fee raise is ordered but not yet executed is trimmed under the raised fee', () => {
    const p = new One(0);
    p.msg(3, { kind: 'tx', tx: change(3, 1, 100) });
    const pp1 = p.propose(); // carries the raise; not executed yet
    expect(pp1.batch.txs).toHaveLength(1);
    allVoted(p, mkReq(78, T0, 10)); // the genesis fees of all four votes: 1 + 2 + 3 + 4
    const pp2 = p.propose();
    // Batch 2 executes after batch 1's raise: node 3's vote (100) would take it over maxFee 10.
    expect(pp2.batch.entries.map((e) => e.votes.map((v) => v.node))).toEqual([[0, 1, 2]]);
    p.commit(pp1);
    p.commit(pp2);
    expect(p.ledger.balanceOf(G.client.publicKey)).toBe(1e12 - 6);
  });

  it('sums of fees past 2^53 − 1 (a node at the largest fee) still leave the dearest out exactly', () => {
    const g6 = makeGroup(6, 1, 7); // q = 4
    const M = Number.MAX_SAFE_INTEGER;
    const fees = [1, 2, 3, 4, 4, M];
    const r = Replica.restore(g6.genesis, 0, g6.keys[0], CFG, {
      lastExecuted: 0,
      lastReceiptHash: groupIdOf(g6.genesis),
      lastTimestamp: 0,
      models: g6.genesis.nodes.map((n) => n.modelDigest),
      ...genesisCounters(g6.genesis),
      fees,
      feeVersions: [0, 0, 0, 0, 1, 1],
      recent: [],
      log: [],
    });
    const trim = (r as unknown as { withinMaxFee(v: { node: number }[], maxFee: number): { node: number }[] })
      .withinMaxFee;
    const kept = trim.call(
      r,
      fees.map((_, node) => ({ node })),
      13,
    );
    // M + 14 is not a double: summed in floats, 14 read as 13 once M left, and five votes (fee 14) stayed,
    // which the ledger skips as over-max-fee. The dearest of the others (node 4) must go too: fee 10.
    expect(kept.map((v) => v.node)).toEqual([0, 1, 2, 3]);
  });
});

describe("transfers (a client's payments to other accounts, on the serials its refunds use)", () => {
  const alice = G.client;
  const bob = keyPairFromSeed(new Uint8Array(32).fill(77));
  const transfer = (serial: number, amount = 5, to = bob.publicKey, who = alice, signer = who): Tx =>
    signTransfer(GID, { client: who.publicKey, to, serial, amount }, signer);
  const refund = (serial: number, amount = 5, who = alice): Tx =>
    signRefund(GID, { client: who.publicKey, serial, amount }, who);

  it("refuses a zero, one to the client itself, another key's signature and a gap; a refund and a transfer share the serials (rivals of one serial both wait)", () => {
    const h = new One(1);
    const rejected = (tx: Tx) => only(h.step({ type: 'submitTx', tx }), 'txRejected');
    expect(rejected(transfer(1, 0)).map((a) => a.code)).toEqual(['TX_BAD_AMOUNT']);
    expect(rejected(transfer(1, 5, alice.publicKey)).map((a) => a.code)).toEqual(['TX_TRANSFER_TO_SELF']);
    expect(rejected(transfer(1, 5, bob.publicKey, alice, bob)).map((a) => a.code)).toEqual([
      'TX_BAD_SIGNATURE',
    ]);
    expect(rejected(refund(1))).toEqual([]);
    expect(rejected(transfer(1, 7))).toEqual([]); // a rival of the refund's serial 1
    expect(rejected(transfer(2))).toEqual([]);
    expect(rejected(transfer(4)).map((a) => a.code)).toEqual(['TX_VERSION_GAP']);
    expect(h.pending).toEqual(['r1=5', 't1=7', 't2=5']);
    // Ordered: the first of serial 1 applies, its rival has no effect and goes; serial 2 follows it.
    h.commit(makePP(1, { timestamp: T0, entries: [], txs: [refund(1), transfer(1, 7), transfer(2)] }));
    expect(h.r.currentRefundSerial(alice.publicKey)).toBe(2);
    expect([h.ledger.refunded, h.ledger.balanceOf(bob.publicKey)]).toEqual([5, 5]);
    expect(h.pending).toEqual([]);
    expect(rejected(transfer(2, 9)).map((a) => a.code)).toEqual(['TX_STALE_VERSION']);
  });

  it('without the counts from its host, the replica derives the serials transfers use from the batch; one ahead waits again', () => {
    const h = new One(3);
    h.derive = true;
    h.commit(makePP(1, { timestamp: T0, entries: [], txs: [transfer(2), transfer(1)] }));
    expect(h.r.currentRefundSerial(alice.publicKey)).toBe(1);
    expect(h.pending).toEqual(['t2=5']);
    h.commit(makePP(2, { timestamp: T0 + 1, entries: [], txs: [refund(2)] }));
    expect(h.r.currentRefundSerial(alice.publicKey)).toBe(2);
    expect(h.pending).toEqual([]);
  });

  it('with the balance known, a transfer is held to the balance less requests and refunds waiting (TX_TRANSFER_TOO_LARGE), and a request to the balance less the transfers waiting', () => {
    const h = new One(1);
    h.r.fundsOf = (c) => (Buffer.compare(c, alice.publicKey) === 0 ? 100 : 0);
    const rejected = (tx: Tx) => only(h.step({ type: 'submitTx', tx }), 'txRejected');
    expect(rejected(refund(1, 30))).toEqual([]);
    expect(rejected(transfer(2, 71)).map((a) => [a.code, a.message])).toEqual([
      [
        'TX_TRANSFER_TOO_LARGE',
        "the client's balance is 100, 30 more in its refunds and transfers waiting to be ordered: it may transfer 70, not 71",
      ],
    ]);
    expect(rejected(transfer(2, 50))).toEqual([]);
    expect(h.r.spendsWaitingFor(alice.publicKey)).toBe(80);
    const own = h.step({ type: 'request', request: mkReq(1, h.now, 21) }, h.now);
    expect(only(own, 'rejected').map((a) => a.code)).toEqual(['INSUFFICIENT_FUNDS']);
    expect(only(h.step({ type: 'request', request: mkReq(2, h.now, 20) }, h.now), 'accepted')).toHaveLength(
      1,
    );
    // A payer with no balance: refused from a client, and from a peer without blame.
    expect(rejected(transfer(1, 1, alice.publicKey, bob)).map((a) => a.code)).toEqual([
      'TX_TRANSFER_TOO_LARGE',
    ]);
    const out = h.msg(2, { kind: 'tx', tx: transfer(1, 1, alice.publicKey, bob) });
    expect(only(out, 'peerMisbehaved')).toEqual([]);
  });

  it('a peer spreading a transfer of 0 or to the client itself is punished (no node spreads one: the transaction alone says it is bad)', () => {
    const h = new One(1);
    for (const tx of [transfer(1, 0), transfer(1, 5, alice.publicKey)]) {
      const out = h.msg(2, { kind: 'tx', tx });
      expect(only(out, 'peerMisbehaved').map((a) => a.peer)).toEqual([2]);
    }
    expect(h.pending).toEqual([]);
  });

  it('one waiting that the balance no longer covers once a batch executed is dropped, with the later serials it leaves a gap before', () => {
    let balance = 100;
    const b = new One(1);
    b.r.fundsOf = () => balance;
    b.msg(2, { kind: 'tx', tx: transfer(1, 90) });
    b.msg(2, { kind: 'tx', tx: refund(2, 5) });
    expect(b.pending).toEqual(['t1=90', 'r2=5']);
    balance = 50;
    b.commit(makePP(1, { timestamp: T0, entries: [], txs: [withdrawOf(2, 1)] }));
    expect(b.pending).toEqual([]);
  });
});
