/**
 * npm run bench:soak — a crash soak of a real group, then a check of the BFT invariants.
 *
 * A 4-node group (f = 1) of real node processes with the stand-in model (no inference cost) and `group
 * init`'s settings (durability `prepared`, GROUP_REPLICA), each node's output in its own log file. Load:
 * the SDK, open loop at `--rate` requests/s (default 50), each request sent to one or to two nodes (chosen
 * at random), the SDK's defaults otherwise (hedging after 2 s, 30 s timeout). Faults, one at a time so at
 * most f nodes are ever down: every 10–30 s a kill -9 of a random node (about a third of them the primary
 * of the moment), down 1–10 s, restarted with the same config and data; or (a quarter of the faults) a stall:
 * SIGSTOP for 2–6 s, then SIGCONT. A restarted node is waited for (ready, and caught up with the others)
 * before the next gap starts. The fault schedule comes from `--seed` and is printed first: a run replays
 * with the same seed (which node is "the primary" depends on the run).
 *
 * Money under the same faults: every 3–6 s (seeded) a Deposit (100–999, signed with the group's treasury key)
 * to the load client or to one of two accounts the genesis does not list ("newcomers"), or (30%) a FeeChange
 * of a random node to a fee of 1–3 (signed with its owner's key), posted (POST /v1/txs) to a node up at the
 * time, its serial or version the next after what that node's /v1/status counts applied and pending (as
 * `dropbear deposit` and `set-fee` take them). Every client signs a maxFee of 4 × 3 (all votes at the
 * highest fee). A newcomer the node shows funded sends up to 2 requests per tick, 8 in all (less than one
 * deposit). A fifth of the deposits get a rival: the same serial, 1 more, posted through another node (one
 * of the two applies). What was submitted and each node's answer is kept; a submission may fail or be
 * superseded.
 *
 * Owners' withdrawals under the same faults: every 3–6 s (seeded, a schedule of its own) the owner of a random
 * node withdraws part (10–60%) of what that node may withdraw (a Withdrawal signed with the node's key, posted
 * to a node up at the time, its serial and room read from that node's /v1/status and /v1/owners as `dropbear
 * withdraw` reads them: `withdrawStateOf`). A quarter of them get a rival: the same serial, 1 more (or 1 less
 * where 1 more would pass the room), through another node (one of the two applies, the other is ordered
 * without effect). Now and then (15%) the owner asks for more than payable (payable + 1000–1999, a margin for
 * what the node earns meanwhile) instead: the node must refuse it with TX_WITHDRAWAL_TOO_LARGE.
 *
 * Clients' refunds under the same faults: every 3–6 s (seeded, a schedule of its own) a funded client (the
 * load client, 60%, else a newcomer the node shows an account for; the load client's genesis balance of 10^9
 * keeps the load funded) takes back 1–5% of what it may take back (a Refund signed with the client's key,
 * posted to a node up at the time, its serial and room (`refundable`: the balance less the maxFee of its
 * requests waiting there and its refunds waiting there) read from that node's GET /v1/accounts/:client as
 * `dropbear refund` reads them: `refundStateOf`). A quarter get a rival: the same serial, 1 more (or 1 less
 * where 1 more would pass the room), through another node. Now and then (15%) the client asks for more than
 * refundable (refundable + 2 × the genesis money + 20,000–29,999: a margin over the deposits and transfers
 * that could raise the balance meanwhile) instead: the node must refuse it with TX_REFUND_TOO_LARGE.
 *
 * Clients' transfers under the same faults: every 4–7 s (seeded, a schedule of its own) a funded client (as
 * for refunds) pays 1–5% of its `refundable` (read with `refundStateOf` as `dropbear transfer` reads it: a
 * transfer takes the next serial of the one sequence a client's refunds and transfers share, so the two
 * schedules interleave on it) to another key: another of the soak's clients (the load client or a newcomer,
 * which a transfer funds, opening its account, where no deposit has yet), else a fresh key (a new one, the
 * ledger opening its account, or one an earlier transfer paid). A quarter get a rival of the same serial
 * through another node: half a transfer of 1 more (or 1 less) to the same payee, half a refund of it (one of
 * the two applies). Now and then (12%) the client asks for more than refundable (the margin as for refunds)
 * instead: the node must refuse it with TX_TRANSFER_TOO_LARGE; and (10%) it pays itself: the node must
 * refuse it with TX_TRANSFER_TO_SELF.
 *
 * While it runs it samples each node's /v1/status every second (view, view change, last executed, requests
 * held: `timeline.txt` in the run folder) and prints, at the end, the longest time the group executed
 * nothing with the samples around it, and how long each node spent alone in a view change (a higher view
 * than the others', which went on without it: PBFT keeps such a node out of the ordering until the group's
 * next view change, so one more fault then stalls the group).
 *
 * After `--minutes` the load stops, the group settles (every node at the same last executed batch), the
 * nodes are stopped (SIGTERM) and it checks, printing each:
 *  0. nothing is left open (no SDK call unanswered, no long poll or certificate waiter at any node), and
 *     every node exits on SIGTERM within 5 s (a node still running after 15 s is SIGKILLed; the sockets it
 *     held after 5 s are printed);
 *  1. every certificate the client received verifies offline against the genesis;
 *  2. no request id was certified twice with different outcomes: across the four ledgers, each request id
 *     is at one sequence number with one outcome, the same as its certificate's;
 *  3. the ledgers agree: for every sequence number two nodes both executed, the same batch digest and the
 *     same receipt; and each ledger passes `dropbear ledger verify` (chain, signatures, replay);
 *     nothing certified is lost: every certificate's request is in every ledger, at its receipt's seq;
 *  4. no node stored misbehaviour evidence (the evidence table, the "misbehaviour evidence stored" and
 *     "bad signature" log lines);
 *  5. the client's balance on each node (its ledger replayed) is the genesis balance plus the deposits to it
 *     that applied minus the fees of its requests the node executed and its refunds that applied, minus the
 *     transfers it paid plus those it received that applied, and that is the fees of the certificates
 *     received plus those of requests certified whose certificate the client did not get;
 *  6. no node log has an uncaught exception, a fatal line or an error-level line;
 *  7. requests that failed at the client, by code, and how requests sent only to a node that was down
 *     fared (the SDK hedges to the others after 2 s); only OVERLOADED failures pass (every node asked turned
 *     the request away while the group executed nothing, for longer than the SDK's overloadRetry resends
 *     it within the call's time);
 *  8. the money (each ledger replayed, and, independently, the ledgers' batches walked in seq order, a
 *     deposit applying at the treasury's next serial, a fee change at its node's next version, a withdrawal
 *     using its node's next serial and taking its amount when that is 1 to what the node earned up to the
 *     batch before less what it withdrew, a refund or transfer using its client's next serial (one sequence
 *     for both) where the client has an account, each batch's certified votes then crediting their nodes'
 *     fees of the batch and its outcomes charging their clients, and then each refund and transfer of the
 *     batch that used its serial with an amount of 1 or more (a transfer: to another key), in batch order,
 *     taking its amount when that is at most the client's balance as the batch's requests (and the refunds
 *     and transfers before it) left it, a transfer crediting its payee (opening its account, up to
 *     MAX_ACCOUNTS_BY_TRANSFER accounts) (the ledger's rule); every account's balance followed from the
 *     genesis; what was submitted, taken, refused (by code), applied, ordered without effect and never
 *     ordered is printed first, per kind):
 *     a. every node agrees on deposits applied, minted, each fee and fee version, the balances of the load
 *        client, the newcomers and the transfers' fresh payees and their refund serials, each node's
 *        withdrawals (the last serial), withdrawn and earned, and refunded, and so does the walk (its
 *        balances and serials too); every ledger's accounts (each key and balance) are the walk's;
 *     b. minted is the sum of the distinct deposits that applied, serials 1..deposits each credited once,
 *        and nothing applied that the soak did not submit;
 *     c. each newcomer's balance is its deposits applied minus the fees of its requests executed and its
 *        refunds applied, minus the transfers it paid plus those it received, and those fees are the fees
 *        its certificates name plus those of its requests certified without a certificate; its account
 *        exists exactly when a deposit or a transfer to it applied;
 *     d. no newcomer request failed (OVERLOADED aside, as in 7);
 *     e. on every node all money (balances and what owners may still withdraw) is the genesis balances plus
 *        minted less paidOut (the withdrawals' sum) less refunded, paidOut is the walk's withdrawn, all nodes
 *        together, refunded the walk's; and so in the walk (its balances plus earned less withdrawn):
 *        transfers move money, they neither make nor take any;
 *     f. withdrawals: in the walk each node's serials 1..withdrawals each used once and applied at most once,
 *        withdrawn = the sum of the applied amounts, each applied one submitted by the soak (and its amount
 *        the one submitted), and every ledger's withdrawn is that;
 *     g. withdrawn ≤ earned for each node, in every ledger and in the walk;
 *     h. no withdrawal of more than payable was taken: each answered 409 TX_WITHDRAWAL_TOO_LARGE (or failed
 *        to reach a node going down), none applied;
 *     i. refunds: in the walk each client's serials 1..last (refunds and transfers together) each used once
 *        and applied at most once, each applied refund one submitted by the soak (its amount the one
 *        submitted, no serial applied twice), and refunded = the sum of the applied amounts = the walk's =
 *        every ledger's refunded;
 *     j. no refund took more than its client's balance after its batch's requests were charged (the walk
 *        takes none such, and no balance in the walk is ever below 0), and every ledger that holds the
 *        batches carrying a refund kept its fate (the txs table: applied at that batch, or without effect)
 *        as the walk decided it;
 *     k. no refund of more than refundable was taken: each answered 409 TX_REFUND_TOO_LARGE (or failed to
 *        reach a node going down), none applied;
 *     l. transfers: each applied one submitted by the soak (its payee and amount the ones signed), no
 *        client's serial applied twice across its refunds and transfers the soak submitted, each client's
 *        transfers paid = the walk's, and what all payees received = what all payers paid;
 *     m. no transfer moved more than its payer's balance after its batch's requests (and the refunds and
 *        transfers before it); each fresh payee's balance on every node is what the transfers to it that
 *        applied brought, its account there exactly when one applied; and every ledger that holds the
 *        batches carrying a transfer kept its fate (the txs table) as the walk decided it;
 *     n. no transfer of more than refundable or to its payer itself was taken: each answered
 *        409 TX_TRANSFER_TOO_LARGE or 400 TX_TRANSFER_TO_SELF (or failed to reach a node going down), none
 *        applied.
 * Exit status 1 if a check fails (the run folder is then kept and printed), 2 for a bad command line.
 *
 * --minutes M (5), --seed S (time-based when absent; printed), --rate R (50), --keep (keep the run folder).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SignatureCache, verifyCertificate } from '../src/certificate/index.ts';
import { refundStateOf } from '../src/cli/client-spend.ts';
import { nextSerialOf } from '../src/cli/deposit.ts';
import { GROUP_REPLICA, initGroup, loadGroup, NODE_EXEC_ARGV, stopChild } from '../src/cli/group.ts';
import { ownerKey } from '../src/cli/model-update.ts';
import { feeStateOf } from '../src/cli/set-fee.ts';
import { withdrawStateOf } from '../src/cli/withdraw.ts';
import { DropbearClient } from '../src/client/index.ts';
import { SqliteLedger, StoredOutcomes } from '../src/ledger/sqlite.ts';
import { MAX_ACCOUNTS_BY_TRANSFER } from '../src/ledger/state.ts';
import { verifyLedgerFile } from '../src/ledger/verify.ts';
import { STANDIN_MODEL, standInInput } from '../src/node/standin-backend.ts';
import {
  Batch,
  Certificate,
  clientSpendOf,
  DropbearError,
  decode,
  encode,
  groupIdOf,
  hex,
  type KeyPair,
  keyPairFromSeed,
  Outcome,
  receiptHashOf,
  requestIdOf,
  type SignedRequest,
  signDeposit,
  signFeeChange,
  signRefund,
  signTransfer,
  signWithdrawal,
  Tx,
  toB64u,
  toJson,
  txIdOf,
} from '../src/protocol/index.ts';
import { readKeyFile } from '../src/protocol/keyfile.ts';
import { type FlagSpecs, scriptFlags } from './lib/args.ts';
import { flag } from './lib/part.ts';
import { seededRandom } from './lib/stats.ts';

const FLAGS: FlagSpecs = {
  minutes: { kind: 'number', help: 'how long the load and the faults run (5)' },
  seed: { kind: 'count', help: 'the seed of the fault schedule and of the load (time-based when absent)' },
  rate: { kind: 'number', help: 'requests per second, open loop (50)' },
  keep: { kind: 'switch', help: 'keep the run folder (logs, ledgers) even when every check passes' },
};
const given = scriptFlags(process.argv.slice(2), FLAGS, 'npm run bench:soak');
const MINUTES = Number(flag(given, 'minutes') ?? 5);
const SEED = Number(flag(given, 'seed') ?? (Date.now() % 1_000_000) + 1);
const RATE = Number(flag(given, 'rate') ?? 50);
const KEEP = given.includes('--keep');
const N = 4;
const BIN = new URL('../bin/dropbear.mjs', import.meta.url).pathname;

const uniform = (r: () => number, lo: number, hi: number) => lo + (hi - lo) * r();
const log = (l: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 23)}] ${l}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- the fault schedule, from the seed ----
interface Fault {
  gapS: number;
  kind: 'crash' | 'stall';
  /** A node id, or 'primary' (the primary of the moment). */
  target: number | 'primary';
  /** Down (crash) or stopped (stall), seconds. */
  forS: number;
}
function schedule(seed: number, totalS: number): Fault[] {
  const r = seededRandom(seed);
  const out: Fault[] = [];
  // Each fault takes its gap, its time down and ~5 s to come back: stop planning where they no longer fit.
  let t = 0;
  for (;;) {
    const gapS = Math.round(uniform(r, 10, 30) * 10) / 10;
    const kind = r() < 0.25 ? 'stall' : 'crash';
    const target = kind === 'crash' && r() < 0.35 ? 'primary' : Math.floor(r() * N);
    const forS = Math.round((kind === 'crash' ? uniform(r, 1, 10) : uniform(r, 2, 6)) * 10) / 10;
    t += gapS + forS + 5;
    if (t > totalS - 10) return out;
    out.push({ gapS, kind, target, forS });
  }
}

