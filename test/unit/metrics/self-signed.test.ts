import { createPrivateKey, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { selfSignedCertificate } from '../../../src/metrics/self-signed.ts';

describe('selfSignedCertificate', () => {
  it('makes a valid X.509 v3 certificate signed by its own key', () => {
    const now = new Date('2026-03-01T12:00:00Z');
    const { cert, key } = selfSignedCertificate({ now });
    const x509 = new X509Certificate(cert);
    expect(x509.verify(x509.publicKey)).toBe(true);
    expect(x509.checkPrivateKey(createPrivateKey(key))).toBe(true);
    expect(x509.subject).toBe(`CN=localhost@${Math.floor(now.getTime() / 1000)}`);
    expect(x509.issuer).toBe(x509.subject);
    expect(x509.ca).toBe(false);
    expect(x509.publicKey.asymmetricKeyType).toBe('ec');
    expect(x509.validFromDate.toISOString()).toBe('2026-03-01T11:00:00.000Z');
    expect(x509.validToDate.toISOString()).toBe('2027-03-01T12:00:00.000Z');
    expect(x509.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // node reports extKeyUsage here
    expect(x509.subjectAltName).toBe(
      'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    expect(x509.checkHost('localhost')).toBe('localhost');
    expect(x509.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(x509.checkIP('::1')).toBe('::1');
    expect(x509.checkHost('example.com')).toBeUndefined();
  });

  it('takes names, addresses and validity, and a fresh key and serial every time', () => {
    const a = selfSignedCertificate({
      commonName: 'agentrun-metrics',
      dnsNames: ['agentrun-operator-metrics.agentrun-system.svc', 'localhost'],
      ipAddresses: ['10.0.0.7', 'fd00::1:2'],
      validityDays: 30,
    });
    const b = selfSignedCertificate();
    const x = new X509Certificate(a.cert);
    expect(x.subject).toBe('CN=agentrun-metrics');
    expect(x.checkHost('agentrun-operator-metrics.agentrun-system.svc')).toBeDefined();
    expect(x.checkIP('10.0.0.7')).toBe('10.0.0.7');
    expect(x.checkIP('fd00::1:2')).toBe('fd00::1:2');
    expect(x.validToDate.getTime() - x.validFromDate.getTime()).toBe(30 * 86_400_000 + 3_600_000);
    const y = new X509Certificate(b.cert);
    expect(y.serialNumber).not.toBe(x.serialNumber);
    expect(y.fingerprint256).not.toBe(x.fingerprint256);
    expect(a.key).not.toBe(b.key);
  });

  it('uses GeneralizedTime past 2049', () => {
    const { cert } = selfSignedCertificate({
      now: new Date('2049-12-01T00:00:00Z'),
      validityDays: 100,
    });
    expect(new X509Certificate(cert).validToDate.toISOString()).toBe('2050-03-11T00:00:00.000Z');
  });

  it('rejects IP addresses it cannot encode', () => {
    expect(() => selfSignedCertificate({ ipAddresses: ['not-an-ip'] })).toThrow(/unsupported IP/);
  });

  it('serves TLS that a client pinning the certificate accepts', async () => {
    const pair = selfSignedCertificate();
    const server = createServer({ ...pair, minVersion: 'TLSv1.2' }, (socket) => socket.end('hi'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      for (const target of [
        { host: '127.0.0.1', servername: undefined },
        { host: '127.0.0.1', servername: 'localhost' },
      ]) {
        const socket = connect({
          host: target.host,
          port,
          ca: pair.cert,
          ...(target.servername ? { servername: target.servername } : {}),
        });
        const [data] = (await once(socket, 'data')) as [Buffer];
        expect(data.toString()).toBe('hi');
        expect(socket.authorized).toBe(true);
        socket.destroy();
      }
    } finally {
      server.close();
    }
  });
});
