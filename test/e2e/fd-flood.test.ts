/**
 * Connection floods against a node short of file descriptors: a real 4-node group (stand-in model, four
 * processes, TCP), node 0 run again under `ulimit -n 256`. More idle connections than that to its HTTP
 * API, then to its peer port (never a HELLO), each held while node 1 is killed and started again: node 0
 * must not crash, nor log a line per connection, must get node 1 back as a peer while the flood lasts
 * (the group certifies, node 0 keeps up), refuse the API connections over its limit with 503 OVERLOADED,
 * and serve again, unrestarted, once they go.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type GroupProcesses,
  initGroup,
  type LoadedGroup,
  loadGroup,
  NODE_EXEC_ARGV,
  nodeConfigPath,
  startGroup,
  stopChild,
} from '../../src/cli/group.ts';
import { DropbearClient } from '../../src/client/index.ts';
import { STANDIN_MODEL, standInInput } from '../../src/node/standin-backend.ts';
import { RawConn } from '../raw-http.ts';

const FD_LIMIT = 256;
/** More connections than node 0 has descriptors. */
const FLOOD = 400;

const root = mkdtempSync(join(tmpdir(), 'dropbear-fds-'));
let g: LoadedGroup;
let procs: GroupProcesses;
let node0: ChildProcess;
let client: DropbearClient;
const log: string[] = [];
const node0Log: string[] = [];

async function until(what: string, ok: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok().catch(() => false))) {
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${ms} ms\n${[...log, ...node0Log].slice(-60).join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  await initGroup({
    dir: join(root, 'group'),
    nodes: 4,
    models: Array(4).fill(STANDIN_MODEL),
    name: 'fds',
  });
  g = loadGroup(join(root, 'group'));
  procs = startGroup(g, (l) => log.push(l));
  await procs.ready(60_000);
  // Node 0 again, under a low open-file limit from its start.
  await stopChild(procs.children.get(0) as ChildProcess);
  const bin = new URL('../../bin/dropbear.mjs', import.meta.url).pathname;
  node0 = spawn(
    'sh',
    [
      '-c',
      `ulimit -n ${FD_LIMIT} && exec "$0" "$@"`,
      process.execPath,
      ...NODE_EXEC_ARGV,
      bin,
      'node',
      '--config',
      nodeConfigPath(g, g.file.nodes[0]),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  for (const s of [node0.stdout, node0.stderr])
    s?.on('data', (d: Buffer) => node0Log.push(...d.toString('utf8').split('\n').filter(Boolean)));
  await until('node 0 ready', async () => (await fetch(`${api(0)}/readyz`)).ok, 30_000);
  client = new DropbearClient({ genesis: g.genesis, nodes: g.file.nodes, key: g.clientKey() });
  await client.infer(standInInput(1));
}, 120_000);

afterAll(async () => {
  if (node0) await stopChild(node0);
  await procs?.stop();
  rmSync(root, { recursive: true, force: true });
});

const api = (id: number) => g.file.nodes[id].api;
const portOf = (url: string) => Number(new URL(url.replace(/^tcp:/, 'http:')).port);
async function status(id: number): Promise<{ lastExecuted: number; peers: { id: number; state: string }[] }> {
  const res = await fetch(`${api(id)}/v1/status`);
  if (!res.ok) throw new Error(`node ${id}: /v1/status ${res.status}`);
  return res.json();
}

/** `count` connections to `port` that send nothing; resolves once each is connected or refused. */
async function flood(port: number, count: number): Promise<Socket[]> {
  const socks = Array.from({ length: count }, () => connect(port, '127.0.0.1'));
  await Promise.all(
    socks.map(
      (s) =>
        new Promise<void>((r) => {
          s.once('connect', () => r());
          s.once('error', () => r());
          s.once('close', () => r());
        }),
    ),
  );
  return socks;
}

/** Node 1 killed and started again: node 0 (its dialer) has to make a new connection to it. */
async function restartNode1(): Promise<void> {
  const c1 = procs.children.get(1) as ChildProcess;
  const closed = new Promise((r) => c1.once('close', r));
  c1.kill('SIGKILL');
  await closed;
  procs.restart(1);
  await until(
    'node 1 connected to node 0 again',
    async () => (await status(1)).peers.find((p) => p.id === 0)?.state === 'connected',
    30_000,
  );
}

const fds = () => readdirSync(`/proc/${node0.pid}/fd`).length;

describe(`a node under ulimit -n ${FD_LIMIT}`, () => {
  it('API connections past its open-file limit: the ones over maxConnections are refused with 503 OVERLOADED, a restarted peer gets back in, and it serves again once they close', async () => {
    const linesBefore = node0Log.length;
    const socks = await flood(portOf(api(0)), FLOOD);
    try {
      // A request on a new connection is told why, not left to hang or cut.
      const c = new RawConn(portOf(api(0)));
      await c.ready;
      c.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
      const res = await c.response(10_000);
      c.destroy();
      expect(res?.status).toBe(503);
      expect(res?.headers).toMatch(/retry-after: 1/);
      expect(JSON.parse(res?.body ?? '{}').error.code).toBe('OVERLOADED');
      expect(fds()).toBeLessThan(FD_LIMIT - 64);

      await restartNode1();
      for (let i = 0; i < 4; i++) await client.infer(standInInput(100 + i));
      expect(node0.exitCode).toBeNull();
    } finally {
      for (const s of socks) s.destroy();
    }
    // Served again, unrestarted, and it kept up with the group while it could not be asked.
    const ref = (await status(1)).lastExecuted;
    await until('node 0 serves and keeps up', async () => (await status(0)).lastExecuted >= ref);
    expect(node0.exitCode).toBeNull();
    expect(node0Log.length - linesBefore).toBeLessThan(50);
  }, 60_000);

  it('peer-port connections past its open-file limit that never say HELLO: bounded by maxPendingHandshakes, a restarted peer gets back in', async () => {
    const linesBefore = node0Log.length;
    const socks = await flood(portOf(g.file.nodes[0].p2p), FLOOD);
    try {
      expect(fds()).toBeLessThan(FD_LIMIT - 64);
      await restartNode1();
      for (let i = 0; i < 4; i++) await client.infer(standInInput(200 + i));
      const ref = (await status(1)).lastExecuted;
      await until('node 0 keeps up', async () => (await status(0)).lastExecuted >= ref);
    } finally {
      for (const s of socks) s.destroy();
    }
    expect(node0.exitCode).toBeNull();
    // Evictions and closes are logged at most once per 10 s per code, not per connection.
    expect(node0Log.length - linesBefore).toBeLessThan(50);
  }, 60_000);
});
