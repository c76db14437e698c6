// Job agents in the pure parts: decide() follows a claimed Job attempt again instead of counting
// it interrupted, stageStatus() mirrors where it stands, and the executor gives Job attempts a
// pool of their own and lets them go at once on shutdown (their Jobs run on).
import { describe, expect, it, vi } from 'vitest';
import { ConditionType, findCondition } from '../../../src/api/conditions.ts';
import { decide } from '../../../src/controller/decide.ts';
import { ExecutionAborted } from '../../../src/controller/executor.ts';
import { runningStatus, stageStatus } from '../../../src/controller/run-status.ts';
import type { Handler, JobTemplate } from '../../../src/handlers/handler.ts';
import { HandlerRegistry } from '../../../src/handlers/registry.ts';
import { execution, flush, harness, ManualHandler, onFakeTimers } from './executor-harness.ts';
import { agentRun, at, PLAN, PREPARED, running, SECOND, T0, withStatus } from './fixtures.ts';

const TEMPLATE: JobTemplate = { podSpec: { containers: [{ name: 'agent', image: 'agent:1' }] } };
const JOB_AGENTS = new HandlerRegistry([
  {
    name: 'job-agent',
    description: 'runs as a Job',
    job: TEMPLATE,
    prepare: () => PREPARED,
  } satisfies Handler,
  { name: 'noop', description: 'in process', prepare: () => PREPARED } satisfies Handler,
]);
const jobRun = (backoffLimit = 0) => agentRun({ spec: { agent: 'job-agent', backoffLimit } });
const starting = (run = jobRun(), attempt = 1) =>
  withStatus(run, runningStatus(run, attempt, PLAN, T0, undefined, 'Starting'));

describe('decide: Job agents', () => {
  it('starts a Job attempt with the template, claimed like any other', () => {
    expect(decide({ run: jobRun(), executing: false, now: T0, handlers: JOB_AGENTS })).toEqual({
      type: 'start',
      attempt: 1,
      prepared: PREPARED,
      job: TEMPLATE,
    });
  });

  it('follows a claimed attempt nobody here follows again, Starting or Running, retries or not', () => {
    for (const run of [starting(), running(jobRun(), 1, T0), running(jobRun(2), 1, T0)]) {
      expect(decide({ run, executing: false, now: at(SECOND), handlers: JOB_AGENTS })).toEqual({
        type: 'start',
        attempt: 1,
        prepared: PREPARED,
        job: TEMPLATE,
        resume: true,
      });
    }
  });

  it('an in-process agent running with nobody here is still interrupted', () => {
    const run = running(agentRun({ spec: { agent: 'noop' } }), 1, T0);
    expect(decide({ run, executing: false, now: at(SECOND), handlers: JOB_AGENTS })).toMatchObject({
      type: 'finish',
      reason: 'Interrupted',
    });
  });

  it('a Job attempt that is Starting counts as executing: a cancel aborts it, nothing restarts it', () => {
    const run = starting();
    expect(decide({ run, executing: true, now: at(SECOND), handlers: JOB_AGENTS })).toEqual({
      type: 'none',
    });
    const canceled = { ...run, spec: { ...run.spec, cancel: true } };
    expect(
      decide({ run: canceled, executing: true, now: at(SECOND), handlers: JOB_AGENTS }),
    ).toEqual({ type: 'abort', reason: 'Canceled', message: 'canceled while running' });
    expect(
      decide({ run: canceled, executing: false, now: at(SECOND), handlers: JOB_AGENTS }),
    ).toEqual({
      type: 'finish',
      reason: 'Canceled',
      message: 'canceled after attempt 1 was interrupted',
    });
  });

  it('past the deadline, a claimed Job attempt nobody follows ends TimedOut, not followed', () => {
    const run = starting(agentRun({ spec: { agent: 'job-agent', timeoutSeconds: 5 } }));
    expect(
      decide({ run, executing: false, now: at(6 * SECOND), handlers: JOB_AGENTS }),
    ).toMatchObject({ type: 'finish', reason: 'TimedOut' });
  });

  it('an agent no longer of kind job: the claimed attempt counts as interrupted', () => {
    const run = running(jobRun(), 1, T0);
    const gone = new HandlerRegistry([
      { name: 'job-agent', description: 'now a webhook', prepare: () => PREPARED },
    ]);
    expect(decide({ run, executing: false, now: at(SECOND), handlers: gone })).toMatchObject({
      type: 'finish',
      reason: 'Interrupted',
    });
  });
});

