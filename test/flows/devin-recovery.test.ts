import { afterEach, describe, expect, it } from 'vitest';
import { type Harness, postPagerDuty, resolvedEvent, startHarness } from '../helpers/harness.js';

/**
 * How soon a run gets its session once Devin answers again, with the production backoff (2 s doubling, at
 * most a minute) and the bot's clock moved forward a second at a time, the job runner settling each time.
 */

let h: Harness;
afterEach(async () => {
  await h?.close();
});

async function productionTimings(reconcileWindow: string): Promise<Harness> {
  return startHarness({
    env: { DEVIN_RECONCILE_WINDOW: reconcileWindow },
    configure: (c) => {
      c.tuning.jobs.backoffBaseMs = 2000;
      c.tuning.jobs.backoffMaxMs = 60_000;
    },
  });
}

/**
 * Lets the bot work, moving its clock on to the next due job whenever it has settled, until Devin has a
 * session; returns how long that took by the bot's clock, in seconds.
 */
async function secondsUntilSession(limitS: number): Promise<number> {
  const start = h.clock.now();
  while (h.clock.now() - start <= limitS * 1000) {
    await h.settled();
    if (h.devin.sessions.length > 0) return (h.clock.now() - start) / 1000;
    const next = await h.bot.store.nextRunAt(h.clock.now());
    if (next === undefined) throw new Error('nothing left to do, and no session');
    h.clock.advance(next - h.clock.now());
  }
  throw new Error(`no session within ${limitS} s`);
}

describe('Devin coming back', () => {
  it('Devin 503 three times, then healthy: one session within two minutes (reconcile window 20 s)', async () => {
    h = await productionTimings('20s');
    h.devin.nextCreates(
      { kind: 'status', status: 503 },
      { kind: 'status', status: 503 },
      { kind: 'status', status: 503 },
    );
    expect((await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }))).status).toBe(202);
    const took = await secondsUntilSession(180);
    // Each 503 may have made a session, so its tag is looked up for the window before the next create;
    // the looks are planned returns and do not grow the backoff.
    // Three windows of looks (60 s) plus backoffs of 1–2, 2–4 and 4–8 s: about 70 s. Counted as failures,
    // the looks would push the backoff to its one-minute cap: two minutes or more.
    expect(took).toBeLessThanOrEqual(90);
    expect(h.devin.sessions).toHaveLength(1);
    expect(h.devin.createRequests).toHaveLength(4);
    expect(h.devin.listRequests.length).toBeGreaterThanOrEqual(3);
  });

  it('a 503 with Retry-After made no session: the next create comes after it, without a tag lookup', async () => {
    h = await productionTimings('5m');
    h.devin.nextCreates({ kind: 'status', status: 503, headers: { 'retry-after': '7' } });
    expect((await postPagerDuty(h.url, resolvedEvent({ priority: 'P1' }))).status).toBe(202);
    const took = await secondsUntilSession(60);
    expect(took).toBeGreaterThanOrEqual(6);
    expect(took).toBeLessThanOrEqual(12);
    expect(h.devin.createRequests).toHaveLength(2);
    expect(h.devin.listRequests).toEqual([]);
  });
});
