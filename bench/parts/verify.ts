/**
 * Part `verify`: certificates a client verifies per second on one core (one thread), against the
 * genesis alone, with and without a SignatureCache (receipt signatures checked once per consensus batch:
 * every certificate of a batch carries the same receipt and the same q signatures).
 *
 * The certificates come from a real simulated run (src/sim/world.ts: n = 4, real replicas, consensus
 * batches of up to 128), so they share receipts the way real ones do. Each run verifies every certificate
 * once, decoded (the SDK's case after parsing) and from its JSON form (as an HTTP answer carries it), with
 * a fresh cache per run. The rate is per CPU-second of the verifying thread (the machine is shared; wall
 * time is reported too).
 */
import { fileURLToPath } from 'node:url';
import { SignatureCache, verifyCertificate } from '../../src/certificate/index.ts';
import {
  Certificate,
  cryptoStats,
  Genesis,
  hex,
  type Json,
  receiptHashOf,
  toJson,
} from '../../src/protocol/index.ts';
import { simulate } from '../../src/sim/world.ts';
import { bundleForBrowser } from '../../src/web/bundle.ts';
import { CHROMIUM, chromiumMissing, launchChromium } from '../lib/chromium.ts';
import { atEnd, describeMachine, machine } from '../lib/machine.ts';
import { mdTable } from '../lib/markdown.ts';
import type { PartOptions, PartResult } from '../lib/part.ts';
import { selfCpuMs } from '../lib/procs.ts';
import { fmtSpread, type Spread, spread } from '../lib/stats.ts';

const N = 4;
const BATCH = 128;
const TARGET = 5000;

interface BrowserRow {
  cached: boolean;
  perWallSecond: Spread;
}

type BenchVerify = (g: unknown, c: unknown[], cached: boolean, reps: number) => { ms: number; count: number };

/**
 * The same JSON certificates verified inside Chromium by the dashboard's bundle (pure-JavaScript SHA-256
 * and Ed25519: src/web/shims), timed by the page itself: `runs` runs per row after a warm-up run. Null
 * where there is no Chromium.
 */
async function browserRows(
  genesis: Json,
  jsons: Json[],
  runs: number,
  log: (l: string) => void,
): Promise<BrowserRow[] | null> {
  // (Chromium as test/e2e/dashboard.test.ts launches it: bench/lib/chromium.ts.)
  const missing = chromiumMissing();
  if (missing) {
    log(`browser rows skipped: ${missing}`);
    return null;
  }
  const js = await bundleForBrowser(fileURLToPath(new URL('../lib/browser-verify.ts', import.meta.url)));
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.setContent('<!doctype html><html><body></body></html>');
    await page.addScriptTag({ content: js, type: 'module' });
    await page.waitForFunction(
      () => typeof (globalThis as Record<string, unknown>).benchVerify === 'function',
    );
    // Handed over once; the page keeps them.
    await page.evaluate(
      ([g, c]) => {
        Object.assign(globalThis, { benchGenesis: g, benchCerts: c });
      },
      [genesis, jsons] as [unknown, unknown],
    );
    const time = (cached: boolean, reps: number) =>
      page.evaluate(
        ([k, n]) => {
          const w = globalThis as unknown as {
            benchVerify: BenchVerify;
            benchGenesis: unknown;
            benchCerts: unknown[];
          };
          return w.benchVerify(w.benchGenesis, w.benchCerts, k, n);
        },
        [cached, reps] as const,
      );
    const rows: BrowserRow[] = [];
    for (const cached of [false, true]) {
      const reps = Math.max(1, Math.ceil(250 / Math.max(1, (await time(cached, 1)).ms)));
      const rates: number[] = [];
      for (let i = 0; i < runs; i++) {
        const r = await time(cached, reps);
        rates.push(r.count / (r.ms / 1000));
      }
      rows.push({ cached, perWallSecond: spread(rates) });
      log(`Chromium ${cached ? 'cached' : 'uncached'}: ${fmtSpread(spread(rates))} per s`);
    }
    return rows;
  } finally {
    await browser.close();
  }
}

interface Row {
  form: 'decoded' | 'json';
  cached: boolean;
  perCpuSecond: Spread;
  perWallSecond: Spread;
  signatureChecksPerCertificate: number;
}

