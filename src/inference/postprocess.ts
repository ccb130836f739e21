/**
 * Model output to the protocol's Result: top-5 classes with scores in millionths. The agreement key is the
 * top-1 index; ties (quantized logits tie on 1–3 % of images) go to the lowest index.
 */
import { readFileSync } from 'node:fs';
import type { Result } from '../protocol/index.ts';
import type { ModelSpec } from './spec.ts';

export const TOP_K = 5;

/** Indices of the k largest values, larger first, ties to the lower index. */
export function topK(scores: ArrayLike<number>, k = TOP_K): number[] {
  const best: number[] = [];
  for (let i = 0; i < scores.length; i++) {
    const v = scores[i];
    if (Number.isNaN(v)) continue;
    if (best.length === k && v <= scores[best[k - 1]]) continue;
    let j = best.length < k ? best.length : k - 1;
    // Strictly greater moves up: an equal value stays below the lower index already there.
    while (j > 0 && v > scores[best[j - 1]]) j--;
    best.splice(j, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}

/**
 * Softmax probabilities of `idx` among all `logits`, computed stably. Defined for every input (a crafted
 * input can drive a model's logits to ±Infinity or NaN, and Infinity − Infinity is NaN): NaN logits count
 * as −Infinity; with +Infinity among them, those share the whole mass; with none finite, every probability
 * is 0.
 */
export function softmaxOf(logits: ArrayLike<number>, idx: number[]): number[] {
  let max = Number.NEGATIVE_INFINITY;
  let infinite = 0;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i];
    if (x === Number.POSITIVE_INFINITY) infinite++;
    else if (x > max) max = x;
  }
  if (infinite > 0) return idx.map((i) => (logits[i] === Number.POSITIVE_INFINITY ? 1 / infinite : 0));
  if (max === Number.NEGATIVE_INFINITY) return idx.map(() => 0);
  let sum = 0;
  for (let i = 0; i < logits.length; i++)
    if (logits[i] > Number.NEGATIVE_INFINITY) sum += Math.exp(logits[i] - max);
  return idx.map((i) => (logits[i] > Number.NEGATIVE_INFINITY ? Math.exp(logits[i] - max) / sum : 0));
}

/** One item's scores (logits or probabilities, per the spec) to a class Result. */
export function toResult(scores: ArrayLike<number>, meaning: ModelSpec['output']['meaning']): Result {
  const idx = topK(scores);
  const probs = meaning === 'logits' ? softmaxOf(scores, idx) : idx.map((i) => scores[i]);
  return {
    kind: 'class',
    top: idx.map((label, r) => ({
      label,
      // NaN (never from softmaxOf; a "probabilities" output may hold anything) scores 0: a Result must
      // encode, or signing it throws.
      score: Number.isNaN(probs[r]) ? 0 : Math.max(0, Math.min(1_000_000, Math.round(probs[r] * 1e6))),
    })),
  };
}

let imagenet: string[] | null = null;

/** ImageNet class names in index order (the first name of each synset line), from the shared synset list. */
export function imagenetLabels(path = defaultSynsetPath()): string[] {
  if (imagenet) return imagenet;
  const lines = readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  imagenet = lines.map((l) => {
    const rest = l.slice(l.indexOf(' ') + 1);
    return rest.split(',')[0].trim();
  });
  return imagenet;
}

function defaultSynsetPath(): string {
  return new URL('./imagenet_synsets.txt', import.meta.url).pathname;
}

export function labelName(labels: ModelSpec['labels'], index: number): string {
  if (labels === 'imagenet1k') return imagenetLabels()[index] ?? `class ${index}`;
  if (labels === 'mnist10') return String(index);
  return `class ${index}`;
}
