/**
 * Inference certificates: built from one executed batch and 2f+1 receipt signatures, verified offline
 * against the genesis alone. Pure: no I/O, no runtime beyond node:crypto (bundled for the browser later).
 */
import {
  addLearned,
  CERTIFICATE_VERSION,
  type Certificate,
  Certificate as CertificateCodec,
  CertificateV1,
  CodecError,
  Decision,
  decide,
  encode,
  equalBytes,
  fromJson,
  type Genesis,
  genesisProblem,
  groupIdOf,
  hex,
  type Json,
  type KnownNodes,
  knownNodes,
  type LearnedNodes,
  leafHash,
  learnedNodes,
  type MerkleTree,
  type Outcome,
  Outcome as OutcomeCodec,
  quorumSize,
  type Receipt,
  Receipt as ReceiptCodec,
  type ReceiptSignature,
  receiptHashOf,
  receiptQuorum,
  requestIdOf,
  type SignedRequest,
  sha256,
  TreeLru,
  toJson,
  validatePolicy,
  verifyPath,
  verifyPathKnown,
  verifyReceiptSig,
} from '../protocol/index.ts';

export { CERTIFICATE_VERSION };

/** null `view`: signed after executing the committed batch; v: prepared in view v (ReceiptSignature). */
export type ReceiptSig = ReceiptSignature;

/**
 * Certificates for every outcome of a batch. Takes exactly q signatures (receiptQuorum: the plain ones and
 * the prepared ones of one view, lowest node ids first), so a certificate holds no spare signature:
 * removing any one of them makes it invalid.
 */
export function buildCertificates(
  outcomes: Outcome[],
  tree: MerkleTree,
  receipt: Receipt,
  signatures: ReceiptSig[],
  q: number,
): Certificate[] {
  const sigs = receiptQuorum(signatures, q);
  if (!sigs) throw new RangeError(`need ${q} receipt signatures of one kind, have ${signatures.length}`);
  return outcomes.map((outcome, i) => ({
    version: CERTIFICATE_VERSION,
    outcome,
    leafIndex: i,
    path: tree.path(i),
    receipt,
    signatures: sigs,
  }));
}

export function certificateToJson(c: Certificate): Json {
  return toJson(CertificateCodec, c);
}

export type VerifyFailure =
  | 'bad-genesis'
  | 'malformed'
  | 'unsupported-version'
  | 'wrong-group'
  | 'unknown-voter'
  | 'duplicate-voter'
  | 'insufficient-votes'
  | 'bad-policy'
  | 'wrong-decision'
  | 'bad-proof'
  | 'unknown-signer'
  | 'duplicate-signer'
  | 'bad-signature'
  | 'mixed-views'
  | 'insufficient-signatures'
  | 'request-mismatch';

export type VerifyResult =
  | { ok: true; certificate: Certificate }
  | { ok: false; reason: VerifyFailure; message: string };

/**
 * Remembers receipt signatures already checked, per receipt hash (one receipt serves a whole batch), and
 * the Merkle nodes already proven in each batch's results tree: the certificates of one batch then cost
 * about two node hashes each instead of a whole path (verifyPathKnown; same answer for every input). Nodes
 * are only learned from certificates that verified whole (signatures included), so forged certificates
 * with made-up roots neither fill the cache nor push genuine trees out.
 */
