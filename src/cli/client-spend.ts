/**
 * What `dropbear refund` and `dropbear transfer` share: a client's own transaction that takes money out of its
 * balance (a Refund or a Transfer, signed with the client's key). The two share the client's one sequence of
 * serials (the first is 1; a refund and a transfer of one serial are rivals, only one applies) and the same
 * room in the balance, so both read the next serial and what may be taken from a node's
 * `GET /v1/accounts/:client` (refundStateOf) and submit through the same loop (submitClientSpend).
 */
import { DropbearError, groupIdOf, hex, type KeyPair, type Tx, toB64u, txIdOf } from '../protocol/index.ts';
import { readKeyFile } from '../protocol/keyfile.ts';
import { parseAmount, submitAndWait } from './deposit.ts';
import { usageError } from './errors.ts';
import { type LoadedGroup, loadGroup } from './group.ts';
import { expectObject, intRecords } from './http.ts';
import { type Budget, fetchWithin, parseNodeId, parseWaitMs, viaHint } from './model-update.ts';

/**
 * The client's next serial and what it may take out now, by a node's `GET /v1/accounts/:client` body (read
 * from `url`): the serial after the last applied (`refunds`: the last of the sequence refunds and transfers
 * share) and every refund and transfer of it the node holds waiting (`pendingRefunds`, `pendingTransfers`:
 * until 2026-12-07 the transfers were left out, and a refund took the serial of a transfer waiting, a rival
 * of it, where it meant to follow it); `waiting` the largest of each of their serials (only one of a serial
 * applies); `refundable` as the node computed it (the balance less what its requests waiting there may be
 * charged and its refunds and transfers waiting). BAD_RESPONSE without them; a node without
 * `pendingTransfers` (one before transfers) holds none.
 */
