/**
 * docs/certificate.md §9.3 is a worked example for people writing a verifier in another language. This
 * test rebuilds it from its recipe (below) with the reference code and checks that every value the
 * document prints is the one the code produces, so the example cannot drift from the code.
 *
 * The recipe: node i's key from the seed [1, i, 0, …], the client's from [2, 0, …], the treasury's from
 * [3, 0, …]; model digests SHA-256("m" + i). Requests i = 0, 1, 2: nonce i, timestamp 1000, input the
 * ASCII bytes "img" + i, maxFee 100, no policy, each signed alone. Nodes 0, 1, 2 each sign one RESULTS
 * batch over the three requests: label 7 (nodes 0 and 1) or 3 (node 2), score 900000 − node. Consensus
 * batch 1 (timestamp 2000) lists the three requests with those votes; the real ledger executes it;
 * nodes 0, 1, 2 sign the receipt. The certificate is the one for request 1 (leaf 1 of 3).
 *
 * Set DROPBEAR_PRINT_DOC_EXAMPLE=1 to print the values (to regenerate the document after a format change).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  buildCertificates,
  certificateToJson,
  type VerifyFailure,
  verifyCertificate,
} from '../../src/certificate/index.ts';
import { LedgerState } from '../../src/ledger/state.ts';
import {
  type Batch,
  batchDigestOf,
  encode,
  type Genesis,
  Genesis as GenesisCodec,
  groupIdOf,
  hex,
  keyPairFromSeed,
  leafHash,
  Outcome,
  Receipt,
  Request as RequestCodec,
  type Result,
  receiptHashOf,
  requestIdOf,
  resultsDigestOf,
  sha256,
  signReceiptAs,
  signRequest,
  signResults,
  signTagged,
  TAGS,
  toJson,
} from '../../src/protocol/index.ts';

const DOC = readFileSync(new URL('../../docs/certificate.md', import.meta.url), 'utf8');
const te = (s: string) => new TextEncoder().encode(s);
const seed = (a: number, b = 0) => {
  const s = new Uint8Array(32);
  s[0] = a;
  s[1] = b;
  return s;
};

function buildExample() {
  const keys = [0, 1, 2, 3].map((i) => keyPairFromSeed(seed(1, i)));
  const client = keyPairFromSeed(seed(2));
  const treasury = keyPairFromSeed(seed(3));
  const genesis: Genesis = {
    version: 1,
    name: 'example',
    f: 1,
    nodes: keys.map((k, id) => ({
      id,
      publicKey: k.publicKey,
      address: `n${id}`,
      owner: `o${id}`,
      modelName: `m${id}`,
      modelDigest: sha256(te(`m${id}`)),
      fee: id + 1,
    })),
    policy: { kind: 'top1', minAgree: 2 },
    treasury: treasury.publicKey,
    balances: [{ client: client.publicKey, amount: 1000 }],
    params: { expiryMs: 60_000, maxClockSkewMs: 1000, maxInputBytes: 1 << 20, inputType: 'image/png' },
  };
  const groupId = groupIdOf(genesis);
  const requests = [0, 1, 2].map((i) => {
    const input = te(`img${i}`);
    return signRequest(
      {
        groupId,
        client: client.publicKey,
        nonce: i,
        timestamp: 1000,
        inputDigest: sha256(input),
        policy: null,
        maxFee: 100,
      },
      input,
      client,
    );
  });
  const ids = requests.map(requestIdOf);
  const resultOf = (node: number): Result => ({
    kind: 'class',
    top: [{ label: node === 2 ? 3 : 7, score: 900_000 - node }],
  });
  const results = [0, 1, 2].map((node) =>
    signResults(
      groupId,
      {
        node,
        modelDigest: genesis.nodes[node].modelDigest,
        entries: ids.map((requestId) => ({ requestId, result: resultOf(node) })),
      },
      keys[node],
    ),
  );
  const batch: Batch = {
    timestamp: 2000,
    entries: ids.map((requestId, index) => ({
      requestId,
      votes: results.map((r) => ({ node: r.batch.node, results: resultsDigestOf(r), index })),
    })),
    txs: [],
  };
  const ledger = new LedgerState(genesis);
  const exec = ledger.execute(
    1,
    batchDigestOf(batch),
    batch,
    requests.map((sr, i) => ({
      requestId: ids[i],
      request: sr.request,
      votes: results.map((r) => ({
        node: r.batch.node,
        modelDigest: r.batch.modelDigest,
        result: r.batch.entries[i].result,
      })),
    })),
  );
  const receiptBytes = encode(Receipt, exec.receipt);
  const sigs = [0, 1, 2].map((node) => ({
    node,
    signature: signTagged(TAGS.receipt, groupId, receiptBytes, keys[node]),
    view: null,
  }));
  const cert = buildCertificates(exec.outcomes, exec.tree, exec.receipt, sigs, 3)[1];
  return { genesis, groupId, cert, requests, keys, exec };
}

/** The fenced block of `lang` right after the first occurrence of `marker`. */
function blockAfter(marker: string, lang: string): string {
  const at = DOC.indexOf(marker);
  expect(at, marker).toBeGreaterThanOrEqual(0);
  const m = new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``).exec(DOC.slice(at));
  expect(m, `${lang} block after ${marker}`).not.toBeNull();
  return m![1];
}
const hexLines = (b: Uint8Array) =>
  hex(b)
    .match(/.{1,64}/g)!
    .join('\n');

