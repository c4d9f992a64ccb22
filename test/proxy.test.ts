import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILT_DIR } from './global-setup.js';
import { FakeDevin } from './helpers/fake-devin.js';
import { FakePagerDuty } from './helpers/fake-pagerduty.js';
import { FakeSlack } from './helpers/fake-slack.js';
import { postPagerDuty, resolvedEvent, testEnv, waitFor } from './helpers/harness.js';

/**
 * HTTPS_PROXY end to end: the built bot, configured with Slack and Devin at https host names that only the
 * proxy can reach (slack.test, devin.test: no DNS knows them), and a real HTTP CONNECT proxy written here
 * that tunnels them to local TLS stand-ins with a certificate the bot trusts through NODE_EXTRA_CA_CERTS.
 * If any call bypassed the proxy it would fail (the names do not resolve), and the proxy records every
 * CONNECT. PagerDuty is on 127.0.0.1, listed in NO_PROXY: reached directly.
 */

interface Tunnel {
  server: Server;
  port: number;
  connects: string[];
  close(): Promise<void>;
}

/** A forward proxy that only tunnels (CONNECT), to the hosts it knows; anything else gets 502. */
async function startConnectProxy(routes: Record<string, number>): Promise<Tunnel> {
  const connects: string[] = [];
  const sockets = new Set<Socket>();
  const server = createHttpServer((req, res) => {
    connects.push(`${req.method} ${req.url}`);
    res.writeHead(502).end('this proxy only tunnels');
  });
  server.on('connect', (req, client: Socket, head: Buffer) => {
    const target = req.url ?? '';
    connects.push(target);
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    const port = routes[target];
    if (!port) {
      client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
      return;
    }
    const upstream = connect(port, '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as { port: number }).port,
    connects,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** TLS in front of a local plain-HTTP stand-in, as the real API's host would present it. */
async function startTlsFront(
  key: string,
  cert: string,
  upstreamUrl: string,
): Promise<{ port: number; server: TlsServer }> {
  const upstreamPort = Number(new URL(upstreamUrl).port);
  const server = createTlsServer({ key, cert }, (socket) => {
    const upstream = connect(upstreamPort, '127.0.0.1');
    socket.pipe(upstream).pipe(socket);
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as { port: number }).port, server };
}

let slack: FakeSlack;
let devin: FakeDevin;
let pagerduty: FakePagerDuty;
let proxy: Tunnel;
let fronts: TlsServer[] = [];
let certFile: string;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'proxy-tls-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=slack.test',
      '-addext',
      'subjectAltName=DNS:slack.test,DNS:devin.test',
    ],
    { stdio: 'ignore' },
  );
  certFile = join(dir, 'cert.pem');
  const key = readFileSync(join(dir, 'key.pem'), 'utf8');
  const cert = readFileSync(certFile, 'utf8');
  slack = await new FakeSlack().start();
  devin = await new FakeDevin().start();
  pagerduty = await new FakePagerDuty().start();
  const slackFront = await startTlsFront(key, cert, slack.url);
  const devinFront = await startTlsFront(key, cert, devin.url);
  fronts = [slackFront.server, devinFront.server];
  proxy = await startConnectProxy({ 'slack.test:443': slackFront.port, 'devin.test:443': devinFront.port });
});

afterAll(async () => {
  await proxy?.close();
  for (const f of fronts) await new Promise((resolve) => f.close(resolve));
  await slack?.close();
  await devin?.close();
  await pagerduty?.close();
});

function startBot(env: Record<string, string>): ChildProcess & { output: () => string } {
  const dir = mkdtempSync(join(tmpdir(), 'proxy-bot-'));
  writeFileSync(
    join(dir, '.env'),
    Object.entries(env)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n'),
  );
  const child = spawn(process.execPath, [join(BUILT_DIR, 'main.js')], {
    cwd: dir,
    // Node reads NODE_EXTRA_CA_CERTS when it starts, before the bot reads its .env.
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_EXTRA_CA_CERTS: certFile },
    stdio: 'pipe',
  });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  return Object.assign(child, { output: () => out });
}

const botEnv = (extra: Record<string, string>) => ({
  ...(testEnv(slack, devin, './data/bot.db', {}, pagerduty) as Record<string, string>),
  SLACK_API_URL: 'https://slack.test/api/',
  DEVIN_API_URL: 'https://devin.test',
  PORT: '0',
  LOG_LEVEL: 'info',
  ...extra,
});

describe('outbound proxy (HTTPS_PROXY)', () => {
  it('without the proxy, the test host names do not resolve (so nothing can bypass it)', async () => {
    const child = startBot(botEnv({}));
    try {
      const code = await new Promise((resolve) => child.once('exit', resolve));
      expect(code).toBe(1);
      expect(child.output()).toContain('DNS lookup of slack.test failed');
    } finally {
      child.kill('SIGKILL');
    }
  }, 30_000);

  it('sends every Slack and Devin call through the CONNECT proxy, and NO_PROXY hosts directly', async () => {
    const child = startBot(
      botEnv({
        HTTPS_PROXY: `http://127.0.0.1:${proxy.port}`,
        HTTP_PROXY: `http://127.0.0.1:${proxy.port}`,
        NO_PROXY: '127.0.0.1,localhost',
      }),
    );
    try {
      const line = await waitFor(() => /"port":(\d+)/.exec(child.output()) ?? undefined, 'the bot to listen');
      const url = `http://127.0.0.1:${line[1]}`;
      // Start-up: auth.test and the Devin key check went through the tunnel; the PagerDuty token check
      // went straight to 127.0.0.1.
      expect(proxy.connects).toContain('slack.test:443');
      expect(proxy.connects).toContain('devin.test:443');
      expect(slack.callsOf('auth.test')).toHaveLength(1);
      expect(devin.listRequests.length).toBeGreaterThanOrEqual(1);
      expect(pagerduty.requests).toContain('/incidents?limit=1');
      expect(proxy.connects.some((c) => c.includes('127.0.0.1'))).toBe(false);
      expect(child.output()).toContain('outbound calls use a proxy');

      // A P1 starts by itself: the session is created in Devin and the message posted in Slack, both
      // reachable only through the tunnel.
      expect((await postPagerDuty(url, resolvedEvent({ priority: 'P1' }))).status).toBe(202);
      await waitFor(() => devin.sessions.length === 1, 'the session, created through the proxy');
      await waitFor(
        () => slack.callsOf('chat.postMessage').length >= 1,
        'the message, posted through the proxy',
      );
      expect(proxy.connects.every((c) => c === 'slack.test:443' || c === 'devin.test:443')).toBe(true);
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    } finally {
      child.kill('SIGKILL');
    }
  });
});
