/**
 * The model index lock while a waiter that judged an older lock stale breaks it (breakLock): it moves
 * whatever stands at `index.lock` aside, and links it back when that is a live holder's lock. A holder that
 * releases in that moment finds no lock at the path. Until this test it then did nothing, and the waiter
 * put its lock back: held by nobody, it kept every import and pull out for STALE_LOCK_MS (60 s), its owner's
 * pid being alive. The interleaving is staged: node:fs/promises is wrapped so that the breaker stops before
 * its rename and before its link back.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { lockIndex, modelsDir } from '../../src/inference/store.ts';

/** Set by the test: awaited before a rename or link of the store's (the real call follows). */
const hooks = vi.hoisted(() => ({
  rename: null as ((from: string, to: string) => Promise<void>) | null,
  link: null as ((from: string, to: string) => Promise<void>) | null,
}));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const rename = (async (from: string, to: string) => {
    await hooks.rename?.(String(from), String(to));
    return real.rename(from, to);
  }) as typeof real.rename;
  const link = (async (from: string, to: string) => {
    await hooks.link?.(String(from), String(to));
    return real.link(from, to);
  }) as typeof real.link;
  return { ...real, rename, link, default: { ...real, rename, link } };
});

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'dropbear-store-transit-'));
});
afterAll(() => {
  hooks.rename = null;
  hooks.link = null;
  rmSync(tmp, { recursive: true, force: true });
});

/** A promise and its resolver. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

describe('a holder releasing while a breaker has its lock aside', () => {
  it('the lock is removed once it is back: nobody is kept out by a lock nobody holds', async () => {
    const home = join(tmp, 'home');
    mkdirSync(modelsDir(home), { recursive: true });
    const lock = join(modelsDir(home), 'index.lock');
    // An empty lock of an older version, long stale: both waiters below judge it breakable.
    writeFileSync(lock, '');
    const old = (Date.now() - 120_000) / 1000;
    utimesSync(lock, old, old);

    // Waiter B judges the stale lock and stops right before moving index.lock aside.
    const bAtRename = gate();
    const bGoRename = gate();
    let first = true;
    hooks.rename = async (_from, to) => {
      if (!to.endsWith('.breaking') || !first) return;
      first = false;
      bAtRename.open();
      await bGoRename.promise;
    };
    const b = lockIndex(home, { lockWaitMs: 1_500 });
    b.catch(() => {});
    await bAtRename.promise;

    // Meanwhile A breaks the same stale lock and takes index.lock.
    const a = await lockIndex(home);
    expect(await a.held()).toBe(true);

    // B goes on: it moves A's live lock aside, sees it is not the one it judged, and stops before linking
    // it back.
    const bAtLink = gate();
    const bGoLink = gate();
    hooks.link = async (from) => {
      if (!from.endsWith('.breaking')) return;
      bAtLink.open();
      await bGoLink.promise;
    };
    bGoRename.open();
    await bAtLink.promise;
    expect(existsSync(lock)).toBe(false);

    // A releases now, its lock aside; B puts it back a moment later.
    const released = a.release();
    await new Promise((r) => setTimeout(r, 50));
    bGoLink.open();
    await released;
    hooks.link = null;
    // B is done with it once its aside name is gone (linked back, then unlinked).
    while (readdirSync(modelsDir(home)).some((f) => f.endsWith('.breaking')))
      await new Promise((r) => setTimeout(r, 5));

    // A released: its lock must not stand. Before the fix it did, and B (as any import or pull) waited for
    // it until MODEL_STORE_BUSY (STALE_LOCK_MS by default, lockWaitMs here).
    expect(existsSync(lock)).toBe(false);
    const got = await b;
    expect(await got.held()).toBe(true);
    await got.release();
    expect(existsSync(lock)).toBe(false);
  });
});

describe('a lock path that cannot be read as a lock', () => {
  it('is waited on like a held lock, not polled every millisecond, and MODEL_STORE_BUSY says it cannot be read', async () => {
    const home = join(tmp, 'unreadable');
    mkdirSync(modelsDir(home), { recursive: true });
    // A folder where the lock file goes: every exclusive create fails, and it reads as no lock at all.
    mkdirSync(join(modelsDir(home), 'index.lock'));
    let tries = 0;
    hooks.link = async (_from, to) => {
      if (to.endsWith('index.lock')) tries++;
    };
    try {
      const e = await lockIndex(home, { lockWaitMs: 500 }).catch((x: unknown) => x);
      expect((e as { code?: string }).code).toBe('MODEL_STORE_BUSY');
      expect((e as Error).message).toContain('cannot be read as a lock file');
      // At 25–75 ms between tries: ~10 in 500 ms. Polled every millisecond it was well over a hundred.
      expect(tries).toBeLessThan(40);
    } finally {
      hooks.link = null;
    }
  });
});
