/**
 * Canonical encodings of what the durable ledger stores besides protocol messages: a batch's resolved
 * entries (the requests and counted votes that execution read). Built with the protocol codec
 * combinators, so stored bytes have exactly one encoding and decode strictly.
 */
import {
  array,
  type Codec,
  CountedVote,
  Hash32,
  LIMITS,
  Request,
  sortedArray,
  struct,
} from '../protocol/index.ts';
import type { ResolvedEntry } from './state.ts';

/** One resolved entry: the request id, the signed request fields and the votes, sorted by node. */
export const ResolvedEntryCodec: Codec<ResolvedEntry> = struct({
  requestId: Hash32,
  request: Request,
  votes: sortedArray(CountedVote, LIMITS.nodes, (v) => v.node),
});

/** The `entries` column of the batches table. */
export const ResolvedEntries: Codec<ResolvedEntry[]> = array(ResolvedEntryCodec, LIMITS.batchEntries);
