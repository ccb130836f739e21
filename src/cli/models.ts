import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import {
  defaultHome,
  importModels,
  listModels,
  modelsDir,
  type PullResult,
  pullModel,
} from '../inference/store.ts';
import { DropbearError } from '../protocol/index.ts';
import { parseHome, stableJson } from './io.ts';

const HOME_HELP = 'the Dropbear home folder (default: $DROPBEAR_HOME, else ~/.dropbear)';

function mib(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(1);
}

function size(bytes: number): string {
  return bytes < 1024 * 1024 ? `${Math.ceil(bytes / 1024)} KiB` : `${mib(bytes)} MiB`;
}

/** Prints rows as left-aligned columns separated by two spaces. */
function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  '))
    .join('\n');
}

/**
 * Download progress on stderr. On a terminal: one bar redrawn in place at most 10 times a second. Elsewhere
 * (a log, a pipe): a line at each quarter, so logs stay short.
 */
export function progressReporter(
  name: string,
  stream: NodeJS.WriteStream = process.stderr,
): {
  update: (done: number, total: number) => void;
  finish: () => void;
} {
  const tty = stream.isTTY === true;
  let lastDraw = 0;
  let lastQuarter = -1;
  let drawn = false;
  const line = (done: number, total: number) => {
    const pct = total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 0;
    const amount =
      total < 1024 * 1024
        ? `${Math.ceil(done / 1024)}/${Math.ceil(total / 1024)} KiB`
        : `${mib(done)}/${mib(total)} MiB`;
    return { pct, text: `${amount} ${String(pct).padStart(3)}%` };
  };
  return {
    update(done, total) {
      const { pct, text } = line(done, total);
      if (tty) {
        const now = Date.now();
        if (now - lastDraw < 100 && done < total) return;
        lastDraw = now;
        const width = 30;
        const full = Math.round((pct / 100) * width);
        stream.write(`\r${name} [${'#'.repeat(full)}${'.'.repeat(width - full)}] ${text}`);
        drawn = true;
        return;
      }
      const quarter = Math.floor(pct / 25);
      if (quarter === lastQuarter) return;
      lastQuarter = quarter;
      stream.write(`${name}: ${text}\n`);
    },
    finish() {
      if (tty && drawn) stream.write('\n');
    },
  };
}

/**
 * The subfolders of `path` (a folder) that hold .onnx files themselves: `models import DIR` searches DIR
 * alone, and until 2026-12-07 skipped them without a word. None for a file.
 */
async function subfoldersWithModels(path: string): Promise<string[]> {
  const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
  const found: string[] = [];
  for (const d of entries) {
    if (!d.isDirectory()) continue;
    const inner = await readdir(join(path, d.name)).catch(() => [] as string[]);
    if (inner.some((n) => n.toLowerCase().endsWith('.onnx'))) found.push(d.name);
  }
  return found.sort();
}

