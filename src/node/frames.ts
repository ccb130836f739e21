/**
 * Wire pieces of the node-to-node transport (src/node/transport.ts), kept free of sockets so that
 * they can be unit-tested and reused by a test's hand-made peer:
 * - frames: 4-byte big-endian length ‖ payload, with an incremental decoder;
 * - addresses: `tcp://host:port` (IPv6 as `tcp://[::1]:7000`);
 * - the handshake messages and the transcript each side signs.
 */
import { DropbearError } from '../protocol/errors.ts';

export const FRAME_HEADER_BYTES = 4;
/** The largest length a 4-byte prefix can carry; also the ceiling for `maxFrameBytes`. */
export const MAX_FRAME_LIMIT = 0xffff_ffff;

export type FrameErrorCode = 'FRAME_EMPTY' | 'FRAME_OVERSIZE';

export class FrameError extends DropbearError {
  constructor(code: FrameErrorCode, message: string, details?: Record<string, unknown>) {
    super(code, message, details);
    this.name = 'FrameError';
  }
}

/** The 4-byte header of a frame of `length` payload bytes. */
export function frameHeader(length: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h.writeUInt32BE(length, 0);
  return h;
}

/** One frame as a single buffer (header ‖ payload). The transport coalesces instead; tests use this. */
export function encodeFrame(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * Incremental frame parser: push TCP chunks as they come, pull complete frames with next().
 * Copes with frames split over any number of chunks and with many frames in one chunk.
 * A frame that lies inside one chunk is returned as a view of that chunk (no copy); a frame split
 * over chunks is copied once, when complete (a 5 MiB frame in 64 KiB chunks costs one copy, not 80).
 * Chunks under 1 KiB are first copied into a buffer the decoder shares between them (SMALL_CHUNK_BYTES), so
 * that what it holds stays about the bytes pending however the peer splits them; a frame may then be a
 * view of that buffer.
 * A length of 0 (unless allowEmpty) or above `maxFrameBytes` throws FrameError as soon as the 4 header bytes are in,
 * before any of the payload is buffered. `maxFrameBytes` may change between frames (the transport
 * uses a small limit during the handshake).
 */
const EMPTY = Buffer.alloc(0);
/**
 * A chunk shorter than this is copied into a shared tail buffer of TAIL_BYTES instead of being kept as is:
 * a peer that trickles a frame a few bytes per TCP segment would otherwise make the decoder hold one
 * Buffer object per read (about 200 bytes of memory for each byte or two of payload), so that a frame
 * within maxFrameBytes could cost the receiver a hundred times that.
 */
const SMALL_CHUNK_BYTES = 1024;
const TAIL_BYTES = 16 * 1024;

export class FrameDecoder {
  /** Unconsumed chunks are chunks[head..]; consumed slots are released and compacted now and then. */
  private chunks: (Buffer | undefined)[] = [];
  private head = 0;
  private buffered = 0;
  /** Payload length of the frame whose header has been read, or -1. */
  private need = -1;
  /** Where small chunks are copied (SMALL_CHUNK_BYTES); bytes before tailUsed are never written again. */
  private tail: Buffer | null = null;
  private tailUsed = 0;

  /**
   * @param maxFrameBytes largest payload accepted
   * @param allowEmpty accept zero-length frames (returned as an empty buffer); the transport uses them
   *   as keep-alives once a connection is authenticated
   */
  constructor(
    public maxFrameBytes: number,
    public allowEmpty = false,
  ) {}

  /** Bytes held: a partial header or frame. Non-zero at end of stream means a truncated frame. */
  get pendingBytes(): number {
    return this.buffered + (this.need >= 0 ? FRAME_HEADER_BYTES : 0);
  }

  /** Buffers held for the bytes pending: at most about one per SMALL_CHUNK_BYTES, however small the pushes. */
  get heldBuffers(): number {
    return this.chunks.length - this.head;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.buffered += chunk.length;
    if (chunk.length >= SMALL_CHUNK_BYTES) {
      this.chunks.push(chunk);
      return;
    }
    if (this.tail === null || this.tailUsed + chunk.length > this.tail.length) {
      this.tail = Buffer.allocUnsafe(TAIL_BYTES);
      this.tailUsed = 0;
    }
    const tail = this.tail;
    const start = this.tailUsed;
    chunk.copy(tail, start);
    this.tailUsed += chunk.length;
    // The last held chunk ends where these bytes start (the tail's previous bytes): extend it.
    const last = this.chunks.length > this.head ? this.chunks[this.chunks.length - 1] : undefined;
    if (last && last.buffer === tail.buffer && last.byteOffset + last.length === tail.byteOffset + start)
      this.chunks[this.chunks.length - 1] = tail.subarray(last.byteOffset - tail.byteOffset, this.tailUsed);
    else this.chunks.push(tail.subarray(start, this.tailUsed));
  }

  /** The next complete payload, or null when more bytes are needed. */
  next(): Buffer | null {
    if (this.need < 0) {
      if (this.buffered < FRAME_HEADER_BYTES) return null;
      const len = this.take(FRAME_HEADER_BYTES).readUInt32BE(0);
      if (len === 0 && !this.allowEmpty) throw new FrameError('FRAME_EMPTY', 'frame of length 0');
      if (len > this.maxFrameBytes)
        throw new FrameError('FRAME_OVERSIZE', `frame of ${len} bytes > limit ${this.maxFrameBytes}`, {
          length: len,
          limit: this.maxFrameBytes,
        });
      this.need = len;
    }
    if (this.buffered < this.need) return null;
    if (this.need === 0) {
      this.need = -1;
      return EMPTY;
    }
    const frame = this.take(this.need);
    this.need = -1;
    return frame;
  }

  /** Forget everything buffered (the connection is going away). */
  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.buffered = 0;
    this.need = -1;
    this.tail = null;
    this.tailUsed = 0;
  }

  /** Consume n ≤ buffered bytes: a view when they lie in one chunk, else one copy. O(chunks spanned). */
  private take(n: number): Buffer {
    this.buffered -= n;
    const first = this.chunks[this.head]!;
    let out: Buffer;
    if (first.length > n) {
      this.chunks[this.head] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.release();
      out = first;
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this.chunks[this.head]!;
        const k = Math.min(c.length, n - off);
        c.copy(out, off, 0, k);
        off += k;
        if (k === c.length) this.release();
        else this.chunks[this.head] = c.subarray(k);
      }
    }
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
    return out;
  }

  private release(): void {
    this.chunks[this.head++] = undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Addresses

export interface HostPort {
  host: string;
  port: number;
}

/** Parse `tcp://host:port` (`tcp://[v6]:port` for IPv6). Throws DropbearError ADDRESS_BAD. */
export function parseAddress(address: string): HostPort {
  const bad = (why: string) =>
    new DropbearError('ADDRESS_BAD', `bad node address ${JSON.stringify(address)}: ${why}`, { address });
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(address);
  if (!m) throw bad('expected tcp://host:port');
  if (m[1].toLowerCase() !== 'tcp') throw bad(`scheme ${m[1]}: is not supported, expected tcp://host:port`);
  const rest = m[2];
  let host: string;
  let portText: string;
  if (rest.startsWith('[')) {
    const end = rest.indexOf(']');
    if (end < 0 || rest[end + 1] !== ':') throw bad('expected tcp://[ipv6]:port');
    host = rest.slice(1, end);
    portText = rest.slice(end + 2);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon < 0) throw bad('missing :port');
    host = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
    if (host.includes(':')) throw bad('an IPv6 host goes in brackets: tcp://[::1]:7000');
  }
  if (host.length === 0) throw bad('empty host');
  if (/[/?#@\s]/.test(host)) throw bad('the host may not contain / ? # @ or spaces');
  if (!/^\d{1,5}$/.test(portText)) throw bad('the port is not a number');
  const port = Number(portText);
  if (port < 1 || port > 65535) throw bad('the port is out of range 1..65535');
  return { host, port };
}

export function formatAddress(a: HostPort): string {
  return a.host.includes(':') ? `tcp://[${a.host}]:${a.port}` : `tcp://${a.host}:${a.port}`;
}

// ---------------------------------------------------------------------------------------------
// Handshake (wire versions 2 and 3: the same handshake)
//
// dialer → acceptor  HELLO     type 1 ‖ version ‖ groupId(32) ‖ from u32 ‖ to u32 ‖ nonceD(32)
// acceptor → dialer  CHALLENGE type 2 ‖ version ‖ from u32 ‖ to u32 ‖ nonceA(32)
// dialer → acceptor  AUTH      type 3 ‖ sigD(64)
// acceptor → dialer  OK        type 4 ‖ sigA(64)
// acceptor → dialer  VERSION   type 5 ‖ version       (instead of CHALLENGE, to a HELLO of another version)
// sigX = signTagged(TAGS.handshake, groupId, transcript(version, role X, dialer, acceptor, nonceD, nonceA, binding))
//
// The dialer proves its key first: the acceptor signs (OK) only after AUTH verified, so whoever can reach
// the port gets at most one signature check out of it per connection, never a signature. Each side signs
// over the other's fresh nonce, so a captured handshake replays to nobody; the role byte keeps one side's
// signature from being reflected as the other's; the ids bind who talks to whom; the version byte keeps a
// handshake from being taken for another version's; `binding` is the TLS exporter value when TLS is on (a
// relay cannot splice two TLS sessions). The dialer signs for whoever answers at the peer's address, but
// over its own fresh nonceD: that signature completes only the handshake the answerer relayed to the real
// acceptor, which a relay on the path can do anyway without TLS and cannot under it.
//
// Version 1 (until 2026-12-06) had the acceptor sign first: CHALLENGE carried sigA, made for any HELLO (an
// Ed25519 signature per connection for anyone reaching the port), and OK was the type byte alone.
//
// In every version a HELLO starts with type 1 ‖ version, and an acceptor answers a HELLO of another version
// with VERSION (from version 2 on; version 1 closes the connection), so that nodes of two releases refuse
// each other at the handshake, each naming both versions (PEER_VERSION_MISMATCH), instead of connecting and
// then quarantining each other over frames they cannot decode.
//
// Version 3 (2026-12-07): the handshake is version 2's; transactions gained two kinds (Deposit, FeeChange:
// a version-2 node cannot decode a batch or a tx message that carries one) and the state digest that
// CHECKPOINTs sign holds the deposits, the money they minted and each node's fee version (two versions
// would never agree on a checkpoint). Upgrade a group together (its ledgers upgrade to schema 10).
//
// Version 4 (2026-12-07): transactions gained a kind (Withdrawal: a node owner's payout), and the state
// digest holds each node's withdrawals and the money they took out. Upgrade a group together.
//
// Version 5 (2026-12-07): transactions gained a kind (Refund: a client's payback of its unused balance), and
// the state digest holds each client's refund serial and the money refunds paid back. Upgrade a group
// together (its ledgers upgrade to schema 12).
//
// Version 6 (2026-12-07): transactions gained a kind (Transfer: a client's payment to another account; a
// version-5 node cannot decode a batch or a tx message that carries one). The state digest keeps its layout.
// Upgrade a group together (its ledgers upgrade to schema 13).

/**
 * The version of the node-to-node protocol: the handshake below and the encoding of every message sent
 * after it (protocol/messages.ts). Bump it with any change to either: nodes refuse a peer of another version
 * at the handshake.
 */
export const WIRE_VERSION = 6;
export const NONCE_BYTES = 32;
export const SIG_BYTES = 64;
/** Largest handshake frame (the limit while a connection is unauthenticated). */
export const HANDSHAKE_MAX_FRAME = 128;

export const HS = { hello: 1, challenge: 2, auth: 3, ok: 4, version: 5 } as const;

export interface Hello {
  version: number;
  groupId: Uint8Array;
  from: number;
  to: number;
  nonce: Uint8Array;
}
export interface Challenge {
  version: number;
  from: number;
  to: number;
  nonce: Uint8Array;
}

const HELLO_BYTES = 2 + 32 + 4 + 4 + NONCE_BYTES;
const CHALLENGE_BYTES = 2 + 4 + 4 + NONCE_BYTES;
const AUTH_BYTES = 1 + SIG_BYTES;
const OK_BYTES = 1 + SIG_BYTES;

export function encodeHello(h: Hello): Buffer {
  const b = Buffer.alloc(HELLO_BYTES);
  b[0] = HS.hello;
  b[1] = h.version;
  b.set(h.groupId, 2);
  b.writeUInt32BE(h.from, 34);
  b.writeUInt32BE(h.to, 38);
  b.set(h.nonce, 42);
  return b;
}
/**
 * The version a HELLO announces, whatever the rest of it (the part every version keeps): null when the
 * frame is not a HELLO at all.
 */
export function helloVersion(b: Uint8Array): number | null {
  return b.length >= 2 && b[0] === HS.hello ? b[1] : null;
}
/** A HELLO of this layout (check helloVersion first: another version may lay the rest out otherwise). */
export function decodeHello(b: Uint8Array): Hello | null {
  if (b.length !== HELLO_BYTES || b[0] !== HS.hello) return null;
  const v = Buffer.from(b.buffer, b.byteOffset, b.length);
  return {
    version: v[1],
    groupId: v.subarray(2, 34),
    from: v.readUInt32BE(34),
    to: v.readUInt32BE(38),
    nonce: v.subarray(42, 42 + NONCE_BYTES),
  };
}

export function encodeChallenge(c: Challenge): Buffer {
  const b = Buffer.alloc(CHALLENGE_BYTES);
  b[0] = HS.challenge;
  b[1] = c.version;
  b.writeUInt32BE(c.from, 2);
  b.writeUInt32BE(c.to, 6);
  b.set(c.nonce, 10);
  return b;
}
export function decodeChallenge(b: Uint8Array): Challenge | null {
  if (b.length !== CHALLENGE_BYTES || b[0] !== HS.challenge) return null;
  const v = Buffer.from(b.buffer, b.byteOffset, b.length);
  return {
    version: v[1],
    from: v.readUInt32BE(2),
    to: v.readUInt32BE(6),
    nonce: v.subarray(10, 10 + NONCE_BYTES),
  };
}

export function encodeAuth(signature: Uint8Array): Buffer {
  const b = Buffer.alloc(AUTH_BYTES);
  b[0] = HS.auth;
  b.set(signature, 1);
  return b;
}
export function decodeAuth(b: Uint8Array): Uint8Array | null {
  if (b.length !== AUTH_BYTES || b[0] !== HS.auth) return null;
  return b.subarray(1);
}

export function encodeOk(signature: Uint8Array): Buffer {
  const b = Buffer.alloc(OK_BYTES);
  b[0] = HS.ok;
  b.set(signature, 1);
  return b;
}
/** The acceptor's signature in an OK, or null when the frame is not one. */
export function decodeOk(b: Uint8Array): Uint8Array | null {
  if (b.length !== OK_BYTES || b[0] !== HS.ok) return null;
  return b.subarray(1);
}

/** An acceptor's answer to a HELLO of another version: the version it speaks. */
export function encodeVersion(version: number): Buffer {
  return Buffer.from([HS.version, version]);
}
export function decodeVersion(b: Uint8Array): number | null {
  return b.length === 2 && b[0] === HS.version ? b[1] : null;
}

export const ROLE = { dialer: 0x44 /* 'D' */, acceptor: 0x41 /* 'A' */ } as const;

/** The bytes each side signs (under TAGS.handshake and the group id). */
export function handshakeTranscript(
  version: number,
  role: number,
  dialer: number,
  acceptor: number,
  nonceD: Uint8Array,
  nonceA: Uint8Array,
  binding: Uint8Array,
): Uint8Array {
  const b = Buffer.alloc(2 + 8 + NONCE_BYTES * 2 + 1 + binding.length);
  b[0] = version;
  b[1] = role;
  b.writeUInt32BE(dialer, 2);
  b.writeUInt32BE(acceptor, 6);
  b.set(nonceD, 10);
  b.set(nonceA, 10 + NONCE_BYTES);
  b[10 + 2 * NONCE_BYTES] = binding.length;
  b.set(binding, 11 + 2 * NONCE_BYTES);
  return b;
}
