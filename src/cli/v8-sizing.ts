import { readFileSync } from 'node:fs';
import { compileCacheEnv } from './compile-cache.ts';

/** The young generation's semi-space cap the operator runs with, in MiB (the Deployment's). */
export const SEMI_SPACE_MIB = 4;

/**
 * The old space of a start without a container memory limit, in MiB. V8 would size it from the
 * host (a quarter of its memory, up to 4 GiB) and, the larger that is, the further it lets the
 * heap grow between collections (a growth factor up to 4 against about 1.6 at 1 GiB): a bare
 * start peaked at 133-166 MiB in a 2,000-run burst, 118-122 with 512 MiB or 1 GiB. 1 GiB holds
 * some 800,000 cached finished runs (1.2 KiB each); the operator logs its heap limit at start,
 * and NODE_OPTIONS sets another.
 */
export const UNLIMITED_OLD_SPACE_MIB = 1024;

export interface V8SizingInput {
  /** Node's own flags of this process (process.execArgv). */
  readonly execArgv: readonly string[];
  /** The NODE_OPTIONS environment variable, if set. */
  readonly nodeOptions: string | undefined;
  /** The container's memory limit in bytes, if it has one. */
  readonly memoryLimitBytes: number | undefined;
}

/**
 * The V8 flags `run` adds when the operator was started without them, or [] when none are
 * missing. Why at all: V8 sizes its heap for the host, not the operator. On Node 24 the young
 * generation alone may grow to 128 MiB under a burst of runs (it was 8 MiB with the semi-space
 * cap; docs/performance.md), and is kept while it is busy, so a plain `node` start peaked at
 * 190 MB where the Deployment's flags gave 139 MiB. The Deployment sets both flags; this gives a
 * bare start (`make dev`, a process manager, a chart that replaced NODE_OPTIONS) the same
 * footprint. A flag the user gave, in NODE_OPTIONS or on the command line, always wins.
 *
 * - `--max-semi-space-size=4`: the young generation at 12 MiB at most. Its CPU cost measured
 *   within the noise of consecutive burst runs.
 * - `--max-old-space-size=<half the limit>` when the container has a memory limit: what the
 *   Deployment sets for its 512Mi, leaving the other half to the young generation, code and
 *   buffers. Without a limit, UNLIMITED_OLD_SPACE_MIB.
 */
export function missingV8Flags(input: V8SizingInput): string[] {
  const given = [...input.execArgv, ...(input.nodeOptions ?? '').split(/\s+/)].map((flag) =>
    flag.replace(/_/g, '-'),
  );
  const has = (name: string) => given.some((flag) => flag === name || flag.startsWith(`${name}=`));
  const flags: string[] = [];
  if (!has('--max-semi-space-size')) flags.push(`--max-semi-space-size=${SEMI_SPACE_MIB}`);
  if (!has('--max-old-space-size')) {
    const limit = input.memoryLimitBytes;
    const oldSpaceMiB =
      limit === undefined ? UNLIMITED_OLD_SPACE_MIB : Math.floor(limit / 2 / 2 ** 20);
    flags.push(`--max-old-space-size=${oldSpaceMiB}`);
  }
  return flags;
}

/** Limits at or above this are "no limit" (cgroup v1 writes 2^63 rounded to a page). */
const UNLIMITED = 2 ** 50;

/**
 * The memory limit of this process's cgroup (v2 `memory.max`, else v1
 * `memory.limit_in_bytes`), or undefined when there is none or it cannot be read.
 */
export function cgroupMemoryLimit(read: (path: string) => string = readText): number | undefined {
  // Inside a container the cgroup namespace usually shows the container's own cgroup as the
  // root; without one, /proc/self/cgroup names the path below the mount.
  const cgroups = read('/proc/self/cgroup');
  const v2 = /^0::(\/.*)$/m.exec(cgroups)?.[1];
  const v1 = /^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(\/.*)$/m.exec(cgroups)?.[1];
  const candidates: string[] = [];
  if (v2 && v2 !== '/') candidates.push(`/sys/fs/cgroup${v2}/memory.max`);
  candidates.push('/sys/fs/cgroup/memory.max');
  if (v1 && v1 !== '/') candidates.push(`/sys/fs/cgroup/memory${v1}/memory.limit_in_bytes`);
  candidates.push('/sys/fs/cgroup/memory/memory.limit_in_bytes');
  for (const path of candidates) {
    const text = read(path).trim();
    if (text === '') continue;
    if (text === 'max') return undefined;
    const bytes = Number(text);
    if (!Number.isFinite(bytes) || bytes <= 0) continue;
    return bytes >= UNLIMITED ? undefined : bytes;
  }
  return undefined;
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/**
 * Restarts this process in place (same PID, same stdio, same environment plus Node's compile
 * cache: compile-cache.ts) with the missing V8 flags, before anything has started; returns when
 * nothing is missing or Node cannot exec (older than 22.15, or Windows), so the operator then
 * runs with V8's defaults.
 */
export function execWithV8Sizing(): void {
  const flags = missingV8Flags({
    execArgv: process.execArgv,
    nodeOptions: process.env['NODE_OPTIONS'],
    memoryLimitBytes: cgroupMemoryLimit(),
  });
  if (flags.length === 0 || typeof process.execve !== 'function') return;
  const [, ...script] = process.argv;
  process.execve(
    process.execPath,
    [process.execPath, ...process.execArgv, ...flags, ...script],
    compileCacheEnv(process.env),
  );
}
