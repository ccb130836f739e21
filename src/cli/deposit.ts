/**
 * `dropbear deposit` (the treasury credits a client account: a Deposit signed with the genesis's treasury
 * key, ordered by the group like a request) and `dropbear balance` (an account's balance at a node).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { DropbearError, equalBytes, groupIdOf, signDeposit, Tx, toB64u, toJson } from '../protocol/index.ts';
import { readKeyFile } from '../protocol/keyfile.ts';
import { usageError } from './errors.ts';
import { type LoadedGroup, loadGroup } from './group.ts';
import { expectObject, intRecords } from './http.ts';
import { type Budget, fetchWithin, parseNodeId, parseWaitMs, viaHint } from './model-update.ts';
import { publicKeyArg } from './owners.ts';

/** `--amount`: a positive whole number in decimal, at most 2^53 − 1; anything else a usage error (naming `all` where the command also takes it: `orAll`). */
export function parseAmount(s: string, orAll = false): number {
  const n = /^[1-9][0-9]*$/.test(s) ? Number(s) : Number.NaN;
  if (!Number.isSafeInteger(n))
    throw usageError(
      `--amount must be a positive whole number (at most 2^53 − 1)${orAll ? ' or `all`' : ''}, not ${JSON.stringify(s)}`,
    );
  return n;
}

/** The account a command is about: `--client PUBKEY`, else `--key FILE`'s public key, else group.json's client. */
function accountOf(g: LoadedGroup, o: { client?: string; key?: string }): Uint8Array {
  if (o.client !== undefined && o.key !== undefined) throw usageError('give --client or --key, not both');
  if (o.client !== undefined) return publicKeyArg('--client', o.client);
  if (o.key !== undefined) return readKeyFile(o.key).publicKey;
  return g.clientKey().publicKey;
}

function nodeOf(g: LoadedGroup, s: string): LoadedGroup['file']['nodes'][number] {
  const id = parseNodeId(s);
  const node = g.file.nodes.find((n) => n.id === id);
  if (!node) throw usageError(`--node ${s} is not in this group`);
  return node;
}

interface Account {
  balance: number;
  /** False for a key no genesis balance or deposit made an account for; undefined from a node that does not say. */
  exists?: boolean;
  seq: number;
  deposits: number;
  /** What a refund through this node may take back now, and the client's last refund serial (undefined from a node before refunds). */
  refundable?: number;
  refunds?: number;
  heldFees?: number;
  /** The client's refunds the node holds waiting to be ordered. */
  pendingRefunds: { serial: number; amount: number }[];
  /** The client's transfers the node holds waiting to be ordered (`to`: the payee's base64url key). */
  pendingTransfers: { serial: number; amount: number; to: string }[];
  /** Transfers to the key the node holds waiting to be ordered (`from`: the payer's base64url key). */
  incomingTransfers: { serial: number; amount: number; from: string }[];
}

/**
 * The client's serials used, from `refunds` (the last of the sequence its refunds and transfers share): a
 * refund or transfer ordered over the balance then uses its serial without effect, so "N applied so far"
 * (until a walkthrough, 2026-12-07) counted ones that moved nothing.
 */
function serialsUsed(last: number): string {
  if (last === 0) return 'none of its refunds and transfers ordered yet';
  return `serial${last === 1 ? ' 1' : `s 1 to ${last}`} of its refunds and transfers used, with effect or not`;
}

/** `list` when it is records of integer `serial` and `amount` with a string `field` (a key), else none. */
function keyedRecords<F extends string>(
  list: unknown,
  field: F,
): ({ serial: number; amount: number } & Record<F, string>)[] {
  return intRecords(list, ['serial', 'amount'] as const) &&
    list.every((p) => typeof (p as Record<string, unknown>)[field] === 'string')
    ? (list as ({ serial: number; amount: number } & Record<F, string>)[])
    : [];
}

