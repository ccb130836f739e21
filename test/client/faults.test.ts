/**
 * The SDK against faulty nodes, over real HTTP on 127.0.0.1: fake nodes (node:http) that refuse, lie,
 * stream endless answers, or certify with a valid certificate signed by the group's keys (makeGroup's), and
 * the real HTTP API (src/node/api.ts) over a stub host that certifies what it is sent, except the requests
 * it is told to hold for ever. No model runs here.
 */
import { getEventListeners } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { buildCertificates } from '../../src/certificate/index.ts';
import {
  DropbearError as ClientError,
  type ClientOptions,
  DropbearClient,
  type InferResult,
} from '../../src/client/index.ts';
import { encodeTensorInput } from '../../src/inference/preprocess.ts';
import { type ApiOptions, buildApi } from '../../src/node/api.ts';
import type { NodeHost } from '../../src/node/host.ts';
import { NodeMetrics } from '../../src/node/metrics.ts';
import {
  buildTree,
  type Certificate,
  Certificate as CertificateCodec,
  DropbearError,
  decide,
  decode,
  encode,
  groupIdOf,
  hex,
  leafHash,
  type Outcome,
  Outcome as OutcomeCodec,
  quorumOf,
  REQUEST_ANSWERS_TYPE,
  type Receipt,
  type RequestAnswer,
  RequestAnswers,
  RequestList,
  receiptHashOf,
  requestIdOf,
  SignedRequest,
  sha256,
  signReceiptAs,
  toJson,
} from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';

const G = makeGroup(4, 1, 7);

/** A valid certificate for `sr` (signed by the first q node keys, every vote for label 5). */
function certify(sr: SignedRequest): Certificate {
  const q = quorumOf(G.genesis);
  const policy = sr.request.policy ?? G.genesis.policy;
  const votes = G.genesis.nodes.slice(0, q).map((n) => ({
    node: n.id,
    modelDigest: n.modelDigest,
    result: { kind: 'class' as const, top: [{ label: 5, score: 900_000 }] },
  }));
  const outcome: Outcome = {
    requestId: requestIdOf(sr),
    client: sr.request.client,
    inputDigest: sr.request.inputDigest,
    policy,
    votes,
    decision: decide(
      policy,
      votes.map((v) => v.result),
    ),
    fee: 1,
  };
  const tree = buildTree([leafHash(encode(OutcomeCodec, outcome))]);
  const receipt: Receipt = {
    groupId: groupIdOf(G.genesis),
    seq: 1,
    batchDigest: sha256(requestIdOf(sr)),
    prevReceipt: new Uint8Array(32),
    resultsRoot: tree.root,
    resultsCount: 1,
  };
  const rh = receiptHashOf(receipt);
  const sigs = G.keys.slice(0, q).map((k, node) => ({
    node,
    signature: signReceiptAs(groupIdOf(G.genesis), receipt, rh, null, k),
    view: null,
  }));
  return buildCertificates([outcome], tree, receipt, sigs, q)[0];
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void | Promise<void>;
const servers: Server[] = [];
const apps: FastifyInstance[] = [];

afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  for (const a of apps) await a.close();
});

async function fakeNode(h: Handler): Promise<string> {
  const s = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      Promise.resolve(h(req, res, Buffer.concat(parts))).catch(() => res.destroy());
    });
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

/** A URL nothing listens on. */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  await new Promise<void>((r) => s.close(() => r()));
  return url;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function requestsOf(req: IncomingMessage, body: Buffer): SignedRequest[] {
  if ((req.headers['content-type'] ?? '').startsWith('application/octet-stream'))
    return [decode(SignedRequest, body)];
  return decode(RequestList, body);
}

function answers(res: ServerResponse, status: number, a: RequestAnswer[]): void {
  res.writeHead(status, { 'content-type': REQUEST_ANSWERS_TYPE }).end(encode(RequestAnswers, a));
}

function jsonError(res: ServerResponse, status: number, code: string, message: string): void {
  res
    .writeHead(status, { 'content-type': 'application/json' })
    .end(JSON.stringify({ error: { code, message } }));
}

/** An honest fake node: certifies what it is sent after `delayMs`, and serves GET /v1/certificates/:id. */
function honest(delayMs = 0): Handler {
  const certs = new Map<string, Certificate>();
  return async (req, res, body) => {
    if (req.method === 'POST') {
      const srs = requestsOf(req, body);
      await sleep(delayMs);
      if (res.destroyed) return;
      const out = srs.map((sr) => {
        const c = certify(sr);
        certs.set(hex(requestIdOf(sr)), c);
        return { kind: 'certificate' as const, certificate: c };
      });
      return answers(res, 200, out);
    }
    const id = (req.url ?? '').split('/')[3]?.split('?')[0] ?? '';
    const c = certs.get(id);
    if (!c) return jsonError(res, 404, 'CERTIFICATE_NOT_FOUND', 'not here');
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ requestId: id, certificate: toJson(CertificateCodec, c) }));
  };
}

/** A node that refuses every POST whole (JSON, as the API refuses a single request) with `code`. */
function refuser(status: number, code: string, delayMs = 0): Handler {
  return async (_req, res) => {
    await sleep(delayMs);
    jsonError(res, status, code, `${code} from this node`);
  };
}

/** A node that refuses each request of a POST with `code` (binary per-item errors). */
function itemRefuser(code: string, delayMs = 0): Handler {
  return async (req, res, body) => {
    const srs = requestsOf(req, body);
    await sleep(delayMs);
    answers(
      res,
      200,
      srs.map((sr) => ({
        kind: 'error' as const,
        requestId: requestIdOf(sr),
        code,
        message: `${code} (item)`,
      })),
    );
  };
}

function client(nodes: string[], o: Partial<ClientOptions> = {}): DropbearClient {
  return new DropbearClient({
    genesis: G.genesis,
    nodes: nodes.map((api, id) => ({ id, api })),
    key: G.client,
    timeoutMs: 5000,
    hedgeMs: Number.POSITIVE_INFINITY,
    ...o,
  });
}

/** A client whose calls have 60 s: one that ends well within that ended on what the nodes answered. */
const patient = (nodes: string[]) => client(nodes, { timeoutMs: 60_000 });

let n = 0;
/** A fresh small input each call: an RGB image as a uint8 [2, 2, 3] tensor (what api.ts accepts). */
function input(): Uint8Array {
  const data = new Uint8Array(12);
  data[0] = n & 0xff;
  data[1] = (n >> 8) & 0xff;
  data[2] = Math.floor(Math.random() * 256);
  n++;
  return encodeTensorInput({ dtype: 'uint8', dims: [2, 2, 3], data });
}

function codeOf(x: unknown): string | undefined {
  return x instanceof DropbearError ? x.code : undefined;
}

function expectCertified(r: InferResult | Error): InferResult {
  if (r instanceof Error) throw r;
  expect(r.decision).toEqual({ kind: 'label', label: 5 });
  return r;
}

