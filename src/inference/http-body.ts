/**
 * Over-limit request bodies, answered so that every client sees the 413.
 *
 * Fastify's own check answers 413 with `connection: close` and leaves the rest of the body unread (from
 * the Content-Length, or once a chunked body grows past the limit). The socket then closes with the body's
 * bytes in its receive buffer, the kernel resets the connection, and a client still writing its body gets
 * EPIPE or ECONNRESET instead of the answer (on a fast machine test/e2e/group.test.ts and
 * test/inference/kserve.test.ts saw `fetch failed: write EPIPE`). These hooks answer first, with the
 * server's usual error body, and read the rest of the body and throw it away on a connection that stays
 * open: a declared Content-Length over the limit is refused before any of the body is read; a chunked body
 * is counted as it arrives and refused once it passes the limit. A body that goes on past the drain cap
 * has its connection cut instead. Used by the node's API (src/node/api.ts) and by serve-model
 * (kserve-server.ts).
 *
 * Also here, for both servers: how long a request may take to arrive (`requestTimeoutOptions`), and the
 * answer to a request that never became one (`clientErrorOf`, `answerClientError`): HTTP that does not
 * parse, headers over Node's 16 KiB, a request that timed out. Node reports those on the socket
 * ('clientError'), before any request object exists, and fastify's default answer has its own JSON shape.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { errorCodes, type FastifyInstance } from 'fastify';

/** How long a request (headers and body) may take to arrive, by default: 60 s. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

/**
 * Fastify options that close a connection whose request has not fully arrived within `ms` (0: no limit on
 * the whole request; its headers still have 60 s). Fastify turns Node's own limit (300 s) off, so that a
 * body sent a byte every few seconds held its connection, and up to a body limit of memory, for ever.
 * Set on Node's server at construction, with the headers' limit (at most the request's; Node swaps the
 * two when the headers' is the longer, and the body then had 60 s whatever the limit). Node checks its
 * connections every `connectionsCheckingInterval` (30 s by default, so a 500 ms limit acted after up to
 * 30 s): a quarter of the limit here, so a request is cut at most 25 % late. The limit covers the request
 * only: a long poll waiting for its answer is not cut.
 */
export function requestTimeoutOptions(ms: number): {
  requestTimeout: number;
  http: {
    requestTimeout: number;
    headersTimeout: number;
    connectionsCheckingInterval: number;
    requireHostHeader: false;
  };
} {
  if (!Number.isInteger(ms) || ms < 0)
    throw new RangeError(`requestTimeoutMs must be an integer ≥ 0 (ms), got ${ms}`);
  const headers = ms > 0 ? Math.min(60_000, ms) : 60_000;
  const interval = Math.min(30_000, Math.max(10, Math.floor(headers / 4)));
  return {
    requestTimeout: ms,
    // requireHostHeader: Node's own answer to an HTTP/1.1 request without Host is a bare 400 with no
    // body; `answerNodeRefusals` answers it with a code instead.
    http: {
      requestTimeout: ms,
      headersTimeout: headers,
      connectionsCheckingInterval: interval,
      requireHostHeader: false,
    },
  };
}

/** Statuses of the codes `clientErrorOf` and fastify's framework errors answer with. */
export const EDGE_STATUS = {
  BAD_HTTP: 400,
  BAD_URL: 400,
  REQUEST_TIMEOUT: 408,
  EXPECTATION_FAILED: 417,
  URI_TOO_LONG: 414,
  HEADERS_TOO_LARGE: 431,
} as const;

export type EdgeCode = keyof typeof EDGE_STATUS;

/** The code and message for an error Node raised on a connection before (or instead of) a request. */
export function clientErrorOf(e: Error & { code?: string; reason?: string }): {
  code: EdgeCode;
  message: string;
} {
  switch (e.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'ERR_HTTP_HEADERS_TIMEOUT':
      return { code: 'REQUEST_TIMEOUT', message: 'the request did not arrive in time; connection closed' };
    case 'HPE_HEADER_OVERFLOW':
      return { code: 'HEADERS_TOO_LARGE', message: 'the request line and headers are over 16 KiB' };
    default:
      return {
        code: 'BAD_HTTP',
        message: `the request is not valid HTTP/1.1 (${e.code ?? 'error'}: ${e.reason ?? e.message})`,
      };
  }
}

