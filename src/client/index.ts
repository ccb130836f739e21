/**
 * The client SDK: sign requests, send them to some or all nodes of a group, and return the first
 * certificate that verifies offline against the group's genesis. Light by design: protocol and certificate
 * only (no model runtime, no SQLite, no server); HTTP through the platform's `fetch`.
 */
import { verifyCertificate } from '../certificate/index.ts';
import {
  Certificate,
  type Decision,
  DropbearError,
  encode,
  equalBytes,
  fromJson,
  type Genesis,
  groupIdOf,
  hex,
  type KeyPair,
  type Policy,
  type Request,
  requestIdOf,
  SignedRequest,
  sha256,
  signRequest,
} from '../protocol/index.ts';

export interface GroupNode {
  id: number;
  /** The node's HTTP API, e.g. http://127.0.0.1:8100 */
  api: string;
}

export interface ClientOptions {
  genesis: Genesis;
  nodes: GroupNode[];
  key: KeyPair;
  /** Which nodes get each request: 'all' (default), a count (f+1 is enough for liveness), or node ids. */
  sendTo?: 'all' | number | number[];
  /** How long to wait for a certificate, in ms (default 30 s). */
  timeoutMs?: number;
  /** Highest fee the client agrees to pay per request (default: the sum of all node fees). */
  maxFee?: number;
  policy?: Policy | null;
  fetch?: typeof fetch;
}

export interface InferResult {
  requestId: string;
  certificate: Certificate;
  decision: Decision;
  /** Each node's top-1 (or null) as counted in the certificate. */
  votes: { node: number; label: number | null; modelDigest: string }[];
  /** The node whose answer arrived first. */
  servedBy: number;
}

const REQUEST_TYPE = 'application/octet-stream';

export class DropbearClient {
  readonly genesis: Genesis;
  readonly groupId: Uint8Array;
  private readonly nodes: GroupNode[];
  private readonly key: KeyPair;
  private readonly opts: Required<Pick<ClientOptions, 'timeoutMs' | 'maxFee'>> & ClientOptions;
  private readonly fetchImpl: typeof fetch;
  private nonce: number;
  private rr = 0;

  constructor(opts: ClientOptions) {
    if (opts.nodes.length === 0)
      throw new DropbearError('CLIENT_CONFIG', 'a client needs at least one node URL');
    this.genesis = opts.genesis;
    this.groupId = groupIdOf(opts.genesis);
    this.nodes = opts.nodes;
    this.key = opts.key;
    this.fetchImpl = opts.fetch ?? fetch;
    const fees = opts.genesis.nodes.reduce((a, n) => a + n.fee, 0);
    this.opts = { timeoutMs: 30_000, maxFee: fees, ...opts };
    // Nonces only need to be unique per client key within the expiry window: time-seeded and increasing.
    this.nonce = Date.now() * 1000 + Math.floor(Math.random() * 1000);
  }

  /** Builds and signs the request for `input` (no network). */
  sign(input: Uint8Array, opts: { policy?: Policy | null; maxFee?: number } = {}): SignedRequest {
    const req: Request = {
      groupId: this.groupId,
      client: this.key.publicKey,
      nonce: this.nonce++,
      timestamp: Date.now(),
      inputDigest: sha256(input),
      policy: opts.policy ?? this.opts.policy ?? null,
      maxFee: opts.maxFee ?? this.opts.maxFee,
    };
    return signRequest(req, input, this.key);
  }

  private targets(): GroupNode[] {
    const s = this.opts.sendTo ?? 'all';
    if (s === 'all') return this.nodes;
    if (Array.isArray(s)) return this.nodes.filter((n) => s.includes(n.id));
    const k = Math.min(Math.max(1, s), this.nodes.length);
    const start = this.rr++ % this.nodes.length;
    return Array.from({ length: k }, (_, i) => this.nodes[(start + i) % this.nodes.length]);
  }

  /** Checks a certificate against the genesis and against the request it should answer. */
  check(cert: Certificate, sr: SignedRequest): Certificate {
    const v = verifyCertificate(cert, this.genesis);
    if (!v.ok) throw new DropbearError('CERTIFICATE_INVALID', `${v.reason}: ${v.message}`);
    if (!equalBytes(cert.outcome.requestId, requestIdOf(sr)))
      throw new DropbearError('CERTIFICATE_INVALID', 'the certificate is for another request');
    if (!equalBytes(cert.outcome.inputDigest, sr.request.inputDigest))
      throw new DropbearError('CERTIFICATE_INVALID', 'the certificate names another input');
    return cert;
  }

  private async post(
    node: GroupNode,
    sr: SignedRequest,
    waitMs: number,
    signal: AbortSignal,
  ): Promise<Certificate | null> {
    const res = await this.fetchImpl(`${node.api}/v1/requests?wait=${Math.max(0, Math.floor(waitMs))}`, {
      method: 'POST',
      headers: { 'content-type': REQUEST_TYPE },
      body: encode(SignedRequest, sr) as Uint8Array<ArrayBuffer>,
      signal,
    });
    const body = (await res.json().catch(() => null)) as {
      certificate?: unknown;
      error?: { code: string; message: string };
    } | null;
    if (res.status === 200 && body?.certificate) return fromJson(Certificate, body.certificate);
    if (res.status === 202) return null;
    throw new DropbearError(
      body?.error?.code ?? `HTTP_${res.status}`,
      body?.error?.message ?? `node ${node.id} answered ${res.status}`,
    );
  }

