/**
 * A node that restarts while requests it voted on are still waiting must not sign a second, different
 * result for any of them (PROTOCOL.md, "Durability and restarts": a restarted node never signs a message
 * conflicting with one it signed before). Inference is not bit-exact across inference-batch compositions,
 * and a model may be nondeterministic, so inferring such a request again can give another score; its peers
 * still hold the first RESULTS and would record that pair as double-vote evidence against an honest node.
 *
 * Four real hosts (real SQLite files, stand-in models) on an in-memory wire; node 3's model answers a
 * little differently in each session, as a real model may.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import type { ReplicaConfig } from '../../src/consensus/replica.ts';
import type { ModelBackend } from '../../src/inference/backend.ts';
import { standInResult } from '../../src/inference/standin.ts';
import type { Durability } from '../../src/ledger/sqlite.ts';
import { NodeHost, type Wire } from '../../src/node/host.ts';
import { startStandIn } from '../../src/node/standin-backend.ts';
import {
  type Certificate,
  decodeMessage,
  encode,
  hex,
  Result as ResultCodec,
  resultsDigestOf,
  uint,
} from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { standInRequest } from './standin-request.ts';

const dir = mkdtempSync(join(tmpdir(), 'dropbear-restart-results-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Node `id`'s stand-in, whose top score moves by `session` millionths: the same model, another run. */
function drifting(id: number, session: number): ModelBackend {
  const base = startStandIn(id);
  return {
    ...base,
    async classify(input) {
      const r = standInResult(id, input, { disagreement: 0 });
      if (r.kind !== 'class') return r;
      return { kind: 'class', top: r.top.map((t, k) => (k === 0 ? { ...t, score: t.score + session } : t)) };
    },
  };
}

/** What every node sent as RESULTS: the sender, and per request id (hex) the result's canonical bytes (hex). */
type Sent = { from: number; results: Map<string, string> }[];

function wireOf(id: number, handlers: Map<number, (f: number, b: Uint8Array) => void>, sent: Sent): Wire {
  const note = (bytes: Uint8Array) => {
    const m = decodeMessage(bytes);
    if (m.kind !== 'results') return;
    const results = new Map<string, string>();
    for (const e of m.signed.batch.entries) results.set(hex(e.requestId), hex(encode(ResultCodec, e.result)));
    sent.push({ from: id, results });
  };
  const deliver = (to: number, bytes: Uint8Array) => setImmediate(() => handlers.get(to)?.(id, bytes));
  return {
    send: (to, bytes) => {
      note(bytes);
      deliver(to, bytes);
    },
    broadcast: (bytes) => {
      note(bytes);
      for (let to = 0; to < 4; to++) if (to !== id) deliver(to, bytes);
    },
    onFrame: (h) => {
      handlers.set(id, h);
    },
    reportBad: () => {},
  };
}

// Private replica state, read for the assertions only.
type Votes = { votes: Map<string, Map<number, unknown>> };
const holdsVote = (h: NodeHost, idHex: string, node: number) =>
  (h.replica as unknown as Votes).votes.get(idHex)?.has(node) === true;

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * Four hosts with proposals held back (no primary proposes while `maxInFlightBatches` is 0, and no view
 * change comes), three requests voted on by every node; then node 3 stops (cleanly, or as a crash of its
 * process: its ledger is dropped without close) and comes back on the same file with a model that answers
 * slightly differently, and the client sends it the same requests again (as a client that sends to every
 * node does when it retries).
 */
