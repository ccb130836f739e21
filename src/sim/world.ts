/**
 * The deterministic simulator: a virtual clock, a virtual network (per-link delay, jitter, loss,
 * duplication; reordering follows from jitter) and n nodes, each running the real consensus replica,
 * the real ledger state machine and real certificate assembly. Messages cross the network as canonical
 * bytes and are decoded on arrival, as on a socket. One seed gives one run, byte for byte.
 */

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildCertificates } from '../certificate/index.ts';
import type { PersistRecord } from '../consensus/replica.ts';
import { type Action, DEFAULT_REPLICA_CONFIG, Replica, type ReplicaConfig } from '../consensus/replica.ts';
import { SqliteLedger } from '../ledger/sqlite.ts';
import { type Execution, LedgerState } from '../ledger/state.ts';
import {
  type Batch,
  type Certificate,
  type CommitProof,
  commitQuorum,
  decodeMessage,
  Evidence,
  encode,
  encodeMessage,
  type Genesis,
  hex,
  type KeyPair,
  keyPairFromSeed,
  type NodeMessage,
  type Policy,
  proofReceiptSigs,
  type Receipt,
  type ReceiptSignature,
  type Request,
  type Result,
  receiptHashOf,
  requestIdOf,
  type SignedRequest,
  type SignedResults,
  type StateBatch,
  sha256,
  signDeposit,
  signModelUpdate,
  signRequest,
  signRequestBatch,
  type Tx,
  txIdOf,
  withSharedChecks,
} from '../protocol/index.ts';
import type { ByzantineScript, Outgoing, ScriptContext } from './byzantine.ts';
import { EventQueue } from './heap.ts';
import { Rng } from './rng.ts';
import { makeScript } from './scripts.ts';
import { standInResult } from './standin.ts';

/** A Byzantine script's name (see byzantine.ts and scripts.ts). */
export type Behaviour = string;

export interface LinkConfig {
  /** One-way delay: base plus uniform jitter in [0, jitter). */
  delayMs: number;
  jitterMs: number;
  loss: number;
  duplicate: number;
}

export interface SimOptions {
  nodes: number;
  /**
   * Whether a signature the nodes check is checked once for all of them (withSharedChecks, default true):
   * false for a benchmark that counts what every node's checks cost.
   */
  sharedChecks?: boolean;
  f?: number;
  requests: number;
  seed: number;
  byzantine?: Map<number, Behaviour>;
  /** Fraction of inputs on which an honest node's label differs from the true one. */
  disagreement?: number;
  link?: Partial<LinkConfig>;
  /** Per-link overrides, keyed "from->to". */
  links?: Map<string, Partial<LinkConfig>>;
  /** Client requests per virtual millisecond (open loop). */
  rate?: number;
  /**
   * The client signs its requests in batches of this many (one signature over their Merkle root,
   * signRequestBatch), each batch once its last request is due, and sends a whole batch to the same
   * f+1 nodes. Default 1: every request signed on its own.
   */
  clientBatch?: number;
  /** Largest inference batch and the virtual cost of one (base + per item), in ms. */
  inferBatch?: number;
  inferBaseMs?: number;
  inferPerItemMs?: number;
  /** Per node, a factor on that cost (a slower model or CPU); default 1 for every node. */
  inferCostFactor?: number[];
  /**
   * Drop the inputs whose requests no longer want this node's vote (`Replica.wantsOwnVote`) when their
   * inference batch starts, and tell the replica (`inferSkipped`), as a real node does. Default true.
   */
  skipUnwanted?: boolean;
  replica?: Partial<ReplicaConfig>;
  policy?: Policy;
  /** Virtual time limit. */
  maxTimeMs?: number;
  /** Keep certificates handed out by every honest node (tests) or only the first per request. */
  keepAllCertificates?: boolean;
  inputBytes?: number;
  /** The client's inputs, request i carrying inputs[i % length] (default: random bytes of `inputBytes`). */
  inputs?: Uint8Array[];
  /** The genesis names and digests of the nodes' models (default: one stand-in model per node). */
  models?: { name: string; digest: Uint8Array }[];
  /** Keep each node's ledger in a real SQLite file in this folder (node-<id>.sqlite). */
  ledgerDir?: string;
  /** The genesis's request expiry window (default 10 minutes, beyond any run). */
  expiryMs?: number;
  /**
   * A node's model: its answer for an input when it runs the model with this digest (the node's current
   * one in its ledger when the inference batch started). Default: the stand-in model (standin.ts), which
   * ignores the digest. A Byzantine script's `result` still rewrites the answer afterwards.
   */
  classify?: (node: number, modelDigest: Uint8Array, input: Uint8Array) => Result;
}

