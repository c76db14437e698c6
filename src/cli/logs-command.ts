import { spawn } from 'node:child_process';
import { z } from 'zod';
import { jobName } from '../controller/job-manifest.ts';
import { AGENT_CONTAINER } from '../handlers/agent-definitions.ts';
import {
  CliError,
  type CommandSpec,
  formatHelp,
  nonEmptyValue,
  parseArgs,
  parseFlags,
  UsageError,
} from './args.ts';
import type { CliIo } from './command.ts';

/**
 * `kubectl agentrun logs RUN`: the agent's own output. A Job agent's attempt is a Job whose
 * name follows from the run (job-manifest.ts), so this asks kubectl for the run and then for
 * `kubectl logs job/<name> -c agent`, as the user: their kubeconfig, their RBAC (pods/log). An
 * agent that runs inside the operator has no log of its own; the answer says where to look.
 */
export const LOGS: CommandSpec = {
  path: 'kubectl agentrun logs',
  synopsis: 'RUN [-f] [--attempt N] [-n NAMESPACE] [flags]',
  description: `Print the logs of a run's agent: for an agent of kind job (an AgentDefinition with spec.job),
the container of the Job of the run's last attempt (or of --attempt N). Agents that run inside the
operator (noop, http.check, webhooks) have no container of their own: the command says so and where
their outcome is.`,
  args: [{ name: 'RUN' }],
  flags: [
    { name: 'follow', short: 'f', boolean: true, help: 'stream the logs while the agent runs' },
    { name: 'attempt', value: 'N', help: 'the attempt whose Job to read (default: the last one)' },
    {
      name: 'namespace',
      short: 'n',
      value: 'NAMESPACE',
      help: "the run's namespace (default: the kubeconfig context's)",
    },
    { name: 'kubeconfig', value: 'FILE', help: 'kubeconfig, passed on to kubectl' },
    { name: 'context', value: 'CONTEXT', help: 'kubeconfig context, passed on to kubectl' },
  ],
  more: `Environment:
  KUBECTL        the kubectl to run (default: kubectl on PATH)

Examples:
  kubectl agentrun logs nightly-build -f
  kubectl agentrun logs nightly-build --attempt 1 -n team-a`,
};

const logsFlags = z.object({
  follow: z.enum(['true', 'false']).default('false'),
  attempt: z.coerce.number().int().min(1).optional(),
  namespace: nonEmptyValue.optional(),
  kubeconfig: nonEmptyValue.optional(),
  context: nonEmptyValue.optional(),
});

/** The fields of an AgentRun this command reads. */
const runSchema = z.object({
  metadata: z.object({ name: z.string(), namespace: z.string(), uid: z.string() }),
  spec: z.object({ agent: z.string() }),
  status: z
    .object({
      attempts: z.number().optional(),
      phase: z.string().optional(),
      plan: z.record(z.string(), z.unknown()).optional(),
    })
    .optional(),
});

export async function logsCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseArgs(LOGS, argv);
  if (parsed.help) {
    io.out(formatHelp(LOGS));
    return 0;
  }
  const name = parsed.args[0];
  if (name === undefined || parsed.args.length > 1) {
    throw new UsageError('give exactly one run name', LOGS);
  }
  const flags = parseFlags(LOGS, logsFlags, parsed.flags);
  const kubectl = io.env['KUBECTL'] || 'kubectl';
  const common = [
    ...(flags.kubeconfig ? ['--kubeconfig', flags.kubeconfig] : []),
    ...(flags.context ? ['--context', flags.context] : []),
    ...(flags.namespace ? ['-n', flags.namespace] : []),
  ];
  const env = { ...io.env };
  const got = await capture(env, kubectl, [
    'get',
    'agentruns.agents.applylens.io',
    name,
    '-o',
    'json',
    ...common,
  ]);
  if (got.code !== 0) {
    io.err(got.stderr);
    return got.code;
  }
  const run = runSchema.safeParse(JSON.parse(got.stdout));
  if (!run.success)
    throw new CliError(`kubectl returned something other than an AgentRun for ${name}`);
  const { metadata, spec, status } = run.data;
  const plan = status?.plan;
  if (plan !== undefined && plan['image'] === undefined) {
    io.out(
      `The agent "${spec.agent}" of run ${metadata.namespace}/${metadata.name} runs inside the operator, not in a container of its own: it has no logs.\n` +
        `Its outcome is on the run (kubectl get agentrun ${metadata.name} -n ${metadata.namespace} -o yaml: status.artifacts, status.error, the Succeeded condition),\n` +
        `its Events in kubectl describe agentrun ${metadata.name}, and the operator's log has one line per finished run with runId ${metadata.uid}.\n`,
    );
    return 0;
  }
  const attempts = status?.attempts ?? 0;
  const attempt = flags.attempt ?? attempts;
  if (attempt === 0 || plan === undefined) {
    io.err(
      `run ${metadata.namespace}/${metadata.name} has not started an attempt yet (phase ${status?.phase ?? 'none'})\n`,
    );
    return 1;
  }
  if (attempt > attempts) {
    io.err(
      `run ${metadata.namespace}/${metadata.name} has had ${attempts} attempt(s); there is no attempt ${attempt}\n`,
    );
    return 1;
  }
  const job = jobName({ metadata }, attempt);
  const follow = flags.follow === 'true' ? ['-f'] : [];
  return inherit(env, kubectl, ['logs', `job/${job}`, '-c', AGENT_CONTAINER, ...follow, ...common]);
}

type Env = Record<string, string | undefined>;

function capture(
  env: Env,
  command: string,
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.on('error', (error) => reject(notFound(command, error)));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/** Runs kubectl with this terminal: logs stream straight through, Ctrl-C reaches it. */
function inherit(env: Env, command: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: 'inherit' });
    child.on('error', (error) => reject(notFound(command, error)));
    child.on('close', (code) => resolve(code ?? 1));
  });
}

function notFound(command: string, error: Error): Error {
  return (error as NodeJS.ErrnoException).code === 'ENOENT'
    ? new CliError(`cannot run ${command}: not found on PATH (set KUBECTL to its path)`)
    : error;
}
