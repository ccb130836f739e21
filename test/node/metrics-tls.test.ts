/**
 * A node's /metrics under TLS: dropbear_tls_certificate_expires_in_seconds counts down to the end of its own
 * certificate (made with openssl, test/support/tls.ts); a node without TLS exports no such gauge.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initGroup } from '../../src/cli/group.ts';
import { startNode } from '../../src/node/run.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';
import { parsePromText, samplesOf } from '../support/prom-text.ts';
import { haveOpenssl, issuedCert } from '../support/tls.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const GAUGE = 'dropbear_tls_certificate_expires_in_seconds';

/** Node 0 of a new 4-node group (the others not started), with `tls` in its config; its /metrics gauge. */
async function scrapeNode(tls: (dir: string) => Record<string, string> | undefined): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), 'dropbear-metrics-tls-'));
  dirs.push(dir);
  const free = { host: '127.0.0.1', port: 0 };
  await initGroup({
    dir,
    nodes: 4,
    models: Array(4).fill(STANDIN_MODEL),
    nodeConfig: { log: { level: 'silent' }, api: free, p2p: free, tls: tls(dir) },
  });
  const node = await startNode(join(dir, 'node-0.json'));
  try {
    const text = await (await fetch(`${node.apiUrl}/metrics`)).text();
    return samplesOf(parsePromText(text), GAUGE).map((s) => s.value);
  } finally {
    await node.stop();
  }
}

describe('the own TLS certificate in /metrics', () => {
  it.skipIf(!haveOpenssl)('counts down to the end of its validity, under TLS only', async () => {
    let certFile = '';
    const before = Date.now();
    const [left] = await scrapeNode((dir) => {
      const f = issuedCert(dir, 'n0', null, { endDate: '20991231000000Z' });
      certFile = f.certFile;
      return { key: f.keyFile, cert: f.certFile };
    });
    const notAfter = Date.parse(new X509Certificate(readFileSync(certFile)).validTo);
    expect(left).toBeGreaterThan((notAfter - Date.now()) / 1000 - 1);
    expect(left).toBeLessThanOrEqual((notAfter - before) / 1000);
    expect(await scrapeNode(() => undefined)).toEqual([]);
  });
});
