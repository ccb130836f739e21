/**
 * End to end: a 4-node group as four real processes on loopback (TCP between nodes, HTTP for clients,
 * SQLite ledgers, real ONNX models), driven by the SDK and by plain fetch. Node 3 is configured to lie.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STAGES, stageRows } from '../../bench/lib/stages.ts';
import { verifyCertificate } from '../../src/certificate/index.ts';
import { GROUP_REPLICA, initGroup, type LoadedGroup, loadGroup } from '../../src/cli/group.ts';
import { groupStatus } from '../../src/cli/status.ts';
import { DropbearClient, type InferResult } from '../../src/client/index.ts';
import {
  Certificate,
  encode,
  fromJson,
  groupIdOf,
  hex,
  keyPairFromSeed,
  type Request,
  Request as RequestCodec,
  sha256,
  signDeposit,
  signRequest,
  signTagged,
  TAGS,
  Tx,
  toB64u,
  toJson,
} from '../../src/protocol/index.ts';
import { readKeyFile, writeKeyFile } from '../../src/protocol/keyfile.ts';
import { runCliInProcess } from '../cli/run-cli.ts';
import { MODELS_DIR, VAL_DIR } from '../shared.ts';

const MODELS = [
  'mobilenet_v1_0.25_128_quant',
  'mobilenet_v1_0.5_160_quant',
  'tf2_mobilenet_v2_1.0_224_ptq',
  'mobilenetv2-12-int8',
];
const LIAR = 3;
const UPDATE_TO = 'mobilenet_v1_0.75_192_quant';
const VAL = VAL_DIR;
const images = readdirSync(VAL)
  .sort()
  .slice(0, 80)
  .map((f) => readFileSync(join(VAL, f)));
const BIN = 'bin/dropbear.mjs';

const root = mkdtempSync(join(tmpdir(), 'dropbear-e2e-'));
const home = join(root, 'home');
const dir = join(root, 'group');
let g: LoadedGroup;
const procs = new Map<number, ChildProcess>();
const logs = new Map<number, string[]>();

function startNode(id: number, config = join(dir, `node-${id}.json`)): ChildProcess {
  const child = spawn(process.execPath, [BIN, 'node', '--config', config], {
    // With an IPC channel, as `group start` gives it: a node stops when this process ends, even killed
    // (without it, nodes of an interrupted run kept serving, orphaned).
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    // Every node also writes its step trace (src/node/steptrace.ts), read by a test below.
    env: { ...process.env, DROPBEAR_HOME: home, DROPBEAR_TRACE_STEPS: join(root, 'trace') },
  });
  const lines: string[] = [];
  logs.set(id, lines);
  child.stdout?.on('data', (d) => lines.push(String(d)));
  child.stderr?.on('data', (d) => lines.push(String(d)));
  procs.set(id, child);
  return child;
}

async function ready(id: number, timeoutMs = 60_000): Promise<void> {
  const api = g.file.nodes[id].api;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(`${api}/healthz`, { signal: AbortSignal.timeout(1000) })).status === 200) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`node ${id} not up: ${logs.get(id)?.join('')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function kill9(id: number): Promise<void> {
  const c = procs.get(id)!;
  return new Promise((res) => {
    if (c.exitCode !== null || c.signalCode !== null) return res();
    c.once('exit', () => res());
    c.kill('SIGKILL');
  });
}

interface Status {
  view: number;
  lastExecuted: number;
  primary: number;
  durability: string;
  signFloorView: number | null;
  expiredUnordered: number;
}

async function status(id: number): Promise<Status> {
  return (await fetch(`${g.file.nodes[id].api}/v1/status`)).json() as Promise<Status>;
}

/** Node `id`'s signed log (its ledger's consensus_log), read while the node may be running. */
function signedLog(id: number): { id: number; kind: string; view: number | null }[] {
  const db = new Database(join(dir, 'data', `node-${id}`, 'ledger.sqlite'), { readonly: true });
  try {
    return db.prepare('SELECT id, kind, view FROM consensus_log ORDER BY id').all() as {
      id: number;
      kind: string;
      view: number | null;
    }[];
  } finally {
    db.close();
  }
}

