/**
 * Replica bugs found by a review against PROTOCOL.md (2026-12-04), one scenario each, driven by hand with
 * properly signed messages and the real ledger state machine answering previews and executions.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  type Action,
  type Event,
  FETCH_SERVE_BURST_BYTES,
  FETCH_SERVE_BYTES_PER_SEC,
  Replica,
  type ReplicaConfig,
} from '../../src/consensus/replica.ts';
import { deriveNewView } from '../../src/consensus/viewchange.ts';
import { LedgerState } from '../../src/ledger/state.ts';
import {
  type Batch,
  type BatchEntry,
  batchDigestOf,
  CheckpointBody,
  encode,
  hex,
  type NodeMessage,
  type PrePrepare,
  type Receipt,
  receiptHashOf,
  requestIdOf,
  type SignedRequest,
  type SignedViewChange,
  sha256,
  signReceiptAs,
  signRequest,
  signTagged,
  TAGS,
  ViewChangeBody,
} from '../../src/protocol/index.ts';
import {
  G,
  GID,
  makePP,
  mkReq,
  NEVER,
  phase,
  phaseSig,
  restoreNode,
  resultsOf,
  stepWithLedger,
  T0,
  voteOf,
  wire,
} from './fixtures.ts';

const ZERO = new Uint8Array(32);
const QUIET: Partial<ReplicaConfig> = { retransmitMs: NEVER, viewChangeTimeoutMs: NEVER };

/** The PRE-PREPARE of a batch of `entries` (no transactions). */
const ppOf = (seq: number, entries: BatchEntry[], view = 0, timestamp = T0): PrePrepare =>
  makePP(seq, { timestamp, entries, txs: [] }, view);

const prepare = (from: number, seq: number, digest: Uint8Array, view = 0): NodeMessage =>
  phase('prepare', from, seq, digest, view);

/** One replica; its previews and executions answered at once by a real LedgerState. */
class One {
  readonly r: Replica;
  readonly ledger = new LedgerState(G.genesis);
  readonly log: Action[] = [];
  constructor(
    readonly id: number,
    cfg: Partial<ReplicaConfig> = {},
    r?: Replica,
  ) {
    this.r = r ?? new Replica(G.genesis, id, G.keys[id], { ...QUIET, ...cfg });
  }
  step(ev: Event, at: number): Action[] {
    return stepWithLedger(this.r, ev, at, this.ledger, (acts) => this.log.push(...acts));
  }
  msg(from: number, m: NodeMessage, at: number): Action[] {
    return this.step({ type: 'message', from, msg: wire(m) }, at);
  }
}

const sent = (acts: Action[], kind: NodeMessage['kind']) =>
  acts.flatMap((a) => ((a.type === 'broadcast' || a.type === 'send') && a.msg.kind === kind ? [a.msg] : []));

/** A VIEW-CHANGE to view 1 from `from`, carrying a prepared certificate for `cert` when given. */
function viewChange(from: number, batch?: Batch): SignedViewChange {
  const prepared = batch
    ? [
        {
          view: 0,
          seq: 1,
          digest: batchDigestOf(batch),
          ppSignature: phaseSig(TAGS.prePrepare, 0, 0, 1, batchDigestOf(batch)),
          batch,
          prepares: [2, 3].map((node) => ({
            node,
            signature: phaseSig(TAGS.prepare, node, 0, 1, batchDigestOf(batch)),
          })),
        },
      ]
    : [];
  const body = { from, newView: 1, stableSeq: 0, stableDigest: ZERO, checkpointProof: [], prepared };
  return { body, signature: signTagged(TAGS.viewChange, GID, encode(ViewChangeBody, body), G.keys[from]) };
}

/** Node 1's NEW-VIEW for view 1 from `vcs` (its re-proposals signed), delivered to `h`. */
function newView1(h: One, vcs: SignedViewChange[], at: number) {
  const proposals = deriveNewView(vcs).proposals.map((p) => ({
    seq: p.seq,
    digest: p.digest,
    signature: phaseSig(TAGS.prePrepare, 1, 1, p.seq, p.digest),
  }));
  const acts = h.msg(1, { kind: 'newView', from: 1, newView: 1, viewChanges: vcs, proposals }, at);
  return { acts, proposals };
}

