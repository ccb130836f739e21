import { join } from 'node:path';
import type { Command } from 'commander';
import { resolveModel } from '../inference/store.ts';
import { DropbearError, groupIdOf, signModelUpdate, Tx, toJson } from '../protocol/index.ts';
import { readKeyFile } from '../protocol/keyfile.ts';
import { usageError } from './errors.ts';
import { loadGroup } from './group.ts';
import { expectObject, fetchNodeJson } from './http.ts';

export interface GroupView {
  models: { node: number; digest: string; version: number }[];
}

/** `--node`: a node id in decimal (0, 1, …); anything else (empty, signs, exponents, hex) a usage error. */
export function parseNodeId(s: string): number {
  const id = /^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : Number.NaN;
  if (!Number.isSafeInteger(id))
    throw usageError(`--node must be a node id (0, 1, …), not ${JSON.stringify(s)}`);
  return id;
}

/**
 * `--wait`: milliseconds, a positive decimal integer; anything else a usage error. (It was `Number()`: a
 * non-number gave NaN, the wait loop never ran and the command reported TIMEOUT right after submitting.)
 */
export function parseWaitMs(s: string): number {
  const ms = /^[1-9][0-9]*$/.test(s) ? Number(s) : Number.NaN;
  if (!Number.isSafeInteger(ms))
    throw usageError(`--wait must be a positive whole number of milliseconds, not ${JSON.stringify(s)}`);
  return ms;
}

/**
 * Where the update of `node` to `version` with model `digest` (hex) stands in a node's GET /v1/group:
 * `waiting` while the node's version is below it, `ordered` once the node runs that model at that version
 * or later. Another model at that version or later means another update took its place (one of the same
 * version ordered first, or a later one): `TX_SUPERSEDED`, not success.
 */
export function updateStatus(
  view: GroupView,
  node: number,
  version: number,
  digest: string,
): 'waiting' | 'ordered' {
  const x = view.models.find((y) => y.node === node);
  if (!x) throw new DropbearError('BAD_RESPONSE', `the group view lists no model for node ${node}`);
  if (x.version < version) return 'waiting';
  if (x.digest.toLowerCase() === digest.toLowerCase()) return 'ordered';
  throw new DropbearError(
    'TX_SUPERSEDED',
    `node ${node} is at version ${x.version} with model ${x.digest}, not the submitted ${digest}: ` +
      `another update ${x.version === version ? 'of the same version was ordered first' : 'was ordered after it'}`,
  );
}

/**
 * Each request to the node gives up after this long (NODE_TIMEOUT); those of the wait for the update, when
 * the wait ends. Before 2026-12-06 they had no limit: a node that took the connection and never answered
 * held the command forever, whatever --wait said; and a body that was not the group view ended it with a
 * parser's message (`Unexpected token 'h'`, `Cannot read properties of undefined`) and no code.
 */
const REQUEST_TIMEOUT_MS = 10_000;

/** GET /v1/group: the models part of the group view; NODE_UNREACHABLE, NODE_TIMEOUT or BAD_RESPONSE. */
async function groupView(api: string, timeoutMs: number): Promise<GroupView> {
  const url = `${api}/v1/group`;
  const body = expectObject(url, await fetchNodeJson(url, Math.min(timeoutMs, REQUEST_TIMEOUT_MS)));
  const models = body.models;
  const ok =
    Array.isArray(models) &&
    models.every(
      (m) =>
        typeof m === 'object' &&
        m !== null &&
        Number.isSafeInteger(m.node) &&
        typeof m.digest === 'string' &&
        Number.isSafeInteger(m.version),
    );
  if (!ok)
    throw new DropbearError(
      'BAD_RESPONSE',
      `${url} answered without a list of models (node, digest, version); is this a Dropbear node?`,
    );
  return { models } as GroupView;
}

export function registerModelUpdate(program: Command): void {
  program
    .command('model-update')
    .description(
      "switch a node to another model: signs a ModelUpdate with the node owner's key and submits it; the group orders it like a request",
    )
    .requiredOption('--group <dir>', 'the group folder')
    .requiredOption('--node <id>', 'the node whose model changes')
    .requiredOption(
      '--model <name|digest>',
      'the new model (in the store); the node must already have it loaded (extraModels in its config)',
    )
    .option('--home <dir>', 'the Dropbear home folder (default: $DROPBEAR_HOME, else ~/.dropbear)')
    .option('--wait <ms>', 'wait this long for the update to be ordered', '30000')
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear model-update --group out/g --node 1 --model squeezenet1.1-fp16-winml\n\n' +
        'Load the new model beside the old one first: add {"name": "<model>"} to "extraModels" in the node\'s config and restart it.\n',
    )
    .action(async (o: { group: string; node: string; model: string; home?: string; wait: string }) => {
      const waitMs = parseWaitMs(o.wait);
      const id = parseNodeId(o.node);
      const g = loadGroup(o.group);
      const node = g.file.nodes.find((n) => n.id === id);
      if (!node) throw usageError(`--node ${o.node} is not in this group`);
      const m = await resolveModel(o.model, o.home);
      const key = readKeyFile(join(g.dir, 'keys', `node-${id}.json`));
      const before = await groupView(node.api, REQUEST_TIMEOUT_MS);
      const current = before.models.find((x) => x.node === id);
      if (!current) throw new DropbearError('BAD_RESPONSE', `the group view lists no model for node ${id}`);
      if (current.digest === m.sha256) throw usageError(`node ${id} already runs ${o.model}`);
      const tx = signModelUpdate(
        groupIdOf(g.genesis),
        { node: id, version: current.version + 1, newDigest: Uint8Array.from(Buffer.from(m.sha256, 'hex')) },
        key,
      );
      const txUrl = `${node.api}/v1/txs`;
      const posted = await fetchNodeJson(txUrl, REQUEST_TIMEOUT_MS, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ tx: toJson(Tx, tx) }),
      });
      const body = expectObject(txUrl, posted, 202);
      if (typeof body.txId !== 'string')
        throw new DropbearError(
          'BAD_RESPONSE',
          `${txUrl} answered 202 without a txId; is this a Dropbear node?`,
        );
      process.stdout.write(
        `submitted ${body.txId} (node ${id}: version ${current.version} → ${current.version + 1})\n`,
      );
      const deadline = Date.now() + waitMs;
      while (Date.now() < deadline) {
        const left = deadline - Date.now();
        let now: GroupView;
        try {
          now = await groupView(node.api, left);
        } catch (e) {
          // The wait ran out during the request: TIMEOUT below, as when it runs out between two.
          if (e instanceof DropbearError && e.code === 'NODE_TIMEOUT' && left <= REQUEST_TIMEOUT_MS) break;
          throw e;
        }
        if (updateStatus(now, id, current.version + 1, m.sha256) === 'ordered') {
          const x = now.models.find((y) => y.node === id)!;
          process.stdout.write(
            `ordered: node ${id} now votes with ${x.digest.slice(0, 16)}… (version ${x.version})\n`,
          );
          return;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new DropbearError(
        'TIMEOUT',
        `the update was not ordered within ${waitMs} ms; check \`npx dropbear status --group ${o.group}\``,
      );
    });
}
