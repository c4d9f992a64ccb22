import { afterEach, describe, expect, it } from 'vitest';
import { DIGEST_APPROVE_ALL_ACTION_ID, DIGEST_REVIEW_ACTION_ID } from '../../src/slack/digest.js';
import { BotProcess, deliver } from '../helpers/bot-process.js';
import { FakeDevin } from '../helpers/fake-devin.js';
import { FakeSlack } from '../helpers/fake-slack.js';
import { buttonClick, postSlackInteraction, resolvedEvent, testEnv, waitFor } from '../helpers/harness.js';
import { createTestDatabase, sql, type TestDatabase } from '../helpers/postgres.js';

/**
 * The approval digest on two replicas of the built bot sharing one Postgres database: every request is
 * delivered to both at once, so placements, redraws and decisions race across processes. The channel
 * still gets five cards and one digest, and Approve all clicked on both replicas at the same moment by two
 * approvers starts exactly one session per request.
 */

const REQUESTS = 30;
let slack: FakeSlack | undefined;
let devin: FakeDevin | undefined;
let db: TestDatabase | undefined;
const bots: BotProcess[] = [];
afterEach(async () => {
  await Promise.all(bots.splice(0).map((b) => b.kill()));
  await slack?.close();
  await devin?.close();
  await db?.drop();
  slack = devin = db = undefined;
});

/** Two bots on one new Postgres database with the digest after five requests, started. */
async function twoReplicas(extra: Record<string, string>) {
  const made = {
    db: await createTestDatabase(),
    slack: await new FakeSlack('xoxb-test-token').start(),
    devin: await new FakeDevin().start(),
  };
  ({ db, slack, devin } = made);
  const env = testEnv(made.slack, made.devin, 'unused.db', {
    DATABASE_URL: made.db.url,
    DATABASE_POOL_SIZE: '4',
    LOG_LEVEL: 'warn',
    SLACK_DIGEST_AFTER: '5',
    ...extra,
  }) as Record<string, string>;
  for (let i = 0; i < 2; i++) bots.push(new BotProcess(env));
  await Promise.all(bots.map((bot) => bot.start(30_000)));
  const [a, b] = bots as [BotProcess, BotProcess];
  return { ...made, a, b };
}

