/**
 * A group of separate owners (src/cli/owners.ts), as four owners on four machines would form it: each owner,
 * in a folder of their own, makes a key (`keygen`) and describes their node in public facts (`group
 * describe-node`, the stand-in model); a coordinator, in another folder, assembles the genesis from the four
 * descriptions and the client's and treasury's public keys (`group assemble`); each owner writes their node
 * config against it with their own key (`group node-config`); four real `dropbear node` processes (TCP
 * between them) serve it, and a client holding a key made apart gets a certificate that verifies against the
 * assembled genesis. No folder ever holds another party's secret key. Then, in this process, the refusals
 * and a real model (from a store of its own) described and configured.
 */
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyCertificate } from '../../src/certificate/index.ts';
import {
  freePorts,
  type GroupProcesses,
  type LoadedGroup,
  loadGroup,
  startGroup,
} from '../../src/cli/group.ts';
import { readGenesis } from '../../src/cli/io.ts';
import { assembleGroup, describeNode, writeNodeConfig } from '../../src/cli/owners.ts';
import { DropbearClient } from '../../src/client/index.ts';
import { STANDIN_MODEL, standInDigest, standInInput } from '../../src/node/standin-backend.ts';
import { DropbearError, groupIdOf, hex, keyPairFromSeed, toB64u } from '../../src/protocol/index.ts';
import { readKeyFile, writeKeyFile } from '../../src/protocol/keyfile.ts';
import { type Ran, runCliInProcess } from '../cli/run-cli.ts';
import { MODELS_DIR } from '../shared.ts';

/** mobilenet_v1_0.25_128_quant's SHA-256 (test/../shared/models). */
const DIGEST = 'fd4bc8894918a599f11f6e204e6e7b9948b60109128ee7c8dfc64ea75bbe093a';
const root = mkdtempSync(join(tmpdir(), 'own-'));
const OWNERS = ['alice', 'bob', 'carol', 'dave'];
const ownerDir = (i: number) => join(root, OWNERS[i]);
const coordinator = join(root, 'coordinator');
const clientDir = join(root, 'client');
const treasuryDir = join(root, 'treasury');
/** Every secret seed made in this test, by the folder that made it (and alone may hold it). */
const seeds = new Map<string, string>();
let procs: GroupProcesses | undefined;
const log: string[] = [];

async function cli(...args: string[]): Promise<Ran> {
  const r = await runCliInProcess(args);
  if (r.code !== 0) throw new Error(`dropbear ${args.join(' ')}: ${r.code} ${r.stderr}`);
  return r;
}

/** `keygen --out dir/file`: returns the public key it printed, remembers the seed as dir's. */
async function keygen(dir: string, file: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const r = await cli('keygen', '--out', join(dir, file));
  seeds.set(dir, (JSON.parse(readFileSync(join(dir, file), 'utf8')) as { seed: string }).seed);
  return r.stdout.trim();
}

/** Every file under `dir`, its bytes. */
function filesUnder(dir: string): { path: string; bytes: Buffer }[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .map((path) => ({ path, bytes: readFileSync(path) }));
}

/** No file in any folder holds a seed made in another folder (as hex or as raw bytes). */
function expectNoForeignSecrets(): void {
  // The search finds a seed where it is: each owner's own key file holds theirs.
  for (const [i] of OWNERS.entries()) {
    const own = seeds.get(ownerDir(i)) as string;
    expect(filesUnder(ownerDir(i)).filter((f) => f.bytes.includes(own))).toHaveLength(1);
  }
  for (const dir of [...OWNERS.map((_, i) => ownerDir(i)), coordinator, clientDir]) {
    for (const { path, bytes } of filesUnder(dir))
      for (const [owner, seed] of seeds) {
        if (owner === dir) continue;
        expect(bytes.includes(seed), `${path} holds ${owner}'s secret key`).toBe(false);
        expect(bytes.includes(Buffer.from(seed, 'hex')), `${path} holds ${owner}'s secret key`).toBe(false);
      }
  }
}

let clientPub: string;
let ports: number[];
let treasuryPub: string;
const descriptions: string[] = [];

