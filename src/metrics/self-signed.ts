import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';

/**
 * A self-signed serving certificate for the secure metrics endpoint when none is mounted, like
 * controller-runtime's fallback (which is documented as "good enough": the point is encryption;
 * scrapers use insecure_skip_verify or pin this certificate). Built with node:crypto alone: an
 * ECDSA P-256 key and a hand-encoded X.509 v3 DER certificate, so no openssl binary is needed in
 * the image.
 */
export interface SelfSignedOptions {
  /** Subject and issuer CN; default `localhost@<unix seconds>` like client-go's. */
  readonly commonName?: string;
  /** subjectAltName DNS names; default ["localhost"]. */
  readonly dnsNames?: readonly string[];
  /** subjectAltName IP addresses; default ["127.0.0.1", "::1"]. */
  readonly ipAddresses?: readonly string[];
  /** Default 365 days (client-go's duration); valid from one hour ago, for clock skew. */
  readonly validityDays?: number;
  /** Default now. */
  readonly now?: Date;
}

export interface CertificateAndKey {
  /** PEM CERTIFICATE. */
  readonly cert: string;
  /** PEM PKCS#8 PRIVATE KEY. */
  readonly key: string;
}

export function selfSignedCertificate(options: SelfSignedOptions = {}): CertificateAndKey {
  const now = options.now ?? new Date();
  const commonName = options.commonName ?? `localhost@${Math.floor(now.getTime() / 1000)}`;
  const dnsNames = options.dnsNames ?? ['localhost'];
  const ipAddresses = options.ipAddresses ?? ['127.0.0.1', '::1'];
  const validityDays = options.validityDays ?? 365;
  const notBefore = new Date(now.getTime() - 3_600_000);
  const notAfter = new Date(now.getTime() + validityDays * 86_400_000);

  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const ecdsaWithSha256 = seq(oid('1.2.840.10045.4.3.2'));
  const name = seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(commonName, 'utf8')))));
  const altNames = [
    ...dnsNames.map((dns) => tlv(0x82, Buffer.from(dns, 'ascii'))),
    ...ipAddresses.map((ip) => tlv(0x87, ipBytes(ip))),
  ];
  const extensions = [
    // basicConstraints, critical: not a CA.
    extension('2.5.29.19', true, seq()),
    // keyUsage, critical: digitalSignature (ECDSA key agreement is not used by TLS 1.2+ ECDHE).
    extension('2.5.29.15', true, tlv(0x03, Buffer.from([0x07, 0x80]))),
    // extKeyUsage: serverAuth.
    extension('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'))),
    ...(altNames.length > 0 ? [extension('2.5.29.17', false, seq(...altNames))] : []),
  ];
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f; // positive
  const tbs = seq(
    tlv(0xa0, integer(Buffer.from([2]))), // v3
    integer(serial),
    ecdsaWithSha256,
    name,
    seq(time(notBefore), time(notAfter)),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    tlv(0xa3, seq(...extensions)),
  );
  const signature = sign('sha256', tbs, privateKey); // DER ECDSA-Sig-Value
  const der = seq(tbs, ecdsaWithSha256, bitString(signature));
  return {
    cert: pem('CERTIFICATE', der),
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

// Minimal DER (ITU-T X.690) encoding: just what a certificate needs.

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function seq(...content: Buffer[]): Buffer {
  return tlv(0x30, ...content);
}

function set(...content: Buffer[]): Buffer {
  return tlv(0x31, ...content);
}

function integer(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0 && ((bytes[start + 1] ?? 0) & 0x80) === 0) {
    start++;
  }
  const trimmed = bytes.subarray(start);
  const positive =
    ((trimmed[0] ?? 0) & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed;
  return tlv(0x02, positive);
}

function bitString(bytes: Buffer): Buffer {
  return tlv(0x03, Buffer.from([0]), bytes);
}

function oid(dotted: string): Buffer {
  const [first = 0, second = 0, ...rest] = dotted.split('.').map(Number);
  const bytes = [first * 40 + second];
  for (const arc of rest) {
    const base128: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) {
      base128.unshift(0x80 | (v & 0x7f));
    }
    bytes.push(...base128);
  }
  return tlv(0x06, Buffer.from(bytes));
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5). */
function time(date: Date): Buffer {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return date.getUTCFullYear() < 2050
    ? tlv(0x17, Buffer.from(digits.slice(2), 'ascii'))
    : tlv(0x18, Buffer.from(digits, 'ascii'));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [tlv(0x01, Buffer.from([0xff]))] : []), tlv(0x04, value));
}

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!isIPv6(ip) || ip.includes('.')) throw new Error(`unsupported IP address "${ip}"`);
  const [head = '', tail] = ip.split('::');
  const groups = (part: string | undefined) => (part ? part.split(':') : []);
  const left = groups(head);
  const right = groups(tail);
  const zeros = tail === undefined ? [] : Array(8 - left.length - right.length).fill('0');
  const out = Buffer.alloc(16);
  [...left, ...zeros, ...right].forEach((group, i) => {
    out.writeUInt16BE(Number.parseInt(group, 16), i * 2);
  });
  return out;
}
