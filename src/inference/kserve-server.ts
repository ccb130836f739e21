/**
 * A small Open Inference Protocol (KServe v2 REST) server for one model on an InferenceEngine, so that a
 * node can reach a model through RemoteBackend (remote.ts) and any OIP client can use it.
 *
 *   GET  /v2/health/live, /v2/health/ready         200 {"live": true} / {"ready": true}
 *   GET  /v2                                       server metadata: name, version, extensions
 *   GET  /v2/models/{m}[/versions/{v}]             model metadata; parameters.sha256 is the file's digest
 *   GET  /v2/models/{m}[/versions/{v}]/ready       200 {"name", "ready": true}
 *   POST /v2/models/{m}[/versions/{v}]/infer       inference
 *
 * The one version is "1". Infer takes one input:
 * - the model's own tensor: datatype FP32 or FP16 (metadata gives the model's own; the engine converts),
 *   shape [N, ...item dims], data row-major, flat or nested, in JSON or as binary data (a JSON number
 *   beyond the datatype's range, which would be ±Infinity, is refused, as is a NaN or an infinity in binary
 *   data and, for an FP16 model, an FP32 value beyond FP16's range);
 * - or, as an extension of this server (listed as `dropbear_image_bytes`), datatype BYTES with shape [N]:
 *   N encoded images (JPEG, PNG or DBT1 tensors), base64 strings in JSON, or in binary data each element as
 *   a 4-byte little-endian length followed by its bytes. The server decodes and preprocesses them with the
 *   model's spec, as the local engine does.
 * Every item goes through the engine's dynamic batcher on its own (`engine.scores`; image bytes through
 * `engine.scoresFor`, the path `classify` takes), so N > 1 works for a
 * model whose batch dimension is fixed at 1 too; the input's batch dimension is reported as -1. The output
 * is FP32 [N, ...output dims] (an fp16 model's output is widened), as JSON numbers or, when the request asks
 * (the output's `parameters.binary_data`, else the request's `parameters.binary_data_output`), as binary
 * data after the JSON with its length in the Inference-Header-Content-Length header (the binary tensor
 * data extension).
 * Fields beyond the protocol's (at the top, in the input, in an output) are a 400 naming them, but for a
 * `model_name` at the top (KServe's Python client sends one), which must be this model's (404 otherwise).
 * Errors are JSON {"error": "...", "code": "CODE"} (the message at most 4 KiB, cut with "…"; the code, a stable
 * name, the node API's where it has one: BAD_REQUEST, MODEL_NOT_FOUND, NOT_FOUND, METHOD_NOT_ALLOWED,
 * BODY_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, an engine's code such as OVERLOADED, INTERNAL; until 2026-12-07
 * there was none, and this server's own errors gave only a message): 400 bad request, 404 unknown model, version or path,
 * 405 METHOD_NOT_ALLOWED a method the path does not take (with an Allow header), 413 body over the
 * limit or INPUT_TOO_LARGE (an image over the input bounds, as on the node), 415 a compressed body (a Content-Encoding other than identity), 503 overloaded or shutting down,
 * 500 anything else. Errors raised before a route runs read
 * "CODE: message" with the node API's codes (http-body.ts): 400 BAD_URL (a URL that does not decode),
 * 414 URI_TOO_LONG (a path parameter over 100 characters), and, answered on the socket with
 * `Connection: close`, 400 BAD_HTTP (not HTTP/1.1; also HTTP/1.1 without Host, and CONNECT), 431
 * HEADERS_TOO_LARGE, 408 REQUEST_TIMEOUT (a request not fully arrived within `requestTimeoutMs`, 60 s by
 * default), 417 EXPECTATION_FAILED (an `Expect` other than 100-continue).
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { DropbearError } from '../protocol/errors.ts';
import type { InferenceEngine } from './engine.ts';
import {
  answerClientError,
  answerNodeRefusals,
  clientErrorOf,
  cutUtf8,
  DEFAULT_REQUEST_TIMEOUT_MS,
  EDGE_STATUS,
  isWholeBase64,
  methodsByPath,
  refuseOversizedBodies,
  requestTimeoutOptions,
} from './http-body.ts';
import { firstUnrunnable } from './preprocess.ts';
import {
  BINARY_EXTENSION,
  bytesFromFloats,
  ELEMENT_SIZE,
  elementCount,
  floatsFromBytes,
  floatsFromJson,
  INFER_HEADER_LENGTH,
  protocolDatatype,
  splitBody,
} from './remote.ts';

export const IMAGE_BYTES_EXTENSION = 'dropbear_image_bytes';
export const MODEL_VERSION = '1';
export const DEFAULT_BODY_LIMIT = 64 * 1024 * 1024;
export const DEFAULT_MAX_ITEMS = 64;

/** The part of InferenceEngine the server uses. */
export type ServedEngine = Pick<InferenceEngine, 'spec' | 'digest' | 'scores' | 'scoresFor'>;