/** A replica restarted with its disk's last writes lost: it knows no floor for its signatures yet. */
function forgetful(id: number): Replica {
  return restoreNode(id, QUIET, [{ kind: 'forgotten' }]);
}

describe('replica, review of 2026-12-04', () => {
  it('a new primary that may have lost signed records sends no NEW-VIEW while its sign floor is unknown', () => {
    const r = forgetful(1);
    expect(r.signFloorView).toBe(Number.POSITIVE_INFINITY);
    const batch: Batch = { timestamp: T0, entries: [], txs: [] };
    const acts: Action[] = [];
    for (const from of [0, 2, 3])
      acts.push(
        ...r.step({ type: 'message', from, msg: { kind: 'viewChange', vc: viewChange(from, batch) } }, T0),
      );
    expect(sent(acts, 'newView')).toEqual([]);
    expect(acts.filter((a) => a.type === 'persist' && a.record.kind === 'prePrepare')).toEqual([]);
  });

  it('a new primary re-proposing a batch it must first complete (a RESULTS missing) does not propose its request again', () => {
    const sr = mkReq(1);
    const id = requestIdOf(sr);
    const res = [0, 1, 2, 3].map((n) => resultsOf(n, [id]));
    const batch: Batch = {
      timestamp: T0,
      entries: [{ requestId: id, votes: [0, 2, 3].map((n) => voteOf(res[n], 0)) }],
      txs: [],
    };
    const p = new One(1, { voteWaitMs: 2, idleBatchTimeoutMs: 0 });
    p.step({ type: 'request', request: sr }, T0);
    const mine = res[1].batch.entries.map((e) => ({ requestId: e.requestId, result: e.result }));
    p.step({ type: 'inferred', modelDigest: G.genesis.nodes[1].modelDigest, results: mine }, T0 + 1);
    for (const n of [0, 3]) p.msg(n, { kind: 'results', signed: res[n] }, T0 + 2); // node 2's RESULTS lost
    p.r.startViewChange(1);
    const acts: Action[] = [];
    acts.push(...p.msg(2, { kind: 'viewChange', vc: viewChange(2, batch) }, T0 + 3));
    acts.push(...p.msg(3, { kind: 'viewChange', vc: viewChange(3) }, T0 + 3));
    acts.push(...p.step({ type: 'tick' }, T0 + 10), ...p.step({ type: 'tick' }, T0 + 13));
    expect(sent(acts, 'newView').map((m) => m.kind === 'newView' && m.proposals.map((x) => x.seq))).toEqual([
      [1],
    ]);
    // The request is ordered at seq 1 by the NEW-VIEW: no fresh PRE-PREPARE may carry it.
    expect(sent(acts, 'prePrepare')).toEqual([]);
    // Once node 2's RESULTS come, seq 1 is accepted and still nothing is proposed twice.
    const later = p.msg(0, { kind: 'fetched', requests: [], results: [res[2]], prePrepares: [] }, T0 + 20);
    later.push(...p.step({ type: 'tick' }, T0 + 30));
    expect(sent(later, 'prePrepare')).toEqual([]);
  });

  it("one peer's junk receipt signatures, sent before a batch is previewed, do not crowd out the others'", () => {
    const cfg = { window: 8, checkpointInterval: 100 };
    const setup = () => {
      const h = new One(1, cfg);
      const reqs = [mkReq(0)];
      const ids = reqs.map(requestIdOf);
      const res = [0, 1, 2, 3].map((node) => resultsOf(node, ids));
      h.msg(0, { kind: 'forward', requests: reqs }, T0);
      for (const v of [0, 2, 3]) h.msg(v, { kind: 'results', signed: res[v] }, T0);
      const mine = res[1].batch.entries.map((e) => ({ requestId: e.requestId, result: e.result }));
      h.step({ type: 'inferred', modelDigest: G.genesis.nodes[1].modelDigest, results: mine }, T0);
      const pp = ppOf(
        1,
        [{ requestId: ids[0], votes: [0, 1, 2, 3].map((v) => voteOf(res[v], 0)) }],
        0,
        T0 + 5,
      );
      return { h, pp };
    };
    // The receipt batch 1 previews to (deterministic), from a replica that prepares it.
    const probe = setup();
    probe.h.msg(0, { kind: 'prePrepare', pp: probe.pp }, T0 + 10);
    probe.h.msg(2, prepare(2, 1, probe.pp.digest), T0 + 13);
    const pv = probe.h.log.find((a) => a.type === 'preview');
    if (pv?.type !== 'preview') throw new Error('no preview');
    const receipt: Receipt = new LedgerState(G.genesis).preview(pv.seq, pv.digest, pv.batch, pv.entries);
    const hash = receiptHashOf(receipt);

    const run = (junk: number) => {
      const { h, pp } = setup();
      h.msg(0, { kind: 'prePrepare', pp }, T0 + 10);
      for (let i = 0; i < junk; i++) {
        const j = { kind: 'receiptSig' as const, from: 3, seq: 1, view: 0 };
        h.msg(3, { ...j, receiptHash: randomBytes(32), signature: randomBytes(64) }, T0 + 11);
      }
      for (const from of [0, 2])
        h.msg(
          from,
          {
            kind: 'receiptSig',
            from,
            seq: 1,
            receiptHash: hash,
            signature: signReceiptAs(GID, receipt, hash, 0, G.keys[from]),
            view: 0,
          },
          T0 + 12,
        );
      h.msg(2, prepare(2, 1, pp.digest), T0 + 13);
      return h.log.some((a) => a.type === 'execute');
    };
    expect(run(0)).toBe(true);
    expect(run(16)).toBe(true);
    expect(hex(hash)).toHaveLength(64);
  });

  it('after a checkpoint, a batch executed above it and re-proposed by a NEW-VIEW is prepared again at once (its RESULTS were collected)', () => {
    const h = new One(2, { receiptCommits: false, checkpointInterval: 1, window: 4 });
    const reqs = [mkReq(0), mkReq(1)];
    const ids = reqs.map(requestIdOf);
    const res = [0, 1, 2, 3].map((node) => resultsOf(node, ids));
    h.msg(0, { kind: 'forward', requests: reqs }, T0);
    for (const v of [0, 1, 3]) h.msg(v, { kind: 'results', signed: res[v] }, T0);
    const mine = res[2].batch.entries.map((e) => ({ requestId: e.requestId, result: e.result }));
    h.step({ type: 'inferred', modelDigest: G.genesis.nodes[2].modelDigest, results: mine }, T0);
    const entry = (i: number): BatchEntry => ({
      requestId: ids[i],
      votes: [0, 1, 2, 3].map((v) => voteOf(res[v], i)),
    });
    const pps = [ppOf(1, [entry(0)], 0, T0 + 5), ppOf(2, [entry(1)], 0, T0 + 6)];
    const phase = (kind: 'prepare' | 'commit', from: number, pp: PrePrepare): NodeMessage => {
      const tag = kind === 'prepare' ? TAGS.prepare : TAGS.commit;
      return {
        kind,
        from,
        view: 0,
        seq: pp.seq,
        digest: pp.digest,
        signature: phaseSig(tag, from, 0, pp.seq, pp.digest),
      };
    };
    const checkpoints: NodeMessage[] = [];
    for (const pp of pps) {
      h.msg(0, { kind: 'prePrepare', pp }, T0 + 10);
      h.msg(1, phase('prepare', 1, pp), T0 + 11);
      h.msg(0, phase('commit', 0, pp), T0 + 12);
      checkpoints.push(...sent(h.msg(1, phase('commit', 1, pp), T0 + 13), 'checkpoint'));
    }
    expect(h.r.lastExecuted).toBe(2);
    // Checkpoint 1 becomes stable only now, with batch 2 executed above it.
    const cp1 = checkpoints.find((m) => m.kind === 'checkpoint' && m.seq === 1);
    if (cp1?.kind !== 'checkpoint') throw new Error('no checkpoint at seq 1');
    const cpSig = (from: number) =>
      signTagged(
        TAGS.checkpoint,
        GID,
        encode(CheckpointBody, { from, seq: 1, stateDigest: cp1.stateDigest }),
        G.keys[from],
      );
    for (const from of [0, 1])
      h.msg(
        from,
        { kind: 'checkpoint', from, seq: 1, stateDigest: cp1.stateDigest, signature: cpSig(from) },
        T0 + 20,
      );
    expect(h.r.stable).toBe(1);

    // View 1 (primary: node 1) from the VIEW-CHANGEs of nodes 0, 1 and 3: stable at 1, batch 2 prepared.
    const pp2 = pps[1];
    const cert = {
      view: 0,
      seq: 2,
      digest: pp2.digest,
      ppSignature: pp2.signature,
      batch: pp2.batch,
      prepares: [1, 2].map((node) => ({ node, signature: phaseSig(TAGS.prepare, node, 0, 2, pp2.digest) })),
    };
    const vcs: SignedViewChange[] = [0, 1, 3].map((from) => {
      const body = {
        from,
        newView: 1,
        stableSeq: 1,
        stableDigest: cp1.stateDigest,
        checkpointProof: [0, 1, 2].map((node) => ({ node, signature: cpSig(node) })),
        prepared: [cert],
      };
      return {
        body,
        signature: signTagged(TAGS.viewChange, GID, encode(ViewChangeBody, body), G.keys[from]),
      };
    });
    const { acts, proposals } = newView1(h, vcs, T0 + 30);
    expect(proposals.map((p) => p.seq)).toEqual([2]);
    expect(h.r.view).toBe(1);
    // It executed exactly this batch: it prepares it in the new view, and fetches nothing.
    expect(sent(acts, 'fetch')).toEqual([]);
    expect(sent(acts, 'prepare').map((m) => m.kind === 'prepare' && [m.view, m.seq])).toEqual([[1, 2]]);
  });
});

