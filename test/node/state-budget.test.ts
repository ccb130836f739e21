/**
 * A node serves each peer's state requests within a byte budget (src/node/host.ts serveStateWithin,
 * HostOptions.stateServeBytesPerSec). A state request is ~20 bytes and its answer up to a frame read from
 * the ledger and encoded; until 2026-12-06 every one was served at once, so a faulty peer asking without
 * end kept a node reading and encoding for it. Four real hosts (SQLite ledgers, stand-in models) on an
 * in-memory wire; node 3 is cut off while the others order a burst, then either floods node 0 with state
 * requests (faulty) or catches up (honest) under a tight budget.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeHost } from '../../src/node/host.ts';
import { startStandIn } from '../../src/node/standin-backend.ts';
import { decodeMessage, encodeMessage, hex, receiptHashOf } from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { certifiedWithoutNode3, memoryWires, until } from './memory-wire.ts';
import { standInRequest } from './standin-request.ts';

const dir = mkdtempSync(join(tmpdir(), 'dropbear-state-budget-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every host's frame limit, and its state budget per peer: two frames a second. */
const LIMIT = 16 * 1024;
const RATE = 2 * LIMIT;

/** Four hosts with node 3 cut off while 60 requests are ordered; `fn` gets them once nodes 0–2 agree. */
async function withLaggingNode3(
  seed: number,
  fn: (g: {
    /** What node 3 logged (catch-up lines: it logs them from the start and every 100 ms). */
    logs3: { level: string; obj: Record<string, unknown>; msg?: string }[];
    hosts: NodeHost[];
    last: number;
    /** Delivers a frame to `to` as if `from` sent it. */
    inject: (from: number, to: number, bytes: Uint8Array) => void;
    /** Bytes of state answers (responses and parts) each node sent node 3, and when. */
    toNode3: { from: number; bytes: number; at: number }[];
    reconnect: () => void;
  }) => Promise<void>,
): Promise<void> {
  const group = makeGroup(4, 1, seed);
  const toNode3: { from: number; bytes: number; at: number }[] = [];
  const fatal: unknown[] = [];
  const { wireOf, cut, inject } = memoryWires(4, {
    sent: (from, to, bytes) => {
      const kind = decodeMessage(bytes).kind;
      if (to === 3 && (kind === 'stateResponse' || kind === 'statePart'))
        toNode3.push({ from, bytes: bytes.length, at: performance.now() });
    },
  });
  cut.add(3);
  const logs3: { level: string; obj: Record<string, unknown>; msg?: string }[] = [];
  const logger = (level: string) => (obj: object, msg?: string) =>
    logs3.push({ level, obj: obj as Record<string, unknown>, msg });
  const hosts = group.genesis.nodes.map((_, id) =>
    NodeHost.open({
      id,
      genesis: group.genesis,
      key: group.keys[id],
      ledgerPath: join(dir, `seed-${seed}-${id}.sqlite`),
      backends: [startStandIn(id)],
      wire: wireOf(id),
      maxFrameBytes: LIMIT,
      stateServeBytesPerSec: RATE,
      replica: { retransmitMs: 100 },
      onFatal: (e) => fatal.push(e),
      ...(id === 3
        ? {
            logger: { info: logger('info'), warn: logger('warn'), error: logger('error') },
            catchUpLog: { afterMs: 0, everyMs: 100 },
          }
        : {}),
    }),
  );
  let nonce = 0;
  const request = () => standInRequest(group, hosts[0].replica.groupId, nonce++);
  try {
    for (const h of hosts) h.start();
    const last = await certifiedWithoutNode3(hosts, 60, request);
    await fn({
      logs3,
      hosts,
      last,
      inject,
      toNode3,
      reconnect: () => cut.delete(3),
    });
    expect(fatal).toEqual([]);
  } finally {
    for (const h of hosts) h.close();
  }
}

describe("state requests are served within each peer's byte budget", () => {
  it('a peer that floods state requests gets a frame and then the budget, not an answer per request', async () => {
    await withLaggingNode3(71, async ({ hosts, inject, toNode3 }) => {
      const ask = encodeMessage({ kind: 'stateRequest', from: 3, fromSeq: 1 });
      const t0 = performance.now();
      for (let i = 0; i < 200; i++) inject(3, 0, ask);
      await new Promise((res) => setTimeout(res, 500));
      const sent = toNode3.filter((x) => x.from === 0);
      const elapsed = (Math.max(...sent.map((x) => x.at)) - t0) / 1000;
      const bytes = sent.reduce((a, x) => a + x.bytes, 0);
      // A frame at once, the budget's pace since, and one answer more (the bucket may go below zero by
      // one). Before, an answer per request: 200 answers of this size are far over that.
      const bound = LIMIT + RATE * elapsed + LIMIT;
      expect(bytes).toBeLessThanOrEqual(bound);
      expect((200 * bytes) / sent.length).toBeGreaterThan(4 * bound);
      expect(sent.length).toBeLessThan(20);
      // The requests over the budget wait (the latest one per peer) rather than being dropped: the one that
      // waited was served once the budget allowed.
      expect(hosts[0].stateDeferred).toBeGreaterThan(0);
      expect(sent.length).toBeGreaterThan(1);
    });
  });

  it('an honest node behind still catches up, at the pace of the budget, and says so in its log and status', async () => {
    await withLaggingNode3(72, async ({ hosts, last, toNode3, reconnect, logs3 }) => {
      const from = hosts[3].replica.lastExecuted;
      reconnect();
      hosts[3].step({ type: 'catchUp' });
      // Its status says it is catching up (the group is idle: how far behind, it learns by fetching).
      expect(hosts[3].status().catchingUp).toBe(true);
      await until(() => hosts[3].replica.lastExecuted === last, 'node 3 to catch up');
      await until(() => !hosts[3].status().catchingUp, 'node 3 to finish catching up');
      expect(hosts[3].status().behindBy).toBe(0);
      // One line when it started (from where, how far behind), progress while it lasted, one when done.
      const lines = logs3.filter((l) => String(l.obj.code).startsWith('CATCH_UP'));
      const codes = lines.map((l) => l.obj.code);
      expect(codes[0]).toBe('CATCH_UP_STARTED');
      expect(codes.at(-1)).toBe('CATCH_UP_DONE');
      expect(codes.filter((c) => c === 'CATCH_UP_STARTED')).toHaveLength(1);
      expect(codes.filter((c) => c === 'CATCH_UP_DONE')).toHaveLength(1);
      expect(lines.every((l) => l.level === 'info')).toBe(true);
      expect(lines[0].obj.lastExecuted).toBe(from);
      const done = lines.at(-1)!.obj;
      expect(done.lastExecuted).toBe(last);
      expect(done.batches).toBe(last - from);
      expect(done.ms).toBeGreaterThanOrEqual(0);
      const seqs = lines.map((l) => l.obj.lastExecuted as number);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      const receipts = (h: NodeHost) =>
        Array.from({ length: last }, (_, i) => hex(receiptHashOf(h.db.receipt(i + 1)!.receipt)));
      expect(receipts(hosts[3])).toEqual(receipts(hosts[0]));
      // The budget was what paced it: some peer held a request back for it.
      expect(toNode3.length).toBeGreaterThan(0);
      expect(hosts.slice(0, 3).some((h) => h.stateDeferred > 0)).toBe(true);
    });
  });
});
