import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { Incident, PostmortemRun, RunState, StormMember } from '../postmortems/model.js';
import { admissionRoom, decideGate, gateColumns, gatedBirth } from './gate.js';
import { MIGRATIONS } from './migrations.js';
import { paceCall, STALE_RESERVATION_MS, samePace } from './pacing.js';
import {
  type DigestRow,
  type GateColumns,
  JOB_RECORD_COLUMNS,
  type JobRecordRow,
  jobListLimit,
  PATCH_COLUMNS,
  patchAssignments,
  RUN_INSERT_COLUMNS,
  type RunRow,
  runInsertValues,
  type StormMemberRow,
  toDigest,
  toJobRecord,
  toRun,
  toStormMember,
} from './rows.js';
import type {
  ApprovalPlacement,
  DigestRecord,
  GatedSteps,
  Job,
  JobLease,
  JobRecord,
  JobState,
  NewJob,
  NewRun,
  PlacementBound,
  PlacementKind,
  ReceivedEvent,
  RunPatch,
  SessionGate,
  SessionUse,
  StartedInDigest,
  StartedPlacement,
  Store,
  StoreStats,
  StormJoin,
  StormMove,
  StormOutcome,
  WaitingApprovals,
} from './store.js';

export interface PostgresStoreOptions {
  /** postgres://… or postgresql://…; libpq parameters in the URL and PG* variables as node-postgres reads them. */
  url: string;
  poolSize?: number;
  now?: () => number;
  logger?: Logger;
}

/** The channel every replica LISTENs on; a NOTIFY on it means jobs may have become runnable. */
const JOBS_CHANNEL = 'postmortem_bot_jobs';
/** Session advisory lock held while migrating, so replicas starting together migrate one at a time. */
const MIGRATION_LOCK = 7_170_011_001;
/** First key of the transaction advisory locks on lanes and dedupe keys (the second is the hash). */
const QUEUE_LOCK_SPACE = 7170;
/** First key of the transaction advisory lock a storm join takes on its service (the second is the hash). */
const STORM_LOCK_SPACE = 7171;
/**
 * Transaction advisory lock of the session gate (budget and concurrency): every replica's count-and-claim
 * of a session slot takes it first, after a storm's lock and before any queue lock, so gated steps run one at a time.
 */
const SESSION_GATE_LOCK = 7_170_014_001;

/** Event transactions written at once (each a batch of the events that arrived meanwhile), and batch size. */
const MAX_EVENT_FLUSHES = 3;
const MAX_EVENT_BATCH = 200;

interface PendingEvent {
  event: ReceivedEvent;
  jobs: readonly NewJob[];
  resolve: (outcome: 'recorded' | 'duplicate') => void;
  reject: (err: unknown) => void;
}

const LISTEN_RETRY_MIN_MS = 250;
const LISTEN_RETRY_MAX_MS = 5000;

/** BIGINT columns (millisecond timestamps, job IDs, counts) are read as numbers: all fit in 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

type Queryable = Pick<pg.PoolClient, 'query'>;

/**
 * Postgres store, shared by any number of replicas. The same semantics as the SQLite store, made safe
 * across processes:
 * - every multi-row change is one transaction; run transitions are conditional UPDATE … RETURNING;
 * - a job is claimed with FOR UPDATE SKIP LOCKED, only if no earlier unfinished job of its lane exists.
 *   That alone would not keep a lane's order across replicas (job IDs are taken at insert, visible at
 *   commit: a later ID can commit first), so every transaction that queues jobs first takes an advisory
 *   lock per lane (and per dedupe key): a lane's jobs then commit in ID order and the head-of-lane check
 *   is exact;
 * - queueing NOTIFYs in the same transaction (delivered at commit) and a dedicated connection LISTENs,
 *   reconnecting by itself; the job runner's polling remains the fallback;
 * - leases carry their owner, so close() hands this instance's running jobs back at once.
 */
export class PostgresStore implements Store {
  private readonly pool: pg.Pool;
  private readonly now: () => number;
  private readonly log: Logger | undefined;
  private readonly url: string;
  /** This instance: owner of its leases, and the payload of its NOTIFYs (so it ignores its own echo). */
  private readonly instanceId = randomUUID();
  private readonly queuedListeners: (() => void)[] = [];
  private migrated: Promise<void> | undefined;
  private listener: pg.Client | undefined;
  private listenTimer: NodeJS.Timeout | undefined;
  private listenRetryMs = 0;
  private isListening = false;
  private closing: Promise<void> | undefined;
  private pendingEvents: PendingEvent[] = [];
  private eventFlushes = 0;
  private readonly flushing = new Set<Promise<void>>();

