import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { useFreshDatabase } from '../../support/environment.ts';

/**
 * The Dockerfile, .dockerignore and the kind lane, checked without a container engine (there is
 * none in CI): the image is built from the pinned Node.js, ships production dependencies and
 * compiled JavaScript only, runs as a numeric non-root user the way the Deployment starts it, and
 * `make test-e2e` skips cleanly where Docker or kind is missing.
 */

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');
const run = promisify(execFile);

interface Stage {
  from: string;
  name: string | undefined;
  lines: string[];
}

/** The Dockerfile's instructions (continuations joined, comments dropped), split into stages. */
function stages(): { args: Map<string, string>; stages: Stage[] } {
  const lines = read('Dockerfile')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const args = new Map<string, string>();
  const result: Stage[] = [];
  for (const line of lines) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?$/i.exec(line);
    if (from?.[1]) result.push({ from: from[1], name: from[2], lines: [] });
    else if (result.length === 0) {
      const arg = /^ARG\s+(\w+)=(\S+)$/.exec(line);
      if (arg?.[1] && arg[2]) args.set(arg[1], arg[2]);
    } else result.at(-1)?.lines.push(line);
  }
  return { args, stages: result };
}

const dockerfile = stages();
const final = dockerfile.stages.at(-1) as Stage;
/** COPY sources of the final stage, by the stage they come from ('' for the build context). */
const copies = final.lines.flatMap((line) => {
  const copy = /^COPY\s+(?:--from=(\S+)\s+)?(\S+)\s+\S+$/.exec(line);
  return copy?.[2] ? [{ from: copy[1] ?? '', source: copy[2] }] : [];
});

const db = useFreshDatabase('image');

describe("the image's /app, assembled without a container engine", () => {
  it('runs from compiled JavaScript and the production dependencies alone', async () => {
    // What the Dockerfile's stages produce: tsc's output without .d.ts and maps, `npm ci
    // --omit=dev`, package.json, crds/ and migrations/. A source file that imports a dev
    // dependency, or a runtime file left out of the COPY lines, fails here.
    const app = mkdtempSync(join(tmpdir(), 'agentrun-image-'));
    try {
      await run('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', join(app, 'dist')], {
        cwd: ROOT,
      });
      for (const entry of ['package.json', 'package-lock.json', 'crds', 'migrations']) {
        cpSync(join(ROOT, entry), join(app, entry), { recursive: true });
      }
      await run(
        'npm',
        ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'],
        { cwd: app },
      );
      rmSync(join(app, 'package-lock.json'));
      expect(existsSync(join(app, 'node_modules/vitest'))).toBe(false);
      expect(existsSync(join(app, 'node_modules/typescript'))).toBe(false);

      const cli = (args: string[], env: Record<string, string> = {}) =>
        run(process.execPath, ['dist/cli/main.js', ...args], {
          cwd: app,
          env: {
            PATH: process.env['PATH'] ?? '',
            NODE_ENV: 'production',
            DATABASE_URL: db.url,
            ...env,
          },
        });
      const version = JSON.parse(read('package.json')).version as string;
      expect((await cli(['version'])).stdout).toContain(version);
      // pg, postgrator and the migrations directory, as the image has them.
      await cli(['migrate', 'up']);
      const status = JSON.parse((await cli(['migrate', 'status', '-o', 'json'])).stdout) as {
        pending: unknown[];
      };
      expect(status.pending).toEqual([]);
      expect((await cli(['audit', 'ls'])).stderr).toBe('No runs found.\n');
      // The operator command parses its configuration and refuses a bad one, as in a pod.
      const bad = await cli(['run'], { MAX_CONCURRENT_RUNS: '0' }).catch(
        (error: { code: number; stderr: string }) => error,
      );
      expect(bad).toMatchObject({ code: 1 });
      expect((bad as { stderr: string }).stderr).toContain('MAX_CONCURRENT_RUNS');
    } finally {
      rmSync(app, { recursive: true, force: true });
    }
  });
});

