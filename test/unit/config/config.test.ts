import { describe, expect, it } from 'vitest';
import {
  type Config,
  ConfigError,
  configSchema,
  flagsToEnv,
  loadConfig,
} from '../../../src/config/config.ts';

const DEFAULTS = {
  KUBECONFIG: '',
  KUBE_API_HTTP2: true,
  WATCH_NAMESPACE: '',
  MAX_CONCURRENT_RUNS: 10,
  RECONCILE_WORKERS: 16,
  LEADER_ELECT: false,
  LEADER_ELECTION_ID: 'agentrun-operator.agents.applylens.io',
  LEADER_ELECTION_NAMESPACE: '',
  POD_NAMESPACE: '',
  LEASE_DURATION_SECONDS: 15,
  RENEW_DEADLINE_SECONDS: 10,
  RETRY_PERIOD_SECONDS: 2,
  HEALTH_PROBE_BIND_ADDRESS: { host: undefined, port: 8081 },
  LOG_LEVEL: 'info',
  HANDLERS_CONFIG: '',
  SHUTDOWN_GRACE_SECONDS: 20,
  RETRY_BACKOFF_BASE_MS: 10_000,
  RETRY_BACKOFF_MAX_MS: 360_000,
  RESYNC_PERIOD_SECONDS: 600,
  FINALIZER_AFTER_MS: 1_000,
  QUEUED_STATUS_AFTER_MS: 2_000,
  AGENT_DEFINITIONS_ENABLED: true,
  UNKNOWN_AGENT_GRACE_SECONDS: 10,
  JOB_AGENTS_ENABLED: true,
  MAX_CONCURRENT_JOB_RUNS: 500,
  APPLYLENS_AGENT_AUDIT_ENABLED: true,
  DATABASE_URL: '',
  AUDIT_MIGRATE: true,
  AUDIT_RETENTION_DAYS: 90,
  AUDIT_SYNC_WAIT_MS: 250,
  AUDIT_FINALIZER_DEADLINE_SECONDS: 3_600,
  EVENTS_OMIT: [],
  APPLYLENS_AGENT_METRICS_ENABLED: true,
  METRICS_BIND_ADDRESS: { host: undefined, port: 8080 },
  METRICS_SECURE: false,
  METRICS_CERT_DIR: '',
} as const;

