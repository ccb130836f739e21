/**
 * The delaying TCP relay that emulates wide-area links for `npm run bench -- wan` (bench/lib/relay.ts):
 * each direction is delayed by the link's one-way delay, never early; order and bytes are kept; a
 * half-close is forwarded; close() ends everything; the relay process variant is stopped by close().
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type Relay, RelayProcess, startRelay } from '../../bench/lib/relay.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function echoServer(): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { server, port: (server.address() as { port: number }).port };
}

async function dial(port: number): Promise<Socket> {
  const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  s.setNoDelay(true);
  await new Promise((r) => s.once('connect', r));
  cleanups.push(() => {
    s.destroy();
  });
  return s;
}

async function roundTrip(s: Socket, msg: string): Promise<number> {
  const t = performance.now();
  const got = new Promise<void>((res) => {
    let buf = '';
    const on = (d: Buffer) => {
      buf += d.toString();
      if (buf.length >= msg.length) {
        s.off('data', on);
        res();
      }
    };
    s.on('data', on);
  });
  s.write(msg);
  await got;
  return performance.now() - t;
}

describe('delaying relay', () => {
  it('delays each direction by the one-way delay, never less', async () => {
    const { port } = await echoServer();
    const relay: Relay = await startRelay({ target: { host: '127.0.0.1', port }, delayMs: 15 });
    cleanups.push(() => relay.close());
    const s = await dial(relay.port);
    const rtts: number[] = [];
    for (let i = 0; i < 5; i++) rtts.push(await roundTrip(s, `ping-${i}`));
    for (const r of rtts) expect(r).toBeGreaterThanOrEqual(30);
    expect(Math.min(...rtts)).toBeLessThan(60);
    expect(relay.stats().accepted).toBe(1);
  });

  it('never listens on a port it was told to avoid (ports promised to nodes that start later)', async () => {
    const { port } = await echoServer();
    // A set that names whichever port the OS hands out first, so the relay must let it go and take another.
    const asked: number[] = [];
    const avoid = new (class extends Set<number> {
      override has(p: number): boolean {
        asked.push(p);
        return asked.length === 1;
      }
    })();
    const relay = await startRelay({ target: { host: '127.0.0.1', port }, delayMs: 0, avoid });
    cleanups.push(() => relay.close());
    expect(asked.length).toBe(2);
    expect(relay.port).toBe(asked[1]);
    // And it relays on the port it took: the echo comes back through it.
    const s = await dial(relay.port);
    await roundTrip(s, 'ping');
    expect(relay.stats().accepted).toBe(1);
  });

  it('keeps order and every byte under many small writes, and forwards a half-close', async () => {
    const { port } = await echoServer();
    const relay = await startRelay({ target: { host: '127.0.0.1', port }, delayMs: 5 });
    cleanups.push(() => relay.close());
    const s = await dial(relay.port);
    const n = 20_000;
    const chunks: Buffer[] = [];
    const ended = new Promise<void>((res) => s.on('end', () => res()));
    s.on('data', (d: Buffer) => chunks.push(d));
    for (let i = 0; i < n; i++) {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(i);
      s.write(b);
    }
    s.end();
    await ended;
    const all = Buffer.concat(chunks);
    expect(all.length).toBe(4 * n);
    for (let i = 0; i < n; i++) if (all.readUInt32LE(4 * i) !== i) throw new Error(`out of order at ${i}`);
    expect(relay.stats().bytesOut).toBe(4 * n);
    expect(relay.stats().bytesBack).toBe(4 * n);
  });

  it('close() destroys relayed connections and stops listening', async () => {
    const { port } = await echoServer();
    const relay = await startRelay({ target: { host: '127.0.0.1', port }, delayMs: 1 });
    const s = await dial(relay.port);
    await roundTrip(s, 'x');
    // The relay's side goes away: this (half-open) socket sees its end.
    const closed = new Promise<void>((res) => {
      s.on('end', () => res());
      s.on('close', () => res());
    });
    await relay.close();
    await closed;
    await expect(
      new Promise((res, rej) => {
        const c = connect(relay.port, '127.0.0.1');
        c.on('connect', () => {
          c.destroy();
          res('connected');
        });
        c.on('error', rej);
      }),
    ).rejects.toThrow();
  });

  it('runs a set of relays in a child process and stops it', async () => {
    const { port } = await echoServer();
    const p = await RelayProcess.start([
      { name: 'a', target: { host: '127.0.0.1', port }, delayMs: 10 },
      { name: 'b', target: { host: '127.0.0.1', port }, delayMs: 0 },
    ]);
    cleanups.push(() => p.close());
    const a = await dial(p.byName('a').port);
    const b = await dial(p.byName('b').port);
    expect(await roundTrip(a, 'hello')).toBeGreaterThanOrEqual(20);
    expect(await roundTrip(b, 'hello')).toBeLessThan(20);
    const stats = await p.stats();
    expect(stats.map((x) => x.accepted)).toEqual([1, 1]);
    await p.close();
    expect(p.child.exitCode !== null || p.child.signalCode !== null).toBe(true);
  });
});
