/**
 * Helpers shared by the e2e, wan and sweep parts: temporary folders and model homes, node groups and
 * `serve-model` processes started and stopped by PID (registered with cleanup.ts so that a failed part
 * leaves nothing running), a raw keep-alive HTTP POST (binary bodies, for the OIP baseline), the Open
 * Inference Protocol request with an encoded image, plurality voting, and NODE_OPTIONS for `--cpu-prof`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import {
  type GroupFile,
  initGroup,
  type LoadedGroup,
  loadGroup,
  NODE_EXEC_ARGV,
  nodeConfigPath,
  stopChild,
} from '../../src/cli/group.ts';
import { encodeTensorInput } from '../../src/inference/preprocess.ts';
import { importModels, resolveModel } from '../../src/inference/store.ts';
import { onCleanup } from './cleanup.ts';
import { frameKey, loadProfile } from './profile.ts';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'dropbear.mjs');

/**
 * The shared models and images, found as the tests find them (test/shared.ts): $DROPBEAR_SHARED, else
 * ../shared beside the repository, else /work/shared.
 */
export function sharedDir(): string {
  const found = [process.env.DROPBEAR_SHARED, join(ROOT, '..', 'shared'), '/work/shared'].find(
    (p): p is string => !!p && existsSync(join(p, 'models', 'MANIFEST.md')),
  );
  if (!found)
    throw new Error(
      'the shared models and images were not found: set DROPBEAR_SHARED to the folder holding models/ and datasets/',
    );
  return resolve(found);
}

/** Where the models come from: $DROPBEAR_MODELS, else the shared folder's models/. */
export function modelsSource(): string {
  return resolve(process.env.DROPBEAR_MODELS ?? join(sharedDir(), 'models'));
}

export function valDir(): string {
  return join(sharedDir(), 'datasets', 'imagenet-sample', 'val');
}

/** The val images' bytes, sorted by file name. */
export function loadVal(limit = Number.POSITIVE_INFINITY): Buffer[] {
  const dir = valDir();
  return readdirSync(dir)
    .filter((f) => /\.(jpe?g|png)$/i.test(f))
    .sort()
    .slice(0, limit)
    .map((f) => readFileSync(join(dir, f)));
}

/** A fresh temporary folder, removed by the returned `remove` (and by cleanupAll if the part fails). */
/**
 * The first `n` val images as the nodes take pre-made images: each resized to size × size (cover) by
 * libvips and sent as a DBT1 uint8 [H, W, 3] tensor, so the bench measures the protocol and the model,
 * not JPEG decoding.
 */
export async function valTensors(n: number, size: number): Promise<Uint8Array[]> {
  return Promise.all(
    loadVal(n).map(async (jpeg) => {
      const { data, info } = await sharp(jpeg)
        .removeAlpha()
        .resize(size, size, { fit: 'cover' })
        .raw()
        .toBuffer({ resolveWithObject: true });
      return encodeTensorInput({
        dtype: 'uint8',
        dims: [info.height, info.width, 3],
        data: new Uint8Array(data),
      });
    }),
  );
}

export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `dropbear-${prefix}-`));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  const unregister = onCleanup(remove);
  return {
    dir,
    remove: () => {
      unregister();
      remove();
    },
  };
}

/**
 * The four ImageNet models of the e2e part, node k / server k running the k-th; the sweep's inference rows
 * run the same group, so that the engine default it picks is picked on the workload the e2e targets measure.
 */
export const E2E_MODELS = [
  'mobilenetv2-12-int8',
  'shufflenet-v2-12-qdq',
  'squeezenet1.1-fp16-winml',
  'mobilenet_v1_0.5_160_quant',
];

