// A JSON file saved with a byte-order mark first (U+FEFF, as some editors save UTF-8): RFC 8259 lets a reader
// ignore it, and the CLI's files, node configs and key files were refused with an invisible character in
// the message ("Unexpected token '﻿'").
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readJsonFile } from '../../src/cli/io.ts';
import { loadNodeConfig } from '../../src/node/config.ts';
import { keyPairFromSeed, withoutBom } from '../../src/protocol/index.ts';
import { readKeyFile, writeKeyFile } from '../../src/protocol/keyfile.ts';
import { MINIMAL_NODE_CONFIG } from '../node/config.fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'dropbear-bom-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const BOM = '\ufeff';

describe('a leading byte-order mark', () => {
  it('withoutBom drops a leading one only', () => {
    expect(withoutBom(`${BOM}{"a":1}`)).toBe('{"a":1}');
    expect(withoutBom('{"a":1}')).toBe('{"a":1}');
    expect(withoutBom(`{"a":"${BOM}"}`)).toBe(`{"a":"${BOM}"}`);
    expect(withoutBom('')).toBe('');
  });

  it('is read past in a CLI JSON file, a node config and a key file; one later is still an error', () => {
    const json = join(dir, 'x.json');
    writeFileSync(json, `${BOM}{"a":[1,2]}`);
    expect(readJsonFile(json)).toEqual({ a: [1, 2] });
    writeFileSync(json, `{"a":1}${BOM}`);
    expect(() => readJsonFile(json)).toThrow(expect.objectContaining({ code: 'FILE_BAD_JSON' }));

    const config = join(dir, 'node-0.json');
    writeFileSync(config, `${BOM}${JSON.stringify(MINIMAL_NODE_CONFIG)}`);
    expect(loadNodeConfig(config).id).toBe(0);

    const key = join(dir, 'k.json');
    const kp = keyPairFromSeed(new Uint8Array(32).fill(7));
    writeKeyFile(key, kp);
    writeFileSync(key, `${BOM}${readFileSync(key, 'utf8')}`);
    chmodSync(key, 0o600);
    expect(readKeyFile(key).publicKey).toEqual(kp.publicKey);
  });
});
