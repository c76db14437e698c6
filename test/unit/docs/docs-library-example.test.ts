import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { diskReport } from '../../../examples/custom-operator/disk-report.ts';
import { silentLogger } from '../../../src/index.ts';

/**
 * docs/library.md shows examples/custom-operator/ as it looks in a user's project. Its blocks must
 * stay the example's files (which `make typecheck` compiles), and the handler must behave as the
 * page says.
 */
const read = (path: string) => readFileSync(fileURLToPath(new URL(path, import.meta.url)), 'utf8');
const page = read('../../../docs/library.md');

/** The ```ts block of the page whose first line is `// <name>`, without that line. */
function block(name: string): string {
  const blocks = [...page.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? '');
  const found = blocks.filter((b) => b.startsWith(`// ${name}\n`));
  expect(found, `one block starting with "// ${name}" in docs/library.md`).toHaveLength(1);
  return (found[0] ?? '').slice(`// ${name}\n`.length);
}

/** An example file as it reads in a user's project: no header comment, the package's imports. */
function asInYourProject(file: string): string {
  const lines = read(`../../../examples/custom-operator/${file}`).split('\n');
  return lines
    .slice(lines.findIndex((line) => !line.startsWith('//')))
    .join('\n')
    .replaceAll("from '../../src/index.ts'", "from 'agentrun-operator'")
    .replaceAll("from './disk-report.ts'", "from './disk-report.js'");
}

describe('docs/library.md', () => {
  it.each(['disk-report.ts', 'main.ts'])('shows examples/custom-operator/%s', (file) => {
    expect(block(file)).toBe(asInYourProject(file));
  });
});

describe('the disk.report handler of the example', () => {
  const ctx = {
    runId: 'test-run',
    attempt: 1,
    dryRun: true,
    signal: new AbortController().signal,
    logger: silentLogger(),
  };

  it('plans with defaults', () => {
    const prepared = diskReport.prepare({ objective: 'test', params: { path: '/' }, dryRun: true });
    expect(prepared).toMatchObject({ ok: true, plan: { path: '/', warnAbovePercent: 90 } });
  });

  it('reports how full / is', async () => {
    const prepared = diskReport.prepare({
      objective: 'test',
      params: { path: '/', warnAbovePercent: 100 },
      dryRun: true,
    });
    if (!prepared.ok) throw new Error(prepared.message);
    expect(await prepared.execute(ctx)).toEqual({ path: '/', usedPercent: expect.any(Number) });
  });

  it('refuses a relative path as InvalidParams, before anything runs', () => {
    expect(
      diskReport.prepare({ objective: 'x', params: { path: 'tmp' }, dryRun: true }),
    ).toMatchObject({
      ok: false,
      reason: 'InvalidParams',
      message: expect.stringMatching(/^params\.path: /),
    });
  });

  it('does not start when the run is already aborted', async () => {
    const prepared = diskReport.prepare({ objective: 'x', params: {}, dryRun: true });
    if (!prepared.ok) throw new Error(prepared.message);
    const aborted = new AbortController();
    aborted.abort(new Error('canceled'));
    await expect(prepared.execute({ ...ctx, signal: aborted.signal })).rejects.toThrow('canceled');
  });
});
