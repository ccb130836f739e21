/**
 * The dashboard's genesis and certificate checks, run in a module worker so that the page stays responsive while it
 * runs. The worker is the dashboard's own script (web/app.ts started where there is no document): the
 * page at /dashboard starts it from /dashboard/app.js, the offline page from the text of its inline
 * script. On the page's thread, a large certificate held it for seconds with nothing repainted: the largest
 * the codec takes (a 256-node group's: 171 receipt signatures, 256 votes of 4096-value vectors, 18.5 MB
 * of JSON) 7.3 s in the click handler, one of 4.7 MB 1.3 s, in headless Chromium on the 2-core review
 * machine, 2026-12-05.
 */
import { SignatureCache, verifyCertificate } from '../certificate/index.ts';
import {
  Decision,
  duplicateJsonKey,
  fromJson,
  Genesis,
  genesisProblem,
  groupIdOf,
  hex,
  kindHint,
  toJson,
} from '../protocol/index.ts';

/** A verdict as the page shows it. */
export interface Shown {
  /** How the verdict line looks: valid, refused or not checked, or in progress. */
  kind: 'ok' | 'bad' | 'note';
  title: string;
  detail: string;
}

/**
 * What the page tells a new worker: the genesis certificates are checked against, as text (the worker
 * parses, decodes and checks it: a genesis may hold a million balances, 68 MB of JSON, and the page's
 * thread was held 2.5 s by one of 100,000 in headless Chromium on the 2-core review machine, 2026-12-06).
 */
export interface VerifierSetup {
  /** The genesis JSON, or when `served` the body of GET /v1/group (`{genesis, models}`). */
  text: string;
  served: boolean;
  /** The group id the address pins (`?group=`, lower case), or null. */
  pinned: string | null;
  /** Where the genesis came from, as the page words it ("this node serves", "this page holds"). */
  source: string;
}

/** One row of the models table, as text. */
export interface ModelRow {
  node: string;
  modelName: string;
  digest: string;
  version: string;
}

/** What the worker found in the genesis: what the page shows of the group, and why nothing is checked. */
export interface GroupSummary {
  /** Null where the genesis did not decode. */
  name: string | null;
  groupId: string | null;
  size: string | null;
  models: ModelRow[];
  /** Why no certificate is checked against it (invalid, not the pinned group, did not decode), or null. */
  refusal: string | null;
}

/** One check: certificate JSON as text; `expected` the request id it was fetched for, if it was. */
export interface VerifierJob {
  id: number;
  text: string;
  expected?: string;
}

/** The worker's answers: to the setup (first), then to each job (how far a list is, then its verdict). */
export type VerifierAnswer =
  | { kind: 'progress'; id: number; done: number; total: number }
  | { kind: 'group'; group: GroupSummary }
  | { kind: 'verdict'; id: number; shown: Shown };

/** The node's models table in GET /v1/group, as text; null where it is not one. */
function servedModels(models: unknown): ModelRow[] | null {
  if (!Array.isArray(models)) return null;
  const rows: ModelRow[] = [];
  for (const m of models) {
    if (m === null || typeof m !== 'object') return null;
    const r = m as Record<string, unknown>;
    rows.push({
      node: String(r.node),
      modelName: String(r.genesisModelName),
      digest: String(r.digest),
      version: String(r.version),
    });
  }
  return rows;
}

