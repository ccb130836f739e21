/**
 * The Byzantine scripts beyond the basic ones in byzantine.ts: misbehaving primaries (equivocation,
 * forged votes, duplicate or forged requests, censorship, silence, slowness), double voting, a stale
 * model version and garbage. Each wraps the honest replica and rewrites what it sends, signing with
 * the node's own key so that only the protocol's checks (not a signature check) can catch it.
 *
 * Pre-prepare rewrites are deterministic per (view, seq, digest) and per recipient: a retransmission or
 * a FETCHED answer carries the same forged proposal as the first copy, so an attack cannot heal itself
 * through the honest replica's own retransmissions.
 */
import {
  type Batch,
  type BatchEntry,
  batchDigestOf,
  CheckpointBody,
  encode,
  hex,
  type NodeMessage,
  PhaseBody,
  type PrePrepare,
  type Result,
  requestIdOf,
  type SignedRequest,
  type SignedResults,
  sha256,
  signResults,
  signTagged,
  TAGS,
} from '../protocol/index.ts';
import { type ByzantineScript, type Outgoing, registerScript, type ScriptContext } from './byzantine.ts';

const enc = new TextEncoder();

// ---------------------------------------------------------------- helpers

/** Is the node the primary of its replica's current view? */
export function isPrimaryNow(ctx: ScriptContext): boolean {
  return ctx.view() % ctx.n === ctx.id;
}

function peersOf(ctx: ScriptContext): number[] {
  const out: number[] = [];
  for (let i = 0; i < ctx.n; i++) if (i !== ctx.id) out.push(i);
  return out;
}

/** A PRE-PREPARE for `batch` at (view, seq), properly signed by this node over PhaseBody. */
export function signedPrePrepare(ctx: ScriptContext, view: number, seq: number, batch: Batch): PrePrepare {
  const digest = batchDigestOf(batch);
  const signature = signTagged(
    TAGS.prePrepare,
    ctx.groupId,
    encode(PhaseBody, { from: ctx.id, view, seq, digest }),
    ctx.key,
  );
  return { view, seq, digest, signature, batch };
}

/**
 * How a scripted primary rewrites one of its own proposals for one recipient: return the PRE-PREPARE
 * to send instead (or the same one). Called once per (proposal, recipient); the answer is cached.
 */
type ProposalRewrite = (ctx: ScriptContext, pp: PrePrepare, to: number) => PrePrepare;

/**
 * Applies `rewrite` to every PRE-PREPARE this node signed as primary, in PRE-PREPARE messages and in
 * FETCHED answers alike, consistently per recipient. Other messages pass through unchanged (or through
 * `other`, when given).
 */
function proposalRewriter(
  rewrite: ProposalRewrite,
  other?: (ctx: ScriptContext, to: number | 'all', msg: NodeMessage) => Outgoing[],
): NonNullable<ByzantineScript['outbound']> {
  const cache = new Map<string, PrePrepare>();
  const forPeer = (ctx: ScriptContext, pp: PrePrepare, to: number): PrePrepare => {
    if (pp.view % ctx.n !== ctx.id) return pp; // not ours to forge (cannot happen for PRE-PREPAREs we sign)
    const key = `${pp.view}:${pp.seq}:${hex(pp.digest)}:${to}`;
    let out = cache.get(key);
    if (!out) {
      out = rewrite(ctx, pp, to);
      cache.set(key, out);
    }
    return out;
  };
  return (ctx, to, msg) => {
    if (msg.kind === 'prePrepare') {
      const targets = to === 'all' ? peersOf(ctx) : [to];
      return targets.map((p) => ({ to: p, msg: { kind: 'prePrepare', pp: forPeer(ctx, msg.pp, p) } }));
    }
    if (msg.kind === 'fetched' && msg.prePrepares.length > 0) {
      const targets = to === 'all' ? peersOf(ctx) : [to];
      return targets.map((p) => ({
        to: p,
        msg: { ...msg, prePrepares: msg.prePrepares.map((pp) => forPeer(ctx, pp, p)) },
      }));
    }
    return other ? other(ctx, to, msg) : [{ to, msg }];
  };
}

