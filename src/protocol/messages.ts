/**
 * Every type that is hashed, signed or sent, as canonical codec schemas. Field order is wire order.
 * docs/certificate.md documents the ones a certificate verifier needs. A change to the encoding of what
 * nodes send each other needs WIRE_VERSION (src/node/frames.ts) bumped: nodes of two versions then refuse
 * each other at the handshake instead of quarantining each other over frames they cannot decode.
 */
import {
  array,
  bytes,
  type Codec,
  decodeShared,
  encode,
  fixed,
  type Infer,
  option,
  remembered,
  sint,
  sortedArray,
  str,
  struct,
  uint,
  union,
} from './codec.ts';
import {
  ed25519HasTorsion,
  ed25519KeyProblem,
  equalBytes,
  hex,
  type KeyPair,
  sha256,
  sha256Of2,
  signTagged,
  TAGS,
  taggedHash,
  verifyTagged,
} from './crypto.ts';
import { DropbearError } from './errors.ts';
import {
  addLearned,
  buildTree,
  clearLearned,
  type KnownNodes,
  knownNodes,
  type LearnedNodes,
  leafHash,
  learnedNodes,
  pathLength,
  TreeLru,
  verifyPath,
  verifyPathKnown,
} from './merkle.ts';

export const LIMITS = {
  nodes: 256,
  topK: 16,
  vector: 4096,
  batchEntries: 65_536,
  forwardRequests: 65_536,
  txs: 4096,
  input: 16 * 1024 * 1024,
  text: 256,
  /** An error message in a binary answer, in UTF-8 bytes (longer ones are cut). */
  message: 4096,
  balances: 1_000_000,
  fetchIds: 65_536,
  path: 64,
  /** Requests under one client batch signature, and so the longest inclusion path (2^12 = 4096). */
  requestBatch: 4096,
  requestBatchPath: 12,
} as const;

export const Hash32 = fixed(32);
export const PublicKey = fixed(32);
export const Signature = fixed(64);

export const Policy = union({
  top1: struct({ minAgree: uint }),
  tolerance: struct({ minAgree: uint, epsilon: uint }),
});
export type Policy = Infer<typeof Policy>;

/** A model's compact output. Class scores are in millionths (integers keep the encoding canonical). */
export const Result = union({
  class: struct({ top: array(struct({ label: uint, score: uint }), LIMITS.topK) }),
  vector: struct({ values: array(sint, LIMITS.vector) }),
});
export type Result = Infer<typeof Result>;

export const Decision = union({
  label: struct({ label: uint }),
  vector: struct({ values: array(sint, LIMITS.vector) }),
  noAgreement: struct({}),
});
export type Decision = Infer<typeof Decision>;

export const GenesisNode = struct({
  id: uint,
  publicKey: PublicKey,
  address: str(LIMITS.text),
  owner: str(LIMITS.text),
  modelName: str(LIMITS.text),
  modelDigest: Hash32,
  fee: uint,
});
export type GenesisNode = Infer<typeof GenesisNode>;

export const Balance = struct({ client: PublicKey, amount: uint });

export const GroupParams = struct({
  /** Requests older than this (against the batch timestamp) are not executed; ids are remembered this long. */
  expiryMs: uint,
  /** How far a request or batch timestamp may be ahead of a node's clock. */
  maxClockSkewMs: uint,
  maxInputBytes: uint,
  inputType: str(LIMITS.text),
});

export const Genesis = struct({
  version: uint,
  name: str(LIMITS.text),
  f: uint,
  nodes: array(GenesisNode, LIMITS.nodes),
  policy: Policy,
  treasury: PublicKey,
  balances: sortedArray(Balance, LIMITS.balances, (b) => b.client),
  params: GroupParams,
});
export type Genesis = Infer<typeof Genesis>;

/**
 * The quorum q of a group of n nodes of which at most f are faulty: the smallest size such that any two
 * quorums share at least f + 1 nodes (2q − n > f), so at least one honest node is in both. It is 2f + 1
 * when n = 3f + 1; in a larger group (n = 5 with f = 1, say) 2f + 1 signers would not do: two sets of
 * three out of five may share only the faulty node. Needs n ≥ 3f + 1, so that q ≤ n − f (a quorum
 * exists without the faulty nodes).
 */
export function quorumSize(n: number, f: number): number {
  return Math.floor((n + f) / 2) + 1;
}

/**
 * Why a genesis cannot run a group, or null: no nodes, n < 3f + 1, node ids that are not their positions
 * (0..n−1: everything indexes nodes by position), a public key no signature verifies under (small order or
 * not canonical: ed25519KeyProblem), a public key with a small-order component (ed25519HasTorsion: its
 * secret also signs under other keys), one public key for two nodes (one party, two votes), or
 * balances that add up to more than Number.MAX_SAFE_INTEGER (2^53 − 1: see below).
 */
export function genesisProblem(genesis: Genesis): string | null {
  const n = genesis.nodes.length;
  if (n === 0) return 'the genesis has no nodes';
  if (n < 3 * genesis.f + 1) return `n=${n} < 3f+1 with f=${genesis.f}`;
  const keys = new Set<string>();
  for (const [i, node] of genesis.nodes.entries()) {
    if (node.id !== i) return `node at position ${i} has id ${node.id} (ids must be 0..n−1 in order)`;
    const bad = ed25519KeyProblem(node.publicKey);
    if (bad) return `node ${i}'s public key is ${bad}: no signature verifies under it`;
    if (ed25519HasTorsion(node.publicKey))
      return (
        `node ${i}'s public key has a component of small order: one secret signs under several such keys, ` +
        'so it could hold several votes (a key made from a secret has none)'
      );
    const k = Buffer.from(node.publicKey).toString('hex');
    if (keys.has(k)) return `node ${i} has the public key of an earlier node`;
    keys.add(k);
  }
  // Money is conserved (ledger/state.ts): balances plus what owners earned always add up to the genesis
  // balances, so every amount and every node's `earned` stays at or below their sum. Past 2^53 − 1 the
  // arithmetic is no longer exact and the state digest refuses the amounts: every honest node alike would
  // fail at its next checkpoint, for good.
  let money = 0n;
  for (const b of genesis.balances) money += BigInt(b.amount);
  if (money > BigInt(Number.MAX_SAFE_INTEGER))
    return `the genesis balances add up to ${money}, more than 2^53 − 1 (${Number.MAX_SAFE_INTEGER})`;
  return null;
}

