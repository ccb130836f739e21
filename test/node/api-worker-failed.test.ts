// A node whose model threads all gave up starting (WORKER_START_FAILED: the model file unreadable through
// every retry, test/inference/worker-reload.test.ts) answers nothing but empty votes until it restarts. Its
// /readyz and /v2/health/ready say so (503 NOT_READY, naming the cause) and /metrics counts the failed
// thread, where before it read ready: a load balancer kept sending it requests it could only vote empty.
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import type { FastifyInstance } from 'fastify';
import { afterAll, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { InferenceEngine } from '../../src/inference/engine.ts';
import { buildApi } from '../../src/node/api.ts';
import { NodeHost } from '../../src/node/host.ts';
import { NodeMetrics } from '../../src/node/metrics.ts';
import { MODELS_DIR } from '../shared.ts';
import { closeApp, keyOf, Loopback, makeGenesis, valImages } from './harness.ts';

const NAME = 'mobilenet_v1_0.25_128_quant';
const dir = mkdtempSync(join(tmpdir(), 'dropbear-worker-failed-'));
const closers: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

it('a node whose model threads gave up starting is not ready, and /metrics counts them', async () => {
  const path = join(dir, 'model.onnx');
  copyFileSync(join(MODELS_DIR, `${NAME}.onnx`), path);
  const engine = await InferenceEngine.start({
    modelPath: path,
    spec: catalogByName(NAME)!,
    startRetryMs: 20,
    log: { info() {}, warn() {}, error() {} },
  });
  closers.push(() => engine.close());
  const models = Array.from({ length: 4 }, () => ({ name: NAME, digest: engine.digest }));
  const { genesis, keys } = makeGenesis('worker-failed', models, [
    { client: keyOf('worker-failed/client').publicKey, amount: 1e6 },
  ]);
  const metrics = new NodeMetrics();
  const host = NodeHost.open({
    id: 0,
    genesis,
    key: keys[0],
    ledgerPath: join(dir, 'node-0.sqlite'),
    backends: [engine],
    wire: new Loopback(4).wire(0),
    observe: metrics.observer(),
  });
  closers.push(async () => host.close());
  metrics.attach(host, () => []);
  const app: FastifyInstance = buildApi(host, { metrics });
  closers.push(() => closeApp(app));
  await app.ready();

  const ready = () => app.inject({ method: 'GET', url: '/readyz' });
  const failedGauge = async () =>
    Number(
      /^dropbear_inference_failed_workers (\d+)/m.exec(
        (await app.inject({ method: 'GET', url: '/metrics' })).body,
      )?.[1],
    );
  expect((await ready()).statusCode).toBe(200);
  expect(await failedGauge()).toBe(0);

  // The file goes away, then the session thread dies: every restart fails until the slot gives up.
  renameSync(path, `${path}.away`);
  // biome-ignore lint/suspicious/noExplicitAny: the engine's only session thread, told to close behind its back
  const thread: Worker = (engine as any).runners[0].handle.handle.worker;
  const exited = once(thread, 'exit');
  thread.postMessage({ type: 'close' });
  await exited;
  await expect(engine.classify(valImages(1)[0])).rejects.toMatchObject({ code: 'WORKER_START_FAILED' });

  const res = await ready();
  expect(res.statusCode).toBe(503);
  const body = res.json() as { error: { code: string; message: string } };
  expect(body.error.code).toBe('NOT_READY');
  expect(body.error.message).toMatch(
    /inference threads failed to start \(WORKER_START_FAILED: .*MODEL_LOAD_FAILED/,
  );
  expect((await app.inject({ method: 'GET', url: '/v2/health/ready' })).statusCode).toBe(503);
  expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200); // alive all the same
  expect(await failedGauge()).toBe(1);
}, 60_000);
