/**
 * `dropbear status` and `dropbear model-update` against "nodes" that are not Dropbear nodes: HTTP servers in
 * this process at the group's API addresses that answer 200 with text, 500, 200 with `{}`, or take the
 * connection and never answer. Each command must end on its own with one line per problem naming a stable
 * code (BAD_RESPONSE, NODE_TIMEOUT, NODE_UNREACHABLE), never a parser's message, a row of "undefined", or a
 * wait without end. The real CLI runs as a child process where a node never answers (a process that ends
 * shows that nothing of the command is left waiting); where every node answers or nothing listens, or the
 * command refuses before it sends anything, the same program runs in this process (runCliInProcess: a
 * spawn costs about a second of CPU).
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGroup, loadGroup } from '../../src/cli/group.ts';
import { expectObject, fetchNodeJson, fetchNodeStatus } from '../../src/cli/http.ts';
import { checkImages } from '../../src/cli/infer.ts';
import { importModels } from '../../src/inference/store.ts';
import { buildApi } from '../../src/node/api.ts';
import { NodeHost } from '../../src/node/host.ts';
import { STANDIN_MODEL, startStandIn } from '../../src/node/standin-backend.ts';
import { type DropbearError, groupIdOf, signModelUpdate, Tx, toJson } from '../../src/protocol/index.ts';
import { readKeyFile } from '../../src/protocol/keyfile.ts';
import { MODELS_DIR } from '../shared.ts';
import { type Ran, runCli, runCliInProcess } from './run-cli.ts';

const MODEL = 'mobilenet_v1_0.25_128_quant';
/** A child still running after this long is killed and the test fails (code null): it would never end. */
const KILL_AFTER_MS = 60_000;

function cli(...args: string[]): Promise<Ran> {
  return runCli(args, KILL_AFTER_MS);
}

type Mode = 'text' | 'http500' | 'emptyObject' | 'silent';
const MODES: Mode[] = ['text', 'http500', 'emptyObject', 'silent'];

function server(mode: Mode): Promise<Server> {
  const s = createServer((_req, res) => {
    if (mode === 'text') res.writeHead(200, { 'content-type': 'text/plain' }).end('hello, not json');
    else if (mode === 'http500') res.writeHead(500, { 'content-type': 'text/plain' }).end('boom');
    else if (mode === 'emptyObject') res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    // 'silent': takes the request and never answers
  });
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r(s)));
}

let tmp: string;
let groupDir: string;
let home: string;
const servers: Server[] = [];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'dropbear-node-answers-'));
  groupDir = join(tmp, 'group');
  home = join(tmp, 'home');
  await initGroup({ dir: groupDir, nodes: 4, models: Array(4).fill(STANDIN_MODEL) });
  await importModels(join(MODELS_DIR, `${MODEL}.onnx`), home);
  // Node i's API is now a server answering as MODES[i].
  for (const m of MODES) servers.push(await server(m));
  const file = join(groupDir, 'group.json');
  const g = JSON.parse(readFileSync(file, 'utf8')) as { nodes: { api: string }[] };
  g.nodes.forEach((n, i) => {
    n.api = `http://127.0.0.1:${(servers[i].address() as AddressInfo).port}`;
  });
  writeFileSync(file, JSON.stringify(g, null, 2));
}, 60_000);

afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  rmSync(tmp, { recursive: true, force: true });
});

