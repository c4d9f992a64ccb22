import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { signPagerDutyBody } from '../../src/pagerduty/signature.js';
import { BUILT_DIR } from '../global-setup.js';
import { PD_SECRET, waitFor } from './harness.js';
import { freePort } from './http-server.js';

/**
 * The bot as `npm start` runs it (the built dist/main.js) in a child process of its own, for the tests that
 * kill it, stop it or run several of it. Each start listens on a new port: read `url` after start().
 */
export class BotProcess {
  child: ChildProcess | undefined;
  url = '';
  kills = 0;
  /** The end of what the process wrote (stdout and stderr), for a failing test's message. */
  output = '';

  constructor(private readonly env: Record<string, string>) {}

  async start(readyTimeoutMs = 15_000): Promise<void> {
    const port = await freePort();
    this.url = `http://127.0.0.1:${port}`;
    const child = spawn(process.execPath, [join(BUILT_DIR, 'main.js')], {
      cwd: mkdtempSync(join(tmpdir(), 'bot-cwd-')),
      env: { PATH: process.env.PATH ?? '', ...this.env, PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString('utf8')).slice(-20_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.child = child;
    await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`the bot exited with ${child.exitCode}: ${this.output}`);
        return fetch(`${this.url}/readyz`).then(
          (r) => r.ok,
          () => false,
        );
      },
      'the bot to be ready',
      readyTimeoutMs,
    );
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    this.kills++;
  }

  /** SIGTERM, as a deploy or `docker stop` does; resolves with the exit code and how long it took. */
  async stop(): Promise<{ code: number | null; ms: number }> {
    const child = this.child;
    if (!child || !this.running) return { code: child?.exitCode ?? null, ms: 0 };
    const since = Date.now();
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    const code = await exited;
    return { code, ms: Date.now() - since };
  }
}

/** Delivers like PagerDuty: until a 2xx, retrying connection errors and 5xx (the bot's URL may change). */
export async function deliver(bot: BotProcess, body: string): Promise<number> {
  const signature = signPagerDutyBody(body, PD_SECRET);
  for (let attempt = 0; attempt < 400; attempt++) {
    try {
      const res = await fetch(`${bot.url}/webhooks/pagerduty`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-pagerduty-signature': signature },
        body,
        signal: AbortSignal.timeout(5000),
      });
      await res.arrayBuffer();
      if (res.status < 300) return res.status;
      if (res.status < 500) throw new Error(`delivery refused with ${res.status}`);
    } catch (err) {
      if ((err as Error).message.startsWith('delivery refused')) throw err;
    }
    await sleep(100);
  }
  throw new Error('delivery never accepted');
}
