/**
 * onnxruntime's telemetry stays off (src/inference/ort-env.ts): a process that runs a real model through
 * the engine (session worker, onnxruntime-node) writes neither the telemetry client's event cache under
 * its home directory nor its /tmp/mat-debug-<pid>.log. A child process, so that the environment is the
 * one a node starts with (no ORT_DISABLE_TELEMETRY of its own) and HOME can point at a fresh directory.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MODELS_DIR, VAL_DIR } from '../shared.ts';

const dir = mkdtempSync(join(tmpdir(), 'dropbear-telemetry-'));
const home = join(dir, 'home');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs one image through the engine in a child process with HOME = `home`; returns the child's pid. */
function classifyInChild(env: NodeJS.ProcessEnv): number {
  const root = resolve(import.meta.dirname, '../..');
  const script = `
    import { readdirSync, readFileSync } from 'node:fs';
    import { catalogByName } from ${JSON.stringify(`${root}/src/inference/catalog.ts`)};
    import { InferenceEngine } from ${JSON.stringify(`${root}/src/inference/engine.ts`)};
    const name = 'mobilenet_v1_0.25_128_quant';
    const e = await InferenceEngine.start({ modelPath: ${JSON.stringify(MODELS_DIR)} + '/' + name + '.onnx', spec: catalogByName(name) });
    const val = ${JSON.stringify(VAL_DIR)};
    const img = readFileSync(val + '/' + readdirSync(val).filter((f) => f.endsWith('.JPEG')).sort()[0]);
    const r = await e.classify(img);
    await e.close();
    console.log(JSON.stringify({ pid: process.pid, top: r.kind === 'class' ? r.top.length : -1 }));
  `;
  const file = join(dir, 'classify.mts');
  writeFileSync(file, script);
  const out = spawnSync(process.execPath, ['--import', 'tsx', file], {
    cwd: root,
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(out.status, out.stderr).toBe(0);
  const line = JSON.parse(out.stdout.trim().split('\n').pop() as string) as { pid: number; top: number };
  expect(line.top).toBe(5);
  return line.pid;
}

describe('onnxruntime telemetry', () => {
  it('is off for a process that runs a model through the engine', () => {
    mkdirSync(home);
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home };
    delete env.ORT_DISABLE_TELEMETRY;
    const pid = classifyInChild(env);
    expect(readdirSync(home)).toEqual([]);
    expect(existsSync(`/tmp/mat-debug-${pid}.log`)).toBe(false);
  });
});