/** A Dropbear home in `dir` holding exactly `names` (imported file by file from modelsSource()). */
export async function homeWithModels(dir: string, names: string[]): Promise<string> {
  const src = modelsSource();
  for (const n of new Set(names)) await importModels(join(src, `${n}.onnx`), dir);
  for (const n of names) await resolveModel(n, dir);
  return dir;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ------------------------------------------------------------------ child processes

/** Keeps a node's warnings and errors (pino JSON level ≥ 40) and anything that is not a log line. */
export function quietLog(log: (l: string) => void): (line: string) => void {
  return (line) => {
    const m = /^\[node \d+\] (.*)$/.exec(line);
    const rest = m ? m[1] : line;
    if (rest.includes('FSTDEP') || rest.includes('--trace-warnings') || rest.includes('--trace-deprecation'))
      return;
    try {
      const j = JSON.parse(rest) as { level?: number };
      if (typeof j.level === 'number' && j.level < 40) return;
    } catch {}
    log(line);
  };
}

export interface NodeGroup {
  dir: string;
  file: GroupFile;
  group: LoadedGroup;
  children: ChildProcess[];
  pids: number[];
  stop(): Promise<void>;
}

export interface NodeGroupOptions {
  dir: string;
  models: string[];
  home?: string;
  name?: string;
  /** Merged into every node config by initGroup (engine, replica, log, …). */
  nodeConfig?: Record<string, unknown>;
  /** Called after the configs are written and before the processes start (e.g. to add `peers`). */
  beforeStart?: (file: GroupFile, dir: string) => Promise<void> | void;
  /** Node flags of the node processes, e.g. ['--cpu-prof', '--cpu-prof-dir=DIR'] (not allowed in NODE_OPTIONS). */
  execArgv?: string[];
  /** Added to the node processes' environment (e.g. a probe's switch), over this process's own. */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
  log: (line: string) => void;
}

/**
 * `group init` in `dir`, then every node as its own process (`dropbear node --config`, as `group start`
 * runs them, plus `execArgv`); resolves once all answer /readyz. `stop()` sends SIGTERM (a node closes its
 * ledger and exits; a CPU profile is written then) and SIGKILL after 10 s.
 */
export async function startNodeGroup(o: NodeGroupOptions): Promise<NodeGroup> {
  const file = await initGroup({
    dir: o.dir,
    nodes: o.models.length,
    models: o.models,
    home: o.home,
    name: o.name,
    nodeConfig: { log: { level: 'warn' }, ...o.nodeConfig },
  });
  await o.beforeStart?.(file, o.dir);
  const group = loadGroup(o.dir);
  const log = quietLog(o.log);
  let stopping = false;
  const children = group.file.nodes.map((n) => {
    const child = spawn(
      process.execPath,
      [...NODE_EXEC_ARGV, ...(o.execArgv ?? []), BIN, 'node', '--config', nodeConfigPath(group, n)],
      // As `group start` does: with an IPC channel, a node stops when the bench process ends (even killed).
      { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: o.env ? { ...process.env, ...o.env } : process.env },
    );
    for (const stream of [child.stdout, child.stderr]) {
      let buf = '';
      stream?.on('data', (d: Buffer) => {
        buf += d.toString('utf8');
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          log(`[node ${n.id}] ${buf.slice(0, i)}`);
          buf = buf.slice(i + 1);
        }
      });
    }
    child.on('exit', (code, sig) => {
      if (!stopping) o.log(`[node ${n.id}] exited (${sig ?? `status ${code}`})`);
    });
    return child;
  });
  const kill = async () => {
    stopping = true;
    await Promise.all(children.map((c) => stopChild(c)));
  };
  const unregister = onCleanup(kill);
  const stop = async () => {
    unregister();
    await kill();
  };
  try {
    const deadline = Date.now() + (o.readyTimeoutMs ?? 120_000);
    for (const [k, n] of group.file.nodes.entries())
      for (;;) {
        const c = children[k];
        if (c.exitCode !== null || c.signalCode !== null)
          throw new Error(
            `node ${n.id} exited (${c.signalCode ?? `status ${c.exitCode}`}) before it was ready`,
          );
        try {
          const r = await fetch(`${n.api}/readyz`, { signal: AbortSignal.timeout(2000) });
          if (r.status === 200) break;
        } catch {}
        if (Date.now() > deadline) throw new Error(`node ${n.id} not ready in time`);
        await sleep(200);
      }
  } catch (e) {
    await stop();
    throw e;
  }
  return { dir: o.dir, file, group, children, pids: children.map((c) => c.pid ?? -1), stop };
}