// ---- the group ----
const root = mkdtempSync(join(tmpdir(), 'dropbear-soak-'));
const groupDir = join(root, 'group');
await initGroup({
  dir: groupDir,
  nodes: N,
  models: Array.from({ length: N }, () => STANDIN_MODEL),
  name: 'soak',
  nodeConfig: { log: { level: 'info' }, replica: { ...GROUP_REPLICA } },
});
const g = loadGroup(groupDir);
const procs = new Map<number, ChildProcess>();
const logFile = (id: number) => join(root, `node-${id}.log`);
const startCount = new Map<number, number>();

function startNode(id: number): ChildProcess {
  const fd = openSync(logFile(id), 'a');
  const child = spawn(
    process.execPath,
    [...NODE_EXEC_ARGV, BIN, 'node', '--config', join(groupDir, `node-${id}.json`)],
    {
      stdio: ['ignore', fd, fd, 'ipc'],
    },
  );
  closeSync(fd);
  procs.set(id, child);
  startCount.set(id, (startCount.get(id) ?? 0) + 1);
  return child;
}
function kill9(id: number): Promise<void> {
  const c = procs.get(id)!;
  return new Promise((res) => {
    if (c.exitCode !== null || c.signalCode !== null) return res();
    c.once('exit', () => res());
    c.kill('SIGKILL');
  });
}
/** Each node's time to exit after SIGTERM (ms), and whether it needed SIGKILL after 15 s. */
const stopTimes: { node: number; ms: number; killed: boolean; sockets: string }[] = [];
async function stopAll(): Promise<void> {
  for (const c of procs.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGCONT');
  await Promise.all(
    [...procs].map(async ([node, c]) => {
      if (c.exitCode !== null || c.signalCode !== null) return;
      const t0 = Date.now();
      let sockets = '';
      // A node still running after 5 s: what it holds open then (for the report), before the SIGKILL.
      const look = setTimeout(() => {
        try {
          sockets = execFileSync('ss', ['-tanp'], { encoding: 'utf8' })
            .split('\n')
            .filter((l) => l.includes(`pid=${c.pid},`))
            .join('\n');
        } catch (e) {
          sockets = `ss: ${(e as Error).message}`;
        }
      }, 5000);
      await stopChild(c, 15_000);
      clearTimeout(look);
      stopTimes.push({ node, ms: Date.now() - t0, killed: c.signalCode === 'SIGKILL', sockets });
    }),
  );
}
let stopping = false;
const onSignal = () => {
  if (stopping) return;
  stopping = true;
  log(`interrupted; stopping the nodes (run folder ${root})`);
  void stopAll().then(() => process.exit(130));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

interface Status {
  view: number;
  primary: number;
  lastExecuted: number;
  viewChanging?: boolean;
  pendingRequests?: number;
  longPolls?: number;
  waitingForCertificates?: number;
}
async function status(id: number, timeoutMs = 1000): Promise<Status | null> {
  try {
    const r = await fetch(`${g.file.nodes[id].api}/v1/status`, { signal: AbortSignal.timeout(timeoutMs) });
    return r.status === 200 ? ((await r.json()) as Status) : null;
  } catch {
    return null;
  }
}
async function readyz(id: number): Promise<boolean> {
  try {
    const r = await fetch(`${g.file.nodes[id].api}/readyz`, { signal: AbortSignal.timeout(1000) });
    return r.status === 200;
  } catch {
    return false;
  }
}
async function waitReady(ids: number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (const id of ids)
    while (!(await readyz(id)))
      if (Date.now() > deadline) return false;
      else await sleep(200);
  return true;
}
/** Waits until `id` has executed what the others had when it came up (a catch-up); ms taken or null. */
async function waitCaughtUp(id: number, timeoutMs: number): Promise<number | null> {
  const t0 = Date.now();
  const others = await Promise.all([0, 1, 2, 3].filter((i) => i !== id).map((i) => status(i)));
  const target = Math.max(0, ...others.map((s) => s?.lastExecuted ?? 0));
  while (Date.now() - t0 < timeoutMs) {
    const s = await status(id);
    if (s && s.lastExecuted >= target) return Date.now() - t0;
    await sleep(200);
  }
  return null;
}

// ---- the load ----
interface Sent {
  id: string;
  sentTo: number[];
  t0: number;
  t1?: number;
  cert?: Uint8Array;
  servedBy?: number;
  error?: { code: string; message: string };
}
const sent: Sent[] = [];
/** Down intervals per node (crash or stall), for check 7. */
const down: { node: number; kind: 'crash' | 'stall'; from: number; to: number }[] = [];

/** The SDK's HTTP calls still open (check 0: none should be left once every call has settled). */
const openCalls = new Map<number, { url: string; method: string; since: number; status?: number }>();
let callNo = 0;
const trackedFetch: typeof fetch = async (input, init) => {
  const k = callNo++;
  openCalls.set(k, { url: String(input), method: init?.method ?? 'GET', since: Date.now() });
  try {
    const res = await fetch(input, init);
    const open = openCalls.get(k);
    if (open) open.status = res.status;
    // Open until its body is read (or the read fails or is cancelled).
    if (!res.body) return res;
    const reader = res.body.getReader();
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        try {
          const r = await reader.read();
          if (r.done) {
            openCalls.delete(k);
            c.close();
          } else c.enqueue(r.value);
        } catch (e) {
          openCalls.delete(k);
          c.error(e);
        }
      },
      cancel(why) {
        openCalls.delete(k);
        return reader.cancel(why);
      },
    });
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  } catch (e) {
    openCalls.delete(k);
    throw e;
  }
};
/**
 * Each node's fee stays within 1–3 (the genesis's is 1; fee changes draw from 1–3): every client signs a maxFee
 * all four votes fit at the highest, so a request never goes unserved for its maxFee.
 */
const FEE_MAX = 3;
const MAX_FEE = N * FEE_MAX;
const signer = new DropbearClient({
  genesis: g.genesis,
  nodes: g.file.nodes,
  key: g.clientKey(),
  maxFee: MAX_FEE,
});
const senders = new Map<string, DropbearClient>();
/**
 * Sends `sr` with `client` and records it: its certificate or its error, and when it was sent and settled.
 * The call is held in `pending` until it settles.
 */
function track(
  client: DropbearClient,
  sr: SignedRequest,
  sentTo: number[],
  pending: Set<Promise<void>>,
): Sent {
  const s: Sent = { id: hex(requestIdOf(sr)), sentTo, t0: Date.now() };
  const p = client
    .send(sr)
    .then(
      (res) => {
        s.cert = encode(Certificate, res.certificate);
        s.servedBy = res.servedBy;
      },
      (e: unknown) => {
        s.error = {
          code: e instanceof DropbearError ? e.code : 'UNTYPED',
          message: String((e as Error)?.message ?? e),
        };
      },
    )
    .finally(() => {
      s.t1 = Date.now();
      pending.delete(p);
    });
  pending.add(p);
  return s;
}

function senderFor(to: number[]): DropbearClient {
  const k = to.join(',');
  let c = senders.get(k);
  if (!c) {
    c = new DropbearClient({
      genesis: g.genesis,
      nodes: g.file.nodes,
      key: g.clientKey(),
      sendTo: to,
      fetch: trackedFetch,
      maxFee: MAX_FEE,
    });
    senders.set(k, c);
  }
  return c;
}
const inputs = Array.from({ length: 64 }, (_, i) => standInInput(i));

function runLoad(ms: number, rate: number, seed: number): Promise<void> {
  const r = seededRandom(seed ^ 0x5bd1e995);
  const t0 = Date.now();
  const total = Math.floor((ms / 1000) * rate);
  const pending = new Set<Promise<void>>();
  let issued = 0;
  return new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((Date.now() - t0) / 1000) * rate));
      while (issued < due) {
        const i = issued++;
        const first = Math.floor(r() * N);
        const to = r() < 0.5 ? [first] : [first, (first + 1 + Math.floor(r() * (N - 1))) % N].sort();
        sent.push(track(senderFor(to), signer.sign(inputs[i % inputs.length]), to, pending));
      }
      if (issued < total) setTimeout(tick, 10);
      else void Promise.allSettled([...pending]).then(() => resolve());
    };
    tick();
  });
}

// ---- the faults ----
interface FaultDone {
  kind: 'crash' | 'stall';
  node: number;
  primary: boolean;
  forS: number;
  readyMs: number | null;
  caughtUpMs: number | null;
}
const faultsDone: FaultDone[] = [];
async function runFaults(plan: Fault[], until: number): Promise<void> {
  for (const f of plan) {
    await sleep(f.gapS * 1000);
    if (Date.now() + f.forS * 1000 > until || stopping) return;
    let node = typeof f.target === 'number' ? f.target : -1;
    let primary = -1;
    for (let i = 0; i < N && primary < 0; i++) primary = (await status(i))?.primary ?? -1;
    if (node < 0) node = Math.max(primary, 0);
    const from = Date.now();
    if (f.kind === 'crash') {
      log(`fault: kill -9 node ${node}${node === primary ? ' (the primary)' : ''}, down ${f.forS} s`);
      isDown.add(node);
      await kill9(node);
      await sleep(f.forS * 1000);
      startNode(node);
      const ok = await waitReady([node], 60_000);
      const readyMs = ok ? Date.now() - from - f.forS * 1000 : null;
      const caughtUpMs = ok ? await waitCaughtUp(node, 60_000) : null;
      isDown.delete(node);
      down.push({ node, kind: 'crash', from, to: Date.now() });
      log(
        `  node ${node} restarted: ready after ${readyMs ?? 'NOT READY'} ms, caught up after ${caughtUpMs ?? 'NOT CAUGHT UP'} ms`,
      );
      faultsDone.push({ kind: 'crash', node, primary: node === primary, forS: f.forS, readyMs, caughtUpMs });
    } else {
      log(`fault: SIGSTOP node ${node}${node === primary ? ' (the primary)' : ''} for ${f.forS} s`);
      isDown.add(node);
      procs.get(node)!.kill('SIGSTOP');
      await sleep(f.forS * 1000);
      procs.get(node)!.kill('SIGCONT');
      const caughtUpMs = await waitCaughtUp(node, 60_000);
      isDown.delete(node);
      down.push({ node, kind: 'stall', from, to: Date.now() });
      log(`  node ${node} continued: caught up after ${caughtUpMs ?? 'NOT CAUGHT UP'} ms`);
      faultsDone.push({
        kind: 'stall',
        node,
        primary: node === primary,
        forS: f.forS,
        readyMs: 0,
        caughtUpMs,
      });
    }
  }
}

// ---- the money: deposits and fee changes, submitted under the faults ----
/** Nodes killed or stopped right now (a submission goes through another). */
const isDown = new Set<number>();
const groupId = groupIdOf(g.genesis);
const treasury = readKeyFile(join(groupDir, 'keys', 'treasury.json'));
const loadClientHex = hex(g.clientKey().publicKey);
interface TxSent {
  kind: 'deposit' | 'feeChange' | 'withdrawal' | 'refund' | 'transfer';
  /** Hex id (the tx's own, whether or not the node took it). */
  txId: string;
  via: number;
  t: number;
  /** The node's answer: 202, else the error code (or the fetch error). */
  answer: string;
  serial?: number;
  amount?: number;
  /** Deposit, refund or transfer: the account (hex; a transfer's payer); its name in the report. */
  client?: string;
  who?: string;
  /** Transfer: the payee (hex) and its name in the report. */
  to?: string;
  toWho?: string;
  /** Transfer: to the paying client itself, on purpose (the node should refuse it, TX_TRANSFER_TO_SELF). */
  self?: boolean;
  node?: number;
  version?: number;
  fee?: number;
  /**
   * Withdrawal (refund, transfer): more than the node's payable (the client's refundable), on purpose (the
   * node should refuse it).
   */
  over?: boolean;
  /** Withdrawal, refund or transfer: a rival of the one before (same serial, through another node). */
  rival?: boolean;
  /** Refund: the rival of a transfer (the two kinds share the client's serials). */
  ofTransfer?: boolean;
}
const txsSent: TxSent[] = [];
/** Accounts the genesis does not list: funded by deposits only; each sends a few requests once funded. */
interface Newcomer {
  name: string;
  key: KeyPair;
  client: DropbearClient;
  sent: Sent[];
}
const NEWCOMER_REQUESTS = 8; // at most 8 × MAX_FEE = 96: less than one deposit (100–999) pays for
const newcomers: Newcomer[] = [0, 1].map((i) => {
  const r = seededRandom((SEED * 7 + i) ^ 0x3c6ef372);
  const key = keyPairFromSeed(Uint8Array.from({ length: 32 }, () => Math.floor(r() * 256)));
  return {
    name: `newcomer-${i}`,
    key,
    client: new DropbearClient({
      genesis: g.genesis,
      nodes: g.file.nodes,
      key,
      fetch: trackedFetch,
      maxFee: MAX_FEE,
    }),
    sent: [],
  };
});
async function getJson(id: number, path: string, timeoutMs = 2000): Promise<Record<string, unknown> | null> {
  try {
    const r = await fetch(`${g.file.nodes[id].api}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
    return r.status === 200 ? ((await r.json()) as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
/**
 * Posts `tx` to node `id`: its answer (202, else the status and the error's code, or the fetch error) and the
 * error's message. The API's error body is `{error: {code, message}}` (until the withdrawals, the soak read a
 * top-level `code`, which only OIP routes have, and printed a bare status for every refusal).
 */
async function postTxAnswer(id: number, tx: Tx): Promise<{ answer: string; message: string }> {
  try {
    const r = await fetch(`${g.file.nodes[id].api}/v1/txs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ tx: toJson(Tx, tx) }),
      signal: AbortSignal.timeout(3000),
    });
    const body = (await r.json().catch(() => ({}))) as {
      code?: string;
      error?: { code?: string; message?: string };
    };
    if (r.status === 202) return { answer: '202', message: '' };
    return {
      answer: `${r.status} ${body.error?.code ?? body.code ?? ''}`.trim(),
      message: body.error?.message ?? '',
    };
  } catch (e) {
    return { answer: `fetch: ${(e as Error).name}`, message: String((e as Error).message) };
  }
}
async function postTx(id: number, tx: Tx): Promise<string> {
  return (await postTxAnswer(id, tx)).answer;
}
/**
 * Every 3–6 s (seeded): a deposit (100–999) to the load client or a newcomer (70%), else a fee change of a
 * random node (1–3), submitted through a node up at the time, its serial or version the next after what
 * that node's /v1/status counts applied and pending (as `dropbear deposit` and `set-fee` take them). Each
 * tick, a newcomer the node shows funded sends up to 2 requests (at most NEWCOMER_REQUESTS in all).
 */
