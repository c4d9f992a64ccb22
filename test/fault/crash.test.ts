import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite.js';
import { BotProcess, deliver } from '../helpers/bot-process.js';
import { FakeDevin } from '../helpers/fake-devin.js';
import { FakeSlack } from '../helpers/fake-slack.js';
import { fixture, resolvedEvent, testEnv, waitFor } from '../helpers/harness.js';

/**
 * The bot as a real process, killed with SIGKILL at random moments while a stream of webhooks arrives and
 * while it works, and restarted on the same database each time. PagerDuty's side is played faithfully:
 * a delivery that got no 2xx is delivered again.
 */

const INCIDENTS = 60;
const AUTO = 20;
/** Incidents spread over six services with their own channels, as teams do (Slack paces each channel). */
const CHANNELS = ['CTEAM00001', 'CTEAM00002', 'CTEAM00003', 'CTEAM00004', 'CTEAM00005', 'CTEAM00006'];

function incidentStream(): string[] {
  const deliveries: string[] = [];
  for (let n = 0; n < INCIDENTS; n++) {
    const id = `PCRASH${n}`;
    const triggered = fixture('pagerduty/incident-triggered.json');
    triggered.event.id = `crash-trigger-${n}`;
    triggered.event.data.id = id;
    deliveries.push(JSON.stringify(triggered));
    const resolved = JSON.stringify(
      resolvedEvent({
        eventId: `crash-resolve-${n}`,
        incidentId: id,
        number: 9000 + n,
        priority: n < AUTO ? 'P1' : 'P3',
      }),
    );
    deliveries.push(resolved);
    if (n % 3 === 0) deliveries.push(resolved);
  }
  return deliveries;
}

let slack: FakeSlack;
let devin: FakeDevin;
let bot: BotProcess | undefined;
afterAll(async () => {
  await bot?.kill();
  await slack?.close();
  await devin?.close();
});

