/**
 * The CLI's requests to a node's HTTP API (`status`, `model-update`): every one with a time limit, and every
 * answer that is not what a Dropbear node sends a typed error naming the URL and what came back, instead of
 * a parser's message ("Unexpected token 'h'") or a command that waits forever on a node that never answers.
 *
 * - NODE_UNREACHABLE: no answer came: refused, no route or an unknown host ("is the node running?"), or the
 *   connection taken and then closed or reset unanswered (a node serving HTTPS over its connection limit, a
 *   port of another protocol; said so), or bytes that are not HTTP; the message gives the cause's code (and,
 *   for an https URL at a port that speaks plain HTTP, says so).
 * - NODE_UNTRUSTED: an https URL whose certificate this process does not trust (a private CA, a host the
 *   certificate does not name, an expired one); the message says how to trust a private CA:
 *   NODE_EXTRA_CA_CERTS, which Node reads when the process starts (docs/api.md, "HTTPS for the API").
 * - NODE_TIMEOUT: no answer within the limit.
 * - BAD_RESPONSE: an answer that is not JSON, or JSON of another shape (`expectObject` below), or a redirect
 *   (a Dropbear node never sends one; it is not followed: followed, a node sent `status` to another host,
 *   whose answer was taken as the node's).
 * - RESPONSE_TOO_LARGE: an answer past MAX_ANSWER_BYTES (not read further).
 */
import { readCapped } from '../protocol/capped-body.ts';
import { codeOr, DropbearError, printableLine, UNTRUSTED_CERTIFICATE } from '../protocol/index.ts';

/**
 * The largest answer read from a node: a status or a group view is a few KB (the view of a 256-node group
 * ~100 KB). The body was read whole within the time limit: ~430 MB in 1.5 s from one local server.
 */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

/** A node's answer: its HTTP status and its body parsed as JSON. */
export interface NodeAnswer {
  status: number;
  body: unknown;
}

/**
 * How to trust a node's certificate, for a message about one that is not: `cause` a fetch's cause code, or a
 * message holding one (the SDK's, `node 0: NETWORK fetch failed (UNABLE_TO_VERIFY_LEAF_SIGNATURE)`). Null
 * when it names no such cause.
 */
export function untrustedCertificateHint(text: string): string | null {
  const cause = text.split(/[^A-Z0-9_]+/).find((w) => UNTRUSTED_CERTIFICATE.test(w));
  if (cause === undefined) return null;
  if (cause.startsWith('ERR_TLS_CERT_ALTNAME'))
    return "the certificate does not name the URL's host: use the name it gives, or a certificate for that host";
  // No CA a client adds makes these trusted: the node's owner installs a new certificate (api.tls), or a clock
  // is wrong (this machine's, or the one the certificate was made on).
  if (cause === 'CERT_HAS_EXPIRED')
    return "the node's certificate has expired: its owner must install a new one and restart the node (or this machine's clock is wrong)";
  if (cause === 'CERT_NOT_YET_VALID')
    return "the node's certificate is not valid yet: check this machine's clock (or the certificate's start date)";
  return "if a private CA signed the node's certificate, run with NODE_EXTRA_CA_CERTS=<that CA's PEM file> (read when the process starts)";
}

/**
 * A failed fetch of `url` as one of the typed errors above (NODE_TIMEOUT, NODE_UNTRUSTED with how to trust a
 * private CA, NODE_UNREACHABLE with the cause's code); a DropbearError as it is.
 */
export function networkError(url: string, e: unknown, timeoutMs: number): DropbearError {
  if (e instanceof DropbearError) return e;
  const err = e as { name?: string; message?: string; cause?: { code?: unknown; message?: unknown } };
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError')
    return new DropbearError('NODE_TIMEOUT', `${url} did not answer within ${timeoutMs} ms`);
  const cause =
    typeof err?.cause?.code === 'string'
      ? err.cause.code
      : typeof err?.cause?.message === 'string'
        ? err.cause.message
        : (err?.message ?? String(e));
  const hint = UNTRUSTED_CERTIFICATE.test(cause) ? untrustedCertificateHint(cause) : null;
  if (hint)
    return new DropbearError(
      'NODE_UNTRUSTED',
      `${url}: its TLS certificate is not trusted (${cause}); ${hint}`,
    );
  // An https URL at a port that answers plain HTTP (a node without api.tls).
  if (cause === 'ERR_SSL_WRONG_VERSION_NUMBER' && url.startsWith('https:'))
    return new DropbearError(
      'NODE_UNREACHABLE',
      `${url} did not answer TLS (${cause}): does the node serve plain HTTP there (no api.tls)? then its URL is http://`,
    );
  // Taken and then closed or reset unanswered: something listens there (a node serving HTTPS closes
  // connections over its limit unanswered, as does a port of another protocol). "Is the node running?" sent
  // the operator to start a node that was running.
  if (CLOSED_UNANSWERED.has(cause))
    return new DropbearError(
      'NODE_UNREACHABLE',
      `the node at ${url} closed the connection without answering (${cause}): it may be over its connection limit (api_limits.maxConnections; try again later), or not speak http/https as the URL says`,
    );
  // Bytes that are not HTTP (llhttp's HPE_ codes): another program's port.
  if (cause.startsWith('HPE_'))
    return new DropbearError(
      'NODE_UNREACHABLE',
      `${url} answered something that is not HTTP (${cause}): is another program listening at that port, or does it not speak http/https as the URL says?`,
    );
  return new DropbearError('NODE_UNREACHABLE', `nothing answered at ${url} (${cause}); is the node running?`);
}