async function runMoney(until: number, seed: number): Promise<void> {
  const r = seededRandom(seed ^ 0x27d4eb2f);
  const pending = new Set<Promise<void>>();
  while (!stopping) {
    await sleep(uniform(r, 3, 6) * 1000);
    if (Date.now() > until - 2000 || stopping) break;
    // Every draw of the tick first, so the choices do not depend on what the nodes answer.
    const roll = r();
    const pick = r();
    const amount = 100 + Math.floor(r() * 900);
    const feeNode = Math.floor(r() * N);
    const fee = 1 + Math.floor(r() * FEE_MAX);
    const viaPick = r();
    const rival = r() < 0.2;
    const rivalPick = r();
    const up = [0, 1, 2, 3].filter((i) => !isDown.has(i));
    const via = up[Math.floor(viaPick * up.length)];
    const st = await getJson(via, '/v1/status');
    if (st) {
      if (roll < 0.7) {
        const nc = pick < 0.5 ? null : newcomers[pick < 0.75 ? 0 : 1];
        const client = nc ? nc.key.publicKey : g.clientKey().publicKey;
        const serial = nextSerialOf(`node ${via} /v1/status`, st);
        const tx = signDeposit(groupId, { client, amount, serial }, treasury);
        const answer = await postTx(via, tx);
        const who = nc?.name ?? 'load client';
        txsSent.push({
          kind: 'deposit',
          txId: hex(txIdOf(tx)),
          via,
          t: Date.now(),
          answer,
          serial,
          amount,
          client: hex(client),
          who,
        });
        log(`money: deposit ${serial} of ${amount} to ${who} via node ${via}: ${answer}`);
        // Now and then a rival of the same serial (1 more, to the same account) through another node up: the
        // treasury's double submission; one of the two applies, the other is ordered without effect.
        const others = up.filter((i) => i !== via);
        if (rival && others.length > 0) {
          const via2 = others[Math.floor(rivalPick * others.length)];
          const tx2 = signDeposit(groupId, { client, amount: amount + 1, serial }, treasury);
          const answer2 = await postTx(via2, tx2);
          txsSent.push({
            kind: 'deposit',
            txId: hex(txIdOf(tx2)),
            via: via2,
            t: Date.now(),
            answer: answer2,
            serial,
            amount: amount + 1,
            client: hex(client),
            who,
          });
          log(`money: rival deposit ${serial} of ${amount + 1} to ${who} via node ${via2}: ${answer2}`);
        }
      } else {
        const version = feeStateOf(`node ${via} /v1/status`, st, feeNode).next;
        const tx = signFeeChange(
          groupId,
          { node: feeNode, version, fee },
          ownerKey(g, g.file.nodes[feeNode]),
        );
        const answer = await postTx(via, tx);
        txsSent.push({
          kind: 'feeChange',
          txId: hex(txIdOf(tx)),
          via,
          t: Date.now(),
          answer,
          node: feeNode,
          version,
          fee,
        });
        log(`money: node ${feeNode} fee → ${fee} (version ${version}) via node ${via}: ${answer}`);
      }
    } else log(`money: node ${via} did not answer /v1/status; nothing submitted this tick`);
    for (const nc of newcomers) {
      if (nc.sent.length >= NEWCOMER_REQUESTS) continue;
      const a = await getJson(via, `/v1/accounts/${toB64u(nc.key.publicKey)}`);
      if (!a || (a.balance as number) < 100) continue;
      for (let k = 0; k < 2 && nc.sent.length < NEWCOMER_REQUESTS; k++) {
        const sr = nc.client.sign(inputs[(nc.sent.length * 7 + k) % inputs.length]);
        nc.sent.push(track(nc.client, sr, [0, 1, 2, 3], pending));
      }
    }
  }
  await Promise.allSettled([...pending]);
}

/**
 * Every 3–6 s (seeded, apart from runMoney's draws): the owner of a random node withdraws 10–60% of what the
 * node may withdraw (payable less the withdrawals of it waiting), through a node up at the time, its serial
 * and room read from that node (`withdrawStateOf`, as `dropbear withdraw`); a quarter get a rival of the same
 * serial through another node; 15% ask for more than payable instead (the node should refuse them).
 */
async function runWithdrawals(until: number, seed: number): Promise<void> {
  const r = seededRandom(seed ^ 0x165667b1);
  while (!stopping) {
    await sleep(uniform(r, 3, 6) * 1000);
    if (Date.now() > until - 2000 || stopping) break;
    // Every draw of the tick first, so the choices do not depend on what the nodes answer.
    const node = Math.floor(r() * N);
    const part = uniform(r, 0.1, 0.6);
    const viaPick = r();
    const over = r() < 0.15;
    const rival = r() < 0.25;
    const rivalPick = r();
    const extra = 1000 + Math.floor(r() * 1000);
    const up = [0, 1, 2, 3].filter((i) => !isDown.has(i));
    const via = up[Math.floor(viaPick * up.length)];
    const st = await getJson(via, '/v1/status');
    const ow = st ? await getJson(via, '/v1/owners') : null;
    if (!st || !ow) {
      log(`money: node ${via} did not answer /v1/status and /v1/owners; no withdrawal this tick`);
      continue;
    }
    let now: { next: number; payable: number; waiting: number };
    try {
      now = withdrawStateOf(`node ${via} /v1/status`, st, `node ${via} /v1/owners`, ow, node);
    } catch (e) {
      log(`money: ${(e as Error).message}; no withdrawal this tick`);
      continue;
    }
    const room = now.payable - now.waiting;
    const key = ownerKey(g, g.file.nodes[node]);
    const submit = async (amount: number, through: number, tag: { over?: boolean; rival?: boolean }) => {
      const tx = signWithdrawal(groupId, { node, serial: now.next, amount }, key);
      const { answer, message } = await postTxAnswer(through, tx);
      txsSent.push({
        kind: 'withdrawal',
        txId: hex(txIdOf(tx)),
        via: through,
        t: Date.now(),
        answer,
        node,
        serial: now.next,
        amount,
        ...tag,
      });
      log(
        `money: ${tag.over ? 'over-payable ' : tag.rival ? 'rival ' : ''}withdrawal ${now.next} of node ${node}: ${amount} (payable ${now.payable}, waiting ${now.waiting}) via node ${through}: ${answer}${message ? ` (${message.slice(0, 200)})` : ''}`,
      );
    };
    if (over) {
      await submit(now.payable + extra, via, { over: true });
      continue;
    }
    if (room < 1) {
      log(`money: node ${node} may withdraw nothing now (payable ${now.payable}, waiting ${now.waiting})`);
      continue;
    }
    const amount = Math.max(1, Math.floor(room * part));
    await submit(amount, via, {});
    const others = up.filter((i) => i !== via);
    const amount2 = amount + 1 <= room ? amount + 1 : amount - 1;
    if (rival && others.length > 0 && amount2 >= 1)
      await submit(amount2, others[Math.floor(rivalPick * others.length)], { rival: true });
  }
}

/**
 * What an over-refundable refund or transfer asks beyond refundable (with 20,000–29,999 more): twice the
 * genesis money. A transfer to the client that applied between the read of its account and the submission
 * could raise its balance by up to all the money in the group, the genesis money plus what the deposits
 * minted (far less); until transfers, 20,000–29,999 covered the deposits alone.
 */
const OVER_MARGIN = 2 * g.genesis.balances.reduce((a, b) => a + b.amount, 0);

/**
 * Every 3–6 s (seeded, a schedule of its own): a funded client (the load client, 60%, else a newcomer the node
 * shows an account for) takes back 1–5% of what it may take back (`refundable`: its balance less the maxFee
 * of its requests waiting at that node and its refunds waiting there), through a node up at the time, its
 * serial and room read from that node's GET /v1/accounts/:client (`refundStateOf`, as `dropbear refund`);
 * a quarter get a rival of the same serial (1 more, or 1 less where 1 more would pass the room) through
 * another node; 15% ask for more than refundable instead (refundable + OVER_MARGIN + 20,000–29,999: a margin
 * over the deposits, at most 16 waiting of at most 1,000 each, and the transfers that could raise the balance
 * meanwhile): the node must refuse them with TX_REFUND_TOO_LARGE.
 */
async function runRefunds(until: number, seed: number): Promise<void> {
  const r = seededRandom(seed ^ 0x2545f491);
  while (!stopping) {
    await sleep(uniform(r, 3, 6) * 1000);
    if (Date.now() > until - 2000 || stopping) break;
    // Every draw of the tick first, so the choices do not depend on what the nodes answer.
    const pick = r();
    const part = uniform(r, 0.01, 0.05);
    const viaPick = r();
    const over = r() < 0.15;
    const rival = r() < 0.25;
    const rivalPick = r();
    const extra = 20_000 + Math.floor(r() * 10_000);
    const nc = pick < 0.6 ? null : newcomers[pick < 0.8 ? 0 : 1];
    const key = nc ? nc.key : g.clientKey();
    const who = nc?.name ?? 'load client';
    const up = [0, 1, 2, 3].filter((i) => !isDown.has(i));
    const via = up[Math.floor(viaPick * up.length)];
    const url = `node ${via} /v1/accounts`;
    const a = await getJson(via, `/v1/accounts/${toB64u(key.publicKey)}`);
    if (!a) {
      log(`money: node ${via} did not answer /v1/accounts; no refund this tick`);
      continue;
    }
    if (a.exists !== true) {
      log(`money: ${who} has no account at node ${via} yet; no refund this tick`);
      continue;
    }
    let now: ReturnType<typeof refundStateOf>;
    try {
      now = refundStateOf(url, a);
    } catch (e) {
      log(`money: ${(e as Error).message}; no refund this tick`);
      continue;
    }
    const submit = async (amount: number, through: number, tag: { over?: boolean; rival?: boolean }) => {
      const tx = signRefund(groupId, { client: key.publicKey, serial: now.next, amount }, key);
      const { answer, message } = await postTxAnswer(through, tx);
      txsSent.push({
        kind: 'refund',
        txId: hex(txIdOf(tx)),
        via: through,
        t: Date.now(),
        answer,
        client: hex(key.publicKey),
        who,
        serial: now.next,
        amount,
        ...tag,
      });
      log(
        `money: ${tag.over ? 'over-refundable ' : tag.rival ? 'rival ' : ''}refund ${now.next} of ${who}: ${amount} (balance ${now.balance}, refundable ${now.refundable}, held fees ${now.heldFees}, waiting ${now.waiting}) via node ${through}: ${answer}${message ? ` (${message.slice(0, 200)})` : ''}`,
      );
    };
    if (over) {
      await submit(now.refundable + OVER_MARGIN + extra, via, { over: true });
      continue;
    }
    if (now.refundable < 1) {
      log(`money: ${who} may take back nothing now (balance ${now.balance}, refundable ${now.refundable})`);
      continue;
    }
    const amount = Math.max(1, Math.floor(now.refundable * part));
    await submit(amount, via, {});
    const others = up.filter((i) => i !== via);
    const amount2 = amount + 1 <= now.refundable ? amount + 1 : amount - 1;
    if (rival && others.length > 0 && amount2 >= 1)
      await submit(amount2, others[Math.floor(rivalPick * others.length)], { rival: true });
  }
}

/** Keys no genesis, deposit or client of the soak has: transfers pay them (opening their accounts). */
const freshPayees: { name: string; key: KeyPair }[] = [];
function freshPayee(): { name: string; key: KeyPair } {
  const i = freshPayees.length;
  const r = seededRandom((SEED * 13 + i) ^ 0x61c88647);
  const p = {
    name: `fresh-${i}`,
    key: keyPairFromSeed(Uint8Array.from({ length: 32 }, () => Math.floor(r() * 256))),
  };
  freshPayees.push(p);
  return p;
}

/**
 * Every 4–7 s (seeded, a schedule of its own): a funded client (the load client, 60%, else a newcomer the node
 * shows an account for) pays 1–5% of what it may take out (`refundable`, the room refunds and transfers
 * share) to another key: another of the soak's clients (40%; a newcomer without an account gets one), a fresh
 * key (30%) or a fresh key an earlier transfer paid (30%; a new one while there is none), through a node up
 * at the time, its serial read from that node's GET /v1/accounts/:client (`refundStateOf`, as `dropbear
 * transfer`: the next of the sequence it shares with the client's refunds). A quarter get a rival of the same
 * serial through another node: half a transfer to the same payee, half a refund (1 more, or 1 less where 1
 * more would pass the room). 12% ask for more than refundable (as over-refundable refunds) instead: the node
 * must refuse them with TX_TRANSFER_TOO_LARGE; 10% pay the client itself: TX_TRANSFER_TO_SELF.
 */
