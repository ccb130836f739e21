/**
 * The dashboard's pages: static markup that web/app.ts fills in. `DASHBOARD_HTML` is what a node serves
 * at /dashboard (its script at /dashboard/app.js); `offlinePage` is one self-contained file with the script
 * and a genesis inside, for checking certificates in a browser without asking any node (`dropbear
 * verify-page`).
 */
import { createHash } from 'node:crypto';

const STYLE = `<style>
  body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 60rem; padding: 0 1rem; color: #1d232a; }
  h1 { font-size: 1.4rem; margin-bottom: .2rem; }
  h2 { font-size: 1.05rem; margin: 1.6rem 0 .4rem; }
  code, .mono, td, textarea, pre { font-family: ui-monospace, monospace; font-size: 12.5px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #dde2e7; word-break: break-all; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
  dt { color: #56606b; }
  dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
  textarea { width: 100%; height: 10rem; box-sizing: border-box; }
  input { width: 36rem; max-width: 100%; font-family: ui-monospace, monospace; }
  button { margin: .4rem .4rem .4rem 0; }
  .ok { color: #126b2f; font-weight: 600; }
  .bad { color: #a4161a; font-weight: 600; }
  .note { color: #56606b; }
  pre { background: #f4f6f8; padding: .6rem; white-space: pre-wrap; word-break: break-all; }
</style>`;

const GROUP = `<h1>Dropbear group <span id="group-name">…</span></h1>
<p id="pin" class="note">loading the group…</p>
<dl>
  <dt>group id</dt><dd id="group-id">…</dd>
  <dt>size</dt><dd id="group-size">…</dd>
</dl>`;

const NODE = `<h2>This node</h2>
<dl>
  <dt>node</dt><dd id="node-id">…</dd>
  <dt>view (primary)</dt><dd><span id="view">…</span> (<span id="primary">…</span>)</dd>
  <dt>last executed batch</dt><dd id="executed">…</dd>
  <dt>requests executed per second</dt><dd id="rate">…</dd>
  <dt>requests pending</dt><dd id="pending">…</dd>
  <dt>waiting for certificates</dt><dd id="waiting">…</dd>
  <dt>durability</dt><dd id="durability">…</dd>
</dl>
<p id="status-error" class="bad"></p>
<h3>Owners</h3>
<p class="note">Each node's fee now, the fees its owner earned, withdrew and may still withdraw, in this node's ledger (<code>GET /v1/owners</code>;
the node's word, not checked here).</p>
<table>
  <thead><tr><th>node</th><th>owner</th><th>fee</th><th>votes counted</th><th>earned</th><th>withdrawn</th><th>payable</th></tr></thead>
  <tbody id="owners"></tbody>
</table>`;

function models(title: string): string {
  return `<h2>${title}</h2>
<table>
  <thead><tr><th>node</th><th>model (genesis)</th><th>digest</th><th>version</th></tr></thead>
  <tbody id="models"></tbody>
</table>`;
}

function verify(online: boolean): string {
  const intro = online
    ? `Checked against the genesis above with the verifier of <code>dropbear verify</code>: a valid
certificate carries the receipt signatures of a quorum of the group's nodes. This page and its script come
from the node you opened it on; to trust no node, run <code>dropbear verify</code> on the certificate, or
check it in the file <code>dropbear verify-page</code> writes (it asks no node anything).`
    : `Checked against the genesis inside this file with the verifier of <code>dropbear verify</code>, in this
browser: no node is asked anything. A valid certificate carries the receipt signatures of a quorum of the
group's nodes.`;
  const fetchRow = online
    ? `<label>request id <input id="request-id" placeholder="64 hex characters"></label>
<button id="fetch-btn" type="button">Fetch from this node and verify</button>
<p><label>or paste a certificate (JSON)<br>`
    : '<p><label>paste a certificate (JSON)<br>';
  return `<h2>Verify a certificate here, in the browser</h2>
<p class="note">${intro}</p>
${fetchRow}<textarea id="cert-json" spellcheck="false"></textarea></label></p>
<p class="note"><label>or drop a certificate file on this page, or choose one <input id="cert-file" type="file" accept=".json,application/json"></label></p>
<p id="held" class="note" hidden></p>
<button id="verify-btn" type="button">Verify</button>
<p id="progress" class="note" hidden><span id="progress-text"></span> <button id="cancel-btn" type="button">Cancel</button></p>
<p id="verdict" class="note">nothing checked yet</p>
<p id="verdict-basis" class="note"></p>
<pre id="verdict-detail"></pre>`;
}

function page(title: string, body: string, head = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">${head}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
${STYLE}
</head>
<body>
${body}
</body>
</html>
`;
}

export const DASHBOARD_HTML = page(
  'Dropbear dashboard',
  `${GROUP}
<p class="note"><label>check certificates against a genesis file of your own instead of this node's
<input id="genesis-file" type="file" accept=".json,application/json"></label></p>
${NODE}
${models('Models')}
${verify(true)}
<script type="module" src="/dashboard/app.js"></script>`,
);

/**
 * Script text that cannot end its <script> element early: `</script` written as `<\/script` (the same in a
 * JavaScript string, template or regular expression). A `<!--` (which, followed by `<script`, would
 * change how the browser reads the rest) is refused rather than rewritten.
 */
function scriptSafe(js: string): string {
  if (js.includes('<!--')) throw new Error('the dashboard script holds "<!--"; it cannot be inlined as is');
  return js.replace(/<\/(script)/gi, '<\\/$1');
}

/** One HTML file that checks certificates of the group `genesisJson` describes, offline. */
export function offlinePage(script: string, genesisJson: unknown): string {
  const inline = scriptSafe(script);
  // A file has no headers, so its content security policy is a <meta>: its own script only (by hash),
  // its verifier worker from the blob it makes, and no fetch, image or frame at all. "Asks no node
  // anything" is then the browser's rule, whatever text it is given, not only this script's habit.
  const hash = createHash('sha256').update(inline).digest('base64');
  const csp =
    `default-src 'none'; script-src 'sha256-${hash}'; worker-src blob:; style-src 'unsafe-inline'; ` +
    "base-uri 'none'; form-action 'none'";
  return page(
    'Dropbear certificate check (offline)',
    `${GROUP}
${models('Models at genesis')}
${verify(false)}
<script type="application/json" id="genesis-json">${JSON.stringify(genesisJson).replace(/</g, '\\u003c')}</script>
<script type="module">${inline}</script>`,
    `\n<meta http-equiv="Content-Security-Policy" content="${csp}">`,
  );
}
