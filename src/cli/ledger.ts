import type { Command } from 'commander';
import { verifyLedgerFile } from '../ledger/verify.ts';
import { readGenesis } from './io.ts';

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
    .addHelpText('after', '\nExit status: 0 verified, 1 problems found (one line each), 2 unreadable.\n')
    .action((db: string, opts: { genesis?: string }) => {
      const genesis = opts.genesis ? readGenesis(opts.genesis) : undefined;
      const r = verifyLedgerFile(db, genesis);
      if (r.ok) {
        process.stdout.write(
          `ok: ${r.batches} batches, ${r.ownResults} own RESULTS, chain, signatures, Merkle roots and replay verified\n`,
        );
        return;
      }
      for (const p of r.problems) process.stdout.write(`${p}\n`);
      process.exitCode = 1;
    });
}
