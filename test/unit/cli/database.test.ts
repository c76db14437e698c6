import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/cli/args.ts';
import { describeDatabaseError, redact, resolveDatabaseUrl } from '../../../src/cli/database.ts';
import { describeResult } from '../../../src/cli/migrate-command.ts';

const url = 'postgres://audit:p%40ss-w0rd@db.example:6543/audit';

describe('resolveDatabaseUrl', () => {
  it('the flag wins over DATABASE_URL', () => {
    expect(resolveDatabaseUrl('postgres://a@h/f', { DATABASE_URL: 'postgres://a@h/e' })).toBe(
      'postgres://a@h/f',
    );
    expect(resolveDatabaseUrl(undefined, { DATABASE_URL: 'postgresql://a@h/e' })).toBe(
      'postgresql://a@h/e',
    );
  });

  it('no URL, or not a postgres URL, is a usage error that never shows the value', () => {
    expect(() => resolveDatabaseUrl(undefined, {})).toThrow(UsageError);
    expect(() => resolveDatabaseUrl('', { DATABASE_URL: '' })).toThrow(/set DATABASE_URL/);
    try {
      resolveDatabaseUrl('mysql://root:topsecret@h/db', {});
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(UsageError);
      expect((error as Error).message).toBe(
        'the database URL must be a postgres:// or postgresql:// URL',
      );
    }
  });
});

describe('redact', () => {
  it('removes the URL and the password, raw and decoded', () => {
    expect(redact(`failed for ${url}`, url)).toBe('failed for ***');
    expect(redact('password p@ss-w0rd was wrong', url)).toBe('password *** was wrong');
    expect(redact('password p%40ss-w0rd was wrong', url)).toBe('password *** was wrong');
    expect(redact('pw s3cret', 'postgres://h/db?user=u&password=s3cret')).toBe('pw ***');
    expect(redact('nothing to hide', 'postgres://u@h/db')).toBe('nothing to hide');
  });
});

describe('describeDatabaseError', () => {
  const error = (message: string, code?: string) => Object.assign(new Error(message), { code });

  it('one line naming host:port/database, with a hint where there is one', () => {
    expect(
      describeDatabaseError(error('relation "agent_audit_log" does not exist', '42P01'), url),
    ).toBe(
      "the audit table agent_audit_log does not exist in db.example:6543/audit: run 'agentrun-operator migrate up'",
    );
    expect(
      describeDatabaseError(error('connect ECONNREFUSED 10.0.0.1:6543', 'ECONNREFUSED'), url),
    ).toBe(
      'cannot connect to the audit database db.example:6543/audit: connect ECONNREFUSED 10.0.0.1:6543',
    );
    expect(describeDatabaseError(error('timeout expired'), url)).toBe(
      'cannot connect to the audit database db.example:6543/audit: timeout expired',
    );
    expect(
      describeDatabaseError(error('password authentication failed for user "audit"', '28P01'), url),
    ).toBe(
      'cannot log in to db.example:6543/audit: password authentication failed for user "audit"; check the user and password in DATABASE_URL',
    );
    expect(describeDatabaseError(error('bad\nthing p@ss-w0rd'), url)).toBe(
      'audit database db.example:6543/audit: bad thing ***',
    );
  });
});

describe('migrate output', () => {
  const db = 'h:5432/d';
  it('status', () => {
    expect(describeResult({ command: 'status', current: 0, latest: 2, pending: [1, 2] }, db)).toBe(
      "audit schema of h:5432/d: version 0, latest 2, pending: 001, 002 (run 'agentrun-operator migrate up')\n",
    );
    expect(describeResult({ command: 'status', current: 2, latest: 2, pending: [] }, db)).toBe(
      'audit schema of h:5432/d: version 2, latest 2, up to date\n',
    );
  });

  it('up and down: each migration, then the versions', () => {
    expect(
      describeResult(
        {
          command: 'up',
          from: 0,
          to: 2,
          applied: [
            { version: 1, name: '', action: 'do' },
            { version: 2, name: 'add-index', action: 'do' },
          ],
        },
        db,
      ),
    ).toBe(
      'applied 001.do.sql\napplied 002.do.add-index.sql\naudit schema of h:5432/d: version 0 -> 2\n',
    );
    expect(
      describeResult(
        { command: 'down', from: 1, to: 0, applied: [{ version: 1, name: '', action: 'undo' }] },
        db,
      ),
    ).toBe('reverted 001.undo.sql\naudit schema of h:5432/d: version 1 -> 0\n');
  });

  it('nothing to do', () => {
    expect(describeResult({ command: 'up', from: 1, to: 1, applied: [] }, db)).toBe(
      'audit schema of h:5432/d: already at version 1, nothing to apply\n',
    );
    expect(describeResult({ command: 'down', from: 0, to: 0, applied: [] }, db)).toBe(
      'audit schema of h:5432/d: at version 0, nothing to revert\n',
    );
  });
});
