import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { installCrd } from '../../test/support/crds.ts';
import { ControlPlane } from '../../test/support/envtest/control-plane.ts';
import { adminKubeConfig } from '../../test/support/envtest/users.ts';
import { PostgresServer } from '../../test/support/postgres/server.ts';
import { clientCost } from './client.ts';
import { describeMachine } from './machine.ts';
import { warmCompileCache } from './operator-process.ts';
import { PooledKubeConfig } from './pooled-kube-config.ts';
import { type Results, renderMarkdown, settingsLine, writeResults } from './report.ts';
import { type BenchContext, burst, memory, steady } from './scenarios.ts';
import { loadSettings } from './settings.ts';

const root = resolve(import.meta.dirname, '../..');

/**
 * `make bench`: one local control plane (etcd + kube-apiserver) and, with AUDIT (the product
 * default), a throwaway PostgreSQL; the real operator CLI as a child process, started afresh
 * for every measurement; the load generator in this process. Runs the BENCHES in order (burst,
 * rate, mem), prints a Markdown report on stdout and writes it with its JSON to bench/results/.
 * Progress goes to stderr. Asserts nothing: exit 1 only when a scenario could not run.
 */
export async function main(): Promise<number> {
  const settings = loadSettings();
  warmCompileCache(settings.operatorEnv);
  const date = new Date();
  const logDir = join(root, '.reports/bench');
  mkdirSync(logDir, { recursive: true });
  const plane = await ControlPlane.start();
  let postgres: PostgresServer | undefined;
  // The load generator pools its connections, as any sensible client does.
  const kc = PooledKubeConfig.from(adminKubeConfig(plane.info));
  try {
    if (settings.audit) postgres = await PostgresServer.start();
    await installCrd(plane.info);
    const ctx: BenchContext = {
      settings,
      kc,
      api: kc.makeApiClient(CustomObjectsApi),
      kubeconfig: plane.info.adminKubeconfig,
      databaseUrl: postgres?.url(),
      logDir,
    };
    const results: Results = {
      machine: await describeMachine(kc, ctx.databaseUrl, date),
      settings: settingsLine(settings),
      errors: [],
    };
    const attempt = async (bench: string, body: () => Promise<void>) => {
      try {
        await body();
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        console.error(`bench: ${bench} failed: ${message}`);
        results.errors.push({ bench, message });
      }
    };
    if (settings.benches.has('burst')) {
      await attempt('burst', async () => {
        results.burst = await burst(ctx);
      });
    }
    if (settings.benches.has('rate')) {
      results.rates = [];
      for (const rate of settings.rates) {
        await attempt(`rate ${rate}`, async () => {
          results.rates?.push({ rate, result: await steady(ctx, rate) });
        });
      }
    }
    if (settings.benches.has('mem')) {
      await attempt('mem', async () => {
        results.mem = await memory(ctx);
      });
    }
    if (settings.benches.has('client')) {
      await attempt('client', async () => {
        results.client = await clientCost(ctx);
      });
    }
    results.finishedAt = new Date().toISOString();
    const markdown = renderMarkdown(results);
    console.log(`\n${markdown}`);
    const files = writeResults(join(root, 'bench/results'), results, markdown);
    console.error(`bench: wrote ${files.join(' and ')}; operator logs in ${logDir}`);
    return results.errors.length > 0 ? 1 : 0;
  } finally {
    await kc.close();
    await plane.stop();
    await postgres?.destroy();
  }
}
