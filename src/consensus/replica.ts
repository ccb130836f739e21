/**
 * A PBFT replica (Castro–Liskov normal case, PROTOCOL.md) as a pure, deterministic state machine.
 * Events go in through step(event, now, wall); actions come out. No sockets, clocks, randomness or disk:
 * the caller owns time (it passes `now` for timers and `wall` for timestamps), the network (it delivers messages and carries out send and
 * broadcast), storage (persist) and execution (execute, answered by an `executed` event).
 */

import { IdWindow } from '../protocol/idwindow.ts';
import {
  array,
  type Batch,
  type BatchEntry,
  batchDigestOf,
  CheckpointBody,
  type CommitProof,
  type CountedVote,
  clientSpendOf,
  commitQuorum,
  DropbearError,
  decode,
  type Evidence,
  encode,
  equalBytes,
  type Genesis,
  genesisProblem,
  groupIdOf,
  hex,
  type KeyPair,
  LIMITS,
  NewView,
  type NodeMessage,
  type NodeSignature,
  NodeSignature as NodeSignatureCodec,
  PhaseBody,
  type PrePrepare,
  type PreparedCert,
  PreparedCert as PreparedCertCodec,
  quorumSize,
  type Receipt,
  Receipt as ReceiptCodec,
  type ReceiptSignature,
  type Request,
  RequestAuthCache,
  Request as RequestCodec,
  type Result,
  type ResultBatch,
  ResultBatch as ResultBatchCodec,
  Result as ResultCodec,
  receiptHashOf,
  receiptQuorum,
  requestAuthProblem,
  requestIdOf,
  requestIdOfBody,
  resultsDigestOf,
  resultsDigestOfParts,
  type SignedRequest,
  type SignedResults,
  type SignedViewChange,
  type StateBatch,
  sha256,
  sha256Matches,
  signReceiptAs,
  signResults,
  signTagged,
  stateBatchReferences,
  TAGS,
  type Tx,
  txIdOf,
  txNodeOf,
  uint,
  ViewChangeBody,
  type Vote,
  verifyReceiptSig,
  verifyResults,
  verifyTagged,
  verifyTx,
} from '../protocol/index.ts';
import { validatePolicy } from '../protocol/policy.ts';
import { RateWindow } from './rate.ts';
import {
  deriveNewView,
  isSignatureProblem,
  pickViewChanges,
  viewChangeProblem,
  ZERO_DIGEST,
} from './viewchange.ts';

export interface ReplicaConfig {
  /** Most entries in one consensus batch. */
  batchSize: number;
  /**
   * While any of the primary's proposals is in flight (proposed, not yet executed), a non-empty batch is
   * cut this long after its oldest entry became ready, full or not: under load, requests gather while
   * the pipeline is busy.
   */
  batchTimeoutMs: number;
  /**
   * The same with nothing in flight and no other request in the pool still gathering its votes (0: cut
   * at once). Waiting then gathers little and delays every request of a lightly loaded group: at 100
   * requests/s (one per batch) the median went from ~20 ms with a 5 ms wait to ~11 without (BENCHMARKS.md,
   * protocol). With nothing in flight but other requests still gathering votes (inference under way,
   * votes in transit), a batch waits for them up to batchTimeoutMs, and is cut as soon as none is left
   * waiting: each batch costs every node signatures, messages and fsyncs whatever its size, and with four
   * real models sharing two cores at 4 images in flight, cutting at once made one batch per image
   * (2026-12-01, the e2e group at 4 in flight: 1.09 images per batch and 28.4 images/s; with this rule
   * 2.87 per batch and 36.0 images/s, the nodes' CPU per image 48.7 ms against 63; BENCHMARKS.md, e2e).
   */
  idleBatchTimeoutMs: number;
  /** After an entry has q votes, how long the primary waits for the remaining ones. */
  voteWaitMs: number;
  /** W: sequence numbers in flight above the last stable checkpoint. */
  window: number;
  /**
   * The primary proposes a new batch only while fewer than this many of its proposals are not yet
   * executed (at most `window`). Small values make batches fill under load instead of sending many
   * tiny ones (each batch costs signatures and fsyncs whatever its size).
   */
  maxInFlightBatches: number;
  /**
   * Caps the primary's batches so that the entries it has in flight take about this long to execute at
   * the rate the group executed requests over the last RATE_WINDOW_MS: a batch holds at most
   * rate × inFlightBudgetMs / maxInFlightBatches entries (never fewer than MIN_CAPPED_BATCH, never more
   * than batchSize); 0 turns the cap off. Under overload the pool is full and every batch went out at
   * batchSize: a ten-node group on two cores then had 2,051 entries in flight at ~900 executed per
   * second, the first of them executed only after 2.5 s, past the view-change timeout, and backups
   * changed view on a primary that was only slow (2026-12-02, BENCHMARKS.md protocol). Keep it well
   * under viewChangeTimeoutMs (half of it by default and in `group init`'s settings): all the batches in
   * flight may finish together, since they share the CPU.
   */
  inFlightBudgetMs: number;
  /** K: a checkpoint every K executed batches. */
  checkpointInterval: number;
  /** Client requests forwarded to peers per FORWARD message, and the longest a request waits for one. */
  forwardBatchSize: number;
  forwardDelayMs: number;
  /**
   * This node's RESULTS go out at most once per this many ms: inference answers that come back sooner after
   * the last RESULTS wait for the next one and share it (one signature here, n-1 checks at the peers and
   * one own-results write for all of them). 0: every `inferred` event signs its own. A host hands the
   * answers of one turn of its event loop over together already; this spaces them further when answers
   * trickle in one turn at a time (one client request per HTTP call, a stand-in model). Each answer waits
   * at most this long, and none does while RESULTS are rarer than that (a real model's inference batches).
   * `group init` leaves it at 0 (src/cli/group.ts, GROUP_REPLICA, says why).
   */
  resultsDelayMs: number;
  /**
   * A request whose client says it sent it to every node itself (Event `sentToAll`) is not forwarded once
   * this node has voted on it: its RESULTS names the request to every peer, and a peer that lacks the
   * request fetches it from a voter (votes for a request it never received, see `orphans`), so only a
   * node that lacks it pays for its bytes. If this node's own result is still not in this long after
   * arrival, or half the view-change timeout if that is longer (its inference is backlogged), the request
   * goes to the peers whose results for it have not arrived (a result proves its node holds the request).
   * A client that reached every node costs no forwarding, even under a backlog, and one that did not (a
   * node it could not reach) is not stranded.
   */
  lateForwardMs: number;
  /** How long before unacknowledged work (messages, fetches, own results) is sent again. */
  retransmitMs: number;
  /**
   * A request accepted but not executed within this long (counted from when it was accepted or the
   * current view began, whichever is later) makes a backup start a view change; doubled for every
   * consecutive view change without progress.
   */
  viewChangeTimeoutMs: number;
  /**
   * While batches keep executing, how many view-change timeouts the oldest waiting request may wait before
   * backups suspect the primary of censoring it (1: no allowance for a backlog). See viewTimerDeadline.
   */
  progressPatience: number;
  /**
   * Most waiting requests that expired unordered (see expiredPending) this node keeps until the sweep
   * forgets them; beyond it the oldest go at once. Only a faulty peer sends such requests in numbers (see
   * sweepExpired).
   */
  maxExpiredHeld: number;
  /**
   * Most votes of one peer this node holds for requests it has not received (orphans). An honest peer's
   * are bounded by the requests in flight; beyond it a peer's further ones are not stored, so that a
   * faulty peer's signed RESULTS naming made-up request ids cannot grow memory without bound. Orphan votes
   * are also dropped once the request they name must have expired (expiryMs plus expiryGuardMs after the
   * first of them came).
   */
  maxOrphanVotesPerNode: number;
  /**
   * Prepared receipts: a node that prepares batch s while every batch before it is executed here computes
   * s's receipt at once (the caller answers a `preview` action) and sends its receipt signature bound to
   * the view with its COMMIT, instead of signing the receipt after executing s. Nodes that all do so
   * certify s as it commits, one message round sooner and with one broadcast fewer per node and batch.
   * Safe because certificates count such signatures only with plain ones and those of the same view:
   * f+1 honest signers then executed s after it committed or prepared it in one view, which is PBFT's
   * committed predicate, and each computed the receipt over the same executed history (README,
   * "Prepared receipts"; docs/certificate.md §5).
   */
  preparedReceipts: boolean;
  /**
   * Receipt commits (with preparedReceipts): a prepared receipt signature says what a COMMIT says (its
   * sender prepared this batch in this view: the receipt names the seq and the batch digest, the
   * signature the view), so a node that sends one sends no COMMIT, and a peer counts it as its sender's
   * COMMIT once it matches the receipt the peer previewed itself. With every node previewing, a batch
   * costs one signature and one broadcast fewer per node. A node that cannot match it (it has not
   * previewed the batch, or computed another receipt) gets the COMMIT at the retransmission round, which
   * sends every stuck slot's COMMIT, or by FETCH.
   */
  receiptCommits: boolean;
  /**
   * Targeted re-sends: at the retransmission round a stuck slot's messages go again only to the peers not
   * known to have no need of them. A PRE-PREPARE skips the peers whose PREPARE, COMMIT or prepared receipt
   * signature for it came in (they hold the proposal), a PREPARE the peers known to have prepared (their
   * COMMIT or prepared receipt signature came in), a COMMIT the peers known to have executed the batch
   * (their receipt signatures). False: every re-send is broadcast, as before 2026-12-04. Under load a slot
   * waits longer than retransmitMs to execute although every peer has it: a ten-node primary re-sent 90
   * proposals for 35 batches it executed (BENCHMARKS.md, protocol).
   */
  targetedResends: boolean;
}

/** The execution rate the primary sizes its batches by (inFlightBudgetMs) is measured over this long. */
const RATE_WINDOW_MS = 2000;
/**
 * The smallest batch the in-flight budget cuts a batch to. The cap feeds back on itself (smaller batches
 * cost more per request, so the rate and then the cap fall): with 64 and a 500 ms budget a 10-node group
 * offered twice its capacity settled at ~67 entries per batch and half its closed-loop throughput.
 */
export const MIN_CAPPED_BATCH = 128;

/**
 * Most entries a primary puts in one batch when the group executes `ratePerSecond` requests per second:
 * batchSize, cut so that maxInFlightBatches full batches hold about inFlightBudgetMs of work (never below
 * MIN_CAPPED_BATCH, or batchSize if that is smaller).
 */
export function batchCap(
  ratePerSecond: number,
  cfg: Pick<ReplicaConfig, 'batchSize' | 'inFlightBudgetMs' | 'maxInFlightBatches'>,
): number {
  if (cfg.inFlightBudgetMs <= 0) return cfg.batchSize;
  const byRate = Math.floor((ratePerSecond * cfg.inFlightBudgetMs) / 1000 / cfg.maxInFlightBatches);
  return Math.min(cfg.batchSize, Math.max(MIN_CAPPED_BATCH, byRate));
}

/** The pool is swept for expired requests at most this often (sweepExpired). */
const EXPIRY_SWEEP_MS = 100;
/** At most this many answers to requests forgotten as expired are kept (Replica.expiredOwn). */
const MAX_EXPIRED_OWN = 65_536;
/**
 * Misbehaviour proofs kept (and stored, Action 'evidence') per node and kind. One convicts; more add nothing,
 * and a double-vote proof holds both whole RESULTS batches: without a cap, two batches over the same k
 * requests made k proofs of both (k up to 65,536, ~5 MiB each), all kept in memory and written to the
 * ledger. Every offence is still counted (misbehaviour).
 */
export const EVIDENCE_PER_NODE_KIND = 4;
/**
 * Transactions held (waiting or proposed) per sequence: per node for model updates, and for the treasury's
 * deposits (checkTx, TX_TOO_MANY).
 */
export const MAX_TXS_PER_NODE = 16;
/** Matches no batch digest (a stand-in where none is known). */
const EMPTY_DIGEST = new Uint8Array(0);

export const DEFAULT_REPLICA_CONFIG: ReplicaConfig = {
  batchSize: 1024,
  batchTimeoutMs: 2,
  idleBatchTimeoutMs: 0,
  voteWaitMs: 2,
  window: 64,
  maxInFlightBatches: 64,
  inFlightBudgetMs: 500,
  checkpointInterval: 32,
  forwardBatchSize: 256,
  forwardDelayMs: 1,
  resultsDelayMs: 0,
  lateForwardMs: 250,
  retransmitMs: 100,
  viewChangeTimeoutMs: 1000,
  progressPatience: 4,
  maxExpiredHeld: 1024,
  maxOrphanVotesPerNode: 65_536,
  preparedReceipts: true,
  receiptCommits: true,
  targetedResends: true,
};

export type Event =
  /** A client request; `sentToAll`: the client says it sent it to every node (see lateForwardMs). */
  | { type: 'request'; request: SignedRequest; sentToAll?: boolean }
  /**
   * A signed transaction (a model update) from its owner. Accepted when signed by the genesis key of the
   * node it names and its version is above that node's current one; then spread to every node and
   * ordered by the primary with its next batch. Answered by a txAccepted or txRejected action.
   */
  | { type: 'submitTx'; tx: Tx }
  | { type: 'message'; from: number; msg: NodeMessage }
  | { type: 'tick' }
  /** After a restart (or whenever the caller suspects it is behind): fetch state from peers. */
  | { type: 'catchUp' }
  | { type: 'inferred'; modelDigest: Uint8Array; results: { requestId: Uint8Array; result: Result }[] }
  /**
   * The caller dropped these inputs without running the model, because `wantsOwnVote` said no (the
   * request was in a batch already, or executed). Should such a request be put back (a view change), it
   * is inferred again.
   */
  | { type: 'inferSkipped'; requestIds: Uint8Array[] }
  | {
      type: 'executed';
      seq: number;
      receipt: Receipt;
      requeued: Uint8Array[];
      models: Uint8Array[];
      /** Each node's model version after the batch; derived from the batch's transactions when absent. */
      modelVersions?: number[];
      /** The treasury's deposits applied after the batch (its last serial); derived like modelVersions. */
      deposits?: number;
      /** Each node's fee and fee version after the batch; derived like modelVersions when absent. */
      fees?: number[];
      feeVersions?: number[];
      /** Each node's withdrawals applied after the batch (the last serial); derived like modelVersions. */
      withdrawals?: number[];
      /**
       * The refund serials the batch's refunds used (client hex key → serial); derived like modelVersions
       * when absent.
       */
      refunds?: ReadonlyMap<string, number>;
      /** Required when the execute action asked for a checkpoint. */
      stateDigest?: Uint8Array;
    }
  /** The answer to a `preview` action: the receipt that executing the batch would give, nothing changed. */
  | { type: 'previewed'; seq: number; receipt: Receipt };

export interface ResolvedEntryOut {
  requestId: Uint8Array;
  request: Request;
  votes: CountedVote[];
}

/** The log record of a NEW-VIEW the node sent or accepted: its view, and the message in full. */
function newViewRecord(m: Extract<NodeMessage, { kind: 'newView' }>): PersistRecord {
  const { kind: _, ...body } = m;
  return { kind: 'newView', view: m.newView, body: encode(NewView, body) };
}

export type PersistRecord =
  | { kind: 'prePrepare' | 'prepare'; view: number; seq: number; digest: Uint8Array }
  /** Written before COMMIT is signed; `body` is the canonical prepared certificate (kept for VIEW-CHANGE). */
  | { kind: 'commit'; view: number; seq: number; digest: Uint8Array; body?: Uint8Array }
  | { kind: 'viewChange'; view: number }
  /**
   * The node entered `view` by a NEW-VIEW (its own as primary, or one it accepted), written before it signs
   * anything in that view; `body` is the NEW-VIEW (`NewView` codec; absent in records before 2026-12-06,
   * and then only primaries wrote one). The ledger keeps the body of the latest only.
   */
  | { kind: 'newView'; view: number; body?: Uint8Array }
  /**
   * A checkpoint became stable; `body` is its proof (q CHECKPOINT signatures), `view` the view the replica
   * was in then (absent while it was changing view, and in records before 2026-12-06). The ledger drops
   * the records of seqs up to it.
   */
  | { kind: 'checkpoint'; view?: number; seq: number; digest: Uint8Array; body?: Uint8Array }
  /**
   * Written by the ledger (durably) when a restart may have lost the last signed records: until a later
   * `signFloor`, the restored replica signs in no view (`forgetful`). `body`: a wall-clock time (a `uint`,
   * ms) by which the session that may have lost them had ended (the start of the current boot, or the
   * restart; absent in records written before 2026-12-05): the node's own RESULTS may have been lost with
   * them, so it signs none for a request with a timestamp up to that time plus twice the clock skew bound,
   * whatever later records say (see `resultsFloor`).
   */
  | { kind: 'forgotten'; body?: Uint8Array }
  /** A forgetful replica learned the group's view: it signs in no view below `view` (`signFloorView`). */
  | { kind: 'signFloor'; view: number };

const CheckpointProof = array(NodeSignatureCodec, 256);

/** The time a `forgotten` record carries (ms), or NaN where it carries none that decodes. */
function timeOf(body: Uint8Array | undefined): number {
  if (!body) return Number.NaN;
  try {
    return decode(uint, body);
  } catch {
    return Number.NaN;
  }
}

export type Action =
  | { type: 'send'; to: number; msg: NodeMessage }
  | { type: 'broadcast'; msg: NodeMessage }
  | { type: 'persist'; record: PersistRecord }
  /**
   * Store one of this node's own signed RESULTS (`digest` is its RESULTS digest; `newest`, the newest
   * timestamp among its requests, or the clock when none is held) before the broadcast of it that follows
   * leaves, as durably as the ledger's durability asks (docs/ledger.md, "Own results"). A restarted node
   * reads them back (Replica.restore, `ownResults`): it re-sends them and never signs another result for a
   * request it voted on with the same model (PROTOCOL.md, "Durability and restarts").
   */
  | { type: 'saveResults'; digest: Uint8Array; signed: SignedResults; newest: number }
  /** Own RESULTS stored by `saveResults` that no vote holds any more (executed, expired or replaced): forget them. */
  | { type: 'dropResults'; digests: Uint8Array[] }
  | { type: 'infer'; requests: { requestId: Uint8Array; request: SignedRequest }[] }
  | {
      type: 'execute';
      seq: number;
      view: number;
      digest: Uint8Array;
      batch: Batch;
      entries: ResolvedEntryOut[];
      /** A checkpoint follows this batch: answer with the state digest. */
      checkpoint: boolean;
      /** The signed requests and RESULTS the batch references: keep them to serve state transfer. */
      requests: SignedRequest[];
      results: SignedResults[];
      /**
       * What committed it: COMMITs and the prepared receipt signatures that stood for COMMITs, q nodes in all
       * (commitQuorum); null for a batch received by state transfer with a receipt quorum.
       */
      commitProof: CommitProof | null;
    }
  | {
      /**
       * Compute the receipt of this batch as `execute` would, changing nothing (ReplicaConfig.preparedReceipts):
       * it is the next batch to execute. Answer with a `previewed` event before anything else.
       */
      type: 'preview';
      seq: number;
      digest: Uint8Array;
      batch: Batch;
      entries: ResolvedEntryOut[];
    }
  | {
      /** A peer asked for executed batches from `fromSeq` on: answer with a stateResponse message. */
      type: 'serveState';
      to: number;
      fromSeq: number;
      view: number;
      newView: Extract<NodeMessage, { kind: 'newView' }> | null;
      /** This node's stable checkpoint and its proof, for the peer's window. */
      checkpoint: { seq: number; stateDigest: Uint8Array; proof: NodeSignature[] } | null;
    }
  | {
      /**
       * A peer asked for the requests and RESULTS of executed batch `seq` from positions `requests` and
       * `results` of its references on (stateBatchReferences): answer with a statePart message, if this
       * node's batch `seq` has digest `digest`.
       */
      type: 'serveStatePart';
      to: number;
      seq: number;
      digest: Uint8Array;
      requests: number;
      results: number;
    }
  | {
      type: 'certified';
      seq: number;
      receiptHash: Uint8Array;
      /** q signatures forming a quorum (receiptQuorum): `view` null plain, else prepared in that view. */
      signatures: { node: number; signature: Uint8Array; view: number | null }[];
    }
  | { type: 'accepted'; requestId: Uint8Array }
  | { type: 'rejected'; requestId: Uint8Array | null; code: RejectCode; message: string }
  /** A submitted transaction was taken (it is spread to every node and waits to be ordered). */
  | { type: 'txAccepted'; txId: Uint8Array }
  | { type: 'txRejected'; txId: Uint8Array; code: TxRejectCode; message: string }
  | { type: 'timer'; at: number }
  /** Proof that a node misbehaved: store it (the ledger's evidence table) and count it against the node. */
  | { type: 'evidence'; node: number; proof: Evidence }
  /**
   * `peer` sent a signature that does not verify: one made in its own name (a PREPARE, a RESULTS batch...),
   * or one it relayed where a node relays only what it checked or made (another node's RESULTS, a client
   * request, a checkpoint proof, the VIEW-CHANGEs of a NEW-VIEW it sent: see punish's callers). No honest
   * node does that, and each such message costs a signature check. The node layer drops that peer's
   * connection and keeps it out for a while (transport.ts, quarantine). At most once per peer per step.
   */
  | { type: 'peerMisbehaved'; peer: number; reason: string };

export type RejectCode =
  | 'REQUEST_WRONG_GROUP'
  | 'REQUEST_BAD_SIGNATURE'
  | 'REQUEST_INPUT_MISMATCH'
  | 'REQUEST_INPUT_TOO_LARGE'
  | 'REQUEST_BAD_POLICY'
  | 'REQUEST_EXPIRED'
  | 'REQUEST_FROM_FUTURE'
  | 'REQUEST_DUPLICATE'
  | 'REQUEST_ALREADY_EXECUTED'
  /** The client's balance, less the maxFee its requests waiting here hold, is below the request's maxFee. */
  | 'INSUFFICIENT_FUNDS';

export type TxRejectCode =
  /** The update names a node that is not in the genesis. */
  | 'TX_UNKNOWN_NODE'
  /** Not signed by the genesis key of the node it names. */
  | 'TX_BAD_SIGNATURE'
  /**
   * Its version is not above the node's current model version, or its serial not above the treasury's
   * last applied deposit (a replay, or superseded).
   */
  | 'TX_STALE_VERSION'
  /** A deposit of 0. */
  | 'TX_BAD_AMOUNT'
  | 'TX_VERSION_GAP'
  /** The same transaction is already waiting to be ordered. */
  | 'TX_DUPLICATE'
  /**
   * The same transaction was already ordered and executed (as far as this node remembers: its last 1024,
   * since it started; an older replay is TX_STALE_VERSION).
   */
  | 'TX_ALREADY_EXECUTED'
  /**
   * An update of the node it was submitted to, for a model that node has not loaded (the node host checks
   * this; the replica cannot know what is loaded).
   */
  | 'TX_MODEL_NOT_LOADED'
  /**
   * An update of the node it was submitted to, for a loaded model with another label set or input than
   * its current one (the node host checks this: inference/spec.ts, modelUpdateProblem).
   */
  | 'TX_MODEL_INCOMPATIBLE'
  /** MAX_TXS_PER_NODE updates of the node it names, or deposits, are held (waiting or proposed) already. */
  | 'TX_TOO_MANY'
  /** A deposit that would take the genesis money plus every deposit applied past 2^53 − 1 (the node host checks this). */
  | 'TX_DEPOSIT_TOO_LARGE'
  /** A withdrawal of more than its node may withdraw, less its withdrawals waiting (the node host checks this). */
  | 'TX_WITHDRAWAL_TOO_LARGE'
  /**
   * A refund of more than the client's balance less what its requests waiting here may be charged and its
   * refunds waiting (checked where the balance is known: fundsOf; one a peer spread, against the balance
   * alone).
   */
  | 'TX_REFUND_TOO_LARGE'
  /** A transfer of more than the client's balance, on the same terms as TX_REFUND_TOO_LARGE. */
  | 'TX_TRANSFER_TOO_LARGE'
  /** A transfer to the paying client's own account (it would move nothing). */
  | 'TX_TRANSFER_TO_SELF';

/** Why a peer's message was dropped; counted per peer (the node layer exports the counts). */
export type Misbehaviour =
  | 'bad-signature'
  | 'bad-sender'
  | 'bad-request'
  | 'bad-results'
  /** A transaction (spread, or in a proposal) not signed by the node it names. */
  | 'bad-tx'
  | 'bad-proposal'
  | 'conflicting-proposal'
  | 'double-vote'
  | 'bad-view-change'
  | 'bad-new-view'
  | 'bad-state';

interface PoolEntry {
  sr: SignedRequest;
  id: Uint8Array;
  /** pending: waiting for votes or a proposal; proposed: in an accepted batch not yet executed. */
  state: 'pending' | 'proposed';
  acceptedAt: number;
  /** This node dropped its inference of the request while it was proposed (inferSkipped). */
  ownSkipped?: boolean;
  /**
   * Its request timer fired while it held fewer than q current votes (no primary could propose it): the
   * timer leaves it alone until then (onViewTimer).
   */
  unblamedUntil?: number;
}

/**
 * Ids each due at a time, pushed in order of their due times (an entry pushed out of order is only
 * returned once those before it are due). An array with a moving head: O(1) per entry.
 */
class DueQueue {
  private q: { id: string; at: number }[] = [];
  private head = 0;

  push(id: string, at: number): void {
    this.q.push({ id, at });
  }

  get nextAt(): number {
    return this.q[this.head]?.at ?? Number.POSITIVE_INFINITY;
  }

  /** Removes and returns the ids due at `now`. */
  due(now: number): string[] {
    const out: string[] = [];
    const q = this.q;
    let i = this.head;
    for (; i < q.length && q[i].at <= now; i++) out.push(q[i].id);
    this.advance(i);
    return out;
  }

  /**
   * Removes the ids at the front that `moot` says need nothing any more, so that `nextAt` does not wake
   * the caller for them (only the front: the rest wait until they get there).
   */
  dropWhile(moot: (id: string) => boolean): void {
    const q = this.q;
    let i = this.head;
    while (i < q.length && moot(q[i].id)) i++;
    if (i !== this.head) this.advance(i);
  }

  private advance(i: number): void {
    const q = this.q;
    if (i >= q.length) {
      this.q = [];
      this.head = 0;
    } else if (i > 1024 && i * 2 > q.length) {
      this.q = q.slice(i);
      this.head = 0;
    } else this.head = i;
  }
}

/** A transaction waiting to be ordered (not persisted: after a crash the owner submits it again). */
/** Where each sequence of transactions stands (txPlace): the replica's own, or copies. */
interface TxCounters {
  modelVersions: readonly number[];
  feeVersions: readonly number[];
  withdrawals: readonly number[];
  deposits: number;
  /**
   * Clients' refunds applied (hex key → the last serial) that differ from this replica's own: only the
   * changes (a copy of every client's would cost a batch as many entries as clients that ever refunded).
   */
  refunds: ReadonlyMap<string, number>;
}

interface PendingTx {
  tx: Tx;
  id: Uint8Array;
  /** pending: waiting for a proposal; proposed: in an accepted batch not yet executed. */
  state: 'pending' | 'proposed';
  /** When it was taken; a batch carrying it is cut batchTimeoutMs later at the latest. */
  since: number;
  /** Submitted here by its owner: this node spreads it again until it is ordered. */
  origin: boolean;
  sentAt: number;
  backoff: number;
}

interface VoteRef {
  node: number;
  results: Uint8Array;
  index: number;
  digestHex: string;
}

interface StoredResults {
  signed: SignedResults;
  digest: Uint8Array;
  /** Entries not yet executed; the batch is dropped once they are and a checkpoint covers them. */
  open: number;
  /** Own results only: when last (re)sent. */
  sentAt: number;
  /** Own results only: the wait before the next resend; doubles each time (retransmission backoff). */
  backoff: number;
  /**
   * Own results read back at a restart only: the newest timestamp among their requests. Their votes for
   * requests that never reach this node again are dropped once those expire (sweepExpired).
   */
  newest?: number;
}

/**
 * The most one FETCHED answer holds, estimated from its parts' sizes (requests by their input): at least
 * one item, however large (a frame holds the largest input the genesis allows).
 */
const FETCH_ANSWER_BYTES = 8 << 20;
/**
 * FETCH answers (FETCHED, and the own messages resent for `seqs`) a peer gets from this node, in estimated
 * bytes per second, after a burst of FETCH_SERVE_BURST_BYTES: a FETCH of ~50 bytes may ask for a
 * FETCH_ANSWER_BYTES answer, read, encoded and sent each time. A FETCH over the budget is not answered; an
 * honest peer asks again at its next retransmission. The pace of state serving (host.ts,
 * STATE_SERVE_BYTES_PER_SEC).
 */
export const FETCH_SERVE_BYTES_PER_SEC = 16 << 20;
export const FETCH_SERVE_BURST_BYTES = 2 * FETCH_ANSWER_BYTES;