/** The genesis's quorum: see quorumSize. */
export function quorumOf(genesis: Genesis): number {
  return quorumSize(genesis.nodes.length, genesis.f);
}

export function groupIdOf(genesis: Genesis): Uint8Array {
  return taggedHash(TAGS.genesis, encode(Genesis, genesis));
}

export const Request = struct({
  groupId: Hash32,
  client: PublicKey,
  nonce: uint,
  timestamp: uint,
  /** SHA-256 of the input bytes: the signature covers the input through it. */
  inputDigest: Hash32,
  policy: option(Policy),
  maxFee: uint,
});
export type Request = Infer<typeof Request>;

/**
 * How a request's client authorised it.
 * - `single`: Ed25519 over `TAGS.request ‖ groupId ‖ canonical Request`.
 * - `batch`: the client signed many requests at once: one Ed25519 signature over
 *   `TAGS.requestBatch ‖ groupId ‖ canonical RequestBatchRoot{root, size}`, where `root` is the RFC 9162
 *   Merkle root (merkle.ts) over the leaves SHA-256(0x00 ‖ canonical Request) of the batch's `size`
 *   requests, in order. Each request carries its leaf `index` and its audit `path` to that root. The
 *   size is signed because an audit path alone does not pin it down. At most LIMITS.requestBatch
 *   requests per batch, so a path has at most LIMITS.requestBatchPath elements.
 */
export const RequestAuth = union({
  single: struct({ signature: Signature }),
  batch: struct({
    root: Hash32,
    size: uint,
    index: uint,
    path: array(Hash32, LIMITS.requestBatchPath),
    signature: Signature,
  }),
});
export type RequestAuth = Infer<typeof RequestAuth>;

/** What a client's batch signature covers (under TAGS.requestBatch and the group id). */
export const RequestBatchRoot = struct({ root: Hash32, size: uint });
export type RequestBatchRoot = Infer<typeof RequestBatchRoot>;

/** A request as it travels: the signed fields, how the client authorised them, and the input itself. */
export const SignedRequest = struct({ request: Request, auth: RequestAuth, input: bytes(LIMITS.input) });
export type SignedRequest = Infer<typeof SignedRequest>;

/**
 * requestId = SHA-256(canonical Request): the request alone, not how it was authorised.
 *
 * Why not hash the authentication too (the old SHA-256(Request ‖ signature), or Request ‖ auth kind)?
 * Replay protection is by id alone: the ledger executes an id at most once while its timestamp is inside
 * the expiry window (ledger/state.ts `recent`), and the client makes ids distinct with its nonce. If the
 * authentication were part of the id, one request (one client, nonce, timestamp, input, fee) signed
 * twice, say once alone and once in a batch, or in two batches because a client library retried, would
 * get two ids and be executed and charged twice. With ids over the Request only, every valid way of
 * signing it names the same request, and the second copy is a duplicate. Nothing is lost: the client is
 * inside the Request, so an id still names one client's signed intent, and only a holder of that
 * client's key can produce any valid authentication for it. (Single signatures are deterministic
 * Ed25519, so the old definition already gave one id per request and key; batches break that.)
 *
 * The authentication is checked when a node takes a request (verifyRequestAuth). Nothing downstream
 * relies on it: certificates and the ledger name requests by id, and a batch can only be ordered with
 * q votes, so at least f+1 honest nodes checked the authentication of a request with that id.
 */
export function requestIdOf(sr: { request: Request }): Uint8Array {
  return requestIdOfBody(encode(Request, sr.request));
}

/** The same, from the request's canonical bytes when the caller already has them (encode once). */
export function requestIdOfBody(body: Uint8Array): Uint8Array {
  return sha256(body);
}

export function signRequest(req: Request, input: Uint8Array, key: KeyPair): SignedRequest {
  const signature = signTagged(TAGS.request, req.groupId, encode(Request, req), key);
  return { request: req, auth: { kind: 'single', signature }, input };
}

/**
 * Signs `reqs` (1 to LIMITS.requestBatch requests of one client for one group, no two alike) with one
 * signature: each comes back with its leaf index, the batch size, the root and its inclusion path.
 */
export function signRequestBatch(
  reqs: readonly { request: Request; input: Uint8Array }[],
  key: KeyPair,
): SignedRequest[] {
  const size = reqs.length;
  if (size < 1 || size > LIMITS.requestBatch)
    throw new DropbearError(
      'REQUEST_BATCH_SIZE',
      `a batch holds 1 to ${LIMITS.requestBatch} requests, not ${size}`,
    );
  const first = reqs[0].request;
  const bodies = reqs.map((r) => encode(Request, r.request));
  const seen = new Set<string>();
  for (let i = 0; i < size; i++) {
    const r = reqs[i].request;
    if (!equalBytes(r.groupId, first.groupId) || !equalBytes(r.client, first.client))
      throw new DropbearError(
        'REQUEST_BATCH_MIXED',
        'the requests of a batch share one group and one client',
      );
    const k = hex(bodies[i]);
    if (seen.has(k)) throw new DropbearError('REQUEST_BATCH_DUPLICATE', `request ${i} appears twice`);
    seen.add(k);
  }
  const tree = buildTree(bodies.map(leafHash));
  const signature = signTagged(
    TAGS.requestBatch,
    first.groupId,
    encode(RequestBatchRoot, { root: tree.root, size }),
    key,
  );
  return reqs.map((r, index) => ({
    request: r.request,
    auth: { kind: 'batch', root: tree.root, size, index, path: tree.path(index), signature },
    input: r.input,
  }));
}

