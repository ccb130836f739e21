/**
 * A group of separate owners, each holding only their own key and model (docs/api.md, "A group of separate
 * owners"): `group describe-node` (an owner's public facts as a file), `group assemble` (anyone: the genesis
 * and group.json from n such files and the clients' and treasury's public keys) and `group node-config` (an
 * owner's node config against that genesis, with their own key). `group init` instead makes every key in
 * one folder on one machine.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import type { Command } from 'commander';
import { resolveModel } from '../inference/store.ts';
import { STANDIN_MODEL, standInDigest } from '../node/standin-backend.ts';
import { loadTls } from '../node/transport.ts';
import {
  CodecError,
  DropbearError,
  fromB64u,
  Genesis,
  genesisProblem,
  groupIdOf,
  hex,
  LIMITS,
  toB64u,
  toJson,
} from '../protocol/index.ts';
import { readKeyFile } from '../protocol/keyfile.ts';
import { usageError } from './errors.ts';
import {
  buildGenesis,
  checkGroupSize,
  checkLabelSets,
  GROUP_DURABILITY,
  GROUP_REPLICA,
  type GroupFile,
  loadGroup,
} from './group.ts';
import {
  checkOutputFile,
  makeOutputDir,
  parseHome,
  readGenesis,
  readJsonFile,
  stableJson,
  writeOutputFile,
} from './io.ts';
import { parseWhole } from './numbers.ts';

/** What `group describe-node` writes: one node's public facts, nothing secret. */
export interface NodeDescription {
  kind: typeof DESCRIPTION_KIND;
  /** The node's Ed25519 public key, base64url (as `keygen` prints it). */
  publicKey: string;
  owner: string;
  modelName: string;
  /** SHA-256 of the model file (hex); null for the stand-in, whose digest is its node id's (assemble fills it). */
  modelDigest: string | null;
  /** The model's label set (`imagenet1k`, `mnist10`; `none` for the stand-in): a group's models share one. */
  labels: string;
  /** Where peers reach the node: tcp://HOST:PORT. */
  address: string;
  /** Where clients reach its API: http(s)://HOST:PORT. */
  api: string;
  fee: number;
}

const DESCRIPTION_KIND = 'dropbear-node-description';
const DESCRIPTION_FIELDS = [
  'kind',
  'publicKey',
  'owner',
  'modelName',
  'modelDigest',
  'labels',
  'address',
  'api',
  'fee',
];

/** HOST:PORT (a bracketed IPv6 address as [::1]:7100) as host and port; null if it is not one. */
function hostPort(text: string): { host: string; port: number } | null {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]@]+):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  return { host: m[1].replace(/^\[(.*)\]$/, '$1'), port };
}

/**
 * Whether `host` is the unspecified address (0.0.0.0, ::, or a spelling of them such as 0 or [0:0::0]): a
 * node may listen there (`node-config --listen-host`), but no peer or client can dial it.
 */
function unspecifiedHost(host: string): boolean {
  let h: string;
  try {
    h = new URL(`http://${host.includes(':') ? `[${host}]` : host}/`).hostname;
  } catch {
    return false;
  }
  return h === '0.0.0.0' || h === '[::]';
}

/** Why `text` (owner, model name, address) cannot be in a genesis (its strings are at most LIMITS.text bytes); null if it can. */
function textTooLong(text: string): string | null {
  const bytes = Buffer.byteLength(text);
  return bytes > LIMITS.text ? `is ${bytes} bytes; a genesis holds at most ${LIMITS.text}` : null;
}

/** 127.0.0.0/8, ::1 or localhost (a bracketed IPv6 host as a URL writes it too). */
function loopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** An http(s) URL's host (an IPv6 one without its brackets) and port (the scheme's default if none is given). */
function urlHostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80,
  };
}

/** An http(s) URL with nothing after its host and port, as its origin; null if it is not one. */
function apiOrigin(text: string): string | null {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return null;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  if (u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== ''))
    return null;
  return u.origin;
}

