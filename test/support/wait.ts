import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitOptions {
  /** Total time to wait before giving up; default 30 s. */
  readonly timeoutMs?: number;
  /** Pause between attempts; default 100 ms. */
  readonly intervalMs?: number;
}

/**
 * Polls `probe` until it returns a value other than undefined, or throws when the deadline
 * passes. The last error (or "not yet") is part of the message so a failing start says why.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  options: WaitOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let last = 'not yet';
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${last}`);
    }
    await sleep(intervalMs);
  }
}
