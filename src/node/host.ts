/**
 * One node's engine room: drives the pure PBFT replica with the real clock, the durable SQLite ledger, the
 * model backend and a wire to the peers. Everything the replica asks for is done here, in order: persist
 * (fsynced before the messages that depend on it are sent: writes are group-committed once per turn of the
 * event loop, the fsync runs on libuv's thread pool, and those messages are held until it calls back;
 * with relaxed durability they leave once the group has committed, unsynced), send, infer, execute,
 * certify. The HTTP API and the process wiring sit on top (api.ts, run.ts).
 */
import { buildCertificates } from '../certificate/index.ts';
import { RateWindow } from '../consensus/rate.ts';
import {
  type Action,
  DEFAULT_REPLICA_CONFIG,
  type Event,
  type PersistRecord,
  type RejectCode,
  Replica,
  type ReplicaConfig,
  type TxRejectCode,
} from '../consensus/replica.ts';
import { INFERENCE_SKIPPED, type ModelBackend } from '../inference/backend.ts';
import { modelUpdateProblem } from '../inference/spec.ts';
import { type Durability, ledgerWriteFailure, SqliteLedger } from '../ledger/sqlite.ts';
import { type Execution, MAX_ACCOUNTS_BY_TRANSFER } from '../ledger/state.ts';
import {
  batchDigestOf,
  type Certificate,
  type Codec,
  clientSpendOf,
  DropbearError,
  decodeMessage,
  Evidence,
  encode,
  encodeMessage,
  equalBytes,
  type Genesis,
  hex,
  type KeyPair,
  LIMITS,
  type NodeMessage,
  quorumOf,
  type Result,
  requestIdOf,
  resultsDigestOf,
  SignedRequest,
  SignedResults,
  stateBatchReferences,
  type Tx,
  toB64u,
  txIdOf,
} from '../protocol/index.ts';

/**
 * Executed or superseded transactions whose fate a node keeps in memory (Host.txStatus; the ledger keeps
 * every executed one's); they are rare (owners, the treasury).
 */
export const TX_RESULTS_KEPT = 4096;

/** How the host reaches its peers (transport.ts implements it over TCP). */
export interface Wire {
  send(to: number, bytes: Uint8Array): void;
  broadcast(bytes: Uint8Array): void;
  onFrame(handler: (from: number, bytes: Uint8Array) => void): void;
  /**
   * This peer sent a frame that could not be decoded, or a signature that does not verify (its own, or one
   * it relayed that an honest node would have checked): drop its connection and keep it out for a while
   * (transport.ts, quarantine).
   */
  reportBad(from: number, reason: string): void;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug?(obj: object, msg?: string): void;
}

const silent: Logger = { info() {}, warn() {}, error() {} };

/** HostOptions.catchUpLog's default: a line once a catch-up has lasted 3 s, then one every 10 s. */
const CATCH_UP_LOG = { afterMs: 3_000, everyMs: 10_000 };

/**
 * HostOptions.stateServeBytesPerSec's default: 16 MiB/s per peer. A node catching up gets executed batches at
 * that pace from each peer it asks (a 1,024-request stand-in batch is ~0.5–1 MiB as state transfer ships
 * it: over ten batches a second, ahead of any rate this group certifies); a faulty peer gets no more of
 * this node's reading and encoding than that.
 */
export const STATE_SERVE_BYTES_PER_SEC = 16 << 20;

export interface HostOptions {
  id: number;
  genesis: Genesis;
  key: KeyPair;
  ledgerPath: string;
  /**
   * `full` (default): what the replica persists before signing is fsynced before the message leaves.
   * `relaxed`: it leaves once the write reaches the operating system (safe against a crash of the
   * process; after a crash of the machine the node signs in no view it may have used: see
   * src/ledger/sqlite.ts and PROTOCOL.md, "Durability and restarts"). `prepared`: as `full` for the
   * prepared certificate before COMMIT, view changes, checkpoints and a view's first vote; as `relaxed`
   * for the other PRE-PREPARE and PREPARE records (docs/ledger.md).
   */
  durability?: Durability;
  /**
   * This node's ledger is lost: start it with a new one as a node that may have signed in any view the
   * group used (SqliteLedgerOptions.rejoin; `dropbear node --rejoin`).
   */
  rejoin?: boolean;
  /** The certificates of at least this many latest requests are found (SqliteLedgerOptions). */
  certificateIndexRequests?: number;
  /** The loaded models, by digest; the one the ledger says is current for this node must be among them. */
  backends: ModelBackend[];
  wire: Wire;
  replica?: Partial<ReplicaConfig>;
  logger?: Logger;
  /** Called with what happened, for metrics. */
  observe?: Partial<HostObserver>;
  /** The transport's largest frame (default 16 MiB). */
  maxFrameBytes?: number;
  /**
   * Bytes of state-transfer answers (state responses and parts) this node sends one peer per second at
   * most, after a burst of one frame (default STATE_SERVE_BYTES_PER_SEC). A request over the budget waits
   * (the peer's latest one is kept) rather than being dropped.
   */
  stateServeBytesPerSec?: number;
  /**
   * When a catch-up (state transfer) is logged: `CATCH_UP_STARTED` once it has lasted `afterMs`, then
   * `CATCH_UP_PROGRESS` every `everyMs`, and `CATCH_UP_DONE` at its end if it was logged (default
   * CATCH_UP_LOG: a lag of a batch or two, caught up within a round trip, is not worth a line).
   */
  catchUpLog?: { afterMs: number; everyMs: number };
  /**
   * A replica step failed (its ledger write, an execution): the node has stopped, sent nothing of that
   * step, and must not go on. Default: the error is thrown at the next turn of the event loop, outside
   * every handler, so that the process exits (the transport and the HTTP API catch what a step throws).
   */
  onFatal?: (e: unknown) => void;
}

export interface HostObserver {
  accepted(id: Uint8Array): void;
  rejected(code: string): void;
  /**
   * One inference call of the host ended: `n` inputs answered (`failed` of them as empty results) and
   * `skipped` dropped unrun because their requests executed while they waited (NodeHost.inferNow).
   */
  inferred(n: number, ms: number, failed: number, skipped: number): void;
  executed(seq: number, requests: number): void;
  certified(certs: Certificate[]): void;
  /** A frame from `from` this host could not use (the metrics read the transport's count, which has these too). */
  badFrame?(from: number): void;
  viewChange(view: number): void;
  /** An fsync of the ledger's WAL called back after `ms` (from the call, queueing on the thread pool included). */
  walSynced?(ms: number): void;
  /**
   * Peer messages of `kind` handed to the transport: `messages` frames (a broadcast counts one per peer, a
   * FORWARD too large for one frame one per frame) of `bytes` encoded bytes in all (frame headers not counted).
   */
  sent?(kind: NodeMessage['kind'], messages: number, bytes: number): void;
  /** Every replica step: the event and the actions it produced (a diagnostic trace, src/node/steptrace.ts). */
  step?(event: Event, actions: Action[]): void;
}

export type SubmitOutcome =
  | { ok: true; requestId: Uint8Array }
  | { ok: false; requestId: Uint8Array | null; code: RejectCode | 'NODE_STOPPED'; message: string };

export type TxOutcome =
  | { ok: true; txId: Uint8Array }
  | { ok: false; txId: Uint8Array; code: TxRejectCode; message: string };

type InferredResult = { requestId: Uint8Array; result: Result };
/** Most answers in one `inferred` event, so in one RESULTS message (far under LIMITS.batchEntries). */
const SETTLED_PER_EVENT = 4096;

/** Extra time, beyond the group's request expiry, an accept time is kept for a request never certified here. */
const ACCEPT_KEEP_MARGIN_MS = 60_000;

/**
 * Inference failures that are this node's own trouble (its queue full, a worker gone or hung, its remote model
 * server down or slow), not the input's: retried with backoff (100 ms doubling) up to INFER_RETRIES times
 * before the node votes an empty answer.
 */
const TRANSIENT_INFERENCE = new Set([
  'OVERLOADED',
  'WORKER_EXITED',
  'WORKER_FAILED',
  'WORKER_TIMEOUT',
  'REMOTE_UNAVAILABLE',
  'REMOTE_TIMEOUT',
]);
const INFER_RETRIES = 5;

/**
 * Whether the node retries this inference failure: TRANSIENT_INFERENCE, but not a preprocessing worker's
 * WORKER_TIMEOUT (its details say `call: 'prep'`, threads.ts). That call decodes one input; the pool posts
 * at most two to a worker at once, and the input bounds keep a decode to seconds (preprocess.ts,
 * checkDeclaredSize; ~3 s at worst measured) against the 30 s timeout, so an input whose call timed out
 * will time out again: retried, a 1×40,000,000 PNG held the worker for 5 more decodes of 33–50 s each, on
 * every node. It is voted empty at once, as an input the model cannot read. A model run's WORKER_TIMEOUT
 * (a batch of several requests' inputs) is still the node's own trouble and retried.
 */
export function isTransientInference(e: unknown): boolean {
  if (!(e instanceof DropbearError) || !TRANSIENT_INFERENCE.has(e.code)) return false;
  return !(e.code === 'WORKER_TIMEOUT' && e.details?.call === 'prep');
}

/**
 * The messages that must wait until what the node persisted before signing is on disk (PROTOCOL.md,
 * "Durability and restarts"): its PRE-PREPARE, PREPARE, COMMIT, VIEW-CHANGE and NEW-VIEW, and the
 * answers that may carry them (FETCHED carries PRE-PREPAREs; a state response, sent through `out` by
 * serveState, a NEW-VIEW). The node host holds them until the fsync that covers their record has called
 * back, and every RECEIPT-SIG and CHECKPOINT. A prepared receipt signature says the node prepared the
 * batch, as its COMMIT does. A plain one (and a CHECKPOINT) says the batch committed and executed here,
 * and this node's own COMMIT counted towards that: its prepared certificate (the `commit` record) must be
 * on disk first, or a crash leaves only f honest nodes holding it, and a NEW-VIEW built with f faulty
 * nodes' VIEW-CHANGEs can drop a batch a valid certificate names. Until 2026-12-05 these left in the turn
 * of their execution, which a review showed unsafe under pipelining (batch s executes in the turn that
 * records s + 1's prepared certificate, or while its fsync runs). The node's own RESULTS wait for their
 * record too, as resultsOut says. FORWARD, FETCH and transactions carry what clients signed and leave at
 * once. Peers take messages in any order (as after a reconnect).
 */
