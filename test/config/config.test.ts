import { describe, expect, it } from 'vitest';
import { ConfigError, configWarnings, type Env, loadConfig } from '../../src/config/config.js';

const valid: Env = {
  SLACK_BOT_TOKEN: 'xoxb-1-2-abc',
  SLACK_SIGNING_SECRET: 'signing',
  SLACK_DEFAULT_CHANNEL: 'C0123456789',
  PAGERDUTY_WEBHOOK_SECRET: 'pd-secret-123',
  DEVIN_API_KEY: 'cog_abc',
  DEVIN_ORG_ID: 'org-abc',
};

function problems(env: Env, files: Record<string, string> = {}): string[] {
  try {
    loadConfig(env, (p) => {
      const text = files[p];
      if (text === undefined)
        throw Object.assign(new Error(`ENOENT: no such file, open '${p}'`), { code: 'ENOENT' });
      return text;
    });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig(valid);
    expect(config.port).toBe(3000);
    expect(config.logLevel).toBe('info');
    expect(config.policy.autoStartPriorities).toEqual(['P1', 'P2']);
    expect(config.database).toEqual({ kind: 'sqlite', path: './data/postmortem-bot.db' });
    expect(config.devin.apiUrl).toBe('https://api.devin.ai');
    expect(config.slack.apiUrl).toBeUndefined();
    expect(config.pagerduty).toEqual({
      webhookSecrets: ['pd-secret-123'],
      sharedSecret: undefined,
      apiToken: undefined,
      apiUrl: 'https://api.pagerduty.com',
      fromEmail: undefined,
    });
    expect(config.slack.approvers).toEqual([]);
  });

  it('names every missing required variable at once, and what it expects', () => {
    const list = problems({});
    const names = list.map((p) => p.split(':')[0]);
    expect(names).toEqual(
      expect.arrayContaining([
        'SLACK_BOT_TOKEN',
        'SLACK_SIGNING_SECRET',
        'SLACK_DEFAULT_CHANNEL',
        'DEVIN_API_KEY',
        'DEVIN_ORG_ID',
        'PAGERDUTY_WEBHOOK_SECRET',
      ]),
    );
    expect(list).toHaveLength(6);
    expect(list.find((p) => p.startsWith('SLACK_BOT_TOKEN'))).toContain('xoxb-');
    expect(new ConfigError(list).message).toMatch(/^Invalid configuration:\n {2}- /);
  });

  it('reports malformed values with what was expected', () => {
    const list = problems({
      ...valid,
      PORT: 'eighty',
      LOG_LEVEL: 'loud',
      SLACK_BOT_TOKEN: 'xoxp-user-token',
      SLACK_DEFAULT_CHANNEL: '#incidents',
      DEVIN_API_URL: 'not a url',
      DEVIN_REPOS: 'acme/api,just-a-name',
      DEVIN_MAX_ACU_LIMIT: '-3',
      DATABASE_URL: 'mysql://x',
    });
    const byName = Object.fromEntries(list.map((p) => [p.split(':')[0], p]));
    expect(Object.keys(byName).sort()).toEqual(
      [
        'DATABASE_URL',
        'DEVIN_API_URL',
        'DEVIN_MAX_ACU_LIMIT',
        'DEVIN_REPOS',
        'LOG_LEVEL',
        'PORT',
        'SLACK_BOT_TOKEN',
        'SLACK_DEFAULT_CHANNEL',
      ].sort(),
    );
    expect(byName.SLACK_DEFAULT_CHANNEL).toContain('channel ID');
    expect(byName.DEVIN_REPOS).toContain('owner/name');
  });

  it('treats empty values as unset and accepts WEBHOOK_SECRET instead of the HMAC secret', () => {
    const config = loadConfig({
      ...valid,
      PAGERDUTY_WEBHOOK_SECRET: '',
      WEBHOOK_SECRET: 'a-long-shared-secret',
      PORT: '',
    });
    expect(config.pagerduty).toMatchObject({ webhookSecrets: [], sharedSecret: 'a-long-shared-secret' });
    expect(config.port).toBe(3000);
  });

  it('stops on a signing-secret list that names no secret, naming the variable', () => {
    for (const value of [',', ' , ', ',,']) {
      expect(problems({ ...valid, PAGERDUTY_WEBHOOK_SECRET: value })).toEqual([
        'PAGERDUTY_WEBHOOK_SECRET: names no secret (only commas and spaces): set the v3 subscription signing secret(s)',
      ]);
      // The shared header does not rescue it: the list is a mistake either way.
      expect(
        problems({ ...valid, PAGERDUTY_WEBHOOK_SECRET: value, WEBHOOK_SECRET: 'a-long-shared-secret' }),
      ).toHaveLength(1);
    }
  });

  it('parses lists and URLs', () => {
    const config = loadConfig({
      ...valid,
      PAGERDUTY_WEBHOOK_SECRET: 'secret-one-1, secret-two-2',
      AUTO_START_PRIORITIES: 'SEV-1, SEV-2',
      SLACK_API_URL: 'http://127.0.0.1:9999/api',
      DEVIN_API_URL: 'https://devin.example.com/',
      DEVIN_KNOWLEDGE_IDS: 'note-1,note-2',
      DATABASE_URL: 'sqlite:/var/lib/bot/state.db',
    });
    expect(config.pagerduty.webhookSecrets).toEqual(['secret-one-1', 'secret-two-2']);
    expect(config.policy.autoStartPriorities).toEqual(['SEV-1', 'SEV-2']);
    expect(config.slack.apiUrl).toBe('http://127.0.0.1:9999/api/');
    expect(config.devin.apiUrl).toBe('https://devin.example.com');
    expect(config.devin.session.knowledgeIds).toEqual(['note-1', 'note-2']);
    expect(config.database).toEqual({ kind: 'sqlite', path: '/var/lib/bot/state.db' });
    expect(loadConfig({ ...valid, AUTO_START_PRIORITIES: '' }).policy.autoStartPriorities).toEqual([]);
  });

  it('refuses a SQLite store that would not survive a restart', () => {
    for (const url of ['sqlite:', 'sqlite::memory:']) {
      expect(problems({ ...valid, DATABASE_URL: url })[0]).toMatch(
        /^DATABASE_URL: expected a file path after sqlite:/,
      );
    }
  });

  it('selects Postgres for postgres:// and postgresql:// URLs, with a pool size', () => {
    const url = 'postgres://bot:secret@db.internal:5432/postmortems?sslmode=verify-full';
    expect(loadConfig({ ...valid, DATABASE_URL: url }).database).toEqual({
      kind: 'postgres',
      url,
      poolSize: 10,
    });
    expect(
      loadConfig({ ...valid, DATABASE_URL: 'postgresql://db/bot', DATABASE_POOL_SIZE: '25' }).database,
    ).toEqual({ kind: 'postgres', url: 'postgresql://db/bot', poolSize: 25 });
    const bad = problems({ ...valid, DATABASE_URL: 'postgres://[::1', DATABASE_POOL_SIZE: '0' });
    expect(bad).toEqual([
      'DATABASE_URL: expected a URL such as postgres://user:password@host:5432/database',
      expect.stringMatching(/^DATABASE_POOL_SIZE: /),
    ]);
    // The URL may hold a password: a problem report never repeats it.
    expect(problems({ ...valid, DATABASE_URL: 'postgres://u:hunter2@[bad' }).join('\n')).not.toContain(
      'hunter2',
    );
  });

  describe('ROUTING_FILE', () => {
    it('loads routes by service ID or name', () => {
      const config = loadConfig({ ...valid, ROUTING_FILE: 'r.json' }, () =>
        JSON.stringify({
          services: {
            PSVC1: {
              channel: 'CPAY00001',
              auto_start_priorities: ['P3'],
              playbook_id: 'playbook-x',
              repos: ['a/b'],
            },
            'Search API': { auto_start_priorities: [] },
          },
        }),
      );
      expect(config.policy.routing.services.PSVC1).toEqual({
        channel: 'CPAY00001',
        autoStartPriorities: ['P3'],
        playbookId: 'playbook-x',
        repos: ['a/b'],
      });
      expect(config.policy.routing.services['Search API']?.autoStartPriorities).toEqual([]);
    });

    it('include_channel_history marks a service’s own channel as dedicated, never the default one', () => {
      const routing = (route: Record<string, unknown>): Record<string, string> => ({
        'r.json': JSON.stringify({ services: { PSVC1: route } }),
      });
      const config = loadConfig({ ...valid, ROUTING_FILE: 'r.json' }, (p) =>
        String(routing({ channel: 'CPAY00001', include_channel_history: true })[p]),
      );
      expect(config.policy.routing.services.PSVC1?.includeChannelHistory).toBe(true);
      expect(
        problems({ ...valid, ROUTING_FILE: 'r.json' }, routing({ include_channel_history: true })),
      ).toEqual([
        'ROUTING_FILE: r.json: services.PSVC1.include_channel_history: needs the service’s own "channel" (the one dedicated to its incidents)',
      ]);
      expect(
        problems(
          { ...valid, ROUTING_FILE: 'r.json' },
          routing({ channel: valid.SLACK_DEFAULT_CHANNEL, include_channel_history: true }),
        ),
      ).toEqual([
        'ROUTING_FILE: services.PSVC1.include_channel_history: its channel is SLACK_DEFAULT_CHANNEL, where unrelated conversations happen; only a channel dedicated to incidents may be read',
      ]);
      expect(
        problems({ ...valid, ROUTING_FILE: 'r.json' }, routing({ include_channel_history: 'yes' }))[0],
      ).toContain('services.PSVC1.include_channel_history');
    });

    it('reports an unreadable file, invalid JSON, and bad or unknown fields with their path', () => {
      expect(problems({ ...valid, ROUTING_FILE: 'missing.json' })[0]).toMatch(
        /^ROUTING_FILE: cannot read missing.json/,
      );
      expect(problems({ ...valid, ROUTING_FILE: 'r.json' }, { 'r.json': '{' })[0]).toMatch(
        /^ROUTING_FILE: r.json is not valid JSON/,
      );
      const [bad] = problems(
        { ...valid, ROUTING_FILE: 'r.json' },
        { 'r.json': JSON.stringify({ services: { PSVC1: { channel: '#pay', auto_start: ['P1'] } } }) },
      );
      expect(bad).toContain('services.PSVC1.channel: expected a Slack channel ID');
      expect(bad).toContain('auto_start');
    });
  });
});

