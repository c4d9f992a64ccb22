/**
 * npm run bench: the real bot (built, as a child process) against local stand-ins for Slack and Devin, and
 * in the same run a bare Express 5 app as the baseline, all driven by autocannon with signed webhooks: the
 * bot on SQLite with distinct incident.triggered events (issue #15's load), then with distinct resolved P1
 * incidents of one service (each also joins its storm group, so the background work is heavier), then
 * with the resolved incidents on Postgres as one replica and as two replicas
 * sharing one database (the load split between them, as a load balancer would). Then a storm on SQLite:
 * 10,000 distinct resolved incidents plus duplicates (200 P1s from 5 services, the rest spread over 195
 * more), checked for loss, duplicates and Slack pacing, with issue #12's storm rows: sessions created,
 * channel posts in the first minute, and when every incident was decided or visible in a message or digest.
 * Prints a table and writes a JSON file.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  fdatasyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import Database from 'better-sqlite3';
import { signPagerDutyBody } from '../src/pagerduty/signature.js';
import { FakeDevin } from '../test/helpers/fake-devin.js';
import { FakeSlack } from '../test/helpers/fake-slack.js';
import { freePort } from '../test/helpers/http-server.js';
import { createTestDatabase, sql, TEST_POSTGRES_URL } from '../test/helpers/postgres.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const SECRET = 'bench-subscription-secret';
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const DURATION_S = Number(process.env.BENCH_DURATION ?? 10);
const STORM_INCIDENTS = Number(process.env.BENCH_STORM ?? 10_000);
/** How long the background drain is measured (see measureDrain). */
const DRAIN_S = 5;
const SKIP_STORM = process.env.BENCH_SKIP_STORM === '1';
/** The Postgres server for the Postgres rows (a maintenance URL); BENCH_SKIP_POSTGRES=1 leaves them out. */
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? TEST_POSTGRES_URL;
const SKIP_POSTGRES = process.env.BENCH_SKIP_POSTGRES === '1';
/** The built bot to measure: dist/main.js, or BENCH_DIST's main.js (to compare two builds on one machine). */
const BOT_SCRIPT = join(process.env.BENCH_DIST ?? join(ROOT, 'dist'), 'main.js');
const STORM_DUPLICATES = Math.round(STORM_INCIDENTS / 5);
const STORM_AUTO = Math.round(STORM_INCIDENTS / 50);
const fixture = (name: string) =>
  JSON.parse(readFileSync(join(ROOT, 'test', 'fixtures', 'pagerduty', name), 'utf8'));
const template = fixture('incident-resolved.json');
const triggeredTemplate = fixture('incident-triggered.json');

interface Signed {
  body: string;
  signature: string;
  incidentId: string;
}

/**
 * The storm's services: as in a real outage, the P1s page from a handful of services (STORM_P1_SERVICES,
 * one alert per host or check), and the other incidents are spread over many more.
 */
const STORM_P1_SERVICES = 5;
const STORM_OTHER_SERVICES = 195;

function stormService(n: number): { id: string; name: string } {
  const i = n < STORM_AUTO ? n % STORM_P1_SERVICES : STORM_P1_SERVICES + (n % STORM_OTHER_SERVICES);
  return { id: `PSTORM${String(i).padStart(3, '0')}`, name: `Storm service ${i}` };
}

function resolvedWebhook(
  n: number,
  priority: string,
  tag: string,
  service?: { id: string; name: string },
  from: unknown = template,
): Signed {
  const e = structuredClone(from) as typeof template;
  if (service) {
    e.event.data.service = { ...e.event.data.service, id: service.id, summary: service.name };
  }
  e.event.id = `bench-${tag}-evt-${n}`;
  e.event.data.id = `B${tag.toUpperCase()}${n}`;
  e.event.data.number = 100_000 + n;
  e.event.data.html_url = `https://acme.pagerduty.com/incidents/${e.event.data.id}`;
  e.event.data.title = `Storm incident ${n}: checkout latency above 2s`;
  e.event.data.priority = { ...e.event.data.priority, summary: priority };
  const body = JSON.stringify(e);
  return { body, signature: signPagerDutyBody(body, SECRET), incidentId: e.event.data.id };
}

