import { mkdtempSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite.js';
import { aRun } from '../helpers/builders.js';
import { storeContract } from './contract.js';

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
    const { store, path } = open();
    await store.enqueueJob({ kind: 'sync_message', lane: 'x', payload: {} });
    const now = Date.now();
    expect(await store.claimJob(now, now + 100_000)).toBeDefined();
    // The process dies without closing: its lease is still on the job.
    const db = new Database(path);
    db.prepare('DELETE FROM store_owner').run();
    expect(db.prepare('SELECT state, locked_by FROM jobs').get()).toMatchObject({ state: 'running' });
    db.close();
    const reopened = open(path).store;
    expect(await reopened.countJobs()).toEqual({ queued: 1, running: 0, dead: 0 });
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
    // Raw SQL on purpose: the thing under test is the claim another process leaves in the file, and a
    // claim from another host, or from a process that died, cannot be made here any other way.
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
