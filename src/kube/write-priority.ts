/**
 * Lets best-effort API writes (Events) give way to the writes users wait for (status).
 *
 * Measured on a 2-core machine running the API server beside the operator: two Events per run
 * are two more API-server writes next to the run's two status writes, and at a sustained 50 runs/s
 * they cost about a third of the throughput and multiplied create->Succeeded latency
 * (docs/performance.md). Kubernetes calls Events best effort; a run's status and its audit row
 * carry everything an Event says. So an Event waits while status writes are in flight, but never
 * longer than `maxWaitMs` per Event: when the API server is quiet Events go out at once, under
 * sustained load they trickle (and the recorder's bounded queue sheds the oldest).
 */
export class WritePriority {
  readonly maxWaitMs: number;
  #inFlight = 0;
  #waiters: (() => void)[] = [];

  constructor(options: { readonly maxWaitMs?: number } = {}) {
    this.maxWaitMs = options.maxWaitMs ?? 1_000;
    if (!Number.isFinite(this.maxWaitMs) || this.maxWaitMs < 0) {
      throw new RangeError(`write priority: maxWaitMs must be >= 0, got ${this.maxWaitMs}`);
    }
  }

  /** Important writes in flight. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Counts `write` as in flight until it settles; returns it unchanged. */
  track<T>(write: Promise<T>): Promise<T> {
    this.#inFlight++;
    const done = (): void => {
      this.#inFlight--;
      if (this.#inFlight === 0) for (const wake of this.#waiters.splice(0)) wake();
    };
    write.then(done, done);
    return write;
  }

  /**
   * Resolves once no important write is in flight, or after maxWaitMs, or when `signal` aborts,
   * whichever comes first. Never rejects.
   */
  async giveWay(signal?: AbortSignal): Promise<void> {
    if (this.#inFlight === 0 || this.maxWaitMs === 0 || signal?.aborted) return;
    await new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', finish);
        this.#waiters = this.#waiters.filter((waiter) => waiter !== finish);
        resolve();
      };
      const timer = setTimeout(finish, this.maxWaitMs);
      signal?.addEventListener('abort', finish, { once: true });
      this.#waiters.push(finish);
    });
  }
}
