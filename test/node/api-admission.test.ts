/**
 * Admission control's answer over maxPending (docs/api.md, "Admission control"): 503 OVERLOADED with
 * Retry-After and a message that counts what the call brings, not only what the node holds. One stand-in
 * NodeHost, no peers (what it accepts stays pending), driven with `inject`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/node/api.ts';
import { groupIdOf, SignedRequest, toJson } from '../../src/protocol/index.ts';
import { type LoneHost, openLoneHost } from './lone-host.ts';
import { standInRequest } from './standin-request.ts';

let lone: LoneHost;

beforeAll(() => {
  lone = openLoneHost('api-admission-', 11);
});

afterAll(() => lone.close());

let nonce = 1;
const requests = (n: number) =>
  Array.from({ length: n }, () =>
    toJson(SignedRequest, standInRequest(lone.group, groupIdOf(lone.group.genesis), nonce++)),
  );

describe('maxPending', () => {
  // Before 2026-12-06 a POST of 3 into an empty node with maxPending 2 was told "the node holds 0
  // requests (limit 2); retry later": true, no reason given, and retrying could never help.
  it('a POST over the limit is told what it brings; one bigger than the limit itself is told to send fewer', async () => {
    const held = lone.host.replica.pendingRequests;
    const app = buildApi(lone.host, { maxPending: held + 2, retryAfterSeconds: 3 });
    try {
      const post = (body: unknown) =>
        app.inject({ method: 'POST', url: '/v1/requests?wait=0', payload: body as object });
      const over = await post({ requests: requests(3) });
      expect(over.statusCode).toBe(503);
      expect(over.headers['retry-after']).toBe('3');
      expect(over.json().error.code).toBe('OVERLOADED');
      expect(over.json().error.message).toContain(
        `the node holds ${held} requests and this call brings 3 new ones (limit ${held + 2})`,
      );
      const fits = await post({ requests: requests(2) });
      expect(fits.statusCode, fits.body).toBe(202);
      const full = await post({ request: requests(1)[0] });
      expect(full.statusCode).toBe(503);
      expect(full.json().error.message).toContain(
        `the node holds ${held + 2} requests and this call brings 1 new one (limit ${held + 2}); retry later`,
      );
    } finally {
      await app.close();
    }
    const small = buildApi(lone.host, { maxPending: 2 });
    try {
      const res = await small.inject({
        method: 'POST',
        url: '/v1/requests?wait=0',
        payload: { requests: requests(3) },
      });
      expect(res.statusCode).toBe(503);
      expect(res.json().error.message).toMatch(/brings 3 new ones \(limit 2\); send at most 2 at a time/);
    } finally {
      await small.close();
    }
  });
});

describe('admission limits given to buildApi directly', () => {
  it.each([
    ['retryAfterSeconds', 1.5],
    ['retryAfterSeconds', -1],
    ['maxInferenceQueue', 2.5],
    ['maxInferenceQueue', Number.NaN],
  ] as const)('%s %s is refused (the node config checks them, a direct caller did not)', (k, v) => {
    expect(() => buildApi(lone.host, { [k]: v })).toThrow(`${k} must be an integer ≥ 0, got ${v}`);
  });
});
