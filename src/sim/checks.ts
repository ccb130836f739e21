/**
 * Invariants checked after a simulated run: safety, no double certification, conservation of money (the
 * genesis's plus what deposits minted, less what withdrawals took out).
 */
import { equalBytes, hex } from '../protocol/index.ts';
import type { SimResult } from './world.ts';

export interface CheckResult {
  ok: boolean;
  problems: string[];
}

export function checkRun(r: SimResult): CheckResult {
  const problems: string[] = [];
  const honest = r.nodes.filter((n) => r.honest.includes(n.id));
  const initial = r.group.genesis.balances.reduce((a, b) => a + b.amount, 0);
  const longest = Math.max(0, ...honest.map((n) => n.executed.length));
  for (let s = 0; s < longest; s++) {
    let ref: Uint8Array | undefined;
    for (const n of honest) {
      const d = n.executed[s];
      if (!d) continue;
      if (!ref) ref = d;
      else if (!equalBytes(ref, d))
        problems.push(`safety: batch ${s + 1} differs (node ${n.id}: ${hex(d).slice(0, 12)})`);
    }
  }
  // Requests move money between clients and owners; only the treasury's deposits add to it (minted) and
  // only owners' withdrawals (paidOut) and clients' refunds (refunded) take it out.
  for (const n of honest) {
    const total = n.ledger.totalMoney();
    const minted = n.ledger.minted;
    const paidOut = n.ledger.paidOut();
    const refunded = n.ledger.refunded;
    if (total !== initial + minted - paidOut - refunded)
      problems.push(
        `money: node ${n.id} holds ${total}, genesis had ${initial}, deposits added ${minted}, withdrawals took ${paidOut} and refunds ${refunded}`,
      );
  }
  for (const id of r.duplicateCertificates)
    problems.push(`request ${id.slice(0, 16)} certified in two batches`);
  // Only a bad signature of a peer's own gets it dropped (peerMisbehaved): an honest node never sends one.
  for (const n of honest)
    for (const d of n.dropped)
      if (r.honest.includes(d.peer)) problems.push(`node ${n.id} dropped honest node ${d.peer}: ${d.reason}`);
  return { ok: problems.length === 0, problems };
}
