import { CustomObjectsApi, type KubeConfig, Watch } from '@kubernetes/client-node';
import { GROUP, PLURAL, VERSION } from '../../src/api/agentrun.ts';

/** What the load generator needs of a watched AgentRun. */
interface Watched {
  readonly metadata?: { readonly name?: string; readonly resourceVersion?: string };
  readonly status?: { readonly phase?: string };
  readonly code?: number;
  readonly message?: string;
}

/** Called for every ADDED or MODIFIED AgentRun, with performance.now() at its receipt. */
export type OnPhase = (name: string, phase: string | undefined, atMs: number) => void;

export interface PhaseWatch {
  /** Ends the watch; throws if it failed on the way (events may be missing then). */
  stop(): void;
}

/**
 * Watches the AgentRuns of a namespace from now on: lists one item for the collection's
 * resourceVersion, then watches from it with bookmarks, and resumes from the last
 * resourceVersion seen whenever the server ends the watch (client-go's RetryWatcher), so no
 * event is missed or replayed. Started before the first create, so every run's events are seen.
 */
export async function watchPhases(
  kc: KubeConfig,
  namespace: string,
  onPhase: OnPhase,
): Promise<PhaseWatch> {
  const api = kc.makeApiClient(CustomObjectsApi);
  const list = (await api.listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: PLURAL,
    limit: 1,
  })) as { metadata?: { resourceVersion?: string } };
  let resourceVersion = list.metadata?.resourceVersion ?? '';
  const path = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
  let request: AbortController | undefined;
  let stopped = false;
  let failed: string | undefined;
  let resumes = 0;

  const open = async (): Promise<void> => {
    request = await new Watch(kc).watch(
      path,
      { allowWatchBookmarks: true, resourceVersion },
      (type: string, object: Watched) => {
        const at = performance.now();
        if (type === 'ERROR') {
          // 410 Gone: the resourceVersion was compacted; events are lost, so say so.
          failed ??= `watch error ${object.code ?? ''}: ${object.message ?? ''}`;
          return;
        }
        resourceVersion = object.metadata?.resourceVersion ?? resourceVersion;
        if ((type === 'ADDED' || type === 'MODIFIED') && object.metadata?.name) {
          onPhase(object.metadata.name, object.status?.phase, at);
        }
      },
      (error: unknown) => {
        if (stopped || failed) return;
        if (++resumes > 100) {
          failed = `gave up resuming the watch: ${String(error)}`;
          return;
        }
        open().catch((e: unknown) => {
          failed ??= String(e);
        });
      },
    );
  };
  await open();
  return {
    stop() {
      stopped = true;
      request?.abort();
      if (failed) throw new Error(`the load generator's watch failed: ${failed}`);
    },
  };
}
