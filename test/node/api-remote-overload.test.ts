// A node whose model is served remotely (RemoteBackend) sheds requests with 503 OVERLOADED and Retry-After
// once more than api_limits' maxInferenceQueue of its inputs wait for a stalled model server, as a node with
// the local engine does. Until 2026-12-05 the remote backend's stats had no `queued` or `preprocessing`,
// the API counted nothing waiting, and every request was let in (and sent to the server at once).
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackendStats } from '../../src/inference/backend.ts';
import { catalogByName } from '../../src/inference/catalog.ts';
import { encodeTensorInput, inputElements } from '../../src/inference/preprocess.ts';
import { RemoteBackend } from '../../src/inference/remote.ts';
import { buildApi } from '../../src/node/api.ts';
import { NodeHost } from '../../src/node/host.ts';
import { groupIdOf, SignedRequest, sha256, signRequest, toJson } from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { startFakeOip } from '../inference/fake-oip.ts';

const spec = catalogByName('mobilenet_v1_0.25_128_quant')!;
const models = Array.from({ length: 4 }, () => ({
  name: spec.name,
  digest: Uint8Array.from(Buffer.from(spec.sha256, 'hex')),
}));
const group = makeGroup(4, 1, 41, undefined, 1e12, models);
const dir = mkdtempSync(join(tmpdir(), 'api-remote-overload-'));

let srv: Server;
let rb: RemoteBackend;
let host: NodeHost;
let app: FastifyInstance;
/** Inference calls the stalled server holds, unanswered. */
const held: ServerResponse[] = [];
let maxOpen = 0;
let open = 0;

beforeAll(async () => {
  let url: string;
  ({ server: srv, url } = await startFakeOip((req, res) => {
    maxOpen = Math.max(maxOpen, ++open);
    res.on('close', () => open--);
    req.resume();
    req.on('end', () => held.push(res));
  }));
  rb = await RemoteBackend.connect({
    url,
    model: 'm',
    digest: spec.sha256,
    timeoutMs: 60_000,
    maxInFlight: 2,
  });
  host = NodeHost.open({
    id: 0,
    genesis: group.genesis,
    key: group.keys[0],
    ledgerPath: join(dir, 'n0.sqlite'),
    backends: [rb],
    wire: { send: () => {}, broadcast: () => {}, onFrame: () => {}, reportBad: () => {} },
  });
  host.start();
  app = buildApi(host, { maxInferenceQueue: 4 });
});

afterAll(async () => {
  await app.close();
  host.stop();
  host.close();
  await rb.close();
  srv.closeAllConnections();
  srv.close();
  rmSync(dir, { recursive: true, force: true });
});

const input = encodeTensorInput({
  dtype: 'float32',
  dims: [1, 3, 128, 128],
  data: new Uint8Array(4 * inputElements(spec)),
});
let nonce = 1;
/** The inputs the backend holds: waiting on the node, or in calls to the server. */
const waitingOrSent = () => {
  const s: BackendStats = rb.stats();
  return (s.queued ?? 0) + (s.preprocessing ?? 0) + s.inFlight;
};

function post() {
  const sr = signRequest(
    {
      groupId: groupIdOf(group.genesis),
      client: group.client.publicKey,
      nonce: nonce++,
      timestamp: Date.now(),
      inputDigest: sha256(input),
      policy: null,
      maxFee: 1000,
    },
    input,
    group.client,
  );
  return app.inject({
    method: 'POST',
    url: '/v1/requests?wait=0',
    payload: { request: toJson(SignedRequest, sr) },
  });
}

describe('API: a remote model server that stalls', () => {
  it('past maxInferenceQueue inputs waiting, a request is answered 503 OVERLOADED with Retry-After', async () => {
    const codes: number[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await post();
      codes.push(res.statusCode);
      if (res.statusCode === 503) {
        expect(res.json().error.code).toBe('OVERLOADED');
        expect(res.json().error.message).toMatch(/inputs waiting \(limit 4\)/);
        expect(res.headers['retry-after']).toBe('1');
        break;
      }
      // Let the host hand the request to the backend before the next one comes.
      for (let t = 0; t < 500 && waitingOrSent() < i + 1; t++) await new Promise((r) => setTimeout(r, 10));
      expect(waitingOrSent()).toBe(i + 1);
    }
    expect(codes.at(-1)).toBe(503);
    // Admitted: 2 calls at the server, 5 waiting (one over the limit of 4, which the API then refuses).
    expect(codes.slice(0, -1).every((c) => c === 202)).toBe(true);
    expect(codes.length).toBe(8);
    expect(rb.stats()).toMatchObject({ inFlight: 2, queued: 5 });
    expect(maxOpen).toBe(2);
  });
});
