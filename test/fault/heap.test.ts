import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_WEBHOOK_BYTES } from '../../src/http/pagerduty-webhook.js';
import { signPagerDutyBody } from '../../src/pagerduty/signature.js';
import { BUILT_DIR } from '../global-setup.js';
import { FakeDevin } from '../helpers/fake-devin.js';
import { FakeSlack } from '../helpers/fake-slack.js';
import { PD_SECRET, resolvedEvent, testEnv, waitFor } from '../helpers/harness.js';
import { freePort } from '../helpers/http-server.js';

/**
 * The heap cap `npm start` and the Dockerfile run with must hold the largest legitimate working set: here,
 * PagerDuty's largest bodies (just under 1 MiB) arriving 48 at a time, each then worked on in the
 * background (an approval message, or a Devin session and its prompt). The bot runs as a process with
 * exactly the flags of `npm start`, read from package.json so the two cannot drift apart.
 */

const ROOT = join(import.meta.dirname, '..', '..');
const CONCURRENT = 48;
/** Eight services with a channel each, so Slack's pace (a message a second per channel) stays short. */
const CHANNELS = Array.from({ length: 8 }, (_, i) => `CHEAP0000${i}`);

/** The node flags of `npm start` ("node <flags> dist/main.js"). */
function startFlags(): string[] {
  const start = (
    JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }
  ).scripts.start as string;
  const words = start.trim().split(/\s+/);
  expect(words[0]).toBe('node');
  expect(words.at(-1)).toBe('dist/main.js');
  return words.slice(1, -1);
}

/** The node flags of the Dockerfile's CMD (["node", <flags>, "dist/main.js"]). */
function dockerFlags(): string[] {
  const cmd = /^CMD (\[.*\])$/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1];
  const words = JSON.parse(cmd ?? '[]') as string[];
  expect(words[0]).toBe('node');
  expect(words.at(-1)).toBe('dist/main.js');
  return words.slice(1, -1);
}

/**
 * A signed resolved-incident webhook of nearly MAX_WEBHOOK_BYTES: a title of ASCII with one emoji, so
 * every string made from the body is two bytes a character (the most heap a body can cost).
 */
function bigWebhook(n: number): string {
  const body = resolvedEvent({
    eventId: `heap-${n}`,
    incidentId: `PHEAP${n}`,
    number: 7000 + n,
    priority: n % 2 === 0 ? 'P1' : 'P3',
    title: '🔥',
    serviceId: `PSVCHEAP${n % CHANNELS.length}`,
  });
  const size = Buffer.byteLength(JSON.stringify(body));
  body.event.data.title = `🔥 ${'x'.repeat(MAX_WEBHOOK_BYTES - size - 64)}`;
  const raw = JSON.stringify(body);
  expect(Buffer.byteLength(raw)).toBeLessThan(MAX_WEBHOOK_BYTES);
  expect(Buffer.byteLength(raw)).toBeGreaterThan(MAX_WEBHOOK_BYTES - 100);
  return raw;
}

let slack: FakeSlack | undefined;
let devin: FakeDevin | undefined;
let child: ChildProcess | undefined;
afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child?.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
  await slack?.close();
  await devin?.close();
});

describe('heap cap', () => {
  it('npm start, the Dockerfile and the demo run with the same node flags', () => {
    expect(dockerFlags()).toEqual(startFlags());
    expect(startFlags().some((f) => f.startsWith('--max-old-space-size='))).toBe(true);
    // The demo (npm run demo) starts the bot with them too.
    const sandbox = readFileSync(join(ROOT, 'src', 'sandbox', 'bot-process.ts'), 'utf8');
    for (const flag of startFlags()) expect(sandbox).toContain(`'${flag}'`);
  });

  it(`${CONCURRENT} concurrent signed ~1 MiB webhooks are all accepted and worked on, and the bot lives`, async () => {
    slack = await new FakeSlack().start();
    devin = await new FakeDevin().start();
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const cwd = mkdtempSync(join(tmpdir(), 'heap-cwd-'));
    const services = Object.fromEntries(CHANNELS.map((channel, i) => [`PSVCHEAP${i}`, { channel }]));
    writeFileSync(join(cwd, 'routing.json'), JSON.stringify({ services }));
    for (const channel of CHANNELS) slack.channels.add(channel);
    const env = {
      ...testEnv(slack, devin, './data/bot.db'),
      ROUTING_FILE: 'routing.json',
      PORT: String(port),
      LOG_LEVEL: 'warn',
    };
    let stderr = '';
    let gcTrace = '';
    // Exactly npm start's flags, plus --trace-gc (it only reports): how much heap each full GC left live.
    child = spawn(process.execPath, [...startFlags(), '--trace-gc', join(BUILT_DIR, 'main.js')], {
      cwd,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d) => {
      gcTrace += d;
    });
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    const bot = child;
    const dead = () => bot.exitCode !== null || bot.signalCode !== null;
    await waitFor(
      () =>
        fetch(`${url}/readyz`).then(
          (r) => r.ok,
          () => false,
        ),
      'the bot to be ready',
      15_000,
    );

    const bodies = Array.from({ length: CONCURRENT }, (_, n) => bigWebhook(n));
    const answers = await Promise.all(
      bodies.map(async (body) => {
        const res = await fetch(`${url}/webhooks/pagerduty`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-pagerduty-signature': signPagerDutyBody(body, PD_SECRET),
          },
          body,
        }).catch((err: Error) => ({ status: `failed: ${err.message}` }));
        return res.status;
      }),
    );
    expect(answers, stderr.slice(-3000)).toEqual(bodies.map(() => 202));

    // Worked on, too: every incident's message posted (an approval, or an auto-started session's), and
    // each P1's session created with a prompt built from its incident.
    const fake = slack;
    await waitFor(
      () => {
        if (dead()) throw new Error(`the bot died while working:\n${stderr.slice(-3000)}`);
        return (
          fake.callsOf('chat.postMessage').length >= CONCURRENT && devin?.sessions.length === CONCURRENT / 2
        );
      },
      'every message and session',
      60_000,
    );
    expect(dead()).toBe(false);
    expect(stderr).not.toContain('heap out of memory');
    expect((await fetch(`${url}/healthz`)).status).toBe(200);

    // "Mark-Compact 110.4 (121.4) -> 29.1 (41.1) MB": the live heap after a full GC. Its peak stays well
    // under the cap (the process used its headroom for the load, not to survive it).
    const live = [...gcTrace.matchAll(/Mark-Compact[^\n]*? -> ([\d.]+) \(/g)].map((m) => Number(m[1]));
    const cap = Number(
      startFlags()
        .find((f) => f.startsWith('--max-old-space-size='))
        ?.split('=')[1],
    );
    expect(live.length).toBeGreaterThan(0);
    expect(Math.max(...live), `live heap after each full GC: ${live.join(', ')} MB`).toBeLessThan(cap * 0.7);
  }, 120_000);
});
