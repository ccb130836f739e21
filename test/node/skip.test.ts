/**
 * A node whose inference falls behind does not decode or run the inputs of requests the group executed
 * meanwhile (NodeHost.inferNow asks the replica; the engine drops them unread). Four real models in one
 * process; a node's inputs are held at a gate until the others have certified the requests.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelBackend } from '../../src/inference/backend.ts';
import { NodeMetrics } from '../../src/node/metrics.ts';
import { hex, type Request, requestIdOf, sha256, signRequest } from '../../src/protocol/index.ts';
import { keyOf, startGroup, type TestGroup, valImages } from './harness.ts';

const client = keyOf('skip/client');
let group: TestGroup;
let nonce = 1;
/** Each node's inference calls wait at its gate while it is closed (node 3's starts closed). */
const gates = new Map<number, { passed: Promise<void>; open: () => void }>();
const calls = [0, 0, 0, 0];
const metrics3 = new NodeMetrics();

/** A counter's value in node 3's Prometheus text. */
async function counter(name: string): Promise<number> {
  const line = (await metrics3.text()).split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

function closeGate(id: number): void {
  let open = () => {};
  const passed = new Promise<void>((r) => {
    open = r;
  });
  gates.set(id, { passed, open });
}

function openGate(id: number): void {
  gates.get(id)?.open();
  gates.delete(id);
}

beforeAll(async () => {
  closeGate(3);
  group = await startGroup({
    name: 'skip-test',
    balances: [{ client: client.publicKey, amount: 1e9 }],
    observe: (id) => (id === 3 ? metrics3.observer() : undefined),
    backend: (id, engine): ModelBackend => ({
      digest: engine.digest,
      spec: engine.spec,
      stats: () => engine.stats(),
      close: () => engine.close(),
      async classify(input, opts) {
        calls[id]++;
        await gates.get(id)?.passed;
        return engine.classify(input, opts);
      },
    }),
  });
});
afterAll(async () => {
  for (const id of [...gates.keys()]) openGate(id);
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
    expect(calls[3]).toBe(6);
    // ...so once its inputs get their turn, the engine refuses them before decoding: nothing is run.
    openGate(3);
    await until(() => group.engines[3].stats().skipped - before.skipped === 6, 10_000);
    const after = group.engines[3].stats();
    expect(after.items).toBe(before.items);
    expect(after.decoded).toBe(before.decoded);
    // The host counts them as skipped, not as failures (which would have been voted as empty results).
    for (let i = 0; i < 50 && (await counter('dropbear_inference_skipped_total')) !== 6; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(await counter('dropbear_inference_skipped_total')).toBe(6);
    expect(await counter('dropbear_inference_failures_total')).toBe(0);

    // A request still waiting when its turn comes is inferred. Node 2 is held back this time, so the
    // request cannot execute before node 3 has voted: the quorum is 0, 1 and 3.
    closeGate(2);
    const before2 = group.engines[2].stats();
    const last = request(images[6]);
    for (const h of group.hosts) expect(h.submit(last, { sentToAll: true }).ok).toBe(true);
    const c = await group.hosts[0].waitCertificate(hex(requestIdOf(last)), 30_000);
    expect(c?.outcome.votes.map((v) => v.node)).toEqual([0, 1, 3]);
    expect(group.engines[3].stats()).toMatchObject({ items: before.items + 1, skipped: after.skipped });
    // And node 2, let through after the request executed, drops it.
    await Promise.all(group.hosts.map((h) => h.waitCertificate(hex(requestIdOf(last)), 30_000)));
    openGate(2);
    await until(() => group.engines[2].stats().skipped === before2.skipped + 1, 10_000);
    expect(group.engines[2].stats().items).toBe(before2.items);
  });
});
