/**
 * Offline audit of a ledger file (`dropbear ledger verify`). Needs only the file: the genesis is stored
 * in it. Checks, for every batch in sequence order:
 * - the batch is stored canonically, its digest is the stored digest and its resolved entries match it
 *   (the same request ids, votes of the same nodes, and each request hashes to its id);
 * - its sources, where stored (`batch_sources`): every request of the batch, signed by its client and the
 *   same as the resolved one; every vote's RESULTS, hashing to the digest the vote names, signed by the
 *   voting node and holding the resolved model digest and result; the COMMIT signatures of its proof;
 * - the receipt chain: receipt s names batch s, its group and the hash of receipt s−1 (the group id for
 *   s = 1), and the stored hash and prev-hash columns agree with the receipt bytes;
 * - receipt signatures: each from a known node and valid; a batch with any signatures has q (2f+1 when
 *   n = 3f+1) of them, plain or prepared in one view (receiptQuorum);
 * - the stored outcomes: k of them, k = resultsCount (no row when k = 0), their Merkle root = resultsRoot;
 * - replay: a fresh LedgerState from the genesis, fed the stored batches, reproduces every receipt, every
 *   stored outcome and the state digest of every stable checkpoint the node recorded (the `checkpoint`
 *   records of its signed log, each with ≥ q valid CHECKPOINT signatures of genesis nodes; and any row of
 *   the `checkpoints` table, which the node does not write).
 * And every row of `own_results` (the node's own signed RESULTS): it decodes, its digest column is the
 * digest of the signed RESULTS, it is validly signed by a genesis node, and its `newest` is a
 * non-negative integer; the file does not record which node it belongs to, so with `node` (the CLI's
 * `--node`) every row must be that node's, and without it all rows must be one node's.
 * A column holding something else than the node writes there (text or a number for bytes) is a problem of
 * its row naming the table and column, and the rest of the file is still checked.
 * And every stored state snapshot (`snapshots`) hashes to its stored hash and equals, byte for byte, the
 * state the replay reaches at its batch.
 * And every transaction fate (`txs`) is the replay's (the batch that first applied it, else the latest that
 * carried it), one row for each transaction the batches carry, where the replay reaches the last batch.
 * Reads the file read-only; writes nothing.
 */
import { existsSync } from 'node:fs';
import {
  array,
  Batch,
  batchDigestOf,
  buildTree,
  CheckpointBody,
  type Codec,
  CodecError,
  CountedVote,
  DropbearError,
  decode,
  encode,
  equalBytes,
  Genesis,
  genesisProblem,
  groupIdOf,
  hex,
  leafHash,
  NodeSignature,
  Outcome,
  PhaseBody,
  quorumOf,
  Receipt,
  ReceiptSignatures,
  Request,
  ResultBatch,
  receiptQuorum,
  requestAuthProblem,
  requestIdOf,
  resultsDigestOf,
  resultsDigestOfParts,
  type SignedRequest,
  SignedResults,
  sha256,
  TAGS,
  verifyReceiptSig,
  verifyResults,
  verifyTagged,
} from '../protocol/index.ts';
import { ResolvedEntries } from './codec.ts';
import {
  CommitSigs,
  entriesProblem,
  LEDGER_SCHEMA_VERSION,
  ledgerCorrupt,
  noLedgerError,
  openDatabase,
  readMetaRow,
  SourceRequests,
  SourceResults,
  StoredOutcomes,
  valueKind,
} from './sqlite.ts';
import { LedgerState, type ResolvedEntry } from './state.ts';

/** The body of a `checkpoint` record of the signed log: the q CHECKPOINT signatures that made it stable. */
const CheckpointProof = array(NodeSignature, 256);

export interface LedgerVerification {
  ok: boolean;
  /** Batches found in the file. */
  batches: number;
  /** Rows of the node's own signed RESULTS (`own_results`) checked. */
  ownResults: number;
  problems: string[];
}

type Row = Record<string, unknown>;

/** Whether a column's value is a non-negative safe integer (a view, a timestamp). */
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const u8 = (b: Uint8Array): Uint8Array =>
  b instanceof Buffer ? new Uint8Array(b.buffer, b.byteOffset, b.length) : b;

