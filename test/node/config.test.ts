// The node config's `replica` section: only known settings, finite numbers ≥ 0 or (switches) booleans;
// durability, api_limits, unknown fields, and `transport.quarantine` (checked here, and reaching the transport).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initGroup } from '../../src/cli/group.ts';
import { importModels } from '../../src/inference/store.ts';
import { loadNodeConfig } from '../../src/node/config.ts';
import { startNode } from '../../src/node/run.ts';
import { STANDIN_MODEL, standInInput } from '../../src/node/standin-backend.ts';
import {
  DropbearError,
  groupIdOf,
  SignedRequest,
  sha256,
  signRequest,
  toJson,
} from '../../src/protocol/index.ts';
import { readKeyFile } from '../../src/protocol/keyfile.ts';
import { MODELS_DIR } from '../shared.ts';
import { MINIMAL_NODE_CONFIG } from './config.fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'dropbear-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BASE = MINIMAL_NODE_CONFIG;

/** `replica` as a value, or as raw JSON text (to write what JSON.stringify cannot, e.g. 1e999). */
function load(replica: unknown, rawReplica?: string): ReturnType<typeof loadNodeConfig> {
  const file = join(dir, 'node-0.json');
  const text = JSON.stringify({ ...BASE, ...(replica === undefined ? {} : { replica }) });
  writeFileSync(file, rawReplica === undefined ? text : `${text.slice(0, -1)},"replica":${rawReplica}}`);
  return loadNodeConfig(file);
}

function refusal(replica: unknown, rawReplica?: string): DropbearError {
  try {
    load(replica, rawReplica);
  } catch (e) {
    return e as DropbearError;
  }
  throw new Error('accepted');
}

describe('node config: replica settings', () => {
  it('takes known settings as given, and none at all', () => {
    expect(load({ batchTimeoutMs: 5, idleBatchTimeoutMs: 0, maxInFlightBatches: 4 }).replica).toEqual({
      batchTimeoutMs: 5,
      idleBatchTimeoutMs: 0,
      maxInFlightBatches: 4,
    });
    expect(load(undefined).replica).toEqual({});
  });

  it('refuses an unknown (misspelt) setting, naming it', () => {
    const e = refusal({ batchTimeout: 5 });
    expect(e).toBeInstanceOf(DropbearError);
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toContain('"replica.batchTimeout" is not a replica setting');
    expect(e.message).toContain('batchTimeoutMs');
  });

  it('refuses a time that is not a finite number ≥ 0', () => {
    expect(refusal(undefined, '{"voteWaitMs": 1e999}').message).toContain('must be a finite number');
    for (const v of ['5', -1, null, true, [5]]) {
      const e = refusal({ voteWaitMs: v });
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.message).toContain('"replica.voteWaitMs" must be a finite number ≥ 0');
    }
    expect(load({ voteWaitMs: 0.5 }).replica).toEqual({ voteWaitMs: 0.5 });
  });

  it('refuses a count that is not an integer ≥ 1 (a batchSize of 0 would never cut a batch)', () => {
    for (const [k, v] of [
      ['batchSize', 0],
      ['checkpointInterval', 0],
      ['maxInFlightBatches', 1.5],
      ['window', '8'],
    ] as const) {
      const e = refusal({ [k]: v });
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.message).toContain(`"replica.${k}" must be an integer ≥ 1`);
    }
  });

  it('takes a switch (preparedReceipts, receiptCommits, targetedResends) only as true or false', () => {
    for (const key of ['preparedReceipts', 'receiptCommits', 'targetedResends']) {
      expect(load({ [key]: false }).replica).toEqual({ [key]: false });
      for (const v of [0, 1, 'false', null]) {
        const e = refusal({ [key]: v });
        expect(e.code).toBe('CONFIG_INVALID');
        expect(e.message).toContain(`"replica.${key}" must be true or false`);
      }
    }
    // A switch is not a time: the time rule still refuses booleans for the others.
    expect(refusal({ voteWaitMs: false }).message).toContain('must be a finite number');
  });

  it('refuses a replica section that is not an object', () => {
    expect(refusal([1]).message).toContain('"replica" must be an object');
  });
});