/**
 * Causes of a failed fetch whose connection was taken and then closed or reset before an answer: a reset
 * (ECONNRESET, also under TLS before the handshake ended), a write to a closed socket (EPIPE), undici's
 * "other side closed" (UND_ERR_SOCKET).
 */
const CLOSED_UNANSWERED = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

/**
 * Text a node sent, for a message: one line without control characters (a line break printed rows of the
 * node's making in `status`, and a terminal's escapes went out as they were), at most `max` characters.
 */
function snippet(text: string, max = 60): string {
  return printableLine(text, max);
}

/** The body as text, read as it comes (decompressed, if it is) and abandoned past MAX_ANSWER_BYTES. */
async function boundedText(url: string, res: Response): Promise<string> {
  const bytes = await readCapped(
    res,
    MAX_ANSWER_BYTES,
    () =>
      new DropbearError(
        'RESPONSE_TOO_LARGE',
        `${url} answered more than ${MAX_ANSWER_BYTES} bytes; not read further. Is this a Dropbear node?`,
      ),
  );
  return new TextDecoder().decode(bytes); // as res.text() did (a byte-order mark skipped)
}

/** BAD_RESPONSE for an answer that redirects (not followed), else null. */
function redirected(url: string, res: Response): DropbearError | null {
  if (res.status < 300 || res.status > 399) return null;
  const to = res.headers.get('location');
  return new DropbearError(
    'BAD_RESPONSE',
    `${url} answered HTTP ${res.status}, a redirect${to === null ? '' : ` to ${snippet(to)}`} (not followed); is this a Dropbear node?`,
  );
}

/**
 * Fetches `url` and parses the body as JSON, all within `timeoutMs`. Any status comes back (the caller
 * decides what it means) but a redirect's; a body that is not JSON is BAD_RESPONSE, one past
 * MAX_ANSWER_BYTES RESPONSE_TOO_LARGE.
 */
export async function fetchNodeJson(
  url: string,
  timeoutMs: number,
  init: RequestInit = {},
): Promise<NodeAnswer> {
  const signal = AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs)));
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, { ...init, redirect: 'manual', signal });
    const moved = redirected(url, res);
    if (moved) {
      res.body?.cancel().catch(() => {});
      throw moved;
    }
    text = await boundedText(url, res);
  } catch (e) {
    throw networkError(url, e, timeoutMs);
  }
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    throw new DropbearError(
      'BAD_RESPONSE',
      `${url} answered HTTP ${res.status} with a body that is not JSON` +
        (text.length > 0 ? ` ("${snippet(text)}")` : ' (empty)') +
        '; is this a Dropbear node?',
    );
  }
}

/**
 * The status of a fetch with no body wanted (/healthz, /readyz): the body is not read (it was, whole,
 * whatever its size), nor a redirect followed; network errors as fetchNodeJson's.
 */
export async function fetchNodeStatus(url: string, timeoutMs: number): Promise<number> {
  try {
    const res = await fetch(url, {
      redirect: 'manual',
      signal: AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs))),
    });
    res.body?.cancel().catch(() => {});
    return res.status;
  } catch (e) {
    throw networkError(url, e, timeoutMs);
  }
}

/** Whether `x` is a list of objects each with every one of `keys` a safe integer (a node's answer, checked). */
export function intRecords<K extends string>(x: unknown, keys: readonly K[]): x is Record<K, number>[] {
  return (
    Array.isArray(x) &&
    x.every(
      (p) =>
        typeof p === 'object' &&
        p !== null &&
        keys.every((k) => Number.isSafeInteger((p as Record<string, unknown>)[k])),
    )
  );
}

/**
 * The answer's body when its status is `ok` and it is a JSON object; else the node's own error when it sent
 * one (`{"error": {"code", "message"}}`, as the API does), else BAD_RESPONSE naming the status.
 */
export function expectObject(url: string, a: NodeAnswer, ok = 200): Record<string, unknown> {
  const body = a.body as { error?: { code?: unknown; message?: unknown } } | null;
  const isObject = typeof body === 'object' && body !== null && !Array.isArray(body);
  if (a.status === ok && isObject) return body as Record<string, unknown>;
  const error = isObject ? body.error : undefined;
  if (typeof error?.code === 'string' || typeof error?.message === 'string') {
    // The node's code if it is one (every code the API sends is letters, digits and `_`).
    const code = codeOr(error?.code, 'BAD_RESPONSE');
    const said = typeof error?.message === 'string' ? error.message : code;
    throw new DropbearError(code, `${url} answered HTTP ${a.status}: ${snippet(said, 200)}`);
  }
  throw new DropbearError(
    'BAD_RESPONSE',
    a.status === ok
      ? `${url} answered JSON that is not an object; is this a Dropbear node?`
      : `${url} answered HTTP ${a.status}; is this a Dropbear node?`,
  );
}
