/**
 * A model served elsewhere, reached through the Open Inference Protocol (KServe v2 / Triton REST). An owner
 * who already runs the model on Triton, KServe or `dropbear serve-model` joins a group without moving it.
 *
 * - `connect` reads the server metadata (`GET /v2`: does it list the `binary_tensor_data` extension?) and the
 *   model metadata (`GET /v2/models/{name}`: input name, datatype and shape, output name), and checks them
 *   against the model's spec.
 * - The digest is configuration: the owner declares the SHA-256 of the model the server runs (the genesis
 *   digest). A server cannot prove which file it runs; when its model metadata carries
 *   `parameters.sha256` (as serve-model's does) that value must equal the declared digest, otherwise the
 *   digest is taken on the owner's word (`serverDigest` is then undefined).
 * - `classify` preprocesses on this node, with the same code and spec as the local engine (decode.ts), and
 *   sends the model's own tensor. Images are decoded and resized on preprocessing worker threads (the
 *   engine's PrepPool, threads.ts), never on the caller's event loop: a 6000×6000 PNG held the node's
 *   main thread for ~0.6 s when it was decoded there, and the node's consensus timers and sockets share
 *   it. The remote side then only runs the model, so a remote node feeds the model exactly the tensor a
 *   local node would, and any Open Inference Protocol server works (Triton does not decode images).
 *   serve-model's BYTES image input (kserve-server.ts) is for other clients.
 * - Tensors go as JSON, or in the binary tensor data extension (`Inference-Header-Content-Length`) when the
 *   server lists it (`useBinary: 'auto'`), which is 5–10× smaller for image models.
 * - The backlog is bounded as the local engine's: at most `maxInFlight` calls (default 8) are under way to
 *   the server at once, the rest wait here in arrival order, and past `maxQueue` inputs waiting (default
 *   512, preprocessing included) `classify` refuses at once with OVERLOADED, which the node host retries
 *   with backoff. The waiting inputs are in `stats()` as `queued` and `preprocessing`, which the node API
 *   reads for its maxInferenceQueue (503 OVERLOADED with Retry-After). REMOTE_DEFAULTS says why these.
 *
 * Errors: OVERLOADED (maxQueue inputs waiting), REMOTE_UNAVAILABLE (refused, reset, closed, or HTTP 502, 503
 * or 504), REMOTE_TIMEOUT (no full answer within `timeoutMs`, counted from the call's turn),
 * REMOTE_BAD_RESPONSE (other non-2xx, bad JSON, wrong datatype, shape or size), REMOTE_MODEL_NOT_FOUND
 * (the server does not serve the model or version), REMOTE_MODEL_MISMATCH (the served model's tensors do
 * not fit the spec), MODEL_DIGEST_MISMATCH (the server names another digest); the input errors of
 * decode.ts, and WORKER_* when a preprocessing thread fails (threads.ts).
 */
import { readCapped } from '../protocol/capped-body.ts';
import { DropbearError } from '../protocol/errors.ts';
import type { Result } from '../protocol/index.ts';
import { type BackendStats, type ClassifyOptions, INFERENCE_SKIPPED, type ModelBackend } from './backend.ts';
import { catalogByDigest } from './catalog.ts';
import type { Decoder } from './decode.ts';
import { toResult } from './postprocess.ts';
import { copyModelTensor, halfToFloat, inputElements, sniffInput, toHalf } from './preprocess.ts';
import type { ModelSpec } from './spec.ts';
import { PrepPool } from './threads.ts';

// ---------------------------------------------------------------- wire format shared with kserve-server.ts

/** The header that gives the length of the JSON part of a body that carries binary tensor data. */
export const INFER_HEADER_LENGTH = 'inference-header-content-length';
export const BINARY_EXTENSION = 'binary_tensor_data';

export type NumericDatatype = 'FP32' | 'FP16' | 'FP64';
export const ELEMENT_SIZE: Record<NumericDatatype, number> = { FP32: 4, FP16: 2, FP64: 8 };

export function isNumericDatatype(d: unknown): d is NumericDatatype {
  return d === 'FP32' || d === 'FP16' || d === 'FP64';
}

/** A spec dtype as a protocol datatype. */
export function protocolDatatype(dtype: ModelSpec['input']['dtype']): NumericDatatype {
  return dtype === 'float16' ? 'FP16' : 'FP32';
}

/**
 * Splits a request or response body into its JSON part and its binary part. `headerValue` is the
 * Inference-Header-Content-Length header; without it the whole body is JSON. Throws `code` on a bad header.
 */
export function splitBody(
  body: Uint8Array,
  headerValue: string | string[] | undefined,
  code: string,
): { json: Uint8Array; binary: Uint8Array } {
  if (headerValue === undefined) return { json: body, binary: body.subarray(body.length) };
  const text = Array.isArray(headerValue) ? headerValue[0] : headerValue;
  const n = /^\d{1,12}$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isSafeInteger(n) || n > body.length)
    throw new DropbearError(
      code,
      `${INFER_HEADER_LENGTH} is ${JSON.stringify(text)}, not a length within the ${body.length}-byte body`,
    );
  return { json: body.subarray(0, n), binary: body.subarray(n) };
}

