import { describe, expect, it } from 'vitest';
import {
  type Component,
  type Elector,
  LEADER_ELECTION,
  type LeadershipCallbacks,
  LeadershipLostError,
  Manager,
  type ManagerOptions,
} from '../../../src/kube/manager.ts';
import { capturingLogger } from '../../support/logs.ts';

/** What happened, in order: "start x", "stop x (grace N)", "start leader-election"... */
type Journal = string[];

/** A component that writes its starts and stops to the journal; `startDelayMs` makes start slow. */
function component(
  journal: Journal,
  name: string,
  options: {
    leaderOnly?: boolean;
    startDelayMs?: number;
    startFails?: Error;
    stopFails?: Error;
    signals?: Map<string, AbortSignal>;
  } = {},
): Component {
  return {
    name,
    ...(options.leaderOnly ? { leaderOnly: true } : {}),
    start: async (signal) => {
      options.signals?.set(name, signal);
      if (options.startDelayMs) await new Promise((r) => setTimeout(r, options.startDelayMs));
      if (options.startFails) throw options.startFails;
      journal.push(`start ${name}`);
    },
    stop: async (graceMs) => {
      journal.push(`stop ${name} (grace ${graceMs})`);
      if (options.stopFails) throw options.stopFails;
    },
  };
}

/** An elector the test drives: win() and lose() stand for the Lease changing hands. */
class FakeElector implements Elector {
  readonly #journal: Journal;
  readonly #callbacks: LeadershipCallbacks;
  #term: AbortController | undefined;
  #ended: () => void = () => {};
  readonly #running = new Promise<void>((resolve) => {
    this.#ended = resolve;
  });

  constructor(journal: Journal, callbacks: LeadershipCallbacks) {
    this.#journal = journal;
    this.#callbacks = callbacks;
  }

  run(): Promise<void> {
    this.#journal.push(`start ${LEADER_ELECTION}`);
    return this.#running;
  }

  async win(): Promise<void> {
    this.#term = new AbortController();
    await this.#callbacks.onStartedLeading(this.#term.signal);
  }

  lose(): void {
    this.#endTerm();
    this.#ended();
  }

  async stop(): Promise<void> {
    this.#journal.push(`stop ${LEADER_ELECTION}`);
    this.#endTerm();
    this.#ended();
  }

  isLeader(): boolean {
    return this.#term !== undefined && !this.#term.signal.aborted;
  }

  #endTerm(): void {
    if (!this.#term || this.#term.signal.aborted) return;
    this.#term.abort();
    this.#callbacks.onStoppedLeading();
  }
}

/** A manager with leader election through a FakeElector, and one journal for all of it. */
function elected(
  components: (journal: Journal) => Component[],
  options: Omit<ManagerOptions, 'components' | 'leaderElection'> = {},
): { manager: Manager; elector: () => FakeElector; journal: Journal } {
  const journal: Journal = [];
  let elector: FakeElector | undefined;
  const manager = new Manager({
    ...options,
    components: components(journal),
    leaderElection: (callbacks) => {
      elector = new FakeElector(journal, callbacks);
      return elector;
    },
  });
  return {
    manager,
    journal,
    elector: () => {
      if (!elector) throw new Error('the manager built no elector');
      return elector;
    },
  };
}

describe('Manager: start', () => {
  it('starts components in the declared order, each once the one before has started', async () => {
    const journal: Journal = [];
    const manager = new Manager({
      components: [
        component(journal, 'a', { startDelayMs: 20 }),
        component(journal, 'b'),
        component(journal, 'c', { startDelayMs: 5 }),
      ],
    });
    await manager.start();
    expect(journal).toEqual(['start a', 'start b', 'start c']);
  });

  it('without election, starts the leader-only components at start(), after the others', async () => {
    const journal: Journal = [];
    const manager = new Manager({
      components: [
        component(journal, 'workers', { leaderOnly: true }),
        component(journal, 'cache'),
        component(journal, 'retention', { leaderOnly: true }),
      ],
    });
    expect(manager.isLeader).toBe(true);
    await manager.start();
    expect(journal).toEqual(['start cache', 'start workers', 'start retention']);
    expect(manager.isLeader).toBe(true);
    await manager.stop();
    expect(manager.isLeader).toBe(false);
  });

  it('with election, starts the leader-only components only once leadership is acquired', async () => {
    const { manager, elector, journal } = elected((journal) => [
      component(journal, 'cache'),
      component(journal, 'workers', { leaderOnly: true }),
      component(journal, 'retention', { leaderOnly: true }),
    ]);
    await manager.start();
    expect(journal).toEqual(['start cache', `start ${LEADER_ELECTION}`]);
    expect(manager.isLeader).toBe(false);

    await elector().win();
    expect(journal).toEqual([
      'start cache',
      `start ${LEADER_ELECTION}`,
      'start workers',
      'start retention',
    ]);
    expect(manager.isLeader).toBe(true);
  });

  it('gives leader-only components a signal that aborts when leadership ends', async () => {
    const signals = new Map<string, AbortSignal>();
    const { manager, elector } = elected((journal) => [
      component(journal, 'cache', { signals }),
      component(journal, 'workers', { leaderOnly: true, signals }),
    ]);
    await manager.start();
    await elector().win();
    expect(signals.get('workers')?.aborted).toBe(false);
    elector().lose();
    expect(signals.get('workers')?.aborted).toBe(true);
    await manager.done.catch(() => {});
    expect(signals.get('cache')?.aborted).toBe(true);
  });

  it('rejects when a component fails to start, and starts nothing after it', async () => {
    const journal: Journal = [];
    const manager = new Manager({
      components: [
        component(journal, 'a'),
        component(journal, 'b', { startFails: new Error('port in use') }),
        component(journal, 'c'),
        component(journal, 'workers', { leaderOnly: true }),
      ],
    });
    await expect(manager.start()).rejects.toThrow('port in use');
    expect(journal).toEqual(['start a']);
  });

  it('refuses a second start()', async () => {
    const manager = new Manager({ components: [] });
    await manager.start();
    await expect(manager.start()).rejects.toThrow(/already been started/);
  });
});