/** Each incident with the run that decides it: its own, or its storm group's (STORM_WINDOW). */
const INCIDENT_RUNS = `SELECT incident_id, id AS run_id FROM runs
  UNION SELECT incident_id, run_id FROM storm_members`;

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

/** Clock ticks per second, the unit of utime and stime in /proc/<pid>/stat. */
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/**
 * The CPU time a process has used so far (user + system, all its threads: the main thread, libuv's pool,
 * V8's GC helpers), in microseconds, read from the kernel's accounting, so it does not depend on what
 * else the machine is doing.
 */
function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1_000_000) / CLOCK_TICKS;
}

/**
 * `run`'s load, with the CPU time the given processes used meanwhile divided by the webhooks answered 2xx:
 * the cost of accepting one, background work included.
 */
async function measured<T extends { total: number; non2xx: number }>(
  pids: number[],
  run: () => Promise<T>,
): Promise<T & { cpuMicrosPerWebhook: number }> {
  const before = pids.map(cpuMicros);
  const result = await run();
  const used = pids.reduce((sum, pid, i) => sum + cpuMicros(pid) - (before[i] as number), 0);
  return { ...result, cpuMicrosPerWebhook: used / Math.max(1, result.total - result.non2xx) };
}

/**
 * How long the disk takes to make a small write durable right now (fdatasync of a 16 KiB overwrite, 100
 * times), in milliseconds: every acknowledged webhook waits for one, so on a shared machine this moves the
 * bot's figures as much as the CPU does.
 */
function diskSyncMs(dir: string): { p50: number; p90: number } {
  const file = join(dir, 'sync-probe');
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(16_384, 1);
  const times: number[] = [];
  try {
    for (let i = 0; i < 100; i++) {
      writeSync(fd, block, 0, block.length, (i % 16) * block.length);
      const t0 = process.hrtime.bigint();
      fdatasyncSync(fd);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  } finally {
    closeSync(fd);
    rmSync(file);
  }
  times.sort((a, b) => a - b);
  return { p50: times[50] as number, p90: times[90] as number };
}

async function startChild(
  script: string,
  env: Record<string, string>,
): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  // The same node flags as `npm start` (read from package.json: they cannot drift apart), unless
  // BENCH_NODE_OPTIONS says otherwise.
  const npmStart = (
    JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }
  ).scripts.start as string;
  const nodeOptions = (process.env.BENCH_NODE_OPTIONS ?? npmStart.trim().split(/\s+/).slice(1, -1).join(' '))
    .split(' ')
    .filter(Boolean);
  const child = spawn(process.execPath, [...nodeOptions, script], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr?.on('data', (d) => {
    out += d;
  });
  child.stdout?.on('data', (d: Buffer) => {
    if (out.length < 10_000) out += d;
  });
  const exited = new Promise<never>((_, reject) =>
    child.on('exit', (code) => reject(new Error(`${script} exited ${code}: ${out}`))),
  );
  const deadline = Date.now() + 20_000;
  for (;;) {
    const up = await Promise.race([
      fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.ok,
        () => false,
      ),
      exited,
    ]);
    if (up) return { child, port };
    if (Date.now() > deadline) throw new Error(`${script} did not start: ${out}`);
    await sleep(100);
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(35_000)]);
}

function botEnv(slack: FakeSlack, devin: FakeDevin, database: string): Record<string, string> {
  return {
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'info',
    SLACK_BOT_TOKEN: slack.token,
    SLACK_SIGNING_SECRET: 'bench-signing-secret',
    SLACK_API_URL: slack.apiUrl,
    SLACK_DEFAULT_CHANNEL: 'CDEFAULT01',
    PAGERDUTY_WEBHOOK_SECRET: SECRET,
    DEVIN_API_KEY: devin.apiKey,
    DEVIN_ORG_ID: devin.orgId,
    DEVIN_API_URL: devin.url,
    DATABASE_URL: database.startsWith('postgres') ? database : `sqlite:${database}`,
    AUTO_START_PRIORITIES: 'P1',
    // The fixture's events happened in 2024: within a century's retention they are stored, not ignored.
    DATA_RETENTION: '36500d',
  };
}

