/**
 * Random fault schedules: Byzantine nodes, crashes (disk kept or lost), partitions that heal, slow and
 * asymmetric links, delays above the timeouts, and (`clockSteps`) steps of nodes' system clocks. Every schedule keeps at most f nodes faulty (Byzantine
 * or crashed) at once and heals everything by `healAt`. Invariants are checked as the run goes:
 * - safety: no two honest nodes execute different batches at one sequence number;
 * - every certificate an honest node hands out verifies, and all honest nodes hand out the same one;
 * - no request is certified in two batches; money is conserved on every honest node;
 * - liveness: once everything has healed, every request is certified within `livenessBoundMs`.
 * A failing schedule is shrunk (faults removed one at a time, fewer requests) to a short one that
 * still fails, and printed with the command that replays it.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignatureCache, verifyCertificate } from '../certificate/index.ts';
import type { ReplicaConfig } from '../consensus/replica.ts';
import { type Certificate, encode, equalBytes, hex, Outcome, Receipt } from '../protocol/index.ts';
import { Rng } from './rng.ts';
import { scriptNames } from './scripts.ts';
import { type LinkConfig, type SimOptions, Simulation } from './world.ts';

export type Fault =
  | { at: number; kind: 'crash'; node: number }
  | { at: number; kind: 'restart'; node: number; diskLost: boolean }
  | { at: number; kind: 'partition'; side: number[] }
  | { at: number; kind: 'heal' }
  | { at: number; kind: 'link'; from: number; to: number; delayMs: number; loss: number }
  /** Node `node`'s system clock is from now on `offsetMs` off the true time (0: corrected). */
  | { at: number; kind: 'clock'; node: number; offsetMs: number };

export interface Schedule {
  seed: number;
  nodes: number;
  requests: number;
  /** Byzantine node id → script name, for the whole run. */
  byzantine: [number, string][];
  faults: Fault[];
  /** Virtual ms by which every fault has healed. */
  healAt: number;
  link: Partial<LinkConfig>;
}

/** Scripts a random schedule may pick (all registered ones). */
export function byzantineChoices(): string[] {
  return scriptNames();
}

/** Group sizes a schedule picks from, uniformly: n = 4 three times in four, else 7 (f as large as n allows). */
export const DEFAULT_SIZES: readonly number[] = [4, 4, 4, 7];

/**
 * The furthest a clock step puts an honest node's clock off the true time: under half the simulated
 * group's clock skew bound (maxClockSkewMs, 5 s), so two honest clocks stay within it as the protocol
 * assumes. A faulty node's steps go up to WILD_CLOCK_STEP_MS either way.
 */
export const HONEST_CLOCK_STEP_MS = 2000;
export const WILD_CLOCK_STEP_MS = 2 * 3_600_000;

export interface ScheduleOptions {
  /**
   * Also step nodes' system clocks (and often correct them again) during the faulty period: honest nodes
   * by up to HONEST_CLOCK_STEP_MS, the faulty ones (the f picked for Byzantine behaviour or crashes) by
   * up to WILD_CLOCK_STEP_MS. Drawn from a generator of their own, so the rest of the schedule is that
   * of the same seed without them; every clock is right again at the heal.
   */
  clockSteps?: boolean;
}

/**
 * A random schedule from a seed: the same seed (and sizes) always gives the same schedule. `sizes`: the
 * group sizes to pick from (f is ⌊(n − 1)/3⌋); other sizes than the default give other schedules.
 */
