/**
 * serve-model's HTTP edge (src/inference/kserve-server.ts) over a real socket on 127.0.0.1, with a fake
 * engine (no model): the BYTES base64 check in linear time, fastify's own errors and HTTP that does not
 * parse in the server's error body (`{"error": "CODE: message", "code": "CODE"}`), and the request timeout;
 * what OIP clients send (KServe's `model_name`, tritonclient's `classification`), and every error's code.
 */

import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { createKServeServer, isBase64Element, type ServedEngine } from '../../src/inference/kserve-server.ts';
import { DropbearError } from '../../src/protocol/index.ts';
import { RawConn, type RawResponse, rawExchange, unparsableHttpCases } from '../raw-http.ts';

const SPEC = catalogByName('mnist-winml')!;
const REQUEST_TIMEOUT = 500;
const seen: number[] = [];

const engine: ServedEngine = {
  spec: SPEC,
  digest: SPEC.sha256,
  // A finite input that drives the (fake) model's output to NaN: the first element 7777.
  // The first element 5555: the engine is overloaded.
  scores: async (x: Float32Array) => {
    if (x[0] === 5555) throw new DropbearError('OVERLOADED', 'the queue is full');
    return new Float32Array(10).fill(x[0] === 7777 ? Number.NaN : 0);
  },
  scoresFor: async (b: Uint8Array) => {
    seen.push(b.length);
    return new Float32Array(10).fill(b.length);
  },
};

let app: FastifyInstance;
let port: number;

beforeAll(async () => {
  app = createKServeServer({ engine, requestTimeoutMs: REQUEST_TIMEOUT });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
});
afterAll(async () => {
  await app.close();
});

const inferUrl = `/v2/models/${SPEC.name}/infer`;
/** The model's one input as JSON: an FP32 image, `first` then zeros. */
const mnistInput = (first: number) => ({
  name: SPEC.input.name,
  datatype: 'FP32',
  shape: [1, 1, 28, 28],
  data: [first, ...new Array(783).fill(0)],
});
/** POSTs `body` as JSON to the model's infer route. */
const postInfer = (body: unknown) =>
  app.inject({
    method: 'POST',
    url: inferUrl,
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  });

function bytesRequest(element: string): string {
  return JSON.stringify({
    inputs: [{ name: SPEC.input.name, datatype: 'BYTES', shape: [1], data: [element] }],
  });
}

