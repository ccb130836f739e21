/**
 * The structure check every JPEG passes before either decoder sees it (decode.ts), so that both refuse the
 * same malformed files, with the same code, INPUT_UNDECODABLE.
 *
 * The two decoders are lenient in different places. libjpeg-turbo (libvips, the `fast` decoder) refuses
 * 12-bit samples, impossible progressive parameters and a file without a scan, and warns where it reads on
 * through a problem: stray bytes between segments, restart markers out of turn, a marker inside a scan's
 * data, header values it does not know. It also substitutes the standard Huffman table for a missing one
 * and decodes arithmetic-coded frames. libvips runs with failOn 'warning', so a warning refuses the file
 * there. jpeg-js (the `reference` decoder) decodes what libjpeg refuses, ignores most of what it warns
 * about, and refuses missing tables and arithmetic coding. Each rule here refuses what at least one of them
 * refuses, following the libraries' own checks (libjpeg-turbo's jdmarker.c, jdapimin.c, jdhuff.c,
 * jdphuff.c, jdinput.c, jdsample.c; jpeg-js's decoder.js). A JPEG that passes is decoded as before.
 *
 * The check reads headers and finds markers; it does not decode the entropy-coded data. What it cannot see
 * there still splits the decoders: docs/inference.md, "Corrupt JPEGs", lists those cases.
 */
import { DropbearError } from '../protocol/errors.ts';

/** A JPEG's frame (SOFn) header: what the decoders' size bounds need. */
export interface JpegFrame {
  width: number;
  height: number;
  components: { h: number; v: number }[];
}

interface Component {
  id: number;
  h: number;
  v: number;
  /** Quantisation table. */
  tq: number;
}

/** A Huffman table as DHT defines it: the number of codes of each length 1–16, then the symbols. */
interface HuffmanTable {
  counts: Uint8Array;
  symbols: Uint8Array;
}

function malformed(what: string): never {
  throw new DropbearError('INPUT_UNDECODABLE', `malformed JPEG: ${what}`);
}

const hex = (m: number) => `0xFF${m.toString(16).toUpperCase().padStart(2, '0')}`;

/**
 * A table a scan uses must be one both decoders build: libjpeg refuses one whose codes overflow their
 * lengths or (DC) a symbol above 15; with no codes at all no block can be read (jpeg-js throws, libjpeg
 * warns on every block).
 */
function checkHuffman(t: HuffmanTable | undefined, dc: boolean, what: string): void {
  if (!t) malformed(`${what} Huffman table is not defined before the scan that uses it`);
  let code = 0;
  let n = 0;
  for (let len = 1; len <= 16; len++) {
    code += t.counts[len - 1];
    n += t.counts[len - 1];
    if (code >= 2 ** len) malformed(`${what} Huffman table has more codes than its lengths allow`);
    code *= 2;
  }
  if (n === 0) malformed(`${what} Huffman table has no codes`);
  if (dc && t.symbols.some((s) => s > 15)) malformed(`${what} Huffman table has a symbol above 15`);
}

/**
 * Checks the structure of a JPEG (it starts with SOI, as `sniffInput` found) and returns its frame header;
 * throws INPUT_UNDECODABLE for a file that one of the decoders would refuse or that neither can decode
 * correctly. Bytes after the end-of-image marker are ignored, as both decoders do.
 */
