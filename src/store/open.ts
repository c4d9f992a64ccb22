import type { Logger } from 'pino';
import type { DatabaseConfig } from '../config/config.js';
import { PostgresStore } from './postgres.js';
import { SqliteStore } from './sqlite.js';
import type { Store } from './store.js';

/** The store DATABASE_URL selects: SQLite for one process, Postgres for any number of replicas. */
export function openStore(
  database: DatabaseConfig,
  deps: { now: () => number; logger: Logger; tool?: boolean; onFailure?: (err: Error) => void },
): Store {
  switch (database.kind) {
    case 'sqlite':
      // A tool (npm run jobs) works next to the bot that owns the file; see SqliteStoreOptions.tool.
      return new SqliteStore({
        path: database.path,
        now: deps.now,
        tool: deps.tool,
        logger: deps.logger,
        onFailure: deps.onFailure,
      });
    case 'postgres':
      return new PostgresStore({
        url: database.url,
        poolSize: database.poolSize,
        now: deps.now,
        logger: deps.logger,
      });
  }
}
