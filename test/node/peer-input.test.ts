/**
 * What one faulty peer can ask of a node (from a review, 2026-12-05), on one real host (SQLite ledger,
 * stand-in model) whose wire records what it sends:
 * - a FETCH is answered with each thing once and within a size budget, and a FETCHED answer over a frame
 *   goes out in several frames (one FETCH naming a 1 MiB request 65,536 times made the host encode a 64 GiB
 *   answer, and the failed encoding stopped the node);
 * - a forwarded request is taken only if its client's balance covers its maxFee, as the API requires of a
 *   client's own (a peer forwarding an unfunded key's requests had every node infer them for nothing and
 *   filled the pool funded clients need).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeHost } from '../../src/node/host.ts';
import { startStandIn } from '../../src/node/standin-backend.ts';
import {
  decodeMessage,
  encodeMessage,
  groupIdOf,
  hex,
  keyPairFromSeed,
  type NodeMessage,
  requestIdOf,
  type SignedRequest,
  sha256,
  signRequest,
} from '../../src/protocol/index.ts';
import { makeGroup, Simulation } from '../../src/sim/world.ts';

const dir = mkdtempSync(join(tmpdir(), 'dropbear-fetch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const group = makeGroup(4, 1, 7);
const groupId = groupIdOf(group.genesis);
const MiB = 1 << 20;

/** A host (node 0) whose sends to peers are recorded; `deliver` hands it a frame from a peer. */
function openHost(name: string, maxFrameBytes?: number) {
  const sent: { to: number; msg: NodeMessage; bytes: number }[] = [];
  const warnings: { obj: Record<string, unknown>; msg?: string }[] = [];
  let deliverRaw: (from: number, bytes: Uint8Array) => void = () => {};
  let deliver: (from: number, bytes: Uint8Array) => void = () => {};
  let fatal: unknown = null;
  const bad: { from: number; reason: string }[] = [];
  const host = NodeHost.open({
    id: 0,
    genesis: group.genesis,
    key: group.keys[0],
    ledgerPath: join(dir, `${name}.sqlite`),
    backends: [startStandIn(0)],
    wire: {
      send: (to, bytes) => sent.push({ to, msg: decodeMessage(bytes), bytes: bytes.length }),
      broadcast: () => {},
      onFrame: (h) => {
        deliver = h;
        deliverRaw = h;
      },
      reportBad: (from, reason) => bad.push({ from, reason }),
    },
    onFatal: (e) => {
      fatal = e;
    },
    ...(maxFrameBytes ? { maxFrameBytes } : {}),
    logger: {
      info() {},
      warn: (obj, msg) => warnings.push({ obj: obj as Record<string, unknown>, msg }),
      error() {},
    },
  });
  host.start();
  return {
    host,
    sent,
    bad,
    warnings,
    deliverRaw: (from: number, bytes: Uint8Array) => deliverRaw(from, bytes),
    deliver: (from: number, m: NodeMessage) => deliver(from, encodeMessage(m)),
    fatal: () => fatal,
  };
}

/** `count` requests with inputs of `bytes` bytes each (random, so every id differs), by `key` (funded). */
function bigRequests(count: number, bytes: number, key = group.client, maxFee = 1): SignedRequest[] {
  return Array.from({ length: count }, (_, nonce) => {
    const input = randomBytes(bytes);
    const request = {
      groupId,
      client: key.publicKey,
      nonce,
      timestamp: Date.now(),
      inputDigest: sha256(input),
      policy: null,
      maxFee,
    };
    return signRequest(request, input, key);
  });
}

const fetchOf = (requests: Uint8Array[]): NodeMessage => ({
  kind: 'fetch',
  from: 1,
  requests,
  results: [],
  seqs: [],
  prePrepares: [],
});
const answered = (sent: { msg: NodeMessage }[]) =>
  sent.flatMap((s) => (s.msg.kind === 'fetched' ? s.msg.requests.map((r) => hex(requestIdOf(r))) : []));

describe('a FETCH from a peer', () => {
  it('naming one large request 65,536 times: answered with one copy, and the node keeps running', () => {
    const h = openHost('dup');
    const [sr] = bigRequests(1, MiB - 1024);
    h.deliver(1, { kind: 'forward', requests: [sr] });
    h.deliver(1, fetchOf(Array(65_536).fill(requestIdOf(sr))));
    expect(h.fatal()).toBeNull();
    expect(h.host.failed).toBeNull();
    expect(answered(h.sent)).toEqual([hex(requestIdOf(sr))]);
    h.host.close();
  });

  it('naming more than the answer budget (8 MiB): the first ones up to it, each once', () => {
    const h = openHost('budget');
    const reqs = bigRequests(12, MiB - 1024);
    h.deliver(1, { kind: 'forward', requests: reqs });
    const ids = reqs.map(requestIdOf);
    h.deliver(1, fetchOf([...ids, ...ids]));
    // Each counts its input plus 512 bytes, MiB − 512 in all: after 8 of them 4 KiB of the budget is left,
    // so a 9th goes in and nothing after it.
    expect(answered(h.sent)).toEqual(ids.slice(0, 9).map(hex));
    h.host.close();
  });

  it('an answer over a frame goes out as several valid FETCHED frames, each within the frame limit', () => {
    const h = openHost('split', 2 * MiB + 4096);
    const reqs = bigRequests(5, MiB - 1024);
    h.deliver(1, { kind: 'forward', requests: reqs });
    h.deliver(1, fetchOf(reqs.map(requestIdOf)));
    const frames = h.sent.filter((s) => s.msg.kind === 'fetched');
    expect(frames.length).toBeGreaterThan(1);
    for (const f of frames) expect(f.bytes).toBeLessThanOrEqual(2 * MiB + 4096);
    expect(answered(h.sent).sort()).toEqual(reqs.map((r) => hex(requestIdOf(r))).sort());
    h.host.close();
  });
});

