import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decide, PolicyError, topLabel, validatePolicy } from '../../src/agreement/index.ts';
import type { Policy, Result } from '../../src/protocol/index.ts';

/** A classification result whose top-1 label is `label` (null: a result with no classes at all). */
function cls(label: number | null, runnerUp = 999): Result {
  if (label === null) return { kind: 'class', top: [] };
  return {
    kind: 'class',
    top: [
      { label, score: 900_000 },
      { label: runnerUp, score: 100_000 },
    ],
  };
}
const vec = (...values: number[]): Result => ({ kind: 'vector', values });
const top1 = (minAgree: number): Policy => ({ kind: 'top1', minAgree });
const tol = (minAgree: number, epsilon: number): Policy => ({ kind: 'tolerance', minAgree, epsilon });

describe('top1', () => {
  it('a unique plurality with at least minAgree votes wins', () => {
    expect(decide(top1(3), [cls(7), cls(7), cls(7), cls(2)])).toEqual({ kind: 'label', label: 7 });
    expect(decide(top1(2), [cls(1), cls(5), cls(5), cls(3)])).toEqual({ kind: 'label', label: 5 });
    expect(decide(top1(4), [cls(0), cls(0), cls(0), cls(0)])).toEqual({ kind: 'label', label: 0 });
    // plurality, not majority
    expect(decide(top1(2), [cls(1), cls(1), cls(2), cls(3), cls(4)])).toEqual({ kind: 'label', label: 1 });
  });

  it('only the top-1 label counts, not the runners-up', () => {
    expect(decide(top1(2), [cls(1, 9), cls(9, 1), cls(9, 1)])).toEqual({ kind: 'label', label: 9 });
  });

  it('a tie for the most votes is noAgreement', () => {
    expect(decide(top1(2), [cls(1), cls(1), cls(2), cls(2)])).toEqual({ kind: 'noAgreement' });
    expect(decide(top1(1), [cls(1), cls(2), cls(3)])).toEqual({ kind: 'noAgreement' });
    // a tie below the maximum does not matter
    expect(decide(top1(3), [cls(1), cls(1), cls(1), cls(2), cls(3)])).toEqual({ kind: 'label', label: 1 });
    // the tie is detected whichever label is seen first
    expect(decide(top1(2), [cls(2), cls(1), cls(1), cls(2)])).toEqual({ kind: 'noAgreement' });
  });

  it('a plurality below minAgree is noAgreement', () => {
    expect(decide(top1(3), [cls(7), cls(7), cls(2), cls(3)])).toEqual({ kind: 'noAgreement' });
    expect(decide(top1(5), [cls(7), cls(7), cls(7), cls(7)])).toEqual({ kind: 'noAgreement' });
    expect(decide(top1(1), [])).toEqual({ kind: 'noAgreement' });
  });

  it('results without a label are ignored', () => {
    expect(topLabel(cls(null))).toBeNull();
    expect(topLabel(vec(1, 2))).toBeNull();
    expect(topLabel(cls(4))).toBe(4);
    expect(decide(top1(2), [cls(null), cls(4), vec(4), cls(4)])).toEqual({ kind: 'label', label: 4 });
    expect(decide(top1(3), [cls(null), cls(4), vec(4), cls(4)])).toEqual({ kind: 'noAgreement' });
    expect(decide(top1(1), [cls(null), vec(1), vec(1)])).toEqual({ kind: 'noAgreement' });
  });

  it('does not depend on the order of the votes', () => {
    fc.assert(
      fc.property(
        // Up to 16 votes are counted in scratch arrays, more in a Map: both sides of that line.
        fc.array(fc.option(fc.nat({ max: 4 }), { nil: null }), { maxLength: 24 }),
        fc.integer({ min: 1, max: 6 }),
        fc.nat(),
        (labels, t, shift) => {
          const rs = labels.map((l) => cls(l));
          const rotated = rs.map((_, i) => rs[(i + shift) % rs.length]);
          const d = decide(top1(t), rs);
          expect(decide(top1(t), [...rs].reverse())).toEqual(d);
          expect(decide(top1(t), rotated)).toEqual(d);
          // and agrees with a direct count
          const counts = new Map<number, number>();
          for (const l of labels) if (l !== null) counts.set(l, (counts.get(l) ?? 0) + 1);
          const max = Math.max(0, ...counts.values());
          const winners = [...counts].filter(([, c]) => c === max);
          if (winners.length === 1 && max >= t) expect(d).toEqual({ kind: 'label', label: winners[0][0] });
          else expect(d).toEqual({ kind: 'noAgreement' });
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe('tolerance', () => {
  it('vectors within epsilon in every component agree', () => {
    const d = decide(tol(3, 5), [vec(100, 200), vec(104, 195), vec(96, 203), vec(500, 0)]);
    expect(d).toEqual({ kind: 'vector', values: [100, 200] });
  });

  it('the boundary is inclusive', () => {
    expect(decide(tol(2, 5), [vec(0), vec(5)])).toEqual({ kind: 'vector', values: [0] });
    expect(decide(tol(2, 4), [vec(0), vec(5)])).toEqual({ kind: 'noAgreement' });
    expect(decide(tol(2, 0), [vec(-3, 7), vec(-3, 7)])).toEqual({ kind: 'vector', values: [-3, 7] });
  });

  it('one component out of range breaks agreement', () => {
    expect(decide(tol(2, 5), [vec(0, 0, 0), vec(1, 1, 6)])).toEqual({ kind: 'noAgreement' });
  });

  it('vectors of different lengths never agree', () => {
    expect(decide(tol(2, 100), [vec(1, 2), vec(1, 2, 3)])).toEqual({ kind: 'noAgreement' });
  });

  it('too few close vectors is noAgreement', () => {
    expect(decide(tol(3, 1), [vec(0), vec(1), vec(10), vec(20)])).toEqual({ kind: 'noAgreement' });
  });

  it('the first vector (in vote order) with the most neighbours wins a tie', () => {
    // within 1: 0 has {0, 1}, 1 has {0, 1, 2}, 2 has {1, 2}
    const d = decide(tol(2, 1), [vec(0), vec(1), vec(2)]);
    expect(d).toEqual({ kind: 'vector', values: [1] }); // 1 has three (0, 1, 2)
    const e = decide(tol(2, 1), [vec(10), vec(11), vec(0), vec(1)]);
    expect(e).toEqual({ kind: 'vector', values: [10] }); // 10 and 11 and 0 and 1 all have two: first wins
  });

  it('classification results are ignored', () => {
    expect(decide(tol(2, 1), [cls(1), vec(3), cls(1), vec(3)])).toEqual({ kind: 'vector', values: [3] });
    expect(decide(tol(1, 1), [cls(1), cls(1)])).toEqual({ kind: 'noAgreement' });
  });

  it('returns a copy of the winning vector', () => {
    const v = vec(1, 2);
    const d = decide(tol(1, 0), [v]);
    expect(d).toEqual({ kind: 'vector', values: [1, 2] });
    if (d.kind === 'vector') d.values[0] = 99;
    expect(v).toEqual(vec(1, 2));
  });
});

describe('validatePolicy', () => {
  it('accepts minAgree in [f+1, n]', () => {
    for (const [n, f] of [
      [4, 1],
      [7, 2],
      [10, 3],
      [1, 0],
    ]) {
      for (let t = f + 1; t <= n; t++) {
        expect(() => validatePolicy(top1(t), n, f)).not.toThrow();
        expect(() => validatePolicy(tol(t, 3), n, f)).not.toThrow();
      }
    }
  });

  it('refuses minAgree outside [f+1, n] with a PolicyError', () => {
    for (const [n, f] of [
      [4, 1],
      [7, 2],
    ]) {
      for (const t of [0, f, n + 1, n + 10, 1.5, Number.NaN, 2 ** 53]) {
        let err: unknown;
        try {
          validatePolicy(top1(t), n, f);
        } catch (e) {
          err = e;
        }
        expect(err, `minAgree ${t} with n=${n} f=${f}`).toBeInstanceOf(PolicyError);
        expect((err as PolicyError).code).toBe('POLICY_INVALID');
        expect(() => validatePolicy(tol(t, 0), n, f)).toThrow(PolicyError);
      }
    }
  });
});
