/**
 * The API's edge over a real socket on 127.0.0.1: requests that fastify or Node's HTTP parser refuse
 * before a route runs (a URL that does not decode, a parameter over the limit, HTTP that does not parse,
 * oversized headers, a request that trickles in) get the API's `{error: {code, message}}` and a stable
 * code like every other error, the request timeout closes slow requests, and the server keeps serving.
 * One stand-in NodeHost, no peers.
 */
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  API_ERROR_CODES,
  addressKey,
  bodyLimitFor,
  buildApi,
  httpStatusOf,
  MAX_JSON_CONTAINERS,
  MAX_JSON_DEPTH,
} from '../../src/node/api.ts';
import type { NodeHost } from '../../src/node/host.ts';
import {
  groupIdOf,
  hex,
  LIMITS,
  type Request,
  requestIdOf,
  SignedRequest,
  sha256,
  signModelUpdate,
  signRequest,
  Tx,
  toJson,
} from '../../src/protocol/index.ts';
import { RawConn, type RawResponse, rawExchange, unparsableHttpCases } from '../raw-http.ts';
import { type LoneHost, openLoneHost } from './lone-host.ts';
import { standInRequest } from './standin-request.ts';

const REQUEST_TIMEOUT = 500;

let lone: LoneHost;
let group: LoneHost['group'];
let host: NodeHost;
let app: FastifyInstance;
let port: number;

beforeAll(async () => {
  lone = openLoneHost('api-edge-', 7);
  ({ group, host } = lone);
  app = buildApi(host, { requestTimeoutMs: REQUEST_TIMEOUT });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
});

afterAll(async () => {
  await app.close();
  lone.close();
});

/** The response is the API's error with `code`, at that code's status. */
function expectApiError(res: RawResponse | null, code: string, status: number): void {
  expect(res).not.toBeNull();
  expect(res!.status).toBe(status);
  expect(httpStatusOf(code)).toBe(status);
  expect(res!.headers).toMatch(/content-type: application\/json/);
  const body = JSON.parse(res!.body) as { error: { code: string; message: string } | string; code?: string };
  if (typeof body.error === 'string') {
    // the v2 routes: the protocol's body, the code beside the message (test/node/api-oip.test.ts)
    expect(Object.keys(body)).toEqual(['error', 'code']);
    expect(body.code).toBe(code);
    expect(body.error.startsWith(`${code}: `)).toBe(true);
    return;
  }
  expect(Object.keys(body)).toEqual(['error']);
  expect(body.error.code).toBe(code);
  expect(body.error.message).toBeTypeOf('string');
  expect(body.error.message.length).toBeGreaterThan(0);
}

