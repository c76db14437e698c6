import type { AuditRecord } from '../../../src/audit/audit-record.ts';

/** An audit sink whose rows commit (or not) when the test says so. */
export class FakeSink {
  readonly records: AuditRecord[] = [];
  readonly #pending = new Map<string, Array<(ok: boolean) => void>>();
  #failureListeners: Array<() => void> = [];
  failingNow = false;

  write(record: AuditRecord): Promise<boolean> {
    this.records.push(record);
    return new Promise((resolve) => {
      const waiters = this.#pending.get(record.runId) ?? [];
      waiters.push(resolve);
      this.#pending.set(record.runId, waiters);
    });
  }

  isPending(runId: string): boolean {
    return this.#pending.has(runId);
  }

  failing(): boolean {
    return this.failingNow;
  }

  onFailure(listener: () => void): () => void {
    this.#failureListeners.push(listener);
    return () => {
      this.#failureListeners = this.#failureListeners.filter((l) => l !== listener);
    };
  }

  /** Commits (or refuses) every queued row of the run. */
  settle(runId: string, ok = true): void {
    for (const resolve of this.#pending.get(runId) ?? []) resolve(ok);
    this.#pending.delete(runId);
  }

  /** A statement failed: tell whoever waits. */
  fail(): void {
    this.failingNow = true;
    for (const listener of this.#failureListeners.splice(0)) listener();
  }
}
