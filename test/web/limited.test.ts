/**
 * The dashboard's bounded read of a node's answers (src/web/limited.ts), with Node's fetch (the same
 * Response and stream API as the browser's) against a real loopback server that answers as a faulty node
 * would: a Content-Length over the bound, no length and an endless body, or a length that lies.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLimited } from '../../src/web/limited.ts';

/** 14 bytes of UTF-8 (the é is two). */
const SMALL = Buffer.from('{"ok":"caf\u00e9"}');

describe('readLimited', () => {
  let server: Server;
  let base: string;
  /** Bytes the server wrote to the socket for the last endless answer before the client hung up. */
  let endlessSent = 0;
  let endlessClosed: Promise<void> = Promise.resolve();

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/small') {
        res.setHeader('content-length', String(SMALL.length));
        res.end(SMALL);
      } else if (req.url === '/declared-huge') {
        res.setHeader('content-length', String(5e9));
        res.write('x'.repeat(1000));
        // Never finishes: the client must not wait for the 5 GB.
      } else if (req.url === '/endless') {
        endlessSent = 0;
        let done: () => void = () => {};
        endlessClosed = new Promise((r) => {
          done = r;
        });
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        const pump = () => {
          while (!res.destroyed && endlessSent < 1e9) {
            endlessSent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
        };
        res.on('close', () => done());
        pump();
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('reads an answer within the bound whole, as UTF-8', async () => {
    const r = await fetch(`${base}/small`);
    expect(JSON.parse(await readLimited(r, 64, 'the small answer'))).toEqual({ ok: 'caf\u00e9' });
  });

  it('an answer of exactly the bound is read; one byte less of bound refuses it', async () => {
    await expect(readLimited(await fetch(`${base}/small`), 14, 'x')).resolves.toBe(SMALL.toString());
    await expect(readLimited(await fetch(`${base}/small`), 13, 'the status')).rejects.toThrow(
      /^ANSWER_TOO_LARGE: the status says it is 14 bytes/,
    );
  });

  it('refuses a Content-Length over the bound without reading the body', async () => {
    const r = await fetch(`${base}/declared-huge`);
    const e = await readLimited(r, 1 << 20, 'the genesis').catch((x: Error & { code?: string }) => x);
    expect(e).toBeInstanceOf(Error);
    expect((e as { code?: string }).code).toBe('ANSWER_TOO_LARGE');
    expect((e as Error).message).toMatch(
      /the genesis says it is 5,000,000,000 bytes, more than the 1,048,576/,
    );
  });

  it('stops reading an endless body at the bound and hangs up: the rest is never downloaded', async () => {
    const max = 4 << 20;
    const r = await fetch(`${base}/endless`);
    await expect(readLimited(r, max, 'the certificate')).rejects.toThrow(
      /^ANSWER_TOO_LARGE: the certificate ran past [\d,]+ bytes, more than the 4,194,304/,
    );
    await endlessClosed;
    // What the server got out before the close: the bound plus what sits in socket buffers, not 1 GB.
    expect(endlessSent).toBeLessThan(max + (32 << 20));
  });
});
