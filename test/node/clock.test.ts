import { afterEach, describe, expect, it, vi } from 'vitest';
import { NodeClock } from '../../src/node/host.ts';
import { groupIdOf } from '../../src/protocol/index.ts';
import { openLoneHost } from './lone-host.ts';
import { standInRequest } from './standin-request.ts';

const HOUR = 3_600_000;

describe('NodeClock (the replica clocks of a node)', () => {
  afterEach(() => vi.restoreAllMocks());

  it('runs its timer clock on the monotonic clock through steps of the wall clock either way; the wall clock follows them', () => {
    let wall = 1_000_000;
    let mono = 50;
    vi.spyOn(Date, 'now').mockImplementation(() => wall);
    vi.spyOn(performance, 'now').mockImplementation(() => mono);
    const c = new NodeClock();
    expect([c.timer(), c.wall()]).toEqual([1_000_000, 1_000_000]);
    wall += 100;
    mono += 100;
    expect([c.timer(), c.wall()]).toEqual([1_000_100, 1_000_100]);
    // The system clock is stepped back 20 s: the timers go on at the same pace, timestamps follow it.
    wall -= 20_000;
    expect([c.timer(), c.wall()]).toEqual([1_000_100, 980_100]);
    wall += 250;
    mono += 250;
    expect([c.timer(), c.wall()]).toEqual([1_000_350, 980_350]);
    // A step forward: no timer jumps with it (every one due in the step would fire at once).
    wall += HOUR;
    mono += 10;
    expect([c.timer(), c.wall()]).toEqual([1_000_360, 980_350 + HOUR]);
  });
});

describe('a node whose system clock is stepped forward and then corrected', () => {
  afterEach(() => vi.restoreAllMocks());

  // Until 2026-12-06 the replica's one clock followed the wall clock forward and never back: after the
  // correction this node stayed an hour ahead until restarted, and refused every client's request as
  // REQUEST_EXPIRED (the group's expiry window is 10 minutes).
  it('takes requests timestamped by the corrected clock again at once', () => {
    let offset = 0;
    const realNow = Date.now.bind(Date);
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + offset);
    const lone = openLoneHost('dropbear-clock-', 41);
    try {
      const gid = groupIdOf(lone.group.genesis);
      expect(lone.host.submit(standInRequest(lone.group, gid, 1))).toMatchObject({ ok: true });
      offset = HOUR;
      // A client on the same machine, whose clock is wrong as well.
      expect(lone.host.submit(standInRequest(lone.group, gid, 2))).toMatchObject({ ok: true });
      offset = 0;
      const after = lone.host.submit(standInRequest(lone.group, gid, 3));
      expect(after).toMatchObject({ ok: true });
      // And a request from the wrong hour is now from the future, as on every peer.
      offset = HOUR;
      const wrong = standInRequest(lone.group, gid, 4);
      offset = 0;
      expect(lone.host.submit(wrong)).toMatchObject({ ok: false, code: 'REQUEST_FROM_FUTURE' });
    } finally {
      lone.close();
    }
  });
});
