import { stat } from 'node:fs/promises';
import { basename, extname, resolve } from 'node:path';
import type { Command } from 'commander';
import { catalogByDigest } from '../inference/catalog.ts';
import { ENGINE_DEFAULTS, InferenceEngine, isWorkerNice } from '../inference/engine.ts';
import { DEFAULT_REQUEST_TIMEOUT_MS } from '../inference/http-body.ts';
import {
  createKServeServer,
  DEFAULT_BODY_LIMIT,
  DEFAULT_MAX_ITEMS,
  serverUrl,
} from '../inference/kserve-server.ts';
import { defaultHome, deriveSpec, type ResolvedModel, resolveModel, sha256File } from '../inference/store.ts';
import { DropbearError } from '../protocol/index.ts';
import { usageError } from './errors.ts';
import { parseHome } from './io.ts';
import { wholeOrNaN } from './numbers.ts';
import { watchParent } from './parent.ts';

/**
 * MODEL is a path to an .onnx file (its spec comes from the catalog by digest, else from the model itself)
 * or a name or digest in the store.
 */
export async function locateModel(model: string, home: string): Promise<ResolvedModel> {
  let isFile = false;
  try {
    isFile = (await stat(model)).isFile();
  } catch {
    // not a path: a store name or digest
  }
  if (!isFile) {
    if (model.toLowerCase().endsWith('.onnx') || model.includes('/'))
      throw new DropbearError('MODEL_PATH_NOT_FOUND', `${model} is not a file`);
    return resolveModel(model, home);
  }
  const path = resolve(model);
  const { sha256, bytes } = await sha256File(path);
  const spec =
    catalogByDigest(sha256) ?? (await deriveSpec(path, basename(path, extname(path)), sha256, bytes));
  return { path, spec, sha256 };
}

function positiveInt(what: string) {
  return (v: string): number => {
    const n = wholeOrNaN(v);
    if (!Number.isInteger(n) || n < 1) throw usageError(`${what} must be a positive integer, got ${v}`);
    return n;
  };
}

function niceValue(v: string): number {
  const n = wholeOrNaN(v);
  if (!isWorkerNice(n)) throw usageError(`--worker-nice must be 0..19, got ${v}`);
  return n;
}

function nonNegativeInt(what: string): (v: string) => number {
  return (v: string): number => {
    const n = wholeOrNaN(v);
    if (!Number.isInteger(n) || n < 0) throw usageError(`${what} must be an integer ≥ 0, got ${v}`);
    return n;
  };
}

