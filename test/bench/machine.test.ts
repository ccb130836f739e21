import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { atEnd, describeMachine, machine, verifyMicros, wakeMicros } from '../../bench/lib/machine.ts';
import { cryptoStats } from '../../src/protocol/crypto.ts';

describe('machine', () => {
  it('names the commit the figures were measured on, and says when the working tree differed from it', () => {
    const m = machine();
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
    expect(m.code?.commit).toBe(head);
    const dirty =
      execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }) !== '';
    expect(m.code?.modified).toBe(dirty);
    const line = describeMachine(m);
    expect(line).toContain(`code at ${head.slice(0, 7)}`);
    expect(line.includes('uncommitted changes')).toBe(dirty);
    expect(describeMachine({ ...m, code: null })).not.toContain('code at');
    expect(m.cores).toBeGreaterThan(0);
  });
});

describe('speed reference', () => {
  it('times real signature checks, states them in the machine line, and leaves the signature counters alone', () => {
    const before = { ...cryptoStats };
    const us = verifyMicros(2, 50);
    expect(cryptoStats).toEqual(before);
    // An Ed25519 check takes tens of µs on any machine this runs on, never nothing and never a second.
    expect(us).toBeGreaterThan(1);
    expect(us).toBeLessThan(100_000);
    const m = { ...machine(), verifyUs: 12.5, wakeUs: undefined, cryptoBackend: 'libsodium' };
    expect(describeMachine(m)).toContain('Ed25519 check 12.5 µs (libsodium');
  });

  it('times the check right after a sleep and states it beside the back-to-back figure', () => {
    const before = { ...cryptoStats };
    const us = wakeMicros(5, 2);
    expect(cryptoStats).toEqual(before);
    expect(us).toBeGreaterThan(1);
    expect(us).toBeLessThan(100_000);
    const m = { ...machine(), verifyUs: 12.5, wakeUs: 30.1, cryptoBackend: 'libsodium' };
    expect(describeMachine(m)).toContain(
      'Ed25519 check 12.5 µs, 30.1 µs right after a 20 ms sleep (libsodium',
    );
    // Results files written before it was measured have none: the line then says nothing about it.
    expect(describeMachine({ ...m, wakeUs: undefined })).toContain('Ed25519 check 12.5 µs (libsodium');
    expect(machine().wakeUs).toBeGreaterThan(1);
  });

  it('states the speed at the end of a part beside the one at its start, measured once for both uses', () => {
    const m = { ...machine(), verifyUs: 12.5, wakeUs: 30.1, cryptoBackend: 'libsodium' };
    const end = atEnd(m);
    expect(end.verifyUs).toBe(12.5);
    expect(end.verifyUsEnd).toBeGreaterThan(1);
    expect(end.verifyUsEnd).toBeLessThan(100_000);
    expect(describeMachine(end)).toContain(
      `Ed25519 check 12.5 µs at the start, ${end.verifyUsEnd} at the end, 30.1 µs right after a 20 ms sleep (libsodium`,
    );
    // The results file, written right after the text, states the same figure.
    expect(atEnd(m).verifyUsEnd).toBe(end.verifyUsEnd);
  });
});
