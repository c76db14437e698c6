// The bad-input corpus of AgentRuns (test/corpus/agentrun/*.json): loading and expanding the
// cases, and a model of what the API server's admission enforces on them. Pure: used by the unit
// test (every case through the schema, decide and status paths) and by the integration test
// (every case against a real API server and operator). The format is described in
// test/corpus/agentrun/README.md.
import { readdirSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { z } from 'zod';
import { API_VERSION, KIND } from '../../src/api/agentrun.ts';
import { agentRunCrd } from '../../src/api/crd.ts';

export const AGENTRUN_CORPUS = join(import.meta.dirname, '../corpus/agentrun');
export const WEBHOOK_CORPUS = join(import.meta.dirname, '../corpus/webhook');

const outcomeSchema = z.strictObject({
  phase: z.enum(['Succeeded', 'Failed', 'Canceled']),
  reason: z.string().min(1).optional(),
  /** A substring of the Succeeded condition's message. */
  message: z.string().min(1).optional(),
  /** A substring of status.error (and so of the audit row's error). */
  error: z.string().min(1).optional(),
  attempts: z.int().min(0).optional(),
});

export const expectSchema = z.union([
  z.strictObject({
    admission: z.literal('rejected'),
    /** A substring of the API server's message. */
    message: z.string().min(1),
  }),
  z.strictObject({
    outcome: outcomeSchema,
    /** Audit columns whose value is known exactly (after the corpus generators are expanded). */
    audit: z.record(z.string(), z.unknown()).optional(),
    /** ttlSecondsAfterFinished: 0: the object is gone once finished; the row stays. */
    deleted: z.boolean().optional(),
  }),
]);
export type Expect = z.output<typeof expectSchema>;
export type ExpectedOutcome = z.output<typeof outcomeSchema>;

const caseSchema = z.strictObject({
  name: z.string().min(1),
  input: z
    .strictObject({
      /** Merged onto the base spec; a value {"$delete": true} removes the field. */
      spec: z.record(z.string(), z.unknown()).optional(),
      /** Merged onto the base metadata ({ name }). */
      metadata: z.record(z.string(), z.unknown()).optional(),
      /** Replaces everything but apiVersion, kind and metadata. */
      manifest: z.record(z.string(), z.unknown()).optional(),
    })
    .refine((input) => !(input.manifest && input.spec), 'give spec or manifest, not both'),
  expect: expectSchema,
});
const fileSchema = z.strictObject({
  description: z.string().min(1),
  cases: z.array(caseSchema).min(1),
});

export interface AgentRunCase {
  /** `<file>/<name>`, unique across the corpus. */
  readonly id: string;
  readonly file: string;
  readonly name: string;
  /** The object name the case creates (a generated one unless the case sets its own). */
  readonly objectName: string | undefined;
  /** The AgentRun body to create, generators expanded. */
  readonly manifest: Record<string, unknown>;
  readonly expect: Expect;
}

/** The corpus' base spec: a valid noop run each case changes. */
export const BASE_SPEC = { agent: 'noop', objective: 'bad-input corpus' } as const;

const DELETE = '$delete';

/**
 * Expands the corpus' generators, for inputs too large or too odd to write out:
 * `{"$repeat": s, "times": n}` (s n times), `{"$concat": [..]}` (strings joined),
 * `{"$keys": n, "value": v}` (an object of keys k0..k<n-1>), `{"$array": n, "value": v}`,
 * `{"$nest": n, "leaf": v, "array"?: true}` (n objects `{"a": ...}`, or n arrays, around v).
 */
export function expand(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(expand);
  if (typeof value !== 'object' || value === null) return value;
  const v = value as Record<string, unknown>;
  if ('$repeat' in v) return String(v['$repeat']).repeat(Number(v['times']));
  if ('$concat' in v) return (v['$concat'] as unknown[]).map((s) => String(expand(s))).join('');
  if ('$keys' in v) {
    const item = expand(v['value']);
    return Object.fromEntries(
      Array.from({ length: Number(v['$keys']) }, (_, i) => [`k${i}`, item]),
    );
  }
  if ('$array' in v) return Array.from({ length: Number(v['$array']) }, () => expand(v['value']));
  if ('$nest' in v) {
    let nested: unknown = expand(v['leaf']);
    for (let i = 0; i < Number(v['$nest']); i++) nested = v['array'] ? [nested] : { a: nested };
    return nested;
  }
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(v)) {
    // defineProperty: a "__proto__" key must stay a key, as JSON.parse keeps it.
    Object.defineProperty(out, key, {
      value: expand(item),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

function isDelete(value: unknown): boolean {
  return typeof value === 'object' && value !== null && DELETE in value;
}

function merge(base: Record<string, unknown>, changes: Record<string, unknown> | undefined) {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(changes ?? {})) {
    if (isDelete(value)) delete out[key];
    else
      Object.defineProperty(out, key, {
        value: expand(value),
        enumerable: true,
        writable: true,
        configurable: true,
      });
  }
  return out;
}

/** Every case of every file, in file and case order. */
export function loadAgentRunCorpus(): AgentRunCase[] {
  const cases: AgentRunCase[] = [];
  for (const file of readdirSync(AGENTRUN_CORPUS)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    const category = file.replace(/\.json$/, '');
    const parsed = fileSchema.parse(JSON.parse(readFileSync(join(AGENTRUN_CORPUS, file), 'utf8')));
    parsed.cases.forEach((c, index) => {
      const metadata = merge({ name: `${category}-${index}` }, c.input.metadata);
      const rest = c.input.manifest
        ? (expand(c.input.manifest) as Record<string, unknown>)
        : { spec: merge(BASE_SPEC, c.input.spec) };
      const manifest = { apiVersion: API_VERSION, kind: KIND, metadata, ...rest };
      const objectName = typeof metadata['name'] === 'string' ? metadata['name'] : undefined;
      cases.push({
        id: `${category}/${c.name}`,
        file: category,
        name: c.name,
        objectName,
        manifest,
        expect: c.expect,
      });
    });
  }
  return cases;
}

// --- A model of admission -----------------------------------------------------------------

type Schema = {
  type?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  maxProperties?: number;
  maxItems?: number;
  enum?: unknown[];
  'x-kubernetes-preserve-unknown-fields'?: boolean;
};

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const OBJECT_META_FIELDS = new Set([
  'name',
  'generateName',
  'namespace',
  'labels',
  'annotations',
  'finalizers',
  'ownerReferences',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'managedFields',
  'selfLink',
]);
/** etcd's default request size limit, which bounds an object. */
const ETCD_MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;
const ANNOTATIONS_MAX_BYTES = 256 * 1024;

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function validate(schema: Schema, value: unknown, path: string, problems: string[]): void {
  const type = typeOf(value);
  if (schema.type !== undefined) {
    const fits = schema.type === type || (schema.type === 'number' && type === 'integer');
    if (!fits) {
      problems.push(`${path} in body must be of type ${schema.type}: "${type}"`);
      return;
    }
  }
  if (typeof value === 'string') {
    const length = [...value].length;
    if (schema.minLength !== undefined && length < schema.minLength) {
      problems.push(`${path} in body should be at least ${schema.minLength} chars long`);
    }
    if (schema.maxLength !== undefined && length > schema.maxLength) {
      problems.push(`${path}: Too long: may not be more than ${schema.maxLength} bytes`);
    }
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) {
      problems.push(`${path} in body should match '${schema.pattern}'`);
    }
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) {
      problems.push(`${path} in body should be greater than or equal to ${schema.minimum}`);
    }
    if (schema.maximum !== undefined && value > schema.maximum) {
      problems.push(`${path} in body should be less than or equal to ${schema.maximum}`);
    }
  }
  if (schema.enum !== undefined && !schema.enum.includes(value)) {
    problems.push(`${path}: Unsupported value`);
  }
  if (type === 'object') {
    const object = value as Record<string, unknown>;
    const keys = Object.keys(object);
    if (schema.maxProperties !== undefined && keys.length > schema.maxProperties) {
      problems.push(
        `${path}: Too many: ${keys.length}: must have at most ${schema.maxProperties} items`,
      );
    }
    for (const required of schema.required ?? []) {
      if (!(required in object)) problems.push(`${path}.${required}: Required value`);
    }
    if (schema['x-kubernetes-preserve-unknown-fields']) return;
    for (const key of keys) {
      const field = schema.properties?.[key];
      if (field === undefined) problems.push(`unknown field "${path}.${key}"`);
      else validate(field, object[key], `${path}.${key}`, problems);
    }
  }
}

/**
 * What the API server would refuse about `manifest`, created with strict field validation (as
 * kubectl does): its object-name rules, ObjectMeta's fields, the CRD's structural schema
 * (crds/agentrun.yaml, generated from the zod schemas) and the size limits. Messages are close to
 * the API server's, not equal: the integration test checks the real ones.
 */
export function admissionProblems(manifest: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const metadata = (manifest['metadata'] ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(metadata)) {
    if (!OBJECT_META_FIELDS.has(key)) problems.push(`unknown field "metadata.${key}"`);
  }
  const name = metadata['name'];
  if (name === undefined && metadata['generateName'] === undefined) {
    problems.push('metadata.name: Required value: name or generateName is required');
  } else if (typeof name === 'string') {
    if (name.length > 253) problems.push('metadata.name: must be no more than 253 characters');
    if (!DNS_SUBDOMAIN.test(name))
      problems.push(`metadata.name: ${name}: a lowercase RFC 1123 subdomain`);
  }
  const labels = metadata['labels'];
  if (labels !== undefined) {
    for (const [key, value] of Object.entries(labels as Record<string, unknown>)) {
      if (typeof value !== 'string') problems.push(`metadata.labels.${key}: must be a string`);
    }
  }
  const annotations = metadata['annotations'] as Record<string, string> | undefined;
  if (annotations !== undefined) {
    const bytes = Object.entries(annotations).reduce(
      (sum, [k, v]) => sum + Buffer.byteLength(k) + Buffer.byteLength(String(v)),
      0,
    );
    if (bytes > ANNOTATIONS_MAX_BYTES) problems.push('metadata.annotations: Too long');
  }
  const crd = agentRunCrd() as { spec: { versions: { schema: { openAPIV3Schema: Schema } }[] } };
  const schema = crd.spec.versions[0]?.schema.openAPIV3Schema as Schema;
  const { apiVersion: _a, kind: _k, metadata: _m, ...rest } = manifest;
  validate(
    { ...schema, properties: { ...schema.properties, metadata: {} } },
    { ...rest },
    '',
    problems,
  );
  if (Buffer.byteLength(serialize(manifest)) > ETCD_MAX_REQUEST_BYTES) {
    problems.push('request is too large');
  }
  // The root path is '' above: `.spec.agent` reads as the API server's `spec.agent`.
  return problems.map((p) => p.replace(/(^|")\./, '$1'));
}

/**
 * JSON.stringify for values nested deeper than it can take (it, and any recursive function,
 * overflows the stack at a few thousand levels): the corpus sends such params. Iterative.
 * With `wellFormedStrings`, lone surrogates become U+FFFD as the API server's decoder makes them.
 */
export function serialize(root: unknown, wellFormedStrings = false): string {
  type Work = { readonly text: string } | { readonly value: unknown };
  const out: string[] = [];
  const work: Work[] = [{ value: root }];
  for (let next = work.pop(); next !== undefined; next = work.pop()) {
    if ('text' in next) {
      out.push(next.text);
      continue;
    }
    const { value } = next;
    if (typeof value === 'object' && value !== null) {
      const array = Array.isArray(value);
      const parts: Work[] = [{ text: array ? '[' : '{' }];
      const entries = array
        ? (value as unknown[]).map((item) => [undefined, item ?? null] as const)
        : Object.entries(value).filter(([, item]) => item !== undefined);
      entries.forEach(([key, item], index) => {
        const comma = index > 0 ? ',' : '';
        const name = key === undefined ? '' : `${string(key, wellFormedStrings)}:`;
        parts.push({ text: comma + name }, { value: item });
      });
      parts.push({ text: array ? ']' : '}' });
      for (let i = parts.length - 1; i >= 0; i--) work.push(parts[i] as Work);
    } else if (typeof value === 'string') {
      out.push(string(value, wellFormedStrings));
    } else {
      out.push(JSON.stringify(value) ?? 'null');
    }
  }
  return out.join('');
}

function string(value: string, wellFormedStrings: boolean): string {
  return JSON.stringify(wellFormedStrings ? value.toWellFormed() : value);
}

/** `value` with every string made well-formed, as the API server's JSON decoder stores it. */
export function wellFormed(value: unknown): unknown {
  // JSON.parse is iterative: it takes any depth.
  return JSON.parse(serialize(value, true));
}

// --- The webhook corpus -------------------------------------------------------------------

const responseSchema = z.strictObject({
  /** Default 200. */
  status: z.int().min(100).max(599).optional(),
  headers: z.record(z.string(), z.string()).optional(),
  /** The body as text (generators expanded). */
  body: z.unknown().optional(),
  /** The body as bytes. */
  bodyBase64: z.string().optional(),
  /** The body as this JSON value (generators expanded), for values too deep for JSON.stringify. */
  json: z.unknown().optional(),
  /** Send the body `bytes` at a time, one write every `everyMs`. */
  dribble: z.strictObject({ bytes: z.int().min(1), everyMs: z.int().min(1) }).optional(),
  /** Never send the headers ("headers"), or send them and never the body ("body"). */
  hang: z.enum(['headers', 'body']).optional(),
  /** Close the connection without an answer. */
  destroy: z.boolean().optional(),
  /** Send the body, then cut the connection (with a content-length that promises more). */
  endEarly: z.boolean().optional(),
});
export type WebhookResponse = z.output<typeof responseSchema>;

const webhookCaseSchema = z.strictObject({
  name: z.string().min(1),
  input: z.strictObject({
    response: responseSchema,
    /** The endpoint's configured timeoutMs; default 5000. */
    timeoutMs: z.int().min(1).optional(),
  }),
  expect: z.strictObject({
    outcome: outcomeSchema,
    /** Matched (toMatchObject) against the status' artifacts. */
    artifacts: z.record(z.string(), z.unknown()).optional(),
  }),
});
const webhookFileSchema = z.strictObject({
  description: z.string().min(1),
  cases: z.array(webhookCaseSchema).min(1),
});

export interface WebhookCase {
  readonly id: string;
  readonly response: WebhookResponse;
  /** The response body, ready to send. */
  readonly bytes: Buffer;
  readonly timeoutMs: number;
  readonly expect: z.output<typeof webhookCaseSchema>['expect'];
}

export function loadWebhookCorpus(): WebhookCase[] {
  const cases: WebhookCase[] = [];
  for (const file of readdirSync(WEBHOOK_CORPUS)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    const category = file.replace(/\.json$/, '');
    const parsed = webhookFileSchema.parse(
      JSON.parse(readFileSync(join(WEBHOOK_CORPUS, file), 'utf8')),
    );
    for (const c of parsed.cases) {
      const { response } = c.input;
      const bytes =
        response.bodyBase64 !== undefined
          ? Buffer.from(response.bodyBase64, 'base64')
          : response.json !== undefined
            ? Buffer.from(serialize(expand(response.json)))
            : Buffer.from(String(expand(response.body ?? '')));
      cases.push({
        id: `${category}/${c.name}`,
        response,
        bytes,
        timeoutMs: c.input.timeoutMs ?? 5_000,
        expect: c.expect,
      });
    }
  }
  return cases;
}

/** Answers a request the way the case says. */
export function respond(c: WebhookCase, res: ServerResponse): void {
  const { response, bytes } = c;
  if (response.destroy) {
    res.socket?.destroy();
    return;
  }
  if (response.hang === 'headers') return;
  const headers = { ...response.headers };
  res.writeHead(response.status ?? 200, headers);
  if (response.hang === 'body') {
    res.flushHeaders();
    return;
  }
  if (response.endEarly) {
    res.write(bytes, () => res.socket?.destroy());
    return;
  }
  if (!response.dribble) {
    res.end(bytes);
    return;
  }
  const { bytes: step, everyMs } = response.dribble;
  let offset = 0;
  const timer = setInterval(() => {
    if (res.destroyed || offset >= bytes.length) {
      clearInterval(timer);
      res.end();
      return;
    }
    res.write(bytes.subarray(offset, offset + step));
    offset += step;
  }, everyMs);
  res.on('close', () => clearInterval(timer));
}
