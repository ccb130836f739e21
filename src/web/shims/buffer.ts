/**
 * The part of Node's Buffer that the protocol and certificate code use, for the browser bundle (web/bundle.ts
 * injects it as the global `Buffer`): `from` (a string in hex, utf8, base64 or base64url; an ArrayBuffer
 * view; bytes), `concat`, `compare`, `allocUnsafe` and `toString` in those encodings. Decoding is as
 * lenient as Node's; the codec checks that base64url is canonical by encoding it back.
 */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

type Encoding = 'hex' | 'utf8' | 'base64' | 'base64url';

function fromBase64(s: string, url: boolean): Uint8Array {
  let t = url ? s.replace(/-/g, '+').replace(/_/g, '/') : s;
  t = t.replace(/=+$/, '');
  if (t.length % 4 === 1) t = t.slice(0, -1); // as Node: a lone trailing character carries no byte
  const bin = atob(t + '='.repeat((4 - (t.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function toBase64(b: Uint8Array, url: boolean): string {
  let bin = '';
  for (let i = 0; i < b.length; i += 0x8000)
    bin += String.fromCharCode(...b.subarray(i, Math.min(b.length, i + 0x8000)));
  const s = btoa(bin);
  return url ? s.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '') : s;
}

/** A Node-like Buffer: bytes whose `toString` takes an encoding. */
class Bytes extends Uint8Array {
  override toString(enc: Encoding = 'utf8'): string {
    if (enc === 'hex') {
      let s = '';
      for (let i = 0; i < this.length; i++) s += HEX[this[i]];
      return s;
    }
    if (enc === 'base64' || enc === 'base64url') return toBase64(this, enc === 'base64url');
    if (enc === 'utf8') return new TextDecoder().decode(this);
    throw new TypeError(`unsupported encoding ${String(enc)}`);
  }
}

function view(b: Uint8Array): Bytes {
  return new Bytes(b.buffer as ArrayBuffer, b.byteOffset, b.length);
}

function from(
  value: string | ArrayBuffer | ArrayLike<number>,
  encOrOffset?: Encoding | number,
  length?: number,
): Bytes {
  if (typeof value === 'string') {
    const enc = (encOrOffset ?? 'utf8') as Encoding;
    if (enc === 'hex') {
      const n = value.length >> 1;
      const out = new Bytes(n);
      for (let i = 0; i < n; i++) {
        const pair = value.slice(2 * i, 2 * i + 2);
        // Node stops at the first pair that is not hex (parseInt alone would take the "0" of "0g").
        if (!/^[0-9a-fA-F]{2}$/.test(pair)) return out.subarray(0, i) as Bytes;
        out[i] = Number.parseInt(pair, 16);
      }
      return out;
    }
    if (enc === 'base64' || enc === 'base64url') return view(fromBase64(value, enc === 'base64url'));
    if (enc === 'utf8') return view(new TextEncoder().encode(value));
    throw new TypeError(`unsupported encoding ${String(enc)}`);
  }
  if (value instanceof ArrayBuffer) {
    const offset = typeof encOrOffset === 'number' ? encOrOffset : 0;
    return new Bytes(value, offset, length ?? value.byteLength - offset);
  }
  const out = new Bytes(value.length);
  out.set(value);
  return out;
}

function concat(list: readonly Uint8Array[]): Bytes {
  let n = 0;
  for (const b of list) n += b.length;
  const out = new Bytes(n);
  let o = 0;
  for (const b of list) {
    out.set(b, o);
    o += b.length;
  }
  return out;
}

function compare(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

export const Buffer = {
  from,
  concat,
  compare,
  allocUnsafe: (n: number): Bytes => new Bytes(n),
  /** Read by protocol/crypto.ts for Node's `hexSlice` (absent here: it hexes through `toString`). */
  prototype: Bytes.prototype,
};