describe('node config: certificateIndexRequests', () => {
  const withIndex = (v: unknown) => {
    const file = join(dir, 'node-ci.json');
    writeFileSync(file, JSON.stringify({ ...BASE, certificateIndexRequests: v }));
    return loadNodeConfig(file);
  };

  it('passes an integer ≥ 1 through (absent: the ledger default) and refuses anything else, naming the field', () => {
    expect(load(undefined).certificateIndexRequests).toBeUndefined();
    expect(withIndex(5000).certificateIndexRequests).toBe(5000);
    for (const v of [0, -1, 1.5, '5', null, true])
      expect(() => withIndex(v)).toThrow(
        expect.objectContaining({
          code: 'CONFIG_INVALID',
          message: expect.stringContaining('"certificateIndexRequests" must be an integer ≥ 1'),
        }),
      );
  });
});

describe('node config: durability', () => {
  const withDurability = (d: unknown) => {
    const file = join(dir, 'node-d.json');
    writeFileSync(file, JSON.stringify({ ...BASE, durability: d }));
    return loadNodeConfig(file);
  };

  it('is full unless the file says prepared or relaxed', () => {
    expect(load(undefined).durability).toBe('full');
    expect(withDurability('full').durability).toBe('full');
    expect(withDurability('prepared').durability).toBe('prepared');
    expect(withDurability('relaxed').durability).toBe('relaxed');
  });

  it('refuses anything else, naming the field', () => {
    for (const d of ['RELAXED', 'none', 'Prepared', 1, null, true]) {
      let err: unknown;
      try {
        withDurability(d);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DropbearError);
      expect((err as DropbearError).code).toBe('CONFIG_INVALID');
      expect((err as DropbearError).message).toContain('"durability" is "full" or "prepared" or "relaxed"');
    }
  });
});

describe('node config: api_limits.requestTimeoutMs', () => {
  const withLimits = (limits: unknown) => {
    const file = join(dir, 'node-l.json');
    writeFileSync(file, JSON.stringify({ ...BASE, api_limits: limits }));
    return loadNodeConfig(file);
  };

  it('passes an integer ≥ 0 through (absent: the API default)', () => {
    expect(withLimits({ requestTimeoutMs: 500 }).apiLimits.requestTimeoutMs).toBe(500);
    expect(withLimits({ requestTimeoutMs: 0 }).apiLimits.requestTimeoutMs).toBe(0);
    expect(withLimits({ maxPending: 10 }).apiLimits.requestTimeoutMs).toBeUndefined();
  });

  it('refuses anything else, naming the field', () => {
    for (const t of [-1, 1.5, '60000', null, true]) {
      let err: unknown;
      try {
        withLimits({ requestTimeoutMs: t });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DropbearError);
      expect((err as DropbearError).code).toBe('CONFIG_INVALID');
      expect((err as DropbearError).message).toContain(
        '"api_limits.requestTimeoutMs" must be an integer ≥ 0',
      );
    }
  });
});

