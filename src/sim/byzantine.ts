/**
 * Byzantine scripts for the simulator. A script wraps an honest node (it runs the real replica) and
 * rewrites what the node sends, what its model answers or what it hears. Scripts may sign with the
 * node's own key, so they can produce any message a faulty node could.
 */
import type { Genesis, KeyPair, NodeMessage, Result } from '../protocol/index.ts';
import type { Rng } from './rng.ts';

export interface ScriptContext {
  id: number;
  n: number;
  f: number;
  key: KeyPair;
  genesis: Genesis;
  groupId: Uint8Array;
  rng: Rng;
  /** Virtual time now. */
  now: () => number;
  /** Current view of the node's replica (node 0 is the primary of view 0). */
  view: () => number;
}

export interface Outgoing {
  to: number | 'all';
  msg: NodeMessage | Uint8Array;
  /** Extra delay before sending. */
  delayMs?: number;
}

export interface ByzantineScript {
  /** Rewrite, multiply or drop what the node sends (default: send as is). */
  outbound?(ctx: ScriptContext, to: number | 'all', msg: NodeMessage): Outgoing[];
  /** Change the model's answer for one input. */
  result?(ctx: ScriptContext, input: Uint8Array, honest: Result): Result;
  /** The model digest the node claims in its results (default: its genesis digest). */
  modelDigest?(ctx: ScriptContext): Uint8Array;
  /** Take a message before the node's replica sees it: return what to send instead, or null to pass it on. */
  inbound?(ctx: ScriptContext, from: number, msg: NodeMessage): Outgoing[] | null;
  /** Hear nothing at all. */
  deaf?: boolean;
  /** Extra messages to send on every tick of the node (e.g. garbage). */
  onTick?(ctx: ScriptContext): Outgoing[];
}

export type ScriptFactory = () => ByzantineScript;

const scripts = new Map<string, ScriptFactory>();

export function registerScript(name: string, factory: ScriptFactory): void {
  scripts.set(name, factory);
}
export function scriptNames(): string[] {
  return [...scripts.keys()];
}
export function makeScript(name: string): ByzantineScript {
  const f = scripts.get(name);
  if (!f) throw new Error(`unknown Byzantine script ${name}`);
  return f();
}

registerScript('wrong-results', () => ({
  // A label 500 away from the truth: never one an honest node gives (see standin.ts).
  result: (_ctx, _input, honest) =>
    honest.kind === 'class'
      ? {
          kind: 'class',
          top: honest.top.map((t, i) => ({
            label: (t.label + 500 + (i === 0 ? 0 : 1)) % 1000,
            score: t.score,
          })),
        }
      : honest,
}));

registerScript('withhold-results', () => ({
  outbound: (_ctx, to, msg) => (msg.kind === 'results' ? [] : [{ to, msg }]),
}));

registerScript('silent', () => ({
  outbound: () => [],
  deaf: true,
}));