/** GET /v1/accounts/:client at a node, checked. */
async function account(api: string, client: Uint8Array, b: Budget, when: string): Promise<Account> {
  const url = `${api}/v1/accounts/${toB64u(client)}`;
  const body = expectObject(url, await fetchWithin(b, url, when));
  const { balance, exists, seq, deposits } = body;
  if (!Number.isSafeInteger(balance) || !Number.isSafeInteger(seq) || !Number.isSafeInteger(deposits))
    throw new DropbearError(
      'BAD_RESPONSE',
      `${url} answered without balance, seq and deposits; is this a Dropbear node?`,
    );
  const opt = (v: unknown) => (Number.isSafeInteger(v) ? (v as number) : undefined);
  return {
    balance,
    exists: typeof exists === 'boolean' ? exists : undefined,
    seq,
    deposits,
    refundable: opt(body.refundable),
    refunds: opt(body.refunds),
    heldFees: opt(body.heldFees),
    pendingRefunds: intRecords(body.pendingRefunds, ['serial', 'amount'] as const) ? body.pendingRefunds : [],
    pendingTransfers: keyedRecords(body.pendingTransfers, 'to'),
    incomingTransfers: keyedRecords(body.incomingTransfers, 'from'),
  } as Account;
}

/**
 * The serial the next deposit takes at a node: after the last applied and every one it holds waiting
 * (GET /v1/status `deposits`, `pendingDeposits`).
 */
async function nextSerial(api: string, b: Budget): Promise<number> {
  const url = `${api}/v1/status`;
  return nextSerialOf(url, expectObject(url, await fetchWithin(b, url, 'nothing was submitted')));
}

/** The next deposit serial by a node's `/v1/status` body (read from `url`); BAD_RESPONSE without its fields. */
export function nextSerialOf(url: string, body: Record<string, unknown>): number {
  const pending = body.pendingDeposits;
  if (
    !Number.isSafeInteger(body.deposits) ||
    !Array.isArray(pending) ||
    !pending.every((p) => typeof p === 'object' && p !== null && Number.isSafeInteger(p.serial))
  )
    throw new DropbearError(
      'BAD_RESPONSE',
      `${url} answered without deposits and pendingDeposits; is this a Dropbear node (of this version)?`,
    );
  let last = body.deposits as number;
  for (const p of pending as { serial: number }[]) last = Math.max(last, p.serial);
  return last + 1;
}

/**
 * Posts a signed transaction to a node and waits until a batch carries it (GET /v1/txs/:txId): that
 * batch's seq when the transaction applied, else TX_SUPERSEDED (another of its version or serial was
 * ordered first: it had no effect); TIMEOUT when the budget runs out (`when`: what the user should check
 * before trying again). Prints `submitted <txId> (<what>)` once the node took it.
 */
