import type { App, BlockButtonAction } from '@slack/bolt';
import type { PostmortemService } from '../../../postmortems/service.js';
import { APPROVE_ACTION_ID, SKIP_ACTION_ID } from '../../messages.js';
import { approvePostmortem, skipPostmortem } from './postmortem-decision.js';

export function registerActions(app: App, service: PostmortemService): void {
  app.action<BlockButtonAction>(APPROVE_ACTION_ID, approvePostmortem(service));
  app.action<BlockButtonAction>(SKIP_ACTION_ID, skipPostmortem(service));
}
