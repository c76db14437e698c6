import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { yaml } from '../util/yaml.ts';
import { isRecord } from './kube-object.ts';

/**
 * How to reach and authenticate to one API server, as the operator's KubeClient needs it: read
 * from kubeconfig files or the pod's service account, like kubectl and client-go, without
 * loading @kubernetes/client-node (its import alone costs ~25 MiB of heap: docs/performance.md).
 */
export interface ClusterAccess {
  /** The API server's URL, without a trailing slash; may carry a path prefix (a proxy). */
  readonly server: string;
  readonly tls: TlsSettings;
  /** The namespace the context names (or the pod's own, in-cluster); undefined when none. */
  readonly namespace: string | undefined;
  /** The credentials sent with each request (tokens rotate, so asked per request). */
  readonly auth: Authenticator;
}

/** TLS settings of the connection to the API server (node:tls option names). */
export interface TlsSettings {
  /** PEM of the CA(s) to trust; undefined: the system's. */
  readonly ca?: Buffer | undefined;
  /** Client certificate and key (PEM), for certificate authentication. */
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
  /** false only for insecure-skip-tls-verify. */
  readonly rejectUnauthorized: boolean;
  /** tls-server-name: the name to verify the server's certificate against (and SNI). */
  readonly servername?: string | undefined;
}

/**
 * Supplies the Authorization header of the next request. Static credentials answer
 * synchronously, so the hot path makes no extra turn of the event loop for them.
 */
export interface Authenticator {
  authorization(): string | undefined | Promise<string | undefined>;
}

/** Where loadClusterAccess looks; every field has the real default (overridable for tests). */
export interface LoadOptions {
  /**
   * The operator's KUBECONFIG setting: a kubeconfig file, or several separated by ':' (merged
   * like kubectl's). Empty or undefined: kubectl's rules (see loadClusterAccess).
   */
  readonly kubeconfig?: string | undefined;
  /** A context other than the current one. */
  readonly context?: string | undefined;
  /** Default process.env (KUBECONFIG, KUBERNETES_SERVICE_HOST/PORT). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Default os.homedir(): ~/.kube/config. */
  readonly home?: string;
  /** Default /var/run/secrets/kubernetes.io/serviceaccount. */
  readonly serviceAccountDir?: string;
  /** How often a token file is read again; default 60 s, client-go's period for bound tokens. */
  readonly tokenRefreshMs?: number;
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const TOKEN_REFRESH_MS = 60_000;

/**
 * The cluster access of the operator, found in the order it has always used (client-node's
 * loadFromFile / loadFromDefault, documented in docs/configuration.md):
 *
 * 1. `options.kubeconfig` (the KUBECONFIG setting) when set;
 * 2. else $KUBECONFIG;
 * 3. else ~/.kube/config, if it exists;
 * 4. else the pod's service account (in-cluster), if its token file exists;
 * 5. else http://localhost:8080 without credentials (what client-node falls back to).
 *
 * Several kubeconfig files merge like kubectl's: the first file that names a cluster, user or
 * context wins for that name, and the first current-context set wins. Throws an Error that names
 * the file and the missing piece when the chosen context cannot be used.
 */
export function loadClusterAccess(options: LoadOptions = {}): ClusterAccess {
  const env = options.env ?? process.env;
  const refreshMs = options.tokenRefreshMs ?? TOKEN_REFRESH_MS;
  const list = options.kubeconfig || env['KUBECONFIG'] || '';
  const files = list.split(delimiter).filter((file) => file !== '');
  if (files.length > 0) return fromKubeconfig(readKubeconfigs(files), options.context, refreshMs);
  const home = options.home ?? homedir();
  const defaultFile = join(home, '.kube', 'config');
  if (home && existsSync(defaultFile)) {
    return fromKubeconfig(readKubeconfigs([defaultFile]), options.context, refreshMs);
  }
  const serviceAccountDir = options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  if (existsSync(join(serviceAccountDir, 'token'))) {
    return inClusterAccess(env, serviceAccountDir, refreshMs);
  }
  return {
    server: 'http://localhost:8080',
    tls: { rejectUnauthorized: true },
    namespace: undefined,
    auth: NO_AUTH,
  };
}

/**
 * The pod's own service account: KUBERNETES_SERVICE_HOST/PORT, its CA, its namespace and its
 * token file, which the kubelet rewrites as the bound token rotates (hence read again).
 */
export function inClusterAccess(
  env: Readonly<Record<string, string | undefined>> = process.env,
  serviceAccountDir: string = SERVICE_ACCOUNT_DIR,
  tokenRefreshMs: number = TOKEN_REFRESH_MS,
): ClusterAccess {
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'];
  if (!host || !port) {
    throw new Error(
      'in-cluster configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set',
    );
  }
  // client-node's rule, kept: these ports are plain HTTP (kubectl proxy and friends).
  const scheme = port === '80' || port === '8080' || port === '8001' ? 'http' : 'https';
  const hostPart = host.includes(':') ? `[${host}]` : host;
  const caFile = join(serviceAccountDir, 'ca.crt');
  const namespaceFile = join(serviceAccountDir, 'namespace');
  return {
    server: `${scheme}://${hostPart}:${port}`,
    tls: {
      ...(existsSync(caFile) ? { ca: readFileSync(caFile) } : {}),
      rejectUnauthorized: true,
    },
    namespace: existsSync(namespaceFile) ? readFileSync(namespaceFile, 'utf8').trim() : undefined,
    auth: new TokenFileAuth(join(serviceAccountDir, 'token'), tokenRefreshMs),
  };
}

/** The kubeconfig fields we read, keyed by name, after merging and resolving relative paths. */
export interface Kubeconfig {
  /** The files read, for error messages. */
  readonly files: readonly string[];
  readonly clusters: ReadonlyMap<string, Readonly<Record<string, unknown>>>;
  readonly users: ReadonlyMap<string, Readonly<Record<string, unknown>>>;
  readonly contexts: ReadonlyMap<string, Readonly<Record<string, unknown>>>;
  readonly currentContext: string | undefined;
}

/** File paths relative to the kubeconfig that names them (kubectl resolves them so too). */
const PATH_FIELDS = {
  cluster: ['certificate-authority'],
  user: ['client-certificate', 'client-key', 'tokenFile', 'token-file'],
} as const;

/** Reads and merges kubeconfig files, the first file winning per name (kubectl's rule). */
export function readKubeconfigs(files: readonly string[]): Kubeconfig {
  const clusters = new Map<string, Record<string, unknown>>();
  const users = new Map<string, Record<string, unknown>>();
  const contexts = new Map<string, Record<string, unknown>>();
  let currentContext: string | undefined;
  for (const file of files) {
    let document: unknown;
    try {
      document = yaml().parse(readFileSync(file, 'utf8'));
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`kubeconfig ${file}: ${reason}`, { cause: error });
    }
    // An empty file is an empty kubeconfig (kubectl accepts it too).
    if (document === null || document === undefined) continue;
    if (!isRecord(document)) throw new Error(`kubeconfig ${file}: not a YAML mapping`);
    const dir = dirname(file);
    addNamed(clusters, document['clusters'], 'cluster', (entry) =>
      absolutePaths(entry, PATH_FIELDS.cluster, dir),
    );
    addNamed(users, document['users'], 'user', (entry) =>
      absolutePaths(entry, PATH_FIELDS.user, dir),
    );
    addNamed(contexts, document['contexts'], 'context', (entry) => entry);
    const current = document['current-context'];
    if (currentContext === undefined && typeof current === 'string' && current !== '') {
      currentContext = current;
    }
  }
  return { files, clusters, users, contexts, currentContext };
}