/** Reads `count` little-endian elements of `datatype` as float32 values. */
export function floatsFromBytes(bytes: Uint8Array, datatype: NumericDatatype, count: number): Float32Array {
  const out = new Float32Array(count);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (datatype === 'FP32') for (let i = 0; i < count; i++) out[i] = dv.getFloat32(4 * i, true);
  else if (datatype === 'FP16')
    for (let i = 0; i < count; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
  else for (let i = 0; i < count; i++) out[i] = dv.getFloat64(8 * i, true);
  return out;
}

/** float32 values as little-endian FP32 or FP16 bytes. */
export function bytesFromFloats(x: Float32Array, datatype: 'FP32' | 'FP16'): Uint8Array {
  if (datatype === 'FP16') {
    const h = toHalf(x);
    const out = new Uint8Array(h.length * 2);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < h.length; i++) dv.setUint16(2 * i, h[i], true);
    return out;
  }
  const out = new Uint8Array(x.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < x.length; i++) dv.setFloat32(4 * i, x[i], true);
  return out;
}

/**
 * The numbers of a JSON tensor, flat or nested (row-major either way), into float32. Returns an error
 * message instead when an element is not a number or the count is not `count`.
 */
export function floatsFromJson(data: unknown, count: number): Float32Array | string {
  if (!Array.isArray(data)) return '"data" must be an array of numbers';
  const out = new Float32Array(count);
  let n = 0;
  const stack: unknown[][] = [data];
  const at: number[] = [0];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const i = at[at.length - 1];
    if (i === top.length) {
      stack.pop();
      at.pop();
      continue;
    }
    at[at.length - 1] = i + 1;
    const v = top[i];
    if (typeof v === 'number') {
      if (n === count) return `"data" holds more than the ${count} elements its shape gives`;
      out[n++] = v;
    } else if (Array.isArray(v)) {
      if (stack.length > 16) return '"data" is nested too deeply';
      stack.push(v);
      at.push(0);
    } else return `"data" holds ${v === null ? 'null' : typeof v} where a number belongs`;
  }
  if (n !== count) return `"data" holds ${n} elements but its shape gives ${count}`;
  return out;
}

/** Product of dimensions. */
export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, d) => a * d, 1);
}

// ---------------------------------------------------------------- the client

export interface RemoteOptions {
  /** The server's base URL, e.g. `http://10.0.0.5:8000` (a path prefix is kept). */
  url: string;
  /** The model's name on the server. */
  model: string;
  /** A model version; default: the server's default (no `/versions/...` in the path). */
  version?: string;
  /** SHA-256 (hex) of the model the server runs, as the owner declares it (the genesis digest). */
  digest: string;
  /** The model's spec; default: the catalog entry for `digest` (required when the digest is not in it). */
  spec?: ModelSpec;
  /**
   * Limit for each HTTP exchange, body included (default 10 000 ms): an integer, 1 to REMOTE_MAX_TIMEOUT_MS.
   */
  timeoutMs?: number;
  /** Binary tensor data: 'auto' (default) uses it when the server lists the extension. */
  useBinary?: 'auto' | boolean;
  /** JPEG decoder for local preprocessing (default 'fast', as the engine). */
  decoder?: Decoder;
  /** Worker threads that decode and preprocess inputs (default 1, as the engine's prepWorkers). */
  prepWorkers?: number;
  /**
   * The largest inference response body read, in bytes; a longer one fails with REMOTE_BAD_RESPONSE, read
   * no further. Default: what a valid answer for the request's n items can take (inferResponseCap).
   */
  maxResponseBytes?: number;
  /** Inference calls to the server under way at once; the others wait their turn here (default 8). */
  maxInFlight?: number;
  /**
   * Inputs waiting here (being preprocessed, or for a call to the server) past which `classify` refuses at
   * once with OVERLOADED, as the engine's maxQueue does (default 512).
   */
  maxQueue?: number;
}

/**
 * The bounds on a remote model's backlog. Until 2026-12-05 there were none: every input went to the server
 * at once, on a connection of its own, and a stalled server held them all. A burst of 1000 model tensors
 * (128×128) at a server that did not answer opened 1000 connections to it and took ~1 GB more of the
 * node's memory (measured that day on the 2-core test machine; stats().inFlight said 1000), and the node
 * API never answered 503, since the waiting inputs were not in the stats it reads (maxInferenceQueue).
 * test/inference/remote-overload.test.ts and test/node/api-remote-overload.test.ts hold the bounds.
 * - maxInFlight 8: each call carries one input, so 8 at once let the server's dynamic batcher form a batch
 *   of the engine's default size (maxBatch 8, serve-model's too); more calls only wait on the server.
 * - maxQueue 512: the engine's (ENGINE_DEFAULTS.maxQueue). The node API refuses new requests first, past
 *   its maxInferenceQueue (256); this bound is for everything else that calls the backend (the host's
 *   retries, peers' requests).
 */