async function stillServes(): Promise<void> {
  const { res } = await rawExchange(port, 'GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
  expect(res?.status).toBe(200);
  expect(JSON.parse(res!.body)).toEqual({ ok: true });
}

const get = (path: string) => `GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`;

describe('fastify framework errors', () => {
  it('a URL that does not decode: 400 BAD_URL', async () => {
    const { res } = await rawExchange(port, get('/v1/certificates/%zz'));
    expectApiError(res, 'BAD_URL', 400);
    await stillServes();
  });

  it('a path parameter over 100 characters: 414 URI_TOO_LONG', async () => {
    const { res } = await rawExchange(port, get(`/v1/certificates/${'a'.repeat(500)}`));
    expectApiError(res, 'URI_TOO_LONG', 414);
    // 64 hex characters, the longest id a route takes, are still matched (and not found).
    const ok = await rawExchange(port, get(`/v1/certificates/${'a'.repeat(64)}`));
    expectApiError(ok.res, 'CERTIFICATE_NOT_FOUND', 404);
  });
});

describe('a method the path does not take', () => {
  // Until 2026-12-06 these were 404 NOT_FOUND ("no route DELETE /v1/requests"), as if the path did not exist.
  it.each([
    ['DELETE', '/v1/requests', 'POST'],
    ['GET', '/v1/txs', 'POST'],
    ['POST', '/v1/status', 'GET, HEAD'],
    ['PUT', `/v1/certificates/${'a'.repeat(64)}`, 'GET, HEAD'],
    ['OPTIONS', '/v1/group', 'GET, HEAD'],
    ['GET', '/v2/models/any-name/infer', 'POST'],
    ['DELETE', '/v2/models/any-name/versions/1', 'GET, HEAD'],
  ])('%s %s: 405 METHOD_NOT_ALLOWED with Allow: %s', async (method, path, allow) => {
    const { res } = await rawExchange(
      port,
      `${method} ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`,
    );
    expectApiError(res, 'METHOD_NOT_ALLOWED', 405);
    expect(res!.headers).toContain(`allow: ${allow.toLowerCase()}\r\n`);
  });

  it('a path no route has is still 404 NOT_FOUND, whatever the method; the server keeps serving', async () => {
    for (const method of ['GET', 'DELETE']) {
      const { res } = await rawExchange(
        port,
        `${method} /v1/requests/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`,
      );
      expectApiError(res, 'NOT_FOUND', 404);
    }
    await stillServes();
  });
});

describe('HTTP that does not parse', () => {
  const cases = unparsableHttpCases(
    '/v1/requests',
    '/healthz',
    '\x16\x03\x01 hello there\r\n\r\n',
    'content-type: application/json\r\n',
  );
  for (const [what, text, code, status] of cases)
    it(`${what}: ${status} ${code} as the API's error, Connection: close`, async () => {
      const { res, closed } = await rawExchange(port, text);
      expectApiError(res, code, status);
      expect(res!.headers).toMatch(/connection: close/);
      expect(closed).toBe(true);
      await stillServes();
    });
});

describe('Expect: 100-continue', () => {
  const post = (length: number) =>
    'POST /v1/requests HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n' +
    `expect: 100-continue\r\ncontent-length: ${length}\r\n\r\n`;

  it('a declared length over the body limit: 413 BODY_TOO_LARGE at once, no 100 Continue, so the body is never sent', async () => {
    const limit = bodyLimitFor(group.genesis);
    const c = new RawConn(port);
    await c.ready;
    // Only the head: a client that waits for 100 Continue sends nothing more. Until 2026-12-06 it got
    // 100 Continue, then sent (up to 64 MiB of) a body that was read and thrown away before the 413.
    c.write(post(limit + 1));
    try {
      const res = await c.response();
      expectApiError(res, 'BODY_TOO_LARGE', 413);
      expect(JSON.parse(res!.body).error.message).toBe(`request body over the limit of ${limit} bytes`);
      // The body the head announced never comes: the connection is not kept waiting for it.
      expect(res!.headers).toMatch(/connection: close/);
      await c.waitClosed();
    } finally {
      c.destroy();
    }
    await stillServes();
  });

  it('a declared length within the limit still gets 100 Continue, then its answer', async () => {
    const body = '{}';
    const c = new RawConn(port);
    await c.ready;
    c.write(post(body.length));
    try {
      expect((await c.response())?.status).toBe(100);
      c.write(body);
      expectApiError(await c.response(), 'BAD_REQUEST', 400);
    } finally {
      c.destroy();
    }
  });
});

describe('request timeout', () => {
  it('headers that trickle in: 408 REQUEST_TIMEOUT, connection closed', async () => {
    const c = new RawConn(port);
    await c.ready;
    const start = Date.now();
    c.write('GET /healthz HTTP/1.1\r\nhost: x\r\n');
    const timer = setInterval(() => c.write('x-slow: 1\r\n'), 100);
    try {
      // With the default requestTimeoutMs (60 s) the same 408 would come a minute later: half of that tells
      // the two apart on a machine that stalls for seconds.
      const res = await c.response(30_000);
      expectApiError(res, 'REQUEST_TIMEOUT', 408);
      await c.waitClosed(30_000);
      expect(Date.now() - start).toBeLessThan(30_000);
    } finally {
      clearInterval(timer);
      c.destroy();
    }
    await stillServes();
  });

  it('a connection that sends nothing (slowloris) is closed once its headers are late', async () => {
    const silent = new RawConn(port);
    await silent.ready;
    try {
      await silent.waitClosed(30_000);
    } finally {
      silent.destroy();
    }
  });

  it('a body sent a byte at a time: 408 REQUEST_TIMEOUT and closed after requestTimeoutMs; the server keeps serving', async () => {
    const c = new RawConn(port);
    await c.ready;
    const start = Date.now();
    c.write(
      'POST /v1/requests HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{',
    );
    const timer = setInterval(() => c.write(' '), 100);
    try {
      const res = await c.response(30_000);
      expectApiError(res, 'REQUEST_TIMEOUT', 408);
      await c.waitClosed(30_000);
      const took = Date.now() - start;
      expect(took).toBeGreaterThanOrEqual(REQUEST_TIMEOUT - 50);
      expect(took).toBeLessThan(30_000); // not the 60 s default
    } finally {
      clearInterval(timer);
      c.destroy();
    }
    await stillServes();
  });

  it('does not cut a long poll: the timeout covers the request, not the wait for its answer', async () => {
    const id = 'ab'.repeat(32);
    const start = Date.now();
    const { res } = await rawExchange(
      port,
      get(`/v1/certificates/${id}?wait=${3 * REQUEST_TIMEOUT}`),
      30_000,
    );
    expect(Date.now() - start).toBeGreaterThanOrEqual(3 * REQUEST_TIMEOUT - 50);
    expectApiError(res, 'CERTIFICATE_NOT_FOUND', 404);
  });

  it('is 60 s by default, and 0 turns it off', async () => {
    const dflt = buildApi(host);
    const off = buildApi(host, { requestTimeoutMs: 0 });
    try {
      await Promise.all([dflt.ready(), off.ready()]);
      expect(dflt.server.requestTimeout).toBe(60_000);
      expect(dflt.server.headersTimeout).toBe(60_000);
      expect(off.server.requestTimeout).toBe(0);
      expect(off.server.headersTimeout).toBe(60_000); // Node's own limit on headers stays
      expect(() => buildApi(host, { requestTimeoutMs: -1 })).toThrow(/requestTimeoutMs/);
    } finally {
      await Promise.all([dflt.close(), off.close()]);
    }
  });
});

describe('JSON bodies', () => {
  const post = (body: string) =>
    app.inject({
      method: 'POST',
      url: '/v1/requests',
      headers: { 'content-type': 'application/json' },
      payload: body,
    });

  it('a "__proto__" or "constructor.prototype" key: 400 MALFORMED_JSON naming the key', async () => {
    for (const [body, key] of [
      ['{"request": {"__proto__": {"x": 1}}}', 'request.__proto__'],
      ['{"requests": [{"constructor": {"prototype": {}}}]}', 'requests[0].constructor'],
      ['{"__proto__": 1}', '__proto__'],
    ]) {
      const res = await post(body);
      expect(res.statusCode).toBe(400);
      const e = res.json().error;
      expect(e.code).toBe('MALFORMED_JSON');
      expect(e.message).toContain(`"${key}"`);
      expect(e.message).toMatch(/not allowed/);
      expect(e.message).not.toMatch(/not valid JSON/);
    }
  });

  it('a valid JSON request still parses and reaches its route', async () => {
    const request: Request = {
      groupId: groupIdOf(group.genesis),
      client: group.client.publicKey,
      nonce: 1,
      timestamp: Date.now(),
      inputDigest: new Uint8Array(32),
      policy: null,
      maxFee: 1000,
    };
    const input = new Uint8Array([1, 2, 3]);
    const sr = signRequest({ ...request, inputDigest: sha256(input) }, input, group.client);
    const res = await app.inject({
      method: 'POST',
      url: '/v1/requests?wait=0',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      payload: JSON.stringify({ request: toJson(SignedRequest, sr) }),
    });
    const body = res.json() as { requestId?: string; error?: { code: string; requestId?: string } };
    expect(body.error?.code).not.toBe('MALFORMED_JSON');
    expect(body.requestId ?? body.error?.requestId).toBe(hex(requestIdOf(sr)));
  });

  it('JSON that does not parse keeps its message; a "constructor" key without "prototype" is let through', async () => {
    const bad = await post('{not json');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('MALFORMED_JSON');
    expect(bad.json().error.message).toMatch(/not valid JSON/);
    const empty = await post('');
    expect(empty.json().error.code).toBe('MALFORMED_JSON');
    // Parsed, then refused by the schema, as before.
    const other = await post('{"constructor": 1}');
    expect(other.statusCode).toBe(400);
    expect(other.json().error.code).toBe('BAD_REQUEST');
  });

  // JSON.parse builds every value before any schema looks: an 8 MiB body of `[[[[…]]]]` held a node's
  // event loop ~8 s (2026-12-06, stand-in group of 4 processes), of `[],[],…` ~2.5 s.
  it(`JSON nested over ${MAX_JSON_DEPTH} deep, or with over ${MAX_JSON_CONTAINERS} arrays and objects: 400 MALFORMED_JSON on every route, before parsing`, async () => {
    const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    const deepObj = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
    const image = '"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":["AA=="]}]';
    const cases: [string, string][] = [
      ['/v1/requests', `{"request":${deep(MAX_JSON_DEPTH)}}`],
      ['/v1/requests', `{"requests":[${deepObj(MAX_JSON_DEPTH)}]}`],
      ['/v1/txs', `{"tx":${deepObj(MAX_JSON_DEPTH)}}`],
      [`/v2/models/${group.genesis.name}/infer`, `{"parameters":{"x":${deepObj(MAX_JSON_DEPTH)}},${image}}`],
      ['/v1/requests', `{"request":[${'[],'.repeat(MAX_JSON_CONTAINERS)}0]}`],
      [
        `/v2/models/${group.genesis.name}/infer`,
        `{"parameters":{"x":[${'{},'.repeat(MAX_JSON_CONTAINERS)}0]},${image}}`,
      ],
    ];
    for (const [url, payload] of cases) {
      const res = await app.inject({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/json' },
        payload,
      });
      expect([url, res.statusCode]).toEqual([url, 400]);
      const body = res.json();
      // v2 routes answer the protocol's {"error": "CODE: message", code}
      const e = typeof body.error === 'string' ? { code: body.code, message: body.error } : body.error;
      expect(e.code).toBe('MALFORMED_JSON');
      expect(e.message).toMatch(/deep|arrays and objects/);
    }
    // At the limits, and brackets inside strings (escaped quotes too), the body parses and reaches its route.
    const inString = `"${'['.repeat(100)}\\"${'{'.repeat(100)}\\\\"`;
    for (const payload of [
      `{"request":${deep(MAX_JSON_DEPTH - 1)}}`,
      `{"request":[${'[],'.repeat(MAX_JSON_CONTAINERS - 2)}0]}`,
      `{"request":{"x":${inString}}}`,
    ]) {
      const res = await post(payload);
      expect(res.statusCode).toBe(400);
      expect(res.json().error.code).not.toBe('MALFORMED_JSON');
    }
    await stillServes();
  });
});

describe('a chunked body no route reads', () => {
  it('a GET long poll with half a chunked body, its client gone: the node keeps serving (it crashed)', async () => {
    // A GET's body is never parsed, so the counting copy of a chunked body (http-body.ts) had no reader
    // and no 'error' listener: the client's hang-up, an 'aborted' error on the request passed on to it,
    // was an uncaught exception that ended the process.
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    const before = host.waiting;
    const c = new RawConn(port);
    await c.ready;
    c.write(
      `GET /v1/certificates/${'cd'.repeat(32)}?wait=60000 HTTP/1.1\r\nhost: x\r\n` +
        'transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n',
    );
    for (let i = 0; i < 500 && host.waiting === before; i++) await new Promise((r) => setTimeout(r, 10));
    expect(host.waiting).toBe(before + 1);
    c.destroy();
    for (let i = 0; i < 500 && host.waiting > before; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100));
    process.off('uncaughtException', onUncaught);
    expect(uncaught).toEqual([]);
    await stillServes();
  });
});