describe('Manager: stop', () => {
  it('by default stops in the reverse start order, the elector between leader-only and the rest', async () => {
    const { manager, elector, journal } = elected((journal) => [
      component(journal, 'health'),
      component(journal, 'cache'),
      component(journal, 'workers', { leaderOnly: true }),
      component(journal, 'retention', { leaderOnly: true }),
    ]);
    await manager.start();
    await elector().win();
    journal.length = 0;
    await manager.stop(5);
    expect(journal).toEqual([
      'stop retention (grace 5)',
      'stop workers (grace 5)',
      `stop ${LEADER_ELECTION}`,
      'stop cache (grace 5)',
      'stop health (grace 5)',
    ]);
    await expect(manager.done).resolves.toBeUndefined();
  });

  it('follows an explicit stop order, and passes the grace to every component', async () => {
    const journal: Journal = [];
    const manager = new Manager({
      components: ['health', 'metrics', 'cache', 'pool'].map((name) => component(journal, name)),
      stopOrder: ['cache', LEADER_ELECTION, 'health', 'metrics', 'pool'],
    });
    await manager.start();
    journal.length = 0;
    await manager.stop(20_000);
    expect(journal).toEqual([
      'stop cache (grace 20000)',
      'stop health (grace 20000)',
      'stop metrics (grace 20000)',
      'stop pool (grace 20000)',
    ]);
  });

  it("stops the components that never started: a follower's leader-only ones", async () => {
    const { manager, journal } = elected((journal) => [
      component(journal, 'cache'),
      component(journal, 'workers', { leaderOnly: true }),
    ]);
    await manager.start();
    await manager.stop(7);
    expect(journal).toEqual([
      'start cache',
      `start ${LEADER_ELECTION}`,
      'stop workers (grace 7)',
      `stop ${LEADER_ELECTION}`,
      'stop cache (grace 7)',
    ]);
  });

  it('stops the components of a manager stopped before start()', async () => {
    const journal: Journal = [];
    const manager = new Manager({
      components: [
        component(journal, 'cache'),
        component(journal, 'workers', { leaderOnly: true }),
      ],
    });
    await manager.stop();
    expect(journal).toEqual(['stop workers (grace 0)', 'stop cache (grace 0)']);
  });

  it('stops once: a second stop() returns the same promise', async () => {
    const journal: Journal = [];
    const manager = new Manager({ components: [component(journal, 'a')] });
    const first = manager.stop(1);
    expect(manager.stopping).toBe(true);
    expect(manager.stop(2)).toBe(first);
    await first;
    expect(journal).toEqual(['stop a (grace 1)']);
  });

  it('still stops the rest when a component fails to stop, logs it, and rejects with every failure', async () => {
    const journal: Journal = [];
    const { logger, lines } = capturingLogger();
    const manager = new Manager({
      logger,
      components: [
        component(journal, 'a'),
        component(journal, 'b', { stopFails: new Error('b is stuck') }),
        component(journal, 'c', { stopFails: new Error('c is stuck') }),
        component(journal, 'd'),
      ],
    });
    await manager.start();
    journal.length = 0;
    const stopped = manager.stop();
    await expect(stopped).rejects.toThrow(AggregateError);
    await expect(stopped).rejects.toThrow('failed to stop: c, b');
    const error = await stopped.catch((e: unknown) => e);
    expect((error as AggregateError).errors.map((e: Error) => e.message)).toEqual([
      'c is stuck',
      'b is stuck',
    ]);
    expect(journal).toEqual([
      'stop d (grace 0)',
      'stop c (grace 0)',
      'stop b (grace 0)',
      'stop a (grace 0)',
    ]);
    expect(
      lines.filter((l) => l['level'] === 'error').map((l) => [l['component'], l['msg']]),
    ).toEqual([
      ['c', 'failed to stop; stopping the others'],
      ['b', 'failed to stop; stopping the others'],
    ]);
    expect(lines.at(-1)?.['msg']).toBe('stopped');
    // `done` tells why the manager stopped, not how well.
    await expect(manager.done).resolves.toBeUndefined();
  });

  it('a stop during start() ends the start quietly, and nothing starts after it', async () => {
    const journal: Journal = [];
    const signals = new Map<string, AbortSignal>();
    const manager = new Manager({
      components: [
        component(journal, 'slow', { startDelayMs: 30, signals }),
        component(journal, 'after'),
        component(journal, 'workers', { leaderOnly: true }),
      ],
    });
    const starting = manager.start();
    await manager.stop();
    expect(signals.get('slow')?.aborted).toBe(true);
    await expect(starting).resolves.toBeUndefined();
    expect(journal).toEqual([
      'stop workers (grace 0)',
      'stop after (grace 0)',
      'stop slow (grace 0)',
      'start slow',
    ]);
  });

  it('a start that fails because of the stop does not make start() reject', async () => {
    let failStart: (error: Error) => void = () => {};
    const manager = new Manager({
      components: [
        {
          name: 'cache',
          start: () =>
            new Promise<void>((_resolve, reject) => {
              failStart = reject;
            }),
          stop: () => failStart(new Error('stopped before it synced')),
        },
      ],
    });
    const starting = manager.start();
    await manager.stop();
    await expect(starting).resolves.toBeUndefined();
  });
});

