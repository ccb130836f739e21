/**
 * A state response goes out in one frame no larger than the node's maxFrameBytes (src/node/host.ts,
 * serveState). Its batches used to get half a frame whatever its NEW-VIEW took, and an answer over a
 * frame made the wire throw (TRANSPORT_FRAME_TOO_LARGE from the TCP transport): in the step that served
 * it (the node stopped) or in the fsync callback that released it (an uncaught exception), at the request
 * of any peer. Four real hosts (SQLite ledgers, stand-in models) on an in-memory wire that refuses a frame
 * over the limit as the transport does.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Logger, NodeHost } from '../../src/node/host.ts';
import { startStandIn } from '../../src/node/standin-backend.ts';
import {
  decodeMessage,
  encodeMessage,
  hex,
  type NodeMessage,
  type SignedRequest,
  sha256,
  signRequest,
} from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { memoryWires, until } from './memory-wire.ts';

const dir = mkdtempSync(join(tmpdir(), 'dropbear-state-response-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The frame limit of every host and of the wire: a NEW-VIEW and a batch each fit, not both together. */
const LIMIT = 40 * 1024;

describe('a state response whose NEW-VIEW leaves little room for batches', () => {
  it('never goes over a frame, the serving node keeps running, and the peer catches up and takes the view', async () => {
    const group = makeGroup(4, 1, 43);
    const oversize: { from: number; kind: string; bytes: number }[] = [];
    const responses: { from: number; to: number; bytes: number; msg: NodeMessage }[] = [];
    const newViews: number[] = [];
    const fatal: unknown[] = [];
    const codes: { node: number; code: string }[] = [];
    const { wireOf, cut } = memoryWires(4, {
      limit: LIMIT,
      sent: (from, to, bytes) => {
        const msg = decodeMessage(bytes);
        if (bytes.length > LIMIT) oversize.push({ from, kind: msg.kind, bytes: bytes.length });
        else if (msg.kind === 'stateResponse') responses.push({ from, to, bytes: bytes.length, msg });
        else if (msg.kind === 'newView') newViews.push(bytes.length);
      },
    });
    const loggerOf = (node: number): Logger => {
      const note = (o: object) => {
        const code = (o as { code?: unknown }).code;
        if (typeof code === 'string') codes.push({ node, code });
      };
      return { info: note, warn: note, error: note };
    };
    const hosts = group.genesis.nodes.map((_, id) =>
      NodeHost.open({
        id,
        genesis: group.genesis,
        key: group.keys[id],
        ledgerPath: join(dir, `group-${id}.sqlite`),
        backends: [startStandIn(id)],
        wire: wireOf(id),
        maxFrameBytes: LIMIT,
        logger: loggerOf(id),
        replica: { retransmitMs: 100 },
        onFatal: (e) => fatal.push(e),
      }),
    );
    let nonce = 0;
    const request = (inputBytes: number): SignedRequest => {
      const input = randomBytes(inputBytes);
      const r = {
        groupId: hosts[0].replica.groupId,
        client: group.client.publicKey,
        nonce: nonce++,
        timestamp: Date.now(),
        inputDigest: sha256(input),
        policy: null,
        maxFee: 1_000_000,
      };
      return signRequest(r, input, group.client);
    };
    const certify = async (via: NodeHost, reqs: SignedRequest[]) => {
      const ids: string[] = [];
      for (const sr of reqs) {
        const r = via.submit(sr);
        expect(r.ok).toBe(true);
        if (r.ok) ids.push(hex(r.requestId));
      }
      const certs = await Promise.all(ids.map((id) => via.waitCertificate(id, 15_000)));
      expect(certs.every((c) => c !== null)).toBe(true);
    };
    try {
      for (const h of hosts) h.start();
      const many = () => Array.from({ length: 60 }, () => request(64));
      // View 0: 60 requests in one batch. It stays prepared above the stable checkpoint, so every
      // VIEW-CHANGE carries its certificate, and the NEW-VIEW q of them (about 32 KB).
      await certify(hosts[0], many());
      await until(
        () => hosts.every((h) => h.replica.lastExecuted === hosts[0].replica.lastExecuted),
        'view 0',
        1500,
      );
      // Node 0, the primary, is cut off: the others change view without it, and order 60 more requests in
      // one batch (about 36 KB as state transfer ships it), which node 0 misses.
      cut.add(0);
      const missedFrom = hosts[1].replica.lastExecuted + 1;
      await certify(hosts[1], [request(64)]);
      expect(hosts[1].replica.view).toBeGreaterThan(0);
      await certify(hosts[1], many());
      const last = hosts[1].replica.lastExecuted;
      await until(() => [1, 2, 3].every((i) => hosts[i].replica.lastExecuted === last), 'the new view', 1500);
      const view = hosts[1].replica.view;
      // What makes the answer tight: the NEW-VIEW and the large batch each fit in a frame, not together.
      const nv = newViews[newViews.length - 1];
      const sizeOf = (seq: number) =>
        encodeMessage({
          kind: 'stateResponse',
          from: 1,
          batches: hosts[1].db.stateBatches(seq, 1),
          view: 0,
          newView: null,
          checkpoint: null,
        }).length;
      const seqs = Array.from({ length: last - missedFrom + 1 }, (_, i) => missedFrom + i);
      const bigSeq = seqs.reduce((a, b) => (sizeOf(b) > sizeOf(a) ? b : a));
      expect(nv).toBeLessThanOrEqual(LIMIT);
      expect(sizeOf(bigSeq)).toBeLessThanOrEqual(LIMIT);
      expect(nv + sizeOf(bigSeq)).toBeGreaterThan(LIMIT);

      // Node 0 comes back and asks its peers for what it missed.
      cut.delete(0);
      hosts[0].step({ type: 'catchUp' });
      const caughtUp = () => hosts[0].replica.lastExecuted === last && hosts[0].replica.view === view;
      await until(() => caughtUp() || oversize.length > 0 || fatal.length > 0, 'node 0 to catch up', 1500);
      expect(oversize).toEqual([]);
      expect(fatal).toEqual([]);
      for (const h of hosts) expect(h.failed).toBeNull();
      expect(caughtUp()).toBe(true);
      const toNode0 = responses.filter((r) => r.to === 0 && r.msg.kind === 'stateResponse');
      for (const r of toNode0) expect(r.bytes).toBeLessThanOrEqual(LIMIT);
      // The large batch went without the NEW-VIEW, which came with a later answer.
      const batchesOf = (r: (typeof toNode0)[number]) =>
        r.msg.kind === 'stateResponse' ? r.msg.batches : [];
      const withBig = toNode0.filter((r) => batchesOf(r).some((b) => b.seq === bigSeq));
      expect(withBig.length).toBeGreaterThan(0);
      for (const r of withBig) expect(r.msg.kind === 'stateResponse' && r.msg.newView).toBeNull();
      expect(toNode0.some((r) => r.msg.kind === 'stateResponse' && r.msg.newView !== null)).toBe(true);
      expect(codes.some((c) => c.code === 'STATE_NEWVIEW_LEFT_OUT')).toBe(true);
      expect(hosts[0].db.stateBatches(1, 64).map((b) => b.seq)).toEqual(
        hosts[1].db.stateBatches(1, 64).map((b) => b.seq),
      );
    } finally {
      for (const h of hosts) h.close();
    }
  });
});