export interface ServedModel {
  name: string;
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * `dropbear serve-model <file> --port 0` as a process (the baseline server: one model, unreplicated,
 * Open Inference Protocol v2 over HTTP); resolves once it prints its URL.
 */
export async function serveModel(o: {
  path: string;
  name: string;
  maxBatch: number;
  threads: number;
  /** Its worker threads' nice value (serve-model's own default when not given). */
  workerNice?: number;
  execArgv?: string[];
  log: (line: string) => void;
}): Promise<ServedModel> {
  const child = spawn(
    process.execPath,
    [
      ...NODE_EXEC_ARGV, // the same runtime settings as the nodes
      ...(o.execArgv ?? []),
      BIN,
      'serve-model',
      o.path,
      '--port',
      '0',
      '--name',
      o.name,
      '--max-batch',
      String(o.maxBatch),
      '--threads',
      String(o.threads),
      ...(o.workerNice === undefined ? [] : ['--worker-nice', String(o.workerNice)]),
    ],
    // With an IPC channel: serve-model stops when it closes, i.e. when the bench ends, even killed outright
    // (the four servers ran on for good after `kill -9` of `npm run bench -- e2e`).
    { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
  );
  const stop = () => stopChild(child);
  const unregister = onCleanup(stop);
  const url = await new Promise<string>((res, rej) => {
    let out = '';
    const t = setTimeout(() => rej(new Error(`serve-model ${o.name}: no URL after 60 s`)), 60_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        res(m[1]);
      }
    });
    child.stderr!.on('data', (d: Buffer) => {
      for (const l of d.toString('utf8').split('\n'))
        if (l.trim() && !/FSTDEP|trace-warnings|SIGTERM: stopping/.test(l))
          o.log(`[serve-model ${o.name}] ${l}`);
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      rej(new Error(`serve-model ${o.name} exited with status ${code}`));
    });
  }).catch(async (e) => {
    unregister();
    await stop();
    throw e;
  });
  return {
    name: o.name,
    url,
    pid: child.pid ?? -1,
    stop: async () => {
      unregister();
      await stop();
    },
  };
}

// ------------------------------------------------------------------ HTTP

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** POSTs with keep-alive over node:http; the answer's body as bytes. */
export function rawHttp(maxSockets = 256): {
  post(url: string, headers: Record<string, string | number>, body: Uint8Array): Promise<RawResponse>;
  close(): void;
} {
  const agent = new http.Agent({ keepAlive: true, maxSockets });
  return {
    post: (url, headers, body) =>
      new Promise((res, rej) => {
        const req = http.request(
          url,
          { method: 'POST', agent, headers: { ...headers, 'content-length': body.byteLength } },
          (r) => {
            const chunks: Buffer[] = [];
            r.on('data', (c: Buffer) => chunks.push(c));
            r.on('end', () =>
              res({ status: r.statusCode ?? 0, headers: r.headers, body: Buffer.concat(chunks) }),
            );
            r.on('error', rej);
          },
        );
        req.on('error', rej);
        req.end(body);
      }),
    close: () => agent.destroy(),
  };
}

/**
 * An Open Inference Protocol v2 infer body for one encoded image: input `inputName`, datatype BYTES,
 * shape [1], as binary data (4-byte little-endian length, then the bytes); the output asked for as binary
 * FP32. Returns the body and its headers.
 */
export function oipImageBody(
  inputName: string,
  image: Uint8Array,
): { headers: Record<string, string>; body: Buffer } {
  return oipImagesBody(inputName, [image]);
}

