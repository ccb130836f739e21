/**
 * A node's HTTP API over HTTPS (`api.tls` in its config), with a certificate of a private CA made with openssl
 * (test/support/tls.ts): three nodes of a four-node group in this process, each serving HTTPS. A request is
 * certified through the CLI trusting the CA by NODE_EXTRA_CA_CERTS; without the CA the CLI says the
 * certificate is not trusted and how to trust it; plain HTTP to the port is answered HTTPS_REQUIRED; the
 * connection limit counts TLS connections as they close; bad `api.tls` files stop the start with their codes.
 */
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGroup } from '../../src/cli/group.ts';
import { fetchNodeJson } from '../../src/cli/http.ts';
import { buildApi, CLOSE_GRACE_MS } from '../../src/node/api.ts';
import { loadNodeConfig } from '../../src/node/config.ts';
import { type RunningNode, startNode } from '../../src/node/run.ts';
import { STANDIN_MODEL, standInInput } from '../../src/node/standin-backend.ts';
import { DropbearError } from '../../src/protocol/index.ts';
import { runCli, runCliInProcess } from '../cli/run-cli.ts';
import { haveOpenssl, issuedCert, selfSignedCert } from '../support/tls.ts';
import { openLoneHost } from './lone-host.ts';

const root = mkdtempSync(join(tmpdir(), 'dropbear-api-tls-'));
const group = join(root, 'group');
const nodes: RunningNode[] = [];
let ca: { keyFile: string; certFile: string };
let leaf: { keyFile: string; certFile: string };
/** Node 0 takes this many API connections at once (api_limits.maxConnections). */
const MAX_CONNECTIONS = 3;

const configFile = (id: number) => join(group, `node-${id}.json`);
const readConfig = (id: number) => JSON.parse(readFileSync(configFile(id), 'utf8'));
/** Node `id`'s API URL as group.json gives it to clients. */
const groupApi = (id: number): string =>
  JSON.parse(readFileSync(join(group, 'group.json'), 'utf8')).nodes[id].api;

beforeAll(async () => {
  if (!haveOpenssl) return;
  ca = selfSignedCert(root, 'ca');
  leaf = issuedCert(root, 'api', ca, {}, ['IP:127.0.0.1', 'DNS:localhost']);
  await initGroup({
    dir: group,
    nodes: 4,
    models: Array(4).fill(STANDIN_MODEL),
    nodeConfig: { log: { level: 'silent' } },
  });
  // Each config serves its API over HTTPS; group.json, where clients find the API URLs, says https.
  for (let id = 0; id < 4; id++) {
    const c = readConfig(id);
    c.api.tls = { key: leaf.keyFile, cert: leaf.certFile };
    if (id === 0) c.api_limits = { maxConnections: MAX_CONNECTIONS };
    writeFileSync(configFile(id), JSON.stringify(c));
  }
  const g = JSON.parse(readFileSync(join(group, 'group.json'), 'utf8'));
  for (const n of g.nodes) n.api = n.api.replace(/^http:/, 'https:');
  writeFileSync(join(group, 'group.json'), JSON.stringify(g));
  // A quorum (3 of 4, f = 1); node 3's config is left for the start failures below.
  for (let id = 0; id < 3; id++) nodes.push(await startNode(configFile(id)));
}, 60_000);

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  rmSync(root, { recursive: true, force: true });
});

