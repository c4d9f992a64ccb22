import { randomUUID } from 'node:crypto';
import { closeSync, fdatasync, fstatSync, mkdirSync, openSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { AppError, RetryableError } from '../errors.js';
import type { Incident, PostmortemRun, RunState, StormMember } from '../postmortems/model.js';
import { admissionRoom, decideGate, gateColumns, gatedBirth } from './gate.js';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';
import { paceCall, STALE_RESERVATION_MS, samePace, UNPACED } from './pacing.js';
import {
  type DigestRow,
  type GateColumns,
  isDurablePatch,
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
import { WalCheckpointer } from './sqlite-checkpointer.js';
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

export interface SqliteStoreOptions {
  path: string;
  now?: () => number;
  /**
   * Opened by an operator's tool (npm run jobs) next to the bot that owns the file, which may be running:
   * no ownership taken, no jobs requeued, no migrations (the file must exist, migrated). Only for reading
   * and for changing dead jobs; never for running the queue.
   */
  tool?: boolean;
  /**
   * How the WAL is synced: fs.fdatasync unless a test holds or fails it (see `synced()`). fdatasync
   * flushes the data and the file's size, everything needed to read the WAL back; it skips only the
   * timestamps. Upstream SQLite syncs its WAL with it where available, and PostgreSQL its own WAL by default.
   */
  fsync?: (fd: number, done: (err: NodeJS.ErrnoException | null) => void) => void;
  /** Where the checkpoint thread's trouble is told (see WalCheckpointer). */
  logger?: Pick<Logger, 'warn'>;
  /** How large the WAL may grow under a steady stream of commits (see `boundWal`); 64 MiB. */
  walLimitBytes?: number;
  /**
   * Told once when the store fails for good (see `fail()`): writes it had accepted may be lost, and from
   * then on every write is refused. The process must restart to go on from what is on disk.
   */
  onFailure?: (err: StoreFailedError) => void;
}

const WAL_LIMIT_BYTES = 64 * 1024 * 1024;

/**
 * SQLite store (WAL). Webhook events are written with group commit: every event that arrives while a
 * batch is being prepared, or while the previous batch waits for its fsync, joins the next batch, and each
 * request is answered once its batch is committed and the WAL fsynced. One fsync then serves a burst of
 * deliveries instead of one each, and it runs on libuv's thread pool (`durably()`): the event loop goes on
 * reading and verifying requests meanwhile. A 2xx still means "stored and on disk".
 *
 * Everything else the bot writes in the background commits without waiting for an fsync
 * (synchronous=NORMAL), except the few writes listed at `durably()`. better-sqlite3 is synchronous: an
 * fsync per commit is time the event loop cannot spend answering webhooks, and processing one event
 * commits several times (the incident, the run, the job's completion). Why that loses nothing that
 * matters:
 * - A process crash (SIGKILL, OOM, a panic) loses nothing either way: a commit returns once its WAL
 *   frames are written to the file, and the kernel keeps them whatever becomes of the process.
 * - A power cut or kernel crash loses a suffix of the commits, never one from the middle: WAL frames carry
 *   cumulative checksums, and recovery replays them from the start up to the first that does not match,
 *   so what survives is a prefix of the commits, and it includes everything written before the last
 *   fsync. Any webhook answered 2xx was fsynced: neither it nor anything before it can be lost. What can
 *   be is background work done since the last fsync.
 * - That work is at-least-once anyway: a job whose completion is lost runs again, and every handler is
 *   idempotent (the queue's contract); an incident lost with it is folded again from its stored events by
 *   that same job; a run opened or moved by a lost commit is opened or moved again by the job that did it.
 * - What reaches the outside world before a later fsync is where a lost suffix could show. A Devin
 *   session is created only after its create intent is durable (so the retry looks the session up
 *   instead of creating a second one), and a person's decision is durable before they are told. A Slack
 *   message whose `ts` was lost is posted again (likewise a storm's incidents whose delivery mark was lost
 *   are sent to the session again, a PagerDuty note whose mark was lost written again; what a storm's
 *   prompt carries is written just before the create intent, and is durable with it): the same one-request window as a crash between the call's answer and our
 *   write, now also open to a power cut until the next fsync, which comes within
 *   OWNERSHIP_TTL_MS / 3 (the ownership renewal is durable) or sooner with the next webhook.
 * - Checkpoints still fsync (SQLite syncs the WAL before copying it into the database, and the database
 *   after), so the database file is never ahead of a WAL that could be lost.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly now: () => number;
  private pendingEvents: {
    event: ReceivedEvent;
    jobs: readonly NewJob[];
    resolve: (r: 'recorded' | 'duplicate') => void;
    reject: (e: unknown) => void;
  }[] = [];
  private flushScheduled = false;
  /** A batch of events is committed and waiting for its fsync. */
  private intakeSyncing = false;
  private readonly ownerId = randomUUID();
  private readonly statements = new Map<string, Database.Statement>();
  private readonly renewal: NodeJS.Timeout | undefined;
  private readonly tool: boolean;
  private readonly queuedListeners: (() => void)[] = [];
  private readonly syncFull: Database.Statement;
  private readonly syncNormal: Database.Statement;
  /** The WAL file, opened read-only to fsync it off the main thread (see `synced()`); none for a tool. */
  private walFd: number | undefined;
  private readonly fsync: NonNullable<SqliteStoreOptions['fsync']>;
  /** Callers waiting for the next fsync of the WAL, and whether one is under way. */
  private syncWaiters: ((err: Error | null) => void)[] = [];
  private syncing = false;
  /** The fsync under way, which close() waits for before it closes the descriptor. */
  private syncInFlight: Promise<void> | undefined;
  /** Callers waiting for the open group of background writes to commit (see claimJob). */
  private commitWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  private closing = false;
  /** How many times this store waited for the disk (an fsync of the WAL, or a FULL commit). */
  diskSyncs = 0;
  /** The file, as `sharedInProcess()` knows it. */
  private readonly fileKey: string = '';
  /** Copies the WAL into the database file on a thread of its own (WAL mode, not for a tool). */
  private readonly checkpointer: WalCheckpointer | undefined;
  private readonly walLimitBytes: number = WAL_LIMIT_BYTES;
  /** How many times this connection checkpointed to keep the WAL within its limit (see boundWal). */
  walCheckpoints = 0;
  /** The turn's group of background writes is open (BEGIN IMMEDIATE issued): see `batched()`. */
  private batchOpen = false;
  /** Inside a `batched()` call: its writes join the turn's group. */
  private batching = 0;
  /** Inside `durable()`: every write commits on its own, with synchronous=FULL. */
  private direct = 0;
  private commitQueued = false;
  private readonly beginBatch: Database.Statement | undefined;
  private readonly commitStatement: Database.Statement | undefined;
  /** Groups of background writes committed, and lost (SQLite rolled one back on a disk error). */
  batchCommits = 0;
  batchesLost = 0;
  /** Set once the store failed for good (see `fail()`): every write is refused from then on. */
  private failure: StoreFailedError | undefined;
  private readonly onFailure: SqliteStoreOptions['onFailure'];

  constructor(options: SqliteStoreOptions) {
    this.now = options.now ?? Date.now;
    this.tool = options.tool ?? false;
    this.fsync = options.fsync ?? fdatasync;
    this.onFailure = options.onFailure;
    if (this.tool) {
      this.db = new Database(options.path, { timeout: 2000, fileMustExist: true });
      this.db.pragma('foreign_keys = ON');
      [this.syncFull, this.syncNormal] = this.syncStatements(true);
      const version =
        (this.db
          .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
          .get()
          ? (this.db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null })
              .v
          : null) ?? 0;
      if (version !== SCHEMA_VERSION) {
        this.db.close();
        throw new AppError(
          'store_schema_mismatch',
          `${options.path} has schema version ${version}, this tool expects ${SCHEMA_VERSION}: run the tool of the same version as the bot (a bot start applies pending migrations)`,
        );
      }
      return;
    }
    if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
    // A lock held by someone else (a backup tool) makes a write wait at most 250 ms, then fail: the wait
    // blocks the event loop (better-sqlite3 is synchronous), and a webhook answered 503 is simply
    // delivered again later.
    // Another store of this process on the file commits its group first (its lock would make this one
    // wait on the thread that holds it), and from now on neither groups its writes.
    this.fileKey = options.path === ':memory:' ? randomUUID() : resolve(options.path);
    for (const other of OPEN_IN_PROCESS.get(this.fileKey) ?? []) other.commitBatch();
    this.db = new Database(options.path, { timeout: 250 });
    // Space freed by retention goes back to the file system on request (PRAGMA incremental_vacuum). The
    // mode only takes effect through a VACUUM, which is done once, on a file that had it off.
    if (this.db.pragma('auto_vacuum', { simple: true }) !== 2) {
      this.db.pragma('auto_vacuum = INCREMENTAL');
      this.db.exec('VACUUM');
    }
    const wal = this.db.pragma('journal_mode = WAL', { simple: true }) === 'wal';
    this.db.pragma('foreign_keys = ON');
    [this.syncFull, this.syncNormal] = this.syncStatements(wal);
    this.beginBatch = this.db.prepare('BEGIN IMMEDIATE');
    this.commitStatement = this.db.prepare('COMMIT');
    this.durable(() => this.migrate());
    this.durable(() => this.takeOwnership(options.path));
    // The WAL exists from the first write on, and stays the same file while this connection is open
    // (SQLite deletes it when the last connection closes, and restarts it in place after a checkpoint).
    // An fsync through any descriptor of a file makes all of its written data durable. Without WAL (a
    // file system that cannot map its index, ':memory:'), every commit waits for the disk instead.
    if (wal) this.walFd = openSync(`${options.path}-wal`, 'r');
    this.renewal = setInterval(() => this.renewOwnership(), OWNERSHIP_TTL_MS / 3);
    this.renewal.unref();
    // A SQLite file has one owning process: jobs still marked running belonged to one that died.
    this.sql(
      `UPDATE jobs SET state = 'queued', locked_until = NULL, locked_by = NULL WHERE state = 'running'`,
    ).run();
    const sharing = OPEN_IN_PROCESS.get(this.fileKey) ?? new Set<SqliteStore>();
    sharing.add(this);
    OPEN_IN_PROCESS.set(this.fileKey, sharing);
    // Last: nothing after it can fail and leave the thread running.
    if (wal) {
      this.walLimitBytes = options.walLimitBytes ?? WAL_LIMIT_BYTES;
      this.checkpointer = this.checkpointOnItsOwnThread(options.path, options.logger);
    }
  }

  /**
   * SQLite's automatic checkpoint runs inside a commit, on the event loop (about 10 ms, several times a
   * second under load): it is done on a thread of its own instead, and SQLite's comes back if that fails.
   * The WAL grows past its usual 4 MiB while commits keep coming, up to `walLimitBytes` (see boundWal).
   */
  private checkpointOnItsOwnThread(path: string, logger: SqliteStoreOptions['logger']): WalCheckpointer {
    this.db.pragma(`journal_size_limit = ${this.walLimitBytes}`);
    this.db.pragma('wal_autocheckpoint = 0');
    let busyLogged = false;
    return new WalCheckpointer(
      path,
      (err) => {
        if (!this.db.open) return;
        logger?.warn(
          { err: err.message },
          "the WAL checkpoint thread failed: SQLite's own checkpoint is back on (in commits)",
        );
        this.db.pragma('wal_autocheckpoint = 1000');
      },
      (message) => {
        if (busyLogged) return;
        busyLogged = true;
        logger?.warn({ err: message }, 'a WAL checkpoint could not run; trying again (logged once)');
      },
    );
  }

  /**
   * Keeps the WAL within `walLimitBytes`, looked at after each commit of a group or of the intake. The
   * thread's checkpoints cannot restart the WAL under a steady stream of commits (see WalCheckpointer);
   * one run here, between two commits of this connection, copies the frames the thread has not yet (those
   * of its last 200 ms at most) and catches up, so the next commit starts the WAL over from its beginning,
   * cut back to the limit: a few milliseconds once per `walLimitBytes` written. The file only grows past
   * the limit when frames are written past it, so its size tells when. A busy answer (the thread is in its
   * own pass) is tried again after the next commit. This also bounds the WAL if the thread stops working.
   */
  private boundWal(): void {
    if (this.walFd === undefined || !this.checkpointer || this.db.inTransaction) return;
    try {
      if (fstatSync(this.walFd).size <= this.walLimitBytes) return;
      this.db.pragma('wal_checkpoint(PASSIVE)');
      this.walCheckpoints++;
    } catch {
      // Busy (an operator's tool holds a lock): the next look tries again.
    }
  }

  private migrate(): void {
    this.db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)',
    );
    const applied = new Set(
      this.sql('SELECT version FROM schema_migrations')
        .all()
        .map((r) => (r as { version: number }).version),
    );
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      this.db
        .transaction(() => {
          this.db.exec(m.sqlite);
          this.sql('INSERT INTO schema_migrations (version, name) VALUES (?, ?)').run(m.version, m.name);
        })
        .immediate();
    }
  }

  /**
   * One process owns a SQLite file: its job leases, requeued at start-up, assume so. A second process (a
   * rolling deploy sharing the volume, a second replica) refuses to start instead of running jobs twice.
   * A dead owner on this host, or one whose claim was not renewed, is taken over.
   */
  private takeOwnership(path: string): void {
    this.db
      .transaction(() => {
        const row = this.sql('SELECT owner, host, pid, expires_at FROM store_owner WHERE id = 1').get() as
          | { owner: string; host: string; pid: number; expires_at: number }
          | undefined;
        const stale =
          !row ||
          row.expires_at < this.now() ||
          (row.host === hostname() && (row.pid === process.pid || !processAlive(row.pid)));
        if (!stale) {
          throw new StoreInUseError(
            `${path} is in use by another postmortem-bot (pid ${row.pid} on ${row.host}). Stop it first, or give each instance its own DATABASE_URL; SQLite serves one instance (use Recreate, not rolling, deploys).`,
          );
        }
        this.sql(
          `INSERT INTO store_owner (id, owner, host, pid, expires_at) VALUES (1, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, host = excluded.host, pid = excluded.pid,
               expires_at = excluded.expires_at`,
        ).run(this.ownerId, hostname(), process.pid, this.now() + OWNERSHIP_TTL_MS);
      })
      .immediate();
  }

  /** Durable, and so also the bound on how long a background write can wait for its fsync: see the class. */
  private renewOwnership(): void {
    this.durably(() =>
      this.sql('UPDATE store_owner SET expires_at = ? WHERE id = 1 AND owner = ?').run(
        this.now() + OWNERSHIP_TTL_MS,
        this.ownerId,
      ),
    ).catch(() => {
      // Closed or briefly busy: the next renewal tries again, well within the TTL.
    });
  }

  /**
   * Prepared statements, compiled once per SQL text. A write outside `batched()` while the turn's group is
   * open (it would join the group, and wait for the end of the turn) commits the group as soon as the
   * calling method's synchronous work is done, before its caller goes on: such a write keeps the
   * guarantee it had alone, that it survives a process crash once the method returns.
   */
  private sql(text: string): Database.Statement {
    let stmt = this.statements.get(text);
    if (!stmt) {
      stmt = this.db.prepare(text);
      this.statements.set(text, stmt);
    }
    if (this.failure && !stmt.readonly) throw this.failure;
    if (this.batchOpen && this.batching === 0 && !this.commitQueued && !stmt.readonly) {
      this.commitQueued = true;
      queueMicrotask(() => {
        this.commitQueued = false;
        this.commitBatch();
      });
    }
    return stmt;
  }

  /**
   * Background writes that only the bot itself reads back, and that are at-least-once by construction,
   * are grouped: the first of them in a turn of the event loop opens a transaction, and it commits at the
   * end of the turn (setImmediate), with every such write made meanwhile. These are the job queue's
   * bookkeeping (claims, completions, retries, lease renewals and releases, new jobs), the folding of an
   * event into its incident, a run opened by policy or a storm join, and a digest placement (of a request
   * or of a run started by policy): `batched()` marks them. A turn's work for several events then commits once, writing each B-tree page
   * (the jobs table, its indexes, the storm's group) once instead of once per statement: processing one
   * event in a storm wrote about 85 KiB of WAL in four commits.
   *
   * What this changes, and why it is safe:
   * - A process crash loses the group of the turn it happens in (before, every such commit survived one).
   *   Each of these writes is redone by what made it: a completion lost is a job run again (the queue is
   *   at-least-once, its handlers idempotent); a claim lost is one whose job had not started (the runner
   *   starts a job in the turn after its claim, once the claim is committed, so a job that crashes the
   *   process is counted and, after its last attempt, buried); an incident fold, a run opened by policy, a join or
   *   a placement lost is made again by the event's job, run again because its completion was lost with it
   *   (the completion comes after them, in the same or a later group).
   * - Nothing that records what an outside call did is grouped (a Slack ts, a delivery or note mark, a
   *   state change after a Devin call, a digest's redraw): such a write, made while a group is open,
   *   commits the group at once (`sql()`), as before.
   * - Durable writes (`durably()`, `durable()`) commit the open group with them, then sync.
   * - Other connections (the operator's tool) see a group at the end of the turn, a few milliseconds on.
   * - A group that SQLite rolls back (a disk error: full, I/O, in its COMMIT or in one of its statements)
   *   loses writes whose callers already went on: a claim whose job is running, a completion, a placement
   *   whose message is being posted. Unlike after a crash, the process would go on believing them, and the
   *   job claimable again might run twice at once. The store fails for good instead (`fail()`): the
   *   process restarts from what is on disk, which is the crash the paragraph above shows is safe.
   */
  private batched<T>(fn: () => T): T {
    if (this.failure) throw this.failure;
    // Without WAL (a file system that cannot map its index), a reader's lock makes a COMMIT busy after
    // its writes were answered: there, every write commits on its own, as without grouping.
    if (
      this.tool ||
      this.direct > 0 ||
      this.closing ||
      !this.beginBatch ||
      this.walFd === undefined ||
      this.sharedInProcess()
    )
      return fn();
    // A statement's disk error made SQLite roll the whole group back, earlier in this turn.
    if (this.batchOpen && !this.db.inTransaction) throw this.groupLost();
    if (!this.batchOpen && !this.db.inTransaction) {
      this.beginBatch.run();
      this.batchOpen = true;
      setImmediate(() => this.commitBatch());
    }
    this.batching++;
    try {
      return fn();
    } catch (err) {
      // The statement failed; if SQLite rolled back the whole group with it, the store has failed.
      if (this.batchOpen && !this.db.inTransaction) this.groupLost(err);
      throw err;
    } finally {
      this.batching--;
    }
  }

  /**
   * The store fails for good: writes it had accepted were lost while the process went on (a group of
   * background writes rolled back: see `batched()`), or may be (an fsync of the WAL failed: Linux may then
   * drop the unsynced pages and report the next fsync as a success, so no later commit is known to be on
   * disk). Like PostgreSQL, which stops on a failed fsync rather than retrying it, the store trusts only a
   * restart from the disk: every write is refused from now on (a webhook is answered 503 and delivered
   * again by PagerDuty), and `onFailure` is told once so that the process exits. Nothing answered 2xx
   * before was lost: it had been committed and fsynced.
   */
  private fail(what: string, cause: unknown): StoreFailedError {
    if (this.failure) return this.failure;
    const failure = new StoreFailedError(
      `${what} failed (${cause instanceof Error ? cause.message : String(cause)}); writes may be lost, so the store refuses every write until the bot restarts from what is on disk`,
      cause,
    );
    this.failure = failure;
    try {
      this.onFailure?.(failure);
    } catch {
      // The callback's own trouble does not change the store's state.
    }
    return failure;
  }

  /**
   * Whether another store of this process has the file open too (tests that model replicas on one SQLite
   * file). A group holds the write lock until the end of the turn, and the other connection, in the same
   * thread, would block the event loop waiting for it: the group could never commit. Writes then commit
   * one by one, as without grouping.
   */
  private sharedInProcess(): boolean {
    return (OPEN_IN_PROCESS.get(this.fileKey)?.size ?? 0) > 1;
  }

  /**
   * The open group was rolled back by SQLite (a disk error in one of its statements; `cause` when known):
   * it is closed, its waiters refused, and the store fails.
   */
  private groupLost(cause?: unknown): StoreFailedError {
    this.batchOpen = false;
    this.batchesLost++;
    const failure = this.fail(
      'a group of background writes',
      cause ?? 'SQLite rolled it back after a disk error',
    );
    for (const w of this.commitWaiters.splice(0)) w.reject(failure);
    return failure;
  }

  /** Commits the turn's group of background writes, if one is open. */
  private commitBatch(): void {
    if (!this.batchOpen) return;
    if (!this.db.open || !this.db.inTransaction) {
      this.groupLost();
      return;
    }
    this.batchOpen = false;
    const waiting = this.commitWaiters;
    this.commitWaiters = [];
    try {
      this.commitStatement?.run();
      this.batchCommits++;
    } catch (err) {
      this.batchesLost++;
      try {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
      } catch {
        // Rolled back already, or the connection is unusable: the store fails either way.
      }
      const failure = this.fail('the commit of a group of background writes', err);
      for (const w of waiting) w.reject(failure);
      return;
    }
    for (const w of waiting) w.resolve();
    this.boundWal();
  }

  /** Resolves once the open group of background writes is committed; rejects if it is lost. */
  private groupCommitted(): Promise<void> {
    if (!this.batchOpen) return this.failure ? Promise.reject(this.failure) : Promise.resolve();
    return new Promise((resolve, reject) => this.commitWaiters.push({ resolve, reject }));
  }

  /**
   * The connection commits with synchronous=NORMAL (in WAL mode; FULL otherwise, where NORMAL is not
   * crash-safe); these switch it for one durable commit and back.
   */
  private syncStatements(wal: boolean): [Database.Statement, Database.Statement] {
    const normal = this.db.prepare(`PRAGMA synchronous = ${wal ? 'NORMAL' : 'FULL'}`);
    normal.run();
    return [this.db.prepare('PRAGMA synchronous = FULL'), normal];
  }

  /**
   * Runs `fn`'s commit with synchronous=FULL: it returns once the WAL is fsynced, with every earlier commit,
   * the main thread waiting meanwhile. For start-up, close and the operator's tool; the bot's own durable
   * writes use `durably()`.
   */
  private durable<T>(fn: () => T): T {
    this.commitBatch();
    if (this.failure) throw this.failure;
    this.syncFull.run();
    this.direct++;
    try {
      this.diskSyncs++;
      return fn();
    } finally {
      this.direct--;
      this.syncNormal.run();
    }
  }

  /**
   * Runs `fn` (its commit does not wait for the disk) and resolves once the WAL is synced, on libuv's
   * thread pool, not the main thread: the same guarantee as a FULL commit (in WAL mode SQLite's FULL is
   * exactly a sync of the WAL once the commit's frames are written), without stopping the event loop. Durable are: webhook events (a 2xx promises PagerDuty the event is kept: see flushEvents), the
   * intents and decisions `isDurablePatch` names (a Devin session's create intent, a person's decision), a
   * manual run (a person asked for it), the ownership renewal, and the operator's changes to dead jobs.
   * See the class comment for why everything else need not wait.
   */
  private async durably<T>(fn: () => T): Promise<T> {
    if (this.walFd === undefined) return this.durable(fn);
    const result = fn();
    // fn's writes may have joined the turn's group of background writes: it commits now, with them.
    this.commitBatch();
    // A group lost in that commit took fn's writes with it.
    if (this.failure) throw this.failure;
    await this.synced();
    return result;
  }

  /**
   * Resolves once everything committed so far is on disk. Callers that arrive while an fsync is under way
   * wait for the next one (the one under way may have started before their commit), and share it: one
   * fsync for every commit made meanwhile, group commit for durability itself.
   */
  private synced(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.syncWaiters.push((err) => (err ? reject(err) : resolve()));
      if (!this.syncing) this.startSync();
    });
  }

  private startSync(): void {
    const fd = this.walFd;
    const waiters = this.syncWaiters;
    this.syncWaiters = [];
    if (fd === undefined || this.failure) {
      const err = this.failure ?? new AppError('store_closed', 'the store is closed');
      for (const w of waiters) w(err);
      return;
    }
    this.syncing = true;
    this.diskSyncs++;
    let done: () => void = () => {};
    this.syncInFlight = new Promise((resolve) => (done = resolve));
    this.fsync(fd, (err) => {
      this.syncing = false;
      this.syncInFlight = undefined;
      done();
      // This sync's callers learn its own outcome: a success made their commits durable, whatever else
      // failed meanwhile.
      const failed = err ? this.fail('an fsync of the WAL', err) : null;
      for (const w of waiters) w(failed);
      // Those who came during it get the next one, unless the store has failed: after a failed fsync no
      // later one proves anything (see fail()), so none is started, and they are refused.
      if (this.syncWaiters.length > 0) this.startSync();
    });
  }

  async placeApprovalRequest(
    runId: string,
    bound: PlacementBound,
    redraw: NewJob,
  ): Promise<ApprovalPlacement | undefined> {
    return this.batched(() => {
      const { after } = bound;
      // Without its own fsync, like all background writes (see the class comment): a placement lost to a power
      // cut is lost with its job's completion (written after it), so the job runs again and places the
      // request anew, before anything showed it; the next sync makes it durable anyway. In a storm these are
      // thousands.
      const placed = this.db
        .transaction((): { shownIn: ApprovalPlacement; queued: boolean } | undefined => {
          const existing = this.sql('SELECT shown_in FROM approval_placements WHERE run_id = ?').get(runId) as
            | { shown_in: ApprovalPlacement }
            | undefined;
          if (existing) return { shownIn: existing.shown_in, queued: false };
          const run = this.sql('SELECT channel, created_at FROM runs WHERE id = ?').get(runId) as
            | { channel: string; created_at: number }
            | undefined;
          if (!run) return undefined;
          // Counting stops at `after`: in a storm of thousands the answer is the same, and cheap.
          const { n } = this.sql(
            `SELECT COUNT(*) AS n FROM (
               SELECT 1 FROM runs
               WHERE channel = ? AND state = 'awaiting_approval' AND id <> ?
                 AND (created_at < ? OR (created_at = ? AND id < ?))
               LIMIT ?)`,
          ).get(run.channel, runId, run.created_at, run.created_at, runId, after) as { n: number };
          const open =
            n >= after
              ? n
              : Math.max(n, this.waitingCards(run.channel, after)) + this.startedCards(run.channel, bound);
          const shownIn: ApprovalPlacement = open >= after ? 'digest' : 'card';
          this.sql(
            'INSERT INTO approval_placements (run_id, channel, shown_in, placed_at) VALUES (?, ?, ?, ?)',
          ).run(runId, run.channel, shownIn, this.now());
          if (shownIn === 'card') return { shownIn, queued: false };
          this.sql(
            `INSERT INTO digests (channel, version) VALUES (?, 1)
               ON CONFLICT (channel) DO UPDATE SET version = digests.version + 1`,
          ).run(run.channel);
          this.insertJob(redraw);
          return { shownIn, queued: true };
        })
        .immediate();
      if (placed?.queued) this.notifyQueued();
      return placed?.shownIn;
    });
  }

  /**
   * Requests of the channel waiting with a card of their own: counted too, so that one opened in the same
   * millisecond as another but committed after its placement cannot make a card more than the bound.
   */
  private waitingCards(channel: string, after: number): number {
    const { n } = this.sql(
      `SELECT COUNT(*) AS n FROM (
         SELECT 1 FROM approval_placements p JOIN runs r ON r.id = p.run_id
         WHERE p.channel = ? AND p.kind = 'request' AND p.shown_in = 'card' AND r.state = 'awaiting_approval'
         LIMIT ?)`,
    ).get(channel, after) as { n: number };
    return n;
  }

  /** Runs started by policy in the channel with a message of their own placed since `bound.since`. */
  private startedCards(channel: string, bound: PlacementBound): number {
    const { n } = this.sql(
      `SELECT COUNT(*) AS n FROM (
         SELECT 1 FROM approval_placements
         WHERE channel = ? AND kind = 'run' AND shown_in = 'card' AND placed_at >= ?
         LIMIT ?)`,
    ).get(channel, bound.since, bound.after) as { n: number };
    return n;
  }

  async placeStartedRun(
    runId: string,
    bound: PlacementBound,
    redraw: NewJob,
  ): Promise<StartedPlacement | undefined> {
    return this.batched(() => {
      // Without its own fsync, like a request's placement (see there). The transaction is the channel's
      // lock: the open messages counted are the ones placed before.
      const placed = this.db
        .transaction((): { placement: StartedPlacement; queued: boolean } | undefined => {
          const existing = this.sql(
            'SELECT shown_in, thread_ts FROM approval_placements WHERE run_id = ?',
          ).get(runId) as { shown_in: ApprovalPlacement; thread_ts: string | null } | undefined;
          if (existing)
            return { placement: { shownIn: existing.shown_in, threadTs: existing.thread_ts }, queued: false };
          const run = this.sql('SELECT channel FROM runs WHERE id = ?').get(runId) as
            | { channel: string }
            | undefined;
          if (!run) return undefined;
          const { n } = this.sql(
            `SELECT COUNT(*) AS n FROM (
               SELECT 1 FROM runs WHERE channel = ? AND state = 'awaiting_approval' AND id <> ? LIMIT ?)`,
          ).get(run.channel, runId, bound.after) as { n: number };
          const open = n >= bound.after ? n : n + this.startedCards(run.channel, bound);
          const shownIn: ApprovalPlacement = open >= bound.after ? 'digest' : 'card';
          let threadTs: string | null = null;
          if (shownIn === 'digest') {
            const digest = this.sql('SELECT ts, open FROM digests WHERE channel = ?').get(run.channel) as
              | { ts: string | null; open: number }
              | undefined;
            if (
              digest?.ts &&
              (digest.open === 1 || this.recentInThread(run.channel, digest.ts, bound.since) > 0)
            )
              threadTs = digest.ts;
          }
          this.sql(
            `INSERT INTO approval_placements (run_id, channel, shown_in, thread_ts, placed_at, kind)
               VALUES (?, ?, ?, ?, ?, 'run')`,
          ).run(runId, run.channel, shownIn, threadTs, this.now());
          if (shownIn === 'card') return { placement: { shownIn, threadTs }, queued: false };
          this.sql(
            `INSERT INTO digests (channel, version) VALUES (?, 1)
               ON CONFLICT (channel) DO UPDATE SET version = digests.version + 1`,
          ).run(run.channel);
          this.insertJob(redraw);
          return { placement: { shownIn, threadTs }, queued: true };
        })
        .immediate();
      if (placed?.queued) this.notifyQueued();
      return placed?.placement;
    });
  }

  private recentInThread(channel: string, threadTs: string, since: number): number {
    const { n } = this.sql(
      `SELECT COUNT(*) AS n FROM approval_placements
         WHERE channel = ? AND kind = 'run' AND shown_in = 'digest' AND thread_ts = ? AND placed_at >= ?`,
    ).get(channel, threadTs, since) as { n: number };
    return n;
  }

  async startedInDigest(
    channel: string,
    options: { threadTs: string | null; since: number; limit: number },
  ): Promise<StartedInDigest> {
    // Waiting for a digest: no thread yet, and no message posted (one posted in the channel, having waited
    // too long, waits for nothing).
    const where = `p.channel = ? AND p.kind = 'run' AND p.shown_in = 'digest'
      AND (p.thread_ts = ? OR (p.thread_ts IS NULL AND r.slack_ts IS NULL))`;
    const counts = this.sql(
      `SELECT COUNT(*) AS total,
              COUNT(*) FILTER (WHERE p.thread_ts IS NULL) AS pending,
              COUNT(*) FILTER (WHERE p.thread_ts IS NOT NULL AND p.placed_at >= ?) AS recent
         FROM approval_placements p JOIN runs r ON r.id = p.run_id WHERE ${where}`,
    ).get(options.since, channel, options.threadTs) as { total: number; pending: number; recent: number };
    const rows = this.sql(
      `SELECT r.* FROM approval_placements p JOIN runs r ON r.id = p.run_id
         WHERE ${where} ORDER BY p.placed_at DESC, p.run_id DESC LIMIT ?`,
    ).all(channel, options.threadTs, options.limit) as RunRow[];
    return {
      total: counts.total,
      recentInThread: counts.recent,
      pending: counts.pending,
      runs: rows.map(toRun),
    };
  }

  async approvalPlacement(
    runId: string,
  ): Promise<{ shownIn: ApprovalPlacement; threadTs: string | null; kind: PlacementKind } | undefined> {
    const row = this.sql('SELECT shown_in, thread_ts, kind FROM approval_placements WHERE run_id = ?').get(
      runId,
    ) as { shown_in: ApprovalPlacement; thread_ts: string | null; kind: PlacementKind } | undefined;
    return row ? { shownIn: row.shown_in, threadTs: row.thread_ts, kind: row.kind } : undefined;
  }

  async setApprovalThread(runId: string, threadTs: string): Promise<void> {
    this.sql('UPDATE approval_placements SET thread_ts = ? WHERE run_id = ? AND thread_ts IS NULL').run(
      threadTs,
      runId,
    );
  }

  async touchDigest(channel: string, redraw: NewJob): Promise<boolean> {
    return this.batched(() => {
      // Without its own fsync for the same reason as a placement: lost only together with its job's completion.
      const touched = this.db
        .transaction(() => {
          const row = this.sql(
            `UPDATE digests SET version = version + 1
               WHERE channel = ? AND (open = 1 OR version > drawn_version)
               RETURNING channel`,
          ).get(channel);
          if (row) this.insertJob(redraw);
          return row !== undefined;
        })
        .immediate();
      if (touched) this.notifyQueued();
      return touched;
    });
  }

  async getDigest(channel: string): Promise<DigestRecord | undefined> {
    const row = this.sql('SELECT * FROM digests WHERE channel = ?').get(channel) as DigestRow | undefined;
    return row ? toDigest(row) : undefined;
  }

  async digestDrawn(
    channel: string,
    drawn: { ts: string | null; open: boolean; version: number; at: number; adopt?: boolean },
  ): Promise<void> {
    this.db
      .transaction(() => {
        this.sql(
          `UPDATE digests SET ts = ?, open = ?, drawn_version = max(drawn_version, ?), drawn_at = ? WHERE channel = ?`,
        ).run(drawn.ts, drawn.open ? 1 : 0, drawn.version, drawn.at, channel);
        if (drawn.adopt && drawn.ts) {
          this.sql(
            `UPDATE approval_placements SET thread_ts = ?
             WHERE channel = ? AND kind = 'run' AND shown_in = 'digest' AND thread_ts IS NULL
               AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = approval_placements.run_id AND r.slack_ts IS NOT NULL)`,
          ).run(drawn.ts, channel);
        }
      })
      .immediate();
  }

  async waitingApprovals(
    channel: string,
    options: { openedUpTo?: number; limit: number; offset?: number },
  ): Promise<WaitingApprovals> {
    const upTo = options.openedUpTo ?? null;
    const counts = this.sql(
      `SELECT COUNT(*) AS total, COUNT(p.run_id) AS in_digest, COUNT(r.budget_hold) AS held,
              MAX(r.created_at) AS newest
         FROM runs r LEFT JOIN approval_placements p ON p.run_id = r.id AND p.shown_in = 'digest'
         WHERE r.channel = ? AND r.state = 'awaiting_approval' AND (? IS NULL OR r.created_at <= ?)`,
    ).get(channel, upTo, upTo) as { total: number; in_digest: number; held: number; newest: number | null };
    // A run with storm members is one row per member; a run without, one row.
    const { incidents } = this.sql(
      `SELECT COUNT(*) AS incidents FROM runs r LEFT JOIN storm_members m ON m.run_id = r.id
         WHERE r.channel = ? AND r.state = 'awaiting_approval' AND (? IS NULL OR r.created_at <= ?)`,
    ).get(channel, upTo, upTo) as { incidents: number };
    const rows = this.sql(
      `SELECT * FROM runs
         WHERE channel = ? AND state = 'awaiting_approval' AND (? IS NULL OR created_at <= ?)
         ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`,
    ).all(channel, upTo, upTo, options.limit, options.offset ?? 0) as RunRow[];
    return {
      total: counts.total,
      incidents,
      inDigest: counts.in_digest,
      held: counts.held,
      newestOpenedAt: counts.newest,
      runs: rows.map(toRun),
    };
  }

  /** Called whenever jobs were queued, so workers in this process can wake at once. */
  onJobsQueued(listener: () => void): void {
    this.queuedListeners.push(listener);
  }

  private notifyQueued(): void {
    for (const l of this.queuedListeners) l();
  }

  async ping(): Promise<void> {
    // Taking the write lock proves the file is writable and not locked by someone else.
    this.commitBatch();
    if (this.failure) throw this.failure;
    this.db.exec('BEGIN IMMEDIATE');
    this.db.exec('ROLLBACK');
  }

  recordEvent(event: ReceivedEvent, jobs: readonly NewJob[]): Promise<'recorded' | 'duplicate'> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pendingEvents.push({ event, jobs, resolve, reject });
      this.scheduleFlush();
    });
  }

  /**
   * The next batch is written once the event loop has read what arrived, and not while the previous batch
   * waits for its fsync: events that arrive meanwhile make one larger batch, written when it is done. (A
   * commit per turn of the loop would write the same B-tree pages again and again, and grow the WAL.)
   */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.intakeSyncing || this.pendingEvents.length === 0) return;
    this.flushScheduled = true;
    setImmediate(() => this.flushEvents());
  }

  private flushEvents(): void {
    const batch = this.pendingEvents;
    this.pendingEvents = [];
    this.flushScheduled = false;
    this.intakeSyncing = true;
    // Each request is answered once its event is on disk: after the commit and the fsync that follows it.
    this.durably(() => {
      const insertEvent = this.sql(
        `INSERT INTO events (id, type, incident_id, occurred_at, received_at, payload)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
      );
      const results = this.db
        .transaction(() =>
          batch.map(({ event: e, jobs }) => {
            const inserted =
              insertEvent.run(e.id, e.type, e.incidentId, e.occurredAt, e.receivedAt, e.payload).changes ===
              1;
            if (inserted) for (const job of jobs) this.insertJob(job);
            return inserted ? ('recorded' as const) : ('duplicate' as const);
          }),
        )
        .immediate();
      this.boundWal();
      return results;
    })
      .then(
        (results) => {
          for (const [i, b] of batch.entries()) b.resolve(results[i] ?? 'duplicate');
          // The workers wake once the events are durable: nothing acts on an event PagerDuty may send again.
          if (results.includes('recorded')) this.notifyQueued();
        },
        (err: unknown) => {
          for (const b of batch) b.reject(err);
        },
      )
      .finally(() => {
        this.intakeSyncing = false;
        this.scheduleFlush();
      });
  }

  async getEvent(id: string): Promise<ReceivedEvent | undefined> {
    const row = this.sql('SELECT * FROM events WHERE id = ?').get(id) as
      | {
          id: string;
          type: string;
          incident_id: string | null;
          occurred_at: string;
          received_at: number;
          payload: string;
        }
      | undefined;
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
    return (this.sql('SELECT COUNT(*) AS n FROM events').get() as { n: number }).n;
  }

  async getIncident(id: string): Promise<Incident | undefined> {
    const row = this.sql('SELECT data FROM incidents WHERE id = ?').get(id) as { data: string } | undefined;
    return row ? (JSON.parse(row.data) as Incident) : undefined;
  }

  async saveIncident(incident: Incident): Promise<void> {
    return this.batched(() => {
      this.sql(
        `INSERT INTO incidents (id, data, updated_at) VALUES (?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`,
      ).run(incident.id, JSON.stringify(incident), this.now());
    });
  }

  async openRun(run: NewRun, jobs: NewJob[]): Promise<PostmortemRun | undefined> {
    const now = this.now();
    const write = () =>
      this.db
        .transaction(() => {
          const row = this.insertRun(run, now);
          if (row) for (const job of jobs) this.insertJob(job);
          return row;
        })
        .immediate();
    // A run a person asked for is their decision: durable, like the others (see isDurablePatch). One
    // opened by policy is redone by the event's job if lost: it joins the turn's group (see batched()).
    const opened = run.decidedBy !== null ? await this.durably(write) : this.batched(write);
    if (opened && jobs.length > 0) this.notifyQueued();
    return opened ? toRun(opened) : undefined;
  }

  private insertRun(run: NewRun, now: number, gate?: GateColumns): RunRow | undefined {
    const values = runInsertValues(run, now, gate);
    return this.sql(
      `INSERT INTO runs (${RUN_INSERT_COLUMNS})
             VALUES (${values.map(() => '?').join(', ')})
             ON CONFLICT (incident_id, attempt) DO NOTHING
             RETURNING *`,
    ).get(...values) as RunRow | undefined;
  }

  async openOrJoinStorm(run: NewRun, jobs: NewJob[], join: StormJoin): Promise<StormOutcome | undefined> {
    return this.batched(() => {
      const now = this.now();
      const states = Object.keys(join.steps) as RunState[];
      let queued = false;
      const outcome = this.db
        .transaction((): StormOutcome | undefined => {
          const known = this.sql(
            `SELECT 1 FROM runs WHERE incident_id = ? UNION ALL SELECT 1 FROM storm_members WHERE incident_id = ?`,
          ).get(run.incidentId, run.incidentId);
          if (known) return undefined;
          const group = (
            states.length === 0
              ? undefined
              : this.sql(
                  `SELECT g.run_id, r.state FROM storm_groups g JOIN runs r ON r.id = g.run_id
                     WHERE g.service_id = ? AND r.state IN (${states.map(() => '?').join(', ')})
                       AND ? >= g.first_resolved_at - ? AND ? <= g.last_resolved_at + ?
                     ORDER BY g.last_resolved_at DESC LIMIT 1`,
                ).get(
                  join.serviceId,
                  ...states,
                  join.resolvedAt,
                  join.windowMs,
                  join.resolvedAt,
                  join.windowMs,
                )
          ) as { run_id: string; state: RunState } | undefined;
          const member = (runId: string) =>
            this.sql(
              `INSERT INTO storm_members (incident_id, run_id, incident, resolved_at, joined_at)
                 VALUES (?, ?, ?, ?, ?)`,
            ).run(run.incidentId, runId, JSON.stringify(run.incident), join.resolvedAt, now);
          const gate = join.gate;
          if (group) {
            let step = join.steps[group.state];
            if (!step) return undefined;
            // A join that starts the group's session passes the session gate.
            let cols: ReturnType<typeof gateColumns> = { slotDay: null, queuedAt: null, budgetHold: null };
            const alt = gate?.starts?.[group.state];
            if (gate && alt) {
              const decision = decideGate(
                gate.gate,
                this.use(gate.gate.day, gate.gate.liveStates, gate.gate.queuedState),
                {
                  admitted: { state: step.to, jobs: [] },
                  full: { state: alt.full.to, jobs: [] },
                  overBudget: { state: alt.overBudget.to, jobs: [] },
                },
              );
              if (decision.outcome === 'full') step = alt.full;
              if (decision.outcome === 'over_budget') step = alt.overBudget;
              cols = gateColumns(decision, gate.gate, now);
            }
            const { sets, values } = patchAssignments(step.patch, () => '?');
            const row = this.sql(
              `UPDATE runs SET state = ?, updated_at = ?, slot_day = COALESCE(?, slot_day),
                   queued_at = COALESCE(?, queued_at), budget_hold = COALESCE(?, budget_hold)${sets}
                 WHERE id = ? RETURNING *`,
            ).get(
              step.to,
              now,
              cols.slotDay,
              cols.queuedAt,
              cols.budgetHold,
              ...values,
              group.run_id,
            ) as RunRow;
            const { n } = this.sql(
              `UPDATE storm_groups SET first_resolved_at = MIN(first_resolved_at, ?),
                   last_resolved_at = MAX(last_resolved_at, ?), members = members + 1 WHERE run_id = ?
                 RETURNING members AS n`,
            ).get(join.resolvedAt, join.resolvedAt, group.run_id) as { n: number };
            member(group.run_id);
            const stepJobs = step.jobs(group.run_id);
            for (const job of stepJobs) this.insertJob(job);
            queued = stepJobs.length > 0;
            return { outcome: 'joined', run: toRun(row), from: group.state, members: n };
          }
          // A new group's birth passes the session gate when it starts a session.
          const g = gate?.gate;
          const born =
            g && gate?.open
              ? gatedBirth(run, g, gate.open, this.use(g.day, g.liveStates, g.queuedState), now)
              : { run, jobs, cols: undefined };
          if (!born) return undefined;
          const { jobs: birthJobs } = born;
          const row = this.insertRun(born.run, now, born.cols);
          if (!row) return undefined;
          this.sql(
            `INSERT INTO storm_groups (run_id, service_id, first_resolved_at, last_resolved_at, created_at, members)
               VALUES (?, ?, ?, ?, ?, 1)`,
          ).run(run.id, join.serviceId, join.resolvedAt, join.resolvedAt, now);
          member(run.id);
          for (const job of birthJobs) this.insertJob(job);
          queued = birthJobs.length > 0;
          return { outcome: 'opened', run: toRun(row) };
        })
        .immediate();
      if (queued) this.notifyQueued();
      return outcome;
    });
  }

  async stormMembers(runId: string): Promise<StormMember[]> {
    return (
      this.sql('SELECT * FROM storm_members WHERE run_id = ? ORDER BY resolved_at, incident_id').all(
        runId,
      ) as StormMemberRow[]
    ).map(toStormMember);
  }

  async markStormDelivered(runId: string, incidentIds: readonly string[], at: number): Promise<void> {
    if (incidentIds.length === 0) return;
    this.sql(
      `UPDATE storm_members SET delivered_at = ?
         WHERE run_id = ? AND delivered_at IS NULL AND incident_id IN (SELECT value FROM json_each(?))`,
    ).run(at, runId, JSON.stringify(incidentIds));
  }

  async markStormInPrompt(runId: string, incidentIds: readonly string[], at: number | null): Promise<void> {
    this.sql(
      `UPDATE storm_members SET in_prompt_at = CASE WHEN incident_id IN (SELECT value FROM json_each(?)) THEN ? END
         WHERE run_id = ?`,
    ).run(JSON.stringify(at === null ? [] : incidentIds), at, runId);
  }

  async markStormNoted(runId: string, incidentId: string, at: number): Promise<void> {
    this.sql(
      'UPDATE storm_members SET noted_at = ? WHERE run_id = ? AND incident_id = ? AND noted_at IS NULL',
    ).run(at, runId, incidentId);
  }

  async moveStormMembers(run: NewRun, jobs: NewJob[], move: StormMove): Promise<PostmortemRun | undefined> {
    const now = this.now();
    const which = `run_id = ? AND incident_id IN (SELECT value FROM json_each(?))${
      move.undeliveredOnly ? ' AND delivered_at IS NULL' : ''
    }`;
    let queued = false;
    const opened = this.db
      .transaction((): RunRow | undefined => {
        const moving = this.sql(
          `SELECT COUNT(*) AS n, MIN(resolved_at) AS first, MAX(resolved_at) AS last FROM storm_members WHERE ${which}`,
        ).get(move.fromRunId, JSON.stringify(move.incidentIds)) as { n: number; first: number; last: number };
        if (moving.n === 0) return undefined;
        // A birth that starts a session passes the session gate.
        const g = move.gate?.gate;
        const born =
          g && move.gate
            ? gatedBirth(run, g, move.gate.open, this.use(g.day, g.liveStates, g.queuedState), now)
            : { run, jobs, cols: undefined };
        if (!born) return undefined;
        const { jobs: birthJobs } = born;
        const row = this.insertRun(born.run, now, born.cols);
        if (!row) return undefined;
        queued = birthJobs.length + move.fromJobs.length > 0;
        this.sql(
          `UPDATE storm_members SET run_id = ?, joined_at = ?, delivered_at = NULL, in_prompt_at = NULL,
               noted_at = NULL WHERE ${which}`,
        ).run(run.id, now, move.fromRunId, JSON.stringify(move.incidentIds));
        this.sql(
          `INSERT INTO storm_groups (run_id, service_id, first_resolved_at, last_resolved_at, created_at, members)
             VALUES (?, COALESCE((SELECT service_id FROM storm_groups WHERE run_id = ?), ?), ?, ?, ?, ?)`,
        ).run(run.id, move.fromRunId, run.incident.serviceId, moving.first, moving.last, now, moving.n);
        this.sql('UPDATE storm_groups SET members = members - ? WHERE run_id = ?').run(
          moving.n,
          move.fromRunId,
        );
        for (const job of [...birthJobs, ...move.fromJobs]) this.insertJob(job);
        return row;
      })
      .immediate();
    if (opened && queued) this.notifyQueued();
    return opened ? toRun(opened) : undefined;
  }

  async getRun(id: string): Promise<PostmortemRun | undefined> {
    const row = this.sql('SELECT * FROM runs WHERE id = ?').get(id) as RunRow | undefined;
    return row ? toRun(row) : undefined;
  }

  async runsForIncident(incidentId: string): Promise<PostmortemRun[]> {
    const rows = this.sql('SELECT * FROM runs WHERE incident_id = ? ORDER BY attempt').all(
      incidentId,
    ) as RunRow[];
    return rows.map(toRun);
  }

  async runsForIncidentNumber(incidentNumber: number): Promise<PostmortemRun[]> {
    const rows = this.sql('SELECT * FROM runs WHERE incident_number = ? ORDER BY created_at, attempt').all(
      incidentNumber,
    ) as RunRow[];
    return rows.map(toRun);
  }

  async recentRuns(limit: number, filter: { channel?: string } = {}): Promise<PostmortemRun[]> {
    const channel = filter.channel ?? null;
    const rows = this.sql(
      'SELECT * FROM runs WHERE ? IS NULL OR channel = ? ORDER BY created_at DESC, attempt DESC LIMIT ?',
    ).all(channel, channel, limit) as RunRow[];
    return rows.map(toRun);
  }

  async runsInStates(states: readonly RunState[], limit: number): Promise<PostmortemRun[]> {
    const rows = this.sql(
      `SELECT * FROM runs WHERE state IN (${states.map(() => '?').join(', ')}) ORDER BY created_at LIMIT ?`,
    ).all(...states, limit) as RunRow[];
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
    const { sets, values } = patchAssignments(patch, () => '?');
    const unset = onlyIfUnset.map((f) => ` AND ${PATCH_COLUMNS[f]} IS NULL`).join('');
    const write = () =>
      this.db.transaction(() => {
        const row = this.sql(
          `UPDATE runs SET state = ?, updated_at = ?${sets}
             WHERE id = ? AND state IN (${from.map(() => '?').join(', ')})${unset}
             RETURNING *`,
        ).get(to, this.now(), ...values, id, ...from) as RunRow | undefined;
        if (row) for (const job of jobs) this.insertJob(job);
        return row;
      });
    const updated = isDurablePatch(patch)
      ? await this.durably(() => write().immediate())
      : write().immediate();
    if (updated && jobs.length > 0) this.notifyQueued();
    return updated ? toRun(updated) : undefined;
  }

  // The session gate: better-sqlite3 is synchronous and one process owns the file, so an immediate
  // transaction (the write lock, taken first) makes count and write one step.
  async openGatedRun(run: NewRun, gate: SessionGate, steps: GatedSteps): Promise<PostmortemRun | undefined> {
    const now = this.now();
    let queued = false;
    const write = () =>
      this.db.transaction(() => {
        if (
          this.sql('SELECT 1 FROM runs WHERE incident_id = ? AND attempt = ?').get(
            run.incidentId,
            run.attempt,
          )
        )
          return undefined;
        const decision = decideGate(gate, this.use(gate.day, gate.liveStates, gate.queuedState), steps);
        if (!decision.step) return undefined;
        const cols = gateColumns(decision, gate, now);
        const row = this.insertRun({ ...run, state: decision.step.state }, now, cols);
        if (row) for (const job of decision.step.jobs) this.insertJob(job);
        queued = row !== undefined && decision.step.jobs.length > 0;
        return row;
      });
    // A run a person asked for is their decision: durable (see isDurablePatch).
    const opened =
      run.decidedBy !== null ? await this.durably(() => write().immediate()) : write().immediate();
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
    const { sets, values } = patchAssignments(patch, () => '?');
    let queued = false;
    const write = () =>
      this.db.transaction(() => {
        const current = this.sql('SELECT state FROM runs WHERE id = ?').get(id) as
          | { state: RunState }
          | undefined;
        if (!current || !from.includes(current.state)) return undefined;
        const decision = decideGate(gate, this.use(gate.day, gate.liveStates, gate.queuedState), steps);
        if (!decision.step) return undefined;
        const cols = gateColumns(decision, gate, now);
        const row = this.sql(
          `UPDATE runs SET state = ?, updated_at = ?, slot_day = COALESCE(?, slot_day),
               queued_at = COALESCE(?, queued_at), budget_hold = COALESCE(?, budget_hold)${sets}
             WHERE id = ? AND state IN (${from.map(() => '?').join(', ')})
             RETURNING *`,
        ).get(
          decision.step.state,
          now,
          cols.slotDay,
          cols.queuedAt,
          cols.budgetHold,
          ...values,
          id,
          ...from,
        ) as RunRow | undefined;
        if (row) for (const job of decision.step.jobs) this.insertJob(job);
        queued = row !== undefined && decision.step.jobs.length > 0;
        return row;
      });
    const updated = isDurablePatch(patch)
      ? await this.durably(() => write().immediate())
      : write().immediate();
    if (queued) this.notifyQueued();
    return updated ? toRun(updated) : undefined;
  }

  async admitQueued(
    from: RunState,
    to: RunState,
    gate: SessionGate,
    jobs: (runId: string) => NewJob[],
  ): Promise<PostmortemRun[]> {
    const admitted = this.db
      .transaction(() => {
        const room = admissionRoom(gate, this.use(gate.day, gate.liveStates, from));
        if (room === 0) return [];
        const ids = this.sql('SELECT id FROM runs WHERE state = ? ORDER BY queued_at, created_at LIMIT ?')
          .all(from, room)
          .map((r) => (r as { id: string }).id);
        const rows: RunRow[] = [];
        for (const id of ids) {
          const row = this.sql(
            'UPDATE runs SET state = ?, updated_at = ? WHERE id = ? AND state = ? RETURNING *',
          ).get(to, this.now(), id, from) as RunRow | undefined;
          if (!row) continue;
          for (const job of jobs(id)) this.insertJob(job);
          rows.push(row);
        }
        return rows;
      })
      .immediate();
    if (admitted.length > 0) this.notifyQueued();
    return admitted.map(toRun);
  }

  async sessionUse(day: number, liveStates: readonly RunState[], queuedState: RunState): Promise<SessionUse> {
    return this.use(day, liveStates, queuedState);
  }

  private use(day: number, liveStates: readonly RunState[], queuedState: RunState): SessionUse {
    return this.sql(
      `SELECT
         (SELECT COUNT(*) FROM runs WHERE slot_day = ? AND state <> 'start_failed') AS sessions,
         (SELECT COALESCE(SUM(acus_consumed), 0) FROM runs WHERE slot_day = ?) AS acus,
         (SELECT COUNT(*) FROM runs WHERE state IN (${liveStates.map(() => '?').join(', ')})) AS live,
         (SELECT COUNT(*) FROM runs WHERE state = ?) AS queued`,
    ).get(day, day, ...liveStates, queuedState) as SessionUse;
  }

  async updateRun(id: string, patch: RunPatch): Promise<void> {
    const { sets, values } = patchAssignments(patch, () => '?');
    const write = () =>
      this.sql(`UPDATE runs SET updated_at = ?${sets} WHERE id = ?`).run(this.now(), ...values, id);
    if (isDurablePatch(patch)) await this.durably(write);
    else write();
  }

  async enqueueJob(job: NewJob): Promise<void> {
    return this.batched(() => {
      this.insertJob(job);
      this.notifyQueued();
    });
  }

  private insertJob(job: NewJob): void {
    const now = this.now();
    const payload = JSON.stringify(job.payload);
    const runAt = job.runAt ?? now;
    // Most jobs have no dedupe key (every webhook queues one): a plain insert. SQLite evaluates the
    // NOT EXISTS below even when the key is NULL, which made each webhook's job insert three times dearer.
    if ((job.dedupeKey ?? null) === null) {
      this.sql(
        `INSERT INTO jobs (kind, lane, payload, dedupe_key, state, run_at, created_at)
           VALUES (?, ?, ?, NULL, 'queued', ?, ?)`,
      ).run(job.kind, job.lane, payload, runAt, now);
      return;
    }
    this.sql(
      `INSERT INTO jobs (kind, lane, payload, dedupe_key, state, run_at, created_at)
         SELECT ?, ?, ?, ?, 'queued', ?, ?
         WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE dedupe_key = ? AND state = 'queued')`,
    ).run(job.kind, job.lane, payload, job.dedupeKey, runAt, now, job.dedupeKey);
  }

  /**
   * Grouped (see `batched()`), and answered once the group is committed: a job starts only on a claim
   * that is in the file, so a job that crashes the process still counts the attempt (and is given up
   * after its last), and a claim lost with its group (a disk error: see fail()) never runs.
   */
  async claimJob(now: number, leaseUntil: number): Promise<Job | undefined> {
    // An idle worker's look reads, and takes no write lock (nor opens a group) when there is nothing to do.
    if (!this.sql(`SELECT 1 FROM jobs j WHERE ${DUE_JOB} LIMIT 1`).get(now)) return undefined;
    const job = this.batched(() => this.claimNext(now, leaseUntil));
    if (job) await this.groupCommitted();
    return job;
  }

  private claimNext(now: number, leaseUntil: number): Job | undefined {
    const row = this.sql(
      `UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_until = ?, locked_by = ?
         WHERE state = 'queued' AND id = (
           SELECT j.id FROM jobs j
           WHERE ${DUE_JOB}
           ORDER BY j.run_at, j.id
           LIMIT 1)
         RETURNING id, kind, lane, payload, attempts, failures, created_at`,
    ).get(leaseUntil, this.ownerId, now) as
      | {
          id: number;
          kind: Job['kind'];
          lane: string;
          payload: string;
          attempts: number;
          failures: number;
          created_at: number;
        }
      | undefined;
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
    return this.batched(() => {
      this.sql(`DELETE FROM jobs WHERE id = ? AND attempts = ? AND state = 'running'`).run(
        job.id,
        job.attempts,
      );
      // Finishing a job may unblock the next one in its lane.
      this.notifyQueued();
    });
  }

  async retryJob(job: JobLease, runAt: number, error: string, options: { failed: boolean }): Promise<void> {
    return this.batched(() => {
      this.sql(
        `UPDATE jobs SET state = 'queued', run_at = ?, locked_until = NULL, locked_by = NULL, last_error = ?,
           failures = failures + ?
         WHERE id = ? AND attempts = ? AND state = 'running'`,
      ).run(runAt, error, options.failed ? 1 : 0, job.id, job.attempts);
    });
  }

  async buryJob(job: JobLease, error: string): Promise<void> {
    return this.batched(() => {
      this.sql(
        `UPDATE jobs SET state = 'dead', locked_until = NULL, locked_by = NULL, last_error = ?
           WHERE id = ? AND attempts = ? AND state = 'running'`,
      ).run(error, job.id, job.attempts);
      this.notifyQueued();
    });
  }

  async nextRunAt(now: number): Promise<number | undefined> {
    const row = this.sql(`SELECT MIN(run_at) AS at FROM jobs WHERE state = 'queued' AND run_at > ?`).get(
      now,
    ) as {
      at: number | null;
    };
    return row.at ?? undefined;
  }

  async releaseExpiredLeases(now: number): Promise<number> {
    if (!this.sql(`SELECT 1 FROM jobs WHERE state = 'running' AND locked_until < ? LIMIT 1`).get(now))
      return 0;
    return this.batched(() => {
      return this.sql(
        `UPDATE jobs SET state = 'queued', locked_until = NULL, locked_by = NULL
         WHERE state = 'running' AND locked_until < ?`,
      ).run(now).changes;
    });
  }

  async renewJobLeases(jobs: readonly JobLease[], until: number): Promise<JobLease[]> {
    return this.batched(() => {
      const renew = this.sql(
        `UPDATE jobs SET locked_until = ? WHERE id = ? AND attempts = ? AND state = 'running'`,
      );
      return this.db.transaction(() =>
        jobs
          .filter((j) => renew.run(until, j.id, j.attempts).changes === 1)
          .map((j) => ({ id: j.id, attempts: j.attempts })),
      )();
    });
  }

  async takeChannelSlot(channel: string, callKey: string, now: number, intervalMs: number): Promise<number> {
    return this.db
      .transaction(() => {
        const row = this.sql(
          'SELECT next_free, last_call, blocked_until FROM channel_pacing WHERE channel = ?',
        ).get(channel) as { next_free: number; last_call: number | null; blocked_until: number } | undefined;
        const held = this.sql('SELECT slot FROM channel_reservations WHERE call_key = ? AND channel = ?').get(
          callKey,
          channel,
        ) as { slot: number } | undefined;
        const pace = row
          ? { nextFree: row.next_free, lastCall: row.last_call, blockedUntil: row.blocked_until }
          : UNPACED;
        const decision = paceCall(pace, held?.slot ?? null, now, intervalMs);
        if (!row || !samePace(pace, decision.pace)) {
          this.sql(
            `INSERT INTO channel_pacing (channel, next_free, last_call, blocked_until) VALUES (?, ?, ?, ?)
             ON CONFLICT (channel) DO UPDATE SET next_free = excluded.next_free, last_call = excluded.last_call`,
          ).run(channel, decision.pace.nextFree, decision.pace.lastCall, decision.pace.blockedUntil);
        }
        if (decision.reservation === null) {
          this.sql('DELETE FROM channel_reservations WHERE call_key = ?').run(callKey);
        } else if (decision.reservation !== held?.slot) {
          this.sql('DELETE FROM channel_reservations WHERE slot < ?').run(now - STALE_RESERVATION_MS);
          this.sql(
            `INSERT INTO channel_reservations (call_key, channel, slot) VALUES (?, ?, ?)
             ON CONFLICT (call_key) DO UPDATE SET channel = excluded.channel, slot = excluded.slot`,
          ).run(callKey, channel, decision.reservation);
        }
        return decision.dueAt;
      })
      .immediate();
  }

  async blockChannel(channel: string, until: number): Promise<void> {
    this.sql(
      `INSERT INTO channel_pacing (channel, blocked_until) VALUES (?, ?)
       ON CONFLICT (channel) DO UPDATE SET blocked_until = max(blocked_until, excluded.blocked_until)`,
    ).run(channel, until);
  }

  async tryLease(name: string, owner: string, now: number, until: number): Promise<boolean> {
    const row = this.sql(
      `INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
       WHERE leases.owner = excluded.owner OR leases.expires_at <= ?
       RETURNING owner`,
    ).get(name, owner, until, now);
    return row !== undefined;
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    this.sql('DELETE FROM leases WHERE name = ? AND owner = ?').run(name, owner);
  }

  async countJobs(): Promise<{ queued: number; running: number; dead: number }> {
    const rows = this.sql('SELECT state, COUNT(*) AS n FROM jobs GROUP BY state').all() as {
      state: string;
      n: number;
    }[];
    const count = (s: string) => rows.find((r) => r.state === s)?.n ?? 0;
    return { queued: count('queued'), running: count('running'), dead: count('dead') };
  }

  async listJobs(filter: { state?: JobState; limit?: number } = {}): Promise<JobRecord[]> {
    const limit = jobListLimit(filter.limit);
    const rows = (
      filter.state
        ? this.sql(`SELECT ${JOB_RECORD_COLUMNS} FROM jobs WHERE state = ? ORDER BY id LIMIT ?`).all(
            filter.state,
            limit,
          )
        : this.sql(`SELECT ${JOB_RECORD_COLUMNS} FROM jobs ORDER BY id LIMIT ?`).all(limit)
    ) as JobRecordRow[];
    return rows.map(toJobRecord);
  }

  async stats(): Promise<StoreStats> {
    const read = this.db.transaction(() => {
      const oldest = this.sql(`SELECT MIN(created_at) AS at FROM jobs WHERE state = 'queued'`).get() as {
        at: number | null;
      };
      const runs = this.sql('SELECT state, COUNT(*) AS n FROM runs GROUP BY state').all() as {
        state: RunState;
        n: number;
      }[];
      const acus = this.sql('SELECT COALESCE(SUM(acus_consumed), 0) AS total FROM runs').get() as {
        total: number;
      };
      return { oldest: oldest.at, runs, acus: acus.total };
    });
    const { oldest, runs, acus } = read();
    return {
      jobs: await this.countJobs(),
      oldestQueuedJobAt: oldest,
      runs: Object.fromEntries(runs.map((r) => [r.state, r.n])),
      acusConsumed: acus,
    };
  }

  async getJob(id: number): Promise<JobRecord | undefined> {
    const row = this.sql(`SELECT ${JOB_RECORD_COLUMNS} FROM jobs WHERE id = ?`).get(id) as
      | JobRecordRow
      | undefined;
    return row ? toJobRecord(row) : undefined;
  }

  async reviveDeadJobs(which: readonly number[] | 'all'): Promise<number[]> {
    const now = this.now();
    const revive = this.sql(
      `UPDATE jobs SET state = 'queued', run_at = ?, failures = 0, locked_until = NULL, locked_by = NULL
       WHERE state = 'dead' AND id = ? RETURNING id`,
    );
    const ids = await this.durably(() =>
      this.db.transaction(() => {
        const candidates =
          which === 'all'
            ? (
                this.sql(`SELECT id FROM jobs WHERE state = 'dead' ORDER BY id`).all() as { id: number }[]
              ).map((r) => r.id)
            : [...which];
        return candidates.filter((id) => revive.get(now, id) !== undefined);
      })(),
    );
    if (ids.length > 0) this.notifyQueued();
    return ids;
  }

  async discardDeadJob(id: number): Promise<boolean> {
    return this.durably(
      () => this.sql(`DELETE FROM jobs WHERE id = ? AND state = 'dead'`).run(id).changes === 1,
    );
  }

  async purgeBefore(
    cutoff: number,
  ): Promise<{ events: number; jobs: number; incidents: number; evidence: number }> {
    const counts = this.db.transaction(() => ({
      events: this.sql('DELETE FROM events WHERE received_at < ?').run(cutoff).changes,
      jobs: this.sql(`DELETE FROM jobs WHERE state = 'dead' AND created_at < ?`).run(cutoff).changes,
      incidents: this.sql(
        'DELETE FROM incidents WHERE updated_at < ? AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.incident_id = incidents.id)',
      ).run(cutoff).changes,
      evidence: this.sql('UPDATE runs SET evidence = NULL WHERE created_at < ? AND evidence IS NOT NULL').run(
        cutoff,
      ).changes,
    }))();
    // Give the freed pages back to the file system (auto_vacuum is INCREMENTAL: see the constructor).
    this.commitBatch();
    this.db.pragma('incremental_vacuum');
    return counts;
  }

  async close(): Promise<void> {
    if (!this.db.open || this.closing) return;
    this.closing = true;
    clearInterval(this.renewal);
    this.commitBatch();
    if (this.pendingEvents.length > 0) this.flushEvents();
    // Every caller waiting for an fsync gets its answer before the file is closed (on a failed store
    // synced() refuses at once, but an fsync may still be under way on the descriptor).
    if (this.walFd !== undefined) {
      await this.synced().catch(() => {});
      await this.syncInFlight;
    }
    // Before the last writes: this connection's close is then the file's last, which checkpoints the WAL.
    await this.checkpointer?.close();
    // A failed store writes nothing more: the next start on this host takes the file over, as after a crash.
    if (!this.tool && !this.failure)
      this.durable(() => this.sql('DELETE FROM store_owner WHERE owner = ?').run(this.ownerId));
    if (this.walFd !== undefined) closeSync(this.walFd);
    this.walFd = undefined;
    this.db.close();
    const sharing = OPEN_IN_PROCESS.get(this.fileKey);
    sharing?.delete(this);
    if (sharing?.size === 0) OPEN_IN_PROCESS.delete(this.fileKey);
  }
}

const OWNERSHIP_TTL_MS = 30_000;
/** A job that is due and first in its lane (a lane's jobs run one at a time, in order); `?` is now. */
const DUE_JOB = `j.state = 'queued' AND j.run_at <= ?
  AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.lane = j.lane AND k.id < j.id AND k.state <> 'dead')`;
/** The bot's stores open in this process, by file: see `sharedInProcess()`. */
const OPEN_IN_PROCESS = new Map<string, Set<SqliteStore>>();

/**
 * The SQLite store failed for good and refuses every write: see `SqliteStore.fail()`. Retryable: the job
 * that meets it did nothing wrong, and runs again after the restart.
 */
export class StoreFailedError extends RetryableError {
  constructor(message: string, cause?: unknown) {
    super('store_failed', message, undefined, { cause });
  }
}

export class StoreInUseError extends AppError {
  constructor(message: string) {
    super('store_in_use', message);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