describe('dropbear status against servers that are not Dropbear nodes', () => {
  it('reports each with a code, prints no "undefined", counts none as healthy and exits 1', async () => {
    const r = await cli('status', '--group', groupDir);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).not.toMatch(/undefined|Unexpected token/);
    const rows = r.stdout.split('\n').slice(1, 5);
    expect(rows[0]).toMatch(
      /NO .*BAD_RESPONSE: .*answered HTTP 200 with a body that is not JSON \("hello, not json"\)/,
    );
    expect(rows[1]).toMatch(/NO .*BAD_RESPONSE: .*answered HTTP 500 with a body that is not JSON \("boom"\)/);
    expect(rows[2]).toMatch(/NO .*BAD_RESPONSE: .*answered without view, primary, lastExecuted/);
    expect(rows[3]).toMatch(/NO .*NODE_TIMEOUT: .*did not answer within 3000 ms/);
  }, 90_000);

  it('--json gives every row its numbers as null and an error', async () => {
    const r = await cli('status', '--group', groupDir, '--json');
    expect(r.code, r.stderr).toBe(1);
    const rows = JSON.parse(r.stdout) as Record<string, unknown>[];
    expect(rows).toHaveLength(4);
    for (const row of rows) {
      expect(row).toMatchObject({
        healthy: false,
        ready: false,
        view: null,
        primary: null,
        lastExecuted: null,
      });
      expect(row.error).toMatch(/^(BAD_RESPONSE|NODE_TIMEOUT): /);
    }
  }, 90_000);
});