/** A base64url Ed25519 public key (as `keygen` prints it), else CLI_USAGE naming `what`. */
export function publicKeyArg(what: string, text: string): Uint8Array {
  // A key pasted with its line's newline (or spaces around it) is the same key.
  const t = text.trim();
  let k: Uint8Array | null = null;
  try {
    k = fromB64u(t, what);
  } catch {}
  if (k === null || k.length !== 32)
    throw usageError(
      `${what} must be a public key as \`dropbear keygen\` prints it (base64url, 32 bytes, 43 characters), got ${JSON.stringify(text)}` +
        (/^[0-9a-fA-F]{64}$/.test(t) ? ': that is hex; give the base64url form' : ''),
    );
  return k;
}

export interface DescribeOptions {
  key: string;
  model: string;
  home?: string;
  p2p: string;
  api: string;
  owner: string;
  fee?: number;
}

/** One node's description: the key file is read only for its public key; the model resolved in `home`'s store. */
export async function describeNode(o: DescribeOptions): Promise<NodeDescription> {
  const p2p = hostPort(o.p2p);
  if (!p2p)
    throw usageError(`--p2p must be HOST:PORT (where peers reach this node), got ${JSON.stringify(o.p2p)}`);
  const api = apiOrigin(o.api);
  if (!api)
    throw usageError(
      `--api must be an http(s) URL with no path (where clients reach this node), got ${JSON.stringify(o.api)}`,
    );
  if (unspecifiedHost(p2p.host))
    throw usageError(
      `--p2p ${o.p2p} is the unspecified address, which no peer can dial; give the address peers reach this node at (listen on 0.0.0.0 with \`group node-config --listen-host 0.0.0.0\`)`,
    );
  const apiAt = urlHostPort(api);
  if (unspecifiedHost(apiAt.host))
    throw usageError(
      `--api ${o.api} is the unspecified address, which no client can dial; give the URL clients reach this node at (listen on 0.0.0.0 with \`group node-config --listen-host 0.0.0.0\`)`,
    );
  if (apiAt.port === p2p.port && apiAt.host.toLowerCase() === p2p.host.toLowerCase())
    throw usageError(
      `--p2p ${o.p2p} and --api ${o.api} are the same port of one host: the node listens on both, so give each its own`,
    );
  if (o.owner.trim() === '') throw usageError('--owner must name the owner');
  const ownerLong = textTooLong(o.owner);
  if (ownerLong) throw usageError(`--owner ${ownerLong}`);
  const publicKey = toB64u(readKeyFile(o.key).publicKey);
  let model: Pick<NodeDescription, 'modelName' | 'modelDigest' | 'labels'>;
  if (o.model === STANDIN_MODEL) model = { modelName: STANDIN_MODEL, modelDigest: null, labels: 'none' };
  else {
    const r = await resolveModel(o.model, o.home);
    model = { modelName: r.spec.name, modelDigest: r.sha256, labels: r.spec.labels };
  }
  const host = p2p.host.includes(':') ? `[${p2p.host}]` : p2p.host;
  return {
    kind: DESCRIPTION_KIND,
    publicKey,
    owner: o.owner,
    ...model,
    address: `tcp://${host}:${p2p.port}`,
    api,
    fee: o.fee ?? 1,
  };
}

