/**
 * `dropbear tx TXID`: what every node of a group says of one ordered transaction (GET /v1/txs/:txId), and
 * whether f + 1 of them agree it was executed and applied, so that at least one correct node did: what the
 * treasury checks before it pays an owner's withdrawal (docs/api.md, "Withdrawals"), and anyone after a
 * deposit, fee change or model update.
 */
import type { Command } from 'commander';
import { DropbearError, fromJson, hex, Tx, toB64u, toJson, txIdOf } from '../protocol/index.ts';
import { usageError } from './errors.ts';
import { loadGroup } from './group.ts';
import { expectObject, fetchNodeJson } from './http.ts';

/** Each request to a node gives up after this long (the node is reported unreachable). */
const TIMEOUT_MS = 3000;

/** One node's word on a transaction. */
export type TxWord =
  | { node: number; status: 'pending' }
  | { node: number; status: 'executed'; seq: number; applied: boolean }
  | { node: number; status: 'superseded'; seq: number }
  | { node: number; status: 'unknown' }
  | { node: number; status: 'error'; error: string };

/**
 * The verdict on the nodes' words with fault bound f: `applied` when f + 1 nodes say executed and applied
 * in one batch (then at least one correct node executed it so; honest nodes all execute the same batches,
 * so the others will too, and an applied transaction keeps that answer for good); else `noEffect` when f + 1
 * say executed without effect in one batch (the latest such: one ordered ahead of the serial or version it
 * follows is proposed again and may yet apply in a later batch); else `unconfirmed`. Each node counts once
 * (a node listed twice in group.json is one word). `split` lists the nodes whose word no correct node could
 * give beside the verdict's (a faulty node): for `applied` in batch s, any other word of an execution but
 * "without effect" in a batch before s (a node that has not executed s yet); for `noEffect` in batch s,
 * "applied" in s or before.
 */
export function txVerdict(
  words: TxWord[],
  f: number,
): { verdict: 'applied' | 'noEffect' | 'unconfirmed'; seq: number | null; nodes: number[]; split: number[] } {
  const executed = words.filter((w): w is Extract<TxWord, { status: 'executed' }> => w.status === 'executed');
  const by = new Map<string, { seq: number; applied: boolean; nodes: Set<number> }>();
  for (const w of executed) {
    const k = `${w.seq}:${w.applied}`;
    const e = by.get(k) ?? { seq: w.seq, applied: w.applied, nodes: new Set<number>() };
    e.nodes.add(w.node);
    by.set(k, e);
  }
  const agreed = [...by.values()].filter((e) => e.nodes.size >= f + 1);
  // Applied first (final), else the latest batch without effect.
  const pick =
    agreed.find((e) => e.applied) ?? agreed.filter((e) => !e.applied).sort((a, b) => b.seq - a.seq)[0];
  if (!pick) return { verdict: 'unconfirmed', seq: null, nodes: [], split: [] };
  const correctBeside = (w: Extract<TxWord, { status: 'executed' }>): boolean =>
    (w.seq === pick.seq && w.applied === pick.applied) ||
    (pick.applied ? !w.applied && w.seq < pick.seq : w.seq > pick.seq || (!w.applied && w.seq !== pick.seq));
  const split = [...new Set(executed.filter((w) => !correctBeside(w)).map((w) => w.node))].filter(
    (n) => !pick.nodes.has(n),
  );
  return {
    verdict: pick.applied ? 'applied' : 'noEffect',
    seq: pick.seq,
    nodes: [...pick.nodes],
    split,
  };
}

/** What a transaction is, in a line: its kind and fields. */
export function describeTx(tx: Tx): string {
  switch (tx.kind) {
    case 'withdrawal':
      return `a withdrawal: node ${tx.withdrawal.node} takes out ${tx.withdrawal.amount} (its serial ${tx.withdrawal.serial})`;
    case 'refund':
      return `a refund: the client ${toB64u(tx.refund.client)} takes back ${tx.refund.amount} (its serial ${tx.refund.serial})`;
    case 'transfer':
      return `a transfer: the client ${toB64u(tx.transfer.client)} pays ${tx.transfer.amount} to the account of ${toB64u(tx.transfer.to)} (its serial ${tx.transfer.serial})`;
    case 'deposit':
      return `a deposit: ${tx.deposit.amount} to the client ${toB64u(tx.deposit.client)} (the treasury's serial ${tx.deposit.serial})`;
    case 'feeChange':
      return `a fee change: node ${tx.change.node} charges ${tx.change.fee} per counted vote (its fee version ${tx.change.version})`;
    case 'modelUpdate':
      return `a model update: node ${tx.update.node} runs the model ${hex(tx.update.newDigest)} (its version ${tx.update.version})`;
  }
}

/**
 * A node's answer to GET /v1/txs/:txId as a TxWord (a 404 TX_NOT_FOUND is `unknown`). The transaction it
 * returns (`tx`, since 2026-12-07) must hash to the id, else the word is an error: a node cannot make the
 * caller act on another transaction than the one named. One that does goes to `seen`.
 */
