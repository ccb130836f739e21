/**
 * npm run bench:inference — images per second per model through the project's pipeline against a bare
 * loop of `session.run` on pre-made tensors, in the same run, at inference batch sizes 1, 8 and 32.
 *
 * - bare: the main thread calls `session.run` back to back on one pre-made input tensor of the batch size
 *   (models with the batch fixed at 1 run b single runs), intraOpNumThreads 1. No preprocessing, no copies.
 * - pipeline, tensors: pre-made preprocessed inputs go through InferenceEngine.scores (dynamic batcher with
 *   maxBatch = b, session in a worker thread, intraOpNumThreads 1): everything but decoding. A model with
 *   the batch fixed at 1 runs one input at a time there whatever b is (the engine caps it).
 * - pipeline, val JPEGs: InferenceEngine.classify on the val images' bytes: decode (libvips), resize, crop,
 *   normalise on one preprocessing worker, then as above, then top-5. Also with the jpeg-js decoder.
 * Each row: `--runs` runs (default 3), median and min–max. Also: preprocessing cost per image (val 227×227
 * and full-size sample photos, both decoders), the float16 conversion a float16 model's preprocessing
 * worker runs (toHalf against the element-wise floatToHalf it replaced, same run), where it runs (the
 * main thread's CPU with the conversion in the batch and on the worker, interleaved), and one
 * session with 2 intra-op threads against two session workers with 1 thread each. Writes
 * bench/results/inference.json and the BENCHMARKS.md section.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import '../src/inference/ort-env.ts';
import * as ort from 'onnxruntime-node';
import { CATALOG, catalogByName } from '../src/inference/catalog.ts';
import type { Decoder } from '../src/inference/decode.ts';
import { InferenceEngine } from '../src/inference/engine.ts';
import { floatToHalf, inputElements, toHalf } from '../src/inference/preprocess.ts';
import { fixedBatchOne, type ModelSpec, ORT_SESSION_CONFIG } from '../src/inference/spec.ts';
import { type FlagSpecs, scriptFlags } from './lib/args.ts';
import { cpuFlags, describeMachine, machine as machineNow } from './lib/machine.ts';
import { flag } from './lib/part.ts';
import { mainThreadCpuMsOf } from './lib/procs.ts';

// Measured first, before this process loads the CPU (the speed reference, the load average).
const started = machineNow();

const FLAGS: FlagSpecs = {
  runs: { kind: 'count', help: 'runs per row (3, 1 with --quick)' },
  batches: { kind: 'counts', help: 'inference batch sizes (1,8,32)' },
  models: { kind: 'text', help: 'models, comma-separated (every ImageNet model in the store)' },
  quick: { kind: 'switch', help: 'a short run' },
};
const given = scriptFlags(process.argv.slice(2), FLAGS, 'npm run bench:inference');
const arg = (name: string) => flag(given, name);
const quick = given.includes('--quick');
const RUNS = Number(arg('runs') ?? (quick ? 1 : 3));
const BATCHES = (arg('batches') ?? '1,8,32').split(',').map(Number);
const MODELS_DIR = process.env.DROPBEAR_MODELS ?? '../shared/models';
const DATA = '../shared/datasets/imagenet-sample';
const names = (
  arg('models') ??
  CATALOG.filter((m) => m.labels === 'imagenet1k')
    .map((m) => m.name)
    .join(',')
).split(',');
const SECONDS = quick ? 0.3 : 0.8;

const valFiles = readdirSync(`${DATA}/val`).sort();
const val = valFiles.map((f) => readFileSync(`${DATA}/val/${f}`));
const sample = readdirSync(`${DATA}/sample`)
  .sort()
  .slice(0, quick ? 20 : 60)
  .map((f) => readFileSync(`${DATA}/sample/${f}`));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const stat = (xs: number[]) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), runs: xs });
type Stat = ReturnType<typeof stat>;
const fmt = (s: Stat, digits = 0) =>
  RUNS > 1
    ? `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`
    : s.median.toFixed(digits);

async function bare(spec: ModelSpec, path: string, b: number): Promise<number> {
  const s = await ort.InferenceSession.create(path, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    extra: ORT_SESSION_CONFIG, // the same kernels as the engine's sessions
  });
  const one = fixedBatchOne(spec);
  const n = one ? 1 : b;
  const x = new Float32Array(n * inputElements(spec)).map(() => Math.random());
  const dims = [n, ...spec.input.shape.slice(1).map((d) => d ?? 1)];
  const t =
    spec.input.dtype === 'float16'
      ? new ort.Tensor('float16', toHalf(x), dims)
      : new ort.Tensor('float32', x, dims);
  const feeds = { [spec.input.name]: t };
  for (let i = 0; i < 3; i++) await s.run(feeds);
  let images = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < SECONDS * 1000) {
    await s.run(feeds);
    images += n;
  }
  const rate = (images * 1000) / (performance.now() - t0);
  await s.release();
  return rate;
}

async function pipeline(
  spec: ModelSpec,
  path: string,
  b: number,
  mode: 'tensors' | Decoder,
  count: number,
): Promise<number> {
  const e = await InferenceEngine.start({
    modelPath: path,
    spec,
    maxBatch: b,
    maxDelayMs: 2,
    maxQueue: 100_000,
    decoder: mode === 'tensors' ? 'fast' : mode,
  });
  try {
    const pre = mode === 'tensors' ? await Promise.all(val.slice(0, 64).map((x) => e.preprocess(x))) : [];
    // Warm up the worker and the batcher.
    await Promise.all(val.slice(0, 2 * b).map((x) => e.classify(x)));
    const t0 = performance.now();
    if (mode === 'tensors')
      await Promise.all(Array.from({ length: count }, (_, i) => e.scores(pre[i % pre.length])));
    else await Promise.all(Array.from({ length: count }, (_, i) => e.classify(val[i % val.length])));
    return (count * 1000) / (performance.now() - t0);
  } finally {
    await e.close();
  }
}

async function prepCost(decoder: Decoder, images: Buffer[]): Promise<number> {
  const spec = catalogByName('mobilenetv2-12-int8')!;
  const e = await InferenceEngine.start({ modelPath: `${MODELS_DIR}/${spec.name}.onnx`, spec, decoder });
  try {
    for (const x of images.slice(0, 5)) await e.preprocess(x);
    const before = e.stats().prepMs;
    const t0 = performance.now();
    for (const x of images) await e.preprocess(x);
    const wall = performance.now() - t0;
    return Math.min(wall, e.stats().prepMs - before) / images.length;
  } finally {
    await e.close();
  }
}

/**
 * ms per image to turn a preprocessed 224×224×3 float tensor (real val images, normalised for the float16
 * model) into half bits: toHalf, and the element-wise floatToHalf loop toHalf replaced, interleaved.
 */
