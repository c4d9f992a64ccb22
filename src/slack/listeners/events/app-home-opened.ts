import type { AllMiddlewareArgs, SlackEventMiddlewareArgs } from '@slack/bolt';
import type { PostmortemService } from '../../../postmortems/service.js';
import { type HealthLine, homeView } from '../../home.js';

/**
 * `app_home_opened` on the Home tab: publish the person's Home view. Bolt acknowledges events itself;
 * this reads the store and makes one views.publish call.
 */
export function appHomeOpened(service: PostmortemService, health: () => HealthLine[]) {
  return async ({
    event,
    client,
    logger,
  }: SlackEventMiddlewareArgs<'app_home_opened'> & AllMiddlewareArgs): Promise<void> => {
    if (event.tab !== 'home') return;
    try {
      const home = await service.home(event.user);
      await client.views.publish({ user_id: event.user, view: homeView(home, health()) });
    } catch (err) {
      logger.error('could not publish the Home tab', err);
    }
  };
}
