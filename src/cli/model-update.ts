import { join } from 'node:path';
import type { Command } from 'commander';
import { resolveModel } from '../inference/store.ts';
import {
  DropbearError,
  equalBytes,
  groupIdOf,
  hex,
  type KeyPair,
  signModelUpdate,
  Tx,
  toJson,
  txIdOf,
} from '../protocol/index.ts';
import { readKeyFile } from '../protocol/keyfile.ts';
import { usageError } from './errors.ts';
import { type LoadedGroup, loadGroup } from './group.ts';
import { expectObject, fetchNodeJson, type NodeAnswer } from './http.ts';
import { parseHome } from './io.ts';

export interface GroupView {
  models: { node: number; digest: string; version: number }[];
}

/**
 * `--node` (or the option named `option`): a node id in decimal (0, 1, …); anything else (empty, signs,
 * exponents, hex) a usage error.
 */
export function parseNodeId(s: string, option = '--node'): number {
  const id = /^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : Number.NaN;
  if (!Number.isSafeInteger(id))
    throw usageError(`${option} must be a node id (0, 1, …), not ${JSON.stringify(s)}`);
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
 * Each request to the node gives up after this long (NODE_TIMEOUT), or when the command's --wait runs out if
 * that comes first (TIMEOUT). Before 2026-12-06 they had no limit: a node that took the connection and never
 * answered held the command forever, whatever --wait said; and a body that was not the group view ended it
 * with a parser's message (`Unexpected token 'h'`, `Cannot read properties of undefined`) and no code.
 */
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * The command's time: --wait bounds all of it, the requests before the update is submitted included (the
 * first GET /v1/group waited its own 10 s whatever --wait said, so `--wait 1000` against a silent node took
 * 10 s and named 10000 ms).
 */
export interface Budget {
  node: number;
  waitMs: number;
  /** performance.now() by which the command gives up (the monotonic clock: a step of the system clock
   *  moved it before 2026-12-06). */
  deadline: number;
}

/**
 * `fetchNodeJson` within what is left of the budget, and at most REQUEST_TIMEOUT_MS. When the budget is what
 * ran out, TIMEOUT naming the node, the URL and the wait, and `when` (what it means for the update); a
 * request that hit its own limit inside a longer wait stays NODE_TIMEOUT. Nothing is sent once the budget is
 * spent (a POST aborted after 1 ms could still reach the node).
 */
export async function fetchWithin(
  b: Budget,
  url: string,
  when: string,
  init?: RequestInit,
): Promise<NodeAnswer> {
  const left = b.deadline - performance.now();
  if (left <= 0)
    throw new DropbearError(
      'TIMEOUT',
      `--wait ${b.waitMs} ms ran out before node ${b.node} was asked (${init?.method ?? 'GET'} ${url}); ` +
        'nothing was submitted',
    );
  try {
    return await fetchNodeJson(url, Math.min(left, REQUEST_TIMEOUT_MS), init);
  } catch (e) {
    if (e instanceof DropbearError && e.code === 'NODE_TIMEOUT' && left <= REQUEST_TIMEOUT_MS)
      throw new DropbearError(
        'TIMEOUT',
        `node ${b.node} (${url}) did not answer within --wait ${b.waitMs} ms; ${when}`,
      );
    throw e;
  }
}

