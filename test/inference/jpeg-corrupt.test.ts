/**
 * The two JPEG decoders (`fast`: libvips, `reference`: jpeg-js) accept and refuse the same corrupt files,
 * with the same code (src/inference/jpeg-check.ts). The corrupt files are made here from real images:
 * truncated at several points, markers and segments broken, headers zeroed, bytes appended, non-JPEG bytes
 * behind a JPEG signature, corrupt scan data. Each case names the outcome both decoders must give. `split`
 * lists the cases that still split them (docs/inference.md, "Corrupt JPEGs"), with the outcomes they have,
 * so that a library update that changes them shows.
 *
 * fixtures/restart-interval.jpg: 64×48 synthetic pixels (gradients and a checker, no data-set image), 4:4:4,
 * a restart interval of 3 MCUs (15 restart markers), written
 * by jpeg-js's encoder changed to emit DRI and RSTn (no encoder at hand writes restart markers); both
 * decoders give the same pixels for it as for the same image encoded without them.
 */
import { readdirSync, readFileSync } from 'node:fs';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { type Decoder, decodeImage } from '../../src/inference/decode.ts';
import { checkJpeg } from '../../src/inference/jpeg-check.ts';
import { DATA_DIR, VAL_DIR } from '../shared.ts';

const val = readFileSync(`${VAL_DIR}/n01440764_ILSVRC2012_val_00023559.JPEG`);
const restart = readFileSync(`${import.meta.dirname}/fixtures/restart-interval.jpg`);
const progressive = await sharp(val).jpeg({ progressive: true }).toBuffer();
const cmyk = await sharp(val).toColourspace('cmyk').jpeg().toBuffer();

const OK = 'ok';
type Outcome = typeof OK | 'INPUT_UNDECODABLE' | 'INPUT_UNSUPPORTED' | 'INPUT_TOO_LARGE';

/** Offset of the first marker `m` (0xFF m) from `from` on. */
function at(b: Uint8Array, m: number, from = 2): number {
  for (let i = from; i < b.length - 1; i++) if (b[i] === 0xff && b[i + 1] === m) return i;
  throw new Error(`no marker ${m.toString(16)}`);
}
const edit = (b: Uint8Array, f: (x: Buffer) => void) => {
  const x = Buffer.from(b);
  f(x);
  return x;
};
const cat = (...parts: (Uint8Array | number[])[]) => Buffer.concat(parts.map((p) => Buffer.from(p)));
/** `n` deterministic bytes (an LCG from `seed`): the corpus is the same on every run. */
function noise(n: number, seed: number): Buffer {
  let x = seed;
  return Buffer.from(Array.from({ length: n }, () => ((x = (x * 1103515245 + 12345) >>> 0) >>> 16) & 0xff));
}

