import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { BotProcess, deliver } from '../helpers/bot-process.js';
import { FakeDevin } from '../helpers/fake-devin.js';
import { FakeSlack } from '../helpers/fake-slack.js';
import {
  buttonClick,
  fixture,
  postSlackInteraction,
  postSlashCommand,
  resolvedEvent,
  testEnv,
  waitFor,
} from '../helpers/harness.js';
import { createTestDatabase, sql, type TestDatabase } from '../helpers/postgres.js';

/**
 * Three replicas of the built bot on one Postgres database, behind no load balancer but the test's own
 * choice of replica for each request. Every PagerDuty event is delivered to two different replicas at once
 * (a redelivery landing elsewhere), one replica is SIGKILLed twice while the stream arrives and restarted,
 * approvals are clicked through a replica other than the ones that received the incident's events, and
 * Devin's sessions are moved to finished. PagerDuty's side is played faithfully: a delivery without a 2xx
 * is delivered again, to the same replica.
 */

const INCIDENTS = 100;
/** Priorities by incident number: P1 and P2 start by themselves (40), the others ask first (60). */
const PRIORITIES = ['P1', 'P3', 'P2', 'P4', null] as const;
const isAuto = (n: number) => n % 5 === 0 || n % 5 === 2;
/** Of the incidents that ask, two in three are approved and one is skipped. */
const isSkipped = (n: number) => !isAuto(n) && n % 3 === 0;
/** Twenty services, each reporting in its own channel, as teams do (Slack paces each channel). */
const CHANNELS = Array.from({ length: 20 }, (_, i) => `CREPL${String(i).padStart(5, '0')}`);
const KILLS = 2;
const WORKERS_PER_REPLICA = 4;
const PR = (n: number) => `https://github.com/acme/postmortems/pull/${n}`;
const incidentId = (n: number) => `PREPL${n}`;

let slack: FakeSlack | undefined;
let devin: FakeDevin | undefined;
let db: TestDatabase | undefined;
const bots: BotProcess[] = [];
afterAll(async () => {
  await Promise.all(bots.map((b) => b.kill()));
  await slack?.close();
  await devin?.close();
  await db?.drop();
});

/** An incident's three events, oldest first: triggered (no priority yet), priority set, resolved. */
function eventsOf(n: number): string[] {
  const id = incidentId(n);
  const service = { id: `PSVCR${n % CHANNELS.length}`, summary: `Service ${n % CHANNELS.length}` };
  const priority = PRIORITIES[n % PRIORITIES.length] ?? null;
  const triggered = fixture('pagerduty/incident-triggered.json');
  triggered.event.id = `repl-trigger-${n}`;
  Object.assign(triggered.event.data, {
    id,
    number: 20_000 + n,
    html_url: `https://acme.pagerduty.com/incidents/${id}`,
    service: { ...triggered.event.data.service, ...service },
  });
  const prioritised = fixture('pagerduty/incident-priority-updated.json');
  prioritised.event.id = `repl-priority-${n}`;
  prioritised.event.occurred_at = '2024-03-05T10:00:00.000Z';
  Object.assign(prioritised.event.data, {
    id,
    number: 20_000 + n,
    html_url: `https://acme.pagerduty.com/incidents/${id}`,
    service: { ...prioritised.event.data.service, ...service },
    priority: priority === null ? null : { ...prioritised.event.data.priority, summary: priority },
  });
  const resolved = resolvedEvent({
    eventId: `repl-resolve-${n}`,
    incidentId: id,
    number: 20_000 + n,
    priority,
    serviceId: service.id,
    serviceName: service.summary,
  });
  return [triggered, prioritised, resolved].map((e) => JSON.stringify(e));
}

/** The most calls in any one-second window. */
function maxPerSecond(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while ((sorted[end] as number) - (sorted[start] as number) >= 1000) start++;
    max = Math.max(max, end - start + 1);
  }
  return max;
}

