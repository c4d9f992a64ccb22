import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { requiredScopes } from '../src/checks/slack.js';
import { ENV_VARIABLES, loadConfig } from '../src/config/config.js';
import {
  APPROVE_ACTION_ID,
  RETRY_ACTION_ID,
  RUN_AGAIN_ACTION_ID,
  SKIP_ACTION_ID,
  START_ANYWAY_ACTION_ID,
} from '../src/slack/messages.js';

const read = (f: string) => readFileSync(join(import.meta.dirname, '..', f), 'utf8');

/** README, .env.example and manifest.yml stay true to the code. */
describe('documentation matches the code', () => {
  it('documents every environment variable in .env.example and the README table', () => {
    const example = read('.env.example');
    const readme = read('README.md');
    expect(ENV_VARIABLES.length).toBeGreaterThan(15);
    for (const name of ENV_VARIABLES) {
      expect(example, `${name} in .env.example`).toMatch(new RegExp(`^#?${name}=`, 'm'));
      expect(readme, `${name} in README`).toMatch(new RegExp(`^\\| \`${name}\` +\\|`, 'm'));
    }
  });

  it('the manifest points the command and interactivity at /slack/events and grants what the code uses', () => {
    const manifest = read('manifest.yml');
    expect(manifest).toContain('- command: /postmortem');
    expect(manifest.match(/https:\/\/YOUR-HOST\/slack\/events/g)).toHaveLength(3);
    expect(manifest).toMatch(/interactivity:\n\s+is_enabled: true/);
    // The Home tab: enabled, and the event that publishes it subscribed to, at the same request URL.
    expect(manifest).toMatch(/app_home:\n\s+home_tab_enabled: true/);
    expect(manifest).toMatch(
      /event_subscriptions:\n\s+request_url: https:\/\/YOUR-HOST\/slack\/events\n\s+bot_events:\n\s+- app_home_opened\n/,
    );
    for (const scope of [
      'chat:write',
      'chat:write.public',
      'commands',
      'usergroups:read',
      'channels:history',
      'groups:history',
    ]) {
      expect(manifest).toContain(`- ${scope}\n`);
    }
  });

  it('the deploy/ examples run two replicas on Postgres with the probes, grace and budget the README gives', () => {
    const k8s = read('deploy/kubernetes.yaml');
    expect(k8s).toMatch(/^kind: Deployment$/m);
    expect(k8s).toMatch(/^ {2}replicas: 2$/m);
    expect(k8s).toMatch(/readinessProbe:\n\s+httpGet: \{ path: \/readyz,/);
    expect(k8s).toMatch(/livenessProbe:\n\s+httpGet: \{ path: \/healthz,/);
    expect(k8s).toMatch(/terminationGracePeriodSeconds: 40$/m);
    expect(k8s).toMatch(/^kind: PodDisruptionBudget$/m);
    const compose = read('deploy/compose.yaml');
    expect(compose).toMatch(/DATABASE_URL: postgres:\/\/\S+@postgres:5432\//);
    expect(compose).toMatch(/^ {2}bot-2:$/m);
    expect(compose).toMatch(/stop_grace_period: 40s/);
    // Every setting they name is one the bot reads.
    for (const file of [k8s, compose]) {
      for (const [, name] of file.matchAll(/\b(?:name: |^\s{4})([A-Z][A-Z_]+)(?:[:,])/gm)) {
        if (name?.startsWith('POSTGRES_')) continue; // the postgres image's own
        expect(ENV_VARIABLES).toContain(name);
      }
    }
    const readme = read('README.md');
    expect(readme).toContain('deploy/kubernetes.yaml');
    expect(readme).toContain('deploy/compose.yaml');
  });

  it('every scope the doctor requires is one the manifest asks for', () => {
    const manifest = read('manifest.yml');
    const config = loadConfig({
      SLACK_BOT_TOKEN: 'xoxb-1',
      SLACK_SIGNING_SECRET: 's',
      SLACK_DEFAULT_CHANNEL: 'C0123456789',
      PAGERDUTY_WEBHOOK_SECRET: 'secret-secret',
      DEVIN_API_KEY: 'cog_1',
      DEVIN_ORG_ID: 'org-1',
      SLACK_APPROVERS: 'S0123456789',
      SLACK_INCLUDE_CHANNEL_HISTORY: 'true',
    });
    const scopes = requiredScopes(config);
    expect(scopes).toContain('usergroups:read');
    for (const scope of scopes) expect(manifest).toContain(`- ${scope}\n`);
  });

  it('the contract action IDs are the documented ones', () => {
    expect([APPROVE_ACTION_ID, SKIP_ACTION_ID]).toEqual(['postmortem_approve', 'postmortem_skip']);
    expect(
      new Set([
        APPROVE_ACTION_ID,
        SKIP_ACTION_ID,
        START_ANYWAY_ACTION_ID,
        RETRY_ACTION_ID,
        RUN_AGAIN_ACTION_ID,
      ]).size,
    ).toBe(5);
  });
});