async function halfCost(): Promise<{ model: string; fast: Stat; reference: Stat }> {
  const name = 'squeezenet1.1-fp16-winml';
  const spec = catalogByName(name)!;
  const e = await InferenceEngine.start({ modelPath: `${MODELS_DIR}/${name}.onnx`, spec });
  let xs: Float32Array[];
  try {
    xs = await Promise.all(val.slice(0, 8).map((x) => e.preprocess(x)));
  } finally {
    await e.close();
  }
  const out = new Uint16Array(xs[0].length);
  const elementWise = (x: Float32Array) => {
    for (let i = 0; i < x.length; i++) out[i] = floatToHalf(x[i]);
  };
  const time = (f: (x: Float32Array) => void) => {
    const reps = quick ? 5 : 25;
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) for (const x of xs) f(x);
    return (performance.now() - t0) / (reps * xs.length);
  };
  time((x) => toHalf(x, out)); // warm both up
  time(elementWise);
  const fast: number[] = [];
  const reference: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    fast.push(time((x) => toHalf(x, out)));
    reference.push(time(elementWise));
  }
  return { model: name, fast: stat(fast), reference: stat(reference) };
}

/**
 * Where a float16 model's inputs become half bits, interleaved on one engine (val JPEGs, 8 in flight,
 * maxBatch 8): floats converted when the batch forms, on the caller's (the node's main) thread
 * (`scores(await preprocess(x))`, how the engine did it up to 2026-12-03), against half bits made on the
 * preprocessing worker (`scoresFor(x)`, what classify does now). Main-thread CPU and the process's CPU per
 * image, and images/s.
 */