export class SignatureCache {
  private readonly seen = new Map<string, Map<number, string>>();
  /** Per results tree (root and size): its nodes proven so far (verifyPathKnown). */
  private readonly trees: TreeLru<KnownNodes>;
  constructor(
    private readonly maxReceipts = 10_000,
    /** Results trees whose proven nodes are kept (each up to 2·size − 1 of them). */
    maxTrees = 256,
  ) {
    this.trees = new TreeLru(maxTrees);
  }
  /** What is proven of the results tree with this root and size, if anything (it becomes the most recent). */
  provenNodes(root: Uint8Array, size: number): KnownNodes | undefined {
    return this.trees.get(root, size);
  }
  /** Records what a verified certificate's path proved about the tree with this root and size. */
  learn(root: Uint8Array, size: number, learned: LearnedNodes): void {
    if (learned.nodeCount === 0 && learned.siblingCount === 0) return;
    addLearned(this.trees.getOrAdd(root, size, knownNodes), learned);
  }
  /** `view`: the signature's kind (ReceiptSignature), part of what it signs. */
  has(receiptHash: string, node: number, sig: Uint8Array, view: number | null = null): boolean {
    return this.seen.get(receiptHash)?.get(node) === sigKey(sig, view);
  }
  add(receiptHash: string, node: number, sig: Uint8Array, view: number | null = null): void {
    let m = this.seen.get(receiptHash);
    if (!m) {
      if (this.seen.size >= this.maxReceipts) this.seen.delete(this.seen.keys().next().value as string);
      m = new Map();
      this.seen.set(receiptHash, m);
    }
    m.set(node, sigKey(sig, view));
  }
}

function sigKey(sig: Uint8Array, view: number | null): string {
  return view === null ? hex(sig) : `${hex(sig)}@${view}`;
}

const groupIds = new WeakMap<Genesis, Uint8Array>();
function groupIdCached(g: Genesis): Uint8Array {
  let id = groupIds.get(g);
  if (!id) {
    id = groupIdOf(g);
    groupIds.set(g, id);
  }
  return id;
}

/** genesisProblem, once per genesis object (like its group id, the object is taken as never changed). */
const genesisProblems = new WeakMap<Genesis, string | null>();
function genesisProblemCached(g: Genesis): string | null {
  let p = genesisProblems.get(g);
  if (p === undefined) {
    p = genesisProblem(g);
    genesisProblems.set(g, p);
  }
  return p;
}

export interface VerifyOptions {
  cache?: SignatureCache;
  /**
   * When given, the certificate must be for exactly this request (its id: the Request's fields, however
   * the client signed it) and this input. The client's signature is not checked again here: the nodes
   * checked it before they voted.
   */
  request?: SignedRequest;
}

function fail(reason: VerifyFailure, message: string): VerifyResult {
  return { ok: false, reason, message };
}

/**
 * Checks a certificate (decoded, or its JSON form) against a genesis. Every field is either covered by
 * the receipt signatures (through the Merkle path and the receipt) or recomputed here.
 */
