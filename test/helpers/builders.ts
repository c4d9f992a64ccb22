import type { Incident, PostmortemRun } from '../../src/postmortems/model.js';

/** A resolved incident with plausible values; tests override what they care about. */
export function anIncident(overrides: Partial<Incident> = {}): Incident {
  return {
    id: 'Q1',
    number: 7,
    title: 'Database down',
    status: 'resolved',
    serviceId: 'PS1',
    serviceName: 'DB',
    priority: 'P3',
    urgency: 'high',
    htmlUrl: 'https://acme.pagerduty.com/incidents/Q1',
    createdAt: '2024-01-01T00:00:00Z',
    resolvedAt: '2024-01-01T00:30:00Z',
    resolvedBy: 'Ada',
    lastEventAt: '2024-01-01T00:30:00Z',
    ...overrides,
  };
}

export function aRun(overrides: Partial<PostmortemRun> = {}): PostmortemRun {
  const id = overrides.id ?? 'run-1';
  return {
    id,
    incidentId: 'Q1',
    attempt: 1,
    state: 'awaiting_approval',
    trigger: 'approval',
    channel: 'C1',
    slackTs: null,
    decidedBy: null,
    decidedAt: null,
    devinTag: `pm-run-${id}`,
    promptSecret: `prompt-secret-of-${id}`,
    devinSessionId: null,
    devinUrl: null,
    createAttemptedAt: null,
    error: null,
    devinStatus: null,
    devinStatusDetail: null,
    acusConsumed: null,
    sessionStartedAt: null,
    slotDay: null,
    queuedAt: null,
    budgetHold: null,
    budgetOverrideBy: null,
    pullRequests: [],
    result: null,
    finalizeRequestedAt: null,
    finalizeSentAt: null,
    remindedAt: null,
    stoppedBy: null,
    evidence: null,
    createdAt: 0,
    updatedAt: 0,
    incident: anIncident(),
    ...overrides,
  };
}
