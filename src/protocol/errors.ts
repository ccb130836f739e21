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

/** Local reasons a write fails, worded for the operator, by the system's error code. */
const WRITE_FAILURES: Record<string, string> = {
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is used up',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EIO: 'an I/O error on the disk',
};

/**
 * Why a write failed, for a message: the operator's words for the system's code (ENOSPC: "the disk is
 * full: ENOSPC: no space left on device, write") and the code itself. The model store and the CLI's output
 * files (keys, genesis, certificates, pages) say it alike.
 */
export function writeFailure(e: unknown): { errno?: string; why: string } {
  const code = (e as { code?: unknown } | null)?.code;
  const errno = typeof code === 'string' ? code : undefined;
  const words = errno && Object.hasOwn(WRITE_FAILURES, errno) ? `${WRITE_FAILURES[errno]}: ` : '';
  return { errno, why: `${words}${(e as Error | null)?.message ?? String(e)}` };
}

/**
 * The causes of a failed fetch that are a TLS certificate this process does not trust: OpenSSL's verify
 * codes (an unknown or private CA, a self-signed one, expired, …) and Node's for a host the certificate
 * does not name. The CLI (NODE_UNTRUSTED, with how to trust a private CA) and the SDK (a node it never
 * reached, NODE_UNTRUSTED among its per-node errors) read them alike.
 */
export const UNTRUSTED_CERTIFICATE =
  /^(CERT_|DEPTH_ZERO_|SELF_SIGNED_|UNABLE_TO_|INVALID_CA|PATH_LENGTH|INVALID_PURPOSE|ERR_TLS_CERT_ALTNAME)/;

/**
 * The code of a failed fetch's cause (`e.cause.code`, as Node's fetch keeps ECONNREFUSED, CERT_HAS_EXPIRED,
 * …) when it is a certificate this process does not trust (UNTRUSTED_CERTIFICATE), else null.
 */
export function untrustedCertificateCause(e: unknown): string | null {
  const code = (e as { cause?: { code?: unknown } } | null)?.cause?.code;
  return typeof code === 'string' && UNTRUSTED_CERTIFICATE.test(code) ? code : null;
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

/**
 * Text for one line of a message or of a terminal, whoever wrote it (a node's answer, a file's field, an
 * error's cause): blanks, line breaks and control characters (a terminal's escapes: move up, erase the
 * line) as one space, trimmed, and cut to `max` characters with "…". A line break printed lines of the
 * writer's making, and an escape could hide the line before.
 */
export function printableLine(text: string, max = Number.POSITIVE_INFINITY): string {
  const one = text.replace(/[\s\p{Cc}\p{Zl}\p{Zp}]+/gu, ' ').trim();
  return one.length > max ? `${one.slice(0, max)}…` : one;
}

/**
 * `x` when it is an error code as Dropbear writes them (letters, digits and `_`, at most 64: every code the
 * API sends), else `fallback`: a code that came from elsewhere (a node's answer) is compared and printed
 * in brackets, so an object, a number or text with line breaks is not taken as one.
 */
export function codeOr(x: unknown, fallback: string): string {
  return typeof x === 'string' && /^[A-Za-z0-9_]{1,64}$/.test(x) ? x : fallback;
}
