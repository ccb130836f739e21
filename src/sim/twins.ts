/**
 * Twins (the method used to test DiemBFT): a second, honest copy of a node runs with the same key and
 * talks to one part of the network while the original talks to the rest. Each copy follows the protocol,
 * yet together they equivocate: this checks that safety does not rest on a node's own consistency.
 */
import { type Action, Replica } from '../consensus/replica.ts';
import { LedgerState } from '../ledger/state.ts';
import type { NodeMessage } from '../protocol/index.ts';
import { type ByzantineScript, type Outgoing, registerScript, type ScriptContext } from './byzantine.ts';
import { standInResult } from './standin.ts';

export function twins(): ByzantineScript {
  let twin: Replica | null = null;
  let ledger: LedgerState | null = null;
  // The original talks to the lower half of its peers, the twin to the upper half.
  const sideOf = (ctx: ScriptContext, peer: number) => {
    const peers = [...Array(ctx.n).keys()].filter((i) => i !== ctx.id);
    return peers.indexOf(peer) < peers.length / 2 ? 'original' : 'twin';
  };
  const start = (ctx: ScriptContext) => {
    if (!twin) {
      twin = new Replica(ctx.genesis, ctx.id, ctx.key, {});
      ledger = new LedgerState(ctx.genesis);
    }
    return twin;
  };
  const toTwinSide = (ctx: ScriptContext, to: number | 'all', msg: NodeMessage): Outgoing[] => {
    const peers = [...Array(ctx.n).keys()].filter((i) => i !== ctx.id && sideOf(ctx, i) === 'twin');
    return (to === 'all' ? peers : peers.filter((p) => p === to)).map((p) => ({ to: p, msg }));
  };
  /** Runs the twin's actions; returns what it sends. */
  const drive = (ctx: ScriptContext, actions: Action[]): Outgoing[] => {
    const out: Outgoing[] = [];
    const queue = [...actions];
    while (queue.length > 0) {
      const a = queue.shift()!;
      const t = twin!;
      if (a.type === 'send') out.push(...toTwinSide(ctx, a.to, a.msg));
      else if (a.type === 'broadcast') out.push(...toTwinSide(ctx, 'all', a.msg));
      else if (a.type === 'infer') {
        const results = a.requests.map((r) => ({
          requestId: r.requestId,
          result: standInResult(ctx.id, r.request.input, { disagreement: 0.1 }),
        }));
        queue.push(...t.step({ type: 'inferred', modelDigest: ledger!.models[ctx.id], results }, ctx.now()));
      } else if (a.type === 'execute') {
        const exec = ledger!.execute(a.seq, a.digest, a.batch, a.entries);
        queue.push(
          ...t.step(
            {
              type: 'executed',
              seq: a.seq,
              receipt: exec.receipt,
              requeued: exec.requeued,
              models: exec.models,
              modelVersions: exec.modelVersions,
              stateDigest: a.checkpoint ? ledger!.stateDigest() : undefined,
            },
            ctx.now(),
          ),
        );
      }
    }
    return out;
  };
  return {
    outbound(ctx, to, msg) {
      // The original's messages reach only its half.
      if (to !== 'all') return sideOf(ctx, to) === 'original' ? [{ to, msg }] : [];
      return [...Array(ctx.n).keys()]
        .filter((i) => i !== ctx.id && sideOf(ctx, i) === 'original')
        .map((i) => ({ to: i, msg }));
    },
    inbound(ctx, from, msg) {
      if (sideOf(ctx, from) === 'original') return null;
      return drive(ctx, start(ctx).step({ type: 'message', from, msg }, ctx.now()));
    },
    onTick(ctx) {
      return drive(ctx, start(ctx).step({ type: 'tick' }, ctx.now()));
    },
  };
}

registerScript('twins', twins);
