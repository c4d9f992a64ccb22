import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Demo, startDemo } from '../../src/sandbox/demo.js';
import { BUILT_DIR } from '../global-setup.js';

/**
 * `npm run demo` in a real browser (Debian's chromium driven by playwright-core): the page renders what
 * the real bot posts, and every click, command and form goes to the bot as Slack sends it.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOT = join(import.meta.dirname, '..', '..', 'docs', 'demo.png');

let demo: Demo;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `No browser at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium) or set CHROMIUM_PATH`,
    );
  }
  demo = await startDemo({ port: 0, botEntry: join(BUILT_DIR, 'main.js') });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  page.setDefaultTimeout(15_000);
  await page.goto(demo.url);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await demo?.stop();
});

const card = (title: string) => page.locator('article.message', { hasText: title });
const session = (title: string) => page.locator('.session', { hasText: title });
const shown = (l: Locator) => l.waitFor({ state: 'visible' });

/** Fires a scenario from the PagerDuty panel. */
async function fire(label: string): Promise<void> {
  await page.getByRole('button', { name: label, exact: true }).click();
}

/** Presses "Next step" on a session card and waits for its step list to show `step` as the current one. */
async function nextStep(s: Locator, step: string): Promise<void> {
  await s.getByRole('button', { name: 'Next step' }).click();
  await shown(s.locator('li.current', { hasText: step }));
}

