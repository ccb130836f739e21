import { DropbearError } from '../protocol/index.ts';

/** The CLI's one place that turns an error into a message and an exit status. */
export function reportAndExit(e: unknown): never {
  if (e instanceof DropbearError) {
    process.stderr.write(`error [${e.code}]: ${e.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(2);
}

export function usageError(message: string): DropbearError {
  return new DropbearError('CLI_USAGE', message);
}
