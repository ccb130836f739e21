/** Misbehaviour evidence: two conflicting signed statements by one node, checkable by anyone. */
import {
  type Evidence,
  encode,
  equalBytes,
  type Genesis,
  groupIdOf,
  PhaseBody,
  Result,
  TAGS,
  verifyResults,
  verifyTagged,
} from '../protocol/index.ts';

/** The node the evidence convicts, or null when the evidence does not hold. */
export function verifyEvidence(e: Evidence, genesis: Genesis, groupId = groupIdOf(genesis)): number | null {
  if (e.kind === 'doubleVote') {
    const { a, b } = e;
    const node = genesis.nodes[a.batch.node];
    if (!node || a.batch.node !== b.batch.node || !equalBytes(a.batch.modelDigest, b.batch.modelDigest))
      return null;
    const ra = a.batch.entries.find((x) => equalBytes(x.requestId, e.requestId));
    const rb = b.batch.entries.find((x) => equalBytes(x.requestId, e.requestId));
    if (!ra || !rb || equalBytes(encode(Result, ra.result), encode(Result, rb.result))) return null;
    for (const s of [a, b]) if (!verifyResults(groupId, s, node.publicKey)) return null;
    return a.batch.node;
  }
  const node = genesis.nodes[e.node];
  if (!node || e.node !== e.view % genesis.nodes.length || equalBytes(e.digestA, e.digestB)) return null;
  for (const [digest, sig] of [
    [e.digestA, e.signatureA],
    [e.digestB, e.signatureB],
  ] as const) {
    const body = encode(PhaseBody, { from: e.node, view: e.view, seq: e.seq, digest });
    if (!verifyTagged(TAGS.prePrepare, groupId, body, sig, node.publicKey)) return null;
  }
  return e.node;
}