describe('who may spend', () => {
  it('warns at start-up that everyone may start sessions while SLACK_APPROVERS is unset', () => {
    expect(configWarnings(loadConfig(valid)).join('\n')).toMatch(/^SLACK_APPROVERS is not set: everyone/);
    expect(configWarnings(loadConfig({ ...valid, SLACK_APPROVERS: 'U123,S456' }))).toEqual([]);
    expect(loadConfig({ ...valid, SLACK_APPROVERS: ' U123 , S456 ' }).slack.approvers).toEqual([
      'U123',
      'S456',
    ]);
  });

  it('refuses a SLACK_APPROVERS that is set but names nobody', () => {
    for (const value of [',', ' , ', ',,']) {
      expect(problems({ ...valid, SLACK_APPROVERS: value }), value).toEqual([
        'SLACK_APPROVERS: names nobody: list Slack user IDs (U…) and user-group IDs (S…), or leave it unset',
      ]);
    }
  });
});

describe('SLACK_DIGEST_AFTER', () => {
  it('defaults to 5, takes 0 (the digest off), and refuses anything but a whole number', () => {
    expect(loadConfig(valid).slack.digestAfter).toBe(5);
    expect(loadConfig({ ...valid, SLACK_DIGEST_AFTER: '0' }).slack.digestAfter).toBe(0);
    expect(loadConfig({ ...valid, SLACK_DIGEST_AFTER: '25' }).slack.digestAfter).toBe(25);
    for (const value of ['-1', '2.5', 'lots']) {
      expect(problems({ ...valid, SLACK_DIGEST_AFTER: value })[0], value).toMatch(/^SLACK_DIGEST_AFTER: /);
    }
  });
});

