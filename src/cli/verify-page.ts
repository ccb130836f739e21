import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { Genesis, groupIdOf, hex, toJson } from '../protocol/index.ts';
import { dashboardScript } from '../web/bundle.ts';
import { offlinePage } from '../web/page.ts';
import { checkOutputFile, readGenesis, writeOutputFile } from './io.ts';

/** Writes the offline certificate page for a genesis; returns the group id. */
export async function writeVerifyPage(genesisPath: string, out: string): Promise<string> {
  checkOutputFile('--out', out);
  const genesis = readGenesis(genesisPath);
  const html = offlinePage(await dashboardScript(), toJson(Genesis, genesis));
  writeOutputFile(out, html);
  return hex(groupIdOf(genesis));
}

export function registerVerifyPage(program: Command): void {
  program
    .command('verify-page')
    .description(
      "write one HTML file that checks a group's certificates in a browser, offline (the genesis and the verifier inside)",
    )
    .requiredOption('--genesis <file>', 'the group genesis (JSON)')
    .requiredOption('--out <file>', 'the HTML file to write')
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear verify-page --genesis out/genesis.json --out verify.html\n\nOpen the file in a browser (no server needed) and paste a certificate.\n\n' +
        'Exit status: 0 written, 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument).\n',
    )
    .action(async (o: { genesis: string; out: string }) => {
      const id = await writeVerifyPage(o.genesis, o.out);
      const url = `${pathToFileURL(resolve(o.out)).href}?group=${id}`;
      process.stdout.write(`wrote ${o.out} for group ${id}\nopen ${url}\n`);
    });
}
