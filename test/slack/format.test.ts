import { describe, expect, it } from 'vitest';
import {
  cappedList,
  escapeMrkdwn,
  formatDuration,
  link,
  mention,
  truncateEscaped,
  untrusted,
} from '../../src/slack/format.js';
import { USAGE } from '../../src/slack/replies.js';

describe('escapeMrkdwn', () => {
  it('escapes & < > so mentions, broadcasts and links become inert text', () => {
    expect(escapeMrkdwn('<!channel> & <@U123> <https://evil.example|click>')).toBe(
      '&lt;!channel&gt; &amp; &lt;@U123&gt; &lt;https://evil.example|click&gt;',
    );
  });
  it('replaces lone surrogates (invalid UTF-16) with U+FFFD', () => {
    expect(escapeMrkdwn('a\uD800b')).toBe('a\uFFFDb');
  });
});

describe('truncateEscaped', () => {
  it('leaves short text alone and ends cut text with an ellipsis within the limit', () => {
    expect(truncateEscaped('short', 10)).toBe('short');
    const cut = truncateEscaped('x'.repeat(100), 10);
    expect(cut).toBe(`${'x'.repeat(9)}…`);
    expect(cut.length).toBe(10);
  });
  it('never cuts inside an entity', () => {
    const text = escapeMrkdwn('abcdefg&hij');
    for (let max = 2; max < text.length; max++) {
      const cut = truncateEscaped(text, max);
      expect(cut.length).toBeLessThanOrEqual(max);
      expect(cut).not.toMatch(/&[a-z]*…$/);
    }
  });
  it('never splits a surrogate pair', () => {
    const cut = truncateEscaped('ab😀😀😀', 4);
    expect(cut).toBe('ab…');
    expect(cut.isWellFormed()).toBe(true);
  });
});

describe('untrusted', () => {
  it('escapes first and then fits a 10,000-character title into the limit', () => {
    const out = untrusted('<'.repeat(10_000), 3000);
    expect(out.length).toBeLessThanOrEqual(3000);
    expect(out).toMatch(/^(&lt;)+…$/);
  });
});

describe('link', () => {
  it('links only https URLs that cannot break out of <url|label>', () => {
    expect(link('https://acme.pagerduty.com/incidents/Q1', 'open')).toBe(
      '<https://acme.pagerduty.com/incidents/Q1|open>',
    );
    expect(link('https://a.example/x?a=1&b=2', 'open')).toBe('<https://a.example/x?a=1&amp;b=2|open>');
    expect(link('javascript:alert(1)', 'open')).toBe('open');
    expect(link('http://plain.example', 'open')).toBe('open');
    expect(link('https://evil.example|fake>', 'open')).toBe('open');
    expect(link(null, 'open')).toBe('open');
  });
});

describe('mention', () => {
  it('mentions only real user IDs', () => {
    expect(mention('U0123ABC')).toBe('<@U0123ABC>');
    expect(mention('<!here>')).toBe('&lt;!here&gt;');
  });
});

describe('formatDuration', () => {
  it('formats spans and refuses nonsense', () => {
    expect(formatDuration('2024-03-05T09:17:03Z', '2024-03-05T10:42:11Z')).toBe('1h 25m');
    expect(formatDuration('2024-03-05T09:00:00Z', '2024-03-07T10:00:00Z')).toBe('2d 1h');
    expect(formatDuration('2024-03-05T09:00:00Z', '2024-03-05T09:00:20Z')).toBe('under a minute');
    expect(formatDuration(null, '2024-03-05T09:00:00Z')).toBe('unknown');
    expect(formatDuration('2024-03-05T10:00:00Z', '2024-03-05T09:00:00Z')).toBe('unknown');
  });
});

describe('fixed texts', () => {
  it('the usage text has no raw < or > (Slack would read them as a link or mention)', () => {
    expect(USAGE).not.toMatch(/[<>]/);
    expect(USAGE).toContain('`/postmortem &lt;incident ID, number or URL&gt;`');
  });
});

describe('cappedList', () => {
  const more = (n: number) => `…and ${n} more`;
  const items = Array.from({ length: 40 }, (_, i) => `item-${String(i).padStart(2, '0')}`);
  it.each([
    { maxItems: 50, maxChars: 10_000, expected: items.join(', ') },
    { maxItems: 3, maxChars: 10_000, expected: 'item-00, item-01, item-02, …and 37 more' },
    // 'item-00, item-01' is 16 characters, then ', …and 38 more' needs 14: 30 fits, 29 does not.
    { maxItems: 50, maxChars: 30, expected: 'item-00, item-01, …and 38 more' },
    { maxItems: 50, maxChars: 29, expected: 'item-00, …and 39 more' },
    { maxItems: 50, maxChars: 5, expected: '…and 40 more' },
  ])('$maxItems items / $maxChars characters', ({ maxItems, maxChars, expected }) => {
    const list = cappedList(items, { maxItems, maxChars, separator: ', ', more });
    expect(list).toBe(expected);
    if (maxChars >= 30) expect(list.length).toBeLessThanOrEqual(maxChars);
  });
  it('lists the last item without room for a “more” it does not need', () => {
    expect(cappedList(['abc', 'def'], { maxItems: 5, maxChars: 8, separator: ', ', more })).toBe('abc, def');
    expect(cappedList([], { maxItems: 5, maxChars: 8, separator: ', ', more })).toBe('');
  });
});
