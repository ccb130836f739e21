/**
 * The SDK and a node whose TLS certificate this process does not trust (a self-signed one, made with openssl:
 * test/support/tls.ts): the node is reported as such, NODE_UNTRUSTED with OpenSSL's reason, as the CLI
 * reports it, not as a generic NETWORK failure; and the request never reached it (the certificate is checked
 * before anything is sent), so a round every other node turned away as OVERLOADED is OVERLOADED (sent again
 * after a backoff), not NO_CERTIFICATE "a node may hold it" as for a node that may have taken the request.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DropbearClient, DropbearError } from '../../src/client/index.ts';
import { encodeTensorInput } from '../../src/inference/preprocess.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { haveOpenssl, selfSignedCert } from '../support/tls.ts';

const G = makeGroup(4, 1, 7);
const root = mkdtempSync(join(tmpdir(), 'dropbear-sdk-untrusted-'));
const servers: Server[] = [];
/** POSTs that reached the HTTPS node (none should: its certificate is not trusted). */
let reachedUntrusted = 0;
let untrusted = '';
const busy: string[] = [];

/** Every request turned away as a full node does: 503 OVERLOADED. */
function overloaded(_req: IncomingMessage, res: ServerResponse): void {
  res
    .writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' })
    .end(JSON.stringify({ error: { code: 'OVERLOADED', message: 'full' } }));
}

async function listen(s: Server): Promise<number> {
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

beforeAll(async () => {
  if (!haveOpenssl) return;
  const cert = selfSignedCert(root, 'node0');
  const tls = createHttpsServer(
    { key: readFileSync(cert.keyFile), cert: readFileSync(cert.certFile) },
    (req, res) => {
      reachedUntrusted++;
      overloaded(req, res);
    },
  );
  untrusted = `https://127.0.0.1:${await listen(tls)}`;
  for (let i = 0; i < 3; i++) busy.push(`http://127.0.0.1:${await listen(createServer(overloaded))}`);
});

afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  rmSync(root, { recursive: true, force: true });
});

function client(nodes: string[]): DropbearClient {
  return new DropbearClient({
    genesis: G.genesis,
    nodes: nodes.map((api, id) => ({ id, api })),
    key: G.client,
    timeoutMs: 5000,
    hedgeMs: Number.POSITIVE_INFINITY,
    overloadRetry: false,
  });
}

let n = 0;
function input(): Uint8Array {
  const data = new Uint8Array(12);
  data[0] = n++ & 0xff;
  data[1] = Math.floor(Math.random() * 256);
  return encodeTensorInput({ dtype: 'uint8', dims: [2, 2, 3], data });
}

const UNTRUSTED_LINE =
  /node 0: NODE_UNTRUSTED its TLS certificate is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\)/;

describe.skipIf(!haveOpenssl)('a node whose TLS certificate is not trusted', () => {
  it('infer: reported as NODE_UNTRUSTED, and as a node the request never reached (the others full: OVERLOADED)', async () => {
    const e = await client([untrusted, ...busy])
      .infer(input())
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DropbearError);
    expect((e as DropbearError).message).toMatch(UNTRUSTED_LINE);
    expect((e as DropbearError).message).not.toMatch(/node 0: NETWORK/);
    expect((e as DropbearError).code).toBe('OVERLOADED');
    expect(reachedUntrusted).toBe(0);
  });

  it('inferBatch: the same, per item', async () => {
    const out = await client([untrusted, ...busy]).inferBatch([input(), input()]);
    for (const x of out) {
      expect(x).toBeInstanceOf(DropbearError);
      expect((x as DropbearError).message).toMatch(UNTRUSTED_LINE);
      expect((x as DropbearError).code).toBe('OVERLOADED');
    }
    expect(reachedUntrusted).toBe(0);
  });

  it('every node untrusted: NO_CERTIFICATE naming each as NODE_UNTRUSTED', async () => {
    const e = await client([untrusted, untrusted, untrusted, untrusted])
      .infer(input())
      .catch((x: unknown) => x);
    expect((e as DropbearError).code).toMatch(/^(NO_CERTIFICATE|OVERLOADED)$/);
    for (const id of [0, 1, 2, 3])
      expect((e as DropbearError).message).toMatch(new RegExp(`node ${id}: NODE_UNTRUSTED `));
    expect(reachedUntrusted).toBe(0);
  });
});