async function infer(element: string): Promise<{ status: number; body: { error?: string } }> {
  const r = await fetch(`http://127.0.0.1:${port}${inferUrl}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: bytesRequest(element),
  });
  return { status: r.status, body: (await r.json()) as { error?: string } };
}

/** The server's error body, `{"error": "CODE: ..."}`, at `status`. */
function expectError(res: RawResponse | null, code: string, status: number): void {
  expect(res).not.toBeNull();
  expect(res!.status).toBe(status);
  expect(res!.headers).toMatch(/content-type: application\/json/);
  const body = JSON.parse(res!.body) as { error: string; code: string };
  expect(Object.keys(body)).toEqual(['error', 'code']);
  expect(body.code).toBe(code);
  expect(body.error.startsWith(`${code}: `)).toBe(true);
}

async function stillServes(): Promise<void> {
  const { res } = await rawExchange(
    port,
    'GET /v2/health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
  );
  expect(res?.status).toBe(200);
}

describe('BYTES base64 check', () => {
  it('accepts and refuses exactly what the old regex did', () => {
    const old = (s: string) => /^[A-Za-z0-9+/\r\n]*={0,2}\s*$/.test(s);
    const chars = fc.constantFrom(
      'A',
      'z',
      '0',
      '+',
      '/',
      '=',
      '\r',
      '\n',
      ' ',
      '\t',
      '\u00a0',
      '!',
      '-',
      '_',
    );
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 24 }), (cs) => {
        const s = cs.join('');
        expect(isBase64Element(s)).toBe(old(s));
      }),
      { numRuns: 5_000 },
    );
  });

  it('60,000 and 200,000 newlines then "!": 400 at once (the old check took seconds, then minutes)', async () => {
    for (const n of [60_000, 200_000]) {
      // CPU time, not wall time: the work of the whole exchange (client and server are this process), which
      // a machine that stalls does not inflate. A few ms here; the old check's backtracking, seconds.
      const cpu0 = process.cpuUsage();
      const r = await infer(`${'\n'.repeat(n)}!`);
      const cpu = process.cpuUsage(cpu0);
      expect(r.status).toBe(400);
      expect(r.body.error).toBe('a BYTES element is not base64');
      expect((cpu.user + cpu.system) / 1000).toBeLessThan(1_000);
    }
    await stillServes();
  });

  it('a length or padding no encoding gives, or bits set past the last byte: 400 (they were decoded as far as they went)', async () => {
    seen.length = 0;
    for (const element of ['AAAAA', 'AAAA=', 'AA=', 'AB==', 'AAB=', 'AAAAB']) {
      const r = await infer(element);
      expect([element, r.status, r.body.error]).toEqual([element, 400, 'a BYTES element is not base64']);
    }
    expect(seen).toEqual([]);
    for (const element of ['AA==', 'AAE=', 'AQ', ''])
      expect((await infer(element)).status, element).toBe(200);
  });

  it('base64 with line breaks and trailing whitespace still reaches the engine', async () => {
    const bytes = Buffer.from('hello, engine: some bytes');
    const b64 = bytes.toString('base64');
    const wrapped = `${b64.slice(0, 8)}\r\n${b64.slice(8)}\n \t`;
    seen.length = 0;
    const r = await infer(wrapped);
    expect(r.status).toBe(200);
    expect(seen).toEqual([bytes.length]);
  });
});

describe('error messages', () => {
  it('are cut to 4 KiB where they quote the request (a 200 KB input, datatype or output name)', async () => {
    const junk = 'x'.repeat(200_000);
    const input = { name: SPEC.input.name, datatype: 'BYTES', shape: [1], data: ['AAAA'] };
    for (const body of [
      { inputs: [{ ...input, name: junk }] },
      { inputs: [{ ...input, datatype: junk }] },
      { outputs: [{ name: junk }], inputs: [input] },
    ]) {
      const r = await fetch(`http://127.0.0.1:${port}${inferUrl}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(r.status).toBe(400);
      const { error } = (await r.json()) as { error: string };
      expect(Buffer.byteLength(error)).toBeLessThanOrEqual(4096);
      expect(error.endsWith('…')).toBe(true);
    }
  });

  // The node answers INPUT_TOO_LARGE with 413 (api.ts); serve-model answered 400. The whole
  // "CODE: message" string is what is cut to 4 KiB.
  it('an engine\'s INPUT_TOO_LARGE is 413, as on the node; its "CODE: message" cut whole to 4 KiB', async () => {
    const server = createKServeServer({
      engine: {
        ...engine,
        scoresFor: async (b: Uint8Array) => {
          throw new DropbearError('INPUT_TOO_LARGE', b.length > 3 ? 'y'.repeat(10_000) : 'image too large');
        },
      },
    });
    try {
      for (const element of ['AAAA', 'AAAAAAAA']) {
        const r = await server.inject({
          method: 'POST',
          url: inferUrl,
          headers: { 'content-type': 'application/json' },
          payload: bytesRequest(element),
        });
        expect(r.statusCode).toBe(413);
        const { error } = r.json() as { error: string };
        expect(error.startsWith('INPUT_TOO_LARGE: ')).toBe(true);
        expect(Buffer.byteLength(error)).toBeLessThanOrEqual(4096);
      }
    } finally {
      await server.close();
    }
  });

  it('the 404 of an unknown path, which quotes the URL, is cut to 4 KiB too (a 12 KB path)', async () => {
    const r = await fetch(`http://127.0.0.1:${port}/v2/${'x'.repeat(12_000)}`);
    expect(r.status).toBe(404);
    const { error } = (await r.json()) as { error: string };
    expect(error.startsWith('no such endpoint: GET /v2/xxx')).toBe(true);
    expect(Buffer.byteLength(error)).toBeLessThanOrEqual(4096);
    expect(error.endsWith('…')).toBe(true);
  });
});