/** GET `url` over HTTPS trusting the test CA, on a connection of `agent` (default: a new one, closed after). */
function get(url: string, agent?: HttpsAgent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca: readFileSync(ca.certFile), agent: agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe.skipIf(!haveOpenssl)('the HTTP API over HTTPS (api.tls)', () => {
  it('serves HTTPS, and the node says https where it gives its API URL', async () => {
    const url = nodes[0].apiUrl;
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const r = await get(`${url}/v1/status`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toHaveProperty('lastExecuted');
  });

  it('certifies a request sent over HTTPS by the CLI, trusting the private CA by NODE_EXTRA_CA_CERTS', async () => {
    const input = join(root, 'input.bin');
    writeFileSync(input, standInInput(7));
    const ran = await runCli(['infer', '--group', group, '--send-to', '3', input], 60_000, undefined, {
      NODE_EXTRA_CA_CERTS: ca.certFile,
    });
    expect(ran.stderr).toBe('');
    expect(ran.code).toBe(0);
    expect(ran.stdout).toMatch(/certified: .*\(verified against the genesis\)/);
  }, 90_000);

  it('without the CA, the CLI says the certificate is not trusted, and how to trust it', async () => {
    const url = `${nodes[0].apiUrl}/v1/status`;
    const e = await fetchNodeJson(url, 5000).then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(DropbearError);
    expect((e as DropbearError).code).toBe('NODE_UNTRUSTED');
    expect((e as DropbearError).message).toContain(url);
    expect((e as DropbearError).message).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE.*NODE_EXTRA_CA_CERTS/);
    // `infer` (through the SDK) says the same per image; nothing reached a node.
    const input = join(root, 'untrusted.bin');
    writeFileSync(input, standInInput(8));
    const ran = await runCliInProcess(['infer', '--group', group, input]);
    expect(ran.code).toBe(2);
    expect(ran.stderr).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE.*\(if a private CA .*NODE_EXTRA_CA_CERTS=/);
  });

  it('answers plain HTTP to its port 400 HTTPS_REQUIRED, in plain HTTP, naming the https URL', async () => {
    const port = new URL(nodes[0].apiUrl).port;
    const res = await fetch(`http://127.0.0.1:${port}/v1/status`);
    expect(res.status).toBe(400);
    expect(res.headers.get('connection')).toBe('close');
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('HTTPS_REQUIRED');
    expect(body.error.message).toMatch(/https:\/\//);
    // The CLI reports it with the node's code and message (not "nothing answered").
    const e = await fetchNodeJson(`http://127.0.0.1:${port}/v1/status`, 5000).then(
      (a) => a,
      (x: unknown) => x,
    );
    expect(e).toMatchObject({ status: 400, body: { error: { code: 'HTTPS_REQUIRED' } } });
    // And the node still serves HTTPS.
    expect((await get(`${nodes[0].apiUrl}/healthz`)).status).toBe(200);
  });

  it('counts TLS connections against api_limits.maxConnections, each freed as it closes', async () => {
    const url = `${nodes[0].apiUrl}/healthz`;
    // More connections than the limit, one after another: each is freed when it closes.
    for (let i = 0; i < MAX_CONNECTIONS * 2; i++) expect((await get(url)).status).toBe(200);
    // The limit held open (keep-alive): one more is closed unanswered (a 503 would need a handshake first).
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: MAX_CONNECTIONS });
    try {
      const held = await Promise.all(Array.from({ length: MAX_CONNECTIONS }, () => get(url, agent)));
      expect(held.map((r) => r.status)).toEqual(Array(MAX_CONNECTIONS).fill(200));
      await expect(get(url)).rejects.toThrow(/ECONNRESET|socket hang up|disconnected/);
    } finally {
      agent.destroy();
    }
    // Once they close, it serves again (polled: the server sees the closes a moment later).
    const deadline = performance.now() + 10_000;
    for (;;) {
      const r = await get(url).catch(() => null);
      if (r?.status === 200) break;
      if (performance.now() > deadline) throw new Error('still refused 10 s after the connections closed');
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  /** The start of node 3 with its config's api.tls changed by `edit`: the error it stops with. */
  async function startFailure(edit: (tls: Record<string, string>) => void): Promise<DropbearError> {
    const c = readConfig(3);
    edit(c.api.tls);
    const file = join(group, 'node-3-edited.json');
    writeFileSync(file, JSON.stringify(c));
    try {
      const n = await startNode(file);
      await n.stop();
    } catch (e) {
      return e as DropbearError;
    }
    throw new Error('started');
  }

  it('refuses to start on api.tls files that cannot serve, each with its code, naming api.tls', async () => {
    const missing = await startFailure((t) => {
      t.cert = join(root, 'no-such.crt');
    });
    expect(missing.code).toBe('TLS_FILE_UNREADABLE');
    expect(missing.message).toMatch(/^api\.tls: .*no-such\.crt/);

    const other = issuedCert(root, 'other', ca, {}, ['IP:127.0.0.1']);
    const mismatch = await startFailure((t) => {
      t.cert = other.certFile;
    });
    expect(mismatch.code).toBe('TLS_KEY_MISMATCH');
    expect(mismatch.message).toMatch(/^api\.tls: /);

    chmodSync(other.keyFile, 0o644);
    const open = await startFailure((t) => {
      t.key = other.keyFile;
      t.cert = other.certFile;
    });
    expect(open.code).toBe('KEY_FILE_PERMISSIONS');
    expect(open.message).toContain(other.keyFile);

    const bad = await startFailure((t) => {
      (t as Record<string, unknown>).ca = ca.certFile;
    });
    expect(bad.code).toBe('CONFIG_INVALID');
    expect(bad.message).toMatch(/"api.tls.ca" is not an api.tls field/);
  });

  it('group node-config writes api.tls for an https API URL, checking the files and the host they name', async () => {
    const nc = (out: string, ...more: string[]) =>
      runCliInProcess([
        'group',
        'node-config',
        '--group',
        group,
        '--key',
        join(group, 'keys', 'node-3.json'),
        '--data',
        join(root, 'data-3'),
        '--out',
        join(root, out),
        ...more,
      ]);
    const ok = await nc('nc-tls.json', '--api-tls-key', leaf.keyFile, '--api-tls-cert', leaf.certFile);
    expect(ok.code).toBe(0);
    expect(ok.stdout).not.toMatch(/note:/);
    const cfg = loadNodeConfig(join(root, 'nc-tls.json'));
    expect(cfg.apiTls).toEqual({ key: leaf.keyFile, cert: leaf.certFile });
    expect(cfg.api.port).toBe(Number(new URL(groupApi(3)).port));

    // Without the files: a note says the node would serve plain HTTP where clients speak https.
    const plain = await nc('nc-plain.json');
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/note: .*https:\/\/127\.0\.0\.1:\d+.*plain HTTP.*--api-tls-key/);
    expect(loadNodeConfig(join(root, 'nc-plain.json')).apiTls).toBeNull();

    // A certificate for another host: written, with a note that clients will refuse it.
    const elsewhere = issuedCert(root, 'elsewhere', ca, {}, ['DNS:example.org']);
    const wrongHost = await nc(
      'nc-host.json',
      '--api-tls-key',
      elsewhere.keyFile,
      '--api-tls-cert',
      elsewhere.certFile,
    );
    expect(wrongHost.code).toBe(0);
    expect(wrongHost.stdout).toMatch(
      /note: the certificate .*elsewhere\.crt does not name 127\.0\.0\.1.*DNS:example\.org/,
    );

    // Files the node would refuse, refused now with the node's code; one file alone is a usage error.
    const mismatch = await nc(
      'nc-bad.json',
      '--api-tls-key',
      leaf.keyFile,
      '--api-tls-cert',
      elsewhere.certFile,
    );
    expect(mismatch.code).toBe(2);
    expect(mismatch.stderr).toMatch(/TLS_KEY_MISMATCH/);
    const alone = await nc('nc-alone.json', '--api-tls-key', leaf.keyFile);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toMatch(/CLI_USAGE.*go together/);
    expect(existsSync(join(root, 'nc-bad.json')) || existsSync(join(root, 'nc-alone.json'))).toBe(false);

    // An http API URL: the files are refused (clients would speak plain HTTP to an HTTPS port).
    const httpGroup = join(root, 'http-group');
    mkdirSync(httpGroup);
    copyFileSync(join(group, 'genesis.json'), join(httpGroup, 'genesis.json'));
    const g = JSON.parse(readFileSync(join(group, 'group.json'), 'utf8'));
    for (const n of g.nodes) {
      n.api = n.api.replace(/^https:/, 'http:');
      delete n.config;
    }
    writeFileSync(join(httpGroup, 'group.json'), JSON.stringify(g));
    const http = await runCliInProcess([
      'group',
      'node-config',
      '--group',
      httpGroup,
      '--key',
      join(group, 'keys', 'node-3.json'),
      '--data',
      join(root, 'data-3'),
      '--out',
      join(root, 'nc-http.json'),
      '--api-tls-key',
      leaf.keyFile,
      '--api-tls-cert',
      leaf.certFile,
    ]);
    expect(http.code).toBe(2);
    expect(http.stderr).toMatch(/CLI_USAGE.*http:\/\/127\.0\.0\.1:\d+.*plain HTTP/);
  });
});

describe.skipIf(!haveOpenssl)('a connection still in its TLS handshake', () => {
  /** How long the server keeps a TCP connection to its port that sends nothing (-1: still open after `waitMs`). */
  async function silentLife(tls: boolean, requestTimeoutMs: number, waitMs: number): Promise<number> {
    const lone = openLoneHost('api-tls-silent-', 7);
    const app = buildApi(lone.host, {
      requestTimeoutMs,
      maxConnections: 1,
      ...(tls ? { tls: { key: readFileSync(leaf.keyFile), cert: readFileSync(leaf.certFile) } } : {}),
    });
    try {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const port = (app.server.address() as { port: number }).port;
      const t0 = performance.now();
      return await new Promise<number>((resolve) => {
        const s = connect(port, '127.0.0.1');
        s.on('data', () => {});
        s.on('error', () => {});
        s.on('close', () => resolve(performance.now() - t0));
        setTimeout(() => {
          s.destroy();
          resolve(-1);
        }, waitMs);
      });
    } finally {
      await app.close();
      lone.close();
    }
  }

  it('a connection that never begins its handshake holds its slot no longer than one that never sends a request', async () => {
    // Plain HTTP: a silent connection is closed by the request (headers) timeout.
    const plain = await silentLife(false, 500, 5000);
    expect(plain).toBeGreaterThan(0);
    expect(plain).toBeLessThan(3000);
    // Under TLS the same connection waited for Node's handshake timeout (120 s), holding a connection slot
    // (api_limits.maxConnections, and the address's share) all that time whatever requestTimeoutMs said.
    const tls = await silentLife(true, 500, 5000);
    expect(tls).toBeGreaterThan(0);
    expect(tls).toBeLessThan(3000);
  }, 30_000);

  it('close() cuts a connection still in its handshake after the grace, as it cuts one with no request', async () => {
    const lone = openLoneHost('api-tls-close-', 7);
    // The default request timeout (60 s), so the handshake's own limit does not end the connection first.
    const app = buildApi(lone.host, {
      tls: { key: readFileSync(leaf.keyFile), cert: readFileSync(leaf.certFile) },
    });
    let silent: ReturnType<typeof connect> | undefined;
    try {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const port = (app.server.address() as { port: number }).port;
      const sock = connect(port, '127.0.0.1');
      silent = sock;
      sock.on('error', () => {});
      await new Promise((r) => sock.once('connect', r));
      // Let the server accept it.
      await new Promise((r) => setTimeout(r, 100));
      const t0 = performance.now();
      const closed = await Promise.race([
        app.close().then(() => performance.now() - t0),
        new Promise<number>((r) => setTimeout(() => r(-1), CLOSE_GRACE_MS + 4000)),
      ]);
      // Node's closeAllConnections knows only connections past their handshake: close() waited for this one
      // until the handshake's timeout, past a supervisor's 10 s before SIGKILL.
      expect(closed).toBeGreaterThan(0);
      expect(closed).toBeLessThan(CLOSE_GRACE_MS + 2000);
    } finally {
      silent?.destroy();
      await app.close().catch(() => {});
      lone.close();
    }
  }, 30_000);
});
