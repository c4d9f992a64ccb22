import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, fdatasync, mkdtempSync, statSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite.js';
import { WalCheckpointer } from '../../src/store/sqlite-checkpointer.js';
import { BUILT_DIR } from '../global-setup.js';
import { aRun } from '../helpers/builders.js';
import { SmallDisk } from '../helpers/small-disk.js';
import { storeContract } from './contract.js';

const setImmediateP = () => new Promise((r) => setImmediate(r));
async function waitUntil(condition: () => boolean): Promise<void> {
  for (let i = 0; !condition(); i++) {
    if (i > 2000) throw new Error('condition never held');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const received = (id: string) => ({
  id,
  type: 'incident.resolved',
  incidentId: 'Q1',
  occurredAt: '2024-01-01T00:00:00Z',
  receivedAt: 1,
  payload: '{}',
});

const stores: SqliteStore[] = [];
function open(path = join(mkdtempSync(join(tmpdir(), 'store-')), 'x', 'bot.db')) {
  const store = new SqliteStore({ path });
  stores.push(store);
  return { store, path };
}
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close().catch(() => {});
});

storeContract('SqliteStore', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'store-')), 'x', 'bot.db');
  return { open: async () => open(path).store };
});

describe('SqliteStore: one process per file', () => {
  it('requeues the running jobs of a process that died, on open', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'store-')), 'bot.db');
    // Another process opens the file, takes a job and is killed with it in hand (SIGKILL: no close).
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { SqliteStore } = await import(${JSON.stringify(pathToFileURL(join(BUILT_DIR, 'store', 'sqlite.js')).href)});
         const store = new SqliteStore({ path: ${JSON.stringify(path)} });
         await store.enqueueJob({ kind: 'sync_message', lane: 'x', payload: { n: 1 } });
         const job = await store.claimJob(Date.now(), Date.now() + 600000);
         // A job runs from the turn after its claim, once the claim is committed (JobRunner).
         await new Promise((r) => setImmediate(r));
         console.log(JSON.stringify(job));
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    expect(JSON.parse(line.toString())).toMatchObject({ kind: 'sync_message', attempts: 1 });
    child.kill('SIGKILL');
    await exited;

    const reopened = open(path).store;
    expect(await reopened.listJobs()).toEqual([
      expect.objectContaining({ kind: 'sync_message', state: 'queued', attempts: 1, payload: { n: 1 } }),
    ]);
  });

  it('a run from before prompt secrets (migration 10) has none until one is set', async () => {
    const { store, path } = open();
    const { createdAt: _c, updatedAt: _u, ...run } = aRun({ id: 'r1' });
    expect((await store.openRun(run, []))?.promptSecret).toBe('prompt-secret-of-r1');
    await store.close();
    // The database as version 9 left it: no prompt_secret column.
    const db = new Database(path);
    db.exec('ALTER TABLE runs DROP COLUMN prompt_secret; DELETE FROM schema_migrations WHERE version = 10');
    db.close();
    const reopened = open(path).store;
    expect((await reopened.getRun('r1'))?.promptSecret).toBeNull();
    await reopened.updateRun('r1', { promptSecret: 'made-on-first-prompt' });
    expect((await reopened.getRun('r1'))?.promptSecret).toBe('made-on-first-prompt');
  });

  it('refuses a file another live process owns, and takes over from a dead or departed owner', async () => {
    const { store, path } = open();
    await store.close();
    // Raw SQL on purpose: the thing under test is the claim another process leaves in the file. One from
    // another host cannot be made here any other way; the same helper stands in for other local processes.
    const setOwner = (host: string, pid: number, expiresAt: number) => {
      const db = new Database(path);
      db.prepare(
        'INSERT OR REPLACE INTO store_owner (id, owner, host, pid, expires_at) VALUES (1, ?, ?, ?, ?)',
      ).run('other', host, pid, expiresAt);
      db.close();
    };
    // Another live process on this host (our parent), its claim fresh: refused.
    setOwner(hostname(), process.ppid, Date.now() + 30_000);
    expect(() => new SqliteStore({ path })).toThrow(/is in use by another postmortem-bot \(pid \d+ on /);
    // Another host, claim fresh: refused; claim run out: taken over.
    setOwner('other-host', 1, Date.now() + 30_000);
    expect(() => new SqliteStore({ path })).toThrow(/on other-host/);
    setOwner('other-host', 1, Date.now() - 1);
    await open(path).store.close();
    // A process on this host that died without closing: taken over.
    setOwner(hostname(), 2 ** 22 + 12_345, Date.now() + 30_000);
    await open(path).store.close();
  });
});

