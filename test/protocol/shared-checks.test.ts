import { describe, expect, it } from 'vitest';
import {
  cryptoStats,
  keyPairFromSeed,
  sha256,
  signTagged,
  TAGS,
  verifyTagged,
  withSharedChecks,
} from '../../src/protocol/index.ts';
import { simulate } from '../../src/sim/world.ts';

const group = sha256(new TextEncoder().encode('shared checks'));
const body = new TextEncoder().encode('a signed body');
const key = keyPairFromSeed(new Uint8Array(32).fill(3));
const other = keyPairFromSeed(new Uint8Array(32).fill(4));
const sig = signTagged(TAGS.receipt, group, body, key);

/** How many Ed25519 checks `fn` makes. */
function checksMade(fn: () => void): number {
  const before = cryptoStats.verifies;
  fn();
  return cryptoStats.verifies - before;
}

describe('withSharedChecks', () => {
  it('checks a signature once however often it is asked inside, and every time outside', () => {
    const check = () => expect(verifyTagged(TAGS.receipt, group, body, sig, key.publicKey)).toBe(true);
    expect(checksMade(() => withSharedChecks(() => [1, 2, 3].forEach(check)))).toBe(1);
    // Nothing is remembered after it returns.
    expect(checksMade(() => [1, 2, 3].forEach(check))).toBe(3);
    // A nested call shares the outer memo.
    const nested = () => {
      check();
      withSharedChecks(check);
    };
    expect(checksMade(() => withSharedChecks(nested))).toBe(1);
  });

  it('still refuses what differs from a remembered check in any input', () => {
    withSharedChecks(() => {
      expect(verifyTagged(TAGS.receipt, group, body, sig, key.publicKey)).toBe(true);
      const flipped = sig.slice();
      flipped[5] ^= 1;
      expect(verifyTagged(TAGS.receipt, group, body, flipped, key.publicKey)).toBe(false);
      expect(verifyTagged(TAGS.receipt, group, body, sig, other.publicKey)).toBe(false);
      expect(verifyTagged(TAGS.receipt, group, new Uint8Array([...body, 1]), sig, key.publicKey)).toBe(false);
      expect(verifyTagged(TAGS.request, group, body, sig, key.publicKey)).toBe(false);
      expect(verifyTagged(TAGS.receipt, sha256(group), body, sig, key.publicKey)).toBe(false);
      // A refusal is not remembered as a success either: checked again, refused again.
      expect(checksMade(() => verifyTagged(TAGS.receipt, group, body, flipped, key.publicKey))).toBe(1);
      expect(verifyTagged(TAGS.receipt, group, body, flipped, key.publicKey)).toBe(false);
    });
  });

  it('leaves a simulated run as it was, with fewer checks, unless it is asked not to share', () => {
    const opts = { nodes: 4, requests: 40, seed: 7, rate: 5, clientBatch: 8 };
    let shared: ReturnType<typeof simulate> | undefined;
    let own: ReturnType<typeof simulate> | undefined;
    const sharedChecks = checksMade(() => {
      shared = simulate(opts);
    });
    const ownChecks = checksMade(() => {
      own = simulate({ ...opts, sharedChecks: false });
    });
    expect(shared?.done).toBe(true);
    expect(own?.done).toBe(true);
    expect(shared?.virtualMs).toBe(own?.virtualMs);
    expect(shared?.messages).toBe(own?.messages);
    expect([...(shared?.certificates.keys() ?? [])].sort()).toEqual(
      [...(own?.certificates.keys() ?? [])].sort(),
    );
    // Each node checks what its n - 1 peers sign: shared, about one check in n - 1 is left.
    expect(sharedChecks).toBeLessThan(ownChecks / 2);
  });
});