describe('JSON numbers the datatype cannot hold', () => {
  // JSON has no Infinity: a number beyond FP32's range (or FP16's, 65504) became ±Infinity on the way in,
  // and the model answered 200 with `null` for every output value (mnist-winml, 1e39 in one pixel).
  const post = async (datatype: string, first: string) => {
    const r = await fetch(`http://127.0.0.1:${port}${inferUrl}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: `{"inputs":[{"name":"${SPEC.input.name}","datatype":"${datatype}","shape":[1,1,28,28],"data":[${first}${',0'.repeat(783)}]}]}`,
    });
    return { status: r.status, body: (await r.json()) as { error?: string } };
  };

  it.each([
    ['FP32', '1e39'],
    ['FP32', '-1e400'],
    ['FP16', '65520'],
    ['FP16', '-1e6'],
  ])('%s %s: 400 naming the element', async (datatype, first) => {
    const r = await post(datatype, first);
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(new RegExp(`"data" element 0 is outside the range of ${datatype}`));
  });

  // Sent as bits, a NaN or an infinity has no JSON to be refused by: it was run, non-finite outputs out.
  it.each([
    ['FP32', 3, (b: Buffer) => b.writeFloatLE(Number.NaN, 3 * 4), 'NaN'],
    ['FP32', 0, (b: Buffer) => b.writeFloatLE(Number.NEGATIVE_INFINITY, 0), '-Infinity'],
    ['FP16', 5, (b: Buffer) => b.writeUInt16LE(0x7c00, 5 * 2), 'Infinity'],
  ] as const)('%s binary data with element %i not finite: 400 naming it', async (datatype, at, set, what) => {
    const bin = Buffer.alloc(784 * (datatype === 'FP32' ? 4 : 2));
    set(bin);
    const json = Buffer.from(
      JSON.stringify({
        inputs: [
          {
            name: SPEC.input.name,
            datatype,
            shape: [1, 1, 28, 28],
            parameters: { binary_data_size: bin.length },
          },
        ],
      }),
    );
    const r = await fetch(`http://127.0.0.1:${port}${inferUrl}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/octet-stream',
        'inference-header-content-length': String(json.length),
      },
      body: Buffer.concat([json, bin]),
    });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: string }).error).toBe(
      `input ${SPEC.input.name}: binary element ${at} is ${what}, not a finite number`,
    );
  });

  // JSON.stringify wrote null for each NaN: a 200 whose scores a client reads as missing or 0.
  it('an output the model made NaN from finite input: 500 OUTPUT_NOT_FINITE in JSON, the bits in binary data', async () => {
    const body = (binary: boolean) =>
      JSON.stringify({
        inputs: [mnistInput(7777)],
        ...(binary ? { parameters: { binary_data_output: true } } : {}),
      });
    const url = `http://127.0.0.1:${port}${inferUrl}`;
    const headers = { 'content-type': 'application/json' };
    const json = await fetch(url, { method: 'POST', headers, body: body(false) });
    expect(json.status).toBe(500);
    expect(((await json.json()) as { error: string }).error).toBe(
      `OUTPUT_NOT_FINITE: output ${SPEC.output.name} element 0 is NaN, which JSON cannot carry; ask for the output as binary data (parameters "binary_data_output": true)`,
    );
    const bin = await fetch(url, { method: 'POST', headers, body: body(true) });
    expect(bin.status).toBe(200);
    const all = Buffer.from(await bin.arrayBuffer());
    const data = all.subarray(Number(bin.headers.get('inference-header-content-length')));
    expect(data.length).toBe(40);
    expect(Number.isNaN(data.readFloatLE(36))).toBe(true);
    // A finite output is served in JSON as before.
    const ok = await fetch(url, { method: 'POST', headers, body: body(false).replace('7777', '1') });
    expect(ok.status).toBe(200);
  });

  it('the largest finite values are still served', async () => {
    expect((await post('FP32', '3.4028234663852886e38')).status).toBe(200);
    expect((await post('FP16', '-65504')).status).toBe(200);
    await stillServes();
  });

  // An FP16 model takes FP32 data too (the engine converts it): a finite FP32 number beyond FP16's range
  // became ±Infinity in that conversion and was run (squeezenet1.1-fp16-winml, 70000 in one value).
  it('FP32 data beyond FP16 for an FP16 model, in JSON or binary: 400 naming the element', async () => {
    const half = catalogByName('squeezenet1.1-fp16-winml')!;
    const ran: number[] = [];
    const server = createKServeServer({
      engine: {
        spec: half,
        digest: half.sha256,
        scores: async () => {
          ran.push(1);
          return new Float32Array(1000);
        },
        scoresFor: async () => new Float32Array(1000),
      },
    });
    const size = 3 * 224 * 224;
    const url = `/v2/models/${half.name}/infer`;
    const input = { name: half.input.name, datatype: 'FP32', shape: [1, 3, 224, 224] };
    const json = (first: string) =>
      server.inject({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/json' },
        payload: `{"inputs":[{"name":"${half.input.name}","datatype":"FP32","shape":[1,3,224,224],"data":[${first}${',0'.repeat(size - 1)}]}]}`,
      });
    const binary = (at: number, v: number) => {
      const bin = Buffer.alloc(size * 4);
      bin.writeFloatLE(v, at * 4);
      const head = Buffer.from(
        JSON.stringify({ inputs: [{ ...input, parameters: { binary_data_size: bin.length } }] }),
      );
      return server.inject({
        method: 'POST',
        url,
        headers: {
          'content-type': 'application/octet-stream',
          'inference-header-content-length': String(head.length),
        },
        payload: Buffer.concat([head, bin]),
      });
    };
    try {
      const j = await json('70000');
      expect(j.statusCode).toBe(400);
      expect(j.json().error).toMatch(/"data" element 0 is outside the range of FP16/);
      const b = await binary(7, -1e5);
      expect(b.statusCode).toBe(400);
      expect(b.json().error).toMatch(/binary element 7 is -100000, outside the range of FP16/);
      expect(ran).toEqual([]);
      expect((await json('65504')).statusCode).toBe(200);
      expect((await binary(7, -65504)).statusCode).toBe(200);
    } finally {
      await server.close();
    }
  });
});

