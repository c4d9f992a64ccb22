import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createPostmortemBot, type PostmortemBot } from '../../src/app.js';
import { createLogger } from '../../src/logging.js';
import { FakeDevin } from '../helpers/fake-devin.js';
import { FakePagerDuty } from '../helpers/fake-pagerduty.js';
import { FakeSlack } from '../helpers/fake-slack.js';
import {
  LogCapture,
  postPagerDuty,
  resolvedEvent,
  testConfig,
  testEnv,
  waitFor,
} from '../helpers/harness.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

/**
 * Storms on several replicas: two bots share one Postgres database, and every incident's resolution is
 * delivered to both at once (a redelivery landing on the other replica). The group is still one run, one
 * Slack message and one Devin session told every incident once.
 */

const INCIDENTS = 40;
const BASE = Date.parse('2024-03-05T14:00:00.000Z');
const incidentId = (n: number) => `PREPSTORM${String(n).padStart(3, '0')}`;

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
  cleanup = [];
});

describe('storms on two replicas sharing Postgres', () => {
  it('40 P1 incidents of one service, each delivered to both replicas at once: one session told all 40, one message', async () => {
    const db: TestDatabase = await createTestDatabase();
    cleanup.push(() => db.drop());
    const slack = await new FakeSlack().start();
    const devin = await new FakeDevin().start();
    const pagerduty = await new FakePagerDuty().start();
    devin.latencyMs = 30;
    cleanup.push(
      () => slack.close(),
      () => devin.close(),
      () => pagerduty.close(),
    );
    const env = testEnv(
      slack,
      devin,
      'unused.db',
      { DATABASE_URL: db.url, DATABASE_POOL_SIZE: '4', STORM_WINDOW: '10m', LOG_LEVEL: 'warn' },
      pagerduty,
    );
    const bots: { bot: PostmortemBot; url: string }[] = [];
    for (let replica = 0; replica < 2; replica++) {
      const bot = createPostmortemBot(testConfig(env), {
        logger: createLogger('warn', new LogCapture()),
        botIdentity: { botId: 'BBOT0001', botUserId: 'UBOT0001', teamId: 'T0001', enterpriseId: undefined },
      });
      const server = await bot.start(0);
      cleanup.push(() => bot.stop());
      bots.push({ bot, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
    }

    const ids = Array.from({ length: INCIDENTS }, (_, n) => incidentId(n));
    await Promise.all(
      ids.map(async (id, n) => {
        const body = resolvedEvent({
          eventId: `rep-storm-${n}`,
          incidentId: id,
          number: 7000 + n,
          priority: 'P1',
          occurredAt: new Date(BASE + n * 500).toISOString(),
        });
        const answers = await Promise.all(bots.map((b) => postPagerDuty(b.url, body)));
        // One replica records the event (202), the other finds it recorded already (200).
        expect(answers.map((a) => a.status).sort()).toEqual([200, 202]);
      }),
    );

    const told = () => {
      const prompts = devin.createRequests.map((r) => String((r as { prompt?: string }).prompt));
      return [...prompts, ...devin.messages.map((m) => m.message)].join('\n');
    };
    await waitFor(
      () => ids.every((id) => told().includes(`"${id}"`)),
      'every incident to reach the session',
      90_000,
    );
    await waitFor(
      () =>
        [...slack.messages.values()].some((m) =>
          JSON.stringify(m.blocks).includes(`${INCIDENTS} incidents on Checkout API`),
        ),
      'the group message to count every incident',
      60_000,
    );
    // Nothing left to do on either replica.
    await waitFor(
      async () => {
        await Promise.all(bots.map((b) => b.bot.jobs.settled()));
        const jobs = await bots[0]?.bot.store.countJobs();
        return jobs?.queued === 0 && jobs.running === 0;
      },
      'both replicas to settle',
      60_000,
    );

    expect(devin.createRequests).toHaveLength(1);
    expect(new Set(devin.messages.map((m) => m.sessionId))).toEqual(new Set([devin.sessions[0]?.session_id]));
    // Each incident told once: in the prompt, or in one follow-up message.
    const prompt = String((devin.createRequests[0] as { prompt: string }).prompt);
    for (const id of ids) {
      const inMessages = devin.messages.filter((m) => m.message.includes(`"${id}"`)).length;
      expect(inMessages + (prompt.includes(`"${id}"`) ? 1 : 0), id).toBe(1);
    }
    expect(slack.callsOf('chat.postMessage')).toHaveLength(1);
    const store = bots[0]?.bot.store;
    const runs = (await store?.recentRuns(100)) ?? [];
    expect(runs).toHaveLength(1);
    expect(await store?.stormMembers(runs[0]?.id ?? '')).toHaveLength(INCIDENTS);
  }, 240_000);
});
