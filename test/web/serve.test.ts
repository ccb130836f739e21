/**
 * How the API serves the dashboard (src/web through ApiOptions.dashboard): absent unless wired, its page
 * and script with their types and content security policy, and a script that fails to build answered with
 * a code (and built again on the next call). One stand-in NodeHost, no peers; fastify's inject.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/node/api.ts';
import type { NodeHost } from '../../src/node/host.ts';
import { DASHBOARD_HTML } from '../../src/web/page.ts';
import { type LoneHost, openLoneHost } from '../node/lone-host.ts';

let lone: LoneHost;
let host: NodeHost;

beforeAll(() => {
  lone = openLoneHost('web-serve-', 7);
  host = lone.host;
});

afterAll(() => lone.close());

describe('GET /dashboard', () => {
  it('is not there unless the dashboard is wired in', async () => {
    const app = buildApi(host);
    const r = await app.inject({ method: 'GET', url: '/dashboard' });
    expect(r.statusCode).toBe(404);
    expect(r.json().error.code).toBe('NOT_FOUND');
    await app.close();
  });

  it('serves the page and the script with their types and policy; a failed build is 503 and retried', async () => {
    let calls = 0;
    const app = buildApi(host, {
      dashboard: {
        html: DASHBOARD_HTML,
        script: async () => {
          calls++;
          if (calls === 1) throw new Error('esbuild exploded');
          return 'console.log(1)';
        },
      },
    });
    const page = await app.inject({ method: 'GET', url: '/dashboard?group=ab' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toMatch(/default-src 'none'.*script-src 'self'/);
    expect(page.headers['content-security-policy']).toMatch(/base-uri 'none'; form-action 'none'/);
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    expect(page.body).toContain('<script type="module" src="/dashboard/app.js"></script>');
    const failed = await app.inject({ method: 'GET', url: '/dashboard/app.js' });
    expect(failed.statusCode).toBe(503);
    expect(failed.json().error).toEqual({
      code: 'DASHBOARD_UNAVAILABLE',
      message: 'the dashboard script did not build: esbuild exploded',
    });
    const js = await app.inject({ method: 'GET', url: '/dashboard/app.js' });
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.headers['x-content-type-options']).toBe('nosniff');
    expect(js.body).toBe('console.log(1)');
    await app.close();
  });

  it('takes ?group= and no other query parameter: a misspelt pin ("?grop=", "?Group=") is 400, not a page that checks against no group', async () => {
    const app = buildApi(host, { dashboard: { html: DASHBOARD_HTML, script: async () => '' } });
    for (const url of ['/dashboard', '/dashboard?group=ab'])
      expect((await app.inject({ method: 'GET', url })).statusCode).toBe(200);
    for (const [url, name] of [
      ['/dashboard?grop=ab', 'grop'],
      ['/dashboard?Group=ab', 'Group'],
    ]) {
      const r = await app.inject({ method: 'GET', url });
      expect(r.statusCode).toBe(400);
      expect(r.json().error.code).toBe('UNKNOWN_QUERY_PARAMETER');
      expect(r.json().error.message).toContain(`"${name}"`);
    }
    await app.close();
  });
});
