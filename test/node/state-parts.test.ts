/**
 * State transfer of an executed batch too large for one frame (src/node/host.ts serveState and
 * serveStatePart, src/consensus/replica.ts takeStateHeader and assemble). A burst of requests makes one
 * consensus batch whose requests and RESULTS do not fit in a frame beside it. Until 2026-12-06 a peer
 * asked for it logged STATE_BATCH_TOO_LARGE and sent nothing, and so did every other peer: a node behind
 * that batch asked again forever and never caught up. Now the batch and its proof go alone and the node
 * behind fetches the rest in parts. Four real hosts (SQLite ledgers, stand-in models) on an in-memory
 * wire that refuses a frame over the limit as the transport does.
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
  receiptHashOf,
  type SignedRequest,
  sha256,
  signRequest,
} from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { certifiedWithoutNode3, memoryWires, until } from './memory-wire.ts';

const dir = mkdtempSync(join(tmpdir(), 'dropbear-state-parts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The frame limit of every host and of the wire: a proposal of 60 requests fits, its state batch not. */
const LIMIT = 16 * 1024;

interface Run {
  /** Node 3 caught up with the others (every batch, the same receipts). */
  caughtUp: boolean;
  codes: { node: number; code: string }[];
  /** Every stateResponse and statePart sent to node 3. */
  toLagging: { from: number; bytes: number; msg: NodeMessage }[];
  oversize: { from: number; kind: string; bytes: number }[];
  blamed: Map<number, number>;
  /** Peers node 3 dropped for a bad signature (Wire.reportBad). */
  dropped: number[];
}

/**
 * Node 3 is cut off while the other three order a burst of 60 requests (one batch of about 29 KB as state
 * transfer ships it); then it comes back and catches up. `tamper` may rewrite a frame a peer sends it, or
 * drop it (null).
 */
