/**
 * A faulty owner spreads its own model updates to the backups only, never to the primary. The backups
 * take them and run their request timer for them; before they relayed them to the primary, the honest
 * primary never saw them and was voted out: a view change whenever the faulty owner liked.
 */
import { describe, expect, it } from 'vitest';
import { sha256 } from '../../src/protocol/index.ts';
import { registerScript } from '../../src/sim/byzantine.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { Simulation } from '../../src/sim/world.ts';

const enc = new TextEncoder();
const V1 = sha256(enc.encode('stand-in-model-3, version 1'));
const V2 = sha256(enc.encode('stand-in-model-3, version 2'));

describe('a model update spread to the backups only', () => {
  it('the primary gets them from the backups: each ordered, and no view change', () => {
    registerScript('test-tx-to-backups-only', () => ({
      outbound: (ctx, to, msg) => {
        if (msg.kind !== 'tx') return [{ to, msg }];
        const primary = ctx.view() % ctx.n;
        const out = [];
        for (let i = 0; i < ctx.n; i++) if (i !== ctx.id && i !== primary) out.push({ to: i, msg });
        return out;
      },
    }));
    const s = new Simulation({
      nodes: 4,
      requests: 200,
      seed: 21,
      rate: 1,
      byzantine: new Map([[3, 'test-tx-to-backups-only']]),
    });
    s.submitModelUpdateAt(20, 3, V1);
    // The next version, once the first is ordered (the owner reads its version from its ledger).
    let second = false;
    const honest = [0, 1, 2];
    const r = s.run({
      until: () => {
        if (!second && s.models(3).versions[3] === 1) {
          second = true;
          s.submitModelUpdate(3, V2);
        }
        return honest.every((i) => s.models(i).versions[3] === 2) && s.certificates.size === 200;
      },
    });
    expect(r.done).toBe(true);
    expect(checkRun(r)).toEqual({ ok: true, problems: [] });
    for (const i of honest) expect(s.nodes[i].replica.view).toBe(0);
  });
});
