import type { Logger } from 'pino';
import { AppError, errorMessage, RetryableError } from '../errors.js';
import type { Job, JobKind, JobLease, Store } from '../store/store.js';

/** Longest wait between attempts while the store is unavailable; a store that comes back wakes workers. */
const STORE_BACKOFF_MAX_MS = 5000;

export type JobHandler = (job: Job) => Promise<void>;

export interface JobRunnerOptions {
  store: Store;
  handlers: Record<JobKind, JobHandler>;
  logger: Logger;
  now?: () => number;
  concurrency?: number;
  /** How often idle workers look for due jobs (retries coming due) when nothing wakes them. */
  pollIntervalMs?: number;
  /**
   * How long a claimed job is held. The runner renews the leases of the jobs it is running every third of
   * this, so a job whose process died (not one that is merely slow) is handed to another worker once its
   * lease runs out.
   */
  leaseMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Unexpected errors (bugs, not "try later") are retried this many times, then the job is buried. */
  maxUnexpectedAttempts?: number;
  /**
   * A job of a kind this release has no handler for (queued by a newer release running beside it, during
   * a rolling update) is handed back, due again after this long, for a replica that knows it: never run,
   * never counted as a failure, never buried.
   */
  unknownKindRetryMs?: number;
  /**
   * Fields for the log lines about a job that did not complete, beyond its own (e.g. the incident of the
   * run it is for). Asked only when there is something to log; a failure to answer leaves them out.
   */
  logContext?: (job: Job) => Promise<Record<string, unknown>>;
  /**
   * Asked before each claim: a wait to finish first (the intake going before the background in a
   * flood: see IntakeFirst), or undefined to claim at once.
   */
  beforeClaim?: () => Promise<void> | undefined;
}

/**
 * Runs the durable job queue: every side effect (Slack, Devin) is a job in the store, so a crash, a
 * restart or an outage only delays it. Jobs in one lane run one at a time, in order.
 */
export class JobRunner {
  private readonly o: Required<Omit<JobRunnerOptions, 'now' | 'logContext' | 'beforeClaim'>> &
    Pick<JobRunnerOptions, 'logContext' | 'beforeClaim'> & { now: () => number };
  private running = false;
  private loops: Promise<void>[] = [];
  private wakers: (() => void)[] = [];
  /** Counts wake-ups, so a worker that was woken while it looked for work looks again instead of idling. */
  private wakeups = 0;
  private settleWaiters: (() => void)[] = [];
  /** Workers idle because they found nothing to do (see park). */
  private parked = 0;
  private lastSweep = Number.NEGATIVE_INFINITY;
  /**
   * No sweep for expired leases before this. After the store was unavailable, every live worker (of every
   * replica: they all lost it) first renews the leases that lapsed meanwhile; only a dead one's stay lapsed.
   */
  private sweepAfter = Number.NEGATIVE_INFINITY;
  /** Store calls that failed in a row (the database is down): idle workers wait longer and longer. */
  private storeFailures = 0;
  /** The jobs this runner is executing now: their leases are renewed until they are recorded. */
  private readonly inFlight = new Map<number, JobLease>();
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(options: JobRunnerOptions) {
    this.o = {
      now: Date.now,
      concurrency: 4,
      pollIntervalMs: 1000,
      leaseMs: 30_000,
      backoffBaseMs: 2000,
      backoffMaxMs: 10 * 60_000,
      maxUnexpectedAttempts: 10,
      unknownKindRetryMs: 30_000,
      ...options,
    };
    options.store.onJobsQueued(() => this.wake());
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loops = Array.from({ length: this.o.concurrency }, () => this.loop());
    this.scheduleHeartbeat(this.o.leaseMs / 3);
  }

