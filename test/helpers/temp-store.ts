import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { Job, Store } from '../../src/store/store.js';

/** A test's clock: every part reads it, the test moves it. */
export class Clock {
  constructor(public ms = Date.UTC(2024, 0, 1)) {}
  readonly now = (): number => this.ms;
  advance(ms: number): number {
    this.ms += ms;
    return this.ms;
  }
}

const opened: { store: SqliteStore; dir: string }[] = [];

/**
 * Where the temp files go: a memory-backed file system when there is one, so the store's fsyncs (it
 * commits with synchronous=FULL) cost nothing and a unit test stays fast; the store is the same.
 */
export const TEMP_ROOT = ((): string => {
  try {
    accessSync('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
})();

/** A real SQLite store in a fresh temp file, on the test's clock. Close them all with closeTempStores. */
export function tempStore(clock: Clock): SqliteStore {
  const dir = mkdtempSync(join(TEMP_ROOT, 'pm-unit-'));
  const store = new SqliteStore({ path: join(dir, 'bot.db'), now: clock.now });
  opened.push({ store, dir });
  return store;
}

export async function closeTempStores(): Promise<void> {
  for (const { store, dir } of opened.splice(0)) {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Takes every queued job off the queue (due or not), in the order the queue hands them out, marking each
 * done: what the steps under test queued, read through the Store interface. The unit tests run the jobs
 * they care about themselves.
 */
export async function takeJobs(store: Store): Promise<Job[]> {
  const jobs: Job[] = [];
  for (;;) {
    const job = await store.claimJob(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    if (!job) return jobs;
    await store.completeJob(job);
    jobs.push(job);
  }
}

/** A job as the tests compare it: its kind, and the thread reply's kind for thread replies. */
export const jobName = (job: Job): string =>
  job.kind === 'thread_reply' ? `thread_reply:${String(job.payload.reply)}` : job.kind;

/** The names of the jobs queued since the last look, taking them off the queue. */
export async function queuedJobNames(store: Store): Promise<string[]> {
  return (await takeJobs(store)).map(jobName);
}
