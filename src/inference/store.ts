/**
 * The model store: model files kept by SHA-256 under `<home>/models/<sha256>.onnx`, plus an index
 * (`<home>/models/index.json`) that maps a name to { sha256, bytes, spec, importedAt }. A model's identity is
 * its digest; the name is only a handle. Every file lands under its final name by rename from a synced temp
 * file in the same folder, and the folder is synced after (renameDurably), so a crash never leaves a
 * half-written model or index behind, nor, after a power cut, an index naming a model whose rename was lost.
 *
 * A process killed while it writes leaves its temp file (`.download-….tmp`, `.import.….tmp`,
 * `.index.json.….tmp`, `.index.lock.….tmp`) behind; the first use of a store folder in a process removes
 * those that nobody has written for STALE_TEMP_MS (removeStaleTemps says why an age and not a lock or a pid).
 * A process killed while it holds `index.lock` leaves it too: lockIndex breaks it at once when that process
 * was on this machine, after STALE_LOCK_MS otherwise.
 *
 * A failure to write into the store (disk full, quota, read-only file system, permissions) is
 * MODEL_STORE_WRITE_FAILED with the system's code in `details.errno`; MODEL_DOWNLOAD_FAILED is kept for
 * the network side of a pull.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  readlink,
  rename,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { basename, extname, join } from 'node:path';
import './ort-env.ts';
import { DropbearError, writeFailure } from '../protocol/index.ts';
import { CATALOG } from './catalog.ts';
import type { ImagePreprocess, ModelSpec, Preprocess, TensorDtype, TensorSpec } from './spec.ts';

export interface IndexEntry {
  sha256: string;
  bytes: number;
  spec: ModelSpec;
  /** ISO-8601 time of the first import or pull. */
  importedAt: string;
}

export interface StoreIndex {
  version: 1;
  models: Record<string, IndexEntry>;
}

export interface ImportedModel {
  name: string;
  sha256: string;
  bytes: number;
  path: string;
  /** 'catalog' when the digest is in the catalog, 'derived' when the spec was read from the model itself. */
  specFrom: 'catalog' | 'derived';
  /** False when the model was already in the store (nothing changed but a repaired copy). */
  added: boolean;
  /** True when the store held this digest's file with other bytes, now replaced by the imported ones. */
  repaired?: true;
}

export interface ModelRow {
  name: string;
  sha256: string;
  bytes: number;
  /** e.g. `float32[N,3,224,224]` */
  input: string;
  preprocess: string;
  labels: ModelSpec['labels'];
  importedAt: string;
  path: string;
  /**
   * What is wrong with the stored file, when something is: missing, not a file, unreadable, another size than
   * the index says (cut short or replaced), or (with `verify`) bytes that do not hash to its digest. A node
   * refuses such a model at start; `import` of the right file or `pull` repairs it.
   */
  problem?: string;
}

export interface ListOptions {
  /** Re-hash every stored file (reads them all) instead of checking only that it is there with its size. */
  verify?: boolean;
}

export interface ResolvedModel {
  path: string;
  spec: ModelSpec;
  sha256: string;
}

export interface PullOptions extends IndexLockOptions {
  fetchImpl?: typeof fetch;
  /** Called as bytes arrive; `total` is the catalog's size of the file (the only size it can have). */
  onProgress?: (done: number, total: number) => void;
  /** The full URL to download from instead of the catalog's. */
  urlOverride?: string;
  /**
   * Replaces everything before the file name of the catalog URL (a mirror or a test server). Default: the
   * DROPBEAR_CATALOG_BASE_URL environment variable.
   */
  baseUrl?: string;
  /** Give up when no bytes arrive for this long (default 60 s). */
  idleTimeoutMs?: number;
  /**
   * Give up when the whole download (from the request to the last byte) takes longer than this: a server
   * that trickles a byte inside every idle timeout is never idle. Default: downloadDeadlineMs of the size.
   */
  deadlineMs?: number;
  catalog?: readonly ModelSpec[];
}

export interface PullResult {
  name: string;
  sha256: string;
  bytes: number;
  path: string;
  /** False when the model was already in the store. */
  downloaded: boolean;
  url?: string;
}

/** The slowest mean rate a pull's default deadline allows (bytes per second). */
export const MIN_DOWNLOAD_RATE = 50_000;
/** The shortest default deadline of a pull, whatever the size. */
export const DOWNLOAD_DEADLINE_FLOOR_MS = 10 * 60_000;

/** A pull's default deadline for a file of `bytes`: the time at MIN_DOWNLOAD_RATE, at least 10 minutes. */
export function downloadDeadlineMs(bytes: number): number {
  return Math.max(DOWNLOAD_DEADLINE_FLOOR_MS, Math.ceil((bytes / MIN_DOWNLOAD_RATE) * 1000));
}

/** `$DROPBEAR_HOME`, or `~/.dropbear`. */
export function defaultHome(): string {
  const env = process.env.DROPBEAR_HOME;
  return env && env.length > 0 ? env : join(homedir(), '.dropbear');
}

export function modelsDir(home: string = defaultHome()): string {
  return join(home, 'models');
}

export function indexPath(home: string = defaultHome()): string {
  return join(modelsDir(home), 'index.json');
}

export function storedPath(sha256: string, home: string = defaultHome()): string {
  return join(modelsDir(home), `${sha256}.onnx`);
}

/**
 * Temp files this process has created and not yet renamed or removed: a sweep of the store (removeStaleTemps)
 * leaves them alone whatever their age.
 */
const liveTemps = new Set<string>();

