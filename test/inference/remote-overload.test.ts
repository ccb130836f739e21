// RemoteBackend bounds its backlog as the local engine does: at most maxInFlight calls under way to the
// server (counted here on the server's side), the other inputs waiting on the node, and past maxQueue
// waiting inputs a new one refused at once with OVERLOADED. The waiting inputs are in stats() as `queued`
// and `preprocessing`, which the node API reads for maxInferenceQueue. Until 2026-12-05 there was no bound:
// every input went to the server at once on a connection of its own, and a stalled server held 1000 of them
// (~1 GB of the node's memory) while the stats said nothing waited.
import type { Server, ServerResponse } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { encodeTensorInput, inputElements } from '../../src/inference/preprocess.ts';
import { RemoteBackend } from '../../src/inference/remote.ts';
import { sendBinaryLogits, startFakeOip } from './fake-oip.ts';

const spec = catalogByName('mobilenet_v1_0.25_128_quant')!;
/** The model's own tensor: copied on the caller's thread, no preprocessing worker involved. */
const tensor = encodeTensorInput({
  dtype: 'float32',
  dims: [1, 3, 128, 128],
  data: new Uint8Array(4 * inputElements(spec)),
});

let srv: Server;
let url = '';
/** Inference calls the server holds now, the most it ever held at once, and all it received. */
let open = 0;
let maxOpen = 0;
let received = 0;
/** While true the server holds every call unanswered (a stalled model server). */
let stalled = true;
const held: ServerResponse[] = [];
const answer = (res: ServerResponse) => sendBinaryLogits(res, new Float32Array(1000).fill(1));

beforeAll(async () => {
  ({ server: srv, url } = await startFakeOip((req, res) => {
    open++;
    received++;
    maxOpen = Math.max(maxOpen, open);
    res.on('close', () => open--);
    req.resume();
    req.on('end', () => (stalled ? held.push(res) : answer(res)));
  }));
});
afterAll(() => {
  srv.closeAllConnections();
  srv.close();
});
beforeEach(() => {
  maxOpen = open;
  received = 0;
  stalled = true;
});

/** A backend for the fake server's model 'm', with a timeout no test reaches and the bounds given. */
const connectTo = (bounds: { maxInFlight?: number; maxQueue?: number }) =>
  RemoteBackend.connect({ url, model: 'm', digest: spec.sha256, timeoutMs: 60_000, ...bounds });

/** The server answers the calls it held, and every later one at once. */
function unstall(): void {
  stalled = false;
  for (const r of held.splice(0)) answer(r);
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!cond()) throw new Error(`never: ${what}`);
}

/** Calls that ended, by outcome. */
function track<T>(p: Promise<T>): { settled: boolean; code?: string; value?: T; done: Promise<void> } {
  const t: { settled: boolean; code?: string; value?: T; done: Promise<void> } = {
    settled: false,
    done: Promise.resolve(),
  };
  t.done = p.then(
    (v) => {
      t.settled = true;
      t.value = v;
    },
    (e: { code?: string }) => {
      t.settled = true;
      t.code = e.code ?? String(e);
    },
  );
  return t;
}

