import type { ReceivedEvent, Store } from '../store/store.js';
import { processEventJob } from './jobs.js';

/**
 * Intake of a verified webhook event: stored once by its ID and, for incident events, its processing
 * queued in the incident's lane in the same transaction. Nothing else happens before the answer.
 */
export function recordEvent(store: Store, event: ReceivedEvent): Promise<'recorded' | 'duplicate'> {
  return store.recordEvent(event, event.incidentId ? [processEventJob(event.id, event.incidentId)] : []);
}