/**
 * A column's value as bytes, or null once `at` has been told that `column` (`table.column`, and which row
 * where the caller's `at` does not say) holds no blob: SQLite stores any value in any column of a table
 * that is not STRICT, so a rewritten file can hold text or a number where the node wrote bytes.
 */
function blob(value: unknown, column: string, at: (msg: string) => void): Uint8Array | null {
  if (value instanceof Uint8Array) return u8(value);
  const found =
    value === null || value === undefined ? 'null' : typeof value === 'string' ? 'text' : 'a number';
  at(`${column} is ${found}, not a blob`);
  return null;
}

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
 * A blob column decoded with `codec`, or null once `at` has been told why not: the column holds no blob
 * (`blob`), or `${what}: ` and the codec's message when its bytes do not decode.
 */
function decodeColumn<T>(
  value: unknown,
  column: string,
  codec: Codec<T>,
  what: string,
  at: (msg: string) => void,
): T | null {
  const bytes = blob(value, column, at);
  return (
    bytes &&
    tryDecode(
      () => decode(codec, bytes),
      (m) => at(`${what}: ${m}`),
    )
  );
}

export interface VerifyOptions {
  /**
   * The node whose ledger the file is: every own RESULTS row must be validly signed by it. Without it the
   * rows need only all be one genesis node's.
   */
  node?: number;
  /** Called after each batch: how many were checked, of how many the file holds (a long run's progress). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Re-checks the ledger at `path` end to end. With `genesis`, the file must belong to that group.
 * Throws `LEDGER_NOT_FOUND` for a missing file, `LEDGER_UNREADABLE` for one that is not a ledger (not SQLite,
 * empty, or without the ledger's meta row), and `LEDGER_BAD_NODE` for an `options.node` that is not a
 * non-negative integer or not a node of the genesis stored in the file; every other defect is a line in
 * `problems`.
 */
export function verifyLedgerFile(
  path: string,
  genesis?: Genesis,
  options: VerifyOptions = {},
): LedgerVerification {
  const { node } = options;
  if (node !== undefined && !(Number.isSafeInteger(node) && node >= 0))
    throw new DropbearError('LEDGER_BAD_NODE', `node must be a non-negative integer, not ${String(node)}`);
  if (!existsSync(path)) throw new DropbearError('LEDGER_NOT_FOUND', `no ledger at ${path}`);
  const problems: string[] = [];
  const counts = { batches: 0, ownResults: 0 };
  const db = openDatabase(path, { readonly: true, fileMustExist: true });
  try {
    // One read transaction: a snapshot, also of a ledger a running node writes meanwhile.
    db.exec('BEGIN');
    // SQLite's own check of its pages first (~1 ms per MB): a damaged page that no row read below touches
    // (an index) passed as "ok" until 2026-12-06, and the node would have met it at some later write.
    const damage = (db.pragma('quick_check(5)') as { quick_check: string }[]).map((r) => r.quick_check);
    if (damage.length !== 1 || damage[0] !== 'ok')
      throw new DropbearError(
        'LEDGER_CORRUPT',
        `${path}: SQLite finds the file damaged (quick_check): ${damage.join('; ')}`,
      );
    check(path, db, genesis, node, problems, counts, options.onProgress);
  } catch (e) {
    if (e instanceof DropbearError) throw e;
    const coded = readFailure(path, e);
    if (coded) throw coded;
    problems.push(`cannot read ledger: ${(e as Error).message}`);
  } finally {
    db.close();
  }
  return { ok: problems.length === 0, ...counts, problems };
}

/**
 * The coded error for SQLite's failure `e` to read the ledger file at `path` read-only, or null for another
 * failure (verifyLedgerFile reports it as a problem; a reader that must not go on throws it).
 */
export function readFailure(path: string, e: unknown): DropbearError | null {
  // A file that is not an SQLite database at all (or a folder) is unreadable (the CLI's exit 2), not a
  // ledger with problems: until 2026-12-06 it read "cannot read ledger: file is not a database", exit 1.
  const code = String((e as { code?: unknown }).code);
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CANTOPEN')
    return new DropbearError('LEDGER_UNREADABLE', `${path} is not a ledger: ${(e as Error).message}`);
  // A truncated or garbled file (before 2026-12-06: a line "database disk image is malformed", exit 1).
  if (code.startsWith('SQLITE_CORRUPT')) return ledgerCorrupt(path, e);
  // SQLite reads a WAL-mode file only by writing its -shm beside it (before 2026-12-06: a line "attempt
  // to write a readonly database", exit 1).
  if (code.startsWith('SQLITE_READONLY'))
    return new DropbearError(
      'LEDGER_READ_ONLY',
      `cannot read ${path} without writing ${path}-shm beside it (${(e as Error).message}): run as a user who ` +
        'may write its folder, or copy the file (with its -wal, if any) to a folder you may write',
    );
  return null;
}

function check(
  path: string,
  db: ReturnType<typeof openDatabase>,
  expected: Genesis | undefined,
  node: number | undefined,
  problems: string[],
  counts: { batches: number; ownResults: number },
  onProgress?: (done: number, total: number) => void,
): void {
  const meta = readMetaRow(db);
  // An empty file (a lost disk's zero-length copy) or another program's SQLite database is unreadable as a
  // ledger (exit 2), as a file that is not SQLite is; until 2026-12-06 it was a line of problems (exit 1).
  if (!meta) throw noLedgerError(db, path);
  // The meta row's values of another type than the node writes are problems naming the column, as in the
  // other tables (until 2026-12-07 a text schema version "11x", or 11.5, was LEDGER_SCHEMA_VERSION "written
  // by a newer build"; a text group id "cannot read ledger: argument must be a buffer", which ended the
  // check; a number for the genesis "does not decode: NaN trailing bytes"). Without a schema version, which
  // checks apply is unknown: nothing more is checked.
  const schemaVersion = meta.schema_version;
  if (!Number.isSafeInteger(schemaVersion)) {
    problems.push(`meta.schema_version is ${valueKind(schemaVersion)}, not a schema version (an integer)`);
    return;
  }
  const version = schemaVersion as number;
  // A file of another schema is one this build cannot check, not one with problems: until 2026-12-06 it was
  // a problem line (exit 1, read as a damaged ledger), where `ledger certificate` said LEDGER_SCHEMA_VERSION.
  if (version !== LEDGER_SCHEMA_VERSION)
    throw new DropbearError(
      'LEDGER_SCHEMA_VERSION',
      `${path}: ledger schema ${version}; this build reads ${LEDGER_SCHEMA_VERSION}` +
        (version >= 2 && version < LEDGER_SCHEMA_VERSION
          ? ' (a node opening the file upgrades it; verification only reads)'
          : version > LEDGER_SCHEMA_VERSION
            ? ' (written by a newer build: verify it with that one)'
            : ''),
    );
  const storedGroupId = blob(meta.group_id, 'meta.group_id', (m) => problems.push(m));
  const storedGenesis = blob(meta.genesis, 'meta.genesis', (m) => problems.push(m));
  if (!storedGenesis) return;
  const genesis = tryDecode(
    () => decode(Genesis, storedGenesis),
    (m) => problems.push(`stored genesis does not decode: ${m}`),
  );
  if (!genesis) return;
  const invalid = genesisProblem(genesis);
  if (invalid) {
    problems.push(`stored genesis cannot run a group: ${invalid}`);
    return;
  }
  if (node !== undefined && node >= genesis.nodes.length)
    throw new DropbearError(
      'LEDGER_BAD_NODE',
      `node ${node} is not a node of the ledger's group (nodes 0..${genesis.nodes.length - 1})`,
    );
  const groupId = groupIdOf(genesis);
  if (storedGroupId && !equalBytes(groupId, storedGroupId))
    problems.push(`stored group id ${hex(storedGroupId)} is not the stored genesis's (${hex(groupId)})`);
  if (expected && !equalBytes(groupIdOf(expected), groupId))
    problems.push(
      `ledger belongs to group ${hex(groupId)}, not the given genesis's ${hex(groupIdOf(expected))}`,
    );

  const q = quorumOf(genesis);
  // How the problem lines name q: 2f+1 only where it is (n = 3f+1); a group of n = 5, f = 1 needs 4.
  const quorumName = q === 2 * genesis.f + 1 ? '2f+1' : 'q = ⌊(n+f)/2⌋+1';
  const getReceipt = db.prepare('SELECT receipt, hash, prev_hash FROM receipts WHERE seq = ?');
  const getSigs = db.prepare('SELECT node, signature, view FROM receipt_sigs WHERE seq = ? ORDER BY node');
  const getOutcomes = db.prepare('SELECT outcomes FROM outcomes WHERE seq = ?');
  const getSources = db.prepare(
    'SELECT requests, results, commit_view, commit_sigs, commit_receipt_sigs FROM batch_sources WHERE seq = ?',
  );
  // State digests the replay must reproduce: the node's stable checkpoints (signed-log records, checked
  // against the genesis below) and any row of the `checkpoints` table (which the node does not write).
  const checkpoints = new Map<number, { digest: Uint8Array; what: string }[]>();
  const expectDigest = (seq: number, digest: Uint8Array, what: string) => {
    const list = checkpoints.get(seq) ?? [];
    list.push({ digest, what });
    checkpoints.set(seq, list);
  };
  for (const r of db.prepare('SELECT seq, state_digest FROM checkpoints').all() as Row[]) {
    const seq = r.seq as number;
    const d = blob(r.state_digest, 'checkpoints.state_digest', (m) => problems.push(`batch ${seq}: ${m}`));
    if (d) expectDigest(seq, d, 'the checkpoint state digest');
  }
  const cpRecords = db
    .prepare("SELECT id, seq, digest, body FROM consensus_log WHERE kind = 'checkpoint' ORDER BY id")
    .all() as Row[];
  for (const r of cpRecords) {
    const seq = r.seq;
    const at = (msg: string) => problems.push(`checkpoint record ${r.id as number}: ${msg}`);
    if (
      typeof seq !== 'number' ||
      !Number.isSafeInteger(seq) ||
      seq < 1 ||
      !(r.digest instanceof Uint8Array)
    ) {
      at('has no batch seq or no state digest');
      continue;
    }
    const digest = u8(r.digest);
    if (digest.length !== 32) {
      at(`batch ${seq}: a state digest of ${digest.length} bytes`);
      continue;
    }
    expectDigest(seq, digest, `the state digest of stable checkpoint ${seq} (signed log)`);
    // Its proof (records from before proofs were kept have none): q valid CHECKPOINT signatures over it.
    if (r.body === null) continue;
    const proof = decodeColumn(r.body, 'consensus_log.body', CheckpointProof, 'proof does not decode', (m) =>
      at(`batch ${seq}: ${m}`),
    );
    if (!proof) continue;
    const signers = new Set<number>();
    for (const x of proof) {
      const key = genesis.nodes[x.node]?.publicKey;
      const body = encode(CheckpointBody, { from: x.node, seq, stateDigest: digest });
      if (!key) at(`batch ${seq}: CHECKPOINT signature from unknown node ${x.node}`);
      else if (signers.has(x.node)) at(`batch ${seq}: two CHECKPOINT signatures from node ${x.node}`);
      else if (!verifyTagged(TAGS.checkpoint, groupId, body, x.signature, key))
        at(`batch ${seq}: CHECKPOINT signature of node ${x.node} is invalid`);
      else signers.add(x.node);
    }
    if (signers.size < q) at(`batch ${seq}: ${signers.size} valid CHECKPOINT signatures < ${q}`);
  }

  // Local state snapshots (what an open restores instead of replaying): each must be the state the replay
  // reaches at its batch, byte for byte, and hash to its stored hash. The open checks only what it can
  // without a replay (the hash, the last receipt), so one written wrong would go unnoticed there.
  const snapshots = new Map<number, Uint8Array>();
  for (const r of db.prepare('SELECT seq, state, hash FROM snapshots ORDER BY seq').all() as Row[]) {
    const at = (msg: string) => problems.push(`snapshot of batch ${String(r.seq)}: ${msg}`);
    const bytes = blob(r.state, 'snapshots.state', at);
    const hash = blob(r.hash, 'snapshots.hash', at);
    if (!bytes || !hash) continue;
    if (!equalBytes(sha256(bytes), hash)) at('its state does not hash to its stored hash');
    if (isCount(r.seq)) snapshots.set(r.seq, bytes);
    else at('its seq is not a non-negative integer');
  }

  const state = new LedgerState(genesis);
  let replaying = true;
  // Each transaction's fate by the replay, as `txs` keeps it: the first batch that applied it, else the latest.
  const fates = new Map<string, { seq: number; applied: boolean }>();
  let prevHash: Uint8Array | null = groupId; // the chain starts at the group id
  let count = 0;
  let expectSeq = 1;
  const total = onProgress ? ((db.prepare('SELECT count(*) AS n FROM batches').get() as Row).n as number) : 0;
  for (const row of db.prepare('SELECT * FROM batches ORDER BY seq').iterate() as IterableIterator<Row>) {
    if (count > 0) onProgress?.(count, total);
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
    if (!isCount(row.view)) at(`batches.view is not a non-negative integer (${String(row.view)})`);
    const digest = blob(row.digest, 'batches.digest', at);
    const batch = decodeColumn(row.batch, 'batches.batch', Batch, 'batch bytes do not decode', at);
    const entries = decodeColumn(
      row.entries,
      'batches.entries',
      ResolvedEntries,
      'resolved entries do not decode',
      at,
    );
    if (batch && digest && !equalBytes(batchDigestOf(batch), digest))
      at('stored digest is not the digest of the batch');
    let entriesMatch = false;
    if (batch && entries) {
      const problem = entriesProblem(batch, entries, true);
      if (problem) at(`resolved entries do not match the batch's entries: ${problem}`);
      entriesMatch = problem === null;
    }

    // The receipt and the chain.
    const rrow = getReceipt.get(seq) as Row | undefined;
    let receipt: Receipt | null = null;
    let receiptBytes: Uint8Array | null = null;
    let receiptHash: Uint8Array | null = null;
    if (!rrow) at('no receipt');
    else {
      const bytes = blob(rrow.receipt, 'receipts.receipt', at);
      const storedHash = blob(rrow.hash, 'receipts.hash', at);
      const storedPrev = blob(rrow.prev_hash, 'receipts.prev_hash', at);
      if (bytes) {
        receiptBytes = bytes;
        receiptHash = sha256(bytes);
        receipt = tryDecode(
          () => decode(Receipt, bytes),
          (m) => at(`receipt does not decode: ${m}`),
        );
      }
      if (storedHash && receiptHash && !equalBytes(storedHash, receiptHash))
        at('stored receipt hash is not the hash of the receipt');
      if (receipt) {
        if (receipt.seq !== seq) at(`receipt names batch ${receipt.seq}`);
        if (!equalBytes(receipt.groupId, groupId)) at('receipt names another group');
        if (digest && !equalBytes(receipt.batchDigest, digest)) at('receipt names another batch digest');
        if (storedPrev && !equalBytes(storedPrev, receipt.prevReceipt))
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
        const view = s.view;
        const key = genesis.nodes[node]?.publicKey;
        const signature = blob(s.signature, `receipt_sigs.signature of node ${node}`, at);
        if (!key) at(`signature from unknown node ${node}`);
        else if (signers.has(node)) at(`two signatures from node ${node}`);
        else if (!signature) continue;
        else if (view !== null && !isCount(view))
          at(
            `receipt_sigs.view of node ${node} is neither null nor a non-negative integer (${String(view)})`,
          );
        else if (!verifyReceiptSig(groupId, receiptBytes, receiptHash!, { signature, view }, key))
          at(`receipt signature of node ${node} is invalid`);
        else {
          signers.add(node);
          valid.push({ node, view });
        }
      }
      // Prepared signatures count only with plain ones and those of the same view (receiptQuorum).
      if (signers.size < q) at(`${signers.size} valid receipt signatures < ${q} (${quorumName})`);
      else if (!receiptQuorum(valid, q))
        at(
          `${signers.size} valid receipt signatures, no ${q} (${quorumName}) of them plain or prepared in one view`,
        );
    }

    // What state transfer ships for the batch, where stored.
    const src = getSources.get(seq) as Row | undefined;
    if (src && digest && batch && entries && entriesMatch)
      checkSources(seq, digest, batch, entries, src, genesis, groupId, receiptBytes, at);

    // Stored outcomes against the receipt's Merkle root.
    const orow = getOutcomes.get(seq) as Row | undefined;
    const stored = orow
      ? decodeColumn(orow.outcomes, 'outcomes.outcomes', StoredOutcomes, 'stored outcomes do not decode', at)
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

    // Replay (not of entries that are not the batch's: what it would reproduce proves nothing).
    if (replaying && digest && batch && entries && entriesMatch) {
      try {
        const ex = state.execute(seq, digest, batch, entries);
        for (const t of ex.txs) {
          const k = hex(t.id);
          if (!fates.get(k)?.applied) fates.set(k, { seq, applied: t.applied });
        }
        let same = receiptHash !== null && equalBytes(ex.receiptHash, receiptHash);
        if (!same) at('replay does not reproduce the stored receipt');
        const outs = ex.outcomes.map((o) => encode(Outcome, o));
        if (outs.length !== outcomeBytes.length || outs.some((b, i) => !equalBytes(b, outcomeBytes[i]))) {
          at('replay does not reproduce the stored outcomes');
          same = false;
        }
        const cps = checkpoints.get(seq);
        if (cps) {
          const replayed = state.stateDigest();
          for (const cp of cps)
            if (!equalBytes(cp.digest, replayed)) {
              at(`replay does not reproduce ${cp.what}`);
              same = false;
            }
        }
        const snapshot = snapshots.get(seq);
        // Not a divergence of the ledger (the batches still replay to their receipts): a node opening the
        // file would restore another state than its batches make, so it is reported, and the replay goes on.
        if (same && snapshot && !equalBytes(state.snapshot(), snapshot))
          at('the stored snapshot is not the state the replay reaches');
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
    ['batch sources', 'SELECT seq FROM batch_sources WHERE seq NOT IN (SELECT seq FROM batches)'],
    ['snapshots', 'SELECT seq FROM snapshots WHERE seq NOT IN (SELECT seq FROM batches)'],
    ['transaction fates', 'SELECT DISTINCT seq FROM txs WHERE seq NOT IN (SELECT seq FROM batches)'],
  ];
  // (A stable checkpoint record above the last stored batch is no defect: with `synchronous = NORMAL` a
  // power loss may take the last executions and leave the fsynced record; its signatures are checked.)
  for (const [what, sql] of orphans) {
    const seqs = (db.prepare(sql).all() as Row[]).map((r) => r.seq as number);
    if (seqs.length > 0)
      problems.push(`${what} for batches not in the ledger: ${seqs.slice(0, 10).join(', ')}`);
  }
  if (count > 0) onProgress?.(count, total);
  counts.batches = count;
  counts.ownResults = checkOwnResults(db, genesis, groupId, node, problems);
  checkTxFates(db, replaying ? fates : null, problems);
}

/**
 * Checks every row of `txs` (schema 11): a 32-byte id, a batch seq, `applied` 0 or 1; and, with `fates`
 * (the replay's, when it reached the last batch), that each row is the replay's answer for its
 * transaction and that each transaction the batches carry has a row.
 */
function checkTxFates(
  db: ReturnType<typeof openDatabase>,
  fates: Map<string, { seq: number; applied: boolean }> | null,
  problems: string[],
): void {
  const seen = new Set<string>();
  for (const r of db.prepare('SELECT id, seq, applied FROM txs ORDER BY id').all() as Row[]) {
    const id = blob(r.id, 'txs.id', (m) => problems.push(`transaction fate: ${m}`));
    if (!id) continue;
    const k = hex(id);
    const at = (msg: string) => problems.push(`transaction ${k}: ${msg}`);
    if (id.length !== 32) {
      at(`an id of ${id.length} bytes`);
      continue;
    }
    seen.add(k);
    if (!isCount(r.seq) || r.seq < 1) at(`its batch is not a positive integer (${String(r.seq)})`);
    if (r.applied !== 0 && r.applied !== 1) at(`applied is not 0 or 1 (${String(r.applied)})`);
    if (!fates) continue;
    const f = fates.get(k);
    const shown = (seq: unknown, applied: unknown) =>
      `batch ${String(seq)}, ${applied === 1 || applied === true ? 'applied' : 'without effect'}`;
    if (!f) at('a stored fate, but no batch carries it');
    else if (f.seq !== r.seq || (f.applied ? 1 : 0) !== r.applied)
      at(`its stored fate (${shown(r.seq, r.applied)}) is not the replay's (${shown(f.seq, f.applied)})`);
  }
  if (!fates) return;
  const missing = [...fates].filter(([k]) => !seen.has(k));
  if (missing.length > 0)
    problems.push(
      `transactions without a stored fate (a node's next open writes them): ${missing
        .slice(0, 10)
        .map(([k, f]) => `${k} (batch ${f.seq})`)
        .join(', ')}`,
    );
}

/**
 * Checks every row of `own_results` (this node's own signed RESULTS): the `signed` blob decodes; the
 * `digest` column is the RESULTS digest of what it decodes to; the signer is a genesis node and the
 * signature verifies against its key; `newest` is a non-negative integer. The file does not record which
 * node it belongs to: with `node` (the caller says), a row validly signed by another node is a problem;
 * without, every validly signed row must come from one node. Returns the number of rows.
 */
function checkOwnResults(
  db: ReturnType<typeof openDatabase>,
  genesis: Genesis,
  groupId: Uint8Array,
  node: number | undefined,
  problems: string[],
): number {
  const table = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'own_results'").get();
  if (!table) {
    problems.push('no own_results table');
    return 0;
  }
  let rows = 0;
  const signers = new Map<number, number>(); // node -> rows it validly signed
  for (const r of db
    .prepare('SELECT rowid AS id, digest, signed, newest FROM own_results ORDER BY rowid')
    .iterate() as IterableIterator<Row>) {
    rows++;
    const at = (msg: string) => problems.push(`own RESULTS row ${r.id as number}: ${msg}`);
    const newest = r.newest;
    if (!isCount(newest)) at(`newest is not a non-negative integer (${String(newest)})`);
    const digest = blob(r.digest, 'own_results.digest', at);
    if (digest && digest.length !== 32) at('the digest column is not a 32-byte digest');
    const signed = decodeColumn(
      r.signed,
      'own_results.signed',
      SignedResults,
      'signed RESULTS do not decode',
      at,
    );
    if (!signed) continue;
    // The batch's bytes once, for both the digest and the signature.
    const batchBytes = encode(ResultBatch, signed.batch);
    if (digest?.length === 32 && !equalBytes(resultsDigestOfParts(batchBytes, signed.signature), digest))
      at('stored digest is not the digest of the signed RESULTS');
    const signer = signed.batch.node;
    const key = genesis.nodes[signer]?.publicKey;
    if (!key) at(`signed by unknown node ${signer}`);
    else if (!verifyResults(groupId, signed, key, batchBytes))
      at(`the signature of node ${signer} is invalid`);
    else if (node !== undefined && signer !== node)
      at(`signed by node ${signer}, not by node ${node} whose ledger this is`);
    else signers.set(signer, (signers.get(signer) ?? 0) + 1);
  }
  if (signers.size > 1) {
    const list = [...signers]
      .sort((a, b) => a[0] - b[0])
      .map(([node, n]) => `node ${node}: ${n} row${n === 1 ? '' : 's'}`)
      .join(', ');
    problems.push(`own RESULTS signed by more than one node (${list}); a ledger holds one node's`);
  }
  return rows;
}

/**
 * Checks batch `seq`'s stored sources against the batch and its (matching) resolved entries: every request
 * of the batch, validly authorised by its client and equal to the resolved request; every vote's RESULTS,
 * hashing to the digest the vote names, from the voting node, validly signed, and holding the resolved
 * model digest and result at the vote's index; and each COMMIT and prepared receipt signature of the
 * batch's proof valid for a genesis node. Sources beyond those are not reported: a node that caught up by
 * state transfer stores what its peer shipped, and a peer may ship more than the batch names.
 */
function checkSources(
  seq: number,
  digest: Uint8Array,
  batch: Batch,
  entries: ResolvedEntry[],
  src: Row,
  genesis: Genesis,
  groupId: Uint8Array,
  receiptBytes: Uint8Array | null,
  at: (msg: string) => void,
): void {
  const requests = decodeColumn(
    src.requests,
    'batch_sources.requests',
    SourceRequests,
    'stored source requests do not decode',
    at,
  );
  const results = decodeColumn(
    src.results,
    'batch_sources.results',
    SourceResults,
    'stored source RESULTS do not decode',
    at,
  );
  if (requests) {
    const byId = new Map<string, SignedRequest>();
    for (const sr of requests) byId.set(hex(requestIdOf(sr)), sr);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      const sr = byId.get(hex(e.requestId));
      if (!sr) at(`entry ${i}: its request is not among the stored sources`);
      else if (!equalBytes(encode(Request, sr.request), encode(Request, e.request)))
        at(`entry ${i}: the stored source request is not the resolved one`);
      else {
        const bad = requestAuthProblem(sr);
        if (bad) at(`entry ${i}: stored source request: ${bad}`);
      }
    }
  }
  if (results) {
    const byDigest = new Map<string, SignedResults>();
    for (const r of results) byDigest.set(hex(resultsDigestOf(r)), r);
    const checked = new Set<string>();
    for (let i = 0; i < batch.entries.length; i++) {
      const be = batch.entries[i];
      for (let k = 0; k < be.votes.length; k++) {
        const v = be.votes[k];
        const d = hex(v.results);
        const signed = byDigest.get(d);
        if (!signed) {
          at(`entry ${i}: the RESULTS of node ${v.node}'s vote are not among the stored sources`);
          continue;
        }
        const r = signed.batch;
        if (r.node !== v.node) {
          at(`entry ${i}: the RESULTS of node ${v.node}'s vote are node ${r.node}'s`);
          continue;
        }
        if (!checked.has(d)) {
          checked.add(d);
          const key = genesis.nodes[r.node]?.publicKey;
          if (!key || !verifyResults(groupId, signed, key))
            at(`RESULTS ${d} of node ${r.node}: the signature is invalid`);
        }
        const item = r.entries[v.index];
        if (!item || !equalBytes(item.requestId, be.requestId)) {
          at(`entry ${i}: node ${v.node}'s vote points at another request's result`);
          continue;
        }
        const stored = { node: v.node, modelDigest: r.modelDigest, result: item.result };
        if (!equalBytes(encode(CountedVote, stored), encode(CountedVote, entries[i].votes[k])))
          at(`entry ${i}: node ${v.node}'s resolved vote is not what its stored RESULTS say`);
      }
    }
  }
  // The proof it committed with (kept while the batch had no quorum of receipt signatures).
  if (src.commit_sigs !== null && src.commit_sigs !== undefined) {
    const view = src.commit_view;
    const sigs = decodeColumn(
      src.commit_sigs,
      'batch_sources.commit_sigs',
      CommitSigs,
      'stored COMMIT signatures do not decode',
      at,
    );
    if (sigs && !isCount(view)) at('stored COMMIT signatures without their view');
    else if (sigs)
      for (const x of sigs) {
        const key = genesis.nodes[x.node]?.publicKey;
        const body = encode(PhaseBody, { from: x.node, view: view as number, seq, digest });
        if (!key || !verifyTagged(TAGS.commit, groupId, body, x.signature, key))
          at(`stored COMMIT signature of node ${x.node} is invalid`);
      }
  }
  if (src.commit_receipt_sigs !== null && src.commit_receipt_sigs !== undefined) {
    const sigs = decodeColumn(
      src.commit_receipt_sigs,
      'batch_sources.commit_receipt_sigs',
      ReceiptSignatures,
      'stored prepared receipt signatures do not decode',
      at,
    );
    // Kept only over the receipt this node executed to (the stored one).
    if (sigs && receiptBytes) {
      const hash = sha256(receiptBytes);
      for (const x of sigs) {
        const key = genesis.nodes[x.node]?.publicKey;
        if (!key || !verifyReceiptSig(groupId, receiptBytes, hash, x, key))
          at(`stored prepared receipt signature of node ${x.node} in the batch's proof is invalid`);
      }
    }
  }
}