function client(nodes = [0, 1, 2, 3]): DropbearClient {
  return new DropbearClient({
    genesis: g.genesis,
    nodes: g.file.nodes.filter((n) => nodes.includes(n.id)).map((n) => ({ id: n.id, api: n.api })),
    key: g.clientKey(),
    timeoutMs: 60_000,
  });
}

/** The liar never decides: every certified label is one that an honest node voted for. */
function checkHonestDecision(r: InferResult): void {
  expect(verifyCertificate(r.certificate, g.genesis).ok).toBe(true);
  if (r.decision.kind !== 'label') return;
  const honest = r.votes.filter((v) => v.node !== LIAR).map((v) => v.label);
  expect(honest).toContain(r.decision.label);
  const lie = r.votes.find((v) => v.node === LIAR);
  if (lie && lie.label !== null) expect(honest).not.toContain(lie.label);
}

beforeAll(async () => {
  execFileSync(process.execPath, [BIN, 'models', 'import', MODELS_DIR, '--home', home]);
  await initGroup({
    dir,
    nodes: 4,
    models: MODELS,
    home,
    name: 'e2e',
    nodeConfig: {
      log: { level: 'warn' },
      replica: { ...GROUP_REPLICA, viewChangeTimeoutMs: 1000 },
      api_limits: { bodyLimitBytes: 1 << 20 },
    },
  });
  // Node 1 keeps a second model loaded, for the model update test.
  const c1 = JSON.parse(readFileSync(join(dir, 'node-1.json'), 'utf8'));
  writeFileSync(join(dir, 'node-1.json'), JSON.stringify({ ...c1, extraModels: [{ name: UPDATE_TO }] }));
  // Node 2 runs with relaxed durability: no fsync before it signs (docs/ledger.md).
  const c2 = JSON.parse(readFileSync(join(dir, 'node-2.json'), 'utf8'));
  writeFileSync(join(dir, 'node-2.json'), JSON.stringify({ ...c2, durability: 'relaxed' }));
  // Node 3 lies about every answer.
  const c3 = JSON.parse(readFileSync(join(dir, 'node-3.json'), 'utf8'));
  writeFileSync(join(dir, 'node-3.json'), JSON.stringify({ ...c3, byzantine: 'wrong-results' }));
  g = loadGroup(dir);
  for (const n of g.file.nodes) startNode(n.id);
  await Promise.all(g.file.nodes.map((n) => ready(n.id)));
});

afterAll(async () => {
  await Promise.all([...procs.keys()].map((id) => kill9(id)));
  rmSync(root, { recursive: true, force: true });
});