async function restartWhilePending(
  name: string,
  durability: Durability,
  crash: boolean,
  /** Run on node 3's ledger file while the node is down (a power loss: what it may have lost). */
  whileDown?: (path: string) => void,
  /** Node 3 comes back with `rejoin` (`dropbear node --rejoin`: its ledger was lost). */
  rejoin = false,
) {
  const group = makeGroup(4, 1, 7);
  const handlers = new Map<number, (f: number, b: Uint8Array) => void>();
  const sent: Sent = [];
  const replica: Partial<ReplicaConfig> = {
    maxInFlightBatches: 0,
    viewChangeTimeoutMs: 60_000,
    retransmitMs: 20,
    checkpointInterval: 1,
  };
  const open = (id: number, session: number, rejoin = false) =>
    NodeHost.open({
      id,
      genesis: group.genesis,
      key: group.keys[id],
      ledgerPath: join(dir, `${name}-${id}.sqlite`),
      durability,
      rejoin,
      backends: [id === 3 ? drifting(3, session) : startStandIn(id)],
      wire: wireOf(id, handlers, sent),
      replica,
    });
  const hosts = [0, 1, 2, 3].map((id) => open(id, 1));
  for (const h of hosts) h.start();
  const reqs = [1, 2, 3].map((nonce) => standInRequest(group, hosts[0].replica.groupId, nonce));
  const ids = reqs.map((sr) => {
    const r = hosts[0].submit(sr);
    if (!r.ok) throw new Error(r.message);
    return hex(r.requestId);
  });
  await until('every node to hold every vote', () =>
    ids.every((id) => hosts.every((h) => [0, 1, 2, 3].every((n) => holdsVote(h, id, n)))),
  );
  // Node 3 goes down; what is sent to it meanwhile is lost.
  handlers.delete(3);
  if (crash) {
    hosts[3].stop();
    // A process crash: the file is left as it is, open, without the clean-close mark.
    (hosts[3].db as unknown as { db: { close(): void } }).db.close();
  } else hosts[3].close();
  whileDown?.(join(dir, `${name}-3.sqlite`));
  await sleep(10);
  hosts[3] = open(3, 2, rejoin);
  hosts[3].start();
  for (const sr of reqs) expect(hosts[3].submit(sr).ok).toBe(true);
  await sleep(300);
  return { group, hosts, ids, sent };
}

/** Every RESULTS node 3 sent names one result per request: it never signed two. */
function signedTwice(sent: Sent, ids: string[]): string[] {
  const seen = new Map<string, Set<string>>();
  for (const s of sent)
    if (s.from === 3)
      for (const [id, r] of s.results) {
        if (!ids.includes(id)) continue;
        const set = seen.get(id) ?? new Set();
        set.add(r);
        seen.set(id, set);
      }
  return [...seen].filter(([, set]) => set.size > 1).map(([id]) => id);
}

describe('a node whose machine crashed with its own RESULTS unsynced (prepared durability)', () => {
  it('votes on none of the requests it may have voted on before', async () => {
    const t0 = Date.now();
    const { group, hosts, ids, sent } = await restartWhilePending('lost', 'prepared', true, (path) => {
      // The power loss took the rows (committed to the operating system only), and the ledger's open after
      // the reboot logs a `forgotten` record with the time the boot began (test/ledger/sqlite.test.ts): this
      // test cannot reboot the machine, so it writes that record itself, as if the boot had just begun.
      const db = new Database(path);
      expect(db.prepare('DELETE FROM own_results').run().changes).toBeGreaterThan(0);
      db.prepare("INSERT INTO consensus_log (kind, body) VALUES ('forgotten', ?)").run(
        encode(uint, Date.now()),
      );
      db.close();
    });
    try {
      expect(hosts[3].replica.signFloorView).not.toBe(0);
      await expectForgetfulVotes({ group, hosts, ids, sent }, t0);
    } finally {
      for (const h of hosts) h.close();
    }
  });
});

describe('a node whose ledger was lost, started again with rejoin (`dropbear node --rejoin`)', () => {
  it('signs in no view the group used, votes on none of the requests it may have voted on, and the group certifies them', async () => {
    const t0 = Date.now();
    const { group, hosts, ids, sent } = await restartWhilePending(
      'rejoin',
      'full',
      false,
      (path) => {
        // The disk is replaced: the ledger and its sidecars are gone (the boot marker stays; without
        // rejoin that is LEDGER_LOST, test/ledger/files.test.ts).
        for (const s of ['', '-wal', '-shm']) rmSync(`${path}${s}`, { force: true });
      },
      true,
    );
    try {
      expect(hosts[3].db.created).toBe(true);
      // Before 2026-12-06 a node with a new ledger was a new node: it signed in view 0 again at once.
      // (Infinity until 2f + 1 peers have told it their views; then above the highest, the group's 0.)
      await until('node 3 to learn the group view', () => Number.isFinite(hosts[3].replica.signFloorView));
      expect(hosts[3].replica.signFloorView).toBe(1);
      expect(hosts[3].status()).toMatchObject({ signFloorView: 1 });
      await expectForgetfulVotes({ group, hosts, ids, sent }, t0);
      // It catches up on what the group executed meanwhile, by state transfer.
      await until(
        'node 3 to execute them',
        () => hosts[3].replica.lastExecuted === hosts[0].replica.lastExecuted,
      );
    } finally {
      for (const h of hosts) h.close();
    }
  });
});

