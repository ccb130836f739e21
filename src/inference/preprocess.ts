/**
 * The pure parts of preprocessing: input sniffing, the DBT1 raw-tensor format, resize geometry and
 * normalisation as MANIFEST.md specifies (shorter side to R, centre crop S×S, per-model scaling into NCHW),
 * and float16 conversion. Decoding is in decode.ts.
 */
import { DropbearError } from '../protocol/index.ts';
import type { ImagePreprocess, ModelSpec } from './spec.ts';

export const MAX_IMAGE_PIXELS = 40_000_000;

/**
 * Bounds on the size a JPEG or PNG declares, checked from its header before any decoder runs (the node's
 * input check, api.ts checkInput, and decode.ts before decoding; `checkDeclaredSize`), all refused with
 * INPUT_TOO_LARGE, the code of the 40 MP limit:
 * - MAX_IMAGE_SIDE: libjpeg's largest side (JPEG_MAX_DIMENSION), for PNG too. libvips decodes a PNG a row
 *   at a time with a fixed cost per row (~1 µs): a 156 KB PNG of 1×40,000,000 pixels held a
 *   preprocessing worker for 33–50 s (past the 30 s worker timeout); 1×65,500 takes ~75 ms.
 * - MAX_PIXELS_PER_BYTE: an image over DENSITY_FREE_PIXELS (2 MP) must not declare more than 128 pixels
 *   per byte of file, so that decoding costs in proportion to the bytes sent. Photos take 5–20 pixels a
 *   byte as JPEG, 0.3–1 as PNG; a flat baseline JPEG needs ~3 bits per 64 pixels. Deflate compresses at
 *   most ~1032:1, so a PNG of one flat colour reaches ~340 pixels a byte in 8-bit RGB and thousands at 1
 *   bit: a 117 KB 6324×6324 PNG took ~640 ms to decode (docs/inference.md, "Input bounds").
 */
export const MAX_IMAGE_SIDE = 65500;
export const MAX_PIXELS_PER_BYTE = 128;
export const DENSITY_FREE_PIXELS = 2_000_000;

/**
 * Refuses (INPUT_TOO_LARGE) a JPEG or PNG of `byteLength` bytes whose header declares `width`×`height`
 * over the bounds above or MAX_IMAGE_PIXELS.
 */
export function checkDeclaredSize(
  kind: 'jpeg' | 'png',
  width: number,
  height: number,
  byteLength: number,
): void {
  const name = kind.toUpperCase();
  if (width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE)
    throw new DropbearError(
      'INPUT_TOO_LARGE',
      `${name} of ${width}×${height} pixels: a side is over the limit of ${MAX_IMAGE_SIDE}`,
    );
  const px = width * height;
  if (px > MAX_IMAGE_PIXELS)
    throw new DropbearError(
      'INPUT_TOO_LARGE',
      `image of ${width}×${height} pixels is over the limit of ${MAX_IMAGE_PIXELS}`,
    );
  if (px > DENSITY_FREE_PIXELS && px > MAX_PIXELS_PER_BYTE * byteLength)
    throw new DropbearError(
      'INPUT_TOO_LARGE',
      `${name} declares ${width}×${height} pixels in ${byteLength} bytes: more than ${MAX_PIXELS_PER_BYTE} pixels a byte`,
    );
}

/**
 * Refuses (INPUT_TOO_LARGE) a uint8 [H, W, 3] DBT1 tensor (an already-decoded image) with a side over
 * MAX_IMAGE_SIDE or over MAX_IMAGE_PIXELS: the node's input check (api.ts, checkInput) and decoding
 * (decode.ts). It is not decoded, so the density bound does not apply, but the resize's scratch grows with
 * a side: the grey 28×28 path (MNIST) resizes the whole image through H × 28 floats, and a [2,000,000, 1, 3]
 * tensor (6 MB) took 224 MB of scratch and 32 MB of taps for one call, ~1.2 s of CPU on every node (~2.4 GB
 * for the 64 MiB of a serve-model body). At 65,500 rows that is 7.3 MB; the 224-pixel colour path needs
 * rows of the shorter side only (at most √40 MP).
 */
