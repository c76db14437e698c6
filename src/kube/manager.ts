import { type Logger, silentLogger } from '../util/log.ts';
import type { LeaderElectorOptions } from './leader-election.ts';

/**
 * One part of the process that the Manager starts and stops: controller-runtime's Runnable, with
 * `leaderOnly` for its LeaderElectionRunnable. Unlike a Runnable, `start` returns once the part
 * serves rather than when it ends, so that the next one can rely on it (the cache is synced before
 * the workers read it), and `stop` is explicit, so that the order of a graceful stop is declared.
 */
export interface Component {
  /** Unique in its Manager; it names the component in `stopOrder` and in logs. */
  readonly name: string;
  /** Started only once this replica leads (at once when there is no leader election). */
  readonly leaderOnly?: boolean;
  /**
   * The signal aborts when the manager starts to stop and, for a leader-only component, when
   * leadership ends; work that outlives start() (timers, loops) should end with it.
   */
  start?(signal: AbortSignal): void | Promise<void>;
  /**
   * Called once on every component when the manager stops, whether it was started or not:
   * resources built before start() (a connection pool, a client) are released the same way, and
   * a start cut short by the stop leaves nothing running. `graceMs` is how long work in flight
   * may go on before it is aborted; components without such work ignore it.
   */
  stop?(graceMs: number): void | Promise<void>;
}

/** What the manager needs of a leader elector; LeaderElector is one. */
export interface Elector {
  /** Campaigns, then leads until leadership ends or stop() is called. */
  run(): Promise<void>;
  /** Ends leadership, and hands the Lease back once the leader's work has settled. */
  stop(): Promise<void>;
  isLeader(): boolean;
}

export type LeadershipCallbacks = Pick<
  LeaderElectorOptions,
  'onStartedLeading' | 'onStoppedLeading'
>;

/** The elector's place in `stopOrder`; no component may have this name. */
export const LEADER_ELECTION = 'leader-election';

export interface ManagerOptions {
  /**
   * In start order. start() starts those that are not leader-only, one after the other; the
   * leader-only ones follow, in the same order, once this replica leads.
   */
  readonly components: readonly Component[];
  /**
   * Every component's name and LEADER_ELECTION, each once: the order of stop(). Default: the
   * reverse of the start order, with the elector stopped after the leader-only components (so
   * that the Lease is handed back only when the leader's work has stopped) and before the rest.
   */
  readonly stopOrder?: readonly string[];
  /**
   * Builds the elector around the manager's callbacks. Absent: no election, and this replica
   * leads from start() on.
   */
  readonly leaderElection?: (callbacks: LeadershipCallbacks) => Elector;
  readonly logger?: Logger;
}

/** The Lease was lost: like controller-runtime, stop, and let the process restart. */
export class LeadershipLostError extends Error {
  constructor() {
    super('leader election lost');
    this.name = 'LeadershipLostError';
  }
}

/**
 * A small controller-runtime manager: starts components in a declared order, the leader-only ones
 * when leadership is acquired, and stops all of them in a declared order. Losing the Lease stops
 * everything at once (grace 0) and rejects `done` with LeadershipLostError.
 *
 * A component whose stop() throws does not keep the others from stopping: the failure is logged
 * with the component's name, the remaining components are stopped, and then stop() rejects with
 * an AggregateError of every failure. `done` does not carry these failures: it settles as it would
 * have, so that a caller waiting on it learns only why the manager stopped.
 */
export class Manager {
  /** Settles once stopped: resolves, or rejects with LeadershipLostError after a lost Lease. */
  readonly done: Promise<void>;
  readonly #components: ReadonlyMap<string, Component>;
  readonly #stopOrder: readonly string[];
  readonly #elector: Elector | undefined;
  readonly #log: Logger;
  /** Aborted when stopping begins: the signal of start(). */
  readonly #stopSignal = new AbortController();
  #started = false;
  #stopping: Promise<void> | undefined;
  #finish: (error?: Error) => void = () => {};

  constructor(options: ManagerOptions) {
    this.#log = options.logger ?? silentLogger();
    this.#components = componentsByName(options.components);
    const startOrder = [...this.#components.values()];
    this.#stopOrder = options.stopOrder
      ? checkedStopOrder(options.stopOrder, this.#components)
      : [
          ...startOrder.filter((c) => !c.leaderOnly).map((c) => c.name),
          LEADER_ELECTION,
          ...startOrder.filter((c) => c.leaderOnly).map((c) => c.name),
        ].reverse();
    this.done = new Promise<void>((resolve, reject) => {
      this.#finish = (error) => (error ? reject(error) : resolve());
    });
    // Nobody may be awaiting `done` yet; an unobserved rejection must not crash the process.
    this.done.catch(() => {});
    this.#elector = options.leaderElection?.({
      onStartedLeading: (term) => {
        if (this.stopping) return;
        this.#log.info('became leader; starting workers');
        return this.#startLeaderOnly(AbortSignal.any([term, this.#stopSignal.signal]));
      },
      onStoppedLeading: () => {
        if (this.stopping) return;
        this.#log.error('lost the leader lease; stopping');
        // Each failure to stop is logged; the process is on its way out through `done`.
        this.#stop(0, new LeadershipLostError()).catch(() => {});
      },
    });
  }

