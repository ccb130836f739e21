/**
 * `dropbear group init` (a local group folder: genesis, keys, node configs on free loopback ports, a funded
 * client key) and `dropbear group start` (every node as its own process, stopped together on Ctrl-C).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { resolveModel } from '../inference/store.ts';
import type { Durability } from '../ledger/sqlite.ts';
import { NODE_EXEC_ARGV } from '../node/runtime.ts';
import { STANDIN_MODEL, standInDigest } from '../node/standin-backend.ts';
import {
  DropbearError,
  Genesis,
  groupIdOf,
  hex,
  keyPairFromSeed,
  kindHint,
  LIMITS,
  quorumOf,
  toJson,
} from '../protocol/index.ts';
import { readKeyFile, writeKeyFile } from '../protocol/keyfile.ts';
import { reportAndExit, usageError } from './errors.ts';
import { ensureModels } from './eval.ts';
import { networkError } from './http.ts';
import { makeOutputDir, parseHome, readGenesis, readJsonFile, stableJson, writeOutputFile } from './io.ts';
import { parseWhole } from './numbers.ts';

/**
 * The replica settings `group init` writes into every node config. Real models answer in a few ms each, at
 * different speeds: the primary waits a little longer than the simulator's default for the slower ones
 * (voteWaitMs), so certificates usually carry every node's vote. At most 4 batches in flight: under load,
 * requests wait for the pipeline and batches fill up. A 60 ms batch timeout while a batch is in
 * flight or other requests are still gathering votes, none with the pipeline empty and nothing else on
 * its way (the replica's idleBatchTimeoutMs 0, see there): under load, fewer, larger batches leave the
 * group's CPU to the requests. 20 ms against 5 (n = 4 stand-in with client batch signing, two
 * interleaved pairs on 2026-11-30): p99 176-211 ms against 286-441 at 150/s, 323-344 against 400-428 at
 * 1,000/s, closed loop the same. 60 against 20 (scratch probes, interleaved, 2026-12-01; BENCHMARKS.md,
 * e2e reading): the four real models at 32 images in flight 45.6 and 45.5 images/s against 43.0 and 43.4
 * (7.7-8.7 images per consensus batch against 6.0-7.0); open loop at 27 images/s the same within noise
 * (p99 199.6 against 179.0 ms); the n = 4 stand-in without batch signing at 700/s p99 239 and 238 ms
 * against 307 and 328, p50 84 and 79 against 96 and 111. Its cost is at light load: the stand-in at
 * 100/s, p50 33.4 and 29.0 ms against 25.8 and 26.3, p99 80.8 and 72.5 against 64.2 and 68.6
 * (a batch in flight there holds the next one back for the timeout). A checkpoint every 8 batches
 * (the replica's default is 32): a VIEW-CHANGE carries every prepared batch above the last stable
 * checkpoint, and under load, with batches of hundreds of KB, 32 of them made VIEW-CHANGEs of ~1.7 MB and
 * NEW-VIEWs of ~8 MB at n = 7; an overloaded group that had to change views then kept timing out in the
 * view change itself (2026-11-30, scratch probes; with 8 it recovered). The batching sweep (`npm run
 * bench -- sweep`) preferred a 1 ms timeout and one batch in flight at n = 4 twice, then 5 ms and 16 in
 * flight, then 1 ms and 16, then one in flight twice more (BENCHMARKS.md; its rows overlap within their
 * spreads). These settings serve every group: with one in flight an overloaded group of 7 still changes
 * views where 4 in flight does not (same probes), and over long links (the wan part: rounds of ~60–120 ms)
 * one batch in flight would serialize the rounds, so 4 stay.
 * A view-change timeout of 2 s (the replica's default is 1 s): four real models sharing two cores with a
 * burst of 256 requests at start stalled the whole group for ~1.3 s (every node's event loop blocked for
 * 0.4-0.6 s at a time, nothing executed), and backups that had waited one timeout for a ready request
 * changed views (`npm run bench -- wan`, real model at 256 in flight, with a debug log of why; 2026-11-30).
 * A crashed primary is replaced after ~2.75 s instead of ~1.75 s (the timeout plus the pre-view-change
 * check); the e2e test that kills the primary sets 1 s itself.
 * RESULTS are not spaced (`resultsDelayMs` stays the replica's 0). 10 ms cut a stand-in group's CPU at low
 * and middle rates and raised its throughput with one HTTP call per request (+13 to +26 % in interleaved
 * A/Bs), but in a full run of the protocol part it raised the p50 two- to threefold below the peak, the
 * group cutting ~15 consensus batches a second at every rate, as if answers waiting for the next RESULTS
 * kept requests "in transit" at the primary so that each batch waited out its batchTimeoutMs (60 ms)
 * (BENCHMARKS.md, "Protocol capacity", 2026-12-05; the runs before and after it, without it, kept their
 * p50s and batch counts; the cause not probed further).
 */
