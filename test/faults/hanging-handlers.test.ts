import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentRun } from '../../src/api/agentrun.ts';
import type { Seen, SpecInput } from '../support/agentruns.ts';
import { FaultEnvironment, reasonOf, writeScenarioBlock } from './support/harness.ts';
import {
  detailLines,
  findings,
  RESULT_HEADER,
  resultRow,
  violations,
} from './support/invariants.ts';
import { type Ending, WebhookAgent } from './support/webhook-agent.ts';

/**
 * Scenario 8 of issue 15: hanging handlers. Webhook endpoints accept the request and never
 * answer, send their headers and never the body, or drip the body one byte at a time for longer
 * than the webhook's timeout, while more runs than MAX_CONCURRENT_RUNS are stuck in them and
 * quick runs are created behind them. Every hanging attempt must end by its timeout (the
 * webhook's `timeoutMs`, or the run's `spec.timeoutSeconds` when that comes first), a cancel must
 * end a hanging run at once and close its connection, and the quick runs must not starve.
 */
const SLOTS = 20;
/** The webhook timeout of the short hanging endpoints. */
const HANG_MS = 2_000;
/** The webhook timeout of the long ones, which only spec.timeoutSeconds or a cancel ends first. */
const LONG_MS = 30_000;
/** spec.timeoutSeconds of the runs that must end TimedOut before their webhook's timeout. */
const RUN_TIMEOUT_S = 2;
/** A dripping answer: one byte every DRIP_EVERY_MS, DRIP_BYTES in all (12 s, over HANG_MS). */
const DRIP_EVERY_MS = 100;
const DRIP_BYTES = 120;
/** A dripping answer that finishes within HANG_MS: 30 bytes, one every 15 ms (0.45 s). */
const FAST_DRIP_EVERY_MS = 15;
const FAST_DRIP_BYTES = 30;
/** A running run is canceled once its call has hung this long. */
const CANCEL_AFTER_MS = 1_000;
/**
 * Bounds, generous for a busy 2-core machine (what matters is the order of magnitude: a timeout
 * that fires instead of LONG_MS, a cancel that acts at once, a slot that is handed on):
 */
/** How late a timeout may fire after it is due. */
const TIMEOUT_SLACK_MS = 8_000;
/** From the accepted cancel until the run is Canceled, and until the agent's connection closes. */
const CANCEL_BOUND_MS = 10_000;
/** A quick run created while every slot hangs: from the first slot freed after its creation. */
const QUICK_AFTER_FREE_BOUND_MS = 10_000;
/** Any quick run, from its creation (runs created before it may hold every slot for HANG_MS). */
const QUICK_BOUND_MS = 30_000;
const SETTLE_BOUND_MS = 120_000;
/** After settling, how long idle keep-alive connections get to close before the count. */
const IDLE_CLOSE_MS = 10_000;

type Kind =
  | 'hang'
  | 'half'
  | 'drip'
  | 'drip-fast'
  | 'hang-retry'
  | 'timeout-hang'
  | 'timeout-drip'
  | 'cancel-hang'
  | 'cancel-drip'
  | 'cancel-queued'
  | 'quick-noop'
  | 'quick-hook';

interface Planned {
  readonly name: string;
  readonly kind: Kind;
  readonly wave: string;
  createdAt: number;
  cancelAt?: number;
  /** For cancel-queued: whether the agent had a call of the run when the cancel was accepted. */
  calledBeforeCancel?: boolean;
}