describe('lifecycle settings', () => {
  it('defaults and parses durations, cron and early-start priorities', () => {
    expect(loadConfig(valid).policy.earlyStartPriorities).toEqual([]);
    expect(loadConfig(valid).lifecycle).toEqual({
      earlyStartMaxWaitMs: 24 * 3_600_000,
      pollCron: '* * * * *',
      sessionGiveUpAfterMs: 48 * 3_600_000,
      approvalRemindAfterMs: 24 * 3_600_000,
      approvalExpireAfterMs: 7 * 86_400_000,
      stormWindowMs: 10 * 60_000,
    });
    const config = loadConfig({
      ...valid,
      EARLY_START_PRIORITIES: 'P1',
      APPROVAL_REMIND_AFTER: '90m',
      SESSION_POLL_CRON: '*/2 * * * *',
    });
    expect(config.policy.earlyStartPriorities).toEqual(['P1']);
    expect(config.lifecycle.approvalRemindAfterMs).toBe(90 * 60_000);
    expect(config.lifecycle.pollCron).toBe('*/2 * * * *');
  });

  it('parses STORM_WINDOW as a duration, or 0 for off, and names a bad one', () => {
    const window = (value: string) => loadConfig({ ...valid, STORM_WINDOW: value }).lifecycle.stormWindowMs;
    expect(window('90s')).toBe(90_000);
    expect(window('1h')).toBe(3_600_000);
    expect(window('0')).toBe(0);
    expect(window('0m')).toBe(0);
    expect(problems({ ...valid, STORM_WINDOW: 'ten minutes' })).toEqual([
      'STORM_WINDOW: expected a duration such as 10m or 1h, or 0 for off',
    ]);
    expect(problems({ ...valid, STORM_WINDOW: '-5m' })).toEqual([
      'STORM_WINDOW: expected a duration such as 10m or 1h, or 0 for off',
    ]);
  });

  it('rejects bad durations, a bad cron and a reminder after the expiry', () => {
    const list = problems({ ...valid, APPROVAL_EXPIRE_AFTER: 'a week', SESSION_POLL_CRON: 'every minute' });
    expect(list).toEqual([
      'SESSION_POLL_CRON: expected a cron expression such as "* * * * *" (every minute)',
      'APPROVAL_EXPIRE_AFTER: expected a duration such as 30m, 24h or 7d',
    ]);
    expect(problems({ ...valid, APPROVAL_REMIND_AFTER: '8d' })).toEqual([
      'APPROVAL_REMIND_AFTER: must be shorter than APPROVAL_EXPIRE_AFTER, or the reminder never comes',
    ]);
  });
});

