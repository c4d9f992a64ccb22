import type { App } from '@slack/bolt';
import type { PostmortemService } from '../../../postmortems/service.js';
import type { HealthLine } from '../../home.js';
import { appHomeOpened } from './app-home-opened.js';

export function registerEvents(app: App, service: PostmortemService, health: () => HealthLine[]): void {
  app.event('app_home_opened', appHomeOpened(service, health));
}
