import type { App, BlockButtonAction } from '@slack/bolt';
import type { PostmortemService } from '../../../postmortems/service.js';
import {
  APPROVE_ACTION_ID,
  RETRY_ACTION_ID,
  RUN_AGAIN_ACTION_ID,
  SKIP_ACTION_ID,
  START_ANYWAY_ACTION_ID,
  STOP_ACTION_ID,
} from '../../messages.js';
import { runAgain } from './run-again.js';
import {
  approvePostmortem,
  retryPostmortem,
  skipPostmortem,
  startAnyway,
  stopPostmortem,
} from './run-buttons.js';

export function registerActions(app: App, service: PostmortemService): void {
  app.action<BlockButtonAction>(APPROVE_ACTION_ID, approvePostmortem(service));
  app.action<BlockButtonAction>(SKIP_ACTION_ID, skipPostmortem(service));
  app.action<BlockButtonAction>(START_ANYWAY_ACTION_ID, startAnyway(service));
  app.action<BlockButtonAction>(RETRY_ACTION_ID, retryPostmortem(service));
  app.action<BlockButtonAction>(RUN_AGAIN_ACTION_ID, runAgain(service));
  app.action<BlockButtonAction>(STOP_ACTION_ID, stopPostmortem(service));
}
