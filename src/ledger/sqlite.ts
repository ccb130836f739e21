/**
 * The durable ledger: LedgerState (the deterministic executed state) plus a SQLite file holding
 * everything needed to rebuild it, to serve certificates late and to restart without equivocating.
 *
 * Storage: one SQLite database in WAL mode (better-sqlite3, synchronous API, one connection per node).
 * Tables (see docs/ledger.md for the columns): meta, batches, receipts, receipt_sigs, outcomes (the
 * certificates index), checkpoints (unused: stable checkpoints are consensus_log records), consensus_log,
 * evidence, batch_sources, own_results (this node's own signed RESULTS while a vote in them may count),
 * snapshots (the whole state after a batch, local), txs (each ordered transaction's fate). Every blob is
 * canonical codec bytes.
 *
 * Restart: `open` restores the latest snapshot that passes its checks (else starts from the genesis) and
 * replays every stored batch after it, in order, and checks that each batch hashes to its stored digest,
 * that its resolved entries match it and hash to its request ids, and that each replayed receipt hash
 * equals the stored one. Replay runs no signature checks (model-update transactions aside), so it is cheap next to
 * consensus; docs/ledger.md gives the measured rate.
 *
 * fsync policy (PROTOCOL.md "Durability and restarts"):
 * - Each `execute` is one transaction: the batch, its resolved entries, the receipt and the outcomes
 *   commit together or not at all. `addReceiptSignatures`, `saveCheckpoint` and `saveEvidence` are one
 *   transaction each. Outcomes are one row per batch; which batch holds a request's outcome is kept in
 *   memory (rebuilt by the replay at open), not in the file.
 * - synchronous FULL (the default): every commit fsyncs the WAL before the call returns, so whatever a
 *   call returned from survives a power loss.
 * - synchronous NORMAL (opt-in): those commits reach the OS but are fsynced only at the next WAL
 *   checkpoint or the next `persist`. A process crash loses nothing; a power loss may lose the most
 *   recent executions — always a suffix of whole batches, never part of one (WAL commits are atomic and
 *   recovered in order). The node re-fetches and re-executes them (deterministic: same receipts, and
 *   Ed25519 signatures are deterministic, so the same RECEIPT-SIG and CHECKPOINT messages).
 * - `persist` (what the node is about to sign) is fsynced in both modes (unless the durability is relaxed,
 *   or `prepared` for most votes: below): it commits with synchronous FULL whatever the configured level, and returns only once the
 *   record is on disk. The caller sends
 *   the message after `persist` returns. A FULL commit also makes every earlier WAL frame durable.
 * - Group commit (`beginGroup`/`commitGroup`, docs/ledger.md): writes between the two share one
 *   transaction and at most one fsync. The node host groups the writes of each turn of its event loop,
 *   commits them with `commitGroupUnsynced` and fsyncs with `syncWalAsync` on libuv's thread pool (one
 *   sync for every group committed while the one before ran), holding the messages they guard until the
 *   sync that covers them has called back. A group is fsynced when it holds a write
 *   that needs it at the configured level (a `persist` always; with FULL also an execution, a checkpoint,
 *   evidence). A group of receipt signatures alone is not: they are what peers signed over a receipt this
 *   node executed in an earlier commit (WAL commits survive in order, so they never outlive it); a node
 *   that loses them (power loss) collects them again (the replica
 *   restores the last receipts short of q signatures), and the next fsynced group makes them durable too.
 *   Under a group the connection runs at NORMAL and the WAL is fdatasynced by hand after the commit: in
 *   WAL mode a commit is WAL frames, so that is the FULL commit it replaces.
 * - `uncleanShutdown` is true when the previous session did not `close()`: with NORMAL, its last
 *   executions may be lost (see above); the signed log never is, unless the durability is relaxed or
 *   prepared.
 * - Relaxed durability (`durability: 'relaxed'`, opt-in): the signed log is committed like everything
 *   else, to the operating system without an fsync (executions at NORMAL), so the caller may send what it
 *   persisted as soon as the commit returns. A process crash still loses nothing (the kernel holds the
 *   written pages); a crash of the machine (power loss, kernel panic) may lose the last records of the
 *   signed log. To tell the two apart the ledger keeps a marker beside the file (`<path>.boot`, written
 *   and fsynced at every open): the durability of the session and the kernel's boot id. `writesMayBeLost`
 *   is true when the previous session ended uncleanly, ran relaxed, and the machine has rebooted since (or
 *   either boot id is unknown): the node must then not sign in any view it may have taken part in
 *   (PROTOCOL.md, "Durability and restarts"; the replica's `forgetful`). Opening always commits one FULL
 *   transaction first, which makes every earlier session's WAL frames durable.
 * - `prepared` durability (`durability: 'prepared'`): fsynced before the caller acts on them are the
 *   records that other nodes rely on after a power loss, and no others: the prepared certificate written
 *   before COMMIT (a batch that may have committed keeps its place through a view change only if f + 1
 *   honest nodes still hold it), VIEW-CHANGE and NEW-VIEW, checkpoints, and the first PRE-PREPARE or
 *   PREPARE record of each view (so the ledger durably names every view its node signed in). Later
 *   PRE-PREPARE and PREPARE records of a view go to the operating system only, as with relaxed; they only
 *   keep the node from signing another digest for the same view and sequence number, and a node whose
 *   machine crashed gets that from the same rule as with relaxed: `writesMayBeLost`, and it signs in no
 *   view up to the group's current one. Executions run at NORMAL by default (re-fetched after a power
 *   loss). Unlike relaxed, this holds however many machines lose power at once: docs/ledger.md.
 */
import {
  closeSync,
  existsSync,
  fdatasync,
  fdatasyncSync,
  openSync,
  readFileSync,
  realpathSync,
  rmSync,
  statfsSync,
  statSync,
  truncateSync,
} from 'node:fs';
import { uptime } from 'node:os';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { replaceFile } from '../protocol/files.ts';
import { RecentSeqIndex } from '../protocol/idwindow.ts';
import {
  array,
  Batch,
  batchDigestOfBytes,
  buildTree,
  bytes,
  CERTIFICATE_VERSION,
  type Certificate,
  CodecError,
  type CommitProof,
  commitQuorum,
  DropbearError,
  decode,
  encode,
  equalBytes,
  Genesis,
  groupIdOf,
  hex,
  leafHash,
  type MerkleTree,
  NodeSignature,
  Outcome,
  proofReceiptSigs,
  Reader,
  Receipt,
  type ReceiptSignature,
  ReceiptSignatures,
  Request,
  receiptQuorum,
  requestIdOfBody,
  SignedRequest,
  SignedResults,
  type StateBatch,
  StateBatch as StateBatchCodec,
  sha256,
  uint,
  verifyReceiptSig,
} from '../protocol/index.ts';
import { ResolvedEntries } from './codec.ts';
import { type Execution, LedgerState, MAX_SNAPSHOT_WINDOW, type ResolvedEntry } from './state.ts';

/**
 * 2: requests are stored with their authentication as a union (a single signature or a client batch
 * member) and request ids are SHA-256(canonical Request); a version-1 file cannot be read.
 * 3: outcomes are stored one row per batch (its outcomes in leaf order), not one row per request keyed by
 * request id: a row per request inserted at a random place in a B-tree dirtied a page per request, ~6 ms
 * of SQLite per 256-request batch against ~0.4 ms for one row (scratch probe, 2026-11-30). The request-id
 * index lives in memory (`SeqIndex`, protocol/idwindow.ts: typed arrays, 16–32 bytes a request),
 * rebuilt by the replay at open. `open` upgrades a version-2 file
 * in place (`migrate2to3`); a version-1 file cannot be read.
 * 4: receipt signatures carry their kind (`receipt_sigs.view`: NULL for a signature made after executing,
 * the view for a prepared receipt signature; protocol/messages.ts ReceiptSignature). `open` upgrades a
 * version-3 file in place (`migrate3to4`: the column is added, every stored signature being plain).
 * 5: a batch's proof for state transfer keeps, besides its COMMIT signatures, the prepared receipt
 * signatures that committed it (`batch_sources.commit_receipt_sigs`; ReplicaConfig.receiptCommits).
 * `open` upgrades a version-4 file in place (`migrate4to5`: the column is added, empty).
 * 6: the node's own signed RESULTS that votes may still need (`own_results`), so that a restarted node
 * never signs another result for a request it voted on. `open` upgrades a version-5 file in place
 * (`migrate5to6`: the table is added, empty).
 * 7: local state snapshots (`snapshots`), so that an open restores the state after the latest one instead
 * of replaying every batch from the genesis. `open` upgrades a version-6 file in place (`migrate6to7`: the
 * table is added, empty; the first snapshot comes after `snapshotEvery` more requests).
 * 8: the signed log is pruned at every stable checkpoint (`persist`), and a stable checkpoint record
 * carries the view its node was in (none while changing view): a restore takes the view from it where the
 * votes that named it are gone. Nothing in the tables changes; the version is there so that a build that
 * reads 7 refuses the file: it ignores that view, and from a pruned log would restore the node into a
 * view it had left and sign there (test/sim/log-prune-downgrade.test.ts). `open` upgrades a version-7
 * file in place (`migrate7to8`: the version alone; its log is pruned at its next stable checkpoint).
 * 9: every node writes a `newView` record with the NEW-VIEW message when it enters a view by one (before,
 * only the primary wrote one, without the message), and a restore in that view pins the re-proposals again.
 * Nothing in the tables changes; a build that reads 8 must refuse the file: it would read a backup's
 * `newView` record as "in that view" without the pins, where its own log (the VIEW-CHANGE alone) had it
 * restored as changing view and asking for the NEW-VIEW again. `open` upgrades a version-8 file in place
 * (`migrate8to9`: the version alone; its nodes keep no NEW-VIEW until their next view change).
 * 10: batches may carry deposits and fee changes (transaction kinds a build that reads 9 cannot decode),
 * and the state digest and snapshots hold the treasury's deposit count, the money it minted and each node's
 * fee version (a build that reads 9
 * computes other checkpoint digests). `open` upgrades a version-9 file in place (`migrate9to10`: the
 * version, and its snapshots are deleted: they are in the old layout, which no longer decodes; the next
 * one is written `snapshotEvery` requests later, and the open replays from the genesis until then).
 * 11: batches may carry withdrawals (a node owner's payout: a transaction kind a build that reads 10 cannot
 * decode), and the state digest and snapshots hold each node's withdrawals and the money they took out; and
 * each ordered transaction's fate is kept (`txs`: the batch that first applied it, else the latest that
 * carried it without effect), written with the batch, so that GET /v1/txs/:txId answers it after a restart
 * (it answered TX_NOT_FOUND: the node kept fates in memory only). `open` upgrades a version-10 file in place
 * (`migrate10to11`: the table is added, and its snapshots, in the old layout, are deleted, so that the first
 * open replays every batch from the genesis and fills in the fate of every transaction executed before; see
 * `txFate`).
 * 12: batches may carry refunds (a client's payback of its unused balance: a transaction kind a build that
 * reads 11 cannot decode), and the state digest and snapshots hold each client's refund serial and the money
 * refunds paid back. `open` upgrades a version-11 file in place (`migrate11to12`: the version, and its
 * snapshots, in the old layout, are deleted; the open replays from the genesis until the next is written).
 * 13: batches may carry transfers (a client's payment to another account: a transaction kind a build that
 * reads 12 cannot decode); the state keeps its layout (each client's serial now counts its refunds and
 * transfers together). `open` upgrades a version-12 file in place (`migrate12to13`: the version alone).
 */
export const LEDGER_SCHEMA_VERSION = 13;

export type Synchronous = 'FULL' | 'NORMAL';
/**
 * What is fsynced before the caller may act on it: the whole signed log and every execution (`full`), only
 * the records a quorum relies on after a power loss (`prepared`: see the header), or nothing (`relaxed`).
 */
export type Durability = 'full' | 'prepared' | 'relaxed';
export const DURABILITIES: readonly Durability[] = ['full', 'prepared', 'relaxed'];

/**
 * The signed-log records that `prepared` durability leaves unsynced once the ledger holds a durable record
 * of their view: the votes of the first two phases (see the header).
 */
const VOTE_KINDS: ReadonlySet<string> = new Set(['prePrepare', 'prepare']);

/** The size (bytes) the WAL file is cut back to after a checkpoint (SQLite's `journal_size_limit`). */
export const WAL_SIZE_LIMIT = 64 * 1024 * 1024;

/** SQLite page size of a new ledger file: see the note in BENCHMARKS.md "Durable ledger". */
const PAGE_SIZE = 16384;