/** GET /v1/group: the models part of the group view; NODE_UNREACHABLE, NODE_TIMEOUT, TIMEOUT or BAD_RESPONSE. */
async function groupView(api: string, b: Budget, when: string): Promise<GroupView> {
  const url = `${api}/v1/group`;
  const body = expectObject(url, await fetchWithin(b, url, when));
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

/**
 * What an owner's command (`set-fee`, `withdraw`) acts on, from its options: the group, the node it is about
 * (`--node`), the node it goes through (`--via`, default the same), the owner's key (ownerKey) and its time
 * budget (`--wait`). CLI_USAGE for a node not in the group.
 */
export function ownerCall(o: { group: string; node: string; key?: string; via?: string; wait: string }): {
  g: LoadedGroup;
  id: number;
  viaId: number;
  api: string;
  key: KeyPair;
  budget: Budget;
  /** ", through node V" when it goes through another node, else "". */
  through: string;
} {
  const waitMs = parseWaitMs(o.wait);
  const id = parseNodeId(o.node);
  const g = loadGroup(o.group);
  const node = g.file.nodes.find((n) => n.id === id);
  if (!node) throw usageError(`--node ${o.node} is not in this group`);
  const viaId = o.via === undefined ? id : parseNodeId(o.via, '--via');
  const via = g.file.nodes.find((n) => n.id === viaId);
  if (!via) throw usageError(`--via ${o.via} is not in this group`);
  const key = ownerKey(g, node, o.key);
  const budget: Budget = { node: viaId, waitMs, deadline: performance.now() + waitMs };
  return { g, id, viaId, api: via.api, key, budget, through: viaId === id ? '' : `, through node ${viaId}` };
}

/**
 * `read()`, with a NODE_UNREACHABLE of the node asked (the node itself, or the one `--via` names) saying that
 * nothing was submitted and that any node takes the transaction (`what`): `--via ID` (another; `option`
 * names the flag where a command calls it `--node`: deposit, refund). Through a
 * `--via` node that was down it said only "is the node running?" (2026-12-07). A TIMEOUT of a node that took the
 * call and never answered (stopped, hung) says the same.
 */
export async function viaHint<T>(
  via: string | undefined,
  what: string,
  read: () => Promise<T>,
  option = '--via',
): Promise<T> {
  try {
    return await read();
  } catch (e) {
    if (e instanceof DropbearError && e.code === 'NODE_UNREACHABLE')
      throw new DropbearError(
        'NODE_UNREACHABLE',
        `${e.message} Nothing was submitted; any node of the group takes ${what}: submit it through another${via === undefined ? '' : ` (not node ${via})`} with ${option} ID`,
      );
    // A node that takes the call and never answers (stopped, hung) said only "did not answer within --wait
    // N ms; nothing was submitted" (a walkthrough, 2026-12-07): the way around it is the same.
    if (e instanceof DropbearError && e.code === 'TIMEOUT' && / did not answer within /.test(e.message))
      throw new DropbearError(
        'TIMEOUT',
        `${e.message}. If ${via === undefined ? 'the node' : `node ${via}`} hangs, any node of the group takes ${what}: submit it through another${via === undefined ? '' : ` (not node ${via})`} with ${option} ID`,
      );
    throw e;
  }
}

/**
 * Node `node`'s owner key: `keyFile`, else keys/node-ID.json in the group folder (where `group init` writes
 * it; CLI_USAGE for a group of separate owners, whose folder holds no node keys), checked against the
 * genesis before anything is sent: signed with another key, a transaction was refused by the node
 * (TX_BAD_SIGNATURE), or, with the node down, the command said only that (NODE_UNREACHABLE).
 */
export function ownerKey(
  g: LoadedGroup,
  node: LoadedGroup['file']['nodes'][number],
  keyFile?: string,
): KeyPair {
  const id = node.id;
  if (keyFile === undefined && node.config === undefined)
    throw usageError(
      `${join(g.dir, 'group.json')} is a group of separate owners: its folder holds no node keys; ` +
        `name node ${id}'s key file with --key FILE`,
    );
  const file = keyFile ?? join(g.dir, 'keys', `node-${id}.json`);
  const key = readKeyFile(file);
  if (!equalBytes(key.publicKey, g.genesis.nodes[id]?.publicKey ?? new Uint8Array(0)))
    throw new DropbearError(
      'CONFIG_KEY_MISMATCH',
      `${file} is not the key the genesis names for node ${id}; nothing was submitted`,
    );
  return key;
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
    .option('--home <dir>', 'the Dropbear home folder (default: $DROPBEAR_HOME, else ~/.dropbear)', parseHome)
    .option(
      '--key <file>',
      "the node owner's key file (default: keys/node-ID.json in the group folder, where `group init` writes it)",
    )
    .option(
      '--wait <ms>',
      'give up after this long (the whole command: reading the group view, submitting, waiting for the update to be ordered)',
      '30000',
    )
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear model-update --group out/g --node 1 --model squeezenet1.1-fp16-winml\n\n' +
        'Load the new model beside the old one first: add {"name": "<model>"} to "extraModels" in the node\'s config and restart it. ' +
        'It must label its answers as the current model does and take the same inputs (else TX_MODEL_INCOMPATIBLE). ' +
        'After TIMEOUT the update may still be ordered: run the same command again (it waits for the same update), or see `dropbear status`. ' +
        'Step by step: docs/api.md, "Updating a node\'s model".\n\n' +
        'Exit status: 0 the update was ordered, 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument; TIMEOUT when --wait ran out).\n',
    )
    .action(
      async (o: {
        group: string;
        node: string;
        model: string;
        home?: string;
        key?: string;
        wait: string;
      }) => {
        const waitMs = parseWaitMs(o.wait);
        const deadline = performance.now() + waitMs;
        const id = parseNodeId(o.node);
        const g = loadGroup(o.group);
        const node = g.file.nodes.find((n) => n.id === id);
        if (!node) throw usageError(`--node ${o.node} is not in this group`);
        const m = await resolveModel(o.model, o.home);
        const key = ownerKey(g, node, o.key);
        const budget: Budget = { node: id, waitMs, deadline };
        const before = await groupView(node.api, budget, 'nothing was submitted');
        const current = before.models.find((x) => x.node === id);
        if (!current) throw new DropbearError('BAD_RESPONSE', `the group view lists no model for node ${id}`);
        if (current.digest === m.sha256) throw usageError(`node ${id} already runs ${o.model}`);
        const tx = signModelUpdate(
          groupIdOf(g.genesis),
          {
            node: id,
            version: current.version + 1,
            newDigest: Uint8Array.from(Buffer.from(m.sha256, 'hex')),
          },
          key,
        );
        const txUrl = `${node.api}/v1/txs`;
        const posted = await fetchWithin(
          budget,
          txUrl,
          `the update may have been submitted; check \`npx dropbear status --group ${o.group}\``,
          {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ tx: toJson(Tx, tx) }),
          },
        );
        const step = `node ${id}: version ${current.version} → ${current.version + 1}`;
        let body: Record<string, unknown>;
        try {
          body = expectObject(txUrl, posted, 202);
        } catch (e) {
          // The node holds (TX_DUPLICATE) or has executed (TX_ALREADY_EXECUTED) this very transaction: the
          // same update signed again is the same bytes (Ed25519 is deterministic), so this is the command run
          // again, after a TIMEOUT as its message advises or in a second terminal. Wait for it as the first
          // run did (it ended with the error and exit 2, the update going ahead).
          if (e instanceof DropbearError && (e.code === 'TX_DUPLICATE' || e.code === 'TX_ALREADY_EXECUTED')) {
            process.stdout.write(
              `already submitted ${hex(txIdOf(tx))} (${step}), ${e.code === 'TX_DUPLICATE' ? 'waiting to be ordered' : 'executed'}\n`,
            );
            body = { txId: hex(txIdOf(tx)) };
          } else throw e;
        }
        if (typeof body.txId !== 'string')
          throw new DropbearError(
            'BAD_RESPONSE',
            `${txUrl} answered 202 without a txId; is this a Dropbear node?`,
          );
        if (posted.status === 202) process.stdout.write(`submitted ${body.txId} (${step})\n`);
        while (performance.now() < deadline) {
          let now: GroupView;
          try {
            now = await groupView(node.api, budget, 'the update was submitted');
          } catch (e) {
            // The wait ran out during the request: TIMEOUT below, as when it runs out between two.
            if (e instanceof DropbearError && e.code === 'TIMEOUT') break;
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
      },
    );
}
