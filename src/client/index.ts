/**
 * The client SDK: sign requests, send them to some or all nodes of a group, and return the first
 * certificate that verifies offline against the group's genesis. `inferBatch` signs many inputs with one
 * signature (a Merkle root over the requests) and sends them in few POSTs. Light by design: protocol and
 * certificate only (no model runtime, no SQLite, no server); HTTP through the platform's `fetch`.
 */
import { createPublicKey, KeyObject } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { SignatureCache, verifyCertificate } from '../certificate/index.ts';
import { readCapped } from '../protocol/capped-body.ts';
import {
  Certificate,
  codeOr,
  type Decision,
  DropbearError,
  decode,
  encode,
  equalBytes,
  fromJson,
  type Genesis,
  genesisProblem,
  groupIdOf,
  hex,
  type KeyPair,
  keyPairFromSeed,
  LIMITS,
  MAX_REQUESTS_PER_CALL,
  type Policy,
  Policy as PolicyCodec,
  printableLine,
  quorumOf,
  REQUEST_ANSWERS_TYPE,
  REQUEST_LIST_TYPE,
  type Request,
  type RequestAnswer,
  RequestAnswers,
  requestIdOf,
  SignedRequest,
  sha256,
  signRequest,
  signRequestBatch,
  uint,
  untrustedCertificateCause,
  validatePolicy,
} from '../protocol/index.ts';

/**
 * What a caller of the SDK needs besides the client, from this one entry point: the class every rejection
 * is (its `code` stable, its message saying which nodes failed and why), and the types its options and
 * results name. Until 2026-12-07 they had to be found in `dropbear/protocol`, which the docs did not say.
 */
export {
  type Certificate,
  type Decision,
  DropbearError,
  type Genesis,
  type KeyPair,
  keyPairFromSeed,
  type Policy,
  type SignedRequest,
} from '../protocol/index.ts';

export interface GroupNode {
  id: number;
  /** The node's HTTP API, e.g. http://127.0.0.1:8100 */
  api: string;
}

export interface ClientOptions {
  genesis: Genesis;
  nodes: GroupNode[];
  key: KeyPair;
  /**
   * Which nodes get each request: 'all' (default), a count (an integer ≥ 1; f+1 is enough for liveness;
   * more than there are nodes means all), or ids of nodes in `nodes` (at least one). Anything else is
   * refused (CLIENT_CONFIG).
   */
  sendTo?: 'all' | number | number[];
  /**
   * How long to wait for a certificate, in ms (default 30 s): a number in (0, 2^31 − 1], about 24.8 days
   * (the longest delay a timer takes). Anything else (0, negative, NaN, Infinity, more) is refused with
   * CLIENT_CONFIG, here and per call (`InferOptions.timeoutMs`, `send`, `sendBatch`): there is no "no limit".
   */
  timeoutMs?: number;
  /**
   * Hedging: a request the chosen nodes have not certified within this many ms is also sent to the nodes
   * `sendTo` left out (it is idempotent: a node that holds it already only waits for its certificate), and
   * the first certificate that verifies wins. It also wakes the chosen nodes that did not wait (`waitOn`).
   * Default 2000; Infinity asks the left-out nodes only once the chosen ones have failed. Any node's
   * certificate is as good as another's, and a node that is behind (overloaded, just restarted, or slow on
   * purpose) certifies late.
   */
  hedgeMs?: number;
  /**
   * Of the nodes a request is sent to, how many hold the POST open until they have its certificate
   * (an integer ≥ 1; default f+1, so at least one of them is honest; round robin). The others answer at
   * once (with the certificate if they have it already) and are asked again (long polls) as soon as any
   * waiting node fails, or after `hedgeMs`, or at half the call's time, whichever comes first. The cost:
   * when the waiting nodes are slow to certify (behind, or one withholding while the other lags), the
   * answer comes from them or at that time, not from the fastest node. `waitOn` = n waits on every node,
   * as the SDK did before: every POST is then held open per request (once a certificate verifies, the
   * others may finish for up to POST_GRACE_MS, so that their connections stay open; see send).
   * Batches (`sendBatch`, `inferBatch`) do not use it.
   */
  waitOn?: number;
  /** Highest fee the client agrees to pay per request (default: the sum of all node fees). */
  maxFee?: number;
  policy?: Policy | null;
  fetch?: typeof fetch;
  /**
   * Largest HTTP body one POST of `inferBatch` may have, in bytes (default 8 MiB, the node's default
   * `bodyLimitBytes`). A batch is cut into POSTs of at most 1024 requests and this many bytes; a node that
   * still answers 413 gets smaller POSTs, and a request too large for JSON alone goes as canonical bytes.
   */
  maxBodyBytes?: number;
  /**
   * Largest answer body the SDK reads from a node, in bytes (default 32 MiB; an integer ≥ 1). Answers are
   * read as they come and abandoned past it (the connection closed): the node counts as failing for what
   * it answered, RESPONSE_TOO_LARGE in the call's per-node errors, so a faulty node that streams an endless
   * body costs the client this much memory at most. The largest honest answer is a batch POST's: 1024
   * certificates of ~1.1 KB each at n = 4 with top-5 votes (1.07 MiB measured; 1.45 MiB at n = 7, 2.2 MiB
   * at n = 13), or 1024 errors of at most 4 KiB; a certificate polled as JSON is ~2.7 KB at n = 4. The
   * default leaves room for certificates ~15 times that size (larger groups or results); a model with large
   * vector outputs may need more. A `fetch` whose responses have no body stream (one of the caller's own)
   * buffers each body itself; the SDK then checks the size after.
   */
  maxResponseBytes?: number;
  /**
   * Coalescing (off by default): `infer` calls made in the same turn of the event loop with the same
   * options (a server answering concurrent users, a loop whose answers arrive together) are signed
   * together and sent as one batch, as `inferBatch` sends: one client signature, and one POST per node,
   * for all of them instead of one of each per call. Each call still settles with its own result. A call
   * alone in its turn goes as without it (one signature, `waitOn`). Nothing waits for more calls: the cost
   * is the batch's behaviour (every chosen node holds its POST open; the batch shares one deadline).
   */
  coalesce?: boolean;
  /**
   * Sending again a request that no node took: every node asked turned it away as OVERLOADED (503; or a
   * 503 or 429 without a Dropbear error body, from a proxy in front of the node) or
   * surely did not take it (a final refusal, a connection never made), so the group never saw it and the
   * same signed request (same id, nothing charged twice: a node that holds or executed it answers with its
   * certificate) is sent again after a backoff, within the call's `timeoutMs`. On by default (see
   * OverloadRetry); `false` (or `maxRetries: 0`) ends the call with OVERLOADED at the first such round, as
   * before. `infer`, `send` (and a coalesced `infer` alone in its turn) resend the whole round;
   * `inferBatch`, `sendBatch` (and coalesced `infer` calls sent together, as one `inferBatch`) resend each
   * node's POST that it turned away, with the same backoff and limit per node.
   */
  overloadRetry?: OverloadRetry | false;
}

/** How requests no node took are sent again (ClientOptions.overloadRetry). */
export interface OverloadRetry {
  /**
   * Times a request is sent again after the first (default 6; an integer ≥ 0, 0 is off). The call ends
   * with OVERLOADED once they are used up, or sooner when the next wait would leave under 100 ms of the
   * call's time: `details.attempts` then says how many times it was sent.
   */
  maxRetries?: number;
  /**
   * Jittered exponential backoff: retry k waits a random time in [d/2, d), d = min(maxDelayMs,
   * baseDelayMs · 2^(k−1)) (defaults 250 ms and 8000 ms; numbers ≥ 0), and never less than the
   * Retry-After the nodes sent (the least of them; at most 30 s each): the node says when it expects room.
   */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** The jitter's source of numbers in [0, 1) (default Math.random; for tests). */
  random?: () => number;
}

export interface InferOptions {
  policy?: Policy | null;
  maxFee?: number;
  /** This call's time, as ClientOptions.timeoutMs (the same limits; CLIENT_CONFIG past them). */
  timeoutMs?: number;
  /**
   * Ends the call when it aborts: it rejects with ABORTED (`details.reason`: the signal's reason), its
   * HTTP calls are cut off and its timers cleared at once; aborted already, nothing is sent. In
   * `inferBatch`/`sendBatch` the requests not settled by then have ABORTED as their result (those certified
   * keep theirs). A call with a signal is not coalesced (ClientOptions.coalesce). The request may have
   * reached a node before the abort: to retry it, `send` the same signed request. Not an AbortSignal:
   * CLIENT_CONFIG.
   */
  signal?: AbortSignal;
}

/** How `inferBatch` signs: one signature over the whole batch, or one per request (each request alone). */
export type BatchSigning = 'batch' | 'each';

export interface InferResult {
  requestId: string;
  certificate: Certificate;
  decision: Decision;
  /** Each node's top-1 (or null) as counted in the certificate. */
  votes: { node: number; label: number | null; modelDigest: string }[];
  /** The node whose answer arrived first. */
  servedBy: number;
}

/**
 * The clock every deadline and wait of a call runs on: the monotonic one. On the system clock (before
 * 2026-12-06) a step back during a call stretched it by the step (an hour's step: the call waited an hour
 * past its timeoutMs), and a step forward could end its poll loops and retries early. Request timestamps
 * stay on the system clock.
 */
const monoNow = (): number => performance.now();

/** See ClientOptions.hedgeMs. */
const DEFAULT_HEDGE_MS = 2000;
/**
 * The client's receipt-signature memo (see DropbearClient.signatures): receipts remembered, and results
 * trees whose proven nodes are kept (up to 2·1024 − 1 nodes each for a full consensus batch).
 */
const CACHE_RECEIPTS = 4096;
const CACHE_TREES = 16;

/** The reason given to aborted work (a shared object: no DOMException is built per abort). */
const DONE = new Error('settled');
/**
 * Why `send` has no other nodes to ask when it chose every node: never shown (`send` builds the error it
 * throws), so one shared object rather than an error and its stack trace per call.
 */
const NO_OTHER = new Error('no other node to ask');

const REQUEST_TYPE = 'application/octet-stream';
/**
 * The node's default body limit at its smallest (API_DEFAULTS.bodyLimitBytes in src/node/api.ts; more for a
 * genesis whose maxInputBytes is over ~6 MiB, bodyLimitFor there).
 */
const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;
/** The count in front of the requests of a binary batch POST (a varint: 2 bytes up to 16383). */
const BATCH_BODY_OVERHEAD = 2;
/** Long polls of certificates in flight per node during `sendBatch`. */
const POLLS_PER_NODE = 16;
/** A poll that comes back empty sooner than this waits out the rest before polling again. */
const MIN_POLL_INTERVAL_MS = 100;
/**
 * An overloaded node is asked again after its Retry-After only if at least this much of the call's time is
 * left then: less is no time for the group to order and certify what it takes.
 */
const MIN_RETRY_WINDOW_MS = 100;
/** OverloadRetry's defaults. */
const RETRY_DEFAULTS = { maxRetries: 6, baseDelayMs: 250, maxDelayMs: 8000 } as const;
/** The longest Retry-After honoured (a node asking for more is asked again after this). */
const MAX_RETRY_AFTER_MS = 30_000;
/**
 * How long `send` lets its other POSTs finish once it has its answer (at most until its deadline). Aborting
 * an HTTP call closes its connection: the other node holding the POST open usually certifies within
 * milliseconds of the first, and cutting it off made the next call to that node open a new connection
 * (0.22–0.27 new connections per image per node in the e2e bench; over TLS, a handshake each).
 */