/** A client batch tree's proven Merkle nodes, and signatures over its root already verified good. */
export interface AuthTree {
  known: KnownNodes;
  /**
   * (group, client, signature) triples verified over this root and size (at most 4, compared bytewise),
   * with their key in the cache's LRU of good checks: one counts only while that key is still there.
   */
  signers: { groupId: Uint8Array; client: Uint8Array; signature: Uint8Array; key: string }[];
}

/**
 * Remembers client batch signatures already checked, so that the N requests of one batch cost one
 * signature check (plus N leaf hashes and, through the nodes of each tree already proven, about two node
 * hashes each instead of a whole path: verifyPathKnown). A key is everything the check depends on
 * (group, client, root, size, signature), so an entry is a plain memo of Ed25519 verification: a
 * cache hit never accepts anything the check would refuse. Verified and failed checks are kept in
 * separate bounded LRUs, so a flood of bad signatures cannot push out the good ones.
 */
export class RequestAuthCache {
  private readonly good = new Map<string, true>();
  private readonly bad = new Map<string, true>();
  /** Per client-batch tree (root and size, most recent last): its nodes proven so far (verifyPathKnown). */
  private readonly trees: TreeLru<AuthTree>;
  hits = 0;
  misses = 0;
  constructor(
    readonly capacity = 4096,
    readonly badCapacity = 1024,
    /** Trees whose proven nodes are kept (each up to 2·size − 1 of them). */
    readonly treeCapacity = Math.min(capacity, 256),
  ) {
    this.trees = new TreeLru(treeCapacity);
  }
  get size(): number {
    return this.good.size + this.bad.size;
  }
  static keyOf(
    groupId: Uint8Array,
    client: Uint8Array,
    root: Uint8Array,
    size: number,
    sig: Uint8Array,
  ): string {
    return `${Buffer.concat([groupId, client, root, sig]).toString('base64')}:${size}`;
  }
  /** The remembered outcome of a check, or undefined (and the entry becomes the most recent). */
  lookup(key: string): boolean | undefined {
    const m = this.good.has(key) ? this.good : this.bad.has(key) ? this.bad : null;
    if (m === null) {
      this.misses++;
      return undefined;
    }
    m.delete(key);
    m.set(key, true);
    this.hits++;
    return m === this.good;
  }
  /** What is known of the tree with this root and size, if anything (it becomes the most recent). */
  peekTree(root: Uint8Array, size: number): AuthTree | undefined {
    return this.trees.get(root, size);
  }
  /** The tree with this root and size (a new, empty entry the first time), the most recent from now. */
  tree(root: Uint8Array, size: number): AuthTree {
    return this.trees.getOrAdd(root, size, () => ({ known: knownNodes(), signers: [] }));
  }
  /** Whether a good check with this key is still remembered (it becomes the most recent); a hit if so. */
  stillGood(key: string): boolean {
    if (!this.good.delete(key)) return false;
    this.good.set(key, true);
    this.hits++;
    return true;
  }
  store(key: string, ok: boolean): void {
    const m = ok ? this.good : this.bad;
    const cap = ok ? this.capacity : this.badCapacity;
    m.delete(key);
    m.set(key, true);
    while (m.size > cap) m.delete(m.keys().next().value as string);
  }
}

/** requestAuthProblem's scratch for what a path proves (see there). */
const authLearned: LearnedNodes = learnedNodes();

function batchSignatureValid(r: Request, a: Extract<RequestAuth, { kind: 'batch' }>): boolean {
  return verifyTagged(
    TAGS.requestBatch,
    r.groupId,
    encode(RequestBatchRoot, { root: a.root, size: a.size }),
    a.signature,
    r.client,
  );
}

/**
 * Why a request's authentication is invalid, or null when it is valid. `body`: the request's canonical
 * bytes when the caller already has them. `cache` memoises batch signature checks (see RequestAuthCache).
 */
export function requestAuthProblem(
  sr: SignedRequest,
  cache?: RequestAuthCache,
  body?: Uint8Array,
): string | null {
  const r = sr.request;
  const a = sr.auth;
  const b = body ?? encode(Request, r);
  if (a.kind === 'single')
    return verifyTagged(TAGS.request, r.groupId, b, a.signature, r.client)
      ? null
      : 'client signature invalid';
  if (!Number.isSafeInteger(a.size) || a.size < 1 || a.size > LIMITS.requestBatch)
    return `client batch size ${a.size} outside 1..${LIMITS.requestBatch}`;
  if (!Number.isSafeInteger(a.index) || a.index < 0 || a.index >= a.size)
    return `client batch index ${a.index} outside a batch of ${a.size}`;
  if (a.path.length !== pathLength(a.index, a.size))
    return `client batch path has ${a.path.length} elements; leaf ${a.index} of ${a.size} needs ${pathLength(a.index, a.size)}`;
  const leaf = leafHash(b);
  // With a cache, the nodes proven so far in this tree spare most of the hashing. What this path proves is
  // kept (and a tree entry made) only once the batch signature is known good: members with made-up roots
  // neither fill the cache nor push genuine trees out of it.
  const seen = cache?.peekTree(a.root, a.size);
  let learned: LearnedNodes | undefined;
  if (cache) {
    // One scratch for every call (this runs synchronously and addLearned copies out of it), emptied first.
    learned = authLearned;
    clearLearned(learned);
  }
  if (
    !(learned
      ? verifyPathKnown(leaf, a.index, a.size, a.path, a.root, seen?.known ?? knownNodes(), learned)
      : verifyPath(leaf, a.index, a.size, a.path, a.root))
  )
    return 'client batch path does not lead to the signed root';
  // The members of one batch share their signer: a bytewise match with one verified before answers
  // without building the cache key, as long as the cache still remembers that check.
  if (seen && learned) {
    let i = -1;
    for (let k = 0; k < seen.signers.length; k++) {
      const t = seen.signers[k];
      if (
        equalBytes(t.signature, a.signature) &&
        equalBytes(t.client, r.client) &&
        equalBytes(t.groupId, r.groupId)
      ) {
        i = k;
        break;
      }
    }
    if (i >= 0) {
      if (cache?.stillGood(seen.signers[i].key)) {
        addLearned(seen.known, learned);
        return null;
      }
      seen.signers.splice(i, 1);
    }
  }
  let ok: boolean | undefined;
  if (cache) {
    const key = RequestAuthCache.keyOf(r.groupId, r.client, a.root, a.size, a.signature);
    ok = cache.lookup(key);
    if (ok === undefined) {
      ok = batchSignatureValid(r, a);
      cache.store(key, ok);
    }
    if (ok && learned) {
      const tree = seen ?? cache.tree(a.root, a.size);
      addLearned(tree.known, learned);
      if (tree.signers.length < 4)
        tree.signers.push({ groupId: r.groupId, client: r.client, signature: a.signature, key });
    }
  } else ok = batchSignatureValid(r, a);
  return ok ? null : 'client batch signature invalid';
}

