import { DomainError, isDomainError } from '../postmortems/errors.js';
import type { Store } from '../store/store.js';
import { classifySlackError } from './errors.js';

/**
 * Slack allows about one message per second per channel, per app: across every replica of the bot
 * together. In an incident storm every run's message goes to the same few channels, so calls are paced per
 * channel in the shared store (store/pacing.ts): a job that would go too early gets a reserved slot and is
 * rescheduled to it (without holding a worker), keeps that slot when it comes back (on whichever replica),
 * and a 429 from Slack holds the channel back by its Retry-After for everyone.
 */
export class ChannelPacer {
  constructor(
    private readonly store: Pick<Store, 'takeChannelSlot' | 'blockChannel'>,
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Resolves if call `callKey` may go to `channel` now; otherwise fails with chat_paced and the wait until its slot. */
  async take(channel: string, callKey: number): Promise<void> {
    const now = this.now();
    const due = await this.store.takeChannelSlot(channel, String(callKey), now, this.intervalMs);
    if (due > now) {
      throw new DomainError('chat_paced', `waiting for a free slot in ${channel}`, {
        retryAfterMs: due - now,
      });
    }
  }

  /**
   * Makes Slack call `callKey` in its slot (or fails with chat_paced), its failure told apart as a ChatCode;
   * a 429 holds the channel back for everyone.
   */
  async paced<T>(channel: string, callKey: number, call: () => Promise<T>): Promise<T> {
    await this.take(channel, callKey);
    try {
      return await call();
    } catch (err) {
      const failure = classifySlackError(err, channel);
      if (isDomainError(failure, 'chat_rate_limited')) {
        // Holding the channel back for the other jobs is best effort: this job retries after Retry-After
        // whether or not the store took it, and Slack's answer is what the job must report.
        await this.pushBack(channel, failure.retryAfterMs ?? 1000).catch(() => {});
      }
      throw failure;
    }
  }

  /** Slack said 429: nothing goes to that channel, from any replica, before Retry-After has passed. */
  async pushBack(channel: string, ms: number): Promise<void> {
    await this.store.blockChannel(channel, this.now() + ms);
  }
}