describe('CONNECT', () => {
  it('from clients that reset at once: answered or dropped, the node keeps serving', async () => {
    // Node takes its own 'error' listener off a CONNECT's socket: the answer written to a socket its
    // client had reset was an uncaught EPIPE or ECONNRESET.
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    for (let i = 0; i < 100; i++) {
      const c = new RawConn(port);
      await c.ready;
      c.write('CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n');
      c.socket.resetAndDestroy();
    }
    await new Promise((r) => setTimeout(r, 300));
    process.off('uncaughtException', onUncaught);
    expect(uncaught).toEqual([]);
    await stillServes();
  });
});

describe('error messages', () => {
  it('are cut to 4 KiB (LIMITS.message, as in a binary answer) where they quote the request', async () => {
    const junk = 'x'.repeat(200_000);
    const sr = toJson(SignedRequest, standInRequest(group, groupIdOf(group.genesis), 1)) as object;
    const image = { name: 'image', datatype: 'BYTES', shape: [1], data: ['AAAA'] };
    const infer = `/v2/models/${group.genesis.name}/infer`;
    const calls: [url: string, body: unknown, code: string][] = [
      ['/v1/requests', { request: { ...sr, [junk]: 1 } }, 'REQUEST_MALFORMED'],
      ['/v1/txs', { tx: { kind: junk } }, 'TX_MALFORMED'],
      [infer, { inputs: [{ ...image, name: junk }] }, 'INFER_BAD_INPUT'],
      [infer, { inputs: [{ ...image, datatype: junk }] }, 'INFER_BAD_DATATYPE'],
      [infer, { inputs: [{ ...image, shape: Array(100_000).fill(1) }] }, 'INFER_BAD_SHAPE'],
      [infer, { outputs: [{ name: junk }], inputs: [image] }, 'INFER_BAD_OUTPUT'],
    ];
    for (const [url, payload, code] of calls) {
      const res = await app.inject({ method: 'POST', url, payload: payload as object });
      expect([url, res.statusCode]).toEqual([url, 400]);
      const body = res.json();
      // v2: the protocol's `error`, "CODE: message"
      const message: string =
        typeof body.error === 'string' ? body.error.slice(`${code}: `.length) : body.error.message;
      expect(typeof body.error === 'string' ? body.code : body.error.code).toBe(code);
      expect(Buffer.byteLength(message)).toBeLessThanOrEqual(LIMITS.message);
      expect(message.endsWith('…')).toBe(true);
      // v2: the whole string is cut, its "CODE: " too (it ran that many bytes over).
      if (typeof body.error === 'string')
        expect(Buffer.byteLength(body.error)).toBeLessThanOrEqual(LIMITS.message);
    }
    // An item of a list: its own error, cut the same way.
    const list = await app.inject({
      method: 'POST',
      url: '/v1/requests?wait=0',
      payload: { requests: [{ ...sr, [junk]: 1 }] },
    });
    const item = list.json().results[0].error;
    expect(item.code).toBe('REQUEST_MALFORMED');
    expect(Buffer.byteLength(item.message)).toBeLessThanOrEqual(LIMITS.message);
    // A 404 quotes the path (up to Node's 16 KiB of headers).
    const missing = await rawExchange(port, get(`/${'n'.repeat(15_000)}`));
    expectApiError(missing.res, 'NOT_FOUND', 404);
    expect(Buffer.byteLength(JSON.parse(missing.res!.body).error.message)).toBeLessThanOrEqual(
      LIMITS.message,
    );
  });
});

