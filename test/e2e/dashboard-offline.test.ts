/**
 * The dashboard's verifier (src/web) in real Chromium, on offline pages (`dropbear verify-page`'s file, no
 * node): how it takes large or hostile input. Chromium as in dashboard.test.ts (skipped with a warning
 * where there is none, unless CI or DROPBEAR_REQUIRE_CHROMIUM is set).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumMissing, launchChromium } from '../../bench/lib/chromium.ts';
import { verifyCertificate } from '../../src/certificate/index.ts';
import { writeVerifyPage } from '../../src/cli/verify-page.ts';
import {
  Certificate,
  Genesis,
  groupIdOf,
  hex,
  type Json,
  type Policy,
  sha256,
  toJson,
} from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { certificateOfOne } from '../support/certificates.ts';

const required = Boolean(process.env.CI || process.env.DROPBEAR_REQUIRE_CHROMIUM);
const missing = chromiumMissing();
const haveChromium = missing === null;
if (!haveChromium && !required) console.warn(`offline dashboard test skipped: ${missing}`);

const policy: Policy = { kind: 'tolerance', minAgree: 3, epsilon: 0 };
const group = makeGroup(4, 1, 7, policy);

/**
 * A genesis that takes long to check: the group's, with `count` client balances (the codec takes up to a
 * million). 100,000 of them are 6.9 MB of JSON; on the page's thread, decoding and hashing them held it
 * 2.5 s (headless Chromium, 2-core review machine, 2026-12-06).
 */
function genesisWithBalances(count: number): Genesis {
  const balances = Array.from({ length: count }, () => ({ client: randomBytes(32), amount: 1 })).sort(
    (a, b) => Buffer.compare(a.client, b.client),
  );
  return { ...group.genesis, balances };
}

/** A certificate of request `tag` under `genesis` (the group's keys), signed by a quorum. */
function certificateFor(genesis: Genesis, tag: number, updated = -1): Json {
  const { cert } = certificateOfOne(genesis, group.keys, group.client, tag, {
    policy,
    values: [7, -7],
    // Node `updated` votes with a model other than its genesis one (as after a model update).
    modelDigest: (n) => (n.id === updated ? sha256(new Uint8Array([tag, 3])) : n.modelDigest),
  });
  return toJson(Certificate, cert);
}

