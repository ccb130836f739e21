import { DropbearError } from '../../src/protocol/index.ts';

/** The code of the DropbearError `fn` throws (`untyped: …` for any other error), or undefined when it returns. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof DropbearError ? e.code : `untyped: ${String(e)}`;
  }
  return undefined;
}
