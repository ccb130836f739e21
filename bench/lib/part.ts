/** What a bench part (bench/parts/<part>.ts) takes and returns; bench/run.ts writes the results. */

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
}

export interface Part {
  run(opts: PartOptions): Promise<PartResult>;
}

/** `--name=value` from a part's args, or undefined. */
export function flag(args: string[], name: string): string | undefined {
  const p = `--${name}=`;
  return args.find((a) => a.startsWith(p))?.slice(p.length);
}
