import { type ScheduledTask, schedule } from 'node-cron';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { Store } from '../store/store.js';

export interface CronTickerOptions {
  timezone?: string;
  /**
   * Replicas share this schedule: each tick runs on the one replica that takes the store's lease named
   * after the schedule first; the others skip it. The lease lasts until shortly before the next tick is
   * due (a tenth of the interval, at most a second) and is renewed while the tick runs, so neither a slow
   * tick nor a replica whose timer fires late lets two replicas run one tick. Replicas whose clocks differ
   * by more than that margin may run a tick early, never twice.
   */
  lease?: { store: Pick<Store, 'tryLease' | 'releaseLease'>; owner: string; now: () => number };
}

/** How long before the next tick a tick's lease runs out, at most (a tenth of the interval when shorter). */
const MAX_LEASE_MARGIN_MS = 1000;

/** Used when a tick is run by hand, outside the schedule, and so has no next tick to measure against. */
const DEFAULT_LEASE_MS = 30_000;

/**
 * Runs `tick` on a cron schedule, never two at once: a tick that is still running when the next one is
 * due makes that one skip. stop() waits for a running tick to end.
 */
export class CronTicker {
  private task: ScheduledTask | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly name: string,
    private readonly cron: string,
    private readonly tick: () => Promise<unknown>,
    private readonly logger: Logger,
    private readonly options: CronTickerOptions = {},
  ) {}

  start(): void {
    if (this.task) return;
    this.task = schedule(this.cron, () => this.runOnce(), {
      noOverlap: true,
      name: this.name,
      ...(this.options.timezone ? { timezone: this.options.timezone } : {}),
    });
  }

  /** One tick now, unless one is already running (then that one's end), or another replica has this one. */
  runOnce(): Promise<void> {
    this.running ??= this.leasedTick()
      .then(
        () => undefined,
        (err) => this.logger.error({ err: errorMessage(err), schedule: this.name }, 'scheduled tick failed'),
      )
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async leasedTick(): Promise<void> {
    const lease = this.options.lease;
    if (!lease) {
      await this.tick();
      return;
    }
    // Held until just before the next tick is due: a replica whose timer fires late for this same tick
    // (a busy event loop, a GC pause) still finds it taken, however late, up to the next tick itself.
    const toNext = this.task?.msToNext() ?? DEFAULT_LEASE_MS;
    // node-cron's msToNext() can carry a fraction of a millisecond: leases are whole milliseconds.
    const holdMs = Math.floor(toNext - Math.min(toNext / 10, MAX_LEASE_MARGIN_MS));
    const take = () => {
      const now = lease.now();
      return lease.store.tryLease(this.name, lease.owner, now, now + holdMs);
    };
    if (!(await take())) {
      this.logger.debug({ schedule: this.name }, 'another replica runs this tick');
      return;
    }
    const renewal = setInterval(() => void take().catch(() => {}), Math.max(10, holdMs / 2));
    renewal.unref();
    try {
      await this.tick();
    } finally {
      clearInterval(renewal);
    }
  }

  /** Stops the schedule, waits for a running tick, and hands the lease on to another replica. */
  async stop(): Promise<void> {
    await this.task?.stop();
    this.task = undefined;
    await this.running;
    const lease = this.options.lease;
    await lease?.store.releaseLease(this.name, lease.owner).catch(() => {});
  }
}
