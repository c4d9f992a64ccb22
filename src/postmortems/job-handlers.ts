import type { Logger } from 'pino';
import type { JobHandler } from '../jobs/runner.js';
import type { JobKind, Store } from '../store/store.js';
import type { ApprovalDigest } from './digest.js';
import { toJobFailure } from './errors.js';
import type { EventProcessor } from './intake.js';
import type { Lifecycle } from './lifecycle.js';
import type { MessageWorker } from './message-worker.js';
import type { ThreadReplyKind } from './model.js';
import type { IncidentNotes } from './ports.js';
import { purgeExpiredData } from './retention.js';
import type { SessionWorker } from './session-worker.js';
import { writeBackPullRequest } from './write-back.js';

export interface JobHandlerDeps {
  events: EventProcessor;
  sessions: SessionWorker;
  messages: MessageWorker;
  /** Absent only in tests that queue no digest redraws. */
  digest?: ApprovalDigest;
  /** The queue of runs waiting for a session slot (DEVIN_MAX_CONCURRENT_SESSIONS). */
  queue: Pick<Lifecycle, 'admitQueued'>;
  store: Store;
  notes: IncidentNotes | undefined;
  logger: Logger;
  now: () => number;
  retentionMs: number;
}

/**
 * Every job kind and what carries it out. A domain failure leaves here as the runner's "try again then"
 * or "for good" (errors.ts `retryDecision`), so no handler decides retries on its own.
 */
export function jobHandlers(deps: JobHandlerDeps): Record<JobKind, JobHandler> {
  const runId = (job: { payload: Record<string, unknown> }) => String(job.payload.runId);
  const handlers: Record<JobKind, JobHandler> = {
    process_event: (job) => deps.events.processEvent(String(job.payload.eventId)),
    start_session: (job) => deps.sessions.startSession(runId(job), job),
    finalize_session: (job) => deps.sessions.finalizeSession(runId(job)),
    terminate_session: (job) => deps.sessions.terminateSession(runId(job)),
    append_incidents: (job) => deps.sessions.appendIncidents(runId(job)),
    sync_message: (job) => deps.messages.syncMessage(runId(job), job),
    thread_reply: (job) => deps.messages.threadReply(runId(job), job.payload.reply as ThreadReplyKind, job),
    pagerduty_note: (job) => writeBackPullRequest(deps, runId(job)),
    purge_expired_data: () => purgeExpiredData(deps, deps.retentionMs),
    sync_digest: async (job) => deps.digest?.redraw(String(job.payload.channel), job),
    admit_queued: async () => {
      const admitted = await deps.queue.admitQueued();
      for (const run of admitted)
        deps.logger.info({ runId: run.id, incidentId: run.incidentId }, 'a session slot came free: starting');
    },
  };
  return Object.fromEntries(
    Object.entries(handlers).map(([kind, handle]) => [
      kind,
      async (job) => {
        try {
          await handle(job);
        } catch (err) {
          throw toJobFailure(err);
        }
      },
    ]),
  ) as Record<JobKind, JobHandler>;
}