export function verifyCertificate(
  input: Certificate | unknown,
  genesis: Genesis,
  opts: VerifyOptions = {},
): VerifyResult {
  // A genesis that cannot run a group proves nothing: one key listed for two nodes (or one secret behind
  // several keys) would let one party supply several of the q signatures.
  const badGenesis = genesisProblemCached(genesis);
  if (badGenesis !== null) return fail('bad-genesis', badGenesis);
  let cert: Certificate;
  const legacy = isVersion1(input);
  try {
    // Always go through the strict codec: it rejects unknown fields (JSON), duplicate or unsorted signers
    // and voters, oversize values and wrong types.
    if (isDecoded(input)) {
      encode(CertificateCodec, input); // validates types, sizes and the order of signers and voters
      // The encoder reads a missing or undefined `view` as none (a plain signature); so does everything
      // below, once it is null.
      cert = input.signatures.every((s) => s.view !== undefined)
        ? input
        : { ...input, signatures: input.signatures.map((s) => ({ ...s, view: s.view ?? null })) };
    } else if (legacy) {
      const v1 = fromJson(CertificateV1, input);
      cert = { ...v1, signatures: v1.signatures.map((x) => ({ ...x, view: null })) };
    } else cert = fromJson(CertificateCodec, input);
  } catch (e) {
    if (e instanceof CodecError) {
      if (e.code === 'CODEC_BAD_VALUE' && /ascending/.test(e.message))
        return fail(/^outcome\.votes/.test(e.message) ? 'duplicate-voter' : 'duplicate-signer', e.message);
      return fail('malformed', e.message);
    }
    return fail('malformed', String(e));
  }
  // Version 1 reads only as JSON (above): its layout has no `view` in its signatures.
  if (cert.version !== CERTIFICATE_VERSION && !legacy)
    return fail('unsupported-version', `version ${cert.version}`);
  const n = genesis.nodes.length;
  const f = genesis.f;
  const q = quorumSize(n, f);
  const { outcome, receipt } = cert;
  if (!equalBytes(receipt.groupId, groupIdCached(genesis)))
    return fail('wrong-group', 'receipt is for another group');

  for (const v of outcome.votes)
    if (v.node >= n) return fail('unknown-voter', `vote from unknown node ${v.node}`);
  if (outcome.votes.length < q)
    return fail('insufficient-votes', `${outcome.votes.length} counted votes < ${q}`);
  try {
    validatePolicy(outcome.policy, n, f);
  } catch (e) {
    return fail('bad-policy', (e as Error).message);
  }
  const expected = decide(
    outcome.policy,
    outcome.votes.map((v) => v.result),
  );
  if (!equalBytes(encode(Decision, expected), encode(Decision, outcome.decision)))
    return fail('wrong-decision', 'the decision does not follow from the votes under the policy');

  const leaf = leafHash(encode(OutcomeCodec, outcome));
  // With a cache: the nodes proven so far in this tree spare most of the hashing, and what this path
  // proves is kept only once the whole certificate has verified (below).
  const learned: LearnedNodes | undefined = opts.cache ? learnedNodes() : undefined;
  if (
    !(learned
      ? verifyPathKnown(
          leaf,
          cert.leafIndex,
          receipt.resultsCount,
          cert.path,
          receipt.resultsRoot,
          opts.cache?.provenNodes(receipt.resultsRoot, receipt.resultsCount) ?? knownNodes(),
          learned,
        )
      : verifyPath(leaf, cert.leafIndex, receipt.resultsCount, cert.path, receipt.resultsRoot))
  )
    return fail('bad-proof', 'Merkle path does not lead to the receipt results root');

  const receiptBytes = encode(ReceiptCodec, receipt);
  const receiptHash = sha256(receiptBytes);
  const rh = hex(receiptHash);
  let preparedView: number | null = null;
  for (const s of cert.signatures) {
    if (s.view === null) continue;
    if (preparedView !== null && s.view !== preparedView)
      return fail('mixed-views', `prepared receipt signatures of views ${preparedView} and ${s.view}`);
    preparedView = s.view;
  }
  for (const s of cert.signatures) {
    const node = genesis.nodes[s.node];
    if (!node) return fail('unknown-signer', `signature from unknown node ${s.node}`);
    if (opts.cache?.has(rh, s.node, s.signature, s.view)) continue;
    if (!verifyReceiptSig(receipt.groupId, receiptBytes, receiptHash, s, node.publicKey))
      return fail('bad-signature', `receipt signature of node ${s.node} is invalid`);
    opts.cache?.add(rh, s.node, s.signature, s.view);
  }
  if (cert.signatures.length < q)
    return fail('insufficient-signatures', `${cert.signatures.length} signatures < ${q}`);
  if (learned) opts.cache?.learn(receipt.resultsRoot, receipt.resultsCount, learned);

  if (opts.request) {
    const r = opts.request;
    if (!equalBytes(requestIdOf(r), outcome.requestId) || !equalBytes(r.request.client, outcome.client))
      return fail('request-mismatch', 'certificate is for another request');
    if (!equalBytes(sha256(r.input), outcome.inputDigest))
      return fail('request-mismatch', 'input digest differs');
  }
  return { ok: true, certificate: cert };
}

/** A version-1 certificate's JSON: version 1 and no signature with a `view` (version 2 always has one). */
function isVersion1(x: unknown): boolean {
  if (isDecoded(x) || typeof x !== 'object' || x === null) return false;
  const c = x as { version?: unknown; signatures?: unknown };
  return (
    c.version === 1 &&
    Array.isArray(c.signatures) &&
    c.signatures.every((s) => typeof s === 'object' && s !== null && !Object.hasOwn(s, 'view'))
  );
}

function isDecoded(x: unknown): x is Certificate {
  return (
    typeof x === 'object' &&
    x !== null &&
    (x as { receipt?: { groupId?: unknown } }).receipt?.groupId instanceof Uint8Array
  );
}

export { receiptHashOf };