export const REMOTE_DEFAULTS = { maxInFlight: 8, maxQueue: 512 };

/**
 * The longest `timeoutMs`: 2^31 - 1 ms, the longest timer Node keeps. Each exchange's limit is an
 * AbortSignal.timeout, which throws ERR_OUT_OF_RANGE for a fraction of a ms (or past 2^32 - 1) and fires
 * after 1 ms past 2^31 - 1; until 2026-12-06 connect took any positive number, so 0.5 failed every exchange
 * with a RangeError and 2^31 made every call REMOTE_TIMEOUT at once.
 */
export const REMOTE_MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** The largest metadata or readiness answer read (the server's and the model's metadata are a few KB). */
export const METADATA_RESPONSE_CAP = 1 << 20;

/**
 * The largest valid inference answer for `n` items of `outSize` values: 32 bytes a value (JSON's longest
 * float, "-1.2345678901234567e-123", and its comma; binary FP64 takes 8) plus 64 KiB for the JSON around it.
 */
export function inferResponseCap(n: number, outSize: number): number {
  return 65_536 + n * outSize * 32;
}

export interface RemoteStats extends BackendStats {
  /** Inputs admitted and waiting for a call to the server (preprocessed, or a model tensor copied). */
  queued: number;
  /** Inputs admitted and being decoded and preprocessed on the worker threads. */
  preprocessing: number;
  /** Inputs refused with OVERLOADED: maxQueue were waiting. */
  rejected: number;
  requests: number;
  failures: number;
  timeouts: number;
  bytesSent: number;
  bytesReceived: number;
  /** Sum of request round-trip times, ms. */
  totalMs: number;
  binary: boolean;
  /** Inputs decoded and preprocessed on the worker threads (model tensors are copied, not counted). */
  decoded: number;
  /** Sum of the workers' decode and preprocessing times, ms. */
  prepMs: number;
}

interface ModelTensorMeta {
  name: string;
  datatype: string;
  shape: number[];
}

interface Exchange {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function tensorMetas(v: unknown): ModelTensorMeta[] | null {
  if (!Array.isArray(v)) return null;
  const out: ModelTensorMeta[] = [];
  for (const t of v) {
    if (
      !isObject(t) ||
      typeof t.name !== 'string' ||
      typeof t.datatype !== 'string' ||
      !Array.isArray(t.shape) ||
      !t.shape.every((d) => Number.isInteger(d))
    )
      return null;
    out.push({ name: t.name, datatype: t.datatype, shape: t.shape as number[] });
  }
  return out;
}

function errorText(body: Uint8Array): string {
  const text = Buffer.from(body).toString('utf8');
  try {
    const j = JSON.parse(text) as unknown;
    if (isObject(j) && typeof j.error === 'string') return j.error;
  } catch {
    // not JSON: show the text itself
  }
  return text.length > 200 ? `${text.slice(0, 200)}…` : text || '(empty body)';
}

const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

export class RemoteBackend implements ModelBackend {
  readonly digest: string;
  readonly spec: ModelSpec;
  readonly url: string;
  readonly model: string;
  /** The digest the server itself reports (`parameters.sha256`), when it reports one. */
  readonly serverDigest: string | undefined;
  /** True when tensors travel as binary data. */
  readonly binary: boolean;
  private readonly base: string;
  private readonly timeoutMs: number;
  private readonly maxResponseBytes: number | undefined;
  private readonly prepPool: PrepPool;
  private readonly itemSize: number;
  private readonly outSize: number;
  private readonly inputName: string;
  private readonly inputDatatype: 'FP32' | 'FP16';
  private readonly outputName: string;
  /** Items a single request may carry (1 for a server whose batch dimension is fixed at 1). */
  private readonly perRequest: number;
  private readonly maxInFlight: number;
  private readonly maxQueue: number;
  /** Calls to the server holding a turn (at most maxInFlight). */
  private active = 0;
  /** Calls waiting for a turn, first come first served. */
  private readonly turns: { resolve: () => void; reject: (e: Error) => void }[] = [];
  /** Inputs admitted and not yet sent (preprocessing included): what maxQueue bounds. */
  private waiting = 0;
  /** Of `waiting`, those on the preprocessing workers. */
  private preparing = 0;
  private readonly closing = new AbortController();
  private closed = false;
  private readonly counters: Omit<RemoteStats, 'queued' | 'preprocessing'> = {
    items: 0,
    inFlight: 0,
    rejected: 0,
    requests: 0,
    failures: 0,
    timeouts: 0,
    bytesSent: 0,
    bytesReceived: 0,
    totalMs: 0,
    skipped: 0,
    binary: false,
    decoded: 0,
    prepMs: 0,
  };