/** A fresh temp file name in `dir`, counted as live until it is renamed or unlinkQuiet removes it. */
function tempName(dir: string, hint: string): string {
  const path = join(dir, `.${hint}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  liveTemps.add(path);
  return path;
}

/**
 * The names tempName gives (`.<hint>.<pid>.<12 hex>.tmp`, hint one of the store's four), and the name a
 * stale index lock is moved to while it is broken (`index.lock.<12 hex>.breaking`, breakLock).
 */
const STORE_TEMP =
  /^(?:\.(?:download-[0-9a-f]{12}|import|index\.json|index\.lock)\.\d+\.[0-9a-f]{12}\.tmp|index\.lock\.[0-9a-f]{12}\.breaking)$/;

/**
 * A temp file untouched for this long is taken as left behind by a process that died. One hour: a pull
 * writes its temp file with every chunk that arrives and gives up after `idleTimeoutMs` (60 s by default)
 * without one, an import writes its copy and renames it within the time onnxruntime takes to open it, and an
 * index write takes milliseconds; a leftover costs only disk space until the next sweep.
 */
export const STALE_TEMP_MS = 60 * 60_000;

/**
 * Removes the store's own temp files (by name, see STORE_TEMP) that were last modified STALE_TEMP_MS or more
 * ago and that this process is not writing. Returns the names removed; failures are skipped (a file another
 * process removed first, a folder that does not exist yet).
 *
 * Why an age: several processes (a node, a `models pull` in a shell, maybe on other hosts of a shared
 * folder) can use one store at once. index.lock is held only while the index is rewritten, not while a
 * model downloads, so it cannot tell a live download from a dead one; the pid in the name means nothing
 * across hosts or containers (another pid namespace). A live writer keeps its file's mtime fresh, so an old
 * mtime is the one sign every process can read.
 */
export async function removeStaleTemps(
  home: string = defaultHome(),
  olderThanMs: number = STALE_TEMP_MS,
): Promise<string[]> {
  const dir = modelsDir(home);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!STORE_TEMP.test(name)) continue;
    const path = join(dir, name);
    if (liveTemps.has(path)) continue;
    try {
      const st = await lstat(path);
      if (!st.isFile() || Date.now() - st.mtimeMs < olderThanMs) continue;
      await unlink(path);
      removed.push(name);
    } catch {
      // removed meanwhile by another process's sweep, or not ours to remove
    }
  }
  return removed;
}

/** Store folders this process has opened (swept once each). */
const opened = new Map<string, Promise<unknown>>();

/** The first use of a store folder in this process sweeps its stale temp files (removeStaleTemps). */
function openStore(home: string): Promise<unknown> {
  const dir = modelsDir(home);
  let p = opened.get(dir);
  if (!p) {
    p = removeStaleTemps(home).catch(() => []);
    opened.set(dir, p);
  }
  return p;
}

/**
 * A failure to create, write, sync or rename a file in the store: MODEL_STORE_WRITE_FAILED, with the
 * system's error code in `details.errno` (ENOSPC for a full disk) and the path. A DropbearError passes as is.
 */
function storeWriteFailed(path: string, e: unknown, doing: string): DropbearError {
  if (e instanceof DropbearError) return e;
  const { errno, why } = writeFailure(e);
  return new DropbearError(
    'MODEL_STORE_WRITE_FAILED',
    `cannot write the model store while ${doing}: ${why}; ` +
      `make room or fix the store folder ${join(path, '..')} (DROPBEAR_HOME) and try again`,
    { path, errno },
  );
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether the file at `path` exists and hashes to `sha256`. A stored model is named by its digest, but its
 * bytes can still change (a bad disk, a hand edit); an import or pull of the right bytes replaces such a copy
 * instead of taking its name for its content.
 */
async function holds(path: string, sha256: string): Promise<boolean> {
  try {
    return (await sha256File(path)).sha256 === sha256;
  } catch {
    return false;
  }
}

async function unlinkQuiet(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch {
    // already gone
  }
  liveTemps.delete(path);
}

export async function readIndex(home: string = defaultHome()): Promise<StoreIndex> {
  const path = indexPath(home);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, models: {} };
    throw new DropbearError(
      'MODEL_STORE_UNREADABLE',
      `cannot read the model index ${path}: ${(e as Error).message}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new DropbearError(
      'MODEL_STORE_UNREADABLE',
      `the model index ${path} is not JSON (${(e as Error).message}); move it away and import the models again`,
    );
  }
  const p = parsed as Partial<StoreIndex> | null;
  if (p?.version !== 1 || typeof p.models !== 'object' || p.models === null || Array.isArray(p.models)) {
    throw new DropbearError('MODEL_STORE_UNREADABLE', `the model index ${path} has an unknown format`);
  }
  for (const [name, entry] of Object.entries(p.models)) {
    const problem = entryProblem(name, entry);
    if (problem)
      throw new DropbearError(
        'MODEL_STORE_UNREADABLE',
        `the model index ${path} is damaged: its entry ${JSON.stringify(name)} ${problem}; move the index ` +
          'away and import or pull the models again',
        { path, name },
      );
  }
  return p as StoreIndex;
}

const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

function tensorProblem(t: unknown): string | undefined {
  const x = t as Partial<TensorSpec> | null;
  if (typeof x !== 'object' || x === null || typeof x.name !== 'string') return 'is not a tensor';
  if (x.dtype !== 'float32' && x.dtype !== 'float16') return `has dtype ${JSON.stringify(x.dtype)}`;
  if (
    !Array.isArray(x.shape) ||
    x.shape.length === 0 ||
    !x.shape.every((d) => d === null || (Number.isInteger(d) && d >= 0))
  )
    return 'has no valid shape';
  return undefined;
}

/**
 * What is wrong with one entry of an index read from disk, if anything. The index is a file anyone can edit
 * or a failing disk can damage: an entry without a spec crashed `models list` with "Cannot read properties
 * of undefined", and a `sha256` such as `../../x` made storedPath point outside the store.
 */
function entryProblem(name: string, entry: unknown): string | undefined {
  if (!MODEL_NAME.test(name)) return 'is not a model name';
  const e = entry as Partial<IndexEntry> | null;
  if (typeof e !== 'object' || e === null) return 'is not an object';
  if (typeof e.sha256 !== 'string' || !SHA256_HEX.test(e.sha256)) return 'has no valid sha256';
  if (!Number.isSafeInteger(e.bytes) || (e.bytes as number) < 0) return 'has no valid size';
  if (typeof e.importedAt !== 'string') return 'has no import time';
  const spec = e.spec as Partial<ModelSpec> | null | undefined;
  if (typeof spec !== 'object' || spec === null) return 'has no spec';
  for (const what of ['input', 'output'] as const) {
    const problem = tensorProblem(spec[what]);
    if (problem) return `has a spec whose ${what} ${problem}`;
  }
  const pre = spec.preprocess as Record<keyof ImagePreprocess, unknown> | null | undefined;
  const kind = typeof pre === 'object' && pre !== null ? pre.kind : undefined;
  const numbers = (xs: unknown) => Array.isArray(xs) && xs.length === 3 && xs.every(Number.isFinite);
  if (
    !(
      kind === 'tensor' ||
      (kind === 'grey' && Number.isInteger(pre?.size)) ||
      (kind === 'image' &&
        Number.isInteger(pre?.size) &&
        Number.isInteger(pre?.resize) &&
        (pre?.channels === 'RGB' || pre?.channels === 'BGR') &&
        Number.isFinite(pre?.scale) &&
        numbers(pre?.mean) &&
        numbers(pre?.std))
    )
  )
    return 'has a spec without a valid preprocess';
  if (spec.labels !== 'imagenet1k' && spec.labels !== 'mnist10' && spec.labels !== 'none')
    return 'has a spec without valid labels';
  return undefined;
}

/** Errors from syncing a folder that say the file system cannot, not that it failed (Windows, some network file systems). */
const NO_DIR_SYNC = new Set(['EINVAL', 'ENOTSUP', 'EISDIR', 'EPERM', 'EBADF']);

/**
 * Renames a synced temp file to its final name in the same folder, then syncs the folder. The fsync of the
 * file makes its bytes durable, the rename makes it appear whole or not at all, but the rename itself is
 * only durable once the folder is synced: without it a power cut after a pull could lose the model's name
 * while keeping the index that names it (or bring back the index from before an import).
 */
async function renameDurably(tmp: string, final: string): Promise<void> {
  await rename(tmp, final);
  liveTemps.delete(tmp);
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(join(final, '..'), 'r');
    await fh.sync();
  } catch (e) {
    if (!NO_DIR_SYNC.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
  } finally {
    await fh?.close();
  }
}