describe('crash safety (SIGKILL at random points)', () => {
  it('every resolved incident ends with exactly one session or a visible state, none lost, none doubled', async () => {
    slack = await new FakeSlack('xoxb-test-token', ['CDEFAULT01', ...CHANNELS]).start();
    const dir = mkdtempSync(join(tmpdir(), 'crash-'));
    const routing = join(dir, 'routing.json');
    writeFileSync(
      routing,
      JSON.stringify({ services: Object.fromEntries(CHANNELS.map((c, i) => [`PSVC${i}`, { channel: c }])) }),
    );
    devin = await new FakeDevin().start();
    devin.latencyMs = 150;
    const dbPath = join(mkdtempSync(join(tmpdir(), 'crash-')), 'bot.db');
    bot = new BotProcess({
      ...(testEnv(slack, devin, dbPath, {
        LOG_LEVEL: 'warn',
        DEVIN_RECONCILE_WINDOW: '2s',
        // Every request its own message (no digest, which has its own tests): this test checks each is posted.
        SLACK_DIGEST_AFTER: '0',
      }) as Record<string, string>),
    });
    await bot.start();
    const b = bot;

    // A chaos monkey kills the bot six times, 0.3–1.2 s apart, while events stream in and while the
    // backlog is worked on, restarting it each time.
    const chaos = (async () => {
      let seed = 7;
      const random = () => {
        seed = (seed * 48271) % 2147483647;
        return seed / 2147483647;
      };
      while (b.kills < 6) {
        await sleep(300 + random() * 900);
        await b.kill();
        await b.start();
      }
    })();

    const deliveries = incidentStream();
    let next = 0;
    const statuses: number[] = [];
    await Promise.all(
      Array.from({ length: 2 }, async () => {
        while (next < deliveries.length) {
          statuses.push(await deliver(b, deliveries[next++] as string));
          await sleep(25);
        }
      }),
    );
    await chaos;

    // The bot under test is another process and owns the file (a Store opened here would refuse it, as it
    // should): while it runs, its progress is watched from outside, read-only, as an operator would.
    const db = () => new Database(dbPath, { readonly: true, timeout: 5000 });
    const settled = () => {
      const d = db();
      try {
        const runs = d.prepare('SELECT COUNT(*) AS n FROM runs').get() as { n: number };
        const open = d
          .prepare(
            `SELECT COUNT(*) AS n FROM runs WHERE state = 'starting' OR (state = 'awaiting_approval' AND slack_ts IS NULL)
               OR (state = 'started' AND slack_ts IS NULL)`,
          )
          .get() as { n: number };
        const jobs = d
          .prepare(`SELECT COUNT(*) AS n FROM jobs WHERE state IN ('queued', 'running')`)
          .get() as { n: number };
        return runs.n === INCIDENTS && open.n === 0 && jobs.n === 0;
      } finally {
        d.close();
      }
    };
    try {
      await waitFor(settled, 'every incident to be decided and reported', 150_000);
    } catch (err) {
      const d = db();
      const states = d
        .prepare('SELECT state, slack_ts IS NULL AS unposted, COUNT(*) AS n FROM runs GROUP BY 1, 2')
        .all();
      const jobs = d
        .prepare('SELECT kind, state, attempts, last_error, run_at - ? AS due_in FROM jobs')
        .all(Date.now());
      d.close();
      throw new Error(
        `${(err as Error).message}: runs ${JSON.stringify(states)} jobs ${JSON.stringify(jobs).slice(0, 3000)}`,
      );
    }

    // Stopped cleanly, the bot gives the file up: the outcome is read through the store.
    await b.stop();
    const store = new SqliteStore({ path: dbPath });
    const runs = await store.recentRuns(INCIDENTS * 2);
    const dead = await store.listJobs({ state: 'dead' });
    const events = await store.countEvents();
    await store.close();

    expect(statuses.every((s) => s === 200 || s === 202)).toBe(true);
    expect(b.kills).toBe(6);
    expect(events).toBe(INCIDENTS * 2);
    expect(new Set(runs.map((r) => r.incidentId)).size).toBe(INCIDENTS);
    expect(dead).toEqual([]);
    const byIncident = new Map(runs.map((r) => [r.incidentId, r.state]));
    const sessionsPer = new Map<string, number>();
    for (const s of devin.sessions) {
      const tag = s.tags.find((t) => t.startsWith('incident:'))?.slice('incident:'.length) ?? '';
      sessionsPer.set(tag, (sessionsPer.get(tag) ?? 0) + 1);
    }
    for (let n = 0; n < INCIDENTS; n++) {
      const id = `PCRASH${n}`;
      if (n < AUTO) {
        // Exactly one session, or a failure the channel can see.
        expect(
          byIncident.get(id) === 'start_failed' ||
            (byIncident.get(id) === 'started' && sessionsPer.get(id) === 1),
        ).toBe(true);
      } else {
        expect(byIncident.get(id)).toBe('awaiting_approval');
        expect(sessionsPer.get(id)).toBeUndefined();
      }
    }
    expect([...sessionsPer.values()].every((c) => c === 1)).toBe(true);
    // Every incident's message reached Slack. A kill between Slack's answer and recording it can repeat a
    // post (Slack has no idempotency key): at most one per kill.
    const posts = slack.callsOf('chat.postMessage');
    const postsPer = new Map<string, number>();
    for (const p of posts) {
      const id = /incidents\/(PCRASH\d+)\|/.exec(JSON.stringify(p.args.blocks))?.[1] ?? '';
      postsPer.set(id, (postsPer.get(id) ?? 0) + 1);
    }
    for (let n = 0; n < INCIDENTS; n++) expect(postsPer.get(`PCRASH${n}`)).toBeGreaterThanOrEqual(1);
    expect(posts.length - INCIDENTS).toBeLessThanOrEqual(b.kills);
  }, 240_000);
});
