import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logging.js';
import { INCIDENT_SOURCE_CODES } from '../../src/postmortems/errors.js';
import { newRun } from '../../src/postmortems/intake.js';
import { Lifecycle } from '../../src/postmortems/lifecycle.js';
import type { Incident, PostmortemRun, RunTrigger } from '../../src/postmortems/model.js';
import { type AdHocIncident, type Outcome, PostmortemService } from '../../src/postmortems/service.js';
import type { SqliteStore } from '../../src/store/sqlite.js';
import { anIncident } from '../helpers/builders.js';
import { FakeApprovers, FakeIncidentSource } from '../helpers/fake-ports.js';
import { Clock, closeTempStores, queuedJobNames, takeJobs, tempStore } from '../helpers/temp-store.js';

const APPROVER = 'U_APPROVER';
const STRANGER = 'U_STRANGER';
const incident = anIncident({ id: 'Q1', number: 7 });

let clock: Clock;
let store: SqliteStore;
let lifecycle: Lifecycle;
let approvers: FakeApprovers;
let incidents: FakeIncidentSource;
let service: PostmortemService;

beforeEach(() => {
  clock = new Clock();
  store = tempStore(clock);
  lifecycle = new Lifecycle(store);
  approvers = new FakeApprovers([APPROVER]);
  incidents = new FakeIncidentSource([incident]);
  service = new PostmortemService({
    store,
    lifecycle,
    approvers,
    incidents,
    logger: createLogger('silent'),
    now: clock.now,
  });
});
afterEach(closeTempStores);

/** A run opened the way intake opens it, with the jobs of its birth taken off the queue. */
async function opened(trigger: RunTrigger, forIncident: Incident = incident, attempt = 1) {
  const run = await lifecycle.open(newRun(forIncident, attempt, trigger, 'C1'));
  if (!run) throw new Error('run not opened');
  await takeJobs(store);
  return run;
}

/** A run taken through declared steps to `state`, with the jobs those steps queued taken off the queue. */
async function runIn(
  state: 'awaiting_approval' | 'skipped' | 'start_failed' | 'started' | 'session_failed' | 'finished',
) {
  const run = await opened(state === 'awaiting_approval' || state === 'skipped' ? 'approval' : 'auto');
  const steps = {
    awaiting_approval: [],
    skipped: ['skip'],
    start_failed: ['start_refused'],
    started: ['session_created'],
    session_failed: ['session_created', 'session_failed'],
    finished: ['session_created', 'session_finished'],
  } as const;
  for (const event of steps[state]) {
    const patch = event === 'start_refused' ? { error: 'Devin refused: bad playbook' } : {};
    if (!(await lifecycle.fire(run.id, event, { patch }))) throw new Error(`${event} did not apply`);
  }
  await takeJobs(store);
  const now = await store.getRun(run.id);
  expect(now?.state).toBe(state);
  return now as PostmortemRun;
}

const doneRun = (outcome: Outcome): PostmortemRun => {
  if (outcome.kind !== 'done') throw new Error(`expected done, got ${JSON.stringify(outcome)}`);
  return outcome.run;
};

