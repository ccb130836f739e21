/**
 * NodeHost's group commit (src/node/host.ts): the ledger writes of a turn of the event loop share one
 * transaction, and nothing the replica signed after a write leaves before that transaction is fsynced.
 * Four real hosts (real SQLite files, stand-in models) on an in-memory wire that records every frame.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { ReplicaConfig } from '../../src/consensus/replica.ts';
import type { ModelBackend } from '../../src/inference/backend.ts';
import { buildApi } from '../../src/node/api.ts';
import { type HostOptions, NodeHost, type Wire } from '../../src/node/host.ts';
import { startStandIn } from '../../src/node/standin-backend.ts';
import {
  DropbearError,
  decodeMessage,
  encodeMessage,
  hex,
  requestIdOf,
  SignedRequest,
  signRequest,
  toJson,
} from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { until } from './memory-wire.ts';
import { standInRequest as standInRequestFor } from './standin-request.ts';

type Event =
  | { node: number; ev: 'write'; what: string }
  | { node: number; ev: 'commit' }
  | { node: number; ev: 'syncStart'; sync: number }
  | { node: number; ev: 'synced'; sync: number }
  | {
      node: number;
      ev: 'send';
      kind: string;
      view?: number | null;
      seq?: number;
      results?: number;
      /** A FETCH's request ids (it may ask for results batches or stuck seqs instead). */
      requests?: string[];
    };

