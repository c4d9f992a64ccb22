import { describe, expect, it } from 'vitest';
import { processEventJob, syncDigestJob } from '../../src/postmortems/jobs.js';
import type {
  GatedSteps,
  Job,
  NewJob,
  NewRun,
  PlacementBound,
  ReceivedEvent,
  SessionGate,
  Store,
  StormJoin,
} from '../../src/store/store.js';
import { anIncident, aRun } from '../helpers/builders.js';

/** A database for one contract test: `open()` gives a store on it; call it again after closing for another. */
export interface ContractDatabase {
  open(): Promise<Store>;
}

const incident = anIncident();

const newRun = (id: string, attempt = 1, overrides: Partial<NewRun> = {}): NewRun => {
  const { createdAt: _c, updatedAt: _u, ...run } = aRun({ id, attempt, incident });
  return { ...run, ...overrides };
};

/** The storm bound on a channel's top-level posts: `after` open messages, started runs placed since `since`. */
const bound = (after: number, since = 0): PlacementBound => ({ after, since });

/** Storm joins as the lifecycle declares them: a redraw while waiting, a redraw and an append when live. */
const redraw = (runId: string): NewJob => ({
  kind: 'sync_message',
  lane: `slack:${runId}`,
  payload: { runId },
  dedupeKey: `sync:${runId}`,
});
const append = (runId: string): NewJob => ({
  kind: 'append_incidents',
  lane: `run:${runId}`,
  payload: { runId },
  dedupeKey: `append:${runId}`,
});
const stormJoin = (serviceId: string, resolvedAt: number, overrides: Partial<StormJoin> = {}): StormJoin => ({
  serviceId,
  resolvedAt,
  windowMs: 600_000,
  steps: {
    awaiting_approval: { to: 'awaiting_approval', patch: {}, jobs: (id) => [redraw(id)] },
    started: { to: 'started', patch: {}, jobs: (id) => [redraw(id), append(id)] },
  },
  ...overrides,
});
const stormRun = (id: string, incidentId: string, serviceId = 'PS1'): NewRun => ({
  ...newRun(id),
  incidentId,
  devinTag: `pm-run-${id}`,
  incident: { ...incident, id: incidentId, serviceId },
});

const event = (id: string, incidentId: string | null = 'Q1'): ReceivedEvent => ({
  id,
  type: 'incident.resolved',
  incidentId,
  occurredAt: '2024-01-01T00:00:00Z',
  receivedAt: 1_700_000_000_123,
  payload: '{"event":{"id":"x"}, "raw":  "kept as sent"}',
});

const LIVE = ['starting', 'started', 'needs_input'] as const;
const DAY = 20_000;
const gate = (overrides: Partial<SessionGate> = {}): SessionGate => ({
  day: DAY,
  liveStates: LIVE,
  queuedState: 'queued',
  ...overrides,
});
const steps = (id: string, overBudget = true): GatedSteps => ({
  admitted: {
    state: 'starting',
    jobs: [{ kind: 'start_session', lane: `run:${id}`, payload: { runId: id } }],
  },
  full: { state: 'queued', jobs: [{ kind: 'sync_message', lane: `slack:${id}`, payload: { runId: id } }] },
  overBudget: overBudget
    ? {
        state: 'awaiting_approval',
        jobs: [{ kind: 'sync_message', lane: `slack:${id}`, payload: { runId: id } }],
      }
    : undefined,
});
/** A run of its own incident, for the gate's tests (one incident each). */
const gatedRun = (id: string): NewRun => {
  const own = anIncident({ id: `I-${id}` });
  const {
    createdAt: _c,
    updatedAt: _u,
    ...run
  } = aRun({ id, incidentId: own.id, incident: own, trigger: 'auto' });
  return run;
};

/**
 * What every Store must do, run unchanged against each implementation. `newDatabase` gives an empty
 * database for each test; the caller closes stores and removes databases afterwards.
 */