describe('Content-Encoding', () => {
  // Before 2026-12-06 the coding was ignored: gzipped JSON was "Body is not valid JSON" (MALFORMED_JSON),
  // a gzipped SignedRequest REQUEST_MALFORMED, which sent the client looking at its JSON or its codec.
  it('a body in a coding other than identity: 415 UNSUPPORTED_MEDIA_TYPE naming it; the connection serves on', async () => {
    const gz = gzipSync(Buffer.from('{"request": {}}'));
    const c = new RawConn(port);
    await c.ready;
    try {
      for (const [ct, coding, body] of [
        ['application/json', 'gzip', gz],
        ['application/octet-stream', 'br', Buffer.from([1, 2, 3])],
      ] as const) {
        c.write(
          `POST /v1/requests HTTP/1.1\r\nhost: x\r\ncontent-type: ${ct}\r\ncontent-encoding: ${coding}\r\n` +
            `content-length: ${body.length}\r\n\r\n`,
        );
        c.write(body);
        const res = await c.response();
        expectApiError(res, 'UNSUPPORTED_MEDIA_TYPE', 415);
        expect(JSON.parse(res!.body).error.message).toContain(`"${coding}"`);
      }
      // The same body chunked, on v2 too.
      c.write(
        `POST /v2/models/${group.genesis.name}/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n` +
          `content-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n${gz.length.toString(16)}\r\n`,
      );
      c.write(Buffer.concat([gz, Buffer.from('\r\n0\r\n\r\n')]));
      expectApiError(await c.response(), 'UNSUPPORTED_MEDIA_TYPE', 415);
      // identity is no coding at all: the body is read as it is.
      c.write(
        'POST /v1/requests HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-encoding: identity\r\n' +
          'content-length: 15\r\n\r\n{"request": {}}',
      );
      const plain = await c.response();
      expect(plain?.status).toBe(400);
      expect(JSON.parse(plain!.body).error.code).toBe('REQUEST_MALFORMED');
      // Still the same connection, still serving.
      c.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
      expect((await c.response())?.status).toBe(200);
      expect(c.closed).toBe(false);
    } finally {
      c.socket.destroy();
    }
  });
});

