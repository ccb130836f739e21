/**
 * Decoding image bytes to RGB pixels, then to a model's input. Two JPEG decoders:
 * - `fast` (default): libvips through sharp, native, ~1 ms for a 227×227 JPEG and ~4 ms for a full-size photo.
 * - `reference`: jpeg-js, pure JS and 4–5× slower, but bit-identical to the decoder behind
 *   shared/models/reference-predictions.json (libjpeg's "fancy" chroma upsampling in libvips moves a few
 *   borderline images: 91–99 % top-1 agreement with the reference instead of 100 %, at equal accuracy).
 * PNG always goes through libvips (lossless: both give the same pixels). The resize is ours (resize.ts).
 * Either way a JPEG's structure and declared size are checked first (jpeg-check.ts, checkJpegInput), so that
 * both decoders refuse the same malformed files with the same code; a PNG's declared size too (checkPngInput).
 */
import jpeg from 'jpeg-js';
import sharp from 'sharp';
import { DropbearError } from '../protocol/errors.ts';
import { checkJpeg, type JpegFrame } from './jpeg-check.ts';
import {
  centreCrop,
  checkDeclaredSize,
  checkTensorImageSize,
  copyModelTensor,
  decodeTensorInput,
  imageSize,
  MAX_IMAGE_PIXELS,
  normalise,
  resizedDims,
  sniffInput,
} from './preprocess.ts';
import { resizeCrop } from './resize.ts';
import type { ModelSpec } from './spec.ts';

sharp.cache(false);
sharp.concurrency(1);

export type Decoder = 'fast' | 'reference';

export interface Pixels {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3;
}

/**
 * Bounds on JPEG frames, checked from the frame header before decoding, so that a small file declaring a
 * huge frame is refused in microseconds rather than after seconds of allocation. The `reference` decoder
 * (jpeg-js) keeps every 8×8 block of every component as its own Int32Array (256 bytes of data, about three
 * times that in the heap), then a line buffer per component and the output: a 100 KB file declaring
 * 60000×600 took 6.6–8 s and 1.2–1.3 GB before failing under its own 1024 MB cap.
 * - The bounds of every JPEG and PNG (both decoders; preprocess.ts, `checkDeclaredSize`): a side over
 *   MAX_IMAGE_SIDE (libjpeg's largest; jpeg-js would decode a longer one), over 40 MP, or, over
 *   DENSITY_FREE_PIXELS (2 MP), more than MAX_PIXELS_PER_BYTE (128) pixels per byte of file. Photos take
 *   5–20 pixels a byte; even a flat baseline image needs ~3 bits per 64 pixels. A frame that dense is a
 *   declared size its data cannot hold, so both decoders refuse it before decoding, with one code (libvips
 *   spent 0.8 s on the 100 KB file, docs/inference.md).
 * - REFERENCE_MAX_MEMORY_MB (`reference` only): what jpeg-js counts (blocks + lines + output) may not pass
 *   256 MB. That is 40 MP of RGBA (160 MB) plus a margin; in jpeg-js's counting it lets through up to ~25 MP
 *   of 4:2:0 colour, ~14 MP of 4:4:4 colour, ~32 MP of grey: far above any classifier's input (the crop is
 *   224–299 pixels a side). It is also passed to jpeg-js as its maxMemoryUsageInMB. libvips streams and is
 *   bounded by MAX_IMAGE_PIXELS alone.
 * All these refusals are INPUT_TOO_LARGE, the code of the 40 MP limit.
 */
export const REFERENCE_MAX_MEMORY_MB = 256;

/** The frame header of a JPEG that passes `checkJpeg`, or null for any other input. */
export function jpegFrame(b: Uint8Array): JpegFrame | null {
  try {
    return checkJpeg(b);
  } catch {
    return null;
  }
}