/** Is the request validly authorised by its client (alone or as a member of a signed batch)? */
export function verifyRequestAuth(sr: SignedRequest, cache?: RequestAuthCache, body?: Uint8Array): boolean {
  return requestAuthProblem(sr, cache, body) === null;
}

/** verifyRequestAuth without a cache (the name from before batch signing). */
export function verifyRequestSignature(sr: SignedRequest, body?: Uint8Array): boolean {
  return requestAuthProblem(sr, undefined, body) === null;
}

export const ResultEntry = struct({ requestId: Hash32, result: Result });
export const ResultBatch = remembered(
  struct({
    node: uint,
    modelDigest: Hash32,
    entries: array(ResultEntry, LIMITS.batchEntries),
  }),
);
export type ResultBatch = Infer<typeof ResultBatch>;
export const SignedResults = struct({ batch: ResultBatch, signature: Signature });
export type SignedResults = Infer<typeof SignedResults>;

export const Vote = struct({ node: uint, results: Hash32, index: uint });
export type Vote = Infer<typeof Vote>;
export const BatchEntry = struct({
  requestId: Hash32,
  votes: sortedArray(Vote, LIMITS.nodes, (v) => v.node),
});
export type BatchEntry = Infer<typeof BatchEntry>;

export const ModelUpdate = struct({ node: uint, version: uint, newDigest: Hash32 });
export type ModelUpdate = Infer<typeof ModelUpdate>;
/**
 * The treasury's credit of `amount` to a client account (created if absent): how a client is funded after
 * the genesis. `serial` orders the treasury's deposits as `version` orders a node's model updates: the
 * ledger applies serial k only right after k − 1 (the first is 1), so a replay or a second deposit of one
 * serial has no effect. Signed with the genesis's treasury key (TAGS.deposit over Deposit).
 */
export const Deposit = struct({ client: PublicKey, amount: uint, serial: uint });
export type Deposit = Infer<typeof Deposit>;

/**
 * A node owner's new per-request fee, from the next executed entry on. `version` orders a node's fee changes
 * as it orders its model updates (a sequence of its own: the first change is 1). Signed with the node's
 * genesis key (TAGS.feeChange over FeeChange).
 */
export const FeeChange = struct({ node: uint, version: uint, fee: uint });
export type FeeChange = Infer<typeof FeeChange>;

/**
 * A node owner's payout of `amount` from what its node earned: the ledger takes it out of the node's
 * payable money (earned less withdrawn before), and the marketplace's treasury pays the owner outside the
 * group once the withdrawal is ordered and applied (docs/api.md, "Withdrawals"). `serial` orders a node's
 * withdrawals as `version` orders its fee changes (a sequence of its own: the first is 1), so a replay has no
 * effect. Signed with the node's genesis key (TAGS.withdrawal over Withdrawal).
 */
export const Withdrawal = struct({ node: uint, serial: uint, amount: uint });
export type Withdrawal = Infer<typeof Withdrawal>;

/**
 * A client's payback of `amount` of its unused balance: the ledger takes it out of the client's balance and
 * the marketplace's treasury pays the client outside the group once the refund is ordered and applied
 * (docs/api.md, "Refunds"), as it pays an owner's withdrawal. `serial` orders a client's refunds (a sequence
 * of its own per account: the first is 1), so a replay has no effect. Signed with the client's key
 * (TAGS.refund over Refund).
 */
export const Refund = struct({ client: PublicKey, serial: uint, amount: uint });
export type Refund = Infer<typeof Refund>;

/**
 * A client's payment of `amount` of its balance to the account of `to` (created if absent): the ledger moves
 * it from one balance to the other inside the group, so the money in the group stays the same. A client's
 * refunds and transfers share one sequence of serials (the first is 1): `serial` orders them together, so a
 * replay has no effect and a refund and a transfer of one serial are rivals, only one applies. Signed with the
 * paying client's key (TAGS.transfer over Transfer).
 */
export const Transfer = struct({ client: PublicKey, to: PublicKey, serial: uint, amount: uint });
export type Transfer = Infer<typeof Transfer>;

export const Tx = union({
  modelUpdate: struct({ update: ModelUpdate, signature: Signature }),
  deposit: struct({ deposit: Deposit, signature: Signature }),
  feeChange: struct({ change: FeeChange, signature: Signature }),
  withdrawal: struct({ withdrawal: Withdrawal, signature: Signature }),
  refund: struct({ refund: Refund, signature: Signature }),
  transfer: struct({ transfer: Transfer, signature: Signature }),
});
export type Tx = Infer<typeof Tx>;

/**
 * What a client's own transaction takes out of its balance (a refund's or a transfer's client, serial and
 * amount: they share the client's sequence of serials), or null for a transaction of a node or the treasury.
 */