/**
 * Node 3 came back forgetful (its own RESULTS lost, as of `t0` or later): it signed no second result,
 * nobody holds double-vote evidence against it, it holds no vote of its own for the requests, and it
 * votes again only on requests timestamped past the loss plus twice the clock skew bound
 * (test/consensus/own-results.test.ts). The group certifies them, with the vote node 3 sent before the
 * loss where a peer holds it.
 */
async function expectForgetfulVotes(
  { group, hosts, ids, sent }: Awaited<ReturnType<typeof restartWhilePending>>,
  t0: number,
): Promise<void> {
  expect(signedTwice(sent, ids)).toEqual([]);
  expect(doubleVotes(hosts)).toEqual([]);
  for (const id of ids) expect(holdsVote(hosts[3], id, 3)).toBe(false);
  const floor = hosts[3].replica.resultsFloor - 2 * group.genesis.params.maxClockSkewMs;
  expect(floor).toBeGreaterThanOrEqual(t0);
  expect(floor).toBeLessThanOrEqual(Date.now());
  (hosts[0].replica.cfg as ReplicaConfig).maxInFlightBatches = 64;
  hosts[0].step({ type: 'tick' });
  const certs = await Promise.all(ids.map((id) => hosts[0].waitCertificate(id, 5000)));
  expectFirstVotes(certs, sent);
}

/** Every certificate is there, and node 3's vote in it is the first result it sent for the request. */
function expectFirstVotes(certs: (Certificate | null)[], sent: Sent): void {
  for (const c of certs) {
    expect(c).not.toBeNull();
    const id = hex(c!.outcome.requestId);
    const vote = c!.outcome.votes.find((v) => v.node === 3);
    const first = sent.find((x) => x.from === 3 && x.results.has(id));
    expect(hex(encode(ResultCodec, vote!.result))).toBe(first!.results.get(id));
  }
}

const doubleVotes = (hosts: NodeHost[]) =>
  hosts
    .slice(0, 3)
    .flatMap((h) => h.replica.evidence.filter((e) => e.node === 3 && e.kind === 'double-vote'));

describe('a node restarted while requests it voted on are pending', () => {
  for (const [durability, crash] of [
    ['full', false],
    ['full', true],
    ['prepared', true],
    ['relaxed', false],
  ] as const)
    it(`signs no second result for them and is not reported for a double vote (${durability} durability, ${crash ? 'process crash' : 'clean stop'})`, async () => {
      const { hosts, ids, sent } = await restartWhilePending(`${durability}-${crash}`, durability, crash);
      try {
        expect(signedTwice(sent, ids)).toEqual([]);
        expect(doubleVotes(hosts)).toEqual([]);
        for (const h of hosts.slice(0, 3)) expect(h.db.evidence()).toEqual([]);
        // It still holds its vote for each of them, and the group certifies them with it once the primary
        // may propose again.
        for (const id of ids) expect(holdsVote(hosts[3], id, 3)).toBe(true);
        (hosts[0].replica.cfg as ReplicaConfig).maxInFlightBatches = 64;
        hosts[0].step({ type: 'tick' });
        const certs = await Promise.all(ids.map((id) => hosts[3].waitCertificate(id, 5000)));
        expectFirstVotes(certs, sent);
        // Once executed (and a checkpoint is stable), no node keeps its own RESULTS any more.
        await until('the own RESULTS to be dropped', () =>
          hosts.every((h) => h.db.ownResults().length === 0),
        );
      } finally {
        for (const h of hosts) h.close();
      }
    });
});