describe('POST /v1/txs', () => {
  const postTx = (version: number, digestByte: number) =>
    app.inject({
      method: 'POST',
      url: '/v1/txs',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({
        tx: toJson(
          Tx,
          signModelUpdate(
            groupIdOf(group.genesis),
            { node: 1, version, newDigest: new Uint8Array(32).fill(digestByte) },
            group.keys[1],
          ),
        ),
      }),
    });

  it('a version that skips one: 409 TX_VERSION_GAP; one not above the current: 409 TX_STALE_VERSION; the next: 202', async () => {
    const gap = await postTx(2, 1);
    expect(gap.statusCode).toBe(409);
    expect(gap.json().error.code).toBe('TX_VERSION_GAP');
    expect(gap.json().error.message).toMatch(/skips version 1 of node 1/);
    const stale = await postTx(0, 2);
    expect(stale.statusCode).toBe(409);
    expect(stale.json().error.code).toBe('TX_STALE_VERSION');
    const next = await postTx(1, 3);
    expect(next.statusCode).toBe(202);
    expect(next.json().status).toBe('pending');
    // With version 1 waiting here, version 2 no longer skips one.
    expect((await postTx(2, 4)).statusCode).toBe(202);
  });

  it('an update of this node to a model it has not loaded: 409 TX_MODEL_NOT_LOADED', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/txs',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({
        tx: toJson(
          Tx,
          signModelUpdate(
            groupIdOf(group.genesis),
            { node: 0, version: 1, newDigest: new Uint8Array(32).fill(9) },
            group.keys[0],
          ),
        ),
      }),
    });
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('TX_MODEL_NOT_LOADED');
  });
});