/**
 * Writes the index atomically: temp file in the same folder, fsync, rename, fsync of the folder. When
 * `stillMine` says false just before the rename, nothing is written and the answer is false.
 */
async function writeIndex(
  home: string,
  index: StoreIndex,
  stillMine?: () => Promise<boolean>,
): Promise<boolean> {
  const dir = modelsDir(home);
  const tmp = tempName(dir, 'index.json');
  try {
    await mkdir(dir, { recursive: true });
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(`${JSON.stringify(index, null, 2)}\n`, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (stillMine && !(await stillMine())) {
      await unlinkQuiet(tmp);
      return false;
    }
    await renameDurably(tmp, indexPath(home));
    return true;
  } catch (e) {
    await unlinkQuiet(tmp);
    throw storeWriteFailed(tmp, e, 'writing the model index');
  }
}

/** Index updates in flight in this process, by store folder: each waits for the one before. */
const indexQueues = new Map<string, Promise<unknown>>();
/**
 * How long the index lock file may stand before it is taken as left behind by a dead process, when its
 * owner cannot be checked directly (another host, an old empty lock). The lock is held for the milliseconds
 * an index rewrite takes.
 */
export const STALE_LOCK_MS = 60_000;

export interface IndexLockOptions {
  /** A lock whose owner cannot be shown dead is broken once its file is this old (default STALE_LOCK_MS). */
  staleLockMs?: number;
  /** Waiting longer than this for a lock that is neither dead nor stale is MODEL_STORE_BUSY (default 2 × staleLockMs). */
  lockWaitMs?: number;
}

/** What a holder writes into `index.lock`: who it is, where, and a token that is its alone. */
interface LockOwner {
  pid: number;
  host: string;
  /** 32 hex digits, new for every acquisition: the lock's identity. */
  token: string;
  /** ISO-8601 time of the acquisition (for the operator; ages are taken from the file's mtime). */
  at: string;
  /** `/proc/self/ns/pid` (Linux): a pid means something only inside its pid namespace (a container). */
  pidns?: string;
  /** `/proc/sys/kernel/random/boot_id` (Linux): a pid of an earlier boot means nothing. */
  boot?: string;
}

/** This process's host, pid namespace and boot, read once. */
let machine: Promise<Pick<LockOwner, 'host' | 'pidns' | 'boot'>> | undefined;
function thisMachine(): Promise<Pick<LockOwner, 'host' | 'pidns' | 'boot'>> {
  machine ??= (async () => ({
    host: hostname(),
    pidns: await readlink('/proc/self/ns/pid').catch(() => undefined),
    boot: await readFile('/proc/sys/kernel/random/boot_id', 'utf8').then(
      (t) => t.trim(),
      () => undefined,
    ),
  }))();
  return machine;
}

/** A lock file as read: its owner record (none for an empty lock of the old format, or one half written) and identity. */
interface LockSeen {
  owner?: LockOwner;
  ino: number;
  mtimeMs: number;
  size: number;
}

/** Reads a lock file (content and stat from one open handle: one inode); undefined when there is none. */
async function readLock(path: string): Promise<LockSeen | undefined> {
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(path, 'r');
    const st = await fh.stat();
    const text = await fh.readFile('utf8');
    let owner: LockOwner | undefined;
    try {
      const o = JSON.parse(text) as Partial<LockOwner> | null;
      if (
        typeof o === 'object' &&
        o !== null &&
        Number.isSafeInteger(o.pid) &&
        typeof o.host === 'string' &&
        typeof o.token === 'string' &&
        o.token.length > 0
      )
        owner = o as LockOwner;
    } catch {
      // empty (the old format, or a holder between creating and writing it) or not ours: judged by age
    }
    return { owner, ino: st.ino, mtimeMs: st.mtimeMs, size: st.size };
  } catch {
    return undefined;
  } finally {
    await fh?.close().catch(() => {});
  }
}

/** Whether two readings are of the same lock: the same token, or for a lock without one the same file unchanged. */
function sameLock(a: LockSeen, b: LockSeen): boolean {
  if (a.owner || b.owner) return a.owner?.token === b.owner?.token;
  return a.ino === b.ino && a.mtimeMs === b.mtimeMs && a.size === b.size;
}

/** Whether `pid` is a live process here (EPERM: alive, not ours to signal). */
function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Why a lock seen may be broken now, if it may: its owner is on this machine (same host, pid namespace and
 * boot) and its pid is not alive, or its file is older than `staleMs` (an owner elsewhere, an old empty lock,
 * or a pid reused by another process).
 */
async function breakable(seen: LockSeen, staleMs: number): Promise<string | undefined> {
  const o = seen.owner;
  if (o) {
    const me = await thisMachine();
    if (o.host === me.host && o.pidns === me.pidns && o.boot === me.boot && !alive(o.pid))
      return `its owner, pid ${o.pid} on this host, is gone`;
  }
  const age = Date.now() - seen.mtimeMs;
  return age > staleMs ? `it is ${Math.round(age)} ms old` : undefined;
}

/**
 * Removes the lock at `path` if it is still the one `judged` (breakable) was about, and only then.
 *
 * Unlinking the path would remove whatever lock stands there by then: two waiters that both judged a dead
 * lock breakable both unlinked it, the second removing the lock the first had just created, and two
 * updates ran at once (one lost). Instead the lock is renamed to a name of this waiter's own (a rename moves
 * one file, atomically: two waiters cannot both get it) and read again there. If it holds the token that
 * was judged (for an old empty lock: the same inode, mtime and size) it is deleted. If not, this waiter
 * took a live holder's fresh lock: it is linked back under `index.lock` (link, unlike rename, fails instead
 * of replacing a lock a third process created in between). Should that third process have come in between
 * (the path stood empty for the microseconds between the rename and the link), the displaced holder finds
 * that `index.lock` no longer holds its token just before it renames its new index into place
 * (IndexLock.held) and tries its update again; it never removes a lock that is not its own (release).
 */
