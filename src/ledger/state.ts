/**
 * The replicated state machine: applies committed batches in sequence order, deterministically.
 * Everything that depends on state is decided here (PROTOCOL.md, normal case rule 5), so every honest
 * node reaches the same outcomes, receipt and state digest whatever it saw before.
 * In memory; the durable SQLite ledger (issue 3) persists what this computes.
 */
import { decide, validatePolicy } from '../agreement/index.ts';
import { IdWindow } from '../protocol/idwindow.ts';
import {
  array,
  type Batch,
  buildTree,
  type CountedVote,
  DropbearError,
  encode,
  equalBytes,
  fixed,
  type Genesis,
  groupIdOf,
  hex,
  leafHash,
  type MerkleTree,
  ModelUpdate,
  type Outcome,
  Outcome as OutcomeCodec,
  type Receipt,
  type Request,
  receiptHashOf,
  sha256,
  sha256Parts,
  struct,
  TAGS,
  type Tx,
  uint,
  verifyTagged,
} from '../protocol/index.ts';

/** A batch entry with its votes resolved to the results they point at. */
export interface ResolvedEntry {
  requestId: Uint8Array;
  request: Request;
  /** Sorted by node id, at most one per node. */
  votes: CountedVote[];
}

export type SkipReason = 'duplicate' | 'expired' | 'bad-policy' | 'over-max-fee' | 'insufficient-balance';

export interface Execution {
  seq: number;
  receipt: Receipt;
  receiptHash: Uint8Array;
  outcomes: Outcome[];
  /** Each outcome's canonical encoding (the Merkle leaves' data), in leaf order. */
  outcomeBytes: Uint8Array[];
  tree: MerkleTree;
  /** Requests with fewer than q current votes: they go back for re-inference. */
  requeued: Uint8Array[];
  skipped: { requestId: Uint8Array; reason: SkipReason }[];
  /** Each node's model digest after this batch. */
  models: Uint8Array[];
  /** Each node's model version after this batch (0: the genesis model). */
  modelVersions: number[];
}

export interface NodeStats {
  counted: number;
  agreed: number;
  earned: number;
}

const StateCodec = struct({
  seq: uint,
  clock: uint,
  lastReceipt: fixed(32),
  balances: array(struct({ client: fixed(32), amount: uint }), 1 << 24),
  nodes: array(
    struct({
      fee: uint,
      modelDigest: fixed(32),
      modelVersion: uint,
      counted: uint,
      agreed: uint,
      earned: uint,
    }),
    256,
  ),
  recentCount: uint,
  recentChain: fixed(32),
});

const ADDED = new Uint8Array([0x61]);
const EXPIRED = new Uint8Array([0x65]);

/** n (a non-negative safe integer) as 8 big-endian bytes; from Node's small-buffer pool (only hashed). */
export function u64(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`u64: ${n} is not a non-negative safe integer`);
  const b = Buffer.allocUnsafe(8);
  b.writeUInt32BE(Math.floor(n / 0x100000000), 0);
  b.writeUInt32BE(n >>> 0, 4);
  return b;
}

export class LedgerState {
  readonly genesis: Genesis;
  readonly groupId: Uint8Array;
  readonly n: number;
  readonly f: number;
  readonly q: number;
  seq = 0;
  /** Highest batch timestamp executed so far. */
  clock = 0;
  lastReceipt: Uint8Array;
  readonly balances = new Map<string, { client: Uint8Array; amount: number }>();
  readonly fees: number[];
  readonly models: Uint8Array[];
  readonly modelVersions: number[];
  readonly stats: NodeStats[];
  /**
   * Executed request ids still inside the expiry window, with their request timestamps, in expiry order
   * (request timestamp, then id: a total order, so every node expires ids alike). Typed arrays, not a
   * Map of hex strings: see protocol/idwindow.ts.
   */
  readonly recent = new IdWindow();
  /**
   * A hash chain over every change to `recent`: per batch, its seq, the ids it added (in execution order,
   * with their timestamps) and the ids that expired (in timestamp, id order). Honest nodes execute the
   * same batches, so they hold the same chain; the state digest takes it instead of the whole set, which
   * holds every request of the expiry window (a sort of hundreds of thousands of ids per checkpoint).
   */
  private recentChain: Uint8Array;

  constructor(genesis: Genesis) {
    this.genesis = genesis;
    this.groupId = groupIdOf(genesis);
    this.n = genesis.nodes.length;
    this.f = genesis.f;
    this.q = 2 * this.f + 1;
    this.lastReceipt = this.groupId; // the receipt chain starts at the group id
    this.recentChain = this.groupId;
    for (const b of genesis.balances)
      this.balances.set(hex(b.client), { client: b.client, amount: b.amount });
    this.fees = genesis.nodes.map((x) => x.fee);
    this.models = genesis.nodes.map((x) => x.modelDigest);
    this.modelVersions = genesis.nodes.map(() => 0);
    this.stats = genesis.nodes.map(() => ({ counted: 0, agreed: 0, earned: 0 }));
  }

  balanceOf(client: Uint8Array): number {
    return this.balances.get(hex(client))?.amount ?? 0;
  }

