/**
 * What GET /metrics counts, read with a strict parser of the text format (test/support/prom-text.ts): one
 * stand-in NodeHost with no peers (what it accepts stays pending) and its NodeMetrics as observer, driven
 * with `inject`. Every number is compared with what the test sent.
 */
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildApi } from '../../src/node/api.ts';
import { NodeMetrics } from '../../src/node/metrics.ts';
import {
  type Certificate,
  encode,
  groupIdOf,
  hex,
  REQUEST_LIST_TYPE,
  RequestList,
  requestIdOf,
  SignedRequest,
  toJson,
} from '../../src/protocol/index.ts';
import { parsePromText, samplesOf, sampleValue } from '../support/prom-text.ts';
import { type LoneHost, openLoneHost } from './lone-host.ts';
import { standInRequest } from './standin-request.ts';

let lone: LoneHost;
let metrics: NodeMetrics;
let app: FastifyInstance;
let nonce = 1;
const BODY_LIMIT = 64 * 1024;

beforeAll(async () => {
  metrics = new NodeMetrics();
  lone = openLoneHost('api-metrics-', 21, metrics.observer());
  metrics.attach(lone.host, () => [1, 2, 3].map((id) => ({ id, state: id === 2 ? 'backoff' : 'connected' })));
  app = buildApi(lone.host, { metrics, bodyLimitBytes: BODY_LIMIT });
  await app.ready();
});

afterAll(async () => {
  await app.close();
  lone.close();
});

const fresh = () => standInRequest(lone.group, groupIdOf(lone.group.genesis), nonce++);
const post = (body: unknown, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url: '/v1/requests?wait=0', payload: body as string, headers });
const scrape = async () => parsePromText((await app.inject({ method: 'GET', url: '/metrics' })).body);
const rejected = async () =>
  Object.fromEntries(
    samplesOf(await scrape(), 'dropbear_requests_rejected_total').map((s) => [s.labels.reason, s.value]),
  );
const accepted = async () => sampleValue(await scrape(), 'dropbear_requests_accepted_total');

