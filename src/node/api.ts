/**
 * The node's HTTP API (fastify), over one NodeHost. `buildApi` returns the app, not listening; over HTTPS
 * when given `tls` (a config's `api.tls`), where plain HTTP to the port is answered 400 HTTPS_REQUIRED.
 *
 *   POST /v1/requests                 {request} | {requests: [≤ 1024]} (SignedRequest codec JSON), or one
 *                                     SignedRequest's canonical bytes as application/octet-stream; ?wait=ms.
 *                                     200 {requestId, certificate} | 202 {requestId, status: 'pending'};
 *                                     arrays: 200 (all final) | 202 {results: [{requestId, certificate} |
 *                                     {requestId, status: 'pending'} | {requestId?, error}]}
 *   GET  /v1/certificates/:requestId  200 certificate JSON | 404 CERTIFICATE_NOT_FOUND; ?wait=ms
 *   GET  /v1/group                    genesis, group id, current models, view, primary
 *   GET  /v1/status                   host.status() with peers and backend stats
 *   GET  /healthz, /readyz            process alive; model loaded and ≥ 2f peers connected
 *   GET  /metrics                     Prometheus text (metrics.ts)
 *   Open Inference Protocol v2: GET /v2/health/live, /v2/health/ready, /v2, /v2/models/{group},
 *   /v2/models/{group}/ready; POST /v2/models/{group}/infer (one BYTES input "image", shape [1]) signed by
 *   the client (parameters dropbear_*) or, in custodial mode, by the node for the account of a bearer key.
 *   The model routes also answer under /v2/models/{group}/versions/1/... (the one version). Infer takes
 *   JSON, typed or not, or JSON plus the image as binary tensor data (Inference-Header-Content-Length).
 *
 * Every error is `{error: {code, message}}` (plus `requestId` when one is known; on the /v2 routes the
 * protocol's `{error: "CODE: message", code}`, `errorBodyFor`), its status given by `httpStatusOf(code)`;
 * fastify's own errors are translated into the same codes, and so are those Node raises on a connection
 * before a request exists (HTTP that does not parse, oversized headers, a request not fully arrived
 * within `requestTimeoutMs`), answered on the socket with `Connection: close`. A JSON body
 * nested over MAX_JSON_DEPTH or holding over MAX_JSON_CONTAINERS arrays and objects is MALFORMED_JSON, unparsed.
 * JSON bodies are checked as sent, without type coercion (`validatorsByPart`): a value of the wrong type is
 * 400 BAD_REQUEST naming the field; query strings and path parameters are coerced from their strings.
 */
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { Socket } from 'node:net';
import AjvCompiler from '@fastify/ajv-compiler';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
} from 'fastify';
import {
  answerClientError,
  answerNodeRefusals,
  clientErrorOf,
  cutUtf8,
  DEFAULT_REQUEST_TIMEOUT_MS,
  isWholeBase64,
  methodsByPath,
  refuseOversizedBodies,
  requestTimeoutOptions,
} from '../inference/http-body.ts';
import { MODEL_VERSION, packageVersion } from '../inference/kserve-server.ts';
import { labelName } from '../inference/postprocess.ts';
import {
  checkDeclaredSize,
  checkModelTensorValues,
  checkTensorImageSize,
  decodeTensorInput,
  imageSize,
  isModelTensor,
  sniffInput,
} from '../inference/preprocess.ts';
import { INFER_HEADER_LENGTH, splitBody } from '../inference/remote.ts';
import type { ModelSpec } from '../inference/spec.ts';
import {
  type Certificate,
  Certificate as CertificateCodec,
  type CountedVote,
  Decision,
  DropbearError,
  decode,
  encode,
  equalBytes,
  fromJson,
  Genesis,
  groupIdOf,
  hex,
  type KeyPair,
  LIMITS,
  MAX_REQUESTS_PER_CALL,
  type Policy,
  PublicKey,
  quorumOf,
  REQUEST_ANSWERS_TYPE,
  REQUEST_LIST_TYPE,
  type Request,
  type RequestAnswer,
  RequestAnswers,
  RequestList,
  requestIdOf,
  Signature,
  SignedRequest,
  sha256,
  signRequest,
  Tx as TxCodec,
  toB64u,
  toJson,
} from '../protocol/index.ts';
import { apiKeySha256Of } from './config.ts';
import type { NodeHost } from './host.ts';
import { isConnected, NodeMetrics, type PeerState } from './metrics.ts';

/** A plugin of fastify's ajv (`ajv.plugins`), and the ajv it is given. */
type AjvPlugin = Extract<
  NonNullable<NonNullable<FastifyServerOptions['ajv']>['plugins']>[number],
  (...args: never) => unknown
>;
type Ajv = Parameters<AjvPlugin>[0];

export interface CustodialAccount {
  /** SHA-256 (hex) of the account's API key (the key itself is never stored). */
  apiKeySha256: string;
  /** The client key the node signs with for this account. */
  key: KeyPair;
  /** maxFee of the requests signed for this account. */
  maxFee: number;
}

/** A page served at GET /dashboard and its script at GET /dashboard/app.js (the `web` part; cli wires it). */
export interface DashboardAssets {
  html: string;
  /**
   * The script, built once and kept (a failed build tried again on the next call). A node calls it when
   * it starts serving (node/run.ts), so the build is done before anyone asks.
   */
  script: () => Promise<string>;
}

export interface ApiOptions {
  /**
   * Serve HTTPS with this key and certificate (PEM; the certificate may be followed by its chain), read and
   * checked by the caller (node/run.ts: loadTls). Absent: plain HTTP.
   */
  tls?: { key: Buffer; cert: Buffer };
  /** The dashboard (none: GET /dashboard is 404 NOT_FOUND like any unknown route). */
  dashboard?: DashboardAssets;
  /** The model name of the group in the v2 routes (default: the genesis name). */
  groupName?: string;
  /** Largest request body (default `bodyLimitFor(genesis)`: at least 8 MiB). */
  bodyLimitBytes?: number;
  /**
   * A request (headers and body) that has not fully arrived within this many ms gets 408 REQUEST_TIMEOUT
   * and its connection closed (default 60 s; 0: no limit). Only the request: a long poll (`?wait`) is not
   * cut by it.
   */
  requestTimeoutMs?: number;
  /** How long POST /v1/requests waits for the certificate when `?wait` is absent (default 10 s). */
  defaultWaitMs?: number;
  /** Longest wait any route allows; v2 infer always waits this long before 504 (default 60 s). */
  maxWaitMs?: number;
  /** Custodial mode (off unless given): the node signs for the account whose API key the client presents. */
  custodial?: { accounts: CustodialAccount[] };
  /** Connection states from the transport (readiness, status and metrics). */
  peers?: () => PeerState[];
  /** This node's metrics; the same object's `observer()` should be the host's `observe` option. Default: a
   *  fresh NodeMetrics attached to the host (gauges and HTTP counts only, no observer counts). */
  metrics?: NodeMetrics;
  /** 503 OVERLOADED when the replica holds more requests than this (default 8192). */
  maxPending?: number;
  /**
   * 503 OVERLOADED when the replica holds more than this many seconds of work at the group's recent
   * execution rate (default 2; at least `minPending` requests are always let in). A backlog the group
   * cannot clear within a few view-change timeouts makes backups suspect the primary, and a view change
   * under overload costs more than the work it interrupts: shedding load at the door keeps it serving.
   */
  maxQueueSeconds?: number;
  /** The backlog let in whatever the rate (default 256): a cold node, or a burst after an idle spell. */
  minPending?: number;
  /** 503 OVERLOADED when the backend has more inputs waiting than this (default 256). */
  maxInferenceQueue?: number;
  /** Retry-After seconds sent with 503 OVERLOADED (default 1). */
  retryAfterSeconds?: number;
  /**
   * Long polls held at once: HTTP requests waiting for certificates (`?wait` > 0 on GET /v1/certificates
   * and POST /v1/requests, and v2 infer), whatever number of requests each waits for. One more is answered
   * at once with 503 OVERLOADED (and Retry-After), before a POST submits anything (default 8192).
   */
  maxLongPolls?: number;
  /** The same cap per connection: HTTP/1.1 pipelining starts every request it sends at once (default 64). */
  maxLongPollsPerConnection?: number;
  /**
   * Certificate waiters held at once by the long polls: one per distinct request each waits for (a POST
   * waits for up to 1024). A long poll that would pass it is answered at once with 503 OVERLOADED, like one
   * over maxLongPolls (default 65,536: ~120 MiB at ~1.9 KiB each, where maxLongPolls × 1024 was ~16 GiB).
   */
  maxCertificateWaiters?: number;
  /**
   * HTTP connections open at once (default 1024). One more is answered at once with 503 OVERLOADED (and
   * Retry-After, `Connection: close`) and closed, before any request on it is read. Without a bound, a
   * client that opened connections up to the process's open-file limit (`ulimit -n`) left the node no
   * descriptor to reconnect to a peer that restarted (`connect EMFILE`): it was cut off from the group
   * for as long as the connections were held. The node lowers it below that limit (node/run.ts).
   */
  maxConnections?: number;
  /**
   * HTTP connections open at once from one client address (default 256; at most maxConnections counts).
   * IPv4 addresses count one by one, IPv6 ones by their /64 prefix (one host commonly holds a whole /64).
   * One more is refused as one over maxConnections is. Without it one client could hold every connection
   * the node allows (each for up to the idle and request timeouts) and shut every other client out.
   */
  maxConnectionsPerAddress?: number;
  /** A pino (or compatible) logger for fastify's request log (default: none). */
  logger?: FastifyBaseLogger;
}

export const API_DEFAULTS = {
  bodyLimitBytes: 8 * 1024 * 1024,
  requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
  defaultWaitMs: 10_000,
  maxWaitMs: 60_000,
  maxPending: 8192,
  maxQueueSeconds: 2,
  minPending: 256,
  maxInferenceQueue: 256,
  retryAfterSeconds: 1,
  maxLongPolls: 8192,
  maxLongPollsPerConnection: 64,
  maxCertificateWaiters: 65_536,
  maxConnections: 1024,
  maxConnectionsPerAddress: 256,
} as const;

export { MAX_REQUESTS_PER_CALL };

/**
 * What a body holds beside the one input, at most: the request's fields, its signature (or a batch
 * signature's audit path, 10 hashes at 1024 requests), JSON keys and v2's parameters, ~2 KiB in all; the
 * rest is room to spare.
 */
const ENVELOPE_BYTES = 64 * 1024;

/**
 * The default body limit: one request with an input of the genesis `maxInputBytes` fits in any form the
 * API takes (base64 in JSON, the larger, plus its envelope), and never less than API_DEFAULTS'. Until
 * 2026-12-06 it was 8 MiB whatever the genesis, which `group init` writes as maxInputBytes: an input just
 * over the limit was refused as a body over it (BODY_TOO_LARGE, "request body over the limit of 8388608
 * bytes"), REQUEST_INPUT_TOO_LARGE never came, and an input over about 6 MiB could not go as JSON at all.
 */
export function bodyLimitFor(genesis: Genesis): number {
  const base64 = 4 * Math.ceil(genesis.params.maxInputBytes / 3);
  return Math.max(API_DEFAULTS.bodyLimitBytes, base64 + ENVELOPE_BYTES);
}

/** The routes that submit client requests: a call to one refused whole counts as one refused request. */
const SUBMIT_ROUTES = new Set([
  '/v1/requests',
  '/v2/models/:group/infer',
  '/v2/models/:group/versions/:version/infer',
]);