  /** Whether stop() has been called (or the Lease lost): from then on nothing starts. */
  get stopping(): boolean {
    return this.#stopping !== undefined;
  }

  /** This replica leads: it holds the Lease, or there is no election and it has not stopped. */
  get isLeader(): boolean {
    return this.#elector ? this.#elector.isLeader() : !this.stopping;
  }

  /**
   * Starts the components that are not leader-only, in order, each once the previous one has
   * started; then campaigns for the Lease, or starts the leader-only components when there is no
   * election. Rejects when a component fails to start. When stop() is called meanwhile, it
   * resolves without starting anything more, even if the stop made a start fail.
   */
  async start(): Promise<void> {
    if (this.#started) throw new Error('the manager has already been started');
    this.#started = true;
    const signal = this.#stopSignal.signal;
    try {
      for (const component of this.#components.values()) {
        if (this.stopping) return;
        if (!component.leaderOnly) await component.start?.(signal);
      }
      if (this.stopping) return;
      if (this.#elector) void this.#elector.run();
      else await this.#startLeaderOnly(signal);
    } catch (error) {
      if (!this.stopping) throw error;
    }
  }

  /**
   * Stops every component in the stop order, each after the previous one has stopped. Calling it
   * again returns the same promise. See the class comment for a component that fails to stop.
   */
  stop(graceMs = 0): Promise<void> {
    return this.#stop(graceMs);
  }

  async #startLeaderOnly(signal: AbortSignal): Promise<void> {
    for (const component of this.#components.values()) {
      if (this.stopping || signal.aborted) return;
      if (component.leaderOnly) await component.start?.(signal);
    }
  }

  #stop(graceMs: number, cause?: Error): Promise<void> {
    // Assigned before any component's stop runs, so that one that calls stop() joins this stop.
    this.#stopping ??= Promise.resolve().then(() => this.#stopAll(graceMs, cause));
    return this.#stopping;
  }

  async #stopAll(graceMs: number, cause: Error | undefined): Promise<void> {
    this.#stopSignal.abort(cause ?? new Error('the manager is stopping'));
    const failures: { readonly name: string; readonly error: unknown }[] = [];
    for (const name of this.#stopOrder) {
      try {
        if (name === LEADER_ELECTION) await this.#elector?.stop();
        else await this.#components.get(name)?.stop?.(graceMs);
      } catch (error) {
        failures.push({ name, error });
        this.#log.error({ err: error, component: name }, 'failed to stop; stopping the others');
      }
    }
    this.#log.info('stopped');
    this.#finish(cause);
    if (failures.length > 0) {
      throw new AggregateError(
        failures.map((f) => f.error),
        `failed to stop: ${failures.map((f) => f.name).join(', ')}`,
      );
    }
  }
}

function componentsByName(components: readonly Component[]): ReadonlyMap<string, Component> {
  const byName = new Map<string, Component>();
  for (const component of components) {
    if (component.name === LEADER_ELECTION) {
      throw new Error(`"${LEADER_ELECTION}" is the elector's name in stopOrder, not a component's`);
    }
    if (byName.has(component.name)) {
      throw new Error(`two components are named "${component.name}"`);
    }
    byName.set(component.name, component);
  }
  return byName;
}

/** A stop order that leaves a component out would leak it: refuse it when the manager is built. */
function checkedStopOrder(
  stopOrder: readonly string[],
  components: ReadonlyMap<string, Component>,
): readonly string[] {
  const expected = new Set([...components.keys(), LEADER_ELECTION]);
  const seen = new Set<string>();
  for (const name of stopOrder) {
    if (!expected.has(name)) throw new Error(`stopOrder names "${name}", which is no component`);
    if (seen.has(name)) throw new Error(`stopOrder names "${name}" twice`);
    seen.add(name);
  }
  const missing = [...expected].filter((name) => !seen.has(name));
  if (missing.length > 0) throw new Error(`stopOrder leaves out ${missing.join(', ')}`);
  return [...stopOrder];
}
