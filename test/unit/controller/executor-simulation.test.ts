import { describe, expect, it, vi } from 'vitest';
import { Executor } from '../../../src/controller/executor.ts';
import type { JsonObject } from '../../../src/handlers/handler.ts';
import { logger, onFakeTimers } from './executor-harness.ts';

/** Executor slots under a randomised (seeded) reconciler: never overbooked, no key stranded. */

onFakeTimers();

/** A small deterministic PRNG (mulberry32), so the simulation is reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('Executor: a simulated reconciler never overbooks and never strands a key', () => {
  for (const seed of [1, 2, 3, 42, 1234, 99_999]) {
    it(`seed ${seed}`, async () => {
      const random = prng(seed);
      const maxConcurrent = 1 + Math.floor(random() * 3);
      const keys = Array.from({ length: 12 }, (_, i) => `ns/run-${i}`);
      let inFlight = 0;
      let maxInFlight = 0;
      let maxBusy = 0;
      const done = new Set<string>();

      const executor: Executor = new Executor({
        maxConcurrent,
        onFinished: (e, result) => {
          expect(result.kind).toBe('succeeded');
          done.add(e.key);
        },
        // Like the work queue: the woken key's reconcile runs a little later.
        onCapacity: (key) => {
          setTimeout(() => reconcile(key), Math.floor(random() * 5));
        },
      });

      const observe = () => {
        maxBusy = Math.max(maxBusy, executor.busy);
      };

      const reconcile = (key: string): void => {
        try {
          if (done.has(key) || executor.executingUid(key)) return;
          // Sometimes the run was canceled meanwhile: it gives up without reserving.
          if (random() < 0.15) {
            done.add(key);
            return;
          }
          if (!executor.reserve(key)) return;
          observe();
          // Sometimes the claim cannot be written: the slot goes back and the key tries later.
          if (random() < 0.2) {
            executor.release();
            setTimeout(() => reconcile(key), 10);
            return;
          }
          const ms = 1 + Math.floor(random() * 50);
          executor.start({
            key,
            agent: 'noop',
            uid: `${key}-uid`,
            attempt: 1,
            dryRun: false,
            deadline: undefined,
            logger,
            execute: () => {
              inFlight++;
              maxInFlight = Math.max(maxInFlight, inFlight);
              return new Promise<JsonObject>((resolve) =>
                setTimeout(() => {
                  inFlight--;
                  resolve({});
                }, ms),
              );
            },
          });
          observe();
        } finally {
          executor.reconciled(key);
        }
      };

      for (const key of keys) setTimeout(() => reconcile(key), Math.floor(random() * 20));
      await vi.advanceTimersByTimeAsync(10_000);

      expect(maxInFlight).toBeLessThanOrEqual(maxConcurrent);
      expect(maxBusy).toBeLessThanOrEqual(maxConcurrent);
      expect([...done].sort()).toEqual([...keys].sort());
      expect(executor.busy).toBe(0);
      expect(executor.waiting).toBe(0);
      expect(inFlight).toBe(0);
    });
  }
});
