/**
 * Every type that is hashed, signed or sent, as canonical codec schemas. Field order is wire order.
 * docs/certificate.md documents the ones a certificate verifier needs.
 */
import {
  array,
  bytes,
  type Codec,
  decode,
  encode,
  fixed,
  type Infer,
  option,
  sint,
  sortedArray,
  str,
  struct,
  uint,
  union,
} from './codec.ts';
import { type KeyPair, sha256, sha256Parts, signTagged, TAGS, taggedHash, verifyTagged } from './crypto.ts';

export const LIMITS = {
  nodes: 256,
  topK: 16,
  vector: 4096,
  batchEntries: 65_536,
  forwardRequests: 65_536,
  txs: 4096,
  input: 16 * 1024 * 1024,
  text: 256,
  balances: 1_000_000,
  fetchIds: 65_536,
  path: 64,
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

/** A request as it travels: the signed fields, the client's signature and the input itself. */
export const SignedRequest = struct({ request: Request, signature: Signature, input: bytes(LIMITS.input) });
export type SignedRequest = Infer<typeof SignedRequest>;

/** requestId = SHA-256(canonical Request ‖ signature); the input is bound through inputDigest. */
export function requestIdOf(sr: SignedRequest): Uint8Array {
  return requestIdOfBody(encode(Request, sr.request), sr.signature);
}

/** The same, from the request's canonical bytes when the caller already has them (encode once). */
export function requestIdOfBody(body: Uint8Array, signature: Uint8Array): Uint8Array {
  return sha256Parts(body, signature);
}

export function signRequest(req: Request, input: Uint8Array, key: KeyPair): SignedRequest {
  const signature = signTagged(TAGS.request, req.groupId, encode(Request, req), key);
  return { request: req, signature, input };
}

/** `body`: the request's canonical bytes when the caller already has them (encode once per request). */
export function verifyRequestSignature(sr: SignedRequest, body?: Uint8Array): boolean {
  return verifyTagged(
    TAGS.request,
    sr.request.groupId,
    body ?? encode(Request, sr.request),
    sr.signature,
    sr.request.client,
  );
}

export const ResultEntry = struct({ requestId: Hash32, result: Result });
export const ResultBatch = struct({
  node: uint,
  modelDigest: Hash32,
  entries: array(ResultEntry, LIMITS.batchEntries),
});
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
export const Tx = union({
  modelUpdate: struct({ update: ModelUpdate, signature: Signature }),
});
export type Tx = Infer<typeof Tx>;

/** A model update signed with its node's genesis key (the owner's): TAGS.modelUpdate over ModelUpdate. */
export function signModelUpdate(groupId: Uint8Array, update: ModelUpdate, key: KeyPair): Tx {
  return {
    kind: 'modelUpdate',
    update,
    signature: signTagged(TAGS.modelUpdate, groupId, encode(ModelUpdate, update), key),
  };
}

/** Is the transaction signed by the genesis key of the node it names? (Versions are for the ledger.) */
export function verifyTx(genesis: Genesis, groupId: Uint8Array, tx: Tx): boolean {
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

export const Batch = struct({
  timestamp: uint,
  entries: array(BatchEntry, LIMITS.batchEntries),
  txs: array(Tx, LIMITS.txs),
});
export type Batch = Infer<typeof Batch>;

export function batchDigestOf(batch: Batch): Uint8Array {
  return taggedHash(TAGS.batch, encode(Batch, batch));
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

/** The certificate format version this build writes and reads. */
export const CERTIFICATE_VERSION = 1;

export const ReceiptSignature = struct({ node: uint, signature: Signature });
export const Certificate = struct({
  version: uint,
  outcome: Outcome,
  leafIndex: uint,
  path: array(Hash32, LIMITS.path),
  receipt: Receipt,
  signatures: sortedArray(ReceiptSignature, LIMITS.nodes, (s) => s.node),
});
export type Certificate = Infer<typeof Certificate>;

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
  receiptSigs: NodeSignatures,
  /** When fewer than q receipt signatures exist yet: q COMMIT signatures for (view, seq, digest). */
  commitSigs: NodeSignatures,
});
export type StateBatch = Infer<typeof StateBatch>;

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
  /** The signature is over the Receipt itself, so it can go straight into certificates. */
  receiptSig: struct({ from: uint, seq: uint, receiptHash: Hash32, signature: Signature }),
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
  /** Ask a peer for things by id; answers are self-authenticating. */
  fetch: struct({
    from: uint,
    requests: array(Hash32, LIMITS.fetchIds),
    results: array(Hash32, LIMITS.fetchIds),
    seqs: array(uint, 1024),
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
});
export type NodeMessage = Infer<typeof NodeMessage>;

export function encodeMessage(m: NodeMessage): Uint8Array {
  return encode(NodeMessage, m);
}
export function decodeMessage(b: Uint8Array): NodeMessage {
  return decode(NodeMessage, b);
}

export function signResults(groupId: Uint8Array, batch: ResultBatch, key: KeyPair): SignedResults {
  return { batch, signature: signTagged(TAGS.results, groupId, encode(ResultBatch, batch), key) };
}
export function resultsDigestOf(s: SignedResults): Uint8Array {
  return sha256(encode(SignedResults, s));
}

export type { Codec };
