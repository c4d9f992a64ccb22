import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SessionBudget } from '../../src/postmortems/budget.js';
import { LifecycleBug } from '../../src/postmortems/errors.js';
import {
  allows,
  BIRTHS,
  FOLLOWED_STATES,
  Lifecycle,
  lifecycleDiagram,
  type RunEvent,
  SLOT_STATES,
  STOPPABLE_STATES,
  TERMINAL_STATES,
  TRANSITIONS,
} from '../../src/postmortems/lifecycle.js';
import { RUN_STATES, type RunState } from '../../src/postmortems/model.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { Job } from '../../src/store/store.js';
import { anIncident } from '../helpers/builders.js';

const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

function openStore(): SqliteStore {
  const store = new SqliteStore({ path: join(mkdtempSync(join(tmpdir(), 'lifecycle-')), 'bot.db') });
  stores.push(store);
  return store;
}

/** Every job the store has queued, oldest first (claiming them is how the Store interface hands them out). */
async function drain(store: SqliteStore): Promise<Pick<Job, 'kind' | 'lane' | 'payload'>[]> {
  const jobs: Pick<Job, 'kind' | 'lane' | 'payload'>[] = [];
  for (;;) {
    const job = await store.claimJob(Date.now() + 60_000, Date.now() + 120_000);
    if (!job) return jobs;
    jobs.push({ kind: job.kind, lane: job.lane, payload: job.payload });
    await store.completeJob(job);
  }
}

const EVENTS = Object.keys(TRANSITIONS) as RunEvent[];
const exits = (state: RunState) =>
  EVENTS.filter((e) => allows(e, state) && TRANSITIONS[e].to !== 'same' && TRANSITIONS[e].to !== state);

describe('the lifecycle table', () => {
  it('reaches every state from a birth', () => {
    // A gated birth or step may also end where its gate sends it (waiting for a slot, asking over budget).
    const gateStates = (
      g: { full: { state: RunState }; overBudget?: { state: RunState } | null } | undefined,
    ) => (g ? [g.full.state, ...(g.overBudget ? [g.overBudget.state] : [])] : []);
    const reached = new Set<RunState>(Object.values(BIRTHS).flatMap((b) => [b.state, ...gateStates(b.gate)]));
    for (let grew = true; grew; ) {
      grew = false;
      for (const t of Object.values(TRANSITIONS) as {
        from: readonly RunState[];
        to: RunState | 'same';
        gate?: { full: { state: RunState } };
      }[]) {
        const targets = [...(t.to === 'same' ? [] : [t.to]), ...gateStates(t.gate)];
        for (const to of targets) {
          if (reached.has(to) || !t.from.some((s) => reached.has(s))) continue;
          reached.add(to);
          grew = true;
        }
      }
    }
    expect([...reached].sort()).toEqual([...RUN_STATES].sort());
  });

  it('lets no run leave a terminal state, and every other state has a way out', () => {
    expect([...TERMINAL_STATES].sort()).toEqual([
      'abandoned',
      'expired',
      'finished',
      'session_failed',
      'stopped',
    ]);
    for (const state of RUN_STATES) {
      if (TERMINAL_STATES.includes(state)) expect(exits(state), state).toEqual([]);
      else expect(exits(state).length, state).toBeGreaterThan(0);
    }
  });

  it('derives the followed and stoppable states from the steps', () => {
    expect(FOLLOWED_STATES).toEqual(['started', 'needs_input']);
    expect(STOPPABLE_STATES).toEqual(['queued', 'starting', 'started', 'needs_input']);
    expect(SLOT_STATES).toEqual({ live: ['starting', 'started', 'needs_input'], queued: 'queued' });
    for (const s of FOLLOWED_STATES) {
      for (const e of ['session_finished', 'session_failed', 'give_up'] as const)
        expect(allows(e, s)).toBe(true);
    }
  });

  it('looks at the queue after every step that frees a session slot, and only then', () => {
    const live = SLOT_STATES.live;
    for (const [event, t] of Object.entries(TRANSITIONS) as [RunEvent, (typeof TRANSITIONS)[RunEvent]][]) {
      const frees = t.to !== 'same' && !live.includes(t.to) && t.from.some((s) => live.includes(s));
      expect((t.jobs as readonly unknown[]).includes('admit_queued'), event).toBe(frees);
    }
  });

  it('is the diagram the README shows', () => {
    const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    expect(readme).toContain(`\`\`\`mermaid\n${lifecycleDiagram()}\n\`\`\``);
  });
});

