/**
 * Pacing calls into a shared resource (a Slack channel) to one per interval, across every process that
 * shares the store. The rule is this pure function; each store applies it to a channel's row atomically.
 *
 * - A call that finds the channel free goes now.
 * - One that would go too early reserves the next free slot and comes back then (no worker waits), and
 *   keeps that slot when it comes back: later callers line up behind it.
 * - Nothing goes closer than the interval to the previous call, so calls that come back late after a busy
 *   moment do not go in a burst; nothing goes before a block (Slack's Retry-After) ends, reserved or not.
 */

/** A channel's pacing as stored. */
export interface ChannelPace {
  /** The first slot nobody has reserved. */
  nextFree: number;
  /** When the last call went; null before the first. */
  lastCall: number | null;
  /** Nothing goes before this (a 429's Retry-After); 0 when never blocked. */
  blockedUntil: number;
}

export interface PaceDecision {
  /** When the call may go: `now` when it goes now (it then counts as made at `now`), else later. */
  dueAt: number;
  /** The channel's pacing afterwards. */
  pace: ChannelPace;
  /** The slot the call holds afterwards: null once it went. */
  reservation: number | null;
}

export const UNPACED: ChannelPace = { nextFree: 0, lastCall: null, blockedUntil: 0 };

/** Whether the call with this `reservation` (null: none yet) may go at `now`, and what changes. */
export function paceCall(
  pace: ChannelPace,
  reservation: number | null,
  now: number,
  intervalMs: number,
): PaceDecision {
  const floor = Math.max(
    pace.lastCall === null ? Number.NEGATIVE_INFINITY : pace.lastCall + intervalMs,
    pace.blockedUntil,
  );
  if (reservation !== null) {
    const ready = Math.max(reservation, floor);
    if (now >= ready) return { dueAt: now, pace: { ...pace, lastCall: now }, reservation: null };
    return { dueAt: ready, pace, reservation };
  }
  const free = Math.max(pace.nextFree, floor);
  if (free <= now) {
    return {
      dueAt: now,
      pace: { ...pace, nextFree: Math.max(pace.nextFree, now + intervalMs), lastCall: now },
      reservation: null,
    };
  }
  return { dueAt: free, pace: { ...pace, nextFree: free + intervalMs }, reservation: free };
}

export const samePace = (a: ChannelPace, b: ChannelPace): boolean =>
  a.nextFree === b.nextFree && a.lastCall === b.lastCall && a.blockedUntil === b.blockedUntil;

/** Reservations whose call never came back (it finished elsewhere, or was given up) are dropped after this. */
export const STALE_RESERVATION_MS = 60 * 60_000;
