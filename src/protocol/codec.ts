/**
 * Dropbear's canonical codec: a small schema codec in which every value has exactly one encoding.
 *
 * Wire rules (docs/certificate.md restates them for implementers in other languages):
 * - uint: unsigned LEB128, minimal (no trailing 0x00 continuation groups), at most 2^53-1.
 * - sint: zigzag then uint.
 * - bool: one byte, 0 or 1.
 * - bytes(max): uint length then the bytes; fixed(n): exactly n bytes, no length.
 * - str(max): bytes holding valid UTF-8.
 * - array(max): uint count then the items.
 * - struct: fields in schema order, no names, no tags.
 * - option: 0 (absent) or 1 followed by the value.
 * - union: uint variant index (schema order) then the variant's struct.
 * Decoding rejects truncated input, trailing bytes, non-minimal integers, out-of-range tags and
 * booleans, invalid UTF-8 and anything over its declared maximum, each with a typed CodecError.
 *
 * Each codec also maps values to and from JSON (bytes as base64url without padding), strictly:
 * unknown or missing fields, wrong types and non-canonical base64 are refused.
 */
import { CodecError } from './errors.ts';

export class Writer {
  buf: Uint8Array;
  pos = 0;
  constructor(size = 256) {
    this.buf = new Uint8Array(size);
  }
  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }
  uint(v: number): void {
    this.ensure(8);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.pos++] = v;
  }
  raw(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  finish(): Uint8Array {
    return copyOut(this.buf, 0, this.pos);
  }
}

// Decoded byte fields are copies (never views of the input, which may be a large frame). Short ones
// (hashes, keys, signatures: most fields) are copied into a shared 8 KiB slab, as Node's Buffer pool does
// for small Buffers, instead of each getting an ArrayBuffer of its own: V8 allocates, tracks and sweeps
// every ArrayBuffer separately, and decoding made a dozen per request. A live field keeps its slab (at
// most 8 KiB) alive. Views are plain Uint8Arrays at offsets of the slab.
const SLAB_BYTES = 8192;
const SLAB_MAX_FIELD = 256;
let slab = new ArrayBuffer(SLAB_BYTES);
let slabUsed = 0;

