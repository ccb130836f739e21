/**
 * A node's configuration file (JSON). Paths inside it are relative to the file's folder. Every field is
 * checked with a message that names the field; `npx dropbear group init` writes valid ones. The key files
 * it names (`key`, custodial `key`, and the TLS private keys `tls.key` and `api.tls.key`) must be readable
 * by their owner alone (0600): see protocol/keyfile.ts. The TLS certificates (`tls.cert`, `tls.ca`,
 * `api.tls.cert`) are public.
 *
 * {
 *   "id": 0,
 *   "genesis": "genesis.json",
 *   "key": "keys/node-0.json",
 *   "data": "data/node-0",                         // the ledger lives in <data>/ledger.sqlite
 *   "durability": "full",                          // or "prepared" / "relaxed": fewer fsyncs (docs/ledger.md)
 *   "certificateIndexRequests": 10000000,          // certificates of at least this many latest requests
 *                                                  // are served (16–32 bytes each, up to twice as many)
 *   "p2p": { "host": "127.0.0.1", "port": 7100 },
 *   "api": { "host": "127.0.0.1", "port": 8100,
 *            "tls": { "key": "…", "cert": "…" } },  // optional: the API over HTTPS (PEM files; cert may hold
 *                                                  // the chain); for clients, apart from the peers' "tls"
 *   "peers": { "1": "tcp://127.0.0.1:7101" },      // optional: default is each node's genesis address
 *   "model": { "name": "mobilenetv2-12-int8" }     // or { "path": "m.onnx" } or
 *                                                  // { "remote": { "url", "model", "digest" } } or
 *                                                  //   (optional: "timeoutMs" (10000) per exchange,
 *                                                  //   at most 2^31 - 1, "maxInFlight" (8) calls to the
 *                                                  //   server at once, "maxQueue" (512) inputs waiting
 *                                                  //   before OVERLOADED: integers ≥ 1, remote.ts; no
 *                                                  //   other key, in extraModels too)
 *                                                  // { "standin": true } (no inference: benchmarks)
 *                                                  // (exactly one of these four, nothing beside it)
 *   "extraModels": [ { "name": "…" } ],            // loaded beside it, for an ordered model update
 *   "home": "~/.dropbear",                         // model store (default $DROPBEAR_HOME)
 *   "engine": { "intraOpThreads": 1, "maxBatch": 8, "maxDelayMs": 2, "maxQueue": 512, "decoder": "fast",
 *               "workerNice": 0 },                 // > 0: inference threads below the event loop (docs/inference.md)
 *   "replica": { "batchSize": 128, "batchTimeoutMs": 5 },
 *   "api_limits": { "bodyLimitBytes": 8388608, "maxPending": 8192, "maxQueueSeconds": 2, "minPending": 256,
 *                   "requestTimeoutMs": 60000,      // a request not fully arrived by then: 408, closed
 *                   "maxLongPolls": 8192, "maxLongPollsPerConnection": 64,
 *                                                  // HTTP requests waiting (?wait) at once; more: 503
 *                   "maxCertificateWaiters": 65536, // requests they wait for at once; more: 503
 *                   "maxInferenceQueue": 256,      // model inputs waiting; more: 503 (integer ≥ 0)
 *                   "retryAfterSeconds": 1,        // Retry-After sent with a 503 (integer ≥ 0)
 *                   "maxConnections": 1024,        // HTTP connections open at once; more: 503, closed
 *                                                  // (lowered to fit `ulimit -n`: node/run.ts)
 *                   "maxConnectionsPerAddress": 256 }, // the same from one client address (IPv6: a /64)
 *   "custodial": { "accounts": [ { "apiKeySha256": "<hex>", "key": "keys/client.json", "maxFee": 1000 } ] },
 *   "tls": { "key": "…", "cert": "…", "ca": "…" },  // between nodes (the peer transport), not the API
 *   "transport": { "quarantine": { "minMs": 1000, "maxMs": 60000, "forgiveMs": 600000 } },
 *                                                  // a peer that sent a bad frame or signature is
 *                                                  // kept out minMs, doubled per further offence up to
 *                                                  // maxMs, back to minMs after forgiveMs without one
 *                                                  // (integers, ms; 0 < minMs ≤ maxMs ≤ 2^31 - 1,
 *                                                  // forgiveMs ≥ 0)
 *   "log": { "level": "info" }
 * }
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { DEFAULT_REPLICA_CONFIG, type ReplicaConfig } from '../consensus/replica.ts';
import { ENGINE_DEFAULTS } from '../inference/engine.ts';
import { REMOTE_MAX_TIMEOUT_MS, type RemoteOptions } from '../inference/remote.ts';
import { DURABILITIES, type Durability } from '../ledger/sqlite.ts';
import { DropbearError, hex, parseJsonFile, sha256 } from '../protocol/index.ts';
import type { ApiOptions } from './api.ts';
import { quarantineProblem, type TransportOptions } from './transport.ts';

export interface Endpoint {
  host: string;
  port: number;
}

export type ModelConfig =
  | { name: string }
  | { path: string }
  | {
      remote: {
        url: string;
        model: string;
        digest: string;
        timeoutMs?: number;
        maxInFlight?: number;
        maxQueue?: number;
      };
    }
  /** The stand-in model (src/node/standin-backend.ts): no inference cost, for benchmarks and tests. */
  | { standin: { disagreement?: number } };

