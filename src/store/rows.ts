import type {
  Evidence,
  Incident,
  PostmortemResult,
  PostmortemRun,
  RunState,
  StormMember,
} from '../postmortems/model.js';
import type { DigestRecord, JobRecord, JobState, NewRun, RunPatch } from './store.js';

/** The runs table's row, the same in SQLite and Postgres (BIGINT columns are read as numbers). */
export interface RunRow {
  id: string;
  incident_id: string;
  attempt: number;
  state: RunState;
  trigger: PostmortemRun['trigger'];
  channel: string;
  slack_ts: string | null;
  decided_by: string | null;
  decided_at: number | null;
  devin_tag: string;
  prompt_secret: string | null;
  devin_session_id: string | null;
  devin_url: string | null;
  create_attempted_at: number | null;
  error: string | null;
  devin_status: string | null;
  devin_status_detail: string | null;
  acus_consumed: number | null;
  session_started_at: number | null;
  slot_day: number | null;
  queued_at: number | null;
  budget_hold: PostmortemRun['budgetHold'];
  budget_override_by: string | null;
  pull_requests: string;
  result: string | null;
  finalize_requested_at: number | null;
  finalize_sent_at: number | null;
  reminded_at: number | null;
  stopped_by: string | null;
  evidence: string | null;
  incident: string;
  created_at: number;
  updated_at: number;
}

export const PATCH_COLUMNS: Record<keyof RunPatch, string> = {
  channel: 'channel',
  slackTs: 'slack_ts',
  decidedBy: 'decided_by',
  decidedAt: 'decided_at',
  devinSessionId: 'devin_session_id',
  devinUrl: 'devin_url',
  createAttemptedAt: 'create_attempted_at',
  error: 'error',
  devinStatus: 'devin_status',
  devinStatusDetail: 'devin_status_detail',
  acusConsumed: 'acus_consumed',
  sessionStartedAt: 'session_started_at',
  pullRequests: 'pull_requests',
  result: 'result',
  finalizeRequestedAt: 'finalize_requested_at',
  finalizeSentAt: 'finalize_sent_at',
  remindedAt: 'reminded_at',
  stoppedBy: 'stopped_by',
  evidence: 'evidence',
  incident: 'incident',
  promptSecret: 'prompt_secret',
  budgetOverrideBy: 'budget_override_by',
};

/**
 * Run fields whose every write is durable by the time the store call returns, even in the background
 * (see SqliteStore's `durable()`): the intent recorded before a Devin session is created
 * (`createAttemptedAt`: exactly-once creation rests on it surviving whatever follows the create call),
 * and a person's decision (`decidedBy`: approve, skip, start anyway, retry; `stoppedBy`: stop), which
 * people were told was taken and which must not silently come undone.
 */
const DURABLE_FIELDS: readonly (keyof RunPatch)[] = ['createAttemptedAt', 'decidedBy', 'stoppedBy'];

/** Whether writing this patch must be a durable commit (see DURABLE_FIELDS). */
export function isDurablePatch(patch: RunPatch): boolean {
  return DURABLE_FIELDS.some((f) => patch[f] !== undefined);
}

/** Fields kept as JSON text. */
export const JSON_FIELDS = new Set<keyof RunPatch>(['pullRequests', 'result', 'incident', 'evidence']);

/**
 * A patch as `column = <placeholder>` assignments (each starting with a comma) and their values, JSON
 * fields serialized. `placeholder(i)` numbers them for the dialect (`?` or `$n`).
 */
export function patchAssignments(
  patch: RunPatch,
  placeholder: (index: number) => string,
): { sets: string; values: unknown[] } {
  const entries = Object.entries(patch).filter(([, v]) => v !== undefined) as [keyof RunPatch, unknown][];
  return {
    sets: entries.map(([k], i) => `, ${PATCH_COLUMNS[k]} = ${placeholder(i)}`).join(''),
    values: entries.map(([k, v]) => (JSON_FIELDS.has(k) && v !== null ? JSON.stringify(v) : v)),
  };
}

