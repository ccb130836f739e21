/**
 * Bundled for Chromium by the verify part (src/web/bundle.ts's bundleForBrowser, as the dashboard is): the
 * dashboard's verifier timed inside the page. `globalThis.benchVerify` checks every certificate (JSON, as
 * an HTTP answer carries it) `reps` times, with a fresh SignatureCache each time when `cached`, and returns
 * the page's own wall time.
 */
import { SignatureCache, verifyCertificate } from '../../src/certificate/index.ts';
import { fromJson, Genesis } from '../../src/protocol/index.ts';

(globalThis as Record<string, unknown>).benchVerify = (
  genesisJson: unknown,
  certs: unknown[],
  cached: boolean,
  reps: number,
): { ms: number; count: number } => {
  const genesis = fromJson(Genesis, genesisJson);
  const t0 = performance.now();
  for (let k = 0; k < reps; k++) {
    const cache = cached ? new SignatureCache() : undefined;
    for (const c of certs) {
      const r = verifyCertificate(c, genesis, { cache });
      if (!r.ok) throw new Error(`certificate failed to verify in the browser: ${r.reason} ${r.message}`);
    }
  }
  return { ms: performance.now() - t0, count: certs.length * reps };
};