async function breakLock(path: string, judged: LockSeen): Promise<void> {
  const aside = `${path}.${randomBytes(6).toString('hex')}.breaking`;
  try {
    await rename(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // released or broken by another meanwhile
    throw storeWriteFailed(path, e, 'breaking a stale lock of the model index');
  }
  const now = await readLock(aside);
  if (now && !sameLock(now, judged)) {
    try {
      await link(aside, path);
    } catch {
      // EEXIST: another process holds index.lock now (see above); or no hard links on this file system
    }
  }
  await unlinkQuiet(aside);
}

export interface IndexLock {
  /** Whether `index.lock` still holds this acquisition's token (false once another broke it as stale). */
  held(): Promise<boolean>;
  /**
   * Removes `index.lock` if, and only if, it still holds this acquisition's token; found missing, first
   * waits (at most TRANSIT_WAIT_MS) while a breaker holds it aside (breakLock) and may link it back.
   */
  release(): Promise<void>;
}

/**
 * Takes `<home>/models/index.lock` (created exclusively, holding a LockOwner record) against other processes,
 * waiting while another holds it. A lock is broken at once when its owner is on this machine and its pid is
 * gone (a process killed with SIGKILL), otherwise once it is `staleLockMs` old; waiting longer than
 * `lockWaitMs` for a lock that is neither is MODEL_STORE_BUSY. Exported for tests; updateIndex uses it.
 */
export async function lockIndex(home: string, opts: IndexLockOptions = {}): Promise<IndexLock> {
  const dir = modelsDir(home);
  const path = join(dir, 'index.lock');
  const staleMs = opts.staleLockMs ?? STALE_LOCK_MS;
  const waitMs = opts.lockWaitMs ?? 2 * staleMs;
  const token = randomBytes(16).toString('hex');
  const owner: LockOwner = {
    pid: process.pid,
    ...(await thisMachine()),
    token,
    at: new Date().toISOString(),
  };
  const body = `${JSON.stringify(owner)}\n`;
  // The record is written to a temp file first and linked to `index.lock` (link fails with EEXIST like an
  // exclusive create): the lock appears with its owner in it. Created empty and written after, a holder
  // killed in between left an empty lock, which only its age could break.
  const tmp = tempName(dir, 'index.lock');
  try {
    await writeFile(tmp, body, { encoding: 'utf8', flag: 'wx' });
  } catch (e) {
    await unlinkQuiet(tmp);
    throw storeWriteFailed(tmp, e, 'locking the model index');
  }
  try {
    const start = performance.now();
    /** Lock files in a row that could not be read (gone meanwhile, or unreadable). */
    let unread = 0;
    while (!(await createLock(path, tmp, body))) {
      const seen = await readLock(path);
      unread = seen ? 0 : unread + 1;
      if (seen && (await breakable(seen, staleMs))) {
        await breakLock(path, seen);
        if (performance.now() - start <= waitMs) continue;
      }
      if (performance.now() - start > waitMs) {
        const o = seen?.owner;
        throw new DropbearError(
          'MODEL_STORE_BUSY',
          `the model index lock ${path} stays held${
            o
              ? ` by pid ${o.pid} on ${o.host} since ${o.at}`
              : seen
                ? ' (an empty lock, from an older version)'
                : ' (it cannot be read as a lock file)'
          }${seen ? `, ${Math.round(Date.now() - seen.mtimeMs)} ms old` : ''}; it is broken at once when its owner is a ` +
            `process of this host that is gone, otherwise after ${staleMs} ms. Remove it if no import or pull runs`,
          { path, ...(o ? { pid: o.pid, host: o.host } : {}) },
        );
      }
      // A lock gone meanwhile is tried again at once (almost); one that still cannot be read the next time
      // (not a file, no permission) is waited on like a held one, not polled every millisecond until
      // lockWaitMs (120 s by default).
      await new Promise((r) => setTimeout(r, unread === 1 ? 1 : 25 + Math.random() * 50));
    }
  } finally {
    await unlinkQuiet(tmp);
  }
  const held = async () => (await readLock(path))?.owner?.token === token;
  return {
    held,
    release: async () => {
      // A waiter breaking a lock it judged stale may have this live one aside for a moment (breakLock), and
      // links it back: seen missing, it is looked for there and waited for, else it came back held by
      // nobody and kept every update out until it was staleLockMs old (its owner's pid being alive).
      const until = performance.now() + TRANSIT_WAIT_MS;
      for (;;) {
        const seen = await readLock(path);
        if (seen || !(await asideWith(dir, token)) || performance.now() > until) {
          if (seen ? seen.owner?.token === token : await held()) await unlink(path).catch(() => {});
          return;
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    },
  };
}

/** How long a release waits for its lock to come back from a breaker's aside name (breakLock: a few file operations). */
const TRANSIT_WAIT_MS = 2_000;

/** Whether a breaker holds the lock with `token` aside (`index.lock.<12 hex>.breaking`, breakLock). */
async function asideWith(dir: string, token: string): Promise<boolean> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names)
    if (
      /^index\.lock\.[0-9a-f]{12}\.breaking$/.test(name) &&
      (await readLock(join(dir, name)))?.owner?.token === token
    )
      return true;
  return false;
}

/** Errors of `link` that say the file system has no hard links (then the lock is created exclusively and written). */
const NO_LINK = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EINVAL']);

/** Creates `path` holding `body` (`tmp` already does) unless it exists: true when created, false on EEXIST. */
async function createLock(path: string, tmp: string, body: string): Promise<boolean> {
  try {
    await link(tmp, path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (code === 'EEXIST') return false;
    if (!NO_LINK.has(code)) throw storeWriteFailed(path, e, 'locking the model index');
  }
  try {
    await writeFile(path, body, { encoding: 'utf8', flag: 'wx' });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    await unlink(path).catch(() => {});
    throw storeWriteFailed(path, e, 'locking the model index');
  }
}

/**
 * Reads the index, lets `change` modify it and writes it back, with no other update in between: queued
 * behind this process's other updates, and holding `index.lock` (lockIndex) against other processes. Two
 * imports that each read the index first and wrote it later both said "added" while the index kept only
 * one of them. Should the lock have been broken meanwhile (its holder taken for dead), the new index is not
 * put in place and the update runs again under a new lock.
 */
async function updateIndex(
  home: string,
  change: (index: StoreIndex) => void,
  opts: IndexLockOptions = {},
): Promise<void> {
  const dir = modelsDir(home);
  const run = async () => {
    await mkdir(dir, { recursive: true });
    for (let attempt = 1; ; attempt++) {
      const lock = await lockIndex(home, opts);
      try {
        const index = await readIndex(home);
        change(index);
        if (await writeIndex(home, index, lock.held)) return;
      } finally {
        await lock.release();
      }
      if (attempt >= 3)
        throw new DropbearError(
          'MODEL_STORE_BUSY',
          `the model index lock ${join(dir, 'index.lock')} was taken from this process ${attempt} times ` +
            'while it updated the index (another process took it for stale); nothing was written',
          { path: join(dir, 'index.lock') },
        );
    }
  };
  const before = indexQueues.get(dir) ?? Promise.resolve();
  const mine = before.then(run, run);
  indexQueues.set(dir, mine);
  try {
    await mine;
  } finally {
    if (indexQueues.get(dir) === mine) indexQueues.delete(dir);
  }
}

/** SHA-256 of a file, read as a stream. */
export async function sha256File(path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    for await (const chunk of createReadStream(path)) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
  } catch (e) {
    throw new DropbearError('MODEL_UNREADABLE', `cannot read ${path}: ${(e as Error).message}`);
  }
  return { sha256: hash.digest('hex'), bytes };
}

/**
 * The check a node runs before it starts: the file at `path` must hash to `expectedSha256` (the digest the
 * model store's index or the catalog names it by). Returns the digest; throws MODEL_DIGEST_MISMATCH naming
 * both digests otherwise. (Its message said "the genesis names that model": no caller passes the genesis's
 * digest, and it sent the operator of a node whose stored file had been replaced to the group's files.)
 */
export async function requireDigest(path: string, expectedSha256: string): Promise<string> {
  const expected = expectedSha256.toLowerCase();
  const { sha256 } = await sha256File(path);
  if (sha256 !== expected) {
    throw new DropbearError(
      'MODEL_DIGEST_MISMATCH',
      `${path} has sha256 ${sha256}, but ${expected} is required (the digest the model was stored or ` +
        'catalogued under: its bytes changed, or it was replaced); refusing to use it — import the right file ' +
        'again (`npx dropbear models import FILE` repairs the stored copy) or pull it (`npx dropbear models pull NAME`)',
      { path, expected, actual: sha256 },
    );
  }
  return sha256;
}

/** Re-hashes a stored model (by name or digest) and checks it against its digest. */
export async function verifyStoredModel(
  nameOrDigest: string,
  home: string = defaultHome(),
): Promise<ResolvedModel> {
  const r = await resolveModel(nameOrDigest, home);
  await requireDigest(r.path, r.sha256);
  return r;
}

function dtypeOf(type: string, what: string, file: string): TensorDtype {
  if (type === 'float32' || type === 'float16') return type;
  throw new DropbearError(
    'MODEL_UNSUPPORTED',
    `${file}: the ${what} has type ${type}; only float32 and float16 tensors are supported`,
  );
}

function tensorOf(meta: unknown, what: string, file: string): TensorSpec {
  const m = meta as { name: string; isTensor: boolean; type?: string; shape?: readonly (number | string)[] };
  if (!m.isTensor || m.type === undefined || m.shape === undefined) {
    throw new DropbearError('MODEL_UNSUPPORTED', `${file}: the ${what} ${m.name} is not a tensor`);
  }
  return {
    name: m.name,
    dtype: dtypeOf(m.type, `${what} ${m.name}`, file),
    // A symbolic dimension (a string such as "batch_size") or -1 accepts any size.
    shape: m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : null)),
  };
}