/** One OIP v2 request for several encoded images: a BYTES input of shape [N] as binary data. */
export function oipImagesBody(
  inputName: string,
  images: Uint8Array[],
): { headers: Record<string, string>; body: Buffer } {
  const parts: Uint8Array[] = [];
  let size = 0;
  for (const image of images) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(image.length, 0);
    parts.push(len, image);
    size += 4 + image.length;
  }
  const json = Buffer.from(
    JSON.stringify({
      inputs: [
        {
          name: inputName,
          datatype: 'BYTES',
          shape: [images.length],
          parameters: { binary_data_size: size },
        },
      ],
      parameters: { binary_data_output: true },
    }),
  );
  return {
    headers: {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(json.length),
    },
    body: Buffer.concat([json, ...parts]),
  };
}

/** The top-1 index of an OIP binary answer (FP32 scores after the JSON header); ties to the lowest. */
export function oipTop1(r: RawResponse): number {
  return oipTop1s(r, 1)[0];
}

/** The top-1 index of each of the `n` items of an OIP binary answer (scores [n, classes]); ties to the lowest. */
export function oipTop1s(r: RawResponse, n: number): number[] {
  if (r.status !== 200)
    throw Object.assign(new Error(`OIP server answered ${r.status}: ${r.body.toString('utf8', 0, 200)}`), {
      code: `HTTP_${r.status}`,
    });
  const head = Number(r.headers['inference-header-content-length']);
  const bytes = r.body.subarray(head);
  const per = bytes.length / 4 / n;
  // The rows the server says it sent (its first output's shape), when its header names them.
  let rows = n;
  try {
    const shape = JSON.parse(r.body.toString('utf8', 0, head)).outputs?.[0]?.shape;
    if (Array.isArray(shape)) rows = Number(shape[0]);
  } catch {
    rows = Number.NaN;
  }
  if (rows !== n || !Number.isInteger(per) || per < 1)
    throw new Error(`OIP answer of ${bytes.length} bytes is not ${n} rows of FP32 scores`);
  const out: number[] = [];
  for (let k = 0; k < n; k++) {
    let best = 0;
    let bestV = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < per; i++) {
      const v = bytes.readFloatLE((k * per + i) * 4);
      if (v > bestV) {
        bestV = v;
        best = i;
      }
    }
    out.push(best);
  }
  return out;
}

/**
 * The group's top-1 policy done by the client: the label named most often wins if no other label is named
 * as often and at least `minAgree` name it; else -1 (no agreement).
 */
export function plurality(labels: number[], minAgree: number): number {
  const count = new Map<number, number>();
  for (const l of labels) count.set(l, (count.get(l) ?? 0) + 1);
  let best = -1;
  let bestN = 0;
  let tie = false;
  for (const [l, n] of count) {
    if (n > bestN) [best, bestN, tie] = [l, n, false];
    else if (n === bestN) tie = true;
  }
  return bestN >= minAgree && !tie ? best : -1;
}

// ------------------------------------------------------------------ CPU profiles

/** Node flags that make a process write a CPU profile into `dir` when it exits (main thread and workers). */
export function cpuProfArgs(dir: string): string[] {
  return ['--cpu-prof', `--cpu-prof-dir=${dir}`];
}

export interface SteadyProfile {
  /** Profiles read (one per thread: `--cpu-prof` writes the main thread's and each worker's). */
  files: number;
  /** CPU ms sampled after the skipped start, main threads and workers. */
  mainMs: number;
  workerMs: number;
  /** The main threads' frames with the most self time (native leaves named with their JS caller). */
  main: { frame: string; selfMs: number; percent: number }[];
}

/**
 * Self time per frame in the main threads of the processes whose profiles are in `dir` (file names
 * CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0 is the main one), counting only samples
 * taken `skipMs` or more after each profile began, so that start-up (module loading, model sessions) is
 * left out and the figure is the steady state under load.
 */
