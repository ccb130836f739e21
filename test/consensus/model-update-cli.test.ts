/**
 * `dropbear model-update` (src/cli/model-update.ts): the node id it is given, and when it reports an update
 * ordered (the node runs the submitted model at the submitted version or later), not on any version change.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { initGroup, loadGroup } from '../../src/cli/group.ts';
import {
  type GroupView,
  parseNodeId,
  parseWaitMs,
  registerModelUpdate,
  updateStatus,
} from '../../src/cli/model-update.ts';
import { importModels } from '../../src/inference/store.ts';
import { buildApi } from '../../src/node/api.ts';
import { NodeHost } from '../../src/node/host.ts';
import { STANDIN_MODEL, startStandIn } from '../../src/node/standin-backend.ts';
import { readKeyFile } from '../../src/protocol/keyfile.ts';
import { runCliInProcess } from '../cli/run-cli.ts';
import { MODELS_DIR } from '../shared.ts';
import { codeOf } from '../support/errors.ts';

const OURS = 'ab'.repeat(32);
const OTHER = 'cd'.repeat(32);
const view = (version: number, digest: string): GroupView => ({
  models: [
    { node: 0, digest: '00'.repeat(32), version: 0 },
    { node: 1, digest, version },
  ],
});

describe('model-update --node', () => {
  it('takes a decimal node id and refuses anything else with the usage error', () => {
    expect(parseNodeId('0')).toBe(0);
    expect(parseNodeId('12')).toBe(12);
    for (const bad of [
      '',
      ' ',
      ' 1',
      '1 ',
      '-1',
      '+1',
      '1.0',
      '1e0',
      '0x1',
      '01',
      'one',
      '99999999999999999',
    ])
      expect(
        codeOf(() => parseNodeId(bad)),
        JSON.stringify(bad),
      ).toBe('CLI_USAGE');
  });

  it('an empty --node is a usage error before anything else is read (it was node 0)', async () => {
    const program = new Command().exitOverride();
    registerModelUpdate(program);
    const run = program.parseAsync(
      ['model-update', '--group', '/nonexistent/group', '--node', '', '--model', 'm'],
      { from: 'user' },
    );
    await expect(run).rejects.toMatchObject({
      code: 'CLI_USAGE',
      message: expect.stringMatching(/--node must be a node id/),
    });
  });
});

describe('model-update --wait', () => {
  it('takes a positive decimal number of milliseconds and refuses anything else with the usage error', () => {
    expect(parseWaitMs('1')).toBe(1);
    expect(parseWaitMs('30000')).toBe(30000);
    for (const bad of ['', 'abc', '-5', '0', '1.5', '1e3', '0x10', ' 5', '99999999999999999'])
      expect(
        codeOf(() => parseWaitMs(bad)),
        JSON.stringify(bad),
      ).toBe('CLI_USAGE');
  });

  it('a bad --wait is a usage error before anything else is read or sent (it reported TIMEOUT after submitting)', async () => {
    for (const bad of ['abc', '-5', '1.5']) {
      const program = new Command().exitOverride();
      registerModelUpdate(program);
      const run = program.parseAsync(
        ['model-update', '--group', '/nonexistent/group', '--node', '1', '--model', 'm', '--wait', bad],
        { from: 'user' },
      );
      await expect(run, bad).rejects.toMatchObject({
        code: 'CLI_USAGE',
        message: expect.stringMatching(/--wait must be/),
      });
    }
  });
});

describe('model-update: when the update counts as ordered', () => {
  it('waits while the version is below the submitted one', () => {
    expect(updateStatus(view(0, '11'.repeat(32)), 1, 1, OURS)).toBe('waiting');
  });

  it('is ordered when the node runs the submitted model (at that version or later)', () => {
    expect(updateStatus(view(1, OURS), 1, 1, OURS)).toBe('ordered');
    expect(updateStatus(view(1, OURS.toUpperCase()), 1, 1, OURS)).toBe('ordered');
    expect(updateStatus(view(3, OURS), 1, 1, OURS)).toBe('ordered');
  });

  it('another model at that version or later is not success: TX_SUPERSEDED', () => {
    expect(codeOf(() => updateStatus(view(1, OTHER), 1, 1, OURS))).toBe('TX_SUPERSEDED');
    expect(() => updateStatus(view(1, OTHER), 1, 1, OURS)).toThrow(/of the same version was ordered first/);
    expect(() => updateStatus(view(2, OTHER), 1, 1, OURS)).toThrow(/was ordered after it/);
    expect(codeOf(() => updateStatus(view(1, OURS), 5, 1, OURS))).toBe('BAD_RESPONSE');
  });
});

describe('model-update run again for the same update (a retry after TIMEOUT, or two terminals at once)', () => {
  it('the node holds that very update already: the command waits for it as the first did (it ended with TX_DUPLICATE, exit 2)', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'dropbear-mu-again-'));
    const dir = join(tmp, 'group');
    const home = join(tmp, 'home');
    const cleanups: (() => unknown)[] = [() => rmSync(tmp, { recursive: true, force: true })];
    try {
      await initGroup({ dir, nodes: 4, models: Array(4).fill(STANDIN_MODEL) });
      const [m] = await importModels(join(MODELS_DIR, 'mobilenet_v1_0.25_128_quant.onnx'), home);
      const g = loadGroup(dir);
      // Node 1 alone (no peers: nothing is ever ordered, so the update stays waiting), a real host and API;
      // beside its own stand-in, one at the digest of the stored model (the same spec: a compatible update).
      const own = startStandIn(1);
      const host = NodeHost.open({
        id: 1,
        genesis: g.genesis,
        key: readKeyFile(join(dir, 'keys', 'node-1.json')),
        ledgerPath: join(tmp, 'n1.sqlite'),
        backends: [own, { ...startStandIn(1), digest: m.sha256, spec: { ...own.spec, sha256: m.sha256 } }],
        wire: { send: () => {}, broadcast: () => {}, onFrame: () => {}, reportBad: () => {} },
      });
      host.start();
      cleanups.unshift(() => {
        host.stop();
        host.close();
      });
      const api = buildApi(host);
      cleanups.unshift(() => api.close());
      await api.listen({ host: '127.0.0.1', port: 0 });
      const file = join(dir, 'group.json');
      const gf = JSON.parse(readFileSync(file, 'utf8')) as { nodes: { api: string }[] };
      gf.nodes[1].api = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
      writeFileSync(file, JSON.stringify(gf));

      const update = () =>
        runCliInProcess([
          'model-update',
          '--group',
          dir,
          '--node',
          '1',
          '--model',
          m.name,
          '--home',
          home,
          '--wait',
          '300',
        ]);
      const first = await update();
      const txId = /^submitted ([0-9a-f]{64}) \(node 1: version 0 → 1\)$/m.exec(first.stdout)?.[1];
      expect(txId, first.stdout + first.stderr).toBeDefined();
      expect(first.stderr).toMatch(/^error \[TIMEOUT\]: the update was not ordered within 300 ms/);
      const again = await update();
      expect(again.stderr).not.toMatch(/TX_DUPLICATE/);
      expect(again.stdout).toBe(`already submitted ${txId} (node 1: version 0 → 1), waiting to be ordered\n`);
      expect(again.stderr).toMatch(/^error \[TIMEOUT\]: the update was not ordered within 300 ms/);
      expect(again.code).toBe(2);
      // One update held, not two.
      expect(host.status().pendingModelUpdates).toEqual([{ node: 1, version: 1, digest: m.sha256 }]);
    } finally {
      for (const c of cleanups) await c();
    }
  });
});
