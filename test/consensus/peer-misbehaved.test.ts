/**
 * The replica's peerMisbehaved action (src/consensus/replica.ts): emitted when a peer sends a signature that
 * does not verify, so that the node layer drops and quarantines it: one made in its own name, or one it
 * relayed (another node's, a client's), since a node relays only signatures it checked itself or made.
 */
import { describe, expect, it } from 'vitest';
import { type Action, type Misbehaviour, Replica } from '../../src/consensus/replica.ts';
import { ZERO_DIGEST } from '../../src/consensus/viewchange.ts';
import {
  type Batch,
  batchDigestOf,
  encode,
  type NodeMessage,
  Receipt,
  type SignedViewChange,
  signModelUpdate,
  signResults,
  signTagged,
  TAGS,
  ViewChangeBody,
} from '../../src/protocol/index.ts';
import { forgeRequest } from '../../src/sim/attacks.ts';
import { SMALL_CFG as CFG, G, GID, makePP, mkReq, only, phase, phaseSig, T0, wire } from './fixtures.ts';

const JUNK = new Uint8Array(64).fill(7);
const BATCH: Batch = { timestamp: T0, entries: [], txs: [] };
const DIGEST = batchDigestOf(BATCH);

/** A fresh replica of node `id`, in view 0. */
const replica = (id = 2) => new Replica(G.genesis, id, G.keys[id], CFG);

/** One message from `from`, as the wire delivers it: the actions of that step. */
const deliver = (r: Replica, from: number, msg: NodeMessage): Action[] =>
  r.step({ type: 'message', from, msg: wire(msg) }, T0);

/** The peers a step asked to drop. */
const dropped = (as: Action[]) => only(as, 'peerMisbehaved').map((a) => a.peer);

/** How many times `r` counted `kind` against `node`. */
const count = (r: Replica, node: number, kind: Misbehaviour) => r.misbehaviour.get(node)?.get(kind) ?? 0;

/** A RESULTS batch of `node`, signed with its key, or carrying `signature` instead. */
const results = (node: number, signature?: Uint8Array) => {
  const signed = signResults(
    GID,
    {
      node,
      modelDigest: G.genesis.nodes[node].modelDigest,
      entries: [{ requestId: new Uint8Array(32).fill(node + 1), result: { kind: 'class', top: [] } }],
    },
    G.keys[node],
  );
  return signature ? { ...signed, signature } : signed;
};

/** Node `from`'s VIEW-CHANGE to `newView` from the genesis checkpoint, validly signed unless `forged`. */
const viewChange = (
  from: number,
  newView: number,
  forged = false,
  prepared: ViewChangeBody['prepared'] = [],
) => {
  const body: ViewChangeBody = {
    from,
    newView,
    stableSeq: 0,
    stableDigest: ZERO_DIGEST,
    checkpointProof: [],
    prepared,
  };
  const signature = forged
    ? JUNK
    : signTagged(TAGS.viewChange, GID, encode(ViewChangeBody, body), G.keys[from]);
  return { body, signature } satisfies SignedViewChange;
};

/** Batch BATCH at seq 1, prepared in view 0: node 0's PRE-PREPARE and the PREPAREs of nodes 2 and 3. */
const PREPARED: ViewChangeBody['prepared'] = [
  {
    view: 0,
    seq: 1,
    digest: DIGEST,
    ppSignature: phaseSig(TAGS.prePrepare, 0, 0, 1, DIGEST),
    batch: BATCH,
    prepares: [2, 3].map((node) => ({ node, signature: phaseSig(TAGS.prepare, node, 0, 1, DIGEST) })),
  },
];

