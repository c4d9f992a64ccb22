import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/config.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { BUILT_DIR } from '../global-setup.js';
import { FakeDevin } from '../helpers/fake-devin.js';
import { FakePagerDuty } from '../helpers/fake-pagerduty.js';
import { FakeSlack } from '../helpers/fake-slack.js';
import { testEnv } from '../helpers/harness.js';
import { freePort } from '../helpers/http-server.js';

/** `npm run doctor` as built, in a folder with a .env, against the stand-ins. */
function doctor(env: Env): Promise<{ code: number; out: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'doctor-'));
  writeFileSync(
    join(dir, '.env'),
    Object.entries(env)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n'),
  );
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(BUILT_DIR, 'tools', 'doctor.js')],
      { cwd: dir, env: { PATH: process.env.PATH, HOME: process.env.HOME }, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` });
      },
    );
  });
}

let slack: FakeSlack;
let devin: FakeDevin;
let pagerduty: FakePagerDuty;
let dbPath: string;
beforeAll(async () => {
  slack = await new FakeSlack().start();
  devin = await new FakeDevin().start();
  pagerduty = await new FakePagerDuty().start();
  slack.userGroups.set('SONCALL01', ['UALICE01', 'UBOB0001']);
  // A database as a running bot leaves it: migrated (the doctor opens it read-only).
  dbPath = join(mkdtempSync(join(tmpdir(), 'doctor-db-')), 'bot.db');
  await new SqliteStore({ path: dbPath }).close();
});
afterAll(async () => {
  await slack.close();
  await devin.close();
  await pagerduty.close();
});

const env = (extra: Env = {}): Env => ({
  ...testEnv(slack, devin, dbPath, {}, pagerduty),
  SLACK_APPROVERS: 'UALICE01,SONCALL01',
  PAGERDUTY_FROM_EMAIL: 'ada@example.com',
  ...extra,
});

/** What the doctor may call: reads only. */
function expectNothingWritten() {
  expect(slack.callsOf('chat.postMessage')).toEqual([]);
  expect(slack.callsOf('chat.postEphemeral')).toEqual([]);
  expect(slack.callsOf('chat.update')).toEqual([]);
  expect(devin.createRequests).toEqual([]);
  expect(devin.messages).toEqual([]);
  // The one POST is the write-access probe, to an incident that cannot exist: no note was created.
  expect(pagerduty.requests.filter((r) => r.startsWith('POST'))).toEqual([
    'POST /incidents/postmortem-bot-no-such-incident/notes',
  ]);
  expect(pagerduty.postedNotes).toEqual([]);
}

describe('npm run doctor', () => {
  it('passes against working stand-ins, checking each part, and writes nothing anywhere', async () => {
    const { code, out } = await doctor(env());
    expect(out, out).toContain('all passed');
    expect(code).toBe(0);
    for (const line of [
      '✓ Configuration: every variable is valid',
      '✓ Slack bot token: bot postmortem-bot (BBOT0001) in workspace T0001',
      '✓ Slack scopes: the token has every scope this configuration uses',
      '✓ Slack channel CDEFAULT01: #cdefault01 exists and the bot may post there',
      '✓ Approver UALICE01: user UALICE01',
      '✓ Approver SONCALL01: user group with 2 members',
      '✓ Devin API key and organization: the key lists sessions by tag in org-test',
      '✓ PagerDuty API token: the token reads incidents',
      '✓ PagerDuty note author (PAGERDUTY_FROM_EMAIL): ada@example.com is the PagerDuty user Ada Lovelace, and the token may write notes',
      `✓ Database: SQLite ${dbPath} is reachable, schema version`,
    ]) {
      expect(out).toContain(line);
    }
    expectNothingWritten();
  });

  it('fails for a wrong Devin key, naming DEVIN_API_KEY and what to do', async () => {
    const { code, out } = await doctor(env({ DEVIN_API_KEY: 'cog_wrong' }));
    expect(code).toBe(1);
    expect(out).toContain(
      '✗ Devin API key and organization: DEVIN_API_KEY: Devin rejected the key (401): create a key for the service user',
    );
    expect(out).toContain('1 failed');
    expect(out).not.toContain('cog_wrong');
  });

  it('fails for a Slack token missing a scope, naming SLACK_BOT_TOKEN and the scope', async () => {
    const all = slack.scopes;
    slack.scopes = all.filter((s) => s !== 'usergroups:read');
    try {
      const { code, out } = await doctor(env());
      expect(code).toBe(1);
      expect(out).toContain(
        '✗ Slack scopes: SLACK_BOT_TOKEN: the token lacks usergroups:read: add them under OAuth',
      );
      expect(out).toContain('reinstall the app');
    } finally {
      slack.scopes = all;
    }
  });

  it('fails for a read-only PagerDuty key when notes are to be written back', async () => {
    pagerduty.readOnly = true;
    try {
      const { code, out } = await doctor(env());
      expect(code).toBe(1);
      expect(out).toContain('✓ PagerDuty API token: the token reads incidents');
      expect(out).toContain(
        '✗ PagerDuty note author (PAGERDUTY_FROM_EMAIL): PAGERDUTY_API_TOKEN: the token is read-only',
      );
      expect(pagerduty.postedNotes).toEqual([]);
    } finally {
      pagerduty.readOnly = false;
    }
  });

  it('fails for an unreachable database, naming DATABASE_URL', async () => {
    const closed = await freePort();
    const { code, out } = await doctor(
      env({ DATABASE_URL: `postgres://bot:secret-pw@127.0.0.1:${closed}/postmortems` }),
    );
    expect(code).toBe(1);
    expect(out).toContain(
      `✗ Database: DATABASE_URL: cannot use Postgres 127.0.0.1:${closed}/postmortems: connection to 127.0.0.1:${closed} refused (ECONNREFUSED)`,
    );
    expect(out).not.toContain('secret-pw');
  });

  it('fails for a channel the bot cannot post in and an unknown approver group, naming each variable', async () => {
    slack.channelDetails.set('CDEFAULT01', { is_private: true, is_member: false });
    try {
      const { code, out } = await doctor(env({ SLACK_APPROVERS: 'SNOPE0001' }));
      expect(code).toBe(1);
      expect(out).toContain(
        '✗ Slack channel CDEFAULT01: SLACK_DEFAULT_CHANNEL: #cdefault01 is private and the bot is not in it: invite the bot there',
      );
      expect(out).toContain(
        '✗ Approver SNOPE0001: SLACK_APPROVERS: Slack does not know SNOPE0001 (no_such_subteam)',
      );
    } finally {
      slack.channelDetails.delete('CDEFAULT01');
    }
  });

  it('an invalid configuration is reported as the start-up would, and nothing is called', async () => {
    const before = slack.calls.length;
    const { code, out } = await doctor(env({ SLACK_DEFAULT_CHANNEL: '#incidents' }));
    expect(code).toBe(1);
    expect(out).toContain('SLACK_DEFAULT_CHANNEL: expected a Slack channel ID');
    expect(slack.calls.length).toBe(before);
  });
});