describe('a real 4-node group', () => {
  let certDir: string;
  /** The first test's requests (their ids in hex), and the wall-clock window they were sent and certified in. */
  const sdk = { ids: [] as string[], from: 0, to: 0 };

  it('certifies requests from the SDK; the liar changes no decision; `dropbear verify` accepts them', async () => {
    sdk.from = Date.now();
    const results = await client().inferMany(images.slice(0, 12), { concurrency: 4 });
    sdk.to = Date.now();
    for (const r of results) if (!(r instanceof Error)) sdk.ids.push(r.requestId);
    certDir = join(root, 'certs');
    rmSync(certDir, { recursive: true, force: true });
    execFileSync('mkdir', ['-p', certDir]);
    for (const r of results) {
      expect(r).not.toBeInstanceOf(Error);
      const res = r as InferResult;
      checkHonestDecision(res);
      writeFileSync(
        join(certDir, `${res.requestId}.json`),
        JSON.stringify(toJson(Certificate, res.certificate)),
      );
    }
    const out = execFileSync(
      process.execPath,
      [BIN, 'verify', '--genesis', join(dir, 'genesis.json'), certDir],
      {
        encoding: 'utf8',
      },
    );
    expect(out).toMatch(/12/);
    // `group init` writes prepared durability; node 2 was switched to relaxed above.
    expect((await status(0)).durability).toBe('prepared');
    expect((await status(2)).durability).toBe('relaxed');
  });

  it("the nodes' step traces (DROPBEAR_TRACE_STEPS) take those requests apart by stage", async () => {
    expect(sdk.ids).toHaveLength(12);
    // Each trace is written at least once a second: read them until every one of those requests has its row
    // (the 60 s guard a hang, not a speed check; a fixed wait of 1.5 s was a race on a stalled machine).
    const short = new Set(sdk.ids.map((id) => id.slice(0, 16)));
    const rowsNow = () =>
      stageRows(
        [0, 1, 2, 3].flatMap((id) => readFileSync(join(root, `trace.${id}`), 'utf8').split('\n')),
        3,
      ).filter((r) => short.has(r.id));
    let rows = rowsNow();
    for (const deadline = Date.now() + 60_000; rows.length < short.size && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 200));
      rows = rowsNow();
    }
    expect(rows.map((r) => r.id).sort()).toEqual([...short].sort());
    // No wall-clock bound on how long a request took (it was total < 60 s): each row must fall inside the
    // window in which the SDK sent and got those requests, as measured here (the nodes' trace clocks and
    // this process's are the same machine's; 1 s of slack for their sources), and its stages must add up.
    for (const r of rows) {
      for (const k of STAGES) expect(r[k]).toBeGreaterThanOrEqual(0);
      expect(r.accept).toBeGreaterThanOrEqual(sdk.from - 1000);
      expect(r.accept + r.total).toBeLessThanOrEqual(sdk.to + 1000);
      expect(r.acceptToInferQ + r.inferQToPropose + r.proposeToExecute + r.executeToCertify).toBeCloseTo(
        r.total,
        3,
      );
    }
  });

  it('certifies a plain fetch on the Open Inference Protocol v2 endpoint (client-signed parameters)', async () => {
    const key = g.clientKey();
    const input = images[20];
    const req: Request = {
      groupId: Uint8Array.from(Buffer.from(g.file.groupId, 'hex')),
      client: key.publicKey,
      nonce: 777_001,
      timestamp: Date.now(),
      inputDigest: sha256(input),
      policy: null,
      maxFee: 100,
    };
    const signature = signTagged(TAGS.request, req.groupId, encode(RequestCodec, req), key);
    const res = await fetch(`${g.file.nodes[1].api}/v2/models/e2e/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [
          { name: 'image', datatype: 'BYTES', shape: [1], data: [Buffer.from(input).toString('base64')] },
        ],
        parameters: {
          dropbear_client: toB64u(key.publicKey),
          dropbear_nonce: req.nonce,
          dropbear_timestamp: req.timestamp,
          dropbear_max_fee: req.maxFee,
          dropbear_signature: toB64u(signature),
        },
      }),
    });
    const body = (await res.json()) as {
      outputs: { name: string; data: number[] }[];
      parameters: { certificate: unknown };
    };
    expect(res.status, JSON.stringify(body)).toBe(200);
    const cert = fromJson(Certificate, body.parameters.certificate);
    expect(verifyCertificate(cert, g.genesis).ok).toBe(true);
    const labelOut = body.outputs.find((o) => o.name === 'label')!;
    expect(labelOut.data[0]).toBe(cert.outcome.decision.kind === 'label' ? cert.outcome.decision.label : -1);
  });

  it('bad input over real HTTP and garbage on the peer port are refused, and the node keeps serving', async () => {
    const api = g.file.nodes[2].api;
    const post = (path: string, body: string | Uint8Array, type = 'application/json') =>
      fetch(`${api}${path}`, { method: 'POST', headers: { 'content-type': type }, body: body as BodyInit });
    // v1 answers {error: {code, message}}; v2 the protocol's {error: "CODE: message", code}
    const codeOf = async (r: Response) => {
      const body = (await r.json()) as { error: { code: string } | string; code?: string };
      return [r.status, typeof body.error === 'string' ? body.code : body.error.code];
    };
    expect(await codeOf(await post('/v1/requests', '{"request":'))).toEqual([400, 'MALFORMED_JSON']);
    expect(await codeOf(await post('/v1/requests', 'hello', 'text/plain'))).toEqual([
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ]);
    expect(
      await codeOf(await post('/v1/requests', new Uint8Array(2 << 20), 'application/octet-stream')),
    ).toEqual([413, 'BODY_TOO_LARGE']);
    expect(await codeOf(await post('/v2/models/nope/infer', '{"inputs":[]}'))).toEqual([
      404,
      'MODEL_NOT_FOUND',
    ]);
    const c = client([2]);
    const garbage = c.sign(new TextEncoder().encode('not an image at all'));
    const r1 = await post(
      '/v1/requests',
      JSON.stringify({
        request: toJson((await import('../../src/protocol/index.ts')).SignedRequest, garbage),
      }),
    );
    expect((await codeOf(r1))[1]).toBe('INPUT_UNSUPPORTED');
    const stranger = new DropbearClient({
      genesis: g.genesis,
      nodes: [{ id: 2, api }],
      key: keyPairFromSeed(new Uint8Array(32).fill(9)),
    });
    await expect(stranger.infer(images[30])).rejects.toMatchObject({ code: 'INSUFFICIENT_FUNDS' });
    const tampered = c.sign(images[31]);
    tampered.request.timestamp -= 1;
    await expect(c.send(tampered)).rejects.toMatchObject({ code: 'REQUEST_BAD_SIGNATURE' });
    const old = c.sign(images[31]).request;
    const expired = signRequest({ ...old, timestamp: old.timestamp - 3_600_000 }, images[31], g.clientKey());
    await expect(c.send(expired)).rejects.toMatchObject({ code: 'REQUEST_EXPIRED' });
    // Garbage on the node-to-node port: the connection is dropped, nothing else happens.
    const p2p = g.file.nodes[2].p2p.replace('tcp://', '').split(':');
    await new Promise<void>((res) => {
      const s = connect(Number(p2p[1]), p2p[0], () => {
        s.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
        s.write(Buffer.alloc(4096, 7));
      });
      s.on('close', () => res());
      s.on('error', () => res());
      setTimeout(() => s.destroy(), 3000);
    });
    // Still serving: a good request certifies through node 2 alone.
    const ok = await c.infer(images[32]);
    checkHonestDecision(ok);
    // A replay of a certified request is never executed twice: the same certificate comes back.
    const signed = c.sign(images[33]);
    const first = await c.send(signed);
    const again = await c.send(signed);
    expect(hex(encode(Certificate, again.certificate))).toBe(hex(encode(Certificate, first.certificate)));
  });

  it("an owner's model update is ordered; from then on node 1's votes carry the new digest", async () => {
    const out = execFileSync(
      process.execPath,
      [BIN, 'model-update', '--group', dir, '--node', '1', '--model', UPDATE_TO, '--home', home],
      { encoding: 'utf8' },
    );
    expect(out).toContain('ordered: node 1');
    const digest = JSON.parse(readFileSync(join(home, 'models', 'index.json'), 'utf8')).models[UPDATE_TO]
      .sha256;
    const results = await client().inferMany(images.slice(34, 40), { concurrency: 3 });
    for (const r of results) {
      expect(r).not.toBeInstanceOf(Error);
      const res = r as InferResult;
      checkHonestDecision(res);
      const v1 = res.votes.find((v) => v.node === 1);
      if (v1) expect(v1.modelDigest).toBe(digest);
    }
    // Every node agrees: node 1 is at version 1.
    const again = await fetch(`${g.file.nodes[0].api}/v1/group`);
    expect(((await again.json()) as { models: { version: number }[] }).models[1].version).toBe(1);
    // `dropbear status` says which model each node runs, at which version (it said nothing of models).
    const rows = await groupStatus(dir);
    expect(rows[1]).toMatchObject({ modelName: UPDATE_TO, modelDigest: digest, modelVersion: 1 });
    expect(rows[1].updatesWaiting).toEqual([]);
    expect(rows[0]).toMatchObject({ modelName: MODELS[0], modelVersion: 0 });
    const table = (await runCliInProcess(['status', '--group', dir])).stdout.split('\n');
    expect(table[0]).toMatch(/executed\s+fee\s+model$/);
    expect(table[2]).toMatch(new RegExp(`\\sv1 ${digest.slice(0, 8)} ${UPDATE_TO}$`));
  });

  it('a client the genesis does not list is refused, funded by `dropbear deposit` (the treasury), then certified and charged', async () => {
    const dave = keyPairFromSeed(
      sha256(new TextEncoder().encode('dave, a client the genesis does not list')),
    );
    const keyFile = join(root, 'dave.json');
    writeKeyFile(keyFile, dave);
    const daveClient = new DropbearClient({
      genesis: g.genesis,
      nodes: g.file.nodes.map((n) => ({ id: n.id, api: n.api })),
      key: dave,
      timeoutMs: 60_000,
    });
    // No account: every node refuses the request before it is ordered.
    await expect(daveClient.infer(images[41])).rejects.toMatchObject({ code: 'INSUFFICIENT_FUNDS' });
    const none = await runCliInProcess(['balance', '--group', dir, '--key', keyFile, '--node', '2']);
    expect(none.stdout.split('\n')[0]).toBe('0');
    // A deposit signed with anything but the treasury's key is refused by the node (over real HTTP).
    const before = (await status(0)) as unknown as { deposits: number };
    const forged = signDeposit(
      groupIdOf(g.genesis),
      { client: dave.publicKey, amount: 1_000_000, serial: before.deposits + 1 },
      dave,
    );
    const post = (tx: unknown) =>
      fetch(`${g.file.nodes[0].api}/v1/txs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ tx }),
      });
    const r401 = await post(toJson(Tx, forged));
    expect(r401.status).toBe(401);
    expect(((await r401.json()) as { error: { code: string } }).error.code).toBe('TX_BAD_SIGNATURE');
    // The treasury deposits through node 3 (the liar: it lies about results, not about transactions).
    const out = await runCliInProcess([
      'deposit',
      '--group',
      dir,
      '--key',
      keyFile,
      '--amount',
      '25',
      '--node',
      '3',
    ]);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/^submitted [0-9a-f]{64} \(deposit \d+: 25 to /);
    expect(out.stdout).toMatch(/now holds 25 /);
    // Its replay (the same signed bytes) credits nothing: refused while the node still remembers it.
    const txId = /^submitted ([0-9a-f]{64})/.exec(out.stdout)![1];
    const applied = (await (await fetch(`${g.file.nodes[3].api}/v1/txs/${txId}`)).json()) as {
      status: string;
      applied: boolean;
    };
    expect(applied).toMatchObject({ status: 'executed', applied: true });
    // Now served: certified, and charged the counted voters' fees (1 each: `group init`).
    const res = await daveClient.infer(images[41]);
    expect(verifyCertificate(res.certificate, g.genesis).ok).toBe(true);
    const fee = res.certificate.outcome.fee;
    expect(fee).toBeGreaterThanOrEqual(3);
    // Every node's ledger agrees on the account once it has executed that batch.
    for (const n of g.file.nodes) {
      type Account = { balance: number; exists: boolean; deposits: number };
      let body: Account | null = null;
      for (let i = 0; i < 50; i++) {
        body = (await (await fetch(`${n.api}/v1/accounts/${toB64u(dave.publicKey)}`)).json()) as Account;
        if (body?.balance === 25 - fee) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(body).toMatchObject({ balance: 25 - fee, exists: true, deposits: before.deposits + 1 });
    }
    const after = await runCliInProcess(['balance', '--group', dir, '--client', toB64u(dave.publicKey)]);
    expect(after.stdout.split('\n')[0]).toBe(String(25 - fee));
  });

  it("an owner's fee change (`dropbear set-fee`) is ordered: certificates charge the new fee, and a client's maxFee leaves the dearer vote out", async () => {
    const setFee = async (fee: number) => {
      const out = await runCliInProcess(['set-fee', '--group', dir, '--node', '2', '--fee', String(fee)]);
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      expect(out.stdout).toContain(`now charges ${fee} per counted vote`);
    };
    await setFee(5);
    for (const n of g.file.nodes) {
      let fees: { node: number; fee: number; version: number }[] = [];
      for (let i = 0; i < 50 && fees[2]?.fee !== 5; i++) {
        fees = ((await (await fetch(`${n.api}/v1/group`)).json()) as { fees: typeof fees }).fees;
        if (fees[2]?.fee !== 5) await new Promise((r) => setTimeout(r, 100));
      }
      expect(fees).toEqual([
        { node: 0, fee: 1, version: 0 },
        { node: 1, fee: 1, version: 0 },
        { node: 2, fee: 5, version: 1 },
        { node: 3, fee: 1, version: 0 },
      ]);
    }
    const feeOf = (r: InferResult) => r.certificate.outcome.fee;
    const charged = (r: InferResult) =>
      r.certificate.outcome.votes.reduce((sum, v) => sum + (v.node === 2 ? 5 : 1), 0);
    // The SDK's default maxFee is the genesis fees' sum (4): node 2's vote no longer fits beside three others.
    const cheap = (await client().inferMany(images.slice(42, 45), { concurrency: 3 })) as InferResult[];
    for (const r of cheap) {
      expect(r).not.toBeInstanceOf(Error);
      checkHonestDecision(r);
      expect(r.certificate.outcome.votes.map((v) => v.node)).not.toContain(2);
      expect(feeOf(r)).toBe(r.certificate.outcome.votes.length);
    }
    // A client that allows 8 pays node 2's new fee whenever its vote is counted.
    const generous = new DropbearClient({
      genesis: g.genesis,
      nodes: g.file.nodes.map((n) => ({ id: n.id, api: n.api })),
      key: g.clientKey(),
      timeoutMs: 60_000,
      maxFee: 8,
    });
    const dear = (await generous.inferMany(images.slice(45, 49), { concurrency: 4 })) as InferResult[];
    for (const r of dear) {
      expect(r).not.toBeInstanceOf(Error);
      checkHonestDecision(r);
      expect(feeOf(r)).toBe(charged(r));
    }
    expect(dear.some((r) => r.certificate.outcome.votes.some((v) => v.node === 2))).toBe(true);
    await setFee(1);
  });

  it("an owner's withdrawal (`dropbear withdraw --amount all`) is ordered on every node: what it may withdraw goes to 0, the money leaves the group", async () => {
    type Owners = {
      paidOut: number;
      owners: { node: number; earned: number; withdrawn: number; payable: number }[];
    };
    const owners = async (api: string) => (await (await fetch(`${api}/v1/owners`)).json()) as Owners;
    const before = await owners(g.file.nodes[1].api);
    const payable = before.owners[1].payable;
    expect(payable).toBeGreaterThan(0);
    const out = await runCliInProcess(['withdraw', '--group', dir, '--node', '1', '--amount', 'all']);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toContain(`node 1 withdrew ${payable}`);
    const txId = /^submitted ([0-9a-f]{64})/.exec(out.stdout)![1];
    // What the treasury checks before it pays: executed and applied on f + 1 nodes (here on all four), and
    // every ledger took the same amount out.
    for (const n of g.file.nodes) {
      let o = await owners(n.api);
      for (let i = 0; i < 50 && o.owners[1].withdrawn !== payable; i++) {
        await new Promise((r) => setTimeout(r, 100));
        o = await owners(n.api);
      }
      expect(o.owners[1]).toMatchObject({ withdrawn: payable, payable: 0 });
      expect(o.paidOut).toBe(payable);
      const fate = (await (await fetch(`${n.api}/v1/txs/${txId}`)).json()) as Record<string, unknown>;
      expect(fate).toMatchObject({ status: 'executed', applied: true });
    }
    // The treasury's check in one command: every node's word, f + 1 agreeing (exit 0).
    const check = await runCliInProcess(['tx', '--group', dir, txId]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    // What it is, from the group and checked against the id: what the treasury pays.
    expect(check.stdout).toContain(`transaction: a withdrawal: node 1 takes out ${payable} (its serial 1)`);
    expect(check.stdout).toMatch(
      /^applied: nodes 0, 1, 2, 3 \(f \+ 1 = 2 needed\) say executed in batch \d+ and applied$/m,
    );
    // Nothing is left: `all` says so and submits nothing.
    const again = await runCliInProcess(['withdraw', '--group', dir, '--node', '1', '--amount', 'all']);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^error \[NOTHING_TO_WITHDRAW\]/);
  });

  it("a client's transfer (`dropbear transfer`) opens the payee's account on every node; its refund (`dropbear refund --amount all`) takes the rest: its balance goes to 0, the money leaves the group, and a request it no longer covers is refused", async () => {
    // Dave, funded by the deposit above, pays 3 to a fresh key through node 1 (the money stays in the
    // group), then takes back what is left of it, through node 2.
    const keyFile = join(root, 'dave.json');
    const dave = readKeyFile(keyFile);
    const daveKey = toB64u(dave.publicKey);
    type Account = { balance: number; exists: boolean; refunds: number; refundable: number };
    const account = async (api: string, key = daveKey) =>
      (await (await fetch(`${api}/v1/accounts/${key}`)).json()) as Account;
    const erin = toB64u(keyPairFromSeed(sha256(new TextEncoder().encode('erin, paid by dave'))).publicKey);
    const paid = await runCliInProcess([
      'transfer',
      '--group',
      dir,
      '--key',
      keyFile,
      '--to',
      erin,
      '--amount',
      '3',
      '--node',
      '1',
    ]);
    expect(paid.stderr).toBe('');
    expect(paid.code).toBe(0);
    expect(paid.stdout).toContain(`ordered in batch`);
    expect(paid.stdout).toContain(`: the client paid 3 to ${erin}\n`);
    const paidId = /^submitted ([0-9a-f]{64})/.exec(paid.stdout)![1];
    for (const n of g.file.nodes) {
      let e = await account(n.api, erin);
      for (let i = 0; i < 50 && e.balance !== 3; i++) {
        await new Promise((r) => setTimeout(r, 100));
        e = await account(n.api, erin);
      }
      expect(e).toMatchObject({ balance: 3, exists: true });
      expect(await account(n.api)).toMatchObject({ refunds: 1 });
    }
    const paidCheck = await runCliInProcess(['tx', '--group', dir, paidId]);
    expect(paidCheck.code, paidCheck.stdout + paidCheck.stderr).toBe(0);
    expect(paidCheck.stdout).toContain(
      `transaction: a transfer: the client ${daveKey} pays 3 to the account of ${erin} (its serial 1)`,
    );
    const had = (await account(g.file.nodes[2].api)).balance;
    expect(had).toBeGreaterThan(0);
    const refundedBefore = (
      (await (await fetch(`${g.file.nodes[2].api}/v1/owners`)).json()) as { refunded: number }
    ).refunded;
    const out = await runCliInProcess([
      'refund',
      '--group',
      dir,
      '--key',
      keyFile,
      '--amount',
      'all',
      '--node',
      '2',
    ]);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toContain(`take back ${had} of ${had}, serial 2, through node 2`);
    const txId = /^submitted ([0-9a-f]{64})/.exec(out.stdout)![1];
    for (const n of g.file.nodes) {
      let a = await account(n.api);
      for (let i = 0; i < 50 && a.refunds !== 2; i++) {
        await new Promise((r) => setTimeout(r, 100));
        a = await account(n.api);
      }
      expect(a).toMatchObject({ balance: 0, refunds: 2, refundable: 0 });
      const o = (await (await fetch(`${n.api}/v1/owners`)).json()) as { refunded: number };
      expect(o.refunded).toBe(refundedBefore + had);
    }
    // The treasury's check before it pays Dave back.
    const check = await runCliInProcess(['tx', '--group', dir, txId]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toContain(
      `transaction: a refund: the client ${daveKey} takes back ${had} (its serial 2)`,
    );
    // Nothing is left: `all` says so and submits nothing; and a request is refused for its balance.
    const again = await runCliInProcess(['refund', '--group', dir, '--key', keyFile, '--amount', 'all']);
    expect(again.stderr).toMatch(/^error \[NOTHING_TO_REFUND\]/);
    const daveClient = new DropbearClient({
      genesis: g.genesis,
      nodes: g.file.nodes.map((n) => ({ id: n.id, api: n.api })),
      key: dave,
      timeoutMs: 20_000,
    });
    await expect(daveClient.infer(images[50])).rejects.toMatchObject({ code: 'INSUFFICIENT_FUNDS' });
  });

  it('kill -9 of a backup under load: certification continues; restarted, it catches up and serves old certificates', async () => {
    const c = client();
    const load = c.inferMany(images.slice(40, 60), { concurrency: 4 });
    await new Promise((r) => setTimeout(r, 300));
    await kill9(2);
    const results = await load;
    for (const r of results) {
      expect(r).not.toBeInstanceOf(Error);
      checkHonestDecision(r as InferResult);
    }
    const whileDown = results.map((r) => (r as InferResult).requestId);
    startNode(2);
    await ready(2);
    // Relaxed durability, the same boot: the kernel kept every page the killed process wrote, so the node
    // forgot nothing and signs on in the current view.
    expect(await status(2)).toMatchObject({ durability: 'relaxed', signFloorView: 0, expiredUnordered: 0 });
    // It catches up from its ledger and its peers, then serves certificates for requests it missed.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const [me, other] = await Promise.all([status(2), status(0)]);
      if (me.lastExecuted >= other.lastExecuted && other.lastExecuted > 0) break;
      if (Date.now() > deadline)
        throw new Error(`node 2 stuck at ${me.lastExecuted} < ${other.lastExecuted}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    let served = 0;
    for (const id of whileDown) {
      const res = await fetch(`${g.file.nodes[2].api}/v1/certificates/${id}?wait=10000`);
      if (res.status === 200) {
        const cert = fromJson(Certificate, ((await res.json()) as { certificate: unknown }).certificate);
        expect(verifyCertificate(cert, g.genesis).ok).toBe(true);
        served++;
      }
    }
    expect(served).toBe(whileDown.length);
  });

  it('kill -9 of a relaxed node, then a reboot: it signs in no view it may have used, and the group certifies on', async () => {
    await kill9(2);
    // As if the machine had rebooted since (a power loss): another boot id in the ledger's marker.
    const markerFile = join(dir, 'data', 'node-2', 'ledger.sqlite.boot');
    const marker = JSON.parse(readFileSync(markerFile, 'utf8'));
    expect(marker.durability).toBe('relaxed');
    writeFileSync(markerFile, JSON.stringify({ ...marker, bootId: 'a-boot-before-the-power-loss' }));
    const lastBefore = signedLog(2).at(-1)?.id ?? 0;
    const viewBefore = (await status(0)).view;
    startNode(2);
    await ready(2);
    // It learns the group's view by state transfer; until then it signs in none.
    let floor: number | null = null;
    const deadline = Date.now() + 20_000;
    while (floor === null) {
      floor = (await status(2)).signFloorView;
      if (floor === null && Date.now() > deadline) throw new Error('node 2 never learned the group view');
      if (floor === null) await new Promise((r) => setTimeout(r, 100));
    }
    expect(floor).toBe(viewBefore + 1);
    expect(logs.get(2)?.join('')).toContain('relaxed durability and the machine has rebooted since');
    // The other three certify on (node 2 still votes, and serves what it executes).
    const results = await client().inferMany(images.slice(70, 76), { concurrency: 3 });
    for (const r of results) {
      expect(r, String(r)).not.toBeInstanceOf(Error);
      checkHonestDecision(r as InferResult);
    }
    const since = signedLog(2).filter((r) => r.id > lastBefore);
    expect(since[0]?.kind).toBe('forgotten');
    expect(since.find((r) => r.kind === 'signFloor')?.view).toBe(floor);
    for (const r of since)
      if (['prePrepare', 'prepare', 'commit', 'viewChange', 'newView'].includes(r.kind))
        expect(r.view, `node 2 signed a ${r.kind} in view ${r.view}`).toBeGreaterThanOrEqual(floor);
  });

  it('kill -9 of the primary: a view change, then certification continues', async () => {
    const before = await status(1);
    const primary = before.primary;
    await kill9(primary);
    const alive = [0, 1, 2, 3].filter((i) => i !== primary);
    const results = await client(alive).inferMany(images.slice(60, 70), { concurrency: 4 });
    for (const r of results) {
      expect(r, String(r)).not.toBeInstanceOf(Error);
      checkHonestDecision(r as InferResult);
    }
    const after = await status(alive[0]);
    expect(after.view).toBeGreaterThan(before.view);
    expect(after.primary).not.toBe(primary);
  });

  it('a node started with another model than the genesis names is refused', () => {
    const cfg = JSON.parse(readFileSync(join(dir, 'node-1.json'), 'utf8'));
    const bad = join(dir, 'node-1-wrong-model.json');
    writeFileSync(
      bad,
      JSON.stringify({
        ...cfg,
        model: { name: 'squeezenet1.1-fp16-winml' },
        data: 'data/wrong',
        api: { host: '127.0.0.1', port: 0 },
        p2p: { host: '127.0.0.1', port: 0 },
      }),
    );
    let err = '';
    let code = 0;
    try {
      execFileSync(process.execPath, [BIN, 'node', '--config', bad], {
        env: { ...process.env, DROPBEAR_HOME: home },
        encoding: 'utf8',
        stdio: 'pipe',
      });
    } catch (e) {
      err = String((e as { stderr: string }).stderr);
      code = (e as { status: number }).status;
    }
    expect(code).toBe(2);
    expect(err).toContain('MODEL_MISMATCH');
  });
});