describe('Manager: leadership', () => {
  it('on a lost Lease stops everything with grace 0 and rejects done with LeadershipLostError', async () => {
    const { logger, lines } = capturingLogger();
    const { manager, elector, journal } = elected(
      (journal) => [
        component(journal, 'cache'),
        component(journal, 'workers', { leaderOnly: true }),
      ],
      { logger },
    );
    await manager.start();
    await elector().win();
    expect(manager.isLeader).toBe(true);
    journal.length = 0;
    elector().lose();
    expect(manager.stopping).toBe(true);
    expect(manager.isLeader).toBe(false);
    await expect(manager.done).rejects.toBeInstanceOf(LeadershipLostError);
    expect(journal).toEqual([
      'stop workers (grace 0)',
      `stop ${LEADER_ELECTION}`,
      'stop cache (grace 0)',
    ]);
    expect(lines.map((l) => l['msg'])).toEqual([
      'became leader; starting workers',
      'lost the leader lease; stopping',
      'stopped',
    ]);
  });

  it('leadership that ends because of stop() is no loss: done resolves', async () => {
    const { manager, elector } = elected(() => []);
    await manager.start();
    await elector().win();
    await manager.stop();
    await expect(manager.done).resolves.toBeUndefined();
  });

  it('leadership won while stopping starts nothing', async () => {
    const { manager, elector, journal } = elected(
      (journal) => [component(journal, 'workers', { leaderOnly: true })],
      { stopOrder: [LEADER_ELECTION, 'workers'] },
    );
    await manager.start();
    const stopped = manager.stop();
    await elector().win();
    await stopped;
    expect(journal).toEqual([
      `start ${LEADER_ELECTION}`,
      `stop ${LEADER_ELECTION}`,
      'stop workers (grace 0)',
    ]);
  });
});

describe('Manager: construction', () => {
  const a: Component = { name: 'a' };
  const b: Component = { name: 'b' };

  it.each([
    [[a, a], undefined, 'two components are named "a"'],
    [[{ name: LEADER_ELECTION }], undefined, `"${LEADER_ELECTION}" is the elector's name`],
    [[a, b], ['a', LEADER_ELECTION], 'stopOrder leaves out b'],
    [[a, b], ['a', 'b'], `stopOrder leaves out ${LEADER_ELECTION}`],
    [[a, b], ['a', 'b', LEADER_ELECTION, 'a'], 'stopOrder names "a" twice'],
    [[a], ['a', LEADER_ELECTION, 'c'], 'stopOrder names "c", which is no component'],
  ] as const)('refuses %j with stop order %j', (components, stopOrder, message) => {
    expect(
      () => new Manager({ components, ...(stopOrder ? { stopOrder: [...stopOrder] } : {}) }),
    ).toThrow(message);
  });
});