/** A node's model digests and versions (every node's, as its ledger has them) from `seq` on. */
export interface ModelsAt {
  seq: number;
  digests: Uint8Array[];
  versions: number[];
}

/** A transaction submitted to a node, and what its replica said. */
export interface TxSubmission {
  at: number;
  node: number;
  tx: Tx;
  txId: Uint8Array;
  accepted: boolean;
  code: string | null;
}

export const EPOCH_MS = 1_767_225_600_000; // 2026-01-01T00:00:00Z: virtual time starts here

export interface Group {
  genesis: Genesis;
  keys: KeyPair[];
  client: KeyPair;
  /** The genesis's treasury key (signs deposits). */
  treasury: KeyPair;
}

/** A group with keys derived from the seed (deterministic), the client funded for the whole run. */
export function makeGroup(
  n: number,
  f: number,
  seed: number,
  policy?: Policy,
  clientFunds = 1e12,
  models?: { name: string; digest: Uint8Array }[],
  expiryMs = 600_000,
): Group {
  const rng = new Rng(`group:${seed}`);
  const keys = Array.from({ length: n }, () => keyPairFromSeed(rng.bytes(32)));
  const client = keyPairFromSeed(rng.bytes(32));
  const treasury = keyPairFromSeed(rng.bytes(32));
  const genesis: Genesis = {
    version: 1,
    name: `sim-${n}-${seed}`,
    f,
    nodes: keys.map((k, id) => ({
      id,
      publicKey: k.publicKey,
      address: `sim://node-${id}`,
      owner: `owner-${id}`,
      modelName: models?.[id]?.name ?? `stand-in-${id}`,
      modelDigest: models?.[id]?.digest ?? sha256(new TextEncoder().encode(`stand-in-model-${id}`)),
      fee: 1 + id,
    })),
    policy: policy ?? { kind: 'top1', minAgree: f + 1 },
    treasury: treasury.publicKey,
    balances: [{ client: client.publicKey, amount: clientFunds }],
    params: {
      expiryMs,
      maxClockSkewMs: 5_000,
      maxInputBytes: 1 << 20,
      inputType: 'application/octet-stream',
    },
  };
  return { genesis, keys, client, treasury };
}

/** What a node keeps per executed batch to serve state transfer (the durable ledger keeps the same). */
export interface HistoryEntry {
  view: number;
  batch: Batch;
  requests: SignedRequest[];
  results: SignedResults[];
  receipt: Receipt | null;
  sigs: ReceiptSignature[] | null;
  /**
   * The COMMITs and prepared receipt signatures that committed the batch: proof for state transfer until
   * the receipt is certified (commitQuorum).
   */
  commitProof: CommitProof | null;
}

export class SimNode {
  replica: Replica;
  ledger: LedgerState;
  /** The node's real SQLite ledger, when the simulation keeps them on disk. */
  db: SqliteLedger | null = null;
  /** The node's "disk": what it persisted before signing, and its executed history. */
  log: PersistRecord[] = [];
  /** Its own signed RESULTS on that disk (saveResults until dropResults), by RESULTS digest (hex). */
  ownResults = new Map<string, { signed: SignedResults; newest: number }>();
  history = new Map<number, HistoryEntry>();
  executed: Uint8Array[] = []; // batch digest by seq-1
  readonly certificates = new Map<string, Certificate>();
  readonly pendingExec = new Map<number, Execution>();
  readonly inferQueue: { requestId: Uint8Array; request: SignedRequest }[] = [];
  inferBusy = false;
  /** Inputs this node's model ran, and inputs it dropped unrun (skipUnwanted). */
  inferRan = 0;
  inferSkipped = 0;
  tickAt = Number.POSITIVE_INFINITY;
  crashed = false;
  /**
   * How far this node's wall clock is off the simulation's (ms; a stepped system clock): its replica's
   * timestamps are judged by the simulation's clock plus this, its timers run on the simulation's clock.
   */
  clockOffsetMs = 0;
  /**
   * The peers this node's replica asked to drop (peerMisbehaved), in order. The simulated network keeps
   * delivering their messages: there is no connection to close.
   */
  readonly dropped: { peer: number; reason: string }[] = [];
  /**
   * Every change of the models in this node's ledger, by the seq that made it (the first entry is the
   * genesis at seq 0): `modelsAt` reads the models that counted when a given batch executed.
   */
  modelLog: ModelsAt[];
  constructor(
    readonly id: number,
    genesis: Genesis,
    readonly key: KeyPair,
    readonly cfg: Partial<ReplicaConfig>,
    readonly behaviour: Behaviour | null,
  ) {
    this.replica = new Replica(genesis, id, key, cfg);
    this.ledger = new LedgerState(genesis);
    this.script = behaviour === null ? null : makeScript(behaviour);
    this.modelLog = [
      { seq: 0, digests: genesis.nodes.map((x) => x.modelDigest), versions: genesis.nodes.map(() => 0) },
    ];
  }

