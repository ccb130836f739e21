/**
 * The dashboard's verifier (src/web/verifier.ts) in Node: what its verdicts on hostile lists say. The
 * page shows the detail in a <pre>; a list of garbage made it as long as the list times the reason.
 */
import { describe, expect, it } from 'vitest';
import { SignatureCache } from '../../src/certificate/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { checkText } from '../../src/web/verifier.ts';

const genesis = makeGroup(4, 1, 7, { kind: 'top1', minAgree: 3 }).genesis;

describe('checkText on a list', () => {
  it('names at most the first 1,000 invalid items, and counts the rest', () => {
    // 20 MB of "[1,1,…]" (10 million items) made 450 MB of detail, and crashed the page's renderer.
    const r = checkText(`[${Array(5000).fill('1').join(',')}]`, genesis, null, new SignatureCache());
    expect(r.title).toBe('INVALID: malformed');
    const lines = r.detail.split('\n');
    expect(lines[0]).toBe('5000 of the 5000 certificates are invalid (the list is not valid as a whole):');
    expect(lines[1]).toBe('#0: malformed: value: expected an object');
    expect(lines[1000]).toBe('#999: malformed: value: expected an object');
    expect(lines.at(-1)).toBe('… and 4,000 more invalid ones, not listed');
    expect(lines.length).toBe(1002);
  });
});
