/**
 * Node-to-node transport: authenticated, length-prefixed frames over TCP (optionally TLS).
 *
 * - One connection per pair of nodes. The node with the LOWER id dials, the higher one accepts, so
 *   there is never a race between two simultaneous dials. An acceptor refuses a HELLO from a higher id.
 *   If a peer dials again while the acceptor still holds an older connection from it (a restart, a
 *   half-dead socket), the newest AUTHENTICATED connection wins and the older one is closed.
 * - The dialer redials forever while running, with exponential backoff and equal jitter:
 *   delay = b/2 + random·b/2, b = min(maxMs, minMs·2^attempts). `attempts` resets after a connection
 *   that was authenticated and closed without a fault on our side; it keeps growing across failed
 *   dials, failed handshakes and connections we closed for garbage (so a misbehaving peer is redialled
 *   ever more slowly).
 * - Wake-up: once listening, and again when the connection from one of them closes, a node sends each
 *   lower id (those that dial it) a HELLO of its own on a throw-away connection, and a node that gets a
 *   HELLO from a peer it dials redials that peer at once if it is backing off (nothing else: the
 *   connection is closed, nothing signed or checked). Without it a restarted node waited out its dialers'
 *   backoff, which grew while it was down: 1–8 s after it listened, up to 10 s (maxMs), before 2f peers
 *   were connected and it was ready (a 4-node group, 2026-12-06); so did a node resumed from SIGSTOP.
 *   The wake-up is sent again every `wakeIntervalMs` (1 s) for as long as that peer has no connection to
 *   this node: after a network partition, the one sent when the connection closed was lost in it, and
 *   the dialer's backoff had grown to maxMs, so the pair stayed apart up to 10 s after the network
 *   healed (four transports on loopback, 2026-12-06: 0.4–9.4 s, now 0.04–0.95 s; bench/heal.ts). It
 *   costs a peer that is down one connection attempt per wakeIntervalMs, and one that is connected
 *   nothing. The HELLO is not authenticated, and need not be: whoever sends one can make this node dial
 *   a genesis address early, which is what a connection to that peer would cost anyway, and at most
 *   once per wakeIntervalMs however many come.
 * - Handshake (see frames.ts), wire versions 2 and 3 (3: two more transaction kinds): HELLO(version, nonceD) → CHALLENGE(nonceA) → AUTH(sigD) →
 *   OK(sigA). Both sides sign, under TAGS.handshake and the group id, a transcript holding the version,
 *   their role, both ids, both fresh nonces and (under TLS) the TLS exporter value; keys come from the
 *   genesis only. The dialer proves its key first and the acceptor signs only once that proof verified, so
 *   a connection that has not proven a genesis key costs the acceptor no signature and at most one check
 *   (its AUTH). Version 1 (until 2026-12-06) was HELLO(nonceD) → CHALLENGE(nonceA, sigA) → AUTH(sigD) → OK:
 *   the acceptor signed for any HELLO, a signature per connection (over a nonceD of the caller's choosing)
 *   for anyone who reached the port. Frames are delivered only after the handshake, tagged with the
 *   authenticated peer id. A HELLO of another wire version (a node of another release, whose messages
 *   would not decode here) is answered with VERSION(ours) and refused; the dialer so answered gives up that
 *   dial (and backs off as after any failed handshake). Both log PEER_VERSION_MISMATCH naming both versions,
 *   and neither quarantines the other: they never connect, so no frame of the other version reaches the
 *   host (reportBad). Before the handshake ends, frames are limited to 128 bytes and
 *   the whole handshake (connect included) to `handshakeTimeoutMs`; an inbound connection must send its
 *   HELLO within `helloTimeoutMs` (2 s). At most `maxPendingHandshakes` (64) inbound connections may be
 *   unauthenticated at once, all sources together: one more closes the OLDEST of them. Refusing the new
 *   one instead let anyone who reaches the port hold every slot with idle sockets, re-opened as they time
 *   out, and keep real peers out; evicting the oldest, a peer that completes its handshake in one round
 *   trip gets in unless more than the cap of connections arrive during that round trip. Under TLS the same
 *   cap applies, separately, to connections still in their TLS handshake (before the HELLO): one more
 *   closes the oldest of them, logged, and counted as evictedBusy.
 * - Frames are delivered raw (the caller decodes); a frame the caller cannot use (undecodable, or a
 *   message with a bad signature, the peer's own or relayed) is reported with reportBad(from, reason),
 *   which closes that connection and QUARANTINES the peer: until the quarantine ends this node neither
 *   dials it nor accepts it (its HELLO is refused before anything is signed or checked, and an attempt
 *   does not lengthen the quarantine). 1 s for a first report, doubled for each further one up to 60 s,
 *   back to 1 s after 10 min without one (`quarantine`): a faulty peer cannot keep a node busy checking
 *   its junk, and an honest one that restarts gets back in. An oversized length prefix, a frame cut by
 *   end of stream, or a bad handshake closes that connection, without a quarantine (a crash mid-write or
 *   a configuration mismatch looks the same); all are counted, and no other connection is affected.
 *   Such closes, like TLS failures and evictions, are logged at most once per 10 s per code (per peer and
 *   code after authentication), with how many were not (`suppressed`): anyone who reaches the port could
 *   otherwise write a log line per connection they open.
 * - Liveness: a side that has written nothing for `heartbeatMs` sends an empty frame (length 0, only
 *   valid after the handshake, never delivered); a connection on which nothing arrived for
 *   `idleTimeoutMs` is closed (and redialled by its dialer), so a peer that died without a TCP reset
 *   is noticed in seconds, not after the kernel's retransmission timeout.
 * - Per-peer send queues bounded by bytes and by frames. When full, the OLDEST queued frames are dropped
 *   (and counted): consensus messages are superseded by newer ones (later views, sequence numbers,
 *   checkpoints), the protocol retransmits what still matters, and a peer that comes back is best
 *   served by the freshest state. Frames queue while the peer is disconnected and are sent on connect.
 * - Writes are coalesced: queued frames are flushed on the next setImmediate, small frames copied into
 *   one buffer, large ones (≥ 64 KiB) written without a copy under cork(); `write()` returning false
 *   stops the flush until 'drain'.
 *
 * Limits: without TLS the handshake authenticates the peer at connection time only; an attacker on the
 * path could inject into the TCP stream afterwards (consensus messages carry their own signatures).
 * With TLS, the handshake signs the TLS exporter value, which binds it to that TLS session.
 */
import { createPrivateKey, type KeyObject, randomBytes, X509Certificate } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { equalBytes, type KeyPair, signTagged, TAGS, verifyTagged } from '../protocol/crypto.ts';
import { DropbearError } from '../protocol/errors.ts';
import { readAtMost, readSecretFile } from '../protocol/keyfile.ts';
import { type Genesis, groupIdOf } from '../protocol/messages.ts';
import {
  decodeAuth,
  decodeChallenge,
  decodeHello,
  decodeOk,
  decodeVersion,
  encodeAuth,
  encodeChallenge,
  encodeFrame,
  encodeHello,
  encodeOk,
  encodeVersion,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameError,
  formatAddress,
  HANDSHAKE_MAX_FRAME,
  type HostPort,
  HS,
  handshakeTranscript,
  helloVersion,
  MAX_FRAME_LIMIT,
  NONCE_BYTES,
  parseAddress,
  ROLE,
  WIRE_VERSION,
} from './frames.ts';

export { formatAddress, type HostPort, parseAddress } from './frames.ts';

/** pino-compatible: `logger.warn({ peer: 2 }, 'message')`. */
export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}
export const noopLogger: Logger = { info() {}, warn() {}, error() {} };

/**
 * The files are read and checked when the transport is made (loadTls; a node makes it before it loads its
 * models or opens its ledger), so a missing, unprotected, oversized or unusable one, a certificate that is not
 * the key's, is expired or not yet valid, or does not chain to `ca`, stops the node before anything starts.
 * They are read once: a new certificate or CA takes effect when the node restarts (restart nodes one at a
 * time, at most f at once).
 */
export interface TlsConfig {
  /**
   * PEM private key of this node: a secret, read under the key files' rule (protocol/keyfile.ts,
   * readSecretFile): KEY_FILE_PERMISSIONS when group or others may read or write it (`chmod 600`).
   */
  keyFile: string;
  /** PEM certificate of this node (public: any mode). */
  certFile: string;
  /**
   * PEM CA bundle. When given, both sides require and verify a certificate chaining to it (host names
   * are not checked, deliberately: peers are identified by the genesis handshake, whose signatures cover
   * this TLS session's exporter value, so a man in the middle holding a certificate of the same CA, but no
   * genesis key, completes no handshake: it cannot sign for its own session, nor relay a signature made
   * for another). The CA only keeps those without a certificate of it from reaching the genesis handshake.
   * When absent, TLS only encrypts (this node checks no certificate; peers with a `ca` still check its),
   * and authentication rests on the handshake, which is bound to the TLS session either way.
   */
  caFile?: string;
}

