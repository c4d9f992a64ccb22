import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** How often the checkpointer looks for new commits to copy into the database file. */
export const CHECKPOINT_INTERVAL_MS = 200;

/**
 * The worker's code (a script, so it runs the same from TypeScript sources and from the build). Its own
 * connection to the file checkpoints the WAL whenever another connection has committed since the last
 * look (`PRAGMA data_version` changes), in PASSIVE mode: it never waits for, nor blocks, the bot's
 * connection; the copy and the fsyncs run on this thread. It answers 'close' by closing its connection.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path, { timeout: 1000, fileMustExist: true });
// Copying frames goes around the page cache: a small one is enough.
db.pragma('cache_size = -512');
db.pragma('synchronous = NORMAL');
let seen;
const timer = setInterval(() => {
  try {
    const version = db.pragma('data_version', { simple: true });
    if (version === seen) return;
    const [result] = db.pragma('wal_checkpoint(PASSIVE)');
    // Busy: another connection was checkpointing (the bot's own, bounding the WAL). Not caught up: a
    // reader still needs older frames. Either way the next look tries again.
    if (result && result.busy === 0 && result.checkpointed === result.log) seen = version;
  } catch (err) {
    // SQLITE_BUSY (an operator's tool holds a lock) and the like: the next look tries again.
    parentPort.postMessage({ failed: String(err && err.message) });
  }
}, workerData.intervalMs);
parentPort.on('message', (message) => {
  if (message !== 'close') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Checkpoints a SQLite file's WAL on a thread of its own. SQLite's automatic checkpoint runs inside the
 * commit that fills the WAL past 1000 pages: that commit copies about 4 MiB into the database file and
 * fsyncs it, on the event loop, about 10 ms each time (several times a second under a webhook flood), while
 * every request in flight waits. With the automatic checkpoint off on the bot's connection, this thread
 * does the same work beside it.
 *
 * Nothing changes for durability: a checkpoint syncs the WAL before it copies and the database after, on
 * whichever connection runs it. What this thread cannot do alone is restart the WAL: SQLite starts it over
 * from its beginning only when a write begins after a checkpoint has copied every frame, and under a
 * steady stream of commits each pass leaves the frames committed meanwhile behind, so the WAL would grow
 * for as long as the stream lasts. Its owner bounds it (SqliteStore's `boundWal`). If the thread fails,
 * the owner turns SQLite's own checkpoint back on (`onFailure`).
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  private exited = false;
  private readonly exit: Promise<void>;

  constructor(
    path: string,
    private readonly onFailure: (err: Error) => void,
    private readonly onBusy: (message: string) => void = () => {},
    intervalMs = CHECKPOINT_INTERVAL_MS,
  ) {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { path, module: createRequire(import.meta.url).resolve('better-sqlite3'), intervalMs },
      // Its heap holds one connection and a timer.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
    });
    // The process does not stay up for it: close() ends it, and so does the process's exit.
    this.worker.unref();
    this.worker.on('message', (m: { failed?: string }) => {
      if (m.failed) this.onBusy(m.failed);
    });
    let failed = false;
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      this.onFailure(err);
    };
    this.worker.on('error', fail);
    this.exit = new Promise((resolve) => {
      this.worker.once('exit', (code) => {
        this.exited = true;
        if (!this.closing) fail(new Error(`the checkpoint thread exited (code ${code})`));
        resolve();
      });
    });
  }

  private closing = false;

  /** Closes the thread's connection and ends it: the owner's close is then the last connection's. */
  async close(): Promise<void> {
    if (this.closing) return this.exit;
    this.closing = true;
    if (!this.exited) {
      // Waited for: a process with nothing else to do (a tool finishing) would otherwise exit meanwhile.
      this.worker.ref();
      this.worker.postMessage('close');
    }
    await this.exit;
  }
}
