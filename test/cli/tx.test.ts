/**
 * `dropbear tx TXID`: the verdict on the nodes' words (f + 1 agreeing on one batch), and the command on a
 * group whose nodes do not answer. The real path (four node processes, a withdrawal) is in
 * test/e2e/group.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGroup } from '../../src/cli/group.ts';
import { readGenesis } from '../../src/cli/io.ts';
import { type TxWord, txVerdict } from '../../src/cli/tx.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';
import { groupIdOf, hex, signWithdrawal, Tx, toJson, txIdOf } from '../../src/protocol/index.ts';
import { readKeyFile } from '../../src/protocol/keyfile.ts';
import { runCliInProcess } from './run-cli.ts';

const applied = (node: number, seq = 7): TxWord => ({ node, status: 'executed', seq, applied: true });
const noEffect = (node: number, seq = 7): TxWord => ({ node, status: 'executed', seq, applied: false });

describe('txVerdict', () => {
  it('applied once f + 1 say executed and applied in one batch; the nodes that say otherwise are named', () => {
    expect(txVerdict([applied(0), { node: 1, status: 'pending' }, applied(3)], 1)).toEqual({
      verdict: 'applied',
      seq: 7,
      nodes: [0, 3],
      split: [],
    });
    expect(txVerdict([applied(0), applied(1), noEffect(2), applied(3, 8)], 1)).toEqual({
      verdict: 'applied',
      seq: 7,
      nodes: [0, 1],
      split: [2, 3],
    });
  });

  it('not confirmed with f alone, or f + 1 split over batches or over applied; without effect when f + 1 say so', () => {
    expect(txVerdict([applied(0), { node: 1, status: 'unknown' }], 1).verdict).toBe('unconfirmed');
    expect(txVerdict([applied(0, 7), applied(1, 8)], 1).verdict).toBe('unconfirmed');
    expect(txVerdict([applied(0), noEffect(1)], 1).verdict).toBe('unconfirmed');
    expect(txVerdict([noEffect(0), noEffect(2), applied(3)], 1)).toMatchObject({
      verdict: 'noEffect',
      nodes: [0, 2],
      split: [3],
    });
    // f = 2: three are needed.
    expect(txVerdict([applied(0), applied(1)], 2).verdict).toBe('unconfirmed');
    expect(txVerdict([applied(0), applied(1), applied(5)], 2).verdict).toBe('applied');
  });
});

describe('txVerdict, the answers of correct nodes at different points', () => {
  it('applied wins over an earlier batch that carried it without effect (nodes behind, not faulty)', () => {
    // A withdrawal ordered before the serial it follows is carried without effect (batch 7) and proposed
    // again (replica.settleTxs), applied in batch 9. Nodes 0 and 1 have executed batch 7, not yet 9: their
    // word is a correct node's. The verdict is applied, and they are not named as disagreeing.
    expect(txVerdict([noEffect(0, 7), noEffect(1, 7), applied(2, 9), applied(3, 9)], 1)).toEqual({
      verdict: 'applied',
      seq: 9,
      nodes: [2, 3],
      split: [],
    });
  });

  it('counts each node once: a node listed twice in group.json is one word', () => {
    expect(txVerdict([applied(2), applied(2)], 1).verdict).toBe('unconfirmed');
    expect(txVerdict([noEffect(1), noEffect(1), applied(0)], 1).verdict).toBe('unconfirmed');
  });
});

describe('dropbear tx', () => {
  let tmp: string;
  let dir: string;
  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'dropbear-tx-cli-'));
    dir = join(tmp, 'group');
    await initGroup({ dir, nodes: 4, models: Array(4).fill(STANDIN_MODEL) });
    // No node runs: every API is a port nothing listens on (one each: group.json refuses one address given
    // to two nodes).
    const file = join(dir, 'group.json');
    const g = JSON.parse(readFileSync(file, 'utf8')) as { nodes: { api: string }[] };
    for (const [i, n] of g.nodes.entries()) n.api = `http://127.0.0.1:${i + 1}`;
    writeFileSync(file, JSON.stringify(g, null, 2));
  }, 60_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('an id that is not 64 hex digits is CLI_USAGE (exit 2)', async () => {
    for (const id of ['abc', 'zz'.repeat(32), 'ab'.repeat(33)]) {
      const r = await runCliInProcess(['tx', '--group', dir, id]);
      expect(r.code, id).toBe(2);
      expect(r.stderr, id).toMatch(/^error \[CLI_USAGE\]: <txId> must be 64 hex digits/);
    }
  });

  it('nodes that do not answer: each named, not confirmed, exit 1; --json says the same', async () => {
    const r = await runCliInProcess(['tx', '--group', dir, 'AB'.repeat(32)]);
    expect(r.code).toBe(1);
    expect(r.stdout.split('\n').filter((l) => /^node \d: NODE_UNREACHABLE/.test(l))).toHaveLength(4);
    expect(r.stdout).toMatch(/^not confirmed: fewer than f \+ 1 = 2 nodes/m);
    expect(r.stdout).toMatch(/^transaction: no node returned it/m);
    const j = await runCliInProcess(['tx', '--group', dir, 'ab'.repeat(32), '--json']);
    expect(j.code).toBe(1);
    const body = JSON.parse(j.stdout) as { txId: string; verdict: string; answers: { status: string }[] };
    expect(body.txId).toBe('ab'.repeat(32));
    expect(body.verdict).toBe('unconfirmed');
    expect(body.answers.map((a) => a.status)).toEqual(['error', 'error', 'error', 'error']);
  });

  it('counts only the genesis nodes: an entry of group.json with an id the genesis lacks is no word', async () => {
    // A liar that says "executed and applied" for anything, listed as node 0 and as a node 9 the four-node
    // genesis does not have: one node's word, not f + 1 = 2. Two servers: group.json refuses one address
    // given to two entries.
    const liars = [0, 1].map(() =>
      createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ status: 'executed', seq: 5, applied: true }));
      }),
    );
    for (const l of liars) await new Promise<void>((r) => l.listen(0, '127.0.0.1', r));
    const [url, url9] = liars.map((l) => `http://127.0.0.1:${(l.address() as { port: number }).port}`);
    const file = join(dir, 'group.json');
    const before = readFileSync(file, 'utf8');
    try {
      const g = JSON.parse(before) as { nodes: { id: number; api: string; p2p: string }[] };
      g.nodes[0].api = url;
      g.nodes.push({ ...g.nodes[0], id: 9, api: url9, p2p: 'tcp://127.0.0.1:9' });
      writeFileSync(file, JSON.stringify(g, null, 2));
      const r = await runCliInProcess(['tx', '--group', dir, 'cd'.repeat(32)]);
      expect(r.stdout).toMatch(/^not confirmed/m);
      expect(r.stdout).toMatch(/^node 9: .*not a node of the genesis/m);
      expect(r.code).toBe(1);
    } finally {
      writeFileSync(file, before);
      for (const l of liars) await new Promise((r) => l.close(r));
    }
  });
});

describe('dropbear tx: what the transaction is, as the nodes return it, checked against the id', () => {
  let tmp: string;
  let dir: string;
  const servers: Server[] = [];
  afterAll(() => {
    for (const s of servers) s.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('prints it once checked; a node returning another transaction for the id is named BAD_RESPONSE and its word does not count', async () => {
    tmp = mkdtempSync(join(tmpdir(), 'dropbear-tx-what-'));
    dir = join(tmp, 'group');
    await initGroup({ dir, nodes: 4, models: Array(4).fill(STANDIN_MODEL) });
    const genesis = readGenesis(join(dir, 'genesis.json'));
    const key = readKeyFile(join(dir, 'keys', 'node-1.json'));
    const real = signWithdrawal(groupIdOf(genesis), { node: 1, serial: 1, amount: 5 }, key);
    const other = signWithdrawal(groupIdOf(genesis), { node: 1, serial: 1, amount: 5000 }, key);
    const id = hex(txIdOf(real));
    // Nodes 0 and 1 answer with the transaction; node 2 with another one for the same id; node 3 is down.
    const answer = (tx: Tx) =>
      JSON.stringify({ txId: id, status: 'executed', seq: 9, applied: true, tx: toJson(Tx, tx) });
    for (const body of [answer(real), answer(real), answer(other)]) {
      const s = createServer((_req, res) =>
        res.writeHead(200, { 'content-type': 'application/json' }).end(body),
      );
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      servers.push(s);
    }
    const file = join(dir, 'group.json');
    const g = JSON.parse(readFileSync(file, 'utf8')) as { nodes: { api: string }[] };
    g.nodes.forEach((n, i) => {
      n.api = i < 3 ? `http://127.0.0.1:${(servers[i].address() as AddressInfo).port}` : 'http://127.0.0.1:1';
    });
    writeFileSync(file, JSON.stringify(g, null, 2));
    const r = await runCliInProcess(['tx', '--group', dir, id]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^transaction: a withdrawal: node 1 takes out 5 \(its serial 1\)$/m);
    expect(r.stdout).toMatch(/^node 2: BAD_RESPONSE: .* a transaction that does not hash to the id$/m);
    expect(r.stdout).toMatch(
      /^applied: nodes 0, 1 \(f \+ 1 = 2 needed\) say executed in batch 9 and applied$/m,
    );
    const j = JSON.parse((await runCliInProcess(['tx', '--group', dir, id, '--json'])).stdout) as {
      tx: unknown;
      what: string;
    };
    expect(j.tx).toEqual(toJson(Tx, real));
    expect(j.what).toBe('a withdrawal: node 1 takes out 5 (its serial 1)');
  });
});