interface Slot {
  seq: number;
  view: number;
  digest: Uint8Array | null;
  batch: Batch | null;
  pp: PrePrepare | null;
  prepares: Map<number, string>; // node -> digest hex
  prepareSigs: Map<number, Uint8Array>;
  commitSigs: Map<number, Uint8Array>;
  commits: Map<number, string>;
  prepared: boolean;
  committed: boolean;
  myPrepare: NodeMessage | null;
  myCommit: NodeMessage | null;
  /** myCommit not sent: this node's prepared receipt signature stands for it (receiptCommits). */
  commitHeld?: boolean;
  lastSent: number;
  /** Gap before this slot's messages are re-sent again (doubles per re-send, up to 8 × retransmitMs). */
  resendGap?: number;
  /**
   * The NEW-VIEW's re-proposal at this seq, in the view it entered (enterView): in that view this seq takes
   * no other digest, whether or not the re-proposal could be accepted yet (PROTOCOL.md: the new view
   * prepares O). A parked or refused re-proposal leaves `pp` empty, and a fresh PRE-PREPARE of the new
   * primary must not fill it.
   */
  pinned?: PrePrepare;
  /** A proposal waiting for requests or results it fetched. */
  parked: PrePrepare | null;
  parkedFromNewView: boolean;
  /** What the parked proposal still lacks (keys of `parkedOn`); retried when the last one arrives. */
  waitingFor: Set<string> | null;
  /** RESULTS batches this accepted proposal references: kept until it executes. */
  refs: string[];
  fetchedAt: number;
}

/**
 * A batch's map keys: `ids[i]` is hex(entries[i].requestId), `votes[i][j]` hex(entries[i].votes[j].results).
 * A proposal's entries reference few RESULTS batches (usually one or two per node), so most vote keys are
 * one string shared by many entries: its hash is computed once, and the hex once per batch instead of at
 * every pass over the batch (acceptance, holding, execution).
 */
interface BatchKeys {
  ids: string[];
  votes: string[][];
}

interface ReceiptSig {
  signature: Uint8Array;
  /** null: plain (signed after executing); v: prepared in view v (ReceiptSignature). */
  view: number | null;
}

interface ReceiptSlot {
  receipt: Receipt | null;
  /** The receipt's canonical bytes (what plain signatures cover) and its hash. */
  bytes: Uint8Array | null;
  hash: Uint8Array | null;
  sigs: Map<number, ReceiptSig>;
  pending: { from: number; receiptHash: Uint8Array; signature: Uint8Array; view: number | null }[];
  mine: Extract<NodeMessage, { kind: 'receiptSig' }> | null;
  /**
   * Prepared receipt signatures counted as their senders' COMMITs (receiptCommits) before the batch
   * executed here: checked already, they join `sigs` at execution if the receipt executed is theirs.
   */
  early: Map<number, { hash: Uint8Array; signature: Uint8Array; view: number }>;
  /** This node's prepared receipt signature, sent with (or for) its COMMIT before the batch executed here. */
  prepared: {
    hash: Uint8Array;
    batchDigest: Uint8Array;
    msg: Extract<NodeMessage, { kind: 'receiptSig' }>;
  } | null;
  certified: boolean;
  lastSent: number;
}

/** A transferred batch's requests by id and RESULTS by digest (hex): each hashed once per batch. */
interface StateItems {
  requests: Map<string, SignedRequest>;
  results: Map<string, SignedResults>;
}

function stateItemsOf(sb: StateBatch): StateItems {
  return {
    requests: new Map(sb.requests.map((sr) => [hex(requestIdOf(sr)), sr])),
    results: new Map(sb.results.map((x) => [hex(resultsDigestOf(x)), x])),
  };
}

export class Replica {
  readonly id: number;
  readonly n: number;
  readonly f: number;
  readonly q: number;
  readonly groupId: Uint8Array;
  readonly cfg: ReplicaConfig;
  view = 0;
  /** h: last stable checkpoint. */
  stable = 0;
  lastExecuted = 0;
  /** Highest sequence number this node has proposed (primary) or accepted. */
  lastProposed = 0;
  lastBatchTimestamp = 0;
  /**
   * The highest timestamp of a batch this node took from elsewhere (executed, restored, accepted from
   * another primary or carried by a NEW-VIEW): lastBatchTimestamp without this node's own proposals.
   * A new view starts its lastBatchTimestamp from here (enterView): an own proposal that no NEW-VIEW
   * carries was never executed, and one stamped by a clock stepped ahead and then corrected would
   * otherwise hold every later batch of this primary ahead of its peers' clocks, refused, for as long as
   * the step.
   */
  private takenBatchTimestamp = 0;
  /** Highest timestamp among executed batches: every new proposal must be later. */
  lastExecutedTimestamp = 0;
  /**
   * Requests this node accepted that expired before they were ordered and were then forgotten (see
   * sweepExpired): a request seen by too few nodes before its timestamp expired can never gather q votes.
   */
  forgottenExpired = 0;
  readonly misbehaviour = new Map<number, Map<Misbehaviour, number>>();
  /** Verifiable proofs of misbehaviour, one per offence (also emitted as 'evidence' actions). */
  readonly evidence: { node: number; kind: Misbehaviour; detail: string; proof: Evidence }[] = [];
  private readonly evidenceKeys = new Set<string>();
  /** Proofs kept per `${node}:${kind}` (at most EVIDENCE_PER_NODE_KIND). */
  private readonly evidenceCounts = new Map<string, number>();

  /**
   * Client batch signatures already checked: the requests of one client batch cost one signature check
   * at this node, whichever way they arrive (from the client or forwarded by peers).
   */
  readonly authCache = new RequestAuthCache();

  private readonly genesis: Genesis;
  private readonly key: KeyPair;
  /** The timer clock (ms): never goes back; every timeout, retransmission and rate runs on it. */
  private now = 0;
  /**
   * The wall clock (ms) of the last step: what timestamps are judged by (request expiry and skew, batch
   * timestamps, stale proposals). Unlike `now` it may go back: after a wrong step of the system clock is
   * corrected, the node's timestamps follow the correction at once (see `step`).
   */
  private wall = 0;
  private out: Action[] = [];
  private readonly pool = new Map<string, PoolEntry>();
  /**
   * Executed (or finally skipped) request ids and their timestamps, kept for the expiry window (typed
   * arrays rather than a Map of hex strings: see protocol/idwindow.ts).
   */
  private readonly done = new IdWindow();
  private readonly votes = new Map<string, Map<number, VoteRef>>();
  /** Requests of executed batches above the stable checkpoint: peers may still fetch them. */
  private readonly archive = new Map<string, { sr: SignedRequest; seq: number }>();
  /** Requests we hold votes for but not the request itself, and when we last asked a voter for it. */
  private readonly orphans = new Map<string, number>();
  /** When the first vote for each orphan came (orphan votes go once the request must have expired). */
  private readonly orphanSince = new Map<string, number>();
  /** Per peer, the orphans it holds a vote for here (maxOrphanVotesPerNode). */
  private readonly orphanVotes = new Map<number, Set<string>>();
  /** This node's receipt signature per executed batch, with the receipt's bytes (resendOwn signs them). */
  private readonly myReceiptSigs = new Map<
    number,
    { msg: Extract<NodeMessage, { kind: 'receiptSig' }>; bytes: Uint8Array }
  >();
  private readonly results = new Map<string, StoredResults>();
  /** Hex keys of a batch's request ids and vote references, computed once per batch (see keysOf). */
  private readonly batchKeys = new WeakMap<Batch, BatchKeys>();
  private readonly ownResults: string[] = [];
  /** Own results read back at a restart (Replica.restore) whose votes may name requests not held here. */
  private restoredOwn: string[] = [];
  /**
   * This node signs no result for a request whose timestamp is at or below this (ms): it restarted after
   * losing writes (a `forgotten` record, or its disk), so its own RESULTS of before may be gone. A request
   * it voted on then had a timestamp at most the skew bound ahead of the clock of the honest node that
   * first took it (nodes refuse requests further ahead, and take one that a proposal names only once q
   * nodes voted on it), a clock within the skew bound of this node's: so at most twice the bound past the
   * end of the lost session. 0: none. NaN: set at the next step, from its clock (forgetful).
   */
  resultsFloor = 0;
  /** Primary: requests with ≥ q votes, and when they got there. */
  private readonly quorum = new Map<string, number>();
  /** Primary: requests ready to propose, and since when. */
  private readonly ready = new Map<string, number>();
  private readonly slots = new Map<number, Slot>();
  private readonly receipts = new Map<number, ReceiptSlot>();
  private readonly checkpoints = new Map<
    number,
    { mine: Uint8Array | null; votes: Map<number, string>; sigs: Map<number, Uint8Array> }
  >();
  /** The proof of the last stable checkpoint: q CHECKPOINT signatures over its state digest. */
  private stableProof: { seq: number; digest: Uint8Array; sigs: NodeSignature[] } = {
    seq: 0,
    digest: ZERO_DIGEST,
    sigs: [],
  };
  /** View change state: `view` is the target view while `viewChanging`. */
  viewChanging = false;
  viewChanges = 0;
  private vcAttempts = 0;
  private vcDeadline = Number.POSITIVE_INFINITY;
  private viewEnteredAt = 0;
  /** When this node last started a view change (−∞: never). */
  lastViewChangeAt = Number.NEGATIVE_INFINITY;
  /** When this node last executed a batch (see viewTimerDeadline). */
  private lastProgressAt = Number.NEGATIVE_INFINITY;
  private readonly vcMessages = new Map<number, Map<number, SignedViewChange>>();
  /** The view of each sender's VIEW-CHANGE in vcMessages (one per sender: storeViewChange). */
  private readonly vcLatest = new Map<number, number>();
  private readonly newViewSent = new Set<number>();
  private readonly executedDigests = new Map<number, Uint8Array>();
  /** The highest-view prepared certificate per seq above the stable checkpoint (goes into VIEW-CHANGE). */
  private readonly preparedCerts = new Map<number, PreparedCert>();
  private myViewChange: SignedViewChange | null = null;
  private lastNewView: Extract<NodeMessage, { kind: 'newView' }> | null = null;
  /** Hash of the last executed receipt (the chain head), starting at the group id. */
  lastReceiptHash: Uint8Array;
  /** State transfer in progress: batches checked and waiting to be executed in order. */
  catchingUp = false;
  private catchUpAt = Number.NEGATIVE_INFINITY;
  private readonly transferQueue: { sb: StateBatch; digest: Uint8Array; entries: ResolvedEntryOut[] }[] = [];
  /**
   * The next batch to transfer, shipped in parts because it fits in no frame: its batch and proof (checked),
   * the requests and RESULTS it references gathered so far (only those), and the peer that last sent some.
   */
  private assembly: {
    sb: StateBatch;
    digest: Uint8Array;
    /** Positions in stateBatchReferences, by request id and by RESULTS digest (hex). */
    requestAt: Map<string, number>;
    resultAt: Map<string, number>;
    requests: (SignedRequest | undefined)[];
    results: (SignedResults | undefined)[];
    from: number;
  } | null = null;
  /** What this node has signed per (kind, view, seq): it never signs another digest for the same slot. */
  private readonly signed = new Map<string, string>();
  private readonly inferQueue: { requestId: Uint8Array; request: SignedRequest }[] = [];
  private forwardQueue: SignedRequest[] = [];
  /**
   * Requests whose clients sent them to every node: forwarded when due only if still pending without this
   * node's own vote (lateForwardMs).
   */
  private readonly lateForward = new DueQueue();
  private forwardDeadline = Number.POSITIVE_INFINITY;
  /** Inference answers waiting for this node's next RESULTS (resultsDelayMs), by model digest (hex). */
  private pendingInferred = new Map<
    string,
    { modelDigest: Uint8Array; results: { requestId: Uint8Array; result: Result }[] }
  >();
  /** When the waiting answers go out (resultsDelayMs), and when this node last signed RESULTS. */
  private resultsDeadline = Number.POSITIVE_INFINITY;
  private lastResultsAt = Number.NEGATIVE_INFINITY;
  private lastRetransmit = 0;
  /** When our VIEW-CHANGE goes out again, and the current gap between copies. */
  private vcResendAt = 0;
  private vcBackoff = 0;
  private wakeAt = Number.POSITIVE_INFINITY;
  /** Current model digest per node, as of the last executed batch. */
  private models: Uint8Array[];
  /** Current model version per node (0: the genesis model), as of the last executed batch. */
  private modelVersions: number[];
  /** The treasury's deposits applied (its last serial), as of the last executed batch. */
  private deposits = 0;
  /** Each node's per-request fee and fee version (0: the genesis fee), as of the last executed batch. */
  private fees: number[];
  private feeVersions: number[];
  /** Each node's withdrawals applied (the last serial; 0: none), as of the last executed batch. */
  private withdrawals: number[];
  /** Each client's refunds applied (hex key → the last serial; absent: none), as of the last executed batch. */
  private readonly refunds = new Map<string, number>();
  /** This node's own earlier model digests: results they produce after the switch are dropped. */
  private readonly retiredModels = new Set<string>();
  /** Transactions waiting to be ordered, by id (hex), oldest first. */
  private readonly txs = new Map<string, PendingTx>();
  /** Ids of transactions already executed (bounded): a late copy is not taken again (checkTx: TX_ALREADY_EXECUTED). */
  private readonly doneTxs = new Set<string>();

  constructor(genesis: Genesis, id: number, key: KeyPair, cfg: Partial<ReplicaConfig> = {}) {
    this.genesis = genesis;
    this.id = id;
    this.key = key;
    this.n = genesis.nodes.length;
    this.f = genesis.f;
    this.q = quorumSize(this.n, this.f);
    const problem = genesisProblem(genesis);
    if (problem) throw new DropbearError('GENESIS_INVALID', problem);
    if (!equalBytes(genesis.nodes[id]?.publicKey ?? new Uint8Array(), key.publicKey))
      throw new DropbearError('KEY_MISMATCH', `key does not match node ${id} of the genesis`);
    this.groupId = groupIdOf(genesis);
    this.cfg = { ...DEFAULT_REPLICA_CONFIG, ...cfg };
    this.models = genesis.nodes.map((x) => x.modelDigest);
    this.modelVersions = genesis.nodes.map(() => 0);
    this.fees = genesis.nodes.map((x) => x.fee);
    this.feeVersions = genesis.nodes.map(() => 0);
    this.withdrawals = genesis.nodes.map(() => 0);
    this.lastReceiptHash = this.groupId;
  }

  /**
   * A replica restarted from its disk: the executed state (from the ledger) and what it had signed
   * (from its persisted log). It catches up by state transfer before it proposes anything new.
   */
  static restore(
    genesis: Genesis,
    id: number,
    key: KeyPair,
    cfg: Partial<ReplicaConfig>,
    disk: {
      lastExecuted: number;
      lastReceiptHash: Uint8Array;
      lastTimestamp: number;
      models: Uint8Array[];
      /**
       * The ledger's counters (LedgerState.replicaState gives them all): each node's model version, the
       * treasury's deposits applied, each node's fee and fee version, each node's withdrawals applied, each client's refund serial (hex key). They
       * were optional, a missing one the genesis's value: the simulator's restart once left the withdrawals
       * out. Each list has one entry per node (checked, with `models`).
       */
      modelVersions: number[];
      deposits: number;
      fees: number[];
      feeVersions: number[];
      withdrawals: number[];
      refunds: ReadonlyMap<string, number>;
      recent: Iterable<[Uint8Array, number]>;
      log: PersistRecord[];
      /** Executed batches whose receipt had not gathered q signatures yet. */
      uncertified?: Receipt[];
      /**
       * This node's own signed RESULTS that votes may still need (the `saveResults` actions not yet followed
       * by `dropResults`), oldest first, each with the `newest` it was saved with.
       */
      ownResults?: { signed: SignedResults; newest: number }[];
    },
  ): Replica {
    const n = genesis.nodes.length;
    for (const field of ['models', 'modelVersions', 'fees', 'feeVersions', 'withdrawals'] as const) {
      const list: unknown = disk[field];
      if (!Array.isArray(list))
        throw new Error(`Replica.restore: disk.${field} is missing (one entry per node: ${n})`);
      if (list.length !== n)
        throw new Error(
          `Replica.restore: disk.${field} has ${list.length} entries, the group ${n} nodes (one entry per node)`,
        );
    }
    if (!Number.isSafeInteger(disk.deposits))
      throw new Error(
        `Replica.restore: disk.deposits is ${String(disk.deposits)}, not a count of deposits applied`,
      );
    const r = new Replica(genesis, id, key, cfg);
    r.lastExecuted = disk.lastExecuted;
    r.lastProposed = disk.lastExecuted;
    r.lastReceiptHash = disk.lastReceiptHash;
    r.lastExecutedTimestamp = disk.lastTimestamp;
    r.lastBatchTimestamp = disk.lastTimestamp;
    r.takenBatchTimestamp = disk.lastTimestamp;
    r.models = [...disk.models];
    r.modelVersions = [...disk.modelVersions];
    r.deposits = disk.deposits;
    r.fees = [...disk.fees];
    r.feeVersions = [...disk.feeVersions];
    r.withdrawals = [...disk.withdrawals];
    for (const [k, v] of disk.refunds) r.refunds.set(k, v);
    for (const [id, ts] of disk.recent) r.done.add(id, ts);
    let lastViewRecord: PersistRecord | null = null;
    // The latest NEW-VIEW kept in full: its re-proposals pin their seqs if the node is still in its view.
    let lastNewView: Extract<PersistRecord, { kind: 'newView' }> | null = null;
    // The sign floor: a `forgotten` record makes it unknown until a later `signFloor` record.
    let forgot = false;
    let floor = 0;
    // The latest restart that may have lost writes (0: none; NaN: one whose time the record lacks).
    let lostAt = 0;
    for (const rec of disk.log) {
      if (rec.kind === 'forgotten') {
        forgot = true;
        lostAt = Math.max(lostAt, timeOf(rec.body));
        continue;
      }
      if (rec.kind === 'signFloor') {
        forgot = false;
        floor = Math.max(floor, rec.view);
        continue;
      }
      if (rec.kind === 'prePrepare' || rec.kind === 'prepare' || rec.kind === 'commit') {
        r.signed.set(`${rec.kind}:${rec.view}:${rec.seq}`, hex(rec.digest));
        if (rec.view >= r.view) lastViewRecord = rec;
        r.view = Math.max(r.view, rec.view);
        if (rec.kind === 'commit' && rec.body) {
          // What it prepared goes into its next VIEW-CHANGE, exactly as before the restart.
          const cert = decode(PreparedCertCodec, rec.body);
          const prev = r.preparedCerts.get(cert.seq);
          if (!prev || prev.view < cert.view) r.preparedCerts.set(cert.seq, cert);
        }
      } else if (rec.kind === 'viewChange' || rec.kind === 'newView') {
        if (rec.kind === 'newView' && rec.body && rec.view >= (lastNewView?.view ?? 0)) lastNewView = rec;
        if (rec.view >= r.view) lastViewRecord = rec;
        r.view = Math.max(r.view, rec.view);
      } else if (rec.kind === 'checkpoint') {
        // The view it was in (not changing view) when this became stable (none before 2026-12-06, or while
        // changing view): at least that of every record of the batches up to it, which the ledger no
        // longer keeps, and like a vote of that view it says the node had entered it.
        if (rec.view !== undefined) {
          if (rec.view >= r.view) lastViewRecord = rec;
          r.view = Math.max(r.view, rec.view);
        }
        if (rec.body && rec.seq > r.stableProof.seq)
          r.stableProof = { seq: rec.seq, digest: rec.digest, sigs: decode(CheckpointProof, rec.body) };
      }
    }
    for (const rec of disk.log)
      if (rec.kind === 'prePrepare' && rec.view === r.view)
        r.lastProposed = Math.max(r.lastProposed, rec.seq);
    // Stopped in the middle of a view change: still changing view (it re-sends its VIEW-CHANGE).
    if (lastViewRecord?.kind === 'viewChange') {
      r.viewChanging = true;
      r.vcDeadline = 0;
    }
    r.stable = r.stableProof.seq;
    for (const s of r.preparedCerts.keys()) if (s <= r.stable) r.preparedCerts.delete(s);
    if (lastNewView?.body && lastNewView.view === r.view && !r.viewChanging) r.restorePins(lastNewView.body);
    if (forgot) r.forgetful();
    else r.signFloorView = floor;
    // Unlike the sign floor, no later record lifts this one: what was lost stays unknown (NaN: from the
    // first step's clock, later than that restart, so on the safe side).
    r.resultsFloor = lostAt === 0 ? 0 : lostAt + 2 * genesis.params.maxClockSkewMs;
    r.resumeReceipts = disk.uncertified ?? [];
    // Its own votes of before the restart, as they were: a request that reaches it again is not inferred
    // again (admit), and the RESULTS are re-sent as its retransmission round sends any of its own.
    for (const o of disk.ownResults ?? []) {
      if (o.signed.batch.node !== id) continue;
      const d = r.storeResults(o.signed);
      if (d === null) continue;
      r.results.get(d)!.newest = o.newest;
      r.ownResults.push(d);
      r.restoredOwn.push(d);
    }
    return r;
  }

  /**
   * Back in the view a persisted NEW-VIEW started (restore): its re-proposals pin their seqs again, as
   * enterView did, so that a faulty primary cannot get another batch prepared there by this node once it
   * has restarted (before 2026-12-06 the pins were lost with the process: README, "Closed gap"); and the
   * NEW-VIEW is again what the node sends a peer in a state response. Nothing is signed here: the first
   * `catchUp` step accepts the pinned re-proposals (a PRE-PREPARE sent again for a pinned seq is not taken
   * on its own, see onPrePrepare).
   */
  private restorePins(body: Uint8Array): void {
    const nv = decode(NewView, body);
    const derived = deriveNewView(nv.viewChanges);
    derived.proposals.forEach((d, i) => {
      if (d.seq <= this.lastExecuted) return;
      const slot = this.slot(d.seq);
      slot.view = nv.newView;
      this.restoredPins.push(d.seq);
      slot.pinned = {
        view: nv.newView,
        seq: d.seq,
        digest: d.digest,
        signature: nv.proposals[i].signature,
        batch: d.batch,
      };
      // Its batch clock after them, as enterView set it: a primary's next batch (restored at the timestamp
      // of the last executed one) must come after every re-proposal, or backups holding them refuse it.
      this.lastBatchTimestamp = Math.max(this.lastBatchTimestamp, d.batch.timestamp);
      this.takenBatchTimestamp = Math.max(this.takenBatchTimestamp, d.batch.timestamp);
    });
    this.lastNewView = { kind: 'newView', ...nv };
    this.lastProposed = Math.max(this.lastProposed, derived.minSeq + derived.proposals.length);
  }

  primaryOf(view: number): number {
    return view % this.n;
  }
  get isPrimary(): boolean {
    return this.primaryOf(this.view) === this.id;
  }
  /** When the caller should next deliver a tick (Infinity: nothing is waiting on time). */
  get nextWake(): number {
    return this.wakeAt;
  }
  /**
   * Requests held that can still execute: waiting or in a batch not yet executed. Those that expired
   * unordered (see expiredPending; counted at the last sweep, at most EXPIRY_SWEEP_MS ago) are not among
   * them: they only wait to be forgotten, and the admission limits (src/node/api.ts) count this figure.
   */
  get pendingRequests(): number {
    return Math.max(0, this.pool.size - this.expiredHeld);
  }
  /** Waiting requests that expired unordered, held until forgotten (as of the last sweep). */
  get expiredHeldRequests(): number {
    return this.expiredHeld;
  }
  /**
   * Whether the request is held and not yet executed (waiting or in a batch not yet executed). Executed or
   * unknown: false.
   */
  awaitsExecution(idHex: string): boolean {
    return this.pool.has(idHex);
  }
  /**
   * Whether this node's vote on the request can still count: the request waits for a proposal. Once a
   * batch carries it (proposed by this primary, or accepted from it) its votes are fixed, and a vote
   * this node has not yet produced is not among them; executed or unknown requests take no votes. The
   * caller may then drop the input unrun and say so (the `inferSkipped` event): a view change that puts
   * the request back, without its batch, has it inferred again.
   */
  wantsOwnVote(idHex: string): boolean {
    return this.pool.get(idHex)?.state === 'pending';
  }
  /** Whether this replica holds the request (waiting or in a batch) or has executed it. */
  holdsRequest(idHex: string): boolean {
    return this.pool.has(idHex) || this.doneHex(idHex);
  }
  /**
   * A request still waiting (no batch carries it) whose timestamp has expired, by this node's clock or by
   * the executed batches (the rule checkRequest applies): no batch can execute it any more (a later batch
   * skips it, PROTOCOL.md rule 5). It no longer runs the request timer and is not proposed, and it is
   * forgotten later (sweepExpired). Such a request is one that too few nodes accepted in time: sent to a
   * single node just before its timestamp expires, it is accepted there and forwarded to peers that
   * already find it expired (a client can no longer do this, see onClientRequest; a faulty peer can). It
   * used to stay in that node's pool for good, its timer making the node change view alone again and again
   * (f + 1 such nodes took the whole group with them), and the peers holding its votes fetched it from
   * that node every retransmission round.
   */
  private expiredPending(p: PoolEntry): boolean {
    return p.state === 'pending' && this.expired(p.sr.request.timestamp);
  }

  /**
   * The expiry rule: a request with this timestamp expired, by this node's clock or by the executed batches,
   * at least `agoMs` ago.
   */
  private expired(timestamp: number, agoMs = 0): boolean {
    return timestamp + this.genesis.params.expiryMs + agoMs < Math.max(this.wall, this.lastExecutedTimestamp);
  }

  /**
   * Twice the clock skew bound plus a view-change timeout: how long after this node's clock reads a
   * request's expiry a proposal naming it may still arrive (see sweepExpired), and how long before it a
   * client's request must still have (see onClientRequest).
   */
  private expiryGuardMs(): number {
    return 2 * this.genesis.params.maxClockSkewMs + this.cfg.viewChangeTimeoutMs;
  }

  /**
   * Forgets the waiting requests that expired at least twice the clock skew bound plus a view-change
   * timeout ago, and counts those that expired more recently (expiredHeld; pendingRequests leaves them
   * out). The wait is for proposals already under way: an honest primary proposes no expired request (its
   * clock is within the skew bound of ours), so a proposal that names one was sent before our clock read
   * its expiry plus the bound, and has arrived, or been fetched, by then.
   *
   * Honest clients' requests seldom get here (a node takes a client's only with the guard left, see
   * onClientRequest), but a faulty peer can forward any number of a colluding client's requests that
   * expire a moment later, to nodes whose clocks still take them and whose peers' do not: never ordered,
   * never charged. Counted as pending, 256 of them (the admission floor, minPending) made a node refuse
   * every client as OVERLOADED until this sweep forgot them, ~62 s later with group init's genesis, for
   * free. So they are not counted, and beyond `maxExpiredHeld` the oldest are forgotten at once: a
   * proposal that names one after all fetches it again from its primary (onPeerRequest).
   *
   * The whole pool is looked at (a forwarded request may sit anywhere in it), at most every
   * EXPIRY_SWEEP_MS: 8,192 entries, the node's limit, take ~0.1 ms.
   */
  private sweepExpired(): void {
    if (this.now < this.lastExpirySweep + EXPIRY_SWEEP_MS) return;
    this.lastExpirySweep = this.now;
    const wait = this.expiryGuardMs();
    const held: string[] = [];
    for (const [idHex, p] of this.pool) {
      if (p.state !== 'pending' || !this.expired(p.sr.request.timestamp)) continue;
      if (this.expired(p.sr.request.timestamp, wait)) this.forgetExpired(idHex);
      else held.push(idHex);
    }
    const over = Math.max(0, held.length - this.cfg.maxExpiredHeld);
    for (let i = 0; i < over; i++) this.forgetExpired(held[i]);
    this.expiredHeld = held.length - over;
    if (this.spentBy !== null) this.sweepUnfunded();
    if (this.restoredOwn.length > 0) this.settleRestoredOwn(wait);
    if (this.expiredOwn.size > 0) this.pruneExpiredOwn();
  }

  /**
   * Own results read back at a restart: their votes for requests that never came back here (executed
   * while this node was down, or never ordered) are dropped once the newest of them expired as long ago
   * as a waiting request is kept (see sweepExpired), and results that hold no vote are forgotten at once
   * (dropResults) rather than at the next stable checkpoint.
   */
  private settleRestoredOwn(wait: number): void {
    const spent: Uint8Array[] = [];
    this.restoredOwn = this.restoredOwn.filter((d) => {
      const r = this.results.get(d);
      if (!r) return false;
      if (r.open > 0 && r.newest !== undefined && this.expired(r.newest, wait))
        for (const e of r.signed.batch.entries) {
          const idHex = hex(e.requestId);
          if (this.pool.has(idHex)) continue;
          const m = this.votes.get(idHex);
          if (m?.get(this.id)?.digestHex !== d) continue;
          // (The request's own timestamp is not held here: `newest` is at least it.)
          this.keepExpiredOwn(idHex, r.newest);
          this.dropVote(m, this.id);
          if (m.size === 0) this.votes.delete(idHex);
        }
      if (r.open > 0) return true;
      this.results.delete(d);
      spent.push(r.digest);
      return false;
    });
    if (spent.length > 0) this.out.push({ type: 'dropResults', digests: spent });
  }
  private lastExpirySweep = Number.NEGATIVE_INFINITY;
  private expiredHeld = 0;
  /** The clients (hex key → key) whose refunds or transfers executed batches carried since sweepUnfunded looked. */
  private spentBy: Map<string, Uint8Array> | null = null;

