// RemoteBackend: a 502 or 504 (typical of a proxy in front of the model server) says the server is
// unavailable, like a 503, so the node host retries it (isTransientInference) instead of voting an empty
// answer for the request. Until 2026-12-05 they were REMOTE_BAD_RESPONSE, which is not retried.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { RemoteBackend } from '../../src/inference/remote.ts';
import { isTransientInference } from '../../src/node/host.ts';
import { sendBinaryLogits, startFakeOip } from './fake-oip.ts';

const spec = catalogByName('mobilenet_v1_0.25_128_quant')!;
let status = 200;
let srv: Server;
let url = '';

beforeAll(async () => {
  ({ server: srv, url } = await startFakeOip((req, res) => {
    req.resume();
    req.on('end', () => {
      if (status === 200) return sendBinaryLogits(res, new Float32Array(1000).fill(1));
      res.writeHead(status, { 'content-type': 'text/html' });
      res.end('<html><body>gateway error</body></html>');
    });
  }));
});
afterAll(() => {
  srv.closeAllConnections();
  srv.close();
});

async function inferAt(s: number): Promise<unknown> {
  const rb = await RemoteBackend.connect({ url, model: 'm', digest: spec.sha256, timeoutMs: 5000 });
  try {
    status = s;
    return await rb.scores(new Float32Array(3 * 128 * 128)).then(
      (v) => ({ ok: v.length }),
      (e: unknown) => e,
    );
  } finally {
    status = 200;
    await rb.close();
  }
}

describe('RemoteBackend: HTTP 502, 503 and 504 on inference', () => {
  it.each([502, 503, 504])('%i is REMOTE_UNAVAILABLE, which the node host retries', async (s) => {
    const e = await inferAt(s);
    expect(e).toMatchObject({ code: 'REMOTE_UNAVAILABLE', details: { status: s } });
    expect(isTransientInference(e)).toBe(true);
  });

  it.each([400, 500])('%i stays REMOTE_BAD_RESPONSE, not retried', async (s) => {
    const e = await inferAt(s);
    expect(e).toMatchObject({ code: 'REMOTE_BAD_RESPONSE' });
    expect(isTransientInference(e)).toBe(false);
  });

  it('the server answers again once the proxy does', async () => {
    expect(await inferAt(200)).toEqual({ ok: 1000 });
  });
});

describe('RemoteBackend.connect: HTTP 502 and 504 on the metadata probes', () => {
  it.each([
    [502, '/v2'],
    [504, '/v2'],
    [502, '/v2/models/m'],
    [504, '/v2/models/m'],
  ])('%i on %s is REMOTE_UNAVAILABLE', async (s, failing) => {
    const gw = createServer((req, res) => {
      if (req.url === failing) {
        res.writeHead(s);
        return res.end('bad gateway');
      }
      if (req.url === '/v2') return res.end(JSON.stringify({ extensions: [] }));
      res.writeHead(404);
      res.end('{}');
    }).listen(0, '127.0.0.1');
    try {
      await new Promise((r) => gw.once('listening', r));
      const at = `http://127.0.0.1:${(gw.address() as AddressInfo).port}`;
      await expect(
        RemoteBackend.connect({ url: at, model: 'm', digest: spec.sha256, timeoutMs: 5000 }),
      ).rejects.toMatchObject({ code: 'REMOTE_UNAVAILABLE' });
    } finally {
      gw.closeAllConnections();
      await new Promise((r) => gw.close(r));
    }
  });
});