/** A description file as `describe-node` writes it, else NODE_DESCRIPTION_INVALID naming the file and field. */
export function readDescription(path: string): NodeDescription {
  const v = readJsonFile(path);
  const bad = (why: string) =>
    new DropbearError(
      'NODE_DESCRIPTION_INVALID',
      `${path}: ${why}; \`dropbear group describe-node\` writes a node's description`,
    );
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('must hold a JSON object');
  const d = v as Record<string, unknown>;
  if (d.kind !== DESCRIPTION_KIND)
    throw bad(`"kind" must be "${DESCRIPTION_KIND}" (is this a node's description?)`);
  for (const k of Object.keys(d))
    if (!DESCRIPTION_FIELDS.includes(k))
      throw bad(`"${k}" is not a description field (the fields: ${DESCRIPTION_FIELDS.join(', ')})`);
  for (const k of DESCRIPTION_FIELDS) if (!(k in d)) throw bad(`"${k}" is missing`);
  for (const k of ['owner', 'modelName', 'labels'])
    if (typeof d[k] !== 'string' || d[k] === '') throw bad(`"${k}" must be a non-empty string`);
  try {
    if (typeof d.publicKey !== 'string' || fromB64u(d.publicKey, 'publicKey').length !== 32)
      throw new Error();
  } catch {
    throw bad('"publicKey" must be an Ed25519 public key (base64url, 32 bytes)');
  }
  if (d.modelDigest === null) {
    if (d.modelName !== STANDIN_MODEL) throw bad('"modelDigest" may be null only for the stand-in model');
  } else if (typeof d.modelDigest !== 'string' || !/^[0-9a-f]{64}$/.test(d.modelDigest))
    throw bad('"modelDigest" must be the model\'s SHA-256 (64 lowercase hex digits)');
  const address =
    typeof d.address === 'string' && /^tcp:\/\//.test(d.address) ? hostPort(d.address.slice(6)) : null;
  if (!address) throw bad('"address" must be tcp://HOST:PORT');
  if (unspecifiedHost(address.host))
    throw bad('"address" is the unspecified address, which no peer can dial');
  if (typeof d.api !== 'string' || apiOrigin(d.api) !== d.api)
    throw bad('"api" must be an http(s) URL with no path');
  if (unspecifiedHost(urlHostPort(d.api).host))
    throw bad('"api" is the unspecified address, which no client can dial');
  for (const k of ['owner', 'modelName', 'address']) {
    const long = textTooLong(d[k] as string);
    if (long) throw bad(`"${k}" ${long}`);
  }
  if (!Number.isSafeInteger(d.fee) || (d.fee as number) < 0) throw bad('"fee" must be an integer ≥ 0');
  return d as unknown as NodeDescription;
}

export interface AssembleOptions {
  dir: string;
  /** Description files, in node id order. */
  nodes: string[];
  /** PUBKEY=AMOUNT each. */
  clients: string[];
  treasury: string;
  f?: number;
  name?: string;
}

/**
 * Writes `dir`/genesis.json and group.json for the described nodes (ids in the order given), the clients'
 * balances and the treasury: public keys only, nothing secret is read or written. Refuses (nothing written)
 * a folder that holds a group, a description that is not one (NODE_DESCRIPTION_INVALID), two nodes with one
 * key (NODE_DUPLICATE_KEY) or one address or API URL (NODE_DUPLICATE_ADDRESS), too few nodes for f and
 * models of different label sets (CLI_USAGE, as `group init`).
 */
