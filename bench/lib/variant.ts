/**
 * What sets one group apart from another in an A/B of two groups (bench/groupab.ts, bench/replicaab.ts): a
 * patch of its node configs or replica settings and variables added to its node processes' environment,
 * given on the command line.
 */
import { BenchArgError } from './args.ts';

/**
 * `VAR=VALUE` pairs separated by commas (a value may be empty, and may hold `=` but no comma). Throws
 * BenchArgError for a pair without `=` or a name that is not a shell variable's.
 */
export function parseEnvPairs(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of text.split(',')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(pair);
    if (!m) throw new BenchArgError(`takes VAR=VALUE pairs separated by commas, not "${pair}"`);
    env[m[1]] = m[2];
  }
  return env;
}

/**
 * A JSON object to merge into node configs. Where it holds a key of `defaults` (e.g. `replica`: the
 * settings `group init` writes; `engine`), that object is merged into the default one, since a node
 * config's object replaces a default whole. Throws BenchArgError for anything but a JSON object, or such
 * a key that does not hold one.
 */
export function nodeConfigPatch(
  text: string,
  defaults: Record<string, Record<string, unknown>>,
): Record<string, unknown> {
  const v = jsonObject(text);
  const out: Record<string, unknown> = { ...v };
  for (const [key, base] of Object.entries(defaults)) {
    if (v[key] === undefined) continue;
    if (!isObject(v[key])) throw new BenchArgError(`"${key}" must be a JSON object`);
    out[key] = { ...base, ...v[key] };
  }
  return out;
}

/**
 * Replica settings as a JSON object whose values are numbers or true/false (the node's config check says
 * which names and values it takes). Throws BenchArgError for anything else.
 */
export function replicaPatch(text: string): Record<string, number | boolean> {
  const v = jsonObject(text);
  for (const [key, x] of Object.entries(v))
    if (typeof x !== 'number' && typeof x !== 'boolean')
      throw new BenchArgError(`"${key}": a replica setting is a number or true/false`);
  return v as Record<string, number | boolean>;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** `text` as a JSON object, or BenchArgError saying it is not JSON or not an object. */
function jsonObject(text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new BenchArgError(`is not JSON: ${(e as Error).message}`);
  }
  if (!isObject(v)) throw new BenchArgError('must be a JSON object');
  return v;
}