/**
 * Answers a 'clientError' on its socket: a minimal HTTP response with `body` as JSON, `headers` and
 * `Connection: close`, then the socket is closed. Nothing is written when the socket is gone or a response
 * on it has begun (it would corrupt that one); the socket is closed all the same.
 */
export function answerClientError(
  socket: Socket,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (socket.destroyed) return;
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (!socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  const json = JSON.stringify(body);
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
    'Content-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(json)}\r\n` +
    Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    'Connection: close\r\n\r\n';
  // Closed once the answer is out, or after 1 s if the client does not take it.
  const cut = setTimeout(() => socket.destroy(), 1000);
  cut.unref();
  socket.end(head + json, () => {
    clearTimeout(cut);
    socket.destroy();
  });
}

/**
 * Answers, in the server's error body (`body`, given the error and the request's URL), the requests Node
 * answers itself before any route or 'clientError', with no body and so no code: an HTTP/1.1 request
 * without Host (a bare 400; with `requestTimeoutOptions`, which turns Node's check off, it reaches the
 * server and is refused here, 400 BAD_HTTP), an `Expect` other than `100-continue` (a bare 417: 417
 * EXPECTATION_FAILED) and CONNECT (the connection closed without a word: 400 BAD_HTTP). Each answer closes
 * its connection, as for HTTP that does not parse.
 */
export function answerNodeRefusals(
  app: FastifyInstance,
  body: (e: { code: EdgeCode; message: string }, url: string) => unknown,
): void {
  app.addHook('onRequest', (req, reply, done) => {
    if (req.raw.httpVersion !== '1.1' || req.headers.host !== undefined) {
      done();
      return;
    }
    const e = { code: 'BAD_HTTP' as const, message: 'an HTTP/1.1 request needs a Host header' };
    reply.code(EDGE_STATUS[e.code]).header('connection', 'close').type('application/json');
    reply.send(body(e, req.url));
  });
  app.server.on('checkExpectation', (req, res) => {
    const e = {
      code: 'EXPECTATION_FAILED' as const,
      message: `Expect: ${cutUtf8(String(req.headers.expect), 100)} is not met here (only 100-continue is)`,
    };
    const json = JSON.stringify(body(e, req.url ?? ''));
    res.writeHead(EDGE_STATUS[e.code], {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(json),
      connection: 'close',
    });
    res.end(json);
  });
  app.server.on('connect', (req, socket: Socket) => {
    // Node takes its own 'error' listener off a CONNECT's socket: without one, writing to a socket its
    // client has reset is an uncaught EPIPE or ECONNRESET.
    socket.on('error', () => {});
    const e = { code: 'BAD_HTTP' as const, message: 'CONNECT is not served here: this is no proxy' };
    answerClientError(socket, EDGE_STATUS[e.code], body(e, req.url ?? ''));
  });
}

/**
 * The methods a path takes, for the 405 of a method it does not take (both servers; RFC 9110 §15.5.6: with
 * an Allow header). Collects the routes as they are added: call it before adding any. The function it
 * returns gives, for a request URL (its query ignored), the methods of every route whose pattern the path
 * matches (a `:param` segment matches any one segment), sorted, HEAD with GET; none when no route has the
 * path (a 404). Until 2026-12-06 a method a path does not take was 404, as if the path did not exist.
 */
export function methodsByPath(app: FastifyInstance): (url: string) => string[] {
  const routes = new Map<string, { re: RegExp; methods: Set<string> }>();
  app.addHook('onRoute', (route) => {
    let entry = routes.get(route.url);
    if (!entry) {
      const segments = route.url
        .split('/')
        .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
      entry = { re: new RegExp(`^${segments.join('/')}$`), methods: new Set() };
      routes.set(route.url, entry);
    }
    for (const m of [route.method].flat()) {
      entry.methods.add(m.toUpperCase());
      if (m.toUpperCase() === 'GET') entry.methods.add('HEAD');
    }
  });
  return (url) => {
    let path = url.split('?')[0].split('#')[0];
    try {
      path = decodeURI(path);
    } catch {
      // matched as sent
    }
    const out = new Set<string>();
    for (const r of routes.values()) if (r.re.test(path)) for (const m of r.methods) out.add(m);
    return [...out].sort();
  };
}

/** The 6-bit value of a base64 character, either alphabet (the caller has checked it is one). */
function base64Value(c: number): number {
  if (c >= 0x41 && c <= 0x5a) return c - 0x41; // A-Z
  if (c >= 0x61 && c <= 0x7a) return c - 0x61 + 26; // a-z
  if (c >= 0x30 && c <= 0x39) return c - 0x30 + 52; // 0-9
  return c === 0x2b || c === 0x2d ? 62 : 63; // + or -, / or _
}

/**
 * Whether base64 text (standard or URL alphabet, padded or not; its characters already checked) is whole:
 * not 4k+1 characters, which no bytes encode to; padding only where it belongs, to a multiple of 4; and no
 * bits set past the last byte. Buffer.from(s, 'base64') takes any text and drops what does not fit, so
 * "AAAAA" was 3 bytes and "AB==" 1 (until 2026-12-06 the v2 routes of the node and serve-model took them).
 * In constant time: only the end of the text is read.
 */
export function isWholeBase64(s: string): boolean {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 0x3d) end--; // '='
  const pad = s.length - end;
  const rest = end % 4;
  if (rest === 1 || pad > 2) return false;
  if (pad > 0 && (end + pad) % 4 !== 0) return false;
  if (rest === 0) return true;
  // 2 characters left hold one byte and 4 spare bits, 3 hold two bytes and 2 spare bits: all zero.
  const last = base64Value(s.charCodeAt(end - 1));
  return (last & (rest === 2 ? 0x0f : 0x03)) === 0;
}

