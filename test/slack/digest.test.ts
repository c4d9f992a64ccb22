import { describe, expect, it } from 'vitest';
import {
  DIGEST_APPROVE_ALL_ACTION_ID,
  digestOutcomeReply,
  REVIEW_PAGE_ACTION_ID,
  readReviewMetadata,
  renderDigestMessage,
  renderReviewModal,
} from '../../src/slack/digest.js';
import { anIncident, aRun } from '../helpers/builders.js';

const run = (i: number) =>
  aRun({
    id: `run-${i}`,
    incident: anIncident({ number: 100 + i, title: `Incident ${i}`, serviceName: 'API' }),
  });

const buttons = (blocks: unknown[]) =>
  (blocks as any[]).filter((b) => b.type === 'actions').flatMap((b) => b.elements.map((e: any) => e));

describe('renderDigestMessage', () => {
  it('says how many wait, lists the newest, and carries the cutoff in its bulk buttons', () => {
    const m = renderDigestMessage({
      channel: 'C1',
      total: 12,
      incidents: 12,
      inDigest: 7,
      newest: [run(2), run(1)],
      openedUpTo: 1_700_000_000_123,
    });
    const text = JSON.stringify(m.blocks);
    expect(m.text).toBe('12 postmortem requests wait for a decision');
    expect(text).toContain('12 incidents wait for a postmortem decision in this channel');
    expect(text).toContain('<https://acme.pagerduty.com/incidents/Q1|#102> Incident 2 · API · P3');
    expect(text).toContain('…and 10 older requests');
    expect(text).toContain('7 requests are shown only here');
    expect(buttons(m.blocks).map((b) => [b.action_id, b.text.text, b.value])).toEqual([
      [DIGEST_APPROVE_ALL_ACTION_ID, 'Approve all 12', '1700000000123'],
      ['postmortem_digest_skip_all', 'Skip all 12', '1700000000123'],
      ['postmortem_digest_review', 'Review', '1700000000123'],
    ]);
  });

  it('counts the incidents of storm groups, each group one request', () => {
    const m = renderDigestMessage({
      channel: 'C1',
      total: 3,
      incidents: 41,
      inDigest: 3,
      newest: [run(1)],
      openedUpTo: 5,
    });
    expect(JSON.stringify(m.blocks)).toContain('41 incidents (in 3 requests: a storm group is one) wait for');
    expect(buttons(m.blocks).map((b) => b.text.text)).toEqual(['Approve all 3', 'Skip all 3', 'Review']);
  });

  it('one request, in words for one', () => {
    const m = renderDigestMessage({
      channel: 'C1',
      total: 1,
      incidents: 1,
      inDigest: 1,
      newest: [run(1)],
      openedUpTo: 5,
    });
    expect(m.text).toBe('1 postmortem request waits for a decision');
    expect(JSON.stringify(m.blocks)).toContain('1 incident waits');
    expect(JSON.stringify(m.blocks)).not.toContain('older');
  });

  it('closed: nothing waits in it any more, no buttons, and what still waits in cards of their own', () => {
    const closed = renderDigestMessage({
      channel: 'C1',
      total: 0,
      incidents: 0,
      inDigest: 0,
      newest: [],
      openedUpTo: null,
    });
    expect(buttons(closed.blocks)).toEqual([]);
    expect(JSON.stringify(closed.blocks)).toContain('nothing waits here any more.');
    const cards = renderDigestMessage({
      channel: 'C1',
      total: 2,
      incidents: 2,
      inDigest: 0,
      newest: [run(1)],
      openedUpTo: 1,
    });
    expect(JSON.stringify(cards.blocks)).toContain('2 requests still wait in their own messages.');
  });
});