export function randomSchedule(
  seed: number,
  sizes: readonly number[] = DEFAULT_SIZES,
  opts: ScheduleOptions = {},
): Schedule {
  const rng = new Rng(`faults:${seed}`);
  const nodes = sizes[Math.min(sizes.length - 1, Math.floor(rng.next() * sizes.length))];
  const f = Math.floor((nodes - 1) / 3);
  const faulty = new Set<number>();
  while (faulty.size < f) faulty.add(rng.int(nodes));
  const ids = [...faulty];
  const byzantine: [number, string][] = [];
  const faults: Fault[] = [];
  const choices = byzantineChoices();
  const healAt = 400 + rng.int(1600);
  for (const id of ids) {
    const r = rng.next();
    if (r < 0.45) byzantine.push([id, choices[rng.int(choices.length)]]);
    else if (r < 0.85) {
      const at = rng.int(healAt / 2);
      faults.push({ at, kind: 'crash', node: id });
      faults.push({
        at: at + 1 + rng.int(healAt - at - 1),
        kind: 'restart',
        node: id,
        diskLost: rng.next() < 0.5,
      });
    }
  }
  // Network faults touch everyone (they heal): a partition, a slow or lossy link.
  if (rng.next() < 0.5) {
    const at = rng.int(healAt / 2);
    const side = [rng.int(nodes)];
    faults.push({ at, kind: 'partition', side });
    faults.push({ at: at + rng.int(healAt - at), kind: 'heal' });
  }
  for (let k = rng.int(3); k > 0; k--) {
    const from = rng.int(nodes);
    const to = (from + 1 + rng.int(nodes - 1)) % nodes;
    const at = rng.int(healAt);
    // Sometimes longer than the view change timeout (1 s): a "delay above the timeouts".
    const delayMs = rng.next() < 0.3 ? 1200 + rng.int(800) : rng.int(50);
    faults.push({ at, kind: 'link', from, to, delayMs, loss: rng.next() < 0.3 ? 0.3 : 0 });
  }
  if (opts.clockSteps) {
    const c = new Rng(`clocks:${seed}`);
    for (let k = 1 + c.int(3); k > 0; k--) {
      // Half the steps go to the faulty nodes (if any), where they may be wild.
      const node = ids.length > 0 && c.next() < 0.5 ? ids[c.int(ids.length)] : c.int(nodes);
      const at = c.int(healAt);
      const limit = faulty.has(node) && c.next() < 0.7 ? WILD_CLOCK_STEP_MS : HONEST_CLOCK_STEP_MS;
      faults.push({ at, kind: 'clock', node, offsetMs: (c.next() < 0.5 ? -1 : 1) * (1 + c.int(limit)) });
      if (c.next() < 0.5) faults.push({ at: at + c.int(healAt - at), kind: 'clock', node, offsetMs: 0 });
    }
  }
  faults.push({ at: healAt, kind: 'heal' });
  faults.sort((a, b) => a.at - b.at);
  return {
    seed,
    nodes,
    requests: 60 + rng.int(140),
    byzantine,
    faults,
    healAt,
    link: {
      delayMs: 1,
      jitterMs: rng.int(4),
      loss: rng.next() < 0.3 ? 0.02 : 0,
      duplicate: rng.next() < 0.3 ? 0.02 : 0,
    },
  };
}

export interface ScheduleOutcome {
  ok: boolean;
  problems: string[];
  certified: number;
  virtualMs: number;
  views: number;
  /** Requests that expired unordered and were forgotten, summed over the honest nodes. */
  forgottenExpired: number;
}

export interface RunOptions {
  /** Keep the nodes' SQLite ledgers here (else a temporary folder, deleted afterwards). */
  keepDir?: string;
  /** Use real SQLite ledgers (default true). */
  sqlite?: boolean;
  livenessBoundMs?: number;
  /** The genesis's request expiry window (default: beyond any run). */
  expiryMs?: number;
  /** Replica settings over the simulator's (a setting's own schedules, e.g. `resultsDelayMs`). */
  replica?: Partial<ReplicaConfig>;
}

