import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * Relative links in the READMEs and docs/ point at files that exist, and a `#fragment` into a
 * markdown file names one of its headings (GitHub's anchors). Links to web sites are not checked.
 */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const pages = [
  'README.md',
  'deploy/README.md',
  'migrations/README.md',
  ...readdirSync(join(ROOT, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.md'))
    .map((name) => join('docs', name)),
].sort();

/** The text outside fenced code blocks and inline code, where links are links. */
function prose(markdown: string): string {
  return markdown
    .replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '')
    .replace(/(`+)[\s\S]*?\1/g, '');
}

/** Inline link targets, `[text](target)` and `[text](target "title")`. */
function linkTargets(markdown: string): string[] {
  return [...prose(markdown).matchAll(/\]\(<?([^)\s>]+)>?(?:\s+"[^"]*")?\)/g)].map(
    (m) => m[1] ?? '',
  );
}

/** GitHub's anchors for a markdown file's headings (`-1`, `-2` for repeats). */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const match of markdown
    .replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '')
    .matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const slug = (match[1] ?? '')
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    out.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return out;
}

describe('markdown links', () => {
  it('finds the pages', () => {
    expect(pages).toContain('docs/README.md');
    expect(pages).toContain('docs/runbooks/AgentRunOperatorDown.md');
  });

  it.each(pages)('%s: relative links point at existing files and headings', (page) => {
    const text = readFileSync(join(ROOT, page), 'utf8');
    const broken: string[] = [];
    for (const target of linkTargets(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, ...
      const [path = '', fragment] = target.split('#', 2);
      const file = path === '' ? join(ROOT, page) : join(ROOT, dirname(page), decodeURI(path));
      if (!existsSync(file)) {
        broken.push(`${target}: no ${relative(ROOT, file)}`);
        continue;
      }
      if (fragment && file.endsWith('.md')) {
        const known = anchors(readFileSync(file, 'utf8'));
        if (!known.has(decodeURIComponent(fragment))) {
          broken.push(`${target}: no heading #${fragment} in ${relative(ROOT, file)}`);
        }
      }
    }
    expect(broken).toEqual([]);
  });
});