export interface SqliteLedgerOptions {
  /** SQLite `synchronous` for execution commits. Default FULL with `full` durability, NORMAL otherwise (relaxed: only NORMAL). */
  synchronous?: Synchronous;
  /** `prepared`: only what a quorum relies on is fsynced; `relaxed`: nothing (see the header). Default `full`. */
  durability?: Durability;
  /** Receipt-signature checks in `addReceiptSignatures` (default true). */
  verifySignatures?: boolean;
  /**
   * This node's ledger is lost (a new disk, a deleted or emptied file): make a new one that starts as
   * after lost writes (`writesMayBeLost`, a `forgotten` record), so that the replica signs in no view the
   * group may have used before it has learned the group's from 2f + 1 peers. Only for a file holding no
   * ledger: one that holds a ledger is LEDGER_BAD_OPTION (`dropbear node --rejoin`).
   */
  rejoin?: boolean;
  /**
   * The id of the node opening the ledger, kept in its boot marker: an open by another node (a config whose
   * "data" names another node's folder) is LEDGER_WRONG_NODE before anything is read or written.
   */
  node?: number;
  /**
   * Called while `open` (or the rebuild after a failed write) replays the stored batches: at most once per
   * `replayProgressMs` and once at the end, when the replay has taken that long or more. A ledger of many
   * million requests takes minutes to replay, and a node that says nothing for that long looks hung.
   */
  onReplayProgress?: (p: ReplayProgress) => void;
  /** How often `onReplayProgress` is called during a replay, in ms (default 2000; 0: after every batch). */
  replayProgressMs?: number;
  /**
   * Write a snapshot of the whole state (`snapshots`) in the transaction of the execution that brings the
   * requests executed since the last one to this many (a batch counts its entries, and at least one); 0:
   * never. Default DEFAULT_SNAPSHOT_EVERY. See docs/ledger.md, "Snapshots".
   */
  snapshotEvery?: number;
  /**
   * Called when an open (or the rebuild after a failed write) ignores a stored snapshot that fails its
   * checks, with why; it then restores an older one or replays from the genesis.
   */
  onSnapshotIgnored?: (problem: string) => void;
  /**
   * `certificate(id)` finds the certificates of at least this many latest executed requests, and at most
   * twice as many (RecentSeqIndex: 16–32 bytes of memory a request); an older one is `null`, like an
   * unknown one. An open reads the stored outcomes of about this many requests to rebuild the index, not
   * of the node's whole history. Default DEFAULT_CERTIFICATE_INDEX_REQUESTS.
   */
  certificateIndexRequests?: number;
}

/**
 * Requests whose certificates a node finds by default: up to ~400 MB of index at most twice as many (each
 * generation a table of 2^24 slots of 12 bytes, 201 MB, once it holds over 6.3 million ids), and
 * about 80 minutes at the protocol part's peak rate (~2,000 requests/s), four days at the end-to-end part's
 * (~30 images/s). Clients take their certificates within seconds; an older one is still in the ledger file.
 */
export const DEFAULT_CERTIFICATE_INDEX_REQUESTS = 10_000_000;

/**
 * Requests between snapshots by default. A snapshot of a window of 600,000 ids (10 minutes at 1,000
 * requests/s) took 0.5 s to encode, hash and write on the shared 2-core machine here (1.5 s under heavy
 * load; `npm run bench:restart`), so 0.5–1.5 µs a request at this interval, a few per cent of an
 * execution; a restart then replays at most this many requests (15–30 s at the replay rates in
 * docs/ledger.md) after restoring it.
 */
export const DEFAULT_SNAPSHOT_EVERY = 1_000_000;

/** Snapshots kept: the latest, and the one before it in case the latest fails its checks. */
const SNAPSHOTS_KEPT = 2;

/** How far a replay has come (SqliteLedgerOptions.onReplayProgress). */
export interface ReplayProgress {
  /** Batches replayed so far, and the highest stored batch seq (batches are stored 1..total). */
  batches: number;
  total: number;
  /**
   * Requests with an outcome so far: indexed for their certificates up to the snapshot restored, then
   * replayed.
   */
  requests: number;
  /** Since the replay started (monotonic clock). */
  elapsedMs: number;
  done: boolean;
  /**
   * The batch whose stored snapshot the state was restored from (0: none, replayed from the genesis).
   * Reports with `batches` at or below it are of the certificate index's rebuild.
   */
  snapshot: number;
}

/**
 * One thing the node signed (or decided), written before the message leaves. Structurally the same as
 * the consensus replica's PersistRecord; fields a kind does not have are absent.
 */
export interface LogRecord {
  kind: string;
  view?: number;
  seq?: number;
  digest?: Uint8Array;
  /** Opaque canonical bytes the consensus layer needs back after a restart (a prepared certificate). */
  body?: Uint8Array;
}

/** A receipt signature: `view` null when plain, else the view it was prepared in. */
export type ReceiptSig = ReceiptSignature;

export interface StoredBatch {
  seq: number;
  view: number;
  digest: Uint8Array;
  batch: Batch;
  entries: ResolvedEntry[];
}

/** What a batch references, kept so the node can serve it to a peer catching up. */
export interface BatchSources {
  requests: SignedRequest[];
  results: SignedResults[];
  commitProof: CommitProof | null;
}

/** `batch_sources.requests`. */
export const SourceRequests = array(SignedRequest, 1 << 20);
const NO_INPUT = new Uint8Array(0);
/**
 * A source request as stored and shipped by state transfer: the signed request and its authorisation,
 * without the input. The signature covers the input's digest, not its bytes, so the proof that the client
 * asked (and agreed to pay) is whole; execution reads only the votes; and a ledger that kept every client
 * image at every node would grow by the inputs' size per request (~110 KB for an ImageNet JPEG).
 */
function withoutInput(sr: SignedRequest): SignedRequest {
  return sr.input.length === 0 ? sr : { request: sr.request, auth: sr.auth, input: NO_INPUT };
}
/** `batch_sources.results`. */
export const SourceResults = array(SignedResults, 1 << 20);
/** `batch_sources.commit_sigs`. */
export const CommitSigs = array(NodeSignature, 256);
/** A batch's outcomes as stored: each Outcome's canonical bytes (the Merkle leaves), in leaf order. */
export const StoredOutcomes = array(bytes(1 << 24), 1 << 20);

/** A recently executed or read batch's outcomes and Merkle tree (what certificates are cut from). */
export interface BatchOutcomes {
  outcomes: Outcome[];
  tree: MerkleTree;
}

/** A batch's stored outcomes (`StoredOutcomes` bytes) decoded, with their Merkle tree. */
export function batchOutcomesOf(stored: Uint8Array): BatchOutcomes {
  const leaves = decode(StoredOutcomes, stored);
  return { outcomes: leaves.map((l) => decode(Outcome, l)), tree: buildTree(leaves.map(leafHash)) };
}

/** The certificate of outcome `leafIndex` of a batch, from its receipt's bytes and q signatures. */
export function assembleCertificate(
  b: BatchOutcomes,
  leafIndex: number,
  receiptBytes: Uint8Array,
  signatures: ReceiptSig[],
): Certificate {
  return {
    version: CERTIFICATE_VERSION,
    outcome: b.outcomes[leafIndex],
    leafIndex,
    path: b.tree.path(leafIndex),
    receipt: decode(Receipt, receiptBytes),
    signatures,
  };
}
export interface StoredCheckpoint {
  seq: number;
  stateDigest: Uint8Array;
  proof: Uint8Array;
}

export interface StoredEvidence {
  id: number;
  node: number;
  kind: string;
  proof: Uint8Array;
}

/**
 * This node's own signed RESULTS while a vote in them may still count (schema 6): written before the
 * RESULTS leaves, deleted once no vote holds it; `newest` is the newest timestamp among its requests.
 */
const OWN_RESULTS_TABLE = `CREATE TABLE own_results (
  digest BLOB PRIMARY KEY,
  signed BLOB NOT NULL,
  newest INTEGER NOT NULL
);`;

/**
 * Local snapshots of the whole state (schema 7): `state` is LedgerState.snapshot's bytes after batch `seq`,
 * `hash` their SHA-256. Never sent to peers; see docs/ledger.md, "Snapshots".
 */
const SNAPSHOTS_TABLE = `CREATE TABLE snapshots (
  seq INTEGER PRIMARY KEY,
  state BLOB NOT NULL,
  hash BLOB NOT NULL
);`;

/**
 * Each ordered transaction's fate (schema 11), by id (`txIdOf`): the batch `seq` that first applied it
 * (`applied` 1), else the latest batch that carried it without effect (`applied` 0), as NodeHost.noteTxs
 * keeps it in memory. Written in the transaction of that batch's execution; only batches with transactions
 * write to it.
 */
const TXS_TABLE = `CREATE TABLE txs (
  id BLOB PRIMARY KEY,
  seq INTEGER NOT NULL,
  applied INTEGER NOT NULL
) WITHOUT ROWID;`;

/** The schema, created in one transaction on first open. */
export const SCHEMA = `
CREATE TABLE meta (
  id INTEGER PRIMARY KEY CHECK (id = 0),
  schema_version INTEGER NOT NULL,
  group_id BLOB NOT NULL,
  genesis BLOB NOT NULL,
  clean_close INTEGER NOT NULL
);
CREATE TABLE batches (
  seq INTEGER PRIMARY KEY,
  view INTEGER NOT NULL,
  digest BLOB NOT NULL,
  batch BLOB NOT NULL,
  entries BLOB NOT NULL
);
CREATE TABLE receipts (
  seq INTEGER PRIMARY KEY,
  receipt BLOB NOT NULL,
  hash BLOB NOT NULL,
  prev_hash BLOB NOT NULL
);
CREATE TABLE receipt_sigs (
  seq INTEGER NOT NULL,
  node INTEGER NOT NULL,
  signature BLOB NOT NULL,
  view INTEGER,
  PRIMARY KEY (seq, node)
) WITHOUT ROWID;
CREATE TABLE outcomes (
  seq INTEGER PRIMARY KEY,
  outcomes BLOB NOT NULL
);
CREATE TABLE checkpoints (
  seq INTEGER PRIMARY KEY,
  state_digest BLOB NOT NULL,
  proof BLOB NOT NULL
);
CREATE TABLE consensus_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  view INTEGER,
  seq INTEGER,
  digest BLOB,
  body BLOB
);
CREATE TABLE batch_sources (
  seq INTEGER PRIMARY KEY,
  requests BLOB NOT NULL,
  results BLOB NOT NULL,
  commit_view INTEGER,
  commit_sigs BLOB,
  commit_receipt_sigs BLOB
);
CREATE TABLE evidence (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  node INTEGER NOT NULL,
  kind TEXT NOT NULL,
  proof BLOB NOT NULL
);
${OWN_RESULTS_TABLE}
${SNAPSHOTS_TABLE}
${TXS_TABLE}
`;

const u8 = (b: Buffer | Uint8Array): Uint8Array =>
  b instanceof Buffer ? new Uint8Array(b.buffer, b.byteOffset, b.length) : b;

function isUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

type Row = Record<string, unknown>;

/** Opens a database file; refuses one that SQLite cannot read as a database. */
export function openDatabase(
  path: string,
  opts: { readonly?: boolean; fileMustExist?: boolean } = {},
): Database.Database {
  try {
    const db = new Database(path, {
      readonly: opts.readonly ?? false,
      fileMustExist: opts.fileMustExist ?? false,
    });
    db.defaultSafeIntegers(false);
    return db;
  } catch (e) {
    throw new DropbearError('LEDGER_UNREADABLE', `cannot open ledger ${path}: ${(e as Error).message}`);
  }
}

/** What is wrong with the numeric options (SqliteLedger.open), or null. */
function optionProblem(opts: SqliteLedgerOptions): string | null {
  if (opts.replayProgressMs !== undefined && !(opts.replayProgressMs >= 0))
    return `replayProgressMs must be >= 0, got ${opts.replayProgressMs}`;
  if (opts.snapshotEvery !== undefined && !isUint(opts.snapshotEvery))
    return `snapshotEvery must be a non-negative integer, got ${opts.snapshotEvery}`;
  const n = opts.certificateIndexRequests;
  if (n !== undefined && (!Number.isSafeInteger(n) || n < 1))
    return `certificateIndexRequests must be an integer ≥ 1, got ${n}`;
  return null;
}

/**
 * Whether `db` is a WAL-mode SQLite file holding no table: a ledger whose records are all in a `-wal` file
 * that is not beside it. A node's ledger keeps every commit in its `-wal` until a checkpoint (16 MB of
 * WAL), so `ledger.sqlite` copied or restored alone, while its node ran or after a kill, is such a file.
 * (So is a new file whose first open died between its switch to WAL and its schema's commit, a few ms:
 * refusing it costs that node, which signed nothing yet, a `--rejoin`.) Until 2026-12-07 a node opened it as a new ledger (a new node at view 0, seq 0, where it had
 * signed before) and `ledger verify` called it "not a Dropbear ledger".
 */
export function walOnlyLedger(db: Database.Database): boolean {
  const tables = db.prepare("SELECT count(*) AS n FROM main.sqlite_master WHERE type = 'table'").get() as {
    n: number;
  };
  return tables.n === 0 && String(db.pragma('main.journal_mode', { simple: true })).toLowerCase() === 'wal';
}

