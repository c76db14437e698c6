// `make manifests`: writes the generated CRD from the zod schemas in src/api, to crds/ (what
// users `kubectl apply`) and to deploy/crd/ (kustomize reads only files below its directory).
import { writeFileSync } from 'node:fs';
import { agentRunCrdYaml } from '../src/api/crd.ts';

const yaml = agentRunCrdYaml();
for (const path of ['../crds/agentrun.yaml', '../deploy/crd/agentrun.yaml']) {
  const file = new URL(path, import.meta.url);
  writeFileSync(file, yaml);
  console.log(`wrote ${file.pathname}`);
}
