import type { NewJob } from '../store/store.js';
import type { ThreadReplyKind } from './model.js';

/**
 * The durable jobs the lifecycle queues. Lanes order them: one incident's events are processed in order;
 * one run's Devin calls run one at a time, apart from its Slack calls, so a Devin outage does not hold
 * up the channel (and the other way round).
 */

export const processEventJob = (eventId: string, incidentId: string): NewJob => ({
  kind: 'process_event',
  lane: `incident:${incidentId}`,
  payload: { eventId },
});

export const startSessionJob = (runId: string): NewJob => ({
  kind: 'start_session',
  lane: `run:${runId}`,
  payload: { runId },
});

export const terminateSessionJob = (runId: string): NewJob => ({
  kind: 'terminate_session',
  lane: `run:${runId}`,
  payload: { runId },
});

export const finalizeSessionJob = (runId: string): NewJob => ({
  kind: 'finalize_session',
  lane: `run:${runId}`,
  payload: { runId },
});

export const pagerDutyNoteJob = (runId: string): NewJob => ({
  kind: 'pagerduty_note',
  lane: `run:${runId}`,
  payload: { runId },
});

export const threadReplyJob = (runId: string, reply: ThreadReplyKind): NewJob => ({
  kind: 'thread_reply',
  lane: `slack:${runId}`,
  payload: { runId, reply },
});

/** A run's message is redrawn from its stored state, so one waiting redraw is enough. */
export const syncMessageJob = (runId: string): NewJob => ({
  kind: 'sync_message',
  lane: `slack:${runId}`,
  payload: { runId },
  dedupeKey: `sync:${runId}`,
});

/**
 * A channel's approval digest is redrawn from the store (digest.ts): one waiting redraw takes every change
 * made meanwhile, and the channel's lane keeps two redraws (on any replicas) from running at once.
 */
export const syncDigestJob = (channel: string): NewJob => ({
  kind: 'sync_digest',
  lane: `digest:${channel}`,
  payload: { channel },
  dedupeKey: `digest:${channel}`,
});

/**
 * Look at the queue of runs waiting for a session slot (lifecycle.ts dequeue): queued by every step that
 * frees a slot. One lane, so replicas take turns; one waiting job is enough.
 */
export const admitQueuedJob = (): NewJob => ({
  kind: 'admit_queued',
  lane: 'sessions:queue',
  payload: {},
  dedupeKey: 'admit_queued',
});

/**
 * Storms: the group's incidents that have not reached its Devin session yet are sent to it. In the run's
 * Devin lane, after its create; one waiting job sends every incident that joined meanwhile.
 */
export const appendIncidentsJob = (runId: string): NewJob => ({
  kind: 'append_incidents',
  lane: `run:${runId}`,
  payload: { runId },
  dedupeKey: `append:${runId}`,
});