describe('evidence and template settings', () => {
  const template = (text: string) => ({ 'team.md': text });

  it('loads a template file and names an unknown placeholder with its file and line', () => {
    const ok = loadConfig({ ...valid, PROMPT_TEMPLATE_FILE: 'team.md' }, (p) => {
      if (p === 'team.md') return 'Write it for {{title}}.\n{{incident_data}}';
      throw new Error('ENOENT');
    });
    expect(ok.prompt.template?.text).toBe('Write it for {{title}}.\n{{incident_data}}');
    expect(
      problems(
        { ...valid, PROMPT_TEMPLATE_FILE: 'team.md' },
        template('Title {{title}}\n\nOwner: {{owner}} {{ severity }}'),
      ),
    ).toEqual([
      'PROMPT_TEMPLATE_FILE: team.md line 3: unknown placeholder {{owner}}; team.md line 3: unknown placeholder {{severity}} (known: incident_id, incident_number, title, service, priority, urgency, created, resolved, resolved_by, incident_url, what_happened, timeline, evidence_notes, postmortem_destination, incident_data, steps)',
    ]);
    expect(problems({ ...valid, PROMPT_TEMPLATE_FILE: 'gone.md' })[0]).toMatch(
      /^PROMPT_TEMPLATE_FILE: cannot read gone.md/,
    );
  });

  it('names a routing file’s bad template too', () => {
    const [problem] = problems(
      { ...valid, ROUTING_FILE: '/etc/bot/routing.json' },
      {
        '/etc/bot/routing.json': JSON.stringify({ services: { PS1: { prompt_template: 'ops.md' } } }),
        '/etc/bot/ops.md': 'ok\n{{nope}}',
      },
    );
    expect(problem).toBe(
      `ROUTING_FILE: /etc/bot/routing.json: services.PS1.prompt_template: /etc/bot/ops.md line 2: unknown placeholder {{nope}} (known: ${'incident_id, incident_number, title, service, priority, urgency, created, resolved, resolved_by, incident_url, what_happened, timeline, evidence_notes, postmortem_destination, incident_data, steps'})`,
    );
  });

  it('validates the channel pattern, the history switch and the write-back email', () => {
    expect(
      problems({
        ...valid,
        INCIDENT_CHANNEL_PATTERN: 'incidents',
        SLACK_INCLUDE_CHANNEL_HISTORY: 'maybe',
        PAGERDUTY_FROM_EMAIL: 'bot',
      }),
    ).toEqual([
      'INCIDENT_CHANNEL_PATTERN: expected a channel name with {number} and/or {id}, e.g. inc-{number}',
      'SLACK_INCLUDE_CHANNEL_HISTORY: expected true or false',
      'PAGERDUTY_FROM_EMAIL: expected the email address of a PagerDuty user',
    ]);
    expect(problems({ ...valid, INCIDENT_CHANNEL_PATTERN: 'inc-{date}-{number}' })).toHaveLength(1);
    expect(problems({ ...valid, PAGERDUTY_FROM_EMAIL: 'bot@acme.example' })).toEqual([
      'PAGERDUTY_FROM_EMAIL: writing the PR link back needs PAGERDUTY_API_TOKEN (with write access) too',
    ]);
    const config = loadConfig({
      ...valid,
      INCIDENT_CHANNEL_PATTERN: 'inc-{number}',
      SLACK_INCLUDE_CHANNEL_HISTORY: 'true',
      NEVER_PRIORITIES: 'P5,SEV-5',
    });
    expect(config.evidence).toEqual({ incidentChannelPattern: 'inc-{number}', includeChannelHistory: true });
    expect(config.policy.neverPriorities).toEqual(['P5', 'SEV-5']);
    expect(config.prompt.destination).toBe('docs/postmortems/');
  });
});