describe('replica, review of 2026-12-05: a NEW-VIEW re-proposal a backup could not take yet', () => {
  // Batch B at seq 1 (one request, votes of nodes 0, 1, 2) was prepared in view 0 by nodes 0 and 2, and node
  // 2 executed it. Node 3 holds neither the request nor the RESULTS. View 1's primary, node 1 (faulty),
  // sends a valid NEW-VIEW re-proposing B: node 3 parks it and asks for what it lacks.
  const sr = mkReq(1);
  const id = requestIdOf(sr);
  const res = [0, 1, 2].map((n) => resultsOf(n, [id]));
  const B: Batch = {
    timestamp: T0,
    entries: [{ requestId: id, votes: res.map((r) => voteOf(r, 0)) }],
    txs: [],
  };
  const dB = batchDigestOf(B);
  const enterView1 = (holdsRequest = false) => {
    const h = new One(3);
    if (holdsRequest) h.msg(0, { kind: 'forward', requests: [sr] }, T0 + 1);
    const { acts, proposals } = newView1(h, [viewChange(0, B), viewChange(1), viewChange(2, B)], T0 + 30);
    expect(h.r.view).toBe(1);
    expect(proposals.map((p) => [p.seq, hex(p.digest)])).toEqual([[1, hex(dB)]]);
    return {
      h,
      acts,
      reproposal: { view: 1, seq: 1, digest: dB, signature: proposals[0].signature, batch: B },
    };
  };

  it('asks every node for what the re-proposal lacks, not only the new primary', () => {
    const { acts } = enterView1();
    const fetches = acts.filter(
      (a) => (a.type === 'broadcast' || a.type === 'send') && a.msg.kind === 'fetch',
    );
    expect(fetches.map((a) => a.type)).toEqual(['broadcast']);
    expect(sent(acts, 'prepare')).toEqual([]);
  });

  it('refuses a fresh PRE-PREPARE of the new primary for that seq, records the equivocation, and prepares the re-proposal once complete', () => {
    const { h } = enterView1();
    // Another batch at (1, 1): empty, fresh timestamp, nothing to fetch, so the normal rules would take it.
    const other = makePP(1, { timestamp: T0 + 31, entries: [], txs: [] }, 1);
    const acts = h.msg(1, { kind: 'prePrepare', pp: other }, T0 + 31);
    expect(sent(acts, 'prepare')).toEqual([]);
    expect(h.r.evidence.map((e) => e.detail)).toEqual([
      'a pre-prepare for view 1 seq 1 against its own NEW-VIEW re-proposal',
    ]);
    // Honest node 2 answers the fetch: the re-proposal is prepared, with its own digest.
    const later = h.msg(2, { kind: 'fetched', requests: [sr], results: res, prePrepares: [] }, T0 + 32);
    expect(sent(later, 'prepare').map((m) => m.kind === 'prepare' && [m.view, m.seq, hex(m.digest)])).toEqual(
      [[1, 1, hex(dB)]],
    );
  });

  it('takes the re-proposal relayed again (a FETCHED answer) under the NEW-VIEW rules: no blame, still parked', () => {
    // Node 3 holds the request (parking the re-proposal marked it proposed) and lacks the RESULTS.
    const { h, reproposal } = enterView1(true);
    const acts = h.msg(2, { kind: 'fetched', requests: [], results: [], prePrepares: [reproposal] }, T0 + 31);
    expect(sent(acts, 'prepare')).toEqual([]);
    expect(h.r.evidence).toEqual([]);
    expect(h.r.misbehaviour.get(1)).toBeUndefined();
    expect(acts.filter((a) => a.type === 'peerMisbehaved')).toEqual([]);
    const later = h.msg(2, { kind: 'fetched', requests: [sr], results: res, prePrepares: [] }, T0 + 32);
    expect(sent(later, 'prepare').map((m) => m.kind === 'prepare' && [m.view, m.seq, hex(m.digest)])).toEqual(
      [[1, 1, hex(dB)]],
    );
  });
});

