import type { Command } from 'commander';
import type { Decoder } from '../inference/decode.ts';
import { importModels, resolveModel } from '../inference/store.ts';
import { DropbearError } from '../protocol/index.ts';
import { formatEval, runEval } from '../sim/eval.ts';
import { usageError } from './errors.ts';
import { checkOutputFile, parseHome, stableJson, writeOutputFile } from './io.ts';
import { parseWhole } from './numbers.ts';

/**
 * Models missing from the store are imported from $DROPBEAR_MODELS when it is set (CI and offline machines
 * point it at a folder of .onnx files); otherwise the error says how to get them.
 */
export async function ensureModels(names: string[], home?: string): Promise<void> {
  const missing: string[] = [];
  for (const m of names) {
    try {
      await resolveModel(m, home);
    } catch (e) {
      if (e instanceof DropbearError && e.code === 'MODEL_NOT_FOUND') missing.push(m);
      else throw e;
    }
  }
  if (missing.length === 0) return;
  const dir = process.env.DROPBEAR_MODELS;
  if (!dir)
    throw new DropbearError(
      'MODEL_NOT_FOUND',
      `not in the model store: ${missing.join(', ')}. Run \`npx dropbear models pull ${missing.join(' ')}\`, or set DROPBEAR_MODELS to a folder that has them`,
    );
  process.stderr.write(`importing models from ${dir} (DROPBEAR_MODELS)\n`);
  await importModels(dir, home);
  for (const m of missing) await resolveModel(m, home);
}

/** Item progress on stderr: a bar redrawn in place on a terminal, a line per quarter elsewhere. */
export function countProgress(stream: NodeJS.WriteStream = process.stderr) {
  let stage = '';
  let quarter = -1;
  let last = 0;
  return (s: string, done: number, total: number) => {
    if (s !== stage) {
      if (stage && stream.isTTY) stream.write('\n');
      stage = s;
      quarter = -1;
    }
    const pct = total ? Math.floor((100 * done) / total) : 100;
    if (stream.isTTY) {
      if (Date.now() - last < 100 && done < total) return;
      last = Date.now();
      const full = Math.round((pct / 100) * 30);
      stream.write(`\r${s} [${'#'.repeat(full)}${'.'.repeat(30 - full)}] ${done}/${total}`);
      if (done >= total) {
        stream.write('\n');
        stage = '';
      }
    } else if (Math.floor(pct / 25) !== quarter) {
      quarter = Math.floor(pct / 25);
      stream.write(`${s}: ${done}/${total}\n`);
    }
  };
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description(
      'classify images with each model and through a simulated group of them; print accuracy and agreement',
    )
    .requiredOption('--models <a,b,c,d>', 'models from the store, one per node (at least 4)')
    .option(
      '--images <dir>',
      'folder of JPEG/PNG images',
      `${process.env.DROPBEAR_SHARED ?? '../shared'}/datasets/imagenet-sample/val`,
    )
    .option('--json <file>', 'also write every figure and each image’s answers as JSON')
    .option('--home <dir>', 'the Dropbear home folder (default: $DROPBEAR_HOME, else ~/.dropbear)', parseHome)
    .option('--decoder <fast|reference>', 'JPEG decoder: libvips (fast) or jpeg-js (reference)', 'fast')
    .option('--limit <n>', 'only the first n images')
    .option('--seed <n>', 'simulator seed', '1')
    .addHelpText(
      'after',
      '\nExample:\n  npm run eval -- --models mobilenetv2-12-int8,shufflenet-v2-12-qdq,squeezenet1.1-fp16-winml,mobilenet_v1_0.5_160_quant --json out/eval.json\n\n' +
        'Exit status: 0 evaluated, 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument).\n',
    )
    .action(
      async (o: {
        models: string;
        images: string;
        json?: string;
        home?: string;
        decoder: string;
        limit?: string;
        seed: string;
      }) => {
        const models = o.models.split(',').filter(Boolean);
        if (o.decoder !== 'fast' && o.decoder !== 'reference')
          throw usageError('--decoder is fast or reference');
        const limit = o.limit === undefined ? undefined : parseWhole('--limit', o.limit, 1);
        const seed = parseWhole('--seed', o.seed, 0);
        if (o.json) checkOutputFile('--json', o.json);
        await ensureModels(models, o.home);
        const report = await runEval({
          models,
          images: o.images,
          home: o.home,
          decoder: o.decoder as Decoder,
          limit,
          seed,
          onProgress: countProgress(),
        });
        process.stdout.write(`${formatEval(report)}\n`);
        if (o.json) {
          writeOutputFile(o.json, stableJson(report));
          process.stdout.write(`wrote ${o.json}\n`);
        }
      },
    );
}
