/**
 * The node-to-node transport over real sockets on 127.0.0.1 (port 0): mesh, order, large frames,
 * restart, impostors, garbage, bounded queues, TLS (when openssl is installed), no leaked handles.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { describe, expect, it, vi } from 'vitest';
import { type Relay, startRelay } from '../../bench/lib/relay.ts';
import {
  decodeChallenge,
  decodeOk,
  encodeAuth,
  encodeChallenge,
  encodeFrame,
  encodeHello,
  encodeOk,
  FrameDecoder,
  FrameError,
  formatAddress,
  handshakeTranscript,
  parseAddress,
  ROLE,
  WIRE_VERSION,
} from '../../src/node/frames.ts';
import { NodeMetrics, peerStatesOf } from '../../src/node/metrics.ts';
import {
  CERT_EXPIRY_WARNINGS_MS,
  certExpiryStage,
  FAULT_LOG_INTERVAL_MS,
  type Logger,
  MAX_TIMER_MS,
  type PeerState,
  Transport,
  type TransportOptions,
} from '../../src/node/transport.ts';
import {
  cryptoStats,
  type KeyPair,
  keyPairFromSeed,
  signTagged,
  TAGS,
  verifyTagged,
} from '../../src/protocol/crypto.ts';
import { DropbearError } from '../../src/protocol/errors.ts';
import { type Genesis, groupIdOf } from '../../src/protocol/messages.ts';
import { parsePromText, samplesOf } from '../support/prom-text.ts';
import { haveOpenssl, issuedCert, selfSignedCert } from '../support/tls.ts';

const HOST = '127.0.0.1';

function seed(tag: number, i: number): Uint8Array {
  const s = new Uint8Array(32);
  s[0] = tag;
  s[1] = i;
  s[31] = 0x5a;
  return s;
}

interface Group {
  genesis: Genesis;
  groupId: Uint8Array;
  keys: KeyPair[];
}

function makeGroup(n: number, tag = 1): Group {
  const keys = Array.from({ length: n }, (_, i) => keyPairFromSeed(seed(tag, i)));
  const genesis: Genesis = {
    version: 1,
    name: `transport-test-${n}-${tag}`,
    f: Math.floor((n - 1) / 3),
    nodes: keys.map((k, id) => ({
      id,
      publicKey: k.publicKey,
      address: `tcp://${HOST}:${7000 + id}`,
      owner: `owner ${id}`,
      modelName: `model ${id}`,
      modelDigest: new Uint8Array(32).fill(id),
      fee: 1,
    })),
    policy: { kind: 'top1', minAgree: 1 },
    treasury: keyPairFromSeed(seed(99, 0)).publicKey,
    balances: [],
    params: { expiryMs: 60_000, maxClockSkewMs: 1000, maxInputBytes: 1 << 20, inputType: 'image/png' },
  };
  return { genesis, groupId: groupIdOf(genesis), keys };
}

interface LogLine {
  level: 'info' | 'warn' | 'error';
  obj: object;
  msg: string;
}
function collector(): { lines: LogLine[]; logger: Logger } {
  const lines: LogLine[] = [];
  return {
    lines,
    logger: {
      info: (obj, msg) => lines.push({ level: 'info', obj, msg }),
      warn: (obj, msg) => lines.push({ level: 'warn', obj, msg }),
      error: (obj, msg) => lines.push({ level: 'error', obj, msg }),
    },
  };
}

/**
 * The transports' clock (performance.now) under the test's hand: `freeze()` holds it still, `advance(ms)` moves
 * it on (held or not), `thaw()` lets it run again from where it is, `restore()` gives back the real one.
 */
