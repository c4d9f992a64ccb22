import { performance } from 'node:perf_hooks';

export interface IntakeFirstOptions {
  /** Webhooks arriving less than this apart are a flood (real time, not the bot's clock). */
  quietMs?: number;
  /** How long a worker holds back before it claims a job anyway: the background's floor in a flood. */
  holdMs?: number;
  /** The event loop's utilization over a window (0–1) at which the background starts to hold back. */
  busyUtilization?: number;
  /** The window utilization is measured over. */
  windowMs?: number;
  /** For tests: whether the event loop is busy, instead of measuring it. */
  busy?: () => boolean;
  /** For tests: the real-time clock, in milliseconds (performance.now). */
  clock?: () => number;
}

/**
 * Webhook intake goes before the job queue on the one event loop. Both share one thread: a job's
 * synchronous work (folding an event, the queue's bookkeeping, a group commit) is time in which no request
 * is read, verified or answered. In a flood, PagerDuty's deliveries wait behind a backlog that could have
 * waited for them: an answer that takes too long is redelivered (more load), and a subscription whose
 * deliveries keep failing is disabled by PagerDuty.
 *
 * So while webhooks keep arriving (less than `quietMs` apart) and the event loop is busy (more than
 * `busyUtilization` of the last window), each job worker holds back `holdMs` before it claims its next
 * job. The background never stops: each worker claims a job after each hold (with 4 workers and the
 * defaults, up to 200 a second, less the jobs' own time), and everything waits in the durable queue
 * meanwhile. Only verified webhooks count: a flood of unsigned requests does not hold the background back. Once the flood ends, or while the loop has
 * time to spare (a steady stream of webhooks that leaves it mostly idle), jobs run at once. Nothing
 * accepted waits longer than the flood lasts, plus the backlog's drain.
 */
export class IntakeFirst {
  private readonly quietMs: number;
  private readonly holdMs: number;
  private readonly busyUtilization: number;
  private readonly windowMs: number;
  private readonly measuredBusy: (() => boolean) | undefined;
  private readonly clock: () => number;
  private lastArrival = Number.NEGATIVE_INFINITY;
  private windowStart: number;
  private windowElu = performance.eventLoopUtilization();
  private loopBusy = false;

  constructor(options: IntakeFirstOptions = {}) {
    this.quietMs = options.quietMs ?? 2;
    this.holdMs = options.holdMs ?? 20;
    this.busyUtilization = options.busyUtilization ?? 0.5;
    this.windowMs = options.windowMs ?? 100;
    this.measuredBusy = options.busy;
    this.clock = options.clock ?? (() => performance.now());
    this.windowStart = this.clock();
  }

  /** A verified webhook arrived (called by the intake route, once per request). */
  arrived(): void {
    this.lastArrival = this.clock();
  }

  /**
   * Before a worker claims a job: nothing to wait for (undefined), or a wait of `holdMs` while a flood
   * of webhooks keeps the event loop busy.
   */
  beforeClaim(): Promise<void> | undefined {
    const now = this.clock();
    if (now - this.lastArrival >= this.quietMs || !this.isBusy(now)) return undefined;
    return new Promise((resolve) => setTimeout(resolve, this.holdMs));
  }

  private isBusy(now: number): boolean {
    if (this.measuredBusy) return this.measuredBusy();
    if (now - this.windowStart >= this.windowMs) {
      const elu = performance.eventLoopUtilization();
      this.loopBusy =
        performance.eventLoopUtilization(elu, this.windowElu).utilization >= this.busyUtilization;
      this.windowElu = elu;
      this.windowStart = now;
    }
    return this.loopBusy;
  }
}