/** A different but equally valid batch: same entries in reverse order, or (one entry) a later timestamp. */
function conflictingBatch(b: Batch): Batch {
  if (b.entries.length >= 2) return { ...b, entries: [...b.entries].reverse() };
  return { ...b, timestamp: b.timestamp + 1 };
}

// ---------------------------------------------------------------- equivocating primary

/**
 * For every proposal: the real PRE-PREPARE to the first `real` backups (default ⌊(n−1)/2⌋, the lower
 * half) and a conflicting one (same view and seq, another valid batch, another digest, validly signed)
 * to the rest. With the default neither half is a prepare quorum on its own, so the view must change;
 * with real = n−1−f the real batch commits without the other f backups, which are left holding the
 * conflicting one.
 */
export function equivocatingPrimary(opts: { real?: number } = {}): ByzantineScript {
  return {
    outbound: proposalRewriter((ctx, pp, to) => {
      const backups = peersOf(ctx);
      const real = opts.real ?? Math.floor(backups.length / 2);
      if (backups.indexOf(to) < real) return pp;
      return signedPrePrepare(ctx, pp.view, pp.seq, conflictingBatch(pp.batch));
    }),
  };
}
registerScript('equivocating-primary', () => equivocatingPrimary());

// ---------------------------------------------------------------- forged votes

/**
 * Every entry of every proposal gets one forged vote reference, in turn: a RESULTS digest that exists
 * nowhere, the right batch at the wrong index, or another node's RESULTS batch. The PRE-PREPARE is
 * re-signed, so only the vote check can catch it.
 */
export function forgedVotes(): ByzantineScript {
  return {
    outbound: proposalRewriter((ctx, pp) => {
      const entries: BatchEntry[] = pp.batch.entries.map((e, i) => {
        const votes = e.votes.map((v) => ({ ...v }));
        const k = (pp.seq + i) % votes.length;
        switch ((pp.seq + i) % 3) {
          case 0:
            votes[k].results = ctx.rng.bytes(32);
            break;
          case 1:
            votes[k].index = votes[k].index + 1;
            break;
          default:
            votes[k].results = votes[(k + 1) % votes.length].results;
            break;
        }
        return { requestId: e.requestId, votes };
      });
      return signedPrePrepare(ctx, pp.view, pp.seq, { ...pp.batch, entries });
    }),
  };
}
registerScript('forged-votes', () => forgedVotes());

// ---------------------------------------------------------------- duplicate and forged requests

/**
 * A request the client never signed: a real one with its fee limit raised, carrying the real one's
 * authentication (alone or as a batch member), which does not cover it. A different id (ids hash the
 * request), an invalid signature or inclusion path.
 */
export function forgeRequest(sr: SignedRequest): SignedRequest {
  return { ...sr, request: { ...sr.request, maxFee: sr.request.maxFee + 1 } };
}

export interface DuplicateRequestsOptions {
  /**
   * A backup that gets each honest batch preceding a cross-batch duplicate this much later than the rest
   * (default: none), so that it sees the duplicate first: it accepts the later batch and rejects the
   * earlier one, which the others commit without it.
   */
  victim?: number;
  victimDelayMs?: number;
}

/**
 * As primary, by sequence number: seq ≡ 1 (mod 4) honest; ≡ 2 also re-proposes the first entry of the
 * previous batch (a request ordered twice across batches); ≡ 3 lists its first entry twice in the
 * same batch; ≡ 0 adds an entry for a request whose client signature is forged (borrowing a real
 * entry's votes). The forged request itself is pushed to everyone in a FORWARD. Always re-signed.
 */