const POST_GRACE_MS = 1000;
/** See ClientOptions.maxResponseBytes. */
const DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;
/** The longest timeoutMs: the longest delay setTimeout takes (a longer one fires at once). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;
/**
 * The longest a batch POST asks a node to hold it open (`wait`); it also leaves a quarter of the call's time left (at most 1 s). A
 * node answers a POST once every request in it is certified or the wait is over: with the whole call's
 * time as the wait, one request that never certifies held the answer past the client's deadline, and the
 * other requests' certificates with it (every call coalesced with it failed). With this bound the answer
 * comes in time with the certified requests and the others pending, which are then polled.
 */
const BATCH_WAIT_MS = 5000;

/** One request of a `sendBatch` call: its result once known, and why nodes failed it so far. */
interface BatchItem {
  index: number;
  sr: SignedRequest;
  id: string;
  /** The SignedRequest's canonical bytes (a RequestList is their count and their concatenation). */
  bytes: Uint8Array;
  out?: InferResult | Error;
  errors: string[];
  /** Each node's refusal of it with a final code (see refusalVerdict): the first it gave. */
  refusals: Map<number, DropbearError>;
  /** Nodes that turned it away as OVERLOADED (503), each noted once in `errors`. */
  overloadedBy?: Set<number>;
  /** A node took it: it answered pending or with a certificate (valid or not). */
  taken?: boolean;
  /**
   * Nodes it was POSTed to (with how many times), and those of them that turned it away for sure
   * (OVERLOADED, or a final refusal): OVERLOADED is the item's answer only when every node asked did,
   * since a POST still open or cut off may have been taken (see sendRound).
   */
  asked?: Map<number, number>;
  declined?: Set<number>;
  /**
   * Ends this item's own calls (a lone POST, polls) once it is settled or the call ends. Made only when
   * such a call starts (`itemSignal`): most items settle from their batch's answer and never need one,
   * and an abort costs an event even with nothing listening.
   */
  abort?: AbortController;
}

/**
 * A controller for work that calls every node of a group of `nodes` at once on its one signal: each call
 * and each wait between polls listens to the signal, and Node warns past 10 listeners on one (a group of
 * 10 nodes did, with a fetch that does not raise the limit as the global fetch does). Room for them all.
 */
function fanOutController(nodes: number): AbortController {
  const c = new AbortController();
  setMaxListeners(3 * nodes + 8, c.signal);
  return c;
}

interface BatchContext {
  deadline: number;
  /** This round posts to every node of the group (`sentTo=all`). */
  sentToAll: boolean;
  signal: AbortSignal;
  cache: SignatureCache;
  settle(it: BatchItem, r: InferResult | Error): void;
}

/** A batch POST's answers, or the error for the whole POST and the node's Retry-After (ms) if it sent one. */
type BatchPost = { results: RequestAnswer[] } | { error: DropbearError; retryAfterMs: number | null };

/** An `infer` call waiting for the end of its turn (ClientOptions.coalesce). */
interface TurnCall {
  input: Uint8Array;
  opts: InferOptions;
  resolve: (r: InferResult) => void;
  reject: (e: unknown) => void;
}

/** Calls coalesce only with calls of the same options: one signature covers one policy and fee. */
function coalesceKey(o: InferOptions): string {
  if (o.policy === undefined && o.maxFee === undefined && o.timeoutMs === undefined) return '';
  return JSON.stringify([o.policy ?? null, o.maxFee ?? null, o.timeoutMs ?? null]);
}

/** The query of POST /v1/requests: how long to wait, and whether every node got the request from us. */
function submitQuery(waitMs: number, sentToAll: boolean): string {
  return `wait=${Math.max(0, Math.floor(waitMs))}${sentToAll ? '&sentTo=all' : ''}`;
}

/** Whether `x` is a web ReadableStream (the platform's fetch gives one; a light fetch may not). */
function isStream(x: unknown): x is ReadableStream<Uint8Array> {
  return typeof (x as ReadableStream | null)?.getReader === 'function';
}

/**
 * The body of `res`, at most `max` bytes (ClientOptions.maxResponseBytes), else RESPONSE_TOO_LARGE: a body
 * that declares a larger length is not read at all, one without a length is read as it comes and abandoned
 * past `max` (cancelling the stream closes the connection), so a node that streams without end costs
 * `max` bytes. One with its length declared and within `max` is read whole: the HTTP parser reads no more
 * than that length. Unless it is compressed (Content-Encoding): the declared length is then the compressed
 * one, and fetch decompresses as it reads, so it is read as it comes like one without a length (8 MiB of
 * gzip'd spaces in ~8 KB, declared so, was read whole, then measured: 2026-12-06). A response without a
 * body stream (a caller's own `fetch`) is read whole and checked.
 */
async function bodyOf(res: Response, max: number): Promise<Uint8Array> {
  const tooLarge = (size: string) =>
    new DropbearError(
      'RESPONSE_TOO_LARGE',
      `answer of ${size} bytes, over the limit of ${max} (maxResponseBytes); not read further`,
    );
  const length = res.headers.get('content-length');
  const declared = length === null ? Number.NaN : Number(length);
  const body = (res as { body?: unknown }).body;
  if (declared > max) {
    if (isStream(body)) body.cancel().catch(() => {});
    throw tooLarge(`${declared}`);
  }
  const encoding = res.headers.get('content-encoding')?.trim().toLowerCase() ?? '';
  const plain = encoding === '' || encoding === 'identity';
  if (!isStream(body) || (Number.isSafeInteger(declared) && plain)) {
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.length > max) throw tooLarge(`${bytes.length}`);
    return bytes;
  }
  return readCapped(res, max, (size, declared) => tooLarge(declared ? `${size}` : `more than ${max}`));
}

const UTF8 = new TextDecoder();

/** The most of one node's message (or of why it failed) that goes into an error's message. */
const MAX_NODE_TEXT = 300;

/**
 * Text a node chose (its error's message, a redirect's target, a parser's quote of its answer) as it goes
 * into an error's message: one line, no control characters (a line break, or a terminal's escape, made
 * `dropbear infer` print lines the node wrote, "certified: …" among them), at most MAX_NODE_TEXT
 * characters (a JSON error's message had no bound but maxResponseBytes), and a string whatever it was.
 */
function nodeText(x: unknown): string {
  return printableLine(String(x), MAX_NODE_TEXT);
}

/**
 * For an answer with a 3xx status: where it points, said. A Dropbear node never redirects, and fetch is
 * told not to follow (`redirect: 'manual'`): followed, a faulty node sent the client's GETs to a host of its
 * choosing, and a redirected POST failed as "fetch failed (Cannot perform ArrayBuffer.prototype.slice on a
 * detached ArrayBuffer)".
 */
function redirectNote(res: Response): string {
  if (res.type === 'opaqueredirect') return ', a redirect (not followed)';
  if (res.status < 300 || res.status > 399) return '';
  const to = res.headers.get('location');
  return to === null ? ', a redirect (not followed)' : `, a redirect to ${nodeText(to)} (not followed)`;
}

/** Why an answer is neither a certificate, "pending" nor the API's error ("node 0 answered 200" said none). */
function unexpectedAnswer(node: GroupNode, res: Response, body: unknown): string {
  const note = redirectNote(res);
  if (note) return `node ${node.id} answered ${res.status}${note}`;
  return `node ${node.id} answered ${res.status} ${body === null ? 'with a body that is not JSON' : 'without a certificate or an error'}`;
}

/**
 * The code of an error answer: the node's own (its JSON error body), else OVERLOADED for a 503 or 429 (a
 * proxy or load balancer in front of the node turned the request away before the node saw it: retried
 * like the node's own OVERLOADED, after its Retry-After; it was HTTP_503, and the call ended
 * NO_CERTIFICATE at once), else HTTP_<status>.
 */
function errorCodeOf(res: Response, body: { error?: { code?: unknown } } | null): string {
  const fallback = res.status === 503 || res.status === 429 ? 'OVERLOADED' : `HTTP_${res.status}`;
  return codeOr(body?.error?.code, fallback);
}

/** The API's error in a JSON answer (`{"error": {"code", "message"}}`), its code and message checked. */
function jsonError(
  node: GroupNode,
  res: Response,
  body: { error?: { code?: unknown; message?: unknown } } | null,
): DropbearError {
  const code = errorCodeOf(res, body);
  const said = body?.error?.message;
  return new DropbearError(
    code,
    typeof said === 'string' ? nodeText(said) : unexpectedAnswer(node, res, body),
  );
}

/**
 * The JSON body of `res` (bodyOf's limit), or null when it is not JSON or could not be read: only
 * RESPONSE_TOO_LARGE is thrown (what reading it did not end is the node's failure for the caller to note).
 */
async function jsonOf(res: Response, max: number): Promise<unknown> {
  let bytes: Uint8Array;
  try {
    bytes = await bodyOf(res, max);
  } catch (e) {
    if (e instanceof DropbearError && e.code === 'RESPONSE_TOO_LARGE') throw e;
    return null;
  }
  try {
    return JSON.parse(UTF8.decode(bytes));
  } catch {
    return null;
  }
}

/**
 * A node's binary answer (RequestAnswers, status 200 or 202) to a POST of `n` requests; null when it
 * answered otherwise (JSON: an error for the whole POST). BAD_ANSWER when it does not decode to n answers,
 * RESPONSE_TOO_LARGE past `max` bytes.
 */
async function answersOf(
  res: Response,
  node: GroupNode,
  n: number,
  max: number,
): Promise<RequestAnswer[] | null> {
  if (
    (res.status !== 200 && res.status !== 202) ||
    !res.headers.get('content-type')?.startsWith(REQUEST_ANSWERS_TYPE)
  )
    return null;
  const bytes = await bodyOf(res, max);
  let answers: RequestAnswer[];
  try {
    answers = decode(RequestAnswers, bytes);
  } catch (e) {
    throw new DropbearError('BAD_ANSWER', `node ${node.id}: unreadable answer: ${(e as Error).message}`);
  }
  if (answers.length !== n)
    throw new DropbearError(
      'BAD_ANSWER',
      `node ${node.id} answered ${answers.length} results for ${n} requests`,
    );
  return answers;
}

/**
 * What the refusals of one request so far settle, if anything. A refusal with a final code ends a call
 * (or settles a batch item) only once enough distinct nodes refused with the SAME code: f+1 for a code
 * every honest node derives from the request alone (REQUEST_INTRINSIC), so that at least one honest node
 * said exactly that; q for one that may be a node's own, so that f faulty nodes echoing one honest node's
 * own refusal cannot end a call the rest certify (from a review, 2026-12-05). The error then has that code,
 * and its message names those nodes and what each said. Refusals with different codes prove nothing: an honest node's own refusal (its body
 * limit, its model's input check, its ledger behind, its clock at the edge) and a Byzantine node's lie must
 * not end a call the other nodes would certify. Once every node has refused, with no f+1 of them agreeing,
 * nothing is left to wait for: NO_CERTIFICATE, listing each node's code and message; unless they all gave
 * the same code, which only a client given fewer than f+1 nodes sees (one node, say: its word is all that
 * client asked for), and then that code. Else null: the call goes on (a lone refusal at the deadline ends
 * as NO_CERTIFICATE or OVERLOADED, among the per-node errors).
 */