describe('Lifecycle', () => {
  const open = async (lifecycle: Lifecycle, trigger: keyof typeof BIRTHS, id = 'r1') =>
    lifecycle.open({
      id,
      incidentId: `Q-${id}`,
      attempt: 1,
      trigger,
      channel: 'C1',
      decidedBy: null,
      decidedAt: null,
      devinTag: `pm-run-${id}`,
      promptSecret: `prompt-secret-${id}`,
      incident: anIncident({ id: `Q-${id}` }),
    });

  it('opens a run in the state its trigger is born in, with the declared jobs', async () => {
    const store = openStore();
    const lifecycle = new Lifecycle(store);
    expect((await open(lifecycle, 'approval', 'a'))?.state).toBe('awaiting_approval');
    expect((await open(lifecycle, 'manual', 'm'))?.state).toBe('starting');
    expect(await drain(store)).toEqual([
      { kind: 'sync_message', lane: 'slack:a', payload: { runId: 'a' } },
      { kind: 'sync_message', lane: 'slack:m', payload: { runId: 'm' } },
      { kind: 'start_session', lane: 'run:m', payload: { runId: 'm' } },
    ]);
  });

  it('fires a declared step once: the loser of a race changes nothing and queues nothing', async () => {
    const store = openStore();
    const lifecycle = new Lifecycle(store);
    await open(lifecycle, 'approval');
    await drain(store);
    const [first, second] = await Promise.all([
      lifecycle.fire('r1', 'approve', { patch: { decidedBy: 'U1' } }),
      lifecycle.fire('r1', 'skip', { patch: { decidedBy: 'U2' } }),
    ]);
    expect(first?.state).toBe('starting');
    expect(second).toBeUndefined();
    expect((await store.getRun('r1'))?.decidedBy).toBe('U1');
    expect((await drain(store)).map((j) => j.kind)).toEqual(['sync_message', 'start_session']);
  });

  it('refuses a step from a state the table does not declare it for', async () => {
    const store = openStore();
    const lifecycle = new Lifecycle(store);
    await open(lifecycle, 'approval');
    await expect(lifecycle.fire('r1', 'session_finished', { expect: 'awaiting_approval' })).rejects.toThrow(
      LifecycleBug,
    );
    // Without an expected state, a step whose from-states the run is not in is a lost race: no change.
    expect(await lifecycle.fire('r1', 'session_finished')).toBeUndefined();
    expect((await store.getRun('r1'))?.state).toBe('awaiting_approval');
  });

  it('keeps the state on a "same" step, once, when the fields must still be unset', async () => {
    const store = openStore();
    const lifecycle = new Lifecycle(store);
    await open(lifecycle, 'approval');
    await drain(store);
    const remind = () =>
      lifecycle.fire('r1', 'remind', { patch: { remindedAt: 5 }, onlyIfUnset: ['remindedAt'] });
    expect((await remind())?.state).toBe('awaiting_approval');
    expect(await remind()).toBeUndefined();
    expect(await drain(store)).toEqual([
      { kind: 'thread_reply', lane: 'slack:r1', payload: { runId: 'r1', reply: 'reminder' } },
    ]);
  });

  it('queues what a finished session calls for', async () => {
    const store = openStore();
    const lifecycle = new Lifecycle(store);
    await open(lifecycle, 'auto');
    await lifecycle.fire('r1', 'session_created');
    await drain(store);
    expect((await lifecycle.fire('r1', 'session_finished', { expect: 'started' }))?.state).toBe('finished');
    expect(await drain(store)).toEqual([
      { kind: 'sync_message', lane: 'slack:r1', payload: { runId: 'r1' } },
      { kind: 'thread_reply', lane: 'slack:r1', payload: { runId: 'r1', reply: 'finished' } },
      { kind: 'pagerduty_note', lane: 'run:r1', payload: { runId: 'r1' } },
    ]);
  });

  it('passes starts through the session gate: waiting under the cap, asking (or not opening) over budget', async () => {
    const store = openStore();
    const budget = new SessionBudget(store, { maxConcurrent: 1, dailySessions: 2 }, SLOT_STATES, Date.now);
    const lifecycle = new Lifecycle(store, budget);
    expect((await open(lifecycle, 'auto', 'a'))?.state).toBe('starting');
    expect(await open(lifecycle, 'manual', 'm')).toMatchObject({
      state: 'queued',
      queuedAt: expect.any(Number),
    });
    expect((await drain(store)).map((j) => j.kind)).toEqual([
      'start_session',
      'sync_message',
      'admit_queued',
    ]);
    // Two slots of the day are taken: a policy start asks, an early start is not made, a person's waits.
    expect(await open(lifecycle, 'auto', 'b')).toMatchObject({
      state: 'awaiting_approval',
      budgetHold: 'daily_sessions',
    });
    expect(await open(lifecycle, 'early', 'e')).toBeUndefined();
    expect((await lifecycle.fire('b', 'approve', { patch: { budgetOverrideBy: 'U1' } }))?.state).toBe(
      'queued',
    );
    // Nothing is admitted while the one slot is held.
    expect(await lifecycle.admitQueued()).toEqual([]);
    await drain(store);
    await lifecycle.fire('a', 'session_created');
    await lifecycle.fire('a', 'session_finished');
    expect((await drain(store)).map((j) => j.kind)).toContain('admit_queued');
    const admitted = await lifecycle.admitQueued();
    expect(admitted.map((r) => [r.id, r.state])).toEqual([['m', 'starting']]);
    expect(await drain(store)).toEqual([
      { kind: 'sync_message', lane: 'slack:m', payload: { runId: 'm' } },
      { kind: 'start_session', lane: 'run:m', payload: { runId: 'm' } },
    ]);
    // A waiting run can be stopped.
    expect((await lifecycle.fire('b', 'stop', { patch: { stoppedBy: 'U2' } }))?.state).toBe('stopped');
  });
});
