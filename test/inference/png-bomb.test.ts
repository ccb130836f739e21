// PNGs whose header declares a size that decoding would pay for far beyond the bytes sent are refused
// before libvips sees them, with INPUT_TOO_LARGE, by the node's input check and by decoding alike
// (preprocess.ts, checkDeclaredSize): a side over 65500 (a 156 KB PNG of 1×40,000,000 pixels held a
// preprocessing worker for 33–50 s, past the 30 s worker timeout) and, over 2 MP, more than 128 pixels per
// byte of file (a 117 KB 6324×6324 PNG took ~640 ms). Real photos, as JPEG or PNG, still pass.
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { crc32, createDeflate } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { decodeImage } from '../../src/inference/decode.ts';
import { InferenceEngine } from '../../src/inference/engine.ts';
import { checkInput } from '../../src/node/api.ts';
import { DATA_DIR, MODELS_DIR } from '../shared.ts';

const NAME = 'mobilenet_v1_0.25_128_quant';
const spec = catalogByName(NAME)!;

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/**
 * A valid, black, 8-bit RGB PNG of `width`×`height` (not interlaced), deflated at level 9 as one IDAT: as
 * small as a PNG of that size gets (~340 pixels a byte). Made with zlib, in about a second for 40 MP.
 */
async function blackPng(width: number, height: number): Promise<Buffer> {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  // Every row: filter byte 0, then zero samples.
  const total = (1 + 3 * width) * height;
  const zeros = Buffer.alloc(Math.min(total, 1 << 20));
  const z = createDeflate({ level: 9 });
  const out: Buffer[] = [];
  z.on('data', (c: Buffer) => out.push(c));
  for (let left = total; left > 0; left -= zeros.length)
    z.write(left >= zeros.length ? zeros : zeros.subarray(0, left));
  z.end();
  await once(z, 'end');
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([
    signature,
    chunk('IHDR', ihdr),
    chunk('IDAT', Buffer.concat(out)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const code = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: { code?: string }) => e.code ?? String(e),
  );

/**
 * decodeImage's outcome: its error code and message, or 'ok'; given up on (not ended: libvips runs on)
 * after `limitMs`, far above a refusal (milliseconds) and far below what decoding the 1×40,000,000 PNG
 * took (33–50 s). No test here times anything: that a refusal came before decoding is shown by its
 * message, which names the declared-size rule (checkDeclaredSize), not by how fast it came.
 */
async function decodeOutcome(bytes: Uint8Array, limitMs = 15_000) {
  const outcome = await Promise.race([
    decodeImage(bytes, 'fast').then(
      () => ({ code: 'ok', message: '' }),
      (e: { code?: string; message?: string }) => ({ code: e.code ?? String(e), message: e.message ?? '' }),
    ),
    new Promise<{ code: string; message: string }>((r) =>
      setTimeout(() => r({ code: `still decoding after ${limitMs} ms`, message: '' }), limitMs).unref(),
    ),
  ]);
  return outcome;
}

const engines: InferenceEngine[] = [];
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
});