export interface NodeConfig {
  file: string;
  id: number;
  genesis: string;
  key: string;
  data: string;
  /** The ledger's durability (src/ledger/sqlite.ts): `full` (default), `prepared` or `relaxed`. */
  durability: Durability;
  /** Certificates of at least this many latest requests are served (SqliteLedgerOptions); absent: its default. */
  certificateIndexRequests: number | undefined;
  p2p: Endpoint;
  api: Endpoint;
  /**
   * The API over HTTPS (`api.tls`: PEM files, resolved), or null for plain HTTP. Separate from `tls`, the
   * peers': the API's certificate is for clients (browsers, the SDK), its name theirs to check, where the
   * peers' may come from the group's own CA and names nothing (docs/api.md, "HTTPS for the API").
   */
  apiTls: { key: string; cert: string } | null;
  peers: Map<number, Endpoint> | null;
  model: ModelConfig;
  extraModels: ModelConfig[];
  home: string | undefined;
  engine: Record<string, unknown>;
  replica: Record<string, number | boolean>;
  /** The API's limits (`api_limits`), each as given: run.ts passes them all to buildApi. */
  apiLimits: Pick<ApiOptions, ApiLimit>;
  custodial: { apiKeySha256: string; key: string; maxFee: number }[] | null;
  tls: { key: string; cert: string; ca?: string } | null;
  /** Peer transport settings passed to the Transport (src/node/transport.ts); absent ones take its defaults. */
  transport: { quarantine?: TransportOptions['quarantine'] };
  log: { level: string };
  /** Test only: 'wrong-results' makes this node answer a wrong label for every input (a lying owner). */
  byzantine: 'wrong-results' | null;
}

/** Every field a node config may hold (docs/api.md, "Node config"). */
const CONFIG_FIELDS = [
  'id',
  'genesis',
  'key',
  'data',
  'durability',
  'certificateIndexRequests',
  'p2p',
  'api',
  'peers',
  'model',
  'extraModels',
  'home',
  'engine',
  'replica',
  'api_limits',
  'custodial',
  'tls',
  'transport',
  'byzantine',
  'log',
];

/** A model entry (`model`, each of `extraModels`) holds exactly one of these. */
const MODEL_KINDS = ['name', 'path', 'remote', 'standin'];

/** The settings of a remote model (`model.remote`, an `extraModels` entry's `remote`): RemoteOptions'. */
const REMOTE_FIELDS: readonly (keyof RemoteOptions)[] = [
  'url',
  'model',
  'digest',
  'timeoutMs',
  'maxInFlight',
  'maxQueue',
];

/** The ApiOptions (src/node/api.ts) that `api_limits` may set; each is checked in apiLimits below. */
const API_LIMITS = [
  'bodyLimitBytes',
  'maxPending',
  'maxQueueSeconds',
  'minPending',
  'requestTimeoutMs',
  'maxLongPolls',
  'maxLongPollsPerConnection',
  'maxCertificateWaiters',
  'maxInferenceQueue',
  'retryAfterSeconds',
  'maxConnections',
  'maxConnectionsPerAddress',
] as const satisfies readonly (keyof ApiOptions)[];
type ApiLimit = (typeof API_LIMITS)[number];

