import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/config.js';
import { BUILT_DIR } from '../global-setup.js';
import { type Harness, postPagerDuty, resolvedEvent, startHarness, waitFor } from '../helpers/harness.js';
import { createTestDatabase } from '../helpers/postgres.js';

/** `npm run jobs -- …` as built, with the bot's .env, while the bot runs on the same store. */
function jobs(env: Env, ...args: string[]): Promise<{ code: number; out: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'jobs-'));
  writeFileSync(
    join(dir, '.env'),
    Object.entries(env)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n'),
  );
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(BUILT_DIR, 'tools', 'jobs.js'), ...args],
      { cwd: dir, env: { PATH: process.env.PATH, HOME: process.env.HOME }, timeout: 20_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    );
  });
}

let h: Harness;
afterEach(async () => {
  await h?.close();
});

/** Slack refuses the approval message for good (a bad token): its job dies. */
async function deadMessageJob(
  harness: Harness,
  priority = 'P3',
  incidentId = 'Q2K8TBZ1L3KJ7M',
  number = 4711,
) {
  harness.slack.failNext('chat.postMessage', { kind: 'error', error: 'invalid_auth' });
  await postPagerDuty(
    harness.url,
    resolvedEvent({ priority, incidentId, number, eventId: `evt-${incidentId}` }),
  );
  return waitFor(async () => {
    const runs = (await harness.bot.store.runsForIncident(incidentId)).map((r) => r.id);
    const dead = await harness.bot.store.listJobs({ state: 'dead' });
    return dead.find((j) => j.kind === 'sync_message' && runs.includes(String(j.payload.runId)));
  }, `the dead job of ${incidentId}`);
}

describe('npm run jobs', () => {
  it('lists and shows a dead job; retry revives it and the running bot completes it', async () => {
    h = await startHarness();
    const job = await deadMessageJob(h);
    const runId = String(job.payload.runId);

    const list = await jobs(h.env, 'list');
    expect(list.code).toBe(0);
    expect(list.out).toContain('1 dead job (oldest first):');
    expect(list.out).toMatch(
      new RegExp(
        `#${job.id} {2}sync_message {2}run ${runId} {2}incident Q2K8TBZ1L3KJ7M \\(#4711\\) {2}1 attempt {2}queued \\d{4}-\\d\\d-\\d\\dT[\\d:]+Z, last due`,
      ),
    );
    expect(list.out).toContain('last error: Slack refused the call: invalid_auth');

    const show = await jobs(h.env, 'show', String(job.id));
    expect(show.code).toBe(0);
    expect(show.out).toContain('state:      dead');
    expect(show.out).toContain(`run:        ${runId}`);
    expect(show.out).toContain('last error: Slack refused the call: invalid_auth');
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(0);

    // Slack takes the message now: retry, and the bot (still running) posts it.
    const retry = await jobs(h.env, 'retry', String(job.id));
    expect(retry.out).toContain(`Queued again, due now: #${job.id}.`);
    expect(retry.code).toBe(0);
    const message = await waitFor(
      () =>
        [...h.slack.messages.values()].find((m) => JSON.stringify(m.blocks).includes('postmortem_approve')),
      'the approval message, posted by the revived job',
    );
    expect(message.channel).toBe('CDEFAULT01');
    await waitFor(async () => (await h.bot.store.getJob(job.id)) === undefined, 'the job to complete');
    expect(await h.bot.store.countJobs()).toMatchObject({ dead: 0 });
    expect((await jobs(h.env, 'list')).out).toBe('No dead jobs.\n');
    // Retrying it again: it is no dead job any more.
    const again = await jobs(h.env, 'retry', String(job.id));
    expect(again.code).toBe(1);
    expect(again.out).toContain(`#${job.id} is not a dead job`);
  });

  it('retry --all revives every dead job; discard drops one for good', async () => {
    h = await startHarness();
    const first = await deadMessageJob(h, 'P3', 'QFIRST0001', 101);
    const second = await deadMessageJob(h, 'P4', 'QSECOND001', 102);
    const dropped = await jobs(h.env, 'discard', String(first.id));
    expect(dropped.code).toBe(0);
    expect(dropped.out).toContain(`Discarded dead job #${first.id}`);
    expect(await h.bot.store.getJob(first.id)).toBeUndefined();
    expect((await jobs(h.env, 'discard', String(first.id))).code).toBe(1);

    const all = await jobs(h.env, 'retry', '--all');
    expect(all.out).toContain(`Queued again, due now: #${second.id}.`);
    await waitFor(
      async () => (await h.bot.store.getJob(second.id)) === undefined,
      'the revived job to complete',
    );
    const posted = [...h.slack.messages.values()].map((m) => JSON.stringify(m.blocks));
    expect(posted.filter((b) => b.includes('#102'))).toHaveLength(1);
    expect(posted.filter((b) => b.includes('#101'))).toHaveLength(0);
    expect((await jobs(h.env, 'retry', '--all')).out).toContain('No dead jobs to retry.');
  });

  it('works on Postgres too, and explains bad arguments', async () => {
    const db = await createTestDatabase();
    try {
      h = await startHarness({ env: { DATABASE_URL: db.url } });
      const job = await deadMessageJob(h);
      const list = await jobs(h.env, 'list');
      expect(list.out).toContain(`#${job.id}  sync_message`);
      expect((await jobs(h.env, 'retry', String(job.id))).code).toBe(0);
      await waitFor(
        async () => (await h.bot.store.getJob(job.id)) === undefined,
        'the revived job to complete',
      );
      const bad = await jobs(h.env, 'retry', 'seven');
      expect(bad.code).toBe(1);
      expect(bad.out).toContain('expected a job ID (a number), not seven');
      expect(bad.out).toContain(
        'usage: npm run jobs -- list | show <id> | retry <id> | retry --all | discard <id>',
      );
    } finally {
      await h?.close();
      await db.drop();
    }
  });
});