export interface KServeServerOptions {
  engine: ServedEngine;
  /** The model's name in URLs (default: the spec's name). */
  modelName?: string;
  /** Largest request body, bytes (default 64 MiB). */
  bodyLimit?: number;
  /** Most items (N) in one request (default 64). */
  maxItems?: number;
  /** A request not fully arrived within this many ms gets 408 and its connection closed (default 60 s; 0: none). */
  requestTimeoutMs?: number;
}

/** This package's version (from package.json), for server metadata. */
export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** HTTP status for an error raised while serving. */
function statusOf(e: unknown): number {
  if (e instanceof DropbearError) {
    if (e.code === 'KSERVE_NOT_FOUND') return 404;
    if (e.code === 'OVERLOADED' || e.code === 'ENGINE_CLOSED') return 503;
    // An image over the input bounds: 413, as the node answers it (api.ts); it was 400 here.
    if (e.code === 'INPUT_TOO_LARGE') return 413;
    if (e.code.startsWith('INPUT_') || e.code === 'KSERVE_BAD_REQUEST') return 400;
    if (e.code === 'KSERVE_UNSUPPORTED_MEDIA_TYPE') return 415;
    return 500;
  }
  const s = (e as { statusCode?: number }).statusCode;
  return typeof s === 'number' && s >= 400 && s < 600 ? s : 500;
}

/** The code an error answer carries beside its message: this server's own as the node API names them. */
const PUBLIC_CODE: Record<string, string> = {
  KSERVE_BAD_REQUEST: 'BAD_REQUEST',
  KSERVE_NOT_FOUND: 'MODEL_NOT_FOUND',
  KSERVE_UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
};

/** The stable code of an error raised while serving, answered with `status`. */
function codeOf(e: unknown, status: number): string {
  if (e instanceof DropbearError) return PUBLIC_CODE[e.code] ?? e.code;
  if (status === 413) return 'BODY_TOO_LARGE';
  if (status === 415) return 'UNSUPPORTED_MEDIA_TYPE';
  return status >= 500 ? 'INTERNAL' : 'BAD_REQUEST';
}

/** The longest error message sent, in UTF-8 bytes (the node API's LIMITS.message). */
const MAX_ERROR_BYTES = 4096;

const badRequest = (msg: string) => new DropbearError('KSERVE_BAD_REQUEST', msg);

/**
 * Whether `s` is base64 as a BYTES element may carry it: the alphabet and line breaks, up to two `=`, then
 * any whitespace. In linear time: the one regex this replaces, /^[A-Za-z0-9+/\r\n]*={0,2}\s*$/, tried
 * every split between its line breaks and the trailing whitespace, so 80,000 newlines before a `!` held
 * the server for 9 s. trimEnd strips what `\s*$` matched (the same characters); the rest cannot backtrack
 * more than once over the input, `=` being outside the class before it.
 */
export function isBase64Element(s: string): boolean {
  return /^[A-Za-z0-9+/\r\n]*={0,2}$/.test(s.trimEnd());
}

/**
 * Commas, and opening brackets and braces, in a request's JSON text: each value after the first in an
 * array or object takes a comma, each array or object a bracket. Counted before JSON.parse, which builds
 * every value first: a 64 MiB body of `0,` (33 million numbers) took 4.7 s of the server's one thread and
 * of `[],` (22 million empty arrays) 17 s, for a model whose valid request holds at most
 * maxItems × 784 numbers. Characters inside strings count too (an overcount; base64 has none of them).
 */