  private async poll(
    node: GroupNode,
    id: string,
    waitMs: number,
    signal: AbortSignal,
  ): Promise<Certificate | null> {
    const res = await this.fetchImpl(
      `${node.api}/v1/certificates/${id}?wait=${Math.max(0, Math.floor(waitMs))}`,
      { signal },
    );
    if (res.status === 404) return null;
    const body = (await res.json().catch(() => null)) as {
      certificate?: unknown;
      error?: { code: string; message: string };
    } | null;
    if (res.status === 200 && body?.certificate) return fromJson(Certificate, body.certificate);
    throw new DropbearError(
      body?.error?.code ?? `HTTP_${res.status}`,
      body?.error?.message ?? `node ${node.id} answered ${res.status}`,
    );
  }

  /**
   * Sends one signed request and resolves with the first certificate that verifies. A node that is down,
   * answers garbage or a certificate that does not verify is skipped; if every chosen node fails, the
   * others are tried. Rejections the group would repeat (bad signature, expired, no funds) end the call.
   */
  async send(sr: SignedRequest, timeoutMs = this.opts.timeoutMs): Promise<InferResult> {
    const id = hex(requestIdOf(sr));
    const deadline = Date.now() + timeoutMs;
    const abort = new AbortController();
    const errors: string[] = [];
    const first = this.targets();
    const rest = this.nodes.filter((n) => !first.includes(n));
    const attempt = async (node: GroupNode): Promise<InferResult> => {
      let cert = await this.post(node, sr, deadline - Date.now(), abort.signal);
      while (!cert && Date.now() < deadline)
        cert = await this.poll(node, id, deadline - Date.now(), abort.signal);
      if (!cert) throw new DropbearError('TIMEOUT', `node ${node.id}: no certificate within ${timeoutMs} ms`);
      return this.result(this.check(cert, sr), node.id);
    };
    const race = (nodes: GroupNode[]) =>
      Promise.any(
        nodes.map((n) =>
          attempt(n).catch((e: unknown) => {
            const code = e instanceof DropbearError ? e.code : 'NETWORK';
            errors.push(`node ${n.id}: ${code} ${(e as Error).message}`);
            if (FINAL.has(code)) abort.abort();
            throw e;
          }),
        ),
      );
    try {
      try {
        return await race(first);
      } catch (e) {
        const finalErr = finalError(e);
        if (finalErr || rest.length === 0 || Date.now() >= deadline) throw finalErr ?? e;
        return await race(rest);
      }
    } catch (e) {
      const finalErr = finalError(e);
      if (finalErr) throw finalErr;
      throw new DropbearError(
        'NO_CERTIFICATE',
        `no node returned a valid certificate for ${id}: ${errors.join('; ')}`,
      );
    } finally {
      abort.abort();
    }
  }

  infer(
    input: Uint8Array,
    opts: { policy?: Policy | null; maxFee?: number; timeoutMs?: number } = {},
  ): Promise<InferResult> {
    return this.send(this.sign(input, opts), opts.timeoutMs);
  }

  /** Several inputs at once (each signed on its own; `concurrency` in flight). */
  async inferMany(
    inputs: Uint8Array[],
    opts: { concurrency?: number; onResult?: (i: number, r: InferResult | Error) => void } = {},
  ): Promise<(InferResult | Error)[]> {
    const out: (InferResult | Error)[] = new Array(inputs.length);
    let next = 0;
    const worker = async () => {
      while (next < inputs.length) {
        const i = next++;
        try {
          out[i] = await this.infer(inputs[i]);
        } catch (e) {
          out[i] = e as Error;
        }
        opts.onResult?.(i, out[i]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 16, inputs.length) }, worker));
    return out;
  }

  /** A certificate by request id from any node (verified), or null when none has it. */
  async certificate(requestId: string): Promise<Certificate | null> {
    for (const n of this.nodes) {
      try {
        const c = await this.poll(n, requestId, 0, AbortSignal.timeout(this.opts.timeoutMs));
        if (c && verifyCertificate(c, this.genesis).ok && hex(c.outcome.requestId) === requestId) return c;
      } catch {}
    }
    return null;
  }

  private result(cert: Certificate, servedBy: number): InferResult {
    return {
      requestId: hex(cert.outcome.requestId),
      certificate: cert,
      decision: cert.outcome.decision,
      votes: cert.outcome.votes.map((v) => ({
        node: v.node,
        label: v.result.kind === 'class' ? (v.result.top[0]?.label ?? null) : null,
        modelDigest: hex(v.modelDigest),
      })),
      servedBy,
    };
  }
}

/** Errors every honest node would give again: retrying elsewhere cannot help. */
const FINAL = new Set([
  'REQUEST_BAD_SIGNATURE',
  'REQUEST_WRONG_GROUP',
  'REQUEST_EXPIRED',
  'REQUEST_FROM_FUTURE',
  'REQUEST_BAD_POLICY',
  'REQUEST_INPUT_TOO_LARGE',
  'INSUFFICIENT_FUNDS',
  'INPUT_UNSUPPORTED',
  'INPUT_UNDECODABLE',
  'BODY_TOO_LARGE',
]);

function finalError(e: unknown): DropbearError | null {
  const errs = e instanceof AggregateError ? e.errors : [e];
  for (const x of errs) if (x instanceof DropbearError && FINAL.has(x.code)) return x;
  return null;
}
