import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { keyPairFromSeed, toB64u } from '../protocol/index.ts';
import { writeKeyFile } from '../protocol/keyfile.ts';
import { usageError } from './errors.ts';

export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description('make a new Ed25519 key (a client account or a node) and print its public key')
    .requiredOption('--out <file>', 'where to write the key (JSON, mode 0600); refuses to overwrite')
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear keygen --out my-client.json\n\n' +
        'Exit status: 0 written, 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument; an existing --out is CLI_USAGE).\n',
    )
    .action((o: { out: string }) => {
      if (existsSync(o.out))
        throw usageError(`${o.out} exists; choose another file (keys are never overwritten)`);
      const k = keyPairFromSeed(randomBytes(32));
      writeKeyFile(o.out, k);
      process.stdout.write(`${toB64u(k.publicKey)}\n`);
    });
}
