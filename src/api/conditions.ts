import { z } from 'zod';

/**
 * metav1.Condition, as the Kubernetes API conventions define it. The schema is shared by the CRD
 * (admission validates what the operator writes) and by the operator's own parsing.
 */
export const CONDITION_REASON_PATTERN = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;

export const conditionStatusSchema = z.enum(['True', 'False', 'Unknown']);
export type ConditionStatus = z.infer<typeof conditionStatusSchema>;

export const conditionSchema = z.object({
  type: z
    .string()
    .min(1)
    .max(316)
    .describe('Type of condition in CamelCase: Succeeded, Ready, Reconciling, Stalled.'),
  status: conditionStatusSchema.describe('Status of the condition: True, False or Unknown.'),
  observedGeneration: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe('The metadata.generation the condition was computed from.'),
  lastTransitionTime: z
    .string()
    .meta({ format: 'date-time' })
    .describe('When the condition last changed status.'),
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(CONDITION_REASON_PATTERN)
    .describe('Machine-readable CamelCase reason for the last transition.'),
  message: z.string().max(32768).describe('Human-readable details about the last transition.'),
});
export type Condition = z.infer<typeof conditionSchema>;

/**
 * Condition types. `Succeeded` is the primary condition of a bounded run (as in Tekton); `Ready`,
 * `Reconciling` and `Stalled` are what Flux's kstatus and similar tools read to tell progressing
 * from done from failed without custom configuration.
 */
export const ConditionType = {
  Succeeded: 'Succeeded',
  Ready: 'Ready',
  Reconciling: 'Reconciling',
  Stalled: 'Stalled',
  /** True once the run's terminal row is committed to the audit log (absent when auditing is off). */
  Audited: 'Audited',
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

/**
 * Returns `conditions` with `next` set: replaced in place if its type exists, appended
 * otherwise. `lastTransitionTime` moves only when the status flips (API conventions), so
 * re-asserting a condition with a new message keeps the original transition time.
 */
export function setCondition(
  conditions: readonly Condition[],
  next: Omit<Condition, 'lastTransitionTime'>,
  now: Date,
): Condition[] {
  const existing = conditions.find((c) => c.type === next.type);
  const lastTransitionTime =
    existing && existing.status === next.status ? existing.lastTransitionTime : rfc3339(now);
  const updated: Condition = { ...next, lastTransitionTime };
  return existing
    ? conditions.map((c) => (c.type === next.type ? updated : c))
    : [...conditions, updated];
}

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: ConditionType,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** RFC 3339 in UTC with second precision, the metav1.Time wire format. */
export function rfc3339(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}
