import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CronTicker } from '../../src/jobs/schedule.js';
import { createLogger } from '../../src/logging.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { waitFor } from '../helpers/harness.js';
import { createTestDatabase, sql, type TestDatabase } from '../helpers/postgres.js';

const logger = createLogger('silent');
const databases: TestDatabase[] = [];
const stores: PostgresStore[] = [];
const tickers: CronTicker[] = [];
afterEach(async () => {
  await Promise.all(tickers.splice(0).map((t) => t.stop()));
  await Promise.all(stores.splice(0).map((s) => s.close()));
});
afterAll(async () => {
  await Promise.all(databases.splice(0).map((d) => d.drop()));
});

/**
 * node-cron skips a tick whose timer fires more than a second late, which a loaded machine's event loop
 * does now and then: the waits are generous, and the assertions are about which replica ran what.
 */
const SLOW = 30_000;

/** Three replicas' tickers of one every-second schedule, each with its own store on one database. */
let url = '';

async function replicas(tick: (replica: number) => Promise<void>): Promise<CronTicker[]> {
  const db = await createTestDatabase();
  databases.push(db);
  url = db.url;
  const three = await Promise.all(
    [0, 1, 2].map(async (replica) => {
      const store = new PostgresStore({ url: db.url, poolSize: 2 });
      stores.push(store);
      await store.ping();
      const ticker = new CronTicker('follow-sessions', '* * * * * *', () => tick(replica), logger, {
        lease: { store, owner: `replica-${replica}`, now: Date.now },
      });
      tickers.push(ticker);
      return ticker;
    }),
  );
  for (const t of three) t.start();
  return three;
}

describe('CronTicker shared by replicas', () => {
  it(
    'runs each tick on one replica only',
    async () => {
      const ticks: { replica: number; second: number }[] = [];
      await replicas(async (replica) => {
        ticks.push({ replica, second: Math.floor(Date.now() / 1000) });
      });
      await waitFor(() => ticks.length >= 4, 'four ticks', SLOW);
      const perSecond = new Map<number, number>();
      for (const t of ticks) perSecond.set(t.second, (perSecond.get(t.second) ?? 0) + 1);
      expect([...perSecond.values()].every((n) => n === 1)).toBe(true);
    },
    2 * SLOW,
  );

  it(
    'a tick that outlasts the next one keeps the others off it; a stopped replica gives its lease up',
    async () => {
      const ticks: { replica: number; start: number; end: number }[] = [];
      let slow = true;
      const three = await replicas(async (replica) => {
        const start = Date.now();
        // The first tick takes 2.5 s: two or three ticks come due meanwhile.
        if (slow) {
          slow = false;
          await sleep(2500);
        }
        ticks.push({ replica, start, end: Date.now() });
      });
      await waitFor(() => ticks.length >= 3, 'three ticks', SLOW);
      const [first, ...rest] = ticks;
      // By the wall clock a timer can fire a millisecond or two early (libuv measures from its loop's cached
      // time, which lags the real one): CI saw 2,499 ms once. What matters is that it outlasted two ticks.
      expect(first?.end).toBeGreaterThanOrEqual((first?.start ?? 0) + 2450);
      // Nothing ran while the slow tick did.
      for (const t of rest) expect(t.start).toBeGreaterThanOrEqual(first?.end ?? 0);

      // The replica that ran the last tick stops: its lease is gone, and the next ticks run on the others.
      const holder = ticks.at(-1)?.replica as number;
      await three[holder]?.stop();
      expect(await sql(url, 'SELECT name FROM leases WHERE owner = $1', [`replica-${holder}`])).toEqual([]);
      const stoppedAt = Date.now();
      await waitFor(
        () => ticks.filter((t) => t.start > stoppedAt).length >= 2,
        'two ticks after the stop',
        SLOW,
      );
      expect(ticks.filter((t) => t.start > stoppedAt).every((t) => t.replica !== holder)).toBe(true);
    },
    3 * SLOW,
  );
});