  /**
   * Forgets the waiting requests whose maxFee the client's balance alone no longer covers (a refund or
   * transfer of the client executed after they were taken). A primary takes such a request from no peer
   * (fundsShortBy), and one that held the spend when the request's forwards came refused them already: the
   * request, taken by the f + 1 nodes its client sent it to and by no other, could never gather the votes
   * to be proposed, and held there its timer made them change view against every primary (a client could
   * do it at will: a request to f + 1 backups and, at the same moment, a transfer of its whole balance
   * through the primary). Ordered, it would mostly be skipped uncharged (the balance is under its maxFee).
   * Looked for only among the clients whose refunds or transfers batches carried since the last look
   * (spentBy), and whose requests held here hold more than the balance: their own charges never cause that
   * (a request is taken only under the balance less what is held, and its charge takes at most the maxFee
   * it releases). What this node answered for one is kept as for an expired one (expiredOwn).
   */
  private sweepUnfunded(): void {
    const spentBy = this.spentBy;
    this.spentBy = null;
    if (spentBy === null || this.fundsOf === null) return;
    let short: Map<string, number> | null = null;
    for (const [k, client] of spentBy) {
      const held = this.heldFees.get(k);
      const balance = this.fundsOf(client);
      if (held !== undefined && held > balance) (short ??= new Map()).set(k, balance);
    }
    if (short === null) return;
    for (const [idHex, p] of this.pool) {
      if (p.state !== 'pending' || this.parkedOn.has(`r${idHex}`)) continue;
      const balance = short.get(hex(p.sr.request.client));
      if (balance !== undefined && p.sr.request.maxFee > balance) this.forgetWaiting(idHex);
    }
  }

  private forgetExpired(idHex: string): void {
    this.forgetWaiting(idHex);
    this.forgottenExpired++;
  }

  /** Forgets a waiting request (no batch carries it), keeping what this node answered for it (expiredOwn). */
  private forgetWaiting(idHex: string): void {
    const p = this.pool.get(idHex);
    if (p) {
      this.keepExpiredOwn(idHex, p.sr.request.timestamp);
      this.holdFee(p.sr, -1);
    }
    this.pool.delete(idHex);
    this.ready.delete(idHex);
    this.quorum.delete(idHex);
    this.forgetVotes(idHex);
  }

  /** Drops every vote held for a request that will not execute here, and stops asking for it. */
  private forgetVotes(idHex: string): void {
    this.ownPast.delete(idHex);
    const m = this.votes.get(idHex);
    if (m) {
      for (const v of m.values()) {
        const r = this.results.get(v.digestHex);
        if (!r) continue;
        r.open--;
        // A peer's RESULTS left holding nothing goes now, not at the next stable checkpoint (storeResults).
        if (r.open <= 0 && r.signed.batch.node !== this.id && !this.parkedOn.has(`v${v.digestHex}`))
          this.results.delete(v.digestHex);
      }
      this.votes.delete(idHex);
    }
    this.settleOrphan(idHex);
  }

  /** `idHex` is no orphan any more (it arrived, or its votes went): its voters' orphan counts drop. */
  private settleOrphan(idHex: string): void {
    if (!this.orphans.delete(idHex)) return;
    this.orphanSince.delete(idHex);
    for (const set of this.orphanVotes.values()) set.delete(idHex);
  }

  /** Whether `done` holds the id written as lowercase hex (false for anything else). */
  private doneHex(idHex: string): boolean {
    return /^[0-9a-f]{64}$/.test(idHex) && this.done.has(Buffer.from(idHex, 'hex'));
  }
  /** Transactions waiting to be ordered (spread to this node or submitted here, not yet executed). */
  get pendingTxs(): Tx[] {
    return [...this.txs.values()].map((t) => t.tx);
  }
  /** A transaction waiting to be ordered here, by id (lowercase hex), else null: a lookup, no hashing. */
  pendingTx(idHex: string): Tx | null {
    return this.txs.get(idHex)?.tx ?? null;
  }
  /** Each node's model digest as of the last executed batch. */
  get currentModels(): readonly Uint8Array[] {
    return this.models;
  }
  /** The treasury's deposits applied (its last serial) as of the last executed batch. */
  get currentDeposits(): number {
    return this.deposits;
  }
  /** Each node's per-request fee as of the last executed batch. */
  get currentFees(): readonly number[] {
    return this.fees;
  }
  /** Each node's fee version (0: the genesis fee) as of the last executed batch. */
  get currentFeeVersions(): readonly number[] {
    return this.feeVersions;
  }
  /** Each node's withdrawals applied (the last serial; 0: none) as of the last executed batch. */
  get currentWithdrawals(): readonly number[] {
    return this.withdrawals;
  }
  /** The client's refunds applied (the last serial; 0: none) as of the last executed batch. */
  currentRefundSerial(client: Uint8Array): number {
    return this.refunds.get(hex(client)) ?? 0;
  }
  /** Each node's model version as of the last executed batch. */
  get currentModelVersions(): readonly number[] {
    return this.modelVersions;
  }

  /**
   * One event. `now`: the timer clock, which must not go back (a value below an earlier one counts as that
   * one). `wall`: the wall clock, for timestamps; it may go back (the same as `now` unless told, as in the
   * simulator). A node passes a monotonic clock and the system clock: before 2026-12-06 one clock did
   * both and never went back, so a node whose system clock was stepped forward and then corrected kept
   * the wrong time until restarted (clients' requests looked expired there, and as primary its batch
   * timestamps were refused as ahead of every peer's clock); and a clock that followed the wall clock's
   * forward steps fired every timer due in the step at once.
   */
  step(event: Event, now: number, wall = now): Action[] {
    this.now = Math.max(this.now, now);
    this.wall = wall;
    // The floor is a timestamp, and on the safe side the higher it is: the later of the two clocks.
    if (Number.isNaN(this.resultsFloor))
      this.resultsFloor = Math.max(this.now, this.wall) + 2 * this.genesis.params.maxClockSkewMs;
    this.out = [];
    this.punished.clear();
    switch (event.type) {
      case 'request':
        this.onClientRequest(event.request, event.sentToAll === true);
        break;
      case 'submitTx':
        this.onSubmitTx(event.tx);
        break;
      case 'message':
        this.onMessage(event.from, event.msg);
        break;
      case 'tick':
        this.onTick();
        break;
      case 'catchUp':
        for (const receipt of this.resumeReceipts.splice(0)) this.signReceipt(receipt);
        // Re-proposals pinned by the persisted NEW-VIEW (restorePins) are taken as enterView took them.
        for (const seq of this.restoredPins.splice(0)) {
          const slot = this.slots.get(seq);
          const pin = slot?.pinned;
          if (
            slot &&
            pin &&
            !slot.pp &&
            pin.view === this.view &&
            !this.viewChanging &&
            seq > this.lastExecuted
          )
            this.tryAccept(slot, pin, true);
        }
        if (this.viewChanging && !this.myViewChange) {
          // Restarted in the middle of a view change: say so again (same view, same prepared set).
          this.vcDeadline = this.now + this.currentTimeout();
          this.sendViewChange();
        }
        this.startCatchUp();
        break;
      case 'inferred':
        this.onInferred(event.modelDigest, event.results);
        break;
      case 'inferSkipped':
        this.onInferSkipped(event.requestIds);
        break;
      case 'executed':
        this.onExecuted(event);
        break;
      case 'previewed':
        this.onPreviewed(event);
        break;
    }
    this.flush();
    return this.out;
  }

  // ---------------------------------------------------------------- requests

  /**
   * Validates a request without changing state: the same checks a node's API applies before accepting.
   * `anyTime`: without the rules on its timestamp (for a request a proposal names, see onPeerRequest).
   */
  checkRequest(
    sr: SignedRequest,
    anyTime = false,
  ): { ok: true; id: Uint8Array } | { ok: false; code: RejectCode; message: string; id: Uint8Array | null } {
    const r = sr.request;
    const params = this.genesis.params;
    if (!equalBytes(r.groupId, this.groupId))
      return { ok: false, code: 'REQUEST_WRONG_GROUP', message: 'request is for another group', id: null };
    const body = encode(RequestCodec, r);
    const id = requestIdOfBody(body);
    const idHex = hex(id);
    // The pool (requests in flight) is small; `done` holds every id of the expiry window, where a miss
    // costs cache misses (~0.03–0.2 µs as an IdWindow, ~0.4–0.9 µs as the Map it was: `npm run bench:ids`).
    // The two never share an id, so the pool goes first.
    if (this.pool.has(idHex))
      return { ok: false, code: 'REQUEST_DUPLICATE', message: 'request already accepted', id };
    if (this.done.has(id))
      return { ok: false, code: 'REQUEST_ALREADY_EXECUTED', message: 'request already executed', id };
    if (sr.input.length > params.maxInputBytes)
      return {
        ok: false,
        code: 'REQUEST_INPUT_TOO_LARGE',
        message: `input over ${params.maxInputBytes} bytes`,
        id,
      };
    // Expired by this node's clock, or by the group's: `done` forgets an id once an executed batch's
    // timestamp expires it, and this node's clock may lag that batch by up to the clock skew. A request
    // the executed batches have expired can never execute again (the ledger skips it), so it is refused.
    if (!anyTime && this.expired(r.timestamp))
      return { ok: false, code: 'REQUEST_EXPIRED', message: 'request timestamp expired', id };
    if (!anyTime && r.timestamp > this.wall + params.maxClockSkewMs)
      return { ok: false, code: 'REQUEST_FROM_FUTURE', message: 'request timestamp is in the future', id };
    if (r.policy) {
      try {
        validatePolicy(r.policy, this.n, this.f);
      } catch (e) {
        return { ok: false, code: 'REQUEST_BAD_POLICY', message: (e as Error).message, id };
      }
    }
    if (!sha256Matches(sr.input, r.inputDigest))
      return { ok: false, code: 'REQUEST_INPUT_MISMATCH', message: 'input does not match inputDigest', id };
    // A bad batch member (forged path, index or size, or a batch signature by another key) takes the same
    // path as a bad single signature: rejected here, and blamed on the peer that forwarded it.
    const problem = requestAuthProblem(sr, this.authCache, body);
    if (problem !== null) return { ok: false, code: 'REQUEST_BAD_SIGNATURE', message: problem, id };
    return { ok: true, id };
  }

  private onClientRequest(sr: SignedRequest, sentToAll: boolean): void {
    const c = this.checkRequest(sr);
    if (!c.ok) {
      this.out.push({ type: 'rejected', requestId: c.id, code: c.code, message: c.message });
      return;
    }
    // A client's request must have time left to reach every node and be ordered: one about to expire is
    // accepted here and refused as expired by peers whose clocks run ahead, so it can never gather q votes.
    // It is never executed, so never charged: a funded client could fill every node's pool with such
    // requests for free (held until the sweep forgets them, ~62 s with group init's genesis; they once
    // counted against the admission limits too, see sweepExpired). So this node takes one from a client
    // only while the skew bound twice over plus a view-change timeout remain before its expiry (at most
    // half the expiry window; 62 s of group init's 600). Honest clients sign with the current time and
    // never come near it.
    // Requests from peers keep the plain rule: a node that forwarded it took it in time by its own clock.
    const guard = Math.min(this.expiryGuardMs(), this.genesis.params.expiryMs / 2);
    if (this.expired(sr.request.timestamp, -guard)) {
      this.out.push({
        type: 'rejected',
        requestId: c.id,
        code: 'REQUEST_EXPIRED',
        message: `request timestamp expires in under ${guard} ms, too soon to be ordered; sign it again with the current time`,
      });
      return;
    }
    const short = this.fundsShortBy(sr);
    if (short > 0) {
      const spends = this.spendsWaitingFor(sr.request.client);
      this.out.push({
        type: 'rejected',
        requestId: c.id,
        code: 'INSUFFICIENT_FUNDS',
        message: `balance ${this.fundsOf!(sr.request.client)}, less the maxFee of ${this.feesHeldFor(sr.request.client)} held by this client's requests waiting to be ordered here${spends > 0 ? ` and ${spends} in its refunds and transfers waiting` : ''}, is ${short} below the request's maxFee ${sr.request.maxFee}`,
      });
      return;
    }
    this.admit(sr, c.id);
    this.out.push({ type: 'accepted', requestId: c.id });
    if (sentToAll) {
      this.lateForward.push(
        hex(c.id),
        this.now + Math.max(this.cfg.lateForwardMs, this.cfg.viewChangeTimeoutMs / 2),
      );
      return;
    }
    this.forwardQueue.push(sr);
    if (this.forwardQueue.length >= this.cfg.forwardBatchSize) this.flushForward();
    else if (this.forwardDeadline === Number.POSITIVE_INFINITY)
      this.forwardDeadline = this.now + this.cfg.forwardDelayMs;
  }

  /** A request some peer sent (forwarded or fetched): accepted if valid, else counted against the peer. */
  private onPeerRequest(from: number, sr: SignedRequest): void {
    let c = this.checkRequest(sr);
    // A proposal waiting for it (fetched from its primary): the batch's timestamp decides at execution
    // whether it is expired (rule 5), not this node's clock, which may read it expired or from the future
    // while the primary's, within the skew bound, did not. Refused, the proposal waited here for good.
    const badTime = !c.ok && (c.code === 'REQUEST_EXPIRED' || c.code === 'REQUEST_FROM_FUTURE');
    if (badTime && c.id !== null && this.parkedOn.has(`r${hex(c.id)}`)) c = this.checkRequest(sr, true);
    if (c.ok && this.fundsShortBy(sr) > 0 && !this.parkedOn.has(`r${hex(c.id)}`)) {
      // Not blamed: the client's balance may have fallen here since the peer took it.
      this.unfundedForwards++;
      // One this node asked for (it holds votes for it): asked again only after a timeout, not every
      // retransmission period, each answer refused again (a request whose client spent its balance twice
      // over disjoint sets of nodes was fetched and refused ten times a second until it expired).
      const idHex = hex(c.id);
      if (this.orphans.has(idHex)) this.orphans.set(idHex, this.now + this.currentTimeout());
      return;
    }
    if (c.ok) this.admit(sr, c.id);
    else if (c.code === 'REQUEST_EXPIRED' && c.id !== null && this.orphans.has(hex(c.id))) {
      // We asked for it (we hold votes for it): it can no longer execute, so stop asking. (Our own vote
      // among them, read back at a restart, is kept in expiredOwn: our clock may be reading ahead.)
      this.keepExpiredOwn(hex(c.id), sr.request.timestamp);
      this.forgetVotes(hex(c.id));
    } else if (
      c.code === 'REQUEST_BAD_SIGNATURE' ||
      c.code === 'REQUEST_INPUT_MISMATCH' ||
      c.code === 'REQUEST_WRONG_GROUP'
    ) {
      // A node forwards and hands over only requests that passed these same checks (admit), and they
      // depend on nothing but the request: one that fails them is the sender's own junk.
      this.punish(from, `relayed a request that fails its checks (${c.code})`);
      this.blame(from, 'bad-request', c.code);
    }
  }

  /**
   * The client's balance as this node's executed state has it, when the caller (the node host) can tell.
   * A request a peer forwards is taken only from a client whose balance covers its maxFee, the check a
   * node's API applies to a client's own request: else a faulty peer could have every node infer requests
   * of an unfunded key for nothing (the ledger skips them at execution, uncharged) and fill the pools
   * that funded clients need. Balances only fall, so a node behind the group never refuses what the group
   * would take. A request a proposal waits for is taken whatever the balance (execution decides).
   */
  fundsOf: ((client: Uint8Array) => number) | null = null;

  /**
   * Per client (hex key), the sum of maxFee over its requests in the pool: what their execution may still
   * charge. A request is taken (from the client or a peer) only while the balance covers it as well:
   * otherwise a funded client could have far more requests inferred than its balance pays for, those
   * beyond it skipped at execution uncharged, and a faulty peer forwarding them bypassed every admission
   * limit (the pool grew without bound).
   */
  private readonly heldFees = new Map<string, number>();

  /** The maxFee this client's requests in the pool hold (heldFees). */
  feesHeldFor(client: Uint8Array): number {
    return this.heldFees.get(hex(client)) ?? 0;
  }

  /**
   * By how much the client's balance, less what its pooled requests hold and its refunds and transfers
   * waiting here take, falls short of sr's maxFee (≤ 0: covered). A refund or transfer ordered before the
   * request leaves it unpaid (skipped at execution, uncharged, after every node inferred it).
   */
  private fundsShortBy(sr: SignedRequest): number {
    if (this.fundsOf === null) return 0;
    const r = sr.request;
    return r.maxFee - (this.fundsOf(r.client) - this.feesHeldFor(r.client) - this.spendsWaitingFor(r.client));
  }

  /**
   * What the client's refunds and transfers waiting here take: the largest of each serial (they share the
   * client's serials, and only one of a serial applies), but for serial `except` (a rival of it replaces it,
   * whichever is ordered).
   */
  spendsWaitingFor(client: Uint8Array, except?: number): number {
    if (this.txs.size === 0) return 0;
    const largest = new Map<number, number>();
    for (const t of this.txs.values()) {
      const spend = clientSpendOf(t.tx);
      if (spend !== null && spend.serial !== except && equalBytes(spend.client, client))
        largest.set(spend.serial, Math.max(largest.get(spend.serial) ?? 0, spend.amount));
    }
    let waiting = 0;
    for (const a of largest.values()) waiting += a;
    return waiting;
  }

  private holdFee(sr: SignedRequest, sign: 1 | -1): void {
    const k = hex(sr.request.client);
    const held = (this.heldFees.get(k) ?? 0) + sign * sr.request.maxFee;
    if (held > 0) this.heldFees.set(k, held);
    else this.heldFees.delete(k);
  }
  /** Requests from peers refused because the client's balance did not cover their maxFee (fundsOf). */
  unfundedForwards = 0;

  private admit(sr: SignedRequest, id: Uint8Array): void {
    const idHex = hex(id);
    this.pool.set(idHex, { sr, id, state: 'pending', acceptedAt: this.now });
    this.holdFee(sr, 1);
    // Forgotten as expired while this node's clock read ahead, and taken again: what it answered then is
    // what it answers (expiredOwn).
    const back = this.expiredOwn.get(idHex);
    if (back) {
      this.expiredOwn.delete(idHex);
      const m = this.ownPast.get(idHex);
      if (m) for (const [k, x] of back.past) m.set(k, x);
      else this.ownPast.set(idHex, back.past);
    }
    this.settleOrphan(idHex);
    // Not when this node signed a result for it with its current model already (before a restart: see
    // restore), nor when it may have and cannot know: before a lost write (resultsFloor), or before the
    // request expired here (taken only for a proposal that names it, which holds its q votes already; an
    // expired request is forgotten with this node's vote, and a second, different answer would be
    // double-vote evidence against it).
    if (
      !this.hasCurrentVote(idHex, this.id) &&
      sr.request.timestamp > this.resultsFloor &&
      !this.expired(sr.request.timestamp)
    )
      this.inferQueue.push({ requestId: id, request: sr });
    this.updateReadiness(idHex);
    this.arrived(`r${idHex}`);
    this.retryParked();
  }

  private flushForward(): void {
    if (this.forwardQueue.length > 0)
      this.out.push({ type: 'broadcast', msg: { kind: 'forward', requests: this.forwardQueue } });
    this.forwardQueue = [];
    this.forwardDeadline = Number.POSITIVE_INFINITY;
  }

  // ---------------------------------------------------------------- transactions (model updates)

  /**
   * Validates a transaction without changing state: the checks applied before one is taken. `spread`: one a
   * peer spread or a batch carried, not a submission here (a refund is then held to the balance alone).
   */
  checkTx(
    tx: Tx,
    spread = false,
  ): { ok: true; id: Uint8Array } | { ok: false; code: TxRejectCode; message: string; id: Uint8Array } {
    const id = txIdOf(tx);
    if (this.txs.has(hex(id)))
      return { ok: false, code: 'TX_DUPLICATE', message: 'transaction already waiting to be ordered', id };
    // The very same transaction (its id covers the signature) ordered and executed here. doneTxs is bounded
    // and in memory: one executed longer ago, or before a restart, is TX_STALE_VERSION below.
    if (this.doneTxs.has(hex(id)))
      return {
        ok: false,
        code: 'TX_ALREADY_EXECUTED',
        message: 'transaction already ordered and executed',
        id,
      };
    const p = this.txPlace(tx);
    if (!p)
      return { ok: false, code: 'TX_UNKNOWN_NODE', message: `no node ${txNodeOf(tx)} in the genesis`, id };
    const node = p.stream % this.n;
    const of =
      p.client !== undefined
        ? `client ${Buffer.from(p.client, 'hex').toString('base64url')}'s refunds and transfers`
        : p.stream < 0
          ? "the treasury's deposits"
          : p.stream < this.n
            ? `node ${node}'s model`
            : p.stream < 2 * this.n
              ? `node ${node}'s fee`
              : `node ${node}'s withdrawals`;
    const unit = p.stream < 0 || p.stream >= 2 * this.n ? 'serial' : 'version';
    // What depends on nothing but the transaction comes before what depends on this node's state (the place
    // applied, the ones held): a peer spreads only transactions that passed these (onPeerTx punishes it for
    // one that does not), and a forged one refused as stale or TX_TOO_MANY first let it go free.
    if (tx.kind === 'deposit' && tx.deposit.amount === 0)
      return { ok: false, code: 'TX_BAD_AMOUNT', message: 'a deposit of 0', id };
    if (tx.kind === 'withdrawal' && tx.withdrawal.amount === 0)
      return { ok: false, code: 'TX_BAD_AMOUNT', message: 'a withdrawal of 0', id };
    if (clientSpendOf(tx)?.amount === 0)
      return { ok: false, code: 'TX_BAD_AMOUNT', message: `a ${tx.kind} of 0`, id };
    if (tx.kind === 'transfer' && equalBytes(tx.transfer.to, tx.transfer.client))
      return {
        ok: false,
        code: 'TX_TRANSFER_TO_SELF',
        message: "a transfer to the paying client's own account (it would move nothing)",
        id,
      };
    if (!verifyTx(this.genesis, this.groupId, tx))
      return {
        ok: false,
        code: 'TX_BAD_SIGNATURE',
        message:
          p.client !== undefined
            ? "not signed by the client's key"
            : p.stream < 0
              ? "not signed by the treasury's key"
              : `not signed by node ${node}'s key`,
        id,
      };
    if (p.version <= p.current)
      return {
        ok: false,
        code: 'TX_STALE_VERSION',
        message:
          p.stream < 0
            ? `serial ${p.version} is not above the treasury's last applied deposit, serial ${p.current}`
            : unit === 'serial'
              ? `serial ${p.version} is not above ${of}' last applied, serial ${p.current}`
              : `version ${p.version} is not above ${of}'s current version ${p.current}`,
        id,
      };
    // The ledger applies a node's update only at the version after its current one (a deposit only at the
    // serial after the last applied). One that skips a version nobody here holds could only wait for it:
    // proposed, it would have no effect and wait again (a stream of useless batches), and held here it would
    // run the request timer against a primary that cannot order it. So a version is taken only right after
    // the current one or one waiting here (its owner, or the node it was submitted to, spreads it again
    // until it is taken).
    let highest = p.current;
    let held = 0;
    for (const t of this.txs.values()) {
      const q = this.txPlace(t.tx);
      if (q && q.stream === p.stream && q.client === p.client) {
        held++;
        if (q.version > highest) highest = q.version;
      }
    }
    // Only the node's own key signs its updates (the treasury's its deposits), and it could sign them
    // without end (another digest each time, all of one version): each was held, relayed and proposed, and
    // each check went through all held.
    if (held >= MAX_TXS_PER_NODE)
      return {
        ok: false,
        code: 'TX_TOO_MANY',
        message: `${held} transactions of ${of} are waiting to be ordered already, the most held per sequence: submit this one once they are ordered`,
        id,
      };
    if (p.version > highest + 1)
      return {
        ok: false,
        code: 'TX_VERSION_GAP',
        message: `${unit} ${p.version} skips ${unit} ${highest + 1} of ${of} (current ${p.current}); they apply one at a time: submit ${highest + 1} first`,
        id,
      };
    // A refund the balance does not cover would use its serial and take nothing; and one that left the
    // client's requests waiting here unpaid would have had them inferred for nothing (they are charged
    // first only in the batch that carries the refund). Where this node can tell the balance (the node
    // host), a submission is held to the balance less those requests' maxFee and the client's other
    // refunds waiting. One a peer spread is held to the balance alone (a key with no account holds 0): the
    // requests and refunds waiting differ from node to node, and one the nodes that took it waited for and
    // the primary refused ran their request timers out, a view change a client could cause at will.
    // A transfer likewise: the two share the client's serials and take from the same balance.
    const r = clientSpendOf(tx);
    if (r !== null && this.fundsOf !== null) {
      const balance = this.fundsOf(r.client);
      const heldFees = spread ? 0 : this.feesHeldFor(r.client);
      const waiting = spread ? 0 : this.spendsWaitingFor(r.client, r.serial);
      const may = Math.max(0, balance - heldFees - waiting);
      if (r.amount > balance - heldFees - waiting)
        return {
          ok: false,
          code: tx.kind === 'transfer' ? 'TX_TRANSFER_TOO_LARGE' : 'TX_REFUND_TOO_LARGE',
          message: `the client's balance is ${balance}${heldFees > 0 ? `, ${heldFees} of it held by its requests waiting to be ordered` : ''}${waiting > 0 ? `, ${waiting} more in its refunds and transfers waiting to be ordered` : ''}: it may ${tx.kind === 'transfer' ? `transfer ${may}` : `take back ${may}`}, not ${r.amount}`,
          id,
        };
    }
    return { ok: true, id };
  }

  /**
   * The sequence a transaction is in (a node's model updates: the node's id; its fee changes: n + its id;
   * its withdrawals: 2n + its id; the treasury's deposits: −1; a client's refunds and transfers: 3n and the client's hex
   * key), its place there and the place applied last (`c`: this replica's counters,
   * or copies); null for a transaction of a node the genesis does not have.
   */
  private txPlace(
    tx: Tx,
    c?: TxCounters,
  ): { stream: number; client?: string; version: number; current: number } | null {
    const spend = clientSpendOf(tx);
    if (spend) {
      const client = hex(spend.client);
      const current = c?.refunds.get(client) ?? this.refunds.get(client) ?? 0;
      return { stream: 3 * this.n, client, version: spend.serial, current };
    }
    if (tx.kind === 'deposit')
      return { stream: -1, version: tx.deposit.serial, current: c ? c.deposits : this.deposits };
    if (tx.kind === 'feeChange') {
      const f = tx.change;
      if (!(f.node < this.n)) return null;
      const current = (c ? c.feeVersions : this.feeVersions)[f.node];
      return { stream: this.n + f.node, version: f.version, current };
    }
    if (tx.kind === 'withdrawal') {
      const w = tx.withdrawal;
      if (!(w.node < this.n)) return null;
      const current = (c ? c.withdrawals : this.withdrawals)[w.node];
      return { stream: 2 * this.n + w.node, version: w.serial, current };
    }
    if (tx.kind !== 'modelUpdate') return null; // refunds and transfers: above
    const u = tx.update;
    const versions = c ? c.modelVersions : this.modelVersions;
    if (!(u.node < this.n)) return null;
    return { stream: u.node, version: u.version, current: versions[u.node] };
  }

  private onSubmitTx(tx: Tx): void {
    const c = this.checkTx(tx);
    if (!c.ok) {
      this.out.push({ type: 'txRejected', txId: c.id, code: c.code, message: c.message });
      return;
    }
    this.admitTx(tx, c.id, true);
    this.out.push({ type: 'txAccepted', txId: c.id });
    this.out.push({ type: 'broadcast', msg: { kind: 'tx', tx } });
  }

