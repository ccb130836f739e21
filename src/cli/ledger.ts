import type { Command } from 'commander';
import { verifyLedgerFile } from '../ledger/verify.ts';
import { readGenesis } from './io.ts';
import { parseNodeId } from './model-update.ts';

/** How often a running `ledger verify` reports its progress (stderr). */
const PROGRESS_MS = 5000;

export function registerLedger(program: Command): void {
  const ledger = program.command('ledger').description("inspect a node's durable ledger (SQLite file)");
  ledger
    .command('verify')
    .description(
      're-check a ledger end to end: receipt hash chain, receipt signatures, Merkle roots, a replay ' +
        "of every batch from the genesis stored in the file, and the node's own signed RESULTS",
    )
    .argument('<db>', 'the ledger file')
    .option('--genesis <file>', 'also require the ledger to belong to this group (JSON genesis)')
    .option(
      '--node <id>',
      "the node whose ledger this is: every own RESULTS row must be signed by it (the file does not say; without it the rows need only all be one node's)",
    )
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear ledger verify out/group/data/node-2/ledger.sqlite --node 2\n\n' +
        'Progress goes to stderr every 5 s. Exit status: 0 verified, 1 problems found (one line each),\n' +
        '2 unreadable (LEDGER_CORRUPT: SQLite finds the file damaged; LEDGER_READ_ONLY: its folder\n' +
        'cannot be written) or a bad option\n' +
        "(--node not a node id: CLI_USAGE; not a node of the ledger's group: LEDGER_BAD_NODE).\n",
    )
    .action((db: string, opts: { genesis?: string; node?: string }) => {
      const node = opts.node === undefined ? undefined : parseNodeId(opts.node);
      const genesis = opts.genesis ? readGenesis(opts.genesis) : undefined;
      // A long run (~30 s per million requests) says how far it is, on stderr, every few seconds.
      const started = Date.now();
      let shown = started;
      const onProgress = (done: number, total: number) => {
        const now = Date.now();
        if (now - shown < PROGRESS_MS) return;
        shown = now;
        const pct = total > 0 ? Math.floor((100 * done) / total) : 100;
        process.stderr.write(
          `verifying: ${done} of ${total} batches (${pct} %), ${Math.round((now - started) / 1000)} s\n`,
        );
      };
      const r = verifyLedgerFile(db, genesis, { node, onProgress });
      if (r.ok) {
        const own = node === undefined ? '' : ` of node ${node}`;
        process.stdout.write(
          `ok: ${r.batches} batches, ${r.ownResults} own RESULTS${own}, chain, signatures, Merkle roots and replay verified\n`,
        );
        return;
      }
      for (const p of r.problems) process.stdout.write(`${p}\n`);
      process.exitCode = 1;
    });
}
