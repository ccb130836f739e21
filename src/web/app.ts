/**
 * The dashboard's browser code (bundled by web/bundle.ts): the group the node serves, its live status, and
 * certificates verified here, in the browser, with the same verifier as `dropbear verify`
 * (certificate/index.ts) against the genesis. The genesis comes from the node, so the page computes the
 * group id from it and shows it; with `?group=<id>` in the address it refuses a genesis that hashes to
 * another id. That guards against a node serving the wrong group, not against a faulty node: the node also
 * serves this script, and a faulty one can serve a script that says anything. For a verdict that trusts no
 * node, run `dropbear verify` (or a verifier of your own, docs/certificate.md) on the certificate.
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
  toJson,
} from '../protocol/index.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} missing from the page`);
  return e as T;
};

function text(id: string, value: string | number | null | undefined): void {
  $(id).textContent = value === null || value === undefined ? '–' : String(value);
}

async function getJson(path: string): Promise<unknown> {
  const r = await fetch(path, { headers: { accept: 'application/json' } });
  const body = (await r.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
  if (!r.ok) {
    const code = body?.error?.code ?? `HTTP_${r.status}`;
    throw new Error(`${code}: ${body?.error?.message ?? r.statusText}`);
  }
  return body;
}

let genesis: Genesis | null = null;
/** Why certificates cannot be verified here (no genesis, or not the pinned group), or null. */
let refusal: string | null = 'the group has not loaded yet';
const cache = new SignatureCache();

interface ModelRow {
  node: number;
  modelName: string;
  digest: string;
  version: number;
}