/** How long the API's close() lets requests still in flight finish before it cuts their connections. */
export const CLOSE_GRACE_MS = 1000;

/** Every error code the API answers with, and its HTTP status (docs/api.md, "Codes", lists them all). */
const STATUS: Record<string, number> = {
  BAD_REQUEST: 400,
  BAD_HTTP: 400,
  BAD_URL: 400,
  UNKNOWN_QUERY_PARAMETER: 400,
  TX_MALFORMED: 400,
  TX_UNKNOWN_NODE: 400,
  TX_BAD_SIGNATURE: 401,
  TX_STALE_VERSION: 409,
  TX_VERSION_GAP: 409,
  TX_DUPLICATE: 409,
  TX_ALREADY_EXECUTED: 409,
  TX_MODEL_NOT_LOADED: 409,
  TX_MODEL_INCOMPATIBLE: 409,
  TX_TOO_MANY: 409,
  TX_BAD_AMOUNT: 400,
  TX_DEPOSIT_TOO_LARGE: 409,
  TX_WITHDRAWAL_TOO_LARGE: 409,
  TX_REFUND_TOO_LARGE: 409,
  TX_TRANSFER_TOO_LARGE: 409,
  TX_TRANSFER_TO_SELF: 400,
  MALFORMED_JSON: 400,
  REQUEST_MALFORMED: 400,
  REQUEST_WRONG_GROUP: 400,
  REQUEST_EXPIRED: 400,
  REQUEST_FROM_FUTURE: 400,
  REQUEST_INPUT_MISMATCH: 400,
  REQUEST_BAD_POLICY: 400,
  MAX_FEE_TOO_LOW: 400,
  INPUT_UNSUPPORTED: 400,
  INPUT_UNDECODABLE: 400,
  INPUT_TENSOR_MALFORMED: 400,
  INPUT_SHAPE: 400,
  INFER_BAD_INPUT: 400,
  INFER_BAD_DATATYPE: 400,
  INFER_BAD_SHAPE: 400,
  INFER_BAD_PARAMETERS: 400,
  INFER_BAD_OUTPUT: 400,
  HTTPS_REQUIRED: 400,
  UNAUTHORIZED: 401,
  REQUEST_BAD_SIGNATURE: 401,
  INSUFFICIENT_FUNDS: 402,
  NOT_FOUND: 404,
  CERTIFICATE_NOT_FOUND: 404,
  TX_NOT_FOUND: 404,
  MODEL_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  REQUEST_TIMEOUT: 408,
  REQUEST_DUPLICATE: 409,
  REQUEST_ALREADY_EXECUTED: 409,
  BODY_TOO_LARGE: 413,
  REQUEST_INPUT_TOO_LARGE: 413,
  INPUT_TOO_LARGE: 413,
  URI_TOO_LONG: 414,
  UNSUPPORTED_MEDIA_TYPE: 415,
  EXPECTATION_FAILED: 417,
  HEADERS_TOO_LARGE: 431,
  INTERNAL: 500,
  OVERLOADED: 503,
  NOT_READY: 503,
  DASHBOARD_UNAVAILABLE: 503,
  NODE_STOPPED: 503,
  MODEL_MISMATCH: 503,
  TIMEOUT: 504,
};

/** The codes the API answers with, each with its status. */
export const API_ERROR_CODES: Readonly<Record<string, number>> = STATUS;

/** The one place an error code becomes an HTTP status. */
export function httpStatusOf(code: string): number {
  const s = STATUS[code];
  if (s !== undefined) return s;
  if (code.startsWith('INPUT_') || code.startsWith('CODEC_')) return 400;
  return 500;
}

export interface ApiError {
  code: string;
  message: string;
  requestId?: string;
}

function apiError(code: string, message: string, requestId?: string): DropbearError {
  return new DropbearError(code, message, requestId ? { requestId } : undefined);
}

/** Any thrown value as the API's error (fastify's own errors included). */
function toApiError(e: unknown, bodyLimit: number): ApiError {
  if (e instanceof DropbearError) {
    const requestId = typeof e.details?.requestId === 'string' ? e.details.requestId : undefined;
    return { code: e.code, message: e.message, ...(requestId ? { requestId } : {}) };
  }
  const fe = e as Partial<FastifyError>;
  if (fe.validation) {
    const first = fe.validation[0];
    const name = (first?.params as { additionalProperty?: unknown } | undefined)?.additionalProperty;
    if (fe.validationContext === 'querystring' && first?.keyword === 'additionalProperties')
      return {
        code: 'UNKNOWN_QUERY_PARAMETER',
        message: `unknown query parameter "${cutUtf8(String(name), 100)}" for this route`,
      };
    // A field the body may not hold, named with where it is (ajv's message named neither).
    if (fe.validationContext === 'body' && first?.keyword === 'additionalProperties')
      return {
        code: 'BAD_REQUEST',
        message: `body${first.instancePath ?? ''} has an unknown field ${JSON.stringify(cutUtf8(String(name), 100))}`,
      };
    return { code: 'BAD_REQUEST', message: fe.message ?? 'invalid request' };
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { code: 'BODY_TOO_LARGE', message: `request body over the limit of ${bodyLimit} bytes` };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'content type not accepted by this route' };
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { code: 'MALFORMED_JSON', message: fe.message ?? 'body is not valid JSON' };
    case 'FST_ERR_BAD_URL':
      return { code: 'BAD_URL', message: 'the URL does not decode (bad percent-encoding)' };
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return { code: 'URI_TOO_LONG', message: `a path parameter is over ${MAX_PARAM_LENGTH} characters` };
  }
  const status = fe.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500)
    return { code: 'BAD_REQUEST', message: fe.message ?? 'bad request' };
  return { code: 'INTERNAL', message: 'internal error' };
}

/**
 * The error as sent: its message cut to LIMITS.message (4 KiB), as a binary answer cuts it. Messages quote
 * what the request held (an unknown field, kind, input or output name, a shape), and a 4 MB name came back
 * whole; the SDK counts on an error of at most 4 KiB (docs/api.md, `maxResponseBytes`).
 */
function sentError(e: ApiError): ApiError {
  return Buffer.byteLength(e.message) <= LIMITS.message
    ? e
    : { ...e, message: cutUtf8(e.message, LIMITS.message) };
}

function errorBody(e: ApiError) {
  return { error: sentError(e) };
}

/** At most one line per this many ms about failed accepts (logAcceptErrors). */
const ACCEPT_LOG_INTERVAL_MS = 10_000;

/**
 * Errors of the listening server once it listens: Node's net.Server emits one when accept(2) fails (EMFILE
 * or ENFILE where libuv's reserve descriptor is gone, ENOMEM, ...), and fastify listens for none after
 * `listen`: the event was thrown, and the node exited on a connection it could not take. Logged instead,
 * ACCEPT_FAILED, at most once per ACCEPT_LOG_INTERVAL_MS with how many were not (the peer transport does
 * the same for its port).
 */
function logAcceptErrors(app: FastifyInstance): void {
  let next = 0;
  let suppressed = 0;
  app.server.once('listening', () =>
    app.server.on('error', (e: NodeJS.ErrnoException) => {
      const now = performance.now();
      if (now < next) {
        suppressed++;
        return;
      }
      app.log.warn(
        { code: 'ACCEPT_FAILED', err: e.message, suppressed, quietMs: ACCEPT_LOG_INTERVAL_MS },
        'HTTP API: a connection could not be accepted (see api_limits.maxConnections and ulimit -n)',
      );
      next = now + ACCEPT_LOG_INTERVAL_MS;
      suppressed = 0;
    }),
  );
}

/** Refusals of connections over maxConnections being written at once; beyond, one is closed unanswered. */
const MAX_REFUSING = 64;

/**
 * The key a client's connections are counted under (ApiOptions.maxConnectionsPerAddress): an IPv4 address
 * as it is (also when written IPv4-mapped, `::ffff:a.b.c.d`), an IPv6 address by its first 64 bits.
 */
