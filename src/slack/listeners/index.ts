import type { App } from '@slack/bolt';
import type { PostmortemService } from '../../postmortems/service.js';
import { registerActions } from './actions/index.js';
import { registerCommands } from './commands/index.js';
import { registerViews } from './views/index.js';

export interface ListenerDeps {
  service: PostmortemService;
  now: () => number;
}

export function registerListeners(app: App, deps: ListenerDeps): void {
  registerActions(app, deps.service);
  registerCommands(app, deps.service);
  registerViews(app, deps.service, deps.now);
}
