/**
 * What the replica tests that drive one replica by hand share: a four-node group, properly signed client
 * requests and phase messages, the wire round trip, and filters over a step's actions.
 */
import {
  type Action,
  type Event,
  type PersistRecord,
  Replica,
  type ReplicaConfig,
} from '../../src/consensus/replica.ts';
import type { LedgerState } from '../../src/ledger/state.ts';
import {
  array,
  type Batch,
  batchDigestOf,
  decodeMessage,
  encode,
  encodeMessage,
  type Genesis,
  groupIdOf,
  type NodeMessage,
  NodeSignature,
  PhaseBody,
  type PrePrepare,
  type Result,
  resultsDigestOf,
  type SignedRequest,
  type SignedResults,
  sha256,
  signRequest,
  signResults,
  signTagged,
  TAGS,
  type Vote,
} from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';

export const G = makeGroup(4, 1, 7);
export const GID = groupIdOf(G.genesis);
export const T0 = 1_000_000;
export const NEVER = 1e9;

/** Small batches, short timeouts, and no retransmission or view change unless a test asks for them. */
export const SMALL_CFG: Partial<ReplicaConfig> = {
  batchSize: 8,
  batchTimeoutMs: 10,
  // With nothing in flight the timeout is idleBatchTimeoutMs; a test of both sets them apart.
  idleBatchTimeoutMs: 10,
  voteWaitMs: 4,
  window: 4,
  checkpointInterval: 100,
  forwardBatchSize: 8,
  forwardDelayMs: 1,
  retransmitMs: NEVER,
  viewChangeTimeoutMs: NEVER,
};

/** The client's request number `nonce`, signed alone, timestamped T0 and with a maxFee of 10^6 unless told. */
export function mkReq(nonce: number, timestamp = T0, maxFee = 1_000_000): SignedRequest {
  const input = new TextEncoder().encode(`input #${nonce}`);
  const request = {
    groupId: GID,
    client: G.client.publicKey,
    nonce,
    timestamp,
    inputDigest: sha256(input),
    policy: null,
    maxFee,
  };
  return signRequest(request, input, G.client);
}

/** A class result whose top-1 label is `label`. */
export const cls = (label: number, score = 900_000): Result => ({ kind: 'class', top: [{ label, score }] });

/** Node `node`'s signed RESULTS voting `label` for each of `ids`, with its genesis model. */
export function resultsOf(node: number, ids: Uint8Array[], label = 7): SignedResults {
  return signResults(
    GID,
    {
      node,
      modelDigest: G.genesis.nodes[node].modelDigest,
      entries: ids.map((requestId) => ({ requestId, result: cls(label) })),
    },
    G.keys[node],
  );
}

/** The vote for entry `index` of `r`. */
export const voteOf = (r: SignedResults, index: number): Vote => ({
  node: r.batch.node,
  results: resultsDigestOf(r),
  index,
});

/** Node `from`'s signature of a phase message (PRE-PREPARE, PREPARE, COMMIT) for (view, seq, digest). */
export function phaseSig(
  tag: Parameters<typeof signTagged>[0],
  from: number,
  view: number,
  seq: number,
  digest: Uint8Array,
): Uint8Array {
  return signTagged(tag, GID, encode(PhaseBody, { from, view, seq, digest }), G.keys[from]);
}

/** The PRE-PREPARE of `batch` at `seq` by the primary of `view`. */
export function makePP(seq: number, batch: Batch, view = 0): PrePrepare {
  const digest = batchDigestOf(batch);
  return { view, seq, digest, signature: phaseSig(TAGS.prePrepare, view % 4, view, seq, digest), batch };
}

/** Node `from`'s PREPARE or COMMIT for (view, seq, digest). */
export function phase(
  kind: 'prepare' | 'commit',
  from: number,
  seq: number,
  digest: Uint8Array,
  view = 0,
): NodeMessage {
  return { kind, from, view, seq, digest, signature: phaseSig(TAGS[kind], from, view, seq, digest) };
}

/** A message as a peer receives it: encoded and decoded again. */
export const wire = (m: NodeMessage): NodeMessage => decodeMessage(encodeMessage(m));

export type ActionOf<T extends Action['type']> = Extract<Action, { type: T }>;

/** The actions of one type. */
export const only = <T extends Action['type']>(as: Action[], type: T): ActionOf<T>[] =>
  as.filter((a): a is ActionOf<T> => a.type === type);

/** The messages of one kind among the broadcasts. */
export const broadcasts = <K extends NodeMessage['kind']>(
  as: Action[],
  kind: K,
): Extract<NodeMessage, { kind: K }>[] =>
  only(as, 'broadcast')
    .map((a) => a.msg)
    .filter((m): m is Extract<NodeMessage, { kind: K }> => m.kind === kind);

/** A stable checkpoint's proof as a `checkpoint` record stores it: three made-up signatures (restore does not check them). */
export const CHECKPOINT_PROOF = encode(
  array(NodeSignature, 256),
  [0, 1, 2].map((node) => ({ node, signature: new Uint8Array(64).fill(node + 1) })),
);

/**
 * The ledger counters Replica.restore takes (all required) as a ledger that applied nothing holds them: the
 * genesis's fees, every version, deposit and withdrawal 0.
 */
export function genesisCounters(genesis: Genesis = G.genesis) {
  return {
    modelVersions: genesis.nodes.map(() => 0),
    deposits: 0,
    fees: genesis.nodes.map((x) => x.fee),
    feeVersions: genesis.nodes.map(() => 0),
    withdrawals: genesis.nodes.map(() => 0),
    refunds: new Map<string, number>(),
  };
}

/**
 * Node `id` restarted from a disk holding `log` (and what `disk` overrides): by default nothing executed,
 * the genesis models and counters, no recent request ids.
 */
export function restoreNode(
  id: number,
  cfg: Partial<ReplicaConfig>,
  log: PersistRecord[],
  disk: Partial<Parameters<typeof Replica.restore>[4]> = {},
): Replica {
  return Replica.restore(G.genesis, id, G.keys[id], cfg, {
    lastExecuted: 0,
    lastReceiptHash: GID,
    lastTimestamp: 0,
    models: G.genesis.nodes.map((n) => n.modelDigest),
    ...genesisCounters(),
    recent: [],
    log,
    ...disk,
  });
}

/**
 * One step of `r`; with a ledger, its previews and executions are answered at once (and the replica's
 * answers to those with them), as the node layer does. `onActs`, where given, gets each step's own actions
 * after the steps that answer them.
 */
export function stepWithLedger(
  r: Replica,
  ev: Event,
  at: number,
  ledger?: LedgerState,
  onActs?: (acts: Action[]) => void,
): Action[] {
  const acts = r.step(ev, at);
  const all: Action[] = [];
  for (const a of acts) {
    all.push(a);
    if (!ledger) continue;
    if (a.type === 'preview') {
      const receipt = ledger.preview(a.seq, a.digest, a.batch, a.entries);
      all.push(...stepWithLedger(r, { type: 'previewed', seq: a.seq, receipt }, at, ledger, onActs));
    }
    if (a.type === 'execute') {
      const ex = ledger.execute(a.seq, a.digest, a.batch, a.entries);
      const done: Event = {
        type: 'executed',
        seq: a.seq,
        receipt: ex.receipt,
        requeued: ex.requeued,
        models: ex.models,
        stateDigest: a.checkpoint ? ledger.stateDigest() : undefined,
      };
      all.push(...stepWithLedger(r, done, at, ledger, onActs));
    }
  }
  onActs?.(acts);
  return all;
}
