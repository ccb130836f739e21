import type { Command } from 'commander';
import { startNode } from '../node/run.ts';
import { dashboardScript } from '../web/bundle.ts';
import { DASHBOARD_HTML } from '../web/page.ts';
import { reportAndExit } from './errors.ts';
import { watchParent } from './parent.ts';

export function registerNode(program: Command): void {
  program
    .command('node')
    .description('run one node of a group (one process): consensus, ledger, model, peer transport, HTTP API')
    .requiredOption('--config <file>', 'the node config (JSON; `dropbear group init` writes them)')
    .option(
      '--rejoin',
      'this node lost its ledger (a new disk, a deleted file): start with a new one, signing in no view the group may have used until 2f+1 peers have told it theirs',
    )
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear node --config out/group/node-0.json\n\nStops cleanly on SIGTERM, SIGHUP or Ctrl-C (finishes the current write, closes the ledger).\n' +
        'A node whose ledger is gone (LEDGER_LOST) is started again with --rejoin, never with a plain new ledger:\n' +
        'it may have signed in the current view before, and must not sign there again.\n\n' +
        'Exit status: 0 stopped by a signal (or its parent process ended), 1 a failure while stopping,\n' +
        '2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument).\n',
    )
    .action(async (o: { config: string; rejoin?: boolean }) => {
      // A log reader that went away (a closed pipe) must neither stop nor hang the node: lines written
      // after that are lost, the node keeps serving and still stops cleanly on a signal.
      for (const s of [process.stdout, process.stderr])
        s.on('error', (e: NodeJS.ErrnoException) => {
          if (e.code !== 'EPIPE') reportAndExit(e);
        });
      // Started by `group start` (or a bench) with an IPC channel: when that process ends, so does the node.
      const whenParentGone = watchParent();
      const node = await startNode(o.config, {
        dashboard: { html: DASHBOARD_HTML, script: dashboardScript },
        rejoin: o.rejoin === true,
      });
      let signalled = false;
      const stop = (sig: string) => {
        if (signalled) return;
        signalled = true;
        node.stop().then(
          () => process.exit(0),
          (e) => {
            process.stderr.write(`error while stopping on ${sig}: ${(e as Error).message}\n`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      // A closed terminal sends SIGHUP to every process of its group, the nodes of `group start` too: its
      // default action killed them uncleanly (unwritten log lines lost, the ledger left to crash recovery).
      process.on('SIGHUP', () => stop('SIGHUP'));
      // Said only now that a signal stops it cleanly: a supervisor that sends SIGTERM as soon as it reads
      // this line killed the node uncleanly (the default action) when it came before the handlers.
      process.stdout.write(
        `node ${node.config.id} serving ${node.apiUrl} (dashboard ${node.apiUrl}/dashboard; peers on port ${node.p2pPort})\n`,
      );
      whenParentGone(() => stop('its parent process ended'));
      process.on('uncaughtException', (e) => reportAndExit(e));
    });
}
