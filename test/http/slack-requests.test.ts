import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, SLACK_SIGNING_SECRET, slackSignature, startHarness } from '../helpers/harness.js';

// Slack's published signing example (docs.slack.dev/authentication/verifying-requests-from-slack).
const PUBLISHED = {
  secret: '8f742231b10e8888abcd99yyyzzz85a5',
  timestamp: '1531420618',
  body: 'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c',
  signature: 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503',
};

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.close();
});

function command(text: string) {
  return new URLSearchParams({
    token: 'x',
    team_id: 'T0001',
    channel_id: 'CDEFAULT01',
    user_id: 'UALICE01',
    command: '/postmortem',
    text,
    response_url: `${h.slack.url}/response/cmd`,
    trigger_id: '1.2.3',
    api_app_id: 'A0001',
  }).toString();
}

async function post(body: string, timestamp: number, signature?: string) {
  return fetch(`${h.url}/slack/events`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-slack-request-timestamp': String(timestamp),
      'x-slack-signature': signature ?? slackSignature(SLACK_SIGNING_SECRET, timestamp, body),
    },
    body,
  });
}

describe('Slack request signing', () => {
  it('our signer reproduces Slack’s published example', () => {
    expect(slackSignature(PUBLISHED.secret, PUBLISHED.timestamp, PUBLISHED.body)).toBe(PUBLISHED.signature);
  });

  it('accepts a correctly signed, current request', async () => {
    const res = await post(command('help'), Math.floor(Date.now() / 1000));
    expect(res.status).toBe(200);
    expect(((await res.json()) as { text: string }).text).toContain('/postmortem status');
  });

  it('rejects a wrong signature', async () => {
    const now = Math.floor(Date.now() / 1000);
    const res = await post(command('help'), now, slackSignature('wrong-secret', now, command('help')));
    expect(res.status).toBe(401);
  });

  it('rejects requests dated more than five minutes in the past or the future', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect((await post(command('help'), now - 6 * 60)).status).toBe(401);
    expect((await post(command('help'), now + 6 * 60)).status).toBe(401);
    expect((await post(command('help'), now + 60)).status).toBe(200);
  });
});
