import { type ScheduledTask, schedule } from 'node-cron';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';

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
    private readonly timezone?: string,
  ) {}

  start(): void {
    if (this.task) return;
    this.task = schedule(this.cron, () => this.runOnce(), {
      noOverlap: true,
      name: this.name,
      ...(this.timezone ? { timezone: this.timezone } : {}),
    });
  }

  /** One tick now, unless one is already running (then that one's end). */
  runOnce(): Promise<void> {
    this.running ??= this.tick()
      .then(
        () => undefined,
        (err) => this.logger.error({ err: errorMessage(err), schedule: this.name }, 'scheduled tick failed'),
      )
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  async stop(): Promise<void> {
    await this.task?.stop();
    this.task = undefined;
    await this.running;
  }
}