const GUARDED: ReadonlySet<string> = new Set([
  'prePrepare',
  'prepare',
  'commit',
  'receiptSig',
  'checkpoint',
  'viewChange',
  'newView',
  'fetched',
]);

/**
 * The replica's two clocks (Replica.step). `timer()`: milliseconds on the monotonic clock, from the wall
 * clock's reading when the node started; it never goes back and never jumps, so no step of the system
 * clock stops the replica's timers (retransmission, catch-up, view change: 6 s without a message after a
 * 20 s step back, before 2026-12-02) or fires all those due in a step forward at once. `wall()`: the system
 * clock as it is, for timestamps. Until 2026-12-06 one clock did both: it ran on the monotonic clock and
 * followed the wall clock forward, never back, so after a wrong forward step and its correction the node
 * stayed ahead until restarted (clients' requests looked expired there, and as primary its batch
 * timestamps were refused by every peer).
 */
export class NodeClock {
  private readonly base = Date.now() - performance.now();
  timer(): number {
    return this.base + performance.now();
  }
  wall(): number {
    return Date.now();
  }
}

/** Runs `fn` once at the next turn of the event loop (setImmediate), however often it is asked before. */
class NextTurn {
  private due = false;
  constructor(private readonly fn: () => void) {}
  ask(): void {
    if (this.due) return;
    this.due = true;
    setImmediate(() => {
      this.due = false;
      this.fn();
    });
  }
}

interface Waiter {
  resolve: (c: Certificate | null) => void;
  timer: NodeJS.Timeout;
}

type StateResponse = Extract<NodeMessage, { kind: 'stateResponse' }>;

/** The window over which the host measures its execution rate. */
const RATE_WINDOW_MS = 5000;
/** A replica wake-up this much later than the timer already set leaves the timer as it is (schedule). */
const RESCHEDULE_SLACK_MS = 2;

export class NodeHost {
  readonly id: number;
  readonly genesis: Genesis;
  readonly db: SqliteLedger;
  replica: Replica;
  private readonly backends = new Map<string, ModelBackend>();
  private readonly wire: Wire;
  private readonly log: Logger;
  private readonly obs: Partial<HostObserver>;
  private readonly maxFrameBytes: number;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Number.POSITIVE_INFINITY;
  private readonly pendingExec = new Map<number, Execution>();
  private readonly waiters = new Map<string, Waiter[]>();
  private stopped = false;
  private inferring = 0;
  /** Accept time per request id (performance.now(): a wall clock stepped back made it negative), for the
   *  accept-to-certificate histogram, oldest first (rememberAccepted). */
  readonly acceptedAt = new Map<string, number>();
  /** When rememberAccepted next forgets stale accept times (performance.now()). */
  private acceptSweepAt = 0;
  readonly startedAt = Date.now();
  /** performance.now() at the start: uptimeMs on the wall clock went negative after a step back. */
  private readonly startedMono = performance.now();

  private constructor(opts: HostOptions, db: SqliteLedger, replica: Replica) {
    this.id = opts.id;
    this.genesis = opts.genesis;
    this.db = db;
    this.replica = replica;
    // Forwarded requests are held to the client's balance, as the API holds a client's own (fundsOf).
    replica.fundsOf = (client) => db.state.balanceOf(client);
    this.wire = opts.wire;
    this.log = opts.logger ?? silent;
    this.obs = opts.observe ?? {};
    this.maxFrameBytes = opts.maxFrameBytes ?? 16 << 20;
    this.stateServeRate = opts.stateServeBytesPerSec ?? STATE_SERVE_BYTES_PER_SEC;
    this.catchUpLog = opts.catchUpLog ?? CATCH_UP_LOG;
    if (!(this.catchUpLog.afterMs >= 0 && this.catchUpLog.everyMs > 0))
      throw new Error('catchUpLog: afterMs must be ≥ 0 and everyMs > 0');
    if (!(this.stateServeRate > 0)) throw new Error('stateServeBytesPerSec must be positive');
    this.onFatal =
      opts.onFatal ??
      ((e) =>
        setImmediate(() => {
          throw e;
        }));
    for (const b of opts.backends) this.backends.set(b.digest, b);
  }

  private readonly onFatal: (e: unknown) => void;
  private readonly clock = new NodeClock();
  /** Set when a step failed: the node stopped then (see HostOptions.onFatal). */
  failed: unknown = null;

  /**
   * Opens (or creates) the ledger, restores the replica from it and checks that the model the ledger names
   * for this node is loaded: a node never votes with a model the group did not order.
   */
  static open(opts: HostOptions): NodeHost {
    // The replica verifies every receipt signature before it reports a batch certified, and `certified`
    // stores them against the receipt hash it verified them for: the ledger need not check them again.
    const db = SqliteLedger.open(opts.ledgerPath, opts.genesis, {
      verifySignatures: false,
      durability: opts.durability,
      rejoin: opts.rejoin,
      node: opts.id,
      certificateIndexRequests: opts.certificateIndexRequests,
      onReplayProgress: (p) =>
        opts.logger?.info(
          {
            batches: p.batches,
            of: p.total,
            requests: p.requests,
            seconds: Math.round(p.elapsedMs / 100) / 10,
            requestsPerSecond: p.elapsedMs > 0 ? Math.round((p.requests * 1000) / p.elapsedMs) : 0,
            fromSnapshot: p.snapshot,
          },
          p.done
            ? 'ledger replayed'
            : `replaying the ledger: ${Math.floor((100 * p.batches) / Math.max(1, p.total))} %`,
        ),
      // The open goes on from an older snapshot or the genesis (slower), but a damaged row is worth a look.
      onSnapshotIgnored: (problem) => opts.logger?.warn({ problem }, 'ledger snapshot ignored'),
    });
    try {
      const current = hex(db.state.models[opts.id]);
      if (!opts.backends.some((b) => b.digest === current)) {
        const loaded = opts.backends.map((b) => b.digest.slice(0, 16)).join(', ') || 'none';
        // A node rejoining with a new ledger starts at the genesis, but its owner's model may have been
        // updated since: it loads the model it runs now, which its ledger learns by state transfer. Until
        // then it votes nothing (an empty answer, as for a model not loaded); before 2026-12-07 it would not
        // start without the genesis model loaded too (MODEL_MISMATCH), which its owner may no longer have.
        if (!opts.rejoin || db.state.seq > 0)
          throw new DropbearError(
            'MODEL_MISMATCH',
            `node ${opts.id} must run the model with digest ${current} (genesis or last ordered update); loaded: ${loaded}`,
          );
        opts.logger?.warn(
          { code: 'MODEL_NOT_LOADED_YET', genesisDigest: current, loaded },
          `rejoining without the genesis model of node ${opts.id} loaded: it votes once state transfer brings the ordered update to a loaded model; if the group never updated this node's model, load the genesis model (${current}) and start it again`,
        );
      }
      const cfg = { ...DEFAULT_REPLICA_CONFIG, ...opts.replica };
      const l = db.state;
      const ownResults = db.ownResults();
      const replica =
        l.seq === 0 && db.signedLog().length === 0 && ownResults.length === 0
          ? new Replica(opts.genesis, opts.id, opts.key, cfg)
          : Replica.restore(opts.genesis, opts.id, opts.key, cfg, {
              ...l.replicaState(),
              log: db.signedLog() as PersistRecord[],
              uncertified: db.uncertifiedReceipts(quorumOf(opts.genesis)),
              ownResults,
            });
      if (db.uncleanShutdown && !db.writesMayBeLost)
        // A kill -9, a crash or a power loss: until 2026-12-07 the log said nothing of it, so a node that
        // died and was restarted (by systemd, say) read as one stopped and started on purpose.
        opts.logger?.warn(
          { ledger: opts.ledgerPath, lastExecuted: l.seq, view: replica.view, code: 'UNCLEAN_RESTART' },
          'the previous run of this node did not stop cleanly (killed, crashed, or its machine went down): ' +
            `restored from its ledger (last executed batch ${l.seq}, view ${replica.view}); it catches up ` +
            "from its peers. The end of the previous run's log (or the system log: out of memory?) says why it stopped",
        );
      if (db.writesMayBeLost) {
        // Its last signed records may be gone with the machine's page cache (or, rejoining, all of them):
        // it may have signed in the group's current view already, so it signs in none up to the highest
        // view 2f + 1 peers report in their state responses. The ledger logged a `forgotten` record: the
        // restored replica is forgetful.
        opts.logger?.warn(
          { ledger: opts.ledgerPath },
          (opts.rejoin
            ? 'rejoining with a new ledger (--rejoin): '
            : 'the previous session ended uncleanly with prepared or relaxed durability and the machine has rebooted since: ') +
            'this node signs no phase message or VIEW-CHANGE until 2f+1 peers have told it their views by state transfer, and then only in later views',
        );
      }
      return new NodeHost(opts, db, replica);
    } catch (e) {
      // A ledger left uncleanly (kill -9) stays marked so: closed as cleanly stopped, the start after this
      // failed one (the wrong model, say) did not say UNCLEAN_RESTART (until 2026-12-07).
      if (db.uncleanShutdown) db.abort();
      else db.close();
      throw e;
    }
  }

  /** Starts listening to peers and asks them for anything missed while this node was down. */
  start(): void {
    this.wire.onFrame((from, bytes) => this.onFrame(from, bytes));
    this.step({ type: 'catchUp' });
  }

