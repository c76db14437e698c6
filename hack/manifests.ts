// `make manifests`: writes the generated CRD (crds/agentrun.yaml) from the zod schemas in src/api.
import { writeFileSync } from 'node:fs';
import { agentRunCrdYaml } from '../src/api/crd.ts';

const file = new URL('../crds/agentrun.yaml', import.meta.url);
writeFileSync(file, agentRunCrdYaml());
console.log(`wrote ${file.pathname}`);
