import { describe, expect, it } from 'vitest';
import {
  INPUT_ANNOTATION,
  INPUT_FILE,
  JOB_NAME_MAX_LENGTH,
  JobLabel,
  jobManifest,
  jobName,
} from '../../../src/controller/job-manifest.ts';
import { agentRun, UID } from './fixtures.ts';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

type Obj = Record<string, unknown>;
const get = (value: unknown, ...path: (string | number)[]): unknown =>
  path.reduce<unknown>((v, k) => (v as Obj | unknown[] | undefined)?.[k as never], value);

describe('jobName', () => {
  it('is the run name, 8 hex of its uid and the attempt', () => {
    expect(jobName(agentRun(), 1)).toMatch(/^check-site-[0-9a-f]{8}-1$/);
    expect(jobName(agentRun(), 1)).toBe(jobName(agentRun(), 1));
    expect(jobName(agentRun(), 2)).not.toBe(jobName(agentRun(), 1));
  });

  it('differs for a run created again under the same name (a new uid)', () => {
    const again = agentRun({ metadata: { uid: '6f1c1a9e-0000-4000-8000-000000000002' } });
    expect(jobName(again, 1)).not.toBe(jobName(agentRun(), 1));
  });

  it('fits 63 characters and stays a DNS label for the longest names, dots and all', () => {
    const long = agentRun({ metadata: { name: `${'a.b-'.repeat(62)}z` } });
    for (const attempt of [1, 12, 100_000]) {
      const name = jobName(long, attempt);
      expect(name.length).toBeLessThanOrEqual(JOB_NAME_MAX_LENGTH);
      expect(name).toMatch(DNS_LABEL);
      expect(name.endsWith(`-${attempt}`)).toBe(true);
    }
  });
});

describe('jobManifest', () => {
  const run = agentRun({
    spec: { agent: 'triage', objective: 'sort the alerts', dryRun: false, params: { n: 3 } },
  });
  const podSpec = {
    serviceAccountName: 'triage-agent',
    restartPolicy: 'OnFailure',
    containers: [
      {
        name: 'agent',
        image: 'example.test/triage:1',
        env: [
          { name: 'MODEL', value: 'small' },
          { name: 'AGENTRUN_ID', value: 'spoofed' },
        ],
      },
    ],
    volumes: [{ name: 'cache', emptyDir: {} }],
  };
  const job = jobManifest(run, 2, { podSpec, params: { n: 3 }, deadlineSeconds: 41.2 });

  it('is owned by the run as its controller, so deleting the run collects it', () => {
    expect(get(job, 'metadata', 'ownerReferences')).toEqual([
      {
        apiVersion: 'agents.applylens.io/v1alpha1',
        kind: 'AgentRun',
        name: run.metadata.name,
        uid: UID,
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
    expect(get(job, 'metadata', 'namespace')).toBe(run.metadata.namespace);
    expect(get(job, 'metadata', 'name')).toBe(jobName(run, 2));
  });

  it('labels Job and pod with the run id and attempt', () => {
    const labels = {
      [JobLabel.ManagedBy]: 'agentrun-operator',
      [JobLabel.RunId]: UID,
      [JobLabel.Attempt]: '2',
      [JobLabel.Agent]: 'triage',
    };
    expect(get(job, 'metadata', 'labels')).toEqual(labels);
    expect(get(job, 'spec', 'template', 'metadata', 'labels')).toEqual(labels);
  });

  it('leaves the agent label out when the agent name cannot be a label value', () => {
    const longAgent = agentRun({ spec: { agent: `a${'.b'.repeat(40)}` } });
    const labels = get(jobManifest(longAgent, 1, { podSpec, params: {} }), 'metadata', 'labels');
    expect(labels).not.toHaveProperty(JobLabel.Agent);
  });

  it('never retries by itself and carries what is left of the run timeout', () => {
    expect(get(job, 'spec', 'backoffLimit')).toBe(0);
    expect(get(job, 'spec', 'activeDeadlineSeconds')).toBe(42);
    expect(get(job, 'spec', 'template', 'spec', 'restartPolicy')).toBe('Never');
    expect(get(job, 'spec', 'template', 'spec', 'serviceAccountName')).toBe('triage-agent');
    const noDeadline = jobManifest(run, 1, { podSpec, params: {} });
    expect(get(noDeadline, 'spec')).not.toHaveProperty('activeDeadlineSeconds');
    const spent = jobManifest(run, 1, { podSpec, params: {}, deadlineSeconds: -5 });
    expect(get(spent, 'spec', 'activeDeadlineSeconds')).toBe(1);
  });

  it('passes the input as environment (the operator’s names win) and as a mounted document', () => {
    const container = get(job, 'spec', 'template', 'spec', 'containers', 0) as Obj;
    const env = Object.fromEntries(
      (container['env'] as { name: string; value: string }[]).map((e) => [e.name, e.value]),
    );
    expect(env).toMatchObject({
      MODEL: 'small',
      AGENTRUN_ID: UID,
      AGENTRUN_ATTEMPT: '2',
      AGENTRUN_OBJECTIVE: 'sort the alerts',
      AGENTRUN_DRY_RUN: 'false',
      AGENTRUN_PARAMS: '{"n":3}',
      AGENTRUN_INPUT_FILE: INPUT_FILE,
    });
    expect((container['env'] as unknown[]).length).toBe(10);
    expect(container['terminationMessagePolicy']).toBe('FallbackToLogsOnError');
    expect(container['volumeMounts']).toEqual([
      { name: 'agentrun-input', mountPath: '/var/run/agentrun', readOnly: true },
    ]);
    const annotation = get(job, 'spec', 'template', 'metadata', 'annotations', INPUT_ANNOTATION);
    expect(JSON.parse(String(annotation))).toEqual({
      runId: UID,
      attempt: 2,
      name: run.metadata.name,
      namespace: run.metadata.namespace,
      agent: 'triage',
      objective: 'sort the alerts',
      dryRun: false,
      params: { n: 3 },
    });
    expect(get(job, 'spec', 'template', 'spec', 'volumes')).toEqual([
      { name: 'cache', emptyDir: {} },
      {
        name: 'agentrun-input',
        downwardAPI: {
          items: [
            {
              path: 'input.json',
              fieldRef: { fieldPath: `metadata.annotations['${INPUT_ANNOTATION}']` },
            },
          ],
        },
      },
    ]);
  });

  it('keeps a termination message policy the agent chose', () => {
    const own = jobManifest(run, 1, {
      podSpec: { containers: [{ name: 'a', image: 'x', terminationMessagePolicy: 'File' }] },
      params: {},
    });
    expect(get(own, 'spec', 'template', 'spec', 'containers', 0, 'terminationMessagePolicy')).toBe(
      'File',
    );
  });
});
