/**
 * Evaluation of a heterogeneous group on real data: every image is classified by every model (real
 * onnxruntime sessions), then sent through a simulated group whose node i runs model i (real consensus,
 * real ledger execution, real certificates; each node's answer is its real model's answer), once per
 * agreement threshold. Reports per-model accuracy, pairwise agreement, and the group's coverage (share
 * of images with a certified label) and accuracy when it agrees.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { verifyCertificate } from '../certificate/index.ts';
import type { Decoder } from '../inference/decode.ts';
import { InferenceEngine } from '../inference/engine.ts';
import type { ModelSpec } from '../inference/spec.ts';
import { resolveModel } from '../inference/store.ts';
import { DropbearError, hex, type Result, sha256 } from '../protocol/index.ts';
import { Simulation } from './world.ts';

export interface EvalOptions {
  models: string[];
  images: string;
  home?: string;
  decoder?: Decoder;
  seed?: number;
  /** Evaluate only the first N images (sorted by name). */
  limit?: number;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export interface GroupFigures {
  minAgree: number;
  /** Images the group certified a label for, over all images. */
  coverage: number;
  /** Of the certified labels with a known true label, the share that is right. */
  accuracyWhenAgreeing: number | null;
  /** Right certified labels over all labelled images (no-agreement counts as not right). */
  accuracyOverall: number | null;
  certified: number;
  verified: number;
}

export interface EvalReport {
  images: string;
  count: number;
  labelled: number;
  models: { name: string; sha256: string; top1: number | null }[];
  /** agreement[i][j]: share of images on which models i and j give the same top-1. */
  agreement: number[][];
  allAgree: number;
  group: GroupFigures[];
  perImage: {
    file: string;
    label: number | null;
    top1: Record<string, number>;
    decision: Record<string, number | 'no-agreement'>;
  }[];
}

const IMAGE_EXT = /\.(jpe?g|png)$/i;

/** The true class of each file: labels.csv beside or above the folder, else the synset in the name. */
export function loadLabels(dir: string, files: string[]): (number | null)[] {
  const byFile = new Map<string, number>();
  for (const csv of [join(dir, 'labels.csv'), join(dirname(dir), 'labels.csv')]) {
    let text: string;
    try {
      text = readFileSync(csv, 'utf8');
    } catch {
      continue;
    }
    const [head, ...lines] = text.split('\n');
    const cols = head.split(',');
    const fi = cols.indexOf('file');
    const ci = cols.indexOf('class_index');
    if (fi < 0 || ci < 0) continue;
    for (const line of lines) {
      const parts = line.split(',');
      if (parts.length > Math.max(fi, ci)) byFile.set(basename(parts[fi]), Number(parts[ci]));
    }
    break;
  }
  const synsets = new Map(
    readFileSync(new URL('../inference/imagenet_synsets.txt', import.meta.url), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l, i) => [l.slice(0, l.indexOf(' ')), i] as const),
  );
  return files.map((f) => byFile.get(f) ?? synsets.get(f.slice(0, f.indexOf('_'))) ?? null);
}

export const digestBytes = (sha256hex: string) => Uint8Array.from(Buffer.from(sha256hex, 'hex'));

/** Every input through every model (real sessions), in chunks that stay under the engine's queue bound. */
export async function classifyAll(
  models: { path: string; spec: ModelSpec; sha256: string }[],
  inputs: Uint8Array[],
  decoder?: Decoder,
  progress: (model: number, done: number) => void = () => {},
): Promise<Result[][]> {
  const results: Result[][] = [];
  for (const [mi, m] of models.entries()) {
    const engine = await InferenceEngine.start({
      modelPath: m.path,
      spec: m.spec,
      expectDigest: m.sha256,
      decoder,
    });
    try {
      const out: Result[] = [];
      for (let i = 0; i < inputs.length; i += 64) {
        out.push(...(await Promise.all(inputs.slice(i, i + 64).map((b) => engine.classify(b)))));
        progress(mi, out.length);
      }
      results.push(out);
    } finally {
      await engine.close();
    }
  }
  return results;
}

/**
 * The simulator's model hook from precomputed answers: a node running the model with digest d answers
 * input x with what that real model answered for x.
 */
export function precomputedClassifier(
  digests: Uint8Array[],
  inputs: Uint8Array[],
  results: Result[][],
): (node: number, digest: Uint8Array, input: Uint8Array) => Result {
  const key = (digest: Uint8Array, input: Uint8Array) => `${hex(digest)}:${hex(sha256(input))}`;
  const answer = new Map<string, Result>();
  digests.forEach((d, mi) => {
    inputs.forEach((x, i) => {
      answer.set(key(d, x), results[mi][i]);
    });
  });
  return (_node, digest, input) => {
    const r = answer.get(key(digest, input));
    if (!r) throw new DropbearError('INTERNAL', 'the simulator asked for an answer that was never computed');
    return r;
  };
}

