/**
 * Headless Chromium for the benches' browser rows (bench/parts/verify.ts) and the dashboard's browser test
 * (test/e2e/dashboard.test.ts), launched one way: /usr/bin/chromium (`.ci/run` installs it) or the one
 * DROPBEAR_CHROMIUM names. Test-and-bench code only; src never launches a browser.
 */
import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM = process.env.DROPBEAR_CHROMIUM ?? '/usr/bin/chromium';

/** Why there is no Chromium to launch (to log before skipping), or null where there is one. */
export function chromiumMissing(): string | null {
  return existsSync(CHROMIUM)
    ? null
    : `no Chromium at ${CHROMIUM} (apt-get install chromium, or DROPBEAR_CHROMIUM names another)`;
}

/** Launches it; rejects with chromiumMissing()'s reason where there is none. */
export async function launchChromium(): Promise<Browser> {
  const missing = chromiumMissing();
  if (missing) throw new Error(missing);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // No sandbox: Chromium will not start as root with it, and `.ci/run` runs as root (it apt-gets
    // Chromium). No GPU, no background network requests: the pages need neither.
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}