export const GROUP_REPLICA = {
  voteWaitMs: 25,
  maxInFlightBatches: 4,
  inFlightBudgetMs: 1000,
  batchTimeoutMs: 60,
  idleBatchTimeoutMs: 0,
  checkpointInterval: 8,
  viewChangeTimeoutMs: 2000,
} as const;

/**
 * The ledger durability `group init` writes into node configs: `prepared` (docs/ledger.md) fsyncs what other
 * nodes rely on after a power loss (prepared certificates, view changes, a view's first vote) and leaves
 * the other PRE-PREPARE and PREPARE records and the executions to the operating system, so a batch waits
 * for one fsync instead of three. It keeps `full`'s safety however many machines crash at once; a node
 * whose machine crashed rejoins the ordering at the next view change. Three interleaved runs of
 * `npm run bench:groupab` against `full` (the e2e group at 18 images/s, 2026-12-03; the first two with a
 * scratch version that still fsynced executions): pooled p99 0.65, 0.62 and 0.70 of full's, lower in 8 of
 * 12 round pairs, 21–57 % fewer WAL fsyncs, 3–9 % less CPU per image (BENCHMARKS.md, End to end).
 */
export const GROUP_DURABILITY: Durability = 'prepared';

/** SIGTERM, then SIGKILL after `graceMs` if it is still running; resolves once the process has exited. */
export function stopChild(c: ChildProcess, graceMs = 10_000): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((res) => {
    const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
    c.once('exit', () => {
      clearTimeout(t);
      res();
    });
    c.kill('SIGTERM');
  });
}

export const DEFAULT_MODELS = [
  'mobilenetv2-12-int8',
  'shufflenet-v2-12-qdq',
  'squeezenet1.1-fp16-winml',
  'mobilenet_v1_0.5_160_quant',
];

/**
 * group.json: the group's name and id, its genesis file, and each node's addresses. `client` (a funded
 * client's key file) and each node's `config` are there when one folder holds them all (`group init`); a
 * group of separate owners (`group assemble`) has neither: each client holds its own key (`infer --key`), and
 * each owner their node's config.
 */
export interface GroupFile {
  name: string;
  groupId: string;
  genesis: string;
  client?: string;
  nodes: { id: number; api: string; p2p: string; config?: string; model: string }[];
}

/** Ports the OS says are free now (bound to port 0 on 127.0.0.1, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<import('node:net').Server>((res, rej) => {
          const s = createServer();
          s.once('error', rej);
          s.listen(0, '127.0.0.1', () => res(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as import('node:net').AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export interface InitOptions {
  dir: string;
  nodes: number;
  f?: number;
  models?: string[];
  home?: string;
  name?: string;
  clientFunds?: number;
  /** Extra node config fields (engine, replica, …), merged into every node config. */
  nodeConfig?: Record<string, unknown>;
}

/**
 * The checks every way of making a group shares (`group init`, `group assemble`): at most LIMITS.nodes nodes
 * (past it the genesis codec refused the group, CODEC_OVERSIZE, after files were written) and n ≥ 3f + 1.
 * `what` names the option that sets n in the message. CLI_USAGE.
 */
export function checkGroupSize(n: number, f: number, what: string): void {
  if (n > LIMITS.nodes)
    throw usageError(`${what} must be at most ${LIMITS.nodes} (the nodes a genesis holds), got ${n}`);
  if (!Number.isInteger(f) || f < 0 || n < 3 * f + 1)
    throw usageError(`n = ${n} nodes tolerate at most f = ${Math.floor((n - 1) / 3)}`);
}

/**
 * A group compares its nodes' votes by class index: an MNIST model among ImageNet ones voted digits 0-9 as
 * the ImageNet classes 0-9. CLI_USAGE naming each label set and a model with it (the stand-in, no labels of
 * its own, is left out by the callers).
 */
export function checkLabelSets(models: { name: string; labels: string }[], what: string): void {
  const labels = new Map<string, string>();
  for (const m of models) if (!labels.has(m.labels)) labels.set(m.labels, m.name);
  if (labels.size > 1)
    throw usageError(
      `${what} mixes label sets (${[...labels].map(([l, name]) => `${name}: ${l}`).join(', ')}); ` +
        "a group compares its nodes' votes by class index, so its models must share one",
    );
}

/** What a genesis says of one node, less its id (its place in the list). */
export type GenesisNodeFacts = Omit<Genesis['nodes'][number], 'id'>;

/**
 * The genesis of a group of `nodes` (ids in that order), with the policy (top-1, f + 1 votes) and the params
 * every group made by the CLI has (`group init`, `group assemble`). Balances are sorted by client, as the
 * genesis requires.
 */
