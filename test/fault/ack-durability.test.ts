import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { signPagerDutyBody } from '../../src/pagerduty/signature.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { BotProcess, deliver } from '../helpers/bot-process.js';
import { FakeDevin } from '../helpers/fake-devin.js';
import { FakeSlack } from '../helpers/fake-slack.js';
import { PD_SECRET, resolvedEvent, testEnv, waitFor } from '../helpers/harness.js';

/**
 * What a 202 promises, tested the hard way: the built bot (its background writes not waiting for fsync,
 * its intake fsyncing off the main thread) is SIGKILLed the instant a chosen webhook is answered, with
 * other deliveries in flight and the backlog being worked on. Every event answered 2xx before the kill
 * must be in the file afterwards, and once everything is delivered again nothing is lost or doubled.
 * (A SIGKILL cannot show what a power cut would lose; sqlite.test.ts shows a 2xx waits for the fsync.)
 */

const INCIDENTS = 240;
const ROUNDS = 5;
const SENDERS = 12;

function webhook(n: number): { id: string; body: string } {
  const body = JSON.stringify(
    resolvedEvent({
      eventId: `ack-${n}`,
      incidentId: `PACK${n}`,
      number: 7000 + n,
      priority: n % 10 === 0 ? 'P1' : 'P3',
    }),
  );
  return { id: `ack-${n}`, body };
}

let slack: FakeSlack;
let devin: FakeDevin;
let bot: BotProcess | undefined;
afterAll(async () => {
  await bot?.kill();
  await slack?.close();
  await devin?.close();
});

describe('a webhook answered 2xx survives a SIGKILL right after the answer', () => {
  it('every acknowledged event is stored when the process dies the moment it answers', async () => {
    slack = await new FakeSlack('xoxb-test-token').start();
    devin = await new FakeDevin().start();
    devin.latencyMs = 50;
    const dbPath = join(mkdtempSync(join(tmpdir(), 'ack-')), 'bot.db');
    bot = new BotProcess(testEnv(slack, devin, dbPath, { LOG_LEVEL: 'warn' }) as Record<string, string>);
    const b = bot;
    const all = Array.from({ length: INCIDENTS }, (_, n) => webhook(n));
    const acknowledged = new Set<string>();
    let next = 0;
    let kills = 0;
    let runsAtKill = 0;

    for (let round = 0; round < ROUNDS; round++) {
      await b.start();
      const child = b.child;
      // The kill comes from inside the response handler of the k-th answer this round: nothing of ours
      // runs between the bot's answer arriving and the signal.
      const killAfter = 8 + round * 7;
      let answered = 0;
      let killed = false;
      const sender = async () => {
        while (!killed && next < all.length) {
          const w = all[next++] as { id: string; body: string };
          try {
            const res = await fetch(`${b.url}/webhooks/pagerduty`, {
              method: 'POST',
              headers: {
                'content-type': 'application/json',
                'x-pagerduty-signature': signPagerDutyBody(w.body, PD_SECRET),
              },
              body: w.body,
              signal: AbortSignal.timeout(10_000),
            });
            if (res.status === 202 || res.status === 200) {
              if (!killed && ++answered === killAfter) {
                killed = true;
                child?.kill('SIGKILL');
              }
              acknowledged.add(w.id);
            }
            await res.arrayBuffer().catch(() => {});
          } catch {
            // In flight when the process died: not acknowledged, delivered again below.
          }
        }
      };
      await Promise.all(Array.from({ length: SENDERS }, sender));
      expect(killed, `round ${round}: the kill came`).toBe(true);
      await new Promise((resolve) =>
        child?.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once('exit', resolve),
      );
      expect(child?.signalCode).toBe('SIGKILL');
      kills++;

      // The file as the dead process left it, read from outside.
      const db = new Database(dbPath, { readonly: true, timeout: 5000 });
      const stored = new Set(
        (db.prepare('SELECT id FROM events').all() as { id: string }[]).map((r) => r.id),
      );
      runsAtKill = (db.prepare('SELECT COUNT(*) AS n FROM runs').get() as { n: number }).n;
      db.close();
      const missing = [...acknowledged].filter((id) => !stored.has(id));
      expect(missing, `round ${round}: acknowledged but not stored`).toEqual([]);
    }
    // The kills hit a bot that was working on its backlog (opening runs), not an idle one.
    expect(runsAtKill).toBeGreaterThan(0);

    // PagerDuty delivers again whatever got no 2xx; each incident then ends with one run.
    await b.start();
    for (const w of all) await deliver(b, w.body);
    const settled = () => {
      const db = new Database(dbPath, { readonly: true, timeout: 5000 });
      try {
        const runs = db.prepare('SELECT COUNT(*) AS n FROM runs').get() as { n: number };
        // Events processed (their messages then go out at Slack's pace of about one a second per channel).
        const jobs = db
          .prepare(
            `SELECT COUNT(*) AS n FROM jobs WHERE kind = 'process_event' AND state IN ('queued', 'running')`,
          )
          .get() as { n: number };
        return runs.n === INCIDENTS && jobs.n === 0;
      } finally {
        db.close();
      }
    };
    await waitFor(settled, 'every event processed, every incident with its run', 150_000);
    await b.stop();
    const store = new SqliteStore({ path: dbPath });
    const runs = await store.recentRuns(INCIDENTS * 2);
    const events = await store.countEvents();
    const dead = await store.listJobs({ state: 'dead' });
    await store.close();
    expect(kills).toBe(ROUNDS);
    expect(acknowledged.size).toBeGreaterThanOrEqual(ROUNDS * 8);
    expect(events).toBe(INCIDENTS);
    expect(runs).toHaveLength(INCIDENTS);
    expect(new Set(runs.map((r) => r.incidentId)).size).toBe(INCIDENTS);
    expect(dead).toEqual([]);
  }, 300_000);
});
