/**
 * View change rules (PROTOCOL.md, "View change"), as pure functions shared by the new primary, which
 * derives the NEW-VIEW's re-proposals, and by every backup, which recomputes them to validate it.
 */
import {
  type Batch,
  batchDigestOf,
  CheckpointBody,
  encode,
  equalBytes,
  type Genesis,
  NULL_BATCH,
  PhaseBody,
  quorumSize,
  type SignedViewChange,
  TAGS,
  ViewChangeBody,
  verifyTagged,
} from '../protocol/index.ts';

export const ZERO_DIGEST = new Uint8Array(32);

export interface ViewContext {
  genesis: Genesis;
  groupId: Uint8Array;
  n: number;
  f: number;
  window: number;
}

export function primaryOf(view: number, n: number): number {
  return view % n;
}

// What viewChangeProblem says of a signature that does not verify (isSignatureProblem).
const BAD_SIGNATURE = 'bad signature';
const BAD_CHECKPOINT_SIGNATURE = 'bad checkpoint signature';
const BAD_PRE_PREPARE_SIGNATURE = 'bad pre-prepare signature in prepared certificate';
const BAD_PREPARE_SIGNATURE = 'bad prepare signature';
const SIGNATURE_PROBLEMS: ReadonlySet<string> = new Set([
  BAD_SIGNATURE,
  BAD_CHECKPOINT_SIGNATURE,
  BAD_PRE_PREPARE_SIGNATURE,
  BAD_PREPARE_SIGNATURE,
]);

/**
 * Whether a problem viewChangeProblem reported is a signature that does not verify (or names a node the
 * genesis lacks): the VIEW-CHANGE's own, or one in its checkpoint proof or prepared certificates. Unlike the
 * other problems these depend on the genesis only, never on the checking node's view, window or config, and
 * the signer of a VIEW-CHANGE puts in it only signatures it checked itself (what made its checkpoint stable,
 * what made it prepare), so a VIEW-CHANGE with one of these problems was signed or sent by a faulty node.
 */
export function isSignatureProblem(problem: string): boolean {
  return SIGNATURE_PROBLEMS.has(problem);
}

/** Why a VIEW-CHANGE is invalid, or null when it is valid. */
export function viewChangeProblem(vc: SignedViewChange, ctx: ViewContext): string | null {
  const b = vc.body;
  const q = quorumSize(ctx.genesis.nodes.length, ctx.f);
  const sender = ctx.genesis.nodes[b.from];
  if (!sender) return 'unknown sender';
  if (b.newView < 1) return 'view change to view 0';
  if (!verifyTagged(TAGS.viewChange, ctx.groupId, encode(ViewChangeBody, b), vc.signature, sender.publicKey))
    return BAD_SIGNATURE;
  // The stable checkpoint: seq 0 needs no proof; anything else needs q CHECKPOINT signatures.
  if (b.stableSeq === 0) {
    if (!equalBytes(b.stableDigest, ZERO_DIGEST) || b.checkpointProof.length !== 0)
      return 'bad genesis checkpoint';
  } else {
    if (b.checkpointProof.length < q) return 'checkpoint proof below quorum';
    for (const s of b.checkpointProof) {
      const node = ctx.genesis.nodes[s.node];
      const body = encode(CheckpointBody, { from: s.node, seq: b.stableSeq, stateDigest: b.stableDigest });
      if (!node || !verifyTagged(TAGS.checkpoint, ctx.groupId, body, s.signature, node.publicKey))
        return BAD_CHECKPOINT_SIGNATURE;
    }
  }
  const seen = new Set<number>();
  for (const pc of b.prepared) {
    if (pc.seq <= b.stableSeq || pc.seq > b.stableSeq + ctx.window)
      return `prepared seq ${pc.seq} outside window`;
    if (seen.has(pc.seq)) return `seq ${pc.seq} prepared twice`;
    seen.add(pc.seq);
    if (pc.view >= b.newView) return 'prepared in a view not below the new one';
    if (!equalBytes(batchDigestOf(pc.batch), pc.digest)) return 'prepared batch digest mismatch';
    const primary = primaryOf(pc.view, ctx.n);
    const ppBody = encode(PhaseBody, { from: primary, view: pc.view, seq: pc.seq, digest: pc.digest });
    if (
      !verifyTagged(
        TAGS.prePrepare,
        ctx.groupId,
        ppBody,
        pc.ppSignature,
        ctx.genesis.nodes[primary].publicKey,
      )
    )
      return BAD_PRE_PREPARE_SIGNATURE;
    let count = 0;
    for (const p of pc.prepares) {
      const node = ctx.genesis.nodes[p.node];
      if (!node || p.node === primary) return 'prepare from unknown node or from the primary';
      const body = encode(PhaseBody, { from: p.node, view: pc.view, seq: pc.seq, digest: pc.digest });
      if (!verifyTagged(TAGS.prepare, ctx.groupId, body, p.signature, node.publicKey))
        return BAD_PREPARE_SIGNATURE;
      count++;
    }
    if (count < q - 1) return 'prepared certificate below q − 1 prepares';
  }
  return null;
}

export interface Reproposed {
  seq: number;
  digest: Uint8Array;
  batch: Batch;
}

/**
 * O from PROTOCOL.md: min = the highest stable checkpoint among the VIEW-CHANGEs, max = the highest
 * prepared seq; for each s in (min, max] the batch prepared in the highest view, else the null batch.
 * Deterministic in the set of VIEW-CHANGEs (ties in view cannot hold different digests when at most f
 * nodes are faulty; the lowest sender wins to stay deterministic regardless).
 */
export function deriveNewView(vcs: SignedViewChange[]): {
  minSeq: number;
  minDigest: Uint8Array;
  proposals: Reproposed[];
} {
  let minSeq = 0;
  let minDigest: Uint8Array = ZERO_DIGEST;
  for (const vc of vcs) {
    if (vc.body.stableSeq > minSeq) {
      minSeq = vc.body.stableSeq;
      minDigest = vc.body.stableDigest;
    }
  }
  const best = new Map<number, { view: number; from: number; digest: Uint8Array; batch: Batch }>();
  let maxSeq = minSeq;
  for (const vc of vcs) {
    for (const pc of vc.body.prepared) {
      if (pc.seq <= minSeq) continue;
      const cur = best.get(pc.seq);
      if (!cur || pc.view > cur.view || (pc.view === cur.view && vc.body.from < cur.from))
        best.set(pc.seq, { view: pc.view, from: vc.body.from, digest: pc.digest, batch: pc.batch });
      maxSeq = Math.max(maxSeq, pc.seq);
    }
  }
  const nullDigest = batchDigestOf(NULL_BATCH);
  const proposals: Reproposed[] = [];
  for (let s = minSeq + 1; s <= maxSeq; s++) {
    const b = best.get(s);
    proposals.push(
      b ? { seq: s, digest: b.digest, batch: b.batch } : { seq: s, digest: nullDigest, batch: NULL_BATCH },
    );
  }
  return { minSeq, minDigest, proposals };
}

/** Distinct senders, all for `view`: the first q of them by sender id (what a NEW-VIEW must carry). */
export function pickViewChanges(
  vcs: Iterable<SignedViewChange>,
  view: number,
  q: number,
): SignedViewChange[] | null {
  const bySender = new Map<number, SignedViewChange>();
  for (const vc of vcs)
    if (vc.body.newView === view && !bySender.has(vc.body.from)) bySender.set(vc.body.from, vc);
  if (bySender.size < q) return null;
  return [...bySender.values()].sort((a, b) => a.body.from - b.body.from).slice(0, q);
}