export interface TransportOptions {
  /** This node's id in the genesis. */
  id: number;
  genesis: Genesis;
  /** groupIdOf(genesis), computed when absent. */
  groupId?: Uint8Array;
  /** This node's key pair; its public key must be the genesis one. */
  key: KeyPair;
  listen: HostPort;
  /**
   * Addresses of peers: those this node dials (higher ids) and, for the wake-up HELLO only, those that
   * dial it. Default: the genesis `address` of each (`tcp://host:port`). A string is parsed as such an
   * address.
   */
  peers?: Map<number, HostPort | string>;
  /** Largest frame payload sent or accepted. Default max(16 MiB, genesis maxInputBytes + 1 MiB). */
  maxFrameBytes?: number;
  /** Per-peer send queue bounds. Default: maxBytes = 2·maxFrameBytes + 1 MiB, maxFrames = 100,000. */
  queue?: { maxBytes?: number; maxFrames?: number };
  /** Redial backoff. Default 100 ms … 10 s. */
  backoff?: { minMs?: number; maxMs?: number };
  /**
   * Wake-ups (see the top of the file): a node sends a peer that dials it one at most every this often,
   * and again this often while that peer has no connection to it; a node redials a peer on its wake-ups
   * at most once this often. Default 1 s.
   */
  wakeIntervalMs?: number;
  /** Connect + handshake must finish within this. Default 5 s. */
  handshakeTimeoutMs?: number;
  /** An inbound connection must send its HELLO within this (at most handshakeTimeoutMs). Default 2 s. */
  helloTimeoutMs?: number;
  /**
   * Unauthenticated inbound connections held at once; one more closes the oldest of them (counted as
   * `inbound.evictedBusy`). Default 64.
   */
  maxPendingHandshakes?: number;
  /**
   * Quarantine of a peer reported with reportBad (a frame its host could not use: undecodable, or a
   * signature that does not verify). Its connection is closed, and until the quarantine ends
   * this node neither dials it nor accepts it (its HELLO is refused before any signature is made or
   * checked). The first report costs `minMs`, each further one twice the one before, up to `maxMs`; a report
   * more than `forgiveMs` after the last quarantine ended starts again from `minMs`. Default 1 s, 60 s, 10 min.
   * Integers, 1 ≤ minMs ≤ maxMs ≤ 2^31 - 1 and forgiveMs ≥ 0 (quarantineProblem), else TRANSPORT_CONFIG.
   */
  quarantine?: { minMs?: number; maxMs?: number; forgiveMs?: number };
  /** Initial delay of TCP keep-alive probes. Default 10 s. */
  keepAliveMs?: number;
  /**
   * A connected side that has written nothing for this long sends an empty frame (a keep-alive, never
   * delivered). Default 5 s; 0 turns heartbeats and the idle timeout off.
   */
  heartbeatMs?: number;
  /**
   * A connection on which nothing at all arrived for this long is closed (the peer crashed or the path
   * died without a reset); a dialer then redials. Default 4 × heartbeatMs.
   */
  idleTimeoutMs?: number;
  tls?: TlsConfig;
  /**
   * The wall clock (ms since the epoch) this node's own TLS certificate is judged by, at start (loadTls) and
   * while running (TLS_CERT_EXPIRING). Default Date.now; tests move it.
   */
  now?: () => number;
  logger?: Logger;
  /**
   * The wire version this node announces and accepts (an integer in 1..255). Default WIRE_VERSION, the only
   * one this code's messages are in: another value is for tests, to play a node of another release.
   */
  wireVersion?: number;
}

/** TransportOptions.quarantine's defaults: 1 s, 60 s, 10 min. */
export const DEFAULT_QUARANTINE: Readonly<Required<NonNullable<TransportOptions['quarantine']>>> = {
  minMs: 1_000,
  maxMs: 60_000,
  forgiveMs: 600_000,
};

/** The longest delay setTimeout takes (2^31 - 1 ms, about 24.8 days); past it Node fires the timer after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * What is wrong with quarantine settings (TransportOptions.quarantine), or null: `field` is the key at
 * fault ('' for minMs and maxMs together), `why` follows its name in a message. Each key is one of
 * DEFAULT_QUARANTINE's, left out (or undefined) for its default; minMs and maxMs are integers in
 * 1..MAX_TIMER_MS (timer delays: a redial waits out the quarantine, and a longer one would fire at once),
 * forgiveMs an integer in 0..2^53 - 1, and minMs ≤ maxMs, defaults included. The one rule for both the
 * transport (TRANSPORT_CONFIG) and the node config file (config.ts, CONFIG_INVALID).
 */
export function quarantineProblem(
  q: Readonly<Record<string, unknown>>,
): { field: string; why: string } | null {
  const known = Object.keys(DEFAULT_QUARANTINE);
  for (const [k, v] of Object.entries(q)) {
    if (!known.includes(k))
      return { field: k, why: `is not a quarantine setting (known: ${known.join(', ')})` };
    const [min, max] = k === 'forgiveMs' ? [0, Number.MAX_SAFE_INTEGER] : [1, MAX_TIMER_MS];
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max))
      return { field: k, why: `must be an integer in ${min}..${max} (ms)` };
  }
  const minMs = (q.minMs as number | undefined) ?? DEFAULT_QUARANTINE.minMs;
  const maxMs = (q.maxMs as number | undefined) ?? DEFAULT_QUARANTINE.maxMs;
  if (minMs > maxMs)
    return {
      field: '',
      why: `needs minMs ≤ maxMs (here ${minMs} > ${maxMs}; defaults ${DEFAULT_QUARANTINE.minMs}, ${DEFAULT_QUARANTINE.maxMs})`,
    };
  return null;
}

export type PeerState = 'idle' | 'connecting' | 'handshaking' | 'connected' | 'backoff' | 'waiting';

export interface PeerStats {
  id: number;
  /** 'dial': this node dials the peer (lower id dials higher); 'accept': the peer dials this node. */
  role: 'dial' | 'accept';
  /** idle (not started / stopped), waiting (accept side, no connection), connecting, handshaking, connected, backoff. */
  state: PeerState;
  address: string | null;
  framesIn: number;
  bytesIn: number;
  framesOut: number;
  bytesOut: number;
  queuedFrames: number;
  queuedBytes: number;
  /** Frames dropped from the send queue (full) or refused by it (larger than the queue). */
  drops: number;
  /** Connections to this peer closed for garbage after authentication (bad length, truncated, reportBad). */
  badFrames: number;
  /** Times this peer was quarantined (reportBad; see TransportOptions.quarantine). */
  quarantines: number;
  /** What is left of its quarantine, in ms (0: none). */
  quarantinedMs: number;
  /** Dial side: dials that failed before authentication (refused, timed out, bad handshake). */
  dialFailures: number;
  /** Authenticated connections established. */
  connects: number;
  /** Authenticated connections after the first. */
  reconnects: number;
  disconnects: number;
  lastError: string | null;
}

export interface TransportStats {
  id: number;
  /** Bound port once started, else null. */
  port: number | null;
  running: boolean;
  peers: PeerStats[];
  inbound: {
    /** Inbound connections taken in (TCP, or TLS once its handshake is done). */
    accepted: number;
    /** Inbound connections that authenticated. */
    authenticated: number;
    /** Inbound connections closed before authenticating: bad or timed-out handshake, garbage, TLS failure. */
    handshakeFailures: number;
    /** Unauthenticated inbound connections closed, oldest first, to make room for a newer one (these count
     *  as handshakeFailures too). */
    evictedBusy: number;
    /** Inbound connections refused at their HELLO because the node they claimed to be was quarantined (these
     *  do not count as handshakeFailures). */
    quarantined: number;
    /** HELLOs from a peer this node dials: a wake-up (it listens again), closed without a handshake and not
     *  counted as handshakeFailures; the peer is redialled at once if it was being backed off. */
    wakeUps: number;
  };
}

export type FrameHandler = (from: number, bytes: Buffer) => void;
export type PeerStateHandler = (peer: number, state: PeerState) => void;

const DEFAULT_MIN_FRAME = 16 * 1024 * 1024;
const WRITE_BATCH_BYTES = 256 * 1024;
const LARGE_FRAME_BYTES = 64 * 1024;
const TLS_EXPORTER_LABEL = 'EXPORTER-dropbear-handshake';
/**
 * Connections refused or closed for a fault of the other end (TLS failures, garbage, bad handshakes,
 * evictions; after authentication, per peer) are logged at most once per this, per code (Transport.logLimited).
 */
export const FAULT_LOG_INTERVAL_MS = 10_000;
/** OpenSSL's errors for bytes that are not TLS records (a plain Dropbear HELLO, an HTTP request). */
const NOT_TLS_ERRORS = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_HTTP_REQUEST',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_RECORD_LENGTH_MISMATCH',
  'ERR_SSL_UNKNOWN_PROTOCOL',
]);
/** Node's codes for a certificate that failed verification (CERT_HAS_EXPIRED, DEPTH_ZERO_SELF_SIGNED_CERT…). */
const TLS_CERT_ERRORS = /^(CERT_|DEPTH_ZERO_|SELF_SIGNED_|UNABLE_TO_|INVALID_CA|PATH_LENGTH|INVALID_PURPOSE)/;
/** The error a TCP socket still in its TLS handshake is destroyed with when evicted (trackTlsHandshake);
 *  its TLS socket fails with it (tlsClientError). */
class TlsEvicted extends Error {
  constructor() {
    super('evicted: TLS handshakes in progress at the limit (maxPendingHandshakes)');
  }
}
/** An empty frame: sent when a connection has been quiet for heartbeatMs, dropped by the receiver. */
const KEEPALIVE = Buffer.alloc(FRAME_HEADER_BYTES);

type Phase =
  | 'connecting' // dialer: TCP/TLS connect in progress
  | 'challenge' // dialer: HELLO sent, waiting for CHALLENGE (or VERSION)
  | 'ok' // dialer: AUTH sent, waiting for OK (the acceptor's signature)
  | 'hello' // acceptor: waiting for HELLO
  | 'auth' // acceptor: CHALLENGE sent (nothing signed), waiting for AUTH
  | 'open'
  | 'closed';

interface Conn {
  socket: net.Socket;
  dialer: boolean;
  /** Dialer: the peer dialled. Acceptor: set once authenticated. */
  peer: Peer | null;
  phase: Phase;
  decoder: FrameDecoder;
  remote: string;
  nonceD: Uint8Array | null;
  nonceA: Uint8Array | null;
  /** Acceptor: the id claimed in HELLO (not trusted until AUTH verifies). */
  claimed: number;
  /** Acceptor: refused because the peer it claimed to be is quarantined, or a wake-up (not a handshake failure). */
  refused: boolean;
  binding: Uint8Array;
  /** performance.now() when the connection was made (accepted, or dial started). */
  startedAt: number;
  timer: NodeJS.Timeout | null;
  waitingDrain: boolean;
  /** performance.now() of the last bytes read / written (for heartbeats and the idle timeout). */
  lastRx: number;
  lastTx: number;
  closed: Promise<void>;
}

interface Peer {
  id: number;
  publicKey: Uint8Array;
  dial: boolean;
  address: HostPort | null;
  /** A peer that dials this node: where its wake-up HELLO goes (null: no usable address, no wake-up). */
  wakeAt: HostPort | null;
  /** A peer this node dials: it sent a wake-up while a dial was under way (woken). */
  wokenWhileDialling: boolean;
  /** A peer this node dials: performance.now() of the last dial made on a wake-up (-Infinity: none). */
  lastWokenDialAt: number;
  /** A peer this node dials: a redial on a wake-up was logged since it last connected (the rest are not). */
  wokenLogged: boolean;
  /** A peer this node dials: performance.now() when `timer` (the next dial) fires, while it is set. */
  dueAt: number;
  /** A peer that dials this node: the next wake-up while it has no connection here (wakeDue). */
  wakeTimer: NodeJS.Timeout | null;
  /** A peer that dials this node: performance.now() of the last wake-up sent (-Infinity: none). */
  lastWakeAt: number;
  /** A peer that dials this node: the last wake-up's connection, while open (one at a time). */
  wakeSocket: net.Socket | null;
  conn: Conn | null;
  state: PeerState;
  queue: FrameQueue;
  attempts: number;
  timer: NodeJS.Timeout | null;
  flush: NodeJS.Immediate | null;
  /** Log suppression: the first failure of a streak is logged, the rest only counted. */
  failing: boolean;
  /** The fault code of the last failed dial logged while failing (the same one again is only counted). */
  lastFault: string | null;
  dropping: boolean;
  /** Quarantine: performance.now() until which the peer is kept out, and the reports behind it in a row. */
  quarantinedUntil: number;
  offences: number;
  /** A refused HELLO of this quarantine was logged (the rest are only counted). */
  refusalLogged: boolean;
  stats: Omit<
    PeerStats,
    'id' | 'role' | 'state' | 'address' | 'queuedFrames' | 'queuedBytes' | 'reconnects' | 'quarantinedMs'
  >;
}

