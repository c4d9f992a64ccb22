import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DomainError, retryDecision } from '../../src/postmortems/errors.js';
import { ChannelPacer } from '../../src/slack/pacer.js';
import { PostgresStore } from '../../src/store/postgres.js';
import type { Store } from '../../src/store/store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { Clock, closeTempStores, tempStore } from '../helpers/temp-store.js';

/** The wait a take() asks for, or undefined when the call may go now. */
async function waitOf(take: Promise<void>): Promise<number | undefined> {
  try {
    await take;
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(DomainError);
    expect((err as DomainError).code).toBe('chat_paced');
    // A reserved slot: the job comes back exactly then, not after a growing backoff.
    const decision = retryDecision(err as DomainError);
    expect(decision.kind).toBe('at');
    return decision.kind === 'at' ? decision.afterMs : undefined;
  }
}

const databases: TestDatabase[] = [];
const pgStores: PostgresStore[] = [];
afterEach(async () => {
  await closeTempStores();
  await Promise.all(pgStores.splice(0).map((s) => s.close()));
});
afterAll(async () => {
  await Promise.all(databases.splice(0).map((d) => d.drop()));
});

/** Two replicas' stores on one database: the same SQLite store twice (one process), or two Postgres pools. */
const backends: [string, (clock: Clock) => Promise<[Store, Store]>][] = [
  [
    'SQLite',
    async (clock) => {
      const store = tempStore(clock);
      return [store, store];
    },
  ],
  [
    'Postgres',
    async () => {
      const db = await createTestDatabase();
      databases.push(db);
      const pair: [PostgresStore, PostgresStore] = [
        new PostgresStore({ url: db.url, poolSize: 2 }),
        new PostgresStore({ url: db.url, poolSize: 2 }),
      ];
      pgStores.push(...pair);
      return pair;
    },
  ],
];

describe.each(backends)('ChannelPacer on the %s store', (_, stores) => {
  it('lets one call per interval through per channel, reserving later slots in order', async () => {
    const clock = new Clock(10_000);
    const [store] = await stores(clock);
    const pacer = new ChannelPacer(store, 1000, clock.now);
    expect(await waitOf(pacer.take('C1', 1))).toBeUndefined();
    expect(await waitOf(pacer.take('C1', 2))).toBe(1000);
    expect(await waitOf(pacer.take('C1', 3))).toBe(2000);
    expect(await waitOf(pacer.take('C2', 4))).toBeUndefined();
    clock.advance(1000);
    // Job 2 comes back at its slot and goes; job 3 is still early and keeps its place.
    expect(await waitOf(pacer.take('C1', 2))).toBeUndefined();
    expect(await waitOf(pacer.take('C1', 3))).toBe(1000);
    clock.advance(1000);
    expect(await waitOf(pacer.take('C1', 3))).toBeUndefined();
    expect(await waitOf(pacer.take('C1', 5))).toBe(1000);
  });

  it('never lets late reservations go in a burst', async () => {
    const clock = new Clock(0);
    const [store] = await stores(clock);
    const pacer = new ChannelPacer(store, 1000, clock.now);
    await pacer.take('C1', 1);
    expect(await waitOf(pacer.take('C1', 2))).toBe(1000);
    expect(await waitOf(pacer.take('C1', 3))).toBe(2000);
    clock.ms = 5000; // a busy moment: both come back late, at once
    expect(await waitOf(pacer.take('C1', 2))).toBeUndefined();
    expect(await waitOf(pacer.take('C1', 3))).toBe(1000);
    // Job 3 keeps its reservation; whoever comes second at the same moment waits another interval.
    expect(await waitOf(pacer.take('C1', 4))).toBe(1000);
    clock.ms = 6000;
    expect(await waitOf(pacer.take('C1', 3))).toBeUndefined();
    expect(await waitOf(pacer.take('C1', 4))).toBe(1000);
    clock.ms = 7000;
    expect(await waitOf(pacer.take('C1', 4))).toBeUndefined();
  });

  it('shares a channel between replicas: a job keeps its slot on another replica, a 429 holds back both', async () => {
    const clock = new Clock(0);
    const [storeA, storeB] = await stores(clock);
    const a = new ChannelPacer(storeA, 1000, clock.now);
    const b = new ChannelPacer(storeB, 1000, clock.now);
    expect(await waitOf(a.take('C1', 1))).toBeUndefined();
    // The channel just had a call through replica A: replica B's calls line up behind it.
    expect(await waitOf(b.take('C1', 2))).toBe(1000);
    expect(await waitOf(a.take('C1', 3))).toBe(2000);
    clock.ms = 1000;
    // Job 3 comes back on the other replica, early: still its own slot, not a new one at the end.
    expect(await waitOf(b.take('C1', 3))).toBe(1000);
    expect(await waitOf(a.take('C1', 2))).toBeUndefined();
    // Slack answers replica A's next call with 429 and Retry-After 30 s: replica B waits too.
    await a.pushBack('C1', 30_000);
    clock.ms = 2000;
    expect(await waitOf(b.take('C1', 3))).toBe(29_000);
    expect(await waitOf(b.take('C1', 4))).toBe(29_000);
    clock.ms = 31_000;
    expect(await waitOf(b.take('C1', 3))).toBeUndefined();
    expect(await waitOf(a.take('C1', 4))).toBe(1000);
  });
});
