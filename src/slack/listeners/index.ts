import type { App } from '@slack/bolt';
import type { ApprovalDigest } from '../../postmortems/digest.js';
import type { PostmortemService } from '../../postmortems/service.js';
import type { HealthLine } from '../home.js';
import { registerDigestActions } from './actions/digest-buttons.js';
import { registerActions } from './actions/index.js';
import { registerCommands } from './commands/index.js';
import { registerEvents } from './events/index.js';
import { registerViews } from './views/index.js';

export interface ListenerDeps {
  service: PostmortemService;
  /** The channels' approval digests: their buttons and Review modal. */
  digest: ApprovalDigest;
  now: () => number;
  /** The configuration's health, for the Home tab. */
  health: () => HealthLine[];
}

export function registerListeners(app: App, deps: ListenerDeps): void {
  registerActions(app, deps.service);
  registerDigestActions(app, deps.digest);
  registerCommands(app, deps.service);
  registerViews(app, deps.service, deps.now);
  registerEvents(app, deps.service, deps.health);
}