describe('a request a peer forwards', () => {
  it("is not taken when its client's balance is below its maxFee; a funded client's is", () => {
    const h = openHost('unfunded');
    const stranger = keyPairFromSeed(new Uint8Array(32).fill(6));
    expect(h.host.db.state.balanceOf(stranger.publicKey)).toBe(0);
    h.deliver(1, { kind: 'forward', requests: bigRequests(50, 64, stranger) });
    expect(h.host.status()).toMatchObject({ pendingRequests: 0, unfundedForwards: 50 });
    expect(h.bad).toEqual([]); // not held against the peer: the balance may have fallen since it took them
    const funded = bigRequests(3, 64);
    h.deliver(1, { kind: 'forward', requests: funded });
    expect(h.host.status()).toMatchObject({ pendingRequests: 3, unfundedForwards: 50 });
    h.host.close();
  });
});

// The balance was compared with each request's maxFee alone: a client (or a faulty peer forwarding for it)
// could have any number of requests held and inferred by every node, those beyond its balance skipped at
// execution uncharged, the pool past every admission limit.
describe("a client's requests waiting to be ordered hold their maxFee against its balance", () => {
  const fee = 3e11; // the client holds 1e12: three such requests fit, a fourth does not

  it('from a peer: those beyond the balance are not taken (unfundedForwards, not blamed)', () => {
    const h = openHost('held-forwards');
    h.deliver(1, { kind: 'forward', requests: bigRequests(5, 64, group.client, fee) });
    expect(h.host.status()).toMatchObject({ pendingRequests: 3, unfundedForwards: 2 });
    expect(h.bad).toEqual([]);
    h.host.close();
  });

  it('from the client: INSUFFICIENT_FUNDS saying what is held; a resend of one held is still a duplicate', () => {
    const h = openHost('held-own');
    const reqs = bigRequests(4, 64, group.client, fee);
    expect(reqs.slice(0, 3).map((r) => h.host.submit(r).ok)).toEqual([true, true, true]);
    expect(h.host.submit(reqs[3])).toMatchObject({
      ok: false,
      code: 'INSUFFICIENT_FUNDS',
      message:
        "balance 1000000000000, less the maxFee of 900000000000 held by this client's requests waiting to be ordered here, is 200000000000 below the request's maxFee 300000000000",
    });
    expect(h.host.submit(reqs[0])).toMatchObject({ ok: false, code: 'REQUEST_DUPLICATE' });
    // A request of another client is not held to this one's.
    const other = keyPairFromSeed(new Uint8Array(32).fill(9));
    expect(h.host.submit(bigRequests(1, 64, other, 0)[0]).ok).toBe(true);
    h.host.close();
  });

  it('release what they hold once executed: 300 requests certified on a balance that covers 40 at a time', () => {
    const sim = new Simulation({ nodes: 4, requests: 300, seed: 5, rate: 0.1 });
    const maxFee = 1_000_000; // what the simulator's client signs with
    for (const node of sim.nodes) node.replica.fundsOf = () => 40 * maxFee;
    const r = sim.run();
    expect(r.certificates.size).toBe(300);
    for (const node of sim.nodes) expect(node.replica.feesHeldFor(sim.group.client.publicKey)).toBe(0);
  });
});

describe('bytes from a peer that do not decode', () => {
  it("are dropped with the peer's connection, logged with the codec's code, and the node keeps running", () => {
    const h = openHost('garbage');
    const good = encodeMessage({ kind: 'stateRequest', from: 1, fromSeq: 1 });
    for (const bytes of [new Uint8Array([0x7f]), good.subarray(0, good.length - 1)]) h.deliverRaw(1, bytes);
    expect(h.bad).toEqual([
      { from: 1, reason: 'undecodable message' },
      { from: 1, reason: 'undecodable message' },
    ]);
    const logged = h.warnings.filter((w) => /undecodable/.test(w.msg ?? '')).map((w) => w.obj.code);
    expect(logged).toEqual(['CODEC_BAD_TAG', 'CODEC_TRUNCATED']);
    expect(h.fatal()).toBeNull();
    // Still serving: a valid message from the same peer is taken.
    h.deliver(1, { kind: 'forward', requests: bigRequests(2, 64) });
    expect(h.host.status()).toMatchObject({ pendingRequests: 2 });
    h.host.close();
  });
});