describe('replica, review of 2026-12-05: view changes held per sender', () => {
  const signedVc = (from: number, newView: number): SignedViewChange => {
    const body = { from, newView, stableSeq: 0, stableDigest: ZERO, checkpointProof: [], prepared: [] };
    return { body, signature: signTagged(TAGS.viewChange, GID, encode(ViewChangeBody, body), G.keys[from]) };
  };
  const held = (r: Replica) => {
    const m = (r as unknown as { vcMessages: Map<number, Map<number, SignedViewChange>> }).vcMessages;
    return [...m].flatMap(([v, byNode]) => [...byNode.keys()].map((node) => [node, v]));
  };

  it("keeps only a sender's latest VIEW-CHANGE: a faulty node signing one per view number fills nothing", () => {
    const h = new One(0);
    for (let v = 1; v <= 300; v++) h.msg(2, { kind: 'viewChange', vc: signedVc(2, v) }, T0 + v);
    expect(held(h.r)).toEqual([[2, 300]]);
    // An older one arriving late is superseded; one node alone moves nobody (f + 1 are needed).
    h.msg(2, { kind: 'viewChange', vc: signedVc(2, 5) }, T0 + 400);
    expect(held(h.r)).toEqual([[2, 300]]);
    expect(h.r.view).toBe(0);
    // With an honest node asking for view 1, f + 1 want a higher view: it joins the smallest, as before.
    h.msg(3, { kind: 'viewChange', vc: signedVc(3, 1) }, T0 + 401);
    expect(h.r.view).toBe(1);
    expect(h.r.viewChanging).toBe(true);
  });
});