  get currentBackend(): ModelBackend {
    const b = this.backends.get(hex(this.replica.currentModels[this.id]));
    if (!b) throw new DropbearError('MODEL_MISMATCH', 'the ordered model for this node is not loaded');
    return b;
  }

  private onFrame(from: number, bytes: Uint8Array): void {
    if (this.stopped) return;
    let msg: NodeMessage;
    try {
      msg = decodeMessage(bytes);
    } catch (e) {
      this.obs.badFrame?.(from);
      // The codec's own code (CODEC_TRUNCATED, CODEC_BAD_TAG, …) says what was wrong with the bytes.
      const code = (e as { code?: unknown }).code;
      this.log.warn(
        { peer: from, code: typeof code === 'string' ? code : 'PEER_BAD_MESSAGE', err: (e as Error).message },
        'undecodable frame; dropping the connection',
      );
      this.wire.reportBad(from, 'undecodable message');
      return;
    }
    this.step({ type: 'message', from, msg });
  }

  /**
   * The catch-up in progress (replica.catchingUp), from when and where, and when it was last logged (null:
   * not yet). A node back after hours has millions of requests to fetch from its peers: until 2026-12-07 it
   * said nothing of it, in its log or its status, until it was back.
   */
  private catchUp: { since: number; fromSeq: number; loggedAt: number | null } | null = null;

  private watchCatchUp(): void {
    const r = this.replica;
    if (!r.catchingUp && this.catchUp === null) return;
    const now = performance.now();
    const c = this.catchUp;
    if (!r.catchingUp) {
      if (c?.loggedAt != null) {
        // The batches still missing then (if any) are within the window: the normal case orders them.
        const batches = r.lastExecuted - c.fromSeq;
        const peers = r.peersExecuted;
        this.log.info(
          {
            code: 'CATCH_UP_DONE',
            lastExecuted: r.lastExecuted,
            peersExecuted: peers,
            batches,
            ms: Math.round(now - c.since),
          },
          `caught up: fetched and executed ${batches} ${batches === 1 ? 'batch' : 'batches'} in ` +
            `${((now - c.since) / 1000).toFixed(1)} s; at batch ${r.lastExecuted}` +
            (peers > r.lastExecuted ? ` (the group: ${peers}; the rest by the normal case)` : ''),
        );
      }
      this.catchUp = null;
      return;
    }
    if (c === null) {
      this.catchUp = { since: now, fromSeq: r.lastExecuted, loggedAt: null };
      return this.watchCatchUp();
    }
    const { afterMs, everyMs } = this.catchUpLog;
    if (c.loggedAt === null ? now - c.since < afterMs : now - c.loggedAt < everyMs) return;
    const peers = r.peersExecuted;
    const done = r.lastExecuted - c.fromSeq;
    const secs = (now - c.since) / 1000;
    const behind = Math.max(0, peers - r.lastExecuted);
    if (c.loggedAt === null)
      this.log.info(
        { code: 'CATCH_UP_STARTED', lastExecuted: c.fromSeq, peersExecuted: peers, behind },
        `catching up from its peers: at batch ${c.fromSeq}, ` +
          (peers > r.lastExecuted
            ? `they have executed up to ${peers} (${behind} behind)`
            : 'asking how far they are'),
      );
    else {
      const rate = secs > 0 ? done / secs : 0;
      this.log.info(
        {
          code: 'CATCH_UP_PROGRESS',
          lastExecuted: r.lastExecuted,
          peersExecuted: peers,
          behind,
          batchesPerSecond: Math.round(rate * 10) / 10,
        },
        `catching up: at batch ${r.lastExecuted}` +
          (behind > 0
            ? ` of at least ${peers} (${behind} behind)`
            : ' (how far the group is: not known yet)') +
          `, ${done} ${done === 1 ? 'batch' : 'batches'} executed in ${secs.toFixed(0)} s` +
          (rate > 0 && behind > 0 ? `, ~${Math.ceil(behind / rate)} s to go at this pace` : ''),
      );
    }
    c.loggedAt = now;
  }

  /**
   * Logs a view change as it happens: VIEW_CHANGE_STARTED (warn: this node suspects the primary, or
   * joins others that do) when it asks for a view, VIEW_STARTED (info) when a view begins here. Until
   * 2026-12-06 view changes were logged at no level, and the crash soak's stalls (bench/soak.ts) could be
   * read only from a timeline of `/v1/status`.
   */
  private logView(before: number): void {
    const view = this.replica.view;
    if (this.replica.viewChanging)
      this.log.warn(
        { code: 'VIEW_CHANGE_STARTED', view, from: before },
        `view change: asking for view ${view} (was in view ${before})`,
      );
    else
      this.log.info(
        { code: 'VIEW_STARTED', view, primary: this.replica.primaryOf(view) },
        `view ${view} started; its primary is node ${this.replica.primaryOf(view)}`,
      );
  }

  /** One event into the replica, then every action it asked for. Returns the actions (for callers). */
  step(event: Event): Action[] {
    if (this.stopped) return [];
    try {
      const view = this.replica.view;
      const changing = this.replica.viewChanging;
      const actions = this.replica.step(event, this.clock.timer(), this.clock.wall());
      this.obs.step?.(event, actions);
      if (this.replica.view !== view) this.obs.viewChange?.(this.replica.view);
      if (this.replica.view !== view || this.replica.viewChanging !== changing) this.logView(view);
      this.watchCatchUp();
      this.apply(actions);
      this.schedule();
      return actions;
    } catch (e) {
      this.fail(e);
      return [];
    }
  }

