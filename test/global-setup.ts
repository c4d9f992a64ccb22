import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** The bot as `npm start` runs it, compiled once per test run for the tests that start it as a process. */
export const BUILT_DIR = join(import.meta.dirname, '..', 'node_modules', '.cache', 'postmortem-bot-dist');

export default function setup(): void {
  const root = join(import.meta.dirname, '..');
  execFileSync(
    process.execPath,
    [
      join(root, 'node_modules', 'typescript', 'bin', 'tsc'),
      '-p',
      'tsconfig.build.json',
      '--outDir',
      BUILT_DIR,
    ],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
}
