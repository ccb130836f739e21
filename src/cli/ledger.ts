import type { Command } from 'commander';
import { certificateFromFile } from '../ledger/extract.ts';
import { verifyLedgerFile } from '../ledger/verify.ts';
import { Certificate, toJson } from '../protocol/index.ts';
import { usageError } from './errors.ts';
import { checkOutputFile, readGenesis, stableJson, writeOutputFile } from './io.ts';
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
        '2 unreadable (LEDGER_NOT_FOUND: no such file; LEDGER_UNREADABLE: not a Dropbear ledger;\n' +
        'LEDGER_CORRUPT: SQLite finds the file damaged; LEDGER_READ_ONLY: its folder\n' +
        'cannot be written; LEDGER_SCHEMA_VERSION: written by an older or newer build) or a bad option\n' +
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
  ledger
    .command('certificate')
    .description(
      "a request's certificate read from a ledger file, as the node serves it: also one older than the " +
        'certificates a running node serves (node config certificateIndexRequests), or from a copy of the file',
    )
    .argument('<db>', 'the ledger file (a running node may be writing it)')
    .argument('<requestId>', 'the request id, 64 hex digits')
    .option('--out <file>', 'write the certificate JSON there (whole or not at all) instead of to stdout')
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear ledger certificate out/group/data/node-0/ledger.sqlite 3f2a…e9 --out cert.json\n' +
        '  npx dropbear verify cert.json --genesis out/group/genesis.json\n\n' +
        'Reads the batches from the newest back. Exit status: 0 found, 1 none (CERTIFICATE_NOT_FOUND: no outcome\n' +
        'in this ledger; CERTIFICATE_NOT_CERTIFIED: its batch has fewer than q receipt signatures here), 2 a bad\n' +
        'argument (CLI_USAGE) or an unreadable ledger (LEDGER_NOT_FOUND, LEDGER_UNREADABLE, LEDGER_CORRUPT, …).\n',
    )
    .action((db: string, id: string, opts: { out?: string }) => {
      if (!/^[0-9a-fA-F]{64}$/.test(id))
        throw usageError(`a request id is 64 hex digits, got "${id.slice(0, 80)}"`);
      if (opts.out) checkOutputFile('--out', opts.out);
      const started = Date.now();
      const r = certificateFromFile(db, Buffer.from(id, 'hex'), (batches) =>
        process.stderr.write(
          `searching: ${batches} batches read, ${Math.round((Date.now() - started) / 1000)} s\n`,
        ),
      );
      if (!r.found) {
        process.stderr.write(
          r.executed
            ? `error [CERTIFICATE_NOT_CERTIFIED]: request ${id} executed in batch ${r.seq}, whose receipt has fewer than q signatures in this ledger\n`
            : `error [CERTIFICATE_NOT_FOUND]: request ${id} has no outcome in ${db}\n`,
        );
        process.exitCode = 1;
        return;
      }
      const text = stableJson(toJson(Certificate, r.certificate));
      if (opts.out) {
        writeOutputFile(opts.out, text);
        process.stderr.write(`certificate of request ${id} (batch ${r.seq}) written to ${opts.out}\n`);
      } else process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    });
}
