/**
 * The API's own log: with a logger, fastify writes no line per request (a node under load would log
 * thousands a second) and no deprecation warning; errors the API answers are still logged when they are
 * internal. One stand-in NodeHost, no peers, driven with `inject`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/node/api.ts';
import { NodeHost } from '../../src/node/host.ts';
import { startStandIn } from '../../src/node/standin-backend.ts';
import { makeGroup } from '../../src/sim/world.ts';

let dir: string;
let host: NodeHost;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'api-log-'));
  const group = makeGroup(4, 1, 5);
  host = NodeHost.open({
    id: 0,
    genesis: group.genesis,
    key: group.keys[0],
    ledgerPath: join(dir, 'n0.sqlite'),
    backends: [startStandIn(0)],
    wire: { send: () => {}, broadcast: () => {}, onFrame: () => {}, reportBad: () => {} },
  });
  host.start();
});

afterAll(() => {
  host.stop();
  host.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('request logging', () => {
  it('writes no line per request and emits no deprecation warning', async () => {
    const lines: { msg?: string; level?: number }[] = [];
    const logger = pino(
      { level: 'trace' },
      { write: (s: string) => lines.push(JSON.parse(s) as { msg?: string; level?: number }) },
    );
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const app = buildApi(host, { logger });
      await app.ready();
      for (const url of ['/healthz', '/v1/group', '/no/such/route', '/v1/certificates/zz']) {
        const res = await app.inject({ method: 'GET', url });
        expect(res.statusCode).toBeGreaterThanOrEqual(200);
      }
      const bad = await app.inject({
        method: 'POST',
        url: '/v1/requests',
        headers: { 'content-type': 'application/json' },
        payload: '{not json',
      });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().error.code).toBeTypeOf('string');
      await app.close();
      // Warnings are emitted on the next tick.
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    const perRequest = lines.filter((l) => l.msg === 'incoming request' || l.msg === 'request completed');
    expect(perRequest).toEqual([]);
    expect(warnings.map((w) => (w as { code?: string }).code ?? w.message)).not.toContain('FSTDEP023');
  });
});
