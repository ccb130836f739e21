/** What a bench part (bench/parts/<part>.ts) takes and returns; bench/run.ts writes the results. */
import type { FlagSpecs } from './args.ts';

export interface PartOptions {
  /** Smoke run: fewer runs, shorter steps; results are labelled as such. */
  quick: boolean;
  /** Arguments after the part names (part-specific flags such as --n=4,7). */
  args: string[];
  /** The command that reproduces this part's figures, for the reports. */
  command: string;
  /** Progress lines (stderr). */
  log: (line: string) => void;
}

export interface Plot {
  /** File name part: bench/results/<part>-<name>.svg */
  name: string;
  svg: string;
  /** Alt text in BENCHMARKS.md. */
  alt: string;
}

export interface PartResult {
  /** Written to bench/results/<part>.json */
  json: Record<string, unknown>;
  /** Printed to stdout at the end. */
  table: string;
  /** The BENCHMARKS.md section (between the part's markers); `{plot:name}` becomes the plot's link. */
  section: { heading: string; intro?: string; body: string };
  plots?: Plot[];
  /** Set when the run left out part of what the section shows (why): bench/run.ts then writes nothing. */
  partial?: string;
}

export interface Part {
  /** The flags the part reads (bench/lib/args.ts); bench/run.ts refuses any other. */
  flags?: FlagSpecs;
  /**
   * What is wrong with the part's flags taken together (`--name=value` as bench/run.ts hands them on), or
   * null: run.ts asks every part it is about to run before any starts, and stops with status 2.
   */
  check?(args: string[]): string | null;
  run(opts: PartOptions): Promise<PartResult>;
}

/** Flags every part takes (bench/run.ts adds its own: --quick, --write, --help). */
export const COMMON_FLAGS: FlagSpecs = {
  'warmup-ms': { kind: 'ms', help: 'discarded closed loop before measuring (30000, 3000 with --quick)' },
};

/** `--name=value` from a part's args (bench/run.ts has checked and normalised them), or undefined. */
export function flag(args: string[], name: string): string | undefined {
  const p = `--${name}=`;
  return args.find((a) => a.startsWith(p))?.slice(p.length);
}

/**
 * How long a part runs freshly started servers under load, discarded, before it measures (`--warmup-ms=`;
 * 30 s by default, 3 s with --quick). V8 compiles a function with TurboFan only once it has run a budget
 * of bytecode, so at a group's request rates its nodes' functions reach TurboFan over minutes, not seconds,
 * and until then run slower and pay for the compiling as they get there. Measured on this 2-core machine
 * (2026-11-30, probes on bench/parts/protocol.ts's `withGroup`/`step` and on bench/lib/extra.ts's
 * `startNodeGroup`): `perf` put 12 % of a stand-in group's CPU in V8's compiler at 50 requests/s ~15 s
 * after start; `--trace-opt` counted ~250, ~130 and ~65 TurboFan compiles per 10 s (four nodes) at
 * 0–10, 20–60 and 150–180 s of load in the four-model group at ~17 images/s; in the protocol probe, p99
 * at 50/s 73 ms after a 1.5 s warm-up and 37 ms after a 30 s closed loop. In the committed protocol runs,
 * n = 4 without client batch signing, same machine speed: p99 at 50/s 100.7 ms and at 200/s 408.1 ms with
 * the 1.5 s warm-up (83817ae), 32.0 and 140.0 ms with this one (7f43079; BENCHMARKS.md, protocol). The
 * baselines get the same warm-up.
 */
export function warmupMs(o: PartOptions): number {
  return Number(flag(o.args, 'warmup-ms') ?? (o.quick ? 3000 : 30_000));
}
