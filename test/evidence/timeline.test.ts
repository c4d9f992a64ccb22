import { describe, expect, it } from 'vitest';
import { buildTimeline, formatEntry, MAX_LINE_CHARS } from '../../src/evidence/timeline.js';

describe('timeline', () => {
  it('sorts by time, keeps the original order for equal times, and drops unreadable times', () => {
    expect(
      buildTimeline(
        [
          { at: '2024-01-01T10:00:00Z', source: 'B', text: 'second' },
          { at: '2024-01-01T09:00:00.000Z', source: 'A', text: 'first' },
          { at: 'yesterday', source: 'X', text: 'dropped' },
          { at: '2024-01-01T10:00:00Z', source: 'C', text: 'third' },
        ],
        10_000,
      ),
    ).toEqual([
      '2024-01-01T09:00:00Z A: first',
      '2024-01-01T10:00:00Z B: second',
      '2024-01-01T10:00:00Z C: third',
    ]);
  });

  it('keeps each entry to one bounded line', () => {
    const line = formatEntry({
      at: '2024-01-01T00:00:00Z',
      source: 'Slack',
      text: `a\nb\r\n\tc ${'x'.repeat(1000)}`,
    });
    expect(line.startsWith('2024-01-01T00:00:00Z Slack: a b c xxx')).toBe(true);
    expect(line.length).toBe(MAX_LINE_CHARS);
  });

  it('cuts from the middle within the budget and says what it left out', () => {
    const entries = Array.from({ length: 100 }, (_, i) => ({
      at: new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString(),
      source: 'PD',
      text: `entry ${i}`,
    }));
    const lines = buildTimeline(entries, 1000);
    expect(lines.join('\n').length).toBeLessThanOrEqual(1000);
    expect(lines[0]).toBe('2024-01-01T00:00:00Z PD: entry 0');
    expect(lines.at(-1)).toBe('2024-01-01T01:39:00Z PD: entry 99');
    const noteAt = lines.findIndex((l) => l.startsWith('['));
    const head = noteAt;
    const tail = lines.length - noteAt - 1;
    expect(Math.abs(head - tail)).toBeLessThanOrEqual(1);
    const stamp = (i: number) => new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString().replace('.000Z', 'Z');
    expect(lines[noteAt]).toBe(
      `[${100 - head - tail} timeline entries from ${stamp(head)} to ${stamp(99 - tail)} were left out to keep the prompt within its size budget]`,
    );
  });
});
