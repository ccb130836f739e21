/**
 * `npm run demo`: a local group of four nodes, each running a different ImageNet model as its own process,
 * certifies the val images sent through the SDK; prints a table and the URLs, then serves until Ctrl-C
 * (`--once`: exit after the table).
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { verifyCertificate } from '../certificate/index.ts';
import { DropbearClient, type InferResult } from '../client/index.ts';
import { catalogByName } from '../inference/catalog.ts';
import { defaultHome, pullModel, resolveModel } from '../inference/store.ts';
import { DropbearError, equalBytes, groupIdOf, hex, toB64u } from '../protocol/index.ts';
import { loadLabels } from '../sim/eval.ts';
import { usageError } from './errors.ts';
import { countProgress } from './eval.ts';
import { DEFAULT_MODELS, GROUP_REPLICA, initGroup, loadGroup, startGroup } from './group.ts';
import { checkImages, decisionText, label } from './infer.ts';
import { progressReporter } from './models.ts';
import { parseWhole } from './numbers.ts';

interface Owners {
  seq: number;
  owners: { node: number; owner: string; fee: number; counted: number; earned: number }[];
}

/**
 * The money line of the demo: what the client paid for the certificates (the sum of their outcomes' fees,
 * and its balance before and after at node 0) and what each owner earned, from node 0's ledger once it
 * has executed the last certified batch (a node of the f that may lag gets 5 s). Null if node 0 does not
 * get there or answer: the demo's verdict is the certificates, not this line.
 */
async function moneyLine(
  api: string,
  client: Uint8Array,
  before: number,
  certified: InferResult[],
): Promise<string | null> {
  const last = Math.max(0, ...certified.map((r) => r.certificate.receipt.seq));
  const get = async (path: string) => {
    const res = await fetch(`${api}${path}`, { signal: AbortSignal.timeout(2000) });
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
    return res.json();
  };
  try {
    const deadline = Date.now() + 5000;
    let o = (await get('/v1/owners')) as Owners;
    while (o.seq < last && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      o = (await get('/v1/owners')) as Owners;
    }
    if (o.seq < last) return null;
    const a = (await get(`/v1/accounts/${toB64u(client)}`)) as { balance: number };
    const fees = certified.reduce((sum, r) => sum + r.certificate.outcome.fee, 0);
    const earned = o.owners.map((x) => `node ${x.node} (${x.owner}) ${x.earned}`).join(', ');
    return (
      `Money: the client paid ${fees} for ${certified.length} certificates (the fees they name; its balance ${before} → ${a.balance}); ` +
      `the owners earned: ${earned} (node 0's ledger at batch ${o.seq}).\n`
    );
  } catch {
    return null;
  }
}