export function buildGenesis(o: {
  name: string;
  f: number;
  nodes: GenesisNodeFacts[];
  treasury: Uint8Array;
  balances: { client: Uint8Array; amount: number }[];
}): Genesis {
  return {
    version: 1,
    name: o.name,
    f: o.f,
    nodes: o.nodes.map((node, id) => ({ id, ...node })),
    policy: { kind: 'top1', minAgree: o.f + 1 },
    treasury: o.treasury,
    balances: [...o.balances].sort((a, b) => Buffer.compare(a.client, b.client)),
    params: {
      expiryMs: 600_000,
      maxClockSkewMs: 30_000,
      maxInputBytes: 8 << 20,
      inputType: 'image/jpeg, image/png, application/x-dropbear-tensor',
    },
  };
}

export async function initGroup(o: InitOptions): Promise<GroupFile> {
  const n = o.nodes;
  const f = o.f ?? Math.floor((n - 1) / 3);
  if (!Number.isInteger(n) || n < 1) throw usageError('--nodes must be a positive integer');
  checkGroupSize(n, f, '--nodes');
  const models = o.models ?? Array.from({ length: n }, (_, i) => DEFAULT_MODELS[i % DEFAULT_MODELS.length]);
  if (models.length !== n) throw usageError(`--models names ${models.length} models for ${n} nodes`);
  const dir = resolve(o.dir);
  if (existsSync(join(dir, 'genesis.json')))
    throw usageError(`${dir} already holds a group; choose an empty folder`);
  // Checked before anything is written: a folder with some of these files (another group's keys, a run
  // stopped half-way) had its keys replaced, and a replaced file kept its old, perhaps world-readable, mode.
  const targets = [
    'group.json',
    ...models.flatMap((_, i) => [`node-${i}.json`, join('keys', `node-${i}.json`)]),
    join('keys', 'client.json'),
    join('keys', 'treasury.json'),
  ];
  const present = targets.filter((t) => existsSync(join(dir, t)));
  if (present.length > 0)
    throw usageError(`${dir} already holds ${present.join(', ')}; choose an empty folder`);
  // The stand-in (`standin`, no model file: src/node/standin-backend.ts) is not in the store.
  const stored = models.filter((m) => m !== STANDIN_MODEL);
  await ensureModels([...new Set(stored)], o.home);
  const resolved = await Promise.all(
    models.map((m, i) => (m === STANDIN_MODEL ? { sha256: standInDigest(i) } : resolveModel(m, o.home))),
  );
  checkLabelSets(
    resolved.flatMap((r) => ('spec' in r ? [r.spec] : [])),
    '--models',
  );
  // Each file is written whole or not at all (writeOutputFile; a key file is removed if its write fails),
  // and a failure part-way (a full disk) removes what this init wrote: the folder is left as it was, so the
  // same command works once there is room. Six keys and an empty genesis.json were left, and the next init
  // said the folder already held a group.
  const written: string[] = [];
  const key = (rel: string, k: ReturnType<typeof keyPairFromSeed>) => {
    writeKeyFile(join(dir, rel), k);
    written.push(rel);
  };
  const put = (rel: string, text: string) => {
    writeOutputFile(join(dir, rel), text);
    written.push(rel);
  };
  try {
    makeOutputDir('--dir', join(dir, 'keys'));
    const keys = models.map((_, i) => {
      const k = keyPairFromSeed(randomBytes(32));
      key(join('keys', `node-${i}.json`), k);
      return k;
    });
    const client = keyPairFromSeed(randomBytes(32));
    key(join('keys', 'client.json'), client);
    const treasury = keyPairFromSeed(randomBytes(32));
    key(join('keys', 'treasury.json'), treasury);
    const ports = await freePorts(2 * n);
    const genesis = buildGenesis({
      name: o.name ?? `local-${n}`,
      f,
      nodes: keys.map((k, i) => ({
        publicKey: k.publicKey,
        address: `tcp://127.0.0.1:${ports[2 * i]}`,
        owner: `owner-${i}`,
        modelName: models[i],
        modelDigest: Uint8Array.from(Buffer.from(resolved[i].sha256, 'hex')),
        fee: 1,
      })),
      treasury: treasury.publicKey,
      balances: [{ client: client.publicKey, amount: o.clientFunds ?? 1_000_000_000 }],
    });
    put('genesis.json', stableJson(toJson(Genesis, genesis)));
    const group: GroupFile = {
      name: genesis.name,
      groupId: hex(groupIdOf(genesis)),
      genesis: 'genesis.json',
      client: 'keys/client.json',
      nodes: [],
    };
    for (let i = 0; i < n; i++) {
      const config = {
        id: i,
        genesis: 'genesis.json',
        key: `keys/node-${i}.json`,
        data: `data/node-${i}`,
        p2p: { host: '127.0.0.1', port: ports[2 * i] },
        api: { host: '127.0.0.1', port: ports[2 * i + 1] },
        model: models[i] === STANDIN_MODEL ? { standin: true } : { name: models[i] },
        ...(o.home ? { home: resolve(o.home) } : {}),
        log: { level: 'info' },
        durability: GROUP_DURABILITY,
        replica: { ...GROUP_REPLICA },
        ...o.nodeConfig,
      };
      put(`node-${i}.json`, stableJson(config));
      group.nodes.push({
        id: i,
        api: `http://127.0.0.1:${ports[2 * i + 1]}`,
        p2p: `tcp://127.0.0.1:${ports[2 * i]}`,
        config: `node-${i}.json`,
        model: models[i],
      });
    }
    put('group.json', stableJson(group));
    return group;
  } catch (e) {
    for (const rel of written) rmSync(join(dir, rel), { force: true });
    throw e;
  }
}

