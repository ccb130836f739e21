/**
 * Agreement policies: given the counted votes for one request, what did the group decide?
 * Pure and deterministic; the certificate verifier runs the same code to recompute a decision.
 */
import { DropbearError } from './errors.ts';
import type { Decision, Policy, Result } from './messages.ts';

export class PolicyError extends DropbearError {
  constructor(message: string) {
    super('POLICY_INVALID', message);
  }
}

/** minAgree must lie in [f+1, n]; epsilon must be a safe integer (checked by the codec). */
export function validatePolicy(policy: Policy, n: number, f: number): void {
  const t = policy.minAgree;
  if (!Number.isSafeInteger(t) || t < f + 1 || t > n)
    throw new PolicyError(`minAgree ${t} outside [f+1, n] = [${f + 1}, ${n}]`);
}

/** The top-1 label of a classification result, or null when the result has none. */
export function topLabel(r: Result): number | null {
  return r.kind === 'class' && r.top.length > 0 ? r.top[0].label : null;
}

function vectorsClose(a: number[], b: number[], eps: number): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (Math.abs(a[i] - b[i]) > eps) return false;
  return true;
}

const NO: Decision = { kind: 'noAgreement' };

/** Up to this many votes, top1 counts labels in scratch arrays (decideTop1Small) instead of a new Map. */
const SMALL_VOTES = 16;
const smallLabels = new Array<number>(SMALL_VOTES).fill(0);
const smallCounts = new Array<number>(SMALL_VOTES).fill(0);

/**
 * decide's top1 for at most SMALL_VOTES votes: the same decision (a unique label with the most votes, at
 * least minAgree of them, else noAgreement) with the distinct labels and their counts in two scratch arrays
 * in order of first appearance, as the Map iterates them (the outcome does not depend on the order anyway:
 * a tie is two labels with the highest count, wherever they are).
 */
function decideTop1Small(minAgree: number, results: readonly Result[]): Decision {
  let k = 0;
  for (let i = 0; i < results.length; i++) {
    const l = topLabel(results[i]);
    if (l === null) continue;
    let j = 0;
    // SameValueZero, as Map keys compare (NaN is one label there too).
    while (j < k && smallLabels[j] !== l && !(Number.isNaN(l) && Number.isNaN(smallLabels[j]))) j++;
    if (j === k) {
      smallLabels[k] = l;
      smallCounts[k] = 1;
      k++;
    } else smallCounts[j]++;
  }
  let best = -1;
  let bestCount = 0;
  let tie = false;
  for (let j = 0; j < k; j++) {
    const c = smallCounts[j];
    if (c > bestCount) {
      best = smallLabels[j];
      bestCount = c;
      tie = false;
    } else if (c === bestCount) tie = true;
  }
  if (best < 0 || tie || bestCount < minAgree) return NO;
  return { kind: 'label', label: best };
}

/**
 * top1: plurality over the counted votes' top-1 labels; a unique maximum with at least minAgree
 * votes wins, anything else (a tie, too few) is noAgreement.
 * tolerance: each vector gathers the votes within epsilon of it (in every component); the vector with
 * the most, first in vote order on a tie, wins if it has at least minAgree.
 * `results` must be in a fixed order (by node id) for the result to be deterministic.
 */
export function decide(policy: Policy, results: readonly Result[]): Decision {
  if (policy.kind === 'top1') {
    if (results.length <= SMALL_VOTES) return decideTop1Small(policy.minAgree, results);
    const counts = new Map<number, number>();
    for (const r of results) {
      const l = topLabel(r);
      if (l !== null) counts.set(l, (counts.get(l) ?? 0) + 1);
    }
    let best = -1;
    let bestCount = 0;
    let tie = false;
    for (const [label, c] of counts) {
      if (c > bestCount) {
        best = label;
        bestCount = c;
        tie = false;
      } else if (c === bestCount) tie = true;
    }
    if (best < 0 || tie || bestCount < policy.minAgree) return NO;
    return { kind: 'label', label: best };
  }
  const vectors = results.filter((r) => r.kind === 'vector').map((r) => (r as { values: number[] }).values);
  let bestIdx = -1;
  let bestCount = 0;
  for (let i = 0; i < vectors.length; i++) {
    let c = 0;
    for (const w of vectors) if (vectorsClose(vectors[i], w, policy.epsilon)) c++;
    if (c > bestCount) {
      bestCount = c;
      bestIdx = i;
    }
  }
  if (bestIdx < 0 || bestCount < policy.minAgree) return NO;
  return { kind: 'vector', values: [...vectors[bestIdx]] };
}