/** `certificateIndexRequests`: absent, or an integer ≥ 1. */
function certificateIndexRequests(v: unknown, file: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1)
    throw bad(
      'certificateIndexRequests',
      'must be an integer ≥ 1 (requests whose certificates are served)',
      file,
    );
  return v;
}

/** The levels the node's logger (pino) knows. */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function bad(field: string, why: string, file: string): DropbearError {
  return new DropbearError('CONFIG_INVALID', `${file}: "${field}" ${why}`);
}

/** Refuses a key of section `section` that is not in `known` (`what`: "a replica setting", …). */
function onlyKeys(
  r: Record<string, unknown>,
  section: string,
  known: readonly string[],
  what: string,
  file: string,
): void {
  for (const k of Object.keys(r))
    if (!known.includes(k)) throw bad(`${section}.${k}`, `is not ${what} (known: ${known.join(', ')})`, file);
}

/** Each of `keys` in `r` that is given must be an integer ≥ `min` (`unit` says what it counts). */
function integersAtLeast(
  r: Record<string, unknown>,
  section: string,
  keys: readonly string[],
  min: number,
  unit: string,
  file: string,
): void {
  for (const k of keys) {
    const v = r[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < min))
      throw bad(`${section}.${k}`, `must be an integer ≥ ${min} (${unit})`, file);
  }
}

/** Replica settings that count things: an integer ≥ 1 (0 stalls the replica: no batch, no checkpoint). */
const REPLICA_COUNTS: ReadonlySet<string> = new Set<keyof ReplicaConfig>([
  'batchSize',
  'window',
  'maxInFlightBatches',
  'checkpointInterval',
  'forwardBatchSize',
  'progressPatience',
  'maxExpiredHeld',
]);

/** Replica settings that are switches: true or false. */
const REPLICA_FLAGS: ReadonlySet<string> = new Set<keyof ReplicaConfig>([
  'preparedReceipts',
  'receiptCommits',
  'targetedResends',
]);

/**
 * The `replica` section: only the replica's own settings (DEFAULT_REPLICA_CONFIG); counts integers ≥ 1,
 * switches booleans, times finite numbers ≥ 0 (ms). A misspelt key used to be ignored without a word, a string (`"5"`)
 * reached the replica, where `oldest + "5"` concatenates and a batch was never cut, and a batchSize of 0
 * made the primary loop forever.
 */
function replicaSettings(r: Record<string, unknown>, file: string): Record<string, number | boolean> {
  onlyKeys(r, 'replica', Object.keys(DEFAULT_REPLICA_CONFIG), 'a replica setting', file);
  for (const [k, v] of Object.entries(r)) {
    if (REPLICA_FLAGS.has(k)) {
      if (typeof v !== 'boolean') throw bad(`replica.${k}`, 'must be true or false', file);
    } else if (REPLICA_COUNTS.has(k)) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
        throw bad(`replica.${k}`, 'must be an integer ≥ 1', file);
    } else if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
      throw bad(`replica.${k}`, 'must be a finite number ≥ 0 (ms)', file);
  }
  return r as Record<string, number | boolean>;
}

/**
 * The `engine` section: only the engine's own settings (values checked when the engine starts). A misspelt
 * key ("maxBtch") was dropped and the node ran on the default without a word.
 */
function engineSettings(r: Record<string, unknown>, file: string): Record<string, unknown> {
  onlyKeys(r, 'engine', [...Object.keys(ENGINE_DEFAULTS), 'half'], 'an engine setting', file);
  return r;
}

