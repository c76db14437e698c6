import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { compileCacheEnv } from '../../../src/cli/compile-cache.ts';
import { cgroupMemoryLimit, missingV8Flags } from '../../../src/cli/v8-sizing.ts';

const MiB = 2 ** 20;

describe('missingV8Flags', () => {
  it('caps the young generation of a bare start, and its old space at 1 GiB without a limit', () => {
    expect(
      missingV8Flags({ execArgv: [], nodeOptions: undefined, memoryLimitBytes: undefined }),
    ).toEqual(['--max-semi-space-size=4', '--max-old-space-size=1024']);
  });

  it('sizes the old space to half a container limit, as the Deployment does for 512Mi', () => {
    expect(missingV8Flags({ execArgv: [], nodeOptions: '', memoryLimitBytes: 512 * MiB })).toEqual([
      '--max-semi-space-size=4',
      '--max-old-space-size=256',
    ]);
  });

  it('adds nothing the user gave, in NODE_OPTIONS or on the command line, in any spelling', () => {
    expect(
      missingV8Flags({
        execArgv: ['--max_old_space_size=1024'],
        nodeOptions: '--enable-source-maps --max-semi-space-size 16',
        memoryLimitBytes: 512 * MiB,
      }),
    ).toEqual([]);
  });

  it('adds nothing once it has re-executed with its own flags (no loop)', () => {
    const input = { execArgv: [] as string[], nodeOptions: undefined, memoryLimitBytes: 300 * MiB };
    const flags = missingV8Flags(input);
    expect(missingV8Flags({ ...input, execArgv: flags })).toEqual([]);
  });

  it('does not take a longer flag for the one it looks for', () => {
    expect(
      missingV8Flags({
        execArgv: ['--max-semi-space-size-extra=1'],
        nodeOptions: '--max-old-space-size=2048',
        memoryLimitBytes: undefined,
      }),
    ).toEqual(['--max-semi-space-size=4']);
  });
});

describe('cgroupMemoryLimit', () => {
  const files = (entries: Record<string, string>) => (path: string) => entries[path] ?? '';

  it("reads the process's own cgroup v2 limit first", () => {
    const read = files({
      '/proc/self/cgroup': '0::/kubepods/pod1/c1\n',
      '/sys/fs/cgroup/kubepods/pod1/c1/memory.max': '536870912\n',
      '/sys/fs/cgroup/memory.max': '1073741824\n',
    });
    expect(cgroupMemoryLimit(read)).toBe(512 * MiB);
  });

  it('reads a namespaced cgroup v2 root, where the container sees itself as /', () => {
    const read = files({
      '/proc/self/cgroup': '0::/\n',
      '/sys/fs/cgroup/memory.max': '268435456\n',
    });
    expect(cgroupMemoryLimit(read)).toBe(256 * MiB);
  });

  it('has no limit for cgroup v2 "max" and for cgroup v1\'s page-rounded 2^63', () => {
    expect(cgroupMemoryLimit(files({ '/sys/fs/cgroup/memory.max': 'max\n' }))).toBeUndefined();
    expect(
      cgroupMemoryLimit(
        files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712\n' }),
      ),
    ).toBeUndefined();
  });

  it('reads a cgroup v1 limit', () => {
    const read = files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': '1073741824\n' });
    expect(cgroupMemoryLimit(read)).toBe(1024 * MiB);
  });

  it("reads the process's own cgroup v1 memory limit below the mount", () => {
    const read = files({
      '/proc/self/cgroup': '5:devices:/\n4:memory:/kubepods/pod1/c1\n0::/\n',
      '/sys/fs/cgroup/memory/kubepods/pod1/c1/memory.limit_in_bytes': '805306368\n',
      '/sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712\n',
    });
    expect(cgroupMemoryLimit(read)).toBe(768 * MiB);
  });

  it('has no limit when nothing can be read', () => {
    expect(cgroupMemoryLimit(() => '')).toBeUndefined();
  });
});

