/**
 * What the load generator sends with: the SDK (DropbearClient) for one request per call (`infer`) or for
 * client batches (`inferBatch`, fed by a Batcher), and the same two against the baseline server.
 *
 * Client-side verification: every certificate is checked (verifyCertificate against the genesis, this
 * request's id and input) with a SignatureCache, so the q receipt signatures are checked once per
 * consensus batch — what a client that sends many requests should do. `verifyEvery: k` checks the
 * signatures, Merkle path and decision of only every k-th certificate (ids and inputs always), for when
 * verification would make the single-process generator the bottleneck; results say which was used.
 */
import { SignatureCache, verifyCertificate } from '../../src/certificate/index.ts';
import {
  type BatchSigning,
  type ClientOptions,
  DropbearClient,
  type GroupNode,
} from '../../src/client/index.ts';
import {
  type Certificate,
  DropbearError,
  decode,
  encode,
  equalBytes,
  type Genesis,
  hex,
  type KeyPair,
  REQUEST_LIST_TYPE,
  RequestList,
  requestIdOf,
  type SignedRequest,
  SignedRequest as SignedRequestCodec,
} from '../../src/protocol/index.ts';
import { BASELINE_ANSWERS_TYPE, BaselineAnswers } from './baseline-codec.ts';
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

/**
 * The SDK, with its certificate check (used by `infer` and `inferBatch` alike) going through one
 * long-lived SignatureCache (see Verifier).
 */
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

/** Sends a batch of inputs; resolves with null (success) or the Error of each, in order. */
export type SendBatch = (inputs: Uint8Array[]) => Promise<(Error | null)[]>;

/**
 * Client batch signing for an open- or closed-loop generator that produces one request at a time:
 * requests arriving within `lingerMs` (up to `maxBatch`) become one batch, handed to `sendBatch`; each
 * request's promise settles with its own result.
 */
export class Batcher {
  private pending: { input: Uint8Array; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private timer: NodeJS.Timeout | null = null;
  batches = 0;
  constructor(
    private readonly sendBatch: SendBatch,
    private readonly inputs: Uint8Array[],
    private readonly maxBatch = 64,
    private readonly lingerMs = 2,
  ) {}

  readonly send: Send = (i) =>
    new Promise<void>((resolve, reject) => {
      this.pending.push({ input: this.inputs[i % this.inputs.length], resolve, reject });
      if (this.pending.length >= this.maxBatch) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.lingerMs);
    });

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const items = this.pending;
    this.pending = [];
    if (items.length === 0) return;
    this.batches++;
    this.sendBatch(items.map((it) => it.input)).then(
      (out) =>
        out.forEach((e, k) => {
          if (e === null) items[k].resolve();
          else items[k].reject(e);
        }),
      (e) => {
        for (const it of items) it.reject(e);
      },
    );
  }
}

/**
 * The SDK's `inferBatch` (`{requests}` POSTs, certificates verified): one signature for the batch, or with
 * `signing` 'each' one per request, posted together all the same.
 */
export function sdkBatch(client: DropbearClient, signing: BatchSigning = 'batch'): SendBatch {
  return async (inputs) =>
    (await client.inferBatch(inputs, { signing })).map((r) => (r instanceof Error ? r : null));
}

/**
 * The same requests to the baseline server: signed like `inferBatch` signs (client.signBatch, or each on
 * its own with `signing` 'each'), posted as the SDK posts them (a RequestList); each answer must carry its
 * request's id.
 */
export function baselineBatch(
  client: DropbearClient,
  url: string,
  fetchImpl: typeof fetch,
  signing: BatchSigning = 'batch',
): SendBatch {
  return async (inputs) => {
    const srs = signing === 'each' ? inputs.map((x) => client.sign(x)) : client.signBatch(inputs);
    const res = await fetchImpl(`${url}/v1/requests`, {
      method: 'POST',
      headers: { 'content-type': REQUEST_LIST_TYPE },
      body: encode(RequestList, srs) as Uint8Array<ArrayBuffer>,
    });
    if (res.status !== 200 || res.headers.get('content-type') !== BASELINE_ANSWERS_TYPE) {
      const body = (await res.json().catch(() => null)) as {
        error?: { code: string; message: string };
      } | null;
      throw new DropbearError(
        body?.error?.code ?? `HTTP_${res.status}`,
        body?.error?.message ?? 'no results',
      );
    }
    const answers = decode(BaselineAnswers, new Uint8Array(await res.arrayBuffer()));
    if (answers.length !== srs.length) throw new DropbearError('BAD_ANSWER', 'wrong number of answers');
    return answers.map((a, k) =>
      a.kind === 'refused'
        ? new DropbearError(a.code, 'baseline refused')
        : equalBytes(a.requestId, requestIdOf(srs[k]))
          ? null
          : new DropbearError('BAD_ANSWER', 'wrong request id'),
    );
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

/**
 * A Batcher over the SDK's `inferBatch` (sendTo 1, certificates checked with `verifier`), or, with
 * `verifier: null`, over `baselineBatch` to the first of `nodes`.
 */
export class BatchSender {
  private readonly batcher: Batcher;
  readonly send: Send;
  constructor(o: BatchSenderOptions) {
    const client = new BenchClient(
      { genesis: o.genesis, nodes: o.nodes, key: o.key, sendTo: 1, timeoutMs: o.timeoutMs, fetch: o.fetch },
      o.verifier ?? makeVerifier(),
    );
    const sendBatch = o.verifier ? sdkBatch(client) : baselineBatch(client, o.nodes[0].api, o.fetch);
    this.batcher = new Batcher(sendBatch, o.inputs, o.maxBatch, o.lingerMs);
    this.send = this.batcher.send;
  }
  get batches(): number {
    return this.batcher.batches;
  }
}