function copyOut(src: Uint8Array, start: number, n: number): Uint8Array {
  if (n > SLAB_MAX_FIELD) {
    // Not src.slice(): decoders are handed Buffers (socket frames, HTTP bodies), and Buffer#slice is a
    // view, not a copy. A view kept the whole frame or body alive as long as the field lived, and handing
    // it to a worker thread cloned all of that: a client batch of 16 images of 49 KB, posted one image at
    // a time for preprocessing, copied 16 × 786 KB.
    const out = new Uint8Array(n);
    out.set(src.subarray(start, start + n));
    return out;
  }
  if (slabUsed + n > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = new Uint8Array(slab, slabUsed, n);
  for (let i = 0; i < n; i++) out[i] = src[start + i];
  slabUsed += n;
  return out;
}

// Fixed-size fields (hashes, keys, signatures: fixed(n)) repeat within one message: the group id, client,
// batch root and batch signature of every request of one client batch in a FORWARD, the upper levels of
// their inclusion paths, the RESULTS digests the votes of a proposal's entries name. Decoded by a sharing
// Reader (decodeShared: the messages nodes send each other, decodeMessage), a fixed field whose bytes equal
// one decoded earlier by the same Reader (`gen`) is that earlier value, not a new copy: one Uint8Array (and
// slab bytes) for each distinct value of a message instead of one per field. The table is direct-mapped on
// the value's first two bytes (hashes and keys are uniform there); a slot of another Reader, another length
// or other bytes is a miss, and the field is copied as before. Sound only where nothing changes decoded
// bytes in place, so plain `decode` does not share: a caller that flips a byte of one certificate's
// signature must not flip it in every certificate of the answer it decoded.
const INTERN_SLOTS = 512;
const internValues: (Uint8Array | null)[] = new Array<Uint8Array | null>(INTERN_SLOTS).fill(null);
const internGens = new Int32Array(INTERN_SLOTS);
let readerGen = 0;

export class Reader {
  pos = 0;
  /** This Reader's generation: the intern table's entries it may return (see INTERN_SLOTS); 0: none. */
  private readonly gen: number;
  /** `shareEqual`: equal fixed-size fields share one copy (see INTERN_SLOTS and decodeShared). */
  constructor(
    readonly buf: Uint8Array,
    shareEqual = false,
  ) {
    if (shareEqual) {
      // Never 0 (the table's empty slots, and plain Readers): from 2^31 − 1 it goes on at 1.
      readerGen = readerGen === 0x7fffffff ? 1 : readerGen + 1;
      this.gen = readerGen;
    } else this.gen = 0;
  }
  u8(): number {
    if (this.pos >= this.buf.length) throw new CodecError('CODEC_TRUNCATED', 'input ends early');
    return this.buf[this.pos++];
  }
  uint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; ; i++) {
      const b = this.u8();
      if (i === 7 && b > 0x0f) throw new CodecError('CODEC_OVERSIZE', 'integer above 2^53-1');
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) {
        if (b === 0 && i > 0) throw new CodecError('CODEC_NON_CANONICAL', 'integer is not minimally encoded');
        return result;
      }
      mul *= 0x80;
    }
  }
  /** The next n bytes as a copy the caller owns (short ones share a slab: see copyOut). */
  take(n: number): Uint8Array {
    if (this.pos + n > this.buf.length) throw new CodecError('CODEC_TRUNCATED', 'input ends early');
    const out = copyOut(this.buf, this.pos, n);
    this.pos += n;
    return out;
  }
  /**
   * take(n) for a fixed-size field (2 ≤ n ≤ 256), where, for a sharing Reader, an equal field decoded
   * earlier by this Reader may be returned in place of a copy (see INTERN_SLOTS): equal bytes, not a view
   * of the input.
   */
  takeFixed(n: number): Uint8Array {
    if (this.gen === 0) return this.take(n);
    const buf = this.buf;
    const pos = this.pos;
    if (pos + n > buf.length) throw new CodecError('CODEC_TRUNCATED', 'input ends early');
    const slot = (buf[pos] | (buf[pos + 1] << 8)) & (INTERN_SLOTS - 1);
    const seen = internValues[slot];
    if (seen !== null && internGens[slot] === this.gen && seen.length === n) {
      let i = 0;
      while (i < n && seen[i] === buf[pos + i]) i++;
      if (i === n) {
        this.pos = pos + n;
        return seen;
      }
    }
    const out = copyOut(buf, pos, n);
    internValues[slot] = out;
    internGens[slot] = this.gen;
    this.pos = pos + n;
    return out;
  }
}

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface Codec<T> {
  readonly name: string;
  enc(w: Writer, v: T): void;
  dec(r: Reader): T;
  toJson(v: T): Json;
  fromJson(j: unknown, path: string): T;
}

export type Infer<C> = C extends Codec<infer T> ? T : never;

function badValue(path: string, msg: string): CodecError {
  return new CodecError('CODEC_BAD_VALUE', path ? `${path}: ${msg}` : msg);
}
function badJson(path: string, msg: string): CodecError {
  return new CodecError('CODEC_BAD_JSON', `${path || 'value'}: ${msg}`);
}

function checkUint(v: unknown, path: string, fromJson: boolean): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw (fromJson ? badJson : badValue)(path, 'expected an integer in [0, 2^53-1]');
  }
  return v;
}

export const uint: Codec<number> = {
  name: 'uint',
  enc(w, v) {
    checkUint(v, '', false);
    w.uint(v);
  },
  dec: (r) => r.uint(),
  toJson: (v) => v,
  fromJson: (j, p) => checkUint(j, p, true),
};