describe('a body of the wrong type', () => {
  // No ajv here (the body is parsed and checked by hand): nothing is coerced, unlike the node API's bodies
  // before 2026-12-06 (test/node/api-body-types.test.ts).
  const good = { name: SPEC.input.name, datatype: 'BYTES', shape: [1], data: ['AAAA'] };
  it.each([
    ['"shape": 1', { shape: 1 }, /"shape" must be an array of non-negative integers/],
    ['"shape": ["1"]', { shape: ['1'] }, /"shape" must be an array of non-negative integers/],
    ['"shape": [true]', { shape: [true] }, /"shape" must be an array of non-negative integers/],
    ['"name": ["<input>"]', { name: [SPEC.input.name] }, /unknown input \["/],
    ['"datatype": ["BYTES"]', { datatype: ['BYTES'] }, /has datatype \["BYTES"\]/],
    [
      '"binary_data_size": "4"',
      { data: undefined, parameters: { binary_data_size: '4' } },
      /binary_data_size must be/,
    ],
  ])('%s: 400 naming it, not coerced', async (_what, change, message) => {
    const r = await postInfer({ inputs: [{ ...good, ...change }] });
    expect(r.statusCode, r.body).toBe(400);
    expect((r.json() as { error: string }).error).toMatch(message);
  });

  // Fields beside the input: before 2026-12-06 (evening) these were ignored when of the wrong type (a
  // numeric id left out of the answer, a parameters string read as none, "true" as false).
  it.each([
    ['"id": 5', { id: 5 }, /"id" must be a string/],
    ['"parameters": "x"', { parameters: 'x' }, /the request: "parameters" must be an object/],
    [
      '"binary_data_output": "true"',
      { parameters: { binary_data_output: 'true' } },
      /binary_data_output must be true or false/,
    ],
    [
      'an input\'s "parameters": []',
      { inputs: [{ ...good, parameters: [] }] },
      /input .*"parameters" must be an object/,
    ],
    [
      'an output\'s "parameters": 1',
      { outputs: [{ name: SPEC.output.name, parameters: 1 }] },
      /output .*"parameters" must be an object/,
    ],
    [
      '"binary_data": 1',
      { outputs: [{ name: SPEC.output.name, parameters: { binary_data: 1 } }] },
      /binary_data must be true or false/,
    ],
  ])('%s: 400 naming it', async (_what, change, message) => {
    const r = await postInfer({ inputs: [good], ...change });
    expect(r.statusCode, r.body).toBe(400);
    expect((r.json() as { error: string }).error).toMatch(message);
  });

  it('an output named twice: 400 naming it (it was answered once, one output for two asked)', async () => {
    const r = await postInfer({
      inputs: [good],
      outputs: [{ name: SPEC.output.name }, { name: SPEC.output.name }],
    });
    expect(r.statusCode, r.body).toBe(400);
    expect((r.json() as { error: string }).error).toBe(`output "${SPEC.output.name}" is named twice`);
  });

  it.each([
    ['the request', { inputs: [good], ouputs: [] }, 'the request: unknown field "ouputs"'],
    ['an input', { inputs: [{ ...good, paramters: {} }] }, `input "${good.name}": unknown field "paramters"`],
    [
      'an output',
      { inputs: [good], outputs: [{ name: SPEC.output.name, binary: true }] },
      `output "${SPEC.output.name}": unknown field "binary"`,
    ],
  ])('a field the protocol does not have in %s: 400 naming it (it was ignored)', async (_, body, message) => {
    const r = await postInfer(body);
    expect(r.statusCode, r.body).toBe(400);
    expect((r.json() as { error: string }).error).toMatch(
      new RegExp(`^${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; `),
    );
  });

  // KServe's Python client (InferenceRESTClient, InferRequest.to_rest) puts "model_name" at the top of
  // every infer body: refused as an unknown field until 2026-12-07, so that client could not call at all.
  it('"model_name" at the top, as the KServe client sends it: served; another model 404, a number 400', async () => {
    const send = (extra: Record<string, unknown>) => postInfer({ id: 'k-1', ...extra, inputs: [good] });
    const ok = await send({ model_name: SPEC.name });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json()).toMatchObject({ model_name: SPEC.name, id: 'k-1' });
    const other = await send({ model_name: 'other' });
    expect(other.statusCode, other.body).toBe(404);
    expect((other.json() as { error: string }).error).toMatch(/model_name "other"/);
    const typed = await send({ model_name: 5 });
    expect(typed.statusCode, typed.body).toBe(400);
    expect((typed.json() as { error: string }).error).toMatch(/"model_name" must be a string/);
  });

  // tritonclient's InferRequestedOutput(name, class_count=k) asks for Triton's classification extension
  // (a BYTES [N, k] tensor of "score:index" strings). This server does not list it, and until 2026-12-07
  // answered the FP32 scores all the same: a client reading k strings got 10 floats.
  it('an output asking for classification (not served here): 400 naming it, not the scores', async () => {
    const r = await postInfer({
      inputs: [good],
      outputs: [{ name: SPEC.output.name, parameters: { binary_data: false, classification: 3 } }],
    });
    expect(r.statusCode, r.body).toBe(400);
    expect((r.json() as { error: string }).error).toMatch(/classification/);
  });

  it('the same fields of the right type are served (a string id is echoed)', async () => {
    const r = await postInfer({
      id: 'r-1',
      parameters: { binary_data_output: false },
      inputs: [{ ...good, parameters: {} }],
      outputs: [{ name: SPEC.output.name, parameters: { binary_data: false } }],
    });
    expect(r.statusCode, r.body).toBe(200);
    expect((r.json() as { id: string }).id).toBe('r-1');
  });
});

describe('JSON bodies are bounded by what a valid request holds, before they are parsed', () => {
  // MNIST, 64 items: at most 64 × 784 + 4096 commas and 2 × 64 × 28 + 4096 arrays or objects. JSON.parse
  // built every value first: 64 MiB of `0,` took 4.7 s of the server's thread, of `[],` 17 s.
  const post = async (data: string) => {
    const r = await fetch(`http://127.0.0.1:${port}${inferUrl}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: `{"inputs":[{"name":"${SPEC.input.name}","datatype":"FP32","shape":[1,1,28,28],"data":[${data}]}]}`,
    });
    return { status: r.status, body: (await r.json()) as { error?: string } };
  };

  it.each([
    [
      'numbers',
      Array(60_000).fill(0).join(','),
      /holds 60005 commas and 5 arrays or objects; .* at most 54272 and 7680$/,
    ],
    [
      'empty arrays',
      Array(10_000).fill('[]').join(','),
      /holds 10005 commas and 10005 arrays or objects; .* at most 54272 and 7680$/,
    ],
  ])('too many %s: 400, naming the limits', async (_what, data, message) => {
    const r = await post(data);
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(message);
  });

  it('a full request of 64 items, nested, still reaches the engine', async () => {
    const row = `[${Array(28).fill('0.5').join(',')}]`;
    const item = `[[${Array(28).fill(row).join(',')}]]`;
    const r = await fetch(`http://127.0.0.1:${port}${inferUrl}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: `{"inputs":[{"name":"${SPEC.input.name}","datatype":"FP32","shape":[64,1,28,28],"data":[${Array(64).fill(item).join(',')}]}]}`,
    });
    expect(r.status).toBe(200);
    const body = (await r.json()) as { outputs: { shape: number[] }[] };
    expect(body.outputs[0].shape).toEqual([64, 10]);
  });
});