/** FIFO of payloads with O(1) push/shift and running byte/frame counts (bytes include headers). */
class FrameQueue {
  private items: (Uint8Array | undefined)[] = [];
  private head = 0;
  count = 0;
  bytes = 0;

  push(f: Uint8Array): void {
    this.items.push(f);
    this.count++;
    this.bytes += f.length + FRAME_HEADER_BYTES;
  }

  shift(): Uint8Array {
    const f = this.items[this.head]!;
    this.items[this.head++] = undefined;
    this.count--;
    this.bytes -= f.length + FRAME_HEADER_BYTES;
    if (this.count === 0) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return f;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
    this.count = 0;
    this.bytes = 0;
  }
}

function transportError(code: string, message: string, details?: Record<string, unknown>): DropbearError {
  return new DropbearError(code, message, details);
}

/** The most a TLS file (key, certificate, CA bundle) may hold: a public CA bundle is about 220 KB. */
export const TLS_FILE_MAX_BYTES = 1 << 20;

/**
 * A public TLS file (certificate, CA bundle): TLS_FILE_UNREADABLE naming it when it cannot be read,
 * TLS_FILE_TOO_LARGE past TLS_FILE_MAX_BYTES (read no further).
 */
function readTlsFile(path: string, what: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw transportError('TLS_FILE_UNREADABLE', `cannot read ${what} ${path}: ${errText(e)}`, { file: path });
  }
  try {
    const b = readAtMost(fd, TLS_FILE_MAX_BYTES);
    if (b === null)
      throw transportError(
        'TLS_FILE_TOO_LARGE',
        `${what} ${path} is larger than ${TLS_FILE_MAX_BYTES} bytes: not read`,
        { file: path, maxBytes: TLS_FILE_MAX_BYTES },
      );
    return b;
  } catch (e) {
    if (e instanceof DropbearError) throw e;
    throw transportError('TLS_FILE_UNREADABLE', `cannot read ${what} ${path}: ${errText(e)}`, { file: path });
  } finally {
    closeSync(fd);
  }
}

/** The PEM certificates in `pem`, parsed; TLS_FILE_INVALID when there is none, or one does not parse. */
function pemCertificates(pem: Buffer, what: string, path: string): X509Certificate[] {
  const blocks = pem
    .toString('latin1')
    .match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (!blocks)
    throw transportError(
      'TLS_FILE_INVALID',
      `${what} ${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----); a DER file converts with \`openssl x509 -inform DER -in ${path} -out <file>.pem\``,
      { file: path },
    );
  return blocks.map((b) => {
    try {
      return new X509Certificate(b);
    } catch (e) {
      throw transportError(
        'TLS_FILE_INVALID',
        `${what} ${path}: a certificate does not parse: ${errText(e)}`,
        {
          file: path,
        },
      );
    }
  });
}

/**
 * Reads and checks the TLS files (TransportOptions.tls) so that what would fail every connection stops the
 * node at start, with a code: TLS_FILE_UNREADABLE, TLS_FILE_TOO_LARGE, KEY_FILE_PERMISSIONS, TLS_FILE_INVALID
 * (not PEM, or not a key or certificate OpenSSL takes), TLS_KEY_MISMATCH (the certificate is not the key's),
 * TLS_CERT_EXPIRED / TLS_CERT_NOT_YET_VALID (the node's own certificate, by this machine's clock: any peer
 * with a `ca` would refuse it), TLS_CERT_UNTRUSTED (with `ca`: the certificate does not chain to it, so
 * peers with the same `ca` would refuse it). Returns the files' bytes and when the certificate expires
 * (`notAfter`, ms since the epoch: the node warns as that nears, Transport.watchCert). `refusedBy` names who
 * would refuse an expired certificate, in its message: the peers, or (the API's files, node/run.ts) clients.
 */
export function loadTls(
  opts: TlsConfig,
  now = Date.now(),
  refusedBy = 'peers',
): { key: Buffer; cert: Buffer; ca?: Buffer; notAfter: number } {
  const key = readSecretFile(opts.keyFile, 'TLS key file', {
    maxBytes: TLS_FILE_MAX_BYTES,
    code: 'TLS_FILE_TOO_LARGE',
  });
  const cert = readTlsFile(opts.certFile, 'TLS certificate file');
  const ca = opts.caFile ? readTlsFile(opts.caFile, 'TLS CA file') : undefined;
  let privateKey: KeyObject;
  try {
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key.toString('latin1')))
      throw new Error('no PEM private key');
    privateKey = createPrivateKey({ key, format: 'pem', passphrase: '' });
  } catch (e) {
    throw transportError(
      'TLS_FILE_INVALID',
      `TLS key file ${opts.keyFile} is not an unencrypted PEM private key: ${errText(e)}`,
      { file: opts.keyFile },
    );
  }
  const [leaf, ...chain] = pemCertificates(cert, 'TLS certificate file', opts.certFile);
  const anchors = ca ? pemCertificates(ca, 'TLS CA file', opts.caFile!) : [];
  if (!leaf.checkPrivateKey(privateKey))
    throw transportError(
      'TLS_KEY_MISMATCH',
      `TLS certificate ${opts.certFile} (${leaf.subject.replace(/\n/g, ', ')}) is not the certificate of key ${opts.keyFile}`,
      { certFile: opts.certFile, keyFile: opts.keyFile },
    );
  const from = Date.parse(leaf.validFrom);
  const to = Date.parse(leaf.validTo);
  if (now < from)
    throw transportError(
      'TLS_CERT_NOT_YET_VALID',
      `TLS certificate ${opts.certFile} is valid only from ${leaf.validFrom} (this machine's clock: ${new Date(now).toISOString()})`,
      { file: opts.certFile, validFrom: leaf.validFrom },
    );
  if (now > to)
    throw transportError(
      'TLS_CERT_EXPIRED',
      `TLS certificate ${opts.certFile} expired ${leaf.validTo}: ${refusedBy} refuse it; install a new one and restart the node`,
      { file: opts.certFile, validTo: leaf.validTo },
    );
  if (ca) {
    // Up the chain the certificate file holds, to a certificate of the CA file (or the CA itself).
    let cur = leaf;
    let trusted = false;
    for (let depth = 0; depth <= chain.length && !trusted; depth++) {
      const issuedBy = (c: X509Certificate) => cur.checkIssued(c) && cur.verify(c.publicKey);
      if (anchors.some((a) => a.fingerprint256 === cur.fingerprint256 || issuedBy(a))) trusted = true;
      else {
        const next = chain.find(issuedBy);
        if (!next) break;
        cur = next;
      }
    }
    if (!trusted)
      throw transportError(
        'TLS_CERT_UNTRUSTED',
        `TLS certificate ${opts.certFile} (issuer ${leaf.issuer.replace(/\n/g, ', ')}) does not chain to the CA file ${opts.caFile}: peers with that CA refuse it`,
        { certFile: opts.certFile, caFile: opts.caFile },
      );
  }
  try {
    tls.createSecureContext({ key, cert, ca, minVersion: 'TLSv1.3' });
  } catch (e) {
    throw transportError('TLS_FILE_INVALID', `TLS files not usable: ${errText(e)}`, {
      keyFile: opts.keyFile,
      certFile: opts.certFile,
      caFile: opts.caFile,
    });
  }
  return { key, cert, ca, notAfter: to };
}

const DAY_MS = 86_400_000;
/**
 * How long before its own certificate expires a node warns (TLS_CERT_EXPIRING): at start when less is left,
 * and again while running as each is reached; then once more (TLS_CERT_EXPIRED) when it has expired.
 */
export const CERT_EXPIRY_WARNINGS_MS: readonly number[] = [14 * DAY_MS, DAY_MS];

/**
 * Where a certificate valid until `notAfter` stands at `now` (ms since the epoch): `stage`, how many of
 * CERT_EXPIRY_WARNINGS_MS have been reached, or CERT_EXPIRY_WARNINGS_MS.length + 1 once it has expired (after
 * `notAfter`, as loadTls judges it); `checkInMs`, when the next stage is reached (clamped to 1..MAX_TIMER_MS:
 * a longer delay would fire at once), or null once expired (there is none).
 */
