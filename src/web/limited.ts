/**
 * Reading a node's answer in the browser with a bound on its size. The dashboard does not trust the node
 * that serves it: a faulty node can answer /v1/group, /v1/status or a certificate with gigabytes, which
 * `Response.text()` would hold in memory whole before the page could look at it. The bounds are the
 * largest honest answers (the callers name them); past one the read stops and the rest is not downloaded.
 */

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
  const length = r.headers.get('content-length');
  // Of a compressed answer this is the compressed size: a lower bound, so only a refusal is certain.
  const declared = length === null ? Number.NaN : Number(length);
  if (declared > max) {
    await r.body?.cancel().catch(() => {});
    throw new AnswerTooLarge(what, declared, max, true);
  }
  if (r.body === null) return '';
  const reader = r.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > max) {
      await reader.cancel().catch(() => {});
      throw new AnswerTooLarge(what, total, max, false);
    }
    parts.push(value);
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return new TextDecoder().decode(all);
}