function handClock() {
  const real = performance.now.bind(performance);
  let frozen: number | null = null;
  let shift = 0;
  const spy = vi.spyOn(performance, 'now').mockImplementation(() => frozen ?? real() + shift);
  return {
    freeze: () => {
      frozen = real() + shift;
    },
    advance: (ms: number) => {
      if (frozen !== null) frozen += ms;
      else shift += ms;
    },
    thaw: () => {
      if (frozen !== null) shift = frozen - real();
      frozen = null;
    },
    restore: () => spy.mockRestore(),
  };
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const FAST: Partial<TransportOptions> = { backoff: { minMs: 20, maxMs: 200 }, handshakeTimeoutMs: 2_000 };

/** Node `id`'s transport in group `g`, listening on a free loopback port unless `o` says otherwise. */
function transportFor(g: Group, id: number, o: Partial<TransportOptions> = {}): Transport {
  return new Transport({ id, genesis: g.genesis, key: g.keys[id], listen: { host: HOST, port: 0 }, ...o });
}

/** Start n transports in descending id order, so that each knows the ports of the nodes it dials. */
async function startMesh(
  g: Group,
  opts: (id: number) => Partial<TransportOptions> = () => ({}),
  ids = g.keys.map((_, i) => i),
): Promise<Transport[]> {
  const ts: Transport[] = [];
  const ports = new Map<number, number>();
  for (const id of [...ids].sort((a, b) => b - a)) {
    const peers = new Map<number, { host: string; port: number }>();
    for (const [pid, port] of ports) if (pid > id) peers.set(pid, { host: HOST, port });
    const t = new Transport({
      id,
      genesis: g.genesis,
      key: g.keys[id],
      listen: { host: HOST, port: 0 },
      peers,
      ...FAST,
      ...opts(id),
    });
    ports.set(id, await t.start());
    ts[id] = t;
  }
  return ts;
}

function connected(t: Transport, peers?: number[]): boolean {
  return t
    .stats()
    .peers.filter((p) => !peers || peers.includes(p.id))
    .every((p) => p.state === 'connected');
}

async function waitMesh(ts: Transport[]): Promise<void> {
  const live = ts.filter(Boolean);
  const ids = live.map((t) => t.id);
  await waitFor(() => live.every((t) => connected(t, ids)), 'the mesh to connect');
}

/** Every node sends `k` numbered frames to every other and checks they all arrive, in order. */
async function exchange(ts: Transport[], k: number, tag: number): Promise<void> {
  const live = ts.filter(Boolean);
  const got = new Map<string, number>();
  const offs = live.map((t) =>
    t.onFrame((from, b) => {
      if (b[0] !== tag) return;
      const key = `${from}>${t.id}`;
      const n = got.get(key) ?? 0;
      expect(b.readUInt32BE(1)).toBe(n);
      expect(b.readUInt32BE(5)).toBe(from);
      got.set(key, n + 1);
    }),
  );
  for (const a of live)
    for (const b of live) {
      if (a === b) continue;
      for (let i = 0; i < k; i++) {
        const f = Buffer.alloc(16);
        f[0] = tag;
        f.writeUInt32BE(i, 1);
        f.writeUInt32BE(a.id, 5);
        a.send(b.id, f);
      }
    }
  await waitFor(
    () => [...got.values()].filter((n) => n === k).length === live.length * (live.length - 1),
    'frames',
  );
  for (const off of offs) off();
}

function activeCount(kind: string): number {
  return process.getActiveResourcesInfo().filter((r) => r === kind).length;
}

// ---------------------------------------------------------------------------------------------
// A hand-made peer speaking the wire protocol (to play impostors and Byzantine nodes).

class RawPeer {
  readonly socket: net.Socket;
  readonly decoder = new FrameDecoder(1 << 20, true);
  keepalives = 0;
  readonly frames: Buffer[] = [];
  readonly sent: Buffer[] = [];
  closed = false;
  private waiters: (() => void)[] = [];
  readonly ready: Promise<void>;

  constructor(port: number) {
    this.socket = net.connect({ host: HOST, port });
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('error', () => {});
    this.socket.on('data', (c: Buffer) => {
      this.decoder.push(c);
      try {
        for (let f = this.decoder.next(); f; f = this.decoder.next()) {
          if (f.length === 0) this.keepalives++;
          else this.frames.push(Buffer.from(f));
        }
      } catch {
        this.socket.destroy(); // not our framing (a TLS alert, say)
      }
      this.wake();
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  write(b: Buffer): void {
    this.sent.push(b);
    this.socket.write(b);
  }

  /** The next frame from the transport, or null once the connection is closed. */
  async next(timeoutMs = 5_000): Promise<Buffer | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.frames.length > 0) return this.frames.shift()!;
      if (this.closed) return null;
      if (Date.now() > deadline) throw new Error('raw peer: no frame and no close');
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  async waitClosed(timeoutMs = 5_000): Promise<void> {
    await waitFor(() => this.closed, 'the transport to close the raw connection', timeoutMs);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * Dial `port` as node `from` towards node `to`, signing with `key`. Resolves with whether the
 * transport answered OK (the peer then is authenticated and may send frames); an OK must carry node
 * `to`'s signature over this handshake.
 */
async function rawHandshake(
  port: number,
  g: Group,
  o: { from: number; to: number; key: KeyPair; groupId?: Uint8Array },
): Promise<{ ok: boolean; peer: RawPeer; stage: string }> {
  const peer = new RawPeer(port);
  await peer.ready;
  const nonceD = randomBytes(32);
  peer.write(
    encodeFrame(
      encodeHello({
        version: WIRE_VERSION,
        groupId: o.groupId ?? g.groupId,
        from: o.from,
        to: o.to,
        nonce: nonceD,
      }),
    ),
  );
  const chFrame = await peer.next();
  if (!chFrame) return { ok: false, peer, stage: 'hello' };
  const ch = decodeChallenge(chFrame);
  if (!ch) throw new Error('expected a CHALLENGE');
  const transcript = (role: number) =>
    handshakeTranscript(WIRE_VERSION, role, o.from, o.to, nonceD, ch.nonce, new Uint8Array(0));
  peer.write(encodeFrame(encodeAuth(signTagged(TAGS.handshake, g.groupId, transcript(ROLE.dialer), o.key))));
  const ok = await peer.next();
  if (!ok) return { ok: false, peer, stage: 'auth' };
  const sigA = decodeOk(ok);
  if (!sigA) throw new Error('expected an OK');
  const acceptorKey = g.genesis.nodes.find((n) => n.id === o.to)!.publicKey;
  expect(verifyTagged(TAGS.handshake, g.groupId, transcript(ROLE.acceptor), sigA, acceptorKey)).toBe(true);
  return { ok: true, peer, stage: 'done' };
}

// ---------------------------------------------------------------------------------------------

describe('frames', () => {
  it('parses frames split at every byte and packed into one chunk', () => {
    const payloads = [Buffer.from('a'), randomBytes(300), Buffer.from('hello'), randomBytes(70_000)];
    const wire = Buffer.concat(payloads.map((p) => encodeFrame(p)));
    for (const step of [1, 2, 3, 5, 7, 64, 4096, wire.length]) {
      const d = new FrameDecoder(1 << 20);
      const out: Buffer[] = [];
      for (let i = 0; i < wire.length; i += step) {
        d.push(wire.subarray(i, i + step));
        for (let f = d.next(); f; f = d.next()) out.push(Buffer.from(f));
      }
      expect(out.map((b) => b.toString('hex'))).toEqual(payloads.map((b) => b.toString('hex')));
      expect(d.pendingBytes).toBe(0);
    }
  });

  it('holds a frame trickled a byte per chunk in a few buffers, not one per chunk; frames kept as views stay intact', () => {
    // A peer may send a frame within the limit one byte per TCP segment: the decoder kept every read as its
    // own Buffer, some 200 bytes of memory per byte or two of payload (a 16 MiB frame: gigabytes).
    const payload = randomBytes(100_000);
    const d = new FrameDecoder(1 << 20);
    const wire = encodeFrame(payload);
    let early = 0;
    for (let i = 0; i < wire.length - 1; i++) {
      d.push(wire.subarray(i, i + 1));
      if (d.next() !== null) early++;
    }
    expect(early).toBe(0);
    expect(d.heldBuffers).toBeLessThanOrEqual(Math.ceil(wire.length / 16_384) + 1);
    expect(d.pendingBytes).toBe(wire.length - 1);
    d.push(wire.subarray(wire.length - 1));
    expect(Buffer.compare(d.next()!, payload)).toBe(0);
    expect(d.heldBuffers).toBe(0);
    // Small and large chunks mixed, each frame kept as returned (a view) until the end.
    const frames = Array.from({ length: 200 }, (_, i) => randomBytes(1 + ((i * 7919) % 3000)));
    const all = Buffer.concat(frames.map((f) => encodeFrame(f)));
    const kept: Buffer[] = [];
    for (let i = 0, k = 0; i < all.length; k++) {
      const step = [1, 3, 1500, 17, 4096, 900][k % 6];
      d.push(all.subarray(i, i + step));
      i += step;
      for (let f = d.next(); f; f = d.next()) kept.push(f);
    }
    expect(kept.map((b) => b.toString('hex'))).toEqual(frames.map((b) => b.toString('hex')));
  });

  it('refuses a zero or oversized length as soon as the header is in', () => {
    const d = new FrameDecoder(100);
    d.push(Buffer.from([0, 0, 0, 101]));
    expect(() => d.next()).toThrow(FrameError);
    const z = new FrameDecoder(100);
    z.push(Buffer.from([0, 0, 0, 0]));
    expect(() => z.next()).toThrow(/length 0/);
    const keepalive = new FrameDecoder(100, true);
    keepalive.push(Buffer.from([0, 0, 0, 0, 0, 0, 0, 1, 7]));
    expect(keepalive.next()?.length).toBe(0);
    expect([...keepalive.next()!]).toEqual([7]);
    const ok = new FrameDecoder(100);
    ok.push(Buffer.from([0, 0, 0, 100, 1]));
    expect(ok.next()).toBeNull();
    expect(ok.pendingBytes).toBe(5);
  });

  it('parses tcp://host:port addresses with clear errors', () => {
    expect(parseAddress('tcp://127.0.0.1:7000')).toEqual({ host: '127.0.0.1', port: 7000 });
    expect(parseAddress('tcp://node-1.example:65535')).toEqual({ host: 'node-1.example', port: 65535 });
    expect(parseAddress('tcp://[::1]:7001')).toEqual({ host: '::1', port: 7001 });
    expect(formatAddress({ host: '::1', port: 7001 })).toBe('tcp://[::1]:7001');
    for (const [a, why] of [
      ['127.0.0.1:7000', /expected tcp:\/\/host:port/],
      ['http://x:1', /scheme http/],
      ['tcp://x', /missing :port/],
      ['tcp://x:0', /out of range/],
      ['tcp://x:70000', /out of range/],
      ['tcp://x:abc', /not a number/],
      ['tcp://:7000', /empty host/],
      ['tcp://::1:7000', /IPv6/],
      ['sim://node-1', /scheme sim/],
    ] as const) {
      expect(() => parseAddress(a), a).toThrow(why);
    }
  });
});

describe('transport', () => {
  it('4 nodes form a full mesh and exchange frames both ways: 5 MiB frames, 10,000 frames in order per link', async () => {
    const g = makeGroup(4);
    const ts = await startMesh(g);
    try {
      await waitMesh(ts);
      for (const t of ts) {
        const s = t.stats();
        expect(s.peers.map((p) => p.role)).toEqual(s.peers.map((p) => (p.id > t.id ? 'dial' : 'accept')));
      }
      const SMALL = 10_000;
      const big = (from: number) => {
        const b = Buffer.alloc(5 * 1024 * 1024);
        for (let i = 0; i < b.length; i += 4096) b[i] = (i / 4096 + from) & 0xff;
        b[0] = 2;
        b.writeUInt32BE(SMALL / 2, 1);
        b.writeUInt32BE(from, 5);
        return b;
      };
      const bigHash = ts.map((t) => createHash('sha256').update(big(t.id)).digest('hex'));
      const next = new Map<string, number>();
      const errors: string[] = [];
      let bigSeen = 0;
      for (const t of ts)
        t.onFrame((from, b) => {
          const key = `${from}>${t.id}`;
          const n = next.get(key) ?? 0;
          const seq = b.readUInt32BE(1);
          if (seq !== n) errors.push(`${key}: got ${seq}, expected ${n}`);
          if (b.readUInt32BE(5) !== from) errors.push(`${key}: tagged with the wrong peer`);
          if (b[0] === 2) {
            bigSeen++;
            if (createHash('sha256').update(b).digest('hex') !== bigHash[from])
              errors.push(`${key}: big frame`);
          } else if (b.length !== 9 + (seq % 200)) errors.push(`${key}: length`);
          next.set(key, n + 1);
        });
      for (const a of ts) {
        const bigFrame = big(a.id);
        for (const b of ts) {
          if (a === b) continue;
          for (let i = 0; i <= SMALL; i++) {
            if (i === SMALL / 2) {
              a.send(b.id, bigFrame);
              continue;
            }
            const f = Buffer.alloc(9 + (i % 200), 0xab);
            f[0] = 1;
            f.writeUInt32BE(i, 1);
            f.writeUInt32BE(a.id, 5);
            a.send(b.id, f);
          }
        }
      }
      await waitFor(
        () => next.size === 12 && [...next.values()].every((n) => n === SMALL + 1),
        'all frames on all 12 links',
        20_000,
      );
      expect(errors).toEqual([]);
      expect(bigSeen).toBe(12);
      for (const t of ts)
        for (const p of t.stats().peers) {
          expect(p.framesOut).toBe(SMALL + 1);
          expect(p.framesIn).toBe(SMALL + 1);
          expect(p.drops).toBe(0);
          expect(p.badFrames).toBe(0);
          expect(p.queuedFrames).toBe(0);
        }

      // Throughput, for the record only (not asserted): 200-byte frames over one link, 0 → 1.
      const N = 200_000;
      const WINDOW = 50_000;
      let received = 0;
      ts[1].onFrame((from, b) => {
        if (from === 0 && b[0] === 3) received++;
      });
      const frame = Buffer.alloc(200, 7);
      frame[0] = 3;
      const t0 = performance.now();
      let sent = 0;
      while (sent < N) {
        const until = Math.min(N, received + WINDOW);
        for (; sent < until; sent++) ts[0].send(1, frame);
        await new Promise((r) => setImmediate(r));
      }
      await waitFor(() => received === N, 'throughput frames');
      const secs = (performance.now() - t0) / 1000;
      console.log(
        `transport throughput (not asserted): ${N} frames of 200 B over one link in ${secs.toFixed(2)} s = ` +
          `${Math.round(N / secs).toLocaleString('en')} frames/s`,
      );
    } finally {
      await Promise.all(ts.map((t) => t.stop()));
    }
  });

  it('reconnects a peer that was stopped and restarted; frames queued meanwhile are delivered', async () => {
    const g = makeGroup(4);
    const ts = await startMesh(g);
    try {
      await waitMesh(ts);
      const port2 = ts[2].boundPort!;
      const states: PeerState[] = [];
      ts[0].onPeerState((peer, s) => peer === 2 && states.push(s));
      await ts[2].stop();
      await waitFor(() => ts[0].stats().peers[1].state !== 'connected', 'node 0 to notice');
      await waitFor(() => ts[3].stats().peers[2].state === 'waiting', 'node 3 to notice');
      // Queued while node 2 is down.
      for (let i = 0; i < 100; i++) {
        const f = Buffer.alloc(8);
        f[0] = 9;
        f.writeUInt32BE(i, 1);
        ts[0].send(2, f);
      }
      await waitFor(() => ts[0].stats().peers[1].dialFailures > 1, 'failed redials');

      const queued: number[] = [];
      ts[2] = transportFor(g, 2, {
        listen: { host: HOST, port: port2 },
        peers: new Map([[3, { host: HOST, port: ts[3].boundPort! }]]),
        ...FAST,
      });
      ts[2].onFrame((from, b) => from === 0 && b[0] === 9 && queued.push(b.readUInt32BE(1)));
      await ts[2].start();
      await waitMesh(ts);
      await waitFor(() => queued.length === 100, 'the queued frames');
      expect(queued).toEqual(Array.from({ length: 100 }, (_, i) => i));
      await exchange(ts, 50, 10);
      expect(states).toContain('backoff');
      expect(states.at(-1)).toBe('connected');
      const p02 = ts[0].stats().peers.find((p) => p.id === 2)!;
      expect(p02.reconnects).toBe(1);
      expect(ts[3].stats().peers.find((p) => p.id === 2)!.reconnects).toBe(1);
    } finally {
      await Promise.all(ts.map((t) => t.stop()));
    }
  });

  it('refuses impostors: unknown key, unknown id, another node’s id, wrong group or target, dial rule, replayed handshake', async () => {
    const g = makeGroup(4);
    const logs = collector();
    const ts = await startMesh(g, (id) => (id === 1 ? { logger: logs.logger } : {}));
    try {
      await waitMesh(ts);
      const port1 = ts[1].boundPort!;
      const leaked: number[] = [];
      ts[1].onFrame((from, b) => b.toString().startsWith('IMPOSTOR') && leaked.push(from));
      const failures = () => ts[1].stats().inbound.handshakeFailures;
      const stranger = keyPairFromSeed(seed(77, 0));

      const attempts: [string, Parameters<typeof rawHandshake>[2], string][] = [
        ['a key not in the genesis, claiming node 0', { from: 0, to: 1, key: stranger }, 'auth'],
        ['an id not in the genesis', { from: 9, to: 1, key: stranger }, 'hello'],
        ["node 3's key claiming to be node 0", { from: 0, to: 1, key: g.keys[3] }, 'auth'],
        ['another group', { from: 0, to: 1, key: g.keys[0], groupId: new Uint8Array(32) }, 'hello'],
        ['a HELLO meant for node 2', { from: 0, to: 2, key: g.keys[0] }, 'hello'],
        // (A HELLO from node 2, which node 1 dials, is a wake-up: closed too, not counted. See below.)
      ];
      for (const [what, o, stage] of attempts) {
        const before = failures();
        const r = await rawHandshake(port1, g, o);
        expect(r.ok, what).toBe(false);
        expect(r.stage, what).toBe(stage);
        r.peer.socket.write(encodeFrame(Buffer.from('IMPOSTOR')));
        await r.peer.waitClosed();
        await waitFor(() => failures() === before + 1, `${what} to be counted`);
      }

      // A genuine handshake as node 0 (a captured one), then its bytes replayed on a fresh connection.
      const genuine = await rawHandshake(port1, g, { from: 0, to: 1, key: g.keys[0] });
      expect(genuine.ok).toBe(true);
      const captured = Buffer.concat(genuine.peer.sent);
      genuine.peer.destroy();
      const before = failures();
      const replay = new RawPeer(port1);
      await replay.ready;
      replay.write(captured);
      replay.write(encodeFrame(Buffer.from('IMPOSTOR')));
      const ch = await replay.next();
      expect(ch && decodeChallenge(ch)).toBeTruthy(); // a fresh challenge…
      expect(await replay.next()).toBeNull(); // …then the old AUTH fails and the connection closes
      await waitFor(() => failures() === before + 1, 'the replay to be counted');

      // A fake acceptor: node 0 dials "node 2" but finds someone answering with a wrong key.
      const fake = net.createServer((s) => {
        const d = new FrameDecoder(1024);
        const nonceA = randomBytes(32);
        let nonceD: Buffer | null = null;
        s.on('error', () => {});
        s.on('data', (c: Buffer) => {
          d.push(c);
          for (let f = d.next(); f; f = d.next()) {
            if (!nonceD) {
              nonceD = Buffer.from(f.subarray(42, 74));
              s.write(encodeFrame(encodeChallenge({ version: WIRE_VERSION, from: 2, to: 0, nonce: nonceA })));
              continue;
            }
            const sig = signTagged(
              TAGS.handshake,
              g.groupId,
              handshakeTranscript(WIRE_VERSION, ROLE.acceptor, 0, 2, nonceD, nonceA, new Uint8Array(0)),
              stranger,
            );
            s.write(encodeFrame(encodeOk(sig)));
          }
        });
      });
      await new Promise<void>((r) => fake.listen(0, HOST, r));
      const fakePort = (fake.address() as net.AddressInfo).port;
      const fakeLogs = collector();
      const victim = transportFor(g, 0, {
        // All to the fake (a second genuine node 0 would displace the real one at nodes 1 and 3).
        peers: new Map([
          [1, { host: HOST, port: fakePort }],
          [2, { host: HOST, port: fakePort }],
          [3, { host: HOST, port: fakePort }],
        ]),
        ...FAST,
        logger: fakeLogs.logger,
      });
      await victim.start();
      await waitFor(() => victim.stats().peers[1].dialFailures >= 2, 'the fake acceptor to be refused');
      expect(victim.stats().peers.map((p) => p.connects)).toEqual([0, 0, 0]);
      expect(
        fakeLogs.lines.some(
          (l) =>
            l.level === 'warn' &&
            /bad signature for node 2/.test(String((l.obj as { reason?: string }).reason)),
        ),
      ).toBe(true);
      await victim.stop();
      await new Promise<void>((r) => fake.close(() => r()));

      expect(leaked).toEqual([]);
      // The first impostor is logged; the others, of the same code within 10 s, only counted (above).
      const bad = logs.lines.filter(
        (l) => l.level === 'warn' && (l.obj as { code?: string }).code === 'HANDSHAKE_BAD',
      );
      expect((bad[0].obj as { reason: string }).reason).toBe('handshake: bad signature for node 0');
      // The real node 0 (displaced by the genuine raw handshake, then by the victim) and everyone else still talk.
      await waitMesh(ts);
      await exchange(ts, 20, 11);
    } finally {
      await Promise.all(ts.map((t) => t.stop()));
    }
  });

  it('signs nothing for a dialer that has not proven a genesis key, and checks no more than its one AUTH', async () => {
    // Version 1 signed a CHALLENGE for any HELLO: whoever reached the port got an Ed25519 signature per
    // connection (and a signature over a nonceD of its choosing) without holding a key.
    const g = makeGroup(2, 23);
    const t1 = transportFor(g, 1, {
      ...FAST,
    });
    const stranger = keyPairFromSeed(seed(77, 1));
    try {
      const port1 = await t1.start();
      const signs0 = cryptoStats.signs;
      const verifies0 = cryptoStats.verifies;
      let ourSigns = 0; // what this test signs itself, as the impostors (the counts are process-wide)
      let auths = 0;
      /** Everything the acceptor sent on one connection, until it closed it. */
      const attempt = async (
        then: 'garbage' | 'hello' | 'random auth' | "a stranger's auth" | 'auth for another handshake',
      ): Promise<Buffer[]> => {
        const r = new RawPeer(port1);
        await r.ready;
        if (then === 'garbage') r.write(encodeFrame(Buffer.concat([Buffer.from([0xee]), randomBytes(59)])));
        else {
          const nonceD = randomBytes(32);
          r.write(
            encodeFrame(
              encodeHello({ version: WIRE_VERSION, groupId: g.groupId, from: 0, to: 1, nonce: nonceD }),
            ),
          );
          const ch = await r.next();
          const c = ch && decodeChallenge(ch);
          if (!c) throw new Error('expected a CHALLENGE');
          if (then === 'hello') {
            r.destroy();
            return [ch, ...r.frames];
          }
          const body = (nonceA: Uint8Array) =>
            handshakeTranscript(WIRE_VERSION, ROLE.dialer, 0, 1, nonceD, nonceA, new Uint8Array(0));
          let sig: Uint8Array = randomBytes(64);
          if (then === "a stranger's auth")
            sig = signTagged(TAGS.handshake, g.groupId, body(c.nonce), stranger);
          // Node 0's real key, but over another challenge: what a captured AUTH brings.
          if (then === 'auth for another handshake')
            sig = signTagged(TAGS.handshake, g.groupId, body(randomBytes(32)), g.keys[0]);
          if (then !== 'random auth') ourSigns++;
          auths++;
          r.write(encodeFrame(encodeAuth(sig)));
          await r.waitClosed();
          return [ch, ...r.frames];
        }
        await r.waitClosed();
        return r.frames;
      };
      for (let i = 0; i < 5; i++) {
        expect(await attempt('garbage')).toEqual([]);
        for (const then of [
          'hello',
          'random auth',
          "a stranger's auth",
          'auth for another handshake',
        ] as const) {
          // Before the dialer's proof the acceptor sends one frame, its CHALLENGE: 42 bytes, no signature.
          const got = await attempt(then);
          expect(
            got.map((f) => f.length),
            then,
          ).toEqual([42]);
          expect(decodeChallenge(got[0]), then).toMatchObject({ version: WIRE_VERSION, from: 1, to: 0 });
        }
      }
      await waitFor(() => t1.stats().inbound.handshakeFailures === 5 * 5, 'every attempt to be refused');
      expect(cryptoStats.signs - signs0).toBe(ourSigns); // not one of them by the acceptor
      expect(cryptoStats.verifies - verifies0).toBe(auths); // one check per AUTH, none before
      expect(t1.stats().inbound.authenticated).toBe(0);

      // Node 0 itself: its AUTH checked, then the acceptor signs its OK (rawHandshake checks that signature).
      const honest = await rawHandshake(port1, g, { from: 0, to: 1, key: g.keys[0] });
      expect(honest.ok).toBe(true);
      expect(cryptoStats.signs - signs0).toBe(ourSigns + 2);
      expect(t1.stats().inbound.authenticated).toBe(1);
      honest.peer.destroy();
    } finally {
      await t1.stop();
    }
  });

  it('honest nodes connect when all start at once, each dialling and accepting, and when two handshakes of one pair overlap', async () => {
    const g = makeGroup(4, 25);
    // Ports known before any node starts, so that all four start (listen and dial) in the same turn.
    const ports: number[] = [];
    for (let i = 0; i < 4; i++) {
      const s = net.createServer();
      await new Promise<void>((r) => s.listen(0, HOST, r));
      ports.push((s.address() as net.AddressInfo).port);
      await new Promise<void>((r) => s.close(() => r()));
    }
    const make = (id: number) =>
      new Transport({
        id,
        genesis: g.genesis,
        key: g.keys[id],
        listen: { host: HOST, port: ports[id] },
        peers: new Map(ports.map((port, pid) => [pid, { host: HOST, port }])),
        ...FAST,
      });
    const ts = g.keys.map((_, id) => make(id));
    try {
      await Promise.all(ts.map((t) => t.start()));
      await waitMesh(ts);
      await exchange(ts, 20, 16);

      // Two handshakes as node 0 towards node 3 in flight together, their steps interleaved: each is
      // answered over its own nonces, and the one authenticated last replaces the other. (The real node 0
      // is stopped meanwhile: it would dial again as soon as it was displaced, and displace these.)
      await ts[0].stop();
      const port3 = ts[3].boundPort!;
      const a = new RawPeer(port3);
      const b = new RawPeer(port3);
      await Promise.all([a.ready, b.ready]);
      const nonces = [randomBytes(32), randomBytes(32)];
      const hello = (nonce: Uint8Array) =>
        encodeFrame(encodeHello({ version: WIRE_VERSION, groupId: g.groupId, from: 0, to: 3, nonce }));
      a.write(hello(nonces[0]));
      b.write(hello(nonces[1]));
      const chs = [decodeChallenge((await a.next())!)!, decodeChallenge((await b.next())!)!];
      const body = (i: number, role: number) =>
        handshakeTranscript(WIRE_VERSION, role, 0, 3, nonces[i], chs[i].nonce, new Uint8Array(0));
      const auth = (i: number) =>
        encodeFrame(encodeAuth(signTagged(TAGS.handshake, g.groupId, body(i, ROLE.dialer), g.keys[0])));
      b.write(auth(1));
      const okB = decodeOk((await b.next())!);
      a.write(auth(0));
      const okA = decodeOk((await a.next())!);
      const key3 = g.genesis.nodes[3].publicKey;
      expect(verifyTagged(TAGS.handshake, g.groupId, body(0, ROLE.acceptor), okA!, key3)).toBe(true);
      expect(verifyTagged(TAGS.handshake, g.groupId, body(1, ROLE.acceptor), okB!, key3)).toBe(true);
      await b.waitClosed(); // replaced by a, authenticated after it
      expect(a.closed).toBe(false);
      const got: string[] = [];
      ts[3].onFrame((from, f) => from === 0 && got.push(f.toString()));
      a.write(encodeFrame(Buffer.from('over a')));
      await waitFor(() => got.includes('over a'), 'a frame over the newest connection');
      a.destroy();
      ts[0] = make(0);
      await ts[0].start();
      await waitMesh(ts);
      await exchange(ts, 20, 17);
    } finally {
      await Promise.all(ts.map((t) => t.stop()));
    }
  });

  it('refuses a peer of another wire version at the handshake, both sides logging PEER_VERSION_MISMATCH with both versions; no quarantine', async () => {
    const g = makeGroup(2, 26);
    const other = WIRE_VERSION + 1;
    const pair = async (dialerVersion: number, acceptorVersion: number) => {
      const logs = [collector(), collector()];
      const t1 = transportFor(g, 1, {
        ...FAST,
        wireVersion: acceptorVersion,
        logger: logs[1].logger,
      });
      const port1 = await t1.start();
      const t0 = transportFor(g, 0, {
        peers: new Map([[1, { host: HOST, port: port1 }]]),
        ...FAST,
        wireVersion: dialerVersion,
        logger: logs[0].logger,
      });
      await t0.start();
      return { ts: [t0, t1], logs, port1 };
    };
    const codes = (lines: LogLine[]) =>
      lines
        .filter((l) => l.level === 'warn')
        .map((l) => [(l.obj as { code?: string }).code, (l.obj as { reason?: string }).reason]);

    for (const [dv, av] of [
      [other, WIRE_VERSION],
      [WIRE_VERSION, other],
    ]) {
      const { ts, logs } = await pair(dv, av);
      try {
        await waitFor(() => ts[0].stats().peers[0].dialFailures >= 3, 'dials to be refused');
        await waitFor(() => ts[1].stats().inbound.handshakeFailures >= 3, 'the refusals to be counted');
        for (const t of ts)
          expect(t.stats().peers[0], `dialer ${dv}, acceptor ${av}`).toMatchObject({
            connects: 0,
            quarantines: 0,
            quarantinedMs: 0,
            badFrames: 0,
          });
        // Logged once (anyone can send one; the others within 10 s are only counted).
        const refused = codes(logs[1].lines);
        expect(refused.length).toBe(1);
        for (const line of refused)
          expect(line).toEqual([
            'PEER_VERSION_MISMATCH',
            `handshake: the peer speaks wire version ${dv}, this node ${av}`,
          ]);
        // The dialer hears why (a VERSION answer), where it used to see the connection closed.
        expect(codes(logs[0].lines)[0]).toEqual([
          'PEER_VERSION_MISMATCH',
          `handshake: node 1 speaks wire version ${av}, this node ${dv}`,
        ]);
        expect(ts[0].stats().peers[0].lastError).toMatch(/wire version/);
      } finally {
        await Promise.all(ts.map((t) => t.stop()));
      }
    }

    // A node of version 1 (its HELLO laid out as this one's), and a HELLO this version cannot parse (a later
    // layout): each answered with VERSION(ours) and refused naming its version.
    const { ts, logs, port1 } = await pair(WIRE_VERSION, WIRE_VERSION);
    const clock = handClock();
    try {
      await waitMesh(ts); // same version: connected at once
      for (const [v, hello] of [
        [1, encodeHello({ version: 1, groupId: g.groupId, from: 0, to: 1, nonce: randomBytes(32) })],
        [200, Buffer.concat([Buffer.from([1, 200]), randomBytes(100)])],
      ] as const) {
        // Past the one logged for version 1: within 10 s it would only be counted. (Once: twice would pass the
        // 20 s idle timeout of the connection from node 0.)
        if (v === 200) clock.advance(FAULT_LOG_INTERVAL_MS);
        const r = new RawPeer(port1);
        await r.ready;
        r.write(encodeFrame(hello));
        expect([...((await r.next()) ?? [])]).toEqual([5, WIRE_VERSION]);
        await r.waitClosed();
        await waitFor(
          () =>
            codes(logs[1].lines).some(
              ([code, reason]) =>
                code === 'PEER_VERSION_MISMATCH' &&
                reason === `handshake: the peer speaks wire version ${v}, this node ${WIRE_VERSION}`,
            ),
          `the version ${v} HELLO to be logged`,
        );
      }
      expect(connected(ts[1])).toBe(true); // the real node 0 is not affected
      expect(ts[1].stats().peers[0].quarantines).toBe(0);
      await exchange(ts, 10, 18);
    } finally {
      clock.restore();
      await Promise.all(ts.map((t) => t.stop()));
    }
  });

  it('closes and counts garbage, oversized and truncated frames (before and after authentication) and reportBad; the others keep talking', async () => {
    const g = makeGroup(4);
    const logs = collector();
    // Node 0 redials slowly (150-300 ms) once displaced, so the Byzantine node 0 below keeps its slot.
    const ts = await startMesh(g, (id) =>
      id === 3
        ? { logger: logs.logger, maxFrameBytes: 1 << 20 }
        : id === 0
          ? { backoff: { minMs: 300, maxMs: 1000 } }
          : {},
    );
    try {
      await waitMesh(ts);
      const port3 = ts[3].boundPort!;
      const failures = () => ts[3].stats().inbound.handshakeFailures;
      ts[3].onFrame((from, b) => {
        if (b.toString().startsWith('BAD!')) ts[3].reportBad(from, 'test: undecodable');
      });

      // Unauthenticated: HTTP, an oversized length prefix, a zero length, half a frame then close.
      for (const [what, bytes, weClose] of [
        ['raw garbage', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), false],
        ['oversized length prefix', Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]), false],
        ['zero length', Buffer.from([0, 0, 0, 0]), false],
        ['half a frame then close', encodeFrame(randomBytes(74)).subarray(0, 30), true],
      ] as const) {
        const before = failures();
        const r = new RawPeer(port3);
        await r.ready;
        r.write(bytes);
        if (weClose) r.socket.end();
        await r.waitClosed();
        await waitFor(() => failures() === before + 1, `${what} to be counted`);
      }

      // Authenticated garbage: a Byzantine node 0 with its real key.
      const badFrames = () => ts[3].stats().peers.find((p) => p.id === 0)!.badFrames;
      const got: string[] = [];
      ts[3].onFrame((from, b) => from === 0 && b.toString().startsWith('BYZ') && got.push(b.toString()));
      const byz1 = await rawHandshake(port3, g, { from: 0, to: 3, key: g.keys[0] });
      expect(byz1.ok).toBe(true);
      byz1.peer.write(encodeFrame(Buffer.from('BYZ ok')));
      byz1.peer.write(Buffer.from([0x00, 0x10, 0x00, 0x01])); // 1 MiB + 1 > maxFrameBytes
      await byz1.peer.waitClosed();
      await waitFor(() => badFrames() === 1, 'the oversized frame to be counted');
      expect(got).toEqual(['BYZ ok']);

      const byz2 = await rawHandshake(port3, g, { from: 0, to: 3, key: g.keys[0] });
      expect(byz2.ok).toBe(true);
      byz2.peer.write(encodeFrame(Buffer.from('BYZ ok 2')));
      byz2.peer.write(encodeFrame(Buffer.from('BYZ never complete')).subarray(0, 10));
      byz2.peer.socket.end();
      await waitFor(() => badFrames() === 2, 'the truncated frame to be counted');
      expect(got).toEqual(['BYZ ok', 'BYZ ok 2']);

      // The real node 0 reconnects (it was displaced); a frame its host cannot decode is reported.
      await waitMesh(ts);
      ts[0].send(3, Buffer.from('BAD! not a message'));
      await waitFor(() => badFrames() === 3, 'reportBad to be counted');
      await waitMesh(ts);
      await exchange(ts, 100, 12);
      const warned = logs.lines.filter((l) => l.level === 'warn').map((l) => l.msg);
      expect(warned.filter((m) => /inbound connection refused/.test(m)).length).toBeGreaterThanOrEqual(3);
      expect(warned.filter((m) => /bad frame/.test(m)).length).toBe(3);
      expect(ts[3].stats().inbound.handshakeFailures).toBe(4);
      // What an operator's scrape says: every frame from node 0 that could not be used, the oversized and
      // the truncated ones included (before 2026-12-07 dropbear_bad_frames_total counted only those a host
      // reported, here the reportBad alone, and had no series for peers that never sent one).
      const metrics = new NodeMetrics();
      metrics.attach(null, () => peerStatesOf(ts[3]));
      const scraped = parsePromText(await metrics.text());
      expect(samplesOf(scraped, 'dropbear_bad_frames_total').map((x) => [x.labels.peer, x.value])).toEqual([
        ['0', 3],
        ['1', 0],
        ['2', 0],
      ]);
      // Each logged with a stable code besides its reason, in the order they happened; a code already
      // logged in the last 10 s is only counted (the second FRAME_OVERSIZE before authentication).
      const codes = logs.lines
        .filter((l) => l.level === 'warn' && /inbound connection refused|bad frame/.test(l.msg))
        .map((l) => (l.obj as { code?: string }).code);
      expect(codes).toEqual([
        'FRAME_OVERSIZE', // HTTP: 'GET ' read as a length
        'FRAME_EMPTY',
        'FRAME_TRUNCATED',
        'FRAME_OVERSIZE', // after authentication
        'FRAME_TRUNCATED',
        'PEER_BAD_FRAME',
      ]);
    } finally {
      await Promise.all(ts.map((t) => t.stop()));
    }
  });

  it('errors of the listening server (a failed accept: EMFILE) are logged at most once per 10 s, not one per connection', async () => {
    const g = makeGroup(2, 29);
    const logs = collector();
    const t1 = transportFor(g, 1, { ...FAST, logger: logs.logger });
    try {
      await t1.start();
      const server = (t1 as unknown as { server: import('node:net').Server }).server;
      for (let i = 0; i < 100; i++)
        server.emit(
          'error',
          Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' }),
        );
      const failed = logs.lines.filter((l) => (l.obj as { code?: string }).code === 'ACCEPT_FAILED');
      expect(failed).toHaveLength(1);
      expect(logs.lines.filter((l) => l.msg.includes('server error'))).toEqual([]);
    } finally {
      await t1.stop();
    }
  });

  it('a flood of garbage connections, before and after authentication, logs a line per code per 10 s (then with how many were suppressed) and counts every one; a real peer still gets in', async () => {
    const g = makeGroup(2, 23);
    const logs = collector();
    // Held still during the flood (however long it takes, all of it falls in one 10 s window), then moved on.
    const clock = handClock();
    // No heartbeats: the idle timeout would see the clock's jump as silence.
    const t1 = transportFor(g, 1, { ...FAST, heartbeatMs: 0, logger: logs.logger });
    let t0: Transport | null = null;
    try {
      const port1 = await t1.start();
      const hello = (groupId: Uint8Array) =>
        encodeFrame(encodeHello({ version: WIRE_VERSION, groupId, from: 0, to: 1, nonce: randomBytes(32) }));
      const kinds: [string, Buffer | null][] = [
        ['FRAME_OVERSIZE', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
        ['FRAME_EMPTY', Buffer.from([0, 0, 0, 0])],
        ['HANDSHAKE_BAD', hello(new Uint8Array(32))], // another group
        ['HANDSHAKE_CLOSED', null], // connects, sends nothing, closes
      ];
      const garbage = async (bytes: Buffer | null) => {
        const r = new RawPeer(port1);
        await r.ready;
        if (bytes) r.write(bytes);
        else r.socket.end();
        await r.waitClosed();
      };
      const refused = () => logs.lines.filter((l) => l.msg === 'transport: inbound connection refused');
      const failures = () => t1.stats().inbound.handshakeFailures;

      clock.freeze();
      const EACH = 40;
      for (let i = 0; i < EACH; i++) await Promise.all(kinds.map(([, b]) => garbage(b)));
      await waitFor(() => failures() === EACH * kinds.length, 'every garbage connection to be counted');
      // One line per code, however many connections.
      const first = refused();
      expect(first.map((l) => (l.obj as { code: string }).code).sort()).toEqual(kinds.map(([k]) => k).sort());
      expect(first.every((l) => (l.obj as { suppressed: number }).suppressed === 0)).toBe(true);

      // Authenticated garbage, as the genuine node 0: a line per peer and code, each close counted.
      const badFrames = () => t1.stats().peers[0].badFrames;
      for (let i = 0; i < 5; i++) {
        const byz = await rawHandshake(port1, g, { from: 0, to: 1, key: g.keys[0] });
        expect(byz.ok).toBe(true);
        byz.peer.write(Buffer.from([0xff, 0xff, 0xff, 0xff])); // oversized length prefix
        await byz.peer.waitClosed();
        await waitFor(() => badFrames() === i + 1, 'the bad frame to be counted');
      }
      const bad = logs.lines.filter((l) => l.msg === 'transport: bad frame, connection closed');
      expect(bad.map((l) => l.obj)).toMatchObject([{ peer: 0, code: 'FRAME_OVERSIZE', suppressed: 0 }]);

      // 10 s later, the next of each code is logged with how many were not.
      clock.advance(FAULT_LOG_INTERVAL_MS);
      for (const [, b] of kinds) await garbage(b);
      await waitFor(() => refused().length === 2 * kinds.length, 'the next line of each code');
      for (const l of refused().slice(kinds.length))
        expect(l.obj, (l.obj as { code: string }).code).toMatchObject({ suppressed: EACH - 1 });
      expect(failures()).toBe((EACH + 1) * kinds.length);

      // A real node 0 still connects and talks.
      clock.thaw();
      t0 = transportFor(g, 0, { peers: new Map([[1, { host: HOST, port: port1 }]]), ...FAST });
      await t0.start();
      await waitMesh([t0, t1]);
      await exchange([t0, t1], 10, 24);
      expect(t1.stats().inbound.authenticated).toBe(6);
    } finally {
      await t0?.stop();
      await t1.stop();
      clock.restore();
    }
  });

  it('a peer that reconnects again and again logs its connects and closes once per 10 s (then with how many were not), not a line each; every one counted', async () => {
    // A faulty node holds its genesis key: each handshake it completes replaces its connection, and each
    // was an info line 'peer connected' and one 'connection closed' (the replaced one), as fast as it dials.
    const g = makeGroup(2, 25);
    const logs = collector();
    const clock = handClock();
    const t1 = transportFor(g, 1, { ...FAST, heartbeatMs: 0, logger: logs.logger });
    try {
      const port1 = await t1.start();
      const lines = (msg: string) =>
        logs.lines.filter((l) => l.msg === msg && (l.obj as { peer?: number }).peer === 0);
      clock.freeze();
      const N = 12;
      for (let i = 0; i < N; i++)
        expect((await rawHandshake(port1, g, { from: 0, to: 1, key: g.keys[0] })).ok).toBe(true);
      await waitFor(() => t1.stats().peers[0].disconnects === N - 1, 'every replaced connection to close');
      expect(t1.stats().peers[0].connects).toBe(N);
      expect(lines('transport: peer connected')).toHaveLength(1);
      expect(lines('transport: connection closed')).toHaveLength(1);
      // 10 s later, the next of each is logged with how many were not.
      clock.advance(FAULT_LOG_INTERVAL_MS);
      expect((await rawHandshake(port1, g, { from: 0, to: 1, key: g.keys[0] })).ok).toBe(true);
      await waitFor(() => t1.stats().peers[0].disconnects === N, 'the replaced connection to close');
      expect(
        lines('transport: peer connected').map((l) => (l.obj as { suppressed?: number }).suppressed),
      ).toEqual([0, N - 1]);
      expect(
        lines('transport: connection closed').map((l) => (l.obj as { suppressed?: number }).suppressed),
      ).toEqual([0, N - 2]);
    } finally {
      await t1.stop();
      clock.restore();
    }
  });

  it('reportBad quarantines the peer: refused at its HELLO or not dialled until the end; doubled when it offends again; forgiven after a quiet while', async () => {
    const g = makeGroup(3, 6);
    // Long enough that three handshakes fit in the first quarantine and the second offence comes within
    // forgiveMs of its end on a loaded machine; a third offence unforgiven would be at maxMs (4 × minMs).
    const Q = { minMs: 1_000, maxMs: 4_000, forgiveMs: 3_000 };
    const logs = collector();
    const ts = await startMesh(
      g,
      (id) => ({ quarantine: Q, logger: id === 1 ? logs.logger : undefined }),
      [1, 2],
    );
    try {
      await waitMesh(ts);
      const port1 = ts[1].boundPort!;
      const peer = (id: number) => ts[1].stats().peers.find((p) => p.id === id)!;
      // What was left of the quarantine right after each report (the handler runs in the frame's turn).
      const left: number[] = [];
      ts[1].onFrame((from, b) => {
        if (from !== 0 || b.toString() !== 'BAD') return;
        ts[1].reportBad(0, 'test: a bad signature of its own');
        left.push(peer(0).quarantinedMs);
      });
      // Node 0 (it dials node 1), played by hand with its real key.
      const offend = async () => {
        const byz = await rawHandshake(port1, g, { from: 0, to: 1, key: g.keys[0] });
        expect(byz.ok).toBe(true);
        byz.peer.write(encodeFrame(Buffer.from('BAD')));
        await byz.peer.waitClosed();
      };
      await offend();
      expect(left[0]).toBeGreaterThan(Q.minMs / 2); // read in the turn of the report: a margin for a stalled thread
      expect(left[0]).toBeLessThanOrEqual(Q.minMs);
      // Refused at its HELLO: nothing signed or checked, not a handshake failure, the quarantine unchanged.
      for (let i = 0; i < 3; i++) {
        const again = await rawHandshake(port1, g, { from: 0, to: 1, key: g.keys[0] });
        expect(again).toMatchObject({ ok: false, stage: 'hello' });
      }
      expect(ts[1].stats().inbound).toMatchObject({ quarantined: 3, handshakeFailures: 0 });
      expect(peer(0).quarantinedMs).toBeLessThanOrEqual(left[0]);
      await waitFor(() => peer(0).quarantinedMs === 0, 'the quarantine to end');
      // Back in; offending again at once costs twice as long.
      await offend();
      expect(left[1]).toBeGreaterThan(1.5 * Q.minMs);
      expect(left[1]).toBeLessThanOrEqual(2 * Q.minMs);
      await waitFor(() => peer(0).quarantinedMs === 0, 'the second quarantine to end');
      // forgiveMs without a report once it ended: a fresh start.
      await new Promise((r) => setTimeout(r, Q.forgiveMs + 50));
      await offend();
      expect(left[2]).toBeLessThanOrEqual(Q.minMs);
      expect(peer(0).quarantines).toBe(3);
      const warned = logs.lines.filter((l) => l.level === 'warn' && /peer quarantined/.test(l.msg));
      expect(warned.length).toBe(3);
      // One line per quarantine for the refusals, however many.
      expect(
        logs.lines.filter((l) => /refused a connection from a quarantined peer/.test(l.msg)).length,
      ).toBe(1);

      // The dial side: node 1 dials node 2; reported, it waits the quarantine out before dialling again.
      const at = performance.now();
      ts[1].reportBad(2, 'test: dial side');
      expect(peer(2).state).toBe('backoff');
      await waitFor(() => connected(ts[1], [2]), 'node 1 to dial node 2 again');
      expect(performance.now() - at).toBeGreaterThanOrEqual(Q.minMs);
      expect(peer(2).connects).toBe(2);
      await exchange([ts[1], ts[2]], 10, 15);
    } finally {
      await Promise.all(ts.map((t) => t?.stop()));
    }
  });

  it('bounds the send queue to a dead peer by frames and bytes, dropping the oldest and counting', async () => {
    const g = makeGroup(2);
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, HOST, r));
    const deadPort = (dead.address() as net.AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));

    const logs = collector();
    const t0 = transportFor(g, 0, {
      peers: new Map([[1, `tcp://${HOST}:${deadPort}`]]),
      maxFrameBytes: 4096,
      queue: { maxFrames: 100, maxBytes: 6400 },
      ...FAST,
      logger: logs.logger,
    });
    let t1: Transport | null = null;
    try {
      await t0.start();
      const frame = (i: number, size: number) => {
        const f = Buffer.alloc(size);
        f.writeUInt32BE(i, 0);
        return f;
      };
      for (let i = 0; i < 1000; i++) t0.send(1, frame(i, 20));
      let p = t0.stats().peers[0];
      expect(p.queuedFrames).toBe(100);
      expect(p.queuedBytes).toBe(100 * 24);
      expect(p.drops).toBe(900);
      for (let i = 1000; i < 1010; i++) t0.send(1, frame(i, 3000));
      p = t0.stats().peers[0];
      expect(p.queuedBytes).toBeLessThanOrEqual(6400);
      expect(p.queuedFrames).toBe(2); // two 3,004-byte frames fill 6,400 bytes
      expect(p.drops).toBe(1010 - 2);
      expect(['connecting', 'backoff']).toContain(p.state);
      expect(logs.lines.filter((l) => /send queue full/.test(l.msg)).length).toBe(1);
      await waitFor(() => t0.stats().peers[0].dialFailures > 1, 'failed redials');

      // The peer comes up: it gets the newest frames, in order.
      t1 = transportFor(g, 1, {
        ...FAST,
      });
      const got: number[] = [];
      t1.onFrame((_from, b) => got.push(b.readUInt32BE(0)));
      const port1 = await t1.start();
      t0.setPeerAddress(1, { host: HOST, port: port1 });
      await waitFor(() => got.length === 2, 'the queued frames');
      expect(got).toEqual([1008, 1009]);
    } finally {
      await Promise.all([t0.stop(), t1?.stop()]);
    }
  });

  it('respects backpressure: a peer that stops reading fills the queue, which drops and counts', async () => {
    const g = makeGroup(2, 4);
    const t1 = transportFor(g, 1, {
      maxFrameBytes: 64 * 1024,
      queue: { maxFrames: 1000, maxBytes: 1 << 20 },
      ...FAST,
    });
    try {
      const port1 = await t1.start();
      // Node 0 is played by a raw peer that authenticates, then stops reading.
      const slow = await rawHandshake(port1, g, { from: 0, to: 1, key: g.keys[0] });
      expect(slow.ok).toBe(true);
      slow.peer.socket.pause();
      await waitFor(() => t1.stats().peers[0].state === 'connected', 'node 1 to see node 0');
      const FRAMES = 2000; // 64 MiB in all: more than loopback socket buffers hold
      const frame = (i: number) => {
        const f = Buffer.alloc(32 * 1024, i & 0xff);
        f.writeUInt32BE(i, 0);
        return f;
      };
      // 20 frames (640 KiB) a tick: less than the queue holds, so only waiting for 'drain' drops any.
      for (let i = 0; i < FRAMES; i += 20) {
        for (let k = i; k < i + 20; k++) t1.send(0, frame(k));
        await new Promise((r) => setTimeout(r, 2));
      }
      const p = t1.stats().peers[0];
      expect(p.drops).toBeGreaterThan(0);
      expect(p.queuedBytes).toBeLessThanOrEqual(1 << 20);
      slow.peer.socket.resume();
      await waitFor(() => slow.peer.frames.at(-1)?.readUInt32BE(0) === FRAMES - 1, 'the last frame');
      const seqs = slow.peer.frames.map((f) => f.readUInt32BE(0));
      expect(seqs.every((s, i) => i === 0 || s > seqs[i - 1])).toBe(true);
      const after = t1.stats().peers[0];
      expect(seqs.length + after.drops).toBe(FRAMES);
      expect(after.framesOut).toBe(seqs.length);
      slow.peer.destroy();
    } finally {
      await t1.stop();
    }
  });

  it('limits unauthenticated connections: at most maxPendingHandshakes, the oldest evicted for a new one', async () => {
    const g = makeGroup(2, 5);
    const t1 = transportFor(g, 1, {
      ...FAST,
      handshakeTimeoutMs: 1_000,
      maxPendingHandshakes: 2,
    });
    try {
      const port1 = await t1.start();
      const idle = [new RawPeer(port1), new RawPeer(port1)];
      await Promise.all(idle.map((r) => r.ready));
      await waitFor(() => t1.stats().inbound.accepted === 2, 'two pending');
      const third = new RawPeer(port1);
      await third.ready;
      await idle[0].waitClosed(); // the oldest makes room
      await waitFor(() => t1.stats().inbound.accepted === 3, 'the third taken in');
      expect(t1.stats().inbound.evictedBusy).toBe(1);
      expect(idle[1].closed || third.closed).toBe(false);
      await Promise.all([idle[1], third].map((r) => r.waitClosed(3_000))); // the HELLO timeout
      expect(t1.stats().inbound.handshakeFailures).toBe(3);
      // And a genuine peer still gets in.
      const ok = await rawHandshake(port1, g, { from: 0, to: 1, key: g.keys[0] });
      expect(ok.ok).toBe(true);
      ok.peer.destroy();
    } finally {
      await t1.stop();
    }
  });

  it('a real peer connects while idle sockets hold every pending-handshake slot', async () => {
    const g = makeGroup(2, 21);
    const CAP = 8;
    // Timeouts far beyond the test's window: only eviction can let the peer in.
    const slow = { handshakeTimeoutMs: 30_000, helloTimeoutMs: 30_000, maxPendingHandshakes: CAP };
    const t1 = transportFor(g, 1, {
      ...FAST,
      ...slow,
    });
    let t0: Transport | null = null;
    const idle: RawPeer[] = [];
    try {
      const port1 = await t1.start();
      for (let i = 0; i < CAP; i++) idle.push(new RawPeer(port1));
      await Promise.all(idle.map((r) => r.ready));
      await waitFor(() => t1.stats().inbound.accepted === CAP, 'every slot held');
      t0 = transportFor(g, 0, {
        peers: new Map([[1, { host: HOST, port: port1 }]]),
        ...FAST,
        ...slow,
      });
      await t0.start();
      const t0c = t0;
      await waitFor(() => connected(t0c) && connected(t1), 'the real peer to connect', 3_000);
      expect(t1.stats().inbound.evictedBusy).toBe(1);
      expect(idle[0].closed).toBe(true); // the oldest went
      expect(idle.slice(1).every((r) => !r.closed)).toBe(true);
      const got: number[] = [];
      t1.onFrame((from, b) => got.push(from, b[0]));
      t0.send(1, Buffer.from([42]));
      await waitFor(() => got.length === 2, 'a frame over the new link');
      expect(got).toEqual([0, 42]);
    } finally {
      for (const r of idle) r.destroy();
      await t0?.stop();
      await t1.stop();
    }
  });

  it('an inbound connection must send its HELLO within helloTimeoutMs (default 2 s); then the handshake has the rest of handshakeTimeoutMs', async () => {
    const g = makeGroup(2, 22);
    const logs = collector();
    const t1 = transportFor(g, 1, {
      ...FAST,
      handshakeTimeoutMs: 60_000,
      logger: logs.logger,
    });
    try {
      const port1 = await t1.start();
      const start = Date.now();
      const silent = new RawPeer(port1);
      await silent.ready;
      // One that sends its HELLO and then stalls before AUTH.
      const stalled = new RawPeer(port1);
      await stalled.ready;
      stalled.write(
        encodeFrame(
          encodeHello({
            version: WIRE_VERSION,
            groupId: g.groupId,
            from: 0,
            to: 1,
            nonce: randomBytes(32),
          }),
        ),
      );
      expect(await stalled.next()).not.toBeNull(); // the CHALLENGE
      await silent.waitClosed(30_000);
      expect(Date.now() - start).toBeGreaterThanOrEqual(1_900);
      // Closed by the HELLO timer, not the handshake's (which has 60 s and would say "handshake timed out").
      const refused = logs.lines.filter((l) => l.msg === 'transport: inbound connection refused');
      expect(refused.map((l) => (l.obj as { reason: string }).reason)).toEqual([
        'handshake: no HELLO within 2000 ms',
      ]);
      expect(stalled.closed).toBe(false);
      stalled.destroy();
    } finally {
      await t1.stop();
    }
  });

  it('a node that starts listening wakes the lower ids that dial it: they redial at once, not after their backoff', async () => {
    const g = makeGroup(3, 8);
    // A backoff of days: a dial that failed is made again before the test ends only if woken up.
    const slow = { backoff: { minMs: MAX_TIMER_MS, maxMs: MAX_TIMER_MS }, handshakeTimeoutMs: 2_000 };
    // Node 2's port, free for now: nodes 0 and 1 dial it before node 2 listens there.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, HOST, r));
    const port2 = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const logs = [collector(), collector(), collector()];
    const ts: Transport[] = [];
    try {
      ts[1] = transportFor(g, 1, {
        peers: new Map([[2, { host: HOST, port: port2 }]]),
        ...slow,
        logger: logs[1].logger,
      });
      const port1 = await ts[1].start();
      ts[0] = transportFor(g, 0, {
        peers: new Map([
          [1, { host: HOST, port: port1 }],
          [2, { host: HOST, port: port2 }],
        ]),
        ...slow,
        logger: logs[0].logger,
      });
      const port0 = await ts[0].start();
      await waitMesh(ts);
      for (const t of ts)
        await waitFor(
          () => t.stats().peers.find((p) => p.id === 2)!.state === 'backoff',
          `node ${t.id} to back off from node 2`,
        );
      expect(ts.map((t) => t.stats().peers.find((p) => p.id === 2)!.dialFailures)).toEqual([1, 1]);

      ts[2] = transportFor(g, 2, {
        listen: { host: HOST, port: port2 },
        // Where its wake-ups go (the genesis addresses of this test group are not the real ports).
        peers: new Map([
          [0, { host: HOST, port: port0 }],
          [1, { host: HOST, port: port1 }],
        ]),
        ...slow,
        logger: logs[2].logger,
      });
      await ts[2].start();
      await waitMesh(ts);
      await exchange(ts, 10, 16);
      for (const id of [0, 1]) {
        const p2 = ts[id].stats().peers.find((p) => p.id === 2)!;
        expect(p2).toMatchObject({ connects: 1, dialFailures: 1 });
        expect(ts[id].stats().inbound).toMatchObject({ wakeUps: 1, handshakeFailures: 0 });
        expect(logs[id].lines.some((l) => /woken up by a peer this node dials/.test(l.msg))).toBe(true);
      }
      // Node 0 was woken by node 2 only: node 1, started before it, woke nobody (its wake-up went to node
      // 0's genesis address) and is not tried again.
      expect(ts[0].stats().inbound.wakeUps).toBe(1);

      // A HELLO from node 2 while node 1 is connected to it (a replay, anyone's) is closed and counted as
      // a wake-up, nothing else: the connection stays, nothing is signed, no failure, no warning.
      const warnings = logs[1].lines.filter((l) => l.level !== 'info').length;
      const r = await rawHandshake(port1, g, { from: 2, to: 1, key: g.keys[2] });
      expect(r).toMatchObject({ ok: false, stage: 'hello' });
      await r.peer.waitClosed();
      await waitFor(() => ts[1].stats().inbound.wakeUps === 2, 'the second wake-up to be counted');
      expect(ts[1].stats().inbound.handshakeFailures).toBe(0);
      expect(ts[1].stats().peers.find((p) => p.id === 2)).toMatchObject({ state: 'connected', connects: 1 });
      expect(logs[1].lines.filter((l) => l.level !== 'info').length).toBe(warnings);
      await exchange(ts, 10, 17);
    } finally {
      await Promise.all(ts.map((t) => t?.stop()));
    }
  });

  it('a wake-up that comes while the dial is under way has the dial made again at once should it fail', async () => {
    const g = makeGroup(2, 10);
    const slow = { backoff: { minMs: MAX_TIMER_MS, maxMs: MAX_TIMER_MS }, handshakeTimeoutMs: 60_000 };
    // Where node 1 will listen, held first by a stand-in that takes node 0's dial and never answers it:
    // the dial is under way (handshaking) when the real node 1 starts there and wakes node 0 up.
    const held: net.Socket[] = [];
    const standIn = net.createServer((s) => {
      s.on('error', () => {});
      held.push(s);
    });
    await new Promise<void>((r) => standIn.listen(0, HOST, r));
    const port1 = (standIn.address() as net.AddressInfo).port;
    const ts: Transport[] = [];
    try {
      ts[0] = transportFor(g, 0, {
        peers: new Map([[1, { host: HOST, port: port1 }]]),
        ...slow,
      });
      const port0 = await ts[0].start();
      await waitFor(
        () => ts[0].stats().peers[0].state === 'handshaking' && held.length === 1,
        'the held dial',
      );
      // The port is free at once; the callback would wait for the held connection.
      const standInClosed = new Promise<void>((r) => standIn.close(() => r()));
      ts[1] = transportFor(g, 1, {
        listen: { host: HOST, port: port1 },
        peers: new Map([[0, { host: HOST, port: port0 }]]),
        ...slow,
      });
      await ts[1].start();
      await waitFor(() => ts[0].stats().inbound.wakeUps === 1, 'the wake-up');
      expect(ts[0].stats().peers[0].state).toBe('handshaking');
      // The dial made before node 1 listened fails now; the next one is not put off by the backoff.
      held[0].destroy();
      await waitMesh(ts);
      await exchange(ts, 10, 19);
      expect(ts[0].stats().peers[0]).toMatchObject({ connects: 1, dialFailures: 1 });
      await standInClosed;
    } finally {
      if (standIn.listening) standIn.close();
      for (const s of held) s.destroy();
      await Promise.all(ts.map((t) => t?.stop()));
    }
  });

  it('a node whose connection from a lower id closes wakes it: the dialer redials at once, not after its backoff', async () => {
    const g = makeGroup(2, 11);
    // A backoff of days: a dial that failed or closed is made again before the test ends only if woken.
    const slow = { backoff: { minMs: MAX_TIMER_MS, maxMs: MAX_TIMER_MS }, handshakeTimeoutMs: 2_000 };
    // Node 1's port, reserved so that node 0 can be told it before node 1 knows node 0's.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, HOST, r));
    const port1 = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const ts: Transport[] = [];
    try {
      ts[0] = transportFor(g, 0, {
        peers: new Map([[1, { host: HOST, port: port1 }]]),
        ...slow,
      });
      const port0 = await ts[0].start();
      ts[1] = transportFor(g, 1, {
        listen: { host: HOST, port: port1 },
        peers: new Map([[0, { host: HOST, port: port0 }]]),
        ...slow,
      });
      await ts[1].start();
      await waitMesh(ts);
      await exchange(ts, 5, 21);
      // The link breaks where node 0 sees it first (its socket goes, as on a network fault or a timeout of
      // its own): node 0 backs off for days; node 1, still listening, sees the connection close.
      const conn = (
        ts[0] as unknown as { peers: Map<number, { conn: { socket: net.Socket } | null }> }
      ).peers.get(1)!.conn!;
      conn.socket.destroy();
      await waitFor(
        () => ts[0].stats().peers.find((p) => p.id === 1)!.connects === 2,
        'node 0 to connect to node 1 again',
      );
      await waitMesh(ts);
      await exchange(ts, 5, 22);
      expect(ts[0].stats().inbound.wakeUps).toBe(2); // at node 1's start, and when the connection closed
    } finally {
      await Promise.all(ts.map((t) => t?.stop()));
    }
  });

  it('after a network partition heals, the higher id wakes the dialer again: the link is back within a wake interval, not after the backoff', async () => {
    const g = makeGroup(2, 12);
    // A backoff of days: node 0 redials before the test ends only if woken up. Both notice a silent link
    // in 400 ms; node 1 retries its wake-up every 200 ms while node 0 has no connection to it.
    const o = {
      backoff: { minMs: MAX_TIMER_MS, maxMs: MAX_TIMER_MS },
      handshakeTimeoutMs: 2_000,
      heartbeatMs: 50,
      idleTimeoutMs: 400,
      wakeIntervalMs: 200,
    };
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, HOST, r));
    const port1 = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    // Both ways across the network go through a relay that can be cut: node 0's dials, node 1's wake-ups.
    const dials = await startRelay({ target: { host: HOST, port: port1 }, delayMs: 0 });
    let wakes: Relay | null = null;
    const ts: Transport[] = [];
    try {
      ts[0] = transportFor(g, 0, { peers: new Map([[1, { host: HOST, port: dials.port }]]), ...o });
      const port0 = await ts[0].start();
      wakes = await startRelay({ target: { host: HOST, port: port0 }, delayMs: 0 });
      ts[1] = transportFor(g, 1, {
        listen: { host: HOST, port: port1 },
        peers: new Map([[0, { host: HOST, port: wakes.port }]]),
        ...o,
      });
      await ts[1].start();
      await waitMesh(ts);
      await exchange(ts, 5, 23);

      const cut = performance.now();
      dials.cut();
      wakes.cut();
      // Both sides time the silent link out: node 0 backs off for days, node 1's wake-ups are lost.
      await waitFor(
        () => ts[0].stats().peers[0].state === 'backoff' && ts[1].stats().peers[0].state === 'waiting',
        'both sides to give the link up',
      );
      await new Promise((r) => setTimeout(r, 700));
      const lost = wakes.stats().refused;
      expect(lost).toBeGreaterThanOrEqual(2);
      // Bounded: at most one per wakeIntervalMs (the first when the connection closed).
      expect(lost).toBeLessThanOrEqual(Math.floor((performance.now() - cut) / 200) + 1);
      expect(ts[0].stats().inbound.wakeUps).toBe(1); // node 1's at its start: none crossed the cut

      dials.heal();
      wakes.heal();
      const healed = performance.now();
      await waitFor(() => connected(ts[0]) && connected(ts[1]), 'the link to come back', 3_000);
      expect(performance.now() - healed).toBeLessThan(1_500);
      await exchange(ts, 5, 24);
      // One connection, no flapping: nothing more once it is back, and no wake-up goes to a connected peer.
      await new Promise((r) => setTimeout(r, 600));
      const accepted = wakes.stats().accepted;
      await new Promise((r) => setTimeout(r, 600));
      expect(wakes.stats().accepted).toBe(accepted);
      expect(ts[0].stats().peers[0]).toMatchObject({ state: 'connected', connects: 2 });
      expect(ts[1].stats().peers[0]).toMatchObject({ state: 'connected', connects: 2 });
      expect(ts[1].stats().inbound).toMatchObject({ authenticated: 2, handshakeFailures: 0 });
    } finally {
      await Promise.all(ts.map((t) => t?.stop()));
      await Promise.all([dials.close(), wakes?.close()]);
    }
  });

  it('a node with no connection from a lower id keeps waking it, one connection at most per wakeIntervalMs', async () => {
    const g = makeGroup(2, 13);
    // Where node 0 would listen: a server that only notes when each wake-up arrives (node 0 never dials).
    const at: number[] = [];
    const stub = net.createServer((s) => {
      at.push(performance.now());
      s.on('error', () => {});
      s.destroy();
    });
    await new Promise<void>((r) => stub.listen(0, HOST, r));
    const t1 = transportFor(g, 1, {
      peers: new Map([[0, { host: HOST, port: (stub.address() as net.AddressInfo).port }]]),
      wakeIntervalMs: 100,
    });
    try {
      const started = performance.now();
      await t1.start();
      await new Promise((r) => setTimeout(r, 1_000));
      const elapsed = performance.now() - started;
      expect(at.length).toBeGreaterThanOrEqual(4);
      // With the same 2 ms allowance as below: a timer that ran 1 ms early once read 11 against 10 here.
      expect(at.length).toBeLessThanOrEqual(Math.floor(elapsed / 98) + 1);
      // The i-th goes wakeIntervalMs after the one before at the earliest (a timer may run 1 ms early).
      for (let i = 1; i < at.length; i++) expect(at[i] - started).toBeGreaterThan(i * 98);
    } finally {
      await t1.stop();
      await new Promise<void>((r) => stub.close(() => r()));
    }
    // Stopped: no more.
    const n = at.length;
    await new Promise((r) => setTimeout(r, 300));
    expect(at.length).toBe(n);
  });

  it('wake-ups, which anyone can send, make a node redial at most once per wakeIntervalMs', async () => {
    const g = makeGroup(2, 14);
    // Node 1 is down: its port refuses. Node 0 backs off for days, so it dials only when woken.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, HOST, r));
    const port1 = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const t0 = transportFor(g, 0, {
      peers: new Map([[1, { host: HOST, port: port1 }]]),
      backoff: { minMs: MAX_TIMER_MS, maxMs: MAX_TIMER_MS },
      wakeIntervalMs: 200,
    });
    const raws: RawPeer[] = [];
    try {
      const port0 = await t0.start();
      await waitFor(() => t0.stats().peers[0].state === 'backoff', 'the first dial to fail');
      expect(t0.stats().peers[0].dialFailures).toBe(1);
      // 30 wake-ups in 600 ms, as node 1 (a HELLO is not authenticated: anyone can send one).
      const started = performance.now();
      for (let i = 0; i < 30; i++) {
        const r = new RawPeer(port0);
        raws.push(r);
        await r.ready;
        r.write(
          encodeFrame(
            encodeHello({
              version: WIRE_VERSION,
              groupId: g.groupId,
              from: 1,
              to: 0,
              nonce: randomBytes(32),
            }),
          ),
        );
        await new Promise((res) => setTimeout(res, 20));
      }
      await waitFor(() => t0.stats().inbound.wakeUps === 30, 'the wake-ups to be counted');
      await new Promise((r) => setTimeout(r, 250));
      const elapsed = performance.now() - started;
      const dials = t0.stats().peers[0].dialFailures - 1;
      // The first at once, then one per 200 ms however many come.
      expect(dials).toBeGreaterThanOrEqual(2);
      expect(dials).toBeLessThanOrEqual(Math.floor(elapsed / 200) + 1);
      expect(t0.stats().inbound.handshakeFailures).toBe(0);
    } finally {
      for (const r of raws) r.socket.destroy();
      await t0.stop();
    }
  });

  it('heartbeats keep an idle link up; a peer that goes silent is dropped after idleTimeoutMs', async () => {
    const g = makeGroup(3, 6);
    const live = { heartbeatMs: 50, idleTimeoutMs: 500 };
    const ts = await startMesh(g, () => live, [1, 2]);
    try {
      await waitMesh(ts);
      const silent = await rawHandshake(ts[1].boundPort!, g, { from: 0, to: 1, key: g.keys[0] });
      expect(silent.ok).toBe(true);
      await silent.peer.waitClosed(5_000); // it reads, but never writes
      expect(silent.peer.keepalives).toBeGreaterThan(0);
      expect(ts[1].stats().peers[0].lastError).toMatch(/idle: nothing received/);
      // Meanwhile the 1–2 link, idle too, stayed up on heartbeats alone (and delivered none of them).
      const s1 = ts[1].stats().peers.find((p) => p.id === 2)!;
      expect(s1.state).toBe('connected');
      expect(s1.connects).toBe(1);
      expect(s1.framesIn).toBe(0);
      await exchange(ts, 10, 15);
    } finally {
      await Promise.all(ts.map((t) => t?.stop()));
    }
  });

  it('refuses bad configuration and bad sends with clear errors', () => {
    const g = makeGroup(4);
    const base = { genesis: g.genesis, listen: { host: HOST, port: 0 } };
    expect(() => new Transport({ ...base, id: 7, key: g.keys[0] })).toThrow(/not in the genesis/);
    expect(() => new Transport({ ...base, id: 0, key: g.keys[1] })).toThrow(/not node 0's key/);
    const sim = makeGroup(4);
    sim.genesis.nodes[2].address = 'sim://node-2';
    expect(() => new Transport({ ...base, genesis: sim.genesis, id: 0, key: g.keys[0] })).toThrow(
      /no usable address for node 2.*scheme sim/,
    );
    // Node 3 dials nobody: the genesis addresses of lower ids are never used.
    expect(() => new Transport({ ...base, genesis: sim.genesis, id: 3, key: g.keys[3] })).not.toThrow();
    expect(
      () => new Transport({ ...base, id: 0, key: g.keys[0], maxFrameBytes: 1000, queue: { maxBytes: 500 } }),
    ).toThrow(/must hold one frame/);
    for (const wireVersion of [0, 256, 1.5])
      expect(() => new Transport({ ...base, id: 0, key: g.keys[0], wireVersion })).toThrow(
        /wireVersion must be an integer in 1..255/,
      );
    const t = new Transport({ ...base, id: 0, key: g.keys[0], maxFrameBytes: 1000 });
    expect(() => t.send(0, Buffer.from('x'))).toThrow(/does not send to itself/);
    expect(() => t.send(9, Buffer.from('x'))).toThrow(/not in the genesis/);
    expect(() => t.send(1, new Uint8Array(0))).toThrow(/empty/);
    expect(() => t.send(1, new Uint8Array(1001))).toThrow(/maxFrameBytes/);
  });

  it('refuses quarantine settings that are not integers in range, with TRANSPORT_CONFIG naming the field', () => {
    const g = makeGroup(2);
    const make = (quarantine: TransportOptions['quarantine']) =>
      new Transport({
        genesis: g.genesis,
        listen: { host: HOST, port: 0 },
        id: 0,
        key: g.keys[0],
        quarantine,
      });
    const refused = (quarantine: TransportOptions['quarantine']): DropbearError => {
      try {
        make(quarantine);
      } catch (e) {
        expect(e).toBeInstanceOf(DropbearError);
        expect((e as DropbearError).code).toBe('TRANSPORT_CONFIG');
        return e as DropbearError;
      }
      throw new Error(`accepted ${JSON.stringify(quarantine)}`);
    };
    // Each with maxMs at setTimeout's limit, so that only the value under test is wrong.
    for (const [k, v] of [
      ['minMs', 2 ** 31], // past setTimeout's limit: the redial after the quarantine would fire after 1 ms
      ['maxMs', 2 ** 31],
      ['minMs', 1.5],
      ['maxMs', 1000.5],
      ['forgiveMs', 0.5],
      ['minMs', 0],
      ['minMs', -1000],
      ['maxMs', -1],
      ['forgiveMs', -1],
      ['maxMs', Number.NaN],
      ['forgiveMs', Number.POSITIVE_INFINITY],
    ] as const) {
      const e = refused({ maxMs: MAX_TIMER_MS, [k]: v });
      expect(e.message, `${k}: ${v}`).toContain(`quarantine.${k} must be an integer in`);
      expect(e.details).toEqual({ field: `quarantine.${k}` });
    }
    expect(refused({ minMs: 5000, maxMs: 1000 }).message).toMatch(
      /^quarantine needs minMs ≤ maxMs \(here 5000 > 1000/,
    );
    // The default maxMs (60 s) is below this minMs.
    expect(refused({ minMs: 120_000 }).message).toContain('quarantine needs minMs ≤ maxMs');
    expect(refused({ minMS: 100 } as TransportOptions['quarantine']).message).toContain(
      'quarantine.minMS is not a quarantine setting',
    );
    // The bounds themselves, and settings left out (or undefined) for their defaults.
    expect(() => make({ minMs: MAX_TIMER_MS, maxMs: MAX_TIMER_MS, forgiveMs: 0 })).not.toThrow();
    expect(() => make({ minMs: 1, maxMs: 1, forgiveMs: Number.MAX_SAFE_INTEGER })).not.toThrow();
    expect(() => make({ minMs: undefined, maxMs: 2_000 })).not.toThrow();
    expect(() => make(undefined)).not.toThrow();
  });

  it.skipIf(!haveOpenssl)(
    'runs over TLS (self-signed CA made with openssl) with the genesis handshake on top',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dropbear-tls-'));
      const g = makeGroup(2, 3);
      const ts: Transport[] = [];
      try {
        const cert = (name: string) => selfSignedCert(dir, name);
        const group = cert('group');
        const rogue = cert('rogue');
        const logs = collector();
        ts[1] = transportFor(g, 1, {
          tls: { ...group, caFile: group.certFile },
          ...FAST,
          handshakeTimeoutMs: 5_000,
          logger: logs.logger,
        });
        const port1 = await ts[1].start();
        ts[0] = transportFor(g, 0, {
          peers: new Map([[1, { host: HOST, port: port1 }]]),
          tls: { ...group, caFile: group.certFile },
          ...FAST,
        });
        await ts[0].start();
        await waitMesh(ts);
        const got: number[] = [];
        ts[1].onFrame((from, b) => from === 0 && got.push(b.length));
        ts[0].send(1, randomBytes(1 << 20));
        await exchange(ts, 1000, 13);
        await waitFor(() => got.includes(1 << 20), 'the 1 MiB frame');

        // Plain TCP to the TLS port, and a TLS client whose certificate the group CA did not sign.
        const plain = await rawHandshake(port1, g, { from: 0, to: 1, key: g.keys[0] });
        expect(plain.ok).toBe(false);
        const rogueT = transportFor(g, 0, {
          peers: new Map([[1, { host: HOST, port: port1 }]]),
          tls: { ...rogue, caFile: rogue.certFile }, // its own CA: a rogue node's config is consistent
          ...FAST,
        });
        await rogueT.start();
        await waitFor(() => ts[1].stats().inbound.handshakeFailures >= 2, 'the TLS failures to be counted');
        expect(rogueT.stats().peers[0].connects).toBe(0);
        await rogueT.stop();
        expect(logs.lines.some((l) => /TLS handshake failed/.test(l.msg))).toBe(true);
        // A node of another wire version: its VERSION answer gets through TLS before the connection closes.
        const versionLogs = collector();
        const otherVersion = transportFor(g, 0, {
          peers: new Map([[1, { host: HOST, port: port1 }]]),
          tls: { ...group, caFile: group.certFile },
          ...FAST,
          wireVersion: WIRE_VERSION + 1,
          logger: versionLogs.logger,
        });
        await otherVersion.start();
        await waitFor(
          () =>
            versionLogs.lines.some(
              (l) =>
                (l.obj as { code?: string }).code === 'PEER_VERSION_MISMATCH' &&
                (l.obj as { reason?: string }).reason ===
                  `handshake: node 1 speaks wire version ${WIRE_VERSION}, this node ${WIRE_VERSION + 1}`,
            ),
          'the other version to hear ours',
        );
        expect(otherVersion.stats().peers[0].connects).toBe(0);
        await otherVersion.stop();
        await waitMesh(ts);
        await exchange(ts, 10, 14);

        // stop() also closes a connection still in its TLS handshake (server.close() would wait for it).
        const pendingTls = new RawPeer(port1);
        await pendingTls.ready;
        await ts[1].stop();
        await pendingTls.waitClosed(1_000); // well before the 5 s handshake timeout
      } finally {
        await Promise.all(ts.map((t) => t.stop()));
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it.skipIf(!haveOpenssl)('the wake-up works over TLS too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dropbear-tls-wake-'));
    const g = makeGroup(2, 9);
    const ts: Transport[] = [];
    try {
      const files = selfSignedCert(dir, 'g');
      const tlsOpts = { ...files, caFile: files.certFile };
      const slow = { backoff: { minMs: MAX_TIMER_MS, maxMs: MAX_TIMER_MS }, handshakeTimeoutMs: 5_000 };
      const probe = net.createServer();
      await new Promise<void>((r) => probe.listen(0, HOST, r));
      const port1 = (probe.address() as net.AddressInfo).port;
      await new Promise<void>((r) => probe.close(() => r()));
      ts[0] = transportFor(g, 0, {
        peers: new Map([[1, { host: HOST, port: port1 }]]),
        tls: tlsOpts,
        ...slow,
      });
      const port0 = await ts[0].start();
      await waitFor(() => ts[0].stats().peers[0].state === 'backoff', 'node 0 to back off from node 1');
      ts[1] = transportFor(g, 1, {
        listen: { host: HOST, port: port1 },
        peers: new Map([[0, { host: HOST, port: port0 }]]),
        tls: tlsOpts,
        ...slow,
      });
      await ts[1].start();
      await waitMesh(ts);
      await exchange(ts, 10, 18);
      expect(ts[0].stats().inbound).toMatchObject({ wakeUps: 1, handshakeFailures: 0 });
      expect(ts[0].stats().peers[0]).toMatchObject({ connects: 1, dialFailures: 1 });
    } finally {
      await Promise.all(ts.map((t) => t?.stop()));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!haveOpenssl)(
    'a TLS handshake that fails because the client reset its socket is logged with the remote it came from',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dropbear-tls-reset-'));
      const g = makeGroup(2, 8);
      let t: Transport | null = null;
      let c: net.Socket | null = null;
      try {
        const files = selfSignedCert(dir, 'g');
        const logs = collector();
        t = transportFor(g, 1, {
          tls: { ...files, caFile: files.certFile },
          ...FAST,
          logger: logs.logger,
        });
        const port = await t.start();
        const client = net.connect({ host: HOST, port });
        c = client;
        client.on('error', () => {});
        await new Promise<void>((resolve) => client.once('connect', () => resolve()));
        const remote = `${client.localAddress}:${client.localPort}`;
        // The start of a ClientHello, then a reset: the server's TLS socket fails (ECONNRESET) closed, with
        // no remote address left to read.
        client.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03]));
        await new Promise((r) => setTimeout(r, 50));
        client.resetAndDestroy();
        await waitFor(() => t!.stats().inbound.handshakeFailures === 1, 'the failed handshake');
        const failed = logs.lines.filter((l) => l.msg === 'transport: inbound TLS handshake failed');
        expect(failed).toHaveLength(1);
        expect(remote).toMatch(/^127\.0\.0\.1:\d+$/);
        expect(failed[0].obj).toMatchObject({ node: 1, remote });
      } finally {
        c?.destroy();
        await t?.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it.skipIf(!haveOpenssl)(
    'under TLS, at most maxPendingHandshakes connections in their TLS handshake: the oldest closed for a new one',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dropbear-tls-cap-'));
      const g = makeGroup(2, 7);
      const ts: Transport[] = [];
      const idle: RawPeer[] = [];
      try {
        const g0 = selfSignedCert(dir, 'g');
        const tlsFiles = { ...g0, caFile: g0.certFile };
        const logs = collector();
        ts[1] = transportFor(g, 1, {
          tls: tlsFiles,
          ...FAST,
          maxPendingHandshakes: 2,
          logger: logs.logger,
        });
        const port1 = await ts[1].start();
        // Plain TCP to the TLS port, never a ClientHello: each holds a TLS handshake open.
        const idleAt: string[] = []; // each idle socket's address as ts[1] sees it (gone once it closes)
        for (let i = 0; i < 3; i++) {
          idle.push(new RawPeer(port1));
          await idle[i].ready;
          idleAt.push(`${idle[i].socket.localAddress}:${idle[i].socket.localPort}`);
          await waitFor(() => ts[1].stats().inbound.evictedBusy === Math.max(0, i - 1), `socket ${i} held`);
        }
        await idle[0].waitClosed(); // the oldest made room
        expect(idle[1].closed || idle[2].closed).toBe(false);
        expect(
          logs.lines.some((l) => l.level === 'warn' && /TLS handshakes in progress at the limit/.test(l.msg)),
        ).toBe(true);
        // A real peer still gets in (its TLS handshake closes the oldest idle socket in turn).
        ts[0] = transportFor(g, 0, {
          peers: new Map([[1, { host: HOST, port: port1 }]]),
          tls: tlsFiles,
          ...FAST,
        });
        await ts[0].start();
        await waitMesh(ts);
        await exchange(ts, 10, 16);
        expect(ts[1].stats().inbound.evictedBusy).toBe(2);
        // An eviction is logged at the limit (the first; the second, within 10 s, only counted: anyone can make
        // them), and not again when its TLS socket then fails; each counts as a handshake failure
        // (TransportStats.inbound.evictedBusy).
        await waitFor(
          () => ts[1].stats().inbound.handshakeFailures === 2,
          'the evictions counted as failures',
        );
        const about = (remote: string) =>
          logs.lines.filter((l) => (l.obj as { remote?: string }).remote === remote).map((l) => l.msg);
        expect(about(idleAt[0])).toEqual([
          'transport: TLS handshakes in progress at the limit (maxPendingHandshakes): closing the oldest',
        ]);
        expect(about(idleAt[1])).toEqual([]);
        expect(logs.lines.filter((l) => /inbound TLS handshake failed/.test(l.msg))).toEqual([]);
      } finally {
        for (const r of idle) r.destroy();
        await Promise.all(ts.map((t) => t?.stop()));
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it('stop() leaves no sockets, servers or timers behind', async () => {
    const before = {
      sockets: activeCount('TCPSocketWrap'),
      servers: activeCount('TCPServerWrap'),
      timers: activeCount('Timeout'),
      immediates: activeCount('Immediate'),
    };
    const g = makeGroup(4);
    // Node 0 also dials a dead address (a backoff timer pending at stop).
    const ts = await startMesh(g, () => ({}), [1, 2, 3]);
    const t0 = transportFor(g, 0, {
      peers: new Map([
        [1, { host: HOST, port: ts[1].boundPort! }],
        [2, { host: HOST, port: ts[2].boundPort! }],
        [3, { host: HOST, port: 1 }],
      ]),
      ...FAST,
    });
    await t0.start();
    await waitMesh(ts);
    await waitFor(() => t0.stats().peers.filter((p) => p.state === 'connected').length === 2, 'node 0');
    await waitFor(() => t0.stats().peers[2].dialFailures > 0, 'a failed dial');
    for (const t of [t0, ...ts.filter(Boolean)]) t.broadcast(Buffer.from('last words'));
    const unfinished = new RawPeer(ts[3].boundPort!); // a pending handshake at stop
    await unfinished.ready;
    await Promise.all([t0.stop(), ...ts.filter(Boolean).map((t) => t.stop())]);
    await unfinished.waitClosed();
    await new Promise((r) => setImmediate(r));
    expect(activeCount('TCPSocketWrap')).toBe(before.sockets);
    expect(activeCount('TCPServerWrap')).toBe(before.servers);
    expect(activeCount('Timeout')).toBeLessThanOrEqual(before.timers);
    expect(activeCount('Immediate')).toBeLessThanOrEqual(before.immediates);
    expect(t0.stats().running).toBe(false);
    expect(t0.stats().peers.every((p) => p.state === 'idle')).toBe(true);
  });
});

describe('transport over TLS: bad files, mismatches and impostors', () => {
  const codeOf = (f: () => unknown): string | null => {
    try {
      f();
    } catch (e) {
      return e instanceof DropbearError ? e.code : `untyped: ${String(e)}`;
    }
    return null;
  };
  const codes = (lines: LogLine[], code: string) =>
    lines.filter((l) => (l.obj as { code?: string }).code === code);

  it.skipIf(!haveOpenssl)('refuses bad TLS files when the transport is made, each with its own code', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dropbear-tls-files-'));
    try {
      const g = makeGroup(2, 31);
      const make = (tls: TransportOptions['tls']) => () => transportFor(g, 0, { tls });
      const ca = selfSignedCert(dir, 'ca');
      const other = selfSignedCert(dir, 'other');
      const good = issuedCert(dir, 'good', ca);
      // Fine: a certificate of the CA, with and without `ca`; a self-signed one that is its own `ca`, or alone.
      expect(codeOf(make({ ...good, caFile: ca.certFile }))).toBe(null);
      expect(codeOf(make(good))).toBe(null);
      expect(codeOf(make({ ...other, caFile: other.certFile }))).toBe(null);
      expect(codeOf(make(other))).toBe(null);
      // The certificate of another key.
      expect(codeOf(make({ keyFile: other.keyFile, certFile: good.certFile, caFile: ca.certFile }))).toBe(
        'TLS_KEY_MISMATCH',
      );
      // Expired, not yet valid.
      const old = issuedCert(dir, 'old', ca, { startDate: '20200101000000Z', endDate: '20200102000000Z' });
      expect(codeOf(make({ ...old, caFile: ca.certFile }))).toBe('TLS_CERT_EXPIRED');
      expect(codeOf(make(old))).toBe('TLS_CERT_EXPIRED');
      const early = issuedCert(dir, 'early', ca, {
        startDate: '20990101000000Z',
        endDate: '20990102000000Z',
      });
      expect(codeOf(make({ ...early, caFile: ca.certFile }))).toBe('TLS_CERT_NOT_YET_VALID');
      // Signed by another CA than `ca`, or self-signed beside a `ca`: the peers would refuse it.
      const foreign = issuedCert(dir, 'foreign', other);
      expect(codeOf(make({ ...foreign, caFile: ca.certFile }))).toBe('TLS_CERT_UNTRUSTED');
      expect(codeOf(make({ ...other, caFile: ca.certFile }))).toBe('TLS_CERT_UNTRUSTED');
      // Not PEM: text, and a DER certificate.
      const junk = join(dir, 'junk.pem');
      writeFileSync(junk, 'not a certificate\n', { mode: 0o600 });
      expect(codeOf(make({ ...good, certFile: junk }))).toBe('TLS_FILE_INVALID');
      expect(codeOf(make({ ...good, keyFile: junk }))).toBe('TLS_FILE_INVALID');
      expect(codeOf(make({ ...good, caFile: junk }))).toBe('TLS_FILE_INVALID');
      const der = join(dir, 'good.der');
      execFileSync('openssl', ['x509', '-in', good.certFile, '-outform', 'DER', '-out', der]);
      expect(codeOf(make({ ...good, certFile: der }))).toBe('TLS_FILE_INVALID');
      // Huge: refused before it is read in whole (a /dev/zero would never end).
      const huge = join(dir, 'huge.pem');
      writeFileSync(huge, Buffer.alloc(2 << 20, 0x41), { mode: 0o600 });
      expect(codeOf(make({ ...good, certFile: huge }))).toBe('TLS_FILE_TOO_LARGE');
      expect(codeOf(make({ ...good, keyFile: huge }))).toBe('TLS_FILE_TOO_LARGE');
      expect(codeOf(make({ ...good, caFile: '/dev/zero' }))).toBe('TLS_FILE_TOO_LARGE');
      // A key that group or others can read (the rule of key files, unchanged).
      chmodSync(good.keyFile, 0o644);
      expect(codeOf(make(good))).toBe('KEY_FILE_PERMISSIONS');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!haveOpenssl)(
    'a node with TLS and one without (a mixed group) log TLS_MISMATCH on both sides, rate-limited, and serve their other peers',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dropbear-tls-mixed-'));
      const g = makeGroup(3, 32);
      const ts: Transport[] = [];
      let plain0: Transport | null = null;
      try {
        const ca = selfSignedCert(dir, 'ca');
        const tlsOf = (n: string) => ({ ...issuedCert(dir, n, ca), caFile: ca.certFile });
        const logs = [collector(), collector(), collector()];
        ts[2] = transportFor(g, 2, { ...FAST, logger: logs[2].logger }); // no TLS
        const port2 = await ts[2].start();
        ts[1] = transportFor(g, 1, {
          peers: new Map([[2, { host: HOST, port: port2 }]]),
          tls: tlsOf('n1'),
          ...FAST,
          logger: logs[1].logger,
        });
        const port1 = await ts[1].start();
        ts[0] = transportFor(g, 0, {
          peers: new Map([
            [1, { host: HOST, port: port1 }],
            [2, { host: HOST, port: port2 }],
          ]),
          tls: tlsOf('n0'),
          ...FAST,
          logger: logs[0].logger,
        });
        await ts[0].start();
        // TLS dialers, plain acceptor.
        await waitFor(() => ts[2].stats().inbound.handshakeFailures >= 8, 'TLS dials refused by node 2');
        // A plain dialer, TLS acceptor.
        const plainLogs = collector();
        plain0 = transportFor(g, 0, {
          peers: new Map([[1, { host: HOST, port: port1 }]]),
          ...FAST,
          logger: plainLogs.logger,
        });
        await plain0.start();
        await waitFor(() => plain0!.stats().peers[0].dialFailures >= 5, 'plain dials to node 1');
        await waitFor(() => ts[1].stats().inbound.handshakeFailures >= 5, 'node 1 to refuse them');
        // Node 0 and node 1 still talk over TLS.
        await waitFor(() => connected(ts[0], [1]) && connected(ts[1], [0]), 'nodes 0 and 1 over TLS');
        await exchange([ts[0], ts[1]], 10, 33);
        // Each side names the mismatch, with a code, once (not once per attempt).
        const mismatch2 = codes(logs[2].lines, 'TLS_MISMATCH');
        expect(mismatch2.length).toBeGreaterThanOrEqual(1);
        expect(mismatch2.length).toBeLessThanOrEqual(2);
        expect(mismatch2[0].msg).toMatch(/TLS/);
        const mismatch1 = codes(logs[1].lines, 'TLS_MISMATCH');
        expect(mismatch1.length).toBeGreaterThanOrEqual(1);
        expect(mismatch1.length).toBeLessThanOrEqual(2);
        // The TLS dialers of node 2 (which closes on their ClientHello) and the plain dialer of node 1 (which
        // closes on its HELLO) cannot tell a mismatch for sure: their line says what to check, once in a row.
        for (const [lines, code, hint] of [
          [logs[0].lines, 'TLS_HANDSHAKE_FAILED', /does it use TLS/],
          [logs[1].lines, 'TLS_HANDSHAKE_FAILED', /does it use TLS/],
          [plainLogs.lines, 'HANDSHAKE_CLOSED', /it uses TLS and this node does not/],
        ] as const) {
          const dial = codes(lines, code);
          expect(dial).toHaveLength(1);
          expect((dial[0].obj as { reason: string }).reason).toMatch(hint);
        }
      } finally {
        await plain0?.stop();
        await Promise.all(ts.map((t) => t?.stop()));
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it.skipIf(!haveOpenssl)(
    'failed TLS handshakes (no certificate, an untrusted or expired one) are logged with a code, rate-limited',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dropbear-tls-fail-'));
      const g = makeGroup(2, 34);
      const ts: Transport[] = [];
      try {
        const ca = selfSignedCert(dir, 'ca');
        const otherCa = selfSignedCert(dir, 'otherca');
        const logs = [collector(), collector()];
        ts[1] = transportFor(g, 1, {
          tls: { ...issuedCert(dir, 'n1', ca), caFile: ca.certFile },
          ...FAST,
          logger: logs[1].logger,
        });
        const port1 = await ts[1].start();
        // Clients that are not Dropbear nodes: no certificate (openssl s_client's default), an expired one.
        const old = issuedCert(dir, 'old', ca, { startDate: '20200101000000Z', endDate: '20200102000000Z' });
        const tryTls = (o: tls.ConnectionOptions) =>
          new Promise<void>((resolve) => {
            const s = tls.connect({ host: HOST, port: port1, rejectUnauthorized: false, ...o });
            s.on('error', () => resolve());
            s.on('close', () => resolve());
            s.on('data', () => {});
          });
        for (let i = 0; i < 6; i++) await tryTls({});
        const oldTls = { key: readFileSync(old.keyFile), cert: readFileSync(old.certFile) };
        for (let i = 0; i < 6; i++) await tryTls(oldTls);
        await waitFor(() => ts[1].stats().inbound.handshakeFailures >= 12, 'the failures counted');
        const failed = codes(logs[1].lines, 'TLS_HANDSHAKE_FAILED');
        expect(failed.length).toBeGreaterThanOrEqual(1);
        expect(failed.length).toBeLessThanOrEqual(2);
        expect(failed[0].obj).toMatchObject({ node: 1, remote: expect.stringMatching(/^127\.0\.0\.1:/) });
        // A node whose CA did not sign its peer's certificate: its dial fails with a code, once in a row.
        ts[0] = transportFor(g, 0, {
          peers: new Map([[1, { host: HOST, port: port1 }]]),
          tls: { ...issuedCert(dir, 'n0', otherCa), caFile: otherCa.certFile },
          ...FAST,
          logger: logs[0].logger,
        });
        await ts[0].start();
        await waitFor(() => ts[0].stats().peers[0].dialFailures >= 5, 'dials of node 1');
        const dialFailed = codes(logs[0].lines, 'TLS_HANDSHAKE_FAILED');
        expect(dialFailed).toHaveLength(1);
        expect((dialFailed[0].obj as { reason: string }).reason).toMatch(/certificate/);
        expect(ts[0].stats().peers[0].connects).toBe(0);
      } finally {
        await Promise.all(ts.map((t) => t?.stop()));
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it('judges the expiry of its own certificate in stages (14 days, 1 day, expired), the next check at most MAX_TIMER_MS away', () => {
    const day = 86_400_000;
    const end = Date.UTC(2030, 0, 1);
    expect(CERT_EXPIRY_WARNINGS_MS).toEqual([14 * day, day]);
    // Far off: no warning, and the next look clamped to the longest timer (a longer delay fires at once).
    expect(certExpiryStage(end, end - 100 * day)).toEqual({ stage: 0, checkInMs: MAX_TIMER_MS });
    expect(certExpiryStage(end, end - 14 * day - 5)).toEqual({ stage: 0, checkInMs: 5 });
    expect(certExpiryStage(end, end - 14 * day)).toEqual({ stage: 1, checkInMs: 13 * day });
    expect(certExpiryStage(end, end - day - 1)).toEqual({ stage: 1, checkInMs: 1 });
    expect(certExpiryStage(end, end - day)).toEqual({ stage: 2, checkInMs: day + 1 });
    // Valid through notAfter itself (as loadTls judges it), expired the ms after.
    expect(certExpiryStage(end, end)).toEqual({ stage: 2, checkInMs: 1 });
    expect(certExpiryStage(end, end + 1)).toEqual({ stage: 3, checkInMs: null });
  });

  it.skipIf(!haveOpenssl)(
    'warns at start when its own certificate expires within 14 days, again at 1 day left and once it has expired (TLS_CERT_EXPIRING, TLS_CERT_EXPIRED)',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dropbear-tls-expiry-'));
      const g = makeGroup(2, 32);
      const ts: Transport[] = [];
      try {
        const day = 86_400_000;
        const stamp = (ms: number) => `${new Date(ms).toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
        const files = issuedCert(dir, 'n1', null, { endDate: stamp(Date.now() + 20 * day) });
        const notAfter = Date.parse(new X509Certificate(readFileSync(files.certFile)).validTo);
        const validTo = new Date(notAfter).toISOString();
        // A transport whose wall clock reads `at` as it starts (and runs on from there).
        const startAt = async (at: number) => {
          const logs = collector();
          const offset = at - Date.now();
          const t = transportFor(g, 1, {
            tls: files,
            ...FAST,
            now: () => Date.now() + offset,
            logger: logs.logger,
          });
          ts.push(t);
          await t.start();
          const expiry = (): Record<string, unknown>[] =>
            logs.lines
              .filter((l) => /^TLS_CERT_EXPIR/.test((l.obj as { code?: string }).code ?? ''))
              .map((l) => ({ level: l.level, ...(l.obj as Record<string, unknown>) }));
          return { t, expiry };
        };

        // 1 day and 200 ms left: a warning at start, another when 1 day is left.
        const a = await startAt(notAfter - day - 200);
        expect(a.expiry()).toEqual([
          { level: 'warn', node: 1, code: 'TLS_CERT_EXPIRING', file: files.certFile, validTo, daysLeft: 1 },
        ]);
        expect(a.t.certExpiresInMs()).toBeGreaterThan(day);
        await waitFor(() => a.expiry().length === 2, 'the 1-day warning');
        expect(a.expiry()[1]).toMatchObject({
          level: 'warn',
          code: 'TLS_CERT_EXPIRING',
          file: files.certFile,
        });
        expect(a.expiry()[1].daysLeft as number).toBeLessThanOrEqual(1);
        await a.t.stop();

        // 200 ms left: one warning at start (not one per stage passed), then the expiry, then nothing more.
        const b = await startAt(notAfter - 200);
        expect(b.expiry()).toMatchObject([{ code: 'TLS_CERT_EXPIRING', daysLeft: 0 }]);
        await waitFor(() => b.expiry().length === 2, 'the expiry');
        expect(b.expiry()[1]).toEqual({
          level: 'error',
          node: 1,
          code: 'TLS_CERT_EXPIRED',
          file: files.certFile,
          validTo,
        });
        expect(b.t.certExpiresInMs()).toBeLessThan(0);
        await new Promise((r) => setTimeout(r, 300));
        expect(b.expiry()).toHaveLength(2);
        await b.t.stop();

        // More than 14 days left: nothing said; and without TLS there is no certificate to count down.
        // One timer, unref'd, for when 14 days are left (a minute on), not a poll.
        const timers = vi.spyOn(globalThis, 'setTimeout');
        const c = await startAt(notAfter - 14 * day - 60_000);
        const watch = timers.mock.calls.flatMap(([, ms], i) =>
          (ms as number) > 50_000
            ? [{ ms, ref: (timers.mock.results[i].value as NodeJS.Timeout).hasRef() }]
            : [],
        );
        timers.mockRestore();
        expect(watch).toHaveLength(1);
        expect(watch[0].ms).toBeLessThanOrEqual(60_000);
        expect(watch[0].ref).toBe(false);
        expect(c.expiry()).toEqual([]);
        expect(c.t.certExpiresInMs()).toBeGreaterThan(14 * day);
        expect(transportFor(g, 0).certExpiresInMs()).toBe(null);
      } finally {
        await Promise.all(ts.map((t) => t.stop()));
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it.skipIf(!haveOpenssl)(
    'a man in the middle with a valid certificate of the group CA but no genesis key gets no connection',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dropbear-tls-mitm-'));
      const g = makeGroup(2, 35);
      const ts: Transport[] = [];
      let mitm: tls.Server | null = null;
      const sockets = new Set<net.Socket>();
      try {
        const ca = selfSignedCert(dir, 'ca');
        const tlsOf = (n: string) => ({ ...issuedCert(dir, n, ca), caFile: ca.certFile });
        const logs = collector();
        ts[1] = transportFor(g, 1, { tls: tlsOf('n1'), ...FAST, logger: logs.logger });
        const port1 = await ts[1].start();
        // It ends node 0's TLS and opens its own to node 1, both with its CA-signed certificate, and relays
        // the plaintext both ways: the handshake signatures cover each side's own TLS session.
        const m = tlsOf('mitm');
        const mtls = {
          key: readFileSync(m.keyFile),
          cert: readFileSync(m.certFile),
          ca: readFileSync(m.caFile),
        };
        let relayed = 0;
        mitm = tls.createServer({ ...mtls, requestCert: true, minVersion: 'TLSv1.3' }, (down) => {
          const up = tls.connect({ host: HOST, port: port1, ...mtls, checkServerIdentity: () => undefined });
          for (const s of [down, up]) {
            sockets.add(s);
            s.on('error', () => {});
            s.on('close', () => (s === down ? up : down).destroy());
          }
          up.on('secureConnect', () => relayed++);
          down.pipe(up);
          up.pipe(down);
        });
        await new Promise<void>((r) => mitm!.listen(0, HOST, r));
        const mitmPort = (mitm.address() as net.AddressInfo).port;
        ts[0] = transportFor(g, 0, {
          peers: new Map([[1, { host: HOST, port: mitmPort }]]),
          tls: tlsOf('n0'),
          ...FAST,
        });
        await ts[0].start();
        await waitFor(() => relayed >= 3 && ts[1].stats().inbound.handshakeFailures >= 3, 'relayed dials');
        expect(ts[0].stats().peers[0].connects).toBe(0);
        expect(ts[1].stats().peers[0].connects).toBe(0);
        expect(
          codes(logs.lines, 'HANDSHAKE_BAD').some((l) =>
            /bad signature for node 0/.test((l.obj as { reason: string }).reason),
          ),
        ).toBe(true);
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => (mitm ? mitm.close(() => r()) : r()));
        await Promise.all(ts.map((t) => t?.stop()));
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