export function assembleGroup(o: AssembleOptions): GroupFile {
  const n = o.nodes.length;
  if (n === 0) throw usageError("name each node's description with --node FILE");
  const f = o.f ?? Math.floor((n - 1) / 3);
  checkGroupSize(n, f, '--node');
  const dir = resolve(o.dir);
  for (const file of ['genesis.json', 'group.json'])
    if (existsSync(join(dir, file))) throw usageError(`${dir} already holds ${file}; choose an empty folder`);
  const descs = o.nodes.map(readDescription);
  const seen = new Map<string, string>();
  for (const [i, d] of descs.entries()) {
    for (const [field, value, code] of [
      ['publicKey', d.publicKey, 'NODE_DUPLICATE_KEY'],
      ['address', d.address, 'NODE_DUPLICATE_ADDRESS'],
      ['api', d.api, 'NODE_DUPLICATE_ADDRESS'],
    ] as const) {
      const at = `${field} ${value}`;
      const other = seen.get(at);
      if (other !== undefined)
        throw new DropbearError(
          code,
          `${o.nodes[i]} and ${other} give the same ${field} (${value}); each node needs its own`,
        );
      seen.set(at, o.nodes[i]);
    }
  }
  checkLabelSets(
    descs.filter((d) => d.modelName !== STANDIN_MODEL).map((d) => ({ name: d.modelName, labels: d.labels })),
    '--node',
  );
  const balances = o.clients.map((c) => {
    const eq = c.lastIndexOf('=');
    if (eq < 0) throw usageError(`--client must be PUBKEY=AMOUNT, got ${JSON.stringify(c)}`);
    return {
      client: publicKeyArg('--client', c.slice(0, eq)),
      amount: parseWhole(`--client ${c.slice(0, eq)}=`, c.slice(eq + 1), 1),
    };
  });
  const clientKeys = new Set<string>();
  for (const b of balances) {
    const k = toB64u(b.client);
    if (clientKeys.has(k)) throw usageError(`--client ${k} is given twice; give each client once`);
    clientKeys.add(k);
  }
  const genesis: Genesis = buildGenesis({
    name: o.name ?? `group-${n}`,
    f,
    nodes: descs.map((d, i) => ({
      publicKey: fromB64u(d.publicKey, 'publicKey'),
      address: d.address,
      owner: d.owner,
      modelName: d.modelName,
      // The stand-in's digest is its node id's (src/node/standin-backend.ts), known only here.
      modelDigest: Uint8Array.from(Buffer.from(d.modelDigest ?? standInDigest(i), 'hex')),
      fee: d.fee,
    })),
    treasury: publicKeyArg('--treasury', o.treasury),
    balances,
  });
  const problem = genesisProblem(genesis);
  if (problem)
    throw new DropbearError('GENESIS_INVALID', `the assembled genesis cannot run a group: ${problem}`);
  let genesisText: string;
  try {
    genesisText = stableJson(toJson(Genesis, genesis));
  } catch (e) {
    if (e instanceof CodecError)
      throw new DropbearError('GENESIS_INVALID', `the assembled genesis cannot be written: ${e.message}`);
    throw e;
  }
  const group: GroupFile = {
    name: genesis.name,
    groupId: hex(groupIdOf(genesis)),
    genesis: 'genesis.json',
    nodes: descs.map((d, id) => ({ id, api: d.api, p2p: d.address, model: d.modelName })),
  };
  makeOutputDir('--dir', dir);
  const written: string[] = [];
  try {
    for (const [file, text] of [
      ['genesis.json', genesisText],
      ['group.json', stableJson(group)],
    ]) {
      writeOutputFile(join(dir, file), text);
      written.push(file);
    }
  } catch (e) {
    for (const file of written) rmSync(join(dir, file), { force: true });
    throw e;
  }
  return group;
}

export interface NodeConfigOptions {
  group: string;
  key: string;
  data: string;
  out: string;
  home?: string;
  /** Listen on this host (both ports) instead of the hosts the group names (0.0.0.0 behind NAT, say). */
  listenHost?: string;
  /** The API over HTTPS (`api.tls` in the config): its PEM key and certificate, for an https API URL. */
  apiTlsKey?: string;
  apiTlsCert?: string;
}

/**
 * Writes the config of the node whose genesis public key is `key`'s (CONFIG_KEY_MISMATCH if none), with the
 * settings `group init` writes: its ports (and hosts, unless `listenHost`) from the group's address and API
 * URL for it; paths relative to the config's folder. The model must be in `home`'s store (MODEL_NOT_FOUND).
 * With `apiTlsKey` and `apiTlsCert` (both or neither; only for an https API URL, else CLI_USAGE) the config
 * serves the API over HTTPS (`api.tls`), the files checked as the node will check them (node/transport.ts,
 * loadTls: their codes), with a note when the certificate does not name the URL's host.
 */
