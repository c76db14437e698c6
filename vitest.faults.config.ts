import { defineConfig } from 'vitest/config';

/**
 * The fault scenarios of issue 15 (`make test-faults-scenarios`): each file starts its own
 * control plane, PostgreSQL and operator processes and takes minutes, so they are not part of
 * `make test`, and run one file at a time.
 */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    testTimeout: 900_000,
    hookTimeout: 180_000,
    fileParallelism: false,
  },
});
