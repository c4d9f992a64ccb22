import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signPagerDutyBody } from '../../src/pagerduty/signature.js';
import {
  fixture,
  type Harness,
  PD_SECRET,
  postPagerDuty,
  resolvedEvent,
  startHarness,
  waitFor,
} from '../helpers/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ env: { PAGERDUTY_WEBHOOK_SECRET: `old-secret-being-rotated,${PD_SECRET}` } });
});
afterAll(async () => {
  await h.close();
});

/** Whether the store holds an event with this ID (0 or 1). */
async function eventCount(id: string): Promise<number> {
  return (await h.bot.store.getEvent(id)) ? 1 : 0;
}

describe('POST /webhooks/pagerduty', () => {
  it('rejects a wrong signature with 401 and stores nothing', async () => {
    const body = resolvedEvent({ eventId: 'evt-badsig' });
    const res = await postPagerDuty(h.url, body, { secret: 'not-the-secret' });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: 'invalid or missing signature' });
    expect(await eventCount('evt-badsig')).toBe(0);
  });

  it('rejects a missing signature, a malformed one, and a signature over different bytes', async () => {
    const raw = JSON.stringify(resolvedEvent({ eventId: 'evt-nosig' }));
    const noSig = await fetch(`${h.url}/webhooks/pagerduty`, { method: 'POST', body: raw });
    expect(noSig.status).toBe(401);
    expect((await postPagerDuty(h.url, raw, { signature: 'v1=zz' })).status).toBe(401);
    // Same JSON, re-serialized with other whitespace: the signature covers the raw bytes.
    const sig = signPagerDutyBody(raw, PD_SECRET);
    const reformatted = JSON.stringify(JSON.parse(raw), null, 2);
    expect((await postPagerDuty(h.url, reformatted, { signature: sig })).status).toBe(401);
    expect(await eventCount('evt-nosig')).toBe(0);
  });

  it('accepts either secret during rotation, with two v1= entries', async () => {
    const raw = JSON.stringify(resolvedEvent({ eventId: 'evt-rotation', incidentId: 'PROTATE' }));
    const header = `${signPagerDutyBody(raw, 'some-other-secret')},${signPagerDutyBody(raw, 'old-secret-being-rotated')}`;
    const res = await postPagerDuty(h.url, raw, { signature: header });
    expect(res.status).toBe(202);
    expect(await eventCount('evt-rotation')).toBe(1);
  });

  it('answers 413 for a body over 1 MiB', async () => {
    const body = resolvedEvent({ eventId: 'evt-big' });
    body.event.data.title = 'x'.repeat(1024 * 1024);
    const res = await postPagerDuty(h.url, body);
    expect(res.status).toBe(413);
    expect(await eventCount('evt-big')).toBe(0);
  });

  it('answers 400 for a signed body that is not JSON, or not a v3 envelope', async () => {
    const notJson = await postPagerDuty(h.url, '{"event": ');
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toEqual({ error: 'body is not JSON' });

    const v2 = await postPagerDuty(h.url, { messages: [{ event: 'incident.resolve' }] });
    expect(v2.status).toBe(400);
    expect(((await v2.json()) as { error: string }).error).toMatch(/^not a PagerDuty v3 webhook: event:/);

    const noId = resolvedEvent({});
    delete noId.event.id;
    const res = await postPagerDuty(h.url, noId);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toContain('event.id');
  });

  it('accepts the official priority_updated example and tolerant payloads (null agent, client, priority, no incident_key)', async () => {
    expect((await postPagerDuty(h.url, fixture('pagerduty/incident-priority-updated.json'))).status).toBe(
      202,
    );
    const odd = resolvedEvent({ eventId: 'evt-tolerant', incidentId: 'PTOLERANT', priority: null });
    odd.event.agent = null;
    odd.event.client = null;
    delete odd.event.data.incident_key;
    odd.event.data.some_field_from_2030 = { nested: true };
    expect((await postPagerDuty(h.url, odd)).status).toBe(202);
    // Signed by PagerDuty but shaped unexpectedly: still accepted (a 4xx would make PagerDuty drop it and,
    // after three, disable the subscription).
    const changed = resolvedEvent({ eventId: 'evt-changed', incidentId: 'PCHANGED' });
    changed.event.agent = { id: null, type: 'user_reference', summary: 42 };
    delete changed.event.occurred_at;
    changed.event.client = 'a string now';
    expect((await postPagerDuty(h.url, changed)).status).toBe(202);
    expect(await eventCount('evt-changed')).toBe(1);
  });

  it('stores a huge body exactly as signed, but the incident keeps at most 2,000 characters of its title', async () => {
    const title = `🔥 ${'very long title '.repeat(40_000)}`;
    const body = resolvedEvent({
      eventId: 'evt-long-title',
      incidentId: 'PLONGTITLE',
      priority: 'P5',
      title,
    });
    const raw = JSON.stringify(body);
    expect(Buffer.byteLength(raw)).toBeGreaterThan(600_000);
    expect((await postPagerDuty(h.url, raw)).status).toBe(202);
    expect((await h.bot.store.getEvent('evt-long-title'))?.payload).toBe(raw);
    const incident = await waitFor(() => h.bot.store.getIncident('PLONGTITLE'), 'the incident');
    expect(incident.title).toHaveLength(2000);
    expect(incident.title).toBe(`${title.slice(0, 1999)}…`);
  });

  it('answers a repeated delivery with 200 and changes nothing', async () => {
    const body = resolvedEvent({ eventId: 'evt-repeat', incidentId: 'PREPEAT', priority: 'P5' });
    expect((await postPagerDuty(h.url, body)).status).toBe(202);
    const again = await postPagerDuty(h.url, body);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ status: 'duplicate' });
    expect(await eventCount('evt-repeat')).toBe(1);
  });

  it('accepts the guide’s shared X-Webhook-Secret header when WEBHOOK_SECRET is set', async () => {
    const shared = await startHarness({
      env: { PAGERDUTY_WEBHOOK_SECRET: '', WEBHOOK_SECRET: 'a-long-shared-secret-value' },
    });
    try {
      const body = resolvedEvent({ eventId: 'evt-shared' });
      const ok = await postPagerDuty(shared.url, body, {
        signature: '',
        headers: { 'x-webhook-secret': 'a-long-shared-secret-value' },
      });
      expect(ok.status).toBe(202);
      const wrong = await postPagerDuty(shared.url, resolvedEvent({ eventId: 'evt-shared-2' }), {
        signature: '',
        headers: { 'x-webhook-secret': 'a-long-shared-secret-valuX' },
      });
      expect(wrong.status).toBe(401);
    } finally {
      await shared.close();
    }
  });

  it('with both secrets set, requires the signature: the shared header cannot stand in for it', async () => {
    const both = await startHarness({
      env: { PAGERDUTY_WEBHOOK_SECRET: PD_SECRET, WEBHOOK_SECRET: 'a-long-shared-secret-value' },
    });
    try {
      const shared = { 'x-webhook-secret': 'a-long-shared-secret-value' };
      const zeros = await postPagerDuty(both.url, resolvedEvent({ eventId: 'evt-both-zero' }), {
        signature: `v1=${'0'.repeat(64)}`,
        headers: shared,
      });
      expect(zeros.status).toBe(401);
      const headerOnly = await postPagerDuty(both.url, resolvedEvent({ eventId: 'evt-both-none' }), {
        signature: '',
        headers: shared,
      });
      expect(headerOnly.status).toBe(401);
      const signed = await postPagerDuty(both.url, resolvedEvent({ eventId: 'evt-both-signed' }));
      expect(signed.status).toBe(202);
      const ids = await Promise.all(
        ['evt-both-zero', 'evt-both-none', 'evt-both-signed'].map((id) => both.bot.store.getEvent(id)),
      );
      expect(ids.map((e) => e?.id)).toEqual([undefined, undefined, 'evt-both-signed']);
    } finally {
      await both.close();
    }
  });

  it('refuses a request without a signature header before reading its body', async () => {
    // The body is announced as 1 MiB and never finishes: only a check made before the body parser answers.
    const noHeader = await postUnfinishedBody(h.url, {});
    expect(noHeader.status).toBe(401);
    expect(JSON.parse(noHeader.body)).toEqual({ error: 'invalid or missing signature' });
    expect(noHeader.connection).toBe('close');
    const malformed = await postUnfinishedBody(h.url, { 'x-pagerduty-signature': 'v1=not-hex' });
    expect(malformed.status).toBe(401);
    const shared = await startHarness({
      env: { PAGERDUTY_WEBHOOK_SECRET: '', WEBHOOK_SECRET: 'a-long-shared-secret-value' },
    });
    try {
      const wrong = await postUnfinishedBody(shared.url, { 'x-webhook-secret': 'not-the-shared-value' });
      expect(wrong.status).toBe(401);
      // In the shared-header scheme a signature header alone is no credential either.
      const sigOnly = await postUnfinishedBody(shared.url, {
        'x-pagerduty-signature': `v1=${'a'.repeat(64)}`,
      });
      expect(sigOnly.status).toBe(401);
    } finally {
      await shared.close();
    }
  });

  it('caps header values echoed into the logs', async () => {
    const huge = `wh-${'x'.repeat(10_000)}`;
    const res = await postPagerDuty(h.url, resolvedEvent({ eventId: 'evt-huge-header' }), {
      headers: { 'x-webhook-id': huge },
    });
    expect(res.status).toBe(202);
    const rejected = await postPagerDuty(h.url, resolvedEvent({ eventId: 'evt-huge-header-2' }), {
      signature: '',
      headers: { 'x-webhook-id': huge },
    });
    expect(rejected.status).toBe(401);
    const lines = h.logs.lines.filter((l) => l.includes('wh-xxxx'));
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const line of lines) {
      expect(line).not.toContain(huge);
      expect(line.length).toBeLessThan(1000);
      expect(line).toContain('(10003 characters)');
    }
  });

  it('answers 503 (so PagerDuty retries) when the store cannot take the event, and never 2xx', async () => {
    const broken = await startHarness();
    try {
      await broken.bot.store.close();
      const res = await postPagerDuty(broken.url, resolvedEvent({ eventId: 'evt-store-down' }));
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      const ready = await fetch(`${broken.url}/readyz`);
      expect(ready.status).toBe(503);
      // A generic reason for whoever asks; the store's own words go to the log only.
      const answer = await ready.text();
      expect(JSON.parse(answer)).toEqual({ status: 'not ready', reason: 'store unavailable' });
      const logged = broken.logs.lines
        .map((l) => JSON.parse(l) as { msg: string; err?: string })
        .find((l) => l.msg === 'not ready: the store does not take writes');
      expect(logged?.err).toBeTruthy();
      expect(answer).not.toContain(String(logged?.err));
    } finally {
      await broken.close();
    }
  });
});

describe('health', () => {
  it('/healthz is 200 and /readyz is 200 while the store answers', async () => {
    expect((await fetch(`${h.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${h.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });
});

/**
 * A POST whose body is announced as 1 MiB but never finishes. Resolves with the answer the server gives
 * anyway, or fails after five seconds if the server waits for the body.
 */
function postUnfinishedBody(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number | undefined; body: string; connection: string | undefined }> {
  const target = new URL(`${url}/webhooks/pagerduty`);
  return new Promise((resolve, reject) => {
    const req = request({
      host: target.hostname,
      port: target.port,
      path: target.pathname,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': String(1024 * 1024), ...headers },
    });
    const deadline = setTimeout(() => {
      req.destroy();
      reject(new Error('no answer while the body was still arriving'));
    }, 5000);
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => {
        clearTimeout(deadline);
        resolve({ status: res.statusCode, body, connection: res.headers.connection });
        req.destroy();
      });
    });
    req.on('error', (err) => {
      clearTimeout(deadline);
      reject(err);
    });
    req.write('{"event":{"id":"never-finished","event_type":"incident.resolved"');
  });
}