describe('execWithV8Sizing', () => {
  const source = resolve(import.meta.dirname, '../../../src/cli/v8-sizing.ts');
  // A script like the CLI's entry: what it runs with after the call.
  const script = join(mkdtempSync(join(tmpdir(), 'v8-sizing-')), 'main.mjs');
  writeFileSync(
    script,
    `import { execWithV8Sizing } from ${JSON.stringify(source)};
     execWithV8Sizing();
     console.log(JSON.stringify({ execArgv: process.execArgv, args: process.argv.slice(2) }));`,
  );
  const run = async (nodeOptions: string | undefined) => {
    const env = { ...process.env };
    delete env['NODE_OPTIONS'];
    if (nodeOptions !== undefined) env['NODE_OPTIONS'] = nodeOptions;
    const { stdout } = await promisify(execFile)(process.execPath, [script, 'run', '--flag'], {
      env,
    });
    return JSON.parse(stdout) as unknown;
  };

  it('restarts a bare start once, in place, with the flags and its own arguments', async () => {
    // One line: the first image was replaced before it printed.
    // The old space's flag too where this machine's cgroup has a memory limit.
    const flags = missingV8Flags({
      execArgv: [],
      nodeOptions: undefined,
      memoryLimitBytes: cgroupMemoryLimit(),
    });
    expect(flags).toContain('--max-semi-space-size=4');
    await expect(run(undefined)).resolves.toEqual({
      execArgv: flags,
      args: ['run', '--flag'],
    });
  });

  it('leaves a process alone whose NODE_OPTIONS already size V8', async () => {
    await expect(run('--max-semi-space-size=8 --max-old-space-size=512')).resolves.toEqual({
      execArgv: [],
      args: ['run', '--flag'],
    });
  });
});

describe('compileCacheEnv', () => {
  it("turns Node's compile cache on, in the temporary directory Node itself defaults to", () => {
    expect(compileCacheEnv({ PATH: '/bin' })).toEqual({
      PATH: '/bin',
      NODE_COMPILE_CACHE: join(tmpdir(), 'node-compile-cache'),
    });
  });

  it('keeps a directory the user chose, and a cache the user disabled', () => {
    expect(compileCacheEnv({ NODE_COMPILE_CACHE: '/cache' })).toEqual({
      NODE_COMPILE_CACHE: '/cache',
    });
    expect(compileCacheEnv({ NODE_DISABLE_COMPILE_CACHE: '1' })).toEqual({
      NODE_DISABLE_COMPILE_CACHE: '1',
    });
  });
});

describe('the restart with the compile cache', () => {
  const source = resolve(import.meta.dirname, '../../../src/cli/v8-sizing.ts');
  // A TypeScript entry like `node src/cli/main.ts run`, which writes the cache as `run` does once
  // started, and tells whether Node had to load amaro (its type stripper) in the restarted process.
  const start = async (disabled: boolean) => {
    const dir = mkdtempSync(join(tmpdir(), 'compile-cache-'));
    const script = join(dir, 'main.ts');
    writeFileSync(
      script,
      `import { flushCompileCache } from 'node:module';
       import { execWithV8Sizing } from ${JSON.stringify(source)};
       execWithV8Sizing();
       flushCompileCache();
       const amaro: boolean = process.moduleLoadList.some((m) => m.includes('amaro'));
       console.log(JSON.stringify({ amaro }));`,
    );
    const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: dir };
    delete env['NODE_OPTIONS'];
    delete env['NODE_COMPILE_CACHE'];
    if (disabled) env['NODE_DISABLE_COMPILE_CACHE'] = '1';
    const once = async () => {
      const { stdout } = await promisify(execFile)(process.execPath, [script, 'run'], { env });
      return JSON.parse(stdout) as unknown;
    };
    return [await once(), await once()];
  };

  it('strips types once: the next start reads every module from the cache without amaro', async () => {
    await expect(start(false)).resolves.toEqual([{ amaro: true }, { amaro: false }]);
  });

  it('strips them again on every start when the user disabled the cache', async () => {
    await expect(start(true)).resolves.toEqual([{ amaro: true }, { amaro: true }]);
  });
});