  private constructor(init: {
    opts: Required<Pick<RemoteOptions, 'timeoutMs' | 'decoder' | 'maxInFlight' | 'maxQueue'>> & RemoteOptions;
    spec: ModelSpec;
    base: string;
    binary: boolean;
    serverDigest: string | undefined;
    input: ModelTensorMeta;
    outputName: string;
    prepPool: PrepPool;
  }) {
    const { opts, spec } = init;
    this.digest = opts.digest.toLowerCase();
    this.spec = spec;
    this.url = opts.url;
    this.model = opts.model;
    this.base = init.base;
    this.timeoutMs = opts.timeoutMs;
    this.maxResponseBytes = opts.maxResponseBytes;
    this.prepPool = init.prepPool;
    this.binary = init.binary;
    this.counters.binary = init.binary;
    this.serverDigest = init.serverDigest;
    this.itemSize = inputElements(spec);
    this.outSize = spec.output.shape.slice(1).reduce<number>((a, d) => a * (d ?? 1), 1);
    this.inputName = init.input.name;
    this.inputDatatype = init.input.datatype as 'FP32' | 'FP16';
    this.outputName = init.outputName;
    this.perRequest = init.input.shape[0] === 1 ? 1 : Number.POSITIVE_INFINITY;
    this.maxInFlight = opts.maxInFlight;
    this.maxQueue = opts.maxQueue;
  }

