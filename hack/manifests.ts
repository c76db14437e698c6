// `make manifests`: writes the generated CRDs from the zod schemas in src/api, to crds/ (what
// users `kubectl apply`) and to deploy/crd/ (kustomize reads only files below its directory).
import { writeFileSync } from 'node:fs';
import { crdFiles } from '../src/api/crd.ts';

for (const [name, yaml] of Object.entries(crdFiles())) {
  for (const dir of ['../crds/', '../deploy/crd/']) {
    const file = new URL(`${dir}${name}`, import.meta.url);
    writeFileSync(file, yaml);
    console.log(`wrote ${file.pathname}`);
  }
}
