// A worker thread that dies is replaced (the same setup, a new thread) and never chosen while dead; calls
// in flight on it fail with WORKER_EXITED. A call a worker does not answer in time fails with WORKER_TIMEOUT.
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { InferenceEngine } from '../../src/inference/engine.ts';
import { inputElements } from '../../src/inference/preprocess.ts';
import { SessionRunner } from '../../src/inference/threads.ts';
import { DATA_DIR, MODELS_DIR } from '../shared.ts';

const NAME = 'mobilenet_v1_0.25_128_quant';
const spec = catalogByName(NAME)!;
const modelPath = `${MODELS_DIR}/${NAME}.onnx`;
const img = readFileSync(`${DATA_DIR}/sample/n01440764_tench.JPEG`);

// The thread under a runner or pool slot (reached through the handle's wrapper where there is one).
// biome-ignore lint/suspicious/noExplicitAny: reaching into private fields to kill a thread
const threadOf = (slot: any): Worker => (slot.handle ?? slot).worker ?? slot.worker;

// Kills a thread as if it died: it is told to close behind the engine's back and exits by itself before
// it takes any later call, so calls sent after this fail as in flight on a dead thread. Never
// `Worker.terminate()`: ending a thread while onnxruntime runs a batch aborts this whole process (status
// 134; it did under load when the first test below posted a batch and terminated the thread at once).
const kill = (w: Worker): Promise<void> => {
  const exited = once(w, 'exit').then(() => {});
  w.postMessage({ type: 'close' });
  return exited;
};

const closers: { close(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(closers.map((c) => c.close()));
});

const code = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: { code?: string }) => e.code ?? String(e),
  );

describe('dead worker threads', () => {
  it('a session worker killed mid-call fails that call with WORKER_EXITED, and is replaced', async () => {
    const r = await SessionRunner.start(modelPath, spec, {
      intraOpThreads: 1,
      interOpThreads: 1,
      executionProviders: ['cpu'],
    });
    closers.push(r);
    const n = inputElements(spec);
    // biome-ignore lint/suspicious/noExplicitAny: private
    const slot = (r as any).handle;
    const dying = kill(threadOf(slot));
    const inflight = code(r.run(new Float32Array(n), 1));
    await dying;
    expect(await inflight).toBe('WORKER_EXITED');
    // The next call goes to the replacement thread (it waits for its start).
    const again = await r.run(new Float32Array(n), 1);
    expect(again.data.length).toBeGreaterThan(0);
    expect(r.replaced).toBe(1);
  }, 60_000);

  it.each(['prep', 'session'] as const)(
    'an engine whose only %s worker died answers again',
    async (kind) => {
      const e = await InferenceEngine.start({ modelPath, spec, prepWorkers: 1, sessionWorkers: 1 });
      closers.push(e);
      expect((await e.classify(img)).kind).toBe('class');
      // biome-ignore lint/suspicious/noExplicitAny: private
      const any = e as any;
      await kill(threadOf(kind === 'session' ? any.runners[0].handle : any.prepPool.handles[0]));
      await new Promise((r) => setTimeout(r, 50));
      const out: string[] = [];
      for (let i = 0; i < 3; i++) out.push(await code(e.classify(img)));
      expect(out).toEqual(['ok', 'ok', 'ok']);
      expect(e.replacedWorkers).toBe(1);
    },
    60_000,
  );

  it('a batch waiting for a replacement session thread to start fails with ENGINE_CLOSED when the engine closes', async () => {
    const e = await InferenceEngine.start({ modelPath, spec, prepWorkers: 1, sessionWorkers: 1 });
    // biome-ignore lint/suspicious/noExplicitAny: private
    const any = e as any;
    await kill(threadOf(any.runners[0].handle));
    // The replacement is starting (it loads the model): the batch is handed to it and waits for its start.
    const waiting = code(e.scores(new Float32Array(inputElements(spec))));
    while (e.stats().inFlight === 0) await new Promise((r) => setImmediate(r));
    expect(any.runners[0].handle.handle.wasReady).toBe(false);
    await e.close();
    expect(await waiting).toBe('ENGINE_CLOSED');
  }, 20_000);

  it('with two workers, a killed one is never chosen while dead', async () => {
    const e = await InferenceEngine.start({ modelPath, spec, prepWorkers: 2, sessionWorkers: 2 });
    closers.push(e);
    // biome-ignore lint/suspicious/noExplicitAny: private
    const any = e as any;
    await Promise.all([kill(threadOf(any.runners[0].handle)), kill(threadOf(any.prepPool.handles[0]))]);
    // Straight away (the replacements may still be starting): the healthy threads answer.
    const out = await Promise.all(Array.from({ length: 4 }, () => code(e.classify(img))));
    expect(out).toEqual(['ok', 'ok', 'ok', 'ok']);
  }, 60_000);
});

