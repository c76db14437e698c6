import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClientResult } from './client.ts';
import type { LoadResult, Percentiles } from './load.ts';
import { type Machine, machineLine } from './machine.ts';
import { mib } from './process-stats.ts';
import type { BurstResult, MemResult, OperatorLoad } from './scenarios.ts';
import type { Settings } from './settings.ts';

/** Everything one `make bench` measured; written as JSON next to its Markdown. */
export interface Results {
  readonly machine: Machine;
  /** The knobs as set (env names), so a result says how it was taken. */
  readonly settings: Readonly<Record<string, string>>;
  burst?: BurstResult;
  rates?: { readonly rate: number; readonly result: OperatorLoad }[];
  mem?: MemResult;
  client?: ClientResult;
  readonly errors: { readonly bench: string; readonly message: string }[];
  finishedAt?: string;
}

export function settingsLine(settings: Settings): Record<string, string> {
  return {
    BENCHES: [...settings.benches].join(' '),
    RUNS: String(settings.runs),
    CONCURRENCY: String(settings.concurrency),
    RATES: settings.rates.join(' '),
    RATE_N: String(settings.rateN),
    MEM_N: settings.memN.filter((n) => n > 0).join(' '),
    MEM_RESTARTS: String(settings.restarts),
    CLIENT_REQUESTS: String(settings.clientRequests),
    AUDIT: settings.audit ? '1' : '0',
    ...settings.operatorEnv,
  };
}

const f0 = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '-');
const f1 = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '-');
const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '-');
const pcts = (p: Percentiles | undefined, keys: readonly (keyof Percentiles)[]) =>
  p ? keys.map((k) => f0(p[k])).join(' / ') : '-';

function table(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ];
}

/** What went wrong in a load, if anything: incomplete figures must not pass for complete. */
function problems(label: string, load: LoadResult): string[] {
  const notes: string[] = [];
  if (load.succeeded < load.runs) notes.push(`${load.succeeded} of ${load.runs} succeeded`);
  if (load.failed > 0) notes.push(`${load.failed} failed`);
  if (load.createErrors > 0) notes.push(`${load.createErrors} creates failed`);
  if (load.timedOut) notes.push('timed out');
  return notes.length > 0 ? [`- **${label}: ${notes.join(', ')}**`] : [];
}

