/**
 * The replica's peerMisbehaved action (src/consensus/replica.ts): emitted when a peer sends, itself, a
 * signature made in its own name that does not verify, so that the node layer drops and quarantines it;
 * never for a signature the peer only relayed (another node's, a client's), which is only counted.
 */
import { describe, expect, it } from 'vitest';
import { type Action, type Misbehaviour, Replica } from '../../src/consensus/replica.ts';
import { ZERO_DIGEST } from '../../src/consensus/viewchange.ts';
import {
  type Batch,
  batchDigestOf,
  encode,
  type NodeMessage,
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

  it('a model update naming the sender; one naming another node is only counted', () => {
    const r = replica();
    const tx = (node: number) => ({
      ...signModelUpdate(GID, { node, version: 1, newDigest: new Uint8Array(32).fill(9) }, G.keys[node]),
      signature: JUNK,
    });
    expect(dropped(deliver(r, 3, { kind: 'tx', tx: tx(3) }))).toEqual([3]);
    expect(dropped(deliver(r, 1, { kind: 'tx', tx: tx(3) }))).toEqual([]);
    expect(count(r, 1, 'bad-tx')).toBe(1);
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

describe('peerMisbehaved: never for a relayed signature', () => {
  it('FETCHED: another node’s RESULTS or the primary’s PRE-PREPARE (its own RESULTS do count)', () => {
    const r = replica();
    const as = deliver(r, 3, {
      kind: 'fetched',
      requests: [],
      results: [results(1, JUNK)],
      prePrepares: [{ ...makePP(1, BATCH), signature: JUNK }],
    });
    expect(dropped(as)).toEqual([]);
    expect(count(r, 3, 'bad-signature')).toBe(2);
    const own = deliver(r, 3, {
      kind: 'fetched',
      requests: [],
      results: [results(3, JUNK)],
      prePrepares: [],
    });
    expect(dropped(own)).toEqual([3]);
    // The primary handing over its own PRE-PREPARE in a FETCHED answer.
    const pp = deliver(r, 0, {
      kind: 'fetched',
      requests: [],
      results: [],
      prePrepares: [{ ...makePP(1, BATCH), signature: JUNK }],
    });
    expect(dropped(pp)).toEqual([0]);
  });

  it('FORWARD: a client request whose signature is bad', () => {
    const r = replica();
    const as = deliver(r, 3, { kind: 'forward', requests: [forgeRequest(mkReq(1))] });
    expect(dropped(as)).toEqual([]);
    expect(count(r, 3, 'bad-request')).toBe(1);
  });

  it('state transfer: a checkpoint proof with a bad signature', () => {
    const r = replica();
    const as = deliver(r, 3, {
      kind: 'stateResponse',
      from: 3,
      batches: [],
      view: 0,
      newView: null,
      checkpoint: { seq: 100, stateDigest: DIGEST, proof: [{ node: 3, signature: JUNK }] },
    });
    expect(dropped(as)).toEqual([]);
  });

  it('NEW-VIEW: others’ VIEW-CHANGEs are not the relayer’s fault; its own are, and the primary’s re-proposals', () => {
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
    // The primary of view 1 sends it, carrying node 3's forged VIEW-CHANGE: counted against the primary.
    let r = replica();
    expect(dropped(deliver(r, 1, nv(vcs(3), good)))).toEqual([]);
    expect(count(r, 1, 'bad-new-view')).toBe(1);
    // Relayed by node 3, with node 0's forged: nobody dropped.
    expect(dropped(deliver(r, 3, nv(vcs(0), good)))).toEqual([]);
    // Relayed by node 3, with its own forged: node 3 dropped.
    expect(dropped(deliver(r, 3, nv(vcs(3), good)))).toEqual([3]);
    // A bad re-proposal signature: the primary's own when it sends the NEW-VIEW, only relayed by node 3.
    expect(dropped(deliver(r, 3, nv(vcs(-1), JUNK)))).toEqual([]);
    expect(dropped(deliver(r, 1, nv(vcs(-1), JUNK)))).toEqual([1]);
    // And valid: taken, nobody dropped.
    r = replica();
    const as = deliver(r, 3, nv(vcs(-1), good));
    expect(dropped(as)).toEqual([]);
    expect(r.view).toBe(1);
  });
});
