/**
 * The SDK against real HTTP: four in-process NodeHosts with four real models, each behind a fastify app
 * listening on 127.0.0.1 (test/node/harness.ts), plus fake nodes (node:http) that are down, answer
 * garbage, or hand out certificates that do not verify. Every result the SDK returns must verify against
 * the genesis and name the request that was sent.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SignatureCache, verifyCertificate } from '../../src/certificate/index.ts';
import {
  type ClientOptions,
  DropbearClient,
  type InferOptions,
  type InferResult,
} from '../../src/client/index.ts';
import { buildApi } from '../../src/node/api.ts';
import {
  Certificate,
  cryptoStats,
  DropbearError,
  decode,
  encode,
  equalBytes,
  fromJson,
  hex,
  REQUEST_ANSWERS_TYPE,
  REQUEST_LIST_TYPE,
  type Request,
  type RequestAnswer,
  RequestAnswers,
  RequestList,
  receiptHashOf,
  requestIdOf,
  SignedRequest,
  sha256,
  signRequest,
  toJson,
} from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { closeApp, keyOf, startGroup, type TestGroup, valImages } from '../node/harness.ts';

const N = 4;
const TIMEOUT = 20_000;
const clientKey = keyOf('sdk/client');
const images = valImages(80);
let img = 0;
/** A fresh image for each request (several tests use the same client and key). */
const nextImage = () => images[img++ % images.length];

let group: TestGroup;
let real: { id: number; api: string }[];
const servers: Server[] = [];

function sdk(o: Partial<ClientOptions> = {}): DropbearClient {
  return new DropbearClient({
    genesis: group.genesis,
    nodes: real,
    key: clientKey,
    timeoutMs: TIMEOUT,
    // No hedge unless a test asks for one: several tests count the POSTs, and on a loaded machine (the
    // e2e tests' real models running beside this file) 20 images once took over the default 2 s, so the
    // client asked the other nodes too and the count was off.
    hedgeMs: Number.POSITIVE_INFINITY,
    ...o,
  });
}

/** Each node's view, last executed batch and backlog, and where request `id` (hex) stands there. */
function groupStateOf(id: string | undefined): string {
  return group.hosts
    .map((h, i) => {
      const r = h.replica;
      const where = !id
        ? ''
        : `, the request ${
            r.wantsOwnVote(id)
              ? 'waits for a proposal'
              : r.awaitsExecution(id)
                ? 'is in a batch'
                : r.holdsRequest(id)
                  ? 'executed'
                  : 'unknown'
          }, certificate ${h.certificate(id) ? 'held' : 'none'}`;
      return `node ${i}: view ${r.view}, executed ${r.lastExecuted}, pending ${r.pendingRequests}${where}`;
    })
    .join('; ');
}

/** `fetch` that records every call (method, URL, body) and how many were in flight at most. */
function recording() {
  const calls: {
    method: string;
    url: string;
    body: unknown;
    /** The content type the client sent. */
    sent?: string;
    status?: number;
    type?: string | null;
  }[] = [];
  let inFlight = 0;
  const stats = { calls, maxInFlight: 0 };
  const f: typeof fetch = async (input, init) => {
    const call: (typeof calls)[number] = {
      method: init?.method ?? 'GET',
      url: String(input),
      body: init?.body,
      sent: (init?.headers as Record<string, string> | undefined)?.['content-type'],
    };
    calls.push(call);
    stats.maxInFlight = Math.max(stats.maxInFlight, ++inFlight);
    try {
      const res = await fetch(input, init);
      call.status = res.status;
      call.type = res.headers.get('content-type');
      return res;
    } finally {
      inFlight--;
    }
  };
  return { fetch: f, stats };
}

