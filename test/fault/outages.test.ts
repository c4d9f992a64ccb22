import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { type Harness, postPagerDuty, resolvedEvent, startHarness, waitFor } from '../helpers/harness.js';

/** Devin, Slack and the store failing for a while: work is delayed, never lost, never doubled. */

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const incidents = (n: number, priority: string) =>
  Array.from({ length: n }, (_, i) =>
    resolvedEvent({
      eventId: `out-${priority}-${i}`,
      incidentId: `POUT${priority}${i}`,
      number: 5000 + i,
      priority,
    }),
  );

describe('outages', () => {
  it('Devin answering 503 and then timing out for a while: one session each, all created after recovery', async () => {
    h = await startHarness({
      configure: (c) => {
        c.tuning.devinTimeoutMs = 300;
        c.devin.reconcileWindowMs = 600;
      },
    });
    const recoversAt = Date.now() + 2500;
    h.devin.unavailableUntil = Date.now() + 1200;
    h.devin.hangUntil = recoversAt;
    for (const body of incidents(12, 'P1')) expect((await postPagerDuty(h.url, body)).status).toBe(202);
    await waitFor(() => h.devin.sessions.length === 12, 'twelve sessions after recovery', 30_000);
    await waitFor(async () => (await h.bot.store.countJobs()).queued === 0, 'the queue to drain', 30_000);
    expect(h.logs.text).toContain('Devin session not created yet; will retry');
    const perIncident = new Map<string, number>();
    for (const s of h.devin.sessions) {
      const id = s.tags.find((t) => t.startsWith('incident:')) ?? '';
      perIncident.set(id, (perIncident.get(id) ?? 0) + 1);
    }
    expect([...perIncident.values()]).toEqual(Array(12).fill(1));
    for (const s of h.devin.sessions) expect(s.created_at * 1000).toBeGreaterThanOrEqual(recoversAt - 1000);
  });

  it('Slack answering 5xx, then 429 with Retry-After: every message delivered late, once', async () => {
    // Every request its own message (no digest, which has its own tests): this test counts them.
    h = await startHarness({ env: { SLACK_DIGEST_AFTER: '0' } });
    h.slack.unavailableUntil = Date.now() + 1500;
    h.slack.failNext('chat.postMessage', { kind: 'ratelimit', retryAfterS: 1 }, 3);
    for (const body of incidents(8, 'P3')) expect((await postPagerDuty(h.url, body)).status).toBe(202);
    await waitFor(() => h.slack.callsOf('chat.postMessage').length === 8, 'eight approval messages', 30_000);
    await waitFor(async () => (await h.bot.store.countJobs()).queued === 0, 'the queue to drain', 30_000);
    expect(h.slack.calls.some((c) => c.method === 'chat.postMessage!503')).toBe(true);
    expect(h.slack.callsOf('chat.postMessage!fault')).toHaveLength(3);
    const ids = h.slack
      .callsOf('chat.postMessage')
      .map((c) => /incidents\/(POUTP3\d+)\|/.exec(JSON.stringify(c.args.blocks))?.[1]);
    expect(new Set(ids).size).toBe(8);
  });

  it('a locked store: /readyz and webhooks answer 503 (so PagerDuty retries), never 2xx for an event not stored', async () => {
    h = await startHarness();
    // The fault itself: another process (a backup tool, sqlite3 in a shell) holding the file's write lock.
    // That needs a second connection to the file; what was stored is still read through the store.
    const locker = new Database(h.dbPath);
    locker.exec('BEGIN IMMEDIATE');
    try {
      const body = resolvedEvent({ eventId: 'locked-1', incidentId: 'PLOCKED1' });
      const res = await postPagerDuty(h.url, body);
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect((await fetch(`${h.url}/readyz`)).status).toBe(503);
    } finally {
      locker.exec('ROLLBACK');
    }
    locker.close();
    expect(await h.bot.store.getEvent('locked-1')).toBeUndefined();
    // Redelivered once the store is back: accepted and acted on.
    expect(
      (await postPagerDuty(h.url, resolvedEvent({ eventId: 'locked-1', incidentId: 'PLOCKED1' }))).status,
    ).toBe(202);
    expect((await fetch(`${h.url}/readyz`)).status).toBe(200);
    await waitFor(() => h.slack.callsOf('chat.postMessage').length === 1, 'the approval message');
  });
});
