import type { Logger } from 'pino';
import type { NewJob, Store } from '../store/store.js';

/**
 * Retention (DATA_RETENTION): what PagerDuty and Slack sent is kept only as long as it is useful.
 * Webhook events, dead jobs and the evidence stored on runs go after the retention period; runs (the
 * postmortem history: incident, decisions, session and PR links) stay. A daily schedule queues one purge
 * job; on several replicas they may each queue one, and running it twice deletes nothing more.
 */
export const purgeJob = (): NewJob => ({
  kind: 'purge_expired_data',
  lane: 'maintenance',
  payload: {},
  dedupeKey: 'purge_expired_data',
});

export async function purgeExpiredData(
  deps: { store: Store; logger: Logger; now: () => number },
  retentionMs: number,
): Promise<void> {
  const cutoff = deps.now() - retentionMs;
  const deleted = await deps.store.purgeBefore(cutoff);
  deps.logger.info({ ...deleted, before: new Date(cutoff).toISOString() }, 'expired data deleted');
}

/** A webhook event that happened before the retention period is never recorded: its ID may be gone. */
export function isBeyondRetention(occurredAt: string, now: number, retentionMs: number): boolean {
  const at = Date.parse(occurredAt);
  return Number.isFinite(at) && at < now - retentionMs;
}
