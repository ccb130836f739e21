/**
 * What sets one group apart from another in an A/B of two groups (bench/groupab.ts): a patch of its node
 * configs and variables added to its node processes' environment, both given on the command line.
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
 * A JSON object to merge into node configs. Its `replica`, if any, is merged into `replicaDefaults` (the
 * settings `group init` writes), since a node config's `replica` replaces them whole. Throws
 * BenchArgError for anything but a JSON object, or a `replica` that is not one.
 */
export function nodeConfigPatch(
  text: string,
  replicaDefaults: Record<string, unknown>,
): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new BenchArgError(`is not JSON: ${(e as Error).message}`);
  }
  const isObject = (x: unknown): x is Record<string, unknown> =>
    typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!isObject(v)) throw new BenchArgError('must be a JSON object');
  if (v.replica === undefined) return v;
  if (!isObject(v.replica)) throw new BenchArgError('"replica" must be a JSON object');
  return { ...v, replica: { ...replicaDefaults, ...v.replica } };
}
