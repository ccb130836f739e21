/**
 * What a node needs from whatever runs its model: the local engine (engine.ts) or a model served elsewhere
 * through the Open Inference Protocol (remote.ts). Both answer with the same Result for the same input.
 */
import { DropbearError } from '../protocol/errors.ts';
import type { Result } from '../protocol/index.ts';
import type { ModelSpec } from './spec.ts';

export interface ClassifyOptions {
  /** Whether the answer is still needed; asked on the caller's thread, so it must be cheap. */
  wanted?: () => boolean;
}

/**
 * The rejection of an input whose caller stopped wanting it before its work began. One shared instance:
 * under a backlog thousands are raised, and a stack trace each would cost more than the check saves.
 */
export const INFERENCE_SKIPPED = new DropbearError(
  'INFERENCE_SKIPPED',
  'inference skipped: the caller no longer needed the answer',
);

/** Counters every backend reports; each backend adds its own fields. */
export interface BackendStats {
  /** Items (single inputs) answered so far. */
  items: number;
  /** Batches or requests under way now. */
  inFlight: number;
  /** Inputs refused with INFERENCE_SKIPPED before any work on them began (0 for an instant backend). */
  skipped?: number;
  /**
   * Inputs admitted and waiting on this node: `queued` for their model run or call, `preprocessing` being
   * decoded. The node API answers 503 OVERLOADED while their sum passes its maxInferenceQueue (api.ts); a
   * backend that leaves them out is never bounded there (until 2026-12-05 the remote backend did).
   */
  queued?: number;
  preprocessing?: number;
  /**
   * Model threads (session slots) the backend runs, and how many gave up starting one (WORKER_START_FAILED,
   * threads.ts): with every one failed the backend answers nothing, so the node is not ready (api.ts).
   */
  sessionWorkers?: number;
  failedWorkers?: number;
  /** The first failed slot's error, null while none failed. */
  workerFailure?: string | null;
}

export interface ModelBackend {
  /** SHA-256 (hex) of the model file: the model's identity in the genesis. */
  readonly digest: string;
  readonly spec: ModelSpec;
  /**
   * One input (JPEG, PNG or DBT1 tensor) to its Result (top-5, scores in millionths). A backend that queues
   * work asks `opts.wanted` again before each costly stage it has not begun (decoding, the model run) and
   * rejects with INFERENCE_SKIPPED once it answers false, so a caller whose answer is no longer needed
   * does not pay for it; an instant backend may ignore it.
   */
  classify(input: Uint8Array, opts?: ClassifyOptions): Promise<Result>;
  stats(): BackendStats;
  close(): Promise<void>;
}