export function renderMarkdown(results: Results): string {
  const s = results.settings;
  const lines: string[] = [
    `# make bench, ${results.machine.date}`,
    '',
    `Machine: ${machineLine(results.machine)}`,
    '',
    `Settings: ${Object.entries(s)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`,
  ];
  const { burst, rates, mem } = results;
  if (burst) {
    const op = burst.operator;
    const row = (label: string, load: LoadResult, e: string, o?: OperatorLoad) => [
      label,
      f1(load.runsPerS),
      e,
      pcts(load.runningMs, ['p50', 'p99']),
      pcts(load.succeededMs, ['p50', 'p99']),
      o ? f2(o.cpuMsPerRun) : '-',
      o ? f0(o.peakRssMiB) : '-',
      o ? f0(o.loadPeakRssMiB) : '-',
      o ? f0(o.heapUsedAfterMiB) : '-',
      String(load.queued),
    ];
    lines.push(
      '',
      `## Burst: ${s['RUNS']} runs from ${s['CONCURRENCY']} creators`,
      '',
      ...table(
        [
          'contender',
          'runs/s',
          'E',
          'create->Running p50 / p99 ms',
          'create->Succeeded p50 / p99 ms',
          'CPU ms/run',
          'peak RSS MiB',
          'peak RSS in burst MiB',
          'heap used after MiB',
          'seen Queued',
        ],
        [
          row('operator', op.load, f2(burst.e), op),
          row('replay (no operator)', burst.replay, '1.00'),
        ],
      ),
      ...problems('operator', op.load),
      ...problems('replay', burst.replay),
    );
  }
  if (rates && rates.length > 0) {
    lines.push(
      '',
      `## Steady offered rates: ${s['RATE_N']} runs each, ${s['CONCURRENCY']} creators, a fresh operator per rate`,
      '',
      ...table(
        [
          'offered runs/s',
          'achieved runs/s',
          'create->Running p50 / p95 / p99 ms',
          'create->Succeeded p50 / p95 / p99 ms',
          'CPU ms/run',
          'peak RSS MiB',
        ],
        rates.map(({ rate, result }) => [
          String(rate),
          f1(result.load.runsPerS),
          pcts(result.load.runningMs, ['p50', 'p95', 'p99']),
          pcts(result.load.succeededMs, ['p50', 'p95', 'p99']),
          f2(result.cpuMsPerRun),
          f0(result.peakRssMiB),
        ]),
      ),
      ...rates.flatMap(({ rate, result }) => problems(`${rate} runs/s`, result.load)),
    );
  }
  if (mem) {
    lines.push(
      '',
      `## Idle with finished runs cached, per operator start (audit ${mem.audit ? 'on; the runs carry Audited=True' : 'off'})`,
      '',
      ...table(
        [
          'finished runs',
          'start',
          'ready after s',
          'CPU to ready s',
          'CPU to idle s',
          'RSS at ready MiB',
          'idle RSS MiB',
          'peak RSS MiB',
          'heap used MiB',
          'live heap MiB',
          'RSS after GC MiB',
          'API writes',
        ],
        mem.points.map((p) => [
          String(p.runs),
          String(p.start),
          f1(p.readyMs / 1000),
          f1(p.cpuMsToReady / 1000),
          f1(p.cpuMsToIdle / 1000),
          f0(p.rssAtReadyMiB),
          f0(p.idleRssMiB),
          f0(p.peakRssMiB),
          f1(p.heapUsedMiB),
          f1(mib(p.afterGc.heapUsed)),
          f0(mib(p.afterGc.rss)),
          f0(p.apiWrites),
        ]),
      ),
      '',
      ...table(
        ['finished runs', 'live heap KiB/run', 'heap used KiB/run', 'idle RSS KiB/run'],
        mem.perRun.map((r) => [
          String(r.runs),
          f2(r.liveHeapKiB),
          f2(r.heapUsedKiB),
          f2(r.idleRssKiB),
        ]),
      ),
      '',
      `Seeded by the replay path (create + terminal status): ${mem.seeding.map((x) => `${x.runs} runs in ${f0(x.seconds)} s`).join(', ') || 'nothing'}.`,
    );
  }
  const { client } = results;
  if (client) {
    const protocols = ['HTTP/1.1', 'HTTP/2'] as const;
    const of = (protocol: string) => client.rounds.filter((r) => r.protocol === protocol);
    const mean = (values: readonly number[]) =>
      values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
    lines.push(
      '',
      `## Client: the operator's CPU per API request (${client.requests} status patches per round, ${client.concurrency} at a time, rounds alternating)`,
      '',
      ...table(
        ['protocol', 'CPU µs/request, per round', 'mean', 'requests/s, per round'],
        protocols.map((protocol) => [
          protocol,
          of(protocol)
            .map((r) => f0(r.cpuUsPerRequest))
            .join(', '),
          f0(mean(of(protocol).map((r) => r.cpuUsPerRequest))),
          of(protocol)
            .map((r) => f0(r.requestsPerSecond))
            .join(', '),
        ]),
      ),
    );
  }
  if (results.errors.length > 0) {
    lines.push('', '## Errors', '', ...results.errors.map((e) => `- ${e.bench}: ${e.message}`));
  }
  lines.push(
    '',
    'Compare figures within one run (everything shares these cores); docs/performance.md says how to read them.',
  );
  return `${lines.join('\n')}\n`;
}

/** Writes bench/results/<timestamp>.json and .md; returns their paths. */
export function writeResults(dir: string, results: Results, markdown: string): string[] {
  mkdirSync(dir, { recursive: true });
  const stamp = results.machine.date.replace(/\.\d+Z$/, 'Z').replaceAll(':', '-');
  const json = join(dir, `${stamp}.json`);
  const md = join(dir, `${stamp}.md`);
  writeFileSync(json, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(md, markdown);
  return [json, md];
}
