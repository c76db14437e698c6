// Requests to targets that users choose (http.check's URL, an AgentDefinition's webhook URL) leave
// from the operator's pod, inside the cluster. Everything here makes sure such a request reaches
// only an address the policy checked: the name is resolved once, every address it resolves to is
// checked (address-policy.ts), and the connection goes to those checked addresses only, so a DNS
// server cannot answer differently between the check and the connection.
import { promises as dns } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { abortable } from '../util/abortable.ts';
import {
  type AddressPolicy,
  type AddressPolicyOptions,
  createAddressPolicy,
  type Denied,
  normalizeHost,
  parseIp,
} from './address-policy.ts';

/** Resolves a hostname to every address it has (dns.lookup semantics: /etc/hosts, then DNS). */
export type Resolver = (hostname: string) => Promise<readonly string[]>;

export const systemResolver: Resolver = async (hostname) =>
  (await dns.lookup(hostname, { all: true, order: 'verbatim' })).map((a) => a.address);

export interface TargetVetterOptions extends Omit<AddressPolicyOptions, 'apiServerAddresses'> {
  /**
   * The Kubernetes API server's addresses or hostnames (the in-cluster KUBERNETES_SERVICE_HOST,
   * the host of the kubeconfig's server); names are resolved at each check. Always denied.
   */
  readonly apiServerHosts?: readonly string[] | undefined;
  /** How targets are resolved; default `dns.lookup` with every address. For tests. */
  readonly resolve?: Resolver | undefined;
}

/** Where a request may go: the checked addresses, or why it may not be sent at all. */
export type Vetted = { readonly denied: Denied } | { readonly addresses: readonly string[] };

export interface TargetVetter {
  readonly policy: AddressPolicy;
  /** Resolves `url`'s host once and checks every address; never connects. */
  vet(url: URL, signal: AbortSignal): Promise<Vetted>;
}

export function createTargetVetter(options: TargetVetterOptions = {}): TargetVetter {
  const apiServerHosts = (options.apiServerHosts ?? []).map(normalizeHost).filter((h) => h !== '');
  const policy = createAddressPolicy({
    allowedHosts: options.allowedHosts,
    apiServerAddresses: apiServerHosts.filter((h) => parseIp(h) !== undefined),
    subject: options.subject,
    allowListField: options.allowListField,
  });
  const apiServerNames = apiServerHosts.filter((h) => parseIp(h) === undefined);
  const resolve = options.resolve ?? systemResolver;

  async function resolveApiServer(signal: AbortSignal): Promise<string[]> {
    const answers = await Promise.all(
      apiServerNames.map((name) => abortable(resolve(name), signal).catch(() => [])),
    );
    return answers.flat();
  }

  return {
    policy,
    async vet(url, signal) {
      const hostname = normalizeHost(url.hostname);
      const verdict = policy.checkHost(hostname);
      if (verdict.allowed === false) return { denied: verdict };
      if (verdict.allowed === true) return { addresses: [hostname] };
      // One lookup; the connection uses its answer, so DNS cannot change between check and use.
      const [addresses, apiServer] = await Promise.all([
        abortable(resolve(hostname), signal),
        resolveApiServer(signal),
      ]);
      // The target is the API server by name: whatever it resolved to now is the API server.
      const extra = apiServerNames.includes(hostname) ? [...apiServer, ...addresses] : apiServer;
      const resolved = policy.checkResolved(hostname, addresses, extra);
      return resolved.allowed ? { addresses } : { denied: resolved };
    },
  };
}

/**
 * A `lookup` that answers with the vetted addresses only, whatever it is asked: the socket
 * connects to what the policy checked, while Host and TLS SNI (and certificate verification)
 * keep the URL's hostname.
 */
export function pinnedLookup(addresses: readonly string[]): LookupFunction {
  const all = addresses.map((address) => ({ address, family: isIP(address.split('%')[0] ?? '') }));
  return (hostname, options, callback) => {
    const wanted =
      options.family === 4 || options.family === 6
        ? all.filter((a) => a.family === options.family)
        : all;
    const [first] = wanted;
    if (first === undefined) {
      const error: NodeJS.ErrnoException = new Error(
        `no IPv${options.family} address for ${hostname}`,
      );
      error.code = 'ENOTFOUND';
      callback(error, '', 0);
      return;
    }
    if (options.all) callback(null, wanted);
    else callback(null, first.address, first.family);
  };
}
