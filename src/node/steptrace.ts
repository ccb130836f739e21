/**
 * An opt-in diagnostic: one text line per replica step (the event in, the actions out, with wall-clock
 * time), for taking a request's latency apart by protocol stage across the nodes of a group
 * (`npm run stages -- <prefix>`, bench/tools/stages.ts). A node started with the environment variable
 * DROPBEAR_TRACE_STEPS=<prefix> appends its lines to `<prefix>.<node id>`. Off by default: each step then
 * costs a string or two and, every 256 steps or every second, a synchronous append (~1,700 steps per node per second at
 * 300 requests/s on the 2-core machine of BENCHMARKS.md).
 *
 * A line: `<epoch ms> <node> <event> => <action> <action> …`, e.g.
 *   `1796037592957.0 2 msg<0 prePrepare:463 => persist bc prepare:463`
 * Events: `request`, `msg<FROM KIND[:SEQ][#N]`, `inferred#N[ID8,…]`, `tick`, `executed`, and the other
 * event types by name. Actions: `acc:ID8` (a client request accepted; ID8 = the first 4 bytes of its id
 * in hex), `bc KIND[:SEQ][#N]`, `send>TO KIND[:SEQ][#N]`, `infer#N[ID8,…]`, `exec:SEQ#N[ID8,…]`,
 * `cert:SEQ`, and the other action types by name (timers left out). N counts requests in a FORWARD or
 * results in a RESULTS.
 */
import { appendFileSync } from 'node:fs';
import type { Action, Event } from '../consensus/replica.ts';
import type { NodeMessage } from '../protocol/index.ts';

const id8 = (b: Uint8Array): string => Buffer.from(b.subarray(0, 4)).toString('hex');

function describeMessage(m: NodeMessage): string {
  let seq: number | undefined;
  let n: number | undefined;
  switch (m.kind) {
    case 'prePrepare':
      seq = m.pp.seq;
      break;
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
      return `inferred#${e.results.length}[${e.results.map((r) => id8(r.requestId)).join(',')}]`;
    default:
      return e.type;
  }
}

function describeAction(a: Action): string | null {
  switch (a.type) {
    case 'timer':
      return null;
    case 'accepted':
      return `acc:${id8(a.requestId)}`;
    case 'broadcast':
      return `bc ${describeMessage(a.msg)}`;
    case 'send':
      return `send>${a.to} ${describeMessage(a.msg)}`;
    case 'infer':
      return `infer#${a.requests.length}[${a.requests.map((r) => id8(r.requestId)).join(',')}]`;
    case 'execute':
      return `exec:${a.seq}#${a.entries.length}[${a.entries.map((x) => id8(x.requestId)).join(',')}]`;
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
 * most that far behind, even for a node killed with SIGKILL). `close()` writes the rest.
 */
export class StepTrace {
  private lines: string[] = [];
  private readonly timer: NodeJS.Timeout;
  constructor(
    readonly path: string,
    readonly node: number,
    flushMs = 1000,
  ) {
    this.timer = setInterval(() => this.flush(), flushMs);
    this.timer.unref();
  }

  step(event: Event, actions: Action[]): void {
    this.lines.push(describeStep(performance.timeOrigin + performance.now(), this.node, event, actions));
    if (this.lines.length >= 256) this.flush();
  }

  flush(): void {
    if (this.lines.length === 0) return;
    appendFileSync(this.path, `${this.lines.join('\n')}\n`);
    this.lines = [];
  }

  close(): void {
    clearInterval(this.timer);
    this.flush();
  }
}