/** Runs one schedule with invariants checked after every step. */
export function runSchedule(s: Schedule, opts: RunOptions = {}): ScheduleOutcome {
  const problems: string[] = [];
  const useSqlite = opts.sqlite ?? true;
  const dir = useSqlite
    ? (opts.keepDir ?? mkdtempSync(join(existsShm() ? '/dev/shm' : tmpdir(), 'dropbear-sim-')))
    : undefined;
  const bound = opts.livenessBoundMs ?? 60_000;
  const sim = scheduleSimulation(s, {
    maxTimeMs: s.healAt + bound,
    ledgerDir: dir,
    expiryMs: opts.expiryMs,
    ...(opts.replica ? { replica: opts.replica } : {}),
  });
  const honest = new Set(sim.nodes.filter((n) => n.behaviour === null).map((n) => n.id));
  const executed = new Map<number, Uint8Array>();
  const certified = new Map<string, { seq: number; receipt: string; outcome: string }>();
  const initial = s.nodes > 0 ? sim.group.genesis.balances.reduce((a, b) => a + b.amount, 0) : 0;
  const cache = new SignatureCache();
  const problem = (p: string) => {
    if (problems.length < 20) problems.push(p);
  };
  sim.observer = {
    executed(node, seq, digest) {
      if (!honest.has(node.id)) return;
      const prev = executed.get(seq);
      if (!prev) executed.set(seq, digest);
      else if (!equalBytes(prev, digest))
        problem(`safety: node ${node.id} executed another batch at seq ${seq}`);
      // All money is the genesis's plus what deposits minted less what withdrawals and refunds took out
      // (checks.ts): until 2026-12-07 this compared with the genesis's alone, a false problem once either applied.
      const l = node.ledger;
      const expected = initial + l.minted - l.paidOut() - l.refunded;
      if (l.totalMoney() !== expected)
        problem(
          `money: node ${node.id} holds ${l.totalMoney()} after seq ${seq}, not ${expected} (genesis ${initial}, minted ${l.minted}, paid out ${l.paidOut()}, refunded ${l.refunded})`,
        );
    },
    certified(node, certs: Certificate[]) {
      if (!honest.has(node.id)) return;
      for (const c of certs) {
        const id = hex(c.outcome.requestId);
        const receipt = hex(encode(Receipt, c.receipt));
        // Every certificate any honest node hands out must verify (receipt signatures cached per batch).
        const v = verifyCertificate(c, sim.group.genesis, { cache });
        if (!v.ok) problem(`certificate for ${id.slice(0, 12)} from node ${node.id} invalid: ${v.reason}`);
        const outcome = hex(encode(Outcome, c.outcome));
        const prev = certified.get(id);
        if (!prev) certified.set(id, { seq: c.receipt.seq, receipt, outcome });
        else if (prev.seq !== c.receipt.seq)
          problem(`request ${id.slice(0, 12)} certified in batches ${prev.seq} and ${c.receipt.seq}`);
        else if (prev.receipt !== receipt || prev.outcome !== outcome)
          problem(
            `node ${node.id} hands out another certificate for ${id.slice(0, 12)} in batch ${c.receipt.seq}`,
          );
      }
    },
  };
  scheduleFaults(sim, s);
  let r: ReturnType<Simulation['run']>;
  try {
    r = sim.run();
  } catch (e) {
    sim.close();
    if (dir && !opts.keepDir) rmSync(dir, { recursive: true, force: true });
    return {
      ok: false,
      problems: [`crashed: ${(e as Error).stack ?? e}`],
      certified: certified.size,
      virtualMs: sim.now,
      views: 0,
      forgottenExpired: 0,
    };
  }
  sim.close();
  if (!r.done)
    problem(
      `liveness: ${certified.size}/${s.requests} certified by ${(r.virtualMs / 1000).toFixed(1)} s (healed at ${s.healAt} ms; nodes at ${sim.nodes.map((n) => `${n.id}:${n.replica.lastExecuted}/v${n.replica.view}`).join(' ')})`,
    );
  if (r.duplicateCertificates.length > 0)
    problem(`${r.duplicateCertificates.length} requests certified twice`);
  if (dir && !opts.keepDir) rmSync(dir, { recursive: true, force: true });
  return {
    ok: problems.length === 0,
    problems,
    certified: certified.size,
    virtualMs: r.virtualMs,
    views: Math.max(...sim.nodes.map((n) => n.replica.view)),
    forgottenExpired: sim.nodes
      .filter((n) => honest.has(n.id))
      .reduce((a, n) => a + n.replica.forgottenExpired, 0),
  };
}

/**
 * The simulation a schedule runs in: its group size, Byzantine nodes, links and seed, and its requests
 * arriving through the faulty period and a little after the heal; `more` adds the rest (its time limit,
 * ledgers, expiry window, replica settings).
 */
export function scheduleSimulation(s: Schedule, more: Partial<SimOptions> = {}): Simulation {
  return new Simulation({
    nodes: s.nodes,
    requests: s.requests,
    seed: s.seed,
    rate: s.requests / (s.healAt + 200),
    byzantine: new Map(s.byzantine),
    link: s.link,
    keepAllCertificates: false,
    ...more,
  });
}

