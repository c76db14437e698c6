import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A PEM certificate and key on disk. */
export interface KeyPair {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface SubjectOptions {
  /** Common name: the user name for client certificates. */
  readonly commonName: string;
  /** Organizations: the user's groups for client certificates. */
  readonly organizations?: readonly string[];
}

// openssl is on every machine this project targets and avoids a crypto dependency for tests.
function openssl(args: readonly string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`openssl ${args[0]} failed: ${stderr || String(error)}`);
  }
}

/** Escapes a value for openssl's -subj syntax (/CN=a/O=b). */
function subjectField(value: string): string {
  return value.replace(/[\\/,+="<>#;]/g, (c) => `\\${c}`);
}

function subject({ commonName, organizations = [] }: SubjectOptions): string {
  return [
    ...organizations.map((o) => `/O=${subjectField(o)}`),
    `/CN=${subjectField(commonName)}`,
  ].join('');
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A self-signed certificate authority. */
export function createCa(dir: string, name: string): KeyPair {
  const pair = { certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) };
  openssl([
    'req',
    '-x509',
    ...EC_KEY,
    '-keyout',
    pair.keyFile,
    '-out',
    pair.certFile,
    '-days',
    '365',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
  return pair;
}

export interface LeafOptions extends SubjectOptions {
  readonly usage: 'server' | 'client';
  /** subjectAltName entries such as DNS:localhost or IP:127.0.0.1 (server certificates). */
  readonly altNames?: readonly string[];
}

/** A certificate signed by `ca`, written as `<dir>/<name>.crt` and `.key`. */
export function createLeaf(dir: string, name: string, ca: KeyPair, options: LeafOptions): KeyPair {
  const pair = { certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) };
  const extensions = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${options.usage === 'server' ? 'serverAuth' : 'clientAuth'}`,
  ];
  if (options.altNames?.length) extensions.push(`subjectAltName=${options.altNames.join(',')}`);
  openssl([
    'req',
    '-x509',
    ...EC_KEY,
    '-keyout',
    pair.keyFile,
    '-out',
    pair.certFile,
    '-CA',
    ca.certFile,
    '-CAkey',
    ca.keyFile,
    '-days',
    '365',
    '-subj',
    subject(options),
    ...extensions.flatMap((e) => ['-addext', e]),
  ]);
  return pair;
}

/** An RSA key pair for signing service-account tokens (`sa.key`, `sa.pub`). */
export function createServiceAccountKeys(dir: string): {
  privateKeyFile: string;
  publicKeyFile: string;
} {
  const privateKeyFile = join(dir, 'sa.key');
  const publicKeyFile = join(dir, 'sa.pub');
  openssl([
    'genpkey',
    '-algorithm',
    'RSA',
    '-pkeyopt',
    'rsa_keygen_bits:2048',
    '-out',
    privateKeyFile,
  ]);
  openssl(['pkey', '-in', privateKeyFile, '-pubout', '-out', publicKeyFile]);
  return { privateKeyFile, publicKeyFile };
}

export function readPem(file: string): string {
  return readFileSync(file, 'utf8');
}

export function writePem(file: string, pem: string): void {
  writeFileSync(file, pem, { mode: 0o600 });
}