describe('SqliteStore: which commits wait for fsync', () => {
  it('webhook events, create intents and people’s decisions do; background bookkeeping does not', async () => {
    const { store } = open();
    const durable = async (write: () => Promise<unknown>) => {
      const before = store.diskSyncs;
      await write();
      return store.diskSyncs - before;
    };
    const received = {
      id: 'e1',
      type: 'incident.resolved',
      incidentId: 'Q1',
      occurredAt: '2024-01-01T00:00:00Z',
      receivedAt: 1,
      payload: '{}',
    };
    // Deliveries arriving together share one durable group commit.
    expect(
      await durable(() =>
        Promise.all([
          store.recordEvent(received, [{ kind: 'process_event', lane: 'Q1', payload: { eventId: 'e1' } }]),
          store.recordEvent({ ...received, id: 'e2' }, []),
        ]),
      ),
    ).toBe(1);
    // Processing the event: the job's claim, the incident, the run, the job's completion.
    const job = (await store.claimJob(Date.now(), Date.now() + 60_000)) as NonNullable<
      Awaited<ReturnType<SqliteStore['claimJob']>>
    >;
    const { createdAt: _c, updatedAt: _u, ...run } = aRun({ id: 'r1' });
    expect(await durable(() => store.saveIncident(run.incident))).toBe(0);
    expect(await durable(() => store.openRun(run, [{ kind: 'sync_message', lane: 'r1', payload: {} }]))).toBe(
      0,
    );
    expect(await durable(() => store.completeJob(job))).toBe(0);
    expect(await durable(() => store.updateRun('r1', { slackTs: '1.2', channel: 'C1' }))).toBe(0);
    expect(await durable(() => store.takeChannelSlot('C1', 'k', Date.now(), 1000))).toBe(0);
    // A person's decision, and the intent written before a Devin session is created.
    expect(
      await durable(() =>
        store.transitionRun('r1', ['awaiting_approval'], 'starting', { decidedBy: 'U1', decidedAt: 1 }, []),
      ),
    ).toBe(1);
    expect(await durable(() => store.updateRun('r1', { createAttemptedAt: 2 }))).toBe(1);
    expect(
      await durable(() => store.transitionRun('r1', ['starting'], 'started', { devinStatus: 'running' }, [])),
    ).toBe(0);
    expect(
      await durable(() => store.transitionRun('r1', ['started'], 'stopped', { stoppedBy: 'U1' }, [])),
    ).toBe(1);
    // A run a person asked for is durable; one a policy opened is not.
    const {
      createdAt: _c2,
      updatedAt: _u2,
      ...manual
    } = aRun({
      id: 'r2',
      attempt: 2,
      trigger: 'manual',
      state: 'starting',
      decidedBy: 'U1',
      decidedAt: 3,
    });
    expect(await durable(() => store.openRun(manual, []))).toBe(1);
    // Everything above is there, read back through the store.
    expect((await store.getRun('r1'))?.state).toBe('stopped');
    expect(await store.countEvents()).toBe(2);
  });
});

