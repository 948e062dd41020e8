import { X509Certificate } from 'node:crypto';
import { createCertificateAuthority, issueCertificate } from '../../src/pki/certificates.js';

const hour = 60 * 60 * 1000;

describe('certificates', () => {
  it('issues a serving certificate that chains to the CA and names its hosts', async () => {
    const ca = await createCertificateAuthority('test-ca', 24 * hour);
    const issued = await issueCertificate(ca, { commonName: 'webhook', dnsNames: ['svc.ns.svc'], ipAddresses: ['127.0.0.1'], usage: 'server', validForMs: hour });

    const caCert = new X509Certificate(ca.certPem);
    const cert = new X509Certificate(issued.certPem);
    expect(caCert.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.checkHost('svc.ns.svc')).toBe('svc.ns.svc');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // serverAuth only
    expect(issued.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(cert.checkPrivateKey(await import('node:crypto').then((c) => c.createPrivateKey(issued.keyPem)))).toBe(true);
  });

  it('puts organizations in the subject (Kubernetes groups) and never outlives the CA', async () => {
    const ca = await createCertificateAuthority('short-ca', hour);
    const issued = await issueCertificate(ca, { commonName: 'admin', organizations: ['system:masters'], usage: 'client', validForMs: 100 * hour });
    const cert = new X509Certificate(issued.certPem);
    expect(cert.subject.split('\n')).toEqual(['CN=admin', 'O=system:masters']);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']); // clientAuth only
    expect(new Date(cert.validTo).getTime()).toBeLessThanOrEqual(new Date(new X509Certificate(ca.certPem).validTo).getTime());
  });
});