/** Signed integer, zigzag-encoded; limited to ±2^52 so that the zigzag form stays a safe integer. */
export const sint: Codec<number> = {
  name: 'sint',
  enc(w, v) {
    if (!Number.isSafeInteger(v) || Math.abs(v) > 2 ** 52 - 1)
      throw badValue('', 'expected an integer in ±2^52');
    w.uint(v >= 0 ? v * 2 : -v * 2 - 1);
  },
  dec(r) {
    const z = r.uint();
    if (z > 2 ** 53 - 2) throw new CodecError('CODEC_OVERSIZE', 'sint out of range');
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  },
  toJson: (v) => v,
  fromJson(j, p) {
    if (typeof j !== 'number' || !Number.isSafeInteger(j) || Math.abs(j) > 2 ** 52 - 1)
      throw badJson(p, 'expected an integer in ±2^52');
    return j;
  },
};

export const bool: Codec<boolean> = {
  name: 'bool',
  enc(w, v) {
    if (typeof v !== 'boolean') throw badValue('', 'expected a boolean');
    w.u8(v ? 1 : 0);
  },
  dec(r) {
    const b = r.u8();
    if (b > 1) throw new CodecError('CODEC_NON_CANONICAL', 'boolean byte must be 0 or 1');
    return b === 1;
  },
  toJson: (v) => v,
  fromJson(j, p) {
    if (typeof j !== 'boolean') throw badJson(p, 'expected a boolean');
    return j;
  },
};

const B64URL = /^[A-Za-z0-9_-]*$/;
export function toB64u(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64url');
}
export function fromB64u(s: unknown, path: string): Uint8Array {
  if (typeof s !== 'string' || !B64URL.test(s) || s.length % 4 === 1)
    throw badJson(path, 'expected base64url');
  const out = new Uint8Array(Buffer.from(s, 'base64url'));
  if (toB64u(out) !== s) throw badJson(path, 'base64url is not canonical');
  return out;
}

export function bytes(max: number): Codec<Uint8Array> {
  const check = (v: Uint8Array, path: string, json: boolean) => {
    if (!(v instanceof Uint8Array)) throw (json ? badJson : badValue)(path, 'expected bytes');
    if (v.length > max)
      throw new CodecError('CODEC_OVERSIZE', `${path || 'bytes'}: ${v.length} > ${max} bytes`);
    return v;
  };
  return {
    name: `bytes(${max})`,
    enc(w, v) {
      check(v, '', false);
      w.uint(v.length);
      w.raw(v);
    },
    dec(r) {
      const n = r.uint();
      if (n > max) throw new CodecError('CODEC_OVERSIZE', `bytes: ${n} > ${max}`);
      return r.take(n);
    },
    toJson: toB64u,
    fromJson: (j, p) => check(fromB64u(j, p), p, true),
  };
}

