import { afterAll, describe, expect, it } from 'vitest';
import { PostgresStore } from '../../src/store/postgres.js';
import { type Harness, postPagerDuty, resolvedEvent, startHarness, waitFor } from '../helpers/harness.js';
import { createTestDatabase, sql, type TestDatabase } from '../helpers/postgres.js';

/** Graceful shutdown of one replica of several (Postgres): nothing it was doing waits for a lease to run out. */

let h: Harness | undefined;
let db: TestDatabase | undefined;
let other: PostgresStore | undefined;
afterAll(async () => {
  await h?.close();
  await other?.close();
  await db?.drop();
});

describe('graceful shutdown on Postgres', () => {
  it('hands a job still running at the end of the grace period to another replica at once', async () => {
    db = await createTestDatabase();
    h = await startHarness({
      env: { DATABASE_URL: db.url },
      // As in production, the create waits long for Devin (longer than the grace period).
      configure: (config) => {
        config.tuning.devinTimeoutMs = 30_000;
      },
    });
    // Devin does not answer: the session's create is in flight when the replica is told to stop.
    h.devin.hangUntil = Date.now() + 60_000;
    const res = await postPagerDuty(
      h.url,
      resolvedEvent({ eventId: 'stop-1', incidentId: 'PSTOP1', number: 501, priority: 'P1' }),
    );
    expect(res.status).toBe(202);
    const url = db.url;
    // The run records its intent to create just before calling Devin.
    await waitFor(
      async () => (await sql(url, 'SELECT 1 FROM runs WHERE create_attempted_at IS NOT NULL')).length === 1,
      'the create to be in flight',
    );
    const [running] = await sql(url, `SELECT id, state, locked_by FROM jobs WHERE kind = 'start_session'`);
    expect(running).toMatchObject({ state: 'running', locked_by: expect.any(String) });

    const since = Date.now();
    await h.bot.stop({ graceMs: 300 });
    expect(Date.now() - since).toBeLessThan(5000);

    // Handed back: another replica claims it now, without waiting for the lease (30 s) to run out.
    const [row] = await sql(db.url, 'SELECT state, locked_by FROM jobs WHERE id = $1', [running.id]);
    expect(row).toEqual({ state: 'queued', locked_by: null });
    other = new PostgresStore({ url: db.url, poolSize: 2 });
    const now = Date.now();
    const taken = await other.claimJob(now, now + 30_000);
    expect(taken).toMatchObject({ id: Number(running.id), kind: 'start_session', attempts: 2 });
  });
});
