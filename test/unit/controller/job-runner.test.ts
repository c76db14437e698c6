// JobRunner against a small fake API server: what it makes of the Job and pod caches when their
// two watches deliver out of order. The full path (kube-controller-manager, the fake kubelet) is
// in test/integration/jobs/job-agents.test.ts.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { JobLabel, jobName } from '../../../src/controller/job-manifest.ts';
import { JobRunner } from '../../../src/controller/job-runner.ts';
import { NO_AUTH } from '../../../src/kube/cluster-access.ts';
import { KubeClient } from '../../../src/kube/kube-client.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { agentRun } from './fixtures.ts';

let server: Server | undefined;
let client: KubeClient | undefined;
let runner: JobRunner | undefined;
afterEach(async () => {
  await runner?.stop();
  client?.close();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  server = runner = client = undefined;
});

it("takes a Job's verdict seen before its pod's last update with the pod's result, read again", async () => {
  const run = agentRun({ spec: { agent: 'job-agent' } });
  const labels = { [JobLabel.RunId]: run.metadata.uid, [JobLabel.Attempt]: '1' };
  const metadata = (name: string) => ({
    name,
    namespace: run.metadata.namespace,
    resourceVersion: '5',
    creationTimestamp: '2026-03-01T10:00:00Z',
    labels,
    ownerReferences: [
      {
        apiVersion: 'x/v1',
        kind: 'AgentRun',
        name: run.metadata.name,
        uid: run.metadata.uid,
        controller: true,
      },
    ],
  });
  const job = {
    metadata: metadata(jobName(run, 1)),
    status: { conditions: [{ type: 'Complete', status: 'True' }], succeeded: 1 },
  };
  const agent = (state: object) => ({
    metadata: metadata('pod-1'),
    status: { phase: 'Running', containerStatuses: [{ name: 'agent', state }] },
  });
  // The cache lists the pod still running (its update has not arrived); read again, it has ended.
  const podLists = [
    agent({ running: { startedAt: '2026-03-01T10:00:01Z' } }),
    agent({ terminated: { exitCode: 0, message: '{"triaged": 12}' } }),
  ];
  const podReads: string[] = [];
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/json');
    if (url.searchParams.get('watch') === 'true') {
      res.writeHead(200).flushHeaders(); // held open, never an event
      return;
    }
    if (url.pathname.endsWith('/jobs')) {
      res.end(JSON.stringify({ metadata: { resourceVersion: '5' }, items: [job] }));
      return;
    }
    podReads.push(url.searchParams.get('labelSelector') ?? '');
    const pod = podLists[Math.min(podReads.length - 1, podLists.length - 1)];
    res.end(JSON.stringify({ metadata: { resourceVersion: '5' }, items: [pod] }));
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  client = new KubeClient({
    server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tls: { rejectUnauthorized: true },
    namespace: undefined,
    auth: NO_AUTH,
  });
  runner = new JobRunner({ client, namespace: run.metadata.namespace, logger: silentLogger() });
  await runner.startCache();
  const result = await runner.run({
    run,
    attempt: 1,
    template: { podSpec: { containers: [{ name: 'agent', image: 'agent:1' }] } },
    params: {},
    report: () => {},
    signal: new AbortController().signal,
    logger: silentLogger(),
  });
  expect(result).toEqual({ triaged: 12 });
  // The informer's list, then the attempt's own pods, by run and attempt.
  expect(podReads).toEqual([
    JobLabel.RunId,
    `${JobLabel.RunId}=${run.metadata.uid},${JobLabel.Attempt}=1`,
  ]);
});
