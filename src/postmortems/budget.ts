import type { SessionGate, SessionUse, Store } from '../store/store.js';
import type { RunState } from './model.js';

/**
 * What Devin sessions may cost: a daily budget (DEVIN_DAILY_SESSION_LIMIT, DEVIN_DAILY_ACU_LIMIT) and a
 * cap on sessions live at once (DEVIN_MAX_CONCURRENT_SESSIONS). Unset means no limit.
 *
 * - The budget binds what a policy starts (a priority's automatic start, an early start). Once the day's
 *   runs reach a limit, an incident that would start by itself asks for approval instead; approving it
 *   is an explicit override, recorded with who. A person's start (/postmortem, Approve, Start anyway,
 *   Retry, Run again) is not refused for budget, and counts toward the day's use.
 * - The cap binds every start, a person's and an override too: a start beyond it waits (`queued`) and
 *   starts, oldest first, when a live session ends. An override is about money, the cap about how much
 *   runs at once (Devin's own concurrency limits): approving over budget does not jump the queue.
 * - A day is a UTC day. A run spends the budget of the day it was let start or queued (its slot_day);
 *   its ACUs count on that day, however long the session runs. ACUs are Devin's acus_consumed as the
 *   follower last polled them, so the ACU limit is reached a poll late, never early.
 *
 * Both decisions are the store's session gate (store.ts SessionGate): counted and written in one
 * transaction under one lock, so several replicas never take the same last slot.
 */
export interface CostLimits {
  dailySessions?: number | undefined;
  dailyAcus?: number | undefined;
  maxConcurrent?: number | undefined;
}

export const DAY_MS = 86_400_000;

/** The UTC day of a moment, as days since the epoch (what runs' slot_day holds). */
export function utcDay(ms: number): number {
  return Math.floor(ms / DAY_MS);
}

/** Today's use of the budget and the slots, with the limits it is measured against. */
export interface BudgetUsage extends SessionUse {
  day: number;
  limits: CostLimits;
}

/** The states in which a run holds a session slot, and the one runs wait in: declared in lifecycle.ts. */
export interface SlotStates {
  live: readonly RunState[];
  queued: RunState;
}

export class SessionBudget {
  constructor(
    private readonly store: Store,
    readonly limits: CostLimits,
    private readonly states: SlotStates,
    private readonly now: () => number,
  ) {}

  /** Whether any daily limit is set (approval messages then show what is left). */
  get hasDailyLimit(): boolean {
    return this.limits.dailySessions !== undefined || this.limits.dailyAcus !== undefined;
  }

  /** The gate for a start now: `policy` starts are held by the budget, every start by the cap. */
  gate(policy: boolean): SessionGate {
    const { dailySessions, dailyAcus, maxConcurrent } = this.limits;
    const budgeted = policy && (dailySessions !== undefined || dailyAcus !== undefined);
    return {
      day: utcDay(this.now()),
      liveStates: this.states.live,
      queuedState: this.states.queued,
      maxLive: maxConcurrent,
      budget: budgeted ? { sessions: dailySessions, acus: dailyAcus } : undefined,
    };
  }

  async usage(): Promise<BudgetUsage> {
    const day = utcDay(this.now());
    const use = await this.store.sessionUse(day, this.states.live, this.states.queued);
    return { ...use, day, limits: this.limits };
  }
}