/** The `api_limits` section (API_LIMITS only), each checked here and passed to the API as given. */
function apiLimits(r: Record<string, unknown>, file: string): NodeConfig['apiLimits'] {
  // They were passed on unchecked: a misspelt key was dropped, a string maxPending ("x") turned the
  // admission limit off without a word (`pending > "x"` is false), a negative bodyLimitBytes stopped the
  // node with Fastify's own message.
  const section = 'api_limits';
  onlyKeys(r, section, API_LIMITS, 'an api limit', file);
  integersAtLeast(r, section, ['bodyLimitBytes'], 1, 'bytes', file);
  integersAtLeast(r, section, ['maxPending', 'minPending'], 0, 'requests', file);
  const q = r.maxQueueSeconds;
  if (q !== undefined && (typeof q !== 'number' || !Number.isFinite(q) || q < 0))
    throw bad('api_limits.maxQueueSeconds', 'must be a finite number ≥ 0 (seconds)', file);
  integersAtLeast(r, section, ['requestTimeoutMs'], 0, 'ms; 0: no limit', file);
  integersAtLeast(
    r,
    section,
    ['maxLongPolls', 'maxLongPollsPerConnection'],
    0,
    'long polls held at once',
    file,
  );
  integersAtLeast(r, section, ['maxCertificateWaiters'], 0, 'certificate waiters held at once', file);
  // Could not be set from the file until 2026-12-06 (refused as unknown). The API refuses once more
  // than maxInferenceQueue inputs wait (0: once any does); Retry-After takes whole seconds (RFC 9110).
  integersAtLeast(r, section, ['maxInferenceQueue'], 0, 'model inputs waiting', file);
  integersAtLeast(r, section, ['retryAfterSeconds'], 0, 'seconds, sent as Retry-After', file);
  integersAtLeast(r, section, ['maxConnections'], 1, 'HTTP connections open at once', file);
  integersAtLeast(
    r,
    section,
    ['maxConnectionsPerAddress'],
    1,
    'HTTP connections open at once from one address',
    file,
  );
  return r as NodeConfig['apiLimits'];
}

/**
 * The `transport` section: only `quarantine` ({minMs, maxMs, forgiveMs}: integers, ms, 0 < minMs ≤ maxMs
 * ≤ 2^31 - 1 and forgiveMs ≥ 0, a field left out taking the transport's default; the rule is the
 * transport's, quarantineProblem). Checked here too, so that a bad value is refused as CONFIG_INVALID
 * naming the field in the file rather than when the transport is made.
 */
function transportSettings(r: Record<string, unknown>, file: string): NodeConfig['transport'] {
  onlyKeys(r, 'transport', ['quarantine'], 'a transport setting', file);
  const q = r.quarantine;
  if (q === undefined) return {};
  if (typeof q !== 'object' || q === null || Array.isArray(q))
    throw bad('transport.quarantine', 'must be {"minMs", "maxMs", "forgiveMs"} (ms)', file);
  const problem = quarantineProblem(q as Record<string, unknown>);
  if (problem)
    throw bad(`transport.quarantine${problem.field ? `.${problem.field}` : ''}`, problem.why, file);
  return { quarantine: { ...(q as NonNullable<NodeConfig['transport']['quarantine']>) } };
}

