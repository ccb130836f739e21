/**
 * Over-limit request bodies on a real socket (src/inference/http-body.ts): the client gets the 413 whether
 * the body declares its length or comes chunked, the connection stays open for the next request, and a
 * body that goes on past the drain cap has its connection cut.
 */
import { connect, type Socket } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refuseOversizedBodies } from '../../src/inference/http-body.ts';

const LIMIT = 4096;
const CAP = 256 * 1024;
let app: FastifyInstance;
let port: number;

beforeAll(async () => {
  app = Fastify({ logger: false, bodyLimit: LIMIT });
  refuseOversizedBodies(app, LIMIT, CAP);
  app.setErrorHandler((e: { statusCode?: number; code?: string }, _req, reply) => {
    const status = e.statusCode ?? 500;
    reply.code(status).send({ error: { code: status === 413 ? 'BODY_TOO_LARGE' : (e.code ?? 'INTERNAL') } });
  });
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) =>
    done(null, body),
  );
  app.post('/echo', async (req) => ({ bytes: (req.body as Buffer).length }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
});
afterAll(async () => {
  await app.close();
});

/** One keep-alive connection that reads whole responses (Content-Length bodies only). */
class Conn {
  readonly s: Socket;
  private buf = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  closed = false;
  writeError: Error | null = null;
  constructor() {
    this.s = connect(port, '127.0.0.1');
    this.s.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiting?.();
    });
    this.s.on('close', () => {
      this.closed = true;
      this.waiting?.();
    });
    this.s.on('error', (e) => {
      this.writeError = e;
    });
  }
  async response(): Promise<{ status: number; headers: string; body: string } | null> {
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        const head = this.buf.subarray(0, end).toString();
        const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (this.buf.length >= end + 4 + len) {
          const body = this.buf.subarray(end + 4, end + 4 + len).toString();
          this.buf = this.buf.subarray(end + 4 + len);
          return { status: Number(head.split(' ')[1]), headers: head.toLowerCase(), body };
        }
      }
      if (this.closed) return null;
      await new Promise<void>((r) => {
        this.waiting = r;
      });
      this.waiting = null;
    }
  }
  /** Writes `total` bytes of body in chunks of `size`, as chunked transfer coding or raw. */
  async body(total: number, size: number, chunked: boolean): Promise<void> {
    for (let sent = 0; sent < total && !this.closed; sent += size) {
      const n = Math.min(size, total - sent);
      const part = Buffer.alloc(n, 0x61);
      const ok = this.s.write(
        chunked ? Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), part, Buffer.from('\r\n')]) : part,
      );
      if (!ok)
        await new Promise<void>((r) => {
          const done = () => {
            this.s.off('drain', done);
            this.s.off('close', done);
            r();
          };
          this.s.once('drain', done);
          this.s.once('close', done);
        });
      await new Promise((r) => setImmediate(r));
    }
    if (chunked && !this.closed) this.s.write('0\r\n\r\n');
  }
  head(extra: string): void {
    this.s.write(`POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n${extra}\r\n`);
  }
}

async function small(c: Conn): Promise<number | undefined> {
  c.head('content-length: 10\r\n');
  await c.body(10, 10, false);
  return (await c.response())?.status;
}

describe('over-limit bodies', () => {
  for (const chunked of [false, true]) {
    it(`${chunked ? 'chunked' : 'with a Content-Length'}: 413 with the usual error body, and the connection serves the next request`, {
      timeout: 10_000,
    }, async () => {
      const c = new Conn();
      const total = 64 * 1024;
      c.head(chunked ? 'transfer-encoding: chunked\r\n' : `content-length: ${total}\r\n`);
      await c.body(total, 8192, chunked);
      const r = await c.response();
      expect(r?.status).toBe(413);
      expect(JSON.parse(r?.body ?? '{}')).toEqual({ error: { code: 'BODY_TOO_LARGE' } });
      expect(c.writeError).toBeNull();
      expect(await small(c)).toBe(200);
      c.s.destroy();
    });
  }

  it('Expect: 100-continue with a declared length over the limit: the 413 at once, no 100 Continue, the body never sent', {
    timeout: 10_000,
  }, async () => {
    const c = new Conn();
    c.head(`content-length: ${LIMIT + 1}\r\nexpect: 100-continue\r\n`);
    const r = await c.response();
    expect(r?.status).toBe(413);
    expect(JSON.parse(r?.body ?? '{}')).toEqual({ error: { code: 'BODY_TOO_LARGE' } });
    // The announced body never comes, so the connection is closed rather than kept waiting for it.
    expect(r?.headers).toMatch(/connection: close/);
    await new Promise<void>((done) => (c.closed ? done() : c.s.once('close', () => done())));
    // Within the limit: 100 Continue, then the answer.
    const d = new Conn();
    d.head('content-length: 10\r\nexpect: 100-continue\r\n');
    expect((await d.response())?.status).toBe(100);
    await d.body(10, 10, false);
    expect(JSON.parse((await d.response())?.body ?? '{}')).toEqual({ bytes: 10 });
    d.s.destroy();
  });

  it('a chunked body within the limit is parsed as before', { timeout: 10_000 }, async () => {
    const c = new Conn();
    c.head('transfer-encoding: chunked\r\n');
    await c.body(LIMIT, 1000, true);
    const r = await c.response();
    expect(r?.status).toBe(200);
    expect(JSON.parse(r?.body ?? '{}')).toEqual({ bytes: LIMIT });
    expect(await small(c)).toBe(200);
    c.s.destroy();
  });

  for (const chunked of [false, true]) {
    it(`${chunked ? 'chunked' : 'with a Content-Length'}: a body that goes on past the drain cap has its connection cut once the 413 is out; the server keeps serving`, {
      timeout: 10_000,
    }, async () => {
      const c = new Conn();
      c.head(chunked ? 'transfer-encoding: chunked\r\n' : `content-length: ${4 * CAP}\r\n`);
      await c.body(2 * CAP, 16384, chunked);
      await new Promise<void>((r) => (c.closed ? r() : c.s.once('close', () => r())));
      expect(c.closed).toBe(true);
      expect((await c.response())?.status).toBe(413);
      const d = new Conn();
      expect(await small(d)).toBe(200);
      d.s.destroy();
    });
  }
});