/** Why a file `walOnlyLedger` found holds no ledger, and what to do, for an error message. */
export function walOnlyNote(path: string): string {
  return (
    `it is a WAL-mode SQLite file without a table, so its records are in a ${path}-wal that is not ` +
    'with it (the file copied or restored alone, while its node ran?)'
  );
}

/** Empties a ledger file whose first open failed before its schema was in, and drops its -wal and -shm. */
function forgetUnmade(path: string): void {
  try {
    const real = realpathSync(path);
    truncateSync(real, 0);
    for (const s of ['-wal', '-shm']) rmSync(`${real}${s}`, { force: true });
  } catch {
    // Left as it is: the next open says LEDGER_LOST, and --rejoin makes the ledger (it signed nothing).
  }
}

/** The error of a reader (`ledger verify`, `ledger certificate`) that finds no meta row in `path`. */
export function noLedgerError(db: Database.Database, path: string): DropbearError {
  return new DropbearError(
    'LEDGER_UNREADABLE',
    walOnlyLedger(db)
      ? `${path} holds no ledger: ${walOnlyNote(path)}; copy its -wal with it (the two together)`
      : `${path} is not a Dropbear ledger (no meta row)`,
  );
}

/**
 * Makes `db` the only open ledger on `path`, across processes and within this one, until it closes: it
 * attaches `<path>.lock` (a small SQLite file beside the file itself, symbolic links followed, made on
 * first use and left in place) in exclusive locking mode and writes to it, which takes SQLite's
 * exclusive lock on that file (a POSIX advisory lock the
 * kernel drops when the process ends, kill -9 included) and keeps it for the life of the connection. A
 * second open, another node started on the same data folder, gets `LEDGER_LOCKED` before it reads or
 * writes the ledger. Readers (`ledger verify`) do not take the lock: they read a live ledger's snapshot.
 * Until 2026-12-06 there was no lock: two nodes ran on one file, and a second start refused its port had
 * already marked the file open and, closing it, cleanly closed under the running node.
 */
function lockLedger(db: Database.Database, path: string): void {
  // Beside the file itself, as SQLite's -wal and -shm are (it follows symbolic links): `<path>.lock` of a
  // link was a lock of its own, and a second node whose ledger path linked to a ledger in use ran on it.
  const lockPath = `${realLedgerPath(path)}.lock`;
  // Refused at once: the holder runs until stopped, so waiting (the 5 s default) helps nobody.
  db.pragma('busy_timeout = 0');
  try {
    db.prepare('ATTACH DATABASE ? AS dropbear_lock').run(lockPath);
    db.pragma('dropbear_lock.locking_mode = EXCLUSIVE');
    db.pragma('dropbear_lock.journal_mode = MEMORY');
    // A write: the exclusive lock, then kept (exclusive locking mode never releases it).
    db.pragma(`dropbear_lock.user_version = ${process.pid}`);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED')
      throw new DropbearError(
        'LEDGER_LOCKED',
        `${path} is in use by another open ledger (its lock ${lockPath} is held): is a node already running ` +
          'on this data folder? Stop it first; two nodes on one ledger would sign for one node twice',
        { lock: lockPath },
      );
    // Anything else (a damaged ledger, which ATTACH reads the schema of; a folder it may not write) is
    // told apart by open's catch.
    throw e;
  } finally {
    db.pragma('busy_timeout = 5000');
  }
}

/** The file `path` names, symbolic links followed (the path itself if that fails: SQLite reports why). */
function realLedgerPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** LEDGER_CORRUPT for SQLite's SQLITE_CORRUPT* error `e` on `path` (a truncated or garbled file). */
export function ledgerCorrupt(path: string, e: unknown): DropbearError {
  return new DropbearError(
    'LEDGER_CORRUPT',
    `${path}: SQLite finds the file damaged: ${(e as Error).message}`,
  );
}

/**
 * A ledger write that failed because the disk is full (SQLite's SQLITE_FULL, the file system's ENOSPC or
 * EDQUOT), the disk failed (SQLITE_IOERR…, EIO) or the process had no file descriptor left to open the
 * WAL file with (EMFILE, ENFILE: LEDGER_TOO_MANY_FILES), as a coded error naming the file; null for any other
 * error (and for one already coded). Until 2026-12-06 a node whose disk filled stopped with SQLite's bare
 * "database or disk is full", and at its next start with LEDGER_UNREADABLE (the boot marker's write failed),
 * which sent an operator looking for a damaged file.
 */
