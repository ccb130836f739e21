/**
 * `certificateFromFile` and `dropbear ledger certificate`: a request's certificate read from a ledger file
 * written by a simulated group with real SQLite ledgers, also once the node's own index no longer serves it.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyCertificate } from '../../src/certificate/index.ts';
import { stableJson } from '../../src/cli/io.ts';
import { certificateFromFile } from '../../src/ledger/extract.ts';
import { SqliteLedger } from '../../src/ledger/sqlite.ts';
import { Certificate, encode, Genesis, hex, toJson } from '../../src/protocol/index.ts';
import { type SimResult, Simulation } from '../../src/sim/world.ts';
import { runCli, runCliInProcess } from '../cli/run-cli.ts';

let dir: string;
let r: SimResult;
const ledgerOf = (node: number) => join(dir, `node-${node}.sqlite`);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dropbear-extract-'));
  const s = new Simulation({
    nodes: 4,
    requests: 300,
    seed: 23,
    rate: 0.5,
    keepAllCertificates: true,
    maxTimeMs: 60_000,
    ledgerDir: dir,
  });
  r = s.run();
  s.close();
  expect(r.done).toBe(true);
  writeFileSync(join(dir, 'genesis.json'), stableJson(toJson(Genesis, r.group.genesis)));
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('certificateFromFile', () => {
  it('finds every certified request, the same certificate the node serves, valid against the genesis', () => {
    const db = SqliteLedger.open(ledgerOf(1), r.group.genesis);
    try {
      for (const [id] of r.certificates) {
        const got = certificateFromFile(ledgerOf(1), Buffer.from(id, 'hex'));
        expect(got.found, id).toBe(true);
        if (!got.found) continue;
        expect(verifyCertificate(got.certificate, r.group.genesis).ok).toBe(true);
        expect(hex(encode(Certificate, got.certificate))).toBe(hex(encode(Certificate, db.certificate(id)!)));
      }
    } finally {
      db.close();
    }
  });

  it('finds one a node with a small index no longer serves', () => {
    const oldest = [...r.certificates.keys()][0];
    const db = SqliteLedger.open(ledgerOf(2), r.group.genesis, { certificateIndexRequests: 5 });
    try {
      expect(db.certificate(oldest)).toBeNull();
    } finally {
      db.close();
    }
    const got = certificateFromFile(ledgerOf(2), Buffer.from(oldest, 'hex'));
    expect(got.found && verifyCertificate(got.certificate, r.group.genesis).ok).toBe(true);
  });

  it('says not found for an unknown id, and gives coded errors for a missing or non-ledger file', () => {
    expect(certificateFromFile(ledgerOf(0), new Uint8Array(32))).toEqual({ found: false, executed: false });
    expect(() => certificateFromFile(join(dir, 'nope.sqlite'), new Uint8Array(32))).toThrow(
      expect.objectContaining({ code: 'LEDGER_NOT_FOUND' }),
    );
    expect(() => certificateFromFile(join(dir, 'genesis.json'), new Uint8Array(32))).toThrow(
      expect.objectContaining({ code: 'LEDGER_UNREADABLE' }),
    );
    expect(() => certificateFromFile(ledgerOf(0), new Uint8Array(31))).toThrow(
      expect.objectContaining({ code: 'BAD_REQUEST_ID' }),
    );
  });

  // It read "stored outcomes do not decode": the label of another blob.
  it('names a stored genesis that does not decode as such (LEDGER_CORRUPT)', () => {
    const copy = join(dir, 'bad-genesis.sqlite');
    copyFileSync(ledgerOf(3), copy);
    const db = new Database(copy);
    db.prepare('UPDATE meta SET genesis = ?').run(Buffer.from([1, 2, 3]));
    db.close();
    expect(() => certificateFromFile(copy, new Uint8Array(32))).toThrow(
      expect.objectContaining({
        code: 'LEDGER_CORRUPT',
        message: expect.stringContaining('the stored genesis does not decode'),
      }),
    );
  });
});

describe('dropbear ledger certificate', () => {
  it('writes a certificate `dropbear verify` accepts; exit 1 for none, 2 for a bad id', async () => {
    const id = [...r.certificates.keys()][10];
    const out = join(dir, 'cert.json');
    const ran = await runCli(['ledger', 'certificate', ledgerOf(3), id, '--out', out], 60_000);
    expect(ran.stderr).toMatch(/written to/);
    expect(ran.code).toBe(0);
    const direct = certificateFromFile(ledgerOf(3), Buffer.from(id, 'hex'));
    expect(direct.found).toBe(true);
    if (direct.found)
      expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual(toJson(Certificate, direct.certificate));
    const verified = await runCli(['verify', out, '--genesis', join(dir, 'genesis.json')], 60_000);
    expect(verified.code).toBe(0);
    // The refusals in this process (runCliInProcess); the certificate written and verified by the binary.
    const none = await runCliInProcess(['ledger', 'certificate', ledgerOf(3), '00'.repeat(32)]);
    expect([none.code, none.stdout]).toEqual([1, '']);
    expect(none.stderr).toMatch(/^error \[CERTIFICATE_NOT_FOUND\]/);
    const bad = await runCliInProcess(['ledger', 'certificate', ledgerOf(3), 'xyz']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error \[CLI_USAGE\]: a request id is 64 hex digits/);
  }, 120_000);
});
