import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Env } from '../src/config/config.js';
import { BUILT_DIR } from './global-setup.js';
import { FakeDevin } from './helpers/fake-devin.js';
import { FakePagerDuty } from './helpers/fake-pagerduty.js';
import { FakeSlack } from './helpers/fake-slack.js';
import { testEnv, waitFor } from './helpers/harness.js';
import { freePort } from './helpers/http-server.js';

/**
 * The built entry point as `npm start` runs it: refuses to start without configuration, naming every
 * variable; starts with a filled .env; shuts down cleanly on SIGTERM.
 */
const OUT = BUILT_DIR;

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  return env;
}

function run(cwd: string): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [join(OUT, 'main.js')], { cwd, env: cleanEnv(), stdio: 'pipe' });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  return Object.assign(child, { output: () => out });
}

function writeDotEnv(dir: string, env: Env): void {
  writeFileSync(
    join(dir, '.env'),
    Object.entries(env)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n'),
  );
}

const exited = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.on('exit', (code) => resolve(code));
  });

describe('start-up', () => {
  it('without a .env, exits 1 and names every variable to set', async () => {
    const child = run(mkdtempSync(join(tmpdir(), 'noenv-')));
    expect(await exited(child)).toBe(1);
    const out = child.output();
    expect(out).toContain('postmortem-bot cannot start.');
    for (const name of [
      'SLACK_BOT_TOKEN',
      'SLACK_SIGNING_SECRET',
      'SLACK_DEFAULT_CHANNEL',
      'PAGERDUTY_WEBHOOK_SECRET',
      'DEVIN_API_KEY',
      'DEVIN_ORG_ID',
    ]) {
      expect(out).toContain(`- ${name}: `);
    }
    expect(out).not.toContain('    at ');
  });

  describe('with a filled .env', () => {
    let slack: FakeSlack;
    let devin: FakeDevin;
    beforeAll(async () => {
      slack = await new FakeSlack().start();
      devin = await new FakeDevin().start();
    });
    afterAll(async () => {
      await slack.close();
      await devin.close();
    });

    it('checks the token with Slack, serves /healthz and /readyz, and stops cleanly on SIGTERM', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'withenv-'));
      const env: Env = {
        ...testEnv(slack, devin, './data/bot.db'),
        WEBHOOK_SECRET: 'a-shared-value-left-from-the-guide',
        PORT: '0',
        LOG_LEVEL: 'info',
      };
      writeDotEnv(dir, env);
      const child = run(dir);
      try {
        const line = await waitFor(
          () => /"port":(\d+)/.exec(child.output()) ?? undefined,
          'the listening log line',
        );
        const port = Number(line[1]);
        expect(slack.callsOf('auth.test')).toHaveLength(1);
        expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
        expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
        const logs = child.output();
        // Start-up warnings (configWarnings) are logged: here, that the shared header is ignored.
        expect(logs).toMatch(
          /"level":40,[^\n]*"msg":"WEBHOOK_SECRET is ignored: PAGERDUTY_WEBHOOK_SECRET is set/,
        );
        for (const secret of [
          env.WEBHOOK_SECRET,
          env.SLACK_BOT_TOKEN,
          env.SLACK_SIGNING_SECRET,
          env.PAGERDUTY_WEBHOOK_SECRET,
          env.DEVIN_API_KEY,
        ]) {
          expect(logs).not.toContain(String(secret));
        }
        child.kill('SIGTERM');
        expect(await exited(child)).toBe(0);
      } finally {
        child.kill('SIGKILL');
      }
    });

    /** Starts the built bot with `env` over the test defaults and waits for it to exit. */
    const startWith = async (extra: Env) => {
      const dir = mkdtempSync(join(tmpdir(), 'startup-'));
      writeDotEnv(dir, { ...testEnv(slack, devin, './data/bot.db'), PORT: '0', LOG_LEVEL: 'info', ...extra });
      const child = run(dir);
      try {
        return { code: await exited(child), output: child.output() };
      } finally {
        child.kill('SIGKILL');
      }
    };

    it('refuses to start when Devin rejects the key, naming the variable and the fix', async () => {
      const { code, output } = await startWith({ DEVIN_API_KEY: 'cog_revoked' });
      expect(code).toBe(1);
      expect(output).toContain(
        'DEVIN_API_KEY: Devin rejected the key (401): create a key for the service user',
      );
      expect(output).not.toContain('    at ');
      expect(output).not.toContain('cog_revoked');
      expect(output).not.toContain('listening');
    });

    it('refuses to start when Devin does not know the organization', async () => {
      const { code, output } = await startWith({ DEVIN_ORG_ID: 'org-nope' });
      expect(code).toBe(1);
      expect(output).toContain('DEVIN_ORG_ID: Devin does not know the organization org-nope (404)');
    });

    it('refuses to start when PagerDuty rejects the REST token, when one is set', async () => {
      const pagerduty = await new FakePagerDuty().start();
      try {
        const { code, output } = await startWith({
          PAGERDUTY_API_URL: pagerduty.url,
          PAGERDUTY_API_TOKEN: 'pd-wrong-token',
        });
        expect(code).toBe(1);
        expect(output).toContain('PAGERDUTY_API_TOKEN: PagerDuty refused the token (401)');
        expect(pagerduty.requests).toContain('/incidents?limit=1');
      } finally {
        await pagerduty.close();
      }
    });

    it('starts when Devin cannot be reached, and the warning names the host and the cause', async () => {
      const closed = await freePort();
      const dir = mkdtempSync(join(tmpdir(), 'devin-down-'));
      writeDotEnv(dir, {
        ...testEnv(slack, devin, './data/bot.db'),
        PORT: '0',
        LOG_LEVEL: 'info',
        DEVIN_API_URL: `http://127.0.0.1:${closed}`,
      });
      const child = run(dir);
      try {
        await waitFor(() => child.output().includes('postmortem-bot listening'), 'the bot to listen');
        expect(child.output()).toContain(
          `Devin API key and organization: not checked at start-up: Devin API unreachable: connection to 127.0.0.1:${closed} refused (ECONNREFUSED)`,
        );
        child.kill('SIGTERM');
        expect(await exited(child)).toBe(0);
      } finally {
        child.kill('SIGKILL');
      }
    });

    it('names the host of a DNS failure', async () => {
      const { code, output } = await startWith({ SLACK_API_URL: 'http://slack.invalid/api/' });
      expect(code).toBe(1);
      expect(output).toContain(
        'Could not reach Slack to check SLACK_BOT_TOKEN: DNS lookup of slack.invalid failed (ENOTFOUND)',
      );
    }, 30_000);

    it('a port in use is one line with the fix', async () => {
      const taken = createServer();
      await new Promise<void>((resolve) => taken.listen(0, resolve));
      const port = (taken.address() as { port: number }).port;
      try {
        const { code, output } = await startWith({ PORT: String(port) });
        expect(code).toBe(1);
        expect(output).toContain(
          `PORT ${port} is already in use by another process: stop it, or set PORT to a free port`,
        );
        expect(output).not.toContain('    at ');
      } finally {
        taken.close();
      }
    });

    it('a data folder it cannot create is one line with the fix', async () => {
      // A regular file where the folder should be: refused even to root (the tests run as root, which
      // file permissions do not stop).
      const dir = mkdtempSync(join(tmpdir(), 'nodir-'));
      writeFileSync(join(dir, 'data'), 'not a folder');
      const { code, output } = await startWith({ DATABASE_URL: `sqlite:${join(dir, 'data', 'bot.db')}` });
      expect(code).toBe(1);
      expect(output).toContain(
        `DATABASE_URL: cannot write the SQLite database ${join(dir, 'data', 'bot.db')} (EEXIST`,
      );
      expect(output).toContain('point DATABASE_URL at a file in a folder this user may write');
      expect(output).not.toContain('    at ');
    });

    it('refuses to start when Slack rejects the token', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'badtoken-'));
      const env: Env = {
        ...testEnv(slack, devin, './data/bot.db'),
        SLACK_BOT_TOKEN: 'xoxb-revoked',
        PORT: '0',
      };
      writeDotEnv(dir, env);
      const child = run(dir);
      expect(await exited(child)).toBe(1);
      expect(child.output()).toContain('SLACK_BOT_TOKEN was rejected by Slack (invalid_auth)');
    });
  });
});
