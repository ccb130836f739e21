/**
 * The deterministic stand-in model: a classifier over 1,000 labels whose answer depends only on the
 * input bytes and the node, so that nodes disagree on a configurable fraction of inputs, the same way
 * every run. Used by protocol tests and benchmarks where inference cost would only add noise.
 */
import { type Result, sha256Parts } from '../protocol/index.ts';

export const STANDIN_LABELS = 1000;

export interface StandInOptions {
  /** Probability that this node's top-1 differs from the input's "true" label. */
  disagreement: number;
  /** Byzantine: always answer a label no honest node gives. */
  wrong?: boolean;
}

const enc = new TextEncoder();
// The hashes' prefixes, encoded once: the stand-in answers every request of the protocol benchmarks, where
// encoding them again per request cost as much as one of its two hashes.
const TRUTH = enc.encode('truth');
const nodePrefixes: Uint8Array[] = [];
function nodePrefix(node: number): Uint8Array {
  let p = nodePrefixes[node];
  if (p === undefined) {
    p = enc.encode(`node:${node}`);
    if (Number.isInteger(node) && node >= 0 && node < 1024) nodePrefixes[node] = p;
  }
  return p;
}

/** The input's true label (what every agreeing node answers). */
export function trueLabel(input: Uint8Array): number {
  const h = sha256Parts(TRUTH, input);
  return ((h[0] << 8) | h[1]) % STANDIN_LABELS;
}

export function standInResult(node: number, input: Uint8Array, opts: StandInOptions): Result {
  const truth = trueLabel(input);
  const h = sha256Parts(nodePrefix(node), input);
  const roll = ((h[0] << 16) | (h[1] << 8) | h[2]) / 16777216;
  let label = truth;
  // Honest disagreement lands on one of a few nearby labels; wrong answers sit 500 away, so a lying node
  // never happens to agree with an honest one.
  if (opts.wrong) label = (truth + 500) % STANDIN_LABELS;
  else if (roll < opts.disagreement) label = (truth + 1 + (h[3] % 3)) % STANDIN_LABELS;
  const top = [{ label, score: 600_000 + (h[4] % 200_000) }];
  for (let k = 1; k < 5; k++) {
    const l = (label + 1 + k * 7 + (h[4 + k] % 5)) % STANDIN_LABELS;
    top.push({ label: l, score: Math.floor((1_000_000 - top[0].score) / (k + 1)) });
  }
  return { kind: 'class', top };
}
