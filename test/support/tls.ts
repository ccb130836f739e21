/** Test TLS material made with openssl (tests that need it skip where openssl is missing). */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

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
