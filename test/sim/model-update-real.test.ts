/**
 * A model update with real models: a group of four different ImageNet classifiers (their real answers on
 * val images, computed by onnxruntime through the project's pipeline), in which node 2 replaces its
 * SqueezeNet by MobileNetV1 0.75 while 1,000 requests flow.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { verifyCertificate } from '../../src/certificate/index.ts';
import { catalogByName } from '../../src/inference/catalog.ts';
import { hex, type Result } from '../../src/protocol/index.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { classifyAll, digestBytes, precomputedClassifier } from '../../src/sim/eval.ts';
import { Simulation } from '../../src/sim/world.ts';
import { MODELS_DIR, VAL_DIR } from '../shared.ts';

const MODELS = MODELS_DIR;
const VAL = VAL_DIR;
const GROUP = [
  'mobilenetv2-12-int8',
  'shufflenet-v2-12-qdq',
  'squeezenet1.1-fp16-winml',
  'mobilenet_v1_0.5_160_quant',
];
const REPLACEMENT = 'mobilenet_v1_0.75_192_quant';
const UPDATED = 2;

const model = (name: string) => ({
  path: `${MODELS}/${name}.onnx`,
  spec: catalogByName(name)!,
  sha256: catalogByName(name)!.sha256,
});
const images = readdirSync(VAL)
  .sort()
  .slice(0, 100)
  .map((f) => readFileSync(`${VAL}/${f}`));
const all = [...GROUP, REPLACEMENT].map(model);
let results: Result[][] = [];
beforeAll(async () => {
  results = await classifyAll(all, images);
});

const top1 = (r: Result) => (r.kind === 'class' ? r.top[0].label : -1);

describe('model update with real models', () => {
  it('node 2 switches models at one seq on every node; votes and certificates follow the real models', () => {
    const digests = all.map((m) => digestBytes(m.sha256));
    const s = new Simulation({
      nodes: 4,
      requests: 1000,
      seed: 5,
      inputs: images,
      models: GROUP.map((name, i) => ({ name, digest: digests[i] })),
      classify: precomputedClassifier(digests, images, results),
      keepAllCertificates: true,
    });
    s.submitModelUpdateAt(40, UPDATED, digests[4]);
    const r = s.run();
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    expect(r.certificates.size).toBe(1000);
    expect(r.duplicateCertificates).toEqual([]);

    const switchAt = r.nodes.map((n) => n.modelLog.find((m) => m.versions[UPDATED] === 1)?.seq);
    expect(switchAt[0]).toBeDefined();
    expect(new Set(switchAt).size).toBe(1);
    const S = switchAt[0]!;

    const byInput = new Map(images.map((x, i) => [hex(x), i]));
    let before = 0;
    let after = 0;
    for (const c of r.certificates.values()) {
      expect(verifyCertificate(c, r.group.genesis).ok).toBe(true);
      const i = byInput.get(hex(r.requests.get(hex(c.outcome.requestId))!.input))!;
      for (const v of c.outcome.votes) {
        // The digest in force at this certificate's seq, and exactly that real model's answer.
        const m = v.node === UPDATED && c.receipt.seq >= S ? 4 : v.node;
        expect(hex(v.modelDigest)).toBe(hex(digests[m]));
        expect(top1(v.result)).toBe(top1(results[m][i]));
        if (v.node === UPDATED) c.receipt.seq >= S ? after++ : before++;
      }
    }
    expect(before).toBeGreaterThan(50);
    expect(after).toBeGreaterThan(50);
    // The two versions genuinely disagree on some of these images, so the switch is observable.
    expect(images.some((_, i) => top1(results[UPDATED][i]) !== top1(results[4][i]))).toBe(true);
  });
});