export function clientSpendOf(tx: Tx): { client: Uint8Array; serial: number; amount: number } | null {
  if (tx.kind === 'refund') return tx.refund;
  if (tx.kind === 'transfer') return tx.transfer;
  return null;
}

/** A model update signed with its node's genesis key (the owner's): TAGS.modelUpdate over ModelUpdate. */
export function signModelUpdate(groupId: Uint8Array, update: ModelUpdate, key: KeyPair): Tx {
  return {
    kind: 'modelUpdate',
    update,
    signature: signTagged(TAGS.modelUpdate, groupId, encode(ModelUpdate, update), key),
  };
}

/** A deposit signed with the treasury's key: TAGS.deposit over Deposit. */
export function signDeposit(groupId: Uint8Array, deposit: Deposit, treasury: KeyPair): Tx {
  return {
    kind: 'deposit',
    deposit,
    signature: signTagged(TAGS.deposit, groupId, encode(Deposit, deposit), treasury),
  };
}

/** A fee change signed with its node's genesis key (the owner's): TAGS.feeChange over FeeChange. */
export function signFeeChange(groupId: Uint8Array, change: FeeChange, key: KeyPair): Tx {
  return {
    kind: 'feeChange',
    change,
    signature: signTagged(TAGS.feeChange, groupId, encode(FeeChange, change), key),
  };
}

/** A withdrawal signed with its node's genesis key (the owner's): TAGS.withdrawal over Withdrawal. */
export function signWithdrawal(groupId: Uint8Array, withdrawal: Withdrawal, key: KeyPair): Tx {
  return {
    kind: 'withdrawal',
    withdrawal,
    signature: signTagged(TAGS.withdrawal, groupId, encode(Withdrawal, withdrawal), key),
  };
}

/** A refund signed with its client's key: TAGS.refund over Refund. */
export function signRefund(groupId: Uint8Array, refund: Refund, key: KeyPair): Tx {
  return {
    kind: 'refund',
    refund,
    signature: signTagged(TAGS.refund, groupId, encode(Refund, refund), key),
  };
}

/** A transfer signed with its paying client's key: TAGS.transfer over Transfer. */
export function signTransfer(groupId: Uint8Array, transfer: Transfer, key: KeyPair): Tx {
  return {
    kind: 'transfer',
    transfer,
    signature: signTagged(TAGS.transfer, groupId, encode(Transfer, transfer), key),
  };
}

/**
 * The node a model update, fee change or withdrawal is of; −1 for a deposit (the treasury's), a refund or a
 * transfer (a client's).
 */
export function txNodeOf(tx: Tx): number {
  if (tx.kind === 'deposit' || tx.kind === 'refund' || tx.kind === 'transfer') return -1;
  if (tx.kind === 'feeChange') return tx.change.node;
  if (tx.kind === 'withdrawal') return tx.withdrawal.node;
  return tx.update.node;
}

/**
 * Is the transaction signed by the key it must be: a model update, fee change or withdrawal by the genesis
 * key of the node it names, a deposit by the genesis's treasury key, a refund or transfer by the paying client's own key?
 * (Versions and serials are for the ledger.)
 */
export function verifyTx(genesis: Genesis, groupId: Uint8Array, tx: Tx): boolean {
  if (tx.kind === 'deposit')
    return verifyTagged(TAGS.deposit, groupId, encode(Deposit, tx.deposit), tx.signature, genesis.treasury);
  if (tx.kind === 'feeChange') {
    const node = genesis.nodes[tx.change.node];
    return (
      node !== undefined &&
      verifyTagged(TAGS.feeChange, groupId, encode(FeeChange, tx.change), tx.signature, node.publicKey)
    );
  }
  if (tx.kind === 'refund')
    return verifyTagged(TAGS.refund, groupId, encode(Refund, tx.refund), tx.signature, tx.refund.client);
  if (tx.kind === 'transfer')
    return verifyTagged(
      TAGS.transfer,
      groupId,
      encode(Transfer, tx.transfer),
      tx.signature,
      tx.transfer.client,
    );
  if (tx.kind === 'withdrawal') {
    const node = genesis.nodes[tx.withdrawal.node];
    return (
      node !== undefined &&
      verifyTagged(TAGS.withdrawal, groupId, encode(Withdrawal, tx.withdrawal), tx.signature, node.publicKey)
    );
  }
  const node = genesis.nodes[tx.update.node];
  if (!node) return false;
  return verifyTagged(
    TAGS.modelUpdate,
    groupId,
    encode(ModelUpdate, tx.update),
    tx.signature,
    node.publicKey,
  );
}

/** A transaction's id: SHA-256 of its canonical bytes (signature included). */
export function txIdOf(tx: Tx): Uint8Array {
  return sha256(encode(Tx, tx));
}

export const Batch = remembered(
  struct({
    timestamp: uint,
    entries: array(BatchEntry, LIMITS.batchEntries),
    txs: array(Tx, LIMITS.txs),
  }),
);
export type Batch = Infer<typeof Batch>;

export function batchDigestOf(batch: Batch): Uint8Array {
  return batchDigestOfBytes(encode(Batch, batch));
}

/** batchDigestOf from the batch's canonical bytes (for a caller that has them already). */
export function batchDigestOfBytes(batchBytes: Uint8Array): Uint8Array {
  return taggedHash(TAGS.batch, batchBytes);
}

/** What PRE-PREPARE, PREPARE and COMMIT sign. */
export const PhaseBody = struct({ from: uint, view: uint, seq: uint, digest: Hash32 });
export type PhaseBody = Infer<typeof PhaseBody>;

export const Receipt = struct({
  groupId: Hash32,
  seq: uint,
  batchDigest: Hash32,
  prevReceipt: Hash32,
  resultsRoot: Hash32,
  resultsCount: uint,
});
export type Receipt = Infer<typeof Receipt>;

export function receiptHashOf(r: Receipt): Uint8Array {
  return sha256(encode(Receipt, r));
}