/** The bytes jpeg-js counts against its maxMemoryUsageInMB for this frame (its prepareComponents etc.). */
export function referenceDecodeBytes(f: JpegFrame): number {
  const maxH = Math.max(1, ...f.components.map((c) => c.h));
  const maxV = Math.max(1, ...f.components.map((c) => c.v));
  const mcusPerLine = Math.ceil(f.width / 8 / maxH);
  const mcusPerColumn = Math.ceil(f.height / 8 / maxV);
  let total = 0;
  for (const c of f.components) {
    total += mcusPerLine * c.h * mcusPerColumn * c.v * 256;
    const blocksPerColumn = Math.ceil((Math.ceil(f.height / 8) * c.v) / maxV);
    total += Math.ceil((f.width * c.h) / maxH) * blocksPerColumn * 8;
  }
  // getData's buffer, then the RGB output.
  return total + f.width * f.height * (f.components.length + 3);
}

/**
 * Refuses, before decoding, a JPEG either decoder should not try: malformed (`checkJpeg`,
 * INPUT_UNDECODABLE) or too large for `decoder` (above, INPUT_TOO_LARGE). The structure comes first, so
 * that a malformed file gets the same code from both decoders whatever size it declares.
 */
function checkJpegInput(bytes: Uint8Array, decoder: Decoder): void {
  const f = checkJpeg(bytes);
  checkDeclaredSize('jpeg', f.width, f.height, bytes.length);
  if (decoder !== 'reference') return;
  const need = referenceDecodeBytes(f);
  if (need > REFERENCE_MAX_MEMORY_MB * 1024 * 1024)
    throw new DropbearError(
      'INPUT_TOO_LARGE',
      `JPEG of ${f.width}×${f.height} would need ${Math.ceil(need / 1024 / 1024)} MB to decode (limit ${REFERENCE_MAX_MEMORY_MB} MB)`,
    );
}

/**
 * Refuses, before libvips decodes it, a PNG whose IHDR is unreadable (INPUT_UNDECODABLE, as libvips would)
 * or declares a size over the bounds of `checkDeclaredSize` (INPUT_TOO_LARGE): libvips' own pixel limit
 * (40 MP) let a 156 KB PNG of 1×40,000,000 pixels through, which then took 33–50 s to decode.
 */
function checkPngInput(bytes: Uint8Array): void {
  const size = imageSize(bytes);
  if (!size)
    throw new DropbearError(
      'INPUT_UNDECODABLE',
      'cannot decode the PNG: its IHDR is malformed or declares no size',
    );
  checkDeclaredSize('png', size.width, size.height, bytes.length);
}