export function parseEndpoint(s: string, what = 'address'): Endpoint {
  const m = /^(?:tcp:\/\/)?([^:/\s]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : -1;
  if (!m || port > 65535) throw new DropbearError('CONFIG_INVALID', `${what} "${s}" is not tcp://host:port`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

export function loadNodeConfig(path: string): NodeConfig {
  const file = resolve(path);
  let raw: Record<string, unknown>;
  let repeated: string | null;
  try {
    ({ value: raw, repeated } = parseJsonFile(readFileSync(file, 'utf8')) as {
      value: Record<string, unknown>;
      repeated: string | null;
    });
  } catch (e) {
    throw new DropbearError('CONFIG_UNREADABLE', `cannot read node config ${file}: ${(e as Error).message}`);
  }
  // JSON.parse keeps the last of two equal keys (a second "data" ran the node on that folder), other readers
  // the first: such a file reads two ways, and is refused as the genesis and certificates are.
  if (repeated)
    throw new DropbearError('CONFIG_INVALID', `${file} repeats a key (${repeated}), so it reads two ways`);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new DropbearError('CONFIG_INVALID', `${file}: expected a JSON object`);
  const dir = dirname(file);
  const rel = (p: string) => (isAbsolute(p) ? p : resolve(dir, p));
  const str = (k: string): string => {
    const v = raw[k];
    if (typeof v !== 'string' || v === '') throw bad(k, 'must be a non-empty string', file);
    return v;
  };
  // An empty host listened on every interface (Node's default), not the address meant; a misspelt key
  // beside host and port was dropped.
  // `api` also takes `tls` (apiTlsOf below), `p2p` nothing more.
  const endpoint = (k: string, more: readonly string[] = []): Endpoint => {
    const v = raw[k] as { host?: unknown; port?: unknown } | undefined;
    if (typeof v === 'object' && v !== null && !Array.isArray(v))
      onlyKeys(v as Record<string, unknown>, k, ['host', 'port', ...more], 'an address field', file);
    if (
      !v ||
      typeof v.host !== 'string' ||
      v.host === '' ||
      !Number.isInteger(v.port) ||
      (v.port as number) < 0 ||
      (v.port as number) > 65535
    )
      throw bad(k, 'must be {"host": a non-empty string, "port": 0..65535}', file);
    return { host: v.host, port: v.port as number };
  };
  const model = (v: unknown, field: string): ModelConfig => {
    const m = v as Record<string, unknown> | undefined;
    if (m && typeof m === 'object' && !Array.isArray(m)) {
      // Each was dropped without a word: a second kind ({"name", "path"} ran the name), a key beside
      // the kind ({"name", "timeoutMs"}), a misspelt stand-in setting.
      for (const k of Object.keys(m))
        if (!MODEL_KINDS.includes(k))
          throw bad(`${field}.${k}`, `is not a model field (one of ${MODEL_KINDS.join(', ')})`, file);
      if (Object.keys(m).length > 1)
        throw bad(field, `names one model, not ${Object.keys(m).join(' and ')}`, file);
      if (typeof m.standin === 'object' && m.standin !== null && !Array.isArray(m.standin))
        onlyKeys(
          m.standin as Record<string, unknown>,
          `${field}.standin`,
          ['disagreement'],
          'a stand-in setting',
          file,
        );
    }
    // An empty one named nothing: "" went on to the store as a model name, "" as a path to the folder.
    if (m && (m.name === '' || m.path === ''))
      throw bad(`${field}.${m.name === '' ? 'name' : 'path'}`, 'must not be empty', file);
    if (m && typeof m.name === 'string') return { name: m.name };
    if (m && typeof m.path === 'string') return { path: rel(m.path) };
    if (m && m.standin === true) return { standin: {} };
    if (m && typeof m.standin === 'object' && m.standin !== null) {
      const d = (m.standin as { disagreement?: unknown }).disagreement;
      if (d !== undefined && (typeof d !== 'number' || !(d >= 0 && d <= 1)))
        throw bad(`${field}.standin.disagreement`, 'must be a number in 0..1', file);
      return { standin: { disagreement: d as number | undefined } };
    }
    const r = m?.remote as Record<string, unknown> | undefined;
    if (r && typeof r === 'object' && !Array.isArray(r))
      // A misspelt key ("maxInflight") was dropped and the default applied without a word.
      onlyKeys(r, `${field}.remote`, REMOTE_FIELDS, 'a remote model setting', file);
    if (r && typeof r.url === 'string' && typeof r.model === 'string' && typeof r.digest === 'string') {
      // The backlog bounds (remote.ts, REMOTE_DEFAULTS): a string or 0 here would reach the backend as
      // its refusal at start, without the field's place in this file.
      integersAtLeast(r, `${field}.remote`, ['maxInFlight', 'maxQueue'], 1, 'remote model backlog', file);
      // The backend's own rule (remote.ts, REMOTE_MAX_TIMEOUT_MS). A timeoutMs that was not a number
      // ("5000") was dropped and the default (10 s) applied without a word.
      const t = r.timeoutMs;
      if (
        t !== undefined &&
        (typeof t !== 'number' || !Number.isInteger(t) || t < 1 || t > REMOTE_MAX_TIMEOUT_MS)
      )
        throw bad(
          `${field}.remote.timeoutMs`,
          `must be an integer from 1 to ${REMOTE_MAX_TIMEOUT_MS} (ms)`,
          file,
        );
      return {
        remote: {
          url: r.url,
          model: r.model,
          digest: r.digest,
          timeoutMs: t as number | undefined,
          maxInFlight: r.maxInFlight as number | undefined,
          maxQueue: r.maxQueue as number | undefined,
        },
      };
    }
    throw bad(
      field,
      'must be {"name"}, {"path"}, {"remote": {"url", "model", "digest"}} or {"standin": true}',
      file,
    );
  };
  // An unknown field is refused, not dropped: a misspelt "tls" left the node on plain TCP without a word.
  for (const k of Object.keys(raw))
    if (!CONFIG_FIELDS.includes(k))
      throw bad(k, `is not a node config field (the fields: ${CONFIG_FIELDS.join(', ')})`, file);
  const id = raw.id;
  if (!Number.isInteger(id) || (id as number) < 0) throw bad('id', 'must be a node id (integer ≥ 0)', file);
  let peers: Map<number, Endpoint> | null = null;
  if (raw.peers !== undefined) {
    // A list was read by position: ["tcp://…"] made that node 0's address.
    if (typeof raw.peers !== 'object' || raw.peers === null || Array.isArray(raw.peers))
      throw bad('peers', 'must be an object id → address', file);
    peers = new Map();
    for (const [k, v] of Object.entries(raw.peers as Record<string, unknown>)) {
      if (!/^\d+$/.test(k) || typeof v !== 'string')
        throw bad('peers', `entry "${k}" must be "id": "tcp://host:port"`, file);
      peers.set(Number(k), parseEndpoint(v, `peer ${k}`));
    }
  }
  // Read as `custodial?.accounts` alone, a misspelt "acounts", a section that was not an object, or a
  // misspelt account field was dropped: the node started without those accounts, without a word.
  let custodial: NodeConfig['custodial'] = null;
  if (raw.custodial !== undefined) {
    const c = raw.custodial;
    if (typeof c !== 'object' || c === null || Array.isArray(c))
      throw bad('custodial', 'must be {"accounts": [...]}', file);
    onlyKeys(c as Record<string, unknown>, 'custodial', ['accounts'], 'a custodial field', file);
    const custodialRaw = (c as { accounts?: unknown }).accounts;
    if (!Array.isArray(custodialRaw)) throw bad('custodial.accounts', 'must be an array', file);
    custodial = custodialRaw.map((a, i) => {
      if (typeof a === 'object' && a !== null && !Array.isArray(a))
        onlyKeys(a, `custodial.accounts[${i}]`, ['apiKeySha256', 'key', 'maxFee'], 'an account field', file);
      if (
        typeof a?.apiKeySha256 !== 'string' ||
        !/^[0-9a-f]{64}$/.test(a.apiKeySha256) ||
        typeof a.key !== 'string' ||
        a.key === '' ||
        !Number.isSafeInteger(a.maxFee) ||
        a.maxFee < 0
      )
        throw bad(
          `custodial.accounts[${i}]`,
          'needs apiKeySha256 (64 lowercase hex digits), key (a file) and maxFee (an integer ≥ 0)',
          file,
        );
      return { apiKeySha256: a.apiKeySha256, key: rel(a.key), maxFee: a.maxFee };
    });
    // The node keeps one account per API key: a key listed twice (a copied entry whose hash was left)
    // made one account unreachable and its key holder spend the other's funds, until 2026-12-06.
    for (const [i, a] of custodial.entries()) {
      const first = custodial.findIndex((b) => b.apiKeySha256 === a.apiKeySha256);
      if (first < i)
        throw bad(
          `custodial.accounts[${i}]`,
          `has the apiKeySha256 of custodial.accounts[${first}]; give each account its own API key`,
          file,
        );
    }
  }
  const tlsRaw = raw.tls as Record<string, unknown> | undefined;
  if (tlsRaw !== undefined) {
    if (typeof tlsRaw !== 'object' || tlsRaw === null || Array.isArray(tlsRaw))
      throw bad('tls', 'must be {"key", "cert"[, "ca"]} (file paths)', file);
    // A misspelt or mistyped "ca" was dropped, leaving TLS on without the peer certificate check asked for.
    for (const k of Object.keys(tlsRaw))
      if (!['key', 'cert', 'ca'].includes(k))
        throw bad(`tls.${k}`, 'is not a tls field (key, cert, ca)', file);
    if (tlsRaw.ca !== undefined && typeof tlsRaw.ca !== 'string')
      throw bad('tls.ca', 'must be a file path (a string)', file);
    // "" resolved to this file's folder, which the node then refused as a key file (KEY_FILE_PERMISSIONS).
    for (const k of ['key', 'cert', 'ca'])
      if (tlsRaw[k] === '') throw bad(`tls.${k}`, 'must be a file path (a non-empty string)', file);
  }
  const tls =
    tlsRaw === undefined
      ? null
      : typeof tlsRaw.key === 'string' && typeof tlsRaw.cert === 'string'
        ? {
            key: rel(tlsRaw.key),
            cert: rel(tlsRaw.cert),
            ca: typeof tlsRaw.ca === 'string' ? rel(tlsRaw.ca) : undefined,
          }
        : (() => {
            throw bad('tls', 'needs key and cert files', file);
          })();
  // `api.tls`, checked as `tls` is: only key and cert (a client certificate check, `ca`, is not offered), each a
  // non-empty path.
  const apiTlsOf = (): NodeConfig['apiTls'] => {
    const a = raw.api as Record<string, unknown> | undefined;
    if (typeof a !== 'object' || a === null || Array.isArray(a) || !('tls' in a)) return null;
    const t = a.tls as Record<string, unknown> | undefined;
    if (typeof t !== 'object' || t === null || Array.isArray(t))
      throw bad('api.tls', 'must be {"key", "cert"} (file paths)', file);
    onlyKeys(t, 'api.tls', ['key', 'cert'], 'an api.tls field', file);
    for (const k of ['key', 'cert']) {
      if (t[k] === undefined) throw bad('api.tls', 'needs key and cert files', file);
      if (typeof t[k] !== 'string' || t[k] === '')
        throw bad(`api.tls.${k}`, 'must be a file path (a non-empty string)', file);
    }
    return { key: rel(t.key as string), cert: rel(t.cert as string) };
  };
  /** A field that takes one of `allowed`, or `absent` when left out. */
  const oneOf = <T extends string, D>(k: string, allowed: readonly T[], absent: D, note = ''): T | D => {
    const v = raw[k];
    if (v === undefined) return absent;
    if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
    const options = allowed.map((a) => `"${a}"`).join(' or ');
    throw bad(k, `is ${options}${absent === null ? ' or absent' : ''}${note}`, file);
  };
  const obj = (k: string) => {
    const v = raw[k];
    if (v === undefined) return {};
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(k, 'must be an object', file);
    return v as Record<string, never>;
  };
  if (raw.extraModels !== undefined && !Array.isArray(raw.extraModels))
    throw bad('extraModels', 'must be an array of models', file);
  if (raw.home !== undefined && (typeof raw.home !== 'string' || raw.home === ''))
    throw bad('home', 'must be a folder (a non-empty string)', file);
  // A level pino does not know stopped the node with pino's own message; a misspelt or mistyped "log" or
  // "level" was dropped (info).
  const logRaw = raw.log;
  if (logRaw !== undefined) {
    if (typeof logRaw !== 'object' || logRaw === null || Array.isArray(logRaw))
      throw bad('log', 'must be {"level": …}', file);
    for (const k of Object.keys(logRaw))
      if (k !== 'level') throw bad(`log.${k}`, 'is not a log field (level)', file);
    const level = (logRaw as { level?: unknown }).level;
    if (level !== undefined && (typeof level !== 'string' || !LOG_LEVELS.includes(level)))
      throw bad('log.level', `must be one of ${LOG_LEVELS.join(', ')}`, file);
  }
  return {
    file,
    id: id as number,
    genesis: rel(str('genesis')),
    key: rel(str('key')),
    data: rel(str('data')),
    durability: oneOf('durability', DURABILITIES, 'full'),
    certificateIndexRequests: certificateIndexRequests(raw.certificateIndexRequests, file),
    p2p: endpoint('p2p'),
    api: endpoint('api', ['tls']),
    apiTls: apiTlsOf(),
    peers,
    model: model(raw.model, 'model'),
    extraModels: Array.isArray(raw.extraModels)
      ? raw.extraModels.map((m, i) => model(m, `extraModels[${i}]`))
      : [],
    home: typeof raw.home === 'string' ? rel(raw.home) : undefined,
    engine: engineSettings(obj('engine'), file),
    replica: replicaSettings(obj('replica'), file),
    apiLimits: apiLimits(obj('api_limits'), file),
    custodial,
    tls,
    transport: transportSettings(obj('transport'), file),
    byzantine: oneOf('byzantine', ['wrong-results'] as const, null, ' (test only)'),
    log: {
      level:
        typeof (raw.log as { level?: unknown })?.level === 'string'
          ? (raw.log as { level: string }).level
          : 'info',
    },
  };
}

/**
 * A custodial account's `apiKeySha256`: the SHA-256, in lowercase hex, of the API key's bytes as sent in
 * `Authorization: Bearer <key>` (UTF-8). The node compares keys only through this hash.
 */
export function apiKeySha256Of(apiKey: string): string {
  return hex(sha256(new TextEncoder().encode(apiKey)));
}
