/**
 * The stand-in model (src/inference/standin.ts) as a node backend: `"model": {"standin": true}` (or
 * `{"standin": {"disagreement": 0.1}}`) in a node config. No inference cost, so benchmarks of real node
 * processes measure the protocol alone. Its digest is the one the simulator's genesis names for the node
 * (`makeGroup` in src/sim/world.ts): SHA-256 of "stand-in-model-<node id>"; `dropbear group init` puts it
 * in the genesis for every node whose model is `standin`.
 *
 * Inputs are DBT1 tensors of the stand-in's input shape (float32 [1, 16], see `standInInput`); the node's
 * input check accepts only those, and the answer depends only on the input bytes and the node id.
 */
import type { ModelBackend } from '../inference/backend.ts';
import { encodeTensorInput } from '../inference/preprocess.ts';
import type { ModelSpec } from '../inference/spec.ts';
import { standInResult } from '../inference/standin.ts';
import { hex, sha256 } from '../protocol/index.ts';

/** The model name that `initGroup({models})` and `--models` take for the stand-in. */
export const STANDIN_MODEL = 'standin';

/** Elements of the stand-in's input tensor (float32 [1, 16]). */
export const STANDIN_INPUT = 16;

/** The stand-in's digest (hex) for node `id`, as makeGroup (src/sim/world.ts) names it. */
export function standInDigest(id: number): string {
  return hex(sha256(new TextEncoder().encode(`stand-in-model-${id}`)));
}

function standInSpec(digest: string): ModelSpec {
  return {
    name: STANDIN_MODEL,
    sha256: digest,
    bytes: 0,
    input: { name: 'input', dtype: 'float32', shape: [null, STANDIN_INPUT] },
    output: { name: 'labels', dtype: 'float32', shape: [null, 1000], meaning: 'probabilities' },
    preprocess: { kind: 'tensor' },
    labels: 'none',
    source: 'src/inference/standin.ts: deterministic, no model file (benchmarks and tests)',
    license: 'MIT',
  };
}

/** An input the stand-in accepts: a DBT1 float32 [1, 16] tensor derived from `seed`. */
export function standInInput(seed: number): Uint8Array {
  const data = new Float32Array(STANDIN_INPUT);
  for (let i = 0; i < STANDIN_INPUT; i++) data[i] = ((seed * 2654435761 + i * 40503) >>> 0) / 4294967296;
  return encodeTensorInput({ dtype: 'float32', dims: [1, STANDIN_INPUT], data: new Uint8Array(data.buffer) });
}

export function startStandIn(node: number, opts: { disagreement?: number } = {}): ModelBackend {
  const digest = standInDigest(node);
  const spec = standInSpec(digest);
  const disagreement = opts.disagreement ?? 0;
  let items = 0;
  return {
    digest,
    spec,
    async classify(input) {
      items++;
      return standInResult(node, input, { disagreement });
    },
    stats: () => ({ items, inFlight: 0 }),
    close: async () => {},
  };
}