export function storeContract(name: string, newDatabase: () => Promise<ContractDatabase>): void {
  const fresh = async () => (await newDatabase()).open();

  describe(`${name}: the Store contract`, () => {
    it('records an event once with the jobs it is given, durably', async () => {
      const db = await newDatabase();
      const store = await db.open();
      const results = await Promise.all([
        store.recordEvent(event('e1'), [processEventJob('e1', 'Q1')]),
        store.recordEvent(event('e1'), [processEventJob('e1', 'Q1')]),
        store.recordEvent(event('e2'), [processEventJob('e2', 'Q1')]),
      ]);
      expect(results.filter((r) => r === 'recorded')).toHaveLength(2);
      expect(results[2]).toBe('recorded');
      expect(await store.recordEvent(event('e1'), [processEventJob('e1', 'Q1')])).toBe('duplicate');
      expect(await store.countJobs()).toEqual({ queued: 2, running: 0, dead: 0 });
      await store.close();

      const reopened = await db.open();
      expect(await reopened.getEvent('e1')).toEqual(event('e1'));
      expect(await reopened.getEvent('nope')).toBeUndefined();
      const job = await reopened.claimJob(Date.now(), Date.now() + 1000);
      expect(job).toMatchObject({
        kind: 'process_event',
        lane: 'incident:Q1',
        payload: { eventId: 'e1' },
        attempts: 1,
      });
      expect(typeof job?.id).toBe('number');
      expect(typeof job?.createdAt).toBe('number');
    });

    it('stores an event given no jobs without queueing any', async () => {
      const store = await fresh();
      expect(await store.recordEvent(event('ping', null), [])).toBe('recorded');
      expect(await store.getEvent('ping')).toMatchObject({ incidentId: null });
      expect(await store.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
    });

    it('runs one job per lane at a time, in order, while other lanes proceed', async () => {
      const store = await fresh();
      await store.enqueueJob({ kind: 'sync_message', lane: 'a', payload: { n: 1 } });
      await store.enqueueJob({ kind: 'sync_message', lane: 'a', payload: { n: 2 } });
      await store.enqueueJob({ kind: 'sync_message', lane: 'b', payload: { n: 3 } });
      const now = Date.now();
      const first = await store.claimJob(now, now + 1000);
      const second = await store.claimJob(now, now + 1000);
      expect([first?.payload.n, second?.payload.n]).toEqual([1, 3]);
      expect(await store.claimJob(now, now + 1000)).toBeUndefined();
      await store.completeJob(first as Job);
      expect((await store.claimJob(now, now + 1000))?.payload.n).toBe(2);
    });

    it('a job waiting for a retry holds its lane; a buried job does not', async () => {
      const store = await fresh();
      await store.enqueueJob({ kind: 'start_session', lane: 'run:1', payload: { n: 1 } });
      await store.enqueueJob({ kind: 'sync_message', lane: 'run:1', payload: { n: 2 } });
      const now = Date.now();
      const job = await store.claimJob(now, now + 1000);
      await store.retryJob(job as Job, now + 60_000, 'later', { failed: true });
      expect(await store.nextRunAt(now)).toBe(now + 60_000);
      expect(await store.claimJob(now, now + 1000)).toBeUndefined();
      expect(await store.claimJob(now + 59_000, now + 61_000)).toBeUndefined();
      const retried = await store.claimJob(now + 60_000, now + 61_000);
      expect(retried).toMatchObject({ attempts: 2, payload: { n: 1 } });
      await store.buryJob(retried as Job, 'gave up');
      expect((await store.claimJob(now, now + 1000))?.payload.n).toBe(2);
      expect((await store.countJobs()).dead).toBe(1);
      expect(await store.nextRunAt(now)).toBeUndefined();
    });

    it('a worker whose lease ran out cannot complete or retry the job another worker now holds', async () => {
      const store = await fresh();
      await store.enqueueJob({ kind: 'sync_message', lane: 'x', payload: {} });
      const now = Date.now();
      const first = (await store.claimJob(now, now + 100)) as Job;
      await store.releaseExpiredLeases(now + 200);
      const second = (await store.claimJob(now + 200, now + 100_000)) as Job;
      expect(second.attempts).toBe(2);
      await store.completeJob(first);
      await store.retryJob(first, now, 'stale worker', { failed: true });
      await store.buryJob(first, 'stale worker');
      expect(await store.countJobs()).toEqual({ queued: 0, running: 1, dead: 0 });
      await store.completeJob(second);
      expect(await store.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
    });

    it('hands out a job again once its lease ran out, not before', async () => {
      const store = await fresh();
      await store.enqueueJob({ kind: 'sync_message', lane: 'x', payload: {} });
      const now = Date.now();
      expect(await store.claimJob(now, now + 100)).toBeDefined();
      expect(await store.releaseExpiredLeases(now + 50)).toBe(0);
      expect(await store.claimJob(now + 50, now + 1000)).toBeUndefined();
      expect(await store.releaseExpiredLeases(now + 200)).toBe(1);
      expect((await store.claimJob(now + 200, now + 100_000))?.attempts).toBe(2);
    });

    it('queues at most one waiting job per dedupe key', async () => {
      const store = await fresh();
      const job = { kind: 'sync_message' as const, lane: 'slack:1', payload: {}, dedupeKey: 'sync:1' };
      await Promise.all([store.enqueueJob(job), store.enqueueJob(job), store.enqueueJob(job)]);
      expect((await store.countJobs()).queued).toBe(1);
      const now = Date.now();
      await store.claimJob(now, now + 1000);
      await store.enqueueJob(job);
      expect(await store.countJobs()).toEqual({ queued: 1, running: 1, dead: 0 });
      await store.openRun(newRun('r1'), [job, job]);
      expect(await store.countJobs()).toEqual({ queued: 1, running: 1, dead: 0 });
    });

    it('opens one run per incident and attempt, and its jobs only with it', async () => {
      const store = await fresh();
      const job = { kind: 'sync_message' as const, lane: 'slack:r1', payload: { runId: 'r1' } };
      expect(await store.openRun(newRun('r1'), [job])).toMatchObject({
        id: 'r1',
        state: 'awaiting_approval',
        incident,
      });
      expect(await store.openRun(newRun('r2'), [job])).toBeUndefined();
      expect((await store.countJobs()).queued).toBe(1);
      expect(await store.openRun(newRun('r3', 2), [])).toMatchObject({ attempt: 2 });
      expect((await store.runsForIncident('Q1')).map((r) => r.id)).toEqual(['r1', 'r3']);
      expect(await store.getRun('r2')).toBeUndefined();
    });

    it('transitions a run only from the expected state, atomically', async () => {
      const store = await fresh();
      await store.openRun(newRun('r1'), []);
      const job = { kind: 'start_session' as const, lane: 'run:r1', payload: { runId: 'r1' } };
      const [a, b] = await Promise.all([
        store.transitionRun('r1', ['awaiting_approval'], 'starting', { decidedBy: 'UA' }, [job]),
        store.transitionRun('r1', ['awaiting_approval'], 'starting', { decidedBy: 'UB' }, [job]),
      ]);
      expect([a?.decidedBy, b?.decidedBy].filter(Boolean)).toHaveLength(1);
      expect((await store.countJobs()).queued).toBe(1);
      expect(await store.transitionRun('r1', ['awaiting_approval'], 'skipped', {}, [])).toBeUndefined();
      expect((await store.getRun('r1'))?.state).toBe('starting');
    });

    it('a transition guarded by unset fields happens once', async () => {
      const store = await fresh();
      await store.openRun(newRun('r1'), []);
      const remind = () =>
        store.transitionRun(
          'r1',
          ['awaiting_approval'],
          'awaiting_approval',
          { remindedAt: 5 },
          [{ kind: 'thread_reply', lane: 'slack:r1', payload: { runId: 'r1' } }],
          ['remindedAt'],
        );
      expect(await remind()).toMatchObject({ remindedAt: 5, state: 'awaiting_approval' });
      expect(await remind()).toBeUndefined();
      expect((await store.countJobs()).queued).toBe(1);
    });

    it('keeps every run field, JSON ones included, through patches', async () => {
      const store = await fresh();
      const opened = await store.openRun(newRun('r1', 1, { state: 'starting', trigger: 'auto' }), []);
      expect(opened).toMatchObject({ state: 'starting', trigger: 'auto', pullRequests: [], result: null });
      await store.updateRun('r1', {
        slackTs: '1700000000.000100',
        createAttemptedAt: 1_700_000_000_001,
        devinSessionId: 'devin-abc',
        devinUrl: 'https://app.devin.ai/sessions/abc',
        evidence: { timeline: ['2024-01-01T00:00:00Z trigger'], notes: ['no Slack history'] },
      });
      const updated = await store.transitionRun(
        'r1',
        ['starting'],
        'finished',
        {
          devinStatus: 'exit',
          devinStatusDetail: null,
          sessionStartedAt: 1_700_000_000_002,
          pullRequests: ['https://github.com/acme/pm/pull/1'],
          result: { summary: 'ünïcode “quotes” <b>', action_items: [{ title: 'fix', owner: 'Ada' }] },
          incident: { ...incident, title: 'Renamed' },
        },
        [],
      );
      const reread = await store.getRun('r1');
      expect(reread).toEqual(updated);
      expect(reread).toMatchObject({
        state: 'finished',
        slackTs: '1700000000.000100',
        createAttemptedAt: 1_700_000_000_001,
        devinSessionId: 'devin-abc',
        sessionStartedAt: 1_700_000_000_002,
        pullRequests: ['https://github.com/acme/pm/pull/1'],
        result: { summary: 'ünïcode “quotes” <b>', action_items: [{ title: 'fix', owner: 'Ada' }] },
        evidence: { timeline: ['2024-01-01T00:00:00Z trigger'], notes: ['no Slack history'] },
        incident: { ...incident, title: 'Renamed' },
      });
      expect(typeof reread?.createdAt).toBe('number');
      expect(reread?.updatedAt).toBeGreaterThanOrEqual(reread?.createdAt ?? 0);
    });

    it('keeps a run’s prompt secret, and sets one on a run that had none', async () => {
      const store = await fresh();
      expect((await store.openRun(newRun('r1'), []))?.promptSecret).toBe('prompt-secret-of-r1');
      await store.openRun({ ...newRun('r2', 2), promptSecret: null }, []);
      expect((await store.getRun('r2'))?.promptSecret).toBeNull();
      await store.updateRun('r2', { promptSecret: 'made-on-first-prompt' });
      expect((await store.getRun('r2'))?.promptSecret).toBe('made-on-first-prompt');
      expect((await store.getRun('r1'))?.promptSecret).toBe('prompt-secret-of-r1');
    });

    it('finds runs by incident number, recency and state; keeps the latest incident', async () => {
      const store = await fresh();
      await store.openRun(newRun('r1'), []);
      await store.openRun(newRun('r2', 2, { state: 'starting' }), []);
      const other = anIncident({ id: 'Q2', number: 8 });
      await store.openRun({ ...newRun('r3'), incidentId: 'Q2', incident: other, devinTag: 'pm-run-r3' }, []);
      expect((await store.runsForIncidentNumber(7)).map((r) => r.id)).toEqual(['r1', 'r2']);
      expect((await store.runsInStates(['starting', 'started'], 10)).map((r) => r.id)).toEqual(['r2']);
      expect((await store.recentRuns(2)).map((r) => r.id)).toHaveLength(2);
      expect((await store.recentRuns(10)).map((r) => r.id).sort()).toEqual(['r1', 'r2', 'r3']);

      expect(await store.getIncident('Q1')).toBeUndefined();
      await store.saveIncident(incident);
      await store.saveIncident({ ...incident, status: 'acknowledged' });
      expect(await store.getIncident('Q1')).toEqual({ ...incident, status: 'acknowledged' });
    });

    it('tells listeners in this process when jobs may have become runnable', async () => {
      const store = await fresh();
      let calls = 0;
      store.onJobsQueued(() => calls++);
      await store.enqueueJob({ kind: 'sync_message', lane: 'a', payload: {} });
      const afterEnqueue = calls;
      expect(afterEnqueue).toBeGreaterThan(0);
      const now = Date.now();
      await store.completeJob((await store.claimJob(now, now + 1000)) as Job);
      expect(calls).toBeGreaterThan(afterEnqueue);
    });

    it('ping fails once the store is closed', async () => {
      const store = await fresh();
      await expect(store.ping()).resolves.toBeUndefined();
      await store.close();
      await expect(store.ping()).rejects.toThrow();
      await expect(store.recordEvent(event('late'), [])).rejects.toThrow();
    });

    it('counts failed tries, not planned returns, as a job’s failures (the backoff’s exponent)', async () => {
      const store = await fresh();
      await store.enqueueJob({ kind: 'start_session', lane: 'run:1', payload: {} });
      const now = Date.now();
      let job = (await store.claimJob(now, now + 1000)) as Job;
      expect(job).toMatchObject({ attempts: 1, failures: 0 });
      await store.retryJob(job, now, 'planned look', { failed: false });
      job = (await store.claimJob(now, now + 1000)) as Job;
      await store.retryJob(job, now, 'Devin 503', { failed: true });
      job = (await store.claimJob(now, now + 1000)) as Job;
      expect(job).toMatchObject({ attempts: 3, failures: 1 });
    });

    it('counts the events it keeps', async () => {
      const store = await fresh();
      expect(await store.countEvents()).toBe(0);
      await store.recordEvent(event('e1'), []);
      await store.recordEvent(event('e1'), []);
      await store.recordEvent(event('e2'), []);
      expect(await store.countEvents()).toBe(2);
    });

    it('lists jobs as the queue holds them: state, attempts, failures, last error, when due; oldest first', async () => {
      const store = await fresh();
      expect(await store.listJobs()).toEqual([]);
      const before = Date.now();
      await store.enqueueJob({ kind: 'start_session', lane: 'run:1', payload: { runId: '1' } });
      await store.enqueueJob({ kind: 'sync_message', lane: 'run:2', payload: { runId: '2' } });
      await store.enqueueJob({
        kind: 'thread_reply',
        lane: 'run:3',
        payload: { runId: '3' },
        runAt: before + 5_000,
      });
      const now = Date.now();
      const a = (await store.claimJob(now, now + 1000)) as Job;
      await store.retryJob(a, now + 60_000, 'Devin answered 503', { failed: true });
      const b = (await store.claimJob(now, now + 1000)) as Job;
      await store.buryJob(b, 'invalid_blocks');

      const jobs = await store.listJobs();
      expect(jobs).toEqual([
        {
          id: a.id,
          kind: 'start_session',
          lane: 'run:1',
          payload: { runId: '1' },
          state: 'queued',
          attempts: 1,
          failures: 1,
          lastError: 'Devin answered 503',
          runAt: now + 60_000,
          createdAt: expect.any(Number),
        },
        {
          id: b.id,
          kind: 'sync_message',
          lane: 'run:2',
          payload: { runId: '2' },
          state: 'dead',
          attempts: 1,
          failures: 0,
          lastError: 'invalid_blocks',
          runAt: expect.any(Number),
          createdAt: expect.any(Number),
        },
        expect.objectContaining({
          kind: 'thread_reply',
          state: 'queued',
          attempts: 0,
          lastError: null,
          runAt: before + 5_000,
        }),
      ]);
      for (const job of jobs) {
        expect(job.createdAt).toBeGreaterThanOrEqual(before);
        expect(job.createdAt).toBeLessThanOrEqual(Date.now());
      }
      expect((await store.listJobs({ state: 'dead' })).map((j) => j.id)).toEqual([b.id]);
      expect((await store.listJobs({ state: 'queued', limit: 1 })).map((j) => j.id)).toEqual([a.id]);
      expect(await store.listJobs({ state: 'running' })).toEqual([]);
      await store.claimJob(before + 6_000, before + 9_000);
      expect((await store.listJobs({ state: 'running' })).map((j) => j.kind)).toEqual(['thread_reply']);
      await expect(store.listJobs({ limit: 0 })).rejects.toThrow('limit must be a positive integer, not 0');
    });

    it('renews the leases of jobs still held, not of one another worker took over', async () => {
      const store = await fresh();
      await store.enqueueJob({ kind: 'sync_message', lane: 'a', payload: {} });
      await store.enqueueJob({ kind: 'sync_message', lane: 'b', payload: {} });
      const now = Date.now();
      const a = (await store.claimJob(now, now + 100)) as Job;
      const b = (await store.claimJob(now, now + 100)) as Job;
      expect(await store.renewJobLeases([a, b], now + 1000)).toEqual([
        { id: a.id, attempts: a.attempts },
        { id: b.id, attempts: b.attempts },
      ]);
      // Renewed: neither lease runs out at its first deadline.
      expect(await store.releaseExpiredLeases(now + 500)).toBe(0);
      // b's worker stops renewing; once b is released and claimed again, the old lease renews nothing.
      expect(await store.releaseExpiredLeases(now + 1500)).toBe(2);
      const b2 = (await store.claimJob(now + 1500, now + 5000)) as Job;
      const a2 = (await store.claimJob(now + 1500, now + 5000)) as Job;
      expect([a2.attempts, b2.attempts]).toEqual([2, 2]);
      expect(await store.renewJobLeases([a, b], now + 9000)).toEqual([]);
      expect(await store.renewJobLeases([], now + 9000)).toEqual([]);
      await store.completeJob(a2);
      expect(await store.renewJobLeases([a2, b2], now + 9000)).toEqual([{ id: b2.id, attempts: 2 }]);
      expect(await store.releaseExpiredLeases(now + 8000)).toBe(0);
    });

    it('paces a channel to one call per interval: reserved slots in order, kept by whoever comes back', async () => {
      const store = await fresh();
      const take = (channel: string, key: string, now: number) =>
        store.takeChannelSlot(channel, key, now, 1000);
      const t = 1_700_000_000_000;
      expect(await take('C1', 'j1', t)).toBe(t);
      expect(await take('C1', 'j2', t)).toBe(t + 1000);
      expect(await take('C1', 'j3', t + 10)).toBe(t + 2000);
      expect(await take('C2', 'j4', t)).toBe(t);
      // Early: j2 keeps its slot, j3 its own behind it.
      expect(await take('C1', 'j2', t + 500)).toBe(t + 1000);
      expect(await take('C1', 'j2', t + 1000)).toBe(t + 1000);
      expect(await take('C1', 'j3', t + 2000)).toBe(t + 2000);
      expect(await take('C1', 'j5', t + 2000)).toBe(t + 3000);
      // A used slot is gone: the same key asking again lines up anew.
      expect(await take('C1', 'j2', t + 2000)).toBe(t + 4000);
    });

    it('never lets late reservations go in a burst; a block holds everyone back, reserved or not', async () => {
      const store = await fresh();
      const take = (key: string, now: number) => store.takeChannelSlot('C1', key, now, 1000);
      expect(await take('j1', 0)).toBe(0);
      expect(await take('j2', 0)).toBe(1000);
      expect(await take('j3', 0)).toBe(2000);
      // A busy moment: both come back late, at once; the second waits an interval after the first.
      expect(await take('j2', 5000)).toBe(5000);
      expect(await take('j3', 5000)).toBe(6000);
      expect(await take('j4', 5000)).toBe(6000);
      expect(await take('j3', 6000)).toBe(6000);
      expect(await take('j4', 6000)).toBe(7000);
      // Slack said 429 with Retry-After 30 s: j4's reservation waits too, and so does a newcomer.
      await store.blockChannel('C1', 36_000);
      await store.blockChannel('C1', 20_000);
      expect(await take('j4', 7000)).toBe(36_000);
      expect(await take('j5', 7000)).toBe(36_000);
      expect(await take('j4', 36_000)).toBe(36_000);
      expect(await take('j5', 36_000)).toBe(37_000);
      // A block on a channel never used before holds its first call.
      await store.blockChannel('C9', 50_000);
      expect(await store.takeChannelSlot('C9', 'k1', 40_000, 1000)).toBe(50_000);
    });

    it('holds a named lease for one owner at a time until it runs out or is released', async () => {
      const store = await fresh();
      const results = await Promise.all([
        store.tryLease('follow', 'A', 1000, 2000),
        store.tryLease('follow', 'B', 1000, 2000),
      ]);
      expect(results.filter(Boolean)).toHaveLength(1);
      const [holder, other] = results[0] ? ['A', 'B'] : ['B', 'A'];
      // The holder renews; the other cannot take it before it runs out.
      expect(await store.tryLease('follow', holder as string, 1500, 3000)).toBe(true);
      expect(await store.tryLease('follow', other as string, 2500, 4000)).toBe(false);
      expect(await store.tryLease('retention', other as string, 2500, 4000)).toBe(true);
      expect(await store.tryLease('follow', other as string, 3000, 4000)).toBe(true);
      expect(await store.tryLease('follow', holder as string, 3500, 5000)).toBe(false);
      // Released: taken at once; a release by a non-holder changes nothing.
      await store.releaseLease('follow', holder as string);
      expect(await store.tryLease('follow', holder as string, 3500, 5000)).toBe(false);
      await store.releaseLease('follow', other as string);
      expect(await store.tryLease('follow', holder as string, 3500, 5000)).toBe(true);
    });

    it('takes a lease whose times carry a fraction of a millisecond (a schedule computes them)', async () => {
      const store = await fresh();
      expect(await store.tryLease('follow', 'A', 1000.4, 1899.7)).toBe(true);
      expect(await store.tryLease('follow', 'B', 1800.5, 2500.5)).toBe(false);
      expect(await store.tryLease('follow', 'B', 1900, 2500.5)).toBe(true);
    });

    it('lists the newest runs of one channel, or of all', async () => {
      const store = await fresh();
      await store.openRun(newRun('r1', 1, { channel: 'CA' }), []);
      await store.openRun({ ...newRun('r2', 1, { channel: 'CB' }), incidentId: 'Q2' }, []);
      expect((await store.recentRuns(10, { channel: 'CA' })).map((r) => r.id)).toEqual(['r1']);
      expect((await store.recentRuns(10, { channel: 'CZ' })).map((r) => r.id)).toEqual([]);
      expect((await store.recentRuns(10)).map((r) => r.id).sort()).toEqual(['r1', 'r2']);
    });

    it('purges old events, dead jobs, orphan incidents and old runs’ evidence; keeps runs', async () => {
      const store = await fresh();
      await store.recordEvent({ ...event('old'), receivedAt: 1000 }, []);
      await store.recordEvent({ ...event('new'), receivedAt: Date.now() + 60_000 }, []);
      await store.saveIncident({ ...incident, id: 'QORPHAN' });
      await store.openRun(newRun('r-old'), []);
      await store.updateRun('r-old', { evidence: { timeline: ['10:00 paged'], notes: [] } });
      await store.enqueueJob({ kind: 'sync_message', lane: 'l', payload: {} });
      const now = Date.now();
      await store.buryJob((await store.claimJob(now, now + 1000)) as Job, 'gave up');

      const cutoff = Date.now() + 1000;
      expect(await store.purgeBefore(cutoff)).toEqual({ events: 1, jobs: 1, incidents: 1, evidence: 1 });
      expect(await store.getEvent('old')).toBeUndefined();
      expect(await store.getEvent('new')).toBeDefined();
      expect(await store.getIncident('QORPHAN')).toBeUndefined();
      expect((await store.getRun('r-old'))?.evidence).toBeNull();
      expect((await store.getRun('r-old'))?.state).toBe(newRun('r-old').state);
      expect(await store.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
      expect(await store.purgeBefore(cutoff)).toEqual({ events: 0, jobs: 0, incidents: 0, evidence: 0 });
    });

    it('revives dead jobs (one, or all) as due with their failures forgotten, and discards one', async () => {
      const store = await fresh();
      const dead: Job[] = [];
      for (const lane of ['a', 'b', 'c']) {
        await store.enqueueJob({ kind: 'sync_message', lane, payload: { runId: lane } });
        const now = Date.now();
        const job = (await store.claimJob(now, now + 60_000)) as Job;
        await store.retryJob(job, now - 1, 'first try failed', { failed: true });
        const again = (await store.claimJob(now, now + 60_000)) as Job;
        await store.buryJob(again, `gave up on ${again.lane}`);
        dead.push(again);
      }
      const [a, b, c] = dead as [Job, Job, Job];
      expect(await store.getJob(a.id)).toMatchObject({
        id: a.id,
        kind: 'sync_message',
        state: 'dead',
        attempts: 2,
        failures: 1,
        lastError: 'gave up on a',
        payload: { runId: 'a' },
      });
      expect(await store.getJob(999_999)).toBeUndefined();

      const woken: string[] = [];
      store.onJobsQueued(() => woken.push('woken'));
      const before = Date.now();
      expect(await store.reviveDeadJobs([a.id, 999_999])).toEqual([a.id]);
      expect(woken.length).toBeGreaterThan(0);
      const revived = await store.getJob(a.id);
      expect(revived).toMatchObject({ state: 'queued', failures: 0, lastError: 'gave up on a' });
      expect(revived?.runAt).toBeGreaterThanOrEqual(before - 5);
      // A job that is not dead is left alone.
      expect(await store.reviveDeadJobs([a.id])).toEqual([]);
      // It runs again, and completes.
      const claimed = (await store.claimJob(Date.now(), Date.now() + 60_000)) as Job;
      expect(claimed).toMatchObject({ id: a.id, failures: 0, attempts: 3 });
      await store.completeJob(claimed);
      expect(await store.getJob(a.id)).toBeUndefined();

      expect(await store.discardDeadJob(b.id)).toBe(true);
      expect(await store.discardDeadJob(b.id)).toBe(false);
      expect(await store.getJob(b.id)).toBeUndefined();
      expect(await store.reviveDeadJobs('all')).toEqual([c.id]);
      expect(await store.countJobs()).toEqual({ queued: 1, running: 0, dead: 0 });
      expect(await store.discardDeadJob(c.id)).toBe(false);
    });

    it('the session gate: concurrent claims take exactly the day’s budget; the rest are held, the next day is new', async () => {
      const store = await fresh();
      const budget = gate({ budget: { sessions: 3 } });
      const ids = Array.from({ length: 10 }, (_, i) => `b${i}`);
      const opened = await Promise.all(ids.map((id) => store.openGatedRun(gatedRun(id), budget, steps(id))));
      const states = opened.map((r) => r?.state);
      expect(states.filter((s) => s === 'starting')).toHaveLength(3);
      expect(states.filter((s) => s === 'awaiting_approval')).toHaveLength(7);
      for (const r of opened) {
        if (r?.state === 'starting')
          expect(r).toMatchObject({ slotDay: DAY, budgetHold: null, queuedAt: null });
        else expect(r).toMatchObject({ slotDay: null, budgetHold: 'daily_sessions' });
      }
      expect(await store.sessionUse(DAY, LIVE, 'queued')).toEqual({
        sessions: 3,
        acus: 0,
        live: 3,
        queued: 0,
      });
      // Each run's jobs only with the step taken: three starts, seven messages.
      expect((await store.listJobs()).map((j) => j.kind).sort()).toEqual(
        [...Array(3).fill('start_session'), ...Array(7).fill('sync_message')].sort(),
      );
      // Opening the same incident and attempt again changes nothing.
      expect(await store.openGatedRun(gatedRun('b0'), budget, steps('b0'))).toBeUndefined();
      // A start that failed spent nothing; a new day has a budget of its own.
      const admitted = opened.filter((r) => r?.state === 'starting').map((r) => r?.id as string);
      await store.transitionRun(admitted[0] as string, ['starting'], 'start_failed', {}, []);
      expect((await store.sessionUse(DAY, LIVE, 'queued')).sessions).toBe(2);
      expect((await store.openGatedRun(gatedRun('c1'), budget, steps('c1')))?.state).toBe('starting');
      expect((await store.openGatedRun(gatedRun('c2'), budget, steps('c2')))?.state).toBe(
        'awaiting_approval',
      );
      const tomorrow = gate({ day: DAY + 1, budget: { sessions: 3 } });
      expect(await store.openGatedRun(gatedRun('d1'), tomorrow, steps('d1'))).toMatchObject({
        state: 'starting',
        slotDay: DAY + 1,
      });
      // Without an over-budget step (an early start), a run over budget is not written at all.
      expect(await store.openGatedRun(gatedRun('c3'), budget, steps('c3', false))).toBeUndefined();
      expect(await store.getRun('c3')).toBeUndefined();
    });

    it('the session gate: the day’s ACUs, as last polled, hold further policy starts', async () => {
      const store = await fresh();
      const acus = gate({ budget: { acus: 10 } });
      const a = await store.openGatedRun(gatedRun('a1'), acus, steps('a1'));
      const b = await store.openGatedRun(gatedRun('a2'), acus, steps('a2'));
      expect([a?.state, b?.state]).toEqual(['starting', 'starting']);
      await store.updateRun('a1', { acusConsumed: 6 });
      await store.updateRun('a2', { acusConsumed: 3.5 });
      expect((await store.openGatedRun(gatedRun('a3'), acus, steps('a3')))?.state).toBe('starting');
      await store.updateRun('a3', { acusConsumed: 0.5 });
      expect((await store.sessionUse(DAY, LIVE, 'queued')).acus).toBeCloseTo(10);
      expect(await store.openGatedRun(gatedRun('a4'), acus, steps('a4'))).toMatchObject({
        state: 'awaiting_approval',
        budgetHold: 'daily_acus',
      });
      // A person's start (no budget in its gate) is not held, and spends a slot of the day.
      expect(await store.openGatedRun(gatedRun('a5'), gate(), steps('a5'))).toMatchObject({
        state: 'starting',
        slotDay: DAY,
      });
    });

    it('the session gate: never more live runs than the cap, however many start or are admitted at once; oldest first', async () => {
      const store = await fresh();
      const capped = gate({ maxLive: 2 });
      const ids = Array.from({ length: 8 }, (_, i) => `q${i}`);
      const opened = [];
      // Opened concurrently, in two waves so that the queue's order is known for the second.
      opened.push(
        ...(await Promise.all(
          ids.slice(0, 4).map((id) => store.openGatedRun(gatedRun(id), capped, steps(id))),
        )),
      );
      for (const id of ids.slice(4)) opened.push(await store.openGatedRun(gatedRun(id), capped, steps(id)));
      expect(opened.filter((r) => r?.state === 'starting')).toHaveLength(2);
      expect(opened.filter((r) => r?.state === 'queued')).toHaveLength(6);
      for (const r of opened.filter((r) => r?.state === 'queued')) {
        expect(r?.queuedAt).toEqual(expect.any(Number));
        expect(r?.slotDay).toBe(DAY);
      }
      expect(await store.sessionUse(DAY, LIVE, 'queued')).toMatchObject({ live: 2, queued: 6, sessions: 8 });
      // A gated transition (a person's Approve) waits too while the cap is reached.
      await store.openRun({ ...gatedRun('p1'), state: 'awaiting_approval' }, []);
      expect(
        await store.transitionGatedRun('p1', ['awaiting_approval'], capped, steps('p1'), { decidedBy: 'U1' }),
      ).toMatchObject({ state: 'queued', decidedBy: 'U1', slotDay: DAY });
      expect(
        await store.transitionGatedRun('p1', ['awaiting_approval'], capped, steps('p1'), {}),
      ).toBeUndefined();

      // Nothing ended: there is no room.
      const dequeueJobs = (id: string) => [
        { kind: 'start_session' as const, lane: `run:${id}`, payload: { runId: id } },
      ];
      expect(await store.admitQueued('queued', 'starting', capped, dequeueJobs)).toEqual([]);
      // Both live runs end: many admissions at once (replicas racing) let exactly two start, the oldest.
      const live = opened.filter((r) => r?.state === 'starting').map((r) => r?.id as string);
      for (const id of live) await store.transitionRun(id, ['starting'], 'finished', {}, []);
      const waitingOldestFirst = (await store.runsInStates(['queued'], 100))
        .sort((x, y) => (x.queuedAt as number) - (y.queuedAt as number) || x.createdAt - y.createdAt)
        .map((r) => r.id);
      const rounds = await Promise.all(
        Array.from({ length: 5 }, () => store.admitQueued('queued', 'starting', capped, dequeueJobs)),
      );
      const admitted = rounds.flat().map((r) => r.id);
      expect(admitted).toHaveLength(2);
      expect(new Set(admitted)).toEqual(new Set(waitingOldestFirst.slice(0, 2)));
      expect((await store.runsInStates(LIVE, 100)).length).toBe(2);
      // A start while runs wait goes behind them, even with room (here: none).
      expect((await store.openGatedRun(gatedRun('late'), capped, steps('late')))?.state).toBe('queued');
      // Without a cap, every waiting run starts.
      const all = await store.admitQueued('queued', 'starting', gate(), dequeueJobs);
      expect(all).toHaveLength(6);
      expect(await store.sessionUse(DAY, LIVE, 'queued')).toMatchObject({ live: 8, queued: 0 });
    });

    it('sums up the shared state for metrics: jobs, the oldest waiting one, runs by state, ACUs', async () => {
      const store = await fresh();
      expect(await store.stats()).toEqual({
        jobs: { queued: 0, running: 0, dead: 0 },
        oldestQueuedJobAt: null,
        runs: {},
        acusConsumed: 0,
      });
      const before = Date.now();
      await store.enqueueJob({ kind: 'sync_message', lane: 'a', payload: {} });
      const queuedAt = Date.now();
      await store.enqueueJob({ kind: 'sync_message', lane: 'b', payload: {}, runAt: Date.now() + 60_000 });
      await store.enqueueJob({ kind: 'sync_message', lane: 'c', payload: {} });
      await store.openRun(newRun('r1', 1, { state: 'starting' }), []);
      await store.openRun(newRun('r2', 2, { state: 'starting' }), []);
      await store.openRun(newRun('r3', 3), []);
      await store.updateRun('r1', { acusConsumed: 1.5 });
      await store.updateRun('r2', { acusConsumed: 2.25 });
      const now = Date.now();
      // The first claim takes lane a's job (due first); bury it, then take lane c's and keep it running.
      await store.buryJob((await store.claimJob(now, now + 60_000)) as Job, 'gave up');
      await store.claimJob(now, now + 60_000);

      const stats = await store.stats();
      expect(stats.jobs).toEqual({ queued: 1, running: 1, dead: 1 });
      // Lane b's job waits (not due for a minute): it is the oldest still queued.
      expect(stats.oldestQueuedJobAt).toBeGreaterThanOrEqual(before);
      expect(stats.oldestQueuedJobAt).toBeLessThanOrEqual(Date.now());
      expect(stats.oldestQueuedJobAt).toBeGreaterThanOrEqual(queuedAt - 5);
      expect(stats.runs).toEqual({ starting: 2, [newRun('r3').state]: 1 });
      expect(stats.acusConsumed).toBeCloseTo(3.75);
      expect((await store.getRun('r1'))?.acusConsumed).toBe(1.5);
      expect((await store.getRun('r3'))?.acusConsumed).toBeNull();
    });

    it('places each approval request once: a card while fewer than `after` earlier ones of its channel wait, else the digest', async () => {
      const store = await fresh();
      const redraw = syncDigestJob('C1');
      for (const i of [1, 2, 3, 4]) await store.openRun(newRun(`r${i}`, i), []);
      await store.openRun(newRun('elsewhere', 9, { channel: 'C2' }), []);
      // Placed out of order (jobs run in any order): what counts is which requests were opened earlier.
      expect(await store.placeApprovalRequest('r4', bound(2), redraw)).toBe('digest');
      expect(await store.placeApprovalRequest('r1', bound(2), redraw)).toBe('card');
      expect(await store.placeApprovalRequest('r2', bound(2), redraw)).toBe('card');
      expect(await store.placeApprovalRequest('elsewhere', bound(2), redraw)).toBe('card');
      expect(await store.placeApprovalRequest('nope', bound(2), redraw)).toBeUndefined();
      // Two earlier ones decided: r3 would get a card now, but r4's placement stands.
      await store.transitionRun('r1', ['awaiting_approval'], 'skipped', {}, []);
      await store.transitionRun('r2', ['awaiting_approval'], 'skipped', {}, []);
      expect(await store.placeApprovalRequest('r4', bound(2), redraw)).toBe('digest');
      expect(await store.placeApprovalRequest('r3', bound(2), redraw)).toBe('card');
      expect(await store.approvalPlacement('r1')).toEqual({
        shownIn: 'card',
        threadTs: null,
        kind: 'request',
      });
      expect(await store.approvalPlacement('r4')).toEqual({
        shownIn: 'digest',
        threadTs: null,
        kind: 'request',
      });
      expect(await store.approvalPlacement('nope')).toBeUndefined();
      // The digest thread a request approved there reports in is set once.
      await store.setApprovalThread('r4', '1700000000.000009');
      await store.setApprovalThread('r4', '1700000000.000042');
      expect(await store.approvalPlacement('r4')).toEqual({
        shownIn: 'digest',
        threadTs: '1700000000.000009',
        kind: 'request',
      });
      // The fold marked the channel's digest changed and queued one redraw (deduplicated while it waits).
      expect(await store.getDigest('C1')).toEqual({
        channel: 'C1',
        ts: null,
        open: false,
        version: 1,
        drawnVersion: 0,
        drawnAt: 0,
      });
      expect(await store.getDigest('C2')).toBeUndefined();
      const jobs = await store.listJobs();
      expect(jobs.map((j) => [j.kind, j.lane, j.payload])).toEqual([
        ['sync_digest', 'digest:C1', { channel: 'C1' }],
      ]);
    });

    it('places requests racing on several connections once each', async () => {
      const db = await newDatabase();
      const [a, b] = [await db.open(), await db.open().catch(() => undefined)];
      const stores = b ? [a, b] : [a];
      for (let i = 1; i <= 8; i++) await a.openRun(newRun(`r${i}`, i), []);
      const ids = Array.from({ length: 8 }, (_, i) => `r${i + 1}`);
      const placed = await Promise.all(
        [...ids, ...ids].map((id, i) =>
          (stores[i % stores.length] as Store).placeApprovalRequest(id, bound(3), syncDigestJob('C1')),
        ),
      );
      // Each run has one placement whichever call won: the first three by opening get cards.
      expect(placed.slice(0, 8)).toEqual(placed.slice(8));
      expect(placed.slice(0, 8)).toEqual(['card', 'card', 'card', ...Array(5).fill('digest')]);
      expect((await a.getDigest('C1'))?.version).toBe(5);
      expect((await a.listJobs()).filter((j) => j.kind === 'sync_digest')).toHaveLength(1);
      for (const s of stores) await s.close();
    });

    it('places runs started by policy once: their own message while fewer than `after` are open, else the digest thread', async () => {
      const store = await fresh();
      const redraw = syncDigestJob('C1');
      const started = (id: string, i: number) =>
        store.openRun(newRun(id, i, { trigger: 'auto', state: 'starting' }), []);
      for (const i of [1, 2, 3]) await started(`s${i}`, i);
      await store.openRun(newRun('elsewhere', 9, { channel: 'C2', trigger: 'auto', state: 'starting' }), []);
      // Two open run messages in C1 (after = 2): the third folds; no digest yet, so no thread either.
      expect(await store.placeStartedRun('s1', bound(2), redraw)).toEqual({
        shownIn: 'card',
        threadTs: null,
      });
      expect(await store.placeStartedRun('s2', bound(2), redraw)).toEqual({
        shownIn: 'card',
        threadTs: null,
      });
      expect(await store.placeStartedRun('s3', bound(2), redraw)).toEqual({
        shownIn: 'digest',
        threadTs: null,
      });
      expect(await store.placeStartedRun('elsewhere', bound(2), redraw)).toEqual({
        shownIn: 'card',
        threadTs: null,
      });
      expect(await store.placeStartedRun('nope', bound(2), redraw)).toBeUndefined();
      expect(await store.approvalPlacement('s1')).toEqual({ shownIn: 'card', threadTs: null, kind: 'run' });
      // The fold marked the digest changed and queued its redraw.
      expect(await store.getDigest('C1')).toMatchObject({ ts: null, version: 1, drawnVersion: 0 });
      expect((await store.listJobs()).map((j) => j.kind)).toEqual(['sync_digest']);
      // Run messages count as open only while recent: placed before `since`, they no longer do, and an
      // approval request gets a card again.
      await store.openRun(newRun('q1', 4), []);
      expect(await store.placeApprovalRequest('q1', bound(2, Date.now() + 60_000), redraw)).toBe('card');
      // Recent ones count for requests too: one waiting request and two run messages make three.
      await store.openRun(newRun('q2', 5), []);
      expect(await store.placeApprovalRequest('q2', bound(3), redraw)).toBe('digest');
      // Waiting requests count for started runs: two wait, after = 2.
      await started('s4', 6);
      expect(await store.placeStartedRun('s4', bound(2, Date.now() + 60_000), redraw)).toEqual({
        shownIn: 'digest',
        threadTs: null,
      });
      // The decision stands when asked again, whatever changed since.
      expect(await store.placeStartedRun('s1', bound(100), redraw)).toEqual({
        shownIn: 'card',
        threadTs: null,
      });
    });

    it('gives folded started runs the digest thread once it is posted, and the next ones at once while it is live', async () => {
      const store = await fresh();
      const redraw = syncDigestJob('C1');
      for (const i of [1, 2, 3, 4])
        await store.openRun(newRun(`s${i}`, i, { trigger: 'auto', state: 'starting' }), []);
      await store.placeStartedRun('s1', bound(1), redraw);
      expect((await store.placeStartedRun('s2', bound(1), redraw))?.shownIn).toBe('digest');
      let listed = await store.startedInDigest('C1', { threadTs: null, since: 0, limit: 10 });
      expect(listed).toMatchObject({ total: 1, pending: 1, recentInThread: 0 });
      expect(listed.runs.map((r) => r.id)).toEqual(['s2']);
      // Drawn without adopting (a closed digest left where it was): still pending.
      const version = (await store.getDigest('C1'))?.version ?? 0;
      await store.digestDrawn('C1', { ts: '1700000000.000001', open: false, version, at: 1 });
      expect(await store.placeStartedRun('s2', bound(1), redraw)).toEqual({
        shownIn: 'digest',
        threadTs: null,
      });
      // Posted for it: adopted, in the same write; not a run whose message was posted in the channel meanwhile.
      await store.openRun(newRun('posted', 8, { trigger: 'auto', state: 'starting' }), []);
      await store.placeStartedRun('posted', bound(1), redraw);
      await store.updateRun('posted', { slackTs: '1700000000.000099' });
      await store.digestDrawn('C1', { ts: '1700000000.000002', open: false, version, at: 2, adopt: true });
      expect(await store.approvalPlacement('posted')).toEqual({
        shownIn: 'digest',
        threadTs: null,
        kind: 'run',
      });
      expect(await store.placeStartedRun('s2', bound(1), redraw)).toEqual({
        shownIn: 'digest',
        threadTs: '1700000000.000002',
      });
      // Closed for requests but holding a recent started run: live, so the next fold takes its thread now.
      expect(await store.placeStartedRun('s3', bound(1), redraw)).toEqual({
        shownIn: 'digest',
        threadTs: '1700000000.000002',
      });
      listed = await store.startedInDigest('C1', { threadTs: '1700000000.000002', since: 0, limit: 1 });
      // The run whose message went in the channel waits for no digest, and is not listed.
      expect(listed).toMatchObject({ total: 2, pending: 0, recentInThread: 2 });
      expect(listed.runs).toHaveLength(1);
      expect(
        await store.startedInDigest('C1', {
          threadTs: '1700000000.000002',
          since: Date.now() + 60_000,
          limit: 1,
        }),
      ).toMatchObject({ total: 2, recentInThread: 0 });
      // Once those are older than `since`, a closed digest is not live: the next fold (a request waits, so
      // it folds) waits for a new one.
      await store.openRun(newRun('q1', 5), []);
      expect(await store.placeStartedRun('s4', bound(1, Date.now() + 60_000), redraw)).toEqual({
        shownIn: 'digest',
        threadTs: null,
      });
      expect(await store.approvalPlacement('s3')).toEqual({
        shownIn: 'digest',
        threadTs: '1700000000.000002',
        kind: 'run',
      });
    });

    it('places started runs racing on several connections once each, within the bound', async () => {
      const db = await newDatabase();
      const [a, b] = [await db.open(), await db.open().catch(() => undefined)];
      const stores = b ? [a, b] : [a];
      const ids = Array.from({ length: 8 }, (_, i) => `s${i + 1}`);
      for (const [i, id] of ids.entries())
        await a.openRun(newRun(id, i + 1, { trigger: 'auto', state: 'starting' }), []);
      const placed = await Promise.all(
        [...ids, ...ids].map((id, i) =>
          (stores[i % stores.length] as Store).placeStartedRun(id, bound(3), syncDigestJob('C1')),
        ),
      );
      expect(placed.slice(0, 8)).toEqual(placed.slice(8));
      // Each run has one placement whichever call won, and three of the eight have a message of their own.
      expect(placed.slice(0, 8).filter((p) => p?.shownIn === 'card')).toHaveLength(3);
      expect(placed.slice(0, 8).filter((p) => p?.shownIn === 'digest')).toHaveLength(5);
      expect((await a.getDigest('C1'))?.version).toBe(5);
      for (const s of stores) await s.close();
    });

    it("marks a channel's digest changed only while it has one, and records what was drawn", async () => {
      const store = await fresh();
      const redraw = syncDigestJob('C1');
      expect(await store.touchDigest('C1', redraw)).toBe(false);
      for (const i of [1, 2]) await store.openRun(newRun(`r${i}`, i), []);
      await store.placeApprovalRequest('r1', bound(1), redraw);
      expect(await store.placeApprovalRequest('r2', bound(1), redraw)).toBe('digest');
      // Not drawn yet: a change still counts.
      expect(await store.touchDigest('C1', redraw)).toBe(true);
      expect((await store.getDigest('C1'))?.version).toBe(2);
      await store.digestDrawn('C1', { ts: '1700000000.000001', open: true, version: 2, at: 1234 });
      expect(await store.getDigest('C1')).toMatchObject({
        ts: '1700000000.000001',
        drawnVersion: 2,
        drawnAt: 1234,
      });
      // Posted: changes count.
      expect(await store.touchDigest('C1', redraw)).toBe(true);
      // A slow redraw of an older version cannot make the newer change look drawn.
      await store.digestDrawn('C1', { ts: '1700000000.000001', open: true, version: 1, at: 2000 });
      expect(await store.getDigest('C1')).toMatchObject({ version: 3, drawnVersion: 2, drawnAt: 2000 });
      // Closed (nothing left in it) and drawn: no digest to change until a request folds again; the
      // message is kept (the threads of requests approved from it are under it).
      await store.digestDrawn('C1', { ts: '1700000000.000001', open: false, version: 3, at: 3000 });
      expect(await store.touchDigest('C1', redraw)).toBe(false);
      expect(await store.getDigest('C1')).toMatchObject({
        ts: '1700000000.000001',
        open: false,
        version: 3,
        drawnVersion: 3,
      });
      // One redraw queued for all of it (deduplicated while it waits).
      expect((await store.listJobs()).map((j) => j.kind)).toEqual(['sync_digest']);
    });

    it('lists the requests waiting in a channel, newest first, paged, counted, up to an opening time', async () => {
      const store = await fresh();
      for (const i of [1, 2, 3, 4, 5]) await store.openRun(newRun(`r${i}`, i), []);
      await store.openRun(newRun('other-channel', 6, { channel: 'C2' }), []);
      await store.openRun(newRun('decided', 7), []);
      await store.transitionRun('decided', ['awaiting_approval'], 'skipped', {}, []);
      for (const id of ['r1', 'r2', 'r3', 'r4', 'r5'])
        await store.placeApprovalRequest(id, bound(3), syncDigestJob('C1'));

      const first = await store.waitingApprovals('C1', { limit: 2 });
      const r5 = (await store.getRun('r5')) as { createdAt: number };
      expect(first).toMatchObject({ total: 5, incidents: 5, inDigest: 2, newestOpenedAt: r5.createdAt });
      expect(first.runs.map((r) => r.id)).toEqual(['r5', 'r4']);
      expect((await store.waitingApprovals('C1', { limit: 2, offset: 4 })).runs.map((r) => r.id)).toEqual([
        'r1',
      ]);
      expect((await store.waitingApprovals('C1', { limit: 0 })).total).toBe(5);
      expect(await store.waitingApprovals('C3', { limit: 5 })).toEqual({
        total: 0,
        incidents: 0,
        inDigest: 0,
        held: 0,
        newestOpenedAt: null,
        runs: [],
      });
      // Up to an opening time: those opened at or before it (runs opened in one millisecond count alike).
      const r2 = (await store.getRun('r2')) as { createdAt: number };
      const all = await store.waitingApprovals('C1', { limit: 10 });
      const upTo = await store.waitingApprovals('C1', { limit: 10, openedUpTo: r2.createdAt });
      expect(upTo.runs.map((r) => r.id)).toEqual(
        all.runs.filter((r) => r.createdAt <= r2.createdAt).map((r) => r.id),
      );
      expect(upTo.runs.map((r) => r.id)).toContain('r2');
      expect(upTo.total).toBe(upTo.runs.length);
      expect(
        await store.waitingApprovals('C1', { limit: 10, openedUpTo: r2.createdAt - 100_000 }),
      ).toMatchObject({
        total: 0,
        runs: [],
      });
      // A storm group waiting for approval is one request for each of its incidents.
      const t = 1_700_000_000_000;
      await store.openOrJoinStorm(stormRun('g1', 'QG1', 'PSD'), [], stormJoin('PSD', t));
      await store.openOrJoinStorm(stormRun('g2', 'QG2', 'PSD'), [], stormJoin('PSD', t + 1000));
      await store.openOrJoinStorm(stormRun('g3', 'QG3', 'PSD'), [], stormJoin('PSD', t + 2000));
      expect(await store.waitingApprovals('C1', { limit: 1 })).toMatchObject({
        total: 6,
        incidents: 8,
        held: 0,
      });
      // A run that policy would have started, held by the day's budget: it waits too, and is counted as held.
      await store.openGatedRun(gatedRun('h1'), gate({ budget: { sessions: 0 } }), steps('h1'));
      expect(await store.waitingApprovals('C1', { limit: 1 })).toMatchObject({ total: 7, held: 1 });
    });

    it('groups the resolved incidents of one service within the window into one run, atomically', async () => {
      const store = await fresh();
      const t = 1_700_000_000_000;
      const first = await store.openOrJoinStorm(stormRun('g1', 'S1'), [redraw('g1')], stormJoin('PS1', t));
      expect(first).toMatchObject({ outcome: 'opened', run: { id: 'g1', state: 'awaiting_approval' } });
      // Within the window of the latest resolution: joins, queueing the step's jobs for the group's run.
      const second = await store.openOrJoinStorm(
        stormRun('x2', 'S2'),
        [redraw('x2')],
        stormJoin('PS1', t + 540_000),
      );
      expect(second).toMatchObject({
        outcome: 'joined',
        run: { id: 'g1' },
        from: 'awaiting_approval',
        members: 2,
      });
      expect(await store.getRun('x2')).toBeUndefined();
      // A chain: 15 minutes after the first, but within 10 of the second.
      const third = await store.openOrJoinStorm(stormRun('x3', 'S3'), [], stormJoin('PS1', t + 900_000));
      expect(third).toMatchObject({ outcome: 'joined', run: { id: 'g1' }, members: 3 });
      // Another service never joins; beyond the window opens a new group.
      const other = await store.openOrJoinStorm(stormRun('o1', 'S4', 'PS2'), [], stormJoin('PS2', t));
      expect(other).toMatchObject({ outcome: 'opened', run: { id: 'o1' } });
      const later = await store.openOrJoinStorm(stormRun('l1', 'S5'), [], stormJoin('PS1', t + 1_600_000));
      expect(later).toMatchObject({ outcome: 'opened', run: { id: 'l1' } });
      // The same incident again (a redelivery, a second resolve) changes nothing.
      expect(await store.openOrJoinStorm(stormRun('x9', 'S2'), [], stormJoin('PS1', t))).toBeUndefined();
      expect(await store.openOrJoinStorm(stormRun('x8', 'S1'), [], stormJoin('PS1', t))).toBeUndefined();
      const members = await store.stormMembers('g1');
      expect(members.map((m) => m.incident.id)).toEqual(['S1', 'S2', 'S3']);
      expect(members.map((m) => m.resolvedAt)).toEqual([t, t + 540_000, t + 900_000]);
      expect(members.every((m) => m.deliveredAt === null && m.runId === 'g1')).toBe(true);
      expect(await store.stormMembers('nope')).toEqual([]);
      // One waiting redraw for the group's message, however many joined.
      const jobs = await store.listJobs();
      expect(jobs.filter((j) => j.lane === 'slack:g1')).toHaveLength(1);
      expect(jobs.some((j) => j.lane.endsWith('x2'))).toBe(false);
    });

    it('joins a group only in the states the join declares, moving its run as the step says', async () => {
      const store = await fresh();
      const t = 1_700_000_000_000;
      await store.openOrJoinStorm(stormRun('g1', 'S1'), [], stormJoin('PS1', t));
      const starting = stormJoin('PS1', t, {
        steps: {
          awaiting_approval: {
            to: 'starting',
            patch: { decidedAt: 42 },
            jobs: (id) => [{ kind: 'start_session', lane: `run:${id}`, payload: { runId: id } }],
          },
        },
      });
      const joined = await store.openOrJoinStorm(stormRun('x2', 'S2'), [], starting);
      expect(joined).toMatchObject({
        outcome: 'joined',
        from: 'awaiting_approval',
        run: { state: 'starting', decidedAt: 42 },
      });
      expect((await store.listJobs()).map((j) => [j.kind, j.lane])).toEqual([['start_session', 'run:g1']]);
      // 'starting' is not among the default steps' states: the next incident opens a new group.
      const next = await store.openOrJoinStorm(stormRun('n1', 'S3'), [], stormJoin('PS1', t));
      expect(next).toMatchObject({ outcome: 'opened', run: { id: 'n1' } });
      await store.transitionRun('n1', ['awaiting_approval'], 'started', {}, []);
      const live = await store.openOrJoinStorm(stormRun('x4', 'S4'), [], stormJoin('PS1', t));
      expect(live).toMatchObject({ outcome: 'joined', run: { id: 'n1', state: 'started' }, from: 'started' });
      expect((await store.listJobs()).map((j) => j.kind).sort()).toEqual([
        'append_incidents',
        'start_session',
        'sync_message',
      ]);
      await store.markStormDelivered('n1', ['S4', 'S-unknown'], 1234);
      await store.markStormDelivered('n1', ['S4'], 9999);
      const members = await store.stormMembers('n1');
      expect(members.map((m) => [m.incident.id, m.deliveredAt])).toEqual([
        ['S3', null],
        ['S4', 1234],
      ]);
    });

    it('never opens two groups for one service, however many incidents join at once', async () => {
      const store = await fresh();
      const t = 1_700_000_000_000;
      const outcomes = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          store.openOrJoinStorm(
            stormRun(`c${i}`, `SC${i}`),
            [redraw(`c${i}`)],
            stormJoin('PS1', t + i * 1000),
          ),
        ),
      );
      const opened = outcomes.filter((o) => o?.outcome === 'opened');
      expect(opened).toHaveLength(1);
      const groupId = opened[0]?.run.id as string;
      expect(outcomes.filter((o) => o?.outcome === 'joined' && o.run.id === groupId)).toHaveLength(11);
      expect(await store.stormMembers(groupId)).toHaveLength(12);
      expect(await store.runsInStates(['awaiting_approval'], 100)).toHaveLength(1);
      // The same incident twice at once: one of the two joins.
      const twice = await Promise.all([
        store.openOrJoinStorm(stormRun('d1', 'SD'), [], stormJoin('PS1', t)),
        store.openOrJoinStorm(stormRun('d2', 'SD'), [], stormJoin('PS1', t)),
      ]);
      expect(twice.filter((o) => o !== undefined)).toHaveLength(1);
      expect(await store.stormMembers(groupId)).toHaveLength(13);
    });

    it('records which members a prompt carried and which are noted, per member, once', async () => {
      const store = await fresh();
      const t = 1_700_000_000_000;
      await store.openOrJoinStorm(stormRun('g1', 'S1'), [], stormJoin('PS1', t));
      for (const n of [2, 3])
        await store.openOrJoinStorm(stormRun(`x${n}`, `S${n}`), [], stormJoin('PS1', t));
      const fields = async () =>
        (await store.stormMembers('g1')).map((m) => [m.incident.id, m.inPromptAt, m.notedAt]);
      expect(await fields()).toEqual([
        ['S1', null, null],
        ['S2', null, null],
        ['S3', null, null],
      ]);
      await store.markStormInPrompt('g1', ['S2', 'S3'], 100);
      // A later attempt packs fewer: the others are no longer in its prompt.
      await store.markStormInPrompt('g1', ['S2', 'S-unknown'], 200);
      await store.markStormNoted('g1', 'S3', 300);
      await store.markStormNoted('g1', 'S3', 400);
      await store.markStormNoted('other', 'S1', 500);
      expect(await fields()).toEqual([
        ['S1', null, null],
        ['S2', 200, null],
        ['S3', null, 300],
      ]);
      await store.markStormInPrompt('g1', ['S2'], null);
      expect((await fields()).map((f) => f[1])).toEqual([null, null, null]);
    });

    it('moves members of a group into a new run and group in one transaction, once', async () => {
      const store = await fresh();
      const t = 1_700_000_000_000;
      await store.openOrJoinStorm(stormRun('g1', 'S1'), [], stormJoin('PS1', t));
      await store.transitionRun('g1', ['awaiting_approval'], 'started', {}, []);
      for (const n of [2, 3, 4]) {
        await store.openOrJoinStorm(stormRun(`x${n}`, `S${n}`), [], stormJoin('PS1', t + n * 1000));
      }
      await store.markStormDelivered('g1', ['S1', 'S2'], 50);
      await store.markStormNoted('g1', 'S1', 60);
      const move = (undeliveredOnly: boolean, fromJobs: NewJob[] = []) => ({
        fromRunId: 'g1',
        incidentIds: ['S2', 'S3', 'S4'],
        undeliveredOnly,
        fromJobs,
      });
      const opened = await store.moveStormMembers(
        { ...stormRun('n1', 'S3'), state: 'starting', trigger: 'auto' },
        [{ kind: 'start_session', lane: 'run:n1', payload: { runId: 'n1' } }],
        move(true, [redraw('g1')]),
      );
      expect(opened).toMatchObject({ id: 'n1', incidentId: 'S3', state: 'starting' });
      // Only the undelivered moved; the group left behind keeps what its session was told.
      expect((await store.stormMembers('g1')).map((m) => m.incident.id)).toEqual(['S1', 'S2']);
      const moved = await store.stormMembers('n1');
      expect(moved.map((m) => [m.incident.id, m.runId, m.deliveredAt])).toEqual([
        ['S3', 'n1', null],
        ['S4', 'n1', null],
      ]);
      // Its birth's jobs, and one redraw of the message left behind (the joins' one waits already).
      const jobs = (await store.listJobs()).map((j) => [j.kind, j.lane]);
      expect(jobs.filter(([, lane]) => lane === 'run:n1')).toEqual([['start_session', 'run:n1']]);
      expect(jobs.filter(([, lane]) => lane === 'slack:g1')).toEqual([['sync_message', 'slack:g1']]);
      // A repeat moves nothing and opens nothing.
      expect(
        await store.moveStormMembers({ ...stormRun('n2', 'S3'), state: 'starting' }, [], move(true)),
      ).toBeUndefined();
      expect(await store.getRun('n2')).toBeUndefined();
      // The new group is one of its own: the next incident of the service within its window may join it.
      await store.transitionRun('g1', ['started'], 'finished', {}, []);
      await store.transitionRun('n1', ['starting'], 'started', {}, []);
      const joined = await store.openOrJoinStorm(stormRun('x5', 'S5'), [], stormJoin('PS1', t + 5000));
      expect(joined).toMatchObject({ outcome: 'joined', run: { id: 'n1' }, members: 3 });

      // A whole group to a new attempt of its run's incident: everything moves, delivery and notes reset.
      const again = await store.moveStormMembers(
        { ...stormRun('g2', 'S1'), attempt: 2, state: 'starting', trigger: 'manual' },
        [],
        { fromRunId: 'g1', incidentIds: ['S1', 'S2'], undeliveredOnly: false, fromJobs: [] },
      );
      expect(again).toMatchObject({ id: 'g2', incidentId: 'S1', attempt: 2 });
      expect(await store.stormMembers('g1')).toEqual([]);
      expect((await store.stormMembers('g2')).map((m) => [m.incident.id, m.deliveredAt, m.notedAt])).toEqual([
        ['S1', null, null],
        ['S2', null, null],
      ]);
      // Its incident already has that attempt: nothing moves.
      await store.openOrJoinStorm(stormRun('g3', 'S9', 'PS3'), [], stormJoin('PS3', t));
      await store.openOrJoinStorm(stormRun('x10', 'S10', 'PS3'), [], stormJoin('PS3', t));
      expect(
        await store.moveStormMembers({ ...stormRun('g4', 'S1'), attempt: 2, state: 'starting' }, [], {
          fromRunId: 'g3',
          incidentIds: ['S10'],
          undeliveredOnly: false,
          fromJobs: [],
        }),
      ).toBeUndefined();
      expect((await store.stormMembers('g3')).map((m) => m.incident.id)).toEqual(['S10', 'S9'].sort());
    });

    it('a moved group whose birth starts a session passes the session gate', async () => {
      const store = await fresh();
      const t = 1_700_000_000_000;
      await store.openOrJoinStorm(stormRun('g1', 'S1'), [], stormJoin('PS1', t));
      for (const n of [2, 3])
        await store.openOrJoinStorm(stormRun(`x${n}`, `S${n}`), [], stormJoin('PS1', t));
      const moveOf = (id: string, g: SessionGate, overBudget = true) => ({
        fromRunId: 'g1',
        incidentIds: [id],
        undeliveredOnly: true,
        fromJobs: [],
        gate: { gate: g, open: steps(`n${id}`, overBudget) },
      });
      const born = (id: string) => ({
        ...stormRun(`n${id}`, id),
        state: 'starting' as const,
        trigger: 'auto' as const,
      });
      // The cap is reached (nothing live, but none may be): the new group waits for a slot.
      expect(await store.moveStormMembers(born('S2'), [], moveOf('S2', gate({ maxLive: 0 })))).toMatchObject({
        id: 'nS2',
        state: 'queued',
        slotDay: DAY,
      });
      // Over the day's budget with no step for it: nothing is opened, nothing moves.
      const spent = gate({ budget: { sessions: 0 } });
      expect(await store.moveStormMembers(born('S3'), [], moveOf('S3', spent, false))).toBeUndefined();
      expect(await store.getRun('nS3')).toBeUndefined();
      expect((await store.stormMembers('g1')).map((m) => m.incident.id)).toEqual(['S1', 'S3']);
      // With a step for it: the new group asks first, saying why.
      expect(await store.moveStormMembers(born('S3'), [], moveOf('S3', spent))).toMatchObject({
        state: 'awaiting_approval',
        budgetHold: 'daily_sessions',
      });
      expect((await store.stormMembers('nS3')).map((m) => m.incident.id)).toEqual(['S3']);
    });

    it('moves members once when two moves of one group race', async () => {
      const store = await fresh();
      const t = 1_700_000_000_000;
      await store.openOrJoinStorm(stormRun('g1', 'S1'), [], stormJoin('PS1', t));
      await store.openOrJoinStorm(stormRun('x2', 'S2'), [], stormJoin('PS1', t));
      const results = await Promise.all(
        ['m1', 'm2', 'm3'].map((id) =>
          store.moveStormMembers(
            { ...stormRun(id, 'S2'), attempt: Number(id.slice(1)), state: 'starting' },
            [],
            {
              fromRunId: 'g1',
              incidentIds: ['S2'],
              undeliveredOnly: true,
              fromJobs: [],
            },
          ),
        ),
      );
      expect(results.filter((r) => r !== undefined)).toHaveLength(1);
      expect(await store.stormMembers('g1')).toHaveLength(1);
    });
  });
}
