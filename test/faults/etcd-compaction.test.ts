import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compact, currentRevision } from './support/etcd.ts';
import { FaultEnvironment, writeScenarioBlock } from './support/harness.ts';
import {
  detailLines,
  findings,
  RESULT_HEADER,
  resultRow,
  violations,
} from './support/invariants.ts';
import { Partition } from './support/partition.ts';

/**
 * Scenario 4 of issue 15: the network between the operator and kube-apiserver is cut for 20 s in
 * the middle of a burst (packets dropped, not refused), the burst goes on meanwhile, and etcd is
 * compacted to its newest revision just before the network heals. The connections that lived
 * through the cut stay silent for good, so the operator must notice dead connections by itself.
 * Its watch resumes from a resourceVersion that etcd no longer has: the API server answers 410
 * Gone, and the informer must relist and lose nothing.
 *
 * The API server runs with --watch-cache=false for this scenario, so watches are served by etcd
 * and the compaction is what expires the resourceVersion. (With its watch cache, the API server
 * answers 410 once a resourceVersion falls out of the cache's window; test/integration/kube/
 * informer.test.ts covers that one.)
 */
const RUNS = Number(process.env['FAULT_RUNS'] ?? 300);
const SETTLE_BOUND_MS = 120_000;
const CUT_MS = 20_000;
const CUT_AT_SHARE = 0.2;
const EXPIRED = 'resourceVersion expired';

let env: FaultEnvironment;
let partition: Partition;

beforeAll(async () => {
  env = await FaultEnvironment.start('compaction', {}, { apiserverArgs: ['--watch-cache=false'] });
  const api = new URL(env.plane.info.server);
  partition = await Partition.start({ host: api.hostname, port: Number(api.port) });
});

afterAll(async () => {
  await partition?.close();
  await env?.stop();
});

/** The admin kubeconfig, pointed at the partition's relay instead of the API server. */
function kubeconfigThroughPartition(): string {
  const file = join(env.dir, 'through-partition.kubeconfig');
  const text = readFileSync(env.plane.info.adminKubeconfig, 'utf8');
  const server = env.plane.info.server;
  if (!text.includes(server)) throw new Error(`the admin kubeconfig does not name ${server}`);
  writeFileSync(file, text.replaceAll(server, `https://127.0.0.1:${partition.port}`), {
    mode: 0o600,
  });
  return file;
}

describe('scenario 4: etcd compacted while the operator is cut off', () => {
  it('relists after 410 Gone, notices dead connections, and loses nothing', async () => {
    const began = Date.now();
    await env.operators.start('a', { KUBECONFIG: kubeconfigThroughPartition() });
    const creating = env.createBurst(RUNS);
    await env.waitForTerminal(Math.ceil(RUNS * CUT_AT_SHARE), 300_000);
    const { terminal: terminalAtCut } = await env.terminalCount();
    const cutAt = Date.now();
    partition.cut();
    // The burst goes on while the operator sees nothing: creates and cancels reach etcd.
    const names = await creating;
    const createdInCut = Date.now() - cutAt;
    await sleep(Math.max(0, CUT_MS - (Date.now() - cutAt)));
    const revision = await currentRevision(env.plane.info.etcdUrl);
    await compact(env.plane.info.etcdUrl, revision);
    const healedAt = Date.now();
    partition.heal('silent');

    let recoveredAt = 0;
    while (recoveredAt === 0 && Date.now() - healedAt < SETTLE_BOUND_MS) {
      const { terminal } = await env.terminalCount();
      if (terminal > terminalAtCut) recoveredAt = Date.now();
      else await sleep(100);
    }
    const { list, at } = await env.settle(SETTLE_BOUND_MS);
    await env.operators.stop();

    const log = readFileSync(env.operators.current?.logFile ?? '', 'utf8').split('\n');
    const expired = log.filter((l) => l.includes(EXPIRED)).length;
    const relisted = log.filter((l) => l.includes('"msg":"relisted"')).length;
    const raw = findings({
      names,
      runs: list,
      calls: env.agent.calls,
      rows: await env.auditRows(),
      incarnations: env.operators.reports(),
      prometheusIncrease: env.operators.prometheusIncrease(),
    });
    // What a partition looks like from inside, as controller-runtime logs it too ("Reconciler
    // error"): requests that timed out or were cut (over HTTP/2: failed with the session whose
    // health-check ping went unanswered), logged from the cut until the requests that
    // were in flight at the heal have timed out (60 s, the client's request timeout). Counted and
    // shown, not failed on; any other error line still counts.
    const windowEnd = healedAt + 70_000;
    const partitionMessages = new Map<string, number>();
    const isPartitionLine = (line: string): boolean => {
      let entry: { time?: string; msg?: string; err?: { message?: string; name?: string } };
      try {
        entry = JSON.parse(line.replace(/^#\d+: /, '')) as typeof entry;
      } catch {
        return false;
      }
      const t = Date.parse(entry.time ?? '');
      const text = `${entry.msg ?? ''} ${entry.err?.name ?? ''} ${entry.err?.message ?? ''}`;
      const ok =
        t >= cutAt &&
        t <= windowEnd &&
        /TimeoutError|timed out|ECONNRESET|socket hang up|no data from the API server|did not answer an HTTP\/2 ping/.test(
          text,
        );
      if (ok) {
        const key = `${entry.msg ?? ''} (${entry.err?.name ?? 'Error'})`;
        partitionMessages.set(key, (partitionMessages.get(key) ?? 0) + 1);
      }
      return ok;
    };
    const f = { ...raw, errorLines: raw.errorLines.filter((l) => !isPartitionLine(l)) };
    const summary = [...partitionMessages].map(([m, n]) => `${n} × \`${m}\``).join(', ') || 'none';
    const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    writeScenarioBlock(
      'etcd-compaction',
      [
        `Last run: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${Math.round((Date.now() - began) / 1000)} s in all. The network was cut ${s(healedAt - cutAt)} with ${terminalAtCut} of ${RUNS} runs terminal (the rest of the burst was created in its first ${s(createdInCut)}); etcd was compacted to revision ${revision} just before it healed; every run terminal and audited ${s(at - healedAt)} after the heal (bound ${SETTLE_BOUND_MS / 1000} s).`,
        '',
        RESULT_HEADER,
        resultRow(
          f,
          `network to kube-apiserver cut for ${CUT_MS / 1000} s (dropped, connections left silent after), etcd compacted meanwhile; API server without watch cache`,
          recoveredAt
            ? `${s(recoveredAt - healedAt)} after the heal (first run finished)`
            : 'not within the bound',
        ),
        '',
        `- The informer's watch found its resourceVersion compacted (${expired} × \`${EXPIRED} (410 Gone); relisting\`) and relisted (${relisted} × \`relisted\`).`,
        `- Error lines logged between the cut and 70 s after the heal naming the partition (timeouts, resets), not counted below as errors: ${summary}. Nothing else is excused.`,
        ...detailLines(f),
      ].join('\n'),
    );
    expect(violations(f)).toEqual([]);
    expect(expired).toBeGreaterThan(0);
    expect(relisted).toBeGreaterThan(0);
  });
});
