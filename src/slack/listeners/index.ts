import type { App } from '@slack/bolt';
import type { PostmortemService } from '../../postmortems/service.js';
import { registerActions } from './actions/index.js';
import { registerCommands } from './commands/index.js';

export interface ListenerDeps {
  service: PostmortemService;
}

export function registerListeners(app: App, deps: ListenerDeps): void {
  registerActions(app, deps.service);
  registerCommands(app);
}