describe('replica, review of 2026-12-05: votes for requests never received are bounded', () => {
  const inner = (r: Replica) =>
    r as unknown as {
      votes: Map<string, Map<number, unknown>>;
      results: Map<string, unknown>;
    };
  /** How many request ids `node` holds a vote for here. */
  const votesOf = (r: Replica, node: number) =>
    [...inner(r).votes.values()].filter((m) => m.has(node)).length;
  const madeUp = (count: number) => Array.from({ length: count }, () => new Uint8Array(randomBytes(32)));

  it("at most maxOrphanVotesPerNode per peer; a RESULTS holding none is not kept; another peer's are unaffected", () => {
    const h = new One(0, { maxOrphanVotesPerNode: 8 });
    h.msg(2, { kind: 'results', signed: resultsOf(2, madeUp(20)) }, T0);
    expect(votesOf(h.r, 2)).toBe(8);
    const kept = inner(h.r).results.size;
    h.msg(2, { kind: 'results', signed: resultsOf(2, madeUp(20)) }, T0 + 1);
    expect(votesOf(h.r, 2)).toBe(8);
    expect(inner(h.r).results.size).toBe(kept);
    h.msg(3, { kind: 'results', signed: resultsOf(3, madeUp(5)) }, T0 + 2);
    expect(votesOf(h.r, 3)).toBe(5);
  });

  it("a request that arrives is no orphan any more: the peer's allowance has room again", () => {
    const h = new One(0, { maxOrphanVotesPerNode: 8 });
    const sr = mkReq(1);
    h.msg(2, { kind: 'results', signed: resultsOf(2, [requestIdOf(sr), ...madeUp(7)]) }, T0);
    h.msg(2, { kind: 'results', signed: resultsOf(2, madeUp(3)) }, T0 + 1);
    expect(votesOf(h.r, 2)).toBe(8);
    h.msg(1, { kind: 'forward', requests: [sr] }, T0 + 2);
    h.msg(2, { kind: 'results', signed: resultsOf(2, madeUp(3)) }, T0 + 3);
    expect(votesOf(h.r, 2)).toBe(9);
  });

  it('drops them, and the RESULTS that held them, once the requests they name must have expired', () => {
    const h = new One(0, { retransmitMs: 100, viewChangeTimeoutMs: 1000 });
    h.msg(2, { kind: 'results', signed: resultsOf(2, madeUp(20)) }, T0);
    expect(votesOf(h.r, 2)).toBe(20);
    const before = inner(h.r).results.size;
    const p = G.genesis.params;
    const past = T0 + p.expiryMs + 2 * p.maxClockSkewMs + 1000 + 1000; // + the view-change timeout
    for (let t = T0 + 200; t <= past; t += 5000) h.step({ type: 'tick' }, t);
    h.step({ type: 'tick' }, past + 200);
    expect(votesOf(h.r, 2)).toBe(0);
    expect(inner(h.r).results.size).toBe(before - 1);
  });
});

