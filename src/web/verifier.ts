/**
 * The dashboard's certificate check, run in a module worker so that the page stays responsive while it
 * runs. The worker is the dashboard's own script (web/app.ts started where there is no document): the
 * page at /dashboard starts it from /dashboard/app.js, the offline page from the text of its inline
 * script. On the page's thread, a large certificate held it for seconds with nothing repainted: the largest
 * the codec takes (a 256-node group's: 171 receipt signatures, 256 votes of 4096-value vectors, 18.5 MB
 * of JSON) 7.3 s in the click handler, one of 4.7 MB 1.3 s, in headless Chromium on the 2-core review
 * machine, 2026-12-05.
 */
import { SignatureCache, verifyCertificate } from '../certificate/index.ts';
import { Decision, duplicateJsonKey, fromJson, Genesis, hex, toJson } from '../protocol/index.ts';

/** A verdict as the page shows it. */
export interface Shown {
  /** How the verdict line looks: valid, refused or not checked, or in progress. */
  kind: 'ok' | 'bad' | 'note';
  title: string;
  detail: string;
}

/** What the page tells a new worker: the genesis (its JSON) certificates are checked against, or why none. */
export interface VerifierSetup {
  genesis: unknown;
  refusal: string | null;
}

/** One check: certificate JSON as text; `expected` the request id it was fetched for, if it was. */
export interface VerifierJob {
  id: number;
  text: string;
  expected?: string;
}

export interface VerifierAnswer {
  id: number;
  shown: Shown;
}

/**
 * Verifies a certificate (the JSON of `dropbear verify`'s files, or `{requestId, certificate}` as
 * GET /v1/certificates/:id answers). A valid certificate for another request than the one asked for
 * (`expected`, or the `requestId` beside it) is refused: a node could answer a request id with some other
 * request's genuine certificate.
 */
function verifyHere(
  json: unknown,
  genesis: Genesis | null,
  refusal: string | null,
  cache: SignatureCache,
  expected?: string,
): Shown {
  if (!genesis) return { kind: 'bad', title: 'not checked', detail: refusal ?? '' };
  const wrapped = json !== null && typeof json === 'object' && 'certificate' in json && 'requestId' in json;
  const cert = wrapped ? (json as { certificate: unknown }).certificate : json;
  const beside = wrapped ? (json as { requestId: unknown }).requestId : undefined;
  const claimed = expected ?? (typeof beside === 'string' ? beside.toLowerCase() : undefined);
  const r = verifyCertificate(cert, genesis, { cache });
  if (!r.ok) return { kind: 'bad', title: `INVALID: ${r.reason}`, detail: r.message };
  const got = hex(r.certificate.outcome.requestId);
  if (claimed !== undefined && got !== claimed)
    return {
      kind: 'bad',
      title: 'INVALID: wrong-request',
      detail: `a valid certificate, but for request ${got}, not ${claimed}`,
    };
  const c = r.certificate;
  return {
    kind: 'ok',
    title: 'VALID',
    detail: JSON.stringify(
      {
        requestId: hex(c.outcome.requestId),
        batch: c.receipt.seq,
        decision: toJson(Decision, c.outcome.decision),
        votes: c.outcome.votes.length,
        signers: c.signatures.map((s) => s.node),
      },
      null,
      2,
    ),
  };
}

/** The verdict on certificate JSON text: parsed, refused if a key repeats, then verified. */
export function checkText(
  text: string,
  genesis: Genesis | null,
  refusal: string | null,
  cache: SignatureCache,
  expected?: string,
): Shown {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { kind: 'bad', title: 'INVALID: malformed', detail: `not JSON: ${(e as Error).message}` };
  }
  // JSON.parse keeps the last of two equal keys; a reader that keeps the first would see another certificate.
  const dup = duplicateJsonKey(text);
  if (dup) return { kind: 'bad', title: 'INVALID: malformed', detail: `a key repeats: ${dup}` };
  return verifyHere(json, genesis, refusal, cache, expected);
}

/** The worker's side (DOM's typings describe a window, not a worker's global scope). */
interface WorkerScope {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: VerifierAnswer): void;
}

/**
 * Runs this script as the verifier worker: the first message is the setup, every later one a job, each
 * answered in turn. The page stops a worker whose answer it no longer wants (verifyCertificate, once
 * started, runs to its end) and starts another.
 */
export function serveVerifier(): void {
  const scope = globalThis as unknown as WorkerScope;
  const cache = new SignatureCache();
  let setup: { genesis: Genesis | null; refusal: string | null } | null = null;
  scope.onmessage = (e) => {
    if (!setup) {
      const s = e.data as VerifierSetup;
      // The page decoded this genesis and found nothing wrong with it before sending it (app.ts, useGenesis).
      setup = { genesis: s.refusal === null ? fromJson(Genesis, s.genesis) : null, refusal: s.refusal };
      return;
    }
    const job = e.data as VerifierJob;
    scope.postMessage({
      id: job.id,
      shown: checkText(job.text, setup.genesis, setup.refusal, cache, job.expected),
    });
  };
}