export function ledgerWriteFailure(path: string, e: unknown): DropbearError | null {
  if (e instanceof DropbearError || e === null || typeof e !== 'object') return null;
  const code = String((e as { code?: unknown }).code);
  const msg = (e as Error).message ?? String(e);
  if (code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT')
    return new DropbearError(
      'LEDGER_DISK_FULL',
      `the disk holding ledger ${path} is full (${msg}): the node stops rather than act on a write it could not make (what it recorded before is intact); free space there and start it again`,
      { path },
    );
  if (code === 'EMFILE' || code === 'ENFILE')
    return new DropbearError(
      'LEDGER_TOO_MANY_FILES',
      `the node could not open a file of ledger ${path}: every file descriptor is taken (${msg}); it stops rather than act on a write it could not make (what it recorded before is intact). Raise its open-file limit (ulimit -n) or lower api_limits.maxConnections, then start it again`,
      { path },
    );
  // SQLite reports some writes that found no space as an I/O error (SQLITE_IOERR_WRITE, …): where the file
  // system holding the ledger has (nearly) nothing left, that is the cause, and freeing space the cure.
  const free = code.startsWith('SQLITE_IOERR') || code === 'EIO' ? freeBytesBeside(path) : null;
  if (free !== null && free < FULL_BELOW_BYTES)
    return new DropbearError(
      'LEDGER_DISK_FULL',
      `the disk holding ledger ${path} is full (${msg}, with ${free} bytes free there): the node stops rather than act on a write it could not make (what it recorded before is intact); free space there and start it again`,
      { path },
    );
  if (code.startsWith('SQLITE_IOERR') || code === 'EIO')
    return new DropbearError(
      'LEDGER_IO_ERROR',
      `the disk holding ledger ${path} failed a read or write (${msg}): the node stops rather than act on a write it could not make; check the disk (and \`dropbear ledger verify\` the file) before starting it again`,
      { path },
    );
  return null;
}

/** Under this many bytes free beside the ledger, an I/O error is taken for a full disk (16 of its pages). */
const FULL_BELOW_BYTES = 16 * PAGE_SIZE;

/** Bytes an unprivileged writer may still use on the file system holding `path`'s folder; null if unknown. */
function freeBytesBeside(path: string): number | null {
  if (path === ':memory:' || path === '') return null;
  try {
    const s = statfsSync(dirname(path));
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}

/**
 * The `meta` row as SQLite returns it (each column's value of whatever type the file holds: a table that is
 * not STRICT keeps any), or null when the file has no meta table or row. `ledger verify` checks the types
 * (readMeta takes them as the node writes them).
 */
export function readMetaRow(db: Database.Database): Row | null {
  const t = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get();
  if (!t) return null;
  return (db.prepare('SELECT * FROM meta WHERE id = 0').get() as Row | undefined) ?? null;
}

/** What a value SQLite returned is, in the words a column of the wrong type is named with (readMeta, `ledger verify`). */
export function valueKind(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return 'text';
  if (v instanceof Uint8Array) return 'a blob';
  if (typeof v === 'number' || typeof v === 'bigint')
    return Number.isSafeInteger(Number(v)) ? 'a number' : 'a number that is not a whole one';
  return typeof v;
}

/**
 * Reads the meta row; `null` when the file has no Dropbear schema. A schema version that is no whole number,
 * or a group id or genesis that is no blob (SQLite keeps any value in a column of a table that is not STRICT:
 * the file was changed by something other than a node) is LEDGER_CORRUPT naming the column, as `ledger
 * verify` names it; until 2026-12-07 the open took them as the node writes them (a text group id read as
 * LEDGER_UNREADABLE "argument must be a buffer", a text schema version as LEDGER_SCHEMA_VERSION "ledger
 * schema 12x", and a number for the genesis opened unnoticed). `clean_close` is read as 1 or not: anything else reads as a shutdown that was not clean,
 * the careful reading. `path` names the file in the message.
 */
export function readMeta(
  db: Database.Database,
  path = 'the ledger',
): { schemaVersion: number; groupId: Uint8Array; genesis: Uint8Array; cleanClose: boolean } | null {
  const m = readMetaRow(db);
  if (!m) return null;
  const corrupt = (column: string, expected: string, v: unknown) =>
    new DropbearError(
      'LEDGER_CORRUPT',
      `${path}: meta.${column} is ${valueKind(v)}, not ${expected} (written by something other than a node; \`dropbear ledger verify\` lists what else is wrong)`,
    );
  if (typeof m.schema_version !== 'number' || !Number.isSafeInteger(m.schema_version))
    throw corrupt('schema_version', 'a schema version (an integer)', m.schema_version);
  if (!(m.group_id instanceof Uint8Array)) throw corrupt('group_id', 'a blob', m.group_id);
  if (!(m.genesis instanceof Uint8Array)) throw corrupt('genesis', 'a blob', m.genesis);
  return {
    schemaVersion: m.schema_version,
    groupId: u8(m.group_id),
    genesis: u8(m.genesis),
    cleanClose: m.clean_close === 1,
  };
}

export class SqliteLedger {
  readonly path: string;
  readonly genesis: Genesis;
  readonly groupId: Uint8Array;
  /** The previous session ended without close(): with NORMAL, its last executions may be lost. */
  readonly uncleanShutdown: boolean;
  /**
   * The previous session ended uncleanly with `prepared` or `relaxed` durability and the machine rebooted
   * since: the last records of the signed log (and executions) may be lost. See the header.
   */
  readonly writesMayBeLost: boolean;
  readonly durability: Durability;
  /** True when this call created the file. */
  readonly created: boolean;
  readonly synchronous: Synchronous;
  private readonly db: Database.Database;
  private readonly verifySigs: boolean;
  private readonly onReplayProgress: ((p: ReplayProgress) => void) | undefined;
  private readonly replayProgressMs: number;
  private readonly snapshotEvery: number;
  private readonly onSnapshotIgnored: ((problem: string) => void) | undefined;
  /** Requests executed (replayed included) since the latest snapshot, as `snapshotEvery` counts them. */
  private sinceSnapshot = 0;
  private cur: LedgerState;
  /**
   * A failed write left `cur` ahead of the file: it is rebuilt from the file (replayed) when next read.
   * Not at once: the node host stops after a failed write and never reads it again, and on a long ledger
   * the replay took minutes before the node could even report the failure (a full disk).
   */
  private stale = false;
  /**
   * The fates of the transactions the latest replay executed, by id (hex), as `txs` keeps them; `open`
   * writes those the file lacks (`fillTxFates`), then drops them.
   */
  private replayedTxs: Map<string, { id: Uint8Array; seq: number; applied: boolean }> | null = null;
  private get current(): LedgerState {
    if (this.stale) {
      this.cur = this.replay();
      this.stale = false;
      // The file's rows were written with its batches: nothing to fill in (and nothing is written here).
      this.replayedTxs = null;
    }
    return this.cur;
  }
  private set current(state: LedgerState) {
    this.cur = state;
    this.stale = false;
  }
  private closed = false;
  private grouped = false;
  private groupNeedsSync = false;
  /**
   * The highest view of a signed-log record known durable (`prepared` durability): the file's records at
   * open (opening fsyncs them all), then each record fsynced since. -1 before any.
   */
  private durableView = -1;
  /** The WAL file, open once it is first fdatasynced by hand (closed with the ledger). */
  private walFd: number | null = null;
  /** `syncWalAsync` calls not yet called back. */
  private asyncSyncs = 0;
  private walSyncCount = 0;
  /** Outcomes and trees of the last few batches used, least recently used first. */
  private readonly recentOutcomes = new Map<number, BatchOutcomes>();
  private index: RecentSeqIndex;
  /** SqliteLedgerOptions.certificateIndexRequests. */
  readonly certificateIndexRequests: number;
  private readonly st: Record<string, Database.Statement>;
  /**
   * Runs a function in a transaction (a savepoint inside an open group). One wrapper made once:
   * `db.transaction(fn)` builds a new wrapper (and its variants) at every call, ~10 % of what a node
   * allocated per request at one request per batch (heap sampling of four in-process hosts).
   */
  private readonly inTx: <T>(fn: () => T) => T;

  private constructor(
    path: string,
    db: Database.Database,
    genesis: Genesis,
    created: boolean,
    unclean: boolean,
    mayBeLost: boolean,
    opts: SqliteLedgerOptions,
  ) {
    this.path = path;
    this.db = db;
    this.inTx = db.transaction((fn: () => unknown) => fn()) as unknown as <T>(fn: () => T) => T;
    this.genesis = genesis;
    this.groupId = groupIdOf(genesis);
    this.created = created;
    this.uncleanShutdown = unclean;
    this.writesMayBeLost = mayBeLost;
    this.durability = opts.durability ?? 'full';
    this.synchronous = opts.synchronous ?? 'FULL';
    this.verifySigs = opts.verifySignatures ?? true;
    this.onReplayProgress = opts.onReplayProgress;
    // Checked by open (optionProblem) before the file was touched.
    this.replayProgressMs = opts.replayProgressMs ?? 2_000;
    this.snapshotEvery = opts.snapshotEvery ?? DEFAULT_SNAPSHOT_EVERY;
    this.onSnapshotIgnored = opts.onSnapshotIgnored;
    this.certificateIndexRequests = opts.certificateIndexRequests ?? DEFAULT_CERTIFICATE_INDEX_REQUESTS;
    this.index = new RecentSeqIndex(this.certificateIndexRequests);
    this.cur = new LedgerState(genesis);
    const p = (sql: string) => db.prepare(sql);
    this.st = {
      // A group's BEGIN and COMMIT, prepared once: `db.exec` parses its SQL again at every call, and the
      // host opens a group in each turn of the event loop that writes (several per request at low load).
      // Not the `PRAGMA synchronous` around them: SQLite applies that while it prepares the statement.
      begin: p('BEGIN'),
      commit: p('COMMIT'),
      rollback: p('ROLLBACK'),
      insBatch: p('INSERT INTO batches (seq, view, digest, batch, entries) VALUES (?, ?, ?, ?, ?)'),
      insReceipt: p('INSERT INTO receipts (seq, receipt, hash, prev_hash) VALUES (?, ?, ?, ?)'),
      insOutcomes: p('INSERT INTO outcomes (seq, outcomes) VALUES (?, ?)'),
      // One signature per node; a plain one replaces a prepared one (it makes a quorum with any other).
      insSig: p(
        `INSERT INTO receipt_sigs (seq, node, signature, view) VALUES (?, ?, ?, ?)
         ON CONFLICT (seq, node) DO UPDATE SET signature = excluded.signature, view = NULL
         WHERE receipt_sigs.view IS NOT NULL AND excluded.view IS NULL`,
      ),
      insLog: p('INSERT INTO consensus_log (kind, view, seq, digest, body) VALUES (?, ?, ?, ?, ?)'),
      insCheckpoint: p('INSERT OR REPLACE INTO checkpoints (seq, state_digest, proof) VALUES (?, ?, ?)'),
      insEvidence: p('INSERT INTO evidence (node, kind, proof) VALUES (?, ?, ?)'),
      insSources: p(
        'INSERT INTO batch_sources (seq, requests, results, commit_view, commit_sigs, commit_receipt_sigs) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      getSources: p(
        'SELECT requests, results, commit_view, commit_sigs, commit_receipt_sigs FROM batch_sources WHERE seq = ?',
      ),
      getReceipt: p('SELECT receipt, hash FROM receipts WHERE seq = ?'),
      getSigs: p('SELECT node, signature, view FROM receipt_sigs WHERE seq = ? ORDER BY node'),
      countSigs: p('SELECT count(*) AS n FROM receipt_sigs WHERE seq = ?'),
      getOutcomesOf: p('SELECT outcomes FROM outcomes WHERE seq = ?'),
      getBatch: p('SELECT seq, view, digest, batch, entries FROM batches WHERE seq = ?'),
      batchesAfter: p('SELECT seq, view, digest, batch, entries FROM batches WHERE seq > ? ORDER BY seq'),
      receiptHashesAfter: p('SELECT seq, hash FROM receipts WHERE seq > ? ORDER BY seq'),
      outcomesBetween: p('SELECT seq, outcomes FROM outcomes WHERE seq >= ? AND seq <= ? ORDER BY seq'),
      outcomesDownFrom: p('SELECT seq, outcomes FROM outcomes WHERE seq <= ? ORDER BY seq DESC'),
      latestSnapshots: p(`SELECT seq, state, hash FROM snapshots ORDER BY seq DESC LIMIT ${SNAPSHOTS_KEPT}`),
      insSnapshot: p('INSERT OR REPLACE INTO snapshots (seq, state, hash) VALUES (?, ?, ?)'),
      pruneSnapshots: p(
        `DELETE FROM snapshots WHERE seq NOT IN (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT ${SNAPSHOTS_KEPT})`,
      ),
      maxBatchSeq: p('SELECT max(seq) AS n FROM batches'),
      log: p('SELECT kind, view, seq, digest, body FROM consensus_log ORDER BY id'),
      // A NEW-VIEW record keeps its message only while it is the latest (the restored replica reads that one).
      dropOldNewViews: p(
        "UPDATE consensus_log SET body = NULL WHERE kind = 'newView' AND view < ? AND body IS NOT NULL",
      ),
      pruneLog: p(
        "DELETE FROM consensus_log WHERE seq IS NOT NULL AND seq <= ? AND NOT (kind = 'checkpoint' AND seq = ?)",
      ),
      lastCheckpoint: p('SELECT seq, state_digest, proof FROM checkpoints ORDER BY seq DESC LIMIT 1'),
      insOwn: p('INSERT OR IGNORE INTO own_results (digest, signed, newest) VALUES (?, ?, ?)'),
      delOwn: p('DELETE FROM own_results WHERE digest = ?'),
      allOwn: p('SELECT signed, newest FROM own_results ORDER BY rowid'),
      evidence: p('SELECT id, node, kind, proof FROM evidence ORDER BY id'),
      markOpen: p('UPDATE meta SET clean_close = ? WHERE id = 0'),
      // A transaction's fate: an applied one keeps its first answer; one without effect takes the latest
      // (and a row already holding this answer is not rewritten: the open's replay writes every fate again).
      noteTx: p(
        `INSERT INTO txs (id, seq, applied) VALUES (?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, applied = excluded.applied
         WHERE txs.applied = 0 AND (txs.seq <> excluded.seq OR excluded.applied <> 0)`,
      ),
      getTx: p('SELECT seq, applied FROM txs WHERE id = ?'),
    };
  }

  /**
   * Opens (or creates) the ledger at `path` for `genesis`. An existing file must hold the same group
   * (`LEDGER_WRONG_GROUP` otherwise) and schema version; its batches are replayed into `state`.
   */
  static open(path: string, genesis: Genesis, opts: SqliteLedgerOptions = {}): SqliteLedger {
    // Every option is checked before the file is opened: a bad one must not leave an older file upgraded
    // (until 2026-12-07 three of them were checked after the upgrades had run).
    const bad = optionProblem(opts);
    if (bad !== null) throw new DropbearError('LEDGER_BAD_OPTION', bad);
    const durability = opts.durability ?? 'full';
    if (!DURABILITIES.includes(durability))
      throw new DropbearError(
        'LEDGER_BAD_OPTION',
        `durability must be ${DURABILITIES.join(', ')}, not ${String(durability)}`,
      );
    const sync = opts.synchronous ?? (durability === 'full' ? 'FULL' : 'NORMAL');
    if (sync !== 'FULL' && sync !== 'NORMAL')
      throw new DropbearError('LEDGER_BAD_OPTION', `synchronous must be FULL or NORMAL, not ${String(sync)}`);
    if (durability === 'relaxed' && sync === 'FULL')
      throw new DropbearError('LEDGER_BAD_OPTION', 'relaxed durability runs at synchronous NORMAL, not FULL');
    const groupId = groupIdOf(genesis);
    const inFile = path !== ':memory:' && path !== '';
    const db = openDatabase(path);
    // Set while this open is making a new ledger in an empty file and its schema is not committed yet.
    let unmade = false;
    try {
      // Before anything reads or writes the file: one open ledger per file (see lockLedger).
      if (inFile) lockLedger(db, path);
      // Another node's ledger, by its marker: run on, this node would take that node's signed log for its
      // own and sign on without its own (until 2026-12-07 it did, saying nothing).
      const owner = inFile ? readBootMarker(path)?.node : undefined;
      if (opts.node !== undefined && owner !== undefined && owner !== opts.node)
        throw new DropbearError(
          'LEDGER_WRONG_NODE',
          `${path} is node ${owner}'s ledger, not node ${opts.node}'s (its ${path}.boot says so): is "data" in ` +
            `this node's config the folder of another node? Each node keeps its own`,
          { owner, node: opts.node },
        );
      // The marker is written only once a ledger was created and opened: beside a file holding none
      // (deleted, emptied), it says a node's records were lost, and a new ledger would hide that. Checked
      // before the switch to WAL below, which writes a header into an empty file.
      const tables = () =>
        (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as Row).n as number;
      if (inFile && !opts.rejoin && existsSync(`${path}.boot`) && tables() === 0)
        throw new DropbearError(
          'LEDGER_LOST',
          `${path} holds no ledger, but ${path}.boot says a node opened one here before: what it executed and ` +
            'signed is lost. Restore the file (with its -wal, if any) from a backup, or start the node with ' +
            '--rejoin: a new ledger, and the node signs in no view the group may have used until it has ' +
            'learned the current one from its peers (a plain new ledger would make it a new node that may ' +
            'contradict what it signed)',
          { marker: `${path}.boot` },
        );
      if (opts.rejoin && (!inFile || tables() > 0))
        throw new DropbearError(
          'LEDGER_BAD_OPTION',
          inFile
            ? `${path} holds a ledger: --rejoin is for a node whose ledger is lost (it makes a new one); start without it`
            : 'rejoin needs a ledger file',
        );
      // A WAL-mode file with no table was a ledger whose records are all in a -wal not beside it (see
      // walOnlyLedger); a new ledger there would be a new node that may sign where it signed before.
      if (inFile && !opts.rejoin && walOnlyLedger(db))
        throw new DropbearError(
          'LEDGER_LOST',
          `${path} holds no ledger: ${walOnlyNote(path)}. Put its -wal beside it (copy the two together, ` +
            'with the node stopped), or start the node with --rejoin: a new ledger, and the node ' +
            'signs in no view the group may have used until it has learned the current one from its peers',
        );
      // An empty file with nothing beside it that the refusals above let through: a new ledger is made here.
      unmade = inFile && statSync(path).size === 0 && !existsSync(`${realpathSync(path)}-wal`);
      // Takes effect only on a new, empty file (before the switch to WAL writes its header).
      db.pragma(`page_size = ${PAGE_SIZE}`);
      // `main.`: without a schema name the mode would also be set on the attached lock file.
      const mode = db.pragma('main.journal_mode = WAL', { simple: true });
      if (String(mode).toLowerCase() !== 'wal' && path !== ':memory:')
        throw new DropbearError('LEDGER_UNREADABLE', `cannot switch ${path} to WAL mode (got ${mode})`);
      db.pragma(`synchronous = ${sync}`);
      // The WAL file is cut back to this size whenever it restarts after a checkpoint. Without it the file
      // kept the size of the largest transaction ever written: a snapshot (24 MB for a window of 600,000
      // ids, up to ~800 MB), or the first pruning of a signed log written before 2026-12-06 (hundreds of
      // MB for a day's log).
      db.pragma(`main.journal_size_limit = ${WAL_SIZE_LIMIT}`);
      // Statement journals in memory: a statement inside a group commit's savepoint otherwise gets a temp
      // file of its own (opened, written, unlinked and closed: ~1 per consensus batch, strace).
      db.pragma('temp_store = MEMORY');
      let meta = readMeta(db, path);
      let created = false;
      if (!meta) {
        if (tables() > 0)
          throw new DropbearError(
            'LEDGER_NOT_A_LEDGER',
            `${path} is a SQLite file but not a Dropbear ledger`,
          );
        db.pragma('synchronous = FULL');
        db.transaction(() => {
          db.exec(SCHEMA);
          db.prepare(
            'INSERT INTO meta (id, schema_version, group_id, genesis, clean_close) VALUES (0, ?, ?, ?, 1)',
          ).run(LEDGER_SCHEMA_VERSION, groupId, encode(Genesis, genesis));
        })();
        db.pragma(`synchronous = ${sync}`);
        meta = readMeta(db, path)!;
        created = true;
      }
      unmade = false;
      // Another group's file is refused before anything is written to it (until 2026-12-06 an older one was
      // upgraded first). Only a schema this build knows: a file of another it refuses as such, below.
      if (
        meta.schemaVersion >= 2 &&
        meta.schemaVersion <= LEDGER_SCHEMA_VERSION &&
        !equalBytes(meta.groupId, groupId)
      )
        throw new DropbearError(
          'LEDGER_WRONG_GROUP',
          `${path} belongs to group ${hex(meta.groupId)}, not ${hex(groupId)}`,
          { stored: hex(meta.groupId), expected: hex(groupId) },
        );
      // Each older schema is upgraded in place, one version at a time, each step one FULL transaction.
      for (const [from, migrate] of MIGRATIONS) {
        if (meta.schemaVersion !== from) continue;
        db.pragma('synchronous = FULL');
        migrate(db, path);
        db.pragma(`synchronous = ${sync}`);
        meta = readMeta(db, path)!;
      }
      if (meta.schemaVersion !== LEDGER_SCHEMA_VERSION)
        throw new DropbearError(
          'LEDGER_SCHEMA_VERSION',
          `${path} has ledger schema ${meta.schemaVersion}; this build reads ${LEDGER_SCHEMA_VERSION}`,
        );
      const previous = inFile ? readBootMarker(path) : null;
      const boot = currentBootId();
      // With `rejoin` everything this node signed before is lost, whatever the marker says.
      const mayBeLost =
        opts.rejoin === true ||
        (!meta.cleanClose &&
          previous !== null &&
          previous.durability !== 'full' &&
          (previous.bootId === null || previous.bootId !== boot));
      const ledger = new SqliteLedger(path, db, genesis, created, !meta.cleanClose, mayBeLost, {
        ...opts,
        durability,
        synchronous: sync,
      });
      ledger.current = ledger.replay();
      // Opening fsyncs every record already in the file (just below).
      const maxView = (db.prepare('SELECT max(view) AS v FROM consensus_log').get() as Row).v;
      ledger.durableView = typeof maxView === 'number' ? maxView : -1;
      // FULL: also makes whatever an earlier session left unsynced in the WAL durable, before the marker
      // says what this session does.
      ledger.durably(() => {
        ledger.st.markOpen.run(0);
        ledger.fillTxFates();
        // Read by the replica's restore: it signs in no view until it has learned the group's (durably
        // here, so that a later crash cannot lose the fact with the records it stands for).
        // Its body is a time (ms) by which the lost session had ended: the replica signs no RESULTS for a
        // request as old as that (its own RESULTS may be among what was lost). The start of this boot when
        // the marker names another one (that session ran in an earlier boot), else now.
        if (mayBeLost) {
          // Rejoining, the lost session ended by now, and by no earlier time known: a marker of another boot
          // may be another machine's (a data folder moved without its ledger), whose session ran on after
          // this machine booted, so this boot's start would let the node vote again where it had voted.
          const by = opts.rejoin === true || previous === null ? Date.now() : lostBy(previous.bootId, boot);
          ledger.st.insLog.run('forgotten', null, null, null, encode(uint, by));
        }
      });
      if (inFile) writeBootMarker(path, { bootId: boot, durability, node: opts.node ?? previous?.node });
      return ledger;
    } catch (e) {
      db.close();
      // A new ledger's first open that failed before its schema was in (a full disk): the switch to WAL had
      // already written the header, and a WAL-mode file with no table reads as a ledger whose -wal is lost
      // (walOnlyLedger). Back to empty, it is made anew once the failure is put right.
      if (unmade) forgetUnmade(path);
      if (e instanceof DropbearError) throw e;
      const code = String((e as { code?: unknown }).code);
      const write = ledgerWriteFailure(path, e);
      if (write) throw write;
      // A truncated or garbled file (LEDGER_UNREADABLE until 2026-12-06).
      if (code.startsWith('SQLITE_CORRUPT')) throw ledgerCorrupt(path, e);
      if (code.startsWith('SQLITE_READONLY'))
        throw new DropbearError(
          'LEDGER_READ_ONLY',
          `cannot write ledger ${path} (${(e as Error).message}): a node needs to write the file and its folder (the -wal, -shm and .boot files beside it)`,
        );
      throw new DropbearError('LEDGER_UNREADABLE', `cannot open ledger ${path}: ${(e as Error).message}`);
    }
  }

  /** The executed state after `lastSeq`. Replaced (not mutated) if a failed write forces a rebuild. */
  get state(): LedgerState {
    return this.current;
  }

  get lastSeq(): number {
    return this.current.seq;
  }

  get q(): number {
    return this.current.q;
  }

  /** Stores `state`'s snapshot (in the caller's transaction) and drops all but the latest SNAPSHOTS_KEPT. */
  private writeSnapshot(state: LedgerState): void {
    const bytes = state.snapshot();
    this.st.insSnapshot.run(state.seq, bytes, sha256(bytes));
    this.st.pruneSnapshots.run();
  }

  /**
   * Rebuilds the executed state from the file: from the latest snapshot that passes its checks
   * (`restoreSnapshot`), else from the genesis, then replaying every stored batch after it, checking each
   * receipt against the stored one. When the batches after a restored snapshot do not replay from it
   * (LEDGER_CORRUPT), either it or they are wrong: it is reported as ignored and everything is replayed
   * from the genesis, which fails the same way only if the batches are.
   */
  private replay(): LedgerState {
    try {
      return this.replayFrom(true);
    } catch (e) {
      if (!(e instanceof DropbearError) || e.code !== 'LEDGER_CORRUPT' || !e.details?.snapshot) throw e;
      const from = e.details.snapshot as number;
      this.onSnapshotIgnored?.(
        `${this.path}: the snapshot of batch ${from}: the batches after it do not replay from it (${e.message}); replaying from the genesis`,
      );
      return this.replayFrom(false);
    }
  }

  private replayFrom(snapshots: boolean): LedgerState {
    const report = this.onReplayProgress;
    const started = performance.now();
    let total = 0;
    let requests = 0;
    let nextReport = started + this.replayProgressMs;
    if (report) {
      const n = (this.st.maxBatchSeq.get() as Row).n;
      total = typeof n === 'number' ? n : 0;
    }
    // The batch of the snapshot restored (0: none, from the genesis), once known.
    let from = 0;
    const progress = (batches: number) => {
      if (!report) return;
      const now = performance.now();
      if (now >= nextReport) {
        report({ batches, total, requests, elapsedMs: now - started, done: false, snapshot: from });
        nextReport = now + this.replayProgressMs;
      }
    };
    const restored = snapshots
      ? this.restoreSnapshot((seq, n, snapshot) => {
          from = snapshot;
          requests += n;
          progress(seq);
        })
      : null;
    if (!restored) requests = 0; // counted for a snapshot that was then ignored
    const state = restored?.state ?? new LedgerState(this.genesis);
    const index = restored?.index ?? new RecentSeqIndex(this.certificateIndexRequests);
    // Requests replayed: what the next snapshot counts from (a ledger upgraded from schema 6, or one whose
    // snapshots were all ignored, writes one at its next execution once it has replayed that many).
    let since = 0;
    const txs = new Map<string, { id: Uint8Array; seq: number; applied: boolean }>();
    const batches = this.st.batchesAfter.iterate(state.seq) as IterableIterator<Row>;
    const hashes = this.st.receiptHashesAfter.iterate(state.seq) as IterableIterator<Row>;
    from = state.seq;
    // `snapshot` (for `replay`): this replay started from the snapshot of that batch.
    const corrupt = (msg: string) =>
      new DropbearError('LEDGER_CORRUPT', `${this.path}: ${msg}`, from > 0 ? { snapshot: from } : undefined);
    try {
      for (const row of batches) {
        const b = this.decodeBatchRow(row);
        if (b.seq !== state.seq + 1) throw corrupt(`batch ${state.seq + 1} is missing`);
        // What execution reads must be what the group ordered: the batch its digest names, and entries
        // whose requests hash to the batch's ids. Fields that reach no outcome (a request's timestamp, nonce
        // or maximum fee, a batch's timestamp or transactions) would otherwise replay to another state
        // with the same receipts, and this node would drift from its peers unnoticed.
        if (!equalBytes(batchDigestOfBytes(u8(row.batch as Buffer)), b.digest))
          throw corrupt(`batch ${b.seq}: the stored digest is not the digest of the stored batch`);
        const problem = entriesProblem(b.batch, b.entries, true);
        if (problem) throw corrupt(`batch ${b.seq}: ${problem}`);
        const ex = state.execute(b.seq, b.digest, b.batch, b.entries);
        const r = hashes.next();
        const stored = r.done ? null : (r.value as Row);
        if (!stored || stored.seq !== b.seq || !equalBytes(u8(stored.hash as Buffer), ex.receiptHash))
          throw corrupt(`replaying batch ${b.seq} does not reproduce its stored receipt`);
        for (const o of ex.outcomes) index.add(o.requestId, b.seq);
        for (const t of ex.txs) {
          const k = hex(t.id);
          if (!txs.get(k)?.applied) txs.set(k, { id: t.id, seq: b.seq, applied: t.applied });
        }
        requests += ex.outcomes.length;
        since += Math.max(1, b.entries.length);
        progress(b.seq);
      }
      if (!hashes.next().done) throw corrupt('a receipt without its batch');
      if (report) {
        const elapsedMs = performance.now() - started;
        if (elapsedMs >= this.replayProgressMs)
          report({
            batches: state.seq,
            total: Math.max(total, state.seq),
            requests,
            elapsedMs,
            done: true,
            snapshot: from,
          });
      }
      this.index = index;
      this.recentOutcomes.clear();
      this.sinceSnapshot = since;
      this.replayedTxs = txs;
      return state;
    } finally {
      batches.return?.();
      hashes.return?.();
    }
  }

  /**
   * The state after the latest stored snapshot that passes its checks, and the certificate index of the
   * batches up to it rebuilt from their stored outcomes (the request ids only: `counted(seq, n, S)` after
   * each batch's n); null when there is none or none passes. Checked: its bytes hash to its `hash`, they decode
   * to a state LedgerState.restore accepts, of the row's seq, whose last receipt is that batch's stored
   * receipt hash (so a snapshot ahead of the batches, or of another history, is refused). One that fails is
   * reported to `onSnapshotIgnored` and the one before it is tried. What the snapshot stands for is not
   * replayed, so not checked again: `ledger verify` replays it all and compares each snapshot.
   */
  private restoreSnapshot(
    counted: (seq: number, n: number, snapshot: number) => void,
  ): { state: LedgerState; index: RecentSeqIndex } | null {
    for (const row of this.st.latestSnapshots.all() as Row[]) {
      const seq = row.seq as number;
      const problem = (msg: string) => {
        this.onSnapshotIgnored?.(`${this.path}: the snapshot of batch ${seq}: ${msg}`);
      };
      if (!isUint(seq) || seq < 1) {
        problem('its seq is not a positive integer');
        continue;
      }
      if (!(row.state instanceof Uint8Array) || !(row.hash instanceof Uint8Array)) {
        problem('its state or hash is not a blob');
        continue;
      }
      const bytes = u8(row.state);
      if (!equalBytes(sha256(bytes), u8(row.hash))) {
        problem('its state does not hash to its stored hash');
        continue;
      }
      const receipt = this.st.getReceipt.get(seq) as Row | undefined;
      if (!receipt) {
        problem(`batch ${seq} is not in the ledger`);
        continue;
      }
      let state: LedgerState;
      try {
        state = LedgerState.restore(this.genesis, bytes);
      } catch (e) {
        if (!(e instanceof DropbearError)) throw e;
        problem(e.message);
        continue;
      }
      if (state.seq !== seq) {
        problem(`it holds the state after batch ${state.seq}`);
        continue;
      }
      if (!(receipt.hash instanceof Uint8Array) || !equalBytes(state.lastReceipt, u8(receipt.hash))) {
        problem(`its last receipt is not the stored receipt of batch ${seq}`);
        continue;
      }
      const index = new RecentSeqIndex(this.certificateIndexRequests);
      let at = 0;
      try {
        // Only the batches of the latest certificateIndexRequests requests up to the snapshot: found from the
        // end by their outcome counts (the first number of each blob), then indexed in order.
        let first = 1;
        let ids = 0;
        for (const r of this.st.outcomesDownFrom.iterate(seq) as IterableIterator<Row>) {
          at = r.seq as number;
          if (!(r.outcomes instanceof Uint8Array))
            throw new CodecError('CODEC_BAD_VALUE', 'outcomes.outcomes is not a blob');
          ids += new Reader(u8(r.outcomes)).uint();
          first = at;
          if (ids >= this.certificateIndexRequests) break;
        }
        for (const r of this.st.outcomesBetween.iterate(first, seq) as IterableIterator<Row>) {
          at = r.seq as number;
          if (!(r.outcomes instanceof Uint8Array))
            throw new CodecError('CODEC_BAD_VALUE', 'outcomes.outcomes is not a blob');
          counted(
            at,
            storedOutcomeIds(u8(r.outcomes), (id) => index.add(id, at)),
            seq,
          );
        }
      } catch (e) {
        if (!(e instanceof DropbearError)) throw e;
        // Damaged outcomes: a full replay rebuilds the index from the batches instead.
        problem(`batch ${at}'s stored outcomes do not decode (${e.message}); replaying instead`);
        return null;
      }
      return { state, index };
    }
    return null;
  }

  private decodeBatchRow(row: Row): StoredBatch {
    // SQLite keeps any value in a column of a table that is not STRICT: a view that is not a uint would
    // reach peers in state transfer (and fail its encoding there).
    if (!isUint(row.view))
      throw new DropbearError(
        'LEDGER_CORRUPT',
        `${this.path}: batch ${String(row.seq)}: its view is not a non-negative integer (${String(row.view)})`,
      );
    try {
      return {
        seq: row.seq as number,
        view: row.view as number,
        digest: u8(row.digest as Buffer),
        batch: decode(Batch, u8(row.batch as Buffer)),
        entries: decode(ResolvedEntries, u8(row.entries as Buffer)),
      };
    } catch (e) {
      if (e instanceof CodecError)
        throw new DropbearError('LEDGER_CORRUPT', `${this.path}: batch ${String(row.seq)}: ${e.message}`);
      throw e;
    }
  }

  private open_(): void {
    if (this.closed) throw new DropbearError('LEDGER_CLOSED', `ledger ${this.path} is closed`);
  }

  /**
   * Group commit. Between `beginGroup()` and `commitGroup()` every write (persist, execute, receipt
   * signatures, checkpoints, evidence) joins one SQLite transaction (each write a savepoint of it, so a
   * failed write still rolls back alone), and `commitGroup()` makes them all durable with one fsync. A
   * caller that groups must not act on a grouped write (send what it persisted) before `commitGroup()`
   * returns: the node host holds its outgoing messages until then (src/node/host.ts).
   */
  beginGroup(): void {
    this.open_();
    if (this.grouped) return;
    // SQLite refuses to change the level inside a transaction, and whether this group needs an fsync is
    // known only at its commit: the group runs at NORMAL, and commitGroup syncs the WAL when it must.
    if (this.synchronous === 'FULL') this.db.pragma('synchronous = NORMAL');
    try {
      this.st.begin.run();
    } catch (e) {
      if (this.synchronous === 'FULL') this.db.pragma('synchronous = FULL');
      throw e;
    }
    this.grouped = true;
    this.groupNeedsSync = false;
  }

  /**
   * Commits the open group (no-op without one), fsynced before this returns when it holds a write that
   * needs it: a `persist` always, with FULL also an execution, a checkpoint or evidence (receipt signatures
   * alone do not; see the header). The fsync is an fdatasync of the WAL file after the commit: in WAL mode
   * a commit is WAL frames, so that makes the group (and every commit before it) durable as a FULL
   * commit would.
   */
  commitGroup(): void {
    if (this.commitGroupUnsynced()) this.syncWal();
  }

  /**
   * Commits the open group like `commitGroup` but does not wait for the disk: returns true when the group
   * holds a write that needs an fsync (see `commitGroup`). The caller must then not act on the group's
   * writes until `syncWal()` returns or a `syncWalAsync` called after this has called back. False without
   * an open group.
   */
  commitGroupUnsynced(): boolean {
    if (!this.grouped) return false;
    this.grouped = false;
    try {
      this.st.commit.run();
    } finally {
      if (this.synchronous === 'FULL') this.db.pragma('synchronous = FULL');
    }
    return this.groupNeedsSync;
  }

  /**
   * Drops the open group's writes (no-op without one): for a caller whose write in the group failed, so
   * that nothing of it is committed later (SQLite rolls a transaction back by itself on some failures, a
   * full disk among them, and a COMMIT then fails with "no transaction is active"). The caller must not
   * act on any of the group's writes.
   */
  abandonGroup(): void {
    if (!this.grouped) return;
    this.grouped = false;
    try {
      if (this.db.inTransaction) this.st.rollback.run();
    } finally {
      if (this.synchronous === 'FULL') this.db.pragma('synchronous = FULL');
    }
  }

  /**
   * Closes the file after a failed write, without committing an open group or marking a clean shutdown
   * (the next open reports `uncleanShutdown`). Idempotent; never throws for the write that cannot be made.
   */
  abort(): void {
    if (this.closed) return;
    try {
      this.abandonGroup();
    } catch {
      // The connection is closed next: SQLite rolls back whatever is left.
    }
    this.closed = true;
    this.db.close();
    if (this.asyncSyncs === 0) this.closeWalFile();
  }

  /** fdatasyncs the WAL file (kept open: SQLite keeps it while the connection is open in WAL mode). */
  syncWal(): void {
    const fd = this.walFile();
    if (fd === null) return;
    fdatasyncSync(fd);
    this.walSyncCount++;
  }

  /**
   * fdatasyncs the WAL file on libuv's thread pool, so the event loop keeps running while the disk
   * works; `done` runs once every commit that returned before this call is durable (or with the error).
   * Writes made meanwhile are not covered: they need a later sync. Safe to call with syncs in flight and
   * around `close()` (the file descriptor is closed only once the last of them has called back).
   */
  syncWalAsync(done: (err: Error | null) => void): void {
    let fd: number | null;
    try {
      fd = this.walFile();
    } catch (e) {
      if (e instanceof DropbearError) throw e; // LEDGER_CLOSED: the caller's mistake
      // The WAL file could not be opened (EMFILE: every descriptor taken): a failed sync, reported as one.
      // Thrown, it left the host's group commit as an uncaught exception, its messages neither sent nor
      // dropped, and the node exited with Node's bare text instead of stopping with a code.
      queueMicrotask(() => done(e as Error));
      return;
    }
    if (fd === null) {
      queueMicrotask(() => done(null));
      return;
    }
    this.asyncSyncs++;
    fdatasync(fd, (err) => {
      this.asyncSyncs--;
      if (!err) this.walSyncCount++;
      if (this.closed && this.asyncSyncs === 0) this.closeWalFile();
      done(err);
    });
  }

  /** The WAL file's descriptor, opened at the first sync by hand; null for an in-memory ledger. */
  private walFile(): number | null {
    if (this.path === ':memory:' || this.path === '') return null;
    this.open_();
    this.walFd ??= openSync(`${this.path}-wal`, 'r');
    return this.walFd;
  }

  private closeWalFile(): void {
    if (this.walFd !== null) closeSync(this.walFd);
    this.walFd = null;
  }

  /** How many group commits fdatasynced the WAL (SQLite's own fsyncs outside a group are not counted). */
  get walSyncs(): number {
    return this.walSyncCount;
  }

  /** A write at the configured level inside an open group: with FULL, the group's commit is fsynced. */
  private atLevel(): void {
    if (this.grouped && this.synchronous === 'FULL') this.groupNeedsSync = true;
  }

  get inGroup(): boolean {
    return this.grouped;
  }

  /** Runs `fn` in a transaction committed with synchronous FULL, whatever the configured level. */
  private durably<T>(fn: () => T): T {
    if (this.grouped) {
      this.groupNeedsSync = true;
      return this.inTx(fn);
    }
    if (this.synchronous === 'FULL') return this.inTx(fn);
    this.db.pragma('synchronous = FULL');
    try {
      return this.inTx(fn);
    } finally {
      this.db.pragma(`synchronous = ${this.synchronous}`);
    }
  }

  /**
   * Executes committed batch `seq` and stores it in one transaction: the batch and its resolved entries,
   * the receipt, and one outcome row per certified request. Throws `LEDGER_OUT_OF_ORDER` unless
   * seq = lastSeq + 1, `LEDGER_BAD_DIGEST` if `digest` is not the batch's digest and
   * `LEDGER_ENTRIES_MISMATCH` if `entries` do not resolve the batch's entries one for one.
   */
  execute(
    seq: number,
    view: number,
    digest: Uint8Array,
    batch: Batch,
    entries: ResolvedEntry[],
    sources?: BatchSources,
  ): Execution {
    this.open_();
    if (seq !== this.current.seq + 1)
      throw new DropbearError('LEDGER_OUT_OF_ORDER', `expected batch ${this.current.seq + 1}, got ${seq}`, {
        expected: this.current.seq + 1,
        got: seq,
      });
    if (!isUint(view)) throw new DropbearError('LEDGER_BAD_VALUE', `view must be a uint, got ${view}`);
    const batchBytes = encode(Batch, batch);
    if (!equalBytes(batchDigestOfBytes(batchBytes), digest))
      throw new DropbearError('LEDGER_BAD_DIGEST', `batch ${seq}: digest does not match the batch`);
    checkEntries(seq, batch, entries);
    const entryBytes = encode(ResolvedEntries, entries);

    let touched = false;
    // Requests since the latest snapshot once this batch is in (see snapshotEvery), and whether this
    // execution's transaction writes the next one.
    const since = this.sinceSnapshot + Math.max(1, entries.length);
    let snapped = false;
    try {
      this.atLevel();
      const ex = this.inTx(() => {
        touched = true;
        const done = this.current.execute(seq, digest, batch, entries);
        this.st.insBatch.run(seq, view, digest, batchBytes, entryBytes);
        for (const t of done.txs) this.st.noteTx.run(t.id, seq, t.applied ? 1 : 0);
        if (sources) {
          const proof = sources.commitProof;
          // Receipt signatures in the proof count only over the receipt this execution made.
          const receiptSigs = proofReceiptSigs(proof, done.receiptHash);
          this.st.insSources.run(
            seq,
            encode(SourceRequests, sources.requests.map(withoutInput)),
            encode(SourceResults, sources.results),
            proof?.view ?? null,
            proof ? encode(CommitSigs, proof.sigs) : null,
            receiptSigs.length > 0 ? encode(ReceiptSignatures, receiptSigs) : null,
          );
        }
        this.st.insReceipt.run(
          seq,
          encode(Receipt, done.receipt),
          done.receiptHash,
          done.receipt.prevReceipt,
        );
        if (done.outcomes.length > 0) this.st.insOutcomes.run(seq, encode(StoredOutcomes, done.outcomeBytes));
        // With the batch it follows, or not at all: a snapshot is never ahead of the stored batches.
        if (
          this.snapshotEvery > 0 &&
          since >= this.snapshotEvery &&
          this.cur.recent.size <= MAX_SNAPSHOT_WINDOW
        ) {
          this.writeSnapshot(this.cur);
          snapped = true;
        }
        return done;
      });
      this.sinceSnapshot = snapped ? 0 : since;
      for (const o of ex.outcomes) this.index.add(o.requestId, seq);
      if (ex.outcomes.length > 0) this.remember(seq, { outcomes: ex.outcomes, tree: ex.tree });
      return ex;
    } catch (e) {
      // The in-memory state may have moved past what the file holds: rebuilt from the file when next read.
      if (touched) this.stale = true;
      if (e instanceof Error && (e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY')
        throw new DropbearError('LEDGER_DUPLICATE', `batch ${seq}: ${e.message}`);
      throw e;
    }
  }

  /**
   * Stores receipt signatures for executed batch `seq` (one per node: another from the same node is
   * ignored, but a plain one replaces a prepared one). Each must come from a known
   * node and verify over the stored receipt (unless `verifySignatures: false`); otherwise nothing is
   * stored and `LEDGER_BAD_SIGNATURE` is thrown. With `receiptHash`, it must equal the stored receipt's
   * hash (`LEDGER_RECEIPT_MISMATCH`). Returns how many signatures the batch now has.
   */
  addReceiptSignatures(seq: number, sigs: ReceiptSig[], receiptHash?: Uint8Array): number {
    this.open_();
    const row = this.st.getReceipt.get(seq) as Row | undefined;
    if (!row) throw new DropbearError('LEDGER_UNKNOWN_SEQ', `batch ${seq} has not been executed`);
    const receiptBytes = u8(row.receipt as Buffer);
    const storedHash = u8(row.hash as Buffer);
    if (receiptHash && !equalBytes(receiptHash, storedHash))
      throw new DropbearError('LEDGER_RECEIPT_MISMATCH', `batch ${seq}: signatures are for another receipt`);
    for (const s of sigs) {
      const node = this.genesis.nodes[s.node];
      if (!isUint(s.node) || !node)
        throw new DropbearError(
          'LEDGER_BAD_SIGNATURE',
          `batch ${seq}: signature from unknown node ${s.node}`,
        );
      if (this.verifySigs && !verifyReceiptSig(this.groupId, receiptBytes, storedHash, s, node.publicKey))
        throw new DropbearError('LEDGER_BAD_SIGNATURE', `batch ${seq}: invalid signature of node ${s.node}`);
    }
    return this.inTx(() => {
      for (const s of sigs) this.st.insSig.run(seq, s.node, s.signature, s.view);
      return (this.st.countSigs.get(seq) as Row).n as number;
    });
  }

  /** The receipt signatures stored for `seq`, by node. */
  receiptSignatures(seq: number): ReceiptSig[] {
    this.open_();
    return (this.st.getSigs.all(seq) as Row[]).map((r) => ({
      node: r.node as number,
      signature: u8(r.signature as Buffer),
      view: r.view === null ? null : (r.view as number),
    }));
  }

  /** The q signatures that certify batch `seq` (receiptQuorum), or null while it has no quorum here. */
  receiptQuorum(seq: number): ReceiptSig[] | null {
    return receiptQuorum(this.receiptSignatures(seq), this.q);
  }

  /** The stored receipt of batch `seq` and its hash. */
  receipt(seq: number): { receipt: Receipt; hash: Uint8Array } | null {
    this.open_();
    const row = this.st.getReceipt.get(seq) as Row | undefined;
    if (!row) return null;
    return { receipt: decode(Receipt, u8(row.receipt as Buffer)), hash: u8(row.hash as Buffer) };
  }

  /** The stored batch `seq` with its view, digest and resolved entries (for state transfer). */
  /**
   * Executed batch `seq` as state transfer ships it: the batch, the signed requests and RESULTS it
   * references, its receipt, and its proof (q receipt signatures, or the COMMITs and prepared receipt
   * signatures of q nodes that committed it: commitQuorum).
   * `null` when the batch is unknown here, its sources were not stored, or it has no proof yet.
   */
  stateBatch(seq: number): StateBatch | null {
    this.open_();
    const b = this.batch(seq);
    const src = this.st.getSources.get(seq) as Row | undefined;
    const r = this.receipt(seq);
    if (!b || !src || !r) return null;
    const quorum = this.receiptQuorum(seq);
    const certified = quorum !== null;
    const commitSigs = src.commit_sigs ? decode(CommitSigs, u8(src.commit_sigs as Buffer)) : [];
    const view = src.commit_view as number | null;
    let receiptSigs = quorum ?? [];
    if (!certified) {
      // The COMMITs and prepared receipt signatures it committed with, with any receipt signatures stored.
      const bySigner = new Map<number, ReceiptSignature>();
      if (src.commit_receipt_sigs)
        for (const x of decode(ReceiptSignatures, u8(src.commit_receipt_sigs as Buffer)))
          bySigner.set(x.node, x);
      for (const x of this.receiptSignatures(seq))
        if (x.view === null || !bySigner.has(x.node)) bySigner.set(x.node, x);
      receiptSigs = [...bySigner.values()].sort((a, b) => a.node - b.node);
      if (view === null || !commitQuorum(view, commitSigs, receiptSigs, this.q)) return null;
    }
    return {
      seq,
      view: certified ? b.view : view!,
      batch: b.batch,
      // Without inputs, also from a ledger written before its sources were stored without them: the
      // receiver needs none, and they made a batch of many images too large for a frame.
      requests: decode(SourceRequests, u8(src.requests as Buffer)).map(withoutInput),
      results: decode(SourceResults, u8(src.results as Buffer)),
      receipt: r.receipt,
      receiptSigs,
      commitSigs: certified ? [] : commitSigs,
    };
  }

  batch(seq: number): StoredBatch | null {
    this.open_();
    const row = this.st.getBatch.get(seq) as Row | undefined;
    return row ? this.decodeBatchRow(row) : null;
  }

  /**
   * Executed batches from `fromSeq` on, as state transfer serves them: at most `max`, and no more than
   * `maxBytes` of them once the first is in (batches carry their requests' inputs).
   */
  stateBatches(fromSeq: number, max = 64, maxBytes = Number.POSITIVE_INFINITY): StateBatch[] {
    const out: StateBatch[] = [];
    let size = 0;
    for (let s = fromSeq; out.length < max; s++) {
      const sb = this.stateBatch(s);
      if (!sb) break;
      if (maxBytes !== Number.POSITIVE_INFINITY) {
        size += encode(StateBatchCodec, sb).length;
        if (out.length > 0 && size > maxBytes) break;
      }
      out.push(sb);
    }
    return out;
  }

  /** Receipts of the last `window` batches with fewer than q signatures (a restarted replica re-collects them). */
  uncertifiedReceipts(q: number, window = 256): Receipt[] {
    const out: Receipt[] = [];
    for (let s = Math.max(1, this.lastSeq - window); s <= this.lastSeq; s++)
      if (!receiptQuorum(this.receiptSignatures(s), q)) out.push(this.receipt(s)!.receipt);
    return out;
  }

  /**
   * The certificate for a request (id as hex or 32 bytes): its outcome, the Merkle path in its batch, the
   * receipt and the q lowest-numbered receipt signatures (what buildCertificates makes). `null` when the
   * request has no outcome here or its batch has fewer than q signatures.
   */
  certificate(requestId: string | Uint8Array): Certificate | null {
    this.open_();
    const id = typeof requestId === 'string' ? Buffer.from(requestId, 'hex') : requestId;
    if (id.length !== 32) return null;
    for (const seq of this.index.candidates(id)) {
      const b = this.outcomesOf(seq);
      const leafIndex = b.outcomes.findIndex((o) => equalBytes(o.requestId, id));
      if (leafIndex < 0) continue;
      const sigs = this.receiptQuorum(seq);
      if (!sigs) return null;
      const r = this.st.getReceipt.get(seq) as Row;
      return assembleCertificate(b, leafIndex, u8(r.receipt as Buffer), sigs);
    }
    return null;
  }

  /**
   * Transaction `id`'s fate (its bytes, or 64 hex digits), from `txs`: executed in batch `seq` and applied
   * (the first batch that applied it), or carried without effect (the latest batch that carried it, none
   * having applied it); null when no executed batch carried it. Kept for the ledger's life: what a node
   * answers for an id it no longer holds in memory (NodeHost.txStatus), a restart included.
   */
  txFate(id: string | Uint8Array): { seq: number; applied: boolean } | null {
    this.open_();
    if (typeof id === 'string' && !/^[0-9a-fA-F]{64}$/.test(id)) return null;
    const key = typeof id === 'string' ? Buffer.from(id, 'hex') : id;
    if (key.length !== 32) return null;
    const r = this.st.getTx.get(key) as Row | undefined;
    return r ? { seq: r.seq as number, applied: r.applied === 1 } : null;
  }

  /**
   * Writes the fates of the transactions the replay at open executed where the file lacks them or holds
   * an earlier answer (a file upgraded from schema 10; rows of the batches after the restored snapshot are
   * already there, and stay as they are), in the caller's transaction.
   */
  private fillTxFates(): void {
    const txs = this.replayedTxs;
    this.replayedTxs = null;
    if (!txs) return;
    for (const t of txs.values()) this.st.noteTx.run(t.id, t.seq, t.applied ? 1 : 0);
  }

  /** Batch `seq`'s outcomes and their tree (an executed batch with outcomes), cached for the next request. */
  private outcomesOf(seq: number): BatchOutcomes {
    let b = this.recentOutcomes.get(seq);
    if (!b) {
      const row = this.st.getOutcomesOf.get(seq) as Row | undefined;
      if (!row) throw new DropbearError('LEDGER_CORRUPT', `${this.path}: batch ${seq}: outcomes are missing`);
      b = batchOutcomesOf(u8(row.outcomes as Buffer));
    }
    this.remember(seq, b);
    return b;
  }

  private remember(seq: number, b: BatchOutcomes): void {
    this.recentOutcomes.delete(seq); // most recently used last
    this.recentOutcomes.set(seq, b);
    while (this.recentOutcomes.size > 16)
      this.recentOutcomes.delete(this.recentOutcomes.keys().next().value as number);
  }

  /**
   * Records what the node is about to sign. Synchronous and durable (fsynced, in either synchronous
   * mode) when it returns: only then may the caller send the message. Not fsynced with relaxed
   * durability, nor with `prepared` durability for a PRE-PREPARE or PREPARE record of a view that a
   * durable record already names (see the header). A stable checkpoint record (`checkpoint` with a body)
   * drops the records of the seqs up to it in the same transaction (pruneSignedLog), and a `newView` record
   * with a body (the NEW-VIEW message) the bodies of those of lower views (a NEW-VIEW carries q VIEW-CHANGEs
   * with their prepared certificates: only the latest is read back).
   */
  persist(record: LogRecord): void {
    this.open_();
    if (typeof record.kind !== 'string' || record.kind.length === 0)
      throw new DropbearError('LEDGER_BAD_VALUE', 'a log record needs a kind');
    for (const k of ['view', 'seq'] as const)
      if (record[k] !== undefined && !isUint(record[k]))
        throw new DropbearError('LEDGER_BAD_VALUE', `log record ${k} must be a uint`);
    const write = () =>
      this.st.insLog.run(
        record.kind,
        record.view ?? null,
        record.seq ?? null,
        record.digest ?? null,
        record.body ?? null,
      );
    // A stable checkpoint (with its proof): the records of the seqs up to it go in the same transaction
    // (pruneSignedLog). Before 2026-12-06 nothing did: the log grew by two records (~1 KB) per batch for the
    // node's life, and every open read and decoded all of it (a day at 20 batches/s: 3.5 M records).
    const stable =
      record.kind === 'checkpoint' && record.body !== undefined && record.seq !== undefined
        ? record.seq
        : null;
    const view = record.view ?? -1;
    const unsynced =
      this.durability === 'relaxed' ||
      (this.durability === 'prepared' && VOTE_KINDS.has(record.kind) && view <= this.durableView);
    const writeAndPrune = () => {
      write();
      if (stable !== null) this.st.pruneLog.run(stable, stable);
      if (record.kind === 'newView' && record.body !== undefined && record.view !== undefined)
        this.st.dropOldNewViews.run(record.view);
    };
    if (unsynced) {
      // Committed like any other write: to the operating system only (relaxed runs at NORMAL).
      this.atLevel();
      this.inTx(writeAndPrune);
      return;
    }
    this.durably(writeAndPrune);
    if (view > this.durableView) this.durableView = view;
  }

  /**
   * Stores one of this node's own signed RESULTS (`digest`: its RESULTS digest; `newest`: the newest
   * timestamp among its requests) before it is sent; a second copy of the same digest is ignored. With
   * `full` durability it is fsynced like a signed-log record; with `prepared` and `relaxed` it is
   * committed to the operating system only, like their unsynced votes: after a crash of the machine
   * (`writesMayBeLost`) the replica votes on no request it may have voted on before (the `forgotten`
   * record's time). See docs/ledger.md, "Own results".
   */
  saveOwnResults(digest: Uint8Array, signed: SignedResults, newest: number): void {
    this.open_();
    if (!isUint(newest)) throw new DropbearError('LEDGER_BAD_VALUE', 'newest must be a uint');
    const write = () => this.st.insOwn.run(digest, encode(SignedResults, signed), newest);
    if (this.durability === 'full') this.durably(write);
    else this.inTx(write);
  }

  /**
   * Forgets own RESULTS that no vote needs any more. Never fsynced: a deletion lost with the machine only
   * brings the rows back, and the restored replica drops them again.
   */
  dropOwnResults(digests: Uint8Array[]): void {
    this.open_();
    if (digests.length === 0) return;
    this.inTx(() => {
      for (const d of digests) this.st.delOwn.run(d);
    });
  }

  /** This node's own stored RESULTS, oldest first (what the restored replica reads back). */
  ownResults(): { signed: SignedResults; newest: number }[] {
    this.open_();
    return (this.st.allOwn.all() as Row[]).map((r) => {
      // What saveOwnResults refuses to write is refused when read back: the restored replica drops the
      // votes by it.
      if (!isUint(r.newest))
        throw new DropbearError(
          'LEDGER_CORRUPT',
          `${this.path}: a stored own RESULTS: newest is not a non-negative integer (${String(r.newest)})`,
        );
      try {
        return { signed: decode(SignedResults, u8(r.signed as Buffer)), newest: r.newest as number };
      } catch (e) {
        if (e instanceof CodecError)
          throw new DropbearError('LEDGER_CORRUPT', `${this.path}: a stored own RESULTS: ${e.message}`);
        throw e;
      }
    });
  }

  /** Everything persisted, oldest first, each with only the fields it was given. */
  signedLog<T extends LogRecord = LogRecord>(): T[] {
    this.open_();
    return (this.st.log.all() as Row[]).map((r) => {
      const out: LogRecord = { kind: r.kind as string };
      if (r.view !== null) out.view = r.view as number;
      if (r.seq !== null) out.seq = r.seq as number;
      if (r.digest !== null) out.digest = u8(r.digest as Buffer);
      if (r.body !== null) out.body = u8(r.body as Buffer);
      return out as T;
    });
  }

  /**
   * Drops signed-log records with a seq at or below a stable checkpoint (the node never signs for those
   * again); records without a seq (view changes) stay, and so does the `checkpoint` record of `stableSeq`
   * itself: it is the proof the restored replica starts from (and what `ledger verify` checks the replay
   * against). Returns how many were dropped.
   *
   * `persist` does this with every stable checkpoint record (one with a body) since 2026-12-06.
   */
  pruneSignedLog(stableSeq: number): number {
    this.open_();
    return this.durably(() => this.st.pruneLog.run(stableSeq, stableSeq).changes);
  }

  /**
   * Stores a checkpoint in the `checkpoints` table: the state digest after `seq` and its proof (opaque
   * bytes, e.g. q signatures).
   *
   * Unused by the node: its stable checkpoints are the `checkpoint` records of the signed log (`persist`,
   * with the q CHECKPOINT signatures as the body), which is what `ledger verify` checks; the table stays in
   * the schema (a file may hold rows from a caller of this method, and verify checks those too).
   */
  saveCheckpoint(seq: number, stateDigest: Uint8Array, proof: Uint8Array): void {
    this.open_();
    if (!isUint(seq) || seq < 1 || seq > this.current.seq)
      throw new DropbearError('LEDGER_UNKNOWN_SEQ', `checkpoint ${seq} is beyond the executed batches`);
    if (stateDigest.length !== 32) throw new DropbearError('LEDGER_BAD_VALUE', 'a state digest is 32 bytes');
    this.atLevel();
    this.inTx(() => this.st.insCheckpoint.run(seq, stateDigest, proof));
  }

  /** The `checkpoints` table's latest row (see saveCheckpoint: unused by the node). */
  latestCheckpoint(): StoredCheckpoint | null {
    this.open_();
    const r = this.st.lastCheckpoint.get() as Row | undefined;
    if (!r) return null;
    return {
      seq: r.seq as number,
      stateDigest: u8(r.state_digest as Buffer),
      proof: u8(r.proof as Buffer),
    };
  }

  /** Stores proof of a node's misbehaviour (e.g. two conflicting signed messages). */
  saveEvidence(node: number, kind: string, proof: Uint8Array): void {
    this.open_();
    if (!isUint(node)) throw new DropbearError('LEDGER_BAD_VALUE', 'node must be a uint');
    this.atLevel();
    this.inTx(() => this.st.insEvidence.run(node, kind, proof));
  }

  evidence(): StoredEvidence[] {
    this.open_();
    return (this.st.evidence.all() as Row[]).map((r) => ({
      id: r.id as number,
      node: r.node as number,
      kind: r.kind as string,
      proof: u8(r.proof as Buffer),
    }));
  }

  /** Marks a clean shutdown (durably) and closes the file. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.commitGroup();
    this.durably(() => this.st.markOpen.run(1));
    this.closed = true;
    this.db.close();
    // A sync still running on the thread pool holds the descriptor: the last one to call back closes it.
    if (this.asyncSyncs === 0) this.closeWalFile();
  }
}

/** What the session that last opened a ledger file recorded beside it (see the header). */
interface BootMarker {
  /** The kernel's boot id then (null where the system has none). */
  bootId: string | null;
  durability: Durability;
  /** The node that opened the ledger (absent in markers before 2026-12-07, or when the open named none). */
  node?: number;
}

/** This boot's id (Linux), or null where there is none. */
/**
 * A time (ms, wall clock) by which a session that may have lost writes had ended: the start of the current
 * boot when that session ran in another one (both boot ids known and different; the start is the clock
 * now less the time since boot), else now.
 */
function lostBy(previousBoot: string | null, boot: string | null): number {
  const now = Date.now();
  if (previousBoot === null || boot === null || previousBoot === boot) return now;
  return Math.min(now, Math.ceil(now - uptime() * 1000));
}

function currentBootId(): string | null {
  try {
    const id = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return id === '' ? null : id;
  } catch {
    return null;
  }
}

/**
 * The marker the previous session wrote; null when there is none (a file older than the marker, whose
 * sessions all ran with full durability). An unreadable marker is read as relaxed with an unknown boot:
 * the safe side.
 */
function readBootMarker(path: string): BootMarker | null {
  const file = `${path}.boot`;
  if (!existsSync(file)) return null;
  try {
    const m = JSON.parse(readFileSync(file, 'utf8')) as Partial<BootMarker>;
    if (m.durability === undefined || !DURABILITIES.includes(m.durability)) throw new Error('bad durability');
    return {
      bootId: typeof m.bootId === 'string' ? m.bootId : null,
      durability: m.durability,
      node: Number.isSafeInteger(m.node) && (m.node as number) >= 0 ? m.node : undefined,
    };
  } catch {
    return { bootId: null, durability: 'relaxed' };
  }
}

/** Replaces the marker atomically and durably (written, fsynced, renamed, the folder fsynced). */
function writeBootMarker(path: string, m: BootMarker): void {
  const file = `${path}.boot`;
  // A write that fails (a full disk) leaves no temporary file beside the ledger.
  replaceFile(file, `${JSON.stringify(m)}\n`, `${file}.tmp`, 'required');
}

/**
 * Upgrades a schema-2 file in place, in one transaction (a crash part-way leaves it at version 2): its
 * per-request outcome rows become one row per batch holding the same bytes in leaf order. Nothing else
 * differs between the two versions. Leaf indices that are not 0..k−1 within a batch refuse the upgrade
 * (`LEDGER_CORRUPT`) and leave the file as it was.
 */
function migrate2to3(db: Database.Database, path: string): void {
  db.transaction(() => {
    db.exec('ALTER TABLE outcomes RENAME TO outcomes_v2');
    db.exec('CREATE TABLE outcomes (seq INTEGER PRIMARY KEY, outcomes BLOB NOT NULL)');
    const seqs = db.prepare('SELECT DISTINCT seq FROM outcomes_v2 ORDER BY seq').pluck().all() as number[];
    const rows = db.prepare('SELECT leaf_index, outcome FROM outcomes_v2 WHERE seq = ? ORDER BY leaf_index');
    const ins = db.prepare('INSERT INTO outcomes (seq, outcomes) VALUES (?, ?)');
    for (const seq of seqs) {
      const leaves = (rows.all(seq) as Row[]).map((r, i) => {
        if (r.leaf_index !== i)
          throw new DropbearError(
            'LEDGER_CORRUPT',
            `${path}: batch ${seq}: outcome leaf indices are not 0..k-1; not upgraded from schema 2`,
          );
        return u8(r.outcome as Buffer);
      });
      ins.run(seq, encode(StoredOutcomes, leaves));
    }
    db.exec('DROP TABLE outcomes_v2');
    db.prepare('UPDATE meta SET schema_version = 3 WHERE id = 0').run();
  })();
}

/**
 * Upgrades a schema-3 file in place, in one transaction: receipt signatures get their kind (`view`, NULL
 * for every signature a schema-3 build stored: it made only plain ones).
 */
function migrate3to4(db: Database.Database): void {
  db.transaction(() => {
    db.exec('ALTER TABLE receipt_sigs ADD COLUMN view INTEGER');
    db.prepare('UPDATE meta SET schema_version = 4 WHERE id = 0').run();
  })();
}

/**
 * Upgrades a schema-4 file in place, in one transaction: batch proofs get a column for the prepared
 * receipt signatures a batch committed with (empty for what a schema-4 build stored: it committed
 * batches with COMMITs only).
 */
function migrate4to5(db: Database.Database): void {
  db.transaction(() => {
    db.exec('ALTER TABLE batch_sources ADD COLUMN commit_receipt_sigs BLOB');
    db.prepare('UPDATE meta SET schema_version = 5 WHERE id = 0').run();
  })();
}

/**
 * Upgrades a schema-5 file in place, in one transaction: the table of the node's own RESULTS is added,
 * empty (a schema-5 build kept none; see docs/ledger.md, "Own results").
 */
function migrate5to6(db: Database.Database): void {
  db.transaction(() => {
    db.exec(OWN_RESULTS_TABLE);
    db.prepare('UPDATE meta SET schema_version = 6 WHERE id = 0').run();
  })();
}

/**
 * Hands each request id of a batch's stored outcomes (`StoredOutcomes` bytes) to `each`, in leaf order, as
 * a view of `bytes`; returns how many. An Outcome's encoding starts with its request id (fixed 32 bytes),
 * so the leaves are not decoded, nor copied: the index rebuild at an open from a snapshot reads every
 * certified request of the node's life. Throws a CodecError where `decode(StoredOutcomes, …)` would
 * (a truncated or oversized blob, a non-minimal length, trailing bytes) and for a leaf under 32 bytes.
 */
export function storedOutcomeIds(bytes: Uint8Array, each: (id: Uint8Array) => void): number {
  // The codec's own reader for the lengths (canonical, at most 2^53 − 1); the leaves are only stepped over.
  const r = new Reader(bytes);
  const n = r.uint();
  if (n > 1 << 20) throw new CodecError('CODEC_OVERSIZE', `array longer than ${1 << 20}`);
  for (let i = 0; i < n; i++) {
    const len = r.uint();
    if (len > 1 << 24) throw new CodecError('CODEC_OVERSIZE', `bytes: ${len} > ${1 << 24}`);
    if (r.pos + len > bytes.length) throw new CodecError('CODEC_TRUNCATED', 'stored outcomes end early');
    if (len < 32) throw new CodecError('CODEC_TRUNCATED', 'an outcome shorter than its request id');
    each(bytes.subarray(r.pos, r.pos + 32));
    r.pos += len;
  }
  if (r.pos !== bytes.length)
    throw new CodecError('CODEC_TRAILING_BYTES', `${bytes.length - r.pos} trailing bytes`);
  return n;
}

/**
 * Upgrades a schema-6 file in place, in one transaction: the table of state snapshots is added, empty (the
 * first open replays from the genesis, as before; see docs/ledger.md, "Snapshots").
 */
function migrate6to7(db: Database.Database): void {
  db.transaction(() => {
    db.exec(SNAPSHOTS_TABLE);
    db.prepare('UPDATE meta SET schema_version = 7 WHERE id = 0').run();
  })();
}

/**
 * Upgrades a schema-7 file in place: the version alone (see LEDGER_SCHEMA_VERSION, 8). Its whole signed
 * log stays as it is, read by the restore as before, until the next stable checkpoint record prunes it.
 */
function migrate7to8(db: Database.Database): void {
  db.prepare('UPDATE meta SET schema_version = 8 WHERE id = 0').run();
}

/** Upgrades a schema-8 file in place: the version alone (see LEDGER_SCHEMA_VERSION, 9). */
function migrate8to9(db: Database.Database): void {
  db.prepare('UPDATE meta SET schema_version = 9 WHERE id = 0').run();
}

/** Upgrades a schema-9 file in place (see LEDGER_SCHEMA_VERSION, 10): the version; its snapshots go. */
function migrate9to10(db: Database.Database): void {
  // One transaction, as every step's comment at open says (its two statements committed apart until
  // 2026-12-07: a crash between them left only the snapshots gone, which the next open redid harmlessly).
  db.transaction(() => {
    db.prepare('DELETE FROM snapshots').run();
    db.prepare('UPDATE meta SET schema_version = 10 WHERE id = 0').run();
  })();
}

/**
 * Upgrades a schema-10 file in place, in one transaction (see LEDGER_SCHEMA_VERSION, 11): the table of
 * transaction fates is added, empty, and its snapshots go (they are in the layout before withdrawals, which
 * no longer decodes), so that the first open replays every batch from the genesis and writes the fate of
 * each transaction executed before (what an open's replay does for the batches it replays).
 */
function migrate10to11(db: Database.Database): void {
  db.transaction(() => {
    db.exec(TXS_TABLE);
    db.prepare('DELETE FROM snapshots').run();
    db.prepare('UPDATE meta SET schema_version = 11 WHERE id = 0').run();
  })();
}

/** Upgrades a schema-11 file in place, in one transaction (see LEDGER_SCHEMA_VERSION, 12): the version; its snapshots go. */
function migrate11to12(db: Database.Database): void {
  db.transaction(() => {
    db.prepare('DELETE FROM snapshots').run();
    db.prepare('UPDATE meta SET schema_version = 12 WHERE id = 0').run();
  })();
}

/** Upgrades a schema-12 file in place (see LEDGER_SCHEMA_VERSION, 13): the version alone. */
function migrate12to13(db: Database.Database): void {
  db.prepare('UPDATE meta SET schema_version = 13 WHERE id = 0').run();
}

/** The upgrade from each older schema to the next, in order (open runs those the file needs). */
const MIGRATIONS: readonly [number, (db: Database.Database, path: string) => void][] = [
  [2, migrate2to3],
  [3, migrate3to4],
  [4, migrate4to5],
  [5, migrate5to6],
  [6, migrate6to7],
  [7, migrate7to8],
  [8, migrate8to9],
  [9, migrate9to10],
  [10, migrate10to11],
  [11, migrate11to12],
  [12, migrate12to13],
];

/**
 * Why resolved entries are not the batch's entries, or null: they must match one for one (same request
 * ids, votes from the same nodes) and, with `requestIds`, each request must hash to its id (requestIdOf:
 * SHA-256 of the canonical Request), so that no signed field can differ from what the group ordered.
 * `execute` leaves the hashing out (its caller resolved the entries from requests it took by id); the
 * replay at open and `ledger verify` do it, for entries read back from the file.
 */
export function entriesProblem(batch: Batch, entries: ResolvedEntry[], requestIds: boolean): string | null {
  if (entries.length !== batch.entries.length)
    return `${entries.length} resolved entries for ${batch.entries.length} batch entries`;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    const b = batch.entries[i];
    if (!equalBytes(e.requestId, b.requestId)) return `entry ${i} resolves another request`;
    if (e.votes.length !== b.votes.length || e.votes.some((v, k) => v.node !== b.votes[k].node))
      return `entry ${i} resolves votes of other nodes`;
    if (requestIds && !equalBytes(requestIdOfBody(encode(Request, e.request)), e.requestId))
      return `entry ${i}'s request does not hash to its id ${hex(e.requestId)}`;
  }
  return null;
}

/** The resolved entries must be the batch's entries, one for one, with votes from the same nodes. */
function checkEntries(seq: number, batch: Batch, entries: ResolvedEntry[]): void {
  const problem = entriesProblem(batch, entries, false);
  if (problem) throw new DropbearError('LEDGER_ENTRIES_MISMATCH', `batch ${seq}: ${problem}`);
}