describe('npm run demo, in a browser', () => {
  it('says what it is and that nothing leaves the machine, with the bot running', async () => {
    await shown(page.getByText('Nothing leaves this machine', { exact: false }));
    await shown(page.locator('#bot-status', { hasText: 'bot running' }));
    expect(await page.locator('#settings').textContent()).toContain('EARLY_START_PRIORITIES');
  });

  it('P3: asks first; Approve starts the session; Devin finishes; the PR and summary land in the thread', async () => {
    // Devin moves only when told, so the test sees every step.
    await Promise.all([page.waitForResponse('**/api/devin/speed'), page.selectOption('#speed', '0')]);
    await fire('P3 resolved');
    const p3 = card('Search results stale for EU users');
    await shown(p3.getByText('Should Devin investigate this incident'));
    await shown(p3.getByText('Incident #1001 resolved'));
    expect(await p3.locator('.sk-field', { hasText: 'Priority' }).textContent()).toContain('P3');

    await p3.getByRole('button', { name: 'Approve' }).click();
    await shown(p3.getByText('Approved by @Ada Lovelace'));
    const link = p3.getByRole('link', { name: 'open the session' });
    await shown(link);
    expect(await link.getAttribute('href')).toMatch(/^https:\/\/app\.devin\.ai\/sessions\/\d+$/);
    expect(await p3.getByRole('button', { name: 'Approve' }).count()).toBe(0);

    const s = session('Search results stale for EU users');
    await shown(s);
    await nextStep(s, 'Working: reading the incident timeline');
    await nextStep(s, 'Waiting for a person');
    await shown(p3.locator('.thread', { hasText: 'Devin needs a person to go on with this postmortem' }));
    await shown(p3.getByText('Devin is waiting for a person'));
    await nextStep(s, 'Working again');
    await nextStep(s, 'Finished');

    const thread = p3.locator('.thread');
    await shown(thread.getByText('The postmortem is ready.'));
    const pr = thread.getByRole('link', { name: /^github\.com\/acme\/postmortems\/pull\/\d+$/ });
    await shown(pr);
    expect(await pr.getAttribute('href')).toMatch(/^https:\/\/github\.com\/acme\/postmortems\/pull\/\d+$/);
    await shown(thread.getByText('The EU search indexer stopped on a catalogue document'));
    await shown(thread.locator('strong', { hasText: 'Root cause' }));
    await shown(thread.getByText('Dead-letter documents the indexer cannot parse (search)'));
    await shown(p3.getByText('Postmortem ready:'));
  });

  it('P1: starts by itself, with the session link, and no buttons to approve', async () => {
    await fire('P1 resolved');
    const p1 = card('Checkout API returning 502s');
    await shown(p1.getByText('Started automatically (priority P1)'));
    await shown(p1.getByRole('link', { name: 'open the session' }));
    expect(await p1.getByRole('button', { name: 'Approve' }).count()).toBe(0);
    await shown(session('Checkout API returning 502s'));

    // The README's picture: the P3 card with its thread, and the P1 that started by itself.
    await page.setViewportSize({ width: 1440, height: 1150 });
    await page.locator('#feed').evaluate((feed) => {
      feed.scrollTop = feed.scrollHeight;
    });
    const shot = await page.screenshot({ path: join(tmpdir(), 'postmortem-bot-demo.png') });
    expect(shot.length).toBeGreaterThan(10_000);
    if (process.env.UPDATE_SCREENSHOT === '1') {
      mkdirSync(join(SCREENSHOT, '..'), { recursive: true });
      await page.screenshot({ path: SCREENSHOT });
    }
    await page.setViewportSize({ width: 1440, height: 1000 });
  });

  it('a Devin failure is reported with Retry; the retried session runs on its own at the chosen speed', async () => {
    const p1 = card('Checkout API returning 502s');
    await session('Checkout API returning 502s').getByRole('button', { name: 'Fail' }).click();
    await shown(p1.locator('.thread', { hasText: 'The Devin session failed: Devin reported an error' }));
    // Retry is on the message and on the thread reply; either one retries the run once.
    await p1.getByRole('button', { name: 'Retry' }).first().click();
    await shown(p1.getByText('Devin is working on the postmortem'));
    expect(await page.locator('.session', { hasText: 'Checkout API returning 502s' }).count()).toBe(2);

    await Promise.all([page.waitForResponse('**/api/devin/speed'), page.selectOption('#speed', '2000')]);
    await p1.locator('.thread', { hasText: 'The postmortem is ready.' }).waitFor({ timeout: 30_000 });
    await shown(p1.getByText('A deploy lowered the checkout API’s upstream connection pool'));
    await Promise.all([page.waitForResponse('**/api/devin/speed'), page.selectOption('#speed', '0')]);
  });

  it('only approvers decide: a non-approver is told why, privately, and nothing changes', async () => {
    await page.selectOption('#who', 'USAM0002');
    await fire('P3 resolved');
    const p3 = card('Search results stale for EU users').last();
    await shown(p3.getByText('Should Devin investigate'));
    await p3.getByRole('button', { name: 'Skip' }).click();
    const refusal = page.locator('article.message.private', {
      hasText: 'Only postmortem approvers can do this',
    });
    await shown(refusal);
    expect(await refusal.textContent()).toContain('@Ada Lovelace');
    expect(await refusal.textContent()).toContain('Only visible to you');
    expect(await p3.getByRole('button', { name: 'Approve' }).count()).toBe(1);

    // Ada does not see Sam's private reply; her Skip is the real one.
    await page.selectOption('#who', 'UADA0001');
    await refusal.waitFor({ state: 'detached' });
    await p3.getByRole('button', { name: 'Skip' }).click();
    await shown(p3.getByText('Postmortem skipped by @Ada Lovelace'));
    await shown(p3.getByRole('button', { name: 'Start anyway' }));
  });

  it('P5 is in the never list: the bot says so in its log and posts nothing', async () => {
    await fire('P5 resolved');
    const incident = page.locator('.incident', { hasText: 'Nightly report job ran 20 minutes late' });
    await shown(incident.getByText('bot: priority is in the never list: no postmortem, no message'));
    expect(await incident.locator('.deliveries').textContent()).toContain('incident.resolved → 202');
    expect(await card('Nightly report job').count()).toBe(0);
  });

  it('early start: Devin gathers evidence on acknowledge; Resolve tells the same session to finish', async () => {
    await fire('P2 acknowledged, then resolved');
    const p2 = card('Payments webhook queue backing up');
    await shown(p2.getByText('Started early, when the P2 incident was acknowledged.'));
    await shown(p2.getByText('in progress'));
    const s = session('Payments webhook queue backing up');
    await nextStep(s, 'Working: gathering evidence while the incident is open');
    await shown(p2.getByText('Devin is gathering evidence while the incident is open'));
    expect(await s.getByRole('button', { name: 'Next step' }).isDisabled()).toBe(true);
    await shown(s.getByText('press Resolve in the PagerDuty panel'));

    await page
      .locator('.incident', { hasText: 'Payments webhook queue backing up' })
      .getByRole('button', { name: 'Resolve' })
      .click();
    await shown(s.getByText('Message from the bot (1)'));
    await shown(s.locator('li.current', { hasText: 'Working again' }));
    await shown(p2.getByText(/Incident #\d+ resolved/));
    expect(await page.locator('.session', { hasText: 'Payments webhook queue backing up' }).count()).toBe(1);
    await nextStep(s, 'Finished');
    await shown(p2.locator('.thread', { hasText: 'Turning on asynchronous refunds doubled the events' }));
  });

  it('a storm: six P1s of one service make one message and one session, told of every incident', async () => {
    await fire('Storm: 6 P1s on Inventory API');
    const group = card('6 incidents on Inventory API');
    await shown(group);
    await shown(group.getByRole('link', { name: 'open the session' }));
    expect(await card('Inventory API').count()).toBe(1);
    // The prompt and the messages sent into the one session name every incident of the group.
    const s = session('Inventory API');
    await expect
      .poll(
        async () => {
          const text = (await s.textContent()) ?? '';
          return [1, 2, 3, 4, 5, 6].filter((n) => text.includes(`Inventory API 5xx on inv-${n}`)).length;
        },
        { timeout: 30_000 },
      )
      .toBe(6);
    expect(await page.locator('.session', { hasText: 'Inventory API' }).count()).toBe(1);
  });

  it('/postmortem help: the command’s immediate answer is shown privately', async () => {
    await page.getByRole('button', { name: '/postmortem help', exact: true }).click();
    const help = page.locator('article.message.private', { hasText: 'postmortems written by Devin' });
    await shown(help);
    expect(await help.locator('code').allTextContents()).toContain('/postmortem help');
    expect(await help.locator('strong').allTextContents()).toEqual(
      expect.arrayContaining(['/postmortem', 'Approve', 'Skip']),
    );
  });

  it('/postmortem <number> looks the incident up in PagerDuty; asking again offers Run again, confirmed', async () => {
    await page.fill('#command', '/postmortem 1000');
    await page.press('#command', 'Enter');
    const login = card('Login latency spike after a config push');
    await shown(login.getByText('@Ada Lovelace asked for a postmortem.'));
    await shown(page.locator('article.message.private', { hasText: 'Done:' }));

    await page.fill('#command', '/postmortem 1000');
    await page.press('#command', 'Enter');
    const offer = page.locator('article.message.private', { hasText: 'already has a postmortem run' });
    await offer.getByRole('button', { name: 'Run again' }).click();
    const dialog = page.locator('#confirm');
    await shown(dialog.getByText('This starts a second Devin session for this incident.'));
    await dialog.getByRole('button', { name: 'Run again' }).click();
    // The private message with the button is replaced by the outcome (replace_original).
    await offer.waitFor({ state: 'detached' });
    await shown(page.locator('article.message.private', { hasText: 'run 2' }));
    await shown(card('Login latency spike after a config push').nth(1));
  });

  it('/postmortem without arguments opens the modal; invalid input is shown next to its field', async () => {
    await page.getByRole('button', { name: '/postmortem', exact: true }).click();
    const modal = page.getByRole('dialog', { name: 'Start a postmortem' });
    await shown(modal);
    const local = (ms: number) => {
      const d = new Date(ms);
      const pad = (n: number) => String(n).padStart(2, '0');
      return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
    };
    await modal.getByLabel('Title').fill('Billing emails sent twice');
    await modal.getByLabel('Service').fill('Billing');
    await modal.getByLabel('Started').fill(local(Date.now() - 2 * 3600_000));
    await modal.getByLabel('Ended').fill(local(Date.now() - 3 * 3600_000));
    await modal.getByLabel('Severity').selectOption('P3');
    await modal.getByLabel('What happened').fill('Customers got every invoice email twice.');
    await modal.getByRole('button', { name: 'Start' }).click();
    await shown(modal.getByText('The end must be after the start.'));

    await modal.getByLabel('Ended').fill(local(Date.now() - 3600_000));
    await modal.getByRole('button', { name: 'Start' }).click();
    await modal.waitFor({ state: 'detached' });
    const adhoc = card('Billing emails sent twice');
    await shown(adhoc.getByText('@Ada Lovelace asked for a postmortem.'));
    await shown(adhoc.getByRole('link', { name: 'open the session' }));
  });

  it('renders mrkdwn and never turns message text into HTML', async () => {
    const text = [
      '*bold* _italic_ ~gone~ `a && b` &lt;script&gt;alert(1)&lt;/script&gt; &amp;amp;',
      '<javascript:alert(1)|not a link> <https://example.com/a?b=1&amp;c=2|a link> <@UADA0001> <!here>',
    ].join('\n');
    const res = await fetch(`${demo.slack.apiUrl}chat.postMessage`, {
      method: 'POST',
      headers: { authorization: `Bearer ${demo.slack.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        channel: 'C0INCIDENTS',
        text: 'x',
        blocks: [
          { type: 'header', text: { type: 'plain_text', text: '<b>not bold</b>' } },
          { type: 'section', text: { type: 'mrkdwn', text, verbatim: true } },
        ],
      }),
    });
    expect(((await res.json()) as { ok: boolean }).ok).toBe(true);
    const message = card('not a link');
    await shown(message);
    expect(await message.locator('.sk-header').textContent()).toBe('<b>not bold</b>');
    expect(await message.locator('.sk-text strong').allTextContents()).toEqual(['bold']);
    expect(await message.locator('em').textContent()).toBe('italic');
    expect(await message.locator('s').textContent()).toBe('gone');
    expect(await message.locator('code').textContent()).toBe('a && b');
    expect(await message.locator('.sk-text').textContent()).toContain('<script>alert(1)</script> &amp;');
    expect(await message.locator('script').count()).toBe(0);
    expect(await message.getByRole('link', { name: 'not a link' }).count()).toBe(0);
    expect(await message.getByRole('link', { name: 'a link' }).getAttribute('href')).toBe(
      'https://example.com/a?b=1&c=2',
    );
    expect(await message.locator('.mention').allTextContents()).toEqual(['@Ada Lovelace', '@here']);
  });
});