describe('node config: api_limits long-poll caps', () => {
  const withLimits = (limits: unknown) => {
    const file = join(dir, 'node-p.json');
    writeFileSync(file, JSON.stringify({ ...BASE, api_limits: limits }));
    return loadNodeConfig(file);
  };

  it('passes integers ≥ 0 through and refuses anything else, naming the field', () => {
    const l = withLimits({
      maxLongPolls: 100,
      maxLongPollsPerConnection: 0,
      maxCertificateWaiters: 7,
    }).apiLimits;
    expect([l.maxLongPolls, l.maxLongPollsPerConnection, l.maxCertificateWaiters]).toEqual([100, 0, 7]);
    for (const k of ['maxLongPolls', 'maxLongPollsPerConnection', 'maxCertificateWaiters'])
      for (const v of [-1, 1.5, '64', null]) {
        let err: unknown;
        try {
          withLimits({ [k]: v });
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(DropbearError);
        expect((err as DropbearError).code).toBe('CONFIG_INVALID');
        expect((err as DropbearError).message).toContain(`"api_limits.${k}" must be an integer ≥ 0`);
      }
  });
});

describe('node config: api_limits maxInferenceQueue and retryAfterSeconds', () => {
  const withLimits = (limits: unknown) => {
    const file = join(dir, 'node-q.json');
    writeFileSync(file, JSON.stringify({ ...BASE, api_limits: limits }));
    return loadNodeConfig(file);
  };

  it('passes integers ≥ 0 through and refuses anything else, naming the field', () => {
    const l = withLimits({ maxInferenceQueue: 0, retryAfterSeconds: 30 }).apiLimits;
    expect([l.maxInferenceQueue, l.retryAfterSeconds]).toEqual([0, 30]);
    for (const k of ['maxInferenceQueue', 'retryAfterSeconds'])
      for (const v of [-1, 1.5, '5', null, true])
        expect(() => withLimits({ [k]: v })).toThrow(
          expect.objectContaining({
            code: 'CONFIG_INVALID',
            message: expect.stringContaining(`"api_limits.${k}" must be an integer ≥ 0`),
          }),
        );
  });

  it('maxConnections and maxConnectionsPerAddress: integers ≥ 1, passed through', () => {
    for (const k of ['maxConnections', 'maxConnectionsPerAddress'] as const) {
      expect(withLimits({ [k]: 16 }).apiLimits[k]).toBe(16);
      for (const v of [0, -1, 1.5, '5', null])
        expect(() => withLimits({ [k]: v })).toThrow(
          expect.objectContaining({
            code: 'CONFIG_INVALID',
            message: expect.stringContaining(`"api_limits.${k}" must be an integer ≥ 1`),
          }),
        );
    }
  });

  it("reach the node's API: past the configured queue, 503 OVERLOADED with the configured Retry-After", async () => {
    const group = join(dir, 'group-limits');
    await initGroup({
      dir: group,
      nodes: 2,
      models: Array(2).fill(STANDIN_MODEL),
      nodeConfig: {
        log: { level: 'error' },
        p2p: { host: '127.0.0.1', port: 0 },
        api: { host: '127.0.0.1', port: 0 },
        api_limits: { maxInferenceQueue: 2, retryAfterSeconds: 7 },
      },
    });
    const node = await startNode(join(group, 'node-0.json')); // node 1 stays down: nothing is certified
    try {
      // The stand-in has no queue: say 3 inputs wait, past the configured 2 (the default, 256, lets it in).
      const backend = node.host.currentBackend;
      const stats = backend.stats.bind(backend);
      backend.stats = () => ({ ...stats(), queued: 3 });
      const client = readKeyFile(join(group, 'keys', 'client.json'));
      const input = standInInput(1);
      const sr = signRequest(
        {
          groupId: groupIdOf(node.host.genesis),
          client: client.publicKey,
          nonce: 1,
          timestamp: Date.now(),
          inputDigest: sha256(input),
          policy: null,
          maxFee: 1_000_000,
        },
        input,
        client,
      );
      const res = await fetch(`${node.apiUrl}/v1/requests?wait=0`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ request: toJson(SignedRequest, sr) }),
      });
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(res.status).toBe(503);
      expect(body.error.code).toBe('OVERLOADED');
      expect(body.error.message).toContain('the model has 3 inputs waiting (limit 2)');
      expect(res.headers.get('retry-after')).toBe('7');
    } finally {
      await node.stop();
    }
  });
});