describe('several replicas on one Postgres database', () => {
  it('share intake, jobs, Slack pacing and session polling: nothing lost, nothing doubled, through two kills', async () => {
    const t0 = Date.now();
    db = await createTestDatabase();
    slack = await new FakeSlack('xoxb-test-token', ['CDEFAULT01', ...CHANNELS]).start();
    slack.channelLimit = { burst: 2 };
    devin = await new FakeDevin().start();
    devin.latencyMs = 30;
    const routing = join(mkdtempSync(join(tmpdir(), 'replicas-')), 'routing.json');
    writeFileSync(
      routing,
      JSON.stringify({ services: Object.fromEntries(CHANNELS.map((c, i) => [`PSVCR${i}`, { channel: c }])) }),
    );
    const env = testEnv(slack, devin, 'unused.db', {
      DATABASE_URL: db.url,
      DATABASE_POOL_SIZE: '4',
      LOG_LEVEL: 'warn',
      ROUTING_FILE: routing,
      DEVIN_RECONCILE_WINDOW: '2s',
      SESSION_POLL_CRON: '*/2 * * * * *',
    }) as Record<string, string>;
    for (let i = 0; i < 3; i++) bots.push(new BotProcess(env));
    const replica = (i: number) => bots[i % 3] as BotProcess;

    // Three replicas starting at the same moment on an empty database: one migrates, all become ready.
    await Promise.all(bots.map((b) => b.start(30_000)));
    const versions = await sql(db.url, 'SELECT version FROM schema_migrations ORDER BY version');
    expect(versions.map((v) => v.version)).toEqual(MIGRATIONS.map((m) => m.version));
    const started = Date.now();

    // The stream: each incident's events in order (PagerDuty keeps order per incident), five incidents at
    // a time; each event to two different replicas at once.
    const statuses: number[] = [];
    let delivered = 0;
    let nextIncident = 0;
    const stream = Promise.all(
      Array.from({ length: 5 }, async () => {
        while (nextIncident < INCIDENTS) {
          const n = nextIncident++;
          for (const [k, body] of eventsOf(n).entries()) {
            statuses.push(
              ...(await Promise.all([deliver(replica(n + k), body), deliver(replica(n + k + 1), body)])),
            );
            delivered++;
            await sleep(60);
          }
        }
      }),
    );
    // Replica 0 is killed twice mid-stream (a third and two thirds of the way) and restarted.
    const victim = replica(0);
    const chaos = (async () => {
      for (let kill = 1; kill <= KILLS; kill++) {
        await waitFor(() => delivered >= (INCIDENTS * 3 * kill) / (KILLS + 1), `event ${kill} third`, 60_000);
        await victim.kill();
        await victim.start(30_000);
      }
    })();
    await Promise.all([stream, chaos]);
    const streamed = Date.now();

    // People click Approve or Skip on each message that asks, through the replica that got none of the
    // incident's resolve deliveries; Devin finishes every session it was asked for.
    const clicked = new Set<number>();
    let working = true;
    const people = (async () => {
      while (working) {
        for (let n = 0; n < INCIDENTS; n++) {
          if (isAuto(n) || clicked.has(n)) continue;
          const message = [...(slack as FakeSlack).messages.values()].find(
            (m) =>
              JSON.stringify(m.blocks).includes(`incidents/${incidentId(n)}|`) &&
              JSON.stringify(m.blocks).includes('postmortem_approve'),
          );
          if (!message) continue;
          const action = isSkipped(n) ? 'postmortem_skip' : 'postmortem_approve';
          const res = await postSlackInteraction(
            replica(n + 1).url,
            buttonClick(slack as FakeSlack, message, action, 'UAPPROVER1'),
          ).catch(() => undefined);
          if (res?.status === 200) clicked.add(n);
        }
        await sleep(250);
      }
    })();
    const devinSide = (async () => {
      while (working) {
        for (const s of (devin as FakeDevin).sessions) {
          if (s.status === 'exit') continue;
          const n = Number(/incident:PREPL(\d+)/.exec(s.tags.join(' '))?.[1]);
          (devin as FakeDevin).update(s.session_id, {
            status: 'exit',
            status_detail: 'finished',
            pull_requests: [{ pr_url: PR(n), pr_state: 'open' }],
            structured_output: { summary: `Incident ${n} explained` },
          });
        }
        await sleep(300);
      }
    })();

    const url = db.url;
    const settled = async () => {
      const [runs] = await sql(url, 'SELECT COUNT(*)::int AS n FROM runs');
      const [open] = await sql(
        url,
        `SELECT COUNT(*)::int AS n FROM runs WHERE slack_ts IS NULL OR state NOT IN ('finished', 'skipped')`,
      );
      const [jobs] = await sql(url, `SELECT COUNT(*)::int AS n FROM jobs WHERE state <> 'dead'`);
      return runs.n === INCIDENTS && open.n === 0 && jobs.n === 0;
    };
    try {
      await waitFor(settled, 'every incident decided, reported and finished', 100_000);
    } catch (err) {
      const states = await sql(
        url,
        'SELECT state, slack_ts IS NULL AS unposted, COUNT(*)::int AS n FROM runs GROUP BY 1, 2',
      );
      const jobs = await sql(
        url,
        'SELECT kind, state, attempts, last_error, run_at - $1 AS due_in, locked_until - $1 AS lease_left FROM jobs',
        [Date.now()],
      );
      throw new Error(
        `${(err as Error).message}: runs ${JSON.stringify(states)} jobs ${JSON.stringify(jobs).slice(0, 3000)}\n` +
          bots.map((b) => b.output.slice(-1500)).join('\n---\n'),
      );
    } finally {
      working = false;
      await Promise.all([people, devinSide]);
    }
    const done = Date.now();

    // Intake: every delivery answered 2xx; every event stored once.
    expect(statuses.filter((s) => s !== 200 && s !== 202)).toEqual([]);
    expect(statuses).toHaveLength(INCIDENTS * 3 * 2);
    expect(statuses.filter((s) => s === 202).length).toBeLessThanOrEqual(INCIDENTS * 3);
    const [events] = await sql(url, 'SELECT COUNT(*)::int AS n FROM events');
    expect(events.n).toBe(INCIDENTS * 3);
    expect(victim.kills).toBe(KILLS);
    const [dead] = await sql(url, `SELECT COUNT(*)::int AS n FROM jobs WHERE state = 'dead'`);
    expect(dead.n).toBe(0);

    // One run per incident, in the state its story ends in.
    const runs = await sql<{
      incident_id: string;
      attempt: number;
      state: string;
      slack_ts: string;
      channel: string;
    }>(url, 'SELECT incident_id, attempt, state, slack_ts, channel FROM runs');
    expect(runs).toHaveLength(INCIDENTS);
    const runOf = new Map(runs.map((r) => [r.incident_id, r]));
    for (let n = 0; n < INCIDENTS; n++) {
      const run = runOf.get(incidentId(n));
      expect([incidentId(n), run?.attempt, run?.state]).toEqual([
        incidentId(n),
        1,
        isSkipped(n) ? 'skipped' : 'finished',
      ]);
      expect(run?.channel).toBe(CHANNELS[n % CHANNELS.length]);
    }

    // One Devin session per incident that started (by itself or approved), none for the skipped ones.
    const sessionsPer = new Map<string, number>();
    for (const s of devin.sessions) {
      const tag = s.tags.find((t) => t.startsWith('incident:'))?.slice('incident:'.length) ?? '';
      sessionsPer.set(tag, (sessionsPer.get(tag) ?? 0) + 1);
    }
    for (let n = 0; n < INCIDENTS; n++) {
      expect([incidentId(n), sessionsPer.get(incidentId(n))]).toEqual([
        incidentId(n),
        isSkipped(n) ? undefined : 1,
      ]);
    }

    // Every run's message posted, and finally showing its end; every finished session announced in its
    // thread. Slack has no idempotency key: a post that succeeded just before its replica was killed is
    // posted again (the documented one-request window), at most once per job in flight per kill.
    const posts = slack.callsOf('chat.postMessage');
    const topLevel = posts.filter((p) => p.args.thread_ts === undefined);
    const replies = posts.filter((p) => p.args.thread_ts !== undefined);
    const postsPer = new Map<string, number>();
    for (const p of topLevel) {
      const id = /incidents\/(PREPL\d+)\|/.exec(JSON.stringify(p.args.blocks))?.[1] ?? '';
      postsPer.set(id, (postsPer.get(id) ?? 0) + 1);
    }
    const repliesPer = new Map<string, number>();
    for (const p of replies)
      repliesPer.set(String(p.args.thread_ts), (repliesPer.get(String(p.args.thread_ts)) ?? 0) + 1);
    for (let n = 0; n < INCIDENTS; n++) {
      const run = runOf.get(incidentId(n));
      expect(postsPer.get(incidentId(n)) ?? 0).toBeGreaterThanOrEqual(1);
      const message = slack.messages.get(run?.slack_ts ?? '');
      expect(JSON.stringify(message?.blocks)).toContain(
        isSkipped(n) ? 'Postmortem skipped' : 'Postmortem ready',
      );
      if (!isSkipped(n)) {
        expect(repliesPer.get(run?.slack_ts ?? '') ?? 0).toBeGreaterThanOrEqual(1);
        expect(JSON.stringify(message?.blocks)).toContain(PR(n));
      } else expect(repliesPer.get(run?.slack_ts ?? '')).toBeUndefined();
    }
    const repeated =
      topLevel.length -
      INCIDENTS +
      (replies.length - (INCIDENTS - [...Array(INCIDENTS).keys()].filter(isSkipped).length));
    expect(repeated).toBeLessThanOrEqual(KILLS * WORKERS_PER_REPLICA);
    expect(clicked.size).toBe(INCIDENTS - [...Array(INCIDENTS).keys()].filter(isAuto).length);

    // Slack pacing across the replicas together: never more than two calls in a second into one channel.
    const perChannel = new Map<string, number[]>();
    for (const c of slack.calls) {
      if (!/^chat\.(postMessage|update)/.test(c.method)) continue;
      const list = perChannel.get(String(c.args.channel)) ?? [];
      list.push(c.at);
      perChannel.set(String(c.args.channel), list);
    }
    const busiest = Math.max(...[...perChannel.values()].map(maxPerSecond));
    expect(busiest).toBeLessThanOrEqual(2);
    expect(slack.rateLimited).toBe(0);

    // Each followed session polled by one replica per tick (every 2 s): never twice within one tick.
    const pollsPerTick = new Map<string, number>();
    for (const p of devin.polls) {
      const key = `${p.sessionId}@${Math.floor(p.at / 2000)}`;
      pollsPerTick.set(key, (pollsPerTick.get(key) ?? 0) + 1);
    }
    const doubled = [...pollsPerTick.entries()].filter(([, count]) => count > 1);
    expect(doubled).toEqual([]);

    // `/postmortem status` in one team's channel answers the same, from the shared state, on every replica.
    const statusTexts: string[] = [];
    for (const bot of bots) {
      const before = slack.responses.length;
      const res = await postSlashCommand({ url: bot.url, slack }, 'status', { channelId: CHANNELS[0] });
      expect(res.status).toBe(200);
      await waitFor(() => slack?.responses.length === before + 1, 'the status answer');
      statusTexts.push(String(slack.responses.at(-1)?.body.text));
    }
    expect(new Set(statusTexts).size).toBe(1);
    for (let n = 0; n < INCIDENTS; n += CHANNELS.length) expect(statusTexts[0]).toContain(`#${20_000 + n}`);

    // Graceful stops: each replica exits 0, well within the 40 s termination grace.
    const stops = await Promise.all(bots.map((b) => b.stop()));
    for (const s of stops) {
      expect(s.code).toBe(0);
      expect(s.ms).toBeLessThan(25_000);
    }
    console.info(
      `replicas: started in ${((started - t0) / 1000).toFixed(1)} s, stream of ${statuses.length} deliveries ` +
        `in ${((streamed - started) / 1000).toFixed(1)} s with ${KILLS} kills, all settled after ` +
        `${((done - streamed) / 1000).toFixed(1)} s more; ${topLevel.length} posts and ${replies.length} ` +
        `thread replies (${repeated} repeated), busiest channel ${busiest} calls/s, ${devin.polls.length} polls`,
    );
  }, 180_000);
});