export function checkTensorImageSize(width: number, height: number): void {
  if (width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE)
    throw new DropbearError(
      'INPUT_TOO_LARGE',
      `image tensor of ${width}×${height} pixels: a side is over the limit of ${MAX_IMAGE_SIDE}`,
    );
  if (width * height > MAX_IMAGE_PIXELS)
    throw new DropbearError(
      'INPUT_TOO_LARGE',
      `image of ${width}×${height} pixels is over the limit of ${MAX_IMAGE_PIXELS}`,
    );
}

/** Raw tensor inputs start with this magic; see `encodeTensorInput`. */
const TENSOR_MAGIC = [0x44, 0x42, 0x54, 0x31]; // "DBT1"
const DTYPES = ['uint8', 'float32', 'float16'] as const;
export type InputDtype = (typeof DTYPES)[number];

export interface TensorInput {
  dtype: InputDtype;
  dims: number[];
  /** Little-endian element bytes. */
  data: Uint8Array;
}

/**
 * A raw tensor as request input: "DBT1", dtype (0 uint8, 1 float32, 2 float16), rank, each dim as a
 * little-endian uint32, then the elements little-endian. A uint8 [H, W, 3] tensor is an already-decoded
 * RGB image (preprocessed like a JPEG); any other tensor must be exactly the model's input.
 */
export function encodeTensorInput(t: TensorInput): Uint8Array {
  const header = 4 + 2 + 4 * t.dims.length;
  const out = new Uint8Array(header + t.data.byteLength);
  out.set(TENSOR_MAGIC, 0);
  out[4] = DTYPES.indexOf(t.dtype);
  out[5] = t.dims.length;
  const dv = new DataView(out.buffer);
  t.dims.forEach((d, i) => {
    dv.setUint32(6 + 4 * i, d, true);
  });
  out.set(t.data, header);
  return out;
}

const ELEMENT_BYTES: Record<InputDtype, number> = { uint8: 1, float32: 4, float16: 2 };

export function decodeTensorInput(bytes: Uint8Array): TensorInput {
  if (bytes.length < 6)
    throw new DropbearError('INPUT_TENSOR_MALFORMED', 'tensor input shorter than its header');
  const dtype = DTYPES[bytes[4]];
  if (!dtype) throw new DropbearError('INPUT_TENSOR_MALFORMED', `unknown tensor dtype code ${bytes[4]}`);
  const rank = bytes[5];
  if (rank < 1 || rank > 6)
    throw new DropbearError('INPUT_TENSOR_MALFORMED', `tensor rank ${rank} not in 1..6`);
  const header = 6 + 4 * rank;
  if (bytes.length < header)
    throw new DropbearError('INPUT_TENSOR_MALFORMED', 'tensor input shorter than its header');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < rank; i++) {
    const d = dv.getUint32(6 + 4 * i, true);
    if (d === 0) throw new DropbearError('INPUT_TENSOR_MALFORMED', `tensor dimension ${i} is 0`);
    dims.push(d);
    count *= d;
  }
  const want = count * ELEMENT_BYTES[dtype];
  if (bytes.length - header !== want)
    throw new DropbearError(
      'INPUT_TENSOR_MALFORMED',
      `tensor [${dims.join(',')}] ${dtype} needs ${want} data bytes, got ${bytes.length - header}`,
    );
  return { dtype, dims, data: bytes.subarray(header) };
}

export type InputKind = 'jpeg' | 'png' | 'tensor' | 'unknown';

export function sniffInput(bytes: Uint8Array): InputKind {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47)
    return 'png';
  if (bytes.length >= 4 && TENSOR_MAGIC.every((b, i) => bytes[i] === b)) return 'tensor';
  return 'unknown';
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * The pixel size a JPEG or PNG header declares, read from the bytes alone (no decoder): for a JPEG the
 * first start-of-frame segment, reached by walking the marker segments from SOI; for a PNG its IHDR
 * chunk. `null` when the header is malformed or ends before the size (the node refuses such an input
 * at once; a file whose header is sound but whose data is not fails later, in the decoder).
 */