/**
 * Puts a schedule's faults on the simulation's timeline: crashes and restarts (a node already in that state
 * is left alone), partitions and slow or lossy links (`heal` clears them; the last heal also restarts every
 * crashed node and puts every clock right), and clock steps.
 */
export function scheduleFaults(sim: Simulation, s: Schedule): void {
  for (const f of s.faults) {
    sim.at(f.at, () => {
      switch (f.kind) {
        case 'crash':
          if (!sim.nodes[f.node].crashed) sim.crash(f.node);
          break;
        case 'restart':
          if (sim.nodes[f.node].crashed) sim.restart(f.node, f.diskLost);
          break;
        case 'partition':
          for (const a of f.side)
            for (let b = 0; b < s.nodes; b++) {
              if (f.side.includes(b)) continue;
              sim.links.set(`${a}->${b}`, { loss: 1 });
              sim.links.set(`${b}->${a}`, { loss: 1 });
            }
          break;
        case 'link':
          sim.links.set(`${f.from}->${f.to}`, { delayMs: f.delayMs, loss: f.loss });
          break;
        case 'clock':
          sim.nodes[f.node].clockOffsetMs = f.offsetMs;
          break;
        case 'heal':
          sim.links.clear();
          if (f.at >= s.healAt)
            for (const n of sim.nodes) {
              n.clockOffsetMs = 0;
              if (n.crashed) sim.restart(n.id, false);
            }
          break;
      }
    });
  }
}

/** Ledgers of a simulated run go to memory-backed /dev/shm where there is one: same SQLite, no disk wait. */
function existsShm(): boolean {
  return existsSync('/dev/shm');
}

/**
 * Shrinks a failing schedule: drops faults (keeping crash/restart pairs together), Byzantine nodes and
 * requests while it still fails. Greedy, bounded by `budget` runs.
 */
export function shrink(s: Schedule, opts: RunOptions = {}, budget = 40): Schedule {
  let cur = s;
  let runs = 0;
  const fails = (c: Schedule) => {
    runs++;
    return !runSchedule(c, { ...opts, keepDir: undefined }).ok;
  };
  let changed = true;
  while (changed && runs < budget) {
    changed = false;
    const candidates: Schedule[] = [];
    for (let i = 0; i < cur.faults.length; i++) {
      const f = cur.faults[i];
      if (f.kind === 'heal' && f.at >= cur.healAt) continue;
      const drop = new Set([i]);
      if (f.kind === 'crash' || f.kind === 'restart') {
        cur.faults.forEach((g, k) => {
          if ((g.kind === 'crash' || g.kind === 'restart') && g.node === f.node) drop.add(k);
        });
      }
      candidates.push({ ...cur, faults: cur.faults.filter((_, k) => !drop.has(k)) });
    }
    for (let i = 0; i < cur.byzantine.length; i++)
      candidates.push({ ...cur, byzantine: cur.byzantine.filter((_, k) => k !== i) });
    if (cur.requests > 10) candidates.push({ ...cur, requests: Math.max(10, Math.floor(cur.requests / 2)) });
    for (const c of candidates) {
      if (runs >= budget) break;
      if (fails(c)) {
        cur = c;
        changed = true;
        break;
      }
    }
  }
  return cur;
}

export function describe(s: Schedule): string {
  const parts = [`seed ${s.seed}: n=${s.nodes} requests=${s.requests} heal@${s.healAt}ms`];
  for (const [id, name] of s.byzantine) parts.push(`${id}:${name}`);
  for (const f of s.faults) {
    if (f.kind === 'crash') parts.push(`@${f.at} crash ${f.node}`);
    else if (f.kind === 'restart')
      parts.push(`@${f.at} restart ${f.node}${f.diskLost ? ' (disk lost)' : ''}`);
    else if (f.kind === 'partition') parts.push(`@${f.at} isolate ${f.side.join(',')}`);
    else if (f.kind === 'link') parts.push(`@${f.at} link ${f.from}->${f.to} +${f.delayMs}ms loss ${f.loss}`);
    else if (f.kind === 'clock')
      parts.push(`@${f.at} clock ${f.node} ${f.offsetMs >= 0 ? '+' : ''}${f.offsetMs}ms`);
    else parts.push(`@${f.at} heal`);
  }
  return parts.join(' · ');
}