describe('a compressed body', () => {
  it('gzip or br: 415 naming the coding, before the body is read as JSON; identity is served', async () => {
    const body = bytesRequest(Buffer.from([0xff, 0xd8, 0xff]).toString('base64'));
    for (const coding of ['gzip', 'br']) {
      const r = await fetch(`http://127.0.0.1:${port}${inferUrl}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': coding },
        body: gzipSync(body),
      });
      expect(r.status).toBe(415);
      expect(((await r.json()) as { error: string }).error).toContain(
        `content-encoding "${coding}" is not taken`,
      );
    }
    const plain = await fetch(`http://127.0.0.1:${port}${inferUrl}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': 'identity' },
      body,
    });
    expect(plain.status).toBe(200);
    await stillServes();
  });
});

describe('errors before a route runs', () => {
  const get = (path: string) => `GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`;

  it('a URL that does not decode: 400 BAD_URL; a path parameter over 100 characters: 414 URI_TOO_LONG', async () => {
    expectError((await rawExchange(port, get('/v2/models/%zz'))).res, 'BAD_URL', 400);
    expectError((await rawExchange(port, get(`/v2/models/${'m'.repeat(500)}`))).res, 'URI_TOO_LONG', 414);
    await stillServes();
  });

  const cases = unparsableHttpCases(inferUrl, '/v2', 'hello there\r\n\r\n');
  for (const [what, text, code, status] of cases)
    it(`${what}: ${status} ${code}, Connection: close`, async () => {
      const { res, closed } = await rawExchange(port, text);
      expectError(res, code, status);
      expect(res!.headers).toMatch(/connection: close/);
      expect(closed).toBe(true);
      await stillServes();
    });

  it('a body sent a byte at a time: 408 REQUEST_TIMEOUT and closed after requestTimeoutMs', async () => {
    const c = new RawConn(port);
    await c.ready;
    const start = Date.now();
    c.write(
      `POST ${inferUrl} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{`,
    );
    const timer = setInterval(() => c.write(' '), 100);
    try {
      expectError(await c.response(30_000), 'REQUEST_TIMEOUT', 408);
      await c.waitClosed(30_000);
      expect(Date.now() - start).toBeLessThan(30_000); // not the 60 s default
    } finally {
      clearInterval(timer);
      c.destroy();
    }
    await stillServes();
  });
});

