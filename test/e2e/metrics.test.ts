/**
 * The numbers an operator reads from a real 4-node group (stand-in model, four processes, TCP between them):
 * known traffic (valid requests through the SDK; a bad signature, an expired, a repeated, an oversized and an
 * unfunded one to node 0), then GET /metrics (read strictly, test/support/prom-text.ts), GET /v1/status and
 * `dropbear status` (groupStatus) compared with what was sent and with each other; then node 1 killed with
 * SIGKILL (reported unreachable), started again, and read once more.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type GroupProcesses,
  initGroup,
  type LoadedGroup,
  loadGroup,
  startGroup,
} from '../../src/cli/group.ts';
import { groupStatus } from '../../src/cli/status.ts';
import { DropbearClient } from '../../src/client/index.ts';
import { STANDIN_MODEL, standInDigest, standInInput } from '../../src/node/standin-backend.ts';
import {
  groupIdOf,
  type KeyPair,
  keyPairFromSeed,
  type Request,
  SignedRequest,
  sha256,
  signRequest,
  toJson,
} from '../../src/protocol/index.ts';
import { runCli } from '../cli/run-cli.ts';
import { type Family, parsePromText, samplesOf, sampleValue } from '../support/prom-text.ts';

const root = mkdtempSync(join(tmpdir(), 'dropbear-metrics-'));
let g: LoadedGroup;
let procs: GroupProcesses;
let client: DropbearClient;
const log: string[] = [];

beforeAll(async () => {
  await initGroup({
    dir: join(root, 'group'),
    nodes: 4,
    models: Array(4).fill(STANDIN_MODEL),
    name: 'metrics',
  });
  g = loadGroup(join(root, 'group'));
  procs = startGroup(g, (l) => log.push(l));
  await procs.ready(60_000);
  client = new DropbearClient({ genesis: g.genesis, nodes: g.file.nodes, key: g.clientKey() });
}, 90_000);

afterAll(async () => {
  await procs?.stop();
  rmSync(root, { recursive: true, force: true });
});

const api = (id: number) => g.file.nodes[id].api;
async function scrape(id: number): Promise<Map<string, Family>> {
  const res = await fetch(`${api(id)}/metrics`);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePromText(await res.text());
}
async function status(id: number): Promise<Record<string, unknown> & { peers: { state: string }[] }> {
  return (await fetch(`${api(id)}/v1/status`)).json();
}
const v = (f: Map<string, Family>, name: string, labels = {}) => sampleValue(f, name, labels);

let nonce = 1_000_000;
function signed(
  o: Partial<Request> = {},
  key: KeyPair = g.clientKey(),
  input = standInInput(nonce),
): SignedRequest {
  const request: Request = {
    groupId: groupIdOf(g.genesis),
    client: key.publicKey,
    nonce: nonce++,
    timestamp: Date.now(),
    inputDigest: sha256(input),
    policy: null,
    maxFee: 1000,
    ...o,
  };
  return signRequest(request, input, key);
}
async function post(sr: SignedRequest): Promise<{ status: number; code?: string }> {
  const res = await fetch(`${api(0)}/v1/requests?wait=10000`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ request: toJson(SignedRequest, sr) }),
  });
  const body = (await res.json()) as { error?: { code: string } };
  return { status: res.status, code: body.error?.code };
}

async function until(what: string, ok: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms\n${log.join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('metrics of a real group', () => {
  const SDK = 4;
  let valid = 0;

  it('count what was sent, agree with /v1/status and dropbear status', async () => {
    const results = await Promise.all(Array.from({ length: SDK }, (_, i) => client.infer(standInInput(i))));
    expect(results).toHaveLength(SDK);
    const twice = signed();
    expect((await post(twice)).status).toBe(200);
    expect(await post(twice)).toEqual({ status: 200, code: undefined }); // the certificate again
    valid = SDK + 1;
    const forged = signed();
    if (forged.auth.kind !== 'single') throw new Error('expected a single signature');
    forged.auth.signature = forged.auth.signature.map((b, i) => (i === 0 ? b ^ 1 : b));
    expect(await post(forged)).toEqual({ status: 401, code: 'REQUEST_BAD_SIGNATURE' });
    expect(await post(signed({ timestamp: Date.now() - 3_600_000 }))).toEqual({
      status: 400,
      code: 'REQUEST_EXPIRED',
    });
    expect(await post(signed({}, keyPairFromSeed(new Uint8Array(32).fill(9))))).toEqual({
      status: 402,
      code: 'INSUFFICIENT_FUNDS',
    });
    expect(await post(signed({}, undefined, new Uint8Array(g.genesis.params.maxInputBytes + 1)))).toEqual({
      status: 413,
      code: 'REQUEST_INPUT_TOO_LARGE',
    });
    // Every node has executed everything before the numbers are compared.
    await until('all executed', async () => {
      const s = await Promise.all([0, 1, 2, 3].map(status));
      return s.every((x) => x.lastExecuted === s[0].lastExecuted && x.pendingRequests === 0);
    });

    const m = await scrape(0);
    const refused = Object.fromEntries(
      samplesOf(m, 'dropbear_requests_rejected_total').map((s) => [s.labels.reason, s.value]),
    );
    expect(refused).toEqual({
      REQUEST_BAD_SIGNATURE: 1,
      REQUEST_EXPIRED: 1,
      INSUFFICIENT_FUNDS: 1,
      REQUEST_INPUT_TOO_LARGE: 1,
    });
    const accepted = v(m, 'dropbear_requests_accepted_total') ?? -1;
    // The SDK sends to every node; a copy a peer forwarded first is not accepted again.
    expect(accepted).toBeGreaterThanOrEqual(1);
    expect(accepted).toBeLessThanOrEqual(valid);
    expect(v(m, 'dropbear_accept_to_certificate_seconds_count')).toBe(accepted);
    expect(v(m, 'dropbear_certificates_total')).toBe(valid);
    expect(v(m, 'dropbear_consensus_batch_size_sum')).toBe(valid);
    const s0 = await status(0);
    expect(v(m, 'dropbear_consensus_batch_size_count')).toBe(s0.lastExecuted);
    expect(
      (v(m, 'dropbear_inference_batch_size_sum') ?? 0) + (v(m, 'dropbear_inference_skipped_total') ?? 0),
    ).toBe(valid);
    expect(v(m, 'dropbear_inference_seconds_count')).toBe(v(m, 'dropbear_inference_batch_size_count'));
    expect(v(m, 'dropbear_ledger_sync_seconds_count')).toBeGreaterThan(0);
    // What the owners earned and charge, as GET /v1/owners says (fee 1 each: every counted vote earned 1).
    const owners = (await (await fetch(`${api(0)}/v1/owners`)).json()) as {
      owners: { node: number; fee: number; counted: number; earned: number; withdrawn: number }[];
      refunded: number;
    };
    expect(v(m, 'dropbear_money_refunded')).toBe(owners.refunded);
    for (const o of owners.owners) {
      expect(v(m, 'dropbear_owner_earned', { node: String(o.node) })).toBe(o.earned);
      expect(v(m, 'dropbear_owner_withdrawn', { node: String(o.node) })).toBe(o.withdrawn);
      expect(v(m, 'dropbear_node_fee', { node: String(o.node) })).toBe(1);
      expect(o.earned).toBe(o.counted);
    }
    expect(owners.owners.reduce((x, o) => x + o.earned, 0)).toBeGreaterThanOrEqual(valid * 3);
    for (const [status, n] of [
      ['401', 1],
      ['400', 1],
      ['402', 1],
      ['413', 1],
    ] as const)
      expect(v(m, 'dropbear_http_responses_total', { method: 'POST', route: '/v1/requests', status })).toBe(
        n,
      );
    // The process: a start time that tells a restart, memory, the event loop.
    const start = v(m, 'dropbear_process_start_time_seconds') ?? 0;
    expect(Math.abs(start - Date.now() / 1000)).toBeLessThan(120);
    expect(v(m, 'dropbear_process_resident_memory_bytes')).toBeGreaterThan(10e6);
    expect(v(m, 'dropbear_process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(samplesOf(m, 'dropbear_nodejs_eventloop_lag_seconds')).toHaveLength(1);

    // /v1/status, /metrics and `dropbear status` tell the same story, node by node.
    const rows = await groupStatus(g.dir);
    for (const id of [0, 1, 2, 3]) {
      const [mi, si] = [await scrape(id), await status(id)];
      expect(v(mi, 'dropbear_view')).toBe(si.view);
      expect(v(mi, 'dropbear_view')).toBe(0);
      expect(v(mi, 'dropbear_view_changes_total')).toBe(si.viewChanges);
      expect(v(mi, 'dropbear_last_executed_seq')).toBe(si.lastExecuted);
      // Read at different moments: a node may start or end a short catch-up between them (seen once).
      expect([0, 1]).toContain(v(mi, 'dropbear_catching_up'));
      expect(v(mi, 'dropbear_behind_batches')).toBeGreaterThanOrEqual(0);
      expect(typeof si.catchingUp).toBe('boolean');
      expect(v(mi, 'dropbear_pending_requests')).toBe(si.pendingRequests);
      expect(v(mi, 'dropbear_inference_queue_depth')).toBe(0);
      expect(v(mi, 'dropbear_inference_in_flight')).toBe(0);
      const up = samplesOf(mi, 'dropbear_peer_connected').filter((s) => s.value === 1).length;
      expect(up).toBe(si.peers.filter((p) => p.state === 'connected').length);
      expect(up).toBe(3);
      expect(rows[id]).toEqual({
        id,
        api: api(id),
        healthy: true,
        ready: true,
        view: si.view,
        primary: si.primary,
        lastExecuted: si.lastExecuted,
        catchingUp: expect.any(Boolean),
        behindBy: expect.any(Number),
        modelName: STANDIN_MODEL,
        modelDigest: standInDigest(id),
        modelVersion: 0,
        updatesWaiting: [],
        fee: 1,
        feesWaiting: [],
      });
    }
  }, 60_000);

  it('after kill -9 the node is reported unreachable; started again, its counters start over', async () => {
    const before = await scrape(1);
    const executed = v(before, 'dropbear_last_executed_seq');
    procs.children.get(1)?.kill('SIGKILL');
    await until('node 1 gone', async () => procs.children.get(1)?.signalCode === 'SIGKILL');
    const rows = await groupStatus(g.dir);
    expect(rows[1]).toMatchObject({ healthy: false, ready: false, view: null, lastExecuted: null });
    expect(rows[1].error).toMatch(/^NODE_UNREACHABLE: nothing answered at .*; is the node running\?$/);
    expect(rows.filter((r) => r.healthy)).toHaveLength(3);
    const cli = await runCli(['status', '--group', g.dir], 20_000);
    expect(cli.code).toBe(1);
    const line = cli.stdout.split('\n').find((l) => l.startsWith('1 '));
    // view, primary, last, fee and model all unknown (the fee column since 2026-12-07).
    expect(line).toMatch(/NO\s+no(\s+-){5}\s+\(NODE_UNREACHABLE: nothing answered at /);
    await until(
      'node 0 sees node 1 gone',
      async () => v(await scrape(0), 'dropbear_peer_connected', { peer: '1' }) === 0,
    );

    // Started again by the group's own supervisor (with the same output handling as at start).
    procs.restart(1);
    await procs.ready(60_000);
    await Promise.all([10, 11].map((i) => client.infer(standInInput(i))));
    await until('all executed again', async () => {
      const s = await Promise.all([0, 1, 2, 3].map(status));
      return s.every((x) => x.lastExecuted === s[0].lastExecuted && x.pendingRequests === 0);
    });
    const after = await scrape(1);
    // Per process: started over from nothing. The ledger's numbers: carried on.
    expect(v(after, 'dropbear_process_start_time_seconds')).toBeGreaterThan(
      v(before, 'dropbear_process_start_time_seconds') ?? Number.POSITIVE_INFINITY,
    );
    expect(v(after, 'dropbear_certificates_total')).toBe(2);
    expect(v(after, 'dropbear_requests_accepted_total')).toBeLessThanOrEqual(2);
    expect(v(after, 'dropbear_consensus_batch_size_sum')).toBe(2);
    expect(v(after, 'dropbear_last_executed_seq')).toBeGreaterThan(executed ?? Number.POSITIVE_INFINITY);
    expect(v(after, 'dropbear_last_executed_seq')).toBe(v(await scrape(0), 'dropbear_last_executed_seq'));
    expect(samplesOf(after, 'dropbear_peer_connected').map((s) => s.value)).toEqual([1, 1, 1]);
    await until(
      'node 0 sees node 1 back',
      async () => v(await scrape(0), 'dropbear_peer_connected', { peer: '1' }) === 1,
    );
    const rowsAfter = await groupStatus(g.dir);
    expect(rowsAfter.every((r) => r.healthy && r.ready && r.error === undefined)).toBe(true);
    expect(new Set(rowsAfter.map((r) => r.lastExecuted)).size).toBe(1);

    // The logs of it all (refused requests, a peer killed and back): JSON lines, each warning and error
    // with a stable code (until 2026-12-07 a peer's bad signature or quarantine, among others, had none).
    const lines = log.map((l) => /^\[node \d+\] (\{.*\})$/.exec(l)?.[1]).filter((l) => l !== undefined);
    expect(lines.length).toBeGreaterThan(8);
    const entries = lines.map((l) => JSON.parse(l) as { level: number; msg: string; code?: unknown });
    expect(entries.filter((e) => e.level >= 40 && typeof e.code !== 'string').map((e) => e.msg)).toEqual([]);
  }, 90_000);
});