describe("SqliteStore: a turn's background writes commit together", () => {
  // What another process (the operator's tool, a backup) sees: a second connection to the file, which
  // reads the last commit.
  const reader = (path: string) => {
    const db = new Database(path, { readonly: true });
    return {
      jobs: () => (db.prepare('SELECT COUNT(*) AS n FROM jobs').get() as { n: number }).n,
      slackTs: (id: string) =>
        (
          db.prepare('SELECT slack_ts FROM runs WHERE id = ?').get(id) as
            | { slack_ts: string | null }
            | undefined
        )?.slack_ts,
      close: () => db.close(),
    };
  };

  it("queue bookkeeping of one turn is one commit, at the turn's end; what records an outside call commits at once", async () => {
    const { store, path } = open();
    const other = reader(path);
    try {
      const commits = store.batchCommits;
      for (let i = 0; i < 5; i++) {
        await store.enqueueJob({ kind: 'sync_message', lane: `l${i}`, payload: { runId: `r${i}` } });
      }
      // Still this turn: the store reads its own writes, another connection not yet.
      expect((await store.countJobs()).queued).toBe(5);
      expect(other.jobs()).toBe(0);
      // A claim is answered once it is committed: with the five new jobs, in one commit at the turn's end.
      const job = await store.claimJob(Date.now(), Date.now() + 60_000);
      expect(other.jobs()).toBe(5);
      expect(store.batchCommits - commits).toBe(1);
      await store.completeJob(job as NonNullable<typeof job>);
      expect((await store.countJobs()).queued).toBe(4);
      expect(other.jobs()).toBe(5);
      await setImmediateP();
      expect(other.jobs()).toBe(4);
      expect(store.batchCommits - commits).toBe(2);

      // A Slack message's ts, written while a group is open, is committed once the call returns.
      const { createdAt: _c, updatedAt: _u, ...run } = aRun({ id: 'r1' });
      await store.openRun(run, []);
      await store.enqueueJob({ kind: 'sync_message', lane: 'r1', payload: { runId: 'r1' } });
      await store.updateRun('r1', { slackTs: '1700000000.000100', channel: 'C1' });
      expect(other.slackTs('r1')).toBe('1700000000.000100');
      expect(other.jobs()).toBe(5);
    } finally {
      other.close();
    }
  });

  it('a job that kills its process in the turn it starts still has its attempt counted', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'store-')), 'bot.db');
    const url = (file: string) => JSON.stringify(pathToFileURL(join(BUILT_DIR, file)).href);
    // The runner claims the job and starts it; the handler dies at once (an OOM, a native crash), before
    // anything else could commit the turn's writes.
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { SqliteStore } = await import(${url('store/sqlite.js')});
         const { JobRunner } = await import(${url('jobs/runner.js')});
         const { pino } = await import('pino');
         const store = new SqliteStore({ path: ${JSON.stringify(path)} });
         await store.enqueueJob({ kind: 'sync_message', lane: 'x', payload: { n: 1 } });
         const kill = async () => { process.kill(process.pid, 'SIGKILL'); };
         new JobRunner({ store, logger: pino({ level: 'silent' }), handlers: { sync_message: kill } }).start();
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'], cwd: join(import.meta.dirname, '..', '..') },
    );
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    expect({ code, signal }).toEqual({ code: null, signal: 'SIGKILL' });
    const reopened = open(path).store;
    expect(await reopened.listJobs()).toEqual([
      expect.objectContaining({ kind: 'sync_message', state: 'queued', attempts: 1 }),
    ]);
  });
});

describe('SqliteStore: the WAL is checkpointed on a thread of its own', () => {
  /** The events in the database file alone, as a copy of it without its WAL shows: what was checkpointed. */
  const checkpointedEvents = (path: string) => {
    const copy = join(mkdtempSync(join(tmpdir(), 'copy-')), 'main-only.db');
    copyFileSync(path, copy);
    // A copy taken while the thread writes the file may be torn: no count, look again.
    let db: Database.Database;
    try {
      db = new Database(copy, { readonly: true });
      db.pragma('schema_version');
    } catch {
      return -1;
    }
    try {
      // Before the first checkpoint the file does not even hold the schema.
      if (!db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'events'").get()) return 0;
      return (db.prepare('SELECT COUNT(*) AS n FROM events').get() as { n: number }).n;
    } catch {
      return -1;
    } finally {
      db.close();
    }
  };
  const event = (n: number) => ({
    id: `e${n}`,
    type: 'incident.triggered',
    incidentId: `Q${n}`,
    occurredAt: '2024-01-01T00:00:00Z',
    receivedAt: 0,
    payload: JSON.stringify({ n, padding: 'x'.repeat(1500) }),
  });

  it('what is committed reaches the database file without a commit filling the WAL first', async () => {
    const { store, path } = open();
    // About 60 pages of WAL: SQLite's automatic checkpoint waits for 1000, inside the commit that fills them.
    await Promise.all(Array.from({ length: 150 }, (_, n) => store.recordEvent(event(n), [])));
    await waitUntil(() => checkpointedEvents(path) === 150);
    expect(await store.countEvents()).toBe(150);
  });

  it('a steady stream of commits keeps the WAL within its limit, and it starts over', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'store-')), 'bot.db');
    const store = new SqliteStore({ path, walLimitBytes: 1024 * 1024 });
    stores.push(store);
    const wal = () => statSync(`${path}-wal`).size;
    let largest = 0;
    let n = 0;
    // Commits in every turn, never a pause for the thread to catch up: about 15 MiB of WAL in all.
    while (n < 10_000) {
      await Promise.all(Array.from({ length: 50 }, () => store.recordEvent(event(n++), [])));
      largest = Math.max(largest, wal());
    }
    expect(await store.countEvents()).toBe(10_000);
    expect(store.walCheckpoints).toBeGreaterThan(0);
    // The limit, plus a commit or two past it.
    expect(largest).toBeLessThan(2 * 1024 * 1024);
  });

  it('its connection is closed before the store closes: the WAL is gone with the last connection', async () => {
    const { store, path } = open();
    await Promise.all(Array.from({ length: 100 }, (_, n) => store.recordEvent(event(n), [])));
    expect(existsSync(`${path}-wal`)).toBe(true);
    await store.close();
    expect(existsSync(`${path}-wal`)).toBe(false);
    expect(checkpointedEvents(path)).toBe(100);
  });

  it("a thread that cannot open the file reports it (its owner then turns SQLite's own checkpoint back on)", async () => {
    let reported: (err: Error) => void = () => {};
    const failed = new Promise<Error>((resolve) => {
      reported = resolve;
    });
    const checkpointer = new WalCheckpointer(join(tmpdir(), 'no-such-dir', 'bot.db'), reported);
    expect((await failed).message).toMatch(/unable to open|directory does not exist|no such file/i);
    await checkpointer.close();
  });
});

