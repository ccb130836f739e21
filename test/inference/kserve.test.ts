/**
 * The Open Inference Protocol end to end: `dropbear serve-model` runs in real child processes (mobilenet
 * with a dynamic batch, shufflenet with its batch fixed at 1, MNIST from a store), and RemoteBackend and
 * plain HTTP requests talk to them over TCP on 127.0.0.1. The remote answers are checked against a local
 * InferenceEngine on real validation images.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { InferenceEngine } from '../../src/inference/engine.ts';
import { topK } from '../../src/inference/postprocess.ts';
import { encodeTensorInput, toHalf } from '../../src/inference/preprocess.ts';
import { RemoteBackend } from '../../src/inference/remote.ts';
import { importModels } from '../../src/inference/store.ts';
import { DropbearError, type Result } from '../../src/protocol/index.ts';
import { MODELS_DIR, VAL_DIR } from '../shared.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MODELS = MODELS_DIR;
const VAL = VAL_DIR;
const MNV2 = catalogByName('mobilenetv2-12-int8')!;
const SHUFFLE = catalogByName('shufflenet-v2-12-qdq')!;
const MNIST = catalogByName('mnist-winml')!;
const ITEM = 3 * 224 * 224;

interface Served {
  child: ChildProcess;
  url: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children: ChildProcess[] = [];

function serve(args: string[], o: { ipc?: boolean } = {}): Promise<Served> {
  const child = spawn(process.execPath, ['bin/dropbear.mjs', 'serve-model', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe', ...(o.ipc ? (['ipc'] as const) : [])],
  });
  children.push(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(
      () => reject(new Error(`serve-model did not start within 50 s: ${err}`)),
      50_000,
    );
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1], exited });
      }
    });
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`serve-model exited with ${code} before listening: ${err}`));
    });
  });
}

function top1(r: Result): number {
  if (r.kind !== 'class') throw new Error('expected a class result');
  return r.top[0].label;
}

async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof DropbearError) return e.code;
    throw e;
  }
  throw new Error('expected a DropbearError');
}

/** POST a body to a URL; returns status, headers and the body bytes. */
async function post(url: string, body: string | Uint8Array, headers: Record<string, string> = {}) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : Buffer.from(body),
  });
  return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
}

/** An OIP binary body: JSON, then the binary parts. */
function binaryBody(json: unknown, parts: Uint8Array[]): { body: Buffer; headers: Record<string, string> } {
  const head = Buffer.from(JSON.stringify(json));
  return {
    body: Buffer.concat([head, ...parts]),
    headers: {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(head.length),
    },
  };
}

function f32bytes(x: Float32Array): Buffer {
  return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
}

let mnv2: Served;
let shuffle: Served;
let mnist: Served;
let engine: InferenceEngine;
let home: string;
const images: { file: string; bytes: Uint8Array }[] = [];

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'dropbear-kserve-'));
  await importModels(join(MODELS, 'mnist-winml.onnx'), home);
  const files = readdirSync(VAL)
    .filter((f) => f.endsWith('.JPEG'))
    .sort();
  for (let i = 0; i < files.length && images.length < 20; i += 15)
    images.push({ file: files[i], bytes: new Uint8Array(readFileSync(join(VAL, files[i]))) });
  [mnv2, shuffle, mnist, engine] = await Promise.all([
    serve([join(MODELS, 'mobilenetv2-12-int8.onnx'), '--port', '0', '--body-limit-mib', '8']),
    serve([join(MODELS, 'shufflenet-v2-12-qdq.onnx'), '--port', '0']),
    serve(['mnist-winml', '--home', home, '--port', '0']),
    InferenceEngine.start({ modelPath: join(MODELS, 'mobilenetv2-12-int8.onnx'), spec: MNV2 }),
  ]);
});

afterAll(async () => {
  await engine?.close();
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) continue;
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (home) rmSync(home, { recursive: true, force: true });
});