export interface LoadedGroup {
  dir: string;
  file: GroupFile;
  genesis: Genesis;
  clientKey: () => ReturnType<typeof readKeyFile>;
}

const GROUP_FIELDS = ['name', 'groupId', 'genesis', 'client', 'nodes'];
const GROUP_NODE_FIELDS = ['id', 'api', 'p2p', 'config', 'model'];

/**
 * group.json as `group init` writes it, else GROUP_INVALID naming the field. Read as given, a hand-edited
 * one without "genesis" or "nodes", or with a node entry short of a field, ended status, infer, model-update,
 * group start and demo with Node's own `The "path" argument must be of type string` or `Cannot read
 * properties of undefined (reading 'map')`, and no code.
 */
function groupFile(path: string, v: unknown): GroupFile {
  const hint = kindHint(v, "a group's group.json");
  const bad = (field: string, why: string) =>
    new DropbearError(
      'GROUP_INVALID',
      `${path}: "${field}" ${why}${hint}; \`npx dropbear group init\` writes a valid one`,
    );
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new DropbearError('GROUP_INVALID', `${path} must hold a JSON object (a group's group.json)`);
  const g = v as Record<string, unknown>;
  for (const k of Object.keys(g))
    if (!GROUP_FIELDS.includes(k))
      throw bad(k, `is not a group.json field (the fields: ${GROUP_FIELDS.join(', ')})`);
  for (const k of ['name', 'groupId']) if (typeof g[k] !== 'string') throw bad(k, 'must be a string');
  // "client" may be absent (a group of separate owners, `group assemble`), never empty or of another type.
  for (const k of ['genesis', 'client'])
    if ((k === 'genesis' || g[k] !== undefined) && (typeof g[k] !== 'string' || g[k] === ''))
      throw bad(k, 'must be a file name (a non-empty string, relative to the group folder)');
  if (!Array.isArray(g.nodes) || g.nodes.length === 0)
    throw bad('nodes', "must be a list of the group's nodes (at least one)");
  for (const [i, n] of (g.nodes as unknown[]).entries()) {
    if (typeof n !== 'object' || n === null || Array.isArray(n))
      throw bad(`nodes[${i}]`, 'must be an object {id, api, p2p, config, model}');
    const node = n as Record<string, unknown>;
    for (const k of Object.keys(node))
      if (!GROUP_NODE_FIELDS.includes(k))
        throw bad(`nodes[${i}].${k}`, `is not a node field (the fields: ${GROUP_NODE_FIELDS.join(', ')})`);
    if (!Number.isSafeInteger(node.id) || (node.id as number) < 0)
      throw bad(`nodes[${i}].id`, 'must be a node id (an integer ≥ 0)');
    // "config" may be absent (`group assemble`: each owner holds their own), never empty.
    for (const k of ['api', 'p2p', 'config', 'model'])
      if ((k !== 'config' || node[k] !== undefined) && (typeof node[k] !== 'string' || node[k] === ''))
        throw bad(`nodes[${i}].${k}`, 'must be a non-empty string');
  }
  const dup = duplicates(g.nodes as GroupFile['nodes']);
  if (dup.length > 0)
    throw new DropbearError(
      'GROUP_INVALID',
      `${path}: ${dup.join('; ')}: each node needs its own id, API address and peer address${hint}`,
    );
  return g as unknown as GroupFile;
}

/**
 * An address as compared for duplicates: a URL's scheme, host and port (as URL writes them: lower case, a
 * default port left out) and its path without a trailing slash; text that is no URL as it is.
 */
function addressKey(address: string): string {
  try {
    const u = new URL(address);
    return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
  } catch {
    return address;
  }
}

