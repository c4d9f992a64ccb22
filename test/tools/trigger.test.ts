import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/config.js';
import { BUILT_DIR } from '../global-setup.js';
import { type Harness, startHarness, waitFor } from '../helpers/harness.js';
import { freePort } from '../helpers/http-server.js';

/** `npm run trigger` as built, reading `env` from a .env in its folder, as an operator runs it. */
function trigger(env: Env, ...args: string[]): Promise<{ code: number; out: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'trigger-'));
  writeFileSync(
    join(dir, '.env'),
    Object.entries(env)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n'),
  );
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(BUILT_DIR, 'tools', 'trigger.js'), ...args],
      { cwd: dir, env: { PATH: process.env.PATH, HOME: process.env.HOME }, timeout: 20_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    );
  });
}

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const approvalFor = (harness: Harness, title: string) =>
  waitFor(
    () =>
      [...harness.slack.messages.values()].find(
        (m) =>
          JSON.stringify(m.blocks).includes(title) && JSON.stringify(m.blocks).includes('postmortem_approve'),
      ),
    'the approval message',
  );

describe('npm run trigger', () => {
  it('sends a signed sample incident.resolved; the running bot posts an approval message', async () => {
    h = await startHarness();
    const { code, out } = await trigger(
      h.env,
      '--url',
      h.url,
      '--priority',
      'P4',
      '--service',
      'Checkout API',
      '--title',
      'Trying the bot out',
    );
    expect(out, out).toContain('202 {"status":"accepted"}');
    expect(code).toBe(0);
    expect(out).toMatch(/Sent incident\.resolved for QTRIG[0-9A-F]{9} \(#\d{6}, P4, Checkout API\)/);
    expect(out).toContain('P4 asks first: expect an approval message with Approve and Skip in <#CDEFAULT01>');
    const message = await approvalFor(h, 'Trying the bot out');
    expect(message.channel).toBe('CDEFAULT01');
    expect(JSON.stringify(message.blocks)).toContain('Checkout API');
    expect(h.devin.createRequests).toHaveLength(0);

    // Each run is a new incident: a second approval, not a duplicate.
    expect((await trigger(h.env, `--url=${h.url}`, '--title', 'Second try')).code).toBe(0);
    await approvalFor(h, 'Second try');
    expect(await h.bot.store.recentRuns(10)).toHaveLength(2);
  });

  it('signs with the shared X-Webhook-Secret header when that is the scheme', async () => {
    const shared = 'shared-header-secret-0123456789';
    h = await startHarness({ env: { PAGERDUTY_WEBHOOK_SECRET: '', WEBHOOK_SECRET: shared } });
    const { code, out } = await trigger(h.env, '--url', h.url, '--title', 'Shared header');
    expect(out, out).toContain('202');
    expect(code).toBe(0);
    await approvalFor(h, 'Shared header');
  });

  it('says so when the bot refuses the signature, when no bot answers, and on a bad argument', async () => {
    h = await startHarness();
    const wrong = await trigger(
      { ...h.env, PAGERDUTY_WEBHOOK_SECRET: 'not-the-bots-secret' },
      '--url',
      h.url,
    );
    expect(wrong.code).toBe(1);
    expect(wrong.out).toContain('401');
    expect(wrong.out).toContain('The bot refused the signature');

    const closed = await freePort();
    const nobody = await trigger(h.env, '--url', `http://127.0.0.1:${closed}`);
    expect(nobody.code).toBe(1);
    expect(nobody.out).toContain(
      `no answer from http://127.0.0.1:${closed} (connection to 127.0.0.1:${closed} refused (ECONNREFUSED)): is the bot running there?`,
    );

    const bad = await trigger(h.env, '--priority');
    expect(bad.code).toBe(1);
    expect(bad.out).toContain('--priority needs a value');
    expect(bad.out).toContain('usage: npm run trigger --');
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(0);
  });
});