export function refundStateOf(
  url: string,
  body: Record<string, unknown>,
): { next: number; balance: number; refundable: number; heldFees: number; waiting: number; seq: number } {
  const { refunds, pendingRefunds, refundable, heldFees, balance, seq } = body;
  const pendingTransfers = body.pendingTransfers ?? [];
  if (
    !Number.isSafeInteger(refunds) ||
    !Number.isSafeInteger(refundable) ||
    !Number.isSafeInteger(heldFees) ||
    !Number.isSafeInteger(balance) ||
    !Number.isSafeInteger(seq) ||
    !intRecords(pendingRefunds, ['serial', 'amount'] as const) ||
    !intRecords(pendingTransfers, ['serial', 'amount'] as const)
  )
    throw new DropbearError(
      'BAD_RESPONSE',
      `${url} answered without balance, refunds, pendingRefunds, pendingTransfers, heldFees and refundable; is this a Dropbear node (of this version)?`,
    );
  let last = refunds as number;
  const largest = new Map<number, number>();
  for (const p of [...pendingRefunds, ...pendingTransfers]) {
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

/** The options `refund` and `transfer` share, as commander gives them. */
export interface ClientSpendOptions {
  group: string;
  amount: string;
  key?: string;
  node: string;
  wait: string;
}

/** Those options read and checked (CLI_USAGE for a bad one), before anything is asked of a node. */
export interface ClientSpendPlan {
  dir: string;
  g: LoadedGroup;
  node: LoadedGroup['file']['nodes'][number];
  /** The paying client's key: --key, else the client key group.json names. */
  key: KeyPair;
  /** `--amount all`: everything the client may take out now. */
  all: boolean;
  /** The amount asked for (0 with `all`). */
  asked: number;
  waitMs: number;
}

export function clientSpendPlan(o: ClientSpendOptions): ClientSpendPlan {
  const all = o.amount === 'all';
  const asked = all ? 0 : parseAmount(o.amount, true);
  const waitMs = parseWaitMs(o.wait);
  const g = loadGroup(o.group);
  const id = parseNodeId(o.node);
  const node = g.file.nodes.find((n) => n.id === id);
  if (!node) throw usageError(`--node ${o.node} is not in this group`);
  const key = o.key !== undefined ? readKeyFile(o.key) : g.clientKey();
  return { dir: o.group, g, node, key, all, asked, waitMs };
}

/** How a refund and a transfer differ in what the loop says and signs. */
export interface ClientSpendKind {
  /** 'the refund', 'the transfer': what any node takes (NODE_UNREACHABLE's hint). */
  what: string;
  /** The node's and the command's code for more than the client may take out. */
  tooLarge: 'TX_REFUND_TOO_LARGE' | 'TX_TRANSFER_TOO_LARGE';
  /** The code for `all` with nothing left (or no account). */
  nothing: 'NOTHING_TO_REFUND' | 'NOTHING_TO_TRANSFER';
  /** 'take back', 'transfer': "it may take back 420, not 421", "nothing is left to take back". */
  verb: string;
  /** The signed transaction of `amount` at `serial`. */
  sign(groupId: Uint8Array, key: KeyPair, serial: number, amount: number): Tx;
  /** The submitted line's words for it: `take back 400 of 1000`, `pay 400 of 1000 to KEY`. */
  describe(amount: number, balance: number): string;
  /**
   * Asked once of the same node, after the client's account was read and before anything is signed: words
   * the submitted line adds after `describe`'s (a transfer's payee with no account), or ''.
   */
  note?(budget: Budget, api: string): Promise<string>;
}

/**
 * Reads the client's account at the plan's node, signs the next serial for the amount (with `all`, what the
 * node says may be taken out), submits it there and waits until it is ordered and applied: the batch's seq
 * and the amount. More than may be taken out is refused before anything is signed (`kind.tooLarge`, or
 * `kind.nothing` for `all` with nothing left or a key with no account); refused so by the node (a request or a
 * refund or transfer of the client reached it after it was read), `all` reads again and takes what is left,
 * up to 3 times.
 */
export async function submitClientSpend(
  p: ClientSpendPlan,
  kind: ClientSpendKind,
): Promise<{ seq: number; amount: number }> {
  const { node, key, all, asked } = p;
  const client = toB64u(key.publicKey);
  const budget: Budget = { node: node.id, waitMs: p.waitMs, deadline: performance.now() + p.waitMs };
  const url = `${node.api}/v1/accounts/${client}`;
  let note = '';
  for (let tries = 0; ; tries++) {
    // Down: nothing was submitted, and any node takes it (signed with the client's key). It said only "is the
    // node running?" (2026-12-07), where withdraw and set-fee name --via.
    const answer = await viaHint(
      String(node.id),
      kind.what,
      () => fetchWithin(budget, url, 'nothing was submitted'),
      '--node',
    );
    const body = expectObject(url, answer);
    const now = refundStateOf(url, body);
    const held = [
      now.heldFees > 0 ? `${now.heldFees} held by its requests waiting to be ordered` : '',
      now.waiting > 0 ? `${now.waiting} in refunds and transfers waiting to be ordered` : '',
    ].filter((x) => x !== '');
    // A key with no account (the treasury's or a node's key given as --key, a new one not yet funded): say
    // so, as `balance` does; "holds 0" read as an emptied account (2026-12-07).
    if (body.exists === false)
      throw new DropbearError(
        all ? kind.nothing : kind.tooLarge,
        `the client ${client} has no account: neither the genesis, a deposit nor a transfer made one (is it the key you meant?); nothing was submitted`,
      );
    const of = `the client ${client} holds ${now.balance} (as of batch ${now.seq}${held.length > 0 ? `; ${held.join(', ')}` : ''})`;
    if (all && now.refundable <= 0)
      throw new DropbearError(kind.nothing, `${of}: nothing is left to ${kind.verb}; nothing was submitted`);
    const amount = all ? now.refundable : asked;
    if (amount > now.refundable)
      throw new DropbearError(
        kind.tooLarge,
        `${of}: it may ${kind.verb} ${now.refundable}, not ${amount}; nothing was submitted`,
      );
    if (tries === 0 && kind.note) note = await kind.note(budget, node.api);
    const tx = kind.sign(groupIdOf(p.g.genesis), key, now.next, amount);
    try {
      const seq = await submitAndWait(
        node.api,
        tx,
        budget,
        // `all` takes less than the balance while requests or refunds wait: say where the rest is ("take back
        // 64 of 68" did not add up, 2026-12-07).
        `client ${client}: ${kind.describe(amount, now.balance)}${all && held.length > 0 ? ` (${held.join(', ')})` : ''}${note}, serial ${now.next}, through node ${node.id}`,
        // Not `balance` (until 2026-12-07): it shows only those waiting at the node it asks, and one tried
        // again while the first still waits takes the money twice once both are ordered. `tx` says whether
        // this one applied.
        `see \`npx dropbear tx --group ${p.dir} ${hex(txIdOf(tx))}\` (whether it applied) before trying again`,
      );
      return { seq, amount };
    } catch (e) {
      // The node refused it (409): a request, refund or transfer of the client reached the node after it was
      // read. `all` reads again and takes what is left (it failed, 2026-12-07); an amount says nothing was sent.
      if (!(e instanceof DropbearError && e.code === kind.tooLarge)) throw e;
      if (all && tries < 3) continue;
      throw new DropbearError(kind.tooLarge, `${e.message}; nothing was submitted`);
    }
  }
}
