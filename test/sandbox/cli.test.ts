import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BUILT_DIR } from '../global-setup.js';
import { freePort } from '../helpers/http-server.js';

/** `npm run demo`'s entry point as a person runs it: a process, stopped with Ctrl-C / SIGTERM. */

const ENTRY = join(BUILT_DIR, 'sandbox', 'main.js');
const children: ChildProcess[] = [];

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

function runDemo(env: Record<string, string>) {
  const child = spawn(process.execPath, [ENTRY], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => {
    stdout += c.toString('utf8');
  });
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const started = new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', () => {
      if (stdout.includes('Ctrl-C stops')) resolve(stdout);
    });
    exited.then((code) => reject(new Error(`the demo exited (${code}): ${stderr}`)));
  });
  // Awaited only by the tests that expect a start.
  started.catch(() => {});
  return { child, started, exited, output: () => ({ stdout, stderr }) };
}

const refused = (url: string) =>
  fetch(url, { signal: AbortSignal.timeout(2000) }).then(
    () => false,
    () => true,
  );

describe('npm run demo (the process)', () => {
  it('serves the page on DEMO_PORT and stops cleanly on SIGTERM: bot, stand-ins, page and work folder', async () => {
    const port = await freePort();
    const demo = runDemo({ DEMO_PORT: String(port) });
    const out = await demo.started;
    expect(out).toContain('nothing leaves this machine');
    expect(out).toContain(`Open http://127.0.0.1:${port}`);
    const bot = /The bot: +(http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1] ?? '';
    const workDir = /Its log, data: +(\S+)/.exec(out)?.[1] ?? '';
    const standIns = [
      ...(/Stand-ins: +(.*)/.exec(out)?.[1] ?? '').matchAll(/http:\/\/127\.0\.0\.1:\d+/g),
    ].map((m) => m[0]);
    expect(standIns).toHaveLength(3);
    expect(existsSync(join(workDir, '.env'))).toBe(true);

    const page = await fetch(`http://127.0.0.1:${port}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>postmortem-bot demo</title>');
    const script = await fetch(`http://127.0.0.1:${port}/blockkit.js`);
    expect(script.headers.get('content-type')).toMatch(/javascript/);
    expect((await fetch(`${bot}/readyz`)).status).toBe(200);

    demo.child.kill('SIGTERM');
    expect(await demo.exited).toBe(0);
    expect(existsSync(workDir)).toBe(false);
    for (const url of [`http://127.0.0.1:${port}/`, `${bot}/healthz`, ...standIns]) {
      expect(await refused(url), url).toBe(true);
    }
  }, 60_000);

  it('a DEMO_PORT already in use: says so and exits 1', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as { port: number };
    try {
      const demo = runDemo({ DEMO_PORT: String(port) });
      expect(await demo.exited).toBe(1);
      expect(demo.output().stderr).toContain(`port ${port} is in use: set DEMO_PORT to another port`);
    } finally {
      taken.close();
    }
  }, 30_000);

  it('a DEMO_PORT that is not a port: says what it expects and exits 1', async () => {
    const demo = runDemo({ DEMO_PORT: 'three thousand' });
    expect(await demo.exited).toBe(1);
    expect(demo.output().stderr).toContain(
      'DEMO_PORT: expected a port number (0-65535), got "three thousand"',
    );
  });
});