/** [name, bytes, outcome both decoders give]. */
function corpus(): [string, Uint8Array, Outcome][] {
  const b = val;
  const dqt = at(b, 0xdb);
  const sof = at(b, 0xc0);
  const dht = at(b, 0xc4);
  const sos = at(b, 0xda);
  const scan = sos + 2 + ((b[sos + 2] << 8) | b[sos + 3]);
  const mid = (scan + b.length) >> 1;
  const cut = (n: number) => b.subarray(0, n);
  const rsts: number[] = [];
  for (let i = 0; i < restart.length - 1; i++)
    if (restart[i] === 0xff && restart[i + 1] >= 0xd0 && restart[i + 1] <= 0xd7) rsts.push(i);
  const dri = at(restart, 0xdd);
  const psof = at(progressive, 0xc2);
  const psos = at(progressive, 0xda);
  const pscan = psos + 2 + ((progressive[psos + 2] << 8) | progressive[psos + 3]);
  const adobe = at(cmyk, 0xee);
  return [
    ['the image itself', b, OK],
    ['zero bytes', new Uint8Array(0), 'INPUT_UNSUPPORTED'],
    ['SOI alone', cut(2), 'INPUT_UNSUPPORTED'],
    ['SOI and 0xFF', cut(3), 'INPUT_UNDECODABLE'],
    ['cut after APP0', cut(20), 'INPUT_UNDECODABLE'],
    ['cut in DQT', cut(dqt + 30), 'INPUT_UNDECODABLE'],
    ['cut in SOF', cut(sof + 8), 'INPUT_UNDECODABLE'],
    ['cut in DHT', cut(dht + 10), 'INPUT_UNDECODABLE'],
    ['cut in the scan header', cut(sos + 6), 'INPUT_UNDECODABLE'],
    ['cut at the scan data', cut(scan), 'INPUT_UNDECODABLE'],
    ['cut at 25 % of the scan', cut(scan + ((b.length - scan) >> 2)), 'INPUT_UNDECODABLE'],
    ['cut at 50 % of the scan', cut(mid), 'INPUT_UNDECODABLE'],
    ['cut before EOI', cut(b.length - 2), 'INPUT_UNDECODABLE'],
    ['cut inside EOI', cut(b.length - 1), 'INPUT_UNDECODABLE'],
    ['first 20 bytes zeroed', edit(b, (x) => x.fill(0, 0, 20)), 'INPUT_UNSUPPORTED'],
    // libjpeg skipped the stray bytes (a warning) and decoded; jpeg-js refused.
    ['APP0 length and body zeroed', edit(b, (x) => x.fill(0, 4, 20)), 'INPUT_UNDECODABLE'],
    ['DHT header zeroed', edit(b, (x) => x.fill(0, dht, dht + 20)), 'INPUT_UNDECODABLE'],
    ['DQT zeroed', edit(b, (x) => x.fill(0, dqt, dqt + 69)), 'INPUT_UNDECODABLE'],
    ['SOF body zeroed', edit(b, (x) => x.fill(0, sof + 4, sof + 19)), 'INPUT_UNDECODABLE'],
    ['scan header zeroed', edit(b, (x) => x.fill(0, sos, scan)), 'INPUT_UNDECODABLE'],
    ['1 KB of scan data zeroed', edit(b, (x) => x.fill(0, mid, mid + 1024)), OK],
    ['64 bytes of noise in the scan', edit(b, (x) => noise(64, 3).copy(x, mid)), OK],
    // Noise holding 0xFF 0x40, no marker: libjpeg read on with a warning, jpeg-js refused.
    ['1 KB of noise in the scan', edit(b, (x) => noise(1024, 1).copy(x, mid)), 'INPUT_UNDECODABLE'],
    [
      'RST0 in the scan without a restart interval',
      edit(b, (x) => x.set([0xff, 0xd3], mid)),
      'INPUT_UNDECODABLE',
    ],
    ['scan data gone (headers, then EOI)', cat(b.subarray(0, scan), [0xff, 0xd9]), 'INPUT_UNDECODABLE'],
    ['no scan (frame header, then EOI)', cat(b.subarray(0, sos), [0xff, 0xd9]), 'INPUT_UNDECODABLE'],
    ['no frame header', cat(b.subarray(0, sof), b.subarray(sof + 19)), 'INPUT_UNDECODABLE'],
    ['no DQT', cat(b.subarray(0, dqt), b.subarray(sof)), 'INPUT_UNDECODABLE'],
    // libjpeg filled in its standard Huffman tables; jpeg-js refused.
    ['no DHT', cat(b.subarray(0, dht), b.subarray(sos)), 'INPUT_UNDECODABLE'],
    ['DHT turned into a comment', edit(b, (x) => (x[dht + 1] = 0xfe)), 'INPUT_UNDECODABLE'],
    ['SOF turned into APP1', edit(b, (x) => (x[sof + 1] = 0xe1)), 'INPUT_UNDECODABLE'],
    ['SOS turned into a comment', edit(b, (x) => (x[sos + 1] = 0xfe)), 'INPUT_UNDECODABLE'],
    ['a marker without its 0xFF', edit(b, (x) => (x[dqt] = 0)), 'INPUT_UNDECODABLE'],
    ['reserved marker 0xFF01', edit(b, (x) => (x[dqt + 1] = 0x01)), 'INPUT_UNDECODABLE'],
    ['DQT length past the end', edit(b, (x) => x.writeUInt16BE(0xfff0, dqt + 2)), 'INPUT_UNDECODABLE'],
    ['DQT length 0', edit(b, (x) => x.writeUInt16BE(0, dqt + 2)), 'INPUT_UNDECODABLE'],
    ['SOF3 (lossless)', edit(b, (x) => (x[sof + 1] = 0xc3)), 'INPUT_UNDECODABLE'],
    // Baseline scans under a progressive frame header: libjpeg refused the scan parameters, jpeg-js decoded.
    ['SOF0 made SOF2', edit(b, (x) => (x[sof + 1] = 0xc2)), 'INPUT_UNDECODABLE'],
    ['SOF0 made SOF1 (extended)', edit(b, (x) => (x[sof + 1] = 0xc1)), OK],
    // Arithmetic coding: libjpeg decoded the Huffman data as arithmetic-coded garbage, jpeg-js refused.
    ['SOF0 made SOF9 (arithmetic)', edit(b, (x) => (x[sof + 1] = 0xc9)), 'INPUT_UNDECODABLE'],
    // 12-bit samples: libvips refused, jpeg-js decoded as 8-bit.
    ['12-bit precision', edit(b, (x) => (x[sof + 4] = 12)), 'INPUT_UNDECODABLE'],
    ['width 0', edit(b, (x) => x.writeUInt16BE(0, sof + 7)), 'INPUT_UNDECODABLE'],
    ['height 0 (DNL)', edit(b, (x) => x.writeUInt16BE(0, sof + 5)), 'INPUT_UNDECODABLE'],
    ['sampling factor 0', edit(b, (x) => (x[sof + 11] = 0)), 'INPUT_UNDECODABLE'],
    [
      'fractional sampling (3×2 over 2×1)',
      edit(b, (x) => {
        x[sof + 11] = 0x32;
        x[sof + 14] = 0x21;
      }),
      'INPUT_UNDECODABLE',
    ],
    [
      '12 blocks in an MCU',
      edit(b, (x) => {
        x[sof + 14] = 0x22;
        x[sof + 17] = 0x22;
      }),
      'INPUT_UNDECODABLE',
    ],
    ['a component id twice', edit(b, (x) => (x[sof + 13] = x[sof + 10])), 'INPUT_UNDECODABLE'],
    ['undefined quantisation table', edit(b, (x) => (x[sof + 12] = 3)), 'INPUT_UNDECODABLE'],
    ['undefined Huffman table', edit(b, (x) => (x[sos + 6] = 0x33)), 'INPUT_UNDECODABLE'],
    ['unknown component in the scan', edit(b, (x) => (x[sos + 5] = 9)), 'INPUT_UNDECODABLE'],
    ['garbage after EOI', cat(b, noise(1000, 3)), OK],
    ['zeros after EOI', cat(b, new Uint8Array(1000)), OK],
    ['a second image after EOI', cat(b, b), OK],
    [
      'bytes between the last block and EOI',
      cat(b.subarray(0, b.length - 2), new Uint8Array(40).fill(0x11), [0xff, 0xd9]),
      OK,
    ],
    ['fill bytes before a marker', cat(b.subarray(0, dqt), [0xff, 0xff, 0xff], b.subarray(dqt)), OK],
    // Stray bytes libjpeg skips with a warning and jpeg-js passes over (0xFF 0x00) or recovers from (an
    // APP1 marker that lost its 0xFF, which some phones write): both decoded these.
    [
      '0xFF 0x00 between segments',
      cat(b.subarray(0, dqt), [0xff, 0x00], b.subarray(dqt)),
      'INPUT_UNDECODABLE',
    ],
    [
      'an APP1 marker lost its 0xFF',
      cat(b.subarray(0, dqt), [0x00, 0xe1, 0x00, 0x08], Buffer.from('Exif\0\0'), b.subarray(dqt)),
      'INPUT_UNDECODABLE',
    ],
    ['noise behind a JPEG signature', cat([0xff, 0xd8, 0xff], noise(5000, 4)), 'INPUT_UNDECODABLE'],
    [
      'text behind SOI and APP0',
      cat([0xff, 0xd8, 0xff, 0xe0], Buffer.from('not a JPEG at all, '.repeat(30))),
      'INPUT_UNDECODABLE',
    ],
    // PNG bytes where a frame header's size is: jpeg-js's path refused a 3338×20039 frame (INPUT_TOO_LARGE)
    // before anything else, libvips the segment lengths (INPUT_UNDECODABLE).
    [
      'a frame header over PNG bytes',
      cat([0xff, 0xd8, 0xff, 0xc2, 0x08, 0x89], Buffer.from('PNG\r\n\x1a\n'), noise(200, 5)),
      'INPUT_UNDECODABLE',
    ],
    ['SOI, EOI', Buffer.from([0xff, 0xd8, 0xff, 0xd9]), 'INPUT_UNDECODABLE'],
    // A frame its data cannot hold: libvips decoded it into grey where the data ran out, jpeg-js's path
    // refused it for its size.
    [
      '60000×600 declared in 41 KB',
      edit(b, (x) => {
        x.writeUInt16BE(600, sof + 5);
        x.writeUInt16BE(60000, sof + 7);
      }),
      'INPUT_TOO_LARGE',
    ],
    ['a side over 65500', edit(b, (x) => x.writeUInt16BE(65535, sof + 7)), 'INPUT_TOO_LARGE'],
    // Corrupt entropy-coded data: libjpeg read on with a warning and filled in grey, jpeg-js refused.
    ['EOI in the middle of the scan', edit(b, (x) => x.set([0xff, 0xd9], mid)), 'INPUT_UNDECODABLE'],
    ['cut in the scan, EOI appended', cat(b.subarray(0, mid), [0xff, 0xd9]), 'INPUT_UNDECODABLE'],
    // 32 one bits: no Huffman code is all ones. Near the end of the data, where libjpeg-turbo decodes with
    // the code that warns (`split` has one further in).
    ['an invalid Huffman code', edit(b, (x) => x.set(ONES, b.length - 500)), 'INPUT_UNDECODABLE'],
    // Header values libjpeg warns about and jpeg-js ignores: both decoded these.
    ['JFIF version 2.01', edit(b, (x) => (x[11] = 2)), 'INPUT_UNDECODABLE'],
    ['JFIF version 1.99', edit(b, (x) => (x[12] = 99)), OK],
    ['sequential scan with Se = 0', edit(b, (x) => (x[scan - 2] = 0)), 'INPUT_UNDECODABLE'],
    [
      'Adobe transform 2 for YCbCr, no JFIF',
      cat(b.subarray(0, 2), adobeSegment(2), b.subarray(20)),
      'INPUT_UNDECODABLE',
    ],
    ['Adobe transform 7 beside JFIF', cat(b.subarray(0, 20), adobeSegment(7), b.subarray(20)), OK],
    ['Adobe transform 1 for CMYK', edit(cmyk, (x) => (x[adobe + 15] = 1)), 'INPUT_UNDECODABLE'],
    ['a DC scan sent as a refinement', edit(progressive, (x) => (x[pscan - 1] = 0x10)), 'INPUT_UNDECODABLE'],
    ['restart intervals', restart, OK],
    ['a restart marker after the last interval', cat(restart.subarray(0, -2), [0xff, 0xd7, 0xff, 0xd9]), OK],
    // libjpeg resynchronised and filled in grey; jpeg-js refused, took any number, or (cut at a restart
    // marker) stopped there.
    ['restart markers renumbered', edit(restart, (x) => (x[rsts[2] + 1] = 0xd6)), 'INPUT_UNDECODABLE'],
    [
      'a restart marker removed',
      cat(restart.subarray(0, rsts[4]), restart.subarray(rsts[4] + 2)),
      'INPUT_UNDECODABLE',
    ],
    ['restart interval 3 made 4', edit(restart, (x) => x.writeUInt16BE(4, dri + 4)), 'INPUT_UNDECODABLE'],
    ['cut at a restart marker, EOI', cat(restart.subarray(0, rsts[3]), [0xff, 0xd9]), 'INPUT_UNDECODABLE'],
    [
      'a restart marker 10 bytes late',
      cat(
        restart.subarray(0, rsts[5]),
        restart.subarray(rsts[5] + 2, rsts[5] + 12),
        restart.subarray(rsts[5], rsts[5] + 2),
        restart.subarray(rsts[5] + 12),
      ),
      'INPUT_UNDECODABLE',
    ],
    [
      'restart markers without DRI',
      cat(restart.subarray(0, dri), restart.subarray(dri + 6)),
      'INPUT_UNDECODABLE',
    ],
    [
      'fill bytes before a restart marker',
      cat(restart.subarray(0, rsts[4]), [0xff], restart.subarray(rsts[4])),
      'INPUT_UNDECODABLE',
    ],
    ['progressive', progressive, OK],
    // Progressive scans under a baseline frame header: libvips decoded them (warning about their
    // parameters), jpeg-js refused them.
    ['progressive frame made baseline', edit(progressive, (x) => (x[psof + 1] = 0xc0)), 'INPUT_UNDECODABLE'],
    ['CMYK with its Adobe segment', cmyk, OK],
    // libjpeg took 4 components for CMYK, jpeg-js refused them without the Adobe segment.
    ['CMYK without its Adobe segment', edit(cmyk, (x) => (x[adobe + 1] = 0xfe)), 'INPUT_UNDECODABLE'],
  ];
}

