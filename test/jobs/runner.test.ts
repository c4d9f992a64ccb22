import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AppError, RetryableError } from '../../src/errors.js';
import { JobRunner, type JobRunnerOptions } from '../../src/jobs/runner.js';
import { createLogger } from '../../src/logging.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { Job, JobKind } from '../../src/store/store.js';
import { waitFor } from '../helpers/harness.js';
import { TEMP_ROOT } from '../helpers/temp-store.js';

const logger = createLogger('silent');
let runner: JobRunner | undefined;
let store: SqliteStore | undefined;
afterEach(async () => {
  await runner?.stop();
  await store?.close();
});

const KINDS: JobKind[] = [
  'process_event',
  'start_session',
  'sync_message',
  'thread_reply',
  'finalize_session',
  'terminate_session',
  'pagerduty_note',
];

function setup(
  handler: (job: Job) => Promise<void>,
  options: Partial<JobRunnerOptions> = {},
  { start = true } = {},
) {
  store = new SqliteStore({ path: join(mkdtempSync(join(TEMP_ROOT, 'runner-')), 'jobs.db') });
  const handlers = Object.fromEntries(KINDS.map((k) => [k, handler])) as Record<JobKind, typeof handler>;
  runner = new JobRunner({
    store,
    handlers,
    logger,
    pollIntervalMs: 5,
    backoffBaseMs: 5,
    backoffMaxMs: 20,
    ...options,
  });
  if (start) runner.start();
  return { s: store, r: runner };
}

/** A promise and the function that resolves it. */
function signal(): { promise: Promise<void>; fire: () => void } {
  let fire = () => {};
  const promise = new Promise<void>((resolve) => {
    fire = resolve;
  });
  return { promise, fire };
}

