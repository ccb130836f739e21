/**
 * The client SDK: sign requests, send them to some or all nodes of a group, and return the first
 * certificate that verifies offline against the group's genesis. `inferBatch` signs many inputs with one
 * signature (a Merkle root over the requests) and sends them in few POSTs. Light by design: protocol and
 * certificate only (no model runtime, no SQLite, no server); HTTP through the platform's `fetch`.
 */
import { setMaxListeners } from 'node:events';
import { SignatureCache, verifyCertificate } from '../certificate/index.ts';
import {
  Certificate,
  type Decision,
  DropbearError,
  decode,
  encode,
  equalBytes,
  fromJson,
  type Genesis,
  groupIdOf,
  hex,
  type KeyPair,
  LIMITS,
  MAX_REQUESTS_PER_CALL,
  type Policy,
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
  /** Which nodes get each request: 'all' (default), a count (f+1 is enough for liveness), or node ids. */
  sendTo?: 'all' | number | number[];
  /** How long to wait for a certificate, in ms (default 30 s). */
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
   * Coalescing (off by default): `infer` calls made in the same turn of the event loop with the same
   * options (a server answering concurrent users, a loop whose answers arrive together) are signed
   * together and sent as one batch, as `inferBatch` sends: one client signature, and one POST per node,
   * for all of them instead of one of each per call. Each call still settles with its own result. A call
   * alone in its turn goes as without it (one signature, `waitOn`). Nothing waits for more calls: the cost
   * is the batch's behaviour (every chosen node holds its POST open; the batch shares one deadline).
   */
  coalesce?: boolean;
}

export interface InferOptions {
  policy?: Policy | null;
  maxFee?: number;
  timeoutMs?: number;
}

export interface InferResult {
  requestId: string;
  certificate: Certificate;
  decision: Decision;
  /** Each node's top-1 (or null) as counted in the certificate. */
  votes: { node: number; label: number | null; modelDigest: string }[];
  /** The node whose answer arrived first. */
  servedBy: number;
}

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
/** The node's default body limit (API_DEFAULTS.bodyLimitBytes in src/node/api.ts). */
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
/**
 * How long `send` lets its other POSTs finish once it has its answer (at most until its deadline). Aborting
 * an HTTP call closes its connection: the other node holding the POST open usually certifies within
 * milliseconds of the first, and cutting it off made the next call to that node open a new connection
 * (0.22–0.27 new connections per image per node in the e2e bench; over TLS, a handshake each).
 */
const POST_GRACE_MS = 1000;

