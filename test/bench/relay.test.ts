/**
 * The delaying TCP relay that emulates wide-area links for `npm run bench -- wan` (bench/lib/relay.ts):
 * each direction is delayed by the link's one-way delay, never early (in real time) and not later (on a
 * fake clock: no wall-clock upper bound, which a loaded machine breaks); order and bytes are kept; a
 * half-close is forwarded; close() ends everything; the relay process variant is stopped by close().
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type Relay, RelayProcess, startRelay } from '../../bench/lib/relay.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * Real turns of the event loop until `ok()` holds (setImmediate and Date are never faked here; the 60 s
 * is a guard against a hang, not a speed check).
 */
async function until(ok: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

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
    expect(relay.stats().accepted).toBe(1);
  });

  it('releases a chunk once its delay has passed, not later (on a fake clock: no wall-clock bound)', async () => {
    // The upper bound, which a loaded machine cannot break: the relay's clock and timers are faked (its
    // sockets are real), so a chunk is due exactly delayMs after it was read. It used to be asserted in
    // real time (the least of five round trips under 60 ms for 2 x 15 ms), which a stalled machine broke.
    const { port } = await echoServer();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const relay = await startRelay({ target: { host: '127.0.0.1', port }, delayMs: 15 });
    cleanups.push(() => relay.close());
    const s = await dial(relay.port);
    let back = '';
    s.on('data', (d: Buffer) => {
      back += d.toString();
    });
    s.write('ping');
    // Held: one timer armed for it, nothing forwarded until 15 ms have passed on the relay's clock.
    await until(() => vi.getTimerCount() === 1, 'the relay holds the chunk');
    vi.advanceTimersByTime(14);
    expect(relay.stats().bytesOut).toBe(0);
    vi.advanceTimersByTime(1);
    expect(relay.stats().bytesOut).toBe(4);
    // The echo comes back and is held the same 15 ms on the way back.
    await until(() => vi.getTimerCount() === 1, 'the relay holds the echo');
    vi.advanceTimersByTime(14);
    expect(relay.stats().bytesBack).toBe(0);
    vi.advanceTimersByTime(1);
    expect(relay.stats().bytesBack).toBe(4);
    await until(() => back === 'ping', 'the echo reaches the client');
  });

  it('with no delay forwards at once, holding nothing (on a fake clock)', async () => {
    const { port } = await echoServer();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const relay = await startRelay({ target: { host: '127.0.0.1', port }, delayMs: 0 });
    cleanups.push(() => relay.close());
    const s = await dial(relay.port);
    let back = '';
    s.on('data', (d: Buffer) => {
      back += d.toString();
    });
    s.write('ping');
    // There and back without the fake clock moving and without a timer ever armed.
    await until(() => back === 'ping' || vi.getTimerCount() > 0, 'the echo reaches the client');
    expect(vi.getTimerCount()).toBe(0);
    expect(back).toBe('ping');
    expect(relay.stats()).toMatchObject({ bytesOut: 4, bytesBack: 4 });
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
    await roundTrip(b, 'hello');
    // Each relay runs with its own delay: b's is 0, which forwards at once (the fake-clock test above);
    // asserted by its stats, not by a round trip under 20 ms, which a stalled machine broke.
    const stats = await p.stats();
    expect(stats.map((x) => [x.name, x.delayMs, x.accepted])).toEqual([
      ['a', 10, 1],
      ['b', 0, 1],
    ]);
    await p.close();
    expect(p.child.exitCode !== null || p.child.signalCode !== null).toBe(true);
  });
});
