import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  builtinHandlers,
  HandlersConfigError,
  loadHandlersConfig,
  parseHandlersConfig,
  summarizeHandlersConfig,
} from '../../../src/handlers/handlers-config.ts';

let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'handlers-config-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const exampleYaml = `
# Admin-only: webhook URLs and credentials never come from AgentRuns.
webhooks:
  - name: ticket-bot
    url: https://tickets.example/hooks/agentrun
    timeoutMs: 10000
    description: Opens a ticket
    headers:
      Authorization: Bearer s3cret
  - name: deploy.bot
    url: http://deployer.tools.svc:8080/run
httpCheck:
  allowedHosts:
    - status.example.com
    - "*.svc.cluster.local"
`;

function parseError(text: string): string {
  try {
    parseHandlersConfig(text, '/etc/agentrun/handlers.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(HandlersConfigError);
    return (error as Error).message;
  }
  throw new Error('expected the config to be rejected');
}

describe('parseHandlersConfig', () => {
  it('parses YAML and applies defaults', () => {
    expect(parseHandlersConfig(exampleYaml, 'handlers.yaml')).toEqual({
      webhooks: [
        {
          name: 'ticket-bot',
          url: 'https://tickets.example/hooks/agentrun',
          timeoutMs: 10000,
          description: 'Opens a ticket',
          headers: { Authorization: 'Bearer s3cret' },
        },
        { name: 'deploy.bot', url: 'http://deployer.tools.svc:8080/run', timeoutMs: 30000 },
      ],
      httpCheck: { allowedHosts: ['status.example.com', '*.svc.cluster.local'] },
    });
  });

  it('parses JSON', () => {
    expect(
      parseHandlersConfig('{"webhooks":[{"name":"a","url":"https://a.example/"}]}', 'h.json'),
    ).toEqual({ webhooks: [{ name: 'a', url: 'https://a.example/', timeoutMs: 30000 }] });
  });

  it.each([
    ['an empty file', ''],
    ['only comments', '# nothing yet\n'],
    ['an empty object', '{}'],
  ])('accepts %s as no configuration', (_what, text) => {
    expect(parseHandlersConfig(text, 'h.yaml')).toEqual({});
  });

  it('names the file, line and column of a syntax error', () => {
    const message = parseError('webhooks:\n  - name: a\n    url: [unclosed\n');
    expect(message).toMatch(
      /^invalid handlers config \/etc\/agentrun\/handlers\.yaml: .*line \d+, column \d+/,
    );
  });

  it('rejects duplicate keys', () => {
    expect(parseError('httpCheck: {}\nhttpCheck: {}\n')).toContain('Map keys must be unique');
  });

  it('names each offending field', () => {
    const message = parseError(`
webhooks:
  - name: Ticket Bot
    url: ftp://tickets.example/
    timeoutMs: 0
    headers:
      bad header: x
      authorization: 5
      x-multi: "a\\nb"
  - url: https://b.example/
    extra: true
httpCheck:
  allowedHosts: ["https://status.example.com"]
webhook: []
`);
    expect(message).toBe(
      [
        'invalid handlers config /etc/agentrun/handlers.yaml: webhooks[0].name: must be lowercase letters, digits, "-" and ".", starting and ending with a letter or digit',
        'webhooks[0].url: must use http or https, not "ftp"',
        'webhooks[0].timeoutMs: Too small: expected number to be >=1',
        'webhooks[0].headers["bad header"]: invalid key: must be a valid HTTP header name (a token such as x-api-key)',
        'webhooks[0].headers.authorization: must be a string',
        'webhooks[0].headers["x-multi"]: must not contain control characters such as newlines',
        'webhooks[1].name: Invalid input: expected string, received undefined',
        'webhooks[1].extra: unknown field',
        'httpCheck.allowedHosts[0]: must be a hostname, an IP address, a CIDR such as 10.0.0.0/8, or "*.domain" (no scheme, port or path)',
        'webhook: unknown field',
      ].join('; '),
    );
  });

  it('never quotes header values in errors', () => {
    const message = parseError(
      'webhooks:\n  - name: a\n    url: https://a.example/\n    headers:\n      authorization: "Bearer s3cret\\n"\n',
    );
    expect(message).not.toContain('s3cret');
    expect(message).toContain(
      'webhooks[0].headers.authorization: must not contain control characters',
    );
  });

  it.each([
    [
      'https://user:s3cret@a.example/',
      'must not contain credentials (user:password@); send them in headers instead',
    ],
    ['a.example/hook', 'must be an absolute http:// or https:// URL'],
  ])('rejects the webhook url %s without echoing it', (url, problem) => {
    const message = parseError(`webhooks:\n  - name: a\n    url: "${url}"\n`);
    expect(message).toBe(
      `invalid handlers config /etc/agentrun/handlers.yaml: webhooks[0].url: ${problem}`,
    );
  });

  it('rejects webhook names taken by built-ins or used twice', () => {
    const message = parseError(`