describe('SqliteStore: the intake answers after the fsync, which runs off the main thread', () => {
  it('an event is not acknowledged until the WAL is fsynced; events meanwhile share the next fsync', async () => {
    // The stand-in for fs.fsync holds each call until the test lets it finish (with a real fsync).
    const held: (() => void)[] = [];
    let holding = true;
    const path = join(mkdtempSync(join(tmpdir(), 'store-')), 'bot.db');
    const store = new SqliteStore({
      path,
      fsync: (fd, done) => (holding ? held.push(() => fdatasync(fd, done)) : fdatasync(fd, done)),
    });
    stores.push(store);
    const answered: string[] = [];
    const first = store.recordEvent(received('e1'), []).then((r) => answered.push(`e1 ${r}`));
    await waitUntil(() => held.length === 1);
    // Committed (another connection reads it), but not yet on disk: not acknowledged.
    const reader = new Database(path, { readonly: true });
    expect(reader.prepare('SELECT id FROM events').all()).toEqual([{ id: 'e1' }]);
    await setImmediateP();
    expect(answered).toEqual([]);
    // Two more arrive while that fsync runs: they wait for it to finish, then make one batch, one commit and
    // one fsync.
    const later = Promise.all([store.recordEvent(received('e2'), []), store.recordEvent(received('e1'), [])]);
    await new Promise((r) => setTimeout(r, 50));
    const count = () => (reader.prepare('SELECT COUNT(*) AS n FROM events').get() as { n: number }).n;
    expect(count()).toBe(1);
    held.shift()?.();
    await first;
    expect(answered).toEqual(['e1 recorded']);
    await waitUntil(() => held.length === 1);
    expect(count()).toBe(2);
    const syncs = store.diskSyncs;
    held.shift()?.();
    expect(await later).toEqual(['recorded', 'duplicate']);
    expect(store.diskSyncs).toBe(syncs);
    reader.close();
    holding = false;
  });

  it('an fsync that fails fails the store for good: every write is refused until a restart', async () => {
    const failing = { on: false };
    const failures: Error[] = [];
    const path = join(mkdtempSync(join(tmpdir(), 'store-')), 'bot.db');
    const store = new SqliteStore({
      path,
      fsync: (fd, done) =>
        failing.on
          ? done(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }))
          : fdatasync(fd, done),
      onFailure: (err) => failures.push(err),
    });
    stores.push(store);
    expect(await store.recordEvent(received('e0'), [{ kind: 'sync_message', lane: 'q', payload: {} }])).toBe(
      'recorded',
    );
    failing.on = true;
    // The delivery waiting for the fsync is answered 503.
    await expect(store.recordEvent(received('e1'), [])).rejects.toMatchObject({ code: 'store_failed' });
    expect(failures).toHaveLength(1);
    expect(failures[0]?.message).toMatch(/an fsync of the WAL failed \(EIO: i\/o error, fsync\)/);
    // The disk answers again, but what it lost is unknown (Linux may drop the unsynced pages and report
    // the next fsync as done): nothing is acknowledged, and no background write is taken, any more.
    failing.on = false;
    await expect(store.recordEvent(received('e1'), [])).rejects.toMatchObject({ code: 'store_failed' });
    await expect(store.recordEvent(received('e2'), [])).rejects.toMatchObject({ code: 'store_failed' });
    await expect(store.enqueueJob({ kind: 'sync_message', lane: 'a', payload: {} })).rejects.toMatchObject({
      code: 'store_failed',
    });
    // The job e0 queued is not claimed: the claim would be a write.
    await expect(store.claimJob(Date.now(), Date.now() + 60_000)).rejects.toMatchObject({
      code: 'store_failed',
    });
    // Readiness fails; reads still answer.
    await expect(store.ping()).rejects.toMatchObject({ code: 'store_failed' });
    expect(await store.getEvent('e0')).toMatchObject({ id: 'e0' });
    expect(await store.countJobs()).toMatchObject({ queued: 1, running: 0 });
    expect(failures).toHaveLength(1);
    await store.close();

    // The restart: a new process takes the file over (the failed one left it as a crash would) and
    // goes on from what is on disk.
    const restarted = new SqliteStore({ path });
    stores.push(restarted);
    expect(await restarted.recordEvent(received('e2'), [])).toBe('recorded');
    expect(await restarted.countEvents()).toBe(3);
    expect(await restarted.claimJob(Date.now(), Date.now() + 60_000)).toMatchObject({ lane: 'q' });
  });
});

