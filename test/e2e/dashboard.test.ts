/**
 * The dashboard (src/web) in real Chromium, served by a real 4-node group (stand-in model, four processes,
 * TCP between them): it shows the group and the node's status, and verifies certificates in the browser
 * with the bundled verifier, giving the same verdict and reason as `verifyCertificate` in Node for real and
 * tampered certificates. Chromium: /usr/bin/chromium (`.ci/run` installs it) or DROPBEAR_CHROMIUM, launched
 * as the benches launch it (bench/lib/chromium.ts). Where there is none the test is skipped with a warning,
 * unless CI or DROPBEAR_REQUIRE_CHROMIUM is set: then it fails.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser, Page, Route } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumMissing, launchChromium } from '../../bench/lib/chromium.ts';
import { verifyCertificate } from '../../src/certificate/index.ts';
import {
  type GroupProcesses,
  initGroup,
  type LoadedGroup,
  loadGroup,
  startGroup,
} from '../../src/cli/group.ts';
import { writeVerifyPage } from '../../src/cli/verify-page.ts';
import { DropbearClient, type InferResult } from '../../src/client/index.ts';
import { STANDIN_MODEL, standInInput } from '../../src/node/standin-backend.ts';
import {
  Certificate,
  Decision,
  Genesis,
  groupIdOf,
  hex,
  type Json,
  type Policy,
  toJson,
} from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { certificateOfOne } from '../support/certificates.ts';

const required = Boolean(process.env.CI || process.env.DROPBEAR_REQUIRE_CHROMIUM);
const missing = chromiumMissing();
const haveChromium = missing === null;
if (!haveChromium && !required) console.warn(`dashboard test skipped: ${missing}`);

describe.skipIf(!haveChromium && !required)('dashboard in Chromium', () => {
  const root = mkdtempSync(join(tmpdir(), 'dropbear-dashboard-'));
  let g: LoadedGroup;
  let procs: GroupProcesses;
  let browser: Browser;
  let results: InferResult[];
  let groupId: string;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    await initGroup({
      dir: join(root, 'group'),
      nodes: 4,
      models: Array(4).fill(STANDIN_MODEL),
      name: 'dash',
    });
    g = loadGroup(join(root, 'group'));
    groupId = hex(groupIdOf(g.genesis));
    procs = startGroup(g, () => {});
    await procs.ready(60_000);
    const client = new DropbearClient({ genesis: g.genesis, nodes: g.file.nodes, key: g.clientKey() });
    results = await Promise.all([0, 1, 2].map((i) => client.infer(standInInput(i))));
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await procs?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  async function open(query: string): Promise<Page> {
    const page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      // (Chromium logs every HTTP error answer as one; the 404 below is asked for.)
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(m.text());
    });
    await page.goto(`${g.file.nodes[1].api}/dashboard${query}`);
    await page.waitForSelector('body[data-ready]');
    return page;
  }

  /** Empties the verdict line, so that the next verdict can be waited for. */
  function clearVerdict(page: Page): Promise<void> {
    return page.evaluate(() => {
      const v = document.getElementById('verdict');
      if (v) v.textContent = '';
    });
  }

  async function verdictOf(page: Page, json: string): Promise<[string, string]> {
    await clearVerdict(page);
    await page.fill('#cert-json', json);
    await page.click('#verify-btn');
    await page.waitForFunction(
      () => !/^(|verifying…)$/.test(document.getElementById('verdict')?.textContent ?? ''),
    );
    return [(await page.textContent('#verdict')) ?? '', (await page.textContent('#verdict-detail')) ?? ''];
  }

  it('serves the page and its script with a content security policy; the script is one module', async () => {
    const api = g.file.nodes[0].api;
    const page = await fetch(`${api}/dashboard`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    // The page's verifier worker runs the same script, from this node only.
    expect(page.headers.get('content-security-policy')).toContain("worker-src 'self';");
    const js = await fetch(`${api}/dashboard/app.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect((await js.text()).length).toBeGreaterThan(10_000);
  });

  it('shows the group, pinned, with its models, and the node status', async () => {
    const page = await open(`?group=${groupId}`);
    expect(await page.getAttribute('body', 'data-ready')).toBe('true');
    expect(await page.textContent('#group-id')).toBe(groupId);
    expect(await page.textContent('#group-name')).toBe('dash');
    expect(await page.getAttribute('#pin', 'class')).toBe('ok');
    expect(await page.locator('#models tr').count()).toBe(4);
    await page.waitForFunction(() => Number(document.getElementById('executed')?.textContent) >= 1);
    expect(await page.textContent('#node-id')).toBe('1');
    // The owners' fees and earnings, as the node's ledger has them (GET /v1/owners).
    await page.waitForFunction(() => document.querySelectorAll('#owners tr').length === 4);
    const owners = await page.$$eval('#owners tr', (rows) =>
      rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)),
    );
    const api = (await (await fetch(`${g.file.nodes[1].api}/v1/owners`)).json()) as {
      owners: { node: number; owner: string; fee: number; counted: number; earned: number }[];
    };
    expect(owners.map((r) => r.slice(0, 3))).toEqual(
      api.owners.map((o) => [String(o.node), o.owner, String(o.fee)]),
    );
    for (const r of owners) expect(Number(r[4])).toBe(Number(r[3])); // fee 1: earned = votes counted
    // Nothing withdrawn: each owner may withdraw all it earned.
    for (const r of owners) expect([r[5], r[6]]).toEqual(['0', r[4]]);
    expect(owners.some((r) => Number(r[4]) > 0)).toBe(true);
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it("fetches a certificate from the node and verifies it in the browser; tampered ones get Node's reason", async () => {
    const page = await open(`?group=${groupId}`);
    await page.fill('#request-id', results[0].requestId);
    await page.click('#fetch-btn');
    await page.waitForFunction(
      () =>
        !/^(nothing checked yet|fetching…|verifying…)$/.test(
          document.getElementById('verdict')?.textContent ?? '',
        ),
    );
    expect(await page.textContent('#verdict')).toBe('VALID');
    expect(await page.textContent('#verdict-detail')).toContain(results[0].requestId);
    // What the quorum agreed on: the answer, and which model gave each counted vote.
    const n0 = g.genesis.nodes[0];
    expect(await page.textContent('#verdict-detail')).toContain(
      `node 0: ${hex(n0.modelDigest)} (its genesis model, ${n0.modelName})`,
    );

    // An id the node holds no certificate for, and one that is not an id: said so, nothing checked.
    for (const [id, says] of [
      ['00'.repeat(32), 'CERTIFICATE_NOT_FOUND'],
      ['xyz', 'a request id is 64 hex characters'],
    ]) {
      await clearVerdict(page);
      await page.fill('#request-id', id);
      await page.click('#fetch-btn');
      await page.waitForFunction(
        () => !/^(|fetching…)$/.test(document.getElementById('verdict')?.textContent ?? ''),
      );
      expect(await page.textContent('#verdict')).toBe('not checked');
      expect(await page.textContent('#verdict-detail')).toContain(says);
    }

    const good = toJson(Certificate, results[1].certificate) as Record<string, unknown>;
    const [v, detail] = await verdictOf(page, JSON.stringify(good));
    expect(v).toBe('VALID');
    expect(detail).toContain(results[1].requestId);

    const flip = (s: string, at: number) => s.slice(0, at) + (s[at] === 'A' ? 'B' : 'A') + s.slice(at + 1);
    const variants: Record<string, unknown> = {
      'receipt signature': {
        ...good,
        signatures: (good.signatures as { signature: string }[]).map((s, i) =>
          i === 0 ? { ...s, signature: flip(s.signature, 20) } : s,
        ),
      },
      'receipt batch number': { ...good, receipt: { ...(good.receipt as object), seq: 999 } },
      'leaf index': { ...good, leafIndex: (good.leafIndex as number) + 1 },
      'outcome fee': { ...good, outcome: { ...(good.outcome as object), fee: 12345 } },
      'an unknown field': { ...good, extra: 1 },
      // Another request's outcome under this certificate's receipt and path: wrong whatever batch it was in.
      'another request': {
        ...good,
        outcome: (toJson(Certificate, results[2].certificate) as { outcome: unknown }).outcome,
      },
    };
    // A certificate of a batch of several with its path dropped (a batch of one has an empty path, which is
    // right: the CI's loaded machine once cut results[2] alone into its batch, and that variant verified).
    const inBatch = results.slice(2).find((r) => r.certificate.path.length > 0);
    if (inBatch)
      variants['another request of the batch'] = toJson(Certificate, { ...inBatch.certificate, path: [] });
    for (const [what, json] of Object.entries(variants)) {
      const node = verifyCertificate(json, g.genesis);
      expect(node.ok, what).toBe(false);
      if (node.ok) continue;
      const [verdict] = await verdictOf(page, JSON.stringify(json));
      expect(verdict, what).toBe(`INVALID: ${node.reason}`);
    }
    // A genuine certificate, but for another request than the one it is offered for.
    const [other, why] = await verdictOf(
      page,
      JSON.stringify({ requestId: results[0].requestId, certificate: good }),
    );
    expect(other).toBe('INVALID: wrong-request');
    expect(why).toContain(`for request ${results[1].requestId}, not ${results[0].requestId}`);
    const [wrapped] = await verdictOf(
      page,
      JSON.stringify({ requestId: results[1].requestId, certificate: good }),
    );
    expect(wrapped).toBe('VALID');

    const [bad] = await verdictOf(page, '{"version": 2,');
    expect(bad).toBe('INVALID: malformed');
    // A made-up decision, then the genuine one: JSON.parse keeps the last, a person reads the first.
    const text = JSON.stringify(good);
    const twice = text.replace('"outcome":{', '"outcome":{"decision":{"kind":"label","label":999},');
    expect(twice).not.toBe(text);
    const [dup, dupWhy] = await verdictOf(page, twice);
    expect(dup).toBe('INVALID: malformed');
    expect(dupWhy).toContain('"decision" twice in outcome');
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it('refuses a node that answers a request id with the certificate of another request', async () => {
    const page = await open(`?group=${groupId}`);
    // The node as a faulty one would answer: a genuine certificate, of request 1, for request 0.
    const swapped = {
      requestId: results[0].requestId,
      certificate: toJson(Certificate, results[1].certificate),
    };
    await page.route('**/v1/certificates/**', (route) => route.fulfill({ json: swapped }));
    await page.fill('#request-id', results[0].requestId);
    await page.click('#fetch-btn');
    await page.waitForFunction(
      () =>
        !/^(nothing checked yet|fetching…|verifying…)$/.test(
          document.getElementById('verdict')?.textContent ?? '',
        ),
    );
    expect(await page.textContent('#verdict')).toBe('INVALID: wrong-request');
    expect(await page.textContent('#verdict-detail')).toContain(`not ${results[0].requestId}`);
    await page.close();
  });

  it('shows the verdict for the request id asked for last, not for an earlier fetch that answers later', async () => {
    const page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const slow = results[0].requestId;
    // Marks when the page has read the slow answer's body (the page decodes each answer's bytes once, when
    // all have come, src/web/limited.ts): a task queued then runs after what awaited it.
    await page.addInitScript((id: string) => {
      const decode = TextDecoder.prototype.decode;
      TextDecoder.prototype.decode = function (this: TextDecoder, ...a: Parameters<TextDecoder['decode']>) {
        const v = decode.apply(this, a);
        if (v.includes(`"requestId": "${id}"`) || v.includes(`"requestId":"${id}"`))
          setTimeout(() => {
            document.body.dataset.slowRead = 'true';
          });
        return v;
      };
    }, slow);
    await page.goto(`${g.file.nodes[1].api}/dashboard?group=${groupId}`);
    await page.waitForSelector('body[data-ready]');
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    // The node answers the first request id only after the second has been asked for and answered.
    await page.route(`**/v1/certificates/${slow}*`, async (route) => {
      await held;
      await route.continue();
    });
    await page.fill('#request-id', slow);
    await page.click('#fetch-btn');
    await page.waitForFunction(() => document.getElementById('verdict')?.textContent === 'fetching…');
    const other = '00'.repeat(32);
    await page.fill('#request-id', other);
    await page.click('#fetch-btn');
    await page.waitForFunction(() => document.getElementById('verdict')?.textContent === 'not checked');
    release();
    await page.waitForSelector('body[data-slow-read]');
    expect(await page.inputValue('#request-id')).toBe(other);
    expect(await page.textContent('#verdict')).toBe('not checked');
    expect(await page.textContent('#verdict-detail')).toContain('CERTIFICATE_NOT_FOUND');
    expect(await page.inputValue('#cert-json')).not.toContain(slow);
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it('`dropbear verify-page` writes one file that checks certificates in the browser without any node', async () => {
    const out = join(root, 'verify.html');
    const said = execFileSync(process.execPath, [
      'bin/dropbear.mjs',
      'verify-page',
      '--genesis',
      join(g.dir, 'genesis.json'),
      '--out',
      out,
    ]).toString();
    expect(said).toContain(`for group ${groupId}`);
    const page = await browser.newPage();
    const asked: string[] = [];
    page.on('request', (r) => asked.push(r.url()));
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${pathToFileURL(out).href}?group=${groupId}`);
    await page.waitForSelector('body[data-ready]');
    expect(await page.getAttribute('body', 'data-ready')).toBe('true');
    expect(await page.textContent('#group-id')).toBe(groupId);
    expect(await page.getAttribute('#pin', 'class')).toBe('ok');
    expect(await page.locator('#models tr').count()).toBe(4);
    expect(await page.locator('#fetch-btn').count()).toBe(0);
    const good = toJson(Certificate, results[2].certificate) as Record<string, unknown>;
    expect((await verdictOf(page, JSON.stringify(good)))[0]).toBe('VALID');
    const forged = { ...good, outcome: { ...(good.outcome as object), fee: 1 } };
    const node = verifyCertificate(forged, g.genesis);
    expect(node.ok).toBe(false);
    if (!node.ok) expect((await verdictOf(page, JSON.stringify(forged)))[0]).toBe(`INVALID: ${node.reason}`);
    // Nothing but the file itself: the genesis and the verifier are inside it (the verifier's worker runs
    // the page's own script, from a blob: the page made).
    expect(asked.every((u) => u.startsWith('file:') || u.startsWith('blob:null/'))).toBe(true);
    expect(asked.some((u) => u.startsWith('blob:'))).toBe(true);
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it('`dropbear verify-page` refuses a missing or invalid genesis with a code', () => {
    const run = (genesis: string) =>
      spawnSync(process.execPath, [
        'bin/dropbear.mjs',
        'verify-page',
        '--genesis',
        genesis,
        '--out',
        join(root, 'x.html'),
      ]);
    const missing = run(join(root, 'none.json'));
    expect(missing.status).toBe(2);
    expect(String(missing.stderr)).toContain('FILE_UNREADABLE');
    const bad = join(root, 'bad-genesis.json');
    writeFileSync(bad, JSON.stringify({ version: 1, name: 'x' }));
    const invalid = run(bad);
    expect(invalid.status).toBe(2);
    expect(String(invalid.stderr)).toContain('GENESIS_INVALID');
    expect(existsSync(join(root, 'x.html'))).toBe(false);
  });

  it("does not read a node's answer larger than any honest one (a faulty node's /v1/group)", async () => {
    const page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    // A faulty node's genesis answer that says it is 3 GB: the page refuses it before reading the body.
    await page.route('**/v1/group', (route) =>
      route.fulfill({
        status: 200,
        headers: { 'content-type': 'application/json', 'content-length': String(3e9) },
        body: '{}',
      }),
    );
    await page.clock.install();
    await page.goto(`${g.file.nodes[1].api}/dashboard?group=${groupId}`);
    await page.waitForSelector('body[data-ready]');
    // Still shown after the status poll (every 2 s) succeeded: it once emptied the line. (The group is
    // asked for again at that poll, and refused again.)
    await page.clock.runFor(2500);
    await page.waitForFunction(() => document.getElementById('node-id')?.textContent === '1');
    expect(await page.textContent('#status-error')).toMatch(
      /^group: ANSWER_TOO_LARGE: the genesis the node serves \(\/v1\/group\) says it is 3,000,000,000 bytes/,
    );
    await page.close();
  });

  it('says when the node is down, slow or answers garbage, asks again, and recovers when it is back; what a node sends is shown as text', async () => {
    const page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    // The page's timers run when the test moves its clock (a poll every 2 s, a slow answer given up on).
    await page.clock.install();
    const hostile = '<img src=x onerror="window.pwned=1">';
    let node: 'down' | 'garbage' | 'error' | 'slow' | 'catching' | 'up' = 'down';
    const held: Route[] = [];
    await page.route('**/v1/status', async (route) => {
      if (node === 'down') await route.abort('connectionrefused');
      else if (node === 'garbage') await route.fulfill({ contentType: 'text/html', body: hostile });
      else if (node === 'error')
        await route.fulfill({ status: 500, json: { error: { code: hostile, message: hostile } } });
      else if (node === 'slow') held.push(route);
      else if (node === 'catching') {
        const r = await route.fetch();
        await route.fulfill({ response: r, json: { ...(await r.json()), catchingUp: true, behindBy: 42 } });
      } else await route.continue();
    });
    // The genesis fetched while the node is down, then, once back, with a model name of a faulty node's making.
    await page.route('**/v1/group', async (route) => {
      if (node === 'down') return route.abort('connectionrefused');
      const r = await route.fetch();
      const body = (await r.json()) as { models: { genesisModelName: string }[] };
      body.models[0].genesisModelName = hostile;
      await route.fulfill({ response: r, json: body });
    });
    await page.goto(`${g.file.nodes[1].api}/dashboard?group=${groupId}`);
    await page.waitForSelector('body[data-ready]');
    const errorLine = () => page.textContent('#status-error');
    expect(await errorLine()).toMatch(/^group: .*Failed to fetch.* · status: .*Failed to fetch/);
    /** The node as `what` from now on: the page's clock moved on to its next poll, and `says` waited for. */
    const then = async (what: typeof node, ms: number, says: string) => {
      node = what;
      await page.clock.runFor(ms);
      await page.waitForFunction(
        (s) => document.getElementById('status-error')?.textContent?.includes(s),
        says,
      );
    };
    await then('garbage', 2100, 'status: NOT_JSON: the answer to /v1/status is not');
    await then('error', 2100, `status: ${hostile}: ${hostile}`);
    // A node that does not answer: one poll waits at a time, given up on after 5 s, said so. The held poll
    // is waited for in real time before the clock moves on: jumped at once past the 5 s, the page gave it up
    // before Playwright had handed it to the route, and none was seen held (CI, 2026-12-07, once in two runs).
    node = 'slow';
    await page.clock.runFor(2100);
    await expect.poll(() => held.length, { timeout: 10_000 }).toBe(1);
    await then('slow', 5000, 'status: no answer in 5 s');
    expect(held.length).toBe(1);
    node = 'up';
    await page.clock.runFor(2100);
    await page.waitForFunction(() => document.getElementById('group-id')?.textContent !== '…');
    await page.waitForFunction(() => document.getElementById('status-error')?.textContent === '');
    expect(await page.textContent('#group-id')).toBe(groupId);
    expect(await page.getAttribute('body', 'data-ready')).toBe('true');
    expect(await page.textContent('#node-id')).toBe('1');
    // A node fetching batches from its peers says so beside its last executed batch.
    expect(await page.textContent('#executed')).toMatch(/^\d+$/);
    node = 'catching';
    await page.clock.runFor(2100);
    await page.waitForFunction(() =>
      /^\d+ \(catching up: 42 behind\)$/.test(document.getElementById('executed')?.textContent ?? ''),
    );
    node = 'up';
    expect(await page.textContent('#models tr:first-child td:nth-child(2)')).toBe(hostile);
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined();
    // A certificate the node never begins to answer: given up on, said so (it said "fetching…" for good).
    await page.route('**/v1/certificates/**', (route) => {
      held.push(route);
    });
    await page.fill('#request-id', results[0].requestId);
    await page.click('#fetch-btn');
    await page.waitForFunction(() => document.getElementById('verdict')?.textContent === 'fetching…');
    await page.clock.runFor(13_100);
    await page.waitForFunction(() => document.getElementById('verdict')?.textContent === 'not checked');
    expect(await page.textContent('#verdict-detail')).toBe('no answer in 13 s (the node is slow or down)');
    for (const r of held) await r.abort().catch(() => {});
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it('refuses to check anything against a genesis that is not the pinned group', async () => {
    const page = await open(`?group=${'00'.repeat(32)}`);
    expect(await page.getAttribute('#pin', 'class')).toBe('bad');
    expect(await page.textContent('#pin')).toContain('not the pinned');
    const [verdict, detail] = await verdictOf(
      page,
      JSON.stringify(toJson(Certificate, results[0].certificate)),
    );
    expect(verdict).toBe('not checked');
    expect(detail).toContain('not the pinned');
    await page.close();
  });

  it("says under each verdict which genesis it rests on; a genesis file the person chooses replaces the node's", async () => {
    const page = await open('');
    const good = toJson(Certificate, results[0].certificate);
    expect((await verdictOf(page, JSON.stringify(good)))[0]).toBe('VALID');
    expect(await page.textContent('#verdict-basis')).toContain(
      `checked against group ${groupId}, the genesis this node serves, NOT pinned`,
    );
    // Another group's genesis, chosen as a file: the group's certificate is refused, with Node's reason.
    const other = makeGroup(4, 1, 5, { kind: 'top1', minAgree: 3 }).genesis;
    const otherId = hex(groupIdOf(other));
    await page.setInputFiles('#genesis-file', {
      name: 'other.json',
      mimeType: 'application/json',
      buffer: Buffer.from(JSON.stringify(toJson(Genesis, other))),
    });
    await page.waitForFunction((id) => document.getElementById('group-id')?.textContent === id, otherId);
    expect(await page.textContent('#pin')).toContain('the genesis file you chose');
    const node = verifyCertificate(good, other);
    expect(node.ok).toBe(false);
    if (!node.ok) expect((await verdictOf(page, JSON.stringify(good)))[0]).toBe(`INVALID: ${node.reason}`);
    expect(await page.textContent('#verdict-basis')).toBe(
      `checked against group ${otherId}, the genesis file you chose (other.json)`,
    );
    // The group's own genesis file: VALID, resting on that file.
    await page.setInputFiles('#genesis-file', join(g.dir, 'genesis.json'));
    await page.waitForFunction((id) => document.getElementById('group-id')?.textContent === id, groupId);
    expect((await verdictOf(page, JSON.stringify(good)))[0]).toBe('VALID');
    expect(await page.textContent('#verdict-basis')).toBe(
      `checked against group ${groupId}, the genesis file you chose (genesis.json)`,
    );
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it("keeps a genesis file chosen while the node's genesis was still on its way", async () => {
    const page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    // Marks when the page has read the node's genesis (decoded once, when all its bytes have come,
    // src/web/limited.ts): a task queued then runs after what awaited it.
    await page.addInitScript(() => {
      const decode = TextDecoder.prototype.decode;
      TextDecoder.prototype.decode = function (this: TextDecoder, ...a: Parameters<TextDecoder['decode']>) {
        const v = decode.apply(this, a);
        if (v.includes('"treasury"') && v.includes('"balances"'))
          setTimeout(() => {
            document.body.dataset.groupRead = 'true';
          });
        return v;
      };
    });
    await page.route('**/v1/group', async (route) => {
      await held;
      await route.continue();
    });
    await page.goto(`${g.file.nodes[1].api}/dashboard`);
    const other = makeGroup(4, 1, 6, { kind: 'top1', minAgree: 3 }).genesis;
    const otherId = hex(groupIdOf(other));
    await page.setInputFiles('#genesis-file', {
      name: 'mine.json',
      mimeType: 'application/json',
      buffer: Buffer.from(JSON.stringify(toJson(Genesis, other))),
    });
    await page.waitForFunction((id) => document.getElementById('group-id')?.textContent === id, otherId);
    release();
    await page.waitForSelector('body[data-group-read]');
    expect(await page.textContent('#pin')).toBe(
      'certificates are checked against the genesis file you chose',
    );
    const good = toJson(Certificate, results[0].certificate);
    const node = verifyCertificate(good, other);
    expect(node.ok).toBe(false);
    if (!node.ok) expect((await verdictOf(page, JSON.stringify(good)))[0]).toBe(`INVALID: ${node.reason}`);
    expect(await page.textContent('#verdict-basis')).toContain('the genesis file you chose (mine.json)');
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  describe('a large certificate', () => {
    // A 256-node group (the most a genesis holds): its certificates carry 171 receipt signatures. Every vote
    // here is a 1024-value vector, so one certificate is 4.7 MB of JSON: the page's thread was held 1.3 s
    // by the verifier in the click handler (the largest the codec takes, 4096-value vectors, 18.5 MB: 7.3 s),
    // measured in this Chromium on the 2-core review machine, 2026-12-05.
    const policy: Policy = { kind: 'tolerance', minAgree: 86, epsilon: 0 };
    const big = makeGroup(256, 85, 11, policy);

    /** A certificate of request `tag` signed by the big group's first q nodes; `width` values a vote. */
    function bigCertificate(tag: number, width: number): { json: Json; requestId: string; detail: string } {
      const values = Array.from({ length: width }, (_, i) => (i % 2 ? -1 : 1) * (2 ** 52 - 1 - i));
      const { cert, outcome, signers } = certificateOfOne(big.genesis, big.keys, big.client, tag, {
        policy,
        values,
      });
      // The detail the page shows for a valid certificate, worked out here.
      const detail = JSON.stringify(
        {
          requestId: hex(outcome.requestId),
          batch: tag,
          decision: toJson(Decision, outcome.decision),
          votes: 256,
          models: big.genesis.nodes.map(
            (n) => `node ${n.id}: ${hex(n.modelDigest)} (its genesis model, ${n.modelName})`,
          ),
          signers,
        },
        null,
        2,
      );
      return { json: toJson(Certificate, cert), requestId: hex(outcome.requestId), detail };
    }

    const large = bigCertificate(1, 1024);
    let file = '';

    beforeAll(async () => {
      writeFileSync(join(root, 'big-genesis.json'), JSON.stringify(toJson(Genesis, big.genesis)));
      file = join(root, 'big.html');
      await writeVerifyPage(join(root, 'big-genesis.json'), file);
    });

    async function openBig(): Promise<Page> {
      const page = await browser.newPage();
      page.on('pageerror', (e) => pageErrors.push(e.message));
      await page.goto(pathToFileURL(file).href);
      await page.waitForSelector('body[data-ready]');
      expect(await page.getAttribute('body', 'data-ready')).toBe('true');
      // Every verdict the page shows, in order, and whether the page's thread ran while it was verifying.
      await page.evaluate(() => {
        const w = window as unknown as { shown: string[]; ticksWhileVerifying: number };
        w.shown = [];
        w.ticksWhileVerifying = 0;
        const verdict = document.getElementById('verdict') as HTMLElement;
        new MutationObserver(() => {
          w.shown.push(`${verdict.textContent}|${document.getElementById('verdict-detail')?.textContent}`);
        }).observe(verdict, { childList: true, characterData: true, subtree: true });
        setInterval(() => {
          if (verdict.textContent === 'verifying…') w.ticksWhileVerifying++;
        }, 10);
      });
      return page;
    }

    const shown = (page: Page) => page.evaluate(() => (window as unknown as { shown: string[] }).shown);

    it('is verified off the page thread: the page shows that it is verifying and handles input meanwhile; the verdict is unchanged', async () => {
      expect(verifyCertificate(large.json, big.genesis).ok).toBe(true);
      const page = await openBig();
      // A click while the certificate verifies is handled before its verdict comes (on the page's thread,
      // the verifier held it until the verdict was shown: the click came after it). Pasted, checked and
      // clicked from inside the page, one timer turn apart: driven from outside, each step waited for the
      // page to lay out megabytes of text, and the check could end before the click came (CI, 2026-12-05).
      await page.evaluate((text) => {
        const verdict = document.getElementById('verdict') as HTMLElement;
        const other = document.getElementById('group-id') as HTMLElement;
        other.addEventListener('click', () => {
          document.body.dataset.clickedDuring = verdict.textContent ?? '';
        });
        (document.getElementById('cert-json') as HTMLTextAreaElement).value = text;
        (document.getElementById('verify-btn') as HTMLElement).click();
        setTimeout(() => other.click(), 0);
      }, JSON.stringify(large.json));
      await page.waitForFunction(() => document.body.dataset.clickedDuring !== undefined);
      expect(await page.getAttribute('body', 'data-clicked-during')).toBe('verifying…');
      await page.waitForFunction(
        () => !/^(|verifying…)$/.test(document.getElementById('verdict')?.textContent ?? ''),
        null,
        { timeout: 120_000 },
      );
      expect(await page.textContent('#verdict')).toBe('VALID');
      expect(await page.textContent('#verdict-detail')).toBe(large.detail);
      expect(
        await page.evaluate(() => (window as unknown as { ticksWhileVerifying: number }).ticksWhileVerifying),
      ).toBeGreaterThan(0);
      expect(await shown(page)).toEqual(['verifying…|', `VALID|${large.detail}`]);
      expect(pageErrors).toEqual([]);
      await page.close();
    }, 180_000);

    it('a newer paste supersedes a large certificate still verifying: its verdict is never shown', async () => {
      const small = bigCertificate(2, 1);
      const forged = structuredClone(small.json) as { outcome: { fee: number } };
      forged.outcome.fee = 2;
      const node = verifyCertificate(forged, big.genesis);
      expect(node.ok).toBe(false);
      if (node.ok) return;
      const page = await openBig();
      // The large one is pasted and checked, then the small one, in one turn of the page's thread: the large
      // one's check is under way in its worker when the small one's starts, and its answer cannot come in
      // between (driven from outside, the large check could end before the second paste landed: CI,
      // 2026-12-05).
      await page.evaluate(
        ([first, second]) => {
          const box = document.getElementById('cert-json') as HTMLTextAreaElement;
          const button = document.getElementById('verify-btn') as HTMLElement;
          box.value = first;
          button.click();
          box.value = second;
          button.click();
        },
        [JSON.stringify(large.json), JSON.stringify(small.json)],
      );
      await page.waitForFunction(() => document.getElementById('verdict')?.textContent === 'VALID', null, {
        timeout: 120_000,
      });
      expect(await page.textContent('#verdict-detail')).toBe(small.detail);
      // A third check, after the second: it answers only after the large one would have (were that one
      // still running, in the same worker or another), and the large one's VALID never shows.
      await page.fill('#cert-json', JSON.stringify(forged));
      await page.click('#verify-btn');
      await page.waitForFunction(
        () => document.getElementById('verdict')?.textContent?.startsWith('INVALID'),
        null,
        {
          timeout: 120_000,
        },
      );
      expect(await page.textContent('#verdict')).toBe(`INVALID: ${node.reason}`);
      // (The two checks' "verifying…" came in one turn: one record.)
      expect(await shown(page)).toEqual([
        'verifying…|',
        `VALID|${small.detail}`,
        'verifying…|',
        `INVALID: ${node.reason}|${node.message}`,
      ]);
      expect(pageErrors).toEqual([]);
      await page.close();
    }, 180_000);

    it('refuses pasted text longer than any certificate, saying so, without parsing it', async () => {
      const page = await openBig();
      // Hidden, the box is not laid out with 64 million characters in it (that alone takes the page long).
      const said = await page.evaluate(() => {
        const box = document.getElementById('cert-json') as HTMLTextAreaElement;
        box.style.display = 'none';
        box.value = `{"a":"${'x'.repeat(64 * 1024 * 1024)}"}`;
        document.getElementById('verify-btn')?.click();
        return [
          document.getElementById('verdict')?.textContent,
          document.getElementById('verdict-detail')?.textContent,
        ];
      });
      expect(said[0]).toBe('not checked');
      expect(said[1]).toContain(
        'the pasted text is 67,108,872 characters; this page checks up to 67,108,864',
      );
      await page.close();
    });
  });
});
