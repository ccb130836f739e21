/**
 * `dropbear deposit`, `dropbear balance`, `dropbear set-fee`, `dropbear withdraw`, `dropbear refund` and `dropbear transfer` without a running group: every bad option is CLI_USAGE (or
 * CONFIG_KEY_MISMATCH for a key that is not the treasury's) before anything is sent, and a node's answers
 * are checked (a deposit another one superseded is TX_SUPERSEDED, not success). The real path, four node
 * processes, is in test/e2e/group.test.ts.
 */
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGroup } from '../../src/cli/group.ts';
import { readGenesis } from '../../src/cli/io.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';
import {
  decode,
  fromJson,
  groupIdOf,
  hex,
  SignedRequest,
  Tx,
  toB64u,
  txIdOf,
  verifyTx,
} from '../../src/protocol/index.ts';
import { readKeyFile } from '../../src/protocol/keyfile.ts';
import { runCliInProcess } from './run-cli.ts';

let tmp: string;
let dir: string;
/** What the fake node 0 answers for GET /v1/txs/:id, and the deposits it saw posted. */
let txAnswer: Record<string, unknown> = {};
const posted: Tx[] = [];
const STATUS = {
  deposits: 4,
  pendingDeposits: [{ serial: 6 }, { serial: 5 }],
  fees: [1, 1, 1, 1],
  feeVersions: [0, 0, 3, 0],
  pendingFeeChanges: [
    { node: 2, version: 4, fee: 9 },
    { node: 1, version: 9, fee: 9 },
  ],
  withdrawals: [0, 0, 2, 0],
  pendingWithdrawals: [
    { node: 2, serial: 3, amount: 10 },
    { node: 2, serial: 3, amount: 15 },
    { node: 2, serial: 4, amount: 5 },
    { node: 1, serial: 1, amount: 99 },
  ],
};
/** What the fake node answers for GET /v1/owners: node 2 may withdraw 100. */
let ownersBody: unknown = {
  owners: [0, 1, 2, 3].map((node) => ({ node, payable: node === 2 ? 100 : 0 })),
};
let statusBody: unknown = STATUS;
/** What the fake node answers for GET /v1/accounts/:client. */
let accountBody: Record<string, unknown> = { balance: 77, exists: true, seq: 12, deposits: 7 };
/** Those of some keys (by base64url key) in place of accountBody. */
const accountsByKey = new Map<string, Record<string, unknown>>();
/** How many transactions the fake node refuses next, 409 `refusalCode` (a request came in between). */
let refundRefusals = 0;
/** The code of those refusals: TX_REFUND_TOO_LARGE, or TX_TRANSFER_TOO_LARGE for a transfer. */
let refusalCode = 'TX_REFUND_TOO_LARGE';
/** The maxFee of each request posted to the fake node. */
const requested: number[] = [];
/** What the fake node answers every request with. */
let requestAnswer = { status: 402, code: 'INSUFFICIENT_FUNDS' };
/**
 * The account refund and transfer read: the client holds 500, 30 held by its requests waiting at the node,
 * refunds 2 waiting (serial 4 twice, the largest 40; serial 5, 10), and the node computed refundable =
 * 500 − 30 − 50.
 */
const CLIENT_ACCOUNT = {
  balance: 500,
  exists: true,
  seq: 21,
  deposits: 7,
  refunds: 3,
  pendingRefunds: [
    { serial: 4, amount: 25 },
    { serial: 4, amount: 40 },
    { serial: 5, amount: 10 },
  ],
  heldFees: 30,
  refundable: 420,
};
/** Spread over such an account: the node knows no account for the key (the treasury's, a node's, a new one). */
const NO_ACCOUNT = { balance: 0, exists: false, refunds: 0, pendingRefunds: [], heldFees: 0, refundable: 0 };
let fake: Server;
/** Node 2's API: a second server of the fake's (group.json gives each node its own address). */
let fake2: Server;
let hung: Server;

function body(req: IncomingMessage): Promise<string> {
  return new Promise((r) => {
    let s = '';
    req.on('data', (d) => {
      s += d;
    });
    req.on('end', () => r(s));
  });
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'dropbear-deposit-cli-'));
  dir = join(tmp, 'group');
  await initGroup({ dir, nodes: 4, models: Array(4).fill(STANDIN_MODEL) });
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const json = (status: number, b: unknown) =>
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(b));
    if (req.url === '/v1/status') return json(200, statusBody);
    if (req.url === '/v1/owners') return json(200, ownersBody);
    if (req.method === 'POST' && req.url === '/v1/txs' && refundRefusals > 0) {
      refundRefusals--;
      await body(req);
      return json(409, { error: { code: refusalCode, message: 'it may take back 416, not 420' } });
    }
    if (req.method === 'POST' && req.url === '/v1/txs') {
      const tx = fromJson(Tx, (JSON.parse(await body(req)) as { tx: unknown }).tx);
      posted.push(tx);
      return json(202, { txId: hex(txIdOf(tx)), status: 'pending' });
    }
    if (req.url?.startsWith('/v1/txs/')) return json(200, txAnswer);
    if (req.url?.startsWith('/v1/accounts/'))
      return json(200, accountsByKey.get(req.url.slice('/v1/accounts/'.length)) ?? accountBody);
    if (req.method === 'POST' && req.url?.startsWith('/v1/requests')) {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      requested.push(decode(SignedRequest, new Uint8Array(Buffer.concat(chunks))).request.maxFee);
      return json(requestAnswer.status, { error: { code: requestAnswer.code, message: 'a fake node' } });
    }
    json(404, { error: { code: 'NOT_FOUND', message: 'no' } });
  };
  fake = createServer(handler);
  fake2 = createServer(handler);
  // Node 3's API takes every call and never answers (a node stopped with SIGSTOP).
  hung = createServer(() => {});
  for (const s of [fake, fake2, hung]) await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  // Nodes 0 and 2's API is the fake (two servers); node 1's is a port nothing listens on.
  const file = join(dir, 'group.json');
  const g = JSON.parse(readFileSync(file, 'utf8')) as { nodes: { api: string }[] };
  g.nodes[0].api = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
  // set-fee asks the node whose fee changes: the same fake, at an address of its own (group.json refuses
  // one address given to two nodes).
  g.nodes[2].api = `http://127.0.0.1:${(fake2.address() as AddressInfo).port}`;
  g.nodes[1].api = 'http://127.0.0.1:1';
  g.nodes[3].api = `http://127.0.0.1:${(hung.address() as AddressInfo).port}`;
  writeFileSync(file, JSON.stringify(g, null, 2));
}, 60_000);

