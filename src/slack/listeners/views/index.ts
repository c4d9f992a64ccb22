import type { App } from '@slack/bolt';
import type { PostmortemService } from '../../../postmortems/service.js';
import { ADHOC_VIEW_ID } from '../../views.js';
import { adHocSubmission } from './adhoc-postmortem.js';

export function registerViews(app: App, service: PostmortemService, now: () => number): void {
  app.view(ADHOC_VIEW_ID, adHocSubmission(service, now));
}