async function runTransfers(until: number, seed: number): Promise<void> {
  const r = seededRandom(seed ^ 0x7feb352d);
  while (!stopping) {
    await sleep(uniform(r, 4, 7) * 1000);
    if (Date.now() > until - 2000 || stopping) break;
    // Every draw of the tick first, so the choices do not depend on what the nodes answer.
    const pick = r();
    const payeeRoll = r();
    const payeePick = r();
    const part = uniform(r, 0.01, 0.05);
    const viaPick = r();
    const special = r();
    const rival = r() < 0.25;
    const rivalPick = r();
    const rivalRefund = r() < 0.5;
    const extra = 20_000 + Math.floor(r() * 10_000);
    const over = special < 0.12;
    const self = !over && special < 0.22;
    const clients = [
      { name: 'load client', key: g.clientKey() },
      ...newcomers.map((nc) => ({ name: nc.name, key: nc.key })),
    ];
    const payer = clients[pick < 0.6 ? 0 : pick < 0.8 ? 1 : 2];
    const up = [0, 1, 2, 3].filter((i) => !isDown.has(i));
    const via = up[Math.floor(viaPick * up.length)];
    const a = await getJson(via, `/v1/accounts/${toB64u(payer.key.publicKey)}`);
    if (!a) {
      log(`money: node ${via} did not answer /v1/accounts; no transfer this tick`);
      continue;
    }
    if (a.exists !== true) {
      log(`money: ${payer.name} has no account at node ${via} yet; no transfer this tick`);
      continue;
    }
    let now: ReturnType<typeof refundStateOf>;
    try {
      now = refundStateOf(`node ${via} /v1/accounts`, a);
    } catch (e) {
      log(`money: ${(e as Error).message}; no transfer this tick`);
      continue;
    }
    const others = clients.filter((c) => c !== payer);
    const payee = self
      ? payer
      : payeeRoll < 0.4
        ? others[Math.floor(payeePick * others.length)]
        : payeeRoll < 0.7 || freshPayees.length === 0
          ? freshPayee()
          : freshPayees[Math.floor(payeePick * freshPayees.length)];
    const key = payer.key;
    const submit = async (
      kind: 'transfer' | 'refund',
      amount: number,
      through: number,
      tag: { over?: boolean; rival?: boolean; self?: boolean; ofTransfer?: boolean },
    ) => {
      const tx =
        kind === 'transfer'
          ? signTransfer(
              groupId,
              { client: key.publicKey, to: payee.key.publicKey, serial: now.next, amount },
              key,
            )
          : signRefund(groupId, { client: key.publicKey, serial: now.next, amount }, key);
      const { answer, message } = await postTxAnswer(through, tx);
      txsSent.push({
        kind,
        txId: hex(txIdOf(tx)),
        via: through,
        t: Date.now(),
        answer,
        client: hex(key.publicKey),
        who: payer.name,
        serial: now.next,
        amount,
        ...(kind === 'transfer' ? { to: hex(payee.key.publicKey), toWho: payee.name } : {}),
        ...tag,
      });
      const what =
        kind === 'transfer'
          ? `transfer ${now.next} of ${payer.name} to ${payee.name}`
          : `refund ${now.next} of ${payer.name}`;
      log(
        `money: ${tag.over ? 'over-refundable ' : tag.self ? 'to-self ' : tag.rival ? 'rival ' : ''}${what}: ${amount} (balance ${now.balance}, refundable ${now.refundable}, held fees ${now.heldFees}, waiting ${now.waiting}) via node ${through}: ${answer}${message ? ` (${message.slice(0, 200)})` : ''}`,
      );
    };
    if (over) {
      await submit('transfer', now.refundable + OVER_MARGIN + extra, via, { over: true });
      continue;
    }
    const amount = Math.max(1, Math.floor(now.refundable * part));
    if (self) {
      // Within the room, so that only the payee is wrong.
      await submit('transfer', amount, via, { self: true });
      continue;
    }
    if (now.refundable < 1) {
      log(
        `money: ${payer.name} may transfer nothing now (balance ${now.balance}, refundable ${now.refundable})`,
      );
      continue;
    }
    await submit('transfer', amount, via, {});
    const rest = up.filter((i) => i !== via);
    const amount2 = amount + 1 <= now.refundable ? amount + 1 : amount - 1;
    if (rival && rest.length > 0 && amount2 >= 1)
      await submit(rivalRefund ? 'refund' : 'transfer', amount2, rest[Math.floor(rivalPick * rest.length)], {
        rival: true,
        ...(rivalRefund ? { ofTransfer: true } : {}),
      });
  }
}

// ---- the run ----
const checks: { name: string; ok: boolean; detail: string }[] = [];
function check(name: string, ok: boolean, detail: string): void {
  checks.push({ name, ok, detail });
  log(`${ok ? 'PASS' : 'FAIL'} ${name}: ${detail}`);
}

const runMs = MINUTES * 60_000;
const plan = schedule(SEED, runMs / 1000);
log(`soak: seed ${SEED}, ${MINUTES} min at ${RATE} requests/s, n = ${N}, run folder ${root}`);
log(
  `fault plan (${plan.length}): ${plan.map((f) => `+${f.gapS}s ${f.kind} ${f.target} ${f.forS}s`).join('; ')}`,
);
for (let i = 0; i < N; i++) startNode(i);
if (!(await waitReady([0, 1, 2, 3], 60_000))) throw new Error(`group not ready; logs in ${root}`);
log('group ready; load and faults start');
// Each node's view and progress every second, for the longest stall and the timeline file.
const timeline: { t: number; s: (Status | null)[] }[] = [];
/** The longest time the group executed nothing (from the timeline). */
let best = { from: 0, to: 0 };
let sampling = true;
const sampler = (async () => {
  while (sampling) {
    const t = Date.now();
    timeline.push({ t, s: await Promise.all([0, 1, 2, 3].map((i) => status(i, 900))) });
    await sleep(1000 - (Date.now() - t));
  }
})();
const until = Date.now() + runMs;
await Promise.all([
  runLoad(runMs, RATE, SEED),
  runFaults(plan, until),
  runMoney(until, SEED),
  runWithdrawals(until, SEED),
  runRefunds(until, SEED),
  runTransfers(until, SEED),
]);
sampling = false;
await sampler;
log(`load stopped: ${sent.length} requests issued`);

// Every node up (a fault cut short by the end of the load would have restarted it already), then settle.
for (const [id, c] of procs)
  if (c.exitCode !== null || c.signalCode !== null) {
    log(`node ${id} is not running (${c.signalCode ?? c.exitCode}); restarting it`);
    startNode(id);
  }
await waitReady([0, 1, 2, 3], 60_000);
let settled: Status[] | null = null;
{
  const deadline = Date.now() + 120_000;
  let prev = '';
  let sameSince = Date.now();
  while (Date.now() < deadline) {
    const ss = await Promise.all([0, 1, 2, 3].map((i) => status(i, 3000)));
    const key = ss.map((s) => (s ? `${s.view}/${s.lastExecuted}` : 'down')).join(' ');
    if (key !== prev) {
      prev = key;
      sameSince = Date.now();
    }
    if (ss.every((s) => s && s.lastExecuted === ss[0]!.lastExecuted) && Date.now() - sameSince > 3000) {
      settled = ss as Status[];
      break;
    }
    await sleep(500);
  }
  log(`settle: ${prev}`);
}
check(
  'settled',
  settled !== null,
  settled
    ? `all at seq ${settled[0].lastExecuted}, view ${settled[0].view}`
    : 'the nodes did not agree on their last executed batch within 120 s',
);
{
  const t0 = timeline[0]?.t ?? 0;
  const line = (e: (typeof timeline)[number]) =>
    `+${((e.t - t0) / 1000).toFixed(0)}s ${e.s.map((x) => (x ? `${x.view}${x.viewChanging ? '*' : ''}/${x.lastExecuted}/${x.pendingRequests}` : '-')).join(' ')}`;
  writeFileSync(
    join(root, 'timeline.txt'),
    `# view(*: changing)/lastExecuted/pending per node\n${timeline.map(line).join('\n')}\n`,
  );
  // The longest time the group executed nothing while it held requests (no node's lastExecuted grew).
  best = { from: 0, to: 0 };
  let since = 0;
  let top = -1;
  timeline.forEach((e, i) => {
    const m = Math.max(-1, ...e.s.map((x) => x?.lastExecuted ?? -1));
    // Only while some node holds requests: an idle group (after the load) executes nothing either.
    const busy = e.s.some((x) => (x?.pendingRequests ?? 0) > 0);
    if (m > top || !busy) {
      top = Math.max(top, m);
      since = i;
    } else if (e.t - timeline[since].t > best.to - best.from) best = { from: timeline[since].t, to: e.t };
  });
  // Seconds each node spent alone in a view change (a higher view than every other node answering, while
  // they went on in theirs): the group then orders with the other three only, and one more fault stalls it.
  const alone = [0, 1, 2, 3].map(
    (i) =>
      timeline.filter((e) => {
        const me = e.s[i];
        const others = e.s.filter((x, j) => j !== i && x) as Status[];
        return (
          me?.viewChanging && others.length >= 2 && others.every((x) => x.view < me.view && !x.viewChanging)
        );
      }).length,
  );
  log(`seconds each node spent alone in a view change (sampled): ${alone.join(', ')}`);
  const around = timeline.filter((e) => e.t >= best.from - 3000 && e.t <= best.to + 3000);
  log(
    `longest time the group executed nothing: ${((best.to - best.from) / 1000).toFixed(0)} s${best.to > best.from ? ` (from +${((best.from - t0) / 1000).toFixed(0)} s):\n    ${around.map(line).join('\n    ')}` : ''}`,
  );
  const ss = await Promise.all([0, 1, 2, 3].map((i) => status(i, 3000)));
  const inFlight = [...openCalls.values()];
  check(
    '0 nothing left open',
    inFlight.filter((c) => c.status === undefined).length === 0 &&
      ss.every((x) => !x?.longPolls && !x?.waitingForCertificates),
    `SDK calls without an answer: ${
      inFlight
        .filter((c) => c.status === undefined)
        .map(
          (c) => `${c.method} ${c.url.replace(/^http:\/\/127\.0\.0\.1:/, ':')} (${Date.now() - c.since} ms)`,
        )
        .join(', ') || 'none'
    }; answered, body not read: ${inFlight.filter((c) => c.status !== undefined).length}; nodes' long polls ${ss.map((x) => x?.longPolls ?? '?').join(', ')}, certificate waiters ${ss.map((x) => x?.waitingForCertificates ?? '?').join(', ')}`,
  );
}
await stopAll();
log('nodes stopped');
{
  const slow = stopTimes.filter((t) => t.killed || t.ms > 5000);
  check(
    '0 nodes stop on SIGTERM',
    slow.length === 0,
    `${stopTimes.map((t) => `node ${t.node} ${t.ms} ms${t.killed ? ' (SIGKILLed)' : ''}`).join(', ')}${slow.map((t) => `\n    node ${t.node} sockets after 5 s:\n${t.sockets}`).join('')}`,
  );
}

// 1. certificates verify offline.
const certified = sent.filter((s) => s.cert);
{
  const cache = new SignatureCache();
  let bad = 0;
  const examples: string[] = [];
  for (const s of certified) {
    const cert = decode(Certificate, s.cert!);
    const v = verifyCertificate(cert, g.genesis, { cache });
    if (!v.ok || hex(cert.outcome.requestId) !== s.id) {
      bad++;
      if (examples.length < 3)
        examples.push(`${s.id.slice(0, 12)}: ${v.ok ? 'another request id' : v.message}`);
    }
  }
  check(
    '1 certificates verify',
    bad === 0,
    `${certified.length - bad} of ${certified.length} verify offline against the genesis${bad ? `; ${examples.join('; ')}` : ''}`,
  );
}

// Read the ledgers (read-only).
interface LedgerView {
  batches: Map<number, string>;
  receipts: Map<number, string>;
  /** request id → [seq, outcome bytes hex, fee, client hex] */
  outcomes: Map<string, { seq: number; outcome: string; fee: number; client: string }[]>;
  /** The transactions (deposits, fee changes, withdrawals) each batch carried, by seq. */
  txs: Map<number, Tx[]>;
  /** The node of every counted vote of each batch's outcomes, by seq (what the walk credits the fees to). */
  votesAt: Map<number, number[]>;
  /** Each batch's outcomes' client (hex) and fee, by seq (what the walk charges the balances). */
  chargesAt: Map<number, { client: string; fee: number }[]>;
  /** Each ordered transaction's fate as the ledger keeps it (the txs table), by hex id. */
  fates: Map<string, { seq: number; applied: boolean }>;
  evidence: { node: number; kind: string }[];
  lastSeq: number;
}
const ledgerPath = (id: number) => join(groupDir, 'data', `node-${id}`, 'ledger.sqlite');
const ledgers: LedgerView[] = [];
for (let id = 0; id < N; id++) {
  const db = new Database(ledgerPath(id), { readonly: true });
  try {
    const v: LedgerView = {
      batches: new Map(),
      receipts: new Map(),
      outcomes: new Map(),
      txs: new Map(),
      votesAt: new Map(),
      chargesAt: new Map(),
      fates: new Map(),
      evidence: [],
      lastSeq: 0,
    };
    for (const r of db.prepare('SELECT seq, digest, batch FROM batches').all() as {
      seq: number;
      digest: Buffer;
      batch: Buffer;
    }[]) {
      v.batches.set(r.seq, hex(r.digest));
      const txs = decode(Batch, new Uint8Array(r.batch)).txs;
      if (txs.length > 0) v.txs.set(r.seq, txs);
      v.lastSeq = Math.max(v.lastSeq, r.seq);
    }
    for (const r of db.prepare('SELECT seq, hash FROM receipts').all() as { seq: number; hash: Buffer }[])
      v.receipts.set(r.seq, hex(r.hash));
    for (const r of db.prepare('SELECT seq, outcomes FROM outcomes').all() as {
      seq: number;
      outcomes: Buffer;
    }[]) {
      const voters: number[] = [];
      v.votesAt.set(r.seq, voters);
      const charges: { client: string; fee: number }[] = [];
      v.chargesAt.set(r.seq, charges);
      for (const b of decode(StoredOutcomes, new Uint8Array(r.outcomes))) {
        const o = decode(Outcome, b);
        for (const vote of o.votes) voters.push(vote.node);
        charges.push({ client: hex(o.client), fee: o.fee });
        const id = hex(o.requestId);
        const list = v.outcomes.get(id) ?? [];
        list.push({ seq: r.seq, outcome: hex(b), fee: o.fee, client: hex(o.client) });
        v.outcomes.set(id, list);
      }
    }
    for (const r of db.prepare('SELECT id, seq, applied FROM txs').all() as {
      id: Buffer;
      seq: number;
      applied: number;
    }[])
      v.fates.set(hex(r.id), { seq: r.seq, applied: r.applied === 1 });
    v.evidence = db.prepare('SELECT node, kind FROM evidence').all() as { node: number; kind: string }[];
    ledgers.push(v);
  } finally {
    db.close();
  }
}

