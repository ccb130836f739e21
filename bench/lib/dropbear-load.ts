/**
 * What the load generator sends with: the SDK (DropbearClient) for one request per call, a batch-signing
 * sender for client batches, and the same two against the baseline server.
 *
 * Client-side verification: every certificate is checked (verifyCertificate against the genesis, this
 * request's id and input) with a SignatureCache, so the q receipt signatures are checked once per
 * consensus batch — what a client that sends many requests should do. `verifyEvery: k` checks the
 * signatures, Merkle path and decision of only every k-th certificate (ids and inputs always), for when
 * verification would make the single-process generator the bottleneck; results say which was used.
 */
import { SignatureCache, verifyCertificate } from '../../src/certificate/index.ts';
import { type ClientOptions, DropbearClient, type GroupNode } from '../../src/client/index.ts';
import {
  Certificate,
  DropbearError,
  encode,
  equalBytes,
  fromJson,
  type Genesis,
  groupIdOf,
  hex,
  type KeyPair,
  type Request,
  requestIdOf,
  type SignedRequest,
  SignedRequest as SignedRequestCodec,
  sha256,
  signRequestBatch,
  toJson,
} from '../../src/protocol/index.ts';
import type { Send } from './load.ts';

export interface Verifier {
  cache: SignatureCache;
  every: number;
  /** Certificates whose signatures, path and decision were checked / whose id and input were checked. */
  full: number;
  light: number;
}

export function makeVerifier(every = 1): Verifier {
  return { cache: new SignatureCache(), every, full: 0, light: 0 };
}

/** Checks `cert` for `sr` (throws CERTIFICATE_INVALID); the full check on every `every`-th one. */
export function checkCertificate(v: Verifier, genesis: Genesis, cert: Certificate, sr: SignedRequest): void {
  if ((v.full + v.light) % v.every === 0) {
    v.full++;
    const r = verifyCertificate(cert, genesis, { cache: v.cache });
    if (!r.ok) throw new DropbearError('CERTIFICATE_INVALID', `${r.reason}: ${r.message}`);
  } else v.light++;
  if (!equalBytes(cert.outcome.requestId, requestIdOf(sr)))
    throw new DropbearError('CERTIFICATE_INVALID', 'the certificate is for another request');
  if (!equalBytes(cert.outcome.inputDigest, sr.request.inputDigest))
    throw new DropbearError('CERTIFICATE_INVALID', 'the certificate names another input');
}

/** The SDK, with its certificate check going through a SignatureCache (see Verifier). */
export class BenchClient extends DropbearClient {
  constructor(
    opts: ClientOptions,
    readonly verifier: Verifier,
  ) {
    super(opts);
  }
  override check(cert: Certificate, sr: SignedRequest): Certificate {
    checkCertificate(this.verifier, this.genesis, cert, sr);
    return cert;
  }
}

/** One request per call through the SDK (`client.infer`). */
export function sdkSender(client: DropbearClient, inputs: Uint8Array[]): Send {
  return async (i) => {
    await client.infer(inputs[i % inputs.length]);
  };
}

/** One request per call to the baseline server: signed like the SDK signs, posted as canonical bytes. */
export function baselineSingleSender(
  client: DropbearClient,
  url: string,
  fetchImpl: typeof fetch,
  inputs: Uint8Array[],
): Send {
  return async (i) => {
    const sr = client.sign(inputs[i % inputs.length]);
    const res = await fetchImpl(`${url}/v1/requests`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: encode(SignedRequestCodec, sr) as Uint8Array<ArrayBuffer>,
    });
    const body = (await res.json()) as { requestId?: string; error?: { code: string } };
    if (res.status !== 200 || body.requestId !== hex(requestIdOf(sr)))
      throw new DropbearError(body.error?.code ?? `HTTP_${res.status}`, 'baseline refused');
  };
}