  /** Reads the server and model metadata and checks them against the spec; throws the errors above. */
  static async connect(options: RemoteOptions): Promise<RemoteBackend> {
    // Defaults by `??`: a node's configuration passes `timeoutMs: undefined` when it gives none, and a spread
    // would keep that undefined (and refuse it below).
    const opts = {
      ...options,
      timeoutMs: options.timeoutMs ?? 10_000,
      decoder: options.decoder ?? ('fast' as Decoder),
      maxInFlight: options.maxInFlight ?? REMOTE_DEFAULTS.maxInFlight,
      maxQueue: options.maxQueue ?? REMOTE_DEFAULTS.maxQueue,
    };
    const prepWorkers = options.prepWorkers ?? 1;
    if (!/^[0-9a-fA-F]{64}$/.test(opts.digest ?? ''))
      throw new DropbearError('CONFIG_INVALID', `digest must be a SHA-256 in hex, got ${opts.digest}`);
    if (!Number.isInteger(opts.timeoutMs) || opts.timeoutMs < 1 || opts.timeoutMs > REMOTE_MAX_TIMEOUT_MS)
      throw new DropbearError(
        'CONFIG_INVALID',
        `timeoutMs must be an integer from 1 to ${REMOTE_MAX_TIMEOUT_MS} (ms), got ${opts.timeoutMs}`,
      );
    if (!Number.isInteger(prepWorkers) || prepWorkers < 1)
      throw new DropbearError('CONFIG_INVALID', `prepWorkers must be a positive integer, got ${prepWorkers}`);
    for (const k of ['maxInFlight', 'maxQueue'] as const)
      if (!Number.isInteger(opts[k]) || opts[k] < 1)
        throw new DropbearError('CONFIG_INVALID', `${k} must be a positive integer, got ${opts[k]}`);
    if (
      opts.maxResponseBytes !== undefined &&
      (!Number.isInteger(opts.maxResponseBytes) || opts.maxResponseBytes <= 0)
    )
      throw new DropbearError(
        'CONFIG_INVALID',
        `maxResponseBytes must be a positive integer, got ${opts.maxResponseBytes}`,
      );
    const digest = opts.digest.toLowerCase();
    const spec = opts.spec ?? catalogByDigest(digest);
    if (!spec)
      throw new DropbearError(
        'CONFIG_INVALID',
        `digest ${digest} is not in the catalog; give the model's spec with the remote configuration`,
      );
    if (spec.sha256.toLowerCase() !== digest)
      throw new DropbearError(
        'CONFIG_INVALID',
        `the spec given is for sha256 ${spec.sha256}, but the declared digest is ${digest}`,
      );
    let parsed: URL;
    try {
      parsed = new URL(opts.url);
    } catch {
      throw new DropbearError('CONFIG_INVALID', `${opts.url} is not a URL`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
      throw new DropbearError('CONFIG_INVALID', `${opts.url}: only http and https URLs are supported`);
    const root = parsed.toString().replace(/\/+$/, '');
    const modelPath =
      `${root}/v2/models/${encodeURIComponent(opts.model)}` +
      (opts.version === undefined ? '' : `/versions/${encodeURIComponent(opts.version)}`);

    // Metadata requests map their failures to the same REMOTE_* codes as inference requests.
    const probe = (url: string) =>
      exchange(url, { method: 'GET' }, opts.timeoutMs, undefined, root, METADATA_RESPONSE_CAP);

    const server = await probe(`${root}/v2`);
    if (server.status !== 200)
      throw new DropbearError(
        unavailableStatus(server.status) ? 'REMOTE_UNAVAILABLE' : 'REMOTE_BAD_RESPONSE',
        `${root}/v2 answered HTTP ${server.status}: ${errorText(server.body)}`,
      );
    const serverMeta = parseJson(server.body, `${root}/v2`);
    const extensions =
      isObject(serverMeta) && Array.isArray(serverMeta.extensions) ? serverMeta.extensions : [];
    const binary =
      opts.useBinary === undefined || opts.useBinary === 'auto'
        ? extensions.includes(BINARY_EXTENSION)
        : opts.useBinary;

    const model = await probe(modelPath);
    if (model.status !== 200) {
      const why = errorText(model.body);
      const missing =
        model.status === 404 || (model.status === 400 && /unknown model|not found|no model/i.test(why));
      throw new DropbearError(
        missing
          ? 'REMOTE_MODEL_NOT_FOUND'
          : unavailableStatus(model.status)
            ? 'REMOTE_UNAVAILABLE'
            : 'REMOTE_BAD_RESPONSE',
        missing
          ? `${root} does not serve model ${opts.model}${opts.version ? ` version ${opts.version}` : ''}: ${why}`
          : `${modelPath} answered HTTP ${model.status}: ${why}`,
      );
    }
    const meta = parseJson(model.body, modelPath);
    const inputs = isObject(meta) ? tensorMetas(meta.inputs) : null;
    const outputs = isObject(meta) ? tensorMetas(meta.outputs) : null;
    if (!isObject(meta) || !inputs || !outputs)
      throw new DropbearError(
        'REMOTE_BAD_RESPONSE',
        `${modelPath}: model metadata lacks inputs/outputs with name, datatype and shape`,
      );
    const params = isObject(meta.parameters) ? meta.parameters : {};
    let serverDigest: string | undefined;
    if (params.sha256 !== undefined) {
      serverDigest = String(params.sha256).toLowerCase();
      if (serverDigest !== digest)
        throw new DropbearError(
          'MODEL_DIGEST_MISMATCH',
          `${modelPath} runs the model with sha256 ${serverDigest}, but ${digest} is declared for this node`,
          { expected: digest, actual: serverDigest },
        );
    }
    const input = checkInput(inputs, spec, modelPath);
    const outputName = checkOutput(outputs, spec, modelPath);
    // Started last: every check above that can refuse the server has passed, so no thread is left behind.
    const prepPool = await PrepPool.start(spec, opts.decoder, prepWorkers);
    return new RemoteBackend({
      opts,
      spec,
      base: modelPath,
      binary,
      serverDigest,
      input,
      outputName,
      prepPool,
    });
  }

  /** True when the server says the model is ready (`GET .../ready` answers 200). */
  async ready(): Promise<boolean> {
    try {
      const r = await exchange(
        `${this.base}/ready`,
        { method: 'GET' },
        this.timeoutMs,
        this.closing.signal,
        this.url,
        METADATA_RESPONSE_CAP,
      );
      return r.status === 200;
    } catch {
      return false;
    }
  }

  /** Raw model output for one preprocessed input. */
  async scores(x: Float32Array): Promise<Float32Array> {
    return (await this.scoresBatch([x]))[0];
  }

  /**
   * Raw model outputs for preprocessed inputs, in one request (one per item for a fixed-batch-1 server).
   * Admitted as `classify` is (OVERLOADED past maxQueue waiting inputs); the items then wait their turn.
   */
  async scoresBatch(items: readonly Float32Array[]): Promise<Float32Array[]> {
    if (this.closed) throw new DropbearError('ENGINE_CLOSED', 'the remote backend is closed');
    for (const x of items)
      if (x.length !== this.itemSize)
        throw new DropbearError('INPUT_SHAPE', `an input needs ${this.itemSize} values, got ${x.length}`);
    if (items.length === 0) return [];
    this.admit();
    const parts = items.length > this.perRequest ? items.map((x) => [x]) : [items];
    const out = await Promise.all(parts.map((p) => this.call(p, undefined, this.enter(p.length))));
    return out.flat();
  }

  /**
   * One input (JPEG, PNG or DBT1 tensor), preprocessed here, to its Result. Refused at once with OVERLOADED
   * when maxQueue inputs are waiting. `opts.wanted` is asked before decoding and when the input's turn for
   * the server comes (a call already sent runs to its end).
   */
  async classify(input: Uint8Array, opts?: ClassifyOptions): Promise<Result> {
    if (this.closed) throw new DropbearError('ENGINE_CLOSED', 'the remote backend is closed');
    const wanted = opts?.wanted;
    if (wanted !== undefined && !wanted()) return this.skip();
    this.admit();
    const leave = this.enter(1);
    try {
      const { x, pooled } = await this.prepare(input, wanted);
      try {
        const [scores] = await this.call([x], wanted, leave);
        return toResult(scores, this.spec.output.meaning);
      } finally {
        // The call has ended, and copied x into its request before: the worker may write into it again.
        if (pooled) this.prepPool.giveBack(x.buffer as ArrayBuffer);
      }
    } finally {
      leave();
    }
  }

  /** Refuses a new input with OVERLOADED when maxQueue inputs are waiting (as the engine's admit). */
  private admit(): void {
    if (this.waiting >= this.maxQueue) {
      this.counters.rejected++;
      throw new DropbearError(
        'OVERLOADED',
        `remote model queue full (${this.waiting} inputs waiting for ${this.url}); retry later`,
      );
    }
  }

  /**
   * Counts `n` inputs as waiting from their admission, before they are preprocessed: a burst admitted in
   * one turn of the event loop is counted before any of it reaches a queue. Returns the function (safe to
   * call more than once) that stops counting them, once they are sent or have failed.
   */
  private enter(n: number): () => void {
    this.waiting += n;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.waiting -= n;
    };
  }

  /**
   * One inference call once a turn is free (at most maxInFlight under way; the others wait in arrival
   * order). `leave` is called when the turn comes; `wanted` is asked then.
   */
  private async call(
    items: readonly Float32Array[],
    wanted: (() => boolean) | undefined,
    leave: () => void,
  ): Promise<Float32Array[]> {
    try {
      await this.turn();
    } finally {
      leave();
    }
    try {
      if (this.closed) throw new DropbearError('ENGINE_CLOSED', 'the remote backend is closed');
      if (wanted !== undefined && !wanted()) return this.skip();
      return await this.inferOnce(items);
    } finally {
      this.release();
    }
  }

  private turn(): Promise<void> {
    if (this.closed)
      return Promise.reject(new DropbearError('ENGINE_CLOSED', 'the remote backend is closed'));
    if (this.active < this.maxInFlight) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => this.turns.push({ resolve, reject }));
  }

