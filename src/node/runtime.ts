/**
 * The Node.js runtime flags a node wants, and a check of the running process for them. The `scratch/`
 * probes named below are uncommitted; `npm run bench -- e2e` and `-- protocol` measure the same effects
 * (BENCHMARKS.md). Also: the HTTP connections the process's open-file limit leaves room for.
 */
import { readFileSync } from 'node:fs';

/**
 * Node.js flags every node process is started with (`startGroup` in src/cli/group.ts, the demo and the
 * benches; a node started by hand needs them on its command line, see docs/api.md, and logs which are
 * missing).
 * - `--max-semi-space-size=32`: a node allocates short-lived objects for every request (decoded messages,
 *   ids, encodings); a young generation of 3 × 32 MB instead of V8's default 3 × 16 MB halves the number of
 *   scavenges. A 4-node group on this 2-core machine certified ~16 % more per second in closed loop with it
 *   (`scratch/cap.ts --mode=batch`, two alternating runs each: 3,413 and 3,477/s without, 3,979 and
 *   4,021/s with 32, 3,755 and 3,712/s with 64; 2026-11-30). Up to ~50 MB more memory per node.
 * - `--initial-old-space-size=100`: V8 counts the external memory (ArrayBuffers) allocated since the last
 *   full GC against the old generation's limit, and a node with real models allocates a preprocessed
 *   tensor per image on its main thread. With the limit V8 derives from a ~20 MB heap (~42 MB) each node
 *   ran a full mark-compact every 200–400 ms at 40 images/s (`--trace-gc`: 130–180 of them in a 40 s
 *   probe, 12–40 ms pauses each, plus concurrent marking on helper threads); with a 100 MB floor, 17.
 *   The four e2e nodes then spent 39–41 CPU-ms per image at 32 in flight instead of 43–47, and p99 at
 *   26 images/s fell from 169–231 ms to 69–101 ms (`scratch/e2ep.ts`, alternating runs, 2026-11-30). The
 *   stand-in model allocates no such buffers and its throughput did not move. It applies to every
 *   isolate of the process (worker threads too): ~40–80 MB more resident memory per node, measured.
 */
export const NODE_EXEC_ARGV: readonly string[] = ['--max-semi-space-size=32', '--initial-old-space-size=100'];

/**
 * Which of NODE_EXEC_ARGV this process was not started with (on its command line or in NODE_OPTIONS; a
 * flag counts as given whatever its value, and V8's spelling with underscores counts too).
 */
export function missingRuntimeFlags(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string = process.env.NODE_OPTIONS ?? '',
): string[] {
  const name = (flag: string) => flag.split('=')[0].replaceAll('_', '-');
  const given = new Set(
    [...execArgv, ...nodeOptions.split(/\s+/)].filter((a) => a.startsWith('--')).map(name),
  );
  return NODE_EXEC_ARGV.filter((f) => !given.has(name(f)));
}

/**
 * The process's open-file limit (the soft RLIMIT_NOFILE, `ulimit -n`) from the text of /proc/self/limits;
 * null where it is not known (not Linux, unreadable, unlimited).
 */
export function openFileLimit(limitsText?: string): number | null {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return null;
    }
  }
  const m = /^Max open files\s+(\d+)\s/m.exec(text);
  return m ? Number(m[1]) : null;
}

/**
 * File descriptors a node keeps for everything but its HTTP clients: stdio, the ledger (SQLite and its
 * WAL), the model, the peer listener and `maxPendingHandshakes` (64) unauthenticated peer connections,
 * and up to 4 sockets per peer (its connection, a dial, a wake-up). A node idles at about 40.
 */
export function reservedFds(nodes: number): number {
  return 128 + 4 * nodes;
}

/**
 * The HTTP connections a node allows (api_limits.maxConnections), lowered where the open-file limit
 * would run out first: past it every `accept`, `connect` and file open fails with EMFILE, a peer that
 * restarted could not be reached again, and the client that held the connections is not told why.
 */
export function connectionLimit(
  configured: number,
  fdLimit: number | null,
  nodes: number,
): { max: number; lowered: boolean } {
  if (fdLimit === null) return { max: configured, lowered: false };
  const room = Math.max(1, fdLimit - reservedFds(nodes));
  return room < configured ? { max: room, lowered: true } : { max: configured, lowered: false };
}