  /** A transaction some peer spread: taken if valid, counted against the peer if forged. */
  private onPeerTx(from: number, tx: Tx): void {
    const c = this.checkTx(tx, true);
    if (c.ok) {
      this.admitTx(tx, c.id, false);
      // Relayed to the primary (Castro–Liskov: a backup passes a request on to the primary), as its timer
      // now runs for it: a faulty owner that spread its update to the backups only made them suspect an
      // honest primary that never saw it, a view change at will. Sent again while it waits (retransmit).
      const primary = this.primaryOf(this.view);
      if (primary !== this.id && primary !== from)
        this.out.push({ type: 'send', to: primary, msg: { kind: 'tx', tx } });
    } else if (
      c.code === 'TX_BAD_SIGNATURE' ||
      c.code === 'TX_UNKNOWN_NODE' ||
      c.code === 'TX_BAD_AMOUNT' ||
      c.code === 'TX_TRANSFER_TO_SELF'
    ) {
      // A node spreads or relays only transactions that passed these same checks (onSubmitTx, and above),
      // and they depend on nothing but the transaction: the sender made this one, under its own name or
      // another's.
      this.punish(
        from,
        c.code === 'TX_BAD_SIGNATURE' && tx.kind !== 'deposit' && txNodeOf(tx) === from
          ? 'bad signature on its own transaction'
          : `spread a bad transaction (${c.code})`,
      );
      this.blame(from, 'bad-tx', c.code);
    }
  }

  private admitTx(tx: Tx, id: Uint8Array, origin: boolean): void {
    this.txs.set(hex(id), {
      tx,
      id,
      state: 'pending',
      since: this.now,
      origin,
      sentAt: this.now,
      backoff: this.cfg.retransmitMs,
    });
  }

  /** When the oldest transaction not in an accepted batch was taken (Infinity: none). */
  private oldestUnproposedTx(): number {
    for (const t of this.txs.values()) if (t.state === 'pending') return t.since;
    return Number.POSITIVE_INFINITY;
  }

  private markTxsProposed(batch: Batch): void {
    if (this.txs.size === 0) return;
    for (const tx of batch.txs) {
      const t = this.txs.get(hex(txIdOf(tx)));
      if (t) t.state = 'proposed';
    }
  }

  /**
   * A batch executed: its transactions whose version is no longer above their node's (applied, or
   * superseded by another of that version) are done, and so is every waiting one of such a version. One
   * that the batch carried but execution did not apply, its version still ahead (ordered before the
   * version it follows), is not done: it waits again, to be proposed after that version (taken here, if
   * this node did not hold it, when it is still the next version or one after a waiting one: checkTx).
   */
  private settleTxs(batch: Batch): void {
    for (const tx of batch.txs) {
      const spend = clientSpendOf(tx);
      if (spend !== null && this.fundsOf !== null)
        (this.spentBy ??= new Map()).set(hex(spend.client), spend.client);
      const p = this.txPlace(tx);
      const k = hex(txIdOf(tx));
      if (p && p.version > p.current) {
        const t = this.txs.get(k);
        if (t) t.state = 'pending';
        else {
          const c = this.checkTx(tx, true);
          if (c.ok) this.admitTx(tx, c.id, false);
        }
        continue;
      }
      this.txs.delete(k);
      this.doneTxs.add(k);
    }
    while (this.doneTxs.size > 1024) this.doneTxs.delete(this.doneTxs.values().next().value as string);
    let droppedSpend = false;
    for (const [k, t] of this.txs) {
      const p = this.txPlace(t.tx);
      if (!p || p.version <= p.current) {
        this.txs.delete(k);
        continue;
      }
      // A refund or transfer waiting that the balance no longer covers (a batch charged the client): a
      // primary takes it from no peer now (checkTx), so held here it would run this node's request timer out
      // against every primary but itself. Taken out only if no batch carries it (a deposit in flight may yet
      // cover it).
      const spend = clientSpendOf(t.tx);
      if (
        spend !== null &&
        t.state === 'pending' &&
        this.fundsOf !== null &&
        spend.amount > this.fundsOf(spend.client)
      ) {
        this.txs.delete(k);
        droppedSpend = true;
      }
    }
    if (!droppedSpend) return;
    // And the client's later serials waiting after a serial no longer held here: they could only be
    // proposed again and again to no effect (the ledger applies serial k only right after k − 1).
    const held = new Map<string, Set<number>>();
    for (const t of this.txs.values()) {
      const spend = clientSpendOf(t.tx);
      if (spend) {
        const c = hex(spend.client);
        const serials = held.get(c) ?? new Set<number>();
        serials.add(spend.serial);
        held.set(c, serials);
      }
    }
    for (const [k, t] of this.txs) {
      const spend = clientSpendOf(t.tx);
      if (spend === null || t.state !== 'pending') continue;
      const c = hex(spend.client);
      const serials = held.get(c) as Set<number>;
      for (let s = (this.refunds.get(c) ?? 0) + 1; s < spend.serial; s++)
        if (!serials.has(s)) {
          this.txs.delete(k);
          break;
        }
    }
  }

  /**
   * Model versions, fees and deposits after a batch when the caller did not say: the ledger's rule, applied
   * in batch order.
   */
  private versionsAfter(batch: Batch): TxCounters & { fees: number[]; refunds: Map<string, number> } {
    const c = {
      modelVersions: [...this.modelVersions],
      feeVersions: [...this.feeVersions],
      withdrawals: [...this.withdrawals],
      fees: [...this.fees],
      deposits: this.deposits,
      // The changes only. Taken as used by any validly signed refund of the next serial: the ledger uses none
      // of a key with no account, which only the caller's counts (ev.refunds) tell; an honest replica with
      // fundsOf takes no such refund.
      refunds: new Map<string, number>(),
    };
    for (const tx of batch.txs) {
      const p = this.txPlace(tx, c);
      if (!p || p.version !== p.current + 1 || !verifyTx(this.genesis, this.groupId, tx)) continue;
      if (tx.kind === 'deposit') c.deposits = p.version;
      else if (p.client !== undefined)
        c.refunds.set(p.client, p.version); // a refund or a transfer
      else if (tx.kind === 'withdrawal') c.withdrawals[tx.withdrawal.node] = p.version;
      else if (tx.kind === 'feeChange') {
        c.feeVersions[tx.change.node] = p.version;
        c.fees[tx.change.node] = tx.change.fee;
      } else if (tx.kind === 'modelUpdate') c.modelVersions[tx.update.node] = p.version;
    }
    return c;
  }

  // ---------------------------------------------------------------- votes

  private onInferSkipped(ids: Uint8Array[]): void {
    for (const id of ids) {
      const p = this.pool.get(hex(id));
      if (!p) continue; // executed: no vote needed
      p.ownSkipped = true;
      // Put back since the caller decided (a view change in between): infer it now.
      if (p.state === 'pending') this.reinferSkipped(p);
    }
  }

  /** A request back to waiting for a proposal whose input this node dropped: infer it after all. */
  private reinferSkipped(p: PoolEntry): void {
    if (!p.ownSkipped) return;
    p.ownSkipped = false;
    if (!this.votes.get(hex(p.id))?.has(this.id)) this.inferQueue.push({ requestId: p.id, request: p.sr });
  }

  private onInferred(modelDigest: Uint8Array, results: { requestId: Uint8Array; result: Result }[]): void {
    if (results.length === 0) return;
    if (this.cfg.resultsDelayMs <= 0) {
      this.signInferred(modelDigest, results);
      return;
    }
    const key = hex(modelDigest);
    const waiting = this.pendingInferred.get(key);
    if (waiting) for (const r of results) waiting.results.push(r);
    else this.pendingInferred.set(key, { modelDigest, results: results.slice() });
    const due = this.lastResultsAt + this.cfg.resultsDelayMs;
    if (due <= this.now) this.flushInferred();
    else this.resultsDeadline = due;
  }

  /** Signs the answers waiting for this node's RESULTS (resultsDelayMs): one RESULTS per model. */
  private flushInferred(): void {
    this.resultsDeadline = Number.POSITIVE_INFINITY;
    this.lastResultsAt = this.now;
    const all = this.pendingInferred;
    this.pendingInferred = new Map();
    for (const w of all.values()) this.signInferred(w.modelDigest, w.results);
  }

  /** Signs, stores and broadcasts this node's RESULTS for `results` (see onInferred). */
  private signInferred(modelDigest: Uint8Array, results: { requestId: Uint8Array; result: Result }[]): void {
    if (!equalBytes(modelDigest, this.models[this.id]) && this.retiredModels.has(hex(modelDigest))) {
      // Inferred with a model this node has replaced since (it was running when the update executed):
      // such votes no longer count. Infer again with the current model.
      for (const r of results) {
        const idHex = hex(r.requestId);
        const p = this.pool.get(idHex);
        if (p && !this.hasCurrentVote(idHex, this.id))
          this.inferQueue.push({ requestId: p.id, request: p.sr });
      }
      return;
    }
    // Never a second result for a request this node has signed one for with this model: inference need not
    // give the same bytes twice (another inference batch, a nondeterministic model), and the pair would be
    // double-vote evidence against it. Nor one for a request it may have voted on before it lost writes
    // (resultsFloor; a request no longer held has executed or expired: its vote is of no use).
    if (this.ownPast.size > 0) {
      const mHex = hex(modelDigest);
      results = results.map((x) => {
        const past = this.ownPast.get(hex(x.requestId))?.get(mHex);
        return past ? { requestId: x.requestId, result: past } : x;
      });
    }
    let fresh: { requestId: Uint8Array; result: Result }[] | null = null;
    let newest = 0;
    for (let i = 0; i < results.length; i++) {
      const idHex = hex(results[i].requestId);
      const p = this.pool.get(idHex);
      const ts = p ? p.sr.request.timestamp : Number.NEGATIVE_INFINITY;
      const mine = this.votes.get(idHex)?.get(this.id);
      const again =
        // No longer held (executed, or expired and forgotten): a vote now is of no use, and if this node
        // voted on it before (inferred twice after a view change put it back) a second answer that differs
        // would be double-vote evidence against it at a peer still holding the first.
        p === undefined ||
        (this.resultsFloor > 0 && ts <= this.resultsFloor) ||
        (mine !== undefined &&
          equalBytes(
            this.results.get(mine.digestHex)?.signed.batch.modelDigest ?? EMPTY_DIGEST,
            modelDigest,
          ));
      if (again) fresh ??= results.slice(0, i);
      else {
        if (ts > newest) newest = ts;
        fresh?.push(results[i]);
      }
    }
    const entries = fresh ?? results;
    if (entries.length === 0) return;
    const batch: ResultBatch = { node: this.id, modelDigest, entries };
    const signed = signResults(this.groupId, batch, this.key);
    const digest = this.storeResults(signed);
    if (digest) {
      this.ownResults.push(digest);
      // On record before it leaves (the host holds the broadcast until the write is as durable as its
      // durability asks).
      const stored = this.results.get(digest)!;
      // (The clock may run on fractions of a ms; what is stored is whole.)
      this.out.push({
        type: 'saveResults',
        digest: stored.digest,
        signed,
        newest: newest || Math.ceil(this.wall),
      });
      this.out.push({ type: 'broadcast', msg: { kind: 'results', signed } });
    }
  }

  /**
   * A RESULTS batch from `from`: its own in a RESULTS message (`relayed` false: a node sends only its own
   * batches that way), or anyone's in a FETCHED answer (`relayed` true).
   */
  private onResults(from: number, signed: SignedResults, relayed = false): void {
    const signer = signed.batch.node;
    const node = this.genesis.nodes[signer];
    if (!node) {
      // No honest node holds, so none relays, RESULTS of a node outside the genesis.
      this.punish(from, 'results of an unknown node');
      return this.blame(from, 'bad-results', 'unknown node');
    }
    // Dropped unchecked: checking it would cost a signature check for a message no honest node sends.
    if (!relayed && signer !== from) return this.blame(from, 'bad-sender', 'results of another node');
    const batchBytes = encode(ResultBatchCodec, signed.batch);
    const digest = resultsDigestOfParts(batchBytes, signed.signature);
    if (this.results.has(hex(digest))) return;
    if (!verifyResults(this.groupId, signed, node.publicKey, batchBytes)) {
      // Its own, or relayed in a FETCHED answer: a node keeps (so relays) only RESULTS it checked or made.
      this.punish(
        from,
        signer === from ? 'bad signature on its own results' : 'relayed results with a bad signature',
      );
      return this.blame(from, 'bad-signature', 'results');
    }
    this.storeResults(signed, digest);
  }

  /** Stores a validly signed results batch and indexes its votes. Returns its digest hex. */
  private storeResults(signed: SignedResults, digest = resultsDigestOf(signed)): string | null {
    const dHex = hex(digest);
    if (this.results.has(dHex)) return null;
    const node = signed.batch.node;
    const stored: StoredResults = {
      signed,
      digest,
      open: 0,
      sentAt: this.now,
      backoff: this.cfg.retransmitMs,
    };
    this.results.set(dHex, stored);
    const entries = signed.batch.entries;
    for (let index = 0; index < entries.length; index++) {
      const e = entries[index];
      const idHex = hex(e.requestId);
      // Most votes are for requests in the pool, which is never in `done` (see checkRequest).
      const pooled = this.pool.has(idHex);
      if (!pooled && this.done.has(e.requestId)) continue;
      if (!pooled && node !== this.id) {
        // A vote for a request not received (yet): at most maxOrphanVotesPerNode of them per peer.
        let mine = this.orphanVotes.get(node);
        if (!mine) {
          mine = new Set();
          this.orphanVotes.set(node, mine);
        }
        if (!mine.has(idHex)) {
          if (mine.size >= this.cfg.maxOrphanVotesPerNode) continue;
          mine.add(idHex);
        }
      }
      let m = this.votes.get(idHex);
      if (!m) {
        m = new Map();
        this.votes.set(idHex, m);
      }
      const prev = m.get(node);
      if (prev) {
        const prevResults = this.results.get(prev.digestHex);
        const prevEntry = prevResults?.signed.batch.entries[prev.index];
        if (
          prevResults &&
          prevEntry &&
          equalBytes(prevResults.signed.batch.modelDigest, signed.batch.modelDigest) &&
          !equalBytes(encode(ResultCodec, prevEntry.result), encode(ResultCodec, e.result))
        ) {
          this.recordEvidence(node, 'double-vote', `double vote on ${idHex}`, {
            kind: 'doubleVote',
            requestId: e.requestId,
            a: prevResults.signed,
            b: signed,
          });
        }
        if (
          prevResults &&
          equalBytes(prevResults.signed.batch.modelDigest, this.models[node] ?? new Uint8Array())
        )
          continue;
        // The replaced vote (from a model no longer current) stops holding its results batch.
        if (node === this.id) this.rememberOwn(idHex, prev);
        if (prevResults) prevResults.open--;
      }
      m.set(node, { node, results: digest, index, digestHex: dHex });
      stored.open++;
      // Its own vote (read back at a restart) makes no orphan: it cannot ask itself for the request.
      if (!pooled && node !== this.id && !this.orphans.has(idHex)) {
        this.orphans.set(idHex, this.now);
        this.orphanSince.set(idHex, this.now);
      }
      this.updateReadiness(idHex, m);
    }
    // A peer's RESULTS that holds no vote here (every request executed, or over its orphan allowance) and
    // that no parked proposal waits for is not kept: until the next stable checkpoint collected it, a
    // faulty peer could have filled memory with them. A proposal that names it later fetches it again.
    if (stored.open === 0 && node !== this.id && !this.parkedOn.has(`v${dHex}`)) {
      this.results.delete(dHex);
      return null;
    }
    this.arrived(`v${dHex}`);
    this.retryParked();
    return dHex;
  }

  private hasCurrentVote(idHex: string, node: number): boolean {
    const v = this.votes.get(idHex)?.get(node);
    const r = v && this.results.get(v.digestHex);
    return !!r && equalBytes(r.signed.batch.modelDigest, this.models[node]);
  }

  /** Forgets one node's vote for a request; its results batch is no longer held for it. */
  /**
   * This node's answers to requests still held whose own votes were dropped or replaced (its model changed),
   * by model digest (hex). Should its model change back to one it answered with (A, B, then A again) it
   * signs that answer again, not a new one: inference is not bit-exact, and a peer still holding the first
   * vote would take a different second one as double-vote evidence. Gone with the request (forgetVotes,
   * execution).
   */
  private readonly ownPast = new Map<string, Map<string, Result>>();

  /**
   * This node's answers to requests whose votes it forgot as expired by its clock (sweepExpired,
   * settleRestoredOwn), by request id (hex): the request's timestamp (or a later one) and the answers by
   * model digest (hex). The wall clock may go back (Replica.step): a request forgotten while the clock read
   * ahead (a wrong step forward) is valid again once the clock is put right, and may come back (a peer's
   * FORWARD, a proposal it fetches). Taken again (admit), its answers go back to ownPast, so this node
   * signs the answer it signed before, not a second one from another inference that may differ
   * (double-vote evidence against it at every peer still holding the first): before 2026-12-06 one clock
   * that never went back kept such a request expired here. Kept until the executed batches expire the
   * request (no batch can carry it then, and this node infers it no more: admit), at most MAX_EXPIRED_OWN
   * of them, the oldest forgotten first.
   */
  private readonly expiredOwn = new Map<string, { timestamp: number; past: Map<string, Result> }>();

  private keepExpiredOwn(idHex: string, timestamp: number): void {
    const past = new Map(this.ownPast.get(idHex) ?? []);
    const v = this.votes.get(idHex)?.get(this.id);
    const r = v && this.results.get(v.digestHex);
    const e = v && r?.signed.batch.entries[v.index];
    if (r && e) past.set(hex(r.signed.batch.modelDigest), e.result);
    if (past.size === 0) return;
    this.expiredOwn.delete(idHex);
    this.expiredOwn.set(idHex, { timestamp, past });
    if (this.expiredOwn.size > MAX_EXPIRED_OWN)
      for (const k of this.expiredOwn.keys()) {
        this.expiredOwn.delete(k);
        break;
      }
  }

  /** Forgets the answers of expiredOwn whose requests the executed batches have expired. */
  private pruneExpiredOwn(): void {
    for (const [idHex, o] of this.expiredOwn)
      if (o.timestamp + this.genesis.params.expiryMs < this.lastExecutedTimestamp)
        this.expiredOwn.delete(idHex);
  }

  private rememberOwn(idHex: string, v: VoteRef): void {
    const r = this.results.get(v.digestHex);
    const e = r?.signed.batch.entries[v.index];
    if (!r || !e) return;
    let m = this.ownPast.get(idHex);
    if (!m) {
      m = new Map();
      this.ownPast.set(idHex, m);
    }
    m.set(hex(r.signed.batch.modelDigest), e.result);
  }

  /** Drops `node`'s vote from `m`; this node's own, for request `idHex` still held, is remembered (ownPast). */
  private dropVote(m: Map<number, VoteRef>, node: number, idHex?: string): void {
    const v = m.get(node);
    if (!v) return;
    if (node === this.id && idHex !== undefined) this.rememberOwn(idHex, v);
    m.delete(node);
    const r = this.results.get(v.digestHex);
    if (r) r.open--;
  }

  /**
   * This node's own model changed (or a view change put requests back): every request still waiting for
   * a proposal whose own vote came from an older model is inferred again, with the current one.
   */
  private reinferStale(): void {
    for (const [idHex, p] of this.pool) {
      if (p.state !== 'pending') continue;
      const m = this.votes.get(idHex);
      if (!m?.has(this.id) || this.hasCurrentVote(idHex, this.id)) continue;
      this.dropVote(m, this.id, idHex);
      this.inferQueue.push({ requestId: p.id, request: p.sr });
    }
  }

  private currentVoteCount(idHex: string): number {
    const m = this.votes.get(idHex);
    return m ? this.currentVotesIn(m) : 0;
  }

  /** currentVoteCount of a request whose votes are `m`. */
  private currentVotesIn(m: Map<number, VoteRef>): number {
    let c = 0;
    for (const v of m.values()) {
      const r = this.results.get(v.digestHex);
      if (r && equalBytes(r.signed.batch.modelDigest, this.models[v.node])) c++;
    }
    return c;
  }

  /** Primary bookkeeping: is this request ready to propose? */
  private updateReadiness(idHex: string, votes?: Map<number, VoteRef>): void {
    if (!this.isPrimary) return;
    // Fewer than q votes held: fewer than q current ones, nothing to do (spares the count on most votes).
    const m = votes ?? this.votes.get(idHex);
    if (m === undefined || m.size < this.q) return;
    const p = this.pool.get(idHex);
    if (p?.state !== 'pending' || this.ready.has(idHex)) return;
    const c = this.currentVotesIn(m);
    if (c >= this.n) {
      this.quorum.delete(idHex);
      this.ready.set(idHex, this.now);
    } else if (c >= this.q && !this.quorum.has(idHex)) this.quorum.set(idHex, this.now);
  }

  // ---------------------------------------------------------------- proposing (primary)

  private maybePropose(): void {
    if (!this.isPrimary || this.viewChanging) return;
    for (const [idHex, since] of this.quorum) {
      if (since + this.cfg.voteWaitMs > this.now) break;
      this.quorum.delete(idHex);
      const p = this.pool.get(idHex);
      if (p && p.state === 'pending') this.ready.set(idHex, this.now);
    }
    // A batch is cut when full, or cutAfterMs after its oldest ready entry or waiting transaction.
    while (this.mayProposeMore()) {
      const oldestEntry =
        this.ready.size > 0 ? (this.ready.values().next().value as number) : Number.POSITIVE_INFINITY;
      const oldest = Math.min(oldestEntry, this.oldestUnproposedTx());
      if (oldest === Number.POSITIVE_INFINITY) break;
      if (this.ready.size < this.batchLimit() && oldest + this.cutAfterMs() > this.now) break;
      this.propose();
    }
  }

  /**
   * How long a non-full batch gathers after its oldest entry: batchTimeoutMs while a proposal is in flight
   * or another request is still gathering votes (the pool holds more than the ready entries: with nothing
   * in flight every pooled request is pending, since executed ones leave the pool), else
   * idleBatchTimeoutMs. Re-evaluated at every step, so the batch goes as soon as the last of those
   * requests is ready. A request that never gathers its votes costs later batches at most batchTimeoutMs
   * each, never a stall.
   */
  private cutAfterMs(): number {
    if (this.lastProposed > this.lastExecuted) return this.cfg.batchTimeoutMs;
    return this.pool.size > this.ready.size ? this.cfg.batchTimeoutMs : this.cfg.idleBatchTimeoutMs;
  }

  /** Room for another proposal: inside the window, and under the in-flight limit. */
  private mayProposeMore(): boolean {
    return (
      this.lastProposed < this.stable + this.cfg.window &&
      this.lastProposed - this.lastExecuted < this.cfg.maxInFlightBatches
    );
  }

  /** Requests executed here, by execution (see inFlightBudgetMs). */
  private readonly executedRate = new RateWindow(RATE_WINDOW_MS);

  /** Requests this node executed per second over the last RATE_WINDOW_MS. */
  executedPerSecond(): number {
    return this.executedRate.perSecond(this.now);
  }

  /** Most entries in the next batch: batchSize, cut to the in-flight budget (inFlightBudgetMs). */
  batchLimit(): number {
    return batchCap(this.executedPerSecond(), this.cfg);
  }

  /**
   * The votes to propose for a request: every one held, unless their fees add up to more than the client's
   * maxFee, which the ledger would skip ('over-max-fee') although q of them may fit. Then the dearest go
   * (the higher node id first among equal fees) while more than q remain and the sum is over. A client that
   * signs the API's least maxFee (the q lowest fees) is then served whenever the cheapest q voted; before
   * 2026-12-05 it was skipped whenever all n voted (from a review).
   */
  private withinMaxFee<V extends { node: number }>(
    votes: V[],
    maxFee: number,
    fees: readonly number[] = this.fees,
  ): V[] {
    const fee = (v: V) => fees[v.node] ?? 0;
    let total = 0;
    for (const v of votes) total += fee(v);
    if (total <= maxFee || votes.length <= this.q) return votes;
    const dearest = [...votes].sort((a, b) => fee(b) - fee(a) || b.node - a.node);
    const dropped = new Set<V>();
    for (const v of dearest) {
      if (total <= maxFee || votes.length - dropped.size <= this.q) break;
      dropped.add(v);
      // Summed again, not `total -= fee(v)`: a fee may be up to 2^53 − 1 (a fee change), a sum past that
      // is inexact, and the difference of two inexact sums could read at or under maxFee while the votes
      // left still cost more (the ledger then skipped the request as over-max-fee). A fresh sum is exact up
      // to 2^53 − 1 and over maxFee beyond, as the ledger's own (decideBatch).
      total = 0;
      for (const w of votes) if (!dropped.has(w)) total += fee(w);
    }
    return votes.filter((v) => !dropped.has(v));
  }

  /** Fee changes in batches in flight whose signature feesForNextBatch checked: valid or not. */
  private readonly feeChangeValid = new WeakMap<Tx, boolean>();

  /**
   * Each node's fee for the batch proposed next: the fees as of the last executed batch, with the fee
   * changes that the batches proposed since (in flight, not executed yet) make by the ledger's rule (its
   * node's next version, its signature). The next batch executes after them: trimmed under the executed
   * fees alone, its requests were skipped as over-max-fee after a raise still in flight.
   */
  private feesForNextBatch(): readonly number[] {
    let fees: number[] | null = null;
    let versions: number[] | null = null;
    for (let s = this.lastExecuted + 1; s <= this.lastProposed; s++) {
      const txs = this.slots.get(s)?.batch?.txs;
      if (!txs) continue;
      for (const tx of txs) {
        if (tx.kind !== 'feeChange') continue;
        const c = tx.change;
        const v = versions ?? this.feeVersions;
        if (!(c.node < this.n) || c.version !== v[c.node] + 1) continue;
        // Checked once per transaction, not at every proposal while its batch is in flight: a faulty
        // primary's batches (re-proposed in a view change) may carry thousands of forged ones.
        let valid = this.feeChangeValid.get(tx);
        if (valid === undefined) {
          valid = verifyTx(this.genesis, this.groupId, tx);
          this.feeChangeValid.set(tx, valid);
        }
        if (!valid) continue;
        fees ??= [...this.fees];
        versions ??= [...this.feeVersions];
        fees[c.node] = c.fee;
        versions[c.node] = c.version;
      }
    }
    return fees ?? this.fees;
  }

  private propose(): void {
    const entries: BatchEntry[] = [];
    const limit = this.batchLimit();
    const fees = this.feesForNextBatch();
    for (const idHex of this.ready.keys()) {
      if (entries.length >= limit) break;
      this.ready.delete(idHex);
      const p = this.pool.get(idHex);
      if (p?.state !== 'pending' || this.expiredPending(p)) continue;
      // The held votes of current models, by node (insertion: a node votes once, so the order a sort
      // would give), built in one array instead of a spread, a filter, a sort and a map per request.
      const votes: Vote[] = [];
      const held = this.votes.get(idHex);
      if (held)
        for (const v of held.values()) {
          const r = this.results.get(v.digestHex);
          if (!r || !equalBytes(r.signed.batch.modelDigest, this.models[v.node])) continue;
          const vote: Vote = { node: v.node, results: v.results, index: v.index };
          let i = votes.length;
          votes.push(vote);
          while (i > 0 && votes[i - 1].node > vote.node) {
            votes[i] = votes[i - 1];
            i--;
          }
          votes[i] = vote;
        }
      if (votes.length < this.q) continue;
      p.state = 'proposed';
      entries.push({ requestId: p.id, votes: this.withinMaxFee(votes, p.sr.request.maxFee, fees) });
    }
    // Every waiting transaction goes along (a batch may carry transactions and no entries), sorted by node,
    // version and id, not in arrival order: the ledger applies a node's update only at the version after
    // its current one, so versions 2 then 1 would apply 1 and leave 2 behind. One that turns out stale by
    // the time it executes has no effect there (the ledger's version rule); one still ahead waits again
    // (settleTxs).
    const txs: Tx[] = [];
    if (this.txs.size > 0) {
      const waiting: PendingTx[] = [];
      for (const t of this.txs.values()) if (t.state === 'pending') waiting.push(t);
      const place = (t: PendingTx) =>
        this.txPlace(t.tx) ?? { stream: 4 * this.n, client: undefined, version: 0 };
      waiting.sort((a, b) => {
        const x = place(a);
        const y = place(b);
        return (
          x.stream - y.stream ||
          (x.client === y.client ? 0 : (x.client ?? '') < (y.client ?? '') ? -1 : 1) ||
          x.version - y.version ||
          Buffer.compare(a.id, b.id)
        );
      });
      for (const t of waiting.slice(0, LIMITS.txs)) {
        t.state = 'proposed';
        txs.push(t.tx);
      }
    }
    if (entries.length === 0 && txs.length === 0) return;
    const seq = this.lastProposed + 1;
    const timestamp = Math.max(Math.floor(this.wall), this.lastBatchTimestamp + 1);
    const batch: Batch = { timestamp, entries, txs };
    const digest = batchDigestOf(batch);
    if (!this.mayPhaseSign('prePrepare', this.view, seq, digest)) {
      // Before a restart this node proposed something else here: never equivocate, let the view change.
      // (Its transactions stay marked proposed: the view change puts them back, like the requests here,
      // which are no longer ready.)
      for (const e of entries) {
        const p = this.pool.get(hex(e.requestId));
        if (p) {
          p.state = 'pending';
          this.reinferSkipped(p);
        }
      }
      this.lastProposed = seq;
      return;
    }
    const signature = this.signPhase(TAGS.prePrepare, this.view, seq, digest);
    const pp: PrePrepare = { view: this.view, seq, digest, signature, batch };
    const slot = this.slot(seq);
    Object.assign(slot, { view: this.view, digest, batch, pp, lastSent: this.now });
    this.holdRefs(slot);
    this.lastProposed = seq;
    this.lastBatchTimestamp = timestamp;
    this.out.push({ type: 'persist', record: { kind: 'prePrepare', view: this.view, seq, digest } });
    this.out.push({ type: 'broadcast', msg: { kind: 'prePrepare', pp } });
    this.checkPrepared(slot);
  }