// The protocol's error body is {"error": "<message>"}; beside it every error answer carries its code, as the
// node's /v2 routes do, where until 2026-12-07 serve-model's own errors (a bad request, an unknown model or
// path, a compressed body, a body over the limit) gave a message alone and a client had its text to match.
describe('every error answer carries a stable code', () => {
  const mnist = (first: number) => JSON.stringify({ inputs: [mnistInput(first)] });
  const json = { 'content-type': 'application/json' };
  it.each([
    ['an unknown model', 'GET', '/v2/models/nope', {}, undefined, 404, 'MODEL_NOT_FOUND'],
    [
      'an unknown version',
      'GET',
      `/v2/models/${SPEC.name}/versions/7/ready`,
      {},
      undefined,
      404,
      'MODEL_NOT_FOUND',
    ],
    ['an unknown path', 'GET', '/v2/repository/index', {}, undefined, 404, 'NOT_FOUND'],
    ['a method the path does not take', 'GET', inferUrl, {}, undefined, 405, 'METHOD_NOT_ALLOWED'],
    ['a bad request', 'POST', inferUrl, json, '{"inputs": []}', 400, 'BAD_REQUEST'],
    ['JSON that does not parse', 'POST', inferUrl, json, '{"inputs":', 400, 'BAD_REQUEST'],
    [
      'a compressed body',
      'POST',
      inferUrl,
      { ...json, 'content-encoding': 'gzip' },
      '{}',
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
    [
      'a body over the limit',
      'POST',
      inferUrl,
      { ...json, 'content-length': String(65 * 1024 * 1024) },
      undefined,
      413,
      'BODY_TOO_LARGE',
    ],
    ['an engine refusal', 'POST', inferUrl, json, mnist(5555), 503, 'OVERLOADED'],
    ['a non-finite output', 'POST', inferUrl, json, mnist(7777), 500, 'OUTPUT_NOT_FINITE'],
  ] as const)(
    '%s: %s %s, its status and code',
    async (_what, method, url, headers, payload, status, code) => {
      const r = await app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });
      expect(r.statusCode, r.body).toBe(status);
      const body = r.json() as { error: unknown; code: unknown };
      expect(Object.keys(body)).toEqual(['error', 'code']);
      expect(typeof body.error).toBe('string');
      expect(body.code).toBe(code);
    },
  );
});