/**
 * The node ids, API addresses and peer addresses that more than one entry of `nodes` gives, each as
 * `node id 1 is given to nodes[1] and nodes[2]`. Accepted, a client asked one node twice (and `tx` had to
 * count its word once) and `group start` started two nodes on one port.
 */
function duplicates(nodes: GroupFile['nodes']): string[] {
  const out: string[] = [];
  const kinds: [
    string,
    (n: GroupFile['nodes'][number]) => string,
    (n: GroupFile['nodes'][number]) => string,
  ][] = [
    ['node id', (n) => String(n.id), (n) => String(n.id)],
    ['API address', (n) => addressKey(n.api), (n) => n.api],
    ['peer address', (n) => addressKey(n.p2p), (n) => n.p2p],
  ];
  for (const [what, key, shown] of kinds) {
    const at = new Map<string, number[]>();
    nodes.forEach((n, i) => {
      const k = key(n);
      at.set(k, [...(at.get(k) ?? []), i]);
    });
    for (const list of at.values()) {
      if (list.length < 2) continue;
      const names = list.map((i) => `nodes[${i}]`);
      out.push(
        `${what} ${shown(nodes[list[0]])} is given to ${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`,
      );
    }
  }
  return out;
}

export function loadGroup(dir: string): LoadedGroup {
  const d = resolve(dir);
  if (!existsSync(join(d, 'group.json')))
    throw new DropbearError(
      'GROUP_NOT_FOUND',
      `${d} has no group.json; create one with \`npx dropbear group init --dir ${dir}\``,
    );
  const file = groupFile(join(d, 'group.json'), readJsonFile(join(d, 'group.json')));
  const genesis = readGenesis(join(d, file.genesis));
  const clientKey = () => {
    if (file.client === undefined)
      throw new DropbearError(
        'GROUP_NO_CLIENT_KEY',
        `${join(d, 'group.json')} names no client key (a group of separate owners: each client holds its own); ` +
          'name your key file with --key FILE',
      );
    return readKeyFile(join(d, file.client));
  };
  return { dir: d, file, genesis, clientKey };
}

/**
 * Node `node`'s config file in the group folder; GROUP_NO_CONFIGS for a group of separate owners (`group
 * assemble`), whose configs are each on its owner's machine.
 */
export function nodeConfigPath(g: LoadedGroup, node: GroupFile['nodes'][number]): string {
  if (node.config === undefined)
    throw new DropbearError(
      'GROUP_NO_CONFIGS',
      `${join(g.dir, 'group.json')} names no config for node ${node.id} (a group of separate owners: each ` +
        'owner writes their own with `dropbear group node-config` and runs `dropbear node --config`)',
    );
  return join(g.dir, node.config);
}

export interface GroupProcesses {
  /** Each node's current process (a restarted node's new one replaces it). */
  children: Map<number, ChildProcess>;
  stop(): Promise<void>;
  /**
   * Resolves when every node's own process has said it serves and answers /readyz; rejects at once with
   * NODE_EXITED (naming the node's own error code, e.g. LISTEN_FAILED or LEDGER_LOCKED) when one exits
   * first, or with GROUP_NOT_READY after `timeoutMs`, or GROUP_STOPPED once `stop()` was called.
   */
  ready(timeoutMs?: number): Promise<void>;
  /** Starts node `id`'s process again, now, after it exited (a test or bench that killed it on purpose). */
  restart(id: number): ChildProcess;
  /**
   * Resolves (never rejects) with the reason supervision gave up, every node stopped by then: a node that
   * exited after the group was ready more often in a row than `restart.max` allows (NODE_FAILED), or no
   * node left running (GROUP_STOPPED). Never resolves without a `restart` policy or after `stop()`.
   */
  failure: Promise<DropbearError>;
}

/**
 * What `startGroup` does with a node that exits after `ready()` resolved (not stopped by `stop()`): a crash
 * (a signal, a non-zero status) is restarted after `firstDelayMs`, doubling up to `maxDelayMs`; after `max`
 * restarts in a row (a node that runs `resetAfterMs` starts a new row) the whole group is stopped and
 * `failure` resolves. A node that stops by itself with status 0 (someone sent it SIGTERM) is not restarted.
 */
export interface RestartPolicy {
  max: number;
  firstDelayMs?: number;
  maxDelayMs?: number;
  resetAfterMs?: number;
}

/** The restarts `group start` allows a node in a row (`--restarts`). */
export const DEFAULT_RESTARTS = 5;

// The flags every node process starts with live beside the node (src/node/runtime.ts); re-exported here
// for `startGroup` below and for the benches, which start nodes and model servers the same way.
export { NODE_EXEC_ARGV } from '../node/runtime.ts';