describe('serve-model endpoints', () => {
  it('answers health, server metadata and model metadata as the protocol gives them', async () => {
    const get = async (path: string) => {
      const r = await fetch(`${mnv2.url}${path}`);
      return { status: r.status, json: (await r.json()) as Record<string, unknown> };
    };
    expect(await get('/v2/health/live')).toEqual({ status: 200, json: { live: true } });
    expect(await get('/v2/health/ready')).toEqual({ status: 200, json: { ready: true } });
    const server = await get('/v2');
    expect(server.status).toBe(200);
    expect(server.json.name).toBe('dropbear');
    expect(typeof server.json.version).toBe('string');
    expect(server.json.extensions).toContain('binary_tensor_data');

    const meta = {
      name: 'mobilenetv2-12-int8',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 3, 224, 224] }],
      outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 1000] }],
      parameters: { sha256: MNV2.sha256 },
    };
    expect(await get('/v2/models/mobilenetv2-12-int8')).toEqual({ status: 200, json: meta });
    expect(await get('/v2/models/mobilenetv2-12-int8/versions/1')).toEqual({ status: 200, json: meta });
    expect(await get('/v2/models/mobilenetv2-12-int8/ready')).toEqual({
      status: 200,
      json: { name: 'mobilenetv2-12-int8', ready: true },
    });
    expect(await get('/v2/models/mobilenetv2-12-int8/versions/1/ready')).toMatchObject({ status: 200 });

    for (const path of ['/v2/models/resnet50', '/v2/models/mobilenetv2-12-int8/versions/2', '/v2/nothing']) {
      const r = await get(path);
      expect(r.status).toBe(404);
      expect(typeof r.json.error).toBe('string');
    }
    // The fixed-batch model is still served with a dynamic batch: the server splits batches itself.
    const s = await (await fetch(`${shuffle.url}/v2/models/shufflenet-v2-12-qdq`)).json();
    expect(s.inputs[0].shape).toEqual([-1, 3, 224, 224]);
  });

  it('serves a model named from the store (--home)', async () => {
    const meta = await (await fetch(`${mnist.url}/v2/models/mnist-winml`)).json();
    expect(meta.inputs).toEqual([{ name: 'Input3', datatype: 'FP32', shape: [-1, 1, 28, 28] }]);
    expect(meta.parameters.sha256).toBe(MNIST.sha256);
    const remote = await RemoteBackend.connect({
      url: mnist.url,
      model: 'mnist-winml',
      digest: MNIST.sha256,
    });
    const digit = encodeTensorInput({
      dtype: 'float32',
      dims: [1, 1, 28, 28],
      data: new Uint8Array(4 * 784),
    });
    const r = await remote.classify(digit);
    expect(r.kind).toBe('class');
    expect(await remote.ready()).toBe(true);
    await remote.close();
  });
});

