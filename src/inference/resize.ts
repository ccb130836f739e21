/**
 * Antialiased bilinear resize as PIL's Image.resize(BILINEAR) does it: a separable triangle filter whose
 * support widens with the downscale factor, computed only for the pixels of the centre crop. Matches the
 * preprocessing behind shared/models/reference-predictions.json (100 % top-1 agreement on val300 when fed
 * the same decoded pixels).
 */

interface Taps {
  /** First source index and tap count per output index. */
  first: Int32Array;
  count: Int32Array;
  /** `stride` normalised weights per output index. */
  weights: Float64Array;
  stride: number;
}

const tapCache = new Map<string, Taps>();
/** Weights the cache holds in all. */
let cachedWeights = 0;

/**
 * Most weights the tap cache holds (8 MiB of doubles), and the most scratch floats kept between calls
 * (8 MiB). A photo's taps are a few thousand weights, but a tall, thin input for a model that resizes the
 * whole image (the grey 28×28 path: a uint8 DBT1 tensor [2,000,000, 1, 3], 6 MB) needs ~4 million (32 MB),
 * its scratch rows ~56 million floats; kept (up to 257 cache entries, the scratch at its largest), every
 * such input of another height left ~30 MB more in the worker for good.
 */
export const MAX_CACHED_WEIGHTS = 1 << 20;
export const MAX_KEPT_SCRATCH = 1 << 21;

function taps(inSize: number, outSize: number, start: number, n: number): Taps {
  const key = `${inSize}:${outSize}:${start}:${n}`;
  const hit = tapCache.get(key);
  if (hit) return hit;
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // the triangle's radius is 1, widened when shrinking
  const stride = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(n);
  const count = new Int32Array(n);
  const weights = new Float64Array(n * stride);
  for (let k = 0; k < n; k++) {
    const centre = (start + k + 0.5) * scale;
    const lo = Math.max(0, Math.floor(centre - support + 0.5));
    const hi = Math.min(inSize, Math.floor(centre + support + 0.5));
    let sum = 0;
    for (let x = lo; x < hi; x++) {
      const t = Math.abs((x - centre + 0.5) / filterScale);
      const w = t < 1 ? 1 - t : 0;
      weights[k * stride + x - lo] = w;
      sum += w;
    }
    if (sum !== 0) for (let x = 0; x < hi - lo; x++) weights[k * stride + x] /= sum;
    first[k] = lo;
    count[k] = hi - lo;
  }
  const t = { first, count, weights, stride };
  if (weights.length > MAX_CACHED_WEIGHTS) return t;
  if (tapCache.size > 256 || cachedWeights + weights.length > MAX_CACHED_WEIGHTS) {
    tapCache.clear();
    cachedWeights = 0;
  }
  tapCache.set(key, t);
  cachedWeights += weights.length;
  return t;
}

// Scratch buffers reused across calls (a worker resizes one image at a time), kept up to MAX_KEPT_SCRATCH.
let midBuf = new Float32Array(0);
let accBuf = new Float64Array(0);

/** Bytes the resizer keeps between calls: the tap cache and the scratch buffers. */
export function resizeRetainedBytes(): number {
  return cachedWeights * 8 + midBuf.byteLength + accBuf.byteLength;
}

/**
 * Resizes interleaved `channels`-channel pixels from w×h to tw×th and returns the s×s crop at (left, top),
 * rounded to uint8. Only the rows and columns the crop needs are computed.
 */
export function resizeCrop(
  src: Uint8Array,
  w: number,
  h: number,
  channels: 1 | 3,
  tw: number,
  th: number,
  left: number,
  top: number,
  s: number,
): Uint8Array {
  const hz = taps(w, tw, left, s);
  const vt = taps(h, th, top, s);
  const rowLo = vt.first[0];
  const rowHi = vt.first[s - 1] + vt.count[s - 1];
  const rows = rowHi - rowLo;
  const rowLen = s * channels;
  if (midBuf.length < rows * rowLen) midBuf = new Float32Array(rows * rowLen);
  if (accBuf.length < rowLen) accBuf = new Float64Array(rowLen);
  const mid = midBuf;
  const acc = accBuf;
  const hFirst = hz.first;
  const hCount = hz.count;
  const hW = hz.weights;
  const hStride = hz.stride;
  const srcStride = w * channels;
  for (let y = 0; y < rows; y++) {
    const srcRow = (y + rowLo) * srcStride;
    const midRow = y * rowLen;
    if (channels === 3) {
      for (let k = 0; k < s; k++) {
        const n = hCount[k];
        const wb = k * hStride;
        let p = srcRow + hFirst[k] * 3;
        let r = 0;
        let g = 0;
        let b = 0;
        for (let i = 0; i < n; i++, p += 3) {
          const wt = hW[wb + i];
          r += src[p] * wt;
          g += src[p + 1] * wt;
          b += src[p + 2] * wt;
        }
        const o = midRow + k * 3;
        mid[o] = r;
        mid[o + 1] = g;
        mid[o + 2] = b;
      }
    } else {
      for (let k = 0; k < s; k++) {
        const n = hCount[k];
        const wb = k * hStride;
        let p = srcRow + hFirst[k];
        let v = 0;
        for (let i = 0; i < n; i++, p++) v += src[p] * hW[wb + i];
        mid[midRow + k] = v;
      }
    }
  }
  const out = new Uint8Array(s * rowLen);
  const vFirst = vt.first;
  const vCount = vt.count;
  const vW = vt.weights;
  const vStride = vt.stride;
  for (let k = 0; k < s; k++) {
    const n = vCount[k];
    const wb = k * vStride;
    const base = (vFirst[k] - rowLo) * rowLen;
    const o = k * rowLen;
    if (n === 2) {
      const w0 = vW[wb];
      const w1 = vW[wb + 1];
      const b1 = base + rowLen;
      for (let x = 0; x < rowLen; x++) {
        // Weights are non-negative, so the value is too: floor(v + 0.5) is Math.round, without the call.
        const v = (mid[base + x] * w0 + mid[b1 + x] * w1 + 0.5) | 0;
        out[o + x] = v > 255 ? 255 : v;
      }
    } else if (n === 3) {
      const w0 = vW[wb];
      const w1 = vW[wb + 1];
      const w2 = vW[wb + 2];
      const b1 = base + rowLen;
      const b2 = b1 + rowLen;
      for (let x = 0; x < rowLen; x++) {
        const v = (mid[base + x] * w0 + mid[b1 + x] * w1 + mid[b2 + x] * w2 + 0.5) | 0;
        out[o + x] = v > 255 ? 255 : v;
      }
    } else {
      let wt = vW[wb];
      for (let x = 0; x < rowLen; x++) acc[x] = mid[base + x] * wt;
      for (let i = 1; i < n; i++) {
        wt = vW[wb + i];
        const r = base + i * rowLen;
        for (let x = 0; x < rowLen; x++) acc[x] += mid[r + x] * wt;
      }
      for (let x = 0; x < rowLen; x++) {
        const v = (acc[x] + 0.5) | 0;
        out[o + x] = v > 255 ? 255 : v;
      }
    }
  }
  if (midBuf.length > MAX_KEPT_SCRATCH) midBuf = new Float32Array(0);
  if (accBuf.length > MAX_KEPT_SCRATCH) accBuf = new Float64Array(0);
  return out;
}