describe('JobRunner', () => {
  it('keeps no more idle waiters than workers while the queue is quiet', async () => {
    const { s, r } = setup(async () => {});
    const claims = vi.spyOn(s, 'claimJob');
    await waitFor(() => claims.mock.calls.length >= 100, 'a hundred idle looks for work');
    expect(r.waiting).toBeLessThanOrEqual(4);
    await r.settled();
    expect(r.waiting).toBe(4);
  });

  it('retries a RetryableError no sooner than the other side asked', async () => {
    const seen: number[] = [];
    const { s, r } = setup(async (job) => {
      seen.push(Date.now());
      if (job.attempts === 1) throw new RetryableError('slack_rate_limited', 'later', 300);
    });
    await s.enqueueJob({ kind: 'sync_message', lane: 'a', payload: {} });
    await waitFor(() => seen.length === 2, 'the retry');
    expect((seen[1] ?? 0) - (seen[0] ?? 0)).toBeGreaterThanOrEqual(290);
    await r.settled();
    expect(await s.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
  });

  it('buries a job that fails for good, and one that keeps crashing after its attempts', async () => {
    const { s } = setup(
      async (job) => {
        if (job.payload.kind === 'refused') throw new AppError('slack_refused', 'invalid_blocks');
        throw new TypeError('bug');
      },
      { maxUnexpectedAttempts: 3 },
    );
    await s.enqueueJob({ kind: 'sync_message', lane: 'a', payload: { kind: 'refused' } });
    await s.enqueueJob({ kind: 'sync_message', lane: 'b', payload: { kind: 'bug' } });
    await waitFor(async () => (await s.countJobs()).dead === 2, 'both jobs buried');
    expect(
      (await s.listJobs({ state: 'dead' })).map((j) => [j.payload.kind, j.attempts, j.lastError]),
    ).toEqual([
      ['refused', 1, 'invalid_blocks'],
      ['bug', 3, 'bug'],
    ]);
  });

  it('leaves a job of a kind it has no handler for (a newer release queued it) to a replica that knows it', async () => {
    const { s, r } = setup(async () => {}, { unknownKindRetryMs: 30 });
    const claims = vi.spyOn(s, 'claimJob');
    // Not among this runner's handlers, as a kind added by the next release is not among the last one's.
    await s.enqueueJob({ kind: 'append_incidents', lane: 'run:r1', payload: { runId: 'r1' } });
    await waitFor(() => claims.mock.calls.length >= 20, 'the job claimed and handed back a few times');
    await r.stop();
    const [job] = await s.listJobs();
    expect(job).toMatchObject({ kind: 'append_incidents', state: 'queued', failures: 0 });
    expect(await s.countJobs()).toEqual({ queued: 1, running: 0, dead: 0 });
    // A replica of the release that knows the kind runs it.
    const ran: string[] = [];
    runner = new JobRunner({
      store: s,
      handlers: { append_incidents: async (j: Job) => void ran.push(j.kind) } as unknown as Record<
        JobKind,
        (job: Job) => Promise<void>
      >,
      logger,
      pollIntervalMs: 5,
    });
    runner.start();
    await waitFor(() => ran.length === 1, 'the job run by a replica that knows its kind');
    await runner.settled();
    expect(await s.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
  });

  it('stop() waits for the job in flight', async () => {
    const started = signal();
    const release = signal();
    const order: string[] = [];
    const { s, r } = setup(async () => {
      started.fire();
      await release.promise;
      order.push('job finished');
    });
    await s.enqueueJob({ kind: 'sync_message', lane: 'a', payload: {} });
    await started.promise;
    const stopped = r.stop().then(() => order.push('stopped'));
    release.fire();
    await stopped;
    expect(order).toEqual(['job finished', 'stopped']);
    expect(await s.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
  });

  it('takes a job queued while its only worker was looking for one at once, not at the next poll', async () => {
    let ran = false;
    const { s, r } = setup(
      async () => {
        ran = true;
      },
      { concurrency: 1, pollIntervalMs: 60_000 },
      { start: false },
    );
    const claim = s.claimJob.bind(s);
    let queued = false;
    vi.spyOn(s, 'claimJob').mockImplementation(async (now, leaseUntil) => {
      const job = await claim(now, leaseUntil);
      if (!job && !queued) {
        queued = true;
        await s.enqueueJob({ kind: 'sync_message', lane: 'a', payload: {} });
      }
      return job;
    });
    r.start();
    await waitFor(() => ran, 'the job queued during the look');
  });
  it('renews the lease of a job that runs longer than it, so no other worker takes it meanwhile', async () => {
    let runs = 0;
    const { s } = setup(
      async () => {
        runs++;
        await sleep(800);
      },
      { leaseMs: 150, concurrency: 3 },
    );
    await s.enqueueJob({ kind: 'start_session', lane: 'a', payload: {} });
    await waitFor(async () => (await s.countJobs()).queued + (await s.countJobs()).running === 0, 'done');
    // Without the heartbeat the lease would have run out five times over, and idle workers taken the job.
    expect(runs).toBe(1);
  });

  it('stop() waits at most waitMs, and says how many jobs were still running', async () => {
    let release: () => void = () => {};
    const { s } = setup(() => new Promise<void>((resolve) => (release = resolve)));
    await s.enqueueJob({ kind: 'start_session', lane: 'a', payload: {} });
    await waitFor(async () => (await s.countJobs()).running === 1, 'the job to run');
    const since = Date.now();
    expect(await runner?.stop({ waitMs: 100 })).toBe(1);
    expect(Date.now() - since).toBeLessThan(1000);
    release();
  });

  it('backs off while the store is unavailable, and carries on by itself when it returns', async () => {
    const outage = { down: false, claims: 0 };
    const ran: number[] = [];
    const { s } = setup(async (job) => {
      ran.push(Number(job.payload.n));
    });
    const real = s.claimJob.bind(s);
    s.claimJob = async (now, leaseUntil) => {
      if (!outage.down) return real(now, leaseUntil);
      outage.claims++;
      throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
    };
    outage.down = true;
    const since = Date.now();
    await waitFor(() => outage.claims >= 12, 'twelve failed claims');
    // A worker retrying at its 5 ms poll interval would have failed 12 times within ~15 ms.
    expect(Date.now() - since).toBeGreaterThan(300);
    outage.down = false;
    await s.enqueueJob({ kind: 'sync_message', lane: 'a', payload: { n: 1 } });
    await waitFor(() => ran.length === 1, 'the job after the outage', 10_000);
    await waitFor(async () => (await s.countJobs()).queued + (await s.countJobs()).running === 0, 'done');
  });

  it('a store outage longer than the lease does not hand a running job to another worker', async () => {
    const outage = { claims: false, renewals: false };
    let renewalsTried = 0;
    const runs: number[] = [];
    const blocked: (() => void)[] = [];
    let clock = Date.now() + 60_000; // ahead of the store’s own clock, so the jobs it queues are due
    const { s } = setup(
      async (job) => {
        runs.push(Number(job.payload.n));
        if (job.payload.n === 1) await new Promise<void>((resolve) => blocked.push(resolve));
      },
      { leaseMs: 300, pollIntervalMs: 20, concurrency: 2, now: () => clock },
    );
    const fail = () => {
      throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
    };
    const real = {
      claim: s.claimJob.bind(s),
      renew: s.renewJobLeases.bind(s),
      sweep: s.releaseExpiredLeases.bind(s),
    };
    s.claimJob = async (...args) => (outage.claims ? fail() : real.claim(...args));
    s.releaseExpiredLeases = async (...args) => (outage.claims ? fail() : real.sweep(...args));
    s.renewJobLeases = async (...args) => {
      renewalsTried++;
      return outage.renewals ? fail() : real.renew(...args);
    };
    await s.enqueueJob({ kind: 'start_session', lane: 'a', payload: { n: 1 } });
    await waitFor(() => runs.length === 1, 'the job to run');
    outage.claims = outage.renewals = true;
    const tried = renewalsTried;
    await waitFor(() => renewalsTried > tried, 'a renewal to fail');
    clock += 1000; // job 1's lease has lapsed in the store meanwhile
    // The store is back, and new work wakes the idle worker at once; job 1's heartbeat renews a moment later.
    outage.claims = false;
    await s.enqueueJob({ kind: 'sync_message', lane: 'b', payload: { n: 2 } });
    try {
      // The idle worker runs the new job, not job 1 a second time.
      await waitFor(() => runs.length === 2, 'the idle worker to run a job');
      const renewedFrom = renewalsTried;
      outage.renewals = false;
      await waitFor(() => renewalsTried > renewedFrom, 'the lease renewed');
      clock += 150; // sweeps resume
      await sleep(200);
      expect(runs).toEqual([1, 2]);
    } finally {
      for (const release of blocked) release();
    }
    await waitFor(async () => (await s.countJobs()).running === 0, 'the completion');
    expect(await s.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
  });

  it('a job that ran is not run again because its completion could not be written at once', async () => {
    let failures = 2;
    let runs = 0;
    const { s } = setup(async () => {
      runs++;
    });
    const real = s.completeJob.bind(s);
    s.completeJob = async (job) => {
      if (failures-- > 0) throw new Error('Connection terminated unexpectedly');
      return real(job);
    };
    await s.enqueueJob({ kind: 'sync_message', lane: 'a', payload: {} });
    await waitFor(async () => failures < 0 && (await s.countJobs()).running === 0, 'the completion');
    expect(runs).toBe(1);
    expect(await s.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
  });
});

describe('JobRunner: beforeClaim (the intake going first in a flood)', () => {
  it('claims no job while a hold is under way, and takes it once the hold ends', async () => {
    const hold = signal();
    let holding = true;
    const ran: number[] = [];
    const { s, r } = setup(
      async (job) => {
        ran.push(job.payload.n as number);
      },
      { concurrency: 1, beforeClaim: () => (holding ? hold.promise : undefined) },
    );
    const claims = vi.spyOn(s, 'claimJob');
    await s.enqueueJob({ kind: 'sync_message', lane: 'a', payload: { n: 1 } });
    r.wake();
    // Many turns of the loop: the worker is still held, and has not looked for a job.
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(claims).not.toHaveBeenCalled();
    expect((await s.countJobs()).queued).toBe(1);
    holding = false;
    hold.fire();
    await r.settled();
    expect(ran).toEqual([1]);
  });
});

describe('JobRunner: an outage seen only while recording outcomes', () => {
  it('is logged as the queue being unavailable, once, and so is its end', async () => {
    const messages: string[] = [];
    const capture = pino({ level: 'info' }, { write: (line: string) => messages.push(JSON.parse(line).msg) });
    // Every worker is inside a job when the database goes: none is claiming, all are recording.
    let failures = 3;
    const { s } = setup(async () => {}, { logger: capture, concurrency: 1 });
    const real = s.completeJob.bind(s);
    s.completeJob = async (job) => {
      if (failures-- > 0) throw new Error('Connection terminated unexpectedly');
      return real(job);
    };
    await s.enqueueJob({ kind: 'sync_message', lane: 'a', payload: {} });
    await waitFor(async () => failures < 0 && (await s.countJobs()).running === 0, 'the completion');
    expect(messages.filter((m) => m === 'job queue unavailable; backing off')).toHaveLength(1);
    expect(messages.filter((m) => m === 'job queue available again')).toHaveLength(1);
  });
});

describe('JobRunner.settled()', () => {
  it('resolves at once when nothing is queued: before start, while idle, and after stop', async () => {
    // A poll interval far beyond the test's timeout: only events can resolve it.
    const { r } = setup(async () => {}, { pollIntervalMs: 600_000 }, { start: false });
    await r.settled();
    r.start();
    await r.settled();
    await r.settled();
    await r.stop();
    await r.settled();
  });

  it.each([1, 4])(
    'waits for a chain of jobs that queue more jobs, to its end (concurrency %i)',
    async (concurrency) => {
      const seen: number[] = [];
      const { s, r } = setup(
        async (job) => {
          const n = Number(job.payload.n);
          seen.push(n);
          // Half the chain in one lane (each waits for the one before), half in lanes of their own.
          if (n < 8)
            await s.enqueueJob({
              kind: 'sync_message',
              lane: n % 2 ? 'odd' : `even-${n}`,
              payload: { n: n + 1 },
            });
        },
        { concurrency, pollIntervalMs: 600_000 },
      );
      await s.enqueueJob({ kind: 'sync_message', lane: 'odd', payload: { n: 1 } });
      await r.settled();
      expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(await s.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
    },
  );

  it('runs a fan-out on several workers at once and resolves every caller once all of it is done', async () => {
    let active = 0;
    let mostAtOnce = 0;
    const done: string[] = [];
    const { s, r } = setup(
      async (job) => {
        active++;
        mostAtOnce = Math.max(mostAtOnce, active);
        if (job.payload.root) {
          for (let i = 0; i < 12; i++)
            await s.enqueueJob({ kind: 'thread_reply', lane: `lane-${i}`, payload: { i } });
        }
        await sleep(5); // each job takes a moment, so that workers overlap
        active--;
        done.push(job.payload.root ? 'root' : String(job.payload.i));
      },
      { concurrency: 4, pollIntervalMs: 600_000 },
    );
    await s.enqueueJob({ kind: 'process_event', lane: 'root', payload: { root: true } });
    await Promise.all([r.settled(), r.settled()]);
    expect(done).toHaveLength(13);
    expect(new Set(done).size).toBe(13);
    expect(mostAtOnce).toBeGreaterThan(1);
    expect(await s.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
  });

  it('does not resolve while a job is running, even when the other workers have gone idle', async () => {
    const slowStarted = signal();
    const release = signal();
    const events: string[] = [];
    const { s, r } = setup(
      async (job) => {
        if (job.payload.slow) {
          slowStarted.fire();
          await release.promise;
        }
        events.push(`${job.payload.slow ? 'slow' : 'quick'} job done`);
      },
      { concurrency: 2, pollIntervalMs: 600_000 },
    );
    await s.enqueueJob({ kind: 'start_session', lane: 'slow', payload: { slow: true } });
    await slowStarted.promise;
    const settled = r.settled().then(() => events.push('settled'));
    await s.enqueueJob({ kind: 'sync_message', lane: 'quick', payload: {} });
    await waitFor(() => events.includes('quick job done') && r.waiting === 1, 'the other worker to go idle');
    release.fire();
    await settled;
    expect(events).toEqual(['quick job done', 'slow job done', 'settled']);
  });

  it('does not count a job scheduled for later, and runs it once the clock says it is due', async () => {
    let offsetMs = 0;
    const attempts: number[] = [];
    const { s, r } = setup(
      async (job) => {
        attempts.push(job.attempts);
        if (job.attempts === 1)
          throw new RetryableError('slack_rate_limited', 'in a minute', 60_000, { exact: true });
      },
      { now: () => Date.now() + offsetMs, pollIntervalMs: 600_000 },
    );
    await s.enqueueJob({ kind: 'start_session', lane: 'a', payload: {} });
    await r.settled();
    expect(attempts).toEqual([1]);
    const [waiting] = await s.listJobs({ state: 'queued' });
    expect(waiting?.runAt).toBeGreaterThan(Date.now() + 50_000);

    // A minute passes on the runner's clock (a test clock moved forward): the retry is due now.
    offsetMs += 61_000;
    await r.settled();
    expect(attempts).toEqual([1, 2]);
    expect(await s.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
  });

  it('does not resolve while the store cannot be reached, and does once it answers again', async () => {
    const outage = { down: true, claims: 0 };
    const events: string[] = [];
    const { s, r } = setup(async () => {}, {}, { start: false });
    const real = s.claimJob.bind(s);
    s.claimJob = async (now, leaseUntil) => {
      if (!outage.down) return real(now, leaseUntil);
      outage.claims++;
      throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
    };
    r.start();
    const settled = r.settled().then(() => events.push('settled'));
    await waitFor(() => outage.claims >= 4, 'the workers to fail to reach the store');
    events.push('store back');
    outage.down = false;
    await settled;
    expect(events).toEqual(['store back', 'settled']);
  });
});

describe('JobRunner backoff', () => {
  it('does not grow the backoff for planned returns (exact reschedules), only for failures', async () => {
    const seen: { at: number; attempts: number; failures: number }[] = [];
    const { s } = setup(
      async (job) => {
        seen.push({ at: Date.now(), attempts: job.attempts, failures: job.failures });
        // Three planned looks (as while reconciling a create), then one failure, then success.
        if (job.attempts <= 3)
          throw new RetryableError('create_unconfirmed', 'look again', 1, { exact: true });
        if (job.attempts === 4) throw new RetryableError('session_api_unavailable', 'Devin 503');
      },
      { backoffBaseMs: 400, backoffMaxMs: 100_000 },
    );
    await s.enqueueJob({ kind: 'start_session', lane: 'r', payload: {} });
    await waitFor(() => seen.length === 5, 'five tries');
    expect(seen.map((t) => t.failures)).toEqual([0, 0, 0, 0, 1]);
    // The failure after three planned looks is the first failure: it waits base/2…base, not 8 × base.
    const wait = (seen[4]?.at ?? 0) - (seen[3]?.at ?? 0);
    expect(wait).toBeGreaterThanOrEqual(200);
    expect(wait).toBeLessThan(1500); // counted by attempts it would be 4 × base or more
  });
});
