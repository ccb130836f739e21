// Closing an engine while its worker threads still run calls (a node stopped under load, a retired model).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { inputElements } from '../../src/inference/preprocess.ts';
import { PrepPool, SessionRunner } from '../../src/inference/threads.ts';
import { DATA_DIR, MODELS_DIR } from '../shared.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/close-under-load.ts', import.meta.url));
const BUSY = fileURLToPath(new URL('./fixtures/close-busy.ts', import.meta.url));
const HUNG = fileURLToPath(new URL('./fixtures/close-hung.ts', import.meta.url));

describe('InferenceEngine.close under load', () => {
  // In a process of its own: the failure this guards against aborts the whole process (a native
  // onnxruntime call completing into a terminated worker thread), or leaves calls that never settle.
  it.each(['mobilenet_v1_0.5_160_quant', 'squeezenet1.1-fp16-winml'])(
    '%s: waits for the running batches, fails the queued calls with ENGINE_CLOSED, exits cleanly',
    (model) => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', FIXTURE, model], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(r.stderr).not.toContain('terminate called');
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}');
      // The engine was closed with batches in flight, and every call settled one way or the other.
      expect(out.inFlight).toBeGreaterThan(0);
      expect(out.settled).toBe(out.images);
      // The batch being run when close was called was answered, not cut off.
      expect(out.ok).toBeGreaterThan(out.okAtClose);
      expect(out.ok + out.closed).toBe(out.images);
    },
    90_000,
  );

  // Close asks the thread to end and it exits by itself after its calls; before, close waited for the calls
  // it counted and then ended the thread from outside, which aborted the process whenever the thread was
  // still in a native call (here: a batch sent behind the runner's back, as a fault-injecting test did).
  it('a thread still inside a batch when closed finishes it and exits; the process is not aborted', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', BUSY, 'mobilenet_v1_0.5_160_quant', '10'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.stderr).not.toContain('terminate called');
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}')).toEqual({ closed: 10 });
  }, 90_000);
});

// A thread set aside as hung (a call on it timed out) is still inside that call when the engine closes. Until
// 2026-12-06 close ended it from outside after the drain, and the run returned into the torn-down thread:
// status 134 (2 of 3 tries with a 200-image batch and the 5 s drain). Now close waits for it to exit by itself,
// or past its bound returns and leaves it to do so.
describe('close with a thread set aside as hung, still inside its run', () => {
  const run = (...args: string[]) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', HUNG, ...args], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.stderr).not.toContain('terminate called');
    expect(r.status, r.stderr).toBe(0);
    return { out: JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}'), stderr: r.stderr };
  };

  it('close waits for the run to end and the thread to exit; the process exits cleanly', () => {
    const { out } = run();
    expect(out).toEqual({ timedOut: 'WORKER_TIMEOUT', hung: 1, exitedAtClose: true });
  }, 90_000);

  it('past its bound close returns without ending the thread, says so, and the thread exits by itself', () => {
    const { out, stderr } = run('100');
    expect(out).toEqual({ timedOut: 'WORKER_TIMEOUT', hung: 1, exitedAtClose: false });
    expect(stderr).toMatch(/still inside a call at close/);
  }, 90_000);
});

// A closed thread answers every call it was sent, then exits by itself (worker.ts, `Track`): its last answers
// are posted just before its process.exit and must reach the caller as answers, not as ENGINE_CLOSED (which
// is what the exit would fail them with were they lost: WorkerHandle.shutDown).
describe('close answers the calls already sent to the threads', () => {
  const NAME = 'mobilenet_v1_0.5_160_quant';
  const spec = catalogByName(NAME)!;
  const img = readFileSync(`${DATA_DIR}/sample/n01440764_tench.JPEG`);
  const outcome = (p: Promise<{ data: ArrayLike<number> }>) =>
    p.then(
      (a) => `ok:${a.data.length}`,
      (e: { code?: string }) => e.code ?? String(e),
    );

  it('a session runner closed with batches sent: every batch is answered', async () => {
    const r = await SessionRunner.start(`${MODELS_DIR}/${NAME}.onnx`, spec, {
      intraOpThreads: 1,
      interOpThreads: 1,
      executionProviders: ['cpu'],
    });
    const n = inputElements(spec);
    const runs = Array.from({ length: 6 }, () => outcome(r.run(new Float32Array(2 * n), 2)));
    await r.close();
    expect(await Promise.all(runs)).toEqual(Array(6).fill(`ok:${2 * 1000}`));
  }, 60_000);

  it('a preprocessing pool closed with inputs sent: every input sent to a thread is answered', async () => {
    const pool = await PrepPool.start(spec, 'fast', 2);
    // Two per thread are sent to the threads (PREP_PER_WORKER); floats and half bits (the staging path).
    const preps = [false, true, false, true].map((half) => outcome(pool.prep(img, undefined, half)));
    await pool.close();
    expect(await Promise.all(preps)).toEqual(Array(4).fill(`ok:${inputElements(spec)}`));
  }, 60_000);
});