describe('refusals: only f+1 nodes agreeing on one code end a call', () => {
  it('one node refusing with a "final" code does not make the call fail with that code', async () => {
    const liar = await fakeNode(refuser(402, 'INSUFFICIENT_FUNDS'));
    // The others are down: nothing certifies, and the call ends once every node has failed.
    const down = [await deadUrl(), await deadUrl(), await deadUrl()];
    const e1 = await client([liar, ...down])
      .infer(input())
      .catch((e: unknown) => e);
    expect(codeOf(e1)).toBe('NO_CERTIFICATE');
    expect((e1 as Error).message).toContain('node 0: INSUFFICIENT_FUNDS');
    expect((e1 as Error).message).toContain('node 1: NETWORK');
    // The others are slow (certify after the call's deadline): the usual NO_CERTIFICATE at the deadline.
    const slow = [await fakeNode(honest(3000)), await fakeNode(honest(3000)), await fakeNode(honest(3000))];
    const t0 = Date.now();
    const e2 = await client([liar, ...slow], { timeoutMs: 800 })
      .infer(input())
      .catch((e: unknown) => e);
    expect(codeOf(e2)).toBe('NO_CERTIFICATE');
    expect((e2 as Error).message).toContain('node 0: INSUFFICIENT_FUNDS');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(700);
    const b = await client([liar, ...slow], { timeoutMs: 800 }).inferBatch([input(), input()]);
    for (const x of b) {
      expect(codeOf(x)).toBe('NO_CERTIFICATE');
      expect((x as Error).message).toContain('node 0: INSUFFICIENT_FUNDS');
    }
  });

  it('two nodes refusing with different codes (one honest node-specific refusal, one lie) do not end a call the others certify', async () => {
    const smallLimit = await fakeNode(refuser(413, 'BODY_TOO_LARGE'));
    const liar = await fakeNode(refuser(401, 'REQUEST_BAD_SIGNATURE'));
    const nodes = [smallLimit, liar, await fakeNode(honest(300)), await fakeNode(honest(300))];
    const r = expectCertified(await client(nodes).infer(input()));
    expect([2, 3]).toContain(r.servedBy);
    // The same with per-item refusals in a batch's binary answer.
    const own = await fakeNode(itemRefuser('INPUT_UNSUPPORTED'));
    const liarB = await fakeNode(itemRefuser('INPUT_UNDECODABLE'));
    const nodesB = [own, liarB, await fakeNode(honest(300)), await fakeNode(honest(300))];
    for (const x of await client(nodesB).inferBatch([input(), input()]))
      expect([2, 3]).toContain(expectCertified(x).servedBy);
  });

  it("a faulty node echoing an honest node's own refusal (f + 1 alike, a code that may be a node's own) does not end a call the others certify", async () => {
    // Node 0 is honest with a small body limit; node 1 lies with the same code; 2 and 3 certify. Before
    // 2026-12-05 the two alike (f + 1) ended the call while the group certified the request and charged it.
    const nodes = [
      await fakeNode(refuser(413, 'BODY_TOO_LARGE')),
      await fakeNode(refuser(413, 'BODY_TOO_LARGE')),
      await fakeNode(honest(300)),
      await fakeNode(honest(300)),
    ];
    expect([2, 3]).toContain(expectCertified(await client(nodes).infer(input())).servedBy);
    const nodesB = [
      await fakeNode(itemRefuser('INSUFFICIENT_FUNDS')),
      await fakeNode(itemRefuser('INSUFFICIENT_FUNDS')),
      await fakeNode(honest(300)),
      await fakeNode(honest(300)),
    ];
    for (const x of await client(nodesB).inferBatch([input(), input()]))
      expect([2, 3]).toContain(expectCertified(x).servedBy);
    // A code every honest node derives from the request alone still ends it with f + 1.
    const bad = [
      await fakeNode(refuser(401, 'REQUEST_BAD_SIGNATURE')),
      await fakeNode(refuser(401, 'REQUEST_BAD_SIGNATURE')),
      await fakeNode(honest(3000)),
      await fakeNode(honest(3000)),
    ];
    // The honest two would certify it after 3 s: an error, not a certificate, is the call ending on the
    // refusals before that.
    const e = await client(bad)
      .infer(input())
      .catch((x: unknown) => x);
    expect(codeOf(e)).toBe('REQUEST_BAD_SIGNATURE');
    expect((e as Error).message).toContain('f + 1 = 2 agree');
  });

  it('OVERLOADED only when every node asked surely did not take it: a POST still open at the deadline may have been taken', async () => {
    // Node 0 is busy; node 1 holds the POST (the group is slower than the call): before 2026-12-05 the call
    // said OVERLOADED ("no node took it"), and a client that signed a new request paid twice.
    const busy = await fakeNode(refuser(503, 'OVERLOADED'));
    const slow = await fakeNode(honest(3000));
    const e = await client([busy, slow], { timeoutMs: 800 })
      .infer(input())
      .catch((x: unknown) => x);
    expect(codeOf(e)).toBe('NO_CERTIFICATE');
    expect((e as Error).message).toContain('send the same signed request again');
    const b = await client([busy, slow], { timeoutMs: 800 }).inferBatch([input()]);
    expect(codeOf(b[0])).toBe('NO_CERTIFICATE');
    // Every node asked turned it away: OVERLOADED, as before.
    const e2 = await client([busy, await fakeNode(refuser(503, 'OVERLOADED'))], { timeoutMs: 800 })
      .infer(input())
      .catch((x: unknown) => x);
    expect(codeOf(e2)).toBe('OVERLOADED');
  });

  it('f+1 nodes refusing with the same code end the call with that code, naming them', async () => {
    const liar = await fakeNode(refuser(402, 'INSUFFICIENT_FUNDS'));
    const expired = () => fakeNode(refuser(400, 'REQUEST_EXPIRED', 50));
    const nodes = [liar, await expired(), await expired(), await expired()];
    const t0 = Date.now();
    const e = await patient(nodes)
      .infer(input())
      .catch((x: unknown) => x);
    expect(codeOf(e)).toBe('REQUEST_EXPIRED');
    expect((e as Error).message).toMatch(/nodes \d, \d/);
    expect((e as Error).message).not.toContain('INSUFFICIENT_FUNDS');
    expect(Date.now() - t0).toBeLessThan(2000);
    const itemExpired = () => fakeNode(itemRefuser('REQUEST_EXPIRED', 50));
    const nodesB = [
      await fakeNode(itemRefuser('INSUFFICIENT_FUNDS')),
      await itemExpired(),
      await itemExpired(),
      await itemExpired(),
    ];
    for (const x of await patient(nodesB).inferBatch([input(), input()])) {
      expect(codeOf(x)).toBe('REQUEST_EXPIRED');
      expect((x as Error).message).toMatch(/nodes \d, \d/);
    }
    // A client of fewer than f+1 nodes: all of them refusing alike is all it can learn.
    const alone = await patient([nodes[1]])
      .infer(input())
      .catch((x: unknown) => x);
    expect(codeOf(alone)).toBe('REQUEST_EXPIRED');
    // Refusals of a whole batch POST (JSON) count as each item's, alike.
    for (const x of await patient(nodes).inferBatch([input(), input()])) {
      expect(codeOf(x)).toBe('REQUEST_EXPIRED');
      expect((x as Error).message).toMatch(/nodes \d, \d/);
    }
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it('q nodes refusing an input or a fee alike end the call with that code (it was NO_CERTIFICATE)', async () => {
    // An image over the input bounds, a tensor of another shape, a maxFee below the cheapest certificate:
    // every node says so before taking the request, as for INPUT_UNDECODABLE.
    for (const [status, code] of [
      [413, 'INPUT_TOO_LARGE'],
      [400, 'INPUT_SHAPE'],
      [400, 'INPUT_TENSOR_MALFORMED'],
      [400, 'MAX_FEE_TOO_LOW'],
    ] as const) {
      const nodes = await Promise.all([0, 1, 2, 3].map(() => fakeNode(refuser(status, code))));
      const e = await patient(nodes)
        .infer(input())
        .catch((x: unknown) => x);
      expect([code, codeOf(e)]).toEqual([code, code]);
      const nodesB = await Promise.all([0, 1, 2, 3].map(() => fakeNode(itemRefuser(code))));
      for (const x of await patient(nodesB).inferBatch([input(), input()])) expect(codeOf(x)).toBe(code);
    }
  });

  it('every node refusing, with different codes: NO_CERTIFICATE at once, listing each node', async () => {
    const codes = ['BODY_TOO_LARGE', 'REQUEST_BAD_SIGNATURE', 'INSUFFICIENT_FUNDS', 'REQUEST_EXPIRED'];
    const nodes = await Promise.all(codes.map((c, i) => fakeNode(refuser(400, c, 20 * i))));
    const t0 = Date.now();
    const e = await patient(nodes)
      .infer(input())
      .catch((x: unknown) => x);
    expect(codeOf(e)).toBe('NO_CERTIFICATE');
    codes.forEach((c, i) => {
      expect((e as Error).message).toContain(`node ${i}: ${c}`);
    });
    const nodesB = await Promise.all(codes.map((c, i) => fakeNode(itemRefuser(c, 20 * i))));
    for (const x of await patient(nodesB).inferBatch([input(), input()])) {
      expect(codeOf(x)).toBe('NO_CERTIFICATE');
      codes.forEach((c, i) => {
        expect((x as Error).message).toContain(`node ${i}: ${c}`);
      });
    }
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
});

describe('options: bad ones reject (promises) or throw CLIENT_CONFIG (constructor)', () => {
  it('infer and inferBatch reject on options that signing refuses; they never throw synchronously', async () => {
    const c = client([await fakeNode(honest())]);
    const calls: (() => Promise<unknown>)[] = [
      () => c.infer(input(), { maxFee: -1 }),
      () => c.infer(input(), { maxFee: 1.5 }),
      () => c.infer(input(), { policy: { kind: 'top1', minAgree: 2.5 } }),
      () => c.inferBatch([input()], { maxFee: -1 }),
      () => c.inferBatch([input()], { policy: { kind: 'top1', minAgree: 2.5 } }),
    ];
    for (const call of calls) {
      let p: Promise<unknown> | undefined;
      expect(() => {
        p = call();
      }).not.toThrow();
      await expect(p).rejects.toBeInstanceOf(DropbearError);
    }
  });

  it('the constructor refuses timeoutMs and sendTo that are not usable', async () => {
    const url = await fakeNode(honest());
    for (const timeoutMs of [Number.NaN, 0, -1, Number.POSITIVE_INFINITY, 2 ** 31, 1e12])
      expect(() => client([url], { timeoutMs })).toThrow(expect.objectContaining({ code: 'CLIENT_CONFIG' }));
    for (const sendTo of [0, -1, Number.NaN, 1.5, Number.POSITIVE_INFINITY, [], [9], [0, 1.5], [-1]])
      expect(() => client([url], { sendTo: sendTo as number | number[] })).toThrow(
        expect.objectContaining({ code: 'CLIENT_CONFIG' }),
      );
    expect(() => client([url], { maxResponseBytes: 0 })).toThrow(
      expect.objectContaining({ code: 'CLIENT_CONFIG' }),
    );
    // Taken before: a NaN hedgeMs woke every quiet node at once but never hedged; a maxBodyBytes of NaN
    // was no byte bound at all.
    for (const hedgeMs of [Number.NaN, -1, Number.NEGATIVE_INFINITY])
      expect(() => client([url], { hedgeMs })).toThrow(expect.objectContaining({ code: 'CLIENT_CONFIG' }));
    for (const maxBodyBytes of [Number.NaN, 0, -1, 1.5, Number.POSITIVE_INFINITY])
      expect(() => client([url], { maxBodyBytes })).toThrow(
        expect.objectContaining({ code: 'CLIENT_CONFIG' }),
      );
    for (const overloadRetry of [
      true,
      null,
      { maxRetries: -1 },
      { maxRetries: 1.5 },
      { baseDelayMs: Number.NaN },
      { maxDelayMs: -1 },
      { maxDelayMs: Number.POSITIVE_INFINITY },
      { random: 1 },
    ])
      expect(() => client([url], { overloadRetry: overloadRetry as ClientOptions['overloadRetry'] })).toThrow(
        expect.objectContaining({ code: 'CLIENT_CONFIG' }),
      );
    // What is usable still is.
    for (const sendTo of ['all', 1, 5, [0]] as const)
      expectCertified(await client([url], { sendTo: sendTo as 'all' | number | number[] }).infer(input()));
    expectCertified(await client([url], { timeoutMs: 2 ** 31 - 1 }).infer(input()));
    for (const hedgeMs of [0, 50, Number.POSITIVE_INFINITY])
      expectCertified(await client([url], { hedgeMs, sendTo: 1 }).infer(input()));
  });

  it('the constructor refuses missing or malformed options with CLIENT_CONFIG (a TypeError, or taken, before)', async () => {
    const url = await fakeNode(honest());
    const nodes = [{ id: 0, api: url }];
    const other = makeGroup(4, 1, 8).client;
    const cases: [string, unknown][] = [
      ['no options', undefined],
      ['no nodes', { genesis: G.genesis, key: G.client }],
      ['no genesis', { nodes, key: G.client }],
      ['one id twice', { genesis: G.genesis, key: G.client, nodes: [nodes[0], { id: 0, api: url }] }],
      ['an id the genesis lacks', { genesis: G.genesis, key: G.client, nodes: [{ id: 4, api: url }] }],
      ['an id as a string', { genesis: G.genesis, key: G.client, nodes: [{ id: '0', api: url }] }],
      [
        'an api without a scheme',
        { genesis: G.genesis, key: G.client, nodes: [{ id: 0, api: '127.0.0.1:1' }] },
      ],
      ['no key', { genesis: G.genesis, nodes }],
      ['a key as a string', { genesis: G.genesis, nodes, key: 'secret' }],
      ['half a key', { genesis: G.genesis, nodes, key: { seed: G.client.seed } }],
      ['a key of two keys', { genesis: G.genesis, nodes, key: { ...G.client, publicKey: other.publicKey } }],
      ['a negative maxFee', { genesis: G.genesis, nodes, key: G.client, maxFee: -1 }],
      ['a NaN maxFee', { genesis: G.genesis, nodes, key: G.client, maxFee: Number.NaN }],
      ['a policy of no kind', { genesis: G.genesis, nodes, key: G.client, policy: { kind: 'nope' } }],
      [
        'a policy over n',
        { genesis: G.genesis, nodes, key: G.client, policy: { kind: 'top1', minAgree: 5 } },
      ],
      ['a fetch that is not one', { genesis: G.genesis, nodes, key: G.client, fetch: 'fetch' }],
      ['coalesce as a string', { genesis: G.genesis, nodes, key: G.client, coalesce: 'yes' }],
    ];
    for (const [what, o] of cases) {
      let err: unknown;
      try {
        new DropbearClient(o as ClientOptions);
      } catch (e) {
        err = e;
      }
      expect(codeOf(err), what).toBe('CLIENT_CONFIG');
    }
  });

  it("every rejection is the DropbearError the client's own entry point exports (it exported none)", async () => {
    const c = client([await fakeNode(honest())]);
    expect(ClientError).toBe(DropbearError);
    await expect(c.infer(new Uint8Array(0))).rejects.toBeInstanceOf(ClientError);
  });

  it('a call refuses input that is not bytes, empty or over maxInputBytes, and malformed options, with a code, before anything is sent', async () => {
    let posts = 0;
    const counting = honest();
    const url = await fakeNode((req, res, body) => {
      if (req.method === 'POST') posts++;
      return counting(req, res, body);
    });
    const c = client([url]);
    const big = new Uint8Array(G.genesis.params.maxInputBytes + 1);
    const cases: [string, () => Promise<unknown>, string][] = [
      ['infer(string)', () => c.infer('pixels' as unknown as Uint8Array), 'INPUT_INVALID'],
      ['infer(undefined)', () => c.infer(undefined as unknown as Uint8Array), 'INPUT_INVALID'],
      ['infer(number[])', () => c.infer([1, 2] as unknown as Uint8Array), 'INPUT_INVALID'],
      ['infer(empty)', () => c.infer(new Uint8Array(0)), 'INPUT_INVALID'],
      ['infer(too large)', () => c.infer(big), 'REQUEST_INPUT_TOO_LARGE'],
      ['infer(x, null)', () => c.infer(input(), null as never), 'CLIENT_CONFIG'],
      [
        'infer with a policy of no minAgree',
        () => c.infer(input(), { policy: { kind: 'top1' } as never }),
        'REQUEST_BAD_POLICY',
      ],
      ['inferBatch(string)', () => c.inferBatch('x' as unknown as Uint8Array[]), 'INPUT_INVALID'],
      ['inferBatch([string])', () => c.inferBatch([input(), 'x' as unknown as Uint8Array]), 'INPUT_INVALID'],
      ['send({})', () => c.send({} as SignedRequest), 'REQUEST_MALFORMED'],
      ['sendBatch(string)', () => c.sendBatch('x' as unknown as SignedRequest[]), 'REQUEST_MALFORMED'],
      ['inferMany(string)', () => c.inferMany('x' as unknown as Uint8Array[]), 'INPUT_INVALID'],
    ];
    for (const [what, call, code] of cases) {
      let err: unknown;
      try {
        await call();
      } catch (e) {
        err = e;
      }
      expect(codeOf(err), `${what}: ${err}`).toBe(code);
    }
    // In a batch an empty or oversized input (or a malformed request) is its own result, unsent; the rest certify.
    const batch = await c.inferBatch([input(), new Uint8Array(0), big]);
    expectCertified(batch[0]);
    expect(batch.slice(1).map(codeOf)).toEqual(['INPUT_INVALID', 'REQUEST_INPUT_TOO_LARGE']);
    const sent = await c.sendBatch([c.sign(input()), {} as SignedRequest]);
    expectCertified(sent[0]);
    expect(codeOf(sent[1])).toBe('REQUEST_MALFORMED');
    expect(posts).toBe(2);
  });

  it('a request the caller signed is encoded once, by the check before sending (it was encoded again for the POST)', async () => {
    const c = client([await fakeNode(honest())]);
    // The encoder reads `auth` once per encoding; nothing else in the SDK reads it.
    const counted = (sr: SignedRequest, reads: { n: number }): SignedRequest => ({
      request: sr.request,
      input: sr.input,
      get auth() {
        reads.n++;
        return sr.auth;
      },
    });
    const one = { n: 0 };
    expectCertified(await c.send(counted(c.sign(input()), one)));
    expect(one.n).toBe(1);
    const many = { n: 0 };
    const srs = [c.sign(input()), c.sign(input()), c.sign(input())].map((sr) => counted(sr, many));
    const sent = await c.sendBatch(srs);
    for (const r of sent) expectCertified(r);
    expect(many.n).toBe(3);
  });

  it('timeoutMs per call: Infinity, NaN, 0 or above 2^31 - 1 reject with CLIENT_CONFIG; the largest allowed works', async () => {
    const slow = await fakeNode(honest(200));
    const c = client([slow]);
    for (const timeoutMs of [Number.POSITIVE_INFINITY, Number.NaN, 0, -5, 2 ** 31]) {
      await expect(c.infer(input(), { timeoutMs })).rejects.toMatchObject({ code: 'CLIENT_CONFIG' });
      await expect(c.inferBatch([input()], { timeoutMs })).rejects.toMatchObject({ code: 'CLIENT_CONFIG' });
      await expect(c.send(c.sign(input()), timeoutMs)).rejects.toMatchObject({ code: 'CLIENT_CONFIG' });
      await expect(c.sendBatch([c.sign(input())], { timeoutMs })).rejects.toMatchObject({
        code: 'CLIENT_CONFIG',
      });
    }
    const co = client([slow], { coalesce: true });
    await expect(co.infer(input(), { timeoutMs: Number.POSITIVE_INFINITY })).rejects.toMatchObject({
      code: 'CLIENT_CONFIG',
    });
    expectCertified(await c.infer(input(), { timeoutMs: 2 ** 31 - 1 }));
    expectCertified((await c.inferBatch([input()], { timeoutMs: 2 ** 31 - 1 }))[0]);
  });

  it('inferMany: a concurrency that is not an integer ≥ 1 rejects with CLIENT_CONFIG (0 resolved at once, every result undefined)', async () => {
    const c = client([await fakeNode(honest())]);
    for (const concurrency of [0, -1, Number.NaN, 1.5])
      await expect(c.inferMany([input(), input()], { concurrency })).rejects.toMatchObject({
        code: 'CLIENT_CONFIG',
      });
    const ok = await c.inferMany([input(), input()], { concurrency: Number.POSITIVE_INFINITY });
    for (const r of ok) expectCertified(r);
  });
});

/** What a stub node saw: the POSTs its API's admission control looked at, and the requests it took. */
interface StubLoad {
  /** Answers 503 OVERLOADED to this many POSTs that bring new requests (its backlog reads as full). */
  busyFor: number;
  /** POSTs that reached admission control (turned away or not). */
  admissions: number;
  /** Ids (hex) of the requests it took, in order, once each. */
  taken: string[];
}

/**
 * The real API over a stub host: certifies each request it takes after `delayMs`, except those `stuck`
 * picks (never certified, like a request that cannot gather a quorum). With `load`, its backlog reads as
 * full (the API's maxPending, 503 OVERLOADED with Retry-After) for the first `load.busyFor` POSTs.
 */
function stubHost(
  id: number,
  delayMs: number,
  stuck: (sr: SignedRequest) => boolean,
  load?: StubLoad,
): NodeHost {
  const certs = new Map<string, Certificate>();
  const held = new Set<string>();
  const waiters = new Map<string, ((c: Certificate) => void)[]>();
  const host = {
    id,
    genesis: G.genesis,
    waiting: 0,
    certificate: (rid: string) => certs.get(rid) ?? null,
    replica: {
      holdsRequest: (rid: string) => held.has(rid),
      // Read by the API once per POST that brings requests new to this node (admission control).
      get pendingRequests() {
        if (!load) return 0;
        load.admissions++;
        return load.busyFor-- > 0 ? 1_000_000 : 0;
      },
      view: 0,
    },
    executedPerSecond: () => 0,
    currentBackend: {
      spec: {
        name: 'stub',
        preprocess: { kind: 'image' },
        input: { shape: [1, 3, 224, 224] },
        labels: 'imagenet1k',
      },
      stats: () => ({}),
      digest: '',
    },
    db: { state: { fees: G.genesis.nodes.map((x) => x.fee), balanceOf: () => 1e12 } },
    status: () => ({ models: [], modelVersions: [], view: 0, primary: 0 }),
    submit(sr: SignedRequest) {
      const rid = hex(requestIdOf(sr));
      if (held.has(rid)) return { ok: false, code: 'REQUEST_DUPLICATE', message: 'held already' };
      held.add(rid);
      load?.taken.push(rid);
      if (!stuck(sr))
        setTimeout(() => {
          const c = certify(sr);
          certs.set(rid, c);
          for (const w of waiters.get(rid) ?? []) w(c);
          waiters.delete(rid);
        }, delayMs);
      return { ok: true, requestId: requestIdOf(sr) };
    },
    waitCertificate(rid: string, ms: number): Promise<Certificate | null> {
      const have = certs.get(rid);
      if (have || ms <= 0) return Promise.resolve(have ?? null);
      return new Promise((resolve) => {
        const t = setTimeout(() => resolve(certs.get(rid) ?? null), ms);
        const l = waiters.get(rid) ?? [];
        l.push((c) => {
          clearTimeout(t);
          resolve(c);
        });
        waiters.set(rid, l);
      });
    },
  };
  return host as unknown as NodeHost;
}

async function stubNode(
  id: number,
  delayMs: number,
  stuck: (sr: SignedRequest) => boolean,
  load?: StubLoad,
  api: ApiOptions = {},
): Promise<string> {
  const app = buildApi(stubHost(id, delayMs, stuck, load), { metrics: new NodeMetrics(), ...api });
  apps.push(app);
  return app.listen({ port: 0, host: '127.0.0.1' });
}

describe('a call given an AbortSignal', () => {
  it('ends at once when it aborts (ABORTED, its POSTs cut off), before sending when aborted already, and leaves no listener on the signal', async () => {
    let posts = 0;
    let closed = 0;
    // Takes every POST and never answers: only the signal (or timeoutMs) ends the call.
    const hang = await fakeNode((req, res) => {
      if (req.method === 'POST') posts++;
      res.on('close', () => closed++);
    });
    const c = client([hang, hang, hang, hang], { timeoutMs: 3000 });
    for (const call of [
      (signal: AbortSignal) => c.infer(input(), { signal }),
      (signal: AbortSignal) => c.send(c.sign(input()), 3000, signal),
      (signal: AbortSignal) =>
        c.inferBatch([input(), input()], { signal }).then((rs) => Promise.reject(rs[1])),
      (signal: AbortSignal) => c.sendBatch([c.sign(input())], { signal }).then((rs) => Promise.reject(rs[0])),
    ]) {
      const ac = new AbortController();
      const t0 = performance.now();
      setTimeout(() => ac.abort(), 100);
      const err = await call(ac.signal).catch((e: unknown) => e);
      expect(codeOf(err), String(err)).toBe('ABORTED');
      expect(performance.now() - t0).toBeLessThan(1000);
    }
    // Every POST the calls made was closed by the client, not left open for the rest of timeoutMs.
    await sleep(50);
    expect(posts).toBeGreaterThan(0);
    expect(closed).toBe(posts);
    // Aborted already: nothing is sent. Not a signal: CLIENT_CONFIG.
    const before = posts;
    await expect(c.infer(input(), { signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'ABORTED',
    });
    expect(posts).toBe(before);
    await expect(c.infer(input(), { signal: {} as AbortSignal })).rejects.toMatchObject({
      code: 'CLIENT_CONFIG',
    });
    // certificate(id): its polls end at once, ABORTED (not null, which says no node has one).
    const cert = new AbortController();
    setTimeout(() => cert.abort(), 100);
    const t2 = performance.now();
    await expect(c.certificate('ab'.repeat(32), { signal: cert.signal })).rejects.toMatchObject({
      code: 'ABORTED',
    });
    expect(performance.now() - t2).toBeLessThan(1000);
    // inferMany: the calls in flight end ABORTED, and those not started are not sent.
    const many = new AbortController();
    const sentBefore = posts;
    setTimeout(() => many.abort(), 100);
    const t1 = performance.now();
    const rs = await c.inferMany(Array.from({ length: 10 }, input), { concurrency: 2, signal: many.signal });
    expect(performance.now() - t1).toBeLessThan(1000);
    expect(rs.map(codeOf)).toEqual(Array(10).fill('ABORTED'));
    expect(posts - sentBefore).toBe(2 * 4);
    // One long-lived signal shared by many concurrent calls: no MaxListenersExceededWarning (a listener
    // per call warned past 10), and no listener left once they are over.
    const warnings: Error[] = [];
    const warned = (w: Error) => warnings.push(w);
    process.on('warning', warned);
    const ok = client([await fakeNode(honest())]);
    const shared = new AbortController();
    await Promise.all(Array.from({ length: 40 }, () => ok.infer(input(), { signal: shared.signal })));
    await ok.inferBatch([input(), input()], { signal: shared.signal });
    await sleep(10);
    process.off('warning', warned);
    expect(warnings.map(String)).toEqual([]);
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0);
  });
});

// A caller's onResult that threw inside inferBatch/sendBatch ran in the middle of the SDK's own work: its
// error was recorded as a node's failure of the item (or rejected the call half-way). Now every item
// settles as the group answered, every onResult is called, and the call then rejects with the first error
// the callback threw, as inferMany does.
describe('an onResult callback that throws', () => {
  it('does not change what the items settle to; the call rejects with its error once all are done', async () => {
    const nodes = await Promise.all([0, 1, 2, 3].map((i) => stubNode(i, 0, () => false)));
    const c = client(nodes, { timeoutMs: 3000 });
    const seen: number[] = [];
    const boom = new Error('caller bug');
    const err = await c
      .inferBatch(Array.from({ length: 5 }, input), {
        onResult: (i, r) => {
          expectCertified(r);
          seen.push(i);
          if (seen.length === 2) throw boom;
        },
      })
      .catch((e: unknown) => e);
    expect(err).toBe(boom);
    expect(seen.sort()).toEqual([0, 1, 2, 3, 4]);
    // inferMany the same: it rejected at the first throw while its other calls ran on unseen.
    const many: number[] = [];
    const err2 = await c
      .inferMany(Array.from({ length: 5 }, input), {
        concurrency: 2,
        onResult: (i, r) => {
          expectCertified(r);
          many.push(i);
          if (many.length === 1) throw boom;
        },
      })
      .catch((e: unknown) => e);
    expect(err2).toBe(boom);
    expect(many.sort()).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('a batch with a request that never certifies', () => {
  it('inferBatch and coalesced infer calls: the nine certified requests resolve, the stuck one fails alone', async () => {
    const inputs = Array.from({ length: 10 }, input);
    const stuckDigests = new Set([hex(sha256(inputs[3]))]);
    const stuck = (sr: SignedRequest) => stuckDigests.has(hex(sr.request.inputDigest));
    const nodes = await Promise.all([0, 1, 2, 3].map((i) => stubNode(i, 50, stuck)));
    const order: number[] = [];
    const rs = await client(nodes, { timeoutMs: 3000 }).inferBatch(inputs, {
      onResult: (i) => {
        order.push(i);
      },
    });
    rs.forEach((r, i) => {
      if (i === 3) expect(codeOf(r)).toBe('NO_CERTIFICATE');
      else expectCertified(r);
    });
    // The nine came with the POSTs' answers (the wait: half the 3 s), each reported as it came, before the
    // stuck one's deadline: the stuck one is reported last, once. (Compared by order, not by clock: a
    // bound of 2.5 s failed under load, 2026-12-05.)
    expect(order).toHaveLength(10);
    expect(order.at(-1)).toBe(3);
    expect(new Set(order).size).toBe(10);
    // Ten infer calls of one turn, coalesced into one batch: one of them is stuck.
    const inputs2 = Array.from({ length: 10 }, input);
    stuckDigests.add(hex(sha256(inputs2[0])));
    const c = client(nodes, { timeoutMs: 3000, coalesce: true });
    const settled = await Promise.allSettled(inputs2.map((x) => c.infer(x)));
    expect(codeOf((settled[0] as PromiseRejectedResult).reason)).toBe('NO_CERTIFICATE');
    for (const s of settled.slice(1)) {
      expect(s.status).toBe('fulfilled');
      expectCertified((s as PromiseFulfilledResult<InferResult>).value);
    }
  });
});

/** A node that streams an answer without end (stopping itself at 512 MiB), counting what it wrote. */
function streamer(mode: 'answers' | 'json' | 'poll'): { handler: Handler; stats: { bytes: number } } {
  const chunk = Buffer.alloc(1 << 20, 0x41);
  const stats = { bytes: 0 };
  const handler: Handler = (req, res, body) => {
    if (mode === 'poll' && req.method === 'POST') {
      // Takes the request (pending), then streams when polled.
      const srs = requestsOf(req, body);
      return answers(
        res,
        202,
        srs.map((sr) => ({ kind: 'pending' as const, requestId: requestIdOf(sr) })),
      );
    }
    if (mode === 'answers') res.writeHead(200, { 'content-type': REQUEST_ANSWERS_TYPE });
    else {
      res.writeHead(mode === 'poll' ? 200 : 400, { 'content-type': 'application/json' });
      res.write(mode === 'poll' ? '{"requestId":"' : '{"error":{"code":"X","message":"');
    }
    const pump = () => {
      while (!res.destroyed) {
        if (stats.bytes >= 512 * 2 ** 20) return void res.destroy();
        stats.bytes += chunk.length;
        if (!res.write(chunk)) return;
      }
    };
    res.on('drain', pump);
    pump();
  };
  return { handler, stats };
}

describe('answers over maxResponseBytes', () => {
  it('a node streaming an endless answer is cut off at the cap; an honest certificate still wins', async () => {
    const MiB = 2 ** 20;
    const base = process.memoryUsage().rss;
    let peak = base;
    const iv = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    try {
      for (const mode of ['answers', 'json', 'poll'] as const) {
        const s = streamer(mode);
        const url = await fakeNode(s.handler);
        // Honest nodes certify after 1 s: the streamer has all that time to push its answer.
        const honestNodes = [
          await fakeNode(honest(1000)),
          await fakeNode(honest(1000)),
          await fakeNode(honest(1000)),
        ];
        const nodes = [url, ...honestNodes];
        const cap = mode === 'answers' ? undefined : MiB; // the default (32 MiB) once, a small cap otherwise
        const r = expectCertified(await client(nodes, { maxResponseBytes: cap }).infer(input()));
        expect(r.servedBy).not.toBe(0);
        const b = await client(nodes, { maxResponseBytes: cap }).inferBatch([input(), input()]);
        for (const x of b) expect(expectCertified(x).servedBy).not.toBe(0);
        // What the streamer could write before the SDK closed the connection: the cap, the socket buffers.
        expect(s.stats.bytes).toBeLessThan((cap ?? 32 * MiB) * 2 + 48 * MiB);
      }
      // Every node streaming: the error names RESPONSE_TOO_LARGE per node.
      const all = await Promise.all([0, 1, 2, 3].map(() => fakeNode(streamer('json').handler)));
      const e = await client(all, { maxResponseBytes: MiB })
        .infer(input())
        .catch((x: unknown) => x);
      expect(codeOf(e)).toBe('NO_CERTIFICATE');
      expect((e as Error).message).toContain('node 0: RESPONSE_TOO_LARGE');
      expect((e as Error).message).toContain('node 3: RESPONSE_TOO_LARGE');
    } finally {
      clearInterval(iv);
    }
    expect(peak - base).toBeLessThan(400 * MiB);
  });
});

describe('send and sendBatch check the input against the request', () => {
  it('a request whose input was swapped is refused before anything is sent', async () => {
    let posted = 0;
    const h = honest();
    const nodes = await Promise.all(
      [0, 1, 2, 3].map(() =>
        fakeNode((req, res, body) => {
          if (req.method === 'POST') posted += requestsOf(req, body).length;
          return h(req, res, body);
        }),
      ),
    );
    const c = client(nodes);
    const sr = c.sign(input());
    const swapped: SignedRequest = { ...sr, input: input() };
    await expect(c.send(swapped)).rejects.toMatchObject({ code: 'REQUEST_INPUT_MISMATCH' });
    expect(posted).toBe(0);
    // In a batch, the swapped member alone fails; the others are sent and certified.
    const srs = c.signBatch([input(), input(), input()]);
    const batch = [srs[0], { ...srs[1], input: input() }, srs[2]];
    const seen: number[] = [];
    const out = await c.sendBatch(batch, { onResult: (i) => seen.push(i) });
    expect(codeOf(out[1])).toBe('REQUEST_INPUT_MISMATCH');
    expectCertified(out[0]);
    expectCertified(out[2]);
    expect(seen.sort()).toEqual([0, 1, 2]);
    expect(posted).toBe(2 * nodes.length);
    // The genuine request still goes through.
    expectCertified(await c.send(sr));
  });
});

describe('certificate(id)', () => {
  it('asks every node at once (one that hangs does not hold it up), takes either case, refuses a malformed id', async () => {
    const honestNode = honest();
    const hang: Handler = () => new Promise(() => {});
    const nodes = [
      await fakeNode(hang),
      await fakeNode(honestNode),
      await fakeNode(hang),
      await fakeNode(hang),
    ];
    // 60 s calls: asked one after another, the first hanging node would hold it up that long.
    const c = client(nodes, { timeoutMs: 60_000 });
    const r = await c.infer(input());
    const t0 = Date.now();
    const got = await c.certificate(r.requestId.toUpperCase());
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(got && hex(got.outcome.requestId)).toBe(r.requestId);
    await expect(c.certificate('xyz')).rejects.toMatchObject({ code: 'REQUEST_ID_INVALID' });
  });
});

describe('a request no node took (every node asked answered 503 OVERLOADED) is sent again', () => {
  /** Four stub nodes behind the real API, each turning away its first `busyFor` POSTs. */
  async function busyGroup(busyFor: number, retryAfterSeconds = 0) {
    const loads: StubLoad[] = [0, 1, 2, 3].map(() => ({ busyFor, admissions: 0, taken: [] }));
    const nodes = await Promise.all(
      loads.map((load, i) => stubNode(i, 20, () => false, load, { retryAfterSeconds })),
    );
    return { nodes, loads };
  }
  /** Backoff for tests: 10 ms at first, no jitter below half (random 0). */
  const quick = { baseDelayMs: 10, maxDelayMs: 40, random: () => 0 };

  it('infer and send: backs off and resends the same signed request until a node takes it', async () => {
    const { nodes, loads } = await busyGroup(2);
    const c = client(nodes, { overloadRetry: quick });
    const r = expectCertified(await c.infer(input()));
    // Every node turned the first two rounds away, then took the third: one request id throughout.
    for (const l of loads) {
      expect(l.admissions).toBe(3);
      expect(l.taken).toEqual([r.requestId]);
    }
    // send: the caller's own signed request, resent as it is.
    for (const l of loads) l.busyFor = 1;
    const sr = c.sign(input());
    // Encoded once for both rounds (the encoder reads `auth` once per encoding; it was once a round).
    let encodings = 0;
    const s = expectCertified(
      await c.send({
        request: sr.request,
        input: sr.input,
        get auth() {
          encodings++;
          return sr.auth;
        },
      }),
    );
    expect(s.requestId).toBe(hex(requestIdOf(sr)));
    for (const l of loads) expect(l.taken.at(-1)).toBe(s.requestId);
    for (const l of loads) expect(l.admissions).toBe(5);
    expect(encodings).toBe(1);
  });

  it("honours the nodes' Retry-After as the least wait", async () => {
    const { nodes } = await busyGroup(1, 1);
    const c = client(nodes, { overloadRetry: quick });
    const t0 = Date.now();
    expectCertified(await c.infer(input()));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
  });

  it('still OVERLOADED after maxRetries, or when the deadline leaves no time: per-node errors and attempts', async () => {
    const { nodes, loads } = await busyGroup(1_000_000);
    const e = await client(nodes, { overloadRetry: { ...quick, maxRetries: 2 } })
      .infer(input())
      .catch((x: unknown) => x);
    expect(codeOf(e)).toBe('OVERLOADED');
    expect((e as Error).message).toContain('3 attempts');
    for (const id of [0, 1, 2, 3]) expect((e as Error).message).toContain(`node ${id}: OVERLOADED`);
    expect((e as DropbearError).details).toMatchObject({ attempts: 3 });
    for (const l of loads) expect(l.admissions).toBe(3);
    // Off: one attempt, as before.
    for (const l of loads) l.admissions = 0;
    const off = await client(nodes, { overloadRetry: false })
      .infer(input())
      .catch((x: unknown) => x);
    expect(codeOf(off)).toBe('OVERLOADED');
    expect((off as DropbearError).details).toMatchObject({ attempts: 1 });
    for (const l of loads) expect(l.admissions).toBe(1);
    // The call's deadline bounds the retries (default maxRetries, a wait that grows past what is left).
    const t0 = Date.now();
    const late = await client(nodes, { timeoutMs: 600, overloadRetry: { baseDelayMs: 100 } })
      .infer(input())
      .catch((x: unknown) => x);
    expect(codeOf(late)).toBe('OVERLOADED');
    expect(Date.now() - t0).toBeLessThan(600 + 500);
    expect(((late as DropbearError).details?.attempts as number) >= 2).toBe(true);
  });

  it('inferBatch, sendBatch and coalesced infer calls retry alike, under the same limits', async () => {
    const { nodes, loads } = await busyGroup(2);
    const c = client(nodes, { overloadRetry: quick });
    for (const r of await c.inferBatch([input(), input(), input()])) expectCertified(r);
    // Each node turned the first two rounds away; a node whose third round had not gone out when the
    // certificates came is not asked again (CI, 2026-12-07, a loaded machine: one node at 2).
    for (const l of loads) expect([2, 3]).toContain(l.admissions);
    expect(Math.max(...loads.map((l) => l.admissions))).toBe(3);
    for (const l of loads) l.busyFor = 1;
    const co = client(nodes, { overloadRetry: quick, coalesce: true });
    for (const r of await Promise.all([co.infer(input()), co.infer(input())])) expectCertified(r);
    // Still turned away after maxRetries: OVERLOADED per item, with the attempts.
    for (const l of loads) {
      l.busyFor = 1_000_000;
      l.admissions = 0;
    }
    const out = await client(nodes, { overloadRetry: { ...quick, maxRetries: 1 } }).sendBatch(
      c.signBatch([input(), input()]),
    );
    for (const x of out) {
      expect(codeOf(x)).toBe('OVERLOADED');
      expect((x as DropbearError).details).toMatchObject({ attempts: 2 });
      for (const id of [0, 1, 2, 3]) expect((x as Error).message).toContain(`node ${id}: OVERLOADED`);
    }
    for (const l of loads) expect(l.admissions).toBe(2);
    // Off: one POST per node.
    for (const l of loads) l.admissions = 0;
    const off = await client(nodes, { overloadRetry: false }).inferBatch([input()]);
    expect(codeOf(off[0])).toBe('OVERLOADED');
    for (const l of loads) expect(l.admissions).toBe(1);
  });

  /** A node behind a proxy that answers its first `busyFor` POSTs itself: `status`, text, no Dropbear body. */
  function behindProxy(status: number, busyFor: number, retryAfter?: string) {
    const node = honest();
    const seen = { posts: 0 };
    const h: Handler = (req, res, body) => {
      if (req.method === 'POST' && seen.posts++ < busyFor) {
        const headers: Record<string, string> = { 'content-type': 'text/html' };
        if (retryAfter !== undefined) headers['retry-after'] = retryAfter;
        res.writeHead(status, headers).end(`<html>${status}</html>`);
        return;
      }
      return node(req, res, body);
    };
    return { h, seen };
  }

  it('a 503 or 429 from a proxy in front of a node (no Dropbear error body) is OVERLOADED: retried after its Retry-After, under maxRetries (it ended NO_CERTIFICATE at once)', async () => {
    const ps = [0, 1, 2, 3].map(() => behindProxy(503, 1, '0.2'));
    const t0 = Date.now();
    expectCertified(
      await client(await Promise.all(ps.map((p) => fakeNode(p.h))), { overloadRetry: quick }).infer(input()),
    );
    expect(Date.now() - t0).toBeGreaterThanOrEqual(180);
    for (const p of ps) expect(p.seen.posts).toBeLessThanOrEqual(2);
    // Batches alike, and 429.
    const busy = await Promise.all([0, 1, 2, 3].map(() => fakeNode(behindProxy(429, 1).h)));
    for (const r of await client(busy, { overloadRetry: quick }).inferBatch([input(), input()]))
      expectCertified(r);
    // Always turned away: OVERLOADED after maxRetries, each node's status said.
    const stuck = await Promise.all([0, 1, 2, 3].map(() => fakeNode(behindProxy(429, 1e9).h)));
    const e = await client(stuck, { overloadRetry: { ...quick, maxRetries: 1 } })
      .infer(input())
      .catch((x: unknown) => x);
    expect(codeOf(e)).toBe('OVERLOADED');
    expect((e as DropbearError).details).toMatchObject({ attempts: 2 });
    expect((e as Error).message).toContain('answered 429');
    // A Dropbear error body keeps its code: NOT_READY (503) is not retried as OVERLOADED.
    const refusing = await Promise.all([0, 1, 2, 3].map(() => fakeNode(refuser(503, 'NOT_READY'))));
    const nr = await client(refusing, { overloadRetry: quick })
      .infer(input())
      .catch((x: unknown) => x);
    expect(codeOf(nr)).toBe('NO_CERTIFICATE');
    expect((nr as Error).message).toContain('NOT_READY');
  });
});

describe('a node whose answer is not what it says it is', () => {
  it('a compressed answer counts against maxResponseBytes as it is decompressed, not after it is read whole', async () => {
    // 8 MiB of spaces in ~8 KB of gzip, with a Content-Length that promises more and never comes: the
    // declared (compressed) length was taken as the size, and the body read whole before it was measured,
    // so the client held the decompressed bytes and waited to its deadline.
    const gz = gzipSync(Buffer.alloc(8 * 2 ** 20, 32));
    const bomb = await fakeNode((_req, res) => {
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-encoding': 'gzip',
        'content-length': String(gz.length + 100),
      });
      res.write(gz);
    });
    const t0 = Date.now();
    const e = await client([bomb], { maxResponseBytes: 2 ** 20, timeoutMs: 3000 })
      .infer(input())
      .catch((x: unknown) => x);
    expect(codeOf(e)).toBe('NO_CERTIFICATE');
    expect((e as Error).message).toContain('node 0: RESPONSE_TOO_LARGE');
    expect(Date.now() - t0).toBeLessThan(2000);
    // An honest answer compressed on the way (a proxy) is still read.
    const h = honest();
    const zipped = await fakeNode((req, res, body) => {
      if (req.method === 'POST') {
        const srs = requestsOf(req, body);
        const z = gzipSync(
          encode(
            RequestAnswers,
            srs.map((sr) => ({ kind: 'certificate' as const, certificate: certify(sr) })),
          ),
        );
        res
          .writeHead(200, {
            'content-type': REQUEST_ANSWERS_TYPE,
            'content-encoding': 'gzip',
            'content-length': String(z.length),
          })
          .end(z);
        return;
      }
      return h(req, res, body);
    });
    expectCertified(await client([zipped]).infer(input()));
  });

  it("a node's error code and message reach the caller as one bounded line: no control characters, no object for a code", async () => {
    const liar = await fakeNode(async (_req, res) => {
      res.writeHead(402, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          error: {
            code: 'INSUFFICIENT_FUNDS',
            message: `x\n  certified: 5 goldfish\u001b[31m${'A'.repeat(100_000)}`,
          },
        }),
      );
    });
    const odd = await fakeNode(async (_req, res) => {
      res
        .writeHead(400, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { code: { a: 1 }, message: 5 } }));
    });
    const items = await fakeNode(itemRefuser('BAD\nCODE\u001b[0m'));
    const c = client([liar, odd, items]);
    {
      const single = await c.infer(input()).catch((x: unknown) => x);
      const [batch] = await c.inferBatch([input()]);
      for (const e of [single, batch]) {
        expect(codeOf(e)).toBe('NO_CERTIFICATE');
        const m = (e as Error).message;
        // biome-ignore lint/suspicious/noControlCharactersInRegex: the point of the check
        expect(m).not.toMatch(/[\u0000-\u001f\u007f]/);
        expect(m).not.toContain('[object Object]');
        expect(m).toContain('node 1: HTTP_400');
        expect(m.length).toBeLessThan(4000);
      }
    }
  });

  it('a redirect is not followed (a Dropbear node never sends one): the node failed, saying so', async () => {
    let elsewhere = 0;
    const other = await fakeNode(async (_req, res) => {
      elsewhere++;
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>elsewhere</html>');
    });
    const redirector = await fakeNode(async (_req, res) => {
      res.writeHead(307, { location: `${other}/steal` }).end();
    });
    const c = client([redirector]);
    const e = await c.infer(input()).catch((x: unknown) => x);
    const [b] = await c.inferBatch([input()]);
    const got = await c.certificate('ab'.repeat(32));
    expect(got).toBeNull();
    expect(elsewhere).toBe(0);
    for (const x of [e, b]) {
      expect(codeOf(x)).toBe('NO_CERTIFICATE');
      expect((x as Error).message).toMatch(
        /node 0: HTTP_307 node 0 answered 307, a redirect to http:\/\/127\.0\.0\.1:\d+\/steal \(not followed\)/,
      );
    }
  });
});