  /**
   * No phase message or VIEW-CHANGE is signed in a view below this. 0 normally; for a node that lost its
   * disk, everything until it learns the group's view by state transfer, then that view + 1: it may have
   * signed in those views before and no longer knows what (PROTOCOL.md, durability and restarts).
   */
  signFloorView = 0;

  /**
   * The views state responders reported while the floor is unknown, by responder: the floor is set once
   * 2f + 1 of them have answered (see onStateResponse).
   */
  private floorViews = new Map<number, number>();

  /** Marks a replica that restarted with its disk lost, or its last signed records (see signFloorView). */
  forgetful(): void {
    // Alone in its group, nobody can tell it more than its own view.
    this.signFloorView = this.n === 1 ? this.view + 1 : Number.POSITIVE_INFINITY;
    this.floorViews.clear();
    // Its own RESULTS may be gone with the rest: none for a request taken before now (resultsFloor).
    this.resultsFloor = Number.NaN;
  }

  /**
   * A forgetful replica hears a state responder's view. It may have signed in any view that q nodes
   * entered, itself possibly among them: at least f honest others are in it or beyond. Any 2f + 1 of the
   * 3f others include one of those, so the highest view that 2f + 1 responders report bounds every view it
   * may have used (all others where there are fewer). Later responses do not move it: safety needs nothing
   * more, and a faulty peer answering (or not even asked) with a made-up view could otherwise keep a node
   * that once lost writes out of every view for good. (The reported views are not proven: a faulty peer
   * among the first q can still set the floor too high once; see README, "Known gaps".)
   */
  private learnFloor(from: number, view: number): void {
    if (this.signFloorView !== Number.POSITIVE_INFINITY) return;
    this.floorViews.set(from, view);
    if (this.floorViews.size < Math.min(this.q, this.n - 1)) return;
    this.signFloorView = Math.max(this.view, ...this.floorViews.values()) + 1;
    this.floorViews.clear();
    // Kept across restarts: a node restarted before it reaches this view must still stay out of the ones
    // below it.
    this.out.push({ type: 'persist', record: { kind: 'signFloor', view: this.signFloorView } });
  }

  /** Records what is about to be signed; refuses a second, different digest for the same slot. */
  private mayPhaseSign(
    kind: 'prePrepare' | 'prepare' | 'commit',
    view: number,
    seq: number,
    digest: Uint8Array,
  ): boolean {
    if (view < this.signFloorView) return false;
    // In the view a NEW-VIEW entered, a re-proposed seq is prepared only with the re-proposed digest.
    const pin = this.slots.get(seq)?.pinned;
    if (kind === 'prepare' && pin && pin.view === view && !equalBytes(pin.digest, digest)) return false;
    const k = `${kind}:${view}:${seq}`;
    const prev = this.signed.get(k);
    if (prev !== undefined && prev !== hex(digest)) return false;
    this.signed.set(k, hex(digest));
    if (this.signed.size > 16 * (this.cfg.window + this.cfg.checkpointInterval)) {
      for (const key of this.signed.keys()) {
        if (Number(key.split(':')[2]) > this.stable) break;
        this.signed.delete(key);
      }
    }
    return true;
  }

  private signPhase(
    tag: typeof TAGS.prePrepare | typeof TAGS.prepare | typeof TAGS.commit,
    view: number,
    seq: number,
    digest: Uint8Array,
  ): Uint8Array {
    return signTagged(tag, this.groupId, encode(PhaseBody, { from: this.id, view, seq, digest }), this.key);
  }

  private verifyPhase(
    tag: typeof TAGS.prePrepare | typeof TAGS.prepare | typeof TAGS.commit,
    from: number,
    view: number,
    seq: number,
    digest: Uint8Array,
    signature: Uint8Array,
  ): boolean {
    const node = this.genesis.nodes[from];
    if (!node) return false;
    return verifyTagged(
      tag,
      this.groupId,
      encode(PhaseBody, { from, view, seq, digest }),
      signature,
      node.publicKey,
    );
  }

  // ---------------------------------------------------------------- three phases

  private slot(seq: number): Slot {
    let s = this.slots.get(seq);
    if (!s) {
      s = {
        seq,
        view: this.view,
        digest: null,
        batch: null,
        pp: null,
        prepares: new Map(),
        prepareSigs: new Map(),
        commitSigs: new Map(),
        commits: new Map(),
        prepared: false,
        committed: false,
        myPrepare: null,
        myCommit: null,
        lastSent: this.now,
        parked: null,
        parkedFromNewView: false,
        waitingFor: null,
        refs: [],
        fetchedAt: Number.NEGATIVE_INFINITY,
      };
      this.slots.set(seq, s);
    }
    return s;
  }

  private inWindow(seq: number): boolean {
    return seq > this.stable && seq <= this.stable + this.cfg.window;
  }

  /** `relayed`: from a FETCHED answer (any node may hand over the primary's PRE-PREPARE there). */
  private onPrePrepare(from: number, pp: PrePrepare, relayed = false): void {
    const primary = this.primaryOf(pp.view);
    if (pp.view !== this.view || this.viewChanging || !this.inWindow(pp.seq) || pp.seq <= this.lastExecuted)
      return;
    // Only the primary sends PRE-PREPARE messages (others hand them over in FETCHED answers): another
    // sender's is dropped before its signature is checked.
    if (!relayed && from !== primary) return this.blame(from, 'bad-sender', 'pre-prepare from a non-primary');
    // The very proposal this node accepted already (a retransmission): nothing to do, not even a check.
    const held = this.slots.get(pp.seq)?.pp;
    if (
      held &&
      held.view === pp.view &&
      equalBytes(held.digest, pp.digest) &&
      equalBytes(held.signature, pp.signature)
    )
      return;
    if (!this.verifyPhase(TAGS.prePrepare, primary, pp.view, pp.seq, pp.digest, pp.signature)) {
      // The primary's own, or relayed in a FETCHED answer: a node relays only a PRE-PREPARE it accepted.
      this.punish(
        from,
        from === primary
          ? 'bad signature on its own pre-prepare'
          : 'relayed pre-prepare with a bad signature',
      );
      return this.blame(from, 'bad-signature', 'pre-prepare');
    }
    if (primary === this.id) return;
    const slot = this.slot(pp.seq);
    const pin = slot.pinned;
    if (pin && pin.view === pp.view) {
      // The NEW-VIEW fixed this seq in this view. Another digest is the new primary contradicting its own
      // re-proposal; the same one (sent again, or relayed in a FETCHED answer) is taken under the
      // NEW-VIEW's rules only, as enterView did: under the normal ones its requests read as "already
      // ordered", and a refusal would unpark the re-proposal and blame an honest primary.
      if (!equalBytes(pin.digest, pp.digest))
        this.recordEvidence(
          primary,
          'conflicting-proposal',
          `a pre-prepare for view ${pp.view} seq ${pp.seq} against its own NEW-VIEW re-proposal`,
          {
            kind: 'equivocation',
            node: primary,
            view: pp.view,
            seq: pp.seq,
            digestA: pin.digest,
            signatureA: pin.signature,
            digestB: pp.digest,
            signatureB: pp.signature,
          },
        );
      return;
    }
    if (slot.pp) {
      if (!equalBytes(slot.pp.digest, pp.digest) && slot.view === pp.view)
        this.recordEvidence(
          primary,
          'conflicting-proposal',
          `two pre-prepares for view ${pp.view} seq ${pp.seq}`,
          {
            kind: 'equivocation',
            node: primary,
            view: pp.view,
            seq: pp.seq,
            digestA: slot.pp.digest,
            signatureA: slot.pp.signature,
            digestB: pp.digest,
            signatureB: pp.signature,
          },
        );
      return;
    }
    if (!equalBytes(batchDigestOf(pp.batch), pp.digest)) {
      // The signature covers the digest, not the batch beside it: whoever sent this pairing made it (a
      // node relays only proposals whose batch it checked against the digest).
      this.punish(from, 'a pre-prepare whose batch does not match its signed digest');
      return this.blame(from, 'bad-proposal', 'batch digest mismatch');
    }
    // Every transaction must be signed by the node it names (ones we hold were checked when taken).
    for (const tx of pp.batch.txs)
      if (!this.txs.has(hex(txIdOf(tx))) && !verifyTx(this.genesis, this.groupId, tx)) {
        this.blame(primary, 'bad-tx', 'forged transaction in a proposal');
        return this.blame(primary, 'bad-proposal', 'transaction not signed by the node it names');
      }
    this.tryAccept(slot, pp);
  }

  /** Accepts a proposal once everything it references is held and valid; fetches what is missing. */
  private tryAccept(slot: Slot, pp: PrePrepare, fromNewView = false): void {
    const primary = this.primaryOf(pp.view);
    const b = pp.batch;
    const missingRequests: Uint8Array[] = [];
    /** Keys of `parkedOn` for what is missing (`r` + request id hex, `v` + results digest hex). */
    const lacks: string[] = [];
    const missingResults = new Map<string, Uint8Array>();
    const seen = new Set<string>();
    // Timestamp rule: after every accepted earlier batch, before every accepted later one, not far ahead.
    if (!fromNewView && b.timestamp > this.wall + this.genesis.params.maxClockSkewMs)
      return this.reject(slot, primary, 'batch timestamp ahead of clock');
    // Nor far behind it (PROTOCOL.md rule 2), so a faulty primary cannot hold the batch clock back and run
    // requests after their expiry has passed for everyone else. A stale proposal may also be this node's
    // own lateness (it was cut off, or its event loop fell behind), so it is parked, not refused or blamed:
    // it is accepted once 2f backups have prepared it, since then an honest one found it fresh.
    if (!fromNewView && primary !== this.id && this.staleProposal(slot, pp)) {
      this.park(slot, pp, false, [`p${pp.seq}`]);
      return;
    }
    // Later than every batch already executed, even those whose slots a checkpoint collected.
    if (!fromNewView && b.timestamp <= this.lastExecutedTimestamp)
      return this.reject(slot, primary, 'batch timestamp not after the last executed batch');
    for (const [s, other] of fromNewView ? [] : this.slots) {
      if (!other.batch || s === pp.seq || other.batch.entries.length === 0) continue;
      if (s < pp.seq && other.batch.timestamp >= b.timestamp)
        return this.reject(slot, primary, 'batch timestamp not increasing');
      if (s > pp.seq && other.batch.timestamp <= b.timestamp)
        return this.reject(slot, primary, 'batch timestamp not increasing');
    }
    const keys = this.keysOf(b);
    // A NEW-VIEW re-proposing the very batch this node executed at that seq (above its stable checkpoint):
    // checked when it was first accepted, and its requests and RESULTS may be collected by now (a stable
    // checkpoint drops RESULTS no unexecuted batch uses), so it is prepared again without them.
    const executedHere =
      fromNewView &&
      pp.seq <= this.lastExecuted &&
      equalBytes(this.executedDigests.get(pp.seq) ?? EMPTY_DIGEST, pp.digest);
    for (let i = 0; i < (executedHere ? 0 : b.entries.length); i++) {
      const e = b.entries[i];
      const idHex = keys.ids[i];
      if (seen.has(idHex)) return this.reject(slot, primary, 'request twice in one batch');
      seen.add(idHex);
      if (e.votes.length < this.q) return this.reject(slot, primary, 'entry with fewer than q votes');
      if (fromNewView) {
        // Batches carried by a NEW-VIEW were prepared by a quorum: execution skips duplicates (rule 5).
        if (!this.pool.has(idHex) && !this.archive.has(idHex)) {
          missingRequests.push(e.requestId);
          lacks.push(`r${idHex}`);
        }
      } else {
        const p = this.pool.get(idHex);
        if (!p && this.done.has(e.requestId)) return this.reject(slot, primary, 'request already executed');
        if (!p) {
          missingRequests.push(e.requestId);
          lacks.push(`r${idHex}`);
        } else if (p.state === 'proposed') return this.reject(slot, primary, 'request already ordered');
      }
      for (let j = 0; j < e.votes.length; j++) {
        const v = e.votes[j];
        if (v.node >= this.n) return this.reject(slot, primary, 'vote from unknown node');
        const dHex = keys.votes[i][j];
        const r = this.results.get(dHex);
        if (!r) {
          missingResults.set(dHex, v.results);
          continue;
        }
        const entry = r.signed.batch.entries[v.index];
        if (r.signed.batch.node !== v.node || !entry || !equalBytes(entry.requestId, e.requestId))
          return this.reject(slot, primary, 'vote does not match its results batch');
      }
    }
    if (missingRequests.length > 0 || missingResults.size > 0) {
      for (const d of missingResults.keys()) lacks.push(`v${d}`);
      this.park(slot, pp, fromNewView, lacks);
      if (fromNewView) {
        // The NEW-VIEW orders these at this seq whatever is missing: a new primary must not propose
        // them again in a fresh batch meanwhile (the others would refuse it: "request already ordered").
        for (const idHex of keys.ids) {
          const p = this.pool.get(idHex);
          if (p) p.state = 'proposed';
        }
        this.markTxsProposed(b);
      }
      if (slot.fetchedAt + this.cfg.retransmitMs <= this.now) {
        slot.fetchedAt = this.now;
        const msg: NodeMessage = {
          kind: 'fetch',
          from: this.id,
          requests: missingRequests,
          results: [...missingResults.values()],
          seqs: [],
          prePrepares: [],
        };
        // A new primary re-proposing someone else's prepared batch asks everyone for what it lacks, and so
        // does a backup for a re-proposal: the honest nodes that prepared it hold what it references, and
        // a faulty new primary need not answer.
        this.out.push(
          primary === this.id || fromNewView
            ? { type: 'broadcast', msg }
            : { type: 'send', to: primary, msg },
        );
      }
      return;
    }
    this.unpark(slot);
    if (primary === this.id) {
      // Our own (re-)proposal, now backed by everything it references.
      for (const idHex of keys.ids) {
        const p = this.pool.get(idHex);
        if (p) p.state = 'proposed';
      }
      this.markTxsProposed(b);
      Object.assign(slot, { view: pp.view, digest: pp.digest, batch: b, pp, lastSent: this.now });
      this.holdRefs(slot);
      this.out.push({
        type: 'persist',
        record: { kind: 'prePrepare', view: pp.view, seq: pp.seq, digest: pp.digest },
      });
      this.checkPrepared(slot);
      return;
    }
    if (!this.mayPhaseSign('prepare', pp.view, pp.seq, pp.digest)) return;
    for (const idHex of keys.ids) {
      const p = this.pool.get(idHex);
      if (p) p.state = 'proposed';
    }
    this.markTxsProposed(b);
    Object.assign(slot, { view: pp.view, digest: pp.digest, batch: b, pp, lastSent: this.now });
    this.holdRefs(slot);
    this.lastProposed = Math.max(this.lastProposed, pp.seq);
    this.lastBatchTimestamp = Math.max(this.lastBatchTimestamp, b.timestamp);
    if (primary !== this.id) this.takenBatchTimestamp = Math.max(this.takenBatchTimestamp, b.timestamp);
    this.out.push({
      type: 'persist',
      record: { kind: 'prepare', view: pp.view, seq: pp.seq, digest: pp.digest },
    });
    const signature = this.signPhase(TAGS.prepare, pp.view, pp.seq, pp.digest);
    slot.myPrepare = {
      kind: 'prepare',
      from: this.id,
      view: pp.view,
      seq: pp.seq,
      digest: pp.digest,
      signature,
    };
    slot.prepares.set(this.id, hex(pp.digest));
    slot.prepareSigs.set(this.id, signature);
    this.out.push({ type: 'broadcast', msg: slot.myPrepare });
    this.checkPrepared(slot);
  }

  /**
   * A proposal whose batch timestamp is more than expiryGuardMs behind this node's clock (the furthest an
   * honest primary's clock and message may lag it), and that fewer than 2f backups have prepared yet.
   */
  private staleProposal(slot: Slot, pp: PrePrepare): boolean {
    if (pp.batch.timestamp >= this.wall - this.expiryGuardMs()) return false;
    return this.matching(slot.prepares, hex(pp.digest), this.primaryOf(pp.view)) < this.q - 1;
  }

  private keysOf(b: Batch): BatchKeys {
    let k = this.batchKeys.get(b);
    if (k) return k;
    // Consecutive entries mostly cite the same RESULTS batch of a node: compare with the last one seen.
    const lastBytes: Uint8Array[] = [];
    const lastHex: string[] = [];
    const ids: string[] = [];
    const votes: string[][] = [];
    for (const e of b.entries) {
      ids.push(hex(e.requestId));
      const keys: string[] = [];
      for (const v of e.votes) {
        const prev = lastBytes[v.node];
        // (Equal digests of one decoded proposal are mostly one object: see Reader.takeFixed.)
        if (prev !== undefined && (prev === v.results || equalBytes(prev, v.results)))
          keys.push(lastHex[v.node]);
        else {
          const h = hex(v.results);
          if (v.node < this.n) {
            lastBytes[v.node] = v.results;
            lastHex[v.node] = h;
          }
          keys.push(h);
        }
      }
      votes.push(keys);
    }
    k = { ids, votes };
    this.batchKeys.set(b, k);
    return k;
  }

  /** An accepted proposal pins the RESULTS it references, so no checkpoint collects them before it runs. */
  private holdRefs(slot: Slot): void {
    this.releaseRefs(slot);
    if (!slot.batch) return;
    const keys = this.keysOf(slot.batch).votes;
    const entries = slot.batch.entries;
    for (let i = 0; i < entries.length; i++)
      for (let j = 0; j < entries[i].votes.length; j++) {
        const dHex = keys[i][j];
        const r = this.results.get(dHex);
        if (!r) continue;
        r.open++;
        slot.refs.push(dHex);
      }
  }

  private releaseRefs(slot: Slot): void {
    for (const dHex of slot.refs) {
      const r = this.results.get(dHex);
      if (r) r.open--;
    }
    slot.refs = [];
  }

  private reject(slot: Slot, primary: number, why: string): void {
    this.unpark(slot);
    this.blame(primary, 'bad-proposal', why);
  }

  /**
   * Parked proposals by what they lack: `r` + request id or `v` + results digest (hex), or `p` + seq for a
   * stale one waiting for 2f PREPAREs (staleProposal). A proposal is
   * retried when the last thing it lacked arrives (and on the retransmission timer), not on every
   * arrival: a node behind under overload holds many parked proposals of hundreds of entries each, and
   * retrying them all for every request a forward brought once blocked its event loop for seconds.
   */
  private readonly parkedOn = new Map<string, Set<Slot>>();
  /** Parked proposals that have everything they lacked, to retry. */
  private readonly retryDue = new Set<Slot>();

  private park(slot: Slot, pp: PrePrepare, fromNewView: boolean, lacks: string[]): void {
    this.unpark(slot);
    slot.parked = pp;
    slot.parkedFromNewView = fromNewView;
    slot.waitingFor = new Set(lacks);
    for (const k of slot.waitingFor) {
      let slots = this.parkedOn.get(k);
      if (!slots) {
        slots = new Set();
        this.parkedOn.set(k, slots);
      }
      slots.add(slot);
    }
  }

  private unpark(slot: Slot): void {
    slot.parked = null;
    this.retryDue.delete(slot);
    if (!slot.waitingFor) return;
    for (const k of slot.waitingFor) {
      const slots = this.parkedOn.get(k);
      slots?.delete(slot);
      if (slots?.size === 0) this.parkedOn.delete(k);
    }
    slot.waitingFor = null;
  }

  /** A request (`r` + id) or results batch (`v` + digest) arrived: parked proposals lacking it are told. */
  private arrived(key: string): void {
    const slots = this.parkedOn.get(key);
    if (!slots) return;
    this.parkedOn.delete(key);
    for (const s of slots) {
      s.waitingFor?.delete(key);
      if (s.parked && s.waitingFor?.size === 0) this.retryDue.add(s);
    }
  }

  private retryParked(): void {
    if (this.inRetry) return;
    this.inRetry = true;
    try {
      for (const s of this.retryDue) {
        this.retryDue.delete(s);
        if (!s.parked) continue;
        if (s.seq <= this.lastExecuted)
          this.unpark(s); // executed meanwhile (state transfer)
        else this.tryAccept(s, s.parked, s.parkedFromNewView);
      }
    } finally {
      this.inRetry = false;
    }
  }
  private inRetry = false;

  private onPhase(kind: 'prepare' | 'commit', m: Extract<NodeMessage, { kind: 'prepare' | 'commit' }>): void {
    if (m.from >= this.n) return;
    if (m.seq <= this.lastExecuted) return;
    if (m.view !== this.view || this.viewChanging || !this.inWindow(m.seq)) return;
    if (kind === 'prepare' && m.from === this.primaryOf(m.view))
      return this.blame(m.from, 'bad-sender', 'prepare from primary');
    const existing = this.slots.get(m.seq);
    if (existing && existing.view !== m.view) return; // a slot of another view: never mix the two
    if ((kind === 'prepare' ? existing?.prepares : existing?.commits)?.has(m.from)) return;
    // Past its quorum a slot needs no more votes of that phase: a late PREPARE (prepared already) or
    // COMMIT (committed already) is dropped unchecked, which saves a signature check per node per batch.
    if (kind === 'prepare' ? existing?.prepared : existing?.committed) return;
    if (
      !this.verifyPhase(
        kind === 'prepare' ? TAGS.prepare : TAGS.commit,
        m.from,
        m.view,
        m.seq,
        m.digest,
        m.signature,
      )
    ) {
      // onMessage made sure the sender is the node the message names.
      this.punish(m.from, `bad signature on its own ${kind}`);
      return this.blame(m.from, 'bad-signature', kind);
    }
    const slot = this.slot(m.seq);
    const set = kind === 'prepare' ? slot.prepares : slot.commits;
    set.set(m.from, hex(m.digest));
    if (kind === 'prepare') slot.prepareSigs.set(m.from, m.signature);
    else slot.commitSigs.set(m.from, m.signature);
    // A stale proposal parked here (tryAccept) is taken once 2f backups vouch for it.
    if (
      kind === 'prepare' &&
      slot.parked &&
      slot.waitingFor?.has(`p${m.seq}`) &&
      !this.staleProposal(slot, slot.parked)
    ) {
      this.arrived(`p${m.seq}`);
      this.retryParked();
    }
    this.checkPrepared(slot);
  }

  private matching(set: Map<number, string>, dHex: string, exclude = -1): number {
    let c = 0;
    for (const [node, d] of set) if (d === dHex && node !== exclude) c++;
    return c;
  }

  private checkPrepared(slot: Slot): void {
    if (!slot.digest) return;
    const dHex = hex(slot.digest);
    if (
      !slot.prepared &&
      this.matching(slot.prepares, dHex, this.primaryOf(slot.view)) >= this.q - 1 &&
      this.mayPhaseSign('commit', slot.view, slot.seq, slot.digest)
    ) {
      slot.prepared = true;
      this.recordPrepared(slot, dHex);
      const cert = this.preparedCerts.get(slot.seq);
      this.out.push({
        type: 'persist',
        record: {
          kind: 'commit',
          view: slot.view,
          seq: slot.seq,
          digest: slot.digest,
          body: cert && cert.view === slot.view ? encode(PreparedCertCodec, cert) : undefined,
        },
      });
      const signature = this.signPhase(TAGS.commit, slot.view, slot.seq, slot.digest);
      slot.commitSigs.set(this.id, signature);
      slot.myCommit = {
        kind: 'commit',
        from: this.id,
        view: slot.view,
        seq: slot.seq,
        digest: slot.digest,
        signature,
      };
      slot.commits.set(this.id, dHex);
      // Previewing, this node sends its prepared receipt signature instead (receiptCommits); the COMMIT
      // is kept for the retransmission round and FETCH, and sent at once should the preview not sign.
      if (this.previewIfNext(slot) && this.cfg.receiptCommits) slot.commitHeld = true;
      else this.out.push({ type: 'broadcast', msg: slot.myCommit });
    }
    if (slot.prepared && !slot.committed && this.matching(slot.commits, dHex) >= this.q) {
      slot.committed = true;
      this.executeReady();
    }
  }

  private executeReady(): void {
    // One batch at a time: the caller answers each execute action with an executed event first.
    if (this.awaitingExecution !== 0) return;
    const slot = this.slots.get(this.lastExecuted + 1);
    if (!slot?.committed || !slot.batch || !slot.digest) {
      // Prepared before the batch ahead of it executed: previewed now, so that its receipt signature goes
      // out before it commits here and peers' prepared receipt signatures count as their COMMITs.
      if (slot?.prepared && !slot.committed && this.receipts.get(slot.seq)?.prepared?.msg.view !== slot.view)
        this.previewIfNext(slot);
      return;
    }
    // Resolved once when the batch was previewed (previewIfNext), else now.
    const memo = this.previewedEntries;
    this.previewedEntries = null;
    const { entries, requests, results } =
      memo && memo.batch === slot.batch ? memo.resolved : this.resolveEntries(slot.batch);
    const dHex = hex(slot.digest);
    const sigs = [...slot.commits]
      .filter(([node, d]) => d === dHex && slot.commitSigs.has(node))
      .map(([node]) => ({ node, signature: slot.commitSigs.get(node)! }))
      .sort((a, b) => a.node - b.node);
    // Committed by prepared receipt signatures (receiptCommits), it has fewer than q COMMITs: they count
    // with the COMMITs in its proof for state transfer (commitQuorum), as they did here.
    const rs = this.receipts.get(slot.seq);
    const receiptSigs: ReceiptSignature[] = [];
    let receiptHash: Uint8Array | null = null;
    if (
      rs?.prepared &&
      rs.prepared.msg.view === slot.view &&
      equalBytes(rs.prepared.batchDigest, slot.digest)
    ) {
      receiptHash = rs.prepared.hash;
      receiptSigs.push({ node: this.id, signature: rs.prepared.msg.signature, view: slot.view });
      for (const [node, x] of rs.early)
        if (x.view === slot.view && equalBytes(x.hash, receiptHash))
          receiptSigs.push({ node, signature: x.signature, view: x.view });
      receiptSigs.sort((a, b) => a.node - b.node);
    }
    this.emitExecute(slot.seq, slot.view, slot.digest, slot.batch, entries, requests, results, null, {
      view: slot.view,
      sigs,
      receiptSigs,
      receiptHash,
    });
  }

  /** A held batch's entries with their votes resolved, and the requests and RESULTS it references. */
  private resolveEntries(batch: Batch): {
    entries: ResolvedEntryOut[];
    requests: SignedRequest[];
    results: SignedResults[];
  } {
    const entries: ResolvedEntryOut[] = [];
    const requests: SignedRequest[] = [];
    const results = new Map<string, SignedResults>();
    const keys = this.keysOf(batch);
    // Consecutive entries mostly cite the same RESULTS batch in each vote position (keysOf hands out one
    // string for them): its lookup and insertion are made once per run, not once per vote.
    const lastKey: string[] = [];
    const lastSigned: SignedResults[] = [];
    for (let i = 0; i < batch.entries.length; i++) {
      const e = batch.entries[i];
      const idHex = keys.ids[i];
      const p = this.pool.get(idHex) ?? this.archive.get(idHex);
      if (!p) throw new DropbearError('INTERNAL', 'accepted batch references a request no longer held');
      requests.push(p.sr);
      const voteKeys = keys.votes[i];
      const votes: CountedVote[] = e.votes.map((v, j) => {
        const dHex = voteKeys[j];
        let signed: SignedResults;
        if (lastKey[j] === dHex) signed = lastSigned[j];
        else {
          signed = this.results.get(dHex)!.signed;
          results.set(dHex, signed);
          lastKey[j] = dHex;
          lastSigned[j] = signed;
        }
        const r = signed.batch;
        return { node: v.node, modelDigest: r.modelDigest, result: r.entries[v.index].result };
      });
      entries.push({ requestId: e.requestId, request: p.sr.request, votes });
    }
    return { entries, requests, results: [...results.values()] };
  }