  /** Total money in the system: client balances plus what owners earned. Constant across execution. */
  totalMoney(): number {
    let t = 0;
    for (const b of this.balances.values()) t += b.amount;
    for (const s of this.stats) t += s.earned;
    return t;
  }

  private applyTx(tx: Tx): void {
    if (tx.kind === 'modelUpdate') {
      const u = tx.update;
      const node = this.genesis.nodes[u.node];
      if (!node || u.version !== this.modelVersions[u.node] + 1) return; // stale or replayed: no effect
      if (!verifyTagged(TAGS.modelUpdate, this.groupId, encode(ModelUpdate, u), tx.signature, node.publicKey))
        return;
      this.models[u.node] = u.newDigest;
      this.modelVersions[u.node] = u.version;
    }
  }

  execute(seq: number, batchDigest: Uint8Array, batch: Batch, entries: ResolvedEntry[]): Execution {
    if (seq !== this.seq + 1)
      throw new DropbearError('LEDGER_OUT_OF_ORDER', `expected batch ${this.seq + 1}, got ${seq}`);
    const expiry = this.genesis.params.expiryMs;
    // The group's clock never goes back (a null batch carries timestamp 0): expiry uses the highest so far.
    this.clock = Math.max(this.clock, batch.timestamp);
    // Forget ids that can no longer be replayed (their timestamps are expired at this batch).
    const changes: Uint8Array[] = [this.recentChain, u64(seq)];
    this.recent.expire(
      (ts) => ts + expiry < this.clock,
      (id) => changes.push(EXPIRED, id),
    );
    for (const tx of batch.txs) this.applyTx(tx);

    const outcomes: Outcome[] = [];
    const requeued: Uint8Array[] = [];
    const skipped: Execution['skipped'] = [];
    for (const e of entries) {
      const req = e.request;
      if (this.recent.has(e.requestId)) {
        skipped.push({ requestId: e.requestId, reason: 'duplicate' });
        continue;
      }
      if (req.timestamp + expiry < this.clock) {
        skipped.push({ requestId: e.requestId, reason: 'expired' });
        continue;
      }
      const counted = e.votes.filter(
        (v) => v.node < this.n && equalBytes(v.modelDigest, this.models[v.node]),
      );
      if (counted.length < this.q) {
        requeued.push(e.requestId);
        continue;
      }
      const policy = req.policy ?? this.genesis.policy;
      try {
        validatePolicy(policy, this.n, this.f);
      } catch {
        skipped.push({ requestId: e.requestId, reason: 'bad-policy' });
        continue;
      }
      let fee = 0;
      for (const v of counted) fee += this.fees[v.node];
      if (fee > req.maxFee) {
        skipped.push({ requestId: e.requestId, reason: 'over-max-fee' });
        continue;
      }
      const account = this.balances.get(hex(req.client));
      if (!account || account.amount < fee) {
        skipped.push({ requestId: e.requestId, reason: 'insufficient-balance' });
        continue;
      }
      const decision = decide(
        policy,
        counted.map((v) => v.result),
      );
      account.amount -= fee;
      for (const v of counted) {
        const s = this.stats[v.node];
        s.counted++;
        s.earned += this.fees[v.node];
        if (
          decision.kind === 'label' &&
          v.result.kind === 'class' &&
          v.result.top[0]?.label === decision.label
        )
          s.agreed++;
      }
      this.recent.add(e.requestId, req.timestamp);
      changes.push(ADDED, e.requestId, u64(req.timestamp));
      outcomes.push({
        requestId: e.requestId,
        client: req.client,
        inputDigest: req.inputDigest,
        policy,
        votes: counted,
        decision,
        fee,
      });
    }
    const outcomeBytes = outcomes.map((o) => encode(OutcomeCodec, o));
    const tree = buildTree(outcomeBytes.map(leafHash));
    const receipt: Receipt = {
      groupId: this.groupId,
      seq,
      batchDigest,
      prevReceipt: this.lastReceipt,
      resultsRoot: tree.root,
      resultsCount: outcomes.length,
    };
    const receiptHash = receiptHashOf(receipt);
    if (changes.length > 2) this.recentChain = sha256Parts(...changes);
    this.seq = seq;
    this.lastReceipt = receiptHash;
    return {
      seq,
      receipt,
      receiptHash,
      outcomes,
      outcomeBytes,
      tree,
      requeued,
      skipped,
      models: [...this.models],
      modelVersions: [...this.modelVersions],
    };
  }

  /** Digest of the canonical state (for checkpoints): equal on every honest node after the same batches. */
  stateDigest(): Uint8Array {
    const balances = [...this.balances.values()]
      .sort((a, b) => Buffer.compare(a.client, b.client))
      .map((b) => ({ client: b.client, amount: b.amount }));
    const nodes = this.fees.map((fee, i) => ({
      fee,
      modelDigest: this.models[i],
      modelVersion: this.modelVersions[i],
      ...this.stats[i],
    }));
    return sha256(
      encode(StateCodec, {
        seq: this.seq,
        clock: this.clock,
        lastReceipt: this.lastReceipt,
        balances,
        nodes,
        recentCount: this.recent.size,
        recentChain: this.recentChain,
      }),
    );
  }
}
