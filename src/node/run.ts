/**
 * One node as a process: config → models (digest-checked against the ledger) → ledger and replica →
 * TCP transport → HTTP API. `stop()` (SIGTERM, SIGINT) closes the API, the peers, the engines and, last,
 * the ledger: every write is a synchronous SQLite transaction, so none is ever cut in half.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import pino from 'pino';
import type { ModelBackend } from '../inference/backend.ts';
import { catalogByDigest } from '../inference/catalog.ts';
import { InferenceEngine } from '../inference/engine.ts';
import { RemoteBackend } from '../inference/remote.ts';
import { deriveSpec, resolveModel, sha256File } from '../inference/store.ts';
import type { WorkerLog } from '../inference/threads.ts';
import {
  DropbearError,
  equalBytes,
  fromJson,
  Genesis,
  genesisProblem,
  groupIdOf,
  hex,
  parseJsonFile,
  writeFailure,
} from '../protocol/index.ts';
import { readKeyFile } from '../protocol/keyfile.ts';
import { API_DEFAULTS, buildApi, type DashboardAssets } from './api.ts';
import { loadNodeConfig, type ModelConfig, type NodeConfig } from './config.ts';
import { NodeHost } from './host.ts';
import { c1SafeSink } from './logline.ts';
import { NodeMetrics, peerStatesOf } from './metrics.ts';
import { connectionLimit, missingRuntimeFlags, openFileLimit } from './runtime.ts';
import { startStandIn } from './standin-backend.ts';
import { StepTrace } from './steptrace.ts';
import { CERT_EXPIRY_WARNINGS_MS, certExpiryStage, loadTls, Transport } from './transport.ts';

export interface RunningNode {
  config: NodeConfig;
  host: NodeHost;
  transport: Transport;
  apiUrl: string;
  p2pPort: number;
  stop(): Promise<void>;
}

async function startBackend(m: ModelConfig, cfg: NodeConfig, log: WorkerLog): Promise<ModelBackend> {
  if ('standin' in m) return startStandIn(cfg.id, m.standin);
  if ('remote' in m)
    return RemoteBackend.connect({
      url: m.remote.url,
      model: m.remote.model,
      digest: m.remote.digest,
      timeoutMs: m.remote.timeoutMs,
      maxInFlight: m.remote.maxInFlight,
      maxQueue: m.remote.maxQueue,
    });
  let path: string;
  let spec: Awaited<ReturnType<typeof resolveModel>>['spec'];
  let digest: string;
  if ('name' in m) {
    const r = await resolveModel(m.name, cfg.home);
    path = r.path;
    spec = r.spec;
    digest = r.sha256;
  } else {
    path = m.path;
    const file = await sha256File(path);
    digest = file.sha256;
    spec = catalogByDigest(digest) ?? (await deriveSpec(path, basename(path, '.onnx'), digest, file.bytes));
  }
  // The log: a worker thread that cannot load the model again after a death or a hang is reported there.
  return InferenceEngine.start({ ...cfg.engine, modelPath: path, spec, expectDigest: digest, log });
}

/** A backend that answers a label 500 away from its model's (test only: a lying owner). */
function lying(b: ModelBackend): ModelBackend {
  return {
    digest: b.digest,
    spec: b.spec,
    stats: () => b.stats(),
    close: () => b.close(),
    async classify(input, opts) {
      const r = await b.classify(input, opts);
      if (r.kind !== 'class') return r;
      return { kind: 'class', top: r.top.map((t) => ({ label: (t.label + 500) % 1000, score: t.score })) };
    },
  };
}

/**
 * DROPBEAR_CPU_PROF=<dir> (benchmarks): V8's sampling profiler on this node's main thread from start to
 * stop, written to <dir>/node-<id>-<pid>.cpuprofile (Node 20 refuses --cpu-prof in NODE_OPTIONS).
 */
