import { ContentType, KubeClient } from '../../src/kube/kube-client.ts';
import { createNamespace } from '../../test/support/kube.ts';
import type { BenchContext } from './scenarios.ts';

/** CPU per request of the operator's own Kubernetes client, per protocol, in one round. */
export interface ClientRound {
  readonly protocol: 'HTTP/1.1' | 'HTTP/2';
  /** User + system CPU of this process per request, µs. */
  readonly cpuUsPerRequest: number;
  readonly requestsPerSecond: number;
}

export interface ClientResult {
  readonly requests: number;
  readonly concurrency: number;
  readonly rounds: readonly ClientRound[];
}

const OBJECTS = 100;
const ROUNDS = 3;
const WARM_UP = 200;

/**
 * What one API request costs the operator's process, apart from everything else it does: the
 * operator's KubeClient sends `requests` status merge-patches (the operator's hottest write) to
 * AgentRuns in the bench's cluster, `concurrency` at a time, over HTTP/1.1 (a keep-alive pool)
 * and over HTTP/2 (one session), alternating for ROUNDS rounds so that the machine's drift
 * weighs on both. Only this process's CPU is counted (process.cpuUsage), not the API server's.
 */
export async function clientCost(ctx: BenchContext): Promise<ClientResult> {
  const requests = ctx.settings.clientRequests;
  const concurrency = 10;
  const setUp = KubeClient.load({ kubeconfig: ctx.kubeconfig });
  try {
    const namespace = await createNamespace(ctx.kc, 'bench-client');
    const base = `/apis/agents.applylens.io/v1alpha1/namespaces/${namespace}/agentruns`;
    for (let i = 0; i < OBJECTS; i++) {
      await setUp.request('POST', base, {
        body: JSON.stringify({
          apiVersion: 'agents.applylens.io/v1alpha1',
          kind: 'AgentRun',
          metadata: { name: `c-${i}` },
          spec: { agent: 'noop', objective: 'client bench' },
        }),
      });
    }
    const clients = {
      'HTTP/1.1': KubeClient.load({ kubeconfig: ctx.kubeconfig, http2: false }),
      'HTTP/2': KubeClient.load({ kubeconfig: ctx.kubeconfig, http2: true }),
    } as const;
    const send = async (client: KubeClient, n: number) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < n) {
            const i = next++;
            await client.request('PATCH', `${base}/c-${i % OBJECTS}/status`, {
              contentType: ContentType.MergePatch,
              body: `{"status":{"phase":"Running","message":"request ${i}"}}`,
            });
          }
        }),
      );
    };
    const rounds: ClientRound[] = [];
    try {
      for (let round = 0; round < ROUNDS; round++) {
        for (const protocol of ['HTTP/1.1', 'HTTP/2'] as const) {
          const client = clients[protocol];
          await send(client, WARM_UP);
          const cpu = process.cpuUsage();
          const began = performance.now();
          await send(client, requests);
          const used = process.cpuUsage(cpu);
          const seconds = (performance.now() - began) / 1000;
          rounds.push({
            protocol,
            cpuUsPerRequest: (used.user + used.system) / requests,
            requestsPerSecond: requests / seconds,
          });
        }
      }
    } finally {
      for (const client of Object.values(clients)) client.close();
    }
    return { requests, concurrency, rounds };
  } finally {
    setUp.close();
  }
}
