// The http.check address policy, without DNS or sockets. The URL-level bad-input cases live in the
// corpus (test/corpus/http-check/, run by http-check-corpus.test.ts); this file covers the parts.
import { describe, expect, it } from 'vitest';
import {
  allowedHostProblem,
  classify,
  createAddressPolicy,
  formatCidr,
  formatIp,
  parseCidr,
  parseIp,
} from '../../../src/handlers/address-policy.ts';

function ip(text: string) {
  const parsed = parseIp(text);
  if (parsed === undefined) throw new Error(`not an IP: ${text}`);
  return parsed;
}

describe('parseIp', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1', 4],
    ['[::1]', '::1', 6],
    ['::ffff:127.0.0.1', '127.0.0.1', 4],
    ['::FFFF:7f00:1', '127.0.0.1', 4],
    ['0:0:0:0:0:ffff:a9fe:a9fe', '169.254.169.254', 4],
    ['fe80::1%eth0', 'fe80::1', 6],
    ['fe80::1%25eth0', 'fe80::1', 6],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 6],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3', 6],
    ['::', '::', 6],
    ['64:ff9b::127.0.0.1', '64:ff9b::7f00:1', 6],
  ])('reads %s as %s', (text, formatted, family) => {
    const parsed = ip(text);
    expect(parsed.family).toBe(family);
    expect(formatIp(parsed)).toBe(formatted);
  });

  it.each(['localhost', '127.1', '2130706433', '0x7f.0.0.1', '256.0.0.1', '', '[::1', '1::2::3'])(
    'does not take %j for an address (URL parsing normalises such hosts first)',
    (text) => {
      expect(parseIp(text)).toBeUndefined();
    },
  );
});

describe('parseCidr', () => {
  it.each([
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['127.0.0.1/32', '127.0.0.1/32'],
    ['fd00::/8', 'fd00::/8'],
    ['::/0', '::/0'],
    ['::ffff:10.0.0.0/104', '10.0.0.0/8'],
  ])('reads %s', (text, formatted) => {
    const parsed = parseCidr(text);
    expect(parsed && formatCidr(parsed)).toBe(formatted);
  });

  it.each(['10.0.0.0', '10.0.0.0/33', 'fd00::/129', '10.0.0.0/', '10.0.0.0/x', 'example.com/8'])(
    'does not take %j for a CIDR',
    (text) => {
      expect(parseCidr(text)).toBeUndefined();
    },
  );

  it('refuses host bits, suggesting the network', () => {
    expect(() => parseCidr('10.0.0.1/8')).toThrow('has host bits set; did you mean 10.0.0.0/8?');
    expect(() => parseCidr('fd00::1/8')).toThrow('did you mean fd00::/8?');
  });
});

describe('classify', () => {
  it.each([
    ['127.0.0.1', 'loopback', '127.0.0.0/8'],
    ['::1', 'loopback', '::1/128'],
    ['::ffff:127.0.0.1', 'loopback', '127.0.0.0/8'],
    ['0.0.0.0', 'unspecified', '0.0.0.0/8'],
    ['::', 'unspecified', '::/128'],
    ['169.254.169.254', 'metadata', '169.254.169.254/32'],
    ['::ffff:169.254.169.254', 'metadata', '169.254.169.254/32'],
    ['fd00:ec2::254', 'metadata', 'fd00:ec2::254/128'],
    ['169.254.0.1', 'link-local', '169.254.0.0/16'],
    ['fe80::abcd', 'link-local', 'fe80::/10'],
    ['fe80::1%eth0', 'link-local', 'fe80::/10'],
    ['224.0.0.251', 'multicast', '224.0.0.0/4'],
    ['ff05::2', 'multicast', 'ff00::/8'],
    ['255.255.255.255', 'reserved', '240.0.0.0/4'],
    ['10.1.2.3', 'private', '10.0.0.0/8'],
    ['172.20.0.1', 'private', '172.16.0.0/12'],
    ['192.168.0.1', 'private', '192.168.0.0/16'],
    ['100.64.0.1', 'private', '100.64.0.0/10'],
    ['fd00:ec2::253', 'private', 'fc00::/7'],
    ['64:ff9b::a00:1', 'private', '64:ff9b::a00:1/128'],
    ['2002:a9fe:a9fe::', 'metadata', '2002:a9fe:a9fe::/128'],
    ['8.8.8.8', 'public', '8.8.8.8/32'],
    ['2606:4700::1111', 'public', '2606:4700::1111/128'],
  ])('%s is %s (range %s)', (text, kind, range) => {
    const got = classify(ip(text));
    expect([got.class, formatCidr(got.range)]).toEqual([kind, range]);
  });

  it("puts the API server's addresses first, in any spelling", () => {
    const api = [ip('10.96.0.1'), ip('fd00:10:96::1')];
    expect(classify(ip('10.96.0.1'), api).class).toBe('api-server');
    expect(classify(ip('::ffff:10.96.0.1'), api).class).toBe('api-server');
    expect(classify(ip('fd00:10:96:0::1'), api).class).toBe('api-server');
    expect(classify(ip('10.96.0.2'), api).class).toBe('private');
  });
});