describe('RemoteBackend against serve-model', () => {
  it('gives the local top-1 on 20 validation images, in JSON and in binary', async () => {
    // The JSON calls one at a time. Each carries a ~2.9 MB body of 150,528 numbers, encoded here and parsed by
    // serve-model, each on a main thread (0.3-0.9 s a call alone on a loaded 2-core machine, 30-80 ms binary),
    // and a call's timeout runs from its turn, through the server's parsing of every body ahead of it. With
    // the default 8 in flight beside the binary backend's 8, the slowest call took 2.5 s (3.2 s for a binary
    // one behind them) at load average 7-10 and 10.9 s at 12-15, and once past the 20 s timeout in CI; one
    // at a time, 0.63 s (0.76 s) and 1.8 s (2.3 s), while the 60 calls took as long in all (7.6 s against
    // 7.2 s, 24.5 against 24.1).
    const json = await RemoteBackend.connect({
      url: mnv2.url,
      model: 'mobilenetv2-12-int8',
      digest: MNV2.sha256,
      useBinary: false,
      timeoutMs: 20_000,
      maxInFlight: 1,
    });
    const bin = await RemoteBackend.connect({
      url: mnv2.url,
      model: 'mobilenetv2-12-int8',
      digest: MNV2.sha256,
      timeoutMs: 20_000,
    });
    expect(json.binary).toBe(false);
    expect(bin.binary).toBe(true);
    expect(bin.serverDigest).toBe(MNV2.sha256);
    expect(bin.digest).toBe(engine.digest);
    const rows = await Promise.all(
      images.map(async ({ bytes }) => {
        const local = await engine.classify(bytes);
        const x = await engine.preprocess(bytes);
        const [j, b, c] = await Promise.all([json.scores(x), bin.scores(x), bin.classify(bytes)]);
        return {
          local: top1(local),
          json: topK(j, 1)[0],
          bin: topK(b, 1)[0],
          classify: top1(c),
        };
      }),
    );
    for (const r of rows)
      expect(r).toEqual({ local: r.local, json: r.local, bin: r.local, classify: r.local });
    expect(json.stats()).toMatchObject({ items: 20, failures: 0, inFlight: 0, binary: false });
    expect(bin.stats()).toMatchObject({ items: 40, failures: 0, inFlight: 0, binary: true });
    // Binary tensors are far smaller on the wire than JSON numbers.
    expect(bin.stats().bytesSent).toBeLessThan(json.stats().bytesSent / 2);
    // An input no longer wanted is dropped before decoding, or after it, before the server is called.
    const requests = bin.stats().requests;
    let asked = 0;
    const skip = async (wanted: () => boolean) =>
      bin.classify(images[0].bytes, { wanted }).catch((e: DropbearError) => e.code);
    expect(await skip(() => false)).toBe('INFERENCE_SKIPPED');
    expect(await skip(() => asked++ === 0)).toBe('INFERENCE_SKIPPED');
    expect(asked).toBe(2);
    expect(bin.stats()).toMatchObject({ requests, skipped: 2, items: 40 });
    await Promise.all([json.close(), bin.close()]);
  });

  it('takes encoded images as BYTES (base64 in JSON, length-prefixed in binary)', async () => {
    const infer = `${mnv2.url}/v2/models/mobilenetv2-12-int8/infer`;
    const some = images.slice(0, 3);
    const local = await Promise.all(some.map(({ bytes }) => engine.classify(bytes)));
    const viaJson = await post(
      infer,
      JSON.stringify({
        id: 'r1',
        inputs: [
          {
            name: 'input',
            datatype: 'BYTES',
            shape: [some.length],
            data: some.map(({ bytes }) => Buffer.from(bytes).toString('base64')),
          },
        ],
      }),
    );
    expect(viaJson.status).toBe(200);
    const res = JSON.parse(viaJson.body.toString());
    expect(res).toMatchObject({ id: 'r1', model_name: 'mobilenetv2-12-int8', model_version: '1' });
    expect(res.outputs[0]).toMatchObject({ name: 'output', datatype: 'FP32', shape: [3, 1000] });
    const data = res.outputs[0].data as number[];
    some.forEach((_, i) => {
      expect(topK(data.slice(i * 1000, (i + 1) * 1000), 1)[0]).toBe(top1(local[i]));
    });

    const parts = some.flatMap(({ bytes }) => {
      const len = Buffer.alloc(4);
      len.writeUInt32LE(bytes.length);
      return [len, Buffer.from(bytes)];
    });
    const size = parts.reduce((a, p) => a + p.length, 0);
    const b = binaryBody(
      {
        inputs: [{ name: 'input', datatype: 'BYTES', shape: [3], parameters: { binary_data_size: size } }],
        parameters: { binary_data_output: true },
      },
      parts,
    );
    const viaBin = await post(infer, b.body, b.headers);
    expect(viaBin.status).toBe(200);
    const headLen = Number(viaBin.headers.get('inference-header-content-length'));
    const head = JSON.parse(viaBin.body.subarray(0, headLen).toString());
    expect(head.outputs[0]).toMatchObject({ shape: [3, 1000], parameters: { binary_data_size: 12_000 } });
    const out = new Float32Array(
      viaBin.body.buffer.slice(viaBin.body.byteOffset + headLen, viaBin.body.byteOffset + viaBin.body.length),
    );
    expect(out.length).toBe(3000);
    some.forEach((_, i) => {
      expect(topK(out.subarray(i * 1000, (i + 1) * 1000), 1)[0]).toBe(top1(local[i]));
    });
  });

  it('takes FP16 tensors in binary', async () => {
    const x = await engine.preprocess(images[0].bytes);
    const half = toHalf(x);
    const b = binaryBody(
      {
        inputs: [
          {
            name: 'input',
            datatype: 'FP16',
            shape: [1, 3, 224, 224],
            parameters: { binary_data_size: 2 * ITEM },
          },
        ],
        outputs: [{ name: 'output', parameters: { binary_data: true } }],
      },
      [Buffer.from(half.buffer, half.byteOffset, half.byteLength)],
    );
    const r = await post(`${mnv2.url}/v2/models/mobilenetv2-12-int8/infer`, b.body, b.headers);
    expect(r.status).toBe(200);
    const headLen = Number(r.headers.get('inference-header-content-length'));
    const out = new Float32Array(
      r.body.buffer.slice(r.body.byteOffset + headLen, r.body.byteOffset + r.body.length),
    );
    expect(out.length).toBe(1000);
    expect(topK(out, 1)[0]).toBe(top1(await engine.classify(images[0].bytes)));
  });

  it('runs N=3 on a model whose batch dimension is fixed at 1', async () => {
    const xs = await Promise.all(images.slice(3, 6).map(({ bytes }) => engine.preprocess(bytes)));
    const flat = new Float32Array(3 * ITEM);
    xs.forEach((x, i) => {
      flat.set(x, i * ITEM);
    });
    const b = binaryBody(
      {
        inputs: [
          {
            name: 'input',
            datatype: 'FP32',
            shape: [3, 3, 224, 224],
            parameters: { binary_data_size: 12 * ITEM },
          },
        ],
      },
      [f32bytes(flat)],
    );
    const r = await post(`${shuffle.url}/v2/models/shufflenet-v2-12-qdq/infer`, b.body, b.headers);
    expect(r.status).toBe(200);
    const res = JSON.parse(r.body.toString());
    expect(res.outputs[0].shape).toEqual([3, 1000]);
    const remote = await RemoteBackend.connect({
      url: shuffle.url,
      model: 'shufflenet-v2-12-qdq',
      digest: SHUFFLE.sha256,
    });
    const batch = await remote.scoresBatch(xs);
    for (let i = 0; i < 3; i++) {
      const single = await remote.scores(xs[i]);
      const fromJson = (res.outputs[0].data as number[]).slice(i * 1000, (i + 1) * 1000);
      expect(topK(batch[i], 1)[0]).toBe(topK(single, 1)[0]);
      expect(topK(fromJson, 1)[0]).toBe(topK(single, 1)[0]);
    }
    await remote.close();
  });

  it('refuses bad requests with 4xx and a message, and keeps serving', async () => {
    const infer = `${mnv2.url}/v2/models/mobilenetv2-12-int8/infer`;
    const input = (over: Record<string, unknown>) =>
      JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 3, 224, 224], ...over }] });
    const badBinary = binaryBody(
      {
        inputs: [
          { name: 'input', datatype: 'FP32', shape: [1, 3, 224, 224], parameters: { binary_data_size: 8 } },
        ],
      },
      [Buffer.alloc(8)],
    );
    const cases: [string, Promise<{ status: number; body: Buffer }>, number, RegExp][] = [
      ['malformed JSON', post(infer, '{"inputs": [{"name": "input",'), 400, /JSON does not parse/],
      ['not an object', post(infer, '[1, 2, 3]'), 400, /JSON object/],
      ['no inputs', post(infer, '{"outputs": []}'), 400, /exactly one input/],
      [
        'wrong shape',
        post(infer, input({ shape: [1, 3, 224, 223], data: [0] })),
        400,
        /shape \[1, 3, 224, 223\]/,
      ],
      [
        'wrong rank',
        post(infer, input({ shape: [3, 224, 224], data: [0] })),
        400,
        /takes \[N, 3, 224, 224\]/,
      ],
      ['wrong datatype', post(infer, input({ datatype: 'INT64', data: [0] })), 400, /datatype "INT64"/],
      ['too few values', post(infer, input({ data: [1, 2, 3] })), 400, /holds 3 elements/],
      ['a string among numbers', post(infer, input({ data: ['x'] })), 400, /string where a number/],
      ['unknown input name', post(infer, input({ name: 'data', data: [0] })), 400, /unknown input "data"/],
      ['too many items', post(infer, input({ shape: [65, 3, 224, 224], data: [0] })), 400, /limit is 64/],
      [
        'undecodable image',
        post(infer, input({ datatype: 'BYTES', shape: [1], data: ['aGVsbG8='] })),
        400,
        /INPUT_/,
      ],
      [
        'unknown output',
        post(infer, JSON.stringify({ inputs: [{ name: 'input' }], outputs: [{ name: 'logits' }] })),
        400,
        /unknown output "logits"/,
      ],
      [
        'unknown model',
        post(`${mnv2.url}/v2/models/resnet50/infer`, input({ data: [0] })),
        404,
        /unknown model/,
      ],
      [
        'unknown version',
        post(`${mnv2.url}/v2/models/mobilenetv2-12-int8/versions/9/infer`, input({ data: [0] })),
        404,
        /no version 9/,
      ],
      [
        'binary header past the body',
        post(infer, input({ parameters: { binary_data_size: 12 * ITEM } }), {
          'inference-header-content-length': '999999',
        }),
        400,
        /inference-header-content-length/,
      ],
      [
        'binary size that does not fit the shape',
        post(infer, badBinary.body, badBinary.headers),
        400,
        /8 bytes of binary data/,
      ],
      ['a body over the limit', post(infer, Buffer.alloc(9 * 2 ** 20)), 413, /too large/],
    ];
    for (const [what, p, status, message] of cases) {
      const r = await p;
      const err = JSON.parse(r.body.toString()).error;
      expect({ what, status: r.status, err }).toEqual({ what, status, err: expect.stringMatching(message) });
    }
    // Still serving.
    expect((await fetch(`${mnv2.url}/v2/health/ready`)).status).toBe(200);
    const x = await engine.preprocess(images[0].bytes);
    const ok = await post(infer, input({ data: Array.from(x) }));
    expect(ok.status).toBe(200);
  });
});

