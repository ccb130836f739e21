/**
 * Test TLS material made with openssl. Tests that need it skip where openssl is missing (with a warning),
 * except under CI or DROPBEAR_REQUIRE_OPENSSL (`.ci/run` installs it): there they run, and fail without it.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const opensslFound = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const opensslRequired = Boolean(process.env.CI || process.env.DROPBEAR_REQUIRE_OPENSSL);
if (!opensslFound && !opensslRequired) console.warn('TLS tests skipped: no openssl on the PATH');
/** Whether the tests that make TLS material with openssl run here (see the top of the file). */
export const haveOpenssl = opensslFound || opensslRequired;

/** A self-signed P-256 certificate made with openssl in `dir`: `<name>.key` and `<name>.crt`, CN `name`. */
export function selfSignedCert(dir: string, name: string): { keyFile: string; certFile: string } {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '1',
      '-subj',
      `/CN=${name}`,
    ],
    { stdio: 'ignore' },
  );
  return { keyFile, certFile };
}

/**
 * A P-256 certificate `<name>.crt` (key `<name>.key`, CN `name`) made with `openssl ca` in `dir`: signed by
 * `issuer` (a certificate and its key, e.g. from selfSignedCert), or by its own key when `issuer` is null,
 * valid from `startDate` to `endDate` (openssl's YYYYMMDDHHMMSSZ; default: from a day ago for two days), naming
 * `altNames` as its subjectAltName (openssl's syntax: `IP:127.0.0.1`, `DNS:localhost`; default none), which an
 * HTTPS client checks the host it dialled against.
 */
export function issuedCert(
  dir: string,
  name: string,
  issuer: { keyFile: string; certFile: string } | null,
  dates: { startDate?: string; endDate?: string } = {},
  altNames: string[] = [],
): { keyFile: string; certFile: string } {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  const csr = join(dir, `${name}.csr`);
  const db = join(dir, `${name}-ca`);
  mkdirSync(db);
  writeFileSync(join(db, 'index.txt'), '');
  writeFileSync(join(db, 'serial'), `${randomBytes(8).toString('hex')}\n`);
  const cnf = join(db, 'ca.cnf');
  writeFileSync(
    cnf,
    `[ca]\ndefault_ca = d\n[d]\ndatabase = ${db}/index.txt\nnew_certs_dir = ${db}\nserial = ${db}/serial\n` +
      'default_md = sha256\npolicy = p\nunique_subject = no\n' +
      (altNames.length > 0 ? `x509_extensions = x\n[x]\nsubjectAltName = ${altNames.join(',')}\n` : '') +
      '[p]\ncommonName = supplied\n',
  );
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  run(
    ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'].concat([
      '-keyout',
      keyFile,
      '-out',
      csr,
      '-subj',
      `/CN=${name}`,
    ]),
  );
  const stamp = (d: Date) => `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
  const day = 86_400_000;
  run([
    'ca',
    '-batch',
    '-notext',
    '-config',
    cnf,
    '-in',
    csr,
    '-out',
    certFile,
    '-startdate',
    dates.startDate ?? stamp(new Date(Date.now() - day)),
    '-enddate',
    dates.endDate ?? stamp(new Date(Date.now() + day)),
    ...(issuer ? ['-cert', issuer.certFile, '-keyfile', issuer.keyFile] : ['-selfsign', '-keyfile', keyFile]),
  ]);
  return { keyFile, certFile };
}
