import { stringify } from 'yaml';
import { z } from 'zod';
import {
  agentDefinitionSpecSchema,
  agentDefinitionStatusSchema,
  DEFINITION_KIND,
  DEFINITION_PLURAL,
  DEFINITION_SHORT_NAMES,
  DEFINITION_SINGULAR,
} from './agentdefinition.ts';
import {
  agentRunSpecSchema,
  agentRunStatusSchema,
  GROUP,
  KIND,
  PLURAL,
  SINGULAR,
  VERSION,
} from './agentrun.ts';

type JsonSchema = { [key: string]: unknown };

const PRESERVE = 'x-kubernetes-preserve-unknown-fields';
const INT_OR_STRING = 'x-kubernetes-int-or-string';

/**
 * Turns zod's OpenAPI 3.0 output into a structural schema the API server accepts: no
 * `additionalProperties` beside preserve-unknown-fields, no zod-internal date-time regex (the
 * `date-time` format already validates), no +/-2^53 bounds zod adds to every integer.
 */
export function toStructural(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toStructural);
  if (node === null || typeof node !== 'object') return node;
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === '$schema') continue;
    out[key] =
      key === 'enum' || key === 'default' || key === 'required' ? value : toStructural(value);
  }
  if (out[PRESERVE] === true) delete out['additionalProperties'];
  // int-or-string (resource quantities) as controller-gen writes it: bare types in anyOf, the
  // string's pattern beside them (value validations inside anyOf are not structural).
  if (out[INT_OR_STRING] === true && Array.isArray(out['anyOf'])) {
    const pattern = (out['anyOf'] as JsonSchema[]).find((branch) => branch['pattern'])?.['pattern'];
    out['anyOf'] = [{ type: 'integer' }, { type: 'string' }];
    if (pattern !== undefined) out['pattern'] = pattern;
  }
  if (out['format'] === 'date-time') delete out['pattern'];
  if (out['type'] === 'integer') {
    if (out['maximum'] === Number.MAX_SAFE_INTEGER) delete out['maximum'];
    if (out['minimum'] === Number.MIN_SAFE_INTEGER) delete out['minimum'];
  }
  return out;
}

function openApi(schema: z.ZodType): unknown {
  return toStructural(z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input' }));
}

const column = (name: string, jsonPath: string, type: string, extra: JsonSchema = {}) => ({
  name,
  type,
  jsonPath,
  ...extra,
});

/** The AgentRun CustomResourceDefinition, generated from the zod schemas. */
export function agentRunCrd(): JsonSchema {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${PLURAL}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: {
        kind: KIND,
        listKind: `${KIND}List`,
        plural: PLURAL,
        singular: SINGULAR,
        shortNames: ['arun'],
        categories: ['agents'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            column('Agent', '.spec.agent', 'string'),
            column('Phase', '.status.phase', 'string'),
            // Why it is in that phase (Queued, Retrying, TimedOut, UnknownAgent...), as Pods show it.
            column('Reason', '.status.conditions[?(@.type=="Succeeded")].reason', 'string'),
            column('Dry-Run', '.spec.dryRun', 'boolean'),
            column('Duration', '.status.duration', 'string'),
            column('Age', '.metadata.creationTimestamp', 'date'),
            column('Run-ID', '.status.runId', 'string', { priority: 1 }),
            column('Requested-By', '.spec.requestedBy', 'string', { priority: 1 }),
            column('Attempts', '.status.attempts', 'integer', { priority: 1 }),
            column('Objective', '.spec.objective', 'string', { priority: 1 }),
          ],
          selectableFields: [{ jsonPath: '.spec.agent' }, { jsonPath: '.status.phase' }],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description:
                'AgentRun runs the named agent handler once with an objective, dry-run by default, and records the outcome in its status and the audit log.',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: openApi(agentRunSpecSchema),
                status: openApi(agentRunStatusSchema),
              },
            },
          },
        },
      ],
    },
  };
}

/**
 * The AgentDefinition CustomResourceDefinition: agents registered with kubectl. Its plural is
 * not `agents`, which would shadow the `agents` category that lists runs and definitions.
 */
export function agentDefinitionCrd(): JsonSchema {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${DEFINITION_PLURAL}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: {
        kind: DEFINITION_KIND,
        listKind: `${DEFINITION_KIND}List`,
        plural: DEFINITION_PLURAL,
        singular: DEFINITION_SINGULAR,
        shortNames: DEFINITION_SHORT_NAMES,
        categories: ['agents'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            column('Executor', '.status.executor', 'string'),
            column('Ready', '.status.conditions[?(@.type=="Ready")].status', 'string'),
            // Why not ready (NameTaken, AddressNotAllowed, ExecutorUnavailable...).
            column('Reason', '.status.conditions[?(@.type=="Ready")].reason', 'string'),
            column('Age', '.metadata.creationTimestamp', 'date'),
            column('Description', '.spec.description', 'string', { priority: 1 }),
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description:
                'AgentDefinition registers an agent that AgentRuns in the same namespace can name in spec.agent: a webhook the operator POSTs each run to, or (with the Job executor) a container image run as a Job.',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: openApi(agentDefinitionSpecSchema),
                status: openApi(agentDefinitionStatusSchema),
              },
            },
          },
        },
      ],
    },
  };
}

// Plain YAML of the plain object: client-node's dumpYaml runs its model serializer, which drops
// JSONSchemaProps fields such as `default`.
const toYaml = (source: string, crd: JsonSchema): string =>
  `# Generated by 'make manifests' from ${source}. Do not edit.\n${stringify(crd, {
    lineWidth: 0,
    aliasDuplicateObjects: false,
  })}`;

/** The CRD as committed in crds/agentrun.yaml. */
export function agentRunCrdYaml(): string {
  return toYaml('src/api/agentrun.ts', agentRunCrd());
}

/** The CRD as committed in crds/agentdefinition.yaml. */
export function agentDefinitionCrdYaml(): string {
  return toYaml('src/api/agentdefinition.ts', agentDefinitionCrd());
}

/** Every CRD the operator ships, by file name under crds/ (and deploy/crd/). */
export function crdFiles(): Record<string, string> {
  return {
    'agentrun.yaml': agentRunCrdYaml(),
    'agentdefinition.yaml': agentDefinitionCrdYaml(),
  };
}
