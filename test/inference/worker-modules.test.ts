/**
 * A preprocessing worker does not load onnxruntime (src/inference/worker.ts imports each role's code for
 * that role alone): a child process starts a prep pool, prepares an image, and lists the shared objects the
 * process has loaded (process.report; a worker thread's dlopen maps into the whole process, so the main
 * thread sees it). Then it starts a session worker and lists them again: onnxruntime's library must appear
 * there, so that the first check cannot pass because the library went by another name. A child process, so
 * that nothing else of the test runner's has loaded onnxruntime first.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DATA_DIR, MODELS_DIR } from '../shared.ts';

const dir = mkdtempSync(join(tmpdir(), 'dropbear-worker-modules-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('worker threads load what their role needs', () => {
  it('a prep worker does not load onnxruntime; a session worker does', () => {
    const root = resolve(import.meta.dirname, '../..');
    const script = `
      import { readFileSync } from 'node:fs';
      import { catalogByName } from ${JSON.stringify(`${root}/src/inference/catalog.ts`)};
      import { PrepPool, SessionRunner } from ${JSON.stringify(`${root}/src/inference/threads.ts`)};
      const loaded = () => process.report.getReport().sharedObjects.filter((s) => /onnxruntime|vips/.test(s));
      const name = 'mobilenet_v1_0.25_128_quant';
      const spec = catalogByName(name);
      const before = loaded();
      const pool = await PrepPool.start(spec, 'fast', 1);
      const prep = await pool.prep(readFileSync(${JSON.stringify(`${DATA_DIR}/sample/n01440764_tench.JPEG`)}));
      const afterPrep = loaded();
      const runner = await SessionRunner.start(${JSON.stringify(MODELS_DIR)} + '/' + name + '.onnx', spec, {
        intraOpThreads: 1,
        interOpThreads: 1,
        executionProviders: ['cpu'],
      });
      const afterSession = loaded();
      await Promise.all([pool.close(), runner.close()]);
      console.log(JSON.stringify({ prepped: prep.data.length, before, afterPrep, afterSession }));
    `;
    const file = join(dir, 'modules.mts');
    writeFileSync(file, script);
    const out = spawnSync(process.execPath, ['--import', 'tsx', file], {
      cwd: root,
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(out.status, out.stderr).toBe(0);
    const r = JSON.parse(out.stdout.trim().split('\n').pop() as string) as {
      prepped: number;
      before: string[];
      afterPrep: string[];
      afterSession: string[];
    };
    const ort = (list: string[]) => list.filter((s) => /onnxruntime/.test(s));
    expect(r.prepped).toBe(3 * 128 * 128);
    expect(r.before).toEqual([]);
    // The prep worker decoded with libvips (so the listing sees its libraries) without onnxruntime.
    expect(r.afterPrep.some((s) => /vips/.test(s))).toBe(true);
    expect(ort(r.afterPrep)).toEqual([]);
    expect(ort(r.afterSession).some((s) => /libonnxruntime/.test(s))).toBe(true);
  }, 180_000);
});