describe('allow-list entries', () => {
  it.each([
    'status.example.com',
    '*.svc.cluster.local',
    'status.example.com.',
    '10.0.0.5',
    '127.1',
    '::1',
    '[::1]',
    '10.0.0.0/8',
    'fd00::/8',
    '0.0.0.0/0',
  ])('takes %j', (entry) => {
    expect(allowedHostProblem(entry)).toBeUndefined();
  });

  it.each([
    'https://example.com',
    'example.com/path',
    'user@example.com',
    'example.com:443',
    '',
    '*',
    'fe80::1%eth0',
    '999.1.1.1',
    '10.0.0.0/33',
    '10.0.0.0/',
  ])('refuses %j', (entry) => {
    expect(allowedHostProblem(entry)).toBe(
      'must be a hostname, an IP address, a CIDR such as 10.0.0.0/8, or "*.domain" (no scheme, port or path)',
    );
  });

  it('explains a CIDR with host bits', () => {
    expect(allowedHostProblem('10.0.0.1/8')).toBe('has host bits set; did you mean 10.0.0.0/8?');
  });

  it('refuses to build a policy from an unusable entry, naming it', () => {
    expect(() => createAddressPolicy({ allowedHosts: ['ok.example', 'http://x'] })).toThrow(
      'http.check allowedHosts entry "http://x" must be a hostname, an IP address, a CIDR',
    );
  });
});

describe('createAddressPolicy', () => {
  it('decides addresses at once and leaves names to DNS by default', () => {
    const policy = createAddressPolicy();
    expect(policy.checkHost('8.8.8.8')).toEqual({ allowed: true });
    expect(policy.checkHost('[2606:4700::1111]')).toEqual({ allowed: true });
    expect(policy.checkHost('example.com')).toEqual({ allowed: 'resolve' });
    expect(policy.checkHost('127.0.0.1')).toMatchObject({ allowed: false, class: 'loopback' });
  });

  it('refuses a name at once when only hostname entries exist and none matches', () => {
    const policy = createAddressPolicy({ allowedHosts: ['status.example.com'] });
    expect(policy.checkHost('other.example')).toEqual({
      allowed: false,
      message:
        'host "other.example" is not allowed by the operator\'s http.check allow-list (allowed: status.example.com)',
    });
    // With an IP or CIDR entry its addresses might be listed: ask DNS.
    const withCidr = createAddressPolicy({ allowedHosts: ['status.example.com', '10.0.0.0/8'] });
    expect(withCidr.checkHost('other.example')).toEqual({ allowed: 'resolve' });
  });

  it('refuses a whole name when any one of its addresses is refused', () => {
    const policy = createAddressPolicy();
    expect(policy.checkResolved('rebind.example', ['8.8.8.8', '127.0.0.1'])).toEqual({
      allowed: false,
      message:
        "blocked by the operator's http.check policy: rebind.example resolves to 127.0.0.1, a loopback address; only an httpCheck.allowedHosts entry naming 127.0.0.1 or a CIDR inside 127.0.0.0/8 opens it (hostnames and wider CIDRs do not)",
      address: '127.0.0.1',
      class: 'loopback',
    });
  });

  it('treats the addresses of an API server name learnt at probe time as the API server', () => {
    const policy = createAddressPolicy({ allowedHosts: ['*.example.com'] });
    expect(policy.checkResolved('api.example.com', ['93.184.215.14'])).toEqual({ allowed: true });
    expect(
      policy.checkResolved('api.example.com', ['93.184.215.14'], ['93.184.215.14']),
    ).toMatchObject({
      allowed: false,
      class: 'api-server',
      message:
        "blocked by the operator's http.check policy: api.example.com resolves to 93.184.215.14, the Kubernetes API server's address; only an httpCheck.allowedHosts entry naming exactly 93.184.215.14 opens it",
    });
  });

  it('caps the entries it lists', () => {
    const allowedHosts = Array.from({ length: 30 }, (_, i) => `h${i}.example`);
    const verdict = createAddressPolicy({ allowedHosts }).checkHost('other.example');
    expect(verdict.allowed === false && verdict.message).toContain('h19.example and 10 more)');
    expect(verdict.allowed === false && verdict.message).not.toContain('h20.example');
  });
});
