/**
 * A node whose API or peer port is taken: LISTEN_FAILED naming the address and the config field, and the
 * half-started node undone (its ledger closed cleanly: the next open does not find an unclean shutdown).
 * Until 2026-12-06 the error was Node's bare `listen EADDRINUSE …` and only the model backends were closed.
 */
import { readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initGroup } from '../../src/cli/group.ts';
import { SqliteLedger } from '../../src/ledger/sqlite.ts';
import { startNode } from '../../src/node/run.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';
import { fromJson, Genesis } from '../../src/protocol/index.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function holdPort(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve({ server, port: typeof a === 'object' && a ? a.port : 0 });
    });
  });
}

describe.each(['api', 'p2p'] as const)('a node whose %s port is taken', (field) => {
  it('fails with LISTEN_FAILED naming the address and the field, and closes what it opened', async () => {
    const { server, port } = await holdPort();
    const dir = join(tmpdir(), `dropbear-listen-${field}-${process.pid}`);
    dirs.push(dir);
    rmSync(dir, { recursive: true, force: true });
    const free = { host: '127.0.0.1', port: 0 };
    await initGroup({
      dir,
      nodes: 4,
      models: Array(4).fill(STANDIN_MODEL),
      nodeConfig: {
        log: { level: 'silent' },
        api: field === 'api' ? { host: '127.0.0.1', port } : free,
        p2p: field === 'p2p' ? { host: '127.0.0.1', port } : free,
      },
    });
    const config = join(dir, 'node-0.json');
    try {
      await expect(startNode(config)).rejects.toMatchObject({
        code: 'LISTEN_FAILED',
        message: expect.stringContaining(
          `on 127.0.0.1:${port}: the port is in use (another node, or another program) (EADDRINUSE); change "${field}" in ${config}`,
        ),
      });
    } finally {
      server.close();
    }
    // The ledger the failed start opened was closed: opening it again finds a clean shutdown.
    const genesis = fromJson(Genesis, JSON.parse(readFileSync(join(dir, 'genesis.json'), 'utf8')));
    const ledger = SqliteLedger.open(join(dir, 'data', 'node-0', 'ledger.sqlite'), genesis);
    try {
      expect(ledger.uncleanShutdown).toBe(false);
    } finally {
      ledger.close();
    }
  });
});

describe.each(['api', 'p2p'] as const)('a node whose %s host does not resolve', (field) => {
  // `group node-config --listen-host` takes any name; a typo ended the node with `error: getaddrinfo
  // ENOTFOUND …`, no code.
  it('fails with LISTEN_FAILED naming the host and the field', async () => {
    const dir = join(tmpdir(), `dropbear-listen-host-${field}-${process.pid}`);
    dirs.push(dir);
    rmSync(dir, { recursive: true, force: true });
    const free = { host: '127.0.0.1', port: 0 };
    const bad = { host: 'no-such-host.invalid', port: 0 };
    await initGroup({
      dir,
      nodes: 4,
      models: Array(4).fill(STANDIN_MODEL),
      nodeConfig: {
        log: { level: 'silent' },
        api: field === 'api' ? bad : free,
        p2p: field === 'p2p' ? bad : free,
      },
    });
    const config = join(dir, 'node-0.json');
    await expect(startNode(config)).rejects.toMatchObject({
      code: 'LISTEN_FAILED',
      message: expect.stringContaining(`on no-such-host.invalid:0: no such host`),
    });
  });
});