/** One request of a `sendBatch` call: its result once known, and why nodes failed it so far. */
interface BatchItem {
  index: number;
  sr: SignedRequest;
  id: string;
  /** The SignedRequest's canonical bytes (a RequestList is their count and their concatenation). */
  bytes: Uint8Array;
  out?: InferResult | Error;
  errors: string[];
  /** Nodes that refused it with a final code: f+1 of them (one honest at least) settle it. */
  refusedBy: Set<number>;
  /** Nodes that turned it away as OVERLOADED (503), each noted once in `errors`. */
  overloadedBy?: Set<number>;
  /** A node took it: it answered pending or with a certificate (valid or not). */
  taken?: boolean;
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

type BatchPost = { results: RequestAnswer[] } | { error: DropbearError; retryAfterMs: number };

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

/**
 * A node's binary answer (RequestAnswers, status 200 or 202) to a POST of `n` requests; null when it
 * answered otherwise (JSON: an error for the whole POST). BAD_ANSWER when it does not decode to n answers.
 */
async function answersOf(res: Response, node: GroupNode, n: number): Promise<RequestAnswer[] | null> {
  if (
    (res.status !== 200 && res.status !== 202) ||
    !res.headers.get('content-type')?.startsWith(REQUEST_ANSWERS_TYPE)
  )
    return null;
  let answers: RequestAnswer[];
  try {
    answers = decode(RequestAnswers, new Uint8Array(await res.arrayBuffer()));
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

export class DropbearClient {
  readonly genesis: Genesis;
  readonly groupId: Uint8Array;
  private readonly nodes: GroupNode[];
  private readonly key: KeyPair;
  private readonly opts: Required<Pick<ClientOptions, 'timeoutMs' | 'maxFee' | 'hedgeMs'>> & ClientOptions;
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
    if (opts.nodes.length === 0)
      throw new DropbearError('CLIENT_CONFIG', 'a client needs at least one node URL');
    if (opts.waitOn !== undefined && !(Number.isSafeInteger(opts.waitOn) && opts.waitOn >= 1))
      throw new DropbearError('CLIENT_CONFIG', `waitOn must be an integer ≥ 1, not ${String(opts.waitOn)}`);
    this.genesis = opts.genesis;
    this.groupId = groupIdOf(opts.genesis);
    this.nodes = opts.nodes;
    this.key = opts.key;
    this.fetchImpl = opts.fetch ?? fetch;
    const fees = opts.genesis.nodes.reduce((a, n) => a + n.fee, 0);
    this.opts = { timeoutMs: 30_000, maxFee: fees, ...opts, hedgeMs: opts.hedgeMs ?? DEFAULT_HEDGE_MS };
    // Nonces only need to be unique per client key within the expiry window: time-seeded and increasing.
    this.nonce = Date.now() * 1000 + Math.floor(Math.random() * 1000);
  }

  /** Builds and signs the request for `input` (no network). */
  sign(input: Uint8Array, opts: { policy?: Policy | null; maxFee?: number } = {}): SignedRequest {
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
  signBatch(inputs: Uint8Array[], opts: { policy?: Policy | null; maxFee?: number } = {}): SignedRequest[] {
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
      signal,
    });
    const answers = await answersOf(res, node, 1);
    if (answers) {
      const [a] = answers;
      if (a.kind === 'certificate') return a.certificate;
      if (a.kind === 'pending') return null;
      throw new DropbearError(a.code, a.message || a.code);
    }
    const body = (await res.json().catch(() => null)) as {
      certificate?: unknown;
      error?: { code: string; message: string };
    } | null;
    if (res.status === 200 && body?.certificate) return fromJson(Certificate, body.certificate);
    if (res.status === 202) return null;
    throw new DropbearError(
      body?.error?.code ?? `HTTP_${res.status}`,
      body?.error?.message ?? `node ${node.id} answered ${res.status}`,
    );
  }

  private async poll(
    node: GroupNode,
    id: string,
    waitMs: number,
    signal: AbortSignal,
  ): Promise<Certificate | null> {
    const res = await this.fetchImpl(
      `${node.api}/v1/certificates/${id}?wait=${Math.max(0, Math.floor(waitMs))}`,
      { signal },
    );
    if (res.status === 404) return null;
    const body = (await res.json().catch(() => null)) as {
      certificate?: unknown;
      error?: { code: string; message: string };
    } | null;
    if (res.status === 200 && body?.certificate) return fromJson(Certificate, body.certificate);
    throw new DropbearError(
      body?.error?.code ?? `HTTP_${res.status}`,
      body?.error?.message ?? `node ${node.id} answered ${res.status}`,
    );
  }

  /**
   * Sends one signed request and resolves with the first certificate that verifies. A node that is down,
   * answers garbage or a certificate that does not verify is skipped; if every chosen node fails, the
   * others are tried. Rejections the group would repeat (bad signature, expired, no funds) end the call.
   */
  async send(sr: SignedRequest, timeoutMs = this.opts.timeoutMs): Promise<InferResult> {
    const id = hex(requestIdOf(sr));
    const deadline = Date.now() + timeoutMs;
    const abort = fanOutController(this.nodes.length);
    // The POSTs listen to their own signal: once the call is settled they may finish (POST_GRACE_MS), while
    // the attempts waiting on them end at once (`ended`).
    const posts = fanOutController(this.nodes.length);
    const ended = new Promise<never>((_, reject) =>
      abort.signal.addEventListener('abort', () => reject(abort.signal.reason), { once: true }),
    );
    ended.catch(() => {});
    const errors: string[] = [];
    // Nodes that turned the request away as OVERLOADED, and whether any node took it (see the end).
    const overloadedBy = new Set<number>();
    let taken = false;
    const first = this.targets();
    const rest = this.nodes.filter((n) => !first.includes(n));
    const toAll = this.coversGroup(first);
    const body = encode(SignedRequest, sr);
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
      const posted = this.post(node, body, quiet ? 0 : deadline - Date.now(), posts.signal, toAll && chosen);
      posted.then(
        () => {
          taken = true;
        },
        () => {},
      );
      let cert = await Promise.race([posted, ended]);
      if (!cert && quiet) {
        await quietGate;
        if (abort.signal.aborted) throw DONE;
      }
      while (!cert && Date.now() < deadline) {
        const t0 = Date.now();
        cert = await this.poll(node, id, deadline - t0, abort.signal);
        if (!cert) await sleep(MIN_POLL_INTERVAL_MS - (Date.now() - t0), abort.signal);
      }
      if (!cert) throw new DropbearError('TIMEOUT', `node ${node.id}: no certificate within ${timeoutMs} ms`);
      return this.result(this.check(cert, sr, this.signatures), node.id);
    };
    // A refusal every honest node would repeat (bad signature, expired, …) ends the call only once f+1
    // distinct nodes gave one: a single Byzantine node must not be able to fail a good request.
    const refusedBy = new Map<number, DropbearError>();
    const enough = () => refusedBy.size > this.genesis.f || refusedBy.size >= this.nodes.length;
    const race = (nodes: GroupNode[]) =>
      Promise.any(
        nodes.map((n) =>
          attempt(n).catch((e: unknown) => {
            const code = e instanceof DropbearError ? e.code : 'NETWORK';
            // Cut off: the call is over (quiet nodes are woken before its time is up, see quietTimer).
            if (e === DONE) throw e;
            errors.push(`node ${n.id}: ${code} ${(e as Error).message}`);
            if (code === 'OVERLOADED') overloadedBy.add(n.id);
            // A waiting node failed: the quiet ones are asked now (the other waiters may be withholding).
            if (waiting.has(n)) wakeQuiet();
            if (FINAL.has(code)) {
              refusedBy.set(n.id, e as DropbearError);
              if (enough()) abort.abort(DONE);
            }
            throw e;
          }),
        ),
      );
    const finalErr = () => (enough() ? [...refusedBy.values()][0] : null);
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
      if (finalErr() || rest.length === 0 || Date.now() >= deadline) stopRest(finalErr() ?? e);
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
      () => abort.abort(new DropbearError('TIMEOUT', `no certificate within ${timeoutMs} ms`)),
      timeoutMs,
    );
    try {
      return await Promise.any([firstRun, restRun]);
    } catch {
      if (finalErr()) throw finalErr();
      if (refusedBy.size > 0) throw [...refusedBy.values()][0];
      // Turned away for load by some node and taken by none: the caller should back off and retry.
      if (overloadedBy.size > 0 && !taken)
        throw new DropbearError('OVERLOADED', `no node took ${id}: ${errors.join('; ')}`);
      throw new DropbearError(
        'NO_CERTIFICATE',
        `no node returned a valid certificate for ${id}: ${errors.join('; ')}`,
      );
    } finally {
      clearTimeout(hedge);
      clearTimeout(quietTimer);
      clearTimeout(timer);
      abort.abort(DONE);
      // POSTs still out may finish, so that their connections stay open for the next call; past the
      // grace, or the call's deadline, they are cut off. (An abort after they finished does nothing.)
      const grace = Math.min(POST_GRACE_MS, deadline - Date.now());
      if (grace <= 0) posts.abort(DONE);
      else setTimeout(() => posts.abort(DONE), grace).unref?.();
    }
  }

  infer(input: Uint8Array, opts: InferOptions = {}): Promise<InferResult> {
    if (!this.opts.coalesce) return this.send(this.sign(input, opts), opts.timeoutMs);
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
          this.send(this.sign(calls[0].input, opts), opts.timeoutMs).then(calls[0].resolve, calls[0].reject);
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
   */
  inferBatch(
    inputs: Uint8Array[],
    opts: InferOptions & { onResult?: (i: number, r: InferResult | Error) => void } = {},
  ): Promise<(InferResult | Error)[]> {
    if (inputs.length === 0) return Promise.resolve([]);
    return this.sendBatch(this.signBatch(inputs, opts), opts);
  }

  /**
   * Sends signed requests as `{requests: [...]}` POSTs (at most 1024 requests and `maxBodyBytes` each) to
   * the chosen nodes, polls GET /v1/certificates/:id for those still pending, and resolves with one result
   * per request, in order: the first certificate for it that verifies against the genesis and names this
   * request and input, or an Error. Like `send`: a node that is down or answers garbage or a certificate
   * that does not verify is skipped for the requests concerned, and the requests no chosen node certified
   * go to the other nodes; an error every honest node would repeat (bad signature, expired, ...) settles
   * that request at once; an overloaded node (503) is asked again after its Retry-After.
   */
  async sendBatch(
    srs: SignedRequest[],
    opts: { timeoutMs?: number; onResult?: (i: number, r: InferResult | Error) => void } = {},
  ): Promise<(InferResult | Error)[]> {
    if (srs.length === 0) return [];
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    const abort = fanOutController(this.nodes.length);
    const items: BatchItem[] = srs.map((sr, index) => ({
      index,
      sr,
      id: hex(requestIdOf(sr)),
      bytes: encode(SignedRequest, sr),
      errors: [],
      refusedBy: new Set(),
    }));
    let left = items.length;
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
        opts.onResult?.(it.index, r);
      },
    };
    const timer = setTimeout(wake, timeoutMs);
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
        if (!restRound && left > 0 && rest.length > 0 && Date.now() < deadline)
          restRound = round(rest, false);
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
    }
    for (const it of items)
      if (!it.out) {
        const why = it.errors.length > 0 ? it.errors.join('; ') : `no answer within ${timeoutMs} ms`;
        // Turned away for load and taken by no node: the group never saw it, and the caller should back
        // off and send it again, which OVERLOADED says (NO_CERTIFICATE would hide it).
        const code = it.overloadedBy && !it.taken ? 'OVERLOADED' : 'NO_CERTIFICATE';
        const what = code === 'OVERLOADED' ? 'no node took' : 'no node returned a valid certificate for';
        ctx.settle(it, new DropbearError(code, `${what} ${it.id} within ${timeoutMs} ms: ${why}`));
      }
    return items.map((it) => it.out as InferResult | Error);
  }

  /** One node's part of a `sendBatch`: POSTs the unsettled items of `todo` in chunks, then polls. */
  private async batchAt(node: GroupNode, todo: BatchItem[], ctx: BatchContext): Promise<void> {
    const polls: Promise<void>[] = [];
    const slots = semaphore(POLLS_PER_NODE);
    const pollLater = (it: BatchItem) => polls.push(slots(() => this.pollItem(node, it, ctx)));
    let maxBytes = this.opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    let pos = 0;
    while (Date.now() < ctx.deadline && !ctx.signal.aborted) {
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
        answer = await this.postBatch(node, chunk, ctx.deadline - Date.now(), ctx.signal, ctx.sentToAll);
      } catch (e) {
        // Down, reset, aborted: this node is out for everything it has not answered yet.
        if (!ctx.signal.aborted) failAll(todo.slice(pos), node, e);
        break;
      }
      if ('error' in answer) {
        const code = answer.error.code;
        if (code === 'OVERLOADED') {
          // Noted once per node and item; asked again after Retry-After while the call has time left.
          for (const it of chunk) {
            it.overloadedBy ??= new Set();
            if (it.overloadedBy.has(node.id)) continue;
            it.overloadedBy.add(node.id);
            it.errors.push(
              `node ${node.id}: OVERLOADED ${answer.error.message} (asked again while the call has time left)`,
            );
          }
          // Asked again only if, after the wait, the call has time left for the node to take them: a POST
          // sent right at the deadline (a sleep cut short by it) cannot come back with a certificate.
          // The items this node was not yet sent are turned away with them: the node said it is overloaded.
          if (answer.retryAfterMs + MIN_RETRY_WINDOW_MS > ctx.deadline - Date.now()) {
            failAll(todo.slice(end), node, answer.error);
            break;
          }
          await sleep(answer.retryAfterMs, ctx.signal);
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
    const err = new DropbearError(answer.code, answer.message || answer.code);
    if (err.code === 'OVERLOADED') (it.overloadedBy ??= new Set()).add(node.id);
    why(`${err.code} ${err.message}`);
    if (FINAL.has(err.code)) this.refused(node, it, err, ctx);
  }

  /**
   * A node refused an item with a code every honest node would repeat. One node's word is not enough (it
   * may be the Byzantine one): the item settles with that error once f+1 distinct nodes said so, and until
   * then the other nodes are asked as for any failure.
   */
  private refused(node: GroupNode, it: BatchItem, err: DropbearError, ctx: BatchContext): void {
    it.refusedBy.add(node.id);
    if (it.refusedBy.size > this.genesis.f || it.refusedBy.size >= this.nodes.length) ctx.settle(it, err);
  }

  /** Settles `it` with `cert` if it verifies and answers this request; else notes why `node` failed it. */
  private takeCertificate(node: GroupNode, it: BatchItem, cert: Certificate, ctx: BatchContext): void {
    try {
      ctx.settle(it, this.result(this.check(cert, it.sr, ctx.cache), node.id));
    } catch (e) {
      it.errors.push(
        `node ${node.id}: ${(e as DropbearError).code ?? 'CERTIFICATE_INVALID'} ${(e as Error).message}`,
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
    try {
      const cert = await this.post(
        node,
        it.bytes,
        ctx.deadline - Date.now(),
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
    while (!it.out && Date.now() < ctx.deadline) {
      const t0 = Date.now();
      let cert: Certificate | null;
      try {
        cert = await this.poll(node, it.id, ctx.deadline - t0, this.itemSignal(it));
      } catch (e) {
        if (!this.itemSignal(it).aborted) failAll([it], node, e);
        return;
      }
      if (cert) return this.takeCertificate(node, it, cert, ctx);
      await sleep(MIN_POLL_INTERVAL_MS - (Date.now() - t0), this.itemSignal(it));
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
      signal,
    });
    try {
      const results = await answersOf(res, node, chunk.length);
      if (results) return { results };
    } catch (e) {
      return { error: e as DropbearError, retryAfterMs: 1000 };
    }
    const body = (await res.json().catch(() => null)) as {
      error?: { code?: unknown; message?: unknown };
    } | null;
    const code = typeof body?.error?.code === 'string' ? body.error.code : `HTTP_${res.status}`;
    const message =
      typeof body?.error?.message === 'string'
        ? body.error.message
        : `node ${node.id} answered ${res.status} without ${chunk.length} results`;
    const retryAfter = Number(res.headers.get('retry-after'));
    return {
      error: new DropbearError(code, message),
      retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter, 30) * 1000 : 1000,
    };
  }

  /** Several inputs at once (each signed on its own; `concurrency` in flight). */
  async inferMany(
    inputs: Uint8Array[],
    opts: { concurrency?: number; onResult?: (i: number, r: InferResult | Error) => void } = {},
  ): Promise<(InferResult | Error)[]> {
    const out: (InferResult | Error)[] = new Array(inputs.length);
    let next = 0;
    const worker = async () => {
      while (next < inputs.length) {
        const i = next++;
        try {
          out[i] = await this.infer(inputs[i]);
        } catch (e) {
          out[i] = e as Error;
        }
        opts.onResult?.(i, out[i]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 16, inputs.length) }, worker));
    return out;
  }

  /** A certificate by request id from any node (verified), or null when none has it. */
  async certificate(requestId: string): Promise<Certificate | null> {
    for (const n of this.nodes) {
      try {
        const c = await this.poll(n, requestId, 0, AbortSignal.timeout(this.opts.timeoutMs));
        if (
          c &&
          verifyCertificate(c, this.genesis, { cache: this.signatures }).ok &&
          hex(c.outcome.requestId) === requestId
        )
          return c;
      } catch {}
    }
    return null;
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

/** Errors every honest node would give again: retrying elsewhere cannot help. */
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
  'BODY_TOO_LARGE',
]);

/** Records on each unsettled item why `node` could not serve it. */
function failAll(items: BatchItem[], node: GroupNode, e: unknown): void {
  const code = e instanceof DropbearError ? e.code : 'NETWORK';
  for (const it of items)
    if (!it.out) {
      if (code === 'OVERLOADED') (it.overloadedBy ??= new Set()).add(node.id);
      it.errors.push(`node ${node.id}: ${code} ${(e as Error).message}`);
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
