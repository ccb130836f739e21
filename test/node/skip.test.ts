/**
 * A node whose inference falls behind does not decode or run the inputs of requests the group executed
 * meanwhile (NodeHost.inferNow asks the replica; the engine drops them unread). Four real models in one
 * process; node 3's inputs are held at a gate until the others have certified the requests.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelBackend } from '../../src/inference/backend.ts';
import { NodeMetrics } from '../../src/node/metrics.ts';
import { hex, type Request, requestIdOf, sha256, signRequest } from '../../src/protocol/index.ts';
import { keyOf, startGroup, type TestGroup, valImages } from './harness.ts';

const client = keyOf('skip/client');
let group: TestGroup;
let nonce = 1;
/** Node 3's calls wait here until `open()`. */
let gate: Promise<void>;
let open: () => void = () => {};
const gated: { calls: number } = { calls: 0 };
const metrics3 = new NodeMetrics();

/** A counter's value in node 3's Prometheus text. */
async function counter(name: string): Promise<number> {
  const line = (await metrics3.text()).split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

function closeGate(): void {
  gate = new Promise((r) => {
    open = r;
  });
}

beforeAll(async () => {
  closeGate();
  group = await startGroup({
    name: 'skip-test',
    balances: [{ client: client.publicKey, amount: 1e9 }],
    observe: (id) => (id === 3 ? metrics3.observer() : undefined),
    backend: (id, engine): ModelBackend =>
      id !== 3
        ? engine
        : {
            digest: engine.digest,
            spec: engine.spec,
            stats: () => engine.stats(),
            close: () => engine.close(),
            async classify(input, opts) {
              gated.calls++;
              await gate;
              return engine.classify(input, opts);
            },
          },
  });
});
afterAll(async () => {
  open();
  await group?.close();
});

function request(input: Uint8Array) {
  const req: Request = {
    groupId: group.groupId,
    client: client.publicKey,
    nonce: nonce++,
    timestamp: Date.now(),
    inputDigest: sha256(input),
    policy: null,
    maxFee: 1000,
  };
  return signRequest(req, input, client);
}

async function until(what: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('a node behind on inference', () => {
  it('skips the inputs of requests executed while they waited, and still infers those still waiting', async () => {
    const images = valImages(7);
    const before = group.engines[3].stats();
    const srs = images.slice(0, 6).map(request);
    for (const sr of srs)
      for (const h of group.hosts) expect(h.submit(sr, { sentToAll: true }).ok).toBe(true);
    const ids = srs.map((sr) => hex(requestIdOf(sr)));
    // Certified on the votes of nodes 0-2 (q = 3) while node 3's inputs wait at the gate.
    const certs = await Promise.all(ids.map((id) => group.hosts[0].waitCertificate(id, 30_000)));
    for (const c of certs) {
      expect(c).not.toBeNull();
      expect(c!.outcome.votes.map((v) => v.node)).toEqual([0, 1, 2]);
    }
    // Node 3 executes them too (it orders batches without having voted)...
    await Promise.all(ids.map((id) => group.hosts[3].waitCertificate(id, 30_000)));
    expect(gated.calls).toBe(6);
    // ...so once its inputs get their turn, the engine refuses them before decoding: nothing is run.
    open();
    await until(() => group.engines[3].stats().skipped - before.skipped === 6, 10_000);
    const after = group.engines[3].stats();
    expect(after.items).toBe(before.items);
    expect(after.decoded).toBe(before.decoded);
    // The host counts them as skipped, not as failures (which would have been voted as empty results).
    for (let i = 0; i < 50 && (await counter('dropbear_inference_skipped_total')) !== 6; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(await counter('dropbear_inference_skipped_total')).toBe(6);
    expect(await counter('dropbear_inference_failures_total')).toBe(0);

    // A request still waiting when its turn comes is inferred, and node 3's vote can count.
    const last = request(images[6]);
    for (const h of group.hosts) expect(h.submit(last, { sentToAll: true }).ok).toBe(true);
    const c = await group.hosts[0].waitCertificate(hex(requestIdOf(last)), 30_000);
    expect(c).not.toBeNull();
    await until(() => group.engines[3].stats().items === before.items + 1, 10_000);
    expect(group.engines[3].stats().skipped).toBe(after.skipped);
  });
});