type LoadResult = Awaited<ReturnType<typeof load>>;

async function load(port: number, bodies: Signed[], connections = CONNECTIONS) {
  let i = 0;
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections,
    duration: DURATION_S,
    requests: [
      {
        method: 'POST',
        path: '/webhooks/pagerduty',
        setupRequest: (req) => {
          const b = bodies[i++ % bodies.length] as Signed;
          return {
            ...req,
            body: b.body,
            headers: { 'content-type': 'application/json', 'x-pagerduty-signature': b.signature },
          };
        },
      },
    ],
  });
  return {
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    total: result.requests.total,
  };
}

/**
 * The load split over several replicas, as a load balancer spreads connections: one autocannon per replica,
 * all at once, each with its share of the connections and events of its own. Requests per second add up;
 * the latency reported is the worst replica's (percentiles of separate runs cannot be merged exactly).
 */
async function loadSpread(ports: number[], bodies: Signed[]): Promise<LoadResult> {
  const share = Math.floor(CONNECTIONS / ports.length);
  const results = await Promise.all(
    ports.map((port, r) =>
      load(
        port,
        bodies.filter((_, n) => n % ports.length === r),
        r === 0 ? CONNECTIONS - share * (ports.length - 1) : share,
      ),
    ),
  );
  return {
    requestsPerSecond: results.reduce((sum, x) => sum + x.requestsPerSecond, 0),
    p50Ms: Math.max(...results.map((x) => x.p50Ms)),
    p99Ms: Math.max(...results.map((x) => x.p99Ms)),
    non2xx: results.reduce((sum, x) => sum + x.non2xx, 0),
    errors: results.reduce((sum, x) => sum + x.errors, 0),
    total: results.reduce((sum, x) => sum + x.total, 0),
  };
}

/**
 * The bot on Postgres as `replicas` processes sharing one new database (dropped afterwards): a warm-up,
 * then the measured load spread over them.
 */
async function measurePostgres(replicas: number, slack: FakeSlack, devin: FakeDevin, bodies: Signed[]) {
  const db = await createTestDatabase(POSTGRES_URL);
  try {
    const bots = [];
    for (let r = 0; r < replicas; r++) bots.push(await startChild(BOT_SCRIPT, botEnv(slack, devin, db.url)));
    const ports = bots.map((b) => b.port);
    const rssBefore = bots.map((b) => rssMb(b.child.pid as number));
    await loadSpread(ports, bodies.slice(150_000)); // warm-up, distinct events of its own
    const result = await measured(
      bots.map((b) => b.child.pid as number),
      () => loadSpread(ports, bodies),
    );
    const rssAfter = bots.map((b) => rssMb(b.child.pid as number));
    await Promise.all(bots.map((b) => stopChild(b.child)));
    const [stored] = await sql<{ n: number }>(db.url, 'SELECT COUNT(*)::int AS n FROM events');
    return {
      replicas,
      ...result,
      rssMb: { before: rssBefore, afterLoad: rssAfter },
      eventsStored: stored?.n ?? 0,
    };
  } finally {
    await db.drop();
  }
}

/** See its call in main(). */
async function measureDrain(db: string, slack: FakeSlack, devin: FakeDevin) {
  const backlog = () =>
    query<{ n: number }>(db, "SELECT COUNT(*) AS n FROM jobs WHERE kind = 'process_event'").n;
  const bot = await startChild(BOT_SCRIPT, botEnv(slack, devin, db));
  const pid = bot.child.pid as number;
  await sleep(1000);
  const [before, cpuBefore, t0] = [backlog(), cpuMicros(pid), Date.now()];
  await sleep(DRAIN_S * 1000);
  const [after, cpuAfter, t1] = [backlog(), cpuMicros(pid), Date.now()];
  await stopChild(bot.child);
  const done = before - after;
  return {
    backlogAtStart: before,
    eventsDone: done,
    eventsPerSecond: (done * 1000) / (t1 - t0),
    cpuMicrosPerEvent: (cpuAfter - cpuBefore) / Math.max(1, done),
    drainedBeforeTheEnd: after === 0,
  };
}