afterAll(async () => {
  for (const s of [fake, fake2, hung]) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  rmSync(tmp, { recursive: true, force: true });
});

const deposit = (...args: string[]) => runCliInProcess(['deposit', '--group', dir, ...args]);

describe('dropbear deposit: bad options, before anything is sent', () => {
  for (const amount of ['0', '-1', '1.5', 'abc', '1e3', '9007199254740992', ''])
    it(`--amount ${JSON.stringify(amount)} is CLI_USAGE`, async () => {
      const r = await deposit('--amount', amount);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(
        /^error \[CLI_USAGE\]: --amount must (be a positive whole number|not be empty)/,
      );
    });

  it('a --client that is not a public key, --client with --key, and a node not in the group are CLI_USAGE', async () => {
    for (const args of [
      ['--client', 'not-a-key'],
      ['--client', toB64u(new Uint8Array(31))],
      ['--client', toB64u(new Uint8Array(32)), '--key', join(dir, 'keys', 'client.json')],
      ['--node', '9'],
      ['--node', '-1'],
    ]) {
      const r = await deposit('--amount', '5', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/^error \[CLI_USAGE\]/);
    }
    expect(posted).toEqual([]);
  });

  it('a treasury key file that is not the genesis treasury is CONFIG_KEY_MISMATCH, nothing submitted', async () => {
    const r = await deposit('--amount', '5', '--treasury-key', join(dir, 'keys', 'client.json'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error \[CONFIG_KEY_MISMATCH\]: .*client\.json is not the treasury key/);
    expect(posted).toEqual([]);
  });

  it('a hex public key is CLI_USAGE saying so; one pasted with a trailing newline or spaces is taken', async () => {
    const key = new Uint8Array(32).fill(7);
    const r = await deposit('--amount', '5', '--node', '1', '--client', hex(key));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error \[CLI_USAGE\]: --client must be .* that is hex/);
    // Past the key: node 1 does not listen, so nothing is sent either way.
    const t = await deposit('--amount', '5', '--node', '1', '--client', ` ${toB64u(key)}\n`);
    expect(t.stderr).toMatch(/^error \[NODE_UNREACHABLE\]/);
    expect(posted).toEqual([]);
  });

  it('a folder with no treasury key (a group of separate owners) is CLI_USAGE naming --treasury-key, nothing sent', async () => {
    const asm = join(tmp, 'assembled');
    mkdirSync(asm);
    copyFileSync(join(dir, 'genesis.json'), join(asm, 'genesis.json'));
    const g = JSON.parse(readFileSync(join(dir, 'group.json'), 'utf8'));
    delete g.client;
    for (const n of g.nodes) delete n.config;
    writeFileSync(join(asm, 'group.json'), JSON.stringify(g));
    const r = await runCliInProcess([
      'deposit',
      '--group',
      asm,
      '--amount',
      '5',
      '--client',
      toB64u(new Uint8Array(32)),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error \[CLI_USAGE\]: .*no treasury key.*--treasury-key FILE/);
    expect(posted).toEqual([]);
  });

  it('a node that does not listen is NODE_UNREACHABLE, saying nothing was submitted and naming --node', async () => {
    const r = await deposit('--amount', '5', '--node', '1');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^error \[NODE_UNREACHABLE\]: .*Nothing was submitted; any node of the group takes the deposit: submit it through another \(not node 1\) with --node ID/,
    );
  });
});

describe("dropbear deposit: the node's answers", () => {
  it('takes the serial after the last applied and every one waiting, signs with the treasury key, and reports the balance', async () => {
    txAnswer = { status: 'executed', seq: 11, applied: true };
    const r = await deposit('--amount', '40');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const tx = posted.at(-1)!;
    expect(tx.kind).toBe('deposit');
    if (tx.kind !== 'deposit') return;
    const client = readKeyFile(join(dir, 'keys', 'client.json')).publicKey;
    expect(tx.deposit).toEqual({ client, amount: 40, serial: 7 });
    expect(r.stdout).toContain(`deposit 7: 40 to ${toB64u(client)}`);
    expect(r.stdout).toMatch(/ordered in batch 11: .* now holds 77 \(node 0, batch 12\)/);
  });

  it('a deposit whose serial another took first is TX_SUPERSEDED (exit 2), never reported as credited', async () => {
    txAnswer = { status: 'executed', seq: 11, applied: false };
    const r = await deposit('--amount', '40');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^error \[TX_SUPERSEDED\]: deposit 7: 40 to \S+: the node reports it had no effect in batch 11 .*dropbear balance/,
    );
    expect(r.stdout).not.toMatch(/now holds/);
  });

  it('a deposit the node dropped unordered (a rival took its serial) is TX_SUPERSEDED saying it never will be', async () => {
    txAnswer = { status: 'superseded', seq: 12 };
    const r = await deposit('--amount', '40');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^error \[TX_SUPERSEDED\]: deposit 7: 40 to \S+: not ordered, and it never will be: .*as of batch 12.*run the command again/,
    );
    expect(r.stdout).not.toMatch(/now holds/);
  });

  it('a status without deposits (not a node of this version) is BAD_RESPONSE, nothing submitted', async () => {
    const before = posted.length;
    statusBody = { view: 0 };
    try {
      const r = await deposit('--amount', '40');
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^error \[BAD_RESPONSE\]: .*without deposits and pendingDeposits/);
      expect(posted.length).toBe(before);
    } finally {
      statusBody = STATUS;
    }
  });

  it('times out (TIMEOUT, exit 2) while the deposit waits, naming what to check', async () => {
    txAnswer = { status: 'pending' };
    const r = await deposit('--amount', '40', '--wait', '600');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error \[TIMEOUT\]: .*dropbear balance/);
  });
});

