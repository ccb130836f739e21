/**
 * The API's own log: with a logger, fastify writes no line per request (a node under load would log
 * thousands a second) and no deprecation warning; errors the API answers are still logged when they are
 * internal. One stand-in NodeHost, no peers, driven with `inject`.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/node/api.ts';
import type { NodeHost } from '../../src/node/host.ts';
import { groupIdOf, SignedRequest, toJson } from '../../src/protocol/index.ts';
import { RawConn } from '../raw-http.ts';
import { type LoneHost, openLoneHost } from './lone-host.ts';
import { standInRequest } from './standin-request.ts';

let lone: LoneHost;
let host: NodeHost;

beforeAll(() => {
  lone = openLoneHost('api-log-', 5);
  host = lone.host;
});

afterAll(() => lone.close());

describe('request logging', () => {
  it('writes no line per request and emits no deprecation warning', async () => {
    const lines: { msg?: string; level?: number }[] = [];
    const logger = pino(
      { level: 'trace' },
      { write: (s: string) => lines.push(JSON.parse(s) as { msg?: string; level?: number }) },
    );
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const app = buildApi(host, { logger });
      await app.ready();
      for (const url of ['/healthz', '/v1/group', '/no/such/route', '/v1/certificates/zz']) {
        const res = await app.inject({ method: 'GET', url });
        expect(res.statusCode).toBeGreaterThanOrEqual(200);
      }
      const bad = await app.inject({
        method: 'POST',
        url: '/v1/requests',
        headers: { 'content-type': 'application/json' },
        payload: '{not json',
      });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().error.code).toBeTypeOf('string');
      await app.close();
      // Warnings are emitted on the next tick.
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    const perRequest = lines.filter((l) => l.msg === 'incoming request' || l.msg === 'request completed');
    expect(perRequest).toEqual([]);
    expect(warnings.map((w) => (w as { code?: string }).code ?? w.message)).not.toContain('FSTDEP023');
  });
});

describe('internal errors', () => {
  // A bug in the checks a request passes before the replica sees it (here: the ledger's balance lookup
  // throws a TypeError). Before 2026-12-06 a POST of a list answered 200 with that item's error INTERNAL
  // and logged nothing, so the bug went unseen; a single request logged only a wrapper, not the error.
  it('a bug while checking a request in a list or alone is logged with its own error, and answered 500 INTERNAL', async () => {
    const lines: { msg?: string; level?: number; err?: { message?: string; stack?: string } }[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const app = buildApi(host, { logger });
    await app.ready();
    const state = host.db.state;
    const bug = new TypeError('balance lookup bug (injected)');
    state.balanceOf = () => {
      throw bug;
    };
    try {
      const gid = groupIdOf(lone.group.genesis);
      for (const [k, payload] of [
        [1, (sr: SignedRequest) => ({ requests: [toJson(SignedRequest, sr)] })],
        [2, (sr: SignedRequest) => ({ request: toJson(SignedRequest, sr) })],
      ] as const) {
        lines.length = 0;
        const sr = standInRequest(lone.group, gid, 9_000 + k);
        const res = await app.inject({ method: 'POST', url: '/v1/requests?wait=0', payload: payload(sr) });
        expect(res.statusCode).toBe(500);
        expect(res.json().error.code).toBe('INTERNAL');
        const logged = lines.filter((l) => l.level === 50);
        expect(logged.map((l) => l.err?.message)).toEqual([bug.message]);
        expect(logged[0]).toMatchObject({ code: 'INTERNAL' }); // before 2026-12-07: no code
        expect(logged[0].err?.stack).toContain('TypeError');
      }
    } finally {
      delete (state as { balanceOf?: unknown }).balanceOf;
      await app.close();
    }
    expect(host.db.state.balanceOf(lone.group.client.publicKey)).toBeGreaterThan(0);
  });
});

describe('a body refused twice over', () => {
  // Chunked, compressed and over the limit: refused for its coding (415), after which the size check used to
  // answer too and fastify logged "Reply was already sent" at warn, once per such request.
  it('chunked, over the size limit and compressed: one answer (415), no warning', async () => {
    const lines: { msg?: string; level?: number }[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const app = buildApi(host, { logger, bodyLimitBytes: 1000 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const c = new RawConn((app.server.address() as { port: number }).port);
    try {
      await c.ready;
      c.write(
        'POST /v1/requests HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n' +
          'transfer-encoding: chunked\r\n\r\n',
      );
      for (let i = 0; i < 5; i++) c.write(`3e8\r\n${'x'.repeat(1000)}\r\n`);
      c.write('0\r\n\r\n');
      expect((await c.response())?.status).toBe(415);
      c.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
      expect((await c.response())?.status).toBe(200);
    } finally {
      c.socket.destroy();
      await app.close();
    }
    expect(lines.filter((l) => (l.level ?? 0) >= 40).map((l) => l.msg)).toEqual([]);
  });
});

describe('accept errors', () => {
  it('an error on the listening server (a failed accept: EMFILE, ENFILE) neither stops the node nor logs a line per connection', async () => {
    const lines: { msg?: string; code?: string; suppressed?: number }[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const app = buildApi(host, { logger });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const port = (app.server.address() as { port: number }).port;
      // What Node's net.Server emits when accept(2) fails (net.js onconnection), with no listener: thrown.
      const acceptError = () =>
        Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', errno: -24, syscall: 'accept' });
      for (let i = 0; i < 100; i++) app.server.emit('error', acceptError());
      const failed = lines.filter((l) => l.code === 'ACCEPT_FAILED');
      expect(failed).toHaveLength(1);
      const c = new RawConn(port);
      await c.ready;
      c.write('GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
      expect((await c.response())?.status).toBe(200);
      c.destroy();
    } finally {
      await app.close();
    }
  });
});
