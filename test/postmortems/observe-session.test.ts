import { describe, expect, it } from 'vitest';
import type { DevinSession } from '../../src/devin/client.js';
import { toSession } from '../../src/devin/sessions.js';
import { observeSession, parseResult } from '../../src/postmortems/observe-session.js';
import { renderThreadReply } from '../../src/slack/messages.js';
import { aRun } from '../helpers/builders.js';
import { blockKitProblem } from '../helpers/fake-slack.js';

const limits = { giveUpAfterMs: 48 * 3_600_000, earlyStartMaxWaitMs: 24 * 3_600_000 };
/** A session as Devin's API returns it, read by the Devin adapter. */
const session = (status: string, status_detail: string | null = null, extra: Record<string, unknown> = {}) =>
  toSession({
    session_id: 'devin-1',
    url: 'https://app.devin.ai/sessions/1',
    status,
    status_detail,
    ...extra,
  } as DevinSession);
const started = aRun({ state: 'started', sessionStartedAt: 1000, createdAt: 1000 });

describe('observeSession', () => {
  it.each([
    ['new', null, 'started', undefined],
    ['claimed', null, 'started', undefined],
    ['running', 'working', 'started', undefined],
    ['resuming', null, 'started', undefined],
    ['creating', null, 'started', undefined],
    ['running', 'waiting_for_user', 'needs_input', 'session_needs_input'],
    ['running', 'waiting_for_approval', 'needs_input', 'session_needs_input'],
    ['suspended', 'inactivity', 'needs_input', 'session_needs_input'],
    ['running', 'finished', 'finished', 'session_finished'],
    ['exit', null, 'finished', 'session_finished'],
    ['error', null, 'session_failed', 'session_failed'],
    ['suspended', 'out_of_credits', 'session_failed', 'session_failed'],
    ['suspended', 'usage_limit_exceeded', 'session_failed', 'session_failed'],
  ])('%s/%s → %s', (status, detail, to, event) => {
    const o = observeSession(started, session(status, detail), 2000, limits);
    expect(o.to).toBe(to);
    expect(o.event).toBe(event);
  });

  it('fires a step only on a change of state, not while the state holds', () => {
    const waiting = aRun({ ...started, state: 'needs_input' });
    expect(
      observeSession(waiting, session('running', 'waiting_for_user'), 2000, limits).event,
    ).toBeUndefined();
    expect(observeSession(waiting, session('running', 'working'), 2000, limits).event).toBe(
      'session_working',
    );
  });

  it('gives up after the limit, and ignores waiting and finishing while an early start gathers', () => {
    expect(
      observeSession(started, session('running', 'working'), 1000 + limits.giveUpAfterMs + 1, limits).to,
    ).toBe('abandoned');
    const early = aRun({ ...started, trigger: 'early', finalizeRequestedAt: null });
    expect(observeSession(early, session('running', 'finished'), 2000, limits)).toMatchObject({
      to: 'started',
    });
    expect(observeSession(early, session('running', 'waiting_for_user'), 2000, limits).event).toBeUndefined();
    expect(observeSession(early, session('error'), 2000, limits).to).toBe('session_failed');
    expect(observeSession(early, session('running'), 1000 + limits.earlyStartMaxWaitMs + 1, limits).to).toBe(
      'abandoned',
    );
    // Resolved, but the finish message has not reached Devin yet: still gathering, no replies.
    const queued = aRun({ ...early, finalizeRequestedAt: 5000 });
    expect(
      observeSession(queued, session('running', 'finished', { updated_at: 6 }), 7000, limits),
    ).toMatchObject({
      to: 'started',
    });
    // Sent: what Devin reports from then on counts; what it reported before does not.
    const sent = aRun({ ...early, finalizeRequestedAt: 5000, finalizeSentAt: 5000 });
    expect(observeSession(sent, session('running', 'finished', { updated_at: 2 }), 7000, limits).to).toBe(
      'started',
    );
    expect(observeSession(sent, session('running', 'finished', { updated_at: 6 }), 7000, limits).to).toBe(
      'finished',
    );
  });

  it('collects https PR links from the session and the result, once each', () => {
    const o = observeSession(
      started,
      session('running', 'finished', {
        pull_requests: [{ pr_url: 'https://github.com/a/b/pull/1' }, { pr_url: 'javascript:alert(1)' }],
        structured_output: { postmortem_pr_url: 'https://github.com/a/b/pull/1' },
      }),
      2000,
      limits,
    );
    expect(o.patch.pullRequests).toEqual(['https://github.com/a/b/pull/1']);
  });
});

describe('parseResult', () => {
  it('keeps the fields Devin filled in correctly and drops the rest', () => {
    expect(parseResult(null)).toBeNull();
    expect(parseResult('text')).toBeNull();
    expect(parseResult({ summary: 5, action_items: 'x' })).toBeNull();
    expect(
      parseResult({
        summary: 'S',
        action_items: [{ title: 'A' }, { title: '' }, { owner: 'x' }, { title: 'B', owner: 'o' }],
      }),
    ).toEqual({
      summary: 'S',
      action_items: [{ title: 'A' }, { title: 'B', owner: 'o' }],
    });
  });
});

describe('renderThreadReply', () => {
  it('keeps a huge, hostile result within Block Kit limits and escaped', () => {
    const hostile = `<!here> <https://evil|x> ${'y'.repeat(10_000)}`;
    const run = aRun({
      state: 'finished',
      pullRequests: Array.from({ length: 20 }, (_, i) => `https://github.com/a/b/pull/${i}`),
      result: {
        summary: hostile,
        root_cause: hostile,
        impact: hostile,
        action_items: Array.from({ length: 100 }, () => ({ title: hostile, owner: hostile })),
      },
    });
    for (const kind of ['finished', 'needs_input', 'session_failed', 'abandoned', 'reminder'] as const) {
      const m = renderThreadReply({ ...run, error: hostile }, kind, 7 * 86_400_000);
      expect(blockKitProblem(m.blocks)).toBeUndefined();
      expect(JSON.stringify(m.blocks)).not.toContain('<!here>');
      expect(JSON.stringify(m.blocks)).not.toContain('<https://evil');
    }
    expect(JSON.stringify(renderThreadReply(run, 'finished', 0).blocks)).toContain(
      '…and 90 more in the pull request',
    );
  });
});