  /** Hands the turn to the next call waiting, if any. */
  private release(): void {
    const next = this.turns.shift();
    if (next) next.resolve();
    else this.active--;
  }

  /**
   * The model's input for `input`. Only the model's own tensor is copied here (a copy, no decoding); an
   * image goes to a preprocessing worker, which also asks `wanted` when the input's turn comes.
   */
  private async prepare(
    input: Uint8Array,
    wanted: (() => boolean) | undefined,
  ): Promise<{ x: Float32Array; pooled: boolean }> {
    if (sniffInput(input) === 'tensor') {
      const direct = new Float32Array(this.itemSize);
      if (copyModelTensor(input, this.spec, direct, 0)) return { x: direct, pooled: false };
    }
    this.preparing++;
    try {
      const r = await this.prepPool.prep(input, wanted);
      this.counters.decoded++;
      this.counters.prepMs += r.ms;
      return { x: r.data as Float32Array, pooled: true };
    } finally {
      this.preparing--;
    }
  }

  private skip(): never {
    this.counters.skipped = (this.counters.skipped ?? 0) + 1;
    throw INFERENCE_SKIPPED;
  }

  stats(): RemoteStats {
    return {
      ...this.counters,
      queued: this.waiting - this.preparing,
      preprocessing: this.preparing,
      skipped: (this.counters.skipped ?? 0) + this.prepPool.skipped,
    };
  }

  /** Worker threads started to replace dead ones. */
  get replacedWorkers(): number {
    return this.prepPool.replaced;
  }

  /**
   * Aborts requests under way and those waiting for their turn (they fail with ENGINE_CLOSED), refuses new
   * ones, and ends the preprocessing threads (after the inputs they are decoding, see WorkerHandle.close).
   */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    const e = new DropbearError('ENGINE_CLOSED', 'the remote backend is closed');
    for (const t of this.turns.splice(0)) t.reject(e);
    await this.prepPool.close();
  }

  private async inferOnce(items: readonly Float32Array[]): Promise<Float32Array[]> {
    const n = items.length;
    const dims = this.spec.input.shape.slice(1).map((d) => d ?? 1);
    const flat = new Float32Array(n * this.itemSize);
    items.forEach((x, i) => {
      flat.set(x, i * this.itemSize);
    });
    const input: Record<string, unknown> = {
      name: this.inputName,
      shape: [n, ...dims],
      datatype: this.inputDatatype,
    };
    let body: Uint8Array<ArrayBuffer>;
    const headers: Record<string, string> = {};
    if (this.binary) {
      const data = bytesFromFloats(flat, this.inputDatatype);
      input.parameters = { binary_data_size: data.length };
      const json = Buffer.from(
        JSON.stringify({
          inputs: [input],
          outputs: [{ name: this.outputName, parameters: { binary_data: true } }],
          parameters: { binary_data_output: true },
        }),
      );
      body = Buffer.concat([json, data]);
      headers['content-type'] = 'application/octet-stream';
      headers[INFER_HEADER_LENGTH] = String(json.length);
    } else {
      input.data = Array.from(flat);
      body = Buffer.from(JSON.stringify({ inputs: [input], outputs: [{ name: this.outputName }] }));
      headers['content-type'] = 'application/json';
    }
    const url = `${this.base}/infer`;
    this.counters.requests++;
    this.counters.inFlight++;
    this.counters.bytesSent += body.length;
    const t0 = performance.now();
    try {
      const r = await exchange(
        url,
        { method: 'POST', headers, body },
        this.timeoutMs,
        this.closing.signal,
        this.url,
        this.maxResponseBytes ?? inferResponseCap(n, this.outSize),
      );
      this.counters.bytesReceived += r.body.length;
      const out = this.readOutput(r, n, url);
      this.counters.items += n;
      return out;
    } catch (e) {
      this.counters.failures++;
      if (e instanceof DropbearError && e.code === 'REMOTE_TIMEOUT') this.counters.timeouts++;
      throw e;
    } finally {
      this.counters.inFlight--;
      this.counters.totalMs += performance.now() - t0;
    }
  }