/** Takes a genesis (its JSON form) as the one certificates are checked against, unless it fails the pin. */
function useGenesis(json: unknown, models: ModelRow[] | null, source: string): void {
  let parsed: Genesis;
  try {
    parsed = fromJson(Genesis, json);
  } catch (e) {
    refusal = `${source} a genesis that does not decode (${(e as Error).message})`;
    throw new Error(refusal);
  }
  const problem = genesisProblem(parsed);
  const id = hex(groupIdOf(parsed));
  text('group-name', parsed.name);
  text('group-id', id);
  text('group-size', `n = ${parsed.nodes.length}, f = ${parsed.f}`);
  const pinned = new URLSearchParams(location.search).get('group')?.toLowerCase() ?? null;
  const warn = $('pin');
  if (problem) refusal = `the genesis is invalid: ${problem}`;
  else if (pinned && pinned !== id)
    refusal = `${source} group ${id}, not the pinned ${pinned}: no certificate is checked against it`;
  else refusal = null;
  if (pinned && !refusal) {
    warn.className = 'ok';
    warn.textContent = 'the genesis matches the pinned group id';
  } else if (refusal) {
    warn.className = 'bad';
    warn.textContent = refusal;
  } else {
    warn.className = 'note';
    warn.textContent =
      'not pinned: add ?group=<group id> to the address to check that this is the group you expect';
  }
  genesis = refusal ? null : parsed;
  const rows =
    models ??
    parsed.nodes.map((n) => ({ node: n.id, modelName: n.modelName, digest: hex(n.modelDigest), version: 0 }));
  $('models').replaceChildren(
    ...rows.map((m) => {
      const tr = document.createElement('tr');
      for (const v of [String(m.node), m.modelName, m.digest, String(m.version)]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }),
  );
}

async function loadGroup(): Promise<void> {
  const g = (await getJson('/v1/group')) as {
    genesis: unknown;
    models: { node: number; genesisModelName: string; digest: string; version: number }[];
  };
  useGenesis(
    g.genesis,
    g.models.map((m) => ({
      node: m.node,
      modelName: m.genesisModelName,
      digest: m.digest,
      version: m.version,
    })),
    'the node serves',
  );
}

async function loadStatus(): Promise<void> {
  try {
    const s = (await getJson('/v1/status')) as Record<string, unknown>;
    text('node-id', s.id as number);
    text('view', `${s.view}${s.viewChanging ? ' (changing view)' : ''}`);
    text('primary', s.primary as number);
    text('executed', s.lastExecuted as number);
    text('rate', s.executedPerSecond as number);
    text('pending', s.pendingRequests as number);
    text('waiting', s.waitingForCertificates as number);
    text('durability', s.durability as string);
    text('status-error', '');
  } catch (e) {
    text('status-error', `status: ${(e as Error).message}`);
  }
}

interface Shown {
  /** How the verdict line looks: valid, refused or not checked, or in progress. */
  kind: 'ok' | 'bad' | 'note';
  title: string;
  detail: string;
}

function show(r: Shown): void {
  const v = $('verdict');
  v.className = r.kind;
  v.textContent = r.title;
  text('verdict-detail', r.detail);
}

/**
 * Verifies a certificate (the JSON of `dropbear verify`'s files, or `{requestId, certificate}` as
 * GET /v1/certificates/:id answers). A valid certificate for another request than the one asked for
 * (`expected`, or the `requestId` beside it) is refused: a node could answer a request id with some other
 * request's genuine certificate.
 */
function verifyHere(json: unknown, expected?: string): Shown {
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

/** How long GET /v1/certificates/:id may wait for a certificate this node has not assembled yet. */
const FETCH_WAIT_MS = 3000;

/**
 * Counts the checks asked for (a fetch, or a pasted certificate): an answer that comes after a later check
 * was asked for is dropped, so the verdict shown is never that of an earlier request id.
 */
let asked = 0;

async function fetchAndVerify(): Promise<void> {
  const mine = ++asked;
  const id = ($('request-id') as HTMLInputElement).value.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(id)) {
    show({ kind: 'bad', title: 'not checked', detail: 'a request id is 64 hex characters' });
    return;
  }
  show({ kind: 'note', title: 'fetching…', detail: '' });
  try {
    // A certificate still forming at this node (its receipt signatures arriving) is waited for a while.
    const body = await getJson(`/v1/certificates/${id}?wait=${FETCH_WAIT_MS}`);
    if (mine !== asked) return;
    ($('cert-json') as HTMLTextAreaElement).value = JSON.stringify(body, null, 2);
    show(verifyHere(body, id));
  } catch (e) {
    if (mine !== asked) return;
    show({ kind: 'bad', title: 'not checked', detail: (e as Error).message });
  }
}

function verifyPasted(): void {
  asked++;
  let json: unknown;
  const text = ($('cert-json') as HTMLTextAreaElement).value;
  try {
    json = JSON.parse(text);
  } catch (e) {
    show({ kind: 'bad', title: 'INVALID: malformed', detail: `not JSON: ${(e as Error).message}` });
    return;
  }
  // JSON.parse keeps the last of two equal keys; a reader that keeps the first would see another certificate.
  const dup = duplicateJsonKey(text);
  if (dup) {
    show({ kind: 'bad', title: 'INVALID: malformed', detail: `a key repeats: ${dup}` });
    return;
  }
  show(verifyHere(json));
}

$('verify-btn').addEventListener('click', verifyPasted);
const ready = (ok: boolean) => {
  document.body.dataset.ready = ok ? 'true' : 'error';
};
const embedded = document.getElementById('genesis-json');
if (embedded) {
  // The offline page (`dropbear verify-page`): its genesis is in the file, and it asks no node anything.
  try {
    useGenesis(JSON.parse(embedded.textContent ?? ''), null, 'this page holds');
    ready(true);
  } catch (e) {
    const warn = $('pin');
    warn.className = 'bad';
    warn.textContent = refusal ?? `the genesis in this page: ${(e as Error).message}`;
    ready(false);
  }
} else {
  $('fetch-btn').addEventListener('click', () => void fetchAndVerify());
  loadGroup().then(
    () => ready(true),
    (e: Error) => {
      text('status-error', `group: ${e.message}`);
      ready(false);
    },
  );
  void loadStatus();
  setInterval(() => void loadStatus(), 2000);
}
