/**
 * HTTP on a raw socket (node:net), for requests a real client will not send: malformed request lines,
 * bad lengths, oversized headers, bodies that trickle in.
 */
import { connect, type Socket } from 'node:net';

export interface RawResponse {
  status: number;
  /** Header lines, lower-cased. */
  headers: string;
  body: string;
}

/**
 * One connection to 127.0.0.1:`port` (from `localAddress`, another loopback address such as 127.0.0.2,
 * when given); everything the server sends is kept.
 */
export class RawConn {
  readonly socket: Socket;
  readonly ready: Promise<void>;
  private buf = Buffer.alloc(0);
  closed = false;
  private wake: (() => void) | null = null;

  constructor(port: number, localAddress?: string) {
    this.socket = connect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) });
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('error', () => {});
    this.socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  write(data: string | Buffer): void {
    if (!this.closed) this.socket.write(data);
  }

  /** The next whole response (Content-Length bodies), or null if the connection closes first. */
  async response(timeoutMs = 5_000): Promise<RawResponse | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        const head = this.buf.subarray(0, end).toString();
        const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (this.buf.length >= end + 4 + len) {
          const body = this.buf.subarray(end + 4, end + 4 + len).toString();
          this.buf = this.buf.subarray(end + 4 + len);
          return { status: Number(head.split(' ')[1]), headers: head.toLowerCase(), body };
        }
      }
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('raw HTTP: no response within the time allowed');
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wake = null;
    }
  }

  /** Resolves once the server closed the connection; throws after `timeoutMs`. */
  async waitClosed(timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('raw HTTP: the server did not close the connection');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Sends `text` on a new connection; resolves with the first response and whether the server closed. */
export async function rawExchange(
  port: number,
  text: string | Buffer,
  timeoutMs = 5_000,
  localAddress?: string,
): Promise<{ res: RawResponse | null; closed: boolean }> {
  const c = new RawConn(port, localAddress);
  await c.ready;
  c.write(text);
  try {
    const res = await c.response(timeoutMs);
    await c.waitClosed(timeoutMs).catch(() => {});
    return { res, closed: c.closed };
  } finally {
    c.destroy();
  }
}

/**
 * Requests Node's HTTP parser refuses before any route runs, each with the code and status a server of
 * ours answers: a POST to `postPath` (with `headers`, e.g. a content type) carrying a negative length or
 * bad chunked encoding, an unknown method and oversized headers on `getPath`, and `garbage` as the whole
 * request. Also those Node answered itself with no body (so no code) or not at all: HTTP/1.1 without Host,
 * an `Expect` other than 100-continue, and CONNECT.
 */
export function unparsableHttpCases(
  postPath: string,
  getPath: string,
  garbage: string,
  headers = '',
): [what: string, text: string, code: string, status: number][] {
  const post = `POST ${postPath} HTTP/1.1\r\nhost: x\r\n${headers}`;
  return [
    ['Content-Length: -1', `${post}content-length: -1\r\n\r\n{}`, 'BAD_HTTP', 400],
    [
      'bad chunked encoding',
      `${post}transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
      'BAD_HTTP',
      400,
    ],
    ['an unknown method', `FROB ${getPath} HTTP/1.1\r\nhost: x\r\n\r\n`, 'BAD_HTTP', 400],
    ['a garbage request line', garbage, 'BAD_HTTP', 400],
    [
      'headers over 16 KiB',
      `GET ${getPath} HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`,
      'HEADERS_TOO_LARGE',
      431,
    ],
    ['HTTP/1.1 without Host', `GET ${getPath} HTTP/1.1\r\n\r\n`, 'BAD_HTTP', 400],
    [
      'an Expect other than 100-continue',
      `${post}expect: 200-ok\r\ncontent-length: 2\r\n\r\n{}`,
      'EXPECTATION_FAILED',
      417,
    ],
    ['CONNECT', 'CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n', 'BAD_HTTP', 400],
  ];
}