  /**
   * A step failed part way (a ledger write that threw: disk full, an I/O error; an execution): the
   * replica's memory is ahead of its file, and what the step signed may not be recorded. Its sends are
   * dropped, the node stops for good, and onFatal is told (by default the process exits). Before, the
   * transport and the API caught the error and the node went on: its next retransmission sent a PREPARE
   * that no record on disk vouched for, and a failed execution left it a batch behind its ledger for good.
   */
  private fail(cause: unknown): void {
    if (this.failed !== null) return;
    // A full or failing disk, or no descriptor left, gets its own code (LEDGER_DISK_FULL, LEDGER_IO_ERROR,
    // LEDGER_TOO_MANY_FILES), not SQLite's or Node's bare text.
    const e = ledgerWriteFailure(this.db.path, cause) ?? cause;
    this.failed = e;
    this.log.error(
      { err: (e as Error)?.message ?? String(e), code: codeOf(e, 'NODE_STEP_FAILED') },
      'a replica step or ledger write failed: stopping the node',
    );
    this.held = null;
    this.heldForCommit = [];
    this.next = [];
    this.syncing = null;
    // Nothing of the failed turn may be committed later (by stop's flush or close): its sends are dropped.
    try {
      this.db.abandonGroup();
    } catch {
      // The group is lost either way; close() then closes without committing.
    }
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const t of this.retryTimers) clearTimeout(t);
    this.retryTimers.clear();
    this.clearStateBudgets();
    this.onFatal(e);
  }

  /**
   * A message as frames that fit the transport: a FORWARD of many large inputs is split into several
   * (each request fits: the frame limit exceeds the genesis input limit). Anything else too large is
   * dropped with an error in the log (the protocol retransmits or fetches what is missing).
   */
  private frames(msg: NodeMessage): Uint8Array[] {
    // The large messages the replica sends again unchanged (its VIEW-CHANGE, a NEW-VIEW, a PRE-PREPARE
    // it re-broadcasts) are encoded once.
    const key =
      msg.kind === 'viewChange'
        ? msg.vc
        : msg.kind === 'prePrepare'
          ? msg.pp
          : msg.kind === 'newView'
            ? msg
            : null;
    if (key) {
      const have = this.encoded.get(key);
      if (have) return have;
      const fresh = this.framesOf(msg);
      this.encoded.set(key, fresh);
      return fresh;
    }
    return this.framesOf(msg);
  }

  private readonly encoded = new WeakMap<object, Uint8Array[]>();

  private framesOf(msg: NodeMessage): Uint8Array[] {
    let bytes: Uint8Array;
    try {
      bytes = encodeMessage(msg);
    } catch (e) {
      // A message this node cannot encode (over the codec's limits, or too large for memory) is its own
      // fault or a peer's trick, never a reason to stop: it is dropped, loudly.
      this.log.error(
        { kind: msg.kind, code: 'MESSAGE_ENCODE_FAILED', err: String(e) },
        'message does not encode; dropped',
      );
      return [];
    }
    if (bytes.length <= this.maxFrameBytes) return [bytes];
    if (msg.kind === 'forward' && msg.requests.length > 1) {
      const half = Math.ceil(msg.requests.length / 2);
      return [
        ...this.framesOf({ kind: 'forward', requests: msg.requests.slice(0, half) }),
        ...this.framesOf({ kind: 'forward', requests: msg.requests.slice(half) }),
      ];
    }
    if (msg.kind === 'fetched' && msg.requests.length + msg.results.length + msg.prePrepares.length > 1) {
      // Each part split in two halves: every frame stays a valid answer of its own.
      const cut = <T>(xs: T[]): [T[], T[]] => [
        xs.slice(0, Math.ceil(xs.length / 2)),
        xs.slice(Math.ceil(xs.length / 2)),
      ];
      const [r1, r2] = cut(msg.requests);
      const [v1, v2] = cut(msg.results);
      const [p1, p2] = cut(msg.prePrepares);
      return [
        ...this.framesOf({ kind: 'fetched', requests: r1, results: v1, prePrepares: p1 }),
        ...this.framesOf({ kind: 'fetched', requests: r2, results: v2, prePrepares: p2 }),
      ];
    }
    this.log.error(
      { kind: msg.kind, code: 'MESSAGE_TOO_LARGE', bytes: bytes.length, limit: this.maxFrameBytes },
      'message larger than a frame; dropped',
    );
    return [];
  }

  private schedule(): void {
    const at = this.replica.nextWake;
    // A timer set for a wake-up the replica no longer wants (the work it waited for came by message) is
    // moved or cleared rather than left to fire: each wake-up of an idle node costs far more than its
    // work on this kind of machine (BENCHMARKS.md, "Low load"). A later wake-up within a few ms keeps
    // the timer as it is.
    if (at >= this.timerAt && at <= this.timerAt + RESCHEDULE_SLACK_MS) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Number.POSITIVE_INFINITY;
    if (at === Number.POSITIVE_INFINITY) return;
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.timerAt = Number.POSITIVE_INFINITY;
        this.step({ type: 'tick' });
      },
      Math.max(0, at - this.clock.timer()),
    );
  }

  private apply(actions: Action[]): void {
    for (const a of actions) {
      switch (a.type) {
        case 'send': {
          const to = a.to;
          const frames = this.frames(a.msg);
          this.sendKind(a.msg, () => {
            for (const bytes of frames) this.wire.send(to, bytes);
            this.noteSent(a.msg.kind, frames, 1);
          });
          break;
        }
        case 'broadcast': {
          const frames = this.frames(a.msg);
          this.sendKind(a.msg, () => {
            for (const bytes of frames) this.wire.broadcast(bytes);
            this.noteSent(a.msg.kind, frames, this.genesis.nodes.length - 1);
          });
          break;
        }
        case 'persist':
          this.openWrites();
          this.db.persist(a.record);
          break;
        case 'saveResults':
          this.openWrites();
          this.db.saveOwnResults(a.digest, a.signed, a.newest);
          break;
        case 'dropResults':
          this.openWrites();
          this.db.dropOwnResults(a.digests);
          break;
        case 'infer':
          this.infer(a.requests);
          break;
        case 'preview':
          this.step({
            type: 'previewed',
            seq: a.seq,
            receipt: this.db.state.preview(a.seq, a.digest, a.batch, a.entries),
          });
          break;
        case 'execute':
          this.openWrites();
          this.execute(a);
          break;
        case 'certified':
          this.openWrites();
          this.certified(a);
          break;
        case 'serveState':
        case 'serveStatePart':
          this.serveStateWithin(a);
          break;
        case 'evidence':
          this.openWrites();
          this.db.saveEvidence(a.node, a.proof.kind, encode(Evidence, a.proof));
          this.log.warn(
            { peer: a.node, code: 'PEER_EVIDENCE_STORED', kind: a.proof.kind },
            'misbehaviour evidence stored',
          );
          break;
        case 'peerMisbehaved':
          // A signature it made itself does not verify: drop it, the transport keeps it out for a while.
          this.log.warn(
            { peer: a.peer, code: 'PEER_BAD_SIGNATURE', reason: a.reason },
            'peer sent a bad signature (its own or relayed); dropping its connection',
          );
          this.obs.badFrame?.(a.peer);
          this.wire.reportBad(a.peer, a.reason);
          break;
        case 'timer':
          break; // schedule() reads nextWake after every step
        case 'accepted':
        case 'rejected':
        case 'txAccepted':
        case 'txRejected':
          break; // answered to the caller of submit/submitTx
      }
    }
  }

  /**
   * Group commit: the first write in a turn of the event loop opens one ledger transaction, and every
   * write until the next check phase (setImmediate) joins it. The messages of the GUARDED kinds the
   * replica sends after a write are held until that group is durable, so nothing it persisted before
   * signing leaves before it is on disk (PROTOCOL.md, "Durability and restarts"); one sent before any
   * write goes out at once unless older ones are still held. Other kinds never wait (see GUARDED).
   *
   * The fsync runs off the event loop (`syncWalAsync`, libuv's thread pool): the group commits at once
   * and its messages wait in `syncing` while the node goes on reading peers and clients. Groups committed
   * while a sync runs wait in `next` and share one sync after it (under load, the PREPAREs, COMMITs and
   * executions of several turns, batches and peers). Guarded messages leave in the order the replica sent
   * them: one sent while older ones are held waits behind them, even when it needs no sync itself (a
   * retransmission of a message whose record is not yet durable must not overtake it).
   */
  private held: (() => void)[] | null = null;
  /** RESULTS held for the open group's commit only, not for a sync (resultsOut). */
  private heldForCommit: (() => void)[] = [];
  /** Messages waiting for the sync now running; null when none runs. */
  private syncing: (() => void)[] | null = null;
  /** Messages behind them, and whether their groups need a sync of their own. */
  private next: (() => void)[] = [];
  private nextNeedsSync = false;

  private openWrites(): void {
    if (this.held) return;
    this.db.beginGroup();
    this.held = [];
    setImmediate(() => this.commitWrites());
  }

  private commitWrites(): void {
    const held = this.held;
    if (!held) return;
    this.held = null;
    // A failed commit (disk full, I/O error) leaves memory ahead of the file: stop rather than send.
    let needsSync: boolean;
    try {
      needsSync = this.db.commitGroupUnsynced();
    } catch (e) {
      this.fail(e);
      return;
    }
    if (this.heldForCommit.length > 0) {
      const sends = this.heldForCommit;
      this.heldForCommit = [];
      for (const send of sends) send();
    }
    if (this.syncing) {
      for (const send of held) this.next.push(send);
      this.nextNeedsSync ||= needsSync;
    } else {
      this.release(held, needsSync);
    }
  }

  /** Sends `sends` now, or once a sync started for them has called back when their groups need one. */
  private release(sends: (() => void)[], needsSync: boolean): void {
    if (needsSync) this.startSync(sends);
    else for (const send of sends) send();
  }

  private startSync(sends: (() => void)[]): void {
    this.syncing = sends;
    const t0 = performance.now();
    this.db.syncWalAsync((err) => {
      if (this.syncing !== sends) return; // stop() synced and sent them already
      // The file may not hold what these messages vouch for: stop rather than send.
      if (err) {
        this.fail(err);
        return;
      }
      this.obs.walSynced?.(performance.now() - t0);
      this.syncing = null;
      for (const send of sends) send();
      const next = this.next;
      if (next.length === 0) return;
      this.next = [];
      const needsSync = this.nextNeedsSync;
      this.nextNeedsSync = false;
      this.release(next, needsSync);
    });
  }

  /** Commits the open group and waits for the disk here, then sends everything held (used at stop). */
  private flushWrites(): void {
    this.commitWrites();
    if (!this.syncing) return;
    this.db.syncWal();
    const sends = [...this.syncing, ...this.next];
    this.syncing = null;
    this.next = [];
    this.nextNeedsSync = false;
    for (const send of sends) send();
  }

  /** Tells the observer what left for `copies` peers (HostObserver.sent). */
  private noteSent(kind: NodeMessage['kind'], frames: Uint8Array[], copies: number): void {
    if (!this.obs.sent || frames.length === 0) return;
    let bytes = 0;
    for (const f of frames) bytes += f.length;
    this.obs.sent(kind, frames.length * copies, bytes * copies);
  }

  /** A message of a GUARDED kind goes through `out`; RESULTS as `resultsOut` says; any other leaves now. */
  private sendKind(msg: NodeMessage, send: () => void): void {
    if (GUARDED.has(msg.kind)) this.out(send);
    else if (msg.kind === 'results') this.resultsOut(send);
    else send();
  }

  /**
   * This node's RESULTS leave once the write that stores them (the replica's `saveResults`, just before)
   * is as durable as the ledger's durability asks: with `full` they wait for the fsync like the GUARDED
   * kinds (a restarted node knows everything it signed, power loss or not); with `prepared` and `relaxed`
   * only for the group's commit, never behind a sync (a crash of the process loses no committed write,
   * and a node whose machine crashed with writes unsynced votes on no request it may have voted on
   * before: the replica's resultsFloor).
   */
  private resultsOut(send: () => void): void {
    if (this.db.durability === 'full') this.out(send);
    else if (this.held) this.heldForCommit.push(send);
    else send();
  }

  private out(send: () => void): void {
    if (this.held) this.held.push(send);
    else if (this.syncing) this.next.push(send);
    else send();
  }

  /**
   * Requests the replica asked to infer, gathered until the next turn of the event loop: one inference
   * call, one signed result batch and one broadcast for all of them. Without this, each request a client
   * posts (one replica step each, even within one `{requests}` POST) costs a signature here and n-1
   * signature checks at the peers.
   */
  private inferQueue: { requestId: Uint8Array; request: SignedRequest }[] = [];
  private readonly inferTurn = new NextTurn(() => {
    const all = this.inferQueue;
    this.inferQueue = [];
    if (all.length > 0 && !this.stopped) this.inferNow(all);
  });

  private infer(requests: { requestId: Uint8Array; request: SignedRequest }[]): void {
    for (const r of requests) this.inferQueue.push(r);
    this.inferTurn.ask();
  }

  private inferNow(requests: { requestId: Uint8Array; request: SignedRequest }[], attempt = 0): void {
    let backend: ModelBackend;
    try {
      backend = this.currentBackend;
    } catch (e) {
      this.log.error(
        { code: codeOf(e, 'MODEL_NOT_LOADED'), err: (e as Error).message },
        'no model to infer with',
      );
      return;
    }
    const t0 = performance.now();
    this.inferring += requests.length;
    let failed = 0;
    const skipped: Uint8Array[] = [];
    /** Failed for this node's own reasons (load, a dead worker, its remote server): asked again later. */
    const retry: { requestId: Uint8Array; request: SignedRequest }[] = [];
    Promise.all(
      requests.map(async (r) => {
        // A request may be proposed, or even executed, while its input waits behind others (this node's
        // model is slower than a quorum's, or its share of the CPU smaller): its votes are fixed then,
        // and this node's is not among them, so the backend drops the input at its next stage instead of
        // decoding and running it. The replica is told (inferSkipped): should a view change put the
        // request back without its batch, it asks for the inference again.
        const idHex = hex(r.requestId);
        const wanted = () => this.replica.wantsOwnVote(idHex);
        try {
          return { requestId: r.requestId, result: await backend.classify(r.request.input, { wanted }) };
        } catch (e) {
          if (e === INFERENCE_SKIPPED) {
            skipped.push(r.requestId);
            return null;
          }
          // This node's trouble, not the input's: an empty vote here would make the node's answer depend
          // on its load (600 images at once left 88 OVERLOADED, each signed as "no answer"). It is asked
          // again with backoff, and votes empty only after INFER_RETRIES attempts.
          if (isTransientInference(e) && attempt < INFER_RETRIES) {
            retry.push(r);
            return null;
          }
          // An input this model cannot read (or a failed run) gets an empty answer: the node still votes,
          // so the request is certified (as no-agreement if every model fails) instead of stalling.
          failed++;
          if (!(e instanceof DropbearError && e.code.startsWith('INPUT_')))
            this.log.warn(
              { code: codeOf(e, 'INFERENCE_FAILED'), err: (e as Error).message, requestId: hex(r.requestId) },
              'inference failed',
            );
          const empty: Result = { kind: 'class', top: [] };
          return { requestId: r.requestId, result: empty };
        }
      }),
    ).then((all) => {
      this.inferring -= requests.length;
      const results = all.every((x) => x !== null)
        ? (all as InferredResult[])
        : all.filter((x) => x !== null);
      this.obs.inferred?.(results.length, performance.now() - t0, failed, skipped.length);
      this.settled(backend.digest, results, skipped);
      if (retry.length > 0) this.retryInference(retry, attempt + 1);
    });
  }

  private readonly retryTimers = new Set<NodeJS.Timeout>();

  /** Infers `requests` again after a backoff (100 ms doubling), those the replica still wants a vote for. */
  private retryInference(
    requests: { requestId: Uint8Array; request: SignedRequest }[],
    attempt: number,
  ): void {
    const t = setTimeout(
      () => {
        this.retryTimers.delete(t);
        if (this.stopped) return;
        const wanted = requests.filter((r) => this.replica.wantsOwnVote(hex(r.requestId)));
        const dropped = requests.filter((r) => !wanted.includes(r)).map((r) => r.requestId);
        if (dropped.length > 0) this.settled('', [], dropped);
        if (wanted.length > 0) this.inferNow(wanted, attempt);
      },
      100 * 2 ** (attempt - 1),
    );
    this.retryTimers.add(t);
  }

  /**
   * Answers of inference calls, gathered until the next turn of the event loop and then handed to the
   * replica together: one `inferred` event per model, so one signed RESULTS message and one broadcast for
   * every call that finished in the same turn. Calls end together when their inputs shared a model batch
   * (the backend batches inputs of many calls); as one event each, under load (e2e probe, 32 images in
   * flight) about a third of a node's RESULTS messages went out within 0.5 ms of the one before, each
   * signed here and checked at every peer.
   */
  private settledResults = new Map<string, InferredResult[]>();
  private settledSkipped: Uint8Array[] = [];
  private readonly settleTurn = new NextTurn(() => {
    const byModel = this.settledResults;
    const skippedIds = this.settledSkipped;
    this.settledResults = new Map();
    this.settledSkipped = [];
    if (skippedIds.length > 0) this.step({ type: 'inferSkipped', requestIds: skippedIds });
    for (const [model, list] of byModel) {
      const modelDigest = Uint8Array.from(Buffer.from(model, 'hex'));
      for (let i = 0; i < list.length; i += SETTLED_PER_EVENT)
        this.step({ type: 'inferred', modelDigest, results: list.slice(i, i + SETTLED_PER_EVENT) });
    }
  });

  private settled(digest: string, results: InferredResult[], skipped: Uint8Array[]): void {
    if (results.length > 0) {
      const have = this.settledResults.get(digest);
      if (have) for (const r of results) have.push(r);
      else this.settledResults.set(digest, results);
    }
    for (const id of skipped) this.settledSkipped.push(id);
    this.settleTurn.ask();
  }

  private execute(a: Extract<Action, { type: 'execute' }>): void {
    const exec = this.db.execute(a.seq, a.view, a.digest, a.batch, a.entries, {
      requests: a.requests,
      results: a.results,
      commitProof: a.commitProof,
    });
    this.pendingExec.set(a.seq, exec);
    if (exec.txs.length > 0) this.noteTxs(a.seq, exec.txs);
    this.obs.executed?.(a.seq, a.entries.length);
    this.noteExecuted(a.entries.length);
    const before = hex(this.replica.currentModels[this.id]);
    this.step({
      type: 'executed',
      seq: a.seq,
      receipt: exec.receipt,
      requeued: exec.requeued,
      models: exec.models,
      modelVersions: exec.modelVersions,
      deposits: exec.deposits,
      fees: exec.fees,
      feeVersions: exec.feeVersions,
      withdrawals: exec.withdrawals,
      refunds: exec.refunds,
      stateDigest: a.checkpoint ? this.db.state.stateDigest() : undefined,
    });
    if (this.submittedTxs.size > 0) this.noteSuperseded(a.seq);
    const after = hex(this.replica.currentModels[this.id]);
    if (before !== after) {
      const loaded = this.backends.has(after);
      this.log[loaded ? 'info' : 'error'](
        { seq: a.seq, digest: after },
        loaded
          ? 'model update ordered: now voting with the new model'
          : 'model update ordered for a model this node has not loaded',
      );
    }
  }

  private certified(a: Extract<Action, { type: 'certified' }>): void {
    this.db.addReceiptSignatures(a.seq, a.signatures, a.receiptHash);
    const exec = this.pendingExec.get(a.seq);
    if (!exec) return;
    this.pendingExec.delete(a.seq);
    const certs = buildCertificates(exec.outcomes, exec.tree, exec.receipt, a.signatures, this.replica.q);
    this.obs.certified?.(certs);
    for (const c of certs) {
      const id = hex(c.outcome.requestId);
      const ws = this.waiters.get(id);
      if (ws) {
        this.waiters.delete(id);
        for (const w of ws) {
          clearTimeout(w.timer);
          w.resolve(c);
        }
      }
    }
    // Old executions whose certificate never formed here (state transfer) need not be kept forever.
    for (const s of this.pendingExec.keys()) if (s < a.seq - 1024) this.pendingExec.delete(s);
  }

  /**
   * Answers a peer's state request with one frame at most `maxFrameBytes` long. The batches get the room
   * the rest of the answer leaves (its NEW-VIEW, of q VIEW-CHANGEs with their prepared certificates, can
   * be megabytes), and never more than half a frame, as before; the peer asks again from where the
   * answer ends. Before, they got half a frame whatever the rest took, and an answer
   * over a frame made `wire.send` throw: in this step (the node stopped) or in the fsync callback that
   * released it (an uncaught exception), at the request of any peer.
   *
   * An answer with no batches tells the peer this node has nothing newer (it stops catching up until it
   * sees itself behind again, and asks again then): when the NEW-VIEW leaves no room for the next batch,
   * the answer goes without it (as during a view change) and carries the batch. The NEW-VIEW comes with
   * the answer that has no batch left to give. A next batch that fits in no frame goes without its
   * requests and RESULTS (STATE_BATCH_IN_PARTS): the peer checks its proof and asks for them in parts
   * (serveStatePart). Until 2026-12-06 it was not sent at all, and a node behind such a batch (a burst of
   * requests in one batch, a large group) asked again forever and never caught up. Only when even the batch
   * and its proof fit in no frame, or an answer fits in none even empty, is nothing sent (a warning with a
   * code says so).
   */
  private serveState(a: Extract<Action, { type: 'serveState' }>): number {
    try {
      const nv = a.newView;
      const newView = nv
        ? { from: nv.from, newView: nv.newView, viewChanges: nv.viewChanges, proposals: nv.proposals }
        : null;
      let answer = this.stateAnswer(a, newView);
      const noBatch = (x: typeof answer) => x === null || (x.msg.batches.length === 0 && x.had > 0);
      // A next batch whole without the NEW-VIEW beats its proof alone beside it (parts cost round trips).
      if (newView && (noBatch(answer) || answer?.inParts)) {
        const bare = this.stateAnswer(a, null);
        if (bare && !noBatch(bare) && (noBatch(answer) || !bare.inParts)) {
          this.log.info(
            { peer: a.to, fromSeq: a.fromSeq, code: 'STATE_NEWVIEW_LEFT_OUT', limit: this.maxFrameBytes },
            'state response: no room for the NEW-VIEW beside the next batch; sent without it',
          );
          answer = bare;
        } else if (answer === null) answer = bare;
      }
      if (answer === null) {
        this.log.warn(
          { peer: a.to, fromSeq: a.fromSeq, code: 'STATE_RESPONSE_TOO_LARGE', limit: this.maxFrameBytes },
          'state response larger than a frame even without batches; not sent',
        );
        return 0;
      }
      if (answer.msg.batches.length === 0 && answer.had > 0) {
        this.log.warn(
          { peer: a.to, seq: a.fromSeq, code: 'STATE_BATCH_TOO_LARGE', limit: this.maxFrameBytes },
          'state response: not even the next batch and its proof fit in a frame; not sent',
        );
        return 0;
      }
      if (answer.inParts)
        this.log.info(
          { peer: a.to, seq: a.fromSeq, code: 'STATE_BATCH_IN_PARTS', limit: this.maxFrameBytes },
          'state response: the next batch does not fit in a frame; sent without its requests and RESULTS',
        );
      return this.sendState(a.to, answer.msg.kind, answer.bytes, 'state response not sent');
    } catch (e) {
      // Reading or encoding what was asked for failed: the peer goes without an answer, the node goes on.
      this.log.error(
        { peer: a.to, fromSeq: a.fromSeq, code: 'STATE_RESPONSE_FAILED', err: String(e) },
        'state response not sent',
      );
      return 0;
    }
  }

  /**
   * The state response with `newView` and as many batches from `a.fromSeq` on as fit in a frame beside it
   * (at most 64, at most half a frame of them), encoded; `had`: how many the ledger offered before any were
   * taken out to fit. When not even the first fits, it goes without its requests and RESULTS if that fits
   * (`inParts`). Null when even the answer without batches is over a frame.
   */
  private stateAnswer(
    a: Extract<Action, { type: 'serveState' }>,
    newView: StateResponse['newView'],
  ): { msg: StateResponse; bytes: Uint8Array; had: number; inParts?: true } | null {
    const max = this.maxFrameBytes;
    const of = (batches: StateResponse['batches']): StateResponse => ({
      kind: 'stateResponse',
      from: this.id,
      batches,
      view: a.view,
      newView,
      checkpoint: a.checkpoint,
    });
    const empty = encodeMessage(of([]));
    if (empty.length > max) return null;
    // stateBatches gives the first batch even over the budget: it is taken out below if it does not fit.
    const batches = this.db.stateBatches(a.fromSeq, 64, Math.min(max / 2, max - empty.length));
    const had = batches.length;
    const first = batches[0];
    while (batches.length > 0) {
      const msg = of(batches);
      const bytes = encodeMessage(msg);
      if (bytes.length <= max) return { msg, bytes, had };
      batches.pop();
    }
    if (first) {
      const msg = of([{ ...first, requests: [], results: [] }]);
      const bytes = encodeMessage(msg);
      if (bytes.length <= max) return { msg, bytes, had, inParts: true };
    }
    return { msg: of([]), bytes: empty, had };
  }

  /**
   * Answers a peer assembling executed batch `a.seq` from parts (it has the batch and its proof): the
   * requests and RESULTS the batch names (stateBatchReferences) from positions `a.requests` and
   * `a.results` on, in that order, as many as fit in one frame; requests first, RESULTS once the requests
   * are all in. Nothing when this node's batch `a.seq` is another (or none), or nothing is left to send; a
   * single request or RESULTS too large for a frame is not sent (STATE_PART_TOO_LARGE): only a peer with
   * larger frames can send it.
   */
  private serveStatePart(a: Extract<Action, { type: 'serveStatePart' }>): number {
    try {
      const sb = this.db.stateBatch(a.seq);
      if (!sb || !equalBytes(batchDigestOf(sb.batch), a.digest)) return 0;
      const refs = stateBatchReferences(sb.batch);
      const requestsById = new Map(sb.requests.map((sr) => [hex(requestIdOf(sr)), sr]));
      const resultsByDigest = new Map(sb.results.map((x) => [hex(resultsDigestOf(x)), x]));
      const of = (requests: SignedRequest[], results: SignedResults[]): NodeMessage => ({
        kind: 'statePart',
        from: this.id,
        seq: a.seq,
        digest: a.digest,
        requests,
        results,
      });
      // Each array's length prefix grows by at most 3 bytes over the empty message's.
      let size = encodeMessage(of([], [])).length + 6;
      let tooLarge = false;
      /** Adds items from position `from` on while they fit; false once the part is full (or at a gap). */
      const take = <T>(ids: Uint8Array[], from: number, by: Map<string, T>, codec: Codec<T>, out: T[]) => {
        for (let i = from; i < ids.length; i++) {
          const x = by.get(hex(ids[i]));
          // Not held (a ledger that kept only part of it): the peer counts positions from the start of
          // each list, so the part ends here and it gets the rest elsewhere.
          if (x === undefined || out.length >= LIMITS.batchEntries) return false;
          const len = encode(codec, x).length;
          if (size + len > this.maxFrameBytes) {
            tooLarge = true;
            return false;
          }
          size += len;
          out.push(x);
        }
        return true;
      };
      const requests: SignedRequest[] = [];
      const results: SignedResults[] = [];
      if (take(refs.requests, a.requests, requestsById, SignedRequest, requests))
        take(refs.results, a.results, resultsByDigest, SignedResults, results);
      if (requests.length + results.length === 0) {
        if (tooLarge)
          this.log.warn(
            { peer: a.to, seq: a.seq, code: 'STATE_PART_TOO_LARGE', limit: this.maxFrameBytes },
            'state part: the next request or RESULTS of the batch does not fit in a frame; not sent',
          );
        return 0;
      }
      const msg = of(requests, results);
      return this.sendState(a.to, msg.kind, encodeMessage(msg), 'state part not sent');
    } catch (e) {
      this.log.error(
        { peer: a.to, seq: a.seq, code: 'STATE_RESPONSE_FAILED', err: String(e) },
        'state part not sent',
      );
      return 0;
    }
  }

  /**
   * Serves a peer's state request or part request within its byte budget (stateServeBytesPerSec, a token
   * bucket of one frame): a peer's request costs this node a read of the ledger and an answer of up to a
   * frame, 16 MiB, for a message of ~20 bytes, and a faulty peer could ask without end, keeping this node's
   * thread busy reading and encoding (the honest peers' work waits behind it) and its link full. Over the
   * budget, the peer's latest request waits for it (an earlier one waiting is replaced: a peer catching up
   * asks again from where it is), so an honest node catching up is slowed to the budget's pace, never
   * stalled. Until 2026-12-06 every request was served at once.
   */
  private serveStateWithin(a: Extract<Action, { type: 'serveState' | 'serveStatePart' }>): void {
    if (this.stopped) return;
    const now = performance.now();
    let b = this.stateBudgets.get(a.to);
    if (!b) {
      b = { tokens: this.maxFrameBytes, at: now, waiting: null, timer: null };
      this.stateBudgets.set(a.to, b);
    }
    b.tokens = Math.min(this.maxFrameBytes, b.tokens + ((now - b.at) * this.stateServeRate) / 1000);
    b.at = now;
    if (b.tokens <= 0) {
      if (b.waiting === null) this.stateDeferred++;
      b.waiting = a;
      if (b.timer === null) {
        const budget = b;
        budget.timer = setTimeout(
          () => {
            budget.timer = null;
            const next = budget.waiting;
            budget.waiting = null;
            if (next) this.serveStateWithin(next);
          },
          Math.ceil((-b.tokens * 1000) / this.stateServeRate) + 1,
        );
      }
      return;
    }
    b.tokens -= a.type === 'serveState' ? this.serveState(a) : this.serveStatePart(a);
  }

  /** Per peer: its state-answer budget (serveStateWithin). */
  private readonly stateBudgets = new Map<
    number,
    {
      tokens: number;
      at: number;
      waiting: Extract<Action, { type: 'serveState' | 'serveStatePart' }> | null;
      timer: NodeJS.Timeout | null;
    }
  >();
  private readonly stateServeRate: number;
  private readonly catchUpLog: { afterMs: number; everyMs: number };
  /** State requests that had to wait for their peer's budget (serveStateWithin). */
  stateDeferred = 0;

  private clearStateBudgets(): void {
    for (const b of this.stateBudgets.values()) if (b.timer) clearTimeout(b.timer);
    this.stateBudgets.clear();
  }

  /**
   * Sends a state answer (a response or a part) to one peer in the output phase; a failed send is logged.
   * Returns its size.
   */
  private sendState(to: number, kind: NodeMessage['kind'], bytes: Uint8Array, failed: string): number {
    this.out(() => {
      try {
        this.wire.send(to, bytes);
        this.noteSent(kind, [bytes], 1);
      } catch (e) {
        this.log.error({ peer: to, code: 'STATE_RESPONSE_FAILED', err: String(e) }, failed);
      }
    });
    return bytes.length;
  }

  // ---------------------------------------------------------------- what the API calls

  /**
   * Records when a request was accepted here, and forgets the accept times older than the group's expiry
   * and ACCEPT_KEEP_MARGIN_MS: such a request can no longer be certified (it was ordered before its expiry,
   * or never will be). Kept oldest first (a map keeps insertion order; the clock never goes back), so only
   * the stale ones at the front are looked at. Until 2026-12-07 they were swept only on every 256th
   * certificate formed here (NodeMetrics): a node that accepted requests and formed no certificate (its
   * group stalled, or it was behind) kept one entry per accepted request for as long as that lasted.
   */
  private rememberAccepted(id: string): void {
    const now = performance.now();
    this.acceptedAt.delete(id);
    this.acceptedAt.set(id, now);
    // At most once a second: the entries certified here are deleted as they certify, and a Map's deleted
    // entries stay as holes at its front (until it is rehashed) that every walk from the start steps over.
    if (now < this.acceptSweepAt) return;
    this.acceptSweepAt = now + 1000;
    const cutoff = now - this.genesis.params.expiryMs - ACCEPT_KEEP_MARGIN_MS;
    for (const [old, at] of this.acceptedAt) {
      if (at >= cutoff) break;
      this.acceptedAt.delete(old);
    }
  }

  /** `sentToAll`: the client says it sent this request to every node itself (ReplicaConfig.lateForwardMs). */
  submit(sr: SignedRequest, opts: { sentToAll?: boolean } = {}): SubmitOutcome {
    if (this.stopped)
      return { ok: false, requestId: null, code: 'NODE_STOPPED', message: 'the node is stopping' };
    const actions = this.step({ type: 'request', request: sr, sentToAll: opts.sentToAll === true });
    for (const a of actions) {
      if (a.type === 'accepted') {
        this.rememberAccepted(hex(a.requestId));
        this.obs.accepted?.(a.requestId);
        return { ok: true, requestId: a.requestId };
      }
      if (a.type === 'rejected') {
        // A request this node holds or executed already is no refusal: the API answers it as the first
        // copy (202 or its certificate). Counted as REQUEST_DUPLICATE, every client retry and every copy a
        // peer forwarded first showed as a refusal in dropbear_requests_rejected_total.
        if (a.code !== 'REQUEST_DUPLICATE' && a.code !== 'REQUEST_ALREADY_EXECUTED')
          this.obs.rejected?.(a.code);
        return { ok: false, requestId: a.requestId, code: a.code, message: a.message };
      }
    }
    // Nothing said: the replica already holds it (a resubmission); the certificate will come as usual.
    return { ok: true, requestId: requestIdOf(sr) };
  }

  submitTx(tx: Tx): TxOutcome {
    // The very same transaction (its id covers the signature) applied by a batch executed here, in this
    // session or before (the ledger keeps every fate): said so, with its batch. The replica's own memory of
    // them holds the latest 1024 of this session, and an older replay read TX_STALE_VERSION (until
    // 2026-12-07). One carried without effect goes on to the checks below: it may have come before its
    // turn (another primary's order) and still apply; if its place is taken, it is TX_STALE_VERSION there.
    const id = txIdOf(tx);
    const fate = this.db.txFate(id);
    if (fate?.applied)
      return {
        ok: false,
        txId: id,
        code: 'TX_ALREADY_EXECUTED',
        message: `transaction already ordered: executed and applied in batch ${fate.seq}`,
      };
    if (tx.kind === 'deposit') {
      // The ledger would use the serial and credit nothing (state.ts, applyTx): refused here with a reason.
      // Counted with the deposits waiting to be ordered, as if all applied: only one of a serial applies, so
      // the largest of each serial but this one's (a rival of this one is replaced by it). Until 2026-12-07
      // only the executed total counted, and of two waiting deposits that together passed the bound the
      // second used its serial and credited nothing. The bound is on all the money there ever was (the
      // genesis's and every deposit's, the ledger's rule: withdrawals take money out but not from this).
      const total = this.db.state.genesisMoney + this.db.state.minted;
      const { waiting, serials } = this.waitingBySerial(tx.deposit.serial, (t) =>
        t.kind === 'deposit' ? { serial: t.deposit.serial, amount: t.deposit.amount } : null,
      );
      if (total + waiting + tx.deposit.amount > Number.MAX_SAFE_INTEGER) {
        const held =
          waiting > 0 ? ` and ${waiting} waiting to be deposited (serials ${serials.join(', ')})` : '';
        return this.refused(
          tx,
          'TX_DEPOSIT_TOO_LARGE',
          `the genesis balances and the deposits applied come to ${total}${held} (withdrawals do not lower this bound); a deposit of ${tx.deposit.amount} would take it past 2^53 − 1 (${Number.MAX_SAFE_INTEGER})`,
        );
      }
      return this.submitChecked(tx);
    }
    // A refund's or transfer's balance: Replica.checkTx (fundsOf). A key with no account is told so here (it
    // read "the client's balance is 0", like an emptied account), after the replica's checks (a forged one
    // is TX_BAD_SIGNATURE).
    const spend = clientSpendOf(tx);
    if (spend !== null && !this.db.state.balances.has(hex(spend.client)))
      return this.refused(
        tx,
        tx.kind === 'transfer' ? 'TX_TRANSFER_TOO_LARGE' : 'TX_REFUND_TOO_LARGE',
        `no account for the client ${toB64u(spend.client)}: neither the genesis, a deposit nor a transfer made one; a ${tx.kind} of it would have no effect`,
      );
    // A transfer that would open an account past the ledger's bound would have no effect (state.ts).
    if (
      tx.kind === 'transfer' &&
      !this.db.state.balances.has(hex(tx.transfer.to)) &&
      this.db.state.balances.size >= MAX_ACCOUNTS_BY_TRANSFER
    )
      return this.refused(
        tx,
        'TX_TRANSFER_TOO_LARGE',
        `the ledger holds ${this.db.state.balances.size} accounts, the most a transfer may open (${MAX_ACCOUNTS_BY_TRANSFER}): transfer to a key that has an account`,
      );
    if (tx.kind === 'feeChange' || spend !== null) return this.submitChecked(tx);
    if (tx.kind === 'withdrawal') {
      // The ledger would use the serial and take nothing (state.ts, applyTx): refused here with a reason.
      // Against what the node earned as of the last executed batch, less the withdrawals of it waiting here.
      // As for deposits: the largest waiting of each serial but this one's (only one of a serial applies).
      const w = tx.withdrawal;
      if (w.node < this.db.state.n) {
        const { waiting } = this.waitingBySerial(w.serial, (t) =>
          t.kind === 'withdrawal' && t.withdrawal.node === w.node
            ? { serial: t.withdrawal.serial, amount: t.withdrawal.amount }
            : null,
        );
        const payable = this.db.state.payable(w.node);
        if (w.amount > payable - waiting) {
          return this.refused(
            tx,
            'TX_WITHDRAWAL_TOO_LARGE',
            `node ${w.node} may withdraw ${payable} (earned ${this.db.state.stats[w.node].earned}, withdrawn ${this.db.state.withdrawn[w.node]}${waiting > 0 ? `, ${waiting} more in withdrawals waiting to be ordered` : ''}), not ${w.amount}`,
          );
        }
      }
      return this.submitChecked(tx);
    }
    // An update of this very node to a model it has not loaded: once ordered, this node would have no model
    // to infer with (it would vote on nothing), and it could not start again without that model. Refused
    // here, after the checks any node applies (a forged or stale one gets their answer).
    if (tx.kind !== 'modelUpdate') return this.submitChecked(tx); // every other kind: above
    const u = tx.update;
    const next = u.node === this.id ? this.backends.get(hex(u.newDigest)) : undefined;
    if (u.node === this.id && !next) {
      return this.refused(
        tx,
        'TX_MODEL_NOT_LOADED',
        `node ${this.id} has not loaded the model ${hex(u.newDigest)}: load it beside the current one first (extraModels in its config) and restart the node`,
      );
    }
    // A loaded model the group cannot compare or feed (another label set, another input): refused here too,
    // since only this node knows the specs (until 2026-12-07 it was taken and ordered).
    // Against the current model when it is loaded: one ordered through another node may not be, and an
    // update back to a loaded model is then the way out (currentBackend threw MODEL_MISMATCH here).
    const now = this.backends.get(hex(this.replica.currentModels[this.id]));
    const problem = next && now ? modelUpdateProblem(now.spec, next.spec) : null;
    if (problem) {
      return this.refused(tx, 'TX_MODEL_INCOMPATIBLE', `node ${this.id} cannot switch models: ${problem}`);
    }
    return this.submitChecked(tx);
  }

  /**
   * A transaction this host refuses for its own reason (`code`, `message`), after the checks any node
   * applies: a forged, stale or duplicate one gets the replica's answer instead.
   */
  private refused(tx: Tx, code: TxRejectCode, message: string): TxOutcome {
    const c = this.replica.checkTx(tx);
    // The replica's own refusal of the same code (a refund over the balance) gives way to this one's reason.
    if (!c.ok && c.code !== code) return { ok: false, txId: c.id, code: c.code, message: c.message };
    return { ok: false, txId: c.id, code, message };
  }

  /**
   * The amounts of the transactions waiting here that `pick` takes (by serial): only one of a serial
   * applies, so the largest of each, serial `except` left out (a rival of the one submitted, which it
   * replaces); with the serials counted.
   */
  private waitingBySerial(
    except: number,
    pick: (t: Tx) => { serial: number; amount: number } | null,
  ): { waiting: number; serials: number[] } {
    const largest = new Map<number, number>();
    for (const t of this.replica.pendingTxs) {
      const p = pick(t);
      if (p && p.serial !== except) largest.set(p.serial, Math.max(largest.get(p.serial) ?? 0, p.amount));
    }
    let waiting = 0;
    for (const a of largest.values()) waiting += a;
    return { waiting, serials: [...largest.keys()].sort((a, b) => a - b) };
  }

  /** Hands a transaction to the replica: its answer (taken, or why not). */
  private submitChecked(tx: Tx): TxOutcome {
    const actions = this.step({ type: 'submitTx', tx });
    for (const a of actions) {
      if (a.type === 'txAccepted') {
        this.submittedTxs.add(hex(a.txId));
        while (this.submittedTxs.size > TX_RESULTS_KEPT)
          this.submittedTxs.delete(this.submittedTxs.values().next().value as string);
        return { ok: true, txId: a.txId };
      }
      if (a.type === 'txRejected') return { ok: false, txId: a.txId, code: a.code, message: a.message };
    }
    return { ok: true, txId: txIdOf(tx) };
  }

  /**
   * What became of the latest TX_RESULTS_KEPT transactions executed or superseded here since the start
   * (txStatus; an executed one older than that, or of an earlier session, is read from the ledger).
   */
  private readonly txResults = new Map<string, { seq: number; applied: boolean; superseded?: true }>();

  /** Transactions submitted here and not yet executed or superseded (noteSuperseded), by id (hex). */
  private readonly submittedTxs = new Set<string>();

  /**
   * After batch `seq` executed: a transaction submitted here that the batch did not carry and the replica no
   * longer holds was superseded (another of its version or serial was ordered first: the replica drops it
   * from its pool, settleTxs); it can never apply. Noted so that GET /v1/txs/:txId says so: it answered
   * TX_NOT_FOUND, and `dropbear deposit` waited out its --wait for a deposit whose serial a rival had taken
   * (the crash soak's rivals, 2026-12-07).
   */
  private noteSuperseded(seq: number): void {
    for (const id of this.submittedTxs) {
      if (this.txResults.has(id)) {
        this.submittedTxs.delete(id);
        continue;
      }
      if (this.replica.pendingTx(id)) continue;
      this.submittedTxs.delete(id);
      this.txResults.set(id, { seq, applied: false, superseded: true });
    }
    while (this.txResults.size > TX_RESULTS_KEPT)
      this.txResults.delete(this.txResults.keys().next().value as string);
  }

  private noteTxs(seq: number, txs: { id: Uint8Array; applied: boolean }[]): void {
    for (const t of txs) {
      const k = hex(t.id);
      // A transaction one batch applied and a later batch carried again (a replay) keeps its first answer:
      // the ledger's, which this batch's execution has just written (the first batch may be of an earlier
      // session, or older than the latest TX_RESULTS_KEPT, which this map no longer holds).
      if (!this.txResults.get(k)?.applied)
        this.txResults.set(k, (t.applied ? null : this.db.txFate(t.id)) ?? { seq, applied: t.applied });
    }
    while (this.txResults.size > TX_RESULTS_KEPT)
      this.txResults.delete(this.txResults.keys().next().value as string);
  }

  /**
   * A transaction's fate at this node, by id (lowercase hex): waiting to be ordered; executed in batch
   * `seq` and applied (or without effect: another of its version or serial ordered first, a replay, or a
   * deposit that would overflow, a withdrawal of more than its node could withdraw); superseded before it was ordered, as of batch `seq` (submitted here:
   * another of its version or serial was ordered first, and it never will be); null when unknown here
   * (never seen, or superseded before the node started or before the latest TX_RESULTS_KEPT). An executed
   * one the memory no longer holds (executed before the node started, or before the latest
   * TX_RESULTS_KEPT) is answered from the ledger's `txs` table (SqliteLedger.txFate, since ledger schema
   * 11; it was null, TX_NOT_FOUND at the API, and a `dropbear deposit` waiting across a restart timed out).
   * 'superseded' is kept in memory only: it is this node's view of a transaction no batch carried.
   */
  txStatus(
    idHex: string,
  ):
    | { status: 'pending' }
    | { status: 'executed'; seq: number; applied: boolean }
    | { status: 'superseded'; seq: number }
    | null {
    const done = this.txResults.get(idHex);
    if (done?.superseded) return { status: 'superseded', seq: done.seq };
    if (done?.applied) return { status: 'executed', seq: done.seq, applied: true };
    // Carried without effect but waiting again (it came before its version's turn, another primary's
    // order: replica.settleTxs keeps it): pending, as it may yet apply, not "without effect" (which
    // `dropbear deposit` and the others read as superseded).
    if (this.replica.pendingTx(idHex)) return { status: 'pending' };
    if (done) return { status: 'executed', seq: done.seq, applied: done.applied };
    const stored = this.db.txFate(idHex);
    return stored ? { status: 'executed', seq: stored.seq, applied: stored.applied } : null;
  }

  /**
   * The transaction itself, by id (lowercase hex), where this node has it: waiting here, or in the batch
   * `seq` that carried it (read from the ledger); null otherwise (one superseded, never carried, is not
   * kept). Its id is the hash of its bytes, so a caller checks what a node returns (txIdOf).
   */
  txOf(idHex: string, seq?: number): Tx | null {
    const pending = this.replica.pendingTx(idHex);
    if (pending || seq === undefined) return pending;
    return this.db.batch(seq)?.batch.txs.find((tx) => hex(txIdOf(tx)) === idHex) ?? null;
  }

  certificate(requestId: string): Certificate | null {
    return this.db.certificate(requestId);
  }

  /**
   * Resolves with the certificate when this node has it, or null after `timeoutMs`. `signal` cancels the
   * wait: once it aborts (the API aborts it when the HTTP request's connection closes), the waiter's timer
   * is cleared, it leaves `waiting`, and the promise resolves with null at once. A signal shared by many
   * waits (a POST of many requests) takes one listener per wait: raise its limit (events.setMaxListeners).
   */
  waitCertificate(requestId: string, timeoutMs: number, signal?: AbortSignal): Promise<Certificate | null> {
    const have = this.certificate(requestId);
    if (have || timeoutMs <= 0 || signal?.aborted) return Promise.resolve(have);
    return new Promise((resolve) => {
      const drop = () => {
        const ws = this.waiters.get(requestId);
        if (!ws) return;
        const i = ws.indexOf(w);
        if (i >= 0) ws.splice(i, 1);
        if (ws.length === 0) this.waiters.delete(requestId);
      };
      const onAbort = () => {
        clearTimeout(w.timer);
        drop();
        resolve(null);
      };
      const w: Waiter = {
        resolve: (c) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(c);
        },
        timer: setTimeout(() => {
          drop();
          w.resolve(this.certificate(requestId));
        }, timeoutMs),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const ws = this.waiters.get(requestId);
      if (ws) ws.push(w);
      else this.waiters.set(requestId, [w]);
    });
  }

  /** Requests executed per second over the last RATE_WINDOW_MS (what admission control sizes the queue by). */
  private readonly executedRate = new RateWindow(RATE_WINDOW_MS);

  // On the monotonic clock: on the wall clock, a step back kept the rate from before the step for as long
  // as the step (and admission control sized the queue by it), a step forward dropped it to 0.
  private noteExecuted(n: number): void {
    this.executedRate.add(performance.now(), n);
  }

  executedPerSecond(): number {
    return this.executedRate.perSecond(performance.now());
  }

  status() {
    const r = this.replica;
    const n = this.genesis.nodes.length;
    return {
      id: this.id,
      view: r.view,
      primary: r.view % n,
      viewChanging: r.viewChanging,
      viewChanges: r.viewChanges,
      executedPerSecond: Math.round(this.executedPerSecond()),
      lastExecuted: r.lastExecuted,
      /** Fetching executed batches from its peers (state transfer): behind them, or finding out whether. */
      catchingUp: r.catchingUp,
      /** Batches the group (f + 1 peers, by their signed receipts) executed beyond this node's last. */
      behindBy: Math.max(0, r.peersExecuted - r.lastExecuted),
      /** Requests held that can still execute (what the admission limits count). */
      pendingRequests: r.pendingRequests,
      /** Requests held that expired unordered, waiting to be forgotten (not in pendingRequests). */
      expiredHeld: r.expiredHeldRequests,
      /** Requests accepted here that expired unordered, counted as they are forgotten (since the start). */
      expiredUnordered: r.forgottenExpired,
      /** Requests peers forwarded whose client's balance here did not cover their maxFee (not taken). */
      unfundedForwards: r.unfundedForwards,
      inferring: this.inferring,
      models: r.currentModels.map((d) => hex(d)),
      modelVersions: [...r.currentModelVersions],
      /**
       * The model updates this node holds, submitted and not yet ordered (`digest` in hex): an owner's
       * `dropbear status` tells an update waiting from one never taken or lost.
       */
      pendingModelUpdates: r.pendingTxs.flatMap((tx) =>
        tx.kind === 'modelUpdate'
          ? [{ node: tx.update.node, version: tx.update.version, digest: hex(tx.update.newDigest) }]
          : [],
      ),
      /** Each node's per-request fee and fee version (0: the genesis fee). */
      fees: [...r.currentFees],
      feeVersions: [...r.currentFeeVersions],
      /** The fee changes this node holds, submitted and not yet ordered. */
      pendingFeeChanges: r.pendingTxs.flatMap((tx) =>
        tx.kind === 'feeChange'
          ? [{ node: tx.change.node, version: tx.change.version, fee: tx.change.fee }]
          : [],
      ),
      /** Each node's withdrawals applied (the last serial; its next withdrawal is this + 1). */
      withdrawals: [...r.currentWithdrawals],
      /** The withdrawals this node holds, submitted and not yet ordered. */
      pendingWithdrawals: r.pendingTxs.flatMap((tx) =>
        tx.kind === 'withdrawal'
          ? [{ node: tx.withdrawal.node, serial: tx.withdrawal.serial, amount: tx.withdrawal.amount }]
          : [],
      ),
      /** The treasury's deposits applied (the last serial; the next deposit is this + 1). */
      deposits: r.currentDeposits,
      /** The deposits this node holds, submitted and not yet ordered (`client` base64url). */
      pendingDeposits: r.pendingTxs.flatMap((tx) =>
        tx.kind === 'deposit'
          ? [{ serial: tx.deposit.serial, client: toB64u(tx.deposit.client), amount: tx.deposit.amount }]
          : [],
      ),
      /**
       * The clients' refunds and transfers this node holds, submitted and not yet ordered (keys base64url): a
       * client's next serial counts them (its refunds and transfers share one sequence).
       */
      pendingRefunds: r.pendingTxs.flatMap((tx) =>
        tx.kind === 'refund'
          ? [{ client: toB64u(tx.refund.client), serial: tx.refund.serial, amount: tx.refund.amount }]
          : [],
      ),
      pendingTransfers: r.pendingTxs.flatMap((tx) =>
        tx.kind === 'transfer'
          ? [
              {
                client: toB64u(tx.transfer.client),
                to: toB64u(tx.transfer.to),
                serial: tx.transfer.serial,
                amount: tx.transfer.amount,
              },
            ]
          : [],
      ),
      uptimeMs: Math.round(performance.now() - this.startedMono),
      durability: this.db.durability,
      /**
       * The lowest view this node signs phase messages or a VIEW-CHANGE in: 0 normally; after a restart
       * that may have lost signed records, null until 2f + 1 peers have reported their views by state
       * transfer, then the highest of them + 1.
       */
      signFloorView: Number.isFinite(r.signFloorView) ? r.signFloorView : null,
    };
  }

  get waiting(): number {
    let n = 0;
    for (const ws of this.waiters.values()) n += ws.length;
    return n;
  }

  /** Stops timers and answers waiters; the caller closes the wire and then `close()`s the ledger. */
  stop(): void {
    // After a failed write nothing held may leave, and the open group was dropped (fail).
    if (this.failed === null) this.flushWrites();
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const t of this.retryTimers) clearTimeout(t);
    this.retryTimers.clear();
    this.clearStateBudgets();
    for (const ws of this.waiters.values())
      for (const w of ws) {
        clearTimeout(w.timer);
        w.resolve(null);
      }
    this.waiters.clear();
  }

  close(): void {
    this.stop();
    if (this.failed === null) this.db.close();
    else this.db.abort();
  }
}

/** The stable code a log line names for `e`: its own (a DropbearError's, the ledger's), or `fallback`. */
function codeOf(e: unknown, fallback: string): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : fallback;
}