export function addressKey(address: string | undefined): string {
  if (address === undefined || address === '') return '';
  if (!address.includes(':')) return address;
  const lower = address.toLowerCase().split('%')[0];
  if (lower.startsWith('::ffff:') && lower.includes('.')) return lower.slice(7);
  const [head, tail] = lower.includes('::') ? lower.split('::') : [lower, null];
  const left = head === '' ? [] : head.split(':');
  const right = tail === null || tail === '' ? [] : tail.split(':');
  const groups =
    tail === null
      ? left
      : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => (Number.parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}

/**
 * At most `max` HTTP connections open at once (ApiOptions.maxConnections), and `perAddress` from one client
 * address (maxConnectionsPerAddress, addressKey). One more is answered on its socket (answerClientError:
 * 503 OVERLOADED, Retry-After, `Connection: close`) and closed, before any request on it is read (a
 * request that arrived all the same is not served). A flood of new connections costs no more than
 * MAX_REFUSING sockets beyond the limits being answered, each for at most 1 s: the rest are closed
 * unanswered.
 */
function limitConnections(
  app: FastifyInstance,
  max: number,
  perAddress: number,
  retryAfterSeconds: number,
  tls: boolean,
): void {
  let open = 0;
  let refusing = 0;
  const byAddress = new Map<string, number>();
  const refused = new WeakSet<Socket>();
  app.server.on('connection', (socket: Socket) => {
    const key = addressKey(socket.remoteAddress);
    const mine = byAddress.get(key) ?? 0;
    if (open < max && mine < perAddress) {
      open++;
      byAddress.set(key, mine + 1);
      socket.once('close', () => {
        open--;
        const left = (byAddress.get(key) ?? 1) - 1;
        if (left > 0) byAddress.set(key, left);
        else byAddress.delete(key);
      });
      return;
    }
    refused.add(socket);
    // Under HTTPS the socket is the TCP one, below TLS: an answer written there would reach the client as a
    // garbled handshake, and one written over TLS would first cost the handshake the limit is there to
    // spare. Closed unanswered instead.
    if (tls || refusing >= MAX_REFUSING) {
      socket.destroy();
      return;
    }
    refusing++;
    socket.once('close', () => refusing--);
    const err = {
      code: 'OVERLOADED',
      message:
        open >= max
          ? `over ${max} connections open to this node (api_limits.maxConnections): try again later`
          : `over ${perAddress} connections open to this node from your address (api_limits.maxConnectionsPerAddress): close some or try again later`,
    };
    answerClientError(socket, httpStatusOf(err.code), errorBody(err), {
      'Retry-After': String(retryAfterSeconds),
    });
  });
  // Node's HTTP parser is already on the socket: a request sent before it closed would reach the routes.
  app.addHook('onRequest', (req, _reply, done) => {
    if (refused.has(req.raw.socket)) req.raw.socket.destroy();
    else done();
  });
}

/**
 * Under HTTPS, a plain HTTP request to the port (OpenSSL's ERR_SSL_HTTP_REQUEST: the "handshake" began
 * with an HTTP method) is answered in plain HTTP, 400 HTTPS_REQUIRED, and closed, as a web server does,
 * instead of a connection reset that reads to the client as "other side closed". Written on the TCP socket
 * under the TLS one (`_parent`, Node's own link between them; without it the socket is closed, as Node does
 * with every failed handshake). Any other failed handshake is left to Node (closed, unanswered).
 */
function answerPlainHttp(app: FastifyInstance): void {
  app.server.on('tlsClientError', (e: NodeJS.ErrnoException, tlsSocket: Socket) => {
    if (e.code !== 'ERR_SSL_HTTP_REQUEST') return;
    const raw = (tlsSocket as Socket & { _parent?: unknown })._parent;
    if (!(raw instanceof Socket) || raw.destroyed) return;
    const err = {
      code: 'HTTPS_REQUIRED',
      message: `this node serves its API over HTTPS only (api.tls): call https://…:${raw.localPort ?? ''} instead of http://`,
    };
    answerClientError(raw, httpStatusOf(err.code), errorBody(err));
  });
}

/** Whether `url` is one of the Open Inference Protocol's routes (/v2 and below). */
function isOipUrl(url: string): boolean {
  const path = url.split('?')[0];
  return path === '/v2' || path.startsWith('/v2/');
}

/**
 * The error body for a request to `url`. On the Open Inference Protocol's routes it is the protocol's,
 * `{"error": "<message>"}`, the message led by the code, which also stands beside it (with the request id
 * when there is one): OIP clients read `error` as a string, and tritonclient, given this API's object
 * there, raised a TypeError making its exception's text. Every other route has `{error: {code, message}}`.
 */
function errorBodyFor(url: string, error: ApiError) {
  if (!isOipUrl(url)) return errorBody(error);
  // The whole string is cut to LIMITS.message: cutting the message alone left it "CODE: " over (up to
  // ~30 bytes, until 2026-12-06).
  return {
    error: cutUtf8(`${error.code}: ${error.message}`, LIMITS.message),
    code: error.code,
    ...(error.requestId ? { requestId: error.requestId } : {}),
  };
}

/** Longest path parameter fastify matches (its default); longer ones get 414 URI_TOO_LONG. */
const MAX_PARAM_LENGTH = 100;

/**
 * The deepest nesting of arrays and objects a JSON body may have (a valid request has 5; a v2 call's
 * `parameters` a few more), and how many it may hold in all (a JSON POST of 1024 requests holds ~5 each).
 * JSON.parse builds every value before a schema can refuse any: an 8 MiB body of `[[[[…]]]]` held a node's
 * event loop ~8 s, and one of `[],[],…` ~2.5 s, where 8 MiB of base64 took under 1 s (2026-12-06, a
 * stand-in group of 4 processes on 2 loaded cores). The count costs ~1.5 ms for a JSON POST of 1024
 * batch-signed requests (1 MiB; JSON.parse: ~10 ms) and ~0.1 ms for 8 MiB of base64.
 */
export const MAX_JSON_DEPTH = 64;
export const MAX_JSON_CONTAINERS = 16 * MAX_REQUESTS_PER_CALL;

/**
 * What is wrong with the shape of JSON text (nested over `maxDepth`, or over `maxContainers` arrays and
 * objects), or null. Counted before parsing, in one pass: a string is skipped to its closing quote with
 * indexOf (base64 costs next to nothing), so brackets inside strings do not count. Text that is not JSON
 * may pass: JSON.parse says what is wrong with it.
 */
function jsonShapeProblem(text: string, maxDepth: number, maxContainers: number): string | null {
  let depth = 0;
  let containers = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // The closing quote: the next one not escaped, i.e. after an even run of backslashes.
      let j = i;
      for (;;) {
        j = text.indexOf('"', j + 1);
        if (j < 0) return null;
        let k = j - 1;
        while (text.charCodeAt(k) === 0x5c) k--;
        if ((j - 1 - k) % 2 === 0) break;
      }
      i = j;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return `nests arrays and objects over ${maxDepth} deep`;
      if (++containers > maxContainers) return `holds over ${maxContainers} arrays and objects`;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return null;
}

/**
 * Where in a parsed JSON value a key fastify's parser refuses sits (`__proto__` anywhere, or `constructor`
 * holding a `prototype`), or null. Walked without recursion (the value came from JSON.parse: no cycles).
 */
function forbiddenKeyOf(value: unknown): string | null {
  const stack: { v: unknown; path: string }[] = [{ v: value, path: '' }];
  while (stack.length > 0) {
    const { v, path } = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    const isArray = Array.isArray(v);
    for (const k of Object.keys(v)) {
      const child = (v as Record<string, unknown>)[k];
      const at = isArray ? `${path}[${k}]` : path ? `${path}.${k}` : k;
      if (!isArray && k === '__proto__') return at;
      if (
        !isArray &&
        k === 'constructor' &&
        typeof child === 'object' &&
        child !== null &&
        'prototype' in child
      )
        return at;
      stack.push({ v: child, path: at });
    }
  }
  return null;
}

/**
 * Cheap check that this node's model can use the input: JPEG/PNG headers (the size read from the header
 * bytes, within the bounds decoding applies: preprocess.ts, checkDeclaredSize), DBT1 tensors (header,
 * length, and shape: a uint8 [H, W, 3] image or the model's own input, its values finite and within the
 * model's datatype: checkModelTensorValues).
 */
export async function checkInput(bytes: Uint8Array, spec: ModelSpec): Promise<void> {
  const kind = sniffInput(bytes);
  if (kind === 'unknown')
    throw new DropbearError('INPUT_UNSUPPORTED', 'input is neither a JPEG, a PNG nor a DBT1 tensor');
  const tensorOnly = spec.preprocess.kind === 'tensor';
  if (kind === 'tensor') {
    const t = decodeTensorInput(bytes);
    if (t.dtype === 'uint8' && t.dims.length === 3 && t.dims[2] === 3) {
      if (tensorOnly)
        throw new DropbearError('INPUT_UNSUPPORTED', `model ${spec.name} takes only its own input tensor`);
      checkTensorImageSize(t.dims[1], t.dims[0]);
      return;
    }
    if (!isModelTensor(t, spec))
      throw new DropbearError(
        'INPUT_SHAPE',
        `tensor ${t.dtype} [${t.dims.join(', ')}] is neither a uint8 [H, W, 3] image nor the model's ` +
          `input [${spec.input.shape
            .slice(1)
            .map((d) => d ?? 'any')
            .join(', ')}]`,
      );
    // NaN, infinite, or beyond FP16 for a float16 model: refused here, not ordered and run.
    checkModelTensorValues(t, spec);
    return;
  }
  if (tensorOnly)
    throw new DropbearError('INPUT_UNSUPPORTED', `model ${spec.name} takes only its own input tensor`);
  // The header alone (a few hundred bytes, microseconds): asking libvips for the metadata cost ~1 ms of
  // this thread per image, on every node.
  const size = imageSize(bytes);
  if (!size)
    throw new DropbearError(
      'INPUT_UNDECODABLE',
      `cannot read the ${kind.toUpperCase()}: its header is malformed or declares no size`,
    );
  // The bounds decoding applies before it starts (a side, 40 MP, pixels per byte of file): an input every
  // node would refuse is not ordered.
  checkDeclaredSize(kind, size.width, size.height, bytes.length);
}

/** A client-signed request as it travels, from its parts (one signature over this one request). */
function signedRequestOf(request: Request, signature: Uint8Array, input: Uint8Array): SignedRequest {
  return { request, auth: { kind: 'single', signature }, input };
}

/** A random nonce that is a safe integer (53 bits). */
function randomNonce(): number {
  return Number(randomBytes(8).readBigUInt64BE() & 0x1f_ffff_ffff_ffffn);
}

type ItemOutcome =
  | { requestId: string; certificate: Certificate }
  | { requestId: string; pending: true }
  | { requestId?: string; error: ApiError };

// ---------------------------------------------------------------- schemas

/**
 * An integer in [0, 2^53 − 1]. Also `safeInteger` (the keyword `safeIntegers` adds) because ajv takes the
 * string "Infinity", "-Infinity" or "1e400" (a query parameter: bodies are not coerced) for ±Infinity, an
 * integer to it, and checks minimum and maximum on finite numbers only: `?wait=-Infinity` was no wait and
 * `?wait=1e400` the longest (and, before bodies were checked without coercion, the v2 signing parameters
 * sent as such strings reached the codec). JSON.parse also reads 1e400 in a body as Infinity.
 */
const SAFE = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, safeInteger: true };

/**
 * The ajv keyword `safeInteger: true`: the value, once coerced, is a safe integer (so finite). Declared
 * for every type, not `number`: ajv skips a number keyword on a number that is not finite.
 */
const safeIntegers = ((ajv: Ajv) => {
  const validate = (on: boolean, data: unknown): boolean => {
    const ok = !on || Number.isSafeInteger(data);
    validate.errors = ok
      ? undefined
      : [{ keyword: 'safeInteger', params: {}, message: 'must be an integer in [0, 2^53-1]' }];
    return ok;
  };
  validate.errors = undefined as { keyword: string; params: object; message: string }[] | undefined;
  return ajv.addKeyword({ keyword: 'safeInteger', schemaType: 'boolean', errors: true, validate });
}) satisfies AjvPlugin;

/**
 * The validator compilers (fastify's `schemaController.compilersFactory.buildValidator`): fastify's own
 * ajv compiler, with the server's `ajv` options (plugins, `removeAdditional: false`), in two settings by
 * HTTP part. Query strings, path parameters and headers arrive as strings and are coerced as fastify does
 * by default (`coerceTypes: 'array'`: `?wait=5000` is the integer 5000). A JSON body is checked as sent
 * (`coerceTypes: false`): with coercion `"shape": 1` was taken as `[1]`, `["1"]` as `[1]`, `"name": 5` or
 * `["image"]` as a name, `null` as "", and the signing parameters as numbers in strings, where Triton and
 * KServe refuse such bodies; now each is BAD_REQUEST naming the field (toApiError).
 *
 * One pool of ajv instances per server, as fastify's own factory has. With a custom factory fastify passes
 * a `headers` schema as written (it lowercases the header names for its own compiler): no route here has
 * one; name the headers in lowercase in one.
 */
function validatorsByPart(): NonNullable<
  NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']
>['buildValidator'] {
  const pool = AjvCompiler();
  return (externalSchemas, ajvOptions) => {
    const options = ajvOptions ?? {};
    const coercing = pool(externalSchemas, options);
    const exact = pool(externalSchemas, {
      ...options,
      customOptions: { ...options.customOptions, coerceTypes: false },
    } as typeof options);
    return (route) => (route.httpPart === 'body' ? exact : coercing)(route);
  };
}

const waitQuery = {
  type: 'object',
  properties: { wait: SAFE },
  additionalProperties: false,
};

/** POST /v1/requests: `wait`, and `sentTo=all` when the client sent the request(s) to every node itself. */
const submitQuery = {
  type: 'object',
  properties: { ...waitQuery.properties, sentTo: { type: 'string', enum: ['all'] } },
  additionalProperties: false,
};

const requestsBody = {
  content: {
    'application/json': {
      schema: {
        type: 'object',
        properties: {
          request: { type: 'object', description: 'a SignedRequest in its codec JSON form' },
          requests: {
            type: 'array',
            minItems: 1,
            maxItems: MAX_REQUESTS_PER_CALL,
            items: { type: 'object', description: 'a SignedRequest in its codec JSON form' },
          },
        },
        additionalProperties: false,
        oneOf: [{ required: ['request'] }, { required: ['requests'] }],
      },
    },
    // application/octet-stream: one SignedRequest's canonical bytes, checked by the codec;
    // REQUEST_LIST_TYPE: a RequestList (binary batch, answered with RequestAnswers).
  },
};

/** A binary batch body (REQUEST_LIST_TYPE), kept apart from the single request's octet-stream Buffer. */
class BinaryList {
  constructor(readonly bytes: Uint8Array) {}
}

