/**
 * A group in one process for tests: real models (onnxruntime), real SQLite ledgers, NodeHosts joined by an
 * in-memory loopback wire, one fastify app per host (optionally listening on 127.0.0.1, port 0).
 * Used by test/node/api.test.ts (its helpers) and test/client/sdk.test.ts (the whole group over HTTP).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { ReplicaConfig } from '../../src/consensus/replica.ts';
import type { ModelBackend } from '../../src/inference/backend.ts';
import { catalogByName } from '../../src/inference/catalog.ts';
import { InferenceEngine } from '../../src/inference/engine.ts';
import { type ApiOptions, buildApi } from '../../src/node/api.ts';
import { type HostObserver, NodeHost, type Wire } from '../../src/node/host.ts';
import { type Genesis, groupIdOf, type KeyPair, keyPairFromSeed, sha256 } from '../../src/protocol/index.ts';

export { SHARED } from '../shared.ts';

import { SHARED } from '../shared.ts';
export const VAL = join(SHARED, 'datasets/imagenet-sample/val');
/** Four fast real models, one per node. */
export const FAST_MODELS = [
  'mobilenet_v1_0.25_128_quant',
  'mobilenet_v1_0.5_160_quant',
  'mobilenetv2-12-int8',
  'tf2_mobilenet_v2_1.0_224_ptq',
];

/** A deterministic key for a label. */
export function keyOf(label: string): KeyPair {
  return keyPairFromSeed(sha256(new TextEncoder().encode(`api-test/${label}`)));
}

/** The first `n` JPEGs of the ImageNet validation sample, sorted by name. */
export function valImages(n: number): Uint8Array[] {
  return readdirSync(VAL)
    .filter((f) => f.endsWith('.JPEG'))
    .sort()
    .slice(0, n)
    .map((f) => new Uint8Array(readFileSync(join(VAL, f))));
}

/** A genesis for real models, like makeGroup in src/sim/world.ts: one node per model, fee 1 each. */
export function makeGenesis(
  name: string,
  models: { name: string; digest: string }[],
  balances: { client: Uint8Array; amount: number }[],
): { genesis: Genesis; keys: KeyPair[] } {
  const keys = models.map((_, i) => keyOf(`${name}/node/${i}`));
  const f = Math.floor((models.length - 1) / 3);
  const genesis: Genesis = {
    version: 1,
    name,
    f,
    nodes: models.map((m, id) => ({
      id,
      publicKey: keys[id].publicKey,
      address: `mem://node-${id}`,
      owner: `owner-${id}`,
      modelName: m.name,
      modelDigest: Uint8Array.from(Buffer.from(m.digest, 'hex')),
      fee: 1,
    })),
    policy: { kind: 'top1', minAgree: f + 1 },
    treasury: keyOf(`${name}/treasury`).publicKey,
    balances: [...balances].sort((a, b) => Buffer.compare(a.client, b.client)),
    params: {
      expiryMs: 600_000,
      maxClockSkewMs: 5_000,
      maxInputBytes: 1 << 20,
      inputType: 'application/octet-stream',
    },
  };
  return { genesis, keys };
}

/** Loopback wire for `n` nodes: frames are delivered on a later turn of the event loop, as a socket would. */
export class Loopback {
  private readonly handlers = new Map<number, (from: number, bytes: Uint8Array) => void>();
  constructor(readonly n: number) {}
  wire(id: number): Wire {
    const deliver = (to: number, bytes: Uint8Array) => setImmediate(() => this.handlers.get(to)?.(id, bytes));
    return {
      send: deliver,
      broadcast: (bytes) => {
        for (let to = 0; to < this.n; to++) if (to !== id) deliver(to, bytes);
      },
      onFrame: (h) => {
        this.handlers.set(id, h);
      },
      reportBad: () => {},
    };
  }
  stop(): void {
    this.handlers.clear();
  }
}

/**
 * Closes an app and every connection to it, busy or not. fastify's close() leaves connections that are
 * not idle when it starts (and spare ones fetch opens after an abort) to the server's headers timeout
 * (60 s); tests do not wait for that.
 */
export async function closeApp(app: FastifyInstance): Promise<void> {
  const closing = app.close();
  const t = setInterval(() => app.server.closeAllConnections(), 20);
  try {
    await closing;
  } finally {
    clearInterval(t);
  }
}

export interface TestGroup {
  genesis: Genesis;
  groupId: Uint8Array;
  engines: InferenceEngine[];
  hosts: NodeHost[];
  apps: FastifyInstance[];
  /** Each node's API base URL (http://127.0.0.1:port) when `listen` was set, else empty. */
  urls: string[];
  net: Loopback;
  /** Closes apps, hosts, wire, engines and ledgers, and removes the ledger directory. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts a group with one node per model. `balances`: the genesis balances; `api`: options per node for
 * buildApi; `listen`: listen on 127.0.0.1 with an OS-chosen port.
 */
export async function startGroup(opts: {
  name: string;
  models?: string[];
  balances: { client: Uint8Array; amount: number }[];
  replica?: Partial<ReplicaConfig>;
  api?: (id: number, host: NodeHost) => ApiOptions;
  listen?: boolean;
  /** What node `id` infers with (default: its engine itself). */
  backend?: (id: number, engine: InferenceEngine) => ModelBackend;
  /** Node `id`'s observer hooks (HostOptions.observe), e.g. a NodeMetrics' `observer()`. */
  observe?: (id: number) => HostObserver | undefined;
}): Promise<TestGroup> {
  const models = opts.models ?? FAST_MODELS;
  const dir = mkdtempSync(join(tmpdir(), `dropbear-${opts.name}-`));
  const engines: InferenceEngine[] = [];
  const hosts: NodeHost[] = [];
  const apps: FastifyInstance[] = [];
  const net = new Loopback(models.length);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await Promise.allSettled(apps.map(closeApp)); // a test may have closed one already
    for (const h of hosts) h.stop();
    net.stop();
    await Promise.all(engines.map((e) => e.close()));
    for (const h of hosts) h.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const started = await Promise.allSettled(
      models.map((name) => {
        const spec = catalogByName(name);
        if (!spec) throw new Error(`model ${name} is not in the catalog`);
        return InferenceEngine.start({ modelPath: join(SHARED, 'models', `${name}.onnx`), spec });
      }),
    );
    for (const s of started) if (s.status === 'fulfilled') engines.push(s.value);
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    const { genesis, keys } = makeGenesis(
      opts.name,
      engines.map((e, i) => ({ name: models[i], digest: e.digest })),
      opts.balances,
    );
    for (let id = 0; id < models.length; id++) {
      const host = NodeHost.open({
        id,
        genesis,
        key: keys[id],
        ledgerPath: join(dir, `node-${id}.sqlite`),
        backends: [opts.backend?.(id, engines[id]) ?? engines[id]],
        wire: net.wire(id),
        replica: opts.replica,
        observe: opts.observe?.(id),
      });
      hosts.push(host);
      apps.push(buildApi(host, opts.api?.(id, host) ?? {}));
    }
    for (const h of hosts) h.start();
    let urls: string[] = [];
    if (opts.listen) urls = await Promise.all(apps.map((a) => a.listen({ host: '127.0.0.1', port: 0 })));
    else await Promise.all(apps.map((a) => a.ready()));
    return { genesis, groupId: groupIdOf(genesis), engines, hosts, apps, urls, net, close };
  } catch (e) {
    await close();
    throw e;
  }
}