describe('a method the path does not take', () => {
  it('405 with Allow, where it was 404 "no such endpoint"; an unknown path is still 404', async () => {
    for (const [method, path, allow] of [
      ['GET', inferUrl, 'POST'],
      ['DELETE', `/v2/models/${SPEC.name}`, 'GET, HEAD'],
      ['POST', '/v2/health/ready', 'GET, HEAD'],
    ]) {
      const { res } = await rawExchange(
        port,
        `${method} ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`,
      );
      expect([method, path, res?.status]).toEqual([method, path, 405]);
      expect(res!.headers).toContain(`allow: ${allow.toLowerCase()}\r\n`);
      expect(JSON.parse(res!.body)).toEqual({
        error: `METHOD_NOT_ALLOWED: ${method} is not taken by ${path}; it takes ${allow}`,
        code: 'METHOD_NOT_ALLOWED',
      });
    }
    const { res } = await rawExchange(
      port,
      'DELETE /v2/nothing HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
    );
    expect(res?.status).toBe(404);
    await stillServes();
  });
});

describe('binary tensor data for outputs', () => {
  /** An infer call for one MNIST image with the given request and output parameters. */
  async function inferWith(
    params: Record<string, unknown> | undefined,
    output: Record<string, unknown> | null,
  ) {
    const r = await fetch(`http://127.0.0.1:${port}${inferUrl}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        ...(params ? { parameters: params } : {}),
        inputs: [
          { name: SPEC.input.name, datatype: 'FP32', shape: [1, 1, 28, 28], data: Array(784).fill(0) },
        ],
        ...(output ? { outputs: [{ name: SPEC.output.name, ...output }] } : {}),
      }),
    });
    return { binary: r.headers.get('inference-header-content-length') !== null, status: r.status };
  }

  // The extension: binary_data_output asks for every output in binary "unless overridden by binary_data
  // on a specific output"; an output's binary_data alone asks for that output.
  it.each([
    [undefined, null, false],
    [{ binary_data_output: true }, null, true],
    [{ binary_data_output: true }, {}, true],
    [{ binary_data_output: true }, { parameters: { binary_data: false } }, false],
    [{ binary_data_output: false }, { parameters: { binary_data: true } }, true],
    [undefined, { parameters: { binary_data: true } }, true],
    [undefined, { parameters: { binary_data: false } }, false],
  ])('request %j, output %j: binary %s', async (params, output, binary) => {
    expect(await inferWith(params, output)).toEqual({ binary, status: 200 });
  });
});
