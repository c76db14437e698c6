import { afterAll, beforeAll, inject } from 'vitest';
import type { ControlPlaneInfo } from './envtest/control-plane.ts';
import { createDatabase, dropDatabase } from './postgres/databases.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The control plane started by the integration project's global setup. */
    controlPlane: ControlPlaneInfo;
    /** A superuser URL of the test PostgreSQL server (DATABASE_URL, or the ephemeral one). */
    postgresAdminUrl: string;
  }
}

/** The shared test control plane (one per `vitest run`; use a fresh namespace per test). */
export function controlPlane(): ControlPlaneInfo {
  return inject('controlPlane');
}

/**
 * Gives the calling test file a database of its own, created before its tests and dropped after.
 * Call at the top level of the file; read `.url` inside tests or hooks.
 */
export function useFreshDatabase(prefix: string): { readonly url: string } {
  let created: { name: string; url: string } | undefined;
  beforeAll(async () => {
    created = await createDatabase(inject('postgresAdminUrl'), prefix);
  });
  afterAll(async () => {
    if (created) await dropDatabase(inject('postgresAdminUrl'), created.name);
  });
  return {
    get url(): string {
      if (!created)
        throw new Error('useFreshDatabase: the database exists only inside tests and hooks');
      return created.url;
    },
  };
}
