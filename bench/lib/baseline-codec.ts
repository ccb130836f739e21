/**
 * The protocol baseline server's answer to a binary batch (a RequestList): per request its id, or why it
 * was refused. Binary like the nodes' RequestAnswers, so that both sides of the comparison pay the same
 * encoding costs (and neither pays JSON and base64).
 */
import { array, Hash32, MAX_REQUESTS_PER_CALL, str, struct, union } from '../../src/protocol/index.ts';

export const BASELINE_ANSWERS_TYPE = 'application/vnd.dropbear-bench.answers';
export const BaselineAnswers = array(
  union({ ok: struct({ requestId: Hash32 }), refused: struct({ code: str(64) }) }),
  MAX_REQUESTS_PER_CALL,
);