describe.skipIf(!haveChromium && !required)('the offline dashboard in Chromium', () => {
  const root = mkdtempSync(join(tmpdir(), 'dropbear-dashboard-offline-'));
  let browser: Browser;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    rmSync(root, { recursive: true, force: true });
  });

  /** Writes the offline page for `genesis`; returns its file name. */
  async function pageFor(genesis: Genesis, name: string): Promise<string> {
    const g = join(root, `${name}-genesis.json`);
    writeFileSync(g, JSON.stringify(toJson(Genesis, genesis)));
    const file = join(root, `${name}.html`);
    await writeVerifyPage(g, file);
    return file;
  }

  async function newPage(): Promise<Page> {
    const page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    return page;
  }

  async function verdictOf(page: Page, json: string): Promise<[string, string]> {
    await page.evaluate(() => {
      const v = document.getElementById('verdict');
      if (v) v.textContent = '';
    });
    await page.fill('#cert-json', json);
    await page.click('#verify-btn');
    await page.waitForFunction(
      () => !/^(|verifying…)$/.test(document.getElementById('verdict')?.textContent ?? ''),
      null,
      { timeout: 120_000 },
    );
    return [(await page.textContent('#verdict')) ?? '', (await page.textContent('#verdict-detail')) ?? ''];
  }

  describe('a genesis that takes long to check', () => {
    const genesis = genesisWithBalances(100_000);
    const id = hex(groupIdOf(genesis));
    let file = '';
    beforeAll(async () => {
      file = await pageFor(genesis, 'balances');
    }, 60_000);

    it("is checked off the page's thread, saying so, and then certificates are checked against it", async () => {
      const page = await newPage();
      // Counts the page's timer turns while it says the genesis is being checked: on the page's thread
      // the check held it from the script's start to the end (no turn, no "checking" shown at all).
      await page.addInitScript(() => {
        const w = window as unknown as { ticksWhileChecking: number };
        w.ticksWhileChecking = 0;
        setInterval(() => {
          const pin = document.getElementById('pin')?.textContent ?? '';
          const progress = document.getElementById('progress');
          if (pin.startsWith('checking the genesis') && progress && !progress.hidden) w.ticksWhileChecking++;
        }, 10);
      });
      await page.goto(`${pathToFileURL(file).href}?group=${id}`);
      await page.waitForSelector('body[data-ready]', { timeout: 120_000 });
      expect(await page.getAttribute('body', 'data-ready')).toBe('true');
      expect(
        await page.evaluate(() => (window as unknown as { ticksWhileChecking: number }).ticksWhileChecking),
      ).toBeGreaterThan(0);
      expect(await page.textContent('#group-id')).toBe(id);
      expect(await page.getAttribute('#pin', 'class')).toBe('ok');
      expect(await page.isHidden('#progress')).toBe(true);
      const cert = certificateFor(genesis, 1);
      expect(verifyCertificate(cert, genesis).ok).toBe(true);
      expect((await verdictOf(page, JSON.stringify(cert)))[0]).toBe('VALID');
      // Another group's certificate (the same keys, no balances): refused with the verifier's reason.
      const other = certificateFor(group.genesis, 2);
      const node = verifyCertificate(other, genesis);
      expect(node.ok).toBe(false);
      if (!node.ok) expect((await verdictOf(page, JSON.stringify(other)))[0]).toBe(`INVALID: ${node.reason}`);
      expect(pageErrors).toEqual([]);
      await page.close();
    }, 180_000);

    it('can be cancelled: then nothing is checked, and the page says why', async () => {
      const page = await newPage();
      // Cancelled as soon as the page's script has run (it has started the check in its worker).
      await page.addInitScript(() => {
        document.addEventListener('DOMContentLoaded', () => {
          (window as unknown as { progressShown: boolean }).progressShown = !(
            document.getElementById('progress') as HTMLElement
          ).hidden;
          document.getElementById('cancel-btn')?.click();
        });
      });
      await page.goto(pathToFileURL(file).href);
      await page.waitForSelector('body[data-ready]');
      expect(await page.evaluate(() => (window as unknown as { progressShown: boolean }).progressShown)).toBe(
        true,
      );
      expect(await page.getAttribute('body', 'data-ready')).toBe('error');
      expect(await page.getAttribute('#pin', 'class')).toBe('bad');
      expect(await page.textContent('#pin')).toContain('the genesis check was cancelled');
      expect(await page.isHidden('#progress')).toBe(true);
      const [verdict, detail] = await verdictOf(page, JSON.stringify(certificateFor(genesis, 1)));
      expect(verdict).toBe('not checked');
      expect(detail).toContain('the genesis check was cancelled');
      expect(pageErrors).toEqual([]);
      await page.close();
    }, 120_000);
  });

  describe('long input, pasted, dropped or chosen as a file', () => {
    let file = '';
    beforeAll(async () => {
      file = await pageFor(group.genesis, 'small');
    }, 60_000);

    // A valid certificate made 3 million characters long by white space (JSON.parse skips it): Chromium
    // laid a box of 4.7 MB pasted out for 5 s, one of 18.5 MB for 8.5 s, before the page could do anything.
    const cert = certificateFor(group.genesis, 3);
    const long = `${' '.repeat(3_000_000)}${JSON.stringify(cert)}`;

    async function openSmall(): Promise<Page> {
      const page = await newPage();
      await page.goto(pathToFileURL(file).href);
      await page.waitForSelector('body[data-ready]');
      expect(await page.getAttribute('body', 'data-ready')).toBe('true');
      return page;
    }

    async function verifyNow(page: Page): Promise<string> {
      await page.evaluate(() => {
        const v = document.getElementById('verdict');
        if (v) v.textContent = '';
      });
      await page.click('#verify-btn');
      await page.waitForFunction(
        () => !/^(|verifying…)$/.test(document.getElementById('verdict')?.textContent ?? ''),
        null,
        { timeout: 120_000 },
      );
      return (await page.textContent('#verdict')) ?? '';
    }

    it('long pasted text is held beside the box, not put in it, and verified; typing in the box replaces it', async () => {
      expect(verifyCertificate(JSON.parse(long), group.genesis).ok).toBe(true);
      const page = await openSmall();
      // A paste as the browser delivers it (the page's handler reads the clipboard's text from the event).
      await page.evaluate((text) => {
        const data = new DataTransfer();
        data.setData('text/plain', text);
        const box = document.getElementById('cert-json') as HTMLTextAreaElement;
        box.focus();
        box.dispatchEvent(
          new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }),
        );
      }, long);
      expect(await page.inputValue('#cert-json')).toBe('');
      expect(await page.isVisible('#held')).toBe(true);
      expect(await page.textContent('#held')).toContain(
        `pasted text: ${long.length.toLocaleString('en')} characters`,
      );
      expect(await verifyNow(page)).toBe('VALID');
      // Typed (filled) text replaces what was held.
      const forged = { ...(cert as Record<string, unknown>), leafIndex: 1 };
      const node = verifyCertificate(forged, group.genesis);
      expect(node.ok).toBe(false);
      await page.fill('#cert-json', JSON.stringify(forged));
      expect(await page.isHidden('#held')).toBe(true);
      if (!node.ok) expect(await verifyNow(page)).toBe(`INVALID: ${node.reason}`);
      expect(pageErrors).toEqual([]);
      await page.close();
    }, 120_000);

    it('a file dropped on the page, or chosen, is read as the certificate; the page stays where it is', async () => {
      const page = await openSmall();
      const url = page.url();
      // Dropped on the page's heading (not the box), as a person drops a file (Chromium's own drag events,
      // through the DevTools protocol): a long one held, a short one put in the box.
      const cdp = await page.context().newCDPSession(page);
      const at = await page.locator('h1').boundingBox();
      if (!at) throw new Error('no heading');
      for (const [name, text, inBox] of [
        ['long.json', long, false],
        ['short.json', JSON.stringify(cert), true],
      ] as const) {
        writeFileSync(join(root, name), text);
        const data = { items: [], files: [join(root, name)], dragOperationsMask: 1 };
        for (const type of ['dragEnter', 'dragOver', 'drop'] as const)
          await cdp.send('Input.dispatchDragEvent', { type, x: at.x + 5, y: at.y + 5, data });
        if (inBox)
          await page.waitForFunction(
            () => (document.getElementById('cert-json') as HTMLTextAreaElement).value !== '',
          );
        else await page.waitForSelector('#held:not([hidden])');
        expect(await page.inputValue('#cert-json')).toBe(inBox ? text : '');
        if (!inBox)
          expect(await page.textContent('#held')).toContain(
            `${name}: ${long.length.toLocaleString('en')} characters`,
          );
        expect(await verifyNow(page)).toBe('VALID');
      }
      // Chosen with the file button: another group's certificate, refused with the verifier's reason.
      const other = certificateFor(genesisWithBalances(1), 4);
      const node = verifyCertificate(other, group.genesis);
      expect(node.ok).toBe(false);
      await page.fill('#cert-json', '');
      await page.setInputFiles('#cert-file', {
        name: 'other.json',
        mimeType: 'application/json',
        buffer: Buffer.from(JSON.stringify(other)),
      });
      await page.waitForFunction(
        () => (document.getElementById('cert-json') as HTMLTextAreaElement).value !== '',
      );
      if (!node.ok) expect(await verifyNow(page)).toBe(`INVALID: ${node.reason}`);
      expect(page.url()).toBe(url);
      expect(pageErrors).toEqual([]);
      await page.close();
    }, 120_000);
  });

  it('says what pasted JSON of another kind is (a genesis, a key file, a node config), as `dropbear verify` does', async () => {
    const page = await newPage();
    await page.goto(pathToFileURL(await pageFor(group.genesis, 'kinds')).href);
    await page.waitForSelector('body[data-ready]');
    const cases: [unknown, string][] = [
      [toJson(Genesis, group.genesis), '(the text looks like a group genesis, not a certificate)'],
      [
        { kind: 'ed25519', publicKey: '00', seed: '00' },
        '(the text looks like a key file, not a certificate)',
      ],
      [
        { id: 0, genesis: 'genesis.json', key: 'node-0.key.json' },
        '(the text looks like a node config, not a certificate)',
      ],
    ];
    for (const [json, hint] of cases) {
      const node = verifyCertificate(json, group.genesis);
      expect(node.ok).toBe(false);
      if (node.ok) continue;
      const [verdict, detail] = await verdictOf(page, JSON.stringify(json));
      expect(verdict).toBe(`INVALID: ${node.reason}`);
      expect(detail).toBe(`${node.message} ${hint}`);
    }
    // A reason that quotes the text (an unknown field's name, here 300,000 characters): shown cut short. A
    // 20 MB one, shown whole, held the page's thread 13 s.
    const long = 'x'.repeat(300_000);
    const [verdict, detail] = await verdictOf(page, `{"${long}":1}`);
    expect(verdict).toBe('INVALID: malformed');
    expect(detail.startsWith(`value: unknown field "${long.slice(0, 1000)}`)).toBe(true);
    expect(detail.length).toBeLessThan(270_000);
    expect(detail).toMatch(/… \([0-9,]+ more characters not shown\)$/);
    expect(pageErrors).toEqual([]);
    await page.close();
  }, 60_000);

  it('takes a certificate wrapped as the API answers it, and nothing else beside it', async () => {
    const page = await newPage();
    await page.goto(pathToFileURL(await pageFor(group.genesis, 'wrapped')).href);
    await page.waitForSelector('body[data-ready]');
    const certificate = certificateFor(group.genesis, 5, 2);
    const requestId = hex(sha256(new Uint8Array([5])));
    expect(verifyCertificate(certificate, group.genesis).ok).toBe(true);
    const [valid, detail] = await verdictOf(page, JSON.stringify({ requestId, certificate }));
    expect(valid).toBe('VALID');
    // Which model gave each counted vote: node 2's is not the one the genesis names.
    const n0 = group.genesis.nodes[0];
    expect(detail).toContain(`node 0: ${hex(n0.modelDigest)} (its genesis model, ${n0.modelName})`);
    expect(detail).toContain(`node 2: ${hex(sha256(new Uint8Array([5, 3])))} (not its genesis model)`);
    // A made-up answer beside the genuine certificate: it read as part of what was VALID.
    for (const [json, says] of [
      [
        { requestId, certificate, decision: { kind: 'label', label: 999 } },
        'unknown field "decision" beside the certificate',
      ],
      [{ requestId: 5, certificate }, 'the requestId beside the certificate is not 64 hex characters'],
      [{ certificate }, 'the requestId beside the certificate is not 64 hex characters'],
    ] as const) {
      const [verdict, detail] = await verdictOf(page, JSON.stringify(json));
      expect(verdict).toBe('INVALID: malformed');
      expect(detail).toContain(says);
    }
    expect(pageErrors).toEqual([]);
    await page.close();
  }, 60_000);

  it('a certificate check can be cancelled: its verdict never shows, and the next check runs', async () => {
    const page = await newPage();
    await page.goto(pathToFileURL(await pageFor(group.genesis, 'cancel')).href);
    await page.waitForSelector('body[data-ready]');
    const cert = JSON.stringify(certificateFor(group.genesis, 6));
    // Asked and cancelled in one turn of the page's thread: the worker cannot have answered in between.
    const said = await page.evaluate((text) => {
      (document.getElementById('cert-json') as HTMLTextAreaElement).value = text;
      document.getElementById('verify-btn')?.click();
      const during = [
        document.getElementById('verdict')?.textContent,
        (document.getElementById('progress') as HTMLElement).hidden,
        document.getElementById('progress-text')?.textContent,
      ];
      document.getElementById('cancel-btn')?.click();
      return [...during, document.getElementById('verdict')?.textContent];
    }, cert);
    expect(said).toEqual(['verifying…', false, 'verifying the certificate… 0 s', 'not checked']);
    expect(await page.textContent('#verdict-detail')).toBe('cancelled');
    expect(await page.isHidden('#progress')).toBe(true);
    // The cancelled check's worker is gone; had its VALID come, it would show here first.
    expect((await verdictOf(page, '{')).at(0)).toBe('INVALID: malformed');
    expect((await verdictOf(page, cert)).at(0)).toBe('VALID');
    expect(pageErrors).toEqual([]);
    await page.close();
  }, 60_000);

  it("carries its own content security policy: the page's script and worker run, and nothing can be fetched", async () => {
    const page = await newPage();
    await page.goto(pathToFileURL(await pageFor(group.genesis, 'csp')).href);
    await page.waitForSelector('body[data-ready]');
    expect(await page.getAttribute('body', 'data-ready')).toBe('true');
    // Its worker still verifies.
    expect((await verdictOf(page, JSON.stringify(certificateFor(group.genesis, 7))))[0]).toBe('VALID');
    // A request from the page (to a local port nothing listens on) is refused by the policy, not tried.
    const violated = await page.evaluate(async () => {
      const seen: string[] = [];
      document.addEventListener('securitypolicyviolation', (e) => seen.push(e.effectiveDirective));
      await fetch('http://127.0.0.1:9/').catch(() => {});
      await new Promise((r) => setTimeout(r, 100));
      return seen;
    });
    expect(violated).toEqual(['connect-src']);
    await page.close();
  }, 60_000);

  it('checks a list of certificates, saying how far it is: VALID only when every one is', async () => {
    const page = await newPage();
    await page.goto(pathToFileURL(await pageFor(group.genesis, 'list')).href);
    await page.waitForSelector('body[data-ready]');
    // 400 certificates of as many batches: ~1,200 receipt signatures, seconds of pure-JavaScript Ed25519.
    const list = Array.from({ length: 400 }, (_, i) => certificateFor(group.genesis, 1000 + i));
    await page.evaluate(() => {
      const w = window as unknown as { progressSeen: string[] };
      w.progressSeen = [];
      const text = document.getElementById('progress-text') as HTMLElement;
      new MutationObserver(() => w.progressSeen.push(text.textContent ?? '')).observe(text, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    });
    const [verdict, detail] = await verdictOf(page, JSON.stringify(list));
    expect(verdict).toBe('VALID');
    expect(detail.split('\n')[0]).toBe('all 400 certificates are valid:');
    expect(detail).toContain(`#399: request ${hex(sha256(new Uint8Array([1399 & 255])))}`);
    const seen = await page.evaluate(() => (window as unknown as { progressSeen: string[] }).progressSeen);
    expect(seen.some((t) => / of 400\)/.test(t))).toBe(true);
    // One altered certificate in the list: the list is INVALID, with that one's reason, and it is named.
    const forged = { ...(list[2] as Record<string, unknown>), leafIndex: 1 };
    const node = verifyCertificate(forged, group.genesis);
    expect(node.ok).toBe(false);
    const [bad, why] = await verdictOf(page, JSON.stringify([list[0], list[1], forged]));
    if (!node.ok) {
      expect(bad).toBe(`INVALID: ${node.reason}`);
      expect(why).toBe(
        `1 of the 3 certificates are invalid (the list is not valid as a whole):\n#2: ${node.reason}: ${node.message}`,
      );
    }
    expect((await verdictOf(page, '[]'))[0]).toBe('INVALID: malformed');
    expect(pageErrors).toEqual([]);
    await page.close();
  }, 180_000);
});
