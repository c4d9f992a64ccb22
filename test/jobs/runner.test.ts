import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { AppError, RetryableError } from '../../src/errors.js';
import { JobRunner } from '../../src/jobs/runner.js';
import { createLogger } from '../../src/logging.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { Job, JobKind } from '../../src/store/store.js';
import { waitFor } from '../helpers/harness.js';

const logger = createLogger('silent');
let runner: JobRunner | undefined;
let store: SqliteStore | undefined;
afterEach(async () => {
  await runner?.stop();
  await store?.close();
});

function setup(
  handler: (job: Job) => Promise<void>,
  options: Partial<ConstructorParameters<typeof JobRunner>[0]> = {},
) {
  store = new SqliteStore({ path: join(mkdtempSync(join(tmpdir(), 'runner-')), 'jobs.db') });
  const handlers = Object.fromEntries(
    [
      'process_event',
      'start_session',
      'sync_message',
      'thread_reply',
      'finalize_session',
      'terminate_session',
    ].map((k) => [k, handler]),
  ) as Record<JobKind, typeof handler>;
  runner = new JobRunner({
    store,
    handlers,
    logger,
    pollIntervalMs: 5,
    backoffBaseMs: 5,
    backoffMaxMs: 20,
    ...options,
  });
  runner.start();
  return store;
}

describe('JobRunner', () => {
  it('keeps no more idle waiters than workers while the queue is quiet', async () => {
    setup(async () => {});
    await sleep(300);
    expect(runner?.waiting).toBeLessThanOrEqual(4);
  });

  it('retries a RetryableError no sooner than the other side asked', async () => {
    const seen: number[] = [];
    const s = setup(async (job) => {
      seen.push(Date.now());
      if (job.attempts === 1) throw new RetryableError('slack_rate_limited', 'later', 300);
    });
    await s.enqueueJob({ kind: 'sync_message', lane: 'a', payload: {} });
    await waitFor(() => seen.length === 2, 'the retry');
    expect((seen[1] ?? 0) - (seen[0] ?? 0)).toBeGreaterThanOrEqual(290);
    await waitFor(async () => (await s.countJobs()).queued === 0, 'completion');
    expect(await s.countJobs()).toEqual({ queued: 0, running: 0, dead: 0 });
  });

  it('buries a job that fails for good, and one that keeps crashing after its attempts', async () => {
    const s = setup(
      async (job) => {
        if (job.payload.kind === 'refused') throw new AppError('slack_refused', 'invalid_blocks');
        throw new TypeError('bug');
      },
      { maxUnexpectedAttempts: 3 },
    );
    await s.enqueueJob({ kind: 'sync_message', lane: 'a', payload: { kind: 'refused' } });
    await s.enqueueJob({ kind: 'sync_message', lane: 'b', payload: { kind: 'bug' } });
    await waitFor(async () => (await s.countJobs()).dead === 2, 'both jobs buried');
  });

  it('stop() waits for the job in flight', async () => {
    let finished = false;
    const s = setup(async () => {
      await sleep(200);
      finished = true;
    });
    await s.enqueueJob({ kind: 'sync_message', lane: 'a', payload: {} });
    await sleep(50);
    await runner?.stop();
    expect(finished).toBe(true);
    expect((await s.countJobs()).queued + (await s.countJobs()).running).toBe(0);
  });

  it('renews the lease of a job that runs longer than it, so no other worker takes it meanwhile', async () => {
    let runs = 0;
    const s = setup(
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
    const s = setup(() => new Promise<void>((resolve) => (release = resolve)));
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
    const s = setup(async (job) => {
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
    const s = setup(
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
    const s = setup(async () => {
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

describe('JobRunner backoff', () => {
  it('does not grow the backoff for planned returns (exact reschedules), only for failures', async () => {
    const seen: { at: number; attempts: number; failures: number }[] = [];
    const s = setup(
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
