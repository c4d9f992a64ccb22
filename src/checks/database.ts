import { accessSync, constants, existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { DatabaseConfig } from '../config/config.js';
import { describeNetworkFailure } from '../network-errors.js';
import { SCHEMA_VERSION } from '../store/migrations.js';
import { type CheckResult, failed, ok } from './check.js';

const CHECK = 'Database';

/**
 * The database is reachable and its schema is one this version of the bot knows, read-only: SQLite is
 * opened read-only (a running bot may own the file), Postgres with one short connection. Migrations still
 * to apply are fine (the bot applies them at start-up); a schema newer than the code is not.
 */
export async function checkDatabase(database: DatabaseConfig): Promise<CheckResult> {
  return database.kind === 'sqlite' ? checkSqlite(database.path) : checkPostgres(database.url);
}

function schemaResult(where: string, version: number | null): CheckResult {
  if (version === null)
    return ok(CHECK, `${where} is reachable and empty: the bot creates its schema at start-up`);
  if (version > SCHEMA_VERSION) {
    return failed(
      CHECK,
      'DATABASE_URL',
      `${where} has schema version ${version}, newer than this bot's ${SCHEMA_VERSION}`,
      'run the version of the bot that migrated it (or newer): migrations only go forward',
    );
  }
  const pending = SCHEMA_VERSION - version;
  return ok(
    CHECK,
    `${where} is reachable, schema version ${version}${pending > 0 ? ` (${pending} migration${pending === 1 ? '' : 's'} to apply at the next start)` : ' (current)'}`,
  );
}

function checkSqlite(path: string): CheckResult {
  const where = `SQLite ${path}`;
  if (!existsSync(path)) {
    // The bot creates the file and its folder at start-up: the nearest folder that exists must be writable.
    let dir = dirname(resolve(path));
    while (!existsSync(dir)) dir = dirname(dir);
    try {
      accessSync(dir, constants.W_OK);
      return ok(CHECK, `${where} does not exist yet; the bot creates it at start-up (${dir} is writable)`);
    } catch (err) {
      return failed(
        CHECK,
        'DATABASE_URL',
        `${where} does not exist and ${dir} is not writable (${(err as NodeJS.ErrnoException).code})`,
        'point DATABASE_URL at a folder this user may write (in Docker, leave it unset: the image uses its /data volume)',
      );
    }
  }
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true, timeout: 2000 });
    const table = db
      .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
      .get();
    const version = table
      ? ((db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null }).v ??
        null)
      : null;
    return schemaResult(where, version);
  } catch (err) {
    return failed(
      CHECK,
      'DATABASE_URL',
      `cannot read ${where} (${(err as Error).message})`,
      'check the path and its permissions',
    );
  } finally {
    db?.close();
  }
}

async function checkPostgres(url: string): Promise<CheckResult> {
  const u = new URL(url);
  const where = `Postgres ${u.host}${u.pathname}`;
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query<{ present: boolean }>(
      "SELECT to_regclass('schema_migrations') IS NOT NULL AS present",
    );
    if (!rows[0]?.present) return schemaResult(where, null);
    const version = await client.query<{ v: number | null }>(
      'SELECT MAX(version) AS v FROM schema_migrations',
    );
    return schemaResult(where, version.rows[0]?.v ?? null);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    // Postgres's own refusals carry a SQLSTATE (28P01 wrong password, 3D000 no such database, …).
    const text =
      e.code && /^[0-9A-Z]{5}$/.test(e.code)
        ? `${e.message} (SQLSTATE ${e.code})`
        : describeNetworkFailure(err, `http://${u.host}`, 5000).text;
    return failed(
      CHECK,
      'DATABASE_URL',
      `cannot use ${where}: ${text}`,
      'check the host, port, database name and credentials in DATABASE_URL, and that Postgres accepts connections from here',
    );
  } finally {
    await client.end().catch(() => {});
  }
}