export function fixed(n: number): Codec<Uint8Array> {
  const check = (v: Uint8Array, path: string, json: boolean) => {
    if (!(v instanceof Uint8Array) || v.length !== n)
      throw (json ? badJson : badValue)(path, `expected exactly ${n} bytes`);
    return v;
  };
  return {
    name: `fixed(${n})`,
    enc(w, v) {
      check(v, '', false);
      w.raw(v);
    },
    dec: n >= 2 && n <= SLAB_MAX_FIELD ? (r) => r.takeFixed(n) : (r) => r.take(n),
    toJson: toB64u,
    fromJson: (j, p) => check(fromB64u(j, p), p, true),
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8enc = new TextEncoder();
export function str(max: number): Codec<string> {
  return {
    name: `str(${max})`,
    enc(w, v) {
      if (typeof v !== 'string') throw badValue('', 'expected a string');
      const b = utf8enc.encode(v);
      if (b.length > max) throw new CodecError('CODEC_OVERSIZE', `string longer than ${max} bytes`);
      if (utf8.decode(b) !== v) throw badValue('', 'string is not valid Unicode');
      w.uint(b.length);
      w.raw(b);
    },
    dec(r) {
      const n = r.uint();
      if (n > max) throw new CodecError('CODEC_OVERSIZE', `string longer than ${max} bytes`);
      try {
        return utf8.decode(r.take(n));
      } catch {
        throw new CodecError('CODEC_BAD_UTF8', 'string is not valid UTF-8');
      }
    },
    toJson: (v) => v,
    fromJson(j, p) {
      if (typeof j !== 'string') throw badJson(p, 'expected a string');
      if (utf8.decode(utf8enc.encode(j)) !== j) throw badJson(p, 'string is not valid Unicode');
      if (utf8enc.encode(j).length > max)
        throw new CodecError('CODEC_OVERSIZE', `${p}: longer than ${max} bytes`);
      return j;
    },
  };
}

export function array<T>(item: Codec<T>, max: number): Codec<T[]> {
  return {
    name: `array(${item.name},${max})`,
    enc(w, v) {
      if (!Array.isArray(v)) throw badValue('', 'expected an array');
      if (v.length > max) throw new CodecError('CODEC_OVERSIZE', `array longer than ${max}`);
      w.uint(v.length);
      for (const x of v) item.enc(w, x);
    },
    dec(r) {
      const n = r.uint();
      if (n > max) throw new CodecError('CODEC_OVERSIZE', `array longer than ${max}`);
      const out = new Array<T>(n);
      for (let i = 0; i < n; i++) out[i] = item.dec(r);
      return out;
    },
    toJson: (v) => v.map((x) => item.toJson(x)),
    fromJson(j, p) {
      if (!Array.isArray(j)) throw badJson(p, 'expected an array');
      if (j.length > max) throw new CodecError('CODEC_OVERSIZE', `${p}: array longer than ${max}`);
      return j.map((x, i) => item.fromJson(x, `${p}[${i}]`));
    },
  };
}

type Fields = Record<string, Codec<unknown>>;
export type StructOf<F extends Fields> = { [K in keyof F]: Infer<F[K]> };

/**
 * A struct's enc and dec as code written for its fields: one call site per field (each sees one codec,
 * so V8 can inline it) and a decoded object built as one literal (one shape for every value of the
 * struct). Same bytes and errors as the field-by-field loop it replaces; the code is made only from
 * this module's own text and field indices (names go in as JSON string literals).
 */
function compiledStruct(
  keys: string[],
  codecs: Codec<unknown>[],
  wrap: (e: unknown, i: number) => unknown,
): StructCode {
  const args = codecs.map((_, i) => `c${i}`);
  const prop = (i: number) => `v[${JSON.stringify(keys[i])}]`;
  const encSrc = [
    `if (typeof v !== 'object' || v === null) throw badValue('', 'expected an object');`,
    'let i = 0;',
    'try {',
    ...keys.map((_, i) => `  c${i}.enc(w, ${prop(i)}); i = ${i + 1};`),
    '} catch (e) { throw wrap(e, i); }',
  ].join('\n');
  const fieldsSrc = keys.map((k, i) => `${JSON.stringify(k)}: c${i}.dec(r)`).join(', ');
  const decSrc = `return {${fieldsSrc}};`;
  const decKindSrc = `return {kind: kind, ${fieldsSrc}};`;
  let make: (...a: unknown[]) => [StructCode['enc'], StructCode['dec'], StructCode['decKind']];
  try {
    make = new Function(
      ...args,
      'wrap',
      'badValue',
      `return [function enc(w, v) {\n${encSrc}\n}, function dec(r) {\n${decSrc}\n}, function decKind(r, kind) {\n${decKindSrc}\n}];`,
    ) as typeof make;
  } catch {
    // Where code may not be made from strings (a browser page whose content security policy has no
    // 'unsafe-eval': the dashboard, src/web): the same, field by field.
    return loopStruct(keys, codecs, wrap);
  }
  const [enc, dec, decKind] = make(...codecs, wrap, badValue);
  return { enc, dec, decKind };
}

/**
 * A struct's compiled code. `decKind`: dec with `kind` as the first property, for a union whose variant
 * this struct is: one object per decoded value instead of the variant's and then a copy with the kind
 * spread in (a decoded request made three such pairs, a RESULTS entry one).
 */
interface StructCode {
  enc: (w: Writer, v: unknown) => void;
  dec: (r: Reader) => unknown;
  decKind: (r: Reader, kind: string) => unknown;
}

/** compiledStruct's enc and dec as loops over the fields: the same bytes, values and errors, slower. */
function loopStruct(
  keys: string[],
  codecs: Codec<unknown>[],
  wrap: (e: unknown, i: number) => unknown,
): StructCode {
  return {
    enc(w, v) {
      if (typeof v !== 'object' || v === null) throw badValue('', 'expected an object');
      const rec = v as Record<string, unknown>;
      let i = 0;
      try {
        for (; i < keys.length; i++) codecs[i].enc(w, rec[keys[i]]);
      } catch (e) {
        throw wrap(e, i);
      }
    },
    dec(r) {
      const out: Record<string, unknown> = {};
      for (let i = 0; i < keys.length; i++) out[keys[i]] = codecs[i].dec(r);
      return out;
    },
    decKind(r, kind) {
      const out: Record<string, unknown> = { kind };
      for (let i = 0; i < keys.length; i++) out[keys[i]] = codecs[i].dec(r);
      return out;
    },
  };
}

export function struct<F extends Fields>(fields: F): Codec<StructOf<F>> {
  const keys = Object.keys(fields);
  const codecs = keys.map((k) => fields[k]);
  const wrap = (e: unknown, i: number): unknown =>
    e instanceof CodecError
      ? new CodecError(
          e.code as never,
          `${keys[i]}${/^[\w.[\]]+: /.test(e.message) ? '.' : ': '}${e.message}`,
        )
      : e;
  const { enc, dec, decKind } = compiledStruct(keys, codecs, wrap);
  const codec: Codec<StructOf<F>> & { decKind: StructCode['decKind'] } = {
    name: `struct{${keys.join(',')}}`,
    enc,
    dec: dec as (r: Reader) => StructOf<F>,
    decKind,
    toJson(v) {
      const out: Record<string, Json> = {};
      const rec = v as Record<string, unknown>;
      for (let i = 0; i < keys.length; i++) out[keys[i]] = codecs[i].toJson(rec[keys[i]]);
      return out;
    },
    fromJson(j, p) {
      if (typeof j !== 'object' || j === null || Array.isArray(j)) throw badJson(p, 'expected an object');
      const rec = j as Record<string, unknown>;
      for (const k of Object.keys(rec))
        if (!Object.hasOwn(fields, k)) throw badJson(p, `unknown field "${k}"`);
      const out: Record<string, unknown> = {};
      for (let i = 0; i < keys.length; i++) {
        if (!Object.hasOwn(rec, keys[i])) throw badJson(p, `missing field "${keys[i]}"`);
        out[keys[i]] = codecs[i].fromJson(rec[keys[i]], p ? `${p}.${keys[i]}` : keys[i]);
      }
      return out as StructOf<F>;
    },
  };
  return codec;
}

export function option<T>(inner: Codec<T>): Codec<T | null> {
  return {
    name: `option(${inner.name})`,
    enc(w, v) {
      if (v === null || v === undefined) w.u8(0);
      else {
        w.u8(1);
        inner.enc(w, v);
      }
    },
    dec(r) {
      const t = r.u8();
      if (t === 0) return null;
      if (t !== 1) throw new CodecError('CODEC_BAD_TAG', 'option tag must be 0 or 1');
      return inner.dec(r);
    },
    toJson: (v) => (v === null || v === undefined ? null : inner.toJson(v)),
    fromJson: (j, p) => (j === null ? null : inner.fromJson(j, p)),
  };
}

type Variants = Record<string, Codec<Record<string, unknown>>>;
export type UnionOf<V extends Variants> = { [K in keyof V]: { kind: K } & Infer<V[K]> }[keyof V];

/** A tagged union; the value carries `kind`, the variant's fields sit beside it. */
export function union<V extends Variants>(variants: V): Codec<UnionOf<V>> {
  const kinds = Object.keys(variants);
  const index = new Map(kinds.map((k, i) => [k, i]));
  // Each variant's decoder with the kind put in: a struct's own (decKind), else the variant's value
  // copied after the kind.
  const decoders = kinds.map((kind) => {
    const v = variants[kind] as Codec<Record<string, unknown>> & { decKind?: StructCode['decKind'] };
    const decKind = v.decKind;
    return decKind ? (r: Reader) => decKind(r, kind) : (r: Reader) => ({ kind, ...v.dec(r) });
  });
  return {
    name: `union{${kinds.join('|')}}`,
    enc(w, v) {
      const i = index.get((v as { kind: string })?.kind);
      if (i === undefined) throw badValue('', `unknown kind ${String((v as { kind?: unknown })?.kind)}`);
      w.uint(i);
      variants[kinds[i]].enc(w, v as Record<string, unknown>);
    },
    dec(r) {
      const i = r.uint();
      if (i >= kinds.length) throw new CodecError('CODEC_BAD_TAG', `unknown variant ${i}`);
      return decoders[i](r) as UnionOf<V>;
    },
    toJson(v) {
      const k = (v as { kind: string }).kind;
      return { kind: k, ...(variants[k].toJson(v as Record<string, unknown>) as Record<string, Json>) };
    },
    fromJson(j, p) {
      if (typeof j !== 'object' || j === null || Array.isArray(j)) throw badJson(p, 'expected an object');
      const { kind, ...rest } = j as Record<string, unknown>;
      if (typeof kind !== 'string' || !index.has(kind)) throw badJson(p, `unknown kind ${String(kind)}`);
      return { kind, ...variants[kind].fromJson(rest, p) } as UnionOf<V>;
    },
  };
}

/** An array that must be strictly ascending by a byte or number key: the canonical form of a map. */
export function sortedArray<T>(item: Codec<T>, max: number, key: (v: T) => Uint8Array | number): Codec<T[]> {
  const base = array(item, max);
  const check = (v: T[], code: 'CODEC_NON_CANONICAL' | 'CODEC_BAD_VALUE', path = '') => {
    for (let i = 1; i < v.length; i++) {
      if (compareKeys(key(v[i - 1]), key(v[i])) >= 0)
        throw new CodecError(
          code,
          `${path ? `${path}: ` : ''}entries must be strictly ascending by key (no duplicates)`,
        );
    }
    return v;
  };
  return {
    name: `sorted(${base.name})`,
    enc(w, v) {
      check(v, 'CODEC_BAD_VALUE');
      base.enc(w, v);
    },
    dec: (r) => check(base.dec(r), 'CODEC_NON_CANONICAL'),
    toJson: base.toJson,
    fromJson: (j, p) => check(base.fromJson(j, p), 'CODEC_BAD_VALUE', p),
  };
}

export function compareKeys(a: Uint8Array | number, b: Uint8Array | number): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return Buffer.compare(a as Uint8Array, b as Uint8Array);
}

/**
 * A codec that remembers the canonical bytes of the values it decodes or encodes (in a WeakMap keyed by the
 * value), so a value is encoded at most once: a batch a node received is hashed, signed over, stored and
 * sent on from the bytes it arrived as. Every value has exactly one encoding (decoding refuses all others),
 * so the bytes remembered are the bytes encoding would produce, as long as the value is not changed after
 * it was first decoded or encoded: values of a remembered codec must be treated as immutable from then on.
 */
export function remembered<T extends object>(base: Codec<T>): Codec<T> {
  const known = new WeakMap<object, Uint8Array>();
  const codec: Codec<T> & Remembered<T> = {
    name: base.name,
    bytesOf: (v) => (typeof v === 'object' && v !== null ? known.get(v) : undefined),
    enc(w, v) {
      const b = typeof v === 'object' && v !== null ? known.get(v) : undefined;
      if (b) return w.raw(b);
      const start = w.pos;
      base.enc(w, v);
      known.set(v, copyOut(w.buf, start, w.pos - start));
    },
    dec(r) {
      const start = r.pos;
      const v = base.dec(r);
      // A copy (copyOut), not a view of the input: that may be a Buffer holding a whole socket read.
      known.set(v, copyOut(r.buf, start, r.pos - start));
      return v;
    },
    toJson: base.toJson,
    fromJson: base.fromJson,
  };
  return codec;
}

/** A remembered codec's canonical bytes of a value it decoded or encoded before (undefined if none). */
interface Remembered<T> {
  bytesOf(v: T): Uint8Array | undefined;
}

const shared = new Writer(1 << 16);
/**
 * Canonical bytes of a value. Of a remembered codec's value, the bytes it remembers (not a copy: the caller
 * must not change them, as it must not change the value).
 */
export function encode<T>(codec: Codec<T>, value: T): Uint8Array {
  const bytesOf = (codec as Codec<T> & Partial<Remembered<T>>).bytesOf;
  if (bytesOf !== undefined) {
    const b = bytesOf(value);
    if (b !== undefined) return b;
  }
  shared.pos = 0;
  codec.enc(shared, value);
  // Encoding it made the codec remember it: those bytes, not a second copy.
  const b = bytesOf?.(value);
  return b !== undefined && b.length === shared.pos ? b : shared.finish();
}

/**
 * Canonical bytes of each value, as views of one buffer of exactly their total length: one ArrayBuffer
 * for all of them instead of one each (encode copies any over 256 bytes into its own), for values whose
 * encodings are kept and dropped together (a batch's outcomes). A view kept alone keeps the whole buffer.
 */
export function encodeEach<T>(codec: Codec<T>, values: readonly T[]): Uint8Array[] {
  shared.pos = 0;
  const ends = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) {
    codec.enc(shared, values[i]);
    ends[i] = shared.pos;
  }
  const all = new Uint8Array(shared.pos);
  all.set(shared.buf.subarray(0, shared.pos));
  const out = new Array<Uint8Array>(values.length);
  let start = 0;
  for (let i = 0; i < values.length; i++) {
    out[i] = all.subarray(start, ends[i]);
    start = ends[i];
  }
  return out;
}

/** Decode exactly one value; anything left over is an error. */
export function decode<T>(codec: Codec<T>, bytes: Uint8Array): T {
  return decodeWith(codec, new Reader(bytes));
}

/**
 * decode, but fixed-size fields of equal bytes share one copy (see INTERN_SLOTS): for values nothing
 * changes in place (the messages nodes send each other: decodeMessage), whose repeated hashes, keys and
 * signatures then cost one Uint8Array each. Same values, same errors.
 */
export function decodeShared<T>(codec: Codec<T>, bytes: Uint8Array): T {
  return decodeWith(codec, new Reader(bytes, true));
}

function decodeWith<T>(codec: Codec<T>, r: Reader): T {
  const v = codec.dec(r);
  if (r.pos !== r.buf.length)
    throw new CodecError('CODEC_TRAILING_BYTES', `${r.buf.length - r.pos} trailing bytes`);
  return v;
}

export function toJson<T>(codec: Codec<T>, value: T): Json {
  return codec.toJson(value);
}

export function fromJson<T>(codec: Codec<T>, json: unknown): T {
  return codec.fromJson(json, '');
}
