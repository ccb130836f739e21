/** The dashboard's page: static markup; web/app.ts (served at /dashboard/app.js) fills it in. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Dropbear dashboard</title>
<style>
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
</style>
</head>
<body>
<h1>Dropbear group <span id="group-name">…</span></h1>
<p id="pin" class="note">loading the group…</p>
<dl>
  <dt>group id</dt><dd id="group-id">…</dd>
  <dt>size</dt><dd id="group-size">…</dd>
</dl>
<h2>This node</h2>
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
<h2>Models</h2>
<table>
  <thead><tr><th>node</th><th>model (genesis)</th><th>digest now</th><th>version</th></tr></thead>
  <tbody id="models"></tbody>
</table>
<h2>Verify a certificate here, in the browser</h2>
<p class="note">Checked against the genesis above with the verifier of <code>dropbear verify</code>: a valid
certificate carries the receipt signatures of a quorum of the group's nodes. This page and its script come
from the node you opened it on; to trust no node, run <code>dropbear verify</code> on the certificate.</p>
<label>request id <input id="request-id" placeholder="64 hex characters"></label>
<button id="fetch-btn" type="button">Fetch from this node and verify</button>
<p><label>or paste a certificate (JSON)<br><textarea id="cert-json" spellcheck="false"></textarea></label></p>
<button id="verify-btn" type="button">Verify</button>
<p id="verdict" class="note">nothing checked yet</p>
<pre id="verdict-detail"></pre>
<script type="module" src="/dashboard/app.js"></script>
</body>
</html>
`;