function addNamed(
  into: Map<string, Record<string, unknown>>,
  list: unknown,
  field: 'cluster' | 'user' | 'context',
  resolve: (entry: Record<string, unknown>) => Record<string, unknown>,
): void {
  if (!Array.isArray(list)) return;
  for (const item of list) {
    if (!isRecord(item) || typeof item['name'] !== 'string' || into.has(item['name'])) continue;
    const entry = item[field];
    into.set(item['name'], resolve(isRecord(entry) ? entry : {}));
  }
}

function absolutePaths(
  entry: Record<string, unknown>,
  fields: readonly string[],
  dir: string,
): Record<string, unknown> {
  const resolved = { ...entry };
  for (const field of fields) {
    const value = resolved[field];
    if (typeof value === 'string' && value !== '' && !isAbsolute(value)) {
      resolved[field] = join(dir, value);
    }
  }
  return resolved;
}

/** The access a (merged) kubeconfig gives through `contextName`, default its current context. */
export function fromKubeconfig(
  config: Kubeconfig,
  contextName?: string,
  tokenRefreshMs: number = TOKEN_REFRESH_MS,
): ClusterAccess {
  const where = `kubeconfig ${config.files.join(delimiter)}`;
  const name = contextName ?? config.currentContext;
  if (!name) throw new Error(`${where}: no current-context is set`);
  const context = config.contexts.get(name);
  if (!context) throw new Error(`${where}: context "${name}" is not defined`);
  const clusterName = stringField(context, 'cluster');
  const cluster = clusterName ? config.clusters.get(clusterName) : undefined;
  if (!clusterName || !cluster) {
    throw new Error(`${where}: context "${name}" names no defined cluster (${clusterName ?? '-'})`);
  }
  const server = stringField(cluster, 'server');
  if (!server) throw new Error(`${where}: cluster "${clusterName}" has no server`);
  const userName = stringField(context, 'user');
  const user = userName ? config.users.get(userName) : undefined;
  if (userName && !user)
    throw new Error(`${where}: context "${name}" names an undefined user "${userName}"`);
  const what = (field: string) => `${where}: ${field}`;
  const userEntry = user ?? {};
  return {
    server: server.replace(/\/+$/, ''),
    tls: {
      ca: pem(cluster, 'certificate-authority', what),
      cert: pem(userEntry, 'client-certificate', what),
      key: pem(userEntry, 'client-key', what),
      rejectUnauthorized: cluster['insecure-skip-tls-verify'] !== true,
      servername: stringField(cluster, 'tls-server-name'),
    },
    namespace: stringField(context, 'namespace'),
    auth: authenticatorOf(userEntry, tokenRefreshMs, what),
  };
}

