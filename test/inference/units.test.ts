import { describe, expect, it } from 'vitest';
import { DynamicBatcher } from '../../src/inference/batcher.ts';
import { CATALOG } from '../../src/inference/catalog.ts';
import { topK, toResult } from '../../src/inference/postprocess.ts';
import {
  centreCrop,
  decodeTensorInput,
  encodeTensorInput,
  fillsInput,
  floatToHalf,
  halfToFloat,
  imageSize,
  resizedDims,
  sniffInput,
  toHalf,
} from '../../src/inference/preprocess.ts';
import { resizeCrop } from '../../src/inference/resize.ts';
import { DropbearError } from '../../src/protocol/errors.ts';
import { encode, Result } from '../../src/protocol/index.ts';

describe('float16', () => {
  it('round-trips every finite half exactly and rounds floats to nearest even', () => {
    for (let h = 0; h < 0x10000; h++) {
      const e = (h >>> 10) & 0x1f;
      if (e === 0x1f) continue;
      expect(floatToHalf(halfToFloat(h))).toBe(h === 0x8000 ? 0x8000 : h);
    }
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // exactly halfway: to even
    expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(floatToHalf(70000)).toBe(0x7c00);
    expect(halfToFloat(floatToHalf(-123.939))).toBeCloseTo(-123.9375, 4);
  });
  it('toHalf gives floatToHalf bits for every exponent, sign and rounding case', () => {
    // Mantissas around the rounding point (bit 12 is half of the last kept bit), the carry into the
    // exponent (all kept bits set), and a spread of others, under each of the 256 exponents and both signs.
    const mants = [
      0, 1, 0xfff, 0x1000, 0x1001, 0x2fff, 0x3000, 0x3001, 0x7fe000, 0x7fefff, 0x7ff000, 0x7ff001,
    ];
    mants.push(0x7fffff, 0x400000, 0x2000, 0x123456, 0x654321);
    const words: number[] = [];
    for (let sign = 0; sign < 2; sign++)
      for (let exp = 0; exp < 256; exp++)
        for (const m of mants) words.push(((sign << 31) | (exp << 23) | m) >>> 0);
    let seed = 7;
    for (let i = 0; i < 50_000; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      words.push((seed ^ (seed << 13)) >>> 0);
    }
    // A view with an offset, and a destination that is a window of a larger array (as the batcher uses it).
    const buf = new Uint32Array(words.length + 3);
    buf.set(words, 3);
    const src = new Float32Array(buf.buffer, 12, words.length);
    const big = new Uint16Array(words.length + 10).fill(0xabcd);
    const out = toHalf(src, big.subarray(5, 5 + words.length));
    let wrong = 0;
    for (let i = 0; i < words.length; i++) if (out[i] !== floatToHalf(src[i])) wrong++;
    expect(wrong).toBe(0);
    expect([big[4], big[5 + words.length]]).toEqual([0xabcd, 0xabcd]);
    expect(Array.from(toHalf(new Float32Array([1, -2, 65504, 65520, 2 ** -14, 0, -0])))).toEqual([
      0x3c00, 0xc000, 0x7bff, 0x7c00, 0x0400, 0, 0x8000,
    ]);
  });
});