export const CheckpointBody = struct({ from: uint, seq: uint, stateDigest: Hash32 });
export type CheckpointBody = Infer<typeof CheckpointBody>;

export const CountedVote = struct({ node: uint, modelDigest: Hash32, result: Result });
export type CountedVote = Infer<typeof CountedVote>;

/** One certified request: a leaf of its batch's results tree. */
export const Outcome = struct({
  requestId: Hash32,
  client: PublicKey,
  inputDigest: Hash32,
  policy: Policy,
  votes: sortedArray(CountedVote, LIMITS.nodes, (v) => v.node),
  decision: Decision,
  fee: uint,
});
export type Outcome = Infer<typeof Outcome>;

/**
 * The certificate format version this build writes. It reads version 1 too (JSON): version 1 has no
 * `view` in its signatures, all of them plain receipt signatures.
 */
export const CERTIFICATE_VERSION = 2;

/**
 * One node's signature over a receipt, of one of two kinds:
 * - `view` null: over the Receipt under TAGS.receipt, made after the node executed the committed batch;
 * - `view` v: over PreparedReceipt{view v, H(receipt)} under TAGS.preparedReceipt, made by a node that
 *   prepared the batch in view v and had executed every batch before it (README, "Prepared receipts";
 *   docs/certificate.md §5). Such signatures count towards a quorum only together with plain ones and others of the
 *   same view: q signers of which at most f lie then hold f+1 honest nodes that either executed the batch
 *   after it committed or prepared it in one view, which is PBFT's committed predicate.
 */
export const ReceiptSignature = struct({ node: uint, signature: Signature, view: option(uint) });
export type ReceiptSignature = Infer<typeof ReceiptSignature>;
export const ReceiptSignatures = sortedArray(ReceiptSignature, LIMITS.nodes, (s) => s.node);
/** What a prepared receipt signature covers (under TAGS.preparedReceipt and the group id). */
export const PreparedReceipt = struct({ view: uint, receiptHash: Hash32 });

/** Signs a receipt: plainly (`view` null, after executing it) or bound to the view it was prepared in. */
export function signReceiptAs(
  groupId: Uint8Array,
  receipt: Receipt,
  receiptHash: Uint8Array,
  view: number | null,
  key: KeyPair,
): Uint8Array {
  return view === null
    ? signTagged(TAGS.receipt, groupId, encode(Receipt, receipt), key)
    : signTagged(TAGS.preparedReceipt, groupId, encode(PreparedReceipt, { view, receiptHash }), key);
}

/** Checks one receipt signature of either kind (`receiptBytes`: the Receipt's canonical bytes). */
export function verifyReceiptSig(
  groupId: Uint8Array,
  receiptBytes: Uint8Array,
  receiptHash: Uint8Array,
  sig: { signature: Uint8Array; view: number | null },
  publicKey: Uint8Array,
): boolean {
  return sig.view === null
    ? verifyTagged(TAGS.receipt, groupId, receiptBytes, sig.signature, publicKey)
    : verifyTagged(
        TAGS.preparedReceipt,
        groupId,
        encode(PreparedReceipt, { view: sig.view, receiptHash }),
        sig.signature,
        publicKey,
      );
}

/**
 * The q signatures that certify a receipt, from distinct nodes' signatures of both kinds: every plain one
 * and the prepared ones of a single view (the highest view that completes a quorum), lowest node ids
 * first; null when no quorum exists yet.
 */
export function receiptQuorum<T extends { node: number; view: number | null }>(
  sigs: Iterable<T>,
  q: number,
): T[] | null {
  const plain: T[] = [];
  const byView = new Map<number, T[]>();
  for (const s of sigs) {
    if (s.view === null) plain.push(s);
    else {
      const l = byView.get(s.view);
      if (l) l.push(s);
      else byView.set(s.view, [s]);
    }
  }
  let best: T[] = plain;
  let bestView = -1;
  for (const [v, l] of byView)
    if (plain.length + l.length >= q && v > bestView) {
      best = plain.concat(l);
      bestView = v;
    }
  if (best.length < q) return null;
  return best.sort((a, b) => a.node - b.node).slice(0, q);
}

export const Certificate = struct({
  version: uint,
  outcome: Outcome,
  leafIndex: uint,
  path: array(Hash32, LIMITS.path),
  receipt: Receipt,
  signatures: ReceiptSignatures,
});
export type Certificate = Infer<typeof Certificate>;
/** Version 1 (read only): signatures without `view`, all plain. */
export const CertificateV1 = struct({
  version: uint,
  outcome: Outcome,
  leafIndex: uint,
  path: array(Hash32, LIMITS.path),
  receipt: Receipt,
  signatures: sortedArray(struct({ node: uint, signature: Signature }), LIMITS.nodes, (s) => s.node),
});

/** Most requests in one POST /v1/requests. */
export const MAX_REQUESTS_PER_CALL = 1024;
/** Content type of a binary batch POST /v1/requests: the body is a RequestList (docs/api.md). */
export const REQUEST_LIST_TYPE = 'application/vnd.dropbear.requests';
/** Content type of its answer: a RequestAnswers, one per request in order. */
export const REQUEST_ANSWERS_TYPE = 'application/vnd.dropbear.answers';
/**
 * The binary form of `{"requests": [...]}`: canonical SignedRequests back to back after their count, so a
 * client builds it by concatenating each request's canonical bytes.
 */
export const RequestList = array(SignedRequest, MAX_REQUESTS_PER_CALL);
/** What became of one request of a binary batch: the binary form of an item of `{"results": [...]}`. */
export const RequestAnswer = union({
  certificate: struct({ certificate: Certificate }),
  pending: struct({ requestId: Hash32 }),
  error: struct({ requestId: option(Hash32), code: str(LIMITS.text), message: str(LIMITS.message) }),
});
export type RequestAnswer = Infer<typeof RequestAnswer>;
export const RequestAnswers = array(RequestAnswer, MAX_REQUESTS_PER_CALL);