describe('node config: unknown fields', () => {
  const withFields = (extra: Record<string, unknown>) => {
    const file = join(dir, 'node-u.json');
    writeFileSync(file, JSON.stringify({ ...BASE, ...extra }));
    return loadNodeConfig(file);
  };
  const refused = (extra: Record<string, unknown>) => {
    try {
      withFields(extra);
    } catch (e) {
      return e as DropbearError;
    }
    throw new Error('accepted');
  };

  it('refuses a misspelt top-level field (a "tlss" left the node on plain TCP), naming it', () => {
    const e = refused({ tlss: { key: 'k.pem', cert: 'c.pem' } });
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toMatch(/"tlss" is not a node config field/);
  });

  it('refuses an unknown or mistyped tls field (a "caFile" or a numeric "ca" turned the peer check off)', () => {
    expect(refused({ tls: { key: 'k.pem', cert: 'c.pem', caFile: 'ca.pem' } }).message).toMatch(
      /"tls.caFile"/,
    );
    expect(refused({ tls: { key: 'k.pem', cert: 'c.pem', ca: 7 } }).message).toMatch(
      /"tls.ca" must be a file path/,
    );
    expect(withFields({ tls: { key: 'k.pem', cert: 'c.pem', ca: 'ca.pem' } }).tls?.ca).toMatch(/ca\.pem$/);
  });

  // "" resolved to the config's own folder: the node said KEY_FILE_PERMISSIONS of that folder (mode 0755).
  it('refuses an empty tls file path, naming the field', () => {
    for (const k of ['key', 'cert', 'ca'])
      expect(refused({ tls: { key: 'k.pem', cert: 'c.pem', [k]: '' } }).message).toMatch(
        new RegExp(`"tls.${k}" must be a file path \\(a non-empty string\\)`),
      );
  });

  // The API's own TLS (HTTPS for clients), beside the peers' `tls`: checked like it, field by field.
  it('takes api.tls {key, cert} (paths relative to the config) and refuses anything else there', () => {
    const api = (tls: unknown) => ({ api: { host: '127.0.0.1', port: 8100, tls } });
    const cfg = withFields(api({ key: 'api.key', cert: 'api.crt' }));
    expect(cfg.api).toEqual({ host: '127.0.0.1', port: 8100 });
    expect(cfg.apiTls).toEqual({ key: join(dir, 'api.key'), cert: join(dir, 'api.crt') });
    expect(withFields({}).apiTls).toBeNull();
    const cases: [unknown, RegExp][] = [
      [
        { key: 'api.key', cert: 'api.crt', ca: 'ca.pem' },
        /"api.tls.ca" is not an api.tls field \(known: key, cert\)/,
      ],
      [{ key: 'api.key' }, /"api.tls" needs key and cert files/],
      [{ key: 'api.key', cert: 7 }, /"api.tls.cert" must be a file path/],
      [{ key: '', cert: 'api.crt' }, /"api.tls.key" must be a file path \(a non-empty string\)/],
      ['api.key', /"api.tls" must be \{"key", "cert"\}/],
      [null, /"api.tls" must be \{"key", "cert"\}/],
    ];
    for (const [tls, message] of cases) {
      const e = refused(api(tls));
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.message).toMatch(message);
    }
    expect(refused({ api: { host: '127.0.0.1', port: 8100, tsl: {} } }).message).toMatch(
      /"api.tsl" is not an address field \(known: host, port, tls\)/,
    );
    // `p2p` has no tls of its own: the peers' is the top-level `tls`.
    expect(refused({ p2p: { host: '127.0.0.1', port: 7100, tls: {} } }).message).toMatch(/"p2p.tls"/);
  });

  // JSON.parse keeps the last of two equal keys: `"data"` given twice ran the node on the second folder,
  // which a reader of the file's top may not see. The genesis, certificates and group.json refuse it.
  it('refuses a key given twice (the file reads two ways), naming it, also inside a section', () => {
    const file = join(dir, 'node-dup.json');
    const text = JSON.stringify(BASE);
    for (const [twice, key] of [
      [`{"data":"elsewhere",${text.slice(1)}`, '"data" twice in the top-level object'],
      [text.replace('"port":7100', '"port":7100,"port":7101'), '"port" twice'],
    ]) {
      writeFileSync(file, twice);
      try {
        loadNodeConfig(file);
        throw new Error(`accepted ${twice}`);
      } catch (e) {
        expect((e as DropbearError).code).toBe('CONFIG_INVALID');
        expect((e as DropbearError).message).toContain(key);
      }
    }
  });

  // `{"host": ""}` listened on every interface (Node's default for an empty host), not the loopback or
  // address meant; a misspelt key beside host and port ("prot") was dropped; `peers` given as a list was
  // read by position (["tcp://…"] made that node 0's address).
  it('refuses an empty host, an unknown key in p2p or api, and peers that is not an object, naming them', () => {
    expect(refused({ p2p: { host: '', port: 7100 } }).message).toMatch(
      /"p2p" must be \{"host": a non-empty string/,
    );
    expect(refused({ api: { host: '127.0.0.1', port: 8100, prot: 8101 } }).message).toMatch(
      /"api.prot" is not an address field \(known: host, port, tls\)/,
    );
    expect(refused({ peers: ['tcp://127.0.0.1:7101'] }).message).toMatch(
      /"peers" must be an object id → address/,
    );
    expect(withFields({ peers: { 1: 'tcp://127.0.0.1:7101' } }).peers?.get(1)).toEqual({
      host: '127.0.0.1',
      port: 7101,
    });
  });

  // The section was read as `custodial?.accounts` and nothing else: a misspelt "acounts", a string or an
  // array for the section, or a misspelt account field ("maxfee" beside "maxFee") started the node
  // without those accounts (or with the field dropped) and without a word.
  it('refuses a custodial section that is not {"accounts": [...]}, and unknown account fields, naming them', () => {
    const account = { apiKeySha256: 'a'.repeat(64), key: 'keys/client.json', maxFee: 1000 };
    expect(refused({ custodial: { acounts: [account] } }).message).toMatch(
      /"custodial.acounts" is not a custodial field/,
    );
    expect(refused({ custodial: 'accounts' }).message).toMatch(/"custodial" must be \{"accounts"/);
    expect(refused({ custodial: [account] }).message).toMatch(/"custodial" must be \{"accounts"/);
    expect(refused({ custodial: {} }).message).toMatch(/"custodial.accounts" must be an array/);
    expect(refused({ custodial: { accounts: [{ ...account, maxfee: 5 }] } }).message).toMatch(
      /"custodial.accounts\[0\].maxfee" is not an account field/,
    );
    expect(refused({ custodial: { accounts: [{ ...account, maxFee: -1 }] } }).message).toMatch(
      /"custodial.accounts\[0\]" needs/,
    );
    expect(withFields({ custodial: { accounts: [account] } }).custodial?.[0].maxFee).toBe(1000);
  });

  // The accounts went into a map by key hash, the last one winning: an API key listed twice (a copied
  // entry whose hash was not changed) left the first account unreachable, and its holder's key spent the
  // other account's funds, without a word.
  it('refuses two accounts with the same apiKeySha256, naming both', () => {
    const a = { apiKeySha256: 'a'.repeat(64), key: 'keys/a.json', maxFee: 1000 };
    const b = { apiKeySha256: 'a'.repeat(64), key: 'keys/b.json', maxFee: 5 };
    expect(refused({ custodial: { accounts: [a, b] } }).message).toMatch(
      /"custodial.accounts\[1\]" has the apiKeySha256 of custodial.accounts\[0\]/,
    );
    // One signing key for two API keys is allowed (two keys, one account's funds).
    expect(
      withFields({ custodial: { accounts: [a, { ...a, apiKeySha256: 'b'.repeat(64) }] } }).custodial,
    ).toHaveLength(2);
  });
});

describe('node config: transport.quarantine', () => {
  const withTransport = (transport: unknown) => {
    const file = join(dir, 'node-t.json');
    writeFileSync(file, JSON.stringify({ ...BASE, transport }));
    return loadNodeConfig(file);
  };
  const refused = (transport: unknown) => {
    try {
      withTransport(transport);
    } catch (e) {
      expect(e).toBeInstanceOf(DropbearError);
      expect((e as DropbearError).code).toBe('CONFIG_INVALID');
      return (e as DropbearError).message;
    }
    throw new Error('accepted');
  };

  it('passes integer settings through; absent ones are left to the transport', () => {
    const q = { minMs: 250, maxMs: 5000, forgiveMs: 0 };
    expect(withTransport({ quarantine: q }).transport.quarantine).toEqual(q);
    expect(withTransport({ quarantine: { maxMs: 1000 } }).transport.quarantine).toEqual({ maxMs: 1000 });
    expect(withTransport({}).transport.quarantine).toBeUndefined();
    expect(withTransport(undefined).transport).toEqual({});
  });

  it('refuses a value that is not an integer in range, naming it', () => {
    for (const [k, v] of [
      ['minMs', 0],
      ['minMs', -5],
      ['maxMs', 1.5],
      ['maxMs', '5000'],
      ['maxMs', 2 ** 31], // past setTimeout's limit: Node would fire the redial after 1 ms
      ['forgiveMs', -1],
      ['forgiveMs', null],
    ] as const)
      expect(refused({ quarantine: { [k]: v } })).toContain(`"transport.quarantine.${k}" must be an integer`);
    expect(refused({ quarantine: { minMs: 5000, maxMs: 1000 } })).toContain('needs minMs ≤ maxMs');
    // The transport's default maxMs (60 s) is below this minMs.
    expect(refused({ quarantine: { minMs: 120_000 } })).toContain('needs minMs ≤ maxMs');
    expect(refused({ quarantine: 1000 })).toContain('"transport.quarantine" must be');
  });

  it('refuses unknown (misspelt) keys, naming them', () => {
    expect(refused({ quarantine: { minMS: 100 } })).toMatch(
      /"transport.quarantine.minMS" is not a quarantine/,
    );
    expect(refused({ quarantin: {} })).toMatch(/"transport.quarantin" is not a transport setting/);
    expect(refused([])).toMatch(/"transport" must be an object/);
  });

  it("reaches the node's transport: a peer reported bad is kept out for the configured minMs", async () => {
    const group = join(dir, 'group-q');
    await initGroup({
      dir: group,
      nodes: 2,
      models: Array(2).fill(STANDIN_MODEL),
      nodeConfig: { log: { level: 'error' }, transport: { quarantine: { minMs: 45_000, maxMs: 50_000 } } },
    });
    const node = await startNode(join(group, 'node-0.json')); // node 1 stays down: node 0 only dials it
    try {
      node.transport.reportBad(1, 'test');
      const left = node.transport.stats().peers.find((p) => p.id === 1)?.quarantinedMs ?? 0;
      expect(left).toBeGreaterThan(40_000); // the default minMs is 1 s
      expect(left).toBeLessThanOrEqual(45_000);
    } finally {
      await node.stop();
    }
  });
});

describe('node config: the rest of api_limits, log, extraModels, home', () => {
  const refusedWith = (extra: Record<string, unknown>): string => {
    const file = join(dir, 'node-r.json');
    writeFileSync(file, JSON.stringify({ ...BASE, ...extra }));
    try {
      loadNodeConfig(file);
    } catch (e) {
      expect(e).toBeInstanceOf(DropbearError);
      expect((e as DropbearError).code).toBe('CONFIG_INVALID');
      return (e as DropbearError).message;
    }
    throw new Error(`accepted ${JSON.stringify(extra)}`);
  };

  it('passes valid values through', () => {
    const file = join(dir, 'node-r.json');
    const limits = { bodyLimitBytes: 1024, maxPending: 0, minPending: 10, maxQueueSeconds: 0.5 };
    writeFileSync(
      file,
      JSON.stringify({ ...BASE, api_limits: limits, log: { level: 'warn' }, extraModels: [], home: 'h' }),
    );
    const c = loadNodeConfig(file);
    expect(c.apiLimits).toEqual(limits);
    expect(c.log.level).toBe('warn');
  });

  it('refuses ill-typed or misspelt values, naming the field', () => {
    expect(refusedWith({ api_limits: { maxPending: 'x' } })).toContain(
      '"api_limits.maxPending" must be an integer ≥ 0',
    );
    expect(refusedWith({ api_limits: { minPending: -1 } })).toContain(
      '"api_limits.minPending" must be an integer ≥ 0',
    );
    expect(refusedWith({ api_limits: { bodyLimitBytes: -1 } })).toContain(
      '"api_limits.bodyLimitBytes" must be an integer ≥ 1',
    );
    expect(refusedWith({ api_limits: { bodyLimitBytes: 0 } })).toContain('"api_limits.bodyLimitBytes"');
    expect(refusedWith({ api_limits: { maxQueueSeconds: '2' } })).toContain(
      '"api_limits.maxQueueSeconds" must be a finite number',
    );
    expect(refusedWith({ api_limits: { maxPendng: 10 } })).toContain(
      '"api_limits.maxPendng" is not an api limit',
    );
    expect(refusedWith({ log: { level: 'verbose' } })).toContain('"log.level" must be one of');
    expect(refusedWith({ log: { levle: 'debug' } })).toContain('"log.levle" is not a log field');
    expect(refusedWith({ log: 'debug' })).toContain('"log" must be {"level": …}');
    expect(refusedWith({ extraModels: { name: 'x' } })).toContain('"extraModels" must be an array');
    expect(refusedWith({ home: 5 })).toContain('"home" must be a folder');
  });
});

describe('node config: engine', () => {
  it("takes the engine's own settings and refuses a misspelt one, naming it", () => {
    const file = join(dir, 'node-e.json');
    writeFileSync(file, JSON.stringify({ ...BASE, engine: { maxBatch: 4, decoder: 'fast' } }));
    expect(loadNodeConfig(file).engine).toEqual({ maxBatch: 4, decoder: 'fast' });
    writeFileSync(file, JSON.stringify({ ...BASE, engine: { maxBtch: 1 } }));
    expect(() => loadNodeConfig(file)).toThrow(
      expect.objectContaining({
        code: 'CONFIG_INVALID',
        message: expect.stringContaining('"engine.maxBtch" is not an engine setting'),
      }),
    );
  });
});

describe('node config: a remote model', () => {
  const remote = (extra: Record<string, unknown>) => ({
    remote: { url: 'http://127.0.0.1:8000', model: 'm', digest: 'ab'.repeat(32), ...extra },
  });
  const loadModel = (model: unknown) => {
    const file = join(dir, 'node-m.json');
    writeFileSync(file, JSON.stringify({ ...BASE, model }));
    return loadNodeConfig(file).model;
  };

  it('passes the backlog bounds (maxInFlight, maxQueue) through; absent ones are left to the backend', () => {
    expect(loadModel(remote({ maxInFlight: 2, maxQueue: 64 }))).toMatchObject(
      remote({ maxInFlight: 2, maxQueue: 64 }),
    );
    const m = loadModel(remote({})) as { remote: Record<string, unknown> };
    expect(m.remote.maxInFlight).toBeUndefined();
    expect(m.remote.maxQueue).toBeUndefined();
  });

  it('refuses a bound that is not an integer ≥ 1, naming it', () => {
    for (const [k, v] of [
      ['maxInFlight', 0],
      ['maxQueue', '512'],
      ['maxQueue', 1.5],
    ] as const)
      expect(() => loadModel(remote({ [k]: v }))).toThrow(
        expect.objectContaining({
          code: 'CONFIG_INVALID',
          message: expect.stringContaining(`"model.remote.${k}" must be an integer ≥ 1`),
        }),
      );
  });

  it('refuses an unknown (misspelt) remote setting, naming it, in model and in extraModels', () => {
    const refusal = (says: string) =>
      expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringContaining(says) });
    // "maxInflight" was dropped and the default (8) applied without a word.
    expect(() => loadModel(remote({ maxInflight: 2 }))).toThrow(
      refusal('"model.remote.maxInflight" is not a remote model setting'),
    );
    const file = join(dir, 'node-x.json');
    writeFileSync(
      file,
      JSON.stringify({ ...BASE, extraModels: [{ standin: true }, remote({ timeout: 5 })] }),
    );
    expect(() => loadNodeConfig(file)).toThrow(
      refusal('"extraModels[1].remote.timeout" is not a remote model setting'),
    );
  });

  it('refuses a second model kind or a key beside the kind, in model and in extraModels, naming it', () => {
    const refused = (model: unknown, says: string) =>
      expect(() => loadModel(model)).toThrow(
        expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringContaining(says) }),
      );
    // Each was taken, the rest dropped: the name ran, the path and the timeout were ignored.
    refused({ name: 'a', path: 'm.onnx' }, '"model" names one model, not name and path');
    refused({ name: 'a', timeoutMs: 5 }, '"model.timeoutMs" is not a model field');
    refused({ standin: { disagreemnt: 0.5 } }, '"model.standin.disagreemnt" is not a stand-in setting');
    refused({ name: '' }, '"model.name" must not be empty');
    refused({ path: '' }, '"model.path" must not be empty');
    expect(loadModel({ standin: { disagreement: 0.5 } })).toEqual({ standin: { disagreement: 0.5 } });
    expect(loadModel({ name: 'a' })).toEqual({ name: 'a' });
    const file = join(dir, 'node-x.json');
    writeFileSync(file, JSON.stringify({ ...BASE, extraModels: [{ name: 'a', url: 'x' }] }));
    expect(() => loadNodeConfig(file)).toThrow('"extraModels[0].url" is not a model field');
  });

  it('passes an integer timeoutMs through and refuses anything else (a "5000" was dropped), naming it', () => {
    expect(loadModel(remote({ timeoutMs: 5000 }))).toMatchObject(remote({ timeoutMs: 5000 }));
    expect((loadModel(remote({})) as { remote: { timeoutMs?: number } }).remote.timeoutMs).toBeUndefined();
    for (const v of ['5000', 0, -1, 0.5, 2 ** 31, null, true])
      expect(() => loadModel(remote({ timeoutMs: v }))).toThrow(
        expect.objectContaining({
          code: 'CONFIG_INVALID',
          message: expect.stringContaining(
            '"model.remote.timeoutMs" must be an integer from 1 to 2147483647',
          ),
        }),
      );
    const file = join(dir, 'node-x.json');
    writeFileSync(file, JSON.stringify({ ...BASE, extraModels: [remote({ timeoutMs: '5000' })] }));
    expect(() => loadNodeConfig(file)).toThrow('"extraModels[0].remote.timeoutMs" must be an integer');
  });
});

