import { afterEach, describe, expect, it, vi } from 'vitest';
import { NodeClock } from '../../src/node/host.ts';

describe('NodeClock (the replica clock of a node)', () => {
  afterEach(() => vi.restoreAllMocks());

  it('keeps running through a backward step of the wall clock, and follows it forward', () => {
    let wall = 1_000_000;
    let mono = 50;
    vi.spyOn(Date, 'now').mockImplementation(() => wall);
    vi.spyOn(performance, 'now').mockImplementation(() => mono);
    const c = new NodeClock();
    expect(c.now()).toBe(1_000_000);
    wall += 100;
    mono += 100;
    expect(c.now()).toBe(1_000_100);
    // The system clock is stepped back 20 s: the node's clock does not stop, it goes on at the same pace.
    wall -= 20_000;
    expect(c.now()).toBe(1_000_100);
    wall += 250;
    mono += 250;
    expect(c.now()).toBe(1_000_350);
    // A step forward is followed at once.
    wall += 60_000;
    mono += 10;
    expect(c.now()).toBe(wall);
    mono += 5;
    expect(c.now()).toBe(wall + 5);
  });
});