export function checkJpeg(b: Uint8Array): JpegFrame {
  const u16 = (i: number) => (b[i] << 8) | b[i + 1];
  let frame: { width: number; height: number; progressive: boolean; components: Component[] } | null = null;
  const quant = [false, false, false, false];
  /** DC tables 0–3, then AC tables 0–3. */
  const huffman: (HuffmanTable | undefined)[] = [];
  let restartInterval = 0;
  let scans = 0;
  /** An Adobe segment as jpeg-js recognises one, anywhere. */
  let adobe = false;
  /** As libjpeg reads them (APPn_DATA_LEN), up to the first scan: they set its colour space then. */
  let jfif = false;
  let adobeTransform = -1;
  /** Progressive frames: per component, the successive-approximation bit of each coefficient so far. */
  let coefBits: Int8Array[] = [];
  let i = 2;
  for (;;) {
    // A marker: 0xFF, any number of 0xFF fill bytes, its code.
    if (i >= b.length) malformed('the file ends before its end-of-image marker');
    // Stray bytes (0x00 too) before a marker: libjpeg skips them with a warning; jpeg-js refuses them, or
    // passes over 0xFF 0x00, or recovers its own way from an APP0/APP1 marker that lost its 0xFF.
    if (b[i] !== 0xff) malformed(`byte 0x${b[i].toString(16)} at offset ${i} where a marker should start`);
    while (i < b.length && b[i] === 0xff) i++;
    if (i >= b.length) malformed('the file ends before its end-of-image marker');
    const m = b[i++];
    if (m === 0xd9) break;
    // Markers that take no segment (TEM, RSTn outside a scan, a second SOI): libjpeg passes over them,
    // jpeg-js refuses them. Reserved codes, JPGn, DHP, EXP and arithmetic coding's DAC: both refuse or
    // neither decodes what they announce.
    const segment =
      (m >= 0xc0 && m <= 0xcf && m !== 0xc8 && m !== 0xcc) ||
      (m >= 0xda && m <= 0xdd) ||
      (m >= 0xe0 && m <= 0xef) ||
      m === 0xfe;
    if (!segment) malformed(`marker ${hex(m)} at offset ${i - 2}`);
    if (i + 2 > b.length) malformed('the file ends inside a segment header');
    const len = u16(i);
    if (len < 2 || i + len > b.length) malformed(`${hex(m)} segment of length ${len} at offset ${i - 2}`);
    const end = i + len;
    let p = i + 2;
    i = end;
    if (m >= 0xe0 || m === 0xdc) {
      // APPn, COM (DNL: libjpeg skips it, jpeg-js ignores its value). jpeg-js refuses 4 components without
      // an Adobe segment, where libjpeg assumes CMYK.
      const id = String.fromCharCode(...b.subarray(p, Math.min(p + 6, end)));
      if (m === 0xee && id === 'Adobe\0') adobe = true;
      // libjpeg warns about a JFIF major version other than 1, and reads an Adobe segment's colour transform.
      if (m === 0xe0 && len >= 16 && id.startsWith('JFIF\0')) {
        if (b[p + 5] !== 1) malformed(`JFIF version ${b[p + 5]}.${String(b[p + 6]).padStart(2, '0')}`);
        if (scans === 0) jfif = true;
      }
      if (m === 0xee && len >= 14 && id.startsWith('Adobe') && scans === 0) adobeTransform = b[p + 11];
      if (m === 0xdc && len !== 4) malformed(`DNL segment of length ${len}`);
    } else if (m === 0xdb) {
      while (p < end) {
        const pq = b[p] >> 4;
        const tq = b[p] & 15;
        if (pq > 1 || tq > 3) malformed(`quantisation table ${tq} of precision ${pq}`);
        p += 1 + 64 * (pq + 1);
        quant[tq] = true;
      }
      if (p !== end) malformed('DQT segment length does not match its tables');
    } else if (m === 0xc4) {
      while (p < end) {
        if (p + 17 > end) malformed('DHT segment length does not match its tables');
        const tc = b[p] >> 4;
        const th = b[p] & 15;
        if (tc > 1 || th > 3) malformed(`Huffman table ${th} of class ${tc}`);
        const counts = b.subarray(p + 1, p + 17);
        const n = counts.reduce((a, c) => a + c, 0);
        if (n > 256 || p + 17 + n > end) malformed('DHT segment length does not match its tables');
        huffman[4 * tc + th] = { counts, symbols: b.subarray(p + 17, p + 17 + n) };
        p += 17 + n;
      }
    } else if (m === 0xdd) {
      if (len !== 4) malformed(`DRI segment of length ${len}`);
      restartInterval = u16(p);
    } else if (m === 0xda) {
      if (!frame) malformed('a scan before the frame header');
      const ns = b[p];
      if (ns < 1 || ns > 4 || len !== 6 + 2 * ns) malformed(`scan header of ${ns} components, length ${len}`);
      const ss = b[p + 1 + 2 * ns];
      const se = b[p + 2 + 2 * ns];
      const ah = b[p + 3 + 2 * ns] >> 4;
      const al = b[p + 3 + 2 * ns] & 15;
      // libjpeg refuses impossible progression parameters, and warns about other parameters in a sequential
      // frame (jpeg-js reads such a scan as sequential).
      if (
        frame.progressive
          ? (ss === 0 ? se !== 0 : ss > se || se > 63 || ns !== 1) || (ah !== 0 && al !== ah - 1) || al > 13
          : ss !== 0 || se !== 63 || ah !== 0 || al !== 0
      )
        malformed(
          `scan parameters Ss=${ss} Se=${se} Ah=${ah} Al=${al} in a ${frame.progressive ? 'progressive' : 'sequential'} frame`,
        );
      if (scans === 0) {
        // libjpeg's colour space, chosen at the first scan: it warns about a transform code it does not know.
        // (3 components: 0 RGB, 1 YCbCr, unless a JFIF segment says YCbCr; 4: 0 CMYK, 2 YCCK.)
        const nf = frame.components.length;
        const known =
          nf === 3 ? jfif || adobeTransform <= 1 : nf !== 4 || [-1, 0, 2].includes(adobeTransform);
        if (!known) malformed(`Adobe colour transform ${adobeTransform} for ${nf} components`);
      }
      const seen = new Set<Component>();
      let blocks = 0;
      for (let k = 0; k < ns; k++) {
        const id = b[p + 1 + 2 * k];
        const c = frame.components.find((x) => x.id === id);
        if (!c || seen.has(c)) malformed(`scan component id ${id}`);
        seen.add(c);
        blocks += c.h * c.v;
        if (frame.progressive) {
          // libjpeg warns about a scan out of order: an AC scan before the component's DC scan, or a
          // refinement of bits not yet sent (or sent again).
          const bits = coefBits[frame.components.indexOf(c)];
          if (ss !== 0 && bits[0] < 0) malformed(`an AC scan of component ${id} before its DC scan`);
          for (let q = ss; q <= se; q++) {
            if (ah !== Math.max(0, bits[q]))
              malformed(`scan of component ${id} out of progression at coefficient ${q}`);
            bits[q] = al;
          }
        }
        if (!quant[c.tq]) malformed(`quantisation table ${c.tq} is not defined before its first scan`);
        const td = b[p + 2 + 2 * k] >> 4;
        const ta = b[p + 2 + 2 * k] & 15;
        if (td > 3 || ta > 3) malformed(`Huffman table ${td}/${ta} in a scan header`);
        // Progressive scans read a DC table for a first DC scan, an AC table for an AC scan, none to refine DC.
        if (!frame.progressive || (ss === 0 && ah === 0)) checkHuffman(huffman[td], true, `DC ${td}`);
        if (!frame.progressive || ss !== 0) checkHuffman(huffman[4 + ta], false, `AC ${ta}`);
      }
      if (ns > 1 && blocks > 10) malformed(`${blocks} blocks in an interleaved MCU (at most 10)`);
      scans++;
      const scan = scanEnd(b, end, restartInterval);
      // A restart marker after every interval but the last (one after the last too is passed over by
      // both). With fewer or more, the markers and the data disagree: libjpeg resynchronises and fills in
      // grey, jpeg-js stops at the first misplaced one.
      if (restartInterval > 0) {
        const c = ns === 1 ? [...seen][0] : null;
        const maxH = Math.max(...frame.components.map((x) => x.h));
        const maxV = Math.max(...frame.components.map((x) => x.v));
        const mcus = c
          ? Math.ceil((frame.width * c.h) / (8 * maxH)) * Math.ceil((frame.height * c.v) / (8 * maxV))
          : Math.ceil(frame.width / (8 * maxH)) * Math.ceil(frame.height / (8 * maxV));
        const want = Math.ceil(mcus / restartInterval) - 1;
        const n = scan.restarts.length;
        if (n !== want && n !== want + 1)
          malformed(`${n} restart markers in a scan of ${mcus} MCUs, ${restartInterval} per interval`);
        // Numbered 0–7 in turn (libjpeg warns and resynchronises; jpeg-js takes any).
        for (let k = 0; k < want; k++)
          if (scan.restarts[k] !== (k & 7))
            malformed(`restart marker ${k} of a scan is RST${scan.restarts[k]}`);
      }
      i = scan.end;
    } else {
      // SOFn. Only baseline, extended and progressive Huffman frames of 8-bit samples: jpeg-js decodes no
      // other process (lossless, hierarchical, arithmetic), libvips no other precision.
      if (m !== 0xc0 && m !== 0xc1 && m !== 0xc2) malformed(`unsupported frame type ${hex(m)}`);
      if (frame) malformed('a second frame header');
      const nf = b[p + 5];
      if (len !== 8 + 3 * nf) malformed(`frame header of ${nf} components, length ${len}`);
      if (b[p] !== 8) malformed(`${b[p]}-bit samples`);
      const height = u16(p + 1);
      const width = u16(p + 3);
      // Height 0 would be given by a later DNL segment: neither decoder supports that.
      if (width === 0 || height === 0) malformed(`frame of ${width}×${height} pixels`);
      // jpeg-js turns 1, 3 or 4 components into pixels, libvips 2 into 2 bands.
      if (nf !== 1 && nf !== 3 && nf !== 4) malformed(`${nf} components`);
      const components: Component[] = [];
      for (let k = 0; k < nf; k++) {
        const q = p + 6 + 3 * k;
        const c = { id: b[q], h: b[q + 1] >> 4, v: b[q + 1] & 15, tq: b[q + 2] };
        if (c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4) malformed(`sampling factors ${c.h}×${c.v}`);
        if (c.tq > 3) malformed(`quantisation table ${c.tq}`);
        if (components.some((x) => x.id === c.id)) malformed(`component id ${c.id} twice`);
        components.push(c);
      }
      // libjpeg upsamples by whole factors only.
      const maxH = Math.max(...components.map((c) => c.h));
      const maxV = Math.max(...components.map((c) => c.v));
      if (components.some((c) => maxH % c.h !== 0 || maxV % c.v !== 0))
        malformed('sampling factors that are not whole multiples of each other');
      frame = { width, height, progressive: m === 0xc2, components };
      coefBits = components.map(() => new Int8Array(64).fill(-1));
    }
  }
  if (!frame || scans === 0) malformed(frame ? 'no scan' : 'no frame header');
  if (frame.components.length === 4 && !adobe) malformed('4 components without an Adobe segment');
  return {
    width: frame.width,
    height: frame.height,
    components: frame.components.map(({ h, v }) => ({ h, v })),
  };
}