const certificateParams = {
  type: 'object',
  required: ['requestId'],
  properties: { requestId: { type: 'string', pattern: '^[0-9a-fA-F]{64}$' } },
};

const txParams = {
  type: 'object',
  required: ['txId'],
  properties: { txId: { type: 'string', pattern: '^[0-9a-fA-F]{64}$' } },
};

/** A client's public key: 32 bytes as unpadded base64url (43 characters). */
const accountParams = {
  type: 'object',
  required: ['client'],
  properties: { client: { type: 'string', pattern: '^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$' } },
};

const groupParams = {
  type: 'object',
  required: ['group'],
  properties: { group: { type: 'string', minLength: 1 }, version: { type: 'string' } },
};

/** Routes that take no query parameters (the default for a route that names none: see `onRoute`). */
const noQuery = { type: 'object', properties: {}, additionalProperties: false };

// No field beyond the protocol's, at the top, in an input or in an output: a misspelt one ("ouputs",
// "paramters") was ignored until 2026-12-06, and the call answered as if it had not been given.
const inferBody = {
  type: 'object',
  required: ['inputs'],
  additionalProperties: false,
  properties: {
    id: { type: 'string' },
    // Not the protocol's, but KServe's Python client (InferRequest.to_rest) sends it in every body.
    model_name: { type: 'string' },
    parameters: {
      type: 'object',
      properties: {
        dropbear_client: { type: 'string' },
        dropbear_nonce: SAFE,
        dropbear_timestamp: SAFE,
        dropbear_max_fee: SAFE,
        dropbear_signature: { type: 'string' },
        dropbear_min_agree: SAFE,
      },
    },
    inputs: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['name', 'datatype', 'shape'],
        additionalProperties: false,
        properties: {
          name: { type: 'string' },
          datatype: { type: 'string' },
          shape: { type: 'array', items: { type: 'integer' } },
          parameters: { type: 'object' },
          data: {},
        },
      },
    },
    outputs: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name'],
        additionalProperties: false,
        properties: { name: { type: 'string' }, parameters: { type: 'object' } },
      },
    },
  },
};

const tensorMeta = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    datatype: { type: 'string' },
    shape: { type: 'array', items: { type: 'integer' } },
  },
};

interface InferInput {
  name: string;
  datatype: string;
  shape: number[];
  parameters?: Record<string, unknown>;
  data?: unknown;
}

interface InferBody {
  id?: string;
  model_name?: string;
  parameters?: {
    dropbear_client?: string;
    dropbear_nonce?: number;
    dropbear_timestamp?: number;
    dropbear_max_fee?: number;
    dropbear_signature?: string;
    dropbear_min_agree?: number;
  };
  inputs: InferInput[];
  outputs?: { name: string; parameters?: Record<string, unknown> }[];
}

const SIGNING_PARAMS = [
  'dropbear_client',
  'dropbear_nonce',
  'dropbear_timestamp',
  'dropbear_max_fee',
  'dropbear_signature',
] as const;

/** Every `dropbear_` parameter an infer call may carry. */
const DROPBEAR_PARAMS: ReadonlySet<string> = new Set([...SIGNING_PARAMS, 'dropbear_min_agree']);

const OUTPUTS = ['label', 'top5_labels', 'top5_scores'] as const;

// ---------------------------------------------------------------- the app

