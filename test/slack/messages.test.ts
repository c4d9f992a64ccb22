import { describe, expect, it } from 'vitest';
import type { PostmortemRun } from '../../src/postmortems/model.js';
import { renderRunMessage } from '../../src/slack/messages.js';
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
