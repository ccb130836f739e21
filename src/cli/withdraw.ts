/**
 * `dropbear withdraw`: a node owner takes out what its node earned (a Withdrawal signed with the node's
 * genesis key, ordered by the group like a model update). The marketplace's treasury pays the owner outside
 * the group once it is ordered and applied (docs/api.md, "Withdrawals").
 */
import type { Command } from 'commander';
import { DropbearError, groupIdOf, signWithdrawal } from '../protocol/index.ts';
import { parseAmount, submitAndWait } from './deposit.ts';
import { expectObject, intRecords } from './http.ts';
import { fetchWithin, ownerCall, viaHint } from './model-update.ts';

/**
 * Node `node`'s next withdrawal serial and what its owner may still withdraw, by a node's `/v1/status` and
 * `/v1/owners` bodies (read from `statusUrl` and `ownersUrl`): the serial after the last applied and every
 * withdrawal of it the node holds waiting, and the payable less the amounts waiting (the largest of each
 * serial: only one of a serial applies). BAD_RESPONSE without them.
 */
export function withdrawStateOf(
  statusUrl: string,
  status: Record<string, unknown>,
  ownersUrl: string,
  owners: Record<string, unknown>,
  node: number,
): { next: number; payable: number; waiting: number } {
  const applied = Array.isArray(status.withdrawals) ? status.withdrawals[node] : undefined;
  const pending = status.pendingWithdrawals;
  if (!Number.isSafeInteger(applied) || !intRecords(pending, ['node', 'serial', 'amount'] as const))
    throw new DropbearError(
      'BAD_RESPONSE',
      `${statusUrl} answered without withdrawals and pendingWithdrawals for node ${node}; is this a Dropbear node (of this version)?`,
    );
  const row = Array.isArray(owners.owners) ? (owners.owners[node] as Record<string, unknown>) : undefined;
  const payable = row && typeof row === 'object' ? row.payable : undefined;
  if (!Number.isSafeInteger(payable))
    throw new DropbearError(
      'BAD_RESPONSE',
      `${ownersUrl} answered without node ${node}'s payable; is this a Dropbear node (of this version)?`,
    );
  let last = applied as number;
  const largest = new Map<number, number>();
  for (const p of pending)
    if (p.node === node) {
      last = Math.max(last, p.serial);
      largest.set(p.serial, Math.max(largest.get(p.serial) ?? 0, p.amount));
    }
  let waiting = 0;
  for (const a of largest.values()) waiting += a;
  return { next: last + 1, payable: payable as number, waiting };
}

export function registerWithdraw(program: Command): void {
  program
    .command('withdraw')
    .description(
      "take out what a node earned: signs a Withdrawal with the node owner's key and submits it; the group orders it like a request, and the treasury pays the owner once it is ordered",
    )
    .requiredOption('--group <dir>', 'the group folder')
    .requiredOption('--node <id>', 'the node whose earnings are withdrawn')
    .requiredOption(
      '--amount <n>',
      'how much to take out (a positive whole number), or `all`: everything the node may withdraw now',
    )
    .option(
      '--key <file>',
      "the node owner's key file (default: keys/node-ID.json in the group folder, where `group init` writes it)",
    )
    .option(
      '--via <id>',
      "the node to submit through (default: the node whose earnings are withdrawn); any node of the group takes the withdrawal, signed with that node's key",
    )
    .option('--wait <ms>', 'give up after this long (the whole command)', '30000')
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear withdraw --group out/g --node 2 --amount 500\n' +
        '  npx dropbear withdraw --group out/g --node 2 --amount all --via 0   # node 2 is down: through node 0\n\n' +
        "The command reads the node's next withdrawal serial and what it may withdraw (what it earned less what it withdrew, and less the withdrawals waiting) " +
        'from the node it submits to, and waits there until the withdrawal is ordered. More than that is refused before anything is signed, ' +
        'TX_WITHDRAWAL_TOO_LARGE (`all` with nothing left: NOTHING_TO_WITHDRAW), as a node refuses it (409 TX_WITHDRAWAL_TOO_LARGE). The money leaves the group: the treasury pays the owner outside it once it is ordered and applied ' +
        '(it checks the TXID printed here with `npx dropbear tx --group DIR TXID`, which reads GET /v1/txs/TXID on every node, before it pays: docs/api.md, "Withdrawals").\n\n' +
        'Exit status: 0 the withdrawal was ordered and applied, 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option; ' +
        'TX_WITHDRAWAL_TOO_LARGE or NOTHING_TO_WITHDRAW, nothing submitted; ' +
        'TX_SUPERSEDED when another withdrawal of the same serial was ordered first; TIMEOUT when --wait ran out: it may still be ordered, ' +
        'see `npx dropbear status --json` or GET /v1/owners before trying again).\n',
    )
    .action(
      async (o: {
        group: string;
        node: string;
        amount: string;
        key?: string;
        via?: string;
        wait: string;
      }) => {
        const all = o.amount === 'all';
        const asked = all ? 0 : parseAmount(o.amount, true);
        const { g, id, api, key, budget, through } = ownerCall(o);
        const statusUrl = `${api}/v1/status`;
        const ownersUrl = `${api}/v1/owners`;
        const read = (url: string) =>
          viaHint(o.via, 'the withdrawal', async () =>
            expectObject(url, await fetchWithin(budget, url, 'nothing was submitted')),
          );
        const now = withdrawStateOf(statusUrl, await read(statusUrl), ownersUrl, await read(ownersUrl), id);
        const room = now.payable - now.waiting;
        const waitingNote =
          now.waiting > 0 ? ` (${now.waiting} more in withdrawals waiting to be ordered)` : '';
        if (all && room <= 0)
          throw new DropbearError(
            'NOTHING_TO_WITHDRAW',
            `node ${id} may withdraw ${now.payable}${waitingNote}: nothing is left to withdraw; nothing was submitted`,
          );
        const amount = all ? room : asked;
        if (amount > room)
          throw new DropbearError(
            'TX_WITHDRAWAL_TOO_LARGE',
            `node ${id} may withdraw ${now.payable}${waitingNote}, not ${amount}; nothing was submitted`,
          );
        const tx = signWithdrawal(groupIdOf(g.genesis), { node: id, serial: now.next, amount }, key);
        const seq = await submitAndWait(
          api,
          tx,
          budget,
          `node ${id}: withdraw ${amount} of ${now.payable}, serial ${now.next}${through}`,
          `see GET ${ownersUrl} (node ${id}'s \`withdrawn\` and \`payable\`) before trying again`,
        );
        process.stdout.write(
          `ordered in batch ${seq}: node ${id} withdrew ${amount}; it may withdraw ${room - amount} more (as the node read when this was submitted: GET /v1/owners says now)\n`,
        );
      },
    );
}
