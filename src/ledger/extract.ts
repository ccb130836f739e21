/**
 * A request's certificate read from a ledger file as it is on disk, without opening it as a node does (no
 * replay, no lock, nothing written but SQLite's -shm beside a WAL file): for certificates older than the
 * ones a running node serves (SqliteLedgerOptions.certificateIndexRequests), or from a copy of a node's
 * file. `dropbear ledger certificate`.
 */
import { existsSync } from 'node:fs';
import {
  type Certificate,
  DropbearError,
  decode,
  equalBytes,
  Genesis,
  quorumOf,
  receiptQuorum,
} from '../protocol/index.ts';
import {
  assembleCertificate,
  batchOutcomesOf,
  LEDGER_SCHEMA_VERSION,
  noLedgerError,
  openDatabase,
  readMeta,
  storedOutcomeIds,
} from './sqlite.ts';
import { readFailure } from './verify.ts';

type Row = Record<string, unknown>;

export type FileCertificate =
  | { found: true; certificate: Certificate; seq: number }
  /** `executed`: the request has an outcome in batch `seq`, whose receipt has fewer than q signatures here. */
  | { found: false; executed: boolean; seq?: number };

/**
 * The certificate of request `requestId` (32 bytes) in the ledger file at `path`, exactly as the node
 * would serve it (SqliteLedger.certificate: the outcome, its Merkle path, the receipt and the q
 * lowest-numbered signatures that form a quorum). Reads the stored outcomes from the newest batch back,
 * so a recent request is found at once and an absent one costs a read of every batch's outcomes (a request
 * has at most one outcome: a repeat is skipped as a duplicate, or as expired). `onProgress(batches)`: called
 * every 10,000 batches read. Throws LEDGER_NOT_FOUND, LEDGER_UNREADABLE, LEDGER_CORRUPT, LEDGER_READ_ONLY.
 */
export function certificateFromFile(
  path: string,
  requestId: Uint8Array,
  onProgress?: (batches: number) => void,
): FileCertificate {
  if (requestId.length !== 32)
    throw new DropbearError('BAD_REQUEST_ID', `a request id is 32 bytes, not ${requestId.length}`);
  if (!existsSync(path)) throw new DropbearError('LEDGER_NOT_FOUND', `no ledger at ${path}`);
  const db = openDatabase(path, { readonly: true, fileMustExist: true });
  try {
    // One read transaction: a snapshot, also of a ledger a running node writes meanwhile.
    db.exec('BEGIN');
    const meta = readMeta(db, path);
    if (!meta) throw noLedgerError(db, path);
    if (meta.schemaVersion !== LEDGER_SCHEMA_VERSION)
      throw new DropbearError(
        'LEDGER_SCHEMA_VERSION',
        `${path}: ledger schema ${meta.schemaVersion}; this build reads ${LEDGER_SCHEMA_VERSION} (a node opening the file upgrades it)`,
      );
    let genesis: Genesis;
    try {
      genesis = decode(Genesis, meta.genesis);
    } catch (e) {
      // Said as what it is: the catch below names outcomes for any blob that does not decode.
      throw new DropbearError(
        'LEDGER_CORRUPT',
        `${path}: the stored genesis does not decode: ${(e as Error).message}`,
      );
    }
    let read = 0;
    for (const r of db
      .prepare('SELECT seq, outcomes FROM outcomes ORDER BY seq DESC')
      .iterate() as IterableIterator<Row>) {
      const seq = r.seq as number;
      const blob = new Uint8Array(r.outcomes as Buffer);
      let leafIndex = -1;
      let i = 0;
      storedOutcomeIds(blob, (id) => {
        if (leafIndex < 0 && equalBytes(id, requestId)) leafIndex = i;
        i++;
      });
      if (++read % 10_000 === 0) onProgress?.(read);
      if (leafIndex < 0) continue;
      const sigs = receiptQuorum(
        (db.prepare('SELECT node, signature, view FROM receipt_sigs WHERE seq = ?').all(seq) as Row[]).map(
          (s) => ({
            node: s.node as number,
            signature: new Uint8Array(s.signature as Buffer),
            view: s.view === null ? null : (s.view as number),
          }),
        ),
        quorumOf(genesis),
      );
      const receipt = db.prepare('SELECT receipt FROM receipts WHERE seq = ?').get(seq) as Row | undefined;
      if (!sigs || !receipt) return { found: false, executed: true, seq };
      return {
        found: true,
        seq,
        certificate: assembleCertificate(
          batchOutcomesOf(blob),
          leafIndex,
          new Uint8Array(receipt.receipt as Buffer),
          sigs,
        ),
      };
    }
    return { found: false, executed: false };
  } catch (e) {
    if (e instanceof DropbearError) {
      // A blob that does not decode is a damaged ledger, not a bad argument.
      if (e.code.startsWith('CODEC_'))
        throw new DropbearError('LEDGER_CORRUPT', `${path}: stored outcomes do not decode: ${e.message}`);
      throw e;
    }
    throw readFailure(path, e) ?? e;
  } finally {
    db.close();
  }
}
