/**
 * A faulty primary for the simulator's transaction tests: in each of its proposals it carries again every
 * transaction of `kind` it proposed before, and its own batch's twice (re-signed: the same forged proposal
 * for every copy of one (view, seq, digest)). Registered as a byzantine script under `name`.
 */
import { expect } from 'vitest';
import { hex, type KeyPair, type PrePrepare, type Tx, txIdOf } from '../../src/protocol/index.ts';
import { signedPrePrepare } from '../../src/sim/attacks.ts';
import { registerScript } from '../../src/sim/byzantine.ts';
import { checkRun } from '../../src/sim/checks.ts';
import { type SimNode, Simulation } from '../../src/sim/world.ts';

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

/** What a replaying-primary scenario submits, and how a node counts it applied. */
export interface ReplayedTxs {
  /** The transaction of this serial and amount. */
  tx: (serial: number, amount: number) => Tx;
  /** The last serial the node applied. */
  serialOf: (n: SimNode) => number;
  /** Where given, every honest node must be ready before the next one is submitted. */
  ready?: (n: SimNode) => boolean;
}

/**
 * The replaying-primary scenario the transaction tests share: 4 nodes at 1 request per virtual ms, node 0
 * the byzantine `script` (registered with registerReplayingPrimary for `kind`). Through node 3 it submits
 * `tx(k, 3)` for k = 1, 2, 3, each once every honest node counts the one before applied (`serialOf`) and,
 * where given, is `ready` for it; it runs until the `requests` are certified and every honest node counts
 * the third applied, holds no transaction pending and is at node 1's seq. Expects the run done and its
 * checks passed, and that the attack ran: every honest node's batches carried more than 3 + 3 transactions
 * of `kind` (some already applied, or twice). `txs` makes what is submitted from the simulation, its group
 * and its genesis client. Returns the simulation and its honest nodes.
 */
export function runReplayingPrimary(
  opts: { seed: number; requests: number; script: string; kind: Tx['kind'] },
  txs: (sim: { s: Simulation; gid: Uint8Array; client: KeyPair }) => ReplayedTxs,
): { s: Simulation; honest: SimNode[] } {
  const s = new Simulation({
    nodes: 4,
    requests: opts.requests,
    seed: opts.seed,
    rate: 1,
    keepAllCertificates: true,
    maxTimeMs: 20_000,
    byzantine: new Map([[0, opts.script]]),
  });
  const { tx, serialOf, ready } = txs({ s, gid: s.nodes[0].replica.groupId, client: s.group.client });
  const honest = [1, 2, 3].map((i) => s.nodes[i]);
  let next = 1;
  const r = s.run({
    until: () => {
      if (next <= 3 && honest.every((n) => serialOf(n) === next - 1) && (!ready || honest.every(ready))) {
        expect(s.submitTx(3, tx(next, 3))?.accepted).toBe(true);
        next++;
      }
      return (
        next === 4 &&
        s.certificates.size === opts.requests &&
        honest.every(
          (n) =>
            serialOf(n) === 3 && n.replica.pendingTxs.length === 0 && n.ledger.seq === s.nodes[1].ledger.seq,
        )
      );
    },
  });
  expect(r.done).toBe(true);
  expect(checkRun(r)).toEqual({ ok: true, problems: [] });
  for (const n of honest) {
    let carried = 0;
    for (const h of n.history.values()) carried += h.batch.txs.filter((t) => t.kind === opts.kind).length;
    expect(carried).toBeGreaterThan(3 + 3);
  }
  return { s, honest };
}