describe('topK and results', () => {
  it('ties go to the lowest index, order is by score', () => {
    expect(topK([1, 5, 5, 3, 5, 0, 9], 5)).toEqual([6, 1, 2, 4, 3]);
    expect(topK([2, 2, 2, 2, 2, 2], 3)).toEqual([0, 1, 2]);
  });
  it('logits become softmax millionths; probabilities pass through', () => {
    const r = toResult([0, Math.log(3), 0, 0], 'logits');
    expect(r).toEqual({
      kind: 'class',
      top: [
        { label: 1, score: 500_000 },
        { label: 0, score: 166_667 },
        { label: 2, score: 166_667 },
        { label: 3, score: 166_667 },
      ],
    });
    const p = toResult([0.1, 0.7, 0.2], 'probabilities');
    expect(p.kind === 'class' && p.top.map((t) => t.score)).toEqual([700_000, 200_000, 100_000]);
  });
  it('outputs driven to ±Infinity or NaN by a crafted input give a Result that encodes (signing one threw)', () => {
    const inf = Number.POSITIVE_INFINITY;
    const scores = (xs: number[], m: 'logits' | 'probabilities') => {
      const r = toResult(xs, m);
      expect(() => encode(Result, r)).not.toThrow();
      return r.kind === 'class' ? r.top.map((t) => [t.label, t.score]) : null;
    };
    expect(scores([1, inf, 3, inf], 'logits')).toEqual([
      [1, 500_000],
      [3, 500_000],
      [2, 0],
      [0, 0],
    ]);
    expect(scores([-inf, -inf, -inf], 'logits')).toEqual([
      [0, 0],
      [1, 0],
      [2, 0],
    ]);
    expect(scores([Number.NaN, 0, Math.log(3), -inf], 'logits')).toEqual([
      [2, 750_000],
      [1, 250_000],
      [3, 0],
    ]);
    expect(scores([inf, 0.5, Number.NaN, -inf], 'probabilities')).toEqual([
      [0, 1_000_000],
      [1, 500_000],
      [3, 0],
    ]);
  });
});