beforeAll(async () => {
  ports = await freePorts(8);
  for (const [i, owner] of OWNERS.entries()) {
    const dir = ownerDir(i);
    const pub = await keygen(dir, 'node.key');
    const described = await cli(
      'group',
      'describe-node',
      '--key',
      join(dir, 'node.key'),
      '--model',
      STANDIN_MODEL,
      '--p2p',
      `127.0.0.1:${ports[2 * i]}`,
      '--api',
      `http://127.0.0.1:${ports[2 * i + 1]}`,
      '--owner',
      owner,
      '--out',
      join(dir, 'me.json'),
    );
    // Loopback addresses (this test's one machine) are taken, with a note for owners on other machines.
    expect(described.stderr).toContain('note: --p2p names 127.0.0.1, a loopback address: only this machine');
    expect(described.stderr).toContain('note: --api names 127.0.0.1, a loopback address');
    const d = JSON.parse(readFileSync(join(dir, 'me.json'), 'utf8'));
    expect(d).toEqual({
      kind: 'dropbear-node-description',
      publicKey: pub,
      owner,
      modelName: STANDIN_MODEL,
      modelDigest: null,
      labels: 'none',
      address: `tcp://127.0.0.1:${ports[2 * i]}`,
      api: `http://127.0.0.1:${ports[2 * i + 1]}`,
      fee: 1,
    });
    // The description travels to the coordinator.
    mkdirSync(coordinator, { recursive: true });
    copyFileSync(join(dir, 'me.json'), join(coordinator, `${owner}.json`));
    descriptions.push(join(coordinator, `${owner}.json`));
  }
  clientPub = await keygen(clientDir, 'client.key');
  treasuryPub = await keygen(treasuryDir, 'treasury.key');
}, 60_000);

