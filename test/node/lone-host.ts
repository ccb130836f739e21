/**
 * One started stand-in NodeHost (node 0 of a simulated group, 4 nodes unless told) with no peers and its own SQLite
 * ledger in a fresh temporary folder: what the API tests put behind buildApi.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type HostObserver, NodeHost } from '../../src/node/host.ts';
import { startStandIn } from '../../src/node/standin-backend.ts';
import { makeGroup } from '../../src/sim/world.ts';

export interface LoneHost {
  host: NodeHost;
  group: ReturnType<typeof makeGroup>;
  /** Stops and closes the host and removes its folder. */
  close(): void;
}

/**
 * `observe`: the host's observer hooks (HostOptions.observe), e.g. a NodeMetrics' `observer()`; `n`: the
 * group's size (f = 1).
 */
export function openLoneHost(prefix: string, seed: number, observe?: Partial<HostObserver>, n = 4): LoneHost {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const group = makeGroup(n, 1, seed);
  const host = NodeHost.open({
    id: 0,
    genesis: group.genesis,
    key: group.keys[0],
    ledgerPath: join(dir, 'n0.sqlite'),
    backends: [startStandIn(0)],
    wire: { send: () => {}, broadcast: () => {}, onFrame: () => {}, reportBad: () => {} },
    observe,
  });
  host.start();
  return {
    host,
    group,
    close() {
      host.stop();
      host.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
