/**
 * A delaying TCP relay: emulates a wide-area link in user space (this kernel has no netem).
 *
 * `startRelay({target, delayMs})` listens on a loopback port; each accepted connection is paired with a
 * fresh connection to the target, and every chunk read on either side is written to the other side
 * `delayMs` later (the link's one-way delay), in order. Nothing blocks: one timer per direction, armed for
 * the oldest chunk still held, releases every chunk that is due. A half-close (FIN) is delayed like data;
 * a reset or error on either side tears both down at once. Flow control: when a direction holds more than
 * `maxBufferedBytes` (held plus not yet written), its source is paused until it falls below half.
 *
 * A relay can also play a network partition (`cut()`, then `heal()`): while cut, nothing crosses it, as if
 * every packet were lost, and TCP's retransmissions deliver what was held once it heals: each relayed
 * connection's bytes and half-closes are held, a side that closes or fails meanwhile tears the pair down
 * only at the heal (its peer learns of it then, as from a reset), and a new connection is reset at once
 * (the peer is unreachable). The transport tests cut links between real transports this way.
 *
 * The relays of a benchmark can run in their own process (`RelayProcess`, `bench/lib/relay.ts --serve`)
 * so that their work does not stall the load generator's event loop; everything is closed by `close()`
 * (in-process) or by killing that process's PID.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

export interface RelayOptions {
  /** Where to forward to. */
  target: { host: string; port: number };
  /** One-way delay added in each direction, ms (0: forward at once, still through the relay). */
  delayMs: number;
  /** Listen address (default 127.0.0.1, port 0: a free one). */
  host?: string;
  port?: number;
  /** Bytes one direction may hold before its source is paused (default 64 MiB). */
  maxBufferedBytes?: number;
  name?: string;
  /**
   * Ports a free port (port 0) must not be: ports other processes were promised and will listen on later
   * (the wan part starts its relays after `group init` picked the nodes' ports and before the nodes
   * listen, so the OS could hand a relay one of them). Such a port is released and another one taken.
   */
  avoid?: readonly number[] | ReadonlySet<number>;
}

export interface RelayStats {
  name: string;
  delayMs: number;
  /** Connections accepted so far, and open now. */
  accepted: number;
  open: number;
  /** Bytes forwarded towards the target, and back. */
  bytesOut: number;
  bytesBack: number;
  /** Times a source was paused because a direction held too much. */
  pauses: number;
  /** Connections reset on arrival because the relay was cut. */
  refused: number;
}

export interface Relay {
  readonly host: string;
  readonly port: number;
  /** `tcp://host:port` of the listening side. */
  readonly address: string;
  stats(): RelayStats;
  /** Stops listening and destroys every relayed connection. */
  close(): Promise<void>;
  /** Partitions the link (see the top of the file): nothing crosses until heal(). */
  cut(): void;
  /** Ends the partition: what was held is forwarded, pairs a side closed meanwhile are torn down. */
  heal(): void;
}

interface Held {
  due: number;
  /** null: the source ended (FIN), forward the end. */
  chunk: Buffer | null;
}

/** Shared by a relay's pipes: while `cut`, a pipe holds everything it reads (Relay.cut). */
interface Gate {
  cut: boolean;
}

/**
 * Forwards `from` → `to`, each chunk `delayMs` after it was read (and not before `gate` is open). Returns
 * `clear`, which clears the timer (used on teardown), and `kick`, which releases what is due (at a heal).
 */