afterAll(async () => {
  await procs?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe('a group of separate owners', () => {
  it('is assembled from public facts, each owner configures their own node, and it certifies', async () => {
    const groupDir = join(coordinator, 'group');
    const assembledOut = await cli(
      'group',
      'assemble',
      '--dir',
      groupDir,
      ...descriptions.flatMap((d) => ['--node', d]),
      '--client',
      `${clientPub}=1000000`,
      '--treasury',
      treasuryPub,
      '--name',
      'owners',
    );
    const genesis = readGenesis(join(groupDir, 'genesis.json'));
    // The whole id, for the coordinator to announce: 16 hex digits (64 bits) a coordinator could match
    // with a second genesis by a birthday search (~2^32 hashes).
    expect(assembledOut.stdout).toContain(hex(groupIdOf(genesis)));
    expect(genesis.nodes.map((n) => n.owner)).toEqual(OWNERS);
    expect(genesis.nodes.map((n) => hex(n.modelDigest))).toEqual(OWNERS.map((_, i) => standInDigest(i)));
    expect(genesis.balances.map((b) => toB64u(b.client))).toEqual([clientPub]);
    expect(toB64u(genesis.treasury)).toBe(treasuryPub);
    expect(readdirSync(groupDir).sort()).toEqual(['genesis.json', 'group.json']);

    // Each owner gets the group folder and writes their config; the node id is found by their key.
    for (const [i] of OWNERS.entries()) {
      const dir = ownerDir(i);
      mkdirSync(join(dir, 'group'));
      for (const f of ['genesis.json', 'group.json']) copyFileSync(join(groupDir, f), join(dir, 'group', f));
      const r = await cli(
        'group',
        'node-config',
        '--group',
        join(dir, 'group'),
        '--key',
        join(dir, 'node.key'),
        '--data',
        join(dir, 'data'),
        '--out',
        join(dir, 'node.json'),
      );
      expect(r.stdout).toContain(`node ${i}:`);
      const config = JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8'));
      expect(config).toMatchObject({
        id: i,
        key: 'node.key',
        genesis: 'group/genesis.json',
        data: 'data',
        model: { standin: true },
        // Listening where the owner's description says peers and clients reach the node.
        p2p: { host: '127.0.0.1', port: ports[2 * i] },
        api: { host: '127.0.0.1', port: ports[2 * i + 1] },
      });
    }
    expectNoForeignSecrets();

    // Four real node processes, each started on its owner's config alone (`dropbear node --config`).
    const assembled = loadGroup(groupDir);
    const g: LoadedGroup = {
      ...assembled,
      dir: root,
      file: {
        ...assembled.file,
        nodes: assembled.file.nodes.map((n, i) => ({ ...n, config: join(OWNERS[i], 'node.json') })),
      },
    };
    procs = startGroup(g, (l) => log.push(l));
    await procs.ready(60_000);

    // The client, with its own key and the group folder, gets a certificate of the assembled group.
    const client = new DropbearClient({
      genesis: assembled.genesis,
      nodes: assembled.file.nodes,
      key: readKeyFile(join(clientDir, 'client.key')),
    });
    const r = await client.infer(standInInput(7));
    expect(r.decision.kind).toBe('label');
    const v = verifyCertificate(r.certificate, readGenesis(join(groupDir, 'genesis.json')));
    expect(v.ok, JSON.stringify(v)).toBe(true);
    // And `dropbear infer --key`, from the client's own copy of the group folder (it names no client key).
    mkdirSync(join(clientDir, 'group'));
    for (const f of ['genesis.json', 'group.json'])
      copyFileSync(join(groupDir, f), join(clientDir, 'group', f));
    writeFileSync(join(clientDir, 'input.dbt'), standInInput(8));
    const args = ['infer', '--group', join(clientDir, 'group'), '--out', join(clientDir, 'certs')];
    const inferred = await cli(...args, '--key', join(clientDir, 'client.key'), join(clientDir, 'input.dbt'));
    expect(inferred.stdout).toContain('(verified against the genesis)');
    const certs = readdirSync(join(clientDir, 'certs'));
    expect(certs).toHaveLength(1);
    const verified = await cli(
      'verify',
      '--genesis',
      join(groupDir, 'genesis.json'),
      join(clientDir, 'certs', certs[0]),
    );
    expect(verified.stdout).toContain('1 certificates valid');
    await procs.stop();
    expectNoForeignSecrets();
  }, 90_000);
});

describe('refusals', () => {
  const scratch = (name: string) => {
    const d = join(root, 'refuse', name);
    mkdirSync(d, { recursive: true });
    return d;
  };
  /** `group assemble` into a fresh folder with the four descriptions (or `nodes`), refused with `code`. */
  async function assembleRefused(code: string, nodes: string[], ...extra: string[]): Promise<string> {
    const dir = join(scratch('assemble'), String(Math.random()).slice(2));
    const r = await runCliInProcess([
      'group',
      'assemble',
      '--dir',
      dir,
      ...nodes.flatMap((d) => ['--node', d]),
      '--treasury',
      treasuryPub,
      ...extra,
    ]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`^error \\[${code}\\]: `));
    // Nothing written.
    expect(() => readdirSync(dir)).toThrow();
    return r.stderr;
  }
  /** Node 3's description changed by `change`, as a file. */
  const variant = (name: string, change: (d: Record<string, unknown>) => void) => {
    const d = JSON.parse(readFileSync(descriptions[3], 'utf8'));
    change(d);
    return textFile(name, JSON.stringify(d));
  };
  const textFile = (name: string, text: string) => {
    const file = join(scratch('desc'), `${name}.json`);
    writeFileSync(file, text);
    return file;
  };
  const otherKey = toB64u(keyPairFromSeed(new Uint8Array(32).fill(9)).publicKey);

  it('group assemble', async () => {
    const [a, b, c] = descriptions;
    expect(await assembleRefused('NODE_DUPLICATE_KEY', [a, b, c, a])).toContain('same publicKey');
    const sameAddress = variant('same-address', (d) => {
      d.publicKey = otherKey;
      d.address = JSON.parse(readFileSync(a, 'utf8')).address;
    });
    expect(await assembleRefused('NODE_DUPLICATE_ADDRESS', [a, b, c, sameAddress])).toContain('same address');
    expect(await assembleRefused('CLI_USAGE', descriptions, '--f', '2')).toContain('tolerate at most f = 1');
    expect(await assembleRefused('CLI_USAGE', [a, b], '--f', '1')).toContain(
      'n = 2 nodes tolerate at most f = 0',
    );
    const mnist = (name: string, labels: string) =>
      variant(name, (d) => {
        d.modelName = name;
        d.modelDigest = 'ab'.repeat(32);
        d.labels = labels;
        d.publicKey = otherKey;
      });
    // Two label sets among the real models (the stand-ins have none of their own).
    const imagenetDesc = mnist('imagenet-model', 'imagenet1k');
    const mnistDesc = JSON.parse(readFileSync(mnist('mnist-model', 'mnist10'), 'utf8'));
    mnistDesc.publicKey = toB64u(keyPairFromSeed(new Uint8Array(32).fill(8)).publicKey);
    mnistDesc.address = 'tcp://127.0.0.1:1';
    mnistDesc.api = 'http://127.0.0.1:2';
    const mnistFile = join(scratch('desc'), 'mnist2.json');
    writeFileSync(mnistFile, JSON.stringify(mnistDesc));
    expect(await assembleRefused('CLI_USAGE', [a, b, imagenetDesc, mnistFile])).toContain('mixes label sets');
    expect(await assembleRefused('FILE_BAD_JSON', [a, b, c, textFile('not-json', '{"kind": ')])).toBeTruthy();
    expect(
      await assembleRefused('NODE_DESCRIPTION_INVALID', [
        a,
        b,
        c,
        textFile('a-key', '{"kind":"ed25519","seed":"00"}'),
      ]),
    ).toContain('"kind" must be');
    expect(
      await assembleRefused('NODE_DESCRIPTION_INVALID', [
        a,
        b,
        c,
        variant('no-api', (d) => {
          delete d.api;
        }),
      ]),
    ).toContain('"api" is missing');
    expect(
      await assembleRefused('NODE_DESCRIPTION_INVALID', [
        a,
        b,
        c,
        variant('digest', (d) => {
          d.modelName = 'x';
        }),
      ]),
    ).toContain('"modelDigest" may be null only for the stand-in');
    expect(await assembleRefused('CLI_USAGE', descriptions, '--client', 'nokey=5')).toContain(
      '--client must be a public key',
    );
    expect(await assembleRefused('CLI_USAGE', descriptions, '--client', `${clientPub}=0`)).toContain(
      '--client',
    );
    expect(
      await assembleRefused(
        'CLI_USAGE',
        descriptions,
        '--client',
        `${clientPub}=1`,
        '--client',
        `${clientPub}=2`,
      ),
    ).toContain('given twice');
  });

  it('group node-config, group start, infer and describe-node', async () => {
    const groupDir = join(coordinator, 'group');
    // A key that is none of the group's nodes.
    const r = await runCliInProcess([
      'group',
      'node-config',
      '--group',
      groupDir,
      '--key',
      join(clientDir, 'client.key'),
      '--data',
      join(scratch('nc'), 'data'),
      '--out',
      join(scratch('nc'), 'node.json'),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error \[CONFIG_KEY_MISMATCH\]: .*client\.key holds public key/);
    // An existing config is not overwritten.
    const again = await runCliInProcess([
      'group',
      'node-config',
      '--group',
      groupDir,
      '--key',
      join(ownerDir(0), 'node.key'),
      '--data',
      join(ownerDir(0), 'data'),
      '--out',
      join(ownerDir(0), 'node.json'),
    ]);
    expect(again.stderr).toMatch(/^error \[CLI_USAGE\]: .*node\.json exists/);
    // The coordinator's folder holds no configs and no client key.
    expect(() => startGroup(loadGroup(groupDir))).toThrow(
      expect.objectContaining({ code: 'GROUP_NO_CONFIGS' }),
    );
    const infer = await runCliInProcess(['infer', '--group', groupDir, join(groupDir, 'genesis.json')]);
    expect(infer.stderr).toMatch(/^error \[GROUP_NO_CLIENT_KEY\]: .*--key FILE/);
    expect(() => loadGroup(groupDir).clientKey()).toThrow(DropbearError);
    for (const [flag, value, why] of [
      ['--p2p', 'nohost', '--p2p must be HOST:PORT'],
      ['--p2p', '127.0.0.1:70000', '--p2p must be HOST:PORT'],
      ['--api', 'http://127.0.0.1:1/v1', '--api must be an http(s) URL'],
      ['--model', 'no-such-model', 'no model no-such-model'],
    ]) {
      const args: Record<string, string> = {
        '--key': join(ownerDir(0), 'node.key'),
        '--model': STANDIN_MODEL,
        '--p2p': '127.0.0.1:1',
        '--api': 'http://127.0.0.1:2',
        '--owner': 'x',
        '--out': join(scratch('dn'), 'd.json'),
        '--home': join(scratch('dn'), 'home'),
        [flag]: value,
      };
      const d = await runCliInProcess(['group', 'describe-node', ...Object.entries(args).flat()]);
      expect(d.code).toBe(2);
      expect(d.stderr).toContain(why);
    }
  });

  it("node-config prints the id of the genesis it was given, for the owners to compare; a group.json whose groupId is not its genesis's is refused", async () => {
    // Two coordinators (or one handing out two genesis files) with the same descriptions in another order:
    // two groups. Each owner's node-config says which one they got.
    const [a, b, c, d] = descriptions;
    const ids: string[] = [];
    for (const [name, order] of [
      ['first', [a, b, c, d]],
      ['second', [b, a, c, d]],
    ] as const) {
      const dir = join(scratch('gid'), name);
      assembleGroup({ dir, nodes: [...order], clients: [], treasury: treasuryPub });
      const r = await cli(
        'group',
        'node-config',
        '--group',
        dir,
        '--key',
        join(ownerDir(0), 'node.key'),
        '--data',
        join(scratch('gid'), 'data'),
        '--out',
        join(scratch('gid'), `${name}.json`),
      );
      const id = hex(groupIdOf(readGenesis(join(dir, 'genesis.json'))));
      expect(r.stdout).toContain(`group ${id}`);
      expect(r.stdout).toContain('compare');
      // A client (or anyone) given the genesis reads the same id from it, for the same comparison.
      const g = await cli('group', 'id', join(dir, 'genesis.json'));
      expect(g.stdout).toBe(`${id}\n`);
      ids.push(id);
    }
    expect(ids[0]).not.toBe(ids[1]);
    // An https API URL: the node serves plain HTTP only, so the config listening there cannot answer it;
    // node-config says so (a TLS proxy there, the node's api elsewhere).
    const httpsDir = join(scratch('gid'), 'https');
    const httpsDesc = join(scratch('gid'), 'https-a.json');
    writeFileSync(
      httpsDesc,
      JSON.stringify({ ...JSON.parse(readFileSync(a, 'utf8')), api: 'https://127.0.0.1:8443' }),
    );
    assembleGroup({ dir: httpsDir, nodes: [httpsDesc, b, c, d], clients: [], treasury: treasuryPub });
    const r = await cli(
      'group',
      'node-config',
      '--group',
      httpsDir,
      '--key',
      join(ownerDir(0), 'node.key'),
      '--data',
      join(scratch('gid'), 'data'),
      '--out',
      join(scratch('gid'), 'https.json'),
    );
    expect(r.stdout).toContain('https://127.0.0.1:8443');
    expect(r.stdout).toMatch(/plain HTTP.*TLS proxy/s);
    // group.json says the first group's id, the genesis is the second's: the id an owner would compare
    // is not the genesis they run.
    const mixed = join(scratch('gid'), 'mixed');
    mkdirSync(mixed);
    copyFileSync(join(scratch('gid'), 'second', 'genesis.json'), join(mixed, 'genesis.json'));
    const gj = JSON.parse(readFileSync(join(scratch('gid'), 'second', 'group.json'), 'utf8'));
    writeFileSync(join(mixed, 'group.json'), JSON.stringify({ ...gj, groupId: ids[0] }));
    await expect(
      writeNodeConfig({
        group: mixed,
        key: join(ownerDir(0), 'node.key'),
        data: join(mixed, 'data'),
        out: join(mixed, 'node.json'),
      }),
    ).rejects.toMatchObject({ code: 'GROUP_INVALID', message: expect.stringContaining(ids[1]) });
  });

  it("describe-node --out never overwrites the owner's key file (or any file but a description)", async () => {
    const dir = scratch('out');
    await keygen(dir, 'node.key');
    const keyText = readFileSync(join(dir, 'node.key'), 'utf8');
    const describe = (out: string) =>
      runCliInProcess([
        'group',
        'describe-node',
        '--key',
        join(dir, 'node.key'),
        '--model',
        STANDIN_MODEL,
        '--p2p',
        '127.0.0.1:1',
        '--api',
        'http://127.0.0.1:2',
        '--owner',
        'x',
        '--out',
        out,
      ]);
    // `--out node.key`, a slip: the secret key was replaced by the description, and lost.
    const r = await describe(join(dir, 'node.key'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error \[CLI_USAGE\]: .*node\.key exists and is not a node description/);
    expect(readFileSync(join(dir, 'node.key'), 'utf8')).toBe(keyText);
    // A description written before is replaced (describe again after a typo).
    expect((await describe(join(dir, 'me.json'))).code).toBe(0);
    expect((await describe(join(dir, 'me.json'))).code).toBe(0);
    seeds.delete(dir);
  });

  it('describe-node refuses what a peer cannot dial or the genesis cannot hold; assemble names the file', async () => {
    const base = {
      key: join(ownerDir(0), 'node.key'),
      model: STANDIN_MODEL,
      p2p: '127.0.0.1:1',
      api: 'http://127.0.0.1:2',
      owner: 'x',
    };
    for (const [change, why] of [
      [{ p2p: '0.0.0.0:7100' }, '--p2p'],
      [{ p2p: '[::]:7100' }, '--p2p'],
      [{ api: 'http://0.0.0.0:8100' }, '--api'],
      [{ api: 'http://[::]:8100' }, '--api'],
      [{ owner: 'a'.repeat(257) }, '--owner'],
      // One port for both: the node cannot listen twice on it (LISTEN_FAILED only when it starts).
      [{ p2p: '127.0.0.1:7100', api: 'http://127.0.0.1:7100' }, 'the same port'],
      [{ p2p: '[::1]:7100', api: 'http://[::1]:7100' }, 'the same port'],
    ] as const)
      await expect(describeNode({ ...base, ...change })).rejects.toMatchObject({
        code: 'CLI_USAGE',
        message: expect.stringContaining(why),
      });
    // The same written by hand: refused by assemble, naming the file and field.
    const [a, b, c] = descriptions;
    expect(
      await assembleRefused('NODE_DESCRIPTION_INVALID', [
        a,
        b,
        c,
        variant('any-address', (d) => {
          d.address = 'tcp://0.0.0.0:7100';
        }),
      ]),
    ).toContain('"address"');
    expect(
      await assembleRefused('NODE_DESCRIPTION_INVALID', [
        a,
        b,
        c,
        variant('long-owner', (d) => {
          d.owner = 'a'.repeat(300);
        }),
      ]),
    ).toContain('"owner"');
  });

  it("with a real model: describe-node reads it from the owner's store, node-config needs it there", async () => {
    const home = join(scratch('real'), 'home');
    const model = 'mobilenet_v1_0.25_128_quant';
    await cli('models', 'import', '--home', home, join(MODELS_DIR, `${model}.onnx`));
    const descs: string[] = [];
    for (const i of [0, 1, 2, 3]) {
      const dir = join(scratch('real'), `o${i}`);
      mkdirSync(dir);
      writeKeyFile(join(dir, 'node.key'), keyPairFromSeed(new Uint8Array(32).fill(20 + i)));
      descs.push(join(dir, 'me.json'));
      const d = await describeNode({
        key: join(dir, 'node.key'),
        // By name, and by a digest prefix, as `--model NAME|DIGEST` takes it.
        model: i === 0 ? model : DIGEST.slice(0, 12),
        home,
        p2p: `127.0.0.1:${7000 + i}`,
        api: `http://127.0.0.1:${8000 + i}`,
        owner: `o${i}`,
      });
      expect(d).toMatchObject({ modelName: model, modelDigest: DIGEST, labels: 'imagenet1k' });
      writeFileSync(descs[i], JSON.stringify(d));
    }
    const group = join(scratch('real'), 'group');
    assembleGroup({ dir: group, nodes: descs, clients: [], treasury: treasuryPub });
    const key = join(scratch('real'), 'o1', 'node.key');
    const config = (home?: string, listenHost?: string) =>
      writeNodeConfig({
        group,
        key,
        data: join(scratch('real'), 'data'),
        out: join(scratch('real'), `n-${Math.random()}.json`),
        home,
        listenHost,
      });
    // The owner's store without the model: refused now, not when the node starts.
    await expect(config(join(scratch('real'), 'empty-home'))).rejects.toMatchObject({
      code: 'MODEL_NOT_FOUND',
    });
    const written = await config(home);
    expect(written).toMatchObject({
      id: 1,
      config: {
        model: { name: DIGEST },
        home,
        p2p: { host: '127.0.0.1', port: 7001 },
        api: { host: '127.0.0.1', port: 8001 },
      },
    });
    // model-update without --key on an assembled folder (no keys/ in it): said so, naming --key; it was
    // KEY_FILE_UNREADABLE for <group>/keys/node-1.json, a file such a group never has.
    const mu = await runCliInProcess([
      'model-update',
      '--group',
      group,
      '--node',
      '1',
      '--model',
      model,
      '--home',
      home,
    ]);
    expect(mu.code).toBe(2);
    expect(mu.stderr).toMatch(/^error \[CLI_USAGE\]: .*--key FILE/);
    // --listen-host binds both elsewhere, on the same ports.
    expect((await config(home, '0.0.0.0')).config).toMatchObject({
      p2p: { host: '0.0.0.0', port: 7001 },
      api: { host: '0.0.0.0', port: 8001 },
    });
  });
});
