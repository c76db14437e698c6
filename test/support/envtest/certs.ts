import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
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

/**
 * Writes `<dir>/<name>.key` (a new P-256 key) and `<dir>/<name>.crt` with the given subject and
 * extensions, self-signed or signed by `issuer`.
 */
function issue(
  dir: string,
  name: string,
  subj: string,
  extensions: readonly string[],
  issuer?: KeyPair,
): KeyPair {
  const pair = { certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) };
  openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    pair.keyFile,
    '-out',
    pair.certFile,
    ...(issuer ? ['-CA', issuer.certFile, '-CAkey', issuer.keyFile] : []),
    '-days',
    '365',
    '-subj',
    subj,
    ...extensions.flatMap((e) => ['-addext', e]),
  ]);
  return pair;
}

/** A self-signed certificate authority. */
export function createCa(dir: string, name: string): KeyPair {
  return issue(dir, name, subject({ commonName: name }), [
    'basicConstraints=critical,CA:TRUE',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
}

export interface LeafOptions extends SubjectOptions {
  readonly usage: 'server' | 'client';
  /** subjectAltName entries such as DNS:localhost or IP:127.0.0.1 (server certificates). */
  readonly altNames?: readonly string[];
}

/** A certificate signed by `ca`, written as `<dir>/<name>.crt` and `.key`. */
export function createLeaf(dir: string, name: string, ca: KeyPair, options: LeafOptions): KeyPair {
  const extensions = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${options.usage === 'server' ? 'serverAuth' : 'clientAuth'}`,
  ];
  if (options.altNames?.length) extensions.push(`subjectAltName=${options.altNames.join(',')}`);
  return issue(dir, name, subject(options), extensions, ca);
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
