/**
 * Reading a node's answer in the browser with a bound on its size. The dashboard does not trust the node
 * that serves it: a faulty node can answer /v1/group, /v1/status or a certificate with gigabytes, which
 * `Response.text()` would hold in memory whole before the page could look at it. The bounds are the
 * largest honest answers (the callers name them); past one the read stops and the rest is not downloaded.
 */

import { readCapped } from '../protocol/capped-body.ts';

/** Thrown for an answer over its bound; the message starts with its stable code, as the page shows it. */
export class AnswerTooLarge extends Error {
  readonly code = 'ANSWER_TOO_LARGE';
  constructor(what: string, bytes: number, max: number, declared: boolean) {
    super(
      `ANSWER_TOO_LARGE: ${what} ${declared ? 'says it is' : 'ran past'} ${bytes.toLocaleString('en')} bytes, ` +
        `more than the ${max.toLocaleString('en')} any honest node sends: not read`,
    );
    this.name = 'AnswerTooLarge';
  }
}

/**
 * The answer's body as text (UTF-8), read only while it stays within `max` bytes: a Content-Length over
 * it is refused before any of the body is read, and a body that runs past it (no length, or a false one,
 * or compressed) is cancelled there. `what` names the answer in the error.
 */
export async function readLimited(r: Response, max: number, what: string): Promise<string> {
  const bytes = await readCapped(r, max, (n, declared) => new AnswerTooLarge(what, n, max, declared));
  return new TextDecoder().decode(bytes);
}