export async function run(o: PartOptions): Promise<PartResult> {
  const requests = o.quick ? 1024 : 4096;
  const runs = o.quick ? 2 : 5;
  o.log(`simulating n = ${N}, ${requests} requests, consensus batches up to ${BATCH}`);
  const sim = simulate({
    nodes: N,
    requests,
    seed: 7,
    rate: 60,
    clientBatch: 64,
    inferBatch: 256,
    replica: { batchSize: BATCH, batchTimeoutMs: 5, window: 64 },
  });
  if (!sim.done || sim.certificates.size !== requests)
    throw new Error(`simulation certified ${sim.certificates.size} of ${requests} requests`);
  const genesis = sim.group.genesis;
  const certs = [...sim.certificates.values()];
  const jsons: Json[] = certs.map((c) => toJson(Certificate, c));
  const receipts = new Set(certs.map((c) => hex(receiptHashOf(c.receipt))));
  const perReceipt = certs.length / receipts.size;
  const q = certs[0].signatures.length;
  o.log(
    `${certs.length} certificates over ${receipts.size} receipts (${perReceipt.toFixed(1)} per receipt), ${q} signatures each`,
  );

  /** `reps` times over every certificate, each time with a fresh cache (when cached). */
  const pass = (form: 'decoded' | 'json', cached: boolean, reps = 1) => {
    const items: unknown[] = form === 'decoded' ? certs : jsons;
    const v0 = cryptoStats.verifies;
    const c0 = selfCpuMs();
    const t0 = performance.now();
    for (let k = 0; k < reps; k++) {
      const cache = cached ? new SignatureCache() : undefined;
      for (const c of items) {
        const r = verifyCertificate(c, genesis, { cache });
        if (!r.ok) throw new Error(`certificate failed to verify: ${r.reason} ${r.message}`);
      }
    }
    const wall = performance.now() - t0;
    const cpu = Math.max(selfCpuMs() - c0, 1e-3);
    const count = items.length * reps;
    return {
      wallMs: wall,
      perCpu: count / (cpu / 1000),
      perWall: count / (wall / 1000),
      checks: (cryptoStats.verifies - v0) / count,
    };
  };

  const rows: Row[] = [];
  for (const form of ['decoded', 'json'] as const)
    for (const cached of [false, true]) {
      // Warm-up (JIT), which also sizes a run: at least ~250 ms, so CPU-time granularity does not matter.
      const reps = Math.max(1, Math.ceil(250 / Math.max(1, pass(form, cached).wallMs)));
      const cpu: number[] = [];
      const wall: number[] = [];
      let checks = 0;
      for (let i = 0; i < runs; i++) {
        const r = pass(form, cached, reps);
        cpu.push(r.perCpu);
        wall.push(r.perWall);
        checks = r.checks;
      }
      rows.push({
        form,
        cached,
        perCpuSecond: spread(cpu),
        perWallSecond: spread(wall),
        signatureChecksPerCertificate: checks,
      });
      o.log(`${form} ${cached ? 'cached' : 'uncached'}: ${fmtSpread(spread(cpu))} per CPU-s`);
    }

  const inBrowser = await browserRows(toJson(Genesis, genesis), jsons, runs, o.log);

  const m = machine();
  const cachedDecoded = rows.find((r) => r.form === 'decoded' && r.cached)!;
  const cachedJson = rows.find((r) => r.form === 'json' && r.cached)!;
  const met = cachedDecoded.perCpuSecond.median >= TARGET;
  const table = mdTable(
    [
      '<certificate form',
      '<receipt signatures',
      'certificates / CPU-s (median, min–max)',
      'per wall-s (median)',
      'Ed25519 checks / certificate',
    ],
    rows.map((r) => [
      r.form === 'decoded' ? 'decoded object' : 'JSON (as served over HTTP)',
      r.cached ? 'cached per batch (SignatureCache)' : 'uncached (every signature)',
      fmtSpread(r.perCpuSecond),
      r.perWallSecond.median.toFixed(0),
      r.signatureChecksPerCertificate.toFixed(3),
    ]),
  );
  const verdict = met
    ? `Target (≥ ${TARGET} per core, cached): **met** (${cachedDecoded.perCpuSecond.median.toFixed(0)} decoded, ${cachedJson.perCpuSecond.median.toFixed(0)} from JSON).`
    : `Target (≥ ${TARGET} per core, cached): **missed** by ${(100 * (1 - cachedDecoded.perCpuSecond.median / TARGET)).toFixed(0)} % (${cachedDecoded.perCpuSecond.median.toFixed(0)}).`;
  const browserTable = inBrowser
    ? mdTable(
        [
          '<certificate form',
          '<receipt signatures',
          "certificates / s of the page's thread (median, min–max)",
        ],
        inBrowser.map((r) => [
          'JSON, in Chromium (the dashboard, src/web)',
          r.cached ? 'cached per batch (SignatureCache)' : 'uncached (every signature)',
          fmtSpread(r.perWallSecond),
        ]),
      )
    : `In a browser: not measured (no Chromium at ${CHROMIUM}).`;
  const body = [
    `${o.quick ? '**Quick (smoke) run: not a measurement.** ' : ''}Machine: ${describeMachine(atEnd(m))}. Command: \`${o.command}\`. ${runs} runs per row after one warm-up run, each verifying all ${certs.length} certificates (repeated to last ≥ 250 ms, with a fresh cache each time); spread is min–max over the runs.`,
    `Certificates from a simulated n = ${N} run (seed 7, consensus batches up to ${BATCH}): ${receipts.size} receipts, ${perReceipt.toFixed(1)} certificates per receipt, q = ${q} receipt signatures each.`,
    '',
    table,
    '',
    verdict,
    '',
    `The same JSON certificates verified in Chromium by the dashboard's own bundle (src/web: pure-JavaScript SHA-256 and Ed25519 instead of libsodium and OpenSSL), timed inside the page on its one JavaScript thread; ${runs} runs per row after a warm-up run:`,
    '',
    browserTable,
  ].join('\n');
  return {
    json: {
      n: N,
      consensusBatch: BATCH,
      certificates: certs.length,
      receipts: receipts.size,
      certificatesPerReceipt: perReceipt,
      signaturesPerCertificate: q,
      runs,
      target: TARGET,
      targetMet: met,
      rows,
      browser: inBrowser,
    },
    table: `${table}\n${verdict}`,
    section: {
      heading: 'Client-side verification: certificates per second per core',
      intro:
        'A client checks each certificate offline against the genesis: the strict codec, the decision from the votes, the Merkle path to the receipt, and q receipt signatures (Ed25519). Every certificate of one consensus batch carries the same receipt and signatures, so a `SignatureCache` checks them once per batch. `npm run bench -- verify` (under a minute).',
      body,
    },
  };
}
