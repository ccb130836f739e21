import type { Command } from 'commander';
import { DropbearError } from '../protocol/index.ts';
import { loadGroup } from './group.ts';
import { expectObject, fetchNodeJson, fetchNodeStatus } from './http.ts';

/** Each request to a node gives up after this long (the node is reported with NODE_TIMEOUT). */
const TIMEOUT_MS = 3000;

export interface NodeStatus {
  id: number;
  api: string;
  healthy: boolean;
  ready: boolean;
  view: number | null;
  primary: number | null;
  lastExecuted: number | null;
  /** Fetching executed batches from its peers (null: not said, a node before 2026-12-07). */
  catchingUp: boolean | null;
  /** Batches the group is known to have executed beyond this node (null: not said). */
  behindBy: number | null;
  /**
   * The model the node runs as it says itself (GET /v1/status: its backend's name, and its own entry of
   * `models` and `modelVersions`): the genesis model at version 0, then each ordered update's. Null where
   * the node does not say (or does not answer).
   */
  modelName: string | null;
  modelDigest: string | null;
  modelVersion: number | null;
  /** Updates of this node's model it holds, submitted and not yet ordered (version, digest in hex). */
  updatesWaiting: { version: number; digest: string }[];
  /** The node's per-request fee as it says itself (`fees` in GET /v1/status; null: not said). */
  fee: number | null;
  /** Changes of this node's fee it holds, submitted and not yet ordered (`pendingFeeChanges`), by version. */
  feesWaiting: { version: number; fee: number }[];
  error?: string;
}

/** `s[key][id]` when it is what `ok` takes, else null. */
function entry<T>(s: Record<string, unknown>, key: string, id: number, ok: (x: unknown) => x is T): T | null {
  const list = s[key];
  return Array.isArray(list) && ok(list[id]) ? list[id] : null;
}

const isHex = (x: unknown): x is string => typeof x === 'string' && /^[0-9a-f]{64}$/i.test(x);
const isVersion = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

/**
 * This node's own entries among a status's list `key` (`pendingModelUpdates`, `pendingFeeChanges`), by
 * version, each with its `field` where `ok` takes it (the rest left out).
 */
function ownWaiting<K extends string, T>(
  s: Record<string, unknown>,
  key: string,
  id: number,
  field: K,
  ok: (x: unknown) => x is T,
): ({ version: number } & Record<K, T>)[] {
  const list = s[key];
  if (!Array.isArray(list)) return [];
  return list
    .filter(
      (u): u is { node: number; version: number } & Record<K, T> =>
        typeof u === 'object' && u !== null && u.node === id && isVersion(u.version) && ok(u[field]),
    )
    .map((u) => ({ version: u.version, [field]: u[field] }) as { version: number } & Record<K, T>)
    .sort((a, b) => a.version - b.version);
}