/** Opens a model with onnxruntime-node and derives a spec: its one input and first output, no image path. */
export async function deriveSpec(
  path: string,
  name: string,
  sha256: string,
  bytes: number,
  displayPath: string = path,
): Promise<ModelSpec> {
  const ort = await import('onnxruntime-node');
  let session: Awaited<ReturnType<typeof ort.InferenceSession.create>>;
  try {
    session = await ort.InferenceSession.create(path);
  } catch (e) {
    throw new DropbearError(
      'MODEL_INVALID',
      // onnxruntime's message names the file it opened: an import's temp file in the store, not the user's.
      `${displayPath} does not load as an ONNX model in onnxruntime-node: ${(e as Error).message.split(path).join(displayPath)}`,
    );
  }
  try {
    if (session.inputNames.length !== 1) {
      throw new DropbearError(
        'MODEL_UNSUPPORTED',
        `${displayPath} has ${session.inputNames.length} inputs (${session.inputNames.join(', ')}); ` +
          'a model must have exactly one input tensor',
      );
    }
    if (session.outputNames.length < 1) {
      throw new DropbearError('MODEL_UNSUPPORTED', `${displayPath} has no outputs`);
    }
    const input = tensorOf(session.inputMetadata[0], 'input', displayPath);
    const output = tensorOf(session.outputMetadata[0], 'output', displayPath);
    // Only the first (batch) dimension may be left open: a node sizes every input and output from the
    // others, and with one open ([N, C]) took C as 1, cut every input to one value and always answered
    // label 0.
    for (const [what, t] of [
      ['input', input],
      ['output', output],
    ] as const) {
      const open = t.shape.findIndex((d, i) => i > 0 && d === null);
      if (t.shape.length === 0 || open > 0)
        throw new DropbearError(
          'MODEL_UNSUPPORTED',
          `${displayPath}: the ${what} ${t.name} has shape [${t.shape.map((d) => d ?? '?').join(', ')}]; ` +
            'only its first (batch) dimension may be symbolic, every other one must be a fixed size',
        );
    }
    return {
      name,
      sha256,
      bytes,
      input,
      output: { ...output, meaning: 'logits' },
      preprocess: { kind: 'tensor' },
      labels: 'none',
      source: `imported from ${basename(displayPath)} (not in the catalog; spec read from the model)`,
      license: 'unknown',
    };
  } finally {
    await session.release();
  }
}

/**
 * Writes all of `b` at the file's position. A disk that fills part-way through a buffer makes the write
 * short, not an error (only the next one fails with ENOSPC): taken as whole, the last chunk of an import or
 * a pull lost its tail, and the file, hashed from the bytes read rather than those written, was renamed
 * under the digest of the whole model.
 */
async function writeAll(fh: Awaited<ReturnType<typeof open>>, b: Uint8Array): Promise<void> {
  for (let at = 0; at < b.length; ) {
    const { bytesWritten } = await fh.write(b, at, b.length - at);
    if (bytesWritten <= 0) throw Object.assign(new Error('a write stored no bytes'), { code: 'EIO' });
    at += bytesWritten;
  }
}

/** Copies `src` into the store folder under a temp name while hashing it. */
async function copyHashing(
  src: string,
  dir: string,
): Promise<{ tmp: string; sha256: string; bytes: number }> {
  const tmp = tempName(dir, 'import');
  const hash = createHash('sha256');
  let bytes = 0;
  const doing = `copying ${src} into it`;
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(tmp, 'w');
  } catch (e) {
    await unlinkQuiet(tmp);
    throw storeWriteFailed(tmp, e, doing);
  }
  try {
    const before = await stat(src);
    for await (const chunk of createReadStream(src)) {
      const b = chunk as Buffer;
      hash.update(b);
      bytes += b.length;
      // A failed write is the store's (a full disk), not the source's: told apart from read errors here.
      await writeAll(fh, b).catch((e) => {
        throw storeWriteFailed(tmp, e, doing);
      });
    }
    // A file still being written (a copy or a download into the folder that has not finished) was taken as
    // it stood: a prefix that is no model (MODEL_INVALID), or that loads and was stored under the file's
    // name as a model the finished file is not. A size or a time that moved during the copy says so.
    const after = await stat(src);
    if (bytes !== before.size || after.size !== before.size || after.mtimeMs !== before.mtimeMs)
      throw new DropbearError(
        'MODEL_SOURCE_CHANGED',
        `${src} changed while it was copied into the store (${before.size} bytes before, ${after.size} after): ` +
          'is it still being written? Import it again once it is complete',
        { path: src },
      );
    await fh.sync().catch((e) => {
      throw storeWriteFailed(tmp, e, doing);
    });
  } catch (e) {
    await fh.close();
    await unlinkQuiet(tmp);
    if (e instanceof DropbearError) throw e;
    throw new DropbearError('MODEL_UNREADABLE', `cannot copy ${src} into the store: ${(e as Error).message}`);
  }
  await fh.close();
  return { tmp, sha256: hash.digest('hex'), bytes };
}

