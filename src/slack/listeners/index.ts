import type { App } from '@slack/bolt';
import type { PostmortemService } from '../../postmortems/service.js';
import type { HealthLine } from '../home.js';
import { registerActions } from './actions/index.js';
import { registerCommands } from './commands/index.js';
import { registerEvents } from './events/index.js';
import { registerViews } from './views/index.js';

export interface ListenerDeps {
  service: PostmortemService;
  now: () => number;
  /** The configuration's health, for the Home tab. */
  health: () => HealthLine[];
}

export function registerListeners(app: App, deps: ListenerDeps): void {
  registerActions(app, deps.service);
  registerCommands(app, deps.service);
  registerViews(app, deps.service, deps.now);
  registerEvents(app, deps.service, deps.health);
}
