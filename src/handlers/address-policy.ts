// Which network addresses `http.check` may send its probe to. The AgentRun author picks the URL,
// and the probe leaves from the operator's pod, inside the cluster: without a policy every user who
// may create a run could probe the cloud metadata service, the API server and every private
// service. So, whatever the allow-list says or does not say:
//
// - restricted addresses (loopback, unspecified, link-local, cloud metadata, the API server's own
//   addresses, multicast, reserved/special-purpose) are denied unless an IP or CIDR entry of the
//   allow-list lies inside that very range (e.g. `127.0.0.1`, `169.254.169.254`): hostname
//   entries, wildcards and broad CIDRs such as `0.0.0.0/0` never open them;
// - private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) are denied unless the
//   allow-list names the host, the address or a CIDR containing it;
// - public addresses are allowed when the allow-list is empty, otherwise only when it names the
//   host, the address or a CIDR containing it.
//
// Pure: no DNS, no I/O. The handler resolves names once, asks `checkResolved` about every address,
// and connects to those addresses only (see http-check.ts).
import { isIP } from 'node:net';

export const ADDRESS_CLASSES = [
  'unspecified',
  'loopback',
  'link-local',
  'metadata',
  'api-server',
  'multicast',
  'reserved',
  'private',
  'public',
] as const;
export type AddressClass = (typeof ADDRESS_CLASSES)[number];

/** An IP address as a number: 32 bits for IPv4 (IPv4-mapped IPv6 included), 128 for IPv6. */
export interface Ip {
  readonly family: 4 | 6;
  readonly value: bigint;
}

/** A network: `value` with the low `width - prefix` bits zero. */
export interface Cidr extends Ip {
  readonly prefix: number;
}

const width = (family: 4 | 6): number => (family === 4 ? 32 : 128);

/**
 * Parses an IP address in canonical URL form (what `new URL(...).hostname` gives, brackets
 * allowed) or as DNS returns it. A zone id (`fe80::1%eth0`) is dropped: the address it scopes is
 * what is classified. IPv4-mapped IPv6 (`::ffff:127.0.0.1`) becomes the IPv4 address, since that
 * is where a socket to it goes. Undefined for anything that is not an address.
 */
export function parseIp(text: string): Ip | undefined {
  let s = text;
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const zone = s.indexOf('%');
  if (zone !== -1) s = s.slice(0, zone);
  const family = isIP(s);
  if (family === 4) return { family: 4, value: ipv4Value(s) };
  if (family !== 6) return undefined;
  const value = ipv6Value(s);
  if (value >> 32n === 0xffffn) return { family: 4, value: value & 0xffff_ffffn };
  return { family: 6, value };
}