export function certExpiryStage(notAfter: number, now: number): { stage: number; checkInMs: number | null } {
  if (now > notAfter) return { stage: CERT_EXPIRY_WARNINGS_MS.length + 1, checkInMs: null };
  const left = notAfter - now;
  const stage = CERT_EXPIRY_WARNINGS_MS.filter((ms) => left <= ms).length;
  // The next warning's point, or the first ms past notAfter.
  const next = stage < CERT_EXPIRY_WARNINGS_MS.length ? left - CERT_EXPIRY_WARNINGS_MS[stage] : left + 1;
  return { stage, checkInMs: Math.min(MAX_TIMER_MS, Math.max(1, next)) };
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class Transport {
  readonly id: number;
  readonly groupId: Uint8Array;
  readonly maxFrameBytes: number;
  /** The wire version spoken (TransportOptions.wireVersion). */
  readonly wireVersion: number;
  private readonly key: KeyPair;
  private readonly listenAt: HostPort;
  private readonly log: Logger;
  private readonly queueMaxBytes: number;
  private readonly queueMaxFrames: number;
  private readonly backoffMin: number;
  private readonly backoffMax: number;
  private readonly wakeIntervalMs: number;
  private readonly handshakeTimeoutMs: number;
  private readonly helloTimeoutMs: number;
  private readonly maxPending: number;
  private readonly quarantineMin: number;
  private readonly quarantineMax: number;
  private readonly forgiveMs: number;
  private readonly keepAliveMs: number;
  private readonly heartbeatMs: number;
  private readonly idleTimeoutMs: number;
  private ticker: NodeJS.Timeout | null = null;
  private readonly tlsContext: { key: Buffer; cert: Buffer; ca?: Buffer } | null = null;
  private readonly now: () => number;
  /** Under TLS, this node's own certificate: its file and end of validity (ms since the epoch). */
  private readonly ownCert: { file: string; notAfter: number } | null = null;
  /** The expiry warnings given so far (certExpiryStage's stage), and the one timer for the next (watchCert). */
  private certStage = 0;
  private certTimer: NodeJS.Timeout | null = null;

  private readonly peers = new Map<number, Peer>();
  private readonly conns = new Set<Conn>();
  private readonly accepted = new Set<net.Socket>();
  private readonly frameHandlers: FrameHandler[] = [];
  private readonly stateHandlers: PeerStateHandler[] = [];
  private server: net.Server | null = null;
  private port: number | null = null;
  private phase: 'new' | 'running' | 'stopped' = 'new';
  /** Inbound connections not yet authenticated, oldest first (a Set keeps insertion order). */
  private readonly pending = new Set<Conn>();
  /**
   * Under TLS, inbound sockets still in their TLS handshake (before onInbound sees them), oldest first, by
   * remote address and port (what the TLS socket reports too). At most maxPendingHandshakes.
   */
  private readonly tlsHandshaking = new Map<string, net.Socket>();
  /** Under TLS, each accepted TCP socket's remote address and port, read as it was accepted (tlsRemote). */
  private readonly acceptedRemote = new WeakMap<net.Socket, string>();
  /** Per code (and peer), when the next fault may be logged, and how many were not since (logLimited). */
  private readonly faultLogs = new Map<string, { next: number; suppressed: number }>();
  private readonly inbound = {
    accepted: 0,
    authenticated: 0,
    handshakeFailures: 0,
    evictedBusy: 0,
    quarantined: 0,
    wakeUps: 0,
  };
  /** Wake-up connections still open (start): closed by stop(). */
  private readonly wakeSockets = new Set<net.Socket>();

  constructor(opts: TransportOptions) {
    const me = opts.genesis.nodes.find((n) => n.id === opts.id);
    if (!me) throw transportError('TRANSPORT_CONFIG', `node ${opts.id} is not in the genesis`);
    if (!equalBytes(me.publicKey, opts.key.publicKey))
      throw transportError('TRANSPORT_CONFIG', `the key given is not node ${opts.id}'s key in the genesis`);
    this.id = opts.id;
    this.key = opts.key;
    this.groupId = opts.groupId ?? groupIdOf(opts.genesis);
    this.wireVersion = opts.wireVersion ?? WIRE_VERSION;
    if (!Number.isInteger(this.wireVersion) || this.wireVersion < 1 || this.wireVersion > 255)
      throw transportError('TRANSPORT_CONFIG', 'wireVersion must be an integer in 1..255');
    this.listenAt = opts.listen;
    this.log = opts.logger ?? noopLogger;
    this.maxFrameBytes =
      opts.maxFrameBytes ?? Math.max(DEFAULT_MIN_FRAME, opts.genesis.params.maxInputBytes + (1 << 20));
    if (
      !Number.isInteger(this.maxFrameBytes) ||
      this.maxFrameBytes < 1 ||
      this.maxFrameBytes > MAX_FRAME_LIMIT
    )
      throw transportError('TRANSPORT_CONFIG', `maxFrameBytes must be an integer in 1..${MAX_FRAME_LIMIT}`);
    this.queueMaxBytes = opts.queue?.maxBytes ?? 2 * this.maxFrameBytes + (1 << 20);
    this.queueMaxFrames = opts.queue?.maxFrames ?? 100_000;
    if (this.queueMaxFrames < 1) throw transportError('TRANSPORT_CONFIG', 'queue.maxFrames must be ≥ 1');
    if (this.queueMaxBytes < this.maxFrameBytes + FRAME_HEADER_BYTES)
      throw transportError(
        'TRANSPORT_CONFIG',
        `queue.maxBytes (${this.queueMaxBytes}) must hold one frame of maxFrameBytes (${this.maxFrameBytes})`,
      );
    this.backoffMin = opts.backoff?.minMs ?? 100;
    this.backoffMax = opts.backoff?.maxMs ?? 10_000;
    if (!(this.backoffMin > 0 && this.backoffMax >= this.backoffMin))
      throw transportError('TRANSPORT_CONFIG', 'backoff needs 0 < minMs ≤ maxMs');
    this.wakeIntervalMs = opts.wakeIntervalMs ?? 1_000;
    if (!(this.wakeIntervalMs >= 1 && this.wakeIntervalMs <= MAX_TIMER_MS))
      throw transportError('TRANSPORT_CONFIG', `wakeIntervalMs must be in 1..${MAX_TIMER_MS}`);
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 5_000;
    this.helloTimeoutMs = Math.min(opts.helloTimeoutMs ?? 2_000, this.handshakeTimeoutMs);
    if (!(this.helloTimeoutMs > 0)) throw transportError('TRANSPORT_CONFIG', 'helloTimeoutMs must be > 0');
    this.maxPending = opts.maxPendingHandshakes ?? 64;
    if (!Number.isInteger(this.maxPending) || this.maxPending < 1)
      throw transportError('TRANSPORT_CONFIG', 'maxPendingHandshakes must be an integer ≥ 1');
    const badQuarantine = quarantineProblem(opts.quarantine ?? {});
    if (badQuarantine) {
      const field = badQuarantine.field ? `quarantine.${badQuarantine.field}` : 'quarantine';
      throw transportError('TRANSPORT_CONFIG', `${field} ${badQuarantine.why}`, { field });
    }
    this.quarantineMin = opts.quarantine?.minMs ?? DEFAULT_QUARANTINE.minMs;
    this.quarantineMax = opts.quarantine?.maxMs ?? DEFAULT_QUARANTINE.maxMs;
    this.forgiveMs = opts.quarantine?.forgiveMs ?? DEFAULT_QUARANTINE.forgiveMs;
    this.keepAliveMs = opts.keepAliveMs ?? 10_000;
    this.heartbeatMs = opts.heartbeatMs ?? 5_000;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 4 * this.heartbeatMs;
    if (this.heartbeatMs > 0 && !(this.idleTimeoutMs > this.heartbeatMs))
      throw transportError('TRANSPORT_CONFIG', 'idleTimeoutMs must exceed heartbeatMs');
    this.now = opts.now ?? Date.now;
    if (opts.tls) {
      const { notAfter, ...context } = loadTls(opts.tls, this.now());
      this.tlsContext = context;
      this.ownCert = { file: opts.tls.certFile, notAfter };
    }

    for (const n of opts.genesis.nodes) {
      if (n.id === this.id) continue;
      if (!Number.isInteger(n.id) || n.id < 0 || n.id > 0xffff_ffff)
        throw transportError('TRANSPORT_CONFIG', `node id ${n.id} does not fit the handshake (u32)`);
      const dial = this.id < n.id;
      let address: HostPort | null = null;
      let wakeAt: HostPort | null = null;
      const given = opts.peers?.get(n.id);
      try {
        const at = typeof given === 'string' ? parseAddress(given) : (given ?? parseAddress(n.address));
        if (dial) address = at;
        else wakeAt = at;
      } catch (e) {
        // A peer that dials this node is woken up only as a courtesy: without an address it is not.
        if (dial)
          throw transportError(
            'TRANSPORT_CONFIG',
            `no usable address for node ${n.id} (this node dials it): ${errText(e)}`,
          );
      }
      this.peers.set(n.id, {
        id: n.id,
        publicKey: n.publicKey,
        dial,
        address,
        wakeAt,
        wokenWhileDialling: false,
        lastWokenDialAt: Number.NEGATIVE_INFINITY,
        wokenLogged: false,
        dueAt: 0,
        wakeTimer: null,
        lastWakeAt: Number.NEGATIVE_INFINITY,
        wakeSocket: null,
        conn: null,
        state: 'idle',
        queue: new FrameQueue(),
        attempts: 0,
        timer: null,
        flush: null,
        failing: false,
        lastFault: null,
        dropping: false,
        quarantinedUntil: 0,
        offences: 0,
        refusalLogged: false,
        stats: {
          framesIn: 0,
          bytesIn: 0,
          framesOut: 0,
          bytesOut: 0,
          drops: 0,
          badFrames: 0,
          quarantines: 0,
          dialFailures: 0,
          connects: 0,
          disconnects: 0,
          lastError: null,
        },
      });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Public API

  /** Listen, then dial the peers this node dials. Resolves with the bound port (useful with port 0). */
  async start(): Promise<number> {
    if (this.phase !== 'new') throw transportError('TRANSPORT_STATE', 'a transport starts once');
    this.phase = 'running';
    let server: net.Server;
    if (this.tlsContext) {
      const tlsServer = tls.createServer(
        {
          ...this.tlsContext,
          minVersion: 'TLSv1.3',
          requestCert: !!this.tlsContext.ca,
          rejectUnauthorized: !!this.tlsContext.ca,
          handshakeTimeout: this.handshakeTimeoutMs,
        },
        (s) => this.onInbound(s),
      );
      tlsServer.on('tlsClientError', (err, socket) => {
        if (this.phase !== 'running') return;
        this.inbound.handshakeFailures++;
        // Closed by us to make room (trackTlsHandshake): counted, but logged there already.
        if (err instanceof TlsEvicted) return;
        const notTls = NOT_TLS_ERRORS.has((err as NodeJS.ErrnoException).code ?? '');
        this.logLimited(
          notTls ? 'TLS_MISMATCH' : 'TLS_HANDSHAKE_FAILED',
          {
            node: this.id,
            remote: this.tlsRemote(socket),
            err: errText(err),
            tlsCode: (err as NodeJS.ErrnoException).code,
          },
          notTls
            ? 'transport: inbound TLS handshake failed: the peer does not speak TLS (no tls in its node config?)'
            : 'transport: inbound TLS handshake failed',
        );
      });
      server = tlsServer;
    } else {
      server = net.createServer((s) => this.onInbound(s));
    }
    // Every accepted TCP socket, TLS handshake in progress included, so that stop() can close them
    // (server.close() waits for all of them).
    server.on('connection', (s: net.Socket) => {
      this.accepted.add(s);
      s.once('close', () => this.accepted.delete(s));
      if (this.tlsContext) this.trackTlsHandshake(s);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => {
        this.phase = 'stopped';
        reject(e);
      };
      server.once('error', onError);
      server.listen(this.listenAt.port, this.listenAt.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    // A failed accept (EMFILE where libuv's reserve descriptor is gone, ENFILE, ENOMEM) comes once per
    // connection tried: at most a line per 10 s, like the faults of connections (it was a line each).
    server.on('error', (e) =>
      this.logLimited(
        'ACCEPT_FAILED',
        { node: this.id, err: errText(e) },
        'transport: a connection could not be accepted (too many open files? see ulimit -n)',
      ),
    );
    this.port = (server.address() as net.AddressInfo).port;
    this.log.info({ node: this.id, port: this.port, tls: !!this.tlsContext }, 'transport: listening');
    this.watchCert();
    if (this.heartbeatMs > 0)
      this.ticker = setInterval(() => this.tick(), Math.max(5, Math.floor(this.heartbeatMs / 2)));
    for (const p of this.peers.values()) {
      if (p.dial) this.dial(p);
      else {
        this.setState(p, 'waiting');
        this.wakeLater(p, performance.now());
      }
    }
    return this.port;
  }

  /** Close the server and every connection, clear every timer. Queued frames are discarded. */
  async stop(): Promise<void> {
    if (this.phase === 'stopped') return;
    const wasRunning = this.phase === 'running';
    this.phase = 'stopped';
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    if (this.certTimer) clearTimeout(this.certTimer);
    this.certTimer = null;
    for (const p of this.peers.values()) {
      if (p.timer) clearTimeout(p.timer);
      if (p.wakeTimer) clearTimeout(p.wakeTimer);
      if (p.flush) clearImmediate(p.flush);
      p.timer = null;
      p.wakeTimer = null;
      p.flush = null;
      p.queue.clear();
    }
    const closing: Promise<void>[] = [];
    for (const c of [...this.conns]) {
      closing.push(c.closed);
      this.closeConn(c, 'transport stopped', false);
    }
    for (const s of this.accepted) s.destroy();
    for (const s of this.wakeSockets) {
      closing.push(new Promise<void>((resolve) => s.once('close', () => resolve())));
      s.destroy();
    }
    if (this.server) {
      const s = this.server;
      closing.push(new Promise<void>((resolve) => s.close(() => resolve())));
      this.server = null;
    }
    await Promise.all(closing);
    // The handles themselves are released in the event loop's close phase: let it run once, so that
    // when stop() resolves nothing of this transport is left (process.getActiveResourcesInfo()).
    await new Promise<void>((resolve) => setTimeout(resolve, 0));
    for (const p of this.peers.values()) this.setState(p, 'idle');
    if (wasRunning) this.log.info({ node: this.id }, 'transport: stopped');
  }

  /**
   * Queue a frame for a peer (sent as soon as it is connected). The bytes are kept by reference until
   * written: do not modify them afterwards. Throws for an unknown peer, this node itself, an empty
   * frame or one over maxFrameBytes (a caller bug: the receiver would refuse it). When the queue is
   * full the oldest queued frames are dropped and counted. After stop() frames are dropped silently.
   */
  send(to: number, bytes: Uint8Array): void {
    const p = this.peers.get(to);
    if (!p)
      throw transportError(
        'TRANSPORT_UNKNOWN_PEER',
        to === this.id ? 'a node does not send to itself' : `node ${to} is not in the genesis`,
      );
    this.checkFrame(bytes);
    this.enqueue(p, bytes);
  }

  /** send() to every other node of the genesis (the same bytes, not copied). */
  broadcast(bytes: Uint8Array): void {
    this.checkFrame(bytes);
    for (const p of this.peers.values()) this.enqueue(p, bytes);
  }

  /**
   * Called for every frame of an authenticated peer, in order per peer. `bytes` may be a view of the
   * socket's read buffer: decode it (the codec copies what it keeps) or copy it before keeping it.
   * Returns a function that removes the handler.
   */
  onFrame(handler: FrameHandler): () => void {
    this.frameHandlers.push(handler);
    return () => {
      const i = this.frameHandlers.indexOf(handler);
      if (i >= 0) this.frameHandlers.splice(i, 1);
    };
  }

  /** Called on every peer state change (e.g. to resend what a reconnected peer missed). */
  onPeerState(handler: PeerStateHandler): () => void {
    this.stateHandlers.push(handler);
    return () => {
      const i = this.stateHandlers.indexOf(handler);
      if (i >= 0) this.stateHandlers.splice(i, 1);
    };
  }

  /**
   * The caller could not use a frame from `from` (undecodable, a bad signature…): close that
   * connection and quarantine the peer (TransportOptions.quarantine). A report while the peer is still
   * quarantined (a message that was checked late) changes nothing.
   */
  reportBad(from: number, reason: string): void {
    const p = this.peers.get(from);
    if (!p) return;
    this.quarantine(p, reason);
    const c = p.conn;
    if (c && c.phase === 'open') this.closeConn(c, `bad frame: ${reason}`, 'PEER_BAD_FRAME');
    else {
      p.stats.badFrames++;
      p.stats.lastError = `bad frame: ${reason}`;
      this.log.warn(
        { peer: from, code: 'PEER_BAD_FRAME', reason },
        'transport: bad frame reported (no open connection)',
      );
    }
  }

  /** Change the address a dialled peer is reached at (redials at once if it is backing off). */
  setPeerAddress(id: number, address: HostPort | string): void {
    const p = this.peers.get(id);
    if (!p) throw transportError('TRANSPORT_UNKNOWN_PEER', `node ${id} is not in the genesis`);
    if (!p.dial) return; // it dials us
    p.address = typeof address === 'string' ? parseAddress(address) : address;
    if (this.phase === 'running' && p.state === 'backoff') {
      if (p.timer) clearTimeout(p.timer);
      p.timer = null;
      this.dial(p);
    }
  }

  /**
   * Under TLS, how long until this node's own certificate expires, in ms by the transport's clock (negative
   * once it has); null without TLS. For the metrics (dropbear_tls_certificate_expires_in_seconds).
   */
  certExpiresInMs(): number | null {
    return this.ownCert ? this.ownCert.notAfter - this.now() : null;
  }

  /** The bound port, once started. */
  get boundPort(): number | null {
    return this.port;
  }

  stats(): TransportStats {
    const now = performance.now();
    return {
      id: this.id,
      port: this.port,
      running: this.phase === 'running',
      peers: [...this.peers.values()].map((p) => ({
        id: p.id,
        role: p.dial ? 'dial' : 'accept',
        state: p.state,
        address: p.address ? formatAddress(p.address) : null,
        ...p.stats,
        reconnects: Math.max(0, p.stats.connects - 1),
        quarantinedMs: Math.max(0, Math.ceil(p.quarantinedUntil - now)),
        queuedFrames: p.queue.count,
        queuedBytes: p.queue.bytes,
      })),
      inbound: { ...this.inbound },
    };
  }

  // -------------------------------------------------------------------------------------------
  // Sending

  private checkFrame(bytes: Uint8Array): void {
    if (!(bytes instanceof Uint8Array))
      throw transportError('TRANSPORT_BAD_FRAME', 'a frame is a Uint8Array');
    if (bytes.length === 0) throw transportError('TRANSPORT_BAD_FRAME', 'empty frame');
    if (bytes.length > this.maxFrameBytes)
      throw transportError(
        'TRANSPORT_FRAME_TOO_LARGE',
        `frame of ${bytes.length} bytes > maxFrameBytes ${this.maxFrameBytes}`,
      );
  }

  private enqueue(p: Peer, bytes: Uint8Array): void {
    if (this.phase === 'stopped') return;
    const q = p.queue;
    const n = bytes.length + FRAME_HEADER_BYTES;
    let dropped = 0;
    while (q.count > 0 && (q.count >= this.queueMaxFrames || q.bytes + n > this.queueMaxBytes)) {
      q.shift();
      dropped++;
    }
    q.push(bytes);
    if (dropped > 0) {
      p.stats.drops += dropped;
      if (!p.dropping) {
        p.dropping = true;
        this.log.warn(
          {
            peer: p.id,
            code: 'PEER_SEND_QUEUE_FULL',
            state: p.state,
            queuedFrames: q.count,
            queuedBytes: q.bytes,
          },
          'transport: send queue full, dropping the oldest frames',
        );
      }
    }
    if (p.flush === null && p.conn?.phase === 'open' && !p.conn.waitingDrain)
      p.flush = setImmediate(() => this.flush(p));
  }

  private flush(p: Peer): void {
    p.flush = null;
    const c = p.conn;
    if (c?.phase !== 'open' || c.waitingDrain) return;
    const q = p.queue;
    const s = c.socket;
    while (q.count > 0) {
      let ok = true;
      let budget = WRITE_BATCH_BYTES;
      const small: Uint8Array[] = [];
      let smallBytes = 0;
      const writeSmall = () => {
        if (smallBytes === 0) return;
        const buf = Buffer.allocUnsafe(smallBytes);
        let off = 0;
        for (const f of small) {
          buf.writeUInt32BE(f.length, off);
          buf.set(f, off + FRAME_HEADER_BYTES);
          off += f.length + FRAME_HEADER_BYTES;
        }
        small.length = 0;
        smallBytes = 0;
        if (!s.write(buf)) ok = false;
      };
      // Corked only once a large frame is written: small frames alone are one write (most turns), which
      // cork() and uncork() would only carry through Node's buffered-write path.
      let corked = false;
      while (q.count > 0 && budget > 0) {
        const f = q.shift();
        budget -= f.length + FRAME_HEADER_BYTES;
        p.stats.framesOut++;
        p.stats.bytesOut += f.length;
        if (f.length >= LARGE_FRAME_BYTES) {
          if (!corked) {
            s.cork();
            corked = true;
          }
          writeSmall();
          const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
          h.writeUInt32BE(f.length, 0);
          if (!s.write(h)) ok = false;
          if (!s.write(f)) ok = false;
        } else {
          small.push(f);
          smallBytes += f.length + FRAME_HEADER_BYTES;
        }
      }
      writeSmall();
      if (corked) s.uncork();
      c.lastTx = performance.now();
      if (!ok) {
        c.waitingDrain = true;
        s.once('drain', () => {
          c.waitingDrain = false;
          if (c.phase === 'open') this.flush(p);
        });
        return;
      }
    }
    p.dropping = false;
  }

  /** Heartbeats and the idle timeout, for every authenticated connection. */
  private tick(): void {
    const now = performance.now();
    for (const c of this.conns) {
      if (c.phase !== 'open') continue;
      if (now - c.lastRx > this.idleTimeoutMs) {
        this.closeConn(c, `idle: nothing received for ${now - c.lastRx} ms`, false);
        continue;
      }
      if (now - c.lastTx >= this.heartbeatMs && !c.waitingDrain) {
        c.socket.write(KEEPALIVE);
        c.lastTx = now;
      }
    }
  }

  /**
   * Under TLS, warns of this node's own certificate as it nears its end (CERT_EXPIRY_WARNINGS_MS: 14 days,
   * 1 day; TLS_CERT_EXPIRING) and when it has expired (TLS_CERT_EXPIRED): once each, the first at start. A node
   * runs for months, and the certificate checked at its start expired unnoticed: peers with a `ca` then refuse
   * every new connection from it (a restart, a network blip), and those without see nothing wrong. One
   * timer at a time, unref'd (it keeps no process alive), set for the next stage, or MAX_TIMER_MS when that
   * is further off (it then looks again); the wall clock is read anew each time, so a clock step costs at most
   * a late warning.
   */
  private watchCert(): void {
    this.certTimer = null;
    const cert = this.ownCert;
    if (!cert || this.phase !== 'running') return;
    const { stage, checkInMs } = certExpiryStage(cert.notAfter, this.now());
    if (stage > this.certStage) {
      this.certStage = stage;
      const validTo = new Date(cert.notAfter).toISOString();
      const left = cert.notAfter - this.now();
      if (stage > CERT_EXPIRY_WARNINGS_MS.length)
        this.log.error(
          { node: this.id, code: 'TLS_CERT_EXPIRED', file: cert.file, validTo },
          `transport: this node's TLS certificate ${cert.file} expired ${validTo}: peers with a ca refuse new connections from it; install a new one and restart the node`,
        );
      else
        this.log.warn(
          {
            node: this.id,
            code: 'TLS_CERT_EXPIRING',
            file: cert.file,
            validTo,
            daysLeft: Math.floor((left / DAY_MS) * 10) / 10,
          },
          `transport: this node's TLS certificate ${cert.file} expires ${validTo}: install a new one and restart the node before then`,
        );
    }
    if (checkInMs === null) return;
    this.certTimer = setTimeout(() => this.watchCert(), checkInMs);
    this.certTimer.unref();
  }

  // -------------------------------------------------------------------------------------------
  // Connections

  private setState(p: Peer, state: PeerState): void {
    if (p.state === state) return;
    p.state = state;
    for (const h of this.stateHandlers) {
      try {
        h(p.id, state);
      } catch (e) {
        this.log.error(
          { peer: p.id, code: 'HANDLER_FAILED', err: errText(e) },
          'transport: peer state handler threw',
        );
      }
    }
  }

  private newConn(socket: net.Socket, dialer: boolean, peer: Peer | null, remote: string): Conn {
    let resolveClosed!: () => void;
    const closed = new Promise<void>((r) => (resolveClosed = r));
    const c: Conn = {
      socket,
      dialer,
      peer,
      phase: dialer ? 'connecting' : 'hello',
      decoder: new FrameDecoder(HANDSHAKE_MAX_FRAME),
      remote,
      nonceD: null,
      nonceA: null,
      claimed: -1,
      refused: false,
      binding: new Uint8Array(0),
      startedAt: performance.now(),
      // A connect that times out is not the peer's fault (down, unreachable); a stalled handshake is.
      // An inbound connection has helloTimeoutMs for its HELLO, then the rest of handshakeTimeoutMs.
      timer: setTimeout(
        () =>
          c.phase === 'connecting'
            ? this.closeConn(c, 'connect timed out', false)
            : c.phase === 'hello'
              ? this.closeConn(c, `handshake: no HELLO within ${this.helloTimeoutMs} ms`, 'HANDSHAKE_TIMEOUT')
              : this.closeConn(c, 'handshake timed out', 'HANDSHAKE_TIMEOUT'),
        dialer ? this.handshakeTimeoutMs : this.helloTimeoutMs,
      ),
      waitingDrain: false,
      lastRx: performance.now(),
      lastTx: performance.now(),
      closed,
    };
    this.conns.add(c);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, this.keepAliveMs);
    socket.on('data', (chunk: Buffer) => this.onData(c, chunk));
    socket.on('end', () => {
      if (c.phase !== 'closed' && c.decoder.pendingBytes > 0)
        this.closeConn(
          c,
          `stream ended inside a frame (${c.decoder.pendingBytes} bytes pending)`,
          'FRAME_TRUNCATED',
        );
      else if (c.dialer && c.phase === 'connecting' && this.tlsContext)
        this.closeConn(
          c,
          'closed by peer in the TLS handshake (does it use TLS? does its CA accept this certificate?)',
          'TLS_HANDSHAKE_FAILED',
        );
      else if (c.dialer && c.phase === 'challenge' && !this.tlsContext)
        this.closeConn(
          c,
          'closed by peer after this HELLO (quarantined here, or it uses TLS and this node does not?)',
          'HANDSHAKE_CLOSED',
        );
      else this.closeConn(c, 'closed by peer', c.phase !== 'open' && 'HANDSHAKE_CLOSED');
    });
    socket.on('error', (e) =>
      this.closeConn(
        c,
        errText(e),
        c.phase === 'open' ? false : c.dialer ? this.tlsFault(e) : 'SOCKET_ERROR',
      ),
    );
    socket.on('close', () => {
      this.closeConn(c, 'socket closed', false);
      this.conns.delete(c);
      resolveClosed();
    });
    return c;
  }

  private dial(p: Peer): void {
    p.timer = null;
    if (this.phase !== 'running' || !p.address) return;
    const wait = p.quarantinedUntil - performance.now();
    if (wait > 0) {
      this.setState(p, 'backoff');
      this.dialLater(p, wait, false);
      return;
    }
    this.setState(p, 'connecting');
    const socket = this.connectTo(p.address);
    const c = this.newConn(socket, true, p, formatAddress(p.address));
    p.conn = c;
    socket.once(this.tlsContext ? 'secureConnect' : 'connect', () => {
      if (c.phase !== 'connecting') return;
      c.binding = this.bindingOf(socket);
      c.nonceD = randomBytes(NONCE_BYTES);
      c.phase = 'challenge';
      this.setState(p, 'handshaking');
      socket.write(
        encodeFrame(
          encodeHello({
            version: this.wireVersion,
            groupId: this.groupId,
            from: this.id,
            to: p.id,
            nonce: c.nonceD,
          }),
        ),
      );
    });
  }

  /** A TCP connection to a peer's address, under TLS when this node uses it ('secureConnect' then). */
  private connectTo({ host, port }: HostPort): net.Socket {
    return this.tlsContext
      ? tls.connect({
          host,
          port,
          ...this.tlsContext,
          minVersion: 'TLSv1.3',
          rejectUnauthorized: !!this.tlsContext.ca,
          checkServerIdentity: () => undefined, // peers are identified by the genesis handshake
        })
      : net.connect({ host, port });
  }

  /**
   * Arms the wake-ups of `p`, a peer that dials this node (at start, and when its connection closes): the
   * first at `at` (a performance.now() time) or later, then one every wakeIntervalMs until it connects.
   * Never two within wakeIntervalMs, nor during a quarantine of `p` (its dial would only be refused).
   */
  private wakeLater(p: Peer, at: number): void {
    if (!p.wakeAt || this.phase !== 'running') return;
    if (p.wakeTimer) clearTimeout(p.wakeTimer);
    const due = Math.max(at, p.lastWakeAt + this.wakeIntervalMs, p.quarantinedUntil);
    p.wakeTimer = setTimeout(() => this.wakeDue(p), Math.max(0, due - performance.now()));
  }

  /**
   * A wake-up of `p` is due: sent, and the next one armed, unless `p` is connected (attach ends the
   * round; closeConn starts another). The retries are what bring a link back soon after a network
   * partition heals: the wake-up sent when the connection closed was lost in it, and the dialer's backoff
   * had grown towards maxMs (10 s) meanwhile. A peer that is down costs one connection attempt per
   * wakeIntervalMs; one that is up and reachable is connected, and gets none.
   */
  private wakeDue(p: Peer): void {
    p.wakeTimer = null;
    if (this.phase !== 'running' || p.conn) return;
    const now = performance.now();
    if (now < p.quarantinedUntil) return this.wakeLater(p, now);
    this.wake(p);
    this.wakeLater(p, now + this.wakeIntervalMs);
  }

  /**
   * Tells `p`, which dials this node, that this node listens (wakeDue): a HELLO from this node to it, on
   * a connection closed right after, which `p` takes as a call to redial now (woken). No answer is
   * awaited; one still connecting when the next goes is given up (one at a time per peer).
   */
  private wake(p: Peer): void {
    if (!p.wakeAt) return;
    p.lastWakeAt = performance.now();
    p.wakeSocket?.destroy();
    const socket = this.connectTo(p.wakeAt);
    p.wakeSocket = socket;
    this.wakeSockets.add(socket);
    socket.once('close', () => {
      this.wakeSockets.delete(socket);
      if (p.wakeSocket === socket) p.wakeSocket = null;
    });
    socket.on('error', () => {}); // down, or not listening yet: it dials this node once it starts
    socket.setTimeout(this.handshakeTimeoutMs, () => socket.destroy());
    socket.once(this.tlsContext ? 'secureConnect' : 'connect', () => {
      socket.end(
        encodeFrame(
          encodeHello({
            version: this.wireVersion,
            groupId: this.groupId,
            from: this.id,
            to: p.id,
            nonce: randomBytes(NONCE_BYTES),
          }),
        ),
      );
    });
  }

  /**
   * A HELLO from `p`, a peer this node dials (the lower id dials): its wake-up (wake). The connection is
   * closed, not counted as a failed handshake; a dial that waits out its backoff is made now. A connection
   * open is left alone, and a quarantine still holds (dial waits for its end). A dial under way is left to
   * finish, but should it fail it is made again at once (closeConn): it may have been made before the peer
   * listened, its refusal still on the way (seen in a loaded 4-node group: the restarted node 2 waited for
   * node 0's backoff all the same). Wake-ups are not authenticated, so whoever sends them decides when
   * they come: a dial made on one is made at most once per wakeIntervalMs (a later wake-up moves the next
   * dial to that point, not sooner), so that they cannot make this node dial (and sign, for whoever
   * answers at the peer's address) in a loop.
   */
  private woken(c: Conn, p: Peer): void {
    c.refused = true;
    this.inbound.wakeUps++;
    this.closeConn(c, `HELLO from node ${p.id}, which this node dials: a wake-up`, false);
    if (p.state === 'connecting' || p.state === 'handshaking') p.wokenWhileDialling = true;
    const now = performance.now();
    if (p.state !== 'backoff' || now < p.quarantinedUntil) return;
    const wait = p.lastWokenDialAt + this.wakeIntervalMs - now;
    if (wait > 0) {
      if (!p.timer || p.dueAt > now + wait) this.dialLater(p, wait, true);
      return;
    }
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
    if (!p.wokenLogged) {
      p.wokenLogged = true;
      this.log.info(
        { node: this.id, peer: p.id },
        'transport: woken up by a peer this node dials: redialling it now (further ones until it connects are only counted)',
      );
    }
    p.lastWokenDialAt = now;
    this.dial(p);
  }

  /** The next dial of `p` in `ms`, replacing any set; `woken`: one made on a wake-up (woken's rate bound). */
  private dialLater(p: Peer, ms: number, woken: boolean): void {
    if (p.timer) clearTimeout(p.timer);
    p.dueAt = performance.now() + ms;
    p.timer = setTimeout(() => {
      if (woken) p.lastWokenDialAt = performance.now();
      this.dial(p);
    }, ms);
  }

  /**
   * A TCP connection to the TLS server: held until its TLS handshake is done (onInbound) or it closes. One
   * more than maxPendingHandshakes closes the oldest, as for our own handshake (onInbound): otherwise
   * anyone who reaches the port could hold any number of sockets (and TLS states) for handshakeTimeoutMs.
   */
  private trackTlsHandshake(s: net.Socket): void {
    if (s.remoteAddress === undefined) return; // closed already
    const key = `${s.remoteAddress}:${s.remotePort}`;
    this.acceptedRemote.set(s, key);
    while (this.tlsHandshaking.size >= this.maxPending) {
      const [oldKey, oldest] = this.tlsHandshaking.entries().next().value!;
      this.tlsHandshaking.delete(oldKey);
      this.inbound.evictedBusy++;
      this.logLimited(
        'HANDSHAKE_EVICTED',
        { node: this.id, remote: oldKey, max: this.maxPending },
        'transport: TLS handshakes in progress at the limit (maxPendingHandshakes): closing the oldest',
      );
      // Its TLS socket then fails with this error: tlsClientError counts it as a handshake failure, and does
      // not log it a second time.
      oldest.destroy(new TlsEvicted());
    }
    this.tlsHandshaking.set(key, s);
    s.once('close', () => {
      if (this.tlsHandshaking.get(key) === s) this.tlsHandshaking.delete(key);
    });
  }

  /**
   * The remote of a TLS socket whose handshake failed: read from its TCP socket when that was accepted
   * (trackTlsHandshake), since a socket that failed by closing (a reset, say) has no address any more.
   * Node keeps that TCP socket as the TLS socket's `_parent` (not in its typings); failing that, what
   * the TLS socket still reports.
   */
  private tlsRemote(socket: tls.TLSSocket): string {
    const raw = (socket as unknown as { _parent?: unknown })._parent;
    const known = raw instanceof net.Socket ? this.acceptedRemote.get(raw) : undefined;
    return known ?? `${socket.remoteAddress ?? 'unknown'}:${socket.remotePort ?? 'unknown'}`;
  }

  private onInbound(socket: net.Socket): void {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    this.tlsHandshaking.delete(remote);
    if (this.phase !== 'running') {
      socket.destroy();
      return;
    }
    // Full: the oldest unauthenticated connection makes room (never the new one: see the top of the file).
    while (this.pending.size >= this.maxPending) {
      const oldest = this.pending.values().next().value!;
      this.inbound.evictedBusy++;
      this.closeConn(
        oldest,
        `evicted: ${this.pending.size} handshakes pending, the most allowed`,
        'HANDSHAKE_EVICTED',
      );
      this.pending.delete(oldest);
    }
    this.inbound.accepted++;
    const c = this.newConn(socket, false, null, remote);
    this.pending.add(c);
    c.binding = this.bindingOf(socket);
  }

  /**
   * A dial's socket error that is a TLS failure (a certificate refused either way, a TLS alert, the peer
   * closing in the TLS handshake): TLS_HANDSHAKE_FAILED, logged as a fault (once in a row); false otherwise
   * (refused, unreachable: not the peer's doing).
   */
  private tlsFault(e: Error): string | false {
    if (!this.tlsContext) return false;
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (code.startsWith('ERR_SSL_') || TLS_CERT_ERRORS.test(code) || /secure TLS connection/.test(e.message))
      return 'TLS_HANDSHAKE_FAILED';
    return false;
  }

  /**
   * Logs a fault of a connection (a TLS failure, garbage, a bad or timed-out handshake, an eviction) at most
   * once per FAULT_LOG_INTERVAL_MS per `key` (`quietMs`; the code, or the peer and code after authentication),
   * with how many were only counted since (`suppressed`): anyone who reaches the port can make them at the
   * rate they open connections (a line each filled the disk at that rate), and a peer with mismatched
   * settings makes one per dial and wake-up. The counters (stats()) count every one.
   */
  private logLimited(code: string, obj: object, msg: string, key = code): void {
    const suppressed = this.mayLog(key);
    if (suppressed !== null) this.log.warn({ ...obj, code, suppressed, quietMs: FAULT_LOG_INTERVAL_MS }, msg);
  }

  /**
   * An authenticated peer's connect or close (`key`: the peer and which), logged at info at most once per
   * FAULT_LOG_INTERVAL_MS, with how many were not (`suppressed`): a faulty node holds its genesis key, and each
   * handshake it completes replaces its connection, two lines a connection as fast as it dials (the stats
   * count every one: connects, disconnects).
   */
  private infoLimited(key: string, obj: object, msg: string): void {
    const suppressed = this.mayLog(key);
    if (suppressed !== null) this.log.info({ ...obj, suppressed }, msg);
  }

  /**
   * Whether a line under `key` may be logged now, at most once per FAULT_LOG_INTERVAL_MS: how many were
   * only counted since the last one, or null when this one is only counted.
   */
  private mayLog(key: string): number | null {
    const now = performance.now();
    const s = this.faultLogs.get(key) ?? { next: 0, suppressed: 0 };
    this.faultLogs.set(key, s);
    if (now < s.next) {
      s.suppressed++;
      return null;
    }
    const suppressed = s.suppressed;
    s.next = now + FAULT_LOG_INTERVAL_MS;
    s.suppressed = 0;
    return suppressed;
  }

  private bindingOf(socket: net.Socket): Uint8Array {
    if (socket instanceof tls.TLSSocket)
      return socket.exportKeyingMaterial(32, TLS_EXPORTER_LABEL, Buffer.alloc(0));
    return new Uint8Array(0);
  }

  private onData(c: Conn, chunk: Buffer): void {
    if (c.phase === 'closed') return;
    c.lastRx = performance.now();
    // A TLS record (handshake 0x16, alert 0x15; version 3.x) where a plain frame's length should start:
    // this node has no TLS and the peer has (mixed node configs). As a length it would be FRAME_OVERSIZE.
    if (
      !this.tlsContext &&
      (c.phase === 'hello' || c.phase === 'challenge') &&
      c.decoder.pendingBytes === 0 &&
      (chunk[0] === 0x16 || chunk[0] === 0x15) &&
      chunk[1] === 0x03
    )
      return this.closeConn(
        c,
        'the peer speaks TLS and this node does not (tls in one node config and not in the other?)',
        'TLS_MISMATCH',
      );
    c.decoder.push(chunk);
    for (;;) {
      let frame: Buffer | null;
      try {
        frame = c.decoder.next();
      } catch (e) {
        this.closeConn(c, errText(e), e instanceof FrameError ? e.code : 'FRAME_ERROR');
        return;
      }
      if (frame === null) return;
      if (c.phase === 'open') {
        if (frame.length > 0) this.deliver(c, frame); // empty: a keep-alive
      } else this.onHandshakeFrame(c, frame);
      // A handler may have closed it (reportBad, stop).
      if ((c.phase as Phase) === 'closed') return;
    }
  }

  private deliver(c: Conn, frame: Buffer): void {
    const p = c.peer!;
    p.stats.framesIn++;
    p.stats.bytesIn += frame.length;
    for (const h of this.frameHandlers) {
      try {
        h(p.id, frame);
      } catch (e) {
        this.log.error(
          { peer: p.id, code: 'HANDLER_FAILED', err: errText(e) },
          'transport: frame handler threw',
        );
      }
    }
  }

  private onHandshakeFrame(c: Conn, frame: Buffer): void {
    switch (c.phase) {
      case 'hello': {
        // The version first: the rest of a HELLO of another version may be laid out otherwise.
        const version = helloVersion(frame);
        if (version === null) return this.closeConn(c, 'handshake: expected HELLO', 'HANDSHAKE_BAD');
        if (version !== this.wireVersion)
          return this.closeConn(
            c,
            `handshake: the peer speaks wire version ${version}, this node ${this.wireVersion}`,
            'PEER_VERSION_MISMATCH',
            encodeFrame(encodeVersion(this.wireVersion)),
          );
        const h = decodeHello(frame);
        if (!h) return this.closeConn(c, 'handshake: expected HELLO', 'HANDSHAKE_BAD');
        if (!equalBytes(h.groupId, this.groupId))
          return this.closeConn(c, 'handshake: another group', 'HANDSHAKE_BAD');
        if (h.to !== this.id)
          return this.closeConn(c, `handshake: HELLO meant for node ${h.to}`, 'HANDSHAKE_BAD');
        const p = this.peers.get(h.from);
        if (!p) return this.closeConn(c, `handshake: node ${h.from} is not in the genesis`, 'HANDSHAKE_BAD');
        if (p.dial) return this.woken(c, p);
        // Refused before anything is signed or checked. The id is not proven yet, but whoever claims it
        // gains nothing: that peer is kept out anyway, and a refusal does not lengthen its quarantine.
        if (performance.now() < p.quarantinedUntil) return this.refuseQuarantined(c, p);
        c.claimed = h.from;
        // The HELLO is in: the rest of the handshake has what is left of handshakeTimeoutMs.
        if (c.timer) clearTimeout(c.timer);
        c.timer = setTimeout(
          () => this.closeConn(c, 'handshake timed out', 'HANDSHAKE_TIMEOUT'),
          Math.max(0, c.startedAt + this.handshakeTimeoutMs - performance.now()),
        );
        c.nonceD = new Uint8Array(h.nonce);
        c.nonceA = randomBytes(NONCE_BYTES);
        c.phase = 'auth';
        // Nothing signed yet: the dialer proves its key first (AUTH), over this fresh nonce.
        c.socket.write(
          encodeFrame(
            encodeChallenge({ version: this.wireVersion, from: this.id, to: h.from, nonce: c.nonceA }),
          ),
        );
        return;
      }
      case 'auth': {
        const sigD = decodeAuth(frame);
        if (!sigD) return this.closeConn(c, 'handshake: expected AUTH', 'HANDSHAKE_BAD');
        const p = this.peers.get(c.claimed)!;
        // Quarantined since its HELLO (a second connection opened ahead, to take over from the one closed).
        if (performance.now() < p.quarantinedUntil) return this.refuseQuarantined(c, p);
        const ok = verifyTagged(
          TAGS.handshake,
          this.groupId,
          this.transcript(ROLE.dialer, c.claimed, this.id, c),
          sigD,
          p.publicKey,
        );
        if (!ok) return this.closeConn(c, `handshake: bad signature for node ${c.claimed}`, 'HANDSHAKE_BAD');
        // Proven: only now does this node sign, over the dialer's nonce as well as its own.
        const sigA = signTagged(
          TAGS.handshake,
          this.groupId,
          this.transcript(ROLE.acceptor, c.claimed, this.id, c),
          this.key,
        );
        c.socket.write(encodeFrame(encodeOk(sigA)));
        this.pending.delete(c);
        this.inbound.authenticated++;
        this.attach(p, c);
        return;
      }
      case 'challenge': {
        const p = c.peer!;
        const theirs = decodeVersion(frame) ?? (frame[0] === HS.challenge ? frame[1] : undefined);
        if (theirs !== undefined && theirs !== this.wireVersion)
          return this.closeConn(
            c,
            `handshake: node ${p.id} speaks wire version ${theirs}, this node ${this.wireVersion}`,
            'PEER_VERSION_MISMATCH',
          );
        const ch = decodeChallenge(frame);
        if (!ch) return this.closeConn(c, 'handshake: expected CHALLENGE', 'HANDSHAKE_BAD');
        if (ch.from !== p.id || ch.to !== this.id)
          return this.closeConn(
            c,
            `handshake: answered as node ${ch.from} to node ${ch.to}`,
            'HANDSHAKE_BAD',
          );
        c.nonceA = new Uint8Array(ch.nonce);
        // Signed before the acceptor proved anything, which costs little: this node dials only the peer's
        // address, at its backoff's pace, and the signature covers its own fresh nonceD and this session's
        // TLS binding, so it completes no handshake but the one whoever answered relays to that peer.
        const sigD = signTagged(
          TAGS.handshake,
          this.groupId,
          this.transcript(ROLE.dialer, this.id, p.id, c),
          this.key,
        );
        c.phase = 'ok';
        c.socket.write(encodeFrame(encodeAuth(sigD)));
        return;
      }
      case 'ok': {
        const p = c.peer!;
        const sigA = decodeOk(frame);
        if (!sigA) return this.closeConn(c, 'handshake: expected OK', 'HANDSHAKE_BAD');
        const ok = verifyTagged(
          TAGS.handshake,
          this.groupId,
          this.transcript(ROLE.acceptor, this.id, p.id, c),
          sigA,
          p.publicKey,
        );
        if (!ok) return this.closeConn(c, `handshake: bad signature for node ${p.id}`, 'HANDSHAKE_BAD');
        this.attach(p, c);
        return;
      }
      default:
        return;
    }
  }

  /** What `role` signs on connection `c` between `dialer` and `acceptor` (both nonces known). */
  private transcript(role: number, dialer: number, acceptor: number, c: Conn): Uint8Array {
    return handshakeTranscript(this.wireVersion, role, dialer, acceptor, c.nonceD!, c.nonceA!, c.binding);
  }

  private attach(p: Peer, c: Conn): void {
    // A dial that started before the peer was quarantined: dial() waits for the end before the next one.
    if (performance.now() < p.quarantinedUntil)
      return this.closeConn(c, `peer ${p.id} is quarantined`, false);
    if (c.timer) clearTimeout(c.timer);
    c.timer = null;
    c.phase = 'open';
    c.peer = p;
    c.decoder.maxFrameBytes = this.maxFrameBytes;
    c.decoder.allowEmpty = true;
    c.lastRx = performance.now();
    const old = p.conn;
    p.conn = c;
    if (old && old !== c) this.closeConn(old, 'replaced by a newer authenticated connection', false);
    p.stats.connects++;
    p.failing = false;
    p.lastFault = null;
    p.wokenWhileDialling = false;
    p.wokenLogged = false;
    if (p.wakeTimer) clearTimeout(p.wakeTimer);
    p.wakeTimer = null;
    this.setState(p, 'connected');
    this.infoLimited(
      `peer ${p.id} connected`,
      { node: this.id, peer: p.id, remote: c.remote, connects: p.stats.connects },
      'transport: peer connected',
    );
    if (p.queue.count > 0 && p.flush === null) p.flush = setImmediate(() => this.flush(p));
  }

  /**
   * Starts a quarantine of `p` (reportBad), unless one is under way: minMs, doubled for each report after
   * the first, forgiven (back to minMs) after forgiveMs without one once the last ended.
   */
  private quarantine(p: Peer, reason: string): void {
    const now = performance.now();
    if (now < p.quarantinedUntil) return;
    if (p.offences > 0 && now - p.quarantinedUntil > this.forgiveMs) p.offences = 0;
    const ms = Math.min(this.quarantineMax, this.quarantineMin * 2 ** Math.min(p.offences, 30));
    p.offences++;
    p.quarantinedUntil = now + ms;
    p.refusalLogged = false;
    p.stats.quarantines++;
    this.log.warn(
      { node: this.id, peer: p.id, code: 'PEER_QUARANTINED', reason, ms, offences: p.offences },
      `transport: peer quarantined: connection closed, not dialled and not accepted for ${ms} ms`,
    );
  }

  /** An inbound connection claiming a quarantined peer: closed, counted, the first of a quarantine logged. */
  private refuseQuarantined(c: Conn, p: Peer): void {
    const left = Math.ceil(p.quarantinedUntil - performance.now());
    c.refused = true;
    this.inbound.quarantined++;
    if (!p.refusalLogged) {
      p.refusalLogged = true;
      this.log.info(
        { node: this.id, peer: p.id, remote: c.remote, leftMs: left },
        'transport: refused a connection from a quarantined peer (further refusals in this quarantine are only counted)',
      );
    }
    this.closeConn(c, `node ${p.id} is quarantined for ${left} ms more`, false);
  }

  /**
   * Close a connection once (later calls do nothing). `fault`: the peer (or whoever is on the other
   * end) misbehaved, which is counted and logged as a warning; it is the stable code logged with the
   * reason (FRAME_OVERSIZE, FRAME_EMPTY, FRAME_TRUNCATED, HANDSHAKE_BAD, HANDSHAKE_TIMEOUT, PEER_BAD_FRAME,
   * PEER_VERSION_MISMATCH…). `farewell`: a frame sent before the connection closes (VERSION).
   */
  private closeConn(c: Conn, reason: string, fault: string | false, farewell?: Uint8Array): void {
    if (c.phase === 'closed') return;
    const wasOpen = c.phase === 'open';
    const wasAuthenticating = !c.dialer && c.phase !== 'open';
    c.phase = 'closed';
    if (c.timer) clearTimeout(c.timer);
    c.timer = null;
    c.decoder.clear();
    // A last frame goes out before the socket does: destroy() would drop a write still queued (one the
    // kernel did not take at once). stop() destroys the socket if it is still there.
    if (farewell && !c.socket.destroyed) c.socket.end(farewell, () => c.socket.destroy());
    else c.socket.destroy();
    if (wasAuthenticating) this.pending.delete(c);
    const stopping = this.phase !== 'running';
    const p = c.peer;
    if (wasOpen && p) {
      p.stats.disconnects++;
      p.stats.lastError = reason;
      if (fault) {
        p.stats.badFrames++;
        // Per peer: a flood from one peer (or from anyone, before authentication) hides no other's.
        this.logLimited(
          fault,
          { node: this.id, peer: p.id, remote: c.remote, reason },
          'transport: bad frame, connection closed',
          `peer ${p.id} ${fault}`,
        );
      } else if (!stopping) {
        this.infoLimited(
          `peer ${p.id} closed`,
          { node: this.id, peer: p.id, remote: c.remote, reason },
          'transport: connection closed',
        );
      }
    } else if (c.dialer && p) {
      if (!stopping) {
        p.stats.dialFailures++;
        p.stats.lastError = reason;
        if (!p.failing || (fault && fault !== p.lastFault)) {
          p.failing = true;
          p.lastFault = fault || null;
          const obj = { node: this.id, peer: p.id, remote: c.remote, reason, attempts: p.attempts };
          if (fault) this.log.warn({ ...obj, code: fault }, 'transport: handshake with peer failed');
          else this.log.info(obj, 'transport: dial failed (further failures in a row are only counted)');
        }
      }
    } else if (!c.dialer && !stopping && !c.refused) {
      this.inbound.handshakeFailures++;
      const code = fault || 'HANDSHAKE_CLOSED';
      const obj = { node: this.id, remote: c.remote, reason };
      this.logLimited(
        code,
        obj,
        /^TLS_/.test(code)
          ? `transport: inbound connection refused: ${reason}`
          : 'transport: inbound connection refused',
      );
    }
    if (!p || p.conn !== c) return;
    p.conn = null;
    if (stopping) return;
    if (!p.dial) {
      this.setState(p, 'waiting');
      // The peer dials this node: tell it at once that this node still listens (wake), then keep telling
      // it until it is back (wakeDue). Where this node learns of the loss late, the peer has been backing
      // off meanwhile: a node resumed from SIGSTOP (or starved of CPU) sees its peers' connections close
      // only when it runs again, by when their redials into its silence had failed and their backoff had
      // grown towards maxMs (10 s). After a fault of the peer's, only from the next round on, and never
      // while it is quarantined here (its dial would only be refused).
      const now = performance.now();
      this.wakeLater(p, wasOpen && !fault ? now : now + this.wakeIntervalMs);
      return;
    }
    p.attempts = wasOpen && !fault ? 0 : p.attempts + 1;
    const base = Math.min(this.backoffMax, this.backoffMin * 2 ** Math.min(p.attempts, 30));
    const delay = base / 2 + (Math.random() * base) / 2;
    // Woken up while this dial was under way (woken): the peer listens now, whatever this dial found; made
    // again at once, or once woken's rate bound allows, unless the backoff's comes first.
    const woken = p.wokenWhileDialling
      ? Math.max(0, p.lastWokenDialAt + this.wakeIntervalMs - performance.now())
      : Number.POSITIVE_INFINITY;
    p.wokenWhileDialling = false;
    this.setState(p, 'backoff');
    this.dialLater(p, Math.min(delay, woken), woken < delay);
  }
}