export function jsonStructure(json: Uint8Array): { commas: number; opens: number } {
  let commas = 0;
  let opens = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === 0x2c) commas++;
    else if (c === 0x5b || c === 0x7b) opens++;
  }
  return { commas, opens };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

interface Params {
  name: string;
  version?: string;
}

/** Builds the server (not yet listening). */
export function createKServeServer(opts: KServeServerOptions): FastifyInstance {
  const { engine } = opts;
  const spec = engine.spec;
  const modelName = opts.modelName ?? spec.name;
  const maxItems = opts.maxItems ?? DEFAULT_MAX_ITEMS;
  const itemDims = spec.input.shape.slice(1).map((d) => d ?? 1);
  const itemSize = elementCount(itemDims);
  const outDims = spec.output.shape.slice(1).map((d) => d ?? 1);
  const outSize = elementCount(outDims);
  const inputDatatype = protocolDatatype(spec.input.dtype);
  /** The model takes FP16: FP32 data is converted, and must be within FP16's range too. */
  const halfModel = spec.input.dtype === 'float16';
  // What a valid request's JSON can hold (jsonStructure): a comma per number of maxItems items, an array
  // per innermost row (nested data), and room for the rest of the request.
  const maxJsonCommas = maxItems * itemSize + 4096;
  const maxJsonOpens = 2 * maxItems * Math.ceil(itemSize / (itemDims[itemDims.length - 1] ?? 1)) + 4096;
  let closing = false;

  const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const app = Fastify({
    logger: false,
    bodyLimit,
    ...requestTimeoutOptions(opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS),
    // Fastify's own errors before a route runs, in this server's error body.
    frameworkErrors: (e, _req, reply) => {
      const code =
        e.code === 'FST_ERR_BAD_URL'
          ? 'BAD_URL'
          : e.code === 'FST_ERR_MAX_PARAM_LENGTH'
            ? 'URI_TOO_LONG'
            : null;
      const message =
        code === 'BAD_URL'
          ? 'BAD_URL: the URL does not decode (bad percent-encoding)'
          : code === 'URI_TOO_LONG'
            ? 'URI_TOO_LONG: a path parameter is over 100 characters'
            : 'internal error';
      (reply as FastifyReply)
        .code(code ? EDGE_STATUS[code] : 500)
        .type('application/json')
        .send({ error: message, code: code ?? 'INTERNAL' });
    },
    // Errors before there is a request (HTTP that does not parse, headers over 16 KiB, a timed-out
    // request): answered on the socket, which is then closed.
    clientErrorHandler: (e, socket) => {
      if ((e as { code?: string }).code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      const err = clientErrorOf(e);
      answerClientError(socket as Socket, EDGE_STATUS[err.code], {
        error: `${err.code}: ${err.message}`,
        code: err.code,
      });
    },
  });
  refuseOversizedBodies(app, bodyLimit);
  answerNodeRefusals(app, (e) => ({ error: `${e.code}: ${e.message}`, code: e.code }));
  const methodsOf = methodsByPath(app);
  // The infer body is JSON or JSON plus binary data: take every body as bytes and parse it here.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  // Nothing here decodes a compressed body: one in a coding other than identity is refused as such (415)
  // rather than parsed as it is (gzipped JSON read "does not parse"), as the node's API does.
  app.addHook('preParsing', (req, _reply, payload, done) => {
    const coding = req.headers['content-encoding'];
    if (coding === undefined || coding.trim().toLowerCase() === 'identity') return done(null, payload);
    done(
      new DropbearError(
        'KSERVE_UNSUPPORTED_MEDIA_TYPE',
        `content-encoding ${JSON.stringify(coding.slice(0, 100))} is not taken: send the body uncompressed`,
      ),
      payload,
    );
  });
  app.addHook('preClose', async () => {
    closing = true;
  });

  app.setErrorHandler((e, _req, reply) => {
    const status = statusOf(e);
    // The server's own request errors read as plain messages; engine errors keep their code.
    const message =
      e instanceof DropbearError && !e.code.startsWith('KSERVE_')
        ? `${e.code}: ${e.message}`
        : (e as Error).message;
    // Cut to 4 KiB: messages quote the request (an unknown input or output name, a datatype), and a 4 MB
    // name came back whole.
    reply
      .code(status)
      .type('application/json')
      .send({ error: cutUtf8(message, MAX_ERROR_BYTES), code: codeOf(e, status) });
  });
  // Cut to 4 KiB like every other error: the URL it quotes may be up to Node's 16 KiB of headers. A path
  // that a route has, asked with another method: 405 with Allow.
  app.setNotFoundHandler((req, reply) => {
    const allow = methodsOf(req.url);
    if (allow.length > 0) {
      const path = req.url.split('?')[0];
      const message = `METHOD_NOT_ALLOWED: ${req.method} is not taken by ${path}; it takes ${allow.join(', ')}`;
      reply
        .code(405)
        .header('allow', allow.join(', '))
        .send({ error: cutUtf8(message, MAX_ERROR_BYTES), code: 'METHOD_NOT_ALLOWED' });
      return;
    }
    reply.code(404).send({
      error: cutUtf8(`no such endpoint: ${req.method} ${req.url}`, MAX_ERROR_BYTES),
      code: 'NOT_FOUND',
    });
  });

  const checkModel = (p: Params) => {
    if (p.name !== modelName)
      throw new DropbearError('KSERVE_NOT_FOUND', `unknown model ${p.name}; this server serves ${modelName}`);
    if (p.version !== undefined && p.version !== MODEL_VERSION)
      throw new DropbearError(
        'KSERVE_NOT_FOUND',
        `model ${modelName} has no version ${p.version}; its one version is ${MODEL_VERSION}`,
      );
  };

  app.get('/v2/health/live', async () => ({ live: true }));
  app.get('/v2/health/ready', async (_req, reply) => {
    if (closing) return reply.code(503).send({ ready: false });
    return { ready: true };
  });
  app.get('/v2', async () => ({
    name: 'dropbear',
    version: packageVersion(),
    extensions: [BINARY_EXTENSION, IMAGE_BYTES_EXTENSION],
  }));

  const metadata = async (req: FastifyRequest<{ Params: Params }>) => {
    checkModel(req.params);
    return {
      name: modelName,
      versions: [MODEL_VERSION],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: spec.input.name, datatype: inputDatatype, shape: [-1, ...itemDims] }],
      outputs: [{ name: spec.output.name, datatype: 'FP32', shape: [-1, ...outDims] }],
      parameters: { sha256: engine.digest },
    };
  };
  app.get('/v2/models/:name', metadata);
  app.get('/v2/models/:name/versions/:version', metadata);

  const ready = async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    checkModel(req.params);
    if (closing) return reply.code(503).send({ name: modelName, ready: false });
    return { name: modelName, ready: true };
  };
  app.get('/v2/models/:name/ready', ready);
  app.get('/v2/models/:name/versions/:version/ready', ready);

  /** A `parameters` object (absent: none); anything else is refused rather than ignored. */
  const parametersOf = (v: unknown, where: string): Record<string, unknown> => {
    if (v === undefined) return {};
    if (!isObject(v)) throw badRequest(`${where}: "parameters" must be an object`);
    return v;
  };
  /** A boolean parameter (absent: undefined); another type is refused. */
  const flagOf = (params: Record<string, unknown>, name: string, where: string): boolean | undefined => {
    const v = params[name];
    if (v !== undefined && typeof v !== 'boolean')
      throw badRequest(`${where}: ${name} must be true or false`);
    return v as boolean | undefined;
  };

  /**
   * Refuses a field the protocol does not have in `o` (`where`: "the request", "input x", "output y"): a
   * misspelt one ("ouputs", "paramters") was ignored until 2026-12-06, and the call answered as if it had not
   * been given.
   */
  const onlyFields = (o: Record<string, unknown>, fields: readonly string[], where: string): void => {
    const unknown = Object.keys(o).find((k) => !fields.includes(k));
    if (unknown !== undefined)
      throw badRequest(
        `${where}: unknown field ${JSON.stringify(cutUtf8(unknown, 100))}; the protocol's are ${fields.join(', ')}`,
      );
  };

  /** The request's one input as preprocessed items, or as encoded images. */
  const readInput = (
    input: Record<string, unknown>,
    binary: Uint8Array,
  ): { used: number; tensors?: Float32Array[]; images?: Uint8Array[] } => {
    onlyFields(
      input,
      ['name', 'shape', 'datatype', 'parameters', 'data'],
      `input ${JSON.stringify(input.name)}`,
    );
    if (input.name !== spec.input.name)
      throw badRequest(
        `unknown input ${JSON.stringify(input.name)}; the model's input is ${spec.input.name}`,
      );
    const shape = input.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw badRequest(`input ${spec.input.name}: "shape" must be an array of non-negative integers`);
    const params = parametersOf(input.parameters, `input ${spec.input.name}`);
    const size = params.binary_data_size;
    if (size !== undefined && (!Number.isSafeInteger(size) || (size as number) < 0))
      throw badRequest(`input ${spec.input.name}: binary_data_size must be a non-negative integer`);
    if (size !== undefined && input.data !== undefined)
      throw badRequest(`input ${spec.input.name} has both "data" and binary_data_size`);
    if (size === undefined && input.data === undefined)
      throw badRequest(`input ${spec.input.name} has neither "data" nor binary_data_size`);
    if (size !== undefined && (size as number) > binary.length)
      throw badRequest(
        `input ${spec.input.name} claims ${size} bytes of binary data; the body carries ${binary.length}`,
      );
    const bytes = size === undefined ? undefined : binary.subarray(0, size as number);
    const n = shape[0] as number;
    const datatype = input.datatype;

    if (datatype === 'BYTES') {
      if (shape.length !== 1 || n < 1)
        throw badRequest(
          `a BYTES input (encoded images) has shape [N] with N >= 1; got [${shape.join(', ')}]`,
        );
      if (n > maxItems) throw badRequest(`${n} items in one request; the limit is ${maxItems}`);
      const images: Uint8Array[] = [];
      if (bytes) {
        let at = 0;
        const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        for (let i = 0; i < n; i++) {
          if (at + 4 > bytes.length) throw badRequest(`BYTES binary data ends before element ${i}`);
          const len = dv.getUint32(at, true);
          if (at + 4 + len > bytes.length) throw badRequest(`BYTES element ${i} runs past its binary data`);
          images.push(bytes.subarray(at + 4, at + 4 + len));
          at += 4 + len;
        }
        if (at !== bytes.length)
          throw badRequest(`BYTES binary data has ${bytes.length - at} bytes left over`);
      } else {
        const data = input.data;
        const flat = Array.isArray(data) && data.length === 1 && Array.isArray(data[0]) ? data[0] : data;
        if (!Array.isArray(flat) || flat.length !== n || !flat.every((s) => typeof s === 'string'))
          throw badRequest(`a BYTES input in JSON holds ${n} base64 strings`);
        for (const s of flat as string[]) {
          if (!isBase64Element(s)) throw badRequest('a BYTES element is not base64');
          // Whole, once its line breaks and trailing whitespace are set aside (copied only when it has any).
          const text = /[\r\n]/.test(s) ? s.replace(/[\r\n]/g, '') : s;
          if (!isWholeBase64(text.trimEnd())) throw badRequest('a BYTES element is not base64');
          images.push(new Uint8Array(Buffer.from(s, 'base64')));
        }
      }
      return { used: bytes?.length ?? 0, images };
    }

    if (datatype !== 'FP32' && datatype !== 'FP16')
      throw badRequest(
        `input ${spec.input.name} has datatype ${JSON.stringify(datatype)}; this model takes FP32 or FP16 ` +
          'tensors, or BYTES (encoded images)',
      );
    const want = `[N, ${itemDims.join(', ')}]`;
    if (shape.length !== itemDims.length + 1 || !itemDims.every((d, i) => shape[i + 1] === d) || n < 1)
      throw badRequest(
        `input ${spec.input.name} has shape [${shape.join(', ')}]; the model takes ${want}, N >= 1`,
      );
    if (n > maxItems) throw badRequest(`${n} items in one request; the limit is ${maxItems}`);
    const count = n * itemSize;
    let flat: Float32Array;
    if (bytes) {
      if (bytes.length !== count * ELEMENT_SIZE[datatype])
        throw badRequest(
          `input ${spec.input.name}: ${bytes.length} bytes of binary data, but [${shape.join(', ')}] ${datatype} ` +
            `needs ${count * ELEMENT_SIZE[datatype]}`,
        );
      flat = floatsFromBytes(bytes, datatype, count);
      // As in JSON (below), where no number can be NaN and one beyond the range is refused: a NaN or an
      // infinity sent as bits was run, and the model answered 200 with non-finite outputs.
      // The check DBT1 tensors get (preprocess.ts, unrunnable).
      const bad = firstUnrunnable(flat, halfModel);
      if (bad >= 0)
        throw badRequest(
          Number.isFinite(flat[bad])
            ? `input ${spec.input.name}: binary element ${bad} is ${flat[bad]}, outside the range of FP16 ` +
                "(±65504), the model's input datatype"
            : `input ${spec.input.name}: binary element ${bad} is ${flat[bad]}, not a finite number`,
        );
    } else {
      const v = floatsFromJson(input.data, count);
      if (typeof v === 'string') throw badRequest(`input ${spec.input.name}: ${v}`);
      // JSON has no Infinity or NaN, but a number beyond the datatype's range turns into ±Infinity here
      // (or in the FP16 model's conversion), and the model then answered 200 with every output value
      // non-finite, `null` in JSON.
      // An FP16 model's FP32 data is converted to FP16 (the engine's batcher): beyond ±65504 it became
      // ±Infinity there and was run (until 2026-12-06), as an FP16 number beyond the range would have.
      const half = datatype === 'FP16' || halfModel;
      const out = firstUnrunnable(v, half);
      if (out >= 0)
        throw badRequest(
          Number.isFinite(v[out]) && datatype !== 'FP16'
            ? `input ${spec.input.name}: "data" element ${out} is outside the range of FP16 (±65504), the ` +
                "model's input datatype"
            : `input ${spec.input.name}: "data" element ${out} is outside the range of ${datatype} ` +
                `(${datatype === 'FP16' ? '±65504' : '±3.4028235e38'})`,
        );
      flat = v;
    }
    const tensors = Array.from({ length: n }, (_, i) => flat.slice(i * itemSize, (i + 1) * itemSize));
    return { used: bytes?.length ?? 0, tensors };
  };

  const infer = async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    checkModel(req.params);
    if (closing) throw new DropbearError('ENGINE_CLOSED', 'the server is shutting down');
    const raw = req.body;
    if (!(raw instanceof Uint8Array) || raw.length === 0) throw badRequest('the request has no body');
    const { json, binary } = splitBody(raw, req.headers[INFER_HEADER_LENGTH], 'KSERVE_BAD_REQUEST');
    if (json.length > Math.min(maxJsonCommas, maxJsonOpens)) {
      const { commas, opens } = jsonStructure(json);
      if (commas > maxJsonCommas || opens > maxJsonOpens)
        throw badRequest(
          `the request's JSON holds ${commas} commas and ${opens} arrays or objects; a request of up to ` +
            `${maxItems} items holds at most ${maxJsonCommas} and ${maxJsonOpens}`,
        );
    }
    let request: unknown;
    try {
      request = JSON.parse(Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8'));
    } catch (e) {
      throw badRequest(`the request's JSON does not parse: ${(e as Error).message}`);
    }
    if (!isObject(request)) throw badRequest('the request must be a JSON object');
    // model_name is not the protocol's, but KServe's Python client (InferRequest.to_rest) sends it in every
    // body: refused as an unknown field until 2026-12-07. One naming another model is refused, not run.
    onlyFields(request, ['id', 'model_name', 'parameters', 'inputs', 'outputs'], 'the request');
    if (request.model_name !== undefined && typeof request.model_name !== 'string')
      throw badRequest('"model_name" must be a string');
    if (request.model_name !== undefined && request.model_name !== modelName)
      throw new DropbearError(
        'KSERVE_NOT_FOUND',
        `the body's model_name ${JSON.stringify(cutUtf8(request.model_name as string, 100))} is not the URL's model ${modelName}`,
      );
    if (!Array.isArray(request.inputs) || request.inputs.length !== 1 || !isObject(request.inputs[0]))
      throw badRequest(`"inputs" must hold exactly one input (${spec.input.name})`);
    if (request.id !== undefined && typeof request.id !== 'string') throw badRequest('"id" must be a string');
    const reqParams = parametersOf(request.parameters, 'the request');
    // binary_data_output is every output's default; an output's own binary_data overrides it, either way
    // (the extension's rule: binary_data false on the output answered in binary all the same before).
    const binaryByDefault = flagOf(reqParams, 'binary_data_output', 'the request') === true;
    let binaryOut = binaryByDefault;
    if (request.outputs !== undefined) {
      if (!Array.isArray(request.outputs)) throw badRequest('"outputs" must be an array');
      if (request.outputs.length > 0) binaryOut = false;
      for (const [i, o] of request.outputs.entries()) {
        if (isObject(o)) onlyFields(o, ['name', 'parameters'], `output ${JSON.stringify(o.name)}`);
        if (!isObject(o) || o.name !== spec.output.name)
          throw badRequest(
            `unknown output ${JSON.stringify(isObject(o) ? o.name : o)}; the model's output is ${spec.output.name}`,
          );
        // The model has one output: a second entry can only name it again (answered once, until 2026-12-06).
        if (i > 0) throw badRequest(`output ${JSON.stringify(o.name)} is named twice`);
        const oParams = parametersOf(o.parameters, `output ${o.name}`);
        // Triton's classification extension (tritonclient's class_count) answers BYTES "score:index"
        // strings; not served here, and answering the scores in their place (until 2026-12-07) misled.
        if (oParams.classification !== undefined)
          throw badRequest(
            `output ${o.name}: "classification" (Triton's classification extension) is not served here; ` +
              'ask for the output itself and take its top k',
          );
        const own = flagOf(oParams, 'binary_data', `output ${o.name}`);
        if (own ?? binaryByDefault) binaryOut = true;
      }
    }

    const { used, tensors, images } = readInput(request.inputs[0], binary);
    if (used !== binary.length)
      throw badRequest(`the body carries ${binary.length - used} bytes of binary data that no input claims`);

    const outs = tensors
      ? await Promise.all(tensors.map((x) => engine.scores(x)))
      : await Promise.all(images!.map((b) => engine.scoresFor(b)));
    const n = outs.length;
    const values = new Float32Array(n * outSize);
    outs.forEach((o, i) => {
      values.set(o, i * outSize);
    });
    const output: Record<string, unknown> = {
      name: spec.output.name,
      datatype: 'FP32',
      shape: [n, ...outDims],
    };
    const response: Record<string, unknown> = { model_name: modelName, model_version: MODEL_VERSION };
    if (typeof request.id === 'string') response.id = request.id;
    response.outputs = [output];
    if (!binaryOut) {
      // JSON has no NaN or infinity: JSON.stringify wrote null, an answer a client reads as missing or 0.
      // (Inputs are refused when not finite; a model can still reach one from finite inputs.) Binary data
      // carries the bits as they are.
      const bad = values.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0)
        throw new DropbearError(
          'OUTPUT_NOT_FINITE',
          `output ${spec.output.name} element ${bad} is ${values[bad]}, which JSON cannot carry; ask for the output as binary data (parameters "binary_data_output": true)`,
        );
      output.data = Array.from(values);
      return reply.type('application/json').send(JSON.stringify(response));
    }
    const data = bytesFromFloats(values, 'FP32');
    output.parameters = { binary_data_size: data.length };
    const head = Buffer.from(JSON.stringify(response));
    return reply
      .header(INFER_HEADER_LENGTH, String(head.length))
      .type('application/octet-stream')
      .send(Buffer.concat([head, data]));
  };
  app.post('/v2/models/:name/infer', infer);
  app.post('/v2/models/:name/versions/:version/infer', infer);

  return app;
}

/** `http://host:port` for a listening server. */
export function serverUrl(app: FastifyInstance): string {
  const a = app.server.address();
  if (a === null || typeof a === 'string') throw new Error('the server is not listening on TCP');
  const host = a.address.includes(':') ? `[${a.address}]` : a.address;
  return `http://${host}:${a.port}`;
}
