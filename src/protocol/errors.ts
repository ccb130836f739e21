/**
 * Every error Dropbear raises on purpose carries a stable, machine-readable code.
 * The HTTP edge (and the CLI) map codes to statuses and exit codes in one place.
 */
export class DropbearError extends Error {
  readonly code: string;
  readonly details?: Record<string, unknown>;
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'DropbearError';
    this.code = code;
    this.details = details;
  }
}

/** Raised by the canonical codec for any byte string or value it refuses. */
export class CodecError extends DropbearError {
  constructor(code: CodecErrorCode, message: string) {
    super(code, message);
    this.name = 'CodecError';
  }
}

export type CodecErrorCode =
  | 'CODEC_TRUNCATED'
  | 'CODEC_TRAILING_BYTES'
  | 'CODEC_NON_CANONICAL'
  | 'CODEC_OVERSIZE'
  | 'CODEC_BAD_TAG'
  | 'CODEC_BAD_VALUE'
  | 'CODEC_BAD_UTF8'
  | 'CODEC_BAD_JSON';
