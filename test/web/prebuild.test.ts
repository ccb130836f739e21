/**
 * A node builds the dashboard's script when it starts serving, not on the first GET /dashboard/app.js: the
 * build is logged without anyone asking for the script, and the script served afterwards is the same bytes;
 * a script that does not build is logged at start with DASHBOARD_UNAVAILABLE, and a request still gets the
 * 503 with that code. Real node processes (one node of a 2-node group, the other never started), their
 * stdout read line by line; real esbuild.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGroup } from '../../src/cli/group.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';
import { dashboardScript } from '../../src/web/bundle.ts';

const root = mkdtempSync(join(tmpdir(), 'dropbear-prebuild-'));
const config = join(root, 'group', 'node-0.json');
let api: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  const g = await initGroup({ dir: join(root, 'group'), nodes: 2, models: Array(2).fill(STANDIN_MODEL) });
  api = g.nodes[0].api;
});

afterAll(async () => {
  await Promise.all(children.map(stop));
  rmSync(root, { recursive: true, force: true });
});

interface LogLine {
  msg: string;
  code?: string;
  err?: string;
  bytes?: number;
}

/** A node process and its stdout's log lines as they come, parsed. */
function spawnNode(args: string[]): { child: ChildProcess; line: (msg: string) => Promise<LogLine> } {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const lines: LogLine[] = [];
  const waiting: (() => void)[] = [];
  let out = '';
  let buf = '';
  const take = (d: Buffer) => {
    out += String(d);
    buf += String(d);
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      try {
        lines.push(JSON.parse(buf.slice(0, i)));
      } catch {} // (not a log line: `dropbear node` prints one plain line when it serves)
      buf = buf.slice(i + 1);
    }
    for (const w of waiting.splice(0)) w();
  };
  child.stdout?.on('data', take);
  child.stderr?.on('data', (d) => (out += String(d)));
  child.on('exit', () => {
    for (const w of waiting.splice(0)) w();
  });
  // Resolves with the first line with this message; fails when the process ends without it, or when it
  // has not come 30 s after the call (a node that builds only on request never logs it).
  const line = (msg: string) =>
    new Promise<LogLine>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${msg}" line in 30 s:\n${out}`)), 30_000);
      const look = () => {
        const l = lines.find((x) => x.msg === msg);
        if (l) {
          clearTimeout(timer);
          resolve(l);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          clearTimeout(timer);
          reject(new Error(`the node exited without a "${msg}" line:\n${out}`));
        } else waiting.push(look);
      };
      look();
    });
  return { child, line };
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

describe('the dashboard script at node start', () => {
  it('is built once the node serves, with no request for it, and served as the same bytes', async () => {
    // `dropbear node` itself: the dashboard as the CLI wires it in.
    const { child, line } = spawnNode(['bin/dropbear.mjs', 'node', '--config', config]);
    try {
      await line('node started');
      const built = await line('dashboard script built');
      const want = await dashboardScript();
      expect(built.bytes).toBe(want.length);
      const r = await fetch(`${api}/dashboard/app.js`);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
      expect(await r.text()).toBe(want);
    } finally {
      await stop(child); // (the next test starts the same node, on the same ports)
    }
  }, 60_000);

  it('that does not build is logged at start with its code, and a request gets the 503', async () => {
    // The same node with a dashboard whose entry does not exist (bundled by the real esbuild).
    const url = (p: string) => JSON.stringify(pathToFileURL(join(process.cwd(), p)).href);
    const missing = join(root, 'no-such-app.ts');
    const code = `
      import { startNode } from ${url('src/node/run.ts')};
      import { bundleForBrowser } from ${url('src/web/bundle.ts')};
      const node = await startNode(${JSON.stringify(config)}, {
        dashboard: { html: '<p>', script: () => bundleForBrowser(${JSON.stringify(missing)}) },
      });
      process.on('SIGTERM', () => node.stop().then(() => process.exit(0)));
    `;
    const { child, line } = spawnNode(['--import', 'tsx', '--input-type=module', '-e', code]);
    try {
      await line('node started');
      const failed = await line(
        'the dashboard script did not build: GET /dashboard/app.js answers 503 and tries again',
      );
      expect(failed.code).toBe('DASHBOARD_UNAVAILABLE');
      expect(failed.err).toContain('no-such-app.ts');
      const r = await fetch(`${api}/dashboard/app.js`);
      expect(r.status).toBe(503);
      const body = (await r.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('DASHBOARD_UNAVAILABLE');
      expect(body.error.message).toMatch(/^the dashboard script did not build: .*no-such-app\.ts/s);
    } finally {
      await stop(child);
    }
  }, 60_000);
});
