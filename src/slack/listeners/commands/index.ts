import type { App } from '@slack/bolt';
import { postmortemCommand } from './postmortem.js';

export function registerCommands(app: App): void {
  app.command('/postmortem', postmortemCommand);
}
