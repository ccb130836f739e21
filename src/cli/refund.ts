/**
 * `dropbear refund`: a client takes back its unused balance (a Refund signed with the client's key, ordered
 * by the group like a deposit). The marketplace's treasury pays the client outside the group once it is
 * ordered and applied (docs/api.md, "Refunds"), as it pays an owner's withdrawal.
 */
import type { Command } from 'commander';
import { DropbearError, groupIdOf, hex, signRefund, toB64u, txIdOf } from '../protocol/index.ts';
import { readKeyFile } from '../protocol/keyfile.ts';
import { parseAmount, submitAndWait } from './deposit.ts';
import { usageError } from './errors.ts';
import { loadGroup } from './group.ts';
import { expectObject, intRecords } from './http.ts';
import { type Budget, fetchWithin, parseNodeId, parseWaitMs, viaHint } from './model-update.ts';

/**
 * The client's next refund serial and what it may take back now, by a node's `GET /v1/accounts/:client`
 * body (read from `url`): the serial after the last applied and every refund of it the node holds waiting;
 * `refundable` as the node computed it (the balance less what its requests waiting there may be charged and
 * its refunds waiting). BAD_RESPONSE without them.
 */
export function refundStateOf(
  url: string,
  body: Record<string, unknown>,
): { next: number; balance: number; refundable: number; heldFees: number; waiting: number; seq: number } {
  const { refunds, pendingRefunds, refundable, heldFees, balance, seq } = body;
  if (
    !Number.isSafeInteger(refunds) ||
    !Number.isSafeInteger(refundable) ||
    !Number.isSafeInteger(heldFees) ||
    !Number.isSafeInteger(balance) ||
    !Number.isSafeInteger(seq) ||
    !intRecords(pendingRefunds, ['serial', 'amount'] as const)
  )
    throw new DropbearError(
      'BAD_RESPONSE',
      `${url} answered without balance, refunds, pendingRefunds, heldFees and refundable; is this a Dropbear node (of this version)?`,
    );
  let last = refunds as number;
  const largest = new Map<number, number>();
  for (const p of pendingRefunds) {
    last = Math.max(last, p.serial);
    largest.set(p.serial, Math.max(largest.get(p.serial) ?? 0, p.amount));
  }
  let waiting = 0;
  for (const a of largest.values()) waiting += a;
  return {
    next: last + 1,
    balance: balance as number,
    refundable: refundable as number,
    heldFees: heldFees as number,
    waiting,
    seq: seq as number,
  };
}

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
        "The command reads the client's next refund serial and what it may take back from the node it submits to (GET /v1/accounts/KEY: " +
        "the balance less the maxFee of the client's requests waiting there to be ordered and its refunds waiting), and waits there until the refund is ordered. " +
        'More than that is refused before anything is signed, TX_REFUND_TOO_LARGE (`all` with nothing left: NOTHING_TO_REFUND), as a node refuses it (409 TX_REFUND_TOO_LARGE; ' +
        '`all` refused so, because a request of the client reached the node after it was read, reads again and takes what is left). ' +
        "The group takes the money out after the requests ordered in the refund's own batch are charged; requests of the client ordered later find the lower balance " +
        '(those it no longer covers are skipped, uncharged). The money leaves the group: the treasury pays the client outside it once the refund is ordered and applied ' +
        '(it checks the TXID printed here with `npx dropbear tx --group DIR TXID` before it pays: docs/api.md, "Refunds").\n\n' +
        'Exit status: 0 the refund was ordered and applied, 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option; ' +
        'TX_REFUND_TOO_LARGE or NOTHING_TO_REFUND, nothing submitted; ' +
        'TX_SUPERSEDED when another refund of the same serial was ordered first, or the balance no longer covered it when it was ordered; TIMEOUT when --wait ran out: it may still be ordered, ' +
        'see `npx dropbear tx --group DIR TXID` with the TXID printed before trying again: `balance` shows only the refunds waiting at the node it asks).\n',
    )
    .action(async (o: { group: string; amount: string; key?: string; node: string; wait: string }) => {
      const all = o.amount === 'all';
      const asked = all ? 0 : parseAmount(o.amount, true);
      const waitMs = parseWaitMs(o.wait);
      const g = loadGroup(o.group);
      const id = parseNodeId(o.node);
      const node = g.file.nodes.find((n) => n.id === id);
      if (!node) throw usageError(`--node ${o.node} is not in this group`);
      const key = o.key !== undefined ? readKeyFile(o.key) : g.clientKey();
      const client = toB64u(key.publicKey);
      const budget: Budget = { node: id, waitMs, deadline: performance.now() + waitMs };
      const url = `${node.api}/v1/accounts/${client}`;
      let amount: number;
      let seq: number;
      for (let tries = 0; ; tries++) {
        // Down: nothing was submitted, and any node takes the refund (signed with the client's key). It said
        // only "is the node running?" (2026-12-07), where withdraw and set-fee name --via.
        const answer = await viaHint(
          String(id),
          'the refund',
          () => fetchWithin(budget, url, 'nothing was submitted'),
          '--node',
        );
        const body = expectObject(url, answer);
        const now = refundStateOf(url, body);
        const held = [
          now.heldFees > 0 ? `${now.heldFees} held by its requests waiting to be ordered` : '',
          now.waiting > 0 ? `${now.waiting} in refunds waiting to be ordered` : '',
        ].filter((x) => x !== '');
        // A key with no account (the treasury's or a node's key given as --key, a new one not yet funded): say
        // so, as `balance` does; "holds 0" read as an emptied account (2026-12-07).
        if (body.exists === false)
          throw new DropbearError(
            all ? 'NOTHING_TO_REFUND' : 'TX_REFUND_TOO_LARGE',
            `the client ${client} has no account: neither the genesis nor a deposit made one (is it the key you meant?); nothing was submitted`,
          );
        const of = `the client ${client} holds ${now.balance} (as of batch ${now.seq}${held.length > 0 ? `; ${held.join(', ')}` : ''})`;
        if (all && now.refundable <= 0)
          throw new DropbearError(
            'NOTHING_TO_REFUND',
            `${of}: nothing is left to take back; nothing was submitted`,
          );
        amount = all ? now.refundable : asked;
        if (amount > now.refundable)
          throw new DropbearError(
            'TX_REFUND_TOO_LARGE',
            `${of}: it may take back ${now.refundable}, not ${amount}; nothing was submitted`,
          );
        const tx = signRefund(groupIdOf(g.genesis), { client: key.publicKey, serial: now.next, amount }, key);
        try {
          seq = await submitAndWait(
            node.api,
            tx,
            budget,
            // `all` takes less than the balance while requests or refunds wait: say where the rest is ("take back
            // 64 of 68" did not add up, 2026-12-07).
            `client ${client}: take back ${amount} of ${now.balance}${all && held.length > 0 ? ` (${held.join(', ')})` : ''}, serial ${now.next}, through node ${id}`,
            // Not `balance` (until 2026-12-07): it shows only those waiting at the node it asks, and a refund tried again while the
            // first still waits takes the money twice once both are ordered. `tx` says whether this one applied.
            `see \`npx dropbear tx --group ${o.group} ${hex(txIdOf(tx))}\` (whether it applied) before trying again`,
          );
        } catch (e) {
          // The node refused it (409): a request or refund of the client reached the node after it was read.
          // `all` reads again and takes what is left (it failed, 2026-12-07); an amount says nothing was sent.
          if (!(e instanceof DropbearError && e.code === 'TX_REFUND_TOO_LARGE')) throw e;
          if (all && tries < 3) continue;
          throw new DropbearError('TX_REFUND_TOO_LARGE', `${e.message}; nothing was submitted`);
        }
        break;
      }
      process.stdout.write(
        `ordered in batch ${seq}: the client took back ${amount}; the treasury pays it once it has checked the id above (npx dropbear tx)\n`,
      );
    });
}
