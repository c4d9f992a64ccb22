import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/**
 * The real bot, as `npm start` runs it: the built entry point in its own process, configured only by the
 * `.env` file in its working directory (the normal configuration path, nothing injected).
 */

export interface BotLogLine {
  at: number;
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  msg: string;
  /** The line's other fields (incidentId, runId, …), without pino's own. */
  fields: Record<string, unknown>;
}

const LEVELS: Record<number, BotLogLine['level']> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

/** Writes `env` as a `.env` file (KEY=value lines under a comment header) and answers its path. */
export function writeEnvFile(dir: string, header: string[], env: Record<string, string>): string {
  for (const [key, value] of Object.entries(env)) {
    if (/[\r\n]/.test(value)) throw new Error(`${key}: a .env value cannot span lines`);
  }
  const path = join(dir, '.env');
  const lines = [...header.map((h) => `# ${h}`), '', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ''];
  writeFileSync(path, lines.join('\n'), { mode: 0o600 });
  return path;
}

export interface BotProcess {
  url: string;
  /** SIGTERM, then wait for the bot's graceful shutdown (it exits by itself within 30 s). */
  stop(): Promise<void>;
  /** Resolves when the process has exited, for whatever reason. */
  exited: Promise<number | null>;
}

/**
 * Starts `node <entry>` in `cwd` with an empty environment, so only the `.env` file there configures it
 * (no variable of the person's own shell reaches the bot). Its JSON log lines go to `logFile` and, parsed,
 * to `onLog`. Answers once the bot logs that it is listening.
 */
export async function startBotProcess(options: {
  entry: string;
  cwd: string;
  logFile: string;
  onLog: (line: BotLogLine) => void;
  startTimeoutMs?: number;
}): Promise<BotProcess> {
  const log = createWriteStream(options.logFile, { flags: 'a' });
  const child: ChildProcess = spawn(
    process.execPath,
    // The heap flags of `npm start` (package.json).
    ['--max-old-space-size=256', '--max-semi-space-size=4', options.entry],
    { cwd: options.cwd, env: {}, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stderr: string[] = [];
  child.stderr?.on('data', (chunk: Buffer) => {
    log.write(chunk);
    stderr.push(chunk.toString('utf8'));
  });

  const listening = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error('the bot did not start listening in time')),
      options.startTimeoutMs ?? 20_000,
    );
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the bot exited during start-up (code ${code}):\n${stderr.join('').trim()}`));
    });
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (text) => {
      log.write(`${text}\n`);
      const line = parseLogLine(text);
      if (!line) return;
      if (line.msg === 'postmortem-bot listening' && typeof line.fields.port === 'number') {
        clearTimeout(timer);
        resolve(line.fields.port);
      }
      options.onLog(line);
    });
  });

  let port: number;
  try {
    port = await listening;
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    log.end();
    throw err;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const hard = setTimeout(() => child.kill('SIGKILL'), 35_000);
        await exited;
        clearTimeout(hard);
      }
      await new Promise<void>((resolve) => log.end(() => resolve()));
    },
  };
}

function parseLogLine(text: string): BotLogLine | undefined {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || typeof parsed.msg !== 'string') return undefined;
  const { level, time, msg, pid: _pid, hostname: _hostname, ...fields } = parsed;
  return {
    at: typeof time === 'number' ? time : Date.now(),
    level: LEVELS[Number(level)] ?? 'info',
    msg,
    fields,
  };
}