  /**
   * Stops taking jobs and waits for the ones in flight to finish, at most `waitMs`. Returns the number
   * still running then: their leases are no longer renewed (closing the store hands them to another
   * replica at once; otherwise they run out).
   */
  async stop(options: { waitMs?: number } = {}): Promise<number> {
    this.running = false;
    this.wake();
    const finished = Promise.all(this.loops);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      finished,
      new Promise((resolve) => {
        if (options.waitMs !== undefined) timer = setTimeout(resolve, options.waitMs);
      }),
    ]);
    clearTimeout(timer);
    clearTimeout(this.heartbeat);
    this.heartbeat = undefined;
    const unfinished = this.inFlight.size;
    if (unfinished > 0) {
      this.o.logger.warn(
        { jobs: unfinished },
        'stopping with jobs still running; another worker will run them',
      );
    }
    this.loops = [];
    this.resolveSettled();
    return unfinished;
  }

  /**
   * Every third of the lease, the leases of the jobs in flight are renewed (sooner again after a failed
   * renewal, so an outage shorter than two thirds of the lease loses none). A lease found lost means the
   * job was handed to another worker meanwhile: what this one does with it is no longer recorded.
   */
  private scheduleHeartbeat(ms: number): void {
    clearTimeout(this.heartbeat);
    this.heartbeat = setTimeout(() => void this.renewLeases(), ms);
    this.heartbeat.unref();
  }

  private async renewLeases(): Promise<void> {
    const held = [...this.inFlight.values()];
    let nextMs = this.o.leaseMs / 3;
    if (held.length > 0) {
      try {
        const renewed = await this.o.store.renewJobLeases(held, this.o.now() + this.o.leaseMs);
        const kept = new Set(renewed.map((j) => j.id));
        for (const job of held) {
          if (!kept.has(job.id) && this.inFlight.get(job.id) === job) {
            this.o.logger.warn({ jobId: job.id }, 'job lease lost while running; another worker has the job');
          }
        }
      } catch (err) {
        this.o.logger.warn({ err: errorMessage(err) }, 'could not renew job leases; trying again');
        nextMs = Math.min(nextMs, this.o.pollIntervalMs);
      }
    }
    if (this.heartbeat) this.scheduleHeartbeat(nextMs);
  }

  wake(): void {
    this.wakeups++;
    const wakers = this.wakers;
    this.wakers = [];
    for (const w of wakers) w();
  }

  /**
   * Resolves once no job is due and none is running: every worker has looked for a job since jobs were last
   * queued or finished, found none it could take, and is idle. "Due" is by this runner's clock (`now`) when
   * the last worker looked. Not counted: a job scheduled for later (a retry in 5 minutes, a Slack call
   * paced to its channel's next free slot) and one waiting behind an earlier job of its lane. The workers
   * are woken first, so a job that came due by the clock alone is run, not missed. While the store cannot
   * be reached nothing is known, so it does not resolve until the store answers again. Event-driven, no
   * polling. A stopped runner is settled once its jobs in flight have finished.
   */
  settled(): Promise<void> {
    if (!this.running) return Promise.all(this.loops).then(() => undefined);
    return new Promise((resolve) => {
      this.settleWaiters.push(resolve);
      this.wake();
    });
  }

  private resolveSettled(): void {
    const waiters = this.settleWaiters;
    this.settleWaiters = [];
    for (const w of waiters) w();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const hold = this.o.beforeClaim?.();
      if (hold) {
        await hold.catch(() => {});
        if (!this.running) break;
      }
      const wakeups = this.wakeups;
      let job: Job | undefined;
      try {
        const now = this.o.now();
        // Leases run for minutes: looking for expired ones now and then is enough.
        if (now - this.lastSweep >= Math.min(5000, this.o.leaseMs / 2) && now >= this.sweepAfter) {
          this.lastSweep = now;
          await this.o.store.releaseExpiredLeases(now);
        }
        job = await this.o.store.claimJob(now, now + this.o.leaseMs);
        this.storeAvailable();
      } catch (err) {
        await this.idle(this.storeUnavailable(err));
        continue;
      }
      if (job) {
        // The job starts in the next turn of the event loop. Store calls resolve without I/O: without this
        // a backlog of quick jobs would run as one long chain of microtasks and starve incoming requests
        // (webhooks, Slack clicks) of the event loop. (The SQLite store commits a turn's queue writes
        // together at its end, SqliteStore.batched; its claimJob answers once the claim is committed, so a
        // job that crashes the process has its attempt counted.)
        await new Promise((resolve) => setImmediate(resolve));
        await this.execute(job);
        continue;
      }
      const ms = await this.untilNextDue();
      // Jobs queued (or unblocked) while this worker was looking would otherwise wait for the next poll.
      if (this.wakeups === wakeups && this.running) await this.park(ms);
    }
  }

  /** Logs the first failure of a streak and says how long to wait: the poll interval, doubling, capped. */
  private storeUnavailable(err: unknown): number {
    this.storeFailures++;
    this.sweepAfter = Number.POSITIVE_INFINITY;
    if (this.storeFailures === 1) {
      this.o.logger.error({ err: errorMessage(err) }, 'job queue unavailable; backing off');
    }
    const cap = Math.max(this.o.pollIntervalMs, STORE_BACKOFF_MAX_MS);
    return Math.min(cap, this.o.pollIntervalMs * 2 ** Math.min(this.storeFailures - 1, 16));
  }

  private storeAvailable(): void {
    if (this.storeFailures === 0) return;
    this.o.logger.info({ failures: this.storeFailures }, 'job queue available again');
    this.storeFailures = 0;
    this.sweepAfter = this.o.now() + this.o.leaseMs / 3;
  }

  /**
   * Records a job's outcome, trying again while the store is unavailable: a job that ran must not run
   * again just because its completion could not be written at that moment. Gives up when stopping (the
   * lease then runs out and the job runs again, which every handler tolerates).
   */
  private async record(logger: Logger | (() => Logger), what: () => Promise<void>): Promise<void> {
    const log = () => (typeof logger === 'function' ? logger() : logger);
    for (let attempt = 1; ; attempt++) {
      try {
        await what();
        this.storeAvailable();
        return;
      } catch (err) {
        if (!this.running) {
          log().error({ err: errorMessage(err) }, 'could not record the job outcome; its lease will run out');
          return;
        }
        if (attempt === 1)
          log().warn({ err: errorMessage(err) }, 'could not record the job outcome; retrying');
        // The queue is unavailable as much as when a claim fails: the same streak, logged once, and the
        // same backoff (every worker may be here, none claiming, while the database is down).
        await this.idle(this.storeUnavailable(err));
      }
    }
  }

  /** How long until the next job scheduled in the future is due (retries, paced Slack calls), capped. */
  private async untilNextDue(): Promise<number> {
    try {
      const next = await this.o.store.nextRunAt(this.o.now());
      return next === undefined
        ? this.o.pollIntervalMs
        : Math.min(this.o.pollIntervalMs, Math.max(5, next - this.o.now()));
    } catch {
      return this.o.pollIntervalMs;
    }
  }

  /** Waits for a wake-up or the given time, whichever comes first, leaving nothing behind. */
  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakers = this.wakers.filter((w) => w !== done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakers.push(done);
    });
  }

  /**
   * Idles a worker that looked and found no job it could take: once every worker is here, the runner is
   * settled. (A worker backing off from an unavailable store, or retrying to record an outcome, is not.)
   */
  private async park(ms: number): Promise<void> {
    const idle = this.idle(ms);
    this.parked++;
    if (this.parked === this.o.concurrency) this.resolveSettled();
    try {
      await idle;
    } finally {
      this.parked--;
    }
  }

  /** Idle workers waiting to be woken (for tests: it must not grow while the queue is quiet). */
  get waiting(): number {
    return this.wakers.length;
  }

  private async execute(job: Job): Promise<void> {
    const lease = { id: job.id, attempts: job.attempts };
    this.inFlight.set(job.id, lease);
    try {
      await this.run(job);
    } finally {
      if (this.inFlight.get(job.id) === lease) this.inFlight.delete(job.id);
    }
  }

  private async run(job: Job): Promise<void> {
    const { store, logger } = this.o;
    const fields = {
      jobId: job.id,
      kind: job.kind,
      lane: job.lane,
      attempt: job.attempts,
      ...payloadIds(job),
    };
    // Made only when there is something to log: a child logger per job costs an allocation and a
    // serialization of its fields (redaction included) for every job, logged or not.
    let child: Logger | undefined;
    const logOf = (): Logger => {
      child ??= logger.child(fields);
      return child;
    };
    const handler = (this.o.handlers as Partial<Record<string, JobHandler>>)[job.kind];
    if (!handler) {
      const log = logOf();
      log.warn(
        { retryInMs: this.o.unknownKindRetryMs },
        'job kind unknown to this release: left for a replica of the release that queued it',
      );
      await this.record(log, () =>
        store.retryJob(
          job,
          this.o.now() + this.o.unknownKindRetryMs,
          `job kind ${job.kind} unknown to this release`,
          {
            failed: false,
          },
        ),
      );
      return;
    }
    try {
      await handler(job);
    } catch (err) {
      const context = await this.o.logContext?.(job).catch(() => undefined);
      const log = context ? logger.child({ ...fields, ...context }) : logOf();
      if (err instanceof RetryableError) {
        // A planned return (a reserved slot, a look to come) is no failure: it must not grow the backoff.
        const delay = err.exact
          ? (err.retryAfterMs ?? 0)
          : Math.max(err.retryAfterMs ?? 0, this.backoff(job.failures + 1));
        if (err.exact) log.debug({ code: err.code, retryInMs: delay }, 'job rescheduled');
        else log.warn({ code: err.code, err: err.message, retryInMs: delay }, 'job will be retried');
        await this.record(log, () =>
          store.retryJob(job, this.o.now() + delay, err.message, { failed: !err.exact }),
        );
      } else if (err instanceof AppError || job.failures + 1 >= this.o.maxUnexpectedAttempts) {
        log.error({ err: errorMessage(err), code: (err as AppError).code }, 'job failed for good');
        await this.record(log, () => store.buryJob(job, errorMessage(err)));
      } else {
        const delay = this.backoff(job.failures + 1);
        log.error(
          { err: errorMessage(err), stack: (err as Error).stack, retryInMs: delay },
          'job crashed; will retry',
        );
        await this.record(log, () =>
          store.retryJob(job, this.o.now() + delay, errorMessage(err), { failed: true }),
        );
      }
      return;
    }
    await this.record(logOf, () => store.completeJob(job));
  }

  /** Exponential backoff with jitter after the nth failure in a row: base, 2×base, 4×base… capped. */
  private backoff(failures: number): number {
    const exp = Math.min(this.o.backoffMaxMs, this.o.backoffBaseMs * 2 ** Math.max(0, failures - 1));
    return Math.round(exp / 2 + (Math.random() * exp) / 2);
  }
}

/** The run or event a job is for, as its payload names them: in every log line about the job. */
function payloadIds(job: Job): Record<string, string> {
  const ids: Record<string, string> = {};
  for (const key of ['runId', 'eventId'] as const) {
    const value = job.payload[key];
    if (typeof value === 'string') ids[key] = value;
  }
  const lane = /^incident:(.+)$/.exec(job.lane);
  if (lane?.[1]) ids.incidentId = lane[1];
  return ids;
}