async function halfPlacement(): Promise<{
  model: string;
  images: number;
  batch: Record<'main' | 'process' | 'rate', Stat>;
  worker: Record<'main' | 'process' | 'rate', Stat>;
}> {
  const name = 'squeezenet1.1-fp16-winml';
  const spec = catalogByName(name)!;
  const e = await InferenceEngine.start({ modelPath: `${MODELS_DIR}/${name}.onnx`, spec, maxBatch: 8 });
  const images = val.slice(0, quick ? 40 : 160);
  const once = async (viaWorker: boolean) => {
    const m0 = mainThreadCpuMsOf(process.pid);
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < images.length) {
          const x = images[next++];
          await (viaWorker ? e.scoresFor(x) : e.scores(await e.preprocess(x)));
        }
      }),
    );
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return {
      main: (mainThreadCpuMsOf(process.pid) - m0) / images.length,
      process: (c.user + c.system) / 1000 / images.length,
      rate: (images.length * 1000) / wall,
    };
  };
  const runs = {
    batch: [] as Awaited<ReturnType<typeof once>>[],
    worker: [] as Awaited<ReturnType<typeof once>>[],
  };
  try {
    await once(false); // warm both up
    await once(true);
    for (let r = 0; r < RUNS; r++)
      for (const viaWorker of r % 2 ? [true, false] : [false, true])
        runs[viaWorker ? 'worker' : 'batch'].push(await once(viaWorker));
  } finally {
    await e.close();
  }
  const of = (xs: Awaited<ReturnType<typeof once>>[]) => ({
    main: stat(xs.map((x) => x.main)),
    process: stat(xs.map((x) => x.process)),
    rate: stat(xs.map((x) => x.rate)),
  });
  return { model: name, images: images.length, batch: of(runs.batch), worker: of(runs.worker) };
}

async function threads(name: string, b: number) {
  const spec = catalogByName(name)!;
  const path = `${MODELS_DIR}/${name}.onnx`;
  const out: Record<string, Stat> = {};
  for (const [label, o] of [
    ['1 session, 1 thread', { intraOpThreads: 1, sessionWorkers: 1 }],
    ['1 session, 2 intra-op threads', { intraOpThreads: 2, sessionWorkers: 1 }],
    ['2 session workers, 1 thread each', { intraOpThreads: 1, sessionWorkers: 2 }],
  ] as const) {
    const rates: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const e = await InferenceEngine.start({ modelPath: path, spec, maxBatch: b, maxQueue: 100_000, ...o });
      const pre = await Promise.all(val.slice(0, 64).map((x) => e.preprocess(x)));
      await Promise.all(pre.map((x) => e.scores(x)));
      const count = quick ? 256 : 1024;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: count }, (_, i) => e.scores(pre[i % pre.length])));
      rates.push((count * 1000) / (performance.now() - t0));
      await e.close();
    }
    out[label] = stat(rates);
  }
  return out;
}

interface Row {
  model: string;
  batch: number;
  bare: Stat;
  tensors: Stat;
  fast: Stat;
  reference: Stat;
}

const rows: Row[] = [];
for (const name of names) {
  const spec = catalogByName(name);
  if (!spec) throw new Error(`unknown model ${name}`);
  const path = `${MODELS_DIR}/${name}.onnx`;
  for (const b of BATCHES) {
    const acc = {
      bare: [] as number[],
      tensors: [] as number[],
      fast: [] as number[],
      reference: [] as number[],
    };
    for (let r = 0; r < RUNS; r++) {
      const base = await bare(spec, path, b);
      acc.bare.push(base);
      const count = Math.max(4 * b, Math.round(base * SECONDS));
      acc.tensors.push(await pipeline(spec, path, b, 'tensors', count));
      acc.fast.push(await pipeline(spec, path, b, 'fast', Math.min(count, 600)));
      acc.reference.push(await pipeline(spec, path, b, 'reference', Math.min(count, 300)));
    }
    const row = {
      model: name,
      batch: b,
      bare: stat(acc.bare),
      tensors: stat(acc.tensors),
      fast: stat(acc.fast),
      reference: stat(acc.reference),
    };
    rows.push(row);
    console.log(
      `${name} b${b}: bare ${fmt(row.bare)} img/s | tensors ${fmt(row.tensors)} (${(row.tensors.median / row.bare.median).toFixed(2)}) | val JPEG fast ${fmt(row.fast)} (${(row.fast.median / row.bare.median).toFixed(2)}) | reference decoder ${fmt(row.reference)} (${(row.reference.median / row.bare.median).toFixed(2)})`,
    );
  }
}