  /** The digest of the model this node runs now: its ledger's, for itself. */
  get modelDigest(): Uint8Array {
    return (this.db?.state ?? this.ledger).models[this.id];
  }

  /** The models (every node's) that this node's ledger had when it executed batch `seq`. */
  modelsAt(seq: number): ModelsAt {
    let found = this.modelLog[0];
    for (const m of this.modelLog) if (m.seq <= seq) found = m;
    return found;
  }
  readonly script: ByzantineScript | null;
  ctx: ScriptContext | null = null;
}

export interface SimResult {
  group: Group;
  nodes: SimNode[];
  requests: Map<string, SignedRequest>;
  /** First certificate handed out for each request, in certification order. */
  certificates: Map<string, Certificate>;
  virtualMs: number;
  messages: number;
  bytes: number;
  batches: number;
  honest: number[];
  done: boolean;
  duplicateCertificates: string[];
}

export class Simulation {
  readonly q = new EventQueue();
  readonly rng: Rng;
  readonly group: Group;
  readonly nodes: SimNode[];
  readonly requests = new Map<string, SignedRequest>();
  readonly certificates = new Map<string, Certificate>();
  readonly link: LinkConfig;
  now = EPOCH_MS;
  messages = 0;
  bytes = 0;
  /** Fail point for tests: return true to crash the node right after it persists this record. */
  crashAfterPersist: ((node: SimNode, record: PersistRecord) => boolean) | null = null;
  /** Per-link overrides ("from->to"), changeable during a run (partitions, slow links). */
  readonly links = new Map<string, Partial<LinkConfig>>();
  /** Called as things happen, so invariants can be checked after every step (see faults.ts). */
  observer: {
    executed?(node: SimNode, seq: number, digest: Uint8Array): void;
    certified?(node: SimNode, certs: Certificate[]): void;
  } = {};
  /** Requests that honest nodes certified in two different batches (must stay empty). */
  readonly duplicateCertificates: string[] = [];
  private readonly certifiedAt: Map<number, number>;
  private readonly opts: Required<
    Omit<
      SimOptions,
      'byzantine' | 'links' | 'policy' | 'f' | 'ledgerDir' | 'classify' | 'inputs' | 'models' | 'expiryMs'
    >
  > &
    SimOptions;
  /** Transactions submitted so far, with their replica's answer (see submitTx). */
  readonly txLog: TxSubmission[] = [];

  constructor(options: SimOptions) {
    const f = options.f ?? Math.floor((options.nodes - 1) / 3);
    this.opts = {
      disagreement: 0.1,
      link: {},
      rate: 10,
      clientBatch: 1,
      inferBatch: 32,
      inferBaseMs: 0.5,
      inferPerItemMs: 0.02,
      inferCostFactor: [],
      skipUnwanted: true,
      replica: {},
      maxTimeMs: 600_000,
      keepAllCertificates: false,
      inputBytes: 48,
      sharedChecks: true,
      ...options,
    };
    this.link = { delayMs: 1, jitterMs: 0.5, loss: 0, duplicate: 0, ...options.link };
    this.rng = new Rng(options.seed);
    this.group = makeGroup(
      options.nodes,
      f,
      options.seed,
      options.policy,
      1e12,
      options.models,
      options.expiryMs,
    );
    const cfg = { ...DEFAULT_REPLICA_CONFIG, ...options.replica };
    this.nodes = this.group.keys.map(
      (k, i) => new SimNode(i, this.group.genesis, k, cfg, options.byzantine?.get(i) ?? null),
    );
    for (const [k, v] of options.links ?? []) this.links.set(k, v);
    if (options.ledgerDir) for (const node of this.nodes) this.openLedger(node, false);
    const srng = this.rng.fork('scripts');
    for (const node of this.nodes) {
      node.ctx = {
        id: node.id,
        n: this.nodes.length,
        f,
        key: node.key,
        genesis: this.group.genesis,
        groupId: node.replica.groupId,
        rng: srng.fork(`node-${node.id}`),
        now: () => this.now,
        view: () => node.replica.view,
      };
    }
    this.certifiedAt = new Map(this.nodes.map((n) => [n.id, 0]));
  }

  get honest(): SimNode[] {
    return this.nodes.filter((n) => n.behaviour === null);
  }

