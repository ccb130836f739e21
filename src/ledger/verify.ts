/**
 * Offline audit of a ledger file (`dropbear ledger verify`). Needs only the file: the genesis is stored
 * in it. Checks, for every batch in sequence order:
 * - the batch is stored canonically, its digest is the stored digest and its resolved entries match it;
 * - the receipt chain: receipt s names batch s, its group and the hash of receipt s−1 (the group id for
 *   s = 1), and the stored hash and prev-hash columns agree with the receipt bytes;
 * - receipt signatures: each from a known node and valid; a batch with any signatures has ≥ 2f+1;
 * - the stored outcomes: k of them, k = resultsCount (no row when k = 0), their Merkle root = resultsRoot;
 * - replay: a fresh LedgerState from the genesis, fed the stored batches, reproduces every receipt, every
 *   stored outcome and every stored checkpoint's state digest.
 * Reads the file read-only; writes nothing.
 */
import { existsSync } from 'node:fs';
import {
  Batch,
  batchDigestOf,
  buildTree,
  CodecError,
  DropbearError,
  decode,
  encode,
  equalBytes,
  Genesis,
  groupIdOf,
  hex,
  leafHash,
  Outcome,
  quorumOf,
  Receipt,
  receiptQuorum,
  sha256,
  verifyReceiptSig,
} from '../protocol/index.ts';
import { ResolvedEntries } from './codec.ts';
import { LEDGER_SCHEMA_VERSION, openDatabase, readMeta, StoredOutcomes } from './sqlite.ts';
import { LedgerState } from './state.ts';

export interface LedgerVerification {
  ok: boolean;
  /** Batches found in the file. */
  batches: number;
  problems: string[];
}

type Row = Record<string, unknown>;
const u8 = (b: unknown): Uint8Array => {
  if (b instanceof Uint8Array)
    return b instanceof Buffer ? new Uint8Array(b.buffer, b.byteOffset, b.length) : b;
  throw new CodecError('CODEC_BAD_VALUE', `expected a blob, found ${typeof b}`);
};

function tryDecode<T>(fn: () => T, onError: (msg: string) => void): T | null {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CodecError) {
      onError(e.message);
      return null;
    }
    throw e;
  }
}

/**
 * Re-checks the ledger at `path` end to end. With `genesis`, the file must belong to that group.
 * Throws `LEDGER_NOT_FOUND` for a missing file; every other defect is a line in `problems`.
 */
export function verifyLedgerFile(path: string, genesis?: Genesis): LedgerVerification {
  if (!existsSync(path)) throw new DropbearError('LEDGER_NOT_FOUND', `no ledger at ${path}`);
  const problems: string[] = [];
  let batches = 0;
  const db = openDatabase(path, { readonly: true, fileMustExist: true });
  try {
    batches = check(db, genesis, problems);
  } catch (e) {
    if (e instanceof DropbearError) throw e;
    problems.push(`cannot read ledger: ${(e as Error).message}`);
  } finally {
    db.close();
  }
  return { ok: problems.length === 0, batches, problems };
}