describe('RemoteBackend errors', () => {
  it('names an unknown model, a wrong digest and a spec that does not fit', async () => {
    expect(
      await errorCode(RemoteBackend.connect({ url: mnv2.url, model: 'resnet50', digest: MNV2.sha256 })),
    ).toBe('REMOTE_MODEL_NOT_FOUND');
    expect(
      await errorCode(
        RemoteBackend.connect({ url: mnv2.url, model: 'mobilenetv2-12-int8', digest: SHUFFLE.sha256 }),
      ),
    ).toBe('MODEL_DIGEST_MISMATCH');
    expect(
      await errorCode(RemoteBackend.connect({ url: mnist.url, model: 'mnist-winml', digest: MNV2.sha256 })),
    ).toBe('MODEL_DIGEST_MISMATCH');
    expect(
      await errorCode(RemoteBackend.connect({ url: 'not a url', model: 'm', digest: MNV2.sha256 })),
    ).toBe('CONFIG_INVALID');
  });

  it('times out on a server that accepts and never answers', async () => {
    const sockets = new Set<Socket>();
    const silent = createNetServer((s) => {
      sockets.add(s);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { port } = silent.address() as AddressInfo;
    // By its own 300 ms timer (the message says so), not the 10 s default or undici's 300 s headers timeout.
    await expect(
      RemoteBackend.connect({
        url: `http://127.0.0.1:${port}`,
        model: 'm',
        digest: MNV2.sha256,
        timeoutMs: 300,
      }),
    ).rejects.toMatchObject({ code: 'REMOTE_TIMEOUT', message: expect.stringContaining('within 300 ms') });
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent.close(r));
  });

  it('reports bad and missing answers from a server that misbehaves after connecting', async () => {
    let mode: 'shape' | 'text' | 'silent' | 'error' = 'shape';
    const meta = {
      name: 'm',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 3, 224, 224] }],
      outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 1000] }],
    };
    const fake: Server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.url === '/v2') return res.end(JSON.stringify({ name: 'fake', version: '0', extensions: [] }));
        if (req.url === '/v2/models/m') return res.end(JSON.stringify(meta));
        if (mode === 'silent') return;
        if (mode === 'text') return res.end('<html>proxy error</html>');
        if (mode === 'error') {
          res.statusCode = 500;
          return res.end(JSON.stringify({ error: 'out of memory' }));
        }
        res.end(
          JSON.stringify({
            outputs: [{ name: 'output', datatype: 'FP32', shape: [1, 10], data: [0, 1, 2] }],
          }),
        );
      });
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
    const remote = await RemoteBackend.connect({ url, model: 'm', digest: MNV2.sha256, timeoutMs: 400 });
    expect(remote.binary).toBe(false);
    expect(remote.serverDigest).toBeUndefined();
    const x = new Float32Array(ITEM);
    expect(await errorCode(remote.scores(x))).toBe('REMOTE_BAD_RESPONSE');
    mode = 'text';
    expect(await errorCode(remote.scores(x))).toBe('REMOTE_BAD_RESPONSE');
    mode = 'error';
    expect(await errorCode(remote.scores(x))).toBe('REMOTE_BAD_RESPONSE');
    mode = 'silent';
    expect(await errorCode(remote.scores(x))).toBe('REMOTE_TIMEOUT');
    expect(await errorCode(remote.scores(new Float32Array(10)))).toBe('INPUT_SHAPE');
    expect(remote.stats()).toMatchObject({ requests: 4, failures: 4, timeouts: 1, inFlight: 0 });
    await remote.close();
    expect(await errorCode(remote.scores(x))).toBe('ENGINE_CLOSED');
    fake.closeAllConnections();
    await new Promise((r) => fake.close(r));
  });

  // The bench's baseline servers (bench/lib/extra.ts, serveModel) ran on for good after `kill -9` of the
  // bench; a node started so already stopped (src/cli/node.ts).
  it('started with an IPC channel, it stops when the channel closes (its parent is gone)', async () => {
    const s = await serve([`${MODELS}/mobilenet_v1_0.25_128_quant.onnx`, '--port', '0'], { ipc: true });
    s.child.disconnect();
    const timer = setTimeout(() => s.child.kill('SIGKILL'), 10_000);
    try {
      expect(await s.exited).toEqual({ code: 0, signal: null });
    } finally {
      clearTimeout(timer);
    }
  });

  it('stops cleanly on SIGTERM, after which the backend reports REMOTE_UNAVAILABLE', async () => {
    const remote = await RemoteBackend.connect({
      url: shuffle.url,
      model: 'shufflenet-v2-12-qdq',
      digest: SHUFFLE.sha256,
    });
    const x = await engine.preprocess(images[0].bytes);
    expect((await remote.scores(x)).length).toBe(1000);
    process.kill(shuffle.child.pid!, 'SIGTERM');
    expect(await shuffle.exited).toEqual({ code: 0, signal: null });
    expect(await errorCode(remote.scores(x))).toBe('REMOTE_UNAVAILABLE');
    expect(
      await errorCode(
        RemoteBackend.connect({ url: shuffle.url, model: 'shufflenet-v2-12-qdq', digest: SHUFFLE.sha256 }),
      ),
    ).toBe('REMOTE_UNAVAILABLE');
    await remote.close();
  });
});