  private linkFor(from: number, to: number): LinkConfig {
    const o = this.links.get(`${from}->${to}`);
    return o ? { ...this.link, ...o } : this.link;
  }

  private transmit(from: number, to: number, bytes: Uint8Array, extraDelay = 0): void {
    const link = this.linkFor(from, to);
    if (this.rng.next() < link.loss) return;
    const copies = this.rng.next() < link.duplicate ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      const delay = extraDelay + link.delayMs + this.rng.next() * link.jitterMs;
      this.messages++;
      this.bytes += bytes.length;
      this.q.push(this.now + delay, () => this.deliver(from, to, bytes));
    }
  }

  /** Everything a node sends goes through here: its Byzantine script (if any) may rewrite it. */
  private emit(from: SimNode, to: number | 'all', msg: NodeMessage): void {
    if (from.crashed) return;
    const out: Outgoing[] = from.script?.outbound ? from.script.outbound(from.ctx!, to, msg) : [{ to, msg }];
    this.sendOut(from, out);
  }

  private sendOut(from: SimNode, out: Outgoing[]): void {
    for (const o of out) {
      const bytes = o.msg instanceof Uint8Array ? o.msg : encodeMessage(o.msg);
      if (o.to === 'all') {
        for (const n of this.nodes) if (n.id !== from.id) this.transmit(from.id, n.id, bytes, o.delayMs);
      } else if (o.to !== from.id) this.transmit(from.id, o.to, bytes, o.delayMs);
    }
  }

  private deliver(from: number, to: number, bytes: Uint8Array): void {
    const node = this.nodes[to];
    if (node.crashed || node.script?.deaf) return;
    let msg: NodeMessage;
    try {
      msg = decodeMessage(bytes);
    } catch {
      node.replica.blame(from, 'bad-sender', 'undecodable message');
      return;
    }
    const taken = node.script?.inbound?.(node.ctx!, from, msg);
    if (taken) {
      this.sendOut(node, taken);
      return;
    }
    this.stepNode(node, { type: 'message', from, msg });
  }

  /** View changes as they happened: when each node started one and when it entered the new view. */
  readonly viewLog: { node: number; view: number; started: number; entered: number | null }[] = [];

  stepNode(node: SimNode, event: Parameters<Replica['step']>[0]): Action[] {
    const before = node.replica.viewChanging;
    const viewBefore = node.replica.view;
    const actions = node.replica.step(event, this.now, this.now + node.clockOffsetMs);
    const r = node.replica;
    if (r.viewChanging && (!before || r.view !== viewBefore))
      this.viewLog.push({ node: node.id, view: r.view, started: this.now, entered: null });
    if ((!r.viewChanging && r.view !== viewBefore) || (before && !r.viewChanging)) {
      const open = this.viewLog.find((e) => e.node === node.id && e.view === r.view && e.entered === null);
      if (open) open.entered = this.now;
      else this.viewLog.push({ node: node.id, view: r.view, started: this.now, entered: this.now });
    }
    this.apply(node, actions);
    return actions;
  }

  private apply(node: SimNode, actions: Action[]): void {
    for (const a of actions) {
      switch (a.type) {
        case 'send':
          this.emit(node, a.to, a.msg);
          break;
        case 'broadcast':
          this.emit(node, 'all', a.msg);
          break;
        case 'persist':
          if (node.db) node.db.persist(a.record);
          else {
            node.log.push(a.record);
            // As the SQLite ledger's persist prunes (pruneSignedLog): a stable checkpoint drops the
            // records of the seqs up to it, all but itself.
            const r = a.record;
            if (r.kind === 'checkpoint' && r.body)
              node.log = node.log.filter(
                (x) =>
                  !('seq' in x) ||
                  x.seq === undefined ||
                  x.seq > r.seq ||
                  (x.kind === 'checkpoint' && x.seq === r.seq),
              );
            // And a NEW-VIEW's message is kept for the latest only.
            if (r.kind === 'newView' && r.body)
              node.log = node.log.map((x) =>
                x.kind === 'newView' && x.view < r.view && x.body ? { kind: 'newView', view: x.view } : x,
              );
          }
          // Fail point: the node dies right after this write, before sending what it just persisted.
          if (this.crashAfterPersist?.(node, a.record)) {
            this.crash(node.id);
            return;
          }
          break;
        case 'saveResults':
          if (node.db) node.db.saveOwnResults(a.digest, a.signed, a.newest);
          else node.ownResults.set(hex(a.digest), { signed: a.signed, newest: a.newest });
          break;
        case 'dropResults':
          if (node.db) node.db.dropOwnResults(a.digests);
          else for (const d of a.digests) node.ownResults.delete(hex(d));
          break;
        case 'serveState':
          this.serveState(node, a);
          break;
        case 'serveStatePart':
          // The simulated network has no frame limit: serveState ships every batch whole, so no simulated
          // node assembles one from parts, and a request for parts has nothing to answer.
          break;
        case 'evidence':
          node.db?.saveEvidence(a.node, a.proof.kind, encode(Evidence, a.proof));
          break;
        case 'peerMisbehaved':
          node.dropped.push({ peer: a.peer, reason: a.reason });
          break;
        case 'accepted':
        case 'rejected':
          break;
        case 'txAccepted':
        case 'txRejected':
          break;
        case 'infer':
          node.inferQueue.push(...a.requests);
          this.startInference(node);
          break;
        case 'preview':
          this.stepNode(node, {
            type: 'previewed',
            seq: a.seq,
            receipt: node.ledger.preview(a.seq, a.digest, a.batch, a.entries),
          });
          break;
        case 'execute': {
          const exec = node.db
            ? node.db.execute(a.seq, a.view, a.digest, a.batch, a.entries, {
                requests: a.requests,
                results: a.results,
                commitProof: a.commitProof,
              })
            : node.ledger.execute(a.seq, a.digest, a.batch, a.entries);
          node.executed[a.seq - 1] = a.digest;
          this.logModels(node, a.seq, exec);
          this.observer.executed?.(node, a.seq, a.digest);
          // With a SQLite ledger the file is the node's only memory; without one, this map stands in.
          if (!node.db)
            node.history.set(a.seq, {
              view: a.view,
              batch: a.batch,
              requests: a.requests,
              results: a.results,
              receipt: exec.receipt,
              sigs: null,
              commitProof: a.commitProof,
            });
          node.pendingExec.set(a.seq, exec);
          this.stepNode(node, {
            type: 'executed',
            seq: a.seq,
            receipt: exec.receipt,
            requeued: exec.requeued,
            models: exec.models,
            modelVersions: exec.modelVersions,
            // The ledger's own: a refund of a key with no account uses no serial, which the replica's
            // derived counts (from the batch alone) cannot tell.
            refunds: exec.refunds,
            stateDigest: a.checkpoint ? node.ledger.stateDigest() : undefined,
          });
          break;
        }
        case 'certified': {
          const h = node.history.get(a.seq);
          if (h) h.sigs = a.signatures;
          node.db?.addReceiptSignatures(a.seq, a.signatures);
          const exec = node.pendingExec.get(a.seq);
          if (!exec) break;
          node.pendingExec.delete(a.seq);
          const certs = buildCertificates(
            exec.outcomes,
            exec.tree,
            exec.receipt,
            a.signatures,
            node.replica.q,
          );
          for (const c of certs) {
            const id = hex(c.outcome.requestId);
            if (this.opts.keepAllCertificates) node.certificates.set(id, c);
            if (node.behaviour !== null) continue;
            const first = this.certificates.get(id);
            if (!first) this.certificates.set(id, c);
            else if (first.receipt.seq !== c.receipt.seq) this.duplicateCertificates.push(id);
          }
          this.certifiedAt.set(node.id, (this.certifiedAt.get(node.id) ?? 0) + certs.length);
          this.observer.certified?.(node, certs);
          break;
        }
        case 'timer':
          // A wake-up already due (the replica may ask for one in the past) fires now, as a host's
          // setTimeout with a negative delay would: the clock never steps back.
          this.scheduleTick(node, Math.max(a.at, this.now));
          break;
      }
    }
  }

  private logModels(node: SimNode, seq: number, exec: Execution): void {
    // A re-execution (state transfer after a lost disk) rewrites the log from that seq on.
    while (node.modelLog.length > 1 && node.modelLog[node.modelLog.length - 1].seq >= seq)
      node.modelLog.pop();
    const last = node.modelLog[node.modelLog.length - 1];
    if (
      exec.modelVersions.some(
        (v, i) => v !== last.versions[i] || hex(exec.models[i]) !== hex(last.digests[i]),
      )
    )
      node.modelLog.push({ seq, digests: [...exec.models], versions: [...exec.modelVersions] });
  }

  /**
   * Hands a signed transaction to node `via`'s replica now, as its owner would through the node's API.
   * Returns what the replica answered (null when the node is down).
   */
  submitTx(via: number, tx: Tx): TxSubmission | null {
    const node = this.nodes[via];
    if (node.crashed) return null;
    const actions = this.stepNode(node, { type: 'submitTx', tx });
    const answer = actions.find((a) => a.type === 'txAccepted' || a.type === 'txRejected');
    const s: TxSubmission = {
      at: this.now,
      node: via,
      tx,
      txId: txIdOf(tx),
      accepted: answer?.type === 'txAccepted',
      code: answer?.type === 'txRejected' ? answer.code : null,
    };
    this.txLog.push(s);
    return s;
  }

  /**
   * Node `node`'s owner replaces its model by `newDigest` (loaded beside the old one): a ModelUpdate with
   * the next version (the node's ledger's + 1), signed with the node's key, submitted now to `via`
   * (default: the node itself). `version` and `signer` override, to forge or replay updates.
   */
  submitModelUpdate(
    node: number,
    newDigest: Uint8Array,
    opts: { via?: number; version?: number; signer?: KeyPair } = {},
  ): TxSubmission | null {
    const owner = this.nodes[node];
    const version = opts.version ?? (owner.db?.state ?? owner.ledger).modelVersions[node] + 1;
    const tx = signModelUpdate(
      this.nodes[0].replica.groupId,
      { node, version, newDigest },
      opts.signer ?? this.nodes[node].key,
    );
    return this.submitTx(opts.via ?? node, tx);
  }

  /** The same, `ms` after the start (the version is read then). */
  submitModelUpdateAt(
    ms: number,
    node: number,
    newDigest: Uint8Array,
    opts: { via?: number; version?: number; signer?: KeyPair } = {},
  ): void {
    this.at(ms, () => {
      this.submitModelUpdate(node, newDigest, opts);
    });
  }

  /**
   * The treasury credits `amount` to `client`: a Deposit signed with the treasury's key, submitted now to
   * `via` (default 0). Its serial defaults to the next after both node `via`'s ledger (its deposits) and
   * the deposits `via`'s replica holds, so deposits submitted one after another at one node take +1, +2, ...
   * `serial` and `signer` override, to forge, replay or reorder deposits.
   */
  submitDeposit(
    client: Uint8Array,
    amount: number,
    opts: { via?: number; serial?: number; signer?: KeyPair } = {},
  ): TxSubmission | null {
    const via = opts.via ?? 0;
    const n = this.nodes[via];
    let serial = (n.db?.state ?? n.ledger).deposits;
    for (const tx of n.replica.pendingTxs)
      if (tx.kind === 'deposit' && tx.deposit.serial > serial) serial = tx.deposit.serial;
    const tx = signDeposit(
      this.nodes[0].replica.groupId,
      { client, amount, serial: opts.serial ?? serial + 1 },
      opts.signer ?? this.group.treasury,
    );
    return this.submitTx(via, tx);
  }

  /** The same, `ms` after the start (the serial is read then). */
  submitDepositAt(
    ms: number,
    client: Uint8Array,
    amount: number,
    opts: { via?: number; serial?: number; signer?: KeyPair } = {},
  ): void {
    this.at(ms, () => {
      this.submitDeposit(client, amount, opts);
    });
  }

  /** Node `id`'s ledger: every node's current model digest and version. */
  models(id: number): { digests: Uint8Array[]; versions: number[] } {
    const n = this.nodes[id];
    const l = n.db?.state ?? n.ledger;
    return { digests: [...l.models], versions: [...l.modelVersions] };
  }

  private serveState(node: SimNode, a: Extract<Action, { type: 'serveState' }>): void {
    const batches: StateBatch[] = [];
    if (node.db) batches.push(...node.db.stateBatches(a.fromSeq, 64));
    for (let s = a.fromSeq; !node.db && batches.length < 64; s++) {
      const h = node.history.get(s);
      if (!h?.receipt) break;
      // Certified: q receipt signatures; else the COMMITs and prepared receipt signatures that committed it
      // (the latter only if over the receipt this node executed to).
      const commits = h.sigs ? null : h.commitProof;
      const receiptSigs = h.sigs ?? proofReceiptSigs(commits, receiptHashOf(h.receipt));
      if (!h.sigs && (!commits || !commitQuorum(commits.view, commits.sigs, receiptSigs, node.replica.q)))
        break;
      batches.push({
        seq: s,
        view: commits?.view ?? h.view,
        batch: h.batch,
        requests: h.requests,
        results: h.results,
        receipt: h.receipt,
        receiptSigs,
        commitSigs: commits?.sigs ?? [],
      });
    }
    const nv = a.newView;
    this.emit(node, a.to, {
      kind: 'stateResponse',
      from: node.id,
      batches,
      view: a.view,
      newView: nv
        ? { from: nv.from, newView: nv.newView, viewChanges: nv.viewChanges, proposals: nv.proposals }
        : null,
      checkpoint: a.checkpoint,
    });
  }

  private ledgerPath(node: SimNode): string {
    return join(this.opts.ledgerDir!, `node-${node.id}.sqlite`);
  }

  /** Opens (or reopens) the node's SQLite ledger; its state is what the file replays to. */
  private openLedger(node: SimNode, wipe: boolean): void {
    const path = this.ledgerPath(node);
    // A lost disk loses the boot marker too (a marker beside no ledger is LEDGER_LOST).
    if (wipe) for (const suffix of ['', '-wal', '-shm', '.boot']) rmSync(path + suffix, { force: true });
    node.db = SqliteLedger.open(path, this.group.genesis);
    node.ledger = node.db.state;
  }

  /** Closes every SQLite ledger (the files stay). */
  close(): void {
    for (const n of this.nodes) n.db?.close();
  }

  /** Crash a node: it stops at once; messages to it are lost. */
  crash(id: number): void {
    const node = this.nodes[id];
    node.crashed = true;
    node.db?.close();
  }

  /**
   * Restart a crashed node. With its disk kept it resumes from its ledger and its log of signed
   * messages; with the disk lost it starts empty. Either way it catches up by state transfer.
   */
  restart(id: number, diskLost: boolean): void {
    const node = this.nodes[id];
    const genesis = this.group.genesis;
    if (this.opts.ledgerDir) this.openLedger(node, diskLost);
    if (diskLost) {
      if (!node.db) node.ledger = new LedgerState(genesis);
      node.log = [];
      node.ownResults.clear();
      node.history = new Map();
      node.executed = [];
      this.certifiedAt.set(id, 0);
      node.replica = new Replica(genesis, id, node.key, node.cfg);
      node.replica.forgetful();
    } else {
      const l = node.ledger;
      node.replica = Replica.restore(genesis, id, node.key, node.cfg, {
        ...l.replicaState(),
        log: node.db ? (node.db.signedLog() as PersistRecord[]) : node.log,
        ownResults: node.db ? node.db.ownResults() : [...node.ownResults.values()],
        uncertified: this.uncertifiedReceipts(node),
      });
    }
    if (diskLost) {
      node.pendingExec.clear();
      node.modelLog = node.modelLog.slice(0, 1);
    }
    node.inferQueue.length = 0;
    node.inferBusy = false;
    node.tickAt = Number.POSITIVE_INFINITY;
    node.crashed = false;
    this.stepNode(node, { type: 'catchUp' });
  }

  private uncertifiedReceipts(node: SimNode): Receipt[] {
    const out: Receipt[] = [];
    const db = node.db;
    if (db) return db.uncertifiedReceipts(node.replica.q);
    for (const h of node.history.values()) if (h.receipt && !h.sigs) out.push(h.receipt);
    return out;
  }

  /** Run `fn` at virtual time `ms` after the start (now, if that is already past). */
  at(ms: number, fn: () => void): void {
    this.q.push(Math.max(EPOCH_MS + ms, this.now), fn);
  }

  private scheduleTick(node: SimNode, at: number): void {
    if (at >= node.tickAt) return;
    node.tickAt = at;
    this.q.push(at, () => {
      if (node.tickAt !== at) return;
      node.tickAt = Number.POSITIVE_INFINITY;
      if (!node.crashed) this.stepNode(node, { type: 'tick' });
      if (!node.crashed && node.script?.onTick) this.sendOut(node, node.script.onTick(node.ctx!));
      const w = node.replica.nextWake;
      if (w !== Number.POSITIVE_INFINITY) this.scheduleTick(node, Math.max(w, this.now + 0.001));
    });
  }

  private startInference(node: SimNode): void {
    if (node.inferBusy || node.inferQueue.length === 0 || node.crashed) return;
    node.inferBusy = true; // also while the replica hears of dropped inputs (it may ask for more)
    let batch = node.inferQueue.splice(0, this.opts.inferBatch);
    if (this.opts.skipUnwanted) {
      const unwanted: typeof batch = [];
      const wanted: typeof batch = [];
      for (const r of batch) (node.replica.wantsOwnVote(hex(r.requestId)) ? wanted : unwanted).push(r);
      batch = wanted;
      if (unwanted.length > 0) {
        node.inferSkipped += unwanted.length;
        this.stepNode(node, { type: 'inferSkipped', requestIds: unwanted.map((r) => r.requestId) });
        if (node.crashed) return;
      }
      if (batch.length === 0) {
        node.inferBusy = false;
        this.startInference(node);
        return;
      }
    }
    node.inferRan += batch.length;
    const cost =
      (this.opts.inferBaseMs + this.opts.inferPerItemMs * batch.length) *
      (this.opts.inferCostFactor[node.id] ?? 1);
    // The model that runs is the one current when the batch starts; an update executing meanwhile makes
    // these results stale (the replica drops them and asks again).
    const digest = node.modelDigest;
    const classify = this.opts.classify;
    this.q.push(this.now + cost, () => {
      node.inferBusy = false;
      if (node.crashed) return;
      const results: { requestId: Uint8Array; result: Result }[] = batch.map((r) => {
        const honest = classify
          ? classify(node.id, digest, r.request.input)
          : standInResult(node.id, r.request.input, { disagreement: this.opts.disagreement });
        const result = node.script?.result ? node.script.result(node.ctx!, r.request.input, honest) : honest;
        return { requestId: r.requestId, result };
      });
      this.stepNode(node, {
        type: 'inferred',
        modelDigest: node.script?.modelDigest?.(node.ctx!) ?? digest,
        results,
      });
      this.startInference(node);
    });
  }

  /**
   * Schedules the client's requests: open loop at `rate` per ms, each sent to f+1 distinct nodes. With a
   * client batch above 1, a batch is signed when its last request is due, then every request of it goes
   * to the same f+1 nodes, in order.
   */
  private scheduleClient(): void {
    const { requests, rate, inputBytes } = this.opts;
    const per = Math.max(1, Math.floor(this.opts.clientBatch));
    const n = this.nodes.length;
    const fanout = this.group.genesis.f + 1;
    const crng = this.rng.fork('client');
    for (let start = 0; start < requests; start += per) {
      const end = Math.min(requests, start + per);
      const at = EPOCH_MS + (end - 1) / rate;
      this.q.push(at, () => {
        const given = this.opts.inputs;
        const reqs: { request: Request; input: Uint8Array }[] = [];
        for (let i = start; i < end; i++) {
          const input = given?.length ? given[i % given.length] : crng.bytes(inputBytes);
          const request: Request = {
            groupId: this.nodes[0].replica.groupId,
            client: this.group.client.publicKey,
            nonce: i,
            timestamp: Math.floor(this.now),
            inputDigest: sha256(input),
            policy: null,
            maxFee: 1_000_000,
          };
          reqs.push({ request, input });
        }
        const signed =
          per === 1
            ? reqs.map((r) => signRequest(r.request, r.input, this.group.client))
            : signRequestBatch(reqs, this.group.client);
        for (const sr of signed) this.requests.set(hex(requestIdOf(sr)), sr);
        const first = crng.int(n);
        for (let k = 0; k < fanout; k++) {
          const node = this.nodes[(first + k) % n];
          if (node.crashed) continue;
          for (const sr of signed) this.stepNode(node, { type: 'request', request: sr });
        }
      });
    }
  }

  private clientScheduled = false;

  /**
   * Runs until every request is certified at every honest node (or, given `until`, until it holds), the
   * queue empties, or time runs out. May be called again to go on.
   */
  run(opts: { until?: () => boolean } = {}): SimResult {
    // The nodes share this process, and each checks every signature its peers send: checked once instead
    // (withSharedChecks; the same decisions, less CPU), unless a benchmark counts the nodes' CPU.
    return this.opts.sharedChecks === false
      ? this.runSteps(opts)
      : withSharedChecks(() => this.runSteps(opts));
  }

  private runSteps(opts: { until?: () => boolean }): SimResult {
    if (!this.clientScheduled) this.scheduleClient();
    this.clientScheduled = true;
    const total = this.opts.requests;
    const honest = this.honest;
    const deadline = EPOCH_MS + this.opts.maxTimeMs;
    const finished = opts.until ?? (() => honest.every((n) => (this.certifiedAt.get(n.id) ?? 0) >= total));
    let done = false;
    for (;;) {
      const e = this.q.pop();
      if (!e || e.at > deadline) break;
      // Every push is at `now` or later: an event before it (or at NaN) comes from a negative or broken
      // delay (a script's delayMs, link or inference settings) or a bug here, and would move the clock back.
      if (!(e.at >= this.now))
        throw new Error(
          `simulator clock would step back: an event at ${e.at}, now ${this.now} (a negative delay?)`,
        );
      this.now = e.at;
      e.run();
      if (finished()) {
        done = true;
        break;
      }
    }
    return {
      group: this.group,
      nodes: this.nodes,
      requests: this.requests,
      certificates: this.certificates,
      virtualMs: this.now - EPOCH_MS,
      messages: this.messages,
      bytes: this.bytes,
      batches: Math.max(...honest.map((n) => n.executed.length)),
      honest: honest.map((n) => n.id),
      done,
      duplicateCertificates: this.duplicateCertificates,
    };
  }
}

export function simulate(options: SimOptions): SimResult {
  return new Simulation(options).run();
}
