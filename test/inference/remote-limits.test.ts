// RemoteBackend reads at most what a valid answer can take, and does not follow redirects.
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { inferResponseCap, RemoteBackend } from '../../src/inference/remote.ts';
import { sendBinaryLogits, startFakeOip } from './fake-oip.ts';

const spec = catalogByName('mobilenet_v1_0.25_128_quant')!;
let mode = 'ok';
let sentBytes = 0;
let srv: Server;
let url = '';

beforeAll(async () => {
  ({ server: srv, url } = await startFakeOip((req, res) => {
    req.resume();
    req.on('end', () => {
      if (mode === 'redirect') {
        res.writeHead(307, { location: '/v2/models/m/elsewhere' });
        return res.end();
      }
      if (mode === 'huge' || mode === 'huge-chunked') {
        // 400 MB of spaces, with or without a content-length.
        const total = 400 * 1024 * 1024;
        const chunk = Buffer.alloc(1 << 20, 0x20);
        sentBytes = 0;
        res.writeHead(200, mode === 'huge' ? { 'content-length': total } : {});
        const pump = (): void => {
          while (sentBytes < total && !res.destroyed) {
            sentBytes += chunk.length;
            if (!res.write(chunk)) {
              res.once('drain', pump);
              return;
            }
          }
          res.end();
        };
        res.on('close', () => {});
        return pump();
      }
      sendBinaryLogits(res, new Float32Array(1000).fill(1));
    });
  }));
});
afterAll(() => {
  srv.closeAllConnections();
  srv.close();
});

async function infer(m: string, extra = {}) {
  mode = m;
  const rb = await RemoteBackend.connect({ url, model: 'm', digest: spec.sha256, timeoutMs: 5000, ...extra });
  try {
    const x = new Float32Array(3 * 128 * 128);
    return await rb.scores(x).then(
      (s) => ({ ok: s.length }),
      (e: { code?: string; message: string }) => ({ code: e.code, message: e.message }),
    );
  } finally {
    await rb.close();
  }
}

describe('RemoteBackend response limits', () => {
  it('answers a valid response under the cap', async () => {
    expect(await infer('ok')).toEqual({ ok: 1000 });
  });

  it.each(['huge', 'huge-chunked'])(
    '%s: a 400 MB body fails with REMOTE_BAD_RESPONSE, mostly unread',
    async (m) => {
      const rss0 = process.memoryUsage().rss;
      const r = await infer(m);
      expect(r).toMatchObject({ code: 'REMOTE_BAD_RESPONSE' });
      expect((r as { message: string }).message).toMatch(/at most \d+/);
      expect((process.memoryUsage().rss - rss0) / 1e6).toBeLessThan(60);
    },
    20_000,
  );

  it('maxResponseBytes lowers the cap', async () => {
    expect(inferResponseCap(1, 1000)).toBeGreaterThan(4100);
    const r = await infer('ok', { maxResponseBytes: 1000 });
    expect(r).toMatchObject({ code: 'REMOTE_BAD_RESPONSE' });
  });

  it('options given as undefined take their defaults (a node config without timeoutMs passes undefined)', async () => {
    mode = 'ok';
    const rb = await RemoteBackend.connect({
      url,
      model: 'm',
      digest: spec.sha256,
      timeoutMs: undefined,
      decoder: undefined,
      prepWorkers: undefined,
    });
    try {
      expect((await rb.scores(new Float32Array(3 * 128 * 128))).length).toBe(1000);
    } finally {
      await rb.close();
    }
  });

  it('refuses a timeoutMs that is not an integer from 1 to 2^31 - 1 (the longest timer Node keeps)', async () => {
    // 0.5 made every exchange throw ERR_OUT_OF_RANGE (AbortSignal.timeout takes integers), and 2^31 made
    // every call time out after 1 ms; connect took both.
    for (const timeoutMs of [0, 0.5, -1, 2 ** 31, Number.NaN])
      await expect(
        RemoteBackend.connect({ url, model: 'm', digest: spec.sha256, timeoutMs }),
      ).rejects.toMatchObject({
        code: 'CONFIG_INVALID',
        message: expect.stringContaining('timeoutMs must be an integer from 1 to 2147483647'),
      });
    mode = 'ok';
    const rb = await RemoteBackend.connect({ url, model: 'm', digest: spec.sha256, timeoutMs: 2 ** 31 - 1 });
    try {
      expect((await rb.scores(new Float32Array(3 * 128 * 128))).length).toBe(1000);
    } finally {
      await rb.close();
    }
  });

  it('a redirect fails with a clear REMOTE_BAD_RESPONSE, not followed', async () => {
    const r = await infer('redirect');
    expect(r).toMatchObject({ code: 'REMOTE_BAD_RESPONSE' });
    expect((r as { message: string }).message).toMatch(
      /redirect \(HTTP 307 to \/v2\/models\/m\/elsewhere\).*not followed/,
    );
  });
});
