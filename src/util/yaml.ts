import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * The YAML parser, loaded on first use: it costs the operator ~12 MB of RSS, and the shipped
 * Deployment reads no YAML at all (in-cluster credentials, no handlers config file).
 */
export function yaml(): typeof import('yaml') {
  return require('yaml');
}
