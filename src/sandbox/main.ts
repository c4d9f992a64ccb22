import { join } from 'node:path';
import { startDemo } from './demo.js';

/**
 * `npm run demo`. Reads DEMO_PORT (the page's port, default 3000): the demo's own setting, not the bot's;
 * the bot itself is configured only by the `.env` file the demo writes for it.
 */
function demoPort(value: string | undefined): number {
  if (value === undefined || value.trim() === '') return 3000;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`DEMO_PORT: expected a port number (0-65535), got "${value}"\n`);
    process.exit(1);
  }
  return port;
}

async function main(): Promise<void> {
  const port = demoPort(process.env.DEMO_PORT);
  const say = (line: string) => process.stdout.write(`${line}\n`);
  say('postmortem-bot demo: the real bot, with local stand-ins for Slack, PagerDuty and Devin.');
  say('No accounts, no network: every URL the bot calls is on 127.0.0.1 and nothing leaves this machine.');
  const demo = await startDemo({
    port,
    botEntry: join(import.meta.dirname, '..', 'main.js'),
    report: (line) => process.stderr.write(`${line}\n`),
  });
  say('');
  say(`  Open ${demo.url}`);
  say('');
  say(`  The bot:        ${demo.botUrl} (its own process, started from dist/main.js)`);
  say(`  Its .env:       ${demo.envFile}`);
  say(`  Its log, data:  ${demo.workDir} (removed on exit)`);
  say(`  Stand-ins:      Slack ${demo.slack.url}, PagerDuty ${demo.pagerduty.url}, Devin ${demo.devin.url}`);
  say('');
  say('Ctrl-C stops the bot, the stand-ins and the page.');

  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    say('\nStopping: the bot finishes what it is doing, then the stand-ins and the page close…');
    demo.stop().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`error while stopping: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  // `kill <pid of npm run demo>` ends npm and its shell but not us (only Ctrl-C reaches the whole
  // process group): once the process that started us is gone, stop as if told to.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) shutdown();
  }, 500).unref();
}

main().catch((err) => {
  process.stderr.write(`The demo could not start: ${(err as Error).message}\n`);
  process.exit(1);
});
