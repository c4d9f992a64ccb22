import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite.js';
import { BUILT_DIR } from '../global-setup.js';
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
