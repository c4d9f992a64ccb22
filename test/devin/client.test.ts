import nock from 'nock';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevinApiError, DevinClient } from '../../src/devin/client.js';

const API = 'https://devin.test';
const client = new DevinClient({ apiUrl: API, apiKey: 'cog_secret', orgId: 'org-1', timeoutMs: 200 });
const session = {
  session_id: 'devin-1',
  url: 'https://app.devin.ai/sessions/1',
  status: 'new',
  tags: ['pm-run-a'],
};

beforeAll(() => {
  nock.disableNetConnect();
});
afterEach(() => {
  expect(nock.isDone()).toBe(true);
  nock.cleanAll();
});

async function failure(p: Promise<unknown>): Promise<DevinApiError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DevinApiError);
  return err as DevinApiError;
}

describe('DevinClient', () => {
  it('creates a session with the bearer key and JSON body', async () => {
    nock(API, { reqheaders: { authorization: 'Bearer cog_secret', 'content-type': 'application/json' } })
      .post('/v3/organizations/org-1/sessions', { prompt: 'p', title: 't', tags: ['x'] })
      .reply(200, session);
    expect(await client.createSession({ prompt: 'p', title: 't', tags: ['x'] })).toMatchObject(session);
  });

  it('tells a refusal (4xx, not retryable) from trouble worth retrying', async () => {
    nock(API)
      .post('/v3/organizations/org-1/sessions')
      .reply(403, { type: 'about:blank', title: 'Forbidden', status: 403, detail: 'Missing permission' });
    const refused = await failure(client.createSession({ prompt: 'p', title: 't', tags: [] }));
    expect(refused).toMatchObject({ code: 'devin_rejected', status: 403, retryable: false });
    expect(refused.message).toBe('Devin refused the request (403: Missing permission)');

    nock(API)
      .post('/v3/organizations/org-1/sessions')
      .reply(422, { detail: [{ loc: ['body', 'prompt'], msg: 'Field required', type: 'missing' }] });
    expect((await failure(client.createSession({ prompt: '', title: 't', tags: [] }))).message).toContain(
      'body.prompt: Field required',
    );

    nock(API).post('/v3/organizations/org-1/sessions').reply(503, 'upstream connect error');
    expect(await failure(client.createSession({ prompt: 'p', title: 't', tags: [] }))).toMatchObject({
      code: 'devin_unavailable',
      retryable: true,
    });

    nock(API).post('/v3/organizations/org-1/sessions').reply(429, {}, { 'retry-after': '7' });
    expect(await failure(client.createSession({ prompt: 'p', title: 't', tags: [] }))).toMatchObject({
      code: 'devin_rate_limited',
      retryAfterMs: 7000,
      retryable: true,
    });
  });

  it('reports a timeout and a dropped connection as retryable', async () => {
    nock(API).post('/v3/organizations/org-1/sessions').delay(1000).reply(200, session);
    expect(await failure(client.createSession({ prompt: 'p', title: 't', tags: [] }))).toMatchObject({
      code: 'devin_timeout',
      retryable: true,
    });
    nock(API)
      .post('/v3/organizations/org-1/sessions')
      .replyWithError({ code: 'ECONNRESET', message: 'socket hang up' });
    expect(await failure(client.createSession({ prompt: 'p', title: 't', tags: [] }))).toMatchObject({
      code: 'devin_unreachable',
      retryable: true,
    });
  });

  it('rejects a 2xx answer that is not a session', async () => {
    nock(API).post('/v3/organizations/org-1/sessions').reply(200, '<html>proxy</html>');
    expect(await failure(client.createSession({ prompt: 'p', title: 't', tags: [] }))).toMatchObject({
      code: 'devin_bad_response',
    });
  });

  it('sends messages and terminates sessions; a session already gone counts as terminated', async () => {
    nock(API, { reqheaders: { authorization: 'Bearer cog_secret' } })
      .post('/v3/organizations/org-1/sessions/devin-1/messages', { message: 'resolved' })
      .reply(200, { detail: 'ok' })
      .delete('/v3/organizations/org-1/sessions/devin-1')
      .reply(200, session)
      .delete('/v3/organizations/org-1/sessions/devin-2')
      .reply(404, { title: 'Not Found', status: 404, detail: 'Session not found' });
    await client.sendMessage('devin-1', 'resolved');
    await client.terminateSession('devin-1');
    await client.terminateSession('devin-2');
  });

  it('finds a session by tag across pages, re-checking tags itself', async () => {
    nock(API)
      .get('/v3/organizations/org-1/sessions')
      .query({ tags: 'pm-run-a' })
      .reply(200, {
        items: [{ ...session, session_id: 'devin-other', tags: ['pm-run-ab'] }],
        end_cursor: 'c1',
        has_next_page: true,
      })
      .get('/v3/organizations/org-1/sessions')
      .query({ tags: 'pm-run-a', after: 'c1' })
      .reply(200, { items: [session], end_cursor: null, has_next_page: false });
    expect((await client.findSessionByTag('pm-run-a'))?.session_id).toBe('devin-1');

    nock(API)
      .get('/v3/organizations/org-1/sessions')
      .query({ tags: 'pm-run-z' })
      .reply(200, { items: [], end_cursor: null, has_next_page: false, total: 0 });
    expect(await client.findSessionByTag('pm-run-z')).toBeUndefined();
  });
});