export function duplicateRequests(opts: DuplicateRequestsOptions = {}): ByzantineScript {
  let forged: { sr: SignedRequest; id: Uint8Array } | null = null;
  const previous = new Map<number, BatchEntry[]>(); // seq -> real entries of our proposal there
  const rewrite = (ctx: ScriptContext, pp: PrePrepare): PrePrepare => {
    previous.set(pp.seq, pp.batch.entries);
    if (previous.size > 256) previous.delete(previous.keys().next().value as number);
    const entries = [...pp.batch.entries];
    if (entries.length === 0) return pp;
    switch (pp.seq % 4) {
      case 2: {
        const prev = previous.get(pp.seq - 1);
        if (!prev?.length) return pp;
        entries.push(prev[0]);
        break;
      }
      case 3:
        entries.push(entries[0]);
        break;
      case 0:
        if (!forged) return pp;
        entries.push({ requestId: forged.id, votes: entries[0].votes });
        break;
      default:
        return pp;
    }
    return signedPrePrepare(ctx, pp.view, pp.seq, { ...pp.batch, entries });
  };
  // proposalRewriter caches per recipient; `previous` must see each proposal once, so cache per proposal.
  const byProposal = new Map<string, PrePrepare>();
  const once: ProposalRewrite = (ctx, pp) => {
    const k = `${pp.view}:${pp.seq}:${hex(pp.digest)}`;
    let out = byProposal.get(k);
    if (!out) {
      out = rewrite(ctx, pp);
      byProposal.set(k, out);
    }
    return out;
  };
  const outbound = proposalRewriter(once, (_ctx, to, msg) => {
    if (msg.kind !== 'forward' || msg.requests.length === 0 || forged) return [{ to, msg }];
    const sr = forgeRequest(msg.requests[0]);
    forged = { sr, id: requestIdOf(sr) };
    return [{ to, msg: { kind: 'forward', requests: [...msg.requests, sr] } }];
  });
  const { victim, victimDelayMs = 10 } = opts;
  return {
    outbound: (ctx, to, msg) => {
      const out = outbound(ctx, to, msg);
      if (victim === undefined || msg.kind !== 'prePrepare' || msg.pp.seq % 4 !== 1) return out;
      return out.map((o) => (o.to === victim ? { ...o, delayMs: victimDelayMs } : o));
    },
  };
}
registerScript('duplicate-requests', () => duplicateRequests());

// ---------------------------------------------------------------- censoring primary

/** Requests this primary censors: those whose id starts with an even byte (about half). */
export function censored(requestId: Uint8Array): boolean {
  return requestId[0] % 2 === 0;
}

/** Drops the censored requests' entries from every proposal (re-signed); the rest go through. */
export function censoringPrimary(): ByzantineScript {
  return {
    outbound: proposalRewriter((ctx, pp) => {
      const entries = pp.batch.entries.filter((e) => !censored(e.requestId));
      if (entries.length === pp.batch.entries.length) return pp;
      return signedPrePrepare(ctx, pp.view, pp.seq, { ...pp.batch, entries });
    }),
  };
}
registerScript('censoring-primary', censoringPrimary);

// ---------------------------------------------------------------- silent and slow primaries

/**
 * Sends nothing while it is the primary of its current view (it still hears everything, so it follows
 * the view change and then behaves honestly as a backup). For a node that is silent throughout, use
 * `silent`.
 */
export function silentPrimary(): ByzantineScript {
  return { outbound: (ctx, to, msg) => (isPrimaryNow(ctx) ? [] : [{ to, msg }]) };
}
registerScript('silent-primary', silentPrimary);

/** Delays everything it sends by `delayMs` (well above the view change timeout) while it is primary. */
export function slowPrimary(delayMs = 3000): () => ByzantineScript {
  return () => ({
    outbound: (ctx, to, msg) => [isPrimaryNow(ctx) ? { to, msg, delayMs } : { to, msg }],
  });
}
registerScript('slow-primary', slowPrimary());

// ---------------------------------------------------------------- a primary holding the batch clock back

/**
 * Stamps every proposal `behindMs` (an hour by default) before the time it would have used, so that a
 * request would run long after its expiry had passed by every honest clock (PROTOCOL.md rule 2 bounds a
 * batch timestamp below as well as above). Still increasing from one batch to the next.
 */
