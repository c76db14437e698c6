import { createRequire } from 'node:module';

// package.json is the single place the version is written; read it at run time so that source
// (node src/...) and the compiled dist/ agree.
const pkg = createRequire(import.meta.url)('../package.json') as { name: string; version: string };

export const OPERATOR_NAME: string = pkg.name;
export const OPERATOR_VERSION: string = pkg.version;