webhooks:
  - { name: noop, url: "https://a.example/" }
  - { name: http.check, url: "https://a.example/" }
  - { name: bot, url: "https://a.example/" }
  - { name: bot, url: "https://b.example/" }
`);
    expect(message).toBe(
      'invalid handlers config /etc/agentrun/handlers.yaml: webhooks[0].name: "noop" is a built-in agent; webhooks[1].name: "http.check" is a built-in agent; webhooks[3].name: "bot" is used twice',
    );
  });

  it('rejects a top-level list', () => {
    expect(parseError('- a\n- b\n')).toBe(
      'invalid handlers config /etc/agentrun/handlers.yaml: (top level): Invalid input: expected object, received array',
    );
  });
});

describe('loadHandlersConfig', () => {
  it('reads a YAML file', async () => {
    const path = join(dir, 'handlers.yaml');
    await writeFile(path, exampleYaml);
    const config = await loadHandlersConfig(path);
    expect(config.webhooks?.map((w) => w.name)).toEqual(['ticket-bot', 'deploy.bot']);
  });

  it('names the file in errors', async () => {
    const path = join(dir, 'bad.json');
    await writeFile(path, '{"httpCheck": {"allowedHosts": "x"}}');
    await expect(loadHandlersConfig(path)).rejects.toThrow(
      `invalid handlers config ${path}: httpCheck.allowedHosts: Invalid input: expected array, received string`,
    );
  });

  it('says when the file cannot be read', async () => {
    const path = join(dir, 'missing.yaml');
    await expect(loadHandlersConfig(path)).rejects.toThrow(
      `invalid handlers config ${path}: cannot read the file: ENOENT`,
    );
  });
});

describe('builtinHandlers', () => {
  it('gives noop and http.check without configuration', () => {
    expect(builtinHandlers().map((h) => h.name)).toEqual(['noop', 'http.check']);
  });

  it('adds one handler per webhook and applies the allow-list', () => {
    const handlers = builtinHandlers(parseHandlersConfig(exampleYaml, 'h.yaml'));
    expect(handlers.map((h) => [h.name, h.description])).toEqual([
      ['noop', expect.any(String)],
      ['http.check', expect.any(String)],
      ['ticket-bot', 'Opens a ticket'],
      ['deploy.bot', 'POSTs the run to the "deploy.bot" webhook endpoint.'],
    ]);
    const httpCheck = handlers[1];
    const input = (url: string) => ({ objective: 'x', params: { url }, dryRun: true });
    expect(httpCheck?.prepare(input('https://status.example.com/')).ok).toBe(true);
    expect(httpCheck?.prepare(input('http://api.ns.svc.cluster.local/')).ok).toBe(true);
    expect(httpCheck?.prepare(input('http://169.254.169.254/'))).toMatchObject({
      ok: false,
      reason: 'InvalidParams',
    });
  });

  it("gives http.check the API server's hosts to refuse", () => {
    const config = parseHandlersConfig('httpCheck: {allowedHosts: ["10.0.0.0/8"]}', 'h.yaml');
    const input = (url: string) => ({ objective: 'x', params: { url }, dryRun: true });
    const [, open] = builtinHandlers(config);
    expect(open?.prepare(input('https://10.96.0.1/')).ok).toBe(true);
    const [, guarded] = builtinHandlers(config, { apiServerHosts: ['10.96.0.1'] });
    expect(guarded?.prepare(input('https://10.96.0.1/'))).toMatchObject({
      ok: false,
      reason: 'InvalidParams',
      message: expect.stringContaining("10.96.0.1, the Kubernetes API server's address"),
    });
  });

  it('does not expose headers on the handler objects', () => {
    const handlers = builtinHandlers(parseHandlersConfig(exampleYaml, 'h.yaml'));
    expect(JSON.stringify(handlers)).not.toContain('s3cret');
  });
});

describe('summarizeHandlersConfig', () => {
  it('is safe to log: no header values, no URL credentials or query', () => {
    const config = parseHandlersConfig(
      `${exampleYaml}\n`.replace(
        'https://tickets.example/hooks/agentrun',
        'https://tickets.example/hooks/agentrun?token=s3cret#frag',
      ),
      'h.yaml',
    );
    const summary = summarizeHandlersConfig(config);
    expect(summary).toEqual({
      webhooks: [
        {
          name: 'ticket-bot',
          url: 'https://tickets.example/hooks/agentrun',
          timeoutMs: 10000,
          headerNames: ['Authorization'],
        },
        {
          name: 'deploy.bot',
          url: 'http://deployer.tools.svc:8080/run',
          timeoutMs: 30000,
          headerNames: [],
        },
      ],
      httpCheckAllowedHosts: ['status.example.com', '*.svc.cluster.local'],
      agentDefinitionsAllowedHosts: [],
    });
    expect(JSON.stringify(summary)).not.toContain('s3cret');
  });
});
