import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ControlPlaneInfo } from './envtest/control-plane.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  /** Written to the command's stdin (stdin is always closed, so nothing waits for input). */
  readonly input?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * Runs a command from the repository root (so `deploy/...` paths resolve). It never rejects:
 * tests assert on a failure's exit code and message as often as on success.
 */
export function runCommand(
  command: string,
  args: readonly string[],
  options: CommandOptions = {},
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = execFile(
      command,
      args,
      { cwd: ROOT, env: options.env ?? process.env, maxBuffer: 32 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        // -1: it did not run or was killed; the error says why, stderr may be empty.
        resolve({ code, stdout, stderr: `${stderr}${code === -1 ? (error?.message ?? '') : ''}` });
      },
    );
    child.stdin?.end(options.input ?? '');
  });
}

export interface KubectlOptions extends CommandOptions {
  /** Whose credentials: the control plane's admin unless given (a minted user, a ServiceAccount). */
  readonly kubeconfig?: string;
}

export type Kubectl = (args: readonly string[], options?: KubectlOptions) => Promise<CommandResult>;

/** The control plane's own kubectl (as new as its API server), as admin unless told otherwise. */
export function kubectlFor(plane: Pick<ControlPlaneInfo, 'kubectl' | 'adminKubeconfig'>): Kubectl {
  return (args, options = {}) =>
    runCommand(
      plane.kubectl,
      ['--kubeconfig', options.kubeconfig ?? plane.adminKubeconfig, ...args],
      options,
    );
}

/** The output of a command that had to succeed; otherwise an error carrying its stderr. */
export async function succeeded(
  result: Promise<CommandResult>,
  what: readonly string[],
): Promise<string> {
  const { code, stdout, stderr } = await result;
  if (code !== 0) throw new Error(`${what.join(' ')} exited ${code}:\n${stderr}`);
  return stdout;
}