export function staleClockPrimary(behindMs = 3_600_000): () => ByzantineScript {
  return () => ({
    outbound: proposalRewriter((ctx, pp) =>
      signedPrePrepare(ctx, pp.view, pp.seq, { ...pp.batch, timestamp: pp.batch.timestamp - behindMs }),
    ),
  });
}
registerScript('stale-clock-primary', staleClockPrimary());

// ---------------------------------------------------------------- double vote

/** A different answer for the same input: labels 500 away (never an honest label), vectors shifted. */
export function otherResult(r: Result): Result {
  if (r.kind === 'class')
    return {
      kind: 'class',
      top: r.top.map((t, i) => ({ label: (t.label + 500 + i) % 1000, score: t.score })),
    };
  return { kind: 'vector', values: r.values.map((v) => v + 1) };
}

/**
 * For every RESULTS batch it sends, a second validly signed RESULTS batch for the same requests with
 * other labels. Peers with an even id (node 0, the first primary, among them) get the other batch
 * first and the honest one 2 ms later; the rest the other way round. So the group holds both as
 * "first" votes, and proposals reference a batch that some backups hold only as the second one.
 */
export function doubleVote(): ByzantineScript {
  const twins = new Map<string, SignedResults>();
  return {
    outbound: (ctx, to, msg) => {
      if (msg.kind !== 'results' || msg.signed.batch.node !== ctx.id) return [{ to, msg }];
      const k = hex(msg.signed.signature);
      let twin = twins.get(k);
      if (!twin) {
        const b = msg.signed.batch;
        twin = signResults(
          ctx.groupId,
          {
            ...b,
            entries: b.entries.map((e) => ({ requestId: e.requestId, result: otherResult(e.result) })),
          },
          ctx.key,
        );
        twins.set(k, twin);
      }
      const other: NodeMessage = { kind: 'results', signed: twin };
      const out: Outgoing[] = [];
      for (const p of to === 'all' ? peersOf(ctx) : [to]) {
        const [first, second] = p % 2 === 0 ? [other, msg] : [msg, other];
        out.push({ to: p, msg: first }, { to: p, msg: second, delayMs: 2 });
      }
      return out;
    },
  };
}
registerScript('double-vote', doubleVote);

// ---------------------------------------------------------------- stale model version

/** The digest a stale-version node claims: not its genesis model (an "old version" nobody agreed to). */
export function staleDigest(id: number): Uint8Array {
  return sha256(enc.encode(`stale-model-${id}`));
}

/** Runs honestly but claims an old model digest in its RESULTS: its votes must never be counted. */
export function staleVersion(): ByzantineScript {
  return { modelDigest: (ctx) => staleDigest(ctx.id) };
}
registerScript('stale-version', staleVersion);

// ---------------------------------------------------------------- garbage

/**
 * Honest, plus on every tick a few messages picked at random from: random bytes, messages naming
 * another or an unknown sender, bad signatures (phase messages, RESULTS, checkpoints, receipts,
 * PRE-PREPAREs from a non-primary), out-of-window sequence numbers, votes from unknown nodes, requests
 * for another group, NEW-VIEWs from a non-primary, and validly signed PREPAREs, COMMITs and
 * CHECKPOINTs for digests that exist nowhere.
 */
export function garbage(perTick = 3): () => ByzantineScript {
  return () => ({
    onTick: (ctx) => {
      const out: Outgoing[] = [];
      for (let i = 0; i < perTick; i++) out.push({ to: 'all', msg: garbageMessage(ctx) });
      return out;
    },
  });
}
registerScript('garbage', garbage());

const GARBAGE_KINDS = 14;