export function toRun(row: RunRow): PostmortemRun {
  return {
    id: row.id,
    incidentId: row.incident_id,
    attempt: row.attempt,
    state: row.state,
    trigger: row.trigger,
    channel: row.channel,
    slackTs: row.slack_ts,
    decidedBy: row.decided_by,
    decidedAt: row.decided_at,
    devinTag: row.devin_tag,
    promptSecret: row.prompt_secret,
    devinSessionId: row.devin_session_id,
    devinUrl: row.devin_url,
    createAttemptedAt: row.create_attempted_at,
    error: row.error,
    devinStatus: row.devin_status,
    devinStatusDetail: row.devin_status_detail,
    acusConsumed: row.acus_consumed,
    sessionStartedAt: row.session_started_at,
    slotDay: row.slot_day,
    queuedAt: row.queued_at,
    budgetHold: row.budget_hold,
    budgetOverrideBy: row.budget_override_by,
    pullRequests: JSON.parse(row.pull_requests) as string[],
    result: row.result ? (JSON.parse(row.result) as PostmortemResult) : null,
    finalizeRequestedAt: row.finalize_requested_at,
    finalizeSentAt: row.finalize_sent_at,
    remindedAt: row.reminded_at,
    stoppedBy: row.stopped_by,
    evidence: row.evidence ? (JSON.parse(row.evidence) as Evidence) : null,
    incident: JSON.parse(row.incident) as Incident,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** The jobs table's columns listJobs reads, the same in SQLite and Postgres. */
export const JOB_RECORD_COLUMNS =
  'id, kind, lane, payload, state, attempts, failures, last_error, run_at, created_at';

export interface JobRecordRow {
  id: number;
  kind: JobRecord['kind'];
  lane: string;
  payload: string;
  state: JobState;
  attempts: number;
  failures: number;
  last_error: string | null;
  run_at: number;
  created_at: number;
}

export function toJobRecord(row: JobRecordRow): JobRecord {
  return {
    id: row.id,
    kind: row.kind,
    lane: row.lane,
    payload: JSON.parse(row.payload) as Record<string, unknown>,
    state: row.state,
    attempts: row.attempts,
    failures: row.failures,
    lastError: row.last_error,
    runAt: row.run_at,
    createdAt: row.created_at,
  };
}

/** listJobs' limit: a positive integer (SQL would read a negative one as "no limit"). */
export function jobListLimit(limit = 100): number {
  if (!Number.isInteger(limit) || limit < 1)
    throw new RangeError(`limit must be a positive integer, not ${limit}`);
  return limit;
}

/** The storm_members table's row, the same in SQLite and Postgres. */
export interface StormMemberRow {
  incident_id: string;
  run_id: string;
  incident: string;
  resolved_at: number;
  joined_at: number;
  delivered_at: number | null;
  in_prompt_at: number | null;
  noted_at: number | null;
}

export function toStormMember(row: StormMemberRow): StormMember {
  return {
    runId: row.run_id,
    incident: JSON.parse(row.incident) as Incident,
    resolvedAt: row.resolved_at,
    joinedAt: row.joined_at,
    deliveredAt: row.delivered_at,
    inPromptAt: row.in_prompt_at,
    notedAt: row.noted_at,
  };
}

/** The digests table's row (BIGINT columns may come back as strings from Postgres). */
export interface DigestRow {
  channel: string;
  ts: string | null;
  open: number | boolean;
  version: number | string;
  drawn_version: number | string;
  drawn_at: number | string;
}

export function toDigest(row: DigestRow): DigestRecord {
  return {
    channel: row.channel,
    ts: row.ts,
    open: Boolean(row.open),
    version: Number(row.version),
    drawnVersion: Number(row.drawn_version),
    drawnAt: Number(row.drawn_at),
  };
}

/** What the session gate writes on a run it lets be born (see gate.ts gateColumns). */
export interface GateColumns {
  slotDay: number | null;
  queuedAt: number | null;
  budgetHold: string | null;
}

/** The columns a new run is inserted with, in both stores, in the order of `runInsertValues`. */
export const RUN_INSERT_COLUMNS =
  'id, incident_id, attempt, state, trigger, channel, decided_by, decided_at, devin_tag, prompt_secret, ' +
  'incident, incident_number, created_at, updated_at, slot_day, queued_at, budget_hold';

/** The values of a new run's row, in the order of RUN_INSERT_COLUMNS. */
export function runInsertValues(run: NewRun, now: number, gate?: GateColumns): unknown[] {
  return [
    run.id,
    run.incidentId,
    run.attempt,
    run.state,
    run.trigger,
    run.channel,
    run.decidedBy,
    run.decidedAt,
    run.devinTag,
    run.promptSecret,
    JSON.stringify(run.incident),
    run.incident.number,
    now,
    now,
    gate?.slotDay ?? null,
    gate?.queuedAt ?? null,
    gate?.budgetHold ?? null,
  ];
}
