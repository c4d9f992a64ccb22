import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { processEventJob, syncMessageJob, threadReplyJob } from '../../src/postmortems/jobs.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { Job, NewRun } from '../../src/store/store.js';
import { BUILT_DIR } from '../global-setup.js';
import { anIncident, aRun } from '../helpers/builders.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

const run = promisify(execFile);
const tool = (...args: string[]) =>
  run(process.execPath, [join(BUILT_DIR, 'tools', 'migrate-store.js'), ...args], { timeout: 30_000 });

const databases: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(databases.map((d) => d.drop()));
});

const newRun = (id: string, incidentId: string, number: number): NewRun => {
  const {
    createdAt: _c,
    updatedAt: _u,
    ...r
  } = aRun({
    id,
    incidentId,
    incident: anIncident({ id: incidentId, number }),
  });
  return r;
};

/** A SQLite store as a stopped bot leaves it: runs, events, and jobs queued, running and dead. */
async function sqliteWithHistory(): Promise<{
  path: string;
  expected: Awaited<ReturnType<typeof snapshot>>;
}> {
  const path = join(mkdtempSync(join(tmpdir(), 'migrate-')), 'bot.db');
  const s = new SqliteStore({ path });
  await s.saveIncident(anIncident({ id: 'QA', number: 1 }));
  await s.saveIncident(anIncident({ id: 'QB', number: 2, title: 'Ünïcode “title” <b>' }));
  for (const [id, incidentId] of [
    ['ev-1', 'QA'],
    ['ev-2', 'QB'],
    ['ev-3', 'QB'],
  ] as const) {
    await s.recordEvent(
      {
        id,
        type: 'incident.resolved',
        incidentId,
        occurredAt: '2024-01-01T00:00:00Z',
        receivedAt: 1_700_000_000_000,
        payload: `{"event":{"id":"${id}"},  "kept": "as sent"}`,
      },
      [processEventJob(id, incidentId)],
    );
  }
  await s.openRun(newRun('run-a', 'QA', 1), [syncMessageJob('run-a')]);
  await s.openRun(newRun('run-b', 'QB', 2), []);
  await s.transitionRun(
    'run-b',
    ['awaiting_approval'],
    'finished',
    { decidedBy: 'UADA', pullRequests: ['https://github.com/acme/pm/pull/9'], result: { summary: 'done' } },
    [threadReplyJob('run-b', 'finished')],
  );
  const now = Date.now();
  // ev-1 processed (deleted), ev-2 running when the bot stopped, run-a's message given up.
  await s.completeJob((await s.claimJob(now, now + 60_000)) as Job);
  await s.claimJob(now, now + 60_000);
  const doomed = (await s.claimJob(now, now + 60_000)) as Job;
  await s.buryJob(doomed, 'Slack refused: invalid_blocks');
  const expected = await snapshot(s);
  await s.close();
  return { path, expected };
}

async function snapshot(s: SqliteStore | PostgresStore) {
  return {
    incidents: [await s.getIncident('QA'), await s.getIncident('QB')],
    events: await Promise.all(['ev-1', 'ev-2', 'ev-3'].map((id) => s.getEvent(id))),
    runs: [...(await s.runsForIncident('QA')), ...(await s.runsForIncident('QB'))],
  };
}

describe('npm run migrate-store', () => {
  it('copies incidents, runs, events and open jobs to Postgres; a second run changes nothing', async () => {
    const { path, expected } = await sqliteWithHistory();
    const db = await createTestDatabase();
    databases.push(db);

    const first = await tool('--from', `sqlite:${path}`, '--to', db.url);
    expect(first.stdout).toContain('incidents: 2 copied, 0 already there');
    expect(first.stdout).toContain('runs: 2 copied, 0 already there');
    expect(first.stdout).toContain('events: 3 copied, 0 already there');
    expect(first.stdout).toContain('jobs: 4 copied, 0 already there');
    expect(first.stdout).not.toContain('postgres@');

    const second = await tool('--from', `sqlite:${path}`, '--to', db.url);
    expect(second.stdout).toContain('incidents: 0 copied, 2 already there');
    expect(second.stdout).toContain('jobs: 0 copied, 4 already there');

    const pgStore = new PostgresStore({ url: db.url });
    try {
      const copied = await snapshot(pgStore);
      expect(copied).toEqual(expected);
      // The job left running is queued again; the buried one stays dead.
      expect(await pgStore.countJobs()).toEqual({ queued: 3, running: 0, dead: 1 });
      const now = Date.now();
      const claimed: Job[] = [];
      for (
        let job = await pgStore.claimJob(now, now + 60_000);
        job;
        job = await pgStore.claimJob(now, now + 60_000)
      )
        claimed.push(job);
      expect(claimed.map((j) => [j.kind, j.lane]).sort()).toEqual(
        [
          ['process_event', 'incident:QB'],
          ['thread_reply', 'slack:run-b'],
        ].sort(),
      );
      // ev-2's job (attempt 1 in SQLite) keeps its attempts and runs before ev-3's in the lane.
      const qb = claimed.find((j) => j.lane === 'incident:QB');
      expect(qb).toMatchObject({ payload: { eventId: 'ev-2' }, attempts: 2 });
      for (const j of claimed) await pgStore.completeJob(j);

      // After the copied jobs ran on Postgres, a third run still does not queue them again.
      const third = await tool(`--from=sqlite:${path}`, `--to=${db.url}`);
      expect(third.stdout).toContain('jobs: 0 copied, 4 already there');
      expect(await pgStore.countJobs()).toEqual({ queued: 1, running: 0, dead: 1 });
    } finally {
      await pgStore.close();
    }
  });

  it('refuses while a bot owns the SQLite file, and explains bad arguments', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'migrate-')), 'bot.db');
    const live = new SqliteStore({ path });
    try {
      await expect(
        tool('--from', `sqlite:${path}`, '--to', 'postgres://127.0.0.1:1/x'),
      ).rejects.toMatchObject({
        code: 1,
        stderr: expect.stringMatching(/in use by another postmortem-bot.*stop the bot before migrating/s),
      });
    } finally {
      await live.close();
    }
    await expect(tool('--from', 'mysql://x', '--to', 'postgres://h/db')).rejects.toMatchObject({
      stderr: expect.stringContaining('--from must be sqlite:'),
    });
    await expect(tool('--from', `sqlite:${path}`, '--to', 'sqlite:/tmp/x.db')).rejects.toMatchObject({
      stderr: expect.stringContaining('--to must be a postgres://'),
    });
    await expect(
      tool('--from', 'sqlite:/nonexistent/bot.db', '--to', 'postgres://h/db'),
    ).rejects.toMatchObject({
      stderr: expect.stringContaining('no such SQLite file'),
    });
  });
});