describe('query parameters', () => {
  it('one a route does not take: 400 UNKNOWN_QUERY_PARAMETER naming it, on every route; the known ones still work', async () => {
    const id = '0'.repeat(64);
    for (const path of [
      '/v1/status?x=1',
      '/healthz?verbose',
      '/v2/health/ready?a=b',
      `/v1/certificates/${id}?wiat=10`,
      '/v1/group?wait=5',
    ]) {
      const { res } = await rawExchange(port, get(path));
      expectApiError(res, 'UNKNOWN_QUERY_PARAMETER', 400);
      const name = path.slice(path.indexOf('?') + 1).split('=')[0];
      const error = JSON.parse(res!.body).error;
      expect(typeof error === 'string' ? error : error.message).toContain(`"${name}"`);
    }
    const posted = await app.inject({
      method: 'POST',
      url: '/v1/requests?wait=0&sentto=all',
      payload: { request: {} },
    });
    expect(posted.statusCode).toBe(400);
    expect(posted.json().error.code).toBe('UNKNOWN_QUERY_PARAMETER');
    // A parameter the route takes is still read and checked as before.
    const known = await rawExchange(port, get(`/v1/certificates/${id}?wait=0`));
    expectApiError(known.res, 'CERTIFICATE_NOT_FOUND', 404);
    const bad = await rawExchange(port, get(`/v1/certificates/${id}?wait=soon`));
    expectApiError(bad.res, 'BAD_REQUEST', 400);
    await stillServes();
  });

  it('a number that is not a safe integer ("Infinity", "-Infinity", "1e400"): 400 BAD_REQUEST, in the query and in a v2 body', async () => {
    // ajv turns such a string into ±Infinity, takes it for an integer and skips minimum and maximum for a
    // number that is not finite: ?wait=-Infinity was no wait, ?wait=1e400 the longest.
    const id = '0'.repeat(64);
    for (const v of ['Infinity', '-Infinity', '1e400']) {
      const { res } = await rawExchange(port, get(`/v1/certificates/${id}?wait=${v}`));
      expectApiError(res, 'BAD_REQUEST', 400);
      expect(JSON.parse(res!.body).error.message).toContain('querystring/wait');
      const posted = await app.inject({
        method: 'POST',
        url: `/v1/requests?wait=${v}`,
        payload: { request: {} },
      });
      expect([posted.statusCode, posted.json().error.code]).toEqual([400, 'BAD_REQUEST']);
      const inferred = await app.inject({
        method: 'POST',
        url: `/v2/models/${group.genesis.name}/infer`,
        payload: {
          parameters: { dropbear_nonce: v },
          inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: ['AAAA'] }],
        },
      });
      expect([inferred.statusCode, inferred.json().code]).toEqual([400, 'BAD_REQUEST']);
      expect(inferred.json().error).toContain('dropbear_nonce');
    }
    // Integers as before, an exponent included.
    const ok = await rawExchange(port, get(`/v1/certificates/${id}?wait=1e1`));
    expectApiError(ok.res, 'CERTIFICATE_NOT_FOUND', 404);
    await stillServes();
  });
});

