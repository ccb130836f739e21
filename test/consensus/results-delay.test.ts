/**
 * `resultsDelayMs`: a replica's RESULTS go out at most once per that many ms; inference answers that come
 * back sooner wait and share the next RESULTS (one signature, one own-results write). One replica (node 1,
 * a backup) driven by hand.
 */
import { describe, expect, it } from 'vitest';
import { type Action, Replica } from '../../src/consensus/replica.ts';
import {
  encode,
  hex,
  ResultBatch,
  requestIdOf,
  type SignedRequest,
  TAGS,
  verifyTagged,
} from '../../src/protocol/index.ts';
import { broadcasts, cls, G, GID, mkReq, only, SMALL_CFG, T0 } from './fixtures.ts';

const ME = 1;
const MODEL = G.genesis.nodes[ME].modelDigest;

function replica(resultsDelayMs: number): Replica {
  return new Replica(G.genesis, ME, G.keys[ME], { ...SMALL_CFG, resultsDelayMs });
}

const take = (r: Replica, sr: SignedRequest, now: number) =>
  r.step({ type: 'message', from: 0, msg: { kind: 'forward', requests: [sr] } }, now);
const inferred = (r: Replica, srs: SignedRequest[], now: number, model = MODEL) =>
  r.step(
    {
      type: 'inferred',
      modelDigest: model,
      results: srs.map((sr) => ({ requestId: requestIdOf(sr), result: cls(3) })),
    },
    now,
  );
/** The request ids (hex) of each RESULTS the step broadcast, and each it saved first. */
const sent = (a: Action[]) =>
  broadcasts(a, 'results').map((m) => m.signed.batch.entries.map((e) => hex(e.requestId)));
const saved = (a: Action[]) => only(a, 'saveResults').map((s) => s.signed.batch.entries.length);
const ids = (...srs: SignedRequest[]) => srs.map((sr) => hex(requestIdOf(sr)));

describe('resultsDelayMs', () => {
  it('answers within the delay of the last RESULTS share the next one, sent when the delay is up', () => {
    const r = replica(5);
    const [a, b, c, d] = [1, 2, 3, 4].map((n) => mkReq(n));
    for (const sr of [a, b, c, d]) take(r, sr, T0);
    // The first answer goes at once: no RESULTS went out before it.
    expect(sent(inferred(r, [a], T0 + 1))).toEqual([ids(a)]);
    // The next two come back 1 and 2 ms later: they wait, and the replica asks to be woken at T0 + 6.
    const s1 = inferred(r, [b], T0 + 2);
    const s2 = inferred(r, [c], T0 + 3);
    expect([...sent(s1), ...sent(s2), ...saved(s1), ...saved(s2)]).toEqual([]);
    expect(r.nextWake).toBe(T0 + 6);
    expect(sent(r.step({ type: 'tick' }, T0 + 5.5))).toEqual([]);
    const due = r.step({ type: 'tick' }, T0 + 6);
    expect(sent(due)).toEqual([ids(b, c)]);
    expect(saved(due)).toEqual([2]);
    // On record before it leaves, and signed by this node over both answers.
    const at = (t: Action['type']) => due.findIndex((x) => x.type === t);
    expect(at('saveResults')).toBeLessThan(at('broadcast'));
    const signed = broadcasts(due, 'results')[0].signed;
    expect(
      verifyTagged(
        TAGS.results,
        GID,
        encode(ResultBatch, signed.batch),
        signed.signature,
        G.genesis.nodes[ME].publicKey,
      ),
    ).toBe(true);
    // An answer after a quiet spell longer than the delay goes at once again.
    expect(sent(inferred(r, [d], T0 + 20))).toEqual([ids(d)]);
  });

  it('0 (the in-process default): every inferred event signs a RESULTS of its own', () => {
    const r = replica(0);
    const [a, b, c] = [1, 2, 3].map((n) => mkReq(n));
    for (const sr of [a, b, c]) take(r, sr, T0);
    expect(sent(inferred(r, [a], T0 + 1))).toEqual([ids(a)]);
    expect(sent(inferred(r, [b], T0 + 2))).toEqual([ids(b)]);
    expect(sent(inferred(r, [c], T0 + 3))).toEqual([ids(c)]);
  });
});