describe('a replacement thread loads the model the engine started with', () => {
  it('refuses a model file changed on disk since the start (MODEL_DIGEST_MISMATCH), never runs it', async () => {
    // Two models of one input and output shape: before, the replacement loaded the other one and the engine
    // answered with it under the first one's digest.
    const a = 'mobilenet_v2_1.0_224_quant';
    const b = 'tf2_mobilenet_v2_1.0_224_ptq';
    const dir = mkdtempSync(join(tmpdir(), 'dropbear-swap-'));
    try {
      const path = join(dir, 'model.onnx');
      copyFileSync(`${MODELS_DIR}/${a}.onnx`, path);
      const e = await InferenceEngine.start({
        modelPath: path,
        spec: catalogByName(a)!,
        prepWorkers: 1,
        startRetryMs: 50,
        log: { info() {}, warn() {}, error() {} },
      });
      closers.push(e);
      expect((await e.classify(img)).kind).toBe('class');
      copyFileSync(`${MODELS_DIR}/${b}.onnx`, path);
      // biome-ignore lint/suspicious/noExplicitAny: private
      await kill(threadOf((e as any).runners[0].handle));
      // Each start refuses it; the slot gives up after a few (worker-reload.test.ts).
      await expect(e.classify(img)).rejects.toMatchObject({
        code: 'WORKER_START_FAILED',
        details: { cause: 'MODEL_DIGEST_MISMATCH' },
      });
      expect(e.digest).toBe(catalogByName(a)!.sha256);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('worker call timeout', () => {
  it('a call not answered within requestTimeoutMs fails with WORKER_TIMEOUT', async () => {
    const e = await InferenceEngine.start({ modelPath, spec, requestTimeoutMs: 1 });
    closers.push(e);
    expect(await code(e.classify(img))).toBe('WORKER_TIMEOUT');
  }, 60_000);

  it("names the call that timed out: one input's preprocessing (not retried by the host)", async () => {
    const e = await InferenceEngine.start({ modelPath, spec, requestTimeoutMs: 1 });
    closers.push(e);
    await expect(e.classify(img)).rejects.toMatchObject({
      code: 'WORKER_TIMEOUT',
      details: { call: 'prep' },
    });
    // A model run is named 'run' by the same line (threads.ts: the call's message type); it is not timed
    // out here because a lone run of a small model can finish within any bound a test can set (CI saw
    // one answer within 1 ms). host.test.ts checks that the host retries a 'run' timeout.
  }, 60_000);

  it('inputs queued behind calls that timed out are sent once the worker answers those late, not left waiting', async () => {
    const e = await InferenceEngine.start({ modelPath, spec, prepWorkers: 1, requestTimeoutMs: 1 });
    closers.push(e);
    // The one preprocessing worker is posted two inputs; the pool keeps the other two. The two posted time
    // out while the worker still decodes them, and its late answers are the only event that frees it: the
    // kept inputs must go then (they time out in turn here), never wait for good.
    const out = await Promise.all(Array.from({ length: 4 }, () => code(e.classify(img))));
    expect(out).toEqual(['WORKER_TIMEOUT', 'WORKER_TIMEOUT', 'WORKER_TIMEOUT', 'WORKER_TIMEOUT']);
    expect(e.stats().preprocessing).toBe(0);
  }, 20_000);

  it('refuses a negative requestTimeoutMs', async () => {
    await expect(InferenceEngine.start({ modelPath, spec, requestTimeoutMs: -1 })).rejects.toThrow(
      /requestTimeoutMs/,
    );
  });
});