describe('docs/api.md', () => {
  it('its table of codes lists every code the API answers with, each at its status', () => {
    const doc = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## Codes'), doc.indexOf('\n## ', doc.indexOf('## Codes') + 1));
    const listed = new Map<string, number>();
    for (const row of section.split('\n').filter((l) => /^\| \d{3} /.test(l))) {
      const status = Number(row.slice(2, 5));
      for (const m of row.matchAll(/`([A-Z][A-Z0-9_]+)`/g)) listed.set(m[1], status);
    }
    for (const [code, status] of Object.entries(API_ERROR_CODES))
      expect([code, listed.get(code)]).toEqual([code, status]);
    for (const [code, status] of listed) expect([code, httpStatusOf(code)]).toEqual([code, status]);
  });
});

describe('readiness', () => {
  it('a group of 5 (f = 1, q = 4) needs 3 peers, and its message says so (it called the 3 "2f")', async () => {
    const five = openLoneHost('api-edge-five-', 7, undefined, 5);
    const connected = new Set([1, 2]);
    const api = buildApi(five.host, {
      peers: () => [1, 2, 3, 4].map((id) => ({ id, state: connected.has(id) ? 'connected' : 'connecting' })),
    });
    try {
      const r = await api.inject({ method: 'GET', url: '/readyz' });
      expect(r.statusCode).toBe(503);
      expect(r.json().error.message).toBe(
        '2 peers connected; 3 needed to certify (a quorum of 4 nodes with this one)',
      );
      connected.add(3);
      const ok = await api.inject({ method: 'GET', url: '/readyz' });
      expect(ok.json()).toEqual({ ready: true, peersConnected: 3, peersNeeded: 3 });
    } finally {
      await api.close();
      five.close();
    }
  });
});

