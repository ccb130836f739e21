/**
 * The replicated state machine: applies committed batches in sequence order, deterministically.
 * Everything that depends on state is decided here (PROTOCOL.md, normal case rule 5), so every honest
 * node reaches the same outcomes, receipt and state digest whatever it saw before.
 * In memory; the durable SQLite ledger (issue 3) persists what this computes.
 */
import { decide, validatePolicy } from '../agreement/index.ts';
import { IdWindow, RECORD } from '../protocol/idwindow.ts';
import {
  array,
  type Batch,
  buildTree,
  bytes,
  CodecError,
  type CountedVote,
  clientSpendOf,
  DropbearError,
  decode,
  encode,
  encodeEach,
  equalBytes,
  fixed,
  type Genesis,
  groupIdOf,
  hex,
  leafHash,
  type MerkleTree,
  type Outcome,
  Outcome as OutcomeCodec,
  quorumSize,
  type Receipt,
  type Request,
  receiptHashOf,
  sha256,
  sha256Parts,
  struct,
  type Tx,
  txIdOf,
  uint,
  verifyTx,
  Writer,
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
  /** The treasury's deposits applied so far (the last serial) after this batch. */
  deposits: number;
  /** Each node's per-request fee after this batch. */
  fees: number[];
  /** Each node's fee version after this batch (0: the genesis fee). */
  feeVersions: number[];
  /** Each node's withdrawals applied after this batch (the last serial; 0: none). */
  withdrawals: number[];
  /**
   * The serial of each client whose refund or transfer used one in this batch (hex key → serial), in batch
   * order: a client's refunds and transfers share one sequence of serials.
   */
  refunds: Map<string, number>;
  /** Each of the batch's transactions, in batch order: applied, or without effect (stale, forged, ...). */
  txs: { id: Uint8Array; applied: boolean }[];
}

/**
 * What a batch's transactions change, worked out on copies (LedgerState.applyTxs): `execute` then makes
 * it the state's, `preview` only decides the batch's requests under it.
 */
interface TxEffects {
  models: Uint8Array[];
  modelVersions: number[];
  fees: number[];
  feeVersions: number[];
  deposits: number;
  minted: number;
  withdrawals: number[];
  /** Each node's money withdrawn in all, after the batch's withdrawals. */
  withdrawn: number[];
  /** Money the batch's deposits credit, by client (hex key). */
  credits: Map<string, { client: Uint8Array; amount: number }>;
  /** The serials the batch's refunds and transfers use, by client (hex key): over the state's `refunds`. */
  refundSerials: Map<string, { client: Uint8Array; serial: number }>;
  /**
   * The batch's refunds and transfers that used their serial with an amount above 0, in batch order
   * (`to`: the account a transfer pays; null for a refund): `execute` takes each out after the batch's
   * requests are charged, where the balance then covers it (else it has no effect: `applied` false).
   */
  refunds: { index: number; key: string; amount: number; to: Uint8Array | null }[];
  applied: boolean[];
}

/** What a batch comes to before anything is applied (LedgerState.decideBatch). */
interface Decided {
  outcomes: Outcome[];
  /** Each outcome's request timestamp (what the window keeps). */
  timestamps: number[];
  outcomeBytes: Uint8Array[];
  tree: MerkleTree;
  requeued: Uint8Array[];
  skipped: Execution['skipped'];
}

export interface NodeStats {
  counted: number;
  agreed: number;
  earned: number;
}

const BalancesCodec = array(struct({ client: fixed(32), amount: uint }), 1 << 24);

/**
 * The most accounts a transfer may leave the ledger with: one that would open an account past it has no
 * effect. A client pays only the amount it moves to open an account, and without a bound a faulty or
 * careless client could open them without end (1 each), every one an entry in the state, its digest and
 * snapshots (the room MAX_SNAPSHOT_WINDOW leaves holds about a million). Deposits, the treasury's, are not
 * held to it.
 */
export const MAX_ACCOUNTS_BY_TRANSFER = 1 << 20;
/**
 * Each client's refunds and transfers applied (the last serial of their one sequence), in client order;
 * clients with none are left out.
 */