/** Sends every body once, `concurrency` at a time; returns how each was answered. */
async function send(port: number, bodies: Signed[], concurrency: number): Promise<Record<number, number>> {
  const statuses: Record<number, number> = {};
  let next = 0;
  const worker = async () => {
    while (next < bodies.length) {
      const b = bodies[next++] as Signed;
      const res = await fetch(`http://127.0.0.1:${port}/webhooks/pagerduty`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-pagerduty-signature': b.signature },
        body: b.body,
      });
      await res.arrayBuffer();
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return statuses;
}

function query<T>(dbPath: string, sql: string): T {
  const db = new Database(dbPath, { readonly: true, timeout: 5000 });
  try {
    return db.prepare(sql).get() as T;
  } finally {
    db.close();
  }
}

/** The most Slack calls one channel got in any one-second window. */
function maxPerSecond(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while ((sorted[end] as number) - (sorted[start] as number) >= 1000) start++;
    max = Math.max(max, end - start + 1);
  }
  return max;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'pmbot-bench-'));
  const report: Record<string, unknown> = {
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
    connections: CONNECTIONS,
    durationSeconds: DURATION_S,
  };

  // ---- Throughput and acknowledgement latency, bot vs baseline, Devin answering in 2 s ----
  const slack = await new FakeSlack('xoxb-bench').start();
  const devin = await new FakeDevin().start();
  devin.latencyMs = 2000;
  const bodies = Array.from({ length: 200_000 }, (_, n) => resolvedWebhook(n, 'P1', 'load'));

  const baseline = await startChild(join(ROOT, 'build', 'bench', 'bench', 'baseline.js'), {});
  await load(baseline.port, bodies.slice(0, 2000)); // warm-up
  const base = await measured([baseline.child.pid as number], () => load(baseline.port, bodies));
  await stopChild(baseline.child);

  const disk = diskSyncMs(work);
  // The bot on SQLite, on a new database: a warm-up with distinct events of its own, then the measured load.
  const measureSqlite = async (name: string, load_: Signed[]) => {
    const db = join(work, `${name}.db`);
    const bot = await startChild(BOT_SCRIPT, botEnv(slack, devin, db));
    const pid = bot.child.pid as number;
    const rssBefore = rssMb(pid);
    await load(bot.port, load_.slice(150_000));
    // How far the background got meanwhile: events stored, minus those whose job still waits.
    const progress = () =>
      query<{ events: number; waiting: number }>(
        db,
        `SELECT (SELECT COUNT(*) FROM events) AS events,
                (SELECT COUNT(*) FROM jobs WHERE kind = 'process_event') AS waiting`,
      );
    const before = progress();
    const result = await measured([pid], () => load(bot.port, load_));
    const after = progress();
    const rssAfter = rssMb(pid);
    await stopChild(bot.child);
    const stored = query<{ n: number }>(db, 'SELECT COUNT(*) AS n FROM events').n;
    const background = {
      eventsProcessed: after.events - after.waiting - (before.events - before.waiting),
      backlogAtTheEnd: after.waiting,
    };
    return { result, rssBefore, rssAfter, stored, background };
  };
  // Issue #15's load: distinct incident.triggered events, whose processing folds the incident and stops.
  const triggeredBodies = Array.from({ length: 200_000 }, (_, n) =>
    resolvedWebhook(n, 'P1', 'trig', undefined, triggeredTemplate),
  );
  const triggered = await measureSqlite('triggered', triggeredBodies);
  // The heavier load: resolved P1s of one service, each of which also joins the service's storm group and
  // is sent to its running session; the background work competes with the intake for the one thread.
  const resolved = await measureSqlite('load', bodies);
  const { result: botLoad, rssBefore, rssAfter, stored } = resolved;
  // The background on its own: the bot restarted on that database, working off the events it had not
  // processed yet (each joins the storm group and is sent to its session), the CPU of the process divided
  // by the events done: what one event costs the job queue, whatever else the machine is doing.
  const drain = await measureDrain(join(work, 'load.db'), slack, devin);
  // The same load on Postgres: one replica, then two sharing the database.
  const postgres = SKIP_POSTGRES
    ? undefined
    : {
        one: await measurePostgres(1, slack, devin, bodies),
        two: await measurePostgres(2, slack, devin, bodies),
      };
  report.throughput = {
    baseline: base,
    triggered: {
      ...triggered.result,
      ratio: triggered.result.requestsPerSecond / base.requestsPerSecond,
      rssMb: { before: triggered.rssBefore, afterLoad: triggered.rssAfter },
      eventsStored: triggered.stored,
      backgroundDuringLoad: triggered.background,
    },
    backgroundDuringLoad: resolved.background,
    bot: botLoad,
    backgroundDrain: drain,
    ratio: botLoad.requestsPerSecond / base.requestsPerSecond,
    cpuRatio: botLoad.cpuMicrosPerWebhook / base.cpuMicrosPerWebhook,
    botRssMb: { before: rssBefore, afterLoad: rssAfter },
    eventsStored: stored,
    diskSyncMs: disk,
    devinLatencyMs: devin.latencyMs,
    ...(postgres
      ? {
          postgres: {
            oneReplica: { ...postgres.one, ratio: postgres.one.requestsPerSecond / base.requestsPerSecond },
            twoReplicas: { ...postgres.two, ratio: postgres.two.requestsPerSecond / base.requestsPerSecond },
          },
        }
      : {}),
  };
  await slack.close();
  await devin.close();
  const t = triggered.result;
  const rows = [
    ['', 'baseline (bare Express 5)', 'postmortem-bot'],
    [
      'triggered webhooks/s',
      base.requestsPerSecond.toFixed(0),
      `${t.requestsPerSecond.toFixed(0)} (${((t.requestsPerSecond / base.requestsPerSecond) * 100).toFixed(0)}% of baseline; target ≥ 70%; issue #15's load)`,
    ],
    [
      '  ack p50 / p99',
      `${base.p50Ms} / ${base.p99Ms} ms`,
      `${t.p50Ms} / ${t.p99Ms} ms (target p99 ≤ 25 ms)`,
    ],
    [
      '  CPU per 2xx webhook',
      `${base.cpuMicrosPerWebhook.toFixed(0)} µs`,
      `${t.cpuMicrosPerWebhook.toFixed(0)} µs (${(t.cpuMicrosPerWebhook / base.cpuMicrosPerWebhook).toFixed(2)} × baseline); RSS ${triggered.rssBefore.toFixed(0)} / ${triggered.rssAfter.toFixed(0)} MB; non-2xx ${t.non2xx}`,
    ],
    [
      'resolved webhooks/s',
      base.requestsPerSecond.toFixed(0),
      `${botLoad.requestsPerSecond.toFixed(0)} (${((botLoad.requestsPerSecond / base.requestsPerSecond) * 100).toFixed(0)}% of baseline; P1s joining one storm group)`,
    ],
    [
      'ack latency p50 / p99',
      `${base.p50Ms} / ${base.p99Ms} ms`,
      `${botLoad.p50Ms} / ${botLoad.p99Ms} ms (target p99 ≤ 25 ms)`,
    ],
    [
      'CPU per 2xx webhook',
      `${base.cpuMicrosPerWebhook.toFixed(0)} µs`,
      `${botLoad.cpuMicrosPerWebhook.toFixed(0)} µs (${(botLoad.cpuMicrosPerWebhook / base.cpuMicrosPerWebhook).toFixed(2)} × baseline; the process's utime + stime)`,
    ],
    ['non-2xx / errors', `${base.non2xx} / ${base.errors}`, `${botLoad.non2xx} / ${botLoad.errors}`],
    [
      'background in the load',
      '',
      `triggered: ${triggered.background.eventsProcessed} events processed in the ${DURATION_S} s, ${triggered.background.backlogAtTheEnd} waiting at the end; resolved: ${resolved.background.eventsProcessed}, ${resolved.background.backlogAtTheEnd} waiting (the intake goes first in a flood)`,
    ],
    [
      'background drain',
      '',
      `${drain.eventsPerSecond.toFixed(0)} resolved events/s, ${drain.cpuMicrosPerEvent.toFixed(0)} µs CPU each (the bot restarted on ${drain.backlogAtStart} unprocessed events${drain.drainedBeforeTheEnd ? '; drained before the end: figure low' : ''})`,
    ],
    ['bot RSS before / after', '', `${rssBefore.toFixed(0)} / ${rssAfter.toFixed(0)} MB (target ≤ 150 MB)`],
    [
      'disk fdatasync p50 / p90',
      '',
      `${disk.p50.toFixed(1)} / ${disk.p90.toFixed(1)} ms just before the bot's load (each 2xx waits for one)`,
    ],
    ...(postgres
      ? [postgres.one, postgres.two].map((pg) => [
          `postgres, ${pg.replicas} replica${pg.replicas > 1 ? 's' : ''}`,
          `${pg.requestsPerSecond.toFixed(0)}/s (${((pg.requestsPerSecond / base.requestsPerSecond) * 100).toFixed(0)}%; target ≥ 35%)`,
          `p50 / p99 ${pg.p50Ms} / ${pg.p99Ms} ms (target p99 ≤ 50 ms); non-2xx ${pg.non2xx}; CPU ${pg.cpuMicrosPerWebhook.toFixed(0)} µs per webhook; RSS ${pg.rssMb.afterLoad.map((m) => m.toFixed(0)).join(' + ')} MB`,
        ])
      : []),
  ];
  console.log(
    `\nLoad: ${CONNECTIONS} connections, ${DURATION_S} s, Devin stand-in answering in 2 s; ${cpus().length} cores, Node ${process.version}`,
  );
  for (const r of rows) console.log(`${(r[0] ?? '').padEnd(24)} ${(r[1] ?? '').padEnd(28)} ${r[2] ?? ''}`);

  if (SKIP_STORM) {
    writeReport(report);
    return;
  }
  // ---- Storm: 10,000 distinct resolved incidents plus duplicates ----
  const stormSlack = await new FakeSlack('xoxb-bench').start();
  stormSlack.channelLimit = { burst: 2 };
  const stormDevin = await new FakeDevin().start();
  stormDevin.latencyMs = 200;
  const stormDb = join(work, 'storm.db');
  const storm = Array.from({ length: STORM_INCIDENTS }, (_, n) =>
    resolvedWebhook(n, n < STORM_AUTO ? 'P1' : 'P3', 'storm', stormService(n)),
  );
  const p1Services = new Set(Array.from({ length: STORM_AUTO }, (_, n) => stormService(n).id)).size;
  const allServices = new Set(Array.from({ length: STORM_INCIDENTS }, (_, n) => stormService(n).id)).size;
  const duplicates = Array.from(
    { length: STORM_DUPLICATES },
    (_, n) => storm[(n * 7919) % storm.length] as Signed,
  );
  const deliveries = [...storm, ...duplicates].sort(
    (a, b) =>
      ((a.body.length * 31 + a.signature.charCodeAt(5)) % 7) -
      ((b.body.length * 31 + b.signature.charCodeAt(5)) % 7),
  );
  const stormBot = await startChild(BOT_SCRIPT, botEnv(stormSlack, stormDevin, stormDb));
  const t0 = Date.now();
  const statuses = await send(stormBot.port, deliveries, CONNECTIONS);
  const intakeSeconds = (Date.now() - t0) / 1000;
  // Every incident decided, and every auto-started session created; and when every incident became
  // visible: decided (by policy or a person), or shown in a message of its own or in a digest drawn since
  // it folded there.
  const deadline = Date.now() + 180_000;
  let runs = 0;
  let decidedSeconds: number | undefined;
  let visibleSeconds: number | undefined;
  let visible = 0;
  while (Date.now() < deadline) {
    runs = query<{ n: number }>(stormDb, 'SELECT COUNT(*) AS n FROM runs').n;
    const known = query<{ n: number }>(stormDb, `SELECT COUNT(*) AS n FROM (${INCIDENT_RUNS}) AS i`).n;
    const starting = query<{ n: number }>(
      stormDb,
      "SELECT COUNT(*) AS n FROM runs WHERE state = 'starting'",
    ).n;
    visible = query<{ n: number }>(
      stormDb,
      `SELECT COUNT(DISTINCT i.incident_id) AS n FROM (${INCIDENT_RUNS}) AS i
         JOIN runs r ON r.id = i.run_id
         LEFT JOIN approval_placements p ON p.run_id = r.id
         LEFT JOIN digests d ON d.channel = r.channel
         WHERE r.state <> 'awaiting_approval' OR r.slack_ts IS NOT NULL
            OR (p.shown_in = 'digest' AND d.ts IS NOT NULL AND d.drawn_at >= p.placed_at)`,
    ).n;
    const now = (Date.now() - t0) / 1000;
    if (visibleSeconds === undefined && visible === STORM_INCIDENTS) visibleSeconds = now;
    if (decidedSeconds === undefined && known === STORM_INCIDENTS && starting === 0) decidedSeconds = now;
    if (decidedSeconds !== undefined && visibleSeconds !== undefined) break;
    await sleep(500);
  }
  decidedSeconds ??= (Date.now() - t0) / 1000;
  // Watch Slack pacing for a while longer, and at least the storm's first minute.
  await sleep(Math.max(10_000, t0 + 61_000 - Date.now()));
  const firstMinute = stormSlack
    .callsOf('chat.postMessage')
    .filter((c) => c.at - t0 <= 60_000 && !c.args.thread_ts);
  const postsPerChannel: Record<string, number> = {};
  for (const c of firstMinute)
    postsPerChannel[String(c.args.channel)] = (postsPerChannel[String(c.args.channel)] ?? 0) + 1;
  const threadPostsFirstMinute = stormSlack
    .callsOf('chat.postMessage')
    .filter((c) => c.at - t0 <= 60_000 && c.args.thread_ts).length;
  const slackTimes = stormSlack.calls
    .filter((c) => c.method === 'chat.postMessage' || c.method === 'chat.update')
    .map((c) => c.at);
  const observedSeconds = (Date.now() - t0) / 1000;
  await stopChild(stormBot.child);

  const sessionsPerIncident = new Map<string, number>();
  for (const s of stormDevin.sessions) {
    const tag = s.tags.find((t) => t.startsWith('incident:')) ?? '';
    sessionsPerIncident.set(tag, (sessionsPerIncident.get(tag) ?? 0) + 1);
  }
  const eventsStored = query<{ n: number }>(stormDb, 'SELECT COUNT(*) AS n FROM events').n;
  const decided = query<{ n: number }>(stormDb, `SELECT COUNT(*) AS n FROM (${INCIDENT_RUNS}) AS i`).n;
  const pendingMessages = query<{ n: number }>(
    stormDb,
    "SELECT COUNT(*) AS n FROM jobs WHERE kind = 'sync_message' AND state = 'queued'",
  ).n;
  const deadJobs = query<{ n: number }>(stormDb, "SELECT COUNT(*) AS n FROM jobs WHERE state = 'dead'").n;
  report.storm = {
    incidents: STORM_INCIDENTS,
    autoStarted: STORM_AUTO,
    duplicatesSent: STORM_DUPLICATES,
    answers: statuses,
    intakeSeconds,
    eventsStored,
    incidentsDecided: decided,
    runs,
    decidedWithinSeconds: decidedSeconds,
    sessions: stormDevin.sessions.length,
    duplicateSessions: [...sessionsPerIncident.values()].filter((n) => n > 1).length,
    lostIncidents: STORM_INCIDENTS - decided,
    services: { all: allServices, withP1s: p1Services },
    visibleWithinSeconds: visibleSeconds ?? null,
    incidentsVisible: visible,
    firstMinute: {
      postsPerChannel,
      maxPostsInOneChannel: Math.max(0, ...Object.values(postsPerChannel)),
      threadPosts: threadPostsFirstMinute,
    },
    slack: {
      callsObserved: slackTimes.length,
      observedSeconds,
      maxCallsPerChannelPerSecond: maxPerSecond(slackTimes),
      rateLimitedAnswers: stormSlack.rateLimited,
      messagesStillQueued: pendingMessages,
    },
    deadJobs,
  };
  await stormSlack.close();
  await stormDevin.close();

  // ---- Report ----
  const tp = report.throughput as {
    triggered: { ratio: number; p99Ms: number; rssMb: { afterLoad: number } };
    baseline: typeof base;
    bot: typeof base;
    ratio: number;
    botRssMb: { before: number; afterLoad: number };
  };
  const s = report.storm as { slack: Record<string, number> } & Record<string, unknown>;
  const targets = {
    // Issue #15's targets, on its load (incident.triggered), and the same on resolved P1s of one storm.
    throughputRatio: tp.triggered.ratio >= 0.7,
    p99AckMs: tp.triggered.p99Ms <= 25,
    rssMb: tp.triggered.rssMb.afterLoad <= 150 && tp.botRssMb.afterLoad <= 150,
    resolvedThroughputRatio: tp.ratio >= 0.7,
    resolvedP99AckMs: tp.bot.p99Ms <= 25,
    duplicateSessions: s.duplicateSessions === 0,
    lostIncidents: s.lostIncidents === 0,
    // Issue #12's storm targets: one session per service group that auto-starts (the P1s' services),
    // a channel people can still read, and every incident in a message or digest within a minute.
    stormSessionsPerServiceGroup: (s.sessions as number) <= p1Services,
    stormPostsPerChannelFirstMinute:
      (s.firstMinute as { maxPostsInOneChannel: number }).maxPostsInOneChannel <= 10,
    stormEveryIncidentVisibleWithin60s: visibleSeconds !== undefined && visibleSeconds <= 60,
    ...(postgres
      ? {
          postgresOneReplicaRatio: postgres.one.requestsPerSecond / base.requestsPerSecond >= 0.35,
          postgresOneReplicaP99AckMs: postgres.one.p99Ms <= 50,
          postgresTwoReplicasAtLeastOne: postgres.two.requestsPerSecond >= postgres.one.requestsPerSecond,
        }
      : {}),
  };
  report.targetsMet = targets;
  console.log(
    `\nStorm: ${STORM_INCIDENTS} incidents (${STORM_AUTO} auto-start) + ${STORM_DUPLICATES} duplicates`,
  );
  console.log(
    `  answers ${JSON.stringify(statuses)} in ${intakeSeconds.toFixed(1)} s; events stored ${eventsStored}`,
  );
  console.log(
    `  incidents decided ${decided}/${STORM_INCIDENTS} within ${decidedSeconds.toFixed(1)} s; lost ${s.lostIncidents}`,
  );
  console.log(
    `  Devin sessions ${s.sessions} for ${STORM_AUTO} auto-started incidents; duplicate sessions ${s.duplicateSessions}`,
  );
  console.log(
    `  storm rows: sessions created ${s.sessions} (target ≤ ${p1Services}, the service groups with P1s; ${allServices} services in all)`,
  );
  console.log(
    `  storm rows: channel posts in the first minute ${JSON.stringify(postsPerChannel)} (target ≤ 10 per channel), plus ${threadPostsFirstMinute} in threads`,
  );
  console.log(
    `  storm rows: every incident decided or visible in a message or digest within ${visibleSeconds === undefined ? `— (not reached: ${visible}/${STORM_INCIDENTS})` : `${visibleSeconds.toFixed(1)} s`} (target ≤ 60 s)`,
  );
  console.log(
    `  Slack: ${s.slack.callsObserved} calls in ${s.slack.observedSeconds?.toFixed(0)} s, max ${s.slack.maxCallsPerChannelPerSecond}/s in one channel, ${s.slack.rateLimitedAnswers} 429s, ${s.slack.messagesStillQueued} messages still queued (delivered at ~1/s)`,
  );
  console.log(`\nTargets met: ${JSON.stringify(targets)}`);
  writeReport(report);
}

function writeReport(report: Record<string, unknown>): void {
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'latest.json');
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`Written to ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
