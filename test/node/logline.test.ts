/**
 * Log lines carry no C1 control character (src/node/logline.ts): a peer's or client's text with U+009B
 * (CSI) and friends reaches the line as a JSON escape, parses back to the same text, and lines without
 * one pass unchanged.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { c1SafeSink, escapeC1 } from '../../src/node/logline.ts';

describe('escapeC1', () => {
  it('escapes every C1 control and nothing else', () => {
    const all = Array.from({ length: 32 }, (_, i) => String.fromCharCode(0x80 + i)).join('');
    const text = `a${all}é€\u00a0z`;
    const line = escapeC1(JSON.stringify({ reason: text }));
    expect(/[\u0080-\u009f]/u.test(line)).toBe(false);
    expect(line).toContain('\\u009b');
    expect(line).toContain('é€\u00a0z');
    expect((JSON.parse(line) as { reason: string }).reason).toBe(text);
  });

  it('returns a line without one as it is', () => {
    const line = '{"msg":"plain ünïcode ✓"}\n';
    expect(escapeC1(line)).toBe(line);
  });
});

describe('a pino logger writing through c1SafeSink', () => {
  it('writes lines without C1 controls that parse to the logged strings', () => {
    const out: string[] = [];
    const log = pino({ base: null }, c1SafeSink({ write: (s: string) => out.push(s) }));
    const hostile = 'peer said \u009b2J\u009d0;pwned\u0007 bye';
    log.warn({ reason: hostile }, `bad frame: ${hostile}`);
    expect(out).toHaveLength(1);
    expect(/[\u0080-\u009f]/u.test(out[0])).toBe(false);
    const parsed = JSON.parse(out[0]) as { reason: string; msg: string };
    expect(parsed.reason).toBe(hostile);
    expect(parsed.msg).toBe(`bad frame: ${hostile}`);
  });
});