describe('PostmortemService: decisions on a run', () => {
  it('approve moves the run to starting, records who decided and queues the message and the session', async () => {
    const run = await runIn('awaiting_approval');
    clock.advance(60_000);
    const outcome = await service.approve(run.id, APPROVER);
    expect(doneRun(outcome)).toMatchObject({
      id: run.id,
      state: 'starting',
      decidedBy: APPROVER,
      decidedAt: clock.ms,
    });
    expect(await store.getRun(run.id)).toMatchObject({ state: 'starting', decidedBy: APPROVER });
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'start_session']);
  });

  it('skip records the decision and queues only the message', async () => {
    const run = await runIn('awaiting_approval');
    expect(doneRun(await service.skip(run.id, APPROVER))).toMatchObject({
      state: 'skipped',
      decidedBy: APPROVER,
    });
    expect(await queuedJobNames(store)).toEqual(['sync_message']);
  });

  it('start anyway is stale on a run that was never skipped', async () => {
    const waiting = await runIn('awaiting_approval');
    expect(await service.startAnyway(waiting.id, APPROVER)).toEqual({ kind: 'stale', run: waiting });
    expect(await queuedJobNames(store)).toEqual([]);
  });

  it('start anyway by an approver moves skipped → starting with the session queued', async () => {
    const skipped = await runIn('skipped');
    expect(doneRun(await service.startAnyway(skipped.id, APPROVER))).toMatchObject({
      state: 'starting',
      decidedBy: APPROVER,
    });
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'start_session']);
  });

  it('a decision on a run that already moved on is stale, changes nothing and queues nothing', async () => {
    const run = await runIn('awaiting_approval');
    doneRun(await service.skip(run.id, APPROVER));
    await takeJobs(store);
    const before = await store.getRun(run.id);
    const outcome = await service.approve(run.id, APPROVER);
    expect(outcome).toEqual({ kind: 'stale', run: before });
    expect(await store.getRun(run.id)).toEqual(before);
    expect(await queuedJobNames(store)).toEqual([]);
  });

  it('a decision on a run that does not exist is stale without a run', async () => {
    expect(await service.approve('no-such-run', APPROVER)).toEqual({ kind: 'stale', run: undefined });
    expect(await queuedJobNames(store)).toEqual([]);
  });

  it('concurrent approvals: exactly one is done, the others are stale, one session is queued', async () => {
    const run = await runIn('awaiting_approval');
    const outcomes = await Promise.all(Array.from({ length: 6 }, () => service.approve(run.id, APPROVER)));
    expect(outcomes.filter((o) => o.kind === 'done')).toHaveLength(1);
    expect(outcomes.filter((o) => o.kind === 'stale')).toHaveLength(5);
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'start_session']);
  });

  it('approve and skip racing: one wins, the other is stale, and the run shows the winner', async () => {
    const run = await runIn('awaiting_approval');
    const [approved, skipped] = await Promise.all([
      service.approve(run.id, APPROVER),
      service.skip(run.id, APPROVER),
    ]);
    const kinds = [approved.kind, skipped.kind].sort();
    expect(kinds).toEqual(['done', 'stale']);
    const winner = approved.kind === 'done' ? 'starting' : 'skipped';
    expect((await store.getRun(run.id))?.state).toBe(winner);
  });
});

describe('PostmortemService: retry', () => {
  it('a run whose session never started tries again as the same run and tag, its error cleared', async () => {
    const failed = await runIn('start_failed');
    expect(failed.error).toBe('Devin refused: bad playbook');
    const run = doneRun(await service.retry(failed.id, APPROVER));
    expect(run).toMatchObject({
      id: failed.id,
      devinTag: failed.devinTag,
      state: 'starting',
      error: null,
      decidedBy: APPROVER,
    });
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'start_session']);
  });

  it('a run whose session failed gets a new attempt; the failed run stays as it was', async () => {
    const failed = await runIn('session_failed');
    const run = doneRun(await service.retry(failed.id, APPROVER));
    expect(run).toMatchObject({
      incidentId: failed.incidentId,
      attempt: 2,
      trigger: 'manual',
      state: 'starting',
      decidedBy: APPROVER,
    });
    expect(run.id).not.toBe(failed.id);
    expect(run.devinTag).not.toBe(failed.devinTag);
    expect(await store.getRun(failed.id)).toEqual(failed);
    const jobs = await takeJobs(store);
    expect(jobs.map((j) => [j.kind, j.payload.runId])).toEqual([
      ['sync_message', run.id],
      ['start_session', run.id],
    ]);
  });

  it('a second Retry on the same failed session finds the new attempt instead of opening a third', async () => {
    const failed = await runIn('session_failed');
    const first = doneRun(await service.retry(failed.id, APPROVER));
    await takeJobs(store);
    expect(await service.retry(failed.id, APPROVER)).toEqual({ kind: 'exists', run: first });
    expect(await store.runsForIncident(failed.incidentId)).toHaveLength(2);
    expect(await queuedJobNames(store)).toEqual([]);
  });

  it('retry on a run that is working is stale', async () => {
    const started = await runIn('started');
    expect(await service.retry(started.id, APPROVER)).toEqual({ kind: 'stale', run: started });
    expect(await queuedJobNames(store)).toEqual([]);
  });
});

describe('PostmortemService: stop', () => {
  it('stops a live run, records who stopped it and queues the terminate and the message', async () => {
    const started = await runIn('started');
    const run = doneRun(await service.stop(started.id, APPROVER));
    expect(run).toMatchObject({ state: 'stopped', stoppedBy: APPROVER });
    expect(await queuedJobNames(store)).toEqual(['terminate_session', 'sync_message']);
  });

  it('stops a run still creating its session', async () => {
    const starting = await opened('auto');
    expect(doneRun(await service.stop(starting.id, APPROVER)).state).toBe('stopped');
    expect(await queuedJobNames(store)).toEqual(['terminate_session', 'sync_message']);
  });

  it('is stale on a finished run, which stays finished', async () => {
    const finished = await runIn('finished');
    expect(await service.stop(finished.id, APPROVER)).toEqual({ kind: 'stale', run: finished });
    expect(await queuedJobNames(store)).toEqual([]);
  });
});