  constructor(options: PostgresStoreOptions) {
    this.url = options.url;
    this.now = options.now ?? Date.now;
    this.log = options.logger?.child({ component: 'postgres' });
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize ?? 10,
      types,
      keepAlive: true,
      connectionTimeoutMillis: 5000,
      idleTimeoutMillis: 30_000,
      application_name: 'postmortem-bot',
    });
    // A pooled connection that breaks (Postgres restarted, network cut) is dropped and replaced on the
    // next query; without a listener the 'error' event would crash the process.
    this.pool.on('error', (err) => this.log?.warn({ err: err.message }, 'Postgres connection lost'));
    this.ready().catch((err) =>
      this.log?.error({ err: errorMessage(err) }, 'Postgres not ready yet; will retry on next use'),
    );
    void this.listen();
  }

  /** Migrations run once per instance, before the first query; a failure is retried on the next call. */
  private ready(): Promise<void> {
    if (!this.migrated) {
      this.migrated = migratePostgres(this.pool).catch((err) => {
        this.migrated = undefined;
        throw err;
      });
    }
    return this.migrated;
  }

  private async query<R extends pg.QueryResultRow>(text: string, values: unknown[] = []) {
    await this.ready();
    return this.pool.query<R>(text, values);
  }

  private async tx<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    await this.ready();
    return withClient(this.pool, async (client) => {
      await client.query('BEGIN');
      try {
        const result = await fn(client);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
    });
  }

  /** True while the dedicated LISTEN connection is up (wake-ups from other replicas arrive). */
  get listening(): boolean {
    return this.isListening;
  }

  private async listen(): Promise<void> {
    if (this.closing) return;
    const client = new pg.Client({
      connectionString: this.url,
      keepAlive: true,
      connectionTimeoutMillis: 5000,
      application_name: 'postmortem-bot listener',
    });
    this.listener = client;
    client.on('error', (err) => {
      this.log?.warn({ err: err.message }, 'Postgres listening connection lost; reconnecting');
      this.relisten(client);
    });
    client.on('end', () => this.relisten(client));
    client.on('notification', (msg) => {
      if (msg.channel === JOBS_CHANNEL && msg.payload !== this.instanceId) this.notifyQueued();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${JOBS_CHANNEL}`);
      if (client !== this.listener) return;
      this.isListening = true;
      this.listenRetryMs = 0;
      // Whatever was queued while nobody listened is looked for now.
      this.notifyQueued();
    } catch (err) {
      if (client === this.listener && !this.closing) {
        this.log?.debug({ err: errorMessage(err) }, 'Postgres listening connection failed; retrying');
      }
      this.relisten(client);
    }
  }

  private relisten(client: pg.Client): void {
    if (client !== this.listener) return;
    this.listener = undefined;
    this.isListening = false;
    client.end().catch(() => {});
    if (this.closing) return;
    this.listenRetryMs = Math.min(LISTEN_RETRY_MAX_MS, Math.max(LISTEN_RETRY_MIN_MS, this.listenRetryMs * 2));
    this.listenTimer = setTimeout(() => void this.listen(), this.listenRetryMs);
    this.listenTimer.unref();
  }

  onJobsQueued(listener: () => void): void {
    this.queuedListeners.push(listener);
  }

  private notifyQueued(): void {
    for (const l of this.queuedListeners) l();
  }

  async ping(): Promise<void> {
    const { rows } = await this.query<{ writable: boolean }>('SELECT NOT pg_is_in_recovery() AS writable');
    if (!rows[0]?.writable) throw new Error('Postgres is a read-only standby');
  }

  /**
   * Group commit: events arriving while earlier ones are being written join the next transaction (a few
   * may be written at once), and each caller is answered after its commit. One transaction, fsync and
   * NOTIFY then serve a burst of deliveries instead of one each (measured: about 5× the throughput of a
   * transaction per event at 50 concurrent webhooks).
   */
  recordEvent(event: ReceivedEvent, jobs: readonly NewJob[]): Promise<'recorded' | 'duplicate'> {
    return new Promise((resolve, reject) => {
      this.pendingEvents.push({ event, jobs, resolve, reject });
      if (this.eventFlushes < MAX_EVENT_FLUSHES) this.flushEventsSoon();
    });
  }

  private flushEventsSoon(): void {
    this.eventFlushes++;
    const flush = new Promise<void>((done) =>
      setImmediate(async () => {
        try {
          while (this.pendingEvents.length > 0) {
            await this.writeEvents(this.pendingEvents.splice(0, MAX_EVENT_BATCH));
          }
        } finally {
          this.eventFlushes--;
          done();
        }
      }),
    );
    this.flushing.add(flush);
    void flush.then(() => this.flushing.delete(flush));
  }

  private async writeEvents(batch: PendingEvent[]): Promise<void> {
    // The first delivery of an ID in a batch is written; later ones in the same batch are duplicates.
    const first = new Map<string, PendingEvent>();
    for (const b of batch) if (!first.has(b.event.id)) first.set(b.event.id, b);
    const unique = [...first.values()];
    let recorded: Set<string>;
    try {
      recorded = await this.tx(async (c) => {
        await this.lockQueueKeys(
          c,
          unique.flatMap((b) => b.jobs),
        );
        const { rows } = await c.query<{ id: string }>(
          `INSERT INTO events (id, type, incident_id, occurred_at, received_at, payload)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
           ON CONFLICT (id) DO NOTHING
           RETURNING id`,
          [
            unique.map((b) => b.event.id),
            unique.map((b) => b.event.type),
            unique.map((b) => b.event.incidentId),
            unique.map((b) => b.event.occurredAt),
            unique.map((b) => b.event.receivedAt),
            unique.map((b) => b.event.payload),
          ],
        );
        const inserted = new Set(rows.map((r) => r.id));
        await this.insertJobs(
          c,
          unique.filter((b) => inserted.has(b.event.id)).flatMap((b) => b.jobs),
        );
        return inserted;
      });
    } catch (err) {
      if (batch.length === 1) {
        batch[0]?.reject(err);
        return;
      }
      // One bad event must not fail the others: each is tried on its own (a lost connection fails them all).
      for (const b of batch) await this.writeEvents([b]);
      return;
    }
    let queued = false;
    for (const b of batch) {
      const isRecorded = first.get(b.event.id) === b && recorded.has(b.event.id);
      queued ||= isRecorded && b.jobs.length > 0;
      b.resolve(isRecorded ? 'recorded' : 'duplicate');
    }
    if (queued) this.notifyQueued();
  }

  async getEvent(id: string): Promise<ReceivedEvent | undefined> {
    const { rows } = await this.query<{
      id: string;
      type: string;
      incident_id: string | null;
      occurred_at: string;
      received_at: number;
      payload: string;
    }>('SELECT id, type, incident_id, occurred_at, received_at, payload FROM events WHERE id = $1', [id]);
    const row = rows[0];
    return row
      ? {
          id: row.id,
          type: row.type,
          incidentId: row.incident_id,
          occurredAt: row.occurred_at,
          receivedAt: row.received_at,
          payload: row.payload,
        }
      : undefined;
  }

  async countEvents(): Promise<number> {
    const { rows } = await this.query<{ n: number }>('SELECT COUNT(*) AS n FROM events');
    return rows[0]?.n ?? 0;
  }

  async getIncident(id: string): Promise<Incident | undefined> {
    const { rows } = await this.query<{ data: string }>('SELECT data FROM incidents WHERE id = $1', [id]);
    return rows[0] ? (JSON.parse(rows[0].data) as Incident) : undefined;
  }

  async saveIncident(incident: Incident): Promise<void> {
    await this.query(
      `INSERT INTO incidents (id, data, updated_at) VALUES ($1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`,
      [incident.id, JSON.stringify(incident), this.now()],
    );
  }

  async openRun(run: NewRun, jobs: NewJob[]): Promise<PostmortemRun | undefined> {
    const now = this.now();
    const opened = await this.tx(async (c) => {
      await this.lockQueueKeys(c, jobs);
      const row = await this.insertRun(c, run, now);
      if (row) await this.insertJobs(c, jobs);
      return row;
    });
    if (opened && jobs.length > 0) this.notifyQueued();
    return opened ? toRun(opened) : undefined;
  }

  private async insertRun(
    c: Queryable,
    run: NewRun,
    now: number,
    gate?: GateColumns,
  ): Promise<RunRow | undefined> {
    const values = runInsertValues(run, now, gate);
    const { rows } = await c.query<RunRow>(
      `INSERT INTO runs (${RUN_INSERT_COLUMNS})
         VALUES (${values.map((_, i) => `$${i + 1}`).join(', ')})
         ON CONFLICT (incident_id, attempt) DO NOTHING
         RETURNING *`,
      values,
    );
    return rows[0];
  }

  /**
   * Locks in a fixed order, as every other transaction takes them: the service (so two joins of one
   * service never both open a group), then the group's lanes (as transitionRun does), then its run row.
   */
  async openOrJoinStorm(run: NewRun, jobs: NewJob[], join: StormJoin): Promise<StormOutcome | undefined> {
    const now = this.now();
    const states = Object.keys(join.steps) as RunState[];
    let queued = false;
    const outcome = await this.tx(async (c): Promise<StormOutcome | undefined> => {
      await c.query(`SELECT pg_advisory_xact_lock(${STORM_LOCK_SPACE}, hashtext($1))`, [join.serviceId]);
      const gate = join.gate;
      if (gate) await c.query('SELECT pg_advisory_xact_lock($1)', [SESSION_GATE_LOCK]);
      const known = await c.query(
        `SELECT 1 FROM runs WHERE incident_id = $1 UNION ALL SELECT 1 FROM storm_members WHERE incident_id = $1`,
        [run.incidentId],
      );
      if (known.rows.length > 0) return undefined;
      const candidates = await c.query<{ run_id: string }>(
        `SELECT g.run_id FROM storm_groups g JOIN runs r ON r.id = g.run_id
         WHERE g.service_id = $1 AND r.state = ANY($2::text[])
           AND $3 >= g.first_resolved_at - $4 AND $3 <= g.last_resolved_at + $4
         ORDER BY g.last_resolved_at DESC LIMIT 1`,
        [join.serviceId, states, join.resolvedAt, join.windowMs],
      );
      const groupId = candidates.rows[0]?.run_id;
      if (groupId !== undefined) {
        await this.lockQueueKeys(c, [
          ...Object.values(join.steps).flatMap((step) => step?.jobs(groupId) ?? []),
          ...Object.values(gate?.starts ?? {}).flatMap((alt) =>
            alt ? [...alt.full.jobs(groupId), ...alt.overBudget.jobs(groupId)] : [],
          ),
        ]);
        const locked = await c.query<{ state: RunState }>('SELECT state FROM runs WHERE id = $1 FOR UPDATE', [
          groupId,
        ]);
        const from = locked.rows[0]?.state;
        let step = from !== undefined ? join.steps[from] : undefined;
        if (from !== undefined && step) {
          // A join that starts the group's session passes the session gate.
          let cols: ReturnType<typeof gateColumns> = { slotDay: null, queuedAt: null, budgetHold: null };
          const alt = gate?.starts?.[from];
          if (gate && alt) {
            const g = gate.gate;
            const decision = decideGate(g, await this.use(c, g.day, g.liveStates, g.queuedState), {
              admitted: { state: step.to, jobs: [] },
              full: { state: alt.full.to, jobs: [] },
              overBudget: { state: alt.overBudget.to, jobs: [] },
            });
            if (decision.outcome === 'full') step = alt.full;
            if (decision.outcome === 'over_budget') step = alt.overBudget;
            cols = gateColumns(decision, g, now);
          }
          const { sets, values } = patchAssignments(step.patch, (i) => `$${i + 7}`);
          const { rows } = await c.query<RunRow>(
            `UPDATE runs SET state = $1, updated_at = $2, slot_day = COALESCE($4::integer, slot_day),
               queued_at = COALESCE($5::bigint, queued_at), budget_hold = COALESCE($6::text, budget_hold)${sets}
             WHERE id = $3 RETURNING *`,
            [step.to, now, groupId, cols.slotDay, cols.queuedAt, cols.budgetHold, ...values],
          );
          const count = await c.query<{ n: number }>(
            `UPDATE storm_groups SET first_resolved_at = LEAST(first_resolved_at, $2),
               last_resolved_at = GREATEST(last_resolved_at, $2), members = members + 1 WHERE run_id = $1
             RETURNING members AS n`,
            [groupId, join.resolvedAt],
          );
          await this.insertMember(c, groupId, run, join.resolvedAt, now);
          const stepJobs = step.jobs(groupId);
          await this.insertJobs(c, stepJobs);
          queued = stepJobs.length > 0;
          return { outcome: 'joined', run: toRun(rows[0] as RunRow), from, members: count.rows[0]?.n ?? 0 };
        }
        // The group's run moved on (finished, say) meanwhile: this incident starts a new group.
      }
      // A new group's birth passes the session gate when it starts a session.
      const g = gate?.gate;
      const born =
        g && gate?.open
          ? gatedBirth(run, g, gate.open, await this.use(c, g.day, g.liveStates, g.queuedState), now)
          : { run, jobs, cols: undefined };
      if (!born) return undefined;
      const { jobs: birthJobs } = born;
      await this.lockQueueKeys(c, birthJobs);
      const row = await this.insertRun(c, born.run, now, born.cols);
      if (!row) return undefined;
      await c.query(
        `INSERT INTO storm_groups (run_id, service_id, first_resolved_at, last_resolved_at, created_at, members)
         VALUES ($1, $2, $3, $3, $4, 1)`,
        [run.id, join.serviceId, join.resolvedAt, now],
      );
      await this.insertMember(c, run.id, run, join.resolvedAt, now);
      await this.insertJobs(c, birthJobs);
      queued = birthJobs.length > 0;
      return { outcome: 'opened', run: toRun(row) };
    });
    if (queued) this.notifyQueued();
    return outcome;
  }

  private async insertMember(c: Queryable, runId: string, run: NewRun, resolvedAt: number, now: number) {
    await c.query(
      `INSERT INTO storm_members (incident_id, run_id, incident, resolved_at, joined_at)
       VALUES ($1, $2, $3, $4, $5)`,
      [run.incidentId, runId, JSON.stringify(run.incident), resolvedAt, now],
    );
  }

  async stormMembers(runId: string): Promise<StormMember[]> {
    const { rows } = await this.query<StormMemberRow>(
      'SELECT * FROM storm_members WHERE run_id = $1 ORDER BY resolved_at, incident_id',
      [runId],
    );
    return rows.map(toStormMember);
  }

  async markStormDelivered(runId: string, incidentIds: readonly string[], at: number): Promise<void> {
    if (incidentIds.length === 0) return;
    await this.query(
      `UPDATE storm_members SET delivered_at = $1
       WHERE run_id = $2 AND delivered_at IS NULL AND incident_id = ANY($3::text[])`,
      [at, runId, [...incidentIds]],
    );
  }

  async markStormInPrompt(runId: string, incidentIds: readonly string[], at: number | null): Promise<void> {
    await this.query(
      `UPDATE storm_members SET in_prompt_at = CASE WHEN incident_id = ANY($1::text[]) THEN $2::bigint END
       WHERE run_id = $3`,
      [at === null ? [] : [...incidentIds], at, runId],
    );
  }

  async markStormNoted(runId: string, incidentId: string, at: number): Promise<void> {
    await this.query(
      'UPDATE storm_members SET noted_at = $1 WHERE run_id = $2 AND incident_id = $3 AND noted_at IS NULL',
      [at, runId, incidentId],
    );
  }

  /** Locks as openOrJoinStorm does: the service, the lanes, then the group's run row. */
  async moveStormMembers(run: NewRun, jobs: NewJob[], move: StormMove): Promise<PostmortemRun | undefined> {
    const now = this.now();
    let queued = false;
    const which = `run_id = $1 AND incident_id = ANY($2::text[])${
      move.undeliveredOnly ? ' AND delivered_at IS NULL' : ''
    }`;
    const opened = await this.tx(async (c): Promise<RunRow | undefined> => {
      const group = await c.query<{ service_id: string }>(
        'SELECT service_id FROM storm_groups WHERE run_id = $1',
        [move.fromRunId],
      );
      const serviceId = group.rows[0]?.service_id ?? run.incident.serviceId;
      await c.query(`SELECT pg_advisory_xact_lock(${STORM_LOCK_SPACE}, hashtext($1))`, [serviceId]);
      const gate = move.gate;
      if (gate) await c.query('SELECT pg_advisory_xact_lock($1)', [SESSION_GATE_LOCK]);
      const moving = await c.query<{ n: number; first: string | null; last: string | null }>(
        `SELECT COUNT(*)::int AS n, MIN(resolved_at) AS first, MAX(resolved_at) AS last FROM storm_members
         WHERE ${which}`,
        [move.fromRunId, [...move.incidentIds]],
      );
      const found = moving.rows[0];
      if (!found || found.n === 0) return undefined;
      // A birth that starts a session passes the session gate.
      const g = gate?.gate;
      const born =
        g && gate
          ? gatedBirth(run, g, gate.open, await this.use(c, g.day, g.liveStates, g.queuedState), now)
          : { run, jobs, cols: undefined };
      if (!born) return undefined;
      const allJobs = [...born.jobs, ...move.fromJobs];
      await this.lockQueueKeys(c, allJobs);
      await c.query('SELECT 1 FROM runs WHERE id = $1 FOR UPDATE', [move.fromRunId]);
      const row = await this.insertRun(c, born.run, now, born.cols);
      if (!row) return undefined;
      await c.query(
        `UPDATE storm_members SET run_id = $3, joined_at = $4, delivered_at = NULL, in_prompt_at = NULL,
           noted_at = NULL WHERE ${which}`,
        [move.fromRunId, [...move.incidentIds], run.id, now],
      );
      await c.query(
        `INSERT INTO storm_groups (run_id, service_id, first_resolved_at, last_resolved_at, created_at, members)
         VALUES ($1, $2, $3, $4, $5, $6)`,
        [run.id, serviceId, Number(found.first), Number(found.last), now, found.n],
      );
      await c.query('UPDATE storm_groups SET members = members - $2 WHERE run_id = $1', [
        move.fromRunId,
        found.n,
      ]);
      await this.insertJobs(c, allJobs);
      queued = allJobs.length > 0;
      return row;
    });
    if (opened && queued) this.notifyQueued();
    return opened ? toRun(opened) : undefined;
  }

  async getRun(id: string): Promise<PostmortemRun | undefined> {
    const { rows } = await this.query<RunRow>('SELECT * FROM runs WHERE id = $1', [id]);
    return rows[0] ? toRun(rows[0]) : undefined;
  }

  async runsForIncident(incidentId: string): Promise<PostmortemRun[]> {
    const { rows } = await this.query<RunRow>('SELECT * FROM runs WHERE incident_id = $1 ORDER BY attempt', [
      incidentId,
    ]);
    return rows.map(toRun);
  }

  async runsForIncidentNumber(incidentNumber: number): Promise<PostmortemRun[]> {
    const { rows } = await this.query<RunRow>(
      'SELECT * FROM runs WHERE incident_number = $1 ORDER BY created_at, attempt',
      [incidentNumber],
    );
    return rows.map(toRun);
  }

  async recentRuns(limit: number, filter: { channel?: string } = {}): Promise<PostmortemRun[]> {
    const { rows } = await this.query<RunRow>(
      'SELECT * FROM runs WHERE $2::text IS NULL OR channel = $2 ORDER BY created_at DESC, attempt DESC LIMIT $1',
      [limit, filter.channel ?? null],
    );
    return rows.map(toRun);
  }

  async runsInStates(states: readonly RunState[], limit: number): Promise<PostmortemRun[]> {
    const { rows } = await this.query<RunRow>(
      'SELECT * FROM runs WHERE state = ANY($1::text[]) ORDER BY created_at LIMIT $2',
      [states, limit],
    );
    return rows.map(toRun);
  }

  async transitionRun(
    id: string,
    from: readonly RunState[],
    to: RunState,
    patch: RunPatch,
    jobs: NewJob[],
    onlyIfUnset: readonly (keyof RunPatch)[] = [],
  ): Promise<PostmortemRun | undefined> {
    const { sets, values } = patchAssignments(patch, (i) => `$${i + 5}`);
    const unset = onlyIfUnset.map((f) => ` AND ${PATCH_COLUMNS[f]} IS NULL`).join('');
    const updated = await this.tx(async (c) => {
      await this.lockQueueKeys(c, jobs);
      const { rows } = await c.query<RunRow>(
        `UPDATE runs SET state = $1, updated_at = $2${sets}
         WHERE id = $3 AND state = ANY($4::text[])${unset}
         RETURNING *`,
        [to, this.now(), id, from, ...values],
      );
      if (rows[0]) await this.insertJobs(c, jobs);
      return rows[0];
    });
    if (updated && jobs.length > 0) this.notifyQueued();
    return updated ? toRun(updated) : undefined;
  }

  async openGatedRun(run: NewRun, gate: SessionGate, steps: GatedSteps): Promise<PostmortemRun | undefined> {
    const now = this.now();
    let queued = false;
    const opened = await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [SESSION_GATE_LOCK]);
      const exists = await c.query('SELECT 1 FROM runs WHERE incident_id = $1 AND attempt = $2', [
        run.incidentId,
        run.attempt,
      ]);
      if (exists.rows.length > 0) return undefined;
      const decision = decideGate(
        gate,
        await this.use(c, gate.day, gate.liveStates, gate.queuedState),
        steps,
      );
      if (!decision.step) return undefined;
      const cols = gateColumns(decision, gate, now);
      await this.lockQueueKeys(c, decision.step.jobs);
      const row = await this.insertRun(c, { ...run, state: decision.step.state }, now, cols);
      if (row) await this.insertJobs(c, decision.step.jobs);
      queued = row !== undefined && decision.step.jobs.length > 0;
      return row;
    });
    if (queued) this.notifyQueued();
    return opened ? toRun(opened) : undefined;
  }

  async transitionGatedRun(
    id: string,
    from: readonly RunState[],
    gate: SessionGate,
    steps: GatedSteps,
    patch: RunPatch,
  ): Promise<PostmortemRun | undefined> {
    const now = this.now();
    const { sets, values } = patchAssignments(patch, (i) => `$${i + 8}`);
    let queued = false;
    const updated = await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [SESSION_GATE_LOCK]);
      const current = await c.query<{ state: RunState }>('SELECT state FROM runs WHERE id = $1', [id]);
      const state = current.rows[0]?.state;
      if (state === undefined || !from.includes(state)) return undefined;
      const decision = decideGate(
        gate,
        await this.use(c, gate.day, gate.liveStates, gate.queuedState),
        steps,
      );
      if (!decision.step) return undefined;
      const cols = gateColumns(decision, gate, now);
      await this.lockQueueKeys(c, decision.step.jobs);
      const { rows } = await c.query<RunRow>(
        `UPDATE runs SET state = $1, updated_at = $2, slot_day = COALESCE($5::integer, slot_day),
             queued_at = COALESCE($6::bigint, queued_at), budget_hold = COALESCE($7::text, budget_hold)${sets}
         WHERE id = $3 AND state = ANY($4::text[])
         RETURNING *`,
        [decision.step.state, now, id, from, cols.slotDay, cols.queuedAt, cols.budgetHold, ...values],
      );
      if (rows[0]) await this.insertJobs(c, decision.step.jobs);
      queued = rows[0] !== undefined && decision.step.jobs.length > 0;
      return rows[0];
    });
    if (queued) this.notifyQueued();
    return updated ? toRun(updated) : undefined;
  }

  async admitQueued(
    from: RunState,
    to: RunState,
    gate: SessionGate,
    jobs: (runId: string) => NewJob[],
  ): Promise<PostmortemRun[]> {
    const admitted = await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [SESSION_GATE_LOCK]);
      const room = admissionRoom(gate, await this.use(c, gate.day, gate.liveStates, from));
      if (room === 0) return [];
      const { rows: waiting } = await c.query<{ id: string }>(
        'SELECT id FROM runs WHERE state = $1 ORDER BY queued_at, created_at LIMIT $2',
        [from, room],
      );
      const ids = waiting.map((r) => r.id);
      const newJobs = ids.flatMap((id) => jobs(id));
      await this.lockQueueKeys(c, newJobs);
      const { rows } = await c.query<RunRow>(
        `UPDATE runs SET state = $1, updated_at = $2 WHERE id = ANY($3::text[]) AND state = $4 RETURNING *`,
        [to, this.now(), ids, from],
      );
      const moved = new Set(rows.map((r) => r.id));
      await this.insertJobs(
        c,
        ids.filter((id) => moved.has(id)).flatMap((id) => jobs(id)),
      );
      return rows;
    });
    if (admitted.length > 0) this.notifyQueued();
    return admitted.map(toRun);
  }

  async sessionUse(day: number, liveStates: readonly RunState[], queuedState: RunState): Promise<SessionUse> {
    await this.ready();
    return this.use(this.pool, day, liveStates, queuedState);
  }

  private async use(
    c: Queryable,
    day: number,
    liveStates: readonly RunState[],
    queuedState: RunState,
  ): Promise<SessionUse> {
    const { rows } = await c.query<SessionUse>(
      `SELECT
         (SELECT COUNT(*) FROM runs WHERE slot_day = $1 AND state <> 'start_failed') AS sessions,
         (SELECT COALESCE(SUM(acus_consumed), 0) FROM runs WHERE slot_day = $1) AS acus,
         (SELECT COUNT(*) FROM runs WHERE state = ANY($2::text[])) AS live,
         (SELECT COUNT(*) FROM runs WHERE state = $3) AS queued`,
      [day, liveStates, queuedState],
    );
    const row = rows[0] as SessionUse;
    return {
      sessions: Number(row.sessions),
      acus: Number(row.acus),
      live: Number(row.live),
      queued: Number(row.queued),
    };
  }

  async updateRun(id: string, patch: RunPatch): Promise<void> {
    const { sets, values } = patchAssignments(patch, (i) => `$${i + 3}`);
    await this.query(`UPDATE runs SET updated_at = $1${sets} WHERE id = $2`, [this.now(), id, ...values]);
  }

  async enqueueJob(job: NewJob): Promise<void> {
    await this.tx(async (c) => {
      await this.lockQueueKeys(c, [job]);
      await this.insertJobs(c, [job]);
    });
    this.notifyQueued();
  }

  /**
   * Serializes, until commit, every transaction queueing into the same lanes or dedupe keys: a lane's job
   * IDs then become visible in order, and a dedupe check sees the other's committed job. The locks are
   * taken in hash order, before any row is touched, so two transactions cannot deadlock on them.
   */
  private async lockQueueKeys(c: Queryable, jobs: readonly NewJob[]): Promise<void> {
    if (jobs.length === 0) return;
    const keys = jobs.flatMap((j) => [`lane:${j.lane}`, ...(j.dedupeKey ? [`dedupe:${j.dedupeKey}`] : [])]);
    await c.query(
      `SELECT pg_advisory_xact_lock(${QUEUE_LOCK_SPACE}, h)
       FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest($1::text[]) AS k ORDER BY 1) AS keys`,
      [keys],
    );
  }

  /** Inserts jobs (after lockQueueKeys) and NOTIFYs the replicas at commit if any was queued. */
  private async insertJobs(c: Queryable, jobs: readonly NewJob[]): Promise<void> {
    if (jobs.length === 0) return;
    const now = this.now();
    // A dedupe key queues one job: within one batch too.
    const seen = new Set<string>();
    const batch = jobs.filter((j) => !j.dedupeKey || (!seen.has(j.dedupeKey) && seen.add(j.dedupeKey)));
    await c.query(
      `WITH inserted AS (
         INSERT INTO jobs (kind, lane, payload, dedupe_key, state, run_at, created_at)
         SELECT j.kind, j.lane, j.payload, j.dedupe_key, 'queued', j.run_at, $6
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
           WITH ORDINALITY AS j (kind, lane, payload, dedupe_key, run_at, n)
         WHERE j.dedupe_key IS NULL
           OR NOT EXISTS (SELECT 1 FROM jobs d WHERE d.dedupe_key = j.dedupe_key AND d.state = 'queued')
         ORDER BY j.n
         RETURNING 1)
       SELECT pg_notify($7, $8) FROM (SELECT 1 FROM inserted LIMIT 1) AS any_inserted`,
      [
        batch.map((j) => j.kind),
        batch.map((j) => j.lane),
        batch.map((j) => JSON.stringify(j.payload)),
        batch.map((j) => j.dedupeKey ?? null),
        batch.map((j) => j.runAt ?? now),
        now,
        JOBS_CHANNEL,
        this.instanceId,
      ],
    );
  }

  async claimJob(now: number, leaseUntil: number): Promise<Job | undefined> {
    const { rows } = await this.query<{
      id: number;
      kind: Job['kind'];
      lane: string;
      payload: string;
      attempts: number;
      failures: number;
      created_at: number;
    }>(
      `UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_until = $1, locked_by = $2
       WHERE id = (
         SELECT j.id FROM jobs j
         WHERE j.state = 'queued' AND j.run_at <= $3
           AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.lane = j.lane AND k.id < j.id AND k.state <> 'dead')
         ORDER BY j.run_at, j.id
         LIMIT 1
         FOR UPDATE OF j SKIP LOCKED)
       RETURNING id, kind, lane, payload, attempts, failures, created_at`,
      [leaseUntil, this.instanceId, now],
    );
    const row = rows[0];
    if (!row) return undefined;
    return {
      id: row.id,
      kind: row.kind,
      lane: row.lane,
      payload: JSON.parse(row.payload) as Record<string, unknown>,
      attempts: row.attempts,
      failures: row.failures,
      createdAt: row.created_at,
    };
  }

  async completeJob(job: JobLease): Promise<void> {
    // Finishing a job may unblock the next one in its lane, here or in another replica.
    await this.query(
      `WITH done AS (
         DELETE FROM jobs WHERE id = $1 AND attempts = $2 AND state = 'running' RETURNING lane)
       SELECT pg_notify($3, $4) FROM done
       WHERE EXISTS (SELECT 1 FROM jobs k WHERE k.lane = done.lane AND k.state = 'queued')`,
      [job.id, job.attempts, JOBS_CHANNEL, this.instanceId],
    );
    this.notifyQueued();
  }

  async retryJob(job: JobLease, runAt: number, error: string, options: { failed: boolean }): Promise<void> {
    await this.query(
      `UPDATE jobs SET state = 'queued', run_at = $1, locked_until = NULL, locked_by = NULL, last_error = $2,
         failures = failures + $5
       WHERE id = $3 AND attempts = $4 AND state = 'running'`,
      [runAt, error, job.id, job.attempts, options.failed ? 1 : 0],
    );
  }

  async buryJob(job: JobLease, error: string): Promise<void> {
    await this.query(
      `WITH buried AS (
         UPDATE jobs SET state = 'dead', locked_until = NULL, locked_by = NULL, last_error = $1
         WHERE id = $2 AND attempts = $3 AND state = 'running' RETURNING lane)
       SELECT pg_notify($4, $5) FROM buried
       WHERE EXISTS (SELECT 1 FROM jobs k WHERE k.lane = buried.lane AND k.state = 'queued')`,
      [error, job.id, job.attempts, JOBS_CHANNEL, this.instanceId],
    );
    this.notifyQueued();
  }

  async nextRunAt(now: number): Promise<number | undefined> {
    const { rows } = await this.query<{ at: number | null }>(
      `SELECT MIN(run_at) AS at FROM jobs WHERE state = 'queued' AND run_at > $1`,
      [now],
    );
    return rows[0]?.at ?? undefined;
  }

  async releaseExpiredLeases(now: number): Promise<number> {
    const { rows } = await this.query<{ released: number }>(
      `WITH released AS (
         UPDATE jobs SET state = 'queued', locked_until = NULL, locked_by = NULL
         WHERE state = 'running' AND locked_until < $1 RETURNING 1),
       notified AS (SELECT pg_notify($2, $3) FROM released LIMIT 1)
       SELECT (SELECT COUNT(*) FROM released) AS released, (SELECT COUNT(*) FROM notified) AS notified`,
      [now, JOBS_CHANNEL, this.instanceId],
    );
    const released = rows[0]?.released ?? 0;
    if (released > 0) this.notifyQueued();
    return released;
  }

  async renewJobLeases(jobs: readonly JobLease[], until: number): Promise<JobLease[]> {
    if (jobs.length === 0) return [];
    const { rows } = await this.query<{ id: number; attempts: number }>(
      `UPDATE jobs SET locked_until = $1
       FROM unnest($2::bigint[], $3::int[]) AS held (id, attempts)
       WHERE jobs.id = held.id AND jobs.attempts = held.attempts AND jobs.state = 'running'
       RETURNING jobs.id, jobs.attempts`,
      [until, jobs.map((j) => j.id), jobs.map((j) => j.attempts)],
    );
    const renewed = new Set(rows.map((r) => `${r.id}:${r.attempts}`));
    return jobs
      .filter((j) => renewed.has(`${j.id}:${j.attempts}`))
      .map((j) => ({ id: j.id, attempts: j.attempts }));
  }

  async takeChannelSlot(channel: string, callKey: string, now: number, intervalMs: number): Promise<number> {
    return this.tx(async (c) => {
      // Pacing is not worth a WAL flush per call: a crash of the database forgets at most its last
      // moments, which lets a call or two go early.
      await c.query('SET LOCAL synchronous_commit TO OFF');
      // The upsert takes the channel's row lock until commit: every replica's calls into one channel are
      // decided one after the other, each seeing the last one's outcome.
      const { rows } = await c.query<{
        next_free: number;
        last_call: number | null;
        blocked_until: number;
        held: number | null;
      }>(
        `INSERT INTO channel_pacing AS p (channel) VALUES ($1)
         ON CONFLICT (channel) DO UPDATE SET channel = p.channel
         RETURNING next_free, last_call, blocked_until,
           (SELECT slot FROM channel_reservations WHERE call_key = $2 AND channel = $1) AS held`,
        [channel, callKey],
      );
      const row = rows[0];
      if (!row) throw new Error(`channel_pacing row for ${channel} missing`);
      const pace = { nextFree: row.next_free, lastCall: row.last_call, blockedUntil: row.blocked_until };
      const decision = paceCall(pace, row.held, now, intervalMs);
      if (samePace(pace, decision.pace) && decision.reservation === row.held) return decision.dueAt;
      // A reservation is made, kept or dropped; reservations never used for an hour are pruned.
      await c.query(
        `WITH pace AS (UPDATE channel_pacing SET next_free = $3, last_call = $4 WHERE channel = $2),
              stale AS (DELETE FROM channel_reservations WHERE $5::bigint IS NOT NULL AND slot < $6 AND call_key <> $1),
              used AS (DELETE FROM channel_reservations WHERE $5::bigint IS NULL AND call_key = $1)
         INSERT INTO channel_reservations (call_key, channel, slot) SELECT $1, $2, $5 WHERE $5::bigint IS NOT NULL
         ON CONFLICT (call_key) DO UPDATE SET channel = excluded.channel, slot = excluded.slot`,
        [
          callKey,
          channel,
          decision.pace.nextFree,
          decision.pace.lastCall,
          decision.reservation,
          now - STALE_RESERVATION_MS,
        ],
      );
      return decision.dueAt;
    });
  }

  async blockChannel(channel: string, until: number): Promise<void> {
    await this.query(
      `INSERT INTO channel_pacing AS p (channel, blocked_until) VALUES ($1, $2)
       ON CONFLICT (channel) DO UPDATE SET blocked_until = GREATEST(p.blocked_until, excluded.blocked_until)`,
      [channel, until],
    );
  }

  async tryLease(name: string, owner: string, now: number, until: number): Promise<boolean> {
    const { rows } = await this.query(
      `INSERT INTO leases AS l (name, owner, expires_at) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
       WHERE l.owner = excluded.owner OR l.expires_at <= $4
       RETURNING owner`,
      // Times are whole milliseconds in the table (bigint); a computed one may carry a fraction.
      [name, owner, Math.floor(until), Math.ceil(now)],
    );
    return rows.length === 1;
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    await this.query('DELETE FROM leases WHERE name = $1 AND owner = $2', [name, owner]);
  }

  async placeApprovalRequest(
    runId: string,
    bound: PlacementBound,
    redraw: NewJob,
  ): Promise<ApprovalPlacement | undefined> {
    const { after } = bound;
    const placed = await this.tx(
      async (c): Promise<{ shownIn: ApprovalPlacement; queued: boolean } | undefined> => {
        await this.lockQueueKeys(c, [redraw]);
        const existing = await c.query<{ shown_in: ApprovalPlacement }>(
          'SELECT shown_in FROM approval_placements WHERE run_id = $1',
          [runId],
        );
        if (existing.rows[0]) return { shownIn: existing.rows[0].shown_in, queued: false };
        const runs = await c.query<{ channel: string; created_at: number }>(
          'SELECT channel, created_at FROM runs WHERE id = $1',
          [runId],
        );
        const run = runs.rows[0];
        if (!run) return undefined;
        // Counting stops at `after`: in a storm of thousands the answer is the same, and cheap. Requests
        // placed at the same time count each other's run state, not each other's placement; the runs
        // started by policy are counted by placement, under the channel's digest lock (lockQueueKeys above).
        const counted = await c.query<{ n: number }>(
          `SELECT COUNT(*)::int AS n FROM (
           SELECT 1 FROM runs
           WHERE channel = $1 AND state = 'awaiting_approval' AND id <> $2
             AND (created_at < $3 OR (created_at = $3 AND id < $2))
           LIMIT $4) AS earlier`,
          [run.channel, runId, run.created_at, after],
        );
        const n = counted.rows[0]?.n ?? 0;
        const open =
          n >= after
            ? n
            : Math.max(n, await this.waitingCards(c, run.channel, after)) +
              (await this.startedCards(c, run.channel, bound));
        const shownIn: ApprovalPlacement = open >= after ? 'digest' : 'card';
        const inserted = await c.query<{ shown_in: ApprovalPlacement }>(
          `INSERT INTO approval_placements (run_id, channel, shown_in, placed_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (run_id) DO NOTHING RETURNING shown_in`,
          [runId, run.channel, shownIn, this.now()],
        );
        if (!inserted.rows[0]) {
          // Another replica placed it meanwhile: its decision stands.
          const again = await c.query<{ shown_in: ApprovalPlacement }>(
            'SELECT shown_in FROM approval_placements WHERE run_id = $1',
            [runId],
          );
          return again.rows[0] ? { shownIn: again.rows[0].shown_in, queued: false } : undefined;
        }
        if (shownIn === 'card') return { shownIn, queued: false };
        await c.query(
          `INSERT INTO digests (channel, version) VALUES ($1, 1)
           ON CONFLICT (channel) DO UPDATE SET version = digests.version + 1`,
          [run.channel],
        );
        await this.insertJobs(c, [redraw]);
        return { shownIn, queued: true };
      },
    );
    if (placed?.queued) this.notifyQueued();
    return placed?.shownIn;
  }

  /**
   * Requests of the channel waiting with a card of their own: counted too, so that one opened in the same
   * millisecond as another but committed after its placement cannot make a card more than the bound.
   */
  private async waitingCards(c: Queryable, channel: string, after: number): Promise<number> {
    const { rows } = await c.query<{ n: number }>(
      `SELECT COUNT(*)::int AS n FROM (
         SELECT 1 FROM approval_placements p JOIN runs r ON r.id = p.run_id
         WHERE p.channel = $1 AND p.kind = 'request' AND p.shown_in = 'card' AND r.state = 'awaiting_approval'
         LIMIT $2) AS cards`,
      [channel, after],
    );
    return rows[0]?.n ?? 0;
  }

  /** Runs started by policy in the channel with a message of their own placed since `bound.since`. */
  private async startedCards(c: Queryable, channel: string, bound: PlacementBound): Promise<number> {
    const { rows } = await c.query<{ n: number }>(
      `SELECT COUNT(*)::int AS n FROM (
         SELECT 1 FROM approval_placements
         WHERE channel = $1 AND kind = 'run' AND shown_in = 'card' AND placed_at >= $2
         LIMIT $3) AS recent`,
      [channel, bound.since, bound.after],
    );
    return rows[0]?.n ?? 0;
  }

  async placeStartedRun(
    runId: string,
    bound: PlacementBound,
    redraw: NewJob,
  ): Promise<StartedPlacement | undefined> {
    const placed = await this.tx(
      async (c): Promise<{ placement: StartedPlacement; queued: boolean } | undefined> => {
        // The channel's digest lock: placements of one channel on all replicas count one after another.
        await this.lockQueueKeys(c, [redraw]);
        const existing = await c.query<{ shown_in: ApprovalPlacement; thread_ts: string | null }>(
          'SELECT shown_in, thread_ts FROM approval_placements WHERE run_id = $1',
          [runId],
        );
        const found = existing.rows[0];
        if (found)
          return { placement: { shownIn: found.shown_in, threadTs: found.thread_ts }, queued: false };
        const runs = await c.query<{ channel: string }>('SELECT channel FROM runs WHERE id = $1', [runId]);
        const run = runs.rows[0];
        if (!run) return undefined;
        const waiting = await c.query<{ n: number }>(
          `SELECT COUNT(*)::int AS n FROM (
             SELECT 1 FROM runs WHERE channel = $1 AND state = 'awaiting_approval' AND id <> $2 LIMIT $3
           ) AS waiting`,
          [run.channel, runId, bound.after],
        );
        const n = waiting.rows[0]?.n ?? 0;
        const open = n >= bound.after ? n : n + (await this.startedCards(c, run.channel, bound));
        const shownIn: ApprovalPlacement = open >= bound.after ? 'digest' : 'card';
        let threadTs: string | null = null;
        if (shownIn === 'digest') {
          const digests = await c.query<{ ts: string | null; open: boolean; recent: number }>(
            `SELECT d.ts, d.open, (SELECT COUNT(*)::int FROM approval_placements p
                 WHERE p.channel = d.channel AND p.kind = 'run' AND p.shown_in = 'digest'
                   AND p.thread_ts = d.ts AND p.placed_at >= $2) AS recent
               FROM digests d WHERE d.channel = $1`,
            [run.channel, bound.since],
          );
          const digest = digests.rows[0];
          if (digest?.ts && (digest.open || digest.recent > 0)) threadTs = digest.ts;
        }
        await c.query(
          `INSERT INTO approval_placements (run_id, channel, shown_in, thread_ts, placed_at, kind)
           VALUES ($1, $2, $3, $4, $5, 'run')`,
          [runId, run.channel, shownIn, threadTs, this.now()],
        );
        if (shownIn === 'card') return { placement: { shownIn, threadTs }, queued: false };
        await c.query(
          `INSERT INTO digests (channel, version) VALUES ($1, 1)
           ON CONFLICT (channel) DO UPDATE SET version = digests.version + 1`,
          [run.channel],
        );
        await this.insertJobs(c, [redraw]);
        return { placement: { shownIn, threadTs }, queued: true };
      },
    );
    if (placed?.queued) this.notifyQueued();
    return placed?.placement;
  }

  async startedInDigest(
    channel: string,
    options: { threadTs: string | null; since: number; limit: number },
  ): Promise<StartedInDigest> {
    // Waiting for a digest: no thread yet, and no message posted (one posted in the channel, having waited
    // too long, waits for nothing).
    const where = `p.channel = $1 AND p.kind = 'run' AND p.shown_in = 'digest'
      AND (p.thread_ts = $2 OR (p.thread_ts IS NULL AND r.slack_ts IS NULL))`;
    const counts = await this.query<{ total: number; pending: number; recent: number }>(
      `SELECT COUNT(*)::int AS total,
              (COUNT(*) FILTER (WHERE p.thread_ts IS NULL))::int AS pending,
              (COUNT(*) FILTER (WHERE p.thread_ts IS NOT NULL AND p.placed_at >= $3))::int AS recent
         FROM approval_placements p JOIN runs r ON r.id = p.run_id WHERE ${where}`,
      [channel, options.threadTs, options.since],
    );
    const { rows } = await this.query<RunRow>(
      `SELECT r.* FROM approval_placements p JOIN runs r ON r.id = p.run_id
         WHERE ${where} ORDER BY p.placed_at DESC, p.run_id DESC LIMIT $3`,
      [channel, options.threadTs, options.limit],
    );
    const c = counts.rows[0];
    return {
      total: c?.total ?? 0,
      recentInThread: c?.recent ?? 0,
      pending: c?.pending ?? 0,
      runs: rows.map(toRun),
    };
  }

  async approvalPlacement(
    runId: string,
  ): Promise<{ shownIn: ApprovalPlacement; threadTs: string | null; kind: PlacementKind } | undefined> {
    const { rows } = await this.query<{
      shown_in: ApprovalPlacement;
      thread_ts: string | null;
      kind: PlacementKind;
    }>('SELECT shown_in, thread_ts, kind FROM approval_placements WHERE run_id = $1', [runId]);
    const row = rows[0];
    return row ? { shownIn: row.shown_in, threadTs: row.thread_ts, kind: row.kind } : undefined;
  }

  async setApprovalThread(runId: string, threadTs: string): Promise<void> {
    await this.query(
      'UPDATE approval_placements SET thread_ts = $1 WHERE run_id = $2 AND thread_ts IS NULL',
      [threadTs, runId],
    );
  }

  async touchDigest(channel: string, redraw: NewJob): Promise<boolean> {
    const touched = await this.tx(async (c) => {
      await this.lockQueueKeys(c, [redraw]);
      const { rows } = await c.query(
        `UPDATE digests SET version = version + 1
           WHERE channel = $1 AND (open OR version > drawn_version)
           RETURNING channel`,
        [channel],
      );
      if (rows[0]) await this.insertJobs(c, [redraw]);
      return rows[0] !== undefined;
    });
    if (touched) this.notifyQueued();
    return touched;
  }

  async getDigest(channel: string): Promise<DigestRecord | undefined> {
    const { rows } = await this.query<DigestRow>('SELECT * FROM digests WHERE channel = $1', [channel]);
    return rows[0] ? toDigest(rows[0]) : undefined;
  }

  async digestDrawn(
    channel: string,
    drawn: { ts: string | null; open: boolean; version: number; at: number; adopt?: boolean },
  ): Promise<void> {
    await this.tx(async (c) => {
      await c.query(
        `UPDATE digests SET ts = $1, open = $2, drawn_version = GREATEST(drawn_version, $3), drawn_at = $4
           WHERE channel = $5`,
        [drawn.ts, drawn.open, drawn.version, drawn.at, channel],
      );
      if (drawn.adopt && drawn.ts) {
        await c.query(
          `UPDATE approval_placements SET thread_ts = $1
             WHERE channel = $2 AND kind = 'run' AND shown_in = 'digest' AND thread_ts IS NULL
               AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = approval_placements.run_id AND r.slack_ts IS NOT NULL)`,
          [drawn.ts, channel],
        );
      }
    });
  }

  async waitingApprovals(
    channel: string,
    options: { openedUpTo?: number; limit: number; offset?: number },
  ): Promise<WaitingApprovals> {
    const upTo = options.openedUpTo ?? null;
    const counts = await this.query<{
      total: number;
      in_digest: number;
      held: number;
      newest: number | null;
    }>(
      `SELECT COUNT(*)::int AS total, COUNT(p.run_id)::int AS in_digest, COUNT(r.budget_hold)::int AS held,
              MAX(r.created_at) AS newest
         FROM runs r LEFT JOIN approval_placements p ON p.run_id = r.id AND p.shown_in = 'digest'
         WHERE r.channel = $1 AND r.state = 'awaiting_approval' AND ($2::bigint IS NULL OR r.created_at <= $2)`,
      [channel, upTo],
    );
    // A run with storm members is one row per member; a run without, one row.
    const members = await this.query<{ incidents: number }>(
      `SELECT COUNT(*)::int AS incidents FROM runs r LEFT JOIN storm_members m ON m.run_id = r.id
         WHERE r.channel = $1 AND r.state = 'awaiting_approval' AND ($2::bigint IS NULL OR r.created_at <= $2)`,
      [channel, upTo],
    );
    const { rows } = await this.query<RunRow>(
      `SELECT * FROM runs
         WHERE channel = $1 AND state = 'awaiting_approval' AND ($2::bigint IS NULL OR created_at <= $2)
         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4`,
      [channel, upTo, options.limit, options.offset ?? 0],
    );
    const c = counts.rows[0];
    return {
      total: c?.total ?? 0,
      incidents: members.rows[0]?.incidents ?? 0,
      inDigest: c?.in_digest ?? 0,
      held: c?.held ?? 0,
      newestOpenedAt: c?.newest === null || c?.newest === undefined ? null : Number(c.newest),
      runs: rows.map(toRun),
    };
  }

  async countJobs(): Promise<{ queued: number; running: number; dead: number }> {
    const { rows } = await this.query<{ state: string; n: number }>(
      'SELECT state, COUNT(*) AS n FROM jobs GROUP BY state',
    );
    const count = (s: string) => rows.find((r) => r.state === s)?.n ?? 0;
    return { queued: count('queued'), running: count('running'), dead: count('dead') };
  }

  async listJobs(filter: { state?: JobState; limit?: number } = {}): Promise<JobRecord[]> {
    const { rows } = await this.query<JobRecordRow>(
      `SELECT ${JOB_RECORD_COLUMNS} FROM jobs WHERE $1::text IS NULL OR state = $1 ORDER BY id LIMIT $2`,
      [filter.state ?? null, jobListLimit(filter.limit)],
    );
    return rows.map(toJobRecord);
  }

  async stats(): Promise<StoreStats> {
    const { rows } = await this.query<{ jobs: string; oldest: number | null; runs: string; acus: number }>(
      `SELECT
         (SELECT COALESCE(json_object_agg(state, n), '{}') FROM
            (SELECT state, COUNT(*)::int AS n FROM jobs GROUP BY state) j)::text AS jobs,
         (SELECT MIN(created_at) FROM jobs WHERE state = 'queued') AS oldest,
         (SELECT COALESCE(json_object_agg(state, n), '{}') FROM
            (SELECT state, COUNT(*)::int AS n FROM runs GROUP BY state) r)::text AS runs,
         (SELECT COALESCE(SUM(acus_consumed), 0)::float8 FROM runs) AS acus`,
    );
    const row = rows[0];
    const jobs = JSON.parse(row?.jobs ?? '{}') as Record<string, number>;
    return {
      jobs: { queued: jobs.queued ?? 0, running: jobs.running ?? 0, dead: jobs.dead ?? 0 },
      oldestQueuedJobAt: row?.oldest ?? null,
      runs: JSON.parse(row?.runs ?? '{}') as StoreStats['runs'],
      acusConsumed: row?.acus ?? 0,
    };
  }

  async getJob(id: number): Promise<JobRecord | undefined> {
    const { rows } = await this.query<JobRecordRow>(`SELECT ${JOB_RECORD_COLUMNS} FROM jobs WHERE id = $1`, [
      id,
    ]);
    return rows[0] ? toJobRecord(rows[0]) : undefined;
  }

  async reviveDeadJobs(which: readonly number[] | 'all'): Promise<number[]> {
    // One statement: the jobs go back and every replica is woken (NOTIFY is delivered at commit).
    const { rows } = await this.query<{ id: number }>(
      `WITH revived AS (
         UPDATE jobs SET state = 'queued', run_at = $1, failures = 0, locked_until = NULL, locked_by = NULL
         WHERE state = 'dead' AND ($2::bigint[] IS NULL OR id = ANY($2::bigint[])) RETURNING id),
       notified AS (SELECT pg_notify($3, $4) FROM revived LIMIT 1)
       SELECT id FROM revived, (SELECT COUNT(*) FROM notified) n ORDER BY id`,
      [this.now(), which === 'all' ? null : [...which], JOBS_CHANNEL, this.instanceId],
    );
    if (rows.length > 0) this.notifyQueued();
    return rows.map((r) => r.id);
  }

  async discardDeadJob(id: number): Promise<boolean> {
    const { rowCount } = await this.query(`DELETE FROM jobs WHERE id = $1 AND state = 'dead'`, [id]);
    return rowCount === 1;
  }

  async purgeBefore(
    cutoff: number,
  ): Promise<{ events: number; jobs: number; incidents: number; evidence: number }> {
    // One statement, so a purge on another replica at the same moment deletes nothing twice.
    const { rows } = await this.query<{ events: number; jobs: number; incidents: number; evidence: number }>(
      `WITH e AS (DELETE FROM events WHERE received_at < $1 RETURNING 1),
            j AS (DELETE FROM jobs WHERE state = 'dead' AND created_at < $1 RETURNING 1),
            i AS (DELETE FROM incidents WHERE updated_at < $1
                    AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.incident_id = incidents.id) RETURNING 1),
            r AS (UPDATE runs SET evidence = NULL WHERE created_at < $1 AND evidence IS NOT NULL RETURNING 1)
       SELECT (SELECT COUNT(*) FROM e)::int AS events, (SELECT COUNT(*) FROM j)::int AS jobs,
              (SELECT COUNT(*) FROM i)::int AS incidents, (SELECT COUNT(*) FROM r)::int AS evidence`,
      [cutoff],
    );
    const r = rows[0];
    return {
      events: r?.events ?? 0,
      jobs: r?.jobs ?? 0,
      incidents: r?.incidents ?? 0,
      evidence: r?.evidence ?? 0,
    };
  }

  /**
   * Hands this instance's running jobs back to the queue (another replica takes them at once), stops
   * listening and closes the pool. Called after the job runner finished its jobs in flight.
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    // Events already handed to the store are written (or refused) before the pool closes.
    while (this.flushing.size > 0) await Promise.all(this.flushing);
    clearTimeout(this.listenTimer);
    const listener = this.listener;
    this.listener = undefined;
    this.isListening = false;
    await listener?.end().catch(() => {});
    try {
      await this.releaseOwnLeases();
    } catch (err) {
      this.log?.warn(
        { err: errorMessage(err) },
        'could not hand back running jobs; their leases will expire',
      );
    }
    await this.pool.end();
  }

  private async releaseOwnLeases(): Promise<void> {
    if (!this.migrated) return;
    await this.migrated;
    await this.pool.query(
      `WITH released AS (
         UPDATE jobs SET state = 'queued', locked_until = NULL, locked_by = NULL
         WHERE state = 'running' AND locked_by = $1 RETURNING 1)
       SELECT pg_notify($2, $3) FROM (SELECT 1 FROM released LIMIT 1) AS any_released`,
      [this.instanceId, JOBS_CHANNEL, this.instanceId],
    );
  }
}

/**
 * Applies the missing migrations, each in its own transaction, under a session advisory lock: replicas
 * starting at the same moment on an empty database take turns, and the later ones find nothing to do.
 * `upTo` (tests) stops at that version.
 */
export function migratePostgres(pool: pg.Pool, upTo = Number.POSITIVE_INFINITY): Promise<void> {
  return withClient(pool, async (client) => {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await client.query(
        'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)',
      );
      const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
      const applied = new Set(rows.map((r) => r.version));
      for (const m of MIGRATIONS) {
        if (applied.has(m.version) || m.version > upTo) continue;
        await client.query('BEGIN');
        try {
          if (m.postgres.trim() !== '') await client.query(m.postgres);
          await client.query(
            'INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)',
            [m.version, m.name, Date.now()],
          );
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {});
          throw new Error(`Postgres migration ${m.version} (${m.name}) failed: ${errorMessage(err)}`, {
            cause: err,
          });
        }
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
    }
  });
}

/**
 * Runs `fn` on a client checked out of the pool. A checked-out client has no error listener of the pool's:
 * without this one, a connection cut mid-transaction would be an unhandled 'error' event (a crash). A
 * client that failed is destroyed instead of going back to the pool (a session lock dies with it).
 */
async function withClient<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  try {
    return await fn(client);
  } catch (err) {
    broken ??= err as Error;
    throw err;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}