describe('geometry and formats', () => {
  it('resizes the shorter side and centres the crop as MANIFEST.md says', () => {
    expect(resizedDims(227, 227, 256)).toEqual({ width: 256, height: 256 });
    expect(resizedDims(500, 375, 256)).toEqual({ width: 341, height: 256 });
    expect(resizedDims(375, 500, 146)).toEqual({ width: 146, height: 195 });
    expect(centreCrop(341, 256, 224)).toEqual({ left: 59, top: 16 });
  });
  it('the resize of a flat image is flat, and a 2× downscale uses the widened triangle', () => {
    const flat = new Uint8Array(30 * 20 * 3).fill(77);
    expect(new Set(resizeCrop(flat, 30, 20, 3, 15, 10, 0, 0, 10))).toEqual(new Set([77]));
    const grey = Uint8Array.from([0, 100, 200, 40]);
    // 4×1 → 2×1: output 0 is centred at 1.0 with support 2: inputs 0, 1, 2 weigh 3/7, 3/7, 1/7 (PIL gives 71).
    expect([...resizeCrop(grey, 4, 1, 1, 2, 1, 0, 0, 1)]).toEqual([71]);
  });
  it('DBT1 tensors round-trip and malformed ones are refused', () => {
    const t = { dtype: 'float32' as const, dims: [1, 2], data: new Uint8Array(8).fill(1) };
    const enc = encodeTensorInput(t);
    expect(sniffInput(enc)).toBe('tensor');
    expect(decodeTensorInput(enc)).toEqual(t);
    for (const bad of [
      enc.subarray(0, 5),
      enc.subarray(0, enc.length - 1),
      Uint8Array.from([...enc.subarray(0, 4), 9, 1]),
    ]) {
      expect(() => decodeTensorInput(bad)).toThrow(DropbearError);
    }
    expect(sniffInput(Uint8Array.from([0xff, 0xd8, 0xff, 0xe0]))).toBe('jpeg');
    expect(sniffInput(Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe('png');
  });
});

describe('dynamic batcher', () => {
  // The runner stands in for a session: it echoes each item's first value, after a delay.
  function echo(delayMs: number, log: number[]) {
    return async (data: Float32Array | Uint16Array, n: number) => {
      log.push(n);
      await new Promise((r) => setTimeout(r, delayMs));
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = data[i * 2];
      return { data: out, ms: delayMs };
    };
  }
  /** A batcher of 2-value items over `echo`, one batch in flight. */
  function echoBatcher(
    delayMs: number,
    log: number[],
    o: { maxBatch: number; maxDelayMs: number; maxQueue: number },
  ) {
    return new DynamicBatcher(2, 1, echo(delayMs, log), { ...o, maxInFlight: 1 });
  }

  it('cuts batches at maxBatch and answers each item with its own output', async () => {
    const log: number[] = [];
    const b = echoBatcher(5, log, { maxBatch: 4, maxDelayMs: 50, maxQueue: 100 });
    const outs = await Promise.all(Array.from({ length: 10 }, (_, i) => b.submit(Float32Array.of(i, 0))));
    expect(outs.map((o) => o[0])).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(log.slice(0, 2)).toEqual([4, 4]);
    expect(log.reduce((a, x) => a + x, 0)).toBe(10);
  });

  it('a lone item waits at most maxDelayMs', async () => {
    const log: number[] = [];
    const b = echoBatcher(0, log, { maxBatch: 64, maxDelayMs: 20, maxQueue: 100 });
    const t0 = performance.now();
    await b.submit(Float32Array.of(1, 0));
    expect(performance.now() - t0).toBeGreaterThanOrEqual(19);
    expect(log).toEqual([1]);
  });

  it('refuses past maxQueue with OVERLOADED, wrong sizes with INPUT_SHAPE, and fails waiting items on close', async () => {
    const b = echoBatcher(50, [], { maxBatch: 1, maxDelayMs: 0, maxQueue: 3 });
    const ps = Array.from({ length: 6 }, (_, i) =>
      b.submit(Float32Array.of(i, 0)).catch((e: DropbearError) => e.code),
    );
    const wrong = await b.submit(Float32Array.of(1)).catch((e: DropbearError) => e.code);
    expect(wrong).toBe('INPUT_SHAPE');
    b.close();
    const r = await Promise.all(ps);
    expect(r.filter((x) => x === 'OVERLOADED')).toHaveLength(2);
    expect(r.filter((x) => x === 'ENGINE_CLOSED')).toHaveLength(3);
    expect(b.stats.rejected).toBe(2);
  });

  it('an item no longer wanted when its batch forms is refused with INFERENCE_SKIPPED and never run', async () => {
    const log: number[] = [];
    const b = echoBatcher(30, log, { maxBatch: 2, maxDelayMs: 0, maxQueue: 100 });
    const wanted = Array.from({ length: 6 }, () => true);
    const ps = wanted.map((_, i) =>
      b
        .submit(Float32Array.of(i, 0), () => wanted[i])
        .then(
          (o) => o[0],
          (e: DropbearError) => e.code,
        ),
    );
    // Item 0 went at once (no delay) and is running; 2, 4 and 5 stop being wanted while they wait.
    wanted[2] = false;
    wanted[4] = false;
    wanted[5] = false;
    expect(await Promise.all(ps)).toEqual([
      0,
      1,
      'INFERENCE_SKIPPED',
      3,
      'INFERENCE_SKIPPED',
      'INFERENCE_SKIPPED',
    ]);
    // Then one batch of 1 and 3: the skipped 2 took no place in it, and 4 and 5 formed none.
    expect(log).toEqual([1, 2]);
    expect(b.stats.skipped).toBe(3);
    expect(b.stats.items).toBe(3);
  });

  it('a runner failure rejects that batch only', async () => {
    let calls = 0;
    const b = new DynamicBatcher(
      1,
      1,
      async (d, n) => {
        if (calls++ === 0) throw new DropbearError('INFERENCE_FAILED', 'boom');
        return { data: Float32Array.from(d.subarray(0, n)), ms: 0 };
      },
      { maxBatch: 2, maxDelayMs: 0, maxQueue: 10, maxInFlight: 1 },
    );
    const first = await b.submit(Float32Array.of(1)).catch((e: DropbearError) => e.code);
    expect(first).toBe('INFERENCE_FAILED');
    expect([...(await b.submit(Float32Array.of(7)))]).toEqual([7]);
  });
});

describe('fillsInput (whether a preprocessing output buffer may be reused uncleared)', () => {
  it('holds for every catalog model, and not where the image size does not make up the input', () => {
    for (const m of CATALOG) expect(fillsInput(m), m.name).toBe(true);
    const m = CATALOG.find((x) => x.preprocess.kind === 'image')!;
    const smaller = {
      ...m,
      preprocess: { ...m.preprocess, size: (m.preprocess as { size: number }).size - 1 },
    };
    expect(fillsInput(smaller as typeof m)).toBe(false);
  });
});

describe('dynamic batcher, buffer reuse', () => {
  it('builds later batches in the buffers the runner hands back; a smaller batch sees only its own items', async () => {
    const buffers: ArrayBuffer[] = [];
    const lengths: number[] = [];
    const b = new DynamicBatcher(
      2,
      1,
      async (d, n) => {
        buffers.push(d.buffer as ArrayBuffer);
        lengths.push(d.length);
        const out = new Float32Array(n);
        for (let i = 0; i < n; i++) out[i] = d[2 * i] + d[2 * i + 1];
        return { data: out, ms: 0, input: d.buffer as ArrayBuffer };
      },
      { maxBatch: 4, maxDelayMs: 50, maxQueue: 10, maxInFlight: 1 },
    );
    const sums = (xs: number[][]) =>
      Promise.all(xs.map((x) => b.submit(Float32Array.from(x)).then((o) => o[0])));
    expect(
      await sums([
        [1, 2],
        [3, 4],
        [5, 6],
        [7, 8],
      ]),
    ).toEqual([3, 7, 11, 15]);
    expect(await sums([[10, 20]])).toEqual([30]);
    expect(
      await sums([
        [1, 1],
        [2, 2],
      ]),
    ).toEqual([2, 4]);
    // One buffer throughout: the first batch's (4 items); the later ones used a prefix of it.
    expect(buffers[1]).toBe(buffers[0]);
    expect(buffers[2]).toBe(buffers[0]);
    expect(lengths).toEqual([8, 2, 4]);
    expect(b.reusedBuffers).toBe(2);
  });

  it('takes the smallest spare buffer that fits, so the large ones stay for large batches', async () => {
    const used: number[] = [];
    const running: (() => void)[] = [];
    const b = new DynamicBatcher(
      1,
      1,
      async (d, n) => {
        used.push(d.buffer.byteLength);
        await new Promise<void>((r) => running.push(r));
        return { data: Float32Array.from(d.subarray(0, n)), ms: 0, input: d.buffer as ArrayBuffer };
      },
      { maxBatch: 4, maxDelayMs: 5, maxQueue: 100, maxInFlight: 2 },
    );
    const until = async (ok: () => boolean) => {
      while (!ok()) await new Promise((r) => setTimeout(r, 1));
    };
    // Two batches in flight at once, of 4 items and of 1 (4-byte floats): two new buffers.
    const four = Promise.all([1, 2, 3, 4].map((x) => b.submit(Float32Array.of(x))));
    await until(() => running.length === 1);
    const one = b.submit(Float32Array.of(5));
    await until(() => running.length === 2);
    expect(used).toEqual([16, 4]);
    // Handed back larger first: the spares are [16, 4] in that order.
    running[0]();
    await four;
    running[1]();
    await one;
    // A batch of one takes the 4-byte spare, not the first one that fits.
    const again = b.submit(Float32Array.of(6));
    await until(() => running.length === 3);
    running[2]();
    expect([...(await again)]).toEqual([6]);
    expect(used).toEqual([16, 4, 4]);
    expect(b.reusedBuffers).toBe(1);
  });

  it('releases the inputs submitted as owned once they are copied into a batch, and only those', async () => {
    const released: number[] = [];
    const b = new DynamicBatcher(
      1,
      1,
      async (d, n) => ({ data: Float32Array.from(d.subarray(0, n)), ms: 0 }),
      {
        maxBatch: 4,
        maxDelayMs: 20,
        maxQueue: 10,
        maxInFlight: 1,
        release: (x) => released.push(x[0]),
      },
    );
    const wanted = [true, true, false, true];
    const outs = await Promise.all(
      [1, 2, 3, 4].map((v, i) =>
        b
          .submit(Float32Array.of(v), () => wanted[i], v !== 2)
          .then(
            (o) => o[0],
            (e: DropbearError) => e.code,
          ),
      ),
    );
    // Item 2 was not owned (kept by its caller), item 3 was never copied (no longer wanted).
    expect(outs).toEqual([1, 2, 'INFERENCE_SKIPPED', 4]);
    expect(released).toEqual([1, 4]);
  });

  it('without a buffer handed back, every batch gets a new one', async () => {
    const buffers: ArrayBuffer[] = [];
    const b = new DynamicBatcher(
      1,
      1,
      async (d, n) => {
        buffers.push(d.buffer as ArrayBuffer);
        return { data: Float32Array.from(d.subarray(0, n)), ms: 0 };
      },
      { maxBatch: 1, maxDelayMs: 0, maxQueue: 10, maxInFlight: 1 },
    );
    expect([...(await b.submit(Float32Array.of(5)))]).toEqual([5]);
    expect([...(await b.submit(Float32Array.of(6)))]).toEqual([6]);
    expect(buffers[1]).not.toBe(buffers[0]);
    expect(b.reusedBuffers).toBe(0);
  });
});

describe('dynamic batcher, float16', () => {
  it('builds half-precision batches on the caller side when the model takes float16', async () => {
    let seen: Float32Array | Uint16Array | null = null;
    const b = new DynamicBatcher(
      2,
      1,
      async (d, n) => {
        seen = d;
        return { data: new Float32Array(n), ms: 0 };
      },
      { maxBatch: 2, maxDelayMs: 50, maxQueue: 10, maxInFlight: 1, half: true },
    );
    await Promise.all([b.submit(Float32Array.of(1, -2)), b.submit(Float32Array.of(0.5, 65504))]);
    expect(seen).toBeInstanceOf(Uint16Array);
    expect([...(seen as unknown as Uint16Array)]).toEqual([0x3c00, 0xc000, 0x3800, 0x7bff]);
  });
  it('copies items that arrive as half bits, converts float items beside them, and refuses half bits for a float32 model', async () => {
    let seen: Float32Array | Uint16Array | null = null;
    const b = new DynamicBatcher(
      2,
      1,
      async (d, n) => {
        seen = d.slice();
        return { data: new Float32Array(n), ms: 0 };
      },
      { maxBatch: 2, maxDelayMs: 50, maxQueue: 10, maxInFlight: 1, half: true },
    );
    // Arbitrary bits (a NaN pattern among them): copied, never reinterpreted.
    await Promise.all([b.submit(Uint16Array.of(0x7e01, 0x0001)), b.submit(Float32Array.of(-1, 2))]);
    expect([...(seen as unknown as Uint16Array)]).toEqual([0x7e01, 0x0001, 0xbc00, 0x4000]);
    const f = new DynamicBatcher(2, 1, async (_d, n) => ({ data: new Float32Array(n), ms: 0 }), {
      maxBatch: 2,
      maxDelayMs: 1,
      maxQueue: 10,
      maxInFlight: 1,
    });
    await expect(f.submit(Uint16Array.of(1, 2))).rejects.toMatchObject({ code: 'INPUT_SHAPE' });
    expect([...(await f.submit(Float32Array.of(1, 2)))]).toEqual([0]);
  });
});

describe('imageSize (the API input check reads the header alone)', () => {
  it('agrees with libvips on every val image, on PNGs, and on progressive JPEGs', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const sharp = (await import('sharp')).default;
    const { SHARED } = await import('../shared.ts');
    const dir = join(SHARED, 'datasets/imagenet-sample/val');
    const files = readdirSync(dir).filter((f) => f.endsWith('.JPEG'));
    expect(files.length).toBeGreaterThan(100);
    for (const f of files) {
      const bytes = new Uint8Array(readFileSync(join(dir, f)));
      const m = await sharp(bytes).metadata();
      expect(imageSize(bytes), f).toEqual({ width: m.width, height: m.height });
    }
    const raw = { raw: { width: 37, height: 21, channels: 3 as const } };
    const pixels = Buffer.alloc(37 * 21 * 3, 90);
    const png = new Uint8Array(await sharp(pixels, raw).png().toBuffer());
    expect(imageSize(png)).toEqual({ width: 37, height: 21 });
    const prog = new Uint8Array(await sharp(pixels, raw).jpeg({ progressive: true }).toBuffer());
    expect(imageSize(prog)).toEqual({ width: 37, height: 21 });
    // Truncated inside the header, garbage after SOI, a bad PNG chunk: no size.
    expect(imageSize(prog.subarray(0, 30))).toBeNull();
    expect(imageSize(new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 37, ...new Array(60).fill(7)]))).toBeNull();
    const badPng = png.slice();
    badPng[12] = 0x78;
    expect(imageSize(badPng)).toBeNull();
    expect(imageSize(new Uint8Array([1, 2, 3]))).toBeNull();
  });
});