/** Builds the node's API over `host` (not listening: the caller listens, or injects in tests). */
export function buildApi(host: NodeHost, opts: ApiOptions = {}): FastifyInstance {
  const genesis = host.genesis;
  const o = {
    ...API_DEFAULTS,
    bodyLimitBytes: bodyLimitFor(genesis),
    ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
  };
  const groupId = groupIdOf(genesis);
  const groupName = opts.groupName ?? genesis.name;
  const q = quorumOf(genesis);
  const metrics = opts.metrics ?? new NodeMetrics();
  if (!opts.metrics) metrics.attach(host, opts.peers);
  // One account per API key: kept in a map by key hash, a key listed twice left the first of its accounts
  // unreachable and its holder spending the other's funds (until 2026-12-06; config.ts refuses it too).
  const accounts = new Map<string, CustodialAccount>();
  const indexOf = new Map<string, number>();
  for (const [i, a] of (opts.custodial?.accounts ?? []).entries()) {
    const h = a.apiKeySha256.toLowerCase();
    const first = indexOf.get(h);
    if (first !== undefined)
      throw new RangeError(`custodial accounts ${first} and ${i} have the same apiKeySha256`);
    indexOf.set(h, i);
    accounts.set(h, a);
  }
  const custodial = opts.custodial !== undefined;
  const version = packageVersion();
  const maxWaitMs = o.maxWaitMs as number;
  // maxInferenceQueue and retryAfterSeconds too (checked by the node config since 2026-12-06, but not when
  // given here directly: 1.5 would have gone out as `Retry-After: 1.5`, which RFC 9110 does not allow).
  for (const k of [
    'maxLongPolls',
    'maxLongPollsPerConnection',
    'maxCertificateWaiters',
    'maxInferenceQueue',
    'retryAfterSeconds',
  ] as const) {
    const v = o[k] as number;
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`${k} must be an integer ≥ 0, got ${v}`);
  }
  const maxConnections = o.maxConnections as number;
  if (!Number.isInteger(maxConnections) || maxConnections < 1)
    throw new RangeError(`maxConnections must be an integer ≥ 1, got ${maxConnections}`);
  const maxPerAddress = o.maxConnectionsPerAddress as number;
  if (!Number.isInteger(maxPerAddress) || maxPerAddress < 1)
    throw new RangeError(`maxConnectionsPerAddress must be an integer ≥ 1, got ${maxPerAddress}`);
  let closing = false;
  /** Calls whose requests submitAll has counted (accepted, refused by code, or known already). */
  const counted = new WeakSet<FastifyRequest>();
  /** Long polls held now (holdPoll), in all and by connection. */
  let longPolls = 0;
  /** Certificate waiters the long polls hold now (at most maxCertificateWaiters). */
  let certWaiters = 0;
  const pollsOn = new WeakMap<Socket, Set<AbortController>>();

  const app = Fastify({
    // The handshake gets the headers' limit: Node's own (120 s) let a connection that never finished one,
    // or never began it, hold a connection slot (maxConnections, the address's share) past requestTimeoutMs,
    // which only starts once the handshake is done.
    ...(opts.tls
      ? {
          https: {
            key: opts.tls.key,
            cert: opts.tls.cert,
            handshakeTimeout: requestTimeoutOptions(o.requestTimeoutMs as number).http.headersTimeout,
          },
        }
      : {}),
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    // No per-request log lines (fastify 5.12's home for the option; the top-level one is deprecated).
    logController: new LogController({ disableRequestLogging: true }),
    // On close, drop idle keep-alive connections at once instead of waiting for their timeout.
    forceCloseConnections: 'idle',
    bodyLimit: o.bodyLimitBytes as number,
    ...requestTimeoutOptions(o.requestTimeoutMs as number),
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    ajv: { customOptions: { removeAdditional: false }, plugins: [safeIntegers] },
    // Bodies without type coercion, the rest with it (validatorsByPart).
    schemaController: { compilersFactory: { buildValidator: validatorsByPart() } },
    // Errors fastify raises before a route runs (a URL that does not decode, a parameter over the
    // limit): the API's own codes and body, like every other error.
    frameworkErrors: (e, req, reply) => {
      const err = toApiError(e, o.bodyLimitBytes as number);
      (reply as FastifyReply)
        .code(httpStatusOf(err.code))
        .type('application/json')
        .send(errorBodyFor(req.url, err));
    },
    // Errors before there is a request at all (HTTP that does not parse, headers over 16 KiB, a request
    // that timed out): answered on the socket, which is then closed.
    clientErrorHandler: (e, socket) => {
      if ((e as { code?: string }).code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      const err = clientErrorOf(e);
      answerClientError(socket as Socket, httpStatusOf(err.code), errorBody(err));
    },
  }) as unknown as FastifyInstance;
  refuseOversizedBodies(app, o.bodyLimitBytes as number);
  limitConnections(app, maxConnections, maxPerAddress, o.retryAfterSeconds as number, opts.tls !== undefined);
  if (opts.tls) answerPlainHttp(app);
  // Under HTTPS, every TCP connection open: Node's closeAllConnections (preClose below) knows only those past
  // their TLS handshake, and close() waited for one still in it until the handshake's timeout.
  const tcpSockets = new Set<Socket>();
  if (opts.tls)
    app.server.on('connection', (socket: Socket) => {
      tcpSockets.add(socket);
      socket.once('close', () => tcpSockets.delete(socket));
    });
  logAcceptErrors(app);
  answerNodeRefusals(app, (e, url) => errorBodyFor(url, e));
  // No route reads a compressed body: one in a coding other than identity is refused as such, rather than
  // parsed as it is (gzipped JSON was "not valid JSON"). Its bytes are read and dropped, as for any answer
  // given before the body (the size limits above still hold).
  app.addHook('preParsing', (req, _reply, payload, done) => {
    const coding = req.headers['content-encoding'];
    if (coding === undefined || coding.trim().toLowerCase() === 'identity') {
      done(null, payload);
      return;
    }
    done(
      apiError(
        'UNSUPPORTED_MEDIA_TYPE',
        `content-encoding "${cutUtf8(coding, 100)}" is not taken: send the body uncompressed`,
      ),
      payload,
    );
  });
  // `?wait` is coerced by ajv as JavaScript's Number() reads a string: `0x10` was 16, `0b1` 1, ` 5` 5 and
  // an empty `?wait=` 0. Only decimal digits are taken (an exponent included: `1e3` is 1000, as before).
  app.addHook('preValidation', (req, _reply, done) => {
    // Only where the route takes `wait` (elsewhere it is UNKNOWN_QUERY_PARAMETER, from the schema).
    const takes = (req.routeOptions.schema?.querystring as { properties?: object } | undefined)?.properties;
    const wait = takes && 'wait' in takes ? (req.query as Record<string, unknown>).wait : undefined;
    const bad = (Array.isArray(wait) ? wait : [wait]).find(
      (w) => typeof w === 'string' && !/^[0-9]+(\.[0-9]+)?([eE]\+?[0-9]+)?$/.test(w),
    );
    if (bad === undefined) done();
    else
      done(
        apiError(
          'BAD_REQUEST',
          `querystring/wait must be milliseconds in decimal digits, got ${JSON.stringify(cutUtf8(String(bad), 100))}`,
        ),
      );
  });
  // The methods each path takes: a method it does not take is 405 METHOD_NOT_ALLOWED (not found handler).
  const methodsOf = methodsByPath(app);
  // A route that declares no query parameters takes none: a misspelt `?wiat=` is an error, not ignored.
  app.addHook('onRoute', (route) => {
    const schema = (route.schema ??= {}) as { querystring?: unknown };
    schema.querystring ??= noQuery;
  });
  // JSON everywhere (fastify's parser); no text bodies; octet-stream only where a route takes it (below).
  app.removeContentTypeParser('text/plain');
  // Fastify's JSON parser refuses a `__proto__` key (or `constructor.prototype`) with the message of
  // malformed JSON; the same parser, with a message that names the key when the JSON itself is valid.
  const fastifyJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  const parseJson = (
    req: FastifyRequest,
    body: string | Buffer,
    done: (e: Error | null, v?: unknown) => void,
  ) => {
    // Refused before JSON.parse builds it (MAX_JSON_DEPTH).
    const shape = jsonShapeProblem(body as string, MAX_JSON_DEPTH, MAX_JSON_CONTAINERS);
    if (shape !== null) {
      done(apiError('MALFORMED_JSON', `the JSON body ${shape}, more than any valid request`), undefined);
      return;
    }
    fastifyJson(req, body as string, (e, value) => {
      if ((e as FastifyError | null)?.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
        let key: string | null = null;
        try {
          key = forbiddenKeyOf(JSON.parse(body as string));
        } catch {
          key = null; // not JSON: fastify's message stands
        }
        if (key !== null) {
          done(
            apiError(
              'MALFORMED_JSON',
              `the JSON body holds the key "${cutUtf8(key, 200)}", which is not allowed ` +
                '("__proto__" and "constructor.prototype" are refused anywhere in the body)',
            ),
            undefined,
          );
          return;
        }
      }
      done(e, value);
    });
  };
  app.addContentTypeParser('application/json', { parseAs: 'string' }, parseJson);

  app.setErrorHandler((e, req, reply) => {
    const err = toApiError(e, o.bodyLimitBytes as number);
    const status = httpStatusOf(err.code);
    // A call to a route that submits requests refused before its requests were counted (submitAll counts
    // each it sees): one refusal, by its code (a body over the limit, not JSON, failing the schema).
    if (req.method === 'POST' && SUBMIT_ROUTES.has(req.routeOptions.url ?? '') && !counted.has(req))
      metrics.requestRejected(err.code);
    if (err.code === 'INTERNAL') req.log.error({ code: 'INTERNAL', err: e }, 'internal error');
    if (err.code === 'OVERLOADED') reply.header('retry-after', String(o.retryAfterSeconds));
    return reply.code(status).type('application/json').send(errorBodyFor(req.url, err));
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0];
    const allow = methodsOf(req.url);
    if (allow.length > 0)
      return reply
        .code(httpStatusOf('METHOD_NOT_ALLOWED'))
        .header('allow', allow.join(', '))
        .send(
          errorBodyFor(req.url, {
            code: 'METHOD_NOT_ALLOWED',
            message: `${req.method} is not taken by ${path}; it takes ${allow.join(', ')}`,
          }),
        );
    return reply
      .code(httpStatusOf('NOT_FOUND'))
      .send(errorBodyFor(req.url, { code: 'NOT_FOUND', message: `no route ${req.method} ${path}` }));
  });
  // A callback, not an async function: fastify then makes no promise (and no microtask) per answer.
  app.addHook('onResponse', (req, reply, done) => {
    metrics.httpResponse(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode);
    done();
  });
  // A client that hung up before its answer runs no onResponse: counted apart (until 2026-12-07, nowhere).
  app.addHook('onRequestAbort', async (req) => {
    metrics.httpAborted(req.method, req.routeOptions.url ?? 'unmatched');
  });
  // HTTP/1.1 answers a connection's requests in order: an answer ready while the connection still owes
  // an earlier one (pipelining) is queued behind it, and once 16 KiB of answers are queued Node stops
  // reading the connection, so a client that then hangs up is not seen to go. The long polls it holds
  // end now instead (answered as when their wait is over: 404, 202 pending), so that answers flow and
  // their waiters are never left behind a closed connection.
  //
  // While the node stops, every answer closes its connection (`Connection: close`): close() drops the
  // connections idle when it begins and then waits for the others to end, and a connection whose request
  // was in flight then (a long poll the host ends on stop, say) turned idle and stayed open for the
  // client's keep-alive (72 s, fastify's hint), past a supervisor's 10 s before SIGKILL (the crash soak,
  // bench/soak.ts, 2026-12-06: 2 of its first 3 runs).
  app.addHook('onSend', (req, reply, payload, done) => {
    if (reply.raw.socket === null) {
      const held = pollsOn.get(req.raw.socket);
      if (held) for (const c of held) c.abort();
    }
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });
  app.addHook('preClose', async () => {
    closing = true;
    // close() drops the connections idle now and waits for the rest. A connection with no request on it
    // (a client's call cut off while it connected, a browser's preconnect) or half a request is not idle
    // to Node: close() waited for it until the headers' timeout (60 s), past a supervisor's 10 s before
    // SIGKILL (the crash soak, bench/soak.ts). What is still open after CLOSE_GRACE_MS is cut; answers in
    // flight have that long to go out (the host ends its long polls before the API closes, node/run.ts).
    // Under HTTPS that misses connections still in their handshake (tcpSockets: cut too).
    setTimeout(() => {
      app.server.closeAllConnections();
      for (const socket of tcpSockets) socket.destroy();
    }, CLOSE_GRACE_MS).unref();
  });

  const waitOf = (wait: number | undefined, dflt: number) => Math.min(wait ?? dflt, maxWaitMs);

  /**
   * A place for `req` as a long poll that waits for `waiters` distinct requests, under the caps
   * (maxLongPolls, maxLongPollsPerConnection, maxCertificateWaiters; over them OVERLOADED, thrown). Its signal aborts when the request's connection closes, which cancels its waits
   * in the host (a client that goes away, or that pipelined many long polls and hung up, holds nothing);
   * `release` gives the place back once the wait is over. The connection, not the request: Node's request
   * object closes once its body is read, and a pipelined request's response never closes when the
   * connection does. The signal also aborts when an answer is ready behind it on the connection (onSend).
   */
  const holdPoll = (
    req: FastifyRequest,
    requestId?: string,
    waiters = 1,
  ): { signal: AbortSignal; release: () => void } => {
    const socket = req.raw.socket;
    let mine = pollsOn.get(socket);
    if (longPolls >= (o.maxLongPolls as number))
      throw apiError(
        'OVERLOADED',
        `the node holds ${longPolls} long polls (limit ${o.maxLongPolls}); retry later, or ask without ?wait`,
        requestId,
      );
    if (mine && mine.size >= (o.maxLongPollsPerConnection as number))
      throw apiError(
        'OVERLOADED',
        `this connection holds ${mine.size} long polls (limit ${o.maxLongPollsPerConnection}); ` +
          'send fewer at a time, or use more connections',
        requestId,
      );
    // Counted before any wait begins (and before a POST submits): an upper bound, as a request refused by
    // its checks then holds no waiter.
    if (certWaiters + waiters > (o.maxCertificateWaiters as number))
      throw apiError(
        'OVERLOADED',
        `the node holds ${certWaiters} certificate waiters (limit ${o.maxCertificateWaiters}) and this call ` +
          `would add ${waiters}; retry later, or ask without ?wait`,
        requestId,
      );
    const ac = new AbortController();
    // One listener per request waited for (a POST waits for up to MAX_REQUESTS_PER_CALL).
    setMaxListeners(MAX_REQUESTS_PER_CALL + 1, ac.signal);
    if (socket.destroyed) {
      ac.abort();
      return { signal: ac.signal, release: () => {} };
    }
    if (!mine) {
      const polls = new Set<AbortController>();
      pollsOn.set(socket, polls);
      socket.once('close', () => {
        for (const c of polls) c.abort();
      });
      mine = polls;
    }
    const polls = mine;
    polls.add(ac);
    longPolls++;
    certWaiters += waiters;
    return {
      signal: ac.signal,
      release: () => {
        if (!polls.delete(ac)) return;
        longPolls--;
        certWaiters -= waiters;
      },
    };
  };

  const modelSpec = (): ModelSpec => host.currentBackend.spec; // MODEL_MISMATCH (503) when not loaded

  const readiness = (): { ready: boolean; reason: string; connected: number | null; needed: number } => {
    const needed = q - 1;
    if (closing) return { ready: false, reason: 'the node is shutting down', connected: null, needed };
    try {
      // A backend whose every model thread gave up starting (WORKER_START_FAILED) answers nothing: the node
      // votes empty answers until restarted, so it says it is not ready rather than take requests.
      const s = host.currentBackend.stats();
      if (s.failedWorkers !== undefined && s.failedWorkers > 0 && s.failedWorkers >= (s.sessionWorkers ?? 1))
        return {
          ready: false,
          reason: `the model's inference threads failed to start (WORKER_START_FAILED: ${s.workerFailure ?? 'unknown'}); restart the node once the model file is readable`,
          connected: null,
          needed,
        };
    } catch (e) {
      return { ready: false, reason: (e as Error).message, connected: null, needed };
    }
    if (!opts.peers) return { ready: true, reason: 'ready', connected: null, needed };
    const connected = opts.peers().filter(isConnected).length;
    if (connected < needed)
      return {
        ready: false,
        // q − 1: 2f at n = 3f + 1, more in a larger group (3 at n = 5), where this said "(2f)".
        reason: `${connected} peers connected; ${needed} needed to certify (a quorum of ${q} nodes with this one)`,
        connected,
        needed,
      };
    return { ready: true, reason: 'ready', connected, needed };
  };

  const overloaded = (incoming: number): string | null => {
    const pending = host.replica.pendingRequests;
    const maxPending = o.maxPending as number;
    if (pending + incoming > maxPending)
      return (
        `the node holds ${pending} requests and this call brings ${incoming} new ${incoming === 1 ? 'one' : 'ones'} ` +
        `(limit ${maxPending}); ${incoming > maxPending ? `send at most ${maxPending} at a time` : 'retry later'}`
      );
    // One POST into an empty queue always gets in (up to MAX_BATCH requests), whatever the rate.
    const rate = host.executedPerSecond();
    const byRate = Math.max(o.minPending as number, Math.round(rate * (o.maxQueueSeconds as number)));
    if (pending > 0 && pending + incoming > byRate)
      return `the node holds ${pending} requests, over ${o.maxQueueSeconds} s of work at the group's recent rate (${rate.toFixed(0)}/s); retry later`;
    let queued = 0;
    try {
      const s = host.currentBackend.stats();
      queued = (s.queued ?? 0) + (s.preprocessing ?? 0);
    } catch {
      return null; // no model: the input check says so
    }
    if (queued > (o.maxInferenceQueue as number))
      return `the model has ${queued} inputs waiting (limit ${o.maxInferenceQueue}); retry later`;
    return null;
  };

  /** The cheapest fee a certificate can cost: the q lowest node fees. */
  const minFee = (): number =>
    [...host.db.state.fees]
      .sort((a, b) => a - b)
      .slice(0, q)
      .reduce((a, b) => a + b, 0);

  /** Checks this node applies before the replica sees a request. Throws the API error. */
  const precheck = async (sr: SignedRequest, id: string): Promise<void> => {
    const r = sr.request;
    if (!equalBytes(r.groupId, groupId))
      throw apiError('REQUEST_WRONG_GROUP', 'request is for another group', id);
    if (sr.input.length > genesis.params.maxInputBytes)
      throw apiError(
        'REQUEST_INPUT_TOO_LARGE',
        `input of ${sr.input.length} bytes is over the group's limit of ${genesis.params.maxInputBytes}`,
        id,
      );
    try {
      await checkInput(sr.input, modelSpec());
    } catch (e) {
      if (e instanceof DropbearError) throw apiError(e.code, e.message, id);
      throw e;
    }
    const least = minFee();
    if (r.maxFee < least)
      throw apiError(
        'MAX_FEE_TOO_LOW',
        `maxFee ${r.maxFee} is below the cheapest certificate (${least})`,
        id,
      );
    const balance = host.db.state.balanceOf(r.client);
    if (balance < r.maxFee)
      throw apiError(
        'INSUFFICIENT_FUNDS',
        `balance ${balance} is below the request's maxFee ${r.maxFee}`,
        id,
      );
  };

  /**
   * Submits requests in order and waits up to `waitMs` for their certificates. A request already certified
   * here answers with its certificate without being submitted again.
   */
  const submitAll = async (
    req: FastifyRequest,
    srs: (SignedRequest | ApiError)[],
    waitMs: number,
    sentToAll = false,
  ): Promise<ItemOutcome[]> => {
    counted.add(req);
    const out: (ItemOutcome | null)[] = srs.map(() => null);
    const ids: (string | null)[] = srs.map((sr) => ('code' in sr ? null : hex(requestIdOf(sr))));
    const todo: number[] = [];
    srs.forEach((sr, i) => {
      if ('code' in sr) {
        metrics.requestRejected(sr.code);
        out[i] = { error: sr };
        return;
      }
      const id = ids[i]!;
      const have = host.certificate(id);
      if (have) out[i] = { requestId: id, certificate: have };
      else todo.push(i);
    });
    // Only requests new to this node add to its backlog: one it holds already (a client asking a second
    // node, or hedging) only waits for its certificate, and is let in however busy the node is.
    const held = new Set(todo.filter((i) => host.replica.holdsRequest(ids[i]!)));
    const incoming = todo.length - held.size;
    if (incoming > 0) {
      const why = overloaded(incoming);
      if (why) {
        for (const _ of todo) metrics.requestRejected('OVERLOADED');
        throw apiError('OVERLOADED', why, todo.length === 1 ? ids[todo[0]]! : undefined);
      }
    }
    // A call that will wait takes its place as a long poll before anything is submitted: over the caps it
    // is turned away whole, like admission above.
    let poll: ReturnType<typeof holdPoll> | null = null;
    if (waitMs > 0 && todo.length > 0) {
      try {
        // One waiter per distinct request (copies share one, below).
        const distinct = new Set(todo.map((i) => ids[i]!)).size;
        poll = holdPoll(req, todo.length === 1 ? ids[todo[0]]! : undefined, distinct);
      } catch (e) {
        for (const _ of todo) metrics.requestRejected('OVERLOADED');
        throw e;
      }
    }
    try {
      const checked = await Promise.all(
        todo.map(async (i) => {
          // A request held here passed these checks when it was accepted. Its id hashes the request, which
          // names the input's digest but not the signature: a copy with another input or signature gets the
          // accepted one's answer, whose certificate names the accepted input (the client checks that).
          if (held.has(i)) return null;
          try {
            await precheck(srs[i] as SignedRequest, ids[i]!);
            return null;
          } catch (e) {
            // Not a refusal but a bug: the whole call fails (500 INTERNAL), logged with this error by the
            // error handler. As one item's INTERNAL it went unlogged.
            if (!(e instanceof DropbearError)) throw e;
            const err = toApiError(e, o.bodyLimitBytes as number);
            metrics.requestRejected(err.code);
            return err;
          }
        }),
      );
      const waits: Promise<void>[] = [];
      // One wait per request, however many copies of it the call holds: a held request is let in however
      // busy the node is, and 1024 copies of one signed request in a POST held 1024 waiters and timers
      // (~1.9 KiB each) for each of up to maxLongPolls long polls.
      const waitFor = new Map<string, Promise<Certificate | null>>();
      todo.forEach((i, k) => {
        const id = ids[i]!;
        const bad = checked[k];
        if (bad) {
          out[i] = { requestId: id, error: bad };
          return;
        }
        const res = host.submit(srs[i] as SignedRequest, { sentToAll });
        // Submitting is idempotent: a request this node already holds (a peer forwarded it first, or the
        // client sent it twice) or already executed is answered like a fresh one, with its certificate.
        const known =
          !res.ok && (res.code === 'REQUEST_DUPLICATE' || res.code === 'REQUEST_ALREADY_EXECUTED');
        if (!res.ok && !known) {
          out[i] = { requestId: id, error: { code: res.code, message: res.message, requestId: id } };
          return;
        }
        out[i] = { requestId: id, pending: true };
        let wait = waitFor.get(id);
        if (!wait) {
          wait = host.waitCertificate(id, waitMs, poll?.signal);
          waitFor.set(id, wait);
        }
        waits.push(
          wait.then((c) => {
            if (c) out[i] = { requestId: id, certificate: c };
          }),
        );
      });
      await Promise.all(waits);
    } finally {
      poll?.release();
    }
    return out as ItemOutcome[];
  };

  const parseSigned = (json: unknown, index?: number): SignedRequest | ApiError => {
    try {
      return fromJson(SignedRequest, json);
    } catch (e) {
      const where = index === undefined ? 'request' : `requests[${index}]`;
      return { code: 'REQUEST_MALFORMED', message: `${where}: ${(e as Error).message}` };
    }
  };

  const itemJson = (r: ItemOutcome) => {
    if ('certificate' in r)
      return { requestId: r.requestId, certificate: toJson(CertificateCodec, r.certificate) };
    if ('pending' in r) return { requestId: r.requestId, status: 'pending' };
    const error = sentError(r.error);
    return r.requestId ? { requestId: r.requestId, error } : { error };
  };

  const itemBinary = (r: ItemOutcome): RequestAnswer => {
    if ('certificate' in r) return { kind: 'certificate', certificate: r.certificate };
    if ('pending' in r) return { kind: 'pending', requestId: Buffer.from(r.requestId, 'hex') };
    return {
      kind: 'error',
      requestId: r.requestId ? Buffer.from(r.requestId, 'hex') : null,
      code: r.error.code,
      message: cutUtf8(r.error.message, LIMITS.message),
    };
  };

  /** Answers with `results` as RequestAnswers (a view of the encoding, not a copy). */
  const sendAnswers = (reply: FastifyReply, results: ItemOutcome[]) => {
    const bytes = encode(RequestAnswers, results.map(itemBinary));
    return reply.type(REQUEST_ANSWERS_TYPE).send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
  };

  // ------------------------------------------------------------ v1

  app.register(async (v1) => {
    v1.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) =>
      done(null, body),
    );
    v1.addContentTypeParser(REQUEST_LIST_TYPE, { parseAs: 'buffer' }, (_req, body, done) =>
      done(null, new BinaryList(body as Buffer)),
    );
    v1.post<{
      Body: { request?: unknown; requests?: unknown[] } | Buffer | BinaryList;
      Querystring: { wait?: number; sentTo?: 'all' };
    }>('/v1/requests', { schema: { body: requestsBody, querystring: submitQuery } }, async (req, reply) => {
      const waitMs = waitOf(req.query.wait, o.defaultWaitMs as number);
      const sentToAll = req.query.sentTo === 'all';
      const body = req.body;
      if (body === undefined || body === null)
        throw apiError('BAD_REQUEST', 'the request has no body: send {request} or {requests} as JSON');
      let list: (SignedRequest | ApiError)[];
      let single: boolean;
      if (body instanceof BinaryList) {
        try {
          list = decode(RequestList, body.bytes);
        } catch (e) {
          throw apiError('REQUEST_MALFORMED', `body (${REQUEST_LIST_TYPE}): ${(e as Error).message}`);
        }
        if (list.length === 0) throw apiError('BAD_REQUEST', 'the request list is empty');
        const results = await submitAll(req, list, waitMs, sentToAll);
        if (results.some((r) => 'pending' in r)) reply.code(202);
        return sendAnswers(reply, results);
      }
      if (Buffer.isBuffer(body)) {
        single = true;
        try {
          list = [decode(SignedRequest, body)];
        } catch (e) {
          list = [{ code: 'REQUEST_MALFORMED', message: `body: ${(e as Error).message}` }];
        }
      } else if (body.requests) {
        single = false;
        list = body.requests.map((j, i) => parseSigned(j, i));
      } else {
        single = true;
        list = [parseSigned(body.request)];
      }
      const results = await submitAll(req, list, waitMs, sentToAll);
      if (single) {
        const r = results[0];
        if ('error' in r) throw apiError(r.error.code, r.error.message, r.requestId);
        if ('pending' in r) reply.code(202).header('location', `/v1/certificates/${r.requestId}`);
        // A client that accepts binary answers gets its one answer as RequestAnswers (errors stay JSON).
        if (req.headers.accept?.includes(REQUEST_ANSWERS_TYPE)) return sendAnswers(reply, [r]);
        return itemJson(r);
      }
      if (results.some((r) => 'pending' in r)) reply.code(202);
      return { results: results.map(itemJson) };
    });
  });

  app.get<{ Params: { requestId: string }; Querystring: { wait?: number } }>(
    '/v1/certificates/:requestId',
    { schema: { params: certificateParams, querystring: waitQuery } },
    async (req) => {
      const id = req.params.requestId.toLowerCase();
      const waitMs = waitOf(req.query.wait, 0);
      let cert = host.certificate(id);
      if (!cert && waitMs > 0) {
        const poll = holdPoll(req, id);
        try {
          cert = await host.waitCertificate(id, waitMs, poll.signal);
        } finally {
          poll.release();
        }
      }
      if (!cert)
        throw apiError(
          'CERTIFICATE_NOT_FOUND',
          `no certificate for request ${id} at this node (not executed here, not yet certified, or older than the latest ${host.db.certificateIndexRequests} requests whose certificates it serves)`,
          id,
        );
      return { requestId: id, certificate: toJson(CertificateCodec, cert) };
    },
  );

  app.get('/v1/group', { schema: { querystring: noQuery } }, async () => {
    const s = host.status();
    return {
      name: genesis.name,
      groupId: hex(groupId),
      genesis: toJson(Genesis, genesis),
      f: genesis.f,
      models: s.models.map((digest, node) => ({
        node,
        /** The name in the genesis (a later model update changes the digest, not this name). */
        genesisModelName: genesis.nodes[node].modelName,
        digest,
        version: s.modelVersions[node],
      })),
      /** Each node's per-request fee now and its fee version (0: the genesis fee; since 2026-12-07). */
      fees: s.fees.map((fee, node) => ({ node, fee, version: s.feeVersions[node] })),
      view: s.view,
      primary: s.primary,
    };
  });

  // A signed transaction (an owner's ModelUpdate or FeeChange, the treasury's Deposit): spread to every node
  // and ordered like a request.
  app.post<{ Body: { tx?: unknown } }>(
    '/v1/txs',
    // Nothing beside `tx` (as POST /v1/requests refuses an unknown field): one was ignored until 2026-12-06.
    {
      schema: {
        body: { type: 'object', required: ['tx'], properties: { tx: {} }, additionalProperties: false },
      },
    },
    async (req, reply) => {
      let tx: TxCodec;
      try {
        tx = fromJson(TxCodec, req.body.tx);
      } catch (e) {
        throw apiError('TX_MALFORMED', `tx: ${(e as Error).message}`);
      }
      const r = host.submitTx(tx);
      if (!r.ok) throw apiError(r.code, r.message);
      reply.code(202);
      return { txId: hex(r.txId), status: 'pending' };
    },
  );

  app.get<{ Params: { txId: string } }>(
    '/v1/txs/:txId',
    { schema: { params: txParams, querystring: noQuery } },
    async (req) => {
      const id = req.params.txId.toLowerCase();
      const s = host.txStatus(id);
      if (!s)
        throw apiError(
          'TX_NOT_FOUND',
          `transaction ${id} is neither waiting here nor carried by a batch this node executed`,
        );
      // What the transaction is (its kind and fields, codec JSON), so that whoever acts on its fate (the
      // treasury paying a withdrawal) learns from the group what was ordered, and checks it: its id is the
      // hash of these bytes. Absent for one superseded (not kept).
      const tx = host.txOf(id, s.status === 'pending' ? undefined : s.seq);
      return { txId: id, ...s, ...(tx ? { tx: toJson(TxCodec, tx) } : {}) };
    },
  );

  app.get<{ Params: { client: string } }>(
    '/v1/accounts/:client',
    { schema: { params: accountParams, querystring: noQuery } },
    async (req) => {
      const client = new Uint8Array(Buffer.from(req.params.client, 'base64url'));
      const state = host.db.state;
      const balance = state.balanceOf(client);
      // This node's refunds and transfers of the client waiting to be ordered (they share its serials); what a
      // new one may take counts the largest of each serial (only one of a serial applies), as
      // Replica.checkTx does.
      // Transfers to the key this node holds waiting (`incomingTransfers`): what the payee may expect, not yet
      // its balance (a payee saw only "no account" while a transfer to it waited, 2026-12-07).
      const pendingRefunds: { serial: number; amount: number }[] = [];
      const pendingTransfers: { serial: number; amount: number; to: string }[] = [];
      const incomingTransfers: { from: string; serial: number; amount: number }[] = [];
      for (const tx of host.replica.pendingTxs) {
        if (tx.kind === 'refund' && equalBytes(tx.refund.client, client))
          pendingRefunds.push({ serial: tx.refund.serial, amount: tx.refund.amount });
        if (tx.kind !== 'transfer') continue;
        const t = tx.transfer;
        if (equalBytes(t.client, client))
          pendingTransfers.push({ serial: t.serial, amount: t.amount, to: toB64u(t.to) });
        if (equalBytes(t.to, client))
          incomingTransfers.push({ from: toB64u(t.client), serial: t.serial, amount: t.amount });
      }
      const waiting = host.replica.spendsWaitingFor(client);
      const heldFees = host.replica.feesHeldFor(client);
      return {
        client: req.params.client,
        balance,
        /** Whether the ledger holds an account for the key (the genesis listed it, or a deposit or a transfer made it). */
        exists: state.balances.has(hex(client)),
        /** The last batch executed here: the balance is as of it. */
        seq: state.seq,
        /** The treasury's deposits applied as of it (the last serial). */
        deposits: state.deposits,
        /**
         * The client's refunds and transfers applied as of it (the last serial of the one sequence they
         * share; its next refund or transfer is this + 1).
         */
        refunds: state.refundSerialOf(client),
        /** The client's refunds this node holds, submitted and not yet ordered. */
        pendingRefunds,
        /** The client's transfers this node holds, submitted and not yet ordered (`to`: base64url key). */
        pendingTransfers,
        /**
         * Transfers to this key that this node holds waiting to be ordered (`from`: the payer, base64url):
         * not part of the balance until ordered and applied (the payer's balance then may not cover them).
         */
        incomingTransfers,
        /** The maxFee of the client's requests waiting here to be ordered: what they may still be charged. */
        heldFees,
        /**
         * What a refund or transfer submitted to this node now may take (the balance less the maxFee held
         * and the refunds and transfers waiting).
         */
        refundable: Math.max(0, balance - heldFees - waiting),
      };
    },
  );

  // What each owner's node charges and has earned, as of the last batch executed here (the ledger's own
  // figures: they are in the state digest every checkpoint signs).
  app.get('/v1/owners', { schema: { querystring: noQuery } }, async () => {
    const state = host.db.state;
    return {
      seq: state.seq,
      /** The treasury's deposits applied and the money they added to the genesis balances. */
      deposits: state.deposits,
      minted: state.minted,
      /** The money withdrawals took out, all owners together. */
      paidOut: state.paidOut(),
      /** The money refunds paid back to clients, all together. */
      refunded: state.refunded,
      owners: genesis.nodes.map((n, node) => ({
        node,
        owner: n.owner,
        fee: state.fees[node],
        feeVersion: state.feeVersions[node],
        /** Votes of this node counted in certificates, those that agreed with the decision, fees earned. */
        ...state.stats[node],
        /** Money withdrawn in all, the last withdrawal's serial, and what the owner may still withdraw. */
        withdrawn: state.withdrawn[node],
        withdrawals: state.withdrawals[node],
        payable: state.payable(node),
      })),
    };
  });

  app.get('/v1/status', { schema: { querystring: noQuery } }, async () => {
    let backend: Record<string, unknown> | null = null;
    try {
      const b = host.currentBackend;
      backend = { model: b.spec.name, digest: b.digest, stats: b.stats() };
    } catch {
      backend = null;
    }
    return {
      ...host.status(),
      waitingForCertificates: host.waiting,
      /** HTTP requests waiting for certificates now (api_limits.maxLongPolls). */
      longPolls,
      peers: opts.peers?.() ?? null,
      backend,
    };
  });

  const dashboard = opts.dashboard;
  if (dashboard) {
    // Everything the page loads comes from this node; no inline script, no framing by another origin, no
    // <base> or form target elsewhere; no type sniffing, no referrer (the page's URL may carry a group id).
    // The page verifies certificates in a worker running its own script (web/verifier.ts): from this node
    // too, not from a blob or data URL (script-src would allow it anyway; worker-src says so).
    const csp =
      "default-src 'none'; script-src 'self'; worker-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
    const pageHeaders = {
      'content-security-policy': csp,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    };
    // `?group=` pins the page to a group id; any other parameter is refused like on every route (until
    // 2026-12-06 every one was taken, so a misspelt "?grop=" opened a page pinned to no group, silently).
    const dashboardQuery = {
      type: 'object',
      properties: { group: { type: 'string' } },
      additionalProperties: false,
    };
    app.get('/dashboard', { schema: { querystring: dashboardQuery } }, async (_req, reply) => {
      reply.headers(pageHeaders).type('text/html; charset=utf-8');
      return dashboard.html;
    });
    app.get('/dashboard/app.js', { schema: { querystring: noQuery } }, async (_req, reply) => {
      let js: string;
      try {
        js = await dashboard.script();
      } catch (e) {
        throw apiError(
          'DASHBOARD_UNAVAILABLE',
          `the dashboard script did not build: ${(e as Error).message}`,
        );
      }
      reply.headers(pageHeaders).type('text/javascript; charset=utf-8');
      return js;
    });
  }

  app.get(
    '/healthz',
    {
      schema: {
        querystring: noQuery,
        response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } } },
      },
    },
    async () => ({ ok: true }),
  );

  app.get('/readyz', { schema: { querystring: noQuery } }, async () => {
    const r = readiness();
    if (!r.ready) throw apiError('NOT_READY', r.reason);
    return { ready: true, peersConnected: r.connected, peersNeeded: r.needed };
  });

  app.get('/metrics', { schema: { querystring: noQuery } }, async (_req, reply) => {
    const text = await metrics.text();
    return reply.type(metrics.contentType).send(text);
  });

  // ------------------------------------------------------------ Open Inference Protocol v2

  // Every model route also answers under /versions/{v} (the protocol's versioned routes, which a client
  // given a model version calls); the group's service has the one version MODEL_VERSION, whatever model
  // each node runs behind it, as serve-model's model has.
  const checkGroup = async (req: FastifyRequest) => {
    const { group: g, version: v } = req.params as { group?: string; version?: string };
    if (g !== groupName)
      throw apiError('MODEL_NOT_FOUND', `unknown model ${g}; this node serves ${groupName}`);
    if (v !== undefined && v !== MODEL_VERSION)
      throw apiError(
        'MODEL_NOT_FOUND',
        `model ${groupName} has no version ${cutUtf8(v, 100)}; its one version is ${MODEL_VERSION}`,
      );
  };

  app.get(
    '/v2/health/live',
    { schema: { response: { 200: { type: 'object', properties: { live: { type: 'boolean' } } } } } },
    async () => ({ live: true }),
  );
  app.get(
    '/v2/health/ready',
    { schema: { response: { 200: { type: 'object', properties: { ready: { type: 'boolean' } } } } } },
    async () => {
      const r = readiness();
      if (!r.ready) throw apiError('NOT_READY', r.reason);
      return { ready: true };
    },
  );
  app.get(
    '/v2',
    {
      schema: {
        response: {
          200: {
            type: 'object',
            properties: {
              name: { type: 'string' },
              version: { type: 'string' },
              extensions: { type: 'array', items: { type: 'string' } },
            },
          },
        },
      },
    },
    async () => ({
      name: 'dropbear',
      version,
      extensions: [
        'dropbear_certificate',
        'dropbear_client_signed',
        ...(custodial ? ['dropbear_custodial'] : []),
      ],
    }),
  );
  const metadataRoute = {
    schema: {
      params: groupParams,
      response: {
        200: {
          type: 'object',
          properties: {
            name: { type: 'string' },
            versions: { type: 'array', items: { type: 'string' } },
            platform: { type: 'string' },
            inputs: { type: 'array', items: tensorMeta },
            outputs: { type: 'array', items: tensorMeta },
          },
        },
      },
    },
    onRequest: checkGroup,
  };
  const metadata = async () => ({
    name: groupName,
    versions: [MODEL_VERSION],
    platform: 'dropbear',
    inputs: [{ name: 'image', datatype: 'BYTES', shape: [1] }],
    outputs: [
      { name: 'label', datatype: 'INT64', shape: [1] },
      { name: 'top5_labels', datatype: 'INT64', shape: [5] },
      { name: 'top5_scores', datatype: 'FP32', shape: [5] },
    ],
  });
  app.get('/v2/models/:group', metadataRoute, metadata);
  app.get('/v2/models/:group/versions/:version', metadataRoute, metadata);
  const modelReady = async () => {
    const r = readiness();
    if (!r.ready) throw apiError('NOT_READY', r.reason);
    return { name: groupName, ready: true };
  };
  const readyRoute = { schema: { params: groupParams }, onRequest: checkGroup };
  app.get('/v2/models/:group/ready', readyRoute, modelReady);
  app.get('/v2/models/:group/versions/:version/ready', readyRoute, modelReady);

  /** An infer request's bytes after its JSON (binary tensor data; empty without). */
  const binaryOf = new WeakMap<FastifyRequest, Uint8Array>();

  /** The request's image bytes from its one input, in base64 in `data` or as binary tensor data. */
  const imageOf = (body: InferBody, binary: Uint8Array): Uint8Array => {
    if (body.inputs.length !== 1)
      throw apiError('INFER_BAD_INPUT', `expected one input ("image"), got ${body.inputs.length}`);
    const input = body.inputs[0];
    if (input.name !== 'image')
      throw apiError('INFER_BAD_INPUT', `unknown input ${JSON.stringify(input.name)}; the input is "image"`);
    if (input.datatype !== 'BYTES')
      throw apiError(
        'INFER_BAD_DATATYPE',
        `input "image" has datatype ${input.datatype}; it is BYTES (an encoded image or DBT1 tensor)`,
      );
    if (input.shape.length !== 1 || input.shape[0] !== 1)
      throw apiError('INFER_BAD_SHAPE', `input "image" has shape [${input.shape.join(', ')}]; it is [1]`);
    const size = input.parameters?.binary_data_size;
    if (size !== undefined) return binaryImage(input, size, binary);
    if (binary.length > 0)
      throw apiError(
        'INFER_BAD_INPUT',
        `the body carries ${binary.length} bytes of binary data that no input claims (binary_data_size)`,
      );
    const data = input.data;
    const flat = Array.isArray(data) && data.length === 1 && Array.isArray(data[0]) ? data[0] : data;
    if (!Array.isArray(flat) || flat.length !== 1 || typeof flat[0] !== 'string')
      throw apiError('INFER_BAD_INPUT', 'input "image" holds its bytes as one base64 string in "data"');
    const s = flat[0] as string;
    if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(s) || !isWholeBase64(s))
      throw apiError('INFER_BAD_INPUT', 'input "image" is not base64');
    return new Uint8Array(Buffer.from(s, 'base64'));
  };

  /**
   * The image of an input sent as binary tensor data: `size` bytes, all the binary data there is, holding
   * the one BYTES element as its 4-byte little-endian length and its bytes.
   */
  const binaryImage = (input: InferInput, size: unknown, binary: Uint8Array): Uint8Array => {
    if (!Number.isSafeInteger(size) || (size as number) < 0)
      throw apiError('INFER_BAD_INPUT', 'input "image": binary_data_size must be a non-negative integer');
    if (input.data !== undefined)
      throw apiError('INFER_BAD_INPUT', 'input "image" has both "data" and binary_data_size');
    if (size !== binary.length)
      throw apiError(
        'INFER_BAD_INPUT',
        `input "image" claims ${size} bytes of binary data; the body carries ${binary.length} after its JSON`,
      );
    const len = binary.length >= 4 ? Buffer.from(binary.buffer, binary.byteOffset, 4).readUInt32LE(0) : -1;
    if (len !== binary.length - 4)
      throw apiError(
        'INFER_BAD_INPUT',
        `input "image" in binary is one BYTES element, a 4-byte little-endian length (${len}) and that ` +
          `many bytes; its ${binary.length} bytes do not add up`,
      );
    return binary.subarray(4);
  };

  /** The SignedRequest for an infer call: the client's own signature, or the node's for a custodial account. */
  const inferRequest = (body: InferBody, rawHeaders: string[], input: Uint8Array): SignedRequest => {
    const p = body.parameters ?? {};
    // The client's other parameters pass (OIP allows any), but one named dropbear_ that is none of these is
    // a misspelling: a custodial "dropbear_min_agre" was signed under the default policy until 2026-12-06.
    const unknown = Object.keys(p).find((k) => k.startsWith('dropbear_') && !DROPBEAR_PARAMS.has(k));
    if (unknown !== undefined)
      throw apiError(
        'INFER_BAD_PARAMETERS',
        `unknown parameter ${JSON.stringify(cutUtf8(unknown, 100))}; Dropbear's are ${[...DROPBEAR_PARAMS].join(', ')}`,
      );
    const given = SIGNING_PARAMS.filter((k) => p[k] !== undefined);
    const policy: Policy | null =
      p.dropbear_min_agree !== undefined ? { kind: 'top1', minAgree: p.dropbear_min_agree } : null;
    const inputDigest = sha256(input);
    if (given.length > 0) {
      const missing = SIGNING_PARAMS.filter((k) => p[k] === undefined);
      if (missing.length > 0)
        throw apiError('INFER_BAD_PARAMETERS', `a client-signed request also needs ${missing.join(', ')}`);
      let client: Uint8Array;
      let signature: Uint8Array;
      try {
        client = fromJson(PublicKey, p.dropbear_client);
        signature = fromJson(Signature, p.dropbear_signature);
      } catch (e) {
        throw apiError(
          'INFER_BAD_PARAMETERS',
          `dropbear_client / dropbear_signature: ${(e as Error).message}`,
        );
      }
      const request: Request = {
        groupId,
        client,
        nonce: p.dropbear_nonce!,
        timestamp: p.dropbear_timestamp!,
        inputDigest,
        policy,
        maxFee: p.dropbear_max_fee!,
      };
      return signedRequestOf(request, signature, input);
    }
    // Node keeps the first Authorization header of several and drops the others without a word, where a
    // proxy in front may act on the last: until 2026-12-06 such a call was signed for the first key.
    const authorizations: string[] = [];
    for (let i = 0; i + 1 < rawHeaders.length; i += 2)
      if (rawHeaders[i].toLowerCase() === 'authorization') authorizations.push(rawHeaders[i + 1]);
    if (authorizations.length > 1)
      throw apiError('BAD_REQUEST', `the call has ${authorizations.length} Authorization headers; send one`);
    const authorization = authorizations[0];
    const m = authorization ? /^Bearer\s+(\S+)\s*$/i.exec(authorization) : null;
    if (!m)
      throw apiError(
        'UNAUTHORIZED',
        custodial
          ? 'sign the request (parameters dropbear_*) or send Authorization: Bearer <API key>'
          : 'sign the request (parameters dropbear_client, _nonce, _timestamp, _max_fee, _signature)',
      );
    if (!custodial) throw apiError('UNAUTHORIZED', 'this node holds no custodial accounts; sign the request');
    const account = accounts.get(apiKeySha256Of(m[1]));
    if (!account) throw apiError('UNAUTHORIZED', 'unknown API key');
    const request: Request = {
      groupId,
      client: account.key.publicKey,
      nonce: randomNonce(),
      timestamp: Date.now(),
      inputDigest,
      policy,
      maxFee: account.maxFee,
    };
    return signRequest(request, input, account.key);
  };

  const inferRoute = { schema: { params: groupParams, body: inferBody }, onRequest: checkGroup };
  const infer = async (req: FastifyRequest<InferCall>) => {
    const body = req.body;
    if (!body || typeof body !== 'object' || !Array.isArray(body.inputs))
      throw apiError('BAD_REQUEST', 'the request has no JSON body with "inputs"');
    // The KServe client names the URL's model in the body too; one that names another is refused, not run.
    if (body.model_name !== undefined && body.model_name !== groupName)
      throw apiError(
        'MODEL_NOT_FOUND',
        `the body's model_name ${JSON.stringify(cutUtf8(body.model_name, 100))} is not the URL's model ${groupName}`,
      );
    // None named (no list, or an empty one, as Triton and serve-model read it): all of them. Until
    // 2026-12-06 an empty list was answered with no outputs, and a name given twice came back twice.
    const wanted = body.outputs?.length ? body.outputs.map((x) => x.name) : [...OUTPUTS];
    for (const [i, w] of wanted.entries()) {
      if (!(OUTPUTS as readonly string[]).includes(w))
        throw apiError(
          'INFER_BAD_OUTPUT',
          `unknown output ${JSON.stringify(w)}; outputs are ${OUTPUTS.join(', ')}`,
        );
      if (wanted.indexOf(w) !== i)
        throw apiError('INFER_BAD_OUTPUT', `output ${JSON.stringify(w)} is named twice`);
      // Triton's classification extension (tritonclient's class_count) answers BYTES "score:index"
      // strings, which these outputs are not: ignored until 2026-12-07, and the output came back as it is.
      if (body.outputs?.[i]?.parameters?.classification !== undefined)
        throw apiError(
          'INFER_BAD_OUTPUT',
          `output ${JSON.stringify(w)}: "classification" (Triton's classification extension) is not served ` +
            'here; label and top5_labels are the classes',
        );
    }
    const input = imageOf(body, binaryOf.get(req) ?? new Uint8Array(0));
    const sr = inferRequest(body, req.raw.rawHeaders, input);
    const [r] = await submitAll(req, [sr], maxWaitMs);
    if ('error' in r) throw apiError(r.error.code, r.error.message, r.requestId);
    if ('pending' in r)
      throw apiError(
        'TIMEOUT',
        `no certificate for request ${r.requestId} within ${maxWaitMs} ms; fetch it later from ` +
          `GET /v1/certificates/${r.requestId}`,
        r.requestId,
      );
    const cert = r.certificate;
    const decision = cert.outcome.decision;
    const label = decision.kind === 'label' ? decision.label : -1;
    const vote = voteToShow(cert.outcome.votes, host.id);
    const top = vote?.result.kind === 'class' ? vote.result.top.slice(0, 5) : [];
    const labels = [...top.map((t) => t.label), ...Array(5 - top.length).fill(-1)];
    const scores = [...top.map((t) => t.score / 1e6), ...Array(5 - top.length).fill(0)];
    const all = {
      label: { name: 'label', datatype: 'INT64', shape: [1], data: [label] },
      top5_labels: { name: 'top5_labels', datatype: 'INT64', shape: [5], data: labels },
      top5_scores: { name: 'top5_scores', datatype: 'FP32', shape: [5], data: scores },
    };
    let spec: ModelSpec | null = null;
    try {
      spec = modelSpec();
    } catch {
      spec = null;
    }
    return {
      model_name: groupName,
      model_version: MODEL_VERSION,
      // OIP: an id the request gives comes back as the response's; without one, the request id.
      id: body.id ?? r.requestId,
      outputs: wanted.map((w) => all[w as (typeof OUTPUTS)[number]]),
      parameters: {
        request_id: r.requestId,
        certificate: toJson(CertificateCodec, cert),
        decision: toJson(Decision, decision),
        ...(label >= 0 && spec ? { label_name: labelName(spec.labels, label) } : {}),
        ...(vote ? { vote_node: vote.node } : {}),
      },
    };
  };
  type InferCall = { Params: { group: string }; Body: InferBody };
  // The infer body as OIP clients send it: JSON, or (the binary tensor data extension) JSON followed by
  // tensor bytes, the JSON's length in Inference-Header-Content-Length. tritonclient sends either with no
  // Content-Type at all (it was 415), and the bytes after JSON typed application/json or octet-stream.
  app.register(async (v2) => {
    v2.removeAllContentTypeParsers();
    v2.addContentTypeParser('*', { parseAs: 'buffer' }, (req, body, done) => {
      const type = req.headers['content-type']?.split(';')[0].trim().toLowerCase();
      const header = req.headers[INFER_HEADER_LENGTH];
      if (
        (type !== undefined && type !== 'application/json' && type !== 'application/octet-stream') ||
        (type === 'application/octet-stream' && header === undefined)
      ) {
        done(
          apiError(
            'UNSUPPORTED_MEDIA_TYPE',
            `content type ${JSON.stringify(cutUtf8(type ?? '', 100))} is not taken here: send JSON, or JSON ` +
              `followed by binary tensor data with its length in ${INFER_HEADER_LENGTH}`,
          ),
          undefined,
        );
        return;
      }
      let parts: { json: Uint8Array; binary: Uint8Array };
      try {
        parts = splitBody(body as Buffer, header, 'INFER_BAD_INPUT');
      } catch (e) {
        done(e as Error, undefined);
        return;
      }
      binaryOf.set(req, parts.binary);
      const json = parts.json;
      parseJson(req, Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8'), done);
    });
    v2.post<InferCall>('/v2/models/:group/infer', inferRoute, infer);
    v2.post<InferCall>('/v2/models/:group/versions/:version/infer', inferRoute, infer);
  });

  return app;
}

/** The vote whose top-5 an infer answer shows: this node's, else one for the most common top-1 label. */
function voteToShow(votes: CountedVote[], self: number): CountedVote | undefined {
  const own = votes.find((v) => v.node === self);
  if (own) return own;
  const top1 = (v: CountedVote) =>
    v.result.kind === 'class' && v.result.top.length > 0 ? v.result.top[0].label : -1;
  const counts = new Map<number, number>();
  for (const v of votes) counts.set(top1(v), (counts.get(top1(v)) ?? 0) + 1);
  let best = -1;
  let bestCount = 0;
  for (const [label, c] of counts) if (label >= 0 && c > bestCount) [best, bestCount] = [label, c];
  return votes.find((v) => top1(v) === best) ?? votes[0];
}
