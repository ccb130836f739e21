/**
 * Numbers given on the command line. `Number(text)` takes what a user did not mean as a number: `""` and
 * `" "` are 0, `"0x10"` is 16, `"1e3"` is 1000, `"abc"` is NaN (which compares false with every bound, so a
 * range check lets it through). Before 2026-12-06 `serve-model --port ""` served on a random port,
 * `sim --disagreement ""` ran with 0, `group init --nodes 0x4` made a group of 4, `eval --seed abc` ran
 * with seed NaN, and `group init --f x` said "n = 4 nodes tolerate at most f = 1". These take decimal
 * text only and say which option is wrong (CLI_USAGE).
 */
import { usageError } from './errors.ts';

/** The number `text` writes in decimal digits alone (no sign, point, exponent, hex or blanks); else NaN. */
export function wholeOrNaN(text: string): number {
  return /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
}

/** A whole number written in decimal digits (no sign, point, exponent, hex or blanks) in [min, max]. */
export function parseWhole(option: string, text: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = wholeOrNaN(text);
  if (!(Number.isSafeInteger(n) && n >= min && n <= max))
    throw usageError(
      `${option} must be a whole number ${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`}, got ${JSON.stringify(text)}`,
    );
  return n;
}

/** A decimal number (digits, an optional fraction and exponent; no sign, hex or blanks) in [min, max]. */
export function parseDecimal(option: string, text: string, min: number, max: number): number {
  const n = /^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$/.test(text) ? Number(text) : Number.NaN;
  if (!(Number.isFinite(n) && n >= min && n <= max))
    throw usageError(`${option} must be a number in [${min}, ${max}], got ${JSON.stringify(text)}`);
  return n;
}