describe('replica, review of 2026-12-05: an answer for a request no longer held', () => {
  it('is not signed: a request forgotten while its inference ran gets no RESULTS', () => {
    const h = new One(0, { viewChangeTimeoutMs: 1000 });
    const sr = mkReq(1);
    const acts = h.msg(1, { kind: 'forward', requests: [sr] }, T0);
    acts.push(...h.step({ type: 'tick' }, T0 + 2));
    const asked = acts.filter((a) => a.type === 'infer');
    expect(asked).toHaveLength(1);
    // Long past its expiry and the guard after it: swept from the pool while the model still ran.
    const p = G.genesis.params;
    const later = T0 + p.expiryMs + 2 * p.maxClockSkewMs + 1000 + 10_000;
    h.step({ type: 'tick' }, later);
    expect(h.r.pendingRequests).toBe(0);
    const result = {
      requestId: requestIdOf(sr),
      result: { kind: 'class' as const, top: [{ label: 7, score: 900_000 }] },
    };
    const out = h.step(
      { type: 'inferred', modelDigest: G.genesis.nodes[0].modelDigest, results: [result] },
      later + 1,
    );
    expect(sent(out, 'results')).toEqual([]);
    expect(out.filter((a) => a.type === 'saveResults')).toEqual([]);
  });
});

describe('replica, review of 2026-12-05: a proposal within the client maxFee', () => {
  /** The nodes whose votes node 0, the primary, proposes for `sr` once all four voted. */
  const proposedVoters = (sr: SignedRequest) => {
    const h = new One(0, { voteWaitMs: 1, batchTimeoutMs: 1, idleBatchTimeoutMs: 0 });
    const id = requestIdOf(sr);
    h.step({ type: 'request', request: sr }, T0);
    const mine = resultsOf(0, [id]).batch.entries.map((e) => ({ requestId: e.requestId, result: e.result }));
    h.step({ type: 'inferred', modelDigest: G.genesis.nodes[0].modelDigest, results: mine }, T0 + 1);
    for (const n of [1, 2, 3]) h.msg(n, { kind: 'results', signed: resultsOf(n, [id]) }, T0 + 2);
    for (let t = T0 + 3; t < T0 + 20; t++) h.step({ type: 'tick' }, t);
    const pps = sent(h.log, 'prePrepare');
    expect(pps).toHaveLength(1);
    return pps[0].kind === 'prePrepare' ? pps[0].pp.batch.entries[0].votes.map((v) => v.node) : [];
  };

  it('drops the dearest votes while more than q remain and their fees are over it', () => {
    // Fees are 1, 2, 3, 4 (node id + 1); q = 3. The API's least maxFee is the three lowest: 6.
    expect(G.genesis.nodes.map((n) => n.fee)).toEqual([1, 2, 3, 4]);
    expect(proposedVoters(mkReq(1, T0, 6))).toEqual([0, 1, 2]);
    expect(proposedVoters(mkReq(2, T0, 10))).toEqual([0, 1, 2, 3]);
    // Over it even with q votes: q of them go, and the ledger skips it (over-max-fee) as before.
    expect(proposedVoters(mkReq(3, T0, 5))).toEqual([0, 1, 2]);
  });
});

