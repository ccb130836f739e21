/**
 * RemoteBackend decodes and preprocesses images off the node's event loop. A 6000×6000 PNG kept the main
 * thread busy for ~0.6 s when the resize ran there, and the node's consensus timers and sockets share that
 * loop. The test counts the main thread's calls of the preprocessing function (decode.ts, wrapped here; the
 * worker threads load their own, unwrapped copy) while the remote backend classifies such an image: none.
 * It also prints the loop's longest stall against the same preprocessing done on the main thread, for the
 * reader only (timings are not asserted in unit tests on this shared machine).
 */
import type { Server } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { toModelInput } from '../../src/inference/decode.ts';

/** Calls of decode.ts's toModelInput on this (the main) thread. */
const mainThread = vi.hoisted(() => ({ preprocessed: 0 }));
vi.mock('../../src/inference/decode.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/inference/decode.ts')>();
  return {
    ...real,
    toModelInput: (...args: Parameters<typeof real.toModelInput>) => {
      mainThread.preprocessed++;
      return real.toModelInput(...args);
    },
  };
});

import { INFER_HEADER_LENGTH, RemoteBackend } from '../../src/inference/remote.ts';
import { sendBinaryLogits, startFakeOip } from './fake-oip.ts';

const spec = catalogByName('mobilenet_v1_0.25_128_quant')!;
const SIDE = 6000;
let srv: Server;
let url = '';
/** The binary input tensor of the last infer request, as the server received it. */
let lastTensor: Buffer | null = null;
let png: Uint8Array;

beforeAll(async () => {
  ({ server: srv, url } = await startFakeOip((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      lastTensor = body.subarray(Number(req.headers[INFER_HEADER_LENGTH]));
      const vals = new Float32Array(1000);
      vals[7] = 5;
      sendBinaryLogits(res, vals);
    });
  }));
  // A smooth 36 MP picture: ~8 MB of PNG (cheap to send to a worker), 108 MB of RGB once decoded.
  const small = Buffer.alloc(64 * 64 * 3);
  for (let i = 0; i < 64 * 64; i++) {
    small[3 * i] = (i * 7) & 255;
    small[3 * i + 1] = (i >> 6) * 4;
    small[3 * i + 2] = (i & 63) * 4;
  }
  png = new Uint8Array(
    await sharp(small, { raw: { width: 64, height: 64, channels: 3 } })
      .resize(SIDE, SIDE, { kernel: 'cubic' })
      .png({ compressionLevel: 6 })
      .toBuffer(),
  );
}, 120_000);

afterAll(() => {
  srv.closeAllConnections();
  srv.close();
});

/** The event loop's longest stall, in ms, while `work` runs. */
async function longestStall(work: () => Promise<unknown>): Promise<number> {
  // Let timers and I/O from earlier steps settle so that they do not count.
  await new Promise((r) => setTimeout(r, 50));
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  try {
    await work();
    await new Promise((r) => setTimeout(r, 20));
  } finally {
    h.disable();
  }
  return h.max / 1e6;
}

describe('RemoteBackend keeps decoding off the event loop', () => {
  it('a 6000×6000 PNG is decoded and resized on a worker thread, not on the event loop', async () => {
    const rb = await RemoteBackend.connect({ url, model: 'm', digest: spec.sha256, timeoutMs: 30_000 });
    try {
      // Warm both paths once (the worker's first decode loads libvips' PNG code; so does the main thread's).
      const expected = new Float32Array(3 * 128 * 128);
      await toModelInput(png, spec, 'fast', expected, 0);
      await rb.classify(png);

      const onMain = await longestStall(() =>
        toModelInput(png, spec, 'fast', new Float32Array(expected.length), 0),
      );
      let result: Awaited<ReturnType<RemoteBackend['classify']>> | undefined;
      const remote = await longestStall(async () => {
        result = await rb.classify(png);
      });
      console.log(
        `PNG ${png.length} bytes; longest event-loop stall: main-thread preprocessing ${onMain.toFixed(0)} ms, remote classify ${remote.toFixed(0)} ms`,
      );

      // No preprocessing on this thread for a remote classify: each of the three went to a worker.
      const before = mainThread.preprocessed;
      await rb.classify(png);
      expect(mainThread.preprocessed).toBe(before);
      expect(rb.stats().decoded).toBe(3);
      expect(rb.stats().prepMs).toBeGreaterThan(0);

      // The server got the tensor the main-thread path computes, and its answer came back.
      expect(result).toMatchObject({ kind: 'class' });
      expect(lastTensor).not.toBeNull();
      const sent = new Float32Array(
        lastTensor!.buffer.slice(lastTensor!.byteOffset, lastTensor!.byteOffset + lastTensor!.byteLength),
      );
      expect(sent).toEqual(expected);
    } finally {
      await rb.close();
    }
  }, 120_000);
});
