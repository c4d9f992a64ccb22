import { mkdtempSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { processEventJob } from '../../src/postmortems/jobs.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { Job, NewRun } from '../../src/store/store.js';
import { anIncident, aRun } from '../helpers/builders.js';

const stores: SqliteStore[] = [];
function open(path = join(mkdtempSync(join(tmpdir(), 'store-')), 'x', 'bot.db')) {
  const store = new SqliteStore({ path });
  stores.push(store);
  return { store, path };
}
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close().catch(() => {});
});

const incident = anIncident();

const newRun = (id: string, attempt = 1): NewRun => {
  const { createdAt: _c, updatedAt: _u, ...run } = aRun({ id, attempt, incident });
  return run;
};

const event = (id: string, incidentId: string | null = 'Q1') => ({
  id,
  type: 'incident.resolved',
  incidentId,
  occurredAt: '2024-01-01T00:00:00Z',
  receivedAt: 1,
  payload: '{}',
});

describe('SqliteStore', () => {
  it('records an event once with the jobs it is given, and survives reopening', async () => {
    const { store, path } = open();
    const results = await Promise.all([
      store.recordEvent(event('e1'), [processEventJob('e1', 'Q1')]),
      store.recordEvent(event('e1'), [processEventJob('e1', 'Q1')]),
      store.recordEvent(event('e2'), [processEventJob('e2', 'Q1')]),
    ]);
    expect(results).toEqual(['recorded', 'duplicate', 'recorded']);
    expect(await store.countJobs()).toEqual({ queued: 2, running: 0, dead: 0 });
    await store.close();

    const reopened = open(path).store;
    expect(await reopened.getEvent('e1')).toMatchObject({ id: 'e1', incidentId: 'Q1' });
    const job = await reopened.claimJob(Date.now(), Date.now() + 1000);
    expect(job).toMatchObject({
      kind: 'process_event',
      lane: 'incident:Q1',
      payload: { eventId: 'e1' },
      attempts: 1,
    });
  });

  it('stores an event given no jobs without queueing any', async () => {
    const { store } = open();
    expect(await store.recordEvent(event('ping', null), [])).toBe('recorded');
    expect(await store.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
  });

  it('runs one job per lane at a time, in order, while other lanes proceed', async () => {
    const { store } = open();
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
    const { store } = open();
    await store.enqueueJob({ kind: 'start_session', lane: 'run:1', payload: { n: 1 } });
    await store.enqueueJob({ kind: 'sync_message', lane: 'run:1', payload: { n: 2 } });
    const now = Date.now();
    const job = await store.claimJob(now, now + 1000);
    await store.retryJob(job as Job, now + 60_000, 'later', { failed: true });
    expect(await store.claimJob(now, now + 1000)).toBeUndefined();
    expect(await store.claimJob(now + 59_000, now + 61_000)).toBeUndefined();
    const retried = await store.claimJob(now + 60_000, now + 61_000);
    expect(retried?.payload.n).toBe(1);
    await store.buryJob(retried as Job, 'gave up');
    expect((await store.claimJob(now, now + 1000))?.payload.n).toBe(2);
    expect((await store.countJobs()).dead).toBe(1);
  });

  it('a worker whose lease ran out cannot complete or retry the job another worker now holds', async () => {
    const { store } = open();
    await store.enqueueJob({ kind: 'sync_message', lane: 'x', payload: {} });
    const now = Date.now();
    const first = (await store.claimJob(now, now + 100)) as Job;
    await store.releaseExpiredLeases(now + 200);
    const second = (await store.claimJob(now + 200, now + 100_000)) as Job;
    expect(second.attempts).toBe(2);
    await store.completeJob(first);
    await store.retryJob(first, now, 'stale worker', { failed: true });
    expect(await store.countJobs()).toEqual({ queued: 0, running: 1, dead: 0 });
    await store.completeJob(second);
    expect(await store.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
  });

  it('hands out a job whose lease ran out again, and requeues running jobs of a dead process on open', async () => {
    const { store, path } = open();
    await store.enqueueJob({ kind: 'sync_message', lane: 'x', payload: {} });
    const now = Date.now();
    expect(await store.claimJob(now, now + 100)).toBeDefined();
    expect(await store.releaseExpiredLeases(now + 50)).toBe(0);
    expect(await store.releaseExpiredLeases(now + 200)).toBe(1);
    expect((await store.claimJob(now + 200, now + 100_000))?.attempts).toBe(2);
    await store.close();
    const reopened = open(path).store;
    expect(await reopened.countJobs()).toEqual({ queued: 1, running: 0, dead: 0 });
  });

  it('queues at most one waiting job per dedupe key', async () => {
    const { store } = open();
    const job = { kind: 'sync_message' as const, lane: 'slack:1', payload: {}, dedupeKey: 'sync:1' };
    await store.enqueueJob(job);
    await store.enqueueJob(job);
    expect((await store.countJobs()).queued).toBe(1);
    const now = Date.now();
    await store.claimJob(now, now + 1000);
    await store.enqueueJob(job);
    expect(await store.countJobs()).toEqual({ queued: 1, running: 1, dead: 0 });
  });

  it('opens one run per incident and attempt, and its jobs only with it', async () => {
    const { store } = open();
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
  });

  it('transitions a run only from the expected state, atomically', async () => {
    const { store } = open();
    await store.openRun(newRun('r1'), []);
    const job = { kind: 'start_session' as const, lane: 'run:r1', payload: { runId: 'r1' } };
    const [a, b] = await Promise.all([
      store.transitionRun('r1', ['awaiting_approval'], 'starting', { decidedBy: 'UA' }, [job]),
      store.transitionRun('r1', ['awaiting_approval'], 'starting', { decidedBy: 'UB' }, [job]),
    ]);
    expect(a?.decidedBy).toBe('UA');
    expect(b).toBeUndefined();
    expect((await store.countJobs()).queued).toBe(1);
    expect(await store.transitionRun('r1', ['awaiting_approval'], 'skipped', {}, [])).toBeUndefined();
    expect((await store.getRun('r1'))?.state).toBe('starting');
  });

  it('refuses a file another live process owns, and takes over from a dead or departed owner', async () => {
    const { store, path } = open();
    await store.close();
    const setOwner = (host: string, pid: number, expiresAt: number) => {
      const db = new Database(path);
      db.prepare(
        'INSERT OR REPLACE INTO store_owner (id, owner, host, pid, expires_at) VALUES (1, ?, ?, ?, ?)',
      ).run('other', host, pid, expiresAt);
      db.close();
    };
    // Another live process on this host (our parent), its claim fresh: refused.
    setOwner(hostname(), process.ppid, Date.now() + 30_000);
    expect(() => new SqliteStore({ path })).toThrow(/is in use by another postmortem-bot \(pid \d+ on /);
    // Another host, claim fresh: refused; claim run out: taken over.
    setOwner('other-host', 1, Date.now() + 30_000);
    expect(() => new SqliteStore({ path })).toThrow(/on other-host/);
    setOwner('other-host', 1, Date.now() - 1);
    await open(path).store.close();
    // A process on this host that died without closing: taken over.
    setOwner(hostname(), 2 ** 22 + 12_345, Date.now() + 30_000);
    await open(path).store.close();
  });

  it('ping fails once the store is closed', async () => {
    const { store } = open();
    await expect(store.ping()).resolves.toBeUndefined();
    await store.close();
    await expect(store.ping()).rejects.toThrow();
    await expect(store.recordEvent(event('late'), [])).rejects.toThrow();
  });
});

describe('job failures', () => {
  it('counts failed tries, not planned returns, as the backoff’s exponent', async () => {
    const { store } = open();
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
});

describe('retention', () => {
  it('purges old events, dead jobs, orphan incidents and old runs’ evidence; keeps runs and anything newer', async () => {
    let now = 1_000_000;
    const path = join(mkdtempSync(join(tmpdir(), 'store-')), 'bot.db');
    const store = new SqliteStore({ path, now: () => now });
    stores.push(store);
    const ev = (id: string, receivedAt: number) => ({ ...event(id), receivedAt });
    await store.recordEvent(ev('old', 1000), []);
    await store.recordEvent(ev('new', 900_000), []);
    await store.saveIncident(anIncident({ id: 'QORPHAN' }));
    await store.openRun({ ...aRun({ id: 'r-old' }), incident: anIncident() } as NewRun, []);
    await store.updateRun('r-old', { evidence: { timeline: ['10:00 paged'], notes: [] } });
    await store.enqueueJob({ kind: 'sync_message', lane: 'l', payload: {} });
    const job = (await store.claimJob(now, now + 1000)) as Job;
    await store.buryJob(job, 'gave up');

    now = 2_000_000;
    await store.saveIncident(anIncident({ id: 'QRECENT' }));
    expect(await store.purgeBefore(1_500_000)).toEqual({ events: 2, jobs: 1, incidents: 1, evidence: 1 });
    expect(await store.getEvent('old')).toBeUndefined();
    expect(await store.getIncident('QORPHAN')).toBeUndefined();
    expect(await store.getIncident('QRECENT')).toBeDefined();
    expect((await store.getRun('r-old'))?.evidence).toBeNull();
    expect((await store.getRun('r-old'))?.state).toBe('awaiting_approval');
    expect(await store.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
    expect(await store.purgeBefore(1_500_000)).toEqual({ events: 0, jobs: 0, incidents: 0, evidence: 0 });
  });
});