describe('stageStatus', () => {
  it('Starting is phase Pending, reason Starting; Running is phase Running', () => {
    const run = starting();
    const pulling = stageStatus(run, 1, 'Starting', 'ErrImagePull: no such image', at(SECOND));
    expect(pulling?.phase).toBe('Pending');
    expect(findCondition(pulling?.conditions, ConditionType.Succeeded)).toMatchObject({
      status: 'Unknown',
      reason: 'Starting',
      message: 'ErrImagePull: no such image',
    });
    const up = stageStatus(
      withStatus(run, pulling ?? {}),
      1,
      'Running',
      'running as Job x',
      at(2 * SECOND),
    );
    expect(up?.phase).toBe('Running');
    expect(up?.attempts).toBe(1);
    expect(up?.plan).toEqual(PLAN);
    expect(findCondition(up?.conditions, ConditionType.Succeeded)?.reason).toBe('Running');
  });

  it('writes nothing when it says that already, or the status is another attempt or over', () => {
    const run = starting();
    const message = findCondition(run.status?.conditions, ConditionType.Succeeded)?.message ?? '';
    expect(stageStatus(run, 1, 'Starting', message, at(SECOND))).toBeUndefined();
    expect(stageStatus(run, 2, 'Running', 'x', at(SECOND))).toBeUndefined();
    expect(stageStatus(jobRun(), 1, 'Running', 'x', at(SECOND))).toBeUndefined();
  });
});

describe('executor: the Job pool', () => {
  onFakeTimers();

  it('Job attempts take no handler slot, and have a limit of their own', () => {
    const { executor } = harness({ maxConcurrent: 1, maxConcurrentJobs: 2 });
    const handler = new ManualHandler();
    expect(executor.reserve('ns/a')).toBe(true);
    executor.start(execution('a', handler.execute));
    expect(executor.reserve('ns/b')).toBe(false);
    expect(executor.reserve('ns/j1', 'jobs')).toBe(true);
    executor.start(execution('j1', handler.execute, { pool: 'jobs' }));
    expect(executor.reserve('ns/j2', 'jobs')).toBe(true);
    expect(executor.reserve('ns/j3', 'jobs')).toBe(false);
    expect(executor.busy).toBe(1);
    expect(executor.busyJobs).toBe(2);
  });

  it('a finished Job attempt wakes the next run waiting for a Job slot, not a handler slot', async () => {
    const { executor, woken } = harness({ maxConcurrent: 1, maxConcurrentJobs: 1 });
    const handler = new ManualHandler();
    expect(executor.reserve('ns/a')).toBe(true);
    executor.start(execution('a', handler.execute));
    expect(executor.reserve('ns/b')).toBe(false);
    expect(executor.reserve('ns/j1', 'jobs')).toBe(true);
    executor.start(execution('j1', handler.execute, { pool: 'jobs' }));
    expect(executor.reserve('ns/j2', 'jobs')).toBe(false);
    await flush();
    handler.resolve({}, 1);
    await flush();
    expect(woken).toEqual(['ns/j2']);
  });

  it('on shutdown, lets Job attempts go at once with reason Shutdown; handlers get the grace', async () => {
    const { executor, finished } = harness({ maxConcurrent: 1 });
    const handler = new ManualHandler();
    expect(executor.reserve('ns/a')).toBe(true);
    executor.start(execution('a', handler.execute));
    expect(executor.reserve('ns/j', 'jobs')).toBe(true);
    executor.start(execution('j', handler.execute, { pool: 'jobs' }));
    await flush();
    const drained = executor.drain(10 * SECOND);
    expect(finished.map((f) => f.uid)).toEqual(['j']);
    const reason = handler.calls[1]?.signal.reason;
    expect(reason).toBeInstanceOf(ExecutionAborted);
    expect((reason as ExecutionAborted).reason).toBe('Shutdown');
    handler.resolve({}, 0);
    await vi.advanceTimersByTimeAsync(100);
    await drained;
    expect(finished.map((f) => f.uid)).toEqual(['j', 'a']);
  });
});