export function steadyProfile(dir: string, skipMs: number, limit = 15): SteadyProfile {
  const self = new Map<string, number>();
  let mainMs = 0;
  let workerMs = 0;
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  for (const f of files) {
    const isMain = f.split('.')[4] === '0';
    const { p, byId, parent } = loadProfile(join(dir, f));
    let t = 0;
    for (let i = 0; i < p.samples.length; i++) {
      const dt = (p.timeDeltas[i] ?? 0) / 1000;
      t += dt;
      if (t < skipMs) continue;
      const n = byId.get(p.samples[i]);
      if (!n || n.callFrame.functionName === '(idle)' || n.callFrame.functionName === '(program)') continue;
      if (!isMain) {
        workerMs += dt;
        continue;
      }
      mainMs += dt;
      const key = frameKey(n, parent, 3);
      self.set(key, (self.get(key) ?? 0) + dt);
    }
  }
  const main = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([frame, ms]) => ({
      frame,
      selfMs: Math.round(ms),
      percent: Math.round((1000 * ms) / mainMs) / 10,
    }));
  return { files: files.length, mainMs: Math.round(mainMs), workerMs: Math.round(workerMs), main };
}

/**
 * Waits (up to `maxMs`) until no node holds pending requests, waiting certificates or inputs at its model
 * from the last step: a node whose model fell behind would otherwise go on inferring into the next step
 * (before the inputs of executed requests were dropped unrun, node 0 of the e2e group ended a 15 s closed
 * loop ~40 inputs behind, ~1 s of a core spent during whatever ran next, the baseline's rows included).
 */
export async function settleNodes(
  apis: string[],
  fetchImpl: typeof fetch = fetch,
  maxMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + maxMs;
  await sleep(200);
  for (;;) {
    let pending = 0;
    for (const api of apis) {
      try {
        const r = await fetchImpl(`${api}/v1/status`);
        const s = (await r.json()) as {
          pendingRequests?: number;
          waitingForCertificates?: number;
          inferring?: number;
        };
        pending += (s.pendingRequests ?? 0) + (s.waitingForCertificates ?? 0) + (s.inferring ?? 0);
      } catch {}
    }
    if (pending === 0 || Date.now() > deadline) return;
    await sleep(200);
  }
}

export interface NodeCounters {
  /** View changes: the most any node counted (dropbear_view_changes_total). */
  viewChanges: number;
  /** Node 0's executed consensus batches and the entries in them. */
  batches: number;
  entries: number;
  /** Requests refused with OVERLOADED, all nodes together (a refused request counted again at each retry). */
  overloadRefusals: number;
}

/** Counters from the nodes' /metrics (NaN where a node does not answer). */
export async function nodeCounters(apis: string[], fetchImpl: typeof fetch = fetch): Promise<NodeCounters> {
  const texts = await Promise.all(
    apis.map((a) =>
      fetchImpl(`${a}/metrics`)
        .then((r) => r.text())
        .catch(() => ''),
    ),
  );
  /** A sample's value: the first series of `name`, or the one with exactly `labels` (e.g. 'reason="X"'). */
  const get = (text: string, name: string, labels?: string) =>
    Number(
      new RegExp(`^${name}${labels ? `\\{${labels}\\}` : '(?:\\{[^}]*\\})?'} (\\S+)$`, 'm').exec(text)?.[1] ??
        Number.NaN,
    );
  return {
    viewChanges: Math.max(...texts.map((t) => get(t, 'dropbear_view_changes_total'))),
    batches: get(texts[0], 'dropbear_consensus_batch_size_count'),
    entries: get(texts[0], 'dropbear_consensus_batch_size_sum'),
    // A node that does not answer counts none (the step's failures say what happened).
    overloadRefusals: texts.reduce(
      (a, t) => a + (get(t, 'dropbear_requests_rejected_total', 'reason="OVERLOADED"') || 0),
      0,
    ),
  };
}
