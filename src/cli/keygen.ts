import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { apiKeySha256Of } from '../node/config.ts';
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

/** A new random API key for a custodial account (32 random bytes as 64 hex digits) and its apiKeySha256. */
export function newApiKey(): { apiKey: string; apiKeySha256: string } {
  const apiKey = randomBytes(32).toString('hex');
  return { apiKey, apiKeySha256: apiKeySha256Of(apiKey) };
}

export function registerApiKey(program: Command): void {
  program
    .command('api-key')
    .description(
      'make a random API key for a custodial account and print it with the apiKeySha256 a node config holds',
    )
    .addHelpText(
      'after',
      '\nPrints one line of JSON: {"apiKey": "<64 hex digits>", "apiKeySha256": "<64 hex digits>"}. Give the\n' +
        'apiKey to the account holder (it is shown once and stored nowhere: the node keeps only its hash) and put\n' +
        'apiKeySha256 into the node config\'s custodial.accounts entry (docs/api.md, "Custodial accounts").\n\n' +
        'Example:\n  npx dropbear api-key\n\n' +
        'Exit status: 0 printed, 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument).\n',
    )
    .action(() => {
      process.stdout.write(`${JSON.stringify(newApiKey())}\n`);
    });
}
