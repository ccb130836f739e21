/**
 * `dropbear refund`: a client takes back its unused balance (a Refund signed with the client's key, ordered
 * by the group like a deposit). The marketplace's treasury pays the client outside the group once it is
 * ordered and applied (docs/api.md, "Refunds"), as it pays an owner's withdrawal.
 */
import type { Command } from 'commander';
import { signRefund } from '../protocol/index.ts';
import { type ClientSpendKind, clientSpendPlan, submitClientSpend } from './client-spend.ts';

const REFUND: ClientSpendKind = {
  what: 'the refund',
  tooLarge: 'TX_REFUND_TOO_LARGE',
  nothing: 'NOTHING_TO_REFUND',
  verb: 'take back',
  sign: (groupId, key, serial, amount) => signRefund(groupId, { client: key.publicKey, serial, amount }, key),
  describe: (amount, balance) => `take back ${amount} of ${balance}`,
};

export function registerRefund(program: Command): void {
  program
    .command('refund')
    .description(
      "take back a client's unused balance: signs a Refund with the client's key and submits it; the group orders it like a deposit, and the treasury pays the client once it is ordered",
    )
    .requiredOption('--group <dir>', 'the group folder')
    .requiredOption(
      '--amount <n>',
      'how much to take back (a positive whole number), or `all`: everything the client may take back now',
    )
    .option('--key <file>', "the client's key file (default: the client key group.json names)")
    .option('--node <id>', 'the node to submit through', '0')
    .option('--wait <ms>', 'give up after this long (the whole command)', '30000')
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear refund --group out/g --key alice.json --amount 400\n' +
        '  npx dropbear refund --group out/g --key alice.json --amount all --node 1   # node 0 is down: through node 1\n\n' +
        "The command reads the client's next serial (its refunds and transfers share one sequence) and what it may take back from the node it submits to (GET /v1/accounts/KEY: " +
        "the balance less the maxFee of the client's requests waiting there to be ordered and its refunds and transfers waiting), and waits there until the refund is ordered. " +
        'More than that is refused before anything is signed, TX_REFUND_TOO_LARGE (`all` with nothing left: NOTHING_TO_REFUND), as a node refuses it (409 TX_REFUND_TOO_LARGE; ' +
        '`all` refused so, because a request of the client reached the node after it was read, reads again and takes what is left). ' +
        "The group takes the money out after the requests ordered in the refund's own batch are charged; requests of the client ordered later find the lower balance " +
        '(those it no longer covers are skipped, uncharged). The money leaves the group: the treasury pays the client outside it once the refund is ordered and applied ' +
        '(it checks the TXID printed here with `npx dropbear tx --group DIR TXID` before it pays: docs/api.md, "Refunds").\n\n' +
        'Exit status: 0 the refund was ordered and applied, 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option; ' +
        'TX_REFUND_TOO_LARGE or NOTHING_TO_REFUND, nothing submitted; ' +
        'TX_SUPERSEDED when another refund or a transfer of the same serial was ordered first, or the balance no longer covered it when it was ordered; TIMEOUT when --wait ran out: it may still be ordered, ' +
        'see `npx dropbear tx --group DIR TXID` with the TXID printed before trying again: `balance` shows only the refunds and transfers waiting at the node it asks).\n',
    )
    .action(async (o: { group: string; amount: string; key?: string; node: string; wait: string }) => {
      const { seq, amount } = await submitClientSpend(clientSpendPlan(o), REFUND);
      process.stdout.write(
        `ordered in batch ${seq}: the client took back ${amount}; the treasury pays it once it has checked the id above (npx dropbear tx)\n`,
      );
    });
}
