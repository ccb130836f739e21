// The `reference` JPEG decoder (jpeg-js) refuses, before decoding, a frame whose declared size its memory
// bound or the file's size cannot hold: a 100 KB file declaring 60000×600 took 6.6–8 s and 1.2 GB before.
import { readdirSync, readFileSync } from 'node:fs';
import jpeg from 'jpeg-js';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { decodeImage, jpegFrame } from '../../src/inference/decode.ts';
import { MAX_PIXELS_PER_BYTE } from '../../src/inference/preprocess.ts';
import { DATA_DIR } from '../shared.ts';

const jpg = readFileSync(`${DATA_DIR}/sample/n01440764_tench.JPEG`);

/** The JPEG with its frame header's size rewritten, and `pad` bytes of comment segments after SOI. */
function declare(width: number, height: number, pad = 0): Buffer {
  const b = Buffer.from(jpg);
  for (let i = 2; i < b.length - 9; i++)
    if (b[i] === 0xff && (b[i + 1] === 0xc0 || b[i + 1] === 0xc2)) {
      b.writeUInt16BE(height, i + 5);
      b.writeUInt16BE(width, i + 7);
      break;
    }
  const segs: Buffer[] = [];
  for (let left = pad; left > 0; left -= 65533) {
    const n = Math.min(65533, left);
    const s = Buffer.alloc(n + 4);
    s[0] = 0xff;
    s[1] = 0xfe;
    s.writeUInt16BE(n + 2, 2);
    segs.push(s);
  }
  return Buffer.concat([b.subarray(0, 2), ...segs, b.subarray(2)]);
}

// decode.ts calls jpeg-js through this same module object: the spy counts the decodes it starts.
const jpegDecode = vi.spyOn(jpeg, 'decode');
afterAll(() => {
  jpegDecode.mockRestore();
});

/** The refusal's code, whether jpeg-js was set to decode the frame at all, and how much the process grew. */
async function refusal(bytes: Uint8Array) {
  const rss0 = process.memoryUsage().rss;
  const decodes0 = jpegDecode.mock.calls.length;
  const code = await decodeImage(bytes, 'reference').then(
    () => 'decoded',
    (e: { code?: string }) => e.code,
  );
  return {
    code,
    decodes: jpegDecode.mock.calls.length - decodes0,
    grewMB: (process.memoryUsage().rss - rss0) / 1e6,
  };
}

describe('reference JPEG decoder bounds', () => {
  it('reads the frame header', () => {
    const f = jpegFrame(declare(60000, 600))!;
    expect([f.width, f.height]).toEqual([60000, 600]);
  });

  // Refused before jpeg-js starts (its own memory limit refuses too, but only after seconds of work).
  it('refuses a 100 KB JPEG declaring 60000×600 before decoding, without allocating', async () => {
    const r = await refusal(declare(60000, 600));
    expect(r.code).toBe('INPUT_TOO_LARGE');
    expect(r.decodes).toBe(0);
    expect(r.grewMB).toBeLessThan(100);
  });

  it('refuses the same frame padded to 5 MB (the memory bound, not the density rule)', async () => {
    const r = await refusal(declare(60000, 600, 5_000_000));
    expect(r.code).toBe('INPUT_TOO_LARGE');
    expect(r.decodes).toBe(0);
    expect(r.grewMB).toBeLessThan(100);
  });

  it('still decodes the sample images, all far under the density bound', async () => {
    const dir = `${DATA_DIR}/sample`;
    for (const f of readdirSync(dir).filter((x) => /\.jpe?g$/i.test(x))) {
      const b = readFileSync(`${dir}/${f}`);
      const fr = jpegFrame(b)!;
      expect(fr.width * fr.height).toBeLessThan((MAX_PIXELS_PER_BYTE / 4) * b.length);
      const decodes0 = jpegDecode.mock.calls.length;
      const px = await decodeImage(b, 'reference');
      expect([px.width, px.height]).toEqual([fr.width, fr.height]);
      expect(jpegDecode.mock.calls.length - decodes0).toBe(1); // the spy sees the decodes it counts
    }
  }, 60_000);
});