const KIND_LABEL: Record<Kind, string> = {
  hang: 'accepts, reads the request, never answers (webhook timeout 2 s)',
  half: 'sends 200 and its headers, never the body (webhook timeout 2 s)',
  drip: `sends the body one byte every ${DRIP_EVERY_MS} ms, ${DRIP_BYTES} bytes (webhook timeout 2 s)`,
  'drip-fast': `sends the body one byte every ${FAST_DRIP_EVERY_MS} ms, ${FAST_DRIP_BYTES} bytes: done within the timeout`,
  'hang-retry': 'never answers, backoffLimit 1: two attempts, each ended by the webhook timeout',
  'timeout-hang': `never answers (webhook timeout 30 s), spec.timeoutSeconds ${RUN_TIMEOUT_S}`,
  'timeout-drip': `drips (webhook timeout 30 s), spec.timeoutSeconds ${RUN_TIMEOUT_S}`,
  'cancel-hang': 'never answers (webhook timeout 30 s), spec.cancel 1 s into the call',
  'cancel-drip': 'drips (webhook timeout 30 s), spec.cancel 1 s into the call',
  'cancel-queued': 'never answers (webhook timeout 30 s), spec.cancel right after creation',
  'quick-noop': 'noop, 0 to 40 ms',
  'quick-hook': 'webhook answering 200 at once',
};

function spec(kind: Kind, i: number): SpecInput {
  const objective = `hanging-handlers ${kind} ${i}`;
  const hook = (agent: string, extra: Record<string, unknown> = {}): SpecInput => ({
    agent,
    objective,
    dryRun: false,
    ...extra,
  });
  switch (kind) {
    case 'hang':
      return hook('hook-hang');
    case 'half':
      return hook('hook-half');
    case 'drip':
      return hook('hook-drip');
    case 'drip-fast':
      return hook('hook-drip-fast');
    case 'hang-retry':
      return hook('hook-hang', { backoffLimit: 1 });
    case 'timeout-hang':
      return hook('hook-hang-long', { timeoutSeconds: RUN_TIMEOUT_S });
    case 'timeout-drip':
      return hook('hook-drip-long', { timeoutSeconds: RUN_TIMEOUT_S });
    case 'cancel-hang':
    case 'cancel-queued':
      return hook('hook-hang-long');
    case 'cancel-drip':
      return hook('hook-drip-long');
    case 'quick-noop':
      return { agent: 'noop', objective, params: { delayMs: (i * 7) % 40 } };
    case 'quick-hook':
      return hook('hook-ok');
  }
}

/** Wave 1 holds exactly every slot; wave 2 adds more hanging runs than there are slots. */
const WAVE_1: ReadonlyArray<[Kind, number]> = [
  ['hang', 3],
  ['half', 3],
  ['drip', 3],
  ['hang-retry', 3],
  ['timeout-hang', 2],
  ['timeout-drip', 2],
  ['cancel-hang', 2],
  ['cancel-drip', 2],
];
const QUICK_A: ReadonlyArray<[Kind, number]> = [
  ['quick-noop', 5],
  ['quick-hook', 5],
];
const WAVE_2: ReadonlyArray<[Kind, number]> = [
  ['hang', 4],
  ['half', 3],
  ['drip', 4],
  ['drip-fast', 4],
  ['hang-retry', 2],
  ['timeout-hang', 2],
  ['timeout-drip', 2],
  ['cancel-hang', 2],
  ['cancel-queued', 2],
];
const QUICK_B = QUICK_A;

function handlersConfig(agent: WebhookAgent): string {
  const hook = (name: string, path: string, timeoutMs: number) =>
    `  - name: ${name}\n    url: ${agent.origin}/${path}\n    timeoutMs: ${timeoutMs}\n`;
  return (
    'webhooks:\n' +
    hook('hook-ok', 'ok', 10_000) +
    hook('hook-hang', 'hang', HANG_MS) +
    hook('hook-half', 'half', HANG_MS) +
    hook('hook-drip', WebhookAgent.dripUrl(DRIP_BYTES, DRIP_EVERY_MS), HANG_MS) +
    hook('hook-drip-fast', WebhookAgent.dripUrl(FAST_DRIP_BYTES, FAST_DRIP_EVERY_MS), HANG_MS) +
    hook('hook-hang-long', 'hang', LONG_MS) +
    hook('hook-drip-long', WebhookAgent.dripUrl(LONG_MS / DRIP_EVERY_MS, DRIP_EVERY_MS), LONG_MS)
  );
}

let env: FaultEnvironment;

