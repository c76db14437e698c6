// `kubectl agentrun logs` against a stand-in kubectl (a script that answers `get` with a run and
// records every call): which Job's logs it asks for, and what it says for agents without a
// container. The real kubectl logs needs a kubelet, which the test control plane has not.
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CliIo } from '../../../src/cli/command.ts';
import { logsCommand } from '../../../src/cli/logs-command.ts';
import { jobName } from '../../../src/controller/job-manifest.ts';

const UID = '0b6e0f8e-1111-4000-8000-000000000042';

function stub(run: unknown) {
  const dir = mkdtempSync(join(tmpdir(), 'agentrun-logs-'));
  const calls = join(dir, 'calls');
  writeFileSync(join(dir, 'run.json'), JSON.stringify(run));
  const script = join(dir, 'kubectl');
  writeFileSync(
    script,
    `#!/bin/sh\necho "$*" >> '${calls}'\nif [ "$1" = get ]; then cat '${join(dir, 'run.json')}'; fi\n`,
  );
  chmodSync(script, 0o755);
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = {
    env: { ...process.env, KUBECTL: script },
    out: (text) => out.push(text),
    err: (text) => err.push(text),
  };
  const called = () => readFileSync(calls, 'utf8').trim().split('\n');
  return { io, out, err, called };
}

const jobRun = (attempts: number) => ({
  metadata: { name: 'nightly-build', namespace: 'team-a', uid: UID },
  spec: { agent: 'builder' },
  status: { attempts, phase: 'Running', plan: { image: 'registry.example/builder:1', params: {} } },
});

describe('kubectl agentrun logs', () => {
  it("reads the container of the last attempt's Job, as the user, passing flags on", async () => {
    const { io, called } = stub(jobRun(2));
    const code = await logsCommand(
      ['nightly-build', '-f', '-n', 'team-a', '--context', 'prod'],
      io,
    );
    expect(code).toBe(0);
    const job = jobName({ metadata: { name: 'nightly-build', uid: UID } }, 2);
    expect(called()).toEqual([
      'get agentruns.agents.applylens.io nightly-build -o json --context prod -n team-a',
      `logs job/${job} -c agent -f --context prod -n team-a`,
    ]);
  });

  it('reads an earlier attempt, and refuses one that never was', async () => {
    const { io, err, called } = stub(jobRun(2));
    expect(await logsCommand(['nightly-build', '--attempt', '1'], io)).toBe(0);
    expect(called()[1]).toBe(
      `logs job/${jobName({ metadata: { name: 'nightly-build', uid: UID } }, 1)} -c agent`,
    );
    expect(await logsCommand(['nightly-build', '--attempt', '3'], io)).toBe(1);
    expect(err.join('')).toContain('has had 2 attempt(s); there is no attempt 3');
  });

  it('says where to look for an agent that runs inside the operator, and asks for no logs', async () => {
    const { io, out, called } = stub({
      metadata: { name: 'probe', namespace: 'team-a', uid: UID },
      spec: { agent: 'http.check' },
      status: { attempts: 1, phase: 'Succeeded', plan: { url: 'https://example.com/' } },
    });
    expect(await logsCommand(['probe'], io)).toBe(0);
    expect(out.join('')).toContain('runs inside the operator, not in a container of its own');
    expect(out.join('')).toContain(`runId ${UID}`);
    expect(called()).toHaveLength(1);
  });

  it('says when a run has not started', async () => {
    const { io, err } = stub({ ...jobRun(0), status: { phase: 'Pending' } });
    expect(await logsCommand(['nightly-build'], io)).toBe(1);
    expect(err.join('')).toContain('has not started an attempt yet (phase Pending)');
  });
});
