import { execFile } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type KubeConfig, VersionApi } from '@kubernetes/client-node';
import pg from 'pg';

const run = promisify(execFile);

/** Where the figures were taken: they are this machine's, never compare them across machines. */
export interface Machine {
  readonly cores: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly node: string;
  readonly kubeApiserver: string;
  readonly etcd: string;
  readonly postgres: string;
  /** ISO 8601, when the bench started. */
  readonly date: string;
  /** 1-minute load average when the bench started: others' work on shared cores shows here. */
  readonly loadAverage: number;
  /** `git describe --always --dirty` of the checkout. */
  readonly commit: string;
}

export async function describeMachine(
  kc: KubeConfig,
  databaseUrl: string | undefined,
  date: Date,
): Promise<Machine> {
  const [kubeApiserver, etcd, postgres, commit] = await Promise.all([
    kc
      .makeApiClient(VersionApi)
      .getCode()
      .then((info) => info.gitVersion),
    etcdVersion(),
    databaseUrl ? postgresVersion(databaseUrl) : Promise.resolve('(audit off)'),
    run('git', ['describe', '--always', '--dirty'], { cwd: import.meta.dirname }).then(
      ({ stdout }) => stdout.trim(),
      () => 'unknown',
    ),
  ]);
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    node: process.version,
    kubeApiserver,
    etcd,
    postgres,
    date: date.toISOString(),
    loadAverage: loadavg()[0] ?? Number.NaN,
    commit,
  };
}

async function etcdVersion(): Promise<string> {
  const assets = process.env['KUBEBUILDER_ASSETS'];
  if (!assets) return 'unknown';
  try {
    const { stdout } = await run(join(assets, 'etcd'), ['--version']);
    return /etcd Version: (\S+)/.exec(stdout)?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

async function postgresVersion(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    const result = await client.query<{ server_version: string }>('show server_version');
    return result.rows[0]?.server_version ?? 'unknown';
  } catch {
    return 'unknown';
  } finally {
    await client.end().catch(() => {});
  }
}

export function machineLine(m: Machine): string {
  return [
    `${m.cores} cores (${m.cpuModel}), ${m.memoryGiB} GiB`,
    `Node ${m.node}`,
    `kube-apiserver ${m.kubeApiserver}`,
    `etcd ${m.etcd}`,
    `PostgreSQL ${m.postgres}`,
    m.date,
    `load average ${m.loadAverage.toFixed(2)} at start`,
    `commit ${m.commit}`,
  ].join('; ');
}