export const PrePrepare = struct({
  view: uint,
  seq: uint,
  digest: Hash32,
  signature: Signature,
  batch: Batch,
});
export type PrePrepare = Infer<typeof PrePrepare>;

const Phase = struct({ from: uint, view: uint, seq: uint, digest: Hash32, signature: Signature });

export const NodeSignature = struct({ node: uint, signature: Signature });
export type NodeSignature = Infer<typeof NodeSignature>;
const NodeSignatures = sortedArray(NodeSignature, LIMITS.nodes, (s) => s.node);

/** A batch prepared in some view: the primary's PRE-PREPARE signature and 2f matching PREPAREs. */
export const PreparedCert = struct({
  view: uint,
  seq: uint,
  digest: Hash32,
  ppSignature: Signature,
  batch: Batch,
  prepares: NodeSignatures,
});
export type PreparedCert = Infer<typeof PreparedCert>;

/** VIEW-CHANGE: the sender's stable checkpoint with its proof (q CHECKPOINT signatures) and prepared set. */
export const ViewChangeBody = struct({
  from: uint,
  newView: uint,
  stableSeq: uint,
  stableDigest: Hash32,
  checkpointProof: NodeSignatures,
  prepared: array(PreparedCert, 4096),
});
export type ViewChangeBody = Infer<typeof ViewChangeBody>;
export const SignedViewChange = struct({ body: ViewChangeBody, signature: Signature });
export type SignedViewChange = Infer<typeof SignedViewChange>;

/** A re-proposal in a NEW-VIEW: a PRE-PREPARE signature of the new primary over (newView, seq, digest). */
export const Reproposal = struct({ seq: uint, digest: Hash32, signature: Signature });
export type Reproposal = Infer<typeof Reproposal>;

/** NEW-VIEW: q VIEW-CHANGEs and the PRE-PREPAREs the new primary derived from them. */
export const NewView = struct({
  from: uint,
  newView: uint,
  viewChanges: array(SignedViewChange, LIMITS.nodes),
  proposals: array(Reproposal, 4096),
});

/** The null batch that fills a gap in a NEW-VIEW: executes as an empty batch. */
export const NULL_BATCH: Batch = { timestamp: 0, entries: [], txs: [] };

/**
 * One executed batch as state transfer ships it: the batch, the requests and RESULTS it references
 * (checked by hash against the batch) and its proof: q receipt signatures (checked against the genesis
 * keys and the receiver's own receipt chain) or, for a batch not yet certified, q COMMIT signatures.
 */
export const StateBatch = struct({
  seq: uint,
  view: uint,
  batch: Batch,
  requests: array(SignedRequest, LIMITS.batchEntries),
  results: array(SignedResults, LIMITS.batchEntries),
  receipt: Receipt,
  receiptSigs: ReceiptSignatures,
  /**
   * When the receipt signatures make no quorum yet: COMMIT signatures for (view, seq, digest), which with
   * them make q signers (commitQuorum).
   */
  commitSigs: NodeSignatures,
});
export type StateBatch = Infer<typeof StateBatch>;

/**
 * What a StateBatch must carry besides the batch, in the order a batch too large for one frame is shipped
 * in parts (statePartRequest): the ids of the requests its entries name, in entry order, and the digests
 * of the RESULTS its votes name, in the order of their first vote. A function of the batch alone, so a
 * node catching up and any peer it asks count the same positions.
 */
export function stateBatchReferences(batch: Batch): { requests: Uint8Array[]; results: Uint8Array[] } {
  const requests: Uint8Array[] = [];
  const results: Uint8Array[] = [];
  const seen = new Set<string>();
  for (const e of batch.entries) {
    requests.push(e.requestId);
    for (const v of e.votes) {
      const d = hex(v.results);
      if (seen.has(d)) continue;
      seen.add(d);
      results.push(v.results);
    }
  }
  return { requests, results };
}

/**
 * What a batch committed with (ReplicaConfig.receiptCommits): COMMIT signatures of `view` and prepared
 * receipt signatures of `view` over the batch's receipt; together they name q nodes.
 */
export interface CommitProof {
  view: number;
  sigs: NodeSignature[];
  receiptSigs: ReceiptSignature[];
  /** The receipt hash `receiptSigs` cover (a ledger keeps them only if it executed to this receipt). */
  receiptHash: Uint8Array | null;
}

/** A proof's receipt signatures if they cover the receipt `executedHash` (what a node executed to), else none. */
export function proofReceiptSigs(proof: CommitProof | null, executedHash: Uint8Array): ReceiptSignature[] {
  return proof?.receiptHash && equalBytes(proof.receiptHash, executedHash) ? proof.receiptSigs : [];
}

/**
 * Whether signatures prove batch s with digest d committed before its receipt is certified (state
 * transfer): q distinct signers, each with a COMMIT for (view, s, d), a prepared receipt signature of
 * `view`, or a plain receipt signature, over a receipt naming s and d (the caller checks the signatures
 * and the receipt). Sound as receiptQuorum is: of q signers at most f lie, so f+1 honest ones either
 * executed the batch (a plain signature: it committed) or prepared it in one view (a COMMIT or a prepared
 * receipt signature both say so), which is PBFT's committed predicate.
 */
export function commitQuorum(
  view: number,
  commitSigs: Iterable<{ node: number }>,
  receiptSigs: Iterable<{ node: number; view: number | null }>,
  q: number,
): boolean {
  const signers = new Set<number>();
  for (const s of commitSigs) signers.add(s.node);
  for (const s of receiptSigs) if (s.view === null || s.view === view) signers.add(s.node);
  return signers.size >= q;
}

/**
 * Proof that one node signed two conflicting statements; anyone can check it against the genesis
 * (src/consensus/evidence.ts). `doubleVote`: two RESULTS batches, same node and model, different results
 * for one request. `equivocation`: two PRE-PREPARE signatures of one primary for one (view, seq).
 */
