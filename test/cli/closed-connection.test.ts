/**
 * The CLI's message for a node it reached but that closed the connection without answering (src/cli/http.ts,
 * networkError): a node serving HTTPS over its connection limit closes new connections unanswered, and a
 * port that speaks something else than HTTP closes or resets one. It said "nothing answered at URL; is the
 * node running?", as for a refused connection, which sent the operator to start a node that was running.
 * Real servers on 127.0.0.1: one that takes each connection and closes it (after the request, or at once),
 * one that resets it, and a closed port.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchNodeJson, fetchNodeStatus } from '../../src/cli/http.ts';
import type { DropbearError } from '../../src/protocol/index.ts';

const sockets = new Set<Socket>();

function listen(onSocket: (s: Socket) => void): Promise<Server> {
  const s = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onSocket(socket);
  });
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r(s)));
}

/** Stops `s`, its connections first (close() waits for them). */
function stop(s: Server): Promise<unknown> {
  for (const socket of sockets) socket.destroy();
  return new Promise((r) => s.close(r));
}

const portOf = (s: Server) => (s.address() as { port: number }).port;

async function failure(p: Promise<unknown>): Promise<DropbearError> {
  try {
    await p;
  } catch (e) {
    return e as DropbearError;
  }
  throw new Error('it did not fail');
}

const CLOSED =
  /^the node at \S+ closed the connection without answering \(\w+\): it may be over its connection limit/;

let atOnce: Server; // closes each connection as soon as it is taken (an HTTPS node over its limit)
let afterRequest: Server; // closes it once the request came (a port that speaks something else)
let resets: Server; // resets it
let closedPort: number;

beforeAll(async () => {
  atOnce = await listen((s) => s.destroy());
  afterRequest = await listen((s) => s.once('data', () => s.destroy()));
  resets = await listen((s) => s.resetAndDestroy());
  const gone = await listen(() => {});
  closedPort = portOf(gone);
  await new Promise((r) => gone.close(r));
});

afterAll(async () => {
  for (const s of [atOnce, afterRequest, resets]) await stop(s);
});

describe('a connection taken and closed without an answer', () => {
  it('https, closed at once (an HTTPS node over its connection limit): NODE_UNREACHABLE saying it closed', async () => {
    const e = await failure(fetchNodeJson(`https://127.0.0.1:${portOf(atOnce)}/v1/status`, 5_000));
    expect(e.code).toBe('NODE_UNREACHABLE');
    expect(e.message).toMatch(CLOSED);
    expect(e.message).toMatch(/not speak http\/https as the URL says/);
    expect(e.message).not.toMatch(/is the node running/);
  });

  it('http, closed once the request came: the same', async () => {
    const e = await failure(fetchNodeJson(`http://127.0.0.1:${portOf(afterRequest)}/v1/status`, 5_000));
    expect(e.code).toBe('NODE_UNREACHABLE');
    expect(e.message).toMatch(CLOSED);
    expect(e.message).not.toMatch(/is the node running/);
  });

  it('reset (http and https, status and json): the same', async () => {
    for (const scheme of ['http', 'https']) {
      const url = `${scheme}://127.0.0.1:${portOf(resets)}/healthz`;
      for (const e of [
        await failure(fetchNodeStatus(url, 5_000)),
        await failure(fetchNodeJson(url, 5_000)),
      ]) {
        expect(e.code).toBe('NODE_UNREACHABLE');
        expect(e.message).toMatch(CLOSED);
      }
    }
  });

  it('a port that answers something that is not HTTP: says so', async () => {
    const other = await listen((s) => s.end('SSH-2.0-OpenSSH_9.6\r\n'));
    try {
      const e = await failure(fetchNodeJson(`http://127.0.0.1:${portOf(other)}/v1/status`, 5_000));
      expect(e.code).toBe('NODE_UNREACHABLE');
      expect(e.message).toMatch(/^\S+ answered something that is not HTTP \(HPE_\w+\)/);
      expect(e.message).not.toMatch(/is the node running/);
    } finally {
      await stop(other);
    }
  });
});

describe('a refused connection', () => {
  it('still NODE_UNREACHABLE "nothing answered …; is the node running?"', async () => {
    const e = await failure(fetchNodeJson(`http://127.0.0.1:${closedPort}/v1/status`, 5_000));
    expect(e.code).toBe('NODE_UNREACHABLE');
    expect(e.message).toMatch(/^nothing answered at \S+ \(ECONNREFUSED\); is the node running\?$/);
  });
});
