// The node config's `replica` section: only known settings, only finite numbers ≥ 0.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadNodeConfig } from '../../src/node/config.ts';
import { DropbearError } from '../../src/protocol/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'dropbear-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function load(replica: unknown): ReturnType<typeof loadNodeConfig> {
  const file = join(dir, 'node-0.json');
  writeFileSync(
    file,
    JSON.stringify({
      id: 0,
      genesis: 'genesis.json',
      key: 'keys/node-0.json',
      data: 'data/node-0',
      p2p: { host: '127.0.0.1', port: 7100 },
      api: { host: '127.0.0.1', port: 8100 },
      model: { standin: true },
      ...(replica === undefined ? {} : { replica }),
    }),
  );
  return loadNodeConfig(file);
}

function refusal(replica: unknown): DropbearError {
  try {
    load(replica);
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

  it('refuses a value that is not a finite number ≥ 0', () => {
    for (const v of ['5', -1, null, true, [5]]) {
      const e = refusal({ voteWaitMs: v });
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.message).toContain('"replica.voteWaitMs" must be a finite number ≥ 0');
    }
  });

  it('refuses a replica section that is not an object', () => {
    expect(refusal([1]).message).toContain('"replica" must be an object');
  });
});