describe('the approval digest on several replicas (Postgres)', () => {
  it('folds, redraws and decides each request once across two replicas', async () => {
    const { a, b, slack, devin, db } = await twoReplicas({ SLACK_APPROVERS: 'UALICE01,UBOB0001' });

    const bodies = Array.from({ length: REQUESTS }, (_, i) =>
      JSON.stringify(
        resolvedEvent({
          eventId: `EVT-REPL-DIGEST-${i}`,
          incidentId: `QREPLD${String(i).padStart(3, '0')}`,
          number: 7000 + i,
          priority: 'P3',
          serviceId: `PSVCD${String(i).padStart(3, '0')}`,
          serviceName: `Service ${i}`,
        }),
      ),
    );
    const statuses = await Promise.all(bodies.flatMap((body) => [deliver(a, body), deliver(b, body)]));
    expect(statuses.every((s) => s < 300)).toBe(true);

    const url = db.url;
    const quiet = async () => {
      const [jobs] = await sql(url, `SELECT COUNT(*)::int AS n FROM jobs WHERE state <> 'dead'`);
      return jobs?.n === 0;
    };
    await waitFor(
      async () => {
        const [runs] = await sql(
          url,
          `SELECT COUNT(*)::int AS n FROM runs WHERE state = 'awaiting_approval'`,
        );
        return runs?.n === REQUESTS && (await quiet());
      },
      'every request placed and drawn',
      60_000,
    );

    const posts = slack.callsOf('chat.postMessage').filter((c) => !c.args.thread_ts);
    expect(posts).toHaveLength(6);
    const placements = await sql(
      url,
      'SELECT shown_in, COUNT(*)::int AS n FROM approval_placements GROUP BY 1 ORDER BY 1',
    );
    expect(placements).toEqual([
      { shown_in: 'card', n: 5 },
      { shown_in: 'digest', n: 25 },
    ]);
    const digest = [...slack.messages.values()].find((m) =>
      JSON.stringify(m.blocks).includes(DIGEST_REVIEW_ACTION_ID),
    );
    expect(digest).toBeDefined();
    expect(JSON.stringify(digest?.blocks)).toContain(`${REQUESTS} incidents wait for a postmortem decision`);

    const shown = {
      ...(digest as NonNullable<typeof digest>),
      blocks: structuredClone(digest?.blocks ?? []),
    };
    const answers = await Promise.all([
      postSlackInteraction(a.url, buttonClick(slack, shown, DIGEST_APPROVE_ALL_ACTION_ID, 'UALICE01')),
      postSlackInteraction(b.url, buttonClick(slack, shown, DIGEST_APPROVE_ALL_ACTION_ID, 'UBOB0001')),
    ]);
    expect(answers.map((r) => r.status)).toEqual([200, 200]);
    await waitFor(() => (slack as FakeSlack).responses.length === 2, 'both clicks answered', 60_000);
    await waitFor(
      async () => {
        const [started] = await sql(url, `SELECT COUNT(*)::int AS n FROM runs WHERE state = 'started'`);
        return started?.n === REQUESTS && (await quiet());
      },
      // Slack is paced at one call per second in the channel (about 65 calls here): generous.
      'every request approved, its session started and its message posted',
      240_000,
    );
    expect(devin.createRequests).toHaveLength(REQUESTS);
    const decided = slack.responses.map((r) => Number(/^Approved (\d+)/.exec(String(r.body.text))?.[1] ?? 0));
    expect(decided.reduce((x, y) => x + y, 0)).toBe(REQUESTS);
    // The channel stays readable on two replicas too: the approved requests report in the digest's thread.
    expect(slack.callsOf('chat.postMessage').filter((c) => !c.args.thread_ts)).toHaveLength(6);
    expect(slack.callsOf('chat.postMessage').filter((c) => c.args.thread_ts === digest?.ts)).toHaveLength(25);
  }, 420_000);

  it('places each run started by policy once across two replicas, the channel bounded to five posts and one digest', async () => {
    const { a, b, slack, devin, db } = await twoReplicas({
      SLACK_APPROVERS: 'UALICE01',
      STORM_WINDOW: '10m',
    });

    // 12 P1 groups (two incidents each, 12 services), every resolution delivered to both replicas at once.
    const GROUPS = 12;
    const bodies = Array.from({ length: GROUPS * 2 }, (_, n) =>
      JSON.stringify(
        resolvedEvent({
          eventId: `EVT-REPL-P1-${n}`,
          incidentId: `QREPLP${String(n).padStart(3, '0')}`,
          number: 8000 + n,
          priority: 'P1',
          serviceId: `PSVCP${String(Math.floor(n / 2)).padStart(3, '0')}`,
          serviceName: `Payments ${Math.floor(n / 2)}`,
        }),
      ),
    );
    const statuses = await Promise.all(bodies.flatMap((body) => [deliver(a, body), deliver(b, body)]));
    expect(statuses.every((s) => s < 300)).toBe(true);

    const url = db.url;
    await waitFor(
      async () => {
        const [runs] = await sql(
          url,
          `SELECT COUNT(*)::int AS n FROM runs WHERE state = 'started' AND slack_ts IS NOT NULL`,
        );
        const [jobs] = await sql(url, `SELECT COUNT(*)::int AS n FROM jobs WHERE state <> 'dead'`);
        return runs?.n === GROUPS && jobs?.n === 0;
      },
      'every group started and its message posted',
      120_000,
    );
    expect(devin.createRequests).toHaveLength(GROUPS);
    const placements = await sql(
      url,
      `SELECT shown_in, COUNT(*)::int AS n, COUNT(thread_ts)::int AS threaded FROM approval_placements
         WHERE kind = 'run' GROUP BY 1 ORDER BY 1`,
    );
    expect(placements).toEqual([
      { shown_in: 'card', n: 5, threaded: 0 },
      { shown_in: 'digest', n: GROUPS - 5, threaded: GROUPS - 5 },
    ]);
    const top = slack.callsOf('chat.postMessage').filter((c) => !c.args.thread_ts);
    expect(top).toHaveLength(6);
    const digest = [...slack.messages.values()].find((m) => m.text.includes('started automatically'));
    expect(digest).toBeDefined();
    // Each run's message posted once: five in the channel, the rest in the digest's thread.
    const inThread = slack.callsOf('chat.postMessage').filter((c) => c.args.thread_ts === digest?.ts);
    expect(inThread).toHaveLength(GROUPS - 5);
    expect(JSON.stringify(digest?.blocks)).toContain(`Started automatically: ${GROUPS - 5}`);
    const [dups] = await sql(
      url,
      'SELECT COUNT(*)::int AS n FROM (SELECT slack_ts FROM runs GROUP BY slack_ts HAVING COUNT(*) > 1) AS d',
    );
    expect(dups?.n).toBe(0);
  }, 300_000);
});