describe('dropbear balance', () => {
  it("prints the node's balance for the account on its first line", async () => {
    const r = await runCliInProcess(['balance', '--group', dir, '--client', toB64u(new Uint8Array(32))]);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('77');
    expect(r.stdout).toContain('as of batch 12; the group has applied 7 deposits');
    expect(r.stdout).not.toMatch(/no account/);
    // A node before refunds says nothing of them: no line about them.
    expect(r.stdout).not.toMatch(/take back/);
  });

  it('says what the client may take back or transfer, from a node that tells, naming the refunds and transfers waiting', async () => {
    const payee = toB64u(new Uint8Array(32).fill(5));
    accountBody = {
      balance: 77,
      exists: true,
      seq: 12,
      deposits: 7,
      refunds: 2,
      pendingRefunds: [{ serial: 3, amount: 10 }],
      pendingTransfers: [{ serial: 4, amount: 5, to: payee }],
      heldFees: 7,
      refundable: 55,
    };
    try {
      const r = await runCliInProcess(['balance', '--group', dir, '--client', toB64u(new Uint8Array(32))]);
      expect(r.code).toBe(0);
      expect(r.stdout.split('\n')[0]).toBe('77');
      expect(r.stdout).toContain(
        `\nit may take back or transfer 55 now (npx dropbear refund, npx dropbear transfer; serials 1 to 2 of its refunds and transfers used, with effect or not; 7 held by its requests waiting at node 0; waiting at node 0 to be ordered: serial 3 of 10, serial 4 of 5 to ${payee})\n`,
      );
    } finally {
      accountBody = { balance: 77, exists: true, seq: 12, deposits: 7 };
    }
  });

  it('names the transfers to the key waiting at the node, with or without an account (not in the balance yet)', async () => {
    const payer = toB64u(new Uint8Array(32).fill(6));
    accountBody = {
      balance: 0,
      exists: false,
      seq: 12,
      deposits: 1,
      incomingTransfers: [{ from: payer, serial: 2, amount: 40 }],
    };
    try {
      const r = await runCliInProcess(['balance', '--group', dir, '--client', toB64u(new Uint8Array(32))]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(
        /no account for this key: neither the genesis, a deposit nor a transfer made one/,
      );
      expect(r.stdout).toContain(
        `\ntransfers to this key waiting at node 0 to be ordered (not in the balance until they apply): 40 from ${payer} (its serial 2)\n`,
      );
      accountBody = { balance: 77, exists: true, seq: 12, deposits: 7, incomingTransfers: [] };
      const none = await runCliInProcess(['balance', '--group', dir, '--client', toB64u(new Uint8Array(32))]);
      expect(none.stdout).not.toMatch(/transfers to this key/);
    } finally {
      accountBody = { balance: 77, exists: true, seq: 12, deposits: 7 };
    }
  });

  it('says so when no account exists for the key (a mistyped key reads 0 like an empty account)', async () => {
    accountBody = { balance: 0, exists: false, seq: 12, deposits: 1 };
    try {
      const r = await runCliInProcess(['balance', '--group', dir, '--client', toB64u(new Uint8Array(32))]);
      expect(r.code).toBe(0);
      expect(r.stdout.split('\n')[0]).toBe('0');
      expect(r.stdout).toMatch(
        /no account for this key: neither the genesis, a deposit nor a transfer made one/,
      );
      expect(r.stdout).toContain('the group has applied 1 deposit)');
    } finally {
      accountBody = { balance: 77, exists: true, seq: 12, deposits: 7 };
    }
  });

  it('one serial used reads so, not "1 refund or transfer applied" (one ordered over the balance moved nothing)', async () => {
    accountBody = {
      balance: 77,
      exists: true,
      seq: 12,
      deposits: 7,
      refunds: 1,
      pendingRefunds: [],
      pendingTransfers: [],
      heldFees: 0,
      refundable: 77,
    };
    try {
      const r = await runCliInProcess(['balance', '--group', dir]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(
        '\nit may take back or transfer 77 now (npx dropbear refund, npx dropbear transfer; serial 1 of its refunds and transfers used, with effect or not)\n',
      );
      accountBody = { ...accountBody, refunds: 0 };
      const none = await runCliInProcess(['balance', '--group', dir]);
      expect(none.stdout).toContain(
        'npx dropbear transfer; none of its refunds and transfers ordered yet)\n',
      );
    } finally {
      accountBody = { balance: 77, exists: true, seq: 12, deposits: 7 };
    }
  });

  it('a node that is down: NODE_UNREACHABLE naming --node (any node answers), as deposit, refund and transfer do', async () => {
    const r = await runCliInProcess(['balance', '--group', dir, '--node', '1']);
    expect([r.code, r.stdout]).toEqual([2, '']);
    expect(r.stderr).toMatch(
      /^error \[NODE_UNREACHABLE\]: nothing answered at .*; is the node running\? Any node of the group answers: ask another \(not node 1\) with --node ID\n$/,
    );
  });
});

describe('dropbear set-fee', () => {
  const setFee = (...args: string[]) => runCliInProcess(['set-fee', '--group', dir, ...args]);

  it("a fee that is not a whole number ≥ 0 is CLI_USAGE; a key that is not the node's is CONFIG_KEY_MISMATCH; nothing sent", async () => {
    const before = posted.length;
    for (const fee of ['-1', 'abc', '1.5', '9007199254740992']) {
      const r = await setFee('--node', '2', '--fee', fee);
      expect(r.code, fee).toBe(2);
      expect(r.stderr, fee).toMatch(/^error \[CLI_USAGE\]: --fee must be a whole number ≥ 0/);
    }
    const r = await setFee('--node', '2', '--fee', '3', '--key', join(dir, 'keys', 'node-1.json'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^error \[CONFIG_KEY_MISMATCH\]: .*node-1\.json is not the key the genesis names for node 2/,
    );
    expect(posted.length).toBe(before);
  });

  it("signs the version after the node's last applied and its waiting ones, with the node's key; 0 is a fee", async () => {
    txAnswer = { status: 'executed', seq: 13, applied: true };
    const r = await setFee('--node', '2', '--fee', '0');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const tx = posted.at(-1)!;
    expect(tx.kind).toBe('feeChange');
    if (tx.kind !== 'feeChange') return;
    expect(tx.change).toEqual({ node: 2, version: 5, fee: 0 });
    const genesis = readGenesis(join(dir, 'genesis.json'));
    expect(verifyTx(genesis, groupIdOf(genesis), tx)).toBe(true);
    expect(r.stdout).toMatch(/ordered in batch 13: node 2 now charges 0 per counted vote/);
  });

  // Any node takes a FeeChange (it is signed with the changing node's key): with its own node down, an
  // owner changes the fee through another. Node 1's API is a port nothing listens on; node 0's the fake.
  it('--via: through another node while its own is down; without it, NODE_UNREACHABLE naming --via', async () => {
    const before = posted.length;
    const down = await setFee('--node', '1', '--fee', '4', '--wait', '5000');
    expect(down.code).toBe(2);
    expect(down.stderr).toMatch(/^error \[NODE_UNREACHABLE\]: .*--via ID/);
    expect(posted.length).toBe(before);
    for (const via of ['9', 'x']) {
      const bad = await setFee('--node', '1', '--fee', '4', '--via', via);
      expect(bad.code, via).toBe(2);
      expect(bad.stderr, via).toMatch(/^error \[CLI_USAGE\]: --via/);
    }
    expect(posted.length).toBe(before);
    txAnswer = { status: 'executed', seq: 14, applied: true };
    const r = await setFee('--node', '1', '--fee', '4', '--via', '0');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(posted.length).toBe(before + 1);
    const tx = posted.at(-1)!;
    if (tx.kind !== 'feeChange') throw new Error(`posted a ${tx.kind}`);
    // The version after node 1's waiting change (9) that node 0 reports.
    expect(tx.change).toEqual({ node: 1, version: 10, fee: 4 });
    const genesis = readGenesis(join(dir, 'genesis.json'));
    expect(verifyTx(genesis, groupIdOf(genesis), tx)).toBe(true);
    expect(r.stdout).toMatch(/submitted [0-9a-f]{64} \(node 1: fee 1 → 4, fee version 10, through node 0\)/);
    expect(r.stdout).toMatch(/ordered in batch 14: node 1 now charges 4 per counted vote/);
  });
});

describe('dropbear infer --max-fee (after a fee raise the genesis fees no longer buy a quorum)', () => {
  const image = () => {
    const f = join(tmp, 'image.jpg');
    writeFileSync(f, Buffer.from([0xff, 0xd8, 0xff, 0xd9]));
    return f;
  };

  /**
   * `infer` sent to one node, giving up after `waitMs` (the nodes turn it away or are down: the default 30 s
   * made each of these tests wait that long).
   */
  const inferOne = (waitMs: number, ...args: string[]) =>
    runCliInProcess(['infer', '--group', dir, '--send-to', '1', '--wait', String(waitMs), ...args]);

  it("signs the request with the given maxFee; without it, the genesis fees' sum", async () => {
    requested.length = 0;
    const r = await inferOne(2000, '--max-fee', '12', image());
    expect(r.code).toBe(2);
    expect(requested.length).toBeGreaterThan(0);
    expect(new Set(requested)).toEqual(new Set([12]));
    requested.length = 0;
    await inferOne(2000, image());
    expect(new Set(requested)).toEqual(new Set([4]));
  });

  it("MAX_FEE_TOO_LOW from the nodes names --max-fee in the image's error line", async () => {
    requestAnswer = { status: 400, code: 'MAX_FEE_TOO_LOW' };
    try {
      const r = await inferOne(2000, image());
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(
        /^image\.jpg: error \[\w+\]: .*MAX_FEE_TOO_LOW.*\(sign a higher maxFee with --max-fee N\)$/m,
      );
    } finally {
      requestAnswer = { status: 402, code: 'INSUFFICIENT_FUNDS' };
    }
  });

  it('--wait bounds each image (the default is 30 s): given up on with its error line, and the next image is sent', async () => {
    requested.length = 0;
    const t0 = Date.now();
    const r = await inferOne(1000, image(), image());
    // Two images at 30 s each would take a minute; each gets its own error line.
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(r.code).toBe(2);
    expect(r.stderr.match(/^image\.jpg: error \[/gm)).toHaveLength(2);
    expect(requested.length).toBeGreaterThanOrEqual(2);
  });

  it('a --wait that is not a positive whole number of ms, or past the longest timer, is CLI_USAGE, nothing sent', async () => {
    requested.length = 0;
    for (const v of ['0', '-5', '1.5', 'x', '2147483648']) {
      const r = await runCliInProcess(['infer', '--group', dir, '--wait', v, image()]);
      expect(r.code, v).toBe(2);
      expect(r.stderr, v).toMatch(/^error \[CLI_USAGE\]: --wait must be /);
    }
    expect(requested).toEqual([]);
  });

  it('a --max-fee that is not a whole number ≥ 0 is CLI_USAGE, nothing sent', async () => {
    requested.length = 0;
    for (const v of ['1.5', '-1', 'x', '1,000']) {
      const r = await runCliInProcess(['infer', '--group', dir, '--max-fee', v, image()]);
      expect(r.code, v).toBe(2);
      expect(r.stderr, v).toMatch(/^error \[CLI_USAGE\]: --max-fee must be a whole number/);
    }
    expect(requested).toEqual([]);
  });
});

describe('dropbear withdraw', () => {
  const withdraw = (...args: string[]) => runCliInProcess(['withdraw', '--group', dir, ...args]);

  it("signs the serial after the node's last applied and its waiting ones, with the node's key", async () => {
    txAnswer = { status: 'executed', seq: 15, applied: true };
    const r = await withdraw('--node', '2', '--amount', '60');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const tx = posted.at(-1)!;
    if (tx.kind !== 'withdrawal') throw new Error(`posted a ${tx.kind}`);
    expect(tx.withdrawal).toEqual({ node: 2, serial: 5, amount: 60 });
    const genesis = readGenesis(join(dir, 'genesis.json'));
    expect(verifyTx(genesis, groupIdOf(genesis), tx)).toBe(true);
    expect(r.stdout).toMatch(/submitted [0-9a-f]{64} \(node 2: withdraw 60 of 100, serial 5\)/);
    expect(r.stdout).toMatch(/ordered in batch 15: node 2 withdrew 60/);
    // What is left counts the 20 waiting, as the refusal above 80 does (it said 40: the payable less 60).
    expect(r.stdout).toMatch(
      /node 2 withdrew 60; it may withdraw 20 more \(as the node read when this was submitted: GET \/v1\/owners says now\)\n/,
    );
  });

  it('--amount all takes the payable less the waiting (the largest of each serial: 15 + 5)', async () => {
    txAnswer = { status: 'executed', seq: 16, applied: true };
    const r = await withdraw('--node', '2', '--amount', 'all');
    expect(r.code, r.stderr).toBe(0);
    const tx = posted.at(-1)!;
    if (tx.kind !== 'withdrawal') throw new Error(`posted a ${tx.kind}`);
    expect(tx.withdrawal).toEqual({ node: 2, serial: 5, amount: 80 });
  });

  it('more than the node may withdraw, nothing left for `all`, bad amounts and keys: refused with their codes, nothing sent', async () => {
    const before = posted.length;
    const over = await withdraw('--node', '2', '--amount', '81');
    expect([over.code, over.stderr]).toEqual([
      2,
      expect.stringMatching(
        /^error \[TX_WITHDRAWAL_TOO_LARGE\]: node 2 may withdraw 100 \(20 more in withdrawals waiting to be ordered\), not 81; nothing was submitted/,
      ),
    ]);
    const none = await withdraw('--node', '0', '--amount', 'all');
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^error \[NOTHING_TO_WITHDRAW\]: node 0 may withdraw 0/);
    for (const amount of ['0', '-1', '1.5', 'half']) {
      const r = await withdraw('--node', '2', '--amount', amount);
      expect(r.code, amount).toBe(2);
      expect(r.stderr, amount).toMatch(/^error \[CLI_USAGE\]: --amount must be a positive whole number/);
    }
    const key = await withdraw('--node', '2', '--amount', '1', '--key', join(dir, 'keys', 'node-1.json'));
    expect(key.stderr).toMatch(/^error \[CONFIG_KEY_MISMATCH\]/);
    const down = await withdraw('--node', '1', '--amount', '1', '--wait', '5000');
    expect(down.stderr).toMatch(/^error \[NODE_UNREACHABLE\]: .*--via ID/);
    // Through another node that is down too: the same, nothing submitted (it said only "is the node running?").
    const via = await withdraw('--node', '2', '--amount', '1', '--via', '1', '--wait', '5000');
    expect(via.stderr).toMatch(
      /^error \[NODE_UNREACHABLE\]: .*Nothing was submitted; .*another \(not node 1\) with --via ID/,
    );
    expect(posted.length).toBe(before);
  });

  it('a node without withdrawals in its status or payable in its owners is BAD_RESPONSE, nothing submitted', async () => {
    const before = posted.length;
    const saved = ownersBody;
    ownersBody = { owners: [] };
    try {
      const r = await withdraw('--node', '2', '--amount', '1');
      expect(r.stderr).toMatch(/^error \[BAD_RESPONSE\]: .*\/v1\/owners answered without node 2's payable/);
    } finally {
      ownersBody = saved;
    }
    statusBody = { ...STATUS, withdrawals: undefined };
    try {
      const r = await withdraw('--node', '2', '--amount', '1');
      expect(r.stderr).toMatch(/^error \[BAD_RESPONSE\]: .*\/v1\/status answered without withdrawals/);
    } finally {
      statusBody = STATUS;
    }
    expect(posted.length).toBe(before);
  });
});

describe('dropbear refund', () => {
  const refund = (...args: string[]) => runCliInProcess(['refund', '--group', dir, ...args]);
  const ACCOUNT = CLIENT_ACCOUNT;

  it("signs the serial after the client's last applied and its waiting ones, with the client's key", async () => {
    accountBody = ACCOUNT;
    txAnswer = { status: 'executed', seq: 22, applied: true };
    const r = await refund('--amount', '100');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const tx = posted.at(-1)!;
    if (tx.kind !== 'refund') throw new Error(`posted a ${tx.kind}`);
    const client = readKeyFile(join(dir, 'keys', 'client.json'));
    expect(tx.refund).toEqual({ client: client.publicKey, serial: 6, amount: 100 });
    const genesis = readGenesis(join(dir, 'genesis.json'));
    expect(verifyTx(genesis, groupIdOf(genesis), tx)).toBe(true);
    expect(r.stdout).toContain(
      `submitted ${hex(txIdOf(tx))} (client ${toB64u(client.publicKey)}: take back 100 of 500, serial 6, through node 0)`,
    );
    expect(r.stdout).toMatch(/ordered in batch 22: the client took back 100;/);
  });

  // Refunds and transfers share the client's serials (one sequence): a transfer waiting at the node takes a
  // serial, and its amount is held out of what may be taken back (the refund took serial 6 beside it, a
  // rival: only one of the two could apply).
  it('counts the transfers waiting at the node: the serial after them, their amounts held (the node says refundable)', async () => {
    const payee = toB64u(new Uint8Array(32).fill(5));
    accountBody = {
      ...ACCOUNT,
      pendingTransfers: [
        { serial: 6, amount: 20, to: payee },
        { serial: 6, amount: 15, to: payee },
      ],
      refundable: 400,
    };
    txAnswer = { status: 'executed', seq: 22, applied: true };
    const r = await refund('--amount', 'all');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const tx = posted.at(-1)!;
    if (tx.kind !== 'refund') throw new Error(`posted a ${tx.kind}`);
    expect(tx.refund).toMatchObject({ serial: 7, amount: 400 });
    expect(r.stdout).toContain(
      'take back 400 of 500 (30 held by its requests waiting to be ordered, 70 in refunds and transfers waiting to be ordered), serial 7, through node 0)',
    );
  });

  it('--amount all takes what the node says may be taken back; --key names another client', async () => {
    accountBody = ACCOUNT;
    txAnswer = { status: 'executed', seq: 23, applied: true };
    const other = join(tmp, 'other.json');
    expect((await runCliInProcess(['keygen', '--out', other])).code).toBe(0);
    const r = await refund('--amount', 'all', '--key', other);
    expect(r.code, r.stderr).toBe(0);
    const tx = posted.at(-1)!;
    if (tx.kind !== 'refund') throw new Error(`posted a ${tx.kind}`);
    expect(tx.refund).toEqual({ client: readKeyFile(other).publicKey, serial: 6, amount: 420 });
    // 420 of 500: the line says where the other 80 are, else the numbers do not add up.
    expect(r.stdout).toContain(
      'take back 420 of 500 (30 held by its requests waiting to be ordered, 50 in refunds and transfers waiting to be ordered), serial 6, through node 0)',
    );
  });

  it('more than may be taken back, nothing left for `all`, no effect, bad amounts and a bad answer: their codes, nothing more sent', async () => {
    accountBody = ACCOUNT;
    const before = posted.length;
    const over = await refund('--amount', '421');
    expect([over.code, over.stderr]).toEqual([
      2,
      expect.stringMatching(
        /^error \[TX_REFUND_TOO_LARGE\]: the client \S+ holds 500 \(as of batch 21; 30 held by its requests waiting to be ordered, 50 in refunds and transfers waiting to be ordered\): it may take back 420, not 421; nothing was submitted\n$/,
      ),
    ]);
    accountBody = { ...ACCOUNT, refundable: 0 };
    const none = await refund('--amount', 'all');
    expect(none.stderr).toMatch(
      /^error \[NOTHING_TO_REFUND\]: the client \S+ holds 500 .*nothing is left to take back/,
    );
    for (const amount of ['0', '-1', '1.5', 'half']) {
      const r = await refund('--amount', amount);
      expect(r.stderr, amount).toMatch(/^error \[CLI_USAGE\]: --amount must be a positive whole number/);
    }
    expect((await refund('--amount', '1', '--node', '9')).stderr).toMatch(/^error \[CLI_USAGE\]: --node 9/);
    const down = await refund('--amount', '1', '--node', '1', '--wait', '5000');
    expect(down.stderr).toMatch(/^error \[NODE_UNREACHABLE\]/);
    accountBody = { balance: 77, exists: true, seq: 12, deposits: 7 }; // a node before refunds
    const old = await refund('--amount', '1');
    expect(old.stderr).toMatch(
      /^error \[BAD_RESPONSE\]: .*answered without balance, refunds, pendingRefunds, pendingTransfers/,
    );
    expect(posted.length).toBe(before);
    // Ordered without effect (the balance no longer covered it): TX_SUPERSEDED, exit 2.
    accountBody = ACCOUNT;
    txAnswer = { status: 'executed', seq: 24, applied: false };
    const noEffect = await refund('--amount', '5');
    expect(noEffect.code).toBe(2);
    expect(noEffect.stderr).toMatch(/^error \[TX_SUPERSEDED\]: .*a refund of more than the balance then/);
  });
  it('through a node that is down: NODE_UNREACHABLE saying nothing was submitted and naming --node, as withdraw names --via', async () => {
    const before = posted.length;
    const down = await refund('--amount', '1', '--node', '1', '--wait', '5000');
    expect(down.code).toBe(2);
    expect(down.stderr).toMatch(
      /^error \[NODE_UNREACHABLE\]: .*Nothing was submitted; any node of the group takes the refund: submit it through another \(not node 1\) with --node ID\n$/,
    );
    expect(posted.length).toBe(before);
  });
  it('a key with no account (the treasury\'s, a node\'s, a new one) says so, as balance does, not just "holds 0"; nothing sent', async () => {
    accountBody = { ...ACCOUNT, ...NO_ACCOUNT };
    const before = posted.length;
    const one = await refund('--amount', '1');
    expect([one.code, one.stderr]).toEqual([
      2,
      expect.stringMatching(
        /^error \[TX_REFUND_TOO_LARGE\]: the client \S+ has no account: neither the genesis, a deposit nor a transfer made one \(is it the key you meant\?\); nothing was submitted\n$/,
      ),
    ]);
    const all = await refund('--amount', 'all');
    expect(all.stderr).toMatch(
      /^error \[NOTHING_TO_REFUND\]: the client \S+ has no account: .*is it the key you meant/,
    );
    expect(posted.length).toBe(before);
  });
  it('TIMEOUT while the refund waits names `dropbear tx` with its id, which says whether it applied (balance shows no refund waiting)', async () => {
    accountBody = ACCOUNT;
    txAnswer = { status: 'pending' };
    const r = await refund('--amount', '5', '--wait', '600');
    expect(r.code).toBe(2);
    const txId = /^submitted ([0-9a-f]{64})/.exec(r.stdout)![1];
    expect(r.stderr).toMatch(/^error \[TIMEOUT\]: not ordered within 600 ms; it may still be/);
    expect(r.stderr).toContain(`\`npx dropbear tx --group ${dir} ${txId}\``);
    expect(r.stderr).not.toContain('dropbear balance');
  });
  it('`all` refused by the node (a request of the client came in after it was read) reads again and takes what is left; an amount says nothing was submitted', async () => {
    accountBody = ACCOUNT;
    txAnswer = { status: 'executed', seq: 25, applied: true };
    refundRefusals = 1;
    const r = await refund('--amount', 'all');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/ordered in batch 25: the client took back 420;/);
    refundRefusals = 1;
    const before = posted.length;
    const fixed = await refund('--amount', '420');
    expect(fixed.code).toBe(2);
    expect(fixed.stderr).toMatch(
      /^error \[TX_REFUND_TOO_LARGE\]: .*it may take back 416, not 420; nothing was submitted/,
    );
    expect(posted.length).toBe(before);
  });
  it('a bad --amount names `all` among what refund and withdraw take ("ALL" read only "a positive whole number")', async () => {
    for (const cmd of [
      ['refund', '--group', dir],
      ['withdraw', '--group', dir, '--node', '2'],
    ]) {
      const r = await runCliInProcess([...cmd, '--amount', 'ALL']);
      expect(r.stderr, cmd[0]).toBe(
        'error [CLI_USAGE]: --amount must be a positive whole number (at most 2^53 − 1) or `all`, not "ALL"\n',
      );
    }
    expect((await deposit('--amount', 'all')).stderr).toMatch(
      /positive whole number \(at most 2\^53 − 1\), not "all"/,
    );
  });
});

describe('dropbear transfer', () => {
  const transfer = (...args: string[]) => runCliInProcess(['transfer', '--group', dir, ...args]);
  const payee = () => readKeyFile(join(tmp, 'payee.json')).publicKey;
  const client = () => readKeyFile(join(dir, 'keys', 'client.json')).publicKey;
  // CLIENT_ACCOUNT; no transfer waits.
  const ACCOUNT = { ...CLIENT_ACCOUNT, pendingTransfers: [] };

  beforeAll(async () => {
    expect((await runCliInProcess(['keygen', '--out', join(tmp, 'payee.json')])).code).toBe(0);
  });

  it("signs the serial after the client's refunds waiting (one sequence), with the client's key, paying --to's key", async () => {
    accountBody = ACCOUNT;
    txAnswer = { status: 'executed', seq: 31, applied: true };
    const to = toB64u(payee());
    const r = await transfer('--to', to, '--amount', '100');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const tx = posted.at(-1)!;
    if (tx.kind !== 'transfer') throw new Error(`posted a ${tx.kind}`);
    expect(tx.transfer).toEqual({ client: client(), to: payee(), serial: 6, amount: 100 });
    const genesis = readGenesis(join(dir, 'genesis.json'));
    expect(verifyTx(genesis, groupIdOf(genesis), tx)).toBe(true);
    expect(r.stdout).toContain(
      `submitted ${hex(txIdOf(tx))} (client ${toB64u(client())}: pay 100 of 500 to ${to}, serial 6, through node 0)`,
    );
    expect(r.stdout).toContain(`ordered in batch 31: the client paid 100 to ${to}\n`);
  });

  it('to a key with no account: the submitted line says the transfer opens one (a mistyped key would take the money)', async () => {
    accountBody = ACCOUNT;
    txAnswer = { status: 'executed', seq: 31, applied: true };
    const to = toB64u(new Uint8Array(32).fill(9));
    accountsByKey.set(to, { ...ACCOUNT, balance: 0, exists: false, seq: 21, refunds: 0, refundable: 0 });
    try {
      const r = await transfer('--to', to, '--amount', '100');
      expect([r.code, r.stderr]).toEqual([0, '']);
      expect(r.stdout).toContain(
        `: pay 100 of 500 to ${to} (which has no account as of batch 21: this transfer opens one; if it should have had one, check the key), serial 6, through node 0)`,
      );
    } finally {
      accountsByKey.clear();
    }
  });

  it('--to takes a key file (its public key is read); a transfer waiting takes its serial and its amount, `all` the rest', async () => {
    const other = toB64u(new Uint8Array(32).fill(6));
    accountBody = {
      ...ACCOUNT,
      pendingTransfers: [{ serial: 6, amount: 20, to: other }],
      refundable: 400,
    };
    txAnswer = { status: 'executed', seq: 32, applied: true };
    const r = await transfer('--to', join(tmp, 'payee.json'), '--amount', 'all');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const tx = posted.at(-1)!;
    if (tx.kind !== 'transfer') throw new Error(`posted a ${tx.kind}`);
    expect(tx.transfer).toEqual({ client: client(), to: payee(), serial: 7, amount: 400 });
    expect(r.stdout).toContain(
      `pay 400 of 500 to ${toB64u(payee())} (30 held by its requests waiting to be ordered, 70 in refunds and transfers waiting to be ordered), serial 7, through node 0)`,
    );
    expect(r.stdout).toContain(`ordered in batch 32: the client paid 400 to ${toB64u(payee())}\n`);
  });

  it('more than the client may transfer, or `all` with nothing left: refused with their codes, nothing submitted', async () => {
    accountBody = ACCOUNT;
    const before = posted.length;
    const over = await transfer('--to', toB64u(payee()), '--amount', '421');
    expect([over.code, over.stderr]).toEqual([
      2,
      expect.stringMatching(
        /^error \[TX_TRANSFER_TOO_LARGE\]: the client \S+ holds 500 \(as of batch 21; 30 held by its requests waiting to be ordered, 50 in refunds and transfers waiting to be ordered\): it may transfer 420, not 421; nothing was submitted\n$/,
      ),
    ]);
    accountBody = { ...ACCOUNT, refundable: 0 };
    const none = await transfer('--to', toB64u(payee()), '--amount', 'all');
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(
      /^error \[NOTHING_TO_TRANSFER\]: the client \S+ holds 500 .*nothing is left to transfer; nothing was submitted\n$/,
    );
    expect(posted.length).toBe(before);
  });

  it('to the paying client itself: TX_TRANSFER_TO_SELF before anything is signed or asked (a key or a key file)', async () => {
    accountBody = ACCOUNT;
    const before = posted.length;
    const own = await transfer('--to', toB64u(client()), '--amount', '5');
    expect([own.code, own.stderr]).toEqual([
      2,
      expect.stringMatching(
        /^error \[TX_TRANSFER_TO_SELF\]: --to is the paying client's own key \(\S+\): a transfer to itself would move nothing; nothing was submitted\n$/,
      ),
    ]);
    // Through a node that is down: refused before it is asked.
    const file = await transfer(
      '--key',
      join(tmp, 'payee.json'),
      '--to',
      join(tmp, 'payee.json'),
      '--amount',
      '5',
      '--node',
      '1',
    );
    expect(file.stderr).toMatch(/^error \[TX_TRANSFER_TO_SELF\]/);
    expect(posted.length).toBe(before);
  });

  it("to a node's key or the treasury's key of the genesis: TRANSFER_TO_GROUP_KEY, nothing signed or asked; --allow-group-key pays it", async () => {
    accountBody = ACCOUNT;
    const genesis = readGenesis(join(dir, 'genesis.json'));
    const before = posted.length;
    const node2 = genesis.nodes[2];
    const toNode = await transfer('--to', toB64u(node2.publicKey), '--amount', '5', '--node', '1');
    expect([toNode.code, toNode.stderr]).toEqual([
      2,
      `error [TRANSFER_TO_GROUP_KEY]: --to is node 2's key (owner ${JSON.stringify(node2.owner)}) (${toB64u(node2.publicKey)}): a transfer opens a client account for that key, which only requests and refunds signed with it spend; it pays no owner's earnings (\`dropbear withdraw\` pays those out). Nothing was submitted; pass --allow-group-key to pay that account anyway\n`,
    ]);
    const toTreasury = await transfer('--to', toB64u(genesis.treasury), '--amount', '5');
    expect(toTreasury.stderr).toMatch(/^error \[TRANSFER_TO_GROUP_KEY\]: --to is the treasury's key \(/);
    expect(posted.length).toBe(before);
    txAnswer = { status: 'executed', seq: 33, applied: true };
    const allowed = await transfer('--to', toB64u(node2.publicKey), '--amount', '5', '--allow-group-key');
    expect([allowed.code, allowed.stderr]).toEqual([0, '']);
    const tx = posted.at(-1)!;
    if (tx.kind !== 'transfer') throw new Error(`posted a ${tx.kind}`);
    expect(tx.transfer.to).toEqual(node2.publicKey);
  });

  it('a --to that is neither a public key nor a key file is CLI_USAGE naming what it takes; nothing sent', async () => {
    const before = posted.length;
    const notKey = join(tmp, 'not-a-key.json');
    writeFileSync(notKey, '{"hello": 1}', { mode: 0o600 });
    // A key file others may read is still refused as one.
    const openKey = join(tmp, 'open-key.json');
    writeFileSync(openKey, readFileSync(join(tmp, 'payee.json')), { mode: 0o644 });
    chmodSync(openKey, 0o644);
    const openGenesis = join(tmp, 'genesis-copy.json');
    copyFileSync(join(dir, 'genesis.json'), openGenesis);
    chmodSync(openGenesis, 0o644);
    for (const [to, why] of [
      [
        'bob',
        /^error \[CLI_USAGE\]: --to must be the payee's public key .*or its key file, got "bob" \(no such file\)\n$/,
      ],
      [toB64u(new Uint8Array(31)), /^error \[CLI_USAGE\]: --to must be the payee's public key/],
      [
        hex(new Uint8Array(32).fill(7)),
        /^error \[CLI_USAGE\]: --to must be .*: that is hex; give the base64url form/,
      ],
      [notKey, /^error \[KEY_FILE_INVALID\]: .*not-a-key\.json is not an ed25519 key file/],
      // A folder read "(no such file)"; a file others may read that is no key (genesis.json) was refused as
      // "this secret key" with `chmod 600` as the fix (a walkthrough, 2026-12-07).
      [tmp, /^error \[CLI_USAGE\]: --to ".*" is a folder, not a key file: give the payee's public key/],
      [
        openGenesis,
        /^error \[KEY_FILE_INVALID\]: .*genesis-copy\.json is not an ed25519 key file \(kind, 64-hex-digit seed\): --to takes the payee's public key/,
      ],
      [openKey, /^error \[KEY_FILE_PERMISSIONS\]: .*open-key\.json has mode 0644/],
    ] as const) {
      const r = await transfer('--to', to, '--amount', '5');
      expect(r.code, to).toBe(2);
      expect(r.stderr, to).toMatch(why);
    }
    const missing = await transfer('--amount', '5');
    expect(missing.stderr).toMatch(/^error \[CLI_USAGE\]: .*--to/);
    for (const amount of ['0', '-1', '1.5', 'ALL']) {
      const r = await transfer('--to', toB64u(payee()), '--amount', amount);
      expect(r.stderr, amount).toMatch(
        /^error \[CLI_USAGE\]: --amount must be a positive whole number \(at most 2\^53 − 1\) or `all`/,
      );
    }
    expect(posted.length).toBe(before);
  });

  it('a key with no account says so (TX_TRANSFER_TOO_LARGE; `all`: NOTHING_TO_TRANSFER), nothing sent', async () => {
    accountBody = { ...ACCOUNT, ...NO_ACCOUNT };
    const before = posted.length;
    const one = await transfer('--to', toB64u(payee()), '--amount', '1');
    expect([one.code, one.stderr]).toEqual([
      2,
      expect.stringMatching(
        /^error \[TX_TRANSFER_TOO_LARGE\]: the client \S+ has no account: neither the genesis, a deposit nor a transfer made one \(is it the key you meant\?\); nothing was submitted\n$/,
      ),
    ]);
    const all = await transfer('--to', toB64u(payee()), '--amount', 'all');
    expect(all.stderr).toMatch(/^error \[NOTHING_TO_TRANSFER\]: the client \S+ has no account/);
    expect(posted.length).toBe(before);
  });

  it('`all` refused by the node (409 TX_TRANSFER_TOO_LARGE: a request came in after it was read) reads again; an amount says nothing was submitted', async () => {
    accountBody = ACCOUNT;
    txAnswer = { status: 'executed', seq: 33, applied: true };
    refusalCode = 'TX_TRANSFER_TOO_LARGE';
    try {
      refundRefusals = 2;
      const r = await transfer('--to', toB64u(payee()), '--amount', 'all');
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`ordered in batch 33: the client paid 420 to ${toB64u(payee())}`);
      refundRefusals = 1;
      const before = posted.length;
      const fixed = await transfer('--to', toB64u(payee()), '--amount', '420');
      expect(fixed.code).toBe(2);
      expect(fixed.stderr).toMatch(/^error \[TX_TRANSFER_TOO_LARGE\]: .*not 420; nothing was submitted\n$/);
      expect(posted.length).toBe(before);
    } finally {
      refundRefusals = 0;
      refusalCode = 'TX_REFUND_TOO_LARGE';
    }
  });

  it('TIMEOUT names `dropbear tx` with its id; ordered without effect is TX_SUPERSEDED; a node down names --node', async () => {
    accountBody = ACCOUNT;
    txAnswer = { status: 'pending' };
    const r = await transfer('--to', toB64u(payee()), '--amount', '5', '--wait', '600');
    expect(r.code).toBe(2);
    const txId = /^submitted ([0-9a-f]{64})/.exec(r.stdout)![1];
    expect(r.stderr).toMatch(/^error \[TIMEOUT\]: not ordered within 600 ms; it may still be/);
    expect(r.stderr).toContain(`\`npx dropbear tx --group ${dir} ${txId}\``);
    txAnswer = { status: 'executed', seq: 34, applied: false };
    const noEffect = await transfer('--to', toB64u(payee()), '--amount', '5');
    expect(noEffect.code).toBe(2);
    expect(noEffect.stderr).toMatch(/^error \[TX_SUPERSEDED\]: .*a transfer of more than the balance then/);
    const before = posted.length;
    const down = await transfer('--to', toB64u(payee()), '--amount', '1', '--node', '1', '--wait', '5000');
    expect(down.stderr).toMatch(
      /^error \[NODE_UNREACHABLE\]: .*Nothing was submitted; any node of the group takes the transfer: submit it through another \(not node 1\) with --node ID\n$/,
    );
    expect(posted.length).toBe(before);
  });

  it('a node that takes the call and never answers (stopped): TIMEOUT saying nothing was submitted and naming --node', async () => {
    // It said only "did not answer within --wait 800 ms; nothing was submitted" (a walkthrough, 2026-12-07).
    const before = posted.length;
    const r = await transfer('--to', toB64u(payee()), '--amount', '1', '--node', '3', '--wait', '800');
    expect([r.code, r.stdout]).toEqual([2, '']);
    expect(r.stderr).toMatch(
      /^error \[TIMEOUT\]: node 3 \(\S+\/v1\/accounts\/\S+\) did not answer within --wait 800 ms; nothing was submitted\. If node 3 hangs, any node of the group takes the transfer: submit it through another \(not node 3\) with --node ID\n$/,
    );
    expect(posted.length).toBe(before);
  });
});
