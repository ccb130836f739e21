/**
 * An opt-in diagnostic: one text line per replica step (the event in, the actions out, with wall-clock
 * time), for taking a request's latency apart by protocol stage across the nodes of a group
 * (`npm run stages -- <prefix>`, bench/stages.ts). A node started with the environment variable
 * DROPBEAR_TRACE_STEPS=<prefix> appends its lines to `<prefix>.<node id>`. Off by default. On, each step
 * costs a string or two and, every 256 steps or every second, a synchronous append (~1,700 steps per node
 * per second at 300 requests/s on the 2-core machine of BENCHMARKS.md).
 *
 * A line: `<epoch ms> <node> <event> => <action> <action> …`, e.g.
 *   `1796037592957.0 2 msg<0 prePrepare:463/5f0c9d2a17e4b830 => persist bc prepare:463`
 * Events: `request`, `msg<FROM KIND[:SEQ][#N]`, `inferred#N[ID,…]`, `tick`, `executed`, and the other
 * event types by name. Actions: `acc:ID` (a client request accepted; ID = the first 8 bytes of its id in
 * hex), `bc KIND[:SEQ][#N]`, `send>TO KIND[:SEQ][#N]`, `infer#N[ID,…]`, `exec:SEQ/DIGEST#N[ID,…]` (the
 * replica decided to execute batch SEQ with that digest; the ledger runs it right after, in the same
 * step), `cert:SEQ`, and the other action types by name (timers left out). A PRE-PREPARE reads
 * `prePrepare:SEQ/DIGEST` (DIGEST: the first 8 bytes of the batch digest, so a sequence number proposed
 * again in a new view is told apart). N counts requests in a FORWARD or results in a RESULTS. A file
 * is appended to: use a fresh prefix per run.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Action, Event } from '../consensus/replica.ts';
import { DropbearError, hex, type NodeMessage } from '../protocol/index.ts';

/** The first 8 bytes of an id or digest in hex: short, and collisions negligible in a trace. */
const short = (b: Uint8Array): string => hex(b.subarray(0, 8));

function describeMessage(m: NodeMessage): string {
  let seq: number | undefined;
  let n: number | undefined;
  switch (m.kind) {
    case 'prePrepare':
      return `prePrepare:${m.pp.seq}/${short(m.pp.digest)}`;
    case 'prepare':
    case 'commit':
    case 'receiptSig':
    case 'checkpoint':
      seq = m.seq;
      break;
    case 'forward':
      n = m.requests.length;
      break;
    case 'results':
      n = m.signed.batch.entries.length;
      break;
  }
  return `${m.kind}${seq === undefined ? '' : `:${seq}`}${n === undefined ? '' : `#${n}`}`;
}

function describeEvent(e: Event): string {
  switch (e.type) {
    case 'message':
      return `msg<${e.from} ${describeMessage(e.msg)}`;
    case 'inferred':
      return `inferred#${e.results.length}[${e.results.map((r) => short(r.requestId)).join(',')}]`;
    default:
      return e.type;
  }
}

function describeAction(a: Action): string | null {
  switch (a.type) {
    case 'timer':
      return null;
    case 'accepted':
      return `acc:${short(a.requestId)}`;
    case 'broadcast':
      return `bc ${describeMessage(a.msg)}`;
    case 'send':
      return `send>${a.to} ${describeMessage(a.msg)}`;
    case 'infer':
      return `infer#${a.requests.length}[${a.requests.map((r) => short(r.requestId)).join(',')}]`;
    case 'execute':
      return `exec:${a.seq}/${short(a.digest)}#${a.entries.length}[${a.entries.map((x) => short(x.requestId)).join(',')}]`;
    case 'certified':
      return `cert:${a.seq}`;
    default:
      return a.type;
  }
}

/** One trace line (without the newline). */
export function describeStep(atMs: number, node: number, event: Event, actions: Action[]): string {
  const out: string[] = [];
  for (const a of actions) {
    const d = describeAction(a);
    if (d !== null) out.push(d);
  }
  return `${atMs.toFixed(1)} ${node} ${describeEvent(event)} => ${out.join(' ')}`;
}

/**
 * Appends step lines to `path`: 256 at a time, and whatever is buffered every `flushMs` (so a trace is at
 * most that far behind, even for a node killed with SIGKILL). `close()` writes the rest. A path that cannot
 * be written fails the constructor (TRACE_UNWRITABLE); a write that fails later (a full disk) ends the
 * trace, not the node: `onError` hears of it once and further steps are dropped.
 */
export class StepTrace {
  private lines: string[] = [];
  private readonly timer: NodeJS.Timeout;
  private failed = false;
  constructor(
    readonly path: string,
    readonly node: number,
    flushMs = 1000,
    private readonly onError: (e: Error) => void = () => {},
  ) {
    try {
      mkdirSync(dirname(path), { recursive: true });
      appendFileSync(path, '');
    } catch (e) {
      throw new DropbearError(
        'TRACE_UNWRITABLE',
        `cannot write the step trace ${path}: ${(e as Error).message}`,
      );
    }
    this.timer = setInterval(() => this.flush(), flushMs);
    this.timer.unref();
  }

  step(event: Event, actions: Action[]): void {
    if (this.failed) return;
    this.lines.push(describeStep(performance.timeOrigin + performance.now(), this.node, event, actions));
    if (this.lines.length >= 256) this.flush();
  }

  flush(): void {
    if (this.lines.length === 0 || this.failed) return;
    try {
      appendFileSync(this.path, `${this.lines.join('\n')}\n`);
    } catch (e) {
      this.failed = true;
      clearInterval(this.timer);
      this.onError(e as Error);
    }
    this.lines = [];
  }

  close(): void {
    clearInterval(this.timer);
    this.flush();
  }
}
