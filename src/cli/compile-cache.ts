import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The environment a restarted `run` starts with: the caller's, plus Node's compile cache
 * (`NODE_COMPILE_CACHE`) unless the caller set or disabled it.
 *
 * Why: run from its TypeScript sources (`make dev`, `node src/cli/main.ts run`), Node strips the
 * types of every module with amaro, a WebAssembly build of swc that stays resident for the
 * process's life: about 24 MiB of an idle operator's 113 (docs/performance.md). With the cache a
 * restart reads the stripped and compiled modules from disk and never loads amaro. It has to be
 * on from the process's first module, so only a process started with it gains; the restart for
 * V8's flags is that start. The cache checks each module's content, so edited sources are
 * recompiled, and a directory it cannot write only turns it off. For `dist/` it keeps V8's code
 * cache, a faster start.
 *
 * The directory is Node's own default for `module.enableCompileCache()`, keyed inside by Node's
 * version, so tools sharing it do not collide.
 */
export function compileCacheEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (env['NODE_COMPILE_CACHE'] || env['NODE_DISABLE_COMPILE_CACHE']) return env;
  return { ...env, NODE_COMPILE_CACHE: join(tmpdir(), 'node-compile-cache') };
}