export function registerModels(program: Command): void {
  const models = program
    .command('models')
    .description('the local model store: models kept by SHA-256 under <home>/models, with a name index');

  models
    .command('import')
    .description(
      'copy an .onnx file, or every .onnx file in a folder, into the store; models in the catalog get their ' +
        'catalog name and preprocessing, others are named after the file and take a raw input tensor',
    )
    .argument('<path>', 'an .onnx file or a folder of them')
    .option('--home <dir>', HOME_HELP, parseHome)
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear models import /work/shared/models\n\n' +
        'Importing the same file again changes nothing. A file of the folder that cannot be imported is named\n' +
        '(error [CODE]: ...) and the others are still imported. Exit status: 0 all imported, 2 any error.\n',
    )
    .action(async (path: string, opts: { home?: string }) => {
      const home = opts.home ?? defaultHome();
      let failed = 0;
      // Each file that cannot be imported is named and the others are imported (it stopped at the first, and
      // the ones before it had been imported without a line saying so).
      const done = await importModels(path, home, {
        onFailed: (_file, e) => {
          process.stderr.write(`error [${e.code}]: ${e.message}\n`);
          failed++;
        },
      });
      for (const m of done) {
        const what = m.added
          ? 'imported'
          : m.repaired
            ? 'repaired (the stored copy did not hash to its digest)'
            : 'already present';
        const from = m.specFrom === 'catalog' ? 'catalog' : 'spec read from the model';
        process.stdout.write(`${what}: ${m.name}  sha256 ${m.sha256}  ${m.bytes} bytes  (${from})\n`);
      }
      for (const sub of await subfoldersWithModels(path))
        process.stderr.write(
          `note: only ${path} itself is searched; its subfolder ${sub}/ holds .onnx files (import it by itself)\n`,
        );
      const added = done.filter((m) => m.added).length;
      process.stdout.write(
        `${added} added, ${done.length - added} already present${failed > 0 ? `, ${failed} failed` : ''}, ` +
          `store ${modelsDir(home)}\n`,
      );
      if (failed > 0) process.exitCode = 2;
    });

  models
    .command('list')
    .description('list the models in the store: name, digest, input, size and preprocessing')
    .option('--home <dir>', HOME_HELP, parseHome)
    .option('--json', 'print JSON (full digests and paths) instead of a table')
    .option(
      '--verify',
      're-hash every stored file (reads them all), not only check that it is there with its size',
    )
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear models list --json\n\n' +
        'A model whose stored file is missing, unreadable or of another size (with --verify: whose bytes do not\n' +
        'hash to its digest) is listed as DAMAGED (in JSON: a "problem"), and stderr says what is wrong with each.\n' +
        'Exit status: 0 listed (also an empty store, also with damaged models), 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument).\n',
    )
    .action(async (opts: { home?: string; json?: boolean; verify?: boolean }) => {
      const home = opts.home ?? defaultHome();
      const rows = await listModels(home, { verify: opts.verify === true });
      const damaged = rows.filter((r) => r.problem !== undefined);
      if (damaged.length > 0)
        process.stderr.write(
          `${damaged.length} of ${rows.length} models in the store are damaged: ${damaged.map((r) => r.name).join(', ')}\n` +
            damaged.map((r) => `  ${r.name}: ${r.problem}\n`).join('') +
            'a node refuses such a model at start; import the right file again (`npx dropbear models import FILE`) ' +
            'or pull it (`npx dropbear models pull NAME`)\n',
        );
      if (opts.json) {
        process.stdout.write(stableJson(rows));
        return;
      }
      if (rows.length === 0) {
        process.stdout.write(
          `no models in ${modelsDir(home)}; add some with \`npx dropbear models import DIR\` or ` +
            '`npx dropbear models pull NAME`\n',
        );
        return;
      }
      const head = ['NAME', 'SHA256', 'INPUT', 'SIZE', 'PREPROCESS'];
      const body = rows.map((r) => [
        r.name,
        r.sha256.slice(0, 16),
        r.input,
        size(r.bytes),
        r.problem ? `${r.preprocess}  DAMAGED (see stderr)` : r.preprocess,
      ]);
      process.stdout.write(`${table([head, ...body])}\n`);
    });

  models
    .command('pull')
    .description(
      'download catalog models into the store; each download must match the catalog SHA-256 or it is ' +
        'refused. Models without a public download must be imported from a folder instead',
    )
    .argument('<name...>', 'catalog model names (see the catalog in src/inference/catalog.ts)')
    .option('--home <dir>', HOME_HELP, parseHome)
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear models pull mobilenetv2-12-int8 squeezenet1.1-fp16-winml\n\n' +
        'DROPBEAR_CATALOG_BASE_URL=URL fetches every file from URL/<file name> instead (a mirror).\n' +
        'Exit status: 0 all present, 2 any model failed (the others are still pulled).\n',
    )
    .action(async (names: string[], opts: { home?: string }) => {
      const home = opts.home ?? defaultHome();
      let failed = 0;
      for (const name of names) {
        const bar = progressReporter(name);
        let r: PullResult;
        try {
          r = await pullModel(name, home, { onProgress: bar.update });
        } catch (e) {
          bar.finish();
          if (!(e instanceof DropbearError)) throw e;
          process.stderr.write(`error [${e.code}]: ${e.message}\n`);
          failed++;
          continue;
        }
        bar.finish();
        const what = r.downloaded ? 'pulled' : 'already present';
        process.stdout.write(`${what}: ${r.name}  sha256 ${r.sha256}  ${r.bytes} bytes\n`);
      }
      if (failed > 0) process.exitCode = 2;
    });
}