function delayedPipe(
  from: Socket,
  to: Socket,
  delayMs: number,
  maxBuffered: number,
  count: (n: number) => void,
  paused: () => void,
  gate: Gate,
): { clear: () => void; kick: () => void } {
  let queue: Held[] = [];
  let head = 0;
  let held = 0;
  let timer: NodeJS.Timeout | null = null;
  const over = () => held + to.writableLength > maxBuffered;
  const maybeResume = () => {
    if (from.isPaused() && held + to.writableLength <= maxBuffered / 2 && !from.destroyed) from.resume();
  };
  const flush = () => {
    timer = null;
    if (gate.cut) return; // kick() at the heal
    const now = performance.now();
    // Never early: a chunk goes once its delay has fully passed (timers make it up to ~1 ms late).
    while (head < queue.length && queue[head].due <= now) {
      const h = queue[head++];
      if (to.destroyed) continue;
      if (h.chunk === null) to.end();
      else {
        held -= h.chunk.length;
        count(h.chunk.length);
        to.write(h.chunk);
      }
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
    maybeResume();
    arm();
  };
  const arm = () => {
    if (timer || head >= queue.length || gate.cut) return;
    const wait = queue[head].due - performance.now();
    // Due already (or within the timer's resolution): release on the next turn of the loop, not
    // synchronously inside a 'data' handler.
    timer = setTimeout(flush, wait <= 0 ? 0 : Math.ceil(wait));
  };
  const push = (chunk: Buffer | null) => {
    if (delayMs <= 0 && head >= queue.length && !gate.cut) {
      // No delay and nothing held: forward at once, keeping order.
      if (to.destroyed) return;
      if (chunk === null) to.end();
      else {
        count(chunk.length);
        to.write(chunk);
      }
      if (to.writableLength > maxBuffered && !from.isPaused()) {
        paused();
        from.pause();
      }
      return;
    }
    queue.push({ due: performance.now() + delayMs, chunk });
    if (chunk) held += chunk.length;
    if (over() && !from.isPaused()) {
      paused();
      from.pause();
    }
    arm();
  };
  from.on('data', (c: Buffer) => push(c));
  from.on('end', () => push(null));
  to.on('drain', maybeResume);
  return {
    clear: () => {
      if (timer) clearTimeout(timer);
      timer = null;
      queue = [];
      head = 0;
    },
    kick: arm,
  };
}

export function startRelay(o: RelayOptions): Promise<Relay> {
  const delayMs = Math.max(0, o.delayMs);
  const maxBuffered = o.maxBufferedBytes ?? 64 * 1024 * 1024;
  const name = o.name ?? `relay→${o.target.host}:${o.target.port} +${delayMs}ms`;
  const sockets = new Set<Socket>();
  const s: RelayStats = {
    name,
    delayMs,
    accepted: 0,
    open: 0,
    bytesOut: 0,
    bytesBack: 0,
    pauses: 0,
    refused: 0,
  };
  const gate: Gate = { cut: false };
  /** Each open pair's heal(): releases what its pipes hold, or tears it down if a side went meanwhile. */
  const pairs = new Set<() => void>();
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    if (gate.cut) {
      s.refused++;
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    s.accepted++;
    s.open++;
    const upstream = connect({
      host: o.target.host,
      port: o.target.port,
      allowHalfOpen: true,
      noDelay: true,
    });
    client.setNoDelay(true);
    sockets.add(client);
    sockets.add(upstream);
    const pipes: { clear: () => void; kick: () => void }[] = [];
    let closed = 0;
    let doomed = false;
    const heal = () => {
      if (doomed) teardown();
      else for (const p of pipes) p.kick();
    };
    pairs.add(heal);
    const teardown = () => {
      // Cut: the other side learns of it only at the heal.
      if (gate.cut) {
        doomed = true;
        return;
      }
      pairs.delete(heal);
      for (const p of pipes) p.clear();
      client.destroy();
      upstream.destroy();
    };
    const onClose = (sock: Socket) => () => {
      sockets.delete(sock);
      if (++closed === 2) {
        s.open--;
        pairs.delete(heal);
      }
    };
    client.on('close', onClose(client));
    upstream.on('close', onClose(upstream));
    // An error (reset, refused) on either side ends the pair: a real link would lose both directions.
    client.on('error', teardown);
    upstream.on('error', teardown);
    // A side that is fully closed (both directions) closes the other once its delayed data is out.
    client.on('close', (hadError) => {
      if (hadError) teardown();
    });
    upstream.on('close', (hadError) => {
      if (hadError) teardown();
    });
    const paused = () => {
      s.pauses++;
    };
    pipes.push(
      delayedPipe(client, upstream, delayMs, maxBuffered, (n) => (s.bytesOut += n), paused, gate),
      delayedPipe(upstream, client, delayMs, maxBuffered, (n) => (s.bytesBack += n), paused, gate),
    );
  });
  const avoid: ReadonlySet<number> = o.port
    ? new Set()
    : Array.isArray(o.avoid)
      ? new Set(o.avoid)
      : ((o.avoid as ReadonlySet<number> | undefined) ?? new Set());
  let tries = 0;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const listening = () => {
      const a = server.address();
      if (a === null || typeof a === 'string') return reject(new Error('relay: no TCP address'));
      if (avoid.has(a.port)) {
        if (++tries > 100) return reject(new Error('relay: no free port outside the ports to avoid'));
        server.close(() => server.listen(0, o.host ?? '127.0.0.1', listening));
        return;
      }
      server.off('error', reject);
      const host = o.host ?? '127.0.0.1';
      resolve({
        host,
        port: a.port,
        address: `tcp://${host}:${a.port}`,
        stats: () => ({ ...s }),
        close: () =>
          new Promise<void>((res) => {
            for (const sock of sockets) sock.destroy();
            sockets.clear();
            server.close(() => res());
          }),
        cut: () => {
          gate.cut = true;
        },
        heal: () => {
          gate.cut = false;
          for (const h of [...pairs]) h();
        },
      });
    };
    server.listen(o.port ?? 0, o.host ?? '127.0.0.1', listening);
  });
}