function check(
  db: ReturnType<typeof openDatabase>,
  expected: Genesis | undefined,
  problems: string[],
): number {
  const meta = readMeta(db);
  if (!meta) {
    problems.push('not a Dropbear ledger (no meta row)');
    return 0;
  }
  if (meta.schemaVersion !== LEDGER_SCHEMA_VERSION) {
    problems.push(
      `ledger schema ${meta.schemaVersion}; this build reads ${LEDGER_SCHEMA_VERSION}` +
        (meta.schemaVersion >= 2 && meta.schemaVersion < LEDGER_SCHEMA_VERSION
          ? ' (a node opening the file upgrades it; verification only reads)'
          : ''),
    );
    return 0;
  }
  const genesis = tryDecode(
    () => decode(Genesis, meta.genesis),
    (m) => problems.push(`stored genesis does not decode: ${m}`),
  );
  if (!genesis) return 0;
  const groupId = groupIdOf(genesis);
  if (!equalBytes(groupId, meta.groupId))
    problems.push(`stored group id ${hex(meta.groupId)} is not the stored genesis's (${hex(groupId)})`);
  if (expected && !equalBytes(groupIdOf(expected), groupId))
    problems.push(
      `ledger belongs to group ${hex(groupId)}, not the given genesis's ${hex(groupIdOf(expected))}`,
    );

  const q = quorumOf(genesis);
  const getReceipt = db.prepare('SELECT receipt, hash, prev_hash FROM receipts WHERE seq = ?');
  const getSigs = db.prepare('SELECT node, signature, view FROM receipt_sigs WHERE seq = ? ORDER BY node');
  const getOutcomes = db.prepare('SELECT outcomes FROM outcomes WHERE seq = ?');
  const checkpoints = new Map<number, Uint8Array>();
  for (const r of db.prepare('SELECT seq, state_digest FROM checkpoints').all() as Row[])
    checkpoints.set(r.seq as number, u8(r.state_digest));

  const state = new LedgerState(genesis);
  let replaying = true;
  let prevHash: Uint8Array | null = groupId; // the chain starts at the group id
  let count = 0;
  let expectSeq = 1;
  for (const row of db.prepare('SELECT * FROM batches ORDER BY seq').iterate() as IterableIterator<Row>) {
    count++;
    const seq = row.seq as number;
    const at = (msg: string) => problems.push(`batch ${seq}: ${msg}`);
    if (seq !== expectSeq) {
      problems.push(`batches ${expectSeq}..${seq - 1} are missing`);
      replaying = false;
      prevHash = null;
    }
    expectSeq = seq + 1;

    // The batch and its resolved entries.
    const digest = u8(row.digest);
    const batch = tryDecode(
      () => decode(Batch, u8(row.batch)),
      (m) => at(`batch bytes do not decode: ${m}`),
    );
    const entries = tryDecode(
      () => decode(ResolvedEntries, u8(row.entries)),
      (m) => at(`resolved entries do not decode: ${m}`),
    );
    if (batch && !equalBytes(batchDigestOf(batch), digest))
      at('stored digest is not the digest of the batch');
    if (batch && entries) {
      if (
        entries.length !== batch.entries.length ||
        entries.some(
          (e, i) =>
            !equalBytes(e.requestId, batch.entries[i].requestId) ||
            e.votes.length !== batch.entries[i].votes.length ||
            e.votes.some((v, k) => v.node !== batch.entries[i].votes[k].node),
        )
      )
        at("resolved entries do not match the batch's entries");
    }

    // The receipt and the chain.
    const rrow = getReceipt.get(seq) as Row | undefined;
    let receipt: Receipt | null = null;
    let receiptBytes: Uint8Array | null = null;
    let receiptHash: Uint8Array | null = null;
    if (!rrow) at('no receipt');
    else {
      receiptBytes = u8(rrow.receipt);
      receiptHash = sha256(receiptBytes);
      receipt = tryDecode(
        () => decode(Receipt, receiptBytes!),
        (m) => at(`receipt does not decode: ${m}`),
      );
      if (!equalBytes(u8(rrow.hash), receiptHash)) at('stored receipt hash is not the hash of the receipt');
      if (receipt) {
        if (receipt.seq !== seq) at(`receipt names batch ${receipt.seq}`);
        if (!equalBytes(receipt.groupId, groupId)) at('receipt names another group');
        if (!equalBytes(receipt.batchDigest, digest)) at('receipt names another batch digest');
        if (!equalBytes(u8(rrow.prev_hash), receipt.prevReceipt))
          at("stored prev hash is not the receipt's previous-receipt hash");
        if (prevHash && !equalBytes(receipt.prevReceipt, prevHash))
          at(
            seq === 1
              ? 'first receipt does not chain to the group id'
              : `receipt does not chain to receipt ${seq - 1}`,
          );
      }
    }
    prevHash = receiptHash;

    // Receipt signatures.
    const sigs = getSigs.all(seq) as Row[];
    if (sigs.length > 0 && receiptBytes) {
      const signers = new Set<number>();
      const valid: { node: number; view: number | null }[] = [];
      for (const s of sigs) {
        const node = s.node as number;
        const view = s.view === null ? null : (s.view as number);
        const key = genesis.nodes[node]?.publicKey;
        if (!key) at(`signature from unknown node ${node}`);
        else if (signers.has(node)) at(`two signatures from node ${node}`);
        else if (
          !verifyReceiptSig(groupId, receiptBytes, receiptHash!, { signature: u8(s.signature), view }, key)
        )
          at(`receipt signature of node ${node} is invalid`);
        else {
          signers.add(node);
          valid.push({ node, view });
        }
      }
      // Prepared signatures count only with plain ones and those of the same view (receiptQuorum).
      if (signers.size < q) at(`${signers.size} valid receipt signatures < ${q} (2f+1)`);
      else if (!receiptQuorum(valid, q))
        at(`${signers.size} valid receipt signatures, no ${q} (2f+1) of them plain or prepared in one view`);
    }

    // Stored outcomes against the receipt's Merkle root.
    const orow = getOutcomes.get(seq) as Row | undefined;
    const stored = orow
      ? tryDecode(
          () => decode(StoredOutcomes, u8(orow.outcomes)),
          (m) => at(`stored outcomes do not decode: ${m}`),
        )
      : [];
    if (stored?.length === 0 && orow) at('an empty outcomes row');
    const outcomeBytes = stored ?? [];
    outcomeBytes.forEach((bytes, i) => {
      tryDecode(
        () => decode(Outcome, bytes),
        (m) => at(`outcome ${i} does not decode: ${m}`),
      );
    });
    if (receipt) {
      if (receipt.resultsCount !== outcomeBytes.length)
        at(`${outcomeBytes.length} stored outcomes, receipt says ${receipt.resultsCount}`);
      else if (!equalBytes(buildTree(outcomeBytes.map((b) => leafHash(b))).root, receipt.resultsRoot))
        at("stored outcomes' Merkle root is not the receipt's results root");
    }

    // Replay.
    if (replaying && batch && entries) {
      try {
        const ex = state.execute(seq, digest, batch, entries);
        let same = receiptHash !== null && equalBytes(ex.receiptHash, receiptHash);
        if (!same) at('replay does not reproduce the stored receipt');
        const outs = ex.outcomes.map((o) => encode(Outcome, o));
        if (outs.length !== outcomeBytes.length || outs.some((b, i) => !equalBytes(b, outcomeBytes[i]))) {
          at('replay does not reproduce the stored outcomes');
          same = false;
        }
        const cp = checkpoints.get(seq);
        if (cp && !equalBytes(cp, state.stateDigest())) {
          at('replay does not reproduce the checkpoint state digest');
          same = false;
        }
        if (!same) {
          replaying = false;
          problems.push(`replay stopped at batch ${seq}: the state diverges from the stored ledger`);
        }
      } catch (e) {
        at(`replay failed: ${(e as Error).message}`);
        replaying = false;
      }
    } else if (replaying) {
      replaying = false;
      problems.push(`replay stopped at batch ${seq}`);
    }
  }

  // Rows that belong to no batch.
  const orphans: [string, string][] = [
    ['receipts', 'SELECT seq FROM receipts WHERE seq NOT IN (SELECT seq FROM batches)'],
    [
      'receipt signatures',
      'SELECT DISTINCT seq FROM receipt_sigs WHERE seq NOT IN (SELECT seq FROM batches)',
    ],
    ['outcomes', 'SELECT DISTINCT seq FROM outcomes WHERE seq NOT IN (SELECT seq FROM batches)'],
    ['checkpoints', 'SELECT seq FROM checkpoints WHERE seq NOT IN (SELECT seq FROM batches)'],
  ];
  for (const [what, sql] of orphans) {
    const seqs = (db.prepare(sql).all() as Row[]).map((r) => r.seq as number);
    if (seqs.length > 0)
      problems.push(`${what} for batches not in the ledger: ${seqs.slice(0, 10).join(', ')}`);
  }
  return count;
}