function stringField(entry: Readonly<Record<string, unknown>>, field: string): string | undefined {
  const value = entry[field];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** `<field>-data` (base64 PEM) wins over `<field>` (a file), as in client-go. */
function pem(
  entry: Readonly<Record<string, unknown>>,
  field: string,
  what: (field: string) => string,
): Buffer | undefined {
  const data = stringField(entry, `${field}-data`);
  if (data) return Buffer.from(data, 'base64');
  const file = stringField(entry, field);
  if (!file) return undefined;
  try {
    return readFileSync(file);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`${what(field)}: cannot read ${file}: ${reason}`, { cause: error });
  }
}

/**
 * client-go's order: a token, else a token file, else basic auth; exec plugins and
 * auth-providers are left to client-node, loaded only for them (LazyClientNodeAuth).
 */
function authenticatorOf(
  user: Readonly<Record<string, unknown>>,
  tokenRefreshMs: number,
  what: (field: string) => string,
): Authenticator {
  const token = stringField(user, 'token');
  if (token) return staticAuth(`Bearer ${token}`);
  const tokenFile = stringField(user, 'tokenFile') ?? stringField(user, 'token-file');
  if (tokenFile) return new TokenFileAuth(tokenFile, tokenRefreshMs, what('tokenFile'));
  if (isRecord(user['exec']) || isRecord(user['auth-provider']))
    return new LazyClientNodeAuth(user);
  const username = stringField(user, 'username');
  if (username) {
    const password = stringField(user, 'password') ?? '';
    return staticAuth(`Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`);
  }
  return NO_AUTH;
}

export const NO_AUTH: Authenticator = { authorization: () => undefined };

export function staticAuth(header: string): Authenticator {
  return { authorization: () => header };
}

/**
 * A bearer token read from a file, and read again once `refreshMs` has passed since the last read
 * (at the next request): bound service-account tokens rotate, the kubelet rewriting the file well
 * before the old token expires. Not on every request: that would be a file read per API call.
 * A failed re-read keeps the last token.
 */
export class TokenFileAuth implements Authenticator {
  readonly #file: string;
  readonly #refreshMs: number;
  #header: string;
  #readAt: number;

  constructor(file: string, refreshMs: number = TOKEN_REFRESH_MS, what = `token file ${file}`) {
    this.#file = file;
    this.#refreshMs = refreshMs;
    let token: string;
    try {
      token = readFileSync(file, 'utf8').trim();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`${what}: cannot read ${file}: ${reason}`, { cause: error });
    }
    this.#header = `Bearer ${token}`;
    this.#readAt = performance.now();
  }

  authorization(): string {
    const now = performance.now();
    if (now - this.#readAt >= this.#refreshMs) {
      this.#readAt = now;
      try {
        const token = readFileSync(this.#file, 'utf8').trim();
        if (token) this.#header = `Bearer ${token}`;
      } catch {
        // Mid-rotation, or gone for a moment: the last token is still the best guess.
      }
    }
    return this.#header;
  }
}

/**
 * The part of client-node's KubeConfig that an exec plugin or auth-provider needs: structural, so
 * that this module never imports client-node itself.
 */
interface ClientNodeKubeConfig {
  loadFromOptions(options: unknown): void;
  applyToHTTPSOptions(options: { headers?: Record<string, unknown> }): Promise<void>;
}

/**
 * Exec credential plugins (cloud logins) and auth-providers, through client-node, which runs the
 * plugin and caches its credentials until they expire. client-node is imported on first use, so
 * that the common cases (tokens, certificates) never load it. Only the Authorization header is
 * taken: a plugin that answers with a client certificate instead of a token is not supported.
 */
export class LazyClientNodeAuth implements Authenticator {
  readonly #user: Readonly<Record<string, unknown>>;
  #config: Promise<ClientNodeKubeConfig> | undefined;

  constructor(user: Readonly<Record<string, unknown>>) {
    this.#user = user;
  }

  async authorization(): Promise<string | undefined> {
    // A failed import is tried again on the next request rather than remembered.
    this.#config ??= this.#load().catch((error: unknown) => {
      this.#config = undefined;
      throw error;
    });
    const options: { headers?: Record<string, unknown> } = { headers: {} };
    await (await this.#config).applyToHTTPSOptions(options);
    const header = options.headers?.['Authorization'] ?? options.headers?.['authorization'];
    return header === undefined ? undefined : String(header);
  }

  async #load(): Promise<ClientNodeKubeConfig> {
    const { KubeConfig } = await import('@kubernetes/client-node');
    const config: ClientNodeKubeConfig = new KubeConfig();
    // Only the user matters here: the connection itself is ours.
    config.loadFromOptions({
      clusters: [{ name: 'cluster', server: 'https://unused.invalid', skipTLSVerify: false }],
      users: [
        { name: 'user', exec: this.#user['exec'], authProvider: this.#user['auth-provider'] },
      ],
      contexts: [{ name: 'context', cluster: 'cluster', user: 'user' }],
      currentContext: 'context',
    });
    return config;
  }
}
