/**
 * `dropbear set-fee`: a node owner changes the node's per-request fee (a FeeChange signed with the node's
 * genesis key, ordered by the group like a model update), through that node or, `--via`, any other.
 */
import type { Command } from 'commander';
import { DropbearError, groupIdOf, signFeeChange } from '../protocol/index.ts';
import { parseAmount, submitAndWait } from './deposit.ts';
import { usageError } from './errors.ts';
import { expectObject, intRecords } from './http.ts';
import { type Budget, fetchWithin, ownerCall, viaHint } from './model-update.ts';

/** `--fee`: a whole number ≥ 0 in decimal (0 is a free node), at most 2^53 − 1. */
function parseFee(s: string): number {
  if (s === '0') return 0;
  try {
    return parseAmount(s);
  } catch {
    throw usageError(`--fee must be a whole number ≥ 0 (at most 2^53 − 1), not ${JSON.stringify(s)}`);
  }
}

/**
 * Node `node`'s fee and the version its next change takes at a node: after the last applied and every
 * change of it the node holds waiting (GET /v1/status `fees`, `feeVersions`, `pendingFeeChanges`).
 */
async function feeState(api: string, node: number, b: Budget): Promise<{ fee: number; next: number }> {
  const url = `${api}/v1/status`;
  return feeStateOf(url, expectObject(url, await fetchWithin(b, url, 'nothing was submitted')), node);
}

/** Node `node`'s fee and next fee version by a node's `/v1/status` body (read from `url`); BAD_RESPONSE without them. */
export function feeStateOf(
  url: string,
  body: Record<string, unknown>,
  node: number,
): { fee: number; next: number } {
  const fee = Array.isArray(body.fees) ? body.fees[node] : undefined;
  const version = Array.isArray(body.feeVersions) ? body.feeVersions[node] : undefined;
  const pending = body.pendingFeeChanges;
  if (
    !Number.isSafeInteger(fee) ||
    !Number.isSafeInteger(version) ||
    !intRecords(pending, ['node', 'version'] as const)
  )
    throw new DropbearError(
      'BAD_RESPONSE',
      `${url} answered without fees, feeVersions and pendingFeeChanges for node ${node}; is this a Dropbear node (of this version)?`,
    );
  let last = version as number;
  for (const p of pending) if (p.node === node) last = Math.max(last, p.version);
  return { fee: fee as number, next: last + 1 };
}

export function registerSetFee(program: Command): void {
  program
    .command('set-fee')
    .description(
      "change a node's per-request fee: signs a FeeChange with the node owner's key and submits it; the group orders it like a request",
    )
    .requiredOption('--group <dir>', 'the group folder')
    .requiredOption('--node <id>', 'the node whose fee changes')
    .requiredOption('--fee <n>', 'the new fee per counted vote (a whole number ≥ 0)')
    .option(
      '--key <file>',
      "the node owner's key file (default: keys/node-ID.json in the group folder, where `group init` writes it)",
    )
    .option(
      '--via <id>',
      "the node to submit through (default: the node whose fee changes); any node of the group takes the change, signed with the changing node's key, so an owner whose node is down changes its fee through another",
    )
    .option('--wait <ms>', 'give up after this long (the whole command)', '30000')
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear set-fee --group out/g --node 2 --fee 3\n' +
        '  npx dropbear set-fee --group out/g --node 2 --fee 3 --via 0   # node 2 is down: through node 0\n\n' +
        'The command reads the next fee version from the node it submits to and waits there until the change is ordered: ' +
        'node 2 itself unless --via names another (with node 2 down and no --via: NODE_UNREACHABLE, nothing submitted). ' +
        "From the next executed request on, a certificate that counts the node's vote charges the client the new fee and credits it to the node. " +
        "A client's maxFee still caps what it pays: the primary leaves out the dearest votes while more than a quorum remain, and a request no quorum of votes fits is skipped. " +
        "After TIMEOUT the change may still be ordered: see `dropbear status --json` (each node's `fee`) before trying again.\n\n" +
        'Exit status: 0 the change was ordered, 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option; ' +
        'TX_SUPERSEDED when another change of the same version was ordered first; TIMEOUT when --wait ran out).\n',
    )
    .action(
      async (o: { group: string; node: string; fee: string; key?: string; via?: string; wait: string }) => {
        const fee = parseFee(o.fee);
        const { g, id, api, key, budget, through } = ownerCall(o);
        const now = await viaHint(o.via, 'the change', () => feeState(api, id, budget));
        const tx = signFeeChange(groupIdOf(g.genesis), { node: id, version: now.next, fee }, key);
        const seq = await submitAndWait(
          api,
          tx,
          budget,
          `node ${id}: fee ${now.fee} → ${fee}, fee version ${now.next}${through}`,
          `see \`npx dropbear status --group ${o.group} --json\` (each node's \`fee\`) before trying again`,
        );
        process.stdout.write(`ordered in batch ${seq}: node ${id} now charges ${fee} per counted vote\n`);
      },
    );
}
