import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The layering, read from the source: `src/kube` is a generic controller runtime that knows
 * nothing of AgentRuns, and `src/util` is made of leaf helpers. kube may import `node:` modules,
 * npm packages, its own files and `src/util`; util may import `node:` modules, npm packages and its
 * own files. And no two top-level parts of `src/` import each other, directly or round a loop.
 */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SRC = join(ROOT, 'src');
const PACKAGE_NAME: string = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).name;

/** Every .ts file under src/, as paths relative to src/ with `/` separators. */
function sourceFiles(): string[] {
  return readdirSync(SRC, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts'))
    .map((name) => name.split(sep).join('/'))
    .sort();
}

/** The module specifiers a file imports or re-exports, static or dynamic (`import()`). */
function specifiersOf(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((ref) => ref.fileName);
}

/** Where a relative specifier of `file` (relative to src/) lands, relative to src/. */
function target(file: string, specifier: string): string {
  return relative(SRC, resolve(SRC, dirname(file), specifier))
    .split(sep)
    .join('/');
}

/** The top-level part of src/ a path belongs to: its folder, or the file itself at the top. */
function partOf(path: string): string {
  return path.split('/')[0] ?? path;
}

/** What `file` may not import among `specifiers`, for a file in src/kube or src/util. */
function violations(file: string, specifiers: readonly string[]): string[] {
  const part = partOf(file);
  const allowed = part === 'kube' ? ['kube', 'util'] : [part];
  return specifiers.filter((specifier) => {
    if (specifier.startsWith('node:')) return false;
    if (specifier.startsWith('.')) {
      const into = target(file, specifier);
      return into.startsWith('..') || !allowed.includes(partOf(into));
    }
    // A bare name is an npm package; the package itself would be a way round the rule.
    return (
      specifier.startsWith('/') ||
      specifier === PACKAGE_NAME ||
      specifier.startsWith(`${PACKAGE_NAME}/`)
    );
  });
}

/** The graph of top-level parts of src/, from the relative imports of every file. */
function partGraph(files: readonly string[]): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const file of files) {
    const from = partOf(file);
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    for (const specifier of specifiersOf(readFileSync(join(SRC, file), 'utf8'))) {
      if (!specifier.startsWith('.')) continue;
      const to = partOf(target(file, specifier));
      if (to !== from) edges.add(to);
    }
  }
  return graph;
}

/** One cycle in the graph, as the parts round it (first = last), or undefined. */
function findCycle(graph: ReadonlyMap<string, ReadonlySet<string>>): string[] | undefined {
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (node: string): string[] | undefined => {
    const at = path.indexOf(node);
    if (at >= 0) return [...path.slice(at), node];
    if (done.has(node)) return undefined;
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    done.add(node);
    return undefined;
  };
  for (const node of [...graph.keys()].sort()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return undefined;
}

const files = sourceFiles();
const guarded = files.filter((file) => ['kube', 'util'].includes(partOf(file)));

describe('src/kube and src/util import nothing of the domain', () => {
  it('finds the files', () => {
    expect(guarded.filter((file) => file.startsWith('kube/')).length).toBeGreaterThan(10);
    expect(guarded.filter((file) => file.startsWith('util/')).length).toBeGreaterThan(2);
  });

  it.each(guarded)('%s', (file) => {
    const specifiers = specifiersOf(readFileSync(join(SRC, file), 'utf8'));
    expect(violations(file, specifiers)).toEqual([]);
  });

  it('the rule rejects what it should', () => {
    const allowed = ['node:os', '@kubernetes/client-node', './kube-object.ts', '../util/sleep.ts'];
    const forbidden = [
      ...['api/agentrun', 'controller/run-status', 'handlers/index', 'audit/index'],
      ...['metrics/metrics', 'config/config', 'cli/main'],
    ].map((path) => `../${path}.ts`);
    const escapes = ['../operator.ts', '../../package.json', PACKAGE_NAME];
    expect(violations('kube/informer.ts', [...allowed, ...forbidden, ...escapes])).toEqual([
      ...forbidden,
      ...escapes,
    ]);
    expect(violations('util/text.ts', ['./sleep.ts', 'pino', '../kube/workqueue.ts'])).toEqual([
      '../kube/workqueue.ts',
    ]);
  });

  it('reads type-only, re-exported and dynamic imports', () => {
    expect(
      specifiersOf(
        [
          "import type { A } from '../api/a.ts';",
          "export { B } from '../audit/b.ts';",
          "const c = await import('../cli/c.ts');",
          "import {\n  D,\n} from './d.ts';",
        ].join('\n'),
      ),
    ).toEqual(['../api/a.ts', '../audit/b.ts', '../cli/c.ts', './d.ts']);
  });
});

describe('the top-level parts of src/ import each other without a cycle', () => {
  it('has none', () => {
    const graph = partGraph(files);
    expect(graph.get('kube')).toBeDefined();
    expect(findCycle(graph)).toBeUndefined();
  });

  it('finds one where there is one', () => {
    const graph = new Map([
      ['metrics', new Set(['kube', 'controller'])],
      ['controller', new Set(['kube', 'api'])],
      ['kube', new Set(['util'])],
      ['api', new Set(['metrics'])],
    ]);
    expect(findCycle(graph)).toEqual(['api', 'metrics', 'controller', 'api']);
    graph.set('api', new Set());
    expect(findCycle(graph)).toBeUndefined();
  });
});