function ipv4Value(s: string): bigint {
  return s.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

/** `s` is a valid IPv6 address (checked by isIP), zone id removed. */
function ipv6Value(s: string): bigint {
  let text = s;
  // A trailing dotted quad stands for the last two groups.
  const dot = text.lastIndexOf('.');
  if (dot !== -1) {
    const colon = text.lastIndexOf(':');
    const v4 = ipv4Value(text.slice(colon + 1));
    text = `${text.slice(0, colon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(zeros).fill('0'), ...tailGroups];
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(Number.parseInt(group, 16)), 0n);
}

/** `10.0.0.0/8`, `fd00::/8`; undefined when not a CIDR. Throws when host bits are set. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash === -1) return undefined;
  const prefixText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) return undefined;
  const addressText = text.slice(0, slash);
  const family = isIP(addressText);
  if (family === 0) return undefined;
  let prefix = Number(prefixText);
  if (prefix > width(family as 4 | 6)) return undefined;
  const ip = parseIp(addressText);
  if (ip === undefined) return undefined;
  // An IPv4-mapped network (::ffff:10.0.0.0/104) is the IPv4 network it maps.
  if (family === 6 && ip.family === 4) {
    if (prefix < 96) return undefined;
    prefix -= 96;
  }
  const cidr: Cidr = { ...ip, prefix };
  if (networkOf(cidr, prefix).value !== ip.value) {
    throw new Error(`has host bits set; did you mean ${formatCidr(networkOf(cidr, prefix))}?`);
  }
  return cidr;
}

function networkOf(ip: Ip, prefix: number): Cidr {
  const shift = BigInt(width(ip.family) - prefix);
  return { family: ip.family, value: (ip.value >> shift) << shift, prefix };
}

export function contains(network: Cidr, ip: Ip): boolean {
  if (network.family !== ip.family) return false;
  const shift = BigInt(width(ip.family) - network.prefix);
  return ip.value >> shift === network.value >> shift;
}

/** `inner` lies entirely inside `outer`. */
function within(inner: Cidr, outer: Cidr): boolean {
  return inner.prefix >= outer.prefix && contains(outer, inner);
}

export function formatIp(ip: Ip): string {
  if (ip.family === 4) {
    return [24n, 16n, 8n, 0n].map((shift) => String((ip.value >> shift) & 0xffn)).join('.');
  }
  const groups: string[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) {
    groups.push(((ip.value >> shift) & 0xffffn).toString(16));
  }
  // The longest run of two or more zero groups becomes "::" (RFC 5952).
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (best === -1) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLength).join(':')}`;
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIp(cidr)}/${cidr.prefix}`;
}

function cidr(text: string): Cidr {
  const parsed = parseCidr(text);
  if (parsed === undefined) throw new Error(`bad built-in CIDR ${text}`);
  return parsed;
}

/** The special ranges, most specific first; anything else is public. */
const RANGES: ReadonlyArray<readonly [AddressClass, Cidr]> = [
  // Cloud metadata endpoints: AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle...
  ['metadata', cidr('169.254.169.254/32')],
  // AWS ECS task metadata and credentials.
  ['metadata', cidr('169.254.170.2/32')],
  // Alibaba Cloud (inside CGNAT space).
  ['metadata', cidr('100.100.100.200/32')],
  // Azure's WireServer (a public-looking platform address reachable from every VM).
  ['metadata', cidr('168.63.129.16/32')],
  // AWS Nitro IPv6 metadata (inside fc00::/7).
  ['metadata', cidr('fd00:ec2::254/128')],
  ['unspecified', cidr('0.0.0.0/8')],
  ['unspecified', cidr('::/128')],
  ['loopback', cidr('127.0.0.0/8')],
  ['loopback', cidr('::1/128')],
  ['link-local', cidr('169.254.0.0/16')],
  ['link-local', cidr('fe80::/10')],
  ['multicast', cidr('224.0.0.0/4')],
  ['multicast', cidr('ff00::/8')],
  // 240/4 includes the limited broadcast address 255.255.255.255.
  ['reserved', cidr('240.0.0.0/4')],
  ['reserved', cidr('192.0.0.0/24')],
  ['reserved', cidr('192.0.2.0/24')],
  ['reserved', cidr('198.18.0.0/15')],
  ['reserved', cidr('198.51.100.0/24')],
  ['reserved', cidr('203.0.113.0/24')],
  ['private', cidr('10.0.0.0/8')],
  ['private', cidr('172.16.0.0/12')],
  ['private', cidr('192.168.0.0/16')],
  ['private', cidr('100.64.0.0/10')],
  ['private', cidr('64:ff9b:1::/48')],
  ['private', cidr('fc00::/7')],
  // IPv4-compatible (deprecated), discard-only, Teredo, documentation, site-local (deprecated).
  ['reserved', cidr('::/96')],
  ['reserved', cidr('100::/64')],
  ['reserved', cidr('2001::/32')],
  ['reserved', cidr('2001:db8::/32')],
  ['reserved', cidr('fec0::/10')],
];

/** IPv6 ranges that carry an IPv4 address a gateway may forward to: NAT64 and 6to4. */
const NAT64 = cidr('64:ff9b::/96');
const SIX_TO_FOUR = cidr('2002::/16');
const GLOBAL_UNICAST_V6 = cidr('2000::/3');

export interface Classification {
  readonly class: AddressClass;
  /** The range that decided the class; a restricted address opens only to entries inside it. */
  readonly range: Cidr;
}

const host = (ip: Ip): Cidr => ({ ...ip, prefix: width(ip.family) });

/** What kind of address `ip` is; `apiServer` lists the API server's own addresses. */
export function classify(ip: Ip, apiServer: readonly Ip[] = []): Classification {
  if (apiServer.some((a) => a.family === ip.family && a.value === ip.value)) {
    return { class: 'api-server', range: host(ip) };
  }
  for (const [kind, range] of RANGES) {
    if (contains(range, ip)) return { class: kind, range };
  }
  if (ip.family === 6) {
    // What a NAT64 or 6to4 gateway would forward to is what counts.
    const embedded = contains(NAT64, ip)
      ? ip.value & 0xffff_ffffn
      : contains(SIX_TO_FOUR, ip)
        ? (ip.value >> 80n) & 0xffff_ffffn
        : undefined;
    if (embedded !== undefined) {
      const inner = classify({ family: 4, value: embedded }, apiServer);
      return inner.class === 'public'
        ? { class: 'public', range: host(ip) }
        : { ...inner, range: host(ip) };
    }
    if (!contains(GLOBAL_UNICAST_V6, ip)) return { class: 'reserved', range: host(ip) };
  }
  return { class: 'public', range: host(ip) };
}

/** Classes denied whatever hostname or broad entries the allow-list has. */
export const RESTRICTED: ReadonlySet<AddressClass> = new Set<AddressClass>([
  'unspecified',
  'loopback',
  'link-local',
  'metadata',
  'api-server',
  'multicast',
  'reserved',
]);

const DESCRIBED: Record<AddressClass, string> = {
  unspecified: 'an unspecified address',
  loopback: 'a loopback address',
  'link-local': 'a link-local address',
  metadata: 'a cloud metadata address',
  'api-server': "the Kubernetes API server's address",
  multicast: 'a multicast address',
  reserved: 'a reserved or special-purpose address',
  private: 'a private address',
  public: 'a public address',
};

type Entry =
  | { readonly kind: 'host'; readonly host: string }
  | { readonly kind: 'suffix'; readonly suffix: string }
  | { readonly kind: 'network'; readonly network: Cidr };

const hostnameEntry = /^(\*\.)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?\.?$/i;

/**
 * Compiles one allow-list entry: a hostname, `*.domain`, an IP address (IPv6 with or without
 * brackets; IPv4 in any form a URL accepts, e.g. `127.1`) or a CIDR. Throws with the reason.
 */
function compileEntry(entry: string): Entry {
  const usage =
    'must be a hostname, an IP address, a CIDR such as 10.0.0.0/8, or "*.domain" (no scheme, port or path)';
  if (entry.includes('/')) {
    let network: Cidr | undefined;
    try {
      network = parseCidr(entry);
    } catch (error) {
      throw new Error((error as Error).message);
    }
    if (network === undefined) throw new Error(usage);
    return { kind: 'network', network };
  }
  const ip = parseIp(entry);
  if (ip !== undefined && !entry.includes('%')) return { kind: 'network', network: host(ip) };
  if (!hostnameEntry.test(entry)) throw new Error(usage);
  if (entry.startsWith('*.')) return { kind: 'suffix', suffix: normalizeHost(entry.slice(1)) };
  // The URL parser's view of the name, so that `127.1` or `0x7f.0.0.1` is the address it means.
  let canonical: string;
  try {
    canonical = new URL(`http://${entry}/`).hostname;
  } catch {
    throw new Error(usage);
  }
  const canonicalIp = parseIp(canonical);
  if (canonicalIp !== undefined) return { kind: 'network', network: host(canonicalIp) };
  return { kind: 'host', host: normalizeHost(canonical) };
}

