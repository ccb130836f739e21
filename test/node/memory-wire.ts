/**
 * Wires between hosts of one process, as the node tests use them in place of the TCP transport: a frame
 * reaches its peer on a later turn of the event loop (setImmediate).
 */
import { expect } from 'vitest';
import type { NodeHost, Wire } from '../../src/node/host.ts';
import { hex, type SignedRequest } from '../../src/protocol/index.ts';

export interface MemoryWires {
  wireOf(id: number): Wire;
  /** Nodes cut off: frames to or from them are dropped (after `sent` and the limit saw them). */
  cut: Set<number>;
  /** Delivers `bytes` to `to` at once, as if `from` had sent them. */
  inject(from: number, to: number, bytes: Uint8Array): void;
}

export function memoryWires(
  n: number,
  o: {
    /** Sees every frame a node sends, to each peer, before anything else. */
    sent?: (from: number, to: number, bytes: Uint8Array) => void;
    /** A frame over this many bytes is refused by throwing, as Transport.send refuses it. */
    limit?: number;
    /** Rewrites a frame on its way (after the cut), or drops it (null). */
    tamper?: (from: number, to: number, bytes: Uint8Array) => Uint8Array | null;
    /** A host's Wire.reportBad. */
    reportBad?: (id: number, peer: number) => void;
  } = {},
): MemoryWires {
  const handlers = new Map<number, (from: number, bytes: Uint8Array) => void>();
  const cut = new Set<number>();
  const wireOf = (id: number): Wire => {
    const deliver = (to: number, sent: Uint8Array) => {
      o.sent?.(id, to, sent);
      if (o.limit !== undefined && sent.length > o.limit)
        throw new Error(`frame of ${sent.length} bytes > maxFrameBytes ${o.limit}`);
      if (cut.has(id) || cut.has(to)) return;
      const bytes = o.tamper ? o.tamper(id, to, sent) : sent;
      if (bytes === null) return;
      setImmediate(() => handlers.get(to)?.(id, bytes));
    };
    return {
      send: deliver,
      broadcast: (bytes) => {
        for (let to = 0; to < n; to++) if (to !== id) deliver(to, bytes);
      },
      onFrame: (h) => {
        handlers.set(id, h);
      },
      reportBad: (peer) => o.reportBad?.(id, peer),
    };
  };
  return { wireOf, cut, inject: (from, to, bytes) => handlers.get(to)?.(from, bytes) };
}

/** Waits until `ok()` holds, checking every 10 ms, at most `tries` times; then fails naming `what`. */
export async function until(ok: () => boolean, what: string, tries = 6000): Promise<void> {
  for (let i = 0; i < tries && !ok(); i++) await new Promise((res) => setTimeout(res, 10));
  if (!ok()) throw new Error(`timed out waiting for ${what}`);
}

/**
 * What the catch-up tests start from: `count` requests submitted to hosts[0] and certified while node 3
 * is cut off (the caller cut it). Returns the last executed seq, once nodes 1 and 2 executed it too and
 * node 3 executed nothing.
 */
export async function certifiedWithoutNode3(
  hosts: NodeHost[],
  count: number,
  request: () => SignedRequest,
): Promise<number> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = hosts[0].submit(request());
    expect(r.ok).toBe(true);
    if (r.ok) ids.push(hex(r.requestId));
  }
  const certs = await Promise.all(ids.map((id) => hosts[0].waitCertificate(id, 30_000)));
  expect(certs.every((c) => c !== null)).toBe(true);
  const last = hosts[0].replica.lastExecuted;
  await until(() => [1, 2].every((i) => hosts[i].replica.lastExecuted === last), 'nodes 1 and 2');
  expect(hosts[3].replica.lastExecuted).toBe(0);
  return last;
}