async function wordOf(node: number, api: string, txId: string, seen: { tx: Tx | null }): Promise<TxWord> {
  const url = `${api}/v1/txs/${txId}`;
  try {
    const a = await fetchNodeJson(url, TIMEOUT_MS);
    const b = expectObject(url, a);
    if (b.tx !== undefined) {
      let tx: Tx | null = null;
      try {
        tx = fromJson(Tx, b.tx);
      } catch {
        tx = null;
      }
      if (!tx || hex(txIdOf(tx)) !== txId)
        return {
          node,
          status: 'error',
          error: `BAD_RESPONSE: ${url} answered with a transaction that ${tx ? 'does not hash to the id' : 'does not decode'}`,
        };
      seen.tx = tx;
    }
    if (b.status === 'pending') return { node, status: 'pending' };
    if (b.status === 'executed' && Number.isSafeInteger(b.seq) && typeof b.applied === 'boolean')
      return { node, status: 'executed', seq: b.seq as number, applied: b.applied };
    if (b.status === 'superseded' && Number.isSafeInteger(b.seq))
      return { node, status: 'superseded', seq: b.seq as number };
    return {
      node,
      status: 'error',
      error: `BAD_RESPONSE: ${url} answered a status this build does not read`,
    };
  } catch (e) {
    if (e instanceof DropbearError && e.code === 'TX_NOT_FOUND') return { node, status: 'unknown' };
    const code = e instanceof DropbearError ? e.code : 'NETWORK';
    return { node, status: 'error', error: `${code}: ${(e as Error).message}` };
  }
}

function wordText(w: TxWord): string {
  switch (w.status) {
    case 'pending':
      return 'pending (waiting to be ordered)';
    case 'executed':
      return `executed in batch ${w.seq}, ${w.applied ? 'applied' : 'without effect'}`;
    case 'superseded':
      return `superseded as of batch ${w.seq} (another of its serial or version was ordered first; never ordered)`;
    case 'unknown':
      return 'unknown here (TX_NOT_FOUND)';
    case 'error':
      return w.error;
  }
}

export function registerTx(program: Command): void {
  program
    .command('tx')
    .description(
      'what every node says of an ordered transaction (a withdrawal, deposit, fee change or model update), and whether f + 1 agree it applied',
    )
    .argument(
      '<txId>',
      'the transaction id (64 hex digits, as `withdraw`, `deposit`, `set-fee` and `model-update` print it)',
    )
    .requiredOption('--group <dir>', 'the group folder')
    .option('--json', "print each node's word and the verdict as JSON")
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear tx --group out/g 3f9c…e1\n\n' +
        'Asks every node (GET /v1/txs/TXID) and prints what the transaction is (as the nodes return it, checked against the id: ' +
        "its bytes hash to it; a node returning another is named with BAD_RESPONSE), each node's word, then the verdict: applied when f + 1 nodes say it was executed and " +
        'applied in the same batch (at least one of them is correct, and every correct node executes the same batches), ' +
        'what the treasury checks before it pays a withdrawal. A node that disagrees with that batch is named (a faulty node).\n\n' +
        'Exit status: 0 applied (f + 1 agree), 1 not confirmed (pending, without effect, superseded, unknown, or too few nodes answered), ' +
        '2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad id).\n',
    )
    .action(async (txId: string, o: { group: string; json?: boolean }) => {
      if (!/^[0-9a-fA-F]{64}$/.test(txId))
        throw usageError(`<txId> must be 64 hex digits (a transaction id), not ${JSON.stringify(txId)}`);
      const id = txId.toLowerCase();
      const g = loadGroup(o.group);
      const f = g.genesis.f;
      // Only the genesis's nodes have a word: an entry of group.json with another id (a hand edit) would
      // otherwise count toward f + 1 (txVerdict counts each id once).
      const n = g.genesis.nodes.length;
      // The transaction as the nodes return it, checked against the id (all such are the same bytes).
      const seen: { tx: Tx | null } = { tx: null };
      const words = await Promise.all(
        g.file.nodes.map(
          (node): Promise<TxWord> =>
            node.id < n
              ? wordOf(node.id, node.api, id, seen)
              : Promise.resolve({
                  node: node.id,
                  status: 'error',
                  error: `NOT_A_NODE: not a node of the genesis (nodes 0 to ${n - 1}); ${node.api} not asked, and no word of it counts`,
                }),
        ),
      );
      const v = txVerdict(words, f);
      const tx = seen.tx;
      if (o.json)
        process.stdout.write(
          `${JSON.stringify({ txId: id, f, tx: tx ? toJson(Tx, tx) : null, what: tx ? describeTx(tx) : null, answers: words, verdict: v.verdict, seq: v.seq, agreeing: v.nodes, split: v.split }, null, 2)}\n`,
        );
      else {
        // What it is, as the nodes returned it and checked against the id (a node before 2026-12-07 does
        // not say): what the treasury pays, for a withdrawal.
        process.stdout.write(
          tx
            ? `transaction: ${describeTx(tx)}\n`
            : 'transaction: no node returned it (not waiting or executed anywhere asked, or nodes of an earlier version)\n',
        );
        for (const w of words) process.stdout.write(`node ${w.node}: ${wordText(w)}\n`);
        process.stdout.write(
          v.verdict === 'applied'
            ? `applied: nodes ${v.nodes.join(', ')} (f + 1 = ${f + 1} needed) say executed in batch ${v.seq} and applied\n`
            : v.verdict === 'noEffect'
              ? `not applied: nodes ${v.nodes.join(', ')} say executed in batch ${v.seq} without effect (another of its serial or version came first, a replay, or over a bound; one ordered ahead of the serial or version it follows may yet apply in a later batch: ask again)\n`
              : `not confirmed: fewer than f + 1 = ${f + 1} nodes say it was executed in one batch\n`,
        );
        if (v.split.length > 0)
          process.stdout.write(
            `warning: node${v.split.length > 1 ? 's' : ''} ${v.split.join(', ')} say otherwise of batch ${v.seq} (a correct node would not)\n`,
          );
      }
      if (v.verdict !== 'applied') process.exitCode = 1;
    });
}