function refusalVerdict(
  refusals: ReadonlyMap<number, DropbearError>,
  f: number,
  q: number,
  nodes: number,
  id: string,
): DropbearError | null {
  const byCode = new Map<string, number[]>();
  for (const [node, e] of refusals) {
    const ids = byCode.get(e.code);
    if (ids) ids.push(node);
    else byCode.set(e.code, [node]);
  }
  const said = (ids: Iterable<number>) =>
    Array.from(ids, (node) => {
      const e = refusals.get(node) as DropbearError;
      return `node ${node}: ${e.code} ${e.message}`;
    }).join('; ');
  for (const [code, ids] of byCode) {
    // A code every honest node derives from the request alone: f + 1 agreeing include an honest one. A
    // code that may be a node's own (its clock, ledger, body limit or model) needs q: f faulty nodes
    // echoing one honest node's own refusal must not end a call the other nodes certify (and charge).
    const need = REQUEST_INTRINSIC.has(code) ? f + 1 : q;
    if (ids.length >= need)
      return new DropbearError(
        code,
        `nodes ${ids.join(', ')} refused ${id} with ${code} (${need === f + 1 ? `f + 1 = ${need}` : `q = ${need}`} agree): ${said(ids)}`,
      );
  }
  if (refusals.size >= nodes && byCode.size === 1) {
    const [[code, ids]] = byCode;
    return new DropbearError(
      code,
      `every node asked (${ids.join(', ')}, fewer than f + 1 = ${f + 1}) refused ${id} with ${code}: ${said(ids)}`,
    );
  }
  if (refusals.size >= nodes)
    return new DropbearError(
      'NO_CERTIFICATE',
      `every node refused ${id}, no f + 1 = ${f + 1} of them with the same code: ${said(refusals.keys())}`,
    );
  return null;
}

/** The error of a call its caller's AbortSignal ended (InferOptions.signal). */
function abortedError(signal: AbortSignal): DropbearError {
  const reason: unknown = signal.reason;
  const why = reason instanceof Error ? reason.message : reason === undefined ? '' : String(reason);
  return new DropbearError(
    'ABORTED',
    `the call was aborted by its signal${why ? `: ${nodeText(why)}` : ''}`,
    {
      reason,
    },
  );
}

/** CLIENT_CONFIG unless `signal` is undefined or an AbortSignal (InferOptions.signal). */
function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined || signal instanceof AbortSignal) return signal;
  throw new DropbearError('CLIENT_CONFIG', `signal must be an AbortSignal, not ${String(signal)}`);
}

/** Per caller's signal: the one listener the SDK put on it, and the calls it ends (onAbort). */
const watchers = new WeakMap<AbortSignal, { calls: Set<() => void>; fire: () => void }>();

/**
 * Runs `f` when `signal` aborts, until the returned function is called (always, once the call is over).
 * However many calls share one signal (a server's shutdown signal, say), the SDK puts ONE listener on it,
 * removed once no call is left: a listener per call made Node warn past 10 (MaxListenersExceededWarning,
 * 100 concurrent calls on one signal), and a listener left behind would have kept each call's state.
 */
function onAbort(signal: AbortSignal | undefined, f: () => void): () => void {
  if (!signal) return () => {};
  let w = watchers.get(signal);
  if (!w) {
    const calls = new Set<() => void>();
    const fire = () => {
      watchers.delete(signal);
      for (const g of calls) g();
      calls.clear();
    };
    w = { calls, fire };
    watchers.set(signal, w);
    signal.addEventListener('abort', fire, { once: true });
  }
  const entry = w;
  // A function of its own per call: the same `f` given twice must be removed twice.
  const call = () => f();
  entry.calls.add(call);
  return () => {
    entry.calls.delete(call);
    if (entry.calls.size === 0 && watchers.get(signal) === entry) {
      watchers.delete(signal);
      signal.removeEventListener('abort', entry.fire);
    }
  };
}

/** CLIENT_CONFIG unless `ms` is a usable timeoutMs (ClientOptions.timeoutMs). */
function checkTimeout(ms: unknown, what: string): void {
  if (!(typeof ms === 'number' && ms > 0 && ms <= MAX_TIMEOUT_MS))
    throw new DropbearError(
      'CLIENT_CONFIG',
      `${what} must be a number of ms in (0, ${MAX_TIMEOUT_MS}], not ${String(ms)}`,
    );
}

/** ClientOptions.overloadRetry, checked (CLIENT_CONFIG) and with its defaults. */
function retryPolicy(r: OverloadRetry | false | undefined): Required<OverloadRetry> {
  if (r === false) return { ...RETRY_DEFAULTS, maxRetries: 0, random: Math.random };
  if (r !== undefined && (typeof r !== 'object' || r === null))
    throw new DropbearError('CLIENT_CONFIG', `overloadRetry is false or an object, not ${String(r)}`);
  const p = { ...RETRY_DEFAULTS, random: Math.random, ...r };
  if (!(Number.isSafeInteger(p.maxRetries) && p.maxRetries >= 0))
    throw new DropbearError(
      'CLIENT_CONFIG',
      `overloadRetry.maxRetries must be an integer ≥ 0, not ${String(p.maxRetries)}`,
    );
  for (const k of ['baseDelayMs', 'maxDelayMs'] as const)
    if (!(typeof p[k] === 'number' && p[k] >= 0 && p[k] <= MAX_TIMEOUT_MS))
      throw new DropbearError(
        'CLIENT_CONFIG',
        `overloadRetry.${k} must be a number of ms in [0, ${MAX_TIMEOUT_MS}], not ${String(p[k])}`,
      );
  if (typeof p.random !== 'function')
    throw new DropbearError('CLIENT_CONFIG', 'overloadRetry.random must be a function');
  return p;
}

/**
 * The wait before retry `k` (1, 2, …) of a request no node took: a random time in [d/2, d) with
 * d = min(maxDelayMs, baseDelayMs · 2^(k−1)) ("equal jitter": clients turned away together do not come
 * back together, and none comes back at once), and at least `retryAfterMs` (the nodes' Retry-After).
 */
function backoffMs(p: Required<OverloadRetry>, k: number, retryAfterMs: number | null): number {
  const d = Math.min(p.maxDelayMs, p.baseDelayMs * 2 ** Math.min(k - 1, 52));
  const jittered = d / 2 + Math.min(Math.max(p.random(), 0), 1) * (d / 2);
  return Math.max(jittered, retryAfterMs ?? 0);
}

/**
 * A Retry-After header in ms (delay-seconds, or an HTTP date), at most MAX_RETRY_AFTER_MS; null when
 * there is none, or it is not a time in the future.
 */
function retryAfterMsOf(header: string | null): number | null {
  if (header === null || header.trim() === '') return null;
  const secs = Number(header);
  const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(header) - Date.now();
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, MAX_RETRY_AFTER_MS) : null;
}

/** The error a call ends with when no node took its request (OverloadRetry): each node's answer, and tries. */
function overloadedError(what: string, attempts: number, errors: string[]): DropbearError {
  return new DropbearError(
    'OVERLOADED',
    `${what} (${attempts} attempt${attempts === 1 ? '' : 's'}): ${errors.join('; ')}`,
    { attempts, errors },
  );
}

/**
 * REQUEST_INPUT_MISMATCH when the input of `sr` is not the one its request names (sha256 against
 * `inputDigest`): the group would certify the named input, not the bytes sent. For requests the caller
 * made (`send`, `sendBatch`); those `infer` signs name their input by construction.
 */
function inputMismatch(sr: SignedRequest): DropbearError | null {
  const digest = sha256(sr.input);
  if (equalBytes(digest, sr.request.inputDigest)) return null;
  return new DropbearError(
    'REQUEST_INPUT_MISMATCH',
    `request ${hex(requestIdOf(sr))}: its input hashes to ${hex(digest)}, not to its inputDigest ${hex(sr.request.inputDigest)}; not sent`,
  );
}

const config = (message: string) => new DropbearError('CLIENT_CONFIG', message);
const isBytes = (x: unknown): x is Uint8Array => x instanceof Uint8Array;

/**
 * CLIENT_CONFIG unless `key` is a usable Ed25519 KeyPair (keyPairFromSeed's, readKeyFile's): its public
 * key 32 bytes, its secret 64 (seed ‖ public key) and a private KeyObject, all of one key. Until 2026-12-07
 * anything was taken: a string, or a pair whose parts disagreed, failed at the first call (an
 * AssertionError, or requests every node refused as REQUEST_BAD_SIGNATURE).
 */
function keyProblem(key: unknown): string | null {
  const k = key as Partial<KeyPair> | null;
  if (typeof k !== 'object' || k === null)
    return `a KeyPair (keyPairFromSeed, readKeyFile), not ${typeof key}`;
  if (!isBytes(k.publicKey) || k.publicKey.length !== 32) return 'its publicKey is not 32 bytes';
  if (!isBytes(k.secretKey) || k.secretKey.length !== 64) return 'its secretKey is not 64 bytes';
  if (!(k.privateKey instanceof KeyObject) || k.privateKey.asymmetricKeyType !== 'ed25519')
    return 'its privateKey is not an Ed25519 KeyObject';
  const derived = keyPairFromSeed(k.secretKey.subarray(0, 32)).publicKey;
  const fromPrivate = new Uint8Array(
    createPublicKey(k.privateKey).export({ format: 'der', type: 'spki' }),
  ).subarray(-32);
  if (
    !equalBytes(derived, k.publicKey) ||
    !equalBytes(k.secretKey.subarray(32), k.publicKey) ||
    !equalBytes(fromPrivate, k.publicKey)
  )
    return "its parts are not of one key (the public key is not the secret's)";
  return null;
}

/**
 * ClientOptions checked before anything else reads them (CLIENT_CONFIG): until 2026-12-07 a missing
 * `nodes` or `genesis` was a TypeError, and duplicate node ids, an id the genesis does not have, an `api`
 * that is not an http(s) URL, a bad key, maxFee, policy, fetch or coalesce were taken, each failing (or
 * misbehaving) only at the first call.
 */
function optionsProblem(opts: ClientOptions): string | null {
  if (typeof opts !== 'object' || opts === null) return `the options are an object, not ${String(opts)}`;
  const g = opts.genesis as Genesis | undefined;
  if (typeof g !== 'object' || g === null || !Array.isArray(g.nodes) || typeof g.params !== 'object')
    return "genesis must be a Genesis (fromJson(Genesis, …) of the group's genesis.json)";
  if (!Array.isArray(opts.nodes) || opts.nodes.length === 0)
    return 'nodes must list at least one node ({id, api})';
  const seen = new Set<number>();
  for (const n of opts.nodes as unknown[]) {
    const { id, api } = (n ?? {}) as Partial<GroupNode>;
    if (!(Number.isSafeInteger(id) && (id as number) >= 0 && (id as number) < g.nodes.length))
      return `a node's id must be the id of a genesis node (0 to ${g.nodes.length - 1}), not ${JSON.stringify(id) ?? String(id)}`;
    if (seen.has(id as number)) return `node ${id} is listed twice in nodes`;
    seen.add(id as number);
    let url: URL | null = null;
    try {
      url = typeof api === 'string' ? new URL(api) : null;
    } catch {}
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:'))
      return `node ${id}'s api must be an http(s) URL (http://host:port), not ${JSON.stringify(api) ?? String(api)}`;
  }
  const badKey = keyProblem(opts.key);
  if (badKey) return `key: ${badKey}`;
  if (opts.maxFee !== undefined && !(Number.isSafeInteger(opts.maxFee) && opts.maxFee >= 0))
    return `maxFee must be an integer ≥ 0, not ${String(opts.maxFee)}`;
  if (opts.fetch !== undefined && typeof opts.fetch !== 'function')
    return `fetch must be a function, not ${typeof opts.fetch}`;
  if (opts.coalesce !== undefined && typeof opts.coalesce !== 'boolean')
    return `coalesce must be true or false, not ${String(opts.coalesce)}`;
  return null;
}