beforeAll(async () => {
  env = await FaultEnvironment.start('hanging', { MAX_CONCURRENT_RUNS: String(SLOTS) });
  // The harness wrote its own handlers config; the operator reads the file when it starts.
  writeFileSync(join(env.dir, 'handlers.yaml'), handlersConfig(env.agent));
});

afterAll(async () => {
  await env?.stop();
});

function push(to: Partial<Record<Kind, number[]>>, kind: Kind, value: number): void {
  to[kind] = [...(to[kind] ?? []), value];
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const range = (values: readonly number[]) => {
  if (values.length === 0) return '-';
  const [low, high] = [seconds(Math.min(...values)), seconds(Math.max(...values))];
  return low === high ? low : `${low} to ${high}`;
};

describe('scenario 8: hanging handlers', () => {
  it('ends every hanging attempt by its timeout, cancels at once, and starves no quick run', async () => {
    const began = Date.now();
    const recording = await env.runs.record();
    await env.operators.start();
    const planned: Planned[] = [];
    const uidOf = new Map<string, string>();
    const create = async (wave: string, mix: ReadonlyArray<[Kind, number]>) => {
      const batch: Planned[] = [];
      for (const [kind, n] of mix) {
        for (let i = 0; i < n; i++) {
          batch.push({ name: `${wave}-${kind}-${i}`, kind, wave, createdAt: 0 });
        }
      }
      // Interleaved, so that no kind is all at the front of the queue.
      batch.sort((a, b) =>
        (a.name.split('-').at(-1) ?? '').localeCompare(b.name.split('-').at(-1) ?? ''),
      );
      await Promise.all(
        batch.map(async (p, i) => {
          const created = await env.runs.create(p.name, spec(p.kind, i));
          p.createdAt = Date.now();
          uidOf.set(p.name, created.metadata.uid);
          if (p.kind === 'cancel-queued') {
            await env.runs.cancel(p.name);
            p.cancelAt = Date.now();
            p.calledBeforeCancel = callsOf(p).length > 0;
          }
        }),
      );
      planned.push(...batch);
    };
    const callsOf = (p: Planned) => {
      const uid = uidOf.get(p.name);
      return uid ? env.agent.calls.filter((c) => c.runId === uid) : [];
    };

    // Wave 1 takes every slot; the quick runs of batch A come when all of them hang.
    await create('w1', WAVE_1);
    const inFlight = () => env.agent.calls.length - env.agent.endings.length;
    const fullDeadline = Date.now() + 60_000;
    while (inFlight() < SLOTS) {
      if (Date.now() > fullDeadline) throw new Error(`only ${inFlight()} calls hang after 60 s`);
      await sleep(20);
    }
    const allHungAt = Date.now();
    const hungBeforeA = inFlight();
    await create('qa', QUICK_A);
    await create('w2', WAVE_2);
    await create('qb', QUICK_B);

    // Cancels of running hanging runs, once their call has hung CANCEL_AFTER_MS.
    const cancelErrors: string[] = [];
    const toCancel = planned.filter((p) => p.kind === 'cancel-hang' || p.kind === 'cancel-drip');
    const cancelDeadline = Date.now() + 60_000;
    while (toCancel.some((p) => p.cancelAt === undefined) && Date.now() < cancelDeadline) {
      for (const p of toCancel) {
        const call = callsOf(p)[0];
        if (p.cancelAt !== undefined || !call || Date.now() - call.at < CANCEL_AFTER_MS) continue;
        // Measured from when the cancel is sent: the API server's answer is part of the latency.
        p.cancelAt = Date.now();
        env.runs.cancel(p.name).then(
          () => {},
          (error: unknown) => {
            cancelErrors.push(`${p.name}: ${String(error)}`);
          },
        );
      }
      await sleep(20);
    }

    const { list, settled, at: settledAt } = await env.settle(SETTLE_BOUND_MS);
    // No socket left behind: no request still open at the agent once every run has ended, and,
    // after idle keep-alive connections had time to close, no connection at all.
    const atSettle = env.agent.connections();
    await sleep(IDLE_CLOSE_MS);
    const afterIdle = env.agent.connections();
    recording.stop();
    await env.operators.stop();

    const f = findings({
      names: planned.map((p) => p.name),
      runs: list,
      calls: env.agent.calls,
      rows: await env.auditRows(),
      incarnations: env.operators.reports(),
      prometheusIncrease: env.operators.prometheusIncrease(),
    });

    const byName = new Map(list.map((r) => [r.metadata.name, r]));
    const seen = new Map<string, Seen[]>();
    for (const v of recording.versions) {
      const name = v.run.metadata.name;
      seen.set(name, [...(seen.get(name) ?? []), v]);
    }
    const firstSeen = (name: string, phase: string) =>
      seen.get(name)?.find((v) => v.run.status?.phase === phase)?.at;
    const endingsOf = (run: AgentRun | undefined): Ending[] =>
      env.agent.endings.filter((e) => e.call.runId === run?.metadata.uid);

    const problems: string[] = [...cancelErrors];
    const problem = (p: Planned, what: string) => problems.push(`${p.name}: ${what}`);
    const holds: Partial<Record<Kind, number[]>> = {};
    const durations: Partial<Record<Kind, number[]>> = {};
    const cancelLatencies: number[] = [];
    const cancelCloseLatencies: number[] = [];
    const dripProgress: number[] = [];
    let cancelQueuedNeverCalled = 0;

    for (const p of planned) {
      const run = byName.get(p.name);
      if (!run) continue; // counted as vanished by the invariants
      const s = run.status ?? {};
      const outcome = `${s.phase}/${reasonOf(run)}`;
      const calls = callsOf(p);
      const ends = endingsOf(run);
      const want = (outcomeWanted: string) => {
        if (outcome !== outcomeWanted) {
          problem(p, `ended ${outcome} (${s.error ?? ''}), expected ${outcomeWanted}`);
        }
      };
      // Every call of a hanging endpoint ended with its connection closed by the operator, and
      // no sooner than the webhook timeout allows, no later than the slack.
      // `early`: whether to check that it did not end before the timeout; a run's own deadline
      // counts from its start, before the call, so its durationMs is checked instead.
      const closedByTimeout = (timeoutMs: number, early = true) => {
        for (const call of calls) {
          const end = ends.find((e) => e.call === call);
          if (!end) {
            problem(p, `attempt ${call.attempt}: the agent's connection was never closed`);
            continue;
          }
          if (end.how !== 'closed') problem(p, `attempt ${call.attempt}: answered, not cut off`);
          const held = end.at - call.at;
          push(holds, p.kind, held);
          if ((early && held < timeoutMs - 1_000) || held > timeoutMs + TIMEOUT_SLACK_MS) {
            problem(
              p,
              `attempt ${call.attempt}: connection held ${held} ms (timeout ${timeoutMs})`,
            );
          }
        }
      };
      switch (p.kind) {
        case 'hang':
        case 'half':
        case 'drip': {
          want('Failed/Failed');
          const name = `hook-${p.kind}`;
          if (s.error !== `webhook "${name}" timed out after ${HANG_MS} ms`) {
            problem(p, `error ${JSON.stringify(s.error)}`);
          }
          if (calls.length !== 1) problem(p, `${calls.length} calls`);
          closedByTimeout(HANG_MS);
          if (p.kind === 'drip') {
            const sent = ends[0]?.bytesSent ?? 0;
            dripProgress.push(sent);
            // The timeout fired while bytes kept coming.
            if (sent === 0 || sent >= DRIP_BYTES) problem(p, `${sent} of ${DRIP_BYTES} bytes sent`);
          }
          break;
        }
        case 'hang-retry':
          want('Failed/BackoffLimitExceeded');
          if (s.attempts !== 2 || calls.length !== 2) {
            problem(p, `attempts ${s.attempts}, ${calls.length} calls`);
          }
          if (!s.error?.includes(`timed out after ${HANG_MS} ms`)) {
            problem(p, `error ${JSON.stringify(s.error)}`);
          }
          closedByTimeout(HANG_MS);
          break;
        case 'drip-fast': {
          want('Succeeded/Succeeded');
          const end = ends[0];
          if (calls.length !== 1 || end?.how !== 'answered') problem(p, 'not answered in full');
          if (
            JSON.stringify(s.artifacts) !== JSON.stringify(WebhookAgent.dripBody(FAST_DRIP_BYTES))
          ) {
            problem(p, `artifacts ${JSON.stringify(s.artifacts)}`);
          }
          if (end) push(holds, p.kind, end.at - (calls[0]?.at ?? end.at));
          break;
        }
        case 'timeout-hang':
        case 'timeout-drip': {
          want('Failed/TimedOut');
          const duration = s.durationMs ?? 0;
          push(durations, p.kind, duration);
          if (
            duration < RUN_TIMEOUT_S * 1000 ||
            duration > RUN_TIMEOUT_S * 1000 + TIMEOUT_SLACK_MS
          ) {
            problem(p, `durationMs ${duration} for timeoutSeconds ${RUN_TIMEOUT_S}`);
          }
          if (calls.length !== 1) problem(p, `${calls.length} calls`);
          closedByTimeout(RUN_TIMEOUT_S * 1000, false);
          break;
        }
        case 'cancel-hang':
        case 'cancel-drip': {
          want('Canceled/Canceled');
          const canceledSeen = firstSeen(p.name, 'Canceled');
          const end = ends[0];
          if (p.cancelAt === undefined) {
            problem(p, 'was never canceled');
            break;
          }
          if (canceledSeen === undefined) problem(p, 'the watch never showed it Canceled');
          else {
            cancelLatencies.push(canceledSeen - p.cancelAt);
            if (canceledSeen - p.cancelAt > CANCEL_BOUND_MS) problem(p, 'Canceled too late');
          }
          if (end?.how !== 'closed') problem(p, 'the agent did not see its connection closed');
          else {
            cancelCloseLatencies.push(end.at - p.cancelAt);
            if (end.at - p.cancelAt > CANCEL_BOUND_MS) problem(p, 'connection closed too late');
          }
          break;
        }
        case 'cancel-queued':
          want('Canceled/Canceled');
          if (!p.calledBeforeCancel && calls.length === 0) cancelQueuedNeverCalled++;
          for (const call of calls) {
            const end = ends.find((e) => e.call === call);
            if (end?.how !== 'closed') problem(p, 'a call of it was never closed');
          }
          break;
        case 'quick-noop':
        case 'quick-hook':
          want('Succeeded/Succeeded');
          break;
      }
    }

    // Starvation: the quick runs, from creation, and from the first slot freed after it.
    const hangingUids = new Set(
      planned
        .filter((p) => !p.kind.startsWith('quick'))
        .map((p) => byName.get(p.name)?.metadata.uid),
    );
    const slotFreedAt = env.agent.endings
      .filter((e) => hangingUids.has(e.call.runId))
      .map((e) => e.at)
      .sort((a, b) => a - b);
    const quick = (wave: string) =>
      planned
        .filter((p) => p.wave === wave)
        .map((p) => {
          const done = firstSeen(p.name, 'Succeeded');
          // Batch A was created while every slot hung: its wait is counted from the first slot
          // freed after that moment (one may have freed while the batch was being created).
          const from = wave === 'qa' ? allHungAt : p.createdAt;
          const freed = slotFreedAt.find((t) => t > from);
          const queued = (seen.get(p.name) ?? []).some((v) => reasonOf(v.run) === 'Queued');
          return { p, done, freed, queued };
        });
    const quickA = quick('qa');
    const quickB = quick('qb');
    for (const q of [...quickA, ...quickB]) {
      if (q.done === undefined) problem(q.p, 'never seen Succeeded');
      else if (q.done - q.p.createdAt > QUICK_BOUND_MS) {
        problem(q.p, `Succeeded ${q.done - q.p.createdAt} ms after its creation`);
      }
    }
    for (const q of quickA) {
      if (
        q.done !== undefined &&
        q.freed !== undefined &&
        q.done - q.freed > QUICK_AFTER_FREE_BOUND_MS
      ) {
        problem(q.p, `Succeeded ${q.done - q.freed} ms after the first slot freed`);
      }
      // It was created while every slot hung: it cannot have finished before one freed (the
      // operator frees the slot a moment before the agent sees the connection close).
      if (q.done !== undefined && q.freed !== undefined && q.done < q.freed - 1_000) {
        problem(q.p, 'finished before any slot was freed: the slots did not all hang');
      }
    }
    const waits = (qs: typeof quickA) =>
      qs.flatMap((q) => (q.done === undefined ? [] : [q.done - q.p.createdAt]));
    const afterFree = (qs: typeof quickA) =>
      qs.flatMap((q) => (q.done === undefined || q.freed === undefined ? [] : [q.done - q.freed]));

    const leaks: string[] = [];
    if (atSettle.openWithRequest > 0) {
      leaks.push(`${atSettle.openWithRequest} requests still open at the agent after settling`);
    }
    if (afterIdle.open > 0) {
      leaks.push(`${afterIdle.open} connections open ${IDLE_CLOSE_MS / 1000} s after settling`);
    }
    if (afterIdle.neverUsed > 0) {
      // Node's fetch (undici) did this on every aborted request; webhooks now use node:http.
      leaks.push(`${afterIdle.neverUsed} connections never carried a request`);
    }

    const counts = new Map<Kind, number>();
    for (const kind of Object.keys(KIND_LABEL) as Kind[]) {
      const n = planned.filter((p) => p.kind === kind).length;
      if (n > 0) counts.set(kind, n);
    }
    // Arrival order: runs wait for a slot and start in the order they came (agentrun.md). The
    // batches were created one after the other (within a batch, at once): a run of a later batch
    // that started before a run of an earlier one that still waited jumped the queue.
    const batches = ['w1', 'qa', 'w2', 'qb'];
    const startOf = (p: Planned) => {
      const at = byName.get(p.name)?.status?.startedAt;
      return at === undefined ? undefined : Date.parse(at);
    };
    let overtakes = 0;
    const overtaken = new Set<string>();
    for (const later of planned) {
      const laterStart = startOf(later);
      if (laterStart === undefined) continue;
      for (const earlier of planned) {
        const earlierStart = startOf(earlier);
        if (batches.indexOf(earlier.wave) >= batches.indexOf(later.wave)) continue;
        if (earlierStart === undefined || earlierStart <= laterStart + 100) continue;
        overtakes++;
        overtaken.add(`${later.wave} over ${earlier.wave}`);
      }
    }
    const hanging = planned.filter((p) => !p.kind.startsWith('quick') && p.kind !== 'drip-fast');
    const kindLines = [...counts].map(([kind, n]) => {
      const held = holds[kind];
      const took = durations[kind];
      const extra = [
        held ? `connection held ${range(held)} per attempt` : '',
        took ? `run lasted ${range(took)}` : '',
      ]
        .filter(Boolean)
        .join(', ');
      const outcomes = new Map<string, number>();
      for (const p of planned.filter((x) => x.kind === kind)) {
        const run = byName.get(p.name);
        const key = `${run?.status?.phase}/${run ? reasonOf(run) : '-'}`;
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      }
      const ended = [...outcomes].map(([k, v]) => `${k} ${v}`).join(', ');
      return `| \`${kind}\` | ${KIND_LABEL[kind]} | ${n} | ${ended} | ${extra || '-'} |`;
    });
    const webhookTimeoutKinds: Kind[] = ['hang', 'half', 'drip', 'hang-retry'];
    const runTimeoutKinds: Kind[] = ['timeout-hang', 'timeout-drip'];
    const recover = `calls cut by the ${HANG_MS / 1000} s webhook timeout ${range(
      webhookTimeoutKinds.flatMap((k) => holds[k] ?? []),
    )} after they began; runs ended by timeoutSeconds=${RUN_TIMEOUT_S} ${range(
      runTimeoutKinds.flatMap((k) => durations[k] ?? []),
    )} after their start; Canceled ${range(cancelLatencies)} after the cancel`;
    writeScenarioBlock(
      'hanging-handlers',
      [
        `Last run: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${Math.round((Date.now() - began) / 1000)} s in all; every run terminal and audited ${seconds(settledAt - allHungAt)} after all ${SLOTS} slots first hung (bound ${SETTLE_BOUND_MS / 1000} s)${settled ? '' : ': NOT SETTLED'}.`,
        '',
        RESULT_HEADER,
        resultRow(
          f,
          `${hanging.length} runs on endpoints that hang, send headers only, or drip (${SLOTS} slots), ${toCancel.length + (counts.get('cancel-queued') ?? 0)} of them canceled`,
          recover,
        ),
        '',
        '| kind | the endpoint | runs | ended | measured |',
        '| --- | --- | ---: | --- | --- |',
        ...kindLines,
        '',
        `- Timeouts: every call of a hanging endpoint ended with the operator closing the connection, none answered; bound asserted: no sooner than 1 s before the timeout (the agent's clock starts when the request has arrived), no later than ${TIMEOUT_SLACK_MS / 1000} s after it. Dripping answers had sent ${Math.min(...dripProgress)} to ${Math.max(...dripProgress)} of ${DRIP_BYTES} bytes when the ${HANG_MS / 1000} s timeout cut them: the deadline covers the body, and bytes that keep coming do not extend it. A run's \`spec.timeoutSeconds\` shorter than its webhook's timeout ends it \`Failed/TimedOut\` at its deadline, counted from its start (the claim, whose status write comes before the call: so its call is cut sooner after it began); the webhook's own \`timeoutMs\` fails the attempt (\`Failed/Failed\`, or a retry), with the error \`webhook "<name>" timed out after <ms> ms\`.`,
        `- Cancels: ${cancelLatencies.length} running runs canceled 1 s into a hanging call: Canceled (as the watch showed it) ${range(cancelLatencies)} after the cancel was sent (bound ${CANCEL_BOUND_MS / 1000} s), and the agent saw the connection closed ${range(cancelCloseLatencies)} after it. ${counts.get('cancel-queued') ?? 0} runs canceled right after creation, ${cancelQueuedNeverCalled} of them before their handler was called.`,
        `- Starvation: ${hungBeforeA} calls hung when the ${quickA.length} quick runs of batch A were created (every slot); they ended Succeeded ${range(waits(quickA))} after creation, ${range(afterFree(quickA))} after the first slot freed (bound ${QUICK_AFTER_FREE_BOUND_MS / 1000} s; the hang timeout is ${HANG_MS / 1000} s). The ${quickB.length} of batch B, created behind ${WAVE_2.reduce((n, [, k]) => n + k, 0)} more hanging runs, ${range(waits(quickB))} after creation (bound ${QUICK_BOUND_MS / 1000} s). Quick runs marked \`Pending/Queued\` while they waited: ${[...quickA, ...quickB].filter((q) => q.queued).length}. Pairs of runs where a run of a later batch started more than 0.1 s before a run of an earlier batch (by \`status.startedAt\`): ${overtakes}${overtaken.size > 0 ? ` (${[...overtaken].join(', ')})` : ''}.`,
        `- Connections at the agent: ${atSettle.accepted} accepted for ${env.agent.calls.length} calls; with a request still open after settling: ${atSettle.openWithRequest}; open ${IDLE_CLOSE_MS / 1000} s later: ${afterIdle.open}. Connections that never carried a request: ${afterIdle.neverUsed} (bound 0; Node's fetch, which webhooks used before, opened one on every aborted request).`,
        ...detailLines(f),
        ...(problems.length > 0 ? [`- Problems: ${problems.slice(0, 10).join('; ')}.`] : []),
      ].join('\n'),
    );
    expect(violations(f)).toEqual([]);
    expect(problems).toEqual([]);
    expect(leaks).toEqual([]);
    expect(settled).toBe(true);
  });
});
