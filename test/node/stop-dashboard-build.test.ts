/**
 * A node stopped while it builds the dashboard's script (it starts the build as it starts serving:
 * src/node/run.ts) waits for the build to end before stop() resolves, and so before `dropbear node` exits.
 * esbuild builds in a child process that shares the node's stderr: a node that exited mid-build left it
 * waiting on a request the node would never answer, and it printed "fatal error: all goroutines are asleep
 * - deadlock!" and a page of Go stack traces on the node's stderr (test/cli/rejoin.test.ts failed 2 runs in
 * 3 on a loaded machine, 2026-12-07: a SIGTERM right after the node said it serves).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initGroup } from '../../src/cli/group.ts';
import { startNode } from '../../src/node/run.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';

const dir = mkdtempSync(join(tmpdir(), 'dropbear-stop-build-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a node stopped while its dashboard script builds', () => {
  it('resolves stop() only once the build has ended', async () => {
    const free = { host: '127.0.0.1', port: 0 };
    await initGroup({
      dir,
      nodes: 4,
      models: Array(4).fill(STANDIN_MODEL),
      nodeConfig: { log: { level: 'silent' }, api: free, p2p: free },
    });
    let finish: (js: string) => void = () => {};
    let asked = 0;
    const build = new Promise<string>((r) => {
      finish = r;
    });
    const node = await startNode(join(dir, 'node-0.json'), {
      dashboard: {
        html: '<p>',
        script: () => {
          asked++;
          return build;
        },
      },
    });
    expect(asked).toBe(1); // the build began as the node started serving
    let stopped = false;
    const stopping = node.stop().then(() => {
      stopped = true;
    });
    // Everything else stops meanwhile: the API stops answering ...
    const deadline = Date.now() + 60_000;
    while (
      await fetch(`${node.apiUrl}/healthz`).then(
        () => true,
        () => false,
      )
    ) {
      if (Date.now() > deadline) throw new Error('the API still answers 60 s after stop()');
      await new Promise((r) => setTimeout(r, 20));
    }
    // ... and the rest of stop() (transport, backends, ledger) has many turns of the event loop to finish.
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    expect(stopped).toBe(false);
    finish('');
    await stopping;
    expect(stopped).toBe(true);
  });
});
