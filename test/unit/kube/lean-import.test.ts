import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * Every module URL a fresh Node resolves while importing `entry`, recorded by a resolve hook
 * (module.registerHooks), so that CommonJS require()s inside packages count too.
 */
function resolvedBy(entry: string): string[] {
  const script = `
    const { registerHooks } = require('node:module');
    const seen = [];
    registerHooks({
      resolve(specifier, context, next) {
        const result = next(specifier, context);
        seen.push(result.url);
        return result;
      },
    });
    import(${JSON.stringify(new URL(entry, `file://${ROOT}`).href)}).then(() => {
      process.stdout.write(JSON.stringify(seen));
    });
  `;
  const out = execFileSync(process.execPath, ['-e', script], { cwd: ROOT, encoding: 'utf8' });
  return JSON.parse(out) as string[];
}

describe('the operator runtime does not load @kubernetes/client-node', () => {
  it('importing src/operator.ts resolves neither client-node nor undici, nor yet the YAML parser', () => {
    const urls = resolvedBy('src/operator.ts');
    // The hook works: it saw the operator's own modules.
    expect(urls.some((url) => url.endsWith('/src/kube/kube-client.ts'))).toBe(true);
    expect(urls.filter((url) => /@kubernetes\/client-node|\/undici\//.test(url))).toEqual([]);
    // Only a kubeconfig file or a handlers config file needs it (src/util/yaml.ts).
    expect(urls.filter((url) => /\/node_modules\/yaml\//.test(url))).toEqual([]);
  });

  it('the hook would notice: importing client-node itself is seen', () => {
    const urls = resolvedBy('node_modules/@kubernetes/client-node/dist/index.js');
    expect(urls.some((url) => url.includes('@kubernetes/client-node'))).toBe(true);
  });
});
