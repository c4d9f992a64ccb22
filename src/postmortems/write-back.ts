import type { Logger } from 'pino';
import type { Store } from '../store/store.js';
import type { IncidentNotes } from './ports.js';

/**
 * Job: the postmortem PR's link written back onto the PagerDuty incident as a note (PAGERDUTY_FROM_EMAIL).
 * Queued by every finish; it does nothing when write-back is off, the run has no PR, or the incident
 * came from Slack rather than PagerDuty. A storm group's postmortem is noted on every incident of the
 * group that its session was told of.
 */
export async function writeBackPullRequest(
  deps: { store: Store; notes: IncidentNotes | undefined; logger: Logger; now: () => number },
  runId: string,
): Promise<void> {
  const run = await deps.store.getRun(runId);
  if (!run || !deps.notes || run.pullRequests.length === 0 || run.incident.source === 'slack') return;
  const content = [
    `Postmortem written by Devin: ${run.pullRequests.join(' ')}`,
    ...(run.devinUrl ? [`Devin session: ${run.devinUrl}`] : []),
  ].join('\n');
  // A group's postmortem goes on each incident its session was told of (those that never reached it
  // moved to a group of their own). Each note is recorded as written, so a retry (a 429 halfway through
  // a storm) writes only the rest.
  const members = await deps.store.stormMembers(runId);
  if (members.length === 0) {
    await deps.notes.addNote(run.incidentId, content);
  } else {
    const covered = members.filter((m) => m.incident.id === run.incidentId || m.deliveredAt !== null);
    for (const member of covered) {
      if (member.notedAt !== null) continue;
      await deps.notes.addNote(member.incident.id, content);
      await deps.store.markStormNoted(runId, member.incident.id, deps.now());
    }
  }
  deps.logger.info(
    { runId, incidentId: run.incidentId, incidents: Math.max(1, members.length) },
    'postmortem link written back to PagerDuty',
  );
}
