import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The directory with PostgreSQL's server binaries (initdb, postgres): $PG_BIN, else what
 * `pg_config --bindir` says, else the newest /usr/lib/postgresql/<major>/bin (Debian's layout).
 */
export function findPostgresBinDir(env: NodeJS.ProcessEnv = process.env): string {
  const candidates: string[] = [];
  const fromEnv = env['PG_BIN'];
  if (fromEnv) candidates.push(fromEnv);
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim());
  } catch {
    // No pg_config on PATH.
  }
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const majors = readdirSync(debian)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    candidates.push(...majors.map((m) => join(debian, m, 'bin')));
  }
  const found = candidates.find((dir) => existsSync(join(dir, 'initdb')));
  if (!found) {
    throw new Error(
      'PostgreSQL server binaries (initdb, postgres) not found: install them ' +
        "(Debian/Ubuntu: 'apt-get install postgresql'), set PG_BIN to their directory, " +
        'or point DATABASE_URL at an existing server',
    );
  }
  return found;
}
