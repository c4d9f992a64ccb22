import type { App } from '@slack/bolt';
import type { PostmortemService } from '../../../postmortems/service.js';
import { postmortemCommand } from './postmortem.js';

export function registerCommands(app: App, service: PostmortemService): void {
  app.command('/postmortem', postmortemCommand(service));
}