/**
 * `s` cut to at most `max` UTF-8 bytes with its ellipsis (3 bytes: until 2026-12-06 it was counted as one,
 * and a message cut to LIMITS.message came out 2 bytes over), on a character boundary.
 */
export function cutUtf8(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  const b = Buffer.from(s.slice(0, max));
  let end = Math.max(0, max - 3);
  while (end > 0 && (b[end] & 0xc0) === 0x80) end--; // back to the first byte of a character
  return `${b.subarray(0, end).toString()}…`;
}

/** Bytes of an over-limit body read and dropped before its connection is cut instead. */
const DRAIN_CAP = 64 * 1024 * 1024;

export function refuseOversizedBodies(app: FastifyInstance, limit: number, drainCap = DRAIN_CAP): void {
  // `Expect: 100-continue`: Node answered 100 Continue to every such request, so a client with a declared
  // length over the limit sent its whole body (up to the drain cap), read and dropped, before the 413.
  // Such a request now goes on without 100 Continue: the hook below answers 413 at once, and Node closes
  // the connection after it (a response before 100 Continue is not kept alive), the body never sent.
  app.server.on('checkContinue', (req, res) => {
    if (!(Number(req.headers['content-length']) > limit)) res.writeContinue();
    app.server.emit('request', req, res);
  });
  app.addHook('onRequest', (req, _reply, done) => {
    const declared = Number(req.headers['content-length']);
    if (!(declared > limit)) {
      done();
      return;
    }
    let seen = 0;
    req.raw.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > drainCap) req.raw.socket.destroy();
    });
    done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
  });
  // A body without a Content-Length (chunked; with neither header there is no body): the parser reads a
  // counting copy of it. Past the limit the copy stops (the parser waits on it and is dropped with the
  // request), the 413 goes out through the error handler, and the rest of the body is read and dropped.
  app.addHook('preParsing', (req, reply, payload, done) => {
    if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] === undefined) {
      done(null, payload);
      return;
    }
    const counted = new PassThrough();
    // The copy may have no reader: a GET's or HEAD's body is never parsed, and a later hook may refuse the
    // request first. The request's error when its client goes (an 'aborted' ECONNRESET, passed on below)
    // was then an 'error' with no listener on the copy, an uncaught exception: a GET long poll with half a
    // chunked body, its client gone, ended the process. A reader still gets the error through its own.
    counted.on('error', () => {});
    let seen = 0;
    let over = false;
    payload.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (over) {
        if (seen > drainCap) req.raw.socket.destroy();
        return;
      }
      if (seen > limit) {
        over = true;
        // Unless the request was answered already (a later preParsing hook refused it, e.g. its coding).
        if (!reply.sent) reply.send(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
        return;
      }
      counted.write(chunk);
    });
    payload.on('end', () => {
      if (!over) counted.end();
    });
    payload.on('error', (e) => {
      if (!over) counted.destroy(e);
    });
    done(null, counted);
  });
}
