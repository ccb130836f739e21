import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Command } from 'commander';
import { DropbearClient, type InferResult } from '../client/index.ts';
import { labelName } from '../inference/postprocess.ts';
import { Certificate, DropbearError, toJson } from '../protocol/index.ts';
import { readKeyFile } from '../protocol/keyfile.ts';
import { usageError } from './errors.ts';
import { loadGroup } from './group.ts';
import { untrustedCertificateHint } from './http.ts';
import { makeOutputDir, stableJson, writeOutputFile } from './io.ts';
import { parseWaitMs } from './model-update.ts';
import { wholeOrNaN } from './numbers.ts';

/** A client of the group in `dir`, signing with `keyFile` if given, else the key group.json names. */
export function clientFor(
  dir: string,
  sendTo?: string,
  keyFile?: string,
  maxFee?: string,
  wait?: string,
): DropbearClient {
  let to: 'all' | number | undefined;
  if (sendTo !== undefined) {
    to = sendTo === 'all' ? 'all' : wholeOrNaN(sendTo);
    if (to !== 'all' && !(Number.isSafeInteger(to) && to > 0))
      throw usageError(`--send-to is "all" or a node count, not ${JSON.stringify(sendTo)}`);
  }
  let fee: number | undefined;
  if (maxFee !== undefined) {
    fee = wholeOrNaN(maxFee);
    if (!(Number.isSafeInteger(fee) && fee >= 0))
      throw usageError(
        `--max-fee must be a whole number ≥ 0 (at most 2^53 − 1), not ${JSON.stringify(maxFee)}`,
      );
  }
  let timeoutMs: number | undefined;
  if (wait !== undefined) {
    timeoutMs = parseWaitMs(wait);
    // The longest delay a timer takes (the SDK's bound, CLIENT_CONFIG there): said as the option's.
    if (timeoutMs > LONGEST_WAIT_MS)
      throw usageError(`--wait must be at most ${LONGEST_WAIT_MS} ms (about 24.8 days), not ${wait}`);
  }
  const g = loadGroup(dir);
  return new DropbearClient({
    genesis: g.genesis,
    nodes: g.file.nodes.map((n) => ({ id: n.id, api: n.api })),
    key: keyFile === undefined ? g.clientKey() : readKeyFile(keyFile),
    sendTo: to,
    ...(fee === undefined ? {} : { maxFee: fee }),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
}

/** The longest --wait: the longest delay setTimeout takes, 2^31 − 1 ms. */
const LONGEST_WAIT_MS = 2 ** 31 - 1;

/**
 * Every image is checked before the first is sent (FILE_UNREADABLE, FILE_EMPTY): a misspelt fifth name ended
 * the command after four requests had been certified (and paid for), so a rerun paid for them again.
 */
export function checkImages(images: string[]): void {
  for (const file of images) {
    let isFile = false;
    let size = 0;
    try {
      const st = statSync(file);
      isFile = st.isFile();
      size = st.size;
      accessSync(file, constants.R_OK);
    } catch (e) {
      throw new DropbearError(
        'FILE_UNREADABLE',
        `cannot read ${file}: ${(e as Error).message}; nothing was sent`,
      );
    }
    if (!isFile) throw new DropbearError('FILE_UNREADABLE', `${file} is not a file; nothing was sent`);
    // A 0-byte file was signed and sent: a request the nodes can only fail to decode, paid for all the same.
    if (size === 0) throw new DropbearError('FILE_EMPTY', `${file} is empty; nothing was sent`);
  }
}

export const label = (l: number | null) => (l === null ? '-' : `${l} ${labelName('imagenet1k', l)}`);

export function decisionText(r: InferResult): string {
  const d = r.decision;
  return d.kind === 'label' ? label(d.label) : d.kind === 'noAgreement' ? 'no agreement' : 'vector';
}

export function registerInfer(program: Command): void {
  program
    .command('infer')
    .description("send images to a group; print each node's vote and the certified decision (verified)")
    .requiredOption('--group <dir>', 'the group folder (from `dropbear group init`)')
    .argument(
      '<images...>',
      'JPEG or PNG files, or DBT1 tensor files (the stand-in model takes only its own tensor: docs/api.md, "CLI")',
    )
    .option('--out <dir>', 'write each certificate as <requestId>.json here')
    .option('--send-to <all|k>', 'send to every node (default) or to k of them')
    .option(
      '--key <file>',
      "the client's key file (default: the one group.json names; a group of separate owners names none)",
    )
    .option(
      '--wait <ms>',
      'give up on an image after this long without its certificate (default 30000); the next image is sent all the same',
    )
    .option(
      '--max-fee <n>',
      "the most each request may be charged (default: the sum of the genesis's fees); raise it after owners raise their fees (MAX_FEE_TOO_LOW)",
    )
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear infer --group out/group --out out/certs cat.jpg dog.png\n\n' +
        'Exit status: 0 every image certified, 2 an image not certified (its line: error [CODE]) or an error\n' +
        '(one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument).\n',
    )
    .action(
      async (
        images: string[],
        o: { group: string; out?: string; sendTo?: string; key?: string; maxFee?: string; wait?: string },
      ) => {
        const client = clientFor(o.group, o.sendTo, o.key, o.maxFee, o.wait);
        if (o.out) makeOutputDir('--out', o.out);
        checkImages(images);
        let failed = 0;
        for (const [n, file] of images.entries()) {
          let bytes: Buffer;
          try {
            bytes = readFileSync(file);
          } catch (e) {
            throw new DropbearError('FILE_UNREADABLE', `cannot read ${file}: ${(e as Error).message}`);
          }
          let r: InferResult;
          try {
            r = await client.infer(bytes);
          } catch (e) {
            failed++;
            const code = e instanceof DropbearError ? e.code : 'ERROR';
            // Owners raised their fees past what this client signs (the genesis fees' sum by default): every
            // node refusing says MAX_FEE_TOO_LOW, some nodes refusing and others down says it per node.
            // A node's certificate this process does not trust (a private CA): how to trust it.
            const why = `${code} ${(e as Error).message}`;
            const untrusted = untrustedCertificateHint(why);
            const hint = /\bMAX_FEE_TOO_LOW\b/.test(why)
              ? ' (sign a higher maxFee with --max-fee N)'
              : untrusted
                ? ` (${untrusted})`
                : '';
            process.stderr.write(`${basename(file)}: error [${code}]: ${(e as Error).message}${hint}\n`);
            continue;
          }
          process.stdout.write(`${basename(file)}  request ${r.requestId.slice(0, 16)}…\n`);
          for (const v of r.votes)
            process.stdout.write(`  node ${v.node} (${v.modelDigest.slice(0, 8)}): ${label(v.label)}\n`);
          process.stdout.write(`  certified: ${decisionText(r)}  (verified against the genesis)\n`);
          if (!o.out) continue;
          // Whole or not at all (a cut certificate would read as a damaged one). A certificate that cannot be
          // saved (a full disk) ends the command: each request is paid for, and the next certificate would be
          // lost the same way. It was reported per image as `error [ERROR]: ENOSPC…`, the rest sent on, and
          // an empty or cut <requestId>.json left behind.
          try {
            writeOutputFile(
              join(o.out, `${r.requestId}.json`),
              stableJson(toJson(Certificate, r.certificate)),
            );
          } catch (e) {
            const left = images.length - n - 1;
            const err = e as DropbearError;
            throw new DropbearError(
              err.code,
              `${err.message}: the certificate of ${basename(file)} (request ${r.requestId}) is not saved` +
                (left > 0 ? `, and the ${left} image(s) after it were not sent` : ''),
              err.details,
            );
          }
        }
        if (failed) process.exitCode = 2;
      },
    );
}
