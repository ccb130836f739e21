/**
 * The dashboard's browser code (bundled by web/bundle.ts): the group the node serves, its live status, and
 * certificates verified here, in the browser, with the same verifier as `dropbear verify`
 * (certificate/index.ts) against the genesis. The genesis comes from the node unless the person chooses a
 * genesis file, so the page computes the group id from it and shows it, and names it under every verdict;
 * with `?group=<id>` in the address it refuses a genesis that hashes to another id. That guards against a node serving the wrong group, not against a faulty node: the node also
 * serves this script, and a faulty one can serve a script that says anything. For a verdict that trusts no
 * node, run `dropbear verify` (or a verifier of your own, docs/certificate.md) on the certificate.
 * The genesis is parsed, decoded and checked in the verifier's worker (web/verifier.ts), like certificates:
 * the page's thread only shows what it found, the work in progress, and a button that cancels it.
 */

import { readLimited } from './limited.ts';
import {
  type GroupSummary,
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

/** An error answer's code and message (the body read only if small: a faulty node may send anything). */
async function failure(r: Response): Promise<Error> {
  const t = await readLimited(r, 65_536, 'the error answer').catch(() => '');
  let body: { error?: { code?: string; message?: string } } | null = null;
  try {
    body = JSON.parse(t);
  } catch {}
  const code = body?.error?.code ?? `HTTP_${r.status}`;
  return new Error(`${code}: ${body?.error?.message ?? r.statusText}`);
}

/**
 * GET `path` as JSON, read only up to `max` bytes (see readLimited); an answer that is not JSON is an
 * error (NOT_JSON). With `timeoutMs`, a node that has not answered by then is given up on: answered
 * whole, or with `headersOnly` begun to answer (a large certificate may take longer to come than that).
 */
async function getJson(path: string, max: number, timeoutMs?: number, headersOnly = false): Promise<unknown> {
  const what = path.split('?')[0];
  const stop = new AbortController();
  const timer = timeoutMs === undefined ? null : setTimeout(() => stop.abort(), timeoutMs);
  try {
    const r = await fetch(path, { headers: { accept: 'application/json' }, signal: stop.signal });
    if (headersOnly && timer !== null) clearTimeout(timer);
    if (!r.ok) throw await failure(r);
    const t = await readLimited(r, max, `the answer to ${what}`);
    try {
      return JSON.parse(t);
    } catch {
      throw new Error(`NOT_JSON: the answer to ${what} is not JSON`);
    }
  } catch (e) {
    if (stop.signal.aborted)
      throw new Error(`no answer in ${(timeoutMs ?? 0) / 1000} s (the node is slow or down)`);
    throw e;
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
}

/** The most a node's /v1/status answer is read for (an honest one is under a kilobyte). */
const MAX_STATUS_BYTES = 1 << 20;

/**
 * What every verifier worker is started with: the genesis text (checked in the worker, not here), or null
 * where there is none to check against (`refusal` says why).
 */
let setup: VerifierSetup | null = null;
/** Why certificates cannot be verified here (no genesis, or not the pinned group), or null. */
let refusal: string | null = 'the group has not loaded yet';

/** Shows what the worker found in the genesis (`own`: a genesis file the person chose). */
function showGroup(g: GroupSummary, pinned: string | null, own: boolean): void {
  text('group-name', g.name);
  text('group-id', g.groupId);
  text('group-size', g.size);
  refusal = g.refusal;
  const warn = $('pin');
  if (pinned && !refusal) {
    warn.className = 'ok';
    warn.textContent = 'the genesis matches the pinned group id';
  } else if (refusal) {
    warn.className = 'bad';
    warn.textContent = refusal;
  } else if (own) {
    warn.className = 'note';
    warn.textContent = 'certificates are checked against the genesis file you chose';
  } else {
    warn.className = 'note';
    warn.textContent =
      'not pinned: add ?group=<group id> to the address to check that this is the group you expect';
  }
  $('models').replaceChildren(
    ...g.models.map((m) => {
      const tr = document.createElement('tr');
      for (const v of [m.node, m.modelName, m.digest, m.version]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }),
  );
}

/** The worker checking the genesis, until it answers (or is cancelled), and what to do with its answer. */
let checkingGroup: { worker: Worker; done: (g: GroupSummary | null) => void } | null = null;

/**
 * What verdicts rest on, shown under each: the group id and where its genesis came from. A node's genesis
 * that is not pinned is said to be only the node's word: a faulty node can serve a genesis of keys it
 * holds, and the certificates it makes then verify against it.
 */
let basis = '';

/**
 * Takes a genesis (as text) to check certificates against: a fresh worker parses, decodes and checks it
 * off the page's thread. Resolves with what it found; null where the check was cancelled, the worker
 * stopped (the page then says why and checks nothing) or another genesis was taken meanwhile. `from`
 * says where it came from, under every verdict.
 */
function useGenesis(s: VerifierSetup, from: string, own = false): Promise<GroupSummary | null> {
  // A check against the genesis used until now is stopped: its verdict would be shown over this one's basis.
  ask();
  show({ kind: 'note', title: 'nothing checked yet', detail: '' });
  const prev = checkingGroup;
  if (prev) {
    prev.worker.terminate();
    if (verifier === prev.worker) verifier = null;
    prev.done(null);
  }
  setup = s;
  basis = '';
  refusal = 'the genesis is still being checked';
  const warn = $('pin');
  warn.className = 'note';
  warn.textContent = `checking the genesis ${s.source}…`;
  retireVerifier();
  verifier = startVerifier(s);
  const worker = verifier;
  return new Promise((resolve) => {
    checkingGroup = {
      worker,
      done: (g) => {
        checkingGroup = null;
        busy();
        if (g) {
          showGroup(g, s.pinned, own);
          basis = `group ${g.groupId}, ${from}${s.pinned ? ' (the pinned group)' : ''}`;
        }
        resolve(g);
      },
    };
    busy();
  });
}

/** Stops the genesis check (and any certificate check waiting on it): nothing is checked after that. */
function stopGenesis(why: string): void {
  const c = checkingGroup;
  if (!c) return;
  setup = null;
  refusal = why;
  c.worker.terminate();
  if (verifier === c.worker) verifier = null;
  const r = running;
  if (r?.worker === c.worker) {
    running = null;
    r.done({ kind: 'bad', title: 'not checked', detail: why });
  }
  const warn = $('pin');
  warn.className = 'bad';
  warn.textContent = why;
  c.done(null);
}

/** Whether the person chose a genesis file: the node's genesis, if it comes after, is not taken. */
let chosenGenesis = false;

async function loadGroup(pinned: string | null): Promise<GroupSummary | null> {
  const r = await fetch('/v1/group', { headers: { accept: 'application/json' } });
  if (!r.ok) throw await failure(r);
  const body = await readLimited(r, MAX_GENESIS_BYTES, 'the genesis the node serves (/v1/group)');
  // A genesis file chosen while the node's was on its way is the one the person wants (it was replaced).
  if (chosenGenesis) return null;
  return useGenesis(
    { text: body, served: true, pinned, source: 'the node serves' },
    pinned
      ? 'the genesis this node serves'
      : 'the genesis this node serves, NOT pinned: a faulty node can serve a genesis of keys it holds, ' +
          'and its own certificates then verify; pin the group (?group=<id>) or choose your genesis file',
  );
}

/** A genesis larger than the largest the codec takes (a million balances, about 100 MB) is not read. */
const MAX_GENESIS_BYTES = 128 * 1024 * 1024;

/** A genesis file the person chose: certificates are checked against it from now on, not the node's. */
async function chooseGenesis(file: File): Promise<void> {
  if (file.size > MAX_GENESIS_BYTES) {
    const warn = $('pin');
    warn.className = 'bad';
    warn.textContent = `${file.name} is ${file.size.toLocaleString('en')} bytes, more than any genesis: not used`;
    return;
  }
  chosenGenesis = true;
  const g = await useGenesis(
    { text: await file.text(), served: false, pinned, source: `the file ${file.name} holds` },
    `the genesis file you chose (${file.name})`,
    true,
  );
  if (g) ready(g.groupId !== null);
}

/**
 * What went wrong loading the group and, at the last poll, the status: shown together, so that the status
 * poll (every 2 s) clearing its own error does not wipe the group's.
 */
const errors = { group: '', status: '' };
function showErrors(): void {
  text('status-error', [errors.group, errors.status].filter((e) => e !== '').join(' · '));
}

/** How long a status poll waits for the node's answer: one poll at a time, so a slow node is said to be. */
const STATUS_TIMEOUT_MS = 5000;

/** Each node's fee, earnings and withdrawals as this node's ledger has them (GET /v1/owners), as text cells only. */
async function loadOwners(): Promise<void> {
  const json = await getJson('/v1/owners', MAX_STATUS_BYTES, STATUS_TIMEOUT_MS);
  const list = (json as { owners?: unknown } | null)?.owners;
  if (!Array.isArray(list)) throw new Error('NOT_JSON: the answer to /v1/owners has no list of owners');
  $('owners').replaceChildren(
    ...list.map((o: Record<string, unknown>) => {
      const tr = document.createElement('tr');
      for (const v of [o.node, o.owner, o.fee, o.counted, o.earned, o.withdrawn, o.payable]) {
        const td = document.createElement('td');
        td.textContent = typeof v === 'string' || typeof v === 'number' ? String(v) : '?';
        tr.append(td);
      }
      return tr;
    }),
  );
}

async function loadStatus(): Promise<void> {
  try {
    const json = await getJson('/v1/status', MAX_STATUS_BYTES, STATUS_TIMEOUT_MS);
    if (json === null || typeof json !== 'object' || Array.isArray(json))
      throw new Error('NOT_JSON: the answer to /v1/status is not a JSON object');
    const s = json as Record<string, unknown>;
    text('node-id', s.id as number);
    text('view', `${s.view ?? '–'}${s.viewChanging ? ' (changing view)' : ''}`);
    text('primary', s.primary as number);
    // A node fetching batches from its peers (since 2026-12-07) says so, and how far behind when known.
    const behind =
      Number.isSafeInteger(s.behindBy) && (s.behindBy as number) > 0 ? `: ${s.behindBy} behind` : '';
    text('executed', `${s.lastExecuted}${s.catchingUp === true ? ` (catching up${behind})` : ''}`);
    text('rate', s.executedPerSecond as number);
    text('pending', s.pendingRequests as number);
    text('waiting', s.waitingForCertificates as number);
    text('durability', s.durability as string);
    await loadOwners();
    errors.status = '';
  } catch (e) {
    errors.status = `status: ${(e as Error).message}`;
  }
  showErrors();
}

/**
 * The most of a verdict's detail shown (the largest certificate's VALID detail is about 40,000 characters).
 * A reason may quote the certificate: a 20 MB field name pasted came back whole in "unknown field", and
 * laying it out held the page's thread 13 s (headless Chromium, 2-core review machine, 2026-12-07).
 */
const MAX_DETAIL_CHARS = 256 * 1024;

function show(r: Shown): void {
  const v = $('verdict');
  v.className = r.kind;
  v.textContent = r.title;
  const over = r.detail.length - MAX_DETAIL_CHARS;
  text(
    'verdict-detail',
    over > 0
      ? `${r.detail.slice(0, MAX_DETAIL_CHARS)}… (${over.toLocaleString('en')} more characters not shown)`
      : r.detail,
  );
  // A verdict the verifier gave names the genesis it was checked against; "not checked" and progress none.
  $('verdict-basis').textContent =
    r.kind === 'ok' || r.title.startsWith('INVALID') ? `checked against ${basis}` : '';
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
 * The most text put in the paste box. Chromium lays a textarea out again for all of its text: 18.5 MB put
 * there held the page's thread 8.5 s (4.7 MB pasted: 5 s; 1 MB: 0.3 s), headless on the 2-core review
 * machine, 2026-12-06. Longer text (pasted, dropped, chosen as a file, fetched) is held here instead and
 * only its size shown; typing in the box replaces it.
 */
const MAX_SHOWN_CHARS = 256 * 1024;

/** Text to check that is not in the paste box (longer than MAX_SHOWN_CHARS), and where it came from. */
let held: { text: string; from: string } | null = null;

/** Puts text to check in the paste box, or holds it (saying so) where it is too long to show. */
function setInput(text: string, from: string): void {
  const box = $('cert-json') as HTMLTextAreaElement;
  const note = $('held');
  if (text.length <= MAX_SHOWN_CHARS) {
    held = null;
    note.hidden = true;
    box.value = text;
    return;
  }
  held = { text, from };
  box.value = '';
  note.hidden = false;
  note.textContent =
    `${from}: ${text.length.toLocaleString('en')} characters, too many to show here; Verify checks ` +
    'them (typing or pasting in the box replaces them)';
}

/** A file dropped or chosen: read (unless longer than any certificate) and put in the box or held. */
async function takeFile(file: File): Promise<void> {
  ask();
  if (file.size > MAX_PASTE_CHARS) {
    show({
      kind: 'bad',
      title: 'not checked',
      detail:
        `${file.name} is ${file.size.toLocaleString('en')} bytes; this page checks up to ` +
        `${MAX_PASTE_CHARS.toLocaleString('en')} characters (the largest certificate is about 18.5 million as compact JSON)`,
    });
    return;
  }
  show({ kind: 'note', title: 'nothing checked yet', detail: '' });
  setInput(await file.text(), file.name);
}

/**
 * Pasting and dropping: long text goes around the box (setInput), and a file dropped anywhere on the page
 * is read as the certificate (Chromium's default opens it in place of the page).
 */
function wireInput(): void {
  const box = $('cert-json') as HTMLTextAreaElement;
  box.addEventListener('paste', (e) => {
    const t = e.clipboardData?.getData('text/plain') ?? '';
    if (t.length <= MAX_SHOWN_CHARS) return;
    e.preventDefault();
    setInput(t, 'pasted text');
  });
  box.addEventListener('input', () => {
    held = null;
    $('held').hidden = true;
  });
  document.addEventListener('dragover', (e) => e.preventDefault());
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    const file = e.dataTransfer?.files[0];
    if (file) void takeFile(file);
    else setInput(e.dataTransfer?.getData('text/plain') ?? '', 'dropped text');
  });
  const chooser = $('cert-file') as HTMLInputElement;
  chooser.addEventListener('change', () => {
    const file = chooser.files?.[0];
    chooser.value = '';
    if (file) void takeFile(file);
  });
}

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

/**
 * Stops the check in progress, with its worker, unless that worker is still checking the genesis (its
 * answer to this check, after the genesis, is then dropped); its caller gets null.
 */
function stopCheck(): void {
  const r = running;
  if (!r) return;
  running = null;
  if (r.worker !== checkingGroup?.worker) {
    r.worker.terminate();
    if (r.worker === verifier) verifier = null;
  }
  r.done(null);
  busy();
}

/** How far the check of a list of certificates is ("120 of 500"), from its worker; null before that. */
let listProgress: string | null = null;

/** When the work now shown in progress began (the genesis check, a certificate check), and its timer. */
let busySince = 0;
let busyTimer: ReturnType<typeof setInterval> | null = null;

/**
 * Shows what the worker is doing and for how long, with a button to cancel it, or hides that where it is
 * idle. Called whenever a check starts or ends.
 */
function busy(): void {
  const what = checkingGroup
    ? 'checking the genesis'
    : running
      ? listProgress === null
        ? 'verifying the certificate'
        : `verifying the certificates (${listProgress})`
      : null;
  const box = $('progress');
  if (!what) {
    listProgress = null;
    box.hidden = true;
    if (busyTimer !== null) clearInterval(busyTimer);
    busyTimer = null;
    return;
  }
  const tick = () => {
    text('progress-text', `${what}… ${Math.floor((Date.now() - busySince) / 1000)} s`);
  };
  if (busyTimer === null) {
    busySince = Date.now();
    busyTimer = setInterval(tick, 1000);
  }
  tick();
  box.hidden = false;
}

/** The cancel button: stops the genesis check (nothing is checked after that) or the certificate check. */
function cancel(): void {
  if (checkingGroup) {
    stopGenesis(
      'the genesis check was cancelled: no certificate is checked against it (reload the page to check it again)',
    );
    ready(false);
  } else if (running) {
    ask();
    show({ kind: 'bad', title: 'not checked', detail: 'cancelled' });
  }
}

/** The next check starts a fresh worker; one still checking answers first (what it was asked), then ends. */
function retireVerifier(): void {
  if (verifier && running?.worker !== verifier) verifier.terminate();
  verifier = null;
}

function startVerifier(s: VerifierSetup): Worker {
  const w = newVerifierWorker();
  w.onmessage = (e: MessageEvent<VerifierAnswer>) => {
    const a = e.data;
    if (a.kind === 'progress') {
      if (running?.worker === w && running.id === a.id) {
        listProgress = `${a.done.toLocaleString('en')} of ${a.total.toLocaleString('en')}`;
        busy();
      }
      return;
    }
    if (a.kind === 'group') {
      // (A worker started later, after a check was stopped, checks the same genesis again: its answer is known.)
      if (checkingGroup?.worker === w) checkingGroup.done(a.group);
      return;
    }
    const r = running;
    if (r?.worker !== w || r.id !== a.id) return;
    running = null;
    if (w !== verifier) w.terminate();
    r.done(a.shown);
    busy();
  };
  // The worker did not load, or threw: said as the verdict, and the next check starts a fresh one.
  w.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    const why = `the verifier stopped: ${e.message || 'no reason given'}`;
    if (checkingGroup?.worker === w) {
      stopGenesis(why);
      ready(false);
      return;
    }
    w.terminate();
    if (w === verifier) verifier = null;
    const r = running;
    if (r?.worker !== w) return;
    running = null;
    r.done({ kind: 'bad', title: 'not checked', detail: why });
    busy();
  };
  w.postMessage(s);
  return w;
}

/** The verdict on certificate JSON text, from the worker; null if a later check stopped this one. */
function checkInWorker(id: number, text: string, expected?: string): Promise<Shown | null> {
  const s = setup;
  if (!s) return Promise.resolve({ kind: 'bad', title: 'not checked', detail: refusal ?? '' });
  const w = (verifier ??= startVerifier(s));
  return new Promise((resolve) => {
    running = { id, worker: w, done: resolve };
    w.postMessage({ id, text, expected } satisfies VerifierJob);
    busy();
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
    // A node that has not begun to answer 10 s after that is given up on ("fetching…" stayed for good).
    body = await getJson(
      `/v1/certificates/${id}?wait=${FETCH_WAIT_MS}`,
      MAX_PASTE_CHARS,
      FETCH_WAIT_MS + 10_000,
      true,
    );
  } catch (e) {
    if (mine !== asked) return;
    show({ kind: 'bad', title: 'not checked', detail: (e as Error).message });
    return;
  }
  if (mine !== asked) return;
  const json = JSON.stringify(body, null, 2);
  setInput(json, 'the fetched certificate');
  await verifyText(mine, json, id);
}

function verifyPasted(): void {
  const mine = ask();
  const json = held?.text ?? ($('cert-json') as HTMLTextAreaElement).value;
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

function ready(ok: boolean): void {
  document.body.dataset.ready = ok ? 'true' : 'error';
}
// In a worker (no document) this script is the verifier; in the page, the page.
const embedded = typeof document === 'undefined' ? null : document.getElementById('genesis-json');
const pinned =
  typeof location === 'undefined'
    ? null
    : (new URLSearchParams(location.search).get('group')?.toLowerCase() ?? null);
if (typeof document === 'undefined') serveVerifier();
else if (embedded) {
  $('verify-btn').addEventListener('click', verifyPasted);
  $('cancel-btn').addEventListener('click', cancel);
  wireInput();
  // The offline page (`dropbear verify-page`): its genesis is in the file, and it asks no node anything.
  void useGenesis(
    { text: embedded.textContent ?? '', served: false, pinned, source: 'this page holds' },
    'the genesis this page holds',
  ).then((g) => ready(g?.groupId != null));
} else {
  $('verify-btn').addEventListener('click', verifyPasted);
  $('fetch-btn').addEventListener('click', () => void fetchAndVerify());
  const chooser = $('genesis-file') as HTMLInputElement;
  chooser.addEventListener('change', () => {
    const file = chooser.files?.[0];
    chooser.value = '';
    if (file) void chooseGenesis(file);
  });
  $('cancel-btn').addEventListener('click', cancel);
  wireInput();
  // The group until it loads (the node down, or answering an error, when the page asked: asked again at
  // every poll), and the status every 2 s, one poll after the other.
  let group: 'asking' | 'loaded' | 'failed' = 'asking';
  const tryGroup = () =>
    loadGroup(pinned).then(
      (g) => {
        group = 'loaded';
        errors.group = '';
        showErrors();
        if (!chosenGenesis) ready(g?.groupId != null);
      },
      (e: Error) => {
        group = 'failed';
        errors.group = `group: ${e.message}`;
        showErrors();
        if (!chosenGenesis) ready(false);
      },
    );
  void tryGroup();
  const poll = async () => {
    if (group === 'failed' && !chosenGenesis) {
      group = 'asking';
      void tryGroup();
    }
    await loadStatus();
    setTimeout(() => void poll(), 2000);
  };
  void poll();
}