/**
 * Where a scan's entropy-coded data, starting at `start`, ends (the offset of the marker after it), and
 * the numbers of the restart markers it holds. 0xFF is followed there by 0x00 (a stuffed byte) or, with a restart
 * interval, by RSTn. A restart marker without an interval, or fill bytes (0xFF 0xFF) inside the data, make
 * jpeg-js stop where libjpeg reads on; a scan with no data at all has lost its data (libjpeg fills in
 * grey, jpeg-js refuses).
 */
function scanEnd(b: Uint8Array, start: number, restartInterval: number): { end: number; restarts: number[] } {
  let j = start;
  const restarts: number[] = [];
  for (;;) {
    const k = b.indexOf(0xff, j);
    if (k < 0 || k + 1 >= b.length) malformed('the file ends inside a scan');
    let n = k + 1;
    while (n < b.length && b[n] === 0xff) n++;
    if (n >= b.length) malformed('the file ends inside a scan');
    const c = b[n];
    const rst = c >= 0xd0 && c <= 0xd7;
    if (c !== 0x00 && !rst) {
      if (k === start) malformed(`a scan without data at offset ${start}`);
      return { end: k, restarts };
    }
    if (n > k + 1) malformed(`fill bytes inside a scan at offset ${k}`);
    if (rst) {
      if (restartInterval === 0) malformed(`restart marker at offset ${k} without a restart interval`);
      restarts.push(c - 0xd0);
    }
    j = n + 1;
  }
}