describe('requests accepted and refused', () => {
  // Before 2026-12-06 a request the node already held, sent again (a client retrying, or asking a node a peer
  // had already forwarded it to), was answered 202 like the first copy but counted as refused,
  // REQUEST_DUPLICATE: with every client sending to every node, the refusals an operator saw were mostly these.
  it('a request sent again while it is pending is answered as the first copy and is not counted as refused', async () => {
    const before = { accepted: await accepted(), rejected: await rejected() };
    const sr = fresh();
    const body = { request: toJson(SignedRequest, sr) };
    const first = await post(body);
    const again = await post(body);
    expect([first.statusCode, again.statusCode]).toEqual([202, 202]);
    expect(again.json().requestId).toBe(first.json().requestId);
    expect(await accepted()).toBe((before.accepted ?? 0) + 1);
    expect(await rejected()).toEqual(before.rejected);
  });

  // Before 2026-12-06 only refusals of single requests were counted: a call refused whole (its body over the
  // limit, not JSON, a binary list that does not decode) was in dropbear_http_responses_total alone, by
  // status, and an operator adding up refusals by code missed them.
  it('every refused call is counted once by its code, whether refused whole or request by request', async () => {
    const before = await rejected();
    const count = (code: string) => before[code] ?? 0;
    const big = JSON.stringify({ request: toJson(SignedRequest, fresh()), pad: 'x'.repeat(BODY_LIMIT) });
    expect((await post(big, { 'content-type': 'application/json' })).json().error.code).toBe(
      'BODY_TOO_LARGE',
    );
    expect((await post('{"request":', { 'content-type': 'application/json' })).json().error.code).toBe(
      'MALFORMED_JSON',
    );
    expect((await post({ requests: ['x'] })).json().error.code).toBe('BAD_REQUEST');
    const list = await post(Buffer.from([1, 2, 3]), { 'content-type': REQUEST_LIST_TYPE });
    expect(list.json().error.code).toBe('REQUEST_MALFORMED');
    // One bad signature alone (thrown by the route after submitAll counted it: counted once), and a call of
    // three, two of them refused (counted per request).
    const forged = fresh();
    if (forged.auth.kind !== 'single') throw new Error('expected a single signature');
    forged.auth.signature = forged.auth.signature.map((b, i) => (i === 0 ? b ^ 1 : b));
    expect((await post({ request: toJson(SignedRequest, forged) })).json().error.code).toBe(
      'REQUEST_BAD_SIGNATURE',
    );
    const stale = standInRequest(lone.group, groupIdOf(lone.group.genesis), nonce++);
    stale.request.timestamp -= 3_600_000;
    const mixed = await post({
      requests: [fresh(), forged, stale].map((r) => toJson(SignedRequest, r)).concat([{}]),
    });
    expect(mixed.statusCode, mixed.body).toBe(202);
    const binary = encode(RequestList, [fresh()]);
    expect((await post(Buffer.from(binary), { 'content-type': REQUEST_LIST_TYPE })).statusCode).toBe(202);
    expect(await rejected()).toEqual({
      ...before,
      BODY_TOO_LARGE: count('BODY_TOO_LARGE') + 1,
      MALFORMED_JSON: count('MALFORMED_JSON') + 1,
      BAD_REQUEST: count('BAD_REQUEST') + 1,
      REQUEST_MALFORMED: count('REQUEST_MALFORMED') + 2,
      REQUEST_BAD_SIGNATURE: count('REQUEST_BAD_SIGNATURE') + 2,
      REQUEST_EXPIRED: count('REQUEST_EXPIRED') + 1,
    });
  });

  it('a call turned away by admission counts each of its requests once; an infer call refused whole, once', async () => {
    const before = await rejected();
    const small = buildApi(lone.host, { metrics, maxPending: 1 });
    try {
      const res = await small.inject({
        method: 'POST',
        url: '/v1/requests?wait=0',
        payload: { requests: [fresh(), fresh(), fresh()].map((r) => toJson(SignedRequest, r)) },
      });
      expect(res.json().error.code).toBe('OVERLOADED');
      const one = await small.inject({
        method: 'POST',
        url: '/v1/requests?wait=0',
        payload: { request: toJson(SignedRequest, fresh()) },
      });
      expect(one.json().error.code).toBe('OVERLOADED');
    } finally {
      await small.close();
    }
    const oip = await app.inject({ method: 'POST', url: '/v2/models/other/infer', payload: { inputs: [] } });
    expect(oip.json().code).toBe('MODEL_NOT_FOUND');
    expect(await rejected()).toEqual({
      ...before,
      OVERLOADED: (before.OVERLOADED ?? 0) + 4,
      MODEL_NOT_FOUND: (before.MODEL_NOT_FOUND ?? 0) + 1,
    });
  });

  it('a call to another route is not a refused request', async () => {
    const before = await rejected();
    expect((await app.inject({ method: 'GET', url: '/v1/certificates/zz' })).statusCode).toBe(400);
    expect((await app.inject({ method: 'POST', url: '/v1/txs', payload: { tx: 1 } })).statusCode).toBe(400);
    expect(await rejected()).toEqual(before);
  });
});

describe('the text and its numbers', () => {
  it('parses strictly; histograms hold what was observed; routes not found share one label', async () => {
    for (const url of ['/nope', '/nope/"quoted"\\', `/x${'y'.repeat(50)}`])
      expect((await app.inject({ method: 'GET', url })).statusCode).toBe(404);
    const fams = await scrape();
    expect(
      sampleValue(fams, 'dropbear_http_responses_total', {
        method: 'GET',
        route: 'unmatched',
        status: '404',
      }),
    ).toBe(3);
    for (const s of samplesOf(fams, 'dropbear_http_responses_total'))
      expect(s.labels.route).not.toMatch(/nope/);
    expect(sampleValue(fams, 'dropbear_pending_requests')).toBe(lone.host.replica.pendingRequests);
    expect(sampleValue(fams, 'dropbear_view')).toBe(0);
    expect(samplesOf(fams, 'dropbear_peer_connected').map((s) => [s.labels.peer, s.value])).toEqual([
      ['1', 1],
      ['2', 0],
      ['3', 1],
    ]);
    // Every name says its unit or what it counts; every counter ends in _total (checked by the parser).
    for (const f of fams.values()) expect(f.name).toMatch(/^dropbear_[a-z_]+$/);
  });

  // Before 2026-12-06 the time from accept to certificate was measured on the wall clock: a clock stepped
  // back (NTP) between the two gave a negative observation, and a negative _sum.
  it('accept to certificate is measured on a monotonic clock', async () => {
    const sr = fresh();
    expect((await post({ request: toJson(SignedRequest, sr) })).statusCode).toBe(202);
    const now = Date.now();
    const spy = vi.spyOn(Date, 'now').mockReturnValue(now - 3_600_000);
    try {
      const cert = { outcome: { requestId: requestIdOf(sr) } } as unknown as Certificate;
      metrics.observer().certified([cert]);
    } finally {
      spy.mockRestore();
    }
    const fams = await scrape();
    expect(sampleValue(fams, 'dropbear_accept_to_certificate_seconds_count')).toBe(1);
    const sum = sampleValue(fams, 'dropbear_accept_to_certificate_seconds_sum') ?? Number.NaN;
    expect(sum).toBeGreaterThanOrEqual(0);
    expect(sum).toBeLessThan(5);
  });
});