describe('docs/certificate.md §9.3', () => {
  const ex = buildExample();
  const outcomeBytes = encode(Outcome, ex.cert.outcome);
  const receiptBytes = encode(Receipt, ex.cert.receipt);
  const genesisBytes = encode(GenesisCodec, ex.genesis);

  if (process.env.DROPBEAR_PRINT_DOC_EXAMPLE) {
    console.log(JSON.stringify(certificateToJson(ex.cert), null, 2));
    console.log(`canonical Outcome (${outcomeBytes.length} bytes):\n${hexLines(outcomeBytes)}`);
    console.log(`leaf hash = SHA-256(00 ‖ Outcome) = ${hex(leafHash(outcomeBytes))}`);
    console.log(`canonical Receipt (${receiptBytes.length} bytes):\n${hexLines(receiptBytes)}`);
  }

  it('the genesis, its encoding and the group id', () => {
    const json = blockAfter('whose genesis, in JSON, is:', 'json');
    expect(JSON.parse(json)).toEqual(toJson(GenesisCodec, ex.genesis));
    const enc = blockAfter(`Its canonical encoding (${genesisBytes.length} bytes) is`, '');
    expect(enc.trim()).toBe(hexLines(genesisBytes));
    expect(DOC).toContain(`groupId = ${hex(ex.groupId)}`);
  });

  it('the certificate, its intermediate values, and that it verifies', () => {
    const json = blockAfter('this is the certificate for the second one', 'json');
    expect(JSON.parse(json)).toEqual(certificateToJson(ex.cert));
    expect(verifyCertificate(JSON.parse(json), ex.genesis, { request: ex.requests[1] }).ok).toBe(true);
    expect(DOC).toContain(`canonical Outcome (${outcomeBytes.length} bytes):\n${hexLines(outcomeBytes)}\n`);
    expect(DOC).toContain(`leaf hash = SHA-256(00 ‖ Outcome) = ${hex(leafHash(outcomeBytes))}`);
    expect(DOC).toContain(`canonical Receipt (${receiptBytes.length} bytes):\n${hexLines(receiptBytes)}\n`);
    // The request id the document defines (§3): SHA-256 of the canonical Request, nothing else.
    expect(hex(ex.cert.outcome.requestId)).toBe(hex(sha256(encode(RequestCodec, ex.requests[1].request))));
  });

  it('the modifications table', () => {
    const json = certificateToJson(ex.cert) as Record<string, unknown> & {
      outcome: { client: string; votes: unknown[] };
      signatures: unknown[];
      receipt: Record<string, unknown>;
    };
    const reason = (j: unknown): VerifyFailure | 'ok' => {
      const r = verifyCertificate(j, ex.genesis);
      return r.ok ? 'ok' : r.reason;
    };
    const cases: [unknown, VerifyFailure][] = [
      [{ ...json, foo: 1 }, 'malformed'],
      [{ ...json, outcome: { ...json.outcome, client: `${json.outcome.client}=` } }, 'malformed'],
      [{ ...json, version: 3 }, 'unsupported-version'],
      [{ ...json, signatures: [json.signatures[0], ...json.signatures] }, 'duplicate-signer'],
      [
        { ...json, outcome: { ...json.outcome, votes: [json.outcome.votes[0], ...json.outcome.votes] } },
        'duplicate-voter',
      ],
      [{ ...json, receipt: { ...json.receipt, resultsCount: 4 } }, 'bad-signature'],
      [
        { ...json, signatures: [...json.signatures, { node: 9, signature: 'A'.repeat(86), view: null }] },
        'unknown-signer',
      ],
      [{ ...json, signatures: json.signatures.slice(0, -1) }, 'insufficient-signatures'],
      [
        {
          ...json,
          signatures: json.signatures.map((x, i) => ({
            ...(x as object),
            view: i === 0 ? 0 : i === 1 ? 1 : null,
          })),
        },
        'mixed-views',
      ],
    ];
    for (const [j, want] of cases) expect(reason(j)).toBe(want);
  });

  it('reads version 1 (JSON, signatures without a view)', () => {
    const json = certificateToJson(ex.cert) as Record<string, unknown> & {
      signatures: Record<string, unknown>[];
    };
    const v1 = { ...json, version: 1, signatures: json.signatures.map(({ view: _, ...rest }) => rest) };
    expect(verifyCertificate(v1, ex.genesis, { request: ex.requests[1] }).ok).toBe(true);
    // With a `view` it is version 2's layout under the wrong number.
    expect(verifyCertificate({ ...json, version: 1 }, ex.genesis)).toMatchObject({
      reason: 'unsupported-version',
    });
    // A version-1 certificate with a changed receipt still fails on its signatures.
    const bad = { ...v1, receipt: { ...(json.receipt as object), resultsCount: 4 } };
    expect(verifyCertificate(bad, ex.genesis)).toMatchObject({ reason: 'bad-signature' });
  });

  it('prepared receipt signatures: one view, mixed with plain ones, never across views', () => {
    const { keys, exec, genesis, groupId } = ex;
    const rh = receiptHashOf(exec.receipt);
    const sig = (node: number, view: number | null) => ({
      node,
      signature: signReceiptAs(groupId, exec.receipt, rh, view, keys[node]),
      view,
    });
    const certWith = (sigs: ReturnType<typeof sig>[]) => ({ ...ex.cert, signatures: sigs });
    const check = (sigs: ReturnType<typeof sig>[]) => {
      const r = verifyCertificate(certificateToJson(certWith(sigs)), genesis, { request: ex.requests[1] });
      return r.ok ? 'ok' : r.reason;
    };
    expect(check([sig(0, 5), sig(1, 5), sig(2, 5)])).toBe('ok');
    expect(check([sig(0, null), sig(1, 5), sig(3, 5)])).toBe('ok');
    expect(check([sig(0, 4), sig(1, 5), sig(2, 5)])).toBe('mixed-views');
    // A prepared signature claimed for another view, or passed off as a plain one, does not verify.
    expect(check([sig(0, 5), sig(1, 5), { ...sig(2, 5), view: 6 }])).toBe('mixed-views');
    expect(check([sig(0, 5), sig(1, 5), { ...sig(2, 4), view: 5 }])).toBe('bad-signature');
    expect(check([sig(0, null), sig(1, null), { ...sig(2, 5), view: null }])).toBe('bad-signature');
    expect(check([sig(0, 5), sig(1, 5)])).toBe('insufficient-signatures');
    // Decoded, a plain signature whose `view` is undefined (or absent) is a plain one, as when encoded.
    const decoded = (sigs: object[]) => {
      const r = verifyCertificate({ ...ex.cert, signatures: sigs }, genesis, { request: ex.requests[1] });
      return r.ok ? 'ok' : r.reason;
    };
    const { view: _, ...noView } = sig(2, null);
    expect(decoded([sig(0, null), sig(1, null), { ...sig(2, null), view: undefined }])).toBe('ok');
    expect(decoded([sig(0, 5), sig(1, 5), noView])).toBe('ok');
    expect(decoded([sig(0, null), sig(1, null), { ...sig(3, null), node: 2, view: undefined }])).toBe(
      'bad-signature',
    );
    // buildCertificates takes the plain ones and the prepared ones of one view, lowest ids first.
    const built = buildCertificates(
      exec.outcomes,
      exec.tree,
      exec.receipt,
      [sig(0, 4), sig(1, 5), sig(2, null), sig(3, 5)],
      3,
    );
    expect(built[1].signatures.map((x) => [x.node, x.view])).toEqual([
      [1, 5],
      [2, null],
      [3, 5],
    ]);
    expect(() =>
      buildCertificates(exec.outcomes, exec.tree, exec.receipt, [sig(0, 4), sig(1, 5), sig(2, null)], 3),
    ).toThrow(RangeError);
  });
});