describe('replica, review of 2026-12-06: FETCH answers within a byte budget per peer', () => {
  // A FETCH of ~50 bytes naming one request of ~1 MB asked for ~1 MB of answer, encoded and sent each
  // time: a faulty peer asking in a loop kept this node encoding and its link full, without limit.
  const input = new Uint8Array(randomBytes(1_000_000));
  const sr = signRequest(
    {
      groupId: GID,
      client: G.client.publicKey,
      nonce: 1,
      timestamp: T0,
      inputDigest: sha256(input),
      policy: null,
      maxFee: 1_000_000,
    },
    input,
    G.client,
  );
  const id = requestIdOf(sr);
  const ask: NodeMessage = { kind: 'fetch', from: 1, requests: [id], results: [], seqs: [], prePrepares: [] };
  const answers = (acts: Action[]) => sent(acts, 'fetched').length;

  it('a peer asking again and again gets a burst, then answers at the pace of the budget', () => {
    const h = new One(0);
    expect(h.step({ type: 'request', request: sr }, T0).some((a) => a.type === 'accepted')).toBe(true);
    let n = 0;
    for (let i = 0; i < 100; i++) n += answers(h.msg(1, ask, T0 + 1));
    // The burst (FETCH_SERVE_BURST_BYTES) and one answer more, not one per FETCH.
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThanOrEqual(FETCH_SERVE_BURST_BYTES / 1_000_000 + 1);
    // A second later, a second's worth of budget: as many answers again as it buys, no more.
    let m = 0;
    for (let i = 0; i < 100; i++) m += answers(h.msg(1, ask, T0 + 1001));
    expect(m).toBeGreaterThan(0);
    expect(m).toBeLessThanOrEqual(FETCH_SERVE_BYTES_PER_SEC / 1_000_000 + 1);
    // Another peer has a budget of its own.
    expect(answers(h.msg(2, { ...ask, from: 2 }, T0 + 1001))).toBe(1);
  });
});

describe('replica, review of 2026-12-06: a VIEW-CHANGE for the current view', () => {
  // A peer's VIEW-CHANGE for the view this node is in says it missed the NEW-VIEW: the node sends it again.
  // That was done for every such message, before any check, so a faulty peer repeating one small VIEW-CHANGE
  // (replaying its own, or an unsigned one) got the whole NEW-VIEW (q VIEW-CHANGEs and their certificates)
  // each time, as fast as it could ask.
  it('is answered with the NEW-VIEW at most once per retransmission interval per peer', () => {
    const h = new One(3, { retransmitMs: 100 });
    newView1(h, [viewChange(0), viewChange(1), viewChange(2)], T0 + 30);
    expect(h.r.view).toBe(1);
    expect(h.r.viewChanging).toBe(false);
    const again = (from: number, at: number) => {
      let n = 0;
      for (let i = 0; i < 20; i++)
        n += sent(h.msg(from, { kind: 'viewChange', vc: viewChange(from) }, at), 'newView').length;
      return n;
    };
    expect(again(2, T0 + 31)).toBe(1);
    expect(again(2, T0 + 90)).toBe(0);
    // Another peer that missed it is answered; the first again once the interval is over.
    expect(again(0, T0 + 90)).toBe(1);
    expect(again(2, T0 + 131)).toBe(1);
  });
});
