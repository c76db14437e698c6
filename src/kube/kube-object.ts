/**
 * The part of Kubernetes object metadata the controller machinery relies on. Fields are typed
 * `T | undefined` so that schema-derived types (zod's optional fields) are assignable under
 * `exactOptionalPropertyTypes`.
 */
export interface ObjectMeta {
  readonly namespace?: string | undefined;
  readonly name?: string | undefined;
  readonly uid?: string | undefined;
  readonly resourceVersion?: string | undefined;
}

/** Any Kubernetes object: the informer and the work queue need nothing beyond its metadata. */
export interface KubeObject {
  readonly metadata: ObjectMeta;
}

/**
 * The cache and work-queue key of an object, client-go's `MetaNamespaceKeyFunc`:
 * `namespace/name`, or `name` for cluster-scoped objects; undefined when the object has no name.
 */
export function objectKey(object: KubeObject): string | undefined {
  const { namespace, name } = object.metadata;
  if (!name) return undefined;
  return namespace ? `${namespace}/${name}` : name;
}

/** Narrows an unknown value to a plain object (for validating API responses). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Deletes `metadata.managedFields` from a freshly decoded object, in place. Server-side apply
 * bookkeeping is about two thirds of a typical object's retained heap and the controller never
 * reads it. Only call it on objects nobody else holds yet.
 */
export function stripManagedFields(raw: unknown): void {
  if (!isRecord(raw)) return;
  const metadata = raw['metadata'];
  if (isRecord(metadata) && 'managedFields' in metadata) delete metadata['managedFields'];
}