async function onnxFilesOf(path: string): Promise<string[]> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch {
    throw new DropbearError(
      'MODEL_PATH_NOT_FOUND',
      `${path} does not exist; give an .onnx file or a folder that holds .onnx files`,
    );
  }
  if (st.isFile()) return [path];
  if (!st.isDirectory())
    throw new DropbearError('MODEL_PATH_NOT_FOUND', `${path} is neither a file nor a folder`);
  const files: string[] = [];
  for (const d of await readdir(path, { withFileTypes: true })) {
    if (!d.name.toLowerCase().endsWith('.onnx')) continue;
    const file = join(path, d.name);
    if (d.isFile()) files.push(file);
    else if (d.isSymbolicLink()) {
      // A folder of links to the files (a shared cache, a checkout with the models elsewhere) is a folder of
      // models too: it said "holds no .onnx files" while a link given by itself imported. The copy is
      // of the bytes the link points at; a broken link is an error, not a model silently left out.
      const target = await stat(file).catch(() => undefined);
      if (!target)
        throw new DropbearError(
          'MODEL_PATH_NOT_FOUND',
          `${file} is a symbolic link to nothing; fix or remove it and import the folder again`,
        );
      if (target.isFile()) files.push(file);
    }
  }
  files.sort();
  if (files.length === 0) {
    throw new DropbearError(
      'MODEL_NONE_FOUND',
      `${path} holds no .onnx files (only the folder itself is searched)`,
    );
  }
  return files;
}

/** Failures of the store, not of one imported file: an import of a folder stops at them (importModels). */
const STORE_WIDE = new Set(['MODEL_STORE_WRITE_FAILED', 'MODEL_STORE_UNREADABLE', 'MODEL_STORE_BUSY']);

function entryNameForDigest(index: StoreIndex, sha256: string): string | undefined {
  return Object.keys(index.models).find((n) => index.models[n].sha256 === sha256);
}

/**
 * Imports a model file, or every `*.onnx` in a folder, into the store. A digest found in the catalog takes
 * the catalog's name and spec; any other model is named after its file and its spec is read from the model.
 * Importing the same bytes again changes nothing.
 */
export async function importModels(
  path: string,
  home: string = defaultHome(),
  opts: {
    catalog?: readonly ModelSpec[];
    /**
     * Given: a file of a folder that cannot be imported (not a model, a name clash, changed while copied, ...)
     * is passed here and the other files are still imported. Without it the first such failure is thrown.
     * A failure of the store itself (STORE_WIDE) is thrown either way.
     */
    onFailed?: (file: string, e: DropbearError) => void;
  } & IndexLockOptions = {},
): Promise<ImportedModel[]> {
  const catalog = opts.catalog ?? CATALOG;
  const files = await onnxFilesOf(path);
  await openStore(home);
  const dir = modelsDir(home);
  await mkdir(dir, { recursive: true }).catch((e) => {
    throw storeWriteFailed(dir, e, 'creating its folder');
  });
  const importOne = async (file: string): Promise<ImportedModel> => {
    const index = await readIndex(home);
    const { tmp, sha256, bytes } = await copyHashing(file, dir);
    try {
      if (bytes === 0)
        throw new DropbearError('MODEL_INVALID', `${file} is empty (0 bytes): it is no model`, {
          path: file,
        });
      const final = storedPath(sha256, home);
      const known = entryNameForDigest(index, sha256);
      if (known !== undefined && (await exists(final))) {
        // The stored copy must be these bytes: one that changed on disk is replaced by them (the node
        // refuses it with MODEL_DIGEST_MISMATCH and says to import the right file again).
        const repaired = !(await holds(final, sha256));
        if (repaired) {
          await renameDurably(tmp, final).catch((e) => {
            throw storeWriteFailed(final, e, `storing ${file}`);
          });
        }
        return {
          name: known,
          sha256,
          bytes,
          path: final,
          specFrom: catalog.some((m) => m.sha256 === sha256) ? 'catalog' : 'derived',
          added: false,
          ...(repaired ? { repaired: true as const } : {}),
        };
      }
      const cat = catalog.find((m) => m.sha256 === sha256);
      let spec: ModelSpec;
      if (cat) {
        if (cat.bytes !== bytes) {
          // Same digest, different size cannot happen for a real SHA-256 match; the catalog entry is wrong.
          throw new DropbearError(
            'MODEL_CATALOG_INCONSISTENT',
            `${file} matches catalog entry ${cat.name} by digest but has ${bytes} bytes, not ${cat.bytes}`,
          );
        }
        spec = cat;
      } else {
        const name = basename(file, extname(file));
        // The name keys the store's index (a plain object): "__proto__" would set its prototype.
        if (!MODEL_NAME.test(name))
          throw new DropbearError(
            'MODEL_NAME_INVALID',
            `${file}: a model name is letters, digits, ".", "_" and "-", starting with a letter or digit, ` +
              `not ${JSON.stringify(name)}; rename the file to import it`,
          );
        const clash = catalog.find((m) => m.name === name);
        if (clash) {
          // Most often a copy of that model that is damaged or cut short (a download that stopped): renaming
          // it would import the broken bytes under another name.
          const getAgain = clash.url
            ? `get it again (\`npx dropbear models pull ${name}\`, or copy it again)`
            : 'copy it again from a machine that has it';
          throw new DropbearError(
            'MODEL_NAME_CONFLICT',
            `${file} is named like the catalog model ${name} but its sha256 ${sha256} differs from the catalog's ` +
              `${clash.sha256} (it has ${bytes} bytes, the catalog's file has ${clash.bytes}); it is not that ` +
              `model. If it should be (a copy or download that was damaged or cut short), ${getAgain}; ` +
              'if it is another model, rename the file to import it under another name',
          );
        }
        const taken = Object.hasOwn(index.models, name) ? index.models[name] : undefined;
        if (taken && taken.sha256 !== sha256) {
          throw new DropbearError(
            'MODEL_NAME_CONFLICT',
            `the store already has a different model named ${name} (sha256 ${taken.sha256}); ` +
              `rename ${file} to import it under another name`,
          );
        }
        spec = await deriveSpec(tmp, name, sha256, bytes, file);
      }
      if (await holds(final, sha256)) await unlinkQuiet(tmp);
      else {
        await renameDurably(tmp, final).catch((e) => {
          throw storeWriteFailed(final, e, `storing ${file}`);
        });
      }
      const name = known ?? spec.name;
      const entry = { sha256, bytes, spec, importedAt: new Date().toISOString() };
      await updateIndex(
        home,
        (fresh) => {
          // Checked again under the lock: another import may have taken the name since `index` was read
          // (two imports at once of different files named alike both said "added", the index kept the last).
          const holder = Object.hasOwn(fresh.models, name) ? fresh.models[name] : undefined;
          if (holder && holder.sha256 !== sha256)
            throw new DropbearError(
              'MODEL_NAME_CONFLICT',
              `the store already has a different model named ${name} (sha256 ${holder.sha256}); ` +
                `rename ${file} to import it under another name`,
            );
          fresh.models[name] = entry;
        },
        opts,
      );
      index.models[name] = entry;
      return { name, sha256, bytes, path: final, specFrom: cat ? 'catalog' : 'derived', added: true };
    } finally {
      await unlinkQuiet(tmp);
    }
  };
  const out: ImportedModel[] = [];
  for (const file of files) {
    try {
      out.push(await importOne(file));
    } catch (e) {
      // A file that is no model, or that clashes, is that file's failure: the others are still imported. A
      // failure of the store itself (disk full, a damaged index, a held lock) would be every file's.
      if (!opts.onFailed || !(e instanceof DropbearError) || STORE_WIDE.has(e.code)) throw e;
      opts.onFailed(file, e);
    }
  }
  return out;
}

