/**
 * The API's own log: with a logger, fastify writes no line per request (a node under load would log
 * thousands a second) and no deprecation warning; errors the API answers are still logged when they are
 * internal. One stand-in NodeHost, no peers, driven with `inject`.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/node/api.ts';
import type { NodeHost } from '../../src/node/host.ts';
import { type LoneHost, openLoneHost } from './lone-host.ts';

let lone: LoneHost;
let host: NodeHost;

beforeAll(() => {
  lone = openLoneHost('api-log-', 5);
  host = lone.host;
});

afterAll(() => lone.close());

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