describe('peerMisbehaved: a bad signature of the sender’s own', () => {
  it('PREPARE and COMMIT', () => {
    const r = replica();
    const bad = (kind: 'prepare' | 'commit', from: number): NodeMessage => ({
      kind,
      from,
      view: 0,
      seq: 1,
      digest: DIGEST,
      signature: JUNK,
    });
    let as = deliver(r, 3, bad('prepare', 3));
    expect(only(as, 'peerMisbehaved')).toEqual([
      { type: 'peerMisbehaved', peer: 3, reason: 'bad signature on its own prepare' },
    ]);
    as = deliver(r, 1, bad('commit', 1));
    expect(dropped(as)).toEqual([1]);
    expect(count(r, 3, 'bad-signature')).toBe(1);
    // Valid ones: nothing.
    expect(dropped(deliver(r, 3, phase('prepare', 3, 1, DIGEST)))).toEqual([]);
    expect(dropped(deliver(r, 1, phase('commit', 1, 1, DIGEST)))).toEqual([]);
  });

  it('PRE-PREPARE from the primary; one from a non-primary is dropped unchecked', () => {
    const r = replica();
    const forged = { ...makePP(1, BATCH), signature: JUNK };
    expect(dropped(deliver(r, 0, { kind: 'prePrepare', pp: forged }))).toEqual([0]);
    // From node 3, it is not its own signature: counted as a bad sender, never checked, nobody dropped.
    expect(dropped(deliver(r, 3, { kind: 'prePrepare', pp: forged }))).toEqual([]);
    expect(count(r, 3, 'bad-sender')).toBe(1);
    expect(count(r, 3, 'bad-signature')).toBe(0);
  });

  it('RESULTS of its own; another node’s in a RESULTS message is dropped unchecked', () => {
    const r = replica();
    expect(dropped(deliver(r, 1, { kind: 'results', signed: results(1, JUNK) }))).toEqual([1]);
    expect(dropped(deliver(r, 3, { kind: 'results', signed: results(1, JUNK) }))).toEqual([]);
    expect(count(r, 3, 'bad-sender')).toBe(1);
    expect(count(r, 3, 'bad-signature')).toBe(0);
    expect(dropped(deliver(r, 3, { kind: 'results', signed: results(3) }))).toEqual([]);
  });

  it('CHECKPOINT', () => {
    const r = replica();
    const msg: NodeMessage = { kind: 'checkpoint', from: 3, seq: 100, stateDigest: DIGEST, signature: JUNK };
    expect(dropped(deliver(r, 3, msg))).toEqual([3]);
  });

  it('VIEW-CHANGE: its own signature, or one it carries (it checked those before it prepared)', () => {
    const r = replica();
    expect(dropped(deliver(r, 3, { kind: 'viewChange', vc: viewChange(3, 1, true) }))).toEqual([3]);
    const badCert = [{ ...PREPARED[0], prepares: [PREPARED[0].prepares[0], { node: 3, signature: JUNK }] }];
    expect(dropped(deliver(r, 1, { kind: 'viewChange', vc: viewChange(1, 1, false, badCert) }))).toEqual([1]);
    // Invalid for another reason (a prepared seq outside this node's window): counted, nobody dropped.
    const far = [{ ...PREPARED[0], seq: 1000 }];
    expect(dropped(deliver(r, 0, { kind: 'viewChange', vc: viewChange(0, 1, false, far) }))).toEqual([]);
    expect(count(r, 0, 'bad-view-change')).toBe(1);
  });

  it('a model update naming the sender', () => {
    const r = replica();
    const tx = (node: number) => ({
      ...signModelUpdate(GID, { node, version: 1, newDigest: new Uint8Array(32).fill(9) }, G.keys[node]),
      signature: JUNK,
    });
    expect(dropped(deliver(r, 3, { kind: 'tx', tx: tx(3) }))).toEqual([3]);
  });

  it('at most once per peer per step, and the rest of that message goes unchecked', () => {
    const r = replica();
    const as = deliver(r, 1, {
      kind: 'fetched',
      requests: [],
      results: [
        results(1, JUNK),
        { ...results(1, JUNK), batch: { ...results(1).batch, modelDigest: DIGEST } },
      ],
      prePrepares: [],
    });
    expect(dropped(as)).toEqual([1]);
    expect(count(r, 1, 'bad-signature')).toBe(1);
  });
});