describe('dropbear status of a node catching up', () => {
  it('says so after its last executed batch, with how far behind, its fee before the model; --json has catchingUp, behindBy and fee', async () => {
    const status = (catchingUp: boolean, behindBy: number) =>
      JSON.stringify({
        id: 0,
        view: 3,
        primary: 3,
        lastExecuted: 435,
        catchingUp,
        behindBy,
        fees: [7, 12345],
        // Node 1's own change waiting; node 0's of another node is not its row's.
        pendingFeeChanges: catchingUp ? [{ node: 1, version: 1, fee: 5 }] : [{ node: 1, version: 2, fee: 9 }],
      });
    const bodies = [status(true, 99), status(false, 1)];
    const nodes: Server[] = [];
    for (const body of bodies) {
      const s = createServer((req, res) => {
        if (req.url === '/v1/status') res.writeHead(200, { 'content-type': 'application/json' }).end(body);
        else res.writeHead(200).end();
      });
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      nodes.push(s);
    }
    try {
      const dir = join(tmp, 'catching-up');
      await initGroup({ dir, nodes: 4, models: Array(4).fill(STANDIN_MODEL) });
      const file = join(dir, 'group.json');
      const g = JSON.parse(readFileSync(file, 'utf8')) as { nodes: { api: string }[] };
      // Nodes 0 and 1 answer; 2 and 3 are the text and 500 servers (their rows are errors, exit 1).
      g.nodes.forEach((n, i) => {
        n.api = `http://127.0.0.1:${((i < 2 ? nodes[i] : servers[i - 2]).address() as AddressInfo).port}`;
      });
      writeFileSync(file, JSON.stringify(g, null, 2));
      const text = await runCliInProcess(['status', '--group', dir]);
      const lines = text.stdout.split('\n');
      expect(lines[0]).toMatch(/ executed +fee +model$/);
      const rows = lines.slice(1, 5);
      // The fee column, each node's own fee as it says it (`fees`), then the model column.
      expect(rows[0]).toMatch(/ 435 +7 +- {2}\(catching up: 99 behind\)$/);
      // A batch behind in the normal case is no news: nothing after the model column (no model said: -).
      // Its own fee change waiting to be ordered, as the model column shows updates waiting.
      expect(rows[1]).toMatch(/ 435 +12345 +- {2}\(waiting to be ordered: fee 9\)$/);
      // A node whose status could not be read: - for its fee, as for its other numbers.
      expect(rows[2]).toMatch(/ - +- +- +- {2}\(BAD_RESPONSE/);
      const json = JSON.parse((await runCliInProcess(['status', '--group', dir, '--json'])).stdout);
      expect(json.slice(0, 2)).toMatchObject([
        { healthy: true, lastExecuted: 435, catchingUp: true, behindBy: 99, fee: 7, feesWaiting: [] },
        {
          healthy: true,
          lastExecuted: 435,
          catchingUp: false,
          behindBy: 1,
          fee: 12345,
          feesWaiting: [{ version: 2, fee: 9 }],
        },
      ]);
    } finally {
      for (const s of nodes) s.close();
    }
  });
});

describe('dropbear model-update against servers that are not Dropbear nodes', () => {
  /** In a child process for node 3 and the silent POST (a wait that must end with the process). */
  const update = (node: number, run: (...args: string[]) => Promise<Ran> = cli) =>
    run(
      'model-update',
      '--group',
      groupDir,
      '--node',
      String(node),
      '--model',
      MODEL,
      '--home',
      home,
      '--wait',
      '1000',
    );

  const cases: [string, number, RegExp][] = [
    [
      '200 with text',
      0,
      /^error \[BAD_RESPONSE\]: .*\/v1\/group answered HTTP 200 with a body that is not JSON/,
    ],
    ['500 with text', 1, /^error \[BAD_RESPONSE\]: .*\/v1\/group answered HTTP 500/],
    ['200 with {}', 2, /^error \[BAD_RESPONSE\]: .*\/v1\/group answered without a list of models/],
    // It waited forever, whatever --wait said; then 10 s, whatever --wait said: --wait bounds the command.
    [
      'no answer at all',
      3,
      /^error \[TIMEOUT\]: node 3 \(http:\/\/127\.0\.0\.1:\d+\/v1\/group\) did not answer within --wait 1000 ms; nothing was submitted$/m,
    ],
  ];
  for (const [what, node, message] of cases)
    it(`${what}: one line with the code, exit 2`, async () => {
      const r = await update(node, node === 3 ? cli : (...args) => runCliInProcess(args));
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }, 90_000);

  // The group view comes back at once; the POST of the update is taken and never answered. It waited 10 s
  // whatever --wait said, and then said NODE_TIMEOUT without a word on whether the update went in.
  it('a node silent on the POST: TIMEOUT naming the node and the wait, and that the update may be in', async () => {
    const s = createServer((req, res) => {
      if (req.method === 'GET' && req.url === '/v1/group')
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            models: [0, 1, 2, 3].map((node) => ({ node, digest: '00'.repeat(32), version: 0 })),
          }),
        );
      // POST /v1/txs: taken, never answered
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const file = join(groupDir, 'group.json');
    const before = readFileSync(file, 'utf8');
    const g = JSON.parse(before) as { nodes: { api: string }[] };
    g.nodes[1].api = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
    writeFileSync(file, JSON.stringify(g, null, 2));
    try {
      const r = await update(1);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(
        /^error \[TIMEOUT\]: node 1 \(http:\/\/127\.0\.0\.1:\d+\/v1\/txs\) did not answer within --wait 1000 ms; the update may have been submitted; check `npx dropbear status --group .*`$/m,
      );
    } finally {
      writeFileSync(file, before);
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  }, 90_000);

  it('nothing listening: NODE_UNREACHABLE naming the refusal', async () => {
    const dead = await server('text');
    const port = (dead.address() as AddressInfo).port;
    await new Promise((r) => dead.close(r));
    const file = join(groupDir, 'group.json');
    const before = readFileSync(file, 'utf8');
    const g = JSON.parse(before) as { nodes: { api: string }[] };
    g.nodes[0].api = `http://127.0.0.1:${port}`;
    writeFileSync(file, JSON.stringify(g, null, 2));
    try {
      const r = await update(0, (...args) => runCliInProcess(args));
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(
        /^error \[NODE_UNREACHABLE\]: nothing answered at .*\/v1\/group \(ECONNREFUSED\)/,
      );
    } finally {
      writeFileSync(file, before);
    }
  }, 90_000);
});

describe('dropbear model-update against a real node, run again or with the wrong key', () => {
  /** `dropbear model-update` of node 1 to MODEL from the test's store, in process, with `more` options. */
  const updateNode1 = (...more: string[]) =>
    runCliInProcess([
      'model-update',
      '--group',
      groupDir,
      '--node',
      '1',
      '--model',
      MODEL,
      '--home',
      home,
      ...more,
    ]);

  /** Runs `fn` with node 1 of the group a real node, alone (no peers: it never orders the update). */
  async function withLoneNode1(fn: (host: NodeHost, digest: string) => Promise<void>): Promise<void> {
    const g = loadGroup(groupDir);
    const [m] = await importModels(join(MODELS_DIR, `${MODEL}.onnx`), home);
    // Beside its own stand-in, one at the digest of the stored model (the same spec: a compatible update).
    const own = startStandIn(1);
    const host = NodeHost.open({
      id: 1,
      genesis: g.genesis,
      key: readKeyFile(join(groupDir, 'keys', 'node-1.json')),
      ledgerPath: join(mkdtempSync(join(tmp, 'lone-')), 'n1.sqlite'),
      backends: [own, { ...startStandIn(1), digest: m.sha256, spec: { ...own.spec, sha256: m.sha256 } }],
      wire: { send: () => {}, broadcast: () => {}, onFrame: () => {}, reportBad: () => {} },
    });
    host.start();
    const api = buildApi(host);
    const file = join(groupDir, 'group.json');
    const before = readFileSync(file, 'utf8');
    try {
      await api.listen({ host: '127.0.0.1', port: 0 });
      const gf = JSON.parse(before) as { nodes: { api: string }[] };
      gf.nodes[1].api = `http://127.0.0.1:${(api.server.address() as AddressInfo).port}`;
      writeFileSync(file, JSON.stringify(gf, null, 2));
      await fn(host, m.sha256);
    } finally {
      writeFileSync(file, before);
      await api.close();
      host.stop();
      host.close();
    }
  }

  // The same update signed again is the same transaction (Ed25519 is deterministic): the command run again
  // after a TIMEOUT, as its message advises, or in a second terminal, ended with TX_DUPLICATE, exit 2.
  it('the node holds that very update already: the command waits for it as the first run did', async () => {
    await withLoneNode1(async (host, digest) => {
      const g = loadGroup(groupDir);
      const key = readKeyFile(join(groupDir, 'keys', 'node-1.json'));
      const tx = signModelUpdate(
        groupIdOf(g.genesis),
        { node: 1, version: 1, newDigest: Uint8Array.from(Buffer.from(digest, 'hex')) },
        key,
      );
      const first = await fetch(`${g.file.nodes[1].api}/v1/txs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ tx: toJson(Tx, tx) }),
      });
      const { txId } = (await first.json()) as { txId: string };
      expect(first.status).toBe(202);
      const again = await updateNode1('--wait', '600');
      expect(again.stdout).toBe(`already submitted ${txId} (node 1: version 0 → 1), waiting to be ordered\n`);
      expect(again.stderr).toMatch(/^error \[TIMEOUT\]: the update was not ordered within 600 ms/);
      expect(again.code).toBe(2);
      // One update held, not two.
      expect(host.status().pendingModelUpdates).toEqual([{ node: 1, version: 1, digest }]);
    });
  });

  it("--key: the owner's key file kept outside the group folder (none in its keys/) signs the update", async () => {
    await withLoneNode1(async (host, digest) => {
      const inGroup = join(groupDir, 'keys', 'node-1.json');
      const own = join(tmp, 'my-node-1-key.json');
      copyFileSync(inGroup, own); // keeps its 0600 mode
      const saved = readFileSync(inGroup);
      rmSync(inGroup);
      try {
        const r = await updateNode1('--key', own, '--wait', '300');
        // A lone node never orders it: submitted, then TIMEOUT; the node holds it.
        expect(r.stdout).toMatch(/^submitted [0-9a-f]{64} \(node 1: version 0 → 1\)/);
        expect(r.stderr).toMatch(/^error \[TIMEOUT\]/);
        expect(host.status().pendingModelUpdates).toEqual([{ node: 1, version: 1, digest }]);
      } finally {
        writeFileSync(inGroup, saved, { mode: 0o600 });
        rmSync(own);
      }
    });
  });

  // Signed with another key the node refused it (TX_BAD_SIGNATURE), and with the node down the command
  // said only NODE_UNREACHABLE: the key file is checked against the genesis before any node is asked.
  it("a key file that is not the node's: CONFIG_KEY_MISMATCH naming it, nothing sent", async () => {
    const keyFile = join(groupDir, 'keys', 'node-1.json');
    const saved = readFileSync(keyFile);
    rmSync(keyFile);
    copyFileSync(join(groupDir, 'keys', 'node-2.json'), keyFile); // keeps its 0600 mode
    try {
      const r = await updateNode1();
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        `error [CONFIG_KEY_MISMATCH]: ${keyFile} is not the key the genesis names for node 1; nothing was submitted\n`,
      );
      // --key names the owner's key file where it is (an owner holds their own key, not the group's keys/).
      const other = join(groupDir, 'keys', 'node-3.json');
      const k = await updateNode1('--key', other);
      expect(k.stderr).toBe(
        `error [CONFIG_KEY_MISMATCH]: ${other} is not the key the genesis names for node 1; nothing was submitted\n`,
      );
      const empty = await updateNode1('--key', '');
      expect(empty.stderr).toBe(
        'error [CLI_USAGE]: --key must not be empty; give a value, or leave the option out\n',
      );
    } finally {
      rmSync(keyFile);
      writeFileSync(keyFile, saved, { mode: 0o600 });
    }
  });
});

/** Runs `fn` with node 3 of the group pointed at a port nothing listens on; group.json is restored after. */
async function withNode3Dead(fn: () => Promise<void>): Promise<void> {
  const dead = await server('text');
  const port = (dead.address() as AddressInfo).port;
  await new Promise((r) => dead.close(r));
  const file = join(groupDir, 'group.json');
  const before = readFileSync(file, 'utf8');
  const g = JSON.parse(before) as { nodes: { api: string }[] };
  g.nodes[3].api = `http://127.0.0.1:${port}`;
  writeFileSync(file, JSON.stringify(g, null, 2));
  try {
    await fn();
  } finally {
    writeFileSync(file, before);
  }
}

describe('dropbear infer against servers that are not Dropbear nodes', () => {
  // Each node's line read "NETWORK fetch failed" (nothing listening) or "HTTP_200 node 0 answered 200".
  it('says for each node what came back, and the network cause', async () => {
    const image = join(tmp, 'input.jpg');
    writeFileSync(image, 'not really an image');
    await withNode3Dead(async () => {
      const r = await runCliInProcess(['infer', '--group', groupDir, image]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^input\.jpg: error \[NO_CERTIFICATE\]: /);
      expect(r.stderr).toMatch(/node 0: HTTP_200 node 0 answered 200 with a body that is not JSON/);
      expect(r.stderr).toMatch(/node 1: HTTP_500 node 1 answered 500 with a body that is not JSON/);
      expect(r.stderr).toMatch(/node 2: HTTP_200 node 2 answered 200 without a certificate or an error/);
      expect(r.stderr).toMatch(/node 3: NETWORK fetch failed \(ECONNREFUSED\)/);
    });
  }, 90_000);

  // A misspelt second name ended the command after the first request had been sent (and paid for).
  it('checks every image is readable before sending any', async () => {
    const image = join(tmp, 'first.jpg');
    writeFileSync(image, 'not really an image');
    await withNode3Dead(async () => {
      for (const second of [join(tmp, 'no-such-image.jpg'), tmp]) {
        const r = await runCliInProcess(['infer', '--group', groupDir, image, second]);
        expect(r.code, r.stderr).toBe(2);
        expect(r.stdout).toBe('');
        expect(r.stderr.trim().split('\n')).toEqual([
          expect.stringMatching(/^error \[FILE_UNREADABLE\]: .*; nothing was sent$/),
        ]);
      }
    });
  }, 90_000);

  // A 0-byte file passed the check and was signed and sent: a request the nodes can only fail to decode,
  // paid for all the same.
  it('refuses an empty image before sending any, FILE_EMPTY naming it', () => {
    const image = join(tmp, 'real.jpg');
    writeFileSync(image, 'not really an image');
    const empty = join(tmp, 'empty.jpg');
    writeFileSync(empty, '');
    expect(() => checkImages([image])).not.toThrow();
    expect(() => checkImages([image, empty])).toThrow(
      expect.objectContaining({ code: 'FILE_EMPTY', message: `${empty} is empty; nothing was sent` }),
    );
  });
});

describe("the CLI's requests to a node (src/cli/http.ts) against a node that misbehaves", () => {
  const MiB = 2 ** 20;
  /** A server at 127.0.0.1 answering with `h`; closed when `fn` is done. */
  async function withServer(h: Parameters<typeof createServer>[1], fn: (url: string) => Promise<void>) {
    const s = createServer(h);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    try {
      await fn(`http://127.0.0.1:${(s.address() as AddressInfo).port}`);
    } finally {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  }
  /** Writes spaces as fast as the client reads them, for ever. */
  const endless =
    (headers: Record<string, string>): Parameters<typeof createServer>[1] =>
    (_req, res) => {
      res.writeHead(200, headers);
      const chunk = Buffer.alloc(MiB, 32);
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
      };
      res.on('drain', pump);
      pump();
    };

  // The body was read whole until the time limit (NODE_TIMEOUT then): ~430 MB held after 1.5 s from one
  // local server, and `status` gives each node 3 s.
  it('an answer past 4 MiB (a 2 GB Content-Length, or no length and no end) is RESPONSE_TOO_LARGE at once', async () => {
    for (const headers of [{ 'content-length': String(2 ** 31) }, {}] as Record<string, string>[])
      await withServer(endless({ 'content-type': 'application/json', ...headers }), async (url) => {
        const t0 = Date.now();
        await expect(fetchNodeJson(`${url}/v1/status`, 3000)).rejects.toMatchObject({
          code: 'RESPONSE_TOO_LARGE',
          message: expect.stringContaining(`${url}/v1/status answered more than 4194304 bytes`),
        });
        expect(Date.now() - t0).toBeLessThan(1500);
      });
    // /healthz and /readyz: the status is all that is wanted, the body is not read.
    await withServer(endless({ 'content-type': 'text/plain' }), async (url) => {
      const t0 = Date.now();
      expect(await fetchNodeStatus(`${url}/healthz`, 3000)).toBe(200);
      expect(Date.now() - t0).toBeLessThan(1500);
    });
  });

  // `status` prints a node's error in its row as it came: a line break in the message printed rows the
  // node wrote, a terminal's escapes went out as they were, and a code could be anything (an object).
  it("a node's own error: its code only if it is one, its message one printable line of bounded length", () => {
    const url = 'http://127.0.0.1:1/v1/status';
    const said = (code: unknown, message: unknown) => {
      try {
        expectObject(url, { status: 500, body: { error: { code, message } } });
      } catch (e) {
        return e as DropbearError;
      }
      throw new Error('expectObject took an error as an answer');
    };
    const e = said('NOT_READY', `a\n1     http://x  yes  yes\u001b[2J${'A'.repeat(10_000)}`);
    expect(e.code).toBe('NOT_READY');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the point of the check
    expect(e.message).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    expect(e.message.startsWith(`${url} answered HTTP 500: a 1 http://x yes yes`)).toBe(true);
    expect(e.message.length).toBeLessThan(500);
    for (const code of [{ a: 1 }, 'TWO\nLINES', ''])
      expect(said(code, 'm')).toMatchObject({ code: 'BAD_RESPONSE', message: `${url} answered HTTP 500: m` });
  });

  it('a redirect is not followed: BAD_RESPONSE naming where it pointed', async () => {
    let elsewhere = 0;
    await withServer(
      (_req, res) => {
        elsewhere++;
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end('{"view":0,"primary":0,"lastExecuted":9}');
      },
      (other) =>
        withServer(
          (_req, res) => res.writeHead(302, { location: `${other}/v1/status` }).end(),
          async (url) => {
            await expect(fetchNodeJson(`${url}/v1/status`, 3000)).rejects.toMatchObject({
              code: 'BAD_RESPONSE',
              message: `${url}/v1/status answered HTTP 302, a redirect to ${other}/v1/status (not followed); is this a Dropbear node?`,
            });
            expect(await fetchNodeStatus(`${url}/healthz`, 3000)).toBe(302);
          },
        ),
    );
    expect(elsewhere).toBe(0);
  });
});