// 2. one outcome per request id, everywhere.
{
  const seen = new Map<string, Set<string>>();
  let twice = 0;
  for (const v of ledgers) {
    for (const [id, list] of v.outcomes) {
      if (list.length > 1) twice++;
      const set = seen.get(id) ?? new Set();
      for (const o of list) set.add(`${o.seq}:${o.outcome}`);
      seen.set(id, set);
    }
  }
  const conflicting = [...seen].filter(([, s]) => s.size > 1);
  let certMismatch = 0;
  for (const s of certified) {
    const cert = decode(Certificate, s.cert!);
    const mine = `${cert.receipt.seq}:${hex(encode(Outcome, cert.outcome))}`;
    const there = seen.get(s.id);
    if (there && !there.has(mine)) certMismatch++;
  }
  check(
    '2 one outcome per request',
    conflicting.length === 0 && twice === 0 && certMismatch === 0,
    `${seen.size} request ids across the 4 ledgers: ${conflicting.length} with differing (seq, outcome), ${twice} executed twice in one ledger, ${certMismatch} certificates whose (seq, outcome) differs from the ledgers'`,
  );
}

// 3. the ledgers agree, each verifies, nothing certified is lost.
{
  let pairs = 0;
  const problems: string[] = [];
  for (let a = 0; a < N; a++)
    for (let b = a + 1; b < N; b++)
      for (const [seq, d] of ledgers[a].batches) {
        const e = ledgers[b].batches.get(seq);
        if (e === undefined) continue;
        pairs++;
        if (e !== d) problems.push(`seq ${seq}: batch digest differs between nodes ${a} and ${b}`);
        const ra = ledgers[a].receipts.get(seq);
        const rb = ledgers[b].receipts.get(seq);
        if (ra !== rb) problems.push(`seq ${seq}: receipt differs between nodes ${a} and ${b}`);
      }
  const held = ledgers.map((v) => `node ${ledgers.indexOf(v)}: ${v.batches.size} batches up to ${v.lastSeq}`);
  check(
    '3a ledgers agree',
    problems.length === 0,
    `${pairs} (seq, node pair) compared (${held.join(', ')})${problems.length ? `; ${problems.slice(0, 5).join('; ')}` : ''}`,
  );
  for (let id = 0; id < N; id++) {
    const t = Date.now();
    const r = verifyLedgerFile(ledgerPath(id), g.genesis, { node: id });
    check(
      `3b ledger ${id} verifies`,
      r.ok,
      r.ok ? `${r.batches} batches (${Date.now() - t} ms)` : r.problems.slice(0, 5).join('; '),
    );
  }
  let lost = 0;
  const lostEx: string[] = [];
  for (const s of certified) {
    const seq = decode(Certificate, s.cert!).receipt.seq;
    for (let id = 0; id < N; id++) {
      const there = ledgers[id].outcomes.get(s.id);
      if (!there?.some((o) => o.seq === seq)) {
        lost++;
        if (lostEx.length < 5) lostEx.push(`${s.id.slice(0, 12)} (seq ${seq}) not in node ${id}'s ledger`);
      }
    }
  }
  check(
    '3c nothing certified lost',
    lost === 0,
    `${certified.length} certified requests looked up in 4 ledgers: ${lost} missing${lost ? `; ${lostEx.join('; ')}` : ''}`,
  );
  // The receipt a certificate carries is the one each ledger holds at its seq.
  let receiptMismatch = 0;
  for (const s of certified) {
    const c = decode(Certificate, s.cert!);
    const h = hex(receiptHashOf(c.receipt));
    for (const v of ledgers)
      if (v.receipts.has(c.receipt.seq) && v.receipts.get(c.receipt.seq) !== h) receiptMismatch++;
  }
  check('3d certificate receipts match the ledgers', receiptMismatch === 0, `${receiptMismatch} mismatches`);
}

// 4. no misbehaviour evidence.
const logs = Array.from({ length: N }, (_, i) =>
  existsSync(logFile(i)) ? readFileSync(logFile(i), 'utf8').split('\n') : [],
);
{
  const stored = ledgers.map((v, i) => `node ${i}: ${v.evidence.length}`);
  const lines = logs.flatMap((ls, i) =>
    ls
      .filter((l) => /misbehaviour evidence stored|bad signature/.test(l))
      .map((l) => `node ${i}: ${l.slice(0, 200)}`),
  );
  const total = ledgers.reduce((a, v) => a + v.evidence.length, 0);
  check(
    '4 no evidence',
    total === 0 && lines.length === 0,
    `evidence rows ${stored.join(', ')}; log lines ${lines.length}${lines.length ? `: ${lines.slice(0, 3).join(' | ')}` : ''}`,
  );
}

// The money, independently of LedgerState: the ledgers' batches walked in seq order (3a: they agree where
// two hold a seq), a deposit applying at the next serial, a fee change at its node's next version, a
// withdrawal using its node's next serial and taking its amount if that is 1 to what the node earned up to
// the batch before less what it withdrew, a refund or transfer using its client's next serial (one sequence
// for both) where the client has an account (the genesis's, a deposit's up to it, or a transfer's of an
// earlier batch); then the batch's counted votes credit their nodes the batch's fees and its outcomes charge
// their clients; then each refund and transfer that used its serial with an amount of 1 or more (a transfer:
// to another key), in batch order, takes its amount where that is at most the client's balance as the batch's
// requests and the ones before it left it, a transfer crediting its payee (opening its account unless
// MAX_ACCOUNTS_BY_TRANSFER accounts are held) (every tx the soak signs has a good signature). Every account's
// balance is followed from the genesis balances.
const walk = (() => {
  const txsAt = new Map<number, Tx[]>();
  const votesAt = new Map<number, number[]>();
  const chargesAt = new Map<number, { client: string; fee: number }[]>();
  const held = new Set<number>();
  for (const v of ledgers) {
    for (const seq of v.batches.keys()) held.add(seq);
    for (const [seq, txs] of v.txs) if (!txsAt.has(seq)) txsAt.set(seq, txs);
    for (const [seq, voters] of v.votesAt) if (!votesAt.has(seq)) votesAt.set(seq, voters);
    for (const [seq, charges] of v.chargesAt) if (!chargesAt.has(seq)) chargesAt.set(seq, charges);
  }
  const top = Math.max(0, ...held);
  const gaps = Array.from({ length: top }, (_, i) => i + 1).filter((seq) => !held.has(seq));
  let deposits = 0;
  let minted = 0;
  const fees = g.genesis.nodes.map((x) => x.fee);
  const versions = g.genesis.nodes.map(() => 0);
  const credits = new Map<string, number>();
  const applied = new Set<string>();
  /** tx id → the seqs of the batches that carried it */
  const ordered = new Map<string, number[]>();
  const serialsCredited = new Map<number, number>();
  const withdrawals = g.genesis.nodes.map(() => 0);
  const withdrawn = g.genesis.nodes.map(() => 0);
  const earned = g.genesis.nodes.map(() => 0);
  /** Per node: serial → how many withdrawals used it, and how many of those applied. */
  const serialsUsed = g.genesis.nodes.map(() => new Map<number, { used: number; applied: number }>());
  /** Per node: the amounts of the withdrawals that applied. */
  const withdrawnAmounts = g.genesis.nodes.map(() => [] as number[]);
  /** Every account's balance (hex key), from the genesis's. */
  const balances = new Map(g.genesis.balances.map((b) => [hex(b.client), b.amount]));
  /** Per client (hex): its last serial used, of the sequence its refunds and transfers share. */
  const refundSerials = new Map<string, number>();
  /** Per client (hex): serial → how many refunds and transfers used it, and how many of those applied. */
  const refundSerialsUsed = new Map<string, Map<number, { used: number; applied: number }>>();
  /** Per client (hex): the amounts of the refunds that applied. */
  const refundedAmounts = new Map<string, number[]>();
  let refunded = 0;
  /** Per payer (hex): the amounts of its transfers that applied; per payee (hex): the amounts it received. */
  const transferredOut = new Map<string, number[]>();
  const transferredIn = new Map<string, number[]>();
  /**
   * Each refund and transfer that used its serial with an amount of 1 or more (a transfer: to another key):
   * the balance it met (after its batch's requests and the ones before it) and whether it took its amount.
   */
  const spendsMet: {
    id: string;
    kind: 'refund' | 'transfer';
    seq: number;
    client: string;
    /** A transfer's payee (hex). */
    to?: string;
    amount: number;
    balance: number;
    took: boolean;
  }[] = [];
  /** Refunds and transfers that used no serial (not the next, or a key with no account then), by kind. */
  const spendsNoSerial = { refund: 0, transfer: 0 };
  /** Those that used their serial and moved nothing whatever the balance: a transfer to its payer itself, or 0. */
  const spendsInert = { refund: 0, transfer: 0 };
  /** Transfers that took nothing because they would have opened an account past MAX_ACCOUNTS_BY_TRANSFER. */
  let transfersPastAccounts = 0;
  /** The lowest balance any account reached after any batch (a negative one is a bug). */
  let lowestBalance = Number.POSITIVE_INFINITY;
  for (const seq of [...new Set([...txsAt.keys(), ...votesAt.keys()])].sort((a, b) => a - b)) {
    const spendsHere: {
      id: string;
      kind: 'refund' | 'transfer';
      client: string;
      to?: string;
      amount: number;
      use: { used: number; applied: number };
    }[] = [];
    for (const tx of txsAt.get(seq) ?? []) {
      const id = hex(txIdOf(tx));
      ordered.set(id, [...(ordered.get(id) ?? []), seq]);
      if (tx.kind === 'deposit' && tx.deposit.serial === deposits + 1) {
        deposits++;
        minted += tx.deposit.amount;
        const c = hex(tx.deposit.client);
        credits.set(c, (credits.get(c) ?? 0) + tx.deposit.amount);
        serialsCredited.set(tx.deposit.serial, (serialsCredited.get(tx.deposit.serial) ?? 0) + 1);
        balances.set(c, (balances.get(c) ?? 0) + tx.deposit.amount);
        applied.add(id);
      } else if (tx.kind === 'feeChange' && tx.change.version === versions[tx.change.node] + 1) {
        versions[tx.change.node] = tx.change.version;
        fees[tx.change.node] = tx.change.fee;
        applied.add(id);
      } else if (tx.kind === 'withdrawal' && tx.withdrawal.serial === withdrawals[tx.withdrawal.node] + 1) {
        const w = tx.withdrawal;
        withdrawals[w.node] = w.serial;
        const use = serialsUsed[w.node].get(w.serial) ?? { used: 0, applied: 0 };
        use.used++;
        serialsUsed[w.node].set(w.serial, use);
        if (w.amount >= 1 && w.amount <= earned[w.node] - withdrawn[w.node]) {
          withdrawn[w.node] += w.amount;
          withdrawnAmounts[w.node].push(w.amount);
          use.applied++;
          applied.add(id);
        }
      } else if (tx.kind === 'refund' || tx.kind === 'transfer') {
        // One sequence of serials for a client's refunds and transfers. A key has an account here when the
        // genesis, a deposit (of an earlier batch, or before it in this one: credited above) or a transfer of
        // an earlier batch opened it (a transfer pays after the requests: below).
        const rf = clientSpendOf(tx)!;
        const c = hex(rf.client);
        if (rf.serial !== (refundSerials.get(c) ?? 0) + 1 || !balances.has(c)) {
          spendsNoSerial[tx.kind]++;
          continue;
        }
        refundSerials.set(c, rf.serial);
        const used = refundSerialsUsed.get(c) ?? new Map<number, { used: number; applied: number }>();
        refundSerialsUsed.set(c, used);
        const use = used.get(rf.serial) ?? { used: 0, applied: 0 };
        use.used++;
        used.set(rf.serial, use);
        const to = tx.kind === 'transfer' ? hex(tx.transfer.to) : undefined;
        if (rf.amount >= 1 && to !== c)
          spendsHere.push({ id, kind: tx.kind, client: c, to, amount: rf.amount, use });
        else spendsInert[tx.kind]++;
      }
    }
    // The batch's requests are charged after its transactions, at the fees as of them.
    for (const node of votesAt.get(seq) ?? []) earned[node] += fees[node];
    for (const ch of chargesAt.get(seq) ?? [])
      balances.set(ch.client, (balances.get(ch.client) ?? 0) - ch.fee);
    // Then its refunds and transfers, in batch order, on the balances its requests left.
    for (const rf of spendsHere) {
      const balance = balances.get(rf.client) ?? 0;
      let took = rf.amount <= balance;
      if (took && rf.to !== undefined && !balances.has(rf.to) && balances.size >= MAX_ACCOUNTS_BY_TRANSFER) {
        took = false;
        transfersPastAccounts++;
      }
      spendsMet.push({
        id: rf.id,
        kind: rf.kind,
        seq,
        client: rf.client,
        to: rf.to,
        amount: rf.amount,
        balance,
        took,
      });
      if (!took) continue;
      balances.set(rf.client, balance - rf.amount);
      if (rf.to === undefined) {
        refunded += rf.amount;
        refundedAmounts.set(rf.client, [...(refundedAmounts.get(rf.client) ?? []), rf.amount]);
      } else {
        balances.set(rf.to, (balances.get(rf.to) ?? 0) + rf.amount);
        transferredOut.set(rf.client, [...(transferredOut.get(rf.client) ?? []), rf.amount]);
        transferredIn.set(rf.to, [...(transferredIn.get(rf.to) ?? []), rf.amount]);
      }
      rf.use.applied++;
      applied.add(rf.id);
    }
    for (const b of balances.values()) lowestBalance = Math.min(lowestBalance, b);
  }
  return {
    top,
    gaps,
    deposits,
    minted,
    fees,
    versions,
    credits,
    applied,
    ordered,
    serialsCredited,
    withdrawals,
    withdrawn,
    earned,
    serialsUsed,
    withdrawnAmounts,
    balances,
    refundSerials,
    refundSerialsUsed,
    refundedAmounts,
    refunded,
    refundsMet: spendsMet.filter((m) => m.kind === 'refund'),
    transfersMet: spendsMet.filter((m) => m.kind === 'transfer'),
    spendsNoSerial,
    spendsInert,
    transfersPastAccounts,
    transferredOut,
    transferredIn,
    lowestBalance,
  };
})();