const RefundsCodec = array(struct({ client: fixed(32), serial: uint }), 1 << 24);
const NodesCodec = array(
  struct({
    fee: uint,
    feeVersion: uint,
    modelDigest: fixed(32),
    modelVersion: uint,
    counted: uint,
    agreed: uint,
    earned: uint,
    withdrawal: uint,
    withdrawn: uint,
  }),
  256,
);

const StateCodec = struct({
  seq: uint,
  clock: uint,
  lastReceipt: fixed(32),
  balances: BalancesCodec,
  nodes: NodesCodec,
  deposits: uint,
  minted: uint,
  refunds: RefundsCodec,
  refunded: uint,
  recentCount: uint,
  recentChain: fixed(32),
});

/**
 * The largest window a snapshot holds: SQLite stores a blob of at most 10^9 bytes (SQLITE_MAX_LENGTH), and
 * 20 M ids of 40 bytes leave room for a million balances. A ledger whose window is larger takes no
 * snapshot (SqliteLedger.execute).
 */
export const MAX_SNAPSHOT_WINDOW = 20_000_000;

/**
 * A whole LedgerState (LedgerState.snapshot), for a ledger to restart from instead of replaying every
 * batch (docs/ledger.md, "Snapshots"): what the state digest hashes, with the recent-id window itself
 * (IdWindow.records: 40-byte records of timestamp and id, strictly ascending) in place of its count.
 * Balances in client order, nodes by id. Local to a node's file: never sent, never signed.
 */
export const StateSnapshot = struct({
  seq: uint,
  clock: uint,
  lastReceipt: fixed(32),
  balances: BalancesCodec,
  nodes: NodesCodec,
  deposits: uint,
  minted: uint,
  refunds: RefundsCodec,
  refunded: uint,
  recentChain: fixed(32),
  recent: bytes(MAX_SNAPSHOT_WINDOW * RECORD),
});

