/**
 * Resolves after `ms`, or as soon as `signal` aborts (it never rejects: a caller that must stop
 * on abort checks the signal afterwards). Uses the global timers, so fake timers drive it, and
 * removes its abort listener either way. With `unref`, the timer does not keep the process alive.
 */
export function sleep(
  ms: number,
  signal: AbortSignal,
  options: { readonly unref?: boolean } = {},
): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    if (options.unref) timer.unref();
    signal.addEventListener('abort', done, { once: true });
  });
}