describe("a node's RESULTS leave only once their record is written", () => {
  for (const durability of ['full', 'prepared', 'relaxed'] as const)
    it(`${durability} durability: after the commit of the write that stores them${durability === 'full' ? ', and its fsync' : ''}`, async () => {
      const group = makeGroup(4, 1, 11);
      const handlers = new Map<number, (f: number, b: Uint8Array) => void>();
      type Ev = { node: number; ev: string; digest?: string; sync?: number };
      const log: Ev[] = [];
      let syncs = 0;
      const hosts = [0, 1, 2, 3].map((id) => {
        const wire = wireOf(id, handlers, []);
        const note = (bytes: Uint8Array) => {
          const m = decodeMessage(bytes);
          if (m.kind === 'results')
            log.push({ node: id, ev: 'send', digest: hex(resultsDigestOf(m.signed)) });
        };
        const h = NodeHost.open({
          id,
          genesis: group.genesis,
          key: group.keys[id],
          ledgerPath: join(dir, `order-${durability}-${id}.sqlite`),
          durability,
          backends: [startStandIn(id)],
          wire: {
            ...wire,
            send: (to, b) => {
              note(b);
              wire.send(to, b);
            },
            broadcast: (b) => {
              note(b);
              wire.broadcast(b);
            },
          },
          replica: { batchTimeoutMs: 1, voteWaitMs: 1 },
        });
        const save = h.db.saveOwnResults.bind(h.db);
        h.db.saveOwnResults = (d, s, n) => {
          log.push({ node: id, ev: 'save', digest: hex(d) });
          save(d, s, n);
        };
        const commit = h.db.commitGroupUnsynced.bind(h.db);
        h.db.commitGroupUnsynced = () => {
          if (h.db.inGroup) log.push({ node: id, ev: 'commit' });
          return commit();
        };
        const syncAsync = h.db.syncWalAsync.bind(h.db);
        h.db.syncWalAsync = (done) => {
          const sync = ++syncs;
          log.push({ node: id, ev: 'syncStart', sync });
          syncAsync((err) => {
            log.push({ node: id, ev: 'synced', sync });
            done(err);
          });
        };
        return h;
      });
      try {
        for (const h of hosts) h.start();
        const ids: string[] = [];
        for (let i = 0; i < 8; i++) {
          const r = hosts[i % 4].submit(standInRequest(group, hosts[0].replica.groupId, 100 + i));
          if (!r.ok) throw new Error(r.message);
          ids.push(hex(r.requestId));
          if (i % 2 === 1) await sleep(2);
        }
        const certs = await Promise.all(ids.map((id, i) => hosts[i % 4].waitCertificate(id, 10_000)));
        expect(certs.every((c) => c !== null)).toBe(true);
        let checked = 0;
        for (let node = 0; node < 4; node++) {
          const mine = log.filter((e) => e.node === node);
          mine.forEach((e, i) => {
            if (e.ev !== 'send') return;
            const before = mine.slice(0, i);
            const w = before.findIndex((b) => b.ev === 'save' && b.digest === e.digest);
            expect(w, `node ${node} sent RESULTS it had not stored`).toBeGreaterThanOrEqual(0);
            const c = before.findIndex((b, j) => j > w && b.ev === 'commit');
            expect(c, `node ${node} sent RESULTS before their write committed`).toBeGreaterThan(w);
            if (durability === 'full') {
              const started = before.filter((b, j) => j > c && b.ev === 'syncStart').map((b) => b.sync);
              expect(
                before.some((b) => b.ev === 'synced' && started.includes(b.sync)),
                `node ${node} sent RESULTS before their write was fsynced`,
              ).toBe(true);
            }
            checked++;
          });
        }
        expect(checked).toBeGreaterThanOrEqual(4);
        if (durability === 'relaxed') expect(syncs).toBe(0);
      } finally {
        for (const h of hosts) h.close();
      }
    });
});