export async function runEval(opts: EvalOptions): Promise<EvalReport> {
  const n = opts.models.length;
  if (n < 4)
    throw new DropbearError(
      'EVAL_USAGE',
      `a group needs at least 4 models (n >= 3f+1 with f >= 1), got ${n}`,
    );
  let isDir = false;
  try {
    isDir = statSync(opts.images).isDirectory();
  } catch {}
  if (!isDir) throw new DropbearError('EVAL_USAGE', `no image folder at ${opts.images}`);
  let files = readdirSync(opts.images)
    .filter((f) => IMAGE_EXT.test(f))
    .sort();
  if (opts.limit) files = files.slice(0, opts.limit);
  if (files.length === 0)
    throw new DropbearError('EVAL_USAGE', `no .jpg/.jpeg/.png images in ${opts.images}`);
  const bytes = files.map((f) => readFileSync(join(opts.images, f)));
  const labels = loadLabels(opts.images, files);
  const progress = opts.onProgress ?? (() => {});

  // 1. Every model on every image.
  const models = await Promise.all(opts.models.map((m) => resolveModel(m, opts.home)));
  const results = await classifyAll(models, bytes, opts.decoder, (mi, done) =>
    progress(`model ${mi + 1}/${n} ${opts.models[mi]}`, done, bytes.length),
  );
  const top1 = results.map((rs) => rs.map((r) => (r.kind === 'class' ? r.top[0].label : -1)));

  // 2. The group, in the simulator, with each node answering what its real model answered.
  const digests = models.map((m) => digestBytes(m.sha256));
  const answer = precomputedClassifier(digests, bytes, results);
  const f = Math.floor((n - 1) / 3);
  const group: GroupFigures[] = [];
  const decisions: Record<string, number | 'no-agreement'>[] = files.map(() => ({}));
  for (const minAgree of [f + 1, 2 * f + 1]) {
    const sim = new Simulation({
      nodes: n,
      f,
      seed: opts.seed ?? 1,
      requests: bytes.length,
      inputs: bytes,
      models: opts.models.map((name, i) => ({ name, digest: digests[i] })),
      policy: { kind: 'top1', minAgree },
      rate: 1,
      classify: answer,
    });
    const run = sim.run();
    if (!run.done)
      throw new DropbearError(
        'EVAL_INCOMPLETE',
        `the group certified ${run.certificates.size} of ${bytes.length}`,
      );
    let certified = 0;
    let verified = 0;
    let right = 0;
    let rightOfLabelled = 0;
    let agreedLabelled = 0;
    const index = new Map<string, number>();
    for (const [id, sr] of run.requests) index.set(id, Number(sr.request.nonce));
    for (const [id, cert] of run.certificates) {
      const i = index.get(id)!;
      if (verifyCertificate(cert, run.group.genesis).ok) verified++;
      const d = cert.outcome.decision;
      decisions[i][`minAgree=${minAgree}`] = d.kind === 'label' ? d.label : 'no-agreement';
      if (d.kind !== 'label') continue;
      certified++;
      if (labels[i] === null) continue;
      agreedLabelled++;
      if (d.label === labels[i]) {
        right++;
        rightOfLabelled++;
      }
    }
    const labelled = labels.filter((l) => l !== null).length;
    group.push({
      minAgree,
      coverage: certified / bytes.length,
      accuracyWhenAgreeing: agreedLabelled ? right / agreedLabelled : null,
      accuracyOverall: labelled ? rightOfLabelled / labelled : null,
      certified: run.certificates.size,
      verified,
    });
    progress(`group minAgree=${minAgree}`, run.certificates.size, bytes.length);
  }

  const labelled = labels.filter((l) => l !== null).length;
  const agreement = top1.map((a) => top1.map((b) => a.filter((x, i) => x === b[i]).length / files.length));
  const allAgree = files.filter((_, i) => top1.every((t) => t[i] === top1[0][i])).length / files.length;
  return {
    images: opts.images,
    count: files.length,
    labelled,
    models: models.map((m, mi) => ({
      name: opts.models[mi],
      sha256: m.sha256,
      top1: labelled
        ? top1[mi].filter((x, i) => labels[i] !== null && x === labels[i]).length / labelled
        : null,
    })),
    agreement,
    allAgree,
    group,
    perImage: files.map((file, i) => ({
      file,
      label: labels[i],
      top1: Object.fromEntries(opts.models.map((m, mi) => [m, top1[mi][i]])),
      decision: decisions[i],
    })),
  };
}

const pct = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(1)} %`);

/** The report as Markdown tables. */
export function formatEval(r: EvalReport): string {
  const short = r.models.map((_, i) => `m${i}`);
  const lines = [
    `${r.count} images from \`${r.images}\` (${r.labelled} with a known label).`,
    '',
    '| | model | sha256 | top-1 |',
    '| --- | --- | --- | ---: |',
    ...r.models.map((m, i) => `| m${i} | ${m.name} | ${m.sha256.slice(0, 12)}… | ${pct(m.top1)} |`),
    '',
    'Pairwise top-1 agreement:',
    '',
    `| | ${short.join(' | ')} |`,
    `| --- | ${short.map(() => '---:').join(' | ')} |`,
    ...r.agreement.map((row, i) => `| m${i} | ${row.map((x) => pct(x)).join(' | ')} |`),
    '',
    `All ${r.models.length} models agree on ${pct(r.allAgree)} of the images.`,
    '',
    '| group policy | coverage (certified label) | accuracy when it agrees | accuracy overall | certificates verified |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...r.group.map(
      (g) =>
        `| top-1, minAgree = ${g.minAgree} | ${pct(g.coverage)} | ${pct(g.accuracyWhenAgreeing)} | ${pct(g.accuracyOverall)} | ${g.verified}/${g.certified} |`,
    ),
  ];
  return lines.join('\n');
}