  private readOutput(r: Exchange, n: number, url: string): Float32Array[] {
    if (r.status !== 200) {
      const why = errorText(r.body);
      const code =
        r.status === 404
          ? 'REMOTE_MODEL_NOT_FOUND'
          : unavailableStatus(r.status)
            ? 'REMOTE_UNAVAILABLE'
            : 'REMOTE_BAD_RESPONSE';
      throw new DropbearError(code, `${url} answered HTTP ${r.status}: ${why}`, { status: r.status });
    }
    const bad = (msg: string) => new DropbearError('REMOTE_BAD_RESPONSE', `${url}: ${msg}`);
    const { json, binary } = splitBody(
      r.body,
      r.headers.get(INFER_HEADER_LENGTH) ?? undefined,
      'REMOTE_BAD_RESPONSE',
    );
    const res = parseJson(json, url);
    if (!isObject(res) || !Array.isArray(res.outputs)) throw bad('the response has no "outputs" array');
    // Binary outputs lie back to back in the order of the outputs that carry binary_data_size.
    let offset = 0;
    let found: { datatype: NumericDatatype; shape: number[]; bytes?: Uint8Array; data?: unknown } | null =
      null;
    for (const o of res.outputs as unknown[]) {
      if (!isObject(o)) throw bad('an output is not an object');
      const size = isObject(o.parameters) ? o.parameters.binary_data_size : undefined;
      let bytes: Uint8Array | undefined;
      if (size !== undefined) {
        if (!Number.isSafeInteger(size) || (size as number) < 0 || offset + (size as number) > binary.length)
          throw bad(
            `output ${String(o.name)} claims ${String(size)} binary bytes; ${binary.length - offset} remain`,
          );
        bytes = binary.subarray(offset, offset + (size as number));
        offset += size as number;
      }
      if (o.name !== this.outputName) continue;
      if (!isNumericDatatype(o.datatype))
        throw bad(
          `output ${this.outputName} has datatype ${String(o.datatype)}; FP32, FP16 or FP64 expected`,
        );
      if (!Array.isArray(o.shape) || !o.shape.every((d) => Number.isInteger(d) && d >= 0))
        throw bad(`output ${this.outputName} has no valid shape`);
      found = { datatype: o.datatype, shape: o.shape as number[], bytes, data: o.data };
    }
    if (!found) throw bad(`the response lacks output ${this.outputName}`);
    const count = elementCount(found.shape);
    if (found.shape[0] !== n || count !== n * this.outSize)
      throw bad(
        `output ${this.outputName} has shape [${found.shape.join(', ')}]; ${n} items of ${this.outSize} values expected`,
      );
    let values: Float32Array;
    if (found.bytes) {
      if (found.bytes.length !== count * ELEMENT_SIZE[found.datatype])
        throw bad(
          `output ${this.outputName}: ${found.bytes.length} binary bytes for ${count} ${found.datatype}`,
        );
      values = floatsFromBytes(found.bytes, found.datatype, count);
    } else {
      const v = floatsFromJson(found.data, count);
      if (typeof v === 'string') throw bad(`output ${this.outputName}: ${v}`);
      values = v;
    }
    return Array.from({ length: n }, (_, i) => values.slice(i * this.outSize, (i + 1) * this.outSize));
  }
}