/** Parses, decodes and checks the genesis of a setup: the genesis to check against (null: none) and what to show. */
export function checkGenesis(s: VerifierSetup): { genesis: Genesis | null; group: GroupSummary } {
  const refuse = (why: string) => ({
    genesis: null,
    group: { name: null, groupId: null, size: null, models: [], refusal: why },
  });
  let json: unknown;
  try {
    json = JSON.parse(s.text);
  } catch (e) {
    return refuse(`${s.source} a genesis that is not JSON (${(e as Error).message})`);
  }
  // As for certificates: JSON.parse keeps the last of two equal keys, another reader the first.
  const dup = duplicateJsonKey(s.text);
  if (dup) return refuse(`${s.source} a genesis in which a key repeats (${dup})`);
  let models: ModelRow[] | null = null;
  if (s.served) {
    const body = (json ?? {}) as { genesis?: unknown; models?: unknown };
    json = body.genesis;
    models = servedModels(body.models);
  }
  let genesis: Genesis;
  try {
    genesis = fromJson(Genesis, json);
  } catch (e) {
    return refuse(
      `${s.source} a genesis that does not decode (${(e as Error).message}${kindHint(json, 'a group genesis', 'text')})`,
    );
  }
  const problem = genesisProblem(genesis);
  const id = hex(groupIdOf(genesis));
  let refusal: string | null = null;
  if (problem) refusal = `the genesis is invalid: ${problem}`;
  else if (s.pinned && s.pinned !== id)
    refusal = `${s.source} group ${id}, not the pinned ${s.pinned}: no certificate is checked against it`;
  return {
    genesis: refusal ? null : genesis,
    group: {
      name: genesis.name,
      groupId: id,
      size: `n = ${genesis.nodes.length}, f = ${genesis.f}`,
      models:
        models ??
        genesis.nodes.map((n) => ({
          node: String(n.id),
          modelName: n.modelName,
          digest: hex(n.modelDigest),
          version: '0',
        })),
      refusal,
    },
  };
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
  const wrapped = json !== null && typeof json === 'object' && Object.hasOwn(json, 'certificate');
  // The wrapper is exactly the API's answer: anything else beside the certificate (an "outcome" or a
  // "decision" of someone's making, a request id that is not one) would read as part of what is VALID
  // without being checked, so it is refused as malformed, as verifyCertificate refuses unknown fields.
  if (wrapped) {
    const extra = Object.keys(json).find((k) => k !== 'certificate' && k !== 'requestId');
    const beside = (json as { requestId?: unknown }).requestId;
    const why =
      extra !== undefined
        ? `unknown field "${extra}" beside the certificate`
        : typeof beside !== 'string' || !/^[0-9a-fA-F]{64}$/.test(beside)
          ? 'the requestId beside the certificate is not 64 hex characters'
          : null;
    if (why)
      return {
        kind: 'bad',
        title: 'INVALID: malformed',
        detail: `${why} (GET /v1/certificates/:id answers {requestId, certificate} and nothing else)`,
      };
  }
  const cert = wrapped ? (json as { certificate: unknown }).certificate : json;
  const beside = wrapped ? (json as { requestId: string }).requestId : undefined;
  const claimed = expected ?? beside?.toLowerCase();
  const r = verifyCertificate(cert, genesis, { cache });
  // A file of another kind (a genesis, a key, a node config) pasted here is said to be one, as the CLI does.
  if (!r.ok)
    return {
      kind: 'bad',
      title: `INVALID: ${r.reason}`,
      detail: `${r.message}${r.reason === 'malformed' ? kindHint(cert, 'a certificate', 'text') : ''}`,
    };
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
        // Which model each counted vote came from: a node's model changes with model updates, so the
        // digest is told against the genesis's (the certificate holds digests, not versions).
        models: c.outcome.votes.map((v) => {
          const at = genesis.nodes[v.node];
          const same = at !== undefined && hex(at.modelDigest) === hex(v.modelDigest);
          return `node ${v.node}: ${hex(v.modelDigest)} (${same ? `its genesis model, ${at.modelName}` : 'not its genesis model'})`;
        }),
        signers: c.signatures.map((s) => s.node),
      },
      null,
      2,
    ),
  };
}

/**
 * The most certificates of a list named in its verdict, valid or invalid; the rest are counted. A list of
 * garbage ("[1,1,…]", 20 MB pasted: 10 million items) named every one, 450 MB of detail, and crashed the
 * page (headless Chromium, 2-core review machine, 2026-12-07).
 */
const MAX_LISTED = 1000;

/** How often a list's check says how far it is. */
const PROGRESS_MS = 100;

