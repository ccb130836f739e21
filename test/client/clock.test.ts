/**
 * The SDK's deadlines run on the monotonic clock: a step of the system clock during a call neither
 * stretches its timeoutMs (a step back) nor cuts it short (a step forward). Request timestamps stay on
 * the system clock (they are what nodes judge).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DropbearClient } from '../../src/client/index.ts';
import { makeGroup } from '../../src/sim/world.ts';

const group = makeGroup(4, 1, 5);
const nodes = group.genesis.nodes.map((_, id) => ({ id, api: `http://127.0.0.1:${9 + id}` }));

/** Every node takes the request (202, pending) and never has its certificate (404). */
const pendingForever: typeof fetch = async (input, init) => {
  const url = String(input);
  const id = 'ab'.repeat(32);
  if (init?.method === 'POST')
    return new Response(JSON.stringify({ requestId: id, pending: true }), {
      status: 202,
      headers: { 'content-type': 'application/json' },
    });
  // A long poll: held until its wait is up or it is aborted.
  const wait = Number(new URL(url).searchParams.get('wait') ?? 0);
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, Math.min(wait, 60_000));
    init?.signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
  return new Response(JSON.stringify({ error: { code: 'CERTIFICATE_NOT_FOUND', message: 'none' } }), {
    status: 404,
    headers: { 'content-type': 'application/json' },
  });
};

afterEach(() => {
  vi.restoreAllMocks();
});

describe('client deadlines', () => {
  for (const [name, stepMs] of [
    ['not stepped', 0],
    ['stepped back by an hour', -3_600_000],
    ['stepped forward by an hour', 3_600_000],
  ] as const)
    it(`a system clock ${name} during a call: the call ends at its timeoutMs`, async () => {
      const client = new DropbearClient({
        genesis: group.genesis,
        nodes,
        key: group.client,
        timeoutMs: 1500,
        hedgeMs: 0,
        fetch: pendingForever,
      });
      const sr = client.sign(new Uint8Array([1, 2, 3]));
      const real = Date.now.bind(Date);
      const at = real();
      // Stepped 100 ms into the call.
      vi.spyOn(Date, 'now').mockImplementation(() => (real() - at > 100 ? real() + stepMs : real()));
      const t0 = performance.now();
      const err = await client.send(sr).then(
        () => null,
        (e: unknown) => e,
      );
      const took = performance.now() - t0;
      // No node has a certificate: NO_CERTIFICATE once the time is up.
      expect((err as { code?: string } | null)?.code).toBe('NO_CERTIFICATE');
      expect(took).toBeGreaterThan(1000);
      expect(took).toBeLessThan(6000);
    }, 15_000);
});
