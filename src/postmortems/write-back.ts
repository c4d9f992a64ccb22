import type { Logger } from 'pino';
import type { Store } from '../store/store.js';
import type { IncidentNotes } from './ports.js';

/**
 * Job: the postmortem PR's link written back onto the PagerDuty incident as a note (PAGERDUTY_FROM_EMAIL).
 * Queued by every finish; it does nothing when write-back is off, the run has no PR, or the incident
 * came from Slack rather than PagerDuty. A storm group's postmortem is noted on every incident of the group.
 */
export async function writeBackPullRequest(
  deps: { store: Store; notes: IncidentNotes | undefined; logger: Logger },
  runId: string,
): Promise<void> {
  const run = await deps.store.getRun(runId);
  if (!run || !deps.notes || run.pullRequests.length === 0 || run.incident.source === 'slack') return;
  const content = [
    `Postmortem written by Devin: ${run.pullRequests.join(' ')}`,
    ...(run.devinUrl ? [`Devin session: ${run.devinUrl}`] : []),
  ].join('\n');
  const members = await deps.store.stormMembers(runId);
  const incidents = members.length > 1 ? members.map((m) => m.incident.id) : [run.incidentId];
  for (const incidentId of incidents) await deps.notes.addNote(incidentId, content);
  deps.logger.info(
    { runId, incidentId: run.incidentId, incidents: incidents.length },
    'postmortem link written back to PagerDuty',
  );
}