export interface BatchSenderOptions {
  genesis: Genesis;
  key: KeyPair;
  /** Where batches go, round-robin (one node per batch, like `sendTo: 1`). */
  nodes: GroupNode[];
  fetch: typeof fetch;
  inputs: Uint8Array[];
  /** Most requests signed together (default 64). */
  maxBatch?: number;
  /** A batch is signed and sent this long after its first request arrived, full or not (default 2 ms). */
  lingerMs?: number;
  timeoutMs?: number;
  /** Dropbear nodes answer certificates (checked with this verifier); null: the baseline (ids only). */
  verifier: Verifier | null;
}

interface Item {
  input: Uint8Array;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * Client batch signing: requests arriving within `lingerMs` (up to `maxBatch`) are signed with one
 * signature (signRequestBatch) and posted together as `{requests: [...]}`; each request's promise settles
 * with its own certificate (pending ones are fetched with GET /v1/certificates/:id?wait).
 */
export class BatchSender {
  private pending: Item[] = [];
  private timer: NodeJS.Timeout | null = null;
  private rr = 0;
  private nonce = Date.now() * 1000;
  private readonly groupId: Uint8Array;
  private readonly maxFee: number;
  batches = 0;
  constructor(private readonly o: BatchSenderOptions) {
    this.groupId = groupIdOf(o.genesis);
    this.maxFee = o.genesis.nodes.reduce((a, n) => a + n.fee, 0);
  }

  readonly send: Send = (i) =>
    new Promise<void>((resolve, reject) => {
      this.pending.push({ input: this.o.inputs[i % this.o.inputs.length], resolve, reject });
      if (this.pending.length >= (this.o.maxBatch ?? 64)) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.o.lingerMs ?? 2);
    });

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const items = this.pending;
    this.pending = [];
    if (items.length === 0) return;
    this.batches++;
    const now = Date.now();
    const reqs = items.map((it) => {
      const request: Request = {
        groupId: this.groupId,
        client: this.o.key.publicKey,
        nonce: this.nonce++,
        timestamp: now,
        inputDigest: sha256(it.input),
        policy: null,
        maxFee: this.maxFee,
      };
      return { request, input: it.input };
    });
    const srs = signRequestBatch(reqs, this.o.key);
    const node = this.o.nodes[this.rr++ % this.o.nodes.length];
    this.post(node, srs).then(
      (outcomes) =>
        outcomes.forEach((e, k) => {
          if (e === null) items[k].resolve();
          else items[k].reject(e);
        }),
      (e) => {
        for (const it of items) it.reject(e);
      },
    );
  }

  private async post(node: GroupNode, srs: SignedRequest[]): Promise<(Error | null)[]> {
    const timeoutMs = this.o.timeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    const res = await this.o.fetch(`${node.api}/v1/requests?wait=${timeoutMs}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ requests: srs.map((sr) => toJson(SignedRequestCodec, sr)) }),
    });
    const body = (await res.json().catch(() => null)) as {
      results?: { requestId?: string; certificate?: unknown; status?: string; error?: { code: string; message: string } }[];
      error?: { code: string; message: string };
    } | null;
    if (!body?.results)
      throw new DropbearError(body?.error?.code ?? `HTTP_${res.status}`, body?.error?.message ?? 'no results');
    return Promise.all(
      body.results.map(async (r, k): Promise<Error | null> => {
        try {
          if (r.error) throw new DropbearError(r.error.code, r.error.message);
          if (this.o.verifier === null) {
            if (r.requestId !== hex(requestIdOf(srs[k]))) throw new DropbearError('BAD_ANSWER', 'wrong id');
            return null;
          }
          let json = r.certificate;
          while (json === undefined && Date.now() < deadline) {
            const g = await this.o.fetch(`${node.api}/v1/certificates/${r.requestId}?wait=${deadline - Date.now()}`);
            if (g.status === 200) json = ((await g.json()) as { certificate: unknown }).certificate;
            else if (g.status !== 404) throw new DropbearError(`HTTP_${g.status}`, 'certificate fetch failed');
          }
          if (json === undefined) throw new DropbearError('TIMEOUT', 'no certificate in time');
          checkCertificate(this.o.verifier, this.o.genesis, fromJson(Certificate, json), srs[k]);
          return null;
        } catch (e) {
          return e as Error;
        }
      }),
    );
  }
}
