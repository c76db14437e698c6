/**
 * Runs `work` with a signal that aborts when `outer` does or, with a TimeoutError (the same
 * DOMException as AbortSignal.timeout's), after `timeoutMs`. The timer is cleared when `work`
 * settles: AbortSignal.timeout's cannot be, so each call left one pending until it fired, and
 * on the hot path (every API request, every Event) those were tens of thousands of timers and
 * a DOMException with its stack each (docs/performance.md).
 */
export async function withDeadline<T>(
  outer: AbortSignal | undefined,
  timeoutMs: number,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const deadline = new AbortController();
  const timer = setTimeout(() => {
    deadline.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
  }, timeoutMs);
  const onOuter = (): void => deadline.abort(outer?.reason);
  if (outer?.aborted) onOuter();
  else outer?.addEventListener('abort', onOuter, { once: true });
  try {
    return await work(deadline.signal);
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener('abort', onOuter);
  }
}
