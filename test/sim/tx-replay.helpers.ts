/**
 * A faulty primary for the simulator's transaction tests: in each of its proposals it carries again every
 * transaction of `kind` it proposed before, and its own batch's twice (re-signed: the same forged proposal
 * for every copy of one (view, seq, digest)). Registered as a byzantine script under `name`.
 */
import { hex, type PrePrepare, type Tx, txIdOf } from '../../src/protocol/index.ts';
import { signedPrePrepare } from '../../src/sim/attacks.ts';
import { registerScript } from '../../src/sim/byzantine.ts';

export function registerReplayingPrimary(name: string, kind: Tx['kind']): void {
  registerScript(name, () => {
    const proposed = new Map<string, Tx>();
    const made = new Map<string, PrePrepare>();
    return {
      outbound: (ctx, to, msg) => {
        if (msg.kind !== 'prePrepare' || msg.pp.view % ctx.n !== ctx.id) return [{ to, msg }];
        const pp = msg.pp;
        const key = `${pp.view}:${pp.seq}:${hex(pp.digest)}`;
        let out = made.get(key);
        if (!out) {
          const own = pp.batch.txs.filter((t) => t.kind === kind);
          const again = [...proposed.values(), ...own];
          for (const t of own) proposed.set(hex(txIdOf(t)), t);
          out =
            again.length === 0
              ? pp
              : signedPrePrepare(ctx, pp.view, pp.seq, { ...pp.batch, txs: [...pp.batch.txs, ...again] });
          made.set(key, out);
        }
        return [{ to, msg: { kind: 'prePrepare', pp: out } }];
      },
    };
  });
}
