import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MODELS_DIR, VAL_DIR } from '../shared.ts';

const home = mkdtempSync(join(tmpdir(), 'dropbear-eval-'));
afterAll(() => rmSync(home, { recursive: true, force: true }));

const MODELS =
  'mobilenetv2-12-int8,shufflenet-v2-12-qdq,squeezenet1.1-fp16-winml,mobilenet_v1_0.25_128_quant';

describe('npm run eval', () => {
  it('imports missing models from DROPBEAR_MODELS and reports per-model, pairwise and group figures', () => {
    const json = join(home, 'eval.json');
    const out = execFileSync(
      process.execPath,
      ['bin/dropbear.mjs', 'eval', '--models', MODELS, '--images', VAL_DIR, '--limit', '24', '--json', json],
      { env: { ...process.env, DROPBEAR_HOME: home, DROPBEAR_MODELS: MODELS_DIR }, encoding: 'utf8' },
    );
    expect(out).toContain('Pairwise top-1 agreement');
    expect(out).toContain('top-1, minAgree = 2');
    expect(out).toContain('top-1, minAgree = 3');
    const r = JSON.parse(readFileSync(json, 'utf8'));
    expect(r.count).toBe(24);
    expect(r.labelled).toBe(24);
    expect(r.models.map((m: { name: string }) => m.name)).toEqual(MODELS.split(','));
    for (let i = 0; i < 4; i++) expect(r.agreement[i][i]).toBe(1);
    expect(r.agreement[0][1]).toBe(r.agreement[1][0]);
    const [weak, strong] = r.group;
    expect(weak.minAgree).toBe(2);
    expect(strong.minAgree).toBe(3);
    // A stricter threshold certifies a label on fewer images, and every certificate verifies.
    expect(strong.coverage).toBeLessThanOrEqual(weak.coverage);
    expect(weak.verified).toBe(24);
    expect(strong.verified).toBe(24);
    // Per image: each model's top-1, and a decision consistent with the votes for each threshold.
    for (const img of r.perImage) {
      const votes = Object.values(img.top1) as number[];
      const counts = new Map<number, number>();
      for (const v of votes) counts.set(v, (counts.get(v) ?? 0) + 1);
      const best = Math.max(...counts.values());
      if (best >= 3) expect(img.decision['minAgree=3']).not.toBe('no-agreement');
      if (best < 2) expect(img.decision['minAgree=2']).toBe('no-agreement');
      const d = img.decision['minAgree=2'];
      if (d !== 'no-agreement') expect(counts.get(d)).toBeGreaterThanOrEqual(2);
    }
  });

  it('a model missing from the store, with no DROPBEAR_MODELS, is a clear error', () => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DROPBEAR_HOME: join(home, 'empty-home'),
    };
    delete env.DROPBEAR_MODELS;
    let err = '';
    try {
      execFileSync(process.execPath, ['bin/dropbear.mjs', 'eval', '--models', MODELS], {
        env,
        encoding: 'utf8',
        stdio: 'pipe',
      });
    } catch (e) {
      err = String((e as { stderr: string }).stderr);
    }
    expect(err).toContain('MODEL_NOT_FOUND');
    expect(err).toContain('models pull');
  });
});