/**
 * Why `policy` (a call's or the client's, not null) is not one the group takes: it does not encode, or its
 * minAgree is outside [f+1, n] (what every node would refuse as REQUEST_BAD_POLICY); null when it is.
 */
function policyProblem(policy: unknown, genesis: Genesis): string | null {
  if (policy === undefined || policy === null) return null;
  try {
    encode(PolicyCodec, policy as Policy);
    validatePolicy(policy as Policy, genesis.nodes.length, genesis.f);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Why `input` cannot be sent, as the error to settle its call with (null when it can): INPUT_INVALID for
 * what is not bytes or is empty, REQUEST_INPUT_TOO_LARGE over the genesis's maxInputBytes (what every
 * node refuses it with). Until 2026-12-07 a string was an AssertionError from hashing, undefined a
 * TypeError, and an empty or oversized input was sent to every node.
 */
function inputProblem(input: unknown, genesis: Genesis, what = 'input'): DropbearError | null {
  if (!isBytes(input))
    return new DropbearError(
      'INPUT_INVALID',
      `${what} must be a Uint8Array (or Buffer) of the encoded image or tensor, not ${input === null ? 'null' : Array.isArray(input) ? 'an array' : typeof input}`,
    );
  if (input.length === 0) return new DropbearError('INPUT_INVALID', `${what} is empty; not sent`);
  const max = genesis.params.maxInputBytes;
  if (input.length > max)
    return new DropbearError(
      'REQUEST_INPUT_TOO_LARGE',
      `${what} of ${input.length} bytes is over the group's limit of ${max} (genesis maxInputBytes); not sent`,
    );
  return null;
}

/**
 * A request the caller signed (`send`, `sendBatch`), checked: its encoding, to be sent as it is (encoded
 * once), or why it cannot be sent: REQUEST_MALFORMED when it is not a SignedRequest (it does not encode: a
 * TypeError until 2026-12-07), inputProblem's errors, or REQUEST_INPUT_MISMATCH (inputMismatch).
 */
function checkedRequest(sr: unknown, genesis: Genesis): Uint8Array | DropbearError {
  let bytes: Uint8Array;
  try {
    bytes = encode(SignedRequest, sr as SignedRequest);
  } catch (e) {
    return new DropbearError('REQUEST_MALFORMED', `not a SignedRequest (${(e as Error).message}); not sent`);
  }
  return inputProblem((sr as SignedRequest).input, genesis) ?? inputMismatch(sr as SignedRequest) ?? bytes;
}

export class DropbearClient {
  readonly genesis: Genesis;
  readonly groupId: Uint8Array;
  private readonly nodes: GroupNode[];
  private readonly key: KeyPair;
  private readonly opts: Required<Pick<ClientOptions, 'timeoutMs' | 'maxFee' | 'hedgeMs'>> & ClientOptions;
  /** ClientOptions.maxResponseBytes. */
  private readonly maxResponse: number;
  /** ClientOptions.overloadRetry. */
  private readonly retry: Required<OverloadRetry>;
  private readonly fetchImpl: typeof fetch;
  private nonce: number;
  private rr = 0;
  /** Round robin for the nodes that hold a POST open (ClientOptions.waitOn). */
  private rw = 0;
  /**
   * Receipt signatures this client has verified, for every call (`send`, `infer`, batches): the requests
   * of one consensus batch share a receipt and its 2f+1 signatures, so each is checked once, not once per
   * certificate. A memo of exact (receipt, node, signature) triples that verified: a certificate whose
   * signature bytes differ from the remembered ones has those signatures verified (SignatureCache,
   * certificate/index.ts).
   */
  private readonly signatures = new SignatureCache(CACHE_RECEIPTS, CACHE_TREES);

  constructor(opts: ClientOptions) {
    const bad = optionsProblem(opts);
    if (bad) throw config(bad);
    if (opts.waitOn !== undefined && !(Number.isSafeInteger(opts.waitOn) && opts.waitOn >= 1))
      throw new DropbearError('CLIENT_CONFIG', `waitOn must be an integer ≥ 1, not ${String(opts.waitOn)}`);
    if (opts.timeoutMs !== undefined) checkTimeout(opts.timeoutMs, 'timeoutMs');
    const to = opts.sendTo;
    if (Array.isArray(to)) {
      const ids = new Set(opts.nodes.map((n) => n.id));
      if (to.length === 0 || !to.every((id) => ids.has(id)))
        throw new DropbearError(
          'CLIENT_CONFIG',
          `sendTo must list ids of nodes in \`nodes\` (${[...ids].join(', ')}), not [${to.map(String).join(', ')}]`,
        );
    } else if (to !== undefined && to !== 'all' && !(Number.isSafeInteger(to) && to >= 1))
      throw new DropbearError(
        'CLIENT_CONFIG',
        `sendTo must be 'all', an integer ≥ 1 or a list of node ids, not ${String(to)}`,
      );
    // Taken as they came until 2026-12-06: a NaN hedgeMs never hedged but woke every quiet node at once, a
    // negative one hedged at once, and a NaN maxBodyBytes bounded no POST's bytes.
    if (opts.hedgeMs !== undefined && !(typeof opts.hedgeMs === 'number' && opts.hedgeMs >= 0))
      throw new DropbearError(
        'CLIENT_CONFIG',
        `hedgeMs must be a number of ms ≥ 0 (or Infinity), not ${String(opts.hedgeMs)}`,
      );
    if (
      opts.maxBodyBytes !== undefined &&
      !(Number.isSafeInteger(opts.maxBodyBytes) && opts.maxBodyBytes >= 1)
    )
      throw new DropbearError(
        'CLIENT_CONFIG',
        `maxBodyBytes must be an integer ≥ 1, not ${String(opts.maxBodyBytes)}`,
      );
    const maxResponse = opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    if (!(Number.isSafeInteger(maxResponse) && maxResponse >= 1))
      throw new DropbearError(
        'CLIENT_CONFIG',
        `maxResponseBytes must be an integer ≥ 1, not ${String(opts.maxResponseBytes)}`,
      );
    this.maxResponse = maxResponse;
    this.retry = retryPolicy(opts.overloadRetry);
    // Every certificate is checked against this genesis: one that cannot run a group (one key for two
    // nodes, say) would take certificates a single party signed.
    const badGenesis = genesisProblem(opts.genesis);
    if (badGenesis !== null)
      throw new DropbearError('CLIENT_CONFIG', `the genesis cannot run a group: ${badGenesis}`);
    this.genesis = opts.genesis;
    try {
      this.groupId = groupIdOf(opts.genesis);
    } catch (e) {
      throw config(`the genesis does not encode: ${(e as Error).message}`);
    }
    const badPolicy = policyProblem(opts.policy, opts.genesis);
    if (badPolicy) throw config(`policy: ${badPolicy}`);
    this.nodes = opts.nodes;
    this.key = opts.key;
    this.fetchImpl = opts.fetch ?? fetch;
    const fees = opts.genesis.nodes.reduce((a, n) => a + n.fee, 0);
    this.opts = { timeoutMs: 30_000, maxFee: fees, ...opts, hedgeMs: opts.hedgeMs ?? DEFAULT_HEDGE_MS };
    // Nonces only need to be unique per client key within the expiry window: time-seeded and increasing.
    this.nonce = Date.now() * 1000 + Math.floor(Math.random() * 1000);
  }

  /**
   * A call's options, checked before anything is signed or sent: CLIENT_CONFIG for options that are not an
   * object or a maxFee that is not an integer ≥ 0, REQUEST_BAD_POLICY for a policy the group refuses (it
   * does not encode, or its minAgree is outside [f+1, n]; the nodes' own code for it). Until 2026-12-07
   * null options were a TypeError and a malformed policy a CodecError (CODEC_BAD_VALUE) from signing.
   */
  private callOptions<T extends InferOptions>(opts: T | undefined): T {
    if (opts === undefined) return {} as T;
    if (typeof opts !== 'object' || opts === null)
      throw config(`a call's options are an object, not ${String(opts)}`);
    if (opts.maxFee !== undefined && !(Number.isSafeInteger(opts.maxFee) && opts.maxFee >= 0))
      throw config(`maxFee must be an integer ≥ 0, not ${String(opts.maxFee)}`);
    const bad = policyProblem(opts.policy, this.genesis);
    if (bad) throw new DropbearError('REQUEST_BAD_POLICY', `policy: ${bad}; not sent`);
    return opts;
  }

  /**
   * Builds and signs the request for `input` (no network). Throws what `infer` rejects with for the input
   * and options (inputProblem, callOptions).
   */
  sign(input: Uint8Array, options: { policy?: Policy | null; maxFee?: number } = {}): SignedRequest {
    const opts = this.callOptions(options);
    const bad = inputProblem(input, this.genesis);
    if (bad) throw bad;
    const req: Request = {
      groupId: this.groupId,
      client: this.key.publicKey,
      nonce: this.nonce++,
      timestamp: Date.now(),
      inputDigest: sha256(input),
      policy: opts.policy ?? this.opts.policy ?? null,
      maxFee: opts.maxFee ?? this.opts.maxFee,
    };
    return signRequest(req, input, this.key);
  }

  /**
   * Builds and signs requests for `inputs` with one signature per LIMITS.requestBatch (4096) inputs: each
   * comes back with its Merkle inclusion path to the signed root (no network).
   */
  signBatch(
    inputs: Uint8Array[],
    options: { policy?: Policy | null; maxFee?: number } = {},
  ): SignedRequest[] {
    const opts = this.callOptions(options);
    if (!Array.isArray(inputs))
      throw new DropbearError('INPUT_INVALID', `inputs must be an array of Uint8Array, not ${typeof inputs}`);
    for (const [i, input] of inputs.entries()) {
      const bad = inputProblem(input, this.genesis, `input ${i}`);
      if (bad) throw bad;
    }
    const timestamp = Date.now();
    const reqs = inputs.map((input) => ({
      request: {
        groupId: this.groupId,
        client: this.key.publicKey,
        nonce: this.nonce++,
        timestamp,
        inputDigest: sha256(input),
        policy: opts.policy ?? this.opts.policy ?? null,
        maxFee: opts.maxFee ?? this.opts.maxFee,
      } satisfies Request,
      input,
    }));
    const out: SignedRequest[] = [];
    for (let i = 0; i < reqs.length; i += LIMITS.requestBatch)
      out.push(...signRequestBatch(reqs.slice(i, i + LIMITS.requestBatch), this.key));
    return out;
  }

  /**
   * Whether `nodes` are every node of the group: the nodes are then told (`sentTo=all`) that they need not
   * forward the request to each other (a node the client missed fetches it once a peer votes on it;
   * docs/api.md, `sentTo=all`).
   */
  private coversGroup(nodes: GroupNode[]): boolean {
    const ids = new Set(nodes.map((n) => n.id));
    return this.genesis.nodes.every((_, id) => ids.has(id));
  }

  private targets(): GroupNode[] {
    const s = this.opts.sendTo ?? 'all';
    if (s === 'all') return this.nodes;
    if (Array.isArray(s)) return this.nodes.filter((n) => s.includes(n.id));
    const k = Math.min(Math.max(1, s), this.nodes.length);
    const start = this.rr++ % this.nodes.length;
    return Array.from({ length: k }, (_, i) => this.nodes[(start + i) % this.nodes.length]);
  }

  /** The signal of an item's own calls: aborted already when the item is settled. */
  private itemSignal(it: BatchItem): AbortSignal {
    if (!it.abort) {
      it.abort = fanOutController(this.nodes.length);
      if (it.out) it.abort.abort(DONE);
    }
    return it.abort.signal;
  }

  /** Checks a certificate against the genesis and against the request it should answer. */
  check(cert: Certificate, sr: SignedRequest, cache?: SignatureCache): Certificate {
    const v = verifyCertificate(cert, this.genesis, { cache });
    if (!v.ok) throw new DropbearError('CERTIFICATE_INVALID', `${v.reason}: ${v.message}`);
    if (!equalBytes(cert.outcome.requestId, requestIdOf(sr)))
      throw new DropbearError('CERTIFICATE_INVALID', 'the certificate is for another request');
    if (!equalBytes(cert.outcome.inputDigest, sr.request.inputDigest))
      throw new DropbearError('CERTIFICATE_INVALID', 'the certificate names another input');
    return cert;
  }

  /** POSTs one request, `bytes` its canonical bytes (encoded once by the caller, for every node). */
  private async post(
    node: GroupNode,
    bytes: Uint8Array,
    waitMs: number,
    signal: AbortSignal,
    sentToAll = false,
  ): Promise<Certificate | null> {
    const res = await this.fetchImpl(`${node.api}/v1/requests?${submitQuery(waitMs, sentToAll)}`, {
      method: 'POST',
      headers: { 'content-type': REQUEST_TYPE, accept: `${REQUEST_ANSWERS_TYPE}, application/json` },
      body: bytes as Uint8Array<ArrayBuffer>,
      redirect: 'manual',
      signal,
    });
    const answers = await answersOf(res, node, 1, this.maxResponse);
    if (answers) {
      const [a] = answers;
      if (a.kind === 'certificate') return a.certificate;
      if (a.kind === 'pending') return null;
      throw answerError(a);
    }
    const body = (await jsonOf(res, this.maxResponse)) as {
      certificate?: unknown;
      error?: { code?: unknown; message?: unknown };
    } | null;
    if (res.status === 200 && body?.certificate) return fromJson(Certificate, body.certificate);
    if (res.status === 202) return null;
    const err = jsonError(node, res, body);
    // An overloaded node's Retry-After goes with its error to sendOne (the least wait before a retry).
    const retryAfterMs = err.code === 'OVERLOADED' ? retryAfterMsOf(res.headers.get('retry-after')) : null;
    throw new DropbearError(err.code, err.message, retryAfterMs === null ? undefined : { retryAfterMs });
  }

  private async poll(
    node: GroupNode,
    id: string,
    waitMs: number,
    signal: AbortSignal,
  ): Promise<Certificate | null> {
    const res = await this.fetchImpl(
      `${node.api}/v1/certificates/${id}?wait=${Math.max(0, Math.floor(waitMs))}`,
      { redirect: 'manual', signal },
    );
    if (res.status === 404) return null;
    const body = (await jsonOf(res, this.maxResponse)) as {
      certificate?: unknown;
      error?: { code?: unknown; message?: unknown };
    } | null;
    if (res.status === 200 && body?.certificate) return fromJson(Certificate, body.certificate);
    throw jsonError(node, res, body);
  }

  /**
   * Sends one signed request and resolves with the first certificate that verifies. A node that is down,
   * answers garbage or a certificate that does not verify is skipped; if every chosen node fails, the
   * others are tried. A refusal (bad signature, expired, no funds, ...) ends the call only once f+1 nodes
   * refused with the same code, with that code; with no certificate by the deadline, or every node failed
   * or refused without f+1 agreeing, it rejects with NO_CERTIFICATE, whose message gives each node's code
   * and message (see refusalVerdict). When nodes turned it away for load and none took it, the same signed
   * request is sent again after a backoff (ClientOptions.overloadRetry) while the call has time; if that
   * still fails, OVERLOADED, with each node's last answer and the attempts (`details.attempts`).
   * A request whose input does not hash to its `inputDigest` is refused before it is sent
   * (REQUEST_INPUT_MISMATCH), and a `timeoutMs` out of range with CLIENT_CONFIG (ClientOptions.timeoutMs).
   */
  async send(sr: SignedRequest, timeoutMs = this.opts.timeoutMs, signal?: AbortSignal): Promise<InferResult> {
    checkTimeout(timeoutMs, 'timeoutMs');
    checkSignal(signal);
    const checked = checkedRequest(sr, this.genesis);
    if (checked instanceof DropbearError) throw checked;
    return this.sendOne(sr, timeoutMs, signal, checked);
  }

  /**
   * `send` for a request this client signed (`infer`): its input is the one named, no hash to check.
   * Rounds of sendRound: one that ends with no node having taken the request (OVERLOADED) is followed by
   * another, of the same signed request, after a backoff (ClientOptions.overloadRetry), while retries are
   * left and the wait leaves the call MIN_RETRY_WINDOW_MS. Resending it is safe: a node that holds it, or
   * executed it, answers with its certificate (or pending), not a second charge (api.ts, submitAll).
   */
  private async sendOne(
    sr: SignedRequest,
    timeoutMs: number,
    signal?: AbortSignal,
    encoded?: Uint8Array,
  ): Promise<InferResult> {
    const deadline = monoNow() + timeoutMs;
    // Encoded and named once for every round (an overloaded group may take several).
    const body = encoded ?? encode(SignedRequest, sr);
    const id = hex(requestIdOf(sr));
    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw abortedError(signal);
      try {
        return await this.sendRound(sr, body, id, Math.max(1, deadline - monoNow()), deadline, signal);
      } catch (e) {
        if (!(e instanceof DropbearError) || e.code === 'ABORTED') throw e;
        if (e.code !== 'OVERLOADED') {
          if (attempt === 1) throw e;
          throw new DropbearError(
            e.code,
            `${e.message} (attempt ${attempt}; every node asked turned the earlier ones away as OVERLOADED)`,
            { ...e.details, attempts: attempt },
          );
        }
        const d = e.details as { errors?: string[]; retryAfterMs: number | null; what: string } | undefined;
        if (!d?.errors) throw e;
        const wait =
          attempt > this.retry.maxRetries
            ? Number.POSITIVE_INFINITY
            : backoffMs(this.retry, attempt, d.retryAfterMs);
        if (wait + MIN_RETRY_WINDOW_MS > deadline - monoNow())
          throw overloadedError(d.what, attempt, d.errors);
        // The backoff ends early on the caller's abort (checked at the top of the loop).
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, wait);
          const unlisten = onAbort(signal, done);
          function done() {
            clearTimeout(t);
            unlisten();
            resolve();
          }
        });
      }
    }
  }

  /**
   * One round of `send`: the request to the chosen nodes, then the others (hedging), until a certificate,
   * a verdict or `deadline` (`timeoutMs` from now). OVERLOADED when no node took it (see the end), with
   * the per-node errors and the least Retry-After in its details, for sendOne to retry.
   */
  private async sendRound(
    sr: SignedRequest,
    body: Uint8Array,
    id: string,
    timeoutMs: number,
    deadline: number,
    signal?: AbortSignal,
  ): Promise<InferResult> {
    const abort = fanOutController(this.nodes.length);
    // The POSTs listen to their own signal: once the call is settled they may finish (POST_GRACE_MS), while
    // the attempts waiting on them end at once (`ended`). The caller's abort ends both at once.
    const posts = fanOutController(this.nodes.length);
    const unlisten = onAbort(signal, () => {
      abort.abort(DONE);
      posts.abort(DONE);
    });
    const ended = new Promise<never>((_, reject) =>
      abort.signal.addEventListener('abort', () => reject(abort.signal.reason), { once: true }),
    );
    ended.catch(() => {});
    const errors: string[] = [];
    // Nodes that turned the request away as OVERLOADED (and the least Retry-After they sent), and whether
    // any node took it (see the end).
    const overloadedBy = new Set<number>();
    let retryAfterMs: number | null = null;
    let taken = false;
    // POSTs started, and those that turned the request away for sure (OVERLOADED or a final refusal): a
    // POST still open at the deadline, or cut off, may have been taken (see the end).
    let asked = 0;
    const declined = new Set<number>();
    const first = this.targets();
    const rest = this.nodes.filter((n) => !first.includes(n));
    const toAll = this.coversGroup(first);
    // waitOn of the chosen nodes hold the POST open; the other chosen ones stay quiet until woken.
    const waitCount = Math.min(first.length, this.opts.waitOn ?? this.genesis.f + 1);
    const w0 = waitCount < first.length ? this.rw++ % first.length : 0;
    const waiting = new Set(Array.from({ length: waitCount }, (_, i) => first[(w0 + i) % first.length]));
    let wakeQuiet: () => void = () => {};
    const quietGate = new Promise<void>((resolve) => {
      wakeQuiet = resolve;
    });
    abort.signal.addEventListener('abort', () => wakeQuiet(), { once: true });
    const attempt = async (node: GroupNode): Promise<InferResult> => {
      const chosen = first.includes(node);
      const quiet = chosen && !waiting.has(node);
      const posted = this.post(node, body, quiet ? 0 : deadline - monoNow(), posts.signal, toAll && chosen);
      asked++;
      posted.then(
        () => {
          taken = true;
        },
        (e: unknown) => {
          if (surelyNotTaken(e)) declined.add(node.id);
        },
      );
      let cert = await Promise.race([posted, ended]);
      if (!cert && quiet) {
        await quietGate;
        if (abort.signal.aborted) throw DONE;
      }
      while (!cert && monoNow() < deadline) {
        const t0 = monoNow();
        cert = await this.poll(node, id, deadline - t0, abort.signal);
        if (!cert) await sleep(MIN_POLL_INTERVAL_MS - (monoNow() - t0), abort.signal);
      }
      if (!cert)
        throw new DropbearError(
          'TIMEOUT',
          `node ${node.id}: no certificate within ${Math.round(timeoutMs)} ms`,
        );
      return this.result(this.check(cert, sr, this.signatures), node.id);
    };
    // A refusal with a final code (bad signature, expired, …) ends the call only once f+1 distinct nodes
    // gave the same code, or every node refused (refusalVerdict): neither a single Byzantine node nor its
    // lie beside an honest node's refusal of its own can fail a request the others would certify.
    const refusals = new Map<number, DropbearError>();
    let verdict: DropbearError | null = null;
    const race = (nodes: GroupNode[]) =>
      Promise.any(
        nodes.map((n) =>
          attempt(n).catch((e: unknown) => {
            const code = failureCode(e);
            // Cut off: the call is over (quiet nodes are woken before its time is up, see quietTimer).
            if (e === DONE) throw e;
            errors.push(`node ${n.id}: ${code} ${whyFailed(e)}`);
            if (code === 'OVERLOADED') {
              overloadedBy.add(n.id);
              const ra = (e as DropbearError).details?.retryAfterMs;
              if (typeof ra === 'number') retryAfterMs = Math.min(retryAfterMs ?? ra, ra);
            }
            // A waiting node failed: the quiet ones are asked now (the other waiters may be withholding).
            if (waiting.has(n)) wakeQuiet();
            if (FINAL.has(code) && !verdict) {
              if (!refusals.has(n.id)) refusals.set(n.id, e as DropbearError);
              verdict = refusalVerdict(
                refusals,
                this.genesis.f,
                quorumOf(this.genesis),
                this.nodes.length,
                id,
              );
              if (verdict) abort.abort(DONE);
            }
            throw e;
          }),
        ),
      );
    const finalErr = () => verdict;
    // The other nodes are asked once the chosen ones failed, or hedgeMs passed without a certificate.
    let hedge: ReturnType<typeof setTimeout> | undefined;
    let restDecided = false;
    let startRest: () => void = () => {};
    let stopRest: (e: unknown) => void = () => {};
    const restRun = new Promise<InferResult>((resolve, reject) => {
      startRest = () => {
        if (restDecided) return;
        restDecided = true;
        clearTimeout(hedge);
        race(rest).then(resolve, reject);
      };
      stopRest = (e) => {
        if (restDecided) return;
        restDecided = true;
        clearTimeout(hedge);
        reject(e);
      };
    });
    restRun.catch(() => {});
    const firstRun = race(first);
    firstRun.catch((e: unknown) => {
      if (finalErr() || rest.length === 0 || monoNow() >= deadline) stopRest(finalErr() ?? e);
      else startRest();
    });
    const hedgeMs = this.opts.hedgeMs;
    if (rest.length === 0) stopRest(NO_OTHER);
    else if (hedgeMs < timeoutMs) hedge = setTimeout(startRest, Math.max(0, hedgeMs));
    // The quiet nodes are asked after hedgeMs, and in any case with half the call's time left (a delay
    // above 2^31 - 1 ms would make setTimeout fire at once).
    const quietTimer =
      waitCount < first.length
        ? setTimeout(wakeQuiet, Math.max(0, Math.min(hedgeMs, timeoutMs / 2, 2 ** 31 - 1)))
        : undefined;
    // A node that takes the request and never answers must not hold the call past its time.
    const timer = setTimeout(
      () => abort.abort(new DropbearError('TIMEOUT', `no certificate within ${Math.round(timeoutMs)} ms`)),
      timeoutMs,
    );
    try {
      return await Promise.any([firstRun, restRun]);
    } catch {
      if (signal?.aborted) throw abortedError(signal);
      if (verdict) throw verdict;
      // No f+1 agreeing refusals: a lone refusal is among the per-node errors, not the call's code.
      // Turned away for load by some node, and for sure by every node asked: sendOne backs off and sends
      // it again (or the caller, once retries are over). A POST still open at the deadline (a node that
      // holds it while the group is slow) or cut off may have been taken: then NO_CERTIFICATE, and a retry
      // must send the same signed request (send), not a new one, or the client may pay twice (from a
      // review, 2026-12-05).
      if (overloadedBy.size > 0 && !taken && declined.size >= asked)
        throw new DropbearError('OVERLOADED', `no node took ${id}: ${errors.join('; ')}`, {
          what: `no node took ${id}`,
          errors,
          retryAfterMs,
        });
      throw new DropbearError(
        'NO_CERTIFICATE',
        `no node returned a valid certificate for ${id}` +
          `${overloadedBy.size > 0 && !taken ? ' (a node may hold it: to retry, send the same signed request again)' : ''}: ` +
          errors.join('; '),
      );
    } finally {
      clearTimeout(hedge);
      clearTimeout(quietTimer);
      clearTimeout(timer);
      abort.abort(DONE);
      // POSTs still out may finish, so that their connections stay open for the next call; past the
      // grace, or the call's deadline, they are cut off. (An abort after they finished does nothing.)
      unlisten();
      const grace = Math.min(POST_GRACE_MS, deadline - monoNow());
      if (grace <= 0 || signal?.aborted) posts.abort(DONE);
      else setTimeout(() => posts.abort(DONE), grace).unref?.();
    }
  }

  /**
   * Signs `input` and sends it (`send`; coalesced with the other calls of this turn with `coalesce`).
   * Rejects, never throws: options that signing refuses, or a `timeoutMs` out of range (CLIENT_CONFIG).
   */
  async infer(input: Uint8Array, options: InferOptions = {}): Promise<InferResult> {
    const opts = this.callOptions(options);
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs;
    checkTimeout(timeoutMs, 'timeoutMs');
    const signal = checkSignal(opts.signal);
    const bad = inputProblem(input, this.genesis);
    if (bad) throw bad;
    if (signal?.aborted) throw abortedError(signal);
    // A call with its own signal goes alone: a batch has one fate for all its calls.
    if (!this.opts.coalesce || signal) return this.sendOne(this.sign(input, opts), timeoutMs, signal);
    return new Promise<InferResult>((resolve, reject) => {
      const key = coalesceKey(opts);
      let calls = this.turnCalls.get(key);
      if (!calls) {
        calls = [];
        this.turnCalls.set(key, calls);
      }
      calls.push({ input, opts, resolve, reject });
      if (!this.turnScheduled) {
        this.turnScheduled = true;
        setImmediate(this.sendTurn);
      }
    });
  }

  /** `infer` calls of this turn of the event loop, by their options (see ClientOptions.coalesce). */
  private turnCalls = new Map<string, TurnCall[]>();
  private turnScheduled = false;

  private readonly sendTurn = (): void => {
    this.turnScheduled = false;
    const groups = this.turnCalls;
    this.turnCalls = new Map();
    for (const calls of groups.values()) {
      const opts = calls[0].opts;
      try {
        if (calls.length === 1) {
          this.sendOne(this.sign(calls[0].input, opts), opts.timeoutMs ?? this.opts.timeoutMs).then(
            calls[0].resolve,
            calls[0].reject,
          );
          continue;
        }
        this.inferBatch(
          calls.map((c) => c.input),
          opts,
        ).then(
          (results) => {
            results.forEach((r, k) => {
              if (r instanceof Error) calls[k].reject(r);
              else calls[k].resolve(r);
            });
          },
          (e: unknown) => {
            for (const c of calls) c.reject(e);
          },
        );
      } catch (e) {
        // Signing refused the options (a bad policy, say): every call that shares them fails alike.
        for (const c of calls) c.reject(e);
      }
    }
  };

  /**
   * Many inputs under ONE client signature (per 4096): signs them as a batch and sends them with
   * `sendBatch`. Resolves with one InferResult (certificate verified) or Error per input, in order.
   * With `signing: 'each'`, every request gets a signature of its own (as `infer` signs it: a request that
   * stands alone, shown to a third party without its batch's Merkle path, at one signature per request for
   * the client and one check per request for every node) and they are still sent together: one POST per
   * chosen node, not one per request.
   * Rejects, never throws: options that signing refuses, or a `timeoutMs` out of range (CLIENT_CONFIG).
   */
  async inferBatch(
    inputs: Uint8Array[],
    options: InferOptions & {
      onResult?: (i: number, r: InferResult | Error) => void;
      signing?: BatchSigning;
    } = {},
  ): Promise<(InferResult | Error)[]> {
    const opts = this.callOptions(options);
    if (!Array.isArray(inputs))
      throw new DropbearError('INPUT_INVALID', `inputs must be an array of Uint8Array, not ${typeof inputs}`);
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs;
    checkTimeout(timeoutMs, 'timeoutMs');
    const signing = opts.signing ?? 'batch';
    if (signing !== 'batch' && signing !== 'each')
      throw new DropbearError('CLIENT_CONFIG', `signing is 'batch' or 'each', not ${String(signing)}`);
    const signal = checkSignal(opts.signal);
    if (inputs.length === 0) return [];
    if (signal?.aborted) throw abortedError(signal);
    // What is not bytes fails the call (a caller's bug); an empty input, or one over the genesis's
    // maxInputBytes, is that input's result, not signed nor sent (inputProblem).
    const problems = inputs.map((x, i) => inputProblem(x, this.genesis, `input ${i}`));
    const notBytes = inputs.findIndex((x) => !isBytes(x));
    if (notBytes >= 0) throw problems[notBytes];
    const good = problems.some(Boolean) ? inputs.filter((_, i) => !problems[i]) : inputs;
    const signed =
      good.length === 0
        ? []
        : signing === 'each'
          ? good.map((x) => this.sign(x, opts))
          : this.signBatch(good, opts);
    if (good === inputs) return this.sendMany(signed, timeoutMs, opts.onResult, null, signal);
    // The refused inputs have no request: sendMany settles them with their error and never reads `sr`.
    let k = 0;
    const srs = inputs.map((_, i) => (problems[i] ? (null as unknown as SignedRequest) : signed[k++]));
    return this.sendMany(srs, timeoutMs, opts.onResult, problems, signal);
  }

  /**
   * Sends signed requests as `{requests: [...]}` POSTs (at most 1024 requests and `maxBodyBytes` each) to
   * the chosen nodes, polls GET /v1/certificates/:id for those still pending, and resolves with one result
   * per request, in order: the first certificate for it that verifies against the genesis and names this
   * request and input, or an Error. Like `send`: a node that is down or answers garbage or a certificate
   * that does not verify is skipped for the requests concerned, and the requests no chosen node certified
   * go to the other nodes; a refusal settles a request once f+1 nodes (q for a code that may be a node's
   * own) refused it with the same code, or every node refused it (NO_CERTIFICATE, see refusalVerdict); an overloaded node (503) is sent the POST
   * again after a backoff (ClientOptions.overloadRetry; at least its Retry-After), up to maxRetries times
   * while the call has time, and a request no node took then ends as OVERLOADED with the attempts
   * (`details.attempts`: the most times one node was sent it). Each POST asks the node to hold it at most BATCH_WAIT_MS (5 s), leaving a quarter of
   * the time left (at most 1 s), and the requests still pending then are polled: one request that never certifies does not hold
   * up the others. A request whose input does not hash to its `inputDigest` is not sent: its result is a
   * REQUEST_INPUT_MISMATCH error. A `timeoutMs` out of range rejects with CLIENT_CONFIG.
   */
  async sendBatch(
    srs: SignedRequest[],
    opts: {
      timeoutMs?: number;
      onResult?: (i: number, r: InferResult | Error) => void;
      /** As InferOptions.signal. */
      signal?: AbortSignal;
    } = {},
  ): Promise<(InferResult | Error)[]> {
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs;
    checkTimeout(timeoutMs, 'timeoutMs');
    const signal = checkSignal(opts.signal);
    if (!Array.isArray(srs))
      throw new DropbearError(
        'REQUEST_MALFORMED',
        `srs must be an array of SignedRequest, not ${typeof srs}`,
      );
    if (srs.length === 0) return [];
    if (signal?.aborted) throw abortedError(signal);
    return this.sendMany(
      srs,
      timeoutMs,
      opts.onResult,
      srs.map((sr) => checkedRequest(sr, this.genesis)),
      signal,
    );
  }

  /**
   * `sendBatch`, `checked` each request's check before sending: an error (the request is not sent, that
   * is its result), its encoding (checkedRequest, `sendBatch`), or null for a request this client signed in
   * `inferBatch` (its input is the one named, and hashing it again would cost a SHA-256): encoded here.
   */
  private async sendMany(
    srs: SignedRequest[],
    timeoutMs: number,
    onResult: ((i: number, r: InferResult | Error) => void) | undefined,
    checked: (Uint8Array | DropbearError | null)[] | null,
    signal?: AbortSignal,
  ): Promise<(InferResult | Error)[]> {
    const deadline = monoNow() + timeoutMs;
    const abort = fanOutController(this.nodes.length);
    // A request refused before sending is neither encoded nor named (it may not be a SignedRequest).
    const items: BatchItem[] = srs.map((sr, index) => {
      const c = checked?.[index] ?? null;
      const refused = c instanceof DropbearError;
      return {
        index,
        sr,
        id: refused ? '' : hex(requestIdOf(sr)),
        bytes: refused ? new Uint8Array(0) : (c ?? encode(SignedRequest, sr)),
        errors: [],
        refusals: new Map(),
      };
    });
    let left = items.length;
    // The first error the caller's onResult threw: it must not become an item's (or a node's) failure, nor
    // stop the SDK's work half-way; the call rejects with it once every item has settled.
    const thrown: unknown[] = [];
    let wake: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      wake = resolve;
    });
    const ctx: BatchContext = {
      deadline,
      sentToAll: false,
      signal: abort.signal,
      cache: this.signatures,
      settle: (it, r) => {
        if (it.out) return;
        it.out = r;
        it.abort?.abort(DONE);
        if (--left === 0) wake();
        if (onResult)
          try {
            onResult(it.index, r);
          } catch (e) {
            thrown.push(e);
          }
      },
    };
    if (checked)
      checked.forEach((c, i) => {
        if (c instanceof DropbearError) ctx.settle(items[i], c);
      });
    const timer = setTimeout(wake, timeoutMs);
    // The caller's abort ends every POST and poll at once; what is unsettled then is ABORTED (below).
    const unlisten = onAbort(signal, () => {
      abort.abort(DONE);
      wake();
    });
    let hedge: ReturnType<typeof setTimeout> | undefined;
    try {
      const first = this.targets();
      const rest = this.nodes.filter((n) => !first.includes(n));
      const round = (nodes: GroupNode[], sentToAll: boolean) => {
        const todo = items.filter((it) => !it.out);
        const c = { ...ctx, sentToAll };
        return Promise.allSettled(nodes.map((n) => this.batchAt(n, todo, c)));
      };
      // The others get what is still unsettled once the chosen nodes are done, or hedgeMs passed.
      let restRound: Promise<unknown> | null = null;
      const startRest = () => {
        clearTimeout(hedge);
        if (!restRound && left > 0 && rest.length > 0 && monoNow() < deadline) restRound = round(rest, false);
        return restRound;
      };
      const hedgeMs = this.opts.hedgeMs;
      if (rest.length > 0 && hedgeMs < timeoutMs) hedge = setTimeout(startRest, Math.max(0, hedgeMs));
      await Promise.race([finished, round(first, this.coversGroup(first))]);
      const restRun = startRest();
      if (restRun) await Promise.race([finished, restRun]);
    } finally {
      clearTimeout(timer);
      clearTimeout(hedge);
      abort.abort(DONE);
      for (const it of items) it.abort?.abort(DONE);
      unlisten();
    }
    if (signal?.aborted) for (const it of items) if (!it.out) ctx.settle(it, abortedError(signal));
    for (const it of items)
      if (!it.out) {
        const why = it.errors.length > 0 ? it.errors.join('; ') : `no answer within ${timeoutMs} ms`;
        // Turned away for load and taken by no node, retries over: the group never saw it, and the caller
        // may back off and send it again, which OVERLOADED says (NO_CERTIFICATE would hide it).
        const allDeclined = [...(it.asked?.keys() ?? [])].every((n) => it.declined?.has(n));
        if (it.overloadedBy && !it.taken && allDeclined) {
          const attempts = Math.max(1, ...(it.asked?.values() ?? []));
          ctx.settle(
            it,
            overloadedError(`no node took ${it.id} within ${timeoutMs} ms`, attempts, it.errors),
          );
        } else
          ctx.settle(
            it,
            new DropbearError(
              'NO_CERTIFICATE',
              `no node returned a valid certificate for ${it.id} within ${timeoutMs} ms: ${why}`,
            ),
          );
      }
    if (thrown.length > 0) throw thrown[0];
    return items.map((it) => it.out as InferResult | Error);
  }

  /** One node's part of a `sendBatch`: POSTs the unsettled items of `todo` in chunks, then polls. */
  private async batchAt(node: GroupNode, todo: BatchItem[], ctx: BatchContext): Promise<void> {
    const polls: Promise<void>[] = [];
    const slots = semaphore(POLLS_PER_NODE);
    const pollLater = (it: BatchItem) => polls.push(slots(() => this.pollItem(node, it, ctx)));
    let maxBytes = this.opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    // POSTs this node turned away as OVERLOADED in this call: its retries (ClientOptions.overloadRetry).
    let overloads = 0;
    let pos = 0;
    while (monoNow() < ctx.deadline && !ctx.signal.aborted) {
      while (pos < todo.length && todo[pos].out) pos++;
      if (pos >= todo.length) break;
      const chunk: BatchItem[] = [];
      let bytes = BATCH_BODY_OVERHEAD;
      let end = pos;
      for (; end < todo.length && chunk.length < MAX_REQUESTS_PER_CALL; end++) {
        const it = todo[end];
        if (it.out) continue;
        const add = it.bytes.length;
        if (chunk.length > 0 && bytes + add > maxBytes) break;
        chunk.push(it);
        bytes += add;
      }
      if (chunk.length === 1 && bytes > maxBytes) {
        // Too large even alone: sent on its own, so that the node's answer (413) settles it for this node.
        await this.singleAt(node, chunk[0], ctx, pollLater);
        pos = end;
        continue;
      }
      let answer: BatchPost;
      try {
        // A bounded wait (BATCH_WAIT_MS): what is not certified by then comes back pending and is polled.
        // It leaves a quarter of the time left (at most 1 s) for the answer and those polls: with half of it,
        // a saturated group's slower batches came back pending and were polled one request at a time
        // (a long poll each), which cost the protocol bench's open-loop peak ~15 %.
        const left = ctx.deadline - monoNow();
        const waitMs = Math.min(left - Math.min(1000, left / 4), BATCH_WAIT_MS);
        for (const it of chunk) (it.asked ??= new Map()).set(node.id, (it.asked.get(node.id) ?? 0) + 1);
        answer = await this.postBatch(node, chunk, waitMs, ctx.signal, ctx.sentToAll);
      } catch (e) {
        // Down, reset, aborted: this node is out for everything it has not answered yet.
        if (!ctx.signal.aborted) failAll(todo.slice(pos), node, e);
        break;
      }
      if ('error' in answer) {
        const code = answer.error.code;
        if (code === 'OVERLOADED') {
          // Noted once per node and item; sent again after a backoff while retries and time are left.
          overloads++;
          for (const it of chunk) {
            it.overloadedBy ??= new Set();
            (it.declined ??= new Set()).add(node.id);
            if (it.overloadedBy.has(node.id)) continue;
            it.overloadedBy.add(node.id);
            it.errors.push(`node ${node.id}: OVERLOADED ${answer.error.message}`);
          }
          // Asked again only if, after the wait, the call has time left for the node to take them: a POST
          // sent right at the deadline (a sleep cut short by it) cannot come back with a certificate.
          // The items this node was not yet sent are turned away with them: the node said it is overloaded.
          const wait =
            overloads > this.retry.maxRetries
              ? Number.POSITIVE_INFINITY
              : backoffMs(this.retry, overloads, answer.retryAfterMs);
          if (wait + MIN_RETRY_WINDOW_MS > ctx.deadline - monoNow()) {
            failAll(todo.slice(end), node, answer.error);
            break;
          }
          await sleep(wait, ctx.signal);
          continue;
        }
        if (code === 'BODY_TOO_LARGE') {
          if (chunk.length > 1) maxBytes = Math.max(1, Math.floor(bytes / 2));
          else {
            await this.singleAt(node, chunk[0], ctx, pollLater);
            pos = end;
          }
          continue;
        }
        failAll(todo.slice(pos), node, answer.error);
        // A final code for the whole POST is this node's refusal of each request in it (not of the ones
        // it was not sent): like a refusal per item, it settles one once f+1 nodes agree (refused).
        if (FINAL.has(code)) for (const it of chunk) this.refused(node, it, answer.error, ctx);
        break;
      }
      pos = end;
      chunk.forEach((it, k) => {
        this.takeItem(node, it, answer.results[k], ctx, pollLater);
      });
    }
    await Promise.all(polls);
  }

  /** One item's answer in a batch POST's answers. */
  private takeItem(
    node: GroupNode,
    it: BatchItem,
    answer: RequestAnswer,
    ctx: BatchContext,
    pollLater: (it: BatchItem) => void,
  ): void {
    if (it.out) return;
    const why = (m: string) => it.errors.push(`node ${node.id}: ${m}`);
    if (answer.kind === 'certificate') {
      it.taken = true;
      return this.takeCertificate(node, it, answer.certificate, ctx);
    }
    if (answer.requestId && hex(answer.requestId) !== it.id) return void why('answered for another request');
    if (answer.kind === 'pending') {
      it.taken = true;
      return pollLater(it);
    }
    const err = answerError(answer);
    if (err.code === 'OVERLOADED') (it.overloadedBy ??= new Set()).add(node.id);
    if (err.code === 'OVERLOADED' || FINAL.has(err.code)) (it.declined ??= new Set()).add(node.id);
    why(`${err.code} ${err.message}`);
    if (FINAL.has(err.code)) this.refused(node, it, err, ctx);
  }

  /**
   * A node refused an item with a final code. One node's word is not enough (it may be the Byzantine one,
   * or an honest node refusing for a reason of its own): the item settles once f+1 distinct nodes gave the
   * same code, or every node refused it (refusalVerdict); until then the other nodes are asked as for any
   * failure.
   */
  private refused(node: GroupNode, it: BatchItem, err: DropbearError, ctx: BatchContext): void {
    (it.declined ??= new Set()).add(node.id);
    if (it.out) return;
    if (!it.refusals.has(node.id)) it.refusals.set(node.id, err);
    const verdict = refusalVerdict(
      it.refusals,
      this.genesis.f,
      quorumOf(this.genesis),
      this.nodes.length,
      it.id,
    );
    if (verdict) ctx.settle(it, verdict);
  }

  /** Settles `it` with `cert` if it verifies and answers this request; else notes why `node` failed it. */
  private takeCertificate(node: GroupNode, it: BatchItem, cert: Certificate, ctx: BatchContext): void {
    try {
      ctx.settle(it, this.result(this.check(cert, it.sr, ctx.cache), node.id));
    } catch (e) {
      it.errors.push(
        `node ${node.id}: ${(e as DropbearError).code ?? 'CERTIFICATE_INVALID'} ${whyFailed(e)}`,
      );
    }
  }

  /** One request on its own, as canonical bytes (`post`): for one too large for a JSON body. */
  private async singleAt(
    node: GroupNode,
    it: BatchItem,
    ctx: BatchContext,
    pollLater: (it: BatchItem) => void,
  ): Promise<void> {
    (it.asked ??= new Map()).set(node.id, (it.asked.get(node.id) ?? 0) + 1);
    try {
      const cert = await this.post(
        node,
        it.bytes,
        ctx.deadline - monoNow(),
        this.itemSignal(it),
        ctx.sentToAll,
      );
      it.taken = true;
      if (cert) this.takeCertificate(node, it, cert, ctx);
      else pollLater(it);
    } catch (e) {
      if (e instanceof DropbearError && FINAL.has(e.code)) {
        it.errors.push(`node ${node.id}: ${e.code} ${e.message}`);
        this.refused(node, it, e, ctx);
      } else if (!this.itemSignal(it).aborted) failAll([it], node, e);
    }
  }

  /** Polls one node for one item's certificate until it has one that verifies, the item settles or time is up. */
  private async pollItem(node: GroupNode, it: BatchItem, ctx: BatchContext): Promise<void> {
    while (!it.out && monoNow() < ctx.deadline) {
      const t0 = monoNow();
      let cert: Certificate | null;
      try {
        cert = await this.poll(node, it.id, ctx.deadline - t0, this.itemSignal(it));
      } catch (e) {
        if (!this.itemSignal(it).aborted) failAll([it], node, e);
        return;
      }
      if (cert) return this.takeCertificate(node, it, cert, ctx);
      await sleep(MIN_POLL_INTERVAL_MS - (monoNow() - t0), this.itemSignal(it));
    }
  }

  /** POST a chunk as a RequestList: the per-item answers, or the error that answered the whole POST. */
  private async postBatch(
    node: GroupNode,
    chunk: BatchItem[],
    waitMs: number,
    signal: AbortSignal,
    sentToAll: boolean,
  ): Promise<BatchPost> {
    const res = await this.fetchImpl(`${node.api}/v1/requests?${submitQuery(waitMs, sentToAll)}`, {
      method: 'POST',
      headers: { 'content-type': REQUEST_LIST_TYPE, accept: REQUEST_ANSWERS_TYPE },
      body: Buffer.concat([encode(uint, chunk.length), ...chunk.map((it) => it.bytes)]),
      redirect: 'manual',
      signal,
    });
    try {
      const results = await answersOf(res, node, chunk.length, this.maxResponse);
      if (results) return { results };
    } catch (e) {
      return { error: e as DropbearError, retryAfterMs: null };
    }
    const body = (await jsonOf(res, this.maxResponse)) as {
      error?: { code?: unknown; message?: unknown };
    } | null;
    const code = errorCodeOf(res, body);
    const said = body?.error?.message;
    const message =
      typeof said === 'string'
        ? nodeText(said)
        : `node ${node.id} answered ${res.status}${redirectNote(res) || ` without ${chunk.length} results`}`;
    return {
      error: new DropbearError(code, message),
      retryAfterMs: retryAfterMsOf(res.headers.get('retry-after')),
    };
  }

  /**
   * Several inputs at once (each signed on its own; `concurrency` in flight, default 16: an integer ≥ 1 or
   * Infinity, else CLIENT_CONFIG: until 2026-12-06, 0 or NaN resolved at once, nothing sent and every
   * result undefined).
   */
  async inferMany(
    inputs: Uint8Array[],
    opts: {
      concurrency?: number;
      onResult?: (i: number, r: InferResult | Error) => void;
      /** Ends the calls in flight with ABORTED and sends none of the rest (InferOptions.signal). */
      signal?: AbortSignal;
    } = {},
  ): Promise<(InferResult | Error)[]> {
    if (!Array.isArray(inputs))
      throw new DropbearError('INPUT_INVALID', `inputs must be an array of Uint8Array, not ${typeof inputs}`);
    const c = opts.concurrency;
    if (c !== undefined && !((Number.isSafeInteger(c) && c >= 1) || c === Number.POSITIVE_INFINITY))
      throw new DropbearError(
        'CLIENT_CONFIG',
        `concurrency must be an integer ≥ 1 (or Infinity), not ${String(c)}`,
      );
    const signal = checkSignal(opts.signal);
    const each = signal ? { signal } : undefined;
    const out: (InferResult | Error)[] = new Array(inputs.length);
    let next = 0;
    const worker = async () => {
      while (next < inputs.length) {
        const i = next++;
        try {
          out[i] = await this.infer(inputs[i], each);
        } catch (e) {
          out[i] = e as Error;
        }
        try {
          opts.onResult?.(i, out[i]);
        } catch (e) {
          thrown.push(e);
        }
      }
    };
    // As in sendMany: a throwing onResult stops nothing; the call rejects with its first error at the end.
    const thrown: unknown[] = [];
    await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 16, inputs.length) }, worker));
    if (thrown.length > 0) throw thrown[0];
    return out;
  }

  /**
   * A certificate by request id (64 hex digits, either case) from any node, verified, or null when no node
   * answers with one within timeoutMs. All nodes are asked at once: one that hangs does not hold the answer
   * up (they were asked one after another, each with the whole timeout). `signal` (InferOptions.signal)
   * ends it with ABORTED.
   */
  async certificate(requestId: string, opts: { signal?: AbortSignal } = {}): Promise<Certificate | null> {
    if (typeof requestId !== 'string' || !/^[0-9a-fA-F]{64}$/.test(requestId))
      throw new DropbearError(
        'REQUEST_ID_INVALID',
        `a request id is 64 hex digits, not ${JSON.stringify(requestId)}`,
      );
    const caller = checkSignal(opts?.signal);
    if (caller?.aborted) throw abortedError(caller);
    const id = requestId.toLowerCase();
    const stop = new AbortController();
    const signal = AbortSignal.any([
      stop.signal,
      AbortSignal.timeout(this.opts.timeoutMs),
      ...(caller ? [caller] : []),
    ]);
    try {
      return await Promise.any(
        this.nodes.map(async (n) => {
          const c = await this.poll(n, id, 0, signal);
          if (!c || hex(c.outcome.requestId) !== id) throw new Error('none');
          if (!verifyCertificate(c, this.genesis, { cache: this.signatures }).ok) throw new Error('invalid');
          return c;
        }),
      );
    } catch {
      if (caller?.aborted) throw abortedError(caller);
      return null;
    } finally {
      stop.abort();
    }
  }

  private result(cert: Certificate, servedBy: number): InferResult {
    return {
      requestId: hex(cert.outcome.requestId),
      certificate: cert,
      decision: cert.outcome.decision,
      votes: cert.outcome.votes.map((v) => ({
        node: v.node,
        label: v.result.kind === 'class' ? (v.result.top[0]?.label ?? null) : null,
        modelDigest: hex(v.modelDigest),
      })),
      servedBy,
    };
  }
}