describe('maxConnections', () => {
  /** Closes `conn` and expects a new connection to port `p` to be served (at once, or within 50 tries). */
  async function expectRoomOnceClosed(conn: RawConn, p: number): Promise<void> {
    conn.destroy();
    await conn.waitClosed();
    let res = null;
    for (let i = 0; i < 50 && res?.status !== 200; i++)
      res = (await rawExchange(p, 'GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')).res;
    expect(res?.status).toBe(200);
  }

  it('one connection over the limit: 503 OVERLOADED with Retry-After, closed, its request never served; room again once one closes', async () => {
    const small = buildApi(host, { maxConnections: 2, retryAfterSeconds: 3 });
    await small.listen({ host: '127.0.0.1', port: 0 });
    const p = (small.server.address() as { port: number }).port;
    const held = [new RawConn(p), new RawConn(p)];
    try {
      await Promise.all(held.map((c) => c.ready));
      // A request sent at once on the refused connection: answered with the refusal, not by the route.
      const over = await rawExchange(p, 'GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
      expectApiError(over.res, 'OVERLOADED', 503);
      expect(over.res!.headers).toMatch(/retry-after: 3/);
      expect(over.res!.headers).toMatch(/connection: close/);
      expect(over.closed).toBe(true);
      // The held ones are served as usual.
      held[0].write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
      expect((await held[0].response())?.status).toBe(200);
      await expectRoomOnceClosed(held[1], p);
    } finally {
      for (const c of held) c.destroy();
      await small.close();
    }
  });

  it('is an integer ≥ 1', () => {
    for (const v of [0, -1, 1.5]) expect(() => buildApi(host, { maxConnections: v })).toThrow(RangeError);
    for (const v of [0, -1, 1.5])
      expect(() => buildApi(host, { maxConnectionsPerAddress: v })).toThrow(RangeError);
  });

  it('maxConnectionsPerAddress: one address over its share is refused while another is served; room again once one closes', async () => {
    const small = buildApi(host, { maxConnections: 10, maxConnectionsPerAddress: 2, retryAfterSeconds: 2 });
    await small.listen({ host: '127.0.0.1', port: 0 });
    const p = (small.server.address() as { port: number }).port;
    const held = [new RawConn(p), new RawConn(p)];
    try {
      await Promise.all(held.map((c) => c.ready));
      const over = await rawExchange(p, 'GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
      expectApiError(over.res, 'OVERLOADED', 503);
      expect(over.res!.body).toMatch(/maxConnectionsPerAddress/);
      expect(over.res!.headers).toMatch(/retry-after: 2/);
      expect(over.closed).toBe(true);
      // Another client (127.0.0.2 is loopback too on Linux) still gets in.
      const other = await rawExchange(
        p,
        'GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
        5_000,
        '127.0.0.2',
      );
      expect(other.res?.status).toBe(200);
      held[0].write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
      expect((await held[0].response())?.status).toBe(200);
      await expectRoomOnceClosed(held[1], p);
    } finally {
      for (const c of held) c.destroy();
      await small.close();
    }
  });

  it('counts IPv4 addresses one by one and IPv6 ones by their /64', () => {
    expect(addressKey('127.0.0.1')).toBe('127.0.0.1');
    expect(addressKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(addressKey('::FFFF:10.1.2.3')).toBe('10.1.2.3');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('2001:db8:0:0:1::')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey(undefined)).toBe('');
    expect(addressKey('2001:db8:1:2:3:4:5:6')).not.toBe(addressKey('2001:db8:1:3:3:4:5:6'));
  });
});