describe('configWarnings', () => {
  // Approvers set, so only the warning under test speaks.
  const quiet: Env = { ...valid, SLACK_APPROVERS: 'U123' };
  it('says nothing for the signing secret alone', () => {
    expect(configWarnings(loadConfig(quiet))).toEqual([]);
  });

  it('warns that the shared header alone is weaker than the signature', () => {
    const config = loadConfig({
      ...quiet,
      PAGERDUTY_WEBHOOK_SECRET: '',
      WEBHOOK_SECRET: 'a-long-shared-secret',
    });
    const warnings = configWarnings(config);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /^WEBHOOK_SECRET: .*weaker than PagerDuty’s signature.*Prefer PAGERDUTY_WEBHOOK_SECRET/,
    );
    expect(warnings[0]).not.toContain('a-long-shared-secret');
  });

  it('warns when channel history is on but no channel is dedicated to incidents, and the reverse', () => {
    const on = { ...quiet, SLACK_INCLUDE_CHANNEL_HISTORY: 'true' };
    expect(configWarnings(loadConfig(on))).toEqual([
      expect.stringMatching(/^SLACK_INCLUDE_CHANNEL_HISTORY is on, but no channel is dedicated to incidents/),
    ]);
    expect(configWarnings(loadConfig({ ...on, INCIDENT_CHANNEL_PATTERN: 'inc-{number}' }))).toEqual([]);
    const optIn = () =>
      JSON.stringify({ services: { PSVC1: { channel: 'CPAY00001', include_channel_history: true } } });
    expect(configWarnings(loadConfig({ ...on, ROUTING_FILE: 'r.json' }, optIn))).toEqual([]);
    expect(configWarnings(loadConfig({ ...quiet, ROUTING_FILE: 'r.json' }, optIn))).toEqual([
      'ROUTING_FILE: include_channel_history has no effect while SLACK_INCLUDE_CHANNEL_HISTORY is off.',
    ]);
  });

  it('warns that WEBHOOK_SECRET is ignored when the signing secret is set too', () => {
    const warnings = configWarnings(loadConfig({ ...quiet, WEBHOOK_SECRET: 'a-long-shared-secret' }));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^WEBHOOK_SECRET is ignored: PAGERDUTY_WEBHOOK_SECRET is set/);
    expect(warnings[0]).not.toContain('a-long-shared-secret');
  });
});