describe('PostmortemService: /postmortem <incident>', () => {
  it('opens a manual run for an incident with none: the asking is the approval', async () => {
    clock.advance(5_000);
    const run = doneRun(await service.requestForIncident('Q1', APPROVER, 'C_ASKED'));
    expect(run).toMatchObject({
      incidentId: 'Q1',
      attempt: 1,
      trigger: 'manual',
      state: 'starting',
      channel: 'C_ASKED',
      decidedBy: APPROVER,
      decidedAt: clock.ms,
      incident,
    });
    expect(incidents.lookups).toEqual(['Q1']);
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'start_session']);
  });

  it('finds the incident by its number', async () => {
    const run = doneRun(await service.requestForIncident('7', APPROVER, 'C1'));
    expect(run.incidentId).toBe('Q1');
  });

  it('an incident that already has a run is not run again silently', async () => {
    const first = await runIn('finished');
    expect(await service.requestForIncident('Q1', APPROVER, 'C1')).toEqual({ kind: 'exists', run: first });
    expect(await store.runsForIncident('Q1')).toHaveLength(1);
    expect(await queuedJobNames(store)).toEqual([]);
  });

  it('without a PagerDuty token it fails with incident_source_missing and looks nothing up', async () => {
    const withoutSource = new PostmortemService({
      store,
      lifecycle,
      approvers,
      incidents: undefined,
      logger: createLogger('silent'),
      now: clock.now,
    });
    const outcome = await withoutSource.requestForIncident('Q1', APPROVER, 'C1');
    expect(outcome).toMatchObject({ kind: 'failed', code: 'incident_source_missing' });
    expect(await store.runsForIncident('Q1')).toEqual([]);
    expect(await queuedJobNames(store)).toEqual([]);
  });

  it.each(INCIDENT_SOURCE_CODES)(
    'PagerDuty failing with %s fails the request with that code',
    async (code) => {
      incidents.failNext(code);
      const outcome = await service.requestForIncident('Q1', APPROVER, 'C1');
      expect(outcome).toEqual({ kind: 'failed', code, message: `PagerDuty: ${code}` });
      expect(await store.runsForIncident('Q1')).toEqual([]);
      expect(await queuedJobNames(store)).toEqual([]);
    },
  );

  it('an unknown incident fails with incident_not_found', async () => {
    expect(await service.requestForIncident('Q404', APPROVER, 'C1')).toMatchObject({
      kind: 'failed',
      code: 'incident_not_found',
    });
  });

  it('a stranger is not allowed, and PagerDuty is not even asked', async () => {
    const outcome = await service.requestForIncident('Q1', STRANGER, 'C1');
    expect(outcome.kind).toBe('not_allowed');
    expect(incidents.lookups).toEqual([]);
    expect(await store.runsForIncident('Q1')).toEqual([]);
  });
});

describe('PostmortemService: Run again', () => {
  it('opens the next attempt from the stored incident', async () => {
    const first = await runIn('finished');
    const updated = { ...incident, title: 'Database down (updated)' };
    await store.saveIncident(updated);
    const run = doneRun(await service.runAgain('Q1', 1, APPROVER, 'C9'));
    expect(run).toMatchObject({ attempt: 2, trigger: 'manual', state: 'starting', channel: 'C9' });
    expect(run.incident.title).toBe('Database down (updated)');
    expect(await store.getRun(first.id)).toEqual(first);
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'start_session']);
  });

  it('many clicks on one Run again open exactly one new run', async () => {
    await runIn('finished');
    const outcomes = await Promise.all(
      Array.from({ length: 5 }, () => service.runAgain('Q1', 1, APPROVER, 'C1')),
    );
    const done = outcomes.filter((o) => o.kind === 'done');
    expect(done).toHaveLength(1);
    expect(outcomes.filter((o) => o.kind === 'exists')).toHaveLength(4);
    expect((await store.runsForIncident('Q1')).map((r) => r.attempt)).toEqual([1, 2]);
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'start_session']);
  });

  it('a click on an old Run again, after a newer attempt exists, shows that attempt', async () => {
    await runIn('finished');
    const second = doneRun(await service.runAgain('Q1', 1, APPROVER, 'C1'));
    await takeJobs(store);
    expect(await service.runAgain('Q1', 1, APPROVER, 'C1')).toEqual({ kind: 'exists', run: second });
  });

  it('on a run still waiting for approval, running it approves it instead of opening a second', async () => {
    const waiting = await runIn('awaiting_approval');
    const run = doneRun(await service.runAgain('Q1', 1, APPROVER, 'C1'));
    expect(run).toMatchObject({ id: waiting.id, state: 'starting', decidedBy: APPROVER });
    expect(await store.runsForIncident('Q1')).toHaveLength(1);
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'start_session']);
  });

  it('is stale for an incident without runs', async () => {
    expect(await service.runAgain('Q-none', 1, APPROVER, 'C1')).toEqual({ kind: 'stale', run: undefined });
    expect(await queuedJobNames(store)).toEqual([]);
  });
});