export async function groupStatus(dir: string): Promise<NodeStatus[]> {
  const g = loadGroup(dir);
  return Promise.all(
    g.file.nodes.map(async (n): Promise<NodeStatus> => {
      const base = {
        id: n.id,
        api: n.api,
        healthy: false,
        ready: false,
        view: null,
        primary: null,
        lastExecuted: null,
        catchingUp: null,
        behindBy: null,
        modelName: null,
        modelDigest: null,
        modelVersion: null,
        updatesWaiting: [],
        fee: null,
        feesWaiting: [],
      };
      try {
        const healthy = (await fetchNodeStatus(`${n.api}/healthz`, TIMEOUT_MS)) === 200;
        const ready = (await fetchNodeStatus(`${n.api}/readyz`, TIMEOUT_MS)) === 200;
        const url = `${n.api}/v1/status`;
        const s = expectObject(url, await fetchNodeJson(url, TIMEOUT_MS));
        // A body without these (another server answering 200 `{}`) printed "undefined" in the table,
        // dropped the fields from --json and counted as healthy.
        const missing = ['view', 'primary', 'lastExecuted'].filter(
          (k) => !(Number.isSafeInteger(s[k]) && (s[k] as number) >= 0),
        );
        if (missing.length > 0)
          throw new DropbearError(
            'BAD_RESPONSE',
            `${url} answered without ${missing.join(', ')} as whole numbers; is this a Dropbear node?`,
          );
        return {
          ...base,
          healthy,
          ready,
          view: s.view as number,
          primary: s.primary as number,
          lastExecuted: s.lastExecuted as number,
          catchingUp: typeof s.catchingUp === 'boolean' ? s.catchingUp : null,
          behindBy:
            Number.isSafeInteger(s.behindBy) && (s.behindBy as number) >= 0 ? (s.behindBy as number) : null,
          modelName:
            typeof s.backend === 'object' &&
            s.backend !== null &&
            typeof (s.backend as { model?: unknown }).model === 'string'
              ? (s.backend as { model: string }).model
              : null,
          modelDigest: entry(s, 'models', n.id, isHex),
          modelVersion: entry(s, 'modelVersions', n.id, isVersion),
          updatesWaiting: ownWaiting(s, 'pendingModelUpdates', n.id, 'digest', isHex),
          fee: entry(s, 'fees', n.id, isVersion),
          feesWaiting: ownWaiting(s, 'pendingFeeChanges', n.id, 'fee', isVersion),
        };
      } catch (e) {
        const code = e instanceof DropbearError ? e.code : 'ERROR';
        return { ...base, error: `${code}: ${(e as Error).message}` };
      }
    }),
  );
}

/**
 * At the end of a node's row: whether it is catching up from its peers, and how far behind them when
 * known. Not a batch or two behind in the normal case: under load every node is, for a moment.
 */
function lag(r: NodeStatus): string {
  if (!r.catchingUp) return '';
  return `  (catching up${r.behindBy ? `: ${r.behindBy} behind` : ''})`;
}

/** The table's model column: `v1 930ab218 name`, and the updates waiting (`-` where the node said nothing). */
function modelOf(r: NodeStatus): string {
  const known = r.modelVersion !== null && r.modelDigest !== null;
  const model = known
    ? `v${r.modelVersion} ${r.modelDigest?.slice(0, 8)}${r.modelName === null ? '' : ` ${r.modelName}`}`
    : '-';
  const waiting = r.updatesWaiting.map((u) => `v${u.version} ${u.digest.slice(0, 8)}`).join(', ');
  const fees = r.feesWaiting.map((c) => `fee ${c.fee}`).join(', ');
  const all = [waiting, fees].filter((x) => x !== '').join(', ');
  return all === '' ? model : `${model}  (waiting to be ordered: ${all})`;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description(
      "each node's health, view, primary, last executed sequence number, fee and model (version, digest, name; updates waiting to be ordered)",
    )
    .requiredOption('--group <dir>', 'the group folder')
    .option(
      '--json',
      'print a JSON array (id, api, healthy, ready, view, primary, lastExecuted, catchingUp, behindBy, modelName, modelDigest, modelVersion, updatesWaiting, fee, feesWaiting)',
    )
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear status --group out/group --json\n\n' +
        'Exit status: 0 every node healthy, 1 any node not (its row says why), 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument).\n',
    )
    .action(async (o: { group: string; json?: boolean }) => {
      const rows = await groupStatus(o.group);
      if (o.json) {
        process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      } else {
        const show = (x: number | null) => (x === null ? '-' : String(x));
        process.stdout.write(
          'node  api                         healthy  ready  view  primary  executed  fee   model\n',
        );
        for (const r of rows)
          process.stdout.write(
            `${String(r.id).padEnd(6)}${r.api.padEnd(28)}${(r.healthy ? 'yes' : 'NO').padEnd(9)}${(r.ready ? 'yes' : 'no').padEnd(7)}${show(r.view).padEnd(6)}${show(r.primary).padEnd(9)}${show(r.lastExecuted).padEnd(10)}${show(r.fee).padEnd(5)} ${modelOf(r)}${lag(r)}${r.error ? `  (${r.error})` : ''}\n`,
          );
      }
      if (rows.some((r) => !r.healthy || r.error !== undefined)) process.exitCode = 1;
    });
}