  /**
   * Prepared receipts (ReplicaConfig.preparedReceipts): a batch that prepared here while every batch before
   * it is executed has its receipt fixed already, so this node asks for it now and signs it bound to the
   * view (onPreviewed), instead of after the batch commits and executes.
   */
  private previewIfNext(slot: Slot): boolean {
    if (
      !this.cfg.preparedReceipts ||
      slot.seq !== this.lastExecuted + 1 ||
      this.awaitingExecution !== 0 ||
      this.awaitingPreview !== 0 ||
      this.viewChanging ||
      slot.view !== this.view ||
      this.transferQueue.length > 0 ||
      !slot.prepared ||
      !slot.batch ||
      !slot.digest
    )
      return false;
    const resolved = this.resolveEntries(slot.batch);
    this.previewedEntries = { batch: slot.batch, resolved };
    this.awaitingPreview = slot.seq;
    this.out.push({
      type: 'preview',
      seq: slot.seq,
      digest: slot.digest,
      batch: slot.batch,
      entries: resolved.entries,
    });
    return true;
  }
  private awaitingPreview = 0;
  /** The last previewed batch's resolved entries, for its execution (executeReady). */
  private previewedEntries: { batch: Batch; resolved: ReturnType<Replica['resolveEntries']> } | null = null;

  private onPreviewed(ev: Extract<Event, { type: 'previewed' }>): void {
    if (ev.seq !== this.awaitingPreview)
      throw new DropbearError('INTERNAL', `previewed ${ev.seq}, expected ${this.awaitingPreview}`);
    this.awaitingPreview = 0;
    const slot = this.slots.get(ev.seq);
    // Answered in the same step as the action, so nothing has changed; checked all the same.
    if (!slot?.prepared || !slot.digest || slot.view !== this.view || this.viewChanging) {
      if (slot?.commitHeld && slot.myCommit) {
        slot.commitHeld = false;
        this.out.push({ type: 'broadcast', msg: slot.myCommit });
      }
      return;
    }
    if (ev.receipt.seq !== ev.seq || !equalBytes(ev.receipt.batchDigest, slot.digest))
      throw new DropbearError('INTERNAL', `preview of batch ${ev.seq} gave a receipt for another batch`);
    const hash = receiptHashOf(ev.receipt);
    const signature = signReceiptAs(this.groupId, ev.receipt, hash, slot.view, this.key);
    const rs = this.receiptSlot(ev.seq);
    const msg = {
      kind: 'receiptSig' as const,
      from: this.id,
      seq: ev.seq,
      receiptHash: hash,
      signature,
      view: slot.view,
    };
    rs.prepared = { hash, batchDigest: slot.digest, msg };
    // The caller holds it behind the COMMIT's record (it says this node prepared the batch: PROTOCOL.md,
    // durability), whether or not the COMMIT itself is sent.
    this.out.push({ type: 'broadcast', msg });
    // Peers' prepared receipt signatures that came first: those over this receipt count as COMMITs now.
    if (rs.pending.length > 0) {
      rs.pending = rs.pending.filter(
        (p) => !(p.view !== null && this.commitByReceipt(ev.seq, p.from, p.receiptHash, p.signature, p.view)),
      );
      this.checkPrepared(slot);
    }
  }

  /**
   * A peer's prepared receipt signature as its COMMIT (receiptCommits): it counts when it is for the view
   * of this node's prepared slot and over the receipt this node previewed for it (whose seq and batch
   * digest are the slot's). Checked once here and kept (`early`) for the receipt's quorum. False when it
   * does not count this way (it is then only a receipt signature, handled as before).
   */
  private commitByReceipt(
    seq: number,
    from: number,
    receiptHash: Uint8Array,
    signature: Uint8Array,
    view: number,
  ): boolean {
    const slot = this.slots.get(seq);
    const rs = this.receipts.get(seq);
    if (!slot?.prepared || slot.committed || !slot.digest || slot.view !== view || this.viewChanging)
      return false;
    if (!rs?.prepared || rs.prepared.msg.view !== view || !equalBytes(rs.prepared.hash, receiptHash))
      return false;
    if (slot.commits.has(from) || rs.early.has(from)) return false;
    if (
      !verifyReceiptSig(
        this.groupId,
        new Uint8Array(0), // a prepared signature covers the receipt's hash, not its bytes
        receiptHash,
        { signature, view },
        this.genesis.nodes[from].publicKey,
      )
    ) {
      // Its sender's own signature (from a RECEIPT-SIG it sent, checked now or held until now).
      this.punish(from, 'bad signature on its own receipt signature');
      this.blame(from, 'bad-signature', 'receipt');
      return true; // checked and refused: not kept for the receipt either
    }
    rs.early.set(from, { hash: receiptHash, signature, view });
    slot.commits.set(from, hex(slot.digest));
    return true;
  }

  private awaitingExecution = 0;
  private executing: {
    seq: number;
    view: number;
    digest: Uint8Array;
    batch: Batch;
    transfer: StateBatch | null;
  } | null = null;

  private emitExecute(
    seq: number,
    view: number,
    digest: Uint8Array,
    batch: Batch,
    entries: ResolvedEntryOut[],
    requests: SignedRequest[],
    results: SignedResults[],
    transfer: StateBatch | null,
    commitProof: CommitProof | null = null,
  ): void {
    this.lastExecuted = seq;
    this.executing = { seq, view, digest, batch, transfer };
    this.out.push({
      type: 'execute',
      seq,
      view,
      digest,
      batch,
      entries,
      checkpoint: seq % this.cfg.checkpointInterval === 0,
      requests,
      results,
      commitProof:
        commitProof ??
        (transfer && receiptQuorum(transfer.receiptSigs, this.q) === null
          ? {
              view: transfer.view,
              sigs: transfer.commitSigs,
              receiptSigs: transfer.receiptSigs,
              receiptHash: receiptHashOf(transfer.receipt),
            }
          : null),
    });
    // The caller answers with an `executed` event before anything else reaches this replica.
    this.awaitingExecution = seq;
  }

  // ---------------------------------------------------------------- execution, receipts, checkpoints

  private onExecuted(ev: Extract<Event, { type: 'executed' }>): void {
    if (ev.seq !== this.awaitingExecution)
      throw new DropbearError('INTERNAL', `executed ${ev.seq}, expected ${this.awaitingExecution}`);
    this.awaitingExecution = 0;
    this.lastProgressAt = this.now;
    const slot = this.executing!;
    this.executedRate.add(this.now, slot.batch?.entries.length ?? 0);
    this.executing = null;
    const executedSlot = this.slots.get(ev.seq);
    if (executedSlot) this.releaseRefs(executedSlot);
    const receiptHash = receiptHashOf(ev.receipt);
    const certifiedTransfer =
      slot.transfer !== null && receiptQuorum(slot.transfer.receiptSigs, this.q) !== null;
    if (certifiedTransfer && !equalBytes(receiptHash, receiptHashOf(slot.transfer!.receipt)))
      throw new DropbearError(
        'STATE_TRANSFER_MISMATCH',
        `re-executing batch ${ev.seq} gave another receipt than q nodes signed`,
      );
    this.lastReceiptHash = receiptHash;
    this.lastProposed = Math.max(this.lastProposed, ev.seq);
    const ownBefore = this.models[this.id];
    // The ledger's counts when the caller gives them (the host does), else the same rule applied here.
    const after =
      ev.modelVersions &&
      ev.deposits !== undefined &&
      ev.fees &&
      ev.feeVersions &&
      ev.withdrawals &&
      ev.refunds
        ? null
        : this.versionsAfter(slot.batch!);
    this.modelVersions = [...(ev.modelVersions ?? after!.modelVersions)];
    this.deposits = ev.deposits ?? after!.deposits;
    this.fees = [...(ev.fees ?? after!.fees)];
    this.feeVersions = [...(ev.feeVersions ?? after!.feeVersions)];
    this.withdrawals = [...(ev.withdrawals ?? after!.withdrawals)];
    for (const [k, v] of ev.refunds ?? after!.refunds) this.refunds.set(k, v);
    this.models = ev.models;
    const ownChanged = !equalBytes(ownBefore, this.models[this.id]);
    if (ownChanged) {
      this.retiredModels.add(hex(ownBefore));
      this.retiredModels.delete(hex(this.models[this.id]));
    }
    this.settleTxs(slot.batch!);
    this.executedDigests.set(ev.seq, slot.digest!);
    this.lastExecutedTimestamp = Math.max(this.lastExecutedTimestamp, slot.batch!.timestamp);
    this.lastBatchTimestamp = Math.max(this.lastBatchTimestamp, slot.batch!.timestamp);
    this.takenBatchTimestamp = Math.max(this.takenBatchTimestamp, slot.batch!.timestamp);
    if (slot.view === this.view && !this.viewChanging) this.vcAttempts = 0;
    const requeued = new Set(ev.requeued.map(hex));
    const votesToDrop: string[] = [];
    const ids = this.keysOf(slot.batch!).ids;
    for (let i = 0; i < ids.length; i++) {
      const idHex = ids[i];
      const p = this.pool.get(idHex);
      if (requeued.has(idHex)) {
        if (p) {
          p.state = 'pending';
          p.ownSkipped = false; // inferred again just below when its own vote is missing
        }
        // Votes from a replaced model no longer count: forget them so new ones are taken.
        const m = this.votes.get(idHex);
        if (m)
          for (const [node, v] of m)
            if (!equalBytes(this.results.get(v.digestHex)!.signed.batch.modelDigest, this.models[node]))
              this.dropVote(m, node, idHex);
        if (p && !m?.has(this.id)) this.inferQueue.push({ requestId: p.id, request: p.sr });
        this.updateReadiness(idHex);
        continue;
      }
      // An id already in (a NEW-VIEW batch repeating an executed request) keeps its first timestamp.
      this.done.add(slot.batch!.entries[i].requestId, p?.sr.request.timestamp ?? slot.batch!.timestamp);
      this.pool.delete(idHex);
      if (p) {
        this.archive.set(idHex, { sr: p.sr, seq: ev.seq });
        this.holdFee(p.sr, -1);
      }
      this.quorum.delete(idHex);
      this.ready.delete(idHex);
      votesToDrop.push(idHex);
    }
    for (const idHex of votesToDrop) {
      this.ownPast.delete(idHex);
      const m = this.votes.get(idHex);
      if (!m) continue;
      for (const v of m.values()) {
        const r = this.results.get(v.digestHex);
        if (r) r.open--;
      }
      this.votes.delete(idHex);
    }
    // From here on only votes of the current models count: re-infer what this node voted with the old one.
    if (ownChanged) this.reinferStale();
    const expiry = this.genesis.params.expiryMs;
    // In expiry order (request timestamp, then id): each id goes as soon as it can no longer be replayed.
    const at = slot.batch!.timestamp;
    this.done.expire((ts) => ts + expiry < at);
    const rs = this.signReceipt(ev.receipt);
    // A transferred batch comes with q signatures already checked against this very receipt.
    if (slot.transfer) {
      // Signatures over the same receipt count (checked when the batch arrived, or checked now).
      if (certifiedTransfer) {
        for (const x of slot.transfer.receiptSigs)
          if (!rs.sigs.has(x.node)) rs.sigs.set(x.node, { signature: x.signature, view: x.view });
      } else
        for (const x of slot.transfer.receiptSigs)
          this.addReceiptSig(rs, x.node, receiptHashOf(slot.transfer.receipt), x.signature, x.view, true);
    }
    this.checkCertified(ev.seq, rs);
    if (ev.seq % this.cfg.checkpointInterval === 0) {
      if (!ev.stateDigest) throw new DropbearError('INTERNAL', `no state digest for checkpoint ${ev.seq}`);
      const cp = this.checkpointSlot(ev.seq);
      cp.mine = ev.stateDigest;
      cp.votes.set(this.id, hex(ev.stateDigest));
      const sig = signTagged(
        TAGS.checkpoint,
        this.groupId,
        encode(CheckpointBody, { from: this.id, seq: ev.seq, stateDigest: ev.stateDigest }),
        this.key,
      );
      cp.sigs.set(this.id, sig);
      this.out.push({
        type: 'broadcast',
        msg: { kind: 'checkpoint', from: this.id, seq: ev.seq, stateDigest: ev.stateDigest, signature: sig },
      });
      this.checkStable(ev.seq);
    }
    if (this.transferQueue.length > 0) this.executeTransferred();
    else {
      if (!this.catchingUp) this.finishCatchUp();
      this.executeReady();
    }
  }

  private resumeReceipts: Receipt[] = [];
  /** Seqs restorePins pinned, accepted at the first `catchUp` step. */
  private restoredPins: number[] = [];

  /**
   * Receipt: sign, broadcast, and match the signatures that arrived early. A prepared receipt signature
   * this node sent with its COMMIT for this very receipt serves instead, if made in the current view (one
   * from an earlier view could leave the batch without a quorum of one kind; the retransmission round
   * replaces it with a plain one should the batch stay uncertified).
   */
  private signReceipt(receipt: Receipt): ReceiptSlot {
    const seq = receipt.seq;
    const rs = this.receiptSlot(seq);
    rs.receipt = receipt;
    rs.bytes = encode(ReceiptCodec, receipt);
    rs.hash = sha256(rs.bytes);
    const prepared = rs.prepared;
    rs.prepared = null;
    if (
      prepared &&
      equalBytes(prepared.batchDigest, receipt.batchDigest) &&
      !equalBytes(prepared.hash, rs.hash)
    )
      throw new DropbearError('INTERNAL', `batch ${seq} executed to another receipt than its preview`);
    // Prepared signatures checked as COMMITs: theirs if over the receipt executed (else the batch
    // previewed was replaced in a view change, and they are for a receipt that never was).
    for (const [node, x] of rs.early)
      if (!rs.sigs.has(node) && equalBytes(x.hash, rs.hash))
        rs.sigs.set(node, { signature: x.signature, view: x.view });
    rs.early.clear();
    if (!rs.sigs.has(this.id)) this.uncertified++;
    if (
      prepared &&
      equalBytes(prepared.hash, rs.hash) &&
      prepared.msg.view === this.view &&
      !this.viewChanging
    ) {
      rs.mine = prepared.msg;
      rs.sigs.set(this.id, { signature: prepared.msg.signature, view: prepared.msg.view });
      this.myReceiptSigs.set(seq, { msg: rs.mine, bytes: rs.bytes });
    } else this.out.push({ type: 'broadcast', msg: this.plainReceiptSig(seq, rs.bytes, rs.hash) });
    rs.lastSent = this.now;
    // Kept past the checkpoint (bounded): a peer that missed our signature can still certify the batch.
    if (this.myReceiptSigs.size > 4 * this.cfg.window + this.cfg.checkpointInterval)
      this.myReceiptSigs.delete(this.myReceiptSigs.keys().next().value as number);
    // Checked one at a time, only until they make a quorum (the rest would be checked for nothing).
    for (const p of rs.pending) {
      if (rs.certified) break;
      this.addReceiptSig(rs, p.from, p.receiptHash, p.signature, p.view);
      this.checkCertified(seq, rs);
    }
    rs.pending = [];
    this.checkCertified(seq, rs);
    return rs;
  }

  /**
   * Makes this node's plain receipt signature for executed batch `seq` its own, in the batch's receipt
   * slot while that is held and among those kept for peers that missed it: when it signs after executing,
   * in place of a prepared one while the batch stays uncertified (see signReceipt), and when a peer asks
   * about the batch (resendOwn). Returns it; signs nothing when this node's signature is plain already.
   */
  private plainReceiptSig(
    seq: number,
    bytes: Uint8Array,
    receiptHash: Uint8Array,
  ): Extract<NodeMessage, { kind: 'receiptSig' }> {
    const rs = this.receipts.get(seq);
    const current = rs ? rs.mine : this.myReceiptSigs.get(seq)?.msg;
    if (current?.view === null) return current;
    const signature = signTagged(TAGS.receipt, this.groupId, bytes, this.key);
    const msg = { kind: 'receiptSig' as const, from: this.id, seq, receiptHash, signature, view: null };
    if (rs) {
      rs.sigs.set(this.id, { signature, view: null });
      rs.mine = msg;
    }
    this.myReceiptSigs.set(seq, { msg, bytes });
    return msg;
  }

  private receiptSlot(seq: number): ReceiptSlot {
    let r = this.receipts.get(seq);
    if (!r) {
      r = {
        receipt: null,
        bytes: null,
        hash: null,
        sigs: new Map(),
        pending: [],
        mine: null,
        early: new Map(),
        prepared: null,
        certified: false,
        lastSent: this.now,
      };
      this.receipts.set(seq, r);
    }
    return r;
  }

  /**
   * `from`'s signature over the receipt. `relayed`: handed over by another node (state transfer), where a
   * bad one is only counted; otherwise `from` sent it itself (a RECEIPT-SIG, checked now or held until the
   * receipt was known).
   */
  private addReceiptSig(
    rs: ReceiptSlot,
    from: number,
    receiptHash: Uint8Array,
    signature: Uint8Array,
    view: number | null,
    relayed = false,
  ): void {
    if (!rs.bytes || !rs.hash) return;
    // One signature per node; a plain one replaces a prepared one (it combines with any quorum).
    const had = rs.sigs.get(from);
    if (had && (had.view === null || view !== null)) return;
    if (!equalBytes(receiptHash, rs.hash)) return; // a different receipt: not ours to count
    if (
      !verifyReceiptSig(
        this.groupId,
        rs.bytes,
        rs.hash,
        { signature, view },
        this.genesis.nodes[from].publicKey,
      )
    ) {
      if (!relayed) this.punish(from, 'bad signature on its own receipt signature');
      return this.blame(from, 'bad-signature', 'receipt');
    }
    rs.sigs.set(from, { signature, view });
  }

  private onReceiptSig(m: Extract<NodeMessage, { kind: 'receiptSig' }>): void {
    if (m.from >= this.n) return;
    // A plain signature says its sender executed the batch, a prepared one only the batch before it.
    const executed = m.view === null ? m.seq : m.seq - 1;
    if (executed > (this.executedBy.get(m.from) ?? 0)) this.executedBy.set(m.from, executed);
    if (m.seq <= this.stable && !this.receipts.has(m.seq)) return;
    if (m.seq > this.lastExecuted + 2 * this.cfg.window) return;
    const rs = this.receiptSlot(m.seq);
    if (rs.certified) return;
    if (!rs.receipt) {
      if (m.view !== null && this.commitByReceipt(m.seq, m.from, m.receiptHash, m.signature, m.view)) {
        const slot = this.slots.get(m.seq);
        if (slot) this.checkPrepared(slot);
        return;
      }
      // Unchecked until the receipt is known: one per sender (a plain one, or the highest view's), so that
      // a faulty peer's junk cannot crowd out the others' signatures.
      const sig = { from: m.from, receiptHash: m.receiptHash, signature: m.signature, view: m.view };
      const i = rs.pending.findIndex((p) => p.from === m.from);
      if (i < 0) rs.pending.push(sig);
      else {
        const old = rs.pending[i].view;
        if (old !== null && (m.view === null || m.view > old)) rs.pending[i] = sig;
      }
      if (this.viewChanging && m.view !== null && m.seq > this.committedElsewhere) {
        let sameView = 0;
        for (const p of rs.pending) if (p.view === m.view) sameView++;
        if (sameView >= this.q) this.committedElsewhere = m.seq;
      }
      return;
    }
    this.addReceiptSig(rs, m.from, m.receiptHash, m.signature, m.view);
    this.checkCertified(m.seq, rs);
  }

  private checkCertified(seq: number, rs: ReceiptSlot): void {
    if (rs.certified || !rs.hash || rs.sigs.size < this.q) return;
    const signatures = receiptQuorum(
      [...rs.sigs].map(([node, x]) => ({ node, signature: x.signature, view: x.view })),
      this.q,
    );
    if (!signatures) return;
    rs.certified = true;
    this.uncertified--;
    this.out.push({ type: 'certified', seq, receiptHash: rs.hash, signatures });
  }

  private checkpointSlot(seq: number) {
    let c = this.checkpoints.get(seq);
    if (!c) {
      c = { mine: null, votes: new Map(), sigs: new Map() };
      this.checkpoints.set(seq, c);
    }
    return c;
  }

  /**
   * `relayer`: the peer that handed over this signature in its checkpoint proof (takeCheckpointProof); a
   * node hands over only a proof whose signatures it checked (checkStable) or read back from its own disk.
   */
  private onCheckpoint(m: Extract<NodeMessage, { kind: 'checkpoint' }>, relayer?: number): void {
    if (m.from >= this.n || m.seq <= this.stable || m.seq % this.cfg.checkpointInterval !== 0) return;
    if (m.seq > this.lastExecuted + 64 * this.cfg.checkpointInterval) return;
    const cp = this.checkpointSlot(m.seq);
    if (cp.votes.has(m.from)) return;
    const body = encode(CheckpointBody, { from: m.from, seq: m.seq, stateDigest: m.stateDigest });
    if (
      !verifyTagged(TAGS.checkpoint, this.groupId, body, m.signature, this.genesis.nodes[m.from].publicKey)
    ) {
      if (relayer === undefined) this.punish(m.from, 'bad signature on its own checkpoint');
      else this.punish(relayer, 'a checkpoint proof with a bad signature');
      return this.blame(relayer ?? m.from, 'bad-signature', 'checkpoint');
    }
    cp.votes.set(m.from, hex(m.stateDigest));
    cp.sigs.set(m.from, m.signature);
    this.checkStable(m.seq);
    // f+1 nodes (one of them honest) executed a whole checkpoint interval beyond us: catch up.
    if (
      m.seq >= this.lastExecuted + this.cfg.checkpointInterval &&
      this.matching(cp.votes, hex(m.stateDigest)) >= this.f + 1
    )
      this.startCatchUp();
  }

  private checkStable(seq: number): void {
    const cp = this.checkpoints.get(seq);
    if (!cp?.mine || seq <= this.stable) return;
    const mineHex = hex(cp.mine);
    if (this.matching(cp.votes, mineHex) < this.q) return;
    this.stable = seq;
    this.stableProof = {
      seq,
      digest: cp.mine,
      sigs: [...cp.votes]
        .filter(([, d]) => d === mineHex)
        .map(([node]) => ({ node, signature: cp.sigs.get(node)! }))
        .sort((a, b) => a.node - b.node),
    };
    this.out.push({
      type: 'persist',
      record: {
        kind: 'checkpoint',
        // The view this node is in, unless it is changing view (then its VIEW-CHANGE record, kept, says
        // where it stands): the ledger drops the records of the batches up to this checkpoint (SqliteLedger
        // persist), and with them the views they named; restore takes the view from this record instead.
        ...(this.viewChanging ? {} : { view: this.view }),
        seq,
        digest: cp.mine,
        body: encode(CheckpointProof, this.stableProof.sigs),
      },
    });
    for (const s of this.executedDigests.keys()) if (s <= seq) this.executedDigests.delete(s);
    for (const s of this.preparedCerts.keys()) if (s <= seq) this.preparedCerts.delete(s);
    // Garbage collection below the low watermark: protocol messages, finished results, old checkpoints.
    // A slot executed before a NEW-VIEW re-proposed it pinned its RESULTS again (holdRefs): released here,
    // or they stayed for the node's life (until 2026-12-07, a window's RESULTS per such view change).
    for (const [s, slot] of this.slots)
      if (s <= seq) {
        this.releaseRefs(slot);
        this.unpark(slot);
        this.slots.delete(s);
      }
    for (const [s, r] of this.receipts) if (s <= seq && r.certified) this.receipts.delete(s);
    for (const s of this.checkpoints.keys()) if (s < seq) this.checkpoints.delete(s);
    for (const [id, a] of this.archive) if (a.seq <= seq) this.archive.delete(id);
    const spent: Uint8Array[] = [];
    for (const [d, r] of this.results)
      if (r.open <= 0) {
        this.results.delete(d);
        if (r.signed.batch.node === this.id) spent.push(r.digest);
      }
    if (spent.length > 0) this.out.push({ type: 'dropResults', digests: spent });
    while (this.ownResults.length > 0 && !this.results.has(this.ownResults[0])) this.ownResults.shift();
    this.maybePropose();
  }

  // ---------------------------------------------------------------- fetch, retransmission

  private onFetch(m: Extract<NodeMessage, { kind: 'fetch' }>): void {
    if (m.from >= this.n || m.from === this.id) return;
    // Within the peer's budget (FETCH_SERVE_BYTES_PER_SEC): over it, nothing is answered.
    const bucket = this.fetchBudgets.get(m.from) ?? { tokens: FETCH_SERVE_BURST_BYTES, at: this.now };
    this.fetchBudgets.set(m.from, bucket);
    bucket.tokens = Math.min(
      FETCH_SERVE_BURST_BYTES,
      bucket.tokens + ((this.now - bucket.at) * FETCH_SERVE_BYTES_PER_SEC) / 1000,
    );
    bucket.at = this.now;
    if (bucket.tokens <= 0) return;
    // Each thing once, and no more than FETCH_ANSWER_BYTES in all (estimated): one FETCH naming a large
    // request 65,536 times asked for a 64 GiB answer, whose encoding stopped the node. What is left out
    // the peer asks for again at its next retransmission.
    let budget = FETCH_ANSWER_BYTES;
    const requests: SignedRequest[] = [];
    const seen = new Set<string>();
    for (const id of m.requests) {
      if (budget <= 0) break;
      const idHex = hex(id);
      if (seen.has(idHex)) continue;
      seen.add(idHex);
      const sr = this.pool.get(idHex)?.sr ?? this.archive.get(idHex)?.sr;
      if (!sr) continue;
      requests.push(sr);
      budget -= sr.input.length + 512;
    }
    const results: SignedResults[] = [];
    for (const d of m.results) {
      if (budget <= 0) break;
      const dHex = hex(d);
      if (seen.has(dHex)) continue;
      seen.add(dHex);
      const r = this.results.get(dHex);
      if (!r) continue;
      results.push(r.signed);
      budget -= r.signed.batch.entries.length * 128 + 256;
    }
    const prePrepares: PrePrepare[] = [];
    const seqs = new Set<number>();
    for (const s of m.prePrepares) {
      if (budget <= 0) break;
      if (seqs.has(s)) continue;
      seqs.add(s);
      const slot = this.slots.get(s);
      if (!slot?.pp) continue;
      prePrepares.push(slot.pp);
      for (const e of slot.pp.batch.entries) budget -= 48 + 48 * e.votes.length;
    }
    if (requests.length + results.length + prePrepares.length > 0)
      this.out.push({ type: 'send', to: m.from, msg: { kind: 'fetched', requests, results, prePrepares } });
    const resend = new Set(m.seqs);
    for (const seq of resend) this.resendOwn(m.from, seq);
    // What the answer was estimated at (the bucket may go below zero by one answer), and ~256 bytes for each
    // of the (up to three) own messages sent again per seq.
    bucket.tokens -= FETCH_ANSWER_BYTES - budget + 768 * resend.size;
  }

  /** Per peer, its FETCH budget (onFetch): estimated bytes left, and when last refilled (timer clock). */
  private readonly fetchBudgets = new Map<number, { tokens: number; at: number }>();

  private onFetched(from: number, m: Extract<NodeMessage, { kind: 'fetched' }>): void {
    // Relayed (client requests, any node's RESULTS, the primary's PRE-PREPAREs): a node answers only with
    // what it checked or made, so a bad signature drops the sender. Once it has, the rest is not checked.
    for (const sr of m.requests) {
      if (this.punished.has(from)) return;
      this.onPeerRequest(from, sr);
    }
    for (const r of m.results) {
      if (this.punished.has(from)) return;
      this.onResults(from, r, true);
    }
    for (const pp of m.prePrepares) {
      if (this.punished.has(from)) return;
      this.onPrePrepare(from, pp, true);
    }
  }

  /**
   * A peer asked about a batch (it lacks messages for it): send it our own signed messages for that batch.
   * Only an explicit FETCH triggers this, never a repeated message, so two nodes cannot ping-pong.
   */
  private resendOwn(peer: number, seq: number): void {
    const slot = this.slots.get(seq);
    if (slot?.myPrepare) this.out.push({ type: 'send', to: peer, msg: slot.myPrepare });
    if (slot?.myCommit) this.out.push({ type: 'send', to: peer, msg: slot.myCommit });
    const mine = this.myReceiptSigs.get(seq);
    // Plain: the peer may hold prepared signatures of two views that make no quorum together (a batch
    // prepared again in a new view), and a plain one makes a quorum with either. Signed once per batch.
    if (mine)
      this.out.push({
        type: 'send',
        to: peer,
        msg: this.plainReceiptSig(seq, mine.bytes, mine.msg.receiptHash),
      });
  }

  /**
   * The sent-to-all requests whose late-forward time has come: those still pending without this node's own
   * vote go to the peers that have not voted on them (see lateForwardMs). Once this node has voted, its
   * RESULTS told every peer of the request, and a peer that lacks it fetches it from a voter.
   */
  private lateForwards(): void {
    const toPeer: SignedRequest[][] = this.genesis.nodes.map(() => []);
    for (const idHex of this.lateForward.due(this.now)) {
      const p = this.pool.get(idHex);
      const voted = this.votes.get(idHex);
      if (p?.state !== 'pending' || voted?.has(this.id)) continue;
      for (let peer = 0; peer < toPeer.length; peer++)
        if (peer !== this.id && !voted?.has(peer)) toPeer[peer].push(p.sr);
    }
    for (let peer = 0; peer < toPeer.length; peer++)
      if (toPeer[peer].length > 0)
        this.out.push({ type: 'send', to: peer, msg: { kind: 'forward', requests: toPeer[peer] } });
  }