describe('SqliteStore: after a failed fsync no later one is trusted', () => {
  it('a delivery committed while the failing fsync ran is not acknowledged by the next one', async () => {
    // The first fsync (a durable write's: the operator discarding a job) is held, then fails; a webhook
    // committed meanwhile waits for the next fsync, which would succeed.
    const held: ((err: NodeJS.ErrnoException | null) => void)[] = [];
    let holding = true;
    const path = join(mkdtempSync(join(tmpdir(), 'store-')), 'bot.db');
    const store = new SqliteStore({
      path,
      fsync: (fd, done) => (holding ? held.push(done) : fdatasync(fd, done)),
    });
    stores.push(store);
    const discarded = store.discardDeadJob(12345);
    await waitUntil(() => held.length === 1);
    holding = false;
    const answer = store.recordEvent(received('e1'), []);
    // e1's batch is committed (another connection reads it) and waits for the fsync under way to end.
    const reader = new Database(path, { readonly: true });
    await waitUntil(() => reader.prepare('SELECT 1 FROM events WHERE id = ?').get('e1') !== undefined);
    reader.close();
    held.shift()?.(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
    await expect(discarded).rejects.toMatchObject({ code: 'store_failed' });
    await expect(answer).rejects.toMatchObject({ code: 'store_failed' });
  });
});

describe('SqliteStore on a disk that fills up', () => {
  // Each test on a small tmpfs of its own (see SmallDisk), unmounted whatever happens.
  const onSmallDisk = (name: string, body: (disk: SmallDisk) => Promise<void>) =>
    it.skipIf(!SmallDisk.available())(name, async () => {
      const disk = SmallDisk.mount('4m');
      try {
        await body(disk);
      } finally {
        for (const s of stores.splice(0)) await s.close().catch(() => {});
        disk.unmount();
      }
    });
  const bigJobs = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      kind: 'sync_message' as const,
      lane: `big-${i}`,
      payload: { blob: 'x'.repeat(100_000) },
    }));

  onSmallDisk(
    'a group of background writes the disk cannot take fails the store; nothing answered before is lost',
    async (disk) => {
      const path = join(disk.dir, 'bot.db');
      const failures: Error[] = [];
      const store = new SqliteStore({ path, onFailure: (err) => failures.push(err) });
      stores.push(store);
      expect(await store.recordEvent(received('e1'), [])).toBe('recorded');
      const free = disk.fill();
      // One turn's background writes: more than the WAL has room for, and the disk has none.
      const enqueued = await Promise.allSettled(bigJobs(30).map((job) => store.enqueueJob(job)));
      await setImmediateP();
      expect(failures).toHaveLength(1);
      expect(failures[0]).toMatchObject({ code: 'store_failed' });
      expect(failures[0]?.message).toMatch(/database or disk is full/);
      // Some of the group's writes had been answered: the store refuses everything rather than go on as
      // if they were kept.
      expect(enqueued.some((r) => r.status === 'fulfilled')).toBe(true);
      await expect(store.enqueueJob({ kind: 'sync_message', lane: 'b', payload: {} })).rejects.toMatchObject({
        code: 'store_failed',
      });
      await expect(store.recordEvent(received('e2'), [])).rejects.toMatchObject({ code: 'store_failed' });
      await expect(store.ping()).rejects.toMatchObject({ code: 'store_failed' });
      await store.close();

      // Space again, and a restart: the acknowledged event is there, the lost group is gone as a whole.
      free();
      const restarted = new SqliteStore({ path });
      stores.push(restarted);
      expect(await restarted.getEvent('e1')).toMatchObject({ id: 'e1' });
      expect(await restarted.countJobs()).toMatchObject({ queued: 0 });
      expect(await restarted.recordEvent(received('e2'), [])).toBe('recorded');
    },
  );

  onSmallDisk(
    'an event whose commit went with a group the disk could not take is not acknowledged',
    async (disk) => {
      const path = join(disk.dir, 'joined.db');
      const store = new SqliteStore({ path });
      stores.push(store);
      expect(await store.recordEvent(received('e1'), [])).toBe('recorded');
      const free = disk.fill();
      // A job's bookkeeping opens the turn's group just before the intake writes its batch, in the same
      // turn: the event's insert joins the group, and the group's commit is the event's.
      const background = new Promise<void>((done) =>
        setImmediate(() => {
          for (const job of bigJobs(15)) void store.enqueueJob(job).catch(() => {});
          done();
        }),
      );
      const answer = store.recordEvent(received('e2'), []);
      await background;
      await expect(answer).rejects.toMatchObject({ code: 'store_failed' });
      await store.close();
      free();
      const restarted = new SqliteStore({ path });
      stores.push(restarted);
      expect(await restarted.getEvent('e2')).toBeUndefined();
    },
  );

  onSmallDisk('a claim lost with its group is never answered: its job does not run', async (disk) => {
    const path = join(disk.dir, 'claim.db');
    const store = new SqliteStore({ path });
    stores.push(store);
    // Queued durably, with the event that brought it.
    await store.recordEvent(received('e1'), [{ kind: 'sync_message', lane: 'q', payload: {} }]);
    disk.fill();
    // The claim and, in the same turn, more than the disk can take: one group, whose commit fails.
    const claim = store.claimJob(Date.now(), Date.now() + 60_000);
    for (const job of bigJobs(15)) void store.enqueueJob(job).catch(() => {});
    await expect(claim).rejects.toMatchObject({ code: 'store_failed' });
  });
});