/** `float32[N,3,224,224]` */
export function formatInput(t: TensorSpec): string {
  return `${t.dtype}[${t.shape.map((d) => (d === null ? 'N' : String(d))).join(',')}]`;
}

const nums = (xs: readonly number[]) => `[${xs.join(',')}]`;

/** One line on how an image becomes the input tensor. */
export function formatPreprocess(p: Preprocess): string {
  switch (p.kind) {
    case 'tensor':
      return 'tensor (client sends the input)';
    case 'grey':
      return `grey ${p.size}x${p.size}, p/255`;
    case 'image': {
      const scaled = p.scale === 1 ? 'p' : p.scale === 1 / 255 ? 'p/255' : `p*${p.scale}`;
      const noMean = p.mean.every((m) => m === 0);
      const noStd = p.std.every((s) => s === 1);
      let value: string;
      if (noMean && noStd) value = p.scale === 1 ? 'raw 0..255' : scaled;
      else if (noStd) value = `${scaled}-${nums(p.mean)}`;
      else value = `(${scaled}-${nums(p.mean)})/${nums(p.std)}`;
      return `${p.channels} resize ${p.resize} crop ${p.size}, ${value}`;
    }
  }
}

/**
 * What is wrong with a stored model's file, if anything: a stat and an open (cheap), and with `verify` a
 * re-hash. Never throws: one bad file is one row's problem, not the listing's.
 */
async function storedFileProblem(path: string, e: IndexEntry, verify: boolean): Promise<string | undefined> {
  const why = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (err) {
    return why(err) === 'ENOENT'
      ? `its file ${path} is missing`
      : `its file ${path} cannot be read (${why(err)})`;
  }
  if (!st.isFile()) return `${path} is not a file`;
  if (st.size !== e.bytes)
    return `its file has ${st.size} bytes on disk, not ${e.bytes} (cut short or replaced): ${path}`;
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    return `its file ${path} cannot be read (${why(err)})`;
  } finally {
    await fh?.close().catch(() => {});
  }
  if (!verify) return undefined;
  let got: string;
  try {
    got = (await sha256File(path)).sha256;
  } catch (err) {
    return (err as Error).message;
  }
  return got === e.sha256
    ? undefined
    : `its file does not hash to its digest (it has sha256 ${got}): ${path}`;
}

/**
 * The models of the index, by name, each with its stored file checked (storedFileProblem): a damaged file
 * is named in its row's `problem`, and the rest are listed as usual. (Until 2026-12-07 only the index was
 * read: a model file cut short or deleted was listed like a good one.)
 */
