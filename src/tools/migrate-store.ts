import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import { errorMessage } from '../errors.js';
import { PostgresStore } from '../store/postgres.js';
import { SqliteStore } from '../store/sqlite.js';

/**
 * Copies a SQLite store into a Postgres one: incidents, runs, events and the open jobs (queued; running,
 * which go back to queued; dead, kept for inspection). Run it with the bot stopped. Running it again changes
 * nothing: rows are keyed by their IDs, and every copied job is remembered in job_imports (keyed by a hash
 * of the SQLite job), so a job copied before is not queued again even after it ran and was deleted.
 *
 *   npm run migrate-store -- --from sqlite:./data/postmortem-bot.db --to postgres://user:pass@host/db
 */

export interface CopyCount {
  copied: number;
  alreadyThere: number;
}

export interface MigrateStoreResult {
  incidents: CopyCount;
  runs: CopyCount;
  events: CopyCount;
  jobs: CopyCount;
}

export class MigrateStoreError extends Error {}

export function parseArgs(argv: readonly string[]): { from: string; to: string } {
  const value = (name: string) => {
    const i = argv.indexOf(name);
    const inline = argv.find((a) => a.startsWith(`${name}=`));
    return inline ? inline.slice(name.length + 1) : i >= 0 ? argv[i + 1] : undefined;
  };
  const from = value('--from');
  const to = value('--to');
  const usage =
    'usage: npm run migrate-store -- --from sqlite:./data/postmortem-bot.db --to postgres://user:pass@host:5432/db';
  if (!from?.startsWith('sqlite:') || from.length === 'sqlite:'.length) {
    throw new MigrateStoreError(`--from must be sqlite:<path of the bot's SQLite file>\n${usage}`);
  }
  if (!to || !/^postgres(ql)?:\/\//.test(to) || !URL.canParse(to)) {
    throw new MigrateStoreError(`--to must be a postgres:// or postgresql:// URL\n${usage}`);
  }
  return { from, to };
}

const CHUNK = 500;

export async function migrateStore(options: { from: string; to: string }): Promise<MigrateStoreResult> {
  const path = options.from.slice('sqlite:'.length);
  if (!existsSync(path)) throw new MigrateStoreError(`${path}: no such SQLite file`);
  // Opening it as the bot does: refused while a bot owns the file, brings its schema up to date, and
  // requeues the jobs a stopped bot left running.
  let owner: SqliteStore;
  try {
    owner = new SqliteStore({ path });
  } catch (err) {
    throw new MigrateStoreError(`${errorMessage(err)} (stop the bot before migrating)`);
  }
  const source = new Database(path, { readonly: true });
  const target = new PostgresStore({ url: options.to, poolSize: 1 });
  const client = new pg.Client({ connectionString: options.to });
  try {
    // Brings the Postgres schema to the same version.
    await target.ping();
    await client.connect();
    await client.query('BEGIN');
    const copy = async (table: string, rows: unknown[]): Promise<CopyCount> => {
      let copied = 0;
      for (let i = 0; i < rows.length; i += CHUNK) {
        const chunk = rows.slice(i, i + CHUNK);
        const r = await client.query(
          `INSERT INTO ${table} SELECT * FROM json_populate_recordset(NULL::${table}, $1) ON CONFLICT DO NOTHING`,
          [JSON.stringify(chunk)],
        );
        copied += r.rowCount ?? 0;
      }
      return { copied, alreadyThere: rows.length - copied };
    };
    const incidents = await copy('incidents', source.prepare('SELECT * FROM incidents').all());
    const events = await copy('events', source.prepare('SELECT * FROM events ORDER BY received_at').all());
    const runs = await copy('runs', source.prepare('SELECT * FROM runs ORDER BY created_at').all());

    const openJobs = source
      .prepare(`SELECT * FROM jobs WHERE state IN ('queued', 'running', 'dead') ORDER BY id`)
      .all() as {
      id: number;
      kind: string;
      lane: string;
      payload: string;
      dedupe_key: string | null;
      state: string;
      run_at: number;
      attempts: number;
      last_error: string | null;
      created_at: number;
    }[];
    let jobsCopied = 0;
    const now = Date.now();
    for (const job of openJobs) {
      const r = await client.query(
        `WITH imported AS (
           INSERT INTO job_imports (source_key, job_id, imported_at)
           VALUES ($1, nextval(pg_get_serial_sequence('jobs', 'id')), $2)
           ON CONFLICT (source_key) DO NOTHING
           RETURNING job_id)
         INSERT INTO jobs (id, kind, lane, payload, dedupe_key, state, run_at, attempts, last_error, created_at)
         SELECT job_id, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM imported`,
        [
          jobImportKey(job),
          now,
          job.kind,
          job.lane,
          job.payload,
          job.dedupe_key,
          job.state === 'dead' ? 'dead' : 'queued',
          job.run_at,
          job.attempts,
          job.last_error,
          job.created_at,
        ],
      );
      jobsCopied += r.rowCount ?? 0;
    }
    // Replicas already running on this database pick the jobs up at once.
    await client.query(`SELECT pg_notify('postmortem_bot_jobs', 'migrate-store')`);
    await client.query('COMMIT');
    return {
      incidents,
      events,
      runs,
      jobs: { copied: jobsCopied, alreadyThere: openJobs.length - jobsCopied },
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    await client.end().catch(() => {});
    await target.close();
    source.close();
    await owner.close();
  }
}

/** A SQLite job's identity: its ID within that file plus what it is, so another file's job 7 is not this one. */
function jobImportKey(job: { id: number; kind: string; lane: string; payload: string; created_at: number }) {
  const hash = createHash('sha256')
    .update(JSON.stringify([job.id, job.kind, job.lane, job.payload, job.created_at]))
    .digest('hex');
  return `sqlite:${hash}`;
}

/** Where the copy goes, without the password. */
function describeTarget(url: string): string {
  const u = new URL(url);
  return `${u.host}${u.pathname}`;
}

async function main(argv: readonly string[]): Promise<number> {
  try {
    const args = parseArgs(argv);
    const result = await migrateStore(args);
    process.stdout.write(`Copied ${args.from} to ${describeTarget(args.to)}:\n`);
    for (const [what, c] of Object.entries(result)) {
      process.stdout.write(`  ${what}: ${c.copied} copied, ${c.alreadyThere} already there\n`);
    }
    return 0;
  } catch (err) {
    process.stderr.write(`migrate-store: ${errorMessage(err)}\n`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