export const Evidence = union({
  doubleVote: struct({ requestId: Hash32, a: SignedResults, b: SignedResults }),
  equivocation: struct({
    node: uint,
    view: uint,
    seq: uint,
    digestA: Hash32,
    signatureA: Signature,
    digestB: Hash32,
    signatureB: Signature,
  }),
});
export type Evidence = Infer<typeof Evidence>;

/** Everything one node sends another. Each variant says how it is authenticated. */
export const NodeMessage = union({
  /** Client requests, each self-authenticating. */
  forward: struct({ requests: array(SignedRequest, LIMITS.forwardRequests) }),
  results: struct({ signed: SignedResults }),
  /** Signed by the primary of `view` over PhaseBody; the batch is bound by its digest. */
  prePrepare: struct({ pp: PrePrepare }),
  prepare: Phase,
  commit: Phase,
  /**
   * A receipt signature (see ReceiptSignature: `view` null over the Receipt itself, else a prepared
   * receipt of that view), so it can go straight into certificates.
   */
  receiptSig: struct({
    from: uint,
    seq: uint,
    receiptHash: Hash32,
    signature: Signature,
    view: option(uint),
  }),
  checkpoint: struct({ from: uint, seq: uint, stateDigest: Hash32, signature: Signature }),
  viewChange: struct({ vc: SignedViewChange }),
  /**
   * NEW-VIEW from the new primary: q VIEW-CHANGEs and the PRE-PREPAREs it derived from them. Backups
   * recompute the re-proposals from the VIEW-CHANGEs and reject a NEW-VIEW whose list differs.
   */
  newView: NewView,
  /** State transfer: "send me the executed batches from `fromSeq` on". */
  stateRequest: struct({ from: uint, fromSeq: uint }),
  stateResponse: struct({
    from: uint,
    batches: array(StateBatch, 1024),
    /** The sender's current view, proven by the NEW-VIEW that started it (none in view 0). */
    view: uint,
    newView: option(NewView),
    /** The sender's stable checkpoint with its q signatures, so the receiver's window can move too. */
    checkpoint: option(struct({ seq: uint, stateDigest: Hash32, proof: NodeSignatures })),
  }),
  /**
   * Ask a peer for things by id; answers are self-authenticating. `seqs`: batches the sender is stuck on
   * (the peer re-sends its own PREPARE, COMMIT and receipt signature for each); `prePrepares`: those of
   * them whose PRE-PREPARE the sender lacks (the peer sends it if it has it). Asking for the proposal
   * only when it is missing matters under load: a proposal is hundreds of KB, and every stuck node
   * getting a copy from every peer every retransmission round once made a 7-node group move ten copies of
   * each batch (40-60 MB per node in 12 s) and fall further behind.
   */
  fetch: struct({
    from: uint,
    requests: array(Hash32, LIMITS.fetchIds),
    results: array(Hash32, LIMITS.fetchIds),
    seqs: array(uint, 1024),
    prePrepares: array(uint, 1024),
  }),
  fetched: struct({
    requests: array(SignedRequest, LIMITS.fetchIds),
    results: array(SignedResults, LIMITS.fetchIds),
    prePrepares: array(PrePrepare, 1024),
  }),
  /**
   * A signed transaction (a model update) submitted at the sender, spread to every node so whichever
   * primary comes next can order it. Self-authenticating: signed by the key of the node it names.
   */
  tx: struct({ tx: Tx }),
  /**
   * State transfer of one executed batch too large for a frame: the peer answered a stateRequest with the
   * batch and its proof alone (a StateBatch without requests and RESULTS), and the node asks for the rest
   * in parts. `requests` and `results`: how many of the batch's references (stateBatchReferences) the
   * sender holds from the start of each list; the peer answers with a statePart from there on.
   */
  statePartRequest: struct({ from: uint, seq: uint, digest: Hash32, requests: uint, results: uint }),
  /**
   * Requests and RESULTS of executed batch `seq` (digest `digest`), as many as fit in a frame. Checked by
   * hash against the batch the receiver already checked against its proof, as a whole StateBatch is.
   */
  statePart: struct({
    from: uint,
    seq: uint,
    digest: Hash32,
    requests: array(SignedRequest, LIMITS.batchEntries),
    results: array(SignedResults, LIMITS.batchEntries),
  }),
});
export type NodeMessage = Infer<typeof NodeMessage>;

export function encodeMessage(m: NodeMessage): Uint8Array {
  return encode(NodeMessage, m);
}
/**
 * A node message from its bytes. Equal hashes, keys and signatures in it share one copy (decodeShared): a
 * decoded message is never changed in place (a Byzantine script or a test that alters one builds new
 * values).
 */
export function decodeMessage(b: Uint8Array): NodeMessage {
  return decodeShared(NodeMessage, b);
}

export function signResults(groupId: Uint8Array, batch: ResultBatch, key: KeyPair): SignedResults {
  return { batch, signature: signTagged(TAGS.results, groupId, encode(ResultBatch, batch), key) };
}
/**
 * Checks a RESULTS signature (what `signResults` made) against `publicKey`. `batchBytes`: the batch's
 * canonical bytes where the caller already has them (encoded here otherwise).
 */
export function verifyResults(
  groupId: Uint8Array,
  signed: SignedResults,
  publicKey: Uint8Array,
  batchBytes: Uint8Array = encode(ResultBatch, signed.batch),
): boolean {
  return verifyTagged(TAGS.results, groupId, batchBytes, signed.signature, publicKey);
}
export function resultsDigestOf(s: SignedResults): Uint8Array {
  return sha256(encode(SignedResults, s));
}

/** resultsDigestOf from the batch's canonical bytes (SignedResults is the batch, then the signature). */
export function resultsDigestOfParts(batchBytes: Uint8Array, signature: Uint8Array): Uint8Array {
  return sha256Of2(batchBytes, signature);
}

export type { Codec };