function parseJson(bytes: Uint8Array, where: string): unknown {
  try {
    return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (e) {
    throw new DropbearError('REMOTE_BAD_RESPONSE', `${where} did not answer JSON: ${(e as Error).message}`);
  }
}

function checkInput(inputs: ModelTensorMeta[], spec: ModelSpec, where: string): ModelTensorMeta {
  const mismatch = (msg: string) => new DropbearError('REMOTE_MODEL_MISMATCH', `${where}: ${msg}`);
  if (inputs.length !== 1)
    throw mismatch(
      `the model has ${inputs.length} inputs (${inputs.map((t) => t.name).join(', ')}); one is supported`,
    );
  const t = inputs[0];
  if (t.datatype !== 'FP32' && t.datatype !== 'FP16')
    throw mismatch(`input ${t.name} has datatype ${t.datatype}; FP32 or FP16 is supported`);
  const want = spec.input.shape;
  const ok =
    t.shape.length === want.length &&
    (t.shape[0] === -1 || t.shape[0] === 1) &&
    t.shape.slice(1).every((d, i) => d === -1 || want[i + 1] === null || d === want[i + 1]);
  if (!ok)
    throw mismatch(
      `input ${t.name} has shape [${t.shape.join(', ')}], which does not take the spec's ` +
        `[${want.map((d) => d ?? -1).join(', ')}] a batch at a time or one item at a time`,
    );
  return t;
}

function checkOutput(outputs: ModelTensorMeta[], spec: ModelSpec, where: string): string {
  const named = outputs.find((t) => t.name === spec.output.name);
  const t = named ?? (outputs.length === 1 ? outputs[0] : undefined);
  if (!t)
    throw new DropbearError(
      'REMOTE_MODEL_MISMATCH',
      `${where}: no output ${spec.output.name} among ${outputs.map((o) => o.name).join(', ') || 'none'}`,
    );
  const per = t.shape.slice(1);
  const want = spec.output.shape.slice(1).reduce<number>((a, d) => a * (d ?? 1), 1);
  if (per.every((d) => d >= 0) && elementCount(per) !== want)
    throw new DropbearError(
      'REMOTE_MODEL_MISMATCH',
      `${where}: output ${t.name} has shape [${t.shape.join(', ')}]; ${want} values per item expected`,
    );
  return t.name;
}

/**
 * The HTTP statuses that say the server is unavailable, not that the request was bad: 503, and the 502 and
 * 504 of a proxy or gateway in front of it (REMOTE_UNAVAILABLE, which the node host retries with backoff).
 */
function unavailableStatus(status: number): boolean {
  return status === 502 || status === 503 || status === 504;
}

/** A body read chunk by chunk (readCapped), failing with REMOTE_BAD_RESPONSE once it passes `maxBytes`. */
function readBody(res: Response, maxBytes: number, where: string): Promise<Uint8Array> {
  return readCapped(
    res,
    maxBytes,
    (bytes, declared) =>
      new DropbearError(
        'REMOTE_BAD_RESPONSE',
        `${where} answered ${declared ? bytes : `over ${maxBytes}`} bytes; a valid answer takes at most ${maxBytes}`,
      ),
  );
}

/**
 * One HTTP exchange with the whole body read (at most `maxBytes` of it), errors mapped to REMOTE_* codes.
 * Redirects are not followed: a 3xx fails with REMOTE_BAD_RESPONSE (a configured URL that moved is the
 * operator's to change; following one would send a model's inputs where nobody configured).
 */
async function exchange(
  url: string,
  init: { method: string; headers?: Record<string, string>; body?: Uint8Array<ArrayBuffer> },
  timeoutMs: number,
  closing: AbortSignal | undefined,
  server: string,
  maxBytes: number,
): Promise<Exchange> {
  const timer = AbortSignal.timeout(timeoutMs);
  const signal = closing ? AbortSignal.any([timer, closing]) : timer;
  try {
    const res = await fetch(url, { ...init, signal, redirect: 'manual' });
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel().catch(() => {});
      const to = res.headers.get('location');
      throw new DropbearError(
        'REMOTE_BAD_RESPONSE',
        `${init.method} ${url} answered a redirect (HTTP ${res.status}${to ? ` to ${to}` : ''}); redirects are not followed: configure the server's own URL`,
        { status: res.status },
      );
    }
    const body = await readBody(res, maxBytes, `${init.method} ${url}`);
    return { status: res.status, headers: res.headers, body };
  } catch (e) {
    if (e instanceof DropbearError) throw e;
    if (closing?.aborted) throw new DropbearError('ENGINE_CLOSED', 'the remote backend is closed');
    if (timer.aborted || (e as Error).name === 'TimeoutError')
      throw new DropbearError(
        'REMOTE_TIMEOUT',
        `${server} gave no full answer within ${timeoutMs} ms (${init.method} ${url})`,
      );
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const code = cause?.code ?? '';
    if (
      code === 'UND_ERR_HEADERS_TIMEOUT' ||
      code === 'UND_ERR_BODY_TIMEOUT' ||
      code === 'UND_ERR_CONNECT_TIMEOUT'
    )
      throw new DropbearError('REMOTE_TIMEOUT', `${server} timed out (${code}) on ${init.method} ${url}`);
    if (code.startsWith('HPE_'))
      throw new DropbearError(
        'REMOTE_BAD_RESPONSE',
        `${server} did not answer valid HTTP (${code}: ${cause?.message})`,
      );
    const why = cause?.message ?? (e as Error).message;
    throw new DropbearError(
      'REMOTE_UNAVAILABLE',
      `cannot reach ${server}${UNREACHABLE.has(code) ? '' : ' (unexpected failure)'}: ${why}`,
      { code },
    );
  }
}