describe('Dockerfile', () => {
  it('builds every stage from the Node.js of .nvmrc, by tag', () => {
    expect(dockerfile.args.get('NODE_VERSION')).toBe(read('.nvmrc').trim());
    expect(dockerfile.args.get('NODE_VERSION')).toMatch(/^24\./);
    for (const stage of dockerfile.stages) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a Dockerfile variable
      expect(stage.from).toBe('node:${NODE_VERSION}-slim');
    }
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(3);
  });

  it('compiles TypeScript in a build stage and installs production dependencies apart', () => {
    const build = dockerfile.stages.find((s) =>
      s.lines.some((l) => l.includes('tsc -p tsconfig.build.json')),
    );
    expect(build?.name).toBeDefined();
    const deps = dockerfile.stages.find((s) => s.lines.some((l) => /npm ci .*--omit=dev/.test(l)));
    expect(deps?.name).toBeDefined();
    expect(copies).toContainEqual({ from: build?.name, source: '/src/dist' });
    expect(copies).toContainEqual({ from: deps?.name, source: '/src/node_modules' });
  });

  it('ships compiled JavaScript, crds/, migrations/ and package.json, and no sources or tools', () => {
    const pkg = JSON.parse(read('package.json')) as { files: string[] };
    const fromContext = copies.filter((c) => c.from === '').map((c) => c.source);
    expect(fromContext.sort()).toEqual(
      ['package.json', ...pkg.files.filter((f) => f !== 'dist')].sort(),
    );
    expect(pkg.files).toContain('dist');
    expect(final.lines.join('\n')).not.toMatch(/\bnpm (ci|install)\b|\btsc\b|COPY src/);
    // The package managers of the base image are removed.
    expect(final.lines.find((l) => l.startsWith('RUN rm -rf'))).toMatch(
      /\/usr\/local\/lib\/node_modules .*\/usr\/local\/bin\/npm .*\/usr\/local\/bin\/npx/,
    );
  });

  it('runs `node dist/cli/main.js run` as a numeric non-root user', () => {
    const user = final.lines.find((l) => l.startsWith('USER '))?.slice(5) ?? '';
    expect(user).toMatch(/^\d+(:\d+)?$/);
    expect(Number(user.split(':')[0])).toBeGreaterThan(0);
    expect(final.lines).toContain('ENTRYPOINT ["node", "dist/cli/main.js"]');
    expect(final.lines).toContain('CMD ["run"]');
    // The Deployment passes the same command explicitly.
    const deployment = parseAllDocuments(read('deploy/manager/manager.yaml'))
      .map((d) => d.toJS())
      .find((o) => o.kind === 'Deployment');
    expect(deployment.spec.template.spec.containers[0].args).toEqual(['run']);
  });

  it('.dockerignore lets in only what the Dockerfile copies from the context', () => {
    const entries = read('.dockerignore')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    expect(entries[0]).toBe('*');
    const allowed = entries.slice(1).map((entry) => {
      expect(entry.startsWith('!'), entry).toBe(true);
      return entry.slice(1);
    });
    const built = dockerfile.stages
      .flatMap((s) => s.lines)
      .flatMap((line) => {
        const copy = /^COPY\s+(?!--from)(.+)\s+\S+$/.exec(line);
        return copy?.[1] ? copy[1].split(/\s+/) : [];
      });
    expect([...new Set(built)].sort()).toEqual(allowed.sort());
  });
});

describe('make targets', () => {
  const env = { ...process.env, MAKEFLAGS: '', MAKELEVEL: '' };
  const withoutKind = (process.env['PATH'] ?? '')
    .split(':')
    .filter((dir) => !existsSync(join(dir, 'kind')))
    .join(':');

  it('docker-build tags the image the manifests name, with the Node.js of .nvmrc', async () => {
    const { stdout } = await run('make', ['-n', 'docker-build'], { cwd: ROOT, env });
    const version = (JSON.parse(read('package.json')) as { version: string }).version;
    expect(stdout.trim()).toBe(
      `docker build --build-arg NODE_VERSION=${read('.nvmrc').trim()} -t agentrun-operator:${version} .`,
    );
    expect(read('deploy/manager/manager.yaml')).toContain(`image: agentrun-operator:${version}\n`);
  });

  it('make test does not run the kind lane', async () => {
    const { stdout } = await run('make', ['-n', 'test'], { cwd: ROOT, env });
    expect(stdout).not.toMatch(/e2e/);
  });

  it.each([
    ['no container tool', 'no-such-docker', /^test-e2e: SKIPPED: no no-such-docker command$/m],
    // `false info` fails as `docker info` does when no daemon answers (this machine's case).
    [
      'no container engine',
      'false',
      /^test-e2e: SKIPPED: false cannot reach a container engine \('false info' failed\)$/m,
    ],
    // `true info` stands for a working engine; kind is not on this PATH.
    ['no kind', 'true', /^test-e2e: SKIPPED: kind is not installed/m],
  ])('make test-e2e skips with a message, and succeeds, with %s', async (_what, tool, message) => {
    const { stdout } = await run('make', ['-s', 'test-e2e', `CONTAINER_TOOL=${tool}`], {
      cwd: ROOT,
      env: { ...env, PATH: withoutKind },
    });
    expect(stdout).toMatch(message);
  });
});