export async function decodeImage(bytes: Uint8Array, decoder: Decoder): Promise<Pixels> {
  const kind = sniffInput(bytes);
  if (kind === 'tensor') {
    const t = decodeTensorInput(bytes);
    if (t.dtype !== 'uint8' || t.dims.length !== 3 || t.dims[2] !== 3)
      throw new DropbearError(
        'INPUT_SHAPE',
        `a raw image tensor must be uint8 [H, W, 3]; got ${t.dtype} [${t.dims.join(', ')}]`,
      );
    checkTensorImageSize(t.dims[1], t.dims[0]);
    return { data: t.data, width: t.dims[1], height: t.dims[0], channels: 3 };
  }
  if (kind === 'jpeg') checkJpegInput(bytes, decoder);
  if (kind === 'png') checkPngInput(bytes);
  if (kind === 'jpeg' && decoder === 'reference') {
    try {
      const j = jpeg.decode(bytes, {
        formatAsRGBA: false,
        useTArray: true,
        maxResolutionInMP: MAX_IMAGE_PIXELS / 1e6,
        maxMemoryUsageInMB: REFERENCE_MAX_MEMORY_MB,
      });
      return { data: j.data, width: j.width, height: j.height, channels: 3 };
    } catch (e) {
      const msg = (e as Error).message;
      if (/resolution|memory/i.test(msg))
        throw new DropbearError('INPUT_TOO_LARGE', `JPEG too large: ${msg}`);
      throw new DropbearError('INPUT_UNDECODABLE', `cannot decode the JPEG: ${msg}`);
    }
  }
  if (kind !== 'jpeg' && kind !== 'png')
    throw new DropbearError('INPUT_UNSUPPORTED', 'input is neither a JPEG, a PNG nor a DBT1 tensor');
  try {
    const { data, info } = await sharp(bytes, {
      // JPEG: libjpeg's warnings are where it reads on through corrupt data (a marker or an invalid
      // Huffman code before a scan's last block) and fills in what is lost, where jpeg-js refuses; and
      // jpeg-check.ts refuses the files whose other warnings jpeg-js would pass over. PNG has one decoder,
      // nothing to agree with: it keeps what it accepted.
      failOn: kind === 'jpeg' ? 'warning' : 'error',
      limitInputPixels: MAX_IMAGE_PIXELS,
      autoOrient: false,
    })
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return {
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      width: info.width,
      height: info.height,
      channels: 3,
    };
  } catch (e) {
    const msg = (e as Error).message;
    if (/pixel limit/i.test(msg)) throw new DropbearError('INPUT_TOO_LARGE', `image too large: ${msg}`);
    throw new DropbearError('INPUT_UNDECODABLE', `cannot decode the ${kind.toUpperCase()}: ${msg}`);
  }
}

function toGrey(p: Pixels): Uint8Array {
  const n = p.width * p.height;
  const out = new Uint8Array(n);
  // ITU-R 601 luma, as PIL's convert('L').
  for (let i = 0; i < n; i++)
    out[i] = Math.round((p.data[3 * i] * 299 + p.data[3 * i + 1] * 587 + p.data[3 * i + 2] * 114) / 1000);
  return out;
}

/**
 * Decodes and preprocesses one image input into `out` (float32 NCHW) at `offset`. Inputs that are already
 * the model's tensor go through `copyModelTensor` instead (see preprocess.ts).
 */
export async function imageToInput(
  bytes: Uint8Array,
  spec: Pick<ModelSpec, 'preprocess'>,
  decoder: Decoder,
  out: Float32Array,
  offset: number,
): Promise<void> {
  const p = spec.preprocess;
  if (p.kind === 'tensor')
    throw new DropbearError('INPUT_UNSUPPORTED', 'this model takes only DBT1 tensors of its input shape');
  const px = await decodeImage(bytes, decoder);
  const s = p.size;
  if (p.kind === 'grey') {
    const grey = toGrey(px);
    const crop = resizeCrop(grey, px.width, px.height, 1, s, s, 0, 0, s);
    normalise(crop, p, out, offset);
    return;
  }
  const target = resizedDims(px.width, px.height, p.resize);
  const c = centreCrop(target.width, target.height, s);
  const crop = resizeCrop(px.data, px.width, px.height, 3, target.width, target.height, c.left, c.top, s);
  normalise(crop, p, out, offset);
}

/** Any accepted input (image bytes, raw RGB tensor, or the model's own tensor) into `out` at `offset`. */
export async function toModelInput(
  bytes: Uint8Array,
  spec: Pick<ModelSpec, 'input' | 'preprocess'>,
  decoder: Decoder,
  out: Float32Array,
  offset: number,
): Promise<void> {
  if (copyModelTensor(bytes, spec, out, offset)) return;
  if (spec.preprocess.kind === 'tensor') {
    const kind = sniffInput(bytes);
    const got = kind === 'tensor' ? `[${decodeTensorInput(bytes).dims.join(', ')}]` : `a ${kind} image`;
    throw new DropbearError(
      'INPUT_SHAPE',
      `this model takes float tensors [${spec.input.shape.map((d) => d ?? 'N').join(', ')}]; got ${got}`,
    );
  }
  await imageToInput(bytes, spec, decoder, out, offset);
}