/**
 * Refusals that may be the group's word on a request (an honest node refusing it says so for a reason in
 * the request: bad signature, expired, no funds, an input it cannot take): f+1 nodes agreeing on one of
 * these codes end a call (refusalVerdict). Some are a node's own as well (its body limit, its model, its
 * ledger or clock), and any node may lie: one such refusal alone only takes that node out of the call.
 */
const FINAL = new Set([
  'REQUEST_BAD_SIGNATURE',
  'REQUEST_WRONG_GROUP',
  'REQUEST_EXPIRED',
  'REQUEST_FROM_FUTURE',
  'REQUEST_BAD_POLICY',
  'REQUEST_INPUT_TOO_LARGE',
  'INSUFFICIENT_FUNDS',
  'INPUT_UNSUPPORTED',
  'INPUT_UNDECODABLE',
  // Until 2026-12-06 these four, which a node also answers before taking a request, were not here: every
  // node refusing an image over the input bounds (or a maxFee below the cheapest certificate) failed the
  // call with NO_CERTIFICATE, its code only in the message.
  'INPUT_TOO_LARGE',
  'INPUT_SHAPE',
  'INPUT_TENSOR_MALFORMED',
  'MAX_FEE_TOO_LOW',
  'BODY_TOO_LARGE',
]);

