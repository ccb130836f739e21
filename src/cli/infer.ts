import { accessSync, constants, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Command } from 'commander';
import { DropbearClient, type InferResult } from '../client/index.ts';
import { labelName } from '../inference/postprocess.ts';
import { Certificate, DropbearError, toJson } from '../protocol/index.ts';
import { usageError } from './errors.ts';
import { loadGroup } from './group.ts';
import { makeOutputDir, stableJson } from './io.ts';
import { wholeOrNaN } from './numbers.ts';

export function clientFor(dir: string, sendTo?: string): DropbearClient {
  let to: 'all' | number | undefined;
  if (sendTo !== undefined) {
    to = sendTo === 'all' ? 'all' : wholeOrNaN(sendTo);
    if (to !== 'all' && !(Number.isSafeInteger(to) && to > 0))
      throw usageError(`--send-to is "all" or a node count, not ${JSON.stringify(sendTo)}`);
  }
  const g = loadGroup(dir);
  return new DropbearClient({
    genesis: g.genesis,
    nodes: g.file.nodes.map((n) => ({ id: n.id, api: n.api })),
    key: g.clientKey(),
    sendTo: to,
  });
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
    .argument('<images...>', 'JPEG or PNG files')
    .option('--out <dir>', 'write each certificate as <requestId>.json here')
    .option('--send-to <all|k>', 'send to every node (default) or to k of them')
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear infer --group out/group --out out/certs cat.jpg dog.png\n',
    )
    .action(async (images: string[], o: { group: string; out?: string; sendTo?: string }) => {
      const client = clientFor(o.group, o.sendTo);
      if (o.out) makeOutputDir('--out', o.out);
      // Every image is checked before the first is sent: a misspelt fifth name ended the command after
      // four requests had been certified (and paid for), so a rerun paid for them again.
      for (const file of images) {
        let isFile = false;
        try {
          isFile = statSync(file).isFile();
          accessSync(file, constants.R_OK);
        } catch (e) {
          throw new DropbearError(
            'FILE_UNREADABLE',
            `cannot read ${file}: ${(e as Error).message}; nothing was sent`,
          );
        }
        if (!isFile) throw new DropbearError('FILE_UNREADABLE', `${file} is not a file; nothing was sent`);
      }
      let failed = 0;
      for (const file of images) {
        let bytes: Buffer;
        try {
          bytes = readFileSync(file);
        } catch (e) {
          throw new DropbearError('FILE_UNREADABLE', `cannot read ${file}: ${(e as Error).message}`);
        }
        try {
          const r = await client.infer(bytes);
          process.stdout.write(`${basename(file)}  request ${r.requestId.slice(0, 16)}…\n`);
          for (const v of r.votes)
            process.stdout.write(`  node ${v.node} (${v.modelDigest.slice(0, 8)}): ${label(v.label)}\n`);
          process.stdout.write(`  certified: ${decisionText(r)}  (verified against the genesis)\n`);
          if (o.out)
            writeFileSync(join(o.out, `${r.requestId}.json`), stableJson(toJson(Certificate, r.certificate)));
        } catch (e) {
          failed++;
          const code = e instanceof DropbearError ? e.code : 'ERROR';
          process.stderr.write(`${basename(file)}: error [${code}]: ${(e as Error).message}\n`);
        }
      }
      if (failed) process.exitCode = 2;
    });
}
