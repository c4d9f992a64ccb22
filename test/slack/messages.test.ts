import { describe, expect, it } from 'vitest';
import type { PostmortemRun } from '../../src/postmortems/model.js';
import { renderRunMessage, renderThreadReply } from '../../src/slack/messages.js';
import { statusReply } from '../../src/slack/replies.js';
import { anIncident, aRun } from '../helpers/builders.js';
import { blockKitProblem } from '../helpers/fake-slack.js';

const run = (overrides: Partial<PostmortemRun> = {}, incident: Partial<PostmortemRun['incident']> = {}) =>
  aRun({ ...overrides, incident: anIncident(incident) });

const allText = (m: ReturnType<typeof renderRunMessage>) => JSON.stringify(m.blocks);

describe('renderRunMessage', () => {
  it('an approval message carries the incident facts and both buttons with the run ID', () => {
    const m = renderRunMessage(run());
    const actions = m.blocks.find((b) => b.type === 'actions') as any;
    expect(actions.elements.map((e: any) => [e.action_id, e.value])).toEqual([
      ['postmortem_approve', 'run-1'],
      ['postmortem_skip', 'run-1'],
    ]);
    for (const fact of [
      'Database down',
      'DB',
      'P3',
      'high',
      '30m',
      'Ada',
      'https://acme.pagerduty.com/incidents/Q1',
    ]) {
      expect(allText(m)).toContain(fact);
    }
    expect(m.text).toBe('Postmortem needs approval: #7 Database down');
    expect(blockKitProblem(m.blocks)).toBeUndefined();
  });

  it('every mrkdwn text object is verbatim, so Slack links and mentions nothing by itself', () => {
    const m = renderRunMessage(run());
    const texts: any[] = [];
    JSON.stringify(m.blocks, (_k, v) => {
      if (v && typeof v === 'object' && v.type === 'mrkdwn') texts.push(v);
      return v;
    });
    expect(texts.length).toBeGreaterThan(3);
    for (const t of texts) expect(t.verbatim).toBe(true);
  });

  it('hostile incident text is escaped and fits Block Kit in every state', () => {
    const hostile = `<!channel> <@U999> <https://evil.example|Click me> & ${'🔥'.repeat(3000)} שלום ${'x'.repeat(10_000)}`;
    for (const state of ['awaiting_approval', 'skipped', 'starting', 'started', 'start_failed'] as const) {
      const m = renderRunMessage(
        run(
          { state, decidedBy: 'UALICE01', devinUrl: 'https://app.devin.ai/sessions/1', error: hostile },
          { title: hostile, serviceName: hostile, resolvedBy: hostile, priority: hostile, urgency: hostile },
        ),
      );
      expect(blockKitProblem(m.blocks)).toBeUndefined();
      const text = allText(m);
      expect(text).not.toContain('<!channel>');
      expect(text).not.toContain('<@U999>');
      expect(text).not.toContain('<https://evil.example');
      expect(text.length).toBeLessThan(40_000);
      expect(m.text.length).toBeLessThanOrEqual(3000);
    }
  });

  it('after a decision the buttons are gone and the message says who and where', () => {
    const started = renderRunMessage(
      run({ state: 'started', decidedBy: 'UALICE01', devinUrl: 'https://app.devin.ai/sessions/abc' }),
    );
    expect(allText(started)).not.toContain('postmortem_approve');
    expect(allText(started)).toContain('Approved by <@UALICE01>');
    expect(allText(started)).toContain('<https://app.devin.ai/sessions/abc|open the session>');

    const skipped = renderRunMessage(run({ state: 'skipped', decidedBy: 'UBOB0001' }));
    expect(allText(skipped)).toContain('Postmortem skipped by <@UBOB0001>');

    const auto = renderRunMessage(
      run({ state: 'started', trigger: 'auto', devinUrl: 'https://app.devin.ai/sessions/x' }),
    );
    expect(allText(auto)).toContain('Started automatically (priority P3).');

    const failed = renderRunMessage(
      run({ state: 'start_failed', trigger: 'auto', error: 'Devin refused the request (403)' }),
    );
    expect(allText(failed)).toContain('could not be started: Devin refused the request (403)');
  });
});

describe('many pull requests', () => {
  const finished = (pullRequests: string[]) =>
    run({ state: 'finished', devinUrl: 'https://app.devin.ai/sessions/devin-1', pullRequests });
  const prs = (n: number, path = '') =>
    Array.from({ length: n }, (_, i) => `https://github.com/acme/service-${i}/pull/${1000 + i}${path}`);

  for (const [name, urls] of [
    ['40 short links', prs(40)],
    ['40 links of 900 characters', prs(40, `/files?${'q'.repeat(860)}`)],
  ] as const) {
    it(`${name}: the message, the thread reply and the status reply stay within Block Kit limits`, () => {
      const message = renderRunMessage(finished([...urls]));
      expect(blockKitProblem(message.blocks)).toBeUndefined();
      const status = JSON.stringify(message.blocks);
      expect(status).toContain(`<${urls[0]}|pull request 1>`);
      expect(status).toMatch(/…and (\d+) more in the thread/);

      const reply = renderThreadReply(finished([...urls]), 'finished', 7 * 86_400_000);
      expect(blockKitProblem(reply.blocks)).toBeUndefined();
      const replyText = JSON.stringify(reply.blocks);
      expect(replyText).toContain(`<${urls[0]}|`);
      const more = Number(/…and (\d+) more pull requests/.exec(replyText)?.[1]);
      // Shown plus left out is every one of them.
      const shown = urls.filter((u) => replyText.includes(`<${u}|`)).length;
      expect(shown).toBeGreaterThan(0);
      expect(shown + more).toBe(40);

      const summary = statusReply({
        kind: 'runs',
        scope: { kind: 'channel' },
        runs: Array.from({ length: 10 }, () => finished([...urls])),
        hiddenElsewhere: 0,
        deadJobs: 0,
      }).text;
      expect(summary).toMatch(/…and \d+ more PRs/);
      expect(summary.length).toBeLessThan(12_000);
    });
  }

  it('a handful is listed whole, without a “more” line', () => {
    const reply = JSON.stringify(renderThreadReply(finished(prs(3)), 'finished', 1).blocks);
    for (const u of prs(3)) expect(reply).toContain(`<${u}|`);
    expect(reply).not.toContain('more pull requests');
    expect(JSON.stringify(renderRunMessage(finished(prs(3))).blocks)).toContain('|pull request 3>');
  });
});