describe('PNG bounds, before decoding', () => {
  it('refuses a 156 KB PNG of 1×40,000,000 pixels (a side over 65500) at once, in the input check and in decoding', async () => {
    const png = await blackPng(1, 40_000_000);
    expect(png.length).toBeLessThan(160_000);
    // libvips itself reads it (its own 40 MP limit passes it).
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height]).toEqual([1, 40_000_000]);
    expect(await code(checkInput(png, spec))).toBe('INPUT_TOO_LARGE');
    await expect(checkInput(png, spec)).rejects.toThrow(/65500/);
    const r = await decodeOutcome(png);
    expect(r.code).toBe('INPUT_TOO_LARGE');
    expect(r.message).toMatch(/65500/);
  });

  it('refuses a PNG of 40,000,000×1 pixels, and 1×65501, for their side', async () => {
    for (const [w, h] of [
      [40_000_000, 1],
      [1, 65501],
    ]) {
      const png = await blackPng(w, h);
      expect(await code(checkInput(png, spec)), `${w}×${h}`).toBe('INPUT_TOO_LARGE');
      const r = await decodeOutcome(png);
      expect(r.code, `${w}×${h}`).toBe('INPUT_TOO_LARGE');
      expect(r.message, `${w}×${h}`).toMatch(/65500/);
    }
  });

  it('refuses a 117 KB 6324×6324 PNG (342 pixels a byte) at once, in the input check and in decoding', async () => {
    const png = await blackPng(6324, 6324);
    expect(png.length).toBeLessThan(120_000);
    expect(await code(checkInput(png, spec))).toBe('INPUT_TOO_LARGE');
    await expect(checkInput(png, spec)).rejects.toThrow(/128 pixels a byte/);
    const r = await decodeOutcome(png);
    expect(r.code).toBe('INPUT_TOO_LARGE');
    expect(r.message).toMatch(/128 pixels a byte/);
  });

  it('an engine refuses both at once, and a JPEG sent after them is answered without waiting', async () => {
    const e = await InferenceEngine.start({ modelPath: `${MODELS_DIR}/${NAME}.onnx`, spec });
    engines.push(e);
    const jpg = readFileSync(`${DATA_DIR}/sample/n01440764_tench.JPEG`);
    const tall = await blackPng(1, 40_000_000);
    const dense = await blackPng(6324, 6324);
    // Without the bounds the tall PNG held a preprocessing worker 33–50 s (and was retried); 15 s is far
    // above an answer on a loaded machine, far below that: an outcome, not a timing.
    const limit = (p: Promise<unknown>) =>
      Promise.race([
        code(p),
        new Promise<string>((r) => setTimeout(() => r('unanswered after 15 s'), 15_000).unref()),
      ]);
    const all = await Promise.all([
      limit(e.classify(tall)),
      limit(e.classify(dense)),
      limit(e.classify(jpg)),
    ]);
    expect(all).toEqual(['INPUT_TOO_LARGE', 'INPUT_TOO_LARGE', 'ok']);
  }, 60_000);

  it('still takes the bounds themselves: 1×65500, and a flat PNG of 2 MP (the density rule starts above)', async () => {
    for (const [w, h] of [
      [1, 65500],
      [1000, 2000],
    ]) {
      const png = await blackPng(w, h);
      expect(await code(checkInput(png, spec)), `${w}×${h}`).toBe('ok');
      const px = await decodeImage(png, 'fast');
      expect([px.width, px.height]).toEqual([w, h]);
    }
  });

  it('still takes real photos as PNG, and every data-set JPEG', async () => {
    const sample = readdirSync(`${DATA_DIR}/sample`).filter((f) => /\.jpe?g$/i.test(f));
    const val = readdirSync(`${DATA_DIR}/val`).filter((f) => /\.jpe?g$/i.test(f));
    expect(sample.length + val.length).toBe(500);
    for (const f of [...sample.map((x) => `sample/${x}`), ...val.map((x) => `val/${x}`)]) {
      const b = readFileSync(`${DATA_DIR}/${f}`);
      expect(await code(checkInput(b, spec)), f).toBe('ok');
      expect(await code(decodeImage(b, 'fast')), f).toBe('ok');
    }
    // A few full-size photos as PNG (0.3–1 pixel a byte), at the strongest compression.
    for (const f of sample.slice(0, 6)) {
      const png = await sharp(readFileSync(`${DATA_DIR}/sample/${f}`))
        .png({ compressionLevel: 9 })
        .toBuffer();
      expect(await code(checkInput(png, spec)), f).toBe('ok');
      const meta = await sharp(png).metadata();
      const px = await decodeImage(png, 'fast');
      expect([px.width, px.height], f).toEqual([meta.width, meta.height]);
    }
  }, 120_000);
});