export function imageSize(bytes: Uint8Array): { width: number; height: number } | null {
  const u16 = (i: number) => (bytes[i] << 8) | bytes[i + 1];
  if (sniffInput(bytes) === 'png') {
    if (bytes.length < 24 || !PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return null;
    if (String.fromCharCode(bytes[12], bytes[13], bytes[14], bytes[15]) !== 'IHDR') return null;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const width = dv.getUint32(16);
    const height = dv.getUint32(20);
    return width > 0 && height > 0 ? { width, height } : null;
  }
  if (sniffInput(bytes) !== 'jpeg') return null;
  let i = 2;
  while (i + 4 <= bytes.length) {
    if (bytes[i] !== 0xff) return null;
    const marker = bytes[i + 1];
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    // Markers without a length: TEM, RSTn, SOI.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {
      i += 2;
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return null; // end of image or scan data before any frame
    const len = u16(i + 2);
    if (len < 2) return null;
    const sof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (sof) {
      if (i + 9 > bytes.length || len < 7) return null;
      const height = u16(i + 5);
      const width = u16(i + 7);
      return width > 0 && height > 0 ? { width, height } : null;
    }
    i += 2 + len;
  }
  return null;
}

/** Shorter side to `r`, the other side rounded in proportion (MANIFEST.md step 2). */
export function resizedDims(width: number, height: number, r: number): { width: number; height: number } {
  if (width <= height) return { width: r, height: Math.max(1, Math.round((height * r) / width)) };
  return { width: Math.max(1, Math.round((width * r) / height)), height: r };
}

/** The S×S centre crop's offset in a W×H image (MANIFEST.md step 3). */
export function centreCrop(width: number, height: number, s: number): { left: number; top: number } {
  return { left: Math.round((width - s) / 2), top: Math.round((height - s) / 2) };
}

/** Elements of one preprocessed input (C·S·S). */
export function inputElements(spec: Pick<ModelSpec, 'input'>): number {
  let n = 1;
  for (const d of spec.input.shape.slice(1)) n *= d ?? 1;
  return n;
}

/**
 * Whether preprocessing writes every one of the input's values: a model tensor is copied whole, an image is
 * written by `normalise` as channels × size² values, which must be the input's size. Only then may an
 * output buffer holding an earlier input be written into without clearing it.
 */
export function fillsInput(spec: Pick<ModelSpec, 'input' | 'preprocess'>): boolean {
  const p = spec.preprocess;
  if (p.kind === 'tensor') return true;
  return (p.kind === 'grey' ? 1 : 3) * p.size * p.size === inputElements(spec);
}

/** Writes interleaved uint8 pixels (HWC) as the model's normalised NCHW values into `out` at `offset`. */
export function normalise(
  pixels: Uint8Array,
  p: ImagePreprocess | { kind: 'grey'; size: number },
  out: Float32Array,
  offset: number,
): void {
  const plane = p.size * p.size;
  if (p.kind === 'grey') {
    for (let i = 0; i < plane; i++) out[offset + i] = pixels[i] / 255;
    return;
  }
  // Source channel for each output channel: RGB keeps order, BGR swaps R and B.
  const src = p.channels === 'RGB' ? [0, 1, 2] : [2, 1, 0];
  for (let c = 0; c < 3; c++) {
    const sc = src[c];
    const a = p.scale / p.std[c];
    const b = -p.mean[c] / p.std[c];
    const base = offset + c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = pixels[i * 3 + sc] * a + b;
  }
}

/** Is this float tensor exactly the model's per-item input (optionally with a leading batch of 1)? */
export function isModelTensor(t: TensorInput, spec: Pick<ModelSpec, 'input'>): boolean {
  const item = spec.input.shape.slice(1);
  const dims = t.dims.length === item.length + 1 && t.dims[0] === 1 ? t.dims.slice(1) : t.dims;
  return (
    t.dtype !== 'uint8' &&
    dims.length === item.length &&
    dims.every((d, i) => item[i] === null || item[i] === d)
  );
}

/** The least magnitude that rounds to infinity in FP16 (halfway above its largest value, 65504). */
const FP16_OVERFLOW = 65520;

/**
 * Whether a model cannot be run on `x`: NaN or infinite, or, for a model that takes float16 (`half`),
 * beyond FP16's range (its conversion makes it infinite). The one check of a model tensor's values, in
 * serve-model's FP32/FP16 data (kserve-server.ts, firstUnrunnable) and in DBT1 tensors
 * (checkModelTensorValues).
 */
export function unrunnable(x: number, half: boolean): boolean {
  return !Number.isFinite(x) || (half && Math.abs(x) >= FP16_OVERFLOW);
}

/** The index of the first of `values` that is `unrunnable`; -1 when there is none. */
export function firstUnrunnable(values: ArrayLike<number>, half: boolean): number {
  for (let i = 0; i < values.length; i++) if (unrunnable(values[i], half)) return i;
  return -1;
}

/**
 * Refuses a float model tensor with an `unrunnable` element (INPUT_TENSOR_MALFORMED, naming it): sent as
 * a DBT1 tensor, a NaN or an infinity (or an FP32 value beyond ±65504 for a float16 model) was taken by
 * the node's input check and run (until 2026-12-06).
 */
export function checkModelTensorValues(t: TensorInput, spec: Pick<ModelSpec, 'input'>): void {
  if (t.dtype === 'uint8') return;
  const half = spec.input.dtype === 'float16';
  const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const n = t.data.byteLength / ELEMENT_BYTES[t.dtype];
  const single = t.dtype === 'float32';
  for (let i = 0; i < n; i++) {
    const x = single ? dv.getFloat32(i * 4, true) : halfToFloat(dv.getUint16(i * 2, true));
    if (!unrunnable(x, half)) continue;
    throw new DropbearError(
      'INPUT_TENSOR_MALFORMED',
      Number.isFinite(x)
        ? `tensor element ${i} is ${x}, outside the range of FP16 (±65504), the model's input datatype`
        : `tensor element ${i} is ${x}, not a finite number`,
    );
  }
}

/**
 * If `bytes` is a DBT1 tensor of exactly the model's per-item input shape (optionally with a leading 1),
 * copies it into `out` at `offset` and returns true; returns false for anything else. A value the model
 * cannot be run on is refused (checkModelTensorValues), wherever the tensor is copied: serve-model's BYTES
 * inputs, and a request a faulty node ordered past the input check.
 */
export function copyModelTensor(
  bytes: Uint8Array,
  spec: Pick<ModelSpec, 'input'>,
  out: Float32Array,
  offset: number,
): boolean {
  if (sniffInput(bytes) !== 'tensor') return false;
  const t = decodeTensorInput(bytes);
  if (!isModelTensor(t, spec)) return false;
  checkModelTensorValues(t, spec);
  copyTensor(t, out, offset);
  return true;
}

function copyTensor(t: TensorInput, out: Float32Array, offset: number): void {
  const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const n = t.data.byteLength / ELEMENT_BYTES[t.dtype];
  if (t.dtype === 'float32') for (let i = 0; i < n; i++) out[offset + i] = dv.getFloat32(i * 4, true);
  else if (t.dtype === 'float16')
    for (let i = 0; i < n; i++) out[offset + i] = halfToFloat(dv.getUint16(i * 2, true));
  else for (let i = 0; i < n; i++) out[offset + i] = t.data[i];
}

// ---------------------------------------------------------------- float16

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary32 to binary16 bits, round to nearest even (Node 20 has no Float16Array). */
export function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf or NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to infinity
  if (e <= 0) {
    if (e < -10) return sign; // underflow to zero
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && m & 1)) m++;
    return sign | m;
  }
  const rest = mant & 0x1fff;
  let m = mant >>> 13;
  if (rest > 0x1000 || (rest === 0x1000 && m & 1)) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * floatToHalf over an array, with the same bits. Floats whose magnitude rounds to a normal half (binary32
 * exponents 113–142: 2^-14 ≤ |v| < 2^16, all a model's normalised pixels but exact zeros) take a
 * branch-free path on their bits: add 0xfff plus the lowest kept bit (round to nearest, ties to even), then
 * shift and rebias the exponent; a carry out of the mantissa moves into the exponent as it should, up to
 * infinity from 65520 (halfway above 65504, the largest half). The rest (zeros, subnormals, overflow, Inf,
 * NaN) go through floatToHalf. A float16 model's preprocessing worker runs this per image (the batcher
 * only for float inputs given to such a model); `npm run bench:inference` times it against the
 * element-wise floatToHalf loop (its "Float32 → float16" line in BENCHMARKS.md: 1.37× in the run at
 * 2195d07).
 */
export function toHalf(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const n = bits.length;
  for (let i = 0; i < n; i++) {
    const x = bits[i];
    const abs = x & 0x7fffffff;
    if (abs >= 0x38800000 && abs < 0x47800000)
      dst[i] = ((x >>> 16) & 0x8000) | (((abs + 0xfff + ((abs >>> 13) & 1)) >>> 13) - 0x1c000);
    else dst[i] = floatToHalf(src[i]);
  }
  return dst;
}