/**
 * The verdict on a list of certificates (a JSON array of what verifyHere takes), as `dropbear verify` on
 * several files: VALID only if every one is, else INVALID with the first one's reason and every invalid
 * one listed. `progress` is told how many are done, every PROGRESS_MS.
 */
function verifyList(
  list: unknown[],
  genesis: Genesis | null,
  refusal: string | null,
  cache: SignatureCache,
  progress: (done: number, total: number) => void,
): Shown {
  if (!genesis) return { kind: 'bad', title: 'not checked', detail: refusal ?? '' };
  if (list.length === 0) return { kind: 'bad', title: 'INVALID: malformed', detail: 'an empty list' };
  const valid: string[] = [];
  const invalid: string[] = [];
  let invalidCount = 0;
  let first: string | null = null;
  let told = Date.now();
  for (const [i, item] of list.entries()) {
    const r = verifyHere(item, genesis, refusal, cache);
    if (r.kind === 'ok') {
      const d = JSON.parse(r.detail) as { requestId: string; decision: unknown };
      if (valid.length < MAX_LISTED)
        valid.push(`#${i}: request ${d.requestId}, decision ${JSON.stringify(d.decision)}`);
    } else {
      first ??= r.title;
      invalidCount++;
      if (invalid.length < MAX_LISTED)
        invalid.push(`#${i}: ${r.title.replace(/^INVALID: /, '')}: ${r.detail}`);
    }
    if (Date.now() - told >= PROGRESS_MS) {
      progress(i + 1, list.length);
      told = Date.now();
    }
  }
  if (first !== null)
    return {
      kind: 'bad',
      title: first,
      detail: `${invalidCount} of the ${list.length} certificates are invalid (the list is not valid as a whole):\n${invalid.join('\n')}${more(invalidCount - invalid.length, 'invalid')}`,
    };
  return {
    kind: 'ok',
    title: 'VALID',
    detail: `all ${list.length} certificates are valid:\n${valid.join('\n')}${more(list.length - valid.length, 'valid')}`,
  };
}

/** The line saying how many more were not named (MAX_LISTED), or nothing. */
function more(n: number, kind: string): string {
  return n > 0 ? `\n… and ${n.toLocaleString('en')} more ${kind} ones, not listed` : '';
}

/**
 * The verdict on certificate JSON text (one certificate, or a list of them): parsed, refused if a key
 * repeats, then verified.
 */
export function checkText(
  text: string,
  genesis: Genesis | null,
  refusal: string | null,
  cache: SignatureCache,
  expected?: string,
  progress: (done: number, total: number) => void = () => {},
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
  // (A list is pasted, not fetched: a fetch is for one request id.)
  if (Array.isArray(json) && expected === undefined)
    return verifyList(json, genesis, refusal, cache, progress);
  return verifyHere(json, genesis, refusal, cache, expected);
}

/** The worker's side (DOM's typings describe a window, not a worker's global scope). */
interface WorkerScope {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: VerifierAnswer): void;
}

/**
 * Runs this script as the verifier worker: the first message is the setup (answered with what the genesis
 * is), every later one a job, each answered in turn. The page stops a worker whose answer it no longer wants (verifyCertificate, once
 * started, runs to its end) and starts another.
 */
export function serveVerifier(): void {
  const scope = globalThis as unknown as WorkerScope;
  const cache = new SignatureCache();
  let setup: { genesis: Genesis | null; refusal: string | null } | null = null;
  scope.onmessage = (e) => {
    if (!setup) {
      const { genesis, group } = checkGenesis(e.data as VerifierSetup);
      setup = { genesis, refusal: group.refusal };
      scope.postMessage({ kind: 'group', group });
      return;
    }
    const job = e.data as VerifierJob;
    scope.postMessage({
      kind: 'verdict',
      id: job.id,
      shown: checkText(job.text, setup.genesis, setup.refusal, cache, job.expected, (done, total) =>
        scope.postMessage({ kind: 'progress', id: job.id, done, total }),
      ),
    });
  };
}
