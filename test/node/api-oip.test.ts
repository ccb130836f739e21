/**
 * The node's Open Inference Protocol v2 routes as a standard OIP client (KServe, Triton) calls them: a
 * group of four stand-in NodeHosts (no model files) on an in-memory loopback wire, node 0's API driven
 * with `inject`. The versioned routes (/v2/models/{m}/versions/{v}/...) answer like the plain ones.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/node/api.ts';
import { NodeHost } from '../../src/node/host.ts';
import { startStandIn } from '../../src/node/standin-backend.ts';
import { groupIdOf, sha256, toB64u } from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { closeApp, Loopback } from './harness.ts';
import { standInRequest } from './standin-request.ts';

const group = makeGroup(4, 1, 31);
const groupId = groupIdOf(group.genesis);
const name = group.genesis.name;
let dir: string;
let net: Loopback;
const hosts: NodeHost[] = [];
let app: FastifyInstance;
let nonce = 1;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dropbear-api-oip-'));
  net = new Loopback(4);
  for (let id = 0; id < 4; id++)
    hosts.push(
      NodeHost.open({
        id,
        genesis: group.genesis,
        key: group.keys[id],
        ledgerPath: join(dir, `n${id}.sqlite`),
        backends: [startStandIn(id)],
        wire: net.wire(id),
      }),
    );
  for (const h of hosts) h.start();
  app = buildApi(hosts[0], {
    peers: () => [1, 2, 3].map((id) => ({ id, state: 'connected' as const })),
  });
  await app.ready();
});

afterAll(async () => {
  await closeApp(app);
  for (const h of hosts) h.stop();
  net.stop();
  for (const h of hosts) h.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A client-signed infer body for a fresh stand-in input, as JSON with the image in base64. */
function signedBody(extra: Record<string, unknown> = {}) {
  const sr = standInRequest(group, groupId, nonce++);
  const { request, input } = sr;
  if (sr.auth.kind !== 'single') throw new Error('signRequest made a batch signature');
  return {
    input,
    body: {
      ...extra,
      inputs: [
        { name: 'image', datatype: 'BYTES', shape: [1], data: [Buffer.from(input).toString('base64')] },
      ],
      parameters: {
        dropbear_client: toB64u(request.client),
        dropbear_nonce: request.nonce,
        dropbear_timestamp: request.timestamp,
        dropbear_max_fee: request.maxFee,
        dropbear_signature: toB64u(sr.auth.signature),
      },
    },
  };
}

/**
 * The code of an error answer on a v2 route, checking its body is the protocol's: `error` a string (led
 * by the code), the code beside it.
 */
function oipCode(res: { json(): unknown }): string {
  const body = res.json() as { error: unknown; code: string; requestId?: string };
  expect(Object.keys(body).filter((k) => k !== 'requestId')).toEqual(['error', 'code']);
  expect(typeof body.error).toBe('string');
  expect(body.error as string).toMatch(new RegExp(`^${body.code}: .`));
  return body.code;
}

