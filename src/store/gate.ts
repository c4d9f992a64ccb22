import type { BudgetHold } from '../postmortems/model.js';
import type { GateColumns } from './rows.js';
import type { GatedStep, GatedSteps, NewJob, NewRun, SessionGate, SessionUse } from './store.js';

/**
 * The session gate's decision, the same for every store (store.ts SessionGate): each store counts and
 * writes under its own lock, this says what the counts mean.
 */
export type GateDecision =
  | { outcome: 'admitted'; step: GatedStep }
  | { outcome: 'full'; step: GatedStep }
  | { outcome: 'over_budget'; step: GatedStep | undefined; hold: BudgetHold };

export function decideGate(gate: SessionGate, use: SessionUse, steps: GatedSteps): GateDecision {
  const budget = gate.budget;
  if (budget?.sessions !== undefined && use.sessions >= budget.sessions) {
    return { outcome: 'over_budget', step: steps.overBudget, hold: 'daily_sessions' };
  }
  if (budget?.acus !== undefined && use.acus >= budget.acus) {
    return { outcome: 'over_budget', step: steps.overBudget, hold: 'daily_acus' };
  }
  if (gate.maxLive !== undefined && (use.live >= gate.maxLive || use.queued > 0)) {
    return { outcome: 'full', step: steps.full };
  }
  return { outcome: 'admitted', step: steps.admitted };
}

/** The gate's columns for a decision: the day's slot, when it began waiting, why it was held. */
export function gateColumns(
  decision: GateDecision,
  gate: SessionGate,
  now: number,
): { slotDay: number | null; queuedAt: number | null; budgetHold: BudgetHold | null } {
  switch (decision.outcome) {
    case 'admitted':
      return { slotDay: gate.day, queuedAt: null, budgetHold: null };
    case 'full':
      return { slotDay: gate.day, queuedAt: now, budgetHold: null };
    case 'over_budget':
      return { slotDay: null, queuedAt: null, budgetHold: decision.hold };
  }
}

/** How many waiting runs may start now: the room under the cap (every one without a cap). */
export function admissionRoom(gate: SessionGate, use: SessionUse): number {
  if (gate.maxLive === undefined) return use.queued;
  return Math.max(0, Math.min(use.queued, gate.maxLive - use.live));
}

/** A run's birth as the gate lets it happen: its state, its jobs and the gate's columns. */
export interface GatedBirth {
  run: NewRun;
  jobs: NewJob[];
  cols: GateColumns | undefined;
}

/** A birth that starts a session, as the gate lets it happen; undefined when the gate leaves no step. */
export function gatedBirth(
  run: NewRun,
  gate: SessionGate,
  open: GatedSteps,
  use: SessionUse,
  now: number,
): GatedBirth | undefined {
  const decision = decideGate(gate, use, open);
  if (!decision.step) return undefined;
  return {
    run: { ...run, state: decision.step.state },
    jobs: decision.step.jobs,
    cols: gateColumns(decision, gate, now),
  };
}
