// What the fake kubelet makes of one pod: every container of the pod does the same. Containers
// are never restarted, as under restartPolicy Never (what Jobs for agents use).

/** The containers run for `afterMs`, then exit 0 with `message` as the termination message. */
export interface SucceedScript {
  readonly kind: 'succeed';
  readonly afterMs: number;
  readonly message: string | undefined;
}

/** The containers run for `afterMs`, then exit with `exitCode` (not 0) and `message`. */
export interface FailScript {
  readonly kind: 'fail';
  readonly afterMs: number;
  readonly exitCode: number;
  readonly message: string | undefined;
}

/** The image cannot be pulled: the containers wait with `reason` and `message` until deleted. */
export interface PullErrorScript {
  readonly kind: 'pullError';
  readonly reason: string;
  readonly message: string;
}

/** The containers run until the pod is deleted. */
export interface RunForeverScript {
  readonly kind: 'runForever';
}

export type PodScript = SucceedScript | FailScript | PullErrorScript | RunForeverScript;

export function succeed(options: { afterMs?: number; message?: string } = {}): SucceedScript {
  return { kind: 'succeed', afterMs: options.afterMs ?? 0, message: options.message };
}

export function fail(
  options: { afterMs?: number; exitCode?: number; message?: string } = {},
): FailScript {
  const exitCode = options.exitCode ?? 1;
  if (exitCode === 0) throw new RangeError('fail() needs a non-zero exitCode: use succeed()');
  return { kind: 'fail', afterMs: options.afterMs ?? 0, exitCode, message: options.message };
}

/**
 * `reason` is what the kubelet shows: ErrImagePull right after a failed pull, ImagePullBackOff
 * while it waits to try again.
 */
export function pullError(
  options: { reason?: 'ErrImagePull' | 'ImagePullBackOff'; message?: string } = {},
): PullErrorScript {
  return {
    kind: 'pullError',
    reason: options.reason ?? 'ErrImagePull',
    message: options.message ?? 'failed to pull image: not found',
  };
}

export function runForever(): RunForeverScript {
  return { kind: 'runForever' };
}
