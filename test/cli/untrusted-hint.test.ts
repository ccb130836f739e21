/**
 * The hint the CLI gives with NODE_UNTRUSTED (src/cli/http.ts, untrustedCertificateHint): how to trust a
 * private CA only where that is the cause; an expired certificate (or one not yet valid) is the node's to
 * replace, and no CA a client adds makes it trusted.
 */
import { describe, expect, it } from 'vitest';
import { untrustedCertificateHint } from '../../src/cli/http.ts';

describe('untrustedCertificateHint', () => {
  it('a certificate of an unknown CA: how to trust it (NODE_EXTRA_CA_CERTS)', () => {
    for (const cause of [
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      'SELF_SIGNED_CERT_IN_CHAIN',
      'DEPTH_ZERO_SELF_SIGNED_CERT',
    ])
      expect(untrustedCertificateHint(cause)).toMatch(/NODE_EXTRA_CA_CERTS/);
  });

  it('an expired certificate, or one not yet valid: not a CA to add, but a certificate to replace (or a clock)', () => {
    const expired = untrustedCertificateHint('node 0: NETWORK fetch failed (CERT_HAS_EXPIRED)');
    expect(expired).not.toBeNull();
    expect(expired).not.toMatch(/NODE_EXTRA_CA_CERTS/);
    expect(expired).toMatch(/expired/);
    const early = untrustedCertificateHint('CERT_NOT_YET_VALID');
    expect(early).not.toBeNull();
    expect(early).not.toMatch(/NODE_EXTRA_CA_CERTS/);
    expect(early).toMatch(/clock/);
  });

  it('no certificate cause: null', () => {
    expect(untrustedCertificateHint('ECONNREFUSED')).toBeNull();
  });
});
