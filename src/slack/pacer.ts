import { DomainError } from '../postmortems/errors.js';

/**
 * Slack allows about one message per second per channel. In an incident storm every run's message goes to
 * the same few channels, so calls are paced per channel: a job that would go too early gets a reserved slot
 * and is rescheduled to it (without holding a worker), and keeps that slot when it comes back. A 429 from
 * Slack pushes the channel's next slot back by its Retry-After.
 */
export class ChannelPacer {
  private readonly nextFree = new Map<string, number>();
  private readonly lastCall = new Map<string, number>();
  private readonly reserved = new Map<number, { channel: string; slot: number }>();

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Returns if job `jobId` may call Slack in `channel` now; otherwise throws chat_paced with the wait until its slot. */
  take(channel: string, jobId: number): void {
    const now = this.now();
    const held = this.reserved.get(jobId);
    const last = this.lastCall.get(channel) ?? Number.NEGATIVE_INFINITY;
    if (held?.channel === channel) {
      // A job back for its slot keeps its place in line, and still never goes closer than the interval
      // to the previous call (jobs that come back late, after a busy moment, must not go in a burst).
      const ready = Math.max(held.slot, last + this.intervalMs);
      if (now >= ready) {
        this.reserved.delete(jobId);
        this.lastCall.set(channel, now);
        return;
      }
      throw paced(channel, ready - now);
    }
    this.reserved.delete(jobId);
    const free = Math.max(this.nextFree.get(channel) ?? 0, last + this.intervalMs);
    if (free <= now) {
      this.nextFree.set(channel, Math.max(this.nextFree.get(channel) ?? 0, now + this.intervalMs));
      this.lastCall.set(channel, now);
      return;
    }
    this.nextFree.set(channel, free + this.intervalMs);
    this.reserved.set(jobId, { channel, slot: free });
    this.prune(now);
    throw paced(channel, free - now);
  }

  /** Slack said 429: nothing goes to that channel before Retry-After has passed. */
  pushBack(channel: string, ms: number): void {
    const until = this.now() + ms;
    if ((this.nextFree.get(channel) ?? 0) < until) this.nextFree.set(channel, until);
  }

  /** Reservations whose job never came back (finished elsewhere, or lost to a restart) are dropped. */
  private prune(now: number): void {
    if (this.reserved.size < 10_000) return;
    for (const [id, r] of this.reserved) if (r.slot < now - 60_000) this.reserved.delete(id);
  }
}

function paced(channel: string, waitMs: number): DomainError<'chat_paced'> {
  return new DomainError('chat_paced', `waiting for a free slot in ${channel}`, { retryAfterMs: waitMs });
}