// ------------------------------------------------------------------ relays in their own process

export interface RelaySpec {
  name: string;
  target: { host: string; port: number };
  delayMs: number;
  /** See RelayOptions.avoid. */
  avoid?: number[];
}

/**
 * Runs a set of relays in a child process (`node --import tsx bench/lib/relay.ts --serve`): the specs go
 * in on stdin as JSON, the listening ports come back on stdout as one JSON line. `stats()` asks for every
 * relay's counters; `close()` ends the process (SIGTERM, then SIGKILL after 3 s).
 */
export class RelayProcess {
  private constructor(
    readonly child: ChildProcess,
    readonly relays: { name: string; host: string; port: number; address: string; delayMs: number }[],
    private readonly lines: AsyncIterator<string>,
  ) {}

  get pid(): number {
    return this.child.pid ?? -1;
  }

  byName(name: string): { host: string; port: number; address: string } {
    const r = this.relays.find((x) => x.name === name);
    if (!r) throw new Error(`no relay named ${name}`);
    return r;
  }

  static async start(specs: RelaySpec[]): Promise<RelayProcess> {
    const self = fileURLToPath(import.meta.url);
    const child = spawn(process.execPath, ['--import', 'tsx', self, '--serve'], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    const lines = lineReader(child);
    child.stdin!.write(`${JSON.stringify(specs)}\n`);
    const first = await Promise.race([
      lines.next(),
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error('relay process did not start')), 30_000)),
    ]).catch((e) => {
      child.kill('SIGKILL');
      throw e;
    });
    if (first.done) throw new Error(`relay process exited (${child.exitCode})`);
    const relays = JSON.parse(first.value);
    return new RelayProcess(child, relays, lines);
  }

  async stats(): Promise<RelayStats[]> {
    this.child.stdin!.write('stats\n');
    const l = await this.lines.next();
    return l.done ? [] : JSON.parse(l.value);
  }

  close(): Promise<void> {
    const c = this.child;
    if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
    return new Promise((res) => {
      const t = setTimeout(() => c.kill('SIGKILL'), 3000);
      c.once('exit', () => {
        clearTimeout(t);
        res();
      });
      c.kill('SIGTERM');
    });
  }
}

function lineReader(child: ChildProcess): AsyncIterator<string> {
  let buf = '';
  const ready: string[] = [];
  const waiting: ((r: IteratorResult<string>) => void)[] = [];
  let ended = false;
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiting.shift();
      if (w) w({ value: line, done: false });
      else ready.push(line);
    }
  });
  child.on('exit', () => {
    ended = true;
    for (const w of waiting.splice(0)) w({ value: undefined, done: true });
  });
  return {
    next: () =>
      new Promise((res) => {
        const l = ready.shift();
        if (l !== undefined) return res({ value: l, done: false });
        if (ended) return res({ value: undefined, done: true });
        waiting.push(res);
      }),
  };
}

async function serve(): Promise<void> {
  let buf = '';
  let relays: Relay[] | null = null;
  const stop = async () => {
    await Promise.all((relays ?? []).map((r) => r.close()));
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The parent's end of stdin closing means the parent is gone: stop too (no orphans).
  process.stdin.on('end', stop);
  process.stdin.on('data', async (d: Buffer) => {
    buf += d.toString('utf8');
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (relays === null) {
        const specs = JSON.parse(line) as RelaySpec[];
        relays = await Promise.all(specs.map((s) => startRelay(s)));
        process.stdout.write(
          `${JSON.stringify(
            relays.map((r, k) => ({
              name: specs[k].name,
              host: r.host,
              port: r.port,
              address: r.address,
              delayMs: specs[k].delayMs,
            })),
          )}\n`,
        );
      } else if (line === 'stats') process.stdout.write(`${JSON.stringify(relays.map((r) => r.stats()))}\n`);
    }
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--serve')) void serve();
