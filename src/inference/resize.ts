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
  if (tapCache.size > 256) tapCache.clear();
  tapCache.set(key, t);
  return t;
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
  const mid = new Float64Array(rows * rowLen);
  for (let y = 0; y < rows; y++) {
    const srcRow = (y + rowLo) * w * channels;
    const midRow = y * rowLen;
    for (let k = 0; k < s; k++) {
      const n = hz.count[k];
      const wb = k * hz.stride;
      let p = srcRow + hz.first[k] * channels;
      if (channels === 3) {
        let r = 0;
        let g = 0;
        let b = 0;
        for (let i = 0; i < n; i++, p += 3) {
          const wt = hz.weights[wb + i];
          r += src[p] * wt;
          g += src[p + 1] * wt;
          b += src[p + 2] * wt;
        }
        const o = midRow + k * 3;
        mid[o] = r;
        mid[o + 1] = g;
        mid[o + 2] = b;
      } else {
        let v = 0;
        for (let i = 0; i < n; i++, p++) v += src[p] * hz.weights[wb + i];
        mid[midRow + k] = v;
      }
    }
  }
  const out = new Uint8Array(s * rowLen);
  const acc = new Float64Array(rowLen);
  for (let k = 0; k < s; k++) {
    const n = vt.count[k];
    const wb = k * vt.stride;
    const base = (vt.first[k] - rowLo) * rowLen;
    acc.fill(0);
    for (let i = 0; i < n; i++) {
      const wt = vt.weights[wb + i];
      const r = base + i * rowLen;
      for (let x = 0; x < rowLen; x++) acc[x] += mid[r + x] * wt;
    }
    const o = k * rowLen;
    for (let x = 0; x < rowLen; x++) {
      const v = Math.round(acc[x]);
      out[o + x] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}
