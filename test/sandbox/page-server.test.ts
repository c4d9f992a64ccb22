import { mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoControls, type PageServer, startPageServer } from '../../src/sandbox/page-server.js';

/** The demo page's server: what it serves, whom it answers, and what it accepts. */

const calls: { name: string; input: unknown }[] = [];
const listeners = new Set<() => void>();
let snapshot = { n: 1 };
const controls: DemoControls = {
  snapshot: () => JSON.stringify(snapshot),
  subscribe: (l) => {
    listeners.add(l);
    return () => listeners.delete(l);
  },
  fire: async (kind) => calls.push({ name: 'fire', input: kind }),
  resolve: async (id) => calls.push({ name: 'resolve', input: id }),
  click: async (input) => {
    calls.push({ name: 'click', input });
    return input.actionId === 'refused'
      ? { ok: false, status: 401, error: 'the bot answered HTTP 401' }
      : { ok: true, status: 200 };
  },
  command: async (input) => {
    calls.push({ name: 'command', input });
    return { ok: true, status: 200 };
  },
  submit: async (input) => calls.push({ name: 'submit', input }),
  closeModal: (user, viewId) => {
    calls.push({ name: 'close', input: { user, viewId } });
  },
  step: (id) => {
    if (id === 'unknown') throw Object.assign(new Error('no Devin session unknown'), { status: 404 });
    return id === 'done' ? { ok: false, reason: 'The session finished.' } : { ok: true };
  },
  fail: () => ({ ok: true }),
  setAutoStep: (ms) => {
    calls.push({ name: 'speed', input: ms });
  },
};

let server: PageServer;
beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'demo-page-'));
  writeFileSync(join(dir, 'index.html'), '<title>page</title>');
  server = await startPageServer({ port: 0, pageDir: dir, controls });
});
afterAll(() => server.close());

const post = (path: string, body: unknown, contentType = 'application/json') =>
  fetch(`${server.url}/api/${path}`, {
    method: 'POST',
    headers: { 'content-type': contentType },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

describe('the demo page server', () => {
  it('serves the page', async () => {
    const res = await fetch(`${server.url}/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('<title>page</title>');
  });

  it('answers only requests addressed to 127.0.0.1 or localhost (no DNS rebinding)', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const url = new URL(server.url);
      const req = request(
        { host: '127.0.0.1', port: url.port, path: '/', headers: { host: `evil.example:${url.port}` } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(403);
  });

  it('takes actions as JSON only, checks them, and passes them on', async () => {
    calls.length = 0;
    expect((await post('slack/click', 'user=UADA0001', 'application/x-www-form-urlencoded')).status).toBe(
      415,
    );
    const bad = await post('slack/click', { user: 'not-a-user', actionId: 'postmortem_approve', ts: '1.2' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toContain('expected a Slack user ID');
    expect((await post('slack/click', { user: 'UADA0001', actionId: 'x' })).status).toBe(400);
    expect((await post('pagerduty/fire', { kind: 'p9' })).status).toBe(400);
    expect(calls).toEqual([]);

    const ok = await post('slack/click', { user: 'UADA0001', actionId: 'postmortem_approve', ts: '1.2' });
    expect(ok.status).toBe(200);
    expect(calls).toEqual([
      { name: 'click', input: { user: 'UADA0001', actionId: 'postmortem_approve', ts: '1.2' } },
    ]);
    const refused = await post('slack/click', {
      user: 'UADA0001',
      actionId: 'refused',
      privateId: 'private-1',
    });
    expect(refused.status).toBe(409);
    expect(await refused.json()).toEqual({ ok: false, status: 401, error: 'the bot answered HTTP 401' });
    const finished = await post('devin/step', { sessionId: 'done' });
    expect(finished.status).toBe(409);
    expect(await finished.json()).toEqual({ ok: false, reason: 'The session finished.' });
    const unknown = await post('devin/step', { sessionId: 'unknown' });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: 'no Devin session unknown' });
    expect((await post('devin/speed', { ms: 2000 })).status).toBe(200);
    expect(calls.at(-1)).toEqual({ name: 'speed', input: 2000 });
  });

  it('streams the state as server-sent events: at once, then on every change', async () => {
    const controller = new AbortController();
    const res = await fetch(`${server.url}/events`, { signal: controller.signal });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let received = '';
    const nextEvent = async () => {
      while (!received.includes('\n\n')) received += decoder.decode((await reader.read()).value);
      const [event = '', ...rest] = received.split('\n\n');
      received = rest.join('\n\n');
      return event;
    };
    expect(await nextEvent()).toBe('event: state\ndata: {"n":1}');
    snapshot = { n: 2 };
    for (const l of listeners) l();
    expect(await nextEvent()).toBe('event: state\ndata: {"n":2}');
    controller.abort();
  });
});