/**
 * The final codes every honest node gives alike, from the request alone (its signature, group, policy and
 * input size against the genesis): f + 1 agreeing end a call. The other final codes may come from a node's
 * own state (its clock, ledger, body limit or model's input check): q must agree (refusalVerdict).
 */
const REQUEST_INTRINSIC = new Set([
  'REQUEST_BAD_SIGNATURE',
  'REQUEST_WRONG_GROUP',
  'REQUEST_BAD_POLICY',
  'REQUEST_INPUT_TOO_LARGE',
]);

/**
 * Whether a POST that failed with `e` surely left its requests untaken by that node: it turned them away
 * (OVERLOADED, a final refusal), or the connection was never made. A reset, a timeout or an abort may come
 * after the node took them.
 */
function surelyNotTaken(e: unknown): boolean {
  if (e instanceof DropbearError) return e.code === 'OVERLOADED' || FINAL.has(e.code);
  // A certificate this process does not trust ends the handshake before the request is sent.
  if (untrustedCertificateCause(e) !== null) return true;
  const cause = (e as { cause?: { code?: unknown } } | null)?.cause?.code;
  return typeof cause === 'string' && NEVER_CONNECTED.has(cause);
}
const NEVER_CONNECTED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/**
 * An error's message for the per-node list, with the network cause when there is one: fetch says only
 * "fetch failed" and keeps the reason (ECONNREFUSED, ENOTFOUND, …) in `cause`, so a group that was not
 * running read "node 0: NETWORK fetch failed" (2026-12-06).
 */
