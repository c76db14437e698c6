import { type ChildProcessByStdio, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../support/wait.ts';

/*
 * `make dev` and `make test` start a throwaway PostgreSQL from wherever the repository was
 * cloned, often root's home directory (mode 0700, as in most containers and CI images). As root
 * the server runs as the `postgres` user, which can enter neither such a clone nor anything
 * under it. Here the process that starts the server works in a "clone" under a 0700 directory.
 */

const isRoot = process.getuid?.() === 0;
const NOT_ROOT =
  'only as root: a normal user runs PostgreSQL as itself, and so can always enter its clone';
const ROOT = resolve(import.meta.dirname, '../../..');

type Child = ChildProcessByStdio<Writable, Readable, Readable>;
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

/** A directory `repo` inside a fresh directory of mode 0700, like a clone in /root. */
function cloneUnderPrivateHome(): string {
  const home = mkdtempSync(join(tmpdir(), 'agentrun-home-'));
  chmodSync(home, 0o700);
  cleanups.push(() => rmSync(home, { recursive: true, force: true }));
  const clone = join(home, 'repo');
  mkdirSync(clone);
  return clone;
}

/** Node on `args` in its own process group (so the group can be signalled, as Ctrl-C does). */
function startNode(args: string[], cwd: string, env: NodeJS.ProcessEnv): Child {
  const child = spawn(process.execPath, args, {
    cwd,
    env,
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  cleanups.push(() => signalGroup(child, 'SIGKILL'));
  return child;
}

function signalGroup(child: Child, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** Collects the child's output; resolves once `ready` matches stdout, rejects if it exits first. */
function untilOutput(child: Child, ready: RegExp): Promise<RegExpExecArray> {
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((done, fail) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      stdout += `${line}\n`;
      const match = ready.exec(stdout);
      if (match) done(match);
    });
    child.once('exit', (code) =>
      fail(new Error(`exited (code ${code}) before it was ready:\n${stdout}\n${stderr}`)),
    );
  });
}

async function exited(child: Child): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  return new Promise((done) => child.once('exit', (code) => done(code)));
}

async function dataDirectory(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ dir: string }>(
      "SELECT current_setting('data_directory') AS dir",
    );
    return rows[0]?.dir ?? '';
  } finally {
    await client.end();
  }
}

function postmasterPid(serverDir: string): number {
  return Number(readFileSync(join(serverDir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
}

function alive(pid: number): boolean {
  try {
    // A zombie has exited and only waits to be reaped (by a PID 1 that may never do it).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

/** Command lines of the processes that mention `text` (pgrep -f; procps is a prerequisite). */
function processesMentioning(text: string): string[] {
  try {
    return execFileSync('pgrep', ['-a', '-f', '--', text], { encoding: 'utf8' }).trim().split('\n');
  } catch {
    return []; // pgrep exits 1 when nothing matches.
  }
}

describe('make dev from a clone under a 0700 directory', () => {
  it('starts, tells where PostgreSQL keeps its data, and leaves nothing behind on Ctrl-C', async ({
    skip,
  }) => {
    skip(!isRoot, NOT_ROOT);
    const clone = cloneUnderPrivateHome();
    const devDir = join(clone, '.dev');
    const env: NodeJS.ProcessEnv = { ...process.env, DEV_DIR: devDir };
    // So that make dev starts a PostgreSQL of its own.
    delete env['DATABASE_URL'];
    const dev = startNode([join(ROOT, 'hack/dev.ts')], clone, env);

    const [, serverDir = '', url = ''] = await untilOutput(
      dev,
      /PostgreSQL \(throwaway, data in (\S+)\): export DATABASE_URL=(\S+)[\s\S]*Press Ctrl-C/,
    );
    expect(await dataDirectory(url)).toBe(join(serverDir, 'data'));
    const postmaster = postmasterPid(serverDir);

    signalGroup(dev, 'SIGINT');
    expect(await exited(dev)).toBe(0);
    expect(existsSync(serverDir)).toBe(false);
    expect(alive(postmaster)).toBe(false);
    expect(processesMentioning(devDir)).toEqual([]);
  }, 180_000);
});

describe('the throwaway PostgreSQL started from a clone under a 0700 directory', () => {
  // Starts the server, prints where it is, then waits (until killed).
  const OWNER = `
const { PostgresServer } = await import(process.env.SERVER_MODULE);
const server = await PostgresServer.start();
process.stdout.write(JSON.stringify({ dir: server.dir }) + '\\n');
setInterval(() => {}, 1 << 30);
`;
  const serverModule = pathToFileURL(join(ROOT, 'test/support/postgres/server.ts')).href;

  it('is stopped and its data removed by the watchdog when its owner is killed', async ({
    skip,
  }) => {
    skip(!isRoot, NOT_ROOT);
    const owner = startNode(['--input-type=module', '-e', OWNER], cloneUnderPrivateHome(), {
      ...process.env,
      SERVER_MODULE: serverModule,
    });
    const [line = ''] = await untilOutput(owner, /^\{.*\}$/m);
    const { dir } = JSON.parse(line) as { dir: string };
    const postmaster = postmasterPid(dir);
    expect(alive(postmaster)).toBe(true);

    // SIGKILL to the owner alone: the server, in its own process group, is orphaned.
    owner.kill('SIGKILL');
    await waitFor(
      'the orphan watchdog to stop postgres and remove its data',
      async () => (!alive(postmaster) && !existsSync(dir) ? true : undefined),
      { timeoutMs: 30_000 },
    );
  });
});