// Each node's state: its ledger replayed (SqliteLedger.open), on a copy so the file stays as it was.
interface Replayed {
  balance: Map<string, number>;
  exists: Map<string, boolean>;
  deposits: number;
  minted: number;
  fees: number[];
  feeVersions: number[];
  totalMoney: number;
  genesisMoney: number;
  withdrawals: number[];
  withdrawn: number[];
  earned: number[];
  paidOut: number;
  /** The money refunds took out, all clients together. */
  refunded: number;
  /** Each watched account's last refund or transfer serial applied (one sequence). */
  refundSerials: Map<string, number>;
  /** Every account (hex key → balance). */
  accounts: Map<string, number>;
}
const freshHex = freshPayees.map((p) => hex(p.key.publicKey));
const accountsWatched = [loadClientHex, ...newcomers.map((nc) => hex(nc.key.publicKey)), ...freshHex];
const replayed: Replayed[] = [];
for (let id = 0; id < N; id++) {
  const copyDir = mkdtempSync(join(root, `replay-${id}-`));
  for (const suffix of ['', '-wal', '-shm', '.boot'])
    if (existsSync(ledgerPath(id) + suffix))
      copyFileSync(ledgerPath(id) + suffix, join(copyDir, `ledger.sqlite${suffix}`));
  const l = SqliteLedger.open(join(copyDir, 'ledger.sqlite'), g.genesis, { durability: 'prepared' });
  const s = l.state;
  replayed.push({
    balance: new Map(accountsWatched.map((c) => [c, s.balanceOf(Buffer.from(c, 'hex'))])),
    exists: new Map(accountsWatched.map((c) => [c, s.balances.has(c)])),
    deposits: s.deposits,
    minted: s.minted,
    fees: [...s.fees],
    feeVersions: [...s.feeVersions],
    totalMoney: s.totalMoney(),
    genesisMoney: s.genesisMoney,
    withdrawals: [...s.withdrawals],
    withdrawn: [...s.withdrawn],
    earned: s.stats.map((x) => x.earned),
    paidOut: s.paidOut(),
    refunded: s.refunded,
    refundSerials: new Map(accountsWatched.map((c) => [c, s.refundSerialOf(Buffer.from(c, 'hex'))])),
    accounts: new Map([...s.balances].map(([k, b]) => [k, b.amount])),
  });
  l.close();
}

// 5. balances.
{
  const client = g.clientKey().publicKey;
  const clientHex = hex(client);
  const genesisBalance = g.genesis.balances.find((b) => hex(b.client) === clientHex)!.amount;
  const deposited = walk.credits.get(clientHex) ?? 0;
  const refundedTo = (walk.refundedAmounts.get(clientHex) ?? []).reduce((a, x) => a + x, 0);
  const paid = (walk.transferredOut.get(clientHex) ?? []).reduce((a, x) => a + x, 0);
  const got = (walk.transferredIn.get(clientHex) ?? []).reduce((a, x) => a + x, 0);
  const certFees = certified.reduce((a, s) => a + decode(Certificate, s.cert!).outcome.fee, 0);
  const receivedIds = new Set(certified.map((s) => s.id));
  const lines: string[] = [];
  let ok = true;
  for (let id = 0; id < N; id++) {
    const balance = replayed[id].balance.get(clientHex)!;
    let ledgerFees = 0;
    let notReceived = 0;
    let notReceivedFees = 0;
    for (const [rid, list] of ledgers[id].outcomes) {
      if (list[0].client !== clientHex) continue;
      ledgerFees += list[0].fee;
      if (!receivedIds.has(rid)) {
        notReceived++;
        notReceivedFees += list[0].fee;
      }
    }
    const expect = genesisBalance + deposited - ledgerFees - refundedTo - paid + got;
    const good = balance === expect && ledgerFees === certFees + notReceivedFees;
    ok &&= good;
    lines.push(
      `node ${id}: balance ${balance} = ${genesisBalance} + ${deposited} (deposits applied) − ${ledgerFees} (fees executed) − ${refundedTo} (refunds applied) − ${paid} (transfers paid) + ${got} (transfers received) ${balance === expect ? 'yes' : 'NO'}; = certificates received ${certFees} + ${notReceived} certified requests without a certificate at the client ${notReceivedFees}: ${ledgerFees === certFees + notReceivedFees ? 'yes' : 'NO'}`,
    );
  }
  check('5 balances', ok, lines.join('\n    '));
}