function whyFailed(e: unknown): string {
  const untrusted = untrustedCertificateCause(e);
  if (untrusted !== null) return `its TLS certificate is not trusted (${untrusted})`;
  const message = e instanceof Error ? e.message : String(e);
  const cause = (e as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  const detail =
    typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : '';
  return nodeText(detail && !message.includes(detail) ? `${message} (${detail})` : message);
}

/**
 * The code of a node's failure for the per-node list: a DropbearError's own; NODE_UNTRUSTED for an https
 * node whose TLS certificate this process does not trust (the CLI's code for it; the request never reached
 * the node); else NETWORK. An untrusted certificate read "NETWORK fetch failed (…)", and counted as a node
 * that may have taken the request: a round the other nodes turned away as OVERLOADED ended NO_CERTIFICATE
 * ("a node may hold it") instead of being sent again.
 */
function failureCode(e: unknown): string {
  if (e instanceof DropbearError) return e.code;
  return untrustedCertificateCause(e) !== null ? 'NODE_UNTRUSTED' : 'NETWORK';
}

/** A per-request error in a node's binary answer, its code and message checked (codeOr, nodeText). */
function answerError(a: { code: string; message: string }): DropbearError {
  const code = codeOr(a.code, 'BAD_ANSWER');
  return new DropbearError(code, nodeText(a.message || a.code));
}

/** Records on each unsettled item why `node` could not serve it (and whether it surely did not take it). */
function failAll(items: BatchItem[], node: GroupNode, e: unknown): void {
  const code = failureCode(e);
  const declined = surelyNotTaken(e);
  for (const it of items)
    if (!it.out) {
      if (declined) (it.declined ??= new Set()).add(node.id);
      if (code === 'OVERLOADED') (it.overloadedBy ??= new Set()).add(node.id);
      it.errors.push(`node ${node.id}: ${code} ${whyFailed(e)}`);
    }
}

/** Resolves after `ms` (at once when ms ≤ 0), or as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

/** Runs at most `n` of the functions given to it at once. */
function semaphore(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  return async (fn) => {
    // A finishing call hands its slot straight to the next in the queue.
    if (active >= n) await new Promise<void>((r) => queue.push(r));
    else active++;
    try {
      return await fn();
    } finally {
      const next = queue.shift();
      if (next) next();
      else active--;
    }
  };
}