describe('SqliteStore opened by a tool (npm run jobs)', () => {
  it('works next to the owning bot without taking the file over, requeueing or releasing anything', async () => {
    const { store: owner, path } = open();
    await owner.enqueueJob({ kind: 'sync_message', lane: 'l', payload: { runId: 'r' } });
    const now = Date.now();
    const running = await owner.claimJob(now, now + 60_000);
    await owner.enqueueJob({ kind: 'sync_message', lane: 'm', payload: { runId: 's' } });
    const other = (await owner.claimJob(now + 1, now + 60_000)) as NonNullable<typeof running>;
    await owner.buryJob(other, 'gave up');
    // The owner's queue bookkeeping commits at the end of the turn (SqliteStore.batched): the tool, another
    // process in real use, sees it from then on.
    await setImmediateP();

    const ownerRow = () => {
      const db = new Database(path, { readonly: true });
      try {
        return db.prepare('SELECT owner, pid FROM store_owner').all();
      } finally {
        db.close();
      }
    };
    const claimed = ownerRow();
    expect(claimed).toHaveLength(1);
    const tool = new SqliteStore({ path, tool: true });
    try {
      expect((await tool.listJobs({ state: 'dead' })).map((j) => j.id)).toEqual([other.id]);
      // The owner's running job stays running (a bot opening the file would requeue it).
      expect((await tool.getJob(running?.id ?? 0))?.state).toBe('running');
      expect(await tool.reviveDeadJobs('all')).toEqual([other.id]);
    } finally {
      await tool.close();
    }
    // The owner still owns the file: the tool neither took it nor released it on close.
    expect(ownerRow()).toEqual(claimed);
    expect((await owner.getJob(other.id))?.state).toBe('queued');
  });

  it('refuses a file that does not exist or is not migrated to its version', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tool-'));
    expect(() => new SqliteStore({ path: join(dir, 'missing.db'), tool: true })).toThrow();
    const empty = join(dir, 'empty.db');
    new Database(empty).close();
    expect(() => new SqliteStore({ path: empty, tool: true })).toThrow(
      /has schema version 0, this tool expects \d+/,
    );
  });
});
