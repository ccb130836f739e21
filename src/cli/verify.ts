import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { SignatureCache, verifyCertificate } from '../certificate/index.ts';
import { DropbearError, hex, kindHint, printableLine } from '../protocol/index.ts';
import { readGenesis, readJsonFile } from './io.ts';

/** The files `paths` name, folders listed; a folder that cannot be listed stands as its error. */
function expand(paths: string[]): (string | { path: string; error: DropbearError })[] {
  const out: (string | { path: string; error: DropbearError })[] = [];
  for (const p of paths) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(p);
    } catch {
      out.push(p); // reported as unreadable below
      continue;
    }
    if (st.isDirectory()) {
      // It may go between the stat and the listing (removed during the run): one failure line, like an
      // unreadable file, and the other paths are still verified. It was an uncaught error with no code.
      let names: string[];
      try {
        names = readdirSync(p);
      } catch (e) {
        const error = new DropbearError('FILE_UNREADABLE', `cannot list ${p}: ${(e as Error).message}`);
        out.push({ path: p, error });
        continue;
      }
      for (const f of names.sort()) if (f.endsWith('.json')) out.push(join(p, f));
    } else out.push(p);
  }
  return out;
}

/**
 * A node's answer to GET /v1/certificates/:id as saved whole (`curl … > cert.json`): `{requestId,
 * certificate}` and nothing else, as the dashboard's verifier takes it (src/web/verifier.ts). Null for any
 * other value (verified as a certificate), or why the wrapper is refused: anything beside the certificate
 * would read as part of what is valid without being checked. Until 2026-12-07 `dropbear verify` called
 * such a file `malformed: unknown field "requestId"`, where the dashboard found it valid.
 */
function nodeAnswer(json: unknown): { requestId: string; certificate: unknown } | string | null {
  if (json === null || typeof json !== 'object' || !Object.hasOwn(json, 'certificate')) return null;
  const extra = Object.keys(json).find((k) => k !== 'certificate' && k !== 'requestId');
  if (extra !== undefined)
    return `unknown field "${printableLine(extra)}" beside the certificate (a node answers {requestId, certificate} and nothing else)`;
  const { requestId, certificate } = json as { requestId?: unknown; certificate: unknown };
  if (typeof requestId !== 'string' || !/^[0-9a-fA-F]{64}$/.test(requestId))
    return 'the requestId beside the certificate is not 64 hex characters';
  return { requestId, certificate };
}

/** Verifies certificate files; returns the lines to print for invalid ones (one line each, printable). */
export function verifyFiles(genesisPath: string, certPaths: string[]): { valid: number; failures: string[] } {
  const genesis = readGenesis(genesisPath);
  const cache = new SignatureCache();
  const failures: string[] = [];
  let valid = 0;
  for (const file of expand(certPaths)) {
    if (typeof file !== 'string') {
      failures.push(`${file.path}: ${file.error.code}: ${file.error.message}`);
      continue;
    }
    let json: unknown;
    try {
      json = readJsonFile(file);
    } catch (e) {
      failures.push(`${file}: ${(e as DropbearError).code ?? 'unreadable'}: ${(e as Error).message}`);
      continue;
    }
    const answer = nodeAnswer(json);
    if (typeof answer === 'string') {
      failures.push(`${file}: malformed: ${answer}`);
      continue;
    }
    const cert = answer ? answer.certificate : json;
    const r = verifyCertificate(cert, genesis, { cache });
    if (!r.ok)
      failures.push(
        `${file}: ${r.reason}: ${r.message}${r.reason === 'malformed' ? kindHint(cert, 'a certificate') : ''}`,
      );
    else if (answer && hex(r.certificate.outcome.requestId) !== answer.requestId.toLowerCase())
      failures.push(
        `${file}: wrong-request: a valid certificate, but for request ${hex(r.certificate.outcome.requestId)}, ` +
          `not ${answer.requestId}`,
      );
    else valid++;
  }
  // One printable line each: a certificate's reason may quote text from the file (an unknown field's
  // name), and a certificate comes from whoever hands it over. Line breaks and a terminal's escapes (move
  // up, erase the line: enough to hide the INVALID line and print "certificates valid") went out as they were.
  return { valid, failures: failures.map((f) => printableLine(f)) };
}

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('verify inference certificates offline against a group genesis')
    .requiredOption('--genesis <file>', 'the group genesis (JSON)')
    .argument(
      '<cert...>',
      "certificate files or folders of them (a node's answer {requestId, certificate}, as GET /v1/certificates/:id returns it, is taken too)",
    )
    .addHelpText(
      'after',
      '\nExample:\n  npx dropbear verify --genesis out/genesis.json out/certificates/\n\n' +
        'Exit status: 0 every certificate valid, 1 any invalid or unreadable (one INVALID line each),\n' +
        '2 an error (one line on stderr: error [CODE]: message; CLI_USAGE for a bad option or argument; no certificate files found is CLI_USAGE).\n',
    )
    .action((certs: string[], opts: { genesis: string }) => {
      const { valid, failures } = verifyFiles(opts.genesis, certs);
      // One line per file, whatever the reason's text holds (a parser may quote the file, newlines included).
      for (const line of failures) process.stdout.write(`INVALID ${line.replace(/\s+/g, ' ')}\n`);
      if (failures.length > 0) {
        process.stdout.write(`${valid} valid, ${failures.length} invalid\n`);
        process.exitCode = 1;
      } else {
        if (valid === 0) throw new DropbearError('CLI_USAGE', 'no certificate files found');
        process.stdout.write(`${valid} certificates valid\n`);
      }
    });
}
