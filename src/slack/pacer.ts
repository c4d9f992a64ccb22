import { DomainError } from '../postmortems/errors.js';
import type { Store } from '../store/store.js';

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

  /** Slack said 429: nothing goes to that channel, from any replica, before Retry-After has passed. */
  async pushBack(channel: string, ms: number): Promise<void> {
    await this.store.blockChannel(channel, this.now() + ms);
  }
}
