import { z } from 'zod';
import type { RecentRunsQuery } from '../audit/audit-store.ts';
import { OPERATOR_VERSION } from '../version.ts';
import {
  CliError,
  type CommandSpec,
  formatHelp,
  listFlagValues,
  nonEmptyValue,
  parseArgs,
  parseFlags,
  UsageError,
} from './args.ts';
import { DATABASE_HELP, LIST_FLAGS, OUTPUT_FLAG, printRuns } from './audit-command.ts';
import { type CliIo, type CommandGroup, runGroup } from './command.ts';
import { DATABASE_URL_FLAG, resolveDatabaseUrl, withDatabase } from './database.ts';
import { logsCommand } from './logs-command.ts';

/**
 * The kubectl plugin `kubectl-agentrun` (kubectl runs it for `kubectl agentrun ...`):
 * `history` reads past runs from the audit log, so it also shows runs whose AgentRun is gone.
 * It talks to PostgreSQL only; the kubeconfig is read just for its current namespace.
 */

export const PLUGIN_PATH = 'kubectl agentrun';

export const HISTORY: CommandSpec = {
  path: `${PLUGIN_PATH} history`,
  synopsis: '[NAME] [--agent AGENT] [-n NAMESPACE | -A] [--limit N] [-o table|json] [flags]',
  description: `Show past runs of AgentRuns from the audit log (PostgreSQL), newest first, including runs
whose AgentRun has been deleted. NAME narrows to the runs of one AgentRun name (every run that
ever had that name in the namespace); --agent to one agent.`,
  args: [{ name: 'NAME', optional: true }],
  flags: [
    ...LIST_FLAGS,
    {
      name: 'namespace',
      short: 'n',
      value: 'NAMESPACE',
      help: "the namespace (default: the kubeconfig context's namespace, else default)",
    },
    { name: 'all-namespaces', short: 'A', boolean: true, help: 'runs in every namespace' },
    OUTPUT_FLAG,
    DATABASE_URL_FLAG,
    { name: 'kubeconfig', value: 'FILE', help: 'kubeconfig to take the namespace from' },
    { name: 'context', value: 'CONTEXT', help: 'kubeconfig context to take the namespace from' },
  ],
  more: `${DATABASE_HELP}
  KUBECONFIG     as for kubectl; only its context's namespace is used

Examples:
  kubectl agentrun history nightly-check
  kubectl agentrun history --agent http.check --status failed --since 7d -A
  kubectl agentrun history -n team-a -o json`,
};

const historyFlags = z.object({
  ...listFlagValues,
  namespace: nonEmptyValue.optional(),
  'all-namespaces': z.enum(['true', 'false']).default('false'),
  'database-url': z.string().optional(),
  kubeconfig: nonEmptyValue.optional(),
  context: nonEmptyValue.optional(),
});

export async function historyCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseArgs(HISTORY, argv);
  if (parsed.help) {
    io.out(formatHelp(HISTORY));
    return 0;
  }
  const flags = parseFlags(HISTORY, historyFlags, parsed.flags);
  const all = flags['all-namespaces'] === 'true';
  if (all && flags.namespace !== undefined) {
    throw new UsageError('--namespace and --all-namespaces exclude each other', HISTORY);
  }
  const url = resolveDatabaseUrl(flags['database-url'], io.env, HISTORY);
  const namespace = all
    ? undefined
    : (flags.namespace ?? (await kubeconfigNamespace(flags.kubeconfig, flags.context)));
  const name = parsed.args[0];
  const query: RecentRunsQuery = {
    ...(namespace === undefined ? {} : { namespace }),
    ...(name === undefined ? {} : { name }),
    ...(flags.agent === undefined ? {} : { agent: flags.agent }),
    ...(flags.status === undefined ? {} : { status: flags.status }),
    ...(flags.since === undefined ? {} : { since: flags.since }),
    ...(flags.limit === undefined ? {} : { limit: flags.limit }),
  };
  const runs = await withDatabase(url, (_pool, store) => store.getRecentRuns(query));
  const what = name === undefined ? 'No runs' : `No runs of ${JSON.stringify(name)}`;
  printRuns(io, runs, flags.output, {
    limit: flags.limit,
    empty: `${what} found in the audit log${namespace === undefined ? '' : ` in namespace ${namespace}`}.`,
    namespaceColumn: all,
  });
  return 0;
}

/**
 * The namespace of the kubeconfig's current (or given) context, as kubectl picks it; "default"
 * when the context names none. client-node is imported only here: the plugin needs no cluster.
 */
export async function kubeconfigNamespace(file?: string, context?: string): Promise<string> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  try {
    if (file) kc.loadFromFile(file);
    else kc.loadFromDefault();
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new CliError(`cannot read the kubeconfig (${reason}); pass -n NAMESPACE or -A`);
  }
  const name = context ?? kc.getCurrentContext();
  const found = kc.getContextObject(name);
  if (context !== undefined && !found) {
    throw new UsageError(`context ${JSON.stringify(context)} not found in the kubeconfig`, HISTORY);
  }
  return found?.namespace || 'default';
}

export const PLUGIN_GROUP: CommandGroup = {
  path: PLUGIN_PATH,
  description: `kubectl agentrun: AgentRuns (agents.applylens.io) beyond what kubectl get shows.
Version ${OPERATOR_VERSION}.`,
  commands: [
    {
      name: 'history',
      summary: 'past runs from the audit log, also of deleted AgentRuns',
      run: historyCommand,
    },
    {
      name: 'logs',
      summary: "the agent's container logs, for agents that run as Jobs",
      run: logsCommand,
    },
  ],
  more: `${DATABASE_HELP}

Examples:
  kubectl agentrun history nightly-check
  kubectl agentrun history --agent noop -A -o json
  kubectl agentrun logs nightly-build -f`,
};

export function kubectlAgentrun(argv: readonly string[], io: CliIo): Promise<number> {
  return runGroup(PLUGIN_GROUP, argv, io);
}