async function lagBehindABurst(
  seed: number,
  tamper?: (from: number, msg: NodeMessage, dropped: number[]) => NodeMessage | null,
): Promise<Run> {
  const dropped: number[] = [];
  const group = makeGroup(4, 1, seed);
  const oversize: Run['oversize'] = [];
  const toLagging: Run['toLagging'] = [];
  const fatal: unknown[] = [];
  const codes: Run['codes'] = [];
  const { wireOf, cut } = memoryWires(4, {
    limit: LIMIT,
    sent: (from, _to, bytes) => {
      if (bytes.length > LIMIT) oversize.push({ from, kind: decodeMessage(bytes).kind, bytes: bytes.length });
    },
    tamper: (from, to, sent) => {
      if (to !== 3) return sent;
      let msg = decodeMessage(sent);
      let bytes = sent;
      if (tamper) {
        const changed = tamper(from, msg, dropped);
        if (changed === null) return null;
        msg = changed;
        bytes = encodeMessage(msg);
      }
      if (msg.kind === 'stateResponse' || msg.kind === 'statePart')
        toLagging.push({ from, bytes: bytes.length, msg });
      return bytes;
    },
    reportBad: (id, peer) => {
      if (id === 3) dropped.push(peer);
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
      ledgerPath: join(dir, `seed-${seed}-${id}.sqlite`),
      backends: [startStandIn(id)],
      wire: wireOf(id),
      maxFrameBytes: LIMIT,
      logger: loggerOf(id),
      replica: { retransmitMs: 100 },
      onFatal: (e) => fatal.push(e),
    }),
  );
  let nonce = 0;
  const request = (): SignedRequest => {
    // Inputs of 2 KB: 120 KB in all, which state transfer never ships (the ledger keeps none).
    const input = randomBytes(2048);
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
  try {
    for (const h of hosts) h.start();
    cut.add(3);
    const last = await certifiedWithoutNode3(hosts, 60, request);
    // What makes it a test: some batch is over a frame as state transfer used to ship it whole.
    const sizes = Array.from(
      { length: last },
      (_, i) =>
        encodeMessage({
          kind: 'stateResponse',
          from: 0,
          batches: hosts[0].db.stateBatches(i + 1, 1),
          view: 0,
          newView: null,
          checkpoint: null,
        }).length,
    );
    expect(Math.max(...sizes)).toBeGreaterThan(LIMIT);

    cut.delete(3);
    hosts[3].step({ type: 'catchUp' });
    const caughtUp = () => hosts[3].replica.lastExecuted === last;
    // Every peer logs STATE_BATCH_TOO_LARGE at once where no peer can ship the batch: no wait for that.
    await until(
      () =>
        caughtUp() ||
        codes.some((c) => c.code === 'STATE_BATCH_TOO_LARGE') ||
        oversize.length > 0 ||
        fatal.length > 0,
      'node 3 to catch up',
    );
    expect(oversize).toEqual([]);
    expect(fatal).toEqual([]);
    for (const h of hosts) expect(h.failed).toBeNull();
    const receipts = (h: NodeHost) =>
      Array.from({ length: last }, (_, i) => hex(receiptHashOf(h.db.receipt(i + 1)!.receipt)));
    const blamed = new Map<number, number>();
    for (const [node, kinds] of hosts[3].replica.misbehaviour)
      blamed.set(
        node,
        [...kinds.values()].reduce((a, b) => a + b, 0),
      );
    return {
      caughtUp: caughtUp() && JSON.stringify(receipts(hosts[3])) === JSON.stringify(receipts(hosts[0])),
      codes,
      toLagging,
      oversize,
      blamed,
      dropped,
    };
  } finally {
    for (const h of hosts) h.close();
  }
}

describe('a node behind an executed batch too large for one frame', () => {
  it('catches up: the batch comes with its proof alone, its requests and RESULTS in parts', async () => {
    const run = await lagBehindABurst(51);
    expect(run.codes.filter((c) => c.code === 'STATE_BATCH_TOO_LARGE')).toEqual([]);
    expect(run.caughtUp).toBe(true);
    expect(run.codes.some((c) => c.code === 'STATE_BATCH_IN_PARTS')).toBe(true);
    const parts = run.toLagging.filter((r) => r.msg.kind === 'statePart');
    expect(parts.length).toBeGreaterThan(1);
    for (const r of run.toLagging) expect(r.bytes).toBeLessThanOrEqual(LIMIT);
    // Requests travel without their inputs, whole or in parts.
    for (const { msg } of run.toLagging) {
      const requests =
        msg.kind === 'statePart'
          ? msg.requests
          : msg.kind === 'stateResponse'
            ? msg.batches.flatMap((b) => b.requests)
            : [];
      for (const sr of requests) expect(sr.input.length).toBe(0);
    }
    expect(run.blamed.size).toBe(0);
  });

  it('keeps no request whose client signature a peer forged in a part, blames that peer, and still catches up', async () => {
    // Nodes 0 and 1 flip a bit of every client signature in the parts they send: the request id covers
    // the request, not its authentication, so only the signature check tells the copy from the client's.
    // Node 2's state responses are lost, so node 3 asks 0 or 1 for the first part, and gets the parts
    // from node 2 only by asking every peer again.
    let forged = 0;
    const run = await lagBehindABurst(52, (from, msg) => {
      if (from === 2 && msg.kind === 'stateResponse') return null;
      if (from === 2 || msg.kind !== 'statePart' || msg.requests.length === 0) return msg;
      forged++;
      return {
        ...msg,
        requests: msg.requests.map((sr) => {
          if (sr.auth.kind !== 'single') return sr;
          const signature = Uint8Array.from(sr.auth.signature);
          signature[0] ^= 1;
          return { ...sr, auth: { kind: 'single' as const, signature } };
        }),
      };
    });
    expect(run.caughtUp).toBe(true);
    expect(forged).toBeGreaterThan(0);
    expect((run.blamed.get(0) ?? 0) + (run.blamed.get(1) ?? 0)).toBeGreaterThan(0);
    expect(run.blamed.get(2)).toBeUndefined();
    // Every part node 3 kept came from node 2: what it executed is what the group did (same receipts).
  });

  it('gets the parts from other peers when the one it asked goes silent, and a peer with nothing newer stops nothing', async () => {
    // Node 0 alone sends the batch's proof and never a part; node 1's state responses are lost; node 2
    // answers as a peer behind too would, with no batch. Whichever of 0 and 2 answers first, node 3 must
    // keep catching up, and at its next retransmission ask every peer for the parts node 0 withholds.
    let withheld = 0;
    const run = await lagBehindABurst(53, (from, msg) => {
      if (from === 0 && msg.kind === 'statePart') {
        withheld++;
        return null;
      }
      if (from === 1 && msg.kind === 'stateResponse') return null;
      if (from === 2 && msg.kind === 'stateResponse') return { ...msg, batches: [] };
      return msg;
    });
    expect(run.caughtUp).toBe(true);
    expect(withheld).toBeGreaterThan(0);
    expect(run.toLagging.some((r) => r.msg.kind === 'statePart' && r.from !== 0)).toBe(true);
    expect(run.blamed.size).toBe(0);
  });

  it('refuses a batch sent in parts whose proof a peer forged, drops that peer, and catches up from others', async () => {
    // Node 1 flips a bit of the receipt signatures in the batches it sends without their requests; node 3
    // hears state responses from node 1 alone until it has dropped node 1 for that.
    const run = await lagBehindABurst(54, (from, msg, dropped) => {
      if (msg.kind !== 'stateResponse') return msg;
      if (from !== 1) return dropped.includes(1) ? msg : null;
      return {
        ...msg,
        batches: msg.batches.map((b) =>
          b.requests.length > 0
            ? b
            : {
                ...b,
                receiptSigs: b.receiptSigs.map((x) => {
                  const signature = Uint8Array.from(x.signature);
                  signature[0] ^= 1;
                  return { ...x, signature };
                }),
              },
        ),
      };
    });
    expect(run.dropped).toContain(1);
    expect(run.caughtUp).toBe(true);
    expect([...run.dropped, ...run.blamed.keys()].filter((n) => n !== 1)).toEqual([]);
  });
});
