import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { signPagerDutyBody } from '../../src/pagerduty/signature.js';
import { BotProcess, deliver } from '../helpers/bot-process.js';
import { FakeDevin } from '../helpers/fake-devin.js';
import { FakeSlack } from '../helpers/fake-slack.js';
import { PD_SECRET, resolvedEvent, testEnv, waitFor } from '../helpers/harness.js';
import { SmallDisk } from '../helpers/small-disk.js';

/**
 * The disk under the built bot's SQLite file fills up while it works through a backlog. The bot must not
 * go on believing writes the disk refused: it stops (exit 1, saying why), and once there is room again a
 * restart resumes from what is on disk, with every webhook ever answered 2xx there and each incident
 * getting its one run.
 */

const INCIDENTS = 60;
let disk: SmallDisk | undefined;

let slack: FakeSlack | undefined;
let devin: FakeDevin | undefined;
let bot: BotProcess | undefined;
afterAll(async () => {
  await bot?.kill();
  await slack?.close();
  await devin?.close();
  disk?.unmount();
});

function webhook(n: number): { id: string; body: string } {
  const body = JSON.stringify(
    resolvedEvent({ eventId: `disk-${n}`, incidentId: `PDISK${n}`, number: 8000 + n, priority: 'P3' }),
  );
  return { id: `disk-${n}`, body };
}

async function post(b: BotProcess, body: string): Promise<number> {
  try {
    const res = await fetch(`${b.url}/webhooks/pagerduty`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-pagerduty-signature': signPagerDutyBody(body, PD_SECRET),
      },
      body,
      signal: AbortSignal.timeout(5000),
    });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

describe('the disk fills up under the bot', () => {
  it.skipIf(!SmallDisk.available())(
    'the bot stops instead of going on without its writes; after a restart nothing answered 2xx is lost',
    async () => {
      slack = await new FakeSlack('xoxb-test-token').start();
      devin = await new FakeDevin().start();
      const d = SmallDisk.mount('16m');
      disk = d;
      const dbPath = join(d.dir, 'bot.db');
      bot = new BotProcess(testEnv(slack, devin, dbPath, { LOG_LEVEL: 'warn' }) as Record<string, string>);
      const b = bot;
      await b.start();
      const child = b.child;
      const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));
      const all = Array.from({ length: INCIDENTS }, (_, n) => webhook(n));
      const acknowledged = new Set<string>();
      const answers = new Set<number>();

      // Half of them, answered; their approval requests then go out at Slack's pace of about one a
      // second in the channel, so the bot is still working on them when the disk fills.
      for (const w of all.slice(0, INCIDENTS / 2)) {
        const status = await post(b, w.body);
        answers.add(status);
        if (status === 202 || status === 200) acknowledged.add(w.id);
      }
      expect(acknowledged.size).toBe(INCIDENTS / 2);
      const free = d.fill();

      // The rest arrive on the full disk, until the bot is gone.
      for (const w of all.slice(INCIDENTS / 2)) {
        if (!b.running) break;
        const status = await post(b, w.body);
        answers.add(status);
        if (status === 202 || status === 200) acknowledged.add(w.id);
      }
      const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('running'), 60_000))]);
      expect(code, b.output).toBe(1);
      expect(b.output).toContain('the store failed; the bot must restart');
      expect(b.output).toContain('database or disk is full');
      // The jobs that met the failed store did nothing wrong: none is given up on.
      expect(b.output).not.toContain('job failed for good');
      // Nothing but an answer that PagerDuty takes as done (2xx) or delivers again (503, or no answer).
      expect([...answers].filter((s) => ![0, 200, 202, 503].includes(s))).toEqual([]);

      // Started again on the still full disk, it does not run, and says why: it refuses to start, or (when
      // opening the file found room: the failed process's close deleted its WAL) it stops at the first
      // write the disk refuses. The space the close freed is taken too.
      const freeAgain = d.fill();
      b.output = '';
      await b.start().catch(() => {});
      await waitFor(() => !b.running, 'the bot on the full disk to exit', 30_000);
      expect(b.child?.exitCode, b.output).toBe(1);
      expect(b.output).toMatch(/free space on its disk|the store failed; the bot must restart/);
      freeAgain();

      // Room again: the restart finds every acknowledged event on disk.
      free();
      const db = new Database(dbPath, { readonly: true, timeout: 5000 });
      const stored = new Set(
        (db.prepare('SELECT id FROM events').all() as { id: string }[]).map((r) => r.id),
      );
      db.close();
      expect([...acknowledged].filter((id) => !stored.has(id))).toEqual([]);
      await b.start();
      for (const w of all) await deliver(b, w.body);
      const settled = () => {
        const d = new Database(dbPath, { readonly: true, timeout: 5000 });
        try {
          const runs = d
            .prepare('SELECT COUNT(DISTINCT incident_id) AS i, COUNT(*) AS n FROM runs')
            .get() as {
            i: number;
            n: number;
          };
          return runs.i === INCIDENTS && runs.n === INCIDENTS;
        } finally {
          d.close();
        }
      };
      await waitFor(settled, 'each incident with its one run', 60_000);
      const stop = await b.stop();
      expect(stop.code).toBe(0);
    },
    180_000,
  );
});