// 8. the money: deposits, fee changes, withdrawals, refunds and transfers.
{
  const deps = txsSent.filter((t) => t.kind === 'deposit');
  const feeTxs = txsSent.filter((t) => t.kind === 'feeChange');
  const wds = txsSent.filter((t) => t.kind === 'withdrawal');
  const overWds = wds.filter((t) => t.over);
  const rfs = txsSent.filter((t) => t.kind === 'refund');
  const overRfs = rfs.filter((t) => t.over);
  const tfs = txsSent.filter((t) => t.kind === 'transfer');
  const overTfs = tfs.filter((t) => t.over);
  const selfTfs = tfs.filter((t) => t.self);
  const nameOf = new Map([
    [loadClientHex, 'load client'],
    ...newcomers.map((nc) => [hex(nc.key.publicKey), nc.name] as [string, string]),
    ...freshPayees.map((p) => [hex(p.key.publicKey), p.name] as [string, string]),
  ]);
  const sum = (xs: number[] | undefined) => (xs ?? []).reduce((a, x) => a + x, 0);
  const refundedOf = (c: string) => sum(walk.refundedAmounts.get(c));
  const paidOf = (c: string) => sum(walk.transferredOut.get(c));
  const receivedOf = (c: string) => sum(walk.transferredIn.get(c));
  const transferred = [...walk.transferredOut.values()].reduce((a, xs) => a + sum(xs), 0);
  const fate = (list: TxSent[]) => {
    const took = list.filter((t) => t.answer === '202').length;
    const applied = list.filter((t) => walk.applied.has(t.txId)).length;
    const noEffect = list.filter((t) => walk.ordered.has(t.txId) && !walk.applied.has(t.txId)).length;
    const never = list.filter((t) => !walk.ordered.has(t.txId)).length;
    const refusedBy = new Map<string, number>();
    for (const t of list) if (t.answer !== '202') refusedBy.set(t.answer, (refusedBy.get(t.answer) ?? 0) + 1);
    const refused = [...refusedBy].map(([a, c]) => `${c}× ${a}`);
    return `${list.length} submitted (${took} taken${refused.length ? `; refused: ${refused.join(', ')}` : ''}), ${applied} applied, ${noEffect} ordered without effect (superseded or replayed), ${never} never ordered`;
  };
  log(`money: deposits ${fate(deps)}; fee changes ${fate(feeTxs)}`);
  log(
    `money: withdrawals ${fate(wds)}; of them ${wds.filter((t) => t.rival).length} rivals, ${overWds.length} over payable (${fate(overWds)})`,
  );
  log(
    `money: refunds ${fate(rfs)}; of them ${rfs.filter((t) => t.rival).length} rivals, ${overRfs.length} over refundable (${fate(overRfs)}); in the walk ${walk.refundsMet.length} used their serial, ${walk.refundsMet.filter((m) => !m.took).length} of them over the balance at their batch (took nothing), ${walk.spendsNoSerial.refund} used none`,
  );
  log(
    `money: transfers ${fate(tfs)}; of them ${tfs.filter((t) => t.rival).length} rivals (and ${rfs.filter((t) => t.ofTransfer).length} refunds rivals of a transfer), ${overTfs.length} over refundable (${fate(overTfs)}), ${selfTfs.length} to the payer itself (${fate(selfTfs)}); to ${freshPayees.length} fresh keys, ${freshHex.filter((c) => walk.balances.has(c)).length} of them given an account; in the walk ${walk.transfersMet.length} used their serial, ${walk.transfersMet.filter((m) => !m.took).length} of them over the balance at their batch (took nothing), ${walk.spendsInert.transfer} to the payer itself, ${walk.spendsNoSerial.transfer} used none; transferred ${transferred}`,
  );
  log(
    `money: the walk of the batches: ${walk.deposits} deposits applied, minted ${walk.minted}, fees ${walk.fees.join('/')} (versions ${walk.versions.join('/')}), withdrawals ${walk.withdrawals.join('/')}, withdrawn ${walk.withdrawn.join('/')}, earned ${walk.earned.join('/')}, refunded ${walk.refunded}, transferred ${transferred}, accounts ${walk.balances.size}${walk.gaps.length ? `; batches no ledger holds: ${walk.gaps.length} (first ${walk.gaps[0]})` : ''}`,
  );
  // 8a: every node's replayed state agrees with the others' and with the walk.
  const key = (r: Replayed) =>
    JSON.stringify([
      r.deposits,
      r.minted,
      r.fees,
      r.feeVersions,
      [...r.balance],
      [...r.exists],
      r.withdrawals,
      r.withdrawn,
      r.earned,
      r.paidOut,
      r.refunded,
      [...r.refundSerials],
      [...r.accounts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    ]);
  const keys = replayed.map(key);
  // Every account of the ledger is the walk's, with its balance, and the walk has no other.
  const accountsDiffer = (r: Replayed) => {
    const out: string[] = [];
    for (const [c, b] of r.accounts)
      if (walk.balances.get(c) !== b)
        out.push(
          `${nameOf.get(c) ?? c.slice(0, 12)} ${b} (the walk ${walk.balances.get(c) ?? 'no account'})`,
        );
    for (const [c, b] of walk.balances)
      if (!r.accounts.has(c)) out.push(`${nameOf.get(c) ?? c.slice(0, 12)} no account (the walk ${b})`);
    return out;
  };
  const differ = replayed.map(accountsDiffer);
  const walkOk = replayed.map(
    (r) =>
      r.deposits === walk.deposits &&
      r.minted === walk.minted &&
      r.fees.join() === walk.fees.join() &&
      r.feeVersions.join() === walk.versions.join() &&
      r.withdrawals.join() === walk.withdrawals.join() &&
      r.withdrawn.join() === walk.withdrawn.join() &&
      r.earned.join() === walk.earned.join() &&
      r.refunded === walk.refunded &&
      accountsWatched.every(
        (c) =>
          r.balance.get(c) === (walk.balances.get(c) ?? 0) &&
          r.refundSerials.get(c) === (walk.refundSerials.get(c) ?? 0),
      ) &&
      accountsDiffer(r).length === 0,
  );
  check(
    '8a money ledgers agree',
    keys.every((k) => k === keys[0]) && walkOk.every(Boolean) && walk.gaps.length === 0,
    replayed
      .map(
        (r, i) =>
          `node ${i}: deposits ${r.deposits}, minted ${r.minted}, fees ${r.fees.join('/')} (versions ${r.feeVersions.join('/')}), balances ${accountsWatched
            .slice(0, 3)
            .map((c) => r.balance.get(c))
            .join(
              ' / ',
            )} (load client / newcomers), ${r.accounts.size} accounts (${differ[i].length ? `differing from the walk: ${differ[i].slice(0, 5).join(', ')}` : "each the walk's, with its balance"}), withdrawals ${r.withdrawals.join('/')}, withdrawn ${r.withdrawn.join('/')}, earned ${r.earned.join('/')}, refunded ${r.refunded}, refund serials ${accountsWatched
            .slice(0, 3)
            .map((c) => r.refundSerials.get(c))
            .join(' / ')}; as the walk: ${walkOk[i] ? 'yes' : 'NO'}`,
      )
      .join('\n    ') +
      `\n    the walk: balances ${accountsWatched
        .slice(0, 3)
        .map((c) => walk.balances.get(c) ?? 0)
        .join(' / ')}, refund serials ${accountsWatched
        .slice(0, 3)
        .map((c) => walk.refundSerials.get(c) ?? 0)
        .join(' / ')}, ${walk.balances.size} accounts`,
  );
  // 8b: minted is the sum of the distinct deposits that applied, each serial credited once.
  // Distinct: a deposit signed twice alike (same serial, account and amount) is one tx id.
  const appliedDeps = [
    ...new Map(deps.filter((t) => walk.applied.has(t.txId)).map((t) => [t.txId, t])).values(),
  ];
  const appliedSum = appliedDeps.reduce((a, t) => a + t.amount!, 0);
  const serials = appliedDeps.map((t) => t.serial!);
  const twice = [...walk.serialsCredited].filter(([, c]) => c > 1).map(([s]) => s);
  const foreign =
    walk.applied.size -
    appliedDeps.length -
    new Set(feeTxs.filter((t) => walk.applied.has(t.txId)).map((t) => t.txId)).size -
    new Set(wds.filter((t) => walk.applied.has(t.txId)).map((t) => t.txId)).size -
    new Set(rfs.filter((t) => walk.applied.has(t.txId)).map((t) => t.txId)).size -
    new Set(tfs.filter((t) => walk.applied.has(t.txId)).map((t) => t.txId)).size;
  const contiguous =
    serials.length === walk.deposits && [...serials].sort((a, b) => a - b).every((s, i) => s === i + 1);
  check(
    '8b minted = distinct deposits applied',
    replayed.every((r) => r.minted === appliedSum) && twice.length === 0 && foreign === 0 && contiguous,
    `${appliedDeps.length} deposits applied (serials 1–${walk.deposits}${contiguous ? ', each once' : `: NOT each once: ${serials.join(',')}`}) sum ${appliedSum}; minted per node ${replayed.map((r) => r.minted).join(', ')}; serials credited twice: ${twice.length ? twice.join(',') : 'none'}; applied txs the soak did not submit: ${foreign}`,
  );
  // 8c: each newcomer's balance is its deposits minus the fees of its requests executed and its refunds,
  // minus the transfers it paid plus those it received, and those fees are the fees its certificates name
  // plus those of its requests certified without a certificate at it.
  const lines: string[] = [];
  let ok = true;
  for (const nc of newcomers) {
    const c = hex(nc.key.publicKey);
    const deposited = walk.credits.get(c) ?? 0;
    const refundedTo = refundedOf(c);
    const paid = paidOf(c);
    const got = receivedOf(c);
    const opened = deposited > 0 || (walk.transferredIn.get(c) ?? []).length > 0;
    const expect = (fees: number) => deposited - fees - refundedTo - paid + got;
    const ncCertified = nc.sent.filter((s) => s.cert);
    const certFees = ncCertified.reduce((a, s) => a + decode(Certificate, s.cert!).outcome.fee, 0);
    const received = new Set(ncCertified.map((s) => s.id));
    for (let id = 0; id < N; id++) {
      let fees = 0;
      let notReceivedFees = 0;
      let executed = 0;
      for (const [rid, list] of ledgers[id].outcomes)
        if (list[0].client === c) {
          executed++;
          fees += list[0].fee;
          if (!received.has(rid)) notReceivedFees += list[0].fee;
        }
      const balance = replayed[id].balance.get(c)!;
      const good =
        balance === expect(fees) &&
        fees === certFees + notReceivedFees &&
        replayed[id].exists.get(c) === opened;
      ok &&= good;
      if (id === 0 || !good)
        lines.push(
          `${nc.name} at node ${id}: balance ${balance} = deposits ${deposited} − fees of ${executed} requests executed ${fees} − refunds applied ${refundedTo} − transfers paid ${paid} + transfers received ${got} ${balance === expect(fees) ? 'yes' : 'NO'}; = certificates' fees ${certFees} (${ncCertified.length} of ${nc.sent.length} sent) + without a certificate ${notReceivedFees}: ${fees === certFees + notReceivedFees ? 'yes' : 'NO'}; account ${replayed[id].exists.get(c) ? 'exists' : 'absent'} (${opened ? 'a deposit or transfer to it applied' : 'none to it applied'})`,
        );
    }
  }
  check('8c newcomers funded by deposits and transfers', ok, lines.join('\n    '));
  const ncFailed = newcomers.flatMap((nc) =>
    nc.sent
      .filter((s) => s.error)
      .map((s) => `${nc.name}: ${s.error!.code} ${s.error!.message.slice(0, 160)}`),
  );
  check(
    "8d newcomers' requests",
    ncFailed.every((l) => l.includes(': OVERLOADED ')),
    `${newcomers.map((nc) => `${nc.name} sent ${nc.sent.length}, certified ${nc.sent.filter((s) => s.cert).length}`).join('; ')}; failed ${ncFailed.length} (only OVERLOADED passes)${ncFailed.length ? `:\n    ${ncFailed.slice(0, 5).join('\n    ')}` : ''}`,
  );
  const walkPaidOut = walk.withdrawn.reduce((a, w) => a + w, 0);
  // The walk's own money: its balances plus what each node may still withdraw.
  const walkTotal =
    [...walk.balances.values()].reduce((a, b) => a + b, 0) +
    walk.earned.reduce((a, e, i) => a + e - walk.withdrawn[i], 0);
  const genesisMoney = g.genesis.balances.reduce((a, b) => a + b.amount, 0);
  const walkMoneyOk = walkTotal === genesisMoney + walk.minted - walkPaidOut - walk.refunded;
  const moneyOk = (r: Replayed) =>
    r.totalMoney === r.genesisMoney + r.minted - r.paidOut - r.refunded &&
    r.paidOut === walkPaidOut &&
    r.refunded === walk.refunded;
  check(
    '8e total money = genesis + minted − paidOut − refunded',
    replayed.every(moneyOk) && walkMoneyOk,
    replayed
      .map(
        (r, i) =>
          `node ${i}: ${r.totalMoney} = ${r.genesisMoney} + ${r.minted} − ${r.paidOut} − ${r.refunded} ${moneyOk(r) ? 'yes' : 'NO'}`,
      )
      .join(', ') +
      `; the walk: ${walkTotal} = ${genesisMoney} + ${walk.minted} − ${walkPaidOut} (withdrawn, all nodes) − ${walk.refunded} (refunded) ${walkMoneyOk ? 'yes' : 'NO'}; transfers moved ${transferred} between accounts`,
  );
  // 8f: each node's withdrawal serials used once each, applied at most once, withdrawn = the applied amounts.
  {
    const lines: string[] = [];
    let ok = true;
    const byId = new Map(wds.map((t) => [t.txId, t]));
    for (let node = 0; node < N; node++) {
      const used = walk.serialsUsed[node];
      const serials = [...used.keys()].sort((a, b) => a - b);
      const eachOnce =
        serials.length === walk.withdrawals[node] &&
        serials.every((s, i) => s === i + 1 && used.get(s)!.used === 1 && used.get(s)!.applied <= 1);
      const sum = walk.withdrawnAmounts[node].reduce((a, x) => a + x, 0);
      // The applied withdrawals of this node the soak submitted (distinct tx ids), with the amounts it signed.
      const mine = [...byId.values()].filter((t) => t.node === node && walk.applied.has(t.txId));
      const mineSum = mine.reduce((a, t) => a + t.amount!, 0);
      const mineSerials = mine.map((t) => t.serial!);
      const distinct = new Set(mineSerials).size === mineSerials.length;
      const ledgersOk = replayed.every((r) => r.withdrawn[node] === sum);
      const good =
        eachOnce &&
        sum === walk.withdrawn[node] &&
        mine.length === walk.withdrawnAmounts[node].length &&
        mineSum === sum &&
        distinct &&
        ledgersOk;
      ok &&= good;
      lines.push(
        `node ${node}: serials 1–${walk.withdrawals[node]} ${eachOnce ? 'each used once' : 'NOT each used once'}, ${mine.length} applied (the soak's: ${distinct ? 'distinct serials' : 'A SERIAL TWICE'}) sum ${mineSum} = walk's withdrawn ${walk.withdrawn[node]} ${mineSum === sum && sum === walk.withdrawn[node] ? 'yes' : 'NO'}; ledgers' withdrawn ${replayed.map((r) => r.withdrawn[node]).join('/')} ${ledgersOk ? 'yes' : 'NO'}`,
      );
    }
    check('8f withdrawals each serial once, withdrawn = applied', ok, lines.join('\n    '));
  }
  // 8g: no node withdrew more than it earned.
  {
    const ok = [...replayed.map((r) => ({ withdrawn: r.withdrawn, earned: r.earned })), walk].every((x) =>
      x.withdrawn.every((w, i) => w <= x.earned[i]),
    );
    check(
      '8g withdrawn ≤ earned',
      ok,
      `walk: ${walk.withdrawn.map((w, i) => `node ${i} ${w} ≤ ${walk.earned[i]}`).join(', ')}; ledgers: ${replayed.map((r) => r.withdrawn.map((w, i) => `${w}≤${r.earned[i]}`).join(' ')).join(' | ')}`,
    );
  }
  // 8h: every withdrawal of more than payable refused by the node it went to (or lost with a node going down).
  {
    const answers = new Map<string, number>();
    for (const t of overWds) answers.set(t.answer, (answers.get(t.answer) ?? 0) + 1);
    const bad = overWds.filter(
      (t) => t.answer !== '409 TX_WITHDRAWAL_TOO_LARGE' && !t.answer.startsWith('fetch: '),
    );
    const applied = overWds.filter((t) => walk.applied.has(t.txId));
    check(
      '8h over-payable withdrawals refused',
      bad.length === 0 && applied.length === 0,
      `${overWds.length} submitted: ${[...answers].map(([a, c]) => `${c}× ${a}`).join(', ') || 'none'}; applied ${applied.length}${bad.length ? `; not refused: ${bad.map((t) => `node ${t.node} serial ${t.serial} ${t.amount} via ${t.via}: ${t.answer}`).join('; ')}` : ''}`,
    );
  }
  // 8i: each client's serials (its refunds and transfers share them) used once each, applied at most once
  // (whichever kind), refunded = the applied refunds' amounts.
  {
    const lines: string[] = [];
    let ok = true;
    const byId = new Map(rfs.map((t) => [t.txId, t]));
    const clients = new Set([...walk.refundSerialsUsed.keys(), ...rfs.map((t) => t.client!)]);
    let sumAll = 0;
    for (const c of clients) {
      const used = walk.refundSerialsUsed.get(c) ?? new Map<number, { used: number; applied: number }>();
      const serials = [...used.keys()].sort((a, b) => a - b);
      const last = walk.refundSerials.get(c) ?? 0;
      const eachOnce =
        serials.length === last &&
        serials.every((s, i) => s === i + 1 && used.get(s)!.used === 1 && used.get(s)!.applied <= 1);
      const sum = refundedOf(c);
      sumAll += sum;
      // The applied refunds of this client the soak submitted (distinct tx ids), with the amounts it signed.
      const mine = [...byId.values()].filter((t) => t.client === c && walk.applied.has(t.txId));
      const mineSum = mine.reduce((a, t) => a + t.amount!, 0);
      const mineSerials = mine.map((t) => t.serial!);
      const distinct = new Set(mineSerials).size === mineSerials.length;
      const good =
        eachOnce && mine.length === (walk.refundedAmounts.get(c) ?? []).length && mineSum === sum && distinct;
      ok &&= good;
      lines.push(
        `${nameOf.get(c) ?? c.slice(0, 12)}: serials 1–${last} (refunds and transfers) ${eachOnce ? 'each used once, applied at most once' : 'NOT each used once, applied at most once'}, ${mine.length} refunds applied (the soak's: ${distinct ? 'distinct serials' : 'A SERIAL TWICE'}) sum ${mineSum} = the walk's ${sum} ${mineSum === sum ? 'yes' : 'NO'}`,
      );
    }
    const ledgersOk = replayed.every((r) => r.refunded === sumAll) && sumAll === walk.refunded;
    ok &&= ledgersOk;
    lines.push(
      `refunded: the applied amounts ${sumAll}, the walk ${walk.refunded}, the ledgers ${replayed.map((r) => r.refunded).join('/')} ${ledgersOk ? 'yes' : 'NO'}`,
    );
    check('8i refunds each serial once, refunded = applied', ok, lines.join('\n    '));
  }
  // 8j: no refund took more than the balance its batch's requests left, and each ledger kept every refund's
  // fate as the walk decided it (the txs table: applied, at the batch that applied it).
  {
    const over = walk.refundsMet.filter((m) => m.took && m.amount > m.balance);
    const mismatches: string[] = [];
    let compared = 0;
    const refundIds = new Set([...walk.ordered.keys()].filter((id) => rfs.some((t) => t.txId === id)));
    for (const id of refundIds) {
      const seqs = walk.ordered.get(id)!;
      const met = walk.refundsMet.find((m) => m.id === id && m.took);
      ledgers.forEach((v, node) => {
        // Only a ledger that holds every batch carrying it (not one that skipped some by a snapshot).
        if (!seqs.every((q) => v.batches.has(q))) return;
        compared++;
        const f = v.fates.get(id);
        const want = met ? `applied at ${met.seq}` : 'no effect';
        const got = f ? (f.applied ? `applied at ${f.seq}` : 'no effect') : 'no fate';
        if (want !== got)
          mismatches.push(`${id.slice(0, 12)} at node ${node}: the walk ${want}, the ledger ${got}`);
      });
    }
    const tookNothing = walk.refundsMet.filter((m) => !m.took);
    check(
      '8j no refund over the balance at its batch',
      over.length === 0 && mismatches.length === 0 && walk.lowestBalance >= 0,
      `${walk.refundsMet.length} refunds used their serial: ${walk.refundsMet.length - tookNothing.length} took their amount within the balance after their batch's requests, ${tookNothing.length} over it took nothing${tookNothing.length ? ` (${tookNothing.map((m) => `${m.amount} > ${m.balance} at ${m.seq}`).join(', ')})` : ''}; taken over it: ${over.length}; lowest balance after a batch ${walk.lowestBalance}; ledgers' fates compared ${compared}, differing from the walk ${mismatches.length}${mismatches.length ? `: ${mismatches.slice(0, 5).join('; ')}` : ''}`,
    );
  }
  // 8k: every refund of more than refundable refused by the node it went to (or lost with a node going down).
  {
    const answers = new Map<string, number>();
    for (const t of overRfs) answers.set(t.answer, (answers.get(t.answer) ?? 0) + 1);
    const bad = overRfs.filter(
      (t) => t.answer !== '409 TX_REFUND_TOO_LARGE' && !t.answer.startsWith('fetch: '),
    );
    const applied = overRfs.filter((t) => walk.applied.has(t.txId));
    check(
      '8k over-refundable refunds refused',
      bad.length === 0 && applied.length === 0,
      `${overRfs.length} submitted: ${[...answers].map(([a, c]) => `${c}× ${a}`).join(', ') || 'none'}; applied ${applied.length}${bad.length ? `; not refused: ${bad.map((t) => `${t.who} serial ${t.serial} ${t.amount} via ${t.via}: ${t.answer}`).join('; ')}` : ''}`,
    );
  }
  // 8l: every transfer that applied is one the soak submitted (payer, payee and amount as signed); no client's
  // serial applied twice across its refunds and transfers; each client paid what the walk says; all payees
  // together received what all payers paid.
  {
    const byId = new Map(tfs.map((t) => [t.txId, t]));
    const took = walk.transfersMet.filter((m) => m.took);
    const notMine = took.filter((m) => {
      const t = byId.get(m.id);
      return !t || t.client !== m.client || t.to !== m.to || t.amount !== m.amount;
    });
    const spendsApplied = [...new Map([...rfs, ...tfs].map((t) => [t.txId, t])).values()].filter((t) =>
      walk.applied.has(t.txId),
    );
    const lines: string[] = [];
    let ok = notMine.length === 0;
    const payers = new Set([...walk.transferredOut.keys(), ...tfs.map((t) => t.client!)]);
    for (const c of payers) {
      const mine = spendsApplied.filter((t) => t.client === c);
      const serials = mine.map((t) => t.serial!);
      const distinct = new Set(serials).size === serials.length;
      const mineTfs = mine.filter((t) => t.kind === 'transfer');
      const mineSum = mineTfs.reduce((a, t) => a + t.amount!, 0);
      const good =
        distinct && mineSum === paidOf(c) && mineTfs.length === (walk.transferredOut.get(c) ?? []).length;
      ok &&= good;
      lines.push(
        `${nameOf.get(c) ?? c.slice(0, 12)}: ${mineTfs.length} transfers applied (with its refunds applied: ${distinct ? 'distinct serials' : 'A SERIAL TWICE'}) paying ${mineSum} = the walk's ${paidOf(c)} ${mineSum === paidOf(c) ? 'yes' : 'NO'}`,
      );
    }
    const received = [...walk.transferredIn.values()].reduce((a, xs) => a + sum(xs), 0);
    const payees = new Map<string, number>();
    for (const t of tfs)
      if (walk.applied.has(t.txId)) payees.set(t.to!, (payees.get(t.to!) ?? 0) + t.amount!);
    const payeesOk =
      [...payees].every(([c, x]) => receivedOf(c) === x) && payees.size === walk.transferredIn.size;
    ok &&= received === transferred && payeesOk;
    lines.push(
      `received by ${walk.transferredIn.size} payees ${received} = paid ${transferred} ${received === transferred ? 'yes' : 'NO'}; each payee's the soak's applied transfers to it ${payeesOk ? 'yes' : 'NO'}; applied transfers the soak did not submit as signed: ${notMine.length}`,
    );
    check('8l transfers applied as submitted, paid = received', ok, lines.join('\n    '));
  }
  // 8m: no transfer moved more than its payer's balance after its batch's requests (and the refunds and
  // transfers before it); each fresh payee holds on every node what the transfers to it brought, its
  // account there exactly when one applied; every ledger kept each transfer's fate as the walk decided it.
  {
    const over = walk.transfersMet.filter((m) => m.took && m.amount > m.balance);
    const tookNothing = walk.transfersMet.filter((m) => !m.took);
    const freshBad: string[] = [];
    for (const c of freshHex)
      replayed.forEach((r, node) => {
        const got = receivedOf(c);
        const opened = (walk.transferredIn.get(c) ?? []).length > 0;
        if (r.balance.get(c) !== got || r.exists.get(c) !== opened)
          freshBad.push(
            `${nameOf.get(c)} at node ${node}: ${r.balance.get(c)} (${r.exists.get(c) ? 'account' : 'no account'}), received ${got}`,
          );
      });
    const mismatches: string[] = [];
    let compared = 0;
    const ids = new Set([...walk.ordered.keys()].filter((id) => tfs.some((t) => t.txId === id)));
    for (const id of ids) {
      const seqs = walk.ordered.get(id)!;
      const met = walk.transfersMet.find((m) => m.id === id && m.took);
      ledgers.forEach((v, node) => {
        // Only a ledger that holds every batch carrying it (not one that skipped some by a snapshot).
        if (!seqs.every((q) => v.batches.has(q))) return;
        compared++;
        const f = v.fates.get(id);
        const want = met ? `applied at ${met.seq}` : 'no effect';
        const got = f ? (f.applied ? `applied at ${f.seq}` : 'no effect') : 'no fate';
        if (want !== got)
          mismatches.push(`${id.slice(0, 12)} at node ${node}: the walk ${want}, the ledger ${got}`);
      });
    }
    const opened = freshHex.filter((c) => (walk.transferredIn.get(c) ?? []).length > 0).length;
    check(
      "8m no transfer over the balance at its batch, payees credited, ledgers' fates",
      over.length === 0 &&
        freshBad.length === 0 &&
        mismatches.length === 0 &&
        walk.lowestBalance >= 0 &&
        walk.transfersPastAccounts === 0,
      `${walk.transfersMet.length} transfers used their serial (to another key): ${walk.transfersMet.length - tookNothing.length} moved their amount within the balance after their batch's requests, ${tookNothing.length} over it moved nothing${tookNothing.length ? ` (${tookNothing.map((m) => `${m.amount} > ${m.balance} at ${m.seq}`).join(', ')})` : ''}; moved over it: ${over.length}; past MAX_ACCOUNTS_BY_TRANSFER: ${walk.transfersPastAccounts}; lowest balance after a batch ${walk.lowestBalance}; ${freshHex.length} fresh payees, ${opened} given an account, each holding what it received on every node: ${freshBad.length === 0 ? 'yes' : `NO: ${freshBad.slice(0, 5).join('; ')}`}; ledgers' fates compared ${compared}, differing from the walk ${mismatches.length}${mismatches.length ? `: ${mismatches.slice(0, 5).join('; ')}` : ''}`,
    );
  }
  // 8n: every transfer over refundable or to the payer itself refused by the node it went to with its code
  // (or lost with a node going down), none applied.
  {
    const want = (t: TxSent) => (t.over ? '409 TX_TRANSFER_TOO_LARGE' : '400 TX_TRANSFER_TO_SELF');
    const odd = [...overTfs, ...selfTfs];
    const answers = (list: TxSent[]) => {
      const m = new Map<string, number>();
      for (const t of list) m.set(t.answer, (m.get(t.answer) ?? 0) + 1);
      return [...m].map(([a, c]) => `${c}× ${a}`).join(', ') || 'none';
    };
    const bad = odd.filter((t) => t.answer !== want(t) && !t.answer.startsWith('fetch: '));
    const applied = odd.filter((t) => walk.applied.has(t.txId));
    check(
      '8n over-refundable and to-self transfers refused',
      bad.length === 0 && applied.length === 0,
      `over refundable ${overTfs.length} submitted: ${answers(overTfs)}; to the payer itself ${selfTfs.length} submitted: ${answers(selfTfs)}; applied ${applied.length}${bad.length ? `; not refused so: ${bad.map((t) => `${t.who} serial ${t.serial} ${t.amount} to ${t.toWho} via ${t.via}: ${t.answer}`).join('; ')}` : ''}`,
    );
  }
}

// 6. node logs.
{
  const found: string[] = [];
  let errors = 0;
  const warnCounts = new Map<string, number>();
  logs.forEach((ls, i) => {
    for (const l of ls) {
      if (l.trim() === '') continue;
      let level = 0;
      let msg = l;
      try {
        const j = JSON.parse(l) as {
          level?: number;
          msg?: string;
          code?: string;
          err?: { message?: string };
        };
        level = j.level ?? 0;
        msg = `${j.msg ?? ''}${j.code ? ` [${j.code}]` : ''}${j.err?.message ? `: ${j.err.message}` : ''}`;
      } catch {
        if (/uncaught|unhandled|^\s+at |Error:/i.test(l)) {
          errors++;
          if (found.length < 10) found.push(`node ${i}: ${l.slice(0, 240)}`);
        }
        continue;
      }
      if (level >= 50) {
        errors++;
        if (found.length < 10) found.push(`node ${i}: level ${level} ${msg.slice(0, 240)}`);
      } else if (level === 40)
        warnCounts.set(msg.slice(0, 120), (warnCounts.get(msg.slice(0, 120)) ?? 0) + 1);
    }
  });
  const warns = [...warnCounts].sort((a, b) => b[1] - a[1]).map(([m, c]) => `${c}× ${m}`);
  check(
    '6 node logs',
    errors === 0,
    `${errors} error/fatal/uncaught lines${found.length ? `:\n    ${found.join('\n    ')}` : ''}\n    warnings: ${warns.slice(0, 12).join('\n              ') || 'none'}`,
  );
}

// 7. client failures.
{
  const failed = sent.filter((s) => s.error);
  const byCode = new Map<string, number>();
  for (const s of failed) byCode.set(s.error!.code, (byCode.get(s.error!.code) ?? 0) + 1);
  const downAt = (node: number, t: number) => down.some((d) => d.node === node && d.from <= t && t <= d.to);
  const onlyDown = sent.filter((s) => s.sentTo.every((n) => downAt(n, s.t0)));
  const onlyDownOk = onlyDown.filter((s) => s.cert);
  const lat = certified.map((s) => s.t1! - s.t0).sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
  const inLedgers = failed.filter((s) => ledgers.some((v) => v.outcomes.has(s.id))).length;
  check(
    '7 client failures',
    // The SDK hedges past a dead node: a failure is a finding, reported with its cause. OVERLOADED is the
    // one expected kind: every node asked turned the request away because the group executed nothing
    // for a while (the longest such time is printed above), longer than the SDK's overloadRetry kept
    // resending it within the call's time.
    failed.every((s) => s.error!.code === 'OVERLOADED'),
    `${sent.length} requests, ${certified.length} certified, ${failed.length} failed (only OVERLOADED passes; the longest time the group executed nothing: ${((best.to - best.from) / 1000).toFixed(0)} s; ${[...byCode].map(([c, n]) => `${c} ${n}`).join(', ') || 'none'}; ${inLedgers} of them executed anyway)${
      failed.length
        ? `\n    e.g. ${failed
            .slice(0, 3)
            .map(
              (s) =>
                `to [${s.sentTo}] at +${((s.t0 - sent[0].t0) / 1000).toFixed(1)} s: ${s.error!.message.slice(0, 300)}`,
            )
            .join('\n    e.g. ')}`
        : ''
    }\n    sent only to nodes down at the time: ${onlyDown.length}, certified ${onlyDownOk.length} (served by ${[...new Set(onlyDownOk.map((s) => s.servedBy))].join(', ') || '-'})\n    latency of certified requests: p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${lat.at(-1) ?? 0} ms`,
  );
}

const crashes = faultsDone.filter((f) => f.kind === 'crash');
log(
  `faults done: ${crashes.length} crashes (${crashes.filter((f) => f.primary).length} of the primary), ${faultsDone.length - crashes.length} stalls; restarts caught up in ${crashes.map((f) => f.caughtUpMs ?? 'never').join(', ')} ms`,
);
{
  const count = (kind: TxSent['kind']) => {
    const list = txsSent.filter((t) => t.kind === kind);
    return `${list.length} submitted, ${list.filter((t) => walk.applied.has(t.txId)).length} applied, ${list.filter((t) => t.answer !== '202').length} refused`;
  };
  const over = txsSent.filter((t) => t.over && t.kind === 'withdrawal');
  const overRf = txsSent.filter((t) => t.over && t.kind === 'refund');
  log(
    `money: deposits ${count('deposit')}; fee changes ${count('feeChange')}; withdrawals ${count('withdrawal')} (${over.length} over payable, ${over.filter((t) => t.answer === '409 TX_WITHDRAWAL_TOO_LARGE').length} of them refused TX_WITHDRAWAL_TOO_LARGE); withdrawn ${walk.withdrawn.join('/')} of earned ${walk.earned.join('/')}; refunds ${count('refund')} (${overRf.length} over refundable, ${overRf.filter((t) => t.answer === '409 TX_REFUND_TOO_LARGE').length} of them refused TX_REFUND_TOO_LARGE; ${walk.refundsMet.filter((m) => !m.took).length} ordered over the balance); refunded ${walk.refunded}`,
  );
  const tfs = txsSent.filter((t) => t.kind === 'transfer');
  const refusedBy = new Map<string, number>();
  for (const t of tfs) if (t.answer !== '202') refusedBy.set(t.answer, (refusedBy.get(t.answer) ?? 0) + 1);
  log(
    `money: transfers ${tfs.length} submitted, ${tfs.filter((t) => walk.applied.has(t.txId)).length} applied, ${tfs.filter((t) => walk.ordered.has(t.txId) && !walk.applied.has(t.txId)).length} ordered without effect, refused ${[...refusedBy].map(([a, c]) => `${c}× ${a}`).join(', ') || 'none'}; moved ${[...walk.transferredOut.values()].reduce((a, xs) => a + xs.reduce((b, x) => b + x, 0), 0)}, ${freshPayees.filter((p) => walk.transferredIn.has(hex(p.key.publicKey))).length} of ${freshPayees.length} fresh keys given an account`,
  );
}
const failedChecks = checks.filter((c) => !c.ok);
log(
  `seed ${SEED}: ${checks.length - failedChecks.length} of ${checks.length} checks passed${failedChecks.length ? `; FAILED: ${failedChecks.map((c) => c.name).join(', ')}` : ''}`,
);
if (failedChecks.length > 0 || KEEP) log(`run folder kept: ${root}`);
else rmSync(root, { recursive: true, force: true });
process.exit(failedChecks.length > 0 ? 1 : 0);
