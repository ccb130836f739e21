/** duplicateJsonKey: finds a key repeated within one object of JSON text, and nothing else. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { duplicateJsonKey } from '../../src/protocol/index.ts';

describe('duplicateJsonKey', () => {
  it('property: JSON.stringify never repeats a key, so nothing is found, indented or not', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(duplicateJsonKey(JSON.stringify(v))).toBeNull();
        expect(duplicateJsonKey(JSON.stringify(v, null, 2))).toBeNull();
      }),
      { numRuns: 300 },
    );
  });

  it('property: a key added again to any object of the text is found, with its path', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { minKeys: 1 }),
        fc.nat(),
        (obj, pick) => {
          const keys = Object.keys(obj);
          const key = keys[pick % keys.length];
          const text = JSON.stringify({ outer: [obj] });
          const inner = JSON.stringify(obj);
          const twice = text.replace(inner, () => `{${JSON.stringify(key)}:0,${inner.slice(1)}`);
          expect(duplicateJsonKey(twice)).toBe(`${JSON.stringify(key)} twice in outer[]`);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('compares keys decoded, and keeps objects apart', () => {
    expect(duplicateJsonKey('{"a": 1, "\\u0061": 2}')).toBe('"a" twice in the top-level object');
    expect(duplicateJsonKey('{"a": {"a": 1}, "b": {"a": 2}}')).toBeNull();
    expect(duplicateJsonKey('{"x": {"y": [{"k": 1, "k": 2}]}}')).toBe('"k" twice in x.y[]');
    expect(duplicateJsonKey('{"x": {"y": 1}, "y": 2, "x": 3}')).toBe('"x" twice in the top-level object');
  });

  it('is not fooled by strings that look like keys, escapes, or strings in arrays', () => {
    expect(duplicateJsonKey('{"a": "\\"a\\": 1", "b": ["a", "a"]}')).toBeNull();
    expect(duplicateJsonKey('{"a\\\\": 1, "a": 2}')).toBeNull();
    expect(duplicateJsonKey('["x", {"x": 1}, "x"]')).toBeNull();
    expect(duplicateJsonKey('{"s": "}{", "s" : 1}')).toBe('"s" twice in the top-level object');
  });
});
