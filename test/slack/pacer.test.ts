import { describe, expect, it } from 'vitest';
import { DomainError, retryDecision } from '../../src/postmortems/errors.js';
import { ChannelPacer } from '../../src/slack/pacer.js';

function waitOf(fn: () => void): number | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(DomainError);
    expect((err as DomainError).code).toBe('chat_paced');
    // A reserved slot: the job comes back exactly then, not after a growing backoff.
    const decision = retryDecision(err as DomainError);
    expect(decision.kind).toBe('at');
    return decision.kind === 'at' ? decision.afterMs : undefined;
  }
}

describe('ChannelPacer', () => {
  it('lets one call per interval through per channel, reserving later slots in order', () => {
    let now = 10_000;
    const pacer = new ChannelPacer(1000, () => now);
    expect(waitOf(() => pacer.take('C1', 1))).toBeUndefined();
    expect(waitOf(() => pacer.take('C1', 2))).toBe(1000);
    expect(waitOf(() => pacer.take('C1', 3))).toBe(2000);
    expect(waitOf(() => pacer.take('C2', 4))).toBeUndefined();
    now += 1000;
    // Job 2 comes back at its slot and goes; job 3 is still early and keeps its place.
    expect(waitOf(() => pacer.take('C1', 2))).toBeUndefined();
    now += 1000;
    expect(waitOf(() => pacer.take('C1', 3))).toBeUndefined();
    expect(waitOf(() => pacer.take('C1', 5))).toBe(1000);
  });

  it('never lets late reservations go in a burst', () => {
    let now = 0;
    const pacer = new ChannelPacer(1000, () => now);
    pacer.take('C1', 1);
    expect(waitOf(() => pacer.take('C1', 2))).toBe(1000);
    expect(waitOf(() => pacer.take('C1', 3))).toBe(2000);
    now = 5000; // a busy moment: both come back late, at once
    expect(waitOf(() => pacer.take('C1', 2))).toBeUndefined();
    expect(waitOf(() => pacer.take('C1', 3))).toBe(1000);
    // Job 3 keeps its reservation; whoever comes second at the same moment waits another interval.
    expect(waitOf(() => pacer.take('C1', 4))).toBe(1000);
    now = 6000;
    expect(waitOf(() => pacer.take('C1', 3))).toBeUndefined();
    expect(waitOf(() => pacer.take('C1', 4))).toBe(1000);
    now = 7000;
    expect(waitOf(() => pacer.take('C1', 4))).toBeUndefined();
  });

  it('pushes a channel back after a 429', () => {
    let now = 0;
    const pacer = new ChannelPacer(1000, () => now);
    pacer.pushBack('C1', 30_000);
    expect(waitOf(() => pacer.take('C1', 1))).toBe(30_000);
    now = 30_000;
    expect(waitOf(() => pacer.take('C1', 1))).toBeUndefined();
  });
});
