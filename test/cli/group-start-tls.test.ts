/**
 * `group start` with a node serving its API over HTTPS (api.tls) whose certificate this process does not trust
 * (a private CA, no NODE_EXTRA_CA_CERTS): its readiness check says so at once, with the fix, instead of
 * waiting out its whole timeout and reporting `/readyz: fetch failed` (found walking docs/api.md, "HTTPS for
 * the API", 2026-12-07: `group start` sat silent for 120 s, then stopped every node with that message).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type GroupProcesses, initGroup, loadGroup, startGroup } from '../../src/cli/group.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';
import { DropbearError } from '../../src/protocol/index.ts';
import { haveOpenssl, issuedCert, selfSignedCert } from '../support/tls.ts';

const root = mkdtempSync(join(tmpdir(), 'dropbear-group-start-tls-'));
let procs: GroupProcesses | undefined;

afterAll(async () => {
  await procs?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe.skipIf(!haveOpenssl)('group start with an HTTPS node of a CA it does not trust', () => {
  it('fails its readiness check at once with NODE_UNTRUSTED and how to trust the CA', async () => {
    const ca = selfSignedCert(root, 'ca');
    const leaf = issuedCert(root, 'api', ca, {}, ['IP:127.0.0.1']);
    const dir = join(root, 'group');
    await initGroup({ dir, nodes: 4, models: Array(4).fill(STANDIN_MODEL), name: 'tls-ready' });
    const configFile = join(dir, 'node-1.json');
    const c = JSON.parse(readFileSync(configFile, 'utf8'));
    c.api.tls = { key: leaf.keyFile, cert: leaf.certFile };
    writeFileSync(configFile, JSON.stringify(c));
    const g = JSON.parse(readFileSync(join(dir, 'group.json'), 'utf8'));
    g.nodes[1].api = g.nodes[1].api.replace(/^http:/, 'https:');
    writeFileSync(join(dir, 'group.json'), JSON.stringify(g));

    procs = startGroup(loadGroup(dir), () => {});
    const started = performance.now();
    const e = await procs.ready(40_000).then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(DropbearError);
    expect((e as DropbearError).code).toBe('NODE_UNTRUSTED');
    expect((e as DropbearError).message).toMatch(
      /^node 1: https:\/\/127\.0\.0\.1:\d+\/readyz: .*UNABLE_TO_VERIFY_LEAF_SIGNATURE.*NODE_EXTRA_CA_CERTS=/,
    );
    expect(performance.now() - started).toBeLessThan(30_000);
  }, 90_000);
});
