import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { IntakeFirst } from '../../src/jobs/intake-first.js';

/** Spins the event loop's thread for `ms`: the loop is fully busy meanwhile. */
function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy
  }
}

describe('IntakeFirst', () => {
  it('holds a claim back only while webhooks keep arriving and the loop is busy', async () => {
    let now = 1000;
    let busy = true;
    const gate = new IntakeFirst({ quietMs: 2, holdMs: 1, clock: () => now, busy: () => busy });
    expect(gate.beforeClaim()).toBeUndefined(); // no webhook yet
    gate.arrived();
    now += 1;
    const hold = gate.beforeClaim();
    expect(hold).toBeInstanceOf(Promise);
    await hold; // it ends by itself: the background's floor
    busy = false;
    expect(gate.beforeClaim()).toBeUndefined(); // webhooks, but the loop has time to spare
    busy = true;
    now += 2;
    expect(gate.beforeClaim()).toBeUndefined(); // the flood is over: quiet for quietMs
  });

  it("measures the loop's utilization over its window", async () => {
    const gate = new IntakeFirst({ quietMs: 1000, holdMs: 1, windowMs: 50 });
    // A window spent working (a flood keeps the thread busy), then a look: held.
    spin(80);
    gate.arrived();
    expect(gate.beforeClaim()).toBeInstanceOf(Promise);
    // A window spent idle (this sleep is the idleness measured, not a wait for something): not held.
    await sleep(80);
    gate.arrived();
    expect(gate.beforeClaim()).toBeUndefined();
  });
});
