/**
 * The API's certificate (api.tls.cert) warned of as its expiry nears while the node runs, as the peers'
 * certificate is (Transport.watchCert: 14 days, 1 day, then an error once expired), not only at start: a node
 * started weeks before its certificate expires would otherwise say nothing until clients refuse it.
 */
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { watchApiCert } from '../../src/node/run.ts';

const DAY = 86_400_000;

beforeEach(() => {
  vi.useFakeTimers({ now: Date.UTC(2026, 11, 7) });
});
afterEach(() => {
  vi.useRealTimers();
});

it('warns 14 days and 1 day before the API certificate expires, and errs once it has, while the node runs', () => {
  const lines: { level: string; code: unknown }[] = [];
  const log = {
    warn: (o: { code?: unknown }) => lines.push({ level: 'warn', code: o.code }),
    error: (o: { code?: unknown }) => lines.push({ level: 'error', code: o.code }),
  };
  const stop = watchApiCert(Date.now() + 20 * DAY, 'api.crt', log);
  try {
    expect(lines).toEqual([]);
    vi.advanceTimersByTime(6 * DAY + 1000);
    expect(lines).toEqual([{ level: 'warn', code: 'API_TLS_CERT_EXPIRING' }]);
    vi.advanceTimersByTime(13 * DAY);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toEqual({ level: 'warn', code: 'API_TLS_CERT_EXPIRING' });
    vi.advanceTimersByTime(DAY);
    expect(lines).toHaveLength(3);
    expect(lines[2]).toEqual({ level: 'error', code: 'API_TLS_CERT_EXPIRED' });
  } finally {
    stop();
  }
  // Stopped: no timer left behind.
  expect(vi.getTimerCount()).toBe(0);
});

it('at start: a certificate already within 14 days is warned of at once', () => {
  const lines: string[] = [];
  const log = { warn: (o: { code?: unknown }) => lines.push(String(o.code)), error: () => {} };
  const stop = watchApiCert(Date.now() + 3 * DAY, 'api.crt', log);
  expect(lines).toEqual(['API_TLS_CERT_EXPIRING']);
  stop();
});