export async function submitAndWait(
  api: string,
  tx: Tx,
  b: Budget,
  what: string,
  when: string,
): Promise<number> {
  const txUrl = `${api}/v1/txs`;
  const posted = await fetchWithin(b, txUrl, `it may have been submitted; ${when}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tx: toJson(Tx, tx) }),
  });
  const body = expectObject(txUrl, posted, 202);
  const txId = body.txId;
  if (typeof txId !== 'string' || !/^[0-9a-f]{64}$/.test(txId))
    throw new DropbearError('BAD_RESPONSE', `${txUrl} answered 202 without a txId; is this a Dropbear node?`);
  process.stdout.write(`submitted ${txId} (${what})\n`);
  const statusUrl = `${api}/v1/txs/${txId}`;
  while (performance.now() < b.deadline) {
    let s: Record<string, unknown> | null = null;
    try {
      s = expectObject(statusUrl, await fetchWithin(b, statusUrl, `it was submitted; ${when}`));
    } catch (e) {
      if (e instanceof DropbearError && e.code === 'TIMEOUT') break;
      // Unknown there: not ordered yet, and the node restarted since it took it (what waited there is gone;
      // a peer may still have it ordered), or it is gone. Once executed, a restart forgets no fate (ledger
      // schema 11).
      if (!(e instanceof DropbearError && e.code === 'TX_NOT_FOUND')) throw e;
    }
    // Dropped before it was ordered: another of its place was ordered first, and this one never will be.
    if (s?.status === 'superseded')
      throw new DropbearError(
        'TX_SUPERSEDED',
        `${what}: not ordered, and it never will be: another of its serial or version was ordered first, or a refund or transfer the balance no longer covered was dropped (as of batch ${String(s.seq)}); this one had no effect: run the command again`,
      );
    if (s?.status === 'executed') {
      if (s.applied !== true)
        throw new DropbearError(
          'TX_SUPERSEDED',
          `${what}: the node reports it had no effect in batch ${String(s.seq)} (another of its serial or version was ordered first, it was a replay of one applied before, a withdrawal of more than its node could withdraw then, a refund of more than the balance then, or a transfer of more than the balance then or opening an account past the ledger's bound); ${when}`,
        );
      return s.seq as number;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new DropbearError('TIMEOUT', `not ordered within ${b.waitMs} ms; it may still be: ${when}`);
}

export function registerDeposit(program: Command): void {
  program
    .command('deposit')
    .description(
      "credit a client account: signs a Deposit with the treasury's key and submits it; the group orders it like a request",
    )
    .requiredOption('--group <dir>', 'the group folder')
    .requiredOption('--amount <n>', 'how much to credit (a positive whole number)')
    .option('--client <pubkey>', "the account's public key (base64url, as `dropbear keygen` prints it)")
    .option('--key <file>', "the account's key file (its public key is read; nothing is signed with it)")
    .option(
      '--treasury-key <file>',
      "the treasury's key file (default: keys/treasury.json in the group folder, where `group init` writes it)",
    )
    .option('--node <id>', 'the node to submit to', '0')
    .option('--wait <ms>', 'give up after this long (the whole command)', '30000')
    .addHelpText(
      'after',
      "\nExample:\n  npx dropbear keygen --out alice.json            # prints alice's public key\n" +
        '  npx dropbear deposit --group out/g --client <alice public key> --amount 1000\n' +
        '  npx dropbear infer --group out/g --key alice.json image.jpg\n\n' +
        'Without --client or --key the account is the client key group.json names. Deposits apply in serial ' +
        'order; the command takes the next serial from the node and waits until the deposit is ordered. ' +
        'After TIMEOUT it may still be ordered: see `dropbear balance` before depositing again.\n\n' +
        'Exit status: 0 the deposit was ordered and credited, 2 an error (one line on stderr: error [CODE]: message; ' +
        'CLI_USAGE for a bad option; TX_SUPERSEDED when the node reports the deposit had no effect (another took its serial): read `balance` before depositing again; TIMEOUT when --wait ran out).\n',
    )
    .action(
      async (o: {
        group: string;
        amount: string;
        client?: string;
        key?: string;
        treasuryKey?: string;
        node: string;
        wait: string;
      }) => {
        const waitMs = parseWaitMs(o.wait);
        const amount = parseAmount(o.amount);
        const g = loadGroup(o.group);
        const node = nodeOf(g, o.node);
        const client = accountOf(g, o);
        const keyFile = o.treasuryKey ?? join(g.dir, 'keys', 'treasury.json');
        // A folder from `group assemble` holds no keys: the treasury's holder keeps theirs.
        if (o.treasuryKey === undefined && !existsSync(keyFile))
          throw usageError(
            `${g.dir} holds no treasury key (${keyFile}; a group of separate owners keeps it with its holder): name it with --treasury-key FILE`,
          );
        const treasury = readKeyFile(keyFile);
        if (!equalBytes(treasury.publicKey, g.genesis.treasury))
          throw new DropbearError(
            'CONFIG_KEY_MISMATCH',
            `${keyFile} is not the treasury key the genesis names; nothing was submitted`,
          );
        const budget: Budget = { node: node.id, waitMs, deadline: performance.now() + waitMs };
        // Down: nothing was submitted, and any node takes the deposit (it said only "is the node running?").
        const serial = await viaHint(o.node, 'the deposit', () => nextSerial(node.api, budget), '--node');
        const tx = signDeposit(groupIdOf(g.genesis), { client, amount, serial }, treasury);
        if (tx.kind !== 'deposit') throw new Error('unreachable');
        const who = toB64u(client);
        const when = `see \`npx dropbear balance --group ${o.group}\` before depositing again`;
        const seq = await submitAndWait(node.api, tx, budget, `deposit ${serial}: ${amount} to ${who}`, when);
        const a = await account(node.api, client, budget, `the deposit was ordered; ${when}`);
        process.stdout.write(
          `ordered in batch ${seq}: ${who} now holds ${a.balance} (node ${node.id}, batch ${a.seq})\n`,
        );
      },
    );

  program
    .command('balance')
    .description("a client account's balance, as of the last batch a node executed")
    .requiredOption('--group <dir>', 'the group folder')
    .option('--client <pubkey>', "the account's public key (base64url, as `dropbear keygen` prints it)")
    .option('--key <file>', "the account's key file (its public key is read)")
    .option('--node <id>', 'the node to ask', '0')
    .option('--wait <ms>', 'give up after this long', '10000')
    .addHelpText(
      'after',
      '\nWithout --client or --key: the client key group.json names. Prints the balance on one line, then where it was read ' +
        '(and, for a key with no account, a line saying so: its balance reads 0; else what it may take back or pay to another account now with ' +
        '`npx dropbear refund` or `npx dropbear transfer`, and the refunds and transfers waiting at the node; and a line naming the transfers to the key waiting there, if any). ' +
        'Exit status: 0 the balance was read, 2 an error (one line on stderr: error [CODE]: message).\n',
    )
    .action(async (o: { group: string; client?: string; key?: string; node: string; wait: string }) => {
      const waitMs = parseWaitMs(o.wait);
      const g = loadGroup(o.group);
      const node = nodeOf(g, o.node);
      const client = accountOf(g, o);
      const budget: Budget = { node: node.id, waitMs, deadline: performance.now() + waitMs };
      // Down: it said only "is the node running?" (a walkthrough, 2026-12-07), where deposit, refund and
      // transfer name --node: any node answers, the same once it has executed the same batches.
      const a = await account(node.api, client, budget, 'nothing was changed').catch((e: unknown) => {
        if (e instanceof DropbearError && e.code === 'NODE_UNREACHABLE')
          throw new DropbearError(
            'NODE_UNREACHABLE',
            `${e.message} Any node of the group answers: ask another (not node ${node.id}) with --node ID`,
          );
        throw e;
      });
      const deposits = `the group has applied ${a.deposits} deposit${a.deposits === 1 ? '' : 's'}`;
      process.stdout.write(
        `${a.balance}\n(client ${toB64u(client)}, node ${node.id}, as of batch ${a.seq}; ${deposits})\n`,
      );
      if (a.exists === false)
        process.stdout.write(
          'no account for this key: neither the genesis, a deposit nor a transfer made one (is it the key you meant?)\n',
        );
      else if (a.refundable !== undefined && a.refunds !== undefined) {
        const held = a.heldFees ? `; ${a.heldFees} held by its requests waiting at node ${node.id}` : '';
        // After a refund's TIMEOUT the balance alone did not say whether the refund still waited (a
        // walkthrough, 2026-12-07): the ones waiting at the node are named.
        // Refunds and transfers share the client's serials and its balance: both are named, in serial order.
        const waiting = [
          ...a.pendingRefunds.map((p) => ({ serial: p.serial, text: `serial ${p.serial} of ${p.amount}` })),
          ...a.pendingTransfers.map((p) => ({
            serial: p.serial,
            text: `serial ${p.serial} of ${p.amount} to ${p.to}`,
          })),
        ]
          .sort((x, y) => x.serial - y.serial)
          .map((p) => p.text)
          .join(', ');
        process.stdout.write(
          `it may take back or transfer ${a.refundable} now (npx dropbear refund, npx dropbear transfer; ${serialsUsed(a.refunds)}${held}${waiting === '' ? '' : `; waiting at node ${node.id} to be ordered: ${waiting}`})\n`,
        );
      }
      // A payee whose transfer waits saw only "no account" (a walkthrough, 2026-12-07).
      if (a.incomingTransfers.length > 0)
        process.stdout.write(
          `transfers to this key waiting at node ${node.id} to be ordered (not in the balance until they apply): ${a.incomingTransfers.map((t) => `${t.amount} from ${t.from} (its serial ${t.serial})`).join(', ')}\n`,
        );
    });
}