async function cpuProfile(id: number): Promise<() => Promise<void>> {
  const dir = process.env.DROPBEAR_CPU_PROF;
  if (!dir) return async () => {};
  const { Session } = await import('node:inspector/promises');
  const s = new Session();
  s.connect();
  await s.post('Profiler.enable');
  await s.post('Profiler.start');
  return async () => {
    const { profile } = await s.post('Profiler.stop');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `node-${id}-${process.pid}.cpuprofile`), JSON.stringify(profile));
    s.disconnect();
  };
}

export async function startNode(
  configPath: string,
  extras: {
    dashboard?: DashboardAssets;
    /** The node's ledger is lost: start with a new one, signing in no view the group may have used. */
    rejoin?: boolean;
  } = {},
): Promise<RunningNode> {
  const cfg = loadNodeConfig(configPath);
  const stopProfile = await cpuProfile(cfg.id);
  // Every log line carries the node id and, once the replica runs, its view and last executed seq.
  let state: () => object = () => ({});
  // Synchronous writes to stdout. pino's default (asynchronous) destination flushes on exit and retries a
  // write that fails with EPIPE forever: a node whose log reader had gone away hung in process.exit, deaf
  // to SIGTERM (test/e2e/stdout-closed.test.ts). Synchronous, a failed write drops the logs instead. C1
  // controls in a line (a peer's or client's text) leave escaped (logline.ts).
  const log = pino(
    { level: cfg.log.level, base: { node: cfg.id }, mixin: () => state() },
    c1SafeSink(pino.destination({ dest: 1, sync: true })),
  );
  const missingFlags = missingRuntimeFlags();
  if (missingFlags.length > 0)
    log.info(
      { missing: missingFlags },
      'started without the Node.js flags a node wants (docs/api.md): more garbage collection per request',
    );
  let genesis: Genesis;
  let repeated: string | null;
  try {
    const parsed = parseJsonFile(readFileSync(cfg.genesis, 'utf8'));
    repeated = parsed.repeated;
    genesis = fromJson(Genesis, parsed.value);
  } catch (e) {
    throw new DropbearError('GENESIS_INVALID', `${cfg.genesis}: ${(e as Error).message}`);
  }
  // JSON.parse keeps the last of two equal keys, `dropbear verify` and the dashboard refuse such a file: the
  // node ran on a genesis its own certificates could not be checked against.
  if (repeated)
    throw new DropbearError(
      'GENESIS_INVALID',
      `${cfg.genesis} repeats a key (${repeated}), so it reads two ways`,
    );
  const problem = genesisProblem(genesis);
  if (problem) throw new DropbearError('GENESIS_INVALID', `${cfg.genesis}: ${problem}`);
  const me = genesis.nodes[cfg.id];
  if (!me) throw new DropbearError('CONFIG_INVALID', `node id ${cfg.id} is not in the genesis`);
  const key = readKeyFile(cfg.key);
  if (!equalBytes(key.publicKey, me.publicKey))
    throw new DropbearError(
      'CONFIG_KEY_MISMATCH',
      `${cfg.key} is not the key the genesis names for node ${cfg.id}`,
    );
  // The custodial accounts' keys are secrets too (KEY_FILE_PERMISSIONS): read with the node's, before a
  // model is loaded or the ledger made (until 2026-12-06 they were read after both).
  const custodial = cfg.custodial?.map((a) => ({
    apiKeySha256: a.apiKeySha256,
    key: readKeyFile(a.key),
    maxFee: a.maxFee,
  }));

  // Made first (it holds nothing until started): it reads the TLS files, and a TLS key that group or
  // others can read is refused (KEY_FILE_PERMISSIONS) before a model is loaded or the ledger opened.
  const transport = new Transport({
    id: cfg.id,
    genesis,
    key,
    listen: cfg.p2p,
    peers: cfg.peers ?? undefined,
    tls: cfg.tls ? { keyFile: cfg.tls.key, certFile: cfg.tls.cert, caFile: cfg.tls.ca } : undefined,
    quarantine: cfg.transport.quarantine,
    logger: log,
  });

  // The API's own TLS files (api.tls) likewise: checked as the peers' are (loadTls), each failure with its
  // code and its message led by "api.tls: ", before a model is loaded or the ledger opened.
  const apiTls = cfg.apiTls ? loadApiTls(cfg.apiTls) : undefined;
  const stopCertWatch = apiTls && cfg.apiTls ? watchApiCert(apiTls.notAfter, cfg.apiTls.cert, log) : () => {};

  const backends: ModelBackend[] = [];
  const closeBackends = () => Promise.all(backends.map((b) => b.close().catch(() => {})));
  let host: NodeHost;
  // What a start that fails half-way must undo besides the backends (until 2026-12-06 only they were
  // closed: a port already in use left the ledger open and the host's timers running until exit).
  let opened: NodeHost | undefined;
  let api: { close(): Promise<unknown> } | undefined;
  try {
    for (const m of [cfg.model, ...cfg.extraModels]) backends.push(await startBackend(m, cfg, log));
    if (cfg.byzantine === 'wrong-results') {
      log.warn(
        { code: 'BYZANTINE_WRONG_RESULTS' },
        'configured to lie: every answer is a wrong label (test only)',
      );
      for (let i = 0; i < backends.length; i++) backends[i] = lying(backends[i]);
    }
    // A file there ended the start with Node's bare "EEXIST: file already exists", no code.
    try {
      mkdirSync(cfg.data, { recursive: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOTDIR')
        throw new DropbearError(
          'CONFIG_INVALID',
          `${cfg.file}: "data" ${cfg.data} ${code === 'EEXIST' ? 'is a file, not a folder' : 'is below a file'}; name a folder for the ledger`,
        );
      const { errno, why } = writeFailure(e);
      throw new DropbearError('FILE_UNWRITABLE', `cannot make the data folder ${cfg.data}: ${why}`, {
        path: cfg.data,
        errno,
      });
    }
    // With the process metrics (CPU, memory, file descriptors, event loop lag, GC, and
    // dropbear_process_start_time_seconds, which tells a restart from a counter's reset): off until
    // 2026-12-06, when a node exported none of them.
    const metrics = new NodeMetrics({ processMetrics: true });
    // A diagnostic, off unless asked for: one line per replica step (src/node/steptrace.ts).
    const tracePrefix = process.env.DROPBEAR_TRACE_STEPS;
    const trace = tracePrefix
      ? new StepTrace(`${tracePrefix}.${cfg.id}`, cfg.id, 1000, (e) =>
          log.error(
            { code: 'STEP_TRACE_FAILED', err: e.message },
            'step trace: write failed; tracing stopped',
          ),
        )
      : null;
    if (trace)
      log.warn(
        { code: 'STEP_TRACE_ON', file: trace.path },
        'tracing every replica step (DROPBEAR_TRACE_STEPS)',
      );
    host = NodeHost.open({
      id: cfg.id,
      genesis,
      key,
      ledgerPath: join(cfg.data, 'ledger.sqlite'),
      durability: cfg.durability,
      certificateIndexRequests: cfg.certificateIndexRequests,
      rejoin: extras.rejoin,
      backends,
      wire: transport,
      maxFrameBytes: transport.maxFrameBytes,
      replica: cfg.replica,
      logger: log,
      observe: trace ? { ...metrics.observer(), step: (e, a) => trace.step(e, a) } : metrics.observer(),
    });
    const h = host;
    opened = h;
    state = () => ({ view: h.replica.view, seq: h.replica.lastExecuted });
    const withState = log;
    const fdLimit = openFileLimit();
    const connections = connectionLimit(
      cfg.apiLimits.maxConnections ?? API_DEFAULTS.maxConnections,
      fdLimit,
      genesis.nodes.length,
    );
    if (connections.lowered)
      log.warn(
        { code: 'MAX_CONNECTIONS_LOWERED', maxConnections: connections.max, openFileLimit: fdLimit },
        'api_limits.maxConnections lowered to fit the open-file limit (ulimit -n), which keeps room for peers, ledger and model: raise the limit to allow more',
      );
    const app = buildApi(host, {
      tls: apiTls ? { key: apiTls.key, cert: apiTls.cert } : undefined,
      dashboard: extras.dashboard,
      groupName: genesis.name,
      // Every limit the file may set (config.ts, API_LIMITS, all checked there), none picked out by name:
      // maxInferenceQueue and retryAfterSeconds could not be set from the file until 2026-12-06.
      ...cfg.apiLimits,
      maxConnections: connections.max,
      custodial: custodial ? { accounts: custodial } : undefined,
      peers: () => peerStatesOf(transport),
      metrics,
      logger: withState,
    });
    api = app;
    metrics.attach(host, () => peerStatesOf(transport));
    if (transport.certExpiresInMs() !== null) metrics.certificateExpiry(() => transport.certExpiresInMs());
    const p2pPort = await transport.start().catch((e: unknown) => {
      throw listenError(e, 'peers', cfg.p2p, 'p2p', configPath);
    });
    host.start();
    await app.listen({ host: cfg.api.host, port: cfg.api.port }).catch((e: unknown) => {
      throw listenError(e, 'the HTTP API', cfg.api, 'api', configPath);
    });
    const addr = app.server.address();
    const apiPort = typeof addr === 'object' && addr ? addr.port : cfg.api.port;
    const apiUrl = `${apiTls ? 'https' : 'http'}://${cfg.api.host}:${apiPort}`;
    withState.info(
      {
        api: apiUrl,
        p2p: p2pPort,
        model: host.currentBackend.digest,
        group: hex(groupIdOf(genesis)).slice(0, 16),
      },
      'node started',
    );
    // The dashboard script's build while it runs: stop() waits for it (see there).
    let building: Promise<unknown> = Promise.resolve();
    if (extras.dashboard) {
      // The dashboard's script is built now, in the background, not on the first GET /dashboard/app.js:
      // that request waited for the build (104 to 158 ms on a 2-core machine, 2026-12-05, against 2 to 7 ms
      // after), the node's CPU spiked at whatever moment someone first opened the page, and a script that
      // does not build went unnoticed until then. Readiness does not wait for it; a request that comes
      // before it ends waits for the same build (the script is kept, web/bundle.ts). A failure is logged
      // here with the code requests get; the next request builds again.
      const began = performance.now();
      building = extras.dashboard.script().then(
        (js) =>
          withState.info(
            { bytes: js.length, ms: Math.round(performance.now() - began) },
            'dashboard script built',
          ),
        (e) =>
          withState.error(
            { code: 'DASHBOARD_UNAVAILABLE', err: (e as Error).message },
            'the dashboard script did not build: GET /dashboard/app.js answers 503 and tries again',
          ),
      );
    }
    let stopping: Promise<void> | null = null;
    return {
      config: cfg,
      host,
      transport,
      apiUrl,
      p2pPort,
      stop() {
        stopping ??= (async () => {
          withState.info({}, 'stopping');
          // The host first: it answers the certificate waiters (long polls of up to maxWaitMs), which the
          // API's close would otherwise wait out (39.8 s after SIGTERM with a request that could not be
          // certified, past the 10 s a supervisor gives before SIGKILL).
          h.stop();
          stopCertWatch();
          await app.close().catch(() => {});
          await transport.stop();
          await closeBackends();
          h.close();
          trace?.close();
          await stopProfile().catch(() => {});
          // esbuild builds in a child process that shares this one's stderr: a process that exits while
          // the build waits on it (a stop right after the node started serving) leaves esbuild blocked on
          // an answer that never comes, and it prints "fatal error: all goroutines are asleep - deadlock!"
          // and a page of Go stack traces on the node's stderr. The build ends on its own (0.1-0.4 s on a
          // 2-core machine, seconds under load); a failed one was logged above.
          await building;
          withState.info({}, 'stopped');
        })();
        return stopping;
      },
    };
  } catch (e) {
    stopCertWatch();
    opened?.stop();
    await api?.close().catch(() => {});
    await transport.stop().catch(() => {});
    await closeBackends();
    opened?.close();
    throw e;
  }
}

/** Where watchApiCert logs. */
export interface CertWatchLog {
  warn(o: object, msg: string): void;
  error(o: object, msg: string): void;
}

/**
 * Warns of the API's certificate (api.tls.cert, valid until `notAfter`, ms since the epoch) as its expiry
 * nears, at start and then while the node runs, at the points the peers' certificate is warned of
 * (Transport.watchCert; certExpiryStage: 14 days, 1 day): API_TLS_CERT_EXPIRING (warn), then
 * API_TLS_CERT_EXPIRED (error) once it has expired. Until 2026-12-07 only at start: a node started weeks
 * before said nothing until clients refused the certificate. Returns the function that ends the watch.
 */
export function watchApiCert(notAfter: number, file: string, log: CertWatchLog): () => void {
  let warned = 0;
  let timer: NodeJS.Timeout | null = null;
  const validTo = new Date(notAfter).toISOString();
  const check = () => {
    timer = null;
    const { stage, checkInMs } = certExpiryStage(notAfter, Date.now());
    if (stage > warned) {
      warned = stage;
      if (stage > CERT_EXPIRY_WARNINGS_MS.length)
        log.error(
          { code: 'API_TLS_CERT_EXPIRED', file, validTo },
          `the API certificate (api.tls.cert) ${file} expired ${validTo}: clients refuse it; install a new one and restart the node`,
        );
      else
        log.warn(
          {
            code: 'API_TLS_CERT_EXPIRING',
            file,
            validTo,
            daysLeft: Math.floor(((notAfter - Date.now()) / 86_400_000) * 10) / 10,
          },
          `the API certificate (api.tls.cert) ${file} expires ${validTo}: clients will refuse it then; install a new one and restart the node before`,
        );
    }
    if (checkInMs === null) return;
    timer = setTimeout(check, checkInMs);
    timer.unref();
  };
  check();
  return () => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
}

/** The API's TLS files (api.tls), as loadTls reads and checks them; its errors' messages led by "api.tls: ". */
function loadApiTls(files: { key: string; cert: string }): ReturnType<typeof loadTls> {
  try {
    return loadTls({ keyFile: files.key, certFile: files.cert }, Date.now(), 'clients');
  } catch (e) {
    if (e instanceof DropbearError) throw new DropbearError(e.code, `api.tls: ${e.message}`, e.details);
    throw e;
  }
}

/** Why a listen failed, as LISTEN_FAILED naming the address and the config field, for the causes a user fixes. */
const LISTEN_CAUSES: Record<string, string> = {
  EADDRINUSE: 'the port is in use (another node, or another program)',
  EACCES: 'not allowed (a port below 1024 needs privileges)',
  EADDRNOTAVAIL: 'no such address on this machine',
  // A host name that does not resolve (`group node-config --listen-host` takes any): was `getaddrinfo
  // ENOTFOUND …`, no code.
  ENOTFOUND: 'no such host (the name does not resolve)',
  EAI_AGAIN: 'the host name could not be resolved now (no name server answered)',
};

function listenError(
  e: unknown,
  what: string,
  at: { host: string; port: number },
  field: string,
  configPath: string,
): unknown {
  const code = (e as { code?: unknown })?.code;
  if (typeof code !== 'string' || !(code in LISTEN_CAUSES)) return e;
  return new DropbearError(
    'LISTEN_FAILED',
    `cannot listen for ${what} on ${at.host}:${at.port}: ${LISTEN_CAUSES[code]} (${code}); change "${field}" in ${configPath}`,
    { host: at.host, port: at.port, cause: code },
  );
}