function garbageMessage(ctx: ScriptContext): NodeMessage | Uint8Array {
  const r = ctx.rng;
  const view = ctx.view();
  const other = (ctx.id + 1 + r.int(ctx.n - 1)) % ctx.n;
  const seq = 1 + r.int(64);
  const digest = r.bytes(32);
  const sig = r.bytes(64);
  const phase = (
    kind: 'prepare' | 'commit',
    from: number,
    s: number,
    signature: Uint8Array,
  ): NodeMessage => ({
    kind,
    from,
    view,
    seq: s,
    digest,
    signature,
  });
  const signPhase = (tag: typeof TAGS.prepare | typeof TAGS.commit | typeof TAGS.prePrepare, s: number) =>
    signTagged(tag, ctx.groupId, encode(PhaseBody, { from: ctx.id, view, seq: s, digest }), ctx.key);
  switch (r.int(GARBAGE_KINDS)) {
    case 0:
      return r.bytes(1 + r.int(200));
    case 1: // names another sender
      return phase(r.next() < 0.5 ? 'prepare' : 'commit', other, seq, sig);
    case 2: // names an unknown node
      return phase('prepare', 200 + r.int(50), seq, sig);
    case 3: // bad signature, in window
      return phase(r.next() < 0.5 ? 'prepare' : 'commit', ctx.id, seq, sig);
    case 4: {
      // out of window (validly signed even)
      const far = 1_000_000 + r.int(1000);
      return phase('commit', ctx.id, far, signPhase(TAGS.commit, far));
    }
    case 5: {
      // a validly signed vote for a digest that exists nowhere
      const prepare = r.next() < 0.5;
      return phase(
        prepare ? 'prepare' : 'commit',
        ctx.id,
        seq,
        signPhase(prepare ? TAGS.prepare : TAGS.commit, seq),
      );
    }
    case 6: // RESULTS from an unknown node, and RESULTS claiming another node with a bad signature
      return {
        kind: 'results',
        signed: {
          batch: {
            node: r.next() < 0.5 ? 100 + r.int(100) : other,
            modelDigest: r.bytes(32),
            entries: [{ requestId: r.bytes(32), result: { kind: 'class', top: [{ label: 1, score: 1 }] } }],
          },
          signature: sig,
        },
      };
    case 7: {
      // a checkpoint with a bad signature, or a validly signed one with a wrong state digest
      const cpSeq = 32 * (1 + r.int(4));
      const signature =
        r.next() < 0.5
          ? sig
          : signTagged(
              TAGS.checkpoint,
              ctx.groupId,
              encode(CheckpointBody, { from: ctx.id, seq: cpSeq, stateDigest: digest }),
              ctx.key,
            );
      return { kind: 'checkpoint', from: ctx.id, seq: cpSeq, stateDigest: digest, signature };
    }
    case 8: // a receipt signature naming another sender
      return { kind: 'receiptSig', from: other, seq, receiptHash: digest, signature: sig, view: null };
    case 9: // a PRE-PREPARE signed by a non-primary (from the primary: a batch that does not match its digest)
      return {
        kind: 'prePrepare',
        pp: {
          view,
          seq,
          digest,
          signature: signPhase(TAGS.prePrepare, seq),
          batch: { timestamp: Math.floor(ctx.now()), entries: [], txs: [] },
        },
      };
    case 10: // a VIEW-CHANGE naming another sender
      return {
        kind: 'viewChange',
        vc: {
          body: {
            from: other,
            newView: view + 1,
            stableSeq: 0,
            stableDigest: new Uint8Array(32),
            checkpointProof: [],
            prepared: [],
          },
          signature: sig,
        },
      };
    case 11: // a NEW-VIEW from someone who is not the primary of that view
      return {
        kind: 'newView',
        from: ctx.id,
        newView: (view + 1) % ctx.n === ctx.id ? view + 2 : view + 1,
        viewChanges: [],
        proposals: [],
      };
    case 12: // a request for another group
      return {
        kind: 'forward',
        requests: [
          {
            request: {
              groupId: r.bytes(32),
              client: r.bytes(32),
              nonce: r.int(1000),
              timestamp: Math.floor(ctx.now()),
              inputDigest: r.bytes(32),
              policy: null,
              maxFee: 1,
            },
            auth: { kind: 'single', signature: sig },
            input: r.bytes(8),
          },
        ],
      };
    default: // a fetch for things nobody has
      return {
        kind: 'fetch',
        from: ctx.id,
        requests: [r.bytes(32)],
        results: [r.bytes(32)],
        seqs: [seq],
        prePrepares: [seq],
      };
  }
}
