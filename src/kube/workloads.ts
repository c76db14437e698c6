// The parts of batch/v1 Jobs and v1 Pods a controller that runs work as Jobs reads, as zod
// schemas: loose objects (everything else passes through untouched), every field optional as
// the API server may leave it out. Nothing here knows what the Job runs.
import { z } from 'zod';

const conditionSchema = z.looseObject({
  type: z.string(),
  status: z.string(),
  reason: z.string().optional(),
  message: z.string().optional(),
  lastTransitionTime: z.string().optional(),
});

const metadataSchema = z.looseObject({
  name: z.string().optional(),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  creationTimestamp: z.string().optional(),
  deletionTimestamp: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  ownerReferences: z
    .array(
      z.looseObject({
        kind: z.string().optional(),
        name: z.string().optional(),
        uid: z.string().optional(),
        controller: z.boolean().optional(),
      }),
    )
    .optional(),
});

export const jobSchema = z.looseObject({
  apiVersion: z.string().optional(),
  kind: z.string().optional(),
  metadata: metadataSchema,
  spec: z.looseObject({ activeDeadlineSeconds: z.number().optional() }).optional(),
  status: z
    .looseObject({
      conditions: z.array(conditionSchema).optional(),
      active: z.number().optional(),
      ready: z.number().optional(),
      succeeded: z.number().optional(),
      failed: z.number().optional(),
      startTime: z.string().optional(),
      completionTime: z.string().optional(),
    })
    .optional(),
});
export type Job = z.infer<typeof jobSchema>;

const containerStateSchema = z.looseObject({
  waiting: z
    .looseObject({ reason: z.string().optional(), message: z.string().optional() })
    .optional(),
  running: z.looseObject({ startedAt: z.string().optional() }).optional(),
  terminated: z
    .looseObject({
      exitCode: z.number(),
      signal: z.number().optional(),
      reason: z.string().optional(),
      message: z.string().optional(),
      startedAt: z.string().optional(),
      finishedAt: z.string().optional(),
    })
    .optional(),
});

export const containerStatusSchema = z.looseObject({
  name: z.string(),
  state: containerStateSchema.optional(),
  lastState: containerStateSchema.optional(),
  ready: z.boolean().optional(),
  restartCount: z.number().optional(),
  image: z.string().optional(),
});
export type ContainerStatus = z.infer<typeof containerStatusSchema>;

export const podSchema = z.looseObject({
  apiVersion: z.string().optional(),
  kind: z.string().optional(),
  metadata: metadataSchema,
  spec: z.looseObject({ nodeName: z.string().optional() }).optional(),
  status: z
    .looseObject({
      phase: z.string().optional(),
      reason: z.string().optional(),
      message: z.string().optional(),
      startTime: z.string().optional(),
      conditions: z.array(conditionSchema).optional(),
      initContainerStatuses: z.array(containerStatusSchema).optional(),
      containerStatuses: z.array(containerStatusSchema).optional(),
    })
    .optional(),
});
export type Pod = z.infer<typeof podSchema>;

/** The condition of `type` whose status is "True", if any. */
export function trueCondition(
  conditions: readonly z.infer<typeof conditionSchema>[] | undefined,
  type: string,
): z.infer<typeof conditionSchema> | undefined {
  return conditions?.find((c) => c.type === type && c.status === 'True');
}