function expectCertified(r: InferResult | Error, sr?: SignedRequest): InferResult {
  // A batch item that failed: say what each node knows of it, so that a failure on a loaded machine
  // tells a slow group from a request lost on the way.
  if (r instanceof Error)
    throw new Error(`${r.message} (group: ${groupStateOf(/[0-9a-f]{64}/.exec(r.message)?.[0])})`);
  const v = verifyCertificate(r.certificate, group.genesis, sr ? { request: sr } : {});
  expect(v.ok, v.ok ? '' : `${v.reason}: ${v.message}`).toBe(true);
  expect(r.requestId).toBe(hex(r.certificate.outcome.requestId));
  expect(r.votes.length).toBeGreaterThanOrEqual(2 * group.genesis.f + 1);
  return r;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

/** A fake node on 127.0.0.1 (closed in afterAll). */
async function fakeNode(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handle);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A URL where nothing listens. */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

/**
 * A node that passes every call on to a real one and changes each certificate in its answers
 * (`{certificate}` and `{results: [{certificate}]}`) with `tamper`. Counts the certificates it changed.
 */
async function tamperingNode(
  target: string,
  tamper: (c: Certificate) => Certificate,
): Promise<{ url: string; tampered: () => number }> {
  let n = 0;
  const change = (j: unknown) => {
    n++;
    return toJson(Certificate, tamper(fromJson(Certificate, j)));
  };
  const url = await fakeNode(async (req, res) => {
    const body = await readBody(req);
    const up = await fetch(`${target}${req.url}`, {
      method: req.method,
      headers: req.headers['content-type'] ? { 'content-type': req.headers['content-type'] } : {},
      body: req.method === 'POST' ? new Uint8Array(body) : undefined,
    });
    if (up.headers.get('content-type') === REQUEST_ANSWERS_TYPE) {
      const answers = decode(RequestAnswers, new Uint8Array(await up.arrayBuffer())).map((a) => {
        if (a.kind !== 'certificate') return a;
        n++;
        return { ...a, certificate: tamper(a.certificate) };
      });
      res.writeHead(up.status, { 'content-type': REQUEST_ANSWERS_TYPE }).end(encode(RequestAnswers, answers));
      return;
    }
    const json = (await up.json()) as { certificate?: unknown; results?: { certificate?: unknown }[] };
    if (json.certificate) json.certificate = change(json.certificate);
    for (const r of json.results ?? []) if (r.certificate) r.certificate = change(r.certificate);
    res.writeHead(up.status, { 'content-type': 'application/json' }).end(JSON.stringify(json));
  });
  return { url, tampered: () => n };
}

/**
 * A node that passes every call on to real node 0 (so the group gets the request) and then never answers
 * the client: a node far behind, or one withholding certificates on purpose. `held`: its open answers.
 */
async function stallingNode(): Promise<{ url: string; held: ServerResponse[] }> {
  const held: ServerResponse[] = [];
  const url = await fakeNode(async (req, res) => {
    const body = await readBody(req);
    await fetch(`${real[0].api}${(req.url ?? '').replace(/wait=\d+/, 'wait=0')}`, {
      method: req.method,
      headers: req.headers['content-type'] ? { 'content-type': req.headers['content-type'] } : {},
      body: req.method === 'POST' ? new Uint8Array(body) : undefined,
    });
    held.push(res);
  });
  return { url, held };
}

const flipSignature = (c: Certificate): Certificate => {
  c.signatures[0].signature[5] ^= 0x40;
  return c;
};
const flipVote = (c: Certificate): Certificate => {
  const v = c.outcome.votes[0];
  if (v.result.kind === 'class') v.result.top[0].label = (v.result.top[0].label + 1) % 1000;
  return c;
};

/** Node `id` of the group replaced by `api`. */
const withNode = (id: number, api: string) => real.map((n) => (n.id === id ? { id, api } : n));

beforeAll(async () => {
  group = await startGroup({
    name: 'sdk-test',
    balances: [{ client: clientKey.publicKey, amount: 1e9 }],
    listen: true,
  });
  real = group.urls.map((api, id) => ({ id, api }));
  expect(real).toHaveLength(N);
});

afterAll(async () => {
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  await group?.close();
});

describe('DropbearClient over HTTP', () => {
  let firstCert: InferResult;

  it("infer with sendTo 'all', 1 and [2]", async () => {
    const all = recording();
    const sr = sdk().sign(nextImage());
    firstCert = expectCertified(await sdk({ fetch: all.fetch }).send(sr), sr);
    expect(all.stats.calls.filter((c) => c.method === 'POST')).toHaveLength(N);
    // Sent to every node: each is told so (it then forwards only if the request is still waiting later).
    for (const c of all.stats.calls.filter((x) => x.method === 'POST'))
      expect(new URL(c.url).searchParams.get('sentTo')).toBe('all');
    expect(firstCert.decision.kind).toBe('label');

    const one = recording();
    const c1 = sdk({ sendTo: 1, fetch: one.fetch });
    for (let i = 0; i < 2; i++) expectCertified(await c1.infer(nextImage()));
    // Round robin: two calls, two different nodes, one POST each.
    const posted = one.stats.calls.filter((c) => c.method === 'POST').map((c) => new URL(c.url).origin);
    expect(posted).toHaveLength(2);
    expect(new Set(posted).size).toBe(2);
    for (const c of one.stats.calls) expect(new URL(c.url).searchParams.has('sentTo')).toBe(false);
    // One request, one binary answer (RequestAnswers) instead of a JSON certificate.
    for (const c of one.stats.calls.filter((x) => x.method === 'POST' && x.status === 200))
      expect(c.type).toBe(REQUEST_ANSWERS_TYPE);

    const two = recording();
    const r = expectCertified(await sdk({ sendTo: [2], fetch: two.fetch }).infer(nextImage()));
    expect(r.servedBy).toBe(2);
    expect(two.stats.calls.every((c) => c.url.startsWith(real[2].api))).toBe(true);
  });

  it('checks each receipt signature once per client: another certificate of the same batch costs no signature check; changed signature bytes are still refused', async () => {
    // Two requests certified in one consensus batch: four sent together (again if the group split every
    // one of them into batches of its own), two that share a receipt kept. All from node 0, so that the two
    // carry the same q receipt signatures (another node may hold another q of them).
    const c = sdk({ sendTo: [0] });
    let pair: { sr: SignedRequest; cert: Certificate }[] = [];
    for (let attempt = 0; attempt < 5 && pair.length < 2; attempt++) {
      const srs = Array.from({ length: 4 }, () => c.sign(nextImage()));
      const rs = await Promise.all(srs.map((sr) => c.send(sr)));
      const byReceipt = new Map<string, { sr: SignedRequest; cert: Certificate }[]>();
      rs.forEach((r, i) => {
        const k = hex(receiptHashOf(r.certificate.receipt));
        byReceipt.set(k, [...(byReceipt.get(k) ?? []), { sr: srs[i], cert: r.certificate }]);
      });
      pair = [...byReceipt.values()].find((g) => g.length >= 2)?.slice(0, 2) ?? [];
    }
    expect(pair).toHaveLength(2);
    // A node that answers each of the two with the certificate recorded for it; with `tamper`, the
    // second's first receipt signature has a bit flipped.
    let tamper = false;
    const url = await fakeNode(async (req, res) => {
      const sr = decode(SignedRequest, new Uint8Array(await readBody(req)));
      const k = pair.findIndex((p) => equalBytes(requestIdOf(p.sr), requestIdOf(sr)));
      if (k < 0) return void res.writeHead(404).end();
      let cert = fromJson(Certificate, toJson(Certificate, pair[k].cert));
      if (tamper && k === 1) cert = flipSignature(cert);
      res
        .writeHead(200, { 'content-type': REQUEST_ANSWERS_TYPE })
        .end(encode(RequestAnswers, [{ kind: 'certificate', certificate: cert }]));
    });
    const viaFake = () => sdk({ nodes: [{ id: 0, api: url }], sendTo: [0] });
    // The signatures a client verifies: its memo's misses (each one is then checked). Counted on the
    // client's own memo, not the process-wide signature counter, which the in-process nodes also move.
    const checks = (client: DropbearClient) => {
      const memo = (client as unknown as { signatures: SignatureCache }).signatures;
      const has = memo.has.bind(memo);
      const seen = { misses: 0 };
      memo.has = (receipt, node, sig, view) => {
        const hit = has(receipt, node, sig, view);
        if (!hit) seen.misses++;
        return hit;
      };
      return seen;
    };
    const fresh = viaFake();
    const seen = checks(fresh);
    await fresh.send(pair[0].sr);
    const first = seen.misses;
    expect(first).toBeGreaterThanOrEqual(2 * group.genesis.f + 1);
    await fresh.send(pair[1].sr);
    expect(seen.misses - first).toBe(0);
    tamper = true;
    const other = viaFake();
    await other.send(pair[0].sr);
    const refused = await other.send(pair[1].sr).then(
      () => null,
      (e: unknown) => e as DropbearError,
    );
    expect(refused?.code).toBe('NO_CERTIFICATE');
    expect(refused?.message).toContain('CERTIFICATE_INVALID');
  });

  it('waitOn: f+1 nodes (round robin) hold the POST open, the others answer at once; all wait with waitOn n', async () => {
    const posts = (rec: ReturnType<typeof recording>) =>
      rec.stats.calls
        .filter((c) => c.method === 'POST')
        .map((c) => ({
          node: real.findIndex((n) => c.url.startsWith(`${n.api}/`)),
          wait: new URL(c.url).searchParams.get('wait'),
          status: c.status,
        }))
        .sort((a, b) => a.node - b.node);
    const rec = recording();
    const c = sdk({ fetch: rec.fetch });
    const waiters: number[][] = [];
    for (let i = 0; i < 2; i++) {
      rec.stats.calls.length = 0;
      expectCertified(await c.infer(nextImage()));
      const p = posts(rec);
      expect(p.map((x) => x.node)).toEqual([0, 1, 2, 3]);
      waiters.push(p.filter((x) => Number(x.wait) > 0).map((x) => x.node));
      expect(waiters[i]).toHaveLength(group.genesis.f + 1);
      // The others were asked with wait=0 and answered without holding the call: 202, or a certificate.
      const quiet = p.filter((x) => !waiters[i].includes(x.node));
      expect(quiet).toHaveLength(N - group.genesis.f - 1);
      for (const x of quiet) {
        expect(x.wait).toBe('0');
        expect([200, 202]).toContain(x.status);
      }
    }
    expect(waiters[0]).not.toEqual(waiters[1]);
    const all = recording();
    expectCertified(await sdk({ fetch: all.fetch, waitOn: N }).infer(nextImage()));
    expect(posts(all).filter((x) => Number(x.wait) > 0)).toHaveLength(N);
    for (const bad of [0, -1, 1.5, Number.NaN])
      expect(() => sdk({ waitOn: bad })).toThrow(expect.objectContaining({ code: 'CLIENT_CONFIG' }));
  });

  it('waitOn: a waiting node that fails wakes the quiet ones at once; waiters that stall are passed over after hedgeMs, or at half the call', async () => {
    // The first call of a fresh client waits on nodes 0 and 1 (round robin from 0). hedgeMs Infinity and
    // 60 s calls: the quiet nodes' timer fires after 30 s, so an answer within 20 s means a failure woke
    // them (a margin for a machine that stalls for seconds).
    const dead = await deadUrl();
    const { url: staller, held } = await stallingNode();
    try {
      for (const other of [dead, staller]) {
        const nodes = withNode(0, dead).map((n) => (n.id === 1 ? { id: 1, api: other } : n));
        const t0 = Date.now();
        const r = expectCertified(await sdk({ nodes, timeoutMs: 60_000 }).infer(nextImage()));
        expect(Date.now() - t0).toBeLessThan(20_000);
        expect([2, 3]).toContain(r.servedBy);
      }
      // Both waiters take the request and never answer.
      const stalls = withNode(0, staller).map((n) => (n.id === 1 ? { id: 1, api: staller } : n));
      const s = expectCertified(
        await sdk({ nodes: stalls, hedgeMs: 300, timeoutMs: 10_000 }).infer(images[0]),
      );
      expect([2, 3]).toContain(s.servedBy);
      expect(held.length).toBeGreaterThanOrEqual(2);
      // Without a hedge the quiet nodes are asked at half the call's time, not before.
      const t0 = Date.now();
      const patient = expectCertified(await sdk({ nodes: stalls, timeoutMs: 6000 }).infer(images[0]));
      expect(Date.now() - t0).toBeGreaterThanOrEqual(2900);
      expect([2, 3]).toContain(patient.servedBy);
    } finally {
      for (const res of held) res.destroy();
    }
  });

  it('fails over from a node that is down', async () => {
    const dead = await deadUrl();
    const r = expectCertified(await sdk({ nodes: withNode(1, dead), sendTo: [1] }).infer(nextImage()));
    expect(r.servedBy).not.toBe(1);
    const s = expectCertified(await sdk({ nodes: withNode(1, dead) }).infer(nextImage()));
    expect(s.servedBy).not.toBe(1);
  });

  it('OVERLOADED when every node that answered turned the request away for load and none took it; certified when one took it', async () => {
    let posts = 0;
    const busy = await fakeNode((req, res) => {
      void readBody(req).then(() => {
        posts++;
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' }).end(
          JSON.stringify({
            error: { code: 'OVERLOADED', message: 'the node holds 9000 requests; retry later' },
          }),
        );
      });
    });
    const dead = await deadUrl();
    // Three nodes overloaded, one down: nobody took it. Sent again after Retry-After (1 s, overloadRetry)
    // while the call has time, then OVERLOADED.
    const nodes = [busy, busy, busy, dead].map((api, id) => ({ id, api }));
    const one = sdk({ nodes, timeoutMs: 1500, hedgeMs: 0 });
    const e = await one.infer(nextImage()).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DropbearError);
    expect((e as DropbearError).code).toBe('OVERLOADED');
    expect((e as DropbearError).message).toMatch(/node 0: OVERLOADED the node holds 9000 requests/);
    // A batch: each node is asked again after its Retry-After (1 s) while the deadline leaves time, then
    // the items end as OVERLOADED, saying which nodes refused. The deadline (2.05 s) falls just after a
    // second Retry-After: a third POST then would have 50 ms left, too little to be certified.
    posts = 0;
    const t0 = Date.now();
    const batch = await sdk({ nodes, timeoutMs: 2050, hedgeMs: 0 }).inferBatch([nextImage(), nextImage()]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(batch.map((r) => (r as DropbearError).code)).toEqual(['OVERLOADED', 'OVERLOADED']);
    const msg = (batch[0] as DropbearError).message;
    for (const id of [0, 1, 2]) expect(msg).toContain(`node ${id}: OVERLOADED`);
    expect(msg).toMatch(/node 3: NETWORK/);
    // Once per node at the start and once more after Retry-After (at 1 s), not a third time at 2 s.
    expect(posts).toBe(6);
    // In chunks of one request (maxBodyBytes): each node refuses the first twice and is never sent the
    // second, which ends as OVERLOADED too (the nodes said they are overloaded), not as "no answer".
    const pair = one.signBatch([nextImage(), nextImage()]);
    const size = Math.max(...pair.map((sr) => encode(SignedRequest, sr).length));
    posts = 0;
    const split = await sdk({ nodes, timeoutMs: 2050, hedgeMs: 0, maxBodyBytes: size + 3 }).sendBatch(pair);
    expect(posts).toBe(6);
    expect(split.map((r) => (r as DropbearError).code)).toEqual(['OVERLOADED', 'OVERLOADED']);
    for (const id of [0, 1, 2])
      expect((split[1] as DropbearError).message).toContain(`node ${id}: OVERLOADED`);
    // Three nodes overloaded, one real: the real one takes the requests and the group certifies them.
    const mixed = sdk({ nodes: real.map((n) => (n.id === 3 ? n : { id: n.id, api: busy })), hedgeMs: 0 });
    expectCertified(await mixed.infer(nextImage()));
    for (const r of await mixed.inferBatch([nextImage(), nextImage()])) expectCertified(r);
  });

  it('skips a node whose certificate does not verify (bad signature, changed vote, another request)', async () => {
    for (const tamper of [
      flipSignature,
      flipVote,
      () => fromJson(Certificate, toJson(Certificate, firstCert.certificate)),
    ]) {
      const liar = await tamperingNode(real[0].api, tamper);
      const c = sdk({ nodes: withNode(0, liar.url), sendTo: [0] });
      const sr = c.sign(nextImage());
      const r = expectCertified(await c.send(sr), sr);
      expect(r.servedBy).not.toBe(0);
      expect(liar.tampered()).toBeGreaterThan(0);
    }
  });

  it('one Byzantine node refusing every request with a "final" code cannot fail a good request', async () => {
    const refuser = await fakeNode((_req, res) => {
      res
        .writeHead(401, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { code: 'REQUEST_BAD_SIGNATURE', message: 'lies' } }));
    });
    const nodes = withNode(0, refuser);
    const r = expectCertified(await sdk({ nodes, sendTo: [0] }).infer(nextImage()));
    expect(r.servedBy).not.toBe(0);
    const b = await sdk({ nodes, sendTo: [0] }).inferBatch([nextImage(), nextImage()]);
    for (const x of b) expect(expectCertified(x).servedBy).not.toBe(0);
  });

  it('skips a node that answers garbage JSON or 500', async () => {
    const garbage = await fakeNode((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"certificate": {"version": 1, "outc');
    });
    const broken = await fakeNode((_req, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' }).end('internal server error');
    });
    const nodes = withNode(0, garbage).map((n) => (n.id === 1 ? { id: 1, api: broken } : n));
    const r = expectCertified(await sdk({ nodes, sendTo: [0, 1] }).infer(nextImage()));
    expect([2, 3]).toContain(r.servedBy);
    const b = await sdk({ nodes, sendTo: [0, 1] }).inferBatch([nextImage(), nextImage()]);
    for (const x of b) expect([2, 3]).toContain(expectCertified(x).servedBy);
  });

  it('hedging: a node that takes a request and never answers does not hold it up; the others certify it', async () => {
    const { url: staller, held } = await stallingNode();
    const nodes = withNode(0, staller);
    // The same image each time (fresh nonces make fresh requests): the later tests' images stay as they were.
    const rec = recording();
    const c = sdk({ nodes, sendTo: [0], hedgeMs: 300, timeoutMs: 10_000, fetch: rec.fetch });
    const sr = c.sign(images[0]);
    const r = expectCertified(await c.send(sr), sr);
    expect(r.servedBy).not.toBe(0);
    const b = await c.inferBatch([images[0], images[0], images[0]]);
    for (const x of b) expect(expectCertified(x).servedBy).not.toBe(0);
    // The others were asked only after the staller took the request (it got the first POST of each call).
    const posts = rec.stats.calls.filter((x) => x.method === 'POST').map((x) => new URL(x.url).origin);
    expect(posts[0]).toBe(new URL(staller).origin);
    expect(held.length).toBeGreaterThanOrEqual(2);
    // Without hedging the call waits for the staller to the end of its time, and nobody else is asked.
    const patient = sdk({ nodes, sendTo: [0], hedgeMs: Number.POSITIVE_INFINITY, timeoutMs: 2000 });
    await expect(patient.infer(images[0])).rejects.toMatchObject({ code: 'NO_CERTIFICATE' });
    for (const res of held) res.destroy();
  });

  it('rejects what f+1 nodes refuse (bad signature, expired), quickly, without asking every node twice', async () => {
    const rec = recording();
    // 60 s calls: ending both within 30 s is ending on the refusals, not at the deadline.
    const c = sdk({ fetch: rec.fetch, sendTo: 1, timeoutMs: 60_000 });
    const forged = c.sign(nextImage());
    if (forged.auth.kind !== 'single') throw new Error('expected a single signature');
    forged.auth.signature[0] ^= 1;
    const t0 = Date.now();
    await expect(c.send(forged)).rejects.toMatchObject({ code: 'REQUEST_BAD_SIGNATURE' });

    const input = nextImage();
    const old: Request = {
      groupId: group.groupId,
      client: clientKey.publicKey,
      nonce: 1,
      timestamp: Date.now() - group.genesis.params.expiryMs - 60_000,
      inputDigest: sha256(input),
      policy: null,
      maxFee: 10,
    };
    await expect(c.send(signRequest(old, input, clientKey))).rejects.toMatchObject({
      code: 'REQUEST_EXPIRED',
    });
    expect(Date.now() - t0).toBeLessThan(30_000);
    // One node's refusal is not trusted (it could be the Byzantine one): the others are asked, and the call
    // ends once f+1 = 2 distinct nodes refused. Each node is asked at most once per request.
    const posts = rec.stats.calls.filter((x) => x.method === 'POST');
    expect(posts.length).toBeGreaterThanOrEqual(4);
    expect(posts.length).toBeLessThanOrEqual(2 * N);

    const all = recording();
    await expect(sdk({ fetch: all.fetch }).send(forged)).rejects.toBeInstanceOf(DropbearError);
    expect(all.stats.calls.length).toBeLessThanOrEqual(N);
  });

  it('inferBatch: 20 images under ONE client signature, 20 verified certificates', async () => {
    const rec = recording();
    const c = sdk({ fetch: rec.fetch, sendTo: 2 });
    const inputs = Array.from({ length: 20 }, nextImage);
    const signs0 = cryptoStats.signs;
    const pending = c.inferBatch(inputs);
    // Signing happens before the first await; the nodes (same process) sign nothing in between.
    expect(cryptoStats.signs - signs0).toBe(1);
    const results = await pending;
    expect(results).toHaveLength(20);
    const posts = rec.stats.calls.filter((x) => x.method === 'POST');
    expect(posts).toHaveLength(2); // one POST per chosen node, all 20 in it
    const sent = decode(RequestList, posts[0].body as Uint8Array);
    expect(sent).toHaveLength(20);
    expect(new Set(sent.map((s) => (s.auth.kind === 'batch' ? hex(s.auth.signature) : 'single'))).size).toBe(
      1,
    );
    expect(sent[0].auth.kind).toBe('batch');
    results.forEach((r, i) => {
      expectCertified(r, sent[i]);
      expect((r as InferResult).requestId).toBe(hex(requestIdOf(sent[i])));
      expect(hex((r as InferResult).certificate.outcome.inputDigest)).toBe(hex(sha256(inputs[i])));
    });
  });

  it("inferBatch with signing 'each': one signature per request, still one POST per chosen node", async () => {
    const rec = recording();
    const c = sdk({ fetch: rec.fetch, sendTo: 2 });
    const inputs = Array.from({ length: 6 }, nextImage);
    const signs0 = cryptoStats.signs;
    const pending = c.inferBatch(inputs, { signing: 'each' });
    expect(cryptoStats.signs - signs0).toBe(6);
    const results = await pending;
    const posts = rec.stats.calls.filter((x) => x.method === 'POST');
    expect(posts).toHaveLength(2);
    expect(posts.every((x) => x.sent === REQUEST_LIST_TYPE)).toBe(true);
    const sent = decode(RequestList, posts[0].body as Uint8Array);
    expect(sent.map((s) => s.auth.kind)).toEqual(Array(6).fill('single'));
    results.forEach((r, i) => {
      expectCertified(r, sent[i]);
      expect(hex((r as InferResult).certificate.outcome.inputDigest)).toBe(hex(sha256(inputs[i])));
    });
    await expect(c.inferBatch([nextImage()], { signing: 'both' as unknown as 'each' })).rejects.toMatchObject(
      { code: 'CLIENT_CONFIG' },
    );
  });

  it('coalesce: infer calls of one turn share one signature and one POST per node; a call alone, or with other options, goes on its own', async () => {
    const rec = recording();
    const c = sdk({ fetch: rec.fetch, sendTo: 2, coalesce: true });
    const inputs = Array.from({ length: 5 }, nextImage);
    const other = nextImage();
    const fee = group.genesis.nodes.reduce((a, n) => a + n.fee, 0) + 1;
    const results = await Promise.all([...inputs.map((x) => c.infer(x)), c.infer(other, { maxFee: fee })]);
    const posts = rec.stats.calls.filter((x) => x.method === 'POST');
    const lists = posts.filter((x) => x.sent === REQUEST_LIST_TYPE);
    const singles = posts.filter((x) => x.sent !== REQUEST_LIST_TYPE);
    // The five: one list POST to each of the two chosen nodes. The sixth (another fee): a request of its own.
    expect(lists).toHaveLength(2);
    expect(singles.length).toBeGreaterThanOrEqual(1);
    const sent = decode(RequestList, lists[0].body as Uint8Array);
    expect(sent).toHaveLength(5);
    expect(new Set(sent.map((x) => (x.auth.kind === 'batch' ? hex(x.auth.signature) : 'single'))).size).toBe(
      1,
    );
    expect(sent[0].auth.kind).toBe('batch');
    for (const x of singles) {
      const sr = decode(SignedRequest, x.body as Uint8Array);
      expect(sr.auth.kind).toBe('single');
      expect(sr.request.maxFee).toBe(fee);
    }
    // Each call got the certificate of its own input.
    results.forEach((r, i) => {
      const mine = expectCertified(r);
      expect(hex(mine.certificate.outcome.inputDigest)).toBe(hex(sha256(i < 5 ? inputs[i] : other)));
    });
    expect(new Set(results.map((r) => r.requestId)).size).toBe(6);

    // Alone in its turn: one signature over the request itself, as without coalescing.
    const before = rec.stats.calls.length;
    expectCertified(await c.infer(nextImage()));
    const late = rec.stats.calls.slice(before).filter((x) => x.method === 'POST');
    expect(late.length).toBeGreaterThanOrEqual(1);
    for (const x of late) {
      expect(x.sent).not.toBe(REQUEST_LIST_TYPE);
      expect(decode(SignedRequest, x.body as Uint8Array).auth.kind).toBe('single');
    }

    // Options that cannot be signed (a negative minAgree) fail every call that shares them, and only those.
    const bad = { policy: { kind: 'top1', minAgree: -1 } } as unknown as InferOptions;
    const mixed = await Promise.allSettled([
      c.infer(nextImage(), bad),
      c.infer(nextImage(), bad),
      c.infer(nextImage()),
    ]);
    expect(mixed.map((m) => m.status)).toEqual(['rejected', 'rejected', 'fulfilled']);
  });

  it('inferBatch: chunks by bytes, fails over from tampered certificates, settles bad members alone', async () => {
    // A body limit of about a third of the ten images (at least one image and its request fields): several
    // POSTs per node, each under it. Derived from the images, whose sizes vary (the val JPEGs here are 14–49 KB).
    const rec = recording();
    const inputs = Array.from({ length: 10 }, nextImage);
    const total = inputs.reduce((a, x) => a + x.length, 0);
    const limit = Math.max(Math.ceil(total / 3), Math.max(...inputs.map((x) => x.length))) + 4096;
    const small = sdk({ fetch: rec.fetch, sendTo: [3], maxBodyBytes: limit });
    for (const r of await small.inferBatch(inputs)) expectCertified(r);
    const posts = rec.stats.calls.filter((x) => x.method === 'POST');
    expect(posts.length).toBeGreaterThan(1);
    for (const p of posts) expect((p.body as Uint8Array).length).toBeLessThanOrEqual(limit);

    // The only chosen node hands out broken certificates: every item goes to the others.
    const liar = await tamperingNode(real[1].api, flipSignature);
    const c = sdk({ nodes: withNode(1, liar.url), sendTo: [1] });
    const results = await c.inferBatch(Array.from({ length: 6 }, nextImage));
    for (const r of results) expect(expectCertified(r).servedBy).not.toBe(1);
    expect(liar.tampered()).toBeGreaterThan(0);

    // One member with a broken inclusion path: refused alone, the rest certified.
    const srs = sdk().signBatch(Array.from({ length: 4 }, nextImage));
    const bad = srs[1].auth;
    if (bad.kind !== 'batch') throw new Error('expected a batch signature');
    bad.path[0] = bad.path[0].map((b) => b ^ 0xff);
    const mixed = await sdk().sendBatch(srs);
    expect(mixed[1]).toMatchObject({ code: 'REQUEST_BAD_SIGNATURE' });
    for (const i of [0, 2, 3]) expectCertified(mixed[i], srs[i]);
  });

  it('inferBatch: smaller POSTs for a node with a smaller body limit; a request too large for JSON goes as bytes', async () => {
    const strict = buildApi(group.hosts[2], { bodyLimitBytes: 100_000 });
    const url = await strict.listen({ host: '127.0.0.1', port: 0 });
    try {
      const rec = recording();
      const c = sdk({ nodes: withNode(2, url), sendTo: [2], fetch: rec.fetch });
      for (const r of await c.inferBatch(Array.from({ length: 8 }, nextImage)))
        expect(expectCertified(r).servedBy).toBe(2);
      const posts = rec.stats.calls.filter((x) => x.method === 'POST');
      expect(posts[0].status).toBe(413);
      expect(posts.filter((p) => p.status === 200).length).toBeGreaterThan(1);
      for (const p of posts.filter((x) => x.status !== 413))
        expect((p.body as Uint8Array).length).toBeLessThanOrEqual(100_000);
    } finally {
      await closeApp(strict);
    }

    const rec = recording();
    const c = sdk({ sendTo: [1], fetch: rec.fetch, maxBodyBytes: 1000 });
    for (const r of await c.inferBatch([nextImage(), nextImage()]))
      expect(expectCertified(r).servedBy).toBe(1);
    const posts = rec.stats.calls.filter((x) => x.method === 'POST');
    expect(posts).toHaveLength(2);
    for (const p of posts) expect(p.body).toBeInstanceOf(Uint8Array); // canonical bytes, one request each
  });

  it('inferBatch: at most 1024 requests per POST', async () => {
    // A fake node that refuses every item with a code that is not final: no certificate, but every POST seen.
    const sizes: number[] = [];
    const fake = await fakeNode(async (req, res) => {
      expect(req.headers['content-type']).toBe(REQUEST_LIST_TYPE);
      const requests = decode(RequestList, await readBody(req));
      sizes.push(requests.length);
      const results = requests.map(
        (sr): RequestAnswer => ({
          kind: 'error',
          requestId: requestIdOf(sr),
          code: 'NODE_STOPPED',
          message: 'fake',
        }),
      );
      res.writeHead(200, { 'content-type': REQUEST_ANSWERS_TYPE }).end(encode(RequestAnswers, results));
    });
    const tiny = Array.from({ length: 1500 }, (_, i) => Uint8Array.of(i & 0xff, i >> 8));
    const out = await sdk({ nodes: [{ id: 0, api: fake }], timeoutMs: 5000 }).inferBatch(tiny);
    expect(sizes).toEqual([1024, 476]);
    expect(out.every((r) => r instanceof DropbearError && r.code === 'NO_CERTIFICATE')).toBe(true);
  });

  it('inferMany with concurrency', async () => {
    const rec = recording();
    const c = sdk({ fetch: rec.fetch, sendTo: 1 });
    const seen: number[] = [];
    const results = await c.inferMany(Array.from({ length: 8 }, nextImage), {
      concurrency: 3,
      onResult: (i) => seen.push(i),
    });
    for (const r of results) expectCertified(r);
    expect(seen.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(rec.stats.maxInFlight).toBeLessThanOrEqual(3);
    expect(rec.stats.maxInFlight).toBeGreaterThan(1);
  });

  it('certificate(id) from any node; null when none has it', async () => {
    const c = sdk({ nodes: withNode(0, await deadUrl()) });
    const got = await c.certificate(firstCert.requestId);
    expect(got).not.toBeNull();
    expect(verifyCertificate(got, group.genesis).ok).toBe(true);
    expect(hex(got!.outcome.requestId)).toBe(firstCert.requestId);
    expect(await c.certificate('ab'.repeat(32))).toBeNull();
  });

  it('a large group: every node asked at once, one request or a batch, without a MaxListenersExceededWarning', async () => {
    // 13 nodes (f = 4) that never answer: with the hedge at 0 the 13 calls wait on the call's one abort
    // signal at once. Node warns past 10 listeners on a signal; global fetch raises the limit on the
    // signals it gets, a fetch of the user's own (like the benches' HTTP client, where n = 10 showed the
    // warning) need not.
    const big = makeGroup(13, 4, 21);
    let calls = 0;
    const ownFetch: typeof fetch = (_url, init) =>
      new Promise((_resolve, reject) => {
        calls++;
        const signal = init?.signal as AbortSignal;
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const c = new DropbearClient({
        genesis: big.genesis,
        nodes: big.genesis.nodes.map((n) => ({ id: n.id, api: 'http://127.0.0.1:9' })),
        key: big.client,
        timeoutMs: 300,
        hedgeMs: 0,
        fetch: ownFetch,
      });
      await expect(c.infer(nextImage())).rejects.toBeInstanceOf(DropbearError);
      expect(calls).toBe(13);
      // The same for a batch signed once: one POST per node.
      const batch = await c.inferBatch([nextImage(), nextImage()]);
      expect(batch.map((r) => (r as DropbearError).code)).toEqual(['NO_CERTIFICATE', 'NO_CERTIFICATE']);
      expect(calls).toBe(26);
      // Warnings are emitted on a later tick.
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.includes('MaxListeners'))).toEqual([]);
  });

  it('lets the slower waiting POST finish once the first certificate verifies: its connection is kept for the next call', async () => {
    // Node 1 answers 150 ms after the real node 1 (its certificate comes second); node 0 is the real one.
    // The SDK used to cut that POST off once node 0's certificate verified, which closed its connection,
    // so every call opened a new one.
    const answered: string[] = [];
    let connections = 0;
    const slow = await fakeNode(async (req, res) => {
      res.on('close', () => answered.push(res.writableFinished ? 'answered' : 'cut off'));
      const body = req.method === 'POST' ? new Uint8Array(await readBody(req)) : undefined;
      const r = await fetch(`${real[1].api}${req.url}`, {
        method: req.method,
        headers: {
          'content-type': String(req.headers['content-type'] ?? ''),
          accept: String(req.headers.accept ?? ''),
        },
        body,
      });
      const bytes = Buffer.from(await r.arrayBuffer());
      await new Promise((done) => setTimeout(done, 150));
      res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
      res.end(bytes);
    });
    servers[servers.length - 1].on('connection', () => connections++);
    const c = sdk({ nodes: withNode(1, slow), sendTo: [0, 1] });
    for (let i = 0; i < 3; i++) {
      const r = expectCertified(await c.infer(nextImage()));
      expect(r.servedBy).toBe(0);
      // The call is over; the other POST is still on its way, then read and put aside.
      await new Promise((done) => setTimeout(done, 400));
    }
    expect(answered).toEqual(['answered', 'answered', 'answered']);
    expect(connections).toBe(1);
  });

  it("still certifies after a node's HTTP server is closed", async () => {
    await closeApp(group.apps[3]);
    const r = expectCertified(await sdk({ sendTo: [3] }).infer(nextImage()));
    expect(r.servedBy).not.toBe(3);
    for (const x of await sdk({ sendTo: [3] }).inferBatch([nextImage(), nextImage(), nextImage()]))
      expect(expectCertified(x).servedBy).not.toBe(3);
  });
});