describe('what the list says', () => {
  // The list of series at the top of src/node/metrics.ts (docs/api.md points there) against what a scrape has.
  it('every series listed is exported, and every series exported is listed', async () => {
    const source = readFileSync(new URL('../../src/node/metrics.ts', import.meta.url), 'utf8');
    const header = source.slice(0, source.indexOf('*/'));
    const listed = new Set(header.match(/dropbear_[a-z_]+[a-z]/g));
    listed.delete('dropbear_process'); // dropbear_process_*, dropbear_nodejs_*: prom-client's
    listed.delete('dropbear_nodejs');
    const m = new NodeMetrics();
    m.attach(lone.host, () => []);
    m.certificateExpiry(() => 1000);
    expect(new Set((await m.text()).match(/^# TYPE \S+/gm)?.map((l) => l.slice(7)))).toEqual(listed);
  });
});

describe('process metrics', () => {
  // Before 2026-12-06 (prom-client's event loop statistics) a scrape right after another read an empty
  // window: mean and stddev written `Nan`, min 9223372036854.776 s. A second scraper (an HA pair of
  // Prometheus servers) saw that now and then.
  it('scrapes in quick succession read finite, sensible event loop delays', async () => {
    const m = new NodeMetrics({ processMetrics: true });
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 3; i++) {
      const fams = parsePromText(await m.text());
      for (const key of ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99']) {
        const lag = sampleValue(fams, `dropbear_nodejs_eventloop_lag_${key}_seconds`);
        expect(lag, key).toBeGreaterThanOrEqual(0);
        expect(lag, key).toBeLessThan(10);
      }
      expect(sampleValue(fams, 'dropbear_process_start_time_seconds')).toBeGreaterThan(0);
    }
  });
});

describe('a wall clock stepped back', () => {
  // Before 2026-12-06 both were on the wall clock: after a step back of an hour (NTP, an operator) uptimeMs
  // was negative for an hour, and executedPerSecond (and the admission limit sized by it) kept the rate of
  // the last 5 s before the step for that hour, whatever the node did since.
  it('leaves uptimeMs and executedPerSecond to the time that really passed', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'] });
    try {
      const status = async () => (await app.inject({ method: 'GET', url: '/v1/status' })).json();
      const t0 = Date.now();
      const uptime0 = (await status()).uptimeMs as number;
      (lone.host as unknown as { noteExecuted(n: number): void }).noteExecuted(50);
      expect((await status()).executedPerSecond).toBe(10);
      vi.setSystemTime(t0 - 3_600_000);
      vi.advanceTimersByTime(6000);
      const s = await status();
      expect(s.uptimeMs - uptime0).toBeGreaterThanOrEqual(6000);
      expect(s.uptimeMs - uptime0).toBeLessThan(7000);
      expect(s.executedPerSecond).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});

// A call whose client hung up before its answer (a long poll given up, a client timeout) ran no onResponse
// hook, so it was in no series at all: an operator could not see clients giving up on the node.
describe('a call whose client leaves before the answer', () => {
  it('is counted in dropbear_http_requests_aborted_total by method and route', async () => {
    const sr = fresh();
    expect((await post({ request: toJson(SignedRequest, sr) })).statusCode).toBe(202);
    const route = '/v1/certificates/:requestId';
    const aborted = async () =>
      sampleValue(await scrape(), 'dropbear_http_requests_aborted_total', { method: 'GET', route }) ?? 0;
    const before = await aborted();
    // Listening for real (inject has no client to leave); afterAll closes it.
    const served = await app.listen({ port: 0, host: '127.0.0.1' });
    // Pending here for good (no peers): the long poll waits, and the client leaves once the node holds it
    // (a fixed 100 ms was too short on a loaded machine: the call was cut before the node had read it).
    const waitingBefore = lone.host.waiting;
    const leave = new AbortController();
    const call = fetch(`${served}/v1/certificates/${hex(requestIdOf(sr))}?wait=10000`, {
      signal: leave.signal,
    }).catch((e: unknown) => e);
    await vi.waitFor(() => expect(lone.host.waiting).toBe(waitingBefore + 1), { timeout: 10_000 });
    leave.abort();
    expect(await call).toBeInstanceOf(Error);
    for (let i = 0; i < 100 && (await aborted()) === before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await aborted()).toBe(before + 1);
  });
});