/** The ConfigError thrown by `fn`; fails the test if it returns or throws something else. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
}

describe('loadConfig: defaults', () => {
  it('gives every key its documented default when nothing is set', () => {
    const config = loadConfig({}, []);
    expect(config).toStrictEqual(
      expect.objectContaining({ ...DEFAULTS, HEALTH_PROBE_BIND_ADDRESS: expect.anything() }),
    );
    expect(config.HEALTH_PROBE_BIND_ADDRESS).toEqual({ host: undefined, port: 8081 });
  });

  it('has exactly the documented keys, no more, no fewer', () => {
    expect(Object.keys(loadConfig({}, [])).sort()).toEqual(Object.keys(DEFAULTS).sort());
    expect(Object.keys(configSchema.shape).sort()).toEqual(Object.keys(DEFAULTS).sort());
  });

  for (const [key, value] of Object.entries(DEFAULTS)) {
    it(`${key} defaults to ${JSON.stringify(value) ?? 'undefined'}`, () => {
      expect(loadConfig({}, [])[key as keyof Config]).toEqual(value);
    });
  }

  it('ignores unrelated environment variables', () => {
    const config = loadConfig({ PATH: '/usr/bin', HOME: '/root', MAX_CONCURRENT: '3' }, []);
    expect(config.MAX_CONCURRENT_RUNS).toBe(10);
    expect(Object.keys(config)).not.toContain('PATH');
  });

  it('treats an empty environment value as unset', () => {
    const env: Record<string, string> = {};
    for (const key of Object.keys(DEFAULTS)) env[key] = '';
    const config = loadConfig(env, []);
    expect(config).toEqual(loadConfig({}, []));
  });

  it('treats an undefined environment value as unset', () => {
    expect(loadConfig({ MAX_CONCURRENT_RUNS: undefined, LOG_LEVEL: undefined }, [])).toEqual(
      loadConfig({}, []),
    );
  });

  it('reads process.env when no environment is given', () => {
    const saved = process.env['WATCH_NAMESPACE'];
    process.env['WATCH_NAMESPACE'] = 'from-process-env';
    try {
      expect(loadConfig().WATCH_NAMESPACE).toBe('from-process-env');
    } finally {
      if (saved === undefined) delete process.env['WATCH_NAMESPACE'];
      else process.env['WATCH_NAMESPACE'] = saved;
    }
  });
});

describe('loadConfig: the result', () => {
  it('is frozen', () => {
    const config = loadConfig({}, []);
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      (config as { MAX_CONCURRENT_RUNS: number }).MAX_CONCURRENT_RUNS = 99;
    }).toThrow(TypeError);
    expect(config.MAX_CONCURRENT_RUNS).toBe(10);
  });

  it('is a new object each call', () => {
    expect(loadConfig({}, [])).not.toBe(loadConfig({}, []));
  });
});

describe('loadConfig: environment parsing', () => {
  it('parses every integer setting', () => {
    const config = loadConfig(
      {
        MAX_CONCURRENT_RUNS: '3',
        RECONCILE_WORKERS: '4',
        LEASE_DURATION_SECONDS: '60',
        RENEW_DEADLINE_SECONDS: '40',
        RETRY_PERIOD_SECONDS: '5',
        SHUTDOWN_GRACE_SECONDS: '0',
        RETRY_BACKOFF_BASE_MS: '250',
        RETRY_BACKOFF_MAX_MS: '86400000',
        RESYNC_PERIOD_SECONDS: '0',
        FINALIZER_AFTER_MS: '3600000',
      },
      [],
    );
    expect(config).toMatchObject({
      MAX_CONCURRENT_RUNS: 3,
      RECONCILE_WORKERS: 4,
      LEASE_DURATION_SECONDS: 60,
      RENEW_DEADLINE_SECONDS: 40,
      RETRY_PERIOD_SECONDS: 5,
      SHUTDOWN_GRACE_SECONDS: 0,
      RETRY_BACKOFF_BASE_MS: 250,
      RETRY_BACKOFF_MAX_MS: 86_400_000,
      RESYNC_PERIOD_SECONDS: 0,
      FINALIZER_AFTER_MS: 3_600_000,
    });
    expect(typeof config.MAX_CONCURRENT_RUNS).toBe('number');
  });

  const ranges: ReadonlyArray<{ key: string; min: number; max: number }> = [
    { key: 'MAX_CONCURRENT_RUNS', min: 1, max: 10_000 },
    { key: 'RECONCILE_WORKERS', min: 1, max: 1_000 },
    { key: 'RETRY_PERIOD_SECONDS', min: 1, max: 3600 },
    { key: 'SHUTDOWN_GRACE_SECONDS', min: 0, max: 3600 },
    { key: 'RETRY_BACKOFF_BASE_MS', min: 0, max: 86_400_000 },
    { key: 'RETRY_BACKOFF_MAX_MS', min: 0, max: 86_400_000 },
    { key: 'RESYNC_PERIOD_SECONDS', min: 0, max: 86_400 },
    { key: 'FINALIZER_AFTER_MS', min: 0, max: 3_600_000 },
    { key: 'QUEUED_STATUS_AFTER_MS', min: 0, max: 3_600_000 },
    { key: 'UNKNOWN_AGENT_GRACE_SECONDS', min: 0, max: 3_600 },
    { key: 'MAX_CONCURRENT_JOB_RUNS', min: 1, max: 100_000 },
  ];
  for (const { key, min, max } of ranges) {
    it(`${key} accepts ${min}..${max} and rejects ${min - 1} and ${max + 1}`, () => {
      expect(loadConfig({ [key]: String(min) }, [])[key as keyof Config]).toBe(min);
      expect(loadConfig({ [key]: String(max) }, [])[key as keyof Config]).toBe(max);
      for (const bad of [min - 1, max + 1]) {
        const error = configError(() => loadConfig({ [key]: String(bad) }, []));
        expect(error.problems).toHaveLength(1);
        expect(error.problems[0]).toMatch(new RegExp(`^${key}: `));
      }
    });
  }

  it('LEASE_DURATION_SECONDS and RENEW_DEADLINE_SECONDS accept 1..3600 when consistent', () => {
    expect(
      loadConfig({ LEASE_DURATION_SECONDS: '3600', RENEW_DEADLINE_SECONDS: '1' }, []),
    ).toMatchObject({ LEASE_DURATION_SECONDS: 3600, RENEW_DEADLINE_SECONDS: 1 });
    for (const [key, value] of [
      ['LEASE_DURATION_SECONDS', '3601'],
      ['LEASE_DURATION_SECONDS', '0'],
      ['RENEW_DEADLINE_SECONDS', '0'],
      ['RENEW_DEADLINE_SECONDS', '3601'],
    ] as const) {
      const error = configError(() => loadConfig({ [key]: value }, []));
      expect(error.problems[0]).toMatch(new RegExp(`^${key}: `));
    }
  });

  for (const bad of ['abc', '1.5', '', ' ', 'NaN', 'Infinity', '-1', '10abc']) {
    it(`rejects the integer ${JSON.stringify(bad)} unless it means unset`, () => {
      if (bad === '') {
        expect(loadConfig({ MAX_CONCURRENT_RUNS: bad }, []).MAX_CONCURRENT_RUNS).toBe(10);
        return;
      }
      const error = configError(() => loadConfig({ MAX_CONCURRENT_RUNS: bad }, []));
      expect(error.problems).toHaveLength(1);
      expect(error.problems[0]).toMatch(/^MAX_CONCURRENT_RUNS: /);
    });
  }

  for (const [text, value] of [
    ['true', true],
    ['1', true],
    ['yes', true],
    ['false', false],
    ['0', false],
    ['no', false],
  ] as const) {
    it(`LEADER_ELECT=${text} is ${value}`, () => {
      expect(loadConfig({ LEADER_ELECT: text }, []).LEADER_ELECT).toBe(value);
    });
  }

  for (const bad of ['on', 'off', 'y', '2', 'truthy', 'enabled']) {
    it(`rejects the boolean ${JSON.stringify(bad)}`, () => {
      const error = configError(() => loadConfig({ LEADER_ELECT: bad }, []));
      expect(error.problems).toHaveLength(1);
      expect(error.problems[0]).toMatch(/^LEADER_ELECT: /);
    });
  }

  const addresses: ReadonlyArray<[string, { host: string | undefined; port: number } | undefined]> =
    [
      [':8081', { host: undefined, port: 8081 }],
      [':0', { host: undefined, port: 0 }],
      ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
      ['0.0.0.0:8080', { host: '0.0.0.0', port: 8080 }],
      ['localhost:9090', { host: 'localhost', port: 9090 }],
      ['[::1]:9000', { host: '::1', port: 9000 }],
      ['[::]:8081', { host: '::', port: 8081 }],
      ['[fe80::1]:1', { host: 'fe80::1', port: 1 }],
      ['0', undefined],
    ];
  for (const [text, parsed] of addresses) {
    it(`HEALTH_PROBE_BIND_ADDRESS=${text}`, () => {
      const config = loadConfig({ HEALTH_PROBE_BIND_ADDRESS: text }, []);
      expect(config.HEALTH_PROBE_BIND_ADDRESS).toStrictEqual(parsed);
    });
  }

  for (const bad of [
    '8081',
    'localhost',
    '::1:9000',
    'host:',
    ':',
    'host:port',
    ':123456',
    ' :80',
  ]) {
    it(`rejects the bind address ${JSON.stringify(bad)}`, () => {
      const error = configError(() => loadConfig({ HEALTH_PROBE_BIND_ADDRESS: bad }, []));
      expect(error.problems).toEqual(['HEALTH_PROBE_BIND_ADDRESS: expected host:port, :port or 0']);
    });
  }

  for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const) {
    it(`LOG_LEVEL=${level}`, () => {
      expect(loadConfig({ LOG_LEVEL: level }, []).LOG_LEVEL).toBe(level);
    });
  }

  it('rejects an unknown LOG_LEVEL', () => {
    const error = configError(() => loadConfig({ LOG_LEVEL: 'verbose' }, []));
    expect(error.problems[0]).toMatch(/^LOG_LEVEL: /);
  });

  it('takes EVENTS_OMIT as a comma-separated list of the Events reasons, spaces allowed', () => {
    expect(loadConfig({ EVENTS_OMIT: 'Started, Succeeded,' }, []).EVENTS_OMIT).toEqual([
      'Started',
      'Succeeded',
    ]);
    expect(loadConfig({}, ['--events-omit=AuditLost']).EVENTS_OMIT).toEqual(['AuditLost']);
  });

  it('rejects an EVENTS_OMIT reason the operator never records, naming the ones it does', () => {
    // Running is the condition's reason; its Event says Started. A typo must not pass silently.
    for (const wrong of ['Startd', 'Running', 'Queued']) {
      const error = configError(() => loadConfig({ EVENTS_OMIT: `Succeeded,${wrong}` }, []));
      expect(error.problems).toHaveLength(1);
      expect(error.problems[0]).toMatch(
        new RegExp(
          `^EVENTS_OMIT: "${wrong}" is not a reason of the operator's Events; expected some of Started, .*Succeeded.*, AuditLost$`,
        ),
      );
    }
  });

  it('takes string settings as they are', () => {
    const config = loadConfig(
      {
        KUBECONFIG: '/etc/kube/config',
        WATCH_NAMESPACE: 'agents',
        LEADER_ELECTION_ID: 'my-lock',
        LEADER_ELECTION_NAMESPACE: 'ops',
        POD_NAMESPACE: 'agentrun-system',
        HANDLERS_CONFIG: '/etc/agentrun/handlers.yaml',
      },
      [],
    );
    expect(config).toMatchObject({
      KUBECONFIG: '/etc/kube/config',
      WATCH_NAMESPACE: 'agents',
      LEADER_ELECTION_ID: 'my-lock',
      LEADER_ELECTION_NAMESPACE: 'ops',
      POD_NAMESPACE: 'agentrun-system',
      HANDLERS_CONFIG: '/etc/agentrun/handlers.yaml',
    });
  });
});

describe('loadConfig: leader election timing', () => {
  for (const [lease, renew] of [
    ['15', '15'],
    ['10', '15'],
    ['1', '1'],
  ] as const) {
    it(`rejects RENEW_DEADLINE_SECONDS=${renew} with LEASE_DURATION_SECONDS=${lease}`, () => {
      const error = configError(() =>
        loadConfig({ LEASE_DURATION_SECONDS: lease, RENEW_DEADLINE_SECONDS: renew }, []),
      );
      expect(error.problems).toHaveLength(1);
      expect(error.problems[0]).toContain('RENEW_DEADLINE_SECONDS');
      expect(error.problems[0]).toContain('LEASE_DURATION_SECONDS');
    });
  }

  it('rejects a renew deadline raised to the default lease duration', () => {
    expect(() => loadConfig({ RENEW_DEADLINE_SECONDS: '15' }, [])).toThrow(ConfigError);
  });

  it('rejects a lease duration lowered to the default renew deadline', () => {
    expect(() => loadConfig({ LEASE_DURATION_SECONDS: '10' }, [])).toThrow(ConfigError);
  });

  it('accepts a renew deadline one second shorter than the lease', () => {
    expect(
      loadConfig({ LEASE_DURATION_SECONDS: '16', RENEW_DEADLINE_SECONDS: '15' }, []),
    ).toMatchObject({ LEASE_DURATION_SECONDS: 16, RENEW_DEADLINE_SECONDS: 15 });
  });

  it('applies the check to flags as well', () => {
    expect(() => loadConfig({}, ['--renew-deadline-seconds=20'])).toThrow(ConfigError);
    expect(
      loadConfig({ RENEW_DEADLINE_SECONDS: '20' }, ['--lease-duration-seconds', '30'])
        .LEASE_DURATION_SECONDS,
    ).toBe(30);
  });
});

describe('loadConfig: flags', () => {
  it('--flag=value', () => {
    expect(loadConfig({}, ['--max-concurrent-runs=5']).MAX_CONCURRENT_RUNS).toBe(5);
  });

  it('--flag value', () => {
    expect(loadConfig({}, ['--max-concurrent-runs', '5']).MAX_CONCURRENT_RUNS).toBe(5);
  });

  it('a bare boolean flag means true', () => {
    expect(loadConfig({}, ['--leader-elect']).LEADER_ELECT).toBe(true);
  });

  it('a bare boolean flag followed by another flag means true', () => {
    const config = loadConfig({}, ['--leader-elect', '--watch-namespace', 'agents']);
    expect(config.LEADER_ELECT).toBe(true);
    expect(config.WATCH_NAMESPACE).toBe('agents');
  });

  it('a boolean flag can be given a value', () => {
    expect(loadConfig({ LEADER_ELECT: 'true' }, ['--leader-elect=false']).LEADER_ELECT).toBe(false);
    expect(loadConfig({ LEADER_ELECT: 'true' }, ['--leader-elect', 'no']).LEADER_ELECT).toBe(false);
  });

  it('flags override the environment', () => {
    const config = loadConfig(
      { MAX_CONCURRENT_RUNS: '3', LOG_LEVEL: 'warn', LEADER_ELECT: 'false', WATCH_NAMESPACE: 'a' },
      ['--max-concurrent-runs=7', '--log-level', 'debug', '--leader-elect'],
    );
    expect(config).toMatchObject({
      MAX_CONCURRENT_RUNS: 7,
      LOG_LEVEL: 'debug',
      LEADER_ELECT: true,
      WATCH_NAMESPACE: 'a',
    });
  });

  it('the last of a repeated flag wins', () => {
    expect(
      loadConfig({}, ['--max-concurrent-runs=2', '--max-concurrent-runs=4']).MAX_CONCURRENT_RUNS,
    ).toBe(4);
  });

  it('a flag value may contain "=" and start with a single dash', () => {
    expect(loadConfig({}, ['--kubeconfig=/a=b']).KUBECONFIG).toBe('/a=b');
    expect(loadConfig({}, ['--kubeconfig', '-']).KUBECONFIG).toBe('-');
  });

  it('parses bind addresses given as flags', () => {
    expect(
      loadConfig({}, ['--health-probe-bind-address=[::1]:9000']).HEALTH_PROBE_BIND_ADDRESS,
    ).toStrictEqual({ host: '::1', port: 9000 });
    expect(
      loadConfig({ HEALTH_PROBE_BIND_ADDRESS: ':1' }, ['--health-probe-bind-address', '0'])
        .HEALTH_PROBE_BIND_ADDRESS,
    ).toBeUndefined();
  });

  it('rejects an unknown flag by name', () => {
    const error = configError(() => loadConfig({}, ['--no-such-flag=1']));
    expect(error.problems).toEqual(['unknown flag --no-such-flag']);
    expect(error.message).toBe('invalid configuration:\n  unknown flag --no-such-flag');
  });

  it('lists every unknown flag', () => {
    const error = configError(() =>
      loadConfig({}, ['--foo', '--max-concurrent-runs=2', '--bar-baz', 'x']),
    );
    expect(error.problems).toEqual(['unknown flag --foo', 'unknown flag --bar-baz']);
  });

  it('does not let an environment-style name in snake case in as a flag', () => {
    // --max_concurrent_runs is not kebab case: the regex refuses "_".
    expect(() => loadConfig({}, ['--max_concurrent_runs=2'])).toThrow(ConfigError);
  });

  it('rejects a positional argument', () => {
    const error = configError(() => loadConfig({}, ['run']));
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]).toMatch(/^unexpected argument/);
  });

  it('rejects a single-dash flag', () => {
    expect(() => loadConfig({}, ['-v'])).toThrow(ConfigError);
  });

  it('reports an invalid flag value under its key', () => {
    const error = configError(() => loadConfig({}, ['--max-concurrent-runs=zero']));
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]).toMatch(/^MAX_CONCURRENT_RUNS: /);
  });
});

describe('flagsToEnv', () => {
  it('turns kebab-case flags into environment keys', () => {
    expect(
      flagsToEnv([
        '--max-concurrent-runs=5',
        '--log-level',
        'debug',
        '--leader-elect',
        '--watch-namespace=',
      ]),
    ).toEqual({
      MAX_CONCURRENT_RUNS: '5',
      LOG_LEVEL: 'debug',
      LEADER_ELECT: 'true',
      WATCH_NAMESPACE: '',
    });
  });

  it('a trailing flag without a value is true', () => {
    expect(flagsToEnv(['--log-level', 'warn', '--leader-elect'])).toEqual({
      LOG_LEVEL: 'warn',
      LEADER_ELECT: 'true',
    });
  });

  it('returns nothing for no arguments', () => {
    expect(flagsToEnv([])).toEqual({});
  });

  it('rejects arguments that are not flags', () => {
    for (const arg of ['value', '-x', '--', '--Upper', '']) {
      expect(() => flagsToEnv([arg])).toThrow(ConfigError);
    }
  });
});

describe('ConfigError', () => {
  it('lists every problem, one per line, and keeps them', () => {
    const error = configError(() =>
      loadConfig({ MAX_CONCURRENT_RUNS: 'x', LOG_LEVEL: 'loud', LEADER_ELECT: 'maybe' }, []),
    );
    expect(error.name).toBe('ConfigError');
    expect(error).toBeInstanceOf(Error);
    expect(error.problems).toHaveLength(3);
    const keys = error.problems.map((p) => p.split(':')[0]).sort();
    expect(keys).toEqual(['LEADER_ELECT', 'LOG_LEVEL', 'MAX_CONCURRENT_RUNS']);
    expect(error.message).toBe(`invalid configuration:\n  ${error.problems.join('\n  ')}`);
  });

  const SECRET = 'postgres://admin:s3cr3t-P4ssw0rd@db.internal:5432/agentrun';
  const secretCases: ReadonlyArray<{ name: string; env: Record<string, string>; argv: string[] }> =
    [
      { name: 'an integer', env: { MAX_CONCURRENT_RUNS: SECRET }, argv: [] },
      { name: 'a boolean', env: { LEADER_ELECT: SECRET }, argv: [] },
      { name: 'a bind address', env: { HEALTH_PROBE_BIND_ADDRESS: SECRET }, argv: [] },
      { name: 'a log level', env: { LOG_LEVEL: SECRET }, argv: [] },
      { name: 'an integer flag', env: {}, argv: [`--reconcile-workers=${SECRET}`] },
      { name: 'an unknown flag', env: {}, argv: [`--db-url=${SECRET}`] },
      {
        name: 'a DATABASE_URL of the wrong scheme',
        env: { DATABASE_URL: SECRET.replace('postgres:', 'mysql:') },
        argv: [],
      },
      { name: 'an unknown flag with a separate value', env: {}, argv: ['--db-url', SECRET] },
    ];
  for (const { name, env, argv } of secretCases) {
    it(`never echoes the invalid value of ${name}`, () => {
      const error = configError(() => loadConfig(env, argv));
      const text = `${error.message}\n${error.problems.join('\n')}\n${String(error.stack)}`;
      expect(text).not.toContain('s3cr3t');
      expect(text).not.toContain('admin');
      expect(text).not.toContain('db.internal');
    });
  }
});