describe('peerMisbehaved: also for a signature it only relayed (a node relays only what it checked or made)', () => {
  it('FETCHED: another node’s RESULTS, or the primary’s PRE-PREPARE or one whose batch is not its digest’s', () => {
    const fetched = (m: Partial<Extract<NodeMessage, { kind: 'fetched' }>>): NodeMessage => ({
      kind: 'fetched',
      requests: [],
      results: [],
      prePrepares: [],
      ...m,
    });
    let r = replica();
    expect(dropped(deliver(r, 3, fetched({ results: [results(1, JUNK)] })))).toEqual([3]);
    expect(count(r, 3, 'bad-signature')).toBe(1);
    r = replica();
    const pp = makePP(1, BATCH);
    expect(dropped(deliver(r, 3, fetched({ prePrepares: [{ ...pp, signature: JUNK }] })))).toEqual([3]);
    r = replica();
    const otherBatch = { ...BATCH, timestamp: T0 + 1 };
    expect(dropped(deliver(r, 3, fetched({ prePrepares: [{ ...pp, batch: otherBatch }] })))).toEqual([3]);
    expect(count(r, 3, 'bad-proposal')).toBe(1);
    // Valid ones: nobody.
    r = replica();
    expect(dropped(deliver(r, 3, fetched({ results: [results(1)], prePrepares: [pp] })))).toEqual([]);
  });

  it('FORWARD and FETCHED: a client request whose signature is bad, once per message', () => {
    let r = replica();
    const forged = forgeRequest(mkReq(1));
    const as = deliver(r, 3, { kind: 'forward', requests: [forged, forgeRequest(mkReq(2))] });
    expect(dropped(as)).toEqual([3]);
    expect(count(r, 3, 'bad-request')).toBe(1); // the second went unchecked
    r = replica();
    const f = deliver(r, 1, { kind: 'fetched', requests: [forged], results: [], prePrepares: [] });
    expect(dropped(f)).toEqual([1]);
    // A genuine request: taken, nobody dropped.
    r = replica();
    expect(dropped(deliver(r, 3, { kind: 'forward', requests: [mkReq(3)] }))).toEqual([]);
  });

  it('state transfer: a checkpoint proof or a receipt signature that does not verify', () => {
    let r = replica();
    const cp = deliver(r, 3, {
      kind: 'stateResponse',
      from: 3,
      batches: [],
      view: 0,
      newView: null,
      checkpoint: { seq: 100, stateDigest: DIGEST, proof: [{ node: 1, signature: JUNK }] },
    });
    expect(dropped(cp)).toEqual([3]);
    expect(count(r, 3, 'bad-signature')).toBe(1);
    expect(count(r, 1, 'bad-signature')).toBe(0); // not the node named in the proof
    r = replica();
    const receipt = {
      groupId: GID,
      seq: 1,
      batchDigest: DIGEST,
      prevReceipt: GID,
      resultsRoot: DIGEST,
      resultsCount: 0,
    };
    /** Node 3's state response: batch 1 with one receipt signature of node 1's. */
    const respond = (signature: Uint8Array): NodeMessage => ({
      kind: 'stateResponse',
      from: 3,
      batches: [
        {
          seq: 1,
          view: 0,
          batch: BATCH,
          requests: [],
          results: [],
          receipt,
          receiptSigs: [{ node: 1, signature, view: null }],
          commitSigs: [],
        },
      ],
      view: 0,
      newView: null,
      checkpoint: null,
    });
    const bad = deliver(r, 3, respond(JUNK));
    expect(dropped(bad)).toEqual([3]);
    expect(count(r, 3, 'bad-state')).toBe(1);
    // A genuine signature short of a quorum: a problem of proof, not of forgery; counted, nobody dropped.
    r = replica();
    const real = signTagged(TAGS.receipt, GID, encode(Receipt, receipt), G.keys[1]);
    const short = deliver(r, 3, respond(real));
    expect(dropped(short)).toEqual([]);
    expect(count(r, 3, 'bad-state')).toBe(1);
  });

  it('a model update naming another node, which no node spreads but its own submissions', () => {
    const r = replica();
    const tx = {
      ...signModelUpdate(GID, { node: 3, version: 1, newDigest: new Uint8Array(32).fill(9) }, G.keys[3]),
      signature: JUNK,
    };
    expect(dropped(deliver(r, 1, { kind: 'tx', tx }))).toEqual([1]);
    expect(count(r, 1, 'bad-tx')).toBe(1);
  });

  it('NEW-VIEW: any forged VIEW-CHANGE or re-proposal in it, sent directly or in a state response', () => {
    const nv = (vcs: SignedViewChange[], reproposal: Uint8Array): NodeMessage => ({
      kind: 'newView',
      from: 1,
      newView: 1,
      viewChanges: vcs,
      proposals: [{ seq: 1, digest: DIGEST, signature: reproposal }],
    });
    const good = phaseSig(TAGS.prePrepare, 1, 1, 1, DIGEST);
    const vcs = (forged: number) =>
      [0, 1, 3].map((n) => viewChange(n, 1, n === forged, n === 3 ? PREPARED : []));
    // The primary of view 1 sends it, carrying node 3's forged VIEW-CHANGE: it checked them, so it goes.
    let r = replica();
    expect(dropped(deliver(r, 1, nv(vcs(3), good)))).toEqual([1]);
    expect(count(r, 1, 'bad-new-view')).toBe(1);
    // Relayed by node 3, with node 0's forged, or with its own: node 3.
    expect(dropped(deliver(r, 3, nv(vcs(0), good)))).toEqual([3]);
    expect(dropped(deliver(r, 3, nv(vcs(3), good)))).toEqual([3]);
    // A bad re-proposal signature: the sender's, primary or not.
    expect(dropped(deliver(r, 3, nv(vcs(-1), JUNK)))).toEqual([3]);
    expect(dropped(deliver(r, 1, nv(vcs(-1), JUNK)))).toEqual([1]);
    // In a state response (taken once the transfer is done): the peer that sent the response, not the
    // primary that signed the NEW-VIEW.
    r = replica();
    const st = r.step(
      {
        type: 'message',
        from: 3,
        msg: wire({
          kind: 'stateResponse',
          from: 3,
          batches: [],
          view: 1,
          newView: { ...(nv(vcs(0), good) as Extract<NodeMessage, { kind: 'newView' }>) },
          checkpoint: null,
        } as NodeMessage),
      },
      T0,
    );
    expect(dropped(st)).toEqual([3]);
    expect(count(r, 3, 'bad-new-view')).toBe(1);
    expect(count(r, 1, 'bad-new-view')).toBe(0);
    // And valid: taken, nobody dropped.
    r = replica();
    const as = deliver(r, 3, nv(vcs(-1), good));
    expect(dropped(as)).toEqual([]);
    expect(r.view).toBe(1);
  });
});