export async function writeNodeConfig(
  o: NodeConfigOptions,
): Promise<{ id: number; groupId: string; config: Record<string, unknown>; notes: string[] }> {
  const g = loadGroup(o.group);
  // The id the owners compare is the genesis's own, not group.json's copy of it (which anyone may edit).
  const groupId = hex(groupIdOf(g.genesis));
  if (g.file.groupId !== groupId)
    throw new DropbearError(
      'GROUP_INVALID',
      `${join(g.dir, 'group.json')} gives groupId ${g.file.groupId}, but ${join(g.dir, g.file.genesis)} is group ` +
        `${groupId}: the folder mixes two groups; ask the coordinator for it again`,
    );
  const k = readKeyFile(o.key);
  const id = g.genesis.nodes.findIndex((node) =>
    Buffer.from(node.publicKey).equals(Buffer.from(k.publicKey)),
  );
  if (id < 0)
    throw new DropbearError(
      'CONFIG_KEY_MISMATCH',
      `${o.key} holds public key ${toB64u(k.publicKey)}, which is none of the nodes of ${join(g.dir, g.file.genesis)}`,
    );
  if (existsSync(o.out))
    throw usageError(`${o.out} exists; choose another file (a node config is never overwritten)`);
  checkOutputFile('--out', o.out);
  const node = g.genesis.nodes[id];
  const entry = g.file.nodes.find((x) => x.id === id);
  const p2p = hostPort(node.address.replace(/^tcp:\/\//, ''));
  if (!p2p)
    throw new DropbearError('GENESIS_INVALID', `node ${id}'s address ${node.address} is not tcp://HOST:PORT`);
  const apiUrl = entry ? apiOrigin(entry.api) : null;
  if (!entry || !apiUrl)
    throw new DropbearError(
      'GROUP_INVALID',
      `${join(g.dir, 'group.json')} gives node ${id} no http(s) API URL`,
    );
  const api = urlHostPort(apiUrl);
  if ((o.apiTlsKey === undefined) !== (o.apiTlsCert === undefined))
    throw usageError('--api-tls-key and --api-tls-cert go together (the key and its certificate)');
  const tlsFiles =
    o.apiTlsKey !== undefined && o.apiTlsCert !== undefined ? { key: o.apiTlsKey, cert: o.apiTlsCert } : null;
  if (tlsFiles && !apiUrl.startsWith('https:'))
    throw usageError(
      `--api-tls-key/--api-tls-cert serve the API over HTTPS, but ${join(g.dir, 'group.json')} gives node ${id} ` +
        `the API URL ${apiUrl}, where clients speak plain HTTP: describe the node again with an https:// --api`,
    );
  const notes: string[] = [];
  if (tlsFiles) {
    let cert: Buffer;
    try {
      ({ cert } = loadTls({ keyFile: tlsFiles.key, certFile: tlsFiles.cert }, Date.now(), 'clients'));
    } catch (e) {
      if (e instanceof DropbearError) throw new DropbearError(e.code, `--api-tls-*: ${e.message}`, e.details);
      throw e;
    }
    const leaf = new X509Certificate(cert);
    if ((isIP(api.host) ? leaf.checkIP(api.host) : leaf.checkHost(api.host)) === undefined)
      notes.push(
        `the certificate ${tlsFiles.cert} does not name ${api.host} (subject ${leaf.subject.replace(/\n/g, ', ')}; ` +
          `names ${leaf.subjectAltName ?? 'none'}): clients reaching ${apiUrl} will refuse it`,
      );
  }
  const digest = hex(node.modelDigest);
  const standin = node.modelName === STANDIN_MODEL && digest === standInDigest(id);
  // Checked here, not when the node starts: the owner's store must hold the model the genesis names.
  if (!standin) await resolveModel(digest, o.home);
  const rel = (p: string) => relative(dirname(resolve(o.out)), resolve(p)) || '.';
  const config = {
    id,
    genesis: rel(join(g.dir, g.file.genesis)),
    key: rel(o.key),
    data: rel(o.data),
    p2p: { host: o.listenHost ?? p2p.host, port: p2p.port },
    api: {
      host: o.listenHost ?? api.host,
      port: api.port,
      ...(tlsFiles ? { tls: { key: rel(tlsFiles.key), cert: rel(tlsFiles.cert) } } : {}),
    },
    model: standin ? { standin: true } : { name: digest },
    ...(o.home ? { home: resolve(o.home) } : {}),
    log: { level: 'info' },
    durability: GROUP_DURABILITY,
    replica: { ...GROUP_REPLICA },
  };
  writeOutputFile(o.out, stableJson(config));
  // Without api.tls a node serves its API over plain HTTP (a config's "tls" is between nodes): clients
  // dialling https at the port the config listens on would meet plain HTTP.
  if (apiUrl.startsWith('https:') && !tlsFiles)
    notes.push(
      `node ${id}'s API URL is ${apiUrl}, but as written the node serves plain HTTP on ${config.api.host}:${api.port}: ` +
        'give it a certificate for that host (--api-tls-key, --api-tls-cert: "api.tls" in the config), ' +
        `or put a TLS proxy there and set "api" in ${o.out} to the address it forwards to`,
    );
  return { id, groupId, config, notes };
}

/**
 * `describe-node --out`: a new file, or a description written before (describe again after a typo); any
 * other file is refused (CLI_USAGE). `--out node.key` replaced the owner's secret key, the only copy.
 */
function checkDescriptionOut(out: string): void {
  if (!existsSync(out)) return;
  let kind: unknown;
  try {
    kind = (readJsonFile(out) as { kind?: unknown } | null)?.kind;
  } catch {}
  if (kind !== DESCRIPTION_KIND)
    throw usageError(
      `--out ${out} exists and is not a node description (your key file?); it is not overwritten: choose another file`,
    );
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function registerOwners(group: Command): void {
  group
    .command('describe-node')
    .description("an owner's node in public facts (public key, model digest, addresses) for `group assemble`")
    .requiredOption('--key <file>', "the node's key file (`dropbear keygen`); only its public key is written")
    .requiredOption(
      '--model <name|digest>',
      `the model, from the store (or ${STANDIN_MODEL}: the stand-in, tests)`,
    )
    .requiredOption('--p2p <host:port>', 'where the other nodes reach this one')
    .requiredOption('--api <url>', 'where clients reach its API (http://HOST:PORT)')
    .requiredOption('--owner <name>', "the owner's name, as the genesis shows it")
    .requiredOption('--out <file>', 'where to write the description (JSON); never over another kind of file')
    .option('--fee <n>', 'the fee per request this node earns', '1')
    .option('--home <dir>', 'the Dropbear home folder (default: $DROPBEAR_HOME, else ~/.dropbear)', parseHome)
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear keygen --out my-node.key\n' +
        '  npx dropbear group describe-node --key my-node.key --model mobilenetv2-12-int8 \\\n' +
        '    --p2p node.example.org:7100 --api http://node.example.org:8100 --owner alice --out alice.json\n\n' +
        'Exit status: 0 written, 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument).\n',
    )
    .action(
      async (o: {
        key: string;
        model: string;
        p2p: string;
        api: string;
        owner: string;
        out: string;
        fee: string;
        home?: string;
      }) => {
        checkOutputFile('--out', o.out);
        checkDescriptionOut(o.out);
        const d = await describeNode({ ...o, fee: parseWhole('--fee', o.fee, 0) });
        writeOutputFile(o.out, stableJson(d));
        process.stdout.write(
          `${o.out}: node ${d.publicKey} (${d.owner}, ${d.modelName}) at ${d.address}, api ${d.api}\n`,
        );
        // Fine for a group on one machine (tests, a trial), a mistake for owners on separate machines.
        for (const [opt, host] of [
          ['--p2p', hostPort(o.p2p)?.host ?? ''],
          ['--api', urlHostPort(d.api).host],
        ])
          if (loopbackHost(host))
            process.stderr.write(
              `note: ${opt} names ${host}, a loopback address: only this machine reaches it (a group on one machine); ` +
                'for owners on other machines give the address they reach this node at\n',
            );
      },
    );
  group
    .command('assemble')
    .description("a group's genesis and group.json from its owners' node descriptions and public keys only")
    .requiredOption('--dir <dir>', 'an empty folder for the group (genesis.json, group.json)')
    .option(
      '--node <file>',
      'a node description (`group describe-node`); once per node, in node id order',
      collect,
      [],
    )
    .option(
      '--client <pubkey=amount>',
      "a client account's public key and balance; once per client",
      collect,
      [],
    )
    .requiredOption('--treasury <pubkey>', "the treasury's public key (`dropbear keygen`)")
    .option('--f <f>', 'faults tolerated (default: the most n allows)')
    .option('--name <name>', 'group name (default: group-N)')
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear group assemble --dir group --node alice.json --node bob.json --node carol.json \\\n' +
        '    --node dave.json --client <client public key>=1000000 --treasury <treasury public key>\n\n' +
        'Give every owner the folder (genesis.json, group.json): each writes their config with\n' +
        '`dropbear group node-config`. Nothing secret is read or written.\n' +
        'Exit status: 0 written, 2 an error (one line on stderr: error [CODE]: message; NODE_DESCRIPTION_INVALID,\n' +
        'NODE_DUPLICATE_KEY, NODE_DUPLICATE_ADDRESS; CLI_USAGE for a bad option or argument; nothing is written).\n',
    )
    .action(
      (o: { dir: string; node: string[]; client: string[]; treasury: string; f?: string; name?: string }) => {
        const g = assembleGroup({
          dir: o.dir,
          nodes: o.node,
          clients: o.client,
          treasury: o.treasury,
          f: o.f === undefined ? undefined : parseWhole('--f', o.f, 0),
          name: o.name,
        });
        process.stdout.write(`group ${g.name} in ${resolve(o.dir)}\ngroup id ${g.groupId}\n`);
        for (const n of g.nodes)
          process.stdout.write(`  node ${n.id}: ${n.model.padEnd(28)} api ${n.api}  p2p ${n.p2p}\n`);
        process.stdout.write(
          'each owner: npx dropbear group node-config --group DIR --key KEY --data DIR --out node.json\n' +
            '(it prints the group id: the owners compare it among themselves, all 64 hex digits)\n',
        );
      },
    );
  group
    .command('id')
    .description(
      "a genesis's group id (SHA-256 of the canonical genesis), to compare with the other parties'",
    )
    .argument('<genesis>', 'a genesis.json')
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear group id group/genesis.json\n\n' +
        'Owners and clients compare it, all 64 hex digits, over a channel other than the one the genesis came by:\n' +
        'another id is another group. Exit status: 0 printed, 2 an error (GENESIS_INVALID, FILE_NOT_FOUND, …).\n',
    )
    .action((path: string) => {
      process.stdout.write(`${hex(groupIdOf(readGenesis(path)))}\n`);
    });
  group
    .command('node-config')
    .description("an owner's node config for an assembled group, found by their key's public key")
    .requiredOption('--group <dir>', 'the group folder (genesis.json, group.json from `group assemble`)')
    .requiredOption('--key <file>', "this node's key file (its public key is in the genesis)")
    .requiredOption('--data <dir>', "the node's data folder (its ledger)")
    .requiredOption('--out <file>', 'where to write the config; refuses to overwrite')
    .option('--home <dir>', 'the Dropbear home folder (default: $DROPBEAR_HOME, else ~/.dropbear)', parseHome)
    .option('--listen-host <host>', 'listen here (e.g. 0.0.0.0) instead of on the hosts the group names')
    .option('--api-tls-key <file>', 'serve the API over HTTPS (an https API URL) with this PEM key (0600)…')
    .option('--api-tls-cert <file>', "…and this PEM certificate (for the API URL's host; chain after it)")
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear group node-config --group group --key my-node.key --data data --out node.json\n' +
        '  npx dropbear node --config node.json\n\n' +
        "It prints the group id of the genesis: compare it with the other owners' over a channel\n" +
        "other than the coordinator's (another id is another genesis).\n" +
        'Exit status: 0 written, 2 an error (one line on stderr: error [CODE]: message; CONFIG_KEY_MISMATCH when\n' +
        'the key is none of the nodes; MODEL_NOT_FOUND when the store lacks the model; GROUP_INVALID when\n' +
        "group.json's groupId is not its genesis's; CLI_USAGE for a bad option).\n",
    )
    .action(async (o: NodeConfigOptions) => {
      const { id, groupId, notes } = await writeNodeConfig(o);
      process.stdout.write(
        `node ${id}: ${o.out}\n` +
          notes.map((n) => `note: ${n}\n`).join('') +
          `group ${groupId}\n` +
          "compare this group id with every other owner's, over a channel other than the coordinator's:\n" +
          'another id is another genesis (a different node list, order, balances or name)\n' +
          `start it: npx dropbear node --config ${o.out}\n`,
      );
    });
}
