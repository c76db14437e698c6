import { accessSync, constants } from 'node:fs';

/** The tests' own tools and the environment variable that make exports each one's path in. */
const TOOLS = {
  PROMTOOL: 'promtool',
  PROMETHEUS: 'prometheus',
  ARGOCD_LUA: 'argocd-lua',
} as const;

export type ToolVariable = keyof typeof TOOLS;

/**
 * The path of a tool the tests run (promtool, prometheus, argocd-lua), from the variable that
 * `make test` / `make test-unit` / `make test-integration` export. Never looked up on PATH: the
 * tests are written against the versions hack/tools/setup.sh builds and caches, and a build takes
 * minutes, so it belongs to make rather than to a test.
 */
export function toolPath(variable: ToolVariable, env: NodeJS.ProcessEnv = process.env): string {
  const name = TOOLS[variable];
  const path = env[variable];
  if (!path) {
    throw new Error(
      `${variable} is not set: run the tests through make (make test / make test-unit / make test-integration), ` +
        `or build the tools with 'make tools' and export ${variable}="$(hack/tools/setup.sh ${name} | tail -n 1)"`,
    );
  }
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${variable}=${path} is missing or not executable: run 'make tools'`);
  }
  return path;
}