const prep = {
  valFast: await prepCost('fast', val.slice(0, quick ? 40 : 150)),
  valReference: await prepCost('reference', val.slice(0, quick ? 40 : 150)),
  sampleFast: await prepCost('fast', sample),
  sampleReference: await prepCost('reference', sample),
};
console.log('preprocessing ms/image', prep);
const half = await halfCost();
console.log(
  `float16 conversion ms/image: toHalf ${fmt(half.fast, 3)}, element-wise floatToHalf ${fmt(half.reference, 3)} (${(half.reference.median / half.fast.median).toFixed(2)}×)`,
);
const placement = await halfPlacement();
console.log(
  `float16 inputs, main-thread CPU-ms/image: converted in the batch ${fmt(placement.batch.main, 2)}, on the worker ${fmt(placement.worker.main, 2)}`,
);
const threadModel = names.includes('mobilenetv2-12-int8') ? 'mobilenetv2-12-int8' : names[0];
const threadRows = await threads(threadModel, 8);
console.log('threads', Object.fromEntries(Object.entries(threadRows).map(([k, v]) => [k, fmt(v)])));

const machine = `${describeMachine(started)}; CPU ${cpuFlags()}; onnxruntime-node 1.30.0 CPU`;
const command = `npm run bench:inference${process.argv.slice(2).length ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
writeFileSync(
  'bench/results/inference.json',
  `${JSON.stringify({ machine, command, runs: RUNS, rows, prep, half, placement, threads: { model: threadModel, batch: 8, rows: threadRows } }, null, 2)}\n`,
);

const ratio = (a: Stat, b: Stat) => (a.median / b.median).toFixed(2);
const table = [
  `Machine: ${machine}. Command: \`${command}\`. ${RUNS} run(s) per row, median (min–max), images/s.`,
  '',
  '| model | batch | bare session.run | pipeline, tensors | ratio | pipeline, val JPEGs (libvips) | ratio | val JPEGs (jpeg-js) | ratio |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.model} | ${r.batch} | ${fmt(r.bare)} | ${fmt(r.tensors)} | ${ratio(r.tensors, r.bare)} | ${fmt(r.fast)} | ${ratio(r.fast, r.bare)} | ${fmt(r.reference)} | ${ratio(r.reference, r.bare)} |`,
  ),
  '',
  '| preprocessing per image (one worker thread) | libvips decode | jpeg-js decode |',
  '| --- | ---: | ---: |',
  `| val, 227×227 JPEG → 224×224 | ${prep.valFast.toFixed(2)} ms | ${prep.valReference.toFixed(2)} ms |`,
  `| sample, full-size photo → 224×224 | ${prep.sampleFast.toFixed(2)} ms | ${prep.sampleReference.toFixed(2)} ms |`,
  '',
  `Float32 → float16 bits per image (${half.model}'s 224×224×3 input, 8 val images; the preprocessing worker does this): toHalf ${fmt(half.fast, 3)} ms, the element-wise floatToHalf it replaced ${fmt(half.reference, 3)} ms, ${(half.reference.median / half.fast.median).toFixed(2)}× (medians).`,
  '',
  `Where the half bits are made (${placement.model}, ${placement.images} val JPEGs per run, 8 in flight, maxBatch 8, the two interleaved on one engine), per image: converted when the batch forms, on the main thread (the engine before 2026-12-03): main thread ${fmt(placement.batch.main, 2)} CPU-ms, process ${fmt(placement.batch.process, 2)} CPU-ms, ${fmt(placement.batch.rate, 1)} images/s; on the preprocessing worker (now): main thread ${fmt(placement.worker.main, 2)} CPU-ms, process ${fmt(placement.worker.process, 2)} CPU-ms, ${fmt(placement.worker.rate, 1)} images/s.`,
  '',
  `Threads (${threadModel}, pre-made tensors, batch 8, images/s):`,
  '',
  '| configuration | images/s |',
  '| --- | ---: |',
  ...Object.entries(threadRows).map(([k, v]) => `| ${k} | ${fmt(v)} |`),
].join('\n');
const md = readFileSync('BENCHMARKS.md', 'utf8');
const section = `<!-- inference:begin -->\n${table}\n<!-- inference:end -->`;
if (md.includes('<!-- inference:begin -->'))
  writeFileSync(
    'BENCHMARKS.md',
    md.replace(/<!-- inference:begin -->[\s\S]*<!-- inference:end -->/, section),
  );
else writeFileSync('BENCHMARKS.md', `${md.trimEnd()}\n\n## Inference pipeline\n\n${section}\n`);
