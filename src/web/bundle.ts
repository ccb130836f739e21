/**
 * The dashboard (web/app.ts) as one script for the browser, bundled with esbuild on first use and kept (a
 * node asks for it as it starts serving, node/run.ts, not on the page's first request): the protocol and
 * certificate code as the nodes run it, with node:crypto, node:module and Buffer replaced by browser
 * versions (web/shims). Hashing and Ed25519 then run in pure JavaScript (@noble), with protocol/crypto.ts's
 * node:crypto path (libsodium's extra rules first), so the page takes exactly the certificates
 * `dropbear verify` takes.
 */
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

const shims: Plugin = {
  name: 'dropbear-browser-shims',
  setup(b) {
    b.onResolve({ filter: /^node:crypto$/ }, () => ({ path: here('./shims/node-crypto.ts') }));
    b.onResolve({ filter: /^node:module$/ }, () => ({ path: here('./shims/node-module.ts') }));
    // Anything else from Node's library would not run in a browser: fail the build, naming it.
    b.onResolve({ filter: /^node:/ }, (a) => ({
      errors: [{ text: `${a.path} (imported by ${a.importer}) has no browser version` }],
    }));
  },
};

/**
 * One ES module for the browser from `entry` (a file path) and what it imports, with the stand-ins above.
 * The benches bundle their own entries with it too (bench/lib/browser-verify.ts).
 */
export async function bundleForBrowser(entry: string): Promise<string> {
  const r = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
    plugins: [shims],
    inject: [here('./shims/buffer.ts')],
    // protocol/crypto.ts reads this to choose its backend: node:crypto's path, here the shims.
    define: { 'process.env.DROPBEAR_CRYPTO': '"node"' },
  });
  return r.outputFiles[0].text;
}

let bundled: Promise<string> | null = null;

/** The dashboard's script (built once per process; a failed build is retried on the next call). */
export function dashboardScript(): Promise<string> {
  bundled ??= bundleForBrowser(here('./app.ts')).catch((e) => {
    bundled = null;
    throw e;
  });
  return bundled;
}
