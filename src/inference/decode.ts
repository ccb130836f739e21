/**
 * Decoding image bytes to RGB pixels, then to a model's input. Two JPEG decoders:
 * - `fast` (default): libvips through sharp, native, ~1 ms for a 227×227 JPEG and ~4 ms for a full-size photo.
 * - `reference`: jpeg-js, pure JS and 4–5× slower, but bit-identical to the decoder behind
 *   shared/models/reference-predictions.json (libjpeg's "fancy" chroma upsampling in libvips moves a few
 *   borderline images: 91–99 % top-1 agreement with the reference instead of 100 %, at equal accuracy).
 * PNG always goes through libvips (lossless: both give the same pixels). The resize is ours (resize.ts).
 */
import jpeg from 'jpeg-js';
import sharp from 'sharp';
import { DropbearError } from '../protocol/errors.ts';
import {
  centreCrop,
  copyModelTensor,
  decodeTensorInput,
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

function checkSize(width: number, height: number): void {
  if (width * height > MAX_IMAGE_PIXELS)
    throw new DropbearError(
      'INPUT_TOO_LARGE',
      `image of ${width}×${height} pixels is over the limit of ${MAX_IMAGE_PIXELS}`,
    );
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
    checkSize(t.dims[1], t.dims[0]);
    return { data: t.data, width: t.dims[1], height: t.dims[0], channels: 3 };
  }
  if (kind === 'jpeg' && decoder === 'reference') {
    try {
      const j = jpeg.decode(bytes, {
        formatAsRGBA: false,
        useTArray: true,
        maxResolutionInMP: MAX_IMAGE_PIXELS / 1e6,
        maxMemoryUsageInMB: 1024,
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
      failOn: 'error',
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
