import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ManagedProcessOptions {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  /** Receives the process's stdout and stderr. */
  readonly logFile: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Run as this user and group (used to start PostgreSQL, which refuses to run as root). */
  readonly uid?: number;
  readonly gid?: number;
  /** The signal that asks for a clean, prompt shutdown; default SIGTERM (PostgreSQL: SIGINT). */
  readonly stopSignal?: NodeJS.Signals;
}

/**
 * A server process started in its own process group, with output to a log file. Its own group
 * lets a watchdog kill it (and anything it forked) when the test runner dies without cleaning up.
 */
export class ManagedProcess {
  readonly name: string;
  readonly logFile: string;
  private readonly stopSignal: NodeJS.Signals;
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  private constructor(options: ManagedProcessOptions, child: ChildProcess) {
    this.name = options.name;
    this.logFile = options.logFile;
    this.stopSignal = options.stopSignal ?? 'SIGTERM';
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        resolve(this.exitCode);
      });
      child.once('error', () => {
        this.exitCode = -1;
        resolve(-1);
      });
    });
  }

  static start(options: ManagedProcessOptions): ManagedProcess {
    const fd = openSync(options.logFile, 'a');
    try {
      const child = spawn(options.command, options.args, {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: options.env ?? process.env,
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
        ...(options.uid === undefined ? {} : { uid: options.uid }),
        ...(options.gid === undefined ? {} : { gid: options.gid }),
      });
      // Not unref'd: the parent keeps track of the child until stop().
      return new ManagedProcess(options, child);
    } finally {
      closeSync(fd);
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** True once the process has exited (for example because it failed to start). */
  get hasExited(): boolean {
    return this.exitCode !== undefined;
  }

  /** The last lines of the log, for error messages. */
  logTail(lines = 30): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Throws with the log's tail if the process has already exited. */
  assertRunning(): void {
    if (this.hasExited) {
      throw new Error(`${this.name} exited (code ${this.exitCode}); log tail:\n${this.logTail()}`);
    }
  }

  /** The stop signal to the process group, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.hasExited || this.child.pid === undefined) return;
    signalGroup(this.child.pid, this.stopSignal);
    const done = await Promise.race([this.exited.then(() => true), sleep(graceMs, false)]);
    if (!done) {
      signalGroup(this.child.pid, 'SIGKILL');
      await this.exited;
    }
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

/**
 * Starts a detached shell that waits for this Node process to disappear and then kills every
 * process whose command line mentions `dir` (each server here gets its data directory as an
 * argument) and removes `dir`. It covers what no exit handler can: the test runner killed with
 * SIGKILL or crashing. Returns a function that cancels the watchdog.
 */
export function startOrphanWatchdog(dir: string): () => void {
  // The directory travels in the environment, not argv, so that pkill -f does not match the
  // watchdog itself.
  const script = [
    'while kill -0 "$WATCH_OWNER" 2>/dev/null; do sleep 1; done',
    'pkill -TERM -f -- "$WATCH_DIR"',
    'sleep 5',
    'pkill -KILL -f -- "$WATCH_DIR"',
    'rm -rf -- "$WATCH_DIR"',
  ].join('\n');
  const watchdog = spawn('sh', ['-c', script], {
    detached: true,
    stdio: 'ignore',
    env: { PATH: process.env['PATH'], WATCH_OWNER: String(process.pid), WATCH_DIR: dir },
  });
  watchdog.unref();
  return () => {
    if (watchdog.pid !== undefined) signalGroup(watchdog.pid, 'SIGKILL');
  };
}