/** 32 one bits in scan data (0xFF is stuffed with 0x00): no Huffman code is all ones. */
const ONES = [0xff, 0, 0xff, 0, 0xff, 0, 0xff, 0];

/** An APP14 "Adobe" segment with colour transform `t`. */
const adobeSegment = (t: number) =>
  Buffer.from([0xff, 0xee, 0, 14, 0x41, 0x64, 0x6f, 0x62, 0x65, 0, 100, 0, 0, 0, 0, t]);

/**
 * What still splits the decoders. An invalid Huffman code more than ~3 KB before the end of the data:
 * libjpeg-turbo's fast decoding path (all but the last 512 bytes per block of an MCU) reads it as a zero
 * without a warning; jpeg-js refuses it. Bytes after a scan's data in a file of several scans: libjpeg
 * reads every scan before the first row and warns about the bytes past what it read ahead; jpeg-js passes
 * over them. [name, bytes, fast, reference].
 */
function split(): [string, Uint8Array, Outcome, Outcome][] {
  const p = progressive;
  const mid = (at(val, 0xda) + val.length) >> 1;
  const second = at(p, 0xc4, at(p, 0xda) + 2); // the marker after the first scan
  const pad = (pos: number, n: number) =>
    cat(p.subarray(0, pos), new Uint8Array(n).fill(0x11), p.subarray(pos));
  return [
    [
      'an invalid Huffman code 20 KB before the end',
      edit(val, (x) => x.set(ONES, mid)),
      OK,
      'INPUT_UNDECODABLE',
    ],
    ['40 bytes after the first of several scans', pad(second, 40), 'INPUT_UNDECODABLE', OK],
    ['40 bytes after the last of several scans', pad(p.length - 2, 40), 'INPUT_UNDECODABLE', OK],
    // Within what libjpeg read ahead: no warning.
    ['4 bytes after the first of several scans', pad(second, 4), OK, OK],
  ];
}

