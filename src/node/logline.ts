/**
 * A node's log lines are JSON, one a line, read in terminals (`dropbear group` prints them) as much as by
 * log shippers. pino escapes the C0 controls (U+0000–U+001F) as JSON must, but JSON allows the C1 controls
 * (U+0080–U+009F) raw, and many terminals act on them as on ESC sequences (U+009B is CSI): a peer's or a
 * client's text that reaches a log line (a reason, an error message) could move the cursor, rewrite what
 * the operator sees or retitle the window. Here they leave as `\u00XX` escapes: the line still parses to
 * the same strings, and no byte of it is a control character.
 */

/** Any C1 control character (the `u` flag: code points, not UTF-8 bytes). */
const C1 = /[\u0080-\u009f]/u;
const C1_ALL = /[\u0080-\u009f]/gu;

/** `line` with every C1 control written as a JSON `\u00XX` escape (the same string once parsed). */
export function escapeC1(line: string): string {
  if (!C1.test(line)) return line;
  return line.replace(C1_ALL, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
}

/** What pino writes to: a stream with `write(string)`, and `flushSync` where the stream has one. */
export interface LogSink {
  write(s: string): unknown;
  flushSync?(): void;
}

/** `sink` behind escapeC1: pino writes each line through it, so the escape applies to every line. */
export function c1SafeSink<T extends LogSink>(sink: T): LogSink {
  return {
    write: (s: string) => sink.write(escapeC1(s)),
    ...(sink.flushSync ? { flushSync: () => sink.flushSync?.() } : {}),
  };
}
