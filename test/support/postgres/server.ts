import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from '../ports.ts';
import { ManagedProcess, startOrphanWatchdog } from '../process.ts';
import { waitFor } from '../wait.ts';
import { findPostgresBinDir } from './binaries.ts';

export interface PostgresServerOptions {
  readonly binDir?: string;
  readonly startTimeoutMs?: number;
}

/** Who the server runs as: initdb and postgres refuse to run as root. */
interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

/**
 * A throwaway PostgreSQL server from the system binaries: initdb into a temp dir, listening on
 * 127.0.0.1 on a free port with trust authentication. It can be stopped and started again on
 * the same port and data, which is how tests simulate a database outage.
 *
 * Its directory is always a private one under the OS temp dir, never under the caller's (the
 * clone's) directories: as root the server runs as `postgres`, and a clone often lies in a
 * directory that user cannot enter (root's home, mode 0700).
 */
export class PostgresServer {
  readonly dir: string;
  readonly port: number;
  private readonly binDir: string;
  private readonly runAs: RunAs | undefined;
  private readonly timeoutMs: number;
  private readonly cancelWatchdog: () => void;
  private process: ManagedProcess | undefined;

  private constructor(
    dir: string,
    port: number,
    binDir: string,
    runAs: RunAs | undefined,
    timeoutMs: number,
  ) {
    this.dir = dir;
    this.port = port;
    this.binDir = binDir;
    this.runAs = runAs;
    this.timeoutMs = timeoutMs;
    this.cancelWatchdog = startOrphanWatchdog(dir);
  }

  static async start(options: PostgresServerOptions = {}): Promise<PostgresServer> {
    const binDir = options.binDir ?? findPostgresBinDir();
    const runAs = process.getuid?.() === 0 ? postgresUser() : undefined;
    const dir = mkdtempSync(join(tmpdir(), 'agentrun-postgres-'));
    const server = new PostgresServer(
      dir,
      await freePort(),
      binDir,
      runAs,
      options.startTimeoutMs ?? 30_000,
    );
    try {
      mkdirSync(join(dir, 'socket'));
      if (runAs) {
        for (const d of [dir, join(dir, 'socket')]) chownSync(d, runAs.uid, runAs.gid);
      }
      server.initdb();
      await server.resume();
      return server;
    } catch (error) {
      await server.destroy();
      throw error;
    }
  }

  /** A connection URL for `database` as the superuser `postgres`. */
  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  get running(): boolean {
    return this.process !== undefined && !this.process.hasExited;
  }

  /** Fast shutdown (SIGINT): open connections are cut, as in a real outage. Data stays. */
  async pause(): Promise<void> {
    await this.process?.stop();
    this.process = undefined;
  }

  /** Starts the server (again) on the same port and data directory and waits until it answers. */
  async resume(): Promise<void> {
    if (this.running) return;
    const proc = ManagedProcess.start({
      name: 'postgres',
      command: join(this.binDir, 'postgres'),
      args: [
        '-D',
        join(this.dir, 'data'),
        '-p',
        String(this.port),
        '-h',
        '127.0.0.1',
        '-k',
        join(this.dir, 'socket'),
        // A test server: durability is not the point, speed is.
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'max_connections=300',
      ],
      logFile: join(this.dir, 'postgres.log'),
      stopSignal: 'SIGINT',
      // Not the inherited cwd, which the server's user may be unable to enter.
      cwd: this.dir,
      ...this.runAs,
    });
    this.process = proc;
    await waitFor(
      `postgres on 127.0.0.1:${this.port}`,
      async () => {
        proc.assertRunning();
        const client = new pg.Client({
          connectionString: this.url(),
          connectionTimeoutMillis: 2_000,
        });
        try {
          await client.connect();
          await client.query('select 1');
          return true;
        } finally {
          await client.end().catch(() => {});
        }
      },
      { timeoutMs: this.timeoutMs },
    );
  }

  /** Stops the server and removes its data. Idempotent. */
  async destroy(): Promise<void> {
    await this.pause();
    this.cancelWatchdog();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private initdb(): void {
    const args = [
      '-D',
      join(this.dir, 'data'),
      '-U',
      'postgres',
      '-A',
      'trust',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
    ];
    try {
      execFileSync(join(this.binDir, 'initdb'), args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        // initdb returns to its starting directory after looking up its own binary.
        cwd: this.dir,
        ...this.runAs,
      });
    } catch (error) {
      const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? String(error);
      const hint =
        this.runAs && stderr.includes('Permission denied')
          ? ` (initdb runs as the postgres user, who must be able to reach ${this.dir}: ` +
            'point TMPDIR at a directory it can reach)'
          : '';
      throw new Error(`initdb failed${hint}: ${stderr}`);
    }
  }
}

function postgresUser(): RunAs {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error(
      "running as root, and PostgreSQL refuses to: create a 'postgres' user " +
        '(the postgresql package does) or run the tests as a normal user',
    );
  }
}
