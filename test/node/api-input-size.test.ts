/**
 * A group as `group init` makes it (genesis maxInputBytes 8 MiB, no `api_limits` in the node configs): one
 * node started from its config, asked over real HTTP on 127.0.0.1. An input over maxInputBytes by a little
 * is REQUEST_INPUT_TOO_LARGE with its message, in every body the API takes (JSON, canonical bytes, v2
 * base64); a body over the API's limit is still BODY_TOO_LARGE. Until 2026-12-06 the body limit equalled
 * maxInputBytes, so such an input never reached the input check: its body alone was over the limit.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGroup, loadGroup } from '../../src/cli/group.ts';
import { bodyLimitFor } from '../../src/node/api.ts';
import { type RunningNode, startNode } from '../../src/node/run.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';
import {
  encode,
  type Genesis,
  groupIdOf,
  type KeyPair,
  type Request,
  SignedRequest,
  sha256,
  signRequest,
  toB64u,
  toJson,
} from '../../src/protocol/index.ts';

let dir: string;
let node: RunningNode;
let genesis: Genesis;
let client: KeyPair;
let nonce = 1;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dropbear-input-size-'));
  await initGroup({
    dir,
    nodes: 4,
    models: Array(4).fill(STANDIN_MODEL),
    nodeConfig: { log: { level: 'silent' } },
  });
  const g = loadGroup(dir);
  genesis = g.genesis;
  client = g.clientKey();
  node = await startNode(join(dir, 'node-0.json'));
}, 60_000);

afterAll(async () => {
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function signed(input: Uint8Array): { request: Request; sr: SignedRequest } {
  const request: Request = {
    groupId: groupIdOf(genesis),
    client: client.publicKey,
    nonce: nonce++,
    timestamp: Date.now(),
    inputDigest: sha256(input),
    policy: null,
    maxFee: 1_000,
  };
  return { request, sr: signRequest(request, input, client) };
}

async function post(path: string, body: string | Uint8Array, type: string) {
  const res = await fetch(`${node.apiUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': type },
    body: body as BodyInit,
  });
  // The v1 routes answer {error: {code, message}}; the v2 ones the protocol's {error: "CODE: message", code}.
  const json = (await res.json()) as { error?: string | { code: string; message: string }; code?: string };
  if (typeof json.error === 'string')
    return { status: res.status, code: json.code, message: json.error.replace(`${json.code}: `, '') };
  return { status: res.status, code: json.error?.code, message: json.error?.message ?? '' };
}

describe("group init's defaults: an input over maxInputBytes by a little", () => {
  const over = () => new Uint8Array(genesis.params.maxInputBytes + 1);
  const theInputCheck = () => ({
    status: 413,
    code: 'REQUEST_INPUT_TOO_LARGE',
    message: `input of ${genesis.params.maxInputBytes + 1} bytes is over the group's limit of ${genesis.params.maxInputBytes}`,
  });

  it('group init writes the 8 MiB input limit this test is about, and no body limit of its own', () => {
    expect(genesis.params.maxInputBytes).toBe(8 << 20);
    expect(node.config.apiLimits.bodyLimitBytes).toBeUndefined();
  });

  it('as JSON (base64url): REQUEST_INPUT_TOO_LARGE, not BODY_TOO_LARGE', async () => {
    const body = JSON.stringify({ request: toJson(SignedRequest, signed(over()).sr) });
    expect(await post('/v1/requests', body, 'application/json')).toEqual(theInputCheck());
  });

  it('as canonical bytes: REQUEST_INPUT_TOO_LARGE', async () => {
    const body = encode(SignedRequest, signed(over()).sr);
    expect(await post('/v1/requests', body, 'application/octet-stream')).toEqual(theInputCheck());
  });

  it('through v2 infer (base64): REQUEST_INPUT_TOO_LARGE', async () => {
    const input = over();
    const { request, sr } = signed(input);
    if (sr.auth.kind !== 'single') throw new Error('signRequest made a batch signature');
    const body = JSON.stringify({
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
    });
    expect(await post(`/v2/models/${genesis.name}/infer`, body, 'application/json')).toEqual(theInputCheck());
  });

  // It could not be sent as JSON at all (base64 makes 8 MiB 10.7): only as canonical bytes. Past both size
  // limits it reaches the model's input check (the stand-in takes only its small tensors).
  it('an input of exactly maxInputBytes as JSON is within both limits', async () => {
    const input = new Uint8Array(genesis.params.maxInputBytes);
    const body = JSON.stringify({ request: toJson(SignedRequest, signed(input).sr) });
    expect(await post('/v1/requests', body, 'application/json')).toMatchObject({
      status: 400,
      code: expect.stringMatching(/^INPUT_/),
    });
  });

  it('a body over the API limit is still BODY_TOO_LARGE, naming the limit', async () => {
    const limit = bodyLimitFor(genesis);
    expect(await post('/v1/requests', new Uint8Array(limit + 1), 'application/octet-stream')).toEqual({
      status: 413,
      code: 'BODY_TOO_LARGE',
      message: `request body over the limit of ${limit} bytes`,
    });
  });
});