const ADDED = new Uint8Array([0x61]);
const NO_CREDITS: TxEffects['credits'] = new Map();
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
  /** Each node's per-request fee now (the genesis's until a fee change of it applies). */
  readonly fees: number[];
  /** Each node's fee changes applied (the last version; 0: the genesis fee). */
  readonly feeVersions: number[];
  readonly models: Uint8Array[];
  readonly modelVersions: number[];
  readonly stats: NodeStats[];
  /** The treasury's deposits applied (the last serial; 0: none). */
  deposits = 0;
  /** The money those deposits added: the total is the genesis balances plus this less `withdrawn`'s sum (totalMoney). */
  minted = 0;
  /** Each node's withdrawals applied (the last serial; 0: none). */
  readonly withdrawals: number[];
  /** Each node's money withdrawn in all: what it may still withdraw is what it earned less this (payable). */
  readonly withdrawn: number[];
  /**
   * Each client's refunds applied (the last serial), by hex key: a client's refunds are a sequence of its
   * own (the first is 1). Only clients whose refund used a serial are here.
   */
  readonly refunds = new Map<string, { client: Uint8Array; serial: number }>();
  /** The money refunds paid back to clients, all together. */
  refunded = 0;
  /** The genesis balances' sum. */
  readonly genesisMoney: number;
  /**
   * Executed request ids still inside the expiry window, with their request timestamps, in expiry order
   * (request timestamp, then id: a total order, so every node expires ids alike). Typed arrays, not a
   * Map of hex strings: see protocol/idwindow.ts.
   */
  readonly recent: IdWindow;
  /**
   * A hash chain over every change to `recent`: per batch, its seq, the ids it added (in execution order,
   * with their timestamps) and the ids that expired (in timestamp, id order). Honest nodes execute the
   * same batches, so they hold the same chain; the state digest takes it instead of the whole set, which
   * holds every request of the expiry window (a sort of hundreds of thousands of ids per checkpoint).
   */
  private recentChain: Uint8Array;

  /** `recent`: the window to start with (LedgerState.restore), else an empty one. */
  constructor(genesis: Genesis, recent = new IdWindow()) {
    this.genesis = genesis;
    this.recent = recent;
    this.groupId = groupIdOf(genesis);
    this.n = genesis.nodes.length;
    this.f = genesis.f;
    this.q = quorumSize(this.n, this.f);
    this.lastReceipt = this.groupId; // the receipt chain starts at the group id
    this.recentChain = this.groupId;
    let money = 0;
    for (const b of genesis.balances) {
      this.balances.set(hex(b.client), { client: b.client, amount: b.amount });
      money += b.amount;
    }
    // genesisProblem refuses such a genesis; checked here too, since this class is built from a genesis
    // nothing else may have checked (a ledger file's own, a test's). Money is conserved, so with the total
    // at most 2^53 − 1 every balance and every node's `earned` stays exact (see execute).
    if (!Number.isSafeInteger(money))
      throw new DropbearError(
        'GENESIS_INVALID',
        `the genesis balances add up to more than 2^53 − 1 (${Number.MAX_SAFE_INTEGER})`,
      );
    this.genesisMoney = money;
    this.fees = genesis.nodes.map((x) => x.fee);
    this.feeVersions = genesis.nodes.map(() => 0);
    this.models = genesis.nodes.map((x) => x.modelDigest);
    this.modelVersions = genesis.nodes.map(() => 0);
    this.stats = genesis.nodes.map(() => ({ counted: 0, agreed: 0, earned: 0 }));
    this.withdrawals = genesis.nodes.map(() => 0);
    this.withdrawn = genesis.nodes.map(() => 0);
  }

  /**
   * What a replica restarted on this state is handed of it (Replica.restore's `disk`, less its own signed
   * log): the last batch, receipt and clock, and every counter the ledger's transactions move. One place,
   * for the node host and the simulator alike: the simulator's restart once left the withdrawals out and
   * its replica counted from zero (2026-12-07).
   */
  replicaState() {
    return {
      lastExecuted: this.seq,
      lastReceiptHash: this.lastReceipt,
      lastTimestamp: this.clock,
      models: this.models,
      modelVersions: this.modelVersions,
      deposits: this.deposits,
      fees: this.fees,
      feeVersions: this.feeVersions,
      withdrawals: this.withdrawals,
      refunds: this.refundSerials(),
      recent: this.recent.entries(),
    };
  }

  /** What node `node`'s owner may still withdraw: what the node earned less what it withdrew. */
  payable(node: number): number {
    return this.stats[node].earned - this.withdrawn[node];
  }

  /** The money withdrawals took out of the group, all nodes together. */
  paidOut(): number {
    let t = 0;
    for (const w of this.withdrawn) t += w;
    return t;
  }

  balanceOf(client: Uint8Array): number {
    return this.balances.get(hex(client))?.amount ?? 0;
  }

  /** The client's refunds applied (the last serial; 0: none). */
  refundSerialOf(client: Uint8Array): number {
    return this.refunds.get(hex(client))?.serial ?? 0;
  }

  /** Every client's refund serial (hex key → last serial applied), a copy. */
  refundSerials(): Map<string, number> {
    const m = new Map<string, number>();
    for (const [k, r] of this.refunds) m.set(k, r.serial);
    return m;
  }

  /**
   * Total money in the system: client balances plus what owners may still withdraw. Requests move money
   * from clients to owners; only deposits add to it and only withdrawals and refunds take it out
   * (genesisMoney + minted − paidOut − refunded).
   */
  totalMoney(): number {
    let t = 0;
    for (const b of this.balances.values()) t += b.amount;
    for (let i = 0; i < this.n; i++) t += this.payable(i);
    return t;
  }

  /**
   * The effects of a batch's transactions, in batch order, on copies of this state's (nothing here
   * changes). A model update applies at its node's next version, a deposit at the treasury's next serial,
   * a fee change at its node's next fee version, each only with a valid signature; anything else (a replay, a superseded or early one) has no effect. A
   * deposit of its serial that would take all money past 2^53 − 1 uses its serial and credits nothing (the
   * node it is submitted to refuses such a one: host.submitTx).
   */
  private applyTxs(txs: readonly Tx[]): TxEffects {
    const fx: TxEffects = {
      models: [...this.models],
      modelVersions: [...this.modelVersions],
      fees: [...this.fees],
      feeVersions: [...this.feeVersions],
      deposits: this.deposits,
      minted: this.minted,
      withdrawals: [...this.withdrawals],
      withdrawn: [...this.withdrawn],
      credits: new Map(),
      refundSerials: new Map(),
      refunds: [],
      applied: [],
    };
    for (const tx of txs) fx.applied.push(this.applyTx(tx, fx, fx.applied.length));
    return fx;
  }

  private applyTx(tx: Tx, fx: TxEffects, index: number): boolean {
    const r = clientSpendOf(tx);
    if (r) {
      const key = hex(r.client);
      const current = fx.refundSerials.get(key)?.serial ?? this.refunds.get(key)?.serial ?? 0;
      if (r.serial !== current + 1) return false;
      if (!verifyTx(this.genesis, this.groupId, tx)) return false;
      // A key with no account (none in the ledger, none this batch's deposits make) holds no serials: its
      // refund has no effect and leaves nothing in the state. Else anyone could make keys without end and a
      // faulty primary order a refund of each, every one an entry in the state, its digest and snapshots
      // (past the codec's 2^24 entries every honest node's checkpoint would fail). An honest node takes no
      // such refund (Replica.checkTx: its balance, 0, covers none), so the replicas' counts (the node host
      // passes the ledger's) never differ on the keys they hold refunds of.
      if (!this.balances.has(key) && !fx.credits.has(key)) return false;
      // The serial is used whatever the balance (as a withdrawal's). The money is taken after the batch's
      // requests are charged (execute): a request ordered beside the refund is paid first, its nodes having
      // inferred it.
      fx.refundSerials.set(key, { client: r.client, serial: r.serial });
      if (r.amount === 0) return false;
      const to = tx.kind === 'transfer' ? tx.transfer.to : null;
      // A transfer to the paying account itself moves nothing: it uses the serial, without effect.
      if (to !== null && equalBytes(to, r.client)) return false;
      fx.refunds.push({ index, key, amount: r.amount, to });
      return true;
    }
    if (tx.kind === 'deposit') {
      const d = tx.deposit;
      if (d.serial !== fx.deposits + 1) return false;
      if (!verifyTx(this.genesis, this.groupId, tx)) return false;
      fx.deposits = d.serial;
      if (d.amount === 0 || this.genesisMoney + fx.minted + d.amount > Number.MAX_SAFE_INTEGER) return false;
      fx.minted += d.amount;
      const k = hex(d.client);
      const c = fx.credits.get(k);
      if (c) c.amount += d.amount;
      else fx.credits.set(k, { client: d.client, amount: d.amount });
      return true;
    }
    if (tx.kind === 'feeChange') {
      const c = tx.change;
      const node = this.genesis.nodes[c.node];
      if (!node || c.version !== fx.feeVersions[c.node] + 1) return false;
      if (!verifyTx(this.genesis, this.groupId, tx)) return false;
      fx.fees[c.node] = c.fee;
      fx.feeVersions[c.node] = c.version;
      return true;
    }
    if (tx.kind === 'withdrawal') {
      const w = tx.withdrawal;
      const node = this.genesis.nodes[w.node];
      if (!node || w.serial !== fx.withdrawals[w.node] + 1) return false;
      if (!verifyTx(this.genesis, this.groupId, tx)) return false;
      fx.withdrawals[w.node] = w.serial;
      // Of what the node earned up to the batch before (its requests are charged after its transactions):
      // more than that, or 0, uses the serial and takes nothing (the node it is submitted to refuses such a
      // one: host.submitTx).
      if (w.amount === 0 || w.amount > this.stats[w.node].earned - fx.withdrawn[w.node]) return false;
      fx.withdrawn[w.node] += w.amount;
      return true;
    }
    if (tx.kind !== 'modelUpdate') return false; // refunds and transfers: above (clientSpendOf)
    const u = tx.update;
    const node = this.genesis.nodes[u.node];
    if (!node || u.version !== fx.modelVersions[u.node] + 1) return false; // stale or replayed: no effect
    if (!verifyTx(this.genesis, this.groupId, tx)) return false;
    fx.models[u.node] = u.newDigest;
    fx.modelVersions[u.node] = u.version;
    return true;
  }

  /**
   * The receipt `execute` would make for this batch, without changing anything: what a replica signs when
   * it prepared the batch with every batch before it executed (a prepared receipt signature; README,
   * "Prepared receipts"). The decisions, the outcomes' encodings and their tree are kept for `execute` of
   * the same batch on the same state, which then only applies them: a replica previews nearly every batch
   * it executes, under load too, and computing them twice cost as much again as the execution.
   */
  preview(seq: number, batchDigest: Uint8Array, batch: Batch, entries: ResolvedEntry[]): Receipt {
    if (seq !== this.seq + 1)
      throw new DropbearError('LEDGER_OUT_OF_ORDER', `expected batch ${this.seq + 1}, got ${seq}`);
    const clock = Math.max(this.clock, batch.timestamp);
    const fx = this.applyTxs(batch.txs);
    const decided = this.decideBatch(entries, clock, fx);
    this.previewed = { seq, batchDigest, prevReceipt: this.lastReceipt, ...decided };
    return this.receiptOf(seq, batchDigest, decided.tree.root, decided.outcomes.length);
  }

  /** The last preview (see preview): valid for `execute` of the same seq, batch and previous receipt. */
  private previewed: ({ seq: number; batchDigest: Uint8Array; prevReceipt: Uint8Array } & Decided) | null =
    null;

  /**
   * What a batch's entries come to at group clock `clock` under `models`, changing nothing: the outcomes
   * (with their requests' timestamps, their encodings and tree), the requeued and the skipped entries. An
   * id in the window whose timestamp is expired at `clock` counts as gone, as `execute` expires it first.
   */
  private decideBatch(
    entries: ResolvedEntry[],
    clock: number,
    fx: Pick<TxEffects, 'models' | 'fees' | 'credits'>,
  ): Decided {
    const { models, fees, credits } = fx;
    const expiry = this.genesis.params.expiryMs;
    const outcomes: Outcome[] = [];
    const timestamps: number[] = [];
    const requeued: Uint8Array[] = [];
    const skipped: Execution['skipped'] = [];
    const added = new Set<string>();
    const spent = new Map<string, number>();
    // Consecutive entries are mostly one client's: its hex key is made again only when the client changes.
    let lastClient: Uint8Array | null = null;
    let lastClientHex = '';
    for (const e of entries) {
      const req = e.request;
      const idHex = hex(e.requestId);
      const inWindow = this.recent.get(e.requestId);
      if ((inWindow !== undefined && !(inWindow + expiry < clock)) || added.has(idHex)) {
        skipped.push({ requestId: e.requestId, reason: 'duplicate' });
        continue;
      }
      if (req.timestamp + expiry < clock) {
        skipped.push({ requestId: e.requestId, reason: 'expired' });
        continue;
      }
      const counted: CountedVote[] = [];
      for (const v of e.votes)
        if (v.node < this.n && equalBytes(v.modelDigest, models[v.node])) counted.push(v);
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
      for (const v of counted) fee += fees[v.node];
      if (fee > req.maxFee) {
        skipped.push({ requestId: e.requestId, reason: 'over-max-fee' });
        continue;
      }
      if (lastClient === null || !equalBytes(lastClient, req.client)) {
        lastClient = req.client;
        lastClientHex = hex(req.client);
      }
      const clientHex = lastClientHex;
      // The batch's deposits are credited before its requests are charged. A key without an account (none
      // in the ledger, none this batch's deposits make) is skipped even for a free request (every counted
      // fee 0): execute charges an account, and a missing one threw there, on every honest node alike.
      const account = this.balances.get(clientHex);
      const credit = credits.get(clientHex);
      const funds = (account?.amount ?? 0) + (credit?.amount ?? 0);
      const already = spent.get(clientHex) ?? 0;
      if ((!account && !credit) || funds - already < fee) {
        skipped.push({ requestId: e.requestId, reason: 'insufficient-balance' });
        continue;
      }
      spent.set(clientHex, already + fee);
      added.add(idHex);
      const decision = decide(
        policy,
        counted.map((v) => v.result),
      );
      outcomes.push({
        requestId: e.requestId,
        client: req.client,
        inputDigest: req.inputDigest,
        policy,
        votes: counted,
        decision,
        fee,
      });
      timestamps.push(req.timestamp);
    }
    // One buffer for the batch's outcome encodings (they are kept and dropped together), not one each.
    const outcomeBytes = encodeEach(OutcomeCodec, outcomes);
    const tree = buildTree(outcomeBytes.map(leafHash));
    return { outcomes, timestamps, outcomeBytes, tree, requeued, skipped };
  }

  private receiptOf(seq: number, batchDigest: Uint8Array, resultsRoot: Uint8Array, count: number): Receipt {
    return {
      groupId: this.groupId,
      seq,
      batchDigest,
      prevReceipt: this.lastReceipt,
      resultsRoot,
      resultsCount: count,
    };
  }

  execute(seq: number, batchDigest: Uint8Array, batch: Batch, entries: ResolvedEntry[]): Execution {
    if (seq !== this.seq + 1)
      throw new DropbearError('LEDGER_OUT_OF_ORDER', `expected batch ${this.seq + 1}, got ${seq}`);
    const p = this.previewed;
    this.previewed = null;
    // The preview of this batch on this state (the receipt chain names every batch executed so far) decided
    // exactly what the code below would decide again.
    const memo =
      p &&
      p.seq === seq &&
      equalBytes(p.batchDigest, batchDigest) &&
      equalBytes(p.prevReceipt, this.lastReceipt)
        ? p
        : null;
    const expiry = this.genesis.params.expiryMs;
    // The group's clock never goes back (a null batch carries timestamp 0): expiry uses the highest so far.
    this.clock = Math.max(this.clock, batch.timestamp);
    // Forget ids that can no longer be replayed (their timestamps are expired at this batch).
    const changes: Uint8Array[] = [this.recentChain, u64(seq)];
    this.recent.expire(
      (ts) => ts + expiry < this.clock,
      (id) => changes.push(EXPIRED, id),
    );
    const fx = this.applyTxs(batch.txs);
    fx.models.forEach((m, i) => {
      this.models[i] = m;
    });
    fx.modelVersions.forEach((v, i) => {
      this.modelVersions[i] = v;
      this.fees[i] = fx.fees[i];
      this.feeVersions[i] = fx.feeVersions[i];
    });
    this.deposits = fx.deposits;
    this.minted = fx.minted;
    for (let i = 0; i < this.n; i++) {
      this.withdrawals[i] = fx.withdrawals[i];
      this.withdrawn[i] = fx.withdrawn[i];
    }
    for (const [k, c] of fx.credits) {
      const account = this.balances.get(k);
      if (account) account.amount += c.amount;
      else this.balances.set(k, { client: c.client, amount: c.amount });
    }
    const { outcomes, timestamps, outcomeBytes, tree, requeued, skipped } =
      memo ??
      this.decideBatch(entries, this.clock, { models: this.models, fees: this.fees, credits: NO_CREDITS }); // credited above
    for (let i = 0; i < outcomes.length; i++) {
      const o = outcomes[i];
      (this.balances.get(hex(o.client)) as { amount: number }).amount -= o.fee;
      this.recent.add(o.requestId, timestamps[i]);
      changes.push(ADDED, o.requestId, u64(timestamps[i]));
      const d = o.decision;
      for (const v of o.votes) {
        const st = this.stats[v.node];
        // Exact: what a node earns comes out of a balance, and all money together is at most 2^53 − 1
        // (checked in the constructor), so `earned` cannot pass it. The two counts have no such bound
        // (fees may be 0); they stop at 2^53 − 1 (~285 years of a million requests a second) instead of
        // growing past what the state digest encodes, which would fail every honest node's checkpoint.
        if (st.counted < Number.MAX_SAFE_INTEGER) st.counted++;
        st.earned += this.fees[v.node];
        if (
          d.kind === 'label' &&
          v.result.kind === 'class' &&
          v.result.top[0]?.label === d.label &&
          st.agreed < Number.MAX_SAFE_INTEGER
        )
          st.agreed++;
      }
    }
    // Refunds and transfers last, in batch order, on the balances the batch's requests left: more than the
    // balance uses the serial and takes nothing (the node it is submitted to refuses such a one:
    // Replica.checkTx). Every payer here has an account (applyTx takes none of a key without, and the batch's
    // deposits were credited above). A transfer credits its account here, so the money it brings pays for
    // that account's requests from the next batch on (and its own refund or transfer later in this batch).
    for (const [k, r] of fx.refundSerials) {
      const had = this.refunds.get(k);
      if (had) had.serial = r.serial;
      else this.refunds.set(k, { client: r.client, serial: r.serial });
    }
    for (const r of fx.refunds) {
      const account = this.balances.get(r.key);
      if (!account || r.amount > account.amount) {
        fx.applied[r.index] = false;
        continue;
      }
      if (r.to === null) {
        account.amount -= r.amount;
        this.refunded += r.amount;
        continue;
      }
      const toKey = hex(r.to);
      const dest = this.balances.get(toKey);
      if (!dest && this.balances.size >= MAX_ACCOUNTS_BY_TRANSFER) {
        fx.applied[r.index] = false;
        continue;
      }
      account.amount -= r.amount;
      if (dest) dest.amount += r.amount;
      else this.balances.set(toKey, { client: r.to, amount: r.amount });
    }
    const receipt = this.receiptOf(seq, batchDigest, tree.root, outcomes.length);
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
      deposits: this.deposits,
      fees: [...this.fees],
      feeVersions: [...this.feeVersions],
      withdrawals: [...this.withdrawals],
      refunds: new Map([...fx.refundSerials].map(([k, r]) => [k, r.serial])),
      txs: batch.txs.map((tx, i) => ({ id: txIdOf(tx), applied: fx.applied[i] })),
    };
  }

  /**
   * The whole state as canonical bytes (StateSnapshot): equal states give equal bytes, and
   * `LedgerState.restore` of them gives a state that executes every later batch as this one would. Its own
   * buffer (a window of 600,000 ids is 24 MB), not the codec's shared writer, which would keep that size.
   */
  snapshot(): Uint8Array {
    const w = new Writer(
      this.recent.size * RECORD + 64 * (this.balances.size + this.refunds.size + this.n) + 256,
    );
    StateSnapshot.enc(w, {
      seq: this.seq,
      clock: this.clock,
      lastReceipt: this.lastReceipt,
      balances: this.sortedBalances(),
      nodes: this.nodeRows(),
      deposits: this.deposits,
      minted: this.minted,
      refunds: this.sortedRefunds(),
      refunded: this.refunded,
      recentChain: this.recentChain,
      recent: this.recent.records(),
    });
    return w.buf.subarray(0, w.pos);
  }

  /**
   * The state `snapshot` wrote, for `genesis`. Refuses (SNAPSHOT_INVALID) bytes that do not decode, or
   * that no execution from this genesis can reach in ways cheap to see: another number of nodes, a genesis client missing (only deposits add clients, and none removes one), money not the
   * genesis's plus what deposits minted less what withdrawals took out (a node's more than it earned), window records out of order. The caller checks that it is the state of its ledger (SqliteLedger: hash, receipt).
   */
  static restore(genesis: Genesis, snapshot: Uint8Array): LedgerState {
    const bad = (msg: string) => new DropbearError('SNAPSHOT_INVALID', `state snapshot: ${msg}`);
    let v: ReturnType<typeof StateSnapshot.dec>;
    try {
      v = decode(StateSnapshot, snapshot);
    } catch (e) {
      if (e instanceof CodecError) throw bad(e.message);
      throw e;
    }
    let recent: IdWindow;
    try {
      recent = IdWindow.fromRecords(v.recent);
    } catch (e) {
      if (e instanceof DropbearError && e.code === 'SNAPSHOT_INVALID') throw bad(e.message);
      throw e;
    }
    const state = new LedgerState(genesis, recent);
    if (v.nodes.length !== state.n) throw bad(`${v.nodes.length} nodes, the genesis has ${state.n}`);
    const clients = new Map(v.balances.map((b) => [hex(b.client), b]));
    if (clients.size !== v.balances.length) throw bad('a client is listed twice');
    // The genesis's clients first, in its order, then those deposits added in client order (a replay holds
    // them in the order their deposits executed: the map's order changes nothing that is hashed or decided).
    for (const [key, account] of state.balances) {
      const b = clients.get(key);
      if (b === undefined) throw bad('a genesis client is missing');
      account.amount = b.amount;
    }
    for (const [key, b] of clients)
      if (!state.balances.has(key)) state.balances.set(key, { client: b.client, amount: b.amount });
    state.deposits = v.deposits;
    state.minted = v.minted;
    for (let i = 0; i < v.refunds.length; i++) {
      const r = v.refunds[i];
      if (r.serial < 1) throw bad('a refund serial of 0 is listed');
      if (i > 0 && Buffer.compare(v.refunds[i - 1].client, r.client) >= 0)
        throw bad('refunds not in strictly ascending client order');
      state.refunds.set(hex(r.client), { client: r.client, serial: r.serial });
    }
    state.refunded = v.refunded;
    v.nodes.forEach((x, i) => {
      state.fees[i] = x.fee;
      state.feeVersions[i] = x.feeVersion;
      state.models[i] = x.modelDigest;
      state.modelVersions[i] = x.modelVersion;
      state.stats[i] = { counted: x.counted, agreed: x.agreed, earned: x.earned };
      state.withdrawals[i] = x.withdrawal;
      state.withdrawn[i] = x.withdrawn;
    });
    if (state.withdrawn.some((w, i) => w > state.stats[i].earned))
      throw bad('a node withdrew more than it earned');
    if (
      state.genesisMoney + state.minted > Number.MAX_SAFE_INTEGER ||
      state.totalMoney() !== state.genesisMoney + state.minted - state.paidOut() - state.refunded
    )
      throw bad('money is not conserved');
    state.seq = v.seq;
    state.clock = v.clock;
    state.lastReceipt = v.lastReceipt;
    state.recentChain = v.recentChain;
    return state;
  }

  private sortedBalances(): { client: Uint8Array; amount: number }[] {
    return [...this.balances.values()]
      .sort((a, b) => Buffer.compare(a.client, b.client))
      .map((b) => ({ client: b.client, amount: b.amount }));
  }

  private sortedRefunds(): { client: Uint8Array; serial: number }[] {
    return [...this.refunds.values()]
      .sort((a, b) => Buffer.compare(a.client, b.client))
      .map((r) => ({ client: r.client, serial: r.serial }));
  }

  private nodeRows() {
    return this.fees.map((fee, i) => ({
      fee,
      feeVersion: this.feeVersions[i],
      modelDigest: this.models[i],
      modelVersion: this.modelVersions[i],
      ...this.stats[i],
      withdrawal: this.withdrawals[i],
      withdrawn: this.withdrawn[i],
    }));
  }

  /** Digest of the canonical state (for checkpoints): equal on every honest node after the same batches. */
  stateDigest(): Uint8Array {
    const balances = this.sortedBalances();
    const nodes = this.nodeRows();
    return sha256(
      encode(StateCodec, {
        seq: this.seq,
        clock: this.clock,
        lastReceipt: this.lastReceipt,
        balances,
        nodes,
        deposits: this.deposits,
        minted: this.minted,
        refunds: this.sortedRefunds(),
        refunded: this.refunded,
        recentCount: this.recent.size,
        recentChain: this.recentChain,
      }),
    );
  }
}
