/**
 * Safety rules that a mutation-testing pass (2026-12-05) found no direct test for: a one-line bug in each of
 * these places left test/consensus and test/sim/{protocol-rules,byzantine,crash,restart} passing (the
 * checkpoint quorum excepted: that bug failed only liveness checks in the simulator). Each scenario is
 * driven by hand with properly signed messages.
 */
import { describe, expect, it } from 'vitest';
import { type Action, type PersistRecord, Replica, type ReplicaConfig } from '../../src/consensus/replica.ts';
import { deriveNewView } from '../../src/consensus/viewchange.ts';
import { LedgerState } from '../../src/ledger/state.ts';
import {
  type Batch,
  batchDigestOf,
  CheckpointBody,
  encode,
  hex,
  type NodeMessage,
  NULL_BATCH,
  requestIdOf,
  type SignedViewChange,
  signTagged,
  TAGS,
  ViewChangeBody,
} from '../../src/protocol/index.ts';
import {
  CHECKPOINT_PROOF,
  cls,
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
// COMMITs go out as soon as a node prepares (no prepared receipt signature stands in for them).
const QUIET: Partial<ReplicaConfig> = {
  retransmitMs: NEVER,
  viewChangeTimeoutMs: NEVER,
  receiptCommits: false,
};

function deliver(r: Replica, from: number, m: NodeMessage, at: number, ledger?: LedgerState): Action[] {
  return stepWithLedger(r, { type: 'message', from, msg: wire(m) }, at, ledger);
}

function checkpointMsg(from: number, seq: number, stateDigest: Uint8Array): NodeMessage {
  const body = encode(CheckpointBody, { from, seq, stateDigest });
  return {
    kind: 'checkpoint',
    from,
    seq,
    stateDigest,
    signature: signTagged(TAGS.checkpoint, GID, body, G.keys[from]),
  };
}

/** Node `from`'s VIEW-CHANGE to `newView` from the genesis checkpoint, with prepared certificates. */
function viewChange(
  from: number,
  newView: number,
  prepared: ViewChangeBody['prepared'] = [],
): SignedViewChange {
  const body = { from, newView, stableSeq: 0, stableDigest: ZERO, checkpointProof: [], prepared };
  return { body, signature: signTagged(TAGS.viewChange, GID, encode(ViewChangeBody, body), G.keys[from]) };
}

/** A prepared certificate of `view` for `batch` at `seq`: its primary's PRE-PREPARE, PREPAREs of `backups`. */
function certOf(seq: number, batch: Batch, backups: number[], view = 0): ViewChangeBody['prepared'][number] {
  const digest = batchDigestOf(batch);
  return {
    view,
    seq,
    digest,
    ppSignature: phaseSig(TAGS.prePrepare, view % 4, view, seq, digest),
    batch,
    prepares: backups.map((node) => ({ node, signature: phaseSig(TAGS.prepare, node, view, seq, digest) })),
  };
}

describe('safety rules a mutation left uncovered', () => {
  it('a VIEW-CHANGE carries, for each seq, the prepared certificate of the highest view it prepared in', () => {
    // Node 3 prepares batch A at seq 1 in view 0 (its own PREPARE and node 2's) but it never commits.
    const r = new Replica(G.genesis, 3, G.keys[3], QUIET);
    r.step({ type: 'tick' }, T0);
    const a: Batch = { timestamp: T0, entries: [], txs: [] };
    const ppA = makePP(1, a);
    deliver(r, 0, { kind: 'prePrepare', pp: ppA }, T0 + 1);
    const prepared0 = deliver(r, 2, phase('prepare', 2, 1, ppA.digest), T0 + 2);
    expect(prepared0.some((x) => x.type === 'broadcast' && x.msg.kind === 'commit')).toBe(true);

    // View 1: the NEW-VIEW is built from the VIEW-CHANGEs of nodes 0, 1 and 2 (none carries A); node 0's
    // certificate for seq 2 makes seq 1 a null batch.
    const c: Batch = { timestamp: T0 + 10, entries: [], txs: [] };
    const vcs = [viewChange(0, 1, [certOf(2, c, [1, 2])]), viewChange(1, 1), viewChange(2, 1)];
    const derived = deriveNewView(vcs);
    expect(derived.proposals.map((p) => hex(p.digest))).toEqual([
      hex(batchDigestOf(NULL_BATCH)),
      hex(batchDigestOf(c)),
    ]);
    const proposals = derived.proposals.map((p) => ({
      seq: p.seq,
      digest: p.digest,
      signature: phaseSig(TAGS.prePrepare, 1, 1, p.seq, p.digest),
    }));
    deliver(r, 1, { kind: 'newView', from: 1, newView: 1, viewChanges: vcs, proposals }, T0 + 20);
    expect(r.view).toBe(1);
    // In view 1 node 3 prepares the null batch at seq 1 (its PREPARE and node 2's).
    const nullDigest = batchDigestOf(NULL_BATCH);
    const prepared1 = deliver(r, 2, phase('prepare', 2, 1, nullDigest, 1), T0 + 21);
    expect(prepared1.some((x) => x.type === 'broadcast' && x.msg.kind === 'commit' && x.msg.seq === 1)).toBe(
      true,
    );

    // Its VIEW-CHANGE to view 2 must report the null batch of view 1 at seq 1, not A of view 0: the null
    // batch may have committed in view 1 at nodes whose VIEW-CHANGEs the next primary does not hear.
    r.startViewChange(2);
    const mine = (r as unknown as { myViewChange: SignedViewChange }).myViewChange;
    expect(mine.body.newView).toBe(2);
    const at1 = mine.body.prepared.find((pc) => pc.seq === 1);
    expect(at1 && { view: at1.view, digest: hex(at1.digest) }).toEqual({ view: 1, digest: hex(nullDigest) });
    // What goes wrong otherwise: with two VIEW-CHANGEs carrying nothing, view 2 re-proposes A at seq 1.
    const next = deriveNewView([mine, viewChange(0, 2), viewChange(1, 2)]);
    expect(hex(next.proposals[0].digest)).toBe(hex(nullDigest));
  });

  it('a checkpoint becomes stable at q matching CHECKPOINTs (its own included), not at q − 1', () => {
    const r = new Replica(G.genesis, 1, G.keys[1], { ...QUIET, checkpointInterval: 1 });
    const ledger = new LedgerState(G.genesis);
    r.step({ type: 'tick' }, T0);
    const pp = makePP(1, { timestamp: T0, entries: [], txs: [] });
    deliver(r, 0, { kind: 'prePrepare', pp }, T0 + 1, ledger);
    deliver(r, 2, phase('prepare', 2, 1, pp.digest), T0 + 2, ledger);
    deliver(r, 0, phase('commit', 0, 1, pp.digest), T0 + 3, ledger);
    const acts = deliver(r, 2, phase('commit', 2, 1, pp.digest), T0 + 4, ledger);
    expect(r.lastExecuted).toBe(1);
    const mine = acts.flatMap((a) => (a.type === 'broadcast' && a.msg.kind === 'checkpoint' ? [a.msg] : []));
    expect(mine).toHaveLength(1);
    const digest = mine[0].stateDigest;
    // Its own and node 2's: two of q = 3.
    deliver(r, 2, checkpointMsg(2, 1, digest), T0 + 5, ledger);
    expect(r.stable).toBe(0);
    // A third, for another state, does not count either.
    deliver(r, 3, checkpointMsg(3, 1, new Uint8Array(32).fill(0xee)), T0 + 6, ledger);
    expect(r.stable).toBe(0);
    deliver(r, 0, checkpointMsg(0, 1, digest), T0 + 7, ledger);
    expect(r.stable).toBe(1);
  });

  it('PREPAREs and COMMITs for another digest of the same (view, seq) count towards nothing', () => {
    // Node 1 accepts batch A at seq 1 from the primary; node 2 was sent batch B (an equivocating primary).
    const r = new Replica(G.genesis, 1, G.keys[1], QUIET);
    const ledger = new LedgerState(G.genesis);
    r.step({ type: 'tick' }, T0);
    const ppA = makePP(1, { timestamp: T0, entries: [], txs: [] });
    const ppB = makePP(1, { timestamp: T0 + 1, entries: [], txs: [] });
    const sends = (acts: Action[], kind: NodeMessage['kind']) =>
      acts.filter((a) => a.type === 'broadcast' && a.msg.kind === kind);
    deliver(r, 0, { kind: 'prePrepare', pp: ppA }, T0 + 1, ledger);
    // Node 2's PREPARE for B: with its own for A that would be 2f PREPAREs, but not for one digest.
    expect(sends(deliver(r, 2, phase('prepare', 2, 1, ppB.digest), T0 + 2, ledger), 'commit')).toEqual([]);
    // Node 3's for A prepares it.
    expect(sends(deliver(r, 3, phase('prepare', 3, 1, ppA.digest), T0 + 3, ledger), 'commit')).toHaveLength(
      1,
    );
    // COMMITs for B from nodes 0 and 2: with its own that would be q, but not for A.
    deliver(r, 0, phase('commit', 0, 1, ppB.digest), T0 + 4, ledger);
    const b = deliver(r, 2, phase('commit', 2, 1, ppB.digest), T0 + 5, ledger);
    expect(b.filter((a) => a.type === 'execute')).toEqual([]);
    expect(r.lastExecuted).toBe(0);
    // Node 3's COMMIT for A makes two for A (its own and node 3's): still short of q.
    const a = deliver(r, 3, phase('commit', 3, 1, ppA.digest), T0 + 6, ledger);
    expect(a.filter((x) => x.type === 'execute')).toEqual([]);
    expect(r.lastExecuted).toBe(0);
  });

  it('a restarted backup whose log holds its PREPARE for A never prepares another digest at that (view, seq)', () => {
    const ppA = makePP(1, { timestamp: T0, entries: [], txs: [] });
    const ppB = makePP(1, { timestamp: T0 + 1, entries: [], txs: [] });
    // It persisted its PREPARE for A and stopped before anything else (PROTOCOL.md: durability).
    const r = restoreNode(1, QUIET, [{ kind: 'prepare', view: 0, seq: 1, digest: ppA.digest }]);
    r.step({ type: 'tick' }, T0);
    // The primary now sends it B for the same (view, seq): signing a PREPARE for B would be equivocation.
    const acts = deliver(r, 0, { kind: 'prePrepare', pp: ppB }, T0 + 2);
    expect(acts.filter((a) => a.type === 'broadcast' && a.msg.kind === 'prepare')).toEqual([]);
    expect(acts.filter((a) => a.type === 'persist' && a.record.kind === 'prepare')).toEqual([]);
  });

  it('a NEW-VIEW carrying fewer than q VIEW-CHANGEs is refused', () => {
    const r = new Replica(G.genesis, 3, G.keys[3], QUIET);
    r.step({ type: 'tick' }, T0);
    const nv = (vcs: SignedViewChange[]): NodeMessage => ({
      kind: 'newView',
      from: 1,
      newView: 1,
      viewChanges: vcs,
      proposals: [],
    });
    // Two of q = 3: a faulty new primary with one accomplice could otherwise move the view alone.
    deliver(r, 1, nv([viewChange(1, 1), viewChange(2, 1)]), T0 + 1);
    expect(r.view).toBe(0);
    expect(r.misbehaviour.get(1)?.get('bad-new-view') ?? 0).toBeGreaterThan(0);
    deliver(r, 1, nv([viewChange(0, 1), viewChange(1, 1), viewChange(2, 1)]), T0 + 2);
    expect(r.view).toBe(1);
  });

  it('O re-proposes, for each seq, the batch of the prepared certificate of the highest view', () => {
    // A prepared at seq 1 in view 0 (and maybe committed nowhere); B prepared at seq 1 in view 1, so B may
    // have committed in view 1. Whatever the order of the VIEW-CHANGEs, view 2 must re-propose B.
    const a: Batch = { timestamp: T0, entries: [], txs: [] };
    const b: Batch = { timestamp: T0 + 1, entries: [], txs: [] };
    const low = viewChange(0, 2, [certOf(1, a, [2, 3], 0)]);
    const high = viewChange(3, 2, [certOf(1, b, [0, 2], 1)]);
    for (const vcs of [
      [low, high, viewChange(1, 2)],
      [high, low, viewChange(1, 2)],
    ]) {
      const o = deriveNewView(vcs);
      expect(o.proposals.map((p) => [p.seq, hex(p.digest)])).toEqual([[1, hex(batchDigestOf(b))]]);
    }
  });

  it('state transfer takes a batch on q valid COMMIT signatures of one view, not q − 1 nor a forged one', () => {
    const batch: Batch = { timestamp: T0, entries: [], txs: [] };
    const digest = batchDigestOf(batch);
    const receipt = {
      groupId: GID,
      seq: 1,
      batchDigest: digest,
      prevReceipt: GID,
      resultsRoot: ZERO,
      resultsCount: 0,
    };
    const respond = (signers: number[], forged = -1): NodeMessage => ({
      kind: 'stateResponse',
      from: 3,
      batches: [
        {
          seq: 1,
          view: 0,
          batch,
          requests: [],
          results: [],
          receipt,
          receiptSigs: [],
          commitSigs: signers.map((node) => ({
            node,
            signature: phaseSig(TAGS.commit, node === forged ? 0 : node, 0, 1, digest),
          })),
        },
      ],
      view: 0,
      newView: null,
      checkpoint: null,
    });
    const executes = (acts: Action[]) => acts.filter((a) => a.type === 'execute');
    // Two genuine COMMITs (nodes 0 and 3): a faulty node and one honest one that merely prepared it.
    let r = new Replica(G.genesis, 2, G.keys[2], QUIET);
    r.step({ type: 'tick' }, T0);
    expect(executes(deliver(r, 3, respond([0, 3]), T0 + 1))).toEqual([]);
    expect(r.misbehaviour.get(3)?.get('bad-state') ?? 0).toBe(1);
    // Three, one of them not node 1's (node 0's signature under node 1's name): not a quorum either.
    r = new Replica(G.genesis, 2, G.keys[2], QUIET);
    r.step({ type: 'tick' }, T0);
    expect(executes(deliver(r, 3, respond([0, 1, 3], 1), T0 + 1))).toEqual([]);
    expect(r.misbehaviour.get(3)?.get('bad-state') ?? 0).toBe(1);
    // Three genuine ones: committed, it executes.
    r = new Replica(G.genesis, 2, G.keys[2], QUIET);
    r.step({ type: 'tick' }, T0);
    expect(executes(deliver(r, 3, respond([0, 1, 3]), T0 + 1)).map((a) => a.seq)).toEqual([1]);
  });
});

/** The digests of the PREPAREs for `seq` among `acts` (broadcast and persisted). */
const prepares = (acts: Action[], seq: number) =>
  acts.flatMap((x) =>
    (x.type === 'broadcast' && x.msg.kind === 'prepare' && x.msg.seq === seq) ||
    (x.type === 'persist' && x.record.kind === 'prepare' && x.record.seq === seq)
      ? [hex(((x.type === 'broadcast' ? x.msg : x.record) as { digest: Uint8Array }).digest)]
      : [],
  );

describe('a NEW-VIEW survives a restart (persisted with its message)', () => {
  // View 1 re-proposes batch A at seq 1 and batch C at seq 2 (both prepared in view 0, by node 0's
  // VIEW-CHANGE). Backup 3 enters view 1, seq 1 executes and checkpoint 1 becomes stable in view 1, which
  // prunes the records of seq 1; node 3 never voted on seq 2 (say it lacked a request), then restarted.
  const a: Batch = { timestamp: T0, entries: [], txs: [] };
  const c: Batch = { timestamp: T0 + 10, entries: [], txs: [] };
  const d: Batch = { timestamp: T0 + 11, entries: [], txs: [] };
  const vcs = [
    viewChange(0, 1, [certOf(1, a, [1, 2]), certOf(2, c, [1, 2])]),
    viewChange(1, 1),
    viewChange(2, 1),
  ];
  const proposals = deriveNewView(vcs).proposals.map((p) => ({
    seq: p.seq,
    digest: p.digest,
    signature: phaseSig(TAGS.prePrepare, 1, 1, p.seq, p.digest),
  }));

  /** What node 3 persisted up to entering view 1, but its votes (none kept: see above). */
  function viewRecords(): PersistRecord[] {
    const r = new Replica(G.genesis, 3, G.keys[3], QUIET);
    r.step({ type: 'tick' }, T0);
    r.startViewChange(1);
    const acts = [
      ...r.step({ type: 'tick' }, T0 + 1),
      ...deliver(r, 1, { kind: 'newView', from: 1, newView: 1, viewChanges: vcs, proposals }, T0 + 2),
    ];
    expect(r.view).toBe(1);
    return acts.flatMap((x) =>
      x.type === 'persist' && (x.record.kind === 'viewChange' || x.record.kind === 'newView')
        ? [x.record]
        : [],
    );
  }

  function restored(log: PersistRecord[]): Replica {
    return restoreNode(
      3,
      QUIET,
      [...log, { kind: 'checkpoint', view: 1, seq: 1, digest: ZERO, body: CHECKPOINT_PROOF }],
      { lastExecuted: 1, lastTimestamp: T0 },
    );
  }

  it('the restored backup still prepares only the re-proposed batch at a re-proposed seq', () => {
    const log = viewRecords();
    const nv = log.find((x) => x.kind === 'newView');
    expect(nv?.body).toBeDefined();
    const r = restored(log);
    expect({ view: r.view, changing: r.viewChanging }).toEqual({ view: 1, changing: false });
    // Its first step after a restart takes the re-proposal as entering the view did: C is prepared.
    const first = r.step({ type: 'catchUp' }, T0 + 100);
    expect(prepares(first, 2)).toEqual([hex(batchDigestOf(c)), hex(batchDigestOf(c))]);
    // The faulty primary of view 1 sends D at seq 2: signing a PREPARE for it would let f faulty nodes and
    // f + 1 restarted honest ones prepare D where C may have committed in view 0.
    expect(prepares(deliver(r, 1, { kind: 'prePrepare', pp: makePP(2, d, 1) }, T0 + 101), 2)).toEqual([]);
    expect(r.misbehaviour.get(1)?.get('conflicting-proposal')).toBe(1);
  });

  it('without the message in the record (a log written before 2026-12-06) the pin is gone', () => {
    // What the fix is for: the same restore from a record without the NEW-VIEW prepares D.
    const log = viewRecords().map(
      (x): PersistRecord => (x.kind === 'newView' ? { kind: 'newView', view: x.view } : x),
    );
    const r = restored(log);
    r.step({ type: 'catchUp' }, T0 + 100);
    expect(prepares(deliver(r, 1, { kind: 'prePrepare', pp: makePP(2, d, 1) }, T0 + 101), 2)).toContain(
      hex(batchDigestOf(d)),
    );
  });

  it('restored in a higher view than its NEW-VIEW record, it pins nothing and prepares nothing at its first step', () => {
    // Votes of view 2 after the NEW-VIEW of view 1 (as a log from before the records carried the message).
    const r = restored([
      ...viewRecords(),
      { kind: 'viewChange', view: 2 },
      { kind: 'prepare', view: 2, seq: 3, digest: batchDigestOf(d) },
    ]);
    expect({ view: r.view, changing: r.viewChanging }).toEqual({ view: 2, changing: false });
    const slots = (r as unknown as { slots: Map<number, { pinned?: unknown }> }).slots;
    expect([...slots.values()].filter((s) => s.pinned)).toEqual([]);
    expect(prepares(r.step({ type: 'catchUp' }, T0 + 100), 2)).toEqual([]);
  });

  it('restored forgetful (a `forgotten` record), it signs nothing in that view at its first step', () => {
    const r = restored([...viewRecords(), { kind: 'forgotten' }]);
    expect({ view: r.view, changing: r.viewChanging }).toEqual({ view: 1, changing: false });
    expect(prepares(r.step({ type: 'catchUp' }, T0 + 100), 2)).toEqual([]);
    expect(prepares(deliver(r, 1, { kind: 'prePrepare', pp: makePP(2, c, 1) }, T0 + 101), 2)).toEqual([]);
  });
});

describe('a restored primary after its pinned re-proposals', () => {
  // View 1 (primary: node 1) re-proposes C at seq 1, prepared in view 0 with a timestamp (T0 + 900) ahead
  // of node 1's clock (up to maxClockSkewMs is allowed). Node 1 persists its NEW-VIEW and restarts before
  // C executes; its next batch must come after C's timestamp, or every backup holding C refuses it
  // ("batch timestamp not increasing") and blames an honest primary.
  const sr = mkReq(1, T0);
  const id = requestIdOf(sr);
  const res = [0, 1, 2, 3].map((node) => resultsOf(node, [id]));
  const early = mkReq(2, T0);
  const earlyRes = [0, 1, 2, 3].map((node) => resultsOf(node, [requestIdOf(early)]));
  const c: Batch = {
    timestamp: T0 + 900,
    entries: [{ requestId: requestIdOf(early), votes: [0, 1, 2].map((v) => voteOf(earlyRes[v], 0)) }],
    txs: [],
  };
  const CFG: Partial<ReplicaConfig> = { ...QUIET, voteWaitMs: 0, batchTimeoutMs: 1, idleBatchTimeoutMs: 1 };

  type NewViewMsg = Extract<NodeMessage, { kind: 'newView' }>;

  /** Node 1 enters view 1 as its primary; what it persisted, and the NEW-VIEW it sent. */
  function enterAsPrimary(): { log: PersistRecord[]; r: Replica; nv: NewViewMsg } {
    const r = new Replica(G.genesis, 1, G.keys[1], CFG);
    r.step({ type: 'tick' }, T0);
    r.startViewChange(1);
    const acts = [
      ...r.step({ type: 'tick' }, T0 + 1),
      ...deliver(r, 0, { kind: 'viewChange', vc: viewChange(0, 1, [certOf(1, c, [2, 3])]) }, T0 + 2),
      ...deliver(r, 2, { kind: 'viewChange', vc: viewChange(2, 1) }, T0 + 3),
    ];
    expect({ view: r.view, changing: r.viewChanging }).toEqual({ view: 1, changing: false });
    const nv = acts.flatMap((x) => (x.type === 'broadcast' && x.msg.kind === 'newView' ? [x.msg] : []))[0];
    return { log: acts.flatMap((x) => (x.type === 'persist' ? [x.record] : [])), r, nv };
  }

  /** Its proposal once the request has q votes (its own among them), at `at`. */
  function nextProposal(r: Replica, at: number) {
    const acts = [
      ...r.step({ type: 'request', request: sr, sentToAll: true }, at),
      ...r.step(
        {
          type: 'inferred',
          modelDigest: G.genesis.nodes[1].modelDigest,
          results: [{ requestId: id, result: cls(7) }],
        },
        at,
      ),
      ...deliver(r, 0, { kind: 'results', signed: res[0] }, at),
      ...deliver(r, 2, { kind: 'results', signed: res[2] }, at),
      ...r.step({ type: 'tick' }, at + 10),
    ];
    return acts.flatMap((x) => (x.type === 'broadcast' && x.msg.kind === 'prePrepare' ? [x.msg.pp] : []));
  }

  /** Backup 3 in view 1 by that NEW-VIEW, holding C at seq 1; whether it prepares `pp` (and blames node 1). */
  function backupTakes(nv: NewViewMsg, pp: ReturnType<typeof nextProposal>[number], at: number) {
    const b = new Replica(G.genesis, 3, G.keys[3], CFG);
    b.step({ type: 'tick' }, T0);
    b.step({ type: 'request', request: early, sentToAll: true }, T0);
    for (const v of [0, 1, 2]) deliver(b, v, { kind: 'results', signed: earlyRes[v] }, T0);
    b.startViewChange(1);
    b.step({ type: 'tick' }, T0 + 1);
    const entered = deliver(b, 1, nv, T0 + 4);
    expect(prepares(entered, 1)).toContain(hex(batchDigestOf(c)));
    b.step({ type: 'request', request: sr, sentToAll: true }, at);
    for (const v of [0, 1, 2]) deliver(b, v, { kind: 'results', signed: res[v] }, at);
    const acts = deliver(b, 1, { kind: 'prePrepare', pp }, at);
    return {
      prepared: prepares(acts, pp.seq).length > 0,
      blamed: b.misbehaviour.get(1)?.get('bad-proposal') ?? 0,
    };
  }

  it('without a restart, its next batch is timestamped after the re-proposal (enterView)', () => {
    const { r, nv } = enterAsPrimary();
    const [pp] = nextProposal(r, T0 + 100);
    expect(pp.seq).toBe(2);
    expect(pp.batch.timestamp).toBeGreaterThan(c.timestamp);
    expect(backupTakes(nv, pp, T0 + 111)).toEqual({ prepared: true, blamed: 0 });
  });

  it('restored from its log, its next batch is still timestamped after the pinned re-proposal', () => {
    const { log, nv } = enterAsPrimary();
    expect(log.find((x) => x.kind === 'newView')?.body).toBeDefined();
    const r = restoreNode(1, CFG, log);
    expect({ view: r.view, changing: r.viewChanging }).toEqual({ view: 1, changing: false });
    r.step({ type: 'catchUp' }, T0 + 100);
    const [pp] = nextProposal(r, T0 + 100);
    expect(pp.seq).toBe(2);
    // Before the fix: T0 + 110, which backups holding C refused ("batch timestamp not increasing").
    expect(pp.batch.timestamp).toBeGreaterThan(c.timestamp);
    expect(backupTakes(nv, pp, T0 + 111)).toEqual({ prepared: true, blamed: 0 });
  });
});