  private onTick(): void {
    // The tracked request may have expired since the last step (then the timer moves on, see
    // refreshRequestTimer), and expired ones go in time.
    this.sweepExpired();
    this.refreshRequestTimer();
    if (this.lateForward.nextAt <= this.now) this.lateForwards();
    if (this.forwardDeadline <= this.now) this.flushForward();
    if (this.resultsDeadline <= this.now) this.flushInferred();
    if (this.viewTimerDeadline() <= this.now) this.onViewTimer();
    if (this.lastRetransmit + this.cfg.retransmitMs <= this.now) {
      this.lastRetransmit = this.now;
      this.retransmit();
    }
  }

  private retransmit(): void {
    const cutoff = this.now - this.cfg.retransmitMs;
    // A hole: later batches are known but the next one to execute is not (its proposal went by while we
    // were away or out of window, and peers may have collected it): fetch the executed batches instead.
    if (!this.catchingUp && this.isBehind()) this.catchingUp = true;
    this.executedAtLastRetransmit = this.lastExecuted;
    if (this.catchingUp) this.startCatchUp();
    // Our VIEW-CHANGE again, with exponential backoff (retransmitMs, doubling, at most half the view-change
    // timeout): it carries the prepared certificates since the last stable checkpoint (hundreds of KB at
    // n = 7 under load), and resending it every retransmitMs to every peer kept a 7-node group busy
    // encoding and decoding copies instead of forming the new view.
    if (this.viewChanging && this.myViewChange?.body.newView === this.view && this.vcResendAt <= this.now) {
      this.out.push({ type: 'broadcast', msg: { kind: 'viewChange', vc: this.myViewChange } });
      this.vcBackoff = Math.min(
        2 * this.vcBackoff,
        Math.max(this.cfg.retransmitMs, this.currentTimeout() / 2),
      );
      this.vcResendAt = this.now + this.vcBackoff;
    }
    // Batches stuck in ordering or certification: re-send our part and ask every peer for theirs.
    const stuck: number[] = [];
    const lacking: number[] = [];
    for (const slot of this.slots.values()) {
      const gap = slot.resendGap ?? this.cfg.retransmitMs;
      if (slot.seq <= this.lastExecuted || slot.lastSent + gap > this.now) continue;
      slot.resendGap = Math.min(2 * gap, 8 * this.cfg.retransmitMs);
      if (slot.parked) {
        slot.fetchedAt = Number.NEGATIVE_INFINITY;
        this.tryAccept(slot, slot.parked, slot.parkedFromNewView);
      }
      slot.lastSent = this.now;
      stuck.push(slot.seq);
      const dHex = slot.digest === null ? null : hex(slot.digest);
      // Its proposal is asked for when missing, or when peers voted for another digest (an equivocating
      // primary: the other signed proposal is the evidence that convicts it).
      if (!slot.pp || this.votedOtherDigest(slot)) lacking.push(slot.seq);
      if (slot.pp && this.primaryOf(slot.view) === this.id)
        this.resend({ kind: 'prePrepare', pp: slot.pp }, (p) => this.holdsProposal(slot, dHex, p));
      if (slot.myPrepare) this.resend(slot.myPrepare, (p) => this.peerPrepared(slot, dHex, p));
      if (slot.myCommit) this.resend(slot.myCommit, (p) => (this.executedBy.get(p) ?? 0) >= slot.seq);
    }
    for (const [seq, rs] of this.receipts) {
      if (rs.certified || !rs.mine || rs.lastSent > cutoff) continue;
      rs.lastSent = this.now;
      stuck.push(seq);
      // Still uncertified: a plain signature combines with any quorum, a prepared one may not.
      if (rs.bytes && rs.hash) this.plainReceiptSig(seq, rs.bytes, rs.hash);
      this.out.push({ type: 'broadcast', msg: rs.mine });
      this.checkCertified(seq, rs);
    }
    // Votes for requests we never received (their forward was lost): ask one of the voters.
    const ask = new Map<number, Uint8Array[]>();
    const orphanTtl = this.genesis.params.expiryMs + this.expiryGuardMs();
    for (const [idHex, since] of this.orphans) {
      if (since > cutoff) continue;
      const voters = this.votes.get(idHex);
      if (this.pool.has(idHex) || !voters || voters.size === 0 || this.doneHex(idHex)) {
        this.settleOrphan(idHex);
        continue;
      }
      // Never came, and must have expired by now (a voter saw it within the skew bound of its timestamp):
      // it can no longer execute, so its votes go.
      if ((this.orphanSince.get(idHex) ?? this.now) + orphanTtl < this.now) {
        this.forgetVotes(idHex);
        continue;
      }
      this.orphans.set(idHex, this.now);
      const list = [...voters.keys()].filter((x) => x !== this.id);
      if (list.length === 0) continue;
      const to = list[Math.floor(this.now / this.cfg.retransmitMs) % list.length];
      const ids = ask.get(to) ?? [];
      ids.push(new Uint8Array(Buffer.from(idHex, 'hex')));
      ask.set(to, ids);
    }
    for (const [to, ids] of ask)
      this.out.push({
        type: 'send',
        to,
        msg: {
          kind: 'fetch',
          from: this.id,
          requests: ids.slice(0, 4096),
          results: [],
          seqs: [],
          prePrepares: [],
        },
      });
    if (stuck.length > 0)
      this.out.push({
        type: 'broadcast',
        msg: {
          kind: 'fetch',
          from: this.id,
          requests: [],
          results: [],
          seqs: stuck.slice(0, 1024),
          prePrepares: lacking.slice(0, 1024),
        },
      });
    const primary = this.primaryOf(this.view);
    // Transactions submitted here and not yet in an accepted batch: spread again (a copy may have been lost).
    // Those taken from a peer: to the primary again (its copy may have been lost, or a view change made
    // another node primary), as their timer runs here (onPeerTx).
    for (const t of this.txs.values()) {
      if (t.state !== 'pending' || t.sentAt + t.backoff > this.now) continue;
      if (!t.origin && primary === this.id) continue;
      t.sentAt = this.now;
      t.backoff = Math.min(t.backoff * 2, 64 * this.cfg.retransmitMs);
      const msg: NodeMessage = { kind: 'tx', tx: t.tx };
      this.out.push(t.origin ? { type: 'broadcast', msg } : { type: 'send', to: primary, msg });
    }
    // Our own results batches again, with backoff, while they hold votes: during a view change to every
    // peer; otherwise only to the nodes that may still need them, for requests still waiting for a
    // proposal: the primary (it proposes with our vote) and the peers we hold no vote from (they may lack
    // the request, and our vote is what makes them fetch it). A peer that voted holds the request; once
    // a request is proposed its votes are fixed and a node that lacks a referenced batch fetches it from
    // the primary. (Sent to every peer until execution, these were ~a third of the RESULTS messages a node
    // received in the e2e probe at 32 images in flight, nearly all dropped as duplicates.) A new view
    // resets the backoff (enterView), so the new primary gets our pending votes at once.
    for (const d of this.ownResults) {
      const r = this.results.get(d);
      if (!r || r.open <= 0 || r.sentAt + r.backoff > this.now) continue;
      r.sentAt = this.now;
      r.backoff = Math.min(r.backoff * 2, 64 * this.cfg.retransmitMs);
      const msg: NodeMessage = { kind: 'results', signed: r.signed };
      if (this.viewChanging) {
        this.out.push({ type: 'broadcast', msg });
        continue;
      }
      for (const to of this.resultsWanted(r, primary)) this.out.push({ type: 'send', to, msg });
    }
  }

  /**
   * Sends `msg` again to every peer for which `needless` is false (targetedResends; otherwise, or when
   * that is every peer, one broadcast).
   */
  private resend(msg: NodeMessage, needless: (peer: number) => boolean): void {
    if (!this.cfg.targetedResends) {
      this.out.push({ type: 'broadcast', msg });
      return;
    }
    const to: number[] = [];
    for (let p = 0; p < this.n; p++) if (p !== this.id && !needless(p)) to.push(p);
    if (to.length === this.n - 1) this.out.push({ type: 'broadcast', msg });
    else for (const p of to) this.out.push({ type: 'send', to: p, msg });
  }

  /**
   * Whether `peer` is known to hold this slot's proposal: it sent a PREPARE or COMMIT for its digest (a
   * prepared receipt signature counted as a COMMIT included), or executed the batch. A PREPARE that came
   * after this node prepared is dropped unrecorded (onPhase), so a peer may hold it unknown to us: it
   * then gets the re-send, as before.
   */
  private holdsProposal(slot: Slot, dHex: string | null, peer: number): boolean {
    if (dHex === null) return false;
    return slot.prepares.get(peer) === dHex || this.peerPrepared(slot, dHex, peer);
  }

  /**
   * Whether `peer` is known to have prepared this slot (its COMMIT came in) or executed the batch.
   * `dHex`: hex of the slot's digest (null without a proposal).
   */
  private peerPrepared(slot: Slot, dHex: string | null, peer: number): boolean {
    if ((this.executedBy.get(peer) ?? 0) >= slot.seq) return true;
    return dHex !== null && slot.commits.get(peer) === dHex;
  }

  /** The peers that may still need one of our results batches (see retransmit). */
  private resultsWanted(r: StoredResults, primary: number): Set<number> {
    const to = new Set<number>();
    for (const e of r.signed.batch.entries) {
      const idHex = hex(e.requestId);
      if (this.pool.get(idHex)?.state !== 'pending') continue;
      if (primary !== this.id) to.add(primary);
      const voters = this.votes.get(idHex);
      for (let j = 0; j < this.n; j++) if (j !== this.id && !voters?.has(j)) to.add(j);
      if (to.size === this.n - 1) break;
    }
    return to;
  }

  /** Whether some peer's PREPARE or COMMIT for this slot names a digest other than its proposal's. */
  private votedOtherDigest(slot: Slot): boolean {
    if (!slot.digest) return false;
    const d = hex(slot.digest);
    for (const x of slot.prepares.values()) if (x !== d) return true;
    for (const x of slot.commits.values()) if (x !== d) return true;
    return false;
  }

  private executedAtLastRetransmit = 0;

  private hasRetransmitWork(): boolean {
    if (this.catchingUp || this.viewChanging || this.isBehind() || this.lastProposed > this.lastExecuted)
      return true;
    for (const slot of this.slots.values()) if (slot.seq > this.lastExecuted) return true;
    if (this.uncertified > 0 || this.orphans.size > 0) return true;
    for (const t of this.txs.values()) if (t.state === 'pending') return true;
    // A request waiting here keeps the ticks coming, so that it is forgotten if it expires (sweepExpired).
    if (this.expiredHeld > 0 || this.pool.values().next().value?.state === 'pending') return true;
    while (this.ownResults.length > 0 && (this.results.get(this.ownResults[0])?.open ?? 0) <= 0)
      this.ownResults.shift();
    return this.ownResults.length > 0;
  }
  private uncertified = 0;

  // ---------------------------------------------------------------- view change

  /** Highest seq each peer says (by its receipt signatures) it executed: evidence of the group's progress. */
  private readonly executedBy = new Map<number, number>();
  /** When each peer was last heard from (any well-formed message). */
  private readonly lastHeard = new Map<number, number>();

  /**
   * How far the group is known to have executed, for a node's status and its catch-up log lines (not per
   * step): the most of groupExecuted (f + 1 peers' receipt signatures), a checkpoint f + 1 nodes signed
   * alike, and the batches state transfer brought and checked but this node has not executed yet. A lower
   * bound: a node that hears nothing from an idle group learns how far it is only by fetching.
   */
  get peersExecuted(): number {
    let best = Math.max(this.groupExecuted(), this.lastExecuted + this.transferQueue.length);
    for (const [seq, cp] of this.checkpoints) {
      if (seq <= best) continue;
      const counts = new Map<string, number>();
      for (const d of cp.votes.values()) counts.set(d, (counts.get(d) ?? 0) + 1);
      if ([...counts.values()].some((c) => c > this.f)) best = seq;
    }
    return best;
  }

  /** The highest seq that at least f+1 nodes (so at least one honest) have executed. */
  private groupExecuted(): number {
    // The (f+1)-th highest value, without sorting a fresh array: this runs at every step (via isBehind),
    // and that sort was ~12 % of what a node allocated per request at one request per batch.
    let best = 0;
    for (const v of this.executedBy.values()) {
      if (v <= best) continue;
      let atLeast = 0;
      for (const w of this.executedBy.values()) if (w >= v) atLeast++;
      if (atLeast > this.f) best = v;
    }
    return best;
  }

  /**
   * Behind: f+1 nodes executed more than a batch beyond us and we executed nothing since the last
   * retransmission round. Then we catch up rather than blame the primary.
   */
  private isBehind(): boolean {
    // While changing view nothing executes here by the normal case: any executed batch we lack counts, and
    // so does one q peers prepared in one view (committedElsewhere).
    const lag = this.viewChanging ? 1 : 2;
    const ahead = this.viewChanging
      ? Math.max(this.groupExecuted(), this.committedElsewhere)
      : this.groupExecuted();
    return ahead >= this.lastExecuted + lag && this.lastExecuted === this.executedAtLastRetransmit;
  }

  /**
   * The highest seq for which q distinct peers sent prepared receipt signatures of one view while this node
   * was changing view (their signatures unchecked, the receipt unknown here: a hint, never a proof; state transfer checks
   * what it fetches). q nodes that prepared a batch in one view committed it, so the group executes it
   * without a view change. A prepared signature names only the batch before as executed (executedBy), so
   * without this a node left alone in a higher view (README, "Known limit") learned of the group's last
   * batch only from a later batch or when its view-change timer fired, 1 s · 2^attempts after it started
   * its view change: a request only it got (a client's sendTo 1) waited that long for its certificate
   * (test/sim/lone-view.test.ts). A hint that is wrong costs a state request per retransmission round.
   */
  private committedElsewhere = 0;

  /** Can this node hear a quorum? A node that hears fewer than q − 1 peers may be the one cut off. */
  private hearsQuorum(): boolean {
    const since = this.now - this.currentTimeout();
    let c = 0;
    for (const [node, t] of this.lastHeard) if (node !== this.id && t >= since) c++;
    return c >= this.q - 1;
  }

  /**
   * The request (or view change) timer fired. A backup suspects the primary only when it is not simply
   * behind (then it catches up) and can hear a quorum (else it may be the one cut off, and a lonely view
   * change would leave it in a view nobody else joins). The primary does not suspect itself.
   */
  private onViewTimer(): void {
    if (this.viewChanging) {
      // Ask the others what they executed first, as the normal case does before suspecting a primary
      // (below). A node left alone in its view change while the group went on in the old view, and then
      // idle, learns of the last batches it missed no other way: a prepared receipt signature says its
      // signer executed the batch before, and an idle group sends nothing newer (a random fault schedule,
      // seed 554 of 1000, left one node a batch behind for good).
      this.catchUpAt = Number.NEGATIVE_INFINITY;
      this.startCatchUp();
      const next = this.nextViewToAsk();
      if (next !== null && this.hearsQuorum()) this.startViewChange(next);
      else this.vcDeadline = this.now + this.currentTimeout();
      return;
    }
    if (this.isBehind()) {
      this.viewEnteredAt = this.now;
      this.startCatchUp();
      return;
    }
    // First ask the others what they executed: a node that missed batches (cut off, then healed while
    // the group went idle, or moved to another view) has no other way to know, and would otherwise
    // change view alone, or (as primary) wait forever.
    if (this.preViewChangeCheck < this.viewEnteredAt) {
      this.preViewChangeCheck = this.now;
      this.catchUpAt = Number.NEGATIVE_INFINITY;
      this.startCatchUp();
      // Fire again in three retransmit periods, for the same request in the same view.
      this.recheck = {
        at: this.now + 3 * this.cfg.retransmitMs,
        entered: this.viewEnteredAt,
        tracked: this.trackedRequest,
      };
      return;
    }
    if (this.isPrimary || !this.hearsQuorum()) {
      this.viewEnteredAt = this.now;
      return;
    }
    // A request with fewer than q current votes here is one no primary could propose (it proposes only
    // with q): the primary is not to blame for it. Such a request is one fewer than q nodes took, as when
    // a client spent its balance twice over disjoint sets of nodes (each set refused the other's forwards,
    // its balance less the maxFee its own request held no longer covering them) or a spend the primary
    // held made it refuse the forwards: held here, its timer made the group change view at the client's
    // will until the request expired. The timer leaves it alone for a timeout (then comes back to it: its
    // votes may have come, a node that missed some RESULTS fetches them) and looks at the oldest waiting
    // request the primary could propose instead: one whose own timer already ran out blames the primary now
    // (a row of requests without votes ahead of it must not put a dead primary's view change off by a
    // timeout each: a killed primary's group waited over a minute), else its timer runs from when it came.
    const tracked = this.trackedRequest;
    const p = tracked === null ? undefined : this.pool.get(tracked);
    if (tracked !== null && p?.state === 'pending' && this.currentVoteCount(tracked) < this.q) {
      const t = this.currentTimeout();
      p.unblamedUntil = this.now + t;
      this.unproposable++;
      let next: [string, PoolEntry] | undefined;
      // (A proposed one counts: its batch is the primary's to finish.)
      for (const e of this.pool) {
        const x = e[1];
        if (this.expiredPending(x) || (x.unblamedUntil ?? 0) > this.now) continue;
        if (x.state === 'proposed' || this.currentVoteCount(e[0]) >= this.q) {
          next = e;
          break;
        }
      }
      if (next === undefined) {
        // None the primary could propose: time the next waiting one (votes or not), from now.
        this.trackedRequest = null;
        this.refreshRequestTimer();
        return;
      }
      // Its timer runs by the rule any tracked request's does (viewTimerDeadline), from when it came or the
      // group last executed a batch, whichever is later: a dead primary's is due at once, while a group
      // whose batches keep executing gives it progressPatience timeouts from now, as a backlog needs (the
      // oldest request of a backlog may have come long before, its timer started when it became oldest).
      this.trackedRequest = next[0];
      this.timerStart = Math.max(next[1].acceptedAt, this.lastProgressAt);
      if (this.viewTimerDeadline() > this.now) return;
    }
    this.startViewChange(this.view + 1);
  }

  /** Request timers that fired for a request with fewer than q votes here, and left it alone (onViewTimer). */
  unproposable = 0;

  /**
   * The view to ask for when a view change did not finish in time, or null to keep asking for this one.
   * PBFT's rule (Castro and Liskov, §4.5.2): a node moves on from view v only once a quorum asked for v
   * (its new primary then failed to start it). A node whose timer fired alone while the group went on in
   * the old view used to climb one view per (doubling) timeout, nobody joining it: when the group's primary
   * then failed, the others had to climb through every view up to its own before a quorum met (the crash
   * soak, bench/soak.ts: a CPU-starved node alone up to view 8 while the group was in view 4; the group
   * executed nothing for 14 and 24 s after a primary crash in two runs). It waits in its view now, where
   * the others come when their primary fails. Where another node asks for a higher view it still moves
   * on, one view at a time as before (two nodes waiting in view v below a third alone in v+k would
   * otherwise wait for each other for ever; one view at a time, a faulty node's view change for a huge
   * view number moves nobody further than the timeouts did).
   */
  private nextViewToAsk(): number | null {
    if ((this.vcMessages.get(this.view)?.size ?? 0) >= this.q) return this.view + 1;
    for (const [node, v] of this.vcLatest) if (node !== this.id && v > this.view) return this.view + 1;
    return null;
  }

  private preViewChangeCheck = Number.NEGATIVE_INFINITY;
  /** After the pre-view-change check: when the timer fires again (valid for that view entry and request). */
  private recheck: { at: number; entered: number; tracked: string | null } | null = null;

  private currentTimeout(): number {
    return this.cfg.viewChangeTimeoutMs * 2 ** Math.min(this.vcAttempts, 16);
  }

  /** When the view-change timer fires: a request waiting too long, or a view change that did not finish. */
  private viewTimerDeadline(): number {
    if (this.viewChanging) return this.vcDeadline;
    if (this.trackedRequest === null) return Number.POSITIVE_INFINITY;
    const r = this.recheck;
    if (r && r.entered === this.viewEnteredAt && r.tracked === this.trackedRequest) return r.at;
    const since = Math.max(this.timerStart, this.viewEnteredAt);
    const t = this.currentTimeout();
    // While batches keep executing in this view the primary is not stalled, only behind (a backlog under
    // overload, where the oldest request need not be the next one ready): the timer then waits up to
    // progressPatience timeouts for the tracked request before suspecting censorship. Without that, an
    // overloaded group changed view again and again, and each view change cost more than the work it
    // interrupted.
    const progress = Math.max(since, this.lastProgressAt);
    return Math.min(progress + t, since + this.cfg.progressPatience * t);
  }

  /**
   * The request timer (Castro–Liskov): it runs for one waiting request, the oldest; when that one
   * executes it restarts for the next. A backlog that drains keeps restarting it; a request the primary
   * censors becomes the oldest and its timer fires.
   */
  private trackedRequest: string | null = null;
  private timerStart = 0;
  private refreshRequestTimer(): void {
    const tracked = this.trackedRequest;
    if (tracked !== null) {
      if (this.txs.has(tracked)) return;
      const p = this.pool.get(tracked);
      if (p && !this.expiredPending(p)) return;
    }
    // An expired request that no batch carries is nobody's to order: it runs no timer (expiredPending); nor
    // does one left alone for having too few votes, until its time (unblamedUntil).
    let req: [string, PoolEntry] | undefined;
    for (const e of this.pool)
      if (!this.expiredPending(e[1]) && !((e[1].unblamedUntil ?? 0) > this.now)) {
        req = e;
        break;
      }
    // A waiting transaction counts like a waiting request: a primary that never orders it is suspected.
    const tx = this.txs.entries().next();
    if (!tx.done && (req === undefined || tx.value[1].since < req[1].acceptedAt))
      this.trackedRequest = tx.value[0];
    else this.trackedRequest = req === undefined ? null : req[0];
    this.timerStart = this.now;
  }

  private recordPrepared(slot: Slot, dHex: string): void {
    if (!slot.pp || !slot.batch || !slot.digest) return;
    const prev = this.preparedCerts.get(slot.seq);
    if (prev && prev.view >= slot.view) return;
    const primary = this.primaryOf(slot.view);
    const prepares = [...slot.prepares]
      .filter(([node, d]) => d === dHex && node !== primary)
      .map(([node]) => ({ node, signature: slot.prepareSigs.get(node)! }))
      .sort((a, b) => a.node - b.node);
    this.preparedCerts.set(slot.seq, {
      view: slot.view,
      seq: slot.seq,
      digest: slot.digest,
      ppSignature: slot.pp.signature,
      batch: slot.batch,
      prepares,
    });
  }

  private viewContext() {
    return { genesis: this.genesis, groupId: this.groupId, n: this.n, f: this.f, window: this.cfg.window };
  }

  /** Stop taking normal-case messages for the current view and ask for `newView`. */
  startViewChange(newView: number): void {
    if (newView <= this.view) return;
    this.view = newView;
    this.viewChanging = true;
    this.viewChanges++;
    this.lastViewChangeAt = this.now;
    this.vcAttempts++;
    this.vcDeadline = this.now + this.currentTimeout();
    this.quorum.clear();
    this.ready.clear();
    for (const slot of this.slots.values()) this.unpark(slot);
    this.sendViewChange();
  }

  /** Signs, persists and broadcasts this node's VIEW-CHANGE for the view it is changing to. */
  private sendViewChange(): void {
    const newView = this.view;
    // A node that lost its disk may have signed in views it no longer knows of: it stays out of them.
    if (newView < this.signFloorView) return;
    const body: ViewChangeBody = {
      from: this.id,
      newView,
      stableSeq: this.stableProof.seq,
      stableDigest: this.stableProof.digest,
      checkpointProof: this.stableProof.sigs,
      prepared: [...this.preparedCerts.values()]
        .filter((c) => c.seq > this.stableProof.seq && c.seq <= this.stableProof.seq + this.cfg.window)
        .sort((a, b) => a.seq - b.seq),
    };
    const vc: SignedViewChange = {
      body,
      signature: signTagged(TAGS.viewChange, this.groupId, encode(ViewChangeBody, body), this.key),
    };
    this.myViewChange = vc;
    this.vcBackoff = this.cfg.retransmitMs;
    this.vcResendAt = this.now + this.vcBackoff;
    this.out.push({ type: 'persist', record: { kind: 'viewChange', view: newView } });
    this.out.push({ type: 'broadcast', msg: { kind: 'viewChange', vc } });
    this.storeViewChange(vc);
    this.maybeSendNewView();
  }

  /** Per peer, when the NEW-VIEW of which view was last sent it again (onViewChange). */
  private readonly newViewResent = new Map<number, { view: number; at: number }>();

  private storeViewChange(vc: SignedViewChange): void {
    // One VIEW-CHANGE per sender, its latest: a node that asks for a higher view has left the lower one,
    // and a faulty node must not make this one store a view change (up to a window of prepared
    // certificates) for every view number it cares to sign.
    const from = vc.body.from;
    const before = this.vcLatest.get(from);
    if (before !== undefined && before !== vc.body.newView) {
      const old = this.vcMessages.get(before);
      old?.delete(from);
      if (old?.size === 0) this.vcMessages.delete(before);
    }
    this.vcLatest.set(from, vc.body.newView);
    let m = this.vcMessages.get(vc.body.newView);
    if (!m) {
      m = new Map();
      this.vcMessages.set(vc.body.newView, m);
    }
    m.set(vc.body.from, vc);
  }

  private onViewChange(from: number, vc: SignedViewChange): void {
    const b = vc.body;
    if (b.from !== from) return this.blame(from, 'bad-sender', 'view change names another sender');
    if (b.newView < this.view) return;
    if (b.newView === this.view && !this.viewChanging) {
      // The sender missed the NEW-VIEW of the view we are in: send it again, at most once per retransmitMs
      // to each peer (nothing of this VIEW-CHANGE is checked, and a NEW-VIEW may be large: a faulty peer
      // repeating a small one got it each time, as fast as it asked). An honest peer that still lacks it
      // asks again at its own retransmission.
      const last = this.newViewResent.get(from);
      if (
        this.lastNewView?.newView === this.view &&
        (last === undefined || last.view !== this.view || this.now - last.at >= this.cfg.retransmitMs)
      ) {
        this.newViewResent.set(from, { view: this.view, at: this.now });
        this.out.push({ type: 'send', to: from, msg: this.lastNewView });
      }
      return;
    }
    if (this.vcMessages.get(b.newView)?.has(from)) return;
    // An older view change than the one this sender sent last (reordered, or sent again): superseded.
    if ((this.vcLatest.get(from) ?? -1) > b.newView) return;
    const problem = viewChangeProblem(vc, this.viewContext());
    if (problem) {
      // Its sender signed it (or claims to): what it carries it checked before it prepared or took it.
      if (isSignatureProblem(problem)) this.punish(from, `view change: ${problem}`);
      return this.blame(from, 'bad-view-change', problem);
    }
    this.storeViewChange(vc);
    // f+1 nodes want a view above ours: at least one is honest, so join the smallest such view.
    const senders = new Set<number>();
    let smallest = Number.POSITIVE_INFINITY;
    for (const [v, m] of this.vcMessages) {
      if (v <= this.view) continue;
      for (const node of m.keys()) senders.add(node);
      smallest = Math.min(smallest, v);
    }
    if (senders.size >= this.f + 1) this.startViewChange(smallest);
    this.maybeSendNewView();
  }

  private maybeSendNewView(): void {
    const v = this.view;
    if (!this.viewChanging || this.primaryOf(v) !== this.id || this.newViewSent.has(v)) return;
    // A node that may have lost its last signed records signs nothing in a view it may have taken part in
    // (signFloorView): it may have sent a NEW-VIEW for this very view before, with other re-proposals.
    if (v < this.signFloorView) return;
    const vcs = pickViewChanges(this.vcMessages.get(v)?.values() ?? [], v, this.q);
    if (!vcs) return;
    this.newViewSent.add(v);
    const derived = deriveNewView(vcs);
    // Nothing may have been signed in this view at these seqs before (checked, then recorded); every
    // re-proposal is persisted before the NEW-VIEW leaves, so that after a restart this node cannot
    // propose anything else at those seqs.
    for (const p of derived.proposals) {
      const before = this.signed.get(`prePrepare:${v}:${p.seq}`);
      if (before !== undefined && before !== hex(p.digest)) return;
    }
    for (const p of derived.proposals) {
      this.mayPhaseSign('prePrepare', v, p.seq, p.digest);
      this.out.push({
        type: 'persist',
        record: { kind: 'prePrepare', view: v, seq: p.seq, digest: p.digest },
      });
    }
    const proposals = derived.proposals.map((p) => ({
      seq: p.seq,
      digest: p.digest,
      signature: this.signPhase(TAGS.prePrepare, v, p.seq, p.digest),
    }));
    const msg: Extract<NodeMessage, { kind: 'newView' }> = {
      kind: 'newView',
      from: this.id,
      newView: v,
      viewChanges: vcs,
      proposals,
    };
    this.lastNewView = msg;
    this.out.push({ type: 'persist', record: newViewRecord(msg) });
    this.out.push({ type: 'broadcast', msg });
    this.enterView(v, derived, proposals);
  }

