/**
 * The API's deposit routes on one stand-in NodeHost (no peers, so nothing submitted is ordered here; the
 * ordered path runs on four node processes in test/e2e/group.test.ts): POST /v1/txs with a deposit, GET
 * /v1/txs/:txId and GET /v1/accounts/:client, each bad input with its code. A transfer is also ordered, on four
 * stand-in hosts joined in memory, each with its API.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_ACCOUNTS_BY_TRANSFER } from '../../src/ledger/state.ts';
import { buildApi } from '../../src/node/api.ts';
import { NodeHost } from '../../src/node/host.ts';
import { startStandIn } from '../../src/node/standin-backend.ts';
import {
  groupIdOf,
  hex,
  keyPairFromSeed,
  signDeposit,
  signFeeChange,
  signRefund,
  signTransfer,
  Tx,
  toB64u,
  toJson,
  txIdOf,
} from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { Loopback } from './harness.ts';
import { type LoneHost, openLoneHost } from './lone-host.ts';

let lone: LoneHost;
let app: FastifyInstance;

beforeAll(async () => {
  lone = openLoneHost('api-deposits-', 23);
  app = buildApi(lone.host, {});
  await app.ready();
});

afterAll(async () => {
  await app.close();
  lone.close();
});

const gid = () => groupIdOf(lone.group.genesis);
const post = (tx: Tx) => app.inject({ method: 'POST', url: '/v1/txs', payload: { tx: toJson(Tx, tx) } });
const code = (r: { json: () => unknown }) => (r.json() as { error: { code: string } }).error.code;

describe('POST /v1/txs with a deposit', () => {
  it('takes the treasury-signed next serial (202) and lists it in /v1/status and GET /v1/txs/:txId as pending', async () => {
    const client = new Uint8Array(32).fill(9);
    const tx = signDeposit(gid(), { client, amount: 50, serial: 1 }, lone.group.treasury);
    const r = await post(tx);
    expect(r.statusCode).toBe(202);
    expect(r.json()).toEqual({ txId: hex(txIdOf(tx)), status: 'pending' });
    const s = (await app.inject('/v1/status')).json() as { deposits: number; pendingDeposits: unknown[] };
    expect(s.deposits).toBe(0);
    expect(s.pendingDeposits).toEqual([{ serial: 1, client: toB64u(client), amount: 50 }]);
    const t = await app.inject(`/v1/txs/${hex(txIdOf(tx)).toUpperCase()}`);
    expect(t.statusCode).toBe(200);
    // With the transaction itself, as codec JSON: what was submitted, checkable against its id.
    expect(t.json()).toEqual({ txId: hex(txIdOf(tx)), status: 'pending', tx: toJson(Tx, tx) });
    // The same bytes again: TX_DUPLICATE.
    const again = await post(tx);
    expect([again.statusCode, code(again)]).toEqual([409, 'TX_DUPLICATE']);
  });

  it('refuses a forged one (401), a zero (400), a gap (409) and one past the money bound (409), each with its code', async () => {
    const client = new Uint8Array(32).fill(3);
    const cases: [Tx, number, string][] = [
      [signDeposit(gid(), { client, amount: 5, serial: 2 }, lone.group.client), 401, 'TX_BAD_SIGNATURE'],
      [signDeposit(gid(), { client, amount: 5, serial: 2 }, lone.group.keys[0]), 401, 'TX_BAD_SIGNATURE'],
      [signDeposit(gid(), { client, amount: 0, serial: 2 }, lone.group.treasury), 400, 'TX_BAD_AMOUNT'],
      [signDeposit(gid(), { client, amount: 5, serial: 9 }, lone.group.treasury), 409, 'TX_VERSION_GAP'],
      [
        signDeposit(gid(), { client, amount: Number.MAX_SAFE_INTEGER, serial: 2 }, lone.group.treasury),
        409,
        'TX_DEPOSIT_TOO_LARGE',
      ],
    ];
    for (const [tx, status, c] of cases) {
      const r = await post(tx);
      expect([r.statusCode, code(r)], c).toEqual([status, c]);
    }
    const s = (await app.inject('/v1/status')).json() as { pendingDeposits: unknown[] };
    expect(s.pendingDeposits).toHaveLength(1);
  });

  // The bound counts the deposits waiting to be ordered (only one per serial applies: the largest of each
  // other serial): two that each fit but together pass it, the second used its serial and credited nothing.
  it('TX_DEPOSIT_TOO_LARGE counts the deposits waiting: the largest of each other serial', async () => {
    const s0 = (await app.inject('/v1/status')).json() as {
      pendingDeposits: { serial: number; amount: number }[];
    };
    expect(s0.pendingDeposits.map((d) => [d.serial, d.amount])).toEqual([[1, 50]]);
    const room = Number.MAX_SAFE_INTEGER - lone.host.db.state.totalMoney();
    const deposit = (serial: number, amount: number, fill: number) =>
      post(
        signDeposit(gid(), { client: new Uint8Array(32).fill(fill), amount, serial }, lone.group.treasury),
      );
    // Serial 2 fits alone, not after serial 1's 50.
    const over = await deposit(2, room - 49, 4);
    expect([over.statusCode, code(over)]).toEqual([409, 'TX_DEPOSIT_TOO_LARGE']);
    expect((over.json() as { error: { message: string } }).error.message).toContain('50 waiting');
    expect((await deposit(2, room - 50, 4)).statusCode).toBe(202);
    // A rival of serial 2 replaces it (one of them applies), one of serial 1 likewise.
    expect((await deposit(2, room - 50, 5)).statusCode).toBe(202);
    expect(code(await deposit(2, room - 49, 5))).toBe('TX_DEPOSIT_TOO_LARGE');
    expect((await deposit(1, 50, 6)).statusCode).toBe(202);
    expect(code(await deposit(1, 51, 6))).toBe('TX_DEPOSIT_TOO_LARGE');
    // Serial 3 has no room left.
    expect(code(await deposit(3, 1, 7))).toBe('TX_DEPOSIT_TOO_LARGE');
  });

  it('a deposit that does not decode is 400 TX_MALFORMED', async () => {
    const r = await app.inject({
      method: 'POST',
      url: '/v1/txs',
      payload: {
        tx: { kind: 'deposit', deposit: { client: 'AAAA', amount: 1, serial: 1 }, signature: 'AA' },
      },
    });
    expect([r.statusCode, code(r)]).toEqual([400, 'TX_MALFORMED']);
  });
});

describe('POST /v1/txs with a fee change', () => {
  it("takes the node's own next version (202), lists it in /v1/status; refuses another node's key (401) and a gap (409)", async () => {
    const ok = signFeeChange(gid(), { node: 1, version: 1, fee: 12 }, lone.group.keys[1]);
    const r = await post(ok);
    expect(r.statusCode).toBe(202);
    const s = (await app.inject('/v1/status')).json() as {
      fees: number[];
      feeVersions: number[];
      pendingFeeChanges: unknown[];
    };
    expect(s.fees).toEqual(lone.group.genesis.nodes.map((n) => n.fee));
    expect(s.feeVersions).toEqual([0, 0, 0, 0]);
    expect(s.pendingFeeChanges).toEqual([{ node: 1, version: 1, fee: 12 }]);
    const forged = signFeeChange(gid(), { node: 2, version: 1, fee: 12 }, lone.group.keys[1]);
    const f = await post(forged);
    expect([f.statusCode, code(f)]).toEqual([401, 'TX_BAD_SIGNATURE']);
    const gap = signFeeChange(gid(), { node: 3, version: 2, fee: 12 }, lone.group.keys[3]);
    const g = await post(gap);
    expect([g.statusCode, code(g)]).toEqual([409, 'TX_VERSION_GAP']);
    const unknown = signFeeChange(gid(), { node: 9, version: 1, fee: 12 }, lone.group.keys[3]);
    const u = await post(unknown);
    expect([u.statusCode, code(u)]).toEqual([400, 'TX_UNKNOWN_NODE']);
    // GET /v1/group: each node's fee now (none changed yet: nothing is ordered without peers).
    const group = (await app.inject('/v1/group')).json() as { fees: unknown };
    expect(group.fees).toEqual(lone.group.genesis.nodes.map((n, node) => ({ node, fee: n.fee, version: 0 })));
  });
});

describe('POST /v1/txs: refunds', () => {
  it("a key with no account is told so (409 TX_REFUND_TOO_LARGE naming it), a forged one is 401 first, and a funded client's over its balance names the balance", async () => {
    const stranger = keyPairFromSeed(new Uint8Array(32).fill(91));
    const none = await post(
      signRefund(gid(), { client: stranger.publicKey, serial: 1, amount: 5 }, stranger),
    );
    expect([none.statusCode, code(none)]).toEqual([409, 'TX_REFUND_TOO_LARGE']);
    expect((none.json() as { error: { message: string } }).error.message).toMatch(
      /^no account for the client \S+: neither the genesis, a deposit nor a transfer made one; a refund of it would have no effect$/,
    );
    const forged = await post(
      signRefund(gid(), { client: stranger.publicKey, serial: 1, amount: 5 }, lone.group.client),
    );
    expect([forged.statusCode, code(forged)]).toEqual([401, 'TX_BAD_SIGNATURE']);
    const c = lone.group.client;
    const balance = lone.host.db.state.balanceOf(c.publicKey);
    const over = await post(signRefund(gid(), { client: c.publicKey, serial: 1, amount: balance + 1 }, c));
    expect([over.statusCode, code(over)]).toEqual([409, 'TX_REFUND_TOO_LARGE']);
    expect((over.json() as { error: { message: string } }).error.message).toContain(`balance is ${balance}`);
  });
});

describe('GET /v1/owners', () => {
  it("lists each node's owner, fee and earnings as of the last executed batch; a query parameter is refused", async () => {
    const r = await app.inject('/v1/owners');
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({
      seq: 0,
      deposits: 0,
      minted: 0,
      paidOut: 0,
      refunded: 0,
      owners: lone.group.genesis.nodes.map((n, node) => ({
        node,
        owner: n.owner,
        fee: n.fee,
        feeVersion: 0,
        counted: 0,
        agreed: 0,
        earned: 0,
        withdrawn: 0,
        withdrawals: 0,
        payable: 0,
      })),
    });
    expect((await app.inject('/v1/owners?node=1')).statusCode).toBe(400);
  });
});

describe('GET /v1/txs/:txId', () => {
  it('an id the node does not know is 404 TX_NOT_FOUND; one that is not 64 hex digits is 400', async () => {
    const r = await app.inject(`/v1/txs/${'ab'.repeat(32)}`);
    expect([r.statusCode, code(r)]).toEqual([404, 'TX_NOT_FOUND']);
    for (const bad of ['xyz', 'ab'.repeat(31), `${'ab'.repeat(32)}0`]) {
      const b = await app.inject(`/v1/txs/${bad}`);
      expect(b.statusCode, bad).toBe(400);
    }
  });
});

describe('GET /v1/accounts/:client', () => {
  it("gives a genesis client's balance, 0 for a key without an account, and 400 for what is not a key", async () => {
    const c = lone.group.client.publicKey;
    const r = await app.inject(`/v1/accounts/${toB64u(c)}`);
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({
      client: toB64u(c),
      balance: lone.group.genesis.balances[0].amount,
      exists: true,
      seq: 0,
      deposits: 0,
      refunds: 0,
      pendingRefunds: [],
      pendingTransfers: [],
      incomingTransfers: [],
      heldFees: 0,
      refundable: lone.group.genesis.balances[0].amount,
    });
    const none = await app.inject(`/v1/accounts/${toB64u(new Uint8Array(32).fill(7))}`);
    expect(none.json()).toMatchObject({ balance: 0, exists: false });
    // 31 and 33 bytes, padding, a non-canonical last character, and text.
    for (const bad of [
      toB64u(new Uint8Array(31)),
      toB64u(new Uint8Array(33)),
      `${toB64u(c)}=`,
      `${toB64u(c).slice(0, 42)}B`,
      'alice',
    ]) {
      const b = await app.inject(`/v1/accounts/${bad}`);
      expect(b.statusCode, bad).toBe(400);
    }
  });
});

// After GET /v1/accounts/:client above: the transfer taken here waits (nothing is ordered without peers), so
// the client's account shows it from here on.
describe('POST /v1/txs: transfers (waiting at one node)', () => {
  const c = () => lone.group.client;
  const payee = keyPairFromSeed(new Uint8Array(32).fill(92)).publicKey;
  const message = (r: { json: () => unknown }) => (r.json() as { error: { message: string } }).error.message;

  it('a forged one is 401, a 0 is 400 TX_BAD_AMOUNT, one to the payer itself 400 TX_TRANSFER_TO_SELF', async () => {
    const forged = await post(
      signTransfer(gid(), { client: c().publicKey, to: payee, serial: 1, amount: 5 }, lone.group.keys[0]),
    );
    expect([forged.statusCode, code(forged)]).toEqual([401, 'TX_BAD_SIGNATURE']);
    const zero = await post(
      signTransfer(gid(), { client: c().publicKey, to: payee, serial: 1, amount: 0 }, c()),
    );
    expect([zero.statusCode, code(zero)]).toEqual([400, 'TX_BAD_AMOUNT']);
    const self = await post(
      signTransfer(gid(), { client: c().publicKey, to: c().publicKey, serial: 1, amount: 5 }, c()),
    );
    expect([self.statusCode, code(self)]).toEqual([400, 'TX_TRANSFER_TO_SELF']);
  });

  it('a payer with no account is 409 TX_TRANSFER_TOO_LARGE naming it (a forged one of it 401 first); more than the balance 409 naming it', async () => {
    const stranger = keyPairFromSeed(new Uint8Array(32).fill(93));
    const none = await post(
      signTransfer(gid(), { client: stranger.publicKey, to: payee, serial: 1, amount: 5 }, stranger),
    );
    expect([none.statusCode, code(none)]).toEqual([409, 'TX_TRANSFER_TOO_LARGE']);
    expect(message(none)).toMatch(
      /^no account for the client \S+: neither the genesis, a deposit nor a transfer made one; a transfer of it would have no effect$/,
    );
    const forged = await post(
      signTransfer(gid(), { client: stranger.publicKey, to: payee, serial: 1, amount: 5 }, c()),
    );
    expect([forged.statusCode, code(forged)]).toEqual([401, 'TX_BAD_SIGNATURE']);
    const balance = lone.host.db.state.balanceOf(c().publicKey);
    const over = await post(
      signTransfer(gid(), { client: c().publicKey, to: payee, serial: 1, amount: balance + 1 }, c()),
    );
    expect([over.statusCode, code(over)]).toEqual([409, 'TX_TRANSFER_TOO_LARGE']);
    expect(message(over)).toContain(`balance is ${balance}: it may transfer ${balance}, not ${balance + 1}`);
  });

  it('one that would open an account past MAX_ACCOUNTS_BY_TRANSFER is 409 TX_TRANSFER_TOO_LARGE saying so (the ledger would use its serial and move nothing)', async () => {
    // The node's in-memory ledger filled with made-up empty accounts up to the bound (taken out again after).
    const balances = lone.host.db.state.balances;
    const made: string[] = [];
    for (let i = balances.size; i < MAX_ACCOUNTS_BY_TRANSFER; i++) {
      const k = new Uint8Array(32);
      new DataView(k.buffer).setUint32(0, i + 1);
      made.push(hex(k));
      balances.set(hex(k), { client: k, amount: 0 });
    }
    try {
      const r = await post(
        signTransfer(gid(), { client: c().publicKey, to: payee, serial: 1, amount: 5 }, c()),
      );
      expect([r.statusCode, code(r)]).toEqual([409, 'TX_TRANSFER_TOO_LARGE']);
      expect(message(r)).toBe(
        `the ledger holds ${MAX_ACCOUNTS_BY_TRANSFER} accounts, the most a transfer may open (${MAX_ACCOUNTS_BY_TRANSFER}): transfer to a key that has an account`,
      );
    } finally {
      for (const k of made) balances.delete(k);
    }
    expect(balances.size).toBeLessThan(10);
  });

  it('taken (202), it waits in GET /v1/accounts/:client pendingTransfers and out of refundable; a refund or transfer past the rest is 409', async () => {
    const balance = lone.host.db.state.balanceOf(c().publicKey);
    const tx = signTransfer(gid(), { client: c().publicKey, to: payee, serial: 1, amount: 40 }, c());
    const r = await post(tx);
    expect(r.statusCode).toBe(202);
    expect(r.json()).toEqual({ txId: hex(txIdOf(tx)), status: 'pending' });
    const a = (await app.inject(`/v1/accounts/${toB64u(c().publicKey)}`)).json();
    expect(a).toMatchObject({
      balance,
      refunds: 0,
      pendingRefunds: [],
      pendingTransfers: [{ serial: 1, amount: 40, to: toB64u(payee) }],
      refundable: balance - 40,
    });
    // What waits counts against the next one of the shared serials, a refund as a transfer.
    const refund = await post(
      signRefund(gid(), { client: c().publicKey, serial: 2, amount: balance - 39 }, c()),
    );
    expect([refund.statusCode, code(refund)]).toEqual([409, 'TX_REFUND_TOO_LARGE']);
    expect(message(refund)).toContain('40 more in its refunds and transfers waiting');
    const next = await post(
      signTransfer(gid(), { client: c().publicKey, to: payee, serial: 2, amount: balance - 39 }, c()),
    );
    expect([next.statusCode, code(next)]).toEqual([409, 'TX_TRANSFER_TOO_LARGE']);
    // The payee has no account until the transfer is ordered; it sees the transfer coming (no part of its
    // balance yet).
    const p = (await app.inject(`/v1/accounts/${toB64u(payee)}`)).json();
    expect(p).toMatchObject({
      balance: 0,
      exists: false,
      incomingTransfers: [{ from: toB64u(c().publicKey), serial: 1, amount: 40 }],
    });
  });
});

describe('POST /v1/txs: a transfer ordered by four hosts', () => {
  it("applies on every node: the payer's balance less the amount, the payee's account opened with it, the serial used", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'api-transfer-'));
    const group = makeGroup(4, 1, 24);
    const net = new Loopback(4);
    const hosts = group.genesis.nodes.map((_, id) =>
      NodeHost.open({
        id,
        genesis: group.genesis,
        key: group.keys[id],
        ledgerPath: join(dir, `n${id}.sqlite`),
        backends: [startStandIn(id)],
        wire: net.wire(id),
      }),
    );
    for (const h of hosts) h.start();
    const apis = hosts.map((h) => buildApi(h, {}));
    try {
      await Promise.all(apis.map((a) => a.ready()));
      const c = group.client;
      const payee = keyPairFromSeed(new Uint8Array(32).fill(94)).publicKey;
      const had = hosts[0].db.state.balanceOf(c.publicKey);
      const tx = signTransfer(
        groupIdOf(group.genesis),
        { client: c.publicKey, to: payee, serial: 1, amount: 25 },
        c,
      );
      const r = await apis[1].inject({ method: 'POST', url: '/v1/txs', payload: { tx: toJson(Tx, tx) } });
      expect(r.statusCode).toBe(202);
      const id = hex(txIdOf(tx));
      const accounts = (key: Uint8Array) =>
        Promise.all(apis.map(async (a) => (await a.inject(`/v1/accounts/${toB64u(key)}`)).json()));
      for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
        if ((await accounts(payee)).every((a) => a.balance === 25)) break;
        await new Promise((res) => setTimeout(res, 20));
      }
      for (const a of apis) {
        const fate = (await a.inject(`/v1/txs/${id}`)).json();
        expect(fate).toMatchObject({ status: 'executed', applied: true, tx: toJson(Tx, tx) });
      }
      for (const a of await accounts(payee))
        expect(a).toMatchObject({ balance: 25, exists: true, refunds: 0, refundable: 25 });
      for (const a of await accounts(c.publicKey))
        expect(a).toMatchObject({ balance: had - 25, refunds: 1, pendingTransfers: [] });
      // The money stayed in the group: nothing refunded.
      expect((await apis[2].inject('/v1/owners')).json()).toMatchObject({ refunded: 0 });
    } finally {
      for (const a of apis) await a.close();
      for (const h of hosts) {
        h.stop();
        h.close();
      }
      net.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('GET /v1/status: the refunds and transfers a node holds', () => {
  // A host of its own: what is submitted here stays pending (no peers), and would be a rival of the other
  // tests' serials on the shared one.
  let own: LoneHost;
  let api: FastifyInstance;
  beforeAll(async () => {
    own = openLoneHost('api-status-txs-', 24);
    api = buildApi(own.host, {});
    await api.ready();
  });
  afterAll(async () => {
    await api.close();
    own.close();
  });
  type Pending = { pendingRefunds: unknown[]; pendingTransfers: unknown[] };
  const status = async () => (await api.inject('/v1/status')).json() as Pending;

  it('lists each with its client, serial and amount (and payee), once submitted and not yet ordered', async () => {
    expect(await status()).toMatchObject({ pendingRefunds: [], pendingTransfers: [] });
    const gidOwn = groupIdOf(own.group.genesis);
    const c = own.group.client;
    const payee = keyPairFromSeed(new Uint8Array(32).fill(77)).publicKey;
    const submit = (tx: Tx) =>
      api.inject({ method: 'POST', url: '/v1/txs', payload: { tx: toJson(Tx, tx) } });
    const refund = await submit(signRefund(gidOwn, { client: c.publicKey, serial: 1, amount: 7 }, c));
    expect(refund.statusCode).toBe(202);
    const transfer = await submit(
      signTransfer(gidOwn, { client: c.publicKey, to: payee, serial: 2, amount: 11 }, c),
    );
    expect(transfer.statusCode).toBe(202);
    expect(await status()).toMatchObject({
      pendingRefunds: [{ client: toB64u(c.publicKey), serial: 1, amount: 7 }],
      pendingTransfers: [{ client: toB64u(c.publicKey), to: toB64u(payee), serial: 2, amount: 11 }],
    });
  });
});
