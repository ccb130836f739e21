/**
 * The replica's two clocks (Replica.step): timers run on `now`, which never goes back; timestamps are
 * judged by `wall`, which follows the system clock both ways (src/node/host.ts NodeClock).
 */
import { describe, expect, it } from 'vitest';
import { type Action, type Event, Replica } from '../../src/consensus/replica.ts';
import { requestIdOf } from '../../src/protocol/index.ts';
import {
  broadcasts,
  G,
  GID,
  genesisCounters,
  mkReq,
  only,
  restoreNode,
  resultsOf,
  SMALL_CFG,
  T0,
  wire,
} from './fixtures.ts';

const SKEW = G.genesis.params.maxClockSkewMs;

/** Node `node`'s model (node 1's unless told) answering `label` for request `id` (an `inferred` event). */
const answer = (id: Uint8Array, label: number, node = 1): Event => ({
  type: 'inferred',
  modelDigest: G.genesis.nodes[node].modelDigest,
  results: [{ requestId: id, result: { kind: 'class', top: [{ label, score: 900_000 }] } }],
});

/** The labels of the RESULTS a step broadcast. */
const signedLabels = (a: Action[]): number[] =>
  broadcasts(a, 'results').flatMap((m) =>
    m.signed.batch.entries.map((e) => (e.result.kind === 'class' ? e.result.top[0].label : -1)),
  );

function driver(id: number, cfg = SMALL_CFG) {
  const r = new Replica(G.genesis, id, G.keys[id], { ...SMALL_CFG, ...cfg });
  return {
    r,
    step: (ev: Event, now: number, wall: number): Action[] => r.step(ev, now, wall),
  };
}