describe('renderDigestMessage: runs started automatically', () => {
  it('lists them under the requests, informational (no buttons of their own)', () => {
    const m = renderDigestMessage({
      channel: 'C1',
      total: 3,
      incidents: 3,
      inDigest: 3,
      newest: [run(1)],
      openedUpTo: 5,
      started: { total: 12, newest: [run(9), run(8)] },
    });
    const text = JSON.stringify(m.blocks);
    expect(text).toContain('Started automatically: 12');
    expect(text).toContain('<https://acme.pagerduty.com/incidents/Q1|#109> Incident 9 · API · P3');
    expect(text).toContain('…and 10 earlier ones, in this thread.');
    expect(buttons(m.blocks).map((b) => b.text.text)).toEqual(['Approve all 3', 'Skip all 3', 'Review']);
  });

  it('with no request in it: says nothing waits for a decision, and lists them', () => {
    const m = renderDigestMessage({
      channel: 'C1',
      total: 5,
      incidents: 5,
      inDigest: 0,
      newest: [run(1)],
      openedUpTo: 5,
      started: { total: 1, newest: [run(7)] },
    });
    const text = JSON.stringify(m.blocks);
    expect(m.text).toBe('1 postmortem started automatically in this storm');
    expect(text).toContain('nothing waits for a decision here. 5 requests still wait in their own messages.');
    expect(text).toContain(
      'Started automatically: 1* (by priority, no decision needed; its message is in this thread)',
    );
    expect(text).toContain('#107> Incident 7');
    expect(buttons(m.blocks)).toEqual([]);
  });
});

describe('renderReviewModal', () => {
  it('offers one page of checkboxes, with the pages around it and the last result', () => {
    const view = renderReviewModal(
      {
        channel: 'C1',
        page: 1,
        pages: 3,
        total: 25,
        runs: [run(1), { ...run(2), budgetHold: 'daily_sessions' }],
      },
      'Approved 2 requests.',
    );
    expect(readReviewMetadata(view.private_metadata)).toEqual({ channel: 'C1', page: 1 });
    const text = JSON.stringify(view.blocks);
    expect(text).toContain('Approved 2 requests.');
    expect(text).toContain('page 2 of 3');
    const pick = (view.blocks as any[]).find((b) => b.block_id === 'review_pick').elements[0];
    expect(pick.options.map((o: any) => [o.value, o.text.text, o.description])).toEqual([
      ['run-1', '#101 Incident 1', { type: 'plain_text', text: 'API · P3' }],
      ['run-2', '#102 Incident 2', { type: 'plain_text', text: 'Over today’s budget · API · P3' }],
    ]);
    expect(
      buttons(view.blocks)
        .filter((b) => b.action_id === REVIEW_PAGE_ACTION_ID)
        .map((b) => b.value),
    ).toEqual(['0', '2']);
  });

  it('says so when nothing waits, and reads only metadata it wrote', () => {
    const view = renderReviewModal({ channel: 'C1', page: 0, pages: 1, total: 0, runs: [] });
    expect(JSON.stringify(view.blocks)).toContain('Nothing waits for a decision in this channel.');
    expect(buttons(view.blocks)).toEqual([]);
    for (const bad of [undefined, '', 'x', '{"channel":1,"page":0}', '{"channel":"C1"}'])
      expect(readReviewMetadata(bad)).toBeUndefined();
  });
});

describe('digestOutcomeReply', () => {
  it('says what a bulk decision came to', () => {
    expect(
      digestOutcomeReply({ kind: 'decided', decision: 'approve', decided: 3, alreadyDecided: 1 }).text,
    ).toBe('Approved 3 requests (1 was already decided). Each starts its own Devin session.');
    expect(
      digestOutcomeReply({ kind: 'decided', decision: 'skip', decided: 1, alreadyDecided: 0 }).text,
    ).toBe('Skipped 1 request.');
    expect(
      digestOutcomeReply({ kind: 'decided', decision: 'skip', decided: 0, alreadyDecided: 0 }).text,
    ).toBe('Nothing to skip.');
  });
});
