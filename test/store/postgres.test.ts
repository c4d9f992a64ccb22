import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { processEventJob } from '../../src/postmortems/jobs.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/store/migrations.js';
import { migratePostgres, PostgresStore } from '../../src/store/postgres.js';
import type { GatedSteps, Job, SessionGate } from '../../src/store/store.js';
import { anIncident, aRun } from '../helpers/builders.js';
import { waitFor } from '../helpers/harness.js';
import { createTestDatabase, sql, type TestDatabase } from '../helpers/postgres.js';
import { storeContract } from './contract.js';

const stores: PostgresStore[] = [];
const databases: TestDatabase[] = [];

async function database(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  databases.push(db);
  return db;
}
function open(url: string, options: { now?: () => number } = {}): PostgresStore {
  const store = new PostgresStore({ url, poolSize: 4, ...options });
  stores.push(store);
  return store;
}
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close().catch(() => {})));
});
afterAll(async () => {
  await Promise.all(databases.splice(0).map((d) => d.drop()));
});

storeContract('PostgresStore', async () => {
  const db = await database();
  return { open: async () => open(db.url) };
});

describe('PostgresStore: several replicas on one database', () => {
  it('two instances racing for session slots: exactly the budget and never more live than the cap', async () => {
    const db = await database();
    const replicas = [open(db.url), open(db.url)];
    await Promise.all(replicas.map((r) => r.ping()));
    const live = ['starting', 'started', 'needs_input'] as const;
    const gate = (extra: Partial<SessionGate>): SessionGate => ({
      day: 20_000,
      liveStates: live,
      queuedState: 'queued',
      ...extra,
    });
    const run = (id: string) => {
      const own = anIncident({ id: `I-${id}` });
      const {
        createdAt: _c,
        updatedAt: _u,
        ...r
      } = aRun({ id, incidentId: own.id, incident: own, trigger: 'auto' });
      return r;
    };
    const steps = (id: string): GatedSteps => ({
      admitted: {
        state: 'starting',
        jobs: [{ kind: 'start_session', lane: `run:${id}`, payload: { runId: id } }],
      },
      full: { state: 'queued', jobs: [] },
      overBudget: { state: 'awaiting_approval', jobs: [] },
    });
    const budget = gate({ budget: { sessions: 4 }, maxLive: 2 });
    const ids = Array.from({ length: 12 }, (_, i) => `r${i}`);
    const opened = await Promise.all(
      ids.map((id, i) => (replicas[i % 2] as PostgresStore).openGatedRun(run(id), budget, steps(id))),
    );
    const count = (state: string) => opened.filter((r) => r?.state === state).length;
    expect([count('starting'), count('queued'), count('awaiting_approval')]).toEqual([2, 2, 8]);
    // The live ones end; both replicas admit at once, many times: two start, no more.
    for (const r of opened.filter((r) => r?.state === 'starting'))
      await replicas[0]?.transitionRun(r?.id as string, ['starting'], 'finished', {}, []);
    const capped = gate({ maxLive: 1 });
    const rounds = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        (replicas[i % 2] as PostgresStore).admitQueued('queued', 'starting', capped, () => []),
      ),
    );
    expect(rounds.flat()).toHaveLength(1);
    expect(await replicas[1]?.sessionUse(20_000, live, 'queued')).toEqual({
      sessions: 4,
      acus: 0,
      live: 1,
      queued: 1,
    });
  });

  it('two instances claiming concurrently never run two jobs of one lane at once, and lose or double none', async () => {
    const db = await database();
    const replicas = [open(db.url), open(db.url)];
    await Promise.all(replicas.map((r) => r.ping()));
    const LANES = 6;
    const PER_LANE = 15;
    const total = LANES * PER_LANE;
    const running = new Set<string>();
    const ran = new Map<string, { n: number; id: number }[]>();
    const overlaps: string[] = [];
    let completed = 0;
    let retried = 0;

    const worker = async (store: PostgresStore) => {
      while (completed < total) {
        const now = Date.now();
        const job = await store.claimJob(now, now + 60_000);
        if (!job) {
          await sleep(2);
          continue;
        }
        if (running.has(job.lane)) overlaps.push(`${job.lane} #${job.payload.n}`);
        running.add(job.lane);
        const list = ran.get(job.lane) ?? [];
        list.push({ n: Number(job.payload.n), id: job.id });
        ran.set(job.lane, list);
        await sleep(Math.random() * 3);
        // Cleared before the store hears of it: the job stays 'running' in the database until then.
        running.delete(job.lane);
        if (job.attempts === 1 && Math.random() < 0.15) {
          retried++;
          await store.retryJob(job, Date.now(), 'try again', { failed: true });
        } else {
          await store.completeJob(job);
          completed++;
        }
      }
    };
    const enqueue = async () => {
      await Promise.all(
        Array.from({ length: LANES }, async (_, lane) => {
          const ordered = lane % 2 === 0;
          const jobs = Array.from({ length: PER_LANE }, (_, n) => ({
            kind: 'sync_message' as const,
            lane: `lane-${lane}`,
            payload: { n },
          }));
          if (ordered) {
            // One after the other, alternating replicas: this order must be kept.
            for (const [n, job] of jobs.entries()) await replicas[n % 2]?.enqueueJob(job);
          } else {
            // All at once from both replicas: the order is whichever commits first, but still one at a time.
            await Promise.all(jobs.map((job, n) => replicas[n % 2]?.enqueueJob(job)));
          }
        }),
      );
    };
    await Promise.all([enqueue(), ...replicas.flatMap((r) => [worker(r), worker(r), worker(r)])]);

    expect(overlaps).toEqual([]);
    expect(await replicas[0]?.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
    for (let lane = 0; lane < LANES; lane++) {
      const runs = ran.get(`lane-${lane}`) ?? [];
      // A retried job runs again at once, before the rest of its lane.
      const distinct = runs.filter((r, i) => i === 0 || runs[i - 1]?.id !== r.id);
      expect(new Set(distinct.map((r) => r.id)).size, `lane-${lane} each job once`).toBe(PER_LANE);
      expect(distinct.map((r) => r.id)).toEqual(distinct.map((r) => r.id).sort((x, y) => x - y));
      if (lane % 2 === 0) expect(distinct.map((r) => r.n)).toEqual([...Array(PER_LANE).keys()]);
    }
    expect(retried).toBeGreaterThan(0);
  });

  it('paces one channel across instances: calls from all of them at least an interval apart, each once', async () => {
    const db = await database();
    const replicas = [open(db.url), open(db.url), open(db.url)];
    await Promise.all(replicas.map((r) => r.ping()));
    const INTERVAL = 20;
    const went: { key: string; at: number }[] = [];
    // 45 calls, each retried from a different instance than the last, as a job handed to another replica.
    await Promise.all(
      Array.from({ length: 45 }, async (_, n) => {
        const key = `job-${n}`;
        for (let attempt = 0; ; attempt++) {
          const now = Date.now();
          const due = await (replicas[(n + attempt) % 3] as PostgresStore).takeChannelSlot(
            'CSHARED',
            key,
            now,
            INTERVAL,
          );
          if (due <= now) {
            went.push({ key, at: now });
            return;
          }
          await sleep(due - now);
        }
      }),
    );
    expect(new Set(went.map((w) => w.key)).size).toBe(45);
    const times = went.map((w) => w.at).sort((a, b) => a - b);
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(INTERVAL);
  });

  it('a lane job whose ID was taken but not yet committed cannot be overtaken by a later one', async () => {
    const db = await database();
    const a = open(db.url);
    const b = open(db.url);
    await Promise.all([a.ping(), b.ping()]);
    const activity = async (waitEvent: string) =>
      (
        await sql(
          db.url,
          `SELECT COUNT(*)::int AS n FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = $1`,
          [waitEvent],
        )
      )[0].n as number;
    // Hold A's insert after it took its job ID: a row with the next ID, not committed, makes A's insert wait.
    const blocker = new pg.Client({ connectionString: db.url });
    await blocker.connect();
    try {
      const [{ next }] = await sql(
        db.url,
        `SELECT nextval(pg_get_serial_sequence('jobs', 'id'))::int AS next`,
      );
      await blocker.query('BEGIN');
      await blocker.query(
        `INSERT INTO jobs (id, kind, lane, payload, state, run_at, created_at)
         VALUES ($1, 'sync_message', 'blocker', '{}', 'dead', 0, 0)`,
        [next + 1],
      );
      const first = a.enqueueJob({ kind: 'sync_message', lane: 'slack:r1', payload: { n: 1 } });
      await waitFor(async () => (await activity('transactionid')) === 1, 'A to hold its job ID');
      let secondDone = false;
      const second = b.enqueueJob({ kind: 'sync_message', lane: 'slack:r1', payload: { n: 2 } }).then(() => {
        secondDone = true;
      });
      await waitFor(async () => secondDone || (await activity('advisory')) === 1, 'B to queue or wait');
      // Without the lane lock B's job would be committed now and handed out ahead of A's.
      expect(await b.claimJob(Date.now(), Date.now() + 60_000)).toBeUndefined();
      await blocker.query('ROLLBACK');
      await Promise.all([first, second]);
    } finally {
      await blocker.end();
    }
    const head = (await b.claimJob(Date.now(), Date.now() + 60_000)) as Job;
    expect(head.payload).toEqual({ n: 1 });
    expect(await a.claimJob(Date.now(), Date.now() + 60_000)).toBeUndefined();
    await a.completeJob(head);
    expect((await a.claimJob(Date.now(), Date.now() + 60_000))?.payload).toEqual({ n: 2 });
  });

  it('writes concurrent events in shared transactions, and one bad event does not fail the others', async () => {
    const db = await database();
    const store = open(db.url);
    await store.ping();
    const event = (id: string, payload = '{}') => ({
      id,
      type: 'incident.resolved',
      incidentId: 'Q1',
      occurredAt: '2024-01-01T00:00:00Z',
      receivedAt: 1,
      payload,
    });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        // Postgres text cannot hold a NUL character: that event is refused, the 19 others are stored.
        store.recordEvent(event(`e${i}`, i === 7 ? 'nul \u0000 inside' : '{}'), [
          processEventJob(`e${i}`, 'Q1'),
        ]),
      ),
    );
    expect(outcomes.map((o) => o.status)).toEqual(
      Array.from({ length: 20 }, (_, i) => (i === 7 ? 'rejected' : 'fulfilled')),
    );
    expect(await store.getEvent('e7')).toBeUndefined();
    expect(await store.countJobs()).toEqual({ queued: 19, running: 0, dead: 0 });
    // The lane's jobs are in arrival order.
    const now = Date.now();
    const order: unknown[] = [];
    for (let job = await store.claimJob(now, now + 1000); job; job = await store.claimJob(now, now + 1000)) {
      order.push(job.payload.eventId);
      await store.completeJob(job);
    }
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => `e${i}`).filter((id) => id !== 'e7'));
  });

  it('a job queued by one instance wakes the idle workers of another within about 100 ms', async () => {
    const db = await database();
    const a = open(db.url);
    const b = open(db.url);
    await Promise.all([a.ping(), b.ping()]);
    await waitFor(() => a.listening && b.listening, 'both to listen');
    let wake: (at: number) => void = () => {};
    b.onJobsQueued(() => wake(Date.now()));
    // Five jobs, one at a time; the median wake-up, so that one stall of this shared machine is not a failure.
    const latencies: number[] = [];
    for (let n = 0; n < 5; n++) {
      const woken = new Promise<number>((resolve) => (wake = resolve));
      const sent = Date.now();
      await a.enqueueJob({ kind: 'sync_message', lane: `x${n}`, payload: {} });
      latencies.push((await woken) - sent);
    }
    latencies.sort((x, y) => x - y);
    expect(latencies[2], `wake-ups in ms: ${latencies.join(', ')}`).toBeLessThan(250);
  });

  it('keeps listening after its connection is cut, and the pool replaces broken connections', async () => {
    const db = await database();
    const a = open(db.url);
    const b = open(db.url);
    await Promise.all([a.ping(), b.ping()]);
    await waitFor(() => b.listening, 'b to listen');
    // Every connection of the database is ended by the server (as on a failover or an admin's kill).
    await sql(
      db.url,
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    await waitFor(() => !b.listening, 'b to notice');
    await waitFor(() => b.listening, 'b to listen again');
    await b.ping();
    const woken = new Promise<void>((resolve) => b.onJobsQueued(() => resolve()));
    await a.enqueueJob({ kind: 'sync_message', lane: 'x', payload: {} });
    await woken;
    expect((await b.countJobs()).queued).toBe(1);
  });

  it('three instances starting at once on an empty database migrate it once', async () => {
    const db = await database();
    const three = [open(db.url), open(db.url), open(db.url)];
    await Promise.all(three.map((s) => s.ping()));
    await Promise.all(
      three.map((s, i) => s.enqueueJob({ kind: 'sync_message', lane: `l${i}`, payload: {} })),
    );
    const versions = await sql(db.url, 'SELECT version FROM schema_migrations ORDER BY version');
    expect(versions.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
    expect((await three[2]?.countJobs())?.queued).toBe(3);
  });

  it('another instance takes over a job whose lease ran out; the first can no longer finish it', async () => {
    const db = await database();
    const a = open(db.url);
    const b = open(db.url);
    await a.enqueueJob({ kind: 'start_session', lane: 'run:1', payload: { runId: '1' } });
    const now = Date.now();
    const first = (await a.claimJob(now, now + 100)) as Job;
    expect(await b.claimJob(now, now + 100)).toBeUndefined();
    expect(await b.releaseExpiredLeases(now + 50)).toBe(0);
    expect(await b.releaseExpiredLeases(now + 150)).toBe(1);
    const taken = (await b.claimJob(now + 150, now + 60_000)) as Job;
    expect(taken).toMatchObject({ id: first.id, attempts: 2 });
    await a.completeJob(first);
    expect(await b.countJobs()).toEqual({ queued: 0, running: 1, dead: 0 });
    await b.completeJob(taken);
    expect(await b.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
  });

  it('close() hands its running jobs back at once, and only its own', async () => {
    const db = await database();
    const a = open(db.url);
    const b = open(db.url);
    await a.enqueueJob({ kind: 'sync_message', lane: 'a', payload: { n: 1 } });
    await a.enqueueJob({ kind: 'sync_message', lane: 'b', payload: { n: 2 } });
    const now = Date.now();
    const mine = (await a.claimJob(now, now + 600_000)) as Job;
    const theirs = (await b.claimJob(now, now + 600_000)) as Job;
    await waitFor(() => b.listening, 'b to listen');
    const woken = new Promise<void>((resolve) => b.onJobsQueued(() => resolve()));
    await a.close();
    await woken;
    expect(await b.countJobs()).toEqual({ queued: 1, running: 1, dead: 0 });
    const again = (await b.claimJob(Date.now(), Date.now() + 60_000)) as Job;
    expect(again).toMatchObject({ id: mine.id, attempts: 2 });
    expect(theirs.id).not.toBe(mine.id);
  });

  it('migrates a database created by the previous schema version, keeping its rows', async () => {
    const db = await database();
    const pool = new pg.Pool({ connectionString: db.url, max: 1 });
    // The version before the newest (versions are assigned ahead, so they need not be contiguous).
    const previous = Math.max(...MIGRATIONS.map((m) => m.version).filter((v) => v < SCHEMA_VERSION));
    await migratePostgres(pool, previous);
    await pool.query(
      `INSERT INTO events (id, type, incident_id, occurred_at, received_at, payload)
       VALUES ('e1', 'incident.resolved', 'Q1', '2024-01-01T00:00:00Z', 1700000000000, '{"event":{}}')`,
    );
    await pool.query(
      `INSERT INTO runs (id, incident_id, attempt, state, trigger, channel, devin_tag, incident, incident_number,
         created_at, updated_at, finalize_sent_at)
       VALUES ('r1', 'Q1', 1, 'started', 'auto', 'C1', 'pm-run-r1', $1, 7, 1, 2, 3)`,
      [JSON.stringify(anIncident())],
    );
    await pool.query(
      `INSERT INTO jobs (kind, lane, payload, state, run_at, attempts, locked_until, created_at)
       VALUES ('sync_message', 'slack:r1', '{"runId":"r1"}', 'running', 1, 1, 5, 1),
              ('thread_reply', 'slack:r1', '{"runId":"r1"}', 'queued', 1, 0, NULL, 1)`,
    );
    const before = await pool.query('SELECT MAX(version) AS v FROM schema_migrations');
    expect(before.rows[0].v).toBe(previous);
    await pool.end();

    const store = open(db.url);
    await store.ping();
    const versions = await sql(db.url, 'SELECT version FROM schema_migrations ORDER BY version');
    expect(versions.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
    expect(await store.getEvent('e1')).toMatchObject({
      receivedAt: 1_700_000_000_000,
      payload: '{"event":{}}',
    });
    expect(await store.getRun('r1')).toMatchObject({
      state: 'started',
      finalizeSentAt: 3,
      incident: anIncident(),
    });
    // The old running job (a replica of the previous version died holding it) is taken over after its lease.
    expect(await store.releaseExpiredLeases(Date.now())).toBe(1);
    const job = (await store.claimJob(Date.now(), Date.now() + 1000)) as Job;
    expect(job).toMatchObject({ kind: 'sync_message', attempts: 2 });
    const [row] = await sql(db.url, 'SELECT locked_by FROM jobs WHERE id = $1', [job.id]);
    expect(row.locked_by).toEqual(expect.any(String));
  });
});