const outcome = (bytes: Uint8Array, d: Decoder) =>
  decodeImage(bytes, d).then(
    (p) => `${OK} ${p.width}×${p.height}`,
    (e: { code?: string }) => e.code ?? String(e),
  );

describe('corrupt JPEGs', () => {
  it('both decoders give the same outcome, the one expected', async () => {
    const got: string[] = [];
    const want: string[] = [];
    /** Accepted by both with different sizes. */
    const sizes: string[] = [];
    for (const [name, bytes, expected] of corpus()) {
      const fast = await outcome(bytes, 'fast');
      const reference = await outcome(bytes, 'reference');
      got.push(`${name}: fast ${fast.split(' ')[0]}, reference ${reference.split(' ')[0]}`);
      want.push(`${name}: fast ${expected}, reference ${expected}`);
      if (fast.startsWith(OK) && reference.startsWith(OK) && fast !== reference)
        sizes.push(`${name}: fast ${fast}, reference ${reference}`);
    }
    expect(got).toEqual(want);
    expect(sizes).toEqual([]);
  }, 60_000);

  it('the cases that still split them do as documented', async () => {
    for (const [name, bytes, fast, reference] of split()) {
      expect((await outcome(bytes, 'fast')).split(' ')[0], name).toBe(fast);
      expect((await outcome(bytes, 'reference')).split(' ')[0], name).toBe(reference);
    }
  });

  it('every image of the data set and valid encoder variants pass, and libvips decodes them', async () => {
    for (const dir of [VAL_DIR, `${DATA_DIR}/sample`])
      for (const f of readdirSync(dir).filter((x) => /\.jpe?g$/i.test(x))) {
        const bytes = readFileSync(`${dir}/${f}`);
        expect(() => checkJpeg(bytes), f).not.toThrow();
        // Without a libjpeg warning (the fast decoder refuses any).
        expect((await outcome(bytes, 'fast')).split(' ')[0], f).toBe(OK);
      }
    const base = sharp(val);
    const variants: [string, Buffer][] = [
      ['progressive', progressive],
      ['mozjpeg scans', await base.clone().jpeg({ mozjpeg: true }).toBuffer()],
      ['optimised scans', await base.clone().jpeg({ progressive: true, optimiseScans: true }).toBuffer()],
      ['4:4:4', await base.clone().jpeg({ chromaSubsampling: '4:4:4' }).toBuffer()],
      ['grey', await base.clone().greyscale().jpeg().toBuffer()],
      ['grey progressive', await base.clone().greyscale().jpeg({ progressive: true }).toBuffer()],
      ['CMYK progressive', await base.clone().toColourspace('cmyk').jpeg({ progressive: true }).toBuffer()],
      ['quality 100', await base.clone().jpeg({ quality: 100 }).toBuffer()],
      ['EXIF and ICC', await base.clone().withMetadata().jpeg().toBuffer()],
      ['1×1', await base.clone().resize(1, 1).jpeg().toBuffer()],
      ['17×9', await base.clone().resize(17, 9, { fit: 'fill' }).jpeg().toBuffer()],
    ];
    for (const [name, bytes] of variants) {
      expect((await outcome(bytes, 'fast')).split(' ')[0], name).toBe(OK);
      expect((await outcome(bytes, 'reference')).split(' ')[0], name).toBe(OK);
    }
  }, 60_000);
});
