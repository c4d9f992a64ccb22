import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { type Config, ConfigError, loadConfigFromProcess } from '../config/config.js';
import { errorMessage } from '../errors.js';
import { openStore } from '../store/open.js';
import type { JobRecord, Store } from '../store/store.js';

/**
 * `npm run jobs -- list | show <id> | retry <id> | retry --all | discard <id>`: the jobs that failed for good
 * (dead: kept for a person, no longer blocking their lane), in the configured store, next to a running
 * bot. A revived job is due at once; the bot's workers pick it up (at once on Postgres, within a second on
 * SQLite). Discarding deletes it: what it would have done (a Slack message, a Devin call) is not done.
 */

export const USAGE = 'usage: npm run jobs -- list | show <id> | retry <id> | retry --all | discard <id>';

export type JobsCommand =
  | { kind: 'list' }
  | { kind: 'show'; id: number }
  | { kind: 'retry'; ids: number[] | 'all' }
  | { kind: 'discard'; id: number };

export class JobsUsageError extends Error {}

export function parseJobsArgs(argv: readonly string[]): JobsCommand {
  const [verb, ...rest] = argv;
  const id = (s: string | undefined): number => {
    if (s === undefined || !/^\d+$/.test(s))
      throw new JobsUsageError(`expected a job ID (a number), not ${s ?? 'nothing'}`);
    return Number(s);
  };
  switch (verb) {
    case 'list':
    case undefined:
      if (rest.length > 0) throw new JobsUsageError(`list takes no arguments`);
      return { kind: 'list' };
    case 'show':
      if (rest.length !== 1) throw new JobsUsageError('show takes one job ID');
      return { kind: 'show', id: id(rest[0]) };
    case 'retry':
      if (rest.length === 1 && rest[0] === '--all') return { kind: 'retry', ids: 'all' };
      if (rest.length === 0) throw new JobsUsageError('retry takes job IDs, or --all');
      return { kind: 'retry', ids: rest.map(id) };
    case 'discard':
      if (rest.length !== 1) throw new JobsUsageError('discard takes one job ID');
      return { kind: 'discard', id: id(rest[0]) };
    default:
      throw new JobsUsageError(`unknown command ${verb}`);
  }
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The run and incident a job is for, from its payload and the store. */
async function subject(store: Store, job: JobRecord): Promise<{ run: string; incident: string }> {
  const runId = typeof job.payload.runId === 'string' ? job.payload.runId : undefined;
  if (runId) {
    const run = await store.getRun(runId);
    const incident = run
      ? `${run.incidentId}${run.incident.number !== null ? ` (#${run.incident.number})` : ''}`
      : '(run not found)';
    return { run: runId, incident };
  }
  const lane = /^incident:(.+)$/.exec(job.lane)?.[1];
  return { run: '-', incident: lane ?? '-' };
}

export async function runJobsCommand(
  store: Store,
  command: JobsCommand,
): Promise<{ out: string; code: number }> {
  switch (command.kind) {
    case 'list': {
      const dead = await store.listJobs({ state: 'dead', limit: 1000 });
      if (dead.length === 0) return { out: 'No dead jobs.\n', code: 0 };
      const lines = [`${dead.length} dead job${dead.length === 1 ? '' : 's'} (oldest first):`];
      for (const job of dead) {
        const s = await subject(store, job);
        lines.push(
          `  #${job.id}  ${job.kind}  run ${s.run}  incident ${s.incident}  ${job.attempts} attempt${job.attempts === 1 ? '' : 's'}  queued ${iso(job.createdAt)}, last due ${iso(job.runAt)}`,
          `      last error: ${job.lastError ?? '(none recorded)'}`,
        );
      }
      lines.push(
        'Retry with `npm run jobs -- retry <id>` (or `retry --all`); drop with `npm run jobs -- discard <id>`.',
      );
      return { out: `${lines.join('\n')}\n`, code: 0 };
    }
    case 'show': {
      const job = await store.getJob(command.id);
      if (!job)
        return { out: `No job #${command.id} (it may have completed, or been discarded).\n`, code: 1 };
      const s = await subject(store, job);
      const fields: [string, string][] = [
        ['job', `#${job.id}`],
        ['state', job.state],
        ['kind', job.kind],
        ['lane', job.lane],
        ['run', s.run],
        ['incident', s.incident],
        ['attempts', String(job.attempts)],
        ['failures', String(job.failures)],
        ['queued', iso(job.createdAt)],
        ['due', iso(job.runAt)],
        ['last error', job.lastError ?? '(none recorded)'],
        ['payload', JSON.stringify(job.payload)],
      ];
      return { out: `${fields.map(([k, v]) => `${`${k}:`.padEnd(12)}${v}`).join('\n')}\n`, code: 0 };
    }
    case 'retry': {
      const revived = await store.reviveDeadJobs(command.ids);
      const missed = command.ids === 'all' ? [] : command.ids.filter((id) => !revived.includes(id));
      const lines: string[] = [];
      if (revived.length > 0) {
        lines.push(
          `Queued again, due now: ${revived.map((id) => `#${id}`).join(', ')}. The bot's workers take ${revived.length === 1 ? 'it' : 'them'} next.`,
        );
      } else if (command.ids === 'all') {
        lines.push('No dead jobs to retry.');
      }
      for (const id of missed)
        lines.push(`#${id} is not a dead job (see \`npm run jobs -- list\`); left alone.`);
      return { out: `${lines.join('\n')}\n`, code: missed.length > 0 ? 1 : 0 };
    }
    case 'discard': {
      const gone = await store.discardDeadJob(command.id);
      return gone
        ? { out: `Discarded dead job #${command.id}: what it would have done will not be done.\n`, code: 0 }
        : {
            out: `#${command.id} is not a dead job (see \`npm run jobs -- list\`); nothing discarded.\n`,
            code: 1,
          };
    }
  }
}

async function main(argv: readonly string[]): Promise<number> {
  let command: JobsCommand;
  try {
    command = parseJobsArgs(argv);
  } catch (err) {
    process.stderr.write(`jobs: ${errorMessage(err)}\n${USAGE}\n`);
    return 1;
  }
  let config: Config;
  try {
    config = loadConfigFromProcess();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`jobs: the configuration is invalid:\n${err.message}\n`);
    return 1;
  }
  let store: Store;
  try {
    store = openStore(config.database, { now: Date.now, logger: pino({ level: 'silent' }), tool: true });
  } catch (err) {
    process.stderr.write(`jobs: cannot open the store (DATABASE_URL): ${errorMessage(err)}\n`);
    return 1;
  }
  try {
    const { out, code } = await runJobsCommand(store, command);
    process.stdout.write(out);
    return code;
  } catch (err) {
    process.stderr.write(`jobs: ${errorMessage(err)}\n`);
    return 1;
  } finally {
    await store.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
