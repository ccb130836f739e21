/**
 * `dropbear transfer`: a client pays part of its balance to another account (a Transfer signed with the
 * client's key, ordered by the group like a refund, with which it shares the client's serials). The money
 * stays in the group: the ledger moves it from one balance to the other, opening the payee's account if it
 * has none (docs/api.md, "Transfers").
 */
import { closeSync, existsSync, openSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { DropbearError, equalBytes, type Genesis, signTransfer, toB64u } from '../protocol/index.ts';
import { readAtMost, readKeyFile } from '../protocol/keyfile.ts';
import { type ClientSpendKind, clientSpendPlan, submitClientSpend } from './client-spend.ts';
import { usageError } from './errors.ts';
import { expectObject } from './http.ts';
import { fetchWithin } from './model-update.ts';
import { publicKeyArg } from './owners.ts';

/**
 * `--to`: the payee's public key as `dropbear keygen` prints it (base64url, 32 bytes), or a key file (as
 * `--key` takes: its public key is read). A file of that name wins over the text read as a key; neither is
 * CLI_USAGE saying what it takes (and that no such file exists, when it is not a key).
 */
export function payeeArg(text: string): Uint8Array {
  if (existsSync(text)) {
    // A folder read "(no such file)" (a walkthrough, 2026-12-07).
    if (statSync(text).isDirectory())
      throw usageError(
        `--to ${JSON.stringify(text)} is a folder, not a key file: give the payee's public key as \`dropbear keygen\` prints it, or its key file`,
      );
    try {
      return readKeyFile(text).publicKey;
    } catch (e) {
      // A file that is no key at all and that others may read (genesis.json, an input) was refused as "this
      // secret key", with `chmod 600` as the fix (a walkthrough, 2026-12-07): say it is no key file. A key
      // file others may read still gets KEY_FILE_PERMISSIONS.
      if (e instanceof DropbearError && e.code === 'KEY_FILE_PERMISSIONS' && !holdsKey(text))
        throw new DropbearError(
          'KEY_FILE_INVALID',
          `${text} is not an ed25519 key file (kind, 64-hex-digit seed): --to takes the payee's public key as \`dropbear keygen\` prints it, or its key file`,
        );
      throw e;
    }
  }
  try {
    return publicKeyArg('--to', text);
  } catch (e) {
    if (!(e instanceof DropbearError)) throw e;
    const t = text.trim();
    throw usageError(
      `--to must be the payee's public key as \`dropbear keygen\` prints it (base64url, 32 bytes, 43 characters) or its key file, got ${JSON.stringify(text)}` +
        (/^[0-9a-fA-F]{64}$/.test(t)
          ? ': that is hex; give the base64url form'
          : /^[A-Za-z0-9_-]{43}$/.test(t)
            ? ''
            : ' (no such file)'),
    );
  }
}

/** What `key` is in `genesis` (a node's key, with its owner, or the treasury's), or null when it is neither. */
export function groupKeyName(genesis: Genesis, key: Uint8Array): string | null {
  const node = genesis.nodes.find((n) => equalBytes(n.publicKey, key));
  if (node) return `node ${node.id}'s key (owner ${JSON.stringify(node.owner)})`;
  if (equalBytes(genesis.treasury, key)) return "the treasury's key";
  return null;
}

/** Whether the file (read at most 64 KiB of it) is JSON with a key file's `kind` and `seed`. */
function holdsKey(path: string): boolean {
  try {
    const fd = openSync(path, 'r');
    try {
      const b = readAtMost(fd, 1 << 16);
      if (b === null) return false;
      const j = JSON.parse(b.toString('utf8')) as { kind?: unknown; seed?: unknown } | null;
      return typeof j === 'object' && j !== null && j.kind === 'ed25519' && typeof j.seed === 'string';
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}

function transferKind(to: Uint8Array): ClientSpendKind {
  const payee = toB64u(to);
  return {
    what: 'the transfer',
    tooLarge: 'TX_TRANSFER_TOO_LARGE',
    nothing: 'NOTHING_TO_TRANSFER',
    verb: 'transfer',
    sign: (groupId, key, serial, amount) =>
      signTransfer(groupId, { client: key.publicKey, to, serial, amount }, key),
    describe: (amount, balance) => `pay ${amount} of ${balance} to ${payee}`,
    // A key with no account gets one opened by the transfer: a mistyped key (any 43 base64url characters
    // are a key) takes the money into an account nobody holds. It went unsaid (a walkthrough, 2026-12-07):
    // the submitted line says so, so that a key that should have had an account stands out.
    note: async (budget, api) => {
      const url = `${api}/v1/accounts/${payee}`;
      const body = expectObject(url, await fetchWithin(budget, url, 'nothing was submitted'));
      return body.exists === false
        ? ` (which has no account as of batch ${body.seq}: this transfer opens one; if it should have had one, check the key)`
        : '';
    },
  };
}

export function registerTransfer(program: Command): void {
  program
    .command('transfer')
    .description(
      "pay part of a client's balance to another account: signs a Transfer with the client's key and submits it; the group orders it like a refund, and the money stays in the group",
    )
    .requiredOption('--group <dir>', 'the group folder')
    .requiredOption(
      '--to <key>',
      'the payee: its public key (base64url, as `dropbear keygen` prints it) or its key file (the public key is read)',
    )
    .requiredOption(
      '--amount <n>',
      'how much to pay (a positive whole number), or `all`: everything the client may pay now',
    )
    .option('--key <file>', "the paying client's key file (default: the client key group.json names)")
    .option('--node <id>', 'the node to submit through', '0')
    .option('--wait <ms>', 'give up after this long (the whole command)', '30000')
    .option(
      '--allow-group-key',
      "pay --to even when it is a node's key or the treasury's key in the group's genesis (refused without it)",
    )
    .addHelpText(
      'after',
      "\nExample:\n  npx dropbear keygen --out bob.json            # prints bob's public key\n" +
        '  npx dropbear transfer --group out/g --key alice.json --to <bob public key> --amount 400\n' +
        '  npx dropbear transfer --group out/g --key alice.json --to bob.json --amount all --node 1   # node 0 is down: through node 1\n\n' +
        "The command reads the client's next serial (its refunds and transfers share one sequence) and what it may pay from the node it submits to " +
        "(GET /v1/accounts/KEY: the balance less the maxFee of the client's requests waiting there to be ordered and its refunds and transfers waiting), " +
        'and waits there until the transfer is ordered. More than that is refused before anything is signed, TX_TRANSFER_TOO_LARGE (`all` with nothing left: ' +
        'NOTHING_TO_TRANSFER), as a node refuses it (409 TX_TRANSFER_TOO_LARGE; `all` refused so, because a request of the client reached the node after it ' +
        "was read, reads again and takes what is left); --to the paying client itself is TX_TRANSFER_TO_SELF; --to a node's key or the treasury's key in the " +
        "group's genesis is TRANSFER_TO_GROUP_KEY unless --allow-group-key (such a transfer opens a client account for that key, which only requests and " +
        "refunds signed with it spend: it pays no owner's earnings, which `dropbear withdraw` pays out). " +
        "The group moves the money after the requests ordered in the transfer's own batch are charged, and opens the payee's account if it has none: " +
        "the payee's requests spend it from the next batch on. The money stays in the group.\n\n" +
        'Exit status: 0 the transfer was ordered and applied, 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option; ' +
        'TX_TRANSFER_TOO_LARGE, NOTHING_TO_TRANSFER, TX_TRANSFER_TO_SELF or TRANSFER_TO_GROUP_KEY, nothing submitted; ' +
        'TX_SUPERSEDED when a refund or another transfer of the same serial was ordered first, or the balance no longer covered it when it was ordered; ' +
        'TIMEOUT when --wait ran out: it may still be ordered, see `npx dropbear tx --group DIR TXID` with the TXID printed before trying again).\n',
    )
    .action(
      async (o: {
        group: string;
        to: string;
        amount: string;
        key?: string;
        node: string;
        wait: string;
        allowGroupKey?: boolean;
      }) => {
        const plan = clientSpendPlan(o);
        const to = payeeArg(o.to);
        // The node refuses it (400 TX_TRANSFER_TO_SELF): said here before anything is signed or asked.
        if (equalBytes(to, plan.key.publicKey))
          throw new DropbearError(
            'TX_TRANSFER_TO_SELF',
            `--to is the paying client's own key (${toB64u(to)}): a transfer to itself would move nothing; nothing was submitted`,
          );
        // The ledger takes it (any key may hold a client account), but it is most likely a payer who meant to
        // pay an owner: said before anything is signed or asked.
        const groupKey = groupKeyName(plan.g.genesis, to);
        if (groupKey !== null && o.allowGroupKey !== true)
          throw new DropbearError(
            'TRANSFER_TO_GROUP_KEY',
            `--to is ${groupKey} (${toB64u(to)}): a transfer opens a client account for that key, which only requests and refunds signed with it spend; it pays no owner's earnings (\`dropbear withdraw\` pays those out). Nothing was submitted; pass --allow-group-key to pay that account anyway`,
          );
        const { seq, amount } = await submitClientSpend(plan, transferKind(to));
        process.stdout.write(`ordered in batch ${seq}: the client paid ${amount} to ${toB64u(to)}\n`);
      },
    );
}
