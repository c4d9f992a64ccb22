/**
 * Schema migrations, applied in order at start-up. Plain portable SQL (SQLite now, Postgres next): text IDs,
 * integer millisecond timestamps, JSON kept as text, ON CONFLICT and RETURNING.
 */
export const MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'events, incidents, runs, jobs',
    sql: `
      CREATE TABLE events (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        incident_id TEXT,
        occurred_at TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        payload TEXT NOT NULL
      );
      CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        state TEXT NOT NULL,
        trigger TEXT NOT NULL,
        channel TEXT NOT NULL,
        slack_ts TEXT,
        decided_by TEXT,
        decided_at INTEGER,
        devin_tag TEXT NOT NULL UNIQUE,
        devin_session_id TEXT,
        devin_url TEXT,
        create_attempted_at INTEGER,
        error TEXT,
        incident TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (incident_id, attempt)
      );
      CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        lane TEXT NOT NULL,
        payload TEXT NOT NULL,
        dedupe_key TEXT,
        state TEXT NOT NULL,
        run_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        locked_until INTEGER,
        last_error TEXT,
        created_at INTEGER NOT NULL
      );
      CREATE INDEX jobs_due ON jobs (state, run_at, id);
      CREATE INDEX jobs_lane ON jobs (lane, id);
      CREATE INDEX jobs_dedupe ON jobs (dedupe_key, state);
    `,
  },
  {
    version: 2,
    name: 'runs by incident number and recency',
    sql: `
      ALTER TABLE runs ADD COLUMN incident_number INTEGER;
      UPDATE runs SET incident_number = json_extract(incident, '$.number');
      CREATE INDEX runs_incident_number ON runs (incident_number);
      CREATE INDEX runs_created ON runs (created_at);
    `,
  },
  {
    version: 3,
    name: 'following sessions',
    sql: `
      ALTER TABLE runs ADD COLUMN devin_status TEXT;
      ALTER TABLE runs ADD COLUMN devin_status_detail TEXT;
      ALTER TABLE runs ADD COLUMN session_started_at INTEGER;
      ALTER TABLE runs ADD COLUMN pull_requests TEXT NOT NULL DEFAULT '[]';
      ALTER TABLE runs ADD COLUMN result TEXT;
      ALTER TABLE runs ADD COLUMN finalize_requested_at INTEGER;
      ALTER TABLE runs ADD COLUMN reminded_at INTEGER;
      ALTER TABLE runs ADD COLUMN stopped_by TEXT;
      CREATE INDEX runs_state ON runs (state, created_at);
    `,
  },
  {
    version: 4,
    name: 'one owning process',
    sql: `
      CREATE TABLE store_owner (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        owner TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 5,
    name: 'evidence',
    sql: 'ALTER TABLE runs ADD COLUMN evidence TEXT;',
  },
  {
    version: 6,
    name: 'early start: when the finish message reached Devin',
    sql: 'ALTER TABLE runs ADD COLUMN finalize_sent_at INTEGER;',
  },
  {
    version: 7,
    name: "run state 'failed' is named 'start_failed' (the session could not be created)",
    sql: `UPDATE runs SET state = 'start_failed' WHERE state = 'failed';`,
  },
  {
    version: 9,
    name: 'jobs count their failures apart from planned returns (the backoff exponent)',
    sql: 'ALTER TABLE jobs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;',
  },
];
