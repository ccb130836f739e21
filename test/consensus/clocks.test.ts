/**
 * The replica's two clocks (Replica.step): timers run on `now`, which never goes back; timestamps are
 * judged by `wall`, which follows the system clock both ways (src/node/host.ts NodeClock).
 */
import { describe, expect, it } from 'vitest';
import { type Action, type Event, Replica } from '../../src/consensus/replica.ts';
import { requestIdOf } from '../../src/protocol/index.ts';
import { broadcasts, G, mkReq, only, resultsOf, SMALL_CFG, T0, wire } from './fixtures.ts';

const SKEW = G.genesis.params.maxClockSkewMs;

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
      step(
        {
          type: 'inferred',
          modelDigest: G.genesis.nodes[0].modelDigest,
          results: [{ requestId: id, result: { kind: 'class', top: [{ label: 7, score: 900_000 }] } }],
        },
        now,
        wall,
      );
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
});
