/**
 * A pull against a server that trickles: one byte now and then, always inside the idle timeout, so the
 * download never went idle and never ended (a byte every 59 s against the 60 s default). A real HTTP server
 * on 127.0.0.1; the deadline and idle timeout are made small.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogByName } from '../../src/inference/catalog.ts';
import { downloadDeadlineMs, pullModel, readIndex } from '../../src/inference/store.ts';
import { failsWith, serve, strays } from './store-fixtures.ts';

const MNIST = catalogByName('mnist-winml')!;

let tmp: string;
let n = 0;
const freshHome = () => join(tmp, `home${n++}`);

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'dropbear-store-deadline-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** A server that announces MNIST's size and then sends one byte every `everyMs`, or holds back its headers. */
async function trickle(everyMs: number, headers = true) {
  let sent = 0;
  const timers = new Set<NodeJS.Timeout>();
  const server = await serve((_req, res) => {
    if (!headers) return; // never answers
    res.writeHead(200, { 'content-length': MNIST.bytes });
    res.flushHeaders();
    const t = setInterval(() => {
      res.write(Buffer.from([0]));
      sent++;
    }, everyMs);
    timers.add(t);
    res.once('close', () => clearInterval(t));
  });
  return {
    ...server,
    sent: () => sent,
    close: async () => {
      for (const t of timers) clearInterval(t);
      await server.close();
    },
  };
}

describe('a pull has an overall deadline', () => {
  it('a server trickling a byte inside every idle timeout is MODEL_DOWNLOAD_FAILED at the deadline, nothing left behind', async () => {
    const slow = await trickle(20);
    try {
      const h = freshHome();
      const t0 = Date.now();
      const e = await failsWith(
        pullModel('mnist-winml', h, { baseUrl: slow.base, idleTimeoutMs: 1_000, deadlineMs: 800 }),
        'MODEL_DOWNLOAD_FAILED',
      );
      const took = Date.now() - t0;
      expect(slow.sent()).toBeGreaterThan(5); // it was sending, never idle for 1 s
      expect(took).toBeGreaterThanOrEqual(700);
      expect(took).toBeLessThan(4_000);
      expect(e.message).toContain('did not finish within 800 ms');
      expect(e.details).toMatchObject({ reason: 'deadline', deadlineMs: 800 });
      expect(strays(h)).toEqual([]);
      expect((await readIndex(h)).models).toEqual({});
    } finally {
      await slow.close();
    }
  }, 10_000);

  it('the deadline also bounds the wait for an answer', async () => {
    const mute = await trickle(20, false);
    try {
      const h = freshHome();
      const e = await failsWith(
        pullModel('mnist-winml', h, { baseUrl: mute.base, idleTimeoutMs: 5_000, deadlineMs: 300 }),
        'MODEL_DOWNLOAD_FAILED',
      );
      expect(e.details).toMatchObject({ reason: 'deadline' });
      expect(strays(h)).toEqual([]);
    } finally {
      await mute.close();
    }
  }, 10_000);

  it('the idle timeout is still its own reason', async () => {
    const slow = await trickle(2_000);
    try {
      const h = freshHome();
      const e = await failsWith(
        pullModel('mnist-winml', h, { baseUrl: slow.base, idleTimeoutMs: 300, deadlineMs: 5_000 }),
        'MODEL_DOWNLOAD_FAILED',
      );
      expect(e.message).toContain('no data for 300 ms');
      expect(e.details).toMatchObject({ reason: 'idle' });
      expect(strays(h)).toEqual([]);
    } finally {
      await slow.close();
    }
  }, 10_000);

  it('the default deadline: 10 minutes at least, else the time at 50 kB/s', () => {
    expect(downloadDeadlineMs(MNIST.bytes)).toBe(10 * 60_000);
    expect(downloadDeadlineMs(100_000_000)).toBe(2_000_000);
  });
});
