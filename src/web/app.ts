/**
 * The dashboard's browser code (bundled by web/bundle.ts): the group the node serves, its live status, and
 * certificates verified here, in the browser, with the same verifier as `dropbear verify`
 * (certificate/index.ts) against the genesis. The genesis comes from the node, so the page computes the
 * group id from it and shows it; with `?group=<id>` in the address it refuses a genesis that hashes to
 * another id. That guards against a node serving the wrong group, not against a faulty node: the node also
 * serves this script, and a faulty one can serve a script that says anything. For a verdict that trusts no
 * node, run `dropbear verify` (or a verifier of your own, docs/certificate.md) on the certificate.
 */
import { fromJson, Genesis, genesisProblem, groupIdOf, hex } from '../protocol/index.ts';
import {
  type Shown,
  serveVerifier,
  type VerifierAnswer,
  type VerifierJob,
  type VerifierSetup,
} from './verifier.ts';

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

/** The genesis certificates are checked against, as JSON (the verifier worker decodes it again), or null. */
let genesisJson: unknown = null;
/** Why certificates cannot be verified here (no genesis, or not the pinned group), or null. */
let refusal: string | null = 'the group has not loaded yet';

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
  genesisJson = refusal ? null : json;
  // A worker started before holds the genesis (or refusal) it was started with.
  retireVerifier();
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

function show(r: Shown): void {
  const v = $('verdict');
  v.className = r.kind;
  v.textContent = r.title;
  text('verdict-detail', r.detail);
}

/** How long GET /v1/certificates/:id may wait for a certificate this node has not assembled yet. */
const FETCH_WAIT_MS = 3000;

/**
 * Counts the checks asked for (a fetch, or a pasted certificate): an answer that comes after a later check
 * was asked for is dropped, so the verdict shown is never that of an earlier request id.
 */
let asked = 0;

/**
 * The most text the paste box is checked for: no certificate comes near it. The largest the codec takes (a
 * 256-node group's, every vote a 4096-value vector) is 18.5 million characters as compact JSON and 34.3
 * million as this page writes a fetched one (indented by 2); more than that is not a certificate, and would
 * only hold the verifier (and memory) for nothing.
 */
const MAX_PASTE_CHARS = 64 * 1024 * 1024;

/**
 * The worker that checks certificates (web/verifier.ts), off the page's thread, and the check it is on.
 * verifyCertificate runs to its end once started, so a check that is no longer wanted is stopped with its
 * worker; the next check starts another (the signature cache goes with the old one).
 */
let verifier: Worker | null = null;
let running: { id: number; worker: Worker; done: (r: Shown | null) => void } | null = null;
/** The offline page's script as a blob (kept: one for every worker it starts). */
let inlineVerifierUrl: string | null = null;

/**
 * A verifier worker: this same script. The page at /dashboard starts it as a module worker from its URL
 * (/dashboard/app.js: worker-src 'self'). The offline page's script is inline and the page a file:, whose
 * origin is opaque: Chromium starts no module worker from a blob URL there (it does a classic one), so it
 * runs the script's text as a classic worker, inside a function in strict mode, as a module would be
 * scoped. (So nothing here uses import.meta, which a classic script cannot parse.)
 */
function newVerifierWorker(): Worker {
  const own = document.querySelector<HTMLScriptElement>('script[type="module"]');
  if (own?.src) return new Worker(own.src, { type: 'module' });
  inlineVerifierUrl ??= URL.createObjectURL(
    new Blob([`(() => {\n'use strict';\n${own?.textContent ?? ''}\n})();\n`], { type: 'text/javascript' }),
  );
  return new Worker(inlineVerifierUrl);
}

/** Stops the check in progress, with its worker; its caller gets null. */
function stopCheck(): void {
  const r = running;
  if (!r) return;
  running = null;
  r.worker.terminate();
  if (r.worker === verifier) verifier = null;
  r.done(null);
}

/** The next check starts a fresh worker; one still checking answers first (what it was asked), then ends. */
function retireVerifier(): void {
  if (verifier && running?.worker !== verifier) verifier.terminate();
  verifier = null;
}

function startVerifier(): Worker {
  const w = newVerifierWorker();
  w.onmessage = (e: MessageEvent<VerifierAnswer>) => {
    const r = running;
    if (r?.worker !== w || r.id !== e.data.id) return;
    running = null;
    if (w !== verifier) w.terminate();
    r.done(e.data.shown);
  };
  // The worker did not load, or threw: said as the verdict, and the next check starts a fresh one.
  w.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    w.terminate();
    if (w === verifier) verifier = null;
    const r = running;
    if (r?.worker !== w) return;
    running = null;
    r.done({
      kind: 'bad',
      title: 'not checked',
      detail: `the verifier stopped: ${e.message || 'no reason given'}`,
    });
  };
  w.postMessage({ genesis: genesisJson, refusal } satisfies VerifierSetup);
  return w;
}

/** The verdict on certificate JSON text, from the worker; null if a later check stopped this one. */
function checkInWorker(id: number, text: string, expected?: string): Promise<Shown | null> {
  const w = (verifier ??= startVerifier());
  return new Promise((resolve) => {
    running = { id, worker: w, done: resolve };
    w.postMessage({ id, text, expected } satisfies VerifierJob);
  });
}

/** Starts a new check (its number): an earlier one still in the worker is stopped, its answer unwanted. */
function ask(): number {
  stopCheck();
  return ++asked;
}

async function verifyText(mine: number, text: string, expected?: string): Promise<void> {
  show({ kind: 'note', title: 'verifying…', detail: '' });
  const shown = await checkInWorker(mine, text, expected);
  if (shown && mine === asked) show(shown);
}

async function fetchAndVerify(): Promise<void> {
  const mine = ask();
  const id = ($('request-id') as HTMLInputElement).value.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(id)) {
    show({ kind: 'bad', title: 'not checked', detail: 'a request id is 64 hex characters' });
    return;
  }
  show({ kind: 'note', title: 'fetching…', detail: '' });
  let body: unknown;
  try {
    // A certificate still forming at this node (its receipt signatures arriving) is waited for a while.
    body = await getJson(`/v1/certificates/${id}?wait=${FETCH_WAIT_MS}`);
  } catch (e) {
    if (mine !== asked) return;
    show({ kind: 'bad', title: 'not checked', detail: (e as Error).message });
    return;
  }
  if (mine !== asked) return;
  const json = JSON.stringify(body, null, 2);
  ($('cert-json') as HTMLTextAreaElement).value = json;
  await verifyText(mine, json, id);
}

function verifyPasted(): void {
  const mine = ask();
  const json = ($('cert-json') as HTMLTextAreaElement).value;
  if (json.length > MAX_PASTE_CHARS) {
    show({
      kind: 'bad',
      title: 'not checked',
      detail:
        `the pasted text is ${json.length.toLocaleString('en')} characters; this page checks up to ` +
        `${MAX_PASTE_CHARS.toLocaleString('en')} (the largest certificate is about 18.5 million as compact JSON)`,
    });
    return;
  }
  void verifyText(mine, json);
}

const ready = (ok: boolean) => {
  document.body.dataset.ready = ok ? 'true' : 'error';
};
// In a worker (no document) this script is the verifier; in the page, the page.
const embedded = typeof document === 'undefined' ? null : document.getElementById('genesis-json');
if (typeof document === 'undefined') serveVerifier();
else if (embedded) {
  $('verify-btn').addEventListener('click', verifyPasted);
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
  $('verify-btn').addEventListener('click', verifyPasted);
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
