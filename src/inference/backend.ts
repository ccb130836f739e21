/**
 * What a node needs from whatever runs its model: the local engine (engine.ts) or a model served elsewhere
 * through the Open Inference Protocol (remote.ts). Both answer with the same Result for the same input.
 */
import type { Result } from '../protocol/index.ts';
import type { ModelSpec } from './spec.ts';

/** Counters every backend reports; each backend adds its own fields. */
export interface BackendStats {
  /** Items (single inputs) answered so far. */
  items: number;
  /** Batches or requests under way now. */
  inFlight: number;
}

export interface ModelBackend {
  /** SHA-256 (hex) of the model file: the model's identity in the genesis. */
  readonly digest: string;
  readonly spec: ModelSpec;
  /** One input (JPEG, PNG or DBT1 tensor) to its Result (top-5, scores in millionths). */
  classify(input: Uint8Array): Promise<Result>;
  stats(): BackendStats;
  close(): Promise<void>;
}