/** Gets each model into the store: already there, imported from $DROPBEAR_MODELS, or pulled (with a bar). */
async function prepareModels(models: string[], home: string): Promise<string[]> {
  const dir = process.env.DROPBEAR_MODELS;
  if (dir) {
    const { importModels } = await import('../inference/store.ts');
    await importModels(dir, home);
  }
  const out: string[] = [];
  for (const m of models) {
    try {
      await resolveModel(m, home);
      out.push(m);
      continue;
    } catch (e) {
      if (!(e instanceof DropbearError && e.code === 'MODEL_NOT_FOUND')) throw e;
    }
    // A name neither in the store nor in the catalog is a mistake (a typo): it was run as "no public
    // download" and replaced by another model, so the demo certified with a model nobody asked for.
    if (!catalogByName(m))
      throw new DropbearError(
        'MODEL_NOT_FOUND',
        `--models: ${m} is neither in the store nor in the catalog; see \`npx dropbear models list\` (or import it with \`npx dropbear models import DIR\`)`,
      );
    if (!catalogByName(m)?.url) {
      // No public download (the TFLite-derived models): run a downloadable one in its place.
      const alt =
        DEFAULT_MODELS.find((x) => catalogByName(x)?.url && !out.includes(x)) ?? 'mobilenetv2-12-int8';
      process.stderr.write(
        `${m} has no public download (import it with \`npx dropbear models import DIR\` or set DROPBEAR_MODELS); this demo runs ${alt} in its place\n`,
      );
      out.push(alt);
      await prepareModels([alt], home);
      continue;
    }
    const bar = progressReporter(`pulling ${m}`);
    await pullModel(m, home, { onProgress: (d, t) => bar.update(d, t) });
    bar.finish();
    out.push(m);
  }
  return out;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'start a local 4-node group with four ImageNet models and certify the val images through the SDK',
    )
    .option('--once', 'exit (status 0) after the table instead of serving until Ctrl-C')
    .option('--out <dir>', 'the group folder (recreated on each run)', 'out/demo')
    .option(
      '--images <dir>',
      'images to send',
      `${process.env.DROPBEAR_SHARED ?? '../shared'}/datasets/imagenet-sample/val`,
    )
    .option('--count <n>', 'send only the first n images')
    .option('--models <a,b,c,d>', 'the four models', DEFAULT_MODELS.join(','))
    .addHelpText(
      'after',
      '\nExample:\n  DROPBEAR_MODELS=../shared/models npm run demo -- --once --count 20\n\n' +
        'Exit status: 0 every image certified (with --once) or stopped by Ctrl-C or SIGTERM, 1 an image not\n' +
        'certified (with --once), 2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument).\n',
    )
    .action(async (o: { once?: boolean; out: string; images: string; count?: string; models: string }) => {
      const home = process.env.DROPBEAR_HOME ?? defaultHome();
      const count = o.count === undefined ? undefined : parseWhole('--count', o.count, 1);
      if (!existsSync(o.images) || !statSync(o.images).isDirectory())
        throw usageError(`no image folder at ${o.images} (use --images DIR)`);
      let files = readdirSync(o.images)
        .filter((f) => /\.(jpe?g|png)$/i.test(f))
        .sort();
      if (files.length === 0) throw usageError(`no .jpg/.jpeg/.png images in ${o.images} (use --images DIR)`);
      if (count) files = files.slice(0, count);
      const asked = o.models.split(',').filter(Boolean);
      if (asked.length !== 4) throw usageError(`--models names ${asked.length} models; the demo runs 4`);
      // As `infer` does: a 0-byte or unreadable image was signed and sent (a request no node can decode).
      checkImages(files.map((f) => join(o.images, f)));
      const models = await prepareModels(asked, home);
      const out = resolve(o.out);
      if (existsSync(join(out, 'group.json'))) rmSync(out, { recursive: true, force: true });
      else if (existsSync(out) && readdirSync(out).length > 0)
        throw usageError(`${out} is not empty and is not a demo group; choose another --out`);
      await initGroup({
        dir: out,
        nodes: 4,
        models,
        home,
        name: 'dropbear-demo',
        // Four processes share this machine: the primary waits up to 500 ms for every model's vote, so the
        // table shows all four answers, not just the quickest three. (100 ms was too short on a 2-core
        // machine: with 8 images in flight the slowest model's queue outlasts it, and its column read
        // "(not counted)" for 1-11 of the 16 images, run to run; with 500 ms, 0 in three runs, 2026-12-01.)
        nodeConfig: {
          log: { level: 'warn' },
          engine: { intraOpThreads: 1 },
          replica: { ...GROUP_REPLICA, voteWaitMs: 500 },
        },
      });
      const g = loadGroup(out);
      process.stderr.write(`starting 4 nodes (${models.join(', ')})\n`);
      // Supervised as `group start` does: a node that crashes while the demo certifies or serves is started
      // again (up to 5 times in a row); before 2026-12-06 it was one line, and the group served on with
      // three nodes, or none.
      const procs = startGroup(g, undefined, { restart: { max: 5 } });
      let stopped = false;
      const stop = async () => {
        if (stopped) return;
        stopped = true;
        await procs.stop();
      };
      process.on('SIGINT', () => stop().then(() => process.exit(0)));
      process.on('SIGTERM', () => stop().then(() => process.exit(0)));
      try {
        await procs.ready();
        const client = new DropbearClient({
          genesis: g.genesis,
          nodes: g.file.nodes.map((n) => ({ id: n.id, api: n.api })),
          key: g.clientKey(),
          timeoutMs: 60_000,
        });
        const labels = loadLabels(o.images, files);
        const inputs = files.map((f) => readFileSync(join(o.images, f)));
        const progress = countProgress();
        let done = 0;
        const results = await client.inferMany(inputs, {
          concurrency: 8,
          onResult: () => progress('certifying', ++done, inputs.length),
        });
        const rows = [
          [
            'image',
            'true label',
            ...models.map((m, i) => `node ${i}: ${m}`),
            'certified decision',
            'verified',
          ],
        ];
        let verified = 0;
        let right = 0;
        let failures = 0;
        results.forEach((r, i) => {
          const truth = labels[i] === null ? '-' : label(labels[i]);
          if (r instanceof Error) {
            failures++;
            rows.push([
              files[i],
              truth,
              ...models.map(() => '-'),
              `error: ${(r as DropbearError).code ?? r.message}`,
              'no',
            ]);
            return;
          }
          const res = r as InferResult;
          const ok = verifyCertificate(res.certificate, g.genesis).ok;
          if (ok) verified++;
          if (res.decision.kind === 'label' && res.decision.label === labels[i]) right++;
          const byNode = new Map(res.votes.map((v) => [v.node, label(v.label)]));
          rows.push([
            files[i],
            truth,
            ...models.map((_, n) => byNode.get(n) ?? '(not counted)'),
            decisionText(res),
            ok ? 'yes' : 'NO',
          ]);
        });
        const widths = rows[0].map((_, c) => Math.min(40, Math.max(...rows.map((r) => r[c].length))));
        for (const r of rows)
          process.stdout.write(`${r.map((cell, c) => cell.slice(0, 40).padEnd(widths[c])).join('  ')}\n`);
        process.stdout.write(
          `\n${results.length} images: ${verified} certificates verified offline against the genesis, ${right} certified labels match the true label, ${failures} failed.\n`,
        );
        const key = g.clientKey().publicKey;
        const before = g.genesis.balances.find((b) => equalBytes(b.client, key))?.amount ?? 0;
        const certified = results.filter((r): r is InferResult => !(r instanceof Error));
        const money = await moneyLine(g.file.nodes[0].api, key, before, certified);
        if (money)
          process.stdout.write(
            `${money}An owner takes its earnings out of the group with \`npx dropbear withdraw --group ${o.out} --node N --amount all\` (docs/api.md, "Withdrawals"); ` +
              `the client takes back what it has not spent with \`npx dropbear refund --group ${o.out} --amount all\` ("Refunds").\n`,
          );
        // With --once the nodes stop as this returns: their addresses are shown for the record only, and
        // the group folder with how to start it again (not a status command that would find nothing).
        process.stdout.write(
          `\nNodes${o.once ? ', stopped on exit' : ''} (HTTP API, metrics at /metrics, Open Inference Protocol at /v2, dashboard at /dashboard):\n`,
        );
        for (const n of g.file.nodes) process.stdout.write(`  node ${n.id}: ${n.api}\n`);
        const pin = hex(groupIdOf(g.genesis));
        if (!o.once)
          process.stdout.write(
            `Dashboard, pinned to this group: ${g.file.nodes[0].api}/dashboard?group=${pin}\n`,
          );
        process.stdout.write(
          o.once
            ? `Group folder: ${out}  (stopped; npx dropbear group start ${o.out} starts it again)\n`
            : `Group folder: ${out}  (npx dropbear status --group ${o.out})\n`,
        );
        if (failures > 0) process.exitCode = 1;
        if (o.once) {
          await stop();
          return;
        }
        process.stdout.write('Serving until Ctrl-C.\n');
        // Until a signal stops it, or supervision gives up on a node (NODE_FAILED: every node is stopped).
        const failed = await procs.failure;
        if (stopped) await new Promise(() => {});
        throw failed;
      } catch (e) {
        // Stopped by a signal while starting (ready() rejects with GROUP_STOPPED): the signal's handler exits
        // 0 once every node has stopped; throwing here exited 2 before they had.
        if (stopped) await new Promise(() => {});
        await stop();
        throw e;
      }
    });
}