export async function listModels(home: string = defaultHome(), opts: ListOptions = {}): Promise<ModelRow[]> {
  await openStore(home);
  const index = await readIndex(home);
  const rows: ModelRow[] = [];
  for (const [name, e] of Object.entries(index.models)) {
    const path = storedPath(e.sha256, home);
    const problem = await storedFileProblem(path, e, opts.verify === true);
    rows.push({
      name,
      sha256: e.sha256,
      bytes: e.bytes,
      input: formatInput(e.spec.input),
      preprocess: formatPreprocess(e.spec.preprocess),
      labels: e.spec.labels,
      importedAt: e.importedAt,
      path,
      ...(problem ? { problem } : {}),
    });
  }
  return rows.sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * Finds a stored model by name, full digest, or a unique digest prefix of at least 8 hex digits.
 * Does not re-hash the file (see verifyStoredModel / requireDigest).
 */
export async function resolveModel(
  nameOrDigest: string,
  home: string = defaultHome(),
): Promise<ResolvedModel> {
  await openStore(home);
  const index = await readIndex(home);
  let entry: IndexEntry | undefined = Object.hasOwn(index.models, nameOrDigest)
    ? index.models[nameOrDigest]
    : undefined;
  if (!entry && /^[0-9a-fA-F]{8,64}$/.test(nameOrDigest)) {
    const q = nameOrDigest.toLowerCase();
    const hits = Object.values(index.models).filter((e) => e.sha256.startsWith(q));
    const digests = new Set(hits.map((e) => e.sha256));
    if (digests.size > 1) {
      throw new DropbearError(
        'MODEL_AMBIGUOUS',
        `digest prefix ${nameOrDigest} matches ${digests.size} models`,
      );
    }
    entry = hits[0];
  }
  const where = modelsDir(home);
  if (!entry) {
    throw new DropbearError(
      'MODEL_NOT_FOUND',
      `no model ${nameOrDigest} in the store ${where}; add it with \`npx dropbear models import DIR\` ` +
        `or \`npx dropbear models pull NAME\` (see \`npx dropbear models list\`)`,
    );
  }
  const path = storedPath(entry.sha256, home);
  if (!(await exists(path))) {
    throw new DropbearError(
      'MODEL_NOT_FOUND',
      `the index names ${nameOrDigest} (sha256 ${entry.sha256}) but ${path} is missing; ` +
        'import or pull it again (`npx dropbear models import DIR` / `npx dropbear models pull NAME`)',
    );
  }
  return { path, spec: entry.spec, sha256: entry.sha256 };
}

function downloadUrl(spec: ModelSpec, opts: PullOptions): string {
  if (opts.urlOverride) return opts.urlOverride;
  const url = spec.url!;
  const base = opts.baseUrl ?? process.env.DROPBEAR_CATALOG_BASE_URL;
  if (!base) return url;
  const file = new URL(url).pathname.split('/').pop()!;
  // A base that is not a URL threw the parser's bare TypeError ("Invalid URL"), with no code and no word of
  // where it came from, and `models pull` stopped before the other names.
  try {
    return new URL(file, base.endsWith('/') ? base : `${base}/`).toString();
  } catch {
    throw new DropbearError(
      'CATALOG_URL_INVALID',
      `DROPBEAR_CATALOG_BASE_URL ${JSON.stringify(base)} is not a URL; give the mirror's address, e.g. ` +
        'https://example.org/models/ (each file is fetched from <base>/<file name>), or unset it',
    );
  }
}

/**
 * Downloads a catalog model into the store, streaming into a temp file while hashing; a download whose
 * SHA-256 differs from the catalog is refused and deleted. A model already in the store is not downloaded.
 */
export async function pullModel(
  name: string,
  home: string = defaultHome(),
  opts: PullOptions = {},
): Promise<PullResult> {
  const catalog = opts.catalog ?? CATALOG;
  const spec = catalog.find((m) => m.name === name);
  if (!spec) {
    throw new DropbearError(
      'MODEL_UNKNOWN',
      `${name} is not in the model catalog; known models: ${catalog.map((m) => m.name).join(', ')}. ` +
        'Other models can be added with `npx dropbear models import PATH`',
    );
  }
  await openStore(home);
  const final = storedPath(spec.sha256, home);
  const index = await readIndex(home);
  const have = Object.hasOwn(index.models, name) ? index.models[name] : undefined;
  // Re-hashed: a stored copy that changed on disk is downloaded again (below), not reported as present.
  if (have && have.sha256 === spec.sha256 && (await holds(final, spec.sha256))) {
    return { name, sha256: spec.sha256, bytes: have.bytes, path: final, downloaded: false };
  }
  if (await exists(final)) {
    // The bytes are there (e.g. index lost): re-check them instead of downloading again.
    const got = await sha256File(final);
    if (got.sha256 === spec.sha256) {
      const entry = { sha256: spec.sha256, bytes: got.bytes, spec, importedAt: new Date().toISOString() };
      await updateIndex(
        home,
        (fresh) => {
          fresh.models[name] = entry;
        },
        opts,
      );
      return { name, sha256: spec.sha256, bytes: got.bytes, path: final, downloaded: false };
    }
    await unlinkQuiet(final);
  }
  if (!spec.url && !opts.urlOverride) {
    throw new DropbearError(
      'MODEL_NO_DOWNLOAD',
      `${name} has no public download: ${spec.source}. Copy the file from a machine that has it and run ` +
        '`npx dropbear models import DIR` (DIR holding the .onnx file)',
    );
  }
  const url = downloadUrl(spec, opts);
  const fetchImpl = opts.fetchImpl ?? fetch;
  const idleMs = opts.idleTimeoutMs ?? 60_000;
  const deadlineMs = opts.deadlineMs ?? downloadDeadlineMs(spec.bytes);
  const abort = new AbortController();
  let idle: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  /** Which limit stopped the download, if one did: no byte for idleMs, or the whole of it past deadlineMs. */
  let timedOut: 'idle' | 'deadline' | undefined;
  const stop = (why: 'idle' | 'deadline') => {
    timedOut ??= why;
    abort.abort();
  };
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(() => stop('idle'), idleMs);
    deadline ??= setTimeout(() => stop('deadline'), deadlineMs);
  };
  const failed = (why: string) =>
    new DropbearError(
      'MODEL_DOWNLOAD_FAILED',
      `downloading ${name} from ${url} failed: ${why}; check the network (or DROPBEAR_CATALOG_BASE_URL) and run ` +
        'the pull again, or import the file from a folder with `npx dropbear models import DIR`',
      {
        url,
        ...(timedOut === 'idle' ? { reason: 'idle', idleTimeoutMs: idleMs } : {}),
        ...(timedOut === 'deadline' ? { reason: 'deadline', deadlineMs } : {}),
      },
    );
  const tooLong = (done: number) =>
    `it did not finish within ${deadlineMs} ms (${done} of ${spec.bytes} bytes had arrived)`;

  const dir = modelsDir(home);
  await mkdir(dir, { recursive: true }).catch((e) => {
    throw storeWriteFailed(dir, e, 'creating its folder');
  });
  const tmp = tempName(dir, `download-${spec.sha256.slice(0, 12)}`);
  const doing = `downloading ${name} from ${url}`;
  /** A local failure: the download is stopped (nothing more to read) and reported as the store's. */
  const local = (e: unknown, path = tmp) => {
    abort.abort();
    return storeWriteFailed(path, e, doing);
  };
  arm();
  try {
    let res: Response;
    try {
      res = await fetchImpl(url, { signal: abort.signal, redirect: 'follow' });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw failed(
        timedOut === 'idle'
          ? `no answer for ${idleMs} ms`
          : timedOut === 'deadline'
            ? tooLong(0)
            : (cause?.code ?? cause?.message ?? (e as Error).message),
      );
    }
    if (!res.ok || !res.body) {
      throw failed(`HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
    }
    // The length the server declares for the bytes as sent: not the file's size when they come compressed.
    const encoding = res.headers.get('content-encoding');
    const lengthText = res.headers.get('content-length');
    const declared =
      lengthText !== null && (!encoding || encoding === 'identity') ? Number(lengthText) : Number.NaN;
    // A server that announces another size than the catalog's serves another file: refused before any of it
    // is read (a 10x Content-Length was read up to the catalog size, its progress bar showing 10x).
    if (Number.isFinite(declared) && declared !== spec.bytes) {
      abort.abort();
      throw new DropbearError(
        'MODEL_DIGEST_MISMATCH',
        `refused ${name} from ${url}: the server announces ${declared} bytes, the catalog's file (sha256 ` +
          `${spec.sha256}) has ${spec.bytes}; nothing was downloaded`,
        { url, expected: spec.sha256 },
      );
    }
    // Progress counts against the catalog's size: only a body of exactly that size can be accepted.
    const total = spec.bytes;
    const hash = createHash('sha256');
    let done = 0;
    const fh = await open(tmp, 'w').catch((e) => {
      throw local(e);
    });
    try {
      opts.onProgress?.(0, total);
      try {
        for await (const chunk of res.body) {
          arm();
          const b = chunk as Uint8Array;
          done += b.length;
          if (done > spec.bytes) {
            abort.abort();
            throw new DropbearError(
              'MODEL_DIGEST_MISMATCH',
              `refused ${name} from ${url}: more than the catalog's ${spec.bytes} bytes arrived, so it cannot ` +
                `have sha256 ${spec.sha256}`,
              { url, expected: spec.sha256 },
            );
          }
          hash.update(b);
          // A write that fails (ENOSPC, EIO, ...) is this machine's problem, not the connection's.
          await writeAll(fh, b).catch((e) => {
            throw local(e);
          });
          opts.onProgress?.(done, total);
        }
      } catch (e) {
        if (e instanceof DropbearError) throw e;
        throw failed(
          timedOut === 'idle'
            ? `no data for ${idleMs} ms`
            : timedOut === 'deadline'
              ? tooLong(done)
              : `the connection broke after ${done} bytes`,
        );
      }
      // The body is all here: neither limit applies to syncing, renaming and indexing it.
      clearTimeout(idle);
      clearTimeout(deadline);
      await fh.sync().catch((e) => {
        throw local(e);
      });
    } finally {
      await fh.close();
    }
    // A body that ends short without a declared length is a cut connection as often as another file: a
    // server that closes after half (HTTP/1.0, `Connection: close`) ends it cleanly. It was refused as
    // MODEL_DIGEST_MISMATCH, which tells the operator the mirror serves wrong bytes instead of to try again.
    // (A declared length is the catalog's here, and a body shorter than it breaks the connection above.)
    if (done < spec.bytes) {
      throw failed(`the download ended after ${done} of the catalog's ${spec.bytes} bytes`);
    }
    const sha256 = hash.digest('hex');
    if (sha256 !== spec.sha256) {
      throw new DropbearError(
        'MODEL_DIGEST_MISMATCH',
        `refused ${name} from ${url}: the download has sha256 ${sha256} (${done} bytes), the catalog requires ` +
          `${spec.sha256} (${spec.bytes} bytes); the file was deleted`,
        { url, expected: spec.sha256, actual: sha256 },
      );
    }
    await renameDurably(tmp, final).catch((e) => {
      throw local(e, final);
    });
    const entry = { sha256, bytes: done, spec, importedAt: new Date().toISOString() };
    await updateIndex(
      home,
      (fresh) => {
        fresh.models[name] = entry;
      },
      opts,
    );
    return { name, sha256, bytes: done, path: final, downloaded: true, url };
  } finally {
    clearTimeout(idle);
    clearTimeout(deadline);
    await unlinkQuiet(tmp);
  }
}