describe('OIP v2 on the node API', () => {
  it('answers the versioned model routes for version 1, and 404 MODEL_NOT_FOUND for any other', async () => {
    const meta = await app.inject({ method: 'GET', url: `/v2/models/${name}/versions/1` });
    expect(meta.statusCode, meta.body).toBe(200);
    expect(meta.json()).toMatchObject({ name, versions: ['1'], platform: 'dropbear' });
    expect((await app.inject({ method: 'GET', url: `/v2/models/${name}` })).json()).toEqual(meta.json());
    const ready = await app.inject({ method: 'GET', url: `/v2/models/${name}/versions/1/ready` });
    expect(ready.statusCode, ready.body).toBe(200);
    expect(ready.json()).toEqual({ name, ready: true });

    const res = await app.inject({
      method: 'POST',
      url: `/v2/models/${name}/versions/1/infer`,
      payload: signedBody({ id: 'versioned-1' }).body,
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ model_name: name, model_version: '1', id: 'versioned-1' });

    for (const url of [
      `/v2/models/${name}/versions/2`,
      `/v2/models/${name}/versions/2/ready`,
      `/v2/models/other/versions/1`,
    ]) {
      const r = await app.inject({ method: 'GET', url });
      expect([r.statusCode, oipCode(r)]).toEqual([404, 'MODEL_NOT_FOUND']);
    }
    const wrong = await app.inject({
      method: 'POST',
      url: `/v2/models/${name}/versions/2/infer`,
      payload: signedBody().body,
    });
    expect([wrong.statusCode, oipCode(wrong)]).toEqual([404, 'MODEL_NOT_FOUND']);
  });

  it('names the model version in every infer answer', async () => {
    const res = await app.inject({
      method: 'POST',
      url: `/v2/models/${name}/infer`,
      payload: signedBody().body,
    });
    expect(res.statusCode, res.body).toBe(200);
    expect((res.json() as { model_version?: string }).model_version).toBe('1');
  });

  // tritonclient.http posts its body with no Content-Type at all, JSON alone or (its default,
  // set_data_from_numpy(binary_data=True)) the JSON followed by the tensor's bytes, the JSON's length in
  // Inference-Header-Content-Length; a BYTES element in binary is a 4-byte little-endian length and the bytes.
  const tritonBody = (body: { inputs: Record<string, unknown>[] }, input: Uint8Array) => {
    const { data: _data, ...rest } = body.inputs[0];
    const element = Buffer.alloc(4 + input.length);
    element.writeUInt32LE(input.length, 0);
    element.set(input, 4);
    const json = Buffer.from(
      JSON.stringify({ ...body, inputs: [{ ...rest, parameters: { binary_data_size: element.length } }] }),
    );
    return { json, payload: Buffer.concat([json, element]) };
  };

  it('takes a JSON body sent with no Content-Type, as tritonclient sends it', async () => {
    const { body } = signedBody({ id: 'no-type' });
    const res = await app.inject({
      method: 'POST',
      url: `/v2/models/${name}/infer`,
      payload: Buffer.from(JSON.stringify(body)),
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ model_name: name, id: 'no-type' });
  });

  it('takes the image as binary tensor data (Inference-Header-Content-Length), with or without a type', async () => {
    for (const type of [undefined, 'application/octet-stream', 'application/json']) {
      const { body, input } = signedBody({ id: `binary-${type}` });
      const { json, payload } = tritonBody(body, input);
      const res = await app.inject({
        method: 'POST',
        url: `/v2/models/${name}/versions/1/infer`,
        headers: {
          'inference-header-content-length': String(json.length),
          ...(type ? { 'content-type': type } : {}),
        },
        payload,
      });
      expect(res.statusCode, `${type}: ${res.body}`).toBe(200);
      const answer = res.json() as {
        id: string;
        parameters: { certificate: { outcome: { inputDigest: string } } };
      };
      expect(answer.id).toBe(`binary-${type}`);
      // the certified input is the image's bytes, not the length before them
      expect(answer.parameters.certificate.outcome.inputDigest).toBe(toB64u(sha256(input)));
    }
  });

  it('refuses binary tensor data that does not add up, naming what is wrong', async () => {
    const { body, input } = signedBody();
    const { json, payload } = tritonBody(body, input);
    const cases: [string, Buffer, string | undefined][] = [
      ['header past the body', payload, String(payload.length + 1)],
      ['size past the data', payload.subarray(0, payload.length - 1), String(json.length)],
      ['bytes no input claims', Buffer.concat([payload, Buffer.from([0])]), String(json.length)],
      [
        'element length wrong',
        (() => {
          const p = Buffer.from(payload);
          p.writeUInt32LE(input.length + 1, json.length);
          return p;
        })(),
        String(json.length),
      ],
    ];
    for (const [what, p, header] of cases) {
      const res = await app.inject({
        method: 'POST',
        url: `/v2/models/${name}/infer`,
        headers: header === undefined ? {} : { 'inference-header-content-length': header },
        payload: p,
      });
      expect([what, res.statusCode, oipCode(res)]).toEqual([what, 400, 'INFER_BAD_INPUT']);
    }
    // a body of bytes alone (no JSON before them) is still not an infer request
    const raw = await app.inject({
      method: 'POST',
      url: `/v2/models/${name}/infer`,
      headers: { 'content-type': 'application/octet-stream' },
      payload: Buffer.from(input),
    });
    expect([raw.statusCode, oipCode(raw)]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
  });

  // The protocol's outputs list names the outputs wanted: none named (absent, or an empty list, as Triton and
  // serve-model read it) is all of them. Until 2026-12-06 `"outputs": []` was answered 200 with no outputs at
  // all, and a name given twice came back twice (Triton refuses a duplicate requested output).
  it('an empty "outputs" list is all three outputs; an output named twice is 400 INFER_BAD_OUTPUT', async () => {
    const all = await app.inject({
      method: 'POST',
      url: `/v2/models/${name}/infer`,
      payload: signedBody({ outputs: [] }).body,
    });
    expect(all.statusCode, all.body).toBe(200);
    expect((all.json() as { outputs: { name: string }[] }).outputs.map((o) => o.name)).toEqual([
      'label',
      'top5_labels',
      'top5_scores',
    ]);
    const twice = await app.inject({
      method: 'POST',
      url: `/v2/models/${name}/infer`,
      payload: signedBody({ outputs: [{ name: 'label' }, { name: 'top5_scores' }, { name: 'label' }] }).body,
    });
    expect([twice.statusCode, oipCode(twice)]).toEqual([400, 'INFER_BAD_OUTPUT']);
    expect((twice.json() as { error: string }).error).toMatch(/output "label" is named twice/);
  });

  it('a field the protocol does not have, at the top, in an input or in an output, is 400 naming it', async () => {
    const base = signedBody().body;
    const cases: [Record<string, unknown>, string][] = [
      [{ ...base, ouputs: [{ name: 'label' }] }, 'body has an unknown field "ouputs"'],
      [
        { ...base, inputs: [{ ...base.inputs[0], paramters: { binary_data_size: 1 } }] },
        'body/inputs/0 has an unknown field "paramters"',
      ],
      [
        { ...base, outputs: [{ name: 'label', binary: true }] },
        'body/outputs/0 has an unknown field "binary"',
      ],
    ];
    for (const [payload, message] of cases) {
      const res = await app.inject({ method: 'POST', url: `/v2/models/${name}/infer`, payload });
      expect([res.statusCode, oipCode(res)], res.body).toEqual([400, 'BAD_REQUEST']);
      expect((res.json() as { error: string }).error).toBe(`BAD_REQUEST: ${message}`);
    }
    // An output's parameters (binary_data) are the protocol's: taken.
    const ok = await app.inject({
      method: 'POST',
      url: `/v2/models/${name}/infer`,
      payload: signedBody({ outputs: [{ name: 'label', parameters: { binary_data: false } }] }).body,
    });
    expect(ok.statusCode, ok.body).toBe(200);
  });

  // tritonclient's InferRequestedOutput(name, class_count=k) asks for Triton's classification extension (a
  // BYTES tensor of "score:index" strings), which /v2 does not list: until 2026-12-07 it was ignored and the
  // INT64 or FP32 output came back in its place.
  it('an output asking for classification is 400 INFER_BAD_OUTPUT naming it', async () => {
    const res = await app.inject({
      method: 'POST',
      url: `/v2/models/${name}/infer`,
      payload: signedBody({
        outputs: [{ name: 'top5_scores', parameters: { binary_data: true, classification: 2 } }],
      }).body,
    });
    expect([res.statusCode, oipCode(res)], res.body).toEqual([400, 'INFER_BAD_OUTPUT']);
    expect((res.json() as { error: string }).error).toMatch(/classification/);
  });

  // KServe's Python client (InferenceRESTClient, InferRequest.to_rest) puts "model_name" at the top of
  // every infer body, and a uuid "id": a body this API refused as an unknown field until 2026-12-07.
  it('takes "model_name" at the top of the body, as the KServe client sends it; another model is 404', async () => {
    const res = await app.inject({
      method: 'POST',
      url: `/v2/models/${name}/infer`,
      payload: signedBody({ id: 'kserve-1', model_name: name }).body,
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ model_name: name, id: 'kserve-1' });
    const other = await app.inject({
      method: 'POST',
      url: `/v2/models/${name}/infer`,
      payload: signedBody({ model_name: 'other' }).body,
    });
    expect([other.statusCode, oipCode(other)], other.body).toEqual([404, 'MODEL_NOT_FOUND']);
    expect((other.json() as { error: string }).error).toMatch(/"other"/);
    const typed = await app.inject({
      method: 'POST',
      url: `/v2/models/${name}/infer`,
      payload: signedBody({ model_name: 5 }).body,
    });
    expect([typed.statusCode, oipCode(typed)], typed.body).toEqual([400, 'BAD_REQUEST']);
  });

  // tritonclient raises InferenceServerException(msg=body["error"], status=...), whose text is
  // "[status] " + msg: with this API's {code, message} object there, making the text raised a TypeError.
  it('answers errors on every v2 route as {"error": "<message>"} with the code beside it; v1 keeps its body', async () => {
    const cases: [
      string,
      { method: 'GET' | 'POST'; url: string; headers?: Record<string, string>; payload?: string },
      number,
      string,
    ][] = [
      ['unknown model', { method: 'GET', url: '/v2/models/other' }, 404, 'MODEL_NOT_FOUND'],
      [
        'unknown version',
        { method: 'GET', url: `/v2/models/${name}/versions/9/ready` },
        404,
        'MODEL_NOT_FOUND',
      ],
      ['no such v2 route', { method: 'GET', url: '/v2/repository/index' }, 404, 'NOT_FOUND'],
      [
        'unknown query parameter',
        { method: 'GET', url: '/v2/health/live?x=1' },
        400,
        'UNKNOWN_QUERY_PARAMETER',
      ],
      ['no body', { method: 'POST', url: `/v2/models/${name}/infer` }, 400, 'BAD_REQUEST'],
      [
        'malformed JSON',
        {
          method: 'POST',
          url: `/v2/models/${name}/infer`,
          headers: { 'content-type': 'application/json' },
          payload: '{"inputs":',
        },
        400,
        'MALFORMED_JSON',
      ],
      [
        'unsigned',
        {
          method: 'POST',
          url: `/v2/models/${name}/infer`,
          headers: { 'content-type': 'application/json' },
          payload: JSON.stringify({ inputs: signedBody().body.inputs }),
        },
        401,
        'UNAUTHORIZED',
      ],
    ];
    for (const [what, req, status, code] of cases) {
      const res = await app.inject(req);
      expect([what, res.statusCode, oipCode(res)]).toEqual([what, status, code]);
    }
    const v1 = await app.inject({ method: 'GET', url: '/v1/certificates/xyz' });
    expect(v1.statusCode).toBe(400);
    expect((v1.json() as { error: { code: string } }).error.code).toBe('BAD_REQUEST');
  });
});