describe('the replica clocks', () => {
  it('a step of the wall clock fires no timer: the view-change timer runs its course on the timer clock', () => {
    const { r, step } = driver(1, { ...SMALL_CFG, viewChangeTimeoutMs: 1000, retransmitMs: 100 });
    const accepted = step({ type: 'request', request: mkReq(1) }, T0, T0);
    expect(only(accepted, 'accepted')).toHaveLength(1);
    // When the request timer fires, the backup first asks its peers' state (the check before a view
    // change, in case it is only behind): the timer's first visible act.
    const fires = (a: Action[]) => broadcasts(a, 'stateRequest').length > 0;
    // The wall clock jumps 5 minutes ahead (the request is still inside its 10-minute expiry window).
    const jump = 300_000;
    expect(fires(step({ type: 'tick' }, T0 + 10, T0 + 10 + jump))).toBe(false);
    let firedAt = -1;
    for (let i = 0; i < 50 && firedAt < 0; i++) {
      const at = r.nextWake;
      expect(at).toBeLessThan(T0 + 10_000);
      if (fires(step({ type: 'tick' }, at, at + jump))) firedAt = at;
    }
    expect(firedAt).toBe(T0 + 1000);
  });

  it('the primary stamps its batches with the wall clock, also after it went back, and never below the last batch', () => {
    const { r, step } = driver(0);
    expect(r.isPrimary).toBe(true);
    const propose = (nonce: number, now: number, wall: number) => {
      const sr = mkReq(nonce, wall);
      const id = requestIdOf(sr);
      step({ type: 'message', from: 1, msg: wire({ kind: 'forward', requests: [sr] }) }, now, wall);
      step(answer(id, 7, 0), now, wall);
      for (const v of [1, 2, 3])
        step(
          { type: 'message', from: v, msg: wire({ kind: 'results', signed: resultsOf(v, [id]) }) },
          now,
          wall,
        );
      const pps = broadcasts(step({ type: 'tick' }, now + 100, wall + 100), 'prePrepare');
      expect(pps).toHaveLength(1);
      return pps[0].pp.batch.timestamp;
    };
    expect(propose(1, T0, T0)).toBe(T0 + 100);
    // The wall clock goes back 3 s (within the skew bound, so the peers' clocks may read that): the next
    // batch is stamped the corrected time, not the timer clock's, but still after the last batch.
    const back = T0 + 500 - 3000;
    expect(3000).toBeLessThan(SKEW);
    expect(propose(2, T0 + 500, back)).toBe(T0 + 101);
    expect(propose(3, T0 + 5000, T0 + 5000 - 3000)).toBe(T0 + 2100);
  });

  it('judges request timestamps by the wall clock: a clock corrected back takes requests of the corrected time', () => {
    const { step } = driver(1);
    const hour = 3_600_000;
    step({ type: 'tick' }, T0, T0 + hour);
    const late = step({ type: 'request', request: mkReq(1, T0 + 10) }, T0 + 10, T0 + 10 + hour);
    expect(only(late, 'rejected').map((x) => x.code)).toEqual(['REQUEST_EXPIRED']);
    const ok = step({ type: 'request', request: mkReq(2, T0 + 20) }, T0 + 20, T0 + 20);
    expect(only(ok, 'accepted')).toHaveLength(1);
    const ahead = step({ type: 'request', request: mkReq(3, T0 + 30 + hour) }, T0 + 30, T0 + 30);
    expect(only(ahead, 'rejected').map((x) => x.code)).toEqual(['REQUEST_FROM_FUTURE']);
  });

  it('never signs a second, different answer for a request it forgot as expired while its clock was ahead', () => {
    // A step forward past the expiry window makes the sweep forget a waiting request with this node's
    // vote; once the clock is put right the request is valid again, and a peer may send it back (a FORWARD,
    // a proposal it fetches). Inference need not give the same bytes twice: a different second answer
    // is double-vote evidence against this honest node at every peer still holding the first.
    const { r, step } = driver(1, { ...SMALL_CFG, viewChangeTimeoutMs: 1000 });
    const sr = mkReq(1);
    const id = requestIdOf(sr);
    expect(only(step({ type: 'request', request: sr }, T0, T0), 'infer')).toHaveLength(1);
    expect(signedLabels(step(answer(id, 7), T0 + 1, T0 + 1))).toEqual([7]);
    // An hour ahead for a while: the request has expired by this clock, long enough to be forgotten.
    const hour = 3_600_000;
    for (let t = 10; t <= 1000; t += 10) step({ type: 'tick' }, T0 + t, T0 + t + hour);
    expect(r.forgottenExpired).toBe(1);
    // Put right; a peer forwards the request again.
    const again = step(
      { type: 'message', from: 2, msg: wire({ kind: 'forward', requests: [sr] }) },
      T0 + 1100,
      T0 + 1100,
    );
    const inferAgain = only(again, 'infer').flatMap((a) => a.requests);
    // Inferred again or not, whatever it signs for the request is the answer it signed before.
    if (inferAgain.length > 0) {
      const signed = signedLabels(step(answer(id, 8), T0 + 1200, T0 + 1200));
      for (const label of signed) expect(label).toBe(7);
    }
    expect(r.evidence).toEqual([]);
  });

  it('nor for a request whose vote, read back at a restart, it dropped as expired while its clock was ahead', () => {
    const sr = mkReq(1);
    const id = requestIdOf(sr);
    const cfg = { ...SMALL_CFG, viewChangeTimeoutMs: 1000 };
    // Before the restart it answered 7 (resultsOf: label 7) to a request that has not come back yet.
    const r = restoreNode(1, cfg, [], { ownResults: [{ signed: resultsOf(1, [id]), newest: T0 }] });
    const hour = 3_600_000;
    // Its clock an hour ahead: the vote is dropped (dropResults), the request having expired by it.
    let dropped = 0;
    for (let t = 10; t <= 1000; t += 10)
      dropped += only(r.step({ type: 'tick' }, T0 + t, T0 + t + hour), 'dropResults').length;
    expect(dropped).toBe(1);
    // Put right, the request comes back from a peer: it is valid again.
    const again = r.step(
      { type: 'message', from: 2, msg: wire({ kind: 'forward', requests: [sr] }) },
      T0 + 1100,
      T0 + 1100,
    );
    if (only(again, 'infer').length > 0) {
      const signed = signedLabels(r.step(answer(id, 8), T0 + 1200, T0 + 1200));
      for (const label of signed) expect(label).toBe(7);
    }
  });

  it('nor for one whose votes it forgot when a peer sent it while its clock was ahead', () => {
    const sr = mkReq(1);
    const id = requestIdOf(sr);
    const r = Replica.restore(
      G.genesis,
      1,
      G.keys[1],
      { ...SMALL_CFG, viewChangeTimeoutMs: 1000 },
      {
        lastExecuted: 0,
        lastReceiptHash: GID,
        lastTimestamp: 0,
        models: G.genesis.nodes.map((n) => n.modelDigest),
        ...genesisCounters(),
        recent: [],
        log: [],
        ownResults: [{ signed: resultsOf(1, [id]), newest: T0 }],
      },
    );
    const hour = 3_600_000;
    // A peer's vote for the request, which has not arrived here: asked for (an orphan).
    r.step({ type: 'message', from: 2, msg: wire({ kind: 'results', signed: resultsOf(2, [id]) }) }, T0, T0);
    // It arrives while this clock reads an hour ahead: expired, so its votes are forgotten.
    const late = r.step(
      { type: 'message', from: 2, msg: wire({ kind: 'forward', requests: [sr] }) },
      T0 + 10,
      T0 + 10 + hour,
    );
    expect(only(late, 'infer')).toEqual([]);
    // Put right, it comes again: valid now.
    const again = r.step(
      { type: 'message', from: 3, msg: wire({ kind: 'forward', requests: [sr] }) },
      T0 + 20,
      T0 + 20,
    );
    expect(only(again, 'infer').flatMap((a) => a.requests)).toHaveLength(1);
    const signed = signedLabels(r.step(answer(id, 8), T0 + 30, T0 + 30));
    // (Signed the same as before, the RESULTS may be the very one it sent then: nothing new to send.)
    expect(signed.filter((l) => l !== 7)).toEqual([]);
  });
});