function port(v: string): number {
  const n = wholeOrNaN(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw usageError(`--port must be 0..65535, got ${v}`);
  return n;
}

/**
 * A text option that must say something: `--host ""` served on every interface (Node's default for an empty
 * host), `--name ""` under an empty name (`/v2/models//infer`).
 */
function nonEmpty(option: string, what: string): (v: string) => string {
  return (v) => {
    if (v.trim() === '') throw usageError(`${option} must not be empty (${what}), got ${JSON.stringify(v)}`);
    return v;
  };
}

/**
 * `--name`: one path segment of the URLs (`/v2/models/<name>/infer`). A `/` made the model unreachable (no
 * route matched), and `?`, `#`, `%`, `\\`, blanks, `.` and `..` are read or rewritten by clients and
 * proxies before the server sees them.
 */
function modelName(v: string): string {
  nonEmpty('--name', "the model's name in URLs; leave it out for its own")(v);
  if (/[/?#%\\\s\p{Cc}]/u.test(v) || v === '.' || v === '..')
    throw usageError(
      `--name must be one URL path segment (it is <name> in /v2/models/<name>/infer): no "/", "?", "#", "%", "\\", blanks or control characters, and not "." or "..", got ${JSON.stringify(v)}`,
    );
  return v;
}

interface ServeOptions {
  port: number;
  host: string;
  home?: string;
  name?: string;
  bodyLimitMib: number;
  maxItems: number;
  requestTimeoutMs: number;
  maxBatch: number;
  threads: number;
  workerNice: number;
}

export function registerServeModel(program: Command): void {
  program
    .command('serve-model')
    .description(
      'serve one model over the Open Inference Protocol (KServe v2 REST): health, metadata and infer ' +
        'endpoints, JSON or binary tensors, for a node that uses a remote backend or any OIP client',
    )
    .argument('<model>', 'a path to an .onnx file, or a model name or digest in the store')
    .option('--port <n>', 'TCP port; 0 picks a free one', port, 8000)
    .option(
      '--host <addr>',
      'address to bind',
      nonEmpty('--host', 'an address; 0.0.0.0 or :: for every interface'),
      '127.0.0.1',
    )
    .option('--home <dir>', 'the Dropbear home folder (default: $DROPBEAR_HOME, else ~/.dropbear)', parseHome)
    .option('--name <name>', "the model's name in URLs (default: its catalog or store name)", modelName)
    .option(
      '--body-limit-mib <n>',
      'largest request body, MiB',
      positiveInt('--body-limit-mib'),
      DEFAULT_BODY_LIMIT / 2 ** 20,
    )
    .option(
      '--max-items <n>',
      'most items in one infer request',
      positiveInt('--max-items'),
      DEFAULT_MAX_ITEMS,
    )
    .option(
      '--request-timeout-ms <n>',
      'a request (headers and body) not fully arrived by then gets 408 and is closed; 0: no limit',
      nonNegativeInt('--request-timeout-ms'),
      DEFAULT_REQUEST_TIMEOUT_MS,
    )
    .option(
      '--max-batch <n>',
      'largest batch the engine runs at once',
      positiveInt('--max-batch'),
      ENGINE_DEFAULTS.maxBatch,
    )
    .option(
      '--threads <n>',
      'onnxruntime intra-op threads',
      positiveInt('--threads'),
      ENGINE_DEFAULTS.intraOpThreads,
    )
    .option(
      '--worker-nice <n>',
      'nice value of the preprocessing and onnxruntime worker threads, 0..19 (Linux; as a node runs them)',
      niceValue,
      ENGINE_DEFAULTS.workerNice,
    )
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear serve-model /work/shared/models/mobilenetv2-12-int8.onnx --port 8000\n' +
        '  curl http://127.0.0.1:8000/v2/models/mobilenetv2-12-int8\n\n' +
        'Prints "listening on URL" once it serves. Besides the model tensor (FP32 [N, ...]) infer takes\n' +
        "BYTES [N] encoded images (base64 in JSON), preprocessed with the model's spec.\n" +
        'Stops on SIGTERM or SIGINT, or, started with an IPC channel, when that channel closes.\n' +
        'Exit status: 0 stopped, 2 error.\n',
    )
    .action(async (model: string, opts: ServeOptions) => {
      // Started with an IPC channel (the bench's baselines, bench/lib/extra.ts): when the process that
      // started it ends, even killed outright, so does this one, as a node does (src/cli/node.ts). Listened
      // for before the model loads, so a parent that ends meanwhile is not missed.
      const whenParentGone = watchParent(() => process.exit(0));
      const found = await locateModel(model, opts.home ?? defaultHome());
      const engine = await InferenceEngine.start({
        modelPath: found.path,
        spec: found.spec,
        expectDigest: found.sha256,
        maxBatch: opts.maxBatch,
        intraOpThreads: opts.threads,
        workerNice: opts.workerNice,
      });
      const app = createKServeServer({
        engine,
        modelName: opts.name,
        bodyLimit: opts.bodyLimitMib * 2 ** 20,
        maxItems: opts.maxItems,
        requestTimeoutMs: opts.requestTimeoutMs,
      });
      try {
        await app.listen({ port: opts.port, host: opts.host });
      } catch (e) {
        await engine.close();
        throw new DropbearError(
          'SERVE_LISTEN_FAILED',
          `cannot listen on ${opts.host}:${opts.port}: ${(e as Error).message}`,
        );
      }
      const name = opts.name ?? found.spec.name;
      const dims = (t: { shape: (number | null)[] }) =>
        ['-1', ...t.shape.slice(1).map((d) => d ?? 1)].join(',');
      const { input, output } = found.spec;
      process.stdout.write(
        `serving ${name} (sha256 ${found.sha256}): input ${input.name} ` +
          `${input.dtype === 'float16' ? 'FP16' : 'FP32'}[${dims(input)}] -> output ${output.name} FP32[${dims(output)}]\n` +
          `listening on ${serverUrl(app)}\n`,
      );
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        process.stderr.write(`${signal}: stopping\n`);
        try {
          await app.close();
          await engine.close();
        } finally {
          process.exit(0);
        }
      };
      process.once('SIGTERM', () => void stop('SIGTERM'));
      process.once('SIGINT', () => void stop('SIGINT'));
      whenParentGone(() => void stop('parent gone'));
    });
}