const dir = mkdtempSync(join(tmpdir(), 'dropbear-host-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Four hosts of `group` on recording wires (recordingWire), ledgers named `<name>-<id>.sqlite`: stand-in
 * models except where `backend` gives one.
 */
function recordedHosts(
  group: ReturnType<typeof makeGroup>,
  name: string,
  log: Event[],
  handlers: Map<number, (f: number, b: Uint8Array) => void>,
  o: Pick<HostOptions, 'replica' | 'onFatal'> & {
    backend?: (id: number) => ModelBackend | undefined;
    logger?: (id: number) => HostOptions['logger'];
  },
): NodeHost[] {
  return group.genesis.nodes.map((_, id) =>
    NodeHost.open({
      id,
      genesis: group.genesis,
      key: group.keys[id],
      ledgerPath: join(dir, `${name}-${id}.sqlite`),
      backends: [o.backend?.(id) ?? startStandIn(id)],
      wire: recordingWire(id, 4, log, handlers),
      replica: o.replica,
      onFatal: o.onFatal,
      logger: o.logger?.(id),
    }),
  );
}

function recordingWire(
  id: number,
  n: number,
  log: Event[],
  handlers: Map<number, (f: number, b: Uint8Array) => void>,
): Wire {
  const note = (bytes: Uint8Array) => {
    const m = decodeMessage(bytes) as {
      kind: string;
      view?: number | null;
      seq?: number;
      pp?: { view: number; seq: number };
      signed?: { batch: { entries: unknown[] } };
      requests?: unknown[];
    };
    const at = m.kind === 'prePrepare' ? m.pp : m;
    const results = m.kind === 'results' ? m.signed?.batch.entries.length : undefined;
    const requests = m.kind === 'fetch' ? (m.requests as Uint8Array[]).map((r) => hex(r)) : undefined;
    log.push({ node: id, ev: 'send', kind: m.kind, view: at?.view, seq: at?.seq, results, requests });
  };
  const deliver = (to: number, bytes: Uint8Array) => setImmediate(() => handlers.get(to)?.(id, bytes));
  return {
    send: (to, bytes) => {
      note(bytes);
      deliver(to, bytes);
    },
    broadcast: (bytes) => {
      note(bytes);
      for (let to = 0; to < n; to++) if (to !== id) deliver(to, bytes);
    },
    onFrame: (h) => {
      handlers.set(id, h);
    },
    reportBad: () => {},
  };
}

/**
 * Four hosts of `group` with the stand-in model on one recording wire, their ledgers named `name-<id>`;
 * `log` records what they send.
 */
function hostsOnWire(
  group: ReturnType<typeof makeGroup>,
  name: string,
  replica: Partial<ReplicaConfig>,
  log: Event[] = [],
): NodeHost[] {
  return recordedHosts(group, name, log, new Map(), { replica });
}

/** One host of `group` with the stand-in model on `wire` (default: one that carries nothing), ledger `name`. */
function loneHost(
  group: ReturnType<typeof makeGroup>,
  id: number,
  name: string,
  o: { wire?: Wire; replica?: Partial<ReplicaConfig> } = {},
): NodeHost {
  const deaf: Wire = { send() {}, broadcast() {}, onFrame() {}, reportBad() {} };
  return NodeHost.open({
    id,
    genesis: group.genesis,
    key: group.keys[id],
    ledgerPath: join(dir, `${name}.sqlite`),
    backends: [startStandIn(id)],
    wire: o.wire ?? deaf,
    replica: o.replica,
  });
}

/** A client request to the stand-in models, signed by the group's client. */
const standInRequest = (group: ReturnType<typeof makeGroup>, host: NodeHost, nonce: number): SignedRequest =>
  standInRequestFor(group, host.replica.groupId, nonce);

/**
 * Four hosts on a recording wire whose ledgers log every write (persist, execute, receipt signatures),
 * every group commit, and every fsync of the WAL: when it starts and when it calls back.
 */
function watchedGroup(
  seed: number,
  durability: 'full' | 'relaxed',
  replica: Partial<ReplicaConfig> = {},
  /** Extra time before each fsync of node `id` calls back (a slow disk). */
  syncDelayMs: (id: number) => number = () => 0,
) {
  const group = makeGroup(4, 1, seed);
  const log: Event[] = [];
  const handlers = new Map<number, (f: number, b: Uint8Array) => void>();
  let syncs = 0;
  const hosts = group.genesis.nodes.map((_, id) => {
    const h = NodeHost.open({
      id,
      genesis: group.genesis,
      key: group.keys[id],
      ledgerPath: join(dir, `${durability}-${seed}-node-${id}.sqlite`),
      durability,
      backends: [startStandIn(id)],
      wire: recordingWire(id, 4, log, handlers),
      replica: { batchTimeoutMs: 1, voteWaitMs: 1, ...replica },
    });
    const db = h.db as unknown as Record<string, (...a: unknown[]) => unknown>;
    // Every ledger write the host makes in a group (a group of own RESULTS alone is a commit too: with only
    // the first three counted, "commits <= writes" failed when such a group fell alone into a turn).
    for (const m of [
      'persist',
      'execute',
      'addReceiptSignatures',
      'saveOwnResults',
      'dropOwnResults',
      'saveEvidence',
      'commitGroupUnsynced',
    ] as const) {
      const orig = db[m].bind(h.db);
      db[m] = (...a: unknown[]) => {
        if (m === 'commitGroupUnsynced') {
          if (h.db.inGroup) log.push({ node: id, ev: 'commit' });
        } else
          log.push({
            node: id,
            ev: 'write',
            what:
              m === 'persist'
                ? `persist:${(a[0] as { kind: string; seq?: number }).kind}:${(a[0] as { seq?: number }).seq}`
                : m,
          });
        return orig(...a);
      };
    }
    const syncAsync = h.db.syncWalAsync.bind(h.db);
    h.db.syncWalAsync = (done) => {
      const sync = ++syncs;
      log.push({ node: id, ev: 'syncStart', sync });
      syncAsync((err) => {
        const finish = () => {
          log.push({ node: id, ev: 'synced', sync });
          done(err);
        };
        const delay = syncDelayMs(id);
        if (delay > 0) setTimeout(finish, delay);
        else finish();
      });
    };
    return h;
  });
  return { group, hosts, log, syncs: () => syncs };
}

/** Submits 12 stand-in requests across the four hosts and waits for every certificate. */
function certifyTwelve(w: ReturnType<typeof watchedGroup>): Promise<void> {
  return certifyMany(w, 12);
}

/** Submits `count` stand-in requests across the four hosts, three at a time, and waits for every certificate. */
async function certifyMany(w: ReturnType<typeof watchedGroup>, count: number): Promise<void> {
  const { group, hosts } = w;
  for (const h of hosts) h.start();
  const reqs = Array.from({ length: count }, (_, i) => standInRequest(group, hosts[0], i));
  const ids: string[] = [];
  for (const [i, sr] of reqs.entries()) {
    const r = hosts[i % 4].submit(sr);
    expect(r.ok).toBe(true);
    if (r.ok) ids.push(hex(r.requestId));
    if (i % 3 === 2) await new Promise((res) => setTimeout(res, 3));
  }
  const certs = await Promise.all(ids.map((id, i) => hosts[i % 4].waitCertificate(id, 10_000)));
  expect(certs.every((c) => c !== null)).toBe(true);
}

/** A prepared receipt signature (one with a view) says what a COMMIT says: it rests on the same record. */
const isPreparedReceipt = (e: Event) =>
  e.ev === 'send' && e.kind === 'receiptSig' && typeof e.view === 'number';

/**
 * For every PRE-PREPARE, PREPARE, COMMIT and prepared receipt signature a node sent: its persist (for the
 * signature, its COMMIT's) came before it and a group commit after that persist; returns, per message, the
 * events between that commit and the send.
 */
function afterCommit(
  log: Event[],
): { node: number; kind: string; seq?: number; since: Event[]; heldCommit: boolean }[] {
  const out: { node: number; kind: string; seq?: number; since: Event[]; heldCommit: boolean }[] = [];
  for (let node = 0; node < 4; node++) {
    const mine = log.filter((e) => e.node === node);
    mine.forEach((e, i) => {
      if (e.ev !== 'send') return;
      const prepared = isPreparedReceipt(e);
      if (!prepared && !['prePrepare', 'prepare', 'commit'].includes(e.kind)) return;
      const record = prepared ? 'commit' : e.kind;
      const before = mine.slice(0, i);
      const w = before.map((b) => (b.ev === 'write' ? b.what : '')).lastIndexOf(`persist:${record}:${e.seq}`);
      expect(w, `node ${node} sent ${e.kind} without persisting it`).toBeGreaterThanOrEqual(0);
      const c = before.findIndex((b, j) => j > w && b.ev === 'commit');
      expect(c, `node ${node} sent ${e.kind} ${e.seq} before its write committed`).toBeGreaterThan(w);
      // A COMMIT that follows this node's prepared receipt signature for the batch was held for it (receipt
      // commits: the signature stands for the COMMIT) and left at a retransmission round.
      const heldCommit =
        e.kind === 'commit' && before.some((b) => b.ev === 'send' && isPreparedReceipt(b) && b.seq === e.seq);
      out.push({
        node,
        kind: prepared ? 'preparedReceipt' : e.kind,
        seq: e.seq,
        since: before.slice(c + 1),
        heldCommit,
      });
    });
  }
  return out;
}

describe('NodeHost group commit', () => {
  it('sends no PRE-PREPARE, PREPARE, COMMIT or prepared receipt signature before the write that records it is fsynced', async () => {
    const w = watchedGroup(31, 'full');
    const { hosts, log } = w;
    try {
      await certifyTwelve(w);
      // For every signed phase message a node sent: the persist of that message came before it, a group
      // commit came after that persist, and an fsync of the WAL that started after that commit had called
      // back before the send.
      const sent = afterCommit(log);
      for (const m of sent) {
        const started = new Set(m.since.flatMap((b) => (b.ev === 'syncStart' ? [b.sync] : [])));
        const durable = m.since.some((b) => b.ev === 'synced' && started.has(b.sync));
        expect(durable, `node ${m.node} sent ${m.kind} ${m.seq} before its write was fsynced`).toBe(true);
      }
      const checked = sent.length;
      let overlapped = 0;
      for (let node = 0; node < 4; node++) {
        const mine = log.filter((e) => e.node === node);
        // The event loop ran on while the disk worked: events between a sync's start and its callback.
        mine.forEach((e, i) => {
          if (e.ev !== 'syncStart') return;
          const end = mine.findIndex((b) => b.ev === 'synced' && b.sync === e.sync);
          if (mine.slice(i + 1, end).some((b) => b.ev === 'write')) overlapped++;
        });
      }
      expect(overlapped).toBeGreaterThan(0);
      // Prepared receipt signatures were among them (12 requests sent a few at a time: some batches
      // prepare with every batch before them executed).
      expect(sent.filter((m) => m.kind === 'preparedReceipt').length).toBeGreaterThan(0);
      expect(checked).toBeGreaterThan(8);
      // The writes of a turn share a commit: fewer commits than writes at every node.
      for (let node = 0; node < 4; node++) {
        const writes = log.filter((e) => e.node === node && e.ev === 'write').length;
        const commits = log.filter((e) => e.node === node && e.ev === 'commit').length;
        const synced = log.filter((e) => e.node === node && e.ev === 'synced').length;
        expect(commits).toBeGreaterThan(0);
        expect(commits).toBeLessThanOrEqual(writes);
        expect(synced).toBeGreaterThan(0);
        expect(synced).toBeLessThanOrEqual(commits);
      }
    } finally {
      for (const h of hosts) h.close();
    }
  });

  it("holds a plain RECEIPT-SIG until the batch's prepared certificate is fsynced (a slow disk: the batch executes before its record is)", async () => {
    // Node 0's disk is slow: the others' COMMITs reach it while its own `commit` record is still being
    // fsynced, so it executes a batch (and signs its receipt plainly: without prepared receipts) first.
    const w = watchedGroup(32, 'full', { preparedReceipts: false }, (id) => (id === 0 ? 30 : 0));
    const { hosts, log } = w;
    try {
      await certifyMany(w, 24);
      // A plain RECEIPT-SIG says the batch committed here, this node's COMMIT among the quorum: its
      // `commit` record must be on disk first, or after a crash only f honest nodes hold the prepared
      // certificate and a NEW-VIEW with f faulty nodes' VIEW-CHANGEs can drop a certified batch. Only the
      // first one per seq (a retransmission leaves later).
      let plain = 0;
      const early: string[] = [];
      for (let node = 0; node < 4; node++) {
        const mine = log.filter((e) => e.node === node);
        const seen = new Set<number | undefined>();
        mine.forEach((e, i) => {
          if (e.ev !== 'send' || e.kind !== 'receiptSig' || isPreparedReceipt(e) || seen.has(e.seq)) return;
          seen.add(e.seq);
          plain++;
          const before = mine.slice(0, i);
          const record = before
            .map((b) => (b.ev === 'write' ? b.what : ''))
            .lastIndexOf(`persist:commit:${e.seq}`);
          if (record < 0) return; // committed by a quorum of others' receipts without a COMMIT of its own
          const c = before.findIndex((b, j) => j > record && b.ev === 'commit');
          const since = c > record ? before.slice(c + 1) : [];
          const started = new Set(since.flatMap((b) => (b.ev === 'syncStart' ? [b.sync] : [])));
          if (!since.some((b) => b.ev === 'synced' && started.has(b.sync)))
            early.push(`node ${node} seq ${e.seq}`);
        });
      }
      expect(plain).toBeGreaterThan(3);
      expect(early).toEqual([]);
    } finally {
      for (const h of hosts) h.close();
    }
  });
});

describe('NodeHost with relaxed durability', () => {
  it('sends each PRE-PREPARE, PREPARE and COMMIT once the write that records it has committed, with no fsync at all', async () => {
    // Retransmission rounds every 2 ms: COMMITs held for receipt commits then leave at one, as they do on a
    // loaded machine (CI failed this check on 2026-12-05 with such a COMMIT).
    const w = watchedGroup(32, 'relaxed', { retransmitMs: 2 });
    try {
      await certifyTwelve(w);
      const sent = afterCommit(w.log);
      expect(sent.length).toBeGreaterThan(8);
      expect(w.syncs()).toBe(0);
      // Not held for anything else either: each left in the turn of its commit, before the node's next write
      // (the first time: a retransmission leaves later).
      const first = new Set<string>();
      let checked = 0;
      for (const m of sent) {
        // A prepared receipt signature may be made turns after its COMMIT's record (a batch previewed once
        // the one ahead of it executed), so it is checked only for leaving after that record's commit.
        if (m.kind === 'preparedReceipt') continue;
        // A COMMIT held for a prepared receipt signature (receipt commits) leaves at the retransmission
        // round, turns after its record committed, when its slot is slow to execute (a loaded machine).
        if (m.heldCommit) continue;
        const k = `${m.node}:${m.kind}:${m.seq}`;
        if (first.has(k)) continue;
        first.add(k);
        checked++;
        expect(
          m.since.some((b) => b.ev === 'write'),
          `node ${m.node} held ${m.kind} ${m.seq} past a later write`,
        ).toBe(false);
      }
      expect(checked).toBeGreaterThan(8);
      for (const h of w.hosts) expect(h.status()).toMatchObject({ durability: 'relaxed', signFloorView: 0 });
    } finally {
      for (const h of w.hosts) h.close();
    }
  });
});

describe('admission control', () => {
  it('turns requests away with OVERLOADED once the queue holds more work than the group clears in time', async () => {
    const group = makeGroup(4, 1, 32);
    // The peers never hear from node 0: nothing executes, the execution rate stays 0.
    const host = loneHost(group, 0, 'admission');
    const app = buildApi(host, { maxQueueSeconds: 1, minPending: 5 });
    let nonce = 1000;
    const signed = () => toJson(SignedRequest, standInRequest(group, host, nonce++));
    const post = (payload: object) => app.inject({ method: 'POST', url: '/v1/requests?wait=0', payload });
    try {
      // Into an empty queue one POST gets in whole, even over minPending.
      const first = await post({ requests: Array.from({ length: 8 }, signed) });
      expect(first.statusCode).toBe(202);
      expect(host.replica.pendingRequests).toBe(8);
      // Behind a backlog and with no execution rate to clear it: refused, with a reason and Retry-After.
      const next = await post({ request: signed() });
      expect(next.statusCode).toBe(503);
      expect(next.headers['retry-after']).toBe('1');
      const body = next.json() as { error: { code: string; message: string } };
      expect(body.error.code).toBe('OVERLOADED');
      expect(body.error.message).toMatch(/1 s of work at the group's recent rate \(0\/s\)/);
      expect(host.replica.pendingRequests).toBe(8);
      expect(host.status().executedPerSecond).toBe(0);
    } finally {
      await app.close();
      host.close();
    }
  });

  it("does not count requests a peer forwarded that expired unordered: a faulty peer cannot fill the node's queue with them", async () => {
    const group = makeGroup(4, 1, 34);
    // A faulty node 3 forwards a colluding client's requests 1 s before their expiry: this node takes them
    // (by its clock they are still good), its peers would not, so they can never be ordered or charged.
    let deliver: (from: number, bytes: Uint8Array) => void = () => {};
    const wire: Wire = { send() {}, broadcast() {}, onFrame: (h) => (deliver = h), reportBad() {} };
    const host = loneHost(group, 0, 'expired-held', {
      wire,
      replica: { maxExpiredHeld: 6, retransmitMs: 20 },
    });
    const app = buildApi(host, { maxQueueSeconds: 1, minPending: 5 });
    const { expiryMs } = group.genesis.params;
    try {
      host.start();
      const planted = Array.from({ length: 8 }, (_, i) => {
        const sr = standInRequest(group, host, 2000 + i);
        const request = { ...sr.request, timestamp: Date.now() - expiryMs + 1000 };
        return signRequest(request, sr.input, group.client);
      });
      // Taken as the frame comes. (With 150 ms to go and a 50 ms sleep before this look, it failed 1 run in
      // 8 on a loaded machine, 2026-12-07: by then they had expired and been swept.)
      deliver(3, encodeMessage({ kind: 'forward', requests: planted }));
      expect(host.replica.pendingRequests).toBe(8);
      // Past their expiry and a sweep (polled for, not slept for): held (a proposal already under way could
      // still name them), but not pending; beyond maxExpiredHeld the oldest are forgotten at once.
      const deadline = Date.now() + 30_000;
      while (host.replica.pendingRequests > 0 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(host.status()).toMatchObject({ pendingRequests: 0, expiredHeld: 6, expiredUnordered: 2 });
      // Counted as pending they made this node refuse every client (8 > minPending 5, no execution rate).
      const res = await app.inject({
        method: 'POST',
        url: '/v1/requests?wait=0',
        payload: { request: toJson(SignedRequest, standInRequest(group, host, 3000)) },
      });
      expect(res.statusCode).toBe(202);
      expect(host.replica.pendingRequests).toBe(1);
    } finally {
      await app.close();
      host.close();
    }
  });
});

describe('requests the client sent to every node', () => {
  it('reach the nodes the client missed as fetches of the requests their votes name, never as forwards', async () => {
    const group = makeGroup(4, 1, 33);
    const log: Event[] = [];
    // The orphan fetch waits one retransmission period. Nothing here may depend on the machine's speed
    // (this failed 7 runs in 10 on a loaded machine, 2026-12-07): a node whose own vote is not in by half
    // the view-change timeout after the request came forwards it (the fallback, lateForwardMs), so that
    // is 30 s here, past anything this test waits for; no view change either; and the primary waits for
    // every vote however long they take (a vote later than voteWaitMs is left out of the certificate).
    const hosts = hostsOnWire(
      group,
      'sent-to-all',
      { retransmitMs: 50, viewChangeTimeoutMs: 60_000, voteWaitMs: 60_000, batchTimeoutMs: 1 },
      log,
    );
    try {
      for (const h of hosts) h.start();
      const reqs = Array.from({ length: 6 }, (_, i) => standInRequest(group, hosts[0], 100 + i));
      // The client says it sent to all, but reached only nodes 1 and 2: node 0 (the primary) and node 3
      // learn of the requests from the votes of 1 and 2.
      const ids: string[] = [];
      for (const sr of reqs)
        for (const h of [hosts[1], hosts[2]]) {
          const r = h.submit(sr, { sentToAll: true });
          expect(r.ok).toBe(true);
          if (r.ok && h === hosts[1]) ids.push(hex(r.requestId));
        }
      const certs = await Promise.all(ids.map((id) => hosts[1].waitCertificate(id, 60_000)));
      for (const c of certs) {
        expect(c).not.toBeNull();
        // Every node voted, nodes 0 and 3 included: they got the requests.
        expect(c?.outcome.votes.map((v) => v.node)).toEqual([0, 1, 2, 3]);
      }
      const sends = log.filter((e): e is Extract<Event, { ev: 'send' }> => e.ev === 'send');
      expect(sends.filter((e) => e.kind === 'forward')).toEqual([]);
      // FETCHes of requests, and only of these. (Every node also sends FETCHes of stuck seqs or of results
      // batches whenever a batch takes longer than a retransmission period to certify: on a loaded machine.)
      const fetches = sends.filter((e) => e.kind === 'fetch' && (e.requests?.length ?? 0) > 0);
      expect([...new Set(fetches.map((e) => e.node))].sort()).toEqual([0, 3]);
      for (const e of fetches) expect(ids).toEqual(expect.arrayContaining(e.requests ?? []));
    } finally {
      for (const h of hosts) h.close();
    }
  });
});

describe('view changes in the log', () => {
  it('a node logs VIEW_CHANGE_STARTED when it asks for a view and VIEW_STARTED when the view begins', async () => {
    const group = makeGroup(4, 1, 37);
    const lines: { node: number; level: string; code?: unknown; view?: unknown; primary?: unknown }[] = [];
    const logger = (node: number) => ({
      info: (o: object) => lines.push({ node, level: 'info', ...(o as object) }),
      warn: (o: object) => lines.push({ node, level: 'warn', ...(o as object) }),
      error: (o: object) => lines.push({ node, level: 'error', ...(o as object) }),
    });
    const hosts = recordedHosts(group, 'viewlog', [], new Map(), {
      replica: { viewChangeTimeoutMs: 300, retransmitMs: 50, voteWaitMs: 5 },
      logger,
    });
    try {
      // Node 0, the primary of view 0, never starts: its peers' messages to it go nowhere, and a request
      // the other three hold is not ordered until they move to view 1 (primary: node 1).
      for (const h of hosts.slice(1)) h.start();
      const sr = standInRequest(group, hosts[1], 700);
      for (const h of hosts.slice(1)) expect(h.submit(sr, { sentToAll: true }).ok).toBe(true);
      const id = hex(requestIdOf(sr));
      for (const h of hosts.slice(1)) expect(await h.waitCertificate(id, 15_000)).not.toBeNull();
      for (const node of [1, 2, 3]) {
        const mine = lines.filter(
          (l) => l.node === node && typeof l.code === 'string' && String(l.code).startsWith('VIEW_'),
        );
        expect(mine[0]).toMatchObject({ level: 'warn', code: 'VIEW_CHANGE_STARTED', view: 1 });
        expect(mine).toContainEqual(
          expect.objectContaining({ level: 'info', code: 'VIEW_STARTED', view: 1, primary: 1 }),
        );
      }
    } finally {
      for (const h of hosts) h.close();
    }
  });
});

describe('timers', () => {
  it('a node that has executed every request its client sent to all is not woken again for their late forwards', async () => {
    const group = makeGroup(4, 1, 35);
    // Each request sent to all would have its late forward due 300 ms after it arrived.
    const hosts = hostsOnWire(group, 'timers', {
      lateForwardMs: 300,
      viewChangeTimeoutMs: 600,
      retransmitMs: 50,
      voteWaitMs: 5,
    });
    // Count the timer ticks each replica is stepped with.
    const ticks = hosts.map(() => 0);
    hosts.forEach((h, i) => {
      const step = h.replica.step.bind(h.replica);
      h.replica.step = (ev, now) => {
        if (ev.type === 'tick') ticks[i]++;
        return step(ev, now);
      };
    });
    try {
      for (const h of hosts) h.start();
      const reqs = Array.from({ length: 4 }, (_, i) => standInRequest(group, hosts[0], 500 + i));
      const submittedAt = Date.now();
      for (const sr of reqs) for (const h of hosts) expect(h.submit(sr, { sentToAll: true }).ok).toBe(true);
      const ids = reqs.map((sr) => hex(requestIdOf(sr)));
      for (const h of hosts) for (const id of ids) expect(await h.waitCertificate(id, 10_000)).not.toBeNull();
      // Everything executed and certified: once the replicas have finished what they still wait for
      // (receipts, the primary's vote wait) none wants a wake-up, and then none may come, the late forwards'
      // (due 300 ms after arrival) included. Ticks are counted from then until well past those (not after a
      // fixed 150 ms, which a loaded machine could overrun: a tick still due then read as a failure).
      await until(
        () => hosts.every((h) => h.replica.nextWake === Number.POSITIVE_INFINITY),
        'no wake-up wanted',
      );
      const before = [...ticks];
      const windowMs = Math.max(600, submittedAt + 900 - Date.now());
      await new Promise((r) => setTimeout(r, windowMs));
      expect(ticks.map((t, i) => t - before[i])).toEqual([0, 0, 0, 0]);
      for (const h of hosts) expect(h.replica.nextWake).toBe(Number.POSITIVE_INFINITY);
    } finally {
      for (const h of hosts) h.close();
    }
  });

  it('moves its timer later, or clears it, when the replica no longer wants the earlier wake-up', async () => {
    const group = makeGroup(4, 1, 36);
    const host = loneHost(group, 1, 'timer-moves');
    // The replica's wish is set by hand here: each submit steps the replica, and the host then reads it.
    let wake = Number.POSITIVE_INFINITY;
    Object.defineProperty(host.replica, 'nextWake', { get: () => wake });
    const ticks: number[] = [];
    const step = host.replica.step.bind(host.replica);
    host.replica.step = (ev, now) => {
      if (ev.type === 'tick') {
        ticks.push(Date.now());
        wake = Number.POSITIVE_INFINITY; // what it woke for is done
      }
      return step(ev, now);
    };
    let nonce = 600;
    const submit = () => expect(host.submit(standInRequest(group, host, nonce++)).ok).toBe(true);
    try {
      const t0 = Date.now();
      wake = t0 + 100;
      submit();
      // The work came by message: nothing to wait for any more. The timer set for t0 + 100 goes.
      wake = Number.POSITIVE_INFINITY;
      submit();
      // A timer for t0 + 50; then wanted later (by more than the 2 ms slack): the timer moves there.
      wake = t0 + 50;
      submit();
      wake = t0 + 300;
      submit();
      // One tick, at the time wanted last: a timer left at t0 + 100 or t0 + 50 would have ticked first,
      // before t0 + 295 (read from the tick's own time, so a loaded machine that runs the test late cannot
      // fail it, as a check at a fixed 200 ms could).
      await until(() => ticks.length > 0, 'the tick');
      await new Promise((r) => setTimeout(r, 100));
      expect(ticks).toHaveLength(1);
      expect(ticks[0]).toBeGreaterThanOrEqual(t0 + 295);
    } finally {
      host.close();
    }
  });
});

describe('answers of inference calls that finish in the same turn', () => {
  it('go out as one signed RESULTS message', async () => {
    const group = makeGroup(4, 1, 34);
    const log: Event[] = [];
    const handlers = new Map<number, (f: number, b: Uint8Array) => void>();
    // Node 3's model holds every input until the gate opens, then answers them all at once (as a model
    // batch of inputs from several calls does).
    let open: () => void = () => {};
    const gate = new Promise<void>((res) => {
      open = res;
    });
    let held = 0;
    const standIn = startStandIn(3);
    const gated: ModelBackend = {
      ...standIn,
      async classify(input, opts) {
        held++;
        await gate;
        return standIn.classify(input, opts);
      },
    };
    const hosts = recordedHosts(group, 'settled', log, handlers, {
      backend: (id) => (id === 3 ? gated : undefined),
      replica: { retransmitMs: 60_000, voteWaitMs: 2000, batchTimeoutMs: 1 },
    });
    try {
      for (const h of hosts) h.start();
      // Three requests in three turns of the event loop: three inference calls at node 3.
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = hosts[3].submit(standInRequest(group, hosts[3], 200 + i));
        expect(r.ok).toBe(true);
        if (r.ok) ids.push(hex(r.requestId));
        await new Promise((res) => setImmediate(res));
        await new Promise((res) => setImmediate(res));
      }
      expect(held).toBe(3);
      open();
      const certs = await Promise.all(ids.map((id) => hosts[3].waitCertificate(id, 10_000)));
      for (const c of certs) expect(c?.outcome.votes.map((v) => v.node)).toEqual([0, 1, 2, 3]);
      const fromNode3 = log.filter((e) => e.node === 3 && e.ev === 'send' && e.kind === 'results');
      expect(fromNode3.map((e) => (e.ev === 'send' ? e.results : 0))).toEqual([3]);
    } finally {
      for (const h of hosts) h.close();
    }
  });
});

describe("inference failures that are the node's own trouble", () => {
  it('OVERLOADED is retried, not voted as an empty answer (the vote must not depend on load)', async () => {
    const group = makeGroup(4, 1, 36);
    const log: Event[] = [];
    const handlers = new Map<number, (f: number, b: Uint8Array) => void>();
    // Node 3's model is overloaded for its first two calls, then answers.
    let calls = 0;
    const standIn = startStandIn(3);
    const busy: ModelBackend = {
      ...standIn,
      async classify(input, opts) {
        calls++;
        if (calls <= 2) throw new DropbearError('OVERLOADED', 'inference queue full');
        return standIn.classify(input, opts);
      },
    };
    const hosts = recordedHosts(group, 'overloaded', log, handlers, {
      backend: (id) => (id === 3 ? busy : undefined),
      replica: { retransmitMs: 60_000, voteWaitMs: 5000, batchTimeoutMs: 1 },
    });
    try {
      for (const h of hosts) h.start();
      const r = hosts[3].submit(standInRequest(group, hosts[3], 300));
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      const cert = await hosts[3].waitCertificate(hex(r.requestId), 10_000);
      expect(calls).toBe(3);
      const vote3 = cert?.outcome.votes.find((v) => v.node === 3);
      // Counted, and a real answer: an empty vote (top: []) is what a failure used to sign.
      expect(vote3?.result.kind === 'class' && vote3.result.top.length).toBeGreaterThan(0);
    } finally {
      for (const h of hosts) h.close();
    }
  });
});

describe("a preprocessing worker's timeout is the input's", () => {
  /** Node 3's model fails its first call with `first`, then answers; returns its calls and its vote. */
  async function voteAfter(first: DropbearError, seed: number) {
    const group = makeGroup(4, 1, seed);
    const log: Event[] = [];
    const handlers = new Map<number, (f: number, b: Uint8Array) => void>();
    let calls = 0;
    const standIn = startStandIn(3);
    const backend: ModelBackend = {
      ...standIn,
      async classify(input, opts) {
        calls++;
        if (calls === 1) throw first;
        return standIn.classify(input, opts);
      },
    };
    const hosts = recordedHosts(group, `timeout-${seed}`, log, handlers, {
      backend: (id) => (id === 3 ? backend : undefined),
      replica: { retransmitMs: 60_000, voteWaitMs: 5000, batchTimeoutMs: 1 },
    });
    try {
      for (const h of hosts) h.start();
      const r = hosts[3].submit(standInRequest(group, hosts[3], 310 + seed));
      expect(r.ok).toBe(true);
      if (!r.ok) return null;
      const cert = await hosts[3].waitCertificate(hex(r.requestId), 10_000);
      // Past the first retry's backoff (100 ms).
      await new Promise((res) => setTimeout(res, 400));
      const vote = cert?.outcome.votes.find((v) => v.node === 3);
      return { calls, top: vote?.result.kind === 'class' ? vote.result.top.length : null };
    } finally {
      for (const h of hosts) h.close();
    }
  }

  it('voted empty at once, not retried (a deterministic input that timed out will time out again)', async () => {
    const prep = new DropbearError('WORKER_TIMEOUT', 'inference worker did not answer (prep)', {
      call: 'prep',
    });
    const r = await voteAfter(prep, 38);
    expect(r?.calls).toBe(1);
    expect(r?.top).toBe(0);
  });

  it("a model run's timeout is still retried (a batch of several inputs: the node's trouble)", async () => {
    const run = new DropbearError('WORKER_TIMEOUT', 'inference worker did not answer (run)', { call: 'run' });
    const r = await voteAfter(run, 39);
    expect(r?.calls).toBe(2);
    expect(r?.top).toBeGreaterThan(0);
  });
});

describe('a step whose ledger write fails', () => {
  it('stops the node: nothing of that step is sent (a PREPARE left with no record on disk before), onFatal is told, the others go on', async () => {
    const group = makeGroup(4, 1, 37);
    const log: Event[] = [];
    const handlers = new Map<number, (f: number, b: Uint8Array) => void>();
    const fatal: unknown[] = [];
    const hosts = recordedHosts(group, 'persistfail', log, handlers, {
      replica: { retransmitMs: 200, batchTimeoutMs: 1 },
      onFatal: (e) => fatal.push(e),
    });
    // Node 1's disk fails on its first PREPARE record.
    const db = (hosts[1] as unknown as { db: { persist(r: { kind: string }): void } }).db;
    const persist = db.persist.bind(db);
    db.persist = (r) => {
      if (r.kind === 'prepare') throw new Error('disk full (test)');
      persist(r);
    };
    try {
      for (const h of hosts) h.start();
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = hosts[0].submit(standInRequest(group, hosts[0], 400 + i));
        if (r.ok) ids.push(hex(r.requestId));
      }
      const certs = await Promise.all(ids.map((id) => hosts[0].waitCertificate(id, 10_000)));
      expect(certs.every((c) => c !== null)).toBe(true);
      await new Promise((res) => setTimeout(res, 500)); // past a retransmission round
      expect(fatal).toHaveLength(1);
      expect(String(fatal[0])).toMatch(/disk full/);
      expect(hosts[1].failed).not.toBeNull();
      expect(log.filter((e) => e.node === 1 && e.ev === 'send' && e.kind === 'prepare')).toEqual([]);
    } finally {
      for (const h of hosts) h.close();
    }
  });
});

describe('a node whose disk fills', () => {
  it("stops with LEDGER_DISK_FULL (not SQLite's bare text, not an uncaught throw from the group commit), sends nothing after, and the others go on", async () => {
    const group = makeGroup(4, 1, 38);
    const log: Event[] = [];
    const handlers = new Map<number, (f: number, b: Uint8Array) => void>();
    const fatal: unknown[] = [];
    const hosts = recordedHosts(group, 'diskfull', log, handlers, {
      replica: { retransmitMs: 200, batchTimeoutMs: 1 },
      onFatal: (e) => fatal.push(e),
    });
    try {
      for (const h of hosts) h.start();
      const certify = async (from: number, nonces: number[]) => {
        const ids: string[] = [];
        for (const n of nonces) {
          const r = hosts[0].submit(standInRequest(group, hosts[0], n));
          if (r.ok) ids.push(hex(r.requestId));
        }
        expect(ids).toHaveLength(nonces.length);
        const certs = await Promise.all(ids.map((id) => hosts[from].waitCertificate(id, 10_000)));
        expect(certs.every((c) => c !== null)).toBe(true);
      };
      await certify(0, [500, 501]);
      // Node 1's file may not grow by one more page: SQLite's own SQLITE_FULL, as on a full disk.
      const sqlite = (hosts[1].db as unknown as { db: { pragma(s: string, o?: object): unknown } }).db;
      const pages = sqlite.pragma('page_count', { simple: true }) as number;
      sqlite.pragma(`max_page_count = ${pages}`);
      const sentBefore = log.filter((e) => e.node === 1 && e.ev === 'send').length;
      await certify(
        0,
        Array.from({ length: 40 }, (_, i) => 510 + i),
      );
      await new Promise((res) => setTimeout(res, 300)); // past a retransmission round
      expect(fatal).toHaveLength(1);
      expect(fatal[0]).toBeInstanceOf(DropbearError);
      expect((fatal[0] as DropbearError).code).toBe('LEDGER_DISK_FULL');
      expect((fatal[0] as DropbearError).message).toMatch(
        /diskfull-1\.sqlite is full .*free space there and start it again/,
      );
      expect(hosts[1].failed).toBe(fatal[0]);
      // Once stopped it sent nothing more (what it sent in the failing turn before the write is allowed).
      const after = log.filter((e) => e.node === 1 && e.ev === 'send').length;
      await new Promise((res) => setTimeout(res, 300));
      expect(log.filter((e) => e.node === 1 && e.ev === 'send').length).toBe(after);
      expect(after).toBeGreaterThanOrEqual(sentBefore);
    } finally {
      for (const h of hosts) h.close();
    }
  });
});

describe('what a node tells its observer it sent', () => {
  it('counts every copy of every peer message by kind, with its bytes, as the wire carried them', async () => {
    const group = makeGroup(4, 1, 35);
    type Tally = Map<string, { messages: number; bytes: number }>;
    const add = (t: Tally, kind: string, messages: number, bytes: number) => {
      const x = t.get(kind) ?? { messages: 0, bytes: 0 };
      x.messages += messages;
      x.bytes += bytes;
      t.set(kind, x);
    };
    // What each node put on the wire, one entry per frame and destination, and what it told its observer.
    const carried: Tally[] = group.genesis.nodes.map(() => new Map());
    const told: Tally[] = group.genesis.nodes.map(() => new Map());
    const handlers = new Map<number, (f: number, b: Uint8Array) => void>();
    const wire = (id: number): Wire => {
      const deliver = (to: number, bytes: Uint8Array) => {
        add(carried[id], (decodeMessage(bytes) as { kind: string }).kind, 1, bytes.length);
        setImmediate(() => handlers.get(to)?.(id, bytes));
      };
      return {
        send: deliver,
        broadcast: (bytes) => {
          for (let to = 0; to < 4; to++) if (to !== id) deliver(to, bytes);
        },
        onFrame: (h) => {
          handlers.set(id, h);
        },
        reportBad: () => {},
      };
    };
    const hosts = group.genesis.nodes.map((_, id) =>
      NodeHost.open({
        id,
        genesis: group.genesis,
        key: group.keys[id],
        ledgerPath: join(dir, `sent-${id}.sqlite`),
        backends: [startStandIn(id)],
        wire: wire(id),
        replica: { batchTimeoutMs: 1, voteWaitMs: 1 },
        observe: { sent: (kind, messages, bytes) => add(told[id], kind, messages, bytes) },
      }),
    );
    try {
      for (const h of hosts) h.start();
      // Requests at a backup (forwarded to the others) and at the primary, in several turns.
      const ids: string[] = [];
      for (let i = 0; i < 8; i++) {
        const r = hosts[i % 2 === 0 ? 1 : 0].submit(standInRequest(group, hosts[0], 300 + i));
        expect(r.ok).toBe(true);
        if (r.ok) ids.push(hex(r.requestId));
        if (i % 3 === 2) await new Promise((res) => setTimeout(res, 3));
      }
      const certs = await Promise.all(ids.map((id) => hosts[0].waitCertificate(id, 10_000)));
      expect(certs.every((c) => c !== null)).toBe(true);
      // Whatever is still held behind an fsync has left once the hosts settle.
      await new Promise((res) => setTimeout(res, 50));
      for (let id = 0; id < 4; id++)
        expect(Object.fromEntries(told[id])).toEqual(Object.fromEntries(carried[id]));
      // The primary proposed (a broadcast: three copies of each PRE-PREPARE, counted per destination by the
      // equality above) and node 1 forwarded. Not a multiple of three: on a slow machine the retransmit timer
      // may re-send a PRE-PREPARE to the one peer that had not voted yet (CI failed on that once).
      expect(told[0].get('prePrepare')?.messages).toBeGreaterThanOrEqual(3);
      expect(told[1].get('forward')?.messages).toBeGreaterThan(0);
      for (const t of told) expect(t.get('results')?.bytes).toBeGreaterThan(0);
    } finally {
      for (const h of hosts) h.close();
    }
  });
});

describe('accept times (host.acceptedAt, for dropbear_accept_to_certificate_seconds)', () => {
  it('are forgotten once past the expiry window even when no certificate ever forms at this node', () => {
    // Faked before the host starts, so that its monotonic clock never goes back.
    vi.useFakeTimers({ toFake: ['performance'] });
    const group = makeGroup(4, 1, 36);
    // The peers never hear from node 0: nothing is ordered, no certificate forms here.
    const host = loneHost(group, 0, 'accepted-at');
    const { expiryMs } = group.genesis.params;
    try {
      host.start();
      for (let i = 0; i < 500; i++) expect(host.submit(standInRequest(group, host, 4000 + i)).ok).toBe(true);
      expect(host.acceptedAt.size).toBe(500);
      // Past the expiry window (and the margin a certificate of a request ordered in time may still take):
      // none of those can be certified any more. Until 2026-12-07 they were forgotten only on every 256th
      // certificate formed here, so a node that accepted requests and certified none (its group stalled,
      // or it was behind) kept one entry per request for as long as that lasted.
      vi.advanceTimersByTime(expiryMs + 61_000);
      expect(host.submit(standInRequest(group, host, 5000)).ok).toBe(true);
      expect(host.acceptedAt.size).toBe(1);
    } finally {
      host.close();
      vi.useRealTimers();
    }
  });
});