  private onNewView(m: Extract<NodeMessage, { kind: 'newView' }>, adoptOnly = false, relayer = m.from): void {
    if (m.from !== this.primaryOf(m.newView))
      return this.blame(relayer, 'bad-new-view', 'not the primary of that view');
    if (m.newView < this.view || (m.newView === this.view && !this.viewChanging)) return;
    const senders = new Set<number>();
    const ctx = this.viewContext();
    for (const vc of m.viewChanges) {
      if (vc.body.newView !== m.newView || senders.has(vc.body.from))
        return this.blame(relayer, 'bad-new-view', 'view changes for another view or repeated');
      const problem = viewChangeProblem(vc, ctx);
      if (problem) {
        // A NEW-VIEW is built, and kept to send again (directly or in a state response), only from
        // VIEW-CHANGEs whose signatures were checked: a bad one is the relayer's doing (other problems
        // depend on this node's window and state).
        if (isSignatureProblem(problem))
          this.punish(
            relayer,
            vc.body.from === relayer
              ? `its own view change in a new view: ${problem}`
              : `a new view carrying a forged view change: ${problem}`,
          );
        return this.blame(relayer, 'bad-new-view', `carries an invalid view change: ${problem}`);
      }
      senders.add(vc.body.from);
    }
    if (senders.size < this.q) return this.blame(relayer, 'bad-new-view', 'fewer than q view changes');
    const derived = deriveNewView(m.viewChanges);
    if (derived.proposals.length !== m.proposals.length)
      return this.blame(relayer, 'bad-new-view', 're-proposals differ from the view changes');
    const primaryKey = this.genesis.nodes[m.from].publicKey;
    for (let i = 0; i < derived.proposals.length; i++) {
      const d = derived.proposals[i];
      const p = m.proposals[i];
      if (p.seq !== d.seq || !equalBytes(p.digest, d.digest))
        return this.blame(relayer, 'bad-new-view', 're-proposals differ from the view changes');
      const body = encode(PhaseBody, { from: m.from, view: m.newView, seq: p.seq, digest: p.digest });
      if (!verifyTagged(TAGS.prePrepare, this.groupId, body, p.signature, primaryKey)) {
        // The new primary's signatures, checked by any node that sends the NEW-VIEW on (lastNewView).
        this.punish(
          relayer,
          relayer === m.from
            ? 'bad signature on its own re-proposal'
            : 'relayed a re-proposal with a bad signature',
        );
        return this.blame(relayer, 'bad-new-view', 'bad re-proposal signature');
      }
    }
    this.lastNewView = m;
    // Persisted before anything is signed in the new view: a restart in it restores its pins (restore), so
    // no other batch is prepared at a re-proposed seq, and it can still send the NEW-VIEW on.
    this.out.push({ type: 'persist', record: newViewRecord(m) });
    this.enterView(m.newView, derived, m.proposals, adoptOnly);
  }

  private enterView(
    view: number,
    derived: ReturnType<typeof deriveNewView>,
    proposals: { seq: number; digest: Uint8Array; signature: Uint8Array }[],
    adoptOnly = false,
  ): void {
    this.view = view;
    this.viewChanging = false;
    this.vcDeadline = Number.POSITIVE_INFINITY;
    this.viewEnteredAt = this.now;
    for (const v of this.vcMessages.keys()) if (v <= view) this.vcMessages.delete(v);
    if (derived.minSeq > this.lastExecuted) {
      this.startCatchUp();
    }
    // Everything above the checkpoint is decided afresh by the re-proposals; nothing else stays proposed.
    // Every unexecuted slot from an older view goes: its prepares and commits belong to that view. Its own
    // proposals that no re-proposal carries go with them, and no longer hold its batch clock up (see
    // takenBatchTimestamp; the re-proposals below raise it again).
    this.lastBatchTimestamp = Math.max(this.takenBatchTimestamp, this.lastExecutedTimestamp);
    for (const [s, slot] of this.slots)
      if (s > this.lastExecuted) {
        this.releaseRefs(slot);
        this.unpark(slot);
        this.slots.delete(s);
      }
    // Our votes for what is pending again go to the new primary at the next retransmission.
    for (const d of this.ownResults) {
      const r = this.results.get(d);
      if (r) {
        r.sentAt = Number.NEGATIVE_INFINITY;
        r.backoff = this.cfg.retransmitMs;
      }
    }
    for (const p of this.pool.values()) {
      p.state = 'pending';
      // Dropped while proposed: the re-proposals below may not carry it, and a new primary may then need
      // this node's vote (it may lack the votes the old batch carried). Re-proposed ones are proposed
      // again by the time the model would run, and dropped again.
      this.reinferSkipped(p);
    }
    // Transactions too: the new primary orders whatever the re-proposals below do not carry.
    for (const t of this.txs.values()) t.state = 'pending';
    const maxSeq = derived.minSeq + derived.proposals.length;
    derived.proposals.forEach((d, i) => {
      const pp: PrePrepare = {
        view,
        seq: d.seq,
        digest: d.digest,
        signature: proposals[i].signature,
        batch: d.batch,
      };
      if (d.seq <= this.lastExecuted) {
        const executed = this.executedDigests.get(d.seq);
        if (executed && !equalBytes(executed, d.digest))
          throw new DropbearError(
            'SAFETY_VIOLATION',
            `new view ${view} re-proposes another batch at executed seq ${d.seq}`,
          );
        const old = this.slots.get(d.seq);
        if (old) {
          this.releaseRefs(old);
          this.unpark(old);
        }
        this.slots.delete(d.seq);
        // Adopting a past view after state transfer: the others are long done with these batches.
        if (adoptOnly) return;
      }
      const slot = this.slot(d.seq);
      slot.view = view;
      slot.pinned = pp;
      this.tryAccept(slot, pp, true);
      if (d.batch.timestamp > this.lastBatchTimestamp) this.lastBatchTimestamp = d.batch.timestamp;
      if (d.batch.timestamp > this.takenBatchTimestamp) this.takenBatchTimestamp = d.batch.timestamp;
    });
    this.lastProposed = Math.max(maxSeq, this.lastExecuted, derived.minSeq);
    if (this.retiredModels.size > 0) this.reinferStale();
    if (this.isPrimary) for (const idHex of this.pool.keys()) this.updateReadiness(idHex);
  }

  // ---------------------------------------------------------------- state transfer

  private startCatchUp(): void {
    this.catchingUp = true;
    if (this.catchUpAt + this.cfg.retransmitMs > this.now) return;
    this.catchUpAt = this.now;
    const fromSeq = this.lastExecuted + 1 + this.transferQueue.length;
    const a = this.currentAssembly();
    if (a) {
      // Every peer that executed the batch can serve its parts: a silent one is not waited for.
      this.out.push({ type: 'broadcast', msg: this.statePartRequest(a) });
      return;
    }
    this.out.push({ type: 'broadcast', msg: { kind: 'stateRequest', from: this.id, fromSeq } });
  }

  /** The batch being assembled from parts, while it is still the next one to transfer. */
  private currentAssembly(): NonNullable<typeof this.assembly> | null {
    const a = this.assembly;
    if (!a) return null;
    const last = this.transferQueue[this.transferQueue.length - 1];
    if (
      a.sb.seq !== this.lastExecuted + 1 + this.transferQueue.length ||
      (last && !receiptQuorum(last.sb.receiptSigs, this.q))
    ) {
      this.assembly = null;
      return null;
    }
    return a;
  }

  /** Asks for the parts of the assembly from the first request and RESULTS it lacks on. */
  private statePartRequest(a: NonNullable<typeof this.assembly>): NodeMessage {
    const firstGap = (xs: unknown[]) => {
      const i = xs.indexOf(undefined);
      return i < 0 ? xs.length : i;
    };
    return {
      kind: 'statePartRequest',
      from: this.id,
      seq: a.sb.seq,
      digest: a.digest,
      requests: firstGap(a.requests),
      results: firstGap(a.results),
    };
  }

  /** Checks one transferred batch against the chain head and q receipt signatures; resolves its votes. */
  private checkStateBatch(
    sb: StateBatch,
    prev: Uint8Array,
    items: StateItems = stateItemsOf(sb),
  ):
    | { problem: string; forged?: true }
    | { entries: ResolvedEntryOut[]; requests: SignedRequest[]; results: SignedResults[] } {
    const proof = this.checkStateProof(sb, prev, batchDigestOf(sb.batch));
    if (proof) return proof;
    return this.checkStateContents(sb, items);
  }

  /**
   * Checks that a transferred batch is the one the group committed at its seq: its receipt extends our
   * chain and q receipt signatures cover it, or q COMMITs (with receipt signatures) name its digest.
   */
  private checkStateProof(
    sb: StateBatch,
    prev: Uint8Array,
    digest: Uint8Array,
  ): { problem: string; forged?: true } | null {
    const r = sb.receipt;
    if (sb.receiptSigs.length > 0) {
      if (r.seq !== sb.seq || !equalBytes(r.groupId, this.groupId))
        return { problem: 'receipt for another slot or group' };
      if (!equalBytes(r.prevReceipt, prev)) return { problem: 'receipt does not extend our chain' };
      if (!equalBytes(r.batchDigest, digest)) return { problem: 'batch does not match its receipt' };
      const bytes = encode(ReceiptCodec, r);
      const rh = sha256(bytes);
      for (const x of sb.receiptSigs) {
        const node = this.genesis.nodes[x.node];
        if (!node || !verifyReceiptSig(this.groupId, bytes, rh, x, node.publicKey))
          return { problem: `bad receipt signature from ${x.node}`, forged: true };
      }
    }
    if (!receiptQuorum(sb.receiptSigs, this.q)) {
      // Not certified yet: COMMITs and receipt signatures of q nodes prove the batch was committed at this
      // seq (commitQuorum); we compute the receipt ourselves.
      if (!commitQuorum(sb.view, sb.commitSigs, sb.receiptSigs, this.q))
        return { problem: `no ${this.q} receipt or commit signatures of one view` };
      for (const x of sb.commitSigs) {
        const node = this.genesis.nodes[x.node];
        const body = encode(PhaseBody, { from: x.node, view: sb.view, seq: sb.seq, digest });
        if (!node || !verifyTagged(TAGS.commit, this.groupId, body, x.signature, node.publicKey))
          return { problem: `bad commit signature from ${x.node}`, forged: true };
      }
    }
    return null;
  }

  /** Checks a transferred batch's requests and RESULTS against it (its proof checked) and resolves its votes. */
  private checkStateContents(
    sb: StateBatch,
    { requests, results }: StateItems,
  ):
    | { problem: string; forged?: true }
    | { entries: ResolvedEntryOut[]; requests: SignedRequest[]; results: SignedResults[] } {
    const entries: ResolvedEntryOut[] = [];
    // Only what the batch references is kept (and so stored and served again): a faulty peer's extra
    // requests and RESULTS would otherwise go into this node's ledger for good.
    const used = new Set<SignedResults>();
    const usedRequests: SignedRequest[] = [];
    for (const e of sb.batch.entries) {
      const sr = requests.get(hex(e.requestId));
      if (!sr) return { problem: 'a request of the batch is missing' };
      usedRequests.push(sr);
      // The id covers the request, not its authentication: a faulty peer could hand over a copy with a
      // forged one, which this node would then keep in its ledger (and `ledger verify` would report).
      const authProblem = requestAuthProblem(sr, this.authCache);
      if (authProblem)
        return { problem: `a request of the batch is not signed by its client: ${authProblem}` };
      const votes: CountedVote[] = [];
      for (const v of e.votes) {
        const signed = results.get(hex(v.results));
        const entry = signed?.batch.entries[v.index];
        if (!signed || signed.batch.node !== v.node || !entry || !equalBytes(entry.requestId, e.requestId))
          return { problem: 'a vote of the batch is missing or does not match' };
        used.add(signed);
        votes.push({ node: v.node, modelDigest: signed.batch.modelDigest, result: entry.result });
      }
      entries.push({ requestId: e.requestId, request: sr.request, votes });
    }
    return { entries, requests: usedRequests, results: [...used] };
  }

  /** A NEW-VIEW a state response carried, taken once the transfer is done, and the peer that sent it. */
  private pendingNewView: { nv: Extract<NodeMessage, { kind: 'newView' }>; from: number } | null = null;

  private onStateResponse(from: number, m: Extract<NodeMessage, { kind: 'stateResponse' }>): void {
    this.learnFloor(from, m.view);
    if (m.checkpoint) this.takeCheckpointProof(from, m.checkpoint);
    // Any response that extends our chain is used (each batch is checked), even one arriving after
    // another peer already said it had nothing newer.
    let next = this.lastExecuted + 1 + this.transferQueue.length;
    const last = this.transferQueue[this.transferQueue.length - 1];
    if (last && !receiptQuorum(last.sb.receiptSigs, this.q)) return; // see below: wait for our own receipt
    let prev = last ? receiptHashOf(last.sb.receipt) : this.lastReceiptHash;
    let added = 0;
    let parts = false;
    for (const sb of m.batches) {
      if (sb.seq < next) continue;
      if (sb.seq > next) break;
      const items = stateItemsOf(sb);
      if (!this.carriesAll(sb, items)) {
        // Too large for a frame, the batch came with its proof alone: its requests and RESULTS come in parts.
        const took = this.takeStateHeader(from, sb, prev);
        if (took < 0) return;
        parts = took > 0;
        break;
      }
      const c = this.checkStateBatch(sb, prev, items);
      if ('problem' in c) {
        // A node serves only receipt and COMMIT signatures it checked (or made): a bad one is the sender's.
        // Not a request's client signature: ledgers written before 2026-12-04 may hold unchecked ones.
        if (c.forged) this.punish(from, `state transfer: ${c.problem}`);
        this.blame(from, 'bad-state', c.problem);
        return;
      }
      this.queueTransferred(sb, c);
      prev = receiptHashOf(sb.receipt);
      next++;
      added++;
      // Proven by COMMITs (and receipt signatures short of a quorum), its receipt is not certified yet: the
      // next batch must link to the receipt we compute ourselves, so stop here and ask again once it has
      // executed.
      if (!receiptQuorum(sb.receiptSigs, this.q)) break;
    }
    if (m.newView && m.view > this.view && m.newView.newView === m.view)
      this.pendingNewView = { nv: { kind: 'newView', ...m.newView }, from };
    if (parts) this.assemble(from);
    else if (added > 0) {
      this.executeTransferred();
      this.catchUpAt = Number.NEGATIVE_INFINITY; // ask for the next part at once
      this.startCatchUp();
    } else if (m.batches.every((b) => b.seq < next) && !this.currentAssembly()) {
      // This peer has nothing newer: caught up with it (a later lag starts another round). A forgetful
      // replica asks again (retransmitMs) until 2f + 1 peers have told it their views. Not while a batch
      // is being assembled from parts: a peer that is behind too would stop the retransmissions that
      // bypass a silent one.
      if (this.signFloorView !== Number.POSITIVE_INFINITY) this.catchingUp = false;
      this.finishCatchUp();
    }
  }

  private transferred = 0;

  private queueTransferred(
    sb: StateBatch,
    c: { entries: ResolvedEntryOut[]; requests: SignedRequest[]; results: SignedResults[] },
  ): void {
    this.transferQueue.push({
      sb: { ...sb, requests: c.requests, results: c.results },
      digest: batchDigestOf(sb.batch),
      entries: c.entries,
    });
  }

  /** Does a transferred batch carry every request and RESULTS its entries name? */
  private carriesAll(sb: StateBatch, items: StateItems): boolean {
    const refs = stateBatchReferences(sb.batch);
    return (
      refs.requests.every((id) => items.requests.has(hex(id))) &&
      refs.results.every((d) => items.results.has(hex(d)))
    );
  }

  /**
   * A transferred batch without (all of) its requests and RESULTS, the next one to execute: once its proof
   * checks, it is assembled from parts (what it carries is kept). Returns 1 when the assembly is new or
   * gained something (the sender is asked for the rest), 0 when it is one this node is already assembling
   * and brought nothing new (the peer asked first is answering already: every peer answers a broadcast
   * request, and asking each for the same parts would ship them n − 1 times), −1 when it was refused
   * (the sender is blamed).
   */
  private takeStateHeader(from: number, sb: StateBatch, prev: Uint8Array): number {
    const digest = batchDigestOf(sb.batch);
    const have = this.currentAssembly();
    if (have && have.sb.seq === sb.seq && equalBytes(have.digest, digest)) {
      const took = this.takeStateItems(from, have, sb.requests, sb.results);
      if (took > 0) have.from = from;
      return took < 0 ? -1 : took > 0 ? 1 : 0;
    }
    const problem = this.checkStateProof(sb, prev, digest);
    if (problem) {
      if (problem.forged) this.punish(from, `state transfer: ${problem.problem}`);
      this.blame(from, 'bad-state', problem.problem);
      return -1;
    }
    const refs = stateBatchReferences(sb.batch);
    const a: NonNullable<typeof this.assembly> = {
      sb: { ...sb, requests: [], results: [] },
      digest,
      requestAt: new Map(refs.requests.map((id, i) => [hex(id), i])),
      resultAt: new Map(refs.results.map((d, i) => [hex(d), i])),
      requests: new Array(refs.requests.length).fill(undefined),
      results: new Array(refs.results.length).fill(undefined),
      from,
    };
    this.assembly = a;
    return this.takeStateItems(from, a, sb.requests, sb.results) < 0 ? -1 : 1;
  }

  /**
   * Keeps the requests and RESULTS of a part that the batch being assembled names and lacks. Each is bound
   * to the batch by its hash (its request id, its RESULTS digest), as in a whole StateBatch; a request's
   * client signature is checked here, so a peer that hands over a forged one is blamed for it and its copy
   * is not kept (the id covers the request, not its authentication). Returns how many were new, or −1
   * when the part was refused.
   */
  private takeStateItems(
    from: number,
    a: NonNullable<typeof this.assembly>,
    requests: SignedRequest[],
    results: SignedResults[],
  ): number {
    let took = 0;
    for (const sr of requests) {
      const i = a.requestAt.get(hex(requestIdOf(sr)));
      if (i === undefined || a.requests[i]) continue;
      const authProblem = requestAuthProblem(sr, this.authCache);
      if (authProblem) {
        this.blame(from, 'bad-state', `a request of the batch is not signed by its client: ${authProblem}`);
        return -1;
      }
      a.requests[i] = sr;
      took++;
    }
    for (const x of results) {
      const i = a.resultAt.get(hex(resultsDigestOf(x)));
      if (i === undefined || a.results[i]) continue;
      a.results[i] = x;
      took++;
    }
    return took;
  }

  /** Queues the assembled batch once every part is in (it is checked as a whole StateBatch), else asks for more. */
  private assemble(from: number): void {
    const a = this.currentAssembly();
    if (!a) return;
    if (a.requests.includes(undefined) || a.results.includes(undefined)) {
      this.out.push({ type: 'send', to: a.from, msg: this.statePartRequest(a) });
      // A silent peer: every peer is asked at the next retransmission, which runs while catching up (a
      // peer behind too may have said it had nothing newer before this header came).
      this.catchingUp = true;
      this.catchUpAt = this.now;
      return;
    }
    this.assembly = null;
    const sb: StateBatch = {
      ...a.sb,
      requests: a.requests as SignedRequest[],
      results: a.results as SignedResults[],
    };
    // Checked as a whole StateBatch is, against the chain head now (its proof again too: cheap, and the
    // head cannot have moved while this was the next batch, but nothing rests on that).
    const last = this.transferQueue[this.transferQueue.length - 1];
    const c = this.checkStateBatch(sb, last ? receiptHashOf(last.sb.receipt) : this.lastReceiptHash);
    if ('problem' in c) {
      // Parts are bound by hash to a batch whose proof checked: they disagree with it only if the group
      // committed a batch that does not check. Started over, from whichever peer answers.
      this.blame(from, 'bad-state', c.problem);
      return;
    }
    this.queueTransferred(sb, c);
    this.executeTransferred();
    this.catchUpAt = Number.NEGATIVE_INFINITY; // ask for the next batch at once
    this.startCatchUp();
  }

  private onStatePart(from: number, m: Extract<NodeMessage, { kind: 'statePart' }>): void {
    const a = this.currentAssembly();
    if (!a || m.seq !== a.sb.seq || !equalBytes(m.digest, a.digest)) return;
    // A copy of a part already in (a second peer answering a broadcast request) asks for nothing more.
    if (this.takeStateItems(from, a, m.requests, m.results) <= 0) return;
    a.from = from;
    this.assemble(from);
  }

  /** A peer's stable checkpoint proof: its q signatures count as checkpoint votes (each one checked). */
  private takeCheckpointProof(
    from: number,
    cp: { seq: number; stateDigest: Uint8Array; proof: NodeSignature[] },
  ): void {
    if (cp.seq <= this.stable || cp.seq % this.cfg.checkpointInterval !== 0) return;
    for (const s of cp.proof) {
      if (this.punished.has(from)) return;
      if (s.node >= this.n) {
        this.punish(from, 'a checkpoint proof signed by an unknown node');
        return this.blame(from, 'bad-state', 'checkpoint proof from an unknown node');
      }
      this.onCheckpoint(
        {
          kind: 'checkpoint',
          from: s.node,
          seq: cp.seq,
          stateDigest: cp.stateDigest,
          signature: s.signature,
        },
        from,
      );
    }
  }

  private executeTransferred(): void {
    if (this.awaitingExecution !== 0) return;
    const t = this.transferQueue.shift();
    if (!t) return;
    this.transferred++;
    this.emitExecute(t.sb.seq, t.sb.view, t.digest, t.sb.batch, t.entries, t.sb.requests, t.sb.results, t.sb);
  }

  private finishCatchUp(): void {
    if (this.transferQueue.length > 0 || this.awaitingExecution !== 0) return;
    // A fresh request timer after catching up on something (not after learning we were up to date).
    if (this.transferred > 0) this.viewEnteredAt = this.now;
    this.transferred = 0;
    const pending = this.pendingNewView;
    this.pendingNewView = null;
    // A fault in it is counted against the peer that handed it over, not the primary that signed it.
    if (pending && pending.nv.newView > this.view) this.onNewView(pending.nv, true, pending.from);
    if (this.lastProposed < this.lastExecuted) this.lastProposed = this.lastExecuted;
  }

  // ---------------------------------------------------------------- plumbing

  private onMessage(from: number, msg: NodeMessage): void {
    if (from < 0 || from >= this.n || from === this.id) return;
    this.lastHeard.set(from, this.now);
    switch (msg.kind) {
      case 'forward':
        // checkRequest turns away requests already held or executed before any signature check.
        for (const sr of msg.requests) {
          if (this.punished.has(from)) break;
          this.onPeerRequest(from, sr);
        }
        break;
      case 'results':
        this.onResults(from, msg.signed);
        break;
      case 'prePrepare':
        this.onPrePrepare(from, msg.pp);
        break;
      case 'prepare':
      case 'commit':
        if (msg.from !== from) return this.blame(from, 'bad-sender', `${msg.kind} names another sender`);
        this.onPhase(msg.kind, msg);
        break;
      case 'receiptSig':
        if (msg.from !== from)
          return this.blame(from, 'bad-sender', 'receipt signature names another sender');
        this.onReceiptSig(msg);
        break;
      case 'checkpoint':
        if (msg.from !== from) return this.blame(from, 'bad-sender', 'checkpoint names another sender');
        this.onCheckpoint(msg);
        break;
      case 'fetch':
        if (msg.from !== from) return;
        this.onFetch(msg);
        break;
      case 'viewChange':
        this.onViewChange(from, msg.vc);
        break;
      case 'stateRequest':
        if (msg.from !== from) return;
        this.out.push({
          type: 'serveState',
          to: from,
          fromSeq: msg.fromSeq,
          view: this.view,
          newView: this.viewChanging ? null : this.lastNewView,
          checkpoint:
            this.stableProof.seq > 0
              ? {
                  seq: this.stableProof.seq,
                  stateDigest: this.stableProof.digest,
                  proof: this.stableProof.sigs,
                }
              : null,
        });
        break;
      case 'stateResponse':
        if (msg.from !== from) return;
        this.onStateResponse(from, msg);
        break;
      case 'statePartRequest':
        if (msg.from !== from) return;
        this.out.push({
          type: 'serveStatePart',
          to: from,
          seq: msg.seq,
          digest: msg.digest,
          requests: msg.requests,
          results: msg.results,
        });
        break;
      case 'statePart':
        if (msg.from !== from) return;
        this.onStatePart(from, msg);
        break;
      case 'newView':
        // Self-authenticating (signed view changes and re-proposals): a relayed copy is as good.
        this.onNewView(msg, false, from);
        break;
      case 'fetched':
        this.onFetched(from, msg);
        break;
      case 'tx':
        this.onPeerTx(from, msg.tx);
        break;
    }
  }

  blame(node: number, kind: Misbehaviour, _detail: string): void {
    let m = this.misbehaviour.get(node);
    if (!m) {
      m = new Map();
      this.misbehaviour.set(node, m);
    }
    m.set(kind, (m.get(kind) ?? 0) + 1);
  }

  /**
   * `peer`, the transport-authenticated sender of the message in hand, sent a signature that does not
   * verify, of its own or relayed where an honest node relays only what it checked or made: the node layer
   * drops the peer (the peerMisbehaved action). Where the relayer may not have checked (a transferred
   * request's client signature, transactions in a batch) callers only count it (blame).
   */
  private punish(peer: number, reason: string): void {
    if (peer === this.id || this.punished.has(peer)) return;
    this.punished.add(peer);
    this.out.push({ type: 'peerMisbehaved', peer, reason });
  }

  /** Peers already reported in this step (punish): the rest of their message is not worth checking. */
  private readonly punished = new Set<number>();

  private recordEvidence(node: number, kind: Misbehaviour, detail: string, proof: Evidence): void {
    const key = `${node}:${detail}`;
    if (this.evidenceKeys.has(key)) return;
    this.blame(node, kind, detail);
    // Beyond EVIDENCE_PER_NODE_KIND proofs of this kind against this node, the offence is only counted
    // (blame, above), and not remembered either: evidenceKeys stays as bounded as the proofs.
    const held = `${node}:${kind}`;
    const count = this.evidenceCounts.get(held) ?? 0;
    if (count >= EVIDENCE_PER_NODE_KIND) return;
    this.evidenceCounts.set(held, count + 1);
    this.evidenceKeys.add(key);
    this.evidence.push({ node, kind, detail, proof });
    this.out.push({ type: 'evidence', node, proof });
  }

  private flush(): void {
    if (this.awaitingExecution === 0) this.maybePropose();
    this.refreshRequestTimer();
    if (this.inferQueue.length > 0) {
      this.out.push({ type: 'infer', requests: this.inferQueue.splice(0) });
    }
    // A request that left the pool (executed, mostly, long before its late forward is due) needs none:
    // without this, every request sent to all nodes woke each node once more, ~1 s after it arrived.
    this.lateForward.dropWhile((idHex) => !this.pool.has(idHex));
    let wake = Math.min(
      this.forwardDeadline,
      this.resultsDeadline,
      this.viewTimerDeadline(),
      this.lateForward.nextAt,
    );
    // Not while changing views: maybePropose does nothing then, so a due time would fire again and again
    // (requests keep turning ready, transactions keep waiting); the NEW-VIEW's step proposes.
    if (this.isPrimary && !this.viewChanging) {
      const q = this.quorum.values().next();
      if (!q.done) wake = Math.min(wake, q.value + this.cfg.voteWaitMs);
      // Only while a batch may be proposed: with the window or the in-flight limit full, the next
      // execution (an event) proposes; a timer already due would fire again and again until then.
      const mayPropose = this.mayProposeMore();
      const r = this.ready.values().next();
      const cut = this.cutAfterMs();
      if (!r.done && mayPropose) wake = Math.min(wake, r.value + cut);
      if (mayPropose) wake = Math.min(wake, this.oldestUnproposedTx() + cut);
    }
    if (this.hasRetransmitWork())
      wake = Math.min(wake, Math.max(this.now + 1, this.lastRetransmit + this.cfg.retransmitMs));
    if (wake !== this.wakeAt) {
      this.wakeAt = wake;
      if (wake !== Number.POSITIVE_INFINITY) this.out.push({ type: 'timer', at: wake });
    }
  }
}