interface NodeState {
  child: ChildProcess;
  /** The API URL this process said it serves on (its "node N serving URL" line), once it said so. */
  serving: string | null;
  /** Its last `error [CODE]: message` line. */
  lastError: { code: string; line: string } | null;
  /** performance.now() at its start (a step of the system clock no longer makes its run look long or short). */
  startedAt: number;
  /** Exits in a row after the group was ready (reset by a run of resetAfterMs). */
  crashes: number;
  restartTimer: NodeJS.Timeout | null;
}

const ERROR_LINE = /^error \[([A-Z0-9_]+)\]: /;
const SERVING_LINE = /^node \d+ serving (\S+)/;

function exitText(code: number | null, sig: NodeJS.Signals | null): string {
  return sig ? `killed by ${sig}` : `status ${code}`;
}

/**
 * Starts every node of the group as its own process; their output goes to `log` with a prefix. With
 * `restart`, a node that exits after `ready()` is restarted (see RestartPolicy); without it, it is only
 * reported (the benches and tests that kill nodes on purpose).
 */
export function startGroup(
  g: LoadedGroup,
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
  opts: {
    restart?: RestartPolicy;
    /** Node.js flags after NODE_EXEC_ARGV on each node's command line (a later flag wins; benches' probes). */
    execArgv?: readonly string[];
  } = {},
): GroupProcesses {
  const bin = new URL('../../bin/dropbear.mjs', import.meta.url).pathname;
  const children = new Map<number, ChildProcess>();
  const states = new Map<number, NodeState>();
  const n = g.file.nodes.length;
  const quorum = quorumOf(g.genesis);
  let stopping = false;
  let supervised = false; // ready() resolved: exits from now on are crashes to restart
  let giveUp: (e: DropbearError) => void = () => {};
  const failure = new Promise<DropbearError>((res) => {
    giveUp = res;
  });
  let failed = false;
  // Wakes ready() when a node exits, instead of waiting out its poll.
  let wake: () => void = () => {};
  const running = () =>
    [...states.values()].filter((s) => s.child.exitCode === null && s.child.signalCode === null).length;

  const fail = (e: DropbearError) => {
    if (failed || stopping) return;
    failed = true;
    log(`group start: ${e.message}; stopping every node`);
    api.stop().then(() => giveUp(e));
  };

  const spawnNode = (node: GroupFile['nodes'][number]) => {
    const child = spawn(
      process.execPath,
      [...NODE_EXEC_ARGV, ...(opts.execArgv ?? []), bin, 'node', '--config', nodeConfigPath(g, node)],
      // The IPC channel is how a node learns that this process ended, however it ended (even SIGKILL):
      // the channel closes and the node stops cleanly instead of running on unattended.
      { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
    );
    const prev = states.get(node.id);
    const s: NodeState = {
      child,
      serving: null,
      lastError: null,
      startedAt: performance.now(),
      crashes: prev?.crashes ?? 0,
      restartTimer: null,
    };
    states.set(node.id, s);
    children.set(node.id, child);
    for (const stream of [child.stdout, child.stderr]) {
      let buf = '';
      stream?.on('data', (d: Buffer) => {
        buf += d.toString('utf8');
        let i = buf.indexOf('\n');
        while (i >= 0) {
          const line = buf.slice(0, i);
          const err = ERROR_LINE.exec(line);
          if (err) s.lastError = { code: err[1], line };
          const serving = SERVING_LINE.exec(line);
          if (serving && stream === child.stdout) s.serving = serving[1];
          log(`[node ${node.id}] ${line}`);
          buf = buf.slice(i + 1);
          i = buf.indexOf('\n');
        }
      });
    }
    // 'close', not 'exit': the node's last lines (its error) have been read by then.
    child.on('close', (code, sig) => {
      wake();
      if (stopping || failed) return;
      const how = exitText(code, sig);
      const why = s.lastError ? `: ${s.lastError.line}` : '';
      const left = running();
      const count = `${left} of ${n} nodes run${left < quorum ? `, fewer than the ${quorum} the group needs to certify anything` : ''}`;
      const policy = opts.restart;
      if (!supervised || !policy) {
        // Before ready(), ready() rejects with this exit; without a policy it is only reported.
        log(`[node ${node.id}] exited (${how})${supervised ? `; ${count}` : ''}`);
        return;
      }
      const ranMs = performance.now() - s.startedAt;
      if (ranMs >= (policy.resetAfterMs ?? 60_000)) s.crashes = 0;
      if (code === 0 && !sig) {
        log(
          `[node ${node.id}] stopped with status 0 (a SIGTERM, SIGINT or SIGHUP not from group start): not restarted; ${count}`,
        );
        if (left === 0) fail(new DropbearError('GROUP_STOPPED', 'no node is left running'));
        return;
      }
      s.crashes++;
      if (s.crashes > policy.max) {
        fail(
          new DropbearError(
            'NODE_FAILED',
            `node ${node.id} exited (${how}${why}) ${policy.max === 0 ? 'and restarts are off (--restarts 0)' : `after ${policy.max} restart${policy.max === 1 ? '' : 's'} in a row`}`,
            { node: node.id, status: code, signal: sig, cause: s.lastError?.code },
          ),
        );
        return;
      }
      const delay = Math.min(
        policy.maxDelayMs ?? 30_000,
        (policy.firstDelayMs ?? 1000) * 2 ** (s.crashes - 1),
      );
      log(
        `[node ${node.id}] exited (${how}${why}) after ${(ranMs / 1000).toFixed(1)} s; restarting it in ${(delay / 1000).toFixed(1)} s (restart ${s.crashes} of ${policy.max} in a row); ${count}`,
      );
      s.restartTimer = setTimeout(() => {
        s.restartTimer = null;
        if (stopping || failed) return;
        const next = spawnNode(node);
        log(`[node ${node.id}] restarted (pid ${next.child.pid})`);
      }, delay);
    });
    return s;
  };

  // A group of separate owners (`group assemble`) has no node configs here: refused before any node starts.
  for (const node of g.file.nodes) nodeConfigPath(g, node);
  for (const node of g.file.nodes) spawnNode(node);

  const api: GroupProcesses = {
    children,
    failure,
    async stop() {
      stopping = true;
      wake();
      for (const s of states.values()) if (s.restartTimer) clearTimeout(s.restartTimer);
      await Promise.all([...children.values()].map((c) => stopChild(c)));
    },
    restart(id) {
      const s = states.get(id);
      const node = g.file.nodes.find((x) => x.id === id);
      if (!s || !node) throw new DropbearError('NODE_UNKNOWN', `the group has no node ${id}`);
      if (s.child.exitCode === null && s.child.signalCode === null)
        throw new DropbearError('NODE_RUNNING', `node ${id} is still running (pid ${s.child.pid})`);
      if (s.restartTimer) clearTimeout(s.restartTimer);
      s.restartTimer = null;
      return spawnNode(node).child;
    },
    async ready(timeoutMs = 120_000) {
      const deadline = performance.now() + timeoutMs;
      for (const node of g.file.nodes) {
        let reason = 'it has not said it serves yet';
        for (;;) {
          if (stopping) throw new DropbearError('GROUP_STOPPED', 'the group was stopped before it was ready');
          // Any node's exit ends the wait, not only the one waited for: it will not become ready.
          for (const [id, s] of states) {
            const c = s.child;
            if (c.exitCode === null && c.signalCode === null) continue;
            throw new DropbearError(
              'NODE_EXITED',
              `node ${id} exited (${exitText(c.exitCode, c.signalCode)}) before the group was ready${s.lastError ? `: ${s.lastError.line}` : ''}`,
              { node: id, status: c.exitCode, signal: c.signalCode, cause: s.lastError?.code },
            );
          }
          const s = states.get(node.id)!;
          // Asked only once this node's own process said where it serves: another process on the port
          // (another `group start` on this folder) must not make this group look ready.
          if (s.serving) {
            try {
              const r = await fetch(`${s.serving}/readyz`, { signal: AbortSignal.timeout(2000) });
              if (r.status === 200 && s.child.exitCode === null && s.child.signalCode === null) break;
              const body = (await r.json().catch(() => null)) as { error?: { message?: string } } | null;
              reason = body?.error?.message ?? `/readyz answered ${r.status}`;
            } catch (e) {
              // A certificate this process does not trust stays untrusted (NODE_EXTRA_CA_CERTS is read when
              // the process starts): said at once, with the fix. It waited out the timeout (120 s), then
              // stopped the group saying `/readyz: fetch failed`.
              const err = networkError(`${s.serving}/readyz`, e, 2000);
              if (err.code === 'NODE_UNTRUSTED')
                throw new DropbearError(err.code, `node ${node.id}: ${err.message}`, { node: node.id });
              reason = err.message;
            }
          }
          if (performance.now() > deadline)
            throw new DropbearError(
              'GROUP_NOT_READY',
              `node ${node.id} not ready after ${timeoutMs} ms (${reason})`,
              { node: node.id },
            );
          await new Promise<void>((r) => {
            const t = setTimeout(r, 200);
            wake = () => {
              clearTimeout(t);
              r();
            };
          });
        }
      }
      if (stopping) throw new DropbearError('GROUP_STOPPED', 'the group was stopped before it was ready');
      supervised = true;
    },
  };
  return api;
}

/** Registers `group` and its local commands; returns it for the separate owners' ones (owners.ts). */
export function registerGroup(program: Command): Command {
  const group = program
    .command('group')
    .description(
      "a group's files: a local group (init, start) or one of separate owners (describe-node, assemble, node-config)",
    );
  group
    .command('init')
    .description('write a genesis, node keys, node configs on free loopback ports and a funded client key')
    .requiredOption('--dir <dir>', 'an empty folder for the group')
    .option('--nodes <n>', 'number of nodes', '4')
    .option('--f <f>', 'faults tolerated (default: the most n allows)')
    .option(
      '--models <a,b,c,d>',
      `one model per node from the store, or \`${STANDIN_MODEL}\` for the stand-in (no model file, no inference cost: tests and protocol trials) (default: ${DEFAULT_MODELS.join(',')})`,
    )
    .option('--home <dir>', 'the Dropbear home folder (default: $DROPBEAR_HOME, else ~/.dropbear)', parseHome)
    .option('--name <name>', 'group name')
    .addHelpText(
      'after',
      '\nExample:\n  DROPBEAR_MODELS=../shared/models npx dropbear group init --dir out/group --nodes 4\n  npx dropbear group start out/group\n\n' +
        'Exit status: 0 written, 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument; nothing is left written).\n',
    )
    .action(
      async (o: {
        dir: string;
        nodes: string;
        f?: string;
        models?: string;
        home?: string;
        name?: string;
      }) => {
        const g = await initGroup({
          dir: o.dir,
          nodes: parseWhole('--nodes', o.nodes, 1),
          f: o.f === undefined ? undefined : parseWhole('--f', o.f, 0),
          models: o.models?.split(',').filter(Boolean),
          home: o.home,
          name: o.name,
        });
        process.stdout.write(`group ${g.name} (${g.groupId.slice(0, 16)}…) in ${resolve(o.dir)}\n`);
        for (const n of g.nodes)
          process.stdout.write(`  node ${n.id}: ${n.model.padEnd(28)} api ${n.api}  p2p ${n.p2p}\n`);
        process.stdout.write(`start it: npx dropbear group start ${o.dir}\n`);
      },
    );
  group
    .command('start')
    .description('start every node of a local group as its own process; Ctrl-C stops them all')
    .argument('<dir>', 'the group folder')
    .option(
      '--restarts <n>',
      'restarts in a row a node that crashes after the group was ready gets (1 s, doubling up to 30 s, apart) before the whole group is stopped; 0: stop the group at the first crash',
      String(DEFAULT_RESTARTS),
    )
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear group start out/group\n\n' +
        'A node that exits before the group is ready stops the group (exit status 2, its error code shown).\n' +
        'A node that crashes later is restarted (one that ran 60 s starts a new row); one that stops with\n' +
        'status 0 is not. SIGINT, SIGTERM and SIGHUP stop every node (SIGKILL after 10 s) and exit 0.\n' +
        'Exit status: 0 stopped by a signal, 2 an error (NODE_EXITED before ready, NODE_FAILED after too many\n' +
        'restarts, GROUP_STOPPED when every node stopped with status 0, CLI_USAGE for a bad option or\n' +
        'argument; one line on stderr: error [CODE]: message).\n',
    )
    .action(async (dir: string, o: { restarts: string }) => {
      const max = parseWhole('--restarts', o.restarts, 0);
      const g = loadGroup(dir);
      // A log reader that went away (`| head`, a dead log shipper) must not take the group down with it:
      // the nodes keep serving and a signal still stops them (as a node itself does, src/cli/node.ts).
      for (const s of [process.stdout, process.stderr])
        s.on('error', (e: NodeJS.ErrnoException) => {
          if (e.code !== 'EPIPE' && e.code !== 'ERR_STREAM_DESTROYED') reportAndExit(e);
        });
      const procs = startGroup(g, undefined, { restart: { max } });
      let stopping = false;
      const stop = (sig: NodeJS.Signals) => {
        if (stopping) return;
        stopping = true;
        process.stderr.write(`group start: ${sig}: stopping every node\n`);
        // The last line says the stop is done (an operator saw "stopping every node" and nothing after it).
        procs.stop().then(() => {
          process.stderr.write('group start: every node stopped\n');
          process.exit(0);
        });
      };
      for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => stop(sig));
      // Stopping by a signal ends with status 0 from stop(), whatever ready() or failure say meanwhile.
      const never = new Promise<never>(() => {});
      try {
        await procs.ready();
      } catch (e) {
        if (stopping) return never;
        // The others are stopped here, before the error is shown, not left to notice that this process ended.
        await procs.stop();
        throw e;
      }
      process.stdout.write(`group ${g.file.name} ready:\n`);
      for (const n of g.file.nodes) process.stdout.write(`  node ${n.id}: ${n.api}\n`);
      process.stdout.write('Ctrl-C stops every node.\n');
      const e = await procs.failure;
      if (stopping) return never;
      throw e;
    });
  return group;
}