/** Why an allow-list entry is unusable, or undefined. Shared with the config file schema. */
export function allowedHostProblem(entry: string): string | undefined {
  try {
    compileEntry(entry);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/** Lowercase, no IPv6 brackets, no trailing root dot: the form both sides are compared in. */
export function normalizeHost(hostname: string): string {
  let h = hostname.toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

export interface AddressPolicyOptions {
  /** `httpCheck.allowedHosts`: hostnames, `*.domain`, IP addresses and CIDRs. */
  readonly allowedHosts?: readonly string[] | undefined;
  /**
   * The Kubernetes API server's own addresses (IPs; names are resolved by the caller and their
   * addresses passed to `checkResolved`). Denied like loopback.
   */
  readonly apiServerAddresses?: readonly string[] | undefined;
  /**
   * Who the policy guards, in messages: `http.check` (the default) or `agent webhook` (the
   * webhooks of AgentDefinitions, docs/agents.md).
   */
  readonly subject?: string | undefined;
  /** The config-file field of the allow-list, in messages; default `httpCheck.allowedHosts`. */
  readonly allowListField?: string | undefined;
}

/** The outcome of a check: allowed, denied with a message, or "resolve the name and ask again". */
export type Verdict = { readonly allowed: true } | Denied;

export interface Denied {
  readonly allowed: false;
  /** Why, and what an admin would change; starts with what is blocked. */
  readonly message: string;
  /** The address that was refused, when an address was the reason. */
  readonly address?: string;
  readonly class?: AddressClass;
}

export type HostVerdict = Verdict | { readonly allowed: 'resolve' };

export interface AddressPolicy {
  /** The allow-list as configured, for messages. */
  readonly allowedHosts: readonly string[];
  /**
   * What can be decided from the URL's hostname alone: an IP address is decided here; a name is
   * denied when the allow-list can never admit it, and otherwise must be resolved.
   */
  checkHost(hostname: string): HostVerdict;
  /**
   * Decides a name from every address it resolved to: one refused address refuses the target.
   * `extraApiServer` adds API server addresses learnt at probe time (its hostname resolved now).
   */
  checkResolved(
    hostname: string,
    addresses: readonly string[],
    extraApiServer?: readonly string[],
  ): Verdict;
}

const MAX_LISTED_HOSTS = 20;
const ALLOWED: Verdict = { allowed: true };
export const POLICY_PREFIX = "blocked by the operator's http.check policy";
/** The subject and allow-list field of the policy for AgentDefinition webhooks. */
export const AGENT_WEBHOOK_POLICY = {
  subject: 'agent webhook',
  allowListField: 'agentDefinitions.allowedHosts',
} as const;

/** The prefix of every refusal by a policy guarding `subject`. */
export function policyPrefix(subject: string): string {
  return `blocked by the operator's ${subject} policy`;
}

export function createAddressPolicy(options: AddressPolicyOptions = {}): AddressPolicy {
  const subject = options.subject ?? 'http.check';
  const field = options.allowListField ?? 'httpCheck.allowedHosts';
  const prefix = policyPrefix(subject);
  const allowedHosts = options.allowedHosts ?? [];
  const entries = allowedHosts.map((entry) => {
    try {
      return compileEntry(entry);
    } catch (error) {
      const what = field === 'httpCheck.allowedHosts' ? 'http.check allowedHosts' : field;
      throw new Error(`${what} entry ${JSON.stringify(entry)} ${(error as Error).message}`);
    }
  });
  const exact = new Set<string>();
  const suffixes: string[] = [];
  const networks: Cidr[] = [];
  for (const entry of entries) {
    if (entry.kind === 'host') exact.add(entry.host);
    else if (entry.kind === 'suffix') suffixes.push(entry.suffix);
    else networks.push(entry.network);
  }
  const apiServer = (options.apiServerAddresses ?? []).flatMap((a) => parseIp(a) ?? []);

  const hostListed = (hostname: string): boolean => {
    const h = normalizeHost(hostname);
    return exact.has(h) || suffixes.some((suffix) => h.endsWith(suffix));
  };

  const listedText = (): string => {
    const listed = allowedHosts.slice(0, MAX_LISTED_HOSTS).join(', ');
    const more =
      allowedHosts.length > MAX_LISTED_HOSTS
        ? ` and ${allowedHosts.length - MAX_LISTED_HOSTS} more`
        : '';
    return `${listed}${more}`;
  };

  const notListed = (hostname: string): Denied => ({
    allowed: false,
    message: `host "${hostname}" is not allowed by the operator's ${subject} allow-list (allowed: ${listedText()})`,
  });

  /** `name` is the URL's hostname when it is a name, for "x resolves to y". */
  const checkAddress = (
    ip: Ip,
    name: string | undefined,
    hostMatched: boolean,
    api: readonly Ip[],
  ): Verdict => {
    const { class: kind, range } = classify(ip, api);
    const address = formatIp(ip);
    const what = name === undefined ? address : `${name} resolves to ${address}`;
    if (RESTRICTED.has(kind)) {
      if (networks.some((n) => contains(n, ip) && within(n, range))) return ALLOWED;
      const exactOnly = range.prefix === width(range.family);
      const how = exactOnly
        ? `only an ${field} entry naming exactly ${address} opens it`
        : `only an ${field} entry naming ${address} or a CIDR inside ${formatCidr(range)} opens it (hostnames and wider CIDRs do not)`;
      return {
        allowed: false,
        message: `${prefix}: ${what}, ${DESCRIBED[kind]}; ${how}`,
        address,
        class: kind,
      };
    }
    if (networks.some((n) => contains(n, ip))) return ALLOWED;
    if (hostMatched) return ALLOWED;
    if (kind === 'public' && entries.length === 0) return ALLOWED;
    if (kind === 'private') {
      return {
        allowed: false,
        message: `${prefix}: ${what}, ${DESCRIBED[kind]}; private addresses are ${subject === 'http.check' ? 'probed' : 'reached'} only when ${field} lists the host, the address or a CIDR containing it`,
        address,
        class: kind,
      };
    }
    if (name === undefined) return { ...notListed(address), address, class: kind };
    return {
      allowed: false,
      message: `host "${name}" (${address}) is not allowed by the operator's ${subject} allow-list (allowed: ${listedText()})`,
      address,
      class: kind,
    };
  };

  return {
    allowedHosts,
    checkHost(hostname) {
      const ip = parseIp(hostname);
      if (ip !== undefined) return checkAddress(ip, undefined, false, apiServer);
      // A name not listed can only get in through an IP or CIDR entry its addresses match.
      if (entries.length > 0 && !hostListed(hostname) && networks.length === 0) {
        return notListed(hostname);
      }
      return { allowed: 'resolve' };
    },
    checkResolved(hostname, addresses, extraApiServer = []) {
      const ipHost = parseIp(hostname);
      if (ipHost !== undefined) return checkAddress(ipHost, undefined, false, apiServer);
      const api = [...apiServer, ...extraApiServer.flatMap((a) => parseIp(a) ?? [])];
      const name = normalizeHost(hostname);
      const hostMatched = hostListed(hostname);
      if (addresses.length === 0) {
        return { allowed: false, message: `${prefix}: ${name} resolved to no address` };
      }
      for (const text of addresses) {
        const ip = parseIp(text);
        if (ip === undefined) {
          return {
            allowed: false,
            message: `${prefix}: ${name} resolved to ${JSON.stringify(text)}, not an IP address`,
          };
        }
        const verdict = checkAddress(ip, name, hostMatched, api);
        if (!verdict.allowed) return verdict;
      }
      return ALLOWED;
    },
  };
}