describe('PostmortemService: the /postmortem modal', () => {
  const input: AdHocIncident = {
    viewId: 'V123',
    title: 'Checkout slow',
    service: 'checkout',
    startedAt: '2024-01-01T10:00:00Z',
    endedAt: '2024-01-01T11:00:00Z',
    severity: 'SEV-2',
    summary: 'p99 at 4 s for an hour',
    channel: 'C_MODAL',
  };

  it('opens a manual run for an incident described by a person', async () => {
    const run = doneRun(await service.startAdHoc(input, APPROVER));
    expect(run).toMatchObject({
      incidentId: 'adhoc-V123',
      trigger: 'manual',
      state: 'starting',
      channel: 'C_MODAL',
      decidedBy: APPROVER,
    });
    expect(run.incident).toMatchObject({
      id: 'adhoc-V123',
      title: 'Checkout slow',
      serviceName: 'checkout',
      priority: 'SEV-2',
      source: 'slack',
      summary: 'p99 at 4 s for an hour',
      createdAt: input.startedAt,
      resolvedAt: input.endedAt,
    });
    expect(await queuedJobNames(store)).toEqual(['sync_message', 'start_session']);
  });

  it('a resubmission of the same modal opens no second run', async () => {
    const first = doneRun(await service.startAdHoc(input, APPROVER));
    await takeJobs(store);
    expect(await service.startAdHoc(input, APPROVER)).toEqual({ kind: 'exists', run: first });
    expect(await queuedJobNames(store)).toEqual([]);
  });
});

const adHoc: AdHocIncident = {
  viewId: 'V9',
  title: 'Checkout slow',
  service: 'checkout',
  startedAt: '2024-01-01T10:00:00Z',
  endedAt: '2024-01-01T11:00:00Z',
  severity: null,
  summary: null,
  channel: 'C1',
};
/**
 * Every request a person can make, each on a run in the state where an approver's request is done: so a
 * refusal below is the approver check at work, not a request that would have been stale anyway.
 */
const REQUESTS = [
  ['approve', 'awaiting_approval', (id: string, user: string) => service.approve(id, user)],
  ['skip', 'awaiting_approval', (id: string, user: string) => service.skip(id, user)],
  ['startAnyway', 'skipped', (id: string, user: string) => service.startAnyway(id, user)],
  ['retry', 'start_failed', (id: string, user: string) => service.retry(id, user)],
  ['stop', 'started', (id: string, user: string) => service.stop(id, user)],
  ['runAgain', 'finished', (_id: string, user: string) => service.runAgain('Q1', 1, user, 'C1')],
  [
    'requestForIncident',
    'finished',
    (_id: string, user: string) => service.requestForIncident('Q2', user, 'C1'),
  ],
  ['startAdHoc', 'finished', (_id: string, user: string) => service.startAdHoc(adHoc, user)],
] as const;

describe('PostmortemService: who may ask', () => {
  beforeEach(() => {
    incidents.incidents.set('Q2', anIncident({ id: 'Q2', number: 8 }));
  });

  it.each(REQUESTS)(
    '%s by someone who is not an approver is not allowed and changes nothing',
    async (_name, state, act) => {
      const run = await runIn(state);
      expect(await act(run.id, STRANGER)).toEqual({
        kind: 'not_allowed',
        reason: 'not_an_approver',
        approvers: `<@${APPROVER}>`,
      });
      expect(await store.getRun(run.id)).toEqual(run);
      expect(await store.recentRuns(10)).toHaveLength(1);
      expect(incidents.lookups).toEqual([]);
      expect(await queuedJobNames(store)).toEqual([]);
      // The same request by an approver goes through.
      expect((await act(run.id, APPROVER)).kind).toBe('done');
    },
  );

  it.each(REQUESTS)(
    '%s fails with approvers_unavailable when the list cannot be read, and changes nothing',
    async (_name, state, act) => {
      const run = await runIn(state);
      approvers.unavailable = true;
      const outcome = await act(run.id, APPROVER);
      expect(outcome).toMatchObject({ kind: 'failed', code: 'approvers_unavailable' });
      expect((outcome as { message: string }).message).toContain('SLACK_APPROVERS');
      expect(await store.getRun(run.id)).toEqual(run);
      expect(await store.recentRuns(10)).toHaveLength(1);
      expect(incidents.lookups).toEqual([]);
      expect(await queuedJobNames(store)).toEqual([]);
      approvers.unavailable = false;
      expect((await act(run.id, APPROVER)).kind).toBe('done');
    },
  );
});