describe('RemoteBackend backlog bound', () => {
  it('a burst at a stalled server: the excess refused at once, maxInFlight calls at a time, the rest answered later', async () => {
    const rb = await connectTo({ maxInFlight: 3, maxQueue: 10 });
    try {
      const calls = Array.from({ length: 40 }, () => track(rb.classify(tensor)));
      // The server holds the calls it was let have; nothing has been answered yet.
      await until(() => held.length === 3, 'the server holds 3 calls');
      const refused = calls.filter((c) => c.settled);
      expect(refused.length).toBe(30);
      expect(refused.every((c) => c.code === 'OVERLOADED')).toBe(true);
      expect(rb.stats()).toMatchObject({ inFlight: 3, queued: 7, preprocessing: 0, rejected: 30 });
      // The 3 calls sent left the queue: 3 more inputs are let in, and the next one is refused at once.
      calls.push(...Array.from({ length: 3 }, () => track(rb.classify(tensor))));
      const more = track(rb.classify(tensor));
      await more.done;
      expect(more.code).toBe('OVERLOADED');
      expect(rb.stats()).toMatchObject({ queued: 10, rejected: 31 });
      // A round trip to the server (metadata) lets any call that was going to be sent arrive first.
      expect(await rb.ready()).toBe(true);
      expect(received).toBe(3);

      // The server answers: every input admitted completes, never more than 3 calls at once.
      unstall();
      await Promise.all(calls.map((c) => c.done));
      const admitted = calls.filter((c) => c.code === undefined);
      expect(admitted.length).toBe(13);
      for (const c of admitted) expect((c.value as { kind: string }).kind).toBe('class');
      expect(received).toBe(13);
      expect(maxOpen).toBe(3);
      expect(rb.stats()).toMatchObject({ inFlight: 0, queued: 0, preprocessing: 0, items: 13 });
      // With the backlog gone, inputs are admitted again.
      expect((await rb.classify(tensor)).kind).toBe('class');
    } finally {
      await rb.close();
    }
  });

  it('counts images on the preprocessing workers as waiting too', async () => {
    const rb = await connectTo({ maxInFlight: 1, maxQueue: 4 });
    // An already-decoded 64×64 RGB image (uint8 [H, W, 3]): it goes to a preprocessing worker.
    const image = encodeTensorInput({ dtype: 'uint8', dims: [64, 64, 3], data: new Uint8Array(64 * 64 * 3) });
    try {
      const calls = Array.from({ length: 6 }, () => track(rb.classify(image)));
      const s = rb.stats();
      expect(s.queued + s.preprocessing).toBe(4);
      await until(() => held.length === 1, 'the server holds 1 call');
      expect(calls.filter((c) => c.code === 'OVERLOADED').length).toBe(2);
      await until(() => rb.stats().preprocessing === 0, 'the images preprocessed');
      expect(rb.stats()).toMatchObject({ inFlight: 1, queued: 3 });
      unstall();
      await Promise.all(calls.map((c) => c.done));
      expect(calls.filter((c) => c.code === undefined).length).toBe(4);
      expect(maxOpen).toBe(1);
    } finally {
      await rb.close();
    }
  });

  it('an input whose caller stopped wanting it while it waited is skipped at its turn, never sent', async () => {
    const rb = await connectTo({ maxInFlight: 1 });
    try {
      let wanted = true;
      const first = track(rb.classify(tensor));
      const second = track(rb.classify(tensor, { wanted: () => wanted }));
      await until(() => held.length === 1, 'the server holds 1 call');
      wanted = false;
      unstall();
      await Promise.all([first.done, second.done]);
      expect(first.code).toBeUndefined();
      expect(second.code).toBe('INFERENCE_SKIPPED');
      expect(received).toBe(1);
      expect(rb.stats()).toMatchObject({ skipped: 1, queued: 0 });
    } finally {
      await rb.close();
    }
  });

  it('close fails the calls waiting for their turn with ENGINE_CLOSED', async () => {
    const rb = await connectTo({ maxInFlight: 1 });
    const calls = Array.from({ length: 3 }, () => track(rb.classify(tensor)));
    await until(() => held.length === 1, 'the server holds 1 call');
    await rb.close();
    await Promise.all(calls.map((c) => c.done));
    expect(calls.map((c) => c.code)).toEqual(['ENGINE_CLOSED', 'ENGINE_CLOSED', 'ENGINE_CLOSED']);
    held.splice(0);
  });

  it('refuses a maxInFlight or maxQueue that is not a positive integer', async () => {
    for (const bad of [{ maxInFlight: 0 }, { maxQueue: 1.5 }])
      await expect(
        RemoteBackend.connect({ url, model: 'm', digest: spec.sha256, ...bad }),
      ).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});
