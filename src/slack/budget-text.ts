import type { BudgetUsage } from '../postmortems/budget.js';
import type { BudgetHold, PostmortemRun } from '../postmortems/model.js';
import { mention } from './format.js';

/** The daily budget and the concurrency cap in words: run messages and `/postmortem status`. */

const acus = (n: number) => `${Number.isInteger(n) ? n : n.toFixed(1)} ACU${n === 1 ? '' : 's'}`;
const sessions = (n: number) => `${n} session${n === 1 ? '' : 's'}`;

const HOLD_WORDS: Record<BudgetHold, (usage: BudgetUsage | undefined) => string> = {
  daily_sessions: (u) =>
    `the daily session limit is reached${u?.limits.dailySessions !== undefined ? ` (${sessions(u.sessions)} of ${u.limits.dailySessions} today, DEVIN_DAILY_SESSION_LIMIT)` : ' (DEVIN_DAILY_SESSION_LIMIT)'}`,
  daily_acus: (u) =>
    `the daily ACU limit is reached${u?.limits.dailyAcus !== undefined ? ` (${acus(u.acus)} of ${acus(u.limits.dailyAcus)} today, DEVIN_DAILY_ACU_LIMIT)` : ' (DEVIN_DAILY_ACU_LIMIT)'}`,
};

/** Why an automatic start asks instead, on its approval message. */
export function budgetHoldText(hold: BudgetHold, usage: BudgetUsage | undefined): string {
  return `:money_with_wings: Not started automatically: ${HOLD_WORDS[hold](usage)}. *Approve* overrides today's budget.`;
}

/** What is left of today's budget (UTC), for approval messages; undefined without a daily limit. */
export function budgetLeftText(usage: BudgetUsage | undefined): string | undefined {
  if (!usage) return undefined;
  const { dailySessions, dailyAcus } = usage.limits;
  const parts: string[] = [];
  if (dailySessions !== undefined) {
    parts.push(`${Math.max(0, dailySessions - usage.sessions)} of ${sessions(dailySessions)}`);
  }
  if (dailyAcus !== undefined)
    parts.push(`${acus(Math.max(0, dailyAcus - usage.acus))} of ${acus(dailyAcus)}`);
  return parts.length > 0 ? `Devin budget left today (UTC): ${parts.join(' · ')}.` : undefined;
}

/** A run waiting for a free session slot: "waiting: 3 sessions running". */
export function waitingText(usage: BudgetUsage | undefined): string {
  const cap = usage?.limits.maxConcurrent;
  const running = usage ? `${sessions(usage.live)} running` : 'sessions running';
  return `waiting: ${running}${cap !== undefined ? ` (at most ${cap} at once, DEVIN_MAX_CONCURRENT_SESSIONS)` : ''}. It starts by itself, oldest first, when one ends.`;
}

/** Who approved a run over the day's budget, for its message (the run's origin). */
export function overrideText(run: PostmortemRun, priority: string): string {
  return `Approved by ${mention(run.budgetOverrideBy ?? 'someone')} over today's Devin budget (an override; priority ${priority} would have started it).`;
}

/** Today's use, for `/postmortem status`. */
export function usageLine(usage: BudgetUsage): string {
  const { dailySessions, dailyAcus, maxConcurrent } = usage.limits;
  const started = `${sessions(usage.sessions)}${dailySessions !== undefined ? ` of ${dailySessions}` : ''}`;
  const used = `${acus(usage.acus)}${dailyAcus !== undefined ? ` of ${acus(dailyAcus)}` : ''}`;
  const live = `${usage.live}${maxConcurrent !== undefined ? ` of at most ${maxConcurrent}` : ''} running now`;
  const waiting = usage.queued > 0 ? `, ${usage.queued} waiting for a slot` : '';
  return `Devin today (UTC): ${started} started, ${used} consumed; ${live}${waiting}.`;
}