describe('node start: the files the config names', () => {
  let group: string;
  const configWith = (extra: Record<string, unknown>): string => {
    const cfg = JSON.parse(readFileSync(join(group, 'node-0.json'), 'utf8'));
    const file = join(group, 'node-x.json');
    writeFileSync(file, JSON.stringify({ ...cfg, ...extra }));
    return file;
  };
  const refusal = async (file: string): Promise<DropbearError> => {
    try {
      const node = await startNode(file);
      await node.stop();
    } catch (e) {
      return e as DropbearError;
    }
    throw new Error('started');
  };

  it('a genesis repeating a key is GENESIS_INVALID (the node read the last, `dropbear verify` refuses it)', async () => {
    group = join(dir, 'start-files');
    await initGroup({
      dir: group,
      nodes: 1,
      models: [STANDIN_MODEL],
      nodeConfig: {
        log: { level: 'silent' },
        p2p: { host: '127.0.0.1', port: 0 },
        api: { host: '127.0.0.1', port: 0 },
      },
    });
    const text = readFileSync(join(group, 'genesis.json'), 'utf8');
    writeFileSync(join(group, 'twice.json'), text.replace('{', '{"name": "another",'));
    const e = await refusal(configWith({ genesis: 'twice.json' }));
    expect(e.code).toBe('GENESIS_INVALID');
    expect(e.message).toMatch(/twice\.json repeats a key \("name" twice in the top-level object\)/);
  });

  it('a model in the store whose file was replaced (other bytes) is refused at start: MODEL_DIGEST_MISMATCH', async () => {
    const home = join(group, 'home');
    const [m] = await importModels(join(MODELS_DIR, 'mnist-winml.onnx'), home);
    const bytes = readFileSync(m.path);
    bytes[100] ^= 0xff;
    writeFileSync(m.path, bytes);
    const e = await refusal(configWith({ home: 'home', model: { name: 'mnist-winml' } }));
    expect(e.code).toBe('MODEL_DIGEST_MISMATCH');
    expect(e.message).toContain(m.path);
    expect(e.message).toContain(m.sha256);
    // The digest is the store's, not the genesis's (the genesis here names a stand-in): it said "the genesis names
    // that model", sending the operator to the group's files instead of the store.
    expect(e.message).not.toContain('genesis');
    expect(e.message).toContain('models import');
  });

  // mkdir of a data folder that is a file ended the start with Node's bare "EEXIST: file already exists".
  it('a data folder that is a file is CONFIG_INVALID naming "data"', async () => {
    writeFileSync(join(group, 'a-file'), 'x');
    const e = await refusal(configWith({ data: 'a-file' }));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toMatch(/"data" .*a-file is a file, not a folder/);
  });
});
